"""What the host's board shows: the night at a glance, for the web page and the terminal alike.

One function, ``read_board``, reads everything in a handful of queries (the
shifts and their last words, open alerts, open cases, the radio, the newest
log entries) and returns plain dataclasses: the web page (web/board.py) and
``safebench board`` (server/board_terminal.py) only present them. The rules
are the domain's own: the overdue clock is ``overdue.OverdueRules`` read
against ``overdue.last_words`` and the shift's own ping and alert, the
48-hour clock is ``cases.REMINDERS``, a silent radio is
``radio.bridge_is_silent``, the airtime budget is the bridge's.

Sealed words (a log entry's typed place and note) are handed on as stored:
only a reader's login opens them, and the terminal has none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radio_bridge.airtime import HOUR, duty_cycle_budget
from server.domain import alerts, cases, federation, outbox, overdue, patrol, radio, tasks
from server.domain.alerts import Alert
from server.domain.patrol import LogEntry

ENTRIES = 12  # the latest log entries on the board: what fits under the rest on a TV
STRANGERS_WINDOW = timedelta(hours=1)  # unknown radios heard this recently are counted

# A log entry of these kinds was written by raising (or adding to) an alert of these kinds.
ALERT_KINDS_OF_ENTRY = {
    alerts.SOS: (alerts.SOS, alerts.PANIC),
    alerts.OVERDUE: (alerts.OVERDUE,),
    alerts.DURESS: (alerts.DURESS,),
}

# A steward's check-in clock.
OK = "ok"  # heard from within the interval
LATE = "late"  # past the interval: the hub pings them at interval + grace
PINGED = "pinged"  # pinged; the alert goes out at twice the interval + grace
OVERDUE = "overdue"  # the OVERDUE alert is out


@dataclass(frozen=True)
class BoardRules:
    """The settings the board reads its clocks against (SAFEBENCH_* via server/config.py)."""

    check_in: overdue.OverdueRules
    airtime_fraction: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BoardRules:
        return cls(
            overdue.OverdueRules(interval=timedelta(minutes=float(config["CHECK_IN_INTERVAL_MINUTES"])),
                                 grace=timedelta(minutes=float(config["CHECK_IN_GRACE_MINUTES"]))),
            float(config["RADIO_AIRTIME_BUDGET"]),
        )


@dataclass(frozen=True)
class OnShift:
    shift_id: int
    handle: str
    area: str | None  # the published area, or None
    place: str | None  # what the steward typed for the shift: private (web, for the log's roles, only)
    started_at: datetime
    last_word: datetime
    quiet_minutes: int  # since the last word (a check-in, an incident, the shift's start)
    due_in_minutes: int  # until the check-in is due; negative once late
    alert_in_minutes: int  # until the OVERDUE alert goes out; 0 once it is out
    state: str  # OK, LATE, PINGED, OVERDUE
    # Nothing this steward sends over the radio can be proven theirs: no radio key is pinned for their
    # node, or a different key was heard for it and waits for a host (server/domain/radio_trust.py).
    unverified: bool


@dataclass(frozen=True)
class OpenAlert:
    id: int
    code: str
    kind: str
    label: str
    who: str
    place: str | None
    raised_at: datetime
    age_minutes: int
    responders: tuple[str, ...]
    status: str
    verified: bool
    drill: bool
    silent: bool
    escalated: bool


@dataclass(frozen=True)
class OpenCase:
    id: int
    code: str
    place: str  # as the air carries it (a published area or a listed landmark), never as typed
    arrested: int
    released: int
    outstanding: int
    arrested_at: datetime
    hours_held: int
    hours_to_48: int  # until the 48-hour mark; negative once past it
    mark: str  # "", "warn" from 24 h, "urgent" from 48 h
    confirmed: bool
    verified: bool
    drill: bool


@dataclass(frozen=True)
class RadioHealth:
    ever_ran: bool
    simulated: bool
    connected: bool
    silent: bool
    since: datetime | None  # connected or disconnected since
    heartbeat_at: datetime | None
    last_error: str | None
    region: str | None
    airtime_used_s: float
    airtime_budget_s: float
    queue: dict[str, int]  # waiting to go out, by priority label
    strangers: int  # unknown radios heard in the last hour

    @property
    def airtime_percent(self) -> int:
        return round(100 * self.airtime_used_s / self.airtime_budget_s) if self.airtime_budget_s else 0

    @property
    def queued(self) -> int:
        return sum(self.queue.values())

    @property
    def healthy(self) -> bool:
        return self.ever_ran and self.connected and not self.silent


@dataclass(frozen=True)
class RecentEntry:
    id: int
    at: datetime
    kind: str
    label: str
    steward: str | None
    area: str | None
    place: str | None  # as stored: sealed
    note: str | None  # as stored: sealed
    source: str
    drill: bool
    urgent: bool
    alert_id: int | None  # the alert this entry raised or added to, if it still exists


@dataclass(frozen=True)
class OverdueTask:
    """A task on the open task map past its "until" and not done (server/domain/tasks.py)."""

    id: int
    code: str
    title: str
    area: str | None
    due_at: datetime
    hours_over: int  # whole hours past its "until"
    taken_by: str | None  # the taker's handle: the board is for role-holders; the bench page never names them


@dataclass(frozen=True)
class Board:
    at: datetime
    on_shift: list[OnShift]
    alerts: list[OpenAlert]
    cases: list[OpenCase]
    radio: RadioHealth
    entries: list[RecentEntry]  # newest first
    tasks: list[OverdueTask] = field(default_factory=list)  # overdue tasks, longest overdue first
    # Issue 17: SOS and arrests a neighbouring bench sent, still open there ("from bench X").
    neighbours: list[Any] = field(default_factory=list)

    @property
    def newest_entry_id(self) -> int:
        return self.entries[0].id if self.entries else 0

    @property
    def urgent(self) -> bool:
        """Something needs someone now: an open alert, an overdue steward, a case past 48 hours."""
        return (bool(self.alerts) or any(s.state == OVERDUE for s in self.on_shift)
                or any(c.mark == "urgent" for c in self.cases))


def _minutes(span: timedelta) -> int:
    """Whole minutes, rounded towards the future: "due in 1 min" until it is due, never "due in 0 min"."""
    return math.ceil(span / timedelta(minutes=1))


def _on_shift(session: Session, now: datetime, rules: overdue.OverdueRules) -> list[OnShift]:
    shifts = patrol.on_patrol(session)
    words = overdue.last_words(session, shifts)
    found = []
    for shift in shifts:
        last = words[shift.id]
        member = shift.member
        if shift.overdue_alert_id is not None:
            state = OVERDUE
        elif shift.overdue_pinged_at is not None:
            state = PINGED
        elif now - last >= rules.interval:
            state = LATE
        else:
            state = OK
        alert_at = last + 2 * rules.interval + rules.grace
        found.append(OnShift(
            shift_id=shift.id,
            handle=member.handle,
            area=shift.area.name if shift.area else None,
            place=shift.place,
            started_at=shift.started_at,
            last_word=last,
            quiet_minutes=max(0, int((now - last) / timedelta(minutes=1))),
            due_in_minutes=_minutes(last + rules.interval - now),
            alert_in_minutes=0 if state == OVERDUE else max(0, _minutes(alert_at - now)),
            state=state,
            unverified=member.node_num is not None and (member.radio_key is None or member.radio_key_heard is not None),
        ))
    # Whoever is nearest to being missed comes first.
    return sorted(found, key=lambda s: (s.state != OVERDUE, s.state != PINGED, s.due_in_minutes))


def _alerts(session: Session, now: datetime, show_silent: bool) -> list[OpenAlert]:
    return [
        OpenAlert(
            id=a.id, code=a.code, kind=a.kind, label=a.kind_label, who=a.who, place=a.place, raised_at=a.raised_at,
            age_minutes=max(0, int((now - a.raised_at) / timedelta(minutes=1))),
            responders=tuple(r.member.handle if r.member else "?" for r in a.responses),
            status=a.status, verified=a.verified, drill=a.drill, silent=a.silent, escalated=a.escalated_at is not None,
        )
        for a in alerts.open_alerts(session)
        if show_silent or not a.silent
    ]


def _cases(session: Session, now: datetime) -> list[OpenCase]:
    found = []
    for case in cases.open_cases(session):
        held = cases.hours_held(case, now)
        found.append(OpenCase(
            id=case.id, code=case.code, place=case.on_air_as, arrested=case.arrested, released=case.released,
            outstanding=case.outstanding, arrested_at=case.arrested_at, hours_held=int(held),
            hours_to_48=math.ceil(cases.REMINDERS[-1] - held) if held < cases.REMINDERS[-1] else -int(
                held - cases.REMINDERS[-1]),
            mark=cases.clock_mark(held), confirmed=case.is_confirmed, verified=case.verified, drill=case.drill,
        ))
    return found


def _radio(session: Session, now: datetime, fraction: float) -> RadioHealth:
    status = radio.bridge_status(session)
    silent = radio.bridge_is_silent(status, now)
    region = status.region if status is not None else None
    used = sum(seconds for _, seconds, _ in outbox.airtime_since(session, now - timedelta(seconds=HOUR)))
    strangers = sum(1 for s in radio.unknown_senders(session, limit=100) if s.last_heard >= now - STRANGERS_WINDOW)
    return RadioHealth(
        ever_ran=status is not None,
        simulated=status is not None and status.simulated,
        connected=status is not None and status.connected,
        silent=silent,
        since=status.since if status is not None else None,
        heartbeat_at=status.heartbeat_at if status is not None else None,
        last_error=status.last_error if status is not None else None,
        region=region,
        airtime_used_s=used,
        # As the bridge keeps it (radio_bridge/airtime.py): the configured share, never above the region's law.
        airtime_budget_s=duty_cycle_budget(region or "UNSET", fraction),
        queue=outbox.depth_by_priority(session),
        strangers=strangers,
    )


def alert_ids_for(session: Session, entries: list[LogEntry]) -> dict[int, int]:
    """The alert each alert entry raised or added to (by entry id): the newest alert of its kinds for the
    same person raised at or before the entry. One query for all of them; purged alerts are simply missing."""
    wanted = [e for e in entries if e.kind in ALERT_KINDS_OF_ENTRY]
    if not wanted:
        return {}
    kinds = {kind for e in wanted for kind in ALERT_KINDS_OF_ENTRY[e.kind]}
    members = {e.member_id for e in wanted}
    # Resolved alerts are deleted after ALERT_RETENTION_DAYS, so the table read here stays small.
    query = (select(Alert.id, Alert.kind, Alert.member_id, Alert.raised_at, Alert.drill)
             .where(Alert.kind.in_(kinds), Alert.raised_at <= max(e.at for e in wanted)))
    if None not in members:
        query = query.where(Alert.member_id.in_(members))
    rows = list(session.execute(query.order_by(Alert.raised_at.desc(), Alert.id.desc())))
    found = {}
    for entry in wanted:
        for alert_id, kind, member_id, raised_at, drill in rows:
            if (kind in ALERT_KINDS_OF_ENTRY[entry.kind] and member_id == entry.member_id
                    and raised_at <= entry.at and bool(drill) == bool(entry.drill)):
                found[entry.id] = alert_id
                break
    return found


def alert_for_entry(session: Session, entry_id: int, hidden_kinds: frozenset[str] = frozenset()) -> int | None:
    """The alert a log entry raised or added to, or None (another kind of entry, one the viewer may not see,
    or the alert was purged)."""
    entry = session.get(LogEntry, entry_id)
    if entry is None or entry.kind in hidden_kinds:
        return None
    return alert_ids_for(session, [entry]).get(entry.id)


def recent(session: Session, hidden_kinds: frozenset[str], limit: int = ENTRIES) -> list[RecentEntry]:
    entries = patrol.recent_entries(session, limit=limit, hidden_kinds=hidden_kinds)
    links = alert_ids_for(session, entries)
    return [
        RecentEntry(
            id=e.id, at=e.at, kind=e.kind, label=e.kind_label, steward=e.member.handle if e.member else None,
            area=e.area.name if e.area else None, place=e.place, note=e.note, source=e.source, drill=bool(e.drill),
            urgent=e.kind in patrol.URGENT_KINDS, alert_id=links.get(e.id),
        )
        for e in entries
    ]


def read_board(session: Session, now: datetime, rules: BoardRules, *, hidden_kinds: frozenset[str],
               show_silent: bool, entries: int = ENTRIES) -> Board:
    """Everything on the board at ``now``: for a viewer who may not see ``hidden_kinds`` of log entry
    (patrol.kinds_hidden_from), nor silent alerts unless ``show_silent`` (host and dispatch only)."""
    return Board(
        at=now,
        on_shift=_on_shift(session, now, rules.check_in),
        alerts=_alerts(session, now, show_silent),
        cases=_cases(session, now),
        radio=_radio(session, now, rules.airtime_fraction),
        entries=recent(session, hidden_kinds, entries),
        tasks=[OverdueTask(id=t.id, code=t.code, title=t.title, area=t.area.name if t.area else None, due_at=t.due_at,
                           hours_over=int((now - t.due_at) / timedelta(hours=1)),
                           taken_by=t.taken_by.handle if t.taken_by else None) for t in tasks.overdue(session, now)],
        neighbours=federation.open_neighbour_alerts(session, now),
    )
