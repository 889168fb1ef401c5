"""How fast the ledger's balance pages answer with 100,000 entries (issue 16: p95 under 50 ms on this machine).

Seeds a fresh instance with a year of the mutual-credit ledger (three crews,
the bail fund, the outside, 300 members; by default 100,000 entries, a
tenth of them touching one busy member, half the crews'), then asks each page
through Flask's test client in this process, round after round, in turn:

- ``/ledger``                 the public ledger: crews' balances, opted-in members', the fund's months, totals
- ``/ledger/mine``            a member's own page (the busy member, logged in): balance, newest 50 entries
- ``/ledger/accounts/<id>``   a crew's page, for its keeper: newest 100 of its 60,000-odd entries
- ``/ledger/sheets/``         the printed sheets' list (issue 16, the sheet)
- a one-page Flask app's page, in the same rounds: the yardstick of how fast the machine is right now

and prints p50 and p95 of each (wall clock, the cache off so every request
renders), each page's p50 as a ratio to the yardstick's, and the SQL
statements a page runs. Also times ``safebench ledger-sheet``'s work for the
busiest month (building the sheet and its hash chain from the ledger). Run
from the repository root::

    .venv/bin/python tests/benchmarks/ledger.py [--entries N] [--rounds N]

The machine is shared: absolute times move with what else runs; the ratios
move less. Run it a few times and read the medians.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# One login here, not a test of Argon2id's cost (tests/benchmarks/sealing.py measures that).
os.environ.setdefault("SAFEBENCH_KDF_PASSES", "1")
os.environ.setdefault("SAFEBENCH_KDF_MEMORY_KIB", "64")

from nacl.public import PrivateKey
from sqlalchemy import event, insert, update

from server import config, create_app
from server.clock import utcnow
from server.domain import ledger, ledger_sheets, people, sealing
from server.extensions import db
from server.migrating import apply_migrations
from tests.helpers import PASSWORD, login, seat_role

P95_AIM_MS = 50.0
CREWS = ("Kitchen", "Bike workshop", "Patrol")
MEMBERS = 300
BUSY = "Kestrel"  # the member whose own page is timed; keeper of the kitchen
MEMOS = ("bread", "soup", "brakes fixed", "a night on patrol", "childcare", "washing up", "", "tools lent")


def seed(instance: Path, entries: int, now: datetime) -> dict[str, int]:
    """A year of the ledger, in bulk through Core (not measured); balances kept as the ledger keeps them."""
    rng = random.Random(2026)
    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    apply_migrations(app)
    ids: dict[str, int] = {}
    with app.app_context():
        s = db.session
        opened = now - timedelta(days=400)
        busy = people.add_member(s, opened, BUSY)
        people.set_password(busy, PASSWORD)
        seat_role(s, now, busy, people.STEWARD)  # only a member with a role in force logs in
        others = [people.add_member(s, opened, f"member{i}") for i in range(1, MEMBERS)]
        s.flush()
        accounts = []
        for name in CREWS:
            crew = ledger.LedgerAccount(kind=ledger.CREW, name=name, name_key=name.lower(), soft_limit=500,
                                        hard_limit=ledger.MAX_LIMIT, balance=0, opened_at=opened, in_force_at=opened)
            s.add(crew)
            accounts.append(crew)
        fund = ledger.LedgerAccount(kind=ledger.FUND, name=ledger.FUND_NAME, name_key=ledger.FUND_NAME.lower(),
                                    soft_limit=0, hard_limit=0, balance=0, opened_at=opened, in_force_at=opened)
        outside = ledger.LedgerAccount(kind=ledger.OUTSIDE, name=ledger.OUTSIDE_NAME,
                                       name_key=ledger.OUTSIDE_NAME.lower(), soft_limit=0, hard_limit=None,
                                       balance=0, opened_at=opened, in_force_at=opened)
        s.add_all([fund, outside])
        members = [ledger.LedgerAccount(kind=ledger.MEMBER, member=m, soft_limit=10, hard_limit=ledger.MAX_LIMIT,
                                        balance=0, opened_at=opened, in_force_at=opened,
                                        balance_public=rng.random() < 0.1) for m in [busy, *others]]
        s.add_all(members)
        s.flush()
        s.add(ledger.LedgerKeeper(account_id=accounts[0].id, member_id=busy.id, named_at=opened))
        crew_ids, member_ids = [a.id for a in accounts], [a.id for a in members]
        # A memo between two members is sealed to their own keys (ledger.py): the busy member's page opens each of
        # theirs. One sealing per memo text (the page pays the opening, not the seeding); other members' memos are
        # sealed to a key nobody here holds, so their rows are as long as a real hub's.
        busy_key = bytes(sealing.give_member_key(busy, PASSWORD, opened).public_key)
        nobodys = bytes(PrivateKey.generate().public_key)
        sealed_for = {(who, text): sealing.seal_to_members([key, nobodys], text)
                      for who, key in (("busy", busy_key), ("others", nobodys)) for text in MEMOS}
        member_set = set(member_ids)
        busy_id = members[0].id
        balances = dict.fromkeys([*crew_ids, *member_ids, fund.id, outside.id], 0)
        given = {k: [0, 0] for k in balances}  # entries given, credits given: the accounts' running totals
        fund_months: dict = {}  # the fund's totals by month, as the ledger keeps them (LedgerFundMonth)
        rows = []
        for i in range(entries):
            at = now - timedelta(days=365) + timedelta(seconds=i * (365 * 86400 // entries))
            roll = rng.random()
            kind, memo, anonymous = ledger.TRANSFER, rng.choice(MEMOS), False
            if roll < 0.1:
                giver, receiver = busy_id, rng.choice(crew_ids + member_ids[1:])
                if rng.random() < 0.5:
                    giver, receiver = receiver, giver
            elif roll < 0.6:
                giver, receiver = rng.choice(crew_ids), rng.choice(member_ids[1:])
                if rng.random() < 0.5:
                    giver, receiver = receiver, giver
            elif roll < 0.63:
                giver, receiver, kind, memo = rng.choice(member_ids), fund.id, ledger.CONTRIBUTION, "contribution"
                anonymous = rng.random() < 0.5
            elif roll < 0.64:
                giver, receiver, kind = fund.id, outside.id, ledger.PAYOUT
                memo = f"{rng.choice(('bail', 'lawyer', 'court costs'))} C{rng.randrange(1, 400)}"
            else:
                giver, receiver = rng.sample(member_ids[1:], 2)
            amount = rng.randrange(1, 6)
            balances[giver] -= amount
            balances[receiver] += amount
            given[giver][0] += 1
            given[giver][1] += amount
            if fund.id in (giver, receiver):
                fund_months.setdefault(datetime(at.year, at.month, 1).date(), [0, 0])[receiver != fund.id] += amount
            sealed_memo = None
            if kind == ledger.TRANSFER and giver in member_set and receiver in member_set:
                memo, sealed_memo = "", sealed_for["busy" if busy_id in (giver, receiver) else "others", memo]
            rows.append({"id": i + 1, "at": at, "kind": kind, "giver_id": giver, "receiver_id": receiver,
                         "amount": amount, "memo": memo, "sealed_memo": sealed_memo, "anonymous": anonymous})
        s.execute(insert(ledger.LedgerEntry), rows)
        s.execute(update(ledger.LedgerAccount), [{"id": k, "balance": v, "entries_given": given[k][0],
                                                  "credits_given": given[k][1]} for k, v in balances.items()])
        s.execute(insert(ledger.LedgerFundMonth), [{"month": m, "contributions": c, "payouts": p}
                                                   for m, (c, p) in fund_months.items()])
        s.commit()
        ids = {"busy": busy_id, "kitchen": crew_ids[0],
               "busy_entries": sum(1 for r in rows if busy_id in (r["giver_id"], r["receiver_id"])),
               "kitchen_entries": sum(1 for r in rows if crew_ids[0] in (r["giver_id"], r["receiver_id"]))}
        assert ledger.audit_sums(s) == ledger.Sums(0, [])
        s.remove()
        db.engine.dispose()
    return ids


def measure(instance: Path, ids: dict[str, int], rounds: int) -> dict[str, dict]:
    from flask import Flask

    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance),
                      "CACHE_TYPE": "NullCache", "CACHE_NO_NULL_WARNING": True, "RATELIMIT_ENABLED": False})
    bare = Flask("baseline")
    bare.add_url_rule("/", "index", lambda: "<!doctype html><title>ok</title><p>ok</p>")
    pages = {"public ledger /ledger": ("anonymous", "/ledger"),
             "a member's own page /ledger/mine": ("member", "/ledger/mine"),
             "a crew's page (its keeper)": ("member", f"/ledger/accounts/{ids['kitchen']}"),
             "the printed sheets /ledger/sheets/": ("anonymous", "/ledger/sheets/"),
             "one-page Flask app (yardstick)": ("bare", "/")}
    times: dict[str, list[float]] = {name: [] for name in pages}
    statements: dict[str, int] = {}
    counter = {"n": 0}

    def count(*_args: object) -> None:
        counter["n"] += 1

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", count)
        clients = {"anonymous": app.test_client(), "member": app.test_client(), "bare": bare.test_client()}
        answered = login(clients["member"], BUSY)
        if answered.request.path.startswith("/login"):
            raise SystemExit("the busy member could not log in")
        for round_ in range(rounds + 10):  # the first 10 warm the statement and template caches
            for name, (who, path) in pages.items():
                counter["n"] = 0
                started = time.perf_counter()
                response = clients[who].get(path)
                took = time.perf_counter() - started
                if response.status_code != 200:
                    raise SystemExit(f"{path} answered {response.status_code}")
                if round_ >= 10:
                    times[name].append(took * 1000)
                    statements[name] = counter["n"]
        event.remove(db.engine, "before_cursor_execute", count)
        db.session.remove()
        db.engine.dispose()
    return {name: {"p50": statistics.median(values), "p95": statistics.quantiles(values, n=20)[18],
                   "statements": statements[name]} for name, values in times.items()}


def sheet_build(instance: Path, now: datetime) -> tuple[str, int, float]:
    """The busiest month built as ``safebench ledger-sheet`` builds it: its rows and its hash chain."""
    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    with app.app_context():
        month = ledger_sheets.last_closed_month(now.date())
        start = datetime(month.year, month.month, 1)
        end_month = month.next()
        end = datetime(end_month.year, end_month.month, 1)
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            sheet = ledger_sheets.build(month, start, end, ledger_sheets.GENESIS,
                                        ledger_sheets.ledger_rows(db.session, start, end))
            runs.append((time.perf_counter() - started) * 1000)
            db.session.expunge_all()
        db.session.remove()
        db.engine.dispose()
    return str(month), len(sheet.lines), statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200, help="timed requests per page (after 10 to warm up)")
    args = parser.parse_args(argv)
    now = utcnow()
    with tempfile.TemporaryDirectory(prefix="safebench-ledger-bench-") as folder:
        instance = Path(folder)
        started = time.perf_counter()
        ids = seed(instance, args.entries, now)
        print(f"seeded {args.entries:,} entries in {time.perf_counter() - started:.1f} s: the busy member in "
              f"{ids['busy_entries']:,}, the kitchen in {ids['kitchen_entries']:,}; "
              f"{(instance / 'safebench.db').stat().st_size / 1e6:.1f} MB")
        found = measure(instance, ids, args.rounds)
        base = found["one-page Flask app (yardstick)"]["p50"]
        print(f"\nms per request, wall clock, {args.rounds} requests each, in turn, cache off, in-process "
              f"(test client); the machine is shared, read the ratios:")
        print(f"  {'page':<38} {'p50':>7} {'p95':>7}  {'x yardstick (p50)':>17}  SQL  aim p95 <= {P95_AIM_MS:.0f} ms")
        for name, figures in found.items():
            verdict = "" if name.startswith("one-page") else ("ok" if figures["p95"] <= P95_AIM_MS else "MISSED")
            print(f"  {name:<38} {figures['p50']:7.2f} {figures['p95']:7.2f}  {figures['p50'] / base:16.1f}x"
                  f"  {figures['statements']:>3}  {verdict}")
        month, lines, ms = sheet_build(instance, now)
        print(f"\nledger-sheet's work for {month} ({lines:,} entries: rows read, labelled, hashed into the chain): "
              f"{ms:.0f} ms (median of 5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
