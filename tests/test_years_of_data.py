"""Stories of a hub with years behind it: the jobs read what is due, and work off a backlog in short batches.

Timings are for tests/benchmarks/growth.py; here, what the jobs do: after an
upgrade with months of log notes and closed cases waiting, each run takes a
bounded batch per transaction and the next run goes on where it stopped,
leaving no entry half-reduced and no shift uncounted; the overdue check
reads the shifts on patrol, however long the log behind them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from server import scheduler
from server.domain import aid, alerts, audit, cases, lunar, overdue, patrol, people, retention
from server.extensions import db
from server.scheduler import JOBS, run_job
from tests.helpers import add_steward

EXPIRE = next(job for job in JOBS if job.name == "expire-patrol-log")
PURGE_CASES = next(job for job in JOBS if job.name == "purge-cases")
PURGE_AID = next(job for job in JOBS if job.name == "purge-aid")


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 5 and one batch a run: a backlog of dozens takes several runs, as years take many."""
    monkeypatch.setattr(scheduler, "BATCH", 5)
    monkeypatch.setattr(scheduler, "CASE_BATCH", 5)
    monkeypatch.setattr(scheduler, "RUN_BUDGET_S", 0.0)


def write_locks(app) -> list[str]:
    """Every BEGIN IMMEDIATE on the hub's engine from now on: one per write transaction."""
    taken: list[str] = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_: taken.append(statement)
                     if statement.startswith("BEGIN IMMEDIATE") else None)
    return taken


def months_of_patrols(app, clock, nights: int) -> None:
    """Kestrel and Wren walk a shift each night for ``nights`` nights, ending now: a start, two check-ins, an end."""
    with app.app_context():
        session = db.session
        patrol.add_area(session, "Market")
        stewards = [add_steward(session, clock() - timedelta(days=nights + 1), handle, node, term_days=nights + 30)
                    for handle, node in (("Kestrel", "!a1b2c3d4"), ("Wren", "!a1b2c3d5"))]
        start = clock() - timedelta(days=nights)
        for night in range(nights):
            for member in stewards:
                moment = start + timedelta(days=night, minutes=5 * member.id)
                patrol.start_shift(session, moment, member, "Market by the fountain", patrol.SOURCE_RADIO)
                for minutes in (20, 40):
                    patrol.record_check_in(session, moment + timedelta(minutes=minutes), member,
                                           patrol.SOURCE_RADIO, note="all quiet by number 12")
                patrol.end_shift(session, moment + timedelta(minutes=60), member, patrol.SOURCE_RADIO)
        session.commit()


def log_state(app) -> list[tuple]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(patrol.LogEntry.id, patrol.LogEntry.at, patrol.LogEntry.member_id, patrol.LogEntry.shift_id,
                   patrol.LogEntry.note, patrol.LogEntry.place).order_by(patrol.LogEntry.id))]


def test_months_of_log_past_the_retention_are_reduced_in_short_batches_over_several_runs(
        app, clock, small_batches):
    months_of_patrols(app, clock, nights=45)
    before = log_state(app)
    cutoff = clock() - timedelta(days=30)
    due = [row for row in before if row[1] < cutoff]
    assert len(due) == 15 * 2 * 4 and len(before) == 45 * 2 * 4
    locks = write_locks(app)

    outcomes = []
    for _ in range(40):  # bounded: the backlog is 120 entries and 30 shifts, five of each a run
        outcomes.append(run_job(app, EXPIRE))
        after = log_state(app)
        # After every run, each entry is either untouched or reduced whole: nothing half-done.
        for old, new in zip(before, after):
            assert new == old or (new[:2] == old[:2] and new[2:] == (None, None, None, None)), new
        if not outcomes[-1].endswith("more next run"):
            break
    # About five entries a run, and a shift with all its entries: 120 entries and 30 shifts take many runs.
    assert 20 <= len(outcomes) <= 31, outcomes
    assert all(outcome.endswith("more next run") for outcome in outcomes[:-1]), outcomes
    assert len(locks) == len(outcomes), "each run one short transaction"
    # The five oldest entries, and the rest of the oldest shift's: Kestrel's and Wren's nights interleave.
    assert outcomes[0] == "6 log entries reduced to kind, time and area; 1 shift(s) reduced to counts; more next run"

    after = log_state(app)
    assert [row[2:] for row in after if row[1] < cutoff] == [(None, None, None, None)] * len(due)
    assert [row for row in after if row[1] >= cutoff] == [row for row in before if row[1] >= cutoff]
    with app.app_context():
        # Every shift that ended before the cutoff is a count now, and only those.
        tallied = db.session.scalar(select(func.sum(audit.ShiftTally.shifts)))
        assert tallied == 30
        left = db.session.scalars(select(patrol.Shift.ended_at)).all()
        assert len(left) == 60 and min(left) >= cutoff
    assert run_job(app, EXPIRE) == "0 log entries reduced to kind, time and area; 0 shift(s) reduced to counts"


def test_closed_cases_resolved_alerts_and_finished_aid_posts_are_purged_over_runs_until_none_is_left(
        app, clock, small_batches):
    long_ago = clock() - timedelta(days=200)
    with app.app_context():
        session = db.session
        steward = add_steward(session, long_ago, "Kestrel", "!a1b2c3d4", term_days=400)
        for number in range(12):
            session.add(alerts.Alert(code=f"A{number:03d}", kind="sos", status=alerts.RESOLVED,
                                     raised_at=long_ago + timedelta(days=number), member=steward, source="radio",
                                     resolved_at=long_ago + timedelta(days=number, minutes=30)))
        session.add(alerts.Alert(code="A999", kind="sos", status=alerts.OPEN, raised_at=clock(), member=steward,
                                 source="radio"))
        for number in range(7):
            session.add(cases.ArrestCase(code=f"C{number:03d}", opened_at=long_ago, source="radio", place="station",
                                         arrested_at=long_ago, arrested=1, released=1,
                                         closed_at=long_ago + timedelta(days=number)))
        session.add(cases.ArrestCase(code="C999", opened_at=clock(), source="radio", place="station",
                                     arrested_at=clock(), arrested=1))
        for number in range(11):
            session.add(aid.AidPost(receipt_lookup=f"lookup{number:02d}", poster_key=bytes(32), kind=aid.OFFER,
                                    category=aid.CATEGORIES[0], text="soup on Sundays", status=aid.LAPSED,
                                    created_at=long_ago, available_until=long_ago + timedelta(days=7),
                                    closed_at=long_ago + timedelta(days=7, minutes=number)))
        session.commit()

    cases_outcomes = [run_job(app, PURGE_CASES) for _ in range(4)]
    assert cases_outcomes == [
        "5 closed arrest case(s) and 5 resolved alert(s) purged; more next run",
        "2 closed arrest case(s) and 5 resolved alert(s) purged; more next run",
        "0 closed arrest case(s) and 2 resolved alert(s) purged",
        "0 closed arrest case(s) and 0 resolved alert(s) purged",
    ]
    aid_outcomes = [run_job(app, PURGE_AID) for _ in range(4)]
    assert aid_outcomes == ["5 finished aid post(s) purged; more next run"] * 2 + [
        "1 finished aid post(s) purged", "0 finished aid post(s) purged"]
    with app.app_context():
        assert db.session.scalars(select(alerts.Alert.code)).all() == ["A999"]
        assert db.session.scalars(select(cases.ArrestCase.code)).all() == ["C999"]
        assert db.session.scalar(select(func.count()).select_from(aid.AidPost)) == 0


def statements_during(app, work) -> int:
    with app.app_context():
        seen: list[str] = []
        listener = lambda _c, _cur, statement, *_: seen.append(statement)
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            work(db.session)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
            db.session.rollback()
        return len(seen)


def test_the_overdue_check_finds_exactly_the_quiet_stewards_in_queries_that_do_not_grow_with_the_log(app, clock):
    months_of_patrols(app, clock, nights=20)
    rules = overdue.OverdueRules(interval=timedelta(minutes=20), grace=timedelta(minutes=5))
    with app.app_context():
        session = db.session
        kestrel, wren = (people.get_member(session, handle) for handle in ("Kestrel", "Wren"))
        robin = add_steward(session, clock(), "Robin", "!a1b2c3d6")
        now = clock()
        # Kestrel checked in ten minutes ago; Wren has been quiet for half an hour; Robin started 40 minutes
        # ago and said nothing since (their start counts as a word).
        patrol.start_shift(session, now - timedelta(minutes=60), kestrel, "Market", patrol.SOURCE_RADIO)
        patrol.record_check_in(session, now - timedelta(minutes=10), kestrel, patrol.SOURCE_RADIO)
        patrol.start_shift(session, now - timedelta(minutes=50), wren, "Market", patrol.SOURCE_RADIO)
        patrol.record_check_in(session, now - timedelta(minutes=30), wren, patrol.SOURCE_RADIO)
        patrol.start_shift(session, now - timedelta(minutes=40), robin, None, patrol.SOURCE_RADIO)
        session.commit()
        assert overdue.check(session, now, rules) == ["Wren pinged", "Robin pinged"]
        session.rollback()

    queries = statements_during(app, lambda session: overdue.check(session, clock(), rules))
    months_of_patrols_more(app, clock)
    assert statements_during(app, lambda session: overdue.check(session, clock(), rules)) == queries


def months_of_patrols_more(app, clock) -> None:
    """Another forty nights behind Kestrel and Wren, long before the first ones."""
    with app.app_context():
        session = db.session
        for handle in ("Kestrel", "Wren"):
            member = people.get_member(session, handle)
            for night in range(40):
                start = clock() - timedelta(days=100 + night)
                shift = patrol.Shift(member=member, place="Market", started_at=start,
                                     ended_at=start + timedelta(hours=1))
                session.add(shift)
                session.flush()
                for minutes in (0, 20, 40):
                    patrol.log_entry(session, start + timedelta(minutes=minutes), patrol.CHECK_IN, member,
                                     patrol.SOURCE_RADIO, shift=shift)
        session.commit()


def test_the_jobs_reach_the_log_through_its_indexes(app, clock):
    """What keeps them flat after years: the plans SQLite chooses, not a timing."""
    months_of_patrols(app, clock, nights=2)
    with app.app_context():
        session = db.session
        shifts = list(session.scalars(select(patrol.Shift)))
        recorded: list[tuple] = []
        listener = lambda _c, _cur, statement, parameters, *_: recorded.append((statement, parameters))
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            overdue.last_words(session, shifts)
            retention.expire_patrol_log(session, clock(), timedelta(days=30), limit=5)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        plans = [" / ".join(row[3] for row in session.connection().exec_driver_sql(
                     f"EXPLAIN QUERY PLAN {statement}", parameters))
                 for statement, parameters in recorded
                 if statement.lstrip().upper().startswith("SELECT") and "FROM log_entry" in statement]
        session.rollback()
    assert any("USING INDEX ix_log_entry_shift_id" in line for line in plans), plans
    assert any("USING INDEX ix_log_entry_unreduced_at" in line for line in plans), plans
    assert not any("SCAN log_entry" in line for line in plans), plans


def test_the_audit_kept_outside_the_write_lock_is_the_audit_kept_inside_it_and_never_counts_a_shift_twice(
        app, clock):
    from tests.test_audit import NOVEMBER, seed_november

    seed_november(app, clock)
    clock.now = datetime(2026, 11, 16, 12, 0)
    with app.app_context():
        session = db.session
        # Read with no lock, written in a short transaction: the same facts as the whole keep in one.
        prepared = audit.prepare_keep(session, clock())
        session.rollback()
        assert audit.keep_prepared(session, clock(), prepared) == [NOVEMBER - 1]  # Tern's October, frozen
        session.commit()
        kept = audit.find(session, NOVEMBER).facts
        audit.keep_tally(session, clock())
        session.commit()
        assert audit.find(session, NOVEMBER).facts == kept
        before = audit.report(session, lunar.cycle(NOVEMBER), clock(), 360.0)

        # Between the reading and the writing, the retention turns November's shifts into counts (and
        # takes their facts out of the kept row): the prepared facts still name them, so the keep is done
        # again inside the lock, and each shift is counted once.
        clock.now = datetime(2026, 11, 16, 13, 0)
        prepared = audit.prepare_keep(session, clock())
        session.rollback()
        assert retention.expire_patrol_log(session, clock(), timedelta(days=2)).shifts == 6
        session.commit()
        audit.keep_prepared(session, clock(), prepared)
        session.commit()
        after = audit.report(session, lunar.cycle(NOVEMBER), clock(), 360.0)
        assert (after.shifts, after.check_ins, after.areas) == (before.shifts, before.check_ins, before.areas)
        assert after.shifts == 5
