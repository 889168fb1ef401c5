"""The ledger on paper: one sheet a month, each line hashed into a chain that runs from sheet to sheet.

The assembly reads the mutual-credit ledger on paper and photographs it
(issue 16). ``safebench ledger-sheet`` prints a month's entries; this module
says what a sheet holds, how its hash is made, and records each sheet printed.

What a sheet shows is what the public ledger shows, never more: crews and the
bail fund by name; every member by the same neutral label "M" (a number per
member would tie each member's lines together, and a month's lines add up to
their balance), with the handle beside it only while they choose to show
their balance; an anonymous contribution as "anonymous"; a memo only where a
crew or the fund is one side (between two members it is theirs alone); a bail
payout's memo as its case code at most.

The hash (``CHAIN_VERSION`` 1), defined so anyone can recompute it:
- ``head`` = SHA-256 of the canonical JSON ``["safebench-ledger-sheet", 1, period, previous_hash]``;
- each entry's link = SHA-256 of ``<link before, 64 hex> + " " + <the entry's canonical JSON>``,
  the entry's canonical JSON being ``[entry_id, "YYYY-MM-DDTHH:MM:SSZ", from, to, amount, memo]``
  with from and to the neutral labels (never a handle: a member who shows or hides
  their handle later changes no hash), amount as the decimal text printed and memo as printed;
- the sheet's hash = SHA-256 of ``["end", period, previous_hash, entry_count, <last link>]``.
Canonical JSON: UTF-8, no ASCII escaping, separators "," and ":".

A sheet is recorded once (period, bounds in UTC, previous hash, own hash, entry
count, printed at) and never rewritten: printing the month again recomputes it
from the ledger and must give the recorded hash, or the ledger was changed
after it was printed. A correction is a reverse entry, made later, so it lands
on a later sheet. Each sheet's previous hash is the recorded hash of the month
before (``GENESIS`` for the first), so the months cannot be reordered, left out
or rewritten without the chain saying so.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

from sqlalchemy import String, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.domain.base import Base
from server.domain.errors import Conflict, Invalid, NotFound
from server.i18n import gettext as _
from server.i18n import ngettext

CHAIN_VERSION = 1
GENESIS = "0" * 64
PERIOD = re.compile(r"^(\d{4})-(\d{2})$")
HASH = re.compile(r"^[0-9a-f]{64}$")
MEMBER_LABEL = "M"  # a code, not a word: the same in every language, as a case code is
ANONYMOUS = "anonymous"  # in the hash as this word; the page translates what it shows


class _Fingerprints:
    """What a person compares by eye: a sheet's ``hash`` and its ``previous_hash``, short (``fingerprint``)."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.hash)

    @property
    def previous_fingerprint(self) -> str:
        return fingerprint(self.previous_hash)


class LedgerSheet(_Fingerprints, Base):
    """A sheet printed for the assembly. Recorded once; only ``reprinted_at`` moves after."""

    __tablename__ = "ledger_sheet"

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(7), unique=True)  # "2026-11"
    # The month's bounds in UTC as they were when first printed: a later change of
    # SAFEBENCH_TIMEZONE moves no entry from one recorded sheet to another.
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    entry_count: Mapped[int]
    printed_at: Mapped[datetime]
    reprinted_at: Mapped[datetime | None]


class SheetIsRecorded(Exception):
    """Code tried to change a recorded sheet's content: a bug, never a user's input."""


@event.listens_for(Session, "before_flush")
def _refuse_rewrites(session: Session, flush_context, instances) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if not isinstance(obj, LedgerSheet):
            continue
        if obj in session.deleted:
            raise SheetIsRecorded("A printed ledger sheet is never deleted.")
        from sqlalchemy import inspect

        state = inspect(obj)
        changed = {attr.key for attr in state.attrs if attr.history.has_changes()}
        if changed - {"reprinted_at"}:
            raise SheetIsRecorded(f"A printed ledger sheet is never rewritten ({', '.join(sorted(changed))}).")


def fingerprint(value: str) -> str:
    """The hash in groups of four, for reading aloud and comparing by eye: the whole of it, 16 groups."""
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4))


# -- months -------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        match = PERIOD.match(text.strip())
        if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
            raise Invalid(_("%(text)s is not a month: write it as YYYY-MM, e.g. 2026-11.", text=repr(text)),
                          field="month")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)


def last_closed_month(today: date) -> Month:
    """The month before ``today``'s (the hub's local day): the newest one that can no longer change."""
    return Month.of(today).previous()


# -- what a sheet holds ---------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """One side of an entry as the ledger knows it; ``public_label`` decides what paper shows."""

    key: str  # stable within the ledger: "account:<id>", unique per account
    name: str | None  # a crew's or the bail fund's name; None for a member's own account
    handle: str | None = None  # the member's handle, given only while they choose to show it
    anonymous: bool = False  # an anonymous contribution: not even a per-sheet label


@dataclass(frozen=True)
class LedgerRow:
    """An entry of the ledger as the sheet receives it: already public-safe in its memo."""

    entry_id: int
    at: datetime  # naive UTC
    giver: Party
    receiver: Party
    amount: str  # the amount as printed (decimal text)
    memo: str  # what the public may read: a bail payout's case code at most


@dataclass(frozen=True)
class Line:
    entry_id: int
    at: datetime
    giver: str  # the label in the hash: a crew's name, M, or "anonymous"
    receiver: str
    giver_handle: str | None  # shown beside the label, never hashed
    receiver_handle: str | None
    amount: str
    memo: str
    link: str  # the chain's running hash after this line

    def canonical(self) -> bytes:
        return canonical_entry(self.entry_id, self.at, self.giver, self.receiver, self.amount, self.memo)


@dataclass(frozen=True)
class Sheet(_Fingerprints):
    period: Month
    starts_at: datetime
    ends_at: datetime
    previous_hash: str
    lines: tuple[Line, ...]
    hash: str
    recorded: LedgerSheet | None = field(default=None, compare=False)


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def utc_stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_entry(entry_id: int, at: datetime, giver: str, receiver: str, amount: str, memo: str) -> bytes:
    return _json([entry_id, utc_stamp(at), giver, receiver, amount, memo])


def head(period: str, previous_hash: str) -> str:
    return hashlib.sha256(_json(["safebench-ledger-sheet", CHAIN_VERSION, period, previous_hash])).hexdigest()


def link(before: str, canonical: bytes) -> str:
    return hashlib.sha256(before.encode("ascii") + b" " + canonical).hexdigest()


def seal(period: str, previous_hash: str, count: int, last_link: str) -> str:
    return hashlib.sha256(_json(["end", period, previous_hash, count, last_link])).hexdigest()


def chain_hash(period: str, previous_hash: str, canonicals: Iterable[bytes]) -> str:
    """The sheet's hash from its entries' canonical bytes, in order: what a check outside the hub recomputes."""
    running, count = head(period, previous_hash), 0
    for canonical in canonicals:
        running, count = link(running, canonical), count + 1
    return seal(period, previous_hash, count, running)


def build(period: Month, starts_at: datetime, ends_at: datetime, previous_hash: str,
          rows: Sequence[LedgerRow]) -> Sheet:
    """Lay out ``rows`` (in the ledger's order) as a sheet: labels, the running hash, the sheet's hash."""
    def label(party: Party) -> str:
        if party.anonymous:
            return ANONYMOUS
        if party.name is not None:
            return party.name
        return MEMBER_LABEL

    running = head(str(period), previous_hash)
    lines = []
    for row in rows:
        giver, receiver = label(row.giver), label(row.receiver)
        running = link(running, canonical_entry(row.entry_id, row.at, giver, receiver, row.amount, row.memo))
        lines.append(Line(row.entry_id, row.at, giver, receiver,
                          None if row.giver.anonymous else row.giver.handle, row.receiver.handle,
                          row.amount, row.memo, running))
    return Sheet(period, starts_at, ends_at, previous_hash, tuple(lines),
                 seal(str(period), previous_hash, len(lines), running))


# -- recording and checking -----------------------------------------------------


Reader = Callable[[Session, datetime, datetime], Sequence[LedgerRow]]


_CASE_CODE = re.compile(r"\bC\d{1,6}\b", re.IGNORECASE)


def _party(account_id: int, kind: str, name: str | None, handle: str | None, public: bool,
           anonymous: bool) -> Party:
    from server.domain import ledger

    key = f"account:{account_id}"
    if anonymous:
        return Party(key, None, anonymous=True)
    if kind == ledger.MEMBER:
        # As the public ledger shows a member: by handle only while they choose to show their balance.
        return Party(key, None, handle=handle if public else None)
    # Crews, the fund and the outside by the name stored (the same in every language; the page glosses it).
    return Party(key, name or {ledger.FUND: ledger.FUND_NAME, ledger.OUTSIDE: ledger.OUTSIDE_NAME}.get(kind, ""))


def public_memo(kind: str, memo: str) -> str:
    """The memo as paper shows it: a payout from the bail fund keeps its case codes and nothing else."""
    from server.domain import ledger

    if kind == ledger.PAYOUT:
        return " ".join(code.upper() for code in _CASE_CODE.findall(memo))
    return memo


def ledger_rows(session: Session, start: datetime, end: datetime) -> list[LedgerRow]:
    """The ledger's entries with ``start <= at < end``, in its order (id), as a sheet receives them.

    Two plain statements, no ORM objects: every account with its member's
    handle, then the month's entries as tuples (a busy month is thousands of
    rows, and the sheet's check page builds one on request).
    """
    from server.domain import ledger
    from server.domain.people import Member

    Account, Entry = ledger.LedgerAccount, ledger.LedgerEntry
    accounts = {row[0]: row for row in session.execute(
        select(Account.id, Account.kind, Account.name, Member.handle, Account.balance_public)
        .outerjoin(Member, Member.id == Account.member_id))}
    parties: dict[tuple[int, bool], Party] = {}

    def party(account_id: int, anonymous: bool) -> Party:
        key = (account_id, anonymous)
        if key not in parties:
            _id, kind, name, handle, public = accounts[account_id]
            parties[key] = _party(account_id, kind, name, handle, bool(public), anonymous)
        return parties[key]

    rows = []
    for entry_id, at, kind, giver_id, receiver_id, amount, memo, anonymous in session.execute(
            select(Entry.id, Entry.at, Entry.kind, Entry.giver_id, Entry.receiver_id, Entry.amount, Entry.memo,
                   Entry.anonymous).where(Entry.at >= start, Entry.at < end).order_by(Entry.id)):
        # An anonymous contribution hides its giver; its correction (from the fund back to them), its receiver.
        hide_receiver = bool(anonymous) and accounts[giver_id][1] == ledger.FUND
        between_members = accounts[giver_id][1] == ledger.MEMBER and accounts[receiver_id][1] == ledger.MEMBER
        rows.append(LedgerRow(entry_id, at, party(giver_id, bool(anonymous) and not hide_receiver),
                              party(receiver_id, hide_receiver), str(amount),
                              "" if between_members else public_memo(kind, memo or "")))
    return rows


def first_entry_at(session: Session) -> datetime | None:
    from sqlalchemy import func

    from server.domain import ledger

    return session.scalar(select(func.min(ledger.LedgerEntry.at)))


def recorded(session: Session, period: Month) -> LedgerSheet | None:
    return session.scalar(select(LedgerSheet).where(LedgerSheet.period == str(period)))


def by_hash(session: Session, value: str) -> LedgerSheet | None:
    return session.scalar(select(LedgerSheet).where(LedgerSheet.hash == value))


def every_sheet(session: Session) -> list[LedgerSheet]:
    """Every recorded sheet, newest month first."""
    return list(session.scalars(select(LedgerSheet).order_by(LedgerSheet.period.desc())))


def _previous_hash(session: Session, period: Month, starts_at: datetime, first_entry_at: datetime | None) -> str:
    before = recorded(session, period.previous())
    if before is not None:
        return before.hash
    earlier = session.scalar(select(LedgerSheet).where(LedgerSheet.period < str(period))
                             .order_by(LedgerSheet.period.desc()).limit(1))
    if earlier is not None or (first_entry_at is not None and first_entry_at < starts_at):
        # A month left out would break the chain for good: print them in order.
        raise Conflict(_("Print the sheet for %(before)s first: each sheet carries the hash of the month before.",
                         before=str(period.previous())), field="month")
    later = session.scalar(select(LedgerSheet).where(LedgerSheet.period > str(period)).limit(1))
    if later is not None:
        raise Conflict(_("The sheets start at %(first)s: a month before the first sheet has no place in the "
                         "chain.", first=session.scalar(select(LedgerSheet.period).order_by(LedgerSheet.period)
                                                        .limit(1))), field="month")
    return GENESIS


def recompute(session: Session, sheet: LedgerSheet, read: Reader) -> Sheet:
    """A recorded sheet built again from the ledger as it is now, on its recorded bounds and previous hash."""
    period = Month.parse(sheet.period)
    return build(period, sheet.starts_at, sheet.ends_at, sheet.previous_hash,
                 read(session, sheet.starts_at, sheet.ends_at))


class SheetChanged(Conflict):
    """The ledger no longer gives the hash recorded when the sheet was first printed."""


def print_sheet(session: Session, now: datetime, period: Month, bounds: tuple[datetime, datetime], read: Reader,
                first_entry_at: datetime | None) -> Sheet:
    """The month's sheet, recorded the first time it is printed; the same sheet again every later time.

    ``bounds`` are the month's start and end in UTC as the hub's time zone
    says now (used only the first time); ``first_entry_at`` is the ledger's
    oldest entry, to refuse a first sheet that would leave earlier months off
    paper.
    """
    existing = recorded(session, period)
    if existing is not None:
        again = recompute(session, existing, read)
        if again.hash != existing.hash:
            raise SheetChanged(_("The ledger's entries for %(period)s no longer give the hash printed on "
                                 "%(printed)s: they were changed after the sheet was printed. Nothing printed; "
                                 "run `safebench ledger-verify %(period)s` to see where.",
                                 period=str(period), printed=existing.printed_at.strftime("%Y-%m-%d")))
        existing.reprinted_at = now
        session.flush()
        return Sheet(again.period, again.starts_at, again.ends_at, again.previous_hash, again.lines, again.hash,
                     existing)
    starts_at, ends_at = bounds
    if ends_at > now:
        raise Conflict(_("%(period)s has not ended yet: a sheet is printed once its month is closed, so that "
                         "nothing can be added to it after.", period=str(period)), field="month")
    previous_hash = _previous_hash(session, period, starts_at, first_entry_at)
    sheet = build(period, starts_at, ends_at, previous_hash, read(session, starts_at, ends_at))
    row = LedgerSheet(period=str(period), starts_at=starts_at, ends_at=ends_at, previous_hash=previous_hash,
                      hash=sheet.hash, entry_count=len(sheet.lines), printed_at=now)
    session.add(row)
    session.flush()
    return Sheet(sheet.period, starts_at, ends_at, previous_hash, sheet.lines, sheet.hash, row)


# -- what a photograph or a reader brings ------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What a sheet says of itself: its hash, and from its QR code, its month and the previous hash."""

    hash: str
    period: str | None = None
    previous_hash: str | None = None


def qr_payload(check_url: str, sheet: Sheet) -> str:
    """The sheet's QR code: the hub's check page for this sheet, the claim in its query string."""
    return f"{check_url}?{urlencode({'month': str(sheet.period), 'hash': sheet.hash, 'previous': sheet.previous_hash})}"


def read_claim(text: str) -> Claim:
    """A claim from a QR code's payload (the check page's address) or a hash typed or pasted, spaces allowed."""
    text = text.strip()
    if "?" in text or text.lower().startswith(("http://", "https://")):
        query = parse_qs(urlsplit(text).query)
        values = {key: (query.get(key) or [""])[0].strip().lower() for key in ("month", "hash", "previous")}
        if not HASH.match(values["hash"]):
            raise Invalid(_("This code is not a ledger sheet's: it carries no sheet hash."), field="hash")
        if values["month"]:
            values["month"] = str(Month.parse(values["month"]))
        return Claim(values["hash"], values["month"] or None,
                     values["previous"] if HASH.match(values["previous"]) else None)
    compact = re.sub(r"[\s:-]", "", text).lower()
    if not HASH.match(compact):
        raise Invalid(_("A sheet's hash is 64 characters, 0-9 and a-f (spaces between groups are fine)."),
                      field="hash")
    return Claim(compact)


@dataclass(frozen=True)
class Finding:
    ok: bool
    message: str


@dataclass(frozen=True)
class Verdict:
    sheet: LedgerSheet | None
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return self.sheet is not None and all(finding.ok for finding in self.findings)


def check(session: Session, claim: Claim, read: Reader | None, *, whole_chain: bool = False) -> Verdict:
    """Is this the hub's sheet, unchanged, and does it chain from the month before?

    With ``read``, the sheet (and with ``whole_chain`` every sheet before it)
    is built again from the ledger and must give its recorded hash: a change
    made in the database after printing shows here.
    """
    sheet = by_hash(session, claim.hash)
    if sheet is None:
        if claim.period and (same := recorded(session, Month.parse(claim.period))) is not None:
            return Verdict(None, (Finding(False, _(
                "This is not the hub's sheet for %(period)s: the hub recorded %(fingerprint)s.",
                period=claim.period, fingerprint=same.fingerprint)),))
        return Verdict(None, (Finding(False, _("No sheet with this hash was printed by this hub.")),))
    findings = [Finding(True, ngettext("The hub printed this sheet for %(period)s on %(printed)s: %(num)d entry.",
                                       "The hub printed this sheet for %(period)s on %(printed)s: %(num)d entries.",
                                       sheet.entry_count, period=sheet.period,
                                       printed=sheet.printed_at.strftime("%Y-%m-%d")))]
    if claim.period and claim.period != sheet.period:
        findings.append(Finding(False, _("The code says %(claimed)s, but this hash is the sheet for %(period)s.",
                                         claimed=claim.period, period=sheet.period)))
    if claim.previous_hash and claim.previous_hash != sheet.previous_hash:
        findings.append(Finding(False, _("The previous hash on the code is not the one this sheet was printed with.")))
    findings.extend(_chain_findings(session, sheet, read, whole_chain))
    return Verdict(sheet, tuple(findings))


def _chain_findings(session: Session, sheet: LedgerSheet, read: Reader | None, whole_chain: bool) -> list[Finding]:
    findings = []
    current: LedgerSheet | None = sheet
    while current is not None:
        if read is not None:
            again = recompute(session, current, read)
            if again.hash == current.hash:
                findings.append(Finding(True, _("%(period)s: the ledger's entries still give this hash.",
                                                period=current.period)))
            else:
                findings.append(Finding(False, _(
                    "%(period)s: the ledger's entries no longer give the printed hash: they were changed after "
                    "printing (now %(now)s entries, %(then)s printed).",
                    period=current.period, now=len(again.lines), then=current.entry_count)))
        before = recorded(session, Month.parse(current.period).previous())
        if before is None:
            if current.previous_hash == GENESIS and not session.scalar(
                    select(LedgerSheet.id).where(LedgerSheet.period < current.period).limit(1)):
                findings.append(Finding(True, _("%(period)s is the first sheet: the chain starts there.",
                                                period=current.period)))
            else:
                findings.append(Finding(False, _("%(period)s: the sheet for the month before is missing.",
                                                 period=current.period)))
            break
        if current.previous_hash == before.hash:
            findings.append(Finding(True, _("%(period)s chains from the sheet for %(before)s (%(fingerprint)s).",
                                            period=current.period, before=before.period,
                                            fingerprint=before.fingerprint)))
        else:
            findings.append(Finding(False, _("%(period)s does not chain from the sheet for %(before)s: its previous "
                                             "hash is not that sheet's.", period=current.period, before=before.period)))
        current = before if whole_chain else None
    return findings


def require(session: Session, period: Month) -> LedgerSheet:
    sheet = recorded(session, period)
    if sheet is None:
        raise NotFound(_("No sheet was printed for %(period)s.", period=str(period)))
    return sheet
