"""Federation: benches that hear each other, none of them the boss (issue 17).

Each bench has its own Ed25519 signing key. Its private half is a file in
the instance folder (``federation.key``, 0600): the radio bridge signs
unattended, so it cannot wait for a host's login as a sealed vault would,
and the nightly backup copies the database only, so a backup never holds it.
Its public half, and a fingerprint hosts read aloud to each other, is in
the database.

Every message is an envelope signed over ``canonical_bytes`` (the
federation's name included, so a message cannot be replayed into another
federation). A message is acted on only when its sender is a member this
bench trusts, its signature checks, it is addressed to this federation,
its time is inside the replay window and its id was not seen before;
anything else is dropped and counted by reason (``DROP_REASONS``), never
raised: a compromised broker or a hostile node can drop or repeat traffic,
never forge it.

A bench is trusted when a host confirms its fingerprint (read aloud by a
host of that bench) and a *second* host countersigns: a trusted bench puts
SOS on this bench's air and board, and its stewards' radio keys into the
bridge's list of visitors, so one host talked into a wrong fingerprint must
not be enough. Revoking (a seized key) takes one host and is immediate.

What crosses is process, not people (``build_*``): an urgent alert near a
boundary (code, area, time, count; never notes, names or what anyone typed),
the "held / out" arrest counts, the lunar audit's totals, allies' public
vows, and the radio keys of stewards who chose to roam. Nothing sealed, no
mediation, complaints, log notes or node positions.

Flask-free: functions take a session and the time, and never commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain import outbox, patrol, people, power_record
from server.domain.base import Base
from server.domain.contact_in_text import find_contact
from server.domain.errors import Conflict, Invalid, NotFound
from server.domain.people import Member
from server.domain.text import clean_text
from server.i18n import N_, Labels, speaking
from server.i18n import gettext as _

# -- the wire ------------------------------------------------------------------------------------

VERSION = 1
SIGNING_CONTEXT = b"safebench-federation-v1\n"  # a signature made for anything else never checks here
MAX_MESSAGE_BYTES = 16 * 1024  # the whole envelope as received; bigger is dropped unread
MAX_NAME = 40  # a bench's or a federation's name
ID_BYTES = 8  # 16 hex digits: unique per sender for years of messages
# How old a message may be and still be acted on: an outbox that waited out a week-long outage still
# catches up, and every id inside the window is remembered (``RECEIVED_KEEP``), so a replay is caught.
REPLAY_WINDOW = timedelta(days=7)
FUTURE_SLACK = timedelta(minutes=10)  # two Pis' clocks disagree a little
RECEIVED_KEEP = REPLAY_WINDOW + timedelta(days=1)
OUTBOX_KEEP = REPLAY_WINDOW  # a message older than this would be dropped as too old anyway
# An alert older than this still lands on the board, marked late, but is not put on the air.
ALERT_AIR_FRESH = timedelta(minutes=30)
ALERTS_ON_AIR_PER_HOUR = 6  # per member: a trusted bench with a stolen key cannot flood this bench's air
ALERT_SCAN_WINDOW = timedelta(hours=2)  # how far back the scan for new alerts looks
COUNTS_FRESH = timedelta(hours=24)  # older counts leave the city figure
MAX_CANDIDATES = 20  # benches heard but not trusted: a hostile broker cannot fill the table
MAX_AREAS = 50
MAX_LIST = 60  # vows, roaming stewards

KEY_FILE = "federation.key"

# Kinds of message.
HELLO = "hello"  # a bench's key, its areas and its hub node: the only kind read from a bench not yet trusted
ALERT = "alert"
COUNTS = "counts"
AUDIT = "audit"
ALLIES = "allies"
ROAMERS = "roamers"
KINDS = Labels({
    HELLO: N_("bench announced itself"),
    ALERT: N_("urgent alert near a boundary"),
    COUNTS: N_("arrest counts"),
    AUDIT: N_("lunar audit totals"),
    ALLIES: N_("allies and shelters"),
    ROAMERS: N_("roaming stewards' radio keys"),
})
URGENT_KINDS = (ALERT,)

# Why a message was dropped (``federation_drop.reason``).
MALFORMED = "malformed"
TOO_BIG = "too-big"
WRONG_FEDERATION = "wrong-federation"
UNKNOWN_SENDER = "unknown-sender"
UNTRUSTED = "untrusted-sender"
REVOKED = "revoked-sender"
BAD_SIGNATURE = "bad-signature"
TOO_OLD = "too-old"
IN_FUTURE = "in-the-future"
DUPLICATE = "duplicate"
NOT_FOR_US = "not-for-us"
KEY_CHANGED = "key-changed"
TOO_MANY_CANDIDATES = "too-many-candidates"
NOT_JOINED = "not-joined"
UNPINNED_RADIO = "unpinned-radio"  # counted by the mesh fallback (radio_bridge/federation_mesh.py)
DROP_REASONS = Labels({
    MALFORMED: N_("malformed"),
    TOO_BIG: N_("too big"),
    WRONG_FEDERATION: N_("for another federation"),
    UNKNOWN_SENDER: N_("unknown sender"),
    UNTRUSTED: N_("sender not yet trusted"),
    REVOKED: N_("sender revoked"),
    BAD_SIGNATURE: N_("signature does not check"),
    TOO_OLD: N_("too old (outside the replay window)"),
    IN_FUTURE: N_("dated in the future"),
    DUPLICATE: N_("already received"),
    NOT_FOR_US: N_("addressed to other benches"),
    KEY_CHANGED: N_("a known bench's name with another key"),
    TOO_MANY_CANDIDATES: N_("too many benches waiting to be trusted"),
    NOT_JOINED: N_("this bench has joined no federation"),
    UNPINNED_RADIO: N_("relayed by a radio that is not a member's pinned hub"),
})
ACCEPTED = "accepted"
# Where a member stands with this bench (``FederationMember.state``).
STATE_LABELS = Labels({
    "heard": N_("heard, not trusted"),
    "confirmed": N_("confirmed by one host"),
    "trusted": N_("trusted"),
    "revoked": N_("revoked"),
})

# Alerts that cross, by kind on this bench.
ALERT_SOS = "sos"
ALERT_ARREST = "arrest"
ALERT_STATES = ("open", "resolved")

TRUST_ROLES = (people.HOST,)
# The fields a refusal names ("Please fill in the %(field)s."), marked for the catalogs.
FIELD_NAMES = (N_("federation name"), N_("bench name"), N_("broker address"), N_("username"))
# No spaces: a name is part of MQTT topics and of the broker's ACL lines (hub_setup's Mosquitto).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
_ID = re.compile(r"^[0-9a-f]{16}$")
_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


# -- models ----------------------------------------------------------------------------------------


class FederationBench(Base):
    """This bench in its federation: one row, once joined. The private key is a file, never a column."""

    __tablename__ = "federation_bench"

    id: Mapped[int] = mapped_column(primary_key=True)
    federation: Mapped[str] = mapped_column(String(MAX_NAME))
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    broker_url: Mapped[str] = mapped_column(String(300))
    broker_username: Mapped[str | None] = mapped_column(String(80))
    # A path the bridge reads the broker password from: the password itself is never in the database.
    broker_password_file: Mapped[str | None] = mapped_column(String(300))
    public_key: Mapped[str] = mapped_column(String(64))  # base64 of the 32-byte Ed25519 key
    joined_at: Mapped[datetime]
    # This bench's hub radio as the bridge last saw it (``set_own_hub``): what its hello tells the members, so
    # their mesh fallback can send it PKI direct messages.
    hub_node: Mapped[int | None] = mapped_column(BigInteger)
    hub_key: Mapped[str | None] = mapped_column(String(64))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


class FederationMember(Base):
    """Another bench: its key, its areas, and whether this bench trusts it."""

    __tablename__ = "federation_member"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME), unique=True)
    public_key: Mapped[str] = mapped_column(String(64))
    first_heard_at: Mapped[datetime]
    # The areas it declares as its own (from its hello), one per line: shown to hosts.
    areas: Mapped[str | None] = mapped_column(Text)
    # Which of THIS bench's areas border it, one per line, set by this bench's hosts: an SOS or arrest in
    # one of them is sent to it.
    neighbour_areas: Mapped[str | None] = mapped_column(Text)
    hub_node: Mapped[int | None] = mapped_column(BigInteger)  # its hub radio's node number (mesh fallback)
    # Its hub radio's X25519 public key (base64), only ever from its signed hello: a mesh relay is proven by it.
    hub_key: Mapped[str | None] = mapped_column(String(64))
    # A different key heard for this name (a rejoin after a seizure, or someone posing): waits for hosts.
    heard_key: Mapped[str | None] = mapped_column(String(64))
    heard_key_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    confirmed_by: Mapped[str | None] = mapped_column(String(24))
    trusted_at: Mapped[datetime | None] = mapped_column(index=True)
    trusted_by: Mapped[str | None] = mapped_column(String(24))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(24))
    revoke_reason: Mapped[str | None] = mapped_column(String(300))
    last_message_at: Mapped[datetime | None]
    last_kind: Mapped[str | None] = mapped_column(String(16))
    # The "held / out" figure it last sent (open arrest cases: taken, released) and when it made them.
    arrested: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    released: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    counts_at: Mapped[datetime | None]
    audit_cycle: Mapped[int | None] = mapped_column(Integer)
    audit_totals: Mapped[str | None] = mapped_column(Text)  # JSON: totals only
    allies_at: Mapped[datetime | None]
    roamers_at: Mapped[datetime | None]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def heard_fingerprint(self) -> str | None:
        return fingerprint(self.heard_key) if self.heard_key else None

    @property
    def is_trusted(self) -> bool:
        return self.trusted_at is not None and self.revoked_at is None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.trusted_at is not None:
            return "trusted"
        return "confirmed" if self.confirmed_at is not None else "heard"

    @property
    def state_label(self) -> str:
        return STATE_LABELS.get(self.state, self.state)

    @property
    def area_list(self) -> list[str]:
        return _lines(self.areas)

    @property
    def neighbour_area_list(self) -> list[str]:
        return _lines(self.neighbour_areas)

    @property
    def audit(self) -> dict[str, Any]:
        return json.loads(self.audit_totals) if self.audit_totals else {}


class FederationOutbox(Base):
    """A signed message waiting to go, or gone: a bench that lost its uplink catches up from here."""

    __tablename__ = "federation_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    recipients: Mapped[str] = mapped_column(Text)  # JSON list of bench names; [] for every member
    payload: Mapped[str] = mapped_column(Text)  # the signed envelope, as it goes on the wire
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # What it was made from ("alert:12:2026-12-06T21:40:00:open"), so a scan never queues it twice.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)  # handed to the broker (QoS 1 acknowledged)
    mesh_sent_at: Mapped[datetime | None]  # relayed over the mesh, for urgent alerts

    @property
    def to(self) -> list[str]:
        return json.loads(self.recipients)


class FederationReceived(Base):
    """A message acted on: its id, so acting on it twice does nothing, and what the page lists."""

    __tablename__ = "federation_received"
    __table_args__ = (UniqueConstraint("sender", "message_id", name="uq_federation_received_sender_message"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sender: Mapped[str] = mapped_column(String(MAX_NAME))
    message_id: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(index=True)
    via: Mapped[str] = mapped_column(String(8))


class FederationDrop(Base):
    """How many messages were dropped, by reason: what a host reads to see an attack or a broken bench."""

    __tablename__ = "federation_drop"

    reason: Mapped[str] = mapped_column(String(24), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime]


class FederationAlert(Base):
    """An SOS or arrest a neighbouring bench sent: on the board as "from bench X", on the air if fresh."""

    __tablename__ = "federation_alert"
    __table_args__ = (UniqueConstraint("bench", "code", "raised_at", name="uq_federation_alert_bench_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bench: Mapped[str] = mapped_column(String(MAX_NAME))
    code: Mapped[str] = mapped_column(String(8))  # the sending bench's code (A7, C3)
    kind: Mapped[str] = mapped_column(String(8))
    area: Mapped[str] = mapped_column(String(40))  # the sender's published area, never a typed place
    raised_at: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=1)
    verified: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(8), index=True)
    received_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    on_air: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def is_open(self) -> bool:
        return self.state == "open"


class FederationAlly(Base):
    """A public vow of an ally of another bench: its name, public place, vow, hours, area."""

    __tablename__ = "federation_ally"

    id: Mapped[int] = mapped_column(primary_key=True)
    bench: Mapped[str] = mapped_column(String(MAX_NAME), index=True)
    ally: Mapped[str] = mapped_column(String(80))
    place: Mapped[str] = mapped_column(String(120))
    vow: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(12))
    hours: Mapped[str] = mapped_column(String(120))
    crisis_only: Mapped[bool] = mapped_column(Boolean, default=False)
    area: Mapped[str | None] = mapped_column(String(40))


class FederationRoamer(Base):
    """A steward of another bench who chose to roam: their public handle, radio node and pinned key.

    The bridge may treat a PKI direct message from this node, with this key,
    as proven to come from that steward's radio; it grants no power here.
    """

    __tablename__ = "federation_roamer"

    id: Mapped[int] = mapped_column(primary_key=True)
    bench: Mapped[str] = mapped_column(String(MAX_NAME), index=True)
    handle: Mapped[str] = mapped_column(String(24))
    node_num: Mapped[int] = mapped_column(BigInteger, index=True)
    radio_key: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]


class RoamingConsent(Base):
    """A steward of this bench said yes: their handle, node and pinned radio key may go to the federation."""

    __tablename__ = "roaming_consent"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), unique=True)
    given_at: Mapped[datetime]

    member: Mapped[Member] = relationship()


# -- keys and fingerprints -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, size: int) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Invalid(_("That is not a key.")) from None
    if len(data) != size:
        raise Invalid(_("That is not a key."))
    return data


def fingerprint(public_key: str | None) -> str:
    """The key's SHA-256, 80 bits in five groups of four hex digits: read aloud and compared by two hosts."""
    if not public_key:
        return ""
    digest = hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:20]
    return " ".join(digest[i:i + 4] for i in range(0, 20, 4))


def _plain_fingerprint(text: str) -> str:
    return "".join(ch for ch in (text or "").lower() if ch in "0123456789abcdef")


def key_path(instance: Path | str) -> Path:
    return Path(instance) / KEY_FILE


def load_signing_key(instance: Path | str) -> SigningKey | None:
    """This bench's signing key from the instance folder, or None before it joined a federation."""
    path = key_path(instance)
    if not path.exists():
        return None
    return SigningKey(_unb64(path.read_text(encoding="ascii").strip(), 32))


def _make_signing_key(instance: Path | str) -> SigningKey:
    """A new key, written 0600 before a byte of it is (never readable by another user, even briefly)."""
    key = SigningKey.generate()
    path = key_path(instance)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(_b64(bytes(key)) + "\n")
    os.chmod(path, 0o600)
    return key


def public_key_of(key: SigningKey) -> str:
    return _b64(bytes(key.verify_key))


# -- joining ----------------------------------------------------------------------------------------


def this_bench(session: Session) -> FederationBench | None:
    return session.scalar(select(FederationBench).order_by(FederationBench.id).limit(1))


def _name(value: str | None, field: str) -> str:
    value = clean_text(value, field=field, max_length=MAX_NAME)
    if not _NAME.match(value):
        raise Invalid(_("A %(field)s is letters, digits, dots, dashes or underscores (no spaces), at most %(n)d.",
                        field=_(field), n=MAX_NAME), field=field)
    return value


def check_broker_url(url: str | None) -> str:
    url = clean_text(url, field="broker address", max_length=300)
    if not re.match(r"^(mqtts?|ssl|tls|tcp|ws|wss)://[^\s/]+", url):
        raise Invalid(_("The broker address starts with mqtts:// (or mqtt:// on a trusted network), then "
                        "host and port, like mqtts://broker.example.org:8883."), field="broker address")
    return url


def join(session: Session, now: datetime, instance: Path | str, *, url: str, federation: str, bench: str,
         username: str | None = None, password_file: str | None = None) -> FederationBench:
    """Join (or change the broker of) a federation; the key is made once and kept across a re-join.

    A bench joins one federation. Changing its name or federation would make
    every member's trust of it wrong, so that needs ``leave`` first (at the
    terminal): the members then confirm the new key.
    """
    url = check_broker_url(url)
    federation = _name(federation, "federation name")
    bench = _name(bench, "bench name")
    if password_file and not Path(password_file).is_file():
        raise Invalid(_("No password file at %(path)s.", path=password_file), field="password file")
    current = this_bench(session)
    if current is not None and (current.federation != federation or current.name != bench):
        raise Conflict(_("This bench is already %(bench)s in %(federation)s; leave that federation first.",
                         bench=current.name, federation=current.federation))
    key = load_signing_key(instance) or _make_signing_key(instance)
    if current is None:
        current = FederationBench(federation=federation, name=bench, public_key=public_key_of(key), joined_at=now,
                                  broker_url=url)
        session.add(current)
        power_record.record(session, now, actor=None, role=power_record.SYSTEM_ROLE, action="federation-joined",
                            subject=f"{federation} as {bench} ({fingerprint(current.public_key)})",
                            reason=None)
    current.broker_url = url
    current.broker_username = clean_text(username, field="username", max_length=80, required=False) or None
    current.broker_password_file = str(Path(password_file).resolve()) if password_file else None
    current.public_key = public_key_of(key)
    session.flush()
    queue_hello(session, now, key)
    return current


def leave(session: Session, now: datetime, instance: Path | str, *, forget_key: bool) -> None:
    """Leave the federation; with ``forget_key`` the key file goes too (a new key on the next join)."""
    current = this_bench(session)
    if current is None:
        raise NotFound(_("This bench has joined no federation."))
    power_record.record(session, now, actor=None, role=power_record.SYSTEM_ROLE, action="federation-left",
                        subject=f"{current.federation} as {current.name}", reason=None)
    session.delete(current)
    session.execute(delete(FederationOutbox).where(FederationOutbox.sent_at.is_(None)))
    session.flush()
    if forget_key and key_path(instance).exists():
        key_path(instance).unlink()


# -- the envelope -----------------------------------------------------------------------------------


def _at(moment: datetime) -> str:
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_at(text: Any) -> datetime:
    if not isinstance(text, str) or not _AT.match(text):
        raise ValueError("time")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """What the signature covers, exactly.

    ``SIGNING_CONTEXT`` followed by the UTF-8 JSON array
    ``[v, fed, id, from, to, kind, at, body]`` written with sorted object
    keys, no spaces (separators "," and ":") and non-ASCII kept as is
    (``ensure_ascii=False``). Every field but ``sig``: the federation's name
    is in it, so a message cannot be replayed into another federation.
    """
    fields = [envelope["v"], envelope["fed"], envelope["id"], envelope["from"], envelope["to"], envelope["kind"],
              envelope["at"], envelope["body"]]
    return SIGNING_CONTEXT + json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(
        "utf-8")


def sign(key: SigningKey, *, federation: str, sender: str, kind: str, body: Mapping[str, Any], now: datetime,
         to: Iterable[str] = (), message_id: str | None = None) -> dict[str, Any]:
    """A signed envelope (a dict; ``wire`` makes its bytes)."""
    envelope: dict[str, Any] = {"v": VERSION, "fed": federation, "id": message_id or secrets.token_hex(ID_BYTES),
                                "from": sender, "to": sorted(to), "kind": kind, "at": _at(now), "body": dict(body)}
    envelope["sig"] = _b64(key.sign(canonical_bytes(envelope)).signature)
    return envelope


def wire(envelope: Mapping[str, Any]) -> bytes:
    """The envelope as it travels: compact UTF-8 JSON (the receiver re-makes the canonical bytes itself)."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def verify(envelope: Mapping[str, Any], public_key: str) -> bool:
    try:
        VerifyKey(base64.b64decode(public_key)).verify(canonical_bytes(envelope), _unb64(envelope["sig"], 64))
    except (BadSignatureError, CryptoError, Invalid, ValueError, TypeError, KeyError):
        return False
    return True


def _parse(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """The envelope, its fields checked for shape (not yet for trust), or ValueError."""
    if isinstance(raw, Mapping):
        envelope = dict(raw)
    else:
        envelope = json.loads(raw)
    if not isinstance(envelope, dict):
        raise ValueError("not an object")
    if envelope.get("v") != VERSION:
        raise ValueError("version")
    for field in ("fed", "id", "from", "kind", "sig"):
        if not isinstance(envelope.get(field), str):
            raise ValueError(field)
    if not _ID.match(envelope["id"]) or not _NAME.match(envelope["from"]) or envelope["kind"] not in KINDS:
        raise ValueError("fields")
    to = envelope.get("to")
    if not isinstance(to, list) or not all(isinstance(name, str) for name in to) or len(to) > 100:
        raise ValueError("to")
    if not isinstance(envelope.get("body"), dict):
        raise ValueError("body")
    envelope["created"] = _parse_at(envelope.get("at"))
    return envelope


# -- receiving --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """What became of one message: ``reason`` is ACCEPTED or one of ``DROP_REASONS``."""

    reason: str
    kind: str | None = None
    sender: str | None = None
    message_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason == ACCEPTED


def count_drop(session: Session, now: datetime, reason: str) -> None:
    """One more dropped for ``reason``: an UPDATE, or the first row, made safe against a racing transport."""
    done = session.execute(update(FederationDrop).where(FederationDrop.reason == reason)
                           .values(count=FederationDrop.count + 1, last_at=now))
    if done.rowcount:
        return
    try:
        with session.begin_nested():
            session.add(FederationDrop(reason=reason, count=1, last_at=now))
    except IntegrityError:
        session.execute(update(FederationDrop).where(FederationDrop.reason == reason)
                        .values(count=FederationDrop.count + 1, last_at=now))


def _drop(session: Session, now: datetime, reason: str, envelope: Mapping[str, Any] | None = None) -> Received:
    count_drop(session, now, reason)
    envelope = envelope or {}
    return Received(reason, envelope.get("kind"), envelope.get("from"), envelope.get("id"))


def receive(session: Session, now: datetime, raw: bytes | str | Mapping[str, Any], *, via: str = "mqtt") -> Received:
    """Check one message and act on it once; never raises for what the message holds.

    ``raw`` is the envelope's bytes as they came off the wire (or the dict a
    transport rebuilt from a compact form). Dropped messages are counted by
    reason. Database errors (a busy hub) do propagate: the transport keeps
    the message and offers it again, and acting on it then is still once.
    """
    bench = this_bench(session)
    if bench is None:
        return _drop(session, now, NOT_JOINED)
    if not isinstance(raw, Mapping) and len(raw) > MAX_MESSAGE_BYTES:
        return _drop(session, now, TOO_BIG)
    try:
        envelope = _parse(raw)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        return _drop(session, now, MALFORMED)
    if isinstance(raw, Mapping) and len(wire({k: v for k, v in envelope.items() if k != "created"})) > MAX_MESSAGE_BYTES:
        return _drop(session, now, TOO_BIG, envelope)
    if envelope["fed"] != bench.federation:
        return _drop(session, now, WRONG_FEDERATION, envelope)
    sender = envelope["from"]
    if sender == bench.name:
        return _drop(session, now, DUPLICATE, envelope)  # our own message, echoed by the broker
    member = session.scalar(select(FederationMember).where(FederationMember.name == sender))
    if member is not None and member.revoked_at is not None:
        new_key = envelope["body"].get("key") if envelope["kind"] == HELLO else None
        if isinstance(new_key, str) and new_key != member.public_key and verify(envelope, new_key):
            return _heard_other_key(session, now, envelope, member)  # the bench set up again, with a new key
        return _drop(session, now, REVOKED, envelope)
    if envelope["kind"] == HELLO and (member is None or not member.is_trusted):
        return _hello_from_stranger(session, now, envelope, member, via)
    if member is None or not member.is_trusted:
        return _drop(session, now, _distrust(member), envelope)
    if not verify(envelope, member.public_key):
        if envelope["kind"] == HELLO and verify(envelope, str(envelope["body"].get("key", ""))):
            # Signed by the key it announces, but not the key we trust: a rejoin, or someone posing.
            return _heard_other_key(session, now, envelope, member)
        return _drop(session, now, BAD_SIGNATURE, envelope)
    return _act(session, now, bench, member, envelope, via)


def receive_relayed(session: Session, now: datetime, member_name: str, envelope: Mapping[str, Any], *,
                    via: str = "mesh") -> Received:
    """An alert relayed over the mesh without its signature, proven instead by the PKI direct message itself.

    The mesh fallback calls this only after its radio decrypted the packet
    with the key pinned for ``member_name``'s hub radio (``hub_key``, which
    came from that member's signed hello). Every other check of ``receive``
    holds: the member trusted and not revoked, this federation, addressed to
    this bench, the replay window, once per id (the signed copy arriving
    later over MQTT is a duplicate, and the other way round). Only alerts.
    """
    bench = this_bench(session)
    if bench is None:
        return _drop(session, now, NOT_JOINED)
    try:
        envelope = _parse({**dict(envelope), "sig": ""})
    except (ValueError, TypeError, RecursionError):
        return _drop(session, now, MALFORMED)
    if envelope["from"] != member_name or envelope["kind"] != ALERT:
        return _drop(session, now, MALFORMED, envelope)
    if envelope["fed"] != bench.federation:
        return _drop(session, now, WRONG_FEDERATION, envelope)
    member = session.scalar(select(FederationMember).where(FederationMember.name == member_name))
    if member is None or not member.is_trusted:
        return _drop(session, now, _distrust(member), envelope)
    return _act(session, now, bench, member, envelope, via)


def _distrust(member: FederationMember | None) -> str:
    """Why a message from a bench this bench does not trust now is dropped."""
    if member is None:
        return UNKNOWN_SENDER
    return REVOKED if member.revoked_at is not None else UNTRUSTED


def _act(session: Session, now: datetime, bench: FederationBench, member: FederationMember,
         envelope: dict[str, Any], via: str) -> Received:
    """The checks after the sender's proof (time, addressee, once per id), then the kind's handler."""
    created = envelope["created"]
    if created < now - REPLAY_WINDOW:
        return _drop(session, now, TOO_OLD, envelope)
    if created > now + FUTURE_SLACK:
        return _drop(session, now, IN_FUTURE, envelope)
    if envelope["to"] and bench.name not in envelope["to"]:
        return _drop(session, now, NOT_FOR_US, envelope)
    if not _first_time(session, now, envelope, via):
        return _drop(session, now, DUPLICATE, envelope)
    try:
        with session.begin_nested():
            HANDLERS[envelope["kind"]](session, now, member, envelope)
    except (ValueError, TypeError, KeyError, Invalid, AttributeError):
        # From a trusted bench but not what the kind says (a newer version, or a bug): its id stays
        # received, so it is not tried again and again.
        return _drop(session, now, MALFORMED, envelope)
    member.last_message_at = now
    member.last_kind = envelope["kind"]
    session.flush()
    return Received(ACCEPTED, envelope["kind"], envelope["from"], envelope["id"])


def _first_time(session: Session, now: datetime, envelope: Mapping[str, Any], via: str) -> bool:
    """Remember the id; False when it was already received (two transports racing included)."""
    seen = session.scalar(select(FederationReceived.id).where(FederationReceived.sender == envelope["from"],
                                                              FederationReceived.message_id == envelope["id"]))
    if seen is not None:
        return False
    try:
        with session.begin_nested():
            session.add(FederationReceived(sender=envelope["from"], message_id=envelope["id"],
                                           kind=envelope["kind"], created_at=envelope["created"],
                                           received_at=now, via=via[:8]))
    except IntegrityError:
        return False
    return True


def _hello_from_stranger(session: Session, now: datetime, envelope: dict[str, Any], member: FederationMember | None,
                         via: str) -> Received:
    """A bench announcing itself: its key is kept for hosts to confirm; it is trusted for nothing yet."""
    key = envelope["body"].get("key")
    try:
        _unb64(key, 32)
    except Invalid:
        return _drop(session, now, MALFORMED, envelope)
    if not verify(envelope, key):
        return _drop(session, now, BAD_SIGNATURE, envelope)
    created = envelope["created"]
    if created < now - REPLAY_WINDOW:
        return _drop(session, now, TOO_OLD, envelope)
    if created > now + FUTURE_SLACK:
        return _drop(session, now, IN_FUTURE, envelope)
    if member is not None and member.public_key != key:
        return _heard_other_key(session, now, envelope, member)
    if member is None:
        waiting = session.scalar(select(func.count()).select_from(FederationMember)
                                 .where(FederationMember.trusted_at.is_(None))) or 0
        if waiting >= MAX_CANDIDATES:
            return _drop(session, now, TOO_MANY_CANDIDATES, envelope)
        member = FederationMember(name=envelope["from"], public_key=key, first_heard_at=now, arrested=0, released=0)
        session.add(member)
    if not _first_time(session, now, envelope, via):
        return _drop(session, now, DUPLICATE, envelope)
    _take_hello(member, envelope["body"])
    member.last_message_at = now
    member.last_kind = HELLO
    session.flush()
    return Received(ACCEPTED, HELLO, envelope["from"], envelope["id"])


def _heard_other_key(session: Session, now: datetime, envelope: Mapping[str, Any],
                     member: FederationMember) -> Received:
    member.heard_key = envelope["body"]["key"]
    member.heard_key_at = now
    return _drop(session, now, KEY_CHANGED, envelope)


def _lines(value: str | None) -> list[str]:
    return [line for line in (value or "").split("\n") if line]


def _public_word(value: Any, max_length: int, *, required: bool = True) -> str | None:
    """A field of another bench's message as this bench keeps it: cleaned, short, and never a contact."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValueError("not text")
    cleaned = clean_text(value, field="text", max_length=max_length, required=required) or None
    if cleaned and (find_contact(cleaned) is not None or patrol.looks_like_contact(cleaned)):
        raise ValueError("a contact")
    return cleaned


def _take_hello(member: FederationMember, body: Mapping[str, Any]) -> None:
    areas = body.get("areas", [])
    if not isinstance(areas, list):
        raise ValueError("areas")
    kept = []
    for area in areas[:MAX_AREAS]:
        try:
            kept.append(_public_word(area, 40))
        except (ValueError, Invalid):
            continue
    member.areas = "\n".join(a for a in kept if a) or None
    node = body.get("node")
    member.hub_node = node if isinstance(node, int) and not isinstance(node, bool) and 0 < node < 2 ** 32 else None
    radio_key = body.get("radio_key")
    try:
        member.hub_key = radio_key if isinstance(radio_key, str) and _unb64(radio_key, 32) else None
    except Invalid:
        member.hub_key = None


# -- handlers: another bench's message into this bench's data ----------------------------------------


def _handle_hello(session: Session, now: datetime, member: FederationMember, envelope: Mapping[str, Any]) -> None:
    _take_hello(member, envelope["body"])


def _handle_alert(session: Session, now: datetime, member: FederationMember, envelope: Mapping[str, Any]) -> None:
    """An SOS or arrest near this bench's boundary: onto the board, and onto the air while it is fresh."""
    body = envelope["body"]
    kind = body["kind"]
    state = body.get("state", "open")
    if kind not in (ALERT_SOS, ALERT_ARREST) or state not in ALERT_STATES:
        raise ValueError("alert kind")
    code = body["code"]
    if not isinstance(code, str) or not re.match(r"^[AC]\d{1,3}$", code):
        raise ValueError("code")
    area = _public_word(body["area"], 40)
    raised_at = _parse_at(body["at"])
    count = body.get("n", 1)
    if not isinstance(count, int) or not 1 <= count <= 200:
        raise ValueError("count")
    verified = bool(body.get("verified", True))
    alert = session.scalar(select(FederationAlert).where(FederationAlert.bench == member.name,
                                                         FederationAlert.code == code,
                                                         FederationAlert.raised_at == raised_at))
    if alert is None:
        alert = FederationAlert(bench=member.name, code=code, kind=kind, area=area, raised_at=raised_at,
                                count=count, verified=verified, state=state, received_at=now, updated_at=now,
                                on_air=False)
        session.add(alert)
    elif envelope["created"] < alert.updated_at - FUTURE_SLACK and state == "open":
        return  # an older "open" arriving after the "resolved" (an outbox catching up) changes nothing
    else:
        alert.state = "resolved" if "resolved" in (state, alert.state) else state
        alert.count = max(alert.count, count)
        alert.verified = alert.verified or verified
        alert.updated_at = now
    session.flush()
    if alert.is_open and not alert.on_air and now - raised_at <= ALERT_AIR_FRESH and _air_allowance(session, now,
                                                                                                     member):
        outbox.queue_message(session, now, neighbour_alert_text(alert), priority=outbox.URGENT, bell=True,
                             dedupe_key=f"fed:{member.name}:{code}:{_at(raised_at)}"[:120])
        alert.on_air = True


def _air_allowance(session: Session, now: datetime, member: FederationMember) -> bool:
    aired = session.scalar(select(func.count()).select_from(FederationAlert)
                           .where(FederationAlert.bench == member.name, FederationAlert.on_air.is_(True),
                                  FederationAlert.received_at >= now - timedelta(hours=1))) or 0
    return aired < ALERTS_ON_AIR_PER_HOUR


def neighbour_alert_text(alert: FederationAlert) -> str:
    """What this bench's air says of a neighbour's alert: bench, kind, area, time, count. One packet, the bell."""
    with speaking(None):
        values = {"bench": alert.bench[:20], "code": alert.code, "area": alert.area[:30], "n": alert.count,
                  "time": f"{alert.raised_at:%H:%M}Z"}
        if alert.kind == ALERT_ARREST:
            return _("Bench %(bench)s, ARREST %(code)s: %(n)d at %(area)s, %(time)s. Near our boundary.", **values)
        if not alert.verified:
            return _("Bench %(bench)s, SOS %(code)s (unverified) at %(area)s, %(time)s. Near our boundary.",
                     **values)
        return _("Bench %(bench)s, SOS %(code)s at %(area)s, %(time)s. Near our boundary.", **values)


def _count_field(body: Mapping[str, Any], name: str) -> int:
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000:
        raise ValueError(name)
    return value


def _handle_counts(session: Session, now: datetime, member: FederationMember, envelope: Mapping[str, Any]) -> None:
    body = envelope["body"]
    arrested, released = _count_field(body, "arrested"), _count_field(body, "released")
    if member.counts_at is not None and envelope["created"] <= member.counts_at:
        return  # an older figure arriving late never replaces a newer one
    member.arrested, member.released, member.counts_at = arrested, min(released, arrested), envelope["created"]


AUDIT_FIELDS = ("shifts", "check_ins", "sos_raised", "sos_answered", "arrest_reports", "people_taken",
                "out_within_48h", "mediation_opened", "mediation_closed", "complaints_opened", "complaints_closed",
                "tasks_done")


def _handle_audit(session: Session, now: datetime, member: FederationMember, envelope: Mapping[str, Any]) -> None:
    body = envelope["body"]
    cycle = body["cycle"]
    totals = body["totals"]
    if not isinstance(cycle, int) or not isinstance(totals, dict):
        raise ValueError("audit")
    kept = {}
    for name in AUDIT_FIELDS:
        value = totals.get(name)
        # A count, or the audit's "fewer than 3" for a small one (never a number that could single someone out).
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1_000_000:
            kept[name] = value
        elif value == "fewer than 3":
            kept[name] = value
    if member.audit_cycle is not None and cycle < member.audit_cycle:
        return
    member.audit_cycle, member.audit_totals = cycle, json.dumps(kept, sort_keys=True)


def _handle_allies(session: Session, now: datetime, member: FederationMember, envelope: Mapping[str, Any]) -> None:
    vows = envelope["body"]["vows"]
    if not isinstance(vows, list):
        raise ValueError("vows")
    if member.allies_at is not None and envelope["created"] <= member.allies_at:
        return
    rows = []
    for vow in vows[:MAX_LIST]:
        try:
            kind = vow.get("kind")
            rows.append(FederationAlly(
                bench=member.name, ally=_public_word(vow.get("ally"), 80), place=_public_word(vow.get("place"), 120),
                vow=_public_word(vow.get("vow"), 120), kind=kind if kind in ("shelter", "refreshment") else "other",
                hours=_public_word(vow.get("hours"), 120), crisis_only=bool(vow.get("crisis_only")),
                area=_public_word(vow.get("area"), 40, required=False)))
        except (ValueError, Invalid, AttributeError):
            continue  # one vow that says too much is left out; the rest are kept
    session.execute(delete(FederationAlly).where(FederationAlly.bench == member.name))
    session.add_all(rows)
    member.allies_at = envelope["created"]


def _handle_roamers(session: Session, now: datetime, member: FederationMember, envelope: Mapping[str, Any]) -> None:
    """The full list of that bench's stewards who roam: it replaces the last one (a withdrawn consent goes)."""
    stewards = envelope["body"]["stewards"]
    if not isinstance(stewards, list):
        raise ValueError("stewards")
    if member.roamers_at is not None and envelope["created"] <= member.roamers_at:
        return
    local_nodes = set(session.scalars(select(Member.node_num).where(Member.node_num.is_not(None))))
    rows = []
    for steward in stewards[:MAX_LIST]:
        try:
            handle = _public_word(steward.get("handle"), 24)
            node = people.parse_node_id(steward.get("node"))
            key = steward.get("key")
            _unb64(key, 32)
        except (ValueError, Invalid, AttributeError, TypeError):
            continue
        if node is None or node in local_nodes:
            continue  # never a stand-in for one of this bench's own radios
        rows.append(FederationRoamer(bench=member.name, handle=handle, node_num=node, radio_key=key,
                                     received_at=now))
    session.execute(delete(FederationRoamer).where(FederationRoamer.bench == member.name))
    session.add_all(rows)
    member.roamers_at = envelope["created"]


HANDLERS = {HELLO: _handle_hello, ALERT: _handle_alert, COUNTS: _handle_counts, AUDIT: _handle_audit,
            ALLIES: _handle_allies, ROAMERS: _handle_roamers}


# -- the outbox -----------------------------------------------------------------------------------


def queue(session: Session, now: datetime, key: SigningKey, kind: str, body: Mapping[str, Any], *,
          to: Iterable[str] = (), dedupe_key: str | None = None) -> FederationOutbox | None:
    """Sign and keep one message to send; None when not joined, or already queued under ``dedupe_key``."""
    bench = this_bench(session)
    if bench is None:
        return None
    if dedupe_key is not None and session.scalar(
            select(FederationOutbox.id).where(FederationOutbox.dedupe_key == dedupe_key)) is not None:
        return None
    envelope = sign(key, federation=bench.federation, sender=bench.name, kind=kind, body=body, now=now, to=to)
    payload = wire(envelope).decode("utf-8")
    if len(payload.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise Invalid(_("A federation message would be too big to send."))
    item = FederationOutbox(message_id=envelope["id"], kind=kind, recipients=json.dumps(envelope["to"]),
                            payload=payload, urgent=kind in URGENT_KINDS, dedupe_key=dedupe_key, created_at=now,
                            attempts=0)
    session.add(item)
    session.flush()
    return item


def pending(session: Session, now: datetime, *, via: str = "mqtt", limit: int = 50) -> list[FederationOutbox]:
    """What a transport should send next, urgent first, then oldest first.

    ``via="mqtt"``: every message not yet handed to the broker. ``via="mesh"``:
    urgent alerts not yet relayed over the mesh, younger than ``ALERT_AIR_FRESH``
    (an older one is no use to a steward on the street, and airtime is scarce).
    """
    query = select(FederationOutbox).where(FederationOutbox.created_at >= now - OUTBOX_KEEP)
    if via == "mesh":
        query = query.where(FederationOutbox.urgent.is_(True), FederationOutbox.mesh_sent_at.is_(None),
                            FederationOutbox.created_at >= now - ALERT_AIR_FRESH)
    else:
        query = query.where(FederationOutbox.sent_at.is_(None))
    return list(session.scalars(query.order_by(FederationOutbox.urgent.desc(), FederationOutbox.id).limit(limit)))


def mark_attempt(session: Session, now: datetime, item: FederationOutbox) -> None:
    item.attempts += 1
    item.last_attempt_at = now
    session.flush()


def mark_sent(session: Session, now: datetime, item: FederationOutbox, *, via: str = "mqtt") -> None:
    if via == "mesh":
        item.mesh_sent_at = item.mesh_sent_at or now
    else:
        item.sent_at = item.sent_at or now
    session.flush()


# -- builders: this bench's data into messages ---------------------------------------------------------


def _area_of_alert(session: Session, alert: Any) -> str | None:
    """The published area an alert is in: from its place, else the steward's shift; never the place itself."""
    area = patrol.match_area(session, alert.place)
    if area is None and alert.member is not None:
        shift = patrol.current_shift(session, alert.member)
        area = shift.area if shift is not None else None
    return area.name if area is not None else None


def _area_of_case(session: Session, case: Any) -> str | None:
    from server.domain import cases

    place = case.air_place or ""
    if place.endswith(f", {cases.DETAILS_WITH_DISPATCH}"):
        place = place[: -len(cases.DETAILS_WITH_DISPATCH) - 2]
    names = {area.name for area in patrol.list_areas(session)}
    return place if place in names else None


def neighbours_of(session: Session, area: str | None) -> list[str]:
    """Trusted members that declared ``area`` (one of this bench's) as bordering them."""
    if not area:
        return []
    members = session.scalars(select(FederationMember).where(FederationMember.trusted_at.is_not(None),
                                                             FederationMember.revoked_at.is_(None)))
    return sorted(m.name for m in members if area in m.neighbour_area_list)


def build_alert(code: str, kind: str, area: str, raised_at: datetime, count: int, verified: bool,
                state: str = "open") -> dict[str, Any]:
    """Code, kind, published area, time, count, whether proven: nothing else about it ever crosses."""
    return {"code": code, "kind": kind, "area": area, "at": _at(raised_at), "n": count, "verified": verified,
            "state": state}


def queue_new_alerts(session: Session, now: datetime, key: SigningKey) -> list[FederationOutbox]:
    """SOS and arrests in a boundary area since ``ALERT_SCAN_WINDOW``, and their resolutions, not yet queued.

    A scan rather than a hook in alerts.py and cases.py: those stay about the
    bench's own air, and the scan is a few indexed rows (the transport runs
    it before each send, the scheduler every minute). Drills and silent
    alerts never cross; a neighbour's arrest report crosses once confirmed,
    as it goes on this bench's air.
    """
    from server.domain import alerts, cases

    if this_bench(session) is None:
        return []
    since = now - ALERT_SCAN_WINDOW
    queued = []
    # A bench heard for the first time (or with a new key) since our last hello may have subscribed after it
    # was sent: it hears ours within seconds, not at the next periodic one.
    last_hello = session.scalar(select(func.max(FederationOutbox.created_at)).where(FederationOutbox.kind == HELLO))
    newest = session.scalar(select(func.max(func.coalesce(FederationMember.heard_key_at,
                                                          FederationMember.first_heard_at))))
    if newest is not None and (last_hello is None or newest > last_hello):
        queued += [item for item in [queue_hello(session, now, key)] if item]
    rows = session.scalars(select(alerts.Alert).where(
        alerts.Alert.raised_at >= since, alerts.Alert.drill.is_(False), alerts.Alert.silent.is_(False),
        alerts.Alert.kind.in_((alerts.SOS, alerts.PANIC))))
    for alert in rows:
        area = _area_of_alert(session, alert)
        to = neighbours_of(session, area)
        if not to:
            continue
        states = ["open"] + (["resolved"] if alert.status == alerts.RESOLVED else [])
        for state in states:
            body = build_alert(alert.code, ALERT_SOS, area, alert.raised_at, 1, alert.verified, state)
            item = queue(session, now, key, ALERT, body, to=to,
                         dedupe_key=f"alert:{alert.id}:{_at(alert.raised_at)}:{state}")
            queued += [item] if item else []
    for case in session.scalars(select(cases.ArrestCase).where(
            cases.ArrestCase.confirmed_at >= since, cases.ArrestCase.drill.is_(False))):
        area = _area_of_case(session, case)
        to = neighbours_of(session, area)
        if not to:
            continue
        body = build_alert(case.code, ALERT_ARREST, area, case.arrested_at, case.arrested, case.verified)
        item = queue(session, now, key, ALERT, body, to=to, dedupe_key=f"case:{case.id}:{_at(case.opened_at)}")
        queued += [item] if item else []
    return queued


def build_hello(session: Session, key: SigningKey) -> dict[str, Any]:
    from server.domain import radio

    bench = this_bench(session)
    node = bench.hub_node if bench is not None else None
    if node is None:
        status = radio.bridge_status(session)
        node = status.node_num if status else None
    names = [area.name for area in patrol.list_areas(session) if not patrol.looks_like_contact(area.name)]
    return {"key": public_key_of(key), "areas": names[:MAX_AREAS], "node": node,
            "radio_key": bench.hub_key if bench is not None else None}


def set_own_hub(session: Session, now: datetime, node: int | None, key: str | None) -> bool:
    """The bridge, at each connect: this bench's hub radio node and X25519 key (base64). True when it changed
    (the next hello, within a minute, tells the members)."""
    bench = this_bench(session)
    if bench is None:
        return False
    if key is not None:
        _unb64(key, 32)
    changed = (bench.hub_node, bench.hub_key) != (node, key)
    bench.hub_node, bench.hub_key = node, key
    session.flush()
    return changed


def queue_hello(session: Session, now: datetime, key: SigningKey) -> FederationOutbox | None:
    return queue(session, now, key, HELLO, build_hello(session, key))


def build_counts(session: Session) -> dict[str, Any]:
    """The "held / out" figure: open, confirmed, non-drill arrest cases' people taken and released."""
    from server.domain import cases

    arrested, released = session.execute(
        select(func.coalesce(func.sum(cases.ArrestCase.arrested), 0), func.coalesce(func.sum(cases.ArrestCase.released), 0))
        .where(cases.ArrestCase.closed_at.is_(None), cases.ArrestCase.drill.is_(False),
               cases.ArrestCase.confirmed_at.is_not(None))).one()
    return {"arrested": int(arrested), "released": int(released)}


def build_audit(session: Session, now: datetime) -> dict[str, Any] | None:
    """The last frozen lunar audit's totals, with the audit's own "fewer than 3" for small counts."""
    from server.domain import audit, lunar

    last = session.scalar(select(audit.LunarAudit).where(audit.LunarAudit.frozen_at.is_not(None))
                          .order_by(audit.LunarAudit.id.desc()).limit(1))
    if last is None:
        return None
    report = audit.report(session, lunar.cycle(last.id), now, 0.0)
    people_counts = {
        "sos_raised": report.sos.raised, "sos_answered": report.sos.answered,
        "arrest_reports": report.arrest_reports, "people_taken": report.people_taken,
        "out_within_48h": report.out_within_48h, "mediation_opened": report.mediation_opened,
        "mediation_closed": report.mediation_closed, "complaints_opened": report.complaints_opened,
        "complaints_closed": report.complaints_closed,
    }
    totals: dict[str, Any] = {name: (audit.FEWER if 0 < value < audit.SMALL else value)
                              for name, value in people_counts.items()}
    totals.update(shifts=report.shifts, check_ins=report.check_ins, tasks_done=report.tasks_done)
    return {"cycle": last.id, "totals": totals}


def build_allies(session: Session, now: datetime) -> dict[str, Any]:
    """Allies' vows in force, as the public allies page shows them (no contact is ever kept for one)."""
    from server.domain import allies

    vows = allies.public_vows(session, now, None)[:MAX_LIST]
    return {"vows": [{"ally": v.ally, "place": v.place, "vow": v.text, "kind": v.kind, "hours": v.hours,
                      "crisis_only": v.crisis_only, "area": v.area} for v in vows]}


def build_roamers(session: Session, now: datetime) -> dict[str, Any]:
    """Stewards who said yes, with a steward role in force, a node and a pinned key: handle, node, key."""
    rows = session.scalars(select(RoamingConsent).join(Member).order_by(Member.handle))
    stewards = []
    for consent in rows:
        member = consent.member
        if member.node_num is None or not member.radio_key:
            continue
        if not people.has_role(session, member, people.STEWARD, now):
            continue
        stewards.append({"handle": member.handle, "node": people.format_node_id(member.node_num),
                         "key": member.radio_key})
    return {"stewards": stewards[:MAX_LIST]}


# How often an unchanged figure is sent again (a member that joined since, or lost one, catches up).
RESEND = {HELLO: timedelta(hours=6), COUNTS: timedelta(hours=1), AUDIT: timedelta(days=1),
          ALLIES: timedelta(days=1), ROAMERS: timedelta(hours=6)}


def _queue_state(session: Session, now: datetime, key: SigningKey, kind: str,
                 body: Mapping[str, Any] | None) -> FederationOutbox | None:
    """Queue ``body`` when it differs from the last one of its kind, or once ``RESEND`` has passed since."""
    if body is None:
        return None
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    last = session.execute(select(FederationOutbox.dedupe_key, FederationOutbox.created_at)
                           .where(FederationOutbox.kind == kind, FederationOutbox.dedupe_key.is_not(None))
                           .order_by(FederationOutbox.id.desc()).limit(1)).first()
    if last is not None and last[0].startswith(f"{kind}:{digest}:") and now - last[1] < RESEND[kind]:
        return None
    return queue(session, now, key, kind, body, dedupe_key=f"{kind}:{digest}:{now.isoformat()}")


def queue_periodic(session: Session, now: datetime, key: SigningKey) -> list[FederationOutbox]:
    """Hello, counts, audit totals, allies and roaming stewards: each when changed, else once a period."""
    if this_bench(session) is None:
        return []
    made = [
        _queue_state(session, now, key, HELLO, build_hello(session, key)),
        _queue_state(session, now, key, COUNTS, build_counts(session)),
        _queue_state(session, now, key, AUDIT, build_audit(session, now)),
        _queue_state(session, now, key, ALLIES, build_allies(session, now)),
        _queue_state(session, now, key, ROAMERS, build_roamers(session, now)),
    ]
    return [item for item in made if item is not None]


def purge(session: Session, now: datetime) -> tuple[int, int]:
    """Received ids past the replay window, and outbox messages past theirs: (received, outbox) deleted."""
    received = session.execute(delete(FederationReceived).where(FederationReceived.received_at < now - RECEIVED_KEEP))
    sent = session.execute(delete(FederationOutbox).where(FederationOutbox.created_at < now - OUTBOX_KEEP))
    session.execute(delete(FederationAlert).where(FederationAlert.updated_at < now - RECEIVED_KEEP))
    return received.rowcount or 0, sent.rowcount or 0


# -- trust: hosts' decisions --------------------------------------------------------------------------


def get_member(session: Session, name: str) -> FederationMember:
    member = session.scalar(select(FederationMember).where(FederationMember.name == (name or "").strip()))
    if member is None:
        raise NotFound(_("No bench called %(name)s has been heard in this federation.", name=name))
    return member


def members(session: Session) -> list[FederationMember]:
    return list(session.scalars(select(FederationMember).order_by(FederationMember.name)))


def _host_role(session: Session, now: datetime, by: Member | None) -> str:
    if by is None:
        return power_record.SYSTEM_ROLE
    if not people.has_role(session, by, people.HOST, now):
        raise Invalid(_("Only a host may decide which benches this bench trusts."))
    return people.HOST


def _check_fingerprint(member: FederationMember, key: str, said: str) -> None:
    if _plain_fingerprint(said) != _plain_fingerprint(fingerprint(key)):
        raise Invalid(_("That fingerprint is not the key heard from %(name)s. Do not trust it: ask their host "
                        "to read theirs again, on a call or in person.", name=member.name), field="fingerprint")


def confirm(session: Session, now: datetime, member: FederationMember, said_fingerprint: str, *,
            by: Member | None) -> FederationMember:
    """A host confirms the fingerprint a host of that bench read to them; a second host makes it trusted.

    ``by=None`` is the Pi's terminal (``safebench federation trust``): whoever
    holds it holds the key file and the database anyway, so it decides alone,
    and the record of power used says it was the terminal.
    A waiting new key (``heard_key``) is what is confirmed when there is one.
    """
    role = _host_role(session, now, by)
    key = member.heard_key or member.public_key
    _check_fingerprint(member, key, said_fingerprint)
    subject = f"bench {member.name} ({fingerprint(key)})"
    if member.heard_key:
        member.public_key, member.heard_key, member.heard_key_at = member.heard_key, None, None
        member.confirmed_at = member.trusted_at = member.revoked_at = None
    if member.is_trusted:
        raise Conflict(_("%(name)s is trusted already.", name=member.name))
    handle = by.handle if by is not None else power_record.SYSTEM
    if by is not None and member.confirmed_at is not None and member.confirmed_by == handle:
        raise Conflict(_("You confirmed this key; a second host must countersign it."))
    if by is None or member.confirmed_at is not None:
        member.trusted_at, member.trusted_by = now, handle
        if member.confirmed_at is None:
            member.confirmed_at, member.confirmed_by = now, handle
        member.revoked_at = member.revoked_by = member.revoke_reason = None
        power_record.record(session, now, actor=by, role=role, action="bench-trusted", subject=subject,
                            reason=None if by is None else "fingerprint countersigned by a second host")
    else:
        member.confirmed_at, member.confirmed_by = now, handle
        power_record.record(session, now, actor=by, role=role, action="bench-key-confirmed", subject=subject,
                            reason="fingerprint read aloud by a host of that bench and compared")
    session.flush()
    return member


def revoke(session: Session, now: datetime, member: FederationMember, *, reason: str,
           by: Member | None) -> FederationMember:
    """Stop acting on a bench's messages at once (a seized key, a bench gone rogue). One host suffices."""
    role = _host_role(session, now, by)
    reason = clean_text(reason, field="reason", max_length=300, required=by is not None) or "revoked at the terminal"
    if member.revoked_at is not None:
        raise Conflict(_("%(name)s is revoked already.", name=member.name))
    member.revoked_at, member.revoked_by, member.revoke_reason = now, (by.handle if by else power_record.SYSTEM), reason
    # Its visitors are no longer vouched for, and its outgoing alerts stop.
    session.execute(delete(FederationRoamer).where(FederationRoamer.bench == member.name))
    power_record.record(session, now, actor=by, role=role, action="bench-revoked",
                        subject=f"bench {member.name} ({member.fingerprint})", reason=reason)
    session.flush()
    return member


def forget(session: Session, now: datetime, member: FederationMember, *, by: Member | None) -> None:
    """Take a bench heard but never trusted off the list (a stranger's hello, a typo'd name)."""
    _host_role(session, now, by)
    if member.trusted_at is not None:
        raise Conflict(_("A bench that was trusted is revoked, not forgotten: the record keeps it."))
    session.delete(member)
    session.flush()


def set_neighbour_areas(session: Session, now: datetime, member: FederationMember, areas: Iterable[str], *,
                        by: Member | None) -> FederationMember:
    """Which of this bench's published areas border ``member``: an SOS or arrest there is sent to it."""
    role = _host_role(session, now, by)
    ours = {area.name.casefold(): area.name for area in patrol.list_areas(session)}
    chosen = []
    for name in areas:
        name = (name or "").strip()
        if not name:
            continue
        if name.casefold() not in ours:
            raise Invalid(_("%(area)s is not one of this bench's published areas.", area=name), field="areas")
        chosen.append(ours[name.casefold()])
    member.neighbour_areas = "\n".join(sorted(set(chosen))) or None
    power_record.record(session, now, actor=by, role=role, action="bench-areas-set",
                        subject=f"bench {member.name}: {', '.join(sorted(set(chosen))) or 'none'}"[:120],
                        reason=None if by is None else "which of our areas border that bench")
    session.flush()
    return member


# -- roaming stewards ------------------------------------------------------------------------------


def roaming_consent(session: Session, member: Member) -> RoamingConsent | None:
    return session.scalar(select(RoamingConsent).where(RoamingConsent.member_id == member.id))


def set_roaming(session: Session, now: datetime, member: Member, consent: bool) -> None:
    """A steward's own choice, on their own page: their handle, node and key go to the federation's benches."""
    current = roaming_consent(session, member)
    if consent and current is None:
        session.add(RoamingConsent(member=member, given_at=now))
    elif not consent and current is not None:
        session.delete(current)
    session.flush()


def roamer_for_node(session: Session, node_num: int) -> FederationRoamer | None:
    """A visiting steward of a trusted bench with this node, for the bridge (their key is ``radio_key``)."""
    return session.scalar(
        select(FederationRoamer).join(FederationMember, FederationMember.name == FederationRoamer.bench)
        .where(FederationRoamer.node_num == node_num, FederationMember.trusted_at.is_not(None),
               FederationMember.revoked_at.is_(None)).limit(1))


# -- what hosts and the bench page read ----------------------------------------------------------------


@dataclass(frozen=True)
class CityFigure:
    benches: int  # this bench and the trusted members with fresh counts
    arrested: int
    released: int


# Of the table, not the mapped class: the bench page's statements are Core alone (issue 14), and one ORM
# column in them would set up every mapper at the page's first render (4 MB the web server keeps).
_members = FederationMember.__table__.c
_trusted_fresh = (_members.trusted_at.is_not(None), _members.revoked_at.is_(None),
                  _members.counts_at >= bindparam("fresh_after"))
# The members' latest fresh counts as three scalar columns: the bench page reads them in its one counts
# statement (server/domain/bench_view.py), with ``fresh_after`` bound to now - COUNTS_FRESH.
CITY_COLUMNS = (
    select(func.count()).select_from(FederationMember.__table__).where(*_trusted_fresh).scalar_subquery(),
    select(func.coalesce(func.sum(_members.arrested), 0)).where(*_trusted_fresh).scalar_subquery(),
    select(func.coalesce(func.sum(_members.released), 0)).where(*_trusted_fresh).scalar_subquery(),
)
CITY_COUNTS = select(*CITY_COLUMNS)


def city_of(row: Any, own_arrested: int, own_released: int) -> CityFigure | None:
    """The city figure from the three ``CITY_COLUMNS`` and this bench's own counts; None with no fresh member."""
    benches, arrested, released = row
    if not benches:
        return None
    return CityFigure(int(benches) + 1, int(arrested) + own_arrested, int(released) + own_released)


def city_figure(connection: Any, now: datetime, own_arrested: int, own_released: int) -> CityFigure | None:
    """Benches and arrests held/out across the federation; None when no member sent fresh counts."""
    return city_of(connection.execute(CITY_COUNTS, {"fresh_after": now - COUNTS_FRESH}).one(), own_arrested,
                   own_released)


def drop_counts(session: Session) -> list[FederationDrop]:
    return list(session.scalars(select(FederationDrop).order_by(FederationDrop.count.desc())))


def recent_received(session: Session, limit: int = 30) -> list[FederationReceived]:
    return list(session.scalars(select(FederationReceived).order_by(FederationReceived.id.desc()).limit(limit)))


def recent_sent(session: Session, limit: int = 30) -> list[FederationOutbox]:
    return list(session.scalars(select(FederationOutbox).order_by(FederationOutbox.id.desc()).limit(limit)))


def open_neighbour_alerts(session: Session, now: datetime) -> list[FederationAlert]:
    """Neighbours' alerts still open (and no older than a day): the board lists them "from bench X"."""
    return list(session.scalars(select(FederationAlert).where(
        FederationAlert.state == "open", FederationAlert.raised_at >= now - timedelta(days=1))
        .order_by(FederationAlert.raised_at.desc())))
