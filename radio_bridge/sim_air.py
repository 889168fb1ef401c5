"""One simulated stretch of air shared by several simulated radios (issue 17: benches in LoRa range).

A ``SimulatedRadio`` joined to an ``Air`` hands each packet its host sends to
the air, which plays what the firmware and the other radios would do with it:

- a direct message to another radio on the air takes the PKI path, as
  firmware 2.5+ does: the sending radio needs a key for the destination in
  its node list (``PKI_SEND_FAIL_PUBLIC_KEY`` without one) and, when the
  host named the key it expects on the packet, refuses a different one
  (``PKI_FAILED``: the firmware's check in ``perhapsEncode``). The
  destination radio can read it only if the key it was sent to is its own
  and it holds the sender's real key (the X25519 secret needs both); it
  then hands it to its host with ``pki_encrypted`` and the sender's key,
  and the sender hears a real ACK from the destination;
- a broadcast reaches the other radios' hosts only if their primary
  channel has the same key (a bench's patrol channel is its own).

Every radio on the air hears every other (one neighbourhood, in range).
Keys a radio holds for others come from its node list: the simulated
stewards it was made with, NodeInfo it heard, and ``add_contact`` admin
messages from its host (see ``DeviceState``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from radio_bridge.sim_device import BROADCAST_NUM

if TYPE_CHECKING:
    from radio_bridge.mesh import mesh_pb2
    from radio_bridge.simulator import SimulatedRadio

logger = logging.getLogger(__name__)

Answer = tuple[str, int | None, str]  # (outcome, who answers, routing error), as SimulatedRadio._answer_for


class Air:
    """Radios in range of each other; see the module docstring."""

    def __init__(self) -> None:
        self._radios: dict[int, SimulatedRadio] = {}
        self._lock = threading.Lock()
        self.carried: list[tuple[int, int, int, str]] = []  # (from, to, packet id, outcome), for tests

    def join(self, *radios: SimulatedRadio) -> Air:
        with self._lock:
            for radio in radios:
                self._radios[radio.node_num] = radio
                radio.air = self
        return self

    def leave(self, radio: SimulatedRadio) -> None:
        with self._lock:
            self._radios.pop(radio.node_num, None)
            radio.air = None

    def carry(self, sender: SimulatedRadio, mp: mesh_pb2.MeshPacket) -> Answer | None:
        """Put one packet from ``sender``'s host on the air; the answer for its host, or None for the usual one."""
        with self._lock:
            others = {num: radio for num, radio in self._radios.items() if radio is not sender}
        if mp.to == BROADCAST_NUM:
            own_psk = sender.device.channels[0].settings.psk
            for radio in others.values():
                if radio.device.channels[0].settings.psk == own_psk:
                    radio.deliver_raw(sender.node_num, mp.decoded.portnum, bytes(mp.decoded.payload),
                                      packet_id=mp.id, hop_start=mp.hop_limit or 3)
            return None  # the sending radio's own answer (an implicit ACK)
        destination = others.get(mp.to)
        if destination is None:
            return None  # a steward's handheld, or nobody: the sending radio's own answer
        answer = self._direct(sender, destination, mp)
        with self._lock:
            self.carried.append((sender.node_num, mp.to, mp.id, answer[0]))
        return answer

    @staticmethod
    def _direct(sender: SimulatedRadio, destination: SimulatedRadio, mp: mesh_pb2.MeshPacket) -> Answer:
        known = sender.device.nodes.get(mp.to)
        key = known.public_key if known is not None else b""
        if len(key) != 32:
            return "nak:PKI_SEND_FAIL_PUBLIC_KEY", sender.node_num, "PKI_SEND_FAIL_PUBLIC_KEY"
        asked = bytes(mp.public_key)
        if mp.pki_encrypted and asked.strip(b"\0") and asked != key:
            return "nak:PKI_FAILED", sender.node_num, "PKI_FAILED"
        # Encrypted to ``key``: only the radio whose own key it is can read it, and only
        # with the sender's real key in its node list.
        theirs = destination.device.nodes.get(sender.node_num)
        if key != destination.device.owner.public_key or theirs is None \
                or theirs.public_key != sender.device.owner.public_key:
            logger.info("simulated air: %08x could not decrypt a direct message from %08x", mp.to, sender.node_num)
            return "nak:MAX_RETRANSMIT", sender.node_num, "MAX_RETRANSMIT"
        destination.deliver_raw(sender.node_num, mp.decoded.portnum, bytes(mp.decoded.payload), to=mp.to,
                                packet_id=mp.id, want_ack=mp.want_ack, pki=True,
                                public_key=sender.device.owner.public_key, hop_start=mp.hop_limit or 3)
        return ("ack", mp.to, "NONE") if mp.want_ack else ("sent", None, "NONE")
