"""Bad nights for the hub: a locked database, a radio whose queue is full, a mesh that refuses everything.

Each story breaks one real part (an SQLite write lock held by another
connection; the simulated radio's own fault modes), checks that the host can
see what is wrong and that nothing is lost meanwhile, then mends it and
checks that the hub catches up by itself: no restart, no one clicking retry.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from radio_bridge.bridge import QUEUE_FULL, Bridge
from radio_bridge.mesh import RadioSpec
from server.domain import outbox, sealing
from server.domain.people import DISPATCH, HOST
from server.extensions import db
from tests.helpers import add_steward, login, make_app, make_member, text_of, unsealed
from tests.test_radio_bridge import (  # the bridge's stories' radio, stewards and hand-turned loop
    KESTREL,
    fast_settings,
    log_entries,
    sim,  # noqa: F401  (a fixture)
    turn_until,
    turns,
)


@pytest.fixture
def impatient_app(tmp_path, clock):
    """A hub that gives up on a lock in a tenth of a second, so the stories run in seconds."""
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache", CACHE_NO_NULL_WARNING=True,
                   DB_BUSY_TIMEOUT_MS=100, DB_RETRY_ATTEMPTS=2)
    with app.app_context():
        add_steward(db.session, clock(), "Kestrel", KESTREL)
        db.session.commit()
        make_member(app, "Osprey", HOST, DISPATCH)
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def hub_bridge(impatient_app, sim):  # noqa: F811  (sim is the fixture imported above)
    bridge = Bridge.from_config(impatient_app.config, RadioSpec.parse(f"serial:{sim.path}"), settings=fast_settings())
    turn_until(bridge, lambda: bridge.link.is_open)
    yield bridge
    bridge.close()


def radio_page(app) -> str:
    """The host's radio page, loaded in its own app context as in production (fresh ``g``, fresh session)."""
    with app.app_context():
        client = app.test_client()
        login(client, "Osprey")
        return text_of(client.get("/host/radio"))


def test_a_locked_database_keeps_radio_check_ins_on_disk_and_the_log_catches_up_when_it_frees(
        impatient_app, hub_bridge, sim, clock):  # noqa: F811
    blocker = sqlite3.connect(Path(impatient_app.config["INSTANCE"]) / "safebench.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # a backup or a stuck writer holds the database
    try:
        for note in ("one", "two", "three"):
            sim.deliver_text(KESTREL, f"CI {note}")
        turns(hub_bridge, 1.5)
        assert hub_bridge.journal.depth() == 3  # on disk, waiting: the handheld was told they arrived
        assert log_entries() == []
        # The bridge cannot write its heartbeat either; after two minutes every
        # host page says so (pages that only read work during the lock).
        clock.advance(minutes=3)
        assert "The radio bridge is silent since" in radio_page(impatient_app)
    finally:
        blocker.rollback()
        blocker.close()

    turn_until(hub_bridge, lambda: len(log_entries()) == 3)
    notes = [entry.note for entry in log_entries()]
    assert all(sealing.is_sealed(note) for note in notes)
    assert [unsealed(impatient_app, note) for note in notes] == ["one", "two", "three"]
    assert hub_bridge.journal.depth() == 0
    turn_until(hub_bridge, lambda: "The radio bridge is silent" not in radio_page(impatient_app), seconds=8)


def test_a_radio_with_a_full_transmit_queue_holds_the_outbox_visibly_and_drains_it_when_it_has_room(
        impatient_app, hub_bridge, sim):  # noqa: F811
    sim.queue_full()  # the mesh is busy, or the radio waits out its duty cycle
    for text in ("Curfew notice: community centre", "Water point at the library"):
        outbox.queue_message(db.session, hub_bridge.now(), text)
    db.session.commit()
    turns(hub_bridge, 3)
    refused = [packet for packet in sim.sent_packets if packet.outcome == "queue-full"]
    assert len(refused) <= 1  # at most the one that found the queue full; then the bridge holds back
    db.session.expire_all()
    assert {message.state for message in outbox.recent(db.session)} == {outbox.QUEUED}
    assert QUEUE_FULL in radio_page(impatient_app)

    sim.normal()
    turn_until(hub_bridge, lambda: {m.state for m in outbox.recent(db.session)} == {outbox.ACKED}
               and not db.session.expire_all(), seconds=15)
    on_air = [packet.text for packet in sim.sent_packets if packet.outcome != "queue-full"]
    assert sorted(on_air) == ["Curfew notice: community centre", "Water point at the library"]
    turns(hub_bridge, 0.2)
    assert QUEUE_FULL not in radio_page(impatient_app)


def test_a_mesh_that_refuses_everything_shows_on_the_radio_page_and_retries_go_through_once_it_is_back(
        impatient_app, hub_bridge, sim, clock):  # noqa: F811
    sim.nak("NO_CHANNEL")  # every packet refused (a channel misconfigured on the hub's radio, say)
    outbox.queue_message(db.session, hub_bridge.now(), "Kestrel, please call dispatch", destination=KESTREL)
    db.session.commit()

    def message() -> outbox.OutboxMessage:
        db.session.expire_all()
        return outbox.recent(db.session)[0]

    turn_until(hub_bridge, lambda: message().last_error == "NO_CHANNEL")
    assert message().state == outbox.QUEUED  # waiting for its retry, not lost
    assert "NO_CHANNEL" in radio_page(impatient_app)

    sim.normal()  # the radio is fixed; nobody touches the hub
    clock.advance(seconds=30)  # past the retry backoff
    turn_until(hub_bridge, lambda: message().state == outbox.ACKED)
    assert message().attempts == 2
    assert [packet.outcome for packet in sim.sent_packets] == ["nak:NO_CHANNEL", "ack"]
