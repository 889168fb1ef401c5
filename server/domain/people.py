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
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Select, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain.base import Base
from server.domain.errors import Conflict, Invalid, NotFound
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

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
# Read out in the reader's language (server.i18n.Labels).
ROLE_LABELS = Labels({
    HOST: N_("Hub host"),
    DISPATCH: N_("Dispatch"),
    CARE: N_("Care ring"),
    MEDIATOR: N_("Mediator"),
    CAPTAIN: N_("Patrol captain"),
    STEWARD: N_("Patrol steward"),
    ACCOUNTABILITY: N_("Accountability circle"),
})

# How one role-holder appears on the public mandates page when they choose not to show their handle.
ROLE_NOUNS = Labels({
    HOST: N_("a host"),
    DISPATCH: N_("a dispatcher"),
    CARE: N_("a care ring member"),
    MEDIATOR: N_("a mediator"),
    CAPTAIN: N_("a captain"),
    STEWARD: N_("a steward"),
    ACCOUNTABILITY: N_("an accountability circle member"),
})
MAX_PLACE = 80  # the meeting or place of an assembly decision

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
    # On the public mandates page, "a steward" instead of the handle: the member's own choice.
    appears_as_role: Mapped[bool] = mapped_column(default=False, server_default="0")
    # On the bench page and the public log, this member's handle instead of a mere count: their own
    # consent, given by them (their dashboard, or in person at registration), withdrawn by them at any time.
    show_handle: Mapped[bool] = mapped_column(default=False, server_default="0")

    roles: Mapped[list[RoleAssignment]] = relationship(
        back_populates="member", cascade="all, delete-orphan", order_by="RoleAssignment.role",
        foreign_keys="RoleAssignment.member_id",
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
    # The assembly decision the role came from: its words, and (since mandates
    # are countersigned) the day and the meeting or place it was taken at.
    decision: Mapped[str] = mapped_column(Text)
    decided_on: Mapped[date | None]
    decision_place: Mapped[str | None] = mapped_column(String(MAX_PLACE))
    # Ended: revoked, or ended by the assembly's decision after a suspension.
    revoked_at: Mapped[datetime | None]
    # Set by the scheduled job when it notices the expiry; the clock decides.
    lapsed_at: Mapped[datetime | None]
    # Who asked for it (None: the hub, at the Pi's terminal), and the second
    # role-holder whose countersign put it in force. Pending until then.
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    countersigned_at: Mapped[datetime | None]
    countersigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    # A recall: one role-holder asks (with a reason), a second confirms, and the
    # role opens nothing from that minute until the assembly ends or restores it.
    suspension_asked_at: Mapped[datetime | None]
    suspension_asked_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    suspension_reason: Mapped[str | None] = mapped_column(Text)
    suspended_at: Mapped[datetime | None]
    suspended_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))

    member: Mapped[Member] = relationship(back_populates="roles", foreign_keys=[member_id])
    granted_by: Mapped[Member | None] = relationship(foreign_keys=[granted_by_id])
    countersigned_by: Mapped[Member | None] = relationship(foreign_keys=[countersigned_by_id])
    suspension_asked_by: Mapped[Member | None] = relationship(foreign_keys=[suspension_asked_by_id])
    suspended_by: Mapped[Member | None] = relationship(foreign_keys=[suspended_by_id])
    renewals: Mapped[list[RoleRenewal]] = relationship(
        back_populates="assignment", cascade="all, delete-orphan", order_by="RoleRenewal.renewed_at"
    )

    @property
    def pending(self) -> bool:
        return self.countersigned_at is None and self.revoked_at is None

    @property
    def pending_renewal(self) -> RoleRenewal | None:
        return next((r for r in self.renewals if r.countersigned_at is None and r.withdrawn_at is None), None)

    @property
    def decision_text(self) -> str:
        return decision_text(self.decided_on, self.decision_place, self.decision)

    @property
    def decision_reference(self) -> str:
        return decision_reference(self.decided_on, self.decision_place)

    def is_active(self, now: datetime) -> bool:
        """In force: countersigned, not suspended, not ended, not run out."""
        return (self.revoked_at is None and self.expires_at > now and self.countersigned_at is not None
                and self.suspended_at is None)


class RoleRenewal(Base):
    __tablename__ = "role_renewal"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("role_assignment.id", ondelete="CASCADE"), index=True)
    renewed_at: Mapped[datetime]
    decision: Mapped[str] = mapped_column(Text)
    decided_on: Mapped[date | None]
    decision_place: Mapped[str | None] = mapped_column(String(MAX_PLACE))
    previous_expires_at: Mapped[datetime]
    new_expires_at: Mapped[datetime]
    # As for a grant: asked by one (None: the hub), in force once a second countersigns.
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    countersigned_at: Mapped[datetime | None]
    countersigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    # A pending renewal the assembly's later decision (or the role's end) made moot.
    withdrawn_at: Mapped[datetime | None]

    assignment: Mapped[RoleAssignment] = relationship(back_populates="renewals")
    requested_by: Mapped[Member | None] = relationship(foreign_keys=[requested_by_id])
    countersigned_by: Mapped[Member | None] = relationship(foreign_keys=[countersigned_by_id])

    @property
    def pending(self) -> bool:
        return self.countersigned_at is None and self.withdrawn_at is None

    @property
    def decision_text(self) -> str:
        return decision_text(self.decided_on, self.decision_place, self.decision)

    @property
    def decision_reference(self) -> str:
        return decision_reference(self.decided_on, self.decision_place)


def decision_reference(on: date | None, place: str | None) -> str:
    """Which decision, without its words: "assembly at the library, 3 Nov 2026".

    What the record of power used and the pages beyond the hosts' show: the
    words may name people (who proposed it), and stay on the roles page.
    """
    if on is None:
        return _("an assembly before mandates were countersigned")
    return f"{place}, {on.day} {on:%b %Y}" if place else f"{on.day} {on:%b %Y}"


def decision_text(on: date | None, place: str | None, words: str) -> str:
    """"Assembly at the library, 3 Nov 2026: Kestrel hosts until the next one" (older rows: the words alone)."""
    if on is None:
        return words
    where = f"{place}, " if place else ""
    return f"{where}{on.day} {on:%b %Y}: {words}"


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
            _("A node id looks like !a1b2c3d4 (as the Meshtastic app shows it) or a node number."), field="node id"
        ) from None
    if not 0 < value < BROADCAST_NODE:
        raise Invalid(_("That node number is reserved and cannot be a steward's radio."), field="node id")
    return value


# -- members ------------------------------------------------------------------


def clean_handle(raw: str | None) -> str:
    handle = clean_text(raw, field="handle", max_length=24)
    if not _HANDLE_RE.match(handle):
        raise Invalid(_("A handle uses letters, digits, spaces, dots, dashes or underscores."), field="handle")
    return handle


def add_member(session: Session, now: datetime, handle: str, node_num: int | None = None) -> Member:
    handle = clean_handle(handle)
    if find_member(session, handle) is not None:
        raise Conflict(_("The handle %(handle)s is taken.", handle=repr(handle)), field="handle")
    if node_num is not None:
        _ensure_node_free(session, node_num)
    member = Member(handle=handle, handle_key=handle.lower(), node_num=node_num, created_at=now)
    session.add(member)
    session.flush()
    return member


def _ensure_node_free(session: Session, node_num: int, keep: Member | None = None) -> None:
    holder = find_member_by_node(session, node_num)
    if holder is not None and holder is not keep:
        raise Conflict(_("Node %(node)s is already registered to %(handle)s.",
                         node=format_node_id(node_num), handle=holder.handle), field="node id")


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
        raise NotFound(_("No one here goes by %(handle)s.", handle=repr(handle)), field="handle")
    return member


def find_member_by_node(session: Session, node_num: int) -> Member | None:
    return session.scalar(select(Member).where(Member.node_num == node_num))


def list_members(session: Session) -> list[Member]:
    return list(session.scalars(select(Member).order_by(Member.handle_key)))


def set_show_handle(session: Session, member: Member, show: bool, *, by: Member | None) -> Member:
    """Show ``member``'s handle on the bench page and the public log, or hide it again.

    Showing it is the member's consent, so only they give it (``by`` is
    them; ``radio_trust.register_radio`` takes it in person from a new
    steward). Hiding it withdraws consent, which must always be possible:
    a steward who never logs in asks a host, who carries it out. Nothing is
    recorded about the change, in public or in the record of power used.
    """
    if show and by is not member:
        raise Conflict(_("Only %(handle)s can choose to show their handle to the public.", handle=member.handle), field="show_handle")
    member.show_handle = show
    session.flush()
    return member


# -- passwords ----------------------------------------------------------------


def check_new_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(_("A password needs at least %(MIN_PASSWORD_LENGTH)s characters.",
                        MIN_PASSWORD_LENGTH=MIN_PASSWORD_LENGTH), field=field)
    if len(password) > 256:
        raise Invalid(_("That password is too long (at most 256 characters)."), field=field)


def set_password(member: Member, password: str, now: datetime | None = None) -> None:
    """A first or a new password, and with it a new key pair for sealed storage.

    Set by a host for someone who lost theirs: the old key pair is wrapped
    with a password nobody knows, so every vault key sealed to it is gone
    and other readers give them again (server/domain/sealing.py).
    """
    check_new_password(password)
    # Imported here: the radio bridge loads this module and never needs
    # passwords, and every megabyte counts beside the web server on a Pi.
    from werkzeug.security import generate_password_hash

    from server.domain import sealing

    member.password_hash = generate_password_hash(password)
    sealing.give_member_key(member, password, now or member.created_at)
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


# Terms are capped, whatever anyone types: ROLE_TERM_CAP_DAYS, at most six weeks.
DEFAULT_TERM_CAP_DAYS = 28
MAX_TERM_CAP_DAYS = 42
# An assembly decision older than this grounds no new term: the next assembly decides.
MAX_DECISION_AGE_DAYS = 60
MAX_DECISION_WORDS = 300


@dataclass(frozen=True)
class Decision:
    """The assembly decision a grant, renewal or ending rests on: the day, the meeting or place, its words."""

    on: date
    place: str
    words: str

    @property
    def text(self) -> str:
        return decision_text(self.on, self.place, self.words)

    @property
    def reference(self) -> str:
        return decision_reference(self.on, self.place)


def parse_decision(now: datetime, on: date | str | None, place: str | None, words: str | None) -> Decision:
    """Check the three parts of a decision as typed on the web or at the terminal."""
    if isinstance(on, str):
        text = on.strip()
        try:
            on = date.fromisoformat(text) if text else None
        except ValueError:
            raise Invalid(_("Give the day of the decision as year-month-day, like 2026-11-03."),
                          field="decision date") from None
    if on is None:
        raise Invalid(_("Please give the day the assembly decided it."), field="decision date")
    # A day's grace: the assembly's calendar may run ahead of the hub's UTC clock.
    if on > (now + timedelta(days=1)).date():
        raise Invalid(_("That day is still to come: the assembly cannot have decided it yet."), field="decision date")
    if on < (now - timedelta(days=MAX_DECISION_AGE_DAYS)).date():
        raise Invalid(_("That decision is more than %(MAX_DECISION_AGE_DAYS)s days old: a term rests on a recent "
                        "assembly's decision.",
                        MAX_DECISION_AGE_DAYS=MAX_DECISION_AGE_DAYS), field="decision date")
    place = clean_text(place, field="decision place", max_length=MAX_PLACE)
    words = clean_text(words, field="assembly decision", max_length=MAX_DECISION_WORDS)
    return Decision(on, place, words)


def term_cap(setting: object) -> int:
    """ROLE_TERM_CAP_DAYS as configured, refused when it is not a number from 1 to 42."""
    try:
        cap = int(str(setting))
    except ValueError:
        cap = 0
    if not 1 <= cap <= MAX_TERM_CAP_DAYS:
        raise Invalid(_("The hub's ROLE_TERM_CAP_DAYS setting is %(setting)s: it must be from 1 to "
                        "%(MAX_TERM_CAP_DAYS)s days. Nothing is granted or renewed until it is.",
                        setting=repr(setting), MAX_TERM_CAP_DAYS=MAX_TERM_CAP_DAYS), field="term")
    return cap


def check_term(term_days: int, cap_days: int) -> int:
    """A term from 1 day to the cap: refused (not clamped), so nobody is told one term and given another."""
    if not 1 <= term_days <= cap_days:
        raise Invalid(_("A term runs from 1 to %(cap_days)s days: that is the longest the assembly lends any "
                        "role.",
                        cap_days=cap_days),
                      field="term")
    return term_days


def check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid(_("Unknown role %(role)s: one of %(join)s.", role=repr(role), join=', '.join(ROLES)), field="role")
    return role


def _in_force(now: datetime):  # noqa: ANN202
    """The SQL test for an assignment that opens something now."""
    return (
        RoleAssignment.revoked_at.is_(None),
        RoleAssignment.expires_at > now,
        RoleAssignment.countersigned_at.is_not(None),
        RoleAssignment.suspended_at.is_(None),
    )


def current_assignment(session: Session, member: Member, role: str, now: datetime) -> RoleAssignment | None:
    """The member's assignment of ``role`` that is in force, pending a countersign, or suspended."""
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


def get_assignment(session: Session, assignment_id: int) -> RoleAssignment:
    assignment = session.get(RoleAssignment, assignment_id)
    if assignment is None:
        raise NotFound(_("That role assignment does not exist."))
    return assignment


def roles_in_force(member_id: Any, now: Any) -> Select[tuple[str]]:
    """The query for a member's roles in force now: a session runs it (active_roles), and so does a bare
    connection where the ORM would cost more than the query (the live log's quick answers, web/live_polls.py,
    which builds it once with ``bindparam`` for both)."""
    return select(RoleAssignment.role).where(RoleAssignment.member_id == member_id, *_in_force(now))


def active_roles(session: Session, member: Member, now: datetime) -> set[str]:
    """The roles that open something now: pending and suspended assignments open nothing."""
    return set(session.scalars(roles_in_force(member.id, now)))


def has_role(session: Session, member: Member, role: str, now: datetime) -> bool:
    return role in active_roles(session, member, now)


def why_nothing_opens(session: Session, member: Member, now: datetime) -> str:
    """What to tell a member with no role in force who tries to log in."""
    current = session.scalars(select(RoleAssignment).where(
        RoleAssignment.member_id == member.id, RoleAssignment.revoked_at.is_(None), RoleAssignment.expires_at > now))
    states = {role_state(assignment, now) for assignment in current}
    if "suspended" in states:
        return ("Your role is suspended until the assembly decides, so this account opens nothing for now. "
                "A hub host records the assembly's decision.")
    if "pending" in states:
        return ("Your role waits for a second role-holder's countersign, so this account opens nothing yet. "
                "Ask another hub host (or a captain, for a steward role) to countersign it.")
    return ("Your roles at the bench have lapsed, so this account opens nothing. "
            "Ask the assembly or a hub host to renew your role.")


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
    # "active", "expiring" (within a week), "pending" (waiting for a countersign),
    # "suspended" (pending the assembly), "lapsed", "revoked" (ended)
    state: str


def role_state(assignment: RoleAssignment, now: datetime) -> str:
    if assignment.revoked_at is not None:
        return "revoked"
    if assignment.expires_at <= now:
        return "lapsed"
    if assignment.countersigned_at is None:
        return "pending"
    if assignment.suspended_at is not None:
        return "suspended"
    if assignment.expires_at - now <= timedelta(days=7):
        return "expiring"
    return "active"


def role_overview(session: Session, now: datetime) -> list[RoleSummary]:
    """Every assignment, newest state first, for the host's roles page."""
    rows = session.scalars(
        select(RoleAssignment).join(RoleAssignment.member)
        .order_by(Member.handle_key, RoleAssignment.role, RoleAssignment.id.desc())
    )
    return [RoleSummary(assignment, role_state(assignment, now)) for assignment in rows]


def count_active_role_holders(session: Session, role: str, now: datetime) -> int:
    return session.scalar(
        select(func.count(func.distinct(RoleAssignment.member_id))).where(RoleAssignment.role == role, *_in_force(now))
    )
