"""The one boundary to the ``meshtastic`` library and its pubsub events.

Everything that touches the library lives here: opening and closing the
radio, turning its camelCase packet dicts into the bridge's own types, and
sending. The protobuf message classes are re-exported for the simulated
radio, which must speak the same wire protocol.

Facts this module is built on (see shared/RADIO_FACTS.md): pypubsub keeps
weak references, so only bound methods of a kept object are subscribed;
the serial interface never reconnects by itself. Packets are not taken from
pubsub (its publishing thread runs behind the reader, so a packet could be
read off the line and still only in memory): the reader thread itself writes
each packet to the bridge's journal before it reads the next byte.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf.message import DecodeError
from meshtastic import mesh_interface, serial_interface, tcp_interface, util
from meshtastic.protobuf import (  # noqa: F401  (re-exported for the simulator)
    admin_pb2,
    apponly_pb2,
    channel_pb2,
    config_pb2,
    mesh_pb2,
    module_config_pb2,
    portnums_pb2,
)
from pubsub import pub

from radio_bridge.packets import (
    Ack,
    Inbound,
    LinkLost,
    NodeInfoPacket,
    OtherPacket,
    PanicPacket,
    PositionPacket,
    Proof,
    RadioInfo,
    TextPacket,
)

log = logging.getLogger("radio_bridge.mesh")

MAX_PAYLOAD = mesh_pb2.Constants.DATA_PAYLOAD_LEN


class RadioUnavailable(Exception):
    """The radio could not be opened or stopped answering."""


class RadioBusy(Exception):
    """The radio's own transmit queue is full: it would refuse (or the library wait forever on) another packet."""


@dataclass(frozen=True)
class RadioSpec:
    """Where the radio is: ``serial:/dev/ttyACM0``, ``serial:auto``, ``tcp:host[:port]`` or ``sim``."""

    kind: str
    target: str = ""
    port: int = 4403

    @classmethod
    def parse(cls, text: str) -> RadioSpec:
        kind, _, rest = text.strip().partition(":")
        if kind == "sim" and not rest:
            return cls("sim")
        if kind == "serial" and rest:
            return cls("serial", rest)
        if kind == "tcp" and rest:
            host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
            try:
                return cls("tcp", host or rest, int(port) if port else 4403)
            except ValueError:
                pass
        raise ValueError(f"Radio {text!r}: use serial:/dev/ttyUSB0, serial:auto, tcp:HOST[:PORT] or sim.")

    def __str__(self) -> str:
        if self.kind == "tcp":
            return f"tcp:{self.target}:{self.port}"
        return f"{self.kind}:{self.target}" if self.target else self.kind


def find_serial_radio() -> str:
    """The one Meshtastic radio on a USB port; refuses to guess between several."""
    ports = util.findPorts(True)
    if len(ports) != 1:
        found = ", ".join(ports) or "none"
        raise RadioUnavailable(f"serial:auto needs exactly one radio plugged in (found: {found}).")
    return ports[0]


class _Stamped:
    """The library's interface, with three things added on its reader thread.

    It notes when the radio last said anything at all (a hung radio sends no
    event, only silence); it hands every packet to ``on_packet`` before the
    library reads the next frame; and it bounds the library's wait for the
    handshake, which is fixed at 30 s inside ``connect()`` whatever
    ``timeout`` says.
    """

    last_heard: float = 0.0

    def __init__(self, *args: Any, connect_wait: float = 30.0,
                 on_packet: Callable[[bytes], None] | None = None, **kwargs: Any) -> None:
        self._connect_wait = connect_wait
        self._on_packet = on_packet  # set before connecting: packets may come during the handshake
        self.taken_ids: collections.deque[int] = collections.deque(maxlen=64)
        self.refused_ids: collections.deque[int] = collections.deque(maxlen=64)
        super().__init__(*args, **kwargs)

    def _waitConnected(self, timeout: float = 30.0) -> None:  # noqa: N802  (the library's name)
        super()._waitConnected(min(timeout, self._connect_wait))  # type: ignore[misc]

    def _handleFromRadio(self, fromRadioBytes: bytes) -> None:  # noqa: N802, N803  (the library's names)
        self.last_heard = time.monotonic()
        if self._on_packet is not None:
            try:
                message = mesh_pb2.FromRadio.FromString(bytes(fromRadioBytes))
            except DecodeError:
                message = None  # the library logs and skips it too
            if message is not None and message.HasField("packet"):
                self._on_packet(message.packet.SerializeToString())
                if self.nodesByNum is None:
                    # Left on the line for a client that died, before our handshake: the
                    # library cannot take a packet yet (no node list); it is journaled.
                    return
        super()._handleFromRadio(fromRadioBytes)  # type: ignore[misc]

    def _handleQueueStatusFromRadio(self, queueStatus: Any) -> None:  # noqa: N802, N803  (the library's names)
        # The firmware answers every packet it takes with its queue status
        # (and drops, without a word, an id it already took): note which.
        if queueStatus.mesh_packet_id:
            (self.refused_ids if queueStatus.res else self.taken_ids).append(queueStatus.mesh_packet_id)
        super()._handleQueueStatusFromRadio(queueStatus)  # type: ignore[misc]


class _SerialRadio(_Stamped, serial_interface.SerialInterface):
    pass


class _TcpRadio(_Stamped, tcp_interface.TCPInterface):
    pass


def _enum_name(enum: Any, value: int) -> str | None:
    try:
        return enum.Name(value)
    except ValueError:
        return None


class RadioLink:
    """One open connection to the hub's radio; events go onto ``events``."""

    def __init__(self, events: queue.Queue[Inbound], connect_timeout: float = 30,
                 on_packet: Callable[[bytes], None] | None = None) -> None:
        self.events = events
        self.connect_timeout = connect_timeout
        self.on_packet = on_packet
        self._iface: mesh_interface.MeshInterface | None = None
        self._device_path: str | None = None
        self._send_lock = threading.Lock()
        self._opened_at = 0.0

    # -- opening and closing ------------------------------------------------

    def open(self, spec: RadioSpec, device_path: str | None = None) -> RadioInfo:
        """Open and handshake. ``device_path`` is where the sim radio is, for ``sim``."""
        self.close()
        try:
            if spec.kind == "tcp":
                iface = _TcpRadio(
                    spec.target, portNumber=spec.port, timeout=max(1, int(self.connect_timeout)),
                    connect_wait=self.connect_timeout, on_packet=self.on_packet,
                )
            else:
                path = device_path or (find_serial_radio() if spec.target == "auto" else spec.target)
                if not os.path.exists(path):
                    raise RadioUnavailable(f"No radio at {path}: is it plugged in?")
                self._device_path = path
                iface = _SerialRadio(devPath=path, timeout=max(1, int(self.connect_timeout)),
                                     connect_wait=self.connect_timeout, on_packet=self.on_packet)
        except RadioUnavailable:
            raise
        except BaseException as error:  # the library raises anything from OSError to SystemExit
            if isinstance(error, KeyboardInterrupt):
                raise
            raise RadioUnavailable(f"Could not open the radio {spec}: {error!r}") from None
        self._iface = iface
        self._opened_at = time.monotonic()
        pub.subscribe(self._on_lost, "meshtastic.connection.lost")
        return self.info()

    def close(self) -> None:
        iface, self._iface = self._iface, None
        if iface is None:
            return
        try:
            pub.unsubscribe(self._on_lost, "meshtastic.connection.lost")
        except Exception:  # noqa: BLE001  (not subscribed: nothing to undo)
            pass
        try:
            iface.close()
        except Exception as error:  # noqa: BLE001  (closing a dead port may fail)
            # After an unplug, flushing the dead port raises before the
            # library's own close runs, which would leave its heartbeat
            # timer firing at a closed stream: run that part directly.
            log.debug("closing the radio: %r", error)
            try:
                mesh_interface.MeshInterface.close(iface)
            except Exception:  # noqa: BLE001
                log.debug("closing the radio's interface", exc_info=True)

    @property
    def is_open(self) -> bool:
        return self._iface is not None

    def device_present(self) -> bool:
        """False when the USB radio's device node has gone (unplugged)."""
        return self._device_path is None or os.path.exists(self._device_path)

    def quiet_for(self) -> float:
        """Seconds since the radio last sent anything (a packet, a queue status, a log line frame)."""
        iface = self._require()
        return time.monotonic() - max(iface.last_heard, self._opened_at)

    def poke(self) -> None:
        """Ask the radio for a sign of life: the firmware answers a heartbeat with its queue status."""
        iface = self._require()
        heartbeat = mesh_pb2.ToRadio()
        heartbeat.heartbeat.CopyFrom(mesh_pb2.Heartbeat())
        with self._send_lock:
            try:
                # Written directly: the library's sendHeartbeat waits, forever, for
                # room in a full transmit queue, which is what we ask the radio about.
                iface._sendToRadioImpl(heartbeat)
            except Exception as error:
                raise RadioUnavailable(f"The radio did not take a heartbeat: {error!r}") from None

    def radio_refused(self, packet_id: int) -> bool:
        """The radio answered ``packet_id`` with an error in its queue status (its queue was full)."""
        return packet_id in self._require().refused_ids

    def queue_full(self) -> bool:
        """The radio's last word on its transmit queue was "no room"."""
        status = getattr(self._require(), "queueStatus", None)
        return status is not None and status.maxlen > 0 and status.free == 0

    def heard_since(self, since: float) -> dict[int, float]:
        """Nodes the radio's own node list says it heard after unix time ``since`` (or in its second), and when.

        The firmware keeps ``lastHeard`` in whole seconds: a node heard later in
        the same second as ``since`` shows that second, so it counts as heard
        after (asking a steward to send again costs less than losing their SOS).
        """
        iface = self._require()
        heard = {}
        for node in list((iface.nodesByNum or {}).values()):
            last = node.get("lastHeard")
            if node.get("num") and last and float(last) >= int(since):
                heard[int(node["num"])] = float(last)
        return heard

    def node_keys(self) -> dict[int, str]:
        """Public keys in the radio's own node list (base64, as the library keeps them), by node number."""
        iface = self._require()
        keys = {}
        for node in list((iface.nodesByNum or {}).values()):
            key = (node.get("user") or {}).get("publicKey")
            if node.get("num") and key:
                keys[int(node["num"])] = key
        return keys

    def info(self) -> RadioInfo:
        iface = self._require()
        lora = iface.localNode.localConfig.lora
        metadata = getattr(iface, "metadata", None)
        my_info = iface.myInfo
        long_name = None
        node_num = my_info.my_node_num if my_info else 0
        for node in (iface.nodesByNum or {}).values():
            if node.get("num") == node_num:
                long_name = node.get("user", {}).get("longName")
        return RadioInfo(
            node_num=node_num,
            firmware=metadata.firmware_version if metadata else None,
            region=_enum_name(config_pb2.Config.LoRaConfig.RegionCode, lora.region),
            modem_preset=_enum_name(config_pb2.Config.LoRaConfig.ModemPreset, lora.modem_preset),
            long_name=long_name,
            reboot_count=my_info.reboot_count if my_info else None,
            public_key=bytes(iface.localNode.localConfig.security.public_key) or None,
        )

    def _require(self) -> mesh_interface.MeshInterface:
        if self._iface is None:
            raise RadioUnavailable("The radio is not connected.")
        return self._iface

    # -- sending --------------------------------------------------------------

    def send_text(self, text: str, destination: int, packet_id: int, channel: int = 0,
                  public_key: bytes | None = None) -> None:
        """Send with our own packet id (so a repeat after a crash is dropped by the mesh as a copy).

        ``public_key``: a PKI direct message encrypted to that key only. The
        firmware refuses (NAK ``PKI_FAILED``) when its node list holds another
        key for ``destination``, and never falls back to the channel key.
        """
        payload = text.encode("utf-8")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"{len(payload)} bytes is more than one packet holds")
        packet = mesh_pb2.MeshPacket()
        packet.channel = channel
        packet.decoded.payload = payload
        packet.decoded.portnum = portnums_pb2.PortNum.TEXT_MESSAGE_APP
        packet.id = packet_id
        packet.priority = mesh_pb2.MeshPacket.Priority.RELIABLE
        iface = self._require()
        if self.queue_full():
            # The library would sleep until the radio says otherwise, which it
            # only does when asked: never hand it a packet now.
            raise RadioBusy("The radio's transmit queue is full.")
        with self._send_lock:
            try:
                # _sendPacket keeps an id that is already set (sendData would
                # always make a new one); meshtastic is pinned below 2.8 for this.
                iface._sendPacket(packet, destination, wantAck=True, pkiEncrypted=public_key is not None,
                                  publicKey=public_key)
            except Exception as error:
                raise RadioUnavailable(f"Sending failed: {error!r}") from None

    def add_contact(self, node_num: int, public_key: bytes, long_name: str, short_name: str) -> None:
        """Put a node and its key into the radio's own node list (``AdminMessage.add_contact``, firmware 2.6+).

        The key a host pinned, so the radio encrypts to it and decrypts with
        it even before it hears the node announce itself (and not a key
        someone else announced for that node number first). An older
        firmware ignores the message; a wrong key then shows as PKI_FAILED.
        """
        contact = admin_pb2.SharedContact(node_num=node_num, manually_verified=True)
        contact.user.id = f"!{node_num:08x}"
        contact.user.long_name = long_name[:39]
        contact.user.short_name = short_name[:4]
        contact.user.public_key = public_key
        message = admin_pb2.AdminMessage()
        message.add_contact.CopyFrom(contact)
        iface = self._require()
        with self._send_lock:
            try:
                iface.sendData(message, iface.myInfo.my_node_num, portNum=portnums_pb2.PortNum.ADMIN_APP,
                               wantAck=True)
            except Exception as error:
                raise RadioUnavailable(f"The radio did not take a contact: {error!r}") from None

    def radio_took(self, packet_id: int, wait: float) -> bool:
        """Wait up to ``wait`` s for the radio to confirm taking ``packet_id`` (its queue status).

        The firmware confirms every packet it takes, and drops without a word
        a packet id it already took from this client (among its last 20).
        """
        iface = self._require()
        deadline = time.monotonic() + wait
        while packet_id not in iface.taken_ids:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # -- events from the library's reader thread --------------------------------

    # The listeners' signatures match what the library sends: pypubsub fixes a
    # topic's arguments from its first subscriber, and a looser one here
    # would make other listeners of the same topic fail.
    def _on_lost(self, interface: Any) -> None:
        if interface is not self._iface:
            return  # an interface we already closed
        self.events.put(LinkLost("the radio connection was lost"))


def decode_packet(raw: bytes, heard_at: datetime) -> Inbound | None:
    """Turn a MeshPacket off the radio (as kept in the journal) into one of the bridge's types.

    Never raises: a packet the bridge cannot read becomes ``None`` (nothing to
    act on) or an ``OtherPacket`` (a sign of life from its sender).
    """
    try:
        packet = mesh_pb2.MeshPacket.FromString(raw)
    except DecodeError:
        log.warning("ignored a packet the bridge could not read (%d bytes)", len(raw))
        return None
    sender = int(getattr(packet, "from"))
    packet_id = int(packet.id)
    if not packet.HasField("decoded"):  # encrypted with a key the hub's radio does not have
        return OtherPacket(sender, packet_id, "ENCRYPTED", heard_at) if sender and packet_id else None
    data = packet.decoded
    port = _enum_name(portnums_pb2.PortNum, data.portnum) or str(data.portnum)
    if port == "ROUTING_APP":
        if not data.request_id:
            return None
        try:
            routing = mesh_pb2.Routing.FromString(data.payload)
        except DecodeError:
            return None
        reason = _enum_name(mesh_pb2.Routing.Error, routing.error_reason) or str(routing.error_reason)
        return Ack(int(data.request_id), sender, reason, heard_at)
    if not sender or not packet_id:
        return None
    proof = Proof(to=int(packet.to), channel=int(packet.channel), pki=bool(packet.pki_encrypted),
                  public_key=bytes(packet.public_key) or None, via_mqtt=bool(packet.via_mqtt))
    text = bytes(data.payload).decode("utf-8", errors="replace")
    if port == "TEXT_MESSAGE_APP":
        return TextPacket(sender, packet_id, text, heard_at, proof)
    if port == "NODEINFO_APP":
        try:
            user = mesh_pb2.User.FromString(data.payload)
        except DecodeError:
            return OtherPacket(sender, packet_id, port, heard_at)
        return NodeInfoPacket(sender, packet_id, bytes(user.public_key) or None, heard_at, proof)
    if port == "POSITION_APP":
        try:
            position = mesh_pb2.Position.FromString(data.payload)
        except DecodeError:
            return OtherPacket(sender, packet_id, port, heard_at)
        if not (position.HasField("latitude_i") and position.HasField("longitude_i")):
            return OtherPacket(sender, packet_id, port, heard_at)
        return PositionPacket(sender, packet_id, position.latitude_i * 1e-7, position.longitude_i * 1e-7, heard_at,
                              proof)
    if port in ("ALERT_APP", "DETECTION_SENSOR_APP"):
        return PanicPacket(sender, packet_id, "alert" if port == "ALERT_APP" else "detection", text, heard_at, proof)
    return OtherPacket(sender, packet_id, port, heard_at)
