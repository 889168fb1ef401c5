"""``safebench up``: every part of the hub under one supervising process.

Each part runs as its own child process, exactly as systemd would run it, so
a crash in one does not take down the others and there is still exactly one
scheduler. A child that dies is restarted with a growing pause.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from server.private_files import UMASK

log = logging.getLogger("server.supervisor")


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    failures: int = 0
    next_start: float = 0.0
    started: float = field(default=0.0)

    def start(self) -> None:
        log.info("starting %s", self.name)
        # In the supervisor's own session, never one of its own (start_new_session):
        # only a session leader takes a terminal it opens as its controlling one,
        # so the bridge here can never take the radio's tty and be sent SIGHUP when
        # the cable is pulled (see radio_bridge/main.py). A child that dies anyway,
        # by any signal, is started again below.
        self.process = subprocess.Popen([sys.executable, "-m", "server", *self.argv])
        self.started = time.monotonic()


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
        time.sleep(0.5)
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
            delay = min(60, 2 ** child.failures)
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
