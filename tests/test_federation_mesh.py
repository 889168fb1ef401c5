"""Stories of two benches in LoRa range of each other when the internet is gone too (issue 17).

Bench "market" and bench "canal" each run their own hub: their own database,
their own bridge, their own emulated radio on a pty, driven by the real
meshtastic library. The two emulated radios share one stretch of simulated
air (radio_bridge/sim_air.py), which carries a direct message between them
the way firmware 2.5+ does: PKI-encrypted to the key the sending radio holds
for the destination, readable only with both real keys. There is no broker
in these stories at all: the benches met over MQTT some days ago (their
hellos, with their hub radios' node numbers and keys, were exchanged then and
their hosts confirmed each other's fingerprints), and tonight there is no
internet. The bridges' loops are turned by hand, as in test_radio_bridge.py.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import pytest

from radio_bridge.bridge import Bridge
from radio_bridge.federation_mesh import RELAY_KEY, pack
from radio_bridge.mesh import RadioSpec
from radio_bridge.sim_air import Air
from radio_bridge.simulator import SimNode, SimulatedRadio
from server.domain import federation, outbox, patrol
from server.extensions import db
from tests.helpers import add_steward, make_app
from tests.test_radio_bridge import fast_settings, turn_until, turns

HUB_MARKET = 0x5AFE0001
HUB_CANAL = 0x5AFE0002
KESTREL = 0xA1B2C3D4  # a steward of market
WREN = 0x12345678  # a steward of canal
STRANGER = 0x0BADF00D  # holds canal's channel key (it is on every pocket card)
BROKER = "mqtt://127.0.0.1:1"  # configured, and unreachable all night


@dataclass
class Hub:
    name: str
    app: object
    sim: SimulatedRadio
    bridge: Bridge | None = None

    @contextmanager
    def session(self):
        with self.app.app_context():
            db.session.expire_all()
            yield db.session
            db.session.commit()

    def now(self):
        return self.app.config["CLOCK"]()

    def key(self):
        return federation.load_signing_key(self.app.config["INSTANCE"])

    def texts_on_channel(self) -> list[str]:
        return [p.text for p in self.sim.sent_packets if p.to == 0xFFFFFFFF and p.text]

    def relays_on_air(self) -> list:
        return [p for p in self.sim.sent_packets if p.text and p.text.startswith("SBF1|")]


def make_hub(tmp_path, clock, name: str, node: int, steward: tuple[str, int], area: str) -> Hub:
    app = make_app(tmp_path / name, clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache",
                   CACHE_NO_NULL_WARNING=True)
    sim = SimulatedRadio(node_num=node, long_name=f"Safe Bench {name} (sim)", short_name=name[:4].upper(),
                         link_path=tmp_path / f"radio-{name}", rate_limit=False,
                         nodes=[SimNode(steward[1], f"{steward[0]}'s handheld", steward[0][:4].upper()),
                                SimNode(STRANGER, "Someone", "WHO")]).start()
    hub = Hub(name, app, sim)
    with hub.session() as session:
        add_steward(session, hub.now(), steward[0], steward[1])
        patrol.add_area(session, area)
        federation.join(session, hub.now(), app.config["INSTANCE"], url=BROKER, federation="eastside", bench=name)
    return hub


def start_bridge(hub: Hub) -> Bridge:
    settings = fast_settings()
    settings.federation_mesh_after = 30.0
    hub.bridge = Bridge.from_config(hub.app.config, RadioSpec.parse(f"serial:{hub.sim.path}"), settings=settings)
    turn_until(hub.bridge, lambda: hub.bridge.link.is_open and hub.bridge.federation_mesh is not None)
    hub.bridge.federation_mesh.pin_every = 0.0  # read the member list every turn, not every minute
    hub.bridge.federation_mesh.radio_connected()
    turns(hub.bridge, 0.2)  # the bridge tells the federation its hub radio's node and key
    return hub.bridge


def met_over_the_broker(a: Hub, b: Hub) -> None:
    """Some days ago, with the internet up: each bench's hello reached the other, and a host trusted it."""
    for sender, receiver in ((a, b), (b, a)):
        with sender.session() as session:
            federation.queue_periodic(session, sender.now(), sender.key())
            # The newest hello: the one made after the bridge told the federation its hub radio.
            *_, hello = [item for item in federation.pending(session, sender.now()) if item.kind == federation.HELLO]
            payload = hello.payload
        with receiver.session() as session:
            assert federation.receive(session, receiver.now(), payload, via="mqtt").accepted
            member = federation.get_member(session, sender.name)
            federation.confirm(session, receiver.now(), member, federation.fingerprint(member.public_key), by=None)
            assert member.is_trusted and member.hub_node == sender.sim.node_num and member.hub_key


@pytest.fixture
def benches(tmp_path, clock):
    market = make_hub(tmp_path, clock, "market", HUB_MARKET, ("Kestrel", KESTREL), "Market")
    canal = make_hub(tmp_path, clock, "canal", HUB_CANAL, ("Wren", WREN), "Canal")
    Air().join(market.sim, canal.sim)
    for hub in (market, canal):
        start_bridge(hub)
    met_over_the_broker(market, canal)
    with market.session() as session:
        # Market's hosts declared their Market area as bordering canal: an SOS there goes to canal.
        federation.set_neighbour_areas(session, market.now(), federation.get_member(session, "canal"), ["Market"],
                                       by=None)
    for hub in (market, canal):
        turns(hub.bridge, 0.3)  # each bridge pins the other's hub and puts it into its radio
    yield market, canal
    for hub in (market, canal):
        hub.bridge.close()
        hub.sim.stop()
        with hub.app.app_context():
            db.session.remove()
            db.engine.dispose()


def turn_both(market: Hub, canal: Hub, done, seconds: float = 8.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the bridges did not get there in time"
        market.bridge.run_once(wait=0.02)
        canal.bridge.run_once(wait=0.02)


def neighbour_alerts(hub: Hub) -> list:
    with hub.session() as session:
        return [(a.bench, a.code, a.kind, a.area) for a in federation.open_neighbour_alerts(session, hub.now())]


def drops(hub: Hub) -> dict[str, int]:
    with hub.session() as session:
        return {row.reason: row.count for row in federation.drop_counts(session)}


def unix(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds())


def raise_sos_at_market(market: Hub) -> None:
    market.sim.deliver_text(KESTREL, "ON Market")
    market.sim.deliver_text(KESTREL, "SOS by the fountain")
    turn_until(market.bridge, lambda: any(t.startswith("SOS A1") for t in market.texts_on_channel()))
    turns(market.bridge, 1.2)  # within a second the bridge has signed it into the federation's outbox


def test_an_sos_near_the_boundary_reaches_the_next_bench_by_radio_with_no_internet_at_all(benches, clock):
    market, canal = benches
    raise_sos_at_market(market)
    # Market's own stewards heard it at once; the broker is unreachable, so the message waits for it a while.
    with market.session() as session:
        (item,) = [i for i in federation.pending(session, market.now()) if i.kind == federation.ALERT]
        assert item.to == ["canal"] and item.sent_at is None
    assert market.relays_on_air() == []

    clock.advance(seconds=31)  # the broker has not taken it in 30 s: it goes to canal's hub by radio
    turn_both(market, canal, lambda: neighbour_alerts(canal))

    (relay,) = market.relays_on_air()
    assert relay.to == HUB_CANAL and relay.outcome == "ack"  # canal's radio decrypted it and answered
    assert relay.portnum == "TEXT_MESSAGE_APP" and len(relay.payload) <= 100
    # Only process crossed: code, kind, area, times. Not the steward, not the place they typed.
    assert "Kestrel" not in relay.text and "fountain" not in relay.text
    assert neighbour_alerts(canal) == [("market", "A1", "sos", "Market")]
    # Canal's stewards hear it on their own channel, once, with the bell.
    turn_until(canal.bridge, lambda: any("market" in t for t in canal.texts_on_channel()))
    (announced,) = [t for t in canal.texts_on_channel() if "market" in t]
    assert "SOS A1" in announced and "Market" in announced and announced.endswith("\x07")

    # It is not sent to canal again, by radio or otherwise counted twice.
    clock.advance(seconds=60)
    turns(market.bridge, 0.5)
    assert len(market.relays_on_air()) == 1


def test_a_relay_that_is_not_a_pinned_hubs_direct_message_is_ignored_and_counted(benches):
    market, canal = benches
    now_s = unix(canal.now())
    forged = f"SBF1|0123456789abcdef|{now_s}|A9|sov|1|{now_s}|Canal"

    canal.sim.spoof(HUB_MARKET, forged)  # channel traffic under market's hub node id
    canal.sim.spoof(HUB_MARKET, forged.replace("A9", "A8"), key=os.urandom(32))  # a DM with the stranger's key
    canal.sim.deliver_dm(STRANGER, forged.replace("A9", "A7"))  # the stranger's own radio, its own key
    turn_until(canal.bridge, lambda: drops(canal).get("unpinned-radio") == 3)
    turns(canal.bridge, 0.3)

    assert neighbour_alerts(canal) == []
    assert canal.texts_on_channel() == []  # nothing on the air for a forgery


def test_the_same_alert_arriving_later_over_the_broker_is_not_acted_on_twice(benches, clock):
    market, canal = benches
    raise_sos_at_market(market)
    clock.advance(seconds=31)
    turn_both(market, canal, lambda: neighbour_alerts(canal))
    turn_until(canal.bridge, lambda: any("market" in t for t in canal.texts_on_channel()))

    # The internet comes back and the broker delivers the signed message too.
    with market.session() as session:
        (item,) = [i for i in federation.pending(session, market.now()) if i.kind == federation.ALERT]
        signed = item.payload
    with canal.session() as session:
        result = federation.receive(session, canal.now(), signed, via="mqtt")
        assert result.reason == federation.DUPLICATE and result.message_id == json.loads(signed)["id"]
    turns(canal.bridge, 0.5)
    assert neighbour_alerts(canal) == [("market", "A1", "sos", "Market")]
    assert len([t for t in canal.texts_on_channel() if "market" in t]) == 1


def test_a_message_the_broker_took_first_never_goes_by_radio(benches, clock):
    market, canal = benches
    raise_sos_at_market(market)
    with market.session() as session:
        federation.queue_new_alerts(session, market.now(), market.key())
        (item,) = [i for i in federation.pending(session, market.now()) if i.kind == federation.ALERT]
        federation.mark_sent(session, market.now(), item, via="mqtt")  # the broker's PUBACK came
    clock.advance(seconds=31)
    turns(market.bridge, 0.5)
    assert market.relays_on_air() == []


def test_a_relay_waiting_for_the_air_is_withdrawn_when_the_broker_takes_the_message(benches, clock):
    market, canal = benches
    raise_sos_at_market(market)
    clock.advance(seconds=31)
    market.sim.unplug()  # the radio is away a moment: the relay waits in the radio outbox
    turn_until(market.bridge, lambda: not market.bridge.link.is_open)
    with market.session() as session:
        market.bridge.federation_mesh.plan(session, market.now())
        (waiting,) = [m for m in outbox.recent(session) if (m.dedupe_key or "").startswith(RELAY_KEY)]
        assert waiting.state == outbox.QUEUED
        (item,) = [i for i in federation.pending(session, market.now()) if i.kind == federation.ALERT]
        federation.mark_sent(session, market.now(), item, via="mqtt")
    market.sim.replug()
    turn_until(market.bridge, lambda: market.bridge.link.is_open)
    turns(market.bridge, 1.0)
    assert market.relays_on_air() == []
    with market.session() as session:
        (withdrawn,) = [m for m in outbox.recent(session) if (m.dedupe_key or "").startswith(RELAY_KEY)]
        assert withdrawn.state == outbox.EXPIRED


def test_a_flood_of_relays_from_a_neighbour_never_eats_the_airtime_of_this_benchs_own_sos(benches, clock):
    market, canal = benches
    bridge = canal.bridge
    sender = bridge.sender
    # A tiny budget, so the story is about a few packets: 12 s of air this hour, 9 s of it (the routine
    # share) already spent on the hour's routine traffic. 3 s are the urgent reserve, 1.5 s of it
    # the most federation traffic may use.
    sender.settings.budget_fraction = 12 / 3600
    bridge.ledger.record(canal.now(), 9.0)
    assert sender.federation_allowance() == pytest.approx(1.5)

    # Canal's bridge has Market's hub radio pinned before the flood (it reads the members' hubs every few seconds).
    turn_until(bridge, lambda: HUB_MARKET in bridge.federation_mesh.hubs, seconds=15)
    # Market's hub radio (its key stolen, or a bug) relays twenty different SOS at once.
    now_s = unix(canal.now())
    for number in range(1, 21):
        relay = pack({"id": f"{number:016x}", "at": f"{canal.now():%Y-%m-%dT%H:%M:%SZ}",
                      "body": {"code": f"A{number}", "kind": "sos", "area": "Market",
                               "at": f"{canal.now():%Y-%m-%dT%H:%M:%SZ}", "n": 1, "verified": True,
                               "state": "open"}})
        assert str(now_s) in relay
        canal.sim.deliver_dm(HUB_MARKET, relay)
    # Looked at four times a second, not between every turn: the story's own reads would otherwise hold the
    # database the bridge is writing the twenty alerts into, twenty times over.
    deadline = time.monotonic() + 15
    while len(neighbour_alerts(canal)) < 20:
        assert time.monotonic() < deadline, f"{len(neighbour_alerts(canal))} of 20 relays stored"
        turns(bridge, 0.25)
    turns(bridge, 1.0)
    announced = [t for t in canal.texts_on_channel() if "market" in t]
    assert len(announced) == 1  # one fitted in the federation's share; the rest wait in the outbox
    assert sender.federation_ledger.used(canal.now()) <= sender.federation_allowance()

    # Wren's SOS still finds the rest of the urgent reserve.
    canal.sim.deliver_text(WREN, "SOS at the lock")
    turn_until(bridge, lambda: any(t.startswith("SOS A1") for t in canal.texts_on_channel()))
    assert len([t for t in canal.texts_on_channel() if "market" in t]) == 1
    with canal.session() as session:
        waiting = [m for m in outbox.recent(session) if m.state == outbox.QUEUED]
        assert waiting and all((m.dedupe_key or "").startswith(outbox.FEDERATION_KEY_PREFIX) for m in waiting)


def test_a_relay_heard_the_moment_the_bridge_starts_is_acted_on_before_its_first_pin(benches, clock):
    """Canal's bridge was just restarted: it has not looked whether it is federated, nor read its members' hubs,
    when market's relay comes in. The database says whom to believe, so the SOS is not lost to timing."""
    market, canal = benches
    bridge = canal.bridge
    # The radio holds market's hub and its key (put in at the last pin; a bridge's restart leaves the radio's list).
    turn_until(bridge, lambda: getattr(canal.sim.device.nodes.get(HUB_MARKET), "public_key", None), seconds=10)
    # As a bridge is in its first second: no mesh loaded yet, the minute's look and the pins not yet due.
    bridge.federation_mesh = None
    bridge._next_federation_check = time.monotonic() + 3600
    bridge._next_federation = time.monotonic() + 3600
    at = f"{canal.now():%Y-%m-%dT%H:%M:%SZ}"
    relay = pack({"id": "00000000000000a1", "at": at,
                  "body": {"code": "A1", "kind": "sos", "area": "Market", "at": at, "n": 1, "verified": True,
                           "state": "open"}})
    canal.sim.deliver_dm(HUB_MARKET, relay)
    turn_until(bridge, lambda: neighbour_alerts(canal), seconds=10)

    assert neighbour_alerts(canal) == [("market", "A1", "sos", "Market")]
    assert bridge.federation_mesh is not None and HUB_MARKET in bridge.federation_mesh.hubs
    assert drops(canal).get("unpinned-radio") is None
