"""Urgent notices: an SOS or an arrest report goes out to every handheld at once.

This is the radio bridge's first cut of rapid response: the notice is
logged (privately: the public log never lists alerts) and queued as an
urgent broadcast with the bell, so handhelds buzz even when muted. Alert
codes, responders and arrest cases build on it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from server.domain import outbox, patrol
from server.domain.patrol import LogEntry
from server.domain.people import Member
from server.domain.text import clean_text

SOS = "sos"
ARREST = "arrest"


def _place(session: Session, member: Member | None, where: str | None) -> str | None:
    where = clean_text(where, field="place", max_length=patrol.MAX_PLACE, required=False) or None
    if where is None and member is not None:
        shift = patrol.current_shift(session, member)
        where = shift.place if shift else None
    return where


def raise_sos(session: Session, now: datetime, member: Member | None, where: str | None, source: str,
              *, how: str = "SOS") -> LogEntry:
    """Someone needs help now: log it and broadcast an urgent notice with the bell."""
    where = _place(session, member, where)
    who = member.handle if member else "the hub"
    entry = patrol.log_entry(session, now, SOS, member, source, place=where, note=how)
    text = f"SOS {who}" + (f": {where}" if where else "") + ". Responders: reply ACK."
    outbox.queue_message(session, now, text, priority=outbox.URGENT, dedupe_key=f"sos:{entry.id}", bell=True)
    return entry


def report_arrest(session: Session, now: datetime, member: Member | None, where: str, count: int | None,
                  note: str | None, source: str) -> LogEntry:
    """An arrest was witnessed: log it and broadcast code, place, count and time, never names."""
    where = _place(session, member, where) or "place not given"
    entry = patrol.log_entry(session, now, ARREST, member, source, place=where,
                             note=clean_text(note, field="note", max_length=patrol.MAX_NOTE, required=False) or None)
    people = f"{count} " if count else ""
    text = f"ARREST {people}at {where}, {now:%H:%M}Z. Dispatch: check the hub."
    outbox.queue_message(session, now, text, priority=outbox.URGENT, dedupe_key=f"arrest:{entry.id}", bell=True)
    return entry
