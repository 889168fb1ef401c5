"""A city hub on PostgreSQL: writers still take turns from their first read, a locked hub says so plainly,
the partial index is partial there too, and `safebench backup` / `restore` round-trip through pg_dump and psql.

These run only in the suite's PostgreSQL run (tests/run.sh starts a private cluster, tests/postgres.py);
on SQLite the same guarantees are told by tests/test_load.py, tests/test_busy_database.py and
tests/test_hub_setup.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from server.domain.mediation import MediationRequest
from server.extensions import db
from tests import postgres
from tests.helpers import csrf_token, make_app, text_of

pytestmark = pytest.mark.skipif(not postgres.on_postgresql,
                                reason="PostgreSQL only: tests/run.sh runs it with TESTS_POSTGRES_URL set")

CASES_EACH = 45  # two writers: 90 open cases, all within C1..C99, so two alike would be a race lost

# One writer process: opens its cases one transaction each, as the bridge and the web do.
WRITER = """
import sys
from datetime import datetime, timedelta
from sqlalchemy.orm import Session
from server.db import make_engine, run_in_transaction
from server.domain import cases

engine = make_engine(sys.argv[1], 5000)
session = Session(engine)
now = datetime(2026, 11, 21, 20, 0)
sys.stdin.readline()  # both writers start together
for number in range(int(sys.argv[2])):
    run_in_transaction(session, lambda s: cases.open_case(
        s, now + timedelta(seconds=number), place="Market square", source="web"), attempts=5)
print("done")
"""


def test_two_processes_opening_cases_at_once_never_give_two_the_same_code(app):
    """The next free code is read, then written: without the writers' lock the two writers read the same one."""
    url = app.config["DATABASE_URL"]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(CASES_EACH)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        assert out.strip() == "done"
    from server.domain.cases import ArrestCase

    with app.app_context():
        codes = db.session.scalars(select(ArrestCase.code)).all()
    assert len(codes) == 2 * CASES_EACH
    assert len(set(codes)) == len(codes), sorted(code for code in codes if codes.count(code) > 1)


def test_a_request_sent_while_another_writer_holds_the_lock_is_refused_plainly_and_succeeds_after(tmp_path, clock):
    import psycopg

    from server.db import WRITERS_LOCK

    app = make_app(tmp_path / "busy", clock, RATELIMIT_ENABLED=False, DB_BUSY_TIMEOUT_MS=100, DB_RETRY_ATTEMPTS=2)
    client = app.test_client()
    request = {"what": "The bins by the school gate keep getting set alight", "where": "School lane",
               "urgency": "soon"}
    token = csrf_token(client, "/mediation/new")
    # Another process mid-write: it holds the writers' lock (server/db.py begin_writing) in its transaction.
    blocker = psycopg.connect(app.config["DATABASE_URL"].replace("+psycopg", ""))
    try:
        blocker.execute("SELECT pg_advisory_xact_lock(%s)", (WRITERS_LOCK,))
        refused = client.post("/mediation/new", data={**request, "csrf_token": token})
        assert refused.status_code == 503
        page = text_of(refused)
        assert "The hub is busy" in page and "nothing was saved" in page
        assert request["what"] in page  # their words, ready to copy
        assert client.get("/").status_code == 200  # reading pages never waits for a writer
    finally:
        blocker.rollback()
        blocker.close()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(MediationRequest)) == 0
    sent = client.post("/mediation/new", data={**request, "csrf_token": token}, follow_redirects=True)
    assert sent.status_code == 200 and "receipt" in text_of(sent).lower()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(MediationRequest)) == 1


def test_the_retention_index_holds_only_the_entries_still_to_reduce_on_postgresql_too(app):
    with app.app_context():
        definition = db.session.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_log_entry_unreduced_at'"))
    assert "WHERE" in definition and "member_id IS NOT NULL" in definition


def count_requests(app) -> int:
    with app.app_context():
        db.session.remove()
        return db.session.scalar(select(func.count()).select_from(MediationRequest))


def test_backup_and_restore_round_trip_through_pg_dump_and_psql(app, client, runner, tmp_path):
    folder = tmp_path / "copies"
    token = csrf_token(client, "/mediation/new")
    first = {"what": "Noise from the late bar every Friday", "where": "Canal street", "urgency": "soon"}
    client.post("/mediation/new", data={**first, "csrf_token": token})
    assert count_requests(app) == 1

    done = runner.invoke(args=["backup", "--to", str(folder), "--keep", "2"])
    assert done.exit_code == 0, done.output
    copies = sorted(folder.glob("safebench-*.sql"))
    assert len(copies) == 1 and copies[0].stat().st_mode & 0o777 == 0o600  # only the hub's user reads it
    assert "CREATE TABLE public.mediation_request" in copies[0].read_text()

    # After the copy: a second request, and a table a later version would add (not in the copy).
    second = {"what": "Cars parked on the pavement by the clinic", "where": "Clinic road", "urgency": "soon"}
    client.post("/mediation/new", data={**second, "csrf_token": token})
    with app.app_context():
        db.session.execute(text("CREATE TABLE from_a_later_version (id integer PRIMARY KEY)"))
        db.session.commit()
    assert count_requests(app) == 2

    with app.app_context():
        db.session.remove()
        db.engine.dispose()  # the hub is stopped before a restore
    done = runner.invoke(args=["restore", str(copies[0]), "--yes"])
    assert done.exit_code == 0, done.output
    assert "Restored" in done.output and "restore that to undo" in done.output
    assert count_requests(app) == 1  # as it was when copied
    with app.app_context():
        assert db.session.scalar(text("SELECT to_regclass('from_a_later_version')")) is None
        assert db.session.scalar(text("SELECT version_num FROM alembic_version")) is not None
    # The hub goes on from the restored copy: new rows get new ids, the sequences came back too.
    client.post("/mediation/new", data={**second, "csrf_token": token})
    assert count_requests(app) == 2
    # What the database held before the restore was kept first, and a restore from it undoes the restore.
    safety = sorted(path for path in folder.parent.rglob("safebench-*.sql") if path != copies[0])
    assert safety, "the safety copy"


def test_restore_refuses_a_file_that_is_no_dump_and_changes_nothing(app, runner, tmp_path):
    junk = tmp_path / "notes.sql"
    junk.write_text("DROP TABLE member;\n")
    done = runner.invoke(args=["restore", str(junk), "--yes"])
    assert done.exit_code != 0 and "is not a whole PostgreSQL dump" in done.output
    with app.app_context():
        assert db.session.scalar(text("SELECT to_regclass('member')")) is not None


def test_the_real_command_takes_the_url_as_psql_takes_it(app, tmp_path):
    """SAFEBENCH_DATABASE_URL=postgresql://... (no driver named) reaches the database through psycopg 3."""
    from tests.processes import safebench

    url = app.config["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    done = safebench(Path(app.instance_path), "backup", "--to", str(tmp_path / "copies"),
                     env={"SAFEBENCH_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert [path.suffix for path in (tmp_path / "copies").iterdir()] == [".sql"]
