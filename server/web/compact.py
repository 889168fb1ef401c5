"""The Community Safety Compact: read, sign, and (for hosts) edit."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from server.domain import compact
from server.domain.errors import DomainError
from server.domain.people import HOST, Member
from server.extensions import db, limiter
from server.web.access import now, public, requires, save
from server.web.forms import attach_error, public_form_limit, status_for

bp = Blueprint("compact", __name__)



class SignForm(FlaskForm):
    mark = StringField(
        "Your name or a mark",
        validators=[
            DataRequired(message="Please write your name or a mark to sign."),
            Length(
                max=compact.MAX_MARK,
                message="A name or mark is at most %(max)d characters. Please shorten it and sign again.",
            ),
        ],
    )


class TextForm(FlaskForm):
    text = TextAreaField(
        "Text of the compact",
        validators=[
            DataRequired(message="The compact cannot be empty."),
            Length(max=compact.MAX_TEXT, message="The compact is at most %(max)d characters."),
        ],
        render_kw={"rows": 18},
    )


# -- neighbours ---------------------------------------------------------------


def _show_page(form: SignForm) -> ResponseReturnValue:
    page = render_template(
        "compact/show.html",
        form=form,
        text=compact.current_text(db.session),
        version=compact.current_version(db.session),
        # Only the number is public: the marks are for the host alone.
        count=compact.signature_count(db.session),
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
    if form.validate_on_submit():
        moment = now()
        try:
            save(lambda session: compact.sign(session, moment, form.mark.data))
        except DomainError as error:
            attach_error(form, error, fields={"name or mark": "mark"})
        else:
            # The thank-you does not repeat the mark: the next person at the
            # bench may be looking at the same phone.
            flash("Thank you for signing the compact. Your signature is counted.")
            return redirect(url_for("compact.show"))
    return _show_page(form)


# -- the host -----------------------------------------------------------------


def _edit_page(form: TextForm) -> ResponseReturnValue:
    page = render_template(
        "compact/edit.html",
        form=form,
        version=compact.current_version(db.session),
        signatures=compact.signatures(db.session),
    )
    return page, status_for(form)


@bp.get("/host/compact")
@requires(HOST)
def edit() -> ResponseReturnValue:
    return _edit_page(TextForm(formdata=None, text=compact.current_text(db.session)))


def _edit_text(session: Session, text: str, editor_id: int) -> compact.CompactVersion:
    return compact.edit_text(session, now(), session.get(Member, editor_id), text)


@bp.post("/host/compact")
@requires(HOST)
def save_text() -> ResponseReturnValue:
    form = TextForm()
    if form.validate_on_submit():
        try:
            save(lambda session: _edit_text(session, form.text.data, current_user.id))
        except DomainError as error:
            attach_error(form, error, fields={"compact text": "text"})
        else:
            flash("The new text of the compact is published. Earlier versions are kept.")
            return redirect(url_for("compact.edit"))
    return _edit_page(form)


@bp.post("/host/compact/signatures/<int:signature_id>/remove")
@requires(HOST)
def remove_signature(signature_id: int) -> ResponseReturnValue:
    save(lambda session: compact.remove_signature(session, signature_id))
    flash("The signature is removed.")
    return redirect(url_for("compact.edit") + "#signatures")
