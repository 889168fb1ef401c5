"""The radio's cable is pulled, twice, under a bridge run as systemd runs it.

systemd starts a service in a session of its own, with no controlling
terminal and stdin from /dev/null. The ``meshtastic`` library opens the
serial port with a plain ``open()`` to clear HUPCL, and a session leader
without a terminal takes the first terminal it opens that way as its
controlling terminal: the radio's. Pulling the cable hangs that terminal
up, and the kernel sends the session SIGHUP. This story runs the real
``safebench bridge`` exactly so, against the simulated radio on a pty (a
pty hangs up as a USB tty does), with a real SQLite file shared with this
test, and queues an urgent alert while the radio is out each time.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from radio_bridge.simulator import SimNode, SimulatedRadio
from server.clock import utcnow
from server.domain import outbox, radio
from server.extensions import db
from tests.helpers import make_wall_clock_hub
from tests.processes import SAFEBENCH, env_for

STEWARDS = [SimNode(0xC0A10000 + n, f"Steward {n}'s handheld", f"ST{n}") for n in range(2)]
ALERTS = ["Alert: smoke at the library, keep clear", "Alert: water main burst on Mill Lane"]


@pytest.fixture
def hub(tmp_path):
    """The hub's database, seen from this test (real time: the bridge runs on the wall clock)."""
    app = make_wall_clock_hub(tmp_path / "instance", STEWARDS)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def sim(tmp_path):
    radio_ = SimulatedRadio(link_path=tmp_path / "radio", nodes=STEWARDS).start()
    yield radio_
    radio_.stop()


class ServiceBridge:
    """``safebench bridge`` started the way systemd starts it: its own session, no terminal, no stdin."""

    def __init__(self, instance: Path, sim: SimulatedRadio) -> None:
        self.log = instance / "bridge.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [SAFEBENCH, "bridge", "--radio", f"serial:{sim.path}"],
                # Reconnect attempts at most a second apart, so the story runs in seconds.
                env=env_for(instance, SAFEBENCH_RADIO_RECONNECT_MAX_S="1"),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def controlling_tty(self) -> int:
        """The process's controlling terminal as a device number (0: none), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[4])  # state, ppid, pgrp, session, tty_nr

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def report(self) -> str:
        code = self.proc.poll()
        ended = "still running" if code is None else f"ended with {code}" + (
            " (killed by SIGHUP)" if code == -1 else "")
        return f"the bridge {ended}; its output:\n{self.log.read_text()}"


@pytest.fixture
def bridge(hub, sim):
    process = ServiceBridge(Path(hub.config["INSTANCE"]), sim)
    yield process
    process.stop()


def wait_for(condition, seconds: float, what: str, bridge: ServiceBridge) -> None:
    """Poll ``condition``; fail at once if the bridge process died, else after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert bridge.alive(), f"waiting for {what}: {bridge.report()}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}; {bridge.report()}"
        time.sleep(0.05)


def bridge_status() -> radio.BridgeStatus | None:
    db.session.expire_all()
    return radio.bridge_status(db.session)


def state_of(text: str) -> str | None:
    db.session.expire_all()
    return db.session.scalar(select(outbox.OutboxMessage.state).where(outbox.OutboxMessage.text == text))


def on_air(sim: SimulatedRadio) -> Counter:
    """Texts that went out (what the radio refused before the air, as too soon or with a full queue, did not)."""
    return Counter(packet.text for packet in sim.sent_packets
                   if packet.text and packet.outcome not in ("rate-limited", "queue-full"))


def test_a_bridge_run_as_a_service_lives_through_two_unplugs_and_sends_what_was_queued_meanwhile(sim, bridge):
    assert sim.wait_for_handshake(1, timeout=30), bridge.report()
    assert os.getsid(bridge.proc.pid) == bridge.proc.pid  # a session leader, as every systemd service is
    wait_for(lambda: (status := bridge_status()) is not None and status.connected, 10, "the bridge to connect",
             bridge)
    took_the_radio = bridge.controlling_tty() != 0
    print(f"\nthe radio's tty became the bridge's controlling terminal: {'yes' if took_the_radio else 'no'}")

    for unplugs, alert in enumerate(ALERTS, start=1):
        sim.unplug()
        wait_for(lambda: not bridge_status().connected and bridge_status().reconnects == unplugs, 10,
                 f"the bridge to notice unplug {unplugs}", bridge)

        outbox.queue_message(db.session, utcnow(), alert, priority=outbox.URGENT)
        db.session.commit()
        assert alert not in on_air(sim)

        sim.replug()
        assert sim.wait_for_handshake(1 + unplugs, timeout=15), bridge.report()
        # Answered by the mesh before the cable goes again (an answer due during an unplug is lost,
        # and the message retried: that corner is test_bridge_crash.py's).
        wait_for(lambda: state_of(alert) == outbox.ACKED, 15, f"{alert!r} to go out and be answered", bridge)
        assert on_air(sim)[alert] == 1, bridge.report()
        assert bridge_status().connected, bridge.report()

    assert on_air(sim) == {alert: 1 for alert in ALERTS}, bridge.report()
    assert bridge.alive(), bridge.report()
    assert sim.handshakes == 3  # started once, then reconnected by itself twice: never restarted
