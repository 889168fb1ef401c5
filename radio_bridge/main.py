"""``python -m radio_bridge``: the bridge process, without the web app.

``safebench bridge`` applies pending migrations and then becomes this
process (exec, same pid), so the bridge's resident memory is the domain
layer, SQLAlchemy and meshtastic, not Flask and Alembic as well: it shares
a Pi Zero 2 W's 512 MB with the web server and the scheduler.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from radio_bridge.bridge import Bridge, register_simulated_stewards
from radio_bridge.mesh import RadioSpec
from server import config
from server.db import HubBusy, run_in_transaction

log = logging.getLogger("radio_bridge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radio_bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--instance", help="The hub's instance folder (default: SAFEBENCH_INSTANCE or ./instance).")
    parser.add_argument("--radio", help="serial:/dev/ttyUSB0, serial:auto, tcp:HOST[:PORT] or sim.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    instance = Path(args.instance).resolve() if args.instance else config.instance_path_from_env()
    settings = config.load_settings(instance)
    try:
        spec = RadioSpec.parse(args.radio or settings["RADIO"] or "sim")
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim = None
    if spec.kind == "sim":
        from radio_bridge.simulator import SimulatedRadio

        sim = SimulatedRadio(link_path=instance / "sim-radio").start()
    bridge = Bridge.from_config(settings, spec, sim_path=sim.path if sim else None)
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
        bridge.run(stop)
    finally:
        bridge.close()
        if sim is not None:
            sim.stop()
    return 0
