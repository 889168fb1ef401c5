"""The Community Safety Compact: its text, and who has signed it.

Signatures are a name or any mark the signer chooses. Only their number is
public; the marks themselves are for the host, who may need to remove a
prank signature.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain.base import Base
from server.domain.errors import NotFound
from server.domain.people import Member
from server.domain.text import clean_text

MAX_TEXT = 20_000
MAX_MARK = 60

DEFAULT_TEXT = """We, the neighbours who keep this bench, agree:

1. We look out for each other, and we de-escalate before we do anything else.
2. We call on mediation before conflicts grow, and we keep what we hear in confidence.
3. Our patrol log is public, and it shows what we did, never who we saw.
4. No one is ever named, photographed or reported by this bench without their consent.
5. Every role here is lent by the assembly for a term, and ends unless the assembly renews it.
6. We rehearse together, so that on the worst night we already know what to do.
"""


class CompactVersion(Base):
    """Each edit of the compact is kept, so signers can see what changed."""

    __tablename__ = "compact_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    edited_at: Mapped[datetime]
    editor_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))

    editor: Mapped[Member | None] = relationship()


class CompactSignature(Base):
    __tablename__ = "compact_signature"

    id: Mapped[int] = mapped_column(primary_key=True)
    mark: Mapped[str] = mapped_column(String(MAX_MARK))
    signed_at: Mapped[datetime]
    version_id: Mapped[int | None] = mapped_column(ForeignKey("compact_version.id", ondelete="SET NULL"))


def current_text(session: Session) -> str:
    version = current_version(session)
    return version.text if version else DEFAULT_TEXT


def current_version(session: Session) -> CompactVersion | None:
    return session.scalar(select(CompactVersion).order_by(CompactVersion.id.desc()).limit(1))


def edit_text(session: Session, now: datetime, editor: Member, text: str) -> CompactVersion:
    version = CompactVersion(
        text=clean_text(text, field="compact text", max_length=MAX_TEXT, multiline=True),
        edited_at=now,
        editor=editor,
    )
    session.add(version)
    session.flush()
    return version


def sign(session: Session, now: datetime, mark: str) -> CompactSignature:
    version = current_version(session)
    signature = CompactSignature(
        mark=clean_text(mark, field="name or mark", max_length=MAX_MARK),
        signed_at=now,
        version_id=version.id if version else None,
    )
    session.add(signature)
    session.flush()
    return signature


def signature_count(session: Session) -> int:
    return session.scalar(select(func.count(CompactSignature.id)))


def signatures(session: Session) -> list[CompactSignature]:
    return list(session.scalars(select(CompactSignature).order_by(CompactSignature.id.desc())))


def remove_signature(session: Session, signature_id: int) -> None:
    signature = session.get(CompactSignature, signature_id)
    if signature is None:
        raise NotFound("That signature does not exist.")
    session.delete(signature)
    session.flush()
