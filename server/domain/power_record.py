"""The record of every power used: append-only, hash-chained, read by the assembly.

Whenever a role-holder uses a power (grants, renewals, countersigns,
suspensions, password resets, withdrawals from the public log, compact
edits, case exports and purges, alerts resolved, node-id and key changes),
one ``PowerUse`` row says when, which role, what, on what, and why.

Nobody can edit or delete a row: the session refuses any change to one
before it reaches the database, no page or command offers it, and each row
carries the SHA-256 of its own content and of the row before it, so a row
changed on the disk (or one taken out) breaks the chain where it happened
(``broken_links``), for anyone who checks.

The record keeps no personal data beyond handles: what was done to whom is
said by handle, code or number, never by what anyone wrote about a person.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, Text, event, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.domain.base import Base
from server.domain.errors import Invalid
from server.domain.people import Member
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

GENESIS = "0" * 64
MAX_REASON = 500

# What a power use is (``action``); the labels are what the assembly reads.
ACTIONS = Labels({
    "role-granted": N_("Role granted"),
    "role-renewed": N_("Role renewed"),
    "role-countersigned": N_("Role countersigned"),
    "suspension-asked": N_("Suspension of a role asked"),
    "role-suspended": N_("Role suspended"),
    "role-restored": N_("Role restored"),
    "role-ended": N_("Role ended"),
    "password-reset": N_("Password set for another member"),
    "log-withdrawn": N_("Entry withdrawn from the public log"),
    "log-republished": N_("Entry put back on the public log"),
    "compact-edited": N_("Compact edited"),
    "audit-revised": N_("What we will revise written down after an audit"),
    "signature-removed": N_("Compact signature removed"),
    "case-exported": N_("Arrest case exported"),
    "case-purged": N_("Arrest case purged"),
    "alert-resolved": N_("Alert resolved"),
    # Issue 16, the ledger: accounts opened and limits set on the assembly's decision (two hosts), crews' and
    # the fund's corrections, the bail and legal fund's payouts (by case code, never a name).
    "ledger-account-opened": N_("Ledger account opened"),
    "ledger-limits-set": N_("Ledger account's limits set"),
    "ledger-countersigned": N_("Ledger account's decision countersigned"),
    "ledger-entry-reversed": N_("Ledger entry reversed"),
    "fund-payout": N_("Bail and legal fund paid out"),
    "report-confirmed": N_("Arrest report confirmed"),
    "node-changed": N_("Radio node id changed"),
    "key-pinned": N_("Radio key pinned"),
    "key-refused": N_("Radio key refused"),
    "host-created": N_("Host created at the Pi"),
    "complaint-closed": N_("Complaint about the patrol closed"),
    # Ends every login at once, colleagues' too: a lock pressed again and again would keep dispatch out.
    "hub-locked": N_("Hub locked: every login ended"),
    # Issue 16: a task taken back from someone who went quiet (by its creator, a host, or the hub itself).
    "task-released": N_("Task released from whoever took it"),
    # Issue 16: the allies' vows, listed and offered over the radio only once countersigned.
    "ally-recorded": N_("Ally recorded"),
    "ally-withdrawn": N_("Ally withdrawn"),
    "vow-recorded": N_("Ally's vow recorded"),
    "vow-countersigned": N_("Ally's vow countersigned"),
    "vow-withdrawn": N_("Ally's vow withdrawn"),
    # Issue 17: the federation. A bench is trusted by two hosts (one confirms its fingerprint, another
    # countersigns), revoked by one at once; the terminal's own decisions are the hub's.
    "federation-joined": N_("Bench joined a federation"),
    "federation-left": N_("Bench left its federation"),
    "bench-key-confirmed": N_("Another bench's key fingerprint confirmed"),
    "bench-trusted": N_("Another bench trusted"),
    "bench-revoked": N_("Another bench revoked"),
    "bench-areas-set": N_("Our areas bordering another bench set"),
})
SYSTEM = "the hub"  # the actor of what the scheduler or the Pi's terminal did
SYSTEM_ROLE = "system"  # its role: no member's power, the hub's own rules or its terminal


class PowerUse(Base):
    """One use of power. Never changed, never deleted."""

    __tablename__ = "power_use"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    # Handles, not member ids: the record outlives members and names no one beyond a handle.
    actor: Mapped[str] = mapped_column(String(24))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(24), index=True)
    subject: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text)
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    @property
    def action_label(self) -> str:
        return ACTIONS.get(self.action, self.action)

    @property
    def fingerprint(self) -> str:
        """The start of the row's hash, grouped for reading aloud: noted at an assembly, checked at the next.

        The chain shows a row changed in place; this shows one rewritten
        together with every row after it, or rows cut off the end.
        """
        return " ".join(self.hash[i:i + 4] for i in range(0, 16, 4))


def _digest(previous_hash: str, at: datetime, actor: str, role: str, action: str, subject: str, reason: str) -> str:
    body = json.dumps([previous_hash, at.isoformat(timespec="microseconds"), actor, role, action, subject, reason],
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def record(session: Session, now: datetime, *, actor: Member | str | None, role: str, action: str, subject: str,
           reason: str | None) -> PowerUse:
    """Append one use of power. ``reason`` is required for every action but the system's own."""
    if action not in ACTIONS:
        raise Invalid(_("Unknown power use %(action)s.", action=repr(action)))
    handle = actor.handle if isinstance(actor, Member) else (actor or SYSTEM)
    reason = clean_text(reason, field="reason", max_length=MAX_REASON, required=handle != SYSTEM,
                        multiline=True) or ""
    last = session.scalar(select(PowerUse).order_by(PowerUse.id.desc()).limit(1))
    previous = last.hash if last is not None else GENESIS
    use = PowerUse(at=now, actor=handle[:24], role=role[:16], action=action, subject=subject[:120], reason=reason,
                   previous_hash=previous,
                   hash=_digest(previous, now, handle[:24], role[:16], action, subject[:120], reason))
    session.add(use)
    session.flush()
    return use


def acting_role(session: Session, now: datetime, member: Member | None, allowed: tuple[str, ...]) -> str:
    """The role ``member`` used for a power that ``allowed`` roles hold: the first of theirs in ``people.ROLES`` order.

    ``SYSTEM_ROLE`` for the hub itself (no member); a member holding none of
    ``allowed`` (the caller checked their right some other way) is recorded
    under the first role they do hold.
    """
    from server.domain import people  # people may come to record its own powers here

    if member is None:
        return SYSTEM_ROLE
    held = people.active_roles(session, member, now)
    for role in (*[r for r in people.ROLES if r in allowed], *people.ROLES):
        if role in held:
            return role
    return "no role"


def entries(session: Session, limit: int = 200, before_id: int | None = None) -> list[PowerUse]:
    """The record, newest first; ``before_id`` pages back."""
    query = select(PowerUse)
    if before_id is not None:
        query = query.where(PowerUse.id < before_id)
    return list(session.scalars(query.order_by(PowerUse.id.desc()).limit(limit)))


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(PowerUse)) or 0


@dataclass(frozen=True)
class BrokenLink:
    id: int
    why: str


def broken_links(session: Session) -> list[BrokenLink]:
    """Rows whose content or place in the chain no longer matches its hash: empty when the record is whole."""
    broken = []
    previous = GENESIS
    for use in session.scalars(select(PowerUse).order_by(PowerUse.id)):
        if use.previous_hash != previous:
            broken.append(BrokenLink(use.id, "the row before it was changed or taken out"))
        expected = _digest(use.previous_hash, use.at, use.actor, use.role, use.action, use.subject, use.reason)
        if use.hash != expected:
            broken.append(BrokenLink(use.id, "its content was changed after it was written"))
        previous = use.hash
    return broken


class RecordIsAppendOnly(Exception):
    """Raised when code tries to change or delete a row of the record: a bug, never a user's input."""


@event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, flush_context, instances) -> None:  # noqa: ANN001
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, PowerUse) and (obj in session.deleted or session.is_modified(obj)):
            raise RecordIsAppendOnly("The record of power used is append-only.")
