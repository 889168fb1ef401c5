"""The one boundary to the ``meshtastic`` library and its pubsub events.

Everything that touches the library lives here: opening and closing the
radio, turning its camelCase packet dicts into the bridge's own types, and
sending. The protobuf message classes are re-exported for the simulated
radio, which must speak the same wire protocol.

Facts this module is built on (see shared/RADIO_FACTS.md): pypubsub keeps
weak references, so only bound methods of a kept object are subscribed;
callbacks run on the library's reader thread, so they only convert and
enqueue; the serial interface never reconnects by itself.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

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
    OtherPacket,
    PanicPacket,
    PositionPacket,
    RadioInfo,
    TextPacket,
)
from server.clock import utcnow

log = logging.getLogger("radio_bridge.mesh")

MAX_PAYLOAD = mesh_pb2.Constants.DATA_PAYLOAD_LEN


class RadioUnavailable(Exception):
    """The radio could not be opened or stopped answering."""


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
    """Notes when the radio last said anything at all: a hung radio sends no event, only silence.

    Also bounds the library's wait for the handshake, which is fixed at 30 s
    inside ``connect()`` whatever ``timeout`` says.
    """

    last_heard: float = 0.0

    def __init__(self, *args: Any, connect_wait: float = 30.0, **kwargs: Any) -> None:
        self._connect_wait = connect_wait
        super().__init__(*args, **kwargs)

    def _waitConnected(self, timeout: float = 30.0) -> None:  # noqa: N802  (the library's name)
        super()._waitConnected(min(timeout, self._connect_wait))  # type: ignore[misc]

    def _handleFromRadio(self, fromRadioBytes: bytes) -> None:  # noqa: N802, N803  (the library's names)
        self.last_heard = time.monotonic()
        super()._handleFromRadio(fromRadioBytes)  # type: ignore[misc]


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

    def __init__(self, events: queue.Queue[Inbound], connect_timeout: float = 30) -> None:
        self.events = events
        self.connect_timeout = connect_timeout
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
                    connect_wait=self.connect_timeout,
                )
            else:
                path = device_path or (find_serial_radio() if spec.target == "auto" else spec.target)
                if not os.path.exists(path):
                    raise RadioUnavailable(f"No radio at {path}: is it plugged in?")
                self._device_path = path
                iface = _SerialRadio(devPath=path, timeout=max(1, int(self.connect_timeout)),
                                     connect_wait=self.connect_timeout)
        except RadioUnavailable:
            raise
        except BaseException as error:  # the library raises anything from OSError to SystemExit
            if isinstance(error, KeyboardInterrupt):
                raise
            raise RadioUnavailable(f"Could not open the radio {spec}: {error!r}") from None
        self._iface = iface
        self._opened_at = time.monotonic()
        pub.subscribe(self._on_receive, "meshtastic.receive")
        pub.subscribe(self._on_lost, "meshtastic.connection.lost")
        return self.info()

    def close(self) -> None:
        iface, self._iface = self._iface, None
        if iface is None:
            return
        for listener, topic in ((self._on_receive, "meshtastic.receive"), (self._on_lost, "meshtastic.connection.lost")):
            try:
                pub.unsubscribe(listener, topic)
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
        with self._send_lock:
            try:
                iface.sendHeartbeat()
            except Exception as error:
                raise RadioUnavailable(f"The radio did not take a heartbeat: {error!r}") from None

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
        )

    def _require(self) -> mesh_interface.MeshInterface:
        if self._iface is None:
            raise RadioUnavailable("The radio is not connected.")
        return self._iface

    # -- sending --------------------------------------------------------------

    def send_text(self, text: str, destination: int, packet_id: int, channel: int = 0) -> None:
        """Send with our own packet id (so a repeat after a crash is dropped by the mesh as a copy)."""
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
        with self._send_lock:
            try:
                # _sendPacket keeps an id that is already set (sendData would
                # always make a new one); meshtastic is pinned below 2.8 for this.
                iface._sendPacket(packet, destination, wantAck=True)
            except Exception as error:
                raise RadioUnavailable(f"Sending failed: {error!r}") from None

    # -- events from the library's reader thread --------------------------------

    # The listeners' signatures match what the library sends: pypubsub fixes a
    # topic's arguments from its first subscriber, and a looser one here
    # would make other listeners of the same topic fail.
    def _on_lost(self, interface: Any) -> None:
        if interface is not self._iface:
            return  # an interface we already closed
        self.events.put(LinkLost("the radio connection was lost"))

    def _on_receive(self, packet: dict, interface: Any) -> None:
        if interface is not self._iface:
            return
        try:
            event = packet_to_event(packet)
        except Exception:  # noqa: BLE001  (a malformed packet must never stall the reader thread)
            log.warning("ignored a packet the bridge could not read", exc_info=True)
            return
        if event is not None:
            self.events.put(event)


def packet_to_event(packet: dict) -> Inbound | None:
    """Turn the library's packet dict into one of the bridge's types."""
    sender = int(packet.get("from") or 0)
    packet_id = int(packet.get("id") or 0)
    decoded = packet.get("decoded") or {}
    port = decoded.get("portnum") or "ENCRYPTED"
    heard_at = utcnow()
    if port == "ROUTING_APP":
        request_id = int(decoded.get("requestId") or 0)
        if not request_id:
            return None
        reason = (decoded.get("routing") or {}).get("errorReason", "NONE")
        return Ack(request_id, sender, str(reason), heard_at)
    if not sender or not packet_id:
        return None
    if port == "TEXT_MESSAGE_APP":
        text = decoded.get("text")
        if text is None:  # the library could not decode the bytes as UTF-8
            text = bytes(decoded.get("payload") or b"").decode("utf-8", errors="replace")
        return TextPacket(sender, packet_id, int(packet.get("to") or 0), int(packet.get("channel") or 0),
                          text, heard_at)
    if port == "POSITION_APP":
        position = decoded.get("position") or {}
        lat, lon = position.get("latitude"), position.get("longitude")
        if lat is None or lon is None:
            return OtherPacket(sender, packet_id, port, heard_at)
        return PositionPacket(sender, packet_id, float(lat), float(lon), heard_at)
    if port in ("ALERT_APP", "DETECTION_SENSOR_APP"):
        raw = decoded.get("text") or bytes(decoded.get("payload") or b"").decode("utf-8", errors="replace")
        return PanicPacket(sender, packet_id, "alert" if port == "ALERT_APP" else "detection", raw, heard_at)
    return OtherPacket(sender, packet_id, str(port), heard_at)
