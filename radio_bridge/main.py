"""``safebench bridge`` (and ``python -m radio_bridge``): the bridge process, without the web app.

Its resident memory is the domain layer, SQLAlchemy and meshtastic, not Flask
and Alembic as well: it shares a Pi Zero 2 W's 512 MB with the web server and
the web server. It does not load them to start either: a database already at
the newest schema is seen with one query, and only one that is not gets a
short-lived ``safebench migrate`` process first.

With ``--with-scheduler`` (as ``safebench up`` and the systemd unit start it)
the scheduled jobs run in a thread here too: the domain layer and SQLAlchemy
are loaded already, so they cost about a megabyte instead of a process of
their own. The thread has its own database connection; each job is a short
transaction of its own, and a job that fails or finds the database busy is
logged and tried at its next turn, never taking the radio down.

A bench that joined a federation also links to its broker on a thread here
(radio_bridge/federation_link.py); one that did not never imports paho-mqtt.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import radio_bridge.builtin_hashes  # before anything imports hashlib: no OpenSSL (3.4 MB)
import radio_bridge.loaded_when_used  # noqa: F401  (before the libraries that import those modules)
from radio_bridge.journal import JOURNAL_FILE, Journal
from radio_bridge.listening import Listening
from radio_bridge.mesh import RadioSpec
from server import config
from server.clock import utcnow
from server.private_files import keep_private

# SQLAlchemy, the domain layer and the bridge itself are imported in run(), once the radio is opening.
if TYPE_CHECKING:
    from radio_bridge.simulator import SimulatedRadio

log = logging.getLogger("radio_bridge")
SCHEDULER_START_AFTER_S = 3.0


def main(argv: list[str] | None = None, prog: str = "python -m radio_bridge") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Run the radio bridge: check-ins in, alerts out. "
                                     "Run exactly one per radio.")
    parser.add_argument("--instance", help="The hub's instance folder (default: SAFEBENCH_INSTANCE or ./instance).")
    parser.add_argument("--radio", help="serial:/dev/ttyUSB0, serial:auto, tcp:HOST[:PORT] or sim.")
    parser.add_argument("--with-scheduler", action="store_true",
                        help="Run the scheduled jobs in this process too (instead of `safebench worker`). "
                        "Only one scheduler runs per hub: a second waits.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    instance = Path(args.instance).resolve() if args.instance else config.instance_path_from_env()
    keep_private(instance)  # the journal and the database's WAL are written from here too
    settings = config.load_settings(instance)
    try:
        spec = RadioSpec.parse(args.radio or settings["RADIO"] or "sim")
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if not has_controlling_terminal():
        # Run as a service, the bridge would die when the radio is unplugged.
        # systemd starts it as a session leader with no terminal, and such a
        # process takes the first terminal it opens without O_NOCTTY as its
        # controlling terminal: the meshtastic library opens the radio's tty so
        # (a plain open() to clear HUPCL). Pulling the cable hangs that tty up,
        # the kernel sends the session leader SIGHUP, and by default SIGHUP ends
        # the process; systemd's Restart=on-failure counts that as a clean exit.
        # The tty cannot be kept from becoming ours from here: opening it first
        # with O_NOCTTY does not change what the library's own open() does, and
        # giving it up with TIOCNOTTY makes the kernel send the leader SIGHUP
        # too. Without a terminal of our own, a SIGHUP can only be the radio's
        # (or a deliberate kill): ignored, the bridge sees the lost connection and
        # reopens the radio, as it does when started from a terminal. With a
        # terminal, SIGHUP still ends the bridge when that terminal goes away.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sim = None
    if spec.kind == "sim":
        from radio_bridge.simulator import SimulatedRadio

        sim = SimulatedRadio(link_path=instance / "sim-radio").start()
    # The radio first: its handshake (mostly waiting on the line) runs while the domain layer
    # loads and the schema is checked, and what it hears meanwhile is journaled (radio_bridge/listening.py).
    listening = Listening(Journal(instance / JOURNAL_FILE), settings.get("CLOCK", utcnow),
                          float(settings["RADIO_CONNECT_TIMEOUT_S"]))
    listening.open_soon(spec, sim.path if sim else None)
    try:
        return run(args, settings, instance, spec, sim, listening, stop)
    finally:
        listening.close()  # the bridge closed it already, unless it never started
        if sim is not None:
            sim.stop()


def run(args: argparse.Namespace, settings: dict[str, Any], instance: Path, spec: RadioSpec,
        sim: SimulatedRadio | None, listening: Listening, stop: threading.Event) -> int:
    """The bridge on an opening radio, once the database is at the newest schema."""
    from radio_bridge.bridge import (
        Bridge,
        register_simulated_stewards,
        remove_simulated_stewards,
    )
    from server.db import HubBusy, run_in_transaction
    from server.migrating import schema_ready

    if not schema_ready(instance, settings):
        print("Error: the database could not be brought to the newest schema; see the messages above.",
              file=sys.stderr)
        return 1
    bridge = Bridge.from_config(settings, spec, sim_path=sim.path if sim else None, listening=listening)
    jobs = link = None
    try:
        if sim is not None:
            nodes = list(sim.device.nodes.values())
            try:
                handles = run_in_transaction(bridge.session, lambda s: register_simulated_stewards(
                    s, bridge.now(), nodes, int(settings["ROLE_TERM_DAYS"])))
            except HubBusy as error:
                print(f"Error: {error} Try again in a moment.", file=sys.stderr)
                return 1
            print(f"SIMULATED RADIO at {sim.path}, simulated stewards: {', '.join(handles)}", flush=True)
            if float(settings["SIM_CHATTER_S"]) > 0:
                sim.chatter(float(settings["SIM_CHATTER_S"]))
        else:
            try:
                removed = run_in_transaction(bridge.session, lambda s: remove_simulated_stewards(s, bridge.now()))
            except HubBusy as error:
                print(f"Error: {error} Try again in a moment.", file=sys.stderr)
                return 1
            if removed:
                print(f"A real radio: the simulated stewards are removed ({', '.join(removed)}).", flush=True)
        if args.with_scheduler:
            from server.scheduler import start_thread

            # Its first run a few seconds in: the jobs can wait, the radio's packets cannot.
            # On the bridge's own engine: one pool and one cache of compiled statements (4 MB less than two).
            jobs = start_thread(settings, stop, start_after=SCHEDULER_START_AFTER_S, engine=bridge.session.get_bind())
        link = start_federation_link(settings, stop, bridge.session.get_bind())
        bridge.run(stop)
    finally:
        stop.set()  # the scheduler too, whatever ended the bridge
        bridge.close()
        if jobs is not None:
            jobs.join(timeout=15)  # a job in its transaction finishes it
        if link is not None:
            link.join(timeout=5)  # its DISCONNECT sent: the broker keeps the session for its return
    return 0


def start_federation_link(settings: dict[str, Any], stop: threading.Event, engine: Any) -> threading.Thread | None:
    """The federation's link on a thread, if this bench joined one (one query); paho is imported only then."""
    from sqlalchemy.orm import Session

    from server.domain import federation

    with Session(engine) as session:
        if federation.this_bench(session) is None:
            return None
    from radio_bridge.federation_link import start_if_joined

    return start_if_joined(settings, stop, engine)


def has_controlling_terminal() -> bool:
    """Whether this process has a controlling terminal (a service has none)."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True
