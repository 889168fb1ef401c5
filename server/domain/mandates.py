"""Mandates the assembly controls: countersigned grants and renewals, capped terms, recall.

A role is lent by the assembly. Whoever records a grant or a renewal names
the decision behind it (the day, the meeting or place, its words), and it
opens nothing until a *second* current role-holder countersigns it: another
host, or a captain for a steward role. Nobody grants, renews or countersigns
a role for themselves. Terms are capped (``ROLE_TERM_CAP_DAYS``, at most six
weeks); a longer term is refused with a sentence, never quietly shortened.

Any two role-holders can suspend a role at once, pending the next assembly:
one asks, with a reason, a different one confirms, and the role stops opening
anything that minute (every permission check goes through
``people.active_roles``). A host then records the assembly's decision, which
ends the role or restores it; never the suspended member themselves.

Every one of these, and a password set for another member, is a row of the
record of power used (``power_record``). The hub itself acts only at its
terminal: ``seat`` puts a role in force without a countersign, for the first
host of a hub that has no active host and for the simulated radio's stewards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from server.domain import people, power_record
from server.domain.errors import Conflict, Invalid
from server.domain.people import (
    ACCOUNTABILITY,
    CAPTAIN,
    CARE,
    DISPATCH,
    HOST,
    MEDIATOR,
    STEWARD,
    Decision,
    Member,
    RoleAssignment,
    RoleRenewal,
)
from server.domain.text import clean_text
from server.i18n import N_
from server.i18n import gettext as _

# The roles a member may hold on the web alone, without a steward's radio.
WEB_ONLY_ROLES = (MEDIATOR, CARE, DISPATCH, ACCOUNTABILITY)
MAX_SUSPENSION_REASON = 300
ENDED, RESTORED = "end", "restore"


def _subject(assignment_or_member: RoleAssignment | Member, role: str | None = None) -> str:
    if isinstance(assignment_or_member, RoleAssignment):
        return f"{assignment_or_member.member.handle}: {assignment_or_member.role}"
    return f"{assignment_or_member.handle}: {role}"


def _signers_for(role: str) -> tuple[str, ...]:
    """Who may grant, renew or countersign ``role``: hosts, and captains for stewards."""
    return (HOST, CAPTAIN) if role == STEWARD else (HOST,)


# Whole sentences for each act, so each language words them its own way.
_ONLY_SIGNERS = {
    ("grant", True): N_("Only a host or a captain in office can grant a %(role)s role."),
    ("grant", False): N_("Only a host in office can grant a %(role)s role."),
    ("renew", True): N_("Only a host or a captain in office can renew a %(role)s role."),
    ("renew", False): N_("Only a host in office can renew a %(role)s role."),
    ("countersign", True): N_("Only a host or a captain in office can countersign a %(role)s role."),
    ("countersign", False): N_("Only a host in office can countersign a %(role)s role."),
}
_NOT_FOR_THEMSELVES = {
    "grants": N_("Nobody grants a role for themselves: another role-holder must, on the assembly's decision."),
    "renews": N_("Nobody renews a role for themselves: another role-holder must, on the assembly's decision."),
    "countersigns": N_("Nobody countersigns a role for themselves: another role-holder must, on the assembly's "
                       "decision."),
}
_ONLY_ROLE_HOLDERS = {
    "ask for a suspension": N_("Only a member holding a role in force can ask for a suspension."),
    "confirm a suspension": N_("Only a member holding a role in force can confirm a suspension."),
}


def _check_signer(session: Session, now: datetime, by: Member, role: str, what: str) -> str:
    held = people.active_roles(session, by, now)
    allowed = _signers_for(role)
    if not held & set(allowed):
        message = _ONLY_SIGNERS[(what, role == STEWARD)]
        raise Invalid(_(message, role=people.ROLE_LABELS[role].lower()), field="role")
    return power_record.acting_role(session, now, by, allowed)


def _refuse_self(by: Member | None, member: Member, what: str) -> None:
    if by is not None and by.id == member.id:
        raise Invalid(_(_NOT_FOR_THEMSELVES[what]), field="handle")


def grant(session: Session, now: datetime, member: Member, role: str, *, decision: Decision, term_days: int,
          cap_days: int, by: Member | None) -> RoleAssignment:
    """Ask for ``role`` for ``member`` on the assembly's ``decision``: pending until a second role-holder countersigns.

    ``by`` is None at the Pi's terminal: the hub is not a role-holder, so any
    current host (or captain, for a steward role) may countersign it.
    """
    role = people.check_role(role)
    term_days = people.check_term(term_days, cap_days)
    _refuse_self(by, member, "grants")
    acting = _check_signer(session, now, by, role, "grant") if by is not None else power_record.SYSTEM_ROLE
    existing = people.current_assignment(session, member, role, now)
    if existing is not None:
        if existing.pending:
            raise Conflict(_("%(handle)s's %(role)s role already waits for a countersign.",
                             handle=member.handle, role=role), field="role")
        raise Conflict(_("%(handle)s already holds the %(role)s role; renew it instead.",
                         handle=member.handle, role=role), field="role")
    assignment = RoleAssignment(
        member=member, role=role, granted_at=now, expires_at=now + timedelta(days=term_days),
        decision=decision.words, decided_on=decision.on, decision_place=decision.place, granted_by=by,
    )
    session.add(assignment)
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action="role-granted", subject=_subject(assignment),
                        reason=f"{term_days} days, pending a countersign; the decision of {decision.reference}")
    return assignment


def seat(session: Session, now: datetime, member: Member, role: str, *, decision: Decision, term_days: int,
         cap_days: int, why: str) -> RoleAssignment:
    """A role in force at once, by the hub's own rule (``why``): the first host of a hub with none, a simulated steward."""
    role = people.check_role(role)
    term_days = people.check_term(term_days, cap_days)
    if people.current_assignment(session, member, role, now) is not None:
        raise Conflict(_("%(handle)s already holds the %(role)s role.", handle=member.handle, role=role), field="role")
    assignment = RoleAssignment(
        member=member, role=role, granted_at=now, expires_at=now + timedelta(days=term_days),
        decision=decision.words, decided_on=decision.on, decision_place=decision.place, countersigned_at=now,
    )
    session.add(assignment)
    session.flush()
    power_record.record(session, now, actor=None, role=power_record.SYSTEM_ROLE, action="role-granted",
                        subject=_subject(assignment), reason=f"{term_days} days, in force at once: {why}; "
                                                             f"the decision of {decision.reference}")
    return assignment


def renew(session: Session, now: datetime, assignment: RoleAssignment, *, decision: Decision, term_days: int,
          cap_days: int, by: Member | None) -> RoleRenewal:
    """Ask for a new term from now, on the assembly's ``decision``: the old term runs until a second role-holder countersigns.

    A lapsed role can be renewed too: the assembly often meets after the date.
    """
    term_days = people.check_term(term_days, cap_days)
    _refuse_self(by, assignment.member, "renews")
    acting = _check_signer(session, now, by, assignment.role, "renew") if by is not None else power_record.SYSTEM_ROLE
    if assignment.revoked_at is not None:
        raise Invalid(_("An ended role cannot be renewed; grant it again."), field="role")
    if assignment.countersigned_at is None:
        raise Conflict(_("That grant still waits for its countersign: countersign it first."), field="role")
    if assignment.suspended_at is not None:
        raise Conflict(_("That role is suspended: the assembly ends or restores it before any renewal."), field="role")
    if assignment.pending_renewal is not None:
        raise Conflict(_("A renewal of that role already waits for a countersign."), field="role")
    renewal = RoleRenewal(
        assignment=assignment, renewed_at=now, decision=decision.words, decided_on=decision.on,
        decision_place=decision.place, previous_expires_at=assignment.expires_at,
        new_expires_at=now + timedelta(days=term_days), requested_by=by,
    )
    session.add(renewal)
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action="role-renewed", subject=_subject(assignment),
                        reason=f"{term_days} days, pending a countersign; the decision of {decision.reference}")
    return renewal


def countersign(session: Session, now: datetime, assignment: RoleAssignment, *, by: Member) -> RoleAssignment:
    """The second signature: the pending grant (or else the pending renewal) of ``assignment`` comes into force now."""
    _refuse_self(by, assignment.member, "countersigns")
    acting = _check_signer(session, now, by, assignment.role, "countersign")
    if assignment.revoked_at is not None:
        raise Conflict(_("That role has ended: there is nothing to countersign."), field="role")
    if assignment.countersigned_at is None:
        if assignment.granted_by_id == by.id:
            raise Invalid(_("You asked for this grant: a second role-holder must countersign it."), field="role")
        if assignment.expires_at <= now:
            raise Conflict(_("That grant's term ran out before anyone countersigned it: grant it again."), field="role")
        assignment.countersigned_at, assignment.countersigned_by = now, by
        what, decision = "grant", assignment.decision_reference
    else:
        renewal = assignment.pending_renewal
        if renewal is None:
            raise Conflict(_("Nothing about that role waits for a countersign."), field="role")
        if assignment.suspension_asked_at is not None:
            raise Conflict(_("A suspension of that role is asked or in force: the assembly decides before any "
                             "renewal."),
                           field="role")
        if renewal.requested_by_id == by.id:
            raise Invalid(_("You asked for this renewal: a second role-holder must countersign it."), field="role")
        if renewal.new_expires_at <= now:
            raise Conflict(_("That renewal's term ran out before anyone countersigned it: renew it again."), field="role")
        renewal.countersigned_at, renewal.countersigned_by = now, by
        renewal.previous_expires_at = assignment.expires_at
        assignment.expires_at = renewal.new_expires_at
        assignment.lapsed_at = None
        what, decision = "renewal", renewal.decision_reference
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action="role-countersigned",
                        subject=_subject(assignment), reason=f"the {what}, until {assignment.expires_at:%Y-%m-%d}; "
                                                             f"the decision of {decision}")
    return assignment


def _role_holder(session: Session, now: datetime, by: Member, what: str) -> str:
    if not people.active_roles(session, by, now):
        raise Invalid(_(_ONLY_ROLE_HOLDERS[what]), field="reason")
    return power_record.acting_role(session, now, by, people.ROLES)


def ask_suspension(session: Session, now: datetime, assignment: RoleAssignment, *, by: Member,
                   reason: str) -> RoleAssignment:
    """The first of two role-holders asks to suspend a role until the next assembly (a recall)."""
    acting = _role_holder(session, now, by, "ask for a suspension")
    if by.id == assignment.member_id:
        raise Invalid(_("You cannot ask to suspend your own role: ask the assembly, or another role-holder."),
                      field="reason")
    reason = clean_text(reason, field="reason", max_length=MAX_SUSPENSION_REASON, multiline=True)
    if not assignment.is_active(now):
        raise Conflict(_("Only a role in force can be suspended."), field="reason")
    if assignment.suspension_asked_at is not None:
        raise Conflict(_("A suspension of that role is already asked: a second role-holder confirms it."),
                       field="reason")
    assignment.suspension_asked_at, assignment.suspension_asked_by = now, by
    assignment.suspension_reason = reason
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action="suspension-asked",
                        subject=_subject(assignment), reason=reason)
    return assignment


def confirm_suspension(session: Session, now: datetime, assignment: RoleAssignment, *, by: Member) -> RoleAssignment:
    """The second role-holder confirms: the role opens nothing from this minute until the assembly decides."""
    acting = _role_holder(session, now, by, "confirm a suspension")
    if by.id == assignment.member_id:
        raise Invalid(_("You cannot confirm the suspension of your own role."), field="reason")
    if assignment.suspension_asked_at is None or assignment.suspended_at is not None:
        raise Conflict(_("No suspension of that role waits for confirmation."), field="reason")
    if assignment.suspension_asked_by_id == by.id:
        raise Invalid(_("You asked for this suspension: a second role-holder must confirm it."), field="reason")
    if assignment.revoked_at is not None or assignment.expires_at <= now:
        raise Conflict(_("That role is no longer in force."), field="reason")
    assignment.suspended_at, assignment.suspended_by = now, by
    asker = assignment.suspension_asked_by
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action="role-suspended", subject=_subject(assignment),
                        reason=f"pending the assembly; asked by {asker.handle if asker else 'a former member'}: "
                               f"{assignment.suspension_reason}")
    return assignment


def decide(session: Session, now: datetime, assignment: RoleAssignment, *, outcome: str, decision: Decision,
           by: Member) -> RoleAssignment:
    """A host records the assembly's decision: ``end`` the role (or a pending grant), or ``restore`` a suspended one."""
    if by.id == assignment.member_id:
        raise Invalid(_("The assembly's decision about your own role is recorded by another host."), field="outcome")
    if not people.has_role(session, by, HOST, now):
        raise Invalid(_("Only a host in office records the assembly's decision on a role."), field="outcome")
    acting = HOST
    if assignment.revoked_at is not None:
        raise Conflict(_("That role has already ended."), field="outcome")
    if outcome == RESTORED:
        if assignment.suspension_asked_at is None:
            raise Conflict(_("That role is not suspended: there is nothing to restore."), field="outcome")
        assignment.suspension_asked_at = assignment.suspension_asked_by = assignment.suspension_reason = None
        assignment.suspended_at = assignment.suspended_by = None
        action = "role-restored"
    elif outcome == ENDED:
        assignment.revoked_at = now
        for renewal in assignment.renewals:
            if renewal.pending:
                renewal.withdrawn_at = now
        action = "role-ended"
    else:
        raise Invalid(_("Please choose whether the assembly ended the role or restored it."), field="outcome")
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action=action, subject=_subject(assignment),
                        reason=f"the decision of {decision.reference}")
    return assignment


def set_password_for(session: Session, now: datetime, member: Member, password: str, *, by: Member | None) -> Member:
    """A host sets another member's password (a first one, or a lost one), in the record.

    Never for a member whose role is in force: a host who could log in as
    another role-holder could countersign their own grants.
    """
    if by is not None and by.id != member.id and people.active_roles(session, member, now):
        raise Invalid(_("%(handle)s holds a role in force, so only they change their password. A lost one: two "
                        "role-holders suspend the role, and the assembly restores it with a new password.",
                        handle=member.handle),
                      field="handle")
    people.set_password(member, password, now)
    if by is None or by.id != member.id:
        acting = power_record.acting_role(session, now, by, (HOST,))
        power_record.record(session, now, actor=by, role=acting, action="password-reset", subject=member.handle,
                            reason="a password set for them, to be told in person")
    return member


def add_member_without_radio(session: Session, now: datetime, handle: str, role: str, password: str, *,
                             decision: Decision, term_days: int, cap_days: int, by: Member) -> RoleAssignment:
    """A mediator, care ring member, dispatcher or accountability circle member with a web login and no radio."""
    if role not in WEB_ONLY_ROLES:
        raise Invalid(_("A member without a radio holds a mediator, care ring, dispatch or accountability role; "
                        "stewards are registered with their radio."), field="role")
    member = people.add_member(session, now, handle)
    set_password_for(session, now, member, password, by=by)
    return grant(session, now, member, role, decision=decision, term_days=term_days, cap_days=cap_days, by=by)


def has_active_host(session: Session, now: datetime) -> bool:
    return people.count_active_role_holders(session, HOST, now) > 0


def create_host(session: Session, now: datetime, handle: str, password: str, *, decision: Decision,
                term_days: int, cap_days: int) -> RoleAssignment:
    """``safebench create-host``: a host in force only while the hub has no active host; otherwise a pending one."""
    if people.find_member(session, handle) is not None:
        if has_active_host(session, now):
            raise Conflict(_("%(handle)s exists already; use 'safebench role renew %(name)s host' to renew "
                             "their role (a host countersigns it).",
                             handle=repr(handle), name=handle), field="handle")
        raise Conflict(_("%(handle)s exists already, and no host is in office to countersign a renewal: create a "
                         "host under a new handle, who then countersigns 'safebench role renew %(name)s host'.",
                         handle=repr(handle), name=handle),
                       field="handle")
    member = people.add_member(session, now, handle)
    people.set_password(member, password, now)
    if has_active_host(session, now):
        assignment = grant(session, now, member, HOST, decision=decision, term_days=term_days, cap_days=cap_days,
                           by=None)
        reason = "a pending host: the hub has an active host, who must countersign"
    else:
        assignment = seat(session, now, member, HOST, decision=decision, term_days=term_days, cap_days=cap_days,
                          why="the hub had no active host")
        reason = "the hub had no active host"
    power_record.record(session, now, actor=None, role=power_record.SYSTEM_ROLE, action="host-created",
                        subject=member.handle, reason=reason)
    return assignment


def register_steward(session: Session, now: datetime, handle: str, node_num: int, *, decision: Decision,
                     term_days: int, cap_days: int, by: Member | None, in_force: str | None = None) -> Member:
    """A steward with their handheld's node number, and a steward role asked for if they lack one.

    ``in_force`` (the hub's reason) seats the role at once: only for the simulated radio's stewards.
    """
    member = people.find_member(session, handle)
    if member is None:
        member = people.add_member(session, now, handle, node_num)
    else:
        people.set_node(session, member, node_num)
    if people.current_assignment(session, member, STEWARD, now) is None:
        if in_force:
            seat(session, now, member, STEWARD, decision=decision, term_days=term_days, cap_days=cap_days,
                 why=in_force)
        else:
            grant(session, now, member, STEWARD, decision=decision, term_days=term_days, cap_days=cap_days, by=by)
    return member


# -- the public mandates page ---------------------------------------------------


@dataclass(frozen=True)
class Mandate:
    """One role on the public mandates page: what a neighbour may know, and nothing else about the person."""

    assignment_id: int
    member_id: int
    role: str
    who: str  # the handle, or "a steward" when the member chose so
    state: str  # "in force", "pending", "suspended"
    since: datetime  # in force since; for a pending grant, asked since
    until: datetime
    decided_on: date | None
    decision_place: str | None
    renewal_until: datetime | None  # a renewal waiting for its countersign
    renewal_decided_on: date | None
    renewal_place: str | None
    # For role-holders' eyes only (the page shows them to members logged in): the public sees a suspension in force.
    suspension_asked: bool
    suspension_asked_by_id: int | None
    suspension_reason: str | None


def public_mandates(session: Session, now: datetime) -> list[Mandate]:
    """Every role in force, pending or suspended now, by role then since when."""
    rows = session.scalars(
        select(RoleAssignment).where(RoleAssignment.revoked_at.is_(None), RoleAssignment.expires_at > now)
    )
    mandates = []
    for a in rows:
        state = "pending" if a.countersigned_at is None else "suspended" if a.suspended_at else "in force"
        renewal = a.pending_renewal
        mandates.append(Mandate(
            assignment_id=a.id, member_id=a.member_id, role=a.role,
            who=people.ROLE_NOUNS[a.role] if a.member.appears_as_role else a.member.handle,
            state=state, since=a.countersigned_at or a.granted_at, until=a.expires_at,
            decided_on=a.decided_on, decision_place=a.decision_place,
            renewal_until=renewal.new_expires_at if renewal else None,
            renewal_decided_on=renewal.decided_on if renewal else None,
            renewal_place=renewal.decision_place if renewal else None,
            suspension_asked=a.suspension_asked_at is not None and a.suspended_at is None,
            suspension_asked_by_id=a.suspension_asked_by_id, suspension_reason=a.suspension_reason,
        ))
    order = {role: n for n, role in enumerate(people.ROLES)}
    return sorted(mandates, key=lambda m: (order[m.role], m.state != "in force", m.since, m.assignment_id))


def set_appearance(session: Session, member: Member, as_role: bool) -> Member:
    """The member's own choice: their handle on the mandates page, or "a steward" (their role's noun)."""
    member.appears_as_role = as_role
    session.flush()
    return member


def waiting_for_countersign(session: Session, now: datetime, member: Member) -> list[RoleAssignment]:
    """Grants and renewals ``member`` may countersign now: not their own, not asked by them, roles they may sign for."""
    held = people.active_roles(session, member, now)
    # Only the assignments that can be waiting, with their renewals in one more query: not every
    # grant the hub ever made, each loading its renewals on its own (issue 14: years of data).
    renewal_open = select(RoleRenewal.id).where(
        RoleRenewal.assignment_id == RoleAssignment.id, RoleRenewal.countersigned_at.is_(None),
        RoleRenewal.withdrawn_at.is_(None), RoleRenewal.new_expires_at > now,
    ).exists()
    candidates = select(RoleAssignment).where(
        RoleAssignment.revoked_at.is_(None),
        or_(and_(RoleAssignment.countersigned_at.is_(None), RoleAssignment.expires_at > now),
            and_(RoleAssignment.countersigned_at.is_not(None), RoleAssignment.suspension_asked_at.is_(None),
                 renewal_open)),
    ).options(selectinload(RoleAssignment.renewals))
    waiting = []
    for a in session.scalars(candidates):
        renewal = a.pending_renewal if a.countersigned_at is not None else None
        if a.countersigned_at is None and a.expires_at <= now:
            continue  # ran out unsigned: it must be granted again
        if a.countersigned_at is not None and (renewal is None or renewal.new_expires_at <= now
                                               or a.suspension_asked_at is not None):
            continue
        asker = a.granted_by_id if a.countersigned_at is None else renewal.requested_by_id
        if a.member_id != member.id and asker != member.id and held & set(_signers_for(a.role)):
            waiting.append(a)
    return waiting
