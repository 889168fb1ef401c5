"""The mutual-credit ledger: accounts for members and crews, transfers, and the bail and legal fund.

A unit is one **credit**: an hour of a neighbour's time, or what the crews
agree is worth the same (a loaf from the kitchen, a brake fixed at the bike
workshop). Credits are made by exchange, never issued: every entry moves a
whole number of credits from one account (the giver) to another (the
receiver), so the balances of all accounts always add up to zero. An
account may go below zero, as far as its credit limit: past the *soft*
limit a transfer goes through with a warning, past the *hard* limit it is
refused, with the limit and the balance in the message.

Nothing here is deleted or edited. A transfer is proposed by the giver and
becomes an entry only when the receiver confirms it; a mistaken entry is
corrected by a reversal, a new entry the other way round that points at it.

Who acts for an account:

- a member's own account: that member (opened at first use, with the hub's
  default limits; the assembly may set others);
- a crew's account (the kitchen, the bike workshop, the patrol): its
  *keepers*, members the assembly's decision named. A host in office has no
  power over a crew's credits, only over its limits and keepers, and only
  on an assembly decision that a second host countersigns (the record of
  power used shows both);
- the bail and legal fund: the care ring (role CARE in force). Money that
  leaves for bail or a lawyer goes to the *outside* account (the world
  beyond the ledger), and cash put in the tin comes from it, so the fund's
  payouts name no receiving person at all. A fund memo holds a case code and
  what it paid for, in a short vocabulary, never a name (``check_fund_memo``).

What a seized card holds: a memo between two members is theirs alone, sealed
to each one's own key (``sealed_memo``, server/domain/sealing.py ``OWN``);
the plain ``memo`` holds only what the month's printed sheet shows anyway (a
crew's or the fund's side). Which accounts exchanged how many credits, and
the balances, stay readable: the hub must check limits and sums, and the
bridge confirm a PAY, without anyone's key. So does the member account an
anonymous gift came from, for the same reason (the balance it left); only
cash in the fund's tin leaves no trace of its giver (README).

Patrol hours earn credits only for stewards who opted in, paid by the crew
whose decision says it pays them: one entry per closed shift, its hours
rounded to whole ones and its time set to the start of that week (Monday
00:00 UTC), never the shift's start or end, so the ledger cannot be read as
a timesheet of who was out at night.

Concurrency: every function that moves credits first takes the write lock
(``server.db.begin_writing``, a no-op when the caller's transaction already
writes), then reads the balances, so two confirmations at once can neither
break the zero sum nor slip past a limit together. The balance kept on each
account is changed only in the same transaction as its entry; ``audit_sums``
recomputes it from the entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    event,
    extract,
    func,
    select,
    union_all,
)
from sqlalchemy.orm import (
    InstrumentedAttribute,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)

from server.db import begin_writing
from server.domain import people, power_record, sealing
from server.domain.base import Base
from server.domain.contact_in_text import find_contact
from server.domain.errors import Conflict, Invalid, NotFound
from server.domain.people import CARE, HOST, Decision, Member
from server.domain.radio_text import fits_one_packet
from server.domain.sealing import SealedText
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

MEMBER, CREW, FUND, OUTSIDE = "member", "crew", "fund", "outside"
KINDS = (MEMBER, CREW, FUND, OUTSIDE)
# Entry kinds: an exchange, the correction of one, patrol hours, and the fund's own movements.
TRANSFER, REVERSAL, PATROL, CONTRIBUTION, PAYOUT = "transfer", "reversal", "patrol", "contribution", "payout"
ENTRY_KINDS = (TRANSFER, REVERSAL, PATROL, CONTRIBUTION, PAYOUT)
# Transfer states.
PROPOSED, CONFIRMED, REFUSED, WITHDRAWN = "proposed", "confirmed", "refused", "withdrawn"
SOURCE_WEB, SOURCE_RADIO = "web", "radio"

MAX_NAME = 40
MAX_MEMO = 120
MAX_AMOUNT = 1000  # one transfer; more is a typing slip, or a matter for the assembly
MAX_LIMIT = 10000
# A member's account opens at first use with these; the assembly may set others.
MEMBER_SOFT_LIMIT = 10
MEMBER_HARD_LIMIT = 20
FUND_NAME = N_("Bail and legal fund")
OUTSIDE_NAME = N_("Outside the ledger")
# What a transfer becomes on the radio: "P12" (confirmed by GOT P12).
CODE_PREFIX = "P"

ENTRY_LABELS = Labels({
    TRANSFER: N_("exchange"),
    REVERSAL: N_("correction"),
    PATROL: N_("patrol hours"),
    CONTRIBUTION: N_("contribution"),
    PAYOUT: N_("payout"),
})
STATE_LABELS = Labels({
    PROPOSED: N_("waiting for the receiver"),
    CONFIRMED: N_("confirmed"),
    REFUSED: N_("refused"),
    WITHDRAWN: N_("withdrawn"),
})
# What a payout from the bail and legal fund was for (the memo's first words); stored in English.
FUND_PURPOSES = Labels({
    "bail": N_("bail"),
    "lawyer": N_("lawyer"),
    "court costs": N_("court costs"),
    "fine": N_("fine"),
    "travel": N_("travel"),
    "release welcome": N_("release welcome"),
    "phone card": N_("phone card"),
    "contribution": N_("contribution"),
})
# The only words a fund memo may hold besides case codes and numbers: the purposes and a few joining words,
# in the shipped languages. Anything else might be a name, and the fund never names the person arrested.
_FUND_WORDS = frozenset("""
bail lawyer lawyers legal court costs cost fees fee fine fines travel release welcome phone card contribution
part of for and first second third rest deposit bond interpreter food bus taxi train
fianza abogado abogada abogados costas tasas multa viaje bienvenida salida tarjeta teléfono telefono aporte
aportación contribución parte de para y resto depósito intérprete comida
كفالة محامي محام تكاليف المحكمة رسوم غرامة سفر ترحيب الإفراج بطاقة هاتف مساهمة جزء من ل و الباقي
""".split())
_CASE_CODE = re.compile(r"^C\d{1,6}$", re.IGNORECASE)
_MEMO_WORD = re.compile(r"[^\s,.;:/()\-#]+")


class LedgerAccount(Base):
    """An account: a member's, a crew's, the bail and legal fund, or the outside world's."""

    __tablename__ = "ledger_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    # A member's own account; SET NULL keeps the account (and the zero sum) if a member is ever removed.
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"), unique=True)
    # Crews, the fund and the outside have a name; a member's account is called by their handle.
    name: Mapped[str | None] = mapped_column(String(MAX_NAME))
    name_key: Mapped[str | None] = mapped_column(String(MAX_NAME), unique=True)
    # How far below zero: past soft a warning, past hard a refusal. None: no limit (the outside only).
    soft_limit: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    hard_limit: Mapped[int | None] = mapped_column(Integer)
    # The sum of its entries, changed only with them (audit_sums checks).
    balance: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Running totals of what it gave (corrections included), kept with each entry like the balance, so the public
    # page's "N entries, M credits moved" sums a few hundred accounts instead of scanning the whole ledger.
    entries_given: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    credits_given: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    opened_at: Mapped[datetime]
    # A crew's or the fund's account moves nothing until its opening decision is countersigned.
    in_force_at: Mapped[datetime | None]
    # The crew whose decision says it pays stewards' patrol hours (at most one).
    pays_patrol_hours: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # A member's own choices, off until they turn them on: credits for patrol hours, and a public balance.
    earns_patrol_credit: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    balance_public: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    member: Mapped[Member | None] = relationship()
    keepers: Mapped[list[LedgerKeeper]] = relationship(back_populates="account", cascade="all, delete-orphan",
                                                       order_by="LedgerKeeper.id")

    @property
    def title(self) -> str:
        """How pages name the account: the crew's name, or the member's handle."""
        if self.kind == MEMBER:
            return self.member.handle if self.member is not None else _("a former member")
        if self.kind == FUND:
            return _(FUND_NAME) if self.name == FUND_NAME else self.name or ""
        if self.kind == OUTSIDE:
            return _(OUTSIDE_NAME)
        return self.name or ""

    @property
    def in_force(self) -> bool:
        return self.in_force_at is not None

    def __repr__(self) -> str:
        return f"<LedgerAccount {self.kind} {self.id} {self.balance}>"


class LedgerKeeper(Base):
    """A member the assembly named to act for a crew's account: propose from it, confirm into it."""

    __tablename__ = "ledger_keeper"
    __table_args__ = (UniqueConstraint("account_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    named_at: Mapped[datetime]

    account: Mapped[LedgerAccount] = relationship(back_populates="keepers")
    member: Mapped[Member] = relationship()


class LedgerDecision(Base):
    """The assembly's decision on an account: open it, set its limits, name its keepers. In force once countersigned."""

    __tablename__ = "ledger_decision"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id", ondelete="CASCADE"), index=True)
    opens: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    soft_limit: Mapped[int] = mapped_column(Integer)
    hard_limit: Mapped[int] = mapped_column(Integer)
    # Handles, comma-separated; None leaves the keepers as they are (a member's account has none).
    keepers: Mapped[str | None] = mapped_column(Text)
    decided_on: Mapped[date] = mapped_column(Date)
    decision_place: Mapped[str] = mapped_column(String(people.MAX_PLACE))
    decision: Mapped[str] = mapped_column(Text)
    asked_at: Mapped[datetime]
    asked_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    countersigned_at: Mapped[datetime | None]
    countersigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    withdrawn_at: Mapped[datetime | None]

    account: Mapped[LedgerAccount] = relationship()
    asked_by: Mapped[Member | None] = relationship(foreign_keys=[asked_by_id])
    countersigned_by: Mapped[Member | None] = relationship(foreign_keys=[countersigned_by_id])

    @property
    def pending(self) -> bool:
        return self.countersigned_at is None and self.withdrawn_at is None

    @property
    def reference(self) -> str:
        return people.decision_reference(self.decided_on, self.decision_place)

    @property
    def keeper_handles(self) -> list[str]:
        return [h for h in (self.keepers or "").split(",") if h]


class LedgerEntry(Base):
    """One movement of credits: never changed, never deleted. The ledger's order is ``id``."""

    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    # When it was confirmed; for patrol hours, the Monday 00:00 UTC of that week (never the shift's times).
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(12))
    giver_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"), index=True)
    receiver_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    # Only where a crew or the fund is a side (printed on the month's sheet); between two members, ``sealed_memo``.
    memo: Mapped[str] = mapped_column(String(MAX_MEMO), default="", server_default="")
    sealed_memo: Mapped[str | None] = mapped_column(SealedText(sealing.OWN))
    # A contribution given without a name: only the giver themself sees that it was theirs.
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # A correction points at the entry it undoes; an entry is undone at most once.
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entry.id"), unique=True)

    giver: Mapped[LedgerAccount] = relationship(foreign_keys=[giver_id])
    receiver: Mapped[LedgerAccount] = relationship(foreign_keys=[receiver_id])
    reverses: Mapped[LedgerEntry | None] = relationship(remote_side=[id], foreign_keys=[reverses_id])

    @property
    def kind_label(self) -> str:
        return ENTRY_LABELS.get(self.kind, self.kind)


class LedgerTransfer(Base):
    """A proposed transfer: the giver's offer, waiting for the receiver; it becomes an entry when confirmed."""

    __tablename__ = "ledger_transfer"

    id: Mapped[int] = mapped_column(primary_key=True)
    giver_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"), index=True)
    receiver_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    memo: Mapped[str] = mapped_column(String(MAX_MEMO), default="", server_default="")
    sealed_memo: Mapped[str | None] = mapped_column(SealedText(sealing.OWN))  # as on LedgerEntry
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    source: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(10), index=True)
    proposed_at: Mapped[datetime]
    proposed_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    # Why the hub refused it when the receiver confirmed (the giver's hard limit), or why the receiver did.
    refusal: Mapped[str | None] = mapped_column(String(300))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entry.id"), unique=True)

    giver: Mapped[LedgerAccount] = relationship(foreign_keys=[giver_id])
    receiver: Mapped[LedgerAccount] = relationship(foreign_keys=[receiver_id])
    proposed_by: Mapped[Member | None] = relationship(foreign_keys=[proposed_by_id])
    decided_by: Mapped[Member | None] = relationship(foreign_keys=[decided_by_id])
    entry: Mapped[LedgerEntry | None] = relationship()

    @property
    def code(self) -> str:
        """How the radio names it: ``P12``."""
        return f"{CODE_PREFIX}{self.id}"

    @property
    def state_label(self) -> str:
        return STATE_LABELS.get(self.state, self.state)


class LedgerFundMonth(Base):
    """What came into the bail fund and went out of it in one month (by ``at``, UTC), net of corrections: kept with
    each fund entry in the same transaction, like a balance, so the public page reads a dozen rows instead of every
    fund entry ever made (``audit_sums`` checks them against the entries)."""

    __tablename__ = "ledger_fund_month"

    month: Mapped[date] = mapped_column(Date, primary_key=True)  # its first day
    contributions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    payouts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LedgerIsAppendOnly(Exception):
    """Code tried to change or delete an entry: a bug, never a person's input."""


@event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, flush_context, instances) -> None:  # noqa: ANN001
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, LedgerEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise LedgerIsAppendOnly("Ledger entries are never changed or deleted; reverse one instead.")


# -- what a transfer tells the giver -------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What came of a proposal or a confirmation: the transfer, and a warning past the soft limit (or "")."""

    transfer: LedgerTransfer
    warning: str = ""
    # A memo between two members neither of whom has a key yet (no password on the hub): nothing to seal it to.
    memo_dropped: bool = False


# -- checking what people type -------------------------------------------------------------------------


def clean_amount(raw: object) -> int:
    """A whole number of credits from 1 to MAX_AMOUNT, refused with a sentence otherwise."""
    try:
        amount = int(str(raw).strip())
    except ValueError:
        raise Invalid(_("Give the amount as a whole number of credits, like 3."), field="amount") from None
    if not 1 <= amount <= MAX_AMOUNT:
        raise Invalid(_("An amount runs from 1 to %(most)d credits.", most=MAX_AMOUNT), field="amount")
    return amount


def clean_memo(raw: str | None) -> str:
    """A short memo, shown to both sides and printed on the ledger sheet: never a way to reach someone."""
    memo = " ".join(clean_text(raw, field="memo", max_length=MAX_MEMO, required=False).split())
    found = find_contact(memo)
    if found is not None:
        raise Invalid(_("A memo is read by others and printed at the assembly: please leave out %(what)s "
                        "(%(excerpt)s).", what=_(found.what), excerpt=found.shown), field="memo")
    return memo


def check_fund_memo(raw: str | None) -> str:
    """A memo on the bail and legal fund: case codes, numbers and the fund's short vocabulary, nothing else.

    A name cannot be told from other words, so anything outside the
    vocabulary is refused: "bail C11" and "lawyer fees C12 part 2" pass,
    "bail for Jamal C11" does not. The person arrested is never named here.
    """
    memo = clean_memo(raw)
    for word in _MEMO_WORD.findall(memo):
        if _CASE_CODE.match(word) or word.isdigit() or word.lower() in _FUND_WORDS:
            continue
        raise Invalid(_("The fund's memo holds a case code and what it paid for (like \"bail C11\" or \"lawyer "
                        "C12\"), never a name: %(word)s is not one of its words.", word=repr(word)), field="memo")
    return " ".join(word.upper() if _CASE_CODE.match(word) else word for word in memo.split())


def clean_crew_name(raw: str | None) -> str:
    name = " ".join(clean_text(raw, field="name", max_length=MAX_NAME).split())
    if find_contact(name) is not None:
        raise Invalid(_("A crew's name is public: please leave out any phone number, address or handle."),
                      field="name")
    return name


def check_limits(soft: object, hard: object) -> tuple[int, int]:
    """The soft and hard limits as numbers of credits below zero: 0 to MAX_LIMIT, and soft never past hard."""
    try:
        soft_n, hard_n = int(str(soft).strip()), int(str(hard).strip())
    except ValueError:
        raise Invalid(_("Give each limit as a whole number of credits below zero, like 20."),
                      field="hard_limit") from None
    if not (0 <= soft_n <= MAX_LIMIT and 0 <= hard_n <= MAX_LIMIT):
        raise Invalid(_("A limit runs from 0 to %(most)d credits below zero.", most=MAX_LIMIT), field="hard_limit")
    if soft_n > hard_n:
        raise Invalid(_("The warning comes before the stop: the soft limit (%(soft)d) cannot be past the hard "
                        "limit (%(hard)d).", soft=soft_n, hard=hard_n), field="soft_limit")
    return soft_n, hard_n


# -- accounts ------------------------------------------------------------------------------------------


def find_account(session: Session, account_id: int) -> LedgerAccount:
    account = session.get(LedgerAccount, account_id)
    if account is None:
        raise NotFound(_("There is no such account."))
    return account


def member_account(session: Session, member: Member) -> LedgerAccount | None:
    return session.scalar(select(LedgerAccount).where(LedgerAccount.member_id == member.id))


def account_for_member(session: Session, now: datetime, member: Member) -> LedgerAccount:
    """The member's own account, opened now with the default limits if they had none (nothing is recorded)."""
    account = member_account(session, member)
    if account is None:
        account = LedgerAccount(kind=MEMBER, member=member, soft_limit=MEMBER_SOFT_LIMIT,
                                hard_limit=MEMBER_HARD_LIMIT, balance=0, opened_at=now, in_force_at=now)
        session.add(account)
        session.flush()
    return account


def find_named(session: Session, name: str) -> LedgerAccount | None:
    """A crew or the fund by its name, case-insensitively."""
    return session.scalar(select(LedgerAccount).where(LedgerAccount.name_key == " ".join(name.split()).lower()))


def resolve_receiver(session: Session, now: datetime, name: str) -> LedgerAccount:
    """Whom "PAY kitchen" or the web form's "to" names: a crew, the fund, or a member by handle."""
    name = " ".join((name or "").split())
    if not name:
        raise Invalid(_("Say whom the credits go to: a crew's name or a member's handle."), field="to")
    account = find_named(session, name)
    if account is None and name.lower() in ("fund", "bail", "bail fund", _("fund").lower()):
        account = fund_account(session)
    if account is not None:
        if account.kind == OUTSIDE:
            raise Invalid(_("Nobody pays the outside account directly: the care ring records payouts."), field="to")
        return account
    member = people.find_member(session, name)
    if member is None:
        raise NotFound(_("No crew or member here goes by %(name)s.", name=repr(name[:MAX_NAME])), field="to")
    return account_for_member(session, now, member)


def fund_account(session: Session) -> LedgerAccount | None:
    return session.scalar(select(LedgerAccount).where(LedgerAccount.kind == FUND))


def outside_account(session: Session) -> LedgerAccount | None:
    return session.scalar(select(LedgerAccount).where(LedgerAccount.kind == OUTSIDE))


def crew_accounts(session: Session) -> list[LedgerAccount]:
    return list(session.scalars(select(LedgerAccount).where(LedgerAccount.kind == CREW)
                                .order_by(LedgerAccount.name_key)))


def is_keeper(account: LedgerAccount, member: Member) -> bool:
    return any(keeper.member_id == member.id for keeper in account.keepers)


def may_act_for(session: Session, now: datetime, account: LedgerAccount, member: Member) -> bool:
    """Whether ``member`` proposes from and confirms into ``account``."""
    if account.kind == MEMBER:
        return account.member_id == member.id
    if account.kind == CREW:
        return is_keeper(account, member)
    if account.kind == FUND:
        return people.has_role(session, member, CARE, now)
    return False  # the outside: only the fund's own moves touch it


def accounts_kept_by(session: Session, now: datetime, member: Member) -> list[LedgerAccount]:
    """The crews ``member`` keeps, and the fund if they are in the care ring."""
    kept = list(session.scalars(select(LedgerAccount).join(LedgerKeeper)
                                .where(LedgerKeeper.member_id == member.id).order_by(LedgerAccount.name_key)))
    fund = fund_account(session)
    if fund is not None and people.has_role(session, member, CARE, now):
        kept.append(fund)
    return kept


def _check_host(session: Session, now: datetime, by: Member | None, what: str) -> str:
    if by is None:
        return power_record.SYSTEM_ROLE
    if not people.has_role(session, by, HOST, now):
        raise Invalid(_("Only a host in office records the assembly's decision on an account (%(what)s).",
                        what=what), field="decision")
    return HOST


def _keepers_from(session: Session, handles: list[str] | str | None) -> str | None:
    if handles is None:
        return None
    if isinstance(handles, str):
        handles = [h for h in re.split(r"[,\n]", handles)]
    found = []
    for handle in (h.strip() for h in handles):
        if handle:
            found.append(people.get_member(session, handle).handle)
    return ",".join(dict.fromkeys(found))


def open_account(session: Session, now: datetime, name: str, *, kind: str = CREW, soft_limit: object,
                 hard_limit: object, keepers: list[str] | str | None, decision: Decision, by: Member | None,
                 pays_patrol_hours: bool = False) -> LedgerDecision:
    """A host records the assembly's decision to open a crew's account (or the fund): pending a second host.

    The account exists at once, so the decision can point at it, but moves
    nothing until another host countersigns (``countersign``). The fund's
    limits are 0: it pays out only what it holds. ``by`` None: the Pi's terminal.
    """
    acting = _check_host(session, now, by, _("open an account"))
    if kind not in (CREW, FUND):
        raise Invalid(_("The assembly opens accounts for crews and the bail and legal fund; a member's own "
                        "opens by itself."), field="kind")
    if kind == FUND:
        if fund_account(session) is not None:
            raise Conflict(_("The bail and legal fund already has its account."), field="name")
        name, soft, hard = FUND_NAME, 0, 0
    else:
        name = clean_crew_name(name)
        soft, hard = check_limits(soft_limit, hard_limit)
    if find_named(session, name) is not None:
        raise Conflict(_("An account called %(name)s exists already.", name=repr(name)), field="name")
    keeper_text = _keepers_from(session, keepers) if kind == CREW else None
    if kind == CREW and not keeper_text:
        raise Invalid(_("Name at least one keeper: the members who confirm what the crew receives and propose "
                        "what it gives."), field="keepers")
    account = LedgerAccount(kind=kind, name=name, name_key=name.lower(), soft_limit=soft, hard_limit=hard,
                            balance=0, opened_at=now, pays_patrol_hours=bool(pays_patrol_hours) and kind == CREW)
    session.add(account)
    session.flush()
    ask = _ask(session, now, account, soft, hard, keeper_text, decision, by, opens=True)
    power_record.record(session, now, actor=by, role=acting, action="ledger-account-opened",
                        subject=f"{kind}: {name}"[:120],
                        reason=f"limits {soft}/{hard} below zero, pending a countersign; "
                               f"the decision of {decision.reference}")
    return ask


def set_limits(session: Session, now: datetime, account: LedgerAccount, *, soft_limit: object, hard_limit: object,
               keepers: list[str] | str | None = None, decision: Decision, by: Member | None) -> LedgerDecision:
    """A host records the assembly's new limits (and keepers) for an account: in force once a second host countersigns."""
    acting = _check_host(session, now, by, _("set limits"))
    if account.kind == OUTSIDE:
        raise Invalid(_("The outside account has no limits to set."), field="hard_limit")
    soft, hard = check_limits(soft_limit, hard_limit)
    if account.kind == FUND and (soft or hard):
        raise Invalid(_("The bail and legal fund never goes below zero: its limits stay 0."), field="hard_limit")
    keeper_text = _keepers_from(session, keepers) if account.kind == CREW else None
    if account.kind == CREW and keepers is not None and not keeper_text:
        raise Invalid(_("A crew keeps at least one keeper."), field="keepers")
    if any(d.pending for d in pending_decisions(session, account)):
        raise Conflict(_("A decision on that account already waits for a countersign."), field="decision")
    ask = _ask(session, now, account, soft, hard, keeper_text, decision, by, opens=False)
    power_record.record(session, now, actor=by, role=acting, action="ledger-limits-set",
                        subject=f"{account.kind}: {_subject_name(account)}"[:120],
                        reason=f"limits {soft}/{hard} below zero"
                               f"{'; keepers ' + keeper_text if keeper_text else ''}, pending a countersign; "
                               f"the decision of {decision.reference}")
    return ask


def _ask(session: Session, now: datetime, account: LedgerAccount, soft: int, hard: int, keepers: str | None,
         decision: Decision, by: Member | None, *, opens: bool) -> LedgerDecision:
    """The assembly's decision as a host recorded it, waiting for a second host's countersign."""
    ask = LedgerDecision(account=account, opens=opens, soft_limit=soft, hard_limit=hard, keepers=keepers,
                         decided_on=decision.on, decision_place=decision.place, decision=decision.words,
                         asked_at=now, asked_by=by)
    session.add(ask)
    session.flush()
    return ask


def _subject_name(account: LedgerAccount) -> str:
    if account.kind == MEMBER:
        return account.member.handle if account.member is not None else f"account {account.id}"
    return account.name or f"account {account.id}"


def pending_decisions(session: Session, account: LedgerAccount | None = None) -> list[LedgerDecision]:
    query = select(LedgerDecision).where(LedgerDecision.countersigned_at.is_(None),
                                         LedgerDecision.withdrawn_at.is_(None))
    if account is not None:
        query = query.where(LedgerDecision.account_id == account.id)
    return list(session.scalars(query.order_by(LedgerDecision.id)))


def decisions_of(session: Session, account: LedgerAccount) -> list[LedgerDecision]:
    return list(session.scalars(select(LedgerDecision).where(LedgerDecision.account_id == account.id)
                                .order_by(LedgerDecision.id.desc())))


def countersign(session: Session, now: datetime, ask: LedgerDecision, *, by: Member) -> LedgerDecision:
    """The second host's signature: the account opens, or its new limits and keepers take effect, now."""
    if not people.has_role(session, by, HOST, now):
        raise Invalid(_("Only a host in office countersigns a decision on an account."), field="decision")
    if not ask.pending:
        raise Conflict(_("Nothing about that decision waits for a countersign."), field="decision")
    if ask.asked_by_id == by.id:
        raise Invalid(_("You recorded this decision: a second host must countersign it."), field="decision")
    account = ask.account
    if account.kind == MEMBER and account.member_id == by.id:
        raise Invalid(_("Nobody countersigns the limits of their own account."), field="decision")
    keeper_handles = ask.keeper_handles
    if any(h.lower() == by.handle_key for h in keeper_handles):
        raise Invalid(_("A keeper of this crew does not countersign its decision: another host does."),
                      field="decision")
    if account.pays_patrol_hours and ask.opens:
        other = session.scalar(select(LedgerAccount).where(LedgerAccount.pays_patrol_hours.is_(True),
                                                           LedgerAccount.in_force_at.is_not(None),
                                                           LedgerAccount.id != account.id))
        if other is not None:
            raise Conflict(_("%(crew)s already pays stewards' patrol hours: one crew does.", crew=other.title),
                           field="decision")
    ask.countersigned_at, ask.countersigned_by = now, by
    account.soft_limit, account.hard_limit = ask.soft_limit, ask.hard_limit
    if ask.keepers is not None:
        wanted = {people.get_member(session, h).id: h for h in keeper_handles}
        for keeper in list(account.keepers):
            if keeper.member_id not in wanted:
                account.keepers.remove(keeper)
        held = {keeper.member_id for keeper in account.keepers}
        for member_id in wanted:
            if member_id not in held:
                account.keepers.append(LedgerKeeper(member_id=member_id, named_at=now))
    if ask.opens:
        account.in_force_at = now
        if account.kind == FUND and outside_account(session) is None:
            session.add(LedgerAccount(kind=OUTSIDE, name=OUTSIDE_NAME, name_key=OUTSIDE_NAME.lower(),
                                      soft_limit=0, hard_limit=None, balance=0, opened_at=now, in_force_at=now))
    session.flush()
    power_record.record(session, now, actor=by, role=HOST, action="ledger-countersigned",
                        subject=f"{account.kind}: {_subject_name(account)}"[:120],
                        reason=f"{'opened' if ask.opens else 'new limits'}: {ask.soft_limit}/{ask.hard_limit} "
                               f"below zero; the decision of {ask.reference}")
    return ask


def set_member_choices(session: Session, now: datetime, member: Member, *, earns_patrol_credit: bool,
                       balance_public: bool) -> LedgerAccount:
    """The member's own choices on their page: credits for patrol hours, and their balance on the public page."""
    account = account_for_member(session, now, member)
    account.earns_patrol_credit = bool(earns_patrol_credit)
    account.balance_public = bool(balance_public)
    session.flush()
    return account


# -- limits --------------------------------------------------------------------------------------------


def _limit_message(account: LedgerAccount, amount: int) -> str:
    return _("%(account)s's balance is %(balance)d and its hard limit is %(limit)d below zero: %(amount)d more "
             "would take it to %(after)d. Nothing was moved.", account=account.title, balance=account.balance,
             limit=account.hard_limit or 0, amount=amount, after=account.balance - amount)


def _soft_warning(account: LedgerAccount, amount: int) -> str:
    after = account.balance - amount
    if after < -account.soft_limit:
        return _("%(account)s is now at %(after)d, past its soft limit of %(limit)d below zero: time to receive "
                 "before giving more.", account=account.title, after=after, limit=account.soft_limit)
    return ""


def _within_hard_limit(account: LedgerAccount, amount: int) -> bool:
    return account.hard_limit is None or account.balance - amount >= -account.hard_limit


def _lock(session: Session, *accounts: LedgerAccount) -> None:
    """Take the write lock before reading balances, then read them fresh from the database."""
    begin_writing(session)
    for account in accounts:
        session.refresh(account, with_for_update=True)


def between_members(giver: LedgerAccount, receiver: LedgerAccount) -> bool:
    """An exchange whose memo is the two members' alone: sealed to them, never printed."""
    return giver.kind == MEMBER and receiver.kind == MEMBER


def _seal_memo(session: Session, giver: LedgerAccount, receiver: LedgerAccount,
               memo: str) -> tuple[str, sealing.Sealed | None]:
    """(plain memo, sealed memo) as stored: between two members the words go only to their own keys."""
    if not memo or not between_members(giver, receiver):
        return memo, None
    keys = session.scalars(select(sealing.MemberKey.public_key).where(
        sealing.MemberKey.member_id.in_([giver.member_id, receiver.member_id])))
    return "", sealing.seal_to_members(keys, memo)


def _post(session: Session, now: datetime, giver: LedgerAccount, receiver: LedgerAccount, amount: int, memo: str,
          kind: str, *, anonymous: bool = False, reverses: LedgerEntry | None = None,
          at: datetime | None = None, sealed_memo: sealing.Sealed | None = None) -> LedgerEntry:
    """Write one entry and move both balances with it (the caller holds the lock and checked the limits)."""
    entry = LedgerEntry(at=at or now, kind=kind, giver=giver, receiver=receiver, amount=amount, memo=memo,
                        sealed_memo=sealed_memo, anonymous=anonymous, reverses=reverses)
    session.add(entry)
    giver.balance -= amount
    giver.entries_given += 1
    giver.credits_given += amount
    receiver.balance += amount
    if FUND in (giver.kind, receiver.kind):
        _add_to_fund_month(session, entry.at, kind, amount, came_in=receiver.kind == FUND)
    session.flush()
    return entry


def _add_to_fund_month(session: Session, at: datetime, kind: str, amount: int, *, came_in: bool) -> None:
    month = date(at.year, at.month, 1)
    # Read fresh (and locked on PostgreSQL); the caller's lock on the fund's row already puts its entries in turn.
    row = session.get(LedgerFundMonth, month, populate_existing=True, with_for_update=True)
    if row is None:
        row = LedgerFundMonth(month=month, contributions=0, payouts=0)
        session.add(row)
    if kind == REVERSAL:
        # A correction undoes its original: a contribution taken back leaves the fund but is
        # less given, not a payout; a payout taken back comes in but is less paid out.
        if came_in:
            row.payouts -= amount
        else:
            row.contributions -= amount
    elif came_in:
        row.contributions += amount
    else:
        row.payouts += amount


# -- transfers -----------------------------------------------------------------------------------------


def propose(session: Session, now: datetime, *, giver: LedgerAccount, receiver: LedgerAccount, amount: object,
            memo: str | None, by: Member, source: str = SOURCE_WEB, anonymous: bool = False) -> Outcome:
    """The giver offers ``amount`` credits to ``receiver``: waiting for the receiver's confirmation.

    Refused at once past the giver's hard limit (counting what the giver
    has already offered and is still waiting on), with a warning past the
    soft one. The limit is checked again when the receiver confirms.
    """
    amount = clean_amount(amount)
    if not may_act_for(session, now, giver, by):
        raise Invalid(_("You can give only from your own account, or from a crew you keep."), field="from")
    if giver.id == receiver.id:
        raise Invalid(_("An account cannot pay itself."), field="to")
    for account in (giver, receiver):
        if not account.in_force:
            raise Conflict(_("%(account)s's account waits for a host's countersign: nothing moves yet.",
                             account=account.title), field="to")
    if receiver.kind == OUTSIDE or giver.kind == OUTSIDE:
        raise Invalid(_("Nobody pays the outside account directly: the care ring records payouts."), field="to")
    if giver.kind == FUND:
        raise Invalid(_("The fund pays out through the care ring's payout form, never as a transfer."),
                      field="from")
    memo = check_fund_memo(memo) if receiver.kind == FUND else clean_memo(memo)
    anonymous = bool(anonymous) and receiver.kind == FUND  # only a contribution to the fund goes without a name
    _lock(session, giver)
    waiting = session.scalar(select(func.coalesce(func.sum(LedgerTransfer.amount), 0)).where(
        LedgerTransfer.giver_id == giver.id, LedgerTransfer.state == PROPOSED)) or 0
    if not _within_hard_limit(giver, amount + waiting):
        if waiting:
            raise Conflict(_("%(refusal)s (%(waiting)d credits already offered wait for their receivers.)",
                             refusal=_limit_message(giver, amount + waiting), waiting=waiting), field="amount")
        raise Conflict(_limit_message(giver, amount), field="amount")
    plain, sealed = _seal_memo(session, giver, receiver, memo)
    transfer = LedgerTransfer(giver=giver, receiver=receiver, amount=amount, memo=plain, sealed_memo=sealed,
                              anonymous=anonymous, source=source, state=PROPOSED, proposed_at=now, proposed_by=by)
    session.add(transfer)
    session.flush()
    return Outcome(transfer, _soft_warning(giver, amount + waiting), memo_dropped=bool(memo) and not (plain or sealed))


def find_transfer(session: Session, code_or_id: str | int) -> LedgerTransfer:
    text = str(code_or_id).strip().upper().lstrip("#")
    if text.startswith(CODE_PREFIX):
        text = text[len(CODE_PREFIX):]
    transfer = session.get(LedgerTransfer, int(text)) if text.isdigit() else None
    if transfer is None:
        raise NotFound(_("No transfer %(code)s.", code=str(code_or_id)[:12]), field="transfer")
    return transfer


def confirm(session: Session, now: datetime, transfer: LedgerTransfer, *, by: Member) -> Outcome:
    """The receiver (or a keeper of the receiving crew, or the care ring for the fund) confirms: an entry is written.

    Past the giver's hard limit by now (another transfer came first), the
    hub refuses it instead: the transfer comes back ``refused`` with the
    reason in ``refusal`` (not raised, so the caller commits the refusal).
    """
    if not may_act_for(session, now, transfer.receiver, by):
        raise Invalid(_("Only the receiver confirms a transfer (for a crew, one of its keepers)."),
                      field="transfer")
    _lock(session, transfer.giver, transfer.receiver)
    session.refresh(transfer)
    if transfer.state != PROPOSED:
        raise Conflict(_("Transfer %(code)s is %(state)s already.", code=transfer.code,
                         state=transfer.state_label), field="transfer")
    # The refusal and the warning speak of the giver's balance. A member's is theirs alone (no page opens another
    # member's account, a host's neither) unless they chose to show it, and an anonymous gift's giver is nobody's
    # business: a receiver is told without the numbers, and without the name where the gift has none.
    hidden = transfer.anonymous or (transfer.giver.kind == MEMBER and not transfer.giver.balance_public)
    giver_private = hidden and not may_act_for(session, now, transfer.giver, by)
    if not _within_hard_limit(transfer.giver, transfer.amount):
        transfer.state, transfer.decided_at, transfer.decided_by = REFUSED, now, by
        transfer.refusal = (_("%(code)s refused: %(giver)s is at its hard limit. Nothing moved.",
                              code=transfer.code, giver=shown_giver(transfer, by)[:24]) if giver_private
                            else _limit_message(transfer.giver, transfer.amount))[:300]
        session.flush()
        return Outcome(transfer)  # kept refused, with its reason: the caller commits and shows it
    warning = "" if giver_private else _soft_warning(transfer.giver, transfer.amount)
    kind = CONTRIBUTION if transfer.receiver.kind == FUND else TRANSFER
    entry = _post(session, now, transfer.giver, transfer.receiver, transfer.amount, transfer.memo, kind,
                  anonymous=transfer.anonymous, sealed_memo=transfer.sealed_memo)
    transfer.state, transfer.decided_at, transfer.decided_by, transfer.entry = CONFIRMED, now, by, entry
    session.flush()
    return Outcome(transfer, warning)


def refuse(session: Session, now: datetime, transfer: LedgerTransfer, *, by: Member) -> LedgerTransfer:
    """The receiver turns the offer down, or the giver withdraws it: nothing moves."""
    if transfer.state != PROPOSED:
        raise Conflict(_("Transfer %(code)s is %(state)s already.", code=transfer.code,
                         state=transfer.state_label), field="transfer")
    if may_act_for(session, now, transfer.receiver, by):
        transfer.state = REFUSED
        transfer.refusal = _("turned down by the receiver")
    elif may_act_for(session, now, transfer.giver, by):
        transfer.state = WITHDRAWN
    else:
        raise Invalid(_("Only the receiver turns a transfer down, or the giver withdraws it."), field="transfer")
    transfer.decided_at, transfer.decided_by = now, by
    session.flush()
    return transfer


def reverse(session: Session, now: datetime, entry: LedgerEntry, *, by: Member, why: str | None = None) -> LedgerEntry:
    """Undo a mistaken entry with a new one the other way round, pointing at it; the original stays.

    The side that received it reverses it (they give back what they were
    given): the member, a crew's keeper, the care ring for the fund. A
    correction is never stopped by a limit. A crew's or the fund's
    correction is a use of power, and lands in the record.
    """
    if entry.reverses_id is not None:
        raise Invalid(_("A correction is not reversed; enter a new transfer instead."), field="entry")
    if entry.receiver.kind == OUTSIDE:
        if not people.has_role(session, by, CARE, now):
            raise Invalid(_("Only the care ring corrects a payout from the fund."), field="entry")
    elif not may_act_for(session, now, entry.receiver, by):
        raise Invalid(_("Only the side that received an entry reverses it: it gives back what it was given."),
                      field="entry")
    why = clean_memo(why)
    _lock(session, entry.giver, entry.receiver)
    if session.scalar(select(LedgerEntry.id).where(LedgerEntry.reverses_id == entry.id)) is not None:
        raise Conflict(_("Entry %(n)d has been reversed already.", n=entry.id), field="entry")
    memo = (_("reverses entry %(n)d: %(why)s", n=entry.id, why=why) if why
            else _("reverses entry %(n)d", n=entry.id))[:MAX_MEMO]
    if FUND in (entry.giver.kind, entry.receiver.kind):
        memo = _("reverses entry %(n)d", n=entry.id)  # the fund's memos keep to codes, so no free words here
    sealed = None
    if why and between_members(entry.giver, entry.receiver):
        # The number is process, the why is the two members' own: it goes with the words they sealed.
        memo, sealed = _("reverses entry %(n)d", n=entry.id), _seal_memo(session, entry.receiver, entry.giver, why)[1]
    correction = _post(session, now, entry.receiver, entry.giver, entry.amount, memo, REVERSAL,
                       anonymous=entry.anonymous, reverses=entry, sealed_memo=sealed)
    if entry.receiver.kind != MEMBER:
        power_record.record(session, now, actor=by, role=power_record.acting_role(session, now, by, (CARE, HOST)),
                            action="ledger-entry-reversed",
                            subject=f"{entry.receiver.kind}: {_subject_name(entry.receiver)}"[:120],
                            reason=f"entry {entry.id} ({entry.amount} credits) reversed by entry {correction.id}")
    return correction


# -- the bail and legal fund ----------------------------------------------------------------------------


def _care(session: Session, now: datetime, by: Member) -> LedgerAccount:
    if not people.has_role(session, by, CARE, now):
        raise Invalid(_("Only the care ring runs the bail and legal fund."), field="amount")
    fund = fund_account(session)
    if fund is None or not fund.in_force:
        raise Conflict(_("The bail and legal fund has no account yet: the assembly opens it (a host records the "
                         "decision)."), field="amount")
    return fund


def pay_out(session: Session, now: datetime, *, amount: object, memo: str | None, by: Member) -> LedgerEntry:
    """The care ring pays from the fund (bail, a lawyer): to the outside account, a memo of codes, in the record."""
    fund = _care(session, now, by)
    amount = clean_amount(amount)
    memo = check_fund_memo(memo)
    if not memo:
        raise Invalid(_("Say what the payout was for, with the case code: like \"bail C11\"."), field="memo")
    outside = outside_account(session)
    _lock(session, fund, outside)
    if not _within_hard_limit(fund, amount):
        raise Conflict(_("The fund holds %(balance)d credits: it cannot pay out %(amount)d. Nothing was moved.",
                         balance=fund.balance, amount=amount), field="amount")
    entry = _post(session, now, fund, outside, amount, memo, PAYOUT)
    power_record.record(session, now, actor=by, role=CARE, action="fund-payout", subject=f"fund: {FUND_NAME}",
                        reason=f"{amount} credits: {memo}")
    return entry


def record_cash(session: Session, now: datetime, *, amount: object, by: Member) -> LedgerEntry:
    """Cash put in the fund's tin, counted by the care ring: an anonymous contribution from the outside."""
    fund = _care(session, now, by)
    amount = clean_amount(amount)
    outside = outside_account(session)
    _lock(session, fund, outside)
    return _post(session, now, outside, fund, amount, "contribution", CONTRIBUTION, anonymous=True)


@dataclass(frozen=True)
class MonthTotal:
    month: date  # the first day of the month
    contributions: int
    payouts: int


def fund_months(session: Session, months: int = 12) -> list[MonthTotal]:
    """What came into the fund and went out of it, month by month, newest first (a correction counts against its
    kind): the totals kept with each fund entry (``LedgerFundMonth``)."""
    rows = session.scalars(select(LedgerFundMonth).order_by(LedgerFundMonth.month.desc()).limit(months))
    # Shown as the net of each kind (a correction in a later month can leave a month below zero: shown as 0).
    return [MonthTotal(row.month, max(0, row.contributions), max(0, row.payouts)) for row in rows]


def _fund_months_from_entries(session: Session, fund: LedgerAccount) -> dict[date, tuple[int, int]]:
    """The fund's months summed from its entries (what ``LedgerFundMonth`` must hold): for ``audit_sums``."""
    totals: dict[date, list[int]] = {}
    # One side at a time (each read walks its own index). extract() is portable: strftime on SQLite, EXTRACT on
    # PostgreSQL.
    year, month_of = extract("year", LedgerEntry.at), extract("month", LedgerEntry.at)
    for came_in, side in ((True, LedgerEntry.receiver_id), (False, LedgerEntry.giver_id)):
        rows = session.execute(select(year, month_of, LedgerEntry.kind, func.sum(LedgerEntry.amount))
                               .where(side == fund.id).group_by(year, month_of, LedgerEntry.kind))
        for y, m, kind, amount in rows:
            slot = totals.setdefault(date(int(y), int(m), 1), [0, 0])
            if kind == REVERSAL:
                slot[1 if came_in else 0] -= int(amount)
            else:
                slot[0 if came_in else 1] += int(amount)
    return {month: (c, p) for month, (c, p) in totals.items()}


# -- patrol hours ------------------------------------------------------------------------------------------


def week_start(moment: datetime) -> datetime:
    day = moment.date() - timedelta(days=moment.weekday())
    return datetime(day.year, day.month, day.day)


def patrol_payer(session: Session) -> LedgerAccount | None:
    return session.scalar(select(LedgerAccount).where(LedgerAccount.pays_patrol_hours.is_(True),
                                                      LedgerAccount.in_force_at.is_not(None)))


def credit_closed_shift(session: Session, now: datetime, member: Member, started_at: datetime,
                        ended_at: datetime) -> LedgerEntry | None:
    """Credits for a shift just closed, for a steward who opted in: whole hours, dated to the week's Monday.

    Nothing for one who did not opt in (no row at all), for under half an
    hour, or when the paying crew is at its hard limit: ending a shift
    never fails because of the ledger.
    """
    account = member_account(session, member)
    payer = patrol_payer(session)
    if account is None or not account.earns_patrol_credit or payer is None:
        return None
    hours = int((ended_at - started_at).total_seconds() // 1800 + 1) // 2  # rounded to the nearest hour
    hours = min(hours, 24)
    if hours < 1:
        return None
    _lock(session, payer, account)
    if not _within_hard_limit(payer, hours):
        return None
    return _post(session, now, payer, account, hours, "patrol hours", PATROL, at=week_start(ended_at))


# -- reading -----------------------------------------------------------------------------------------------


def entries_of(session: Session, account: LedgerAccount, limit: int = 100,
               before_id: int | None = None) -> list[LedgerEntry]:
    """An account's entries, newest first (by id, the ledger's order); ``before_id`` pages back.

    One statement: the newest ``limit`` ids it gave and the newest ``limit``
    it received, each read straight off its own index in id order, then the
    newest ``limit`` of those with both sides and their members joined in.
    ``giver_id = ? OR receiver_id = ?`` made SQLite sort every entry the
    account ever had (29 ms for 10,000), and each side loaded row by row.
    """
    def newest(side: InstrumentedAttribute[int]) -> Select:
        query = select(LedgerEntry.id).where(side == account.id)
        if before_id is not None:
            query = query.where(LedgerEntry.id < before_id)
        return select(query.order_by(LedgerEntry.id.desc()).limit(limit).subquery().c.id)

    ids = union_all(newest(LedgerEntry.giver_id), newest(LedgerEntry.receiver_id))
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.id.in_(ids))
                                .order_by(LedgerEntry.id.desc()).limit(limit)
                                .options(joinedload(LedgerEntry.giver).joinedload(LedgerAccount.member),
                                         joinedload(LedgerEntry.receiver).joinedload(LedgerAccount.member))))


def entries_between(session: Session, start: datetime, end: datetime) -> list[LedgerEntry]:
    """Every entry with ``start <= at < end``, in the ledger's stable order (id)."""
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.at >= start, LedgerEntry.at < end)
                                .order_by(LedgerEntry.id)))


def acting_accounts(session: Session, now: datetime, member: Member) -> list[LedgerAccount]:
    """``member``'s own account (if opened) and the accounts they keep: what ``waiting_for`` and ``offered_by`` read."""
    own = member_account(session, member)
    return ([own] if own is not None else []) + accounts_kept_by(session, now, member)


def _pending(session: Session, side: InstrumentedAttribute[int], ids: list[int]) -> list[LedgerTransfer]:
    if not ids:
        return []
    # Both sides and their members joined in: a page lists them by name, one statement however many wait.
    return list(session.scalars(select(LedgerTransfer).where(LedgerTransfer.state == PROPOSED, side.in_(ids))
                                .order_by(LedgerTransfer.id)
                                .options(joinedload(LedgerTransfer.giver).joinedload(LedgerAccount.member),
                                         joinedload(LedgerTransfer.receiver).joinedload(LedgerAccount.member))))


def waiting_for(session: Session, now: datetime, member: Member,
                accounts: list[LedgerAccount] | None = None) -> list[LedgerTransfer]:
    """Transfers ``member`` may confirm: to their account, the crews they keep, the fund if in the care ring.
    ``accounts``: ``acting_accounts``, when the caller has read them already."""
    accounts = acting_accounts(session, now, member) if accounts is None else accounts
    return _pending(session, LedgerTransfer.receiver_id, [a.id for a in accounts])


def offered_by(session: Session, now: datetime, member: Member,
               accounts: list[LedgerAccount] | None = None) -> list[LedgerTransfer]:
    """Transfers from ``member``'s account or their crews that wait for a receiver."""
    accounts = acting_accounts(session, now, member) if accounts is None else accounts
    return _pending(session, LedgerTransfer.giver_id, [a.id for a in accounts if a.kind in (MEMBER, CREW)])


def shown_giver(entry: LedgerEntry | LedgerTransfer, viewer: Member | None) -> str:
    """The giver's name as ``viewer`` may see it: an anonymous contribution is "anonymous" to all but the giver."""
    if entry.anonymous and not (viewer is not None and entry.giver.member_id == viewer.id):
        return _("anonymous")
    return entry.giver.title


def shown_receiver(entry: LedgerEntry | LedgerTransfer, viewer: Member | None) -> str:
    """The receiver's name as ``viewer`` may see it: the correction that gives an anonymous gift back
    goes to its giver, and naming them there would undo the anonymity the gift was made with."""
    if entry.anonymous and not (viewer is not None and entry.receiver.member_id == viewer.id):
        if entry.receiver.kind == MEMBER:
            return _("anonymous")
    return entry.receiver.title


@dataclass(frozen=True)
class Sums:
    total: int  # the sum of every balance: always 0
    drifted: list[int]  # accounts whose kept balance differs from their entries' sum


def audit_sums(session: Session) -> Sums:
    """Check the ledger: balances sum to zero, and each equals what its entries add up to (its running totals
    of what it gave too, and for the fund its months' totals)."""
    received = dict(session.execute(select(LedgerEntry.receiver_id, func.sum(LedgerEntry.amount))
                                    .group_by(LedgerEntry.receiver_id)).all())
    given = {giver_id: (count, amount) for giver_id, count, amount in session.execute(
        select(LedgerEntry.giver_id, func.count(LedgerEntry.id), func.sum(LedgerEntry.amount))
        .group_by(LedgerEntry.giver_id))}
    total, drifted = 0, []
    for account_id, balance, entries_given, credits_given in session.execute(
            select(LedgerAccount.id, LedgerAccount.balance, LedgerAccount.entries_given, LedgerAccount.credits_given)):
        total += balance
        count, amount = given.get(account_id, (0, 0))
        if (balance, entries_given, credits_given) != (received.get(account_id, 0) - amount, count, amount):
            drifted.append(account_id)
    fund = fund_account(session)
    if fund is not None and fund.id not in drifted and _fund_months_from_entries(session, fund) != {
            row.month: (row.contributions, row.payouts) for row in session.scalars(select(LedgerFundMonth))}:
        drifted.append(fund.id)  # its months' totals
    return Sums(total, drifted)


@dataclass(frozen=True)
class PublicLedger:
    crews: list[tuple[str, int]]  # name, balance
    members: list[tuple[str, int]]  # only those who chose to show theirs
    fund_balance: int | None
    fund_months: list[MonthTotal]
    entries: int
    moved: int  # credits moved in all, corrections included


def public_view(session: Session) -> PublicLedger:
    """What anyone may see: crews' balances, opted-in members', the fund's balance and monthly totals, totals."""
    crews = [(a.title, a.balance) for a in crew_accounts(session) if a.in_force]
    shown = session.scalars(select(LedgerAccount).where(LedgerAccount.kind == MEMBER,
                                                        LedgerAccount.balance_public.is_(True))
                            .options(selectinload(LedgerAccount.member)))
    members = sorted(((a.title, a.balance) for a in shown if a.member is not None), key=lambda p: p[0].lower())
    fund = fund_account(session)
    # Every entry is given by exactly one account: the accounts' running totals add up to the whole ledger's,
    # read from a few hundred accounts rather than summed over every entry ever made.
    count, moved = session.execute(select(func.coalesce(func.sum(LedgerAccount.entries_given), 0),
                                          func.coalesce(func.sum(LedgerAccount.credits_given), 0))).one()
    return PublicLedger(crews, members, fund.balance if fund is not None and fund.in_force else None,
                        fund_months(session), count, moved)


# -- by radio --------------------------------------------------------------------------------------------------
# PAY and GOT count only as verified direct messages (radio_bridge/inbound.py NEEDS_PROOF): whoever holds the
# channel key can write any ``from``, and a forged PAY would spend someone else's credits.


def pay_by_radio(session: Session, now: datetime, member: Member, to: str, amount: int | None, memo: str) -> str:
    """``PAY kitchen 3 bread`` from ``member``'s own account: an offer waiting for the receiver; the reply, one packet."""
    if amount is None:
        raise Invalid(_("PAY needs an amount: PAY kitchen 3 bread."), field="amount")
    giver = account_for_member(session, now, member)
    receiver = resolve_receiver(session, now, to)
    outcome = propose(session, now, giver=giver, receiver=receiver, amount=amount, memo=memo, by=member,
                      source=SOURCE_RADIO)
    reply = _("%(code)s: %(amount)d to %(to)s, waiting for them to confirm (GOT %(code)s).",
              code=outcome.transfer.code, amount=outcome.transfer.amount, to=receiver.title[:24])
    if outcome.warning:
        reply = _("%(reply)s Past your soft limit.", reply=reply)
    if outcome.memo_dropped:
        told = _("%(reply)s Memo not kept: neither of you has a hub password to seal it to.", reply=reply)
        reply = told if fits_one_packet(told) else reply
    return reply


def confirm_by_radio(session: Session, now: datetime, member: Member, code: str) -> str:
    """``GOT P12``: the receiver (or a keeper of the receiving crew) confirms; the reply, one packet."""
    transfer = find_transfer(session, code)
    outcome = confirm(session, now, transfer, by=member)
    if outcome.transfer.state == REFUSED:
        return _("%(code)s refused: %(giver)s is at its hard limit. Nothing moved.", code=transfer.code,
                 giver=shown_giver(transfer, member)[:24])
    return _("%(code)s confirmed: %(amount)d credits to %(to)s.", code=transfer.code, amount=transfer.amount,
             to=transfer.receiver.title[:24])
