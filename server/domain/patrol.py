"""Patrol shifts and the patrol log: where a check-in goes.

The log is published, but what the public sees is made here, not in a
template: times rounded, free-text notes and places left out, areas only
when they match a name the host has published. A steward's note may say
"man in red coat at number 12"; that must never reach the bench page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, func, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship

from server.domain import ledger, power_record
from server.domain import sealing
from server.domain.base import Base
from server.domain.sealing import SealedText
from server.domain.errors import Conflict, Invalid, NotFound
from server.domain.people import Member
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

SHIFT_START = "shift_start"
SHIFT_END = "shift_end"
CHECK_IN = "check_in"
INCIDENT = "incident"
KIND_LABELS = Labels({
    SHIFT_START: N_("Shift started"),
    SHIFT_END: N_("Shift ended"),
    CHECK_IN: N_("Check-in"),
    INCIDENT: N_("Incident logged"),
})

# Kinds the hub keeps but never publishes: the public log lists only KIND_LABELS.
PRIVATE_KIND_LABELS = Labels({
    "sos": "SOS",
    "arrest": N_("Arrest reported"),
    "alert_ack": N_("Responding"),
    "alert_clear": N_("Alert resolved"),
    "overdue": N_("Overdue check-in"),
    "duress": N_("Silent alert"),
    "case": N_("Arrest case"),
    "arrest_confirm": N_("Arrest report confirmed"),
})


def kind_label(kind: str) -> str:
    """A log entry's kind in words, in the language being spoken."""
    return KIND_LABELS.get(kind) or PRIVATE_KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


# The ones a host watching the live log must not miss.
URGENT_KINDS = frozenset({"sos", "arrest", "overdue", "duress"})
# Kinds that even the hub's own log shows only to some roles: a silent alert
# is for host and dispatch, an arrest case's progress for dispatch and care.
RESTRICTED_KINDS = {"duress": frozenset({"host", "dispatch"}), "case": frozenset({"dispatch", "care"})}


def kinds_hidden_from(roles: set[str] | frozenset[str]) -> frozenset[str]:
    return frozenset(kind for kind, allowed in RESTRICTED_KINDS.items() if not allowed & set(roles))

SOURCE_RADIO = "radio"
SOURCE_WEB = "web"
SOURCE_CLI = "cli"
SOURCE_SYSTEM = "system"
SOURCES = (SOURCE_RADIO, SOURCE_WEB, SOURCE_CLI, SOURCE_SYSTEM)

MAX_NOTE = 500
MAX_PLACE = 120


class Area(Base):
    """A named part of the neighbourhood the host has agreed to publish."""

    __tablename__ = "area"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)


class Landmark(Base):
    """A place the hosts listed as safe to name on the air (a corner, a shop, a stop).

    Not published on the public log like an area; only what an arrest
    notice may carry as its place.
    """

    __tablename__ = "landmark"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)


class Shift(Base):
    __tablename__ = "shift"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    # What the steward said, kept private; ``area`` is the public part of it.
    place: Mapped[str | None] = mapped_column(String(MAX_PLACE))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(index=True)
    # Lone-worker safety (server/domain/overdue.py): when the steward was
    # pinged for a missed check-in, and the alert raised after a second miss.
    overdue_pinged_at: Mapped[datetime | None]
    # Indexed: purging an alert sets this to NULL, and without an index SQLite reads every shift to find it.
    overdue_alert_id: Mapped[int | None] = mapped_column(ForeignKey("alert.id", ondelete="SET NULL"), index=True)

    member: Mapped[Member] = relationship()
    area: Mapped[Area | None] = relationship()


_UNREDUCED = "member_id IS NOT NULL OR shift_id IS NOT NULL OR note IS NOT NULL OR place IS NOT NULL"


class LogEntry(Base):
    __tablename__ = "log_entry"
    __table_args__ = (
        # Only the entries the retention has still to reduce (server/domain/retention.py UNREDUCED, the same
        # words): after years the index holds the last month or so, and the hourly job never reads the rest.
        # PostgreSQL's copy of the condition is in the migration (g14i0000idx) alone: a postgresql_ option here
        # makes SQLAlchemy import its whole PostgreSQL dialect into every process of a SQLite bench, 2.2 MB
        # each in the web server and the bridge (issue 14), and a schema comes only from the migrations.
        Index("ix_log_entry_unreduced_at", "at", sqlite_where=sql_text(_UNREDUCED)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"), index=True)
    # Indexed: the overdue check reads the entries of the shifts on patrol, and a shift's deletion sets this NULL.
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("shift.id", ondelete="SET NULL"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    # Typed by a steward ("by 6 Cobbold Row"): sealed like the note; the area beside it is what stays readable.
    place: Mapped[str | None] = mapped_column(SealedText(sealing.LOG))
    note: Mapped[str | None] = mapped_column(SealedText(sealing.LOG))
    source: Mapped[str] = mapped_column(String(8))
    # An entry the host has withdrawn from the public log stays for the hub.
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    # Written by a rehearsal: labelled DRILL wherever it is shown.
    drill: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # A withdrawal leaves a gap on the public log saying by which role and why
    # (never by whom: the record of power used keeps the handle).
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by: Mapped[str | None] = mapped_column(String(40))
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)

    member: Mapped[Member | None] = relationship()
    area: Mapped[Area | None] = relationship()

    @property
    def kind_label(self) -> str:
        return kind_label(self.kind)

    @property
    def publishable(self) -> bool:
        """Whether this entry is of a kind the public log shows at all (drills and private kinds never are)."""
        return self.kind in KIND_LABELS and not self.drill

    @property
    def withdrawn(self) -> bool:
        return self.publishable and not self.public


@dataclass(frozen=True)
class PublicLogEntry:
    """One line of the published log: process, not people."""

    id: int
    at: datetime
    kind: str
    label: str
    steward: str | None  # only the handle of a steward who chose to show it
    area: str | None
    # Set for a withdrawn entry: the gap in its place says this, and nothing of the entry.
    withdrawal: str | None = None


# -- areas --------------------------------------------------------------------


def add_area(session: Session, name: str) -> Area:
    name = clean_text(name, field="area name", max_length=40)
    if session.scalar(select(Area).where(func.lower(Area.name) == name.lower())) is not None:
        raise Conflict(_("The area %(name)s exists already.", name=repr(name)), field="area name")
    area = Area(name=name)
    session.add(area)
    session.flush()
    return area


def remove_area(session: Session, area_id: int) -> None:
    area = session.get(Area, area_id)
    if area is None:
        raise NotFound(_("That area does not exist."))
    session.delete(area)
    session.flush()


def list_areas(session: Session) -> list[Area]:
    return list(session.scalars(select(Area).order_by(Area.name)))


def match_area(session: Session, place: str | None) -> Area | None:
    """The published area a steward's place names, if it names one exactly.

    "market" or "Market square west" both match the area "Market"; "12 Elm
    St" matches nothing and so stays private.
    """
    if not place:
        return None
    words = place.lower().split()
    best = None
    for area in list_areas(session):
        area_words = area.name.lower().split()
        if words[: len(area_words)] == area_words and (best is None or len(area.name) > len(best.name)):
            best = area
    return best


# -- landmarks ----------------------------------------------------------------

# A phone number or an email address must never become a place on the air,
# even by a host's mistake: five digits or more in a row (spaces, dashes,
# dots, slashes or brackets between them), or an "@".
_CONTACT_LIKE = re.compile(r"@|\d(?:[\s().\-/]{0,2}\d){4,}")


def looks_like_contact(text: str) -> bool:
    """Whether ``text`` holds what could be a phone number or an email address."""
    return _CONTACT_LIKE.search(text) is not None


def add_landmark(session: Session, name: str) -> Landmark:
    """List a place the hosts agree may be named on the air (a corner, a shop, a stop)."""
    name = clean_text(name, field="landmark name", max_length=40)
    if looks_like_contact(name):
        raise Invalid(_("A landmark goes on the air: leave phone numbers, email addresses and house numbers of "
                        "five digits or more out of it."), field="landmark name")
    if session.scalar(select(Landmark).where(func.lower(Landmark.name) == name.lower())) is not None:
        raise Conflict(_("The landmark %(name)s is listed already.", name=repr(name)), field="landmark name")
    landmark = Landmark(name=name)
    session.add(landmark)
    session.flush()
    return landmark


def remove_landmark(session: Session, landmark_id: int) -> None:
    landmark = session.get(Landmark, landmark_id)
    if landmark is None:
        raise NotFound(_("That landmark does not exist."))
    session.delete(landmark)
    session.flush()


def list_landmarks(session: Session) -> list[Landmark]:
    return list(session.scalars(select(Landmark).order_by(Landmark.name)))


# -- shifts and the log -------------------------------------------------------


def _clean_place(place: str | None) -> str | None:
    return clean_text(place, field="place", max_length=MAX_PLACE, required=False) or None


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise Invalid(_("Unknown source %(source)s.", source=repr(source)))
    return source


def current_shift(session: Session, member: Member) -> Shift | None:
    return session.scalar(
        select(Shift).where(Shift.member_id == member.id, Shift.ended_at.is_(None)).order_by(Shift.started_at.desc())
    )


def log_entry(
    session: Session,
    now: datetime,
    kind: str,
    member: Member | None,
    source: str,
    *,
    shift: Shift | None = None,
    place: str | None = None,
    area: Area | None = None,
    note: str | None = None,
    public: bool = True,
    drill: bool = False,
) -> LogEntry:
    entry = LogEntry(
        at=now,
        kind=kind,
        member=member,
        shift_id=shift.id if shift else None,
        area=area,
        place=place,
        note=note,
        source=_check_source(source),
        public=public,
        drill=drill,
    )
    session.add(entry)
    session.flush()
    return entry


def _heard_from(session: Session, now: datetime, shift: Shift | None, proven: bool = True) -> None:
    """Any word from a steward on shift clears an overdue check-in (an open OVERDUE alert: a proven word only)."""
    from server.domain import overdue  # it builds on this module: imported when used, not at import time

    overdue.heard_from(session, now, shift, proven=proven)


def start_shift(session: Session, now: datetime, member: Member, place: str | None, source: str, *,
                proven: bool = True) -> Shift:
    """Put a steward on patrol. Starting again while on shift moves the shift."""
    place = _clean_place(place)
    area = match_area(session, place)
    shift = current_shift(session, member)
    if shift is not None:
        if place and place != shift.place:
            shift.place, shift.area = place, area
            log_entry(session, now, CHECK_IN, member, source, shift=shift, place=place, area=area, note="moved")
        _heard_from(session, now, shift, proven)
        return shift
    shift = Shift(member=member, place=place, area=area, started_at=now)
    session.add(shift)
    session.flush()
    log_entry(session, now, SHIFT_START, member, source, shift=shift, place=place, area=area)
    return shift


def end_shift(session: Session, now: datetime, member: Member, source: str) -> Shift:
    shift = current_shift(session, member)
    if shift is None:
        raise Invalid(_("%(handle)s is not on shift.", handle=member.handle))
    _heard_from(session, now, shift)  # signing off is a word from them too
    shift.ended_at = now
    log_entry(session, now, SHIFT_END, member, source, shift=shift, place=shift.place, area=shift.area)
    # Credits for the hours, only if the steward opted in; dated to the week, never to this shift (ledger.py).
    ledger.credit_closed_shift(session, now, member, shift.started_at, now)
    return shift


def record_check_in(
    session: Session, now: datetime, member: Member, source: str, note: str | None = None, place: str | None = None,
    *, proven: bool = True,
) -> LogEntry:
    """A steward says they are fine. The place defaults to their shift's."""
    note = clean_text(note, field="note", max_length=MAX_NOTE, required=False) or None
    shift = current_shift(session, member)
    place = _clean_place(place) or (shift.place if shift else None)
    area = match_area(session, place)
    entry = log_entry(session, now, CHECK_IN, member, source, shift=shift, place=place, area=area, note=note)
    _heard_from(session, now, shift, proven)
    return entry


def record_incident(
    session: Session, now: datetime, member: Member | None, source: str, what: str, place: str | None = None,
    *, proven: bool = True,
) -> LogEntry:
    what = clean_text(what, field="description", max_length=MAX_NOTE)
    shift = current_shift(session, member) if member else None
    place = _clean_place(place) or (shift.place if shift else None)
    area = match_area(session, place)
    entry = log_entry(session, now, INCIDENT, member, source, shift=shift, place=place, area=area, note=what)
    _heard_from(session, now, shift, proven)
    return entry


MAX_WITHDRAWAL_REASON = 200
REASON_REQUIRED = "Please say why: a withdrawal needs a reason, and the public log shows it in the entry's place."
# How the gap on the public log names the role that withdrew an entry (never the member).
WITHDRAWN_BY = Labels({"host": N_("a hub host"), "dispatch": N_("a dispatcher"), "captain": N_("a patrol captain")})


def _publishable_entry(session: Session, entry_id: int) -> LogEntry:
    entry = session.get(LogEntry, entry_id)
    if entry is None:
        raise NotFound(_("That log entry does not exist."))
    if not entry.publishable:
        raise Invalid(_("That entry is never on the public log: there is nothing to withdraw or put back."))
    return entry


def withdraw_entry(session: Session, now: datetime, entry_id: int, member: Member, role: str,
                   reason: str | None) -> LogEntry:
    """Take an entry off the public log. It leaves a gap there saying by which role and why; the record keeps who."""
    entry = _publishable_entry(session, entry_id)
    if not entry.public:
        raise Conflict(_("That entry is withdrawn already."))
    reason = clean_text(reason, field="reason", max_length=MAX_WITHDRAWAL_REASON, required=False)
    if not reason:
        raise Invalid(REASON_REQUIRED, field="reason")
    if looks_like_contact(reason):
        raise Invalid(_("The reason is shown on the public log: leave phone numbers, email addresses and long "
                        "numbers out of it."), field="reason")
    entry.public = False
    entry.withdrawn_at = now
    entry.withdrawn_by = WITHDRAWN_BY.get(role, "a role-holder")
    entry.withdrawal_reason = reason
    power_record.record(session, now, actor=member, role=role, action="log-withdrawn",
                        subject=f"log entry {entry.id} ({entry.kind_label.lower()})", reason=reason)
    session.flush()
    return entry


def republish_entry(session: Session, now: datetime, entry_id: int, member: Member, role: str) -> LogEntry:
    """Put a withdrawn entry back on the public log: the gap closes, the record keeps both steps."""
    entry = _publishable_entry(session, entry_id)
    if entry.public:
        raise Conflict(_("That entry is on the public log already."))
    entry.public = True
    entry.withdrawn_at = entry.withdrawn_by = entry.withdrawal_reason = None
    power_record.record(session, now, actor=member, role=role, action="log-republished",
                        subject=f"log entry {entry.id} ({entry.kind_label.lower()})",
                        reason="the withdrawal was undone: the entry is public again")
    session.flush()
    return entry


def on_patrol(session: Session) -> list[Shift]:
    """Open shifts, oldest first."""
    return list(
        session.scalars(
            select(Shift)
            .where(Shift.ended_at.is_(None))
            .options(joinedload(Shift.member), joinedload(Shift.area))
            .order_by(Shift.started_at)
        )
    )


@dataclass(frozen=True)
class PublicPatrol:
    """Who is out, as the open WiFi may know it: counts, published areas, and only the handles shown by choice."""

    total: int
    by_area: list[tuple[str, int]]  # (published area, stewards there), by area name
    # On patrol where no published area was named: a typed place is never shown, not even as a count of its own.
    elsewhere: int
    shown: list[str]  # the handles of stewards on patrol who chose to show them (people.set_show_handle)


def public_patrol(session: Session) -> PublicPatrol:
    """The stewards on patrol now, counted by published area; a handle only for those who opted in."""
    return count_on_patrol(
        (shift.member_id, shift.area.name if shift.area else None, shift.member.handle, shift.member.show_handle)
        for shift in on_patrol(session)
    )


def count_on_patrol(shifts: Iterable[tuple[int, str | None, str | None, bool]]) -> PublicPatrol:
    """What the public sees of (member id, area, handle, shows handle) per open shift; the bench page's reader
    (domain/bench_view.py) counts with it too, so the rule is written once."""
    stewards: dict[int, tuple[str | None, str | None, bool]] = {}
    for member_id, area, handle, shown in shifts:
        stewards.setdefault(member_id, (area, handle, bool(shown)))  # one steward, one count, whatever their shifts
    areas: dict[str, int] = {}
    for area, _handle, _shown in stewards.values():
        if area is not None:
            areas[area] = areas.get(area, 0) + 1
    return PublicPatrol(
        total=len(stewards),
        by_area=sorted(areas.items(), key=lambda item: item[0].lower()),
        elsewhere=sum(1 for area, _handle, _shown in stewards.values() if area is None),
        shown=sorted((handle for _area, handle, shown in stewards.values() if shown and handle), key=str.lower),
    )


def recent_entries(session: Session, limit: int = 100, before_id: int | None = None,
                   hidden_kinds: frozenset[str] = frozenset()) -> list[LogEntry]:
    """The full log for hosts, newest first, less the kinds the viewer may not see."""
    query = select(LogEntry).options(joinedload(LogEntry.member), joinedload(LogEntry.area))
    if hidden_kinds:
        query = query.where(LogEntry.kind.not_in(tuple(hidden_kinds)))
    if before_id is not None:
        query = query.where(LogEntry.id < before_id)
    return list(session.scalars(query.order_by(LogEntry.id.desc()).limit(limit)))


def round_down(moment: datetime, minutes: int) -> datetime:
    if minutes <= 1:
        return moment.replace(second=0, microsecond=0)
    floored = moment.replace(second=0, microsecond=0)
    return floored - timedelta(minutes=floored.minute % minutes)


def public_log(session: Session, limit: int, rounding_minutes: int) -> list[PublicLogEntry]:
    """The published log, newest first, with nothing that points at a person.

    A steward's handle is read with their choice at every reading, so one who
    stops showing it is gone from every entry of theirs, past ones too.
    """
    rows = session.execute(
        select(LogEntry.id, LogEntry.at, LogEntry.kind, Member.handle, Member.show_handle, Area.name, LogEntry.public,
               LogEntry.withdrawn_by, LogEntry.withdrawal_reason)
        .outerjoin(Member, LogEntry.member_id == Member.id)
        .outerjoin(Area, LogEntry.area_id == Area.id)
        # A withdrawn entry stays in its place as a gap that says by which role and why.
        .where(LogEntry.public.is_(True) | LogEntry.withdrawal_reason.is_not(None),
               LogEntry.drill.is_(False), LogEntry.kind.in_(tuple(KIND_LABELS)))
        .order_by(LogEntry.id.desc())
        .limit(limit)
    )
    return [public_log_entry(row, rounding_minutes) for row in rows]


def public_log_entry(row: Sequence[Any], rounding_minutes: int) -> PublicLogEntry:
    """What the public sees of (id, at, kind, handle, shows handle, area, public, withdrawn by, reason);
    the bench page's reader (domain/bench_view.py) shows its rows with it too, so the rule is written once."""
    row_id, at, kind, handle, shown, area, public, withdrawn_by, reason = row
    if public:
        return PublicLogEntry(id=row_id, at=round_down(at, rounding_minutes), kind=kind, label=KIND_LABELS[kind],
                              steward=handle if shown else None, area=area)
    return PublicLogEntry(
        id=row_id, at=round_down(at, rounding_minutes), kind="withdrawn", label="Withdrawn", steward=None, area=None,
        withdrawal=f"An entry was withdrawn by {withdrawn_by or 'a role-holder'}: {reason}",
    )


def entries_after(session: Session, last_id: int, limit: int,
                  hidden_kinds: frozenset[str] = frozenset()) -> list[LogEntry]:
    """The full log after ``last_id``, oldest first: what a live watcher has not seen yet.

    On SQLite ids are the order of commits: it takes one write transaction
    at a time and gives each new row the largest id so far plus one (no log
    entry is ever deleted, so none is reused), hence no row with a smaller id
    can appear after a watcher has read a larger one. (PostgreSQL draws ids
    from a sequence before commit; a hub on it would have to re-read a short
    window behind ``last_id``.)
    """
    return list(
        session.scalars(
            select(LogEntry)
            .where(LogEntry.id > last_id, LogEntry.kind.not_in(tuple(hidden_kinds)))
            .options(joinedload(LogEntry.member), joinedload(LogEntry.area))
            .order_by(LogEntry.id)
            .limit(limit)
        )
    )
