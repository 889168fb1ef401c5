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

The place on the air is never what someone typed (it may hold a name, a
phone number, or an order to stand down): it is a published area or a
landmark the hosts listed that the text names, else the sender's shift
area "details with dispatch", else "place with dispatch". A neighbour's
report reaches dispatch and the care ring at once, and every handheld only
once a dispatcher, captain or host confirmed it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Boolean, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, object_session, relationship

from server.domain import outbox, patrol, people, power_record
from server.domain.alerts import dispatch_nodes, next_code, normalize_code, place_for_air
from server.domain import sealing
from server.domain.base import Base
from server.domain.sealing import SealedText
from server.domain.errors import Conflict, DomainError, Invalid, NotFound
from server.domain.people import CAPTAIN, CARE, DISPATCH, HOST, Member
from server.domain.text import clean_text
from server.i18n import N_, Labels, speaking
from server.i18n import gettext as _

SOURCE_NEIGHBOUR = "bench"  # a neighbour's report from the bench page (no account)
MAX_COUNT = 200
MAX_DESCRIPTION = 1000
# One neighbour counts what they saw from the street. A few dozen people
# taken at once can still be counted by eye; past 50 no single witness
# counts reliably, and a slip ("200" for "20") would set the bail fund and
# the care ring's night wrong. Dispatch counts more in on the case page.
NEIGHBOUR_MAX_COUNT = 50
# A neighbour's report is about tonight; an older one needs dispatch's questions, in person.
NEIGHBOUR_MAX_AGE = timedelta(hours=24)
# Dispatch may open a case for an arrest they heard of late (by phone, the next day).
MAX_AGE = timedelta(days=7)
CLOCK_SLACK = timedelta(minutes=5)  # phones and the Pi disagree a little about the time

# What the air carries when the text names no listed place. Stored in English (a repeat is matched
# on the stored air place), said in the hub's language on the air (``shown_air_place``).
PLACE_WITH_DISPATCH = N_("place with dispatch")
DETAILS_WITH_DISPATCH = N_("details with dispatch")
# The bench itself is public (its poster hangs on it): the air may always name it.
BENCH_PLACE = "the bench"
_BENCH_WORDS = ["bench"]
_WORD = re.compile(r"\w+")
AIR_PLACE_LIMIT = 64  # the longest area name (40) with ", details with dispatch"

# ARREST by radio, per sender: a repeat names the same place within this
# window adds to the open case; past this many broadcasts an hour a case
# still opens, for dispatch, without going on the air (a forged flood buries nobody).
REPEAT_WINDOW = timedelta(minutes=10)
BROADCASTS_PER_HOUR = 3

# Who may put a neighbour's report on every handheld.
CONFIRM_ROLES = (DISPATCH, CAPTAIN, HOST)
# Who hears of a neighbour's report first: DISPATCHED when dispatch or the care
# ring hold a role, HOSTS when only hosts do, NOBODY when no one does yet.
ASKED_DISPATCH = "dispatch"
ASKED_HOSTS = "hosts"
ASKED_NOBODY = "nobody"


@dataclass(frozen=True)
class Step:
    key: str
    ring: int
    label: str


# The three rings, in the order the work is done.
RINGS = Labels({1: N_("Legal"), 2: N_("Family and funds"), 3: N_("Release and welcome")})
STEPS = (
    Step("witness", 1, N_("Witness details captured")),
    Step("legal", 1, N_("Legal contact called")),
    Step("family", 2, N_("Family or emergency contact informed (only if the person consented beforehand)")),
    Step("bail", 2, N_("Bail fund decision")),
    Step("station", 3, N_("Someone at the station")),
    Step("welcome", 3, N_("Released and met: ride, food, phone sorted")),
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
    # As typed ("outside 88 Wexcombe Terrace"): sealed; what the air hears is ``air_place``, worked out at once.
    place: Mapped[str] = mapped_column(SealedText(sealing.CASES))
    # When the arrest happened (a neighbour may report it later); the clock starts here.
    arrested_at: Mapped[datetime]
    arrested: Mapped[int] = mapped_column(Integer)
    released: Mapped[int] = mapped_column(Integer, default=0)
    # A description of the people and what happened; no legal names unless dispatch adds them.
    description: Mapped[str | None] = mapped_column(SealedText(sealing.CASES))
    agency: Mapped[str | None] = mapped_column(String(120))
    witness_contact: Mapped[str | None] = mapped_column(SealedText(sealing.CASES))
    # Consent given beforehand (e.g. on a bust card) to inform family or an emergency contact.
    family_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    exported_at: Mapped[datetime | None]
    reminded_hours: Mapped[int] = mapped_column(Integer, default=0)
    # What may go on the air for this case: a published area or a listed
    # landmark, never what a reporter typed (it may hold a name or a number).
    air_place: Mapped[str | None] = mapped_column(String(patrol.MAX_PLACE))
    # False for ARREST by channel traffic from a registered node (forgeable).
    verified: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # A neighbour's report reaches every handheld only once a dispatcher,
    # captain or host confirmed it; None until then. Radio reports by a
    # steward are confirmed when they open.
    confirmed_at: Mapped[datetime | None]
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))

    reported_by: Mapped[Member | None] = relationship(foreign_keys=[reported_by_id])
    confirmed_by: Mapped[Member | None] = relationship(foreign_keys=[confirmed_by_id])
    steps: Mapped[list[CaseStep]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="CaseStep.done_at"
    )

    @property
    def outstanding(self) -> int:
        return max(0, self.arrested - self.released)

    @property
    def is_confirmed(self) -> bool:
        """On every handheld: opened by a steward or dispatch, or a neighbour's report someone vouched for."""
        return self.confirmed_at is not None

    @property
    def on_air_as(self) -> str:
        """The place the air carries (or will, once confirmed) for this case."""
        return air_place_of(self)

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
    note: Mapped[str | None] = mapped_column(SealedText(sealing.CASES))

    case: Mapped[ArrestCase] = relationship(back_populates="steps")
    done_by: Mapped[Member | None] = relationship()

    @property
    def label(self) -> str:
        return _(STEP_KEYS[self.key].label) if self.key in STEP_KEYS else self.key


# -- the place on the air -----------------------------------------------------------


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _names(words: list[str], name_words: list[str]) -> bool:
    """Whether ``words`` hold ``name_words`` in a row, anywhere."""
    size = len(name_words)
    return size > 0 and any(words[i:i + size] == name_words for i in range(len(words) - size + 1))


def listed_places(session: Session) -> list[str]:
    """The names an arrest notice may carry: published areas and the hosts' landmarks."""
    names = [area.name for area in patrol.list_areas(session)]
    names += [landmark.name for landmark in patrol.list_landmarks(session)]
    # A name that could be a phone number or an address never goes on the air, however it got listed.
    return [name for name in names if not patrol.looks_like_contact(name)]


def named_place(session: Session, text: str | None) -> str | None:
    """The listed place ``text`` names, matched by whole words, case-insensitively, anywhere; the longest wins.

    "ARREST Jamal Okafor 0176 5550123 taken at Market" names "Market";
    "market square west" names "Market square" over "Market" when both are listed.
    """
    if not text:
        return None
    words = _words(text)
    best = None
    for name, name_words in [(name, _words(name)) for name in listed_places(session)] + [(BENCH_PLACE, _BENCH_WORDS)]:
        if _names(words, name_words) and (best is None or len(name) > len(best)):
            best = name
    return best


def air_place_for(session: Session, text: str | None, member: Member | None) -> str:
    """What an arrest notice may say for where: a listed place the text names, else the sender's
    shift area with "details with dispatch", else "place with dispatch". Never the text itself."""
    place = named_place(session, text)
    if place is not None:
        return place
    shift = patrol.current_shift(session, member) if member is not None else None
    if shift is not None and shift.area is not None and not patrol.looks_like_contact(shift.area.name):
        return f"{shift.area.name}, {DETAILS_WITH_DISPATCH}"
    return PLACE_WITH_DISPATCH


def air_place_of(case: ArrestCase) -> str:
    """The case's place for the air; a case opened before air places were kept gets one from its typed place."""
    if case.air_place:
        return case.air_place
    session = object_session(case)
    # A case from before air places were kept: its typed place is sealed by now, so dispatch tells it.
    typed = None if sealing.is_sealed(case.place) else case.place
    return (named_place(session, typed) if session is not None and typed else None) or PLACE_WITH_DISPATCH


# -- opening --------------------------------------------------------------------------


def _count(value: int | str | None, field: str, minimum: int, maximum: int = MAX_COUNT) -> int:
    try:
        number = int(value) if value not in (None, "") else minimum
    except (TypeError, ValueError):
        raise Invalid(_("Give the number of people as a number."), field=field) from None
    if maximum == NEIGHBOUR_MAX_COUNT and number > maximum:
        raise Invalid(_("More than %(max)d is more than one witness can count. Write %(max)d and say under "
                        "“What you saw” how many more you think there were; dispatch counts them in.",
                        max=maximum), field=field)
    if not minimum <= number <= maximum:
        raise Invalid(_("The number of people must be between %(min)d and %(max)d.", min=minimum, max=maximum),
                      field=field)
    return number


def _check_when(arrested_at: datetime, now: datetime, max_age: timedelta) -> datetime:
    if arrested_at > now + CLOCK_SLACK:
        raise Invalid(_("The time of the arrest is in the future."), field="when")
    if arrested_at < now - max_age:
        if max_age == NEIGHBOUR_MAX_AGE:
            raise Invalid(_("That is more than 24 hours ago: please tell dispatch in person, at the bench."),
                          field="when")
        raise Invalid(_("That is more than a week ago; tell dispatch in person."), field="when")
    return arrested_at


def open_case(session: Session, now: datetime, *, place: str | None, arrested: int | str | None = 1,
              source: str, reported_by: Member | None = None, arrested_at: datetime | None = None,
              description: str | None = None, agency: str | None = None, witness_contact: str | None = None,
              hotline: str = "", drill: bool = False, place_required: bool = True,
              verified: bool = True) -> ArrestCase:
    """Open a case; code, a listed place, count and time go on the air at once, with the legal hotline.

    A neighbour's report (``SOURCE_NEIGHBOUR``) is the exception: it goes at
    once to the radios of dispatch and the care ring (or the hosts'), and on
    the air only when a dispatcher, captain or host confirms it.
    """
    typed = clean_text(place, field="place", max_length=patrol.MAX_PLACE, required=False) or None
    return _open(session, now, typed=typed, air_place=air_place_for(session, typed, reported_by), arrested=arrested,
                 source=source, reported_by=reported_by, arrested_at=arrested_at, description=description,
                 agency=agency, witness_contact=witness_contact, hotline=hotline, drill=drill,
                 place_required=place_required, verified=verified, broadcast=True)


def _open(session: Session, now: datetime, *, typed: str | None, air_place: str, arrested: int | str | None,
          source: str, reported_by: Member | None, arrested_at: datetime | None, description: str | None,
          agency: str | None, witness_contact: str | None, hotline: str, drill: bool, place_required: bool,
          verified: bool, broadcast: bool) -> ArrestCase:
    place = typed
    if place is None and reported_by is not None:
        shift = patrol.current_shift(session, reported_by)
        place = shift.place if shift else None
    if place is None and place_required:
        raise Invalid(_("Say where the arrest happened."), field="place")
    # ``ARREST`` alone from a handheld is never refused: the notice goes out, dispatch asks where.
    place = place or "place not given"
    neighbour = source == SOURCE_NEIGHBOUR
    arrested_at = _check_when(arrested_at or now, now, NEIGHBOUR_MAX_AGE if neighbour else MAX_AGE)
    count = _count(arrested, "count", 1, NEIGHBOUR_MAX_COUNT if neighbour else MAX_COUNT)
    case = ArrestCase(
        code=next_code(session, ArrestCase, "C", ArrestCase.closed_at.is_(None)),
        opened_at=now, source=source, reported_by=reported_by, place=place, arrested_at=arrested_at,
        arrested=count, released=0,
        description=clean_text(description, field="description", max_length=MAX_DESCRIPTION, required=False,
                               multiline=True) or None,
        agency=clean_text(agency, field="agency", max_length=120, required=False) or None,
        witness_contact=clean_text(witness_contact, field="contact", max_length=200, required=False) or None,
        drill=drill, reminded_hours=0, air_place=air_place, verified=verified,
        # A steward's or dispatch's own word is on the air at once; a stranger's waits for someone to vouch for it.
        confirmed_at=None if neighbour else now,
    )
    session.add(case)
    session.flush()
    note = f"{case.code}{'' if verified else ' (unverified)'}: {case.arrested} arrested"
    if neighbour:
        note += ", reported at the bench; not on the air until confirmed"
    elif not broadcast:
        note += f"; not broadcast ({BROADCASTS_PER_HOUR} ARREST notices from this radio this hour already)"
    # The log's place is the air's: hosts and captains read the log, and what was typed is for dispatch and care.
    patrol.log_entry(session, now, "arrest", reported_by, source if source in patrol.SOURCES else patrol.SOURCE_WEB,
                     place=air_place, note=note, public=False, drill=drill)
    if neighbour:
        ask_about_report(session, now, case)
    elif broadcast:
        _broadcast(session, now, case, hotline)
    return case


def _broadcast(session: Session, now: datetime, case: ArrestCase, hotline: str) -> None:
    outbox.queue_message(session, now, case_text(case, hotline), priority=outbox.URGENT,
                         dedupe_key=f"case:{case.id}", bell=True)


def shown_air_place(case: ArrestCase, limit: int | None = AIR_PLACE_LIMIT) -> str:
    """The case's air place in the language being spoken, cut to what the air carries (``limit=None``: whole)."""
    place = air_place_of(case)
    if place == PLACE_WITH_DISPATCH:
        place = _(PLACE_WITH_DISPATCH)
    elif place.endswith(f", {DETAILS_WITH_DISPATCH}"):
        place = _("%(area)s, details with dispatch", area=place[: -len(DETAILS_WITH_DISPATCH) - 2])
    return (place_for_air(place, limit=limit) if limit else place) or ""


def case_text(case: ArrestCase, hotline: str = "") -> str:
    """Code, a listed place, count and time: never a name, a number or a description. In the hub's language."""
    with speaking(None):
        values = {"drill": _("DRILL ") if case.drill else "", "code": case.code, "n": case.arrested,
                  "place": shown_air_place(case), "time": f"{case.arrested_at:%H:%M}Z", "hotline": hotline}
        if case.verified:
            if hotline:
                return _("%(drill)sARREST %(code)s: %(n)d at %(place)s, %(time)s. Legal hotline %(hotline)s.",
                         **values)
            return _("%(drill)sARREST %(code)s: %(n)d at %(place)s, %(time)s. Dispatch: check the hub.", **values)
        if hotline:
            return _("%(drill)sARREST %(code)s (unverified): %(n)d at %(place)s, %(time)s. "
                     "Legal hotline %(hotline)s.", **values)
        return _("%(drill)sARREST %(code)s (unverified): %(n)d at %(place)s, %(time)s. Dispatch: check the hub.",
                 **values)


def held_text(case: ArrestCase, member: Member) -> str:
    """To dispatch's radios when a radio's ARREST is past the hour's broadcasts."""
    with speaking(None):
        values = {"code": case.code, "who": member.handle, "n": case.arrested, "place": shown_air_place(case),
                  "time": f"{case.arrested_at:%H:%M}Z", "per_hour": BROADCASTS_PER_HOUR}
        if case.verified:
            return _("ARREST %(code)s by %(who)s: %(n)d at %(place)s, %(time)s. Not broadcast: "
                     "%(per_hour)d an hour from one radio. See the hub.", **values)
        return _("ARREST %(code)s (unverified) by %(who)s: %(n)d at %(place)s, %(time)s. Not broadcast: "
                 "%(per_hour)d an hour from one radio. See the hub.", **values)


# -- ARREST from a handheld ------------------------------------------------------------


def report_from_radio(session: Session, now: datetime, member: Member, *, where: str, count: int | None,
                      note: str, verified: bool, hotline: str) -> ArrestCase:
    """``ARREST where [n] [note]`` from a registered steward: acted on even unverified (a missed arrest
    costs more than a false one), and marked so on the air and on the case pages.

    What was typed goes to the case for dispatch and care; the air hears a
    listed place. The same sender naming the same air place within
    ``REPEAT_WINDOW`` adds to their open case (no second broadcast); past
    ``BROADCASTS_PER_HOUR`` broadcasts an hour, a new case opens for
    dispatch, whose radios get a direct message instead.
    """
    where = clean_text(where, field="place", max_length=patrol.MAX_PLACE, required=False)
    note = clean_text(note, field="note", max_length=MAX_DESCRIPTION, required=False)
    typed = " ".join(part for part in (where, note) if part)
    air_place = air_place_for(session, typed, member)
    repeat = _recent_report(session, now, member, air_place)
    if repeat is not None:
        return _add_to_report(session, now, repeat, member, count, typed, verified)
    broadcast = _broadcasts_this_hour(session, now, member) < BROADCASTS_PER_HOUR
    case = _open(session, now, typed=where or None, air_place=air_place, arrested=count or 1,
                 source=patrol.SOURCE_RADIO, reported_by=member, arrested_at=None, description=note or None,
                 agency=None, witness_contact=None, hotline=hotline, drill=False, place_required=False,
                 verified=verified, broadcast=broadcast)
    if not broadcast:
        text = held_text(case, member)
        for node in who_hears_reports(session, now).nodes:
            outbox.queue_message(session, now, text, destination=node, priority=outbox.URGENT, bell=True,
                                 dedupe_key=f"case:{case.id}:held:{node}")
    return case


def _recent_report(session: Session, now: datetime, member: Member, air_place: str) -> ArrestCase | None:
    return session.scalar(
        select(ArrestCase).where(
            ArrestCase.reported_by_id == member.id, ArrestCase.source == patrol.SOURCE_RADIO,
            ArrestCase.closed_at.is_(None), ArrestCase.drill.is_(False), ArrestCase.air_place == air_place,
            ArrestCase.opened_at >= now - REPEAT_WINDOW,
        ).order_by(ArrestCase.opened_at.desc(), ArrestCase.id.desc()).limit(1)
    )


MAX_RADIO_ADDITIONS = 8


def _add_to_report(session: Session, now: datetime, case: ArrestCase, member: Member, count: int | None,
                   typed: str, verified: bool) -> ArrestCase:
    """The same steward said it again: the larger count stands, their words join the case, nothing goes on the air."""
    case.arrested = max(case.arrested, _count(count or 1, "count", 1))
    case.verified = case.verified or verified
    # The description is sealed (nothing on the radio's side can read it), so the words are added
    # unread, up to a few times: a flood of repeats cannot grow it without end.
    if typed and typed != case.place and sealing.parts(case.description) < MAX_RADIO_ADDITIONS:
        added = f"Again by radio {now:%H:%M}Z: {typed}"[:MAX_DESCRIPTION]
        case.description = sealing.append(session, sealing.CASES, case.description, added)
    _note(session, now, case, member, f"ARREST again from the same radio, {case.arrested} arrested in all "
                                      "(not broadcast again)", source=patrol.SOURCE_RADIO)
    session.flush()
    return case


def _broadcasts_this_hour(session: Session, now: datetime, member: Member) -> int:
    ids = list(session.scalars(select(ArrestCase.id).where(
        ArrestCase.reported_by_id == member.id, ArrestCase.source == patrol.SOURCE_RADIO,
        ArrestCase.opened_at > now - timedelta(hours=1),
    )))
    if not ids:
        return 0
    return session.scalar(select(func.count()).select_from(outbox.OutboxMessage).where(
        outbox.OutboxMessage.dedupe_key.in_([f"case:{case_id}" for case_id in ids]),
        outbox.OutboxMessage.destination == people.BROADCAST_NODE,
    )) or 0


# -- a neighbour's report: asked about first, on the air once confirmed ------------------


@dataclass(frozen=True)
class Askers:
    """Who hears of a neighbour's report first (``ASKED_*``), and the radios that get it."""

    who: str
    nodes: list[int]


def who_hears_reports(session: Session, now: datetime) -> Askers:
    """Dispatch and the care ring; with nobody holding those roles, the hosts; or nobody yet.

    When none of dispatch and care carries a radio, the hosts' radios hear it too:
    a report nobody's radio buzzes for may wait until morning.
    """
    case_side, hosts = [], []
    for member in people.list_members(session):
        roles = people.active_roles(session, member, now)
        if roles & {DISPATCH, CARE}:
            case_side.append(member)
        if HOST in roles:
            hosts.append(member)

    def radios(members: list[Member]) -> list[int]:
        return sorted({member.node_num for member in members if member.node_num is not None})

    if case_side:
        return Askers(ASKED_DISPATCH, radios(case_side) or radios(hosts))
    if hosts:
        return Askers(ASKED_HOSTS, radios(hosts))
    return Askers(ASKED_NOBODY, [])


def report_notice(case: ArrestCase) -> str:
    """The direct message about a neighbour's report: what the air would hear, and how to put it there."""
    with speaking(None):
        return _("ARREST report %(code)s from the bench, not confirmed: %(n)d at %(place)s, %(time)s. "
                 "Dispatch: confirm on the hub or ACK %(code)s.", code=case.code, n=case.arrested,
                 place=shown_air_place(case), time=f"{case.arrested_at:%H:%M}Z")


def ask_about_report(session: Session, now: datetime, case: ArrestCase) -> Askers:
    """Urgent, with the bell, to each radio of those who hear of reports first; returns who they were."""
    askers = who_hears_reports(session, now)
    text = report_notice(case)
    for node in askers.nodes:
        outbox.queue_message(session, now, text, destination=node, priority=outbox.URGENT, bell=True,
                             dedupe_key=f"case:{case.id}:ask:{node}")
    return askers


def may_confirm(session: Session, member: Member | None, now: datetime) -> bool:
    return member is not None and bool(people.active_roles(session, member, now) & set(CONFIRM_ROLES))


def confirm_report(session: Session, now: datetime, case_or_code: ArrestCase | str, member: Member, via: str,
                   *, hotline: str = "") -> ArrestCase:
    """A dispatcher, captain or host vouches for a neighbour's report: it goes to every handheld.

    Power leaves a record: who confirmed, and when, is in the log and on the case.
    """
    # The roles first: someone who may not confirm learns nothing about which codes are open.
    if not may_confirm(session, member, now):
        raise DomainError(_("Only dispatch, a patrol captain or a host can confirm an arrest report."))
    if isinstance(case_or_code, ArrestCase):
        case = case_or_code
    else:
        case = find_open_case(session, case_or_code)
        if case is None:
            raise NotFound(_("No open case %(code)s.", code=normalize_code(case_or_code) or case_or_code[:8]))
    if case.confirmed_at is not None:
        if case.confirmed_by:
            raise Conflict(_("%(code)s is confirmed already by %(who)s: it is on the air.", code=case.code,
                             who=case.confirmed_by.handle))
        raise Conflict(_("%(code)s is confirmed already: it is on the air.", code=case.code))
    if not case.is_open:
        raise Conflict(_("%(code)s is closed: everyone is released, nothing goes on the air.", code=case.code))
    case.confirmed_at, case.confirmed_by = now, member
    power_record.record(session, now, actor=member, role=power_record.acting_role(session, now, member, CONFIRM_ROLES),
                        action="report-confirmed", subject=_record_subject(case),
                        reason="a neighbour's arrest report vouched for: it goes on the air"
                               + (" (ACK from a radio)" if via == patrol.SOURCE_RADIO else ""))
    patrol.log_entry(session, now, "arrest_confirm", member, via if via in patrol.SOURCES else patrol.SOURCE_WEB,
                     place=air_place_of(case), note=f"{case.code}: the bench's report confirmed by {member.handle}, "
                                                    "on the air now", public=False, drill=case.drill)
    _broadcast(session, now, case, hotline)
    session.flush()
    return case


def pending_reports(session: Session) -> list[ArrestCase]:
    """Neighbours' reports nobody has confirmed yet, oldest first."""
    return list(session.scalars(
        select(ArrestCase).where(ArrestCase.confirmed_at.is_(None), ArrestCase.closed_at.is_(None))
        .order_by(ArrestCase.opened_at, ArrestCase.id)
    ))


# -- working a case -----------------------------------------------------------------------


def get_case(session: Session, case_id: int) -> ArrestCase:
    case = session.get(ArrestCase, case_id)
    if case is None:
        raise NotFound(_("That case does not exist (it may have been purged)."))
    return case


def find_open_case(session: Session, code: str) -> ArrestCase | None:
    wanted = "".join(ch for ch in code.upper() if ch.isalnum())
    return session.scalar(select(ArrestCase).where(ArrestCase.code == wanted, ArrestCase.closed_at.is_(None)))


def _note(session: Session, now: datetime, case: ArrestCase, member: Member | None, text: str,
          source: str = patrol.SOURCE_WEB) -> None:
    patrol.log_entry(session, now, "case", member, source, note=f"{case.code}: {text}", public=False,
                     drill=case.drill)


def count_in(session: Session, now: datetime, case: ArrestCase, more: int | str, member: Member | None) -> ArrestCase:
    """More people were taken than first reported."""
    more = _count(more, "count", 1)
    if case.arrested + more > MAX_COUNT:
        raise Invalid(_("A case counts at most %(max)d people.", max=MAX_COUNT), field="count")
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
        raise Invalid(_("Only %(n)d still held in case %(code)s.", n=case.outstanding, code=case.code),
                      field="released")
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
        raise Invalid(_("Unknown checklist step."), field="step")
    if key == "family" and not case.family_consent:
        raise Invalid(_("No consent on record to inform family: record the consent first, or leave this step."),
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
    """All the public sees of cases still open: how many taken, how many out.

    Drills are not counted, nor a neighbour's report nobody has confirmed
    (a stranger on the bench WiFi must not be able to move the bench page's numbers).
    """
    arrested, released = session.execute(
        select(func.coalesce(func.sum(ArrestCase.arrested), 0), func.coalesce(func.sum(ArrestCase.released), 0))
        .where(ArrestCase.closed_at.is_(None), ArrestCase.drill.is_(False), ArrestCase.confirmed_at.is_not(None))
    ).one()
    return PublicCounts(int(arrested), int(released))


def hours_held(case: ArrestCase, now: datetime) -> float:
    return (now - case.arrested_at).total_seconds() / 3600


def clock_mark(hours: float) -> str:
    """The 48-hour clock as pages and the board show it: "" under the first reminder (24 h), "warn" past it,
    "urgent" from the second (48 h)."""
    first, last = REMINDERS
    return "urgent" if hours >= last else "warn" if hours >= first else ""


def remind_due(session: Session, now: datetime) -> list[ArrestCase]:
    """The 48-hour clock: at 24 h and 48 h, anyone not yet released is raised with dispatch, by radio too."""
    reminded = []
    for case in open_cases(session):
        due = [h for h in REMINDERS if h > case.reminded_hours and hours_held(case, now) >= h]
        if not due:
            continue
        hours = max(due)
        case.reminded_hours = hours
        with speaking(None):
            text = _("%(drill)s%(code)s: %(hours)d h since arrest, %(n)d not released. Check the case.",
                     drill=_("DRILL ") if case.drill else "", code=case.code, hours=hours, n=case.outstanding)
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


def _record_subject(case: ArrestCase) -> str:
    """A case as the record of power used names it: by its code only."""
    return f"case {case.code}" + (", a drill" if case.drill else "")


def purge_closed(session: Session, now: datetime, grace: timedelta, limit: int | None = None) -> int:
    """Everyone released plus the grace period: the case is deleted, exported or not (at most ``limit``)."""
    old = list(session.scalars(select(ArrestCase).where(ArrestCase.closed_at <= now - grace)
                               .order_by(ArrestCase.closed_at).limit(limit)))
    for case in old:
        power_record.record(session, now, actor=None, role=power_record.SYSTEM_ROLE, action="case-purged",
                            subject=_record_subject(case),
                            reason=f"everyone released {_days(grace)} ago: the hub's retention rule deletes it")
        session.delete(case)
    session.flush()
    return len(old)


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    shown = f"{days:g}"
    return f"{shown} day" if shown == "1" else f"{shown} days"


def export_text(session: Session, now: datetime, case: ArrestCase, *, by: Member | None,
                unseal: Callable[[str | None], str | None]) -> str:
    """The case as a plain text file for the legal coordinator; marks it exported, in the record of power used.

    ``unseal`` opens the sealed details with the exporting reader's keys (the web layer's).
    """
    case.exported_at = now
    power_record.record(session, now, actor=by, role=power_record.acting_role(session, now, by, (DISPATCH, CARE)),
                        action="case-exported", subject=_record_subject(case),
                        reason="downloaded as a text file for the legal coordinator")
    session.flush()
    # In the reader's language (the page they downloaded it from): whole lines, each with its own placeholders.
    utc = "%Y-%m-%d %H:%M"
    if case.confirmed_at is None:
        confirmed = _("Confirmed: not yet (not on the air)")
    elif case.confirmed_by:
        confirmed = _("Confirmed: %(at)s UTC by %(handle)s", at=f"{case.confirmed_at:{utc}}",
                      handle=case.confirmed_by.handle)
    else:
        confirmed = _("Confirmed: %(at)s UTC", at=f"{case.confirmed_at:{utc}}")
    lines = [
        _("Arrest case %(code)s (DRILL)", code=case.code) if case.drill else _("Arrest case %(code)s", code=case.code),
        _("Exported: %(at)s UTC", at=f"{now:{utc}}"),
        _("Arrested at: %(at)s UTC", at=f"{case.arrested_at:{utc}}"),
        _("Place: %(place)s", place=unseal(case.place)),
        _("On the air as: %(place)s", place=shown_air_place(case, limit=None)),
        _("Count: arrested %(arrested)d, released %(released)d", arrested=case.arrested, released=case.released),
        _("Agency: %(agency)s", agency=case.agency or _("not known")),
        _("Reported via: %(source)s", source=case.source) if case.verified
        else _("Reported via: %(source)s (unverified: channel traffic)", source=case.source),
        confirmed,
        _("Witness contact: %(contact)s", contact=unseal(case.witness_contact) or _("none given")),
        _("Prior consent to inform family: yes") if case.family_consent else _("Prior consent to inform family: no"),
        "",
        _("Description:"),
        unseal(case.description) or _("(none)"),
        "",
        _("Checklist:"),
    ]
    for step in STEPS:
        done = case.step_done(step.key)
        if done is None:
            when = _("not done")
        elif done.done_by:
            when = _("%(at)s UTC by %(handle)s", at=f"{done.done_at:{utc}}", handle=done.done_by.handle)
        else:
            when = _("%(at)s UTC", at=f"{done.done_at:{utc}}")
        note = f" ({unseal(done.note)})" if done and done.note else ""
        lines.append(f"- [{RINGS[step.ring]}] {_(step.label)}: {when}{note}")
    if case.closed_at:
        lines += ["", _("Everyone released: %(at)s UTC", at=f"{case.closed_at:{utc}}")]
    return "\n".join(lines) + "\n"
