"""A crowd of live-log watchers without a slot is answered before Flask runs (server/web/live_polls.py).

With every stream slot taken, a watcher asks twice a second and gets what
is new at once. That answer is now given in front of Flask, with the same
checks: these stories hold it to giving exactly what Flask gives, and to
stopping the moment a lock, a logout or a lapsed role would stop a page.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from flask import request_started
from sqlalchemy import event
from werkzeug.test import Client

from server.domain import patrol, people
from server.extensions import db
from server.web.live import (
    SLOTLESS_CROWD,
    SLOTLESS_CROWD_MAX,
    SLOTLESS_KEY,
    SLOTLESS_RETRY_MAX_MS,
    SLOTLESS_RETRY_MS,
    SLOTLESS_SEEN_S,
    SLOTS_KEY,
    slotless_retry_ms,
)
from server.web.live_polls import QuickPolls
from tests.helpers import csrf_token, login, make_member, submit
from tests.test_live_log import HOLD_S, check_in, events_in, private, write_entries

EVENTS = "/host/live/events"


@pytest.fixture
def hub(app, client):
    """As in tests/test_live_log.py: a host logged in, a steward on shift in an area, short held streams."""
    app.config["STREAM_HOLD_S"] = HOLD_S
    make_member(app, "Kestrel", "host")
    make_member(app, "Wren", "steward", node="!a1b2c3d4")
    with app.app_context():
        patrol.add_area(db.session, "Market")
        db.session.commit()
    write_entries(app, lambda session, now, steward: patrol.start_shift(session, now, steward, "Market", "radio"))
    login(client, "Kestrel")
    return app


class FlaskRequests:
    """Counts the requests that reached Flask (its ``request_started`` signal)."""

    def __init__(self, app) -> None:
        self.app = app
        self.count = 0
        request_started.connect(self._seen, app)

    def _seen(self, sender, **extra) -> None:
        self.count += 1

    def stop(self) -> None:
        request_started.disconnect(self._seen, self.app)


@pytest.fixture
def no_slot(hub):
    """Every stream slot taken (by other watchers), as in a crowd."""
    slots = hub.extensions[SLOTS_KEY]
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    yield
    for _ in range(taken):
        slots.release()


@pytest.fixture
def flask_requests(hub):
    seen = FlaskRequests(hub)
    yield seen
    seen.stop()


def poll(client, last_id: int | None = None, **headers):
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    return client.get(EVENTS, headers=headers)


def polls(app) -> QuickPolls:
    return app.wsgi_app


def test_a_watcher_without_a_slot_gets_from_the_quick_answer_exactly_what_flask_gives(hub, client, no_slot,
                                                                                      flask_requests):
    (start,) = write_entries(hub, check_in("before"))
    written = write_entries(hub, check_in("first of the night"), private("incident", "behind the library"))
    quick = poll(client, start)
    assert flask_requests.count == 0, "answered in front of Flask"
    # The same request, through Flask alone (the app behind the quick answers), with the same cookie.
    cookie = client.get_cookie(hub.config["SESSION_COOKIE_NAME"])
    behind = Client(polls(hub).wsgi_app, use_cookies=False).get(EVENTS, headers={
        "Last-Event-ID": str(start), "Cookie": f"{cookie.key}={cookie.value}"})
    assert flask_requests.count == 1
    assert quick.status_code == behind.status_code == 200
    assert quick.get_data(as_text=True) == behind.get_data(as_text=True)
    got = events_in(quick.get_data(as_text=True))
    assert [e["id"] for e in got] == written
    assert got[1]["place"] == "behind the library"  # opened with the watcher's own key to the log
    assert quick.get_data(as_text=True).rstrip().endswith(f"retry: {SLOTLESS_RETRY_MS}")

    def headers(response) -> set[tuple[str, str]]:
        return {(name, value) for name, value in response.headers.items()
                if name not in ("Set-Cookie", "Content-Length", "Transfer-Encoding")}

    assert headers(quick) == headers(behind)

    # The first connection (no last id) and the page's ?after= are read alike.
    assert poll(client).get_data() == Client(polls(hub).wsgi_app, use_cookies=False).get(
        EVENTS, headers={"Cookie": f"{cookie.key}={cookie.value}"}).get_data()
    assert events_in(client.get(f"{EVENTS}?after={written[0]}").get_data(as_text=True))[0]["id"] == written[1]


def test_a_free_slot_or_a_stranger_goes_to_flask(hub, client, flask_requests):
    hub.config["STREAM_HOLD_S"] = 0
    (entry,) = write_entries(hub, check_in("a quiet night"))
    assert [e["id"] for e in events_in(poll(client, entry - 1).get_data(as_text=True))] == [entry]
    assert flask_requests.count == 1, "a slot was free: Flask held the stream"

    slots = hub.extensions[SLOTS_KEY]
    while slots.acquire(blocking=False):
        pass
    stranger = hub.test_client()
    assert poll(stranger, entry - 1).status_code == 302  # no login: Flask sends them to log in
    forged = hub.test_client()
    cookie = client.get_cookie(hub.config["SESSION_COOKIE_NAME"])
    forged.set_cookie(cookie.key, cookie.value[:-3] + "AAA")
    assert poll(forged, entry - 1).status_code == 302
    assert flask_requests.count == 3


def test_a_lock_a_logout_everywhere_and_a_lapsed_role_stop_the_very_next_quick_answer(hub, clock, no_slot):
    make_member(hub, "Heron", "dispatch", term_days=1)
    (entry,) = write_entries(hub, check_in("watched"))
    watchers = {}
    for handle in ("Kestrel", "Heron", "Osprey"):
        if handle == "Osprey":
            make_member(hub, "Osprey", "captain")
        watchers[handle] = hub.test_client()
        login(watchers[handle], handle)
        assert poll(watchers[handle], entry - 1).status_code == 200

    # Osprey logged out everywhere (from another device): the epoch moved on.
    with hub.app_context():
        people.end_sessions(people.get_member(db.session, "Osprey"))
        db.session.commit()
        db.session.remove()
    assert poll(watchers["Osprey"], entry - 1).status_code == 302

    # Heron's dispatch term runs out on the hub's clock (the login itself stays alive).
    ring = hub.extensions["safebench.keyring"]
    ring.idle = ring.lifetime = timedelta(days=2)
    clock.advance(days=1, seconds=1)
    lapsed = poll(watchers["Heron"], entry - 1)
    assert lapsed.status_code in (302, 403) and "text/event-stream" not in lapsed.content_type
    kestrel = poll(watchers["Kestrel"], entry - 1)
    assert [e["id"] for e in events_in(kestrel.get_data(as_text=True))] == [entry]

    # The lock button: every login ends, and nothing of the log is answered to any of them.
    assert submit(watchers["Kestrel"], "/host/", {}, action="/lock", follow=False).status_code in (302, 303)
    assert not polls(hub)._sessions, "the verified cookies went with the keys"
    assert poll(watchers["Kestrel"], entry - 1).status_code == 302


def test_a_key_given_after_the_login_opens_the_next_quick_answer(hub, client, clock, no_slot):
    """Dispatch got a new password (their old grant is gone); the next reader to log in gives the key on."""
    make_member(hub, "Heron", "dispatch")
    (entry,) = write_entries(hub, private("incident", "by the old mill"))
    client.post("/logout", data={"csrf_token": csrf_token(client, "/host/")})
    with hub.app_context():
        people.set_password(people.get_member(db.session, "Heron"), "a brand new password", clock())
        db.session.commit()
    heron = hub.test_client()
    login(heron, "Heron", "a brand new password")
    sealed = events_in(poll(heron, entry - 1).get_data(as_text=True))
    assert sealed[0]["place"] == "(sealed)"  # nobody holding the key has logged in since

    login(hub.test_client(), "Kestrel")  # Kestrel's login gives the key to Heron
    clock.advance(seconds=10)
    opened = events_in(poll(heron, entry - 1).get_data(as_text=True))
    assert opened[0]["place"] == "by the old mill"


def test_a_crowd_of_slotless_polls_costs_a_few_cheap_statements_each(hub, client, no_slot):
    """A bounded structural check: no ORM load of the member, no grants read, per poll."""
    (entry,) = write_entries(hub, check_in("counted"))
    poll(client, entry - 1)  # the shared reader has read the log
    with hub.app_context():
        engine = db.engine
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        for _ in range(20):
            assert poll(client, entry - 1).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) <= 3 * 20  # the member, their roles, and now and then the newest id
    assert not any("vault_grant" in s for s in statements)


def test_a_crowd_without_slots_is_asked_back_a_little_later_and_a_few_watchers_in_half_a_second(hub, client,
                                                                                                no_slot):
    """Each phone (an address on the bench WiFi) counts once; the crowd's retry stays within the second."""
    (entry,) = write_entries(hub, check_in("crowded night"))

    def retry_for(address: str) -> int:
        body = client.get(EVENTS, headers={"Last-Event-ID": str(entry - 1)},
                          environ_base={"REMOTE_ADDR": address}).get_data(as_text=True)
        assert [e["id"] for e in events_in(body)] == [entry]  # every poll still gets what is new
        return int(body.rstrip().rpartition("retry: ")[2])

    assert retry_for("10.0.0.1") == SLOTLESS_RETRY_MS
    for _ in range(3):  # one phone asking again and again is still one watcher
        assert retry_for("10.0.0.1") == SLOTLESS_RETRY_MS

    watchers = hub.extensions[SLOTLESS_KEY]
    watchers._counted_at = float("-inf")  # counted afresh at the next poll (at most once a second)
    for n in range(2, SLOTLESS_CROWD_MAX + 1):
        retry_for(f"10.0.{n // 250}.{n % 250 + 1}")
    watchers._counted_at = float("-inf")
    crowded = retry_for("10.0.0.1")
    assert crowded == SLOTLESS_RETRY_MAX_MS < 1000, "a crowd comes back less often, still within a second"

    # The crowd went home: a watcher left alone is asked back in half a second again.
    watchers.clock = lambda: time.monotonic() + SLOTLESS_SEEN_S + 1
    watchers._counted_at = float("-inf")
    assert retry_for("10.0.0.1") == SLOTLESS_RETRY_MS


def test_the_retry_grows_with_the_crowd_between_its_bounds():
    assert [slotless_retry_ms(n) for n in (0, 1, SLOTLESS_CROWD)] == [SLOTLESS_RETRY_MS] * 3
    middle = slotless_retry_ms((SLOTLESS_CROWD + SLOTLESS_CROWD_MAX) // 2)
    assert SLOTLESS_RETRY_MS < middle < SLOTLESS_RETRY_MAX_MS
    assert slotless_retry_ms(SLOTLESS_CROWD_MAX) == slotless_retry_ms(1000) == SLOTLESS_RETRY_MAX_MS
