"""A newcomer runs the hub: ``safebench up`` brings up the web server and the scheduler together."""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import server
from server.extensions import db
from server.migrating import SCHEMA_HEAD
from tests.processes import SAFEBENCH, env_for, free_port, wait_for_http


def test_safebench_up_serves_the_bench_page_runs_the_worker_and_the_bridge_then_stops_cleanly(tmp_path):
    instance = tmp_path / "fresh-instance"
    port = free_port()
    hub = subprocess.Popen(
        [SAFEBENCH, "up", "--host", "127.0.0.1", "--port", str(port)],
        env=env_for(instance), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/") == 200
        assert wait_for_http(f"http://127.0.0.1:{port}/no-such-page") == 404
        # First run: the database is migrated and the secret key generated, private to the hub.
        key = instance / "secret_key"
        assert len(key.read_text()) == 64
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        with sqlite3.connect(instance / "safebench.db") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"member", "log_entry", "mediation_request", "aid_post", "alembic_version"} <= tables
        # With no radio configured, the bridge talks to the simulated radio.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sqlite3.connect(instance / "safebench.db") as conn:
                row = conn.execute("SELECT connected, simulated FROM bridge_status").fetchone()
            if row == (1, 1):
                break
            time.sleep(0.3)
        assert row == (1, 1)
    finally:
        hub.send_signal(signal.SIGTERM)
        output, _ = hub.communicate(timeout=30)
    assert hub.returncode == 0, output
    assert "starting web" in output and "starting worker" in output and "starting bridge" in output
    assert "SIMULATED RADIO" in output and "radio connected" in output
    assert "worker running" in output
    assert "Traceback" not in output


def test_the_supervisor_restarts_a_part_that_dies(tmp_path):
    instance = tmp_path / "instance"
    port = free_port()
    hub = subprocess.Popen(
        [SAFEBENCH, "up", "--port", str(port)], env=env_for(instance),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/") == 200
        web = subprocess.run(["pgrep", "-f", f"serve --port {port}"], capture_output=True, text=True)
        (pid,) = web.stdout.split()
        subprocess.run(["kill", "-9", pid], check=True)
        time.sleep(1)
        assert wait_for_http(f"http://127.0.0.1:{port}/", seconds=30) == 200
    finally:
        hub.send_signal(signal.SIGTERM)
        output, _ = hub.communicate(timeout=30)
    assert "web exited with -9; restarting" in output


def test_the_migrations_build_exactly_the_schema_the_models_describe(app):
    """A hub in the field upgrades with migrations alone, so they must not drift from the models."""
    with app.app_context():
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert differences == []


def test_a_hub_from_the_first_release_upgrades_without_losing_its_data(tmp_path, clock):
    """A bench in the field runs `safebench serve` on new code: its stewards and requests are still there."""
    from flask_migrate import upgrade

    from server import create_app
    from server.domain import mediation, people
    from server.migrating import apply_migrations

    app = create_app({"INSTANCE": tmp_path / "old-hub", "TESTING": True, "CLOCK": clock})
    with app.app_context():
        upgrade(revision="51a1ccf08592")  # the first release's schema
        db.session.execute(db.text(
            "INSERT INTO member (id, handle, handle_key, node_num, created_at) "
            "VALUES (1, 'Kestrel', 'kestrel', 2712847316, '2026-11-01 20:00:00')"))
        db.session.execute(db.text(
            "INSERT INTO mediation_request (id, receipt_code, what, urgency, status, created_at, updated_at) "
            "VALUES (1, 'M-ABCD-EFGH', 'noise at night', 'soon', 'new', '2026-11-01 20:00:00', '2026-11-01 20:00:00')"))
        db.session.commit()
    apply_migrations(app)
    with app.app_context():
        assert people.get_member(db.session, "kestrel").node_id == "!a1b2c3d4"
        assert mediation.status_for_receipt(db.session, "m-abcd-efgh").status == "new"
        tables = set(db.inspect(db.engine).get_table_names())
    assert {"outbox_message", "heard_packet", "bridge_status"} <= tables


def test_the_code_knows_which_migration_is_the_newest():
    """The bridge trusts SCHEMA_HEAD to skip Alembic on start: a new migration must move it."""
    heads = ScriptDirectory(str(Path(server.__file__).parent / "migrations")).get_heads()
    assert heads == [SCHEMA_HEAD], f"a new migration: set server.migrating.SCHEMA_HEAD to {heads}"


def run_bridge_until_connected(instance: Path) -> str:
    """Start `safebench bridge` on the simulated radio, stop it once connected; what it printed, imports included."""
    printed = instance.parent / "bridge-output.txt"  # a file: thousands of import lines would fill a pipe
    with printed.open("w") as out:
        bridge = subprocess.Popen([SAFEBENCH, "bridge", "--radio", "sim"], env=env_for(instance, PYTHONVERBOSE="1"),
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        row = None
        while time.monotonic() < deadline and bridge.poll() is None:
            try:
                with sqlite3.connect(instance / "safebench.db") as conn:
                    row = conn.execute("SELECT connected FROM bridge_status").fetchone()
            except sqlite3.OperationalError:
                row = None  # not migrated yet
            if row == (1,):
                break
            time.sleep(0.2)
        assert row == (1,)
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(timeout=30)
    output = printed.read_text()
    assert bridge.returncode == 0, output[-3000:]
    return output


def test_a_restarted_bridge_is_back_on_the_radio_without_loading_the_web_app(tmp_path, clock):
    """After a crash every second counts (the radio's packets are lost until a bridge reads them again):
    on a database at the newest schema the bridge starts without Flask or Alembic; an older one is
    migrated first, by a child process, so they do not stay in the bridge's memory."""
    from flask_migrate import upgrade

    from server import create_app

    instance = tmp_path / "old-hub"
    with create_app({"INSTANCE": instance, "TESTING": True, "CLOCK": clock}).app_context():
        upgrade(revision="51a1ccf08592")  # the first release's schema

    first = run_bridge_until_connected(instance)
    assert "Running upgrade 51a1ccf08592 -> bcc7b44fcbe7" in first
    assert "import 'flask'" in first  # in the migrating child
    with sqlite3.connect(instance / "safebench.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_HEAD,)]

    restarted = run_bridge_until_connected(instance)
    assert "import 'meshtastic'" in restarted and "radio connected" in restarted
    assert "import 'flask'" not in restarted and "import 'alembic'" not in restarted
    assert "Running upgrade" not in restarted
