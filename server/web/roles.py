"""The roles page: grants and renewals on the assembly's decision, countersigns, the assembly's ruling on a recall.

Every change here waits for a second role-holder or names the assembly's
decision; the rules themselves live in ``server.domain.mandates``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from server.domain import mandates, people
from server.domain.errors import DomainError
from server.domain.people import (
    CAPTAIN,
    HOST,
    ROLE_LABELS,
    ROLES,
    Member,
    RoleAssignment,
)
from server.extensions import db
from server.web.access import now, requires, save
from server.web.filters import date_filter, time_filter
from server.web.forms import attach_error, check_each, status_for, validate_all
from flask_babel import gettext as _
from flask_babel import lazy_gettext

bp = Blueprint("roles", __name__, url_prefix="/host")

# The domain's limits, repeated so the form says so before the domain has to.
MAX_HANDLE = 24
MAX_TERM_DAYS = 366  # the form's bound; the domain refuses anything above ROLE_TERM_CAP_DAYS with a sentence
MAX_PASSWORD = 256

# Domain field names that differ from the forms'.
DECISION_FIELDS = {"assembly decision": "decision", "decision date": "decided_on", "decision place": "decision_place",
                   "term": "term_days", "node id": "node_id", "key": "radio_key"}
PASSWORD_FIELDS = {"handle": "holder", "password": "new_password"}
MEMBER_FIELDS = {**DECISION_FIELDS, "password": "new_password"}
STATE_LABELS = {
    "active": "Active",
    "expiring": "Expires within a week",
    "pending": "Pending: waits for a countersign",
    "suspended": "Suspended until the assembly decides",
    "lapsed": "Lapsed",
    "revoked": "Ended",
}
# The page's three lone forms share field names (a handle, a role, a password): each form's prefix keeps every id on
# the page its own, so each label and each link of the error summary finds its field ("grant-handle", not the
# first "handle" on the page). The renew and decide forms carry one per assignment ("renew-3-").
GRANT, MEMBER, PASSWORD = "grant", "member", "password"
OUTCOMES = [SelectChoice(mandates.ENDED, lazy_gettext("The assembly ended it (or withdrew the grant)")),
            SelectChoice(mandates.RESTORED, lazy_gettext("The assembly restored it (ends a suspension)"))]


def _at_most(limit: int) -> Length:
    return Length(max=limit, message=lazy_gettext("That is too long: at most %(max)d characters."))


def _required(what: str) -> DataRequired:
    return DataRequired(message=lazy_gettext("Please fill in the %(what)s.", what=what))


def term_field() -> IntegerField:
    return IntegerField(
        lazy_gettext("Term in days"),
        validators=[
            InputRequired(message=lazy_gettext("Please give the term in days.")),
            NumberRange(min=1, max=MAX_TERM_DAYS, message=lazy_gettext("A term runs from %(min)s to %(max)s days.")),
        ],
    )


def decided_on_field() -> StringField:
    return StringField(lazy_gettext("Day of the decision"), validators=[_required(lazy_gettext("day of the decision")), _at_most(10)],
                       render_kw={"type": "date"})


def place_field() -> StringField:
    return StringField(lazy_gettext("Meeting or place"), validators=[_required(lazy_gettext("meeting or place")), _at_most(people.MAX_PLACE)])


def decision_field() -> StringField:
    return StringField(lazy_gettext("Words of the decision"),
                       validators=[_required(lazy_gettext("words of the decision")), _at_most(people.MAX_DECISION_WORDS)])


def decision_of(form: FlaskForm) -> people.Decision:
    """The three parts of the decision on ``form``, checked against the clock."""
    return people.parse_decision(now(), form.decided_on.data, form.decision_place.data, form.decision.data)


def term_cap() -> int:
    """ROLE_TERM_CAP_DAYS, refused (a sentence on the form) when set above six weeks."""
    return people.term_cap(current_app.config["ROLE_TERM_CAP_DAYS"])


def default_term_days() -> int:
    """The term offered on the forms: ROLE_TERM_DAYS, never above the cap."""
    try:
        cap = term_cap()
    except DomainError:
        cap = people.DEFAULT_TERM_CAP_DAYS
    return max(1, min(int(current_app.config["ROLE_TERM_DAYS"]), cap))


def today() -> str:
    return now().date().isoformat()


class GrantRoleForm(FlaskForm):
    handle = StringField(lazy_gettext("Member's handle"), validators=[_required(lazy_gettext("handle")), _at_most(MAX_HANDLE)])
    role = SelectField(
        lazy_gettext("Role"),
        choices=[SelectChoice(role, lazy_gettext(ROLE_LABELS.untranslated(role))) for role in ROLES],
        invalid_choice_message=lazy_gettext("Please choose a role from the list."),
    )
    term_days = term_field()
    decided_on = decided_on_field()
    decision_place = place_field()
    decision = decision_field()


class AddMemberForm(FlaskForm):
    """A member without a steward's radio: a handle, a first password, and a role asked for."""

    handle = StringField(lazy_gettext("Handle"), validators=[_required(lazy_gettext("handle")), _at_most(MAX_HANDLE)])
    role = SelectField(
        lazy_gettext("Role"),
        choices=[SelectChoice(role, lazy_gettext(ROLE_LABELS.untranslated(role))) for role in mandates.WEB_ONLY_ROLES],
        invalid_choice_message=lazy_gettext("Please choose a role from the list."),
    )
    new_password = PasswordField(
        lazy_gettext("First password"),
        validators=[
            _required(lazy_gettext("first password")),
            Length(min=people.MIN_PASSWORD_LENGTH, max=MAX_PASSWORD,
                   message=lazy_gettext("A password has from %(min)d to %(max)d characters.")),
        ],
    )
    term_days = term_field()
    decided_on = decided_on_field()
    decision_place = place_field()
    decision = decision_field()


class RenewForm(FlaskForm):
    """One per assignment, so it carries a prefix; the app-wide CSRF check covers it."""

    class Meta:
        csrf = False

    term_days = term_field()
    decided_on = decided_on_field()
    decision_place = place_field()
    decision = decision_field()


class DecideForm(FlaskForm):
    """The assembly's decision on a role: one per assignment, with a prefix."""

    class Meta:
        csrf = False

    outcome = SelectField(lazy_gettext("What the assembly decided"), choices=OUTCOMES,
                          invalid_choice_message=lazy_gettext("Please choose ended or restored."))
    decided_on = decided_on_field()
    decision_place = place_field()
    decision = decision_field()


class PasswordForm(FlaskForm):
    # "new_password" is a name the error pages never echo back.
    holder = StringField(lazy_gettext("Member's handle"), validators=[_required(lazy_gettext("handle")), _at_most(MAX_HANDLE)])
    new_password = PasswordField(
        lazy_gettext("New password"),
        validators=[
            _required(lazy_gettext("new password")),
            Length(min=people.MIN_PASSWORD_LENGTH, max=MAX_PASSWORD,
                   message=lazy_gettext("A password has from %(min)d to %(max)d characters.")),
        ],
    )


def _until(moment: datetime) -> str:
    return f"{date_filter(moment)}, {time_filter(moment)}"


def _me(session: Session) -> Member:
    return session.get(Member, current_user.id)


@dataclass(frozen=True)
class RoleRow:
    summary: people.RoleSummary
    # Only the newest assignment of a role can be renewed or decided on from this page.
    renew_form: RenewForm | None
    decide_form: DecideForm | None


def _renew_form(assignment_id: int, formdata: Any = None) -> RenewForm:
    return RenewForm(formdata=formdata, prefix=f"renew-{assignment_id}", term_days=default_term_days(),
                     decided_on=today())


def _decide_form(assignment_id: int, formdata: Any = None) -> DecideForm:
    return DecideForm(formdata=formdata, prefix=f"decide-{assignment_id}", decided_on=today())


def _role_rows(failed: tuple[int, FlaskForm] | None) -> list[RoleRow]:
    rows, seen = [], set()
    for summary in people.role_overview(db.session, now()):
        assignment = summary.assignment
        newest = (assignment.member_id, assignment.role) not in seen
        seen.add((assignment.member_id, assignment.role))
        renew = decide = None
        if newest and summary.state != "revoked":
            decide = _decide_form(assignment.id)
            if summary.state in ("active", "expiring", "lapsed") and assignment.pending_renewal is None:
                renew = _renew_form(assignment.id)
        if failed and failed[0] == assignment.id:
            if isinstance(failed[1], RenewForm):
                renew = failed[1]
            else:
                decide = failed[1]
        rows.append(RoleRow(summary, renew, decide))
    return rows


def _roles_page(
    grant: GrantRoleForm | None = None,
    password: PasswordForm | None = None,
    member: AddMemberForm | None = None,
    failed: tuple[int, FlaskForm] | None = None,
) -> ResponseReturnValue:
    grant = grant or GrantRoleForm(formdata=None, prefix=GRANT, term_days=default_term_days(), decided_on=today())
    password = password or PasswordForm(formdata=None, prefix=PASSWORD)
    member = member or AddMemberForm(formdata=None, prefix=MEMBER, term_days=default_term_days(), decided_on=today())
    try:
        cap, cap_error = term_cap(), None
    except DomainError as error:
        cap, cap_error = None, error.message
    page = render_template(
        "host/roles.html",
        grant=grant,
        password_form=password,
        member_form=member,
        rows=_role_rows(failed),
        role_labels=ROLE_LABELS,
        state_labels=STATE_LABELS,
        min_password=people.MIN_PASSWORD_LENGTH,
        cap=cap,
        cap_error=cap_error,
        me=current_user.id,
    )
    status = max(status_for(form) for form in (grant, password, member, *([failed[1]] if failed else [])))
    return page, status


@bp.get("/roles")
@requires(HOST)
def page() -> ResponseReturnValue:
    return _roles_page()


def _grant(session: Session, form: GrantRoleForm) -> RoleAssignment:
    member = people.get_member(session, form.handle.data)
    return mandates.grant(session, now(), member, form.role.data, decision=decision_of(form),
                          term_days=form.term_days.data, cap_days=term_cap(), by=_me(session))


@bp.post("/roles")
@requires(HOST)
def grant() -> ResponseReturnValue:
    form = GrantRoleForm(prefix=GRANT)
    # The handle and the decision checked on their own too: every mistake in one answer (web/forms.py).
    if validate_all(form, {"handle": lambda: people.clean_handle(form.handle.data),
                           "decided_on": lambda: decision_of(form)}, DECISION_FIELDS):
        try:
            assignment = save(lambda session: _grant(session, form))
        except DomainError as error:
            attach_error(form, error, fields=DECISION_FIELDS)
        else:
            flash(_("%(handle)s's %(role)s role until %(until)s is asked for. It opens nothing until "
                    "another host countersigns it.",
                    handle=assignment.member.handle, role=ROLE_LABELS[assignment.role], until=_until(assignment.expires_at)))
            return redirect(url_for("roles.page") + f"#role-{assignment.id}")
    return _roles_page(grant=form)


def _add_member(session: Session, form: AddMemberForm) -> RoleAssignment:
    return mandates.add_member_without_radio(
        session, now(), form.handle.data, form.role.data, form.new_password.data, decision=decision_of(form),
        term_days=form.term_days.data, cap_days=term_cap(), by=_me(session))


@bp.post("/roles/members")
@requires(HOST)
def add_member() -> ResponseReturnValue:
    form = AddMemberForm(prefix=MEMBER)
    if validate_all(form, {"handle": lambda: people.clean_handle(form.handle.data),
                           "decided_on": lambda: decision_of(form)}, MEMBER_FIELDS):
        try:
            assignment = save(lambda session: _add_member(session, form))
        except DomainError as error:
            attach_error(form, error, fields=MEMBER_FIELDS)
        else:
            flash(_("%(handle)s can log in once another host countersigns their %(role)s role. Tell them "
                    "their first password in person.",
                    handle=assignment.member.handle, role=ROLE_LABELS[assignment.role]))
            return redirect(url_for("roles.page") + f"#role-{assignment.id}")
    return _roles_page(member=form)


def _on_assignment(assignment_id: int, work: Callable[[Session, RoleAssignment], Any]) -> Any:
    db.get_or_404(RoleAssignment, assignment_id)
    return save(lambda session: work(session, people.get_assignment(session, assignment_id)))


@bp.post("/roles/<int:assignment_id>/renew")
@requires(HOST)
def renew(assignment_id: int) -> ResponseReturnValue:
    db.get_or_404(RoleAssignment, assignment_id)
    form = _renew_form(assignment_id, formdata=request.form)
    valid = form.validate()
    if check_each(form, {"decided_on": lambda: decision_of(form)}, DECISION_FIELDS) and valid:
        try:
            renewal = _on_assignment(assignment_id, lambda session, assignment: mandates.renew(
                session, now(), assignment, decision=decision_of(form), term_days=form.term_days.data,
                cap_days=term_cap(), by=_me(session)))
        except DomainError as error:
            attach_error(form, error, fields=DECISION_FIELDS)
        else:
            assignment = renewal.assignment
            flash(_("A renewal of %(handle)s's %(role)s role until %(until)s is asked for. It takes "
                    "effect when another host countersigns it.",
                    handle=assignment.member.handle, role=ROLE_LABELS[assignment.role], until=_until(renewal.new_expires_at)))
            return redirect(url_for("roles.page") + f"#role-{assignment_id}")
    return _roles_page(failed=(assignment_id, form))


def _back(assignment_id: int) -> ResponseReturnValue:
    """Back to the page the button was on: the stewards page for a captain, the roles page for a host."""
    if request.form.get("back") == "stewards":
        return redirect(url_for("host.stewards") + "#pending")
    return redirect(url_for("roles.page") + f"#role-{assignment_id}")


@bp.post("/roles/<int:assignment_id>/countersign")
@requires(HOST, CAPTAIN)
def countersign(assignment_id: int) -> ResponseReturnValue:
    try:
        assignment = _on_assignment(assignment_id, lambda session, assignment: mandates.countersign(
            session, now(), assignment, by=_me(session)))
    except DomainError as error:
        flash(error.message, "error")
    else:
        flash(_("Countersigned: %(handle)s is %(role)s until %(until)s.",
                handle=assignment.member.handle, role=ROLE_LABELS[assignment.role], until=_until(assignment.expires_at)))
    return _back(assignment_id)


@bp.post("/roles/<int:assignment_id>/decide")
@requires(HOST)
def decide(assignment_id: int) -> ResponseReturnValue:
    db.get_or_404(RoleAssignment, assignment_id)
    form = _decide_form(assignment_id, formdata=request.form)
    valid = form.validate()
    if check_each(form, {"decided_on": lambda: decision_of(form)}, DECISION_FIELDS) and valid:
        try:
            assignment = _on_assignment(assignment_id, lambda session, assignment: mandates.decide(
                session, now(), assignment, outcome=form.outcome.data, decision=decision_of(form), by=_me(session)))
        except DomainError as error:
            attach_error(form, error, fields=DECISION_FIELDS)
        else:
            if assignment.revoked_at is not None:
                flash(_("%(handle)s's %(role)s role is ended, as the assembly decided. It stays in the history "
                        "below.", handle=assignment.member.handle, role=ROLE_LABELS[assignment.role]))
            else:
                flash(_("%(handle)s's %(role)s role is restored, as the assembly decided. It stays in the history "
                        "below.", handle=assignment.member.handle, role=ROLE_LABELS[assignment.role]))
            return redirect(url_for("roles.page") + f"#role-{assignment_id}")
    return _roles_page(failed=(assignment_id, form))


def _set_password(session: Session, form: PasswordForm) -> Member:
    member = people.get_member(session, form.holder.data)
    return mandates.set_password_for(session, now(), member, form.new_password.data, by=_me(session))


@bp.post("/roles/password")
@requires(HOST)
def set_password() -> ResponseReturnValue:
    form = PasswordForm(prefix=PASSWORD)
    if form.validate_on_submit():
        try:
            member = save(lambda session: _set_password(session, form))
        except DomainError as error:
            attach_error(form, error, fields=PASSWORD_FIELDS)
        else:
            flash(_("%(handle)s can log in with the new password once a role of theirs is in force. Tell it to "
                    "them in person.",
                    handle=member.handle))
            return redirect(url_for("roles.page"))
    return _roles_page(password=form)
