"""The federation over MQTT (issue 17): SOS latency bench to bench, and how many messages a bench verifies and stores.

Starts Debian's mosquitto on loopback (hub_setup's ACL, as tests/broker.py
does) and two fresh hubs on SQLite files, North and South, that trust each
other; North's "Market" borders South. Each hub's federation link runs as it
does in the bridge (radio_bridge/federation_link.py, on the shipped settings:
the outbox looked at every 0.5 s), both as threads of this one process.

1. latency   N SOS raised on North one after another (each committed, as the
             radio bridge commits it), each timed until South's board has it:
             p50 / p95 / max, beside the outbox poll interval (the floor).
2. verify    how many signed messages per second one bench checks and stores:
             a. ``federation.receive`` straight, one short transaction each (what
                the link does per message), for alerts (board, patrol log, air)
                and for counts; beside the bare Ed25519 check of the same
                messages in the same process (the yardstick);
             b. through the broker: N alerts published at once by North's login,
                until South's link has stored the last one.

With ``--one-core`` the process is pinned to one CPU, as a fairer stand-in for
one of a Pi Zero 2 W's (which are slower still: read the ratios). Run from the
repository root::

    .venv/bin/python tests/benchmarks/federation.py [--alerts 40] [--messages 2000] [--one-core]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nacl.signing import VerifyKey  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from radio_bridge.federation_link import link_for, run_in_thread, topic_for  # noqa: E402
from server import config  # noqa: E402
from server.clock import utcnow  # noqa: E402
from server.db import make_engine, run_in_transaction  # noqa: E402
from server.domain import alerts, federation, patrol  # noqa: E402
from server.extensions import db  # noqa: E402
from tests.broker import Broker, RawClient  # noqa: E402
from tests.helpers import add_steward, make_app  # noqa: E402

FEDERATION = "eastside"


class Hub:
    def __init__(self, folder: Path, name: str, broker: Broker, areas: tuple[str, ...]) -> None:
        self.name = name
        self.instance = folder / name
        self.instance.mkdir(parents=True)
        app = make_app(self.instance, utcnow)
        (self.instance / "broker-password").write_text(f"{name}-pw")
        with app.app_context():
            for area in areas:
                patrol.add_area(db.session, area)
            federation.join(db.session, utcnow(), self.instance, url=broker.url, federation=FEDERATION, bench=name,
                            username=name, password_file=str(self.instance / "broker-password"))
            db.session.commit()
        self.engine = make_engine(f"sqlite:///{self.instance / 'safebench.db'}", 5000)
        self.sessions = sessionmaker(self.engine)
        self.key = federation.load_signing_key(self.instance)
        self.stop = threading.Event()
        self.thread = None

    def start_link(self, poll: float | None = None) -> None:
        overrides = {"DATABASE_URL": f"sqlite:///{self.instance / 'safebench.db'}"}
        if poll is not None:
            overrides["FEDERATION_OUTBOX_POLL_S"] = poll
        settings = config.load_settings(self.instance, environ={}, overrides=overrides)
        link = link_for(settings, self.sessions)
        self.stop = threading.Event()
        self.thread = run_in_thread(link, self.stop)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.engine.dispose()

    def write(self, work):  # noqa: ANN001, ANN201
        with self.sessions() as session:
            result = work(session)
            session.commit()
            return result

    def read(self, work):  # noqa: ANN001, ANN201
        with self.sessions() as session:
            return work(session)


def trust(hub: Hub, other: Hub, neighbour_areas: tuple[str, ...] = ()) -> None:
    """The two hosts' decisions, taken as rows: ``hub`` trusts ``other`` (its key), with these areas bordering it."""
    def work(session):  # noqa: ANN001, ANN202
        now = utcnow()
        member = federation.FederationMember(name=other.name, public_key=federation.public_key_of(other.key),
                                             first_heard_at=now, trusted_at=now, trusted_by="benchmark",
                                             confirmed_at=now, confirmed_by="benchmark", arrested=0, released=0,
                                             neighbour_areas="\n".join(neighbour_areas) or None)
        session.add(member)
    hub.write(work)


def alerts_at(hub: Hub, source: str) -> int:
    return hub.read(lambda s: s.scalar(select(func.count()).select_from(federation.FederationAlert)
                                       .where(federation.FederationAlert.bench == source)))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def measure_latency(north: Hub, south: Hub, count: int, poll: float) -> list[float]:
    delays = []
    for n in range(count):
        before = alerts_at(south, "north")

        def raise_one(session, n=n):  # noqa: ANN001, ANN202
            steward = add_steward(session, utcnow(), f"steward{n}", f"!{0x10000 + n:08x}")
            alerts.raise_sos(session, utcnow(), steward, "Market", patrol.SOURCE_RADIO)

        started = time.perf_counter()
        north.write(raise_one)
        while alerts_at(south, "north") == before:
            if time.perf_counter() - started > 30:
                raise SystemExit(f"SOS {n} did not reach South within 30 s")
            time.sleep(0.002)
        delays.append(time.perf_counter() - started)
        # One after another, not a burst (a burst is part 2b), at a random moment of the link's poll: a fixed
        # pause would raise every SOS at the same point of it (an early run measured 450 ms so, 250 ms really).
        time.sleep(random.uniform(0.05, 0.05 + poll))
    return delays


def signed_messages(north: Hub, kind: str, count: int, start: int = 0) -> list[bytes]:
    now = utcnow()
    made = []
    for n in range(start, start + count):
        if kind == federation.ALERT:
            body = federation.build_alert(f"A{n % 1000}", federation.ALERT_SOS, "Market",
                                          now - timedelta(seconds=n), 1, True)
        else:
            body = {"arrested": n % 7, "released": n % 5}
        made.append(federation.wire(federation.sign(north.key, federation=FEDERATION, sender="north", kind=kind,
                                                    body=body, now=now, to=["south"])))
    return made


def measure_receive(south: Hub, payloads: list[bytes], batch: int) -> float:
    """Messages per second through ``receive``, ``batch`` to a short transaction (the link stores up to 25)."""
    session = south.sessions()
    started = time.perf_counter()
    for start in range(0, len(payloads), batch):
        chunk = payloads[start:start + batch]
        outcomes = run_in_transaction(session, lambda s, chunk=chunk: [federation.receive(s, utcnow(), payload)
                                                                        for payload in chunk])
        assert all(outcome.accepted for outcome in outcomes), outcomes
    elapsed = time.perf_counter() - started
    session.close()
    return len(payloads) / elapsed


def measure_verify_only(north: Hub, payloads: list[bytes]) -> float:
    import json

    key = VerifyKey(north.key.verify_key.encode())
    started = time.perf_counter()
    for payload in payloads:
        envelope = json.loads(payload)
        key.verify(federation.canonical_bytes(envelope), federation._unb64(envelope["sig"], 64))
    return len(payloads) / (time.perf_counter() - started)


def measure_through_broker(broker: Broker, south: Hub, payloads: list[bytes]) -> float:
    before = alerts_at(south, "north")
    sender = RawClient(broker, "north", "north-pw", client_id="benchmark-north")
    started = time.perf_counter()
    for payload in payloads:
        sender.client.publish(topic_for(FEDERATION, "north", federation.ALERT), payload, qos=1)
        sender.client.loop(timeout=0)
    while alerts_at(south, "north") < before + len(payloads):
        sender.client.loop(timeout=0.01)
        if time.perf_counter() - started > 300:
            raise SystemExit("the burst did not arrive within 300 s")
    elapsed = time.perf_counter() - started
    sender.close()
    return len(payloads) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=40, help="SOS timed one after another (part 1)")
    parser.add_argument("--messages", type=int, default=2000, help="messages verified and stored (part 2a)")
    parser.add_argument("--burst", type=int, default=500, help="alerts published at once through the broker (2b)")
    parser.add_argument("--poll", type=float, default=None,
                        help="FEDERATION_OUTBOX_POLL_S for the links (default: the shipped setting)")
    parser.add_argument("--one-core", action="store_true", help="pin this process to one CPU")
    args = parser.parse_args()
    if args.one_core:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"machine: {os.cpu_count()} cores{' (this process pinned to one)' if args.one_core else ''}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
    with tempfile.TemporaryDirectory(prefix="safebench-federation-") as tmp:
        folder = Path(tmp)
        broker = Broker(folder / "broker", FEDERATION, {"north": "north-pw", "south": "south-pw"}).start()
        north = Hub(folder, "north", broker, ("Market",))
        south = Hub(folder, "south", broker, ("Park",))
        try:
            trust(north, south, ("Market",))
            trust(south, north)
            north.start_link(args.poll)
            south.start_link(args.poll)
            time.sleep(1.0)  # both connected and subscribed
            poll = args.poll if args.poll is not None else float(config.DEFAULTS["FEDERATION_OUTBOX_POLL_S"])

            delays = [d * 1000 for d in measure_latency(north, south, args.alerts, poll)]
            print(f"\n== 1. SOS bench to bench over the broker on loopback, {len(delays)} alerts ==")
            print(f"  p50 {percentile(delays, 0.5):.0f} ms, p95 {percentile(delays, 0.95):.0f} ms, "
                  f"max {max(delays):.0f} ms, mean {statistics.mean(delays):.0f} ms "
                  f"(the outbox is looked at every {poll * 1000:.0f} ms: half of that is the expected wait)")

            north.close()  # from here South alone receives
            south.close()
            print(f"\n== 2a. verify and store, {args.messages} messages of each kind ==")
            south.engine = make_engine(f"sqlite:///{south.instance / 'safebench.db'}", 5000)
            south.sessions = sessionmaker(south.engine)
            half = args.messages // 2
            alerts_made = signed_messages(north, federation.ALERT, 2 * half)
            counts_made = signed_messages(north, federation.COUNTS, 2 * half)
            bare = measure_verify_only(north, alerts_made)
            print(f"  Ed25519 check alone (the yardstick): {bare:,.0f} /s")
            for label, made in (("counts (verify, store, the member's figure)", counts_made),
                                ("alerts (verify, store, board, patrol log, air at most 6 an hour)", alerts_made)):
                one = measure_receive(south, made[:half], 1)
                batched = measure_receive(south, made[half:], 25)
                print(f"  {label}: {one:,.0f} /s one transaction each ({bare / one:.0f}x the bare check's time), "
                      f"{batched:,.0f} /s 25 to a transaction, as the link stores a burst ({bare / batched:.0f}x)")

            south.start_link()
            time.sleep(1.0)
            # New codes and times, so they are new alerts rather than updates of those of 2a.
            burst = signed_messages(north, federation.ALERT, args.burst, start=args.messages)
            rate = measure_through_broker(broker, south, burst)
            print(f"\n== 2b. {len(burst)} alerts published at once through the broker, until South stored the last ==")
            print(f"  {rate:,.0f} /s end to end")
        finally:
            north.close()
            south.close()
            broker.stop()
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"reproduce: .venv/bin/python tests/benchmarks/federation.py --alerts {args.alerts} "
          f"--messages {args.messages} --burst {args.burst}{' --one-core' if args.one_core else ''}"
          + (f" --poll {args.poll:g}" if args.poll is not None else ""))


if __name__ == "__main__":
    main()
