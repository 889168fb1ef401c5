"""Arrest cases on the web: a neighbour's report at the bench, and the case pages for dispatch and the care ring.

A neighbour needs no account and learns nothing back but who was told (the
case code is internal). Their report reaches every handheld only once a
dispatcher, captain or host confirmed it, on the case page or the list of
reports waiting. Dispatch and the care ring, and no one else, work a case
through the three rings; the public sees only how many were taken and how
many are out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import NumberInput

from server.domain import cases, patrol, sealing, typed_time, waiting
from server.domain.cases import (
    CONFIRM_ROLES,
    MAX_COUNT,
    MAX_DESCRIPTION,
    NEIGHBOUR_MAX_COUNT,
    RINGS,
    STEPS,
    ArrestCase,
)
from server.domain.errors import DomainError, NotFound
from server.domain.people import CARE, DISPATCH, Member
from server.extensions import db, limiter
from server.web.access import holds, now, public, requires, save, unsealed
from server.web.filters import date_filter, from_local, to_local
from server.web.forms import attach_error, public_form_limit, status_for
from server.web.receipts import forget_code
from flask_babel import gettext as _
from flask_babel import lazy_gettext

bp = Blueprint("cases", __name__)

# "Only dispatch and care roles see a case": a host without one of them does not.
CASE_ROLES = (DISPATCH, CARE)
REPORTED_KEY = "arrest_reported"
REPORT_FORGOTTEN = lazy_gettext("This phone no longer shows that a report was sent from it: going back, or opening the page from "
                    "the history, no longer shows the thank-you page. Your report stays with the hub as it was.")
TOO_LONG = lazy_gettext("That is %(length)d characters; at most %(max)d fit here. Please shorten it.")
MAX_AGENCY = 120
MAX_CONTACT = 200
MAX_STEP_NOTE = 500
# What the domain calls a field, and the form field it belongs to.
CASE_FIELDS = {"place": "where", "contact": "contact", "count": "count", "when": "when"}
COUNT_IN_FIELDS = {"count": "more"}


def unix_newlines(value: str | None) -> str | None:
    """Browsers send line breaks as CRLF; count and keep them as one character."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


def _too_long(limit: int) -> Length:
    return Length(max=limit, message=TOO_LONG)


def _count_widget(maximum: int = MAX_COUNT) -> NumberInput:
    return NumberInput(min=1, max=maximum)


class ReportForm(FlaskForm):
    """What a neighbour who saw an arrest can tell; only the place is required."""

    where = StringField(
        lazy_gettext("Where did it happen?"),
        validators=[DataRequired(lazy_gettext("Please say where the arrest happened.")), _too_long(patrol.MAX_PLACE)],
    )
    # A plain text field: a date-time picker refuses "2140" and "9.40pm", which is how people write a time.
    when = StringField(_l("When? (empty means just now)"),
                       validators=[Optional(), Length(max=40, message=_l("Please give the time like 21:40."))])
    # Text, not an IntegerField: the domain's words explain a wrong number better than WTForms'.
    count = StringField(lazy_gettext("How many people were taken?"), widget=_count_widget(NEIGHBOUR_MAX_COUNT), default="1",
                        validators=[Length(max=10, message=lazy_gettext("Give the number of people as a number."))])
    description = TextAreaField(lazy_gettext("What you saw (optional)"), filters=[unix_newlines],
                                validators=[Optional(), _too_long(MAX_DESCRIPTION)])
    agency = StringField(lazy_gettext("Which police or agency, if you know (optional)"),
                         validators=[Optional(), _too_long(MAX_AGENCY)])
    contact = StringField(lazy_gettext("A way to reach you (optional)"), validators=[Optional(), _too_long(MAX_CONTACT)])


class CaseForm(ReportForm):
    """Dispatch opens a case: the same questions, about a witness rather than to one."""

    contact = StringField(lazy_gettext("Witness contact (optional)"), validators=[Optional(), _too_long(MAX_CONTACT)])
    count = StringField(lazy_gettext("How many people were taken?"), widget=_count_widget(), default="1",
                        validators=[Length(max=10, message=lazy_gettext("Give the number of people as a number."))])


class StepForm(FlaskForm):
    step = HiddenField()
    note = TextAreaField(lazy_gettext("Note (optional)"), filters=[unix_newlines],
                         validators=[Optional(), _too_long(MAX_STEP_NOTE)])


class ConsentForm(FlaskForm):
    """Only the CSRF token: the button says it all."""


class ConfirmForm(FlaskForm):
    """Only the CSRF token: "Confirm: put it on the air"."""


class CountInForm(FlaskForm):
    more = StringField(lazy_gettext("More people taken"), widget=_count_widget(), default="1",
                       validators=[Length(max=10, message=lazy_gettext("Give the number of people as a number."))])


class CountOutForm(FlaskForm):
    released = StringField(lazy_gettext("People released"), widget=_count_widget(), default="1",
                           validators=[Length(max=10, message=lazy_gettext("Give the number of people as a number."))])


class DetailsForm(FlaskForm):
    description = TextAreaField(lazy_gettext("Description (no legal names unless the person asked)"), filters=[unix_newlines],
                                validators=[Optional(), _too_long(MAX_DESCRIPTION)])
    agency = StringField(lazy_gettext("Agency"), validators=[Optional(), _too_long(MAX_AGENCY)])


# -- reading a time typed at the bench ------------------------------------------------


def parse_when(typed: str | None, moment: datetime) -> datetime | None:
    """A time typed at the bench (``21:40``, ``2140``, ``9.40pm``, a date and time), read in the hub's zone,
    as naive UTC; None for "just now". The reading itself is domain/typed_time.py's."""
    wall_clock = typed_time.read_when(typed, to_local(moment).replace(tzinfo=None))
    return None if wall_clock is None else from_local(wall_clock)


def _open_case(db_session: Session, form: ReportForm, *, source: str, member_id: int | None) -> ArrestCase:
    """Open the case the form describes (a neighbour's report is asked about, not yet on the air)."""
    moment = now()
    return cases.open_case(
        db_session,
        moment,
        place=form.where.data,
        arrested=form.count.data,
        source=source,
        reported_by=db_session.get(Member, member_id) if member_id else None,
        arrested_at=parse_when(form.when.data, moment),
        description=form.description.data,
        agency=form.agency.data,
        witness_contact=form.contact.data,
        hotline=current_app.config["LEGAL_HOTLINE"],
    )


# --- the neighbour's side -------------------------------------------------


@bp.route("/arrest", methods=["GET", "POST"])
@limiter.limit(public_form_limit, methods=["POST"])
@public
def report() -> ResponseReturnValue:
    form = ReportForm()
    if form.validate_on_submit():
        def work(db_session: Session) -> str:
            _open_case(db_session, form, source=cases.SOURCE_NEIGHBOUR, member_id=None)
            return cases.who_hears_reports(db_session, now()).who

        try:
            asked = save(work)
        except DomainError as error:
            attach_error(form, error, fields=CASE_FIELDS)
        else:
            # Post/Redirect/Get: a refresh of the thank-you page opens no second case. Who was
            # asked is kept for the thank-you page: it must not say dispatch was told when nobody holds it.
            session[REPORTED_KEY] = asked
            return redirect(url_for(".thanks"))
    return render_template("cases/report.html", form=form), status_for(form)


@bp.get("/arrest/thanks")
@public
def thanks() -> ResponseReturnValue:
    # Nothing about the case is shown: the code is for dispatch, and this phone may not stay the witness's.
    asked = session.get(REPORTED_KEY)
    if not asked:
        return redirect(url_for(".report"))
    if asked not in (cases.ASKED_DISPATCH, cases.ASKED_HOSTS, cases.ASKED_NOBODY):
        asked = cases.ASKED_DISPATCH  # a session from before the hub said who was asked
    # Whether anyone can read it is sealed storage's rule, asked now: a role given since the report counts.
    readable = waiting.anyone_reads(db.session, now(), sealing.CASES)
    return render_template("cases/thanks.html", asked=asked, readable=readable)


@bp.post("/arrest/thanks/forget")
@public
def forget_report() -> ResponseReturnValue:
    """On a borrowed phone, the next person must not learn from the history that this phone reported an arrest."""
    return forget_code(REPORTED_KEY, then="bench.index", said=str(REPORT_FORGOTTEN))


# --- dispatch and the care ring ---------------------------------------------


def _grace() -> timedelta:
    return timedelta(days=float(current_app.config["CASE_GRACE_DAYS"]))


@dataclass(frozen=True)
class RingProgress:
    name: str
    done: int
    total: int


def ring_progress(case: ArrestCase) -> list[RingProgress]:
    return [
        RingProgress(name, sum(1 for s in STEPS if s.ring == ring and case.step_done(s.key)),
                     sum(1 for s in STEPS if s.ring == ring))
        for ring, name in RINGS.items()
    ]


def _page_helpers(moment: datetime) -> dict[str, Any]:
    return {
        "now": moment,
        "hours_held": lambda case: int(cases.hours_held(case, moment)),
        "clock_mark": lambda case: cases.clock_mark(cases.hours_held(case, moment)),
        "ring_progress": ring_progress,
        "purge_on": lambda case: cases.purge_due_on(case, _grace()),
        "grace_days": current_app.config["CASE_GRACE_DAYS"],
    }


@bp.get("/cases")
@requires(*CASE_ROLES)
def index() -> ResponseReturnValue:
    return render_template(
        "cases/index.html",
        open_cases=cases.open_cases(db.session),
        closed_cases=cases.closed_cases(db.session),
        **_page_helpers(now()),
    )


@bp.route("/cases/new", methods=["GET", "POST"])
@requires(DISPATCH)
def new() -> ResponseReturnValue:
    form = CaseForm()
    if form.validate_on_submit():
        member_id = current_user.member.id
        try:
            # A rehearsal is started from the drills page, which times it; this is for real cases.
            case = save(lambda db_session: _open_case(db_session, form, source=patrol.SOURCE_WEB, member_id=member_id))
        except DomainError as error:
            attach_error(form, error, fields=CASE_FIELDS)
        else:
            flash(_("Case %(code)s is open. Code, count, time and, as the place, “%(on_air_as)s” are queued for "
                    "the patrol channel, urgent, with the bell.",
                    code=case.code, on_air_as=case.on_air_as))
            return redirect(url_for(".detail", case_id=case.id))
    return render_template("cases/new.html", form=form), status_for(form)


@bp.get("/cases/<int:case_id>")
@requires(*CASE_ROLES)
def detail(case_id: int) -> ResponseReturnValue:
    return _detail_page(case_id)


# --- a neighbour's report, confirmed by dispatch, a captain or a host --------------


def _pending_page(confirm_form: ConfirmForm | None = None, failed_id: int | None = None) -> ResponseReturnValue:
    # Captains and hosts confirm too, but a case's details are for dispatch and care:
    # this page shows what the air would hear (code, listed place, count, time), nothing typed.
    confirm_form = confirm_form or ConfirmForm(formdata=None)
    page = render_template("cases/pending.html", reports=cases.pending_reports(db.session),
                           confirm_form=confirm_form, failed_id=failed_id, case_text=cases.case_text,
                           **_page_helpers(now()))
    return page, status_for(confirm_form)


@bp.get("/cases/waiting")
@requires(*CONFIRM_ROLES)
def pending() -> ResponseReturnValue:
    return _pending_page()


@bp.post("/cases/<int:case_id>/confirm")
@requires(*CONFIRM_ROLES)
def confirm(case_id: int) -> ResponseReturnValue:
    form = ConfirmForm()
    member_id = current_user.member.id
    hotline = current_app.config["LEGAL_HOTLINE"]
    if form.validate_on_submit():
        try:
            case = save(lambda db_session: cases.confirm_report(
                db_session, now(), cases.get_case(db_session, case_id), db_session.get(Member, member_id),
                patrol.SOURCE_WEB, hotline=hotline))
        except NotFound:
            raise
        except DomainError as error:
            attach_error(form, error)
        else:
            flash(_("%(code)s is confirmed: code, place, count and time are queued for every handheld, urgent, "
                    "with the bell. The log says you confirmed it.",
                    code=case.code))
            if holds(*CASE_ROLES):
                return redirect(url_for(".detail", case_id=case_id))
            return redirect(url_for(".pending"))
    if holds(*CASE_ROLES):
        return _detail_page(case_id, confirm_form=form)
    return _pending_page(form, failed_id=case_id)


@dataclass(frozen=True)
class WaitingReport:
    """A neighbour's report on the dashboard: what the air would hear, for those who may confirm it."""

    case_id: int
    code: str
    air_place: str
    arrested: int
    arrested_at: datetime
    opened_at: datetime


def waiting_reports() -> list[WaitingReport]:
    """Reports waiting for confirmation, for dispatch, captains and hosts; read at most once per request."""
    if not holds(*CONFIRM_ROLES):
        return []
    if "waiting_reports" not in g:
        g.waiting_reports = [
            WaitingReport(case.id, case.code, case.on_air_as, case.arrested, case.arrested_at, case.opened_at)
            for case in cases.pending_reports(db.session)
        ]
    return g.waiting_reports


@bp.post("/cases/<int:case_id>/step")
@requires(*CASE_ROLES)
def complete_step(case_id: int) -> ResponseReturnValue:
    form = StepForm()
    member_id = current_user.member.id

    def work(db_session: Session, case: ArrestCase) -> cases.CaseStep:
        return cases.complete_step(db_session, now(), case, form.step.data or "", db_session.get(Member, member_id),
                                   form.note.data)

    form.note.id = f"note-{form.step.data}"  # the id its textarea has on the page, for the error summary's link
    return _act(case_id, form, "step_form", work, lambda step: f"Done: {step.label}.")


@bp.post("/cases/<int:case_id>/consent")
@requires(*CASE_ROLES)
def record_consent(case_id: int) -> ResponseReturnValue:
    member_id = current_user.member.id
    return _act(
        case_id, ConsentForm(), "consent_form",
        lambda db_session, case: cases.record_consent(db_session, now(), case, db_session.get(Member, member_id)),
        lambda _case: "Prior consent to inform family is recorded. The family step can be marked done.",
    )


@bp.post("/cases/<int:case_id>/count-in")
@requires(*CASE_ROLES)
def count_in(case_id: int) -> ResponseReturnValue:
    form = CountInForm()
    member_id = current_user.member.id
    return _act(
        case_id, form, "count_in_form",
        lambda db_session, case: cases.count_in(db_session, now(), case, form.more.data,
                                                db_session.get(Member, member_id)),
        lambda case: f"Counted in: {case.arrested} arrested, {case.released} released.",
        fields=COUNT_IN_FIELDS,
    )


@bp.post("/cases/<int:case_id>/count-out")
@requires(*CASE_ROLES)
def count_out(case_id: int) -> ResponseReturnValue:
    form = CountOutForm()
    member_id = current_user.member.id

    def done(case: ArrestCase) -> str:
        if case.is_open:
            return f"Counted out: {case.released} of {case.arrested} released, {case.outstanding} still held."
        return (f"Everyone is released: case {case.code} is closed and will be deleted on "
                f"{date_filter(cases.purge_due_on(case, _grace()))}. Export it first if the legal coordinator needs it.")

    return _act(
        case_id, form, "count_out_form",
        lambda db_session, case: cases.count_out(db_session, now(), case, form.released.data,
                                                 db_session.get(Member, member_id)),
        done,
    )


@bp.post("/cases/<int:case_id>/details")
@requires(*CASE_ROLES)
def update_details(case_id: int) -> ResponseReturnValue:
    form = DetailsForm()
    return _act(
        case_id, form, "details_form",
        lambda db_session, case: cases.update_details(db_session, case, description=form.description.data,
                                                      agency=form.agency.data),
        lambda _case: "Description and agency saved.",
    )


@bp.get("/cases/<int:case_id>/export.txt")
@requires(*CASE_ROLES)
def export(case_id: int) -> ResponseReturnValue:
    moment = now()

    def work(db_session: Session) -> tuple[str, str]:
        case = cases.get_case(db_session, case_id)
        return cases.export_text(db_session, moment, case, by=db_session.get(Member, current_user.id),
                                 unseal=unsealed), case.code

    text, code = save(work)
    response = Response(text, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="arrest-case-{code}-{moment:%Y-%m-%d}.txt"'
    # A case file must not linger in a shared browser's cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _act(case_id: int, form: FlaskForm, form_name: str, work: Callable[[Session, ArrestCase], Any],
         done: Callable[[Any], str], fields: dict[str, str] | None = None) -> ResponseReturnValue:
    """Run one action on a case; on success go back to the case, else show why on its form."""
    if form.validate_on_submit():
        try:
            # The case is read inside the transaction, so a retry sees it afresh.
            message = save(lambda db_session: done(work(db_session, cases.get_case(db_session, case_id))))
        except DomainError as error:
            # A case purged meanwhile is a NotFound; _detail_page raises it
            # again and the error handler answers 404.
            attach_error(form, error, fields=fields)
        else:
            flash(message)
            return redirect(url_for(".detail", case_id=case_id))
    return _detail_page(case_id, **{form_name: form})


def _detail_page(case_id: int, step_form: StepForm | None = None, consent_form: ConsentForm | None = None,
                 count_in_form: CountInForm | None = None, count_out_form: CountOutForm | None = None,
                 details_form: DetailsForm | None = None,
                 confirm_form: ConfirmForm | None = None) -> ResponseReturnValue:
    case = cases.get_case(db.session, case_id)
    # formdata=None: the forms not being sent start fresh even during a POST.
    step_form = step_form or StepForm(formdata=None)
    consent_form = consent_form or ConsentForm(formdata=None)
    count_in_form = count_in_form or CountInForm(formdata=None)
    count_out_form = count_out_form or CountOutForm(formdata=None)
    details_form = details_form or DetailsForm(formdata=None, data={"description": unsealed(case.description),
                                                                     "agency": case.agency})
    confirm_form = confirm_form or ConfirmForm(formdata=None)
    forms = (step_form, consent_form, count_in_form, count_out_form, details_form, confirm_form)
    page = render_template(
        "cases/detail.html",
        case=case,
        steps=STEPS,
        rings=RINGS,
        step_form=step_form,
        consent_form=consent_form,
        count_in_form=count_in_form,
        count_out_form=count_out_form,
        details_form=details_form,
        confirm_form=confirm_form,
        may_confirm=holds(*CONFIRM_ROLES),
        air_text=cases.case_text(case, current_app.config["LEGAL_HOTLINE"]),
        **_page_helpers(now()),
    )
    return page, max(status_for(form) for form in forms)


# --- the banner on hub pages ------------------------------------------------------


@dataclass(frozen=True)
class OverdueCase:
    case_id: int
    code: str
    hours: int
    outstanding: int
    drill: bool
    mark: str


def overdue_case_banner() -> list[OverdueCase]:
    """Open cases past 24 hours, for dispatch and the care ring only; read at most once per request."""
    if not holds(*CASE_ROLES):
        return []
    if "overdue_cases" not in g:
        moment = now()
        g.overdue_cases = [
            OverdueCase(case.id, case.code, int(cases.hours_held(case, moment)), case.outstanding, case.drill,
                        cases.clock_mark(cases.hours_held(case, moment)))
            for case in cases.overdue_cases(db.session, moment)
        ]
    return g.overdue_cases


def init_app(app: Flask) -> None:
    # A function, as bridge_banner is: only hub pages ask, public pages never touch cases.
    app.add_template_global(overdue_case_banner, "overdue_case_banner")
    app.add_template_global(waiting_reports, "waiting_reports")
