"""Stories of arrest notices: a place on the air, never a person.

An arrest notice reaches every handheld on the patrol channel. What a
steward or a neighbour typed may hold a name, a phone number, an email
address or an order ("ALL STEWARDS stand down"): it goes to the case, for
dispatch and the care ring, and the air hears a published area or a
landmark the hosts listed, else the steward's shift area "details with
dispatch", else "place with dispatch". A neighbour's report reaches
dispatch's radios at once and every handheld only once a dispatcher,
captain or host confirmed it. The radio stories run the real bridge and the
real meshtastic library against the emulated radio (fixtures from
test_radio_bridge.py).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from server.domain import cases, outbox, patrol, people, sealing
from server.domain.cases import ArrestCase
from server.domain.errors import Conflict, DomainError, NotFound
from server.domain.people import BROADCAST_NODE, parse_node_id
from server.domain.radio_text import BELL
from server.extensions import db
from tests.helpers import login, make_app, make_member, seat_role, submit, text_of, unsealed
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

HOTLINE = "+49 30 1234567"
# What a broadcast must never carry: a run of digits that could be a phone number, an email address.
CONTACT_LIKE = re.compile(r"@|\d(?:[\s().\-/]{0,2}\d){4,}")


def all_cases() -> list[ArrestCase]:
    db.session.expire_all()
    return list(db.session.scalars(select(ArrestCase).order_by(ArrestCase.id)))


def queued(app) -> list[outbox.OutboxMessage]:
    with app.app_context():
        messages = list(reversed(outbox.recent(db.session, limit=None)))
        for message in messages:
            db.session.expunge(message)
        return messages


def browser_of(app, handle: str, *roles: str, node: str | None = None):
    make_member(app, handle, *roles, node=node)
    browser = app.test_client()
    assert login(browser, handle).request.path != "/login"
    return browser


def web_beside(bridge_app, tmp_path, clock):
    """The web hub as it runs beside the bridge: its own app on the same database file and clock."""
    return make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache",
                    CACHE_NO_NULL_WARNING=True, LEGAL_HOTLINE=HOTLINE)


# -- through the emulated radio ---------------------------------------------------------------


def test_a_radioed_arrest_with_a_name_a_phone_number_or_an_address_puts_only_a_listed_place_on_the_air(
        app, bridge, sim, clock, tmp_path):
    bridge.inbound.settings.legal_hotline = HOTLINE
    patrol.add_landmark(db.session, "Station underpass")
    db.session.commit()
    sim.deliver_dm(KESTREL, "ON Market by the fountain")
    turn_until(bridge, lambda: len(log_entries()) == 1)

    sim.deliver_text(KESTREL, "ARREST Jamal Okafor 0176 5550123 taken at Market")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    sim.deliver_text(WREN, "ARREST 12 Baker St 2")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    sim.deliver_text(KESTREL, "ARREST j.okafor@example.org outside Elm Road")
    turn_until(bridge, lambda: len(sim.sent_packets) == 3)
    sim.deliver_dm(WREN, "ARREST station UNDERPASS 3 tall man called Jamal, 0176-555-0123")
    turn_until(bridge, lambda: len(sim.sent_packets) == 4)
    turns(bridge, 0.3)

    assert texts_on_air(sim) == [
        # Channel traffic anyone with the channel key could forge: acted on, and marked so, in one packet.
        f"ARREST C1 (unverified): 1 at Market, 20:00Z. Legal hotline {HOTLINE}.{BELL}",
        # Wren is on no shift and names no listed place.
        f"ARREST C2 (unverified): 2 at place with dispatch, 20:00Z. Legal hotline {HOTLINE}.{BELL}",
        # Kestrel names nothing listed: their shift's area, and the rest is with dispatch.
        f"ARREST C3 (unverified): 1 at Market, details with dispatch, 20:00Z. Legal hotline {HOTLINE}.{BELL}",
        # A verified direct message naming a landmark the hosts listed, whatever the case of the letters.
        f"ARREST C4: 3 at Station underpass, 20:00Z. Legal hotline {HOTLINE}.{BELL}",
    ]
    assert all(packet.to == BROADCAST_NODE for packet in sim.sent_packets)
    for text in texts_on_air(sim):
        assert not CONTACT_LIKE.search(text.replace(HOTLINE, "")), text
        assert not re.search(r"Jamal|Okafor|Baker|Elm|tall man", text), text

    # What was typed is in the cases, for dispatch and the care ring.
    first, second, third, fourth = all_cases()
    # Sealed as typed (the card holds none of it); what the air heard is worked out at once, and readable.
    assert all(sealing.is_sealed(case.place) for case in (first, second, third, fourth))
    assert unsealed(app, first.place) == "Jamal Okafor 0176 5550123 taken at Market" and first.air_place == "Market"
    assert (unsealed(app, second.place), second.arrested, second.air_place) == ("12 Baker St", 2,
                                                                                "place with dispatch")
    assert "j.okafor@example.org" in unsealed(app, third.place)
    assert third.air_place == "Market, details with dispatch"
    assert fourth.verified and sealing.is_sealed(fourth.description)
    assert unsealed(app, fourth.description) == "tall man called Jamal, 0176-555-0123"
    assert [case.verified for case in (first, second, third)] == [False, False, False]
    assert all(case.confirmed_at == bridge.now() for case in (first, second, third, fourth))

    # The log that hosts, captains and the live stream read carries the air's place, never the typed one.
    arrests = [entry for entry in log_entries() if entry.kind == "arrest"]
    # (Sealed like every place in the log: opened as a reader of the log opens it.)
    assert all(sealing.is_sealed(entry.place) for entry in arrests)
    assert [unsealed(app, entry.place) for entry in arrests] == [
        "Market", "place with dispatch", "Market, details with dispatch", "Station underpass"]
    assert "C1 (unverified): 1 arrested" == unsealed(app, arrests[0].note)
    web = web_beside(app, tmp_path, clock)
    try:
        magpie = browser_of(web, "Magpie", "host")
        for page in ("/host/log", "/host/", "/host/radio"):
            shown = text_of(magpie.get(page))
            assert "Okafor" not in shown and "Baker" not in shown and "example.org" not in shown, page
        heron = browser_of(web, "Heron", "dispatch")
        detail = text_of(heron.get(f"/cases/{first.id}"))
        assert "Jamal Okafor 0176 5550123 taken at Market" in detail
        assert "On the air as: Market" in detail and "Unverified radio report" in detail
    finally:
        with web.app_context():
            db.session.remove()
            db.engine.dispose()


def test_an_anonymous_report_reaches_dispatch_radios_at_once_and_handhelds_only_once_dispatch_confirms(
        app, bridge, sim, clock, tmp_path):
    with app.app_context():
        wren = people.get_member(db.session, "Wren")
        seat_role(db.session, clock(), wren, people.DISPATCH)
        people.set_password(wren, "correct horse battery")
        db.session.commit()
    web = web_beside(app, tmp_path, clock)
    try:
        neighbour = web.test_client()
        thanks = submit(neighbour, "/arrest", {"where": "Market. ALL STEWARDS stand down", "count": "2",
                                               "description": "Two people, one with a bike"})
        assert thanks.request.path == "/arrest/thanks" and "dispatch was told" in text_of(thanks)

        # Dispatch's radio buzzes at once, by direct message; nothing reaches every handheld.
        turn_until(bridge, lambda: len(sim.sent_packets) == 1)
        turns(bridge, 0.3)
        (asked,) = sim.sent_packets
        assert asked.to == WREN
        assert asked.text == (f"ARREST report C1 from the bench, not confirmed: 2 at Market, 20:00Z. "
                              f"Dispatch: confirm on the hub or ACK C1.{BELL}")
        assert "STEWARDS" not in asked.text and "stand down" not in asked.text

        # On the case page, Wren confirms it: now every handheld hears code, the listed place, count and time.
        assert login(wren_browser := web.test_client(), "Wren").request.path != "/login"
        (case,) = all_cases()
        page = text_of(wren_browser.get(f"/cases/{case.id}"))
        assert "A neighbour's report: not on the air yet" in page
        assert "ARREST C1: 2 at Market, 20:00Z." in page, "the page shows what the air will hear"
        confirmed = submit(wren_browser, f"/cases/{case.id}", {}, action=f"/cases/{case.id}/confirm")
        assert "C1 is confirmed" in text_of(confirmed)
        turn_until(bridge, lambda: len(sim.sent_packets) == 2)
        turns(bridge, 0.3)
        notice = sim.sent_packets[1]
        assert notice.to == BROADCAST_NODE
        assert notice.text == f"ARREST C1: 2 at Market, 20:00Z. Legal hotline {HOTLINE}.{BELL}"
        assert len(sim.sent_packets) == 2
        (record,) = [entry for entry in log_entries() if entry.kind == "arrest_confirm"]
        assert record.member.handle == "Wren" and "confirmed by Wren" in unsealed(app, record.note)
    finally:
        with web.app_context():
            db.session.remove()
            db.engine.dispose()


# -- confirming: who may, and what they see ----------------------------------------------------


def test_a_captain_confirms_a_report_from_the_list_seeing_only_what_the_air_would_hear(app, client):
    app.config["LEGAL_HOTLINE"] = HOTLINE
    make_member(app, "Heron", "dispatch", node="!0000a001")
    submit(client, "/arrest", {"where": "outside 88 Wexcombe Terrace, Marisol's door", "count": "1",
                               "description": "Marisol in a red scarf"})
    rook = browser_of(app, "Rook", "captain")
    with app.app_context():
        case_id = db.session.scalar(select(ArrestCase.id))

    dashboard = text_of(rook.get("/host/"))
    assert "Arrest report waiting for confirmation" in dashboard and "C1: 1 at place with dispatch" in dashboard
    waiting = rook.get("/cases/waiting")
    assert waiting.status_code == 200
    shown = text_of(waiting)
    assert "C1 · 1 at place with dispatch, arrested Sat 21 Nov, 20:00" in shown
    assert "Wexcombe" not in shown and "Marisol" not in shown
    assert rook.get(f"/cases/{case_id}").status_code == 403, "the case itself is for dispatch and care"

    confirmed = submit(rook, "/cases/waiting", {}, action=f"/cases/{case_id}/confirm")
    assert confirmed.request.path == "/cases/waiting"
    assert "C1 is confirmed" in text_of(confirmed) and "No report is waiting." in text_of(confirmed)
    notice = queued(app)[-1]
    assert (notice.destination, notice.text) == (
        BROADCAST_NODE, f"ARREST C1: 1 at place with dispatch, 20:00Z. Legal hotline {HOTLINE}.{BELL}")
    with app.app_context():
        case = db.session.get(ArrestCase, case_id)
        assert case.confirmed_by.handle == "Rook"
    # Power leaves a record, in the log every log role reads.
    log = text_of(rook.get("/host/log"))
    assert "Arrest report confirmed" in log and "C1: the bench's report confirmed by Rook, on the air now" in log

    again = submit(rook, "/cases/waiting", {}, action=f"/cases/{case_id}/confirm")
    assert again.status_code == 400 and "C1 is confirmed already by Rook: it is on the air." in text_of(again)
    assert len([m for m in queued(app) if m.destination == BROADCAST_NODE]) == 1


def test_only_dispatch_a_captain_or_a_host_may_confirm(app, client, clock):
    make_member(app, "Otter", "care")
    make_member(app, "Kestrel", "steward", node="!a1b2c3d4")
    make_member(app, "Heron", "dispatch")
    submit(client, "/arrest", {"where": "Market", "count": "1"})
    otter = app.test_client()
    login(otter, "Otter")
    assert "Confirm: put it on the air" not in text_of(otter.get("/cases/1"))
    assert "Ask dispatch, a patrol captain or a host to confirm it." in text_of(otter.get("/cases/1"))
    assert otter.get("/cases/waiting").status_code == 403
    assert submit(otter, "/cases/1", {}, action="/cases/1/confirm").status_code == 403

    with app.app_context():
        now = clock()
        kestrel, heron = people.get_member(db.session, "Kestrel"), people.get_member(db.session, "Heron")
        with pytest.raises(DomainError, match="Only dispatch, a patrol captain or a host can confirm"):
            cases.confirm_report(db.session, now, "C1", kestrel, patrol.SOURCE_RADIO)
        with pytest.raises(NotFound, match="No open case C7."):
            cases.confirm_report(db.session, now, "c 7", heron, patrol.SOURCE_RADIO)
        case = cases.confirm_report(db.session, now, "c1", heron, patrol.SOURCE_RADIO, hotline=HOTLINE)
        assert case.confirmed_by is heron
        with pytest.raises(Conflict, match="C1 is confirmed already by Heron"):
            cases.confirm_report(db.session, now, "C1", heron, patrol.SOURCE_RADIO)
        db.session.commit()


# -- who is asked, and what the neighbour is told ----------------------------------------------


def test_with_nobody_holding_dispatch_or_care_the_hosts_are_asked_and_the_neighbour_is_told_so(app, client):
    first = submit(client, "/arrest", {"where": "Market", "count": "1"})
    assert "Nobody holds the dispatch or care ring role right now, so nobody can read this yet." in text_of(first)
    assert "Nobody holds the host role either, so nobody at the bench was told." in text_of(first)
    assert "dispatch was told" not in text_of(first)
    assert queued(app) == []

    osprey = browser_of(app, "Osprey", "host", node="!0000b001")
    second = submit(app.test_client(), "/arrest", {"where": "by the library", "count": "2"})
    told = text_of(second)
    assert "The bench's hosts were told that an arrest was reported" in told and "dispatch was told" not in told
    (asked,) = queued(app)
    assert asked.destination == parse_node_id("!0000b001") and asked.priority == outbox.URGENT
    assert asked.text.startswith("ARREST report C2 from the bench, not confirmed: 2 at place with dispatch")
    assert asked.text.endswith(BELL)

    dashboard = text_of(osprey.get("/host/"))
    assert "Arrest reports waiting for confirmation" in dashboard
    assert "C1: 1 at place with dispatch" in dashboard and "C2: 2 at place with dispatch" in dashboard
    submit(osprey, "/cases/waiting", {}, action="/cases/2/confirm")
    assert queued(app)[-1].text.startswith("ARREST C2: 2 at place with dispatch")

    # A dispatcher without a radio: dispatch was told (the cases page), and the hosts' radios hear it too.
    make_member(app, "Heron", "dispatch")
    third = submit(app.test_client(), "/arrest", {"where": "by the library", "count": "1"})
    assert "dispatch was told" in text_of(third)
    assert queued(app)[-1].destination == parse_node_id("!0000b001")


def test_dispatch_and_care_radios_hear_a_report_and_the_bench_counts_confirmed_reports_only(app, client):
    heron = browser_of(app, "Heron", "dispatch", node="!0000a001")
    make_member(app, "Otter", "care", node="!0000a002")
    make_member(app, "Osprey", "host", node="!0000b001")
    submit(client, "/arrest", {"where": "Market", "count": "3"})
    submit(app.test_client(), "/arrest", {"where": "the station", "count": "2"})
    destinations = sorted(message.destination for message in queued(app))
    assert destinations == sorted([parse_node_id("!0000a001"), parse_node_id("!0000a002")] * 2)
    assert all(message.text.endswith(BELL) and message.priority == outbox.URGENT for message in queued(app))
    assert "Arrests still open" not in text_of(client.get("/"))

    submit(heron, "/cases/1", {}, action="/cases/1/confirm")
    assert "Arrests still open: 3 taken, 0 released." in text_of(client.get("/"))


# -- the hosts' list of landmarks ----------------------------------------------------------------


def test_hosts_list_landmarks_next_to_the_areas_and_an_arrest_notice_names_the_longest_it_finds(app, clock):
    osprey = browser_of(app, "Osprey", "host")
    added = submit(osprey, "/host/stewards", {"landmark_name": "Market square"}, action="/host/landmarks")
    assert "Market square is listed" in text_of(added)
    submit(osprey, "/host/stewards", {"area_name": "Market"}, action="/host/areas")
    for name, message in (("Call 0176 5550123", "leave phone numbers"), ("jo@example.org", "leave phone numbers"),
                          ("market SQUARE", "is listed already"), ("", "Please fill in the landmark")):
        refused = submit(osprey, "/host/stewards", {"landmark_name": name}, action="/host/landmarks")
        assert refused.status_code == 400 and message in text_of(refused), name
    rook = browser_of(app, "Rook", "captain")
    page = text_of(rook.get("/host/stewards"))
    assert "Market square" in page and "Hosts list and remove landmarks." in page
    assert submit(rook, "/host/stewards", {"area_name": "x"}, action="/host/landmarks").status_code == 403

    with app.app_context():
        now = clock()
        session = db.session
        assert cases.air_place_for(session, "taken at the MARKET SQUARE west corner", None) == "Market square"
        assert cases.air_place_for(session, "market, by the fountain", None) == "Market"
        assert cases.air_place_for(session, "the supermarket on Elm", None) == "place with dispatch"
        assert cases.air_place_for(session, "by the bench", None) == "the bench"
        # A case from before air places were kept: the air hears a listed place it names, or nothing typed.
        old = cases.open_case(session, now, place="Jo Bloggs, 0176 5550123", source="web")
        assert cases.case_text(old).startswith("ARREST C1: 1 at place with dispatch, 20:00Z.")
        old.air_place = None
        assert cases.case_text(old).startswith("ARREST C1: 1 at place with dispatch, 20:00Z.")
        old.place = "outside Market square, Jo Bloggs"
        assert cases.case_text(old).startswith("ARREST C1: 1 at Market square, 20:00Z.")
        session.commit()
        landmark_id = patrol.list_landmarks(session)[0].id

    removed = submit(osprey, "/host/stewards", {}, action=f"/host/landmarks/{landmark_id}/remove")
    assert "no longer listed" in text_of(removed)
    with app.app_context():
        assert cases.air_place_for(db.session, "taken at the market square", None) == "Market"


# -- a steward who says it again, and a flood ----------------------------------------------------


def test_a_repeated_arrest_adds_to_the_case_and_a_flood_from_one_radio_is_held_back_from_the_air(app, clock):
    make_member(app, "Kestrel", "steward", node="!a1b2c3d4")
    make_member(app, "Heron", "dispatch", node="!0000a001")
    with app.app_context():
        session = db.session
        patrol.add_area(session, "Market")
        patrol.add_landmark(session, "Station underpass")
        kestrel = people.get_member(session, "Kestrel")

        def radioed(where: str, count: int | None, note: str = "") -> ArrestCase:
            case = cases.report_from_radio(session, clock(), kestrel, where=where, count=count, note=note,
                                           verified=False, hotline=HOTLINE)
            session.commit()
            return case

        def broadcasts() -> list[str]:
            return [m.text for m in outbox.recent(session, limit=None) if m.destination == BROADCAST_NODE]

        first = radioed("Market", 2)
        clock.advance(minutes=4)
        again = radioed("market by the van", 5, "one of them is Jamal")
        assert again.id == first.id and again.arrested == 5
        # Added to the sealed description without opening it, for dispatch to read.
        assert sealing.is_sealed(again.description)
        assert "Again by radio 20:04Z: market by the van one of them is Jamal" in unsealed(app, again.description)
        clock.advance(minutes=1)
        assert radioed("Market", 1).arrested == 5, "the larger count stands"
        assert len(broadcasts()) == 1, "one notice for one arrest, however often it is sent"

        clock.advance(minutes=10)  # past the window: a new arrest at the same place
        radioed("Market", 1)
        radioed("Station underpass", 1)
        assert len(broadcasts()) == 3
        held = radioed("outside 12 Baker St", 4)  # the fourth notice from one radio within the hour
        assert held.air_place == "place with dispatch" and held.is_confirmed
        assert len(broadcasts()) == 3
        (told,) = [m for m in outbox.recent(session, limit=None) if m.dedupe_key == f"case:{held.id}:held:"
                   f"{parse_node_id('!0000a001')}"]
        assert told.destination == parse_node_id("!0000a001") and told.priority == outbox.URGENT
        assert told.text.startswith("ARREST C4 (unverified) by Kestrel: 4 at place with dispatch, 20:15Z. "
                                    "Not broadcast: 3 an hour from one radio. See the hub.")
        assert "Baker" not in told.text

        clock.advance(hours=1)
        radioed("Station underpass", 2)
        assert len(broadcasts()) == 4, "an hour later the air hears them again"
