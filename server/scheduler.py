"""Scheduled housekeeping: what expires, expires here.

Runs in exactly one process (``safebench worker``, or the worker child of
``safebench up``), never inside web workers: two schedulers would run every
job twice.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy.orm import Session

from server.db import HubBusy, checkpoint, run_in_transaction
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
)
from server.domain.errors import DomainError
from server.extensions import db

log = logging.getLogger("server.scheduler")


@dataclass(frozen=True)
class Job:
    name: str
    minutes: int
    run: Callable[[Session, datetime, dict], str]
    # False for work SQLite refuses inside a transaction (a checkpoint).
    in_transaction: bool = True


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
    return f"{mediation.purge_closed(session, now, cfg['MEDIATION_RETENTION_DAYS'])} closed mediation request(s) purged"


def _purge_complaints(session: Session, now: datetime, cfg: dict) -> str:
    purged = complaints.purge_closed(session, now, int(cfg["COMPLAINT_RETENTION_DAYS"]))
    return f"{purged} closed complaint(s) purged (their dates kept for the counts)"


def _purge_aid(session: Session, now: datetime, cfg: dict) -> str:
    return f"{aid.purge_finished(session, now, cfg['AID_RETENTION_DAYS'])} finished aid post(s) purged"


def _purge_radio(session: Session, now: datetime, cfg: dict) -> str:
    messages = outbox.purge_finished(session, now, timedelta(days=float(cfg["OUTBOX_RETENTION_DAYS"])))
    forgotten = radio.forget_old_radio_records(
        session, now, positions_after=timedelta(hours=float(cfg["POSITION_RETENTION_HOURS"])),
        strangers_after=timedelta(days=float(cfg["UNKNOWN_SENDER_RETENTION_DAYS"])),
        heard_after=timedelta(days=float(cfg["HEARD_PACKET_RETENTION_DAYS"])))
    forgotten["radio trust records"] = radio_trust.forget_events_before(
        session, now - timedelta(days=float(cfg["RADIO_TRUST_RETENTION_DAYS"])))
    details = ", ".join(f"{count} {what}" for what, count in forgotten.items())
    return f"{messages} finished radio message(s) purged; {details} forgotten"


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
    purged = cases.purge_closed(session, now, timedelta(days=float(cfg["CASE_GRACE_DAYS"])))
    resolved = alerts.purge_resolved(session, now, timedelta(days=float(cfg["ALERT_RETENTION_DAYS"])))
    return f"{purged} closed arrest case(s) and {resolved} resolved alert(s) purged"


def _expire_patrol_log(session: Session, now: datetime, cfg: dict) -> str:
    expired = retention.expire_patrol_log(session, now, retention.retention(cfg["LOG_NOTE_RETENTION_DAYS"]))
    return (f"{expired.entries} log entr{'y' if expired.entries == 1 else 'ies'} reduced to kind, time and area; "
            f"{expired.shifts} shift(s) reduced to counts")


def _checkpoint(session: Session, _now: datetime, _cfg: dict) -> str:
    if checkpoint(session.get_bind()):
        return "0 pages left in the write-ahead log"
    return "database busy: the write-ahead log is truncated next run"


def _keep_audit(session: Session, now: datetime, _cfg: dict) -> str:
    frozen = audit.keep_tally(session, now)
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
    # Before the purges: the audit copies its facts from rows they are about to take.
    Job("keep-audit", 60, _keep_audit),
    Job("expire-patrol-log", 60, _expire_patrol_log),
    Job("purge-mediation", 60, _purge_mediation),
    Job("purge-aid", 60, _purge_aid),
    Job("purge-complaints", 60, _purge_complaints),
    Job("purge-radio", 60, _purge_radio),
    Job("purge-cases", 60, _purge_cases),
    # Last: what the purges took away leaves the WAL too, and every few minutes what the day changed.
    Job("checkpoint", 10, _checkpoint, in_transaction=False),
)


def run_job(app: Flask, job: Job) -> str | None:
    """Run one job in its own transaction; a locked database just waits for the next run."""
    with app.app_context():
        now = app.config["CLOCK"]()
        try:
            if job.in_transaction:
                outcome = run_in_transaction(db.session, lambda session: job.run(session, now, app.config))
            else:
                outcome = job.run(db.session, now, app.config)
        except HubBusy:
            log.warning("%s: database busy, will try again next run", job.name)
            return None
        except DomainError as error:  # a setting it cannot work with: said plainly, every run until it is fixed
            log.error("%s: not run: %s", job.name, error.message)
            return f"not run: {error.message}"
        finally:
            db.session.remove()
    if not outcome.startswith("0 "):
        log.info("%s: %s", job.name, outcome)
    return outcome


def run_all_once(app: Flask) -> list[str | None]:
    return [run_job(app, job) for job in JOBS]


def run_forever(app: Flask) -> None:
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(timezone="UTC")
    for job in JOBS:
        # coalesce: after the Pi sleeps or the clock jumps, one catch-up run is enough.
        scheduler.add_job(
            run_job, "interval", args=(app, job), minutes=job.minutes, id=job.name, coalesce=True, max_instances=1
        )
    run_all_once(app)  # whatever came due while the worker was down
    log.info("worker running %d jobs", len(JOBS))
    # SIGTERM (systemd, safebench up) would end the process where it stands; as
    # an exit instead, the WAL is truncated on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        with app.app_context():
            checkpoint(db.engine)
            db.engine.dispose()
