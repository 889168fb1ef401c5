"""Three benches federate through a real Mosquitto on loopback (issue 17).

Each bench is a hub on its own SQLite file and its federation link (the
thread the bridge runs, radio_bridge/federation_link.py) on the same
neighbourhood clock (a FakeClock); the broker is Debian's mosquitto, started
by the test with hub_setup's ACL. North's area "Market" borders South; West
is a member that borders neither. One story runs the real bridge process.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from radio_bridge.federation_link import (
    BrokerAddress,
    link_for,
    run_in_thread,
    topic_for,
)
from server import config
from server.clock import utcnow
from server.db import make_engine
from server.domain import alerts, federation, outbox, patrol
from server.extensions import db
from tests.broker import Broker, RawClient, mosquitto_command
from tests.helpers import FakeClock, add_steward, make_app
from tests.processes import env_for


@pytest.fixture(autouse=True)
def _mosquitto_is_here():
    # A missing broker fails, never skips: a skipped story would let the federation go untested unnoticed.
    if mosquitto_command() is None:
        pytest.fail("mosquitto is missing: `sudo apt-get install -y mosquitto`, or run the whole suite with "
                    "`bash tests/run.sh`, which installs it.")


FEDERATION = "eastside"
BENCHES = ("north", "south", "west")
WAIT_S = 15.0  # generous: the machine is shared; every wait ends as soon as its condition holds


def wait_until(condition: Callable[[], object], seconds: float = WAIT_S, what: str = "") -> object:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what or condition}")
        time.sleep(0.05)


class Bench:
    """One bench: its hub (app, database) and, while it runs, its federation link."""

    def __init__(self, folder: Path, name: str, clock: FakeClock, broker: Broker, areas: tuple[str, ...]) -> None:
        self.name = name
        self.clock = clock
        self.instance = folder / name
        self.instance.mkdir(parents=True)
        self.app = make_app(self.instance, clock)
        self.engine = make_engine(f"sqlite:///{self.instance / 'safebench.db'}", 5000)
        self.sessions = sessionmaker(self.engine)
        password_file = self.instance / "broker-password"
        password_file.write_text(f"{name}-password\n")
        with self.app.app_context():
            for area in areas:
                patrol.add_area(db.session, area)
            federation.join(db.session, clock(), self.instance, url=broker.url, federation=FEDERATION, bench=name,
                            username=name, password_file=str(password_file))
            db.session.commit()
        self.stop: threading.Event | None = None
        self.thread: threading.Thread | None = None
        self.link = None
        self.ca_file = broker.ca_file

    def settings(self) -> dict:
        return config.load_settings(self.instance, environ={}, overrides={
            "CLOCK": self.clock, "DATABASE_URL": f"sqlite:///{self.instance / 'safebench.db'}",
            "FEDERATION_RECONNECT_MIN_S": 0.2, "FEDERATION_RECONNECT_MAX_S": 0.5, "FEDERATION_OUTBOX_POLL_S": 0.05,
            "FEDERATION_JOINED_CHECK_S": 0.2,
            "FEDERATION_CA_FILE": str(self.ca_file or "")})

    def start_link(self) -> Bench:
        self.link = link_for(self.settings(), self.sessions)
        assert self.link is not None
        self.stop = threading.Event()
        self.thread = run_in_thread(self.link, self.stop)
        return self

    def stop_link(self) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join(timeout=10)
            assert not self.thread.is_alive()
            self.thread = None

    def read(self, query: Callable) -> object:
        with self.sessions() as session:
            return query(session)

    def write(self, work: Callable) -> object:
        with self.sessions() as session:
            result = work(session)
            session.commit()
            return result

    def neighbour_alerts(self) -> list[tuple[str, str, str, str]]:
        return self.read(lambda s: [(a.bench, a.code, a.area, a.state) for a in s.scalars(
            select(federation.FederationAlert).order_by(federation.FederationAlert.id))])

    def on_air(self) -> list[str]:
        return self.read(lambda s: [m.text for m in s.scalars(
            select(outbox.OutboxMessage).where(outbox.OutboxMessage.text.contains("Near our boundary"))
            .order_by(outbox.OutboxMessage.id))])

    def dropped(self, reason: str) -> int:
        return self.read(lambda s: s.scalar(select(federation.FederationDrop.count)
                                            .where(federation.FederationDrop.reason == reason)) or 0)

    def unsent(self) -> int:
        return self.read(lambda s: s.scalar(select(func.count()).select_from(federation.FederationOutbox)
                                            .where(federation.FederationOutbox.sent_at.is_(None))))

    def raise_sos(self, handle: str, where: str) -> str:
        def work(session):
            steward = add_steward(session, self.clock(), handle, f"!{abs(hash(handle)) % 0xFFFFFF:08x}")
            return alerts.raise_sos(session, self.clock(), steward, where, patrol.SOURCE_RADIO).code
        return self.write(work)


@pytest.fixture
def neighbourhood(tmp_path):
    """Three benches that joined, heard each other's hellos over the broker, and trust each other."""
    clock = FakeClock(datetime(2026, 11, 20, 21, 0))
    broker = Broker(tmp_path / "broker", FEDERATION, {name: f"{name}-password" for name in BENCHES},
                    extra_acl="\n# A broker taken over: this login may write anything.\nuser intruder\n"
                              "topic readwrite safebench/#\n")
    subprocess.run(["mosquitto_passwd", "-b", str(broker.folder / "passwd"), "intruder", "intruder-pw"], check=True)
    broker.start()
    benches = {
        "north": Bench(tmp_path, "north", clock, broker, ("Market", "Canal")),
        "south": Bench(tmp_path, "south", clock, broker, ("Park",)),
        "west": Bench(tmp_path, "west", clock, broker, ("Mill",)),
    }
    try:
        for bench in benches.values():
            bench.start_link()
        # Each bench says hello again once all three listen (the hellos join queued went out before the
        # others had ever subscribed); each hello reaches the other two: heard, not yet trusted.
        for bench in benches.values():
            wait_until(lambda bench=bench: bench.link.subscribed, what=f"{bench.name} subscribed")
        for bench in benches.values():
            bench.write(lambda s, bench=bench: federation.queue_hello(
                s, clock(), federation.load_signing_key(bench.instance)))
        for bench in benches.values():
            wait_until(lambda bench=bench: len(bench.read(federation.members)) == 2, what=f"{bench.name} hears both")
        # The hosts read each other their fingerprints and confirm them at the terminal.
        for bench in benches.values():
            def trust(session, bench=bench):
                for member in federation.members(session):
                    said = benches[member.name].read(lambda s: federation.this_bench(s).fingerprint)
                    federation.confirm(session, clock(), member, said, by=None)
            bench.write(trust)
        # North's hosts: the Market borders South.
        benches["north"].write(lambda s: federation.set_neighbour_areas(
            s, clock(), federation.get_member(s, "south"), ["Market"], by=None))
        yield benches, broker, clock
    finally:
        for bench in benches.values():
            bench.stop_link()
            bench.engine.dispose()
        broker.stop()


def test_an_sos_in_a_boundary_area_reaches_the_neighbour_bench_and_no_other(neighbourhood):
    benches, _broker, _clock = neighbourhood
    north, south, west = benches["north"], benches["south"], benches["west"]
    code = north.raise_sos("kestrel", "Market by the fountain")

    wait_until(south.neighbour_alerts, what="the SOS on South's board")
    assert south.neighbour_alerts() == [("north", code, "Market", "open")]
    # On South's air too, urgent, naming the bench, the code and the published area, never the typed place.
    [text] = wait_until(south.on_air)
    assert "north" in text and code in text and "Market" in text and "fountain" not in text
    assert "kestrel" not in text

    # West is no neighbour of the Market: the broker carries it there too, and West drops it unread.
    wait_until(lambda: west.dropped(federation.NOT_FOR_US) >= 1, what="West to see and drop it")
    assert west.neighbour_alerts() == [] and west.on_air() == []
    # North's outbox: every message acknowledged by the broker, none left to send.
    wait_until(lambda: north.unsent() == 0, what="North's outbox to drain")

    # An SOS in an area that borders no one stays home.
    north.raise_sos("wren", "Canal")
    time.sleep(1.0)
    assert len(south.neighbour_alerts()) == 1


def test_forged_messages_straight_into_the_broker_are_dropped_and_counted(neighbourhood):
    """A broker taken over can write any topic: still it cannot make South act on a message North never signed."""
    benches, broker, clock = neighbourhood
    south = benches["south"]
    intruder = RawClient(broker, "intruder", "intruder-pw")
    body = federation.build_alert("A9", federation.ALERT_SOS, "Market", clock(), 1, True)
    north_key = federation.load_signing_key(benches["north"].instance)
    # North's real signature over one alert, on an envelope whose area was changed afterwards.
    tampered = federation.sign(north_key, federation=FEDERATION, sender="north", kind=federation.ALERT, body=body,
                               now=clock(), to=["south"])
    tampered["body"]["area"] = "Park"
    # And one "from north" signed by a key that is not North's.
    impostor = federation.sign(SigningKey.generate(), federation=FEDERATION, sender="north", kind=federation.ALERT,
                               body=body, now=clock(), to=["south"])
    topic = topic_for(FEDERATION, "north", federation.ALERT)
    for envelope in (tampered, impostor):
        assert intruder.publish(topic, federation.wire(envelope)) == 0  # the broker took them
    wait_until(lambda: south.dropped(federation.BAD_SIGNATURE) >= 2, what="both forgeries dropped")
    assert south.dropped(federation.BAD_SIGNATURE) == 2
    assert south.neighbour_alerts() == [] and south.on_air() == []
    # Garbage on the federation's topic is dropped and counted too, and the link goes on.
    assert intruder.publish(topic, b"\xff not json") == 0
    wait_until(lambda: south.dropped(federation.MALFORMED) == 1, what="garbage dropped")
    intruder.close()
    code = benches["north"].raise_sos("kestrel", "Market")
    wait_until(south.neighbour_alerts, what="a real SOS after the forgeries")
    assert south.neighbour_alerts() == [("north", code, "Market", "open")]


def test_the_broker_down_for_a_while_every_alert_arrives_once_when_it_returns(neighbourhood, caplog):
    benches, broker, clock = neighbourhood
    north, south = benches["north"], benches["south"]
    first = north.raise_sos("kestrel", "Market")
    wait_until(lambda: len(south.neighbour_alerts()) == 1, what="the first SOS")

    broker.kill()  # gone at once, as when its machine loses power
    codes = [first] + [north.raise_sos(handle, "Market") for handle in ("wren", "robin", "finch")]
    clock.advance(minutes=1)
    time.sleep(1.5)  # the links try to reconnect, and fail, a few times meanwhile
    assert north.unsent() >= 3  # kept in North's outbox: not acknowledged by any broker
    broker.start()  # the same port and state

    wait_until(lambda: len(south.neighbour_alerts()) == 4, what="every SOS after the broker's return")
    wait_until(lambda: north.unsent() == 0, what="North's outbox to drain")
    time.sleep(0.5)  # anything sent twice would have arrived by now
    assert sorted(code for _bench, code, _area, _state in south.neighbour_alerts()) == sorted(codes)
    assert len(south.on_air()) == 4  # each put on South's air once
    received = south.read(lambda s: s.scalar(select(func.count()).select_from(federation.FederationReceived)
                                             .where(federation.FederationReceived.kind == federation.ALERT)))
    assert received == 4


def test_a_bench_offline_for_an_hour_catches_up_when_it_returns(neighbourhood):
    benches, _broker, clock = neighbourhood
    north, south = benches["north"], benches["south"]
    south.stop_link()  # its uplink gone; its session (and what it misses) stays at the broker

    early = north.raise_sos("kestrel", "Market")
    wait_until(lambda: north.unsent() == 0, what="North to hand the SOS to the broker")
    clock.advance(minutes=50)
    late = north.raise_sos("wren", "Market")
    wait_until(lambda: north.unsent() == 0, what="North to hand the second SOS to the broker")
    clock.advance(minutes=10)
    assert south.neighbour_alerts() == []

    south.start_link()
    wait_until(lambda: len(south.neighbour_alerts()) == 2, what="South to catch up")
    assert [code for _b, code, _a, _s in south.neighbour_alerts()] == [early, late]
    # On the board both; on the air only the one still fresh (an hour-old SOS is no use on the street).
    [text] = south.on_air()
    assert late in text


def test_a_message_delivered_twice_is_acted_on_once(neighbourhood):
    """QoS 1 delivers at least once: the same signed message again (as a redelivery looks) changes nothing."""
    benches, broker, _clock = neighbourhood
    north, south = benches["north"], benches["south"]
    north.stop_link()  # so that only the copies below carry it
    code = north.raise_sos("kestrel", "Market")
    payload = north.write(lambda s: (federation.queue_new_alerts(s, north.clock(),
                                                                 federation.load_signing_key(north.instance)),
                                     federation.pending(s, north.clock())[0].payload)[1])
    again = RawClient(broker, "north", "north-password", client_id="north-replay")
    for _ in range(3):
        assert again.publish(topic_for(FEDERATION, "north", federation.ALERT), payload.encode()) == 0
    again.close()
    wait_until(lambda: south.dropped(federation.DUPLICATE) >= 2, what="the copies seen")
    assert south.neighbour_alerts() == [("north", code, "Market", "open")]
    assert len(south.on_air()) == 1


def test_a_bench_that_joins_later_hears_the_others_at_once(neighbourhood):
    """Its hello reaches the three; each answers with its own within a poll (the broker kept nothing for a
    bench it had never seen, so their earlier hellos are lost to it)."""
    benches, broker, clock = neighbourhood
    subprocess.run(["mosquitto_passwd", "-b", str(broker.folder / "passwd"), "east", "east-password"], check=True)
    broker.process.send_signal(signal.SIGHUP)  # the broker reads its logins again
    clock.advance(seconds=30)
    east = Bench(benches["north"].instance.parent, "east", clock, broker, ("Dock",))
    try:
        time.sleep(0.3)
        east.start_link()
        wait_until(lambda: len(east.read(federation.members)) == 3, what="East to hear the three")
        assert sorted(m.name for m in east.read(federation.members)) == ["north", "south", "west"]
    finally:
        east.stop_link()
        east.engine.dispose()


def test_a_bench_that_leaves_the_federation_stops_linking_and_the_others_go_on(neighbourhood, caplog):
    benches, _broker, clock = neighbourhood
    west = benches["west"]
    with caplog.at_level("INFO", logger="radio_bridge.federation"):
        west.write(lambda s: federation.leave(s, clock(), west.instance, forget_key=True))
        wait_until(lambda: not west.thread.is_alive(), what="West's link to stop")
    assert "this bench left the federation; the link stops" in caplog.text
    # The others go on: North's SOS still reaches South.
    code = benches["north"].raise_sos("kestrel", "Market")
    wait_until(benches["south"].neighbour_alerts, what="the SOS at South")
    assert benches["south"].neighbour_alerts() == [("north", code, "Market", "open")]


def test_a_broker_that_refuses_this_bench_is_said_plainly_and_tried_again(tmp_path, caplog):
    """A wrong password, then no broker at all: one plain line each, no traceback, and the link keeps trying."""
    clock = FakeClock(datetime(2026, 11, 20, 21, 0))
    broker = Broker(tmp_path / "broker", FEDERATION, {"north": "another-password"}).start()
    north = Bench(tmp_path, "north", clock, broker, ("Market",))
    try:
        with caplog.at_level("INFO", logger="radio_bridge.federation"):
            north.start_link()
            wait_until(lambda: "refused this bench's login" in caplog.text, what="the refusal said")
            broker.stop()
            time.sleep(1.5)
        refusals = [r for r in caplog.records if "refused this bench's login" in r.getMessage()]
        assert len(refusals) == 1  # said once, however often it was tried within the minute
        assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text
        assert north.link.counts["connects"] == 0 and north.thread.is_alive()
    finally:
        north.stop_link()
        north.engine.dispose()
        broker.stop()


def test_a_broker_address_is_mqtt_or_mqtts_with_a_port():
    assert BrokerAddress.parse("mqtts://broker.example.org") == BrokerAddress("broker.example.org", 8883, True)
    assert BrokerAddress.parse("mqtt://10.0.0.2:1884") == BrokerAddress("10.0.0.2", 1884, False)
    assert BrokerAddress.parse("ssl://broker.example.org:8884") == BrokerAddress("broker.example.org", 8884, True)
    for bad in ("http://broker", "mqtts://", "mqtt://host:99999", "wss://broker.example.org"):
        with pytest.raises(ValueError, match="broker address"):
            BrokerAddress.parse(bad)


# -- the real bridge process ------------------------------------------------------------------


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _bridge(instance: Path, **env: str) -> subprocess.Popen:
    command = [str(Path(sys.executable).with_name("safebench")), "bridge", "--with-scheduler", "--radio", "sim"]
    return subprocess.Popen(command, env=env_for(instance, SAFEBENCH_SIM_CHATTER_S="0", **env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_until(process: subprocess.Popen, pattern: str, seconds: float = 60) -> str:
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    raise AssertionError(f"no {pattern!r} from the bridge: {''.join(seen)[-3000:]}")


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        rest, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        rest, _ = process.communicate()
    return rest


def test_the_bridge_links_a_joined_bench_over_tls_and_a_bench_that_never_joined_loads_no_mqtt(tmp_path):
    """The bridge as systemd runs it: joined, it connects over TLS with the CA file; not joined, paho (and
    the ssl it brings, OpenSSL) never enters the process."""
    alone = tmp_path / "alone"
    alone.mkdir()
    make_app(alone, FakeClock(datetime(2026, 11, 20, 21, 0)))
    process = _bridge(alone)
    try:
        _read_until(process, "radio connected")
        time.sleep(0.5)
        assert "_ssl" not in _maps(process.pid) and "libssl" not in _maps(process.pid)
    finally:
        output = _stop(process)
    assert "federation" not in output.lower()

    broker = Broker(tmp_path / "broker", FEDERATION, {"north": "north-password", "south": "south-password"},
                    tls=True).start()
    try:
        clock = FakeClock(utcnow().replace(microsecond=0))  # the process runs on the real clock
        south = Bench(tmp_path, "south", clock, broker, ("Park",)).start_link()
        north = tmp_path / "north"
        north.mkdir()
        app = make_app(north, clock)
        (north / "broker-password").write_text("north-password")
        with app.app_context():
            federation.join(db.session, clock(), north, url=broker.url, federation=FEDERATION, bench="north",
                            username="north", password_file=str(north / "broker-password"))
            db.session.commit()
        process = _bridge(north, SAFEBENCH_FEDERATION_CA_FILE=str(broker.ca_file))
        try:
            said = _read_until(process, r"federation eastside: connected to mqtts://127\.0\.0\.1")
            assert "session new" in said
            # North's hello, from the real process, reaches South.
            wait_until(lambda: south.read(federation.members), what="North's hello at South")
            assert "_ssl" in _maps(process.pid)
        finally:
            output = _stop(process)
            south.stop_link()
            south.engine.dispose()
        assert "Traceback" not in output
    finally:
        broker.stop()
