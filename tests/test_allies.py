"""Stories of the allies: shops and sanctuaries that endorsed the compact, their vows, and SAFE on the radio.

A host records an ally and its vow on the assembly's decision, a second host
countersigns it, and from then on the neighbourhood sees it (the allies page,
the bench page), the printed card and poster carry it, and a steward who
sends SAFE is told where the nearest open one is. The hub's clock is a
FakeClock on a Saturday night in November 2026 (2026-11-21 is a Saturday),
the bench's time zone UTC.
"""

from __future__ import annotations

import time
from pathlib import Path
from datetime import date, datetime

import pytest
from sqlalchemy import select

from radio_bridge.airtime import duty_cycle_budget
from server.domain import allies, outbox, patrol, people, power_record
from server.domain.radio_commands import Verb, parse_command
from server.domain.radio_text import utf8_len
from server.extensions import db
from tests.helpers import FakeClock, login, make_app, make_member, submit, text_of
from tests.test_radio_bridge import (  # noqa: F401  (bridge and sim are fixtures)
    KESTREL,
    WREN,
    bridge,
    sim,
    texts_on_air,
    turn_until,
    turns,
)

UTC = allies.zone_of("UTC")
DECISION = people.Decision(date(2026, 11, 14), "assembly at the library", "Linden Café shelters stewards at night")


def add_hosts(app) -> tuple[int, int]:
    return make_member(app, "Heron", people.HOST), make_member(app, "Ibis", people.HOST)


def vow_in_force(app, name: str = "Linden Café", text: str = "shelter and tea for stewards",
                 hours: str = "Fr,Sa 18:00-02:00", area: str = "Market", kind: str = allies.SHELTER,
                 place: str = "Market Square 4", crisis_only: bool = False) -> int:
    """Test setup through the domain, as the hosts' page does it: Heron records, Ibis countersigns."""
    with app.app_context():
        now = app.config["CLOCK"]()
        heron, ibis = people.get_member(db.session, "Heron"), people.get_member(db.session, "Ibis")
        if db.session.scalar(select(patrol.Area).where(patrol.Area.name == area)) is None:
            patrol.add_area(db.session, area)
        ally = db.session.scalar(select(allies.Ally).where(allies.Ally.name == name)) or allies.record_ally(
            db.session, now, name=name, place=place, endorsed_on="2026-11-14", organisation=True, by=heron)
        vow = allies.record_vow(db.session, now, ally, text=text, kind=kind, hours=hours, crisis_only=crisis_only,
                                area=area, decision=DECISION, by=heron)
        allies.countersign_vow(db.session, now, vow, by=ibis)
        db.session.commit()
        return vow.id


# -- the hosts record a vow, and the neighbourhood sees it ------------------------------


def test_a_vow_recorded_on_the_assemblys_decision_is_public_once_a_second_host_countersigns_it(app, client):
    add_hosts(app)
    with app.app_context():
        patrol.add_area(db.session, "Market")
        db.session.commit()
    login(client, "Heron")
    page = submit(client, "/host/allies", {"name": "Linden Café", "place": "Market Square 4",
                                           "endorsed_on": "2026-11-14", "organisation": "y"})
    assert "Linden Café is recorded as an ally" in text_of(page)
    with app.app_context():
        ally_id = db.session.scalar(select(allies.Ally.id))
    page = submit(client, f"/host/allies/{ally_id}/vow", {
        "text": "shelter after midnight in a crisis", "kind": "shelter", "hours": "daily 00:00-06:00",
        "crisis_only": "y", "area": "Market", "decided_on": "2026-11-14",
        "decision_place": "assembly at the library", "decision": "Linden Café opens its back room to stewards"})
    assert "once a second host countersigns it" in text_of(page)

    # Heron alone cannot put it in force: nothing public yet, and no button for Heron to press.
    assert "Linden Café" not in text_of(client.get("/allies"))
    assert "Countersign this vow" not in text_of(client.get("/host/allies"))
    with app.app_context():
        vow = db.session.scalar(select(allies.AllyVow))
        vow_id = vow.id
        with pytest.raises(Exception, match="Nobody countersigns a vow they recorded"):
            allies.countersign_vow(db.session, app.config["CLOCK"](), vow, by=people.get_member(db.session, "Heron"))
        db.session.rollback()

    client.post("/logout")
    login(client, "Ibis")
    submit(client, "/host/allies", {}, action=f"/host/allies/vows/{vow_id}/countersign")

    public = text_of(client.get("/allies"))
    assert "Linden Café Market Square 4" in public
    assert "shelter after midnight in a crisis (in a crisis)" in public
    assert "Decided: assembly at the library" in public
    # Saturday 20:00: closed, and it says when it opens.
    assert "Closed opens at 00:00" in public

    app.config["CLOCK"].now = datetime(2026, 11, 22, 1, 30)
    bench = text_of(client.get("/"))
    assert "Allies open now Linden Café · Market Square 4 · Market" in bench
    assert "until 06:00" in bench

    # Both hosts' acts are in the record of power, with the decision.
    with app.app_context():
        actions = [(use.actor, use.action) for use in power_record.entries(db.session)]
    assert ("Heron", "vow-recorded") in actions and ("Ibis", "vow-countersigned") in actions
    assert ("Heron", "ally-recorded") in actions


def test_a_host_marks_a_vow_kept_and_the_bench_page_celebrates_it_naming_no_one(app, client, clock):
    add_hosts(app)
    make_member(app, "Kestrel", people.STEWARD)
    vow_id = vow_in_force(app)
    login(client, "Heron")
    refused = submit(client, "/host/allies", {"kept-%d-on" % vow_id: "2026-11-21",
                                              "kept-%d-line" % vow_id: "tea for Kestrel on a cold night"},
                     action=f"/host/allies/vows/{vow_id}/kept")
    assert refused.status_code == 400
    assert "“Kestrel” is a member's handle" in text_of(refused)

    submit(client, "/host/allies", {"kept-%d-on" % vow_id: "2026-11-21",
                                    "kept-%d-line" % vow_id: "tea for four stewards on a cold night"},
           action=f"/host/allies/vows/{vow_id}/kept")
    client.post("/logout")
    bench = text_of(client.get("/"))
    assert "Vows kept lately: thank you!" in bench
    assert "Linden Café kept its vow on" in bench and "tea for four stewards on a cold night" in bench


def test_a_change_by_a_new_decision_replaces_the_old_vow_only_when_countersigned_and_a_withdrawal_is_immediate(
        app, client):
    add_hosts(app)
    vow_id = vow_in_force(app, hours="Sa 18:00-22:00")
    login(client, "Heron")
    form = client.get(f"/host/allies/1/vow?replaces={vow_id}").get_data(as_text=True)
    assert 'value="Sa 18:00-22:00"' in form
    submit(client, f"/host/allies/1/vow?replaces={vow_id}", {
        "text": "shelter and tea for stewards", "kind": "shelter", "hours": "Sa 18:00-23:30", "area": "Market",
        "replaces": str(vow_id), "decided_on": "2026-11-20", "decision_place": "assembly at the library",
        "decision": "later on Saturdays"}, action="/host/allies/1/vow")
    assert "until 22:00" in text_of(client.get("/allies"))  # the old one stands until the countersign
    client.post("/logout")
    login(client, "Ibis")
    with app.app_context():
        new_id = db.session.scalar(select(allies.AllyVow.id).where(allies.AllyVow.replaces_id == vow_id))
    submit(client, "/host/allies", {}, action=f"/host/allies/vows/{new_id}/countersign")
    public = text_of(client.get("/allies"))
    assert "until 23:30" in public and "until 22:00" not in public

    submit(client, "/host/allies", {f"withdraw-{new_id}-reason": "the café closed for winter"},
           action=f"/host/allies/vows/{new_id}/withdraw")
    assert "No allies are listed yet." in text_of(client.get("/allies"))
    with app.app_context():
        assert power_record.entries(db.session, limit=1)[0].action == "vow-withdrawn"


def test_the_form_refuses_a_private_persons_contact_and_anything_that_is_not_an_organisation(app, client):
    add_hosts(app)
    login(client, "Heron")
    page = submit(client, "/host/allies", {"name": "Rowan's flat", "place": "call 0176 555 0123",
                                           "endorsed_on": "2026-11-14"})
    assert page.status_code == 400
    text = text_of(page)
    assert "never a private person or a home" in text
    assert "“0176 555 0123” looks like a phone number" in text
    page = submit(client, "/host/allies", {"name": "Linden Café", "place": "ask for @rowan_k",
                                           "endorsed_on": "2026-11-14", "organisation": "y"})
    assert "looks like a messenger name or handle" in text_of(page)
    with app.app_context():
        assert db.session.scalar(select(allies.Ally)) is None
    # The form itself asks for no person and no contact: an organisation's name and its public place.
    form = client.get("/host/allies").get_data(as_text=True)
    assert "not a private person or a home" in form
    assert 'name="phone"' not in form and 'name="email"' not in form


# -- the hours and the clock -----------------------------------------------------------------


def test_open_and_closed_follow_the_hours_across_midnight(tmp_path):
    clock = FakeClock(datetime(2026, 11, 20, 17, 59))  # a Friday
    app = make_app(tmp_path / "instance", clock)
    make_member(app, "Heron", people.HOST)
    make_member(app, "Ibis", people.HOST)
    vow_in_force(app, hours="Fr 18:00-02:00")

    def open_now() -> bool:
        with app.app_context():
            (vow,) = allies.public_vows(db.session, clock.now, UTC)
            return vow.open_now

    assert not open_now()
    clock.now = datetime(2026, 11, 20, 18, 0)
    assert open_now()
    clock.now = datetime(2026, 11, 21, 1, 59)  # Saturday, past midnight: still Friday night's hours
    assert open_now()
    clock.now = datetime(2026, 11, 21, 2, 0)
    assert not open_now()
    clock.now = datetime(2026, 11, 21, 23, 0)  # Saturday night is not Friday's
    assert not open_now()
    clock.now = datetime(2026, 11, 22, 1, 0)  # nor the small hours of Sunday
    assert not open_now()

    hours = allies.parse_hours("mon-fri 8:00-18:00, 20:00-23:00; Sat,Sun 22:00-06:00")
    assert hours.text == "Mo-Fr 08:00-18:00, 20:00-23:00; Sa-Su 22:00-06:00"
    monday_early = datetime(2026, 11, 23, 5, 0)  # Sunday night's hours run into Monday
    assert hours.is_open(monday_early) and hours.closes_at(monday_early) == datetime(2026, 11, 23, 6, 0)
    for typed, why in (("sometimes", "give the hours as 18:00-02:00"), ("Mx 10:00-12:00", "write the days as"),
                       ("Mo 25:00-26:00", "not a time of day"), ("Mo 10:00-10:00", "the same time")):
        with pytest.raises(Exception, match=why):
            allies.parse_hours(typed)


def test_a_shared_bench_page_never_shows_a_shelter_open_after_it_closed(tmp_path):
    # The crowd's cache is on here (conftest turns it off elsewhere): one rendering shared by every phone.
    clock = FakeClock(datetime(2026, 11, 21, 1, 59, 59))  # Saturday, one second before Friday night's shelter closes
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="SimpleCache",
                   CACHE_DEFAULT_TIMEOUT=300)
    make_member(app, "Heron", people.HOST)
    make_member(app, "Ibis", people.HOST)
    vow_in_force(app, hours="Fr 18:00-02:00")
    client = app.test_client()
    assert "until 02:00" in text_of(client.get("/"))
    # Shared for the one second to the closing time, not for CACHE_DEFAULT_TIMEOUT.
    time.sleep(1.2)
    clock.advance(seconds=2)
    bench = text_of(client.get("/"))
    assert "No ally is open right now." in bench and "until 02:00" not in bench


# -- SAFE on the radio -----------------------------------------------------------------------------------


def test_safe_is_read_with_or_without_an_area():
    assert parse_command("SAFE").verb is Verb.SAFE
    assert parse_command("safe market").area == "market"
    assert parse_command("SAFE, Market square").area == "Market square"


def test_a_steward_sends_safe_and_hears_of_the_open_ally_in_one_packet(app, bridge, sim, clock):
    add_hosts(app)
    vow_in_force(app, name="Linden Café", hours="Sa 18:00-23:00", area="Market")
    vow_in_force(app, name="St Anne's", text="tea and a warm room", kind=allies.REFRESHMENT, hours="Sa 19:00-22:00",
                 area="Park", place="Church Lane 2")
    bridge.inbound.settings.timezone = "UTC"
    # Channel traffic from Kestrel's node (unverified): SAFE tells only what the public page shows, so it is answered.
    sim.deliver_text(KESTREL, "SAFE Park")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    answer = sim.sent_packets[0]
    assert answer.to == KESTREL
    assert answer.text.startswith("Open now: St Anne's, Church Lane 2 (Park): tea and a warm room, until 22:00.")
    assert "Also: Linden Café (Market)" in answer.text
    assert utf8_len(answer.text) <= 200

    # Without an area: the steward's own shift's area first.
    sim.deliver_dm(WREN, "ON Market")
    sim.deliver_dm(WREN, "SAFE")
    turn_until(bridge, lambda: len(sim.sent_packets) == 2)
    assert sim.sent_packets[1].text.startswith("Open now: Linden Café, Market Square 4 (Market): shelter and tea")


def test_when_no_ally_is_open_safe_says_so_and_who_opens_next(app, bridge, sim, clock):
    add_hosts(app)
    vow_in_force(app, name="Linden Café", hours="Sa 18:00-23:00", area="Market")
    bridge.inbound.settings.timezone = "UTC"
    clock.now = datetime(2026, 11, 21, 15, 0)
    sim.deliver_text(KESTREL, "SAFE Market")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    assert texts_on_air(sim) == ["None open now. Linden Café (Market) opens at 18:00."]


def test_a_flood_of_safe_from_a_hostile_node_never_eats_the_urgent_reserve(app, bridge, sim, clock):
    add_hosts(app)
    vow_in_force(app, hours="Sa 18:00-23:00")
    bridge.inbound.settings.timezone = "UTC"
    # Routine traffic has spent its share of the hour: only the urgent reserve is left.
    budget = duty_cycle_budget("EU_868")
    bridge.ledger.record(clock.now, budget * (1 - bridge.sender.settings.urgent_reserve))
    # Someone with the channel key writes SAFE as Kestrel and as Wren, again and again.
    for _ in range(100):
        sim.spoof(KESTREL, "SAFE")
        sim.spoof(WREN, "SAFE Market")
    sim.deliver_text(WREN, "SOS behind the library")
    turn_until(bridge, lambda: len(sim.sent_packets) >= 1, seconds=20)
    turns(bridge, 1.0)
    # The SOS went out on the reserve; no SAFE answer did, and the flood queued one answer per node, not 200.
    (sos,) = texts_on_air(sim)
    assert sos.startswith("SOS A1 (unverified): Wren, behind the library")
    with app.app_context():
        waiting = list(db.session.scalars(select(outbox.OutboxMessage).where(
            outbox.OutboxMessage.dedupe_key.startswith("safe:"))))
    assert len(waiting) == 2
    assert {message.state for message in waiting} == {outbox.QUEUED}
    assert {message.priority for message in waiting} == {outbox.NORMAL}


# -- printed: the pocket card and the bench poster ------------------------------------------------


def test_the_pocket_card_lists_the_allies_shelters_first_and_still_prints_on_one_a6_page(app, tmp_path):
    import re

    from playwright.sync_api import sync_playwright

    from firmware_config.network import load_network
    from firmware_config.pocket_card import pocket_card_html
    from tests.test_posters import need_chromium, page_text

    need_chromium()
    add_hosts(app)
    vow_in_force(app, name="St Anne's", text="tea and a warm room", kind=allies.REFRESHMENT, hours="daily 19:00-22:00",
                 area="Park", place="Church Lane 2")
    vow_in_force(app, name="Linden Café", hours="Fr,Sa 18:00-02:00", area="Market")
    vow_in_force(app, name="Corner Shop", text="phone charging", kind=allies.OTHER, hours="Mo-Sa 08:00-20:00",
                 area="Station", place="Station Road 1")
    with app.app_context():
        net = load_network(app.config, Path(app.instance_path))
        card = pocket_card_html(net, allies.card_vows(db.session, allies.POCKET_CARD_ALLIES))

    text = page_text(card)
    assert "SAFE [area] the nearest ally open now, a shelter first" in text
    assert "Allies: Linden Café (Market, shelter), St Anne's (Park, refreshment), Corner Shop (Station, other help)" in text
    assert "SAFE [area] says which is open now." in text
    path = tmp_path / "card.html"
    path.write_text(card, encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(path.as_uri())
            pdf = page.pdf(prefer_css_page_size=True)
        finally:
            browser.close()
    assert len(re.findall(rb"/MediaBox", pdf)) == 1, "the card with its allies takes more than one A6 page"


def test_the_bench_poster_lists_the_allies_and_a_phone_still_reads_both_codes(app, tmp_path):
    from tests.processes import safebench
    from tests.test_posters import RENDER_TIMEOUT_S, a4_pages, decoded, need_chromium, page_text

    need_chromium()
    add_hosts(app)
    vow_in_force(app, name="Linden Café", hours="Fr,Sa 18:00-02:00", area="Market", crisis_only=True,
                 text="shelter after midnight")
    vow_in_force(app, name="St Anne's", text="tea and a warm room", kind=allies.REFRESHMENT, hours="daily 19:00-22:00",
                 area="Park", place="Church Lane 2")
    out = tmp_path / "print"
    done = safebench(Path(app.instance_path), "poster", "--out", str(out), timeout=RENDER_TIMEOUT_S)
    assert done.returncode == 0, done.stderr

    text = page_text((out / "poster.html").read_text(encoding="utf-8"))
    assert "Our allies and their vows" in text
    assert "Linden Café , Market Square 4: shelter after midnight (Fri-Sat 18:00-02:00) · in a crisis" in text
    assert "St Anne's , Church Lane 2: tea and a warm room (daily 19:00-22:00)" in text
    # Still one sheet, and a phone on the bench still reads both codes from the picture of it.
    assert a4_pages(out / "poster.pdf") == 1
    codes = decoded(out / "poster.png")
    assert b"http://10.42.0.1/" in codes and b"WIFI:T:nopass;S:SafeBench;;" in codes
