"""Stories of the radio as the hub's hosts see it: the bridge's health, the outbox, airtime, broadcasts.

The bridge process is tested elsewhere; here its status row and the outbox
are written through the domain, as the bridge would write them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from server.domain import outbox, radio
from server.domain.people import (
    BROADCAST_NODE,
    CAPTAIN,
    DISPATCH,
    HOST,
    MEDIATOR,
    STEWARD,
)
from server.domain.radio import BridgeStatus
from server.domain.radio_text import BELL, utf8_len
from server.extensions import db
from tests.helpers import login, make_member, submit, text_of

SIMULATED = "SIMULATED RADIO — messages go to simulated handhelds, not the real mesh"


def bridge_reports(app, *, simulated: bool = False, connected: bool = True, since: datetime | None = None,
                   **fields) -> None:
    """The bridge writes its status row now, with a fresh heartbeat."""
    with app.app_context():
        moment = app.config["CLOCK"]()
        status = radio.bridge_status(db.session)
        if status is None:
            status = BridgeStatus(radio="", simulated=simulated, connected=connected, since=moment, heartbeat_at=moment)
            db.session.add(status)
        status.radio = "sim" if simulated else "serial:/dev/ttyUSB0"
        status.simulated, status.connected = simulated, connected
        status.since, status.heartbeat_at = since or moment, moment
        for name, value in fields.items():
            setattr(status, name, value)
        db.session.commit()


def logged_in(app, client, handle: str, *roles: str) -> None:
    make_member(app, handle, *roles)
    assert login(client, handle).request.path != "/login"


def outbox_messages(app) -> list[outbox.OutboxMessage]:
    """Every message queued, oldest first."""
    with app.app_context():
        messages = list(reversed(outbox.recent(db.session, limit=100)))
        db.session.expunge_all()
        return messages


def test_a_host_sees_on_the_dashboard_that_the_radio_is_simulated(app, client):
    logged_in(app, client, "Kestrel", HOST)
    bridge_reports(app, simulated=False)
    assert SIMULATED not in text_of(client.get("/host/"))

    bridge_reports(app, simulated=True)

    page = text_of(client.get("/host/"))
    assert SIMULATED in page
    assert "silent" not in page and "disconnected" not in page
    # Every hub page, not only the dashboard, and the radio page itself.
    assert SIMULATED in text_of(client.get("/host/log"))
    assert SIMULATED in text_of(client.get("/host/radio"))


def test_the_host_is_warned_while_the_bridge_is_silent_and_no_longer_once_it_beats_again(app, client, clock):
    logged_in(app, client, "Kestrel", HOST)
    never_ran = text_of(client.get("/host/"))
    assert "The radio bridge is silent: no bridge has run on this hub yet" in never_ran
    assert "safebench bridge" in never_ran and "safebench up" in never_ran

    bridge_reports(app)
    assert "silent" not in text_of(client.get("/host/"))

    clock.advance(minutes=3)
    page = text_of(client.get("/host/"))
    # (text_of leaves a space where a tag ends, as after the time here.)
    assert "The radio bridge is silent since Sat 21 Nov, 20:00 : nothing reaches or leaves the mesh." in page
    assert "Start it on the hub with safebench bridge , or run the whole hub with safebench up ." in page

    bridge_reports(app)
    assert "silent" not in text_of(client.get("/host/"))


def test_a_disconnected_radio_is_told_with_its_time_and_error(app, client, clock):
    logged_in(app, client, "Kestrel", HOST)
    unplugged = clock.now
    clock.advance(minutes=10)

    bridge_reports(app, connected=False, since=unplugged, last_error="serial port vanished")

    page = text_of(client.get("/host/"))
    assert "Radio disconnected since Sat 21 Nov, 20:00 : messages wait in the outbox." in page
    assert "Last error: serial port vanished." in page
    assert "silent" not in page


def test_a_message_that_was_not_delivered_stands_out_with_its_reason(app, client, clock):
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    logged_in(app, client, "Kestrel", HOST)
    bridge_reports(app, region="EU_868", modem_preset="LONG_FAST", node_num=0xDEADBEEF, firmware="2.7.15")
    with app.app_context():
        moment = clock.now
        [reply] = outbox.queue_message(db.session, moment, "A7 noted, thanks", destination=0xA1B2C3D4)
        packet = outbox.begin_send(db.session, moment, reply)
        outbox.mark_sent(db.session, moment, reply, 0.9)
        outbox.record_nak(db.session, moment, packet, "MAX_RETRANSMIT", max_attempts=1, backoff=timedelta(seconds=30))
        [later] = outbox.queue_message(db.session, moment, "Shift change at 22:00")
        outbox.record_ack(db.session, moment, outbox.begin_send(db.session, moment, later), implicit=False)
        db.session.commit()

    page = text_of(client.get("/host/radio"))

    assert "Not delivered: MAX_RETRANSMIT" in page
    assert page.index("Not delivered: MAX_RETRANSMIT") < page.index("The radio bridge")
    failed_card = page[page.index("Not delivered: MAX_RETRANSMIT"):page.index("The radio bridge")]
    assert "to Wren (!a1b2c3d4)" in failed_card and "A7 noted, thanks" in failed_card
    assert "Shift change at 22:00" not in failed_card
    assert "Shift change at 22:00" in page and "acked" in page and "everyone" in page
    assert "!deadbeef" in page and "2.7.15" in page and "EU_868 · LONG_FAST" in page


def test_dispatch_queues_an_urgent_broadcast_that_goes_out_first_with_the_bell(app, client):
    logged_in(app, client, "Heron", DISPATCH)
    bridge_reports(app)

    response = submit(client, "/host/radio", {"text": "Police cordon on Market St, keep clear", "urgent": "y"},
                      action="/host/radio/broadcast")

    assert response.status_code == 200
    page = text_of(response)
    assert "Queued for everyone on the patrol channel as urgent, with the bell." in page
    [message] = outbox_messages(app)
    assert message.priority == outbox.URGENT and message.state == outbox.QUEUED
    assert message.destination == BROADCAST_NODE
    assert message.text == "Police cordon on Market St, keep clear" + BELL
    assert "Police cordon on Market St, keep clear bell" in page
    assert BELL not in response.get_data(as_text=True)
    assert "Urgent: 1 · Normal: 0 · Low: 0" in page


def test_a_long_broadcast_goes_out_as_numbered_parts_that_each_fit_a_packet(app, client):
    logged_in(app, client, "Kestrel", HOST)
    # 500 characters, 600 bytes: the accent takes two.
    text = " ".join(["Café"] * 100) + "!"
    assert len(text) == 500 and utf8_len(text) == 600

    normal_page = text_of(submit(client, "/host/radio", {"text": text}, action="/host/radio/broadcast"))
    urgent_page = text_of(submit(client, "/host/radio", {"text": text, "urgent": "y"}, action="/host/radio/broadcast"))

    messages = outbox_messages(app)
    normal = [m for m in messages if m.priority == outbox.NORMAL]
    urgent = [m for m in messages if m.priority == outbox.URGENT]
    assert f"Queued for everyone on the patrol channel as normal in {len(normal)} numbered parts." in normal_page
    assert f"as urgent, with the bell in {len(urgent)} numbered parts." in urgent_page
    for parts in (normal, urgent):
        assert len(parts) == 4
        assert all(utf8_len(m.text) <= 200 for m in parts)
        assert [m.text.split(" ", 1)[0] for m in parts] == ["1/4", "2/4", "3/4", "4/4"]
        # Not a word lost between the parts.
        said = " ".join(m.text.rstrip(BELL).split(" ", 1)[1] for m in parts)
        assert said == text
    # Every part of an urgent message makes the handhelds buzz.
    assert all(m.text.endswith(BELL) for m in urgent)
    assert not any(BELL in m.text for m in normal)


def test_a_broadcast_that_is_too_long_or_empty_is_refused_and_what_was_typed_is_kept(app, client):
    logged_in(app, client, "Kestrel", HOST)

    too_long = "x" * 599 + "!"
    response = submit(client, "/host/radio", {"text": too_long}, action="/host/radio/broadcast")
    assert response.status_code == 400
    assert "That is too long: at most 500 characters." in text_of(response)
    assert too_long in response.get_data(as_text=True)

    # Only invisible characters: the form sees text, the outbox sees nothing to send.
    invisible = "\u200b\u200b"
    response = submit(client, "/host/radio", {"text": invisible}, action="/host/radio/broadcast")
    assert response.status_code == 400
    assert "Please fill in the message." in text_of(response)
    assert invisible in response.get_data(as_text=True)
    assert outbox_messages(app) == []


def test_only_hosts_dispatch_and_captains_see_the_radio_and_only_hosts_and_dispatch_broadcast(app, client):
    make_member(app, "Wren", STEWARD)
    make_member(app, "Ibis", MEDIATOR)
    make_member(app, "Crane", CAPTAIN)

    for handle in ("Wren", "Ibis"):
        visitor = app.test_client()
        login(visitor, handle)
        assert 'href="/host/radio"' not in visitor.get("/host/").get_data(as_text=True)
        assert visitor.get("/host/radio").status_code == 403

    login(client, "Crane")
    page = client.get("/host/radio")
    assert page.status_code == 200
    assert "Broadcast to the patrol channel" not in text_of(page)
    refused = submit(client, "/host/radio", {"text": "Hello all"}, action="/host/radio/broadcast")
    assert refused.status_code == 403
    assert outbox_messages(app) == []


def test_the_host_sees_the_airtime_used_in_the_last_hour_against_the_budget(app, client, clock):
    logged_in(app, client, "Kestrel", HOST)
    bridge_reports(app, region="EU_868", modem_preset="LONG_FAST")
    with app.app_context():
        start = clock.now
        for minutes_ago, seconds in ((150, 100.0), (40, 45.0), (5, 45.0)):
            moment = start - timedelta(minutes=minutes_ago)
            [message] = outbox.queue_message(db.session, moment, f"Round {minutes_ago}")
            outbox.begin_send(db.session, moment, message)
            outbox.mark_sent(db.session, moment, message, seconds)
        db.session.commit()

    page = text_of(client.get("/host/radio"))

    # 10 % of an hour is 360 s; the send two and a half hours ago no longer counts.
    assert "90.0 s of 360 s (25 % of the budget) used by the hub's radio." in page
    assert "(EU_868 allows 10 %)" in page
    assert "The last 90 s (25 %) are the urgent reserve: routine messages stop at 270 s" in page

    # A region with a stricter law: the budget follows the law.
    bridge_reports(app, region="EU_866")
    page = text_of(client.get("/host/radio"))
    assert "90.0 s of 90 s (100 % of the budget)" in page
    assert "2.5 % of each hour, the legal limit in EU_866" in page
    assert "Only urgent messages can go out now" in page


def test_unknown_senders_are_listed_by_node_and_count_only(app, client, clock):
    logged_in(app, client, "Kestrel", HOST)
    with app.app_context():
        radio.note_unknown_sender(db.session, clock.now - timedelta(hours=1), 0x0BADCAFE)
        radio.note_unknown_sender(db.session, clock.now, 0x0BADCAFE)
        db.session.commit()

    page = text_of(client.get("/host/radio"))

    assert "!0badcafe 2 Sat 21 Nov, 19:00 Sat 21 Nov, 20:00" in page


def test_nothing_about_the_radio_reaches_a_public_page(app, client, clock):
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    bridge_reports(app, simulated=True, last_error="serial port vanished")
    with app.app_context():
        [message] = outbox.queue_message(db.session, clock.now, "Dispatch to Wren: meet at the bench",
                                         destination=0xA1B2C3D4)
        packet = outbox.begin_send(db.session, clock.now, message)
        outbox.record_nak(db.session, clock.now, packet, "NO_ROUTE", max_attempts=1, backoff=timedelta(seconds=30))
        radio.note_unknown_sender(db.session, clock.now, 0x0BADCAFE)
        db.session.commit()
    clock.advance(minutes=5)  # and the bridge has gone silent

    make_member(app, "Kestrel", HOST)
    for visitor in ("anonymous", "Kestrel"):
        if visitor != "anonymous":
            login(client, visitor)
            assert SIMULATED in text_of(client.get("/host/"))
        for url in ("/", "/log"):
            response = client.get(url)
            assert response.status_code == 200
            page = text_of(response)
            for secret in ("SIMULATED", "radio bridge", "Radio disconnected", "Not delivered", "NO_ROUTE",
                           "meet at the bench", "!0badcafe", "serial port vanished", "outbox"):
                assert secret not in page, f"{secret!r} on {url} for {visitor}"


def test_what_the_radio_left_behind_is_forgotten_on_schedule(app, clock):
    from server.scheduler import run_all_once
    from tests.helpers import add_steward

    with app.app_context():
        now = clock()
        kestrel = add_steward(db.session, now, "Kestrel", 0xA1B2C3D4)
        radio.record_position(db.session, now, kestrel, 52.09, 5.12)
        radio.first_time_heard(db.session, now, 0xA1B2C3D4, 77)
        radio.note_unknown_sender(db.session, now, 0x0BADF00D)
        (sos,) = outbox.queue_message(db.session, now, "SOS Kestrel: by the station", priority=outbox.URGENT)
        sos.state = outbox.ACKED
        db.session.commit()

    def left() -> tuple[int, ...]:
        with app.app_context():
            return tuple(db.session.query(model).count() for model in (
                radio.StewardPosition, radio.HeardPacket, radio.UnknownSender, outbox.OutboxMessage))

    clock.advance(hours=11)
    run_all_once(app)
    assert left() == (1, 1, 1, 1)
    clock.advance(hours=2)  # a position half a day old says where a person was, nothing more useful
    run_all_once(app)
    assert left() == (0, 1, 1, 1)
    clock.advance(hours=12)
    run_all_once(app)
    assert left() == (0, 1, 1, 1)
    clock.advance(days=1)  # the SOS text named a steward and a place: gone after two days
    run_all_once(app)
    assert left() == (0, 1, 1, 0)
    clock.advance(days=5)  # a stranger's node, unheard for a week
    run_all_once(app)
    assert left() == (0, 1, 0, 0)
    # A heard packet id is 16 bytes that name no one: kept for weeks, so a recorded packet played
    # back is still recognised, then forgotten.
    clock.advance(days=app.config["HEARD_PACKET_RETENTION_DAYS"] - 7)
    run_all_once(app)
    assert left() == (0, 0, 0, 0)
