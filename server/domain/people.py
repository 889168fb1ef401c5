"""Members of the bench, their radios, and roles with sunset clauses.

A member is anyone the hub knows by a public handle: a steward with a
handheld node, a host or mediator with a web login, often both. Nothing here
asks for a legal name.

Every role is granted for a term and lapses by itself unless the assembly
renews it. Permission checks compare against the clock directly, so a lapsed
role stops working the minute it expires; the scheduled job only records the
lapse for the host to see.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ForeignKey, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain.base import Base
from server.domain.errors import Conflict, Invalid, NotFound
from server.domain.text import clean_text

HOST = "host"
DISPATCH = "dispatch"
MEDIATOR = "mediator"
CAPTAIN = "captain"
STEWARD = "steward"
# The care ring works arrest cases with dispatch: family, bail, the welcome at release.
CARE = "care"
# The accountability circle reads neighbours' complaints about the patrol and the
# record of every power used; it is never shown a complaint that names one of its own.
ACCOUNTABILITY = "accountability"
ROLES = (HOST, DISPATCH, CARE, MEDIATOR, CAPTAIN, STEWARD, ACCOUNTABILITY)
ROLE_LABELS = {
    HOST: "Hub host",
    DISPATCH: "Dispatch",
    CARE: "Care ring",
    MEDIATOR: "Mediator",
    CAPTAIN: "Patrol captain",
    STEWARD: "Patrol steward",
    ACCOUNTABILITY: "Accountability circle",
}

BROADCAST_NODE = 0xFFFFFFFF
_HANDLE_RE = re.compile(r"^[\w][\w .\-]{0,22}[\w.]$|^\w$")
MIN_PASSWORD_LENGTH = 10


class Member(Base):
    __tablename__ = "member"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(24))
    # Lower-cased handle: "Kestrel" and "kestrel" are the same person.
    handle_key: Mapped[str] = mapped_column(String(24), unique=True)
    # Meshtastic node numbers are unsigned 32-bit: BigInteger keeps them
    # whole on PostgreSQL too.
    node_num: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Part of every login session's id: moving it on ends all of this
    # member's sessions at once, on every device, even a cookie copied off
    # the bench's open WiFi (a signed cookie cannot be recalled otherwise).
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime]
    # The radio's X25519 public key (base64), pinned by a host: a direct
    # message that the hub's radio decrypted with this key can only have
    # come from this member's own radio (server/domain/radio_trust.py).
    radio_key: Mapped[str | None] = mapped_column(String(64))
    radio_key_pinned_at: Mapped[datetime | None]
    # A key the radio announced that is not (or not yet) the pinned one,
    # waiting for a host to confirm or refuse it. Never trusted by itself.
    radio_key_heard: Mapped[str | None] = mapped_column(String(64))
    radio_key_heard_at: Mapped[datetime | None]

    roles: Mapped[list[RoleAssignment]] = relationship(
        back_populates="member", cascade="all, delete-orphan", order_by="RoleAssignment.role"
    )

    @property
    def node_id(self) -> str | None:
        """The node number as Meshtastic apps print it (``!a1b2c3d4``)."""
        return format_node_id(self.node_num) if self.node_num is not None else None

    def __repr__(self) -> str:
        return f"<Member {self.handle}>"


class RoleAssignment(Base):
    __tablename__ = "role_assignment"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    granted_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # The assembly decision the role came from ("assembly 2026-11-03, item 4").
    decision: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None]
    # Set by the scheduled job when it notices the expiry; the clock decides.
    lapsed_at: Mapped[datetime | None]

    member: Mapped[Member] = relationship(back_populates="roles")
    renewals: Mapped[list[RoleRenewal]] = relationship(
        back_populates="assignment", cascade="all, delete-orphan", order_by="RoleRenewal.renewed_at"
    )

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


class RoleRenewal(Base):
    __tablename__ = "role_renewal"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("role_assignment.id", ondelete="CASCADE"), index=True)
    renewed_at: Mapped[datetime]
    decision: Mapped[str] = mapped_column(Text)
    previous_expires_at: Mapped[datetime]
    new_expires_at: Mapped[datetime]

    assignment: Mapped[RoleAssignment] = relationship(back_populates="renewals")


# -- node numbers -------------------------------------------------------------


def format_node_id(node_num: int) -> str:
    return f"!{node_num:08x}"


def parse_node_id(raw: str | int) -> int:
    """Accept ``!a1b2c3d4``, ``a1b2c3d4``, ``0xa1b2c3d4`` or a decimal node number."""
    text = str(raw).strip().lower()
    try:
        if text.startswith("!"):
            value = int(text[1:], 16)
        elif text.startswith("0x"):
            value = int(text[2:], 16)
        elif text.isdigit():
            value = int(text)
        elif len(text) == 8:
            value = int(text, 16)
        else:
            raise ValueError(text)
    except ValueError:
        raise Invalid(
            "A node id looks like !a1b2c3d4 (as the Meshtastic app shows it) or a node number.", field="node id"
        ) from None
    if not 0 < value < BROADCAST_NODE:
        raise Invalid("That node number is reserved and cannot be a steward's radio.", field="node id")
    return value


# -- members ------------------------------------------------------------------


def clean_handle(raw: str | None) -> str:
    handle = clean_text(raw, field="handle", max_length=24)
    if not _HANDLE_RE.match(handle):
        raise Invalid("A handle uses letters, digits, spaces, dots, dashes or underscores.", field="handle")
    return handle


def add_member(session: Session, now: datetime, handle: str, node_num: int | None = None) -> Member:
    handle = clean_handle(handle)
    if find_member(session, handle) is not None:
        raise Conflict(f"The handle {handle!r} is taken.", field="handle")
    if node_num is not None:
        _ensure_node_free(session, node_num)
    member = Member(handle=handle, handle_key=handle.lower(), node_num=node_num, created_at=now)
    session.add(member)
    session.flush()
    return member


def _ensure_node_free(session: Session, node_num: int, keep: Member | None = None) -> None:
    holder = find_member_by_node(session, node_num)
    if holder is not None and holder is not keep:
        raise Conflict(f"Node {format_node_id(node_num)} is already registered to {holder.handle}.", field="node id")


def set_node(session: Session, member: Member, node_num: int | None) -> None:
    """Register (or with ``None``, forget) the member's handheld radio.

    Another radio is another key: a pinned key (and one waiting for a
    host) belonged to the old one and is dropped.
    """
    if node_num is not None:
        _ensure_node_free(session, node_num, keep=member)
    if node_num != member.node_num:
        member.radio_key = member.radio_key_pinned_at = None
        member.radio_key_heard = member.radio_key_heard_at = None
    member.node_num = node_num
    session.flush()


def find_member(session: Session, handle: str) -> Member | None:
    return session.scalar(select(Member).where(Member.handle_key == handle.strip().lower()))


def get_member(session: Session, handle: str) -> Member:
    member = find_member(session, handle)
    if member is None:
        raise NotFound(f"No one here goes by {handle!r}.", field="handle")
    return member


def find_member_by_node(session: Session, node_num: int) -> Member | None:
    return session.scalar(select(Member).where(Member.node_num == node_num))


def list_members(session: Session) -> list[Member]:
    return list(session.scalars(select(Member).order_by(Member.handle_key)))


def register_steward(
    session: Session, now: datetime, handle: str, node_id: str | int, decision: str, term_days: int
) -> Member:
    """A new steward with their handheld's node number and a steward role."""
    node_num = parse_node_id(node_id)
    member = find_member(session, handle)
    if member is None:
        member = add_member(session, now, handle, node_num)
    else:
        set_node(session, member, node_num)
    if not has_role(session, member, STEWARD, now):
        grant_role(session, now, member, STEWARD, decision=decision, term_days=term_days)
    return member


# -- passwords ----------------------------------------------------------------


def set_password(member: Member, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.", field="password")
    if len(password) > 256:
        raise Invalid("That password is too long (at most 256 characters).", field="password")
    # Imported here: the radio bridge loads this module and never needs
    # passwords, and every megabyte counts beside the web server on a Pi.
    from werkzeug.security import generate_password_hash

    member.password_hash = generate_password_hash(password)
    end_sessions(member)  # a phone taken with the old password in it is logged out


def end_sessions(member: Member) -> None:
    """Log this member out everywhere: every session made before now stops working."""
    member.session_epoch = (member.session_epoch or 0) + 1


def check_password(member: Member | None, password: str) -> bool:
    from werkzeug.security import check_password_hash

    if member is None or member.password_hash is None:
        # Hash anyway: answering an unknown handle at once, and a known one
        # after a deliberately slow hash, would tell a stopwatch who has an account.
        check_password_hash(_stand_in_hash(), password)
        return False
    return check_password_hash(member.password_hash, password)


@functools.cache
def _stand_in_hash() -> str:
    """A hash made the way real ones are (same method, same cost), matching no password anyone can type."""
    from werkzeug.security import generate_password_hash

    return generate_password_hash(secrets.token_hex(16))


# -- roles --------------------------------------------------------------------


def _clean_decision(decision: str | None) -> str:
    return clean_text(decision, field="assembly decision", max_length=300)


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid(f"Unknown role {role!r}: one of {', '.join(ROLES)}.", field="role")
    return role


def _check_term(term_days: int) -> int:
    if not 1 <= term_days <= 366:
        raise Invalid("A term runs from 1 to 366 days.", field="term")
    return term_days


def current_assignment(session: Session, member: Member, role: str, now: datetime) -> RoleAssignment | None:
    return session.scalar(
        select(RoleAssignment)
        .where(
            RoleAssignment.member_id == member.id,
            RoleAssignment.role == role,
            RoleAssignment.revoked_at.is_(None),
            RoleAssignment.expires_at > now,
        )
        .order_by(RoleAssignment.expires_at.desc())
    )


def grant_role(
    session: Session, now: datetime, member: Member, role: str, *, decision: str, term_days: int
) -> RoleAssignment:
    role = _check_role(role)
    decision = _clean_decision(decision)
    term_days = _check_term(term_days)
    if current_assignment(session, member, role, now) is not None:
        raise Conflict(f"{member.handle} already holds the {role} role; renew it instead.", field="role")
    assignment = RoleAssignment(
        member=member,
        role=role,
        granted_at=now,
        expires_at=now + timedelta(days=term_days),
        decision=decision,
    )
    session.add(assignment)
    session.flush()
    return assignment


def renew_role(
    session: Session, now: datetime, assignment: RoleAssignment, *, decision: str, term_days: int
) -> RoleRenewal:
    """Extend a role by a new term from today, recording the decision.

    A lapsed role can be renewed too: the assembly often meets after the
    date, and the history stays in one place.
    """
    decision = _clean_decision(decision)
    term_days = _check_term(term_days)
    if assignment.revoked_at is not None:
        raise Invalid("A revoked role cannot be renewed; grant it again.", field="role")
    renewal = RoleRenewal(
        assignment=assignment,
        renewed_at=now,
        decision=decision,
        previous_expires_at=assignment.expires_at,
        new_expires_at=now + timedelta(days=term_days),
    )
    assignment.expires_at = renewal.new_expires_at
    assignment.lapsed_at = None
    session.add(renewal)
    session.flush()
    return renewal


def revoke_role(session: Session, now: datetime, assignment: RoleAssignment) -> None:
    if assignment.revoked_at is None:
        assignment.revoked_at = now
        session.flush()


def get_assignment(session: Session, assignment_id: int) -> RoleAssignment:
    assignment = session.get(RoleAssignment, assignment_id)
    if assignment is None:
        raise NotFound("That role assignment does not exist.")
    return assignment


def active_roles(session: Session, member: Member, now: datetime) -> set[str]:
    return set(
        session.scalars(
            select(RoleAssignment.role).where(
                RoleAssignment.member_id == member.id,
                RoleAssignment.revoked_at.is_(None),
                RoleAssignment.expires_at > now,
            )
        )
    )


def has_role(session: Session, member: Member, role: str, now: datetime) -> bool:
    return role in active_roles(session, member, now)


def lapse_expired_roles(session: Session, now: datetime) -> list[RoleAssignment]:
    """Record every role that has run out and not yet been marked (the scheduled job)."""
    due = list(
        session.scalars(
            select(RoleAssignment).where(
                RoleAssignment.expires_at <= now,
                RoleAssignment.lapsed_at.is_(None),
                RoleAssignment.revoked_at.is_(None),
            )
        )
    )
    for assignment in due:
        assignment.lapsed_at = now
    session.flush()
    return due


@dataclass(frozen=True)
class RoleSummary:
    assignment: RoleAssignment
    state: str  # "active", "expiring" (within a week), "lapsed", "revoked"


def role_overview(session: Session, now: datetime) -> list[RoleSummary]:
    """Every assignment, newest state first, for the host's roles page."""
    rows = session.scalars(
        select(RoleAssignment).join(Member).order_by(Member.handle_key, RoleAssignment.role, RoleAssignment.id.desc())
    )
    summaries = []
    for assignment in rows:
        if assignment.revoked_at is not None:
            state = "revoked"
        elif assignment.expires_at <= now:
            state = "lapsed"
        elif assignment.expires_at - now <= timedelta(days=7):
            state = "expiring"
        else:
            state = "active"
        summaries.append(RoleSummary(assignment, state))
    return summaries


def count_active_role_holders(session: Session, role: str, now: datetime) -> int:
    return session.scalar(
        select(func.count(func.distinct(RoleAssignment.member_id))).where(
            RoleAssignment.role == role,
            RoleAssignment.revoked_at.is_(None),
            RoleAssignment.expires_at > now,
        )
    )
