"""Stories of the radio bridge: the real meshtastic library, over a pty, to the simulated radio.

The bridge's loop is turned by hand (``run_once``) so each story is exact
about what the bridge had heard before it sent; the library's reader thread
and the simulated radio run for real. The firmware's 2-second text limit is
off in the simulated radio and the bridge's send interval short, only so the
stories run in seconds; the pacing itself is the sender's and is measured by
tests/benchmarks/bridge.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from radio_bridge.bridge import Bridge, BridgeSettings
from radio_bridge.inbound import MISSED_TEXT, InboundSettings
from radio_bridge.journal import JOURNAL_FILE, Journal
from radio_bridge.listening import Listening
from radio_bridge.mesh import RadioSpec
from radio_bridge.sender import SenderSettings
from radio_bridge.simulator import SimNode, SimulatedRadio
from server.domain import outbox, patrol, people, radio, radio_trust, sealing
from server.domain.cases import ArrestCase
from server.domain.patrol import LogEntry
from server.domain.radio_text import BELL, utf8_len
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import add_steward, login, make_app, make_member, submit, text_of, unsealed

KESTREL = 0xA1B2C3D4
WREN = 0x12345678
STRANGER = 0x0BADF00D


def fast_settings() -> BridgeSettings:
    return BridgeSettings(
        sender=SenderSettings(send_interval=0.05, ack_timeout=timedelta(seconds=30), max_attempts=3,
                              retry_backoff=timedelta(seconds=5)),
        inbound=InboundSettings(max_attempts=3, retry_backoff=timedelta(seconds=5)),
        reconnect_max=0.5,
        silence_limit=30,
    )


@pytest.fixture
def sim(tmp_path):
    nodes = [SimNode(KESTREL, "Kestrel's handheld", "KEST"), SimNode(WREN, "Wren's handheld", "WREN"),
             SimNode(STRANGER, "Someone", "WHO")]
    radio_ = SimulatedRadio(link_path=tmp_path / "radio", rate_limit=False, nodes=nodes).start()
    yield radio_
    radio_.stop()


@pytest.fixture
def bridge(app, sim):
    with app.app_context():
        for handle, node in (("Kestrel", KESTREL), ("Wren", WREN)):
            # Each steward's radio key pinned, as a host does at registration: their direct
            # messages to the hub (sim.deliver_dm) are verified, their channel traffic is not.
            member = add_steward(db.session, app.config["CLOCK"](), handle, node)
            radio_trust.pin_key(db.session, app.config["CLOCK"](), member, sim.device.nodes[node].public_key, by=None)
        patrol.add_area(db.session, "Market")
        db.session.commit()
        the_bridge = Bridge.from_config(app.config, RadioSpec.parse(f"serial:{sim.path}"), settings=fast_settings())
        turn_until(the_bridge, lambda: the_bridge.link.is_open)
        yield the_bridge
        the_bridge.close()
        db.session.remove()


def turn_until(bridge: Bridge, done, seconds: float = 8.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the bridge did not get there in time"
        bridge.run_once(wait=0.02)


def turns(bridge: Bridge, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bridge.run_once(wait=0.02)


def log_entries() -> list[LogEntry]:
    db.session.expire_all()
    return list(reversed(patrol.recent_entries(db.session)))


def texts_on_air(sim: SimulatedRadio) -> list[str]:
    return [packet.text for packet in sim.sent_packets if packet.text is not None]


def test_a_steward_starts_a_shift_and_checks_in_from_a_handheld_and_the_log_shows_it(app, bridge, sim):
    sim.deliver_text(KESTREL, "ON Market")
    sim.deliver_text(KESTREL, "ci all quiet by the fountain")
    turn_until(bridge, lambda: len(log_entries()) == 2)

    started, checked_in = log_entries()
    assert (started.kind, started.member.handle, started.area.name, started.source) == (
        "shift_start", "Kestrel", "Market", "radio")
    # The bridge seals what the steward wrote with the log vault's public key: only a reader opens it.
    assert checked_in.kind == "check_in" and sealing.is_sealed(checked_in.note)
    assert unsealed(app, checked_in.note) == "all quiet by the fountain"
    # No chatty confirmation: the Meshtastic ACK already told the steward.
    turns(bridge, 0.3)
    assert texts_on_air(sim) == []
    status = radio.bridge_status(db.session)
    assert status.connected and status.node_num == sim.node_num and status.region == "EU_868"


def test_the_same_packet_delivered_twice_is_logged_once_even_across_a_restart(app, bridge, sim):
    packet_id = sim.deliver_text(KESTREL, "CI")
    turn_until(bridge, lambda: len(log_entries()) == 1)
    sim.deliver_duplicate(packet_id)
    turns(bridge, 0.3)
    assert len(log_entries()) == 1

    bridge.link.close()  # the bridge restarts; what it heard is in the database
    restarted = Bridge.from_config(app.config, RadioSpec.parse(f"serial:{sim.path}"), settings=fast_settings())
    turn_until(restarted, lambda: restarted.link.is_open)
    sim.deliver_duplicate(packet_id)
    turns(restarted, 0.3)
    restarted.close()
    assert len(log_entries()) == 1


def test_an_unregistered_node_is_counted_and_never_obeyed(bridge, sim):
    sim.deliver_text(STRANGER, "SOS at the market")
    sim.deliver_text(STRANGER, "ON Market")
    turn_until(bridge, lambda: radio.unknown_senders(db.session) and radio.unknown_senders(db.session)[0].times == 2)
    turns(bridge, 0.3)
    assert log_entries() == []
    assert texts_on_air(sim) == []
    assert outbox.recent(db.session) == []


def test_an_sos_goes_out_before_fifty_queued_notices(bridge, sim):
    now = bridge.now()
    for number in range(50):
        outbox.queue_message(db.session, now, f"Notice {number}: bins go out on Thursday", priority=outbox.LOW)
    db.session.commit()
    sim.deliver_text(KESTREL, "SOS by the station")
    deadline = time.monotonic() + 5
    while bridge.events.empty():  # wait until the bridge has heard it, then let it take its turn
        assert time.monotonic() < deadline
        time.sleep(0.01)
    turn_until(bridge, lambda: len(sim.sent_packets) >= 3)

    first, *_ = texts_on_air(sim)
    # By channel traffic, which anyone holding the channel key can forge: acted on, and marked so.
    assert first == f"SOS A1 (unverified): Kestrel, by the station. ACK A1 to respond.{BELL}"
    assert first.endswith(BELL)
    assert all(text.startswith("Notice") for text in texts_on_air(sim)[1:])


def test_the_cable_is_pulled_while_an_alert_is_queued_and_it_goes_out_exactly_once_after_replug(bridge, sim):
    sim.unplug()
    turn_until(bridge, lambda: not bridge.link.is_open)
    assert radio.bridge_status(db.session).connected is False

    outbox.queue_message(db.session, bridge.now(), "Road closed at the bridge, use Mill Lane", priority=outbox.URGENT)
    db.session.commit()
    turns(bridge, 1.0)  # the bridge keeps trying to reconnect; nothing is lost meanwhile
    assert texts_on_air(sim) == []
    (waiting,) = outbox.recent(db.session)
    assert waiting.state == outbox.QUEUED

    sim.replug()
    turn_until(bridge, lambda: bridge.link.is_open and len(sim.sent_packets) == 1)
    turns(bridge, 0.5)
    assert texts_on_air(sim) == ["Road closed at the bridge, use Mill Lane"]
    db.session.expire_all()
    (delivered,) = outbox.recent(db.session)
    assert delivered.state == outbox.ACKED and delivered.attempts == 1
    assert radio.bridge_status(db.session).reconnects >= 1


def test_a_radio_that_hangs_with_its_cable_in_is_noticed_by_its_silence_and_reopened(bridge, sim):
    # Seconds instead of minutes, so the story runs quickly.
    bridge.settings.silence_limit = 1.5
    bridge.link.connect_timeout = 1
    turns(bridge, 1.0)
    assert bridge.link.is_open, "a radio that answers heartbeats is not silent, however quiet the mesh"

    sim.freeze()  # the firmware hangs: the port stays open, no event comes
    turn_until(bridge, lambda: not bridge.link.is_open)
    status = radio.bridge_status(db.session)
    assert status.connected is False and "stopped answering" in status.last_error
    outbox.queue_message(db.session, bridge.now(), "Water point moved to the library", priority=outbox.NORMAL)
    db.session.commit()
    turns(bridge, 1.5)  # handshakes time out while it is hung; the message waits
    assert texts_on_air(sim) == []

    sim.thaw()
    turn_until(bridge, lambda: bridge.link.is_open and len(sim.sent_packets) == 1, seconds=12)
    turns(bridge, 0.5)
    assert texts_on_air(sim) == ["Water point moved to the library"]
    db.session.expire_all()
    assert radio.bridge_status(db.session).connected is True


def test_a_naked_message_is_retried_then_marked_failed_for_the_host(app, bridge, sim, clock):
    sim.nak("NO_ROUTE")
    outbox.queue_message(db.session, bridge.now(), "Kestrel, please call dispatch", destination=KESTREL)
    db.session.commit()
    def state() -> str:
        db.session.expire_all()
        return outbox.recent(db.session)[0].state

    for attempt in range(1, 4):
        turn_until(bridge, lambda attempt=attempt: len(sim.sent_packets) == attempt)
        turn_until(bridge, lambda: state() != outbox.SENT)  # the NAK came back
        clock.advance(seconds=30)  # past the retry backoff
    db.session.expire_all()
    (message,) = outbox.recent(db.session)
    assert message.state == outbox.FAILED
    assert message.attempts == 3 and message.last_error == "NO_ROUTE"
    turns(bridge, 0.3)
    assert len(sim.sent_packets) == 3  # no fourth try


def test_a_text_our_own_radio_refuses_as_too_soon_goes_again_without_using_up_its_tries(app, bridge, sim, clock):
    # The firmware takes one text per 2 s from the hub and NAKs a faster one before the air
    # (a bridge that has just restarted cannot know when the one before it last wrote).
    sim.nak("RATE_LIMIT_EXCEEDED", count=4)  # more refusals than the three tries a message has
    outbox.queue_message(db.session, bridge.now(), "Kestrel, please call dispatch", destination=KESTREL,
                         priority=outbox.URGENT)
    db.session.commit()
    def message():
        db.session.expire_all()
        return outbox.recent(db.session)[0]

    for refusal in range(1, 5):
        turn_until(bridge, lambda refusal=refusal: len(sim.sent_packets) == refusal)
        turn_until(bridge, lambda: message().state == outbox.QUEUED)
        assert message().attempts == 0 and message().last_error == "RATE_LIMIT_EXCEEDED"
        assert message().next_attempt_at == clock() + timedelta(seconds=2.5)  # not the 5 s retry backoff
        turns(bridge, 0.2)
        assert len(sim.sent_packets) == refusal  # it waits for the firmware's window
        clock.advance(seconds=3)
    turn_until(bridge, lambda: message().state == outbox.ACKED)
    assert message().attempts == 1
    assert [packet.outcome for packet in sim.sent_packets] == ["nak:RATE_LIMIT_EXCEEDED"] * 4 + ["ack"]
    # Only the send that went out is in the airtime ledger.
    uses = db.session.scalars(select(outbox.AirtimeUse)).all()
    assert [use.message_id for use in uses] == [message().id]
    assert message().airtime_s == pytest.approx(uses[0].seconds)


def test_a_500_byte_message_arrives_in_numbered_parts_of_at_most_200_bytes(bridge, sim):
    words = "Tonight's briefing: the market square closes at ten, stewards pair up after dark, " \
            "the care ring meets at the library, chargers are at the bench, and the café offers soup. "
    text = (words * 4)[:500]
    outbox.queue_message(db.session, bridge.now(), text)
    db.session.commit()
    turn_until(bridge, lambda: len(sim.sent_packets) == 3)

    parts = texts_on_air(sim)
    assert [part.split(" ", 1)[0] for part in parts] == ["1/3", "2/3", "3/3"]
    assert all(utf8_len(part) <= 200 for part in parts)
    assert " ".join(part.split(" ", 1)[1] for part in parts).split() == text.split()


def test_garbage_on_the_serial_line_changes_nothing(bridge, sim):
    sim.send_garbage()
    sim.send_garbage(b"\x94\xc3\xff\xff" + b"\x00" * 40)
    sim.deliver_text(KESTREL, "CI")
    turn_until(bridge, lambda: len(log_entries()) == 1)
    assert bridge.link.is_open
    assert log_entries()[0].kind == "check_in"


def test_a_panic_button_raises_an_sos_and_positions_stay_private(bridge, sim, client):
    sim.deliver_position(WREN, 52.0921, 5.1214)
    sim.deliver_alert(WREN, "panic")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)

    (sos,) = texts_on_air(sim)
    assert sos.startswith("SOS A1 (unverified): Wren") and sos.endswith(BELL)
    position = radio.last_position(db.session, people.get_member(db.session, "Wren"))
    assert (round(position.latitude, 4), round(position.longitude, 4)) == (52.0921, 5.1214)
    # The public log shows neither the alert nor where anyone is.
    for page in ("/", "/log"):
        html = client.get(page).get_data(as_text=True)
        assert "SOS" not in html and "52.09" not in html


def test_the_hub_answers_status_and_help_and_a_fumbling_steward_hears_about_it_once(bridge, sim):
    sim.deliver_text(KESTREL, "ON Market")
    sim.deliver_dm(WREN, "status")  # names and codes only for a sender the hub can verify
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    assert texts_on_air(sim) == ["On shift 1: Kestrel"]
    assert sim.sent_packets[0].to == WREN

    for nonsense in ("blorp", "🦆🦆🦆", "\x00\x01\x02", ""):
        sim.deliver_text(KESTREL, nonsense)
    sim.deliver_text(KESTREL, "HELP")
    turn_until(bridge, lambda: len(sim.sent_packets) == 3)
    turns(bridge, 0.5)
    unknown, help_reply = texts_on_air(sim)[1:]
    assert "HELP" in unknown  # one short "send HELP", not one per fumble
    assert help_reply.startswith("Danger? Send SOS")
    assert all(utf8_len(text) <= 200 for text in texts_on_air(sim))
    assert len(sim.sent_packets) == 3


def test_the_bridge_process_leaves_the_web_app_out_of_memory():
    # It shares a Pi Zero 2 W's 512 MB with the web server: Flask and Alembic stay out.
    probe = "import sys, radio_bridge.main; print(sorted({'flask', 'alembic', 'werkzeug'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_what_the_bridges_libraries_import_and_never_use_loads_only_when_used():
    # requests, asyncio (with ssl and OpenSSL's libssl), importlib.metadata and tabulate: megabytes the
    # bridge never uses. Whoever does use one gets the real module, at that moment.
    probe = """
import sys, radio_bridge.main, server.scheduler, radio_bridge.simulator
def real(name):
    return type(sys.modules.get(name)).__name__ == "module"
from sqlalchemy import create_engine, exc, text
try:  # SQLAlchemy asks asyncio about every statement that fails (a locked database, say)
    create_engine("sqlite://").connect().execute(text("SELECT * FROM nothing"))
except exc.OperationalError:
    pass
loaded = sorted(name for name in ("requests", "asyncio", "ssl", "importlib.metadata", "tabulate") if real(name))
from sqlalchemy.util import concurrency
import meshtastic.version, tabulate
used = [concurrency.iscoroutine(None), meshtastic.version.get_active_version() != "", tabulate.tabulate([[1]]) == "-\\n1\\n-"]
import asyncio
used.append(asyncio.run(asyncio.sleep(0, result="ran")))
import importlib.metadata  # the attribute way too, as flask.testing reads it
used.append(importlib.metadata.version("meshtastic") != "")
print(loaded, used, sorted(name for name in ("asyncio", "importlib.metadata", "tabulate") if real(name)))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[] [False, True, True, 'ran', True] ['asyncio', 'importlib.metadata', 'tabulate']"


def test_the_bridge_hashes_without_openssl_and_makes_archives_only_when_asked(tmp_path):
    # OpenSSL's libcrypto (3.4 MB) stays out of the bridge: its few digests come from Python's own code,
    # the same digests. bz2 and lzma wait until an archive is made, and then work.
    probe = f"""
import sys, radio_bridge.main, server.scheduler, radio_bridge.simulator
import hashlib, hmac, secrets, shutil
def real(name):
    return type(sys.modules.get(name)).__name__ == "module"
loaded = sorted(name for name in ("_hashlib", "bz2", "lzma") if real(name))
crypto = "libcrypto" in open("/proc/self/maps").read()
digests = [hashlib.sha256(b"abc").hexdigest()[:12], hmac.new(b"k", b"m", "sha256").hexdigest()[:12],
           secrets.compare_digest("a", "a")]
made = [shutil.make_archive({str(tmp_path)!r} + "/a-" + kind, kind, {str(tmp_path)!r}).rsplit(".", 1)[1]
        for kind in ("bztar", "xztar")]
print(loaded, crypto, digests, made, sorted(name for name in ("bz2", "lzma") if real(name)))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ("[] False ['ba7816bf8f01', 'b60090e30522', True] ['bz2', 'xz'] ['bz2', 'lzma']")


def test_check_ins_heard_while_the_bridge_is_still_loading_are_journaled_then_logged(app, sim):
    # The bridge process opens the radio first and loads the hub's domain layer while the handshake
    # waits on the line: what stewards send meanwhile is on disk before any bridge exists to act on it.
    with app.app_context():
        add_steward(db.session, app.config["CLOCK"](), "Kestrel", KESTREL)
        patrol.add_area(db.session, "Market")
        db.session.commit()
        spec = RadioSpec.parse(f"serial:{sim.path}")
        listening = Listening(Journal(Path(app.config["INSTANCE"]) / JOURNAL_FILE), app.config["CLOCK"], 10)
        listening.open_soon(spec)
        deadline = time.monotonic() + 8
        while not listening.link.is_open:
            assert time.monotonic() < deadline, "the radio did not open"
            time.sleep(0.02)
        sim.deliver_text(KESTREL, "ON Market")
        sim.deliver_text(KESTREL, "CI all quiet by the fountain")
        while listening.journal.depth() < 2:
            assert time.monotonic() < deadline, "the check-ins did not reach the journal"
            time.sleep(0.02)
        assert log_entries() == []

        bridge = Bridge.from_config(app.config, spec, settings=fast_settings(), listening=listening)
        try:
            turn_until(bridge, lambda: len(log_entries()) == 2)
            assert [entry.kind for entry in log_entries()] == ["shift_start", "check_in"]
            assert listening.journal.depth() == 0
            # The bridge took over the radio the thread opened, as if it had opened it itself.
            assert bridge.node_num == sim.node_num and bridge.link is listening.link
            db.session.expire_all()
            status = radio.bridge_status(db.session)
            assert status.connected and status.node_num == sim.node_num
        finally:
            bridge.close()
        assert not listening.link.is_open


def test_a_radio_missing_when_the_bridge_starts_is_tried_again_until_it_is_there(app, tmp_path):
    with app.app_context():
        spec = RadioSpec.parse(f"serial:{tmp_path / 'not-yet'}")
        listening = Listening(Journal(Path(app.config["INSTANCE"]) / JOURNAL_FILE), app.config["CLOCK"], 5)
        listening.open_soon(spec)
        bridge = Bridge.from_config(app.config, spec, settings=fast_settings(), listening=listening)
        try:
            turn_until(bridge, lambda: bridge._status["last_error"] is not None)
            assert "No radio at" in bridge._status["last_error"] and not bridge.link.is_open
            sim = SimulatedRadio(link_path=tmp_path / "not-yet", rate_limit=False).start()
            try:
                turn_until(bridge, lambda: bridge.link.is_open, seconds=10)
                assert bridge.node_num == sim.node_num
            finally:
                bridge.close()
                sim.stop()
        finally:
            bridge.close()


def test_a_radio_on_the_network_works_like_one_on_usb(app, sim):
    # A WiFi radio offers the same framed stream on TCP; the simulated radio does too.
    port = sim.serve_tcp()
    with app.app_context():
        add_steward(db.session, app.config["CLOCK"](), "Kestrel", KESTREL)
        db.session.commit()
        settings = fast_settings()
        settings.silence_limit, settings.connect_timeout = 3, 2
        over_tcp = Bridge.from_config(app.config, RadioSpec.parse(f"tcp:127.0.0.1:{port}"), settings=settings)
        try:
            turn_until(over_tcp, lambda: over_tcp.link.is_open)
            sim.deliver_text(KESTREL, "CI")
            turn_until(over_tcp, lambda: len(log_entries()) == 1)
            outbox.queue_message(db.session, over_tcp.now(), "Curfew notice at the community centre")
            db.session.commit()
            turn_until(over_tcp, lambda: len(sim.sent_packets) == 1)

            sim.unplug()  # the radio loses power; its TCP connection goes with it
            turn_until(over_tcp, lambda: not over_tcp.link.is_open, seconds=10)
            sim.replug()
            turn_until(over_tcp, lambda: over_tcp.link.is_open, seconds=15)
            sim.deliver_text(KESTREL, "CI back on air")
            turn_until(over_tcp, lambda: len(log_entries()) == 2)
        finally:
            over_tcp.close()
        # Sent once. Kestrel may also be told the hub may have missed his last message: the radio notes in whole
        # seconds when it heard him, and a reconnect within that second cannot tell his CI from a later one.
        assert [text for text in texts_on_air(sim) if not text.startswith(MISSED_TEXT)] == [
            "Curfew notice at the community centre"]
        note = log_entries()[-1].note
    assert sealing.is_sealed(note) and unsealed(app, note) == "back on air"


def test_serial_auto_opens_the_one_radio_plugged_in_and_refuses_to_guess_between_two(sim, monkeypatch):
    # The USB probe cannot find a pty (it looks for known USB vendor ids), so it is
    # the one thing replaced here: it "finds" the simulated radio, then two radios.
    import queue

    from radio_bridge import mesh

    link = mesh.RadioLink(queue.Queue(), connect_timeout=5)
    monkeypatch.setattr(mesh.util, "findPorts", lambda *_: [sim.path])
    try:
        info = link.open(RadioSpec.parse("serial:auto"))
        assert info.node_num == sim.node_num
    finally:
        link.close()
    monkeypatch.setattr(mesh.util, "findPorts", lambda *_: ["/dev/ttyACM0", "/dev/ttyUSB0"])
    with pytest.raises(mesh.RadioUnavailable, match="exactly one radio.*found: /dev/ttyACM0, /dev/ttyUSB0"):
        link.open(RadioSpec.parse("serial:auto"))


def test_a_neighbours_arrest_report_opens_a_case_that_dispatch_works_to_release_and_it_is_purged_after_grace(
        bridge, sim, clock, tmp_path):
    # The web hub as it runs beside the bridge: its own app on the same database file and clock
    # (the bridge fixture holds an app context that would otherwise be shared by every request).
    web = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache",
                   CACHE_NO_NULL_WARNING=True, LEGAL_HOTLINE="+49 30 1234567")
    try:
        neighbour = web.test_client()
        thanks = submit(neighbour, "/arrest", {"where": "Market square by the fountain", "count": "2",
                                               "description": "two people in green rain jackets", "contact": "Robin"})
        assert thanks.request.path == "/arrest/thanks"
        # A stranger on the bench WiFi could have written it: nothing reaches every handheld yet.
        turns(bridge, 0.3)
        assert sim.sent_packets == []

        make_member(web, "Heron", "dispatch")
        heron = web.test_client()
        assert login(heron, "Heron").request.path != "/login"
        case_id = db.session.scalars(select(ArrestCase.id)).one()
        page = f"/cases/{case_id}"

        # Dispatch confirms it: code, the published area it names, count, time and the hotline reach every
        # handheld, with the bell; nothing else.
        assert "is confirmed" in text_of(submit(heron, page, {}, action=f"{page}/confirm"))
        turn_until(bridge, lambda: len(sim.sent_packets) == 1)
        (notice,) = texts_on_air(sim)
        assert notice == f"ARREST C1: 2 at Market, 20:00Z. Legal hotline +49 30 1234567.{BELL}"
        assert sim.sent_packets[0].to == people.BROADCAST_NODE
        for step in ("witness", "legal", "station"):
            clock.advance(minutes=10)
            assert "Done:" in text_of(submit(heron, page, {"step": step}, action=f"{page}/step"))
        assert "1 of 2 released" in text_of(submit(heron, page, {"released": "1"}, action=f"{page}/count-out"))
        released = submit(heron, page, {"released": "1"}, action=f"{page}/count-out")
        assert "Everyone is released: case C1 is closed" in text_of(released)
        submit(heron, page, {"step": "welcome", "note": "Both met at the door."}, action=f"{page}/step")
        turns(bridge, 0.3)
        assert len(sim.sent_packets) == 1  # working the case is the hub's business, not the channel's

        clock.advance(days=web.config["CASE_GRACE_DAYS"], minutes=1)
        run_all_once(web)
        db.session.expire_all()
        assert db.session.scalar(select(func.count()).select_from(ArrestCase)) == 0
        # Days later Heron's login has long ended: she logs in again to look for the case.
        assert login(heron, "Heron").request.path != "/login"
        gone = heron.get(page)
        assert gone.status_code == 404 and "it may have been purged" in text_of(gone)
    finally:
        with web.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_steward_heard_later_in_the_same_second_as_the_last_packet_read_counts_as_missed(bridge, sim):
    """The firmware notes when it last heard a node in whole seconds. The last packet a dying bridge read came
    at 12.75 s past some minute; Wren's, written to the dead port at 12.90 s, shows as 12 s in the radio's node
    list, and must still count as heard after it (she is asked to send again), not as heard before."""
    read_at = float(int(time.time()) - 5) + 0.75
    sim.device.nodes[WREN].last_heard = read_at + 0.15  # lost in the same second
    sim.device.nodes[KESTREL].last_heard = read_at - 2  # heard before: his was read
    sim.unplug()  # the radio's node list reaches the bridge at its next connect, as after a restart
    turn_until(bridge, lambda: not bridge.link.is_open)
    sim.replug()
    turn_until(bridge, lambda: bridge.link.is_open)

    heard = bridge.link.heard_since(read_at)
    assert WREN in heard and KESTREL not in heard
