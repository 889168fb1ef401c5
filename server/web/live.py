"""The live patrol log for hosts: a page, and the server-sent event stream it listens to.

Entries reach the database from every process (the radio bridge, the web
server, the scheduler, a host's terminal), so the stream polls the database
rather than waiting on anything in memory; one reader does it for every
watcher of the process (web/live_feed.py), and each watcher is fed from the
entries it read. A stream holds one of waitress's few threads for as long as
it is open, so holding one is a bounded resource: at most ``STREAM_SLOTS``
streams are held at once, each for at most ``STREAM_HOLD_S`` seconds, and a
watcher who finds no slot free gets what is new right away and comes back
half a second later (``retry: 500``; up to 0.7 s when a crowd polls, see
SlotlessWatchers). Either way the browser reconnects with
``Last-Event-ID``, so nothing is missed or seen twice, and the public pages
always keep a thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    make_response,
    render_template,
    request,
)
from flask import session as flask_session
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from server import i18n
from server.domain import patrol, people, sealing
from server.domain.people import Member
from server.extensions import db
from server.web.access import UNLOCK_KEY, current_roles, now, requires
from server.web.converters import MAX_ROW_ID
from server.web.headers import CONTENT_SECURITY_POLICY
from server.web.host import LOG_ROLES
from server.web.keyring import EXTENSION_KEY as KEYRING_KEY
from server.web.keyring import keyring, open_new_grants
from server.web.live_feed import FeedEvent, LiveFeed, key_signature

log = logging.getLogger(__name__)
T = TypeVar("T")

bp = Blueprint("live", __name__, url_prefix="/host")

PAGE_ENTRIES = 50  # rendered into the page, and sent first to a watcher who names no last id
BACKLOG_CAP = 200  # rows per query: a watcher far behind catches up in steps, without a gap
POLL_S = 0.25  # a held stream looks for new entries this often
FRESH_S = 0.1  # a watcher without a slot takes the shared reader's view if read this recently
KEEPALIVE_S = 10.0  # a comment now and then, so proxies and the browser keep a quiet stream open
SLOTLESS_RETRY_MS = 500  # no slot free: come back in half a second (still "within a second" at p95)
# A crowd without slots comes back less often, so its requests cost the bench page less (issue 14):
# from SLOTLESS_CROWD watchers polling at once the retry grows, to SLOTLESS_RETRY_MAX_MS at
# SLOTLESS_CROWD_MAX of them; an entry still reaches every one of them within a second at p95.
SLOTLESS_RETRY_MAX_MS = 700
SLOTLESS_CROWD, SLOTLESS_CROWD_MAX = 20, 100
SLOTLESS_SEEN_S = 2.0  # a watcher polled "lately" if within this (four retries at the longest)
SLOTLESS_KEY = "live_log_slotless"
RECONNECT_MS = 100  # a held stream ended on time: come back at once
ENDED_EVENT = "ended"  # the last event of a stream whose watcher may no longer watch, with why
SLOTS_KEY = "live_log_slots"
# The vaults whose words the stream shows: a log entry's place and note
# (patrol.LogEntry). Only these are opened for a watcher, so every watcher
# holding the log's key shares one text per event, whatever else they read.
LIVE_VAULTS = frozenset({sealing.LOG})
FEED_KEY = "live_log_feed"
POLLS_KEY = "safebench.live_polls"  # web/live_polls.py's QuickPolls
SERVER_STOP_HOOKS = "safebench.on_server_stop"  # server/serving.py's name for it

# This page alone runs a script (its own, from the hub) and opens a connection
# (back to the hub); every other page keeps refusing both.
LIVE_PAGE_POLICY = f"{CONTENT_SECURITY_POLICY}; script-src 'self'; connect-src 'self'"


@bp.record_once
def _make_slots(state: BlueprintSetupState) -> None:
    """One semaphore per app (a process serves one app), sized to leave threads for everyone else."""
    app = state.app
    slots = int(app.config["STREAM_SLOTS"])
    threads = int(app.config["WEB_THREADS"])
    if slots >= threads:
        log.warning("STREAM_SLOTS=%d would let watchers hold every web thread; using %d", slots, threads - 1)
        slots = threads - 1
    app.extensions[SLOTS_KEY] = threading.BoundedSemaphore(max(slots, 0))
    app.extensions[SLOTLESS_KEY] = SlotlessWatchers()
    # Reads nothing and starts no thread until a watcher asks.
    feed = app.extensions[FEED_KEY] = LiveFeed(app)
    app.extensions[KEYRING_KEY].on_emptied.append(feed.forget_texts)
    # server/serving.py calls these as it stops: held streams end rather than hold its threads to the end.
    app.extensions.setdefault(SERVER_STOP_HOOKS, []).append(feed.stop)
    # A watcher without a slot is answered before Flask runs: a crowd of them costs the bench page little.
    from server.web import live_polls

    live_polls.init_app(app)


# -- the page -----------------------------------------------------------------


@bp.get("/live")
@requires(*LOG_ROLES)
def page() -> ResponseReturnValue:
    hidden = patrol.kinds_hidden_from(current_roles())
    entries = patrol.recent_entries(db.session, limit=PAGE_ENTRIES, hidden_kinds=hidden)
    response = make_response(
        render_template(
            "host/live.html",
            entries=entries,
            newest=entries[0].id if entries else 0,
            urgent_kinds=patrol.URGENT_KINDS,
        )
    )
    # The app sets its policy with setdefault, so this one wins on this page.
    response.headers["Content-Security-Policy"] = LIVE_PAGE_POLICY
    return response


# -- the stream ---------------------------------------------------------------


def last_id_of(last_event_id: str | None, after: str | None) -> int | None:
    """The browser's ``Last-Event-ID`` on a reconnect, else the page's ``?after=``; None for neither."""
    for value in (last_event_id, after):
        value = (value or "").strip()
        if value.isascii() and value.isdigit() and int(value) <= MAX_ROW_ID:
            return int(value)
    return None


def _requested_last_id() -> int | None:
    return last_id_of(request.headers.get("Last-Event-ID"), request.args.get("after"))


@dataclass(frozen=True)
class Watcher:
    """Who opened a stream: checked again while it is open, as every request checks it."""

    member_id: int
    session_epoch: int
    # The keyring token of the login that opened the stream: locked, idle or too old, and the stream ends.
    token: str | None = None


class LogReader:
    """What one watcher is sent: the shared reader's entries, narrowed to what they may see and opened with their keys.

    A watcher further behind than the shared reader's ring reads the
    database for itself, each time in a session of its own: a session held
    across polls would keep a read transaction open, and a SQLite WAL reader
    pins the snapshot it started with (the stream would see nothing new, and
    the WAL file could not be checkpointed). So every read runs in a fresh
    app context whose session is removed when it ends (the stream itself runs
    after the request's context is gone).
    """

    # Who opened the stream, set by the view; None for nobody in particular (then nothing is checked).
    watcher: Watcher | None = None

    def __init__(self, app: Flask, hidden_kinds: frozenset[str], vaults: Mapping[str, Any] | None = None) -> None:
        self.app = app
        self.feed: LiveFeed = app.extensions[FEED_KEY]
        # The watcher's opened vault keys, read at (re)connection like their roles.
        self.vaults = vaults or {}
        # As on the full log: a silent alert only for host and dispatch, and so on.
        self.hidden_kinds = hidden_kinds
        # The watcher's language, as the request that opened the stream spoke it: the stream goes on
        # writing after the request's own hooks have run (web/languages.py).
        self.language = i18n.active()

    @property
    def vaults(self) -> Mapping[str, Any]:
        return self._vaults

    @vaults.setter
    def vaults(self, vaults: Mapping[str, Any]) -> None:
        self._vaults = vaults
        self._signature = key_signature(vaults)

    def text(self, events: list[FeedEvent]) -> str:
        """The events as server-sent text for this watcher, in their language."""
        with i18n.speaking(self.language):
            return "".join(event.text(self._vaults, self._signature) for event in events)

    def _read(self, work: Callable[[Session], T]) -> T:
        with self.app.app_context():
            try:
                return work(db.session)
            finally:
                db.session.remove()

    def after(self, last_id: int, fresh_s: float) -> list[FeedEvent]:
        """Up to BACKLOG_CAP entries after ``last_id``, oldest first, as read at most ``fresh_s`` ago."""
        found = self.feed.view(fresh_s).after(last_id, self.hidden_kinds, BACKLOG_CAP)
        if found is not None:
            return found
        return self._read(lambda s: [
            FeedEvent.of(e) for e in patrol.entries_after(s, last_id, BACKLOG_CAP, hidden_kinds=self.hidden_kinds)
        ])

    def newest(self) -> list[FeedEvent]:
        """The last PAGE_ENTRIES entries, oldest first."""
        found = self.feed.view(FRESH_S).newest_entries(self.hidden_kinds, PAGE_ENTRIES)
        if found is not None:
            return found
        return self._read(lambda s: [
            FeedEvent.of(e)
            for e in reversed(patrol.recent_entries(s, limit=PAGE_ENTRIES, hidden_kinds=self.hidden_kinds))
        ])

    def why_not_watching(self) -> str | None:
        """Why the watcher may no longer watch (in their language), or None while they may."""
        with i18n.speaking(self.language):
            return self._why_not_watching()

    def _why_not_watching(self) -> str | None:
        """Why the watcher may no longer watch, or None while they may.

        Roles are read against the hub's clock, as on every request
        (web/access.py): a role that lapsed, was suspended or ended since the
        stream opened ends it, and so does logging out everywhere. A role
        lost while another log role remains narrows what is sent from now on.
        """
        if self.watcher is None:
            return None
        watcher = self.watcher
        # The same checks as a slotless poll's, without the ORM (web/live_polls.py), four times a
        # second per held stream; the full check below only when they fail, to say why.
        polls = self.app.extensions.get(POLLS_KEY)
        moment = self.app.config["CLOCK"]()
        unlocked = self.app.extensions[KEYRING_KEY].get(watcher.token, moment)
        if polls is not None and unlocked is not None and unlocked.member_id == watcher.member_id:
            standing = polls.standing(watcher.member_id, str(watcher.session_epoch), moment, unlocked)
            if standing is not None:
                roles, self.vaults = standing
                self.hidden_kinds = patrol.kinds_hidden_from(roles)
                return None

        def check(session: Session) -> str | None:
            member = session.get(Member, watcher.member_id)
            if member is None or member.session_epoch != watcher.session_epoch:
                return "You were logged out, so the live log has stopped. Log in again to watch it."
            moment = self.app.config["CLOCK"]()
            roles = people.active_roles(session, member, moment)
            if not roles:
                return f"The live log has stopped. {people.why_nothing_opens(session, member, moment)}"
            if not roles & set(LOG_ROLES):
                return "Your roles in force no longer open the live log, so it has stopped."
            self.hidden_kinds = patrol.kinds_hidden_from(roles)
            # The keys go with the login: a lock (button, `safebench lock`, a duress login), an idle
            # spell or the login's lifetime end the stream as they end every page.
            unlocked = self.app.extensions[KEYRING_KEY].get(watcher.token, moment)
            if unlocked is None or unlocked.member_id != member.id:
                return "The hub was locked, or your login ended, so the live log has stopped. Log in again to watch it."
            readable = sealing.vaults_for(roles) & LIVE_VAULTS
            open_new_grants(session, moment, member, unlocked, readable, self.app.extensions[KEYRING_KEY].opened_vaults())
            self.vaults = {vault: key for vault, key in unlocked.vaults.items() if vault in readable}
            return None

        return self._read(check)

    def newest_id(self) -> int:
        """The newest entry's id, whoever may see it (0 for an empty log)."""
        return self.feed.view(FRESH_S).newest


class SlotlessWatchers:
    """How many watchers asked without a slot lately (by address: a phone each), and so how soon each comes back.

    Each poll is a request the web server reads, hands to a thread and
    answers: a hundred watchers coming back every half second are two hundred
    requests a second beside the bench page's. Counting is one dict write a
    poll; the count is taken at most once a second.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[str, float] = {}
        self._count = 0
        self._counted_at = float("-inf")
        self._guard = threading.Lock()

    def retry_ms(self, who: str | None) -> int:
        """Note a slotless poll from ``who`` (an address; None for unknown), and the retry to send it."""
        now = self.clock()
        if who:
            self._seen[who] = now
        if now - self._counted_at >= 1.0 and self._guard.acquire(blocking=False):
            try:
                since = now - SLOTLESS_SEEN_S
                self._seen = {key: at for key, at in list(self._seen.items()) if at >= since}
                self._count, self._counted_at = len(self._seen), now
            finally:
                self._guard.release()
        return slotless_retry_ms(self._count)


def slotless_retry_ms(watchers: int) -> int:
    """The retry for a watcher without a slot when ``watchers`` of them poll at once."""
    crowd = min(max(watchers, SLOTLESS_CROWD), SLOTLESS_CROWD_MAX) - SLOTLESS_CROWD
    return SLOTLESS_RETRY_MS + (SLOTLESS_RETRY_MAX_MS - SLOTLESS_RETRY_MS) * crowd // (SLOTLESS_CROWD_MAX - SLOTLESS_CROWD)


def first_answer(reader: LogReader, last_id: int | None, retry_ms: int = SLOTLESS_RETRY_MS) -> tuple[str, int]:
    """What every response starts with, its retry included: the whole answer to a watcher without a slot."""
    first, last_id = _first_events(reader, last_id)
    # Without a slot the response ends here and the browser is back in half a second (a little
    # later in a crowd: SlotlessWatchers); with one, the retry spaces out reconnects if the
    # connection breaks mid-stream.
    return first + f"retry: {retry_ms}\n\n", last_id


def _first_events(reader: LogReader, last_id: int | None) -> tuple[str, int]:
    """What a response starts with, and the id the watcher has seen after it."""
    if last_id is not None:
        rows = reader.after(last_id, FRESH_S)
        if rows:
            return reader.text(rows), rows[-1].id
        if last_id <= reader.newest_id():
            return "", last_id
        # An id beyond the newest entry comes from before the hub's database
        # was replaced (a restored backup): start afresh rather than wait.
    rows = reader.newest()
    last_id = rows[-1].id if rows else 0
    # An id with no data sets the browser's Last-Event-ID without an event, so
    # even an empty first answer tells it where it stands.
    return reader.text(rows) + f"id: {last_id}\n\n", last_id


def stream(reader: LogReader, slots: threading.Semaphore, last_id: int | None, hold_s: float,
           slotless_retry: Callable[[], int] | None = None) -> Iterator[str]:
    """Server-sent events: log entries after ``last_id``, as they are committed.

    The slot is taken when the response starts streaming and given back in
    ``finally``, which runs when the stream ends, when waitress finds the
    client gone (at the next write: a keepalive at the latest) or when the
    response is closed unread.
    """
    held = slots.acquire(blocking=False)
    try:
        retry = SLOTLESS_RETRY_MS if held or slotless_retry is None else slotless_retry()
        first, last_id = first_answer(reader, last_id, retry)
        yield first  # waitress sends the headers with the first non-empty chunk, so this goes at once
        if not held:
            return
        deadline = time.monotonic() + hold_s
        keepalive_at = time.monotonic() + KEEPALIVE_S
        while (now := time.monotonic()) < deadline:
            if now >= keepalive_at:
                yield ": keepalive\n\n"
                keepalive_at = now + KEEPALIVE_S
            if reader.feed.stopping.wait(min(POLL_S, deadline - now)):
                break  # the server is stopping: the browser comes back to it (or its successor)
            # Checked before every read, so nothing logged after a role lapsed reaches its watcher.
            if why := reader.why_not_watching():
                # The page closes its stream on this event and says why; were it
                # missed, the reconnection is refused as any other request would be.
                yield f"event: {ENDED_EVENT}\ndata: {json.dumps({'message': why}, ensure_ascii=False)}\n\n"
                return
            rows = reader.after(last_id, FRESH_S)
            if rows:
                last_id = rows[-1].id
                yield reader.text(rows)
        # Ended on time: reconnect at once, with the last id sent.
        yield f"retry: {RECONNECT_MS}\n\n"
    finally:
        if held:
            slots.release()


def _live_vaults() -> dict[str, Any]:
    """The keys this request may open (web/access.py open_vaults), of the vaults the stream shows alone."""
    unlocked = current_user.unlocked
    if unlocked is None:
        return {}
    readable = sealing.vaults_for(current_roles()) & LIVE_VAULTS
    open_new_grants(db.session, now(), current_user.member, unlocked, readable, keyring().opened_vaults(),
                    attempts=current_app.config["DB_RETRY_ATTEMPTS"])
    return {vault: key for vault, key in unlocked.vaults.items() if vault in readable}


@bp.get("/live/events")
@requires(*LOG_ROLES)
def events() -> ResponseReturnValue:
    app = current_app._get_current_object()
    # Roles are checked on every (re)connection, and by the open stream before
    # each read (LogReader.why_not_watching). They are read here: the stream
    # runs after the request is over.
    reader = LogReader(app, patrol.kinds_hidden_from(current_roles()), _live_vaults())
    reader.watcher = Watcher(current_user.member.id, current_user.member.session_epoch, flask_session.get(UNLOCK_KEY))
    slotless, who = app.extensions[SLOTLESS_KEY], request.remote_addr
    body = stream(reader, app.extensions[SLOTS_KEY], _requested_last_id(), float(app.config["STREAM_HOLD_S"]),
                  lambda: slotless.retry_ms(who))
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"  # as on every private page (web/headers.py)
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must pass each event on at once
    return response
