"""What the bench page and the public log show, read in a few statements built once (issue 14).

The bench page is the page a crowd opens. Its reads are Core statements over
just the columns shown, built when this module is imported and run with the
moment as a parameter, so a render neither builds SQL nor loads ORM objects
(both cost far more than SQLite itself: 0.03 ms for the same SQL). Every count
comes back in one statement.

What it shows is what the domain services it stands in for show
(patrol.public_patrol and public_log, aid.open_posts and count_open_posts,
compact.signature_count, cases.public_counts, audit.past_cycles,
complaints.public_counts): counts, published areas, handles only for
stewards who chose to show them, nothing sealed. tests/test_bench_page.py
checks the two against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, and_, bindparam, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from server.domain import aid, allies, audit, cases, compact, complaints, federation, patrol, tasks
from server.domain.people import Member

_shift = patrol.Shift.__table__
_log = patrol.LogEntry.__table__
_area = patrol.Area.__table__
_member = Member.__table__
_post = aid.AidPost.__table__
_version = compact.CompactVersion.__table__
_signature = compact.CompactSignature.__table__
_case = cases.ArrestCase.__table__
_complaint = complaints.Complaint.__table__
_audit = audit.LunarAudit.__table__

BOARD_LINES = 5  # open aid posts the bench page lists
AUDITS_LINKED = 2  # ended cycles it links to, newest first
BENCH_LOG_LINES = 8  # entries of the public log it shows

# Open shifts, oldest first; the view counts each steward once, by their oldest open shift.
_ON_PATROL = (
    select(_shift.c.member_id, _area.c.name, _member.c.handle, _member.c.show_handle)
    .select_from(_shift.outerjoin(_member, _shift.c.member_id == _member.c.id)
                 .outerjoin(_area, _shift.c.area_id == _area.c.id))
    .where(_shift.c.ended_at.is_(None))
    .order_by(_shift.c.started_at)
)

# The published log, newest first: a withdrawn entry stays in its place as a gap (patrol.public_log).
_PUBLIC_LOG = (
    select(_log.c.id, _log.c.at, _log.c.kind, _member.c.handle, _member.c.show_handle, _area.c.name,
           _log.c.public, _log.c.withdrawn_by, _log.c.withdrawal_reason)
    .select_from(_log.outerjoin(_member, _log.c.member_id == _member.c.id)
                 .outerjoin(_area, _log.c.area_id == _area.c.id))
    .where(or_(_log.c.public.is_(True), _log.c.withdrawal_reason.is_not(None)),
           _log.c.drill.is_(False),
           # Equalities, not IN: an IN list is rebuilt at every execution, which costs more than the query.
           or_(*(_log.c.kind == kind for kind in patrol.KIND_LABELS)))
    .order_by(_log.c.id.desc())
    .limit(bindparam("limit"))
)

class likely(FunctionElement):
    """A condition SQLite's planner is told is nearly always true; the plain condition elsewhere.

    The newest open posts have nearly all still to lapse, so the board walks
    (status, created_at) newest first and stops at five, rather than taking
    every unlapsed post from the count's index and sorting them.
    """

    type = Boolean()
    inherit_cache = True


@compiles(likely)
def _plain(element: likely, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(likely, "sqlite")
def _likely(element: likely, compiler: Any, **kw: Any) -> str:
    return f"likely({compiler.process(element.clauses, **kw)})"


# Open posts are counted from the index on (status, available_until) alone (migration g14b0000bnc).
_open_post = and_(_post.c.status == aid.OPEN, _post.c.available_until > bindparam("now"))
_BOARD = (
    select(_post.c.id, _post.c.kind, _post.c.category, _post.c.text, _area.c.name)
    .select_from(_post.outerjoin(_area, _post.c.area_id == _area.c.id))
    .where(_post.c.status == aid.OPEN, likely(_post.c.available_until > bindparam("now")))
    .order_by(_post.c.created_at.desc())
    .limit(BOARD_LINES)
)

_AUDITS = (
    select(_audit.c.id, _audit.c.ends_at)
    .where(_audit.c.ends_at <= bindparam("now"))
    .order_by(_audit.c.id.desc())
    .limit(AUDITS_LINKED)
)


def _count(*where: object, of: object = None) -> object:
    return select(func.count()).select_from(of).where(*where).scalar_subquery()


_open_case = and_(_case.c.closed_at.is_(None), _case.c.drill.is_(False), _case.c.confirmed_at.is_not(None))
_current_version = select(_version.c.id).order_by(_version.c.number.desc()).limit(1).scalar_subquery()
# Every count the page shows, in one statement (one row).
_COUNTS = select(
    _count(_open_post, of=_post),
    # Signatures of the current text only; no version yet (the text the hub came with) counts none.
    _count(_signature.c.version_id == _current_version, of=_signature),
    # Arrest cases still open, confirmed, not drills: how many taken, how many out.
    select(func.coalesce(func.sum(_case.c.arrested), 0)).where(_open_case).scalar_subquery(),
    select(func.coalesce(func.sum(_case.c.released), 0)).where(_open_case).scalar_subquery(),
    # Complaints ever received (purged ones included), closed ones, and open ones older than a cycle.
    _count(of=_complaint),
    _count(_complaint.c.status == complaints.CLOSED, of=_complaint),
    _count(_complaint.c.status != complaints.CLOSED, _complaint.c.created_at <= bindparam("cycle_ago"),
           of=_complaint),
    # Issue 17: the trusted benches' latest fresh counts, for the city figure (a handful of rows).
    *federation.CITY_COLUMNS,
)


@dataclass(frozen=True)
class BoardLine:
    """An open aid post as the bench page lists it: its public text, never its contact."""

    id: int
    kind_label: str
    category_label: str
    text: str
    area: str | None


@dataclass(frozen=True)
class AuditLink:
    id: int  # the lunation number
    ends_at: datetime


@dataclass(frozen=True)
class BenchPage:
    on_patrol: patrol.PublicPatrol
    log: list[patrol.PublicLogEntry]
    offers: list[BoardLine]
    open_post_count: int
    signatures: int
    arrests: cases.PublicCounts
    audits: list[AuditLink]
    complaint_counts: complaints.PublicCounts
    # Issue 16: the allies open now and the vows kept lately (one statement: allies.BENCH_VOWS).
    allies: allies.BenchAllies | None = None
    # Issue 16: open public tasks, overdue ones as "help needed", never who took them (one statement: tasks.BENCH_TASKS).
    tasks: tasks.BenchTasks | None = None
    # Issue 17: benches and arrests held/out across the federation, with this bench's own (three columns of
    # the counts' statement: federation.CITY_COLUMNS); None on a bench no member sent fresh counts to.
    city: federation.CityFigure | None = None


def on_patrol(connection: Connection) -> patrol.PublicPatrol:
    """The stewards on patrol now, counted by published area; a handle only for those who opted in."""
    return patrol.count_on_patrol(connection.execute(_ON_PATROL))


def public_log(connection: Connection, limit: int, rounding_minutes: int) -> list[patrol.PublicLogEntry]:
    """The published log, newest first; a handle read with its steward's choice at every reading."""
    return [patrol.public_log_entry(row, rounding_minutes) for row in connection.execute(_PUBLIC_LOG, {"limit": limit})]


def bench_page(connection: Connection, now: datetime, rounding_minutes: int, zone: Any = None) -> BenchPage:
    """Everything the bench page shows, in seven statements read in one transaction."""
    (open_posts, signatures, arrested, released, opened, closed, past, *city) = connection.execute(
        _COUNTS, {"now": now, "cycle_ago": now - complaints.LUNAR_CYCLE, "fresh_after": now - federation.COUNTS_FRESH}
    ).one()
    return BenchPage(
        on_patrol=on_patrol(connection),
        log=public_log(connection, BENCH_LOG_LINES, rounding_minutes),
        offers=[
            BoardLine(post_id, aid.KIND_LABELS[kind], aid.CATEGORY_LABELS[category], text, area)
            for post_id, kind, category, text, area in connection.execute(_BOARD, {"now": now})
        ],
        open_post_count=open_posts,
        signatures=signatures,
        arrests=cases.PublicCounts(int(arrested), int(released)),
        audits=[AuditLink(cycle, ends_at) for cycle, ends_at in connection.execute(_AUDITS, {"now": now})],
        complaint_counts=complaints.PublicCounts(opened=opened, closed=closed, open=opened - closed,
                                                 open_past_a_lunar_cycle=past),
        allies=allies.bench_allies(list(connection.execute(allies.BENCH_VOWS)), now, zone),
        tasks=tasks.bench_tasks(connection.execute(tasks.BENCH_TASKS), now),
        city=federation.city_of(city, int(arrested), int(released)),
    )
