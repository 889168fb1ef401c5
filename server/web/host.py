"""The hub host's side: dashboard, full log, stewards and areas, roles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Length,
    Optional,
)

from server.domain import (
    aid,
    complaints,
    mandates,
    mediation,
    patrol,
    people,
    power_record,
    radio_trust,
    sealing,
)
from server.domain.errors import DomainError
from server.domain.people import (
    ACCOUNTABILITY,
    CAPTAIN,
    DISPATCH,
    HOST,
    MEDIATOR,
    ROLE_LABELS,
    ROLES,
    Member,
)
from server.extensions import db
from server.web import roles as role_pages
from server.web.access import current_roles, holds, now, open_vaults, requires, save
from server.web.caching import forget_public_pages
from server.web.converters import MAX_ROW_ID
from server.web.filters import date_filter, time_filter
from server.web.forms import attach_error, status_for, validate_all

bp = Blueprint("host", __name__, url_prefix="/host")

LOG_ROLES = (HOST, DISPATCH, CAPTAIN)
STEWARD_ROLES = (HOST, CAPTAIN)
LOG_PAGE_SIZE = 50
DASHBOARD_ENTRIES = 10


# The domain's limits (people.clean_handle, the node id), repeated so the
# form says so before the domain has to.
MAX_HANDLE = 24
MAX_NODE_ID = 20
MAX_AREA = 40

# Domain field names that differ from the form's.
PEOPLE_FIELDS = role_pages.DECISION_FIELDS


def _at_most(limit: int) -> Length:
    return Length(max=limit, message=lazy_gettext("That is too long: at most %(max)d characters."))


def _required(what: str) -> DataRequired:
    return DataRequired(message=lazy_gettext("Please fill in the %(what)s.", what=what))


class LogEntryForm(FlaskForm):
    kind = SelectField(
        lazy_gettext("What to log"),
        choices=[SelectChoice(patrol.CHECK_IN, lazy_gettext("Check-in")), SelectChoice(patrol.INCIDENT, lazy_gettext("Incident"))],
        invalid_choice_message=lazy_gettext("Please choose a check-in or an incident."),
    )
    place = StringField(lazy_gettext("Place"), validators=[Optional(), _at_most(patrol.MAX_PLACE)])
    note = TextAreaField(lazy_gettext("Note"), validators=[_at_most(patrol.MAX_NOTE)])


class WithdrawForm(FlaskForm):
    """One per log entry, so it carries a prefix; the app-wide CSRF check covers it."""

    class Meta:
        csrf = False

    reason = StringField(
        lazy_gettext("Reason for withdrawing it (public)"),
        validators=[DataRequired(message=patrol.REASON_REQUIRED), _at_most(patrol.MAX_WITHDRAWAL_REASON)],
    )


class RegisterStewardForm(FlaskForm):
    handle = StringField(lazy_gettext("Handle"), validators=[_required(lazy_gettext("handle")), _at_most(MAX_HANDLE)])
    node_id = StringField(lazy_gettext("Node id"), validators=[_required(lazy_gettext("node id")), _at_most(MAX_NODE_ID)])
    radio_key = StringField(lazy_gettext("Radio key (optional)"), validators=[Optional(), _at_most(64)])
    decided_on = role_pages.decided_on_field()
    decision_place = role_pages.place_field()
    decision = role_pages.decision_field()
    # Their consent, given in person: a new steward who never logs in has no other moment to give it.
    show_handle = BooleanField(lazy_gettext("The steward asked to show their handle"))


class NodeForm(FlaskForm):
    """One per member, so it carries a prefix; the app-wide CSRF check covers it."""

    class Meta:
        csrf = False

    node_id = StringField(lazy_gettext("Node id"), validators=[Optional(), _at_most(MAX_NODE_ID)])


class AreaForm(FlaskForm):
    area_name = StringField(lazy_gettext("Area name"), validators=[_required(lazy_gettext("area name")), _at_most(MAX_AREA)])


class LandmarkForm(FlaskForm):
    landmark_name = StringField(lazy_gettext("Landmark"), validators=[_required(lazy_gettext("landmark")), _at_most(MAX_AREA)])


def _term_days() -> int:
    return role_pages.default_term_days()


def _page_status(*forms: FlaskForm | None) -> int:
    return max((status_for(form) for form in forms if form is not None), default=200)


def _until(moment: datetime) -> str:
    """An expiry with its year: terms run up to a year."""
    return f"{date_filter(moment)}, {time_filter(moment)}"


def _id_from(value: str | None) -> int | None:
    """A database id typed into a URL or a hidden field, or None for anything else."""
    value = value or ""
    if value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ROW_ID:
        return int(value)
    return None


# -- dashboard ----------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """A number on the dashboard and the page where it is worked on."""

    label: str
    number: int
    url: str


def _tallies() -> list[Tally]:
    """Only the counts the viewer's roles let them act on."""
    tallies = []
    if holds(MEDIATOR):
        new = sum(1 for req in mediation.queue(db.session) if req.status == mediation.NEW)
        tallies.append(Tally(_("New mediation requests"), new, url_for("mediation.queue")))
    if holds(HOST):
        posts = aid.moderation_queue(db.session)
        waiting = sum(1 for post in posts for message in post.messages if message.waits_for_the_host)
        hidden = sum(1 for post in posts if post.status == aid.HIDDEN)
        tallies.append(Tally(_("Aid messages waiting to be passed on"), waiting, url_for("aid.moderation")))
        tallies.append(Tally(_("Aid posts hidden"), hidden, url_for("aid.moderation")))
        signable = len(mandates.waiting_for_countersign(db.session, now(), current_user.member))
        tallies.append(Tally(_("Roles waiting for your countersign"), signable, url_for("roles.page")))
    if holds(ACCOUNTABILITY):
        # Counted over what this member may read: a complaint naming them is not in it.
        waiting = complaints.waiting_for(db.session, now(), current_user.member)
        tallies.append(Tally(_("Complaints waiting for the circle"), waiting, url_for("complaints.queue")))
    return tallies


@bp.get("/")
@requires()
def dashboard() -> ResponseReturnValue:
    if current_user.duress:
        # Logged in under duress: the member's roles as usual, and nothing else. The hub is locked already.
        held = people.active_roles(db.session, current_user.member, now())
        return render_template("host/dashboard.html", my_roles=[ROLE_LABELS[role] for role in ROLES if role in held],
                               shifts=[], sees_log=False, entries=[], tallies=[], expiring=[], role_labels=ROLE_LABELS,
                               vaults=[])
    sees_log = holds(*LOG_ROLES)
    expiring = []
    if holds(HOST):
        expiring = [s.assignment for s in people.role_overview(db.session, now()) if s.state == "expiring"]
    return render_template(
        "host/dashboard.html",
        my_roles=[ROLE_LABELS[role] for role in ROLES if role in current_roles()],
        shifts=patrol.on_patrol(db.session),
        # The full log holds notes and exact places: only its own audience sees it here.
        sees_log=sees_log,
        entries=patrol.recent_entries(db.session, limit=DASHBOARD_ENTRIES,
                                      hidden_kinds=patrol.kinds_hidden_from(current_roles())) if sees_log else [],
        tallies=_tallies(),
        expiring=expiring,
        role_labels=ROLE_LABELS,
        vaults=[sealing.VAULT_LABELS[vault] for vault in sorted(open_vaults())],
    )


@bp.post("/me/public-handle")
@requires()
def public_handle() -> ResponseReturnValue:
    """The member's own choice: their handle on the bench page and the public log, or only a count."""
    choice = request.form.get("show_handle")
    if choice not in ("0", "1"):
        flash(_("Please choose to show or to hide your handle."), "error")
        return redirect(url_for("host.dashboard") + "#public-me")
    show = choice == "1"
    save(lambda session: people.set_show_handle(session, session.get(Member, current_user.id), show,
                                                by=session.get(Member, current_user.id)))
    forget_public_pages()
    flash(_("The bench page and the public log now show your handle.") if show
          else _("Your handle is hidden: the public sees you only as a count, and the public log shows no handle on "
                 "your entries."))
    return redirect(url_for("host.dashboard") + "#public-me")


# -- the full log -------------------------------------------------------------


def _withdraw_form(entry_id: int, formdata: Any = None) -> WithdrawForm:
    return WithdrawForm(formdata=formdata, prefix=f"withdraw-{entry_id}")


def _log_page(form: LogEntryForm, failed_withdrawal: tuple[int, WithdrawForm] | None = None,
              before: int | None = None) -> ResponseReturnValue:
    before = before or _id_from(request.args.get("before"))
    # One extra row tells whether there is an older page at all.
    rows = patrol.recent_entries(db.session, limit=LOG_PAGE_SIZE + 1, before_id=before,
                                 hidden_kinds=patrol.kinds_hidden_from(current_roles()))
    entries = rows[:LOG_PAGE_SIZE]
    older = entries[-1].id if len(rows) > LOG_PAGE_SIZE else None
    withdraw_forms = {entry.id: _withdraw_form(entry.id) for entry in entries if entry.publishable and entry.public}
    if failed_withdrawal:
        withdraw_forms[failed_withdrawal[0]] = failed_withdrawal[1]
    page = render_template("host/log.html", form=form, entries=entries, before=before, older=older,
                           withdraw_forms=withdraw_forms)
    return page, _page_status(form, failed_withdrawal[1] if failed_withdrawal else None)


@bp.get("/log")
@requires(*LOG_ROLES)
def log() -> ResponseReturnValue:
    return _log_page(LogEntryForm(formdata=None))


def _record_entry(session: Session, form: LogEntryForm, member_id: int) -> patrol.LogEntry:
    moment = now()
    member = session.get(Member, member_id)
    if form.kind.data == patrol.INCIDENT:
        return patrol.record_incident(session, moment, member, patrol.SOURCE_WEB, form.note.data, form.place.data)
    return patrol.record_check_in(
        session, moment, member, patrol.SOURCE_WEB, note=form.note.data, place=form.place.data
    )


@bp.post("/log")
@requires(*LOG_ROLES)
def add_entry() -> ResponseReturnValue:
    form = LogEntryForm()
    if form.validate_on_submit():
        try:
            save(lambda session: _record_entry(session, form, current_user.id))
        except DomainError as error:
            attach_error(form, error, fields={"description": "note"})
        else:
            flash(_("Your entry is in the log."))
            return redirect(url_for("host.log"))
    return _log_page(form)


def _back_to_entry(entry_id: int) -> ResponseReturnValue:
    # Back to the page of the log the button was on.
    return redirect(url_for("host.log", before=_id_from(request.form.get("before"))) + f"#entry-{entry_id}")


def _withdraw(session: Session, entry_id: int, reason: str) -> patrol.LogEntry:
    moment, member = now(), session.get(Member, current_user.id)
    role = power_record.acting_role(session, moment, member, LOG_ROLES)
    return patrol.withdraw_entry(session, moment, entry_id, member, role, reason)


@bp.post("/log/<int:entry_id>/withdraw")
@requires(*LOG_ROLES)
def withdraw_entry(entry_id: int) -> ResponseReturnValue:
    db.get_or_404(patrol.LogEntry, entry_id)
    form = _withdraw_form(entry_id, formdata=request.form)
    if form.validate():
        try:
            save(lambda session: _withdraw(session, entry_id, form.reason.data))
        except DomainError as error:
            if error.field != "reason":  # about the entry, not the reason: withdrawn already, never public
                flash(error.message, "warning")
                return _back_to_entry(entry_id)
            attach_error(form, error)
        else:
            flash(_("The entry is withdrawn: the public log shows a gap with your role and the reason; the entry "
                    "stays in the full log."))
            return _back_to_entry(entry_id)
    return _log_page(LogEntryForm(formdata=None), failed_withdrawal=(entry_id, form),
                     before=_id_from(request.form.get("before")))


def _republish(session: Session, entry_id: int) -> patrol.LogEntry:
    moment, member = now(), session.get(Member, current_user.id)
    return patrol.republish_entry(session, moment, entry_id, member,
                                  power_record.acting_role(session, moment, member, LOG_ROLES))


@bp.post("/log/<int:entry_id>/publish")
@requires(*LOG_ROLES)
def publish_entry(entry_id: int) -> ResponseReturnValue:
    db.get_or_404(patrol.LogEntry, entry_id)
    try:
        save(lambda session: _republish(session, entry_id))
    except DomainError as error:
        flash(error.message, "warning")
    else:
        flash(_("The entry is back on the public log; the record of power used keeps both steps."))
    return _back_to_entry(entry_id)


# -- stewards and areas -------------------------------------------------------


@dataclass(frozen=True)
class MemberRow:
    member: Member
    roles: list[str]
    node_form: NodeForm


def _node_form(member: Member, formdata: Any = None) -> NodeForm:
    form = NodeForm(formdata=formdata, prefix=f"member-{member.id}", node_id=member.node_id or "")
    # Every row has this field: the label names whose radio it is.
    form.node_id.label.text = f"Node id of {member.handle}"
    return form


def _stewards_page(
    register: RegisterStewardForm | None = None,
    area: AreaForm | None = None,
    failed_node: tuple[int, NodeForm] | None = None,
    landmark: LandmarkForm | None = None,
) -> ResponseReturnValue:
    register = register or RegisterStewardForm(formdata=None, decided_on=role_pages.today())
    area = area or AreaForm(formdata=None)
    landmark = landmark or LandmarkForm(formdata=None)
    moment = now()
    rows = []
    for member in people.list_members(db.session):
        roles = people.active_roles(db.session, member, moment)
        node_form = failed_node[1] if failed_node and failed_node[0] == member.id else _node_form(member)
        rows.append(MemberRow(member, [ROLE_LABELS[role] for role in ROLES if role in roles], node_form))
    page = render_template(
        "host/stewards.html",
        register=register,
        area_form=area,
        rows=rows,
        areas=patrol.list_areas(db.session),
        landmark_form=landmark,
        landmarks=patrol.list_landmarks(db.session),
        term_days=_term_days(),
        # Steward roles waiting for a countersign: a captain may give it here.
        pending=[s.assignment for s in people.role_overview(db.session, moment)
                 if s.assignment.role == people.STEWARD and s.state != "revoked"
                 and (s.state == "pending" or s.assignment.pending_renewal is not None)],
    )
    return page, _page_status(register, area, landmark, failed_node[1] if failed_node else None)


@bp.get("/stewards")
@requires(*STEWARD_ROLES)
def stewards() -> ResponseReturnValue:
    return _stewards_page()


@bp.post("/stewards")
@requires(*STEWARD_ROLES)
def register_steward() -> ResponseReturnValue:
    form = RegisterStewardForm()
    # Each part the domain checks, checked on its own: every mistake in one answer, not one per submit.
    checks = {
        "handle": lambda: people.clean_handle(form.handle.data),
        "node_id": lambda: _node_is_free(form.handle.data, form.node_id.data),
        "radio_key": lambda: form.radio_key.data and radio_trust.parse_key(form.radio_key.data),
        "decided_on": lambda: role_pages.decision_of(form),
    }
    if validate_all(form, checks, PEOPLE_FIELDS):
        moment, term_days = now(), _term_days()
        try:
            member = save(
                lambda session: radio_trust.register_radio(
                    session, moment, form.handle.data, form.node_id.data, role_pages.decision_of(form), term_days,
                    role_pages.term_cap(), key=(form.radio_key.data or "").strip() or None,
                    by=session.get(Member, current_user.id), show_handle=form.show_handle.data,
                )
            )
        except DomainError as error:
            attach_error(form, error, fields=PEOPLE_FIELDS)
        else:
            if form.show_handle.data:
                forget_public_pages()
            flash(_("%(handle)s is registered with node %(node_id)s. A steward role asked for here opens nothing "
                    "until another host or a captain countersigns it (below, or on the roles page).",
                    handle=member.handle, node_id=member.node_id))
            return redirect(url_for("host.stewards"))
    return _stewards_page(register=form)


def _node_is_free(handle: str | None, raw: str | None) -> None:
    """Refuse a node id that is no node id, or is another member's radio (register_radio's own checks, up front)."""
    node_num = people.parse_node_id(raw or "")
    people._ensure_node_free(db.session, node_num, keep=people.find_member(db.session, handle or ""))


def _set_node(session: Session, member: Member, raw: str) -> None:
    # An empty field forgets the radio (lost, or handed back). Recorded, and the old radio's pinned key goes.
    radio_trust.change_node(session, now(), member, people.parse_node_id(raw) if raw else None,
                            by=current_user.member)


@bp.post("/stewards/<int:member_id>/node")
@requires(HOST)  # another radio is another key: a host's decision, recorded
def change_node(member_id: int) -> ResponseReturnValue:
    member = db.get_or_404(Member, member_id)
    form = _node_form(member, formdata=request.form)
    if form.validate():
        raw = (form.node_id.data or "").strip()
        try:
            save(lambda session: _set_node(session, member, raw))
        except DomainError as error:
            attach_error(form, error, fields=PEOPLE_FIELDS)
        else:
            flash(_("%(handle)s's radio is now %(node_id)s.", handle=member.handle, node_id=member.node_id) if raw
                  else _("%(handle)s has no radio now.", handle=member.handle))
            return redirect(url_for("host.stewards") + f"#member-{member_id}")
    return _stewards_page(failed_node=(member_id, form))


@bp.post("/stewards/<int:member_id>/hide-handle")
@requires(*STEWARD_ROLES)
def hide_handle(member_id: int) -> ResponseReturnValue:
    """At a steward's asking (one who never logs in, or whose role lapsed): hide their handle. Never to show it."""
    member = db.get_or_404(Member, member_id)
    save(lambda session: people.set_show_handle(session, session.get(Member, member_id), False,
                                                by=session.get(Member, current_user.id)))
    forget_public_pages()
    flash(_("%(handle)s's handle is hidden from the public: only %(handle)s can show it again, on their "
            "dashboard.",
            handle=member.handle))
    return redirect(url_for("host.stewards") + f"#member-{member_id}")


@bp.post("/areas")
@requires(*STEWARD_ROLES)
def add_area() -> ResponseReturnValue:
    form = AreaForm()
    if form.validate_on_submit():
        try:
            area = save(lambda session: patrol.add_area(session, form.area_name.data))
        except DomainError as error:
            attach_error(form, error, fields={"area name": "area_name"})
        else:
            flash(_("The area %(name)s is published. Log entries that name it show it on the public log.",
                    name=area.name))
            return redirect(url_for("host.stewards") + "#areas")
    return _stewards_page(area=form)


@bp.post("/areas/<int:area_id>/remove")
@requires(*STEWARD_ROLES)
def remove_area(area_id: int) -> ResponseReturnValue:
    save(lambda session: patrol.remove_area(session, area_id))
    flash(_("The area is no longer published. Entries that named it keep their private place only."))
    return redirect(url_for("host.stewards") + "#areas")


# Landmarks are what an arrest notice may name on the air: the hosts' call, as the air reaches every handheld.
@bp.post("/landmarks")
@requires(HOST)
def add_landmark() -> ResponseReturnValue:
    form = LandmarkForm()
    if form.validate_on_submit():
        try:
            landmark = save(lambda session: patrol.add_landmark(session, form.landmark_name.data))
        except DomainError as error:
            attach_error(form, error, fields={"landmark name": "landmark_name"})
        else:
            flash(_("%(name)s is listed: an arrest notice that names it carries it on the air.", name=landmark.name))
            return redirect(url_for("host.stewards") + "#landmarks")
    return _stewards_page(landmark=form)


@bp.post("/landmarks/<int:landmark_id>/remove")
@requires(HOST)
def remove_landmark(landmark_id: int) -> ResponseReturnValue:
    save(lambda session: patrol.remove_landmark(session, landmark_id))
    flash(_("The landmark is no longer listed: arrest notices that name it carry the shift area or “place with "
            "dispatch” instead."))
    return redirect(url_for("host.stewards") + "#landmarks")
