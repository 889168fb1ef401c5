"""A seized hub reveals nothing: what people wrote about people is sealed at rest (issue 13).

The stories: a hub seeded through every door (tests/test_privacy.py's seed)
is stopped and read as raw bytes by whoever took its card; started again,
it takes reports with nobody logged in; a mediator's login opens mediation
and nothing else; the lock button, the idle lock and a duress login close
every vault at once; a reader who lost their password gets their keys again
from another reader. Nothing here is mocked: real SQLite files, the real web
app, the real bridge's inbound handler, the real CLI.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from server.domain import mediation, people, power_record, sealing
from server.domain.sealing import MemberKey, VaultGrant, VaultKey
from server.extensions import db
from tests.helpers import (
    FakeClock,
    csrf_token,
    login,
    make_app,
    make_member,
    submit,
    text_of,
    unsealed,
)
from tests.postgres import sqlite_only
from tests.test_privacy import (
    AID_EMAIL,
    AID_PHONE,
    AID_POSTER,
    AID_REPLY,
    AID_REPLY_PHONE,
    ARREST_SPOT,
    ARREST_SPOT_TOO,
    ARRESTED,
    ARRESTED_TOO,
    CHARGES,
    CIRCLE_OUTCOME,
    CLEARED_WITH,
    COMPLAINANT,
    COMPLAINANT_PHONE,
    COMPLAINT_STORY,
    DURESS,
    FAMILY,
    FAMILY_ADDRESS,
    KESTREL_NODE,
    LAWYER,
    LAWYER_PHONE,
    LOGGED_AT,
    LOGGED_BY_HAND,
    MEDIATOR_NOTE,
    OFFER_MEMO,
    OTHER_PARTY,
    PARTY,
    PARTY_EMAIL,
    PARTY_PHONE,
    PAYOUT_NAME,
    RADIOED_SPOT,
    RESOLVED_PHONE,
    RESOLVED_WITH,
    SEEN,
    SEEN_AT,
    SHOUTED_AT,
    SHOUTER,
    SIGNER,
    STATION_NOTE,
    STORY,
    TASK_ACCOUNT,
    TASK_RESULT,
    TRANSFER_MEMO,
    WITNESS_EMAIL,
    WITNESS_PHONE,
    Handhelds,
    seed,
)

# What people wrote about people: arrested people and witnesses, a conflict and its parties,
# a complaint, an aid poster's contact, a signer's mark, what stewards wrote, a duress word.
SEALED_MARKERS = [ARRESTED, ARRESTED_TOO, CHARGES, WITNESS_PHONE, WITNESS_EMAIL, LAWYER, LAWYER_PHONE, FAMILY,
                  FAMILY_ADDRESS, STATION_NOTE, PARTY, OTHER_PARTY, STORY, PARTY_PHONE, PARTY_EMAIL, MEDIATOR_NOTE,
                  COMPLAINT_STORY, COMPLAINANT, COMPLAINANT_PHONE, CIRCLE_OUTCOME, AID_POSTER, AID_PHONE, AID_EMAIL,
                  AID_REPLY, AID_REPLY_PHONE,
                  SIGNER, SEEN, SHOUTER, LOGGED_BY_HAND, CLEARED_WITH, RESOLVED_WITH, RESOLVED_PHONE, DURESS,
                  # Places as typed: an arrest's, seen from the bench or radioed; a place in a note or beside it.
                  ARREST_SPOT, ARREST_SPOT_TOO, RADIOED_SPOT, SEEN_AT, SHOUTED_AT, LOGGED_AT,
                  # The ledger's and the task map's words (issue 16): memos between two members (sealed to
                  # their own keys), a payout memo that named someone (refused), a task's result and its
                  # after-action account. Balances and who gave to whom stay readable (ledger.py says why).
                  TRANSFER_MEMO, OFFER_MEMO, PAYOUT_NAME, TASK_RESULT, TASK_ACCOUNT]


def hub_config(**extra):
    return dict(RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache", CACHE_NO_NULL_WARNING=True, **extra)


def raw_bytes_under(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` as whoever took the card reads it: bytes, decoded loosely."""
    return {str(path.relative_to(folder)): path.read_bytes().decode("latin-1")
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def seized(tmp_path):
    """A hub seeded through every door, backed up, then stopped: its instance folder and its clock."""
    from tests.test_privacy import DURESS_WORD, HOTLINE

    clock = FakeClock(datetime(2026, 11, 21, 20, 0))
    instance = tmp_path / "instance"
    app = make_app(instance, clock, **hub_config(LEGAL_HOTLINE=HOTLINE, DURESS_WORD=DURESS_WORD,
                                                 STREAM_HOLD_S=0.05))
    hub = seed(app, clock, tmp_path / "ledger-sheet")
    backup = app.test_cli_runner().invoke(args=["backup"])
    assert backup.exit_code == 0, backup.output
    assert "sealed" in backup.output
    with app.app_context():
        waiting = sealing.waiting_vaults(db.session)
        db.session.remove()
        db.engine.dispose()
    return instance, clock, waiting, hub.aid_receipt


@sqlite_only
def test_whoever_takes_the_card_reads_no_word_anyone_wrote_about_people(seized):
    instance, _clock, waiting, aid_receipt = seized
    # Every vault's key went to a reader; none waits on the card in the clear.
    assert waiting == []
    files = raw_bytes_under(instance)
    assert any(name.startswith("backups/") for name in files), "the backup was taken"
    assert "safebench.db" in files
    leaks = [f"{marker.text!r} in {name}" for name, data in files.items() for marker in SEALED_MARKERS
             if marker.text in data]
    assert leaks == []
    # Nor the aid poster's receipt code, which is the key to what helpers told them.
    assert [name for name, data in files.items() if aid_receipt in data] == []
    # The card holds keys only wrapped: no vault's private half, no member's, in the clear.
    import sqlite3

    with sqlite3.connect(instance / "safebench.db") as connection:
        assert connection.execute("SELECT count(*) FROM vault_key WHERE pending_private IS NOT NULL").fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM vault_grant").fetchone()[0] >= 6


def test_started_again_with_nobody_logged_in_the_hub_takes_reports_and_a_mediator_opens_only_mediation(seized):
    instance, clock, _waiting, _aid_receipt = seized
    app = make_app(instance, clock, **hub_config())
    neighbour = app.test_client()
    assert neighbour.get("/").status_code == 200
    assert neighbour.get("/log").status_code == 200
    receipt = submit(neighbour, "/mediation/new", {"what": "The dog next door barks all night, Ottilie says",
                                                   "urgency": "soon", "contact": "ring 0176 5550999"})
    assert receipt.request.path == "/mediation/receipt"
    radio = Handhelds(app)
    radio.packet_ids = itertools.count(90_000)  # packets the seeding's handhelds never sent
    assert radio.send(KESTREL_NODE, "CI all quiet at the kiosk, Bertram says hi") == "check_in"
    files = raw_bytes_under(instance)
    assert not any("Ottilie" in data or "Bertram" in data for data in files.values())

    mediator = app.test_client()
    assert login(mediator, "Plover").request.path != "/login"
    with app.app_context():
        newest = db.session.scalar(select(mediation.MediationRequest.id).order_by(mediation.MediationRequest.id.desc()))
    assert "Ottilie" in text_of(mediator.get(f"/host/mediation/{newest}"))
    assert PARTY.text in text_of(mediator.get(f"/host/mediation/{newest - 1}"))
    ring = app.extensions["safebench.keyring"]
    (entry,) = ring._entries.values()
    assert set(entry.vaults) == {sealing.MEDIATION}
    assert mediator.get("/cases").status_code == 403


def test_the_lock_button_closes_every_vault_for_every_reader_in_the_same_second(app, client, clock):
    make_member(app, "Heron", people.DISPATCH)
    make_member(app, "Plover", people.MEDIATOR)
    mediator = app.test_client()
    assert login(client, "Heron").request.path != "/login"
    assert login(mediator, "Plover").request.path != "/login"
    submit(app.test_client(), "/mediation/new", {"what": "Shouting over the parking, Hildegard", "urgency": "soon"})
    assert "Hildegard" in text_of(mediator.get("/host/mediation/1"))

    locked = submit(client, "/host/", {}, action="/lock")
    assert "The hub is locked" in text_of(locked)
    assert app.extensions["safebench.keyring"].count() == 0
    # Ending colleagues' logins is a use of power: the record says who did it.
    with app.app_context():
        (use,) = power_record.entries(db.session, limit=1)
        assert (use.action, use.actor, use.role) == ("hub-locked", "Heron", people.DISPATCH)
    for browser in (client, mediator):
        assert browser.get("/host/mediation/1").location.startswith("/login")


def test_safebench_lock_from_a_terminal_ends_every_login_in_the_web_process(app, client, runner):
    make_member(app, "Heron", people.DISPATCH)
    assert login(client, "Heron").request.path != "/login"
    result = runner.invoke(args=["lock"])
    assert result.exit_code == 0, result.output
    assert "The hub is locked" in result.output
    with app.app_context():
        (use,) = power_record.entries(db.session, limit=1)
        assert (use.action, use.actor) == ("hub-locked", power_record.SYSTEM)
    assert client.get("/cases").location.startswith("/login")


def test_an_idle_login_closes_by_itself_and_no_login_outlives_its_lifetime(app, client, clock):
    make_member(app, "Heron", people.DISPATCH)
    assert login(client, "Heron").request.path != "/login"
    clock.advance(minutes=19)
    assert client.get("/cases").status_code == 200
    clock.advance(minutes=21)
    assert client.get("/cases").location.startswith("/login")
    # Busy all night long: still, 12 hours after the login it ends.
    assert login(client, "Heron").request.path != "/login"
    for _ in range(12 * 4 + 1):
        clock.advance(minutes=15)
        if client.get("/cases").status_code != 200:
            break
    assert client.get("/cases").location.startswith("/login")


def test_a_duress_password_opens_an_empty_dashboard_and_locks_the_hub(app, client, clock):
    make_member(app, "Heron", people.DISPATCH)
    make_member(app, "Plover", people.MEDIATOR)
    assert login(client, "Heron").request.path != "/login"
    page = submit(client, "/duress", {"password": "correct horse battery", "duress_password": "blue bird singing",
                                      "repeat": "blue bird singing"})
    assert "duress password is set" in text_of(page)
    mediator = app.test_client()
    assert login(mediator, "Plover").request.path != "/login"

    forced = app.test_client()
    dashboard = login(forced, "Heron", "blue bird singing")
    assert dashboard.request.path == "/host/"
    shown = text_of(dashboard)
    assert "Logged in as Heron" in shown and "Dispatch" in shown
    # Looks like a login; opens nothing else.
    assert forced.get("/cases").location.endswith("/host/")
    # Everyone else is logged out: every vault closed.
    assert mediator.get("/host/mediation").location.startswith("/login")
    assert client.get("/cases").location.startswith("/login")
    # And nothing in the record of power used gives the member away.
    with app.app_context():
        assert [use.action for use in power_record.entries(db.session, limit=10)].count("hub-locked") == 0


def test_a_lock_holds_in_the_web_process_even_when_its_lock_file_cannot_be_written(app, client):
    make_member(app, "Heron", people.DISPATCH)
    lock_file = Path(app.config["INSTANCE"]) / "locked"
    lock_file.mkdir()  # a path that cannot be written as a file, as on a card gone read-only
    assert login(client, "Heron").request.path != "/login"
    locked = submit(client, "/host/", {}, action="/lock")
    assert locked.status_code == 200 and "The hub is locked" in text_of(locked)
    assert client.get("/cases").location.startswith("/login")


def test_a_reader_who_lost_their_password_gets_the_keys_again_from_another_reader(app, client, clock):
    make_member(app, "Plover", people.MEDIATOR)
    make_member(app, "Pipit", people.MEDIATOR)
    submit(app.test_client(), "/mediation/new", {"what": "A fence dispute, Ermintrude says", "urgency": "soon"})
    assert login(client, "Plover").request.path != "/login"  # the vault's key goes to both mediators
    client.post("/logout", data={"csrf_token": csrf_token(client, "/host/")})
    with app.app_context():
        pipit = people.get_member(db.session, "Pipit")
        assert db.session.get(VaultGrant, (sealing.MEDIATION, pipit.id)) is not None
        people.set_password(pipit, "a brand new password", clock())  # as a host does after a lost one
        db.session.commit()
        assert db.session.get(VaultGrant, (sealing.MEDIATION, pipit.id)) is None
    other = app.test_client()
    assert login(other, "Pipit", "a brand new password").request.path != "/login"
    assert "sealed" in text_of(other.get("/host/mediation/1"))  # nobody who holds the key has logged in since
    assert login(app.test_client(), "Plover").request.path != "/login"  # Plover's login gives it on,
    clock.advance(seconds=10)
    assert "Ermintrude" in text_of(other.get("/host/mediation/1"))  # and Pipit's next page opens it


def test_plain_text_never_reaches_a_sealed_column_even_by_a_bulk_update(app):
    from sqlalchemy import update
    from sqlalchemy.exc import StatementError

    with app.app_context():
        mediation.submit_request(db.session, app.config["CLOCK"](), what="Quarrel about bins, Wilhelmina",
                                 urgency="soon")
        db.session.commit()
        stored = db.session.scalar(select(mediation.MediationRequest.what))
        assert sealing.is_sealed(stored) and "Wilhelmina" not in stored
        assert unsealed(app, stored) == "Quarrel about bins, Wilhelmina"
        with pytest.raises(StatementError):
            db.session.execute(update(mediation.MediationRequest).values(what="Wilhelmina again"))
        db.session.rollback()


def test_a_vault_waits_on_the_card_only_until_its_first_reader_has_a_key(app, clock):
    from server.scheduler import run_all_once

    submit(app.test_client(), "/mediation/new", {"what": "Noise from the yard, Reinhold", "urgency": "soon"})
    with app.app_context():
        assert sealing.waiting_vaults(db.session) == [sealing.MEDIATION]
    make_member(app, "Plover", people.MEDIATOR)
    run_all_once(app)
    with app.app_context():
        assert sealing.waiting_vaults(db.session) == []
        assert db.session.scalars(select(MemberKey)).all()
        assert db.session.get(VaultKey, sealing.MEDIATION).pending_private is None
    clock.advance(minutes=1)
    browser = app.test_client()
    assert login(browser, "Plover").request.path != "/login"
    assert "Reinhold" in text_of(browser.get("/host/mediation/1"))


def test_an_upgraded_hub_seals_what_its_card_already_held_and_loses_no_note(tmp_path, clock):
    """A hub from before sealed storage: its plain words are sealed by the migration, nothing is lost."""
    import sqlite3

    from flask_migrate import upgrade

    from server import create_app

    instance = tmp_path / "instance"
    app = create_app({"INSTANCE": instance, "DATABASE_URL": f"sqlite:///{instance / 'safebench.db'}",
                      "TESTING": True, "CLOCK": clock, **hub_config()})
    with app.app_context():
        upgrade(revision="e12a0000aud1")
    with sqlite3.connect(instance / "safebench.db") as old:
        old.execute("PRAGMA foreign_keys=ON")
        old.execute("INSERT INTO mediation_request (id, receipt_code, what, \"where\", who, urgency, contact, status, "
                    "created_at, updated_at) VALUES (1, 'M-AAAA-BBBB', 'Ignatz and the hedge', 'Linden Row 5', "
                    "'Ignatz', 'soon', '0176 5550111', 'new', '2026-11-20 10:00:00', '2026-11-20 10:00:00')")
        old.execute("INSERT INTO member (id, handle, handle_key, session_epoch, created_at) "
                    "VALUES (1, 'Plover', 'plover', 0, '2026-11-01 10:00:00')")
        old.execute("INSERT INTO mediation_note (id, request_id, author_id, text, created_at) "
                    "VALUES (1, 1, 1, 'Spoke to Ignatz', '2026-11-20 11:00:00')")
    with app.app_context():
        upgrade()
        db.session.remove()
        db.engine.dispose()
    raw = (instance / "safebench.db").read_bytes()
    assert b"Ignatz" not in raw and b"5550111" not in raw and b"Linden Row" not in raw
    with sqlite3.connect(instance / "safebench.db") as upgraded:
        assert upgraded.execute("SELECT count(*) FROM mediation_note").fetchone() == (1,)
        assert upgraded.execute("SELECT vault FROM vault_key WHERE pending_private IS NOT NULL").fetchall() == [
            ("mediation",)]
    with app.app_context():
        request = db.session.get(mediation.MediationRequest, 1)
        assert unsealed(app, request.what) == "Ignatz and the hedge"
        assert unsealed(app, request.contact) == "0176 5550111"
        assert unsealed(app, request.notes[0].text) == "Spoke to Ignatz"


def test_a_lock_from_the_terminal_ends_an_open_live_stream_too(app, client, runner):
    from server.web.keyring import lock_from_outside
    from tests.test_live_log import ended_with, meanwhile, watch

    app.config["STREAM_HOLD_S"] = 30
    make_member(app, "Kestrel", people.HOST)
    assert login(client, "Kestrel").request.path != "/login"
    locking = meanwhile(0.6, lambda: lock_from_outside(Path(app.config["INSTANCE"])))
    started = time.monotonic()
    body = watch(client)
    locking.join()
    assert time.monotonic() - started < 10
    assert "The hub was locked" in ended_with(body)


def test_a_reader_whose_role_lapsed_loses_the_key_unless_they_hold_the_last_one(app, client, clock):
    from server.scheduler import run_all_once

    make_member(app, "Plover", people.MEDIATOR, term_days=1)
    make_member(app, "Pipit", people.MEDIATOR, term_days=3)
    submit(app.test_client(), "/mediation/new", {"what": "Bins again, Ferdinand says", "urgency": "soon"})
    run_all_once(app)  # the vault's key goes to both mediators

    def holders() -> set[str]:
        with app.app_context():
            grants = db.session.scalars(select(VaultGrant).where(VaultGrant.vault == sealing.MEDIATION)).all()
            return {db.session.get(people.Member, grant.member_id).handle for grant in grants}

    assert holders() == {"Plover", "Pipit"}
    clock.advance(days=2)  # Plover's term ended: the key is taken from them, Pipit still holds it
    run_all_once(app)
    assert holders() == {"Pipit"}
    clock.advance(days=2)  # Pipit's too: nobody reads mediation now, and the last holder keeps the key
    run_all_once(app)
    assert holders() == {"Pipit"}
