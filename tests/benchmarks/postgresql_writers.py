"""The writers' lock on PostgreSQL, measured: what two processes opening arrest cases at once get
with server/db.py's advisory lock, with LOCK TABLE on the one table they race for, and with no lock.

    TESTS_POSTGRES_URL=postgresql://postgres@127.0.0.1:PORT/postgres \\
        .venv/bin/python tests/benchmarks/postgresql_writers.py [--cases 45] [--rounds 3]

Prints, per way of locking, the median cases per second over the rounds (both writers together) and
how many codes came out twice (a steward's "ACK C7" meaning two cases). A server URL is needed:
tests/run.sh's PostgreSQL run starts one (see its PG_ lines), or any scratch cluster.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

WRITER = """
import sys, time
from datetime import datetime, timedelta
from sqlalchemy import text
from sqlalchemy.orm import Session
import server.db
from server.db import make_engine, run_in_transaction
from server.domain import cases

mode = sys.argv[3]
if mode == "none":
    server.db.begin_writing = lambda session: None
elif mode == "lock-table":
    server.db.begin_writing = lambda session: session.execute(text("LOCK TABLE arrest_case IN EXCLUSIVE MODE"))
engine = make_engine(sys.argv[1], 5000)
session = Session(engine)
now = datetime(2026, 11, 21, 20, 0)
sys.stdin.readline()
for number in range(int(sys.argv[2])):
    run_in_transaction(session, lambda s: cases.open_case(
        s, now + timedelta(seconds=number), place="Market square", source="web"), attempts=5)
"""


def one_round(mode: str, cases: int, folder: Path) -> tuple[float, int]:
    from sqlalchemy import create_engine, text

    from tests import postgres

    url = postgres.database_url(folder / f"{mode}-{time.monotonic_ns()}")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(cases), mode], stdin=subprocess.PIPE,
                                text=True) for _ in range(2)]
    time.sleep(2)  # both have imported and connected
    started = time.perf_counter()
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        writer.wait(timeout=300)
    elapsed = time.perf_counter() - started
    engine = create_engine(url)
    with engine.connect() as connection:
        codes = connection.execute(text("SELECT code FROM arrest_case")).scalars().all()
    engine.dispose()
    return 2 * cases / elapsed, len(codes) - len(set(codes))


def main() -> None:
    from tests import postgres

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=45, help="cases each writer opens (two writers; under 50)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not postgres.on_postgresql:
        sys.exit("Set TESTS_POSTGRES_URL to a PostgreSQL server (tests/run.sh's PG run starts one).")
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("advisory", "lock-table", "none"):
            rates, twice = [], []
            for _ in range(args.rounds):
                rate, duplicates = one_round(mode, args.cases, Path(folder))
                rates.append(rate)
                twice.append(duplicates)
            print(f"{mode:>10}: {statistics.median(rates):6.1f} cases/s (median of {args.rounds}), "
                  f"codes given twice per round: {twice}")
        postgres.drop_created()


if __name__ == "__main__":
    main()
