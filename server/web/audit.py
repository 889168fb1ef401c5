"""The public audit of each lunar cycle, and what hosts write down after its assembly."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from radio_bridge.airtime import duty_cycle_budget
from server.domain import audit
from server.domain.errors import DomainError, NotFound
from server.domain.people import HOST, Member
from server.extensions import db
from server.web.access import now, public, requires, save
from server.web.caching import public_page
from server.web.forms import attach_error, status_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

bp = Blueprint("audit", __name__)
bp.add_app_template_filter(audit.shown, "shown")
bp.add_app_template_filter(audit.minutes, "minutes")


class RevisionForm(FlaskForm):
    text = TextAreaField(
        lazy_gettext("What we will revise"),
        validators=[
            DataRequired(message=lazy_gettext("Write what the assembly decided to revise.")),
            Length(max=audit.MAX_REVISION, message=lazy_gettext("At most %(max)d characters.")),
        ],
        render_kw={"rows": 10},
    )
    decision = StringField(
        lazy_gettext("The assembly decision"),
        validators=[
            DataRequired(message=lazy_gettext("Name the assembly that decided it: its date and item.")),
            Length(max=audit.MAX_DECISION, message=lazy_gettext("At most %(max)d characters.")),
        ],
    )


def airtime_budget_per_hour() -> float:
    """Seconds of airtime the hub's radio may use an hour, as the bridge is configured."""
    cfg = current_app.config
    return duty_cycle_budget(str(cfg["RADIO_REGION"]), float(cfg["RADIO_AIRTIME_BUDGET"]))


def build_report(session: Session, cycle_number: int | None) -> audit.Report:
    moment = now()
    return audit.report(session, audit.cycle_for_page(moment, cycle_number), moment, airtime_budget_per_hour())


def _show(cycle_number: int | None) -> ResponseReturnValue:
    try:
        report = build_report(db.session, cycle_number)
    except NotFound:
        abort(404)
    return render_template("audit/show.html", report=report,
                           past=audit.past_cycles(db.session, now()),
                           revisions=audit.revisions_newest_first(report.audit))


@bp.get("/audit")
@public
@public_page
def current() -> ResponseReturnValue:
    return _show(None)


@bp.get("/audit/<int:cycle>")
@public
@public_page
def show(cycle: int) -> ResponseReturnValue:
    return _show(cycle)


# -- hosts, after the assembly --------------------------------------------------------


def _revise_page(cycle: int, form: RevisionForm) -> ResponseReturnValue:
    try:
        report = build_report(db.session, cycle)
    except NotFound:
        abort(404)
    page = render_template("audit/revise.html", report=report, form=form,
                           revisions=audit.revisions_newest_first(report.audit))
    return page, status_for(form)


@bp.get("/host/audit/<int:cycle>/revise")
@requires(HOST)
def revise(cycle: int) -> ResponseReturnValue:
    kept = audit.find(db.session, cycle)
    latest = kept.revisions[-1].text if kept is not None and kept.revisions else None
    return _revise_page(cycle, RevisionForm(formdata=None, text=latest))


@bp.post("/host/audit/<int:cycle>/revise")
@requires(HOST)
def save_revision(cycle: int) -> ResponseReturnValue:
    form = RevisionForm()
    if form.validate_on_submit():
        moment = now()

        def work(session: Session) -> audit.AuditRevision:
            return audit.revise(session, moment, cycle, session.get(Member, current_user.id), form.text.data,
                                form.decision.data)

        try:
            revision = save(work)
        except NotFound:
            abort(404)
        except DomainError as error:
            attach_error(form, error, fields={"what we will revise": "text", "assembly decision": "decision"})
        else:
            flash(_("Version %(version)s of what we will revise is published with the audit.",
                    version=revision.version))
            return redirect(url_for("audit.show", cycle=cycle) + "#revise")
    return _revise_page(cycle, form)
