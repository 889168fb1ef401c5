"""How fast the bench page answers, compared with the smallest Flask page.

Seeds a fresh instance with weeks of patrol log and a full aid board, times
the uncached page in this process (the view's time split into SQL, the
SQLAlchemy/Python around it and the template), then runs the real
``safebench serve`` (waitress, as it ships) and a one-page Flask app under
the same waitress settings, drives both with the same load in alternating
runs (hub, baseline, hub, baseline...), and prints each run's ratio, their
spread, p50/p95 on both sides, page weight and the hub's memory. Run it from
the repository root::

    .venv/bin/python tests/benchmarks/bench_page.py [--quick] [--runs N]

The figure to watch is the median ratio: a crowd that scans the QR code at
once should find the bench page nearly as fast as a page that does nothing."""

from __future__ import annotations

import argparse
import functools
import http.client
import logging
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.orm import Session

from server import config, create_app
from server.clock import utcnow
from server.domain import aid, compact, patrol, people, receipt_keys, sealing
from server.domain.codes import ALPHABET
from server.extensions import db
from server.migrating import apply_migrations

# Aims, printed next to the figures.
RATIO_AIM = 0.7  # issue 14: the median of the alternating runs' ratios
PAGE_BUDGET_BYTES = 30_000  # HTML + CSS of the bench page; 1 KB = 1,000 bytes here
RSS_AIM_MB = 80
UNCACHED_AIM_MS = 2.0  # the view's own time for one uncached page at 20k log rows (issue 14)

WAITRESS_THREADS = config.DEFAULTS["WEB_THREADS"]  # the hub's default, given to the baseline too
START_TIMEOUT_S = 30

BASELINE_APP = """
import sys
from flask import Flask
from waitress import serve

app = Flask("baseline")


@app.get("/")
def index():
    return "<!doctype html><title>ok</title><p>ok</p>"


serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), ident="baseline")
"""

AREAS = ("Market", "Elm Street", "Riverside", "Station", "Park", "School Lane", "Canal")
BIRDS = ("Kestrel", "Heron", "Wren", "Robin", "Magpie", "Swift", "Finch", "Owl", "Lark", "Plover", "Jay", "Rook")
PRIVATE_PLACES = ("12 Elm St", "behind the laundrette", "bus stop 4", "the underpass", "corner shop")
CHECK_IN_NOTES = (None, None, None, "all quiet", "lent a charger", "chatted with the night bus driver")
INCIDENTS = (
    "loud argument outside the kebab shop, calmed down",
    "broken glass on the pavement, swept up",
    "someone lost and upset, walked them to the station",
    "car alarm going off for 20 min",
    "two people pushing each other, talked them apart",
)


# -- seeding ------------------------------------------------------------------


@dataclass
class Seeded:
    log_entries: int = 0
    shifts: int = 0
    open_shifts: int = 0
    stewards: int = 0
    aid_posts: int = 0
    open_posts: int = 0


def seed(instance: Path, log_entries: int, aid_posts: int, stewards: int, weeks: int,
         now: datetime | None = None) -> Seeded:
    """Fill a fresh instance through the models, in bulk, up to ``now`` (the wall clock by default); not measured."""
    rng = random.Random(2026)
    now = now or utcnow()
    # The database is pinned too: a SAFEBENCH_DATABASE_URL in the environment must not receive the seed.
    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    apply_migrations(app)
    counts = Seeded()
    with app.app_context():
        session = db.session
        area_ids = [patrol.add_area(session, name).id for name in AREAS]
        member_ids = _seed_stewards(session, rng, now, stewards)
        counts.stewards = len(member_ids)
        counts.shifts, counts.open_shifts, counts.log_entries = _seed_patrols(
            session, rng, now, member_ids, area_ids, log_entries, weeks
        )
        counts.aid_posts, counts.open_posts = _seed_aid(session, rng, now, area_ids, aid_posts, weeks)
        # Signed on the compact's first text, which the first signature keeps as version 1.
        first = compact.sign(session, now - timedelta(hours=119), "neighbour 119", compact.FIRST_NUMBER).version
        session.execute(
            insert(compact.CompactSignature),
            sealed(session, compact.CompactSignature,
                   [{"mark": f"neighbour {i}", "signed_at": now - timedelta(hours=i), "version_id": first.id}
                    for i in range(119)]),
        )
        session.commit()
        session.remove()
        db.engine.dispose()
    return counts


def sealed(session: Session, model: type, rows: list[dict]) -> list[dict]:
    """Bulk rows stored as the ORM stores them: what people wrote, sealed (server/domain/sealing.py).

    Each distinct text is sealed once and its sealed value reused: a seeding
    shortcut (the hub seals every value afresh), the same size on disk.
    """
    vaults = dict(sealing._sealed_columns(model))
    done: dict[tuple[str, str], str] = {}
    for row in rows:
        for name, vault in vaults.items():
            value = row.get(name)
            if isinstance(value, str) and not sealing.is_sealed(value):
                if (vault, value) not in done:
                    done[vault, value] = sealing.seal(session, vault, value)
                row[name] = done[vault, value]
    return rows


def _seed_stewards(session: Session, rng: random.Random, now: datetime, count: int) -> list[int]:
    nodes = rng.sample(range(0x10000000, 0xF0000000), count)
    rows = [
        {
            "id": i + 1,
            "handle": f"{BIRDS[i % len(BIRDS)]}{'' if i < len(BIRDS) else i // len(BIRDS) + 1}",
            "node_num": nodes[i],
            "created_at": now - timedelta(days=90),
        }
        for i in range(count)
    ]
    for row in rows:
        row["handle_key"] = row["handle"].lower()
    session.execute(insert(people.Member), rows)
    session.execute(
        insert(people.RoleAssignment),
        [
            {
                "member_id": row["id"],
                "role": people.STEWARD,
                "granted_at": now - timedelta(days=10),
                "expires_at": now + timedelta(days=18),
                "decision": "assembly, spring",
            }
            for row in rows
        ],
    )
    return [row["id"] for row in rows]


def _seed_patrols(
    session: Session,
    rng: random.Random,
    now: datetime,
    member_ids: list[int],
    area_ids: list[int],
    total: int,
    weeks: int,
) -> tuple[int, int, int]:
    """Shifts of two to four hours, a check-in every 15-30 minutes, the odd incident."""
    shifts: list[dict] = []
    entries: list[dict] = []

    def place_and_area() -> tuple[str | None, int | None]:
        roll = rng.random()
        if roll < 0.7:
            index = rng.randrange(len(AREAS))
            return f"{AREAS[index]} {rng.choice(('north', 'west', 'corner', ''))}".strip(), area_ids[index]
        if roll < 0.9:
            return rng.choice(PRIVATE_PLACES), None
        return None, None

    def add_shift(member_id: int, start: datetime, end: datetime | None) -> None:
        shift_id = len(shifts) + 1
        place, area_id = place_and_area()
        shifts.append(
            {
                "id": shift_id,
                "member_id": member_id,
                "area_id": area_id,
                "place": place,
                "started_at": start,
                "ended_at": end,
            }
        )
        common = {"member_id": member_id, "shift_id": shift_id, "area_id": area_id, "place": place}
        source = patrol.SOURCE_RADIO if rng.random() < 0.85 else patrol.SOURCE_WEB
        entries.append({**common, "at": start, "kind": patrol.SHIFT_START, "note": None, "source": source})
        moment = start + timedelta(minutes=rng.randint(15, 30))
        stop = end or now
        while moment < stop:
            if rng.random() < 0.08:
                entries.append(
                    {**common, "at": moment, "kind": patrol.INCIDENT, "note": rng.choice(INCIDENTS), "source": source}
                )
            else:
                entries.append(
                    {
                        **common,
                        "at": moment,
                        "kind": patrol.CHECK_IN,
                        "note": rng.choice(CHECK_IN_NOTES),
                        "source": source,
                    }
                )
            moment += timedelta(minutes=rng.randint(15, 30), seconds=rng.randint(0, 59))
        if end is not None:
            entries.append({**common, "at": end, "kind": patrol.SHIFT_END, "note": None, "source": source})

    # A few stewards out right now, and weeks of evenings behind them.
    on_patrol = rng.sample(member_ids, 4)
    for member_id in on_patrol:
        add_shift(member_id, now - timedelta(minutes=rng.randint(20, 150)), None)
    open_shift_count = len(shifts)
    while len(entries) < total:
        day = now - timedelta(days=rng.randint(2, weeks * 7))
        start = day.replace(hour=rng.choice((17, 18, 19, 20, 21, 22)), minute=rng.randrange(60))
        add_shift(rng.choice(member_ids), start, start + timedelta(minutes=rng.randint(120, 240)))

    entries.sort(key=lambda row: row["at"])
    entries = entries[-total:]  # the oldest shift may start before the log does, as after a purge
    for row in entries:
        row["public"] = rng.random() > 0.01  # the host withdraws the odd entry
    session.execute(insert(patrol.Shift), shifts)
    session.execute(insert(patrol.LogEntry), sealed(session, patrol.LogEntry, entries))
    return len(shifts), open_shift_count, len(entries)


def _seed_aid(
    session: Session,
    rng: random.Random,
    now: datetime,
    area_ids: list[int],
    total: int,
    weeks: int,
) -> tuple[int, int]:
    """Mostly open posts, some lapsed, a few taken up or withdrawn."""
    # Posts made here never answer a receipt code: the page reads none, so a random lookup and
    # key stand in for what Argon2id would make of one (each a 32 MiB run on a real post).
    lookups: set[str] = set()
    while len(lookups) < total:
        lookups.add("".join(rng.choices(ALPHABET, k=receipt_keys.LOOKUP_LENGTH)))
    rows = []
    open_count = 0
    for lookup in sorted(lookups):
        created = now - timedelta(days=rng.uniform(0, weeks * 7))
        roll = rng.random()
        if roll < 0.75:
            status, closed = aid.OPEN, None
            until = now + timedelta(days=rng.uniform(0.5, 14))
            open_count += 1
        elif roll < 0.92:
            until = created + timedelta(days=rng.randint(1, 7))
            until = min(until, now - timedelta(hours=1))
            status, closed = aid.LAPSED, until
        else:
            status = rng.choice(aid.POSTER_CLOSINGS)
            until = created + timedelta(days=7)
            closed = min(created + timedelta(days=rng.uniform(0.1, 3)), now)
        category = rng.choice(aid.CATEGORIES)
        rows.append(
            {
                "receipt_lookup": lookup,
                "poster_key": rng.randbytes(32),
                "kind": aid.OFFER if rng.random() < 0.6 else aid.ASK,
                "category": category,
                "text": f"{aid.CATEGORY_LABELS[category]}: {rng.choice(('evenings', 'weekends', 'any time'))}, "
                f"ask at the bench (post {len(rows) + 1})",
                "area_id": rng.choice(area_ids) if rng.random() < 0.8 else None,
                "contact": "via the host" if rng.random() < 0.5 else None,
                "status": status,
                "created_at": created,
                "available_until": until,
                "closed_at": closed,
            }
        )
    rows.sort(key=lambda row: row["created_at"])
    session.execute(insert(aid.AidPost), sealed(session, aid.AidPost, rows))
    return len(rows), open_count


# -- the app's own time, uncached ---------------------------------------------


PARTS = ("request", "view", "sql", "template", "rest", "baseline")


@dataclass
class Breakdown:
    """Milliseconds per uncached bench page, medians over the renders, on two clocks.

    ``wall`` is time.perf_counter (what a visitor waits, the CPU's queue on a
    busy machine included); ``cpu`` is time.thread_time, the CPU this thread
    spent (SQLite runs in the calling thread), which other processes on the
    machine barely move. Parts, each a {part: ms} dict:
    request  the whole request through Flask (test client), hooks and headers included
    view     the view function: the app's time for the page
    sql      inside the driver, from cursor execute to its return (sqlite3 itself)
    template Jinja rendering, less any SQL run from inside it
    rest     the rest of the view: SQLAlchemy around the statements, reading rows, the view's own code
    baseline a one-page Flask app's request through its test client, in the same rounds
    """

    rounds: int
    statements: int  # SQL statements per page
    wall: dict[str, float]
    cpu: dict[str, float]


def app_time_breakdown(instance: Path, rounds: int) -> Breakdown:
    """Render the bench page ``rounds`` times with the cache off, in this process, timing each part.

    SQL is timed with SQLAlchemy's before/after_cursor_execute events, the
    template with Flask's before_render_template/template_rendered signals,
    the view by wrapping the view function; what remains of the view is
    SQLAlchemy's and the page's own Python (the ORM's, before issue 14).
    Each round also asks a one-page Flask app for its page, as a yardstick
    of how fast the machine is being at that moment.
    """
    from flask import Flask, before_render_template, template_rendered
    from sqlalchemy import event

    app = create_app({
        "INSTANCE": instance,
        "DATABASE_URL": config.default_database_uri(instance),
        "CACHE_TYPE": "NullCache",
        "CACHE_NO_NULL_WARNING": True,
        "RATELIMIT_ENABLED": False,
    })
    bare = Flask("baseline")
    bare.add_url_rule("/", "index", lambda: "<!doctype html><title>ok</title><p>ok</p>")

    def clocks() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    zero = (0.0, 0.0)
    spent: dict[str, tuple[float, float]] = {}
    marks: dict[str, tuple[float, float]] = {}
    state = {"in_template": False, "statements": 0}

    def add(part: str, since: tuple[float, float]) -> tuple[float, float]:
        wall, cpu = clocks()
        took = (wall - since[0], cpu - since[1])
        before = spent.get(part, zero)
        spent[part] = (before[0] + took[0], before[1] + took[1])
        return took

    def before_cursor(*_args: object) -> None:
        marks["sql"] = clocks()

    def after_cursor(*_args: object) -> None:
        took = add("sql", marks["sql"])
        state["statements"] += 1
        if state["in_template"]:
            before = spent.get("sql_in_template", zero)
            spent["sql_in_template"] = (before[0] + took[0], before[1] + took[1])

    def template_begins(*_args: object, **_kwargs: object) -> None:
        state["in_template"] = True
        marks["template"] = clocks()

    def template_ends(*_args: object, **_kwargs: object) -> None:
        state["in_template"] = False
        add("template", marks["template"])

    view = app.view_functions["bench.index"]

    @functools.wraps(view)  # keeps its marks: who may open it (web/access.py), that it is read-only
    def timed_view(*args: object, **kwargs: object) -> object:
        started = clocks()
        try:
            return view(*args, **kwargs)
        finally:
            add("view", started)

    app.view_functions["bench.index"] = timed_view
    rows: dict[str, list[tuple[float, float]]] = {part: [] for part in PARTS}
    statements = 0
    with app.app_context():
        engine = db.engine
        event.listen(engine, "before_cursor_execute", before_cursor)
        event.listen(engine, "after_cursor_execute", after_cursor)
        before_render_template.connect(template_begins, app)
        template_rendered.connect(template_ends, app)
        try:
            client, bare_client = app.test_client(), bare.test_client()
            for round_ in range(rounds + 20):  # the first 20 warm the statement and template caches
                spent.clear()
                state["statements"] = 0
                started = clocks()
                response = client.get("/")
                add("request", started)
                if response.status_code != 200:
                    raise SystemExit(f"the uncached bench page answered {response.status_code}")
                started = clocks()
                bare_client.get("/")
                add("baseline", started)
                if round_ < 20:
                    continue
                statements = state["statements"]
                in_template = spent.get("sql_in_template", zero)
                sql = spent.get("sql", zero)
                template = tuple(t - s for t, s in zip(spent["template"], in_template))
                rest = tuple(v - q - t for v, q, t in zip(spent["view"], sql, template))
                found = {"request": spent["request"], "view": spent["view"], "sql": sql, "template": template,
                         "rest": rest, "baseline": spent["baseline"]}
                for part in PARTS:
                    rows[part].append(found[part])
        finally:
            event.remove(engine, "before_cursor_execute", before_cursor)
            event.remove(engine, "after_cursor_execute", after_cursor)
            before_render_template.disconnect(template_begins, app)
            template_rendered.disconnect(template_ends, app)
            db.session.remove()
            engine.dispose()
    return Breakdown(
        rounds=rounds,
        statements=statements,
        wall={part: statistics.median(wall for wall, _cpu in values) * 1000 for part, values in rows.items()},
        cpu={part: statistics.median(cpu for _wall, cpu in values) * 1000 for part, values in rows.items()},
    )


def print_breakdown(found: Breakdown) -> None:
    wall, cpu = found.wall, found.cpu

    def line(label: str, part: str, note: str = "") -> str:
        return f"  {label:<38} {wall[part]:6.2f} {cpu[part]:6.2f}  {note}\n"

    share = cpu["sql"] / cpu["view"] if cpu["view"] else 0.0
    verdict = "ok" if wall["view"] <= UNCACHED_AIM_MS else "MISSED"
    print(
        f"uncached bench page, app time (median of {found.rounds} renders, cache off, in-process),\n"
        f"  ms per page:                            wall    CPU\n"
        + line("view (the app's time for the page)", "view", f"aim <= {UNCACHED_AIM_MS} ms (wall): {verdict}")
        + line("  SQL in sqlite3", "sql", f"{found.statements} statements, {share:.0%} of the view's CPU")
        + line("  SQLAlchemy + Python around it", "rest", "the ORM's share before issue 14")
        + line("  template (Jinja)", "template")
        + line("whole request through Flask", "request", "test client: hooks, session, headers")
        + line("one-page Flask app, same rounds", "baseline", "yardstick: how fast the machine is now")
        + f"  uncached page / one-page Flask request: {wall['request'] / wall['baseline']:.1f}x wall, "
        f"{cpu['request'] / cpu['baseline']:.1f}x CPU",
        flush=True,
    )


# -- servers ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = fetch(self.port, "/")
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200:
                return
            raise SystemExit(f"{self.name} answered / with {status}:\n{self.log_tail()}")
        raise SystemExit(f"{self.name} did not answer within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM from /proc (Linux), in kB."""
        found = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0])
        return found

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(name: str, argv: list[str], port: int, env: dict[str, str], workdir: Path) -> Server:
    log_path = workdir / f"{name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Server(name, process, port, log_path)


def safebench_command() -> list[str]:
    """The installed ``safebench`` script next to this Python, as a bench runs it."""
    script = Path(sys.executable).with_name("safebench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server"]


# -- load ---------------------------------------------------------------------


def fetch(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def run_load(port: int, path: str, total: int, concurrency: int, max_seconds: float,
             headers: dict[str, str] | None = None) -> LoadResult:
    """``concurrency`` keep-alive clients share ``total`` requests, stopping early at ``max_seconds``."""
    result = LoadResult()
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + max_seconds

    def take() -> bool:
        nonlocal issued
        with lock:
            if issued >= total or time.monotonic() > deadline:
                return False
            issued += 1
            return True

    def client() -> None:
        latencies, errors = [], 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while take():
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers or {})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors += 1
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                continue
            latencies.append(time.perf_counter() - started)
        conn.close()
        with lock:
            result.latencies.extend(latencies)
            result.errors += errors

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max_seconds + 30)
    result.seconds = time.perf_counter() - began
    result.requests = len(result.latencies)
    return result


def anonymous_session_cookie(port: int) -> str:
    """The session cookie a neighbour's phone keeps after opening a form (it holds the form's CSRF secret)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/mediation/new")
        response = conn.getresponse()
        response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("session="):
                return value.split(";", 1)[0]
    finally:
        conn.close()
    raise SystemExit("the hub set no session cookie on /mediation/new")


def stylesheets(html: str) -> list[str]:
    """The href of every ``<link rel="stylesheet">`` in a page."""
    links = [dict(re.findall(r'([\w-]+)\s*=\s*"([^"]*)"', tag)) for tag in re.findall(r"<link\b[^>]*>", html)]
    return [link["href"] for link in links if "stylesheet" in link.get("rel", "").split() and "href" in link]


def page_weight(port: int) -> tuple[int, int]:
    """Bytes of the bench page's HTML, and of the stylesheets it links."""
    status, html = fetch(port, "/")
    if status != 200:
        raise SystemExit(f"the bench page answered {status}")
    css = 0
    for href in stylesheets(html.decode()):
        status, body = fetch(port, href)
        if status != 200:
            raise SystemExit(f"the stylesheet {href} answered {status}")
        css += len(body)
    return len(html), css


# -- the run ------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-cache", action="store_true", help="render the bench page on every request (SAFEBENCH_CACHE_TYPE=NullCache)")
    parser.add_argument("--quick", action="store_true", help="a small seed and a short run, as a smoke check")
    parser.add_argument("--runs", type=int, default=5,
                        help="alternating measured runs, hub then baseline, each pair giving one ratio (default 5)")
    parser.add_argument("--requests", type=int, help="measured requests per server and run (default 4000, quick 400)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent keep-alive clients (default 8)")
    parser.add_argument(
        "--max-seconds", type=float, default=40.0, help="stop each measured run after this long (default 40)"
    )
    parser.add_argument("--renders", type=int, help="uncached renders timed in-process for the breakdown "
                        "(default 300, quick 50; 0 skips it)")
    parser.add_argument("--cookie", action="store_true",
                        help="every client sends an anonymous session cookie (as after opening a form): "
                             "the hub reads it for a login or a message before answering in front of Flask")
    parser.add_argument("--keep", action="store_true", help="keep the temporary instance folder and server logs")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 400 if args.quick else 4000
    if args.renders is None:
        args.renders = 50 if args.quick else 300
    if args.requests < 1 or args.concurrency < 1 or args.max_seconds <= 0 or args.runs < 1 or args.renders < 0:
        parser.error("--requests, --concurrency, --max-seconds and --runs must be positive (--renders may be 0)")
    args.log_entries, args.aid_posts = (2_000, 200) if args.quick else (20_000, 2_000)
    args.warmup = max(args.concurrency * 10, args.requests // 10)
    return args


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, {os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Warnings only: with a handler in place the migrations keep quiet about each step.
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="safebench-bench-"))
    servers: list[Server] = []
    print(f"machine at the start: {load_average()}", flush=True)
    try:
        instance = workdir / "instance"
        began = time.perf_counter()
        seeded = seed(instance, args.log_entries, args.aid_posts, stewards=36, weeks=8)
        print(
            f"seeded in {time.perf_counter() - began:.1f} s: {seeded.log_entries} log entries "
            f"({seeded.shifts} shifts, {seeded.open_shifts} open), {seeded.stewards} stewards, "
            f"{seeded.aid_posts} aid posts ({seeded.open_posts} open)",
            flush=True,
        )
        if args.renders:
            print_breakdown(app_time_breakdown(instance, args.renders))

        env = {key: value for key, value in os.environ.items() if not key.startswith(f"{config.ENV_PREFIX}_")}
        env[f"{config.ENV_PREFIX}_INSTANCE"] = str(instance)
        if args.no_cache:
            env[f"{config.ENV_PREFIX}_CACHE_TYPE"] = "NullCache"
        hub_port, baseline_port = free_port(), free_port()
        hub = start_server(
            "hub",
            [*safebench_command(), "serve", "--host", "127.0.0.1", "--port", str(hub_port)],
            hub_port,
            env,
            workdir,
        )
        servers.append(hub)
        baseline = start_server(
            "baseline",
            [sys.executable, "-c", BASELINE_APP, str(baseline_port), str(WAITRESS_THREADS)],
            baseline_port,
            env,
            workdir,
        )
        servers.append(baseline)
        hub.wait_until_up()
        baseline.wait_until_up()
        hub_idle = hub.memory_kb()

        html_bytes, css_bytes = page_weight(hub.port)
        print(
            f"load: {args.runs} alternating runs (hub, baseline, hub, baseline...) of {args.requests} requests per "
            f"server, {args.concurrency} keep-alive clients, {args.warmup} warm-up requests each first, "
            f"waitress threads={WAITRESS_THREADS}{', cache off' if args.no_cache else ''}"
            f"{', an anonymous session cookie on every request' if args.cookie else ''}",
            flush=True,
        )
        headers = {"Cookie": anonymous_session_cookie(hub.port)} if args.cookie else None
        for server in (hub, baseline):
            run_load(server.port, "/", args.warmup, args.concurrency, args.max_seconds, headers)
        runs: list[Run] = []
        for number in range(1, args.runs + 1):
            hub_run = run_load(hub.port, "/", args.requests, args.concurrency, args.max_seconds, headers)
            baseline_run = run_load(baseline.port, "/", args.requests, args.concurrency, args.max_seconds, headers)
            runs.append(Run(hub_run, baseline_run))
            print_run(number, runs[-1])
        hub_memory, baseline_memory = hub.memory_kb(), baseline.memory_kb()
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    return report(runs, html_bytes, css_bytes, hub_idle, hub_memory, baseline_memory)


@dataclass
class Run:
    hub: LoadResult
    baseline: LoadResult

    @property
    def ratio(self) -> float:
        return self.hub.per_second / self.baseline.per_second if self.baseline.per_second else 0.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def print_run(number: int, run: Run) -> None:
    print(
        f"run {number}: ratio {run.ratio:.2f}   hub {run.hub.per_second:7.1f} req/s "
        f"p50 {ms(run.hub.percentile(0.5))} p95 {ms(run.hub.percentile(0.95))} ms   "
        f"baseline {run.baseline.per_second:7.1f} req/s "
        f"p50 {ms(run.baseline.percentile(0.5))} p95 {ms(run.baseline.percentile(0.95))} ms",
        flush=True,
    )


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """min / median / max."""
    return " / ".join(fmt.format(value) for value in (min(values), statistics.median(values), max(values)))


def report(
    runs: list[Run],
    html_bytes: int,
    css_bytes: int,
    hub_idle: dict[str, int],
    hub_memory: dict[str, int],
    baseline_memory: dict[str, int],
) -> int:
    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    ratios = [run.ratio for run in runs]
    ratio = statistics.median(ratios)
    page = html_bytes + css_bytes
    rss_mb, hwm_mb = hub_memory["VmRSS"] / 1024, hub_memory["VmHWM"] / 1024
    print()
    print(f"over {len(runs)} runs, min / median / max:")
    for name, side in (("baseline page", "baseline"), ("bench page /", "hub")):
        results = [getattr(run, side) for run in runs]
        print(
            f"  {name:<14} req/s {spread([r.per_second for r in results], '{:.0f}')}   "
            f"p50 {spread([r.percentile(0.5) * 1000 for r in results], '{:.1f}')} ms   "
            f"p95 {spread([r.percentile(0.95) * 1000 for r in results], '{:.1f}')} ms"
        )
    print(f"ratio bench/baseline   median {ratio:.2f}, spread {spread(ratios)} "
          f"(aim: median >= {RATIO_AIM})  {verdict(ratio >= RATIO_AIM)}")
    print(
        f"bench page size        HTML {html_bytes / 1000:.1f} KB, HTML+CSS {page / 1000:.1f} KB "
        f"(budget < {PAGE_BUDGET_BYTES / 1000:.0f} KB, 1 KB = 1000 bytes)  {verdict(page < PAGE_BUDGET_BYTES)}"
    )
    print(
        f"hub memory after runs  VmRSS {rss_mb:.1f} MB, VmHWM {hwm_mb:.1f} MB "
        f"(aim <= {RSS_AIM_MB} MB)  {verdict(hwm_mb <= RSS_AIM_MB)}"
    )
    print(f"hub memory before load VmRSS {hub_idle['VmRSS'] / 1024:.1f} MB (after its first page)")
    print(
        f"baseline memory        VmRSS {baseline_memory['VmRSS'] / 1024:.1f} MB, "
        f"VmHWM {baseline_memory['VmHWM'] / 1024:.1f} MB"
    )
    print(f"machine at the end: {load_average()}")
    if any(run.hub.errors or run.baseline.errors for run in runs):
        print("some requests failed: the figures above are not to be trusted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
