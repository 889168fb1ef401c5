"""Who may command the hub over the air: pinned radio keys, verified senders, and the record of refusals.

The patrol channel's key is on every pocket card, so anyone may hold it and
write any ``from`` on channel traffic. Only one thing on the air proves who
sent a packet: a Meshtastic PKI direct message to the hub's node, which the
hub's radio could decrypt only with the sender's X25519 key and hands over
with ``pki_encrypted`` set and that ``public_key``. A packet is **verified**
when it is such a message and the key is the one a host pinned for the
member whose node sent it.

Keys are pinned by a host: given with ``safebench steward add --key``, or
the first key heard in a node's NodeInfo is offered on the stewards page
with a short fingerprint the steward reads off their own app. A different
key for a pinned node is never trusted by itself: it is shown to the hosts,
who confirm or refuse it.

Every refusal and every key decision is a row of ``RadioTrustEvent``, which
the hosts read on the stewards and radio pages: a stranger's attempt to
clear an alert as a captain is seen, not only stopped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, delete, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship

from server.domain import mandates, people
from server.domain import power_record
from server.domain.base import Base
from server.domain.errors import Conflict, Invalid
from server.domain.people import Member, format_node_id
from server.i18n import N_, Labels
from server.i18n import gettext as _

KEY_BYTES = 32  # X25519

# What the record holds (``kind``).
REFUSED = "refused"  # a command that needs a verified sender came without proof
UNVERIFIED_ALARM = "unverified-alarm"  # an SOS, panic or ARREST acted on without proof
FOREIGN = "foreign"  # via MQTT, another channel, or addressed to another node: never obeyed
KEY_HEARD = "key-heard"  # a node announced a key that is not pinned
KEY_PINNED = "key-pinned"
KEY_REFUSED = "key-refused"
NODE_CHANGED = "node-changed"
KIND_LABELS = Labels({
    REFUSED: N_("Refused: no proof it came from the steward's radio"),
    UNVERIFIED_ALARM: N_("Acted on, unverified"),
    FOREIGN: N_("Ignored: not patrol-channel traffic for the hub"),
    KEY_HEARD: N_("Radio key heard, waiting for a host"),
    KEY_PINNED: N_("Radio key pinned"),
    KEY_REFUSED: N_("Radio key refused"),
    NODE_CHANGED: N_("Node id changed"),
})
MAX_DETAIL = 200


class RadioTrustEvent(Base):
    """One refusal, unverified alarm or key decision, for the hosts to read."""

    __tablename__ = "radio_trust_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(24))
    node_num: Mapped[int | None] = mapped_column(BigInteger)
    # The member the packet claimed to be from, or whose key or node changed.
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    # The host who made a key or node decision.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    # What was tried, in the hub's words ("CLR A7"), never what a sender typed beyond a code.
    detail: Mapped[str] = mapped_column(String(MAX_DETAIL))

    member: Mapped[Member | None] = relationship(foreign_keys=[member_id])
    actor: Mapped[Member | None] = relationship(foreign_keys=[actor_id])

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def node_id(self) -> str | None:
        return format_node_id(self.node_num) if self.node_num is not None else None


# -- keys -------------------------------------------------------------------------


def parse_key(raw: str | bytes | None) -> str:
    """A radio public key as the hub keeps it (standard base64 of 32 bytes); Invalid otherwise.

    Accepts what the Meshtastic apps show (base64, with or without padding)
    and raw bytes as the radio sends them.
    """
    if isinstance(raw, bytes | bytearray):
        key = bytes(raw)
    else:
        text = "".join((raw or "").split())
        if text.startswith("base64:"):
            text = text[len("base64:"):]
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None,
                                   validate=True)
        except (binascii.Error, ValueError):
            key = b""
    if len(key) != KEY_BYTES or key == bytes(KEY_BYTES):
        raise Invalid(_("A radio key is 32 bytes in base64, as the Meshtastic app shows it (Settings, Security, "
                        "Public key)."), field="key")
    return base64.b64encode(key).decode("ascii")


def fingerprint(key: str | None) -> str:
    """Eight characters a steward can read off their own app and a host compare: the key's first bytes.

    The Meshtastic apps show the public key in base64, so the fingerprint is
    simply its start, grouped for reading aloud ("Ab3d Ef9h").
    """
    if not key:
        return ""
    return f"{key[:4]} {key[4:8]}"


def key_digest(key: str) -> str:
    """A short hash for logs and events: never the key itself in a log line (it is not secret, but long)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()[:8]


def _record_power(session: Session, now: datetime, by: Member | None, action: str, subject: str, reason: str) -> None:
    """Key and node decisions are a host's power (or the Pi's terminal): in the record, by handle, never a key or node."""
    power_record.record(session, now, actor=by, role=power_record.acting_role(session, now, by, (people.HOST,)),
                        action=action, subject=subject, reason=reason)


def pin_key(session: Session, now: datetime, member: Member, key: str | bytes, *, by: Member | None,
            how: str = "a key typed in for the steward") -> Member:
    """Pin ``key`` as ``member``'s radio key: from now on their verified DMs carry it."""
    key = parse_key(key)
    previous = member.radio_key
    member.radio_key = key
    member.radio_key_pinned_at = now
    if member.radio_key_heard == key:
        member.radio_key_heard = None
        member.radio_key_heard_at = None
    detail = f"key {fingerprint(key)} pinned" + (f", replacing {fingerprint(previous)}" if previous and previous != key
                                                 else "")
    record(session, now, KEY_PINNED, node_num=member.node_num, member=member, actor=by, detail=detail)
    if previous != key:
        _record_power(session, now, by, "key-pinned", f"{member.handle}'s radio key",
                      how + ("; it replaces the key pinned before" if previous else ""))
    session.flush()
    return member


def confirm_heard_key(session: Session, now: datetime, member: Member, *, by: Member) -> Member:
    """A host read the heard key's fingerprint with the steward and confirms it."""
    if not member.radio_key_heard:
        raise Invalid(_("No radio key is waiting for %(handle)s.", handle=member.handle))
    return pin_key(session, now, member, member.radio_key_heard, by=by,
                   how="the key the radio announced, confirmed with the steward")


def refuse_heard_key(session: Session, now: datetime, member: Member, *, by: Member) -> Member:
    """A host refuses a heard key (not the steward's radio); the pin, if any, stays."""
    if not member.radio_key_heard:
        raise Invalid(_("No radio key is waiting for %(handle)s.", handle=member.handle))
    record(session, now, KEY_REFUSED, node_num=member.node_num, member=member, actor=by,
           detail=f"key {fingerprint(member.radio_key_heard)} refused")
    _record_power(session, now, by, "key-refused", f"{member.handle}'s radio key",
                  "a key announced under the steward's node, refused as not their radio's")
    member.radio_key_heard = None
    member.radio_key_heard_at = None
    session.flush()
    return member


def change_node(session: Session, now: datetime, member: Member, node_num: int | None, *,
                by: Member | None) -> Member:
    """A host gives ``member`` another radio (or none): recorded, and the old radio's key no longer counts."""
    old = member.node_num
    if old == node_num:
        return member
    people.set_node(session, member, node_num)  # drops the pin with the old radio
    before = format_node_id(old) if old is not None else "none"
    after = format_node_id(node_num) if node_num is not None else "none"
    record(session, now, NODE_CHANGED, node_num=node_num, member=member, actor=by,
           detail=f"node {before} -> {after}; the radio key must be pinned again")
    if node_num is None:
        why = "the radio taken off the steward: no radio now"
    elif old is None:
        why = "a first radio given to the member"
    else:
        why = "another radio given to the steward: its key must be pinned again"
    _record_power(session, now, by, "node-changed", f"{member.handle}'s radio", why)
    return member


def register_radio(session: Session, now: datetime, handle: str, node_id: str | int, decision: people.Decision,
                   term_days: int, cap_days: int, *, key: str | None = None, by: Member | None = None,
                   in_force: str | None = None, show_handle: bool = False) -> Member:
    """Register a steward and their handheld (``safebench steward add``, the stewards page), optionally pinning its key.

    Giving an existing member another node id is the recorded host action
    ``change_node``: the old radio's pin does not follow. The steward role,
    if they lack one, waits for a countersign (``mandates.register_steward``).

    ``show_handle``: the new steward, standing there, asked to show their
    handle on the public pages. Taken only at a member's first registration:
    later it is their own choice on their dashboard, never a host's.
    """

    node_num = people.parse_node_id(node_id)
    key = parse_key(key) if key else None  # refuse a bad key before anything changes
    member = people.find_member(session, handle)
    if show_handle and member is not None and member is not by and not member.show_handle:
        raise Conflict(_("%(handle)s is already a member: only they can choose to show their handle, logged in "
                         "on their dashboard.",
                         handle=member.handle), field="show_handle")
    if member is not None and member.node_num != node_num:
        people._ensure_node_free(session, node_num, keep=member)
        change_node(session, now, member, node_num, by=by)
    member = mandates.register_steward(session, now, handle, node_num, decision=decision, term_days=term_days,
                                       cap_days=cap_days, by=by, in_force=in_force)
    if key and key != member.radio_key:
        pin_key(session, now, member, key, by=by)
    if show_handle:
        member.show_handle = True  # their consent, given in person; recorded nowhere else
        session.flush()
    return member


def note_heard_key(session: Session, now: datetime, member: Member, key: bytes | str) -> bool:
    """A node announced ``key`` (its NodeInfo, or the radio's node list). True when hosts have something new to see.

    The pinned key heard again changes nothing. Any other key waits for a
    host, the first one as much as a changed one: whoever holds the channel
    key can announce a NodeInfo under any node number.
    """
    try:
        key = parse_key(key)
    except Invalid:
        return False
    if key == member.radio_key or key == member.radio_key_heard:
        return False
    member.radio_key_heard = key
    member.radio_key_heard_at = now
    what = "a different key" if member.radio_key else "a first key"
    record(session, now, KEY_HEARD, node_num=member.node_num, member=member,
           detail=f"{what} {fingerprint(key)} announced for this node")
    session.flush()
    return True


def is_verified(member: Member, *, pki: bool, public_key: bytes | None, to_hub: bool) -> bool:
    """Proof the packet came from ``member``'s own radio: a PKI DM to the hub with their pinned key."""
    if not (pki and to_hub and public_key and member.radio_key):
        return False
    try:
        return parse_key(public_key) == member.radio_key
    except Invalid:
        return False


# -- the record ------------------------------------------------------------------------


def record(session: Session, now: datetime, kind: str, *, node_num: int | None = None, member: Member | None = None,
           actor: Member | None = None, detail: str) -> RadioTrustEvent:
    event = RadioTrustEvent(at=now, kind=kind, node_num=node_num, member=member, actor=actor,
                            detail=detail[:MAX_DETAIL])
    session.add(event)
    session.flush()
    return event


def recent_events(session: Session, limit: int = 30, kinds: tuple[str, ...] | None = None) -> list[RadioTrustEvent]:
    query = select(RadioTrustEvent).options(joinedload(RadioTrustEvent.member), joinedload(RadioTrustEvent.actor))
    if kinds:
        query = query.where(RadioTrustEvent.kind.in_(kinds))
    return list(session.scalars(query.order_by(RadioTrustEvent.id.desc()).limit(limit)))


def keys_waiting(session: Session) -> list[Member]:
    """Members with a heard key a host has not yet confirmed or refused."""
    return list(session.scalars(select(Member).where(Member.radio_key_heard.is_not(None)).order_by(Member.handle_key)))


def forget_events_before(session: Session, cutoff: datetime) -> int:
    """The record is for the hosts' and the assembly's review, not forever: it names handles and nodes."""
    return session.execute(delete(RadioTrustEvent).where(RadioTrustEvent.at < cutoff)).rowcount or 0


