"""The Community Safety Compact: read, sign, and (for hosts) edit."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from server.domain import compact
from server.domain.errors import DomainError
from server.domain.people import HOST, Member
from server.extensions import db, limiter
from server.web.access import now, public, requires, save
from server.web.forms import attach_error, public_form_limit, status_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

bp = Blueprint("compact", __name__)

def _number(value: str | None) -> int | None:
    """The version a form was shown with; anything else is no version at all."""
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else None


class SignForm(FlaskForm):
    mark = StringField(
        lazy_gettext("Your name or a mark"),
        validators=[
            DataRequired(message=lazy_gettext("Please write your name or a mark to sign.")),
            Length(
                max=compact.MAX_MARK,
                message=lazy_gettext("A name or mark is at most %(max)d characters. Please shorten it and sign again."),
            ),
        ],
    )
    # The version the neighbour read: a signature is never put on another text.
    version = HiddenField()


class TextForm(FlaskForm):
    text = TextAreaField(
        lazy_gettext("Text of the compact"),
        validators=[
            DataRequired(message=lazy_gettext("The compact cannot be empty.")),
            Length(max=compact.MAX_TEXT, message=lazy_gettext("The compact is at most %(max)d characters.")),
        ],
        render_kw={"rows": 18},
    )
    decision = StringField(
        lazy_gettext("The assembly decision behind this text"),
        validators=[
            DataRequired(message=lazy_gettext("Name the assembly decision behind this text: its date, the meeting, and what "
                                              "it decided.")),
            Length(max=compact.MAX_DECISION, message=lazy_gettext("The decision is at most %(max)d characters.")),
        ],
    )
    # The version the host started editing from, so an edit published meanwhile is not overwritten unseen.
    based_on = HiddenField()


class RemoveForm(FlaskForm):
    reason = StringField(
        lazy_gettext("Why"),
        validators=[
            DataRequired(message=lazy_gettext("Say why this signature goes (a prank, or its signer asked): it goes into the "
                                              "record of power used.")),
            Length(max=compact.MAX_DECISION, message=lazy_gettext("The reason is at most %(max)d characters.")),
        ],
    )


# -- neighbours ---------------------------------------------------------------


def _show_page(form: SignForm) -> ResponseReturnValue:
    # The form always carries the version on the page, whatever was posted.
    form.version.data = str(compact.current_number(db.session))
    page = render_template(
        "compact/show.html",
        form=form,
        text=compact.current_text(db.session),
        version=compact.current_version(db.session),
        number=compact.current_number(db.session),
        # Only the number is public: the marks are for the host alone.
        count=compact.signature_count(db.session),
        history=compact.history(db.session),
        max_mark=compact.MAX_MARK,
    )
    return page, status_for(form)


@bp.get("/compact")
@public
def show() -> ResponseReturnValue:
    return _show_page(SignForm(formdata=None))


@bp.route("/compact/sign", methods=["POST"])
@limiter.limit(public_form_limit, methods=["POST"])
@public
def sign() -> ResponseReturnValue:
    form = SignForm()
    read = _number(form.version.data)
    if form.validate_on_submit():
        moment = now()
        try:
            save(lambda session: compact.sign(session, moment, form.mark.data, read))
        except DomainError as error:
            # The version is a hidden field: its refusal goes above the form, over the new text.
            attach_error(form, error, fields={"name or mark": "mark", "version": ""})
        else:
            # The thank-you does not repeat the mark: the next person at the
            # bench may be looking at the same phone.
            flash(_("Thank you for signing the compact. Your signature is counted."))
            return redirect(url_for("compact.show"))
    elif read != compact.current_number(db.session):
        form.form_errors.append(_(compact.CHANGED_WHILE_READING, number=compact.current_number(db.session)))
    return _show_page(form)


# -- the host -----------------------------------------------------------------


def _edit_page(form: TextForm, remove_form: RemoveForm | None = None,
               removing: int | None = None) -> ResponseReturnValue:
    form.based_on.data = str(compact.current_number(db.session))
    page = render_template(
        "compact/edit.html",
        form=form,
        # The refused removal, shown with its message next to the signature it was for.
        remove_form=remove_form or RemoveForm(formdata=None),
        removing=removing,
        max_reason=compact.MAX_DECISION,
        version=compact.current_version(db.session),
        number=compact.current_number(db.session),
        count=compact.signature_count(db.session),
        signatures=compact.signatures(db.session),
    )
    return page, status_for(form)


@bp.get("/host/compact")
@requires(HOST)
def edit() -> ResponseReturnValue:
    return _edit_page(TextForm(formdata=None, text=compact.current_text(db.session)))


def _edit_text(session: Session, form: TextForm, editor_id: int) -> int:
    version = compact.edit_text(session, now(), session.get(Member, editor_id), form.text.data, form.decision.data,
                                based_on=_number(form.based_on.data))
    return version.number


@bp.post("/host/compact")
@requires(HOST)
def save_text() -> ResponseReturnValue:
    form = TextForm()
    if form.validate_on_submit():
        try:
            number = save(lambda session: _edit_text(session, form, current_user.id))
        except DomainError as error:
            attach_error(form, error, fields={"compact text": "text"})
        else:
            flash(_("Version %(number)s of the compact is published. Signatures of earlier versions stay with "
                    "the text their signers read; the count starts again for this one.",
                    number=number))
            return redirect(url_for("compact.edit"))
    return _edit_page(form)


def _remove(session: Session, signature_id: int, reason: str, host_id: int) -> None:
    compact.remove_signature(session, now(), session.get(Member, host_id), signature_id, reason)


@bp.post("/host/compact/signatures/<int:signature_id>/remove")
@requires(HOST)
def remove_signature(signature_id: int) -> ResponseReturnValue:
    form = RemoveForm()
    if form.validate_on_submit():
        try:
            save(lambda session: _remove(session, signature_id, form.reason.data, current_user.id))
        except DomainError as error:
            attach_error(form, error)
        else:
            flash(_("The signature is removed, and the removal is in the record of power used."))
            return redirect(url_for("compact.edit") + "#signatures")
    form.reason.id = f"reason-{signature_id}"  # the id its input has on the page, for the error summary's link
    page = _edit_page(TextForm(formdata=None, text=compact.current_text(db.session)), form, signature_id)
    return page[0], 400
