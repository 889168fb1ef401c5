"""A newcomer runs the hub: ``safebench up`` brings up the web server and the scheduler together."""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
import time

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.extensions import db
from tests.processes import SAFEBENCH, env_for, free_port, wait_for_http


def test_safebench_up_serves_the_bench_page_and_runs_the_worker_then_stops_cleanly(tmp_path):
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
    finally:
        hub.send_signal(signal.SIGTERM)
        output, _ = hub.communicate(timeout=30)
    assert hub.returncode == 0, output
    assert "starting web" in output and "starting worker" in output
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
