"""The bridge's own types for what comes off the radio: no camelCase dicts past mesh.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

BROADCAST = 0xFFFFFFFF


@dataclass(frozen=True)
class RadioInfo:
    node_num: int
    firmware: str | None
    region: str | None
    modem_preset: str | None
    long_name: str | None
    reboot_count: int | None = None  # the firmware's count of its own boots
    public_key: bytes | None = None  # the radio's own X25519 key (what other benches pin for this hub)


@dataclass(frozen=True)
class Proof:
    """What the hub's radio says about where a packet came from, for radio_trust to judge.

    ``pki``: the radio decrypted it as a direct message with the sender's
    X25519 key, which it hands over as ``public_key``. Channel traffic has
    neither: anyone holding the channel key can write its ``from``.
    """

    to: int = BROADCAST
    channel: int = 0
    pki: bool = False
    public_key: bytes | None = None
    via_mqtt: bool = False


@dataclass(frozen=True)
class TextPacket:
    sender: int
    packet_id: int
    text: str
    heard_at: datetime
    proof: Proof = Proof()


@dataclass(frozen=True)
class PositionPacket:
    sender: int
    packet_id: int
    latitude: float
    longitude: float
    heard_at: datetime
    proof: Proof = Proof()


@dataclass(frozen=True)
class PanicPacket:
    """A hardware panic button (ALERT_APP) or a detection sensor went off."""

    sender: int
    packet_id: int
    kind: str  # "alert" or "detection"
    text: str
    heard_at: datetime
    proof: Proof = Proof()


@dataclass(frozen=True)
class NodeInfoPacket:
    """A node announced itself: its public key is offered to the hosts, never trusted by itself."""

    sender: int
    packet_id: int
    public_key: bytes | None
    heard_at: datetime
    proof: Proof = Proof()


@dataclass(frozen=True)
class OtherPacket:
    """Anything else heard (telemetry, binary, undecodable): counted as a sign of life, never obeyed."""

    sender: int
    packet_id: int
    port: str
    heard_at: datetime


@dataclass(frozen=True)
class Ack:
    """A routing answer about a packet we sent: reason "NONE" is an ACK, anything else a NAK."""

    packet_id: int
    from_node: int
    reason: str
    heard_at: datetime

    @property
    def is_ack(self) -> bool:
        return self.reason == "NONE"


@dataclass(frozen=True)
class LinkLost:
    reason: str


Inbound = TextPacket | PositionPacket | PanicPacket | NodeInfoPacket | OtherPacket | Ack | LinkLost
