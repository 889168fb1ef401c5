"""A Raspberry Pi becomes a bench hub: hub_setup/install.sh and what it sets up.

``install.sh --root DIR`` writes every file it would install under DIR and
only prints the commands it would run, so these stories read what a Pi would
get: the systemd units (verified by systemd-analyze), the scripts (linted by
ShellCheck), the udev rule for the radio, the bench WiFi and its captive
page, and the nightly backups with their restore. What needs the Pi and the
radio themselves is checked by hand, as hub_setup/README.md describes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
from configparser import ConfigParser
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from server import backup
from server.config import load_settings
from server.domain import patrol, people
from server.extensions import db
from server.web.access import audience_of
from server.web.captive import PROBE_PATHS, is_own_host
from tests.broker import Broker, RawClient, mosquitto_command
from tests.helpers import make_app, make_member
from tests.processes import env_for, safebench

REPO = Path(__file__).resolve().parents[1]
HUB_SETUP = REPO / "hub_setup"
INSTALL = HUB_SETUP / "install.sh"
SERVICES = ("safebench-web.service", "safebench-bridge.service")  # the scheduler runs in the bridge
UNITS = ("safebench.target", *SERVICES, "safebench-backup.service", "safebench-backup.timer")
TIME_WAIT_DROP_IN = "etc/systemd/system/systemd-time-wait-sync.service.d/safebench.conf"
HOTSPOT = "etc/NetworkManager/system-connections/safebench-hotspot.nmconnection"
DNSMASQ = "etc/NetworkManager/dnsmasq-shared.d/safebench.conf"
UDEV_RULE = "etc/udev/rules.d/99-safebench-radio.rules"
ENV_FILE = "etc/safebench/safebench.env"
JOURNALD = "etc/systemd/journald.conf.d/safebench.conf"
WRAPPER = "usr/local/bin/safebench"
WIFI_CAP_UNIT = "safebench-bench-wifi.service"
WIFI_CAP_RULES = "etc/safebench/bench-wifi.nft"
INSTALLED = {
    ENV_FILE, "etc/safebench/install.conf", WRAPPER, TIME_WAIT_DROP_IN, JOURNALD, UDEV_RULE, HOTSPOT, DNSMASQ,
    WIFI_CAP_RULES, *(f"etc/systemd/system/{unit}" for unit in (*UNITS, WIFI_CAP_UNIT)),
}
# Commands that change a machine: staging must never run one of them.
TRIPWIRES = ("systemctl", "useradd", "usermod", "groupadd", "nmcli", "udevadm", "apt-get", "dpkg-query",
             "pip", "chown", "runuser", "sudo")


# -- helpers ------------------------------------------------------------------


def tripwired_path(folder: Path, fake_uid: int | None = None) -> str:
    """A PATH whose machine-changing commands only write their name into folder/ran and fail."""
    bin_dir = folder / "tripwire-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in TRIPWIRES:
        command = bin_dir / name
        command.write_text(f'#!/bin/sh\necho "{name} $*" >> "{folder / "ran"}"\nexit 97\n')
        command.chmod(0o755)
    if fake_uid is not None:
        fake_id = bin_dir / "id"
        fake_id.write_text(f'#!/bin/sh\n[ "$1" = -u ] && echo {fake_uid} && exit 0\nexec /usr/bin/id "$@"\n')
        fake_id.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def stage(root: Path, *options: str, fake_uid: int | None = None, real: bool = False) -> subprocess.CompletedProcess:
    """Run install.sh as a host would, with --root ROOT unless ``real``."""
    env = {**os.environ, "PATH": tripwired_path(root.parent, fake_uid)}
    args = [*([] if real else ["--root", str(root)]), *options]
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=120)


def ran_commands(root: Path) -> str:
    log = root.parent / "ran"
    return log.read_text() if log.exists() else ""


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root: its content and mode."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def unit(root: Path, relative: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and settings; a key may repeat, as systemd allows."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in (root / relative).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def keyfile(root: Path) -> ConfigParser:
    parser = ConfigParser(interpolation=None)
    parser.optionxform = str  # keys as written
    parser.read_string((root / HOTSPOT).read_text())
    return parser


def hub_settings(root: Path, instance: Path) -> dict:
    """The settings the hub reads with the staged env file, as its units (and the wrapper) load it."""
    dumped = subprocess.run(["bash", "-c", 'set -a; . "$1"; exec env -0', "_", str(root / ENV_FILE)],
                            capture_output=True, check=True, env={"PATH": os.environ["PATH"]}).stdout
    environ = dict(item.split("=", 1) for item in dumped.decode().split("\0") if "=" in item)
    return {"SAFEBENCH_INSTANCE": environ.get("SAFEBENCH_INSTANCE"), **load_settings(instance, environ=environ)}


ENV_GENERATOR = Path("/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator")


def read_by_systemd(env_file: Path, tmp_path: Path) -> dict[str, str]:
    """The variables in env_file as systemd's own parser reads them.

    systemd-environment-d-generator reads environment.d files with the
    parser EnvironmentFile= uses, and prints the result shell-quoted.
    """
    config = tmp_path / "xdg"
    (config / "environment.d").mkdir(parents=True)
    shutil.copy(env_file, config / "environment.d" / "50-safebench.conf")
    printed = subprocess.run([str(ENV_GENERATOR)], capture_output=True, text=True, check=True,
                             env={"XDG_CONFIG_HOME": str(config), "HOME": str(tmp_path)}).stdout
    return {key: shlex.split(value)[0] if value else "" for key, _, value in
            (line.partition("=") for line in printed.splitlines()) if key.startswith("SAFEBENCH_")}


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "pi"


# -- staging ------------------------------------------------------------------


def test_staging_writes_every_file_runs_nothing_and_a_second_run_changes_nothing(root):
    first = stage(root)
    assert first.returncode == 0, first.stderr
    assert ran_commands(root) == ""
    files = snapshot(root)
    assert INSTALLED <= set(files)
    # The code itself, to be installed into the virtual environment from there.
    assert "opt/safebench/src/pyproject.toml" in files and "opt/safebench/src/server/backup.py" in files
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    assert set(files) - INSTALLED == {name for name in files if name.startswith("opt/safebench/src/")}
    assert not (root / "opt/safebench/venv").exists()
    for folder in ("var/lib/safebench", "var/backups/safebench"):
        assert stat.S_IMODE((root / folder).stat().st_mode) == 0o700, folder  # the hub's user's alone
    assert stat.S_IMODE((root / "etc/safebench").stat().st_mode) == 0o750  # settings: root writes, the hub reads

    # What it would run on the Pi, in the order it would run it.
    plan = [line.removeprefix("would run: ") for line in first.stdout.splitlines() if line.startswith("would run:")]
    assert any(line.startswith("useradd --system") and line.endswith(" safebench") for line in plan)
    expected_in_order = [
        "python3 -m venv /opt/safebench/venv",
        "/opt/safebench/venv/bin/pip install --quiet --disable-pip-version-check --upgrade /opt/safebench/.src.new",
        "/opt/safebench/venv/bin/python -I -m server.web.template_bytecode",  # after pip, as root (issue 14)
        "systemctl daemon-reload",
        "udevadm control --reload",
        "systemctl enable systemd-time-wait-sync.service",
        "systemctl enable safebench-web.service safebench-bridge.service "
        "safebench.target safebench-backup.timer",
        "systemctl restart safebench.target",
        "nmcli connection reload",
        f"systemctl enable {WIFI_CAP_UNIT}",
        f"systemctl restart {WIFI_CAP_UNIT}",
        "nmcli connection up safebench-hotspot",
    ]
    assert [line for line in plan if line in expected_in_order] == expected_in_order

    second = stage(root)
    assert second.returncode == 0, second.stderr
    assert snapshot(root) == files
    assert "wrote" not in second.stdout
    assert ran_commands(root) == ""


def test_an_upgrade_retires_the_worker_unit_because_the_bridge_runs_the_scheduler(root):
    """A Pi installed before issue 14 ran a scheduler unit of its own: left enabled beside the bridge's
    scheduler it would be a second Python process (~50 MB) waiting for a turn that never comes."""
    first = stage(root)
    assert first.returncode == 0, first.stderr
    old_unit = root / "etc/systemd/system/safebench-worker.service"
    old_unit.write_text("[Service]\nExecStart=/opt/safebench/venv/bin/safebench worker\n")

    upgrade = stage(root)
    assert upgrade.returncode == 0, upgrade.stderr
    assert not old_unit.exists()
    plan = [line.removeprefix("would run: ") for line in upgrade.stdout.splitlines() if line.startswith("would run:")]
    assert plan.index("systemctl disable --now safebench-worker.service") < plan.index("systemctl daemon-reload")
    assert "removed /etc/systemd/system/safebench-worker.service" in upgrade.stdout + upgrade.stderr

    again = stage(root)
    assert "safebench-worker" not in again.stdout + again.stderr


def test_without_root_and_not_as_root_it_refuses_and_changes_nothing(root):
    refused = stage(root, real=True, fake_uid=1000)
    assert refused.returncode != 0
    assert "run it as root" in refused.stderr and "--root DIR" in refused.stderr
    assert ran_commands(root) == ""
    assert not root.exists()


def test_nonsense_options_are_refused_before_anything_is_written(root):
    for options, message in [
        (("--wifi-password", "short"), "8 to 63 characters"),
        (("--wifi-password", 'say "hi" 123'), "must not contain"),
        (("--ssid", "Bench;7"), "must not contain"),
        (("--ssid", "x" * 33), "1 to 32 characters"),
        (("--keep", "0"), "--keep"),
        (("--instance", "relative/path"), "absolute path"),
        (("--open-wifi", "--wifi-password", "long enough"), "contradict"),
        (("--frobnicate",), "unknown option"),
    ]:
        refused = stage(root, *options)
        assert refused.returncode != 0, options
        assert message in refused.stderr, (options, refused.stderr)
        assert not (root / "etc").exists(), options


# -- the units ----------------------------------------------------------------


def test_the_units_run_the_hub_as_its_own_user_sandboxed_after_the_clock_is_set(root):
    assert stage(root).returncode == 0
    commands = {
        "safebench-web.service": "/opt/safebench/venv/bin/safebench serve --host 0.0.0.0 --port 80",
        "safebench-bridge.service": "/opt/safebench/venv/bin/safebench bridge --with-scheduler",
        "safebench-backup.service": "/opt/safebench/venv/bin/safebench backup",
    }
    for name, command in commands.items():
        sections = unit(root, f"etc/systemd/system/{name}")
        service = sections["Service"]
        assert service["ExecStart"] == [command], name
        assert service["User"] == ["safebench"] and service["Group"] == ["safebench"], name
        assert service["EnvironmentFile"] == ["/etc/safebench/safebench.env"], name
        assert "time-sync.target" in " ".join(sections["Unit"]["After"]), name
        for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                           "ProtectHome": "yes", "RestrictSUIDSGID": "yes"}.items():
            assert service[key] == [value], (name, key)
        writable = " ".join(service["ReadWritePaths"]).split()
        assert "/var/lib/safebench" in writable, name
        if name in SERVICES:
            assert service["Restart"] == ["on-failure"], name
            assert sections["Unit"]["Wants"] == ["time-sync.target"], name
            assert sections["Unit"]["PartOf"] == ["safebench.target"], name
            assert sections["Install"]["WantedBy"] == ["safebench.target"], name
            assert writable == ["/var/lib/safebench"], name

    for name in SERVICES:  # two malloc arenas, not eight a core: megabytes on a 512 MB Pi
        assert "MALLOC_ARENA_MAX=2" in unit(root, f"etc/systemd/system/{name}")["Service"]["Environment"], name
    web = unit(root, "etc/systemd/system/safebench-web.service")["Service"]
    # Port 80 as an unprivileged user, with that one capability and no other.
    assert web["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert web["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert web["PrivateDevices"] == ["yes"]
    bridge = unit(root, "etc/systemd/system/safebench-bridge.service")["Service"]
    assert bridge["CapabilityBoundingSet"] == [""] and bridge["SupplementaryGroups"] == ["dialout"]
    # The radio's port must stay reachable, even when it is plugged in later.
    assert "PrivateDevices" not in bridge and "ProtectClock" not in bridge and "DeviceAllow" not in bridge
    # Exactly one scheduler: the bridge's, and no unit of its own.
    assert not (root / "etc/systemd/system/safebench-worker.service").exists()

    backup_unit = unit(root, "etc/systemd/system/safebench-backup.service")["Service"]
    assert backup_unit["Type"] == ["oneshot"]
    assert " ".join(backup_unit["ReadWritePaths"]).split() == ["/var/lib/safebench", "/var/backups/safebench"]
    timer = unit(root, "etc/systemd/system/safebench-backup.timer")
    assert timer["Timer"]["Persistent"] == ["true"] and timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    assert unit(root, "etc/systemd/system/safebench.target")["Install"]["WantedBy"] == ["multi-user.target"]
    # Without any network the wait for the clock ends.
    assert unit(root, TIME_WAIT_DROP_IN)["Service"]["TimeoutStartSec"] == ["90s"]


def test_the_journal_is_kept_small_on_the_sd_card_or_in_ram_only(root):
    assert stage(root).returncode == 0
    journal = unit(root, JOURNALD)["Journal"]
    assert journal["Storage"] == ["persistent"]
    assert journal["SystemMaxUse"] == ["64M"] and journal["MaxRetentionSec"] == ["7day"]
    assert stage(root, "--volatile-logs").returncode == 0
    assert unit(root, JOURNALD)["Journal"]["Storage"] == ["volatile"]


def _stub_executables(root: Path, unit_files: list[Path]) -> None:
    """The programs the units start, as empty scripts under root: verify checks that they exist."""
    for path in unit_files:
        for line in path.read_text().splitlines():
            if line.startswith("ExecStart="):
                program = root / line.removeprefix("ExecStart=").lstrip("-@:+!").split()[0].lstrip("/")
                program.parent.mkdir(parents=True, exist_ok=True)
                program.write_text("#!/bin/sh\n")
                program.chmod(0o755)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (tests/run.sh installs it: apt-get install systemd)")
def test_systemd_analyze_verifies_the_units_and_finds_them_well_sandboxed(root):
    assert stage(root).returncode == 0
    # systemd-analyze --root looks for every unit under root: give it this
    # machine's own (sysinit.target, time-sync.target, ...) beside ours.
    system_units = Path("/lib/systemd/system").resolve()
    shutil.copytree(system_units, root / system_units.relative_to("/"), symlinks=True)
    time_wait = root / system_units.relative_to("/") / "systemd-time-wait-sync.service"
    _stub_executables(root, [root / "etc/systemd/system" / name
                             for name in (*UNITS, WIFI_CAP_UNIT) if name.endswith("service")] + [time_wait])

    verified = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *UNITS, WIFI_CAP_UNIT, "systemd-time-wait-sync.service"],
        capture_output=True, text=True, timeout=120,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Warnings (an unknown key, a typo in a section) do not fail verify: none may be ours.
    complaints = [line for line in (verified.stdout + verified.stderr).splitlines()
                  if "safebench" in line or "time-wait-sync" in line]
    assert complaints == []

    for name in (*SERVICES, "safebench-backup.service", WIFI_CAP_UNIT):
        security = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}", name],
                                  capture_output=True, text=True, timeout=120)
        level = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout + security.stderr)
        assert level, security.stdout + security.stderr
        # systemd calls anything below 5 "OK" (10 is a service with no sandbox at all).
        assert float(level.group(1)) < 5, (name, level.group(0))


# -- the scripts --------------------------------------------------------------


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (tests/run.sh installs it: apt-get install shellcheck)")
def test_every_script_passes_shellcheck(root):
    scripts = sorted(path for path in HUB_SETUP.rglob("*")
                     if path.is_file() and path.read_bytes()[:2] == b"#!" and b"sh" in path.read_bytes()
                     .split(b"\n", 1)[0])
    assert INSTALL in scripts and HUB_SETUP / "files" / WRAPPER in scripts
    assert stage(root).returncode == 0
    checked = subprocess.run(["shellcheck", *map(str, scripts), str(root / WRAPPER)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout


def test_the_safebench_command_at_the_pi_reads_the_hubs_settings(root, app, tmp_path):
    assert stage(root).returncode == 0
    make_member(app, "Kestrel", "steward", node="!a1b2c3d4")
    # The staged command, pointed at this test's hub instead of the Pi's paths.
    env_file = tmp_path / "safebench.env"
    env_file.write_text(f"SAFEBENCH_INSTANCE={app.instance_path}\nSAFEBENCH_RADIO='\"sim\"'\n")
    command = (root / WRAPPER).read_text()
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    command = re.sub(r"(?m)^hub_user=.*$", f"hub_user={user}", command)
    command = re.sub(r"(?m)^env_file=.*$", f"env_file={env_file}", command)
    command = re.sub(r"(?m)^venv=.*$", f"venv={Path(sys.executable).parent.parent}", command)
    wrapper = tmp_path / "safebench"
    wrapper.write_text(command)
    wrapper.chmod(0o755)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBENCH_")}
    listed = subprocess.run([str(wrapper), "steward", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "Kestrel" in listed.stdout and "!a1b2c3d4" in listed.stdout


# -- the radio ----------------------------------------------------------------

# (vendor, product): the USB chips of the common Meshtastic boards, as the
# boards' firmware reports them (meshtastic/firmware boards/*.json, the
# meshtastic library's supported_device.py).
RADIO_CHIPS = {
    ("10c4", "ea60"): "CP210x",
    ("1a86", "7523"): "CH340",
    ("1a86", "55d4"): "CH9102",
    ("303a", "1001"): "ESP32-S3 native USB",
    ("239a", "8029"): "nRF52840: RAK4631, T1000-E, Nano G2 Ultra",
    ("239a", "4405"): "nRF52840: T-Echo, Heltec T114",
}
RULE_PART = re.compile(r'^(SUBSYSTEMS?|ATTRS?\{\w+\}|ENV\{\w+\}|SYMLINK|GROUP|MODE)(==|\+=|=)"[^"]*"$')


def test_the_hub_radio_gets_a_stable_path_whichever_common_chip_it_has(root):
    assert stage(root).returncode == 0
    rules = [line for line in (root / UDEV_RULE).read_text().splitlines() if line and not line.startswith("#")]
    found = {}
    for rule in rules:
        parts = rule.split(", ")
        assert all(RULE_PART.match(part) for part in parts), rule
        assert 'SUBSYSTEM=="tty"' in parts and 'SYMLINK+="safebench-radio"' in parts, rule
        assert 'GROUP="dialout"' in parts and 'MODE="0660"' in parts, rule
        # ModemManager would otherwise probe the radio with AT commands.
        assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in parts, rule
        ids = dict(re.findall(r'ATTRS\{(idVendor|idProduct)\}=="([0-9a-f]{4})"', rule))
        found[(ids["idVendor"], ids["idProduct"])] = rule
    assert set(RADIO_CHIPS) <= set(found)
    # Not the nRF52 bootloader: a radio being flashed is not the hub's radio.
    assert ("239a", "0029") not in found
    assert hub_settings(root, root / "instance")["RADIO"] == "serial:/dev/safebench-radio"


# -- the bench WiFi -----------------------------------------------------------


def test_the_bench_wifi_is_an_open_hotspot_where_every_name_is_the_hub(root):
    assert stage(root).returncode == 0
    assert stat.S_IMODE((root / HOTSPOT).stat().st_mode) == 0o600
    hotspot = keyfile(root)
    assert hotspot["connection"]["type"] == "wifi" and hotspot["connection"]["autoconnect"] == "true"
    assert hotspot["wifi"]["mode"] == "ap" and hotspot["wifi"]["ssid"] == "SafeBench"
    assert hotspot["ipv4"]["method"] == "shared" and hotspot["ipv4"]["address1"] == "10.42.0.1/24"
    assert not hotspot.has_section("wifi-security")  # open, as the bench is
    dns = [line for line in (root / DNSMASQ).read_text().splitlines() if line and not line.startswith("#")]
    assert dns == ["address=/#/10.42.0.1"]

    settings = hub_settings(root, root / "var/lib/safebench")
    assert settings["SAFEBENCH_INSTANCE"] == "/var/lib/safebench"
    assert settings["CAPTIVE_PORTAL"] is True
    # What the posters print is what the hotspot is.
    assert settings["BENCH_WIFI_SSID"] == "SafeBench" and settings["BENCH_WIFI_PASSWORD"] == ""
    assert settings["BENCH_URL"] == "http://10.42.0.1/"
    assert settings["BACKUP_DIR"] == "/var/backups/safebench" and settings["BACKUP_KEEP"] == 7


# Run inside a network namespace of its own: 40 connections from one address
# to a listener on the loopback, then one from a second address.
CAP_PROBE = """
import socket, sys
listener = socket.create_server(("127.0.0.1", 8080), backlog=100)
held, refused = [], 0
for _ in range(40):
    phone = socket.socket()
    phone.settimeout(2)
    try:
        phone.connect(("127.0.0.1", 8080))
        held.append(phone)
    except ConnectionRefusedError:
        refused += 1
        phone.close()
other = socket.socket()
other.bind(("127.0.0.2", 0))
other.settimeout(2)
other.connect(("127.0.0.1", 8080))
print(len(held), refused, "other phone connected")
"""


def _namespace_with_firewall() -> str | None:
    """Why a network namespace with nftables cannot be had here, or None when it can."""
    if shutil.which("nft") is None:
        return "nft is not installed (apt-get install nftables)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is not installed"
    tried = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "nft", "list", "ruleset"],
                           capture_output=True, text=True, timeout=30)
    return None if tried.returncode == 0 else f"no network namespace with nftables here: {tried.stderr.strip()}"


def test_one_phone_on_the_bench_wifi_holds_at_most_32_connections_to_the_pi(root):
    assert stage(root).returncode == 0
    rules = (root / WIFI_CAP_RULES).read_text()
    assert 'iifname "wlan0"' in rules and "ip saddr ct count over 32" in rules and "reject with tcp reset" in rules
    cap = unit(root, f"etc/systemd/system/{WIFI_CAP_UNIT}")
    assert cap["Service"]["ExecStart"] == ["/usr/sbin/nft -f /etc/safebench/bench-wifi.nft"]
    assert cap["Service"]["ExecStop"] == ["/usr/sbin/nft delete table ip safebench"]
    assert cap["Service"]["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert cap["Install"]["WantedBy"] == ["multi-user.target"]
    assert "nftables.service" in cap["Unit"]["After"]

    unavailable = _namespace_with_firewall()
    if unavailable:
        pytest.skip(unavailable)
    # The same rules on the loopback, in a kernel of our own: the real cap, not only its syntax.
    looped = root.parent / "loopback"
    assert stage(looped, "--wifi-interface", "lo").returncode == 0
    staged, rules_on_lo = (shlex.quote(str(path / WIFI_CAP_RULES)) for path in (root, looped))
    script = (f"nft -c -f {staged} && ip link set lo up && "
              # Loaded twice, as a restart of the unit loads it over the table already there.
              f"nft -f {rules_on_lo} && nft -f {rules_on_lo} && "
              f"exec {shlex.quote(sys.executable)} -c {shlex.quote(CAP_PROBE)}")
    probed = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert probed.returncode == 0, probed.stdout + probed.stderr
    assert probed.stdout.split() == ["32", "8", "other", "phone", "connected"]


@pytest.mark.skipif(not ENV_GENERATOR.exists(), reason="systemd's environment.d generator is not installed")
def test_systemd_reads_the_env_file_as_the_safebench_command_does(root, tmp_path):
    assert stage(root, "--wpa2", "--ssid", "Corner Shop 24").returncode == 0
    dumped = subprocess.run(["bash", "-c", 'set -a; . "$1"; exec env -0', "_", str(root / ENV_FILE)],
                            capture_output=True, check=True, env={"PATH": os.environ["PATH"]}).stdout
    by_bash = {key: value for key, _, value in (item.partition("=") for item in dumped.decode().split("\0"))
               if key.startswith("SAFEBENCH_")}
    assert read_by_systemd(root / ENV_FILE, tmp_path) == by_bash
    assert by_bash["SAFEBENCH_BENCH_WIFI_SSID"] == '"Corner Shop 24"'


def test_a_wpa2_bench_wifi_gets_a_password_that_later_runs_keep_until_it_is_opened_again(root):
    protected = stage(root, "--wpa2", "--ssid", "2024")
    assert protected.returncode == 0, protected.stderr
    password = keyfile(root)["wifi-security"]["psk"]
    assert len(password) == 12 and f"password: {password}" in protected.stdout
    assert keyfile(root)["wifi-security"]["key-mgmt"] == "wpa-psk"
    settings = hub_settings(root, root / "instance")
    # A name of digits stays text for the posters.
    assert settings["BENCH_WIFI_SSID"] == "2024" and settings["BENCH_WIFI_PASSWORD"] == password

    assert stage(root, "--keep", "3").returncode == 0  # say nothing about the WiFi: it stays as it was
    assert keyfile(root)["wifi-security"]["psk"] == password and keyfile(root)["wifi"]["ssid"] == "2024"
    assert hub_settings(root, root / "instance")["BACKUP_KEEP"] == 3

    assert stage(root, "--wifi-password", "bench by the bakery").returncode == 0
    assert keyfile(root)["wifi-security"]["psk"] == "bench by the bakery"

    assert stage(root, "--open-wifi").returncode == 0
    assert not keyfile(root).has_section("wifi-security")
    assert hub_settings(root, root / "instance")["BENCH_WIFI_PASSWORD"] == ""


def test_without_the_hotspot_there_is_no_bench_wifi_and_no_captive_page(root):
    assert stage(root).returncode == 0
    without = stage(root, "--no-hotspot")
    assert without.returncode == 0
    assert not (root / HOTSPOT).exists() and not (root / DNSMASQ).exists()
    # Its cap goes too, taken out of the kernel before its unit file is removed.
    assert not (root / WIFI_CAP_RULES).exists() and not (root / "etc/systemd/system" / WIFI_CAP_UNIT).exists()
    assert f"would run: systemctl disable --now {WIFI_CAP_UNIT}" in without.stdout
    settings = hub_settings(root, root / "instance")
    assert settings["CAPTIVE_PORTAL"] is False
    assert stage(root, "--hotspot").returncode == 0
    assert (root / HOTSPOT).exists() and hub_settings(root, root / "instance")["CAPTIVE_PORTAL"] is True


# -- the captive page ---------------------------------------------------------

PROBES = [
    ("connectivitycheck.gstatic.com", "/generate_204"),  # Android
    ("clients3.google.com", "/generate_204"),
    ("captive.apple.com", "/hotspot-detect.html"),  # iPhone
    ("www.msftconnecttest.com", "/connecttest.txt"),  # Windows
    ("www.msftncsi.com", "/ncsi.txt"),
    ("detectportal.firefox.com", "/canonical.html"),  # Firefox
]


@pytest.fixture
def bench_wifi_app(tmp_path, clock):
    app = make_app(tmp_path / "instance", clock, CAPTIVE_PORTAL=True, RATELIMIT_ENABLED=False)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_phone_joining_the_bench_wifi_is_shown_the_bench_page(bench_wifi_app):
    client = bench_wifi_app.test_client()
    for host, path in PROBES:
        answer = client.get(path, headers={"Host": host})
        # Never the 204 or "Success" the phone hopes for: that would tell it
        # it is online, and it would show nothing.
        assert answer.status_code == 302, (host, path)
        assert answer.location == "http://10.42.0.1/"
        assert answer.headers["Cache-Control"] == "no-store"
    # A probe sent to the hub's own address is redirected too.
    for path in PROBE_PATHS:
        assert client.get(path, headers={"Host": "10.42.0.1"}).location == "http://10.42.0.1/", path

    # Whatever else a phone asks for, it gets the bench page, not a login form on a borrowed name.
    for path in ("/", "/search?q=news", "/host/", "/login"):
        answer = client.get(path, headers={"Host": "www.example.org"})
        assert (answer.status_code, answer.location) == (302, "http://10.42.0.1/"), path

    page = client.get("/", headers={"Host": "10.42.0.1"})
    assert page.status_code == 200 and "Safe Bench" in page.get_data(as_text=True)
    # The probe addresses exist only on the bench WiFi, so the access sweep
    # (test_access_control.py) does not see them: they are public here.
    probes = [rule for rule in bench_wifi_app.url_map.iter_rules() if rule.endpoint == "captive.probe"]
    assert sorted(rule.rule for rule in probes) == sorted(PROBE_PATHS)
    assert [rule.endpoint for rule in bench_wifi_app.url_map.iter_rules()
            if audience_of(bench_wifi_app, rule.endpoint) is False] == []


def test_the_hub_answers_normally_under_its_own_names(bench_wifi_app):
    client = bench_wifi_app.test_client()
    for host in ("10.42.0.1", "10.42.0.1:80", "localhost:8080", "192.168.1.20", "[fe80::1]:80", "raspberrypi.local"):
        assert client.get("/log", headers={"Host": host}).status_code == 200, host
    # A host at home reaching the Pi by its name on the home network.
    assert is_own_host("benchpi.fritz.box", "10.42.0.1", "benchpi")
    assert is_own_host("BENCHPI", "10.42.0.1", "benchpi")
    assert not is_own_host("benchpitfall.com", "10.42.0.1", "benchpi")
    assert not is_own_host("captive.apple.com", "10.42.0.1", "benchpi")


def test_away_from_the_bench_wifi_there_is_no_captive_page(client):
    assert client.get("/generate_204").status_code == 404
    assert client.get("/", headers={"Host": "hub.example.org"}).status_code == 200


# -- backups ------------------------------------------------------------------


def members_in(database: Path) -> list[str]:
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as connection:
        return [row[0] for row in connection.execute("SELECT handle FROM member ORDER BY handle")]


def test_the_nightly_backup_copies_the_running_hubs_database_and_keeps_the_last_n(app, clock, tmp_path):
    make_member(app, "Kestrel", "steward", node="!a1b2c3d4")
    with app.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        patrol.add_area(db.session, "Market")
        patrol.start_shift(db.session, clock(), kestrel, "Market", patrol.SOURCE_RADIO)
        db.session.commit()
    live = Path(app.instance_path) / "safebench.db"
    folder = tmp_path / "backups"

    # The hub is in the middle of writing (a transaction not yet committed): the copy has what was committed.
    writer = sqlite3.connect(live, timeout=5)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE member SET handle = 'Half-written' WHERE handle = 'Kestrel'")
    done = safebench(Path(app.instance_path), "backup", "--to", str(folder), "--keep", "2")
    writer.rollback()
    writer.close()
    assert done.returncode == 0, done.stderr
    (copy,) = backup.list_backups(folder)
    assert f"Backed up to {copy}" in done.stdout
    assert members_in(copy) == ["Kestrel"]
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # it holds everything the hub knows
    with sqlite3.connect(copy) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert connection.execute("SELECT count(*) FROM log_entry").fetchone()[0] == 1
    assert not list(folder.glob("*-wal")) and not list(folder.glob(".*partial"))

    # Night after night, only the newest copies stay; other files are left alone. The command
    # named its copy by the real clock: the nights that follow are counted from that copy, so
    # they sort after it whatever the date the test runs on.
    (folder / "notes.txt").write_text("the host's own file")
    taken = datetime.strptime(copy.name, f"safebench-{backup.BACKUP_TIME_FORMAT}.db")
    nights = [taken.replace(hour=5, minute=30, second=0) + timedelta(days=days) for days in (1, 2, 3)]
    for night in nights:
        backup.back_up(live, folder, 2, night)
    kept = backup.list_backups(folder)
    assert [path.name for path in kept] == [backup.backup_name(night) for night in nights[1:]]
    assert (folder / "notes.txt").exists()


def test_backups_go_where_the_settings_say(app, tmp_path):
    folder = tmp_path / "elsewhere"
    env = env_for(Path(app.instance_path), SAFEBENCH_BACKUP_DIR=str(folder), SAFEBENCH_BACKUP_KEEP="1")
    for _ in range(2):
        done = subprocess.run([str(Path(sys.executable).with_name("safebench")), "backup"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
    assert len(backup.list_backups(folder)) == 1

    # A coordination hub on PostgreSQL backs up with PostgreSQL's own tools.
    with pytest.raises(backup.BackupError, match="pg_dump"):
        backup.sqlite_path("postgresql://hub@localhost/bench")


def test_a_backup_is_restored_as_documented_and_the_restore_can_be_undone(app, tmp_path):
    instance = Path(app.instance_path)
    live = instance / "safebench.db"
    folder = instance / "backups"  # where backups go when BACKUP_DIR is not set
    make_member(app, "Kestrel", "steward", node="!a1b2c3d4")
    assert safebench(instance, "backup").returncode == 0
    (copy,) = backup.list_backups(folder)
    make_member(app, "Wren", "steward", node="!00000002")  # after the backup
    assert members_in(live) == ["Kestrel", "Wren"]

    # hub_setup/README.md: stop the hub, restore, start the hub.
    restored = safebench(instance, "restore", str(copy), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert members_in(live) == ["Kestrel"]
    with app.app_context():
        db.session.remove()
        assert people.find_member(db.session, "Wren") is None and people.find_member(db.session, "Kestrel")
    # What was there before the restore was kept, and restoring it undoes the restore.
    safety = next(path for path in backup.list_backups(folder) if path != copy)
    assert f"What it held before is in {safety}" in restored.stdout
    assert members_in(safety) == ["Kestrel", "Wren"]
    assert safebench(instance, "restore", str(safety), "--yes").returncode == 0
    assert members_in(live) == ["Kestrel", "Wren"]

    # Anything but a Safe Bench database is refused, and the hub's is left as it was.
    stranger = tmp_path / "other.db"
    with sqlite3.connect(stranger) as connection:
        connection.execute("CREATE TABLE recipes (name TEXT)")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    for wrong in (stranger, junk):
        refused = safebench(instance, "restore", str(wrong), "--yes")
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
        assert "not a" in refused.stderr
    assert members_in(live) == ["Kestrel", "Wren"]


# -- the federation's broker (optional) ------------------------------------------------

BROKER_CONF = "etc/mosquitto/conf.d/safebench-federation.conf"
BROKER_ACL = "etc/mosquitto/safebench/acl"
BROKER_PASSWD = "etc/mosquitto/safebench/passwd"


def test_a_bench_can_also_run_the_federations_broker_and_later_stop_running_it(root):
    plain = stage(root)
    assert plain.returncode == 0, plain.stderr
    assert not (root / "etc/mosquitto").exists()  # only on request

    with_broker = stage(root, "--mqtt-broker", "eastside", "--broker-host", "broker.example.org")
    assert with_broker.returncode == 0, with_broker.stderr
    assert ran_commands(root) == ""
    conf = (root / BROKER_CONF).read_text()
    assert "allow_anonymous false" in conf and "listener 8883" in conf and "listener 1883" not in conf
    assert "password_file /etc/mosquitto/safebench/passwd" in conf and "acl_file /etc/mosquitto/safebench/acl" in conf
    assert "persistent_client_expiration 14d" in conf
    acl = (root / BROKER_ACL).read_text()
    assert "pattern read safebench/eastside/#" in acl and "pattern write safebench/eastside/%u/#" in acl
    assert (root / BROKER_PASSWD).exists() and stat.S_IMODE((root / BROKER_PASSWD).stat().st_mode) == 0o640
    plan = [line.removeprefix("would run: ") for line in with_broker.stdout.splitlines()
            if line.startswith("would run:")]
    assert any(line.startswith("env DEBIAN_FRONTEND=noninteractive apt-get install") and line.endswith(" mosquitto")
               for line in plan)
    assert f"bash {HUB_SETUP}/broker-certificates.sh /etc/mosquitto/safebench broker.example.org" in plan
    assert plan.index("systemctl enable mosquitto.service") < plan.index("systemctl restart mosquitto.service")
    assert "mqtts://broker.example.org:8883" in with_broker.stdout
    assert "mosquitto_passwd /etc/mosquitto/safebench/passwd BENCHNAME" in with_broker.stdout

    # The hosts' logins in the password file survive the next run; the option is remembered.
    (root / BROKER_PASSWD).write_text("north:$7$hash\n")
    again = stage(root)
    assert again.returncode == 0, again.stderr
    assert "wrote" not in again.stdout and (root / BROKER_PASSWD).read_text() == "north:$7$hash\n"

    stopped = stage(root, "--no-mqtt-broker")
    assert stopped.returncode == 0, stopped.stderr
    assert not (root / BROKER_CONF).exists() and not (root / BROKER_ACL).exists()
    assert "systemctl try-restart mosquitto.service" in stopped.stdout
    assert (root / BROKER_PASSWD).exists()  # the logins stay, should the broker come back


def test_a_broker_needs_a_plain_name_and_the_address_the_benches_dial(root):
    for options, message in [
        (("--mqtt-broker", "eastside"), "needs --broker-host"),
        (("--mqtt-broker", "East/Side", "--broker-host", "10.0.0.2"), "federation's name"),
        (("--mqtt-broker", "eastside", "--broker-host", "bad host"), "--broker-host"),
    ]:
        refused = stage(root, *options)
        assert refused.returncode != 0, options
        assert message in refused.stderr, (options, refused.stderr)
        assert not (root / "etc").exists(), options


@pytest.mark.skipif(mosquitto_command() is None, reason="mosquitto is not installed (tests/run.sh installs it)")
def test_the_installed_broker_lets_each_bench_write_only_under_its_own_name_over_tls(root, tmp_path):
    """The staged files, as they are, run a real Mosquitto: TLS with the certificate install.sh makes,
    no anonymous clients, wrong passwords refused, and the ACL keeps each bench to its own topic."""
    assert stage(root, "--mqtt-broker", "eastside", "--broker-host", "127.0.0.1").returncode == 0
    with Broker(tmp_path / "broker", "eastside", {"north": "north-pw", "south": "south-pw"}, tls=True,
                staged=root) as broker:
        south = RawClient(broker, "south", "south-pw")
        assert south.connack.value == 0
        south.subscribe("safebench/eastside/#")
        north = RawClient(broker, "north", "north-pw")
        assert north.publish("safebench/eastside/north/alert", b"ours") == 0
        assert north.publish("safebench/eastside/south/alert", b"pretending") == 135  # not authorised
        assert north.publish("safebench/westside/north/alert", b"elsewhere") == 135
        south.turn_until(lambda: len(south.heard) >= 1, 3)
        south.turn_until(lambda: False, 0.5)
        assert south.heard == [("safebench/eastside/north/alert", b"ours")]
        assert RawClient(broker, "north", "wrong").connack.value == 135  # not authorised
        assert RawClient(broker, "", "", client_id="anonymous").connack.value != 0
        for client in (north, south):
            client.close()
    # Only TLS is offered: a plain MQTT client's CONNECT is never answered.
    with Broker(tmp_path / "broker2", "eastside", {"north": "north-pw"}, tls=True, staged=root) as broker:
        broker.tls = False
        try:
            answered = RawClient(broker, "north", "north-pw", wait=1.0).connack
        except OSError:  # the TLS listener hung up on it
            answered = None
        assert answered is None
