"""A simulated Meshtastic radio on a pseudo-terminal.

``SimulatedRadio`` speaks the real serial stream protocol, so the real
``meshtastic.serial_interface.SerialInterface`` (and the ``meshtastic`` CLI)
talk to it as to a radio on USB: the config handshake, queue status, ACKs
and NAKs, the firmware's rate limits, admin messages, and packets from
simulated stewards. ``path`` is a symlink to the pty that stays put across a
simulated unplug and replug, like ``/dev/serial/by-id/...`` on a Pi.

Wire framing lives in ``sim_wire``; owner, config, channels and node DB in
``sim_device``; the pty and the threads in ``sim_port``; the chatter of
simulated stewards in ``sim_stewards``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from google.protobuf.message import DecodeError

from radio_bridge.mesh import admin_pb2, mesh_pb2, portnums_pb2
from radio_bridge.sim_device import (
    BROADCAST_NUM,
    DeviceState,
    SimNode,
    demo_nodes,
    position_message,
)
from radio_bridge.sim_air import Air
from radio_bridge.sim_port import DelayedJobs, PtyPort, TcpRelay
from radio_bridge.sim_stewards import chatter_loop
from radio_bridge.sim_wire import FrameReader, frame, garbage_mix

__all__ = ["BROADCAST_NUM", "AdminRecord", "LineReport", "SentPacket", "SimNode", "SimulatedRadio", "demo_nodes"]

logger = logging.getLogger(__name__)

PortNum = portnums_pb2.PortNum
TEXT_RATE_LIMIT_S = 2.0  # PhoneAPI: one text every 2 s, else RATE_LIMIT_EXCEEDED
SLOW_PORT_RATE_LIMIT_S = 10.0  # position, waypoint, alert, telemetry: one per 10 s, else dropped silently
SLOW_PORTS = {PortNum.POSITION_APP, PortNum.WAYPOINT_APP, PortNum.ALERT_APP, PortNum.TELEMETRY_APP}
RECENT_IDS = 20  # the firmware ignores a packet id it saw in the last 20 from the client
TO_PHONE_QUEUE = 32  # packets held for a client that has not (re)done the handshake
QUEUE_MAXLEN = 16


@dataclass(frozen=True)
class SentPacket:
    """A packet the host handed to the radio, and what the radio did with it."""

    time: float
    id: int
    to: int
    channel: int
    portnum: str
    payload: bytes
    want_ack: bool
    hop_limit: int
    outcome: str  # "sent", "ack", "implicit-ack", "nak:<REASON>", "no-ack", "rate-limited", "queue-full"

    @property
    def text(self) -> str | None:
        if self.portnum not in ("TEXT_MESSAGE_APP", "ALERT_APP", "DETECTION_SENSOR_APP"):
            return None
        return self.payload.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class LineReport:
    """Which packets the client has taken off the serial line, counted in bytes (see ``line_report``)."""

    read: list[int]  # read, and the client went on reading after them
    last_read: int | None  # read to its last byte, nothing after it yet: the client's packet in hand
    unread: list[int]  # on the line, not (wholly) read


@dataclass(frozen=True)
class AdminRecord:
    """An AdminMessage the host sent to the local node."""

    time: float
    id: int
    kind: str | None
    message: admin_pb2.AdminMessage


class SimulatedRadio:
    """A Meshtastic radio emulator on a pty; see the module docstring."""

    def __init__(self, *, node_num: int = 0x5AFEB00C, long_name: str = "Safe Bench hub (sim)",
                 short_name: str = "BNCH", region: str = "EU_868", modem_preset: str = "LONG_FAST",
                 nodes: list[SimNode] | None = None, channel_name: str = "SafeBench",
                 psk: bytes | None = None, firmware_version: str = "2.5.20.sim", hw_model: str = "PORTDUINO",
                 link_path: str | os.PathLike | None = None, rate_limit: bool = True,
                 ack_delay_s: float = 0.05) -> None:
        self.node_num = node_num
        self.device = DeviceState(
            node_num=node_num, long_name=long_name, short_name=short_name, region=region,
            modem_preset=modem_preset, channel_name=channel_name,
            psk=psk if psk is not None else os.urandom(32),
            nodes=demo_nodes() if nodes is None else list(nodes),
            firmware_version=firmware_version, hw_model=hw_model,
        )
        self.rate_limit = rate_limit
        self.ack_delay_s = ack_delay_s
        self._own_dir: str | None = None
        self._link = Path(link_path) if link_path is not None else None

        self.sent_packets: list[SentPacket] = []
        self.admin_messages: list[AdminRecord] = []
        self.handshakes = 0
        self.bad_frames = 0
        self._frames = FrameReader()

        self._lock = threading.Lock()  # records, fault mode, counters
        self._changed = threading.Condition(self._lock)
        self._io = threading.RLock()  # the port, the client session and every write; taken before _lock
        self._port: PtyPort | None = None
        self._booted = False  # the first plug-in is the first boot
        self._session = "idle"  # "idle" until a handshake completes, again after ToRadio.disconnect
        self._pending: collections.deque[mesh_pb2.MeshPacket] = collections.deque(maxlen=TO_PHONE_QUEUE)
        self._from_radio_num = 0
        # Bookkeeping for tests, not protocol: where each frame sent since the
        # last handshake ends on the line, and the packet it carried (or None).
        self._line_base = 0
        self._line_frames: collections.deque[tuple[int, int | None]] = collections.deque(maxlen=100_000)
        self._recent_ids: collections.deque[int] = collections.deque(maxlen=RECENT_IDS)
        self._last_port_time: dict[int, float] = {}
        self._delivered: collections.OrderedDict[int, mesh_pb2.MeshPacket] = collections.OrderedDict()
        self._heard: set[int] = set()
        self._packet_ids = itertools.count(random.getrandbits(31) | 1)

        self._mode = "normal"
        self._frozen = False  # a hung firmware: the port stays open, nothing is read or written
        self.ignored_while_frozen = 0
        self._nak_reason = "NONE"
        self._nak_left: int | None = None

        self._jobs = DelayedJobs()
        self._chatter: threading.Thread | None = None
        self._chatter_stop = threading.Event()
        self._running = False
        self._tcp: TcpRelay | None = None
        self.air: Air | None = None  # other radios in range (sim_air.Air.join), or none

    # -- life cycle ------------------------------------------------------------

    @property
    def path(self) -> str:
        """The stable symlink to hand to ``SerialInterface(devPath=...)``."""
        if self._link is None:
            raise RuntimeError("the simulated radio has not been started")
        return str(self._link)

    @property
    def plugged(self) -> bool:
        return self._port is not None

    @property
    def connected(self) -> bool:
        """True once a client finished the handshake (and has not sent ``disconnect``)."""
        return self._session == "connected"

    def start(self) -> Self:
        if self._running:
            return self
        if self._link is None:
            self._own_dir = tempfile.mkdtemp(prefix="safebench-radio-")
            self._link = Path(self._own_dir) / "ttySIM0"
        self._link.parent.mkdir(parents=True, exist_ok=True)
        self._running = True
        self._jobs.start()
        self.replug()
        logger.info("simulated radio !%08x on %s", self.node_num, self.path)
        return self

    def serve_tcp(self, port: int = 0) -> int:
        """Also offer the radio on 127.0.0.1:``port`` (0: any free port), as a WiFi radio does; returns the port."""
        if self._tcp is None:
            self._tcp = TcpRelay(Path(self.path), port)
        return self._tcp.port

    def stop(self) -> None:
        """Stop every thread, close the pty and remove the symlink (and its temp dir)."""
        if not self._running:
            return
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        self.stop_chatter()
        self.unplug()
        self._running = False
        self._jobs.stop()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None
            self._link = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def unplug(self) -> None:
        """Pull the USB cable: the pty closes under the client and the path disappears.

        The radio loses power with it: packets held for the client are gone,
        and deliveries while unplugged are lost.
        """
        with self._io:  # from here on no write reaches the old pty
            port, self._port = self._port, None
            self._session = "idle"
            self._pending.clear()
        if port is None:
            return
        port.close()  # outside _io: its reader thread may be waiting for it
        logger.info("simulated radio unplugged")

    def replug(self) -> None:
        """Plug the radio back in: a fresh pty behind the same symlink, a freshly booted radio."""
        if not self._running:
            raise RuntimeError("start() the simulated radio first")
        if self._port is not None:
            return
        with self._io:
            self._session = "idle"
            self.device.reboot_count += 1 if self._booted else 0
            self._booted = True
            self._recent_ids.clear()
            self._last_port_time.clear()
            self._frames = FrameReader()
            self._port = PtyPort(self._link, self._on_host_bytes)

    # -- waiting, for tests ----------------------------------------------------

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def wait_for_sent(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until the host has sent ``count`` mesh packets (admin to the local node not counted)."""
        return self.wait_until(lambda: len(self.sent_packets) >= count, timeout)

    def wait_for_admin(self, count: int = 1, timeout: float = 5.0) -> bool:
        return self.wait_until(lambda: len(self.admin_messages) >= count, timeout)

    def wait_for_handshake(self, count: int = 1, timeout: float = 5.0) -> bool:
        return self.wait_until(lambda: self.handshakes >= count, timeout)

    def line_report(self) -> LineReport:
        """What the client has read off the line since its handshake, by counting bytes.

        The client's library reads one byte at a time and hands each packet to
        the bridge before it reads the next byte, so a packet followed by
        anything read is one the bridge has had. Meaningful while the client
        is alive or just after it died (before another client opens the port:
        opening it flushes what was never read, as pyserial does).
        """
        with self._io:
            if self._port is None:
                return LineReport([], None, [packet for _, packet in self._line_frames if packet is not None])
            # Bytes just written can sit a moment in the kernel's flip buffer before
            # the line discipline counts them as unread: let the count settle
            # (no write can start while we hold the port).
            unread, deadline = self._port.unread(), time.monotonic() + 0.5
            while time.monotonic() < deadline:
                time.sleep(0.02)
                again = self._port.unread()
                if again == unread:
                    break
                unread = again
            consumed = self._port.written - unread - self._line_base
            read, last, unread = [], None, []
            for end, packet in self._line_frames:
                if packet is None:
                    continue
                if end < consumed:
                    read.append(packet)
                elif end == consumed:
                    last = packet
                else:
                    unread.append(packet)
            return LineReport(read, last, unread)

    # -- fault controls --------------------------------------------------------

    def normal(self) -> None:
        """Answer every want_ack packet: ACK from the destination, implicit ACK for broadcasts."""
        with self._lock:
            self._mode, self._nak_left = "normal", None

    def nak(self, reason: str = "MAX_RETRANSMIT", count: int | None = None) -> None:
        """NAK want_ack packets with ``reason`` (a ``Routing.Error`` name); only the next ``count`` if given."""
        mesh_pb2.Routing.Error.Value(reason)  # unknown names fail here, not on the reader thread
        with self._lock:
            self._mode, self._nak_reason, self._nak_left = "nak", reason, count

    def no_ack(self) -> None:
        """Never answer want_ack packets (a lost ACK, or a radio that hangs)."""
        with self._lock:
            self._mode, self._nak_left = "no-ack", None

    def queue_full(self) -> None:
        """The radio's transmit queue is full (a busy mesh, a duty-cycle wait): it takes no packet.

        Each packet is answered with a queue status saying there is no room
        (and an error), as is every heartbeat, until ``normal()``.
        """
        with self._lock:
            self._mode, self._nak_left = "queue-full", None

    def freeze(self) -> None:
        """Hang the firmware: the USB port stays open, but the radio reads nothing and says nothing.

        Nothing tells the client; only silence does (the library publishes
        no event for it). ``thaw()`` wakes the radio, as a reset would.
        """
        with self._io:
            self._frozen = True
        logger.info("simulated radio frozen")

    def thaw(self) -> None:
        with self._io:
            self._frozen = False
            self.device.reboot_count += 1  # a hung firmware comes back through its watchdog: a boot
            self._session = "idle"  # it comes back as if reset: the client must handshake again
            self._frames = FrameReader()
        logger.info("simulated radio thawed")

    # -- mesh to host ----------------------------------------------------------

    def deliver_text(self, from_node: int | SimNode, text: str, **meta) -> int:
        """A text from ``from_node`` arrives over the air; returns the packet id.

        ``meta``: ``to`` (default broadcast; the radio's ``node_num`` for a DM),
        ``channel``, ``packet_id``, ``hop_start``, ``hop_limit``, ``rx_snr``,
        ``rx_rssi``, ``rx_time``, ``want_ack``.
        """
        return self.deliver_raw(from_node, PortNum.TEXT_MESSAGE_APP, text.encode("utf-8"), **meta)

    def deliver_dm(self, from_node: int | SimNode, text: str, **meta) -> int:
        """A steward's direct message to the hub, as firmware 2.5+ delivers it: PKI-decrypted.

        The radio decrypted it with the X25519 key its node list holds for
        the sender, and hands it over with ``pki_encrypted`` and that key:
        the proof the hub checks against the key a host pinned.
        """
        return self.deliver_raw(from_node, PortNum.TEXT_MESSAGE_APP, text.encode("utf-8"), pki=True,
                                **{"to": self.node_num, **meta})

    def spoof(self, as_node: int | SimNode, text: str, *, key: bytes | None = None, **meta) -> int:
        """Fault control: a stranger holding the channel key sends ``text`` under a registered node's id.

        Without ``key`` it is channel traffic (anyone with the channel key
        can write any ``from``). With ``key`` it is the stronger attack: a
        direct message the hub's radio decrypted with the stranger's own key,
        because it learned that key for the node from the stranger's forged
        NodeInfo before it ever heard the real one.
        """
        num = self._num(as_node)
        if key is None:
            return self.deliver_raw(num, PortNum.TEXT_MESSAGE_APP, text.encode("utf-8"), **meta)
        return self.deliver_raw(num, PortNum.TEXT_MESSAGE_APP, text.encode("utf-8"), pki=True, public_key=key,
                                **{"to": self.node_num, **meta})

    def deliver_alert(self, from_node: int | SimNode, text: str, **meta) -> int:
        return self.deliver_raw(from_node, PortNum.ALERT_APP, text.encode("utf-8"), **meta)

    def deliver_detection(self, from_node: int | SimNode, text: str, **meta) -> int:
        return self.deliver_raw(from_node, PortNum.DETECTION_SENSOR_APP, text.encode("utf-8"), **meta)

    def deliver_position(self, from_node: int | SimNode, lat: float, lon: float, *, altitude: int | None = None,
                         precision_bits: int = 32, **meta) -> int:
        pos = position_message(lat, lon, altitude=altitude, precision_bits=precision_bits)
        node = self.device.nodes.get(self._num(from_node))
        if node is not None:
            node.latitude, node.longitude = lat, lon
        return self.deliver_raw(from_node, PortNum.POSITION_APP, pos.SerializeToString(), **meta)

    def deliver_node_info(self, node: SimNode, **meta) -> int:
        """A node announces itself (NODEINFO_APP); it joins the node DB for later handshakes."""
        self.device.nodes[node.num] = node
        return self.deliver_raw(node, PortNum.NODEINFO_APP, node.to_user().SerializeToString(), **meta)

    def deliver_raw(self, from_node: int | SimNode, portnum: int | str, payload: bytes, *,
                    to: int = BROADCAST_NUM, channel: int = 0, packet_id: int | None = None,
                    hop_start: int = 3, hop_limit: int | None = None, rx_snr: float | None = None,
                    rx_rssi: int | None = None, rx_time: int | None = None, want_ack: bool = False,
                    pki: bool = False, public_key: bytes | None = None, via_mqtt: bool = False) -> int:
        """Any payload on any port, including malformed ones; returns the packet id.

        ``pki``: the radio decrypted it as a direct message with the sender's
        key (``public_key``, by default the key the sender's node announces).
        """
        num = self._num(from_node)
        node = self.device.nodes.get(num)
        mp = mesh_pb2.MeshPacket()
        setattr(mp, "from", num)
        mp.to = to
        mp.channel = channel
        mp.id = packet_id if packet_id is not None else self._new_packet_id()
        mp.rx_time = rx_time if rx_time is not None else int(time.time())
        mp.rx_snr = rx_snr if rx_snr is not None else (node.snr if node else 5.0)
        mp.rx_rssi = rx_rssi if rx_rssi is not None else (node.rssi if node else -80)
        mp.hop_start = hop_start
        mp.hop_limit = hop_limit if hop_limit is not None else max(0, hop_start - (node.hops_away if node else 0))
        mp.want_ack = want_ack
        mp.relay_node = num & 0xFF
        mp.decoded.portnum = PortNum.Value(portnum) if isinstance(portnum, str) else portnum
        mp.decoded.payload = payload
        mp.via_mqtt = via_mqtt
        if pki:
            mp.pki_encrypted = True
            key = public_key if public_key is not None else (node.public_key if node is not None else b"")
            mp.public_key = key
        if node is not None:
            node.last_heard = time.time()  # the firmware's node list notes every packet heard
        with self._lock:
            self._heard.add(num)
            self._delivered[mp.id] = mp
            while len(self._delivered) > 500:
                self._delivered.popitem(last=False)
        self._to_host_packet(mp)
        return mp.id

    def deliver_duplicate(self, packet_id: int, *, hop_limit: int | None = None, rx_snr: float | None = None) -> int:
        """The mesh delivers an earlier packet again (same id), e.g. through another relay."""
        with self._lock:
            original = self._delivered[packet_id]
        mp = mesh_pb2.MeshPacket()
        mp.CopyFrom(original)
        mp.rx_time = int(time.time())
        if hop_limit is not None:
            mp.hop_limit = hop_limit
        if rx_snr is not None:
            mp.rx_snr = rx_snr
        self._to_host_packet(mp)
        return packet_id

    def send_garbage(self, data: bytes | None = None) -> None:
        """Put junk on the line: ``data`` as given, or a mix of every kind (see ``sim_wire.garbage_mix``)."""
        with self._io:
            self._write(data if data is not None else garbage_mix())

    def send_log_line(self, text: str) -> None:
        """A debug log line outside any frame, as the firmware prints with debug logging on."""
        with self._io:
            self._write(text.encode("utf-8") + b"\r\n")

    # -- simulated stewards ----------------------------------------------------

    def chatter(self, interval_s: float = 20.0, rng: random.Random | None = None) -> None:
        """Start simulated stewards sending shift starts, check-ins and shift ends (opt-in)."""
        if self._chatter is not None:
            return
        rng = rng or random.Random()
        self._chatter_stop.clear()
        self._chatter = threading.Thread(target=chatter_loop, args=(self, interval_s, rng, self._chatter_stop),
                                         name="sim-radio-chatter", daemon=True)
        self._chatter.start()

    def stop_chatter(self) -> None:
        if self._chatter is None:
            return
        self._chatter_stop.set()
        self._chatter.join(timeout=2)
        self._chatter = None

    # -- reading the host ------------------------------------------------------

    def _on_host_bytes(self, data: bytes) -> None:
        if self._frozen:
            with self._lock:
                self.ignored_while_frozen += len(data)
            return
        for payload in self._frames.feed(data):
            try:
                self._handle_frame(payload)
            except Exception:
                logger.exception("simulated radio: failed to handle a frame from the host")

    def _handle_frame(self, payload: bytes) -> None:
        to_radio = mesh_pb2.ToRadio()
        try:
            to_radio.ParseFromString(payload)
        except DecodeError:
            with self._lock:
                self.bad_frames += 1
            logger.warning("simulated radio: ignored an undecodable ToRadio frame (%d bytes)", len(payload))
            return
        kind = to_radio.WhichOneof("payload_variant")
        if kind == "want_config_id":
            self._handshake(to_radio.want_config_id)
        elif kind == "packet":
            self._handle_host_packet(to_radio.packet)
        elif kind == "disconnect":
            with self._io:
                self._session = "idle"
                self._last_port_time.clear()
        elif kind == "heartbeat":
            self._send_queue_status(0, full=self._mode == "queue-full")
        else:
            logger.debug("simulated radio: ignored ToRadio %s", kind)

    def _handshake(self, nonce: int) -> None:
        with self._io:
            if self._port is None:
                return
            self._session = "configuring"
            self._line_base = self._port.written
            self._line_frames.clear()
            for message in self.device.handshake(nonce, time.time()):
                self._write_from_radio(message)
            self._session = "connected"
            while self._pending:
                self._write_from_radio(mesh_pb2.FromRadio(packet=self._pending.popleft()))
        with self._changed:
            self.handshakes += 1
            self._changed.notify_all()

    def _handle_host_packet(self, mp: mesh_pb2.MeshPacket) -> None:
        now = time.monotonic()
        port = mp.decoded.portnum
        with self._io:
            if mp.id and mp.id in self._recent_ids:
                # The firmware drops a re-sent id without a word: retries need a new id.
                logger.info("simulated radio: ignored packet id %08x, already seen", mp.id)
                return
            self._recent_ids.append(mp.id)

        if mp.to == self.node_num and port == PortNum.ADMIN_APP:
            self._send_queue_status(mp.id)
            self._handle_admin(mp)
            return

        if self._mode == "queue-full":
            self._send_queue_status(mp.id, full=True)
            self._record(mp, "queue-full")
            return
        last = self._last_port_time.get(port)
        if self.rate_limit and port == PortNum.TEXT_MESSAGE_APP and last is not None and now - last < TEXT_RATE_LIMIT_S:
            self._send_queue_status(mp.id)
            self._send_routing(request=mp, reason="RATE_LIMIT_EXCEEDED", from_num=self.node_num)
            self._record(mp, "rate-limited")
            return
        if self.rate_limit and port in SLOW_PORTS and last is not None and now - last < SLOW_PORT_RATE_LIMIT_S:
            self._send_queue_status(mp.id)
            self._record(mp, "rate-limited")
            return
        self._last_port_time[port] = now
        self._send_queue_status(mp.id)

        carried = self.air.carry(self, mp) if self.air is not None else None
        outcome, from_num, reason = carried or self._answer_for(mp)
        if from_num is not None:
            self._later(self.ack_delay_s, lambda: self._send_routing(request=mp, reason=reason, from_num=from_num))
        self._record(mp, outcome)

    def _answer_for(self, mp: mesh_pb2.MeshPacket) -> tuple[str, int | None, str]:
        """What the mesh will say about a packet: (outcome, who answers, routing error)."""
        if not mp.want_ack:
            return "sent", None, "NONE"
        with self._lock:
            mode = self._mode
            if mode == "nak":
                reason = self._nak_reason
                if self._nak_left is not None:
                    self._nak_left -= 1
                    if self._nak_left <= 0:
                        self._mode, self._nak_left = "normal", None
                return f"nak:{reason}", self.node_num, reason
            reachable = mp.to in self.device.nodes or mp.to in self._heard or mp.to == self.node_num
        if mode == "no-ack":
            return "no-ack", None, "NONE"
        if mp.to == BROADCAST_NUM:
            # A neighbour was heard rebroadcasting it: an implicit ACK, from our own node.
            return "implicit-ack", self.node_num, "NONE"
        if reachable:
            return "ack", mp.to, "NONE"
        # Nobody answers: the firmware retries, then gives up.
        return "nak:MAX_RETRANSMIT", self.node_num, "MAX_RETRANSMIT"

    def _handle_admin(self, mp: mesh_pb2.MeshPacket) -> None:
        msg = admin_pb2.AdminMessage()
        try:
            msg.ParseFromString(mp.decoded.payload)
        except DecodeError:
            logger.warning("simulated radio: undecodable admin message %08x", mp.id)
            self._send_routing(request=mp, reason="BAD_REQUEST", from_num=self.node_num)
            return
        kind = msg.WhichOneof("payload_variant")
        with self._io:  # the node DB and config are read by handshakes on the same lock
            reply, error = self.device.apply_admin(msg)
        with self._changed:
            self.admin_messages.append(AdminRecord(time.time(), mp.id, kind, msg))
            self._changed.notify_all()
        logger.debug("simulated radio: admin %s -> %s", kind, "reply" if reply else error)
        if error != "NONE":
            self._send_routing(request=mp, reason=error, from_num=self.node_num)
        elif reply is not None:
            answer = self._local_packet(PortNum.ADMIN_APP, reply.SerializeToString(), request=mp)
            self._to_host_packet(answer)
        elif mp.want_ack:
            self._send_routing(request=mp, reason="NONE", from_num=self.node_num)

    def _record(self, mp: mesh_pb2.MeshPacket, outcome: str) -> None:
        sent = SentPacket(
            time=time.time(), id=mp.id, to=mp.to, channel=mp.channel,
            portnum=PortNum.Name(mp.decoded.portnum) if mp.decoded.portnum in PortNum.values() else str(
                mp.decoded.portnum),
            payload=bytes(mp.decoded.payload), want_ack=mp.want_ack, hop_limit=mp.hop_limit, outcome=outcome,
        )
        with self._changed:
            self.sent_packets.append(sent)
            self._changed.notify_all()

    # -- writing to the host ---------------------------------------------------

    def _new_packet_id(self) -> int:
        return next(self._packet_ids) & 0xFFFFFFFF or 1

    def _local_packet(self, portnum: int, payload: bytes, *, request: mesh_pb2.MeshPacket,
                      from_num: int | None = None) -> mesh_pb2.MeshPacket:
        """A reply to the host's ``request``, as the firmware builds it (request_id, to = us)."""
        from_num = self.node_num if from_num is None else from_num
        mp = mesh_pb2.MeshPacket()
        setattr(mp, "from", from_num)
        mp.to = self.node_num
        mp.channel = request.channel
        mp.id = self._new_packet_id()
        mp.rx_time = int(time.time())
        mp.priority = mesh_pb2.MeshPacket.Priority.ACK
        mp.decoded.portnum = portnum
        mp.decoded.payload = payload
        mp.decoded.request_id = request.id
        if from_num != self.node_num:
            node = self.device.nodes.get(from_num)
            mp.rx_snr = node.snr if node else 5.0
            mp.rx_rssi = node.rssi if node else -80
            mp.hop_start = 3
            mp.hop_limit = 3 - (node.hops_away if node else 0)
        return mp

    def _send_routing(self, *, request: mesh_pb2.MeshPacket, reason: str, from_num: int) -> None:
        routing = mesh_pb2.Routing()
        # error_reason sits in a oneof: assigning it, even NONE, makes it present on
        # the wire, which the library needs to tell an ACK ("errorReason": "NONE").
        routing.error_reason = mesh_pb2.Routing.Error.Value(reason)
        self._to_host_packet(self._local_packet(PortNum.ROUTING_APP, routing.SerializeToString(),
                                                request=request, from_num=from_num))

    def _send_queue_status(self, packet_id: int, full: bool = False) -> None:
        # The firmware's ERRNO_UNKNOWN (32) when its transmit queue refused the packet.
        status = mesh_pb2.QueueStatus(res=32 if full and packet_id else 0, free=0 if full else QUEUE_MAXLEN - 1,
                                      maxlen=QUEUE_MAXLEN, mesh_packet_id=packet_id)
        with self._io:
            self._write_from_radio(mesh_pb2.FromRadio(queueStatus=status))

    def _to_host_packet(self, mp: mesh_pb2.MeshPacket) -> None:
        with self._io:
            if self._port is None:
                logger.info("simulated radio is unplugged: packet %08x lost", mp.id)
            elif self._session != "connected":
                if len(self._pending) == self._pending.maxlen:
                    logger.warning("simulated radio: to-client queue full, oldest packet dropped")
                self._pending.append(mp)
            else:
                self._write_from_radio(mesh_pb2.FromRadio(packet=mp))

    def _write_from_radio(self, message: mesh_pb2.FromRadio) -> None:
        self._from_radio_num += 1
        message.id = self._from_radio_num
        before = self._port.written if self._port is not None else 0
        self._write(frame(message.SerializeToString()))
        if self._port is not None and self._port.written > before:  # not dropped by a port nobody reads
            packet = message.packet.id if message.HasField("packet") else None
            self._line_frames.append((self._port.written - self._line_base, packet))

    def _write(self, data: bytes) -> None:
        """Write to the host, if plugged in and awake (the caller holds ``_io``)."""
        if self._port is not None and not self._frozen:
            self._port.write(data)

    def _later(self, delay: float, job: Callable[[], None]) -> None:
        port = self._port

        def guarded() -> None:
            if self._port is port:  # an ACK does not survive an unplug
                job()

        self._jobs.later(delay, guarded)

    @staticmethod
    def _num(node: int | SimNode) -> int:
        return node.num if isinstance(node, SimNode) else int(node)
