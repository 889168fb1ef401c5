"""What a running hub leaves behind, read as someone who took its card would: real processes, real files.

The radio journal and the database's WAL keep a copy of every page written
until they are truncated; a deleted row stays in free space unless SQLite
zeroes it; a file readable by others is readable by anyone with a shell on
the Pi; the process logs live a week in journald. Each story runs the real
``safebench`` or bridge process and then reads the instance's files as raw
bytes, or the processes' output.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from html import unescape
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

from radio_bridge.bridge import SIM_DECISION
from radio_bridge.journal import Journal
from radio_bridge.simulator import SimNode, SimulatedRadio
from server.clock import utcnow
from server.db import make_engine
from server.domain import patrol, people, power_record, radio_trust
from server.domain.people import DISPATCH, STEWARD
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import PASSWORD, FakeClock, add_steward, make_app, seat_role
from tests.processes import SAFEBENCH, env_for, free_port, safebench, wait_for_http

KESTREL, HERON, STRANGER = 0xA1B2C3D4, 0x0000BEEF, 0x0BADF00D
DURESS_WORD = "bluebird"
# What people said and typed: none of it may reach the journal's files once acted on, or any process log.
SHIFT_SPOT = "6 Cobbold Row"
SEEN = "Leofric Haverstock-Moyo"
SEEN_AT = "5 Quarry Mews"
SHOUTER = "Ottoline Fairweather-Essien"
ARRESTED = "Ignatius Wolkenstein-Achebe"
ARREST_SPOT = "Tannery Yard gate"
DURESS_SPOT = "Wicklow Passage"
SOS_SPOT = "9 Ravenglass Court"
UNHEARD = "Araminta Pocklington-Udeh"  # a stranger's radio
NEIGHBOUR = "Marisol Quintanilla-Oyelaran"
NEIGHBOUR_PHONE = "+44 7700 900461"
CONFLICT = "poisoned the pear tree"
SIGNER = "Perpetua Szczepanski-Adeyemi"
PERSONAL = [SHIFT_SPOT, SEEN, SEEN_AT, SHOUTER, ARRESTED, ARREST_SPOT, DURESS_SPOT, DURESS_WORD, SOS_SPOT, UNHEARD,
            NEIGHBOUR, NEIGHBOUR_PHONE, "7700 900461", CONFLICT, SIGNER]


def stop(process: subprocess.Popen, timeout: float = 30) -> str:
    """SIGTERM, as systemd and `safebench up` stop a part; what it printed (nothing more once stopped)."""
    if process.returncode is not None:
        return ""
    process.send_signal(signal.SIGTERM)
    output, errors = process.communicate(timeout=timeout)
    return (output or "") + (errors or "")


def answering(hub: subprocess.Popen, url: str) -> None:
    """Wait until the hub's web server answers; if it never does, fail with what the hub printed."""
    try:
        assert wait_for_http(url, seconds=60) == 200
    except OSError:
        raise AssertionError(f"the hub never answered on {url}:\n{stop(hub)}") from None


def wait_for(done, seconds: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"not in time: {what}"
        time.sleep(0.2)


def rows(instance: Path, sql: str, *parameters: object) -> list[tuple]:
    engine = make_engine(f"sqlite:///{instance / 'safebench.db'}", 5000)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(sql, parameters)]
    finally:
        engine.dispose()


def register(instance: Path, sim: SimulatedRadio) -> None:
    """Kestrel, a steward whose handheld's key the host pinned; Heron, a dispatcher with a password; an area."""
    app = make_app(instance, utcnow)
    with app.app_context():
        now = utcnow()
        kestrel = add_steward(db.session, now, "Kestrel", KESTREL)
        radio_trust.pin_key(db.session, now, kestrel, sim.device.nodes[KESTREL].public_key, by=None)
        heron = add_steward(db.session, now, "Heron", HERON)
        seat_role(db.session, now, heron, DISPATCH)
        people.set_password(heron, PASSWORD)
        patrol.add_area(db.session, "Market")
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def handhelds() -> list[SimNode]:
    return [SimNode(KESTREL, "Kestrel's handheld", "KEST"), SimNode(HERON, "Heron's handheld", "HERN"),
            SimNode(STRANGER, "Someone", "WHO")]


def raw(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def found_in(data: bytes, texts: list[str]) -> list[str]:
    return [text for text in texts if text.encode() in data]


# -- the journal, the WALs and deleted rows ----------------------------------------------------------


def test_after_a_burst_of_radio_traffic_no_file_of_the_hub_holds_what_was_deleted(tmp_path):
    instance = tmp_path / "instance"
    with SimulatedRadio(link_path=tmp_path / "radio", rate_limit=False, nodes=handhelds()) as sim:
        register(instance, sim)
        bridge = subprocess.Popen([sys.executable, "-m", "radio_bridge", "--instance", str(instance),
                                   "--radio", f"serial:{sim.path}"], env=env_for(instance),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert sim.wait_for_handshake(timeout=30), "the bridge never opened the radio"
            # A burst: a shift with a place typed, check-ins with names, and a stranger's radio shouting.
            sim.deliver_text(KESTREL, f"ON Market by {SHIFT_SPOT}")
            for number in range(30):
                sim.deliver_text(STRANGER, f"{UNHEARD} is at number {number}")
                if number % 5 == 0:
                    sim.deliver_text(KESTREL, f"CI saw {SEEN} at {SEEN_AT}")
            sim.deliver_dm(KESTREL, "OFF")  # counts only from her own radio
            wait_for(lambda: rows(instance, "SELECT count(*) FROM shift WHERE ended_at IS NOT NULL") == [(1,)],
                     what="the shift ended")
            journal = instance / "radio-journal.sqlite"
            # Once the journal is empty and a second has passed quietly, its WAL is truncated to nothing.
            wait_for(lambda: not raw(Path(f"{journal}-wal")), seconds=15, what="the journal's WAL truncated")
            assert Journal(journal).depth() == 0
            left = found_in(raw(journal) + raw(Path(f"{journal}-wal")), [SHIFT_SPOT, SEEN, SEEN_AT, UNHEARD])
            assert left == [], f"the journal still holds {left}"
        finally:
            printed = stop(bridge)
    assert "Traceback" not in printed, printed
    # A clean stop truncates the database's WAL too (or SQLite removed it with the last connection).
    assert not raw(instance / "safebench.db-wal")

    # A month on, the worker reduces the old log: the place Kestrel typed goes, from every byte of the card.
    assert SHIFT_SPOT.encode() in raw(instance / "safebench.db")
    later = make_app(instance, FakeClock(utcnow() + timedelta(days=31)))
    try:
        outcomes = run_all_once(later)
        assert "0 pages left in the write-ahead log" in outcomes
        # Read while the worker's connection is still open: the checkpoint, not a last close, emptied the WAL.
        assert not raw(instance / "safebench.db-wal")
        data = raw(instance / "safebench.db") + raw(instance / "safebench.db-wal")
        assert found_in(data, [SHIFT_SPOT, SEEN, SEEN_AT, UNHEARD]) == []
        assert b"Market" in data, "the bytes read are the hub's"
    finally:
        with later.app_context():
            db.session.remove()
            db.engine.dispose()


# -- file modes ---------------------------------------------------------------------------------------


def modes(instance: Path) -> dict[str, int]:
    """Every file and folder under the instance (symbolic links aside), with its permission bits."""
    found = {}
    for folder, _folders, files in os.walk(instance):
        for path in (Path(folder), *(Path(folder) / name for name in files)):
            info = path.lstat()
            if not stat.S_ISLNK(info.st_mode):
                found[str(path.relative_to(instance.parent))] = stat.S_IMODE(info.st_mode)
    return found


def not_private(instance: Path) -> dict[str, str]:
    return {name: oct(mode) for name, mode in modes(instance).items()
            if mode != (0o700 if (instance.parent / name).is_dir() else 0o600)}


def test_every_file_the_hub_writes_is_its_users_alone_whatever_part_wrote_it(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)  # whatever the test's own umask
    settings = instance / "settings.toml"
    settings.write_text('bench_name = "Elm Street bench"\n')
    settings.chmod(0o644)  # written by hand, readable by every user of the Pi
    port = free_port()
    hub = subprocess.Popen([SAFEBENCH, "up", "--port", str(port), "--radio", "sim"],
                           env=env_for(instance, SAFEBENCH_SIM_CHATTER_S="0.5"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        answering(hub, f"http://127.0.0.1:{port}/")
        # The simulated stewards talk; the bridge journals and acts, the web and worker write.
        wait_for(lambda: (instance / "safebench.db").exists() and
                 rows(instance, "SELECT count(*) FROM log_entry")[0][0] >= 2, what="the simulated stewards' log")
        backup = safebench(instance, "backup")
        assert backup.returncode == 0, backup.stderr
        log = safebench(instance, "log", "--limit", "5")
        assert log.returncode == 0, log.stderr
        running = not_private(instance)
        names = set(modes(instance))
        assert {"instance/safebench.db-wal", "instance/radio-journal.sqlite", "instance/secret_key"} <= names, names
        assert any(name.startswith("instance/backups/safebench-") for name in names), names
    finally:
        printed = stop(hub)
    assert running == {}, f"readable by others while the hub runs: {running}"
    assert not_private(instance) == {}, "after the hub stopped"
    assert "Traceback" not in printed, printed


# -- the process logs ----------------------------------------------------------------------------------

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Phone:
    """A real HTTP client with cookies, sending forms as a browser does."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path: str) -> int:
        try:
            with self.opener.open(self.base + path, timeout=10) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def send(self, page: str, data: dict, action: str | None = None) -> int:
        with self.opener.open(self.base + page, timeout=10) as response:
            token = unescape(_TOKEN.search(response.read().decode()).group(1))
        body = urlencode({**data, "csrf_token": token}).encode()
        try:
            with self.opener.open(self.base + (action or page), data=body, timeout=10) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


def test_the_hubs_processes_print_no_texts_no_addresses_and_no_stewards_nodes_while_people_use_it(tmp_path):
    """`safebench up` on a radio: everything the web server, the worker and the bridge print, as journald keeps it."""
    instance = tmp_path / "instance"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with SimulatedRadio(link_path=tmp_path / "radio", rate_limit=False, nodes=handhelds()) as sim:
        register(instance, sim)
        env = env_for(instance, SAFEBENCH_DURESS_WORD=DURESS_WORD, SAFEBENCH_LOGIN_LIMIT="3 per minute")
        hub = subprocess.Popen([SAFEBENCH, "up", "--port", str(port), "--radio", f"serial:{sim.path}"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            answering(hub, base + "/")
            assert sim.wait_for_handshake(timeout=30), "the bridge never opened the radio"
            for text in (f"ON Market by {SHIFT_SPOT}", f"CI all quiet, saw {SEEN} at {SEEN_AT}",
                         f"INC {SHOUTER} shouted at a child", f"ARREST {ARREST_SPOT} 1 {ARRESTED}",
                         f"CI quiet by {DURESS_SPOT}, {DURESS_WORD}", f"SOS behind {SOS_SPOT}", f"tell {UNHEARD} hi"):
                sim.deliver_text(KESTREL, text)
            sim.deliver_dm(KESTREL, "STATUS")
            sim.deliver_text(STRANGER, f"SOS {UNHEARD} is hurt")

            neighbour = Phone(base)
            assert neighbour.send("/arrest", {"where": f"outside {ARREST_SPOT}", "count": "1",
                                              "description": f"{NEIGHBOUR} in a red scarf",
                                              "contact": NEIGHBOUR_PHONE}) == 200
            assert neighbour.send("/mediation/new", {"what": f"{NEIGHBOUR} says the neighbour {CONFLICT}",
                                                     "urgency": "soon", "contact": NEIGHBOUR_PHONE}) == 200
            assert neighbour.send("/compact", {"mark": SIGNER, "version": "1"}, action="/compact/sign") == 200
            assert neighbour.get(f"/{NEIGHBOUR.replace(' ', '-')}") == 404
            dispatch = Phone(base)
            assert dispatch.send("/login", {"handle": "Heron", "password": PASSWORD}) == 200
            for page in ("/cases", "/host/log", "/host/alerts", "/host/radio"):
                assert dispatch.get(page) == 200, page
            # Someone guesses Kestrel's password from the open WiFi until the limit refuses them.
            guesses = [neighbour.send("/login", {"handle": "Kestrel", "password": f"{SIGNER} {n}"}) for n in range(5)]
            assert 429 in guesses, guesses
            kinds = {"shift_start", "check_in", "incident", "arrest", "duress", "sos"}
            wait_for(lambda: kinds <= {kind for (kind,) in rows(instance, "SELECT kind FROM log_entry")},
                     what="the bridge acting on every message")
            wait_for(lambda: len(sim.sent_packets) >= 1, what="an urgent message on the air")
        finally:
            printed = stop(hub, timeout=60)

    assert "Traceback" not in printed, printed
    assert "Safe Bench hub on" in printed and "radio connected: node" in printed, printed
    assert re.search(r"TextPacket: check_in", printed), "the bridge logs what it did"
    leaks = [text for text in PERSONAL if text.lower() in printed.lower()]
    assert leaks == [], printed
    # Handles and the stewards' node ids with times map their nights; only the hub's own radio is named.
    for who in ("Kestrel", "Heron", f"{KESTREL:08x}", f"{HERON:08x}", f"{STRANGER:08x}", str(KESTREL)):
        assert who.lower() not in printed.lower(), (who, printed)
    assert f"{sim.node_num:08x}" in printed
    # The only address printed is the hub's own, where it listens: never a phone's.
    addresses = [line for line in printed.splitlines() if "127.0.0.1" in line and f"127.0.0.1:{port}" not in line]
    assert addresses == [], addresses


# -- simulated stewards ---------------------------------------------------------------------------------


def test_a_bridge_on_a_real_radio_removes_the_simulated_stewards_the_quickstart_registered(tmp_path):
    instance = tmp_path / "instance"
    env = env_for(instance, SAFEBENCH_SIM_CHATTER_S="0.3")
    with SimulatedRadio(link_path=tmp_path / "radio", rate_limit=False, nodes=handhelds()) as radio_on_usb:
        register(instance, radio_on_usb)
        # The quickstart: a bridge on the simulated radio registers its stewards, who start patrolling.
        quickstart = subprocess.Popen([sys.executable, "-m", "radio_bridge", "--radio", "sim"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: (instance / "safebench.db").exists() and rows(
                instance, "SELECT count(*) FROM shift JOIN member ON member.id = shift.member_id "
                          "WHERE member.handle LIKE 'sim-%'")[0][0] >= 1, what="a simulated steward on patrol")
        finally:
            printed = stop(quickstart)
        assert "simulated stewards: sim-ash, sim-brch, sim-cedr" in printed, printed
        simulated = rows(instance, "SELECT handle, node_num FROM member WHERE handle LIKE 'sim-%' ORDER BY handle")
        assert [handle for handle, _ in simulated] == ["sim-ash", "sim-brch", "sim-cedr"]
        entries = rows(instance, "SELECT count(*) FROM log_entry")[0][0]

        # The host plugs in the patrol's radio (here the emulated one on a serial port) and starts the bridge on it.
        bridge = subprocess.Popen([sys.executable, "-m", "radio_bridge", "--radio", f"serial:{radio_on_usb.path}"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert radio_on_usb.wait_for_handshake(timeout=30), "the bridge never opened the radio"
            radio_on_usb.deliver_text(KESTREL, "CI all quiet")
            wait_for(lambda: rows(instance, "SELECT count(*) FROM log_entry")[0][0] > entries,
                     what="Kestrel's check-in on the real radio")
        finally:
            printed = stop(bridge)
    assert "A real radio: the simulated stewards are removed (sim-ash, sim-brch, sim-cedr)." in printed, printed
    assert rows(instance, "SELECT handle FROM member ORDER BY handle") == [("Heron",), ("Kestrel",)]
    assert rows(instance, "SELECT count(*) FROM shift JOIN member ON member.id = shift.member_id "
                          "WHERE member.handle LIKE 'sim-%'") == [(0,)]
    assert rows(instance, "SELECT count(*) FROM role_assignment WHERE decision = ?", SIM_DECISION) == [(0,)]
    # Their entries stay in the log, by no steward; their roles' end is in the record, as the hub's own act.
    assert rows(instance, "SELECT count(*) FROM log_entry")[0][0] > entries
    ended = rows(instance, "SELECT actor, subject FROM power_use WHERE action = 'role-ended' ORDER BY subject")
    assert ended == [(power_record.SYSTEM, f"{handle}: {STEWARD}") for handle, _ in simulated]

    # A second start on the real radio finds none left to remove, and says nothing of it.
    with SimulatedRadio(link_path=tmp_path / "radio", rate_limit=False, nodes=handhelds()) as radio_on_usb:
        bridge = subprocess.Popen([sys.executable, "-m", "radio_bridge", "--radio", f"serial:{radio_on_usb.path}"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert radio_on_usb.wait_for_handshake(timeout=30)
        finally:
            printed = stop(bridge)
    assert "simulated stewards" not in printed, printed
