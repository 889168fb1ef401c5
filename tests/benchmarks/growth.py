"""Years of data: every scheduled job and every page, timed at 1k, 20k, 200k and 1M log rows.

Seeds a real SQLite file per size in bulk (a patrol that writes about 700
log rows a night, so 1M rows is about four years; 20 stewards on shift now;
alerts, arrest cases and aid posts in proportion), then on each:

1. **the first run** of every job in ``server.scheduler.JOBS`` order, as
   the first run after an upgrade: the seed keeps years of notes, shifts,
   resolved alerts and closed cases that the retention rules have not
   reached yet (a job with a backlog works in batches for its run's budget);
   then the log is fast-forwarded to what later runs would leave;
2. **the steady state**: ``--runs`` rounds (and a first one not counted)
   that go through every size in turn, so the shared machine's noise falls
   on all sizes alike: every job once, the clock a minute on, and every page
   once through the Flask test client, as a host who holds the keys to the
   sealed notes.

For each job it measures the time it takes and how long it holds SQLite's
write lock: from its ``BEGIN IMMEDIATE`` (``server.db.begin_writing``) to
its commit or rollback, each transaction of a job that works in batches on
its own. It prints the median ms per job and page at each size, the median
and longest write-lock hold, and the ratio 1M / 1k. Run it from the
repository root::

    .venv/bin/python tests/benchmarks/growth.py                  # 1k, 20k, 200k, 1M: about 5 minutes
    .venv/bin/python tests/benchmarks/growth.py --sizes 1000,20000 --runs 3   # a smoke check

The seeded databases live in one temporary folder for the run and are
removed at its end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import event, insert

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.helpers, when run as a script

from server import create_app
from server.db import run_in_transaction
from server.domain import aid, alerts, cases, lunar, patrol, people, receipt_keys, sealing
from server.domain.codes import ALPHABET
from server.extensions import db
from server.migrating import apply_migrations
from tests.helpers import PASSWORD, FakeClock, login, seat_role

LOCK_AIM_MS = 20
SIZES = (1_000, 20_000, 200_000, 1_000_000)
NOW = datetime(2026, 11, 19, 21, 40)  # a Thursday evening; fixed, never today's date
ROWS_PER_DAY = 700  # about 70 shifts a night, a check-in every 15-30 minutes
ON_SHIFT = 20
STEWARDS = 60
AREAS = ("Market", "Elm Street", "Riverside", "Station", "Park", "School Lane", "Canal")
NOTES = ("all quiet", "lent a charger", "chatted with the night bus driver", "broken glass swept up")
PAGES = ("/", "/log", "/host/", "/host/log", "/host/live", "/audit", "/audit/{previous}",
         "/host/audit/{previous}/revise")


def stamp(moment: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite."""
    return moment.isoformat(sep=" ", timespec="microseconds")


# -- seeding ------------------------------------------------------------------


@dataclass
class Seed:
    path: Path
    log_rows: int
    shifts: int = 0
    alerts: int = 0
    cases: int = 0
    aid_posts: int = 0
    seconds: float = 0.0


def make_hub(instance: Path, clock: FakeClock):
    # Pinned database; the public-page cache off, so a page is rendered at every request.
    app = create_app({"INSTANCE": instance, "DATABASE_URL": f"sqlite:///{instance / 'safebench.db'}",
                      "TESTING": True, "CLOCK": clock, "TIMEZONE": "UTC", "CACHE_TYPE": "NullCache",
                      "CACHE_NO_NULL_WARNING": True,
                      "RATELIMIT_ENABLED": False})
    return app


def seed(folder: Path, log_rows: int) -> Seed:
    started = time.perf_counter()
    instance = folder / f"rows-{log_rows}"
    instance.mkdir(parents=True)
    rng = random.Random(log_rows)
    app = make_hub(instance, FakeClock(NOW))
    apply_migrations(app)
    result = Seed(instance, log_rows)
    with app.app_context():
        session = db.session
        area_ids = [patrol.add_area(session, name).id for name in AREAS]
        host = people.add_member(session, NOW - timedelta(days=2000), "Hostess", None)
        people.set_password(host, PASSWORD, NOW)
        seat_role(session, NOW - timedelta(days=1), host, people.HOST, term_days=60)
        stewards = []
        for number in range(STEWARDS):
            member = people.add_member(session, NOW - timedelta(days=2000), f"Steward{number}",
                                       0x10000000 + number)
            seat_role(session, NOW - timedelta(days=1), member, people.STEWARD, term_days=60)
            stewards.append(member.id)
        public = sealing.vault_public_key(session, sealing.LOG)
        cases_key = sealing.vault_public_key(session, sealing.CASES)
        session.flush()
        sealing.sync(session, NOW)  # the host holds the keys: sealed notes open on the host's pages
        session.commit()
        notes = [sealing.seal_with(public, sealing.LOG, text) for text in NOTES]
        places = [sealing.seal_with(public, sealing.LOG, f"{area} corner") for area in AREAS]
        result.shifts = _seed_log(instance / "safebench.db", rng, log_rows, stewards, area_ids, notes, places)
        result.alerts, result.cases = _seed_alerts_and_cases(session, rng, log_rows, stewards, public, cases_key)
        result.aid_posts = _seed_aid(session, rng, log_rows, area_ids)
        session.commit()
        session.remove()
        db.engine.dispose()
    with sqlite3.connect(instance / "safebench.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    result.seconds = time.perf_counter() - started
    return result


def _seed_log(path: Path, rng: random.Random, total: int, stewards: list[int], area_ids: list[int],
              notes: list[str], places: list[str]) -> int:
    """Shifts of two to four hours, back from now at ROWS_PER_DAY; 20 stewards on shift now. Raw sqlite3: fast."""
    shifts: list[tuple] = []
    entries: list[tuple] = []

    def add(member: int, start: datetime, end: datetime | None) -> None:
        shift_id = len(shifts) + 1
        area_index = rng.randrange(len(AREAS))
        area, place = area_ids[area_index], places[area_index]
        shifts.append((shift_id, member, area, None, stamp(start), stamp(end) if end else None))
        entries.append((stamp(start), patrol.SHIFT_START, member, shift_id, area, place, None))
        moment = start + timedelta(minutes=rng.randint(15, 30))
        stop = end or NOW
        while moment < stop:
            if rng.random() < 0.08:
                entries.append((stamp(moment), patrol.INCIDENT, member, shift_id, area, place, rng.choice(notes)))
            else:
                note = rng.choice(notes) if rng.random() < 0.3 else None
                entries.append((stamp(moment), patrol.CHECK_IN, member, shift_id, area, place, note))
            moment += timedelta(minutes=rng.randint(15, 30), seconds=rng.randint(0, 59))
        if end is not None:
            entries.append((stamp(end), patrol.SHIFT_END, member, shift_id, area, place, None))

    # Twenty out now, some of them quiet for longer than the check-in interval (the overdue job has work).
    for member in stewards[:ON_SHIFT]:
        add(member, NOW - timedelta(minutes=rng.randint(30, 200)), None)
    days = max(1, total // ROWS_PER_DAY)
    while len(entries) < total:
        day = NOW - timedelta(days=rng.randint(1, days), hours=NOW.hour)
        start = day.replace(hour=rng.choice((17, 18, 19, 20, 21, 22)), minute=rng.randrange(60))
        add(rng.choice(stewards[ON_SHIFT:]), start, start + timedelta(minutes=rng.randint(120, 240)))
    entries.sort()
    # Shifts are inserted whole, so the log may run a little over its size; the sizes are round enough.
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO shift (id, member_id, area_id, place, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?)",
            shifts)
        connection.executemany(
            "INSERT INTO log_entry (at, kind, member_id, shift_id, area_id, place, note, source, public, drill) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'radio', 1, 0)", entries)
    return len(shifts)


def _code(rng: random.Random, prefix: str, taken: set[str]) -> str:
    while True:
        code = prefix + "".join(rng.choices("0123456789", k=5))
        if code not in taken:
            taken.add(code)
            return code


def _seed_alerts_and_cases(session, rng: random.Random, log_rows: int, stewards: list[int], public, cases_key
                           ) -> tuple[int, int]:
    """Two alerts and half an arrest case per 1,000 log rows, over the same years: most resolved long ago."""
    days = max(1, log_rows // ROWS_PER_DAY)
    codes: set[str] = set()
    resolution = sealing.seal_with(public, sealing.LOG, "stood down: all well")
    rows = []
    for number in range(max(2, log_rows * 2 // 1000)):
        raised = NOW - timedelta(days=rng.uniform(0, days))
        done = number % 10 != 0 or raised < NOW - timedelta(days=2)
        rows.append({"code": _code(rng, "A", codes), "kind": rng.choice(("sos", "overdue", "incident")),
                     "status": alerts.RESOLVED if done else alerts.OPEN, "raised_at": raised,
                     "member_id": rng.choice(stewards), "source": "radio", "silent": False, "drill": False,
                     "broadcasts": 3 if done else 1, "last_broadcast_at": raised,
                     "resolved_at": raised + timedelta(minutes=20) if done else None,
                     "resolution": resolution if done else None})
    session.execute(insert(alerts.Alert), rows)
    place = sealing.seal_with(cases_key, sealing.CASES, "outside the station")
    case_rows = []
    for number in range(max(1, log_rows // 2000)):
        opened = NOW - timedelta(days=rng.uniform(0, days))
        # Open only if recent: the 48-hour clock sees every case closed within days.
        closed = opened + timedelta(hours=30) if number % 20 or opened < NOW - timedelta(days=2) else None
        case_rows.append({"code": _code(rng, "C", codes), "opened_at": opened, "source": "radio",
                          "reported_by_id": rng.choice(stewards), "place": place, "arrested_at": opened,
                          "arrested": 1, "released": 1 if closed else 0, "drill": False, "closed_at": closed,
                          "reminded_hours": 48 if closed else 0})
    session.execute(insert(cases.ArrestCase), case_rows)
    return len(rows), len(case_rows)


def _seed_aid(session, rng: random.Random, log_rows: int, area_ids: list[int]) -> int:
    """Three aid posts per 1,000 log rows, most finished long ago; the rest open."""
    days = max(1, log_rows // ROWS_PER_DAY)
    lookups: set[str] = set()
    count = max(3, log_rows * 3 // 1000)
    while len(lookups) < count:
        lookups.add("".join(rng.choices(ALPHABET, k=receipt_keys.LOOKUP_LENGTH)))
    rows = []
    for lookup in sorted(lookups):
        created = NOW - timedelta(days=rng.uniform(0, days))
        finished = created < NOW - timedelta(days=14)
        category = rng.choice(aid.CATEGORIES)
        rows.append({"receipt_lookup": lookup, "poster_key": rng.randbytes(32),
                     "kind": aid.OFFER if rng.random() < 0.6 else aid.ASK, "category": category,
                     "text": f"{aid.CATEGORY_LABELS[category]}: evenings, ask at the bench",
                     "area_id": rng.choice(area_ids), "status": aid.LAPSED if finished else aid.OPEN,
                     "created_at": created,
                     "available_until": created + timedelta(days=7) if finished else NOW + timedelta(days=7),
                     "closed_at": created + timedelta(days=7) if finished else None})
    # Text and contact are sealed for the host's eyes (the ORM seals them; Core insert does not).
    vaults = dict(sealing._sealed_columns(aid.AidPost))
    sealed_once: dict[tuple[str, str], str] = {}
    for row in rows:
        for name, vault in vaults.items():
            value = row.get(name)
            if isinstance(value, str):
                if (vault, value) not in sealed_once:
                    sealed_once[vault, value] = sealing.seal(session, vault, value)
                row[name] = sealed_once[vault, value]
    session.execute(insert(aid.AidPost), rows)
    return len(rows)


# -- measuring ----------------------------------------------------------------


@dataclass
class LockWatch:
    """Every write-lock hold on the engine: BEGIN IMMEDIATE to commit or rollback, in ms."""

    holds: list[float] = field(default_factory=list)

    def attach(self, engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _begin(conn, _cursor, statement, *_args):
            if statement.lstrip().upper().startswith("BEGIN IMMEDIATE"):
                conn.info["lock_taken"] = time.perf_counter()

        def _end(conn):
            taken = conn.info.pop("lock_taken", None)
            if taken is not None:
                self.holds.append((time.perf_counter() - taken) * 1000)

        event.listen(engine, "commit", _end)
        event.listen(engine, "rollback", _end)

    def take(self) -> list[float]:
        holds, self.holds = self.holds, []
        return holds


def run_once(app, job) -> tuple[float, str]:
    """One run of ``job`` as the worker runs it: its own transaction (or its own batches), then the session gone."""
    started = time.perf_counter()
    with app.app_context():
        now = app.config["CLOCK"]()
        try:
            if getattr(job, "in_transaction", True):
                outcome = run_in_transaction(db.session, lambda session: job.run(session, now, app.config))
            else:
                outcome = job.run(db.session, now, app.config)
        finally:
            db.session.remove()
    return (time.perf_counter() - started) * 1000, str(outcome)


@dataclass
class Figures:
    median_ms: dict[str, float] = field(default_factory=dict)
    lock_ms: dict[str, float] = field(default_factory=dict)  # the longest hold in the steady-state runs
    lock_median_ms: dict[str, float] = field(default_factory=dict)
    first_ms: dict[str, float] = field(default_factory=dict)  # the first run, with the seed's backlog
    first_transactions: dict[str, int] = field(default_factory=dict)
    first_lock_ms: dict[str, float] = field(default_factory=dict)
    first_lock_median_ms: dict[str, float] = field(default_factory=dict)
    first_left_more: dict[str, bool] = field(default_factory=dict)
    backlog: int = 0  # log entries past the retention the first run of expire-patrol-log did not reach


def fast_forward(path: Path, keep_days: float) -> int:
    """What the retention's later hourly runs would do, in one raw statement: the steady state of a hub
    that has run for years (shifts past the retention deleted, their entries reduced). Returns the entries."""
    cutoff = stamp(NOW - timedelta(days=keep_days))
    with sqlite3.connect(path) as connection:
        reduced = connection.execute(
            "UPDATE log_entry SET member_id = NULL, shift_id = NULL, note = NULL, place = NULL WHERE at < ? AND "
            "(member_id IS NOT NULL OR shift_id IS NOT NULL OR note IS NOT NULL OR place IS NOT NULL)",
            (cutoff,)).rowcount
        connection.execute("DELETE FROM shift WHERE ended_at < ?", (cutoff,))
    return reduced


@dataclass
class Hub:
    """One seeded size, its app and what is measured on it."""

    seed: Seed
    app: object
    clock: FakeClock
    watch: LockWatch
    jobs: list
    pages: list[str]
    figures: Figures = field(default_factory=Figures)
    times: dict[str, list[float]] = field(default_factory=dict)
    holds: dict[str, list[float]] = field(default_factory=dict)
    client: object = None


def first_runs(seed_: Seed, skip: frozenset[str]) -> Hub:
    """The first run of every job after the upgrade, then the fast-forward to the steady state."""
    from server.scheduler import JOBS

    clock = FakeClock(NOW)
    app = make_hub(seed_.path, clock)
    hub = Hub(seed_, app, clock, LockWatch(), [job for job in JOBS if job.name not in skip],
              [page for page in PAGES if page not in skip])
    with app.app_context():
        hub.watch.attach(db.engine)
    figures = hub.figures
    # A job with a backlog works in short batches for its run's budget (server/scheduler.py
    # RUN_BUDGET_S) and leaves the rest to its next runs.
    for job in hub.jobs:
        elapsed, outcome = run_once(app, job)
        holds = hub.watch.take()
        figures.first_ms[job.name], figures.first_transactions[job.name] = elapsed, len(holds)
        figures.first_lock_ms[job.name] = max(holds, default=0.0)
        figures.first_lock_median_ms[job.name] = statistics.median(holds) if holds else 0.0
        figures.first_left_more[job.name] = "more next run" in outcome
    with app.app_context():
        db.engine.dispose()
    figures.backlog = fast_forward(seed_.path / "safebench.db", float(app.config["LOG_NOTE_RETENTION_DAYS"]))
    hub.client = app.test_client()
    response = login(hub.client, "Hostess")
    assert response.status_code == 200, response.status_code
    return hub


def steady_round(hub: Hub, counted: bool) -> None:
    """Every job once, the clock a minute on, then every page once; ``counted`` False: a warm-up round."""
    hub.clock.advance(minutes=1)
    for job in hub.jobs:
        elapsed, _outcome = run_once(hub.app, job)
        holds = hub.watch.take()
        if counted:
            hub.times.setdefault(job.name, []).append(elapsed)
            hub.holds.setdefault(job.name, []).extend(holds)
    previous = lunar.previous(lunar.cycle_at(hub.clock())).number
    for page in hub.pages:
        started = time.perf_counter()
        response = hub.client.get(page.format(previous=previous))
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{page} answered {response.status_code} at {hub.seed.log_rows} rows")
        response.close()
        if counted:
            hub.times.setdefault(f"page {page.split('{')[0]}", []).append(elapsed)
    hub.watch.take()


def finish(hub: Hub) -> Figures:
    for name, times in hub.times.items():
        hub.figures.median_ms[name] = statistics.median(times)
    for name, holds in hub.holds.items():
        hub.figures.lock_median_ms[name] = statistics.median(holds) if holds else 0.0
        hub.figures.lock_ms[name] = max(holds, default=0.0)
    with hub.app.app_context():
        db.engine.dispose()
    return hub.figures


# -- the table ----------------------------------------------------------------


def size_label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows >= 1_000_000 and rows % 1_000_000 == 0 else f"{rows // 1000}k"


def print_tables(sizes: list[int], results: dict[int, Figures], seeds: dict[int, Seed], runs: int) -> None:
    first, last = sizes[0], sizes[-1]
    names = list(results[first].median_ms)
    width = max(len(name) for name in names) + 2
    print()
    print("Seeds: " + "; ".join(f"{size_label(s)}: {seeds[s].log_rows:,} log rows, {seeds[s].shifts:,} shifts, "
                                f"{seeds[s].alerts:,} alerts, {seeds[s].cases:,} cases, "
                                f"{seeds[s].aid_posts:,} aid posts ({seeds[s].seconds:.0f} s)" for s in sizes))
    print()
    print(f"Steady state: median ms of {runs} runs (write-lock hold, ms: median/longest)")
    header = "".join(f"{size_label(s):>22}" for s in sizes)
    print(f"{'':<{width}}{header}{'ratio ' + size_label(last) + '/' + size_label(first):>14}")
    missed = []
    for name in names:
        cells = ""
        for size in sizes:
            figures = results[size]
            lock = figures.lock_ms.get(name)
            cells += f"{figures.median_ms[name]:>9.1f}" + (
                f" ({figures.lock_median_ms[name]:>4.1f}/{lock:>5.1f})" if lock is not None else " " * 13)
            if lock is not None and lock > LOCK_AIM_MS:
                missed.append(f"{name} at {size_label(size)}: {lock:.1f} ms")
        ratio = results[last].median_ms[name] / max(results[first].median_ms[name], 0.01)
        print(f"{name:<{width}}{cells}{ratio:>14.2f}")
    print()
    print("The first run after the upgrade (the seed's years of backlog): ms, write transactions, "
          "median / longest write-lock hold ms; + = work left for the next runs")
    print(f"{'':<{width}}" + "".join(f"{size_label(s):>24}" for s in sizes))
    for name in results[first].first_ms:
        cells = ""
        for size in sizes:
            figures = results[size]
            lock = figures.first_lock_ms[name]
            cells += (f"{figures.first_ms[name]:>7.0f} {figures.first_transactions[name]:>4}"
                      f" {figures.first_lock_median_ms[name]:>5.1f}/{lock:<5.1f}"
                      f"{'+' if figures.first_left_more[name] else ' '}")
            if lock > LOCK_AIM_MS:
                missed.append(f"{name}, first run at {size_label(size)}: {lock:.1f} ms")
        print(f"{name:<{width}}{cells}")
    print("Log entries past the retention left after that first run (fast-forwarded before the steady state): "
          + ", ".join(f"{size_label(s)}: {results[s].backlog:,}" for s in sizes))
    print()
    print(f"Longest write-lock hold aim: {LOCK_AIM_MS} ms: " + ("ok" if not missed else "MISSED: " + "; ".join(missed)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="log rows per seed, comma-separated")
    parser.add_argument("--runs", type=int, default=7, help="steady-state rounds: runs of each job and page per size")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases")
    parser.add_argument("--skip", default="", help="jobs or pages to leave out, comma-separated (e.g. checkpoint,/)")
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    logging.basicConfig(level=logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="safebench-growth-"))
    seeds: dict[int, Seed] = {}
    results: dict[int, Figures] = {}
    skip = frozenset(filter(None, args.skip.split(",")))
    hubs: dict[int, Hub] = {}
    try:
        # A first, discarded hub on a small seed: imports, first queries and templates are not the 1k figure.
        steady_round(first_runs(seed(folder / "warm-up", 1_000), skip), counted=False)
        for size in sizes:
            seeds[size] = seed(folder, size)
            print(f"seeded {size_label(size)} in {seeds[size].seconds:.1f} s; first runs", flush=True)
            hubs[size] = first_runs(seeds[size], skip)
        # The steady state in rounds that go through every size in turn: the shared machine's noise
        # falls on all sizes alike, not on whichever size was measured while a neighbour was busy.
        print(f"steady state: {args.runs} rounds (and one not counted) through every size", flush=True)
        for number in range(args.runs + 1):
            for size in sizes:
                steady_round(hubs[size], counted=number > 0)
        results = {size: finish(hub) for size, hub in hubs.items()}
        print_tables(sizes, results, seeds, args.runs)
    finally:
        if args.keep:
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
