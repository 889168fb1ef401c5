"""One reader of new log rows for every live watcher of a web process.

Each open stream, and each watcher asking again without a slot, used to
query the log, load the rows through the ORM and encode them as JSON for
itself: with a hundred watchers, the same new rows two hundred times a
second. Instead the process keeps the newest entries in a ring in memory:

- Whoever needs a fresher view than the ring holds takes a lock and reads
  what is new; watchers waiting on the lock meanwhile find the view fresh
  and read nothing. A read that finds nothing new is one ``max(id)``. There
  is no thread: the app factory starts nothing, and nothing is left to stop.
- What every watcher is told alike is built once per entry. The place and
  the note are sealed, and only a watcher's own login holds the keys that
  open them, so the text of an event is built once per set of keys (opened,
  or "(sealed)" without the key) and kept with the entry.
- A watcher whose last id is older than the ring reaches (a browser back
  after a long sleep) reads the database for itself, as every watcher did.
- The ring holds no entry older than ``RING_MAX_AGE``: the log's retention
  (a day at the least) takes notes, places and stewards off old entries in
  the database, and a copy in memory must not outlive them.

Entries are events by id: on SQLite ids follow commit order (see
``patrol.entries_after``), so "everything above the newest id read" is
exactly what is new.
"""

from __future__ import annotations

import json
import threading
import time
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from server import i18n
from server.domain import patrol, sealing
from server.extensions import db
from server.web.filters import datetime_filter

RING_SIZE = 500  # entries kept: a few minutes of the busiest night, about half a megabyte
FIRST_READ = 200  # what the first watcher of a process finds already read
READ_CAP = 200  # rows per query, so a burst is read in steps
TEXTS_PER_EVENT = 16  # texts kept per entry: per language and set of keys (host, dispatch, captain, none...)
RING_MAX_AGE = timedelta(hours=12)  # well within the shortest retention of the log's notes (a day)

KeySignature = tuple[tuple[str, bytes], ...]


def key_signature(vaults: Mapping[str, Any]) -> KeySignature:
    """Which keys a watcher holds: two watchers with the same signature read every sealed word alike."""
    return tuple(sorted((vault, bytes(key.public_key)) for vault, key in vaults.items()))


def opened(value: str | None, vaults: Mapping[str, Any]) -> str | None:
    """A sealed place or note for this watcher: opened with their keys, else only a mark that there is one."""
    try:
        return sealing.open_text(value, vaults)
    except sealing.SealingError:
        return "(sealed)"


def _shown_at(moment: datetime) -> dict[str, str]:
    shown = {}
    for code in i18n.LANGUAGES:
        with i18n.speaking(code):
            shown[code] = datetime_filter(moment)
    return shown


@dataclass(eq=False)
class FeedEvent:
    """One log entry as the stream tells it: the shared part built once, the sealed part per set of keys."""

    id: int
    kind: str
    at: datetime
    shared: dict[str, Any]  # the payload but for place and note
    place: str | None  # as stored: sealed
    note: str | None
    # Per language and set of keys: watchers share a text only when they read the same words in the same language.
    _texts: dict[tuple[str, KeySignature], str] = field(default_factory=dict)

    @classmethod
    def of(cls, entry: patrol.LogEntry) -> FeedEvent:
        """Needs an app context (the hub's time zone) and the entry's member and area loaded."""
        return cls(entry.id, entry.kind, entry.at, {
            "id": entry.id,
            "at": entry.at.isoformat(timespec="seconds") + "Z",
            # As the hub's pages show times, in its time zone, in each shipped language (payload picks one):
            # the ring is read once in whichever language the watcher who asked first speaks.
            "shown_at": _shown_at(entry.at),
            "kind": entry.kind,
            "label": None,  # in each watcher's language (payload)
            "steward": entry.member.handle if entry.member else None,
            "area": entry.area.name if entry.area else None,
            "place": None,
            "note": None,
            "source": entry.source,
            "drill": bool(entry.drill),
            "urgent": entry.kind in patrol.URGENT_KINDS,
        }, entry.place, entry.note)

    def payload(self, vaults: Mapping[str, Any]) -> dict[str, Any]:
        """For a watcher holding ``vaults``, in the language being spoken (server/i18n.py: the watcher's)."""
        return self.shared | {"label": patrol.kind_label(self.kind), "shown_at": self.shared["shown_at"][i18n.active()],
                              "place": opened(self.place, vaults), "note": opened(self.note, vaults)}

    def text(self, vaults: Mapping[str, Any], signature: KeySignature) -> str:
        """The event as server-sent text for a watcher holding ``vaults`` (whose signature is given)."""
        # Nothing sealed: one text for everyone who reads this language.
        key = (i18n.active(), signature if self.place is not None or self.note is not None else ())
        text = self._texts.get(key)
        if text is None:
            # The event id is the entry's id, so the browser's Last-Event-ID is exactly where its
            # watcher stands. json.dumps escapes newlines: the data is always one line.
            text = f"id: {self.id}\ndata: {json.dumps(self.payload(vaults), ensure_ascii=False)}\n\n"
            if len(self._texts) < TEXTS_PER_EVENT:  # two threads may both build it: the same text
                self._texts[key] = text
        return text


@dataclass(frozen=True)
class FeedView:
    """What the feed had read at one moment; never changed, so readers need no lock."""

    floor: int  # every entry with an id above this is in ``events``
    events: tuple[FeedEvent, ...]
    ids: tuple[int, ...]
    newest: int  # the newest id read (0 for an empty log)
    read_at: float  # time.monotonic() when the read that made it began

    def after(self, last_id: int, hidden_kinds: frozenset[str], limit: int) -> list[FeedEvent] | None:
        """Up to ``limit`` entries after ``last_id`` a watcher may see, oldest first; None if older than the ring."""
        if last_id < self.floor:
            return None
        found = []
        for event in self.events[bisect_right(self.ids, last_id):]:
            if event.kind not in hidden_kinds:
                found.append(event)
                if len(found) == limit:
                    break
        return found

    def newest_entries(self, hidden_kinds: frozenset[str], limit: int) -> list[FeedEvent] | None:
        """The last ``limit`` entries a watcher may see, oldest first; None if the ring holds too few of them."""
        found = []
        for event in reversed(self.events):
            if event.kind not in hidden_kinds:
                found.append(event)
                if len(found) == limit:
                    break
        if len(found) < limit and self.floor > 0:
            return None  # older ones exist that the ring no longer holds
        return found[::-1]


_UNREAD = FeedView(floor=0, events=(), ids=(), newest=0, read_at=float("-inf"))


class LiveFeed:
    """The newest log entries of one app, read once for all its watchers."""

    def __init__(self, app: Flask, size: int = RING_SIZE) -> None:
        self.app = app
        self.size = size
        self._view = _UNREAD
        self._read_once = False
        self._lock = threading.Lock()  # one read at a time
        # Set as the web server stops: held streams end at once instead of pinning its threads.
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def forget_texts(self) -> None:
        """The opened words go with the last login's keys (the keyring calls this): a lock leaves none in memory."""
        for event in self._view.events:
            event._texts.clear()

    def view(self, max_age: float) -> FeedView:
        """The entries as read no longer than ``max_age`` seconds before this call; read again if older."""
        asked = time.monotonic()
        view = self._view
        if self._read_once and view.read_at >= asked - max_age:
            return view
        with self._lock:
            view = self._view
            if self._read_once and view.read_at >= asked - max_age:
                return view  # another watcher read while this one waited for the lock
            self._view = self._read(view, time.monotonic())
            self._read_once = True
            return self._view

    def _read(self, view: FeedView, started: float) -> FeedView:
        # A session of its own, removed at once: a session kept across reads would hold a SQLite
        # read transaction open, pinning its snapshot (nothing new seen, the WAL never checkpointed).
        with self.app.app_context():
            try:
                session = db.session
                top = session.scalar(select(func.max(patrol.LogEntry.id))) or 0
                if self._read_once and top == view.newest:
                    return self._make(view.floor, view.events, started, newest=view.newest)
                if not self._read_once or top < view.newest:
                    # The first read, or the log's newest entry is gone: the database was replaced
                    # (a restored backup) or emptied. Start afresh from the newest entries.
                    events = tuple(FeedEvent.of(e) for e in reversed(patrol.recent_entries(session, limit=FIRST_READ)))
                    floor = events[0].id - 1 if len(events) == FIRST_READ else 0
                    return self._make(floor, events, started)
                new: list[FeedEvent] = []
                last = view.newest
                while len(new) < self.size:
                    rows = patrol.entries_after(session, last, READ_CAP)
                    new.extend(FeedEvent.of(e) for e in rows)
                    if len(rows) < READ_CAP:
                        break
                    last = rows[-1].id
                return self._make(view.floor, view.events + tuple(new), started)
            finally:
                db.session.remove()

    def _make(self, floor: int, events: tuple[FeedEvent, ...], started: float, newest: int | None = None) -> FeedView:
        if newest is None:
            newest = events[-1].id if events else floor
        if len(events) > self.size:
            floor = events[-self.size - 1].id  # what drops out of the ring raises the floor
            events = events[-self.size:]
        # Whatever is older than RING_MAX_AGE goes, and everything before it (ids are the order of commits).
        oldest = self.app.config["CLOCK"]() - RING_MAX_AGE
        stale = [n for n, event in enumerate(events) if event.at < oldest]
        if stale:
            floor = events[stale[-1]].id
            events = events[stale[-1] + 1:]
        if len(events) == len(self._view.events) and events == self._view.events:
            return replace(self._view, floor=floor, newest=newest, read_at=started)  # the same ring, its ids kept
        return FeedView(floor, events, tuple(e.id for e in events), newest, started)
