"""Stories of the worst night, end to end through the emulated radio.

The real bridge and the real meshtastic library talk to the simulated radio
on a pty (the fixtures come from test_radio_bridge.py); the scheduled jobs
run as the worker runs them, with the test's clock moved by hand.
"""

from __future__ import annotations

from server.domain import alerts, drills, outbox, patrol, people, sealing
from server.domain.radio_text import BELL
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import seat_role, unsealed
from tests.test_radio_bridge import (  # noqa: F401  (bridge and sim are fixtures)
    KESTREL,
    WREN,
    bridge,
    log_entries,
    sim,
    texts_on_air,
    turn_until,
    turns,
)


def on_air_since(sim, count: int) -> list[str]:
    return texts_on_air(sim)[count:]


def test_a_stewards_sos_is_broadcast_acknowledged_by_another_steward_and_resolved(app, bridge, sim, client):
    sim.deliver_text(KESTREL, "ON Market")
    sim.deliver_text(KESTREL, "SOS by the fountain")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    (notice,) = texts_on_air(sim)
    assert notice == f"SOS A1 (unverified): Kestrel, by the fountain. ACK A1 to respond.{BELL}"

    # Answering an alert counts only from a responder's own radio: a direct message to the hub.
    sim.deliver_dm(WREN, "ack a1")
    turn_until(bridge, lambda: alerts.find_open(db.session, "A1").status == alerts.RESPONDING)
    db.session.expire_all()
    alert = alerts.find_open(db.session, "A1")
    assert [r.member.handle for r in alert.responses] == ["Wren"]
    assert len(sim.sent_packets) == 1, "no chatty confirmation of the ACK"

    sim.deliver_dm(WREN, "CLR A1 walked her home, all fine")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    db.session.expire_all()
    resolved = db.session.get(alerts.Alert, alert.id)
    assert resolved.status == alerts.RESOLVED and sealing.is_sealed(resolved.resolution)
    assert unsealed(app, resolved.resolution) == "walked her home, all fine"
    # The hub's log says how it ended, in words a reader opens (not the sealed text of the resolution).
    (cleared,) = [entry for entry in log_entries() if entry.kind == "alert_clear"]
    assert unsealed(app, cleared.note) == "A1 resolved: walked her home, all fine"
    assert texts_on_air(sim)[1] == "A1 resolved. Thank you."
    # None of it is public.
    for page in ("/", "/log"):
        assert "A1" not in client.get(page).get_data(as_text=True)


def test_an_ack_for_a_code_that_is_not_open_gets_one_short_answer(bridge, sim):
    sim.deliver_dm(WREN, "ACK A9")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    (answer,) = texts_on_air(sim)
    assert answer == "No open alert A9. Send STATUS for open ones."
    assert sim.sent_packets[0].to == WREN


def test_an_sos_nobody_answers_is_broadcast_again_then_escalated(app, bridge, sim, clock):
    sim.deliver_text(KESTREL, "SOS station underpass")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    minutes = app.config["ALERT_ACK_MINUTES"]

    clock.advance(minutes=minutes)
    run_all_once(app)
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    clock.advance(minutes=minutes)
    run_all_once(app)
    turn_until(bridge, lambda: len(sim.sent_packets) == 3)
    clock.advance(minutes=minutes)
    run_all_once(app)  # escalated once is enough: no endless repeats eating the airtime
    turns(bridge, 0.3)

    first, again, everyone = texts_on_air(sim)
    assert "No responder yet. ACK A1." in again and again.endswith(BELL)
    assert "ALL STEWARDS, on shift or not: ACK A1." in everyone and everyone.endswith(BELL)
    assert len(sim.sent_packets) == 3
    db.session.expire_all()
    assert alerts.find_open(db.session, "A1").escalated_at is not None


def test_a_steward_who_stops_checking_in_is_pinged_then_broadcast_then_cleared_by_a_late_check_in(
        app, bridge, sim, clock):
    sim.deliver_text(KESTREL, "ON Market")
    turn_until(bridge, lambda: len(log_entries()) == 1)
    interval, grace = app.config["CHECK_IN_INTERVAL_MINUTES"], app.config["CHECK_IN_GRACE_MINUTES"]
    started = clock()

    clock.advance(minutes=interval + grace - 1)
    run_all_once(app)
    turns(bridge, 0.2)
    assert texts_on_air(sim) == [], "not overdue yet"

    clock.advance(minutes=1)
    run_all_once(app)
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    (ping,) = texts_on_air(sim)
    assert ping == f"Check-in due: last {started:%H:%M}Z. Reply CI if you are OK.{BELL}"
    assert sim.sent_packets[0].to == KESTREL, "first a direct message, to the steward alone"

    clock.advance(minutes=interval)
    run_all_once(app)
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    overdue = texts_on_air(sim)[1]
    assert overdue == f"OVERDUE A1: Kestrel, Market, last check-in {started:%H:%M}Z. ACK A1 to respond.{BELL}"
    assert sim.sent_packets[1].to == people.BROADCAST_NODE

    # The search is called off only by a word from Kestrel's own radio (a forged CI would not).
    sim.deliver_dm(KESTREL, "CI sorry, phone died")
    turn_until(bridge, lambda: len(sim.sent_packets) == 3)
    assert texts_on_air(sim)[2] == "A1 resolved. Thank you."
    db.session.expire_all()
    assert alerts.open_alerts(db.session) == []
    (cleared,) = [a for a in alerts.recent_alerts(db.session) if a.code == "A1"]
    assert sealing.is_sealed(cleared.resolution) and "checked in late" in unsealed(app, cleared.resolution)

    # And the clock starts again from the late check-in: no second ping straight away.
    run_all_once(app)
    turns(bridge, 0.2)
    assert len(sim.sent_packets) == 3


def test_a_duress_check_in_silently_alerts_dispatch_and_nothing_public_shows_it(app, bridge, sim, client):
    app.config["DURESS_WORD"] = "bluebird"
    bridge.inbound.settings.duress_word = "bluebird"
    seat_role(db.session, bridge.now(), people.get_member(db.session, "Wren"), people.DISPATCH)
    db.session.commit()

    sim.deliver_text(KESTREL, "ON Market")
    sim.deliver_text(KESTREL, "CI all quiet, bluebird")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    turns(bridge, 0.3)

    (silent,) = texts_on_air(sim)
    assert sim.sent_packets[0].to == WREN, "a direct message to dispatch, nothing on the channel"
    assert silent.startswith("SILENT A1: Kestrel used the duress word")
    check_in = log_entries()[-2]
    assert (check_in.kind, check_in.public) == ("check_in", True), "the check-in itself looks like any other"
    for page in ("/", "/log"):
        html = client.get(page).get_data(as_text=True)
        assert "Check-in" in html or page == "/"
        assert "duress" not in html.lower() and "silent" not in html.lower() and "A1" not in html
    # STATUS over the radio does not give it away either.
    sim.deliver_text(KESTREL, "STATUS")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    assert "A1" not in texts_on_air(sim)[1]


def test_a_drill_is_labelled_drill_on_the_air_in_the_log_and_its_report_times_the_response(
        app, bridge, sim, client, clock):
    host = people.get_member(db.session, "Kestrel")
    drill = drills.start(db.session, bridge.now(), drills.SOS, host, "the bench")
    db.session.commit()
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    (notice,) = texts_on_air(sim)
    assert notice.startswith("DRILL SOS A1: Kestrel, the bench.")

    clock.advance(seconds=40)
    sim.deliver_dm(WREN, "ACK A1")
    turn_until(bridge, lambda: alerts.find_open(db.session, "A1").status == alerts.RESPONDING)
    db.session.expire_all()
    assert all(entry.drill for entry in log_entries() if entry.kind in ("sos", "alert_ack"))
    for page in ("/", "/log"):
        assert "A1" not in client.get(page).get_data(as_text=True)

    clock.advance(seconds=80)
    drills.end(db.session, bridge.now(), db.session.get(drills.Drill, drill.id), host)
    db.session.commit()
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    assert texts_on_air(sim)[1] == "DRILL A1 resolved. Thank you."
    report = drills.report_text(db.session, db.session.get(drills.Drill, drill.id))
    assert "- first responder acknowledged: 0 min 40 s" in report
    assert "- resolved: 2 min 00 s" in report
    assert "- notice on the air: 0 min 00 s" in report


def test_an_arrest_reported_by_radio_opens_a_case_with_the_hotline_and_no_description_on_air(app, bridge, sim):
    bridge.inbound.settings.legal_hotline = "030 555 0100"
    sim.deliver_text(KESTREL, "ARREST corner of Mill Lane 2 tall man in grey coat")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    (notice,) = texts_on_air(sim)
    # Channel traffic (anyone with the channel key could forge it), naming no listed place: acted on, marked
    # so, and the place stays with dispatch.
    assert notice.startswith("ARREST C1 (unverified): 2 at place with dispatch, 20:00Z.")
    assert "Legal hotline 030 555 0100." in notice and notice.endswith(BELL)
    assert "grey coat" not in notice
    (entry,) = [e for e in log_entries() if e.kind == "arrest"]
    assert entry.public is False
    assert outbox.recent(db.session)[0].priority == outbox.URGENT
    assert patrol.public_log(db.session, 100, 15) == []
