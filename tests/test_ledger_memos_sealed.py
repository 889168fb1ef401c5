"""A memo between two members is theirs alone, even on a seized card (issue 16).

Kestrel and Linnet, stewards with passwords, swap credits for jam and a
repair. The memo's words are sealed to their two own keys: both read them on
their ledger page, a host never does, and the database file holds no trace of
them; a correction's reason goes the same way. Wren has no password yet, so a
memo to or from Wren can be sealed only to the other side, and a memo
between two members who both lack one is not kept, and they are told. An
older hub's plain memos are sealed by the upgrade. Real SQLite files, the
real web app and the real migration; nothing is mocked.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from sqlalchemy import select

from server.domain import ledger, people
from server.domain.people import HOST, STEWARD
from server.extensions import db
from tests.helpers import FakeClock, login, make_app, make_member, prefixed, submit, text_of

JAM = "damson jam from Aunt Philippa's larder"
WHY = "Philippa's jar was cracked"
BOTH_NEW = "spokes from the Jubilee Road skip"


def _newest(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(model.id).order_by(model.id.desc()).limit(1))


def _card(app) -> bytes:
    """The database as whoever took the card reads it (the WAL folded in, as a clean stop leaves it)."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    path = app.instance_path + "/safebench.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return open(path, "rb").read()


def _pay(client, to: str, amount: str, memo: str):
    return submit(client, "/ledger/mine", prefixed("pay", {"giver": "0", "to": to, "amount": amount, "memo": memo}))


def test_a_memo_between_two_members_is_read_by_the_two_sides_alone(app):
    make_member(app, "Kestrel", STEWARD)
    make_member(app, "Linnet", STEWARD)
    make_member(app, "Osprey", HOST)
    kestrel, linnet, osprey = app.test_client(), app.test_client(), app.test_client()
    for client, handle in ((kestrel, "Kestrel"), (linnet, "Linnet"), (osprey, "Osprey")):
        login(client, handle)

    offered = _pay(kestrel, "Linnet", "2", JAM)
    assert "Offered: 2 credits to Linnet" in text_of(offered)
    # Linnet sees the offer's memo before she confirms, and both see it on the entry after.
    assert JAM in text_of(linnet.get("/ledger/mine"))
    submit(linnet, "/ledger/mine", {}, action=f"/ledger/transfers/{_newest(app, ledger.LedgerTransfer)}/confirm")
    assert JAM in text_of(kestrel.get("/ledger/mine"))
    assert JAM in text_of(linnet.get("/ledger/mine"))

    # Linnet gives the credits back, saying why: the number is process, the why is theirs.
    entry = _newest(app, ledger.LedgerEntry)
    submit(linnet, "/ledger/mine", {"why": WHY}, action=f"/ledger/entries/{entry}/reverse")
    for client in (kestrel, linnet):
        page = text_of(client.get("/ledger/mine"))
        assert f"reverses entry {entry}: {WHY}" in page

    # A host reads the ledger's pages, never a member's account: neither the memo nor the why.
    for page in ("/ledger", "/host/ledger", "/ledger/mine"):
        shown = text_of(osprey.get(page))
        assert JAM not in shown and WHY not in shown, page

    with app.app_context():
        stored = db.session.scalars(select(ledger.LedgerEntry)).all()
        assert [(e.memo, e.sealed_memo is not None) for e in stored] == [
            ("", True), (f"reverses entry {entry}", True)]
        assert ledger.audit_sums(db.session) == ledger.Sums(0, [])
    card = _card(app)
    assert JAM.encode() not in card and WHY.encode() not in card
    assert b"Philippa" not in card


def test_a_memo_is_sealed_to_whichever_side_has_a_key_and_never_kept_for_nobody(app):
    make_member(app, "Kestrel", STEWARD)
    make_member(app, "Wren", STEWARD, password=None)  # registered by a host on the web, no login yet
    make_member(app, "Dunlin", STEWARD, password=None)
    kestrel = app.test_client()
    login(kestrel, "Kestrel")

    _pay(kestrel, "Wren", "1", JAM)
    assert JAM in text_of(kestrel.get("/ledger/mine"))  # sealed to Kestrel's key, Wren has none to seal to

    # Wren and Dunlin swap by radio (no password, no key on either side): the credits move, the memo is not kept.
    with app.app_context():
        now = app.config["CLOCK"]()
        wren, dunlin = people.get_member(db.session, "Wren"), people.get_member(db.session, "Dunlin")
        reply = ledger.pay_by_radio(db.session, now, wren, "Dunlin", 2, BOTH_NEW)
        db.session.commit()
        assert "Memo not kept" in reply
        transfer = db.session.get(ledger.LedgerTransfer, _newest(app, ledger.LedgerTransfer))
        assert (transfer.memo, transfer.sealed_memo, transfer.amount) == ("", None, 2)
        assert transfer.receiver.member_id == dunlin.id
    assert BOTH_NEW.encode() not in _card(app)


def test_an_older_hubs_plain_memos_are_sealed_by_the_upgrade(tmp_path):
    """A hub that ran the ledger before memos were sealed: `safebench migrate` seals them to the two sides' keys."""
    clock = FakeClock(datetime(2026, 11, 21, 20, 0))
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache",
                   CACHE_NO_NULL_WARNING=True)
    make_member(app, "Kestrel", STEWARD)
    make_member(app, "Linnet", STEWARD)
    kestrel, linnet = app.test_client(), app.test_client()
    login(kestrel, "Kestrel")
    login(linnet, "Linnet")  # each login makes the member's own key
    _pay(kestrel, "Linnet", "3", "a placeholder memo")

    # As the ledger stored it before: the words plain, nothing sealed. Then back to that schema and up again.
    path = tmp_path / "instance" / "safebench.db"
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE ledger_transfer SET memo = ?, sealed_memo = NULL", (JAM,))
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "downgrade", "i17f0000fed"]).exit_code == 0
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT memo FROM ledger_transfer").fetchall() == [(JAM,)]
    upgraded = runner.invoke(args=["migrate"])
    assert upgraded.exit_code == 0, upgraded.output

    with sqlite3.connect(path) as connection:
        memo, sealed = connection.execute("SELECT memo, sealed_memo FROM ledger_transfer").fetchone()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert memo == "" and sealed.startswith("sealed1:own:") and sealed.count(" ") == 1  # one part for each side
    assert JAM in text_of(linnet.get("/ledger/mine")) and JAM in text_of(kestrel.get("/ledger/mine"))
    assert JAM.encode() not in path.read_bytes()
