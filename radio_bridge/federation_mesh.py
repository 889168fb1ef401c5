"""When the internet is gone too: urgent federation alerts between neighbour benches' hub radios (issue 17).

Imported by the bridge only once this bench has joined a federation (a bench
that never federates pays nothing for it). It does three things, all on the
bridge's one thread, each in the bridge's own transactions:

- **Pins** each trusted member's hub radio: its node number and Meshtastic
  public key come from the member's hello, signed with the bench key a host
  of ours confirmed (server/domain/federation.py), so they are trusted as far
  as that confirmation goes and no further. The key goes into our radio's
  node list (``add_contact``), and every direct message to that node goes
  out PKI-encrypted to that key only: the firmware refuses (``PKI_FAILED``)
  rather than encrypt to a key someone else announced for the node number.
- **Relays out**: an urgent federation message (an SOS or arrest in an area
  a neighbour declared) that the broker has not taken ``after`` seconds after
  it was made (no internet, broker down, or no link at all) goes as one
  compact PKI direct message to each recipient's hub radio, through the
  radio outbox: urgent, behind every alert's own first notice, with
  ACK/retry like any message, and counted, as all ``fed:`` traffic is, against
  a share of the urgent reserve (radio_bridge/sender.py). A message the
  broker took first never goes by radio; one still waiting for the air when
  the broker takes it is withdrawn.
- **Relays in**: a direct message in the relay format is acted on only if the
  radio decrypted it with the pinned key of a trusted member's hub, sent to
  our hub node. Then the core's ``receive_relayed`` acts on it, once per
  message id whichever way it comes (the signed copy arriving later over
  MQTT is a duplicate), and the core puts it on the board "from bench X" and
  announces it on our channel. Anything else in the relay format (channel
  traffic under a hub's node id, a stranger's own key, a key that is not the
  pinned one) is ignored and counted with the federation's drops.

The mesh copy carries no Ed25519 signature. A PKI direct message is already
authenticated end to end (AES-CCM under the X25519 secret of our hub key and
the sender's pinned hub key: only the holder of that radio's private key can
make one our radio decrypts with it), and the signature with what it signs
(``to`` list, signing time) would not fit one packet with room for a place.
The cost: a relayed alert proves itself to this bench only, so it is acted
on here and never passed on; and whoever takes a bench's hub radio (its
private key can be read over its USB port) can relay as that bench until our
hosts revoke the member, which stops its relays at once.

Wire format, one text line (TEXT_MESSAGE_APP, so a host looking at the hub
radio in the Meshtastic app sees what it is), fields separated by ``|``:
``SBF1|<id>|<signed at>|<code>|<kind><state><verified>|<n>|<raised at>|<area>``
with times as unix seconds, kind ``s``/``a`` (SOS, arrest), state ``o``/``r``,
verified ``v``/``u``. A typical one is about 60 bytes (1.1 s on LONG_FAST).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radio_bridge.packets import TextPacket
from server.domain import federation, outbox, radio
from server.domain.radio_text import utf8_len

log = logging.getLogger("radio_bridge.federation_mesh")

MARK = "SBF1"
SEP = "|"
RELAY_KEY = f"{outbox.FEDERATION_KEY_PREFIX}relay:"
# Behind an alert's first notice and its repeat (turns 0 and 1): this bench's own stewards come first.
RELAY_TURN = 2
RELAY_LIMIT = 180  # bytes of text: a PKI direct message holds about 220, kept well inside
UNPINNED = "unpinned-radio"
PIN_EVERY_S = 60.0  # the member list is read again this often (a member trusted, revoked, a new hub)
KINDS = {"s": federation.ALERT_SOS, "a": federation.ALERT_ARREST}
STATES = {"o": "open", "r": "resolved"}
_EPOCH = datetime(1970, 1, 1)


# -- the packet ------------------------------------------------------------------------------


def _seconds(at: datetime) -> int:
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return int((at - _EPOCH).total_seconds())


def _iso(seconds: str) -> str:
    return f"{_EPOCH + timedelta(seconds=int(seconds)):%Y-%m-%dT%H:%M:%SZ}"


def _unix(iso: str) -> int:
    return _seconds(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def pack(envelope: dict[str, Any]) -> str:
    """The relay text for a signed alert envelope (its signature and ``to`` stay behind)."""
    body = envelope["body"]
    kind = {v: k for k, v in KINDS.items()}[body["kind"]]
    state = {v: k for k, v in STATES.items()}[body.get("state", "open")]
    flags = f"{kind}{state}{'v' if body.get('verified', True) else 'u'}"
    area = str(body["area"]).replace(SEP, "/")
    head = SEP.join([MARK, envelope["id"], str(_unix(envelope["at"])), body["code"], flags,
                     str(int(body.get("n", 1))), str(_unix(body["at"]))])
    while utf8_len(f"{head}{SEP}{area}") > RELAY_LIMIT:
        area = area[:-1]  # an area is at most 40 characters: only a very long one is ever cut
    return f"{head}{SEP}{area}"


def unpack(text: str, *, federation_name: str, sender: str, to: str) -> dict[str, Any] | None:
    """The envelope a relay text stands for (without a signature), or None if it is not one."""
    parts = text.split(SEP)
    if len(parts) != 8 or parts[0] != MARK:
        return None
    _mark, message_id, signed, code, flags, count, raised, area = parts
    if len(flags) != 3 or flags[0] not in KINDS or flags[1] not in STATES or flags[2] not in "vu":
        return None
    try:
        signed_at, raised_at, n = _iso(signed), _iso(raised), int(count)
    except (ValueError, OverflowError):
        return None
    return {"v": federation.VERSION, "fed": federation_name, "id": message_id, "from": sender, "to": [to],
            "kind": federation.ALERT, "at": signed_at,
            "body": {"code": code, "kind": KINDS[flags[0]], "area": area, "at": raised_at, "n": n,
                     "verified": flags[2] == "v", "state": STATES[flags[1]]}}


def is_relay(text: str) -> bool:
    return text.startswith(MARK + SEP)


# -- the bridge's side --------------------------------------------------------------------------


@dataclass
class Hub:
    member: str
    node: int
    key: bytes


@dataclass
class FederationMesh:
    """One per bridge process, made once this bench has joined a federation."""

    after: timedelta = timedelta(seconds=30)
    key: Any = None  # this bench's signing key: alerts are signed into the federation's outbox here too
    pin_every: float = PIN_EVERY_S
    hubs: dict[int, Hub] = field(default_factory=dict)
    _contacts: set[tuple[int, bytes]] = field(default_factory=set)  # put into the radio since it connected
    _next_pin: float = 0.0

    @classmethod
    def for_instance(cls, instance: Path | None, after: timedelta) -> FederationMesh:
        return cls(after=after, key=federation.load_signing_key(instance) if instance is not None else None)

    # Pins ------------------------------------------------------------------------------------------

    def radio_connected(self) -> None:
        """A (re)connected radio may have lost its contacts (a reboot, another radio): put them in again."""
        self._contacts.clear()
        self._next_pin = 0.0

    def pin(self, session: Session, link: Any, sender: Any, *, own_node: int | None,
            own_key: bytes | None, now: datetime) -> None:
        """Read the trusted members' hubs; put new ones into the radio; pin their keys for sending."""
        if time.monotonic() < self._next_pin:
            return
        self._next_pin = time.monotonic() + self.pin_every
        if own_node and own_key and hasattr(federation, "set_own_hub"):
            federation.set_own_hub(session, now, own_node, base64.b64encode(own_key).decode("ascii"))
        self.read_hubs(session, own_node)
        sender.pinned_keys = {hub.node: hub.key for hub in self.hubs.values()}
        for hub in self.hubs.values():
            if (hub.node, hub.key) not in self._contacts:
                link.add_contact(hub.node, hub.key, f"Safe Bench {hub.member}", hub.member[:4])
                self._contacts.add((hub.node, hub.key))

    def read_hubs(self, session: Session, own_node: int | None) -> None:
        """The trusted members' hub radios and their keys, as the database has them now."""
        hubs = {}
        for member in federation.members(session):
            key = _key(getattr(member, "hub_key", None))
            if member.is_trusted and member.hub_node and key is not None and member.hub_node != own_node:
                hubs[int(member.hub_node)] = Hub(member.name, int(member.hub_node), key)
        self.hubs = hubs

    # Relays out -----------------------------------------------------------------------------------

    def plan(self, session: Session, now: datetime) -> int:
        """Queue relays for urgent messages the broker has not taken; withdraw those it took. Returns how many queued."""
        bench = federation.this_bench(session)
        if bench is None:
            return 0
        if self.key is not None:
            # Without the internet the MQTT link may not be scanning for new alerts: the relay must not wait for it.
            federation.queue_new_alerts(session, now, self.key)
        self._withdraw_sent(session)
        wait = self.after if bench.broker_url else timedelta(0)
        queued = 0
        for item in federation.pending(session, now, via="mesh"):
            if item.sent_at is not None or item.kind != federation.ALERT:
                continue  # the broker has it: the neighbours get it from there
            if now - item.created_at < wait:
                continue
            hubs = self._recipients(item.to)
            if hubs:
                text = pack(json.loads(item.payload))
                for hub in hubs:
                    outbox.queue_message(session, now, text, destination=hub.node, priority=outbox.URGENT,
                                         turn=RELAY_TURN, ttl=federation.ALERT_AIR_FRESH,
                                         dedupe_key=f"{RELAY_KEY}{item.message_id}:{hub.node}")
                    queued += 1
            # Marked even with no hub to send to: the radio is not asked again every turn.
            federation.mark_sent(session, now, item, via="mesh")
        return queued

    def _recipients(self, names: list[str]) -> list[Hub]:
        return [hub for hub in self.hubs.values() if not names or hub.member in names]

    def _withdraw_sent(self, session: Session) -> None:
        """A relay still waiting for the air whose message the broker has since taken does not go."""
        waiting = list(session.scalars(select(outbox.OutboxMessage).where(
            outbox.OutboxMessage.state == outbox.QUEUED,
            outbox.OutboxMessage.dedupe_key.startswith(RELAY_KEY, autoescape=True))))
        if not waiting:
            return
        ids = {message.dedupe_key[len(RELAY_KEY):].split(":")[0]: message for message in waiting}
        sent = set(session.scalars(select(federation.FederationOutbox.message_id).where(
            federation.FederationOutbox.message_id.in_(list(ids)),
            federation.FederationOutbox.sent_at.is_not(None))))
        for message in waiting:
            if message.dedupe_key[len(RELAY_KEY):].split(":")[0] in sent:
                message.state = outbox.EXPIRED
                message.last_error = "went by the broker first"
        session.flush()

    # Relays in ------------------------------------------------------------------------------------

    def handle_text(self, session: Session, now: datetime, packet: TextPacket, own_node: int | None) -> str:
        """A relay heard by our radio: acted on only from a pinned hub, by a PKI DM to our hub."""
        if not radio.first_time_heard(session, now, packet.sender, packet.packet_id):
            return "duplicate"
        hub = self.hubs.get(packet.sender)
        if hub is None:
            # Heard before this bridge's first pin, or from a hub trusted since the last: the database decides
            # whom to believe, not whether the relay came a second too early (only a pinned key is trusted).
            self.read_hubs(session, own_node)
            hub = self.hubs.get(packet.sender)
        proof = packet.proof
        if hub is None or not proof.pki or proof.to != own_node or proof.via_mqtt or proof.public_key != hub.key:
            federation.count_drop(session, now, UNPINNED)
            # Not which node: the radio page lists unknown senders; the process log is kept longer.
            log.warning("ignored a federation relay that was not a direct message from a pinned member hub")
            return "relay ignored: not from a pinned hub"
        bench = federation.this_bench(session)
        envelope = unpack(packet.text, federation_name=bench.federation, sender=hub.member, to=bench.name) \
            if bench is not None else None
        if envelope is None:
            federation.count_drop(session, now, federation.MALFORMED)
            return "relay ignored: malformed"
        result = federation.receive_relayed(session, now, hub.member, envelope, via="mesh")
        return f"relay from bench {hub.member}: {result.reason}"


def _key(value: str | bytes | None) -> bytes | None:
    if not value:
        return None
    try:
        key = value if isinstance(value, bytes) else base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return key if len(key) == 32 else None

