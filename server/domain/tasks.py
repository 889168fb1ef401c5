"""The open task map: work the neighbourhood needs done, taken by whoever chooses to do it.

A task has a place (a published area), a time frame (from, until), what
"done" means, who created it and who took it. Self-selection: anyone holding
a role takes a task (the web, or a verified radio DM ``TAKE T4``) and closes
it with a one-line result (``DONE T4 fixed the gate latch``). Codes are the
alerts' kind (``T4``): short, unique among open tasks, reused once closed.

Who may do what:

- **create** and **cancel**: hosts and captains (``CREATOR_ROLES``): they
  put work in front of others, and a public task in front of the street;
- **take**: anyone with a role in force; one taker at a time;
- **release**: the taker (nothing recorded), or the creator or a host, with
  a reason in the record of power used (the taker went quiet, fell ill);
- **close**: the taker; a task nobody took, anyone with a role (doing it is
  taking it); the creator or a host, to close it on someone's behalf;
- **after-action account**: whoever closed it, on the web; read by hosts
  and captains (``ACCOUNT_READERS``, the assembly's page), never public.

A taker who goes quiet: past its "until" a task is *overdue* and shows on
the host's board and, if public, on the bench page as "help needed" (never
who took it); ``RELEASE_AFTER`` later the hub releases it by itself (so
someone else can take it) and says so in the record of power used.

Public tasks (the creator's choice, off by default: a task can say where
someone will be and when) are listed by area on the public task board.
A neighbour volunteers through the aid board's brokered contact: a public
task is also an *ask* on the aid board (server/domain/aid.py), whose
messages reach the task's creator (with the receipt code shown to them
once) or the host (the go-between), never either side's contact in public.

The result and the account are sealed in the log vault (host, dispatch,
captain): what someone wrote about a night's work may be about people.
Closed tasks are deleted ``RETENTION`` after closing (three lunar cycles:
after the assembly has read their accounts); the audit keeps their counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, delete, func, or_, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship

from server.domain import aid, people, power_record, sealing
from server.domain.alerts import next_code, normalize_code, place_for_air
from server.domain.base import Base
from server.domain.contact_in_text import find_contact
from server.domain.errors import Conflict, Invalid, NotFound
from server.domain.patrol import Area
from server.domain.people import Member
from server.domain.radio_text import fits_one_packet
from server.domain.sealing import SealedText
from server.domain.text import clean_text
from server.i18n import N_, Labels
from server.i18n import gettext as _

OPEN = "open"
TAKEN = "taken"
DONE = "done"
CANCELLED = "cancelled"
STILL_OPEN = (OPEN, TAKEN)
STATUS_LABELS = Labels({OPEN: N_("Open"), TAKEN: N_("Taken"), DONE: N_("Done"), CANCELLED: N_("Cancelled")})

CREATOR_ROLES = (people.HOST, people.CAPTAIN)
ACCOUNT_READERS = (people.HOST, people.CAPTAIN)
PREFIX = "T"

MAX_TITLE = 120
MAX_DONE_MEANS = 300
MAX_RESULT = 160  # one line, as a handheld sends it
MAX_ACCOUNT = 2000
MAX_REASON = 300
MAX_SPAN = timedelta(days=60)  # a time frame longer than two lunar cycles is a standing job, not a task
RELEASE_AFTER = timedelta(hours=12)  # a quiet taker's task goes back on the map this long after its "until"
RETENTION = timedelta(days=89)  # three lunar cycles: the assembly has read the accounts
# How long a public task's ask stays on the aid board after its "until": overdue is when help is needed most.
ASK_AFTER_DUE = timedelta(days=7)
AIR_TITLE_LIMIT = 60
BENCH_LINES = 5

# Field names as a person reads them (clean_text says "Please fill in the <field>").
N_("task"), N_("what done means"), N_("result"), N_("after-action account")
SOURCES = ("web", "radio")


class Task(Base):
    __tablename__ = "task"
    # The board and the bench page read open tasks by their "until".
    __table_args__ = (Index("ix_task_status_due_at", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), index=True)
    title: Mapped[str] = mapped_column(String(MAX_TITLE))
    done_means: Mapped[str] = mapped_column(String(MAX_DONE_MEANS))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    starts_at: Mapped[datetime]
    due_at: Mapped[datetime]
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(12), default=OPEN)
    created_at: Mapped[datetime]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    taken_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    taken_at: Mapped[datetime | None]
    taken_via: Mapped[str | None] = mapped_column(String(8))
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    # The one-line result (DONE T4 <result>) and the after-action account: sealed, never public.
    result: Mapped[str | None] = mapped_column(SealedText(sealing.LOG))
    account: Mapped[str | None] = mapped_column(SealedText(sealing.LOG))
    account_at: Mapped[datetime | None]
    # A public task's ask on the aid board: how a neighbour volunteers (the aid board's brokered contact).
    aid_post_id: Mapped[int | None] = mapped_column(ForeignKey("aid_post.id", ondelete="SET NULL"))

    area: Mapped[Area | None] = relationship()
    created_by: Mapped[Member | None] = relationship(foreign_keys=[created_by_id])
    taken_by: Mapped[Member | None] = relationship(foreign_keys=[taken_by_id])
    closed_by: Mapped[Member | None] = relationship(foreign_keys=[closed_by_id])
    aid_post: Mapped[aid.AidPost | None] = relationship()

    @property
    def is_open(self) -> bool:
        return self.status in STILL_OPEN

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    def is_overdue(self, now: datetime) -> bool:
        return self.is_open and self.due_at <= now

    @property
    def waits_for_account(self) -> bool:
        return self.status == DONE and self.account is None


class Created:
    """A new task, and for a public one the receipt code of its ask on the aid board (shown once, kept nowhere)."""

    def __init__(self, task: Task, receipt_code: str | None) -> None:
        self.task = task
        self.receipt_code = receipt_code


# -- who may ------------------------------------------------------------------------


def _roles(session: Session, member: Member, now: datetime) -> set[str]:
    return people.active_roles(session, member, now)


def may_create(session: Session, member: Member | None, now: datetime) -> bool:
    return member is not None and bool(_roles(session, member, now) & set(CREATOR_ROLES))


def _may_oversee(session: Session, task: Task, member: Member, now: datetime) -> bool:
    """The task's creator (while still a host or captain) or any host."""
    roles = _roles(session, member, now)
    return people.HOST in roles or (task.created_by_id == member.id and bool(roles & set(CREATOR_ROLES)))


def _needs_a_role(session: Session, member: Member, now: datetime) -> None:
    if not _roles(session, member, now):
        raise Invalid(_("Only someone holding a role at the bench can take or close a task."))


# -- creating ----------------------------------------------------------------------


def _check_public_text(text: str, field: str) -> None:
    if found := find_contact(text):
        raise Invalid(_("\u201c%(shown)s\u201d looks like %(what)s. A public task is read by everyone: leave "
                        "phone numbers, email addresses and handles out of it.", shown=found.shown, what=_(found.what)),
                      field=field)


def check_time_frame(now: datetime, starts_at: datetime | None, due_at: datetime | None) -> None:
    """A time frame's own rules, alone, so a form can show this beside its fields with the others."""
    if starts_at is None or due_at is None:
        raise Invalid(_("Please give when the task may start and when it should be done."), field="due_at")
    if due_at <= starts_at:
        raise Invalid(_("The task must end after it starts."), field="due_at")
    if due_at <= now:
        raise Invalid(_("That time frame is over already: give an end in the future."), field="due_at")
    if due_at - starts_at > MAX_SPAN:
        raise Invalid(_("A task's time frame is at most %(days)d days: split longer work into several tasks.",
                        days=MAX_SPAN.days), field="due_at")


def check_area(session: Session, area_id: int | None) -> Area:
    area = session.get(Area, area_id) if area_id is not None else None
    if area is None:
        raise Invalid(_("Please choose the published area where the task is."), field="area")
    return area


def create(session: Session, now: datetime, creator: Member, *, title: str, done_means: str, area_id: int | None,
           starts_at: datetime | None, due_at: datetime | None, public: bool = False) -> Created:
    """A new task on the map; a public one is also an ask on the aid board, for neighbours to volunteer."""
    if not may_create(session, creator, now):
        raise Invalid(_("Only hosts and captains create tasks."))
    title = clean_text(title, field="task", max_length=MAX_TITLE)
    done_means = clean_text(done_means, field="what done means", max_length=MAX_DONE_MEANS)
    area = check_area(session, area_id)
    check_time_frame(now, starts_at, due_at)
    assert starts_at is not None and due_at is not None
    if public:
        _check_public_text(title, "task")
        _check_public_text(done_means, "what done means")
    task = Task(code=next_code(session, Task, PREFIX, Task.status.in_(STILL_OPEN)), title=title,
                done_means=done_means, area=area, starts_at=starts_at, due_at=due_at, public=public, status=OPEN,
                created_at=now, created_by=creator)
    session.add(task)
    receipt = None
    if public:
        # The aid board's own ask, so a neighbour answers it the one way the hub brokers contact. Its private
        # contact, for the host as go-between, says whose task it is; the creator reads messages with the code.
        posted = aid.post_aid(session, now, kind=aid.ASK, category="other", text=title, area_id=area.id, days=1,
                              max_days=1, contact=f"task {task.code} ({creator.handle})")
        posted.post.available_until = max(due_at, now) + ASK_AFTER_DUE
        task.aid_post = posted.post
        receipt = posted.receipt_code
    session.flush()
    return Created(task, receipt)


# -- finding -----------------------------------------------------------------------


def get(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(_("That task does not exist (closed tasks are deleted after a few months)."))
    return task


def find_open(session: Session, code: str) -> Task | None:
    return session.scalar(select(Task).where(Task.code == normalize_code(code), Task.status.in_(STILL_OPEN))
                          .order_by(Task.id.desc()).limit(1))


def _open_by_code(session: Session, code: str) -> Task:
    task = find_open(session, code)
    if task is None:
        raise NotFound(_("No open task %(code)s.", code=normalize_code(code) or "?"))
    return task


def open_tasks(session: Session) -> list[Task]:
    """Every task still open, soonest "until" first: overdue ones lead."""
    return list(session.scalars(
        select(Task).options(joinedload(Task.area), joinedload(Task.taken_by), joinedload(Task.created_by))
        .where(Task.status.in_(STILL_OPEN)).order_by(Task.due_at, Task.id)))


def overdue(session: Session, now: datetime) -> list[Task]:
    """Open tasks past their "until": the host's board lists them."""
    return list(session.scalars(
        select(Task).options(joinedload(Task.area), joinedload(Task.taken_by))
        .where(Task.status.in_(STILL_OPEN), Task.due_at <= now).order_by(Task.due_at, Task.id)))


def closed_tasks(session: Session, limit: int = 200) -> list[Task]:
    """Closed tasks newest first, with their results and accounts (sealed): the assembly's page."""
    return list(session.scalars(
        select(Task).options(joinedload(Task.area), joinedload(Task.closed_by), joinedload(Task.taken_by))
        .where(Task.status.in_((DONE, CANCELLED))).order_by(Task.closed_at.desc(), Task.id.desc()).limit(limit)))


def accounts_waiting(session: Session, member: Member) -> list[Task]:
    """Tasks this member closed whose after-action account is still to be written."""
    return list(session.scalars(select(Task).where(Task.status == DONE, Task.closed_by_id == member.id,
                                                   Task.account.is_(None)).order_by(Task.closed_at)))


# -- the public board ----------------------------------------------------------------


@dataclass(frozen=True)
class PublicTask:
    """An open public task as a neighbour sees it: what, where, when, whether help is needed. Never who took it."""

    id: int
    title: str
    done_means: str
    area: str | None
    starts_at: datetime
    due_at: datetime
    help_needed: bool  # past its "until" and not done
    ask_id: int | None  # the aid board's ask to answer, while it is open


def public_board(session: Session, now: datetime) -> list[tuple[str | None, list[PublicTask]]]:
    """Open public tasks grouped by area (by name; an area since removed last), soonest "until" first in each."""
    rows = session.scalars(select(Task).options(joinedload(Task.area), joinedload(Task.aid_post))
                           .where(Task.public.is_(True), Task.status.in_(STILL_OPEN))
                           .order_by(Task.due_at, Task.id))
    groups: dict[str | None, list[PublicTask]] = {}
    for task in rows:
        post = task.aid_post
        groups.setdefault(task.area.name if task.area else None, []).append(PublicTask(
            id=task.id, title=task.title, done_means=task.done_means, area=task.area.name if task.area else None,
            starts_at=task.starts_at, due_at=task.due_at, help_needed=task.due_at <= now,
            ask_id=post.id if post is not None and post.is_open(now) else None))
    return sorted(groups.items(), key=lambda item: (item[0] is None, (item[0] or "").lower()))


# The bench page's one statement for the task map (server/domain/bench_view.py): the open public tasks
# soonest "until" first (overdue ones lead), each row carrying how many there are in all.
_task, _area = Task.__table__, Area.__table__
BENCH_TASKS = (
    select(_task.c.id, _task.c.title, _area.c.name, _task.c.due_at, func.count().over())
    .select_from(_task.outerjoin(_area, _task.c.area_id == _area.c.id))
    # Equalities, not IN: the bench page's statements are built once and an IN list is rebuilt at each run.
    .where(_task.c.public.is_(True), or_(_task.c.status == OPEN, _task.c.status == TAKEN))
    .order_by(_task.c.due_at, _task.c.id)
    .limit(BENCH_LINES)
)


@dataclass(frozen=True)
class BenchTask:
    id: int
    title: str
    area: str | None
    help_needed: bool  # past its "until" and not done; who took it is never said


@dataclass(frozen=True)
class BenchTasks:
    open: int
    lines: list[BenchTask]

    @property
    def help_needed(self) -> int:
        return sum(1 for line in self.lines if line.help_needed)


def bench_tasks(rows: Iterable[Any], now: datetime) -> BenchTasks:
    lines, total = [], 0
    for task_id, title, area, due_at, count in rows:
        lines.append(BenchTask(task_id, title, area, due_at <= now))
        total = count
    return BenchTasks(total, lines)


# -- taking, releasing, closing ------------------------------------------------------------


def take(session: Session, now: datetime, task: Task | str, member: Member, via: str = "web") -> Task:
    """``member`` takes the task. Taking one already yours again changes nothing (a resent TAKE)."""
    _needs_a_role(session, member, now)
    task = _open_by_code(session, task) if isinstance(task, str) else task
    if not task.is_open:
        raise Conflict(_("%(code)s is closed already.", code=task.code))
    if task.taken_by_id == member.id:
        return task
    if task.status == TAKEN:
        raise Conflict(_("%(code)s is taken already; its creator or a host can release it.", code=task.code))
    task.status, task.taken_by, task.taken_at, task.taken_via = TAKEN, member, now, via[:8]
    session.flush()
    return task


def release(session: Session, now: datetime, task: Task, member: Member | None, reason: str | None = None) -> Task:
    """Put a taken task back on the map: by its taker, or by its creator or a host (a reason, in the record).

    ``member`` None is the hub itself (``upkeep``): a taker quiet since the task's "until".
    """
    if task.status != TAKEN:
        raise Conflict(_("%(code)s is not taken, so there is nothing to release.", code=task.code))
    taker = task.taken_by.handle if task.taken_by else "?"
    if member is None:
        power_record.record(session, now, actor=None, role=power_record.SYSTEM_ROLE, action="task-released",
                            subject=f"task {task.code}: released from {taker}", reason=None)
    elif member.id != task.taken_by_id:
        if not _may_oversee(session, task, member, now):
            raise Invalid(_("Only whoever took the task, its creator or a host can release it."))
        reason = clean_text(reason, field="reason", max_length=MAX_REASON)
        roles = _roles(session, member, now)
        power_record.record(session, now, actor=member, role=people.HOST if people.HOST in roles else people.CAPTAIN,
                            action="task-released", subject=f"task {task.code}: released from {taker}", reason=reason)
    task.status, task.taken_by, task.taken_at, task.taken_via = OPEN, None, None, None
    session.flush()
    return task


def finish(session: Session, now: datetime, task: Task | str, member: Member, result: str | None,
           via: str = "web") -> Task:
    """Close the task as done, with a one-line result; its ask leaves the aid board."""
    _needs_a_role(session, member, now)
    task = _open_by_code(session, task) if isinstance(task, str) else task
    if not task.is_open:
        raise Conflict(_("%(code)s is closed already.", code=task.code))
    if task.status == TAKEN and task.taken_by_id != member.id and not _may_oversee(session, task, member, now):
        raise Invalid(_("%(code)s was taken by someone else: they close it, or its creator or a host.",
                        code=task.code))
    result = clean_text(result, field="result", max_length=MAX_RESULT, required=False) or None
    if task.status == OPEN:  # done without taking it first: doing it was taking it
        task.taken_by, task.taken_at, task.taken_via = member, now, via[:8]
    task.status, task.closed_at, task.closed_by, task.result = DONE, now, member, result
    _close_ask(session, now, task, aid.TAKEN)
    session.flush()
    return task


def cancel(session: Session, now: datetime, task: Task, member: Member) -> Task:
    """The creator or a host takes the task off the map (no longer needed); its ask is withdrawn."""
    if not task.is_open:
        raise Conflict(_("%(code)s is closed already.", code=task.code))
    if not _may_oversee(session, task, member, now):
        raise Invalid(_("Only the task's creator or a host can cancel it."))
    task.status, task.closed_at, task.closed_by = CANCELLED, now, member
    _close_ask(session, now, task, aid.WITHDRAWN)
    session.flush()
    return task


def _close_ask(session: Session, now: datetime, task: Task, status: str) -> None:
    post = task.aid_post
    if post is not None and post.status == aid.OPEN:
        aid.close_by_poster(session, now, post, status)


def write_account(session: Session, now: datetime, task: Task, member: Member, text: str) -> Task:
    """The after-action account of a closed task, by whoever closed it: what happened, what to do next time."""
    if task.status != DONE:
        raise Invalid(_("An after-action account is written once the task is done."))
    if task.closed_by_id != member.id:
        raise Invalid(_("The after-action account is written by whoever closed the task."))
    if task.account is not None:
        raise Conflict(_("The after-action account of %(code)s is written already.", code=task.code))
    task.account = clean_text(text, field="after-action account", max_length=MAX_ACCOUNT, multiline=True)
    task.account_at = now
    session.flush()
    return task


# -- the scheduled job ----------------------------------------------------------------------


def upkeep(session: Session, now: datetime) -> tuple[int, int]:
    """Release tasks whose taker is quiet ``RELEASE_AFTER`` past "until"; delete tasks closed ``RETENTION`` ago.

    Returns (released, deleted).
    """
    quiet = list(session.scalars(select(Task).where(Task.status == TAKEN, Task.due_at <= now - RELEASE_AFTER)))
    for task in quiet:
        release(session, now, task, None)
    gone = list(session.scalars(select(Task.id).where(Task.status.in_((DONE, CANCELLED)),
                                                      Task.closed_at <= now - RETENTION)))
    if gone:
        session.execute(delete(Task).where(Task.id.in_(gone)))
    session.flush()
    return len(quiet), len(gone)


# -- on the air -------------------------------------------------------------------------------


def _air_time(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}Z"


def taken_text(task: Task) -> str:
    """The answer to TAKE: the task, where, until when, and how to close it; one packet."""
    title = place_for_air(task.title, AIR_TITLE_LIMIT) or task.code
    area = task.area.name if task.area else _("no area")
    text = _("%(code)s is yours: %(title)s, %(area)s, until %(until)s. When done: DONE %(code)s what you did",
             code=task.code, title=title, area=area, until=_air_time(task.due_at))
    if fits_one_packet(text):
        return text
    return _("%(code)s is yours, until %(until)s. When done: DONE %(code)s what you did", code=task.code,
             until=_air_time(task.due_at))


def done_text(task: Task) -> str:
    """The answer to DONE: thanks, and where the after-action account is written."""
    return _("%(code)s done. Thank you. Please write its after-action account on the hub.", code=task.code)


def counts(session: Session, now: datetime) -> tuple[int, int]:
    """(open, overdue) tasks: for a dashboard's line."""
    rows: Iterable[tuple[datetime]] = session.execute(select(Task.due_at).where(Task.status.in_(STILL_OPEN)))
    dues = [due for (due,) in rows]
    return len(dues), sum(1 for due in dues if due <= now)
