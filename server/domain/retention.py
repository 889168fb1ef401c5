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

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, joinedload

from server.domain import audit
from server.domain.errors import Invalid
from server.domain.patrol import LogEntry, Shift
from server.i18n import gettext as _

SETTING = "SAFEBENCH_LOG_NOTE_RETENTION_DAYS"


@dataclass(frozen=True)
class Expired:
    entries: int  # log entries reduced to kind, time and area
    shifts: int  # ended shifts reduced to counts
    more: bool = False  # a call with a ``limit`` left some for the next


# An entry still holding something the retention takes. The same words as the partial index
# ix_log_entry_unreduced_at's WHERE, so SQLite reads the entries left to reduce (the last month or so),
# never the years already reduced.
# A shift brings its entries into the batch: a night's shift has a start, an end and a check-in every 15-30 minutes.
ENTRIES_PER_SHIFT = 20

UNREDUCED = or_(LogEntry.member_id.is_not(None), LogEntry.shift_id.is_not(None), LogEntry.note.is_not(None),
                LogEntry.place.is_not(None))


def retention(days: object) -> timedelta:
    """The retention a setting gives, or a refusal that says what to write instead."""
    try:
        value = float(days)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not value >= 1 or math.isinf(value):
        raise Invalid(_("%(SETTING)s must be a number of days, at least 1 (it is %(days)s); log notes are kept "
                        "30 days unless it says otherwise.",
                        SETTING=SETTING, days=repr(days)))
    return timedelta(days=value)


def expire_patrol_log(session: Session, now: datetime, keep: timedelta, limit: int | None = None) -> Expired:
    """Reduce what is older than ``keep`` to what the audit counts.

    ``limit``: about this many entries, oldest first, so a hub with years
    of log to reduce (after an upgrade, or a retention shortened) does it in
    short transactions; the next call goes on from there. A shift goes with
    all its entries in the same call, so no entry is left half-reduced.
    """
    cutoff = now - keep
    due = (select(Shift).where(Shift.ended_at.is_not(None), Shift.ended_at < cutoff)
           .options(joinedload(Shift.area)).order_by(Shift.ended_at, Shift.id))
    shift_limit = max(1, limit // ENTRIES_PER_SHIFT) if limit else None
    shifts = list(session.scalars(due.limit(shift_limit)))
    audit.tally_shifts(session, shifts)
    ids = list(session.scalars(select(LogEntry.id).where(LogEntry.at < cutoff, UNREDUCED)
                               .order_by(LogEntry.at).limit(limit)))
    if shifts:
        ids = sorted(set(ids).union(session.scalars(select(LogEntry.id).where(
            LogEntry.shift_id.in_([shift.id for shift in shifts]), LogEntry.at < cutoff, UNREDUCED))))
    # Plain table statements, not the ORM's bulk update: a batch must hold the write lock for
    # milliseconds, and the ORM's bookkeeping cost more than SQLite's work. What the session holds
    # of these rows is expired or let go below. The note is only ever assigned None here, never
    # read: it is sealed, and this job holds no key to open it.
    entries, shift_table = LogEntry.__table__, Shift.__table__
    for chunk in _chunks(ids):
        session.execute(entries.update().where(entries.c.id.in_(chunk))
                        .values(note=None, member_id=None, place=None, shift_id=None))
    if shifts:
        shift_ids = [shift.id for shift in shifts]
        # A shift's entries come before its end, so none should be left; one that is loses only its shift.
        session.execute(entries.update().where(entries.c.shift_id.in_(shift_ids)).values(shift_id=None))
        session.execute(shift_table.delete().where(shift_table.c.id.in_(shift_ids)))
        for shift in shifts:
            session.expunge(shift)
    for held in [held for held in session.identity_map.values() if isinstance(held, LogEntry)]:
        session.expire(held)
    more = limit is not None and (len(ids) >= limit or len(shifts) >= (shift_limit or 0))
    return Expired(entries=len(ids), shifts=len(shifts), more=more)


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    """Under SQLite's limit on bound values, however many a call without a ``limit`` finds."""
    return [ids[start:start + size] for start in range(0, len(ids), size)]
