"""What the patrol log keeps after its retention (``LOG_NOTE_RETENTION_DAYS``, 30 days by default).

A log entry says who was where, and what they saw: over weeks, the log
would map each steward's nights and keep every word written about
neighbours. After the retention an entry keeps only what the lunar audit
counts (its kind, its time and its published area); what the steward wrote,
who it was, the place they typed and the shift it belonged to go. Silent
alerts and every other kind go the same way. Ended shifts are reduced to
counts per day and area (``audit.ShiftTally``) and their rows deleted, so
the audit's figures do not change when they go.

A shift still open keeps its row: the steward is on patrol, and the
overdue check needs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session, joinedload

from server.domain import audit
from server.domain.errors import Invalid
from server.domain.patrol import LogEntry, Shift

SETTING = "SAFEBENCH_LOG_NOTE_RETENTION_DAYS"


@dataclass(frozen=True)
class Expired:
    entries: int  # log entries reduced to kind, time and area
    shifts: int  # ended shifts reduced to counts


def retention(days: object) -> timedelta:
    """The retention a setting gives, or a refusal that says what to write instead."""
    try:
        value = float(days)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not value >= 1 or math.isinf(value):
        raise Invalid(f"{SETTING} must be a number of days, at least 1 (it is {days!r}); "
                      "log notes are kept 30 days unless it says otherwise.")
    return timedelta(days=value)


def expire_patrol_log(session: Session, now: datetime, keep: timedelta) -> Expired:
    """Reduce what is older than ``keep`` to what the audit counts."""
    cutoff = now - keep
    shifts = list(session.scalars(
        select(Shift).where(Shift.ended_at.is_not(None), Shift.ended_at < cutoff)
        .options(joinedload(Shift.area)).order_by(Shift.id)))
    audit.tally_shifts(session, shifts)
    # The note is only ever assigned None here, never read: it is sealed, and
    # this job holds no key to open it.
    entries = session.execute(
        update(LogEntry)
        .where(LogEntry.at < cutoff,
               or_(LogEntry.note.is_not(None), LogEntry.member_id.is_not(None), LogEntry.place.is_not(None),
                   LogEntry.shift_id.is_not(None)))
        .values(note=None, member_id=None, place=None, shift_id=None)
        .execution_options(synchronize_session="fetch")
    ).rowcount or 0
    if shifts:
        ids = [shift.id for shift in shifts]
        # A shift's entries come before its end, so none should be left; one that is loses only its shift.
        session.execute(update(LogEntry).where(LogEntry.shift_id.in_(ids)).values(shift_id=None)
                        .execution_options(synchronize_session="fetch"))
        session.execute(delete(Shift).where(Shift.id.in_(ids)).execution_options(synchronize_session="fetch"))
    session.flush()
    return Expired(entries=entries, shifts=len(shifts))
