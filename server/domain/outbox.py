"""The outbox: every message the hub wants on the air is a row here first.

The web app, the scheduler and the terminal queue messages; the radio bridge
drains them, one at a time, in order of urgency. Nothing waits in memory
only, so a bridge that crashes or a radio that is unplugged for an hour loses
nothing.

A message's life: queued -> sending -> sent -> acked, or back to queued for
a retry after a NAK or silence, until it is failed; a queued message past
its expiry is expired instead of clogging the air. A message whose answer
may have been lost while the bridge was down is sent again with the same
packet id: a radio that already had it drops the copy, and the message is
"on-air" (out once, its answer lost) rather than repeated.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.domain.base import Base
from server.domain.errors import Invalid
from server.domain.people import BROADCAST_NODE
from server.domain.radio_text import (
    BELL,
    PACKET_LIMIT,
    split_for_radio,
    utf8_len,
    with_bell,
)
from server.domain.text import clean_text
from server.i18n import gettext as _

URGENT = 0
NORMAL = 1
LOW = 2
PRIORITIES = {URGENT: "urgent", NORMAL: "normal", LOW: "low"}

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
ACKED = "acked"
FAILED = "failed"
EXPIRED = "expired"
ON_AIR = "on-air"
LIVE_STATES = (QUEUED, SENDING, SENT)
# The firmware forgets a client's packet ids after this many newer ones, so
# only this many unanswered messages can be asked about by sending them again.
RADIO_REMEMBERS_IDS = 20
# The firmware takes one text per 2 s from its client and NAKs a faster one
# with this reason, from the hub's own node, before it reaches the air.
RATE_LIMITED = "RATE_LIMIT_EXCEEDED"
RATE_LIMIT_WAIT = timedelta(seconds=2.5)

# Federation traffic (issue 17: relays to neighbour benches' hub radios, and the announcements of their
# alerts here) is queued with dedupe keys starting so: the radio sender caps its airtime at a share of the
# urgent reserve, so a neighbour's flood never eats the airtime of this bench's own SOS.
FEDERATION_KEY_PREFIX = "fed:"

# How long a message may wait for the air before it is pointless, by priority.
DEFAULT_TTL = {URGENT: timedelta(hours=6), NORMAL: timedelta(hours=1), LOW: timedelta(minutes=30)}
MAX_TEXT = 2000


class OutboxMessage(Base):
    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    destination: Mapped[int] = mapped_column(BigInteger)  # a node number, or BROADCAST_NODE
    channel: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, index=True)
    text: Mapped[str] = mapped_column(Text)
    # Queuing the same thing twice (a scheduler run repeated, a double click)
    # while the first is still on its way is a no-op.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), index=True)
    expires_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(8), index=True, default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    # Chosen before the radio sees it, so a send interrupted by a crash is
    # repeated with the same id and the mesh drops the copy.
    packet_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    sent_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]
    ack_kind: Mapped[str | None] = mapped_column(String(8))  # "ack" from the destination, "implicit" from a relay
    last_error: Mapped[str | None] = mapped_column(String(40))
    airtime_s: Mapped[float] = mapped_column(Float, default=0.0)
    # Within a priority, turn 0 goes before turn 1: an alert's first notice
    # before any alert's repeat, update or escalation, so that one sender's
    # flood delays another steward's first SOS by one send slot at most.
    turn: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def priority_label(self) -> str:
        return PRIORITIES[self.priority]

    @property
    def is_broadcast(self) -> bool:
        return self.destination == BROADCAST_NODE


class AirtimeUse(Base):
    """One transmission by the hub's radio: the airtime ledger survives restarts."""

    __tablename__ = "airtime_use"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    seconds: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer)
    # Indexed: purging a message sets this to NULL, and without an index SQLite reads the whole ledger for each.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_message.id", ondelete="SET NULL"), index=True)


def _new_packet_id() -> int:
    # Meshtastic packet ids are 32-bit and must not be 0.
    return secrets.randbelow(0xFFFFFFFF - 1) + 1


def queue_message(
    session: Session,
    now: datetime,
    text: str,
    *,
    destination: int = BROADCAST_NODE,
    priority: int = NORMAL,
    dedupe_key: str | None = None,
    ttl: timedelta | None = None,
    channel: int = 0,
    bell: bool = False,
    turn: int = 0,
) -> list[OutboxMessage]:
    """Queue ``text``; a text longer than one packet becomes numbered parts.

    ``bell`` appends the bell character to every part, so handhelds buzz even
    when muted; parts are cut with room for it. (Cleaning the text removes
    control characters, so the bell is never taken from the text itself.)
    """
    if priority not in PRIORITIES:
        raise Invalid(_("Unknown priority."), field="priority")
    text = clean_text(text, field="message", max_length=MAX_TEXT, multiline=True)
    if dedupe_key:
        existing = list(
            session.scalars(
                select(OutboxMessage)
                .where(
                    (OutboxMessage.dedupe_key == dedupe_key)
                    | OutboxMessage.dedupe_key.startswith(f"{dedupe_key}#", autoescape=True),
                    OutboxMessage.state.in_(LIVE_STATES),
                )
                .order_by(OutboxMessage.id)
            )
        )
        if existing:
            return existing
    expires_at = now + (ttl or DEFAULT_TTL[priority])
    if bell:
        parts = [with_bell(part) for part in split_for_radio(text, limit=PACKET_LIMIT - utf8_len(BELL))]
    else:
        parts = split_for_radio(text)
    messages = []
    for number, part in enumerate(parts, start=1):
        key = dedupe_key if dedupe_key is None or len(parts) == 1 else f"{dedupe_key}#{number}"
        message = OutboxMessage(
            created_at=now, destination=destination, channel=channel, priority=priority, text=part,
            dedupe_key=key, expires_at=expires_at, state=QUEUED, attempts=0, airtime_s=0.0, turn=turn,
        )
        session.add(message)
        messages.append(message)
    session.flush()
    return messages


def expire_stale(session: Session, now: datetime) -> int:
    """Queued messages past their expiry leave the queue (counted, for the host)."""
    stale = list(
        session.scalars(select(OutboxMessage).where(OutboxMessage.state == QUEUED, OutboxMessage.expires_at <= now))
    )
    for message in stale:
        message.state = EXPIRED
        message.last_error = message.last_error or "expired before it could be sent"
    session.flush()
    return len(stale)


def next_due(session: Session, now: datetime, priorities: tuple[int, ...] = tuple(PRIORITIES), *,
             except_key_prefix: str | None = None) -> OutboxMessage | None:
    """The next message to send: most urgent first, oldest first within a priority.

    A message still marked as sending was cut short by a crash; it goes
    again, in its turn, with the packet id it had. ``except_key_prefix``
    passes over messages whose dedupe key starts with it (a kind of traffic
    that has used up its own share of the air).
    """
    query = select(OutboxMessage).where(
        OutboxMessage.state.in_((QUEUED, SENDING)),
        OutboxMessage.priority.in_(priorities),
        (OutboxMessage.next_attempt_at.is_(None)) | (OutboxMessage.next_attempt_at <= now),
        (OutboxMessage.expires_at.is_(None)) | (OutboxMessage.expires_at > now),
    )
    if except_key_prefix:
        query = query.where(OutboxMessage.dedupe_key.is_(None)
                            | ~OutboxMessage.dedupe_key.startswith(except_key_prefix, autoescape=True))
    return session.scalar(query.order_by(OutboxMessage.priority, OutboxMessage.turn, OutboxMessage.id).limit(1))


def begin_send(session: Session, now: datetime, message: OutboxMessage) -> int:
    """Mark a message as going out and fix the packet id it goes out with."""
    if message.packet_id is None or message.state != SENDING:
        message.packet_id = _new_packet_id()
    message.state = SENDING
    message.attempts += 1
    session.flush()
    return message.packet_id


def send_failed(session: Session, message: OutboxMessage, error: str) -> None:
    """The radio refused the write (unplugged): the message waits for the next connection."""
    message.state = QUEUED
    message.attempts = max(0, message.attempts - 1)  # it never reached the air
    message.packet_id = None
    message.last_error = error[:40]
    session.flush()


def mark_sent(session: Session, now: datetime, message: OutboxMessage, airtime_s: float) -> None:
    message.state = SENT
    message.sent_at = now
    message.airtime_s += airtime_s
    session.add(AirtimeUse(at=now, seconds=airtime_s, priority=message.priority, message_id=message.id))
    session.flush()


def unanswered(session: Session, limit: int = RADIO_REMEMBERS_IDS) -> list[OutboxMessage]:
    """Messages handed to the radio (or being handed) with no answer yet, newest ``limit``, most urgent first."""
    newest = list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.state.in_((SENDING, SENT)), OutboxMessage.packet_id.is_not(None))
            .order_by(OutboxMessage.sent_at.desc().nulls_first(), OutboxMessage.id.desc())
            .limit(limit)
        )
    )
    return sorted(newest, key=lambda message: (message.priority, message.id))


def mark_on_air(session: Session, now: datetime, message: OutboxMessage, airtime_s: float) -> None:
    """The radio dropped a repeat of this packet id: it had taken it before, so it went out once.

    Its answer (ACK or NAK) came while nobody was listening; a late one still counts.
    """
    if message.state == SENDING:  # cut short before "sent" was written: its airtime was never counted
        message.airtime_s += airtime_s
        session.add(AirtimeUse(at=now, seconds=airtime_s, priority=message.priority, message_id=message.id))
    message.state = ON_AIR
    message.sent_at = message.sent_at or now
    message.last_error = "answer lost in a restart"
    session.flush()


def find_by_packet(session: Session, packet_id: int) -> OutboxMessage | None:
    return session.scalar(select(OutboxMessage).where(OutboxMessage.packet_id == packet_id))


def record_ack(session: Session, now: datetime, packet_id: int, *, implicit: bool) -> OutboxMessage | None:
    """An ACK arrived. A real ACK from the destination outranks an implicit one."""
    message = find_by_packet(session, packet_id)
    if message is None or message.state not in (SENDING, SENT, ON_AIR, ACKED):
        return message
    if message.state != ACKED or (message.ack_kind == "implicit" and not implicit):
        message.state = ACKED
        message.acked_at = now
        message.ack_kind = "implicit" if implicit else "ack"
        message.last_error = None
    session.flush()
    return message


def _retry_or_fail(message: OutboxMessage, now: datetime, error: str, max_attempts: int, backoff: timedelta) -> None:
    message.last_error = error[:40]
    if message.attempts >= max_attempts or (message.expires_at is not None and message.expires_at <= now):
        message.state = FAILED
        return
    message.state = QUEUED
    # A retry goes out as a new packet: the old id may be stuck in relays' history.
    message.packet_id = None
    message.next_attempt_at = now + backoff * (2 ** (message.attempts - 1))


def record_nak(
    session: Session, now: datetime, packet_id: int, reason: str, *, max_attempts: int, backoff: timedelta
) -> OutboxMessage | None:
    message = find_by_packet(session, packet_id)
    if message is None or message.state not in (SENDING, SENT, ON_AIR):
        return message
    if reason == RATE_LIMITED:
        # The hub's own radio refused it before the air: the firmware takes one
        # text per 2 s from its client, and a bridge that just restarted cannot
        # know when the one before it last wrote. Not a try, and no airtime
        # (the ledger row its send wrote goes); again once allowed.
        if message.state == SENT:
            spent = session.scalar(select(AirtimeUse).where(AirtimeUse.message_id == message.id)
                                   .order_by(AirtimeUse.id.desc()).limit(1))
            if spent is not None:
                message.airtime_s = max(0.0, message.airtime_s - spent.seconds)
                session.delete(spent)
        message.attempts = max(0, message.attempts - 1)
        message.state = QUEUED
        message.packet_id = None
        message.last_error = reason[:40]
        message.next_attempt_at = now + RATE_LIMIT_WAIT
    else:
        _retry_or_fail(message, now, reason, max_attempts, backoff)
    session.flush()
    return message


def time_out_unanswered(
    session: Session, now: datetime, *, ack_timeout: timedelta, max_attempts: int, backoff: timedelta
) -> int:
    """Sent messages with no ACK after ``ack_timeout`` are retried or failed."""
    silent = list(
        session.scalars(
            select(OutboxMessage).where(OutboxMessage.state == SENT, OutboxMessage.sent_at <= now - ack_timeout)
        )
    )
    for message in silent:
        _retry_or_fail(message, now, "no answer", max_attempts, backoff)
    session.flush()
    return len(silent)


def depth_by_priority(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(OutboxMessage.priority, func.count(OutboxMessage.id))
        .where(OutboxMessage.state.in_((QUEUED, SENDING)))
        .group_by(OutboxMessage.priority)
    )
    depth = {label: 0 for label in PRIORITIES.values()}
    for priority, count in rows:
        depth[PRIORITIES[priority]] = count
    return depth


def airtime_since(session: Session, since: datetime, *,
                  key_prefix: str | None = None) -> list[tuple[datetime, float, int]]:
    """(time, seconds, priority) of every transmission since ``since``, to seed the ledger.

    ``key_prefix``: only those of messages whose dedupe key starts with it.
    """
    query = select(AirtimeUse.at, AirtimeUse.seconds, AirtimeUse.priority).where(AirtimeUse.at > since)
    if key_prefix:
        query = query.join(OutboxMessage, OutboxMessage.id == AirtimeUse.message_id).where(
            OutboxMessage.dedupe_key.startswith(key_prefix, autoescape=True))
    return [(row.at, row.seconds, row.priority) for row in session.execute(query)]


def recent(session: Session, limit: int | None = 50, *, failed: bool | None = None) -> list[OutboxMessage]:
    """The newest messages; ``failed`` picks only failed ones (True) or all but them (False)."""
    query = select(OutboxMessage)
    if failed is not None:
        query = query.where((OutboxMessage.state == FAILED) if failed else (OutboxMessage.state != FAILED))
    return list(session.scalars(query.order_by(OutboxMessage.id.desc()).limit(limit)))


def purge_finished(session: Session, now: datetime, keep: timedelta, limit: int | None = None) -> tuple[int, int]:
    """Forget delivered, failed and expired messages after ``keep``; and old airtime records.

    At most ``limit`` of each a call, oldest first; returns how many messages and how many airtime records.
    """
    cutoff = now - keep
    old = list(
        session.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.state.in_((ACKED, ON_AIR, FAILED, EXPIRED)), OutboxMessage.created_at <= cutoff
            ).order_by(OutboxMessage.created_at).limit(limit)
        )
    )
    uses = list(session.scalars(select(AirtimeUse.id).where(AirtimeUse.at <= cutoff).order_by(AirtimeUse.at)
                                .limit(limit)))
    # One statement for many rows, not an ORM delete each; an airtime record's message is set NULL by its key.
    for model, ids in ((OutboxMessage, old), (AirtimeUse, uses)):
        for start in range(0, len(ids), 500):
            session.execute(delete(model).where(model.id.in_(ids[start:start + 500]))
                            .execution_options(synchronize_session="fetch"))
    session.flush()
    return len(old), len(uses)

