"""``safebench up``: every part of the hub under one supervising process.

Each part runs as its own child process, exactly as systemd would run it, so
a crash in one does not take down the others: the web server, and the radio
bridge with the scheduler in a thread of its own (``bridge --with-scheduler``),
so there is exactly one scheduler. A child that dies is restarted, the first
time at once (a serial radio's packets are lost while no bridge reads them),
then with a growing pause.

Standard library only (about 12 MB, where building the Flask app here took 74
and a second before any child started): no Flask, no SQLAlchemy. The schema is
the children's to check, as each does on its own (the web server under the
migration lock, the bridge with one query and a ``safebench migrate`` child
only when the schema is behind); the supervisor only truncates the WAL with
sqlite3 once every part has stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

from server.private_files import UMASK

log = logging.getLogger("server.supervisor")

POLL_S = 0.1  # how soon a dead child is seen; a poll costs nothing next to a lost radio packet


class Child:
    """One part of the hub: ``python -m server ARGV``. (A plain class: dataclasses would be 0.8 MB more.)"""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.process: subprocess.Popen | None = None
        self.failures = 0
        self.next_start = 0.0
        self.started = 0.0

    def start(self) -> None:
        log.info("starting %s", self.name)
        # In the supervisor's own session, never one of its own (start_new_session):
        # only a session leader takes a terminal it opens as its controlling one,
        # so the bridge here can never take the radio's tty and be sent SIGHUP when
        # the cable is pulled (see radio_bridge/main.py). A child that dies anyway,
        # by any signal, is started again below.
        self.process = subprocess.Popen([sys.executable, "-m", "server", *self.argv], env=child_environment())
        self.started = time.monotonic()


def child_environment() -> dict[str, str]:
    """The supervisor's environment, with two malloc arenas unless the caller chose otherwise.

    glibc gives a threaded process up to eight arenas a core, each keeping its own
    freed memory; the hub's threads take turns under Python's lock anyway. As the
    systemd units set it (1 to 2 MB a process here: tests/benchmarks/memory.py).
    """
    return {"MALLOC_ARENA_MAX": "2", **os.environ}


def restart_delay(failures: int) -> int:
    """Seconds before the next start after ``failures`` deaths in a row: at once, then 2, 4, ... 60."""
    return 0 if failures <= 1 else min(60, 2 ** (failures - 1))


def supervise(children: list[Child], stop_after: float | None = None) -> int:
    os.umask(UMASK)  # the children inherit it, whoever started this process
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    for child in children:
        child.start()
    began = time.monotonic()
    while not stopping and (stop_after is None or time.monotonic() - began < stop_after):
        time.sleep(POLL_S)
        for child in children:
            if child.process is None:
                if time.monotonic() >= child.next_start:
                    child.start()
                continue
            code = child.process.poll()
            if code is None:
                continue
            # A child that ran a good while before dying starts its backoff afresh.
            child.failures = 1 if time.monotonic() - child.started > 60 else child.failures + 1
            delay = restart_delay(child.failures)
            log.warning("%s exited with %s; restarting in %ds", child.name, code, delay)
            child.process = None
            child.next_start = time.monotonic() + delay
    for child in children:
        if child.process and child.process.poll() is None:
            child.process.terminate()
    for child in children:
        if child.process:
            try:
                child.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.process.kill()
    return 0


def sqlite_path(database_url: str) -> str | None:
    """The file behind a ``sqlite:///`` URL (None for another database, or SQLite in memory).

    Not server/backup.py's ``sqlite_path``: that one parses with SQLAlchemy, which this process never loads.
    """
    prefix = "sqlite:///"
    if not database_url.startswith(prefix) or database_url[len(prefix):] in ("", ":memory:"):
        return None
    return database_url[len(prefix):].split("?", 1)[0]


def truncate_wal(database_url: str) -> None:
    """Every part has stopped: nothing holds an old snapshot, so the WAL is copied in and truncated whole."""
    path = sqlite_path(database_url)
    if path is None or not os.path.exists(path):
        return
    import sqlite3  # only now, on the way out

    try:
        with sqlite3.connect(path, timeout=5) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
    except sqlite3.Error as error:  # the next start truncates it instead
        log.warning("could not truncate the database's WAL: %s", error)


def main(argv: list[str] | None = None, prog: str = "safebench up") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the whole hub on one machine: web server, radio bridge and scheduler, supervised.")
    parser.add_argument("--host", help="Address for the web hub (default 127.0.0.1).")
    parser.add_argument("--port", type=int, help="Port for the web hub (default 8080).")
    parser.add_argument("--radio", help="The radio for the bridge (default: the RADIO setting, else the simulated "
                        "radio).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from server import config

    settings = config.load_settings(config.instance_path_from_env())
    serve_argv = ["serve"] + (["--host", args.host] if args.host else []) + \
        (["--port", str(args.port)] if args.port else [])
    # The scheduler runs in the bridge: one Python process fewer (~50 MB) than a worker of its own.
    bridge_argv = ["bridge", "--with-scheduler"] + (["--radio", args.radio] if args.radio else [])
    # The bridge first: the radio is deaf until it runs, and the two load at the same time on few cores.
    code = supervise([Child("bridge", bridge_argv), Child("web", serve_argv)])
    truncate_wal(settings["DATABASE_URL"])
    return code
