"""What the hub's processes hold in memory, and how soon the radio is heard after a start.

Runs the real commands on fresh temporary instances (loopback port, the
simulated radio) and reads /proc/<pid>/smaps_rollup for each process once it
has settled. Run it from the repository root::

    .venv/bin/python tests/benchmarks/memory.py [--runs 3] [--settle 5]

1. up       ``safebench up`` on a fresh instance: RSS and PSS of the supervisor
            and of each child; the time from the command to the bridge's
            "radio connected" line on that fresh instance (it migrates), then
            again on the same, now current, database; and after the bridge
            child is killed (kill -9) until the new one says so.
2. units    the systemd units as hub_setup installs them: the same ExecStart
            commands (read from hub_setup/files/etc/systemd/system, the web's
            port 80 on 0.0.0.0 swapped for a loopback port) with their
            Environment= lines and SAFEBENCH_INSTANCE, started together on a
            migrated instance, as systemd starts them; then the bridge alone
            restarted (as Restart= does).
3. imports  an import ladder per process, each in a fresh interpreter: what
            each layer of imports adds to VmRSS.

Every figure is the median of ``--runs`` runs (3 by default; min and max
beside it). The whole run takes two to four minutes on two cores.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAFEBENCH = str(Path(sys.executable).with_name("safebench"))
UNIT_DIR = ROOT / "hub_setup" / "files" / "etc" / "systemd" / "system"

# The aims of issue 14, printed beside the figures.
UP_RSS_AIM_MB = 150
UNITS_RSS_AIM_MB = 130
BRIDGE_RSS_AIM_MB = 55
CONNECTED_AIM_S = 1.5
CONNECTED = "radio connected"
START_TIMEOUT_S = 90


# The folder holding the byte-compiled copy of the hub's packages every process runs (see installed_code).
CODE: list[str] = []


def clean_env(instance: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any SAFEBENCH_* of theirs: the hub on its shipped defaults."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAFEBENCH_")}
    env.update({"SAFEBENCH_INSTANCE": str(instance), "PYTHONUNBUFFERED": "1", **extra})
    if CODE:
        env["PYTHONPATH"] = os.pathsep.join([*CODE, *filter(None, [env.get("PYTHONPATH")])])
    return env


def installed_code(folder: Path) -> Path:
    """The hub's packages as hub_setup/install.sh leaves them on a bench: a copy, byte-compiled, templates too.

    install.sh installs the hub with pip, which compiles every module, and
    then compiles its templates, so a unit loads bytecode at each start. A
    checkout with no ``__pycache__`` (an editable install in a shell with
    ``PYTHONDONTWRITEBYTECODE``, as on the development machine) compiles the
    hub's 140-odd modules from source in every process (session 10: the same
    RSS once settled, to 0.2 MB; the supervisor 0.7 MB more) and has no
    compiled templates (the web server 3 MB more after its first page). The
    copy is of the packages this script itself imports, so a copy with older
    files first on ``PYTHONPATH`` (an A/B) is the one measured; it also keeps
    the code still while others edit the checkout.
    """
    folder.mkdir(parents=True)
    for package in ("server", "radio_bridge"):
        source = Path(importlib.util.find_spec(package).origin).parent
        shutil.copytree(source, folder / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if not compileall.compile_dir(folder, quiet=1, workers=0):
        raise SystemExit(f"could not byte-compile the copy of the hub in {folder}")
    # And its templates, as install.sh does after pip (server/web/template_bytecode.py); `-m` from the copy.
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAFEBENCH_")}
    subprocess.run([sys.executable, "-m", "server.web.template_bytecode"], cwd=folder, env=env, check=True,
                   timeout=120)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, seconds: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- processes and their memory -----------------------------------------------------


def rollup_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB from /proc/<pid>/smaps_rollup."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key] = int(rest.split()[0])
    return values["Rss"], values["Pss"]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far: unlike its wall time, not stretched by a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def command_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
    except OSError:
        return []


def role_of(argv: list[str]) -> str:
    """Which part of the hub a command line is (safebench up's children run ``python -m server PART``)."""
    words = [Path(a).name for a in argv]
    for part, label in (("up", "supervisor"), ("serve", "web"), ("bridge", "bridge"), ("worker", "worker"),
                        ("migrate", "migrate")):
        if part in words:
            return label
    return " ".join(words[:3])


class Watched:
    """A process whose output is read line by line, each line with the monotonic time it arrived."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         cwd=tempfile.gettempdir())
        self.lines: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.changed.notify_all()

    def wait_for(self, text: str, after: float, seconds: float = START_TIMEOUT_S) -> float:
        """The monotonic time of the first line containing ``text`` that came after ``after``."""
        deadline = time.monotonic() + seconds
        with self.changed:
            while True:
                for at, line in self.lines:
                    if at >= after and text in line:
                        return at
                if time.monotonic() > deadline or self.process.poll() is not None:
                    tail = "\n".join(line for _, line in self.lines[-20:])
                    raise RuntimeError(f"{self.name}: no {text!r} within {seconds:g} s; it printed:\n{tail}")
                self.changed.wait(0.2)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=5)
        output = "\n".join(line for _, line in self.lines)
        if "Traceback" in output:
            print(f"!! {self.name} printed a traceback:\n{output[-3000:]}", file=sys.stderr)
        return output


@dataclass
class Reading:
    """One settled hub: each process's (RSS, PSS) in kB, and start-to-radio times in seconds."""

    memory: dict[str, tuple[int, int]] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # the bridge's CPU seconds when it said so


def read_memory(pids: Iterable[int]) -> dict[str, tuple[int, int]]:
    memory: dict[str, tuple[int, int]] = {}
    for pid in pids:
        role = role_of(command_of(pid))
        if role == "migrate":  # short-lived, and only on a database behind the code
            continue
        rss, pss = rollup_kb(pid)
        old = memory.get(role, (0, 0))
        memory[role] = (old[0] + rss, old[1] + pss)
    return memory


def bridge_pid(pids: Iterable[int]) -> int:
    (pid,) = [pid for pid in pids if role_of(command_of(pid)) == "bridge"]
    return pid


# -- 1. safebench up ------------------------------------------------------------------


def run_up(workdir: Path, settle: float) -> Reading:
    instance = workdir / "up-instance"
    port = free_port()
    argv = [SAFEBENCH, "up", "--host", "127.0.0.1", "--port", str(port)]
    reading = Reading()

    hub = Watched("safebench up (fresh)", argv, clean_env(instance))
    try:
        reading.times["up, fresh instance (migrates)"] = hub.wait_for(CONNECTED, hub.started) - hub.started
        wait_for_http(f"http://127.0.0.1:{port}/")
        time.sleep(settle)
        pids = [hub.process.pid, *children_of(hub.process.pid)]
        reading.memory = read_memory(pids)
        # The bridge child dies: from the kill to the new child's "radio connected".
        killed = time.monotonic()
        os.kill(bridge_pid(pids), signal.SIGKILL)
        name = "up, bridge child killed -> restarted"
        reading.times[name] = hub.wait_for(CONNECTED, killed) - killed
        reading.cpu[name] = cpu_seconds(bridge_pid(children_of(hub.process.pid)))
    finally:
        hub.stop()

    hub = Watched("safebench up (current)", argv, clean_env(instance))
    try:
        reading.times["up, current database"] = hub.wait_for(CONNECTED, hub.started) - hub.started
        reading.cpu["up, current database"] = cpu_seconds(bridge_pid(children_of(hub.process.pid)))
    finally:
        hub.stop()
    return reading


# -- 2. the systemd units -------------------------------------------------------------


@dataclass
class Unit:
    name: str
    argv: list[str]
    env: dict[str, str]


def installed_units(port: int) -> list[Unit]:
    """Every long-running safebench unit in hub_setup: its ExecStart and Environment= as systemd runs them."""
    units = []
    for path in sorted(UNIT_DIR.glob("safebench-*.service")):
        text = path.read_text()
        if "Type=oneshot" in text:
            continue  # the nightly backup, the bench WiFi's firewall: not resident
        exec_start = re.search(r"^ExecStart=(.+)$", text, re.MULTILINE)
        if exec_start is None or "@PREFIX@/venv/bin/safebench" not in exec_start.group(1):
            continue
        argv = exec_start.group(1).replace("@PREFIX@/venv/bin/safebench", SAFEBENCH).split()
        # The web server's port 80 on every address, here a free loopback port.
        argv = [{"0.0.0.0": "127.0.0.1", "80": str(port)}.get(word, word) for word in argv]
        env = dict(line.split("=", 1) for line in re.findall(r"^Environment=(.+)$", text, re.MULTILINE))
        units.append(Unit(path.stem, argv, env))
    return units


def run_units(workdir: Path, settle: float) -> Reading:
    instance = workdir / "units-instance"
    port = free_port()
    # install.sh brings the database to the newest schema before it starts the units.
    subprocess.run([SAFEBENCH, "migrate"], env=clean_env(instance), check=True, capture_output=True, timeout=120)
    units = installed_units(port)
    reading = Reading()
    running = [Watched(unit.name, unit.argv, clean_env(instance, **unit.env)) for unit in units]
    try:
        bridge = next(w for w in running if "bridge" in w.name)
        name = "units, bridge unit on a current database"
        reading.times[name] = bridge.wait_for(CONNECTED, bridge.started) - bridge.started
        reading.cpu[name] = cpu_seconds(bridge.process.pid)
        if any("serve" in unit.argv for unit in units):
            wait_for_http(f"http://127.0.0.1:{port}/")
        time.sleep(settle)
        reading.memory = {w.name: rollup_kb(w.process.pid) for w in running}
        # Restart= brings a dead bridge back (after RestartSec): its own start to the radio connected.
        bridge.stop()
        unit = next(u for u in units if u.name == bridge.name)
        again = Watched(unit.name, unit.argv, clean_env(instance, **unit.env))
        running.append(again)
        name = "units, bridge unit restarted"
        reading.times[name] = again.wait_for(CONNECTED, again.started) - again.started
        reading.cpu[name] = cpu_seconds(again.process.pid)
    finally:
        for watched in running:
            watched.stop()
    return reading


# -- 3. import ladders ----------------------------------------------------------------

LADDER_PROBE = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
out = [("python", rss())]
for label, modules, call in json.loads(sys.argv[1]):
    if call:  # before the imports: e.g. what the process sets up before it imports them
        exec(call)
    for name in modules:
        importlib.import_module(name)
    out.append((label, rss()))
heavy = [name for name in ("flask", "sqlalchemy", "alembic", "meshtastic", "urllib3", "asyncio", "ssl", "_hashlib",
                          "paho") if type(sys.modules.get(name)).__name__ == "module"]  # a stand-in is not loaded
print(json.dumps({"steps": out, "loaded": heavy}))
"""

LADDERS: dict[str, list[tuple[str, list[str], str]]] = {
    "supervisor (safebench up)": [
        ("settings, private files", ["server.config", "server.private_files"], ""),
        ("the supervisor", ["server.entry", "server.supervisor"], ""),
        ("settings read", [], "from server import config; config.load_settings(config.instance_path_from_env())"),
    ],
    "web (safebench serve)": [
        # As server/entry.py does for `serve`; it imports werkzeug and limits to stand in for parts of them.
        ("stand-ins for the unused (with werkzeug, limits)", [],
         "from radio_bridge.loaded_when_used import for_the_web_server; for_the_web_server()"),
        ("SQLAlchemy + ORM", ["sqlalchemy", "sqlalchemy.orm"], ""),
        ("domain layer (models, services)", ["server.domain"], ""),
        ("Flask", ["flask"], ""),
        ("Flask extensions (Flask-Migrate and Alembic deferred)", ["server.extensions"], ""),
        ("the CLI", ["server.cli"], ""),
        ("the app built", ["server"], "from server import create_app; create_app()"),
        ("waitress + serving", ["server.serving"], ""),
    ],
    "bridge + scheduler (safebench bridge --with-scheduler)": [
        ("settings", ["server.config"], ""),
        # What radio_bridge.main imports first: hashlib and hmac without OpenSSL; requests, asyncio
        # (and ssl), importlib.metadata, tabulate, bz2 and lzma stood in for, loaded only if ever used.
        ("builtin hashes, stand-ins for the unused", ["radio_bridge.builtin_hashes", "radio_bridge.loaded_when_used"],
         ""),
        ("SQLAlchemy Core", ["sqlalchemy"], ""),
        ("its ORM", ["sqlalchemy.orm"], ""),
        ("domain layer (models, services)", ["server.domain", "server.db", "server.migrating"], ""),
        ("meshtastic + protobuf", ["meshtastic", "meshtastic.serial_interface", "meshtastic.tcp_interface"], ""),
        ("radio_bridge", ["radio_bridge.main", "radio_bridge.bridge"], ""),
        ("the scheduler's jobs", ["server.scheduler"], ""),
        ("the simulated radio (sim only)", ["radio_bridge.simulator"], ""),
        # What the first ORM statement does once: every mapper and relationship set up.
        ("mappers configured (first query)", [], "from sqlalchemy.orm import configure_mappers; configure_mappers()"),
    ],
    "worker alone (safebench worker)": [
        ("SQLAlchemy + ORM", ["sqlalchemy", "sqlalchemy.orm"], ""),
        ("domain layer (models, services)", ["server.domain"], ""),
        ("the scheduler", ["server.scheduler"], ""),
    ],
}
# A bench that joined a federation: the same bridge, and its link to the broker (paho-mqtt, and the ssl
# and OpenSSL it imports), which the bridge of a bench that never joined does not load (issue 17).
LADDERS["bridge of a federated bench (issue 17)"] = [
    *LADDERS["bridge + scheduler (safebench bridge --with-scheduler)"],
    ("the federation's link (paho-mqtt, ssl)", ["radio_bridge.federation_link"], ""),
]


def import_ladders(workdir: Path) -> dict[str, dict]:
    results = {}
    for process, steps in LADDERS.items():
        # From the work folder: `-c` puts the current folder first on sys.path, before the bytecode copy.
        done = subprocess.run([sys.executable, "-c", LADDER_PROBE, json.dumps(steps)], capture_output=True,
                              text=True, timeout=120, env=clean_env(workdir / "ladder-instance"), check=False,
                              cwd=workdir)
        if done.returncode != 0:
            results[process] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        results[process] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


# -- reporting ------------------------------------------------------------------------


def mb(kb: float) -> float:
    return kb / 1024


def spread(values: list[float], unit: str, digits: int = 1) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def print_memory(title: str, readings: list[Reading], aims: dict[str, float]) -> None:
    print(f"\n== {title}: memory per process once settled (MB, median of {len(readings)}; min-max) ==")
    roles = list(dict.fromkeys(role for r in readings for role in r.memory))
    print(f"  {'process':<22} {'RSS':>22} {'PSS':>22}")
    for role in roles:
        rss = [mb(r.memory[role][0]) for r in readings if role in r.memory]
        pss = [mb(r.memory[role][1]) for r in readings if role in r.memory]
        aim = aims.get(role)
        note = f"  aim RSS <= {aim:g}: {verdict(statistics.median(rss) <= aim)}" if aim else ""
        print(f"  {role:<22} {spread(rss, ''):>22} {spread(pss, ''):>22}{note}")
    rss_total = [mb(sum(v[0] for v in r.memory.values())) for r in readings]
    pss_total = [mb(sum(v[1] for v in r.memory.values())) for r in readings]
    aim = aims["total"]
    print(f"  {'total':<22} {spread(rss_total, ''):>22} {spread(pss_total, ''):>22}"
          f"  aim RSS <= {aim:g}: {verdict(statistics.median(rss_total) <= aim)}")


def print_times(readings: list[Reading]) -> None:
    names = list(dict.fromkeys(name for r in readings for name in r.times))
    for name in names:
        values = [r.times[name] for r in readings if name in r.times]
        aimed = "fresh" not in name
        note = f"  aim <= {CONNECTED_AIM_S:g} s: {verdict(statistics.median(values) <= CONNECTED_AIM_S)}" if aimed \
            else "  (a first start migrates: no aim)"
        cpu = [r.cpu[name] for r in readings if name in r.cpu]
        used = f"  bridge CPU {spread(cpu, ' s', 2)}" if cpu else ""
        print(f"  {name:<46} {spread(values, ' s', 2):>22}{note}{used}")


def print_ladders(ladders: dict[str, dict]) -> None:
    print("\n== 3. import ladders: VmRSS (MB) each layer adds, in a fresh interpreter ==")
    for process, result in ladders.items():
        if "error" in result:
            print(f"  {process}: could not import: {result['error']}")
            continue
        steps = result["steps"]
        parts = [f"{steps[0][0]} {steps[0][1]:.1f}"]
        parts += [f"{label} +{now - before:.1f}" for (_, before), (label, now) in itertools.pairwise(steps)]
        print(f"  {process}: total {steps[-1][1]:.1f}")
        print("    " + ", ".join(parts))
        print(f"    heavy modules loaded: {', '.join(result['loaded']) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (medians are printed)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to let the hub settle before reading")
    parser.add_argument("--only", default="up,units,imports", help="comma-separated: up, units, imports")
    parser.add_argument("--from-source", action="store_true",
                        help="run the checkout's modules as they are (no bytecode copy: as before session 10)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
    up: list[Reading] = []
    units: list[Reading] = []
    with tempfile.TemporaryDirectory(prefix="safebench-memory-") as tmp:
        workdir = Path(tmp)
        if not args.from_source:
            CODE[:] = [str(installed_code(workdir / "code"))]
            print(f"the hub's code: {', '.join(sorted(p.name for p in Path(CODE[0]).iterdir()))} copied from "
                  f"{Path(importlib.util.find_spec('server').origin).parents[1]} and byte-compiled with its templates, as install.sh leaves it")
        else:
            print("the hub's code: the checkout's modules as they are (compiled from source where no bytecode is)")
        for run in range(args.runs):
            if "up" in only:
                up.append(run_up(workdir / f"run{run}", args.settle))
            if "units" in only:
                units.append(run_units(workdir / f"run{run}", args.settle))
        ladders = import_ladders(workdir) if "imports" in only else {}
    if up:
        print_memory("1. safebench up", up, {"bridge": BRIDGE_RSS_AIM_MB, "total": UP_RSS_AIM_MB})
        print("  start to the bridge's 'radio connected' line (s):")
        print_times(up)
    if units:
        print_memory("2. the systemd units (as hub_setup installs them)", units,
                     {"safebench-bridge": BRIDGE_RSS_AIM_MB, "total": UNITS_RSS_AIM_MB})
        for unit in installed_units(80):
            shown = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(unit.argv))
            print(f"  {unit.name}: {shown}  [{' '.join(f'{k}={v}' for k, v in unit.env.items())}]")
        print("  start to the bridge's 'radio connected' line (s):")
        print_times(units)
    if ladders:
        print_ladders(ladders)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"reproduce: .venv/bin/python tests/benchmarks/memory.py --runs {args.runs} --settle {args.settle:g}"
          + (f" --only {args.only}" if args.only != "up,units,imports" else "")
          + (" --from-source" if args.from_source else ""))


if __name__ == "__main__":
    main()
