"""Stories of the record of every power used: withdrawals leave a gap with their reason, and nobody rewrites history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.domain import patrol, people, power_record
from server.domain.people import ACCOUNTABILITY, CAPTAIN, HOST, STEWARD
from server.extensions import db
from tests.helpers import chose_to_show_handle, login, make_member, submit, text_of

REASON = "it showed where Wren lives"


def _incident(app, handle: str = "Wren", what: str = "Shouting at the fruit stall", place: str = "Market square") -> int:
    with app.app_context():
        member = people.get_member(db.session, handle)
        entry = patrol.record_incident(db.session, app.config["CLOCK"](), member, patrol.SOURCE_RADIO, what, place)
        db.session.commit()
        return entry.id


def _uses(app) -> list[power_record.PowerUse]:
    with app.app_context():
        uses = power_record.entries(db.session)
        db.session.expunge_all()
        return uses


def _a_captain_and_a_logged_incident(app, client) -> int:
    make_member(app, "Kestrel", HOST)
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    chose_to_show_handle(app, "Wren")  # so the public log names her, and a gap visibly takes her entry's place
    make_member(app, "Heron", CAPTAIN)
    with app.app_context():
        patrol.add_area(db.session, "Market")
        db.session.commit()
    entry = _incident(app)
    assert "Incident logged Wren Market" in text_of(client.get("/log"))
    login(client, "Heron")
    return entry


def test_a_captain_withdraws_an_entry_with_a_reason_and_the_public_log_shows_the_gap(app, client, clock):
    entry = _a_captain_and_a_logged_incident(app, client)

    form = text_of(client.get("/host/log"))
    assert "The public log shows it in the entry's place, with your role, never your handle" in form
    withdrawn = submit(client, "/host/log", {f"withdraw-{entry}-reason": REASON},
                       action=f"/host/log/{entry}/withdraw")

    assert withdrawn.status_code == 200
    assert "The entry is withdrawn: the public log shows a gap" in text_of(withdrawn)
    neighbour = app.test_client()
    for page in ("/log", "/"):
        public = text_of(neighbour.get(page))
        assert f"An entry was withdrawn by a patrol captain: {REASON}" in public, page
        assert "Incident logged" not in public and "Heron" not in public and "Market" not in public, page
    # The full log keeps the entry, who withdrew it by role, and why.
    full = text_of(client.get("/host/log"))
    assert "Shouting at the fruit stall" in full
    assert f"Withdrawn from the public log by a patrol captain" in full and REASON in full
    # The record keeps who, by handle, with the role they used.
    [use] = _uses(app)
    assert (use.actor, use.role, use.action, use.reason) == ("Heron", CAPTAIN, "log-withdrawn", REASON)
    assert use.subject == f"log entry {entry} (incident logged)"
    assert use.at == clock.now


def test_a_withdrawal_without_a_reason_is_refused_next_to_the_field_and_changes_nothing(app, client):
    entry = _a_captain_and_a_logged_incident(app, client)

    for reason in ("", "   ", "\u200b"):
        refused = submit(client, "/host/log", {f"withdraw-{entry}-reason": reason},
                         action=f"/host/log/{entry}/withdraw")
        assert refused.status_code == 400
        assert "Please say why: a withdrawal needs a reason, and the public log shows it" in text_of(refused)
        assert "<details open>" in refused.get_data(as_text=True)  # the folded form shows its error
    missing = submit(client, "/host/log", {}, action=f"/host/log/{entry}/withdraw")
    assert missing.status_code == 400
    contact = submit(client, "/host/log", {f"withdraw-{entry}-reason": "call 0171 2345678"},
                     action=f"/host/log/{entry}/withdraw")
    assert contact.status_code == 400 and "leave phone numbers" in text_of(contact)

    assert "Incident logged Wren Market" in text_of(client.get("/log"))
    assert _uses(app) == []


def test_putting_an_entry_back_closes_the_gap_and_is_recorded_too(app, client, clock):
    entry = _a_captain_and_a_logged_incident(app, client)
    submit(client, "/host/log", {f"withdraw-{entry}-reason": REASON}, action=f"/host/log/{entry}/withdraw")
    clock.advance(minutes=5)

    back = submit(client, "/host/log", {}, action=f"/host/log/{entry}/publish")

    assert "The entry is back on the public log" in text_of(back)
    public = text_of(client.get("/log"))
    assert "Incident logged Wren Market" in public and "withdrawn" not in public.split("Public patrol log")[-1].lower()
    withdrawn_use, put_back = reversed(_uses(app))
    assert withdrawn_use.action == "log-withdrawn"
    assert (put_back.action, put_back.actor, put_back.role) == ("log-republished", "Heron", CAPTAIN)
    assert put_back.reason
    # Putting back twice is refused, not recorded twice.
    again = submit(client, "/host/log", {}, action=f"/host/log/{entry}/publish")
    assert "on the public log already" in text_of(again)
    assert len(_uses(app)) == 2


def test_an_entry_never_on_the_public_log_cannot_be_withdrawn(app, client):
    make_member(app, "Kestrel", HOST)
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    login(client, "Kestrel")
    with app.app_context():
        member = people.get_member(db.session, "Wren")
        sos = patrol.log_entry(db.session, app.config["CLOCK"](), "sos", member, patrol.SOURCE_RADIO,
                               place="behind the station", public=False)
        db.session.commit()
        sos_id = sos.id

    assert "Never on the public log" in text_of(client.get("/host/log"))
    response = submit(client, "/host/log", {f"withdraw-{sos_id}-reason": "no"}, action=f"/host/log/{sos_id}/withdraw")
    assert "That entry is never on the public log: there is nothing to withdraw" in text_of(response)
    page = client.get("/host/log").get_data(as_text=True)
    assert f"/host/log/{sos_id}/withdraw" not in page and f"/host/log/{sos_id}/publish" not in page
    assert _uses(app) == []


def test_the_record_page_is_for_hosts_and_the_accountability_circle_only(app, client):
    make_member(app, "Kestrel", HOST)
    make_member(app, "Owl", ACCOUNTABILITY)
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    entry = _incident(app)
    with app.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        patrol.withdraw_entry(db.session, app.config["CLOCK"](), entry, kestrel, HOST, REASON)
        db.session.commit()

    anonymous = client.get("/host/record/")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    login(client, "Wren")
    assert client.get("/host/record/").status_code == 403
    assert "Record of power" not in text_of(client.get("/host/"))
    submit(client, "/host/", {}, action="/logout")

    for reader in ("Kestrel", "Owl"):
        login(client, reader)
        assert "Record of power" in text_of(client.get("/host/"))
        page = text_of(client.get("/host/record/"))
        assert "The record is whole: 1 entry, each linked to the one before." in page
        assert "Entry withdrawn from the public log" in page
        assert f"By: Kestrel as Hub host On: log entry {entry} (incident logged) Reason: {REASON}" in page
        submit(client, "/host/", {}, action="/logout")


def test_the_record_page_goes_back_page_by_page(app, client, clock):
    make_member(app, "Kestrel", HOST)
    with app.app_context():
        for number in range(55):
            power_record.record(db.session, clock.now, actor=None, role=power_record.SYSTEM_ROLE,
                                action="case-purged", subject=f"case C{number}", reason="grace period over")
        db.session.commit()
    login(client, "Kestrel")

    first = client.get("/host/record/")
    assert "case C54" in text_of(first) and "case C4 " not in text_of(first)
    older = client.get("/host/record/?before=6")
    assert "case C4 " in text_of(older) and "case C0 " in text_of(older) and "case C54" not in text_of(older)
    for odd in ("abc", "-1", "99999999999999999999"):
        assert client.get(f"/host/record/?before={odd}").status_code == 200


def _break_a_row(app, sql: str) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    with sqlite3.connect(Path(app.config["INSTANCE"]) / "safebench.db") as conn:
        conn.execute(sql)


def test_a_row_edited_in_the_database_file_breaks_the_chain_for_the_page_and_the_command(app, client, runner, clock):
    make_member(app, "Kestrel", HOST)
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    entries = [_incident(app) for _ in range(3)]
    with app.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        for entry in entries:
            patrol.withdraw_entry(db.session, clock.now, entry, kestrel, HOST, REASON)
            clock.advance(minutes=1)
        db.session.commit()
        uses = [use.id for use in reversed(power_record.entries(db.session))]
    verified = runner.invoke(args=["record", "--verify"])
    assert verified.exit_code == 0 and "The record is whole: 3 entries" in verified.output
    with app.app_context():
        newest = power_record.entries(db.session, limit=1)[0].fingerprint
    assert f"Newest entry: {uses[-1]}, fingerprint {newest}" in verified.output

    _break_a_row(app, f"UPDATE power_use SET reason = 'nothing to see' WHERE id = {uses[1]}")

    with app.app_context():
        broken = power_record.broken_links(db.session)
    assert [link.id for link in broken] == [uses[1]]
    verified = runner.invoke(args=["record", "--verify"])
    assert verified.exit_code == 1
    assert f"entry {uses[1]}: its content was changed after it was written" in verified.output
    login(client, "Kestrel")
    page = text_of(client.get("/host/record/"))
    assert "The record is broken: 1 problem in 3 entries." in page
    # The chain does not say a row was mended along with all after it; the fingerprint noted at the assembly does.
    assert f"Newest entry: {uses[-1]}, fingerprint {newest} ." in page
    assert f"Entry {uses[1]}: its content was changed after it was written." in page

    # Taking a row out (and mending nothing) is caught at the row after it.
    _break_a_row(app, f"DELETE FROM power_use WHERE id = {uses[0]}")
    verified = runner.invoke(args=["record", "--verify"])
    assert verified.exit_code == 1
    assert f"entry {uses[1]}: the row before it was changed or taken out" in verified.output


def test_the_orm_refuses_to_change_or_delete_a_row_of_the_record(app, clock):
    with app.app_context():
        use = power_record.record(db.session, clock.now, actor="Kestrel", role=HOST, action="password-reset",
                                  subject="Wren", reason="forgot it")
        db.session.commit()
        use.reason = "something else"
        with pytest.raises(power_record.RecordIsAppendOnly):
            db.session.flush()
        db.session.rollback()
        db.session.delete(db.session.get(power_record.PowerUse, use.id))
        with pytest.raises(power_record.RecordIsAppendOnly):
            db.session.flush()
        db.session.rollback()
        assert db.session.get(power_record.PowerUse, use.id).reason == "forgot it"
        assert power_record.broken_links(db.session) == []


def test_no_route_and_no_command_changes_or_deletes_the_record(app):
    # The record's only page reads; nothing else in the URL map or the CLI names it.
    from server.cli import record_command

    rules = [rule for rule in app.url_map.iter_rules() if "record" in rule.rule or rule.endpoint.startswith("record.")]
    assert [(rule.rule, sorted(rule.methods - {"HEAD", "OPTIONS"})) for rule in rules] == [("/host/record/", ["GET"])]
    assert {param.name for param in record_command.params} == {"limit", "verify"}


def test_the_record_command_prints_the_record(app, runner, clock):
    with app.app_context():
        power_record.record(db.session, clock.now, actor="Kestrel", role=HOST, action="password-reset",
                            subject="Wren", reason="forgot it")
        clock.advance(minutes=3)
        power_record.record(db.session, clock.now, actor=None, role=power_record.SYSTEM_ROLE, action="case-purged",
                            subject="case C3", reason="grace period over")
        db.session.commit()

    printed = runner.invoke(args=["record"])
    assert printed.exit_code == 0
    lines = printed.output.splitlines()
    assert "Kestrel" in lines[0] and "Password set for another member" in lines[0] and "forgot it" in lines[0]
    assert "the hub" in lines[1] and "case C3" in lines[1]
    assert len(runner.invoke(args=["record", "--limit", "1"]).output.splitlines()) == 1


# -- the other powers --------------------------------------------------------------


def _signed_in(app, handle: str, *roles: str, node: str | None = None):
    make_member(app, handle, *roles, node=node)
    browser = app.test_client()
    assert login(browser, handle).request.path != "/login"
    return browser


def _record_of(app) -> list[tuple[str, str, str, str, str]]:
    """The record oldest first, as (actor, role, action, subject, reason)."""
    return [(use.actor, use.role, use.action, use.subject, use.reason) for use in reversed(_uses(app))]


def test_an_arrest_case_confirmed_exported_and_purged_leaves_three_lines_naming_only_its_code(app, client, clock):
    neighbour = app.test_client()
    submit(neighbour, "/arrest", {"where": "Larch Street corner", "when": "19:45", "count": "2",
                                  "description": "Two people in green rain jackets", "agency": "",
                                  "contact": "ask for Robin at the bench"})
    heron = _signed_in(app, "Heron", "dispatch")
    otter = _signed_in(app, "Otter", "care")
    with app.app_context():
        from server.domain.cases import ArrestCase

        case_id = db.session.query(ArrestCase.id).scalar()
    submit(heron, f"/cases/{case_id}", {}, action=f"/cases/{case_id}/confirm")
    assert otter.get(f"/cases/{case_id}/export.txt").status_code == 200
    for _ in range(2):
        submit(otter, f"/cases/{case_id}", {"released": "1"}, action=f"/cases/{case_id}/count-out")
    clock.advance(days=app.config["CASE_GRACE_DAYS"], minutes=1)
    from server.scheduler import run_all_once

    run_all_once(app)

    assert _record_of(app) == [
        ("Heron", "dispatch", "report-confirmed", "case C1", "a neighbour's arrest report vouched for: it goes on the air"),
        ("Otter", "care", "case-exported", "case C1", "downloaded as a text file for the legal coordinator"),
        ("the hub", "system", "case-purged", "case C1",
         f"everyone released {app.config['CASE_GRACE_DAYS']} days ago: the hub's retention rule deletes it"),
    ]
    everything = repr(_record_of(app))
    for private in ("Larch", "green", "Robin"):
        assert private not in everything


def test_an_alert_resolved_is_recorded_by_code_and_kind_never_with_its_note(app, clock):
    heron = _signed_in(app, "Heron", "dispatch")
    submit(heron, "/host/alerts", {"who": "", "where": "Market square"}, action="/host/alerts/sos")
    with app.app_context():
        from server.domain import alerts

        [alert] = alerts.recent_alerts(db.session)
        alert_id = alert.id
    done = submit(heron, "/host/alerts", {f"resolve-{alert_id}-note": "Crane walked Mrs Ash home to 12 Elm St"},
                  action=f"/host/alerts/{alert_id}/resolve")
    assert done.status_code == 200

    [(actor, role, action, subject, reason)] = _record_of(app)
    assert (actor, role, action, subject) == ("Heron", "dispatch", "alert-resolved", "alert A1 (SOS)")
    assert reason == "resolved on the alerts page; what happened is with the alert"
    assert "Elm" not in repr(_record_of(app)) and "Ash" not in repr(_record_of(app))


def test_a_silent_alert_resolved_by_radio_is_recorded_without_its_kind(app, clock):
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    make_member(app, "Heron", "dispatch", node="!a1b2c3d5")
    with app.app_context():
        from server.domain import alerts

        wren, heron = people.get_member(db.session, "Wren"), people.get_member(db.session, "Heron")
        alert = alerts.raise_alert(db.session, clock.now, alerts.DURESS, wren, None, patrol.SOURCE_RADIO,
                                   verified=True)
        alerts.resolve(db.session, clock.now, alert, heron, patrol.SOURCE_RADIO, None, note_required=False)
        db.session.commit()
        code = alert.code

    assert _record_of(app) == [("Heron", "dispatch", "alert-resolved", f"alert {code}",
                                "CLR from a radio; what happened is with the alert")]


def test_a_hosts_radio_decisions_are_recorded_by_handle_never_by_node_or_key(app, client, clock):
    import base64

    make_member(app, "Kestrel", HOST)
    wren = make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    login(client, "Kestrel")
    key = base64.b64encode(bytes(range(1, 33))).decode()
    heard = base64.b64encode(bytes(range(2, 34))).decode()

    submit(client, "/host/stewards", {"key": key}, action=f"/host/stewards/{wren}/key")
    with app.app_context():
        from server.domain import radio_trust

        radio_trust.note_heard_key(db.session, clock.now, people.get_member(db.session, "Wren"), heard)
        db.session.commit()
    submit(client, "/host/stewards", {}, action=f"/host/stewards/{wren}/key/refuse")
    submit(client, "/host/stewards", {f"member-{wren}-node_id": "!0000beef"}, action=f"/host/stewards/{wren}/node")
    submit(client, "/host/stewards", {f"member-{wren}-node_id": ""}, action=f"/host/stewards/{wren}/node")

    assert _record_of(app) == [
        ("Kestrel", "host", "key-pinned", "Wren's radio key", "a key typed in for the steward"),
        ("Kestrel", "host", "key-refused", "Wren's radio key",
         "a key announced under the steward's node, refused as not their radio's"),
        ("Kestrel", "host", "node-changed", "Wren's radio",
         "another radio given to the steward: its key must be pinned again"),
        ("Kestrel", "host", "node-changed", "Wren's radio", "the radio taken off the steward: no radio now"),
    ]
    everything = repr(_record_of(app))
    for secret in (key[:8], heard[:8], "a1b2c3d4", "beef"):
        assert secret not in everything


def test_entries_withdrawn_before_this_version_become_gaps_that_say_nobody_knows_more(tmp_path, clock):
    """A bench upgrading keeps its withdrawals off the public log, now as gaps; the migration also goes back down."""
    from flask_migrate import downgrade, upgrade

    from server import create_app

    app = create_app({"INSTANCE": tmp_path / "old-hub", "TESTING": True, "CLOCK": clock})
    with app.app_context():
        upgrade(revision="a12m0000mnd1")  # the schema just before withdrawals kept who and why
        db.session.execute(db.text(
            "INSERT INTO member (id, handle, handle_key, created_at) VALUES (1, 'Wren', 'wren', '2026-11-01 20:00:00')"))
        for entry_id, kind, public in ((1, "incident", 1), (2, "incident", 0), (3, "sos", 0), (4, "check_in", 0)):
            db.session.execute(db.text(
                "INSERT INTO log_entry (id, at, kind, member_id, source, public, drill) "
                f"VALUES ({entry_id}, '2026-11-01 20:0{entry_id}:00', '{kind}', 1, 'radio', {public}, {entry_id == 4})"))
        db.session.commit()
    with app.app_context():
        # To today's schema, which the public log is read with (b12r0000rec1 made the gaps; later ones keep them).
        upgrade()
        shown = [(row.id, row.withdrawal) for row in patrol.public_log(db.session, limit=10, rounding_minutes=1)]
    # The SOS was never public and the drill's check-in never shown: neither becomes a gap.
    assert shown == [(2, "An entry was withdrawn by a role-holder: withdrawn before the hub kept who and why"),
                     (1, None)]

    with app.app_context():
        downgrade(revision="a12m0000mnd1")
        columns = {column["name"] for column in db.inspect(db.engine).get_columns("log_entry")}
    assert "withdrawal_reason" not in columns and "public" in columns


def test_an_overdue_alert_stood_down_by_the_stewards_own_check_in_is_the_hubs_doing(app, clock):
    from server.scheduler import run_all_once

    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    with app.app_context():
        patrol.start_shift(db.session, clock.now, people.get_member(db.session, "Wren"), "Market", patrol.SOURCE_RADIO)
        db.session.commit()
    for _ in range(2):  # pinged after one interval and its grace, the alert after a second interval
        clock.advance(minutes=app.config["CHECK_IN_INTERVAL_MINUTES"] + app.config["CHECK_IN_GRACE_MINUTES"])
        run_all_once(app)
    with app.app_context():
        patrol.record_check_in(db.session, clock.now, people.get_member(db.session, "Wren"), patrol.SOURCE_WEB)
        db.session.commit()

    [(actor, role, action, subject, reason)] = _record_of(app)
    assert (actor, role, action, reason) == ("the hub", "system", "alert-resolved",
                                             "the steward it was about checked in")
    assert subject.startswith("alert A") and "Overdue" in subject
