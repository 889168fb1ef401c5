"""Complaints about the patrol: a neighbour's concern about a steward, a host or how something was handled.

A complaint goes to the accountability circle and never to the person it
names. It may name a member (by handle), a role, or nobody ("how something
was handled"):

- a member it names is kept from it in every view, even when they sit in the
  circle themselves: the other circle members read it, they do not; so is a
  role-holder whose handle the neighbour wrote in it;
- a role it names keeps every member who holds that role now, or held it
  when the complaint came in, away from it; circle members outside that
  role read it. The circle itself is not a role one can name here: a
  concern about the whole circle belongs to the assembly.

Being kept from a complaint looks exactly like the complaint not existing
(the same "not found"), and counts shown to role-holders are counted over
what they may read only.

The neighbour keeps a receipt code; the status page answers it with the
state and dates only. The circle's outcome note is private to the circle.
A closed complaint is purged after the retention period: what was written,
who it named and the receipt code are deleted, and only its dates stay, so
the public counts (and the lunar audit) still add up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain import power_record
from server.domain import sealing
from server.domain.base import Base
from server.domain.sealing import SealedText
from server.domain.codes import normalize_receipt_code, unused_receipt_code
from server.domain.errors import Invalid, NotFound
from server.domain.people import ACCOUNTABILITY, ROLE_LABELS, ROLES, Member, RoleAssignment, has_role
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

RECEIVED = "received"
LOOKING = "looking"
CLOSED = "closed"
STATUSES = (RECEIVED, LOOKING, CLOSED)
STATUS_LABELS = Labels({
    RECEIVED: N_("Received, waiting for the accountability circle"),
    LOOKING: N_("Being looked into by the accountability circle"),
    CLOSED: N_("Closed"),
})

# What a complaint is about.
ABOUT_HANDLING = "handling"
ABOUT_ROLE = "role"
ABOUT_MEMBER = "member"
# Roles a neighbour may name: every role but the circle's own.
NAMEABLE_ROLES = tuple(role for role in ROLES if role != ACCOUNTABILITY)

# A mean synodic month: "open longer than a lunar cycle" on the public counts.
# (The lunar audit follows the real moon; a complaint's age needs only its length.)
LUNAR_CYCLE = timedelta(days=29.53)

MAX_WHAT = 3000
MAX_OUTCOME = 3000
RECEIPT_PREFIX = "P"  # for the patrol; C is taken by arrest cases' codes
NOT_FOUND = N_("That complaint does not exist (it may have been purged).")


class Complaint(Base):
    __tablename__ = "complaint"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Emptied by the purge, with everything else anyone wrote; the dates stay for the counts.
    receipt_code: Mapped[str | None] = mapped_column(String(11), unique=True)
    what: Mapped[str | None] = mapped_column(SealedText(sealing.COMPLAINTS))
    about: Mapped[str | None] = mapped_column(String(8))
    about_role: Mapped[str | None] = mapped_column(String(16))
    about_member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(12), default=RECEIVED, index=True)
    taken_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    outcome: Mapped[str | None] = mapped_column(SealedText(sealing.COMPLAINTS))
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    purged_at: Mapped[datetime | None]

    about_member: Mapped[Member | None] = relationship(foreign_keys=[about_member_id])
    taken_by: Mapped[Member | None] = relationship(foreign_keys=[taken_by_id])
    kept_from: Mapped[list[ComplaintExclusion]] = relationship(
        back_populates="complaint", cascade="all, delete-orphan"
    )

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def number(self) -> str:
        """How the record of power used names it: a number, never the receipt code (the neighbour's key)."""
        return f"complaint #{self.id}"

    @property
    def about_label(self) -> str:
        if self.about == ABOUT_MEMBER:
            return self.about_member.handle if self.about_member else _("a former member")
        if self.about == ABOUT_ROLE:
            return _("the %(role)s role", role=ROLE_LABELS.get(self.about_role or "", self.about_role))
        return _("how something was handled")


class ComplaintExclusion(Base):
    """A member kept from a complaint: the one it names, or who held the role it names when it came in."""

    __tablename__ = "complaint_exclusion"
    __table_args__ = (UniqueConstraint("complaint_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaint.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)

    complaint: Mapped[Complaint] = relationship(back_populates="kept_from")


@dataclass(frozen=True)
class PublicStatus:
    """What the holder of a receipt code may see: the state and dates, nothing written."""

    receipt_code: str
    status: str
    label: str
    received_on: datetime
    updated_on: datetime
    closed_on: datetime | None


@dataclass(frozen=True)
class PublicCounts:
    """All the public sees of complaints: how many, never what or whom."""

    opened: int
    closed: int
    open: int
    open_past_a_lunar_cycle: int


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


# -- who a complaint can be about, and who may read it ---------------------------------------


def _holders(session: Session, now: datetime, role: str | None = None) -> list[Member]:
    """Members holding ``role`` (any role, with none named): in force, waiting for a countersign or
    suspended, so a complaint about a suspended host names them too; ended and run-out terms do not count."""
    query = (
        select(Member)
        .join(RoleAssignment, RoleAssignment.member_id == Member.id)
        .where(RoleAssignment.revoked_at.is_(None), RoleAssignment.expires_at > now)
        .distinct()
        .order_by(Member.handle_key)
    )
    if role is not None:
        query = query.where(RoleAssignment.role == role)
    return list(session.scalars(query))


def _nameable_members(session: Session, now: datetime) -> list[Member]:
    """Role-holders a neighbour may pick by handle: those whose handle the mandates page shows.

    A member who chose to appear there as "a steward" is not listed (the form is
    public, and would tell who holds a role); a neighbour names their role, or
    writes the handle they know, which keeps them from it all the same.
    """
    return [member for member in _holders(session, now) if not member.appears_as_role]


def about_choices(session: Session, now: datetime) -> list[Choice]:
    """What the form offers: nobody in particular, a role, or a current role-holder by handle."""
    choices = [Choice(ABOUT_HANDLING, _("How something was handled (no one in particular)"))]
    choices += [Choice(f"{ABOUT_ROLE}:{role}", _("Whoever holds the role: %(role)s", role=ROLE_LABELS[role]))
                for role in NAMEABLE_ROLES]
    choices += [Choice(f"{ABOUT_MEMBER}:{member.id}", member.handle) for member in _nameable_members(session, now)]
    return choices


def _handles_written(session: Session, now: datetime, text: str) -> set[int]:
    """Role-holders whose handle the neighbour wrote, as a word of its own: kept from it, like the one chosen.

    Erring this way costs a reader at most; the other way, a steward named in
    the text would read what was written about them.
    """
    words = text.casefold()
    written = set()
    for member in _holders(session, now):
        if re.search(rf"(?<!\w){re.escape(member.handle.casefold())}(?!\w)", words):
            written.add(member.id)
    return written


def _parse_about(session: Session, now: datetime, raw: str | None) -> tuple[str, str | None, Member | None]:
    kind, _sep, value = (raw or ABOUT_HANDLING).partition(":")
    if kind == ABOUT_HANDLING and not value:
        return ABOUT_HANDLING, None, None
    if kind == ABOUT_ROLE and value in NAMEABLE_ROLES:
        return ABOUT_ROLE, value, None
    if kind == ABOUT_MEMBER and value.isdigit() and len(value) < 12:
        member = session.get(Member, int(value))
        if member is not None and member in _nameable_members(session, now):
            return ABOUT_MEMBER, None, member
    raise Invalid(_("Please choose from the list who or what your concern is about."), field="about")


def is_kept_from(session: Session, now: datetime, complaint: Complaint, member: Member) -> bool:
    """True when ``member`` must never see ``complaint``: it names them, or a role they hold or held then."""
    if complaint.about_member_id == member.id:
        return True
    if any(exclusion.member_id == member.id for exclusion in complaint.kept_from):
        return True
    if complaint.about == ABOUT_ROLE:
        return member in _holders(session, now, complaint.about_role)
    return False


def readers(session: Session, now: datetime, complaint: Complaint) -> list[Member]:
    """The circle members who may read it now: their circle role in force, and not kept from it."""
    return [m for m in _holders(session, now, ACCOUNTABILITY)
            if has_role(session, m, ACCOUNTABILITY, now) and not is_kept_from(session, now, complaint, m)]


# -- the neighbour's side ---------------------------------------------------------------------


def submit_complaint(session: Session, now: datetime, *, what: str, about: str | None = None) -> Complaint:
    kind, role, member = _parse_about(session, now, about)
    complaint = Complaint(
        receipt_code=unused_receipt_code(session, Complaint.receipt_code, RECEIPT_PREFIX),
        what=clean_text(what, field="concern", max_length=MAX_WHAT, multiline=True),
        about=kind,
        about_role=role,
        about_member=member,
        status=RECEIVED,
        created_at=now,
        updated_at=now,
    )
    session.add(complaint)
    kept_from = {member.id} if member is not None else set()
    kept_from |= _handles_written(session, now, complaint.what or "")
    if role is not None:
        # Whoever holds the role now stays kept from it after their term ends.
        kept_from |= {holder.id for holder in _holders(session, now, role)}
    complaint.kept_from = [ComplaintExclusion(member_id=member_id) for member_id in sorted(kept_from)]
    session.flush()
    return complaint


def status_for_receipt(session: Session, raw_code: str) -> PublicStatus:
    code = normalize_receipt_code(raw_code)
    complaint = session.scalar(select(Complaint).where(Complaint.receipt_code == code)) if code else None
    if complaint is None:
        raise NotFound(
            _("No complaint has that receipt code. Check the code on your receipt; complaints are deleted some "
              "days after they close."),
            field="receipt code",
        )
    return PublicStatus(
        receipt_code=complaint.receipt_code or "",
        status=complaint.status,
        label=complaint.status_label,
        received_on=complaint.created_at,
        updated_on=complaint.updated_at,
        closed_on=complaint.closed_at,
    )


def public_counts(session: Session, now: datetime) -> PublicCounts:
    """Counted over every complaint ever received, purged ones included (their dates stay)."""
    opened = session.scalar(select(func.count()).select_from(Complaint)) or 0
    closed = session.scalar(select(func.count()).where(Complaint.status == CLOSED)) or 0
    past = session.scalar(
        select(func.count()).where(Complaint.status != CLOSED, Complaint.created_at <= now - LUNAR_CYCLE)
    ) or 0
    return PublicCounts(opened=opened, closed=closed, open=opened - closed, open_past_a_lunar_cycle=past)


# -- the accountability circle's side ----------------------------------------------------------


def get_for(session: Session, now: datetime, complaint_id: int, reader: Member) -> Complaint:
    """The complaint, if ``reader`` may read it; otherwise exactly as if it did not exist."""
    complaint = session.get(Complaint, complaint_id)
    if complaint is None or complaint.purged_at is not None or is_kept_from(session, now, complaint, reader):
        raise NotFound(_(NOT_FOUND))
    return complaint


def queue_for(session: Session, now: datetime, reader: Member, include_closed: bool = False) -> list[Complaint]:
    """The circle's queue as ``reader`` may see it: waiting ones first, then oldest."""
    query = select(Complaint).where(Complaint.purged_at.is_(None))
    if not include_closed:
        query = query.where(Complaint.status != CLOSED)
    found = [c for c in session.scalars(query.order_by(Complaint.created_at, Complaint.id))
             if not is_kept_from(session, now, c, reader)]
    return sorted(found, key=lambda c: STATUSES.index(c.status))


def waiting_for(session: Session, now: datetime, reader: Member) -> int:
    """How many complaints ``reader`` may read that nobody has taken up yet (the dashboard's tally)."""
    return sum(1 for c in queue_for(session, now, reader) if c.status == RECEIVED)


def take(session: Session, now: datetime, complaint: Complaint, reader: Member) -> None:
    """A circle member starts looking into it."""
    if complaint.status == CLOSED:
        raise Invalid(_("This complaint is closed."))
    complaint.status = LOOKING
    complaint.taken_by = reader
    complaint.updated_at = now
    session.flush()


def close(session: Session, now: datetime, complaint: Complaint, reader: Member, outcome: str) -> None:
    """Close it with an outcome note kept inside the circle; the record of power used says who and when."""
    if complaint.status == CLOSED:
        raise Invalid(_("This complaint is already closed."))
    complaint.outcome = clean_text(outcome, field="outcome", max_length=MAX_OUTCOME, multiline=True)
    complaint.status = CLOSED
    complaint.taken_by = complaint.taken_by or reader
    complaint.updated_at = complaint.closed_at = now
    # The record is read by hosts, who may be the person the complaint names: it says
    # which complaint and who closed it, never what it said or how it ended.
    power_record.record(session, now, actor=reader, role=ACCOUNTABILITY, action="complaint-closed",
                        subject=complaint.number, reason="outcome kept with the accountability circle")
    session.flush()


def purge_closed(session: Session, now: datetime, retention_days: int, limit: int | None = None) -> int:
    """Forget what complaints closed more than ``retention_days`` ago said; returns how many.

    Only the dates stay (received, closed), so the public counts and the
    lunar audit still count them; the receipt code stops working. At most
    ``limit`` a call, oldest first.
    """
    cutoff = now - timedelta(days=retention_days)
    due = list(session.scalars(
        select(Complaint).where(Complaint.status == CLOSED, Complaint.closed_at <= cutoff,
                                Complaint.purged_at.is_(None)).order_by(Complaint.closed_at).limit(limit)
    ))
    for complaint in due:
        complaint.receipt_code = complaint.what = complaint.outcome = None
        complaint.about = complaint.about_role = None
        complaint.about_member = complaint.taken_by = None
        complaint.purged_at = now
        complaint.kept_from = []
    session.flush()
    return len(due)
