"""What the hub remembers about the radio side: packets heard, positions, strangers, the bridge's health.

Positions are private: they are kept for dispatch, and public views get at
most a named area. Unknown senders are counted, never obeyed, and what they
said is not kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain.base import Base
from server.domain.people import Member


class HeardPacket(Base):
    """A packet the hub has acted on: the mesh delivers the same one more than once."""

    __tablename__ = "heard_packet"

    sender: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    packet_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    heard_at: Mapped[datetime] = mapped_column(index=True)


class StewardPosition(Base):
    __tablename__ = "steward_position"

    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), primary_key=True)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime]

    member: Mapped[Member] = relationship()


class UnknownSender(Base):
    __tablename__ = "unknown_sender"

    node_num: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    first_heard: Mapped[datetime]
    last_heard: Mapped[datetime]
    times: Mapped[int] = mapped_column(Integer, default=0)


class BridgeStatus(Base):
    """One row the bridge keeps current, for the host pages to read."""

    __tablename__ = "bridge_status"

    id: Mapped[int] = mapped_column(primary_key=True)
    radio: Mapped[str] = mapped_column(String(200))  # "sim", "serial:/dev/...", "tcp:host:port"
    simulated: Mapped[bool]
    connected: Mapped[bool]
    since: Mapped[datetime]  # connected or disconnected since
    heartbeat_at: Mapped[datetime]
    node_num: Mapped[int | None] = mapped_column(BigInteger)
    firmware: Mapped[str | None] = mapped_column(String(40))
    region: Mapped[str | None] = mapped_column(String(16))
    modem_preset: Mapped[str | None] = mapped_column(String(20))
    last_packet_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    reconnects: Mapped[int] = mapped_column(Integer, default=0)
    send_failures: Mapped[int] = mapped_column(Integer, default=0)


def first_time_heard(session: Session, now: datetime, sender: int, packet_id: int) -> bool:
    """Record (sender, packet id); False when it was heard before, across restarts."""
    if session.get(HeardPacket, (sender, packet_id)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(HeardPacket(sender=sender, packet_id=packet_id, heard_at=now))
    except IntegrityError:
        return False
    return True


def forget_heard_before(session: Session, cutoff: datetime) -> int:
    """Packet ids are random 32-bit numbers: weeks of memory cost little and recognise a replay."""
    result = session.execute(delete(HeardPacket).where(HeardPacket.heard_at < cutoff))
    return result.rowcount or 0


def forget_old_radio_records(session: Session, now: datetime, *, positions_after: timedelta,
                             strangers_after: timedelta, heard_after: timedelta = timedelta(days=56)) -> dict[str, int]:
    """What the radio left behind that nobody needs any more.

    Heard packet ids after weeks (a mesh re-delivery comes within minutes,
    but a packet recorded off the air can be played back any time: an old
    SOS must not be obeyed again), a steward's last position once it is
    stale (it says where a person was), and unknown nodes nobody has heard
    from in a while.
    """
    heard = forget_heard_before(session, now - heard_after)
    positions = session.execute(delete(StewardPosition).where(StewardPosition.at < now - positions_after)).rowcount
    strangers = session.execute(delete(UnknownSender).where(UnknownSender.last_heard < now - strangers_after)).rowcount
    return {"heard packet ids": heard, "positions": positions or 0, "unknown nodes": strangers or 0}


def note_unknown_sender(session: Session, now: datetime, node_num: int) -> UnknownSender:
    stranger = session.get(UnknownSender, node_num)
    if stranger is None:
        stranger = UnknownSender(node_num=node_num, first_heard=now, last_heard=now, times=0)
        session.add(stranger)
    stranger.last_heard = now
    stranger.times += 1
    session.flush()
    return stranger


def unknown_senders(session: Session, limit: int = 20) -> list[UnknownSender]:
    return list(session.scalars(select(UnknownSender).order_by(UnknownSender.last_heard.desc()).limit(limit)))


def record_position(session: Session, now: datetime, member: Member, latitude: float, longitude: float) -> None:
    position = session.get(StewardPosition, member.id)
    if position is None:
        position = StewardPosition(member_id=member.id, latitude=latitude, longitude=longitude, at=now)
        session.add(position)
    position.latitude, position.longitude, position.at = latitude, longitude, now
    session.flush()


def last_position(session: Session, member: Member) -> StewardPosition | None:
    return session.get(StewardPosition, member.id)


def bridge_status(session: Session) -> BridgeStatus | None:
    return session.scalar(select(BridgeStatus).order_by(BridgeStatus.id).limit(1))


def bridge_is_silent(status: BridgeStatus | None, now: datetime, after: timedelta = timedelta(minutes=2)) -> bool:
    """No bridge, or one that has stopped writing its heartbeat."""
    return status is None or status.heartbeat_at < now - after
