"""Stories of benches that hear each other: signed messages between three hubs, no broker in between.

Market, Canal and Harbour are three benches of the Eastside federation, each
its own hub on its own SQLite file. What one bench queues in its outbox is
handed to another's ``receive`` as the bytes a broker would deliver: the
transport (MQTT, the mesh) is other stories'. The clock is a FakeClock on a
Saturday night in November 2026.
"""

from __future__ import annotations

import json
import stat
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from sqlalchemy import select

from server.domain import alerts, cases, federation, outbox, patrol, people, power_record
from server.extensions import db
from tests.helpers import FakeClock, add_steward, make_app, seat_role

BROKER = "mqtts://broker.eastside.example:8883"


class Bench:
    """One hub of the federation: its app (a migrated SQLite file) and its instance folder."""

    def __init__(self, root: Path, name: str, clock: FakeClock) -> None:
        self.name = name
        self.instance = root / name
        self.clock = clock
        self.app = make_app(self.instance, clock, CACHE_TYPE="NullCache", CACHE_NO_NULL_WARNING=True)

    @contextmanager
    def session(self):
        with self.app.app_context():
            try:
                yield db.session
                db.session.commit()
            finally:
                db.session.remove()

    @property
    def key(self) -> SigningKey:
        return federation.load_signing_key(self.instance)

    def join(self, fed: str = "Eastside") -> None:
        with self.session() as s:
            federation.join(s, self.clock(), self.instance, url=BROKER, federation=fed, bench=self.name)

    def outgoing(self, kind: str | None = None) -> list[bytes]:
        """What this bench's transport would publish now (and marks it sent, as a broker's PUBACK would)."""
        with self.session() as s:
            items = federation.pending(s, self.clock())
            for item in items:
                federation.mark_sent(s, self.clock(), item)
            return [item.payload.encode() for item in items if kind is None or item.kind == kind]

    def receive(self, raw) -> federation.Received:
        with self.session() as s:
            return federation.receive(s, self.clock(), raw)

    def fingerprint(self) -> str:
        with self.session() as s:
            return federation.this_bench(s).fingerprint

    def drops(self) -> dict[str, int]:
        with self.session() as s:
            return {d.reason: d.count for d in federation.drop_counts(s)}

    def trust(self, other: Bench) -> None:
        """At the Pi's terminal: the other bench's hello heard, its fingerprint read aloud and typed in."""
        for raw in other.outgoing(federation.HELLO) or [self._hello_again(other)]:
            self.receive(raw)
        with self.session() as s:
            federation.confirm(s, self.clock(), federation.get_member(s, other.name), other.fingerprint(), by=None)

    def _hello_again(self, other: Bench) -> bytes:
        with other.session() as s:
            item = federation.queue(s, self.clock(), other.key, federation.HELLO, federation.build_hello(s, other.key))
            federation.mark_sent(s, self.clock(), item)
            return item.payload.encode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 21, 21, 0, 0))


@pytest.fixture
def benches(tmp_path, clock):
    made = {name: Bench(tmp_path, name, clock) for name in ("Market", "Canal", "Harbour")}
    for bench in made.values():
        bench.join()
    yield made
    for bench in made.values():
        with bench.app.app_context():
            db.engine.dispose()


def federate(benches: dict[str, Bench]) -> None:
    """Every bench trusts every other: each host read their fingerprint to the others."""
    for bench in benches.values():
        for other in benches.values():
            if other is not bench:
                bench.trust(other)


def hosts(bench: Bench) -> tuple[people.Member, people.Member]:
    s = db.session
    heron = people.find_member(s, "Heron") or people.add_member(s, bench.clock(), "Heron")
    ibis = people.find_member(s, "Ibis") or people.add_member(s, bench.clock(), "Ibis")
    for host in (heron, ibis):
        if not people.has_role(s, host, people.HOST, bench.clock()):
            seat_role(s, bench.clock(), host, people.HOST)
    return heron, ibis


# -- the key ----------------------------------------------------------------------------------------


def test_joining_makes_a_key_only_this_user_can_read_and_a_fingerprint_hosts_read_aloud(benches):
    market = benches["Market"]
    key_file = market.instance / federation.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    spoken = market.fingerprint()
    assert len(spoken.split()) == 5 and all(len(group) == 4 for group in spoken.split())
    with market.session() as s:
        bench = federation.this_bench(s)
        # The database holds the public half only: a copy of it (a backup) signs nothing.
        assert federation.public_key_of(market.key) == bench.public_key
        assert str(bytes(market.key).hex()) not in json.dumps([bench.public_key, bench.broker_url])
        assert power_record.entries(s)[0].action == "federation-joined"
    # Joining again (a new broker address) keeps the key: the members' trust still holds.
    market.join()
    assert market.fingerprint() == spoken


# -- trust ---------------------------------------------------------------------------------------------


def test_a_message_signed_by_a_trusted_bench_is_acted_on_once_and_only_once(benches):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    with market.session() as s:
        federation.queue(s, market.clock(), market.key, federation.COUNTS, {"arrested": 3, "released": 1})
    (message,) = market.outgoing(federation.COUNTS)
    assert canal.receive(message).accepted
    # The broker delivers it again (QoS 1 after a lost PUBACK), and once more over the mesh.
    assert canal.receive(message).reason == federation.DUPLICATE
    with canal.session() as s:
        assert federation.receive(s, canal.clock(), message, via="mesh").reason == federation.DUPLICATE
        member = federation.get_member(s, "Market")
        assert (member.arrested, member.released) == (3, 1)
        assert member.last_kind == federation.COUNTS
        assert len([r for r in federation.recent_received(s) if r.kind == federation.COUNTS]) == 1
    assert canal.drops()[federation.DUPLICATE] == 2


def test_a_bench_is_trusted_by_two_hosts_and_revoked_by_one_at_once(benches):
    market, canal = benches["Market"], benches["Canal"]
    canal.receive(market.outgoing(federation.HELLO)[0])
    said = market.fingerprint()
    with canal.session() as s:
        heron, ibis = hosts(canal)
        member = federation.get_member(s, "Market")
        assert member.state == "heard"
        with pytest.raises(federation.Invalid):
            federation.confirm(s, canal.clock(), member, "7ce9 4876 2fe4 6540 2a1a", by=heron)  # misheard
        federation.confirm(s, canal.clock(), member, said, by=heron)
        assert member.state == "confirmed" and not member.is_trusted
        with pytest.raises(federation.Conflict):
            federation.confirm(s, canal.clock(), member, said, by=heron)  # nobody countersigns their own
    # Confirmed by one host only: its messages are still not acted on.
    with market.session() as s:
        federation.queue(s, market.clock(), market.key, federation.COUNTS, {"arrested": 2, "released": 0})
    counts = market.outgoing(federation.COUNTS)[0]
    assert canal.receive(counts).reason == federation.UNTRUSTED
    with canal.session() as s:
        heron, ibis = hosts(canal)
        federation.confirm(s, canal.clock(), federation.get_member(s, "Market"), said.upper().replace(" ", ""),
                           by=ibis)
        assert federation.get_member(s, "Market").is_trusted
    # Not dropped for good: offered again (the broker's persistent session), it is acted on now.
    assert canal.receive(counts).accepted
    # Market's SD card is seized: one host revokes it, and from that moment nothing it signs is acted on.
    with canal.session() as s:
        heron, _ = hosts(canal)
        federation.revoke(s, canal.clock(), federation.get_member(s, "Market"), reason="SD card seized", by=heron)
        actions = [use.action for use in power_record.entries(s)[:3]]
        assert actions == ["bench-revoked", "bench-trusted", "bench-key-confirmed"]
    with market.session() as s:
        federation.queue(s, market.clock(), market.key, federation.COUNTS, {"arrested": 9, "released": 0})
    assert canal.receive(market.outgoing(federation.COUNTS)[0]).reason == federation.REVOKED


def test_forged_unknown_other_federation_and_old_messages_are_dropped_and_counted(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    with market.session() as s:
        federation.queue(s, clock(), market.key, federation.COUNTS, {"arrested": 1, "released": 0})
    genuine = json.loads(market.outgoing(federation.COUNTS)[0])
    assert canal.receive(json.dumps(genuine).encode()).accepted

    # A compromised broker changes the figure: the signature no longer checks.
    forged = dict(genuine, body={"arrested": 40, "released": 0}, id="00000000000000aa")
    assert canal.receive(json.dumps(forged).encode()).reason == federation.BAD_SIGNATURE
    # A stranger signs with its own key, as Market.
    stranger = federation.sign(SigningKey.generate(), federation="Eastside", sender="Market", kind="counts",
                               body={"arrested": 40, "released": 0}, now=clock())
    assert canal.receive(federation.wire(stranger)).reason == federation.BAD_SIGNATURE
    # A bench nobody here has heard of.
    unknown = federation.sign(SigningKey.generate(), federation="Eastside", sender="Dockside", kind="counts",
                              body={"arrested": 40, "released": 0}, now=clock())
    assert canal.receive(federation.wire(unknown)).reason == federation.UNKNOWN_SENDER
    # Market's own, genuine message from another federation it is also in: not replayable here.
    other_fed = federation.sign(market.key, federation="Westside", sender="Market", kind="counts",
                                body={"arrested": 40, "released": 0}, now=clock())
    assert canal.receive(federation.wire(other_fed)).reason == federation.WRONG_FEDERATION
    # Re-addressed to Eastside by the broker: the federation's name is in what was signed.
    readdressed = dict(other_fed, fed="Eastside")
    assert canal.receive(federation.wire(readdressed)).reason == federation.BAD_SIGNATURE
    # An old genuine message replayed after its id was forgotten: outside the replay window.
    clock.advance(days=9)
    with canal.session() as s:
        federation.purge(s, clock())
    assert canal.receive(json.dumps(genuine).encode()).reason == federation.TOO_OLD
    # Garbage, and a message too big to read.
    assert canal.receive(b"\xff{not json").reason == federation.MALFORMED
    assert canal.receive(b'{"v":1}').reason == federation.MALFORMED
    assert canal.receive(b"x" * (federation.MAX_MESSAGE_BYTES + 1)).reason == federation.TOO_BIG
    drops = canal.drops()
    assert drops[federation.BAD_SIGNATURE] == 3
    assert (drops[federation.UNKNOWN_SENDER], drops[federation.WRONG_FEDERATION], drops[federation.TOO_OLD]) == (1, 1, 1)
    assert drops[federation.MALFORMED] == 2 and drops[federation.TOO_BIG] == 1
    with canal.session() as s:
        assert federation.get_member(s, "Market").arrested == 1  # nothing forged was ever acted on


def test_a_message_from_the_future_is_dropped(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    ahead = federation.sign(market.key, federation="Eastside", sender="Market", kind="counts",
                            body={"arrested": 1, "released": 0}, now=clock() + timedelta(hours=2))
    assert canal.receive(federation.wire(ahead)).reason == federation.IN_FUTURE


def test_a_new_key_for_a_known_name_waits_for_the_hosts(benches, clock, tmp_path):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    # Someone posing as Market announces a key of their own.
    impostor = SigningKey.generate()
    hello = federation.sign(impostor, federation="Eastside", sender="Market", kind="hello",
                            body={"key": federation.public_key_of(impostor), "areas": ["Market"], "node": None},
                            now=clock())
    assert canal.receive(federation.wire(hello)).reason == federation.KEY_CHANGED
    with canal.session() as s:
        member = federation.get_member(s, "Market")
        assert member.is_trusted and member.public_key == federation.public_key_of(market.key)
        assert member.heard_fingerprint == federation.fingerprint(federation.public_key_of(impostor))
        # The hosts call Market: its fingerprint is not the one heard, so nobody confirms it.
        with pytest.raises(federation.Invalid):
            federation.confirm(s, clock(), member, market.fingerprint(), by=None)


def test_strangers_cannot_fill_the_list_of_benches_waiting_for_trust(benches, clock):
    canal = benches["Canal"]
    reasons = []
    for number in range(federation.MAX_CANDIDATES + 5):
        key = SigningKey.generate()
        hello = federation.sign(key, federation="Eastside", sender=f"Spam{number}", kind="hello",
                                body={"key": federation.public_key_of(key), "areas": [], "node": None}, now=clock())
        reasons.append(canal.receive(federation.wire(hello)).reason)
    assert reasons.count(federation.ACCEPTED) == federation.MAX_CANDIDATES
    assert canal.drops()[federation.TOO_MANY_CANDIDATES] == 5


# -- what crosses --------------------------------------------------------------------------------------


def boundary(market: Bench, canal: Bench, area: str = "Lock Street") -> None:
    """Market publishes the area; its hosts say it borders Canal."""
    with market.session() as s:
        if area not in [a.name for a in patrol.list_areas(s)]:
            patrol.add_area(s, area)
        federation.set_neighbour_areas(s, market.clock(), federation.get_member(s, canal.name), [area], by=None)


def test_an_sos_in_a_boundary_area_goes_to_that_neighbour_only_with_no_notes_or_names(benches, clock):
    market, canal, harbour = benches["Market"], benches["Canal"], benches["Harbour"]
    federate(benches)
    boundary(market, canal)
    for bench in benches.values():
        bench.outgoing()  # the hellos are gone
    with market.session() as s:
        kestrel = add_steward(s, clock(), "Kestrel", "!a1b2c3d4")
        patrol.start_shift(s, clock(), kestrel, "Lock Street by 14 Mill Row", patrol.SOURCE_RADIO)
        alerts.raise_sos(s, clock(), kestrel, "Lock Street, outside number 14, Jamal Okafor 0176 5550123",
                         patrol.SOURCE_RADIO)
        # One in an area that borders nobody, and a drill: neither crosses.
        patrol.add_area(s, "Market Square")
        wren = add_steward(s, clock(), "Wren", "!a1b2c3d5")
        alerts.raise_sos(s, clock(), wren, "Market Square", patrol.SOURCE_RADIO)
        alerts.raise_sos(s, clock(), None, "Lock Street", patrol.SOURCE_WEB, drill=True)
        queued = federation.queue_new_alerts(s, clock(), market.key)
        assert len(queued) == 1
        # Scanning again (the next minute, another transport) queues nothing twice.
        assert federation.queue_new_alerts(s, clock(), market.key) == []
    (message,) = market.outgoing(federation.ALERT)
    envelope = json.loads(message)
    assert envelope["to"] == ["Canal"]
    assert envelope["body"] == {"code": "A1", "kind": "sos", "area": "Lock Street", "at": "2026-11-21T21:00:00Z",
                                "n": 1, "verified": True, "state": "open"}
    for secret in ("Kestrel", "Okafor", "0176", "Mill Row", "outside number"):
        assert secret not in message.decode()
    # Harbour (which the area does not border) drops it; Canal acts on it.
    assert harbour.receive(message).reason == federation.NOT_FOR_US
    assert canal.receive(message).accepted


def test_the_received_sos_lands_on_the_neighbours_board_and_air_and_its_end_follows(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    boundary(market, canal)
    with market.session() as s:
        alert_id = alerts.raise_sos(s, clock(), None, "Lock Street", patrol.SOURCE_WEB).id
        federation.queue_new_alerts(s, clock(), market.key)
    assert canal.receive(market.outgoing(federation.ALERT)[0]).accepted
    with canal.session() as s:
        (shown,) = federation.open_neighbour_alerts(s, clock())
        assert (shown.bench, shown.code, shown.area, shown.kind) == ("Market", "A1", "Lock Street", "sos")
        on_air = s.scalars(select(outbox.OutboxMessage).where(outbox.OutboxMessage.priority == outbox.URGENT)).all()
        assert any("Market" in m.text and "Lock Street" in m.text for m in on_air)
    clock.advance(minutes=12)
    with market.session() as s:
        alerts.resolve(s, clock(), s.get(alerts.Alert, alert_id), None, patrol.SOURCE_WEB, "all well")
        federation.queue_new_alerts(s, clock(), market.key)
    (ended,) = market.outgoing(federation.ALERT)
    assert json.loads(ended)["body"]["state"] == "resolved"
    assert canal.receive(ended).accepted
    with canal.session() as s:
        assert federation.open_neighbour_alerts(s, clock()) == []


def test_an_alert_arriving_hours_late_is_on_the_board_but_not_on_the_air(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    boundary(market, canal)
    with market.session() as s:
        alerts.raise_sos(s, clock(), None, "Lock Street", patrol.SOURCE_WEB)
        federation.queue_new_alerts(s, clock(), market.key)
    late = market.outgoing(federation.ALERT)[0]
    clock.advance(hours=3)  # Market's uplink was down; its outbox catches up
    assert canal.receive(late).accepted
    with canal.session() as s:
        (shown,) = federation.open_neighbour_alerts(s, clock())
        assert not shown.on_air
        assert s.scalar(select(outbox.OutboxMessage.id).where(outbox.OutboxMessage.text.contains("Market"))) is None


def test_a_confirmed_arrest_in_a_boundary_area_crosses_with_its_count_and_no_description(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    boundary(market, canal)
    with market.session() as s:
        cases.open_case(s, clock(), place="Lock Street by the kebab shop", arrested=3, source=patrol.SOURCE_WEB,
                        description="three young men, one called Sami", witness_contact="0176 5550123")
        federation.queue_new_alerts(s, clock(), market.key)
    (message,) = market.outgoing(federation.ALERT)
    body = json.loads(message)["body"]
    assert (body["kind"], body["area"], body["n"]) == ("arrest", "Lock Street", 3)
    assert "Sami" not in message.decode() and "kebab" not in message.decode() and "5550123" not in message.decode()
    assert canal.receive(message).accepted


def test_counts_make_the_city_figure(benches, clock):
    market, canal, harbour = benches["Market"], benches["Canal"], benches["Harbour"]
    federate(benches)
    with market.session() as s:
        case = cases.open_case(s, clock(), place="Market", arrested=4, source=patrol.SOURCE_WEB)
        case.released = 1
        federation.queue_periodic(s, clock(), market.key)
    with harbour.session() as s:
        cases.open_case(s, clock(), place="Harbour", arrested=2, source=patrol.SOURCE_WEB)
        federation.queue_periodic(s, clock(), harbour.key)
    for sender in (market, harbour):
        for message in sender.outgoing(federation.COUNTS):
            assert canal.receive(message).accepted
    with canal.session() as s:
        cases.open_case(s, clock(), place="Canal", arrested=1, source=patrol.SOURCE_WEB)
        own = federation.build_counts(s)
        figure = federation.city_figure(s.connection(), clock(), own["arrested"], own["released"])
    assert figure == federation.CityFigure(benches=3, arrested=7, released=1)
    # A day without word from them, and their figures leave the city's.
    clock.advance(hours=25)
    with canal.session() as s:
        assert federation.city_figure(s.connection(), clock(), 1, 0) is None


def test_a_roaming_stewards_key_crosses_only_with_their_consent(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    key = "A" * 43 + "="
    with market.session() as s:
        for handle, node in (("Kestrel", "!a1b2c3d4"), ("Wren", "!a1b2c3d5")):
            steward = add_steward(s, clock(), handle, node)
            steward.radio_key, steward.radio_key_pinned_at = key, clock()
        federation.queue_periodic(s, clock(), market.key)
    (nobody,) = market.outgoing(federation.ROAMERS)
    assert json.loads(nobody)["body"] == {"stewards": []}
    clock.advance(minutes=5)
    with market.session() as s:
        federation.set_roaming(s, clock(), people.get_member(s, "Kestrel"), True)
        federation.queue_periodic(s, clock(), market.key)
    (one,) = market.outgoing(federation.ROAMERS)
    assert json.loads(one)["body"] == {"stewards": [{"handle": "Kestrel", "node": "!a1b2c3d4", "key": key}]}
    assert "Wren" not in one.decode()
    assert canal.receive(nobody).accepted and canal.receive(one).accepted
    with canal.session() as s:
        visitor = federation.roamer_for_node(s, 0xA1B2C3D4)
        assert (visitor.bench, visitor.handle, visitor.radio_key) == ("Market", "Kestrel", key)
        assert federation.roamer_for_node(s, 0xA1B2C3D5) is None
    # Kestrel changes their mind: the next list leaves them out, and Canal forgets them.
    clock.advance(minutes=5)
    with market.session() as s:
        federation.set_roaming(s, clock(), people.get_member(s, "Kestrel"), False)
        federation.queue_periodic(s, clock(), market.key)
    assert canal.receive(market.outgoing(federation.ROAMERS)[0]).accepted
    with canal.session() as s:
        assert federation.roamer_for_node(s, 0xA1B2C3D4) is None


def test_allies_cross_as_their_public_vows_and_a_contact_never_does(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    vows = {"vows": [
        {"ally": "Linden Café", "place": "Market Square 4", "vow": "shelter and tea", "kind": "shelter",
         "hours": "Fr,Sa 18:00-02:00", "crisis_only": False, "area": "Market"},
        {"ally": "Call Ana", "place": "ring +49 176 5550123", "vow": "a sofa", "kind": "shelter",
         "hours": "24/7", "crisis_only": True, "area": None},
    ]}
    with market.session() as s:
        federation.queue(s, clock(), market.key, federation.ALLIES, vows)
    assert canal.receive(market.outgoing(federation.ALLIES)[0]).accepted
    with canal.session() as s:
        kept = s.scalars(select(federation.FederationAlly)).all()
        assert [(a.bench, a.ally, a.kind) for a in kept] == [("Market", "Linden Café", "shelter")]


def test_the_scheduler_queues_what_crosses_every_minute_and_a_bench_never_joined_pays_nothing(benches, clock,
                                                                                              tmp_path):
    from server import scheduler

    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    boundary(market, canal)
    market.outgoing()
    with market.session() as s:
        alerts.raise_sos(s, clock(), None, "Lock Street", patrol.SOURCE_WEB)
    job = next(job for job in scheduler.JOBS if job.name == "federation")
    outcome = scheduler.run_job(market.app, job)
    assert outcome.startswith("1 alert(s)")
    kinds = sorted(json.loads(raw)["kind"] for raw in market.outgoing())
    assert kinds == ["alert", "allies", "counts", "hello", "roamers"]  # no audit frozen yet
    # A minute later nothing changed: nothing new to send.
    clock.advance(minutes=1)
    scheduler.run_job(market.app, job)
    assert market.outgoing() == []
    alone = Bench(tmp_path, "Alone", clock)
    assert scheduler.run_job(alone.app, job).startswith("0 federation messages")
    assert not (alone.instance / federation.KEY_FILE).exists()


def test_at_the_terminal_a_host_joins_reads_the_fingerprint_trusts_and_revokes(benches, clock, tmp_path):
    market = benches["Market"]
    corner = Bench(tmp_path, "Corner", clock)
    runner = corner.app.test_cli_runner()
    password = tmp_path / "broker-password"
    password.write_text("s3cret\n")
    joined = runner.invoke(args=["federation", "join", BROKER, "--name", "Eastside", "--bench", "Corner",
                                 "--username", "corner", "--password-file", str(password)])
    assert joined.exit_code == 0, joined.output
    assert corner.fingerprint() in joined.output
    with corner.session() as s:
        assert "s3cret" not in json.dumps([c for c in federation.this_bench(s).__dict__.values() if isinstance(c, str)])
    corner.receive(market.outgoing(federation.HELLO)[0])
    shown = runner.invoke(args=["federation", "show"]).output
    assert "Market" in shown and "heard, not trusted" in shown and market.fingerprint() in shown
    wrong = runner.invoke(args=["federation", "trust", "Market", "0000", "1111", "2222", "3333", "4444"])
    assert wrong.exit_code != 0 and "not the key heard from Market" in wrong.output
    trusted = runner.invoke(args=["federation", "trust", "Market", *market.fingerprint().split()])
    assert trusted.exit_code == 0 and "Market is trusted" in trusted.output
    revoked = runner.invoke(args=["federation", "revoke", "Market", "--reason", "their Pi was taken"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked" in runner.invoke(args=["federation", "show"]).output


def test_hosts_see_the_federation_and_the_board_and_bench_page_show_the_neighbours(benches, clock):
    from tests.helpers import login, make_member, submit

    market, canal = benches["Market"], benches["Canal"]
    canal.receive(market.outgoing(federation.HELLO)[0])
    make_member(canal.app, "Heron", people.HOST)
    make_member(canal.app, "Ibis", people.HOST)
    heron, ibis = canal.app.test_client(), canal.app.test_client()
    login(heron, "Heron")
    login(ibis, "Ibis")
    page = heron.get("/host/federation").get_data(as_text=True)
    assert market.fingerprint() in page and canal.fingerprint() in page and "heard, not trusted" in page
    with canal.session() as s:
        member_id = federation.get_member(s, "Market").id
    submit(heron, "/host/federation", {"fingerprint": market.fingerprint()}, f"/host/federation/{member_id}/confirm")
    assert "confirmed by one host" in heron.get("/host/federation").get_data(as_text=True)
    submit(ibis, "/host/federation", {"fingerprint": market.fingerprint()}, f"/host/federation/{member_id}/confirm")
    with canal.session() as s:
        assert federation.get_member(s, "Market").is_trusted
    # Market trusts Canal at its terminal; an SOS there and its counts reach Canal.
    market.trust(canal)
    boundary(market, canal)
    with market.session() as s:
        alerts.raise_sos(s, clock(), None, "Lock Street", patrol.SOURCE_WEB)
        cases.open_case(s, clock(), place="Lock Street", arrested=2, source=patrol.SOURCE_WEB)
        federation.queue_new_alerts(s, clock(), market.key)
        federation.queue_periodic(s, clock(), market.key)
    results = [canal.receive(message) for message in market.outgoing()]
    assert all(result.accepted for result in results), results
    board = heron.get("/host/board").get_data(as_text=True)
    assert "SOS from bench Market" in board and "Arrest from bench Market" in board and "Lock Street" in board
    bench_page = canal.app.test_client().get("/").get_data(as_text=True)
    assert "Across the federation" in bench_page and "2 benches: 2 taken, 0 released" in bench_page
    page = heron.get("/host/federation").get_data(as_text=True)
    assert "urgent alert near a boundary" in page and "Market" in page


def test_a_steward_chooses_to_roam_on_their_own_dashboard(benches, clock):
    from tests.helpers import login, make_member, submit

    market = benches["Market"]
    make_member(market.app, "Kestrel", people.STEWARD, node="!a1b2c3d4")
    kestrel = market.app.test_client()
    login(kestrel, "Kestrel")
    dashboard = kestrel.get("/host/").get_data(as_text=True)
    assert "Roaming to other benches" in dashboard and "not pinned yet" in dashboard
    submit(kestrel, "/host/", {"roam": "1"}, "/me/roaming")
    with market.session() as s:
        assert federation.roaming_consent(s, people.get_member(s, "Kestrel")) is not None
    assert "Stop roaming" in kestrel.get("/host/").get_data(as_text=True)
    submit(kestrel, "/host/", {"roam": "0"}, "/me/roaming")
    with market.session() as s:
        assert federation.roaming_consent(s, people.get_member(s, "Kestrel")) is None


def test_a_revoked_bench_set_up_again_with_a_new_key_is_trusted_again_by_two_hosts(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    with canal.session() as s:
        federation.revoke(s, clock(), federation.get_member(s, "Market"), reason="Pi taken", by=None)
    # Whoever holds the old card announces it again: still revoked.
    assert canal.receive(canal._hello_again(market)).reason == \
        federation.REVOKED
    # Market's hosts set up a new card: a new key, the same name.
    (market.instance / federation.KEY_FILE).unlink()
    market.join()
    assert canal.receive(market.outgoing(federation.HELLO)[0]).reason == federation.KEY_CHANGED
    with canal.session() as s:
        heron, ibis = hosts(canal)
        member = federation.get_member(s, "Market")
        federation.confirm(s, clock(), member, market.fingerprint(), by=heron)
        assert not member.is_trusted and member.revoked_at is None
        federation.confirm(s, clock(), member, market.fingerprint(), by=ibis)
        assert member.is_trusted
    with market.session() as s:
        federation.queue(s, clock(), market.key, federation.COUNTS, {"arrested": 1, "released": 0})
    assert canal.receive(market.outgoing(federation.COUNTS)[0]).accepted


def test_a_bench_heard_for_the_first_time_hears_our_hello_at_once(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    market.outgoing()
    canal.outgoing()
    clock.advance(minutes=5)
    with canal.session() as s:
        federation.queue_hello(s, clock(), canal.key)
    market.receive(canal.outgoing(federation.HELLO)[0])  # Canal joined later: Market's hello went before it listened
    with market.session() as s:
        (reply,) = federation.queue_new_alerts(s, clock(), market.key)
        assert reply.kind == federation.HELLO
        assert federation.queue_new_alerts(s, clock(), market.key) == []  # once


def test_an_alert_relayed_over_the_mesh_is_acted_on_once_whichever_copy_comes_first(benches, clock):
    market, canal = benches["Market"], benches["Canal"]
    federate({"Market": market, "Canal": canal})
    radio_key = federation._b64(bytes(range(32)))
    with market.session() as s:
        assert federation.set_own_hub(s, clock(), 0xA1B2C3D4, radio_key)
        federation.queue_hello(s, clock(), market.key)
    canal.receive(market.outgoing(federation.HELLO)[0])
    with canal.session() as s:
        member = federation.get_member(s, "Market")
        assert (member.hub_node, member.hub_key) == (0xA1B2C3D4, radio_key)
    boundary(market, canal)
    with market.session() as s:
        alerts.raise_sos(s, clock(), None, "Lock Street", patrol.SOURCE_WEB)
        federation.queue_new_alerts(s, clock(), market.key)
    signed = json.loads(market.outgoing(federation.ALERT)[0])
    relayed = {k: v for k, v in signed.items() if k != "sig"}
    with canal.session() as s:
        assert federation.receive_relayed(s, clock(), "Market", relayed).accepted
        assert federation.receive_relayed(s, clock(), "Market", relayed).reason == federation.DUPLICATE
        assert federation.receive_relayed(s, clock(), "Canal", relayed).reason == federation.MALFORMED
        counts = dict(relayed, kind="counts", id="00000000000000ff", body={"arrested": 50, "released": 0})
        assert federation.receive_relayed(s, clock(), "Market", counts).reason == federation.MALFORMED
    assert canal.receive(json.dumps(signed).encode()).reason == federation.DUPLICATE
