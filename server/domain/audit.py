"""The public audit of each lunar cycle: totals only, for the assembly to read.

What the hub keeps about people is purged on schedule (resolved alerts
after a week, closed cases after their grace, mediation after two weeks,
the airtime ledger after two days), so an audit counted once, at the new
moon, would have lost most of its cycle. Instead the hourly job
(``keep_tally``) copies what it needs from each row while the row still
exists: a few anonymous *facts* (an area's name, a kind, a number of seconds,
never a handle, a place anyone typed or a time of day), kept by row id in the
cycle's ``LunarAudit``. Facts only add up: a row purged since is remembered
as it was last seen. The first run after the next new moon adds the last
facts and freezes the cycle; a frozen audit never changes again.

Counts of one or two of something people did or went through are shown as
"fewer than 3" (``shown``), totals included, so a neighbour cannot tell
who from a cell of one. Roles, withdrawals, drills and airtime are the
patrol's own process and are shown exactly.

Shifts older than the patrol log's retention are reduced to counts
(``ShiftTally``, server/domain/retention.py): the audit reads those counts
in place of the rows, so its figures stay the same when the rows go.

After the assembly, hosts write down what the patrol will revise; each
change is a new version (``AuditRevision``), kept with the frozen audit and
recorded as a power used.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from server.domain import (
    aid,
    alerts,
    cases,
    complaints,
    drills,
    lunar,
    mediation,
    outbox,
    patrol,
    power_record,
    tasks,
)
from server.domain.base import Base
from server.domain.errors import Invalid, NotFound
from server.domain.lunar import Cycle
from server.domain.people import HOST, Member, RoleAssignment
from server.domain.text import clean_text
from server.i18n import gettext as _

SMALL = 3  # counts below this (but above 0) are shown as "fewer than 3"
FEWER = f"fewer than {SMALL}"
MAX_REVISION = 4000
MAX_DECISION = 300
# What the audit counts from the record of power used.
ROLE_ACTIONS = ("role-granted", "role-renewed", "role-countersigned", "role-suspended", "role-restored",
                "role-ended")
WITHDRAWN = "log-withdrawn"
SOS_KINDS = (alerts.SOS, alerts.PANIC)
NO_AREA = ""
GROUPS = ("shift", "check_in", "overdue", "alert", "arrest", "mediation", "aid", "drill", "power", "lapse",
          "complaint", "airtime", "task")


class LunarAudit(Base):
    """A cycle's facts, kept while they still exist; frozen after its last new moon."""

    __tablename__ = "lunar_audit"

    # The lunation number (server/domain/lunar.py): the same cycle on every bench.
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    frozen_at: Mapped[datetime | None]
    # JSON: {group: {"row id@day" or hour: fact}} (see ``gather``).
    facts: Mapped[str] = mapped_column(Text)

    revisions: Mapped[list[AuditRevision]] = relationship(
        back_populates="audit", cascade="all, delete-orphan", order_by="AuditRevision.version"
    )


class AuditRevision(Base):
    """One version of "what we will revise", written by a host after the assembly."""

    __tablename__ = "audit_revision"
    __table_args__ = (UniqueConstraint("audit_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("lunar_audit.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    # The assembly that decided it ("assembly 12 Dec, item 2").
    decision: Mapped[str] = mapped_column(String(MAX_DECISION))
    written_at: Mapped[datetime]
    written_by: Mapped[str] = mapped_column(String(24))  # a handle, like the record of power used

    audit: Mapped[LunarAudit] = relationship(back_populates="revisions")


class ShiftTally(Base):
    """Shifts reduced to counts once older than the log's retention: all the audit still needs of them.

    One row per lunar cycle, day and area (its name as the audit counts it,
    "" for none): the cycle because a new moon falls inside a day. The
    shifts' own rows, which said who walked and from where, are deleted.
    """

    __tablename__ = "shift_tally"
    __table_args__ = (UniqueConstraint("cycle", "day", "area"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle: Mapped[int]  # the lunation number the shifts started in
    day: Mapped[date]  # the day they started (UTC)
    area: Mapped[str] = mapped_column(String(40))
    shifts: Mapped[int]
    minutes: Mapped[int]  # walked, all of them together


# -- facts ----------------------------------------------------------------------


def _seconds(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else max(0.0, (later - earlier).total_seconds())


def _key(row_id: int, created_at: datetime) -> str:
    """A fact's key: its row's id, and the day the row was made.

    SQLite hands out the id of a purged last row again, so the id alone could
    take a new alert for one counted and purged earlier in the cycle; a purge
    waits at least a day, so the day tells them apart (and is no time of day).
    """
    return f"{row_id}@{created_at.date().isoformat()}"  # the same as %Y-%m-%d, at a fraction of the cost


def _area(area: patrol.Area | None) -> str:
    return area.name if area is not None else NO_AREA


def _tally_key(tally: ShiftTally, number: int) -> str:
    """The fact of the ``number``-th shift a tally counts: a day and an area, never a row."""
    return f"{tally.day:%Y-%m-%d}~{number}~{tally.area}"


def gather(session: Session, cycle: Cycle) -> dict[str, dict[str, Any]]:
    """The facts about ``cycle`` the hub can still read now."""
    start, end = cycle.starts_at, cycle.ends_at

    def within(column):
        return (column >= start) & (column < end)

    facts: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    for shift_id, started_at, area in session.execute(
            select(patrol.Shift.id, patrol.Shift.started_at, patrol.Area.name)
            .outerjoin(patrol.Area, patrol.Area.id == patrol.Shift.area_id).where(within(patrol.Shift.started_at))):
        facts["shift"][_key(shift_id, started_at)] = NO_AREA if area is None else area
    for tally in session.scalars(select(ShiftTally).where(ShiftTally.cycle == cycle.number)):
        for number in range(tally.shifts):
            facts["shift"][_tally_key(tally, number)] = tally.area
    # Columns, not ORM rows: a cycle holds thousands of check-ins, read every hour and on the audit page.
    entry = patrol.LogEntry
    for row_id, at, kind, area in session.execute(
            select(entry.id, entry.at, entry.kind, patrol.Area.name)
            .outerjoin(patrol.Area, patrol.Area.id == entry.area_id)
            .where(within(entry.at), entry.drill.is_(False), entry.kind.in_((patrol.CHECK_IN, alerts.OVERDUE)))):
        if kind == patrol.CHECK_IN:
            facts["check_in"][_key(row_id, at)] = NO_AREA if area is None else area
        else:
            facts["overdue"][_key(row_id, at)] = 1
    for alert in session.scalars(select(alerts.Alert).where(within(alerts.Alert.raised_at),
                                                            alerts.Alert.drill.is_(False))):
        first = min((response.at for response in alert.responses), default=None)
        facts["alert"][_key(alert.id, alert.raised_at)] = ["sos" if alert.kind in SOS_KINDS else "other",
                                         _seconds(first, alert.raised_at)]
    for case in session.scalars(select(cases.ArrestCase).where(within(cases.ArrestCase.opened_at),
                                                               cases.ArrestCase.drill.is_(False))):
        held = _seconds(case.closed_at, case.arrested_at)
        facts["arrest"][_key(case.id, case.opened_at)] = [case.arrested, case.confirmed_at is not None,
                                         None if held is None else held / 3600]
    request_ = mediation.MediationRequest
    for request in session.scalars(select(request_).where(or_(within(request_.created_at),
                                                              within(request_.closed_at)))):
        opened = cycle.contains(request.created_at)
        facts["mediation"][_key(request.id, request.created_at)] = [
            opened, request.closed_at is not None and cycle.contains(request.closed_at),
            _seconds(request.taken_at, request.created_at) if opened else None]
    for post in session.scalars(select(aid.AidPost).where(within(aid.AidPost.created_at))):
        facts["aid"][_key(post.id, post.created_at)] = [post.kind, post.status]
    for drill in session.scalars(select(drills.Drill).where(within(drills.Drill.started_at))):
        facts["drill"][_key(drill.id, drill.started_at)] = [
            drill.kind, drill.started_at.isoformat(timespec="minutes"), _seconds(drill.ended_at, drill.started_at),
            [[timing.what, None if timing.after is None else timing.after.total_seconds()]
             for timing in drills.timings(session, drill)]]
    for use in session.scalars(select(power_record.PowerUse).where(
            within(power_record.PowerUse.at), power_record.PowerUse.action.in_((*ROLE_ACTIONS, WITHDRAWN)))):
        facts["power"][_key(use.id, use.at)] = use.action
    for assignment in session.scalars(select(RoleAssignment).where(within(RoleAssignment.lapsed_at))):
        facts["lapse"][_key(assignment.id, assignment.granted_at)] = 1
    complaint_ = complaints.Complaint
    for complaint in session.scalars(select(complaint_).where(or_(within(complaint_.created_at),
                                                                  within(complaint_.closed_at)))):
        facts["complaint"][_key(complaint.id, complaint.created_at)] = [
            cycle.contains(complaint.created_at),
            complaint.closed_at is not None and cycle.contains(complaint.closed_at)]
    # Tasks closed as done in the cycle, and whether their after-action account is written: counts, never words.
    for task_id, created_at, account in session.execute(
            select(tasks.Task.id, tasks.Task.created_at, tasks.Task.account.is_not(None))
            .where(tasks.Task.status == tasks.DONE, within(tasks.Task.closed_at))):
        facts["task"][_key(task_id, created_at)] = 1 if account else 0
    hours: dict[str, float] = defaultdict(float)
    for at, seconds in session.execute(select(outbox.AirtimeUse.at, outbox.AirtimeUse.seconds)
                                       .where(within(outbox.AirtimeUse.at))):
        hours[at.strftime("%Y-%m-%dT%H")] += seconds
    facts["airtime"] = {hour: round(seconds, 3) for hour, seconds in hours.items()}
    return facts


def merge(kept: dict[str, dict[str, Any]], fresh: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Facts kept earlier, brought up to date by what the rows say now; a purged row keeps its last facts."""
    merged = {group: dict(kept.get(group, {})) for group in GROUPS}
    for group in GROUPS:
        for key, fact in fresh.get(group, {}).items():
            if group == "airtime":
                # An hour's ledger only grows until the purge starts taking it away.
                merged[group][key] = max(fact, merged[group].get(key, 0.0))
            else:
                merged[group][key] = fact
    return merged


def find(session: Session, number: int) -> LunarAudit | None:
    return session.get(LunarAudit, number)


def _keep(session: Session, now: datetime, cycle: Cycle) -> LunarAudit:
    row = find(session, cycle.number)
    fresh = gather(session, cycle)
    if row is None:
        row = LunarAudit(id=cycle.number, starts_at=cycle.starts_at, ends_at=cycle.ends_at, updated_at=now,
                         facts=json.dumps(fresh, separators=(",", ":")))
        session.add(row)
    elif row.frozen_at is None:
        row.facts = json.dumps(merge(json.loads(row.facts), fresh), separators=(",", ":"))
        row.updated_at = now
    if row.frozen_at is None and cycle.has_ended(now):
        row.frozen_at = now
    session.flush()
    return row


def keep_tally(session: Session, now: datetime) -> list[int]:
    """The scheduled job: keep this cycle's facts, and freeze every cycle that has ended.

    Returns the numbers of the cycles frozen by this run.
    """
    current = lunar.cycle_at(now)
    # Normally the one just ended, frozen by the first run after the new moon;
    # after a hub was off for longer, each cycle it kept facts of.
    ended = list(session.scalars(select(LunarAudit.id).where(LunarAudit.frozen_at.is_(None),
                                                             LunarAudit.id < current.number)))
    last = lunar.previous(current)
    if last.number not in ended and find(session, last.number) is None and _has_anything(gather(session, last)):
        ended.append(last.number)  # a hub that came back after a whole cycle off: what is left of it
    for number in sorted(ended):
        _keep(session, now, lunar.cycle(number))
    _keep(session, now, current)
    return sorted(ended)


@dataclass(frozen=True)
class Prepared:
    """A cycle's facts as ``keep_tally`` would write them, read outside the write lock."""

    number: int
    facts_read: str | None  # the kept row's facts when they were read (None: no row yet)
    facts: str
    freeze: bool


def prepare_keep(session: Session, now: datetime) -> list[Prepared]:
    """``keep_tally``'s reading half, for a caller that takes no write lock for it (the hourly job).

    A cycle holds thousands of check-ins: reading them and encoding the facts
    takes far longer than the write lock should be held, and needs no lock.
    """
    current = lunar.cycle_at(now)
    ended = list(session.scalars(select(LunarAudit.id).where(LunarAudit.frozen_at.is_(None),
                                                             LunarAudit.id < current.number)))
    last = lunar.previous(current)
    fresh_of: dict[int, dict[str, dict[str, Any]]] = {}
    if last.number not in ended and find(session, last.number) is None:
        fresh_of[last.number] = gather(session, last)
        if _has_anything(fresh_of[last.number]):
            ended.append(last.number)
    prepared = []
    for number in [*sorted(ended), current.number]:
        cycle = lunar.cycle(number)
        row = find(session, number)
        if row is not None and row.frozen_at is not None:
            continue  # frozen: never changed again
        fresh = fresh_of.get(number) or gather(session, cycle)
        facts = merge(json.loads(row.facts), fresh) if row is not None else fresh
        prepared.append(Prepared(number, row.facts if row is not None else None,
                                 json.dumps(facts, separators=(",", ":")), cycle.has_ended(now)))
    return prepared


def keep_prepared(session: Session, now: datetime, prepared: list[Prepared]) -> list[int]:
    """``keep_tally``'s writing half: the prepared facts, unless a kept row changed since they were read.

    Rows only move on together: if another writer kept, froze or tallied a
    cycle in between (its facts are not what was read), ``keep_tally`` runs
    whole here instead, as it always did. New rows written in between are
    read at the next run, as if this one had come a moment earlier.
    """
    rows = {plan.number: find(session, plan.number) for plan in prepared}
    if any((rows[plan.number].facts if rows[plan.number] is not None else None) != plan.facts_read
           or (rows[plan.number] is not None and rows[plan.number].frozen_at is not None) for plan in prepared):
        return keep_tally(session, now)
    for plan in prepared:
        row = rows[plan.number]
        if row is None:
            cycle = lunar.cycle(plan.number)
            row = LunarAudit(id=plan.number, starts_at=cycle.starts_at, ends_at=cycle.ends_at, updated_at=now,
                             facts=plan.facts)
            session.add(row)
        else:
            row.facts, row.updated_at = plan.facts, now
        if plan.freeze:
            row.frozen_at = now
    session.flush()
    return sorted(plan.number for plan in prepared if plan.freeze)


def _has_anything(facts: dict[str, dict[str, Any]]) -> bool:
    return any(facts.get(group) for group in GROUPS)


def tally_shifts(session: Session, shifts: list[patrol.Shift]) -> int:
    """Count ended ``shifts`` in the tally, just before their rows are deleted; returns how many.

    A running audit may hold each shift's own fact already (kept by its row's
    id): that fact gives way to the tally's, which ``gather`` reads from now
    on, so the shift is counted once, before and after. A frozen audit is
    never changed, and never reads the tally again.
    """
    cycles: list[Cycle] = []
    replaced: dict[int, set[str]] = defaultdict(set)
    for shift in shifts:
        if shift.ended_at is None:
            raise Invalid(_("A shift still on patrol cannot be reduced to a count."))
        cycle = next((known for known in cycles if known.contains(shift.started_at)), None)
        if cycle is None:
            cycle = lunar.cycle_at(shift.started_at)
            cycles.append(cycle)
        area = _area(shift.area)
        tally = session.scalar(select(ShiftTally).where(
            ShiftTally.cycle == cycle.number, ShiftTally.day == shift.started_at.date(), ShiftTally.area == area))
        if tally is None:
            tally = ShiftTally(cycle=cycle.number, day=shift.started_at.date(), area=area, shifts=0, minutes=0)
            session.add(tally)
        tally.shifts += 1
        tally.minutes += round((shift.ended_at - shift.started_at).total_seconds() / 60)
        replaced[cycle.number].add(_key(shift.id, shift.started_at))
    for number, keys in replaced.items():
        kept = find(session, number)
        if kept is None or kept.frozen_at is not None:
            continue
        facts = json.loads(kept.facts)
        facts["shift"] = {key: fact for key, fact in facts.get("shift", {}).items() if key not in keys}
        kept.facts = json.dumps(facts, separators=(",", ":"))
    session.flush()
    return len(shifts)


# -- the report -------------------------------------------------------------------


def shown(count: int) -> str:
    """A count as the public reads it: 1 or 2 could point to a person."""
    return _("fewer than %(small)d", small=SMALL) if 0 < count < SMALL else str(count)


def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


@dataclass(frozen=True)
class Timed:
    """How long something took, over the cases it can be measured on."""

    measured: int
    median_s: float | None
    worst_s: float | None

    @classmethod
    def of(cls, seconds: list[float]) -> Timed:
        if len(seconds) < SMALL:
            # A median of one is that one event's time.
            return cls(len(seconds), None, None)
        return cls(len(seconds), statistics.median(seconds), max(seconds))

    @property
    def median(self) -> str:
        return minutes(self.median_s) if self.median_s is not None else self._why()

    @property
    def worst(self) -> str:
        return minutes(self.worst_s) if self.worst_s is not None else self._why()

    def _why(self) -> str:
        if self.measured == 0:
            return _("nothing to measure")
        return _("fewer than %(small)d to measure", small=SMALL)


@dataclass(frozen=True)
class AreaRow:
    area: str  # "" for what named no published area
    shifts: int
    check_ins: int


@dataclass(frozen=True)
class AlertRow:
    label: str
    raised: int
    answered: int
    first_response: Timed


@dataclass(frozen=True)
class DrillRow:
    kind: str
    started_at: datetime
    duration_s: float | None
    timings: list[tuple[str, float | None]]

    @property
    def kind_label(self) -> str:
        return drills.KINDS.get(self.kind, self.kind)


@dataclass(frozen=True)
class Report:
    cycle: Cycle
    now: datetime
    audit: LunarAudit | None
    areas: list[AreaRow]
    shifts: int
    check_ins: int
    alerts: list[AlertRow]
    overdue: int
    arrest_reports: int
    arrests_confirmed: int
    people_taken: int
    out_within_24h: int
    out_within_48h: int
    mediation_opened: int
    mediation_closed: int
    time_to_mediator: Timed
    aid: dict[str, Counter]  # kind -> {"posted", "taken", "lapsed"}
    drills: list[DrillRow]
    roles: Counter  # power_record action -> count, and "lapsed"
    withdrawals: int
    complaints_opened: int
    complaints_closed: int
    airtime_used_s: float
    airtime_budget_s: float
    tasks_done: int = 0  # tasks on the open task map closed as done
    task_accounts: int = 0  # of those, how many have their after-action account written

    @property
    def ended(self) -> bool:
        return self.cycle.has_ended(self.now)

    @property
    def frozen(self) -> bool:
        return self.audit is not None and self.audit.frozen_at is not None

    @property
    def revision(self) -> AuditRevision | None:
        return self.audit.revisions[-1] if self.audit is not None and self.audit.revisions else None

    @property
    def sos(self) -> AlertRow:
        return self.alerts[0]

    @property
    def airtime_share(self) -> float:
        return 100 * self.airtime_used_s / self.airtime_budget_s if self.airtime_budget_s else 0.0

    def role_count(self, action: str) -> int:
        return self.roles.get(action, 0)


def report(session: Session, cycle: Cycle, now: datetime, airtime_budget_per_hour_s: float) -> Report:
    """The audit of ``cycle``: frozen facts once it is frozen, else what was kept plus what the hub reads now."""
    if cycle.starts_at > now:
        raise NotFound(_("That cycle has not begun yet."))
    audit = find(session, cycle.number)
    if audit is not None and audit.frozen_at is not None:
        facts = json.loads(audit.facts)
    else:
        fresh = gather(session, cycle)
        facts = merge(json.loads(audit.facts), fresh) if audit is not None else fresh
    facts = {group: facts.get(group, {}) for group in GROUPS}

    shifts, check_ins = Counter(facts["shift"].values()), Counter(facts["check_in"].values())
    areas = [AreaRow(name, shifts[name], check_ins[name])
             for name in sorted(set(shifts) | set(check_ins), key=lambda name: (name == NO_AREA, name.lower()))]

    alert_rows = []
    for group, label in (("sos", _("SOS and panic calls")), ("other", _("Other alerts (missed check-ins, silent alerts)"))):
        waits = [fact[1] for fact in facts["alert"].values() if fact[0] == group]
        answered = [wait for wait in waits if wait is not None]
        alert_rows.append(AlertRow(label, len(waits), len(answered), Timed.of(answered)))

    arrests = list(facts["arrest"].values())
    confirmed = [fact for fact in arrests if fact[1]]
    mediations = list(facts["mediation"].values())
    aid_counts: dict[str, Counter] = {kind: Counter() for kind in aid.KINDS}
    for kind, status in facts["aid"].values():
        if status == aid.HIDDEN or kind not in aid_counts:
            continue  # a post the host took off the board (spam) is not help offered
        aid_counts[kind]["posted"] += 1
        aid_counts[kind][status] += 1
    drill_rows = sorted(
        (DrillRow(kind, datetime.fromisoformat(started), duration, [(what, after) for what, after in timings])
         for kind, started, duration, timings in facts["drill"].values()),
        key=lambda row: row.started_at)
    roles = Counter(action for action in facts["power"].values() if action in ROLE_ACTIONS)
    roles["lapsed"] = len(facts["lapse"])
    elapsed_h = (min(now, cycle.ends_at) - cycle.starts_at).total_seconds() / 3600
    return Report(
        cycle=cycle, now=now, audit=audit, areas=areas,
        shifts=len(facts["shift"]), check_ins=len(facts["check_in"]),
        alerts=alert_rows, overdue=len(facts["overdue"]),
        arrest_reports=len(arrests), arrests_confirmed=len(confirmed),
        people_taken=sum(fact[0] for fact in confirmed),
        out_within_24h=sum(fact[0] for fact in confirmed if fact[2] is not None and fact[2] <= 24),
        out_within_48h=sum(fact[0] for fact in confirmed if fact[2] is not None and fact[2] <= 48),
        mediation_opened=sum(1 for fact in mediations if fact[0]),
        mediation_closed=sum(1 for fact in mediations if fact[1]),
        time_to_mediator=Timed.of([fact[2] for fact in mediations if fact[2] is not None]),
        aid=aid_counts, drills=drill_rows, roles=roles,
        withdrawals=sum(1 for action in facts["power"].values() if action == WITHDRAWN),
        complaints_opened=sum(1 for fact in facts["complaint"].values() if fact[0]),
        complaints_closed=sum(1 for fact in facts["complaint"].values() if fact[1]),
        airtime_used_s=sum(facts["airtime"].values()),
        airtime_budget_s=airtime_budget_per_hour_s * max(0.0, elapsed_h),
        tasks_done=len(facts["task"]), task_accounts=sum(facts["task"].values()),
    )


def past_cycles(session: Session, now: datetime, limit: int = 12) -> list[LunarAudit]:
    """Audits the hub keeps of cycles that have ended, newest first."""
    return list(session.scalars(select(LunarAudit).where(LunarAudit.ends_at <= now)
                                .order_by(LunarAudit.id.desc()).limit(limit)))


def cycle_for_page(now: datetime, number: int | None) -> Cycle:
    """The cycle a page or command asked for (the current one by default), if it has begun."""
    current = lunar.cycle_at(now)
    if number is None or number == current.number:
        return current
    if not 0 <= number < current.number:
        raise NotFound(_("That lunar cycle has not begun yet.") if number > current.number
                       else _("There is no lunar cycle with that number."))
    return lunar.cycle(number)


# -- what we will revise ----------------------------------------------------------


def revise(session: Session, now: datetime, number: int, host: Member, text: str, decision: str) -> AuditRevision:
    """A host writes down (again) what the assembly decided to revise after this cycle's audit."""
    cycle = cycle_for_page(now, number)
    if not cycle.has_ended(now):
        raise Invalid(_("This cycle is still running: what the patrol will revise is written after its assembly."),
                      field="text")
    text = clean_text(text, field="what we will revise", max_length=MAX_REVISION, multiline=True)
    decision = clean_text(decision, field="assembly decision", max_length=MAX_DECISION)
    audit = _keep(session, now, cycle)  # frozen now if the job has not run since the new moon
    if audit.revisions and audit.revisions[-1].text == text:
        raise Invalid(_("That is the text already kept: change it to make a new version."), field="text")
    revision = AuditRevision(audit=audit, version=len(audit.revisions) + 1, text=text, decision=decision,
                             written_at=now, written_by=host.handle[:24])
    session.add(revision)
    power_record.record(session, now, actor=host, role=HOST, action="audit-revised",
                        subject=f"audit of cycle {cycle.number}: version {revision.version}", reason=decision)
    session.flush()
    return revision


def revisions_newest_first(audit: LunarAudit | None) -> list[AuditRevision]:
    return list(reversed(audit.revisions)) if audit is not None else []
