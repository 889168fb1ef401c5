"""Stories of the hub's own pages: stewards and their radios, roles that lapse, the full log."""

from __future__ import annotations

from datetime import timedelta

from server.domain import patrol, people
from server.domain.people import CAPTAIN, DISPATCH, HOST, MEDIATOR
from server.extensions import db
from tests.helpers import login, make_member, prefixed, submit, text_of

DECISION = "assembly 21 Nov, item 4"
# The day and the meeting of the decision (the story's clock says 21 Nov 2026).
DECIDED = {"decided_on": "2026-11-21", "decision_place": "assembly at the library"}


def host_logged_in(app, client) -> None:
    # A year-long term, so the host outlives the roles the stories let lapse.
    make_member(app, "Kestrel", HOST, term_days=365)
    assert login(client, "Kestrel").request.path != "/login"


def assignment_id(app, handle: str, role: str) -> int:
    with app.app_context():
        member = people.get_member(db.session, handle)
        return max(a.id for a in member.roles if a.role == role)


def newest_entry_id(app) -> int:
    with app.app_context():
        return patrol.recent_entries(db.session, limit=1)[0].id


def test_a_host_registers_a_steward_with_their_radio_and_sees_them_listed(app, client):
    host_logged_in(app, client)

    response = submit(client, "/host/stewards",
                      {"handle": "Wren", "node_id": "!A1B2C3D4", "decision": DECISION, **DECIDED})

    assert response.status_code == 200
    page = text_of(response)
    assert "Wren is registered with node !a1b2c3d4." in page
    # The steward role waits for a second role-holder: a captain countersigns it.
    assert "Wren · !a1b2c3d4 · no active role" in page
    make_member(app, "Crane", CAPTAIN)
    captain = app.test_client()
    login(captain, "Crane")
    role = assignment_id(app, "Wren", people.STEWARD)
    signed = submit(captain, "/host/stewards", {"back": "stewards"}, action=f"/host/roles/{role}/countersign")
    assert "Countersigned: Wren is Patrol steward until" in text_of(signed)
    assert "Wren · !a1b2c3d4 · Patrol steward" in text_of(signed)
    with app.app_context():
        assert people.find_member(db.session, "wren").node_num == 0xA1B2C3D4


def test_a_radio_already_registered_is_refused_and_what_was_typed_is_kept(app, client):
    host_logged_in(app, client)
    submit(client, "/host/stewards", {"handle": "Wren", "node_id": "!a1b2c3d4", "decision": DECISION, **DECIDED})

    typed = {"handle": "Finch", "node_id": "a1b2c3d4", "decision": "assembly 5 Dec", **DECIDED}
    response = submit(client, "/host/stewards", typed)

    assert response.status_code == 400
    assert "Node !a1b2c3d4 is already registered to Wren." in text_of(response)
    html = response.get_data(as_text=True)
    assert 'value="Finch"' in html and 'value="a1b2c3d4"' in html and 'value="assembly 5 Dec"' in html
    with app.app_context():
        assert people.find_member(db.session, "Finch") is None


def member_id(app, handle: str) -> int:
    with app.app_context():
        return people.get_member(db.session, handle).id


def test_a_host_changes_a_stewards_radio_and_then_forgets_it(app, client):
    host_logged_in(app, client)
    make_member(app, "Wren", node="!a1b2c3d4")
    make_member(app, "Finch")
    wren, finch = member_id(app, "Wren"), member_id(app, "Finch")

    taken = submit(client, "/host/stewards", {f"member-{finch}-node_id": "!a1b2c3d4"},
                   action=f"/host/stewards/{finch}/node")
    assert taken.status_code == 400
    assert "Node !a1b2c3d4 is already registered to Wren." in text_of(taken)

    moved = submit(client, "/host/stewards", {f"member-{wren}-node_id": "48879"}, action=f"/host/stewards/{wren}/node")
    assert "Wren's radio is now !0000beef." in text_of(moved)
    forgotten = submit(client, "/host/stewards", {f"member-{wren}-node_id": ""}, action=f"/host/stewards/{wren}/node")
    assert "Wren has no radio now." in text_of(forgotten)
    assert "Wren · no radio" in text_of(forgotten)


def test_a_mediator_role_lapses_on_the_minute_and_returns_when_the_assembly_renews_it(app, client, clock):
    host_logged_in(app, client)
    make_member(app, "Osprey", HOST, term_days=365)
    second_host = app.test_client()
    login(second_host, "Osprey")
    make_member(app, "Heron", password=None)
    mediator = app.test_client()

    granted = submit(
        client, "/host/roles",
        prefixed("grant", {"handle": "heron", "role": MEDIATOR, "term_days": "28", "decision": DECISION, **DECIDED}),
    )
    assert "Heron's Mediator role until" in text_of(granted) and "opens nothing until another host" in text_of(granted)
    # The host gives the new mediator a way to log in.
    password = prefixed("password", {"holder": "Heron", "new_password": "a long passphrase"})
    submit(client, "/host/roles", password, action="/host/roles/password")
    waiting = text_of(login(mediator, "Heron", "a long passphrase"))
    assert "waits for a second role-holder's countersign" in waiting
    role = assignment_id(app, "Heron", MEDIATOR)
    submit(second_host, "/host/roles", {}, action=f"/host/roles/{role}/countersign")
    assert login(mediator, "Heron", "a long passphrase").request.path != "/login"
    assert mediator.get("/host/mediation").status_code == 200

    # The logins outlive the role here (idle lock and lifetime stretched), so the role's
    # lapse on the minute alone is what closes the mediator's pages.
    ring = app.extensions["safebench.keyring"]
    ring.idle = ring.lifetime = timedelta(days=60)
    clock.advance(days=28, minutes=-1)
    assert mediator.get("/host/mediation").status_code == 200
    clock.advance(minutes=1)
    assert mediator.get("/host/mediation").status_code == 403
    assert "Heron · Mediator · Lapsed" in text_of(client.get("/host/roles"))

    renewed = submit(
        client,
        "/host/roles",
        {f"renew-{role}-decision": "assembly 19 Dec, item 2", f"renew-{role}-term_days": "28",
         f"renew-{role}-decided_on": "2026-12-19", f"renew-{role}-decision_place": "assembly at the library"},
        action=f"/host/roles/{role}/renew",
    )
    assert "A renewal of Heron's Mediator role until" in text_of(renewed)
    assert mediator.get("/host/mediation").status_code == 403  # pending: the old term has run out
    submit(second_host, "/host/roles", {}, action=f"/host/roles/{role}/countersign")
    assert mediator.get("/host/mediation").status_code == 200
    history = text_of(client.get("/host/roles"))
    assert "Heron · Mediator · Active" in history
    assert "Renewals (1)" in history and "assembly 19 Dec, item 2" in history
    assert DECISION in history  # the grant's own decision stays with it


def test_a_renewal_without_a_decision_is_refused(app, client):
    host_logged_in(app, client)
    role = assignment_id(app, "Kestrel", HOST)

    response = submit(
        client, "/host/roles", {f"renew-{role}-decision": " ", f"renew-{role}-term_days": "28"},
        action=f"/host/roles/{role}/renew",
    )

    assert response.status_code == 400
    assert "Please fill in the words of the decision." in text_of(response)


def test_a_host_withdraws_an_entry_from_the_public_log_and_it_stays_in_the_full_log(app, client):
    host_logged_in(app, client)
    # Kestrel, the host, chose on their dashboard to show their handle to the public.
    submit(client, "/host/", {"show_handle": "1"}, action="/host/me/public-handle")
    submit(client, "/host/stewards", {"area_name": "Market"}, action="/host/areas")
    incident = {"kind": "incident", "place": "Market square", "note": "Shouting at the fruit stall"}
    logged = submit(client, "/host/log", incident)
    assert "Your entry is in the log." in text_of(logged)
    assert "Incident logged Kestrel Market" in text_of(client.get("/log"))

    entry = newest_entry_id(app)
    withdrawn = submit(client, "/host/log", {f"withdraw-{entry}-reason": "logged twice"},
                       action=f"/host/log/{entry}/withdraw")

    assert "The entry is withdrawn" in text_of(withdrawn)
    public = text_of(client.get("/log"))
    assert "Incident logged" not in public and "An entry was withdrawn by a hub host: logged twice" in public
    full = text_of(client.get("/host/log"))
    assert "Shouting at the fruit stall" in full and "Withdrawn from the public log" in full and "From web" in full


def test_only_published_areas_reach_the_public_log(app, client):
    host_logged_in(app, client)
    submit(client, "/host/stewards", {"area_name": "Market"}, action="/host/areas")

    submit(client, "/host/log", {"kind": "check_in", "place": "12 Elm Street", "note": "All quiet at number 12"})
    submit(client, "/host/log", {"kind": "check_in", "place": "market", "note": "Stall owners fine"})

    public = text_of(client.get("/log"))
    assert "Market" in public
    assert "Elm" not in public and "quiet" not in public and "Stall" not in public
    full = text_of(client.get("/host/log"))
    assert "12 Elm Street" in full and "All quiet at number 12" in full


def test_the_full_log_pages_back_through_older_entries(app, client):
    host_logged_in(app, client)
    with app.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        for n in range(55):
            patrol.record_check_in(db.session, app.config["CLOCK"](), kestrel, patrol.SOURCE_CLI, note=f"round {n}")
        db.session.commit()

    newest = client.get("/host/log")
    assert "round 54" in text_of(newest) and "round 4 " not in text_of(newest)
    older = client.get(f"/host/log?before={newest_entry_id(app) - 49}")
    assert "round 4 " in text_of(older) and "round 0" in text_of(older) and "Newest entries" in text_of(older)


def test_dispatch_cannot_open_the_roles_page(app, client):
    make_member(app, "Plover", DISPATCH)
    login(client, "Plover")

    assert client.get("/host/roles").status_code == 403
    assert client.get("/host/log").status_code == 200


def test_nothing_a_host_types_breaks_the_hub(app, client):
    host_logged_in(app, client)
    kestrel_role = assignment_id(app, "Kestrel", HOST)
    huge = "9" * 30

    def grant(fields: dict) -> dict:  # the roles page's grant form, whose fields are named grant-...
        return prefixed("grant", fields)

    def password(fields: dict) -> dict:
        return prefixed("password", fields)

    tries = [
        ("/host/stewards", "/host/stewards", {"handle": "Wren", "node_id": "!zzzz", "decision": DECISION},
         "A node id looks like !a1b2c3d4"),
        ("/host/stewards", "/host/stewards", {"handle": "Wren", "node_id": "!ffffffff", "decision": DECISION},
         "That node number is reserved"),
        ("/host/stewards", "/host/stewards", {"handle": "Wren", "node_id": huge, "decision": DECISION},
         "That is too long"),
        ("/host/stewards", "/host/stewards", {"handle": "<b>Wren</b>", "node_id": "!a1b2c3d4", "decision": DECISION},
         "A handle uses letters"),
        ("/host/stewards", "/host/stewards", {"handle": "Wren", "node_id": "!a1b2c3d4", "decision": ""},
         "Please fill in the words of the decision."),
        ("/host/stewards", "/host/stewards", {"handle": "Wren", "node_id": "!a1b2c3d4", "decision": DECISION,
                                              "decided_on": "21/11/2026"}, "as year-month-day"),
        ("/host/roles", "/host/roles", grant({"handle": "Wren", "role": MEDIATOR, "term_days": "28",
                                              "decision": DECISION, "decided_on": "2026-12-24"}), "still to come"),
        ("/host/roles", "/host/roles", grant({"handle": "Wren", "role": MEDIATOR, "term_days": "28",
                                              "decision": DECISION, "decided_on": "2025-11-21"}),
         "more than 60 days old"),
        ("/host/roles", "/host/roles", grant({"handle": "Wren", "role": MEDIATOR, "term_days": "29", "decision": DECISION}),
         "A term runs from 1 to 28 days"),
        ("/host/roles", "/host/roles", grant({"handle": "Nobody", "role": MEDIATOR, "term_days": "28",
                                              "decision": DECISION}),
         "No one here goes by 'Nobody'."),
        ("/host/roles", "/host/roles", grant({"handle": "Kestrel", "role": "overlord", "term_days": "28",
                                              "decision": DECISION}),
         "Please choose a role from the list."),
        ("/host/roles", "/host/roles", grant({"handle": "Kestrel", "role": MEDIATOR, "term_days": "-5",
                                              "decision": DECISION}),
         "A term runs from 1 to 366 days."),
        ("/host/roles", "/host/roles", grant({"handle": "Kestrel", "role": MEDIATOR, "term_days": huge,
                                              "decision": DECISION}),
         "A term runs from 1 to 366 days."),
        ("/host/roles", "/host/roles", grant({"handle": "Kestrel", "role": MEDIATOR, "term_days": "a month",
                                              "decision": DECISION}), "Not a valid integer value."),
        ("/host/roles", "/host/roles", grant({"handle": "Kestrel", "role": HOST, "term_days": "28", "decision": DECISION}),
         "Nobody grants a role for themselves"),
        ("/host/roles", "/host/roles", grant({"handle": "Osprey", "role": HOST, "term_days": "28", "decision": DECISION}),
         "Osprey already holds the host role; renew it instead."),
        ("/host/roles", f"/host/roles/{kestrel_role}/renew", {f"renew-{kestrel_role}-decision": DECISION,
                                                             f"renew-{kestrel_role}-term_days": "0"},
         "A term runs from 1 to 366 days."),
        ("/host/roles", "/host/roles/password", password({"holder": "Kestrel", "new_password": "short"}),
         "A password has from 10 to 256 characters."),
        ("/host/roles", "/host/roles/password", password({"holder": "Nobody", "new_password": "a long passphrase"}),
         "No one here goes by 'Nobody'."),
        ("/host/log", "/host/log", {"kind": "incident", "place": "", "note": ""}, "Please fill in the description."),
        ("/host/log", "/host/log", {"kind": "arrest", "note": "x"}, "Please choose a check-in or an incident."),
        ("/host/log", "/host/log", {"kind": "check_in", "note": "x" * 501}, "That is too long"),
    ]
    make_member(app, "Osprey", HOST)
    make_member(app, "Wren", node="!a1b2c3d4")
    for page, action, data, message in tries:
        if "area_name" not in data and "password-holder" not in data and page != "/host/log":
            prefix = next((key.rpartition("-")[0] + "-" for key in data if key.startswith(("renew-", "grant-"))), "")
            data = {f"{prefix}decided_on": "2026-11-21", f"{prefix}decision_place": "assembly at the library", **data}
        response = submit(client, page, data, action=action)
        assert response.status_code == 400, (action, data, response.status_code)
        assert message in text_of(response), (action, data)

    submit(client, "/host/stewards", {"area_name": "Market"}, action="/host/areas")
    again = submit(client, "/host/stewards", {"area_name": "market"}, action="/host/areas")
    assert again.status_code == 400 and "The area 'market' exists already." in text_of(again)

    for url in ("/host/log?before=abc", f"/host/log?before={huge}", "/host/log?before=-3"):
        assert client.get(url).status_code == 200
    for url in (f"/host/log/{huge}/withdraw", "/host/log/abc/withdraw", "/host/log/999/withdraw",
                f"/host/roles/{huge}/renew", "/host/roles/999/decide", "/host/roles/999/countersign", f"/host/areas/{huge}/remove",
                "/host/areas/999/remove", f"/host/stewards/{huge}/node"):
        response = submit(client, "/host/roles", {}, action=url)
        assert response.status_code == 404, (url, response.status_code)
