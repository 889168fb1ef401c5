"""Overdue check-ins: a steward alone on patrol is never silently missing.

A steward on shift checks in every ``interval``. At interval + grace the hub
sends them a direct message with the bell; after a second interval,
everyone on the channel gets an urgent OVERDUE alert with the last check-in
time and area. Any word from the steward (a check-in, an incident, moving
their shift) clears it; a host clearing it by hand writes a note.

The duress word: a check-in containing it looks like any other on the air
and in the public log, and silently raises an alert that only dispatch sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.domain import alerts, outbox, patrol
from server.domain.patrol import LogEntry, Shift
from server.i18n import gettext as _
from server.i18n import speaking


@dataclass(frozen=True)
class OverdueRules:
    interval: timedelta = timedelta(minutes=20)
    grace: timedelta = timedelta(minutes=5)


# Words from a steward that count as hearing from them.
_WORDS = (patrol.SHIFT_START, patrol.CHECK_IN, patrol.INCIDENT)


def last_words(session: Session, shifts: list[Shift]) -> dict[int, datetime]:
    """When each steward last said anything on their shift (its start counts), by shift id.

    One query for every open shift: only their own entries, found through
    the index on ``log_entry.shift_id``, so the cost follows the shifts on
    patrol now and never the years of log behind them.
    """
    if not shifts:
        return {}
    latest = dict(session.execute(
        select(LogEntry.shift_id, func.max(LogEntry.at))
        .join(Shift, Shift.id == LogEntry.shift_id)
        .where(LogEntry.shift_id.in_([shift.id for shift in shifts]), LogEntry.member_id == Shift.member_id,
               LogEntry.kind.in_(_WORDS))
        .group_by(LogEntry.shift_id)
    ).all())
    return {shift.id: max(latest.get(shift.id) or shift.started_at, shift.started_at) for shift in shifts}


def last_word(session: Session, shift: Shift) -> datetime:
    """When the steward last said anything on this shift (its start counts)."""
    return last_words(session, [shift])[shift.id]


def check(session: Session, now: datetime, rules: OverdueRules) -> list[str]:
    """The scheduled check; returns what it did, one line per steward."""
    done = []
    shifts = patrol.on_patrol(session)
    words = last_words(session, shifts)
    for shift in shifts:
        last = words[shift.id]
        quiet = now - last
        member = shift.member
        if shift.overdue_pinged_at is None and quiet >= rules.interval + rules.grace:
            shift.overdue_pinged_at = now
            if member.node_num is not None:
                outbox.queue_message(
                    session, now, overdue_ping_text(last),
                    destination=member.node_num, priority=outbox.NORMAL, bell=True,
                    dedupe_key=f"overdue-ping:{shift.id}:{last:%Y%m%d%H%M}",
                )
            done.append(f"{member.handle} pinged")
        elif (shift.overdue_pinged_at is not None and shift.overdue_alert_id is None
              and quiet >= 2 * rules.interval + rules.grace):
            area = shift.area.name if shift.area else shift.place
            alert = alerts.raise_alert(session, now, alerts.OVERDUE, member, area, patrol.SOURCE_SYSTEM,
                                       how=overdue_detail(last))
            shift.overdue_alert_id = alert.id
            done.append(f"{member.handle} overdue: {alert.code}")
    session.flush()
    return done


def overdue_ping_text(last: datetime) -> str:
    """To the quiet steward's radio, in the hub's language."""
    with speaking(None):
        return _("Check-in due: last %(time)s. Reply CI if you are OK.", time=f"{last:%H:%M}Z")


def overdue_detail(last: datetime) -> str:
    """The overdue alert's detail, which its broadcast carries: in the hub's language."""
    with speaking(None):
        return _("last check-in %(time)s", time=f"{last:%H:%M}Z")


def heard_from(session: Session, now: datetime, shift: Shift | None, *, proven: bool = True) -> None:
    """The steward said something: a late check-in clears the ping and any overdue alert.

    Once an OVERDUE alert is out, only a word that proves it came from the
    steward's own radio (``proven``: a verified direct message, the web, the
    Pi's terminal) stands it down. Channel traffic under their node id may
    be a stranger's, and a forged "CI" must not call off the search.
    """
    if shift is None or shift.overdue_pinged_at is None:
        return
    if not proven and shift.overdue_alert_id is not None:
        return
    shift.overdue_pinged_at = None
    if shift.overdue_alert_id is not None:
        alert = session.get(alerts.Alert, shift.overdue_alert_id)
        shift.overdue_alert_id = None
        if alert is not None and alert.is_open:
            alerts.resolve(session, now, alert, shift.member, patrol.SOURCE_SYSTEM,
                           f"{shift.member.handle} checked in late at {now:%H:%M}Z", note_required=False)


def has_duress_word(note: str | None, word: str) -> bool:
    word = (word or "").strip()
    if not word or not note:
        return False
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", note, flags=re.IGNORECASE) is not None
