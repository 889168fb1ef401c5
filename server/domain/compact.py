"""The Community Safety Compact: its versions, and who signed which.

Every edit makes a new version, with the assembly decision behind it. A
signature belongs to the version its signer read and is never moved to
another: when the text changes, the count starts again for the new text,
and the old signatures stay with the old one.

Signatures are a name or any mark the signer chooses. Only their number is
public; the marks themselves are for the host, who may need to remove a
prank signature.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from server.domain import power_record
from server.domain import sealing
from server.domain.base import Base
from server.domain.sealing import SealedText
from server.domain.errors import Conflict, Invalid, NotFound
from server.domain.people import HOST, Member
from server.domain.text import clean_text
from server.i18n import N_
from server.i18n import gettext as _

MAX_TEXT = 20_000
MAX_MARK = 60
MAX_DECISION = power_record.MAX_REASON
MIN_DECISION = 8  # "x" or "ok" names no decision anyone could look up

DEFAULT_TEXT = """We, the neighbours who keep this bench, agree:

1. We look out for each other, and we de-escalate before we do anything else.
2. We call on mediation before conflicts grow, and we keep what we hear in confidence.
3. Our patrol log is public, and it shows what we did, never who we saw.
4. No one is ever named, photographed or reported by this bench without their consent.
5. Every role here is lent by the assembly for a term, and ends unless the assembly renews it.
6. We rehearse together, so that on the worst night we already know what to do.
"""
# The text the hub comes with is version 1, kept as a row from its first signature or edit.
FIRST_NUMBER = 1
FIRST_DECISION = "The text the hub comes with, before any assembly changed it."
CHANGED_WHILE_READING = N_("The compact changed while you were reading it: this is now version %(number)d, shown "
                           "above. Read it, and sign again if you agree.")


class CompactVersion(Base):
    """One text of the compact, as the assembly decided it. Never changed once written."""

    __tablename__ = "compact_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    # 1, 2, 3...: what neighbours read as "version 3", and what the sign form carries.
    number: Mapped[int] = mapped_column(index=True, unique=True, server_default="0")
    text: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(Text, server_default="")
    edited_at: Mapped[datetime]
    editor_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))

    editor: Mapped[Member | None] = relationship()


class CompactSignature(Base):
    __tablename__ = "compact_signature"

    id: Mapped[int] = mapped_column(primary_key=True)
    mark: Mapped[str] = mapped_column(SealedText(sealing.COMPACT))
    signed_at: Mapped[datetime]
    # The version its signer read and signed; versions are never deleted.
    version_id: Mapped[int] = mapped_column(ForeignKey("compact_version.id"), index=True)

    version: Mapped[CompactVersion] = relationship()


def current_version(session: Session) -> CompactVersion | None:
    """The newest version, or None while the hub still shows the text it came with."""
    return session.scalar(select(CompactVersion).order_by(CompactVersion.number.desc()).limit(1))


def current_text(session: Session) -> str:
    version = current_version(session)
    return version.text if version else DEFAULT_TEXT


def current_number(session: Session) -> int:
    """The number of the text neighbours read now (the text the hub came with is 1, kept or not)."""
    version = current_version(session)
    return version.number if version else FIRST_NUMBER


def versions(session: Session) -> list[CompactVersion]:
    """Every version, newest first."""
    return list(session.scalars(select(CompactVersion).order_by(CompactVersion.number.desc())))


def _first_version(session: Session, now: datetime) -> CompactVersion:
    """Keep the text the hub came with as version 1, so what is signed on it, or changed from it, has a row."""
    version = CompactVersion(number=FIRST_NUMBER, text=DEFAULT_TEXT.strip("\n"), decision=FIRST_DECISION,
                             edited_at=now, editor=None)
    session.add(version)
    session.flush()
    return version


def _check_still_current(session: Session, read_number: int | None, message: str, field: str) -> None:
    if read_number != current_number(session):
        raise Conflict(_(message, number=current_number(session)), field=field)


def edit_text(session: Session, now: datetime, editor: Member, text: str, decision: str,
              based_on: int | None = None) -> CompactVersion:
    """Publish a new version decided by the assembly; the old one and its signatures stay as they were.

    ``based_on`` is the version the editor started from: if another edit was
    published meanwhile, this one is refused rather than overwrite it unseen.
    """
    text = clean_text(text, field="compact text", max_length=MAX_TEXT, multiline=True)
    decision = clean_text(decision, field="decision", max_length=MAX_DECISION)
    if len(decision) < MIN_DECISION:
        raise Invalid(_("Name the assembly decision behind this text: its date, the meeting, and what it decided "
                        "(for example “assembly 3 Dec, item 4: adopt the new clause 7”)."), field="decision")
    if based_on is not None:
        _check_still_current(session, based_on, N_("Another host published version %(number)d of the compact "
                                                   "while you were editing. Read it, then make your change to it."),
                             "text")
    previous = current_version(session) or _first_version(session, now)
    if text == previous.text.strip("\n"):
        raise Invalid(_("This is the text already published: change it, or leave the page."), field="text")
    version = CompactVersion(number=previous.number + 1, text=text, decision=decision, edited_at=now, editor=editor)
    session.add(version)
    session.flush()
    power_record.record(session, now, actor=editor, role=HOST, action="compact-edited",
                        subject=f"compact version {version.number}", reason=decision)
    return version


def sign(session: Session, now: datetime, mark: str, read_number: int | None) -> CompactSignature:
    """Sign the version the signer read, which must still be the current one.

    ``read_number`` is the version the sign form was shown with. If the text
    changed since, the signature is refused: it is never put on a text its
    signer did not read.
    """
    mark = clean_text(mark, field="name or mark", max_length=MAX_MARK)
    _check_still_current(session, read_number, CHANGED_WHILE_READING, "version")
    version = current_version(session) or _first_version(session, now)
    signature = CompactSignature(mark=mark, signed_at=now, version=version)
    session.add(signature)
    session.flush()
    return signature


def signature_count(session: Session) -> int:
    """How many signed the current text: signatures of earlier versions count for those versions only."""
    version = current_version(session)
    if version is None:
        return 0
    return session.scalar(select(func.count(CompactSignature.id)).where(CompactSignature.version_id == version.id))


def signature_counts(session: Session) -> dict[int, int]:
    """Signatures per version id."""
    rows = session.execute(select(CompactSignature.version_id, func.count(CompactSignature.id))
                           .group_by(CompactSignature.version_id))
    return {version_id: count for version_id, count in rows}


def signatures(session: Session) -> list[CompactSignature]:
    return list(session.scalars(select(CompactSignature).options(selectinload(CompactSignature.version))
                                .order_by(CompactSignature.id.desc())))


def remove_signature(session: Session, now: datetime, host: Member, signature_id: int, reason: str) -> None:
    """Take a prank signature out (or one its signer took back); it lowers a public count, so it is recorded."""
    signature = session.get(CompactSignature, signature_id)
    if signature is None:
        raise NotFound(_("That signature does not exist (another host may have removed it already)."))
    reason = clean_text(reason, field="reason", max_length=power_record.MAX_REASON)
    # The record names the version, never the mark: a mark may be someone's name.
    power_record.record(session, now, actor=host, role=HOST, action="signature-removed",
                        subject=f"a signature on compact version {signature.version.number}", reason=reason)
    session.delete(signature)
    session.flush()


# -- what changed between two versions ------------------------------------------

SAME, ADDED, REMOVED = "same", "added", "removed"


@dataclass(frozen=True)
class Piece:
    kind: str  # SAME, ADDED or REMOVED
    text: str


@dataclass(frozen=True)
class ChangedLine:
    """One line that differs: added, removed, or changed (with its words marked)."""

    kind: str  # ADDED, REMOVED or "changed"
    pieces: tuple[Piece, ...]


# A word with the space after it: runs of unchanged words then read as such, not as shared spaces.
_WORDS = re.compile(r"\s*\S+\s*|\s+")
SIMILAR = 0.5  # below this share of words in common, a line was replaced, not changed


def _word_changes(before: list[str], after: list[str]) -> tuple[Piece, ...]:
    pieces: list[Piece] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if op == "equal":
            pieces.append(Piece(SAME, "".join(before[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(Piece(REMOVED, "".join(before[i1:i2])))
        if j2 > j1:
            pieces.append(Piece(ADDED, "".join(after[j1:j2])))
    return tuple(pieces)


def _line_changes(old_line: str, new_line: str) -> list[ChangedLine]:
    before, after = _WORDS.findall(old_line), _WORDS.findall(new_line)
    if difflib.SequenceMatcher(None, before, after, autojunk=False).ratio() >= SIMILAR:
        return [ChangedLine("changed", _word_changes(before, after))]
    return [ChangedLine(kind, (Piece(kind, line),)) for kind, line in ((REMOVED, old_line), (ADDED, new_line))
            if line.strip()]


def what_changed(old: str, new: str) -> list[ChangedLine]:
    """The lines that differ between two texts, with the words changed within a line marked."""
    before = old.strip("\n").split("\n")
    after = new.strip("\n").split("\n")
    changes: list[ChangedLine] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        old_lines, new_lines = before[i1:i2], after[j1:j2]
        paired = min(len(old_lines), len(new_lines)) if op == "replace" else 0
        for old_line, new_line in zip(old_lines[:paired], new_lines[:paired]):
            changes.extend(_line_changes(old_line, new_line))
        changes.extend(ChangedLine(REMOVED, (Piece(REMOVED, line),)) for line in old_lines[paired:] if line.strip())
        changes.extend(ChangedLine(ADDED, (Piece(ADDED, line),)) for line in new_lines[paired:] if line.strip())
    return changes


@dataclass(frozen=True)
class HistoryEntry:
    version: CompactVersion
    signatures: int
    changes: list[ChangedLine] | None  # None for the first version: nothing before it


def history(session: Session) -> list[HistoryEntry]:
    """Every version, newest first, with its own count and what it changed from the one before."""
    counts = signature_counts(session)
    kept = versions(session)
    entries = []
    for version, before in zip(kept, [*kept[1:], None]):
        changes = what_changed(before.text, version.text) if before is not None else None
        entries.append(HistoryEntry(version, counts.get(version.id, 0), changes))
    return entries
