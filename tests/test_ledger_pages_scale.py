"""The ledger's pages cost the same few SQL statements however long the ledger grows (issue 16).

A member's page, a crew's page, the fund's page and the public page are
read twice: once on a young ledger, once after thirty more neighbours
have traded with the kitchen, with Wren, with the fund, each under their
own name. Each page sends as many statements the second time as the first:
an entry's two sides and their members come joined to the entry, not one
by one. The public page's totals come from the accounts' running totals,
and they must agree with the entries themselves. Counted in statements,
never in milliseconds (tests/benchmarks/ledger.py times the pages at
100,000 entries).
"""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import event, func, or_, select, update

from server.domain import ledger, people
from server.domain.ledger import LedgerEntry
from server.domain.people import CARE, HOST, STEWARD, Decision
from server.extensions import db
from tests.helpers import login, make_member, text_of

PAGES = (("Wren", "/ledger/mine"), ("Rowan", "/ledger/accounts/{kitchen}"), ("Ash", "/ledger/fund"),
         (None, "/ledger"))


def _open(session, now, name, kind, keepers, by, second, hard):
    ask = ledger.open_account(session, now, name, kind=kind, soft_limit=0, hard_limit=hard, keepers=keepers,
                              decision=Decision(now.date(), "assembly at the library", "open the accounts"), by=by)
    ledger.countersign(session, now, ask, by=second)
    return ask.account.id


def _hub(app) -> int:
    """Hosts Mara and Tomas; Rowan keeps the kitchen; Wren a steward; Ash the care ring. The kitchen's id."""
    for handle, role in (("Mara", HOST), ("Tomas", HOST), ("Rowan", STEWARD), ("Wren", STEWARD), ("Ash", CARE)):
        make_member(app, handle, role)
    with app.app_context():
        s, now = db.session, app.config["CLOCK"]()
        mara, tomas = people.get_member(s, "Mara"), people.get_member(s, "Tomas")
        kitchen = _open(s, now, "Kitchen", ledger.CREW, ["Rowan"], mara, tomas, 500)
        _open(s, now, "", ledger.FUND, None, mara, tomas, 0)
        s.commit()
        return kitchen


def _neighbours_trade(app, first: int, count: int) -> None:
    """``count`` new neighbours, each under their own name: bread from the kitchen, a credit each way with Wren,
    every third (from the first) an anonymous gift to the fund; every other one leaves Wren an offer that waits,
    the others show their balance. The care ring pays a lawyer and one gift is taken back."""
    with app.app_context():
        s, now = db.session, app.config["CLOCK"]()
        get = {h: people.get_member(s, h) for h in ("Rowan", "Wren", "Ash")}
        kitchen, fund = ledger.find_named(s, "kitchen"), ledger.fund_account(s)
        wren = ledger.account_for_member(s, now, get["Wren"])
        gift = None
        for i in range(first, first + count):
            member = people.add_member(s, now, f"Neighbour{i}")
            account = ledger.account_for_member(s, now, member)
            trades = [(account, kitchen, get["Rowan"], False), (wren, account, member, False),
                      (account, wren, get["Wren"], False)]
            if i % 3 == 1:
                trades.append((account, fund, get["Ash"], True))
            for giver, receiver, confirmer, anonymous in trades:
                by = member if giver is account else get["Wren"]
                offer = ledger.propose(s, now, giver=giver, receiver=receiver, amount=1 + i % 3,
                                       memo="" if receiver is fund else "bread", by=by, anonymous=anonymous)
                ledger.confirm(s, now, offer.transfer, by=confirmer)
                if anonymous:
                    gift = offer.transfer.entry
            if i % 2 == 1:
                ledger.propose(s, now, giver=account, receiver=wren, amount=1, memo="soup", by=member)
            else:
                ledger.set_member_choices(s, now, member, earns_patrol_credit=False, balance_public=True)
        ledger.pay_out(s, now, amount=1, memo="lawyer C7", by=get["Ash"])
        if gift is not None:
            ledger.reverse(s, now, gift, by=get["Ash"], why="")
        s.commit()


def _statements_per_page(app, kitchen: int) -> dict[str, int]:
    counted: dict[str, int] = {}
    with app.app_context():
        engine = db.engine
    for handle, path in PAGES:
        client = app.test_client()
        if handle:
            login(client, handle)
        page = path.format(kitchen=kitchen)
        assert client.get(page).status_code == 200  # statements compiled, the login's own reads done
        sent: list[str] = []

        def listener(_conn, _cursor, statement, *_args, sent=sent) -> None:
            sent.append(statement)

        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert client.get(page).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        counted[page] = len(sent)
    return counted


def _fund_months_entry_by_entry(session) -> list[ledger.MonthTotal]:
    """What fund_months answered before it summed in the database: every fund entry read, month by month."""
    fund = ledger.fund_account(session)
    totals: dict[date, list[int]] = {}
    for entry in session.scalars(select(LedgerEntry).where(or_(LedgerEntry.giver_id == fund.id,
                                                               LedgerEntry.receiver_id == fund.id))):
        slot = totals.setdefault(date(entry.at.year, entry.at.month, 1), [0, 0])
        came_in = entry.receiver_id == fund.id
        if entry.kind == ledger.REVERSAL:
            slot[1 if came_in else 0] -= entry.amount
        else:
            slot[0 if came_in else 1] += entry.amount
    return [ledger.MonthTotal(m, max(0, c), max(0, p)) for m, (c, p) in sorted(totals.items(), reverse=True)]


def test_each_ledger_page_sends_as_many_statements_for_thirty_more_neighbours_as_for_two(app, clock):
    kitchen = _hub(app)
    _neighbours_trade(app, 1, 2)
    young = _statements_per_page(app, kitchen)

    clock.advance(days=12)  # into December (roles last 28 days): the fund's months grow too
    _neighbours_trade(app, 3, 30)
    grown = _statements_per_page(app, kitchen)

    assert grown == young
    assert max(grown.values()) <= 25, grown  # a page's whole work, with the login and the menu's reads
    mine = text_of(_logged_in(app, "Wren").get("/ledger/mine"))
    assert "Neighbour32" in mine and "Neighbour3 offers 1 credits to Wren" in mine


def _logged_in(app, handle):
    client = app.test_client()
    login(client, handle)
    return client


def test_the_public_totals_and_the_fund_months_agree_with_the_entries_themselves(app, clock):
    _hub(app)
    _neighbours_trade(app, 1, 4)
    clock.advance(days=12)  # into December
    _neighbours_trade(app, 5, 5)  # a reversal in the second month, of a gift given in it

    with app.app_context():
        s = db.session
        count, moved = s.execute(select(func.count(LedgerEntry.id), func.sum(LedgerEntry.amount))).one()
        view = ledger.public_view(s)
        assert (view.entries, view.moved) == (count, moved) and count > 30
        assert ledger.audit_sums(s) == ledger.Sums(0, [])  # running totals included
        assert view.fund_months == _fund_months_entry_by_entry(s) and len(view.fund_months) == 2
        assert [m.month for m in view.fund_months] == [date(2026, 12, 1), date(2026, 11, 1)]
        # The members shown are those who chose it, by handle, in order.
        assert [h for h, _ in view.members] == sorted((f"Neighbour{i}" for i in range(2, 10, 2)), key=str.lower)
        # A month's kept total that no longer matches the fund's entries is caught by the audit.
        s.execute(update(ledger.LedgerFundMonth).values(payouts=ledger.LedgerFundMonth.payouts + 1))
        assert ledger.audit_sums(s).drifted == [ledger.fund_account(s).id]
        s.rollback()

    page = text_of(app.test_client().get("/ledger"))
    assert f"{count} entries so far, {moved} credits moved in all." in page
    assert re.search(r'href="/ledger/sheets/"', app.test_client().get("/ledger").get_data(as_text=True))
    assert "The ledger's printed sheets, with their hashes" in page


def test_an_accounts_entries_page_back_in_the_ledgers_order_as_one_read_of_both_sides(app, clock):
    _hub(app)
    _neighbours_trade(app, 1, 12)
    with app.app_context():
        s = db.session
        for account in (ledger.find_named(s, "kitchen"), ledger.member_account(s, people.get_member(s, "Wren")),
                        ledger.fund_account(s)):
            either = or_(LedgerEntry.giver_id == account.id, LedgerEntry.receiver_id == account.id)
            every = list(s.scalars(select(LedgerEntry.id).where(either).order_by(LedgerEntry.id.desc())))
            pages, before = [], None
            while True:
                page = ledger.entries_of(s, account, limit=5, before_id=before)
                if not page:
                    break
                pages += [e.id for e in page]
                before = page[-1].id
            assert pages == every and len(every) > 5  # more than one page each
