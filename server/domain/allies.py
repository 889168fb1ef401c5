"""Allies and their vows: the organisations that endorsed the compact, and what each promised the patrol.

An ally is an organisation open to the public (a shop, a sanctuary, a
community centre), never a private person: it is recorded by its name and a
public place (its shop front, its door), and nothing that reaches a person
(a phone number, an email address, a messenger handle) is kept in any of its
words (``contact_in_text``). Its vows are small public promises: "free tea
for stewards on shift", "shelter after midnight in a crisis", each with its
kind (shelter, refreshment, other: SAFE looks for shelters first), its weekly
hours (a range may run past midnight), its published area, and the assembly
decision it was made on.

Power is countersigned and visible: one host records a vow on the assembly's
decision, and it is listed, printed and offered over the radio only once a
*second* host countersigns it, so nobody alone can send stewards to a door
that never promised anything. A change is a new vow on a new decision that
replaces the old one when it is countersigned. Withdrawing a vow takes one
host and is immediate (pointing nobody at a door is the safe mistake). Each
of these leaves a row in the record of power used (``power_record``).

Open or closed is computed from the hours and the hub's clock, in the
bench's time zone, whenever it is asked: nothing to keep in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Boolean, Date, ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain import patrol, people, power_record
from server.domain.base import Base
from server.domain.contact_in_text import find_contact
from server.domain.errors import Conflict, Invalid
from server.domain.people import Decision, Member
from server.domain.radio_text import fits_one_packet
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

MAX_NAME = 80
MAX_PLACE = 120
MAX_VOW = 120
MAX_HOURS = 120
MAX_LINE = 140
MAX_REASON = 300
# How long a fulfilment is celebrated on the bench page, and how many at once.
FULFILMENT_SHOWN_DAYS = 30
FULFILMENTS_SHOWN = 3
# The poster and the pocket card are small: a few, shelters first, then by area (the card has room for three lines).
CARD_ALLIES = 6
POCKET_CARD_ALLIES = 3

# The fields a refusal names ("Please fill in the %(field)s."), marked for the catalogs.
FIELD_NAMES = (N_("organisation name"), N_("public place"), N_("endorsed on"), N_("vow"), N_("hours"),
               N_("what happened"), N_("day fulfilled"))

SHELTER, REFRESHMENT, OTHER = "shelter", "refreshment", "other"
KIND_LABELS = Labels({
    SHELTER: N_("shelter"),
    REFRESHMENT: N_("refreshment"),
    OTHER: N_("other help"),
})

WEEK_MINUTES = 7 * 24 * 60
# The hours are written as OpenStreetMap's opening_hours writes them (the short
# English day names), so one spelling is kept whatever language the host speaks.
DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
DAY_LABELS = Labels({
    "Mo": N_("Mon"), "Tu": N_("Tue"), "We": N_("Wed"), "Th": N_("Thu"), "Fr": N_("Fri"), "Sa": N_("Sat"),
    "Su": N_("Sun"),
})
_DAY_WORDS = {
    **{day.lower(): i for i, day in enumerate(DAYS)},
    **{name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{name: i for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                                         "sunday"))},
}
_TIME_RANGE = re.compile(r"^(\d{1,2})[:.h]?(\d{2})\s*[-\u2013]\s*(\d{1,2})[:.h]?(\d{2})$")


class Ally(Base):
    """An organisation that endorsed the compact: a name and a public place, never a person or a contact."""

    __tablename__ = "ally"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    place: Mapped[str] = mapped_column(String(MAX_PLACE))
    endorsed_on: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime]
    # Handles, as in the record of power used: it outlives members.
    recorded_by: Mapped[str] = mapped_column(String(24))
    withdrawn_at: Mapped[datetime | None]

    vows: Mapped[list[AllyVow]] = relationship(back_populates="ally", order_by="AllyVow.id")


class AllyVow(Base):
    """One public promise of an ally, on an assembly decision; in force once a second host countersigns it."""

    __tablename__ = "ally_vow"

    id: Mapped[int] = mapped_column(primary_key=True)
    ally_id: Mapped[int] = mapped_column(ForeignKey("ally.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(String(MAX_VOW))
    kind: Mapped[str] = mapped_column(String(12))
    # Canonical weekly hours ("Mo-Fr 18:00-02:00; Sa 10:00-14:00"), see ``parse_hours``.
    hours: Mapped[str] = mapped_column(String(MAX_HOURS))
    crisis_only: Mapped[bool] = mapped_column(Boolean, default=False)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    decision: Mapped[str] = mapped_column(Text)
    decided_on: Mapped[date] = mapped_column(Date)
    decision_place: Mapped[str] = mapped_column(String(people.MAX_PLACE))
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(24))
    countersigned_at: Mapped[datetime | None] = mapped_column(index=True)
    countersigned_by: Mapped[str | None] = mapped_column(String(24))
    # A change is a new vow on a new decision: it replaces this one when countersigned.
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("ally_vow.id", ondelete="SET NULL"))
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by: Mapped[str | None] = mapped_column(String(24))
    withdrawal_reason: Mapped[str | None] = mapped_column(String(MAX_REASON))

    ally: Mapped[Ally] = relationship(back_populates="vows")
    area: Mapped[patrol.Area | None] = relationship()
    fulfilments: Mapped[list[VowFulfilment]] = relationship(
        back_populates="vow", order_by="VowFulfilment.fulfilled_on.desc()", passive_deletes=True)

    @property
    def in_force(self) -> bool:
        return self.countersigned_at is not None and self.withdrawn_at is None and self.ally.withdrawn_at is None

    @property
    def pending(self) -> bool:
        return self.countersigned_at is None and self.withdrawn_at is None

    @property
    def decision_reference(self) -> str:
        return people.decision_reference(self.decided_on, self.decision_place)


class VowFulfilment(Base):
    """A vow kept: the day and one public line, naming no one ("tea for four stewards on a cold night")."""

    __tablename__ = "vow_fulfilment"

    id: Mapped[int] = mapped_column(primary_key=True)
    vow_id: Mapped[int] = mapped_column(ForeignKey("ally_vow.id", ondelete="CASCADE"), index=True)
    fulfilled_on: Mapped[date] = mapped_column(Date, index=True)
    line: Mapped[str] = mapped_column(String(MAX_LINE))
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(24))

    vow: Mapped[AllyVow] = relationship(back_populates="fulfilments")


# -- hours --------------------------------------------------------------------


@dataclass(frozen=True)
class Hours:
    """Weekly opening hours: spans of minutes from Monday 00:00, a span may run into the next day."""

    spans: tuple[tuple[int, int], ...]  # (start, end), 0 <= start < WEEK_MINUTES, start < end <= start + a day
    text: str  # the canonical spelling, kept in the database

    def is_open(self, local: datetime) -> bool:
        minute = _week_minute(local)
        return any(start <= m < end for start, end in self.spans for m in (minute, minute + WEEK_MINUTES))

    def next_change(self, local: datetime) -> datetime | None:
        """The next moment (local, after ``local``) at which it opens or closes; None when always open."""
        minute = _week_minute(local)
        edges = sorted({edge % WEEK_MINUTES for span in self.spans for edge in span})
        if not edges or self.text == ALWAYS:
            return None
        ahead = min((edge - minute) % WEEK_MINUTES or WEEK_MINUTES for edge in edges)
        return local.replace(second=0, microsecond=0) + timedelta(minutes=ahead)

    def next_opening(self, local: datetime) -> datetime | None:
        """When it next opens after ``local`` (local time), or None when it never closes or never opens."""
        minute = _week_minute(local)
        starts = [start for start, _end in self.spans if not self._open_at(start - 1)]
        if not starts:
            return None
        ahead = min((start - minute) % WEEK_MINUTES or WEEK_MINUTES for start in starts)
        return local.replace(second=0, microsecond=0) + timedelta(minutes=ahead)

    def closes_at(self, local: datetime) -> datetime | None:
        """When an open ally next closes (local time), or None when it never does."""
        if self.text == ALWAYS:
            return None
        moment = local.replace(second=0, microsecond=0)
        for _step in range(WEEK_MINUTES // 15 + 2):
            change = self.next_change(moment)
            if change is None:
                return None
            if not self.is_open(change):
                return change
            moment = change
        return None

    def _open_at(self, minute: int) -> bool:
        minute %= WEEK_MINUTES
        return any(start <= m < end for start, end in self.spans for m in (minute, minute + WEEK_MINUTES))


ALWAYS = "24/7"


def _week_minute(local: datetime) -> int:
    return local.weekday() * 24 * 60 + local.hour * 60 + local.minute


def parse_hours(text: str | None) -> Hours:
    """Read weekly hours as a host types them, or refuse them with a sentence that shows the way.

    ``24/7``; ``daily 18:00-02:00``; ``Mo-Fr 08:00-18:00; Sa,Su 10:00-14:00``;
    ``Fr 22:00-06:00`` runs from Friday night into Saturday morning. Day names
    may be the two letters, three letters or the whole English word.
    """
    raw = clean_text(text, field="hours", max_length=MAX_HOURS)
    if raw.strip().lower() in ("24/7", "always", "24h", "24 h"):
        return Hours(((0, WEEK_MINUTES),), ALWAYS)
    spans: list[tuple[int, int]] = []
    parts: list[str] = []
    for rule in [part.strip() for part in raw.split(";") if part.strip()]:
        days, times = _split_rule(rule)
        for start, end in times:
            for day in days:
                spans.append((day * 1440 + start, day * 1440 + end))
        parts.append(f"{_days_text(days)} {', '.join(f'{_hhmm(s)}-{_hhmm(e)}' for s, e in times)}")
    if not spans:
        raise Invalid(_("Please give the hours, like “Mo-Fr 18:00-02:00” or “24/7”."), field="hours")
    canonical = "; ".join(parts)
    if len(canonical) > MAX_HOURS:
        raise Invalid(_("Those hours are too long to print: write them with fewer rules."), field="hours")
    return Hours(tuple(sorted(spans)), canonical)


def _split_rule(rule: str) -> tuple[list[int], list[tuple[int, int]]]:
    match = re.match(r"^([A-Za-z][A-Za-z ,\-\u2013]*?)\s+(\d.*)$", rule)
    if match is None:
        day_text, time_text = "daily", rule
    else:
        day_text, time_text = match.group(1), match.group(2)
    days = _read_days(day_text, rule)
    times = []
    for piece in [p.strip() for p in time_text.split(",") if p.strip()]:
        found = _TIME_RANGE.match(piece)
        if found is None:
            raise Invalid(_("“%(rule)s”: give the hours as 18:00-02:00.", rule=rule), field="hours")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise Invalid(_("“%(rule)s”: that is not a time of day.", rule=rule), field="hours")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise Invalid(_("“%(rule)s”: it opens and closes at the same time.", rule=rule), field="hours")
        if end < start:
            end += 1440  # past midnight: into the next morning
        times.append((start, end))
    return days, times


def _read_days(text: str, rule: str) -> list[int]:
    text = text.strip().lower()
    if text in ("daily", "every day", "mo-su"):
        return list(range(7))
    days: list[int] = []
    for piece in [p.strip() for p in text.split(",") if p.strip()]:
        ends = [end.strip() for end in re.split(r"\s*[-\u2013]\s*", piece)]
        if len(ends) > 2 or any(end not in _DAY_WORDS for end in ends):
            raise Invalid(_("“%(rule)s”: write the days as Mo Tu We Th Fr Sa Su, like “Mo-Fr” or “Sa,Su”.",
                            rule=rule), field="hours")
        first, last = _DAY_WORDS[ends[0]], _DAY_WORDS[ends[-1]]
        day = first
        while True:
            if day not in days:
                days.append(day)
            if day == last:
                break
            day = (day + 1) % 7
    return days


def _days_text(days: list[int]) -> str:
    if sorted(days) == list(range(7)):
        return "daily"
    ordered = sorted(days)
    runs: list[tuple[int, int]] = []
    for day in ordered:
        if runs and runs[-1][1] == day - 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return ",".join(DAYS[a] if a == b else f"{DAYS[a]}-{DAYS[b]}" for a, b in runs)


def _hhmm(minutes: int) -> str:
    if minutes == 1440:
        return "24:00"
    minutes %= 1440
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def hours_text(hours: str) -> str:
    """The canonical hours in the reader's language: the day names translated, the times as they are."""
    if hours == ALWAYS:
        return _("day and night, every day")
    if hours.startswith("daily"):
        return _("daily %(times)s", times=hours[len("daily"):].strip()) if ";" not in hours else hours
    return re.sub(r"\b(Mo|Tu|We|Th|Fr|Sa|Su)\b", lambda m: DAY_LABELS[m.group(1)], hours)


def zone_of(name: str | None) -> ZoneInfo | None:
    """The bench's time zone (SAFEBENCH_TIMEZONE), or None for the Pi's own local time."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_time(now: datetime, zone: ZoneInfo | None) -> datetime:
    """The hub's naive UTC ``now`` as the wall clock on the bench reads it (naive, local)."""
    aware = now.replace(tzinfo=UTC)
    return (aware.astimezone(zone) if zone is not None else aware.astimezone()).replace(tzinfo=None)


def _utc_of(local: datetime, zone: ZoneInfo | None) -> datetime:
    aware = local.replace(tzinfo=zone) if zone is not None else local.astimezone()
    return aware.astimezone(UTC).replace(tzinfo=None)


# -- recording ----------------------------------------------------------------


def _check_host(session: Session, now: datetime, by: Member) -> str:
    if people.HOST not in people.active_roles(session, by, now):
        raise Invalid(_("Only a host in office can record, countersign or withdraw allies and vows, or mark a vow "
                        "fulfilled."))
    return power_record.acting_role(session, now, by, (people.HOST,))


def public_words(value: str | None, *, field: str, max_length: int, required: bool = True) -> str:
    """Words that will be printed and shown to anyone: never a way to reach a person."""
    text = clean_text(value, field=field, max_length=max_length, required=required)
    found = find_contact(text)
    if found is not None:
        raise Invalid(_("“%(excerpt)s” looks like %(what)s. Allies are organisations, listed by name and public "
                        "place only: leave out every phone number, email address and handle, even the "
                        "organisation's own.", excerpt=found.shown, what=_(found.what)), field=field)
    return text


def check_organisation(organisation: bool) -> None:
    """The host says, in so many words, that this is no private person: the list is printed and public."""
    if not organisation:
        raise Invalid(_("Allies are organisations open to the public (a shop, a sanctuary, a community centre), "
                        "never a private person or a home: tick the box to confirm it is one."),
                      field="organisation")


def record_ally(session: Session, now: datetime, *, name: str, place: str, endorsed_on: date | str | None,
                organisation: bool, by: Member) -> Ally:
    """An organisation that endorsed the compact, by a host: its name and public place, nothing else."""
    acting = _check_host(session, now, by)
    check_organisation(organisation)
    name = public_words(name, field="organisation name", max_length=MAX_NAME)
    place = public_words(place, field="public place", max_length=MAX_PLACE)
    endorsed = _day(endorsed_on, now, field="endorsed on")
    taken = session.scalar(select(Ally).where(Ally.name == name, Ally.withdrawn_at.is_(None)))
    if taken is not None:
        raise Conflict(_("%(name)s is already an ally: add a vow to it instead.", name=name),
                       field="organisation name")
    ally = Ally(name=name, place=place, endorsed_on=endorsed, recorded_at=now, recorded_by=by.handle)
    session.add(ally)
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action="ally-recorded", subject=f"ally {ally.id}: {name}",
                        reason=f"endorsed the compact on {endorsed.isoformat()}")
    return ally


def record_vow(session: Session, now: datetime, ally: Ally, *, text: str, kind: str, hours: str, crisis_only: bool,
               area: str | None, decision: Decision, by: Member, replaces: AllyVow | None = None) -> AllyVow:
    """A vow on the assembly's decision, by a host: listed once a second host countersigns it."""
    acting = _check_host(session, now, by)
    if ally.withdrawn_at is not None:
        raise Conflict(_("%(name)s is no longer an ally.", name=ally.name))
    if kind not in KIND_LABELS:
        raise Invalid(_("Choose what the vow offers: shelter, refreshment or other help."), field="kind")
    words = public_words(text, field="vow", max_length=MAX_VOW)
    parsed = parse_hours(hours)
    found_area = _published_area(session, area)
    if replaces is not None and (replaces.ally_id != ally.id or replaces.withdrawn_at is not None):
        raise Conflict(_("That vow is no longer in force: record a new one."))
    vow = AllyVow(ally=ally, text=words, kind=kind, hours=parsed.text, crisis_only=bool(crisis_only),
                  area=found_area, decision=decision.words, decided_on=decision.on, decision_place=decision.place,
                  recorded_at=now, recorded_by=by.handle, replaces_id=replaces.id if replaces else None)
    session.add(vow)
    session.flush()
    change = f"; replaces vow {replaces.id}" if replaces else ""
    power_record.record(session, now, actor=by, role=acting, action="vow-recorded",
                        subject=f"vow {vow.id} of {ally.name}",
                        reason=f"{words} ({parsed.text}), pending a countersign; the decision of "
                               f"{decision.reference}{change}")
    return vow


def countersign_vow(session: Session, now: datetime, vow: AllyVow, *, by: Member) -> AllyVow:
    """A second host puts a vow in force (and so retires the vow it replaces)."""
    acting = _check_host(session, now, by)
    if not vow.pending:
        raise Conflict(_("That vow is not waiting for a countersign."))
    if vow.recorded_by == by.handle:
        raise Invalid(_("Nobody countersigns a vow they recorded: another host must."))
    vow.countersigned_at, vow.countersigned_by = now, by.handle
    power_record.record(session, now, actor=by, role=acting, action="vow-countersigned",
                        subject=f"vow {vow.id} of {vow.ally.name}", reason=f"recorded by {vow.recorded_by}")
    if vow.replaces_id is not None:
        old = session.get(AllyVow, vow.replaces_id)
        if old is not None and old.withdrawn_at is None:
            old.withdrawn_at, old.withdrawn_by = now, by.handle
            old.withdrawal_reason = f"replaced by vow {vow.id} ({vow.decision_reference})"
    session.flush()
    return vow


def withdraw_vow(session: Session, now: datetime, vow: AllyVow, *, reason: str, by: Member) -> AllyVow:
    """A vow off every list at once, by one host, with a reason the assembly reads."""
    acting = _check_host(session, now, by)
    if vow.withdrawn_at is not None:
        raise Conflict(_("That vow is already withdrawn."))
    reason = clean_text(reason, field="reason", max_length=MAX_REASON)
    vow.withdrawn_at, vow.withdrawn_by, vow.withdrawal_reason = now, by.handle, reason
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action="vow-withdrawn",
                        subject=f"vow {vow.id} of {vow.ally.name}", reason=reason)
    return vow


def withdraw_ally(session: Session, now: datetime, ally: Ally, *, reason: str, by: Member) -> Ally:
    """An ally off every list, its vows with it."""
    acting = _check_host(session, now, by)
    if ally.withdrawn_at is not None:
        raise Conflict(_("%(name)s is no longer an ally.", name=ally.name))
    reason = clean_text(reason, field="reason", max_length=MAX_REASON)
    ally.withdrawn_at = now
    for vow in ally.vows:
        if vow.withdrawn_at is None:
            vow.withdrawn_at, vow.withdrawn_by, vow.withdrawal_reason = now, by.handle, reason
    session.flush()
    power_record.record(session, now, actor=by, role=acting, action="ally-withdrawn",
                        subject=f"ally {ally.id}: {ally.name}", reason=reason)
    return ally


def record_fulfilment(session: Session, now: datetime, vow: AllyVow, *, on: date | str | None, line: str,
                      by: Member) -> VowFulfilment:
    """A host marks a vow kept: one public line that names no one, celebrated on the bench page."""
    _check_host(session, now, by)
    if not vow.in_force:
        raise Conflict(_("Only a vow in force can be marked fulfilled."))
    day = _day(on, now, field="day fulfilled")
    line = public_words(line, field="what happened", max_length=MAX_LINE)
    _refuse_handles(session, line)
    fulfilment = VowFulfilment(vow=vow, fulfilled_on=day, line=line, recorded_at=now, recorded_by=by.handle)
    session.add(fulfilment)
    session.flush()
    return fulfilment


def _refuse_handles(session: Session, line: str) -> None:
    """A fulfilment is public: it names no steward, not even by handle (they show theirs only by their own choice)."""
    words = {word.lower() for word in re.findall(r"\w+", line)}
    for handle in session.scalars(select(Member.handle)):
        if len(handle) >= 3 and handle.lower() in words:
            raise Invalid(_("“%(handle)s” is a member's handle: the line is public, so it names no one "
                            "(“tea for two stewards”, not who).", handle=handle), field="what happened")


def _day(value: date | str | None, now: datetime, *, field: str) -> date:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if text else None
        except ValueError:
            raise Invalid(_("Give the day as year-month-day, like 2026-11-03."), field=field) from None
    if value is None:
        raise Invalid(_("Please give the day."), field=field)
    if value > (now + timedelta(days=1)).date():
        raise Invalid(_("That day is still to come."), field=field)
    return value


def _published_area(session: Session, name: str | None) -> patrol.Area:
    name = (name or "").strip()
    found = session.scalar(select(patrol.Area).where(patrol.Area.name == name)) if name else None
    if found is None:
        raise Invalid(_("Choose one of the published areas, so stewards know where it is."), field="area")
    return found


# -- reading ------------------------------------------------------------------


def current_allies(session: Session) -> list[Ally]:
    """Allies not withdrawn, with every vow (for the hosts' page), by name."""
    return list(session.scalars(select(Ally).where(Ally.withdrawn_at.is_(None)).order_by(Ally.name)))


@dataclass(frozen=True)
class PublicVow:
    """A vow in force as anyone may see it: what the public page, the bench page, the card and SAFE show."""

    id: int
    ally: str
    place: str
    text: str
    kind: str
    hours: str  # canonical
    crisis_only: bool
    area: str | None
    decided_on: date
    decision_place: str
    open_now: bool
    closes_at: datetime | None  # local
    opens_at: datetime | None  # local, when closed

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def hours_label(self) -> str:
        return hours_text(self.hours)


@dataclass(frozen=True)
class Fulfilled:
    ally: str
    vow: str
    on: date
    line: str


# The columns a public vow is made of, in this order (shared with the bench page's one statement).
_ally = Ally.__table__
_vow = AllyVow.__table__
_area = patrol.Area.__table__
PUBLIC_VOWS = (
    select(_vow.c.id, _ally.c.name, _ally.c.place, _vow.c.text, _vow.c.kind, _vow.c.hours, _vow.c.crisis_only,
           _area.c.name, _vow.c.decided_on, _vow.c.decision_place)
    .select_from(_vow.join(_ally, _vow.c.ally_id == _ally.c.id).outerjoin(_area, _vow.c.area_id == _area.c.id))
    .where(_vow.c.countersigned_at.is_not(None), _vow.c.withdrawn_at.is_(None), _ally.c.withdrawn_at.is_(None))
    .order_by(_area.c.name, _ally.c.name, _vow.c.id)
)


def public_vow(row: tuple, local: datetime) -> PublicVow:
    """A row of ``PUBLIC_VOWS`` read at the bench's wall-clock time ``local``."""
    vow_id, ally, place, text, kind, hours, crisis_only, area, decided_on, decision_place = row[:10]
    parsed = _hours_or_none(hours)
    open_now = parsed is not None and parsed.is_open(local)
    return PublicVow(
        id=vow_id, ally=ally, place=place, text=text, kind=kind, hours=hours, crisis_only=bool(crisis_only),
        area=area, decided_on=decided_on, decision_place=decision_place, open_now=open_now,
        closes_at=parsed.closes_at(local) if open_now and parsed else None,
        opens_at=parsed.next_opening(local) if not open_now and parsed else None,
    )


def _hours_or_none(hours: str) -> Hours | None:
    try:
        return parse_hours(hours)
    except Invalid:
        return None  # never happens for what record_vow kept; a hand-edited row reads as closed


def public_vows(session: Session, now: datetime, zone: ZoneInfo | None) -> list[PublicVow]:
    """Every vow in force, by area and ally, open or closed at ``now``."""
    local = local_time(now, zone)
    return [public_vow(tuple(row), local) for row in session.execute(PUBLIC_VOWS)]


def recent_fulfilments(session: Session, now: datetime, limit: int = 20) -> list[Fulfilled]:
    """Vows kept lately (of vows still in force), newest first."""
    since = (now - timedelta(days=FULFILMENT_SHOWN_DAYS)).date()
    rows = session.execute(
        select(Ally.name, AllyVow.text, VowFulfilment.fulfilled_on, VowFulfilment.line)
        .join(VowFulfilment.vow).join(AllyVow.ally)
        .where(VowFulfilment.fulfilled_on >= since, AllyVow.withdrawn_at.is_(None), Ally.withdrawn_at.is_(None))
        .order_by(VowFulfilment.fulfilled_on.desc(), VowFulfilment.id.desc())
        .limit(limit)
    )
    return [Fulfilled(*row) for row in rows]


def next_change(vows: list[PublicVow], now: datetime, zone: ZoneInfo | None) -> datetime | None:
    """The next moment (naive UTC) any listed vow opens or closes: a page showing "open now" is stale then."""
    local = local_time(now, zone)
    changes = []
    for vow in vows:
        parsed = _hours_or_none(vow.hours)
        change = parsed.next_change(local) if parsed else None
        if change is not None:
            changes.append(_utc_of(change, zone))
    return min(changes) if changes else None


def nearest_first(vows: list[PublicVow], area: str | None) -> list[PublicVow]:
    """The hub knows no map, only published areas: the asker's area first, then the rest by area; shelters first."""
    wanted = (area or "").lower()
    return sorted(vows, key=lambda v: ((v.area or "").lower() != wanted if wanted else False,
                                       v.kind != SHELTER, (v.area or "").lower(), v.ally.lower()))


def card_vows(session: Session, limit: int = CARD_ALLIES) -> list[PublicVow]:
    """The few vows the pocket card and the poster print: shelters first, then by area (no clock: hours printed)."""
    vows = public_vows(session, datetime(2000, 1, 3), ZoneInfo("UTC"))  # a fixed moment: open-now is not printed
    return sorted(vows, key=lambda v: (v.kind != SHELTER, (v.area or "").lower(), v.ally.lower()))[:limit]


# -- the radio ------------------------------------------------------------------


def safe_answer(session: Session, now: datetime, zone: ZoneInfo | None, asked: str = "",
                here: str | None = None) -> str:
    """The answer to SAFE [area]: the nearest open ally in one packet, or who opens next.

    ``asked`` is the area the steward typed; without one, ``here`` (the area
    of their open shift). Everything in it is on the public allies page.
    """
    area = patrol.match_area(session, asked) if asked else None
    wanted = area.name if area is not None else here
    vows = public_vows(session, now, zone)
    if not vows:
        return _("No allies listed yet. Danger? Send SOS.")
    open_now = nearest_first([v for v in vows if v.open_now], wanted)
    if open_now:
        first = open_now[0]
        text = _safe_line(first)
        if len(open_now) > 1:
            longer = _("%(first)s Also: %(second)s (%(area)s).", first=text, second=open_now[1].ally,
                       area=open_now[1].area or "-")
            if fits_one_packet(longer):
                text = longer
        return text if fits_one_packet(text) else _short_line(first)
    soonest = min((v for v in vows if v.opens_at is not None), key=lambda v: (v.opens_at, v.kind != SHELTER),
                  default=None)
    if soonest is None:
        return _("No ally open now. Danger? Send SOS.")
    local = local_time(now, zone)
    when = (soonest.opens_at.strftime("%H:%M") if soonest.opens_at.date() == local.date()
            else f"{DAY_LABELS[DAYS[soonest.opens_at.weekday()]]} {soonest.opens_at:%H:%M}")
    text = _("None open now. %(ally)s (%(area)s) opens at %(time)s.", ally=soonest.ally, area=soonest.area or "-",
             time=when)
    return text if fits_one_packet(text) else _("None open now. Next opens at %(time)s.", time=when)


def _safe_line(vow: PublicVow) -> str:
    until = vow.closes_at.strftime("%H:%M") if vow.closes_at else _("all night")
    if vow.crisis_only:
        return _("Open now, in a crisis: %(ally)s, %(place)s (%(area)s): %(vow)s, until %(until)s.",
                 ally=vow.ally, place=vow.place, area=vow.area or "-", vow=vow.text, until=until)
    return _("Open now: %(ally)s, %(place)s (%(area)s): %(vow)s, until %(until)s.",
             ally=vow.ally, place=vow.place, area=vow.area or "-", vow=vow.text, until=until)


def _short_line(vow: PublicVow) -> str:
    """When the place and the vow are too long for one packet: where, and till when."""
    until = vow.closes_at.strftime("%H:%M") if vow.closes_at else _("all night")
    text = _("Open now: %(ally)s (%(area)s), %(kind)s, until %(until)s.", ally=vow.ally, area=vow.area or "-",
             kind=vow.kind_label, until=until)
    return text if fits_one_packet(text) else text.encode("utf-8")[:190].decode("utf-8", "ignore")


# -- the bench page ---------------------------------------------------------------

_fulfilment = VowFulfilment.__table__


def _latest(column):  # noqa: ANN001, ANN202
    return (select(column).where(_fulfilment.c.vow_id == _vow.c.id)
            .order_by(_fulfilment.c.fulfilled_on.desc(), _fulfilment.c.id.desc()).limit(1).scalar_subquery())


# The bench page's one statement for its allies: every vow in force, each with the last time it was kept.
BENCH_VOWS = PUBLIC_VOWS.add_columns(_latest(_fulfilment.c.fulfilled_on), _latest(_fulfilment.c.line))


@dataclass(frozen=True)
class BenchAllies:
    open_now: list[PublicVow]
    listed: int  # vows in force, open or not
    fulfilled: list[Fulfilled]  # lately, newest first
    changes_at: datetime | None  # naive UTC: the first moment one of them opens or closes


def bench_allies(rows: list, now: datetime, zone: ZoneInfo | None) -> BenchAllies:
    """Rows of ``BENCH_VOWS`` as the bench page shows them: who is open now, and the vows kept lately."""
    local = local_time(now, zone)
    vows, fulfilled = [], []
    since = (now - timedelta(days=FULFILMENT_SHOWN_DAYS)).date()
    for row in rows:
        vow = public_vow(tuple(row), local)
        vows.append(vow)
        day, line = row[10], row[11]
        if day is not None and day >= since:
            fulfilled.append(Fulfilled(vow.ally, vow.text, day, line))
    fulfilled.sort(key=lambda f: f.on, reverse=True)
    return BenchAllies(open_now=nearest_first([v for v in vows if v.open_now], None), listed=len(vows),
                       fulfilled=fulfilled[:FULFILMENTS_SHOWN], changes_at=next_change(vows, now, zone))
