"""A host watches the patrol log live: in the browser's event stream, and with ``safebench log --follow``.

Entries are written the way the radio bridge writes them: by another
process (or at least another connection), through the domain layer, each in
its own committed transaction. The stream must show each exactly once, in
order, across reconnects, without holding more web threads than it may.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
from datetime import timedelta
from html import unescape
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from server import config, i18n
from server.clock import utcnow
from server.db import make_engine
from server.domain import patrol, people
from server.extensions import db
from server.web.live import ENDED_EVENT, FEED_KEY, FRESH_S, SLOTLESS_RETRY_MS, SLOTS_KEY
from server.web.filters import datetime_filter
from server.web.live_feed import FeedEvent, LiveFeed, key_signature
from tests.helpers import PASSWORD, login, make_member, reader_keys, seat_role, text_of
from tests.processes import SAFEBENCH, env_for, free_port, safebench, wait_for_http

HOLD_S = 0.5  # short held streams, so a test client's response ends


# -- helpers ------------------------------------------------------------------


def events_in(body: str) -> list[dict]:
    """The entries in a server-sent event stream, checking each event's id matches its entry."""
    found = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields and "event" not in fields:  # a named event is no entry (see ended_with)
            entry = json.loads(fields["data"])
            assert fields.get("id") == str(entry["id"])
            found.append(entry)
    return found


def retries_in(body: str) -> list[int]:
    return [int(value) for value in re.findall(r"^retry: (\d+)$", body, flags=re.MULTILINE)]


def watch(client, last_id: int | None = None) -> str:
    """One response of the event stream, read to its end."""
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    response = client.get("/host/live/events", headers=headers)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def write_entries(app, *writes) -> list[int]:
    """Each ``write(session, now, steward)`` committed on its own, as the bridge commits a packet."""
    ids = []
    with app.app_context():
        for write in writes:
            steward = people.get_member(db.session, "Wren")
            ids.append(write(db.session, app.config["CLOCK"](), steward).id)
            db.session.commit()
        db.session.remove()
    return ids


def check_in(note: str):
    return lambda session, now, steward: patrol.record_check_in(session, now, steward, patrol.SOURCE_RADIO, note=note)


def private(kind: str, place: str, *, drill: bool = False):
    return lambda session, now, steward: patrol.log_entry(
        session, now, kind, steward, patrol.SOURCE_RADIO, place=place, public=False, drill=drill
    )


@pytest.fixture
def hub(app, client):
    """A host logged in, a steward on shift in a published area, short held streams."""
    app.config["STREAM_HOLD_S"] = HOLD_S
    make_member(app, "Kestrel", "host")
    make_member(app, "Wren", "steward", node="!a1b2c3d4")
    with app.app_context():
        patrol.add_area(db.session, "Market")
        db.session.commit()
    write_entries(app, lambda session, now, steward: patrol.start_shift(session, now, steward, "Market", "radio"))
    login(client, "Kestrel")
    return app


# -- the page -----------------------------------------------------------------


def test_a_host_opens_the_live_log_and_sees_the_latest_entries_urgent_ones_marked(hub, client):
    write_entries(hub, check_in("all quiet by the fountain"), private("sos", "behind the station", drill=True))

    page = client.get("/host/live")
    assert page.status_code == 200
    text = text_of(page)
    assert "Live patrol log" in text
    assert "This page updates itself when JavaScript is on; otherwise reload." in text
    assert "all quiet by the fountain" in text and "Wren" in text
    # Newest first: the SOS drill on top, marked as both.
    assert text.index("URGENT DRILL SOS") < text.index("Check-in") < text.index("Shift started")
    html = page.get_data(as_text=True)
    assert 'class="card failed urgent drill"' in html
    assert "/static/live-log.js" in html and 'href="/host/live"' in html  # the script, and the hub's menu

    # This page (and the board) may run its script and open the stream; the full log, whose note field has a
    # live length counter, runs only that (no stream); the dashboard still refuses scripts.
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    full_log = client.get("/host/log")
    assert "script-src 'self'" in full_log.headers["Content-Security-Policy"]
    assert "connect-src" not in full_log.headers["Content-Security-Policy"]
    assert re.findall(r'<script\b[^>]*src="([^"]+)"', full_log.get_data(as_text=True)) == ["/static/counters.js"]
    assert "script-src" not in client.get("/host/").headers["Content-Security-Policy"]

    # The private kinds never reach the public log.
    public = text_of(hub.test_client().get("/log"))
    assert "SOS" not in public and "behind the station" not in public


@pytest.mark.parametrize("path", ["/host/live", "/host/live/events"])
def test_the_live_log_is_refused_to_anyone_without_a_log_role(app, client, path):
    anonymous = client.get(path)
    assert anonymous.status_code == 302 and anonymous.location.startswith("/login")

    make_member(app, "Wren", "steward", node="!a1b2c3d4")
    login(client, "Wren")
    assert client.get(path).status_code == 403


def test_a_silent_alert_reaches_dispatch_live_but_never_a_patrol_captain(hub, client):
    make_member(hub, "Osprey", "captain")
    make_member(hub, "Heron", "dispatch")
    before, duress, after = write_entries(
        hub, check_in("before"), private("duress", "the laundrette"), check_in("after")
    )

    captain = hub.test_client()
    login(captain, "Osprey")
    assert "the laundrette" not in text_of(captain.get("/host/live"))
    assert [e["id"] for e in events_in(watch(captain, last_id=before - 1))] == [before, after]

    dispatch = hub.test_client()
    login(dispatch, "Heron")
    assert "the laundrette" in text_of(dispatch.get("/host/live"))
    assert [e["id"] for e in events_in(watch(dispatch, last_id=before - 1))] == [before, duress, after]


# -- the stream ---------------------------------------------------------------


def test_each_entry_arrives_once_in_order_across_reconnects(hub, client):
    first, second, sos = write_entries(
        hub, check_in("one"), check_in("two"), private("sos", "canal bridge, west end")
    )

    response = client.get("/host/live/events", headers={"Last-Event-ID": str(first)})
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
    body = response.get_data(as_text=True)
    received = events_in(body)
    assert [e["id"] for e in received] == [second, sos]  # none before the last id, none twice
    assert received[1] | {"at": None} == {
        "id": sos, "at": None, "shown_at": "Sat 21 Nov, 20:00", "kind": "sos", "label": "SOS",
        "steward": "Wren", "area": None, "place": "canal bridge, west end", "note": None, "source": "radio",
        "drill": False, "urgent": True,
    }
    assert received[0]["at"] == "2026-11-21T20:00:00Z" and received[0]["area"] == "Market"
    assert received[0]["urgent"] is False and received[0]["note"] == "two"
    # A held stream ends on time and asks the browser back at once.
    assert retries_in(body)[-1] < 1000

    # Written while nobody was connected, and while the next stream is open:
    # the browser comes back with the last id it saw and misses neither.
    (between,) = write_entries(hub, check_in("while away"))
    timer = threading.Timer(HOLD_S / 3, write_entries, (hub, private("arrest", "Market", drill=True)))
    timer.start()
    body = watch(client, last_id=received[-1]["id"])
    timer.join()
    again = events_in(body)
    assert [e["note"] for e in again[:1]] == ["while away"] and again[0]["id"] == between
    assert [(e["kind"], e["drill"], e["urgent"]) for e in again[1:]] == [("arrest", True, True)]

    assert events_in(watch(client, last_id=again[-1]["id"])) == []


def test_a_first_connection_gets_the_newest_entries_then_knows_where_it_stands(hub, client):
    ids = write_entries(hub, *[check_in(f"round {n}") for n in range(60)])
    body = watch(client)
    received = [e["id"] for e in events_in(body)]
    assert received == ids[-50:]  # the newest 50, oldest first
    # An id from before the database was restored from a backup: start afresh, do not wait for it.
    assert [e["id"] for e in events_in(watch(client, last_id=ids[-1] + 1000))] == ids[-50:]

    # A log with nothing in it still gives the browser an id to come back with.
    hub.config["STREAM_HOLD_S"] = 0
    with hub.app_context():
        db.session.execute(db.text("DELETE FROM log_entry"))
        db.session.commit()
    time.sleep(FRESH_S)  # the shared reader's view is at most this old: the next watcher's reads it again
    assert re.search(r"^id: 0$", watch(client), flags=re.MULTILINE)


def test_with_every_slot_taken_a_watcher_gets_what_is_new_at_once_and_comes_back_in_a_second(hub, client):
    hub.config["STREAM_HOLD_S"] = 30  # a held stream would keep this test waiting
    (entry,) = write_entries(hub, check_in("busy night"))
    slots = hub.extensions[SLOTS_KEY]
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    assert taken == config.DEFAULTS["STREAM_SLOTS"]
    try:
        started = time.monotonic()
        body = watch(client, last_id=entry - 1)
        assert time.monotonic() - started < 15, "answered at once, not held for the 30 s a slot would hold it"
    finally:
        for _ in range(taken):
            slots.release()
    assert [e["id"] for e in events_in(body)] == [entry]
    assert body.rstrip().endswith(f"retry: {SLOTLESS_RETRY_MS}")


def test_more_stream_slots_than_web_threads_still_leave_a_thread_for_the_bench(tmp_path, clock):
    from tests.helpers import make_app

    app = make_app(tmp_path / "instance", clock, STREAM_SLOTS=10, WEB_THREADS=4)
    slots = app.extensions[SLOTS_KEY]
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    assert taken == 3
    with app.app_context():
        db.engine.dispose()


def ended_with(body: str) -> str:
    """The message of the stream's last event, which must be the one that ends it."""
    last = body.rstrip().split("\n\n")[-1]
    fields = dict(line.split(": ", 1) for line in last.splitlines())
    assert fields.get("event") == ENDED_EVENT, last
    return json.loads(fields["data"])["message"]


def meanwhile(seconds: float, *steps):
    """Run ``steps`` in order on another thread after ``seconds``, while this one reads a stream."""
    def run():
        time.sleep(seconds)
        for step in steps:
            step()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_an_open_stream_ends_when_its_watchers_role_lapses_and_says_why(hub, clock):
    hub.config["STREAM_HOLD_S"] = 30  # longer than the test: only the lapse may end this stream
    make_member(hub, "Heron", "dispatch", term_days=1)
    watcher = hub.test_client()
    login(watcher, "Heron")
    (before,) = write_entries(hub, check_in("before the term ran out"))

    # The term runs out on the hub's clock while the stream is open; then something is logged.
    logged_after: list[int] = []
    lapse = meanwhile(0.6, lambda: clock.advance(days=1, seconds=1),
                      lambda: logged_after.extend(write_entries(hub, check_in("after the term ran out"))))
    started = time.monotonic()
    body = watch(watcher, last_id=before - 1)
    lapse.join()

    assert time.monotonic() - started < 10, "ended by the lapse, not held for STREAM_HOLD_S"
    assert [e["id"] for e in events_in(body)] == [before]
    message = ended_with(body)
    assert message.startswith("The live log has stopped.") and "have lapsed" in message
    # The page's script closes the stream on that event; were it to reconnect, it is refused.
    assert watcher.get("/host/live/events").status_code in (302, 403)
    # The host, whose role is in force, watches what was logged after (logged in afresh: a day has passed).
    host = hub.test_client()
    login(host, "Kestrel")
    hub.config["STREAM_HOLD_S"] = HOLD_S
    assert [e["id"] for e in events_in(watch(host, last_id=before))] == logged_after


def test_an_open_stream_ends_when_its_watcher_is_logged_out_everywhere(hub, client):
    hub.config["STREAM_HOLD_S"] = 30

    def log_out_everywhere():
        with hub.app_context():
            people.end_sessions(people.get_member(db.session, "Kestrel"))
            db.session.commit()
            db.session.remove()

    logging_out = meanwhile(0.6, log_out_everywhere)
    started = time.monotonic()
    body = watch(client)
    logging_out.join()
    assert time.monotonic() - started < 10
    assert ended_with(body) == "You were logged out, so the live log has stopped. Log in again to watch it."


def test_a_role_lost_while_another_remains_narrows_the_open_stream_at_once(hub, clock):
    """A captain who also held dispatch: once dispatch lapses, silent alerts stop reaching them."""
    hub.config["STREAM_HOLD_S"] = 2
    make_member(hub, "Osprey", "captain")
    with hub.app_context():
        osprey = people.get_member(db.session, "Osprey")
        seat_role(db.session, clock(), osprey, people.DISPATCH, term_days=1)
        db.session.commit()
    # The login outlives the day the clock jumps here (idle lock and lifetime stretched): the role's lapse
    # alone is the story. A lock ending the stream is tests/test_sealed_storage.py's.
    ring = hub.extensions["safebench.keyring"]
    ring.idle = ring.lifetime = timedelta(days=2)
    captain = hub.test_client()
    login(captain, "Osprey")
    (before,) = write_entries(hub, private("duress", "the laundrette"))

    lapse = meanwhile(0.6, lambda: clock.advance(days=1, seconds=1),
                      lambda: write_entries(hub, private("duress", "the bus stop"), private("incident", "Market")))
    body = watch(captain, last_id=before - 1)
    lapse.join()

    received = events_in(body)
    assert [e["place"] for e in received if e["kind"] == "duress"] == ["the laundrette"]
    assert [e["place"] for e in received if e["kind"] == "incident"] == ["Market"]
    assert ENDED_EVENT not in body and retries_in(body)[-1] < 1000  # held to its end, as any stream


# -- a crowd of watchers, one reader -------------------------------------------


class LogReads:
    """Counts the queries that read log rows (a look at the newest id alone is no read of rows)."""

    def __init__(self, app) -> None:
        with app.app_context():
            self.engine = db.engine
        self.rows = 0
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM log_entry" in statement and "max(log_entry.id)" not in statement:
            self.rows += 1

    def stop(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def test_a_crowd_of_watchers_gets_every_entry_once_in_order_from_one_read_of_each_batch(hub, clock):
    """Twenty watchers, three of them logins with different roles, reconnecting after each batch."""
    hub.config["STREAM_HOLD_S"] = 0  # each response is one reconnection: what is new, then come back
    make_member(hub, "Osprey", "captain")
    make_member(hub, "Heron", "dispatch")
    logins = {}
    for handle in ("Kestrel", "Osprey", "Heron"):
        logins[handle] = hub.test_client()
        login(logins[handle], handle)
    (start,) = write_entries(hub, check_in("before anyone watched"))
    watchers = [{"handle": handle, "last_id": start, "got": []}
                for n in range(20) for handle in [("Kestrel", "Osprey", "Heron")[n % 3]]]

    reads = LogReads(hub)
    written = []
    try:
        for batch in range(3):
            written += write_entries(hub, check_in(f"batch {batch}, first"), private("duress", f"the stop {batch}"),
                                     check_in(f"batch {batch}, last"))
            time.sleep(FRESH_S)  # the batch is in before the shared reader looks again
            for watcher in watchers:
                received = events_in(watch(logins[watcher["handle"]], last_id=watcher["last_id"]))
                watcher["got"] += received
                if received:
                    watcher["last_id"] = received[-1]["id"]
    finally:
        reads.stop()

    # The log's rows were read once per batch, not once per watcher (a generous bound: 20 watchers would be 60).
    assert reads.rows <= 2 * 3
    silent = set(written[1::3])  # each batch's duress alert
    for watcher in watchers:
        ids = [e["id"] for e in watcher["got"]]
        # A captain never sees a silent alert; host and dispatch see everything, and each sees it once, in order.
        expected = [i for i in written if i not in silent] if watcher["handle"] == "Osprey" else written
        assert ids == expected, watcher["handle"]
        places = {e["place"] for e in watcher["got"] if e["kind"] == "duress"}
        assert places == (set() if watcher["handle"] == "Osprey" else {"the stop 0", "the stop 1", "the stop 2"})
        assert {e["note"] for e in watcher["got"] if e["kind"] == "check_in"} >= {"batch 0, first", "batch 2, last"}


def test_a_watcher_further_behind_than_the_shared_ring_catches_up_from_the_database(hub, client):
    hub.extensions[FEED_KEY] = LiveFeed(hub, size=5)  # a ring of five, so that twelve entries overflow it
    hub.config["STREAM_HOLD_S"] = 0
    (seen,) = write_entries(hub, check_in("the last one seen before the laptop slept"))
    watch(client, last_id=seen)  # the ring is read, and holds what there was
    missed = write_entries(hub, *[check_in(f"while asleep {n}") for n in range(12)])
    time.sleep(FRESH_S)

    # Older than the ring reaches: read from the database, every entry once, in order, in steps if need be.
    got, last_id = [], seen
    for _ in range(5):
        received = events_in(watch(client, last_id=last_id))
        got += received
        if not received:
            break
        last_id = received[-1]["id"]
    assert [e["id"] for e in got] == missed
    assert [e["note"] for e in got] == [f"while asleep {n}" for n in range(12)]
    # A watcher who is nearly up to date is served from memory: the ring's newest five.
    assert [e["id"] for e in events_in(watch(client, last_id=missed[-3]))] == missed[-2:]


def test_sealed_words_are_opened_for_each_watcher_never_handed_to_one_without_the_key(hub):
    (entry_id,) = write_entries(hub, private("incident", "behind the laundrette"))
    keys = {vault: key for vault, key in reader_keys(hub).items() if vault == "log"}
    assert keys, "the log's vault key, as a host's login holds it"
    with hub.app_context():
        entry = patrol.entries_after(db.session, entry_id - 1, 1)[0]
        shared = FeedEvent.of(entry)
        db.session.remove()

    def place(text: str) -> str:
        return json.loads(text.split("data: ", 1)[1])["place"]

    # One event, read once for everyone: opened for the watcher holding the key, and still only
    # marked for the one without it, whoever asked first; each text is built once and kept.
    assert place(shared.text({}, key_signature({}))) == "(sealed)"
    opened = shared.text(keys, key_signature(keys))
    assert place(opened) == "behind the laundrette"
    assert place(shared.text({}, key_signature({}))) == "(sealed)"
    assert shared.text(keys, key_signature(keys)) is opened


def test_two_hosts_watching_in_two_languages_each_read_new_entries_in_their_own(hub, client):
    # The shared ring reads each entry once; its words are written per watcher's language (issue 15).
    make_member(hub, "Heron", "host")
    spanish = hub.test_client()
    login(spanish, "Heron")
    spanish.get("/language/es?next=/host/")
    before = events_in(watch(client))[-1]["id"]
    write_entries(hub, check_in("all quiet"), private("sos", "by the market"))
    for watcher, code in ((client, "en"), (spanish, "es"), (client, "en")):
        events = events_in(watch(watcher, before))
        with i18n.speaking(code):
            assert [event["label"] for event in events] == [patrol.kind_label("check_in"), patrol.kind_label("sos")]
            with hub.app_context():
                assert events[0]["shown_at"] == datetime_filter(hub.config["CLOCK"]())  # "sáb 21 nov, 20:00"
    with i18n.speaking("es"):
        assert patrol.kind_label("check_in") != "Check-in", "the Spanish catalog has the log's kinds"


def test_the_shared_ring_keeps_no_note_past_the_logs_retention(hub, client, clock):
    """A quiet hub: yesterday's entries are still the newest, but their notes have expired meanwhile."""
    from server.domain import retention

    hub.config["STREAM_HOLD_S"] = 0
    (entry_id,) = write_entries(hub, check_in("number plate AB12 CDE by the bins"))
    assert events_in(watch(client))[-1]["note"] == "number plate AB12 CDE by the bins"  # now in the ring

    clock.advance(days=2)
    with hub.app_context():
        retention.expire_patrol_log(db.session, clock(), timedelta(days=1))
        db.session.commit()
    time.sleep(FRESH_S)
    login(client, "Kestrel")  # two days on, a fresh login
    (shown,) = [e for e in events_in(watch(client)) if e["id"] == entry_id]
    assert shown["note"] is None and shown["steward"] is None
    assert [e["id"] for e in events_in(watch(client, last_id=entry_id - 1))] == [entry_id]
    assert "AB12" not in watch(client, last_id=entry_id - 1)


def test_a_lock_leaves_no_opened_word_of_the_live_log_in_the_web_processs_memory(hub, client):
    """The keys go at a lock; the texts the shared ring built with them go with them."""
    from tests.helpers import csrf_token

    hub.config["STREAM_HOLD_S"] = 0
    (entry_id,) = write_entries(hub, check_in("grey van, plate KX70 ABC, parked by the school"))
    assert events_in(watch(client))[-1]["note"] == "grey van, plate KX70 ABC, parked by the school"
    ring = hub.extensions[FEED_KEY]

    def kept_texts() -> str:
        return "".join(text for event in ring._view.events for text in event._texts.values())

    assert "KX70" in kept_texts()  # kept for the next watcher with the same keys
    locked = client.post("/lock", data={"csrf_token": csrf_token(client, "/host/")})
    assert locked.status_code in (302, 303)
    assert "KX70" not in kept_texts()
    login(client, "Kestrel")  # a reader logs in again: the words are opened anew, for them
    (shown,) = [e for e in events_in(watch(client, last_id=entry_id - 1)) if e["id"] == entry_id]
    assert shown["note"] == "grey van, plate KX70 ABC, parked by the school"


# -- across processes, for real -----------------------------------------------

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def log_in_over_http(base: str, handle: str) -> urllib.request.OpenerDirector:
    """A real HTTP client with a cookie jar, logged in through the login form."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with opener.open(base + "/login", timeout=10) as response:
        token = unescape(_TOKEN.search(response.read().decode()).group(1))
    form = urlencode({"handle": handle, "password": PASSWORD, "csrf_token": token}).encode()
    with opener.open(base + "/login", data=form, timeout=10) as response:
        assert "/host/" in response.url, response.url  # wherever a host lands after logging in
    return opener


def lines_of(stream, into: queue.Queue) -> None:
    """Each line of ``stream`` with the moment it arrived, then None at the end."""
    try:
        while line := stream.readline():
            into.put((time.monotonic(), line.decode() if isinstance(line, bytes) else line))
    except (OSError, ValueError, http.client.HTTPException):
        pass  # the other end went away
    into.put(None)


def wait_for_line(lines: queue.Queue, needle: str, seconds: float) -> tuple[float, str]:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = lines.get(timeout=left)
        except queue.Empty:
            break
        if item is None:
            break
        if needle in item[1]:
            return item
    raise AssertionError(f"no line with {needle!r} within {seconds} s")


def check_in_as_the_bridge(instance: Path, handle: str, note: str) -> tuple[int, float]:
    """A check-in committed by this process through the domain layer, as the radio bridge does it."""
    engine = make_engine(config.default_database_uri(instance), 5000)
    try:
        with Session(engine) as session:
            steward = people.get_member(session, handle)
            entry = patrol.record_check_in(session, utcnow(), steward, patrol.SOURCE_RADIO, note=note)
            session.commit()
            return entry.id, time.monotonic()
    finally:
        engine.dispose()


def test_a_check_in_committed_by_another_process_reaches_the_host_within_a_second(tmp_path):
    instance = tmp_path / "instance"
    assert safebench(instance, "create-host", "Kestrel", stdin=PASSWORD + "\n").returncode == 0
    assert safebench(instance, "steward", "add", "Wren", "!a1b2c3d4").returncode == 0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "hub.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [SAFEBENCH, "serve", "--port", str(port)], env=env_for(instance),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    stream = reader = None
    try:
        assert wait_for_http(base + "/") == 200
        opener = log_in_over_http(base, "Kestrel")
        stream = opener.open(base + "/host/live/events", timeout=15)
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lines_of, args=(stream, lines), daemon=True)
        reader.start()
        wait_for_line(lines, "retry: 500", seconds=5)  # the stream is open and held

        # It arrives on the open stream (how fast is measured by tests/benchmarks/stream.py).
        entry_id, _committed = check_in_as_the_bridge(instance, "Wren", "corner of Elm, all quiet")
        _arrived, line = wait_for_line(lines, f'"id": {entry_id},', seconds=5)
        assert "corner of Elm, all quiet" in line
    finally:
        server.terminate()
        server.wait(timeout=15)
        if reader is not None:
            reader.join(timeout=5)  # the stream ends with the server
        if stream is not None:
            stream.close()
    output = log_path.read_text()
    assert "Traceback" not in output, output
    # The held stream ended as the server stopped, rather than keep a thread waitress waits for and warns about.
    assert "still running" not in output, output


def test_safebench_log_follow_prints_entries_as_they_are_logged_until_ctrl_c(app, clock):
    instance = Path(app.instance_path)
    make_member(app, "Wren", "steward", node="!a1b2c3d4")
    write_entries(app, check_in("before the host sat down"))
    follow = subprocess.Popen(
        [SAFEBENCH, "log", "--follow"], env=env_for(instance), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lines_of, args=(follow.stdout, lines), daemon=True).start()
        _, before = wait_for_line(lines, "Check-in", seconds=30)  # the last entries first, as without -f
        # Notes are sealed, and the command line holds no login to open them: it says there is one.
        assert "(sealed)" in before and "before the host sat down" not in before

        write_entries(app, check_in("lent a charger"), private("sos", "the underpass", drill=True))
        _, charger = wait_for_line(lines, "Check-in", seconds=5)
        _, sos = wait_for_line(lines, "[DRILL] SOS", seconds=5)
        # A typed place is sealed like a note: the line says there is one, never the street.
        assert "(sealed)" in charger and "lent a charger" not in charger
        assert "(sealed)" in sos and "the underpass" not in sos
        assert not charger.startswith("!!") and "[radio]" in charger
        assert sos.startswith("!! ")
    finally:
        follow.send_signal(signal.SIGINT)
        _, errors = follow.communicate(timeout=15)
    assert follow.returncode == 0, errors
    assert "Traceback" not in errors and "Aborted" not in errors and "Exception ignored" not in errors


def test_safebench_log_follow_json_prints_one_object_per_new_entry(app):
    instance = Path(app.instance_path)
    make_member(app, "Wren", "steward", node="!a1b2c3d4")
    follow = subprocess.Popen(
        [SAFEBENCH, "log", "--follow", "--json"], env=env_for(instance), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lines_of, args=(follow.stdout, lines), daemon=True).start()
        time.sleep(1.5)  # let it start on an empty log
        write_entries(app, check_in("first of the night"), private("duress", "Market"))
        _, first = wait_for_line(lines, '"check_in"', seconds=30)
        _, duress = wait_for_line(lines, '"duress"', seconds=5)
    finally:
        follow.terminate()  # as systemd or a closing terminal would stop it
        _, errors = follow.communicate(timeout=15)
    assert follow.returncode == 0, errors
    # The note is sealed, and so is a place typed where no published area was named: the command
    # line says there is one, never the words.
    assert json.loads(first)["note"] == "(sealed)" and "first of the night" not in first
    assert "urgent" not in json.loads(first)
    assert "Market" not in duress
    assert json.loads(duress) | {"id": None, "time": None} == {
        "id": None, "time": None, "kind": "duress", "steward": "Wren", "area": "(sealed)", "note": None,
        "source": "radio", "urgent": True,
    }
