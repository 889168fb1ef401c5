"""A newcomer runs the hub: ``safebench up`` brings up the web server, the radio bridge and the scheduler together."""

from __future__ import annotations

import fcntl
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import server
from server.extensions import db
from server.migrating import SCHEMA_HEAD
from tests.helpers import seat_role
from tests.processes import SAFEBENCH, env_for, free_port, wait_for_http

# Long before any clock this runs on: a role granted then ran out long ago, whatever today's date.
LONG_AGO = datetime(2001, 1, 6, 20, 0)


def hub_with_a_role_run_out(instance: Path, clock) -> None:
    """An instance at the newest schema whose one steward's role ran out long ago and was never marked lapsed."""
    from server import create_app
    from server.domain import people
    from server.migrating import apply_migrations

    app = create_app({"INSTANCE": instance, "TESTING": True, "CLOCK": clock})
    apply_migrations(app)
    with app.app_context():
        seat_role(db.session, LONG_AGO, people.add_member(db.session, LONG_AGO, "Kestrel"), people.STEWARD)
        db.session.commit()


def role_lapsed(instance: Path) -> bool:
    with sqlite3.connect(instance / "safebench.db") as conn:
        return conn.execute("SELECT lapsed_at FROM role_assignment").fetchone()[0] is not None


def wait_until(check, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def scheduler_lock_is_held(instance: Path) -> bool:
    with (instance / "scheduler.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def children_of(pid: int) -> list[list[str]]:
    """The command lines of a process's children."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append((entry / "cmdline").read_text().split("\0")[:-1])
        except OSError:
            continue  # it ended while we looked
    return found


def children_pids(pid: int) -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid]


def test_safebench_up_serves_the_bench_page_runs_the_scheduler_and_the_bridge_then_stops_cleanly(tmp_path):
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
        # Two children: the web server, and the bridge with the scheduler in it (no worker of its own).
        parts = sorted(argv[3] for argv in children_of(hub.pid))
        assert parts == ["bridge", "serve"]
        assert wait_until(lambda: scheduler_lock_is_held(instance))
        # Each with two malloc arenas (as the systemd units set it), unless whoever started the hub chose.
        arenas = env_for(instance).get("MALLOC_ARENA_MAX", "2")
        for child in children_pids(hub.pid):
            assert f"MALLOC_ARENA_MAX={arenas}" in Path(f"/proc/{child}/environ").read_text().split("\0")
            # Neither loads asyncio (SQLAlchemy imports it for an extension the hub never uses): megabytes each.
            assert "_asyncio" not in Path(f"/proc/{child}/maps").read_text()
            # Nor ssl with OpenSSL's libssl: the hub speaks plain HTTP on the bench WiFi (and no TLS to the radio).
            assert "libssl" not in Path(f"/proc/{child}/maps").read_text()
            # The bridge's few digests are Python's own: OpenSSL's libcrypto (3.4 MB) is the web server's alone.
            if "bridge" in Path(f"/proc/{child}/cmdline").read_text().split("\0"):
                assert "libcrypto" not in Path(f"/proc/{child}/maps").read_text()
    finally:
        hub.send_signal(signal.SIGTERM)
        output, _ = hub.communicate(timeout=30)
    assert hub.returncode == 0, output
    assert "starting web" in output and "starting bridge" in output and "starting worker" not in output
    assert "SIMULATED RADIO" in output and "radio connected" in output
    assert output.count("scheduler running") == 1
    assert "Traceback" not in output
    # Every part stopped, the supervisor truncated the WAL: nothing of what was purged stays beside the database.
    assert not (instance / "safebench.db-wal").exists() or (instance / "safebench.db-wal").stat().st_size == 0


def test_what_the_web_servers_libraries_import_and_it_never_uses_loads_only_when_used(tmp_path):
    # werkzeug's development server (with ssl for one exception's name), Flask-WTF's reCAPTCHA client
    # (urllib.request, http.client, ssl), the debugger click's test runner patches, limits' asyncio
    # storages: megabytes `safebench serve` never uses. Whoever does use one gets the real module then.
    probe = """
import sys
from radio_bridge.loaded_when_used import for_the_web_server
for_the_web_server()  # as server/entry.py does for `safebench serve`
import server.cli, server.serving
from server import create_app
app = create_app()
NAMES = ("werkzeug.serving", "ssl", "http.client", "urllib.request", "pdb", "limits.aio")
def real(name):
    return type(sys.modules.get(name)).__name__ == "module"
loaded = sorted(name for name in NAMES if real(name))
# Nor SQLAlchemy's PostgreSQL dialect on a SQLite bench (2.2 MB: a postgresql_ option on a model loads it).
assert not [name for name in sys.modules if name.startswith("sqlalchemy.dialects.postgresql")]
import limits.aio, pdb, urllib.request, werkzeug, werkzeug.serving
from flask.cli import run_simple
used = [werkzeug.serving.is_running_from_reloader(), callable(werkzeug.run_simple), callable(run_simple),
        urllib.request.Request("http://bench.local/x").host, pdb.Pdb.__name__, limits.aio.strategies.__name__]
print(loaded, used, sorted(name for name in NAMES if real(name)))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
                          env=env_for(tmp_path / "instance"), cwd=tmp_path)
    assert done.stdout.strip().splitlines()[-1] == (
        "[] [False, True, True, 'bench.local', 'Pdb', 'limits.aio.strategies'] "
        "['http.client', 'limits.aio', 'pdb', 'ssl', 'urllib.request', 'werkzeug.serving']")


def test_the_scheduler_runs_its_jobs_inside_the_bridge_under_safebench_up_and_a_second_one_waits(tmp_path, clock):
    """Exactly one scheduler: a host who also starts `safebench worker` (as before this release) gets a
    scheduler that waits for its turn, and no job runs twice."""
    instance = tmp_path / "instance"
    hub_with_a_role_run_out(instance, clock)
    port = free_port()
    hub = subprocess.Popen([SAFEBENCH, "up", "--port", str(port)], env=env_for(instance),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = None
    try:
        assert wait_until(lambda: role_lapsed(instance)), "the scheduler in the bridge lapses the run-out role"
        worker = subprocess.Popen([SAFEBENCH, "worker"], env=env_for(instance),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        assert worker.poll() is None  # it waits, it does not fail
    finally:
        for process in (worker, hub):
            if process is not None:
                process.send_signal(signal.SIGTERM)
        worker_output = worker.communicate(timeout=30)[0] if worker else ""
        output, _ = hub.communicate(timeout=30)
    assert "lapse-roles: 1 role(s) lapsed" in output
    assert "another process runs the scheduled jobs" in worker_output
    assert "scheduler running" not in worker_output and "lapse-roles" not in worker_output
    assert worker.returncode == 0, worker_output


def test_safebench_worker_runs_the_jobs_without_flask(tmp_path, clock):
    """A hub with no radio bridge runs `safebench worker`: the jobs run, and Flask is never loaded."""
    instance = tmp_path / "instance"
    hub_with_a_role_run_out(instance, clock)
    printed = tmp_path / "worker-output.txt"  # a file: thousands of import lines would fill a pipe
    with printed.open("w") as out:
        worker = subprocess.Popen([SAFEBENCH, "worker"], env=env_for(instance, PYTHONVERBOSE="1"),
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: role_lapsed(instance))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    output = printed.read_text()
    assert worker.returncode == 0, output[-3000:]
    assert "scheduler running" in output and "lapse-roles: 1 role(s) lapsed" in output
    assert "import 'sqlalchemy'" in output
    assert "import 'flask'" not in output and "import 'alembic'" not in output


SUPERVISOR_PROBE = """
import os, signal, sys, threading, urllib.request
port = sys.argv[1]
def stop_once_up():
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except OSError:
            threading.Event().wait(0.2)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=stop_once_up, daemon=True).start()
sys.argv = ["safebench", "up", "--port", port]
from server.entry import main
try:
    main()
except SystemExit:
    pass
print("LOADED:", sorted(name for name in ("flask", "sqlalchemy", "alembic", "meshtastic") if name in sys.modules))
"""


def test_the_supervisor_loads_neither_flask_nor_sqlalchemy(tmp_path):
    """`safebench up` itself is only a supervisor: its children load what they run, it loads nothing of theirs."""
    port = str(free_port())
    done = subprocess.run([sys.executable, "-c", SUPERVISOR_PROBE, port], env=env_for(tmp_path / "instance"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert "starting web" in done.stderr and "starting bridge" in done.stderr
    assert "LOADED: []" in done.stdout, done.stdout + done.stderr[-3000:]


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
        # The bridge too, and at once: a serial radio's packets are lost while no bridge reads them.
        assert wait_until(lambda: bridge_status(instance)[0] == 1)
        _, connected_since = bridge_status(instance)
        (bridge,) = [argv for argv in children_of(hub.pid) if argv[3:4] == ["bridge"]]
        bridge_pid = subprocess.run(["pgrep", "-P", str(hub.pid), "-f", "server bridge"], capture_output=True,
                                    text=True, check=True).stdout.split()
        assert bridge[4:] == ["--with-scheduler"] and len(bridge_pid) == 1
        subprocess.run(["kill", "-9", *bridge_pid], check=True)
        # A new bridge, connected anew (the dead one could not say it was gone: its row said connected).
        assert wait_until(lambda: bridge_status(instance) not in ((None, None), (1, connected_since))
                          and bridge_status(instance)[0] == 1)
    finally:
        hub.send_signal(signal.SIGTERM)
        output, _ = hub.communicate(timeout=30)
    assert "web exited with -9; restarting" in output
    assert "bridge exited with -9; restarting in 0s" in output
    assert output.count("radio connected") == 2


def bridge_status(instance: Path) -> tuple:
    """(connected, since) from the bridge's status row; (None, None) before there is one."""
    try:
        with sqlite3.connect(instance / "safebench.db") as conn:
            return conn.execute("SELECT connected, since FROM bridge_status").fetchone() or (None, None)
    except sqlite3.OperationalError:
        return (None, None)  # not migrated yet


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


def test_a_job_that_fails_or_finds_the_database_busy_leaves_the_others_running_and_the_loop_going(tmp_path, clock,
                                                                                                   caplog):
    """In the bridge, the scheduler shares the process with the radio: nothing a job does may end it."""
    import threading

    from server import config
    from server.db import HubBusy
    from server.scheduler import JOBS, MORE, Job, Runtime, Scheduler, SchedulerLock

    instance = tmp_path / "instance"
    hub_with_a_role_run_out(instance, clock)
    runtime = Runtime.from_settings(config.load_settings(instance, environ={}, overrides={"CLOCK": clock}))

    def broken(_session, _now, _cfg):
        raise RuntimeError("a bug in a job")

    def busy(_session, _now, _cfg):
        raise HubBusy("The hub's database is busy; nothing was saved.")

    def backlog(_session, _now, _cfg):
        return f"50 old row(s) purged{MORE}"

    lapse_roles = next(job for job in JOBS if job.name == "lapse-roles")
    stop = threading.Event()
    scheduler = Scheduler(runtime, stop, (Job("broken", 1, broken), Job("busy", 1, busy), lapse_roles,
                                          Job("hourly-backlog", 60, backlog)))
    try:
        scheduler.run_due()  # raises nothing
        assert role_lapsed(instance)
        assert "broken: failed; it runs again at its next turn" in caplog.text
        assert "busy: database busy, will try again next run" in caplog.text
        # Each is due again a minute on, the failed ones too; an hourly job that left work
        # for its next run goes on within the minute, not the hour.
        waits = [due - time.monotonic() for due in scheduler.due.values()]
        assert all(50 < wait <= 60 for wait in waits), waits

        # Exactly one scheduler per instance: while this one holds the lock, a second cannot take it.
        with SchedulerLock(instance / "scheduler.lock") as first, SchedulerLock(instance / "scheduler.lock") as second:
            assert first.take()
            assert not second.take()
        with SchedulerLock(instance / "scheduler.lock") as after:
            assert after.take()  # let go when its holder stopped
    finally:
        runtime.close()
