"""Mediation: the neighbour's form and status page, and the mediators' queue.

A neighbour needs no account: they leave a request and keep a receipt code.
The status page answers that code with the state and dates only, so the
conflict itself is seen by mediators and no one else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from server.domain import mediation, sealing, waiting
from server.domain.errors import DomainError
from server.domain.mediation import (
    ASSIGNED,
    CLOSED,
    FINISHED,
    IN_PROGRESS,
    MAX_CONTACT,
    MAX_NOTE,
    MAX_WHAT,
    MAX_WHERE,
    MAX_WHO,
    NEW,
    RESOLVED,
    STATUS_LABELS,
    STATUSES,
    TRANSITIONS,
    URGENCIES,
    URGENCY_LABELS,
    MediationRequest,
)
from server.domain.people import MEDIATOR
from server.extensions import db, limiter
from server.web.access import now, public, requires, save
from server.web.forms import (
    attach_error,
    public_form_limit,
    receipt_code_field,
    receipt_lookup_limit,
    status_for,
)
from server.web.receipts import forget_code
from flask_babel import lazy_gettext

bp = Blueprint("mediation", __name__)

RECEIPT_KEY = "mediation_receipt"
TOO_LONG = lazy_gettext("That is %(length)d characters; at most %(max)d fit here. Please shorten it.")
# Buttons say what pressing them does; the status names say where a request is.
MOVE_LABELS = {
    NEW: "Back to waiting",
    ASSIGNED: "Back to taken, not started",
    IN_PROGRESS: "Mark in progress",
    RESOLVED: "Mark resolved",
    CLOSED: "Close it",
}
# What the domain calls a field, and the form field it belongs to.
REQUEST_FIELDS = {
    "description": "what",
    "place": "where",
    "people involved": "who",
    "way to reach you": "contact",
}


def unix_newlines(value: str | None) -> str | None:
    """Browsers send line breaks as CRLF; count and keep them as one character."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


class RequestForm(FlaskForm):
    what = TextAreaField(
        lazy_gettext("What happened?"),
        filters=[unix_newlines],
        validators=[
            DataRequired(lazy_gettext("Please describe what happened, in a few words or many.")),
            Length(max=MAX_WHAT, message=TOO_LONG),
        ],
    )
    where = StringField(
        lazy_gettext("Roughly where (optional)"), validators=[Optional(), Length(max=MAX_WHERE, message=TOO_LONG)]
    )
    who = TextAreaField(
        lazy_gettext("Who is involved (optional)"),
        filters=[unix_newlines],
        validators=[Optional(), Length(max=MAX_WHO, message=TOO_LONG)],
    )
    urgency = RadioField(
        lazy_gettext("How soon does this need attention?"),
        # Plain values: the template shows URGENCY_LABELS, and no WTForms
        # version disagrees about what a list of strings means.
        choices=list(URGENCIES),
        default="soon",
        # WTForms would say "Not a valid choice." (only a tampered form gets here).
        invalid_choice_message=lazy_gettext("Please choose how soon this needs attention."),
    )
    contact = StringField(
        lazy_gettext("A way to reach you (optional)"), validators=[Optional(), Length(max=MAX_CONTACT, message=TOO_LONG)]
    )


class ReceiptForm(FlaskForm):
    code = receipt_code_field("M-7K2P-9QXD")


class TakeForm(FlaskForm):
    """Only the CSRF token: taking a request needs no other input."""


class StatusForm(FlaskForm):
    # Every status is a valid choice here; which moves are allowed is the
    # domain's rule, so a refused one comes back with the domain's words.
    status = SelectField(lazy_gettext("New status"), choices=list(STATUSES))


class NoteForm(FlaskForm):
    text = TextAreaField(
        lazy_gettext("Private note"),
        filters=[unix_newlines],
        validators=[DataRequired(lazy_gettext("Please write the note first.")), Length(max=MAX_NOTE, message=TOO_LONG)],
    )


# --- the neighbour's side -------------------------------------------------


@bp.route("/mediation/new", methods=["GET", "POST"])
@limiter.limit(public_form_limit, methods=["POST"])
@public
def new() -> ResponseReturnValue:
    form = RequestForm()
    if form.validate_on_submit():
        try:
            code = save(lambda db_session: _submit(db_session, form))
        except DomainError as error:
            attach_error(form, error, fields=REQUEST_FIELDS)
        else:
            # Post/Redirect/Get: a refresh of the receipt page sends nothing again.
            session[RECEIPT_KEY] = code
            return redirect(url_for(".receipt"))
    page = render_template("mediation/new.html", form=form, urgency_labels=URGENCY_LABELS, **_retention())
    return page, status_for(form)


def _submit(db_session: Session, form: RequestForm) -> str:
    request_made = mediation.submit_request(
        db_session,
        now(),
        what=form.what.data,
        where=form.where.data,
        who=form.who.data,
        urgency=form.urgency.data,
        contact=form.contact.data,
    )
    return request_made.receipt_code


@bp.get("/mediation/receipt")
@public
def receipt() -> ResponseReturnValue:
    code = session.get(RECEIPT_KEY)
    if not code:
        return redirect(url_for(".status"))
    # Truthful: "reached the mediators" only while someone holds a role that reads the mediation vault.
    readable = waiting.anyone_reads(db.session, now(), sealing.MEDIATION)
    return render_template("mediation/receipt.html", code=code, readable=readable, **_retention())


@bp.post("/mediation/receipt/forget")
@public
def forget_receipt() -> ResponseReturnValue:
    """On a borrowed phone, the next person must not find the code."""
    return forget_code(RECEIPT_KEY, then=".status")


@bp.route("/mediation/status", methods=["GET", "POST"])
@limiter.limit(receipt_lookup_limit, methods=["POST"])
@public
def status() -> ResponseReturnValue:
    # The code travels in a POST body, never in the address, so it stays out
    # of browser history and server logs.
    form = ReceiptForm()
    found = None
    if form.validate_on_submit():
        try:
            found = mediation.status_for_receipt(db.session, form.code.data)
        except DomainError as error:
            attach_error(form, error, fields={"receipt code": "code"})
    page = render_template("mediation/status.html", form=form, found=found, finished=FINISHED, **_retention())
    return page, status_for(form)


def _retention() -> dict[str, int]:
    return {"retention_days": current_app.config["MEDIATION_RETENTION_DAYS"]}


# --- the mediators' side --------------------------------------------------


@bp.get("/host/mediation")
@requires(MEDIATOR)
def queue() -> ResponseReturnValue:
    include_finished = request.args.get("finished") == "1"
    return render_template(
        "mediation/queue.html",
        requests=mediation.queue(db.session, include_finished=include_finished),
        include_finished=include_finished,
        urgency_labels=URGENCY_LABELS,
        finished=FINISHED,
    )


@bp.get("/host/mediation/<int:request_id>")
@requires(MEDIATOR)
def detail(request_id: int) -> ResponseReturnValue:
    return _detail_page(request_id)


@bp.post("/host/mediation/<int:request_id>/take")
@requires(MEDIATOR)
def take(request_id: int) -> ResponseReturnValue:
    me = current_user.member
    return _act(
        request_id,
        TakeForm(),
        "take_form",
        lambda db_session, mediation_request: mediation.assign(db_session, now(), mediation_request, me),
        "You have taken this request.",
    )


@bp.post("/host/mediation/<int:request_id>/status")
@requires(MEDIATOR)
def change_status(request_id: int) -> ResponseReturnValue:
    form = StatusForm()
    wanted = form.status.data
    return _act(
        request_id,
        form,
        "status_form",
        lambda db_session, mediation_request: mediation.change_status(db_session, now(), mediation_request, wanted),
        f"Status is now: {STATUS_LABELS.get(wanted, wanted)}.",
    )


@bp.post("/host/mediation/<int:request_id>/notes")
@requires(MEDIATOR)
def add_note(request_id: int) -> ResponseReturnValue:
    me = current_user.member
    form = NoteForm()
    return _act(
        request_id,
        form,
        "note_form",
        lambda db_session, mediation_request: mediation.add_note(
            db_session, now(), mediation_request, me, form.text.data
        ),
        "Note saved. Only mediators can read it.",
    )


def _act(
    request_id: int,
    form: FlaskForm,
    form_name: str,
    work: Callable[[Session, MediationRequest], Any],
    done: str,
) -> ResponseReturnValue:
    """Run one mediator action; on success go back to the request, else show why."""
    if form.validate_on_submit():
        try:
            # The request is read inside the transaction, so a retry sees it afresh.
            save(lambda db_session: work(db_session, mediation.get_request(db_session, request_id)))
        except DomainError as error:
            # A request purged meanwhile is a NotFound; _detail_page raises it
            # again and the error handler answers 404.
            attach_error(form, error, fields={"note": "text"})
        else:
            flash(done)
            return redirect(url_for(".detail", request_id=request_id))
    return _detail_page(request_id, **{form_name: form})


def _detail_page(
    request_id: int,
    take_form: TakeForm | None = None,
    status_form: StatusForm | None = None,
    note_form: NoteForm | None = None,
) -> ResponseReturnValue:
    mediation_request = mediation.get_request(db.session, request_id)
    # formdata=None: the forms not being sent start empty even during a POST.
    take_form = take_form or TakeForm(formdata=None)
    status_form = status_form or StatusForm(formdata=None)
    note_form = note_form or NoteForm(formdata=None)
    page = render_template(
        "mediation/detail.html",
        req=mediation_request,
        take_form=take_form,
        status_form=status_form,
        note_form=note_form,
        can_take=mediation_request.status not in FINISHED and mediation_request.mediator != current_user.member,
        moves=_moves(mediation_request),
        urgency_labels=URGENCY_LABELS,
        move_labels=MOVE_LABELS,
        finished=FINISHED,
        **_retention(),
    )
    failed = max(status_for(form) for form in (take_form, status_form, note_form))
    return page, failed


def _moves(mediation_request: MediationRequest) -> list[str]:
    """The status changes to offer: the allowed ones, except "assigned" to nobody ("Take it" does that)."""
    return [
        status
        for status in TRANSITIONS[mediation_request.status]
        if not (status == ASSIGNED and mediation_request.mediator is None)
    ]
