"""What the radio bridge costs: airtime on the mesh, latency in the hub, memory on the Pi.

Four figures, each measured through the real code on a fresh temporary
instance (SQLite, migrations applied), with the simulated radio speaking the
real Meshtastic serial protocol on a pseudo-terminal to the real
``meshtastic`` SerialInterface. Run it from the repository root::

    .venv/bin/python tests/benchmarks/bridge.py [--quick] [--only airtime,latency,urgent,memory,flood]

1. airtime  a scripted six-hour night on LONG_FAST: what our bridge puts on
            the air against a naive bridge that confirms every message;
2. latency  packet in at the radio to its patrol-log row committed, p50/p95;
3. urgent   an SOS queued behind 50 routine messages: time to the radio;
4. memory   resident memory of ``safebench bridge``, with the simulated radio
            inside it and with the simulated radio in another process;
5. flood    150 SOS spoofed from one steward's node id in 5 s, then another
            steward's SOS: its time to the radio, and the flood's airtime
            against one alert's whole escalation.

The whole run takes about three minutes on two cores (``--quick``: about a minute).
"""

from __future__ import annotations

import argparse
import logging
import math
import queue
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Self

from flask import Flask

# This folder is on sys.path when the script runs: the hub's environment without the caller's settings.
from load import clean_env
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from radio_bridge.airtime import HOUR as HOUR_S
from radio_bridge.airtime import AirtimeLedger, duty_cycle_budget, text_airtime
from radio_bridge.bridge import Bridge, BridgeSettings
from radio_bridge.inbound import Inbound
from radio_bridge.mesh import RadioLink, RadioSpec, decode_packet
from radio_bridge.packets import Ack, TextPacket
from radio_bridge.sender import Sender
from radio_bridge.simulator import SimNode, SimulatedRadio
from server import config, create_app
from server.clock import utcnow
from server.db import run_in_transaction
from server.domain import alerts, mandates, outbox, patrol, people, radio, radio_trust
from server.domain.radio_text import with_bell
from server.extensions import db
from server.migrating import apply_migrations

# -- aims, printed next to the figures ------------------------------------------------

AIRTIME_RATIO_AIM = 0.10  # ours / naive: at least ten times less air than confirming everything
DUTY_SHARE_AIM = 0.10  # busiest hour: at most a tenth of the hour's EU 868 budget
LATENCY_P95_AIM_S = 0.5  # under the 0.72 s one LONG_FAST packet spends on the air
RSS_AIM_MB = 60
FLOOD_AIRTIME_RATIO_AIM = 1.0  # the flood's airtime / one alert's whole escalation (first notice, again, everyone)

PRESET = "LONG_FAST"
REGION = "EU_868"
DECISION = "benchmark assembly"
TERM_DAYS = 28
CONNECT_TIMEOUT_S = 30
SCRIPT = "tests/benchmarks/bridge.py"
FIGURES = ("airtime", "latency", "urgent", "memory", "flood")

STEWARDS = (  # handle, handheld node number, where they patrol
    ("Kestrel", 0x1A2B3C01, "Market"),
    ("Heron", 0x1A2B3C02, "Station"),
    ("Wren", 0x1A2B3C03, "Riverside"),
    ("Robin", 0x1A2B3C04, "Park"),
)

log = logging.getLogger("bench.bridge")


# -- shared plumbing -------------------------------------------------------------------


class Clock:
    """The night's clock, stepped by hand; the app asks it for the time."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def make_app(instance: Path, clock: Callable[[], datetime] = utcnow) -> Flask:
    """A hub app on a fresh instance, migrations applied.

    The database and the radio settings are pinned, so ``SAFEBENCH_*`` in the
    shell neither receives the benchmark's rows nor changes what is measured.
    """
    pinned = {key: value for key, value in config.DEFAULTS.items() if key.startswith("RADIO_")}
    app = create_app({
        **pinned,
        "INSTANCE": instance,
        "DATABASE_URL": config.default_database_uri(instance),
        "CLOCK": clock,
        "TIMEZONE": "UTC",
        "CACHE_TYPE": "NullCache",
        "CACHE_NO_NULL_WARNING": True,
    })
    apply_migrations(app)
    return app


def dispose(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def sim_nodes() -> list[SimNode]:
    return [SimNode(num, f"{handle} (sim)", handle[:4].upper()) for handle, num, _ in STEWARDS]


def register_stewards(app: Flask) -> None:
    with app.app_context():
        now = app.config["CLOCK"]()

        def work(session: Session) -> None:
            for handle, num, area in STEWARDS:
                mandates.seat(session, now, people.add_member(session, now, handle, num), people.STEWARD,
                              decision=people.Decision(now.date(), "benchmark", DECISION), term_days=TERM_DAYS,
                              cap_days=TERM_DAYS, why="benchmark seed")
                patrol.add_area(session, area)

        run_in_transaction(db.session, work)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def reproduce(figure: str, *flags: str) -> str:
    return " ".join([".venv/bin/python", SCRIPT, "--only", figure, *flags])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, pause: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting {timeout:.0f} s for {what}")
        time.sleep(pause)


@contextmanager
def running_bridge(app: Flask, sim: SimulatedRadio) -> Iterator[Bridge]:
    """The real Bridge, in a thread of this process, on the simulated radio's pty; stopped on the way out."""
    bridge = Bridge.from_config(app.config, RadioSpec.parse(f"serial:{sim.path}"))
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), name="bridge", daemon=True)
    thread.start()
    try:
        # node_num is set once the link is open and subscribed: packets from then on reach the bridge.
        wait_for(lambda: bridge.node_num is not None or not thread.is_alive(), CONNECT_TIMEOUT_S,
                 "the bridge to connect to the simulated radio")
        if not thread.is_alive():
            raise SystemExit("the bridge thread died while connecting")
        yield bridge
    finally:
        stop.set()
        thread.join(timeout=15)
        if thread.is_alive():
            print("warning: the bridge thread did not stop within 15 s", file=sys.stderr)


def bridge_file_log(path: Path) -> logging.Handler:
    """The bridge logs every event at INFO, as ``safebench bridge`` does; here into a file."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("radio_bridge")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def drop_file_log(handler: logging.Handler) -> None:
    logger = logging.getLogger("radio_bridge")
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    handler.close()


# -- 1. airtime of a scripted night ----------------------------------------------------


@dataclass(frozen=True)
class Said:
    """One message a steward sends during the night, and what a naive bridge would answer."""

    at: datetime
    handle: str
    node: int
    text: str
    confirmation: str


def night_script(start: datetime, hours: int = 6, every_min: int = 20) -> list[Said]:
    """Four stewards, six hours: ON, a check-in every 20 minutes, OFF; 3 incidents, 1 SOS, 1 arrest."""
    said: list[Said] = []

    def add(at: datetime, steward: tuple[str, int, str], text: str, confirmation: str) -> None:
        said.append(Said(at, steward[0], steward[1], text, confirmation))

    notes = ("", "", "", " all quiet", " lent a charger", "")
    for i, steward in enumerate(STEWARDS):
        handle, _, area = steward
        began = start + timedelta(minutes=2 * i)  # they arrive at the bench a couple of minutes apart
        add(began, steward, f"ON {area}", f"OK {handle}, shift started {began:%H:%M} at {area}. CI every 20 min.")
        for k in range(1, hours * 60 // every_min):
            at = began + timedelta(minutes=every_min * k, seconds=(17 * k + 5 * i) % 50)
            add(at, steward, "CI" + notes[(k + i) % len(notes)], f"OK {handle}, check-in logged {at:%H:%M}")
        ended = began + timedelta(hours=hours)
        add(ended, steward, "OFF", f"OK {handle}, shift ended {ended:%H:%M}. Thanks, get home safe.")
    kestrel, heron, wren, robin = STEWARDS
    events = [
        (timedelta(hours=1, minutes=47), kestrel, "INC loud argument outside the kebab shop, Market",
         "OK Kestrel, incident logged {t}. Thanks."),
        (timedelta(hours=3, minutes=13), wren, "INC broken glass on the pavement, Riverside steps",
         "OK Wren, incident logged {t}. Thanks."),
        (timedelta(hours=4, minutes=31), heron, "SOS Station underpass",
         "OK Heron, SOS sent to all on shift {t}. Help is coming."),
        (timedelta(hours=4, minutes=52), kestrel, "ARREST Market square 2 riot van",
         "OK Kestrel, arrest logged {t}, case opened. Dispatch informed."),
        (timedelta(hours=5, minutes=5), robin, "INC someone lost and upset, walked them to the Park gate",
         "OK Robin, incident logged {t}. Thanks."),
    ]
    for offset, steward, text, confirmation in events:
        at = start + offset + timedelta(seconds=31)
        add(at, steward, text, confirmation.format(t=f"{at:%H:%M}"))
    said.sort(key=lambda s: s.at)
    return said


def busiest_hour(sends: list[tuple[datetime, float]]) -> float:
    """The most airtime in any rolling hour (windows starting at a transmission)."""
    sends = sorted(sends)
    best = 0.0
    for i, (start, _) in enumerate(sends):
        total = sum(seconds for at, seconds in sends[i:] if at < start + timedelta(seconds=HOUR_S))
        best = max(best, total)
    return best


@dataclass
class AirtimeResult:
    messages: int
    outcomes: Counter
    hours: int
    ours_s: float
    ours_count: int
    ours_texts: list[str]
    wire_s: float  # recomputed from the payloads the simulated radio received
    ours_busiest_s: float
    naive_s: float
    naive_count: int
    naive_busiest_s: float
    naive_mean_bytes: float
    moderate_ours_s: float
    moderate_naive_s: float
    budget_per_hour_s: float
    states: Counter


def night_airtime(workdir: Path) -> AirtimeResult:
    """Play the night into the real inbound handler; drain the outbox through the real Sender onto the sim radio.

    The clock is stepped to each message's time, so everything the hub
    decides (what to queue, what it spends, its airtime ledger) happens at
    the moment it would on the night. Sends are not paced here (the
    simulated radio's 2 s rate limit is off): pacing is the bridge loop's
    job, and this figure counts airtime, not time.
    """
    start = datetime(2026, 11, 21, 18, 0)
    script = night_script(start)
    clock = Clock(start - timedelta(minutes=5))
    app = make_app(workdir / "instance", clock)
    register_stewards(app)
    sim = SimulatedRadio(nodes=sim_nodes(), link_path=workdir / "radio" / "ttySIM0", rate_limit=False,
                         region=REGION, modem_preset=PRESET).start()
    events: queue.Queue = queue.Queue()
    # The bridge journals every packet before acting on it; here the ACKs go straight to the queue.
    link = RadioLink(events, on_packet=lambda raw: events.put(decode_packet(raw, clock())))  # the night's time
    outcomes: Counter = Counter()
    try:
        info = link.open(RadioSpec.parse(f"serial:{sim.path}"))
        settings = BridgeSettings.from_config(app.config)
        sender = Sender(link, AirtimeLedger(), settings.sender)
        sender.configure_radio(info.modem_preset, info.region)
        if sender.preset != PRESET or sender.region != REGION:
            raise SystemExit(f"the simulated radio reports {sender.preset} {sender.region}")
        inbound = Inbound(radio_node=lambda: info.node_num, settings=settings.inbound)
        packet_ids = iter(random.Random(7).sample(range(1, 2**31), len(script)))
        with app.app_context():
            session = db.session
            for said in script:
                clock.now = said.at
                packet = TextPacket(said.node, next(packet_ids), said.text, said.at)
                outcomes[run_in_transaction(session, lambda s, p=packet: inbound.handle_text(s, clock.now, p))] += 1
                clock.now = said.at + timedelta(seconds=3)  # the bridge's next send slot
                _drain(session, sender, inbound, events, clock.now, sim)
            clock.now = script[-1].at + timedelta(minutes=5)
            _drain(session, sender, inbound, events, clock.now, sim)
            used = list(session.execute(select(outbox.AirtimeUse.at, outbox.AirtimeUse.seconds)))
            sent_texts = [m.text for m in session.scalars(select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id))]
            states = Counter(session.scalars(select(outbox.OutboxMessage.state)))
    finally:
        link.close()
        sim.stop()
        dispose(app)

    ours_s = math.fsum(seconds for _, seconds in used)
    wire_s = math.fsum(text_airtime(p.text or "", PRESET) for p in sim.sent_packets if p.portnum == "TEXT_MESSAGE_APP")
    confirmations = [(s.at + timedelta(seconds=3), text_airtime(s.confirmation, PRESET)) for s in script]
    # A naive bridge sends the very same urgent broadcasts too, and a confirmation for every message.
    naive_sends = confirmations + [(at, seconds) for at, seconds in used]
    return AirtimeResult(
        messages=len(script), outcomes=outcomes, hours=6,
        ours_s=ours_s, ours_count=len(used), ours_texts=sent_texts, wire_s=wire_s,
        ours_busiest_s=busiest_hour(used),
        naive_s=math.fsum(seconds for _, seconds in naive_sends), naive_count=len(naive_sends),
        naive_busiest_s=busiest_hour(naive_sends),
        naive_mean_bytes=statistics.fmean(len(s.confirmation.encode()) for s in script),
        moderate_ours_s=math.fsum(text_airtime(t, "LONG_MODERATE") for t in sent_texts),
        moderate_naive_s=math.fsum(text_airtime(t, "LONG_MODERATE") for t in sent_texts)
        + math.fsum(text_airtime(s.confirmation, "LONG_MODERATE") for s in script),
        budget_per_hour_s=duty_cycle_budget(REGION),
        states=states,
    )


def _drain(session: Session, sender: Sender, inbound: Inbound, events: queue.Queue, now: datetime,
           sim: SimulatedRadio) -> None:
    """Send everything the outbox has due, as the bridge's send slots would, and take in the ACKs."""
    while True:
        sender.housekeeping(session, now)
        session.commit()
        picked = sender.pick(session, now)
        if picked is None:
            session.commit()
            return
        message, seconds = picked
        sent_before = len(sim.sent_packets)
        sender.send(session, now, message, seconds)
        sim.wait_for_sent(sent_before + 1, timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the implicit ACK of a broadcast, as the bridge would file it
            try:
                heard = events.get(timeout=0.5)
            except queue.Empty:
                break
            if isinstance(heard, Ack):
                run_in_transaction(session, lambda s, a=heard: inbound.handle_ack(s, now, a))
                break


def print_airtime(r: AirtimeResult) -> None:
    budget_night = r.budget_per_hour_s * r.hours
    ratio = r.ours_s / r.naive_s if r.naive_s else float("nan")
    share_ours, share_naive = r.ours_busiest_s / r.budget_per_hour_s, r.naive_busiest_s / r.budget_per_hour_s
    said = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items(), key=lambda kv: -kv[1]))
    print("\n== 1. Airtime of a scripted night (LONG_FAST, EU 868) ==")
    print(f"night: 4 stewards, {r.hours} h, {r.messages} messages heard ({said})")
    print(f"ours   {r.ours_s:7.2f} s on air in {r.ours_count} transmissions (the urgent broadcasts; no confirmations);"
          f" outbox: {', '.join(f'{n} {state}' for state, n in sorted(r.states.items()))}")
    for text in r.ours_texts:
        print(f"         {text!r}  {text_airtime(text, PRESET):.2f} s")
    print(f"naive  {r.naive_s:7.2f} s on air in {r.naive_count} transmissions ({r.naive_count - r.ours_count}"
          f" confirmations of {r.naive_mean_bytes:.0f} bytes on average, plus the same urgent broadcasts)")
    print(f"ratio ours/naive       {ratio:.3f}   (aim <= {AIRTIME_RATIO_AIM})  {verdict(ratio <= AIRTIME_RATIO_AIM)}")
    print(f"EU 868 duty-cycle budget {r.budget_per_hour_s:.0f} s/h, {budget_night:.0f} s for the night: "
          f"ours {r.ours_s / budget_night:.2%} of the night's, naive {r.naive_s / budget_night:.2%}")
    print(f"busiest hour           ours {r.ours_busiest_s:.2f} s = {share_ours:.2%} of 360 s, naive "
          f"{r.naive_busiest_s:.2f} s = {share_naive:.2%}   (aim <= {DUTY_SHARE_AIM:.0%})  "
          f"{verdict(share_ours <= DUTY_SHARE_AIM)}")
    print(f"same night on LONG_MODERATE: ours {r.moderate_ours_s:.1f} s, naive {r.moderate_naive_s:.1f} s")
    print(f"cross-check: airtime of the payloads the radio received {r.wire_s:.2f} s (ledger {r.ours_s:.2f} s)")
    print("counted: the hub radio's own transmissions, once each; every relay repeats each one again,")
    print("  and each naive confirmation is a direct message the handheld must also ACK over the air.")
    print(f"reproduce: {reproduce('airtime')}")


# -- 2. packet in to log row committed -------------------------------------------------


class CommitStamps:
    """When each heard packet's transaction committed, stamped on the bridge's thread.

    The inbound handler records (sender, packet id) in ``heard_packet`` in
    the same transaction as the log entry. An ``after_insert`` hook notes the
    packet id (and whether a log entry was inserted with it); the session's
    ``after_commit`` stamps ``time.monotonic()`` on them the moment SQLite's
    COMMIT has returned, i.e. when the row is durable and visible to the web
    app. No polling, and nothing in the bridge changed.
    """

    def __init__(self, thread_name: str = "bridge") -> None:
        self.thread_name = thread_name
        self.committed: dict[int, float] = {}
        self._heard: list[int] = []
        self._log_rows = 0
        self.without_log_row = 0
        self._hooks = [
            (radio.HeardPacket, "after_insert", self._on_heard),
            (patrol.LogEntry, "after_insert", self._on_log_row),
            (Session, "after_commit", self._on_commit),
            (Session, "after_rollback", self._on_rollback),
        ]

    def __enter__(self) -> Self:
        for target, name, fn in self._hooks:
            event.listen(target, name, fn)
        return self

    def __exit__(self, *exc: object) -> None:
        for target, name, fn in self._hooks:
            event.remove(target, name, fn)

    def _mine(self) -> bool:
        return threading.current_thread().name == self.thread_name

    def _on_heard(self, mapper, connection, target) -> None:
        if self._mine():
            self._heard.append(target.packet_id)

    def _on_log_row(self, mapper, connection, target) -> None:
        if self._mine():
            self._log_rows += 1

    def _on_commit(self, session: Session) -> None:
        # Fired for the savepoint inside first_time_heard too: only the outermost COMMIT counts.
        if not self._mine() or session.in_nested_transaction() or not self._heard:
            return
        now = time.monotonic()
        if self._log_rows:
            for packet_id in self._heard:
                self.committed[packet_id] = now
        else:
            self.without_log_row += len(self._heard)
        self._heard, self._log_rows = [], 0

    def _on_rollback(self, session: Session) -> None:
        if self._mine() and not session.in_nested_transaction():
            self._heard, self._log_rows = [], 0


@dataclass
class LatencyResult:
    count: int
    rate: float
    warmup: int
    latencies: list[float] = field(default_factory=list)
    injected_s: float = 0.0
    missing: int = 0
    rows: int = 0
    without_log_row: int = 0


def checkin_latency(workdir: Path, count: int, rate: float, warmup: int = 20) -> LatencyResult:
    """Inject check-ins at the simulated radio at ``rate`` a second; time each until its log row is committed."""
    app = make_app(workdir / "instance")
    register_stewards(app)
    handler = bridge_file_log(workdir / "bridge.log")
    sim = SimulatedRadio(nodes=sim_nodes(), link_path=workdir / "radio" / "ttySIM0", rate_limit=False,
                         region=REGION, modem_preset=PRESET).start()
    result = LatencyResult(count=count, rate=rate, warmup=warmup)
    texts = ("CI", "CI", "CI all quiet", "OK", "CHECKIN lent a charger")
    rng = random.Random(11)
    ids = iter(rng.sample(range(1, 2**31), count + warmup + 10))
    injected: dict[int, float] = {}
    try:
        with CommitStamps() as stamps, running_bridge(app, sim):
            for handle, num, area in STEWARDS:
                sim.deliver_text(num, f"ON {area}", to=sim.node_num, packet_id=next(ids))
            for i in range(warmup):  # not measured: first-use costs (imports, statement caches)
                sim.deliver_text(STEWARDS[i % len(STEWARDS)][1], "CI", to=sim.node_num, packet_id=next(ids))
            wait_for(lambda: len(stamps.committed) >= warmup + len(STEWARDS), 30, "the warm-up check-ins")
            began = time.monotonic()
            for i in range(count):
                due = began + i / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                packet_id = next(ids)
                node = STEWARDS[i % len(STEWARDS)][1]
                injected[packet_id] = time.monotonic()
                sim.deliver_text(node, texts[i % len(texts)], to=sim.node_num, packet_id=packet_id)
            result.injected_s = time.monotonic() - began
            try:
                wait_for(lambda: all(p in stamps.committed for p in injected), 30, "the last check-ins")
            except SystemExit as gave_up:
                print(f"warning: {gave_up}", file=sys.stderr)
            result.without_log_row = stamps.without_log_row
            result.latencies = [stamps.committed[p] - t for p, t in injected.items() if p in stamps.committed]
            result.missing = sum(1 for p in injected if p not in stamps.committed)
        with app.app_context():
            result.rows = db.session.scalar(
                select(func.count()).select_from(patrol.LogEntry)
                .where(patrol.LogEntry.kind == patrol.CHECK_IN, patrol.LogEntry.source == patrol.SOURCE_RADIO)
            ) or 0
    finally:
        sim.stop()
        drop_file_log(handler)
        dispose(app)
    return result


def print_latency(r: LatencyResult, flags: list[str]) -> None:
    ms = [x * 1000 for x in r.latencies]
    p50, p95 = percentile(ms, 0.50), percentile(ms, 0.95)
    print("\n== 2. Packet in to log row committed (real Bridge, real SerialInterface, simulated radio) ==")
    print(f"injected {r.count} check-ins from 4 stewards at {r.rate:g}/s (took {r.injected_s:.1f} s), after "
          f"{r.warmup} unmeasured warm-up check-ins; {r.rows} check-in rows in the log "
          f"(= {r.count + r.warmup} expected), {r.missing} never committed")
    print(f"         (one LONG_FAST channel carries at most {1 / text_airtime('CI', PRESET):.1f} such packets/s: "
          f"{r.rate:g}/s is a stress rate, far above any real night)")
    print(f"latency  p50 {p50:.1f} ms, p95 {p95:.1f} ms   (aim p95 <= {LATENCY_P95_AIM_S * 1000:.0f} ms)  "
          f"{verdict(p95 <= LATENCY_P95_AIM_S * 1000 and not r.missing)}")
    if ms:
        print(f"         p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms")
    print("measured: from just before the simulated radio writes the packet to the pty, to the moment the")
    print("  bridge's COMMIT of that packet's log row (heard_packet + log_entry, one transaction) returned,")
    print("  stamped by SQLAlchemy after_insert/after_commit hooks on the bridge thread; the bridge logs each")
    print("  event at INFO to a file, as in production.")
    print(f"reproduce: {reproduce('latency', *flags)}")


# -- 3. an SOS behind fifty routine messages ------------------------------------------

ROUTINE = (
    (outbox.NORMAL, "Check-in overdue: Wren, last seen {n:02d}:40 near Riverside. Anyone close?"),
    (outbox.LOW, "Aid board: blankets and a flask offered near the Canal (post {n})."),
    (outbox.NORMAL, "Reminder: bench closes at midnight, bring chargers back. ({n})"),
    (outbox.LOW, "Drill on Sunday 14:00 at the bench, all stewards welcome. ({n})"),
)


@dataclass
class UrgentTrial:
    latency_s: float
    routine_before: int
    routine_after_queued: int
    outcome: str


def urgent_latency(workdir: Path, trials: int, routine: int = 50) -> tuple[list[UrgentTrial], float]:
    """Queue ``routine`` messages, then, at a random moment in a send slot, an SOS; time it to the radio."""
    app = make_app(workdir / "instance")
    register_stewards(app)
    handler = bridge_file_log(workdir / "bridge.log")
    # The firmware's rate limit on: what the bridge sends must pass it as on a real radio.
    sim = SimulatedRadio(nodes=sim_nodes(), link_path=workdir / "radio" / "ttySIM0", rate_limit=True,
                         region=REGION, modem_preset=PRESET).start()
    rng = random.Random(5)
    results: list[UrgentTrial] = []
    try:
        with running_bridge(app, sim) as bridge, app.app_context():
            interval = bridge.settings.sender.send_interval
            session = db.session

            def queue_routine(s: Session) -> None:
                for n in range(routine):
                    priority, text = ROUTINE[n % len(ROUTINE)]
                    outbox.queue_message(s, utcnow(), text.format(n=n + 1), priority=priority)

            run_in_transaction(session, queue_routine)

            def texts() -> list:
                return [p for p in sim.sent_packets if p.portnum == "TEXT_MESSAGE_APP"]

            for k in range(1, trials + 1):
                seen = len(texts())
                sim.wait_until(lambda s=seen: len(texts()) > s, timeout=3 * interval + 5)  # a routine slot just went
                time.sleep(rng.uniform(0, interval))  # the SOS lands anywhere in the slot
                kestrel = people.find_member(session, "Kestrel")
                marker = f"Market (drill {k})"
                run_in_transaction(session, lambda s, m=kestrel, w=marker: alerts.raise_sos(
                    s, utcnow(), m, w, patrol.SOURCE_WEB))
                queued_at = time.time()  # SentPacket.time is time.time() too
                session.expire_all()
                if not sim.wait_until(lambda w=marker: any(w in (p.text or "") for p in texts()),
                                      timeout=3 * interval + 5):
                    raise SystemExit(f"the SOS of trial {k} never reached the radio")
                sent = texts()
                index = next(i for i, p in enumerate(sent) if marker in (p.text or ""))
                sos = sent[index]
                routine_sent = [p for p in sent[:index] if "\x07" not in (p.text or "")]
                results.append(UrgentTrial(
                    latency_s=sos.time - queued_at,
                    routine_before=len(routine_sent),
                    routine_after_queued=sum(1 for p in routine_sent if p.time > queued_at),
                    outcome=sos.outcome,
                ))
    finally:
        sim.stop()
        drop_file_log(handler)
        dispose(app)
    return results, interval


def print_urgent(trials: list[UrgentTrial], interval: float, routine: int, flags: list[str]) -> None:
    worst = max(t.latency_s for t in trials)
    # A routine message whose slot began a moment before the SOS was committed still goes first: at most one.
    jumped = all(t.routine_after_queued <= 1 for t in trials)
    print(f"\n== 3. An SOS behind {routine} routine messages (real Bridge, simulated radio, rate limit on) ==")
    for k, t in enumerate(trials, start=1):
        print(f"SOS {k}: queued->radio {t.latency_s:.2f} s; routine sent before it {t.routine_before} of {routine} "
              f"queued ({t.routine_after_queued} after the SOS was queued); radio: {t.outcome}")
    latencies = [t.latency_s for t in trials]
    print(f"urgent latency  median {statistics.median(latencies):.2f} s, worst {worst:.2f} s   "
          f"(aim <= one send interval, {interval:g} s; at most the one routine message already on its way)  "
          f"{verdict(worst <= interval and jumped)}")
    print("measured: from the commit of raise_sos (alert + outbox row, URGENT) to the simulated radio's record")
    print("  of the frame it received; each SOS is queued at a random moment in a send slot.")
    print(f"reproduce: {reproduce('urgent', *flags)}")


# -- 4. memory of the bridge process ---------------------------------------------------


def safebench_command() -> list[str]:
    script = Path(sys.executable).with_name("safebench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server"]


def memory_kb(pid: int) -> dict[str, int]:
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    # Pss: resident pages with those shared by other processes divided among
    # them (on the Pi, the web server and scheduler share libpython and more).
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                key, _, value = line.partition(":")
                if key == "Pss":
                    found["Pss"] = int(value.split()[0])
    except OSError:
        pass
    return found


@dataclass
class MemoryResult:
    mode: str
    argv: list[str]
    env_note: str
    vm: dict[str, int]
    log_rows: int
    sent: int
    connected_after_s: float
    start_note: str  # what the bridge found: a fresh instance to migrate, or a current database (a restart)


class BridgeProcess:
    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        with log_path.open("w") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def db_query(instance: Path, sql: str) -> list[tuple]:
    path = instance / "safebench.db"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def wait_connected(proc: BridgeProcess, instance: Path) -> float:
    began = time.monotonic()

    def connected() -> bool:
        if not proc.alive():
            raise SystemExit(f"the bridge exited with {proc.process.returncode}:\n{proc.tail()}")
        return bool(db_query(instance, "SELECT connected FROM bridge_status WHERE connected = 1"))

    try:
        wait_for(connected, CONNECT_TIMEOUT_S, "the bridge process to connect", pause=0.1)
    except SystemExit:
        print(proc.tail(), file=sys.stderr)
        raise
    return time.monotonic() - began


def queue_some(instance: Path) -> None:
    """Outbound traffic for the bridge to send: three routine broadcasts and one urgent, through the domain."""
    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    try:
        with app.app_context():
            def work(session: Session) -> None:
                now = utcnow()
                for n in range(3):
                    outbox.queue_message(session, now, f"Reminder {n + 1}: bench closes at midnight.")
                alerts.raise_sos(session, now, None, "Market (drill)", patrol.SOURCE_CLI)

            run_in_transaction(db.session, work)
    finally:
        dispose(app)


def traffic_counts(instance: Path) -> tuple[int, int]:
    rows = db_query(instance, "SELECT count(*) FROM log_entry WHERE source = 'radio'")
    sent = db_query(instance, "SELECT count(*) FROM outbox_message WHERE state IN ('sent', 'acked')")
    return (rows[0][0] if rows else 0), (sent[0][0] if sent else 0)


def bridge_memory_sim(workdir: Path, seconds: float) -> MemoryResult:
    """``safebench bridge --radio sim``: the simulated radio (and its chattering stewards) runs inside it."""
    instance = workdir / "instance-sim"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [*safebench_command(), "bridge", "--radio", "sim"]
    proc = BridgeProcess(argv, clean_env(instance, SIM_CHATTER_S="0.5"), workdir / "bridge-sim.log")
    try:
        connected_after = wait_connected(proc, instance)
        queue_some(instance)
        time.sleep(seconds)
        vm = memory_kb(proc.process.pid)
        rows, sent = traffic_counts(instance)
    finally:
        proc.stop()
    return MemoryResult("sim radio inside the bridge process", argv,
                        "SAFEBENCH_INSTANCE=<tmp> SAFEBENCH_SIM_CHATTER_S=0.5", vm, rows, sent, connected_after,
                        "a fresh instance, migrated first")


def bridge_memory_serial(workdir: Path, seconds: float) -> MemoryResult:
    """``safebench bridge --radio serial:<pty>``, the simulated radio in this process: the bridge alone."""
    instance = workdir / "instance-serial"
    app = make_app(instance)
    register_stewards(app)
    dispose(app)
    sim = SimulatedRadio(nodes=sim_nodes(), link_path=workdir / "radio" / "ttySIM0", region=REGION,
                         modem_preset=PRESET).start()
    argv = [*safebench_command(), "bridge", "--radio", f"serial:{sim.path}"]
    proc = BridgeProcess(argv, clean_env(instance), workdir / "bridge-serial.log")
    try:
        connected_after = wait_connected(proc, instance)
        queue_some(instance)
        rng = random.Random(3)
        on_shift: set[int] = set()
        until = time.monotonic() + seconds
        while time.monotonic() < until:  # about as busy as the sim's chatter at 0.5 s
            _handle, num, area = rng.choice(STEWARDS)
            if num not in on_shift:
                on_shift.add(num)
                sim.deliver_text(num, f"ON {area}", to=sim.node_num)
            else:
                sim.deliver_position(num, 52.09 + rng.uniform(-1e-3, 1e-3), 5.12 + rng.uniform(-1e-3, 1e-3))
                sim.deliver_text(num, rng.choice(("CI", "CI all quiet", "OK")), to=sim.node_num)
            time.sleep(rng.uniform(0.25, 0.75))
        vm = memory_kb(proc.process.pid)
        rows, sent = traffic_counts(instance)
    finally:
        proc.stop()
        sim.stop()
    return MemoryResult("sim radio in another process (serial:<pty>)", argv, "SAFEBENCH_INSTANCE=<tmp>", vm, rows,
                        sent, connected_after, "database current: as a restart after a crash")


IMPORT_PROBE = """
import importlib, sys
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
steps = [("python", [])] + [(label, modules.split()) for label, modules in (
    ("SQLAlchemy", "sqlalchemy sqlalchemy.orm"),
    ("domain layer", "server.domain.people server.domain.patrol server.domain.outbox server.domain.radio"),
    ("meshtastic", "meshtastic meshtastic.serial_interface meshtastic.tcp_interface"),
    ("radio_bridge", "radio_bridge.main"))]
last = 0.0
for label, modules in steps:
    for name in modules:
        importlib.import_module(name)
    now = rss()
    print(f"{label} {now - last:.1f}")
    last = now
web = [name for name in ("flask", "alembic", "werkzeug", "flask_sqlalchemy") if name in sys.modules]
print(f"web-modules {len(web)}")
"""


def import_breakdown() -> list[tuple[str, float]]:
    """Resident memory each layer of the bridge's imports adds (python -m radio_bridge), in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE], check=False, capture_output=True, text=True, timeout=60,
                          env=clean_env(Path(tempfile.gettempdir()) / "unused"))
    if done.returncode != 0:
        return []
    return [(line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1])) for line in done.stdout.splitlines()]


def print_memory(results: list[MemoryResult], seconds: float, flags: list[str],
                 breakdown: list[tuple[str, float]]) -> None:
    print("\n== 4. Resident memory of the bridge process (safebench bridge, /proc/<pid>/status) ==")
    for r in results:
        rss, hwm = r.vm["VmRSS"] / 1024, r.vm["VmHWM"] / 1024
        shown = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(r.argv))
        print(f"{r.mode}:")
        print(f"  {shown}   [{r.env_note}]")
        print(f"  VmRSS {rss:.1f} MB, VmHWM {hwm:.1f} MB   (aim <= {RSS_AIM_MB} MB)  {verdict(hwm <= RSS_AIM_MB)}")
        if "Pss" in r.vm:
            print(f"  Pss {r.vm['Pss'] / 1024:.1f} MB (its share once pages shared with other processes are divided)")
        print(f"  radio connected {r.connected_after_s:.1f} s after start ({r.start_note}); in {seconds:g} s of traffic it logged "
              f"{r.log_rows} radio rows and sent {r.sent} messages")
    if len(results) == 2:
        diff = (results[0].vm["VmRSS"] - results[1].vm["VmRSS"]) / 1024
        print(f"the simulated radio's share of the sim-mode process: about {diff:.1f} MB of VmRSS")
    web_modules = [mb for label, mb in breakdown if label == "web-modules"]
    breakdown = [(label, mb) for label, mb in breakdown if label != "web-modules"]
    if breakdown:
        parts = ", ".join(f"{label} {'+' if i else ''}{mb:.1f}" for i, (label, mb) in enumerate(breakdown))
        print(f"where it goes (VmRSS in MB after importing, in a fresh interpreter): {parts}")
        print("  (safebench bridge loads neither Flask nor Alembic; a database behind the code is migrated by a")
        print("   short-lived child first: " + ("confirmed" if web_modules == [0] else "BUT IT DID LOAD THEM") + ")")
    print("note: with --radio sim the simulated radio and its stewards run inside the bridge process; on a")
    print("  bench with a real radio only the bridge runs there, as in the serial:<pty> line.")
    print(f"reproduce: {reproduce('memory', *flags)}")


# -- 5. a flood of spoofed SOS, then another steward's SOS ----------------------------

# What the stranger sends as Kestrel, by channel traffic (no key): mostly a bare
# "SOS", every tenth one naming a place, as an attacker varying the text to get
# past a filter would; one place longer than the 60 characters the air shows.
FLOOD_PLACES = (
    "Station underpass",
    "Market",
    "behind the library on Mill Lane, by the recycling bins near the back wall",
    "Park gate",
    "Canal path by the lock",
    "Riverside steps",
)
SECOND_SOS = "SOS behind the library"  # Wren's, a verified direct message from her own radio
SECOND_MARK = "Wren, behind the library"  # how it reads on the air


def flood_script(count: int) -> list[str]:
    return [f"SOS {FLOOD_PLACES[(i // 10) % len(FLOOD_PLACES)]}" if i % 10 == 5 else "SOS" for i in range(count)]


def flood_instance(workdir: Path) -> tuple[Flask, list[SimNode]]:
    """A fresh instance: the four stewards registered, their radio keys pinned, all of them on shift."""
    app = make_app(workdir / "instance")
    register_stewards(app)
    nodes = sim_nodes()
    with app.app_context():
        now = utcnow()

        def work(session: Session) -> None:
            for (handle, _num, area), node in zip(STEWARDS, nodes, strict=True):
                member = people.find_member(session, handle)
                radio_trust.pin_key(session, now, member, node.public_key, by=None)
                patrol.start_shift(session, now, member, area, patrol.SOURCE_WEB)

        run_in_transaction(db.session, work)
    return app, nodes


def _air_label(text: str) -> str:
    if SECOND_MARK in text:
        return "Wren's SOS"
    if "also reported at" in text:
        return "flood: place update"
    if "to respond" in text:
        return "flood: first notice"
    return "flood: " + text[:30]


@dataclass
class FloodTrial:
    when: str  # "after" the flood, "during" it, or "baseline" (no flood)
    latency_s: float  # Wren's SOS written to the radio's line by the sim (deliver) -> the radio took its broadcast
    since_last_send_s: float | None  # how long before Wren's SOS the radio's previous transmission was written
    ahead: list[str]  # what the radio took between Wren's SOS reaching it and her broadcast
    flood_s: float = 0.0  # how long the flood took to send
    offset_s: float = 0.0  # Wren's SOS, this long after the flood's last packet ("after") or its first ("during")
    timeline: list[tuple[float, str]] = field(default_factory=list)  # the radio's transmissions, from Wren's SOS
    on_air: list[tuple[str, float, float]] = field(default_factory=list)  # the flood's messages: text, outbox, ledger
    rate_limited: int = 0
    alerts_by_flooded: int = 0
    repeats: int = 0
    places_heard: int = 0
    heard: int = 0  # flood packets the hub acted on (heard_packet rows for the spoofed node)
    escalation_s: float = 0.0  # one whole escalation of the flood's alert (alert_text stage 0, 1, 2)
    escalation_texts: list[str] = field(default_factory=list)
    wire_s: float = 0.0  # the flood's messages, from the payloads the radio received
    undrained: int = 0  # flood messages still queued when the trial gave up waiting

    @property
    def flood_airtime_s(self) -> float:
        return math.fsum(outbox_s for _, outbox_s, _ in self.on_air)

    @property
    def ledger_s(self) -> float:
        return math.fsum(ledger for _, _, ledger in self.on_air)


def escalation_airtime(alert: alerts.Alert) -> tuple[float, list[str]]:
    """The first notice, the second broadcast and the ALL STEWARDS escalation of ``alert``, as queued (bell)."""
    texts = [with_bell(alerts.alert_text(alert, stage)) for stage in (0, 1, 2)]
    return math.fsum(text_airtime(t, PRESET) for t in texts), texts


def flood_trial(workdir: Path, rng: random.Random, count: int, seconds: float, when: str,
                phase: float = 0.0) -> tuple[FloodTrial, float]:
    """One trial on a fresh instance. ``when``: Wren's SOS "after" the flood (once everything it queued
    has gone, ``phase`` seconds after the radio's last transmission: 0 is the worst moment, just after a
    send), "during" it (at a random moment while the flood's updates wait in the outbox), or with no
    flood at all, the bridge idle: the "baseline"."""
    app, nodes = flood_instance(workdir)
    handler = bridge_file_log(workdir / "bridge.log")
    sim = SimulatedRadio(nodes=nodes, link_path=workdir / "radio" / "ttySIM0", rate_limit=True,
                         region=REGION, modem_preset=PRESET).start()
    kestrel, wren = STEWARDS[0][1], STEWARDS[2][1]
    flooded = when != "baseline"
    try:
        with running_bridge(app, sim) as bridge, app.app_context():
            interval = bridge.settings.sender.send_interval
            session = db.session

            def texts() -> list:
                return [p for p in sim.sent_packets if p.portnum == "TEXT_MESSAGE_APP"]

            def waiting() -> int:
                session.expire_all()
                return session.scalar(select(func.count()).select_from(outbox.OutboxMessage).where(
                    outbox.OutboxMessage.state.in_((outbox.QUEUED, outbox.SENDING)))) or 0

            def heard_from(node: int) -> int:
                session.expire_all()
                return session.scalar(select(func.count()).select_from(radio.HeardPacket)
                                      .where(radio.HeardPacket.sender == node)) or 0

            arrival: dict[str, float] = {}

            def second_sos() -> None:
                previous = [p for p in texts() if p.outcome != "rate-limited"]
                arrival["at"] = time.time()  # SentPacket.time is time.time() too
                arrival["previous"] = previous[-1].time if previous else math.nan
                sim.deliver_dm(wren, SECOND_SOS)

            flood_s = offset = 0.0
            if flooded:
                # "during": after the first update is queued, before the flood's last packet.
                cut = rng.uniform(1.0, seconds - 0.2) if when == "during" else math.inf
                began = time.monotonic()
                for i, text in enumerate(flood_script(count)):
                    due = began + i * seconds / count
                    if "at" not in arrival and due - began >= cut:
                        offset = time.monotonic() - began
                        second_sos()
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    sim.spoof(kestrel, text)
                flood_s = time.monotonic() - began
                if "at" not in arrival:
                    # Every flood packet acted on, then the radio's record of the last message the flood queued:
                    # the sim notes a write the moment it reads it, so phase 0 lands just after that send.
                    wait_for(lambda: heard_from(kestrel) >= count, 30, "the bridge to act on the flood")
                    queued = session.scalar(select(func.count()).select_from(outbox.OutboxMessage)) or 0
                    if not sim.wait_until(lambda: sum(p.outcome != "rate-limited" for p in texts()) >= queued,
                                          timeout=(queued + 2) * interval + 5):
                        raise SystemExit("the flood's messages never went out")
                    sent = [p.time for p in texts() if p.outcome != "rate-limited"]
                    pause = (sent[-1] if sent else 0.0) + phase - time.time()
                    if pause > 0:
                        time.sleep(pause)
                    offset = time.monotonic() - began - flood_s
                    second_sos()
            else:
                time.sleep(0.5)
                second_sos()
            sent_at = arrival["at"]
            if not sim.wait_until(lambda: any(SECOND_MARK in (p.text or "") for p in texts()),
                                  timeout=3 * interval + 10):
                raise SystemExit(f"Wren's SOS never reached the radio ({when})")
            on_line = texts()
            index = next(i for i, p in enumerate(on_line) if SECOND_MARK in (p.text or ""))
            sos = on_line[index]
            ahead = [p.text or "" for p in on_line[:index] if p.time > sent_at and p.outcome != "rate-limited"]

            # The flood's whole cost: wait until everything it queued has gone (a few send slots).
            deadline = time.monotonic() + 6 * interval + 5
            while waiting() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.3)  # the last implicit ACK filed
            since = sent_at - arrival["previous"]
            trial = FloodTrial(when=when, latency_s=sos.time - sent_at,
                               since_last_send_s=None if math.isnan(since) else since,
                               ahead=ahead, flood_s=flood_s, offset_s=offset,
                               timeline=[(p.time - sent_at, _air_label(p.text or "")) for p in texts()
                                         if p.outcome != "rate-limited"])
            if flooded:
                session.expire_all()
                flooded_member = people.find_member(session, STEWARDS[0][0])
                mine = list(session.scalars(select(alerts.Alert).where(alerts.Alert.member_id == flooded_member.id)))
                trial.alerts_by_flooded = len(mine)
                trial.undrained = waiting()
                wrens = session.scalars(select(alerts.Alert.id).where(alerts.Alert.member_id != flooded_member.id))
                wren_keys = tuple(f"alert:{alert_id}:" for alert_id in wrens)
                ledger = dict(session.execute(select(outbox.AirtimeUse.message_id, func.sum(outbox.AirtimeUse.seconds))
                                              .group_by(outbox.AirtimeUse.message_id)).all())
                # Everything on the air but Wren's alert is the flood's doing (its alert, any reply to the node).
                for message in session.scalars(select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id)):
                    if message.dedupe_key and message.dedupe_key.startswith(wren_keys):
                        continue
                    if message.state in (outbox.SENT, outbox.ACKED, outbox.ON_AIR):
                        trial.on_air.append((message.text, message.airtime_s, ledger.get(message.id, 0.0)))
                trial.wire_s = math.fsum(text_airtime(p.text or "", PRESET) for p in texts()
                                         if p.outcome != "rate-limited" and SECOND_MARK not in (p.text or ""))
                trial.rate_limited = sum(1 for p in texts() if p.outcome == "rate-limited")
                if mine:
                    alert = mine[0]
                    trial.repeats = alert.repeats
                    trial.places_heard = len(alert.places_heard.split("\n")) if alert.places_heard else 0
                    trial.escalation_s, trial.escalation_texts = escalation_airtime(alert)
                trial.heard = heard_from(kestrel)
    finally:
        sim.stop()
        drop_file_log(handler)
        dispose(app)
    return trial, interval


def worst_flood(workdir: Path) -> tuple[float, float, list[str]]:
    """The most air a flood of one node can buy against its alert's escalation, through the real domain
    code (no radio): the steward off shift and a bare first SOS (no place: the shortest escalation), then
    updates naming places longer than the air shows. Returns (flood s, escalation s, texts)."""
    app, _nodes = flood_instance(workdir)
    try:
        with app.app_context():
            now = utcnow()

            def work(session: Session) -> tuple[float, float, list[str]]:
                member = people.find_member(session, STEWARDS[0][0])
                patrol.end_shift(session, now, member, patrol.SOURCE_WEB)
                alert = alerts.raise_sos(session, now, member, None, patrol.SOURCE_RADIO, verified=False)
                for n in range(alerts.MAX_PLACE_UPDATES + 3):
                    alerts.raise_sos(session, now, member, f"{n} " + "W" * (patrol.MAX_PLACE - 2),
                                     patrol.SOURCE_RADIO, verified=False)
                queued = [m.text for m in
                          session.scalars(select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id))]
                escalation, _ = escalation_airtime(alert)
                return math.fsum(text_airtime(t, PRESET) for t in queued), escalation, queued

            return run_in_transaction(db.session, work)
    finally:
        dispose(app)


def flood_figure(workdir: Path, trials: int, count: int, seconds: float
                 ) -> tuple[dict[str, list[FloodTrial]], float, tuple[float, float, list[str]]]:
    """``trials`` times each: the baseline, Wren's SOS after the flood, Wren's SOS during it."""
    rng = random.Random(13)
    runs: dict[str, list[FloodTrial]] = {"baseline": [], "after": [], "during": []}
    interval = 0.0
    for k in range(1, trials + 1):
        for when, found in runs.items():
            # "after": Wren's SOS at evenly spread moments of the send slot, the first just after a send (the worst).
            phase = (k - 1) / trials * (interval or 2.5)
            trial, interval = flood_trial(workdir / f"{when}-{k}", rng, count, seconds, when, phase)
            found.append(trial)
    return runs, interval, worst_flood(workdir / "worst")


def print_flood(runs: dict[str, list[FloodTrial]], interval: float, worst: tuple[float, float, list[str]],
                count: int, seconds: float, flags: list[str]) -> None:
    print(f"\n== 5. {count} spoofed SOS from one steward's id in {seconds:g} s, then another steward's SOS "
          "(real Bridge, simulated radio, rate limit on) ==")
    baseline = runs["baseline"]
    flooded = runs["after"] + runs["during"]
    base = statistics.median(b.latency_s for b in baseline)
    print(f"no flood (the same SOS, the bridge idle, fresh instance, same run): to the radio in "
          f"{', '.join(f'{b.latency_s:.2f}' for b in baseline)} s: median {base:.2f} s")
    for t in flooded:
        where = (f"{t.offset_s:.2f} s after the flood's last packet, once its messages had gone" if t.when == "after"
                 else f"{t.offset_s:.2f} s into the flood")
        last = (f", {t.since_last_send_s:.2f} s after the radio's previous send"
                if t.since_last_send_s is not None else "")
        print(f"{t.when:>6}: Wren's SOS {where}{last}: to the radio in {t.latency_s:.2f} s "
              f"(x{t.latency_s / base:.0f} the no-flood figure); ahead of it: "
              + (", ".join(repr(a) for a in t.ahead) if t.ahead else "nothing"))
        print("        the radio sent (s from her SOS): "
              + "; ".join(f"{at:+.2f} {label}" for at, label in t.timeline))
    latencies = [t.latency_s for t in flooded]
    worst_latency = max(latencies)
    nothing_ahead = all(not t.ahead for t in flooded)
    print(f"Wren's SOS to the radio with the flood: median {statistics.median(latencies):.2f} s, worst "
          f"{worst_latency:.2f} s (ratio to no flood: median x{statistics.median(latencies) / base:.0f}; the flood "
          f"added at worst {worst_latency - base:.2f} s)   (aim <= {interval:g} s, nothing of the flood ahead of it)  "
          f"{verdict(worst_latency <= interval and nothing_ahead)}")
    # Back-to-back transmissions: the interval runs from the start of the send before (the library
    # sleeps 0.1 s after each write, which once stretched every slot to 2.6 s).
    gaps = [b[0] - a[0] for x in flooded for a, b in zip(x.timeline, x.timeline[1:]) if b[0] - a[0] < 2 * interval]
    if gaps:
        slot = max(gaps)
        print(f"  the send slot as the bridge runs it, between back-to-back transmissions: median "
              f"{statistics.median(gaps):.2f} s (min {min(gaps):.2f}, max {slot:.2f}; "
              f"RADIO_SEND_INTERVAL_S {interval:g} s "
              f"counted from the start of each send)")
        print(f"  the flood's added delay at worst {worst_latency - base:.2f} s against that slot, {slot:.2f} s "
              f"(aim: at most one slot)  {verdict(worst_latency - base <= slot and nothing_ahead)}")
    t = flooded[0]
    opened = [x.alerts_by_flooded for x in flooded]
    print(f"alerts the flood opened: {', '.join(map(str, opened))} per trial (aim 1)  "
          f"{verdict(all(n == 1 for n in opened))}; its alert counted {t.repeats} repeats and {t.places_heard} other "
          f"places; flood packets acted on {', '.join(str(x.heard) for x in flooded)} of {count}; "
          f"rate-limited writes {sum(x.rate_limited for x in flooded)}")
    print(f"the flood on the air: {', '.join(str(len(x.on_air)) for x in flooded)} messages per trial"
          + (f" (still queued at the end: {sum(x.undrained for x in flooded)})" if any(x.undrained for x in flooded)
             else ""))
    for text, outbox_s, _ledger in t.on_air:
        print(f"         {text!r}  {outbox_s:.2f} s")
    print(f"one whole escalation of that alert (alert_text stage 0, 1, 2, with the bell): {t.escalation_s:.2f} s")
    for text in t.escalation_texts:
        print(f"         {text!r}  {text_airtime(text, PRESET):.2f} s")
    ratios = [x.flood_airtime_s / x.escalation_s for x in flooded if x.escalation_s]
    ratio = max(ratios) if ratios else float("nan")
    print(f"flood airtime {t.flood_airtime_s:.2f} s (ledger {t.ledger_s:.2f} s, "
          f"payloads the radio took {t.wire_s:.2f} s)"
          f" / one escalation {t.escalation_s:.2f} s: ratio {ratio:.2f} (worst trial)   "
          f"(aim <= {FLOOD_AIRTIME_RATIO_AIM:g})  {verdict(ratio <= FLOOD_AIRTIME_RATIO_AIM)}")
    worst_s, worst_escalation, worst_texts = worst
    print(f"the most one node's flood can buy (real domain code, no radio: the steward off shift, a bare SOS, then "
          f"places longer than the air shows): {len(worst_texts)} messages, {worst_s:.2f} s against "
          f"{worst_escalation:.2f} s: ratio {worst_s / worst_escalation:.2f}")
    print("measured: from just before the simulated radio writes Wren's SOS (a verified direct message) to the pty, to")
    print("  the radio's record of the frame with her broadcast; the flood is channel traffic under Kestrel's node id")
    print(f"  without his key, at {count / seconds:g} packets/s (a LONG_FAST channel carries under 2/s: a stress "
          "rate);")
    print("  airtime is the outbox's airtime_s of every message but Wren's alert (the ledger and the payloads the")
    print("  radio took as cross-checks). Each trial and each no-flood run on a fresh instance. The flood's alert,")
    print("  never acknowledged, would later escalate as any alert does (stages 1 and 2): not counted here.")
    print(f"reproduce: {reproduce('flood', *flags)}")


# -- the run ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer check-ins, trials and seconds: a smoke run")
    parser.add_argument("--only", help=f"comma-separated figures to run: {','.join(FIGURES)} (default all)")
    parser.add_argument("--checkins", type=int, help="check-ins injected for the latency figure (default 1000, "
                        "quick 200)")
    parser.add_argument("--rate", type=float, default=25.0, help="check-ins injected per second (default 25)")
    parser.add_argument("--trials", type=int, help="SOS trials for the urgent figure (default 5, quick 2)")
    parser.add_argument("--memory-seconds", type=float, help="seconds of traffic before reading memory "
                        "(default 8, quick 3)")
    parser.add_argument("--flood-trials", type=int, help="trials of the flood figure, each with its no-flood baseline "
                        "(default 3, quick 1)")
    parser.add_argument("--flood", type=int, default=150, help="spoofed SOS in the flood (default 150)")
    parser.add_argument("--flood-seconds", type=float, default=5.0, help="seconds the flood takes (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (instances, bridge logs)")
    args = parser.parse_args(argv)
    args.figures = tuple(f.strip() for f in args.only.split(",")) if args.only else FIGURES
    unknown = set(args.figures) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    args.checkins = args.checkins or (200 if args.quick else 1000)
    args.trials = args.trials or (2 if args.quick else 5)
    args.memory_seconds = args.memory_seconds or (3.0 if args.quick else 8.0)
    args.flood_trials = args.flood_trials or (1 if args.quick else 3)
    if args.checkins < 1 or args.rate <= 0 or args.trials < 1 or args.memory_seconds <= 0:
        parser.error("--checkins, --rate, --trials and --memory-seconds must be positive")
    if args.flood_trials < 1 or args.flood < 1 or args.flood_seconds <= 0:
        parser.error("--flood-trials, --flood and --flood-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Warnings only: the migrations and the meshtastic library keep quiet.
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    quick = ["--quick"] if args.quick else []
    workdir = Path(tempfile.mkdtemp(prefix="safebench-bridge-bench-"))
    began = time.monotonic()
    try:
        if "airtime" in args.figures:
            print_airtime(night_airtime(workdir / "night"))
        if "latency" in args.figures:
            result = checkin_latency(workdir / "latency", args.checkins, args.rate)
            print_latency(result, [*quick, "--checkins", str(args.checkins), "--rate", f"{args.rate:g}"])
        if "urgent" in args.figures:
            trials, interval = urgent_latency(workdir / "urgent", args.trials)
            print_urgent(trials, interval, 50, [*quick, "--trials", str(args.trials)])
        if "memory" in args.figures:
            mem = [bridge_memory_sim(workdir / "memory", args.memory_seconds),
                   bridge_memory_serial(workdir / "memory", args.memory_seconds)]
            print_memory(mem, args.memory_seconds, [*quick, "--memory-seconds", f"{args.memory_seconds:g}"],
                         import_breakdown())
        if "flood" in args.figures:
            runs, interval, worst = flood_figure(workdir / "flood", args.flood_trials, args.flood, args.flood_seconds)
            print_flood(runs, interval, worst, args.flood, args.flood_seconds,
                        [*quick, "--flood-trials", str(args.flood_trials), "--flood", str(args.flood),
                         "--flood-seconds", f"{args.flood_seconds:g}"])
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nwhole run {time.monotonic() - began:.0f} s; all: .venv/bin/python {SCRIPT}{' --quick' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
