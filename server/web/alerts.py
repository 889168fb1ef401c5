"""Rapid response on the web: open alerts, who is responding, resolving them, and drills.

Alerts are raised by handhelds (``SOS``), by the scheduler (overdue
check-ins), by the duress word, or here. Every hub page carries a banner
while one is open. A silent (duress) alert is for dispatch and hosts only:
a captain never sees it, on the page or in the banner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from server.domain import alerts, drills, patrol, people
from server.domain.alerts import Alert
from server.domain.drills import Drill
from server.domain.errors import DomainError
from server.domain.people import CAPTAIN, DISPATCH, HOST, Member
from server.extensions import db
from server.web.access import holds, now, requires, save
from server.web.forms import attach_error, status_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

bp = Blueprint("alerts", __name__, url_prefix="/host")

# Who sees alerts at all, and who sees silent (duress) ones and works them.
VIEW_ROLES = (HOST, DISPATCH, CAPTAIN)
DISPATCH_ROLES = (HOST, DISPATCH)
RECENT_RESOLVED = 20
NOBODY = ""


def _at_most(limit: int) -> Length:
    return Length(max=limit, message=lazy_gettext("That is too long: at most %(max)d characters."))


class RaiseSosForm(FlaskForm):
    # The choices are the hub's members, filled in per request.
    who = SelectField(
        lazy_gettext("Who is in danger"),
        choices=[],
        invalid_choice_message=lazy_gettext("Please choose someone from the list, or nobody."),
    )
    where = StringField(
        lazy_gettext("Where"),
        validators=[DataRequired(message=lazy_gettext("Please say where help is needed.")), _at_most(patrol.MAX_PLACE)],
    )


class ResolveForm(FlaskForm):
    """One per open alert, so it carries a prefix; the app-wide CSRF check covers it."""

    class Meta:
        csrf = False

    note = TextAreaField(
        lazy_gettext("What happened"),
        validators=[
            DataRequired(message=lazy_gettext("Please say what happened before resolving: the note is what stays on record.")),
            _at_most(alerts.MAX_RESOLUTION),
        ],
    )


class DrillForm(FlaskForm):
    kind = RadioField(
        lazy_gettext("What to rehearse"),
        choices=[SelectChoice(kind, label) for kind, label in drills.KINDS.items()],
        invalid_choice_message=lazy_gettext("Please choose a mock SOS or a mock arrest."),
    )
    place = StringField(lazy_gettext("Where (pretend)"), validators=[Optional(), _at_most(patrol.MAX_PLACE)])


# -- what the viewer may see, once per request ---------------------------------


def _sees_silent() -> bool:
    return holds(*DISPATCH_ROLES)


def visible_open_alerts() -> list[Alert]:
    """Open alerts the viewer may see, newest first: one query, shared by the banner and the page."""
    if "open_alerts" not in g:
        if not holds(*VIEW_ROLES):
            g.open_alerts = []
        else:
            found = alerts.open_alerts(db.session)
            g.open_alerts = found if _sees_silent() else [a for a in found if not a.silent]
    return g.open_alerts


def age(alert: Alert) -> str:
    """How long ago it was raised, as someone glancing at the banner reads it."""
    minutes = int((now() - alert.raised_at) / timedelta(minutes=1))
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass(frozen=True)
class BannerAlert:
    id: int
    code: str
    kind_label: str
    who: str
    place: str | None
    age: str
    responders: int
    drill: bool
    silent: bool
    verified: bool = True


def alert_banner() -> list[BannerAlert]:
    """The open alerts every hub page must show at its top; empty for roles that see none."""
    return [
        BannerAlert(a.id, a.code, a.kind_label, a.who, a.place, age(a), len(a.responses), a.drill, a.silent,
                    a.verified)
        for a in visible_open_alerts()
    ]


# -- the alerts page -------------------------------------------------------------


def _member_choices() -> list[SelectChoice]:
    members = people.list_members(db.session)
    return [SelectChoice(NOBODY, lazy_gettext("Nobody named: the hub raises it"))] + [
        SelectChoice(str(m.id), m.handle) for m in members
    ]


def _sos_form(**kwargs: object) -> RaiseSosForm:
    form = RaiseSosForm(**kwargs)
    form.who.choices = _member_choices()
    return form


def _resolve_form(alert_id: int, formdata: object = None) -> ResolveForm:
    return ResolveForm(formdata=formdata, prefix=f"resolve-{alert_id}")


def _page(sos: RaiseSosForm | None = None, failed: tuple[int, ResolveForm] | None = None) -> ResponseReturnValue:
    sos = sos or _sos_form(formdata=None)
    open_ = visible_open_alerts()
    resolve_forms = {
        a.id: failed[1] if failed and failed[0] == a.id else _resolve_form(a.id)
        for a in open_
    }
    sees_silent = _sees_silent()
    resolved = [a for a in alerts.recent_alerts(db.session, limit=RECENT_RESOLVED + len(open_))
                if not a.is_open and (sees_silent or not a.silent)][:RECENT_RESOLVED]
    page = render_template(
        "alerts/page.html",
        open_alerts=open_,
        resolved=resolved,
        sos=sos,
        resolve_forms=resolve_forms,
        age=age,
        me=current_user.id,
        ack_minutes=current_app.config["ALERT_ACK_MINUTES"],
    )
    statuses = [status_for(sos)] + ([status_for(failed[1])] if failed else [])
    return page, max(statuses)


@bp.get("/alerts")
@requires(*VIEW_ROLES)
def page() -> ResponseReturnValue:
    return _page()


def _raise(session: Session, member_id: int | None, where: str, raised_by_id: int) -> Alert:
    member = session.get(Member, member_id) if member_id is not None else None
    return alerts.raise_sos(session, now(), member, where, patrol.SOURCE_WEB,
                            raised_by=session.get(Member, raised_by_id))


@bp.post("/alerts/sos")
@requires(*DISPATCH_ROLES)
def raise_sos() -> ResponseReturnValue:
    form = _sos_form()
    if form.validate_on_submit():
        member_id = int(form.who.data) if form.who.data else None
        try:
            alert = save(lambda session: _raise(session, member_id, form.where.data, current_user.id))
        except DomainError as error:
            attach_error(form, error, fields={"place": "where"})
        else:
            flash(_("SOS %(code)s is raised: an urgent broadcast with the bell goes to every handheld. Stewards "
                    "answer ACK %(code)s.",
                    code=alert.code))
            return redirect(url_for("alerts.page") + f"#alert-{alert.id}")
    return _page(sos=form)


def _open_alert_for_viewer(alert_id: int) -> Alert:
    """The alert, or 404 when it does not exist or the viewer may not see it (a captain and a silent alert)."""
    alert = db.session.get(Alert, alert_id)
    if alert is None or (alert.silent and not _sees_silent()):
        abort(404)
    return alert


def _acknowledge(session: Session, alert_id: int, member_id: int) -> Alert:
    return alerts.acknowledge(session, now(), alerts.get_alert(session, alert_id), session.get(Member, member_id),
                              patrol.SOURCE_WEB)


@bp.post("/alerts/<int:alert_id>/ack")
@requires(*VIEW_ROLES)
def acknowledge(alert_id: int) -> ResponseReturnValue:
    _open_alert_for_viewer(alert_id)
    try:
        alert = save(lambda session: _acknowledge(session, alert_id, current_user.id))
    except DomainError as error:
        flash(error.message, "warning")
    else:
        flash(_("You are down as responding to %(code)s. Resolve it here, or send CLR %(code)s, when it is over.",
                code=alert.code))
    return redirect(url_for("alerts.page") + f"#alert-{alert_id}")


def _resolve(session: Session, alert_id: int, member_id: int, note: str) -> Alert:
    return alerts.resolve(session, now(), alerts.get_alert(session, alert_id), session.get(Member, member_id),
                          patrol.SOURCE_WEB, note)


@bp.post("/alerts/<int:alert_id>/resolve")
@requires(*DISPATCH_ROLES)
def resolve(alert_id: int) -> ResponseReturnValue:
    alert = _open_alert_for_viewer(alert_id)
    if not alert.is_open:
        flash(_("Alert %(code)s is already resolved.", code=alert.code), "warning")
        return redirect(url_for("alerts.page") + f"#alert-{alert_id}")
    form = _resolve_form(alert_id, formdata=request.form)
    if form.validate():
        try:
            save(lambda session: _resolve(session, alert_id, current_user.id, form.note.data))
        except DomainError as error:
            attach_error(form, error)
        else:
            flash(_("Alert %(code)s is resolved; handhelds are told it is over.", code=alert.code)
                  if not alert.silent else _("Alert %(code)s is resolved.", code=alert.code))
            return redirect(url_for("alerts.page"))
    return _page(failed=(alert_id, form))


# -- drills ----------------------------------------------------------------------


@dataclass(frozen=True)
class DrillRow:
    drill: Drill
    label: str
    alert_code: str | None


def _drill_rows() -> list[DrillRow]:
    rows = []
    for drill in drills.list_drills(db.session):
        alert = db.session.get(Alert, drill.alert_id) if drill.alert_id is not None else None
        rows.append(DrillRow(drill, drills.KINDS.get(drill.kind, drill.kind), alert.code if alert else None))
    return rows


def _drills_page(form: DrillForm | None = None) -> ResponseReturnValue:
    form = form or DrillForm(formdata=None)
    return render_template("alerts/drills.html", form=form, rows=_drill_rows()), status_for(form)


@bp.get("/drills")
@requires(*DISPATCH_ROLES)
def drills_page() -> ResponseReturnValue:
    return _drills_page()


def _start(session: Session, kind: str, place: str | None, member_id: int, hotline: str) -> Drill:
    return drills.start(session, now(), kind, session.get(Member, member_id), place, hotline=hotline)


@bp.post("/drills")
@requires(*DISPATCH_ROLES)
def start_drill() -> ResponseReturnValue:
    form = DrillForm()
    if form.validate_on_submit():
        hotline = current_app.config["LEGAL_HOTLINE"]
        try:
            drill = save(lambda session: _start(session, form.kind.data, form.place.data, current_user.id, hotline))
        except DomainError as error:
            attach_error(form, error)
        else:
            if drill.kind == drills.SOS:
                flash(_("Drill %(id)s started: a mock SOS alert is on its way to every handheld, marked DRILL. "
                        "Work it as on a real night, then end the drill here for its report.", id=drill.id))
            else:
                flash(_("Drill %(id)s started: a mock arrest case is on its way to every handheld, marked DRILL. "
                        "Work it as on a real night, then end the drill here for its report.", id=drill.id))
            return redirect(url_for("alerts.drills_page") + f"#drill-{drill.id}")
    return _drills_page(form)


def _end(session: Session, drill_id: int, member_id: int) -> Drill:
    return drills.end(session, now(), drills.get_drill(session, drill_id), session.get(Member, member_id))


@bp.post("/drills/<int:drill_id>/end")
@requires(*DISPATCH_ROLES)
def end_drill(drill_id: int) -> ResponseReturnValue:
    drill = save(lambda session: _end(session, drill_id, current_user.id))
    flash(_("Drill %(id)s has ended. Its report is below, for the assembly.", id=drill.id))
    return redirect(url_for("alerts.drill_report", drill_id=drill_id))


@dataclass(frozen=True)
class Report:
    """A drill report's text, in the parts a page shows: its title, the timings, the rest."""

    title: str
    timings: list[str]
    notes: list[str]
    text: str


def _report(drill: Drill) -> Report:
    text = drills.report_text(db.session, drill)
    title, *rest = text.strip().splitlines() or [""]
    return Report(title, [line[2:] for line in rest if line.startswith("- ")],
                  [line for line in rest if line and not line.startswith("- ")], text)


@bp.get("/drills/<int:drill_id>")
@requires(*DISPATCH_ROLES)
def drill_report(drill_id: int) -> ResponseReturnValue:
    drill = drills.get_drill(db.session, drill_id)
    return render_template("alerts/drill.html", drill=drill, report=_report(drill),
                           label=drills.KINDS.get(drill.kind, drill.kind))


@bp.get("/drills/<int:drill_id>/report.txt")
@requires(*DISPATCH_ROLES)
def drill_report_text(drill_id: int) -> ResponseReturnValue:
    drill = drills.get_drill(db.session, drill_id)
    return Response(
        drills.report_text(db.session, drill),
        mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="drill-{drill.id}-report.txt"'},
    )


def init_app(app: Flask) -> None:
    # A function, not a context processor: only the hub pages that show the
    # banner ask, and public pages never touch the alerts table.
    app.add_template_global(alert_banner, "alert_banner")
