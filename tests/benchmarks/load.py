"""A busy night at the bench: neighbours posting, hosts watching, the radio bursting, all at once.

On a fresh instance, the real hub (``safebench serve``: waitress, 4 threads,
rate limits on, as it ships) and the real radio bridge (``safebench bridge``
on the simulated radio's pty, the radio itself in this process) run as child
processes. Then, in one run:

1. baseline: 100 neighbours, each a phone with its own address on the bench
   WiFi (127.0.1.N: Linux routes all of 127/8 to the loopback), open the
   bench page and send three public forms the way a phone does (open the
   form, take its CSRF token and cookie, post, follow the redirect to the
   receipt): mediation requests, aid offers and asks, arrest reports.
2. the busy night: the same 100 neighbours send three forms more, while 20
   hosts and dispatchers (each logged in from their own address) keep the
   live log (``/host/live/events``) open as their browsers do, the radio
   bridge ingests a burst of 1,000 check-ins from 6 stewards, and one phone
   (127.0.3.1) fires 30 mediation requests at once against the public form
   limit (20 per hour).

Then it counts: every success page's receipt code (or, for an arrest, the
words the witness wrote) must be a row in the database and every row of
the run must have had its success page; each arrest case must have its log
line and, once confirmed, its broadcast; the 1,000 check-ins must be 1,000 rows; every
watcher must have seen every check-in exactly once. It prints latencies per
form and for the bench page in both phases, and their ratio. Run it from the
repository root::

    .venv/bin/python tests/benchmarks/load.py [--neighbours 100] [--watchers 20] [--checkins 1000] [--keep]

``tests/test_load.py`` and ``tests/test_web_crash.py`` use the same pieces
(phones, forms, the hub and bridge processes, the counting). Everything
listens on and talks to the loopback only, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Self
from urllib.parse import urlencode, urlsplit

from radio_bridge.simulator import SimNode, SimulatedRadio
from server import config, create_app
from server.clock import utcnow
from server.domain import mandates, patrol, people, receipt_keys
from server.extensions import db
from server.migrating import apply_migrations

SCRIPT = "tests/benchmarks/load.py"
START_TIMEOUT_S = 30
REQUEST_TIMEOUT_S = 30  # longer than the hub's busy timeout and retries: a slow answer is still an answer
HOST_PASSWORD = "a host's long password"
DECISION = "load test assembly"
AREAS = ("Market", "Station", "Riverside", "Canal", "Park", "Elm Street")
# Registered stewards and their handhelds: the burst of check-ins comes from them.
STEWARDS = tuple((f"Steward{n + 1}", 0x5A000001 + n, AREAS[n % len(AREAS)]) for n in range(6))

# Where phones come from. Every address in 127/8 reaches 127.0.0.1 on Linux,
# so each phone can have its own, and per-address rate limits apply to it alone.
NEIGHBOUR_NET = "127.0.1"
WATCHER_NET = "127.0.2"
FLOOD_NET = "127.0.3"
WARM_UP_NET = "127.0.5"

# The four public forms a neighbour sends in this run.
MEDIATION, AID_OFFER, AID_ASK, ARREST = "mediation", "aid offer", "aid ask", "arrest"
# One post in eight is an arrest report: each opens a case, and a hub has
# codes for 99 open cases (C1..C99); two phases of 300 posts stay below that.
PLAN = (MEDIATION, AID_OFFER, MEDIATION, AID_ASK, ARREST, AID_OFFER, MEDIATION, AID_ASK)
BENCH_PAGE = "bench page"


def address(net: str, n: int) -> str:
    """The ``n``-th phone's address (from 1) in a /24 of the loopback."""
    if not 1 <= n <= 254:
        raise ValueError(f"phone number {n} does not fit in {net}.0/24")
    return f"{net}.{n}"


def percentile(values: Iterable[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def wait_for(done: Callable[[], bool], seconds: float, pause: float = 0.1) -> bool:
    """Poll ``done`` until it holds or ``seconds`` pass; says which."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
    return True


# -- a phone on the bench WiFi --------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str
    location: str | None
    seconds: float


class Phone:
    """One phone: its own source address, its own cookies, one keep-alive connection, as a browser has."""

    def __init__(self, port: int, source: str, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.port = port
        self.source = source
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self.statuses: Counter[int] = Counter()
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self._send("GET", path, None, headers or {})

    def post(self, path: str, fields: dict[str, str]) -> Answer:
        body = urlencode(fields).encode()
        return self._send("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        headers = {"User-Agent": "bench-phone", **headers}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout,
                                                    source_address=(self.source, 0))
        began = time.perf_counter()
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            text = response.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException):
            self.close()  # a broken connection is not used again; the caller decides whether to ask again
            raise
        seconds = time.perf_counter() - began
        self._keep_cookies(response.headers.get_all("Set-Cookie") or [])
        if response.will_close:
            self.close()
        self.statuses[response.status] += 1
        location = response.headers.get("Location")
        return Answer(response.status, text, urlsplit(location).path if location else None, seconds)

    def _keep_cookies(self, headers: list[str]) -> None:
        for header in headers:
            jar = SimpleCookie()
            try:
                jar.load(header)
            except CookieError:
                continue
            for name, morsel in jar.items():
                if not morsel.value or morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value


_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_RECEIPT = re.compile(r'class="receipt"[^>]*>\s*([A-Z]-[0-9A-Z]{4}-[0-9A-Z]{4})\s*<')


def csrf_token(page: str) -> str | None:
    found = _TOKEN.search(page)
    return unescape(found.group(1)) if found else None


# -- the public forms -------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    path: str
    done_path: str  # where the post redirects when it was saved
    done_words: str  # on the page there, and nowhere else
    fields: Callable[[str, int], dict[str, str]]  # (marker, n) -> what the neighbour types


def _mediation(marker: str, n: int) -> dict[str, str]:
    return {"what": f"Music from the flat above the bakery until 3 every night {marker}",
            "where": AREAS[n % len(AREAS)], "who": "the neighbours upstairs",
            "urgency": ("low", "soon", "urgent")[n % 3], "contact": ""}


def _aid(kind: str) -> Callable[[str, int], dict[str, str]]:
    def fields(marker: str, n: int) -> dict[str, str]:
        return {"kind": kind, "category": ("food", "charging", "repairs", "rides")[n % 4],
                "text": f"{'Can lend' if kind == 'offer' else 'Need'} a phone charger tonight {marker}",
                "area": "", "days": "3", "contact": ""}
    return fields


def _arrest(marker: str, n: int) -> dict[str, str]:
    return {"where": f"{AREAS[n % len(AREAS)]} corner", "when": "", "count": str(1 + n % 2),
            "description": f"Two officers took a man in a green jacket {marker}", "agency": "", "contact": ""}


FORMS: dict[str, Form] = {
    MEDIATION: Form("/mediation/new", "/mediation/receipt", "Your receipt code", _mediation),
    AID_OFFER: Form("/aid/new", "/aid/receipt", "Your post is on the board", _aid("offer")),
    AID_ASK: Form("/aid/new", "/aid/receipt", "Your post is on the board", _aid("ask")),
    # "dispatch was told", "the bench's hosts were asked" or "your report is kept", by who holds which role.
    ARREST: Form("/arrest", "/arrest/thanks", "Thank you:", _arrest),
}


@dataclass
class Post:
    """One form a neighbour sent, and what their phone showed for it."""

    kind: str
    marker: str
    phone: str
    statuses: list[int] = field(default_factory=list)  # form page, post, and the page it led to
    sent: bool = False  # the post left the phone (the form page had come)
    saved_page: bool = False  # the success page (receipt, thank-you) was on the screen
    redirected: bool = False  # the post was answered "saved" (the redirect), page or not
    code: str | None = None  # the receipt code on the success page, for mediation and aid
    seconds: float | None = None  # from pressing send to the success page
    page_text: str = ""  # the last page shown, for a message in a failed assertion
    error: str | None = None  # no answer at all: what the phone saw instead

    @property
    def too_many(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] == 429 and "Too many tries" in self.page_text


def send_form(phone: Phone, kind: str, marker: str, n: int = 0, token: str | None = None) -> Post:
    """Open the form (unless a ``token`` is already at hand), post it, follow the redirect: one neighbour's try."""
    form = FORMS[kind]
    post = Post(kind, marker, phone.source)
    try:
        if token is None:
            page = phone.get(form.path)
            post.statuses.append(page.status)
            token = csrf_token(page.body)
            if page.status != 200 or token is None:
                post.page_text = page.body
                return post
        began = time.perf_counter()
        post.sent = True
        sent = phone.post(form.path, {**form.fields(marker, n), "csrf_token": token})
        post.statuses.append(sent.status)
        post.page_text = sent.body
        if sent.status != 302 or sent.location != form.done_path:
            return post
        post.redirected = True
        done = phone.get(form.done_path)
        post.statuses.append(done.status)
        post.page_text = done.body
        if done.status == 200 and form.done_words in done.body:
            post.saved_page = True
            post.seconds = time.perf_counter() - began
            found = _RECEIPT.search(done.body)
            post.code = found.group(1) if found else None
    except (OSError, http.client.HTTPException) as error:
        post.error = f"{type(error).__name__}: {error}"
    return post


def plan_for(n: int, posts: int, offset: int = 0) -> list[str]:
    """What the ``n``-th neighbour sends: a slice of PLAN, so every kind is sent by many at once."""
    return [PLAN[(n + offset + k) % len(PLAN)] for k in range(posts)]


# -- the instance, the hub, the bridge ---------------------------------------------------


def safebench_command() -> list[str]:
    script = Path(sys.executable).with_name("safebench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server"]


def clean_env(instance: Path, **settings: str) -> dict[str, str]:
    """The caller's environment without any SAFEBENCH_* of theirs: the hub runs on its shipped defaults."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(f"{config.ENV_PREFIX}_")}
    env[f"{config.ENV_PREFIX}_INSTANCE"] = str(instance)
    env.update({f"{config.ENV_PREFIX}_{key}": value for key, value in settings.items()})
    return env


def prepare_instance(instance: Path, watchers: int) -> list[str]:
    """Migrations, areas, the stewards with their handhelds, and host/dispatch accounts; returns their handles."""
    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    apply_migrations(app)
    handles = []
    with app.app_context():
        now = utcnow()
        for area in AREAS:
            patrol.add_area(db.session, area)
        for handle, node, _area in STEWARDS:
            mandates.seat(db.session, now, people.add_member(db.session, now, handle, node), people.STEWARD,
                          decision=people.Decision(now.date(), "load test", DECISION), term_days=28, cap_days=28,
                          why="load test seed")
        for n in range(watchers):
            # Half of them hosts, half dispatch: both watch the full log.
            member = people.add_member(db.session, now, f"Watcher{n + 1}")
            people.set_password(member, HOST_PASSWORD)
            mandates.seat(db.session, now, member, (people.HOST, people.DISPATCH)[n % 2],
                          decision=people.Decision(now.date(), "load test", DECISION), term_days=28, cap_days=28,
                          why="load test seed")
            handles.append(member.handle)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return handles


class ChildProcess:
    """A ``safebench`` command in a child process, its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv, self.env, self.log_path = argv, env, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> Self:
        with self.log_path.open("a") as out:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed, as when a Pi's power goes."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class Hub(ChildProcess):
    """``safebench serve``: waitress serves in this very process, so its pid is the one to kill."""

    def __init__(self, instance: Path, port: int, log_path: Path) -> None:
        super().__init__([*safebench_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                         clean_env(instance), log_path)
        self.port = port

    def start(self) -> Self:
        super().start()
        if not wait_for(self._answers, START_TIMEOUT_S, pause=0.1):
            self.stop()
            raise RuntimeError(f"the hub did not answer within {START_TIMEOUT_S} s:\n{self.tail()}")
        return self

    def _answers(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"the hub exited with {self.process.returncode}:\n{self.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


class RadioBridge(ChildProcess):
    """``safebench bridge --radio serial:PTY`` on the simulated radio's pty."""

    def __init__(self, instance: Path, sim: SimulatedRadio, log_path: Path) -> None:
        super().__init__([*safebench_command(), "bridge", "--radio", f"serial:{sim.path}"], clean_env(instance),
                         log_path)
        self.instance = instance

    def start(self) -> Self:
        super().start()

        def connected() -> bool:
            if not self.alive():
                raise RuntimeError(f"the bridge exited with {self.process.returncode}:\n{self.tail()}")
            return bool(query(self.instance, "SELECT 1 FROM bridge_status WHERE connected = 1"))

        if not wait_for(connected, START_TIMEOUT_S, pause=0.1):
            self.stop()
            raise RuntimeError(f"the bridge did not connect within {START_TIMEOUT_S} s:\n{self.tail()}")
        return self


def start_radio(workdir: Path) -> SimulatedRadio:
    """The simulated hub radio, with the stewards' handhelds in its node list."""
    nodes = [SimNode(node, f"{handle}'s handheld", handle[:2].upper() + handle[-1]) for handle, node, _ in STEWARDS]
    return SimulatedRadio(nodes=nodes, link_path=workdir / "radio" / "ttySIM0", rate_limit=False).start()


def query(instance: Path, sql: str, *args: object) -> list[tuple]:
    """Read the hub's database as an outsider would: read-only, its own connection."""
    path = instance / "safebench.db"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(sql, args).fetchall()


class SealedReader:
    """Opens the hub's sealed words as its readers would, from the database file alone.

    The watchers' password unwraps their member keys and their vault grants; a
    vault still waiting for its first reader (no mediator here) opens with the
    key waiting on the card. Keys are looked up again when a vault is new.
    """

    def __init__(self, instance: Path) -> None:
        self.instance = instance
        self.vaults: dict = {}

    def _load(self) -> None:
        from nacl.public import PrivateKey, SealedBox

        from server.domain import sealing

        for vault, pending in query(self.instance, "SELECT vault, pending_private FROM vault_key"):
            if pending:
                self.vaults[vault] = PrivateKey(pending)
        grants = query(self.instance, "SELECT g.vault, g.sealed_private, k.wrapped_private, k.salt, k.kdf_passes, "
                                      "k.kdf_memory_kib FROM vault_grant g JOIN member_key k USING (member_id)")
        for vault, sealed, wrapped, salt, passes, memory in grants:
            if vault in self.vaults:
                continue
            key = sealing.MemberKey(wrapped_private=wrapped, salt=salt, kdf_passes=passes, kdf_memory_kib=memory)
            private = sealing.open_member_key(key, HOST_PASSWORD)
            if private is not None:
                self.vaults[vault] = PrivateKey(SealedBox(private).decrypt(sealed))

    def __call__(self, value: str | None) -> str | None:
        from server.domain import sealing

        if not value or not value.startswith(sealing.PREFIX):
            return value
        try:
            return sealing.open_text(sealing.Sealed(value), self.vaults)
        except sealing.SealingError:
            self._load()
            return sealing.open_text(sealing.Sealed(value), self.vaults)


_readers: dict[Path, SealedReader] = {}


def unseal(instance: Path, value: str | None) -> str | None:
    return _readers.setdefault(instance, SealedReader(instance))(value)


# -- hosts watching the live log --------------------------------------------------


def log_in(phone: Phone, handle: str, password: str = HOST_PASSWORD) -> None:
    page = phone.get("/login")
    answer = phone.post("/login", {"handle": handle, "password": password, "csrf_token": csrf_token(page.body) or ""})
    if answer.status != 302 or (answer.location or "/login").startswith("/login"):  # each role lands on its work
        raise RuntimeError(f"{handle} could not log in from {phone.source}: {answer.status} {answer.location}")


def hang_up(conn: http.client.HTTPConnection | None) -> None:
    """End a watcher's held stream from another thread: its blocked read returns at once."""
    if conn is not None and conn.sock is not None:
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the other end


def stream_events(response: http.client.HTTPResponse) -> Iterator[tuple[str, float]]:
    """A server-sent event stream read as EventSource reads it, to the end of the response.

    Yields ("event", id) for an event with data, ("id", id) for one that only
    moves the last event id on, and ("retry", seconds) when the server asks
    for another reconnection delay.
    """
    event_id, has_data = None, False
    while line := response.readline():
        line = line.decode().rstrip("\r\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            has_data = True
        elif line.startswith("retry: "):
            yield "retry", int(line[7:]) / 1000
        elif line == "":  # the end of an event: dispatch it
            if event_id is not None:
                yield ("event" if has_data else "id"), event_id
            event_id, has_data = None, False
    # An answer with a Content-Length (a watcher without a slot, server/web/live_polls.py) ends with
    # readline's b"" but is only finished for http.client once read: then the connection takes the next request.
    response.read()


@dataclass
class Watcher:
    """One host's browser on /host/live/events, reconnecting as EventSource does, from its own address."""

    phone: Phone
    last_id: int = 0
    received: list[int] = field(default_factory=list)
    arrived: dict[int, float] = field(default_factory=dict)  # entry id -> wall clock when it first arrived
    duplicates: int = 0
    statuses: Counter = field(default_factory=Counter)
    broken: int = 0  # connections that broke while we were not stopping
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    _conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        retry_s = 1.0
        while not self.stop.is_set():
            conn = self._conn = http.client.HTTPConnection("127.0.0.1", self.phone.port, timeout=REQUEST_TIMEOUT_S,
                                                           source_address=(self.phone.source, 0))
            try:
                cookie = "; ".join(f"{name}={value}" for name, value in self.phone.cookies.items())
                conn.request("GET", "/host/live/events", headers={
                    "Cookie": cookie, "Accept": "text/event-stream", "Last-Event-ID": str(self.last_id)})
                response = conn.getresponse()
                self.statuses[response.status] += 1
                if response.status != 200:
                    response.read()
                else:
                    self.connected.set()
                    retry_s = self._read_events(response, retry_s)
            except (OSError, http.client.HTTPException):
                if not self.stop.is_set():
                    self.broken += 1
            finally:
                conn.close()
            self.stop.wait(retry_s)

    def _read_events(self, response: http.client.HTTPResponse, retry_s: float) -> float:
        for kind, value in stream_events(response):
            if kind == "retry":
                retry_s = value
                continue
            if kind == "event":
                if value <= self.last_id:
                    self.duplicates += 1
                self.received.append(value)
                self.arrived.setdefault(value, time.time())
            self.last_id = value
        return retry_s

    def close(self) -> None:
        self.stop.set()
        hang_up(self._conn)


def start_watchers(port: int, handles: list[str], newest_id: int) -> tuple[list[Watcher], list[threading.Thread]]:
    """Each host logs in from their own address, then keeps the live log open."""
    watchers = []
    for n, handle in enumerate(handles, start=1):
        phone = Phone(port, address(WATCHER_NET, n))
        log_in(phone, handle)
        phone.close()
        watchers.append(Watcher(phone, last_id=newest_id))
    threads = [threading.Thread(target=w.run, name=f"watcher-{n}", daemon=True) for n, w in enumerate(watchers)]
    for thread in threads:
        thread.start()
    for watcher in watchers:
        if not watcher.connected.wait(timeout=START_TIMEOUT_S):
            raise RuntimeError(f"a watcher could not open the live log: {dict(watcher.statuses)}")
    return watchers, threads


def stop_watchers(watchers: list[Watcher], threads: list[threading.Thread]) -> None:
    for watcher in watchers:
        watcher.close()
    for thread in threads:
        thread.join(timeout=10)


# -- the crowd -------------------------------------------------------------------------


@dataclass
class Crowd:
    """What a crowd of neighbours sent and saw."""

    posts: list[Post] = field(default_factory=list)
    bench_page_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # requests that got no answer at all
    seconds: float = 0.0

    def add(self, other: Crowd) -> None:
        self.posts += other.posts
        self.bench_page_s += other.bench_page_s
        self.statuses += other.statuses
        self.errors += other.errors


def neighbour(port: int, n: int, plan: list[str], tag: str, crowd: Crowd, lock: threading.Lock,
              start: threading.Barrier) -> None:
    """Scan the QR code (the bench page), then send each form of ``plan``, one after the other."""
    phone = Phone(port, address(NEIGHBOUR_NET, n))
    mine = Crowd()
    start.wait(timeout=START_TIMEOUT_S)
    try:
        try:
            page = phone.get("/")
            mine.bench_page_s.append(page.seconds)
        except (OSError, http.client.HTTPException) as error:
            mine.errors.append(f"bench page: {error}")
        for k, kind in enumerate(plan):
            post = send_form(phone, kind, f"[{tag}-n{n}-{k}]", n + k)
            if post.error:
                mine.errors.append(post.error)
            mine.posts.append(post)
    finally:
        phone.close()
        mine.statuses = phone.statuses
        with lock:
            crowd.add(mine)


def warm_up(port: int) -> list[Post]:
    """One phone opens the bench page and sends each form once, so neither phase pays for first use."""
    phone = Phone(port, address(WARM_UP_NET, 1))
    phone.get("/")
    posts = [send_form(phone, kind, f"[warm-up-{k}]", k) for k, kind in enumerate(FORMS)]
    phone.close()
    return posts


def run_crowd(port: int, neighbours: int, posts_each: int, tag: str, offset: int = 0,
              also: Callable[[], None] | None = None) -> Crowd:
    """``neighbours`` phones at once, each sending ``posts_each`` forms; ``also`` runs alongside, started with them."""
    crowd, lock = Crowd(), threading.Lock()
    start = threading.Barrier(neighbours + 1)
    threads = [threading.Thread(target=neighbour, name=f"neighbour-{n}", daemon=True,
                                args=(port, n, plan_for(n, posts_each, offset), tag, crowd, lock, start))
               for n in range(1, neighbours + 1)]
    for thread in threads:
        thread.start()
    start.wait(timeout=START_TIMEOUT_S)
    began = time.monotonic()
    if also is not None:
        also()
    for thread in threads:
        thread.join(timeout=120)
    crowd.seconds = time.monotonic() - began
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("some neighbours were still waiting for the hub after 120 s")
    return crowd


@dataclass
class Flood:
    """One phone sending the same form many times at once."""

    posts: list[Post]
    limit: int

    @property
    def saved(self) -> list[Post]:
        return [post for post in self.posts if post.saved_page]

    @property
    def refused(self) -> list[Post]:
        return [post for post in self.posts if post.too_many]


def flood(port: int, tries: int, source: str = address(FLOOD_NET, 1), tag: str = "flood") -> Flood:
    """One phone fires ``tries`` mediation requests at the same moment, each on its own connection."""
    opener = Phone(port, source)
    token = csrf_token(opener.get(FORMS[MEDIATION].path).body)
    opener.close()
    posts: list[Post | None] = [None] * tries
    start = threading.Barrier(tries)

    def one(k: int) -> None:
        phone = Phone(port, source)
        phone.cookies = dict(opener.cookies)  # the same phone: the same session, token and address
        start.wait(timeout=START_TIMEOUT_S)
        posts[k] = send_form(phone, MEDIATION, f"[{tag}-{k}]", k, token=token)
        phone.close()

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(tries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    limit = int(config.DEFAULTS["PUBLIC_FORM_LIMIT"].split()[0])
    return Flood([post for post in posts if post is not None], limit)


# -- the radio burst -----------------------------------------------------------------


@dataclass
class Burst:
    delivered: int = 0
    notes: list[str] = field(default_factory=list)
    began: float = 0.0  # wall clock
    delivered_at: float = 0.0
    all_in_at: float | None = None  # when the bridge logged the last check-in

    @property
    def ingest_s(self) -> float | None:
        return self.all_in_at - self.began if self.all_in_at else None


def stewards_go_on_shift(sim: SimulatedRadio, instance: Path) -> None:
    for _handle, node, area in STEWARDS:
        sim.deliver_text(node, f"ON {area}", to=sim.node_num)
    if not wait_for(lambda: count_rows(instance, "shift_start") >= len(STEWARDS), START_TIMEOUT_S):
        raise RuntimeError("the stewards' ON messages did not reach the log")


def deliver_burst(sim: SimulatedRadio, checkins: int, tag: str, burst: Burst, rate: float = 0.0) -> None:
    """``checkins`` check-ins from the stewards' handhelds, at ``rate`` a second (0: as fast as the radio takes them)."""
    burst.began = time.time()
    for n in range(checkins):
        if rate:
            time.sleep(max(0.0, burst.began + n / rate - time.time()))
        note = f"{tag} {n}"
        sim.deliver_text(STEWARDS[n % len(STEWARDS)][1], f"CI {note}", to=sim.node_num)
        burst.notes.append(note)
        burst.delivered += 1
    burst.delivered_at = time.time()


def count_rows(instance: Path, kind: str) -> int:
    return query(instance, "SELECT count(*) FROM log_entry WHERE kind = ?", kind)[0][0]


def checkin_rows(instance: Path, tag: str) -> list[tuple[int, str, float]]:
    """(id, note, when the bridge logged it, as a wall-clock time) of the burst's check-ins in the log."""
    # Notes are sealed: every radio check-in is read and opened, and the burst's picked out by their words.
    rows = query(instance, "SELECT id, note, at FROM log_entry WHERE kind = ? AND source = ? AND note IS NOT NULL "
                 "ORDER BY id", patrol.CHECK_IN, patrol.SOURCE_RADIO)
    opened = [(entry_id, unseal(instance, note), at) for entry_id, note, at in rows]
    return [(entry_id, note, datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp())
            for entry_id, note, at in opened if note.startswith(f"{tag} ")]


# -- counting what the database holds -----------------------------------------------


@dataclass
class Count:
    """The database against the phones: every saved page is a row, every row had its page."""

    rows: dict[str, set[str]]  # kind -> markers found in the database
    codes: dict[str, set[str]]  # kind -> receipt codes found
    shown: dict[str, set[str]]  # kind -> markers of posts whose success page was shown
    shown_codes: dict[str, set[str]]
    missing: list[Post]  # a success page, and no row: lost
    unexplained: set[str]  # a row, and no success page (nor an unanswered post that may explain it)
    cases_without_parts: list[str]  # an arrest case without its log line or its broadcast
    duplicate_case_codes: list[str]  # two open cases answering to the same code
    integrity: str

    @property
    def lost(self) -> int:
        return len(self.missing)


_MARKER = re.compile(r"\[[^\]\s]+\]")


def _markers(rows: list[tuple]) -> dict[str, str]:
    """marker -> receipt code (or case id) from rows of (text, code), their texts opened already."""
    found = {}
    for text, code in rows:
        for marker in _MARKER.findall(text or ""):
            found[marker] = code
    return found


def count_database(instance: Path, posts: list[Post]) -> Count:
    """Read every public form's rows and match them, by the words in them, with the phones' posts."""
    def opened(rows: list[tuple]) -> list[tuple]:
        return [(unseal(instance, text), *rest) for text, *rest in rows]

    mediation = _markers(opened(query(instance, "SELECT what, receipt_code FROM mediation_request")))
    aid = {kind: _markers(query(instance, "SELECT text, receipt_lookup FROM aid_post WHERE kind = ?", value))
           for kind, value in ((AID_OFFER, "offer"), (AID_ASK, "ask"))}
    # The hub keeps what Argon2id makes of an aid receipt code, not the code: the phones' codes are made alike.
    kdf = query(instance, "SELECT salt, kdf_passes, kdf_memory_kib FROM receipt_kdf")

    def stored(kind: str, code: str | None) -> str | None:
        if code is None or kind not in (AID_OFFER, AID_ASK) or not kdf:
            return code
        return receipt_keys.derive(code, *kdf[0]).lookup

    cases = _markers(opened(query(instance, "SELECT description, code FROM arrest_case")))
    rows = {MEDIATION: set(mediation), AID_OFFER: set(aid[AID_OFFER]), AID_ASK: set(aid[AID_ASK]), ARREST: set(cases)}
    codes = {MEDIATION: set(mediation.values()), AID_OFFER: set(aid[AID_OFFER].values()),
             AID_ASK: set(aid[AID_ASK].values()), ARREST: set()}
    by_marker = {MEDIATION: mediation, AID_OFFER: aid[AID_OFFER], AID_ASK: aid[AID_ASK], ARREST: cases}

    shown = {kind: {p.marker for p in posts if p.kind == kind and p.saved_page} for kind in FORMS}
    shown_codes = {kind: {stored(kind, p.code) for p in posts if p.kind == kind and p.saved_page and p.code}
                   for kind in FORMS}
    missing = [p for p in posts if p.saved_page and (
        p.marker not in by_marker[p.kind] or (p.code is not None and by_marker[p.kind][p.marker] != stored(p.kind, p.code)))]
    # A row may come from a post whose answer never arrived (a killed server); anything else is unexplained.
    unanswered = {p.marker for p in unanswered_posts(posts)}
    unexplained = {m for kind, found in rows.items() for m in found - shown[kind] - unanswered}

    # A neighbour's report goes on the air once someone confirmed it: until then its log line is its part.
    # The log line's note is sealed: opened here, and matched to its case by the code it begins with.
    arrest_notes = [note for (note,) in opened(query(instance, "SELECT note FROM log_entry WHERE kind = 'arrest'"))]
    no_parts = [f"{code} (case {case_id})" for case_id, code, confirmed, broadcast in query(instance, """
        SELECT c.id, c.code, c.confirmed_at IS NOT NULL,
               EXISTS (SELECT 1 FROM outbox_message o WHERE o.dedupe_key = 'case:' || c.id) FROM arrest_case c""")
        if (confirmed and not broadcast) or not any((note or "").startswith(f"{code}: ") for note in arrest_notes)]
    arrest_lines = query(instance, "SELECT count(*) FROM log_entry WHERE kind = 'arrest'")[0][0]
    case_count = query(instance, "SELECT count(*) FROM arrest_case")[0][0]
    if arrest_lines != case_count:
        no_parts.append(f"{case_count} cases but {arrest_lines} arrest lines in the log")
    duplicates = [code for (code,) in query(instance, """
        SELECT code FROM arrest_case WHERE closed_at IS NULL GROUP BY code HAVING count(*) > 1""")]
    integrity = query(instance, "PRAGMA integrity_check")[0][0]
    orphans = query(instance, "PRAGMA foreign_key_check")
    if orphans:
        integrity += f"; {len(orphans)} rows pointing at rows that do not exist"
    return Count(rows, codes, shown, shown_codes, missing, unexplained, no_parts, duplicates, integrity)


def unanswered_posts(posts: list[Post]) -> list[Post]:
    """Posts that left the phone and never brought back their success page: saved or not, nobody knows."""
    return [p for p in posts if p.sent and not p.saved_page and (p.error or p.redirected)]


# -- the whole night -----------------------------------------------------------------


@dataclass
class Night:
    """Everything one run saw, for the benchmark to print and the test to assert."""

    baseline: Crowd | None
    busy: Crowd
    flood: Flood | None
    burst: Burst
    checkins: list[tuple[int, str, float]]
    watchers: list[Watcher]
    watchers_done_s: float | None
    count: Count
    hub_cpu_s: float = 0.0
    hub_log: str = ""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_night(workdir: Path, *, neighbours: int = 100, posts_each: int = 3, watchers: int = 20,
               checkins: int = 1000, flood_tries: int = 30, baseline: bool = True, rate: float = 0.0,
               say: Callable[[str], None] = lambda _text: None) -> Night:
    """Run the scenario on a fresh instance in ``workdir``; stops every process it started."""
    instance = workdir / "instance"
    handles = prepare_instance(instance, watchers)
    hub = Hub(instance, free_port(), workdir / "hub.log")
    sim = start_radio(workdir)
    bridge = RadioBridge(instance, sim, workdir / "bridge.log")
    watching: tuple[list[Watcher], list[threading.Thread]] = ([], [])
    try:
        hub.start()
        bridge.start()
        stewards_go_on_shift(sim, instance)
        say(f"hub pid {hub.pid} on port {hub.port}, bridge pid {bridge.pid}, radio on {sim.path}")

        warming = warm_up(hub.port)
        quiet = None
        if baseline:
            quiet = run_crowd(hub.port, neighbours, posts_each, "quiet")
            say(f"baseline: {len(quiet.posts)} posts by {neighbours} neighbours in {quiet.seconds:.1f} s")

        newest = query(instance, "SELECT coalesce(max(id), 0) FROM log_entry")[0][0]
        watching = start_watchers(hub.port, handles, newest)
        say(f"{len(watching[0])} watchers on the live log")

        burst, flooded = Burst(), []
        side = []

        def alongside() -> None:
            side.append(threading.Thread(target=deliver_burst, args=(sim, checkins, "burst", burst, rate),
                                         name="burst", daemon=True))
            if flood_tries:
                side.append(threading.Thread(target=lambda: flooded.append(flood(hub.port, flood_tries)),
                                             name="flood", daemon=True))
            for thread in side:
                thread.start()

        cpu_before = cpu_seconds(hub.pid)
        busy = run_crowd(hub.port, neighbours, posts_each, "busy", offset=posts_each, also=alongside)
        for thread in side:
            thread.join(timeout=120)
        hub_cpu = cpu_seconds(hub.pid) - cpu_before
        if wait_for(lambda: len(checkin_rows(instance, "burst")) >= checkins, 60, pause=0.05):
            # When the bridge logged the last one (its clock is this machine's), not when we looked.
            burst.all_in_at = max(at for _, _, at in checkin_rows(instance, "burst"))
        say(f"busy night: {len(busy.posts)} posts in {busy.seconds:.1f} s; burst delivered in "
            f"{burst.delivered_at - burst.began:.1f} s")

        rows = checkin_rows(instance, "burst")
        wanted = {entry_id for entry_id, _, _ in rows}
        began = time.monotonic()
        everyone = wait_for(lambda: all(wanted <= set(w.received) for w in watching[0]), 30, pause=0.1)
        watchers_done = time.monotonic() - began if everyone else None
    finally:
        stop_watchers(*watching)
        bridge.stop()
        sim.stop()
        hub.stop()
    posts = warming + busy.posts + (quiet.posts if quiet else []) + (flooded[0].posts if flooded else [])
    return Night(quiet, busy, flooded[0] if flooded else None, burst, rows, watching[0], watchers_done,
                 count_database(instance, posts), hub_cpu, hub.tail(60))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the report --------------------------------------------------------------------


def latency_line(label: str, seconds: list[float], quiet: list[float] | None = None) -> str:
    if not seconds:
        return f"{label:<26} no answers"
    line = (f"{label:<26} {len(seconds):5d}  p50 {percentile(seconds, 0.5) * 1000:7.1f} ms  "
            f"p95 {percentile(seconds, 0.95) * 1000:7.1f} ms  max {max(seconds) * 1000:7.1f} ms")
    if quiet:
        line += f"   p95 x{percentile(seconds, 0.95) / percentile(quiet, 0.95):.2f} of the baseline"
    return line


def report(night: Night, args: argparse.Namespace) -> int:
    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    busy, quiet, count = night.busy, night.baseline, night.count
    print()
    for name, crowd in (("baseline (no watchers, no burst)", quiet), ("busy night", busy)):
        if crowd is None:
            continue
        print(f"{name}: {sum(crowd.statuses.values())} requests from {args.neighbours} phones in "
              f"{crowd.seconds:.1f} s, statuses {dict(sorted(crowd.statuses.items()))}")
        for kind in FORMS:
            seconds = [p.seconds for p in crowd.posts if p.kind == kind and p.seconds is not None]
            was = [p.seconds for p in quiet.posts if p.kind == kind and p.seconds is not None] \
                if quiet and crowd is busy else None
            print("  " + latency_line(f"{kind} (post+receipt)", seconds, was))
        print("  " + latency_line(BENCH_PAGE, crowd.bench_page_s,
                                  quiet.bench_page_s if quiet and crowd is busy else None))

    crowds = [c for c in (quiet, busy) if c]
    fivexx = sum(n for c in crowds for status, n in c.statuses.items() if status >= 500)
    unanswered = sum(len(c.errors) for c in crowds)
    failed_posts = [p for c in crowds for p in c.posts if not p.saved_page]
    print()
    print(f"5xx answers to neighbours: {fivexx}; requests with no answer: {unanswered}; "
          f"posts without a success page: {len(failed_posts)}  {verdict(not fivexx and not unanswered)}")
    for kind in FORMS:
        print(f"  {kind:<10} success pages {len(count.shown[kind]):4d}, rows in the database "
              f"{len(count.rows[kind]):4d}")
    matched = not count.missing and not count.unexplained
    print(f"rows vs success pages: {len(count.missing)} success pages without a row, {len(count.unexplained)} rows "
          f"without a success page  {verdict(matched)}")
    print(f"arrest cases without their log line or broadcast: {len(count.cases_without_parts)}; open cases sharing "
          f"a code: {len(count.duplicate_case_codes)}; integrity_check: {count.integrity}  "
          f"{verdict(not count.cases_without_parts and not count.duplicate_case_codes and count.integrity == 'ok')}")

    if night.flood:
        fl = night.flood
        other = [p for p in fl.posts if not p.saved_page and not p.too_many]
        print(f"rate limit: one phone, {len(fl.posts)} mediation requests at once: {len(fl.saved)} saved, "
              f"{len(fl.refused)} 'too many' (429), {len(other)} other (limit {fl.limit} per hour)  "
              f"{verdict(len(fl.saved) == fl.limit and len(fl.refused) == len(fl.posts) - fl.limit)}")

    burst = night.burst
    notes = [note for _, note, _ in night.checkins]
    exactly_once = len(notes) == burst.delivered and sorted(notes) == sorted(burst.notes)
    print(f"check-ins: {burst.delivered} delivered at the radio, {len(notes)} rows, "
          f"{len(notes) - len(set(notes))} twice  {verdict(exactly_once)}")
    if burst.ingest_s:
        print(f"ingest: {burst.delivered} check-ins in {burst.ingest_s:.1f} s from the first packet to the last row: "
              f"{burst.delivered / burst.ingest_s:.0f} per second (the radio took them in "
              f"{burst.delivered_at - burst.began:.1f} s)")
    wanted = {entry_id for entry_id, _, _ in night.checkins}
    complete = sum(1 for w in night.watchers if wanted <= set(w.received))
    logged_at = {entry_id: at for entry_id, _, at in night.checkins}
    delays = [w.arrived[e] - at for w in night.watchers for e, at in logged_at.items() if e in w.arrived]
    duplicates = sum(w.duplicates for w in night.watchers)
    print(f"stream: {complete} of {len(night.watchers)} watchers saw every check-in, {duplicates} events twice; "
          f"statuses {dict(sum((w.statuses for w in night.watchers), Counter()))}, "
          f"{sum(w.broken for w in night.watchers)} broken connections"
          + (f"; the last watcher had them all {night.watchers_done_s:.1f} s after the last row"
             if night.watchers_done_s is not None else "")
          + f"  {verdict(complete == len(night.watchers) and not duplicates)}")
    if delays:
        print(f"check-in logged to on a watcher's screen: p50 {percentile(delays, 0.5) * 1000:.0f} ms, "
              f"p95 {percentile(delays, 0.95) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms ({len(delays)} events)")
    print(f"hub CPU during the busy night: {night.hub_cpu_s:.1f} s in {busy.seconds:.1f} s "
          f"({night.hub_cpu_s / busy.seconds:.0%} of a core)")
    print(f"reproduce: .venv/bin/python {SCRIPT} --neighbours {args.neighbours} --watchers {args.watchers} "
          f"--checkins {args.checkins}" + (f" --rate {args.rate:g}" if args.rate else ""))
    ok = (not fivexx and not unanswered and matched and exactly_once and complete == len(night.watchers)
          and not duplicates and not count.cases_without_parts and not count.duplicate_case_codes)
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neighbours", type=int, default=100, help="phones posting forms at once (default 100)")
    parser.add_argument("--posts", type=int, default=3, help="forms each neighbour sends per phase (default 3)")
    parser.add_argument("--watchers", type=int, default=20, help="hosts on the live log (default 20)")
    parser.add_argument("--checkins", type=int, default=1000, help="check-ins in the radio burst (default 1000)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="check-ins per second at the radio (default 0: as fast as the radio takes them)")
    parser.add_argument("--flood", type=int, default=30, help="requests the flooding phone fires at once (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (instance, logs)")
    args = parser.parse_args(argv)
    if not 1 <= args.neighbours <= 254 or not 1 <= args.watchers <= 254 or args.posts < 1 or args.checkins < 1:
        parser.error("--neighbours and --watchers must be 1-254, --posts and --checkins positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="safebench-load-"))
    began = time.monotonic()
    try:
        night = busy_night(workdir, neighbours=args.neighbours, posts_each=args.posts, watchers=args.watchers,
                           checkins=args.checkins, flood_tries=args.flood, rate=args.rate,
                           say=lambda text: print(text, flush=True))
        status = report(night, args)
        print(f"whole run: {time.monotonic() - began:.0f} s")
        if status:
            print(night.hub_log, file=sys.stderr)
        return status
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
