"""Complaints about the patrol: the neighbour's form and status page, and the accountability circle's queue.

A neighbour needs no account: they raise a concern, name who or what it is
about, and keep a receipt code; the status page answers it with the state
and dates only. The circle reads and works complaints; a member a complaint
names (or who holds a role it names) gets the same 404 as for a complaint
that does not exist, and never finds it in a list or a count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from server.domain import complaints
from server.domain.complaints import CLOSED, MAX_OUTCOME, MAX_WHAT, RECEIVED, Complaint
from server.domain.errors import DomainError
from server.domain.people import ACCOUNTABILITY
from server.extensions import db, limiter
from server.web.access import now, public, requires, save
from server.web.forms import (
    attach_error,
    public_form_limit,
    receipt_code_field,
    receipt_lookup_limit,
    status_for,
)
from server.web.mediation import TOO_LONG, unix_newlines
from server.web.receipts import forget_code
from flask_babel import lazy_gettext

bp = Blueprint("complaints", __name__)

RECEIPT_KEY = "complaint_receipt"
# Whether the circle can read it right now (see the receipt page); kept with the code.
NO_READER_KEY = "complaint_no_reader"
ABOUT_INVALID = lazy_gettext("Please choose from the list who or what your concern is about.")


class ComplaintForm(FlaskForm):
    about = SelectField(lazy_gettext("Who or what is it about?"), invalid_choice_message=ABOUT_INVALID)
    what = TextAreaField(
        lazy_gettext("What happened, and what worries you?"),
        filters=[unix_newlines],
        validators=[
            DataRequired(lazy_gettext("Please say what happened, in a few words or many.")),
            Length(max=MAX_WHAT, message=TOO_LONG),
        ],
    )


class ReceiptForm(FlaskForm):
    code = receipt_code_field("P-7K2P-9QXD")


class TakeForm(FlaskForm):
    """Only the CSRF token: taking a complaint up needs no other input."""


class CloseForm(FlaskForm):
    outcome = TextAreaField(
        lazy_gettext("Outcome (kept inside the circle)"),
        filters=[unix_newlines],
        validators=[DataRequired(lazy_gettext("Please write the outcome first.")), Length(max=MAX_OUTCOME, message=TOO_LONG)],
    )


# --- the neighbour's side -------------------------------------------------


@bp.route("/complaints/new", methods=["GET", "POST"])
@limiter.limit(public_form_limit, methods=["POST"])
@public
def new() -> ResponseReturnValue:
    form = ComplaintForm()
    form.about.choices = [SelectChoice(c.value, c.label) for c in complaints.about_choices(db.session, now())]
    if form.validate_on_submit():
        try:
            code, no_reader = save(lambda db_session: _submit(db_session, form))
        except DomainError as error:
            attach_error(form, error, fields={"concern": "what"})
        else:
            session[RECEIPT_KEY] = code
            session[NO_READER_KEY] = no_reader
            return redirect(url_for(".receipt"))
    page = render_template("complaints/new.html", form=form, counts=_counts(), **_retention())
    return page, status_for(form)


def _submit(db_session: Session, form: ComplaintForm) -> tuple[str, bool]:
    complaint = complaints.submit_complaint(db_session, now(), what=form.what.data, about=form.about.data)
    return complaint.receipt_code or "", not complaints.readers(db_session, now(), complaint)


@bp.get("/complaints/receipt")
@public
def receipt() -> ResponseReturnValue:
    code = session.get(RECEIPT_KEY)
    if not code:
        return redirect(url_for(".status"))
    return render_template("complaints/receipt.html", code=code, no_reader=session.get(NO_READER_KEY),
                           **_retention())


@bp.post("/complaints/receipt/forget")
@public
def forget_receipt() -> ResponseReturnValue:
    """On a borrowed phone, the next person must not find the code, nor that a complaint was made."""
    return forget_code(RECEIPT_KEY, NO_READER_KEY, then=".status")


@bp.route("/complaints/status", methods=["GET", "POST"])
@limiter.limit(receipt_lookup_limit, methods=["POST"])
@public
def status() -> ResponseReturnValue:
    # The code travels in a POST body, never in the address.
    form = ReceiptForm()
    found = None
    if form.validate_on_submit():
        try:
            found = complaints.status_for_receipt(db.session, form.code.data)
        except DomainError as error:
            attach_error(form, error, fields={"receipt code": "code"})
    page = render_template("complaints/status.html", form=form, found=found, closed=CLOSED, **_retention())
    return page, status_for(form)


def _counts() -> complaints.PublicCounts:
    return complaints.public_counts(db.session, now())


def _retention() -> dict[str, int]:
    return {"retention_days": int(current_app.config["COMPLAINT_RETENTION_DAYS"])}


# --- the accountability circle's side --------------------------------------


@bp.get("/host/complaints")
@requires(ACCOUNTABILITY)
def queue() -> ResponseReturnValue:
    include_closed = request.args.get("closed") == "1"
    return render_template(
        "complaints/queue.html",
        complaints=complaints.queue_for(db.session, now(), current_user.member, include_closed=include_closed),
        include_closed=include_closed,
    )


@bp.get("/host/complaints/<int:complaint_id>")
@requires(ACCOUNTABILITY)
def detail(complaint_id: int) -> ResponseReturnValue:
    return _detail_page(complaint_id)


@bp.post("/host/complaints/<int:complaint_id>/take")
@requires(ACCOUNTABILITY)
def take(complaint_id: int) -> ResponseReturnValue:
    me = current_user.member
    return _act(complaint_id, TakeForm(), "take_form",
                lambda db_session, complaint: complaints.take(db_session, now(), complaint, me),
                "You are looking into this complaint.")


@bp.post("/host/complaints/<int:complaint_id>/close")
@requires(ACCOUNTABILITY)
def close(complaint_id: int) -> ResponseReturnValue:
    me = current_user.member
    form = CloseForm()
    return _act(complaint_id, form, "close_form",
                lambda db_session, complaint: complaints.close(db_session, now(), complaint, me, form.outcome.data),
                "Closed. The outcome stays inside the circle; the record of power used says you closed it.")


def _act(complaint_id: int, form: FlaskForm, form_name: str, work: Callable[[Session, Complaint], Any],
         done: str) -> ResponseReturnValue:
    """Run one circle action; on success go back to the complaint, else show why."""
    me = current_user.member
    if form.validate_on_submit():
        try:
            # Read inside the transaction, with the same check as the page: a member kept from it gets a 404.
            save(lambda db_session: work(db_session, complaints.get_for(db_session, now(), complaint_id, me)))
        except DomainError as error:
            attach_error(form, error)
        else:
            flash(done)
            return redirect(url_for(".detail", complaint_id=complaint_id))
    return _detail_page(complaint_id, **{form_name: form})


def _detail_page(complaint_id: int, take_form: TakeForm | None = None,
                 close_form: CloseForm | None = None) -> ResponseReturnValue:
    complaint = complaints.get_for(db.session, now(), complaint_id, current_user.member)
    take_form = take_form or TakeForm(formdata=None)
    close_form = close_form or CloseForm(formdata=None)
    page = render_template(
        "complaints/detail.html",
        complaint=complaint,
        take_form=take_form,
        close_form=close_form,
        can_take=complaint.status == RECEIVED,
        closed=CLOSED,
        **_retention(),
    )
    return page, max(status_for(form) for form in (take_form, close_form))
