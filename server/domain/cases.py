"""Arrest cases: nobody is forgotten in a cell.

A case opens when a steward sends ``ARREST``, when dispatch opens one, or
when a neighbour reports an arrest at the bench page. It is counted in and
out ("arrested 3 / released 1") until everyone is accounted for, and
worked through the three rings as a checklist, each step time-stamped.
The 48-hour clock reminds dispatch at 24 and 48 hours while anyone is not
yet released.

Privacy: a case holds a description and a code, never a legal name by
default; only dispatch and the care ring see it; the public sees counts;
broadcasts carry code, place, count and time. A case is deleted a grace
period after everyone is released; the legal coordinator can download it
as a plain file before that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship

from server.domain import outbox, patrol
from server.domain.alerts import DRILL_PREFIX, dispatch_nodes, next_code, place_for_air
from server.domain.base import Base
from server.domain.errors import Invalid, NotFound
from server.domain.people import Member
from server.domain.text import clean_text

SOURCE_NEIGHBOUR = "bench"  # a neighbour's report from the bench page (no account)
MAX_COUNT = 200
MAX_DESCRIPTION = 1000


@dataclass(frozen=True)
class Step:
    key: str
    ring: int
    label: str


# The three rings, in the order the work is done.
RINGS = {1: "Legal", 2: "Family and funds", 3: "Release and welcome"}
STEPS = (
    Step("witness", 1, "Witness details captured"),
    Step("legal", 1, "Legal contact called"),
    Step("family", 2, "Family or emergency contact informed (only if the person consented beforehand)"),
    Step("bail", 2, "Bail fund decision"),
    Step("station", 3, "Someone at the station"),
    Step("welcome", 3, "Released and met: ride, food, phone sorted"),
)
STEP_KEYS = {step.key: step for step in STEPS}
REMINDERS = (24, 48)  # hours after the arrest


class ArrestCase(Base):
    __tablename__ = "arrest_case"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), index=True)
    opened_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(8))
    reported_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    place: Mapped[str] = mapped_column(String(patrol.MAX_PLACE))
    # When the arrest happened (a neighbour may report it later); the clock starts here.
    arrested_at: Mapped[datetime]
    arrested: Mapped[int] = mapped_column(Integer)
    released: Mapped[int] = mapped_column(Integer, default=0)
    # A description of the people and what happened; no legal names unless dispatch adds them.
    description: Mapped[str | None] = mapped_column(Text)
    agency: Mapped[str | None] = mapped_column(String(120))
    witness_contact: Mapped[str | None] = mapped_column(String(200))
    # Consent given beforehand (e.g. on a bust card) to inform family or an emergency contact.
    family_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    exported_at: Mapped[datetime | None]
    reminded_hours: Mapped[int] = mapped_column(Integer, default=0)

    reported_by: Mapped[Member | None] = relationship()
    steps: Mapped[list[CaseStep]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="CaseStep.done_at"
    )

    @property
    def outstanding(self) -> int:
        return max(0, self.arrested - self.released)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def step_done(self, key: str) -> CaseStep | None:
        return next((s for s in self.steps if s.key == key), None)


class CaseStep(Base):
    __tablename__ = "case_step"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("arrest_case.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(16))
    done_at: Mapped[datetime]
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)

    case: Mapped[ArrestCase] = relationship(back_populates="steps")
    done_by: Mapped[Member | None] = relationship()

    @property
    def label(self) -> str:
        return STEP_KEYS[self.key].label if self.key in STEP_KEYS else self.key


# -- opening --------------------------------------------------------------------------


def _count(value: int | str | None, field: str, minimum: int) -> int:
    try:
        number = int(value) if value not in (None, "") else minimum
    except (TypeError, ValueError):
        raise Invalid("Give the number of people as a number.", field=field) from None
    if not minimum <= number <= MAX_COUNT:
        raise Invalid(f"The number of people must be between {minimum} and {MAX_COUNT}.", field=field)
    return number


def open_case(session: Session, now: datetime, *, place: str | None, arrested: int | str | None = 1,
              source: str, reported_by: Member | None = None, arrested_at: datetime | None = None,
              description: str | None = None, agency: str | None = None, witness_contact: str | None = None,
              hotline: str = "", drill: bool = False, place_required: bool = True) -> ArrestCase:
    """Open a case and put code, place, count and time on the air at once, with the legal hotline."""
    place = clean_text(place, field="place", max_length=patrol.MAX_PLACE, required=False) or None
    if place is None and reported_by is not None:
        shift = patrol.current_shift(session, reported_by)
        place = shift.place if shift else None
    if place is None and place_required:
        raise Invalid("Say where the arrest happened.", field="place")
    # ``ARREST`` alone from a handheld is never refused: the notice goes out, dispatch asks where.
    place = place or "place not given"
    arrested_at = arrested_at or now
    if arrested_at > now + timedelta(minutes=5):
        raise Invalid("The time of the arrest is in the future.", field="when")
    if arrested_at < now - timedelta(days=7):
        raise Invalid("That is more than a week ago; tell dispatch in person.", field="when")
    case = ArrestCase(
        code=next_code(session, ArrestCase, "C", ArrestCase.closed_at.is_(None)),
        opened_at=now, source=source, reported_by=reported_by, place=place, arrested_at=arrested_at,
        arrested=_count(arrested, "count", 1), released=0,
        description=clean_text(description, field="description", max_length=MAX_DESCRIPTION, required=False,
                               multiline=True) or None,
        agency=clean_text(agency, field="agency", max_length=120, required=False) or None,
        witness_contact=clean_text(witness_contact, field="contact", max_length=200, required=False) or None,
        drill=drill, reminded_hours=0,
    )
    session.add(case)
    session.flush()
    patrol.log_entry(session, now, "arrest", reported_by, source if source in patrol.SOURCES else patrol.SOURCE_WEB,
                     place=place, note=f"{case.code}: {case.arrested} arrested", public=False, drill=drill)
    outbox.queue_message(session, now, case_text(case, hotline), priority=outbox.URGENT,
                         dedupe_key=f"case:{case.id}", bell=True)
    return case


def case_text(case: ArrestCase, hotline: str = "") -> str:
    """Code, place, count and time: never a name or a description."""
    drill = DRILL_PREFIX if case.drill else ""
    place = place_for_air(case.place)
    legal = f" Legal hotline {hotline}." if hotline else " Dispatch: check the hub."
    return f"{drill}ARREST {case.code}: {case.arrested} at {place}, {case.arrested_at:%H:%M}Z.{legal}"


# -- working a case -----------------------------------------------------------------------


def get_case(session: Session, case_id: int) -> ArrestCase:
    case = session.get(ArrestCase, case_id)
    if case is None:
        raise NotFound("That case does not exist (it may have been purged).")
    return case


def find_open_case(session: Session, code: str) -> ArrestCase | None:
    wanted = "".join(ch for ch in code.upper() if ch.isalnum())
    return session.scalar(select(ArrestCase).where(ArrestCase.code == wanted, ArrestCase.closed_at.is_(None)))


def _note(session: Session, now: datetime, case: ArrestCase, member: Member | None, text: str) -> None:
    patrol.log_entry(session, now, "case", member, patrol.SOURCE_WEB, note=f"{case.code}: {text}", public=False,
                     drill=case.drill)


def count_in(session: Session, now: datetime, case: ArrestCase, more: int | str, member: Member | None) -> ArrestCase:
    """More people were taken than first reported."""
    more = _count(more, "count", 1)
    if case.arrested + more > MAX_COUNT:
        raise Invalid(f"A case counts at most {MAX_COUNT} people.", field="count")
    case.arrested += more
    case.closed_at = None
    _note(session, now, case, member, f"{more} more arrested ({case.arrested} in all)")
    session.flush()
    return case


def count_out(session: Session, now: datetime, case: ArrestCase, released: int | str,
              member: Member | None) -> ArrestCase:
    """People released; when everyone is out the case closes and its grace period starts."""
    released = _count(released, "released", 1)
    if released > case.outstanding:
        raise Invalid(f"Only {case.outstanding} still held in case {case.code}.", field="released")
    case.released += released
    _note(session, now, case, member, f"{released} released ({case.released} of {case.arrested})")
    if case.outstanding == 0:
        case.closed_at = now
        _note(session, now, case, member, "everyone released")
    session.flush()
    return case


def complete_step(session: Session, now: datetime, case: ArrestCase, key: str, member: Member | None,
                  note: str | None = None) -> CaseStep:
    if key not in STEP_KEYS:
        raise Invalid("Unknown checklist step.", field="step")
    if key == "family" and not case.family_consent:
        raise Invalid("No consent on record to inform family: record the consent first, or leave this step.",
                      field="step")
    done = case.step_done(key)
    if done is not None:
        return done
    step = CaseStep(key=key, done_at=now, done_by=member,
                    note=clean_text(note, field="note", max_length=500, required=False, multiline=True) or None)
    case.steps.append(step)
    _note(session, now, case, member, STEP_KEYS[key].label.split(" (")[0].lower())
    session.flush()
    return step


def record_consent(session: Session, now: datetime, case: ArrestCase, member: Member | None) -> ArrestCase:
    """The person had agreed beforehand (a bust card, the care ring's list) that family may be told."""
    case.family_consent = True
    _note(session, now, case, member, "prior consent to inform family recorded")
    session.flush()
    return case


def update_details(session: Session, case: ArrestCase, *, description: str | None, agency: str | None) -> ArrestCase:
    case.description = clean_text(description, field="description", max_length=MAX_DESCRIPTION, required=False,
                                  multiline=True) or None
    case.agency = clean_text(agency, field="agency", max_length=120, required=False) or None
    session.flush()
    return case


# -- lists, counts, the clock -----------------------------------------------------------------


def open_cases(session: Session) -> list[ArrestCase]:
    return list(session.scalars(
        select(ArrestCase).where(ArrestCase.closed_at.is_(None))
        .options(joinedload(ArrestCase.steps)).order_by(ArrestCase.arrested_at)
    ).unique())


def closed_cases(session: Session) -> list[ArrestCase]:
    return list(session.scalars(
        select(ArrestCase).where(ArrestCase.closed_at.is_not(None)).order_by(ArrestCase.closed_at.desc())
    ))


@dataclass(frozen=True)
class PublicCounts:
    arrested: int
    released: int

    @property
    def held(self) -> int:
        return self.arrested - self.released


def public_counts(session: Session) -> PublicCounts:
    """All the public sees of cases still open: how many taken, how many out. Drills are not counted."""
    arrested, released = session.execute(
        select(func.coalesce(func.sum(ArrestCase.arrested), 0), func.coalesce(func.sum(ArrestCase.released), 0))
        .where(ArrestCase.closed_at.is_(None), ArrestCase.drill.is_(False))
    ).one()
    return PublicCounts(int(arrested), int(released))


def hours_held(case: ArrestCase, now: datetime) -> float:
    return (now - case.arrested_at).total_seconds() / 3600


def remind_due(session: Session, now: datetime) -> list[ArrestCase]:
    """The 48-hour clock: at 24 h and 48 h, anyone not yet released is raised with dispatch, by radio too."""
    reminded = []
    for case in open_cases(session):
        due = [h for h in REMINDERS if h > case.reminded_hours and hours_held(case, now) >= h]
        if not due:
            continue
        hours = max(due)
        case.reminded_hours = hours
        drill = DRILL_PREFIX if case.drill else ""
        text = f"{drill}{case.code}: {hours} h since arrest, {case.outstanding} not released. Check the case."
        for node in dispatch_nodes(session, now):
            outbox.queue_message(session, now, text, destination=node, priority=outbox.URGENT,
                                 dedupe_key=f"case:{case.id}:{hours}h:{node}", bell=True)
        patrol.log_entry(session, now, "case", None, patrol.SOURCE_SYSTEM,
                         note=f"{case.code}: {hours} h since arrest, {case.outstanding} not released",
                         public=False, drill=case.drill)
        reminded.append(case)
    session.flush()
    return reminded


def overdue_cases(session: Session, now: datetime) -> list[ArrestCase]:
    """Open cases past 24 hours, for the banner on dispatch pages."""
    return [case for case in open_cases(session) if hours_held(case, now) >= REMINDERS[0]]


def purge_due_on(case: ArrestCase, grace: timedelta) -> datetime | None:
    return case.closed_at + grace if case.closed_at else None


def purge_closed(session: Session, now: datetime, grace: timedelta) -> int:
    """Everyone released plus the grace period: the case is deleted, exported or not."""
    old = list(session.scalars(select(ArrestCase).where(ArrestCase.closed_at <= now - grace)))
    for case in old:
        session.delete(case)
    session.flush()
    return len(old)


def export_text(session: Session, now: datetime, case: ArrestCase) -> str:
    """The case as a plain text file for the legal coordinator; marks it exported."""
    case.exported_at = now
    session.flush()
    lines = [
        f"Arrest case {case.code}" + (" (DRILL)" if case.drill else ""),
        f"Exported: {now:%Y-%m-%d %H:%M} UTC",
        f"Arrested at: {case.arrested_at:%Y-%m-%d %H:%M} UTC",
        f"Place: {case.place}",
        f"Count: arrested {case.arrested}, released {case.released}",
        f"Agency: {case.agency or 'not known'}",
        f"Reported via: {case.source}",
        f"Witness contact: {case.witness_contact or 'none given'}",
        f"Prior consent to inform family: {'yes' if case.family_consent else 'no'}",
        "",
        "Description:",
        case.description or "(none)",
        "",
        "Checklist:",
    ]
    for step in STEPS:
        done = case.step_done(step.key)
        when = f"{done.done_at:%Y-%m-%d %H:%M} UTC" + (f" by {done.done_by.handle}" if done.done_by else "") \
            if done else "not done"
        lines.append(f"- [{RINGS[step.ring]}] {step.label}: {when}" + (f" ({done.note})" if done and done.note else ""))
    if case.closed_at:
        lines += ["", f"Everyone released: {case.closed_at:%Y-%m-%d %H:%M} UTC"]
    return "\n".join(lines) + "\n"
