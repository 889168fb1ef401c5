"""Stories of a stranger who holds the patrol channel key, through the emulated radio.

The key is on every pocket card, so the stranger can write any ``from`` on
channel traffic. Only a PKI direct message to the hub, decrypted by the
hub's radio with the key a host pinned for that steward, proves who sent it.
The real bridge and the real meshtastic library talk to the simulated radio
on a pty (fixtures from test_radio_bridge.py); Kestrel's and Wren's radio
keys are pinned, as a host pins them at registration.
"""

from __future__ import annotations

import os
from server.domain import alerts, patrol, people, radio_trust
from server.domain.radio_text import BELL
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import add_steward, login, make_member, seat_role, submit, text_of
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


def open_alert(code: str) -> alerts.Alert | None:
    db.session.expire_all()
    return alerts.find_open(db.session, code)


def trust_record() -> list[radio_trust.RadioTrustEvent]:
    db.session.expire_all()
    return radio_trust.recent_events(db.session)


def make_captain(app, handle: str, node: int) -> people.Member:
    with app.app_context():
        member = add_steward(db.session, app.config["CLOCK"](), handle, node)
        seat_role(db.session, app.config["CLOCK"](), member, people.CAPTAIN)
        db.session.commit()
        return member


def test_a_stranger_spoofing_a_captains_id_cannot_clear_a_real_sos_and_the_hosts_see_the_attempt(
        app, bridge, sim, client):
    sim.deliver_text(KESTREL, "SOS canal bridge")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    assert texts_on_air(sim)[0].startswith("SOS A1 (unverified): Kestrel, canal bridge.")

    # The stranger writes Wren's node id (Wren is a steward whose radio key is pinned).
    sim.spoof(WREN, "CLR A1 false alarm")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    assert open_alert("A1") is not None and open_alert("A1").status == alerts.OPEN
    reply = sim.sent_packets[1]
    assert reply.to == WREN and "direct message from your own radio" in reply.text
    assert "A1 resolved" not in " ".join(texts_on_air(sim))

    # Even a PKI direct message does not help them: the key is theirs, not the pinned one.
    sim.spoof(WREN, "CLR A1 false alarm", key=os.urandom(32))
    turns(bridge, 0.5)
    assert open_alert("A1").status == alerts.OPEN

    (refused,) = [event for event in trust_record() if event.kind == radio_trust.REFUSED]
    assert refused.member.handle == "Wren" and "CLR A1" in refused.detail
    make_member(app, "Heron", "host")
    login(client, "Heron")
    page = text_of(client.get("/host/stewards"))
    assert "CLR A1 claimed to be from Wren" in page


def test_a_verified_direct_message_from_a_steward_clears_their_own_sos(bridge, sim):
    sim.deliver_text(KESTREL, "SOS by the fountain")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    sim.deliver_dm(KESTREL, "CLR A1 walked home, all fine")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    db.session.expire_all()
    assert open_alert("A1") is None
    assert texts_on_air(sim)[1] == "A1 resolved. Thank you."


def test_acks_and_clears_by_channel_traffic_are_refused_with_the_same_answer_whatever_the_code(bridge, sim):
    sim.deliver_text(KESTREL, "SOS market")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    sim.deliver_text(WREN, "ACK A1")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    answer_for_real_code = sim.sent_packets[1].text
    assert open_alert("A1").responses == []
    # One refusal answer per few minutes per sender: move on past it with another node's clock.
    assert "ACK counts only as a direct message" in answer_for_real_code


def test_a_silent_alert_cannot_be_probed_acknowledged_or_cleared_over_the_radio(app, bridge, sim):
    bridge.inbound.settings.duress_word = "bluebird"
    sim.deliver_text(KESTREL, "CI all quiet bluebird")
    turn_until(bridge, lambda: any(e.kind == alerts.DURESS for e in log_entries()))
    db.session.expire_all()
    (silent,) = [a for a in alerts.open_alerts(db.session) if a.silent]

    # Wren's own radio, verified, asks about the silent code and a made-up one.
    sim.deliver_dm(WREN, f"ACK {silent.code}")
    turn_until(bridge, lambda: len([p for p in sim.sent_packets if p.to == WREN]) == 1)
    bridge.inbound._last_error_reply.clear()  # the one-error-per-few-minutes limit is not what this story is about
    sim.deliver_dm(WREN, "ACK A77")
    turn_until(bridge, lambda: len([p for p in sim.sent_packets if p.to == WREN]) == 2)
    bridge.inbound._last_error_reply.clear()
    sim.deliver_dm(WREN, f"CLR {silent.code} nothing to see")
    turn_until(bridge, lambda: len([p for p in sim.sent_packets if p.to == WREN]) == 3)

    silent_answer, unknown_answer, clear_answer = [p.text for p in sim.sent_packets if p.to == WREN]
    assert silent_answer == unknown_answer.replace("A77", silent.code) == clear_answer
    db.session.expire_all()
    still = db.session.get(alerts.Alert, silent.id)
    assert still.is_open and still.responses == []
    # STATUS never shows it either.
    sim.deliver_dm(WREN, "STATUS")
    turn_until(bridge, lambda: len([p for p in sim.sent_packets if p.to == WREN]) == 4)
    assert silent.code not in [p.text for p in sim.sent_packets if p.to == WREN][-1]


def test_status_by_channel_traffic_gives_counts_and_a_verified_one_gives_names_and_codes(bridge, sim):
    sim.deliver_text(KESTREL, "ON Market")
    sim.deliver_text(KESTREL, "SOS market")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    sim.deliver_text(WREN, "STATUS")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    unverified = sim.sent_packets[1].text
    assert unverified.startswith("On shift: 1. Alerts open: 1.") and "Kestrel" not in unverified
    assert "A1" not in unverified
    sim.deliver_dm(WREN, "STATUS")
    turn_until(bridge, lambda: len(sim.sent_packets) == 3)
    assert "Kestrel" in sim.sent_packets[2].text and "A1" in sim.sent_packets[2].text


def test_a_spoofed_off_does_not_end_a_stewards_shift(bridge, sim):
    sim.deliver_text(KESTREL, "ON Market")
    turn_until(bridge, lambda: any(e.kind == patrol.SHIFT_START for e in log_entries()))
    sim.spoof(KESTREL, "OFF")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    db.session.expire_all()
    kestrel = people.find_member(db.session, "Kestrel")
    assert patrol.current_shift(db.session, kestrel) is not None
    sim.deliver_dm(KESTREL, "OFF")
    turn_until(bridge, lambda: patrol.current_shift(db.session, kestrel) is None and not db.session.expire_all())


def test_packets_from_mqtt_another_channel_or_for_another_node_are_never_obeyed(bridge, sim):
    sim.deliver_raw(KESTREL, "TEXT_MESSAGE_APP", b"SOS via the internet", via_mqtt=True)
    sim.deliver_raw(KESTREL, "TEXT_MESSAGE_APP", b"SOS on the other channel", channel=1)
    sim.deliver_raw(KESTREL, "TEXT_MESSAGE_APP", b"SOS for someone else", to=WREN)
    turns(bridge, 0.8)
    assert sim.sent_packets == []
    db.session.expire_all()
    assert alerts.open_alerts(db.session) == []
    assert {event.kind for event in trust_record()} - {radio_trust.KEY_PINNED} == {radio_trust.FOREIGN}


def test_a_recorded_sos_played_back_a_week_later_is_dropped(app, bridge, sim, clock):
    packet_id = sim.deliver_text(KESTREL, "SOS station")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    sim.deliver_dm(KESTREL, "CLR A1 fine")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)

    clock.advance(days=7)
    run_all_once(app)  # the nightly housekeeping runs in between
    sim.deliver_duplicate(packet_id)
    turns(bridge, 0.8)
    db.session.expire_all()
    assert alerts.open_alerts(db.session) == []
    assert len(sim.sent_packets) == 2


def test_a_flood_of_sos_from_one_node_is_one_alert_and_another_stewards_sos_goes_out_next(bridge, sim):
    for _ in range(150):
        sim.spoof(KESTREL, "SOS")
    sim.deliver_text(WREN, "SOS behind the library")
    turn_until(bridge, lambda: len(sim.sent_packets) >= 2, seconds=20)
    first, second = texts_on_air(sim)[:2]
    assert first.startswith("SOS A1 (unverified): Kestrel")
    assert second.startswith("SOS A2 (unverified): Wren, behind the library")
    turns(bridge, 0.5)
    db.session.expire_all()
    open_ = alerts.open_alerts(db.session)
    assert len(open_) == 2
    kestrels = next(a for a in open_ if a.member.handle == "Kestrel")
    assert kestrels.repeats == 149
    assert len(sim.sent_packets) == 2, "repeats without a new place cost no airtime"


def test_a_repeat_naming_a_new_place_goes_out_once_and_never_moves_the_alert(bridge, sim):
    sim.deliver_text(KESTREL, "SOS market")
    for place in ("canal", "park", "station", "school"):
        sim.spoof(KESTREL, f"SOS {place}")
    turns(bridge, 1.0)
    sent = texts_on_air(sim)
    assert len(sent) == 2
    assert sent[1] == f"SOS A1 (unverified): Kestrel also at canal. ACK A1{BELL}"
    db.session.expire_all()
    (alert,) = alerts.open_alerts(db.session)
    assert alert.place == "market"
    assert alert.places_heard.split("\n") == ["canal", "park", "station", "school"]


def test_a_verified_sos_confirms_an_unverified_one_and_its_place_wins(bridge, sim):
    sim.spoof(KESTREL, "SOS nowhere in particular")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    sim.deliver_dm(KESTREL, "SOS under the railway arch")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    confirmed = texts_on_air(sim)[1]
    assert confirmed == f"SOS A1: Kestrel, under the railway arch. Confirmed from their own radio. ACK A1.{BELL}"
    db.session.expire_all()
    (alert,) = alerts.open_alerts(db.session)
    assert alert.verified and alert.place == "under the railway arch"


def test_escalation_rebroadcasts_once_per_alert_however_often_it_was_repeated(app, bridge, sim, clock):
    for _ in range(20):
        sim.deliver_text(KESTREL, "SOS")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    turns(bridge, 0.3)
    clock.advance(minutes=app.config["ALERT_ACK_MINUTES"])
    run_all_once(app)
    turns(bridge, 0.5)
    assert len(sim.sent_packets) == 2
    assert "No responder yet. ACK A1." in texts_on_air(sim)[1]


def test_an_overdue_alert_is_not_called_off_by_a_forged_check_in(app, bridge, sim, clock):
    sim.deliver_text(KESTREL, "ON Market")
    turn_until(bridge, lambda: any(e.kind == patrol.SHIFT_START for e in log_entries()))
    rules = (app.config["CHECK_IN_INTERVAL_MINUTES"], app.config["CHECK_IN_GRACE_MINUTES"])
    clock.advance(minutes=rules[0] + rules[1])
    run_all_once(app)
    clock.advance(minutes=rules[0])
    run_all_once(app)
    db.session.expire_all()
    (overdue,) = [a for a in alerts.open_alerts(db.session) if a.kind == alerts.OVERDUE]

    sim.spoof(KESTREL, "CI")
    turns(bridge, 0.5)
    assert open_alert(overdue.code) is not None, "a forged check-in does not call off the search"
    sim.deliver_dm(KESTREL, "CI sorry, phone died")
    turn_until(bridge, lambda: open_alert(overdue.code) is None)


def test_a_key_announced_for_a_registered_node_waits_for_a_host_and_a_changed_key_is_never_trusted(
        app, bridge, sim, client, clock):
    make_captain(app, "Heron", 0x0000BEEF)
    heron = sim.device.nodes.setdefault(0x0000BEEF, sim_node(0x0000BEEF))
    sim.deliver_node_info(heron)
    turn_until(bridge, lambda: any(e.kind == radio_trust.KEY_HEARD for e in trust_record()))
    db.session.expire_all()
    member = people.find_member(db.session, "Heron")
    assert member.radio_key is None and member.radio_key_heard is not None

    # Until a host confirms, Heron's direct messages are not proof.
    sim.deliver_dm(heron, "CLR A5")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    assert "direct message from your own radio" in sim.sent_packets[0].text

    with app.app_context():
        host = make_member(app, "Plover", "host")
        radio_trust.confirm_heard_key(db.session, app.config["CLOCK"](), people.find_member(db.session, "Heron"),
                                      by=people.find_member(db.session, "Plover"))
        db.session.commit()
    assert host is not None

    # A stranger announces other keys for Heron's node: shown to the hosts (one a minute), never trusted.
    clock.advance(minutes=1)
    forged = sim_node(0x0000BEEF)
    sim.deliver_node_info(forged)
    for _ in range(20):
        sim.deliver_node_info(sim_node(0x0000BEEF))
    turn_until(bridge, lambda: len([e for e in trust_record() if e.kind == radio_trust.KEY_HEARD]) == 2)
    db.session.expire_all()
    turns(bridge, 0.5)
    member = people.find_member(db.session, "Heron")
    assert member.radio_key == radio_trust.parse_key(heron.public_key)
    assert member.radio_key_heard == radio_trust.parse_key(forged.public_key)
    assert len([e for e in trust_record() if e.kind == radio_trust.KEY_HEARD]) == 2


def sim_node(num: int):
    from radio_bridge.simulator import SimNode

    return SimNode(num, "Heron's handheld", "HERN")


def test_a_new_node_id_for_a_steward_is_recorded_and_drops_the_pin(app, bridge, sim):
    now = app.config["CLOCK"]()
    kestrel = people.find_member(db.session, "Kestrel")
    assert kestrel.radio_key is not None
    radio_trust.change_node(db.session, now, kestrel, 0x00C0FFEE, by=None)
    db.session.commit()
    db.session.expire_all()
    kestrel = people.find_member(db.session, "Kestrel")
    assert kestrel.radio_key is None and kestrel.node_num == 0x00C0FFEE
    (changed,) = [e for e in trust_record() if e.kind == radio_trust.NODE_CHANGED]
    assert "!a1b2c3d4 -> !00c0ffee" in changed.detail


def test_the_heard_packet_memory_lasts_weeks(app, bridge, sim, clock):
    packet_id = sim.deliver_text(KESTREL, "CI")
    turn_until(bridge, lambda: len(log_entries()) == 1)
    clock.advance(days=app.config["HEARD_PACKET_RETENTION_DAYS"] - 1)
    run_all_once(app)
    sim.deliver_duplicate(packet_id)
    turns(bridge, 0.5)
    assert len(log_entries()) == 1


def test_a_host_confirms_a_heard_key_on_the_stewards_page_and_a_captain_cannot(app, client):
    # The hub's radio heard Heron's node announce a key (the story above shows the radio side).
    make_captain(app, "Heron", 0x0000BEEF)
    key = os.urandom(32)
    with app.app_context():
        radio_trust.note_heard_key(db.session, app.config["CLOCK"](), people.find_member(db.session, "Heron"), key)
        db.session.commit()
        heron_id = people.find_member(db.session, "Heron").id
    fingerprint = radio_trust.fingerprint(radio_trust.parse_key(key))

    make_member(app, "Sandpiper", "captain")
    login(client, "Sandpiper")
    page = text_of(client.get("/host/stewards"))
    assert f"A key was heard for this node: {fingerprint}" in page
    assert f"Confirm {fingerprint}" not in page, "only a host decides whom the hub trusts"
    refused = submit(client, "/host/stewards", {}, action=f"/host/stewards/{heron_id}/key/confirm", follow=False)
    assert refused.status_code == 403

    client.delete_cookie("session")
    make_member(app, "Plover", "host")
    login(client, "Plover")
    done = submit(client, "/host/stewards", {}, action=f"/host/stewards/{heron_id}/key/confirm")
    assert "Heron's radio key is pinned" in text_of(done)
    assert f"key pinned: {fingerprint}" in text_of(done)
    assert f"key {fingerprint} pinned · node !0000beef · by Plover" in text_of(done)

    # A key pasted wrong is refused with a sentence, and the pin stays.
    bad = submit(client, "/host/stewards", {"key": "not a key"}, action=f"/host/stewards/{heron_id}/key")
    assert "A radio key is 32 bytes in base64" in text_of(bad)
    with app.app_context():
        assert people.find_member(db.session, "Heron").radio_key == radio_trust.parse_key(key)


def test_a_host_registers_a_steward_with_the_key_from_their_app(app, client):
    make_member(app, "Plover", "host")
    login(client, "Plover")
    key = radio_trust.parse_key(os.urandom(32))
    decided = {"decided_on": app.config["CLOCK"]().date().isoformat(), "decision_place": "assembly at the library"}
    page = submit(client, "/host/stewards", {"handle": "Linnet", "node_id": "!00abcdef", "radio_key": key,
                                             "decision": "assembly 3 Dec, item 2", **decided})
    assert "Linnet is registered" in text_of(page)
    with app.app_context():
        assert people.find_member(db.session, "Linnet").radio_key == key
    again = submit(client, "/host/stewards", {"handle": "Lark", "node_id": "!00abcd00", "radio_key": "AAAA",
                                              "decision": "assembly 3 Dec, item 2", **decided}, follow=False)
    assert again.status_code == 400 and "A radio key is 32 bytes" in text_of(again)
    with app.app_context():
        assert people.find_member(db.session, "Lark") is None


def test_the_alerts_page_marks_an_unverified_sos_and_counts_its_repeats(app, bridge, sim):
    # The alerts page is hosts' and dispatch's: the unverified mark tells them it may be forged.
    sim.deliver_text(KESTREL, "SOS market")
    sim.spoof(KESTREL, "SOS canal")
    sim.spoof(KESTREL, "SOS")
    turns(bridge, 0.8)
    make_member(app, "Plover", "host")
    client = app.test_client()
    login(client, "Plover")
    page = text_of(client.get("/host/alerts"))
    assert "A1 · SOS · Kestrel UNVERIFIED" in page
    assert "Also named canal (by unverified repeats: may be a stranger's)" in page
    assert "Raised again 2 more times" in page


def test_a_dispatcher_confirms_a_neighbours_report_from_their_own_radio_and_nobody_else_can(app, bridge, sim):
    from server.domain import cases

    bridge.inbound.settings.legal_hotline = "030 555 0100"
    now = app.config["CLOCK"]()
    seat_role(db.session, now, people.find_member(db.session, "Wren"), people.DISPATCH)
    case = cases.open_case(db.session, now, place="Market. ALL STEWARDS stand down", source=cases.SOURCE_NEIGHBOUR)
    db.session.commit()
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    assert sim.sent_packets[0].to == WREN, "dispatch hears it at once, by direct message"

    # A steward without the role, from their own radio, learns nothing about which codes are open.
    sim.deliver_dm(KESTREL, f"ACK {case.code}")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    bridge.inbound._last_error_reply.clear()
    sim.deliver_dm(KESTREL, "ACK C77")
    turn_until(bridge, lambda: len(sim.sent_packets) == 3)
    assert sim.sent_packets[1].text == sim.sent_packets[2].text
    # Wren's node id on channel traffic is not Wren.
    sim.spoof(WREN, f"ACK {case.code}")
    turn_until(bridge, lambda: len(sim.sent_packets) == 4)
    db.session.expire_all()
    assert db.session.get(cases.ArrestCase, case.id).confirmed_at is None

    sim.deliver_dm(WREN, f"ACK {case.code}")
    turn_until(bridge, lambda: len(sim.sent_packets) == 5)
    notice = texts_on_air(sim)[4]
    assert notice.startswith(f"ARREST {case.code}: 1 at ") and "Legal hotline 030 555 0100." in notice
    assert "stand down" not in notice and sim.sent_packets[4].to == people.BROADCAST_NODE
    db.session.expire_all()
    assert db.session.get(cases.ArrestCase, case.id).confirmed_by.handle == "Wren"
