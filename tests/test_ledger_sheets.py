"""The ledger on paper (issue 16): a host prints the month's sheet, the assembly photographs it and checks it.

October and November on a small hub: the kitchen feeds the patrol, members
trade, one member shows her balance and the others do not, a member gives to
the bail fund anonymously, the care ring pays bail for case C11, and in
November the patrol corrects an October entry. The real ``safebench
ledger-sheet`` prints each month (HTML, QR code as PNG, PDF and a picture of
the first page through Debian's chromium), zbar reads the code from the
picture, and ``safebench ledger-verify`` checks a hash, a photo, a saved
sheet and the chain.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from server.domain import ledger, ledger_sheets, people
from server.domain.people import CARE, HOST, STEWARD, Decision
from server.extensions import db
from tests.helpers import seat_role, text_of
from tests.processes import safebench
from tests.test_posters import (
    RENDER_TIMEOUT_S,
    a4_pages,
    decoded,
    need_chromium,
    page_text,
)

BENCH = {"SAFEBENCH_BENCH_URL": "http://safebench.lan:8080", "SAFEBENCH_TIMEZONE": "UTC",
         "SAFEBENCH_BENCH_NAME": "Linden Street bench"}
OCTOBER, NOVEMBER = datetime(2026, 10, 14, 18, 30), datetime(2026, 11, 9, 19, 0)


def _decision(now: datetime) -> Decision:
    return Decision(now.date(), "assembly at the library", "the kitchen and the patrol keep accounts")


@pytest.fixture
def hub(app, clock):
    """October and November of the ledger, as the story above tells them; the clock ends on 2 December."""
    clock.now = OCTOBER
    with app.app_context():
        s, m = db.session, {}
        for handle, role in (("Mara", HOST), ("Tomas", HOST), ("Rowan", STEWARD), ("Kestrel", STEWARD),
                             ("Wren", STEWARD), ("Linnet", STEWARD), ("Ash", CARE)):
            m[handle] = people.add_member(s, clock(), handle)
            seat_role(s, clock(), m[handle], role, term_days=120)
        accounts = {}
        for name, keeper in (("Kitchen", "Rowan"), ("Patrol", "Kestrel")):
            ask = ledger.open_account(s, clock(), name, soft_limit=20, hard_limit=50, keepers=[keeper],
                                      decision=_decision(clock()), by=m["Mara"])
            ledger.countersign(s, clock(), ask, by=m["Tomas"])
            accounts[name] = ask.account
        ask = ledger.open_account(s, clock(), "", kind=ledger.FUND, soft_limit=0, hard_limit=0, keepers=None,
                                  decision=_decision(clock()), by=m["Mara"])
        ledger.countersign(s, clock(), ask, by=m["Tomas"])
        fund = ask.account
        wren = ledger.account_for_member(s, clock(), m["Wren"])
        linnet = ledger.set_member_choices(s, clock(), m["Linnet"], earns_patrol_credit=False, balance_public=True)

        def pay(giver, receiver, amount, memo, by, confirmer, anonymous=False):
            offer = ledger.propose(s, clock(), giver=giver, receiver=receiver, amount=amount, memo=memo, by=by,
                                   anonymous=anonymous)
            entry = ledger.confirm(s, clock(), offer.transfer, by=confirmer).transfer.entry
            clock.advance(hours=5)
            return entry

        # October.
        bread = pay(accounts["Kitchen"], accounts["Patrol"], 3, "bread for the night", m["Rowan"], m["Kestrel"])
        pay(wren, accounts["Kitchen"], 2, "soup", m["Wren"], m["Rowan"])
        pay(linnet, wren, 4, "bike brakes fixed", m["Linnet"], m["Wren"])
        pay(wren, fund, 5, "", m["Wren"], m["Ash"], anonymous=True)
        pay(linnet, fund, 2, "contribution", m["Linnet"], m["Ash"])
        ledger.pay_out(s, clock(), amount=6, memo="bail C11", by=m["Ash"])
        # November: the patrol gives back October's bread (the kitchen meant the other crew), and more.
        clock.now = NOVEMBER
        ledger.reverse(s, clock(), bread, by=m["Kestrel"], why="meant for the bike workshop")
        clock.advance(hours=2)
        pay(accounts["Kitchen"], wren, 1, "washing up", m["Rowan"], m["Wren"])
        s.commit()
        assert ledger.audit_sums(s) == ledger.Sums(0, [])
    clock.now = datetime(2026, 12, 2, 9, 0)
    return app


def instance(app) -> Path:
    return Path(app.instance_path)


def print_sheet(app, tmp_path, month: str, folder: str):
    out = tmp_path / folder
    done = safebench(instance(app), "ledger-sheet", "--month", month, "--out", str(out), timeout=RENDER_TIMEOUT_S,
                     env=BENCH)
    assert done.returncode == 0, done.stderr
    return out, done


def recorded_hash(app, month: str) -> str:
    with app.app_context():
        return ledger_sheets.recorded(db.session, ledger_sheets.Month.parse(month)).hash


def verify(app, what: str):
    return safebench(instance(app), "ledger-verify", what, env=BENCH)


# -- printing, and a phone reading the sheet's code ------------------------------------


def test_a_host_prints_october_and_the_photo_of_its_code_gives_the_recorded_hash(hub, tmp_path):
    need_chromium()
    out, done = print_sheet(hub, tmp_path, "2026-10", "print")
    october = recorded_hash(hub, "2026-10")
    assert f"Its hash: {october}" in done.stdout
    assert "Recorded: printing 2026-10 again gives this same hash." in done.stdout

    # The code read from the picture of the whole first page, as a phone at the assembly reads it.
    payload = decoded(out / "ledger-2026-10.png").decode("utf-8")
    assert decoded(out / "ledger-2026-10-qr.png").decode("utf-8") == payload
    address = urlsplit(payload)
    assert f"{address.scheme}://{address.netloc}{address.path}" == "http://safebench.lan:8080/ledger/sheets/check"
    query = {key: values[0] for key, values in parse_qs(address.query).items()}
    assert query == {"month": "2026-10", "hash": october, "previous": ledger_sheets.GENESIS}
    assert a4_pages(out / "ledger-2026-10.pdf") == 1

    text = page_text((out / "ledger-2026-10.html").read_text(encoding="utf-8"))
    assert "The ledger: 2026-10" in text
    assert ledger_sheets.fingerprint(october) in text
    assert "Previous sheet: none, this is the first sheet." in text
    # Six entries: bread, soup, brakes, the anonymous gift, Linnet's contribution, the payout (the brakes' memo,
    # between two members, stays theirs).
    assert "(6 entries)" in text and "bread for the night" in text and "bike brakes fixed" not in text

    # The photo checks out at the Pi, as the hash typed from the paper does.
    checked = verify(hub, str(out / "ledger-2026-10.png"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "The sheet for 2026-10 is the hub's, unchanged, and chains back to the first sheet." in checked.stdout
    typed = verify(hub, ledger_sheets.fingerprint(october))
    assert typed.returncode == 0 and "ok   2026-10 is the first sheet: the chain starts there." in typed.stdout


def test_the_sheet_never_shows_a_private_member_an_anonymous_giver_or_whom_the_bail_was_for(hub, tmp_path):
    out = tmp_path / "print"
    done = safebench(instance(hub), "ledger-sheet", "--month", "2026-10", "--out", str(out), env={**BENCH,
                     "PATH": "/nonexistent"})  # no chromium: the HTML is the sheet
    assert done.returncode == 0, done.stderr
    html = (out / "ledger-2026-10.html").read_text(encoding="utf-8")
    rows = [page_text("<body>" + row) for row in re.findall(r'<tr class="entry">(.*?)</tr>', html, re.DOTALL)]
    assert len(rows) == 6
    # Wren keeps her account to herself: "M", like every member, so no line ties to her others; never her handle.
    assert "Wren" not in html and "Rowan" not in html and "Kestrel" not in html and "Ash" not in html
    assert " Kitchen Patrol 3 bread for the night " in f" {rows[0]} "
    assert " M Kitchen 2 soup " in f" {rows[1]} "
    # Linnet chose to show her balance: her handle beside her label. Their memo between two members stays theirs.
    assert re.search(r" M \(Linnet\) M 4 [0-9a-f]{8}$", rows[2].strip()), rows[2]
    assert "bike brakes" not in html
    # The anonymous gift names nobody.
    assert " anonymous Bail and legal fund 5 " in f" {rows[3]} "
    assert " M (Linnet) Bail and legal fund 2 contribution " in f" {rows[4]} "
    # The payout: to the world outside the ledger, with its case code and nothing else.
    assert re.search(r" Bail and legal fund Outside the ledger 6 C11 [0-9a-f]{8}$", rows[5].strip())
    assert "bail C11" not in html


# -- the chain across months, printing again, corrections --------------------------------------


def test_november_chains_from_october_and_printing_again_gives_the_same_hash(hub, tmp_path):
    out, _ = print_sheet(hub, tmp_path, "2026-10", "october")
    october = recorded_hash(hub, "2026-10")
    out, done = print_sheet(hub, tmp_path, "2026-11", "november")
    november = recorded_hash(hub, "2026-11")
    assert f"The previous sheet's hash: {october}" in done.stdout
    text = page_text((out / "ledger-2026-11.html").read_text(encoding="utf-8"))
    assert ledger_sheets.fingerprint(october) in text  # last month's hash, to compare with last month's paper
    # October's correction landed on November's sheet; October's sheet is as it was.
    assert "reverses entry 1: meant for the bike workshop" in text

    again = safebench(instance(hub), "ledger-sheet", "--month", "2026-10", "--out", str(tmp_path / "again"),
                      env={**BENCH, "PATH": "/nonexistent"})
    assert again.returncode == 0, again.stderr
    assert f"Its hash: {october}" in again.stdout and "Printed again: the ledger still gives the hash" in again.stdout
    assert recorded_hash(hub, "2026-10") == october
    first = re.sub(r"Printed [^.]*\.", "", (tmp_path / "october" / "ledger-2026-10.html").read_text("utf-8"))
    second = re.sub(r"Printed [^.]*\.", "", (tmp_path / "again" / "ledger-2026-10.html").read_text("utf-8"))
    assert first == second  # the same sheet, line for line

    chain = verify(hub, november)
    assert chain.returncode == 0, chain.stdout
    assert f"ok   2026-11 chains from the sheet for 2026-10 ({ledger_sheets.fingerprint(october)})." in chain.stdout
    assert "ok   2026-10: the ledger's entries still give this hash." in chain.stdout


def test_a_month_is_printed_in_order_and_only_once_it_has_ended(hub, tmp_path):
    skipped = safebench(instance(hub), "ledger-sheet", "--month", "2026-11", "--out", str(tmp_path), env=BENCH)
    assert skipped.returncode == 1
    assert "Print the sheet for 2026-10 first: each sheet carries the hash of the month before." in skipped.stderr
    bad = safebench(instance(hub), "ledger-sheet", "--month", "November", env=BENCH)
    assert bad.returncode == 2 and "'November' is not a month: write it as YYYY-MM, e.g. 2026-11." in bad.stderr
    with hub.app_context():
        assert ledger_sheets.every_sheet(db.session) == []


def test_without_a_month_the_sheet_is_the_last_closed_month_by_the_hubs_clock(hub, clock, tmp_path):
    clock.now = datetime(2026, 11, 3, 8, 0)  # early November: October is the month closed
    done = hub.test_cli_runner().invoke(args=["ledger-sheet", "--out", str(tmp_path)], env={"PATH": "/nonexistent"})
    assert done.exit_code == 0, done.output
    assert "The sheet for 2026-10: 6 entries." in done.output
    with hub.app_context():
        sheet = ledger_sheets.recorded(db.session, ledger_sheets.Month(2026, 10))
        assert sheet.printed_at == clock.now and sheet.previous_hash == ledger_sheets.GENESIS
    # November has not ended by this clock: nothing recorded, and said why.
    early = hub.test_cli_runner().invoke(args=["ledger-sheet", "--month", "2026-11", "--out", str(tmp_path)])
    assert early.exit_code == 1 and "2026-11 has not ended yet" in early.output


# -- tampering ------------------------------------------------------------------------------


def test_an_amount_changed_in_the_database_after_printing_is_found(hub, tmp_path):
    print_sheet(hub, tmp_path, "2026-10", "october")
    print_sheet(hub, tmp_path, "2026-11", "november")
    november = recorded_hash(hub, "2026-11")
    # Someone with the SD card makes October's soup cost 20, behind the hub's back.
    with sqlite3.connect(instance(hub) / "safebench.db") as raw:
        raw.execute("UPDATE ledger_entry SET amount = 20 WHERE memo = 'soup'")

    checked = verify(hub, november)
    assert checked.returncode == 1
    assert "ok   2026-11: the ledger's entries still give this hash." in checked.stdout
    assert "NO   2026-10: the ledger's entries no longer give the printed hash" in checked.stdout
    assert "This sheet does not match the hub's record: tell the assembly." in checked.stdout
    reprint = safebench(instance(hub), "ledger-sheet", "--month", "2026-10", "--out", str(tmp_path / "again"),
                        env=BENCH)
    assert reprint.returncode == 1
    assert "The ledger's entries for 2026-10 no longer give the hash printed on" in reprint.stderr
    assert not (tmp_path / "again").exists()


def test_an_amount_changed_on_a_saved_sheet_or_a_hash_not_the_hubs_is_found(hub, tmp_path):
    out, _ = print_sheet(hub, tmp_path, "2026-10", "october")
    page = out / "ledger-2026-10.html"
    whole = verify(hub, str(page))
    assert whole.returncode == 0 and "ok   ledger-2026-10.html: its 6 lines give the hash it prints." in whole.stdout

    forged = tmp_path / "forged.html"
    forged.write_text(page.read_text(encoding="utf-8").replace('<td class="f-amount">2</td>',
                                                                '<td class="f-amount">12</td>', 1), encoding="utf-8")
    caught = verify(hub, str(forged))
    assert caught.returncode == 1
    assert "NO   forged.html: its lines do not give the hash it prints: the sheet's text was changed." in caught.stdout

    stranger = verify(hub, "ab" * 32)
    assert stranger.returncode == 1 and "No sheet with this hash was printed by this hub." in stranger.stdout
    nonsense = verify(hub, "not a hash")
    assert nonsense.returncode == 1 and "A sheet's hash is 64 characters" in nonsense.stderr
    assert "Traceback" not in nonsense.stderr


def test_a_photo_without_a_code_or_without_zbar_gets_a_plain_message(hub, tmp_path):
    blank = tmp_path / "blank.png"
    from firmware_config.qr import qr_png

    blank.write_bytes(qr_png("WIFI:T:nopass;S:SafeBench;;"))  # a code, but the bench WiFi's, not a sheet's
    wrong = verify(hub, str(blank))
    assert wrong.returncode == 1 and "The QR code in blank.png is not a ledger sheet's." in wrong.stderr
    no_zbar = safebench(instance(hub), "ledger-verify", str(blank), env={**BENCH, "PATH": "/nonexistent"})
    assert no_zbar.returncode == 1
    assert "Reading a photo needs zbar (sudo apt-get install zbar-tools)" in no_zbar.stderr


# -- the page for the assembly -------------------------------------------------------------------


def test_the_sheets_page_lists_each_sheet_and_checks_the_code_a_phone_opens(hub, client, tmp_path):
    need_chromium()
    out, _ = print_sheet(hub, tmp_path, "2026-10", "october")
    october = recorded_hash(hub, "2026-10")
    listing = text_of(client.get("/ledger/sheets/"))
    assert "2026-10" in listing and ledger_sheets.fingerprint(october) in listing
    assert "none: the first sheet" in listing

    # The phone opens the address in the code it read from the sheet.
    payload = decoded(out / "ledger-2026-10.png").decode("utf-8")
    opened = client.get(payload.replace("http://safebench.lan:8080", ""))
    assert opened.status_code == 200
    page = text_of(opened)
    assert "This is the hub's sheet for 2026-10, unchanged, and it chains from the month before." in page
    assert "2026-10: the ledger's entries still give this hash." in page

    wrong = text_of(client.get("/ledger/sheets/check", query_string={"hash": "cd" * 32, "month": "2026-10"}))
    assert "This is not the hub's sheet for 2026-10" in wrong
    typo = client.get("/ledger/sheets/check", query_string={"hash": "12345"})
    assert typo.status_code == 400 and "A sheet's hash is 64 characters" in text_of(typo)


def test_a_recorded_sheet_cannot_be_rewritten_by_the_code_either(hub, tmp_path):
    print_sheet(hub, tmp_path, "2026-10", "october")
    with hub.app_context():
        sheet = ledger_sheets.recorded(db.session, ledger_sheets.Month(2026, 10))
        sheet.hash = "0" * 64
        with pytest.raises(ledger_sheets.SheetIsRecorded):
            db.session.flush()
        db.session.rollback()
        db.session.delete(ledger_sheets.recorded(db.session, ledger_sheets.Month(2026, 10)))
        with pytest.raises(ledger_sheets.SheetIsRecorded):
            db.session.flush()
        db.session.rollback()
