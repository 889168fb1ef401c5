"""What the live log stream costs: how fast entries reach watchers, and what it does to the bench page.

Seeds a fresh instance (as ``bench_page.py`` does), runs the real
``safebench serve`` (waitress, 4 threads, STREAM_SLOTS=2, as it ships), and
in the same run measures the bench page ``/`` three times, for the length of
a burst each: quiet; while a burst of check-ins is committed the way the
radio bridge commits them (another process, through the domain layer, one
transaction each); and during the same burst with 20 logged-in watchers on
``/host/live/events``. Each watcher reconnects as a browser's EventSource
does (``retry``, ``Last-Event-ID``) and must receive every check-in of the
burst exactly once, in order. ``--crowd`` is issue 14's crowd: 100 watchers
and 100 neighbours, each a phone of its own loading the bench page now and
then. Run it from the repository root::

    .venv/bin/python tests/benchmarks/stream.py [--quick] [--watchers 20] [--checkins 200] [--rate 50]
    .venv/bin/python tests/benchmarks/stream.py --crowd

Figures: commit-to-event delay at the watchers, p50/p95 (for the watchers
holding a stream and for those polling every second, and all together), the
bench page's latency p50/p95 with and without watchers, and their ratio, and
what the hub wrote to its log meanwhile. Every phone and watcher has its own
address on the loopback (127.0.1.N, 127.0.2.N), as on the bench WiFi, where
the hub caps connections per address. Everything runs on 127.0.0.1 and its
loopback and stops within a bounded time.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from html import unescape
from http.cookiejar import CookieJar
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urlencode

# This folder is on sys.path when the script runs: the seed and the load come from bench_page.py,
# the reading of the event stream from load.py.
from bench_page import (
    Server,
    free_port,
    run_load,
    safebench_command,
    seed,
    start_server,
)
from load import NEIGHBOUR_NET, WATCHER_NET, address, hang_up, stream_events
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import config, create_app
from server.clock import utcnow
from server.db import make_engine, run_in_transaction
from server.domain import mandates, patrol, people
from server.extensions import db

SCRIPT = "tests/benchmarks/stream.py"
HOST_HANDLE = "BenchHost"
HOST_PASSWORD = "benchmark host password"

# Aims, printed next to the figures.
DELAY_AIM_S = 1.0  # the issue: an entry is on the host's screen within a second
PAGE_RATIO_AIM = 2.0  # the bench page's p95 with watchers at most twice its p95 without
CROWD = 100  # --crowd: watchers, and neighbours on the bench page
WATCHER_DEADLINE_S = 15  # after the burst, every watcher must have everything within this


# -- the pieces that run in other processes -----------------------------------


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def commit_burst(database_url: str, count: int, rate: float, start_at: float) -> list[tuple[int, float]]:
    """``count`` check-ins at ``rate`` per second, each committed alone as the bridge commits a packet.

    Returns (entry id, wall-clock time the commit returned) for each.
    """
    engine = make_engine(database_url, 5000)
    committed = []
    try:
        with Session(engine) as session:
            steward_ids = list(session.scalars(select(people.Member.id).where(people.Member.node_num.is_not(None))))
        _sleep_until(start_at)
        for n in range(count):
            _sleep_until(start_at + n / rate)
            with Session(engine) as session:

                def work(session: Session, n: int = n) -> int:
                    steward = session.get(people.Member, steward_ids[n % len(steward_ids)])
                    return patrol.record_check_in(session, utcnow(), steward, patrol.SOURCE_RADIO, note=f"burst {n}").id

                entry_id = run_in_transaction(session, work)
            committed.append((entry_id, time.time()))
    finally:
        engine.dispose()
    return committed


def page_load(port: int, seconds: float, clients: int, start_at: float) -> tuple[list[float], int]:
    """Latencies of ``/`` from ``clients`` keep-alive clients asking back to back for ``seconds``."""
    _sleep_until(start_at)
    result = run_load(port, "/", total=10**9, concurrency=clients, max_seconds=seconds)
    return result.latencies, result.errors


def neighbours_load(port: int, seconds: float, neighbours: int, pause_s: float,
                    start_at: float) -> tuple[list[float], int]:
    """Latencies of ``/`` from ``neighbours`` phones, each on its own address, each pausing about
    ``pause_s`` (0.5-1.5 times that, at random) between one load of the page and the next."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def phone(n: int) -> None:
        nonlocal errors
        rng = random.Random(n)
        conn = None
        deadline = start_at + seconds
        _sleep_until(start_at + rng.uniform(0, pause_s))  # not all in the same instant
        while time.time() < deadline:
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                                      source_address=(address(NEIGHBOUR_NET, n), 0))
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took)
                    errors += response.status != 200
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with lock:
                    errors += 1
                hang_up(conn)
                conn = None
            time.sleep(pause_s * rng.uniform(0.5, 1.5))
        hang_up(conn)

    threads = [threading.Thread(target=phone, args=(n,), daemon=True) for n in range(1, neighbours + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return latencies, errors


# -- watchers: EventSource, by hand -------------------------------------------


@dataclass
class Watcher:
    """One host's browser on /host/live/events, in a thread of this process."""

    port: int
    cookie: str
    last_id: int
    source: str  # the phone's address
    received: list[tuple[int, float, bool]] = field(default_factory=list)  # id, arrival, on a held stream
    duplicates: int = 0
    responses: int = 0
    errors: int = 0
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    _conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        retry_s = 1.0
        conn = None
        while not self.stop.is_set():
            if conn is None:  # a browser keeps the connection for the next reconnection, as for any request
                conn = self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                                               source_address=(self.source, 0))
            batch: list[tuple[int, float]] = []
            retries: list[float] = []
            try:
                conn.request("GET", "/host/live/events", headers={
                    "Cookie": self.cookie, "Accept": "text/event-stream", "Last-Event-ID": str(self.last_id),
                })
                response = conn.getresponse()
                if response.status != 200:
                    self.errors += 1
                    response.read()
                    time.sleep(1)
                    continue
                self.responses += 1
                self.connected.set()
                for kind, value in stream_events(response):
                    if kind == "retry":
                        retry_s = value
                        retries.append(value)
                        continue
                    if kind == "event":
                        if value <= self.last_id:
                            self.duplicates += 1
                        batch.append((value, time.time()))
                    self.last_id = value
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if not self.stop.is_set():
                    self.errors += 1
                conn.close()
                conn = None
            finally:
                # A slotless answer has one retry (the half second); a held stream says it again, and
                # "come back at once" when it ends (or is still open when the run stops).
                held = len(retries) > 1 or (self.stop.is_set() and bool(retries))
                self.received.extend((entry_id, at, held) for entry_id, at in batch)
            if not self.stop.is_set():
                time.sleep(retry_s)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        hang_up(self._conn)


# -- the run ------------------------------------------------------------------


def add_host(instance: Path) -> int:
    """A host account to watch with; returns the newest log entry id."""
    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    with app.app_context():
        now = utcnow()
        host = people.add_member(db.session, now, HOST_HANDLE)
        people.set_password(host, HOST_PASSWORD)
        mandates.seat(db.session, now, host, people.HOST, decision=people.Decision(now.date(), "benchmark", "seed"),
                      term_days=28, cap_days=28, why="benchmark seed")
        db.session.commit()
        newest = patrol.recent_entries(db.session, limit=1)
        db.session.remove()
        db.engine.dispose()
    return newest[0].id if newest else 0


def log_in(port: int) -> str:
    """The session cookie of the host, logged in through the login form."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    with opener.open(base + "/login", timeout=10) as response:
        token = unescape(re.search(r'name="csrf_token"[^>]*value="([^"]+)"', response.read().decode()).group(1))
    form = urlencode({"handle": HOST_HANDLE, "password": HOST_PASSWORD, "csrf_token": token}).encode()
    with opener.open(base + "/login", data=form, timeout=10) as response:
        if "/host/" not in response.url:  # the dashboard, or wherever a host's login now lands
            raise SystemExit(f"could not log in as the host: ended on {response.url}")
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    name: str
    latencies: list[float]
    errors: int
    hub_cpu_s: float
    seconds: float
    watchers_cpu_s: float = 0.0  # this process, where the watchers run: a load generator on the same cores

    def line(self) -> str:
        return (f"bench page /, {self.name:<22} p50 {percentile(self.latencies, 0.5) * 1000:6.1f} ms, "
                f"p95 {percentile(self.latencies, 0.95) * 1000:6.1f} ms  ({len(self.latencies)} requests, "
                f"{self.errors} errors; hub CPU {self.hub_cpu_s / self.seconds:.0%} of a core, "
                f"watchers' {self.watchers_cpu_s / self.seconds:.0%})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small seed, 5 watchers, 50 check-ins: a smoke check")
    parser.add_argument("--watchers", type=int, help="logged-in watchers on the stream (default 20)")
    parser.add_argument("--checkins", type=int, help="check-ins in the burst (default 200)")
    parser.add_argument("--rate", type=float, default=50.0, help="check-ins per second in the burst (default 50)")
    parser.add_argument("--page-clients", type=int, default=2,
                        help="keep-alive clients on /, back to back (default 2; not with --neighbours)")
    parser.add_argument("--neighbours", type=int, default=0,
                        help="phones loading / now and then, each on its own address, instead of --page-clients")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="a neighbour's mean pause between two loads of /, in seconds (default 1)")
    parser.add_argument("--crowd", action="store_true",
                        help=f"issue 14's crowd: {CROWD} watchers and {CROWD} neighbours (unless given otherwise)")
    parser.add_argument("--no-cache", action="store_true",
                        help="render the bench page on every request (SAFEBENCH_CACHE_TYPE=NullCache)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary instance folder and server log")
    args = parser.parse_args(argv)
    if args.crowd:
        args.watchers = args.watchers or CROWD
        args.neighbours = args.neighbours or CROWD
    args.watchers = args.watchers or (5 if args.quick else 20)
    args.checkins = args.checkins or (50 if args.quick else 400 if args.crowd else 200)
    if min(args.watchers, args.checkins, args.page_clients) < 1 or not 0 < args.rate <= 500:
        parser.error("--watchers, --checkins and --page-clients must be positive, --rate in (0, 500]")
    if not 0 <= args.neighbours <= 254 or args.watchers > 254 or args.pause <= 0:
        parser.error("at most 254 --watchers and --neighbours (one address each), --pause positive")
    args.log_entries, args.aid_posts = (2_000, 200) if args.quick else (20_000, 2_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    burst_s = args.checkins / args.rate
    workdir = Path(tempfile.mkdtemp(prefix="safebench-stream-"))
    hub: Server | None = None
    hub_log = ""
    watchers: list[Watcher] = []
    threads: list[threading.Thread] = []
    try:
        instance = workdir / "instance"
        seeded = seed(instance, args.log_entries, args.aid_posts, stewards=36, weeks=8)
        newest = add_host(instance)
        print(f"seeded: {seeded.log_entries} log entries, {seeded.stewards} stewards, {seeded.aid_posts} aid posts",
              flush=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith(f"{config.ENV_PREFIX}_")}
        env[f"{config.ENV_PREFIX}_INSTANCE"] = str(instance)
        if args.no_cache:
            env[f"{config.ENV_PREFIX}_CACHE_TYPE"] = "NullCache"
        port = free_port()
        hub = start_server("hub", [*safebench_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                           port, env, workdir)
        hub.wait_until_up()
        cookie = log_in(port)
        database_url = config.default_database_uri(instance)
        on_page = (f"{args.neighbours} neighbours on / (each every {args.pause:g} s or so)" if args.neighbours
                   else f"{args.page_clients} clients on / back to back")
        print(f"burst: {args.checkins} check-ins at {args.rate:g}/s ({burst_s:.1f} s), {args.watchers} watchers, "
              f"{on_page}; waitress threads {config.DEFAULTS['WEB_THREADS']}, "
              f"stream slots {config.DEFAULTS['STREAM_SLOTS']}, hold {config.DEFAULTS['STREAM_HOLD_S']} s", flush=True)

        phases: list[Phase] = []
        with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
            list(pool.map(_sleep_until, [0, 0]))  # both workers up and imported before anything is timed
            run_load(port, "/", total=200, concurrency=args.page_clients, max_seconds=10)  # warm-up

            def measure(name: str, burst: bool) -> list[tuple[int, float]]:
                start_at = time.time() + 0.5
                writes = pool.submit(commit_burst, database_url, args.checkins, args.rate, start_at) if burst else None
                load = (pool.submit(neighbours_load, port, burst_s, args.neighbours, args.pause, start_at)
                        if args.neighbours else pool.submit(page_load, port, burst_s, args.page_clients, start_at))
                _sleep_until(start_at)
                cpu_before, own_before = cpu_seconds(hub.process.pid), cpu_seconds(os.getpid())
                latencies, errors = load.result(timeout=burst_s + 60)
                phases.append(Phase(name, latencies, errors, cpu_seconds(hub.process.pid) - cpu_before, burst_s,
                                    cpu_seconds(os.getpid()) - own_before))
                return writes.result(timeout=burst_s + 60) if writes else []

            measure("quiet", burst=False)
            newest = max([newest, *(entry_id for entry_id, _ in measure("burst, no watchers", burst=True))])

            watchers = [Watcher(port, cookie, newest, address(WATCHER_NET, n + 1)) for n in range(args.watchers)]
            threads = [threading.Thread(target=w.run, daemon=True) for w in watchers]
            for thread in threads:
                thread.start()
            for watcher in watchers:
                if not watcher.connected.wait(timeout=30):
                    raise SystemExit("a watcher could not connect to the stream")
            time.sleep(1.5)  # every watcher past its first answer, slots taken
            committed = measure(f"burst, {args.watchers} watchers", burst=True)

        wanted = [entry_id for entry_id, _ in committed]
        deadline = time.monotonic() + WATCHER_DEADLINE_S
        while time.monotonic() < deadline and any(len(w.received) < len(wanted) for w in watchers):
            time.sleep(0.2)
    finally:
        for watcher in watchers:
            watcher.close()
        for thread in threads:
            thread.join(timeout=5)
        if hub is not None:
            hub.stop()
            hub_log = hub.log_path.read_text(errors="replace")
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    return report(args, phases, committed, watchers, hub_log)


def report(args: argparse.Namespace, phases: list[Phase], committed: list[tuple[int, float]],
           watchers: list[Watcher], hub_log: str = "") -> int:
    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    commit_at = dict(committed)
    wanted = [entry_id for entry_id, _ in committed]
    complete = sum(1 for w in watchers if [e for e, _, _ in w.received if e in commit_at] == wanted)
    delays = {True: [], False: []}
    for watcher in watchers:
        for entry_id, at, held in watcher.received:
            if entry_id in commit_at:
                delays[held].append(at - commit_at[entry_id])
    every = delays[True] + delays[False]
    duplicates = sum(w.duplicates for w in watchers)
    responses = sum(w.responses for w in watchers)
    errors = sum(w.errors for w in watchers)

    print()
    print(f"watchers with every check-in once, in order: {complete} of {len(watchers)}, "
          f"{duplicates} duplicates  {verdict(complete == len(watchers) and not duplicates)}")
    for label, values in (("on a held stream", delays[True]), ("polling (no slot)", delays[False]),
                          ("all watchers", every)):
        if values:
            print(f"commit to event, {label:<18} p50 {percentile(values, 0.5) * 1000:6.0f} ms, "
                  f"p95 {percentile(values, 0.95) * 1000:6.0f} ms, max {max(values) * 1000:6.0f} ms "
                  f"({len(values)} events)")
    p95 = percentile(every, 0.95)
    print(f"commit to event p95 {p95:.2f} s (aim <= {DELAY_AIM_S:g} s)  {verdict(p95 <= DELAY_AIM_S)}")
    print(f"stream responses: {responses} ({errors} errors)")
    for phase in phases:
        print(phase.line())
    without, with_watchers = phases[-2], phases[-1]
    ratio50 = percentile(with_watchers.latencies, 0.5) / percentile(without.latencies, 0.5)
    ratio95 = percentile(with_watchers.latencies, 0.95) / percentile(without.latencies, 0.95)
    print(f"bench page with/without watchers: p50 x{ratio50:.2f}, p95 x{ratio95:.2f} "
          f"(aim p95 <= x{PAGE_RATIO_AIM:g})  {verdict(ratio95 <= PAGE_RATIO_AIM)}")
    # The hub's own log (on a Pi, the journal): waitress's "Task queue depth" was a line per waiting request.
    lines = [line for line in hub_log.splitlines() if " WARNING " in line or " ERROR " in line]
    print(f"hub log: {len(lines)} warnings or errors during the run, "
          f"{sum('Task queue depth' in line for line in lines)} of them 'Task queue depth', "
          f"{sum('overloaded' in line for line in lines)} 'overloaded'")
    for line in lines[:5]:
        print(f"  {line[:200]}")
    page = (f"--neighbours {args.neighbours} --pause {args.pause:g}" if args.neighbours
            else f"--page-clients {args.page_clients}")
    print(f"reproduce: .venv/bin/python {SCRIPT} --watchers {args.watchers} --checkins {args.checkins} "
          f"--rate {args.rate:g} {page}" + (" --quick" if args.quick else "")
          + (" --no-cache" if args.no_cache else ""))
    failed = errors or any(phase.errors for phase in phases) or complete < len(watchers)
    if failed:
        print("some requests failed or some watcher missed entries: see above", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
