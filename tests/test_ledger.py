"""Stories of the mutual-credit ledger and the bail and legal fund (issue 16), told through the domain services."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from html import unescape

import pytest

from server.domain import ledger, people, power_record
from server.domain.errors import Conflict, Invalid
from server.domain.people import CARE, HOST, STEWARD, Decision
from server.extensions import db
from tests.helpers import seat_role


def _decision(now: datetime) -> Decision:
    return Decision(now.date(), "assembly at the library", "the kitchen and the patrol keep accounts")


def _open_crew(session, now, name, keepers, soft=10, hard=30, *, asked_by, countersigned_by, pays_patrol=False):
    ask = ledger.open_account(session, now, name, soft_limit=soft, hard_limit=hard, keepers=keepers,
                              decision=_decision(now), by=asked_by, pays_patrol_hours=pays_patrol)
    ledger.countersign(session, now, ask, by=countersigned_by)
    return ask.account


@pytest.fixture
def hub(app, clock):
    """Two hosts, a kitchen keeper (Rowan), a patrol keeper (Kestrel), a steward (Wren), a care ring member (Ash)."""
    with app.app_context():
        now = clock()
        s = db.session
        members = {}
        for handle, role in (("Mara", HOST), ("Tomas", HOST), ("Rowan", STEWARD), ("Kestrel", STEWARD),
                             ("Wren", STEWARD), ("Ash", CARE)):
            members[handle] = people.add_member(s, now, handle)
            seat_role(s, now, members[handle], role)
        kitchen = _open_crew(s, now, "Kitchen", ["Rowan"], asked_by=members["Mara"], countersigned_by=members["Tomas"])
        patrol = _open_crew(s, now, "Patrol", ["Kestrel"], asked_by=members["Mara"],
                            countersigned_by=members["Tomas"], pays_patrol=True)
        s.commit()
        yield type("Hub", (), {"s": s, "now": now, "m": members, "kitchen": kitchen, "patrol": patrol,
                               "clock": clock})


def test_the_kitchen_pays_the_patrol_for_a_night_and_the_patrol_confirms(hub):
    """Rowan, for the kitchen, offers 3 credits to the patrol; Kestrel, its keeper, confirms: one entry, zero sum."""
    s, now, m = hub.s, hub.now, hub.m
    offer = ledger.propose(s, now, giver=hub.kitchen, receiver=hub.patrol, amount=3, memo="bread for the night",
                           by=m["Rowan"])
    assert offer.transfer.state == ledger.PROPOSED and offer.warning == ""
    assert hub.kitchen.balance == 0  # nothing moves until the receiver confirms

    with pytest.raises(Invalid, match="Only the receiver confirms"):
        ledger.confirm(s, now, offer.transfer, by=m["Rowan"])
    done = ledger.confirm(s, now, offer.transfer, by=m["Kestrel"])
    s.commit()

    assert done.transfer.state == ledger.CONFIRMED
    assert (hub.kitchen.balance, hub.patrol.balance) == (-3, 3)
    entry = done.transfer.entry
    assert (entry.giver.title, entry.receiver.title, entry.amount, entry.memo) == ("Kitchen", "Patrol", 3,
                                                                                  "bread for the night")
    assert ledger.audit_sums(s) == ledger.Sums(0, [])


def test_a_transfer_past_the_hard_limit_is_refused_with_the_limit_and_the_balance(hub):
    s, now, m = hub.s, hub.now, hub.m
    wren = ledger.account_for_member(s, now, m["Wren"])
    first = ledger.propose(s, now, giver=wren, receiver=hub.kitchen, amount=15, memo="soup", by=m["Wren"])
    assert "past its soft limit of 10" in first.warning  # through, with a warning
    ledger.confirm(s, now, first.transfer, by=m["Rowan"])

    with pytest.raises(Conflict) as refused:
        ledger.propose(s, now, giver=wren, receiver=hub.kitchen, amount=6, memo="bread", by=m["Wren"])
    assert refused.value.message == ("Wren's balance is -15 and its hard limit is 20 below zero: 6 more would take "
                                     "it to -21. Nothing was moved.")
    assert wren.balance == -15 and ledger.audit_sums(s).total == 0


def test_two_offers_confirmed_one_after_the_other_cannot_pass_the_limit_together(hub):
    """Offers wait; the second is refused at confirmation if the first used up the room (the offers count too)."""
    s, now, m = hub.s, hub.now, hub.m
    wren = ledger.account_for_member(s, now, m["Wren"])
    ledger.propose(s, now, giver=wren, receiver=hub.kitchen, amount=12, memo="", by=m["Wren"])
    with pytest.raises(Conflict, match="12 credits already offered"):
        ledger.propose(s, now, giver=wren, receiver=hub.patrol, amount=12, memo="", by=m["Wren"])


def test_a_mistake_is_corrected_by_a_reversal_that_points_at_it_and_nothing_is_edited(hub):
    s, now, m = hub.s, hub.now, hub.m
    offer = ledger.propose(s, now, giver=hub.kitchen, receiver=hub.patrol, amount=30, memo="one zero too many",
                           by=m["Rowan"])
    entry = ledger.confirm(s, now, offer.transfer, by=m["Kestrel"]).transfer.entry
    with pytest.raises(Invalid, match="Only the side that received"):
        ledger.reverse(s, now, entry, by=m["Rowan"])  # the giver cannot take back
    correction = ledger.reverse(s, now, entry, by=m["Kestrel"], why="meant 3")
    s.commit()
    assert correction.reverses is entry and correction.memo == f"reverses entry {entry.id}: meant 3"
    assert hub.kitchen.balance == hub.patrol.balance == 0
    with pytest.raises(Conflict, match="reversed already"):
        ledger.reverse(s, now, entry, by=m["Kestrel"])
    entry.memo = "edited"
    with pytest.raises(ledger.LedgerIsAppendOnly):
        s.flush()
    s.rollback()
    assert power_record.entries(s, limit=1)[0].action == "ledger-entry-reversed"


def test_a_crew_account_moves_nothing_until_a_second_host_countersigns_and_both_are_in_the_record(hub):
    s, now, m = hub.s, hub.now, hub.m
    ask = ledger.open_account(s, now, "Bike workshop", soft_limit=5, hard_limit=10, keepers="Wren",
                              decision=_decision(now), by=m["Mara"])
    workshop = ask.account
    wren = ledger.account_for_member(s, now, m["Wren"])
    with pytest.raises(Conflict, match="waits for a host's countersign"):
        ledger.propose(s, now, giver=wren, receiver=workshop, amount=1, memo="", by=m["Wren"])
    with pytest.raises(Invalid, match="second host"):
        ledger.countersign(s, now, ask, by=m["Mara"])
    with pytest.raises(Invalid, match="Only a host"):
        ledger.open_account(s, now, "Garden", soft_limit=1, hard_limit=2, keepers="Wren", decision=_decision(now),
                            by=m["Wren"])
    ledger.countersign(s, now, ask, by=m["Tomas"])
    assert workshop.in_force and [k.member.handle for k in workshop.keepers] == ["Wren"]
    actions = [use.action for use in power_record.entries(s, limit=2)]
    assert actions == ["ledger-countersigned", "ledger-account-opened"]

    change = ledger.set_limits(s, now, workshop, soft_limit=8, hard_limit=40, keepers="Wren, Rowan",
                               decision=_decision(now), by=m["Tomas"])
    assert workshop.hard_limit == 10  # not before the countersign
    ledger.countersign(s, now, change, by=m["Mara"])
    assert (workshop.soft_limit, workshop.hard_limit) == (8, 40)
    assert sorted(k.member.handle for k in workshop.keepers) == ["Rowan", "Wren"]
    with pytest.raises(Invalid, match="soft limit"):
        ledger.set_limits(s, now, workshop, soft_limit=50, hard_limit=40, decision=_decision(now), by=m["Tomas"])


def _open_fund(hub):
    s, now, m = hub.s, hub.now, hub.m
    ask = ledger.open_account(s, now, "", kind=ledger.FUND, soft_limit=0, hard_limit=0, keepers=None,
                              decision=_decision(now), by=m["Mara"])
    ledger.countersign(s, now, ask, by=m["Tomas"])
    return ask.account


def test_the_bail_fund_takes_contributions_and_pays_out_by_case_code_never_by_name(hub):
    s, now, m = hub.s, hub.now, hub.m
    fund = _open_fund(hub)
    wren = ledger.account_for_member(s, now, m["Wren"])
    gift = ledger.propose(s, now, giver=wren, receiver=fund, amount=5, memo="", by=m["Wren"], anonymous=True)
    with pytest.raises(Invalid, match="never a name"):
        ledger.propose(s, now, giver=wren, receiver=fund, amount=1, memo="for Jamal's bail", by=m["Wren"])
    with pytest.raises(Invalid, match="Only the receiver"):
        ledger.confirm(s, now, gift.transfer, by=m["Rowan"])
    ledger.confirm(s, now, gift.transfer, by=m["Ash"])
    ledger.record_cash(s, now, amount=20, by=m["Ash"])
    assert fund.balance == 25
    assert ledger.shown_giver(gift.transfer.entry, m["Ash"]) == "anonymous"
    assert ledger.shown_giver(gift.transfer.entry, m["Wren"]) == "Wren"

    with pytest.raises(Invalid, match="never a name: 'Jamal' is not one of its words"):
        ledger.pay_out(s, now, amount=10, memo="bail for Jamal Okafor C11", by=m["Ash"])
    with pytest.raises(Invalid, match="leave out a phone number"):
        ledger.pay_out(s, now, amount=10, memo="bail C11 0176 5550123", by=m["Ash"])
    with pytest.raises(Invalid, match="Only the care ring"):
        ledger.pay_out(s, now, amount=10, memo="bail C11", by=m["Mara"])
    with pytest.raises(Conflict, match="holds 25 credits"):
        ledger.pay_out(s, now, amount=30, memo="bail C11", by=m["Ash"])
    payout = ledger.pay_out(s, now, amount=20, memo="bail c11", by=m["Ash"])
    s.commit()
    assert payout.memo == "bail C11" and payout.receiver.kind == ledger.OUTSIDE
    assert fund.balance == 5 and ledger.audit_sums(s) == ledger.Sums(0, [])
    assert power_record.entries(s, limit=1)[0].reason == "20 credits: bail C11"
    months = ledger.fund_months(s)
    assert months == [ledger.MonthTotal(date(2026, 11, 1), 25, 20)]

    # Wren's gift was meant for the kitchen: the care ring takes it back by a correction. The month
    # shows 5 less given, not 5 paid out (a correction is never a payout to anyone).
    ledger.reverse(s, now, gift.transfer.entry, by=m["Ash"], why="meant for the kitchen")
    s.commit()
    assert ledger.fund_months(s) == [ledger.MonthTotal(date(2026, 11, 1), 20, 20)]
    # The gift was anonymous, so its correction does not name who it went back to, except to Wren.
    correction = ledger.entries_of(s, fund, limit=1)[0]
    assert ledger.shown_receiver(correction, m["Ash"]) == "anonymous"
    assert ledger.shown_receiver(correction, m["Wren"]) == "Wren"


def test_patrol_hours_earn_credits_only_for_a_steward_who_opted_in_dated_to_the_week(hub):
    s, now, m = hub.s, hub.now, hub.m
    start, end = datetime(2026, 11, 20, 22, 10), datetime(2026, 11, 21, 1, 50)
    assert ledger.credit_closed_shift(s, now, m["Wren"], start, end) is None  # not opted in: nothing at all
    assert ledger.member_account(s, m["Wren"]) is None

    ledger.set_member_choices(s, now, m["Wren"], earns_patrol_credit=True, balance_public=False)
    entry = ledger.credit_closed_shift(s, now, m["Wren"], start, end)
    assert (entry.amount, entry.kind, entry.at, entry.giver.title) == (4, ledger.PATROL, datetime(2026, 11, 16),
                                                                        "Patrol")
    assert ledger.audit_sums(s).total == 0


# -- on the web ----------------------------------------------------------------------------------------------

from tests.helpers import PASSWORD, login, make_member, submit, text_of  # noqa: E402


def _web_hub(app):
    """Hosts Mara and Tomas; Rowan keeps the kitchen, Kestrel the patrol; Wren a steward; Ash the care ring."""
    for handle, role in (("Mara", HOST), ("Tomas", HOST), ("Rowan", STEWARD), ("Kestrel", STEWARD),
                         ("Wren", STEWARD), ("Ash", CARE)):
        make_member(app, handle, role)


def _decided(prefix: str, **extra) -> dict:
    return {f"{prefix}-{k}": v for k, v in {"decided_on": "2026-11-20", "decision_place": "assembly at the library",
                                             "decision": "the kitchen keeps an account", **extra}.items()}


def test_hosts_open_the_kitchen_on_the_web_and_a_neighbour_pays_it_and_the_keeper_confirms(app, client):
    _web_hub(app)
    login(client, "Mara")
    page = submit(client, "/host/ledger", _decided("open", kind="crew", name="Kitchen", soft_limit="10",
                                                    hard_limit="30", keepers="Rowan"))
    assert "opens when a second host countersigns" in text_of(page)
    with app.app_context():
        ask = ledger.pending_decisions(db.session)[0]
        ask_id = ask.id
    # Mara cannot countersign her own: no button for her, and the post is refused.
    assert f"/host/ledger/decisions/{ask_id}/countersign" not in page.get_data(as_text=True)
    client.post("/logout")
    login(client, "Tomas")
    page = submit(client, "/host/ledger", {}, action=f"/host/ledger/decisions/{ask_id}/countersign")
    assert "Countersigned" in text_of(page)
    client.post("/logout")

    login(client, "Wren")
    page = submit(client, "/ledger/mine", {"pay-giver": "0", "pay-to": "kitchen", "pay-amount": "3",
                                           "pay-memo": "bread"})
    assert "Offered: 3 credits to Kitchen (P1)" in text_of(page)
    client.post("/logout")

    login(client, "Rowan")
    page = client.get("/ledger/mine")
    assert "P1: Wren offers 3 credits to Kitchen" in text_of(page)
    page = submit(client, "/ledger/mine", {}, action="/ledger/transfers/1/confirm")
    assert "Confirmed: the credits moved." in text_of(page)
    kitchen_page = text_of(client.get("/ledger/accounts/1"))
    assert "Balance: 3 credits" in kitchen_page and "bread" in kitchen_page


def test_an_offer_past_the_hard_limit_is_refused_on_the_form_with_the_limit_and_the_balance(app, client):
    _web_hub(app)
    login(client, "Wren")
    page = submit(client, "/ledger/mine", {"pay-giver": "0", "pay-to": "Kestrel", "pay-amount": "25",
                                           "pay-memo": "a lot"})
    assert page.status_code == 400
    assert ("Wren's balance is 0 and its hard limit is 20 below zero: 25 more would take it to -25. "
            "Nothing was moved.") in text_of(page)
    assert "There is a problem" in text_of(page)


def test_the_public_ledger_shows_crews_and_the_fund_but_a_person_only_by_their_choice(app, client):
    _web_hub(app)
    with app.app_context():
        now = app.config["CLOCK"]()
        s = db.session
        m = {h: people.get_member(s, h) for h in ("Mara", "Tomas", "Rowan", "Kestrel", "Wren", "Ash")}
        kitchen = _open_crew(s, now, "Kitchen", ["Rowan"], asked_by=m["Mara"], countersigned_by=m["Tomas"])
        ask = ledger.open_account(s, now, "", kind=ledger.FUND, soft_limit=0, hard_limit=0, keepers=None,
                                  decision=_decision(now), by=m["Mara"])
        ledger.countersign(s, now, ask, by=m["Tomas"])
        for handle, amount in (("Wren", 7), ("Kestrel", 4)):
            giver = ledger.account_for_member(s, now, m[handle])
            offer = ledger.propose(s, now, giver=giver, receiver=kitchen, amount=amount, memo="", by=m[handle])
            ledger.confirm(s, now, offer.transfer, by=m["Rowan"])
        ledger.record_cash(s, now, amount=12, by=m["Ash"])
        ledger.pay_out(s, now, amount=5, memo="lawyer C3", by=m["Ash"])
        s.commit()

    page = text_of(client.get("/ledger"))
    assert "Kitchen 11" in page and "The fund holds 7 credits." in page
    assert "12" in page and "Wren" not in page and "Kestrel" not in page and "-7" not in page
    assert "C3" not in page  # even a case code stays inside the hub

    login(client, "Wren")
    submit(client, "/ledger/mine", {"choices-balance_public": "y"}, action="/ledger/mine/choices")
    page = text_of(client.get("/ledger"))
    assert "Wren -7" in page and "Kestrel" not in page
    assert "the bench's ledger" in text_of(client.get("/"))


def test_a_care_ring_payout_with_a_name_in_its_memo_is_refused_on_the_fund_page(app, client):
    _web_hub(app)
    with app.app_context():
        now = app.config["CLOCK"]()
        s = db.session
        ask = ledger.open_account(s, now, "", kind=ledger.FUND, soft_limit=0, hard_limit=0, keepers=None,
                                  decision=_decision(now), by=people.get_member(s, "Mara"))
        ledger.countersign(s, now, ask, by=people.get_member(s, "Tomas"))
        ledger.record_cash(s, now, amount=40, by=people.get_member(s, "Ash"))
        s.commit()
    login(client, "Ash")
    page = submit(client, "/ledger/fund", {"payout-amount": "30", "payout-memo": "bail for Jamal Okafor C11"})
    assert page.status_code == 400
    assert "never a name: 'Jamal' is not one of its words" in text_of(page)
    page = submit(client, "/ledger/fund", {"payout-amount": "30", "payout-memo": "bail C11"})
    assert "Paid out: 30 credits." in text_of(page) and "The fund holds 10 credits." in text_of(page)


def test_a_keeper_reverses_an_entry_with_its_button_on_the_crews_page(app, client):
    _web_hub(app)
    with app.app_context():
        now = app.config["CLOCK"]()
        s = db.session
        m = {h: people.get_member(s, h) for h in ("Mara", "Tomas", "Rowan", "Wren")}
        kitchen = _open_crew(s, now, "Kitchen", ["Rowan"], asked_by=m["Mara"], countersigned_by=m["Tomas"])
        offer = ledger.propose(s, now, giver=ledger.account_for_member(s, now, m["Wren"]), receiver=kitchen,
                               amount=4, memo="soup", by=m["Wren"])
        entry_id = ledger.confirm(s, now, offer.transfer, by=m["Rowan"]).transfer.entry.id
        kitchen_id = kitchen.id
        s.commit()

    login(client, "Rowan")
    html = client.get(f"/ledger/accounts/{kitchen_id}").get_data(as_text=True)
    button = re.search(rf'action="/ledger/entries/{entry_id}/reverse">\s*<input type="hidden" name="csrf_token" '
                       r'value="([^"]+)"', html)
    assert button, "the entry Rowan's kitchen received has its Reverse button"
    page = client.post(f"/ledger/entries/{entry_id}/reverse", data={"csrf_token": unescape(button.group(1)),
                                                                   "why": "meant for the bike workshop"},
                       follow_redirects=True)
    assert f"Entry {entry_id} is reversed by entry {entry_id + 1}." in text_of(page)
    with app.app_context():
        assert ledger.find_account(db.session, kitchen_id).balance == 0
