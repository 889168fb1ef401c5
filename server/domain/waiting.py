"""Who can read what neighbours send right now, and what waits on whom across the hub.

"Can read" is sealed storage's own rule (domain/sealing.py): a vault's
words open for the members whose role in force is one of its ``READERS``
(their grant follows the role). When no member holds such a role, nobody
can read what a neighbour just sent: the pages say so instead of "dispatch
was told", and a host sees it on every hub page until the role is held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.domain import cases, mediation, people, sealing
from server.domain.people import RoleAssignment, RoleRenewal

# The vaults neighbours write into from the bench, in the order a host should fill their readers' roles.
NEIGHBOURS_VAULTS = (sealing.CASES, sealing.MEDIATION, sealing.COMPLAINTS, sealing.AID)


def reader_roles(vault: str) -> tuple[str, ...]:
    """The roles whose holders read ``vault``, in the hub's order of roles."""
    return tuple(role for role in people.ROLES if role in sealing.READERS[vault])


def anyone_reads(session: Session, now: datetime, vault: str) -> bool:
    """Whether some member holds, now, a role that reads ``vault``."""
    return any(people.count_active_role_holders(session, role, now) for role in reader_roles(vault))


def unread_vaults(session: Session, now: datetime) -> list[str]:
    """The vaults neighbours write into that nobody may read now, for want of anyone holding a reader's role."""
    return [vault for vault in NEIGHBOURS_VAULTS if not anyone_reads(session, now, vault)]


@dataclass(frozen=True)
class WaitingWork:
    """Everything waiting on someone at the hub, as counts (nothing sealed is opened to count it)."""

    open_cases: int
    unconfirmed_reports: int
    cases_past_24h: int
    cases_past_48h: int
    mediation_new: int
    countersigns: int

    @property
    def anything(self) -> bool:
        return any((self.open_cases, self.mediation_new, self.countersigns))


def open_arrest_cases(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(cases.ArrestCase)
                          .where(cases.ArrestCase.closed_at.is_(None))) or 0


def new_mediation_requests(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(mediation.MediationRequest)
                          .where(mediation.MediationRequest.status == mediation.NEW)) or 0


def countersigns_waiting(session: Session, now: datetime) -> int:
    """Grants and renewals waiting for anyone's countersign (domain/mandates.py waiting_for_countersign, hub-wide)."""
    grants = session.scalar(select(func.count()).select_from(RoleAssignment).where(
        RoleAssignment.revoked_at.is_(None), RoleAssignment.countersigned_at.is_(None),
        RoleAssignment.expires_at > now)) or 0
    renewals = session.scalar(select(func.count()).select_from(RoleRenewal).join(RoleRenewal.assignment).where(
        RoleAssignment.revoked_at.is_(None), RoleRenewal.countersigned_at.is_(None),
        RoleRenewal.withdrawn_at.is_(None), RoleRenewal.new_expires_at > now)) or 0
    return grants + renewals


def waiting_work(session: Session, now: datetime) -> WaitingWork:
    overdue = [cases.hours_held(case, now) for case in cases.overdue_cases(session, now)]
    return WaitingWork(
        open_cases=open_arrest_cases(session),
        unconfirmed_reports=len(cases.pending_reports(session)),
        cases_past_24h=sum(1 for hours in overdue if hours < cases.REMINDERS[1]),
        cases_past_48h=sum(1 for hours in overdue if hours >= cases.REMINDERS[1]),
        mediation_new=new_mediation_requests(session),
        countersigns=countersigns_waiting(session, now),
    )

