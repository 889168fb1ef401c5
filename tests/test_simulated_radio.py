"""Stories of the simulated radio, told through the real ``meshtastic`` library.

The emulator plays a Meshtastic radio on a pseudo-terminal; the client here
is the library's own ``SerialInterface`` over pyserial, exactly what the
bridge uses against a radio on USB.
"""

from __future__ import annotations

import queue
import random
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from meshtastic.serial_interface import SerialInterface
from pubsub import pub

from radio_bridge.mesh import channel_pb2, config_pb2, portnums_pb2
from radio_bridge.simulator import BROADCAST_NUM, SimNode, SimulatedRadio

TEXT = portnums_pb2.PortNum.TEXT_MESSAGE_APP
ASH = SimNode(0x5AFE0A51, "Ash (sim)", "ASH", latitude=52.0921, longitude=5.1214)
BIRCH = SimNode(0x5AFE0B12, "Birch (sim)", "BRCH", hops_away=1, snr=-3.5)


class Inbox:
    """Collects what the library publishes or calls back; pubsub keeps only weak references, so keep this."""

    def __init__(self) -> None:
        self.items: queue.Queue = queue.Queue()
        self._topics: list[tuple[object, str]] = []

    def on_packet(self, packet, interface) -> None:
        self.items.put(packet)

    def on_response(self, packet) -> None:
        self.items.put(packet)

    def on_lost(self, interface) -> None:
        self.items.put("lost")

    def listen(self, listener, topic: str) -> None:
        pub.subscribe(listener, topic)
        self._topics.append((listener, topic))

    def close(self) -> None:
        for listener, topic in self._topics:
            pub.unsubscribe(listener, topic)

    def next(self, timeout: float = 3.0):
        return self.items.get(timeout=timeout)


@pytest.fixture
def radio(tmp_path):
    with SimulatedRadio(nodes=[ASH, BIRCH], link_path=tmp_path / "radio", rate_limit=False) as radio:
        yield radio


@pytest.fixture
def inbox():
    box = Inbox()
    yield box
    box.close()


@contextmanager
def connected(path: str):
    iface = SerialInterface(devPath=path, timeout=10)
    try:
        yield iface
    finally:
        iface.close()


def send_text(iface, inbox: Inbox, text: str, to: int = ASH.num):
    """The bridge's way to send: sendData so that ACKs, not only NAKs, reach the callback."""
    return iface.sendData(text.encode(), destinationId=to, portNum=TEXT, wantAck=True,
                          onResponse=inbox.on_response, onResponseAckPermitted=True)


def routing_error(packet) -> str:
    return packet["decoded"]["routing"]["errorReason"]


def test_the_library_connects_and_sees_the_radio_and_the_stewards(radio):
    with connected(radio.path) as iface:
        assert iface.myInfo.my_node_num == radio.node_num
        assert set(iface.nodes) == {f"!{radio.node_num:08x}", ASH.node_id, BIRCH.node_id}
        assert iface.nodes[ASH.node_id]["user"]["longName"] == "Ash (sim)"
        assert iface.nodes[ASH.node_id]["position"]["latitude"] == pytest.approx(52.0921)
        assert iface.nodes[BIRCH.node_id]["hopsAway"] == 1
        lora = iface.localNode.localConfig.lora
        assert lora.region == config_pb2.Config.LoRaConfig.RegionCode.EU_868
        assert lora.modem_preset == config_pb2.Config.LoRaConfig.ModemPreset.LONG_FAST
        assert lora.use_preset
        assert iface.metadata.firmware_version == "2.5.20.sim"
        primary = iface.localNode.channels[0]
        assert primary.role == channel_pb2.Channel.Role.PRIMARY
        assert primary.settings.name == "SafeBench"
        assert len(primary.settings.psk) == 32, "a private key, never the public default"
        assert [c.role for c in iface.localNode.channels[1:]] == [channel_pb2.Channel.Role.DISABLED] * 7
    assert radio.handshakes == 1


def test_a_steward_checks_in_and_the_subscriber_hears_it(radio, inbox):
    inbox.listen(inbox.on_packet, "meshtastic.receive.text")
    with connected(radio.path) as iface:
        packet_id = radio.deliver_text(ASH, "CI Market")
        packet = inbox.next()
        assert packet["from"] == ASH.num
        assert packet["fromId"] == ASH.node_id
        assert packet["to"] == BROADCAST_NUM
        assert packet["id"] == packet_id
        assert packet["decoded"]["text"] == "CI Market"
        assert "channel" not in packet, "the library leaves out channel 0"
        assert packet["hopStart"] == 3 and packet["hopLimit"] == 3

        dm_id = radio.deliver_text(0x0BADCAFE, "who is this", to=radio.node_num, channel=1)
        packet = inbox.next()
        assert (packet["id"], packet["from"], packet["to"], packet["channel"]) == (
            dm_id, 0x0BADCAFE, radio.node_num, 1)
        assert packet["fromId"] is None, "a stranger is not in the node DB"
        assert iface.isConnected.is_set()


def test_the_mesh_delivers_the_same_packet_twice_and_the_library_passes_both_on(radio, inbox):
    inbox.listen(inbox.on_packet, "meshtastic.receive.text")
    with connected(radio.path):
        packet_id = radio.deliver_text(BIRCH, "INC bike theft, Canal St")
        radio.deliver_duplicate(packet_id, hop_limit=1)
        first, second = inbox.next(), inbox.next()
        assert first["id"] == second["id"] == packet_id
        assert (first["hopLimit"], second["hopLimit"]) == (2, 1)


def test_positions_alerts_and_detections_arrive_on_their_own_topics(radio, inbox):
    inbox.listen(inbox.on_packet, "meshtastic.receive.position")
    inbox.listen(inbox.on_packet, "meshtastic.receive.data.ALERT_APP")
    inbox.listen(inbox.on_packet, "meshtastic.receive.detectionsensor")
    with connected(radio.path) as iface:
        radio.deliver_position(ASH, 52.1, 5.2)
        position = inbox.next()["decoded"]["position"]
        assert (position["latitude"], position["longitude"]) == (pytest.approx(52.1), pytest.approx(5.2))
        assert iface.nodesByNum[ASH.num]["position"]["latitude"] == pytest.approx(52.1)

        radio.deliver_alert(BIRCH, "\x07SOS Park gate")
        alert = inbox.next()
        assert alert["decoded"]["portnum"] == "ALERT_APP"
        assert alert["decoded"]["payload"] == b"\x07SOS Park gate"

        radio.deliver_detection(ASH, "gate opened")
        assert inbox.next()["decoded"]["text"] == "gate opened"


def test_the_host_sends_a_text_and_the_steward_acknowledges_it(radio, inbox):
    with connected(radio.path) as iface:
        sent = send_text(iface, inbox, "hello")
        assert radio.wait_for_sent(1)
        record = radio.sent_packets[0]
        assert (record.id, record.to, record.portnum, record.payload, record.text, record.want_ack) == (
            sent.id, ASH.num, "TEXT_MESSAGE_APP", b"hello", "hello", True)
        assert record.outcome == "ack"

        ack = inbox.next()
        assert ack["decoded"]["requestId"] == sent.id
        assert routing_error(ack) == "NONE"
        assert ack["from"] == ASH.num, "a real ACK comes from the destination"


def test_a_broadcast_is_implicitly_acknowledged_by_our_own_node(radio, inbox):
    with connected(radio.path) as iface:
        sent = send_text(iface, inbox, "A7 all stewards: rally at the bench", to=BROADCAST_NUM)
        ack = inbox.next()
        assert ack["decoded"]["requestId"] == sent.id
        assert routing_error(ack) == "NONE"
        assert ack["from"] == radio.node_num


def test_nak_modes_give_the_reason_and_no_ack_gives_silence(radio, inbox):
    with connected(radio.path) as iface:
        radio.nak("NO_ROUTE", count=1)
        sent = send_text(iface, inbox, "first")
        nak = inbox.next()
        assert (nak["decoded"]["requestId"], routing_error(nak)) == (sent.id, "NO_ROUTE")
        assert nak["from"] == radio.node_num

        sent = send_text(iface, inbox, "second, after the NAK ran out")
        assert routing_error(inbox.next()) == "NONE"

        radio.no_ack()
        send_text(iface, inbox, "into the void")
        assert radio.wait_for_sent(3)
        with pytest.raises(queue.Empty):
            inbox.next(timeout=0.5)
        assert [p.outcome for p in radio.sent_packets] == ["nak:NO_ROUTE", "ack", "no-ack"]

        radio.normal()
        send_text(iface, inbox, "to a node nobody has heard", to=0x0DEAD001)
        assert routing_error(inbox.next()) == "MAX_RETRANSMIT"


def test_texts_faster_than_one_per_two_seconds_are_rate_limited(radio, inbox):
    radio.rate_limit = True
    with connected(radio.path) as iface:
        first = send_text(iface, inbox, "one")
        second = send_text(iface, inbox, "two")
        answers = {p["decoded"]["requestId"]: routing_error(p) for p in (inbox.next(), inbox.next())}
        assert answers == {first.id: "NONE", second.id: "RATE_LIMIT_EXCEEDED"}
        assert [p.outcome for p in radio.sent_packets] == ["ack", "rate-limited"]


def test_alerts_faster_than_one_per_ten_seconds_vanish_without_an_answer(radio, inbox):
    radio.rate_limit = True
    with connected(radio.path) as iface:
        def send_alert(payload: bytes):
            return iface.sendData(payload, destinationId=BROADCAST_NUM, portNum=portnums_pb2.PortNum.ALERT_APP,
                                  wantAck=True, onResponse=inbox.on_response, onResponseAckPermitted=True)

        first = send_alert(b"\x07SOS Market")
        send_alert(b"\x07SOS Market again")
        assert inbox.next()["decoded"]["requestId"] == first.id
        with pytest.raises(queue.Empty):
            inbox.next(timeout=0.5)
        assert [p.outcome for p in radio.sent_packets] == ["implicit-ack", "rate-limited"]


def test_a_retry_with_the_same_packet_id_is_dropped_by_the_radio(radio, inbox):
    with connected(radio.path) as iface:
        packet = send_text(iface, inbox, "A7 rally at the bench")
        assert routing_error(inbox.next()) == "NONE"
        iface._sendPacket(packet, ASH.num, wantAck=True)  # the same MeshPacket, id and all
        with pytest.raises(queue.Empty):
            inbox.next(timeout=0.5)
        assert len(radio.sent_packets) == 1


def test_simulated_stewards_chatter_when_asked(radio, inbox):
    inbox.listen(inbox.on_packet, "meshtastic.receive.text")
    with connected(radio.path) as iface:
        radio.chatter(interval_s=0.05, rng=random.Random(7))
        try:
            heard = [inbox.next() for _ in range(4)]
        finally:
            radio.stop_chatter()
        assert {p["from"] for p in heard} <= {ASH.num, BIRCH.num}
        assert all(iface.nodesByNum[p["from"]]["user"]["longName"].endswith("(sim)") for p in heard)
        words = {p["decoded"]["text"].split()[0] for p in heard}
        assert words <= {"ON", "CI", "OK", "OFF"} and "ON" in words


def test_garbage_on_the_line_changes_nothing(radio, inbox):
    inbox.listen(inbox.on_packet, "meshtastic.receive.text")
    with connected(radio.path) as iface:
        nodes_before = set(iface.nodes)
        radio.send_garbage()
        radio.send_garbage(b"\x94\xc3\x00")  # a header cut short...
        radio.send_garbage(b"\x00" * 3)  # ...whose length byte and body the next bytes make up
        radio.send_log_line("INFO  | 12:00:01 7 [Router] plain log text")
        radio.deliver_text(ASH, "CI still here")
        assert inbox.next()["decoded"]["text"] == "CI still here"
        assert iface.myInfo.my_node_num == radio.node_num
        assert set(iface.nodes) == nodes_before

        sent = send_text(iface, inbox, "and back")
        assert inbox.next()["decoded"]["requestId"] == sent.id


def test_junk_from_the_host_does_not_upset_the_radio(radio, inbox):
    inbox.listen(inbox.on_packet, "meshtastic.receive.text")
    with connected(radio.path) as iface:
        iface.stream.write(b"\x94\xc3\x00\x04\xff\xff\xff\xff")  # not a ToRadio
        iface.stream.write(b"\x94\xc3\xff\xff" + b"\xc3" * 40)  # a frame too big to be true
        iface.stream.write(b"\x94\xc3\x00\x03\xf8\x07\x01")  # a ToRadio field the radio does not know
        sent = send_text(iface, inbox, "still fine")
        assert inbox.next()["decoded"]["requestId"] == sent.id
        assert radio.bad_frames == 1


def test_unplug_loses_the_connection_and_a_new_interface_reconnects_after_replug(radio, inbox):
    inbox.listen(inbox.on_lost, "meshtastic.connection.lost")
    inbox.listen(inbox.on_packet, "meshtastic.receive.text")
    iface = SerialInterface(devPath=radio.path, timeout=10)
    try:
        radio.unplug()
        assert inbox.next() == "lost"
        assert not iface.isConnected.is_set()
    finally:
        # "lost" is published before the reader thread drops the dead port, and
        # close() in between raises from stream.flush(): wait for the drop first.
        deadline = time.monotonic() + 2
        while iface.stream is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        iface.close()

    radio.deliver_text(ASH, "lost: the radio was off")
    radio.replug()
    with connected(radio.path) as iface:
        assert iface.myInfo.my_node_num == radio.node_num
        assert radio.handshakes == 2
        radio.deliver_text(ASH, "CI after replug")
        assert inbox.next()["decoded"]["text"] == "CI after replug"


def test_packets_wait_for_the_handshake(radio, inbox):
    inbox.listen(inbox.on_packet, "meshtastic.receive.text")
    radio.deliver_text(BIRCH, "OFF")  # nobody connected yet: the radio holds it
    with connected(radio.path):
        assert inbox.next()["decoded"]["text"] == "OFF"


def test_admin_messages_change_the_radio_and_answer_with_a_session_key(radio):
    with connected(radio.path) as iface:
        node = iface.localNode
        node.setOwner(long_name="Bench North", short_name="BN")
        assert radio.wait_until(lambda: radio.device.owner.long_name == "Bench North")
        assert radio.device.owner.short_name == "BN"
        # setOwner first asked for a session key; the reply carries it and the library keeps it.
        assert radio.admin_messages[0].kind == "get_config_request"
        assert radio.wait_until(
            lambda: iface.nodesByNum[radio.node_num].get("adminSessionPassKey") == radio.device.session_passkey)

        node.localConfig.lora.modem_preset = config_pb2.Config.LoRaConfig.ModemPreset.MEDIUM_FAST
        node.writeConfig("lora")
        node.set_canned_message("CI|ON|OFF|SOS")
        assert radio.wait_until(lambda: radio.device.canned_messages == "CI|ON|OFF|SOS")
        assert radio.device.lora.modem_preset == config_pb2.Config.LoRaConfig.ModemPreset.MEDIUM_FAST
        assert node.get_canned_message() == "CI|ON|OFF|SOS"
        assert radio.sent_packets == [], "admin to the local node never goes on air"

    with connected(radio.path) as iface:
        assert iface.getLongName() == "Bench North"
        assert iface.localNode.localConfig.lora.modem_preset == config_pb2.Config.LoRaConfig.ModemPreset.MEDIUM_FAST


PROFILE = """\
owner: Bench South
owner_short: BS
canned_messages: CI|ON Market|OFF|SOS
config:
  lora:
    region: EU_868
    modemPreset: LONG_MODERATE
    hopLimit: 4
  device:
    role: CLIENT_MUTE
  position:
    positionBroadcastSecs: 3600
module_config:
  cannedMessage:
    enabled: true
    sendBell: true
"""


def test_the_meshtastic_cli_applies_a_profile(radio, tmp_path):
    profile = tmp_path / "hub.yaml"
    profile.write_text(PROFILE)
    done = subprocess.run(
        [sys.executable, "-m", "meshtastic", "--port", radio.path, "--timeout", "10", "--configure", str(profile)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    device = radio.device
    Config = config_pb2.Config
    assert (device.owner.long_name, device.owner.short_name) == ("Bench South", "BS")
    assert device.canned_messages == "CI|ON Market|OFF|SOS"
    assert device.lora.modem_preset == Config.LoRaConfig.ModemPreset.LONG_MODERATE
    assert device.lora.hop_limit == 4
    assert device.lora.region == Config.LoRaConfig.RegionCode.EU_868
    assert device.config["device"].device.role == Config.DeviceConfig.Role.CLIENT_MUTE
    assert device.config["position"].position.position_broadcast_secs == 3600
    assert device.module_config["canned_message"].canned_message.send_bell
    assert device.commits == 1 and not device.in_edit_transaction
    kinds = [record.kind for record in radio.admin_messages]
    assert kinds[0] == "get_config_request" and kinds[1] == "begin_edit_settings"
    assert kinds[-1] == "commit_edit_settings"


def test_stop_cleans_up(tmp_path):
    radio = SimulatedRadio(nodes=[ASH], link_path=tmp_path / "radio")
    radio.start()
    radio.chatter(interval_s=0.01)
    time.sleep(0.1)
    radio.stop()
    assert not (tmp_path / "radio").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("sim-radio")]
