"""Scheduled housekeeping: what expires, expires here.

Runs in exactly one place, never inside web workers: two schedulers would run
every job twice. That place is a thread of the radio bridge (``safebench
bridge --with-scheduler``: what ``safebench up`` and the systemd unit run),
or ``safebench worker`` on a hub with no bridge; a lock file in the instance
folder lets only one of them run the jobs at a time.

Flask-free: jobs take (session, now, settings), and the plumbing here takes
either a ``Runtime`` (an engine's sessions and ``server.config`` settings) or
a Flask app (tests, ``safebench run-jobs``), so the bridge carries the jobs
for about a megabyte instead of a fourth Python process of ~50 MB.
"""

from __future__ import annotations

import fcntl
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from server.db import HubBusy, checkpoint, make_engine, run_in_transaction
from server.domain import (
    aid,
    alerts,
    audit,
    cases,
    complaints,
    mediation,
    outbox,
    overdue,
    people,
    radio,
    radio_trust,
    retention,
    sealing,
    tasks,
)
from server.domain.errors import DomainError

log = logging.getLogger("server.scheduler")


@dataclass(frozen=True)
class Job:
    name: str
    minutes: int
    run: Callable[[Session, datetime, dict], str]
    # False for work SQLite refuses inside a transaction (a checkpoint), and for
    # a job that takes its own transactions (``_in_batches``).
    in_transaction: bool = True


# A purge with much to do (years of rows after an upgrade, a retention shortened)
# works in batches, each its own short transaction, so the radio and the web
# never wait long for the write lock; after RUN_BUDGET_S it stops, and its
# next run goes on from there (the jobs after it in the loop wait no longer).
BATCH = 50  # rows a statement or two take: about 7-11 ms of the write lock on this (busy, 2-core) machine
CASE_BATCH = 5  # arrest cases go one by one, each with its line in the record of power used
RUN_BUDGET_S = 5.0
BETWEEN_BATCHES_S = 0.005  # a writer waiting for the lock (it tries every 2 ms) takes it between two batches
MORE = "; more next run"
CATCH_UP_MINUTES = 1  # how soon a job that left work for its next run runs again


def _in_batches(session: Session, batch: Callable[[Session], tuple[int, ...]],
                full: Callable[[tuple[int, ...]], bool] | None = None) -> tuple[list[int], bool]:
    """Run ``batch`` (at most BATCH of each thing it does) in transactions until one comes back short.

    ``full``: whether a batch's counts say there may be more (by default: one reached BATCH).
    Returns the totals of each count, and whether work was left for the next run.
    """
    totals: list[int] = []
    deadline = time.monotonic() + RUN_BUDGET_S
    while True:
        counts = run_in_transaction(session, batch)
        totals = [a + b for a, b in zip(totals, counts)] if totals else list(counts)
        if not (full(counts) if full else max(counts) >= BATCH):
            return totals, False
        if time.monotonic() >= deadline:
            return totals, True
        time.sleep(BETWEEN_BATCHES_S)


def _lapse_roles(session: Session, now: datetime, _cfg: dict) -> str:
    lapsed = people.lapse_expired_roles(session, now)
    return f"{len(lapsed)} role(s) lapsed"


def _give_keys(session: Session, now: datetime, _cfg: dict) -> str:
    # Only keys waiting on the card can be given from here (a new hub, or after the
    # upgrade to sealed storage); and a lapsed reader's grant goes, while another reader holds one.
    changes = sealing.sync(session, now)
    return f"{len(changes)} vault key change(s)" + (f": {'; '.join(changes)}" if changes else "")


def _lapse_aid(session: Session, now: datetime, _cfg: dict) -> str:
    return f"{aid.lapse_due(session, now)} aid post(s) lapsed"


def _purge_mediation(session: Session, now: datetime, cfg: dict) -> str:
    days = cfg["MEDIATION_RETENTION_DAYS"]
    (purged,), more = _in_batches(session, lambda s: (mediation.purge_closed(s, now, days, BATCH),))
    return f"{purged} closed mediation request(s) purged" + (MORE if more else "")


def _purge_complaints(session: Session, now: datetime, cfg: dict) -> str:
    days = int(cfg["COMPLAINT_RETENTION_DAYS"])
    (purged,), more = _in_batches(session, lambda s: (complaints.purge_closed(s, now, days, BATCH),))
    return f"{purged} closed complaint(s) purged (their dates kept for the counts)" + (MORE if more else "")


def _purge_aid(session: Session, now: datetime, cfg: dict) -> str:
    days = cfg["AID_RETENTION_DAYS"]
    (purged,), more = _in_batches(session, lambda s: (aid.purge_finished(s, now, days, BATCH),))
    return f"{purged} finished aid post(s) purged" + (MORE if more else "")


def _purge_radio(session: Session, now: datetime, cfg: dict) -> str:
    keep = timedelta(days=float(cfg["OUTBOX_RETENTION_DAYS"]))
    (messages, _airtime), more = _in_batches(session, lambda s: outbox.purge_finished(s, now, keep, BATCH))

    def forget(session: Session) -> dict[str, int]:
        # One statement each, on indexed times: these tables hold days or weeks, never years.
        forgotten = radio.forget_old_radio_records(
            session, now, positions_after=timedelta(hours=float(cfg["POSITION_RETENTION_HOURS"])),
            strangers_after=timedelta(days=float(cfg["UNKNOWN_SENDER_RETENTION_DAYS"])),
            heard_after=timedelta(days=float(cfg["HEARD_PACKET_RETENTION_DAYS"])))
        forgotten["radio trust records"] = radio_trust.forget_events_before(
            session, now - timedelta(days=float(cfg["RADIO_TRUST_RETENTION_DAYS"])))
        return forgotten

    details = ", ".join(f"{count} {what}" for what, count in run_in_transaction(session, forget).items())
    return f"{messages} finished radio message(s) purged; {details} forgotten" + (MORE if more else "")


def _escalate_alerts(session: Session, now: datetime, cfg: dict) -> str:
    moved = alerts.escalate_due(session, now, timedelta(minutes=float(cfg["ALERT_ACK_MINUTES"])))
    return f"{len(moved)} unanswered alert(s) broadcast again" + (
        f": {', '.join(a.code for a in moved)}" if moved else "")


def _overdue_check_ins(session: Session, now: datetime, cfg: dict) -> str:
    rules = overdue.OverdueRules(interval=timedelta(minutes=float(cfg["CHECK_IN_INTERVAL_MINUTES"])),
                                 grace=timedelta(minutes=float(cfg["CHECK_IN_GRACE_MINUTES"])))
    done = overdue.check(session, now, rules)
    # How many, never whose: the process log is kept by journald, and handles with times map stewards' nights.
    return f"{len(done)} overdue check-in(s)" + (
        f": {sum(' pinged' in line for line in done)} pinged, {sum(' overdue' in line for line in done)} alerted"
        if done else "")


def _case_clock(session: Session, now: datetime, _cfg: dict) -> str:
    reminded = cases.remind_due(session, now)
    return f"{len(reminded)} case reminder(s)" + (f": {', '.join(c.code for c in reminded)}" if reminded else "")


def _purge_cases(session: Session, now: datetime, cfg: dict) -> str:
    grace = timedelta(days=float(cfg["CASE_GRACE_DAYS"]))
    keep = timedelta(days=float(cfg["ALERT_RETENTION_DAYS"]))
    (purged,), more_cases = _in_batches(session, lambda s: (cases.purge_closed(s, now, grace, CASE_BATCH),),
                                        full=lambda counts: counts[0] >= CASE_BATCH)
    (resolved,), more_alerts = _in_batches(session, lambda s: (alerts.purge_resolved(s, now, keep, BATCH),))
    return (f"{purged} closed arrest case(s) and {resolved} resolved alert(s) purged"
            + (MORE if more_cases or more_alerts else ""))


def _expire_patrol_log(session: Session, now: datetime, cfg: dict) -> str:
    keep = retention.retention(cfg["LOG_NOTE_RETENTION_DAYS"])

    def batch(session: Session) -> tuple[int, int, int]:
        expired = retention.expire_patrol_log(session, now, keep, limit=BATCH)
        return expired.entries, expired.shifts, int(expired.more)

    (entries, shifts, _), more = _in_batches(session, batch, full=lambda counts: bool(counts[2]))
    return (f"{entries} log entr{'y' if entries == 1 else 'ies'} reduced to kind, time and area; "
            f"{shifts} shift(s) reduced to counts" + (MORE if more else ""))


def _checkpoint(session: Session, _now: datetime, _cfg: dict) -> str:
    if checkpoint(session.get_bind()):
        return "0 pages left in the write-ahead log"
    return "database busy: the write-ahead log is truncated next run"


def _task_upkeep(session: Session, now: datetime, _cfg: dict) -> str:
    released, deleted = tasks.upkeep(session, now)
    return f"{released} quiet taker(s)' task(s) released; {deleted} closed task(s) deleted"


def _federation(session: Session, now: datetime, cfg: dict) -> str:
    # Only on a bench that joined a federation (its key file exists); imported here so one that never
    # federates loads none of it. The transport sends what this queues, and queues alerts itself too.
    from server.domain import federation

    key = federation.load_signing_key(cfg["INSTANCE"])
    if key is None or federation.this_bench(session) is None:
        return "0 federation messages: this bench has joined no federation"
    alerts_queued = federation.queue_new_alerts(session, now, key)
    state = federation.queue_periodic(session, now, key)
    forgotten, old = federation.purge(session, now)
    return (f"{len(alerts_queued)} alert(s) and {len(state)} other message(s) queued for the federation; "
            f"{forgotten} received id(s) and {old} old outbox message(s) forgotten")


def _keep_audit(session: Session, now: datetime, _cfg: dict) -> str:
    # Read and encoded outside the write lock (a cycle's thousands of check-ins); written in a short transaction.
    try:
        prepared = audit.prepare_keep(session, now)
    finally:
        session.rollback()
    frozen = run_in_transaction(session, lambda s: audit.keep_prepared(s, now, prepared))
    return f"{len(frozen)} lunar audit(s) frozen" + (f": cycle {', '.join(map(str, frozen))}" if frozen else "") + \
        "; this cycle's audit facts kept"


JOBS = (
    # Rapid response first: these run every minute, and a minute is the longest anyone waits.
    Job("escalate-alerts", 1, _escalate_alerts),
    Job("overdue-check-ins", 1, _overdue_check_ins),
    Job("case-clock", 1, _case_clock),
    Job("lapse-roles", 1, _lapse_roles),
    Job("seal-keys", 1, _give_keys),
    Job("lapse-aid", 1, _lapse_aid),
    Job("task-upkeep", 10, _task_upkeep),
    Job("federation", 1, _federation),
    # Before the purges: the audit copies its facts from rows they are about to take.
    Job("keep-audit", 60, _keep_audit, in_transaction=False),
    Job("expire-patrol-log", 60, _expire_patrol_log, in_transaction=False),
    Job("purge-mediation", 60, _purge_mediation, in_transaction=False),
    Job("purge-aid", 60, _purge_aid, in_transaction=False),
    Job("purge-complaints", 60, _purge_complaints, in_transaction=False),
    Job("purge-radio", 60, _purge_radio, in_transaction=False),
    Job("purge-cases", 60, _purge_cases, in_transaction=False),
    # Last: what the purges took away leaves the WAL too, and every few minutes what the day changed.
    Job("checkpoint", 10, _checkpoint, in_transaction=False),
)


@dataclass
class Runtime:
    """What the jobs need without Flask: sessions on the hub's database, and its settings."""

    sessions: Callable[[], Session]
    config: Mapping[str, Any]
    engine: Engine | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Runtime:
        """An engine of the scheduler's own, set up as the web app's is (server.config.load_settings)."""
        engine = make_engine(settings["DATABASE_URL"], int(settings["DB_BUSY_TIMEOUT_MS"]))
        return cls(sessionmaker(engine), settings, engine)

    def close(self) -> None:
        """On the way out: the WAL truncated, the connections closed."""
        if self.engine is not None:
            checkpoint(self.engine)
            self.engine.dispose()


def _attempt(job: Job, session: Session, config: Mapping[str, Any]) -> str | None:
    now = config["CLOCK"]()
    try:
        if job.in_transaction:
            return run_in_transaction(session, lambda s: job.run(s, now, config))
        return job.run(session, now, config)
    except HubBusy:
        log.warning("%s: database busy, will try again next run", job.name)
        return None
    except DomainError as error:  # a setting it cannot work with: said plainly, every run until it is fixed
        log.error("%s: not run: %s", job.name, error.message)
        return f"not run: {error.message}"


def run_job(target: Runtime | Any, job: Job) -> str | None:
    """Run one job in its own transaction; a locked database just waits for the next run.

    ``target`` is a ``Runtime`` or a Flask app (its ``db.session`` and config, in an app context).
    """
    if isinstance(target, Runtime):
        session = target.sessions()
        try:
            outcome = _attempt(job, session, target.config)
        finally:
            session.close()
    else:
        from server.extensions import db  # Flask only where an app was given

        with target.app_context():
            try:
                outcome = _attempt(job, db.session, target.config)
            finally:
                db.session.remove()
    if outcome is not None and not outcome.startswith("0 "):
        log.info("%s: %s", job.name, outcome)
    return outcome


def run_all_once(target: Runtime | Any) -> list[str | None]:
    return [run_job(target, job) for job in JOBS]


SCHEDULER_LOCK = "scheduler.lock"
# Between two jobs: a writer waiting for the lock (the bridge with a burst of
# check-ins) gets it before the next job begins.
BETWEEN_JOBS_S = 0.05


class Scheduler:
    """Every job at its interval, on monotonic deadlines: a few fixed intervals need no APScheduler.

    A job that fails is logged and runs again at its next turn; nothing a job
    does ends the loop (in the bridge, the radio goes on whatever a job does).
    After a pause longer than an interval (the Pi busy, the process stopped
    for a while) a job runs once, not once per missed turn.
    """

    def __init__(self, runtime: Runtime, stop: threading.Event, jobs: tuple[Job, ...] = JOBS) -> None:
        self.runtime = runtime
        self.stop = stop
        self.jobs = jobs
        self.due = {job.name: 0.0 for job in jobs}  # 0: all of them at once, whatever came due while down

    def run_due(self) -> None:
        for job in self.jobs:
            if self.stop.is_set():
                return
            if time.monotonic() < self.due[job.name]:
                continue
            outcome = None
            try:
                outcome = run_job(self.runtime, job)
            except Exception:  # (a bug in one job must not stop the others, nor the radio)
                log.exception("%s: failed; it runs again at its next turn", job.name)
            if outcome is not None and outcome.endswith(MORE):
                # A backlog (years of rows after an upgrade) goes on within the minute, not the
                # job's hour: each run is still RUN_BUDGET_S of short transactions at most.
                self.due[job.name] = time.monotonic() + min(job.minutes, CATCH_UP_MINUTES) * 60
                self.stop.wait(BETWEEN_JOBS_S)
                continue
            # Every interval from the last turn, not from when this run ended (no drift); a
            # turn already past (a long pause) is skipped rather than run twice.
            due = self.due[job.name] + job.minutes * 60
            self.due[job.name] = due if due > time.monotonic() else time.monotonic() + job.minutes * 60
            self.stop.wait(BETWEEN_JOBS_S)

    def run(self, start_after: float = 0.0) -> None:
        """Until ``stop`` is set; only while this process holds the instance's scheduler lock."""
        if self.stop.wait(start_after):
            return
        with SchedulerLock(Path(self.runtime.config["INSTANCE"]) / SCHEDULER_LOCK) as lock:
            while not self.stop.is_set() and not lock.take():
                self.stop.wait(60)  # another process runs the jobs: take over if it stops
            if self.stop.is_set():
                return
            log.info("scheduler running %d jobs", len(self.jobs))
            while not self.stop.is_set():
                self.run_due()
                self.stop.wait(max(0.0, min(self.due.values()) - time.monotonic()))


class SchedulerLock:
    """``flock`` on a file in the instance folder: exactly one scheduler per hub, whoever starts it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = None
        self.announced = False

    def __enter__(self) -> Self:
        self.file = self.path.open("a")
        return self

    def take(self) -> bool:
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.announced:
                log.info("another process runs the scheduled jobs (%s is locked); this one waits", self.path)
                self.announced = True
            return False
        return True

    def __exit__(self, *_exc: object) -> None:
        self.file.close()  # and the lock with it


def start_thread(settings: Mapping[str, Any], stop: threading.Event, start_after: float = 0.0,
                 engine: Engine | None = None) -> threading.Thread:
    """The scheduler in a thread of this process (the bridge), on its engine (its owner disposes of it)."""

    def work() -> None:
        runtime = Runtime(sessionmaker(engine), settings) if engine is not None else Runtime.from_settings(settings)
        try:
            Scheduler(runtime, stop).run(start_after)
        except Exception:  # (e.g. the instance folder unwritable: said, and the radio goes on)
            log.exception("the scheduler stopped; the radio bridge goes on without it")
        finally:
            if runtime.engine is not None:
                runtime.engine.dispose()

    thread = threading.Thread(target=work, name="scheduler", daemon=True)
    thread.start()
    return thread


def run_forever(settings: Mapping[str, Any]) -> None:
    """``safebench worker``: the scheduler as a process of its own, until SIGTERM or Ctrl-C."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runtime = Runtime.from_settings(settings)
    try:
        Scheduler(runtime, stop).run()
    finally:
        runtime.close()  # the WAL truncated on the way out


def worker_main(argv: list[str] | None = None, prog: str = "safebench worker") -> int:
    """``safebench worker``: for a hub that runs no radio bridge (the bridge carries the scheduler otherwise)."""
    import argparse

    from server import config
    from server.migrating import schema_ready

    argparse.ArgumentParser(prog=prog, description="Run the scheduler: role expiry, overdue check-ins, purges. "
                            "Run exactly one (a bridge started with --with-scheduler is one).").parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    instance = config.instance_path_from_env()
    settings = config.load_settings(instance)
    if not schema_ready(instance, settings):
        print("Error: the database could not be brought to the newest schema; see the messages above.",
              file=sys.stderr)
        return 1
    run_forever(settings)
    return 0
