"""Stories of rapid response on the web: raising, answering and resolving alerts, escalation, drills.

The radio side (``SOS``, ``ACK A7``, ``CLR A7``) is tested with the bridge;
here alerts come from the web, the terminal and the domain, and what goes
on the air is read from the outbox.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.domain import alerts, drills, outbox, patrol, people, sealing
from server.domain.people import CAPTAIN, DISPATCH, HOST, MEDIATOR, STEWARD
from server.domain.radio_text import BELL
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import csrf_token, login, make_member, submit, text_of, unsealed

BANNER = "1 open alert: see who is on their way on the alerts page"


def logged_in(app, handle: str, *roles: str, node: str | None = None):
    """A fresh browser for a new member holding ``roles``, logged in."""
    make_member(app, handle, *roles, node=node)
    client = app.test_client()
    assert login(client, handle).request.path != "/login"
    return client


def on_air(app) -> list[str]:
    """The text of every message queued for the radio, oldest first."""
    with app.app_context():
        return [m.text for m in reversed(outbox.recent(db.session, limit=100))]


def broadcasts(app) -> list[outbox.OutboxMessage]:
    with app.app_context():
        messages = list(reversed(outbox.recent(db.session, limit=100)))
        db.session.expunge_all()
        return messages


def member_id(app, handle: str) -> int:
    with app.app_context():
        return people.get_member(db.session, handle).id


def only_alert(app) -> alerts.Alert:
    with app.app_context():
        [alert] = alerts.recent_alerts(db.session)
        db.session.expunge_all()
        return alert


def raise_sos(client, who: str = "", where: str = "Market square"):
    return submit(client, "/host/alerts", {"who": who, "where": where}, action="/host/alerts/sos")


def resolve(client, alert_id: int, note: str):
    return submit(client, "/host/alerts", {f"resolve-{alert_id}-note": note},
                  action=f"/host/alerts/{alert_id}/resolve")


def test_dispatch_raises_an_sos_on_the_web_and_every_hub_page_shows_it(app, client):
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    heron = logged_in(app, "Heron", DISPATCH)
    assert BANNER not in text_of(heron.get("/host/"))

    response = raise_sos(heron, who=str(member_id(app, "Wren")))

    assert response.status_code == 200 and response.request.path == "/host/alerts"
    page = text_of(response)
    assert "SOS A1 is raised: an urgent broadcast with the bell goes to every handheld. Stewards answer ACK A1." in page
    [message] = broadcasts(app)
    assert message.priority == outbox.URGENT and message.destination == people.BROADCAST_NODE
    assert message.text == "SOS A1: Wren, Market square. ACK A1 to respond." + BELL
    assert "A1 · SOS · Wren" in page and "Where Market square" in page
    assert "via web by Heron" in page and "Responding Nobody yet" in page
    assert "Broadcast 1 time, last at 20:00 . Not escalated to all stewards yet." in page

    for hub_page in ("/host/", "/host/radio", "/host/log", "/host/alerts"):
        shown = text_of(heron.get(hub_page))
        assert BANNER in shown, hub_page
        assert "A1 SOS · Wren · Market square · under a minute ago · 0 responding" in shown, hub_page
    with app.app_context():
        # Logged privately for the hub, never on the public log.
        [entry] = [e for e in patrol.recent_entries(db.session) if e.kind == "sos"]
        assert entry.public is False and entry.source == patrol.SOURCE_WEB and sealing.is_sealed(entry.note)
    assert unsealed(app, entry.note) == "A1"


def test_an_sos_for_nobody_in_particular_needs_a_place_and_keeps_what_was_typed(app):
    heron = logged_in(app, "Heron", HOST)

    response = raise_sos(heron, where="   ")

    assert response.status_code == 400
    assert "Please say where help is needed." in text_of(response)
    assert on_air(app) == []

    response = raise_sos(heron, who="999", where="Bus stop 12")
    assert response.status_code == 400
    assert "Please choose someone from the list, or nobody." in text_of(response)
    assert 'value="Bus stop 12"' in response.get_data(as_text=True)

    response = raise_sos(heron, where="Bus stop 12")
    assert "SOS A1 is raised" in text_of(response)
    assert on_air(app) == ["SOS A1: the hub, Bus stop 12. ACK A1 to respond." + BELL]


def test_a_second_member_responds_on_the_web_and_only_a_note_resolves_the_alert(app, clock):
    heron = logged_in(app, "Heron", DISPATCH)
    raise_sos(heron, where="Elm St corner")
    alert_id = only_alert(app).id
    crane = logged_in(app, "Crane", CAPTAIN)

    clock.advance(minutes=2)
    token = csrf_token(crane, "/host/alerts")
    response = crane.post(f"/host/alerts/{alert_id}/ack", data={"csrf_token": token}, follow_redirects=True)

    page = text_of(response)
    assert "You are down as responding to A1." in page
    assert "Crane since 20:02 (via web)" in page and "You are responding." in page
    assert "I'm responding to A1" not in page
    # A captain answers, but resolving is for dispatch and hosts.
    assert "Resolve A1" not in page
    assert "A1 SOS · the hub · Elm St corner · 2 min ago · 1 responding" in text_of(heron.get("/host/"))
    # Saying so twice counts once.
    crane.post(f"/host/alerts/{alert_id}/ack", data={"csrf_token": token})
    assert len(only_alert(app).responses) == 1
    assert only_alert(app).status == alerts.RESPONDING

    empty = resolve(heron, alert_id, "")
    assert empty.status_code == 400
    assert "Please say what happened before resolving: the note is what stays on record." in text_of(empty)
    # Only invisible characters: the form sees text, the hub sees nothing, and says so.
    invisible = "\u200b\u200b"
    refused = resolve(heron, alert_id, invisible)
    assert refused.status_code == 400
    assert "Please fill in the note." in text_of(refused)
    assert invisible in refused.get_data(as_text=True)
    assert only_alert(app).is_open

    clock.advance(minutes=10)
    done = resolve(heron, alert_id, "Crane walked her home.\nAll fine.")

    page = text_of(done)
    assert "Alert A1 is resolved; handhelds are told it is over." in page
    assert "No alert is open." in page
    assert "Recently resolved" in page and "Crane walked her home." in page and "resolved 20:12 by Heron" in page
    assert BANNER not in page
    assert "open alert" not in text_of(heron.get("/host/"))
    assert on_air(app)[-1] == "A1 resolved. Thank you."
    # Too late now: it is over.
    again = crane.post(f"/host/alerts/{alert_id}/ack", data={"csrf_token": token}, follow_redirects=True)
    assert "Alert A1 is already resolved." in text_of(again)


def test_a_captain_never_sees_a_silent_alert_that_dispatch_is_told_about(app, clock):
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")
    heron = logged_in(app, "Heron", DISPATCH, node="!0000beef")
    crane = logged_in(app, "Crane", CAPTAIN)
    with app.app_context():
        wren = people.get_member(db.session, "Wren")
        patrol.start_shift(db.session, clock(), wren, "Canal path", patrol.SOURCE_RADIO)
        duress = alerts.raise_alert(db.session, clock(), alerts.DURESS, wren, None, patrol.SOURCE_RADIO)
        duress_id = duress.id
        db.session.commit()
    [direct] = broadcasts(app)
    assert direct.destination == 0xBEEF and direct.text.startswith("SILENT A1: Wren used the duress word, Canal path.")

    seen_by_dispatch = text_of(heron.get("/host/alerts"))
    assert "SILENT — do not mention on the channel." in seen_by_dispatch
    assert "A1 · Silent alert (duress word) · Wren" in seen_by_dispatch
    assert "Sent to dispatch radios only" in seen_by_dispatch
    banner = text_of(heron.get("/host/"))
    assert BANNER in banner and "SILENT — do not mention on the channel" in banner

    for page in ("/host/alerts", "/host/radio", "/host/log", "/host/"):
        # Every reader's dashboard links to setting their own duress password: that says nothing of an alert.
        shown = text_of(crane.get(page)).replace("A duress password", "")
        assert "A1" not in shown and "SILENT" not in shown and "duress" not in shown, page
        assert "Silent alert" not in shown, page
    assert "Silent alert" in text_of(heron.get("/host/log")), "the hub's log keeps it, for those who may see it"
    assert "open alert" not in text_of(crane.get("/host/"))
    # The radio page tells a captain a message went to dispatch, not what it said.
    assert "Heron (!0000beef) (for dispatch only)" in text_of(crane.get("/host/radio"))
    assert "Heron (!0000beef) SILENT A1: Wren used the duress word" in text_of(heron.get("/host/radio"))
    assert "No alert is open." in text_of(crane.get("/host/alerts"))
    token = csrf_token(crane, "/host/alerts")
    assert crane.post(f"/host/alerts/{duress_id}/ack", data={"csrf_token": token}).status_code == 404

    # A loud one at the same time: the captain sees that one, and only that one.
    raise_sos(heron, where="Market")
    shown = text_of(crane.get("/host/"))
    assert BANNER in shown and "A2 SOS · the hub · Market" in shown
    assert "SILENT" not in shown and "A1 Silent alert" not in shown
    assert "2 open alerts" in text_of(heron.get("/host/"))


@pytest.mark.parametrize("roles", [(), (STEWARD,), (MEDIATOR,)])
def test_people_without_a_dispatch_role_cannot_see_or_raise_alerts(app, roles):
    heron = logged_in(app, "Heron", DISPATCH)
    raise_sos(heron)
    alert_id = only_alert(app).id
    if roles:
        visitor = logged_in(app, "Finch", *roles)
        assert BANNER not in text_of(visitor.get("/host/"))
        refused = 403
    else:
        visitor = app.test_client()
        refused = 302  # to the login page
    token = csrf_token(visitor, "/login")

    for path in ("/host/alerts", "/host/drills", "/host/drills/1", "/host/drills/1/report.txt"):
        assert visitor.get(path).status_code == refused, path
    for path in ("/host/alerts/sos", f"/host/alerts/{alert_id}/ack", f"/host/alerts/{alert_id}/resolve",
                 "/host/drills"):
        assert visitor.post(path, data={"csrf_token": token, "where": "x", "kind": "sos"}).status_code == refused
    assert len(on_air(app)) == 1


def test_a_captain_answers_alerts_but_neither_raises_resolves_nor_drills(app):
    heron = logged_in(app, "Heron", DISPATCH)
    raise_sos(heron)
    alert_id = only_alert(app).id
    crane = logged_in(app, "Crane", CAPTAIN)
    page = text_of(crane.get("/host/alerts"))
    assert "Raise an SOS" not in page and "I'm responding to A1" in page
    token = csrf_token(crane, "/host/alerts")

    assert crane.post("/host/alerts/sos", data={"csrf_token": token, "where": "x"}).status_code == 403
    assert crane.post(f"/host/alerts/{alert_id}/resolve",
                      data={"csrf_token": token, f"resolve-{alert_id}-note": "x"}).status_code == 403
    assert crane.get("/host/drills").status_code == 403
    assert "Drills" not in text_of(crane.get("/host/"))


def test_an_unanswered_sos_is_broadcast_again_then_escalated_to_every_steward(app, clock):
    heron = logged_in(app, "Heron", DISPATCH)
    raise_sos(heron, where="Railway bridge")
    wait = app.config["ALERT_ACK_MINUTES"]

    clock.advance(minutes=wait)
    run_all_once(app)
    assert on_air(app)[-1] == "SOS A1: the hub, Railway bridge. No responder yet. ACK A1." + BELL
    assert "Broadcast 2 times" in text_of(heron.get("/host/alerts"))

    clock.advance(minutes=wait)
    run_all_once(app)
    said = on_air(app)
    assert said[-1] == "SOS A1: the hub, Railway bridge. ALL STEWARDS, on shift or not: ACK A1." + BELL
    assert len(said) == 3
    page = text_of(heron.get("/host/alerts"))
    assert "Broadcast 3 times, last at 20:06 . Escalated to all stewards at 20:06 ." in page

    # Nothing more after that: the whole channel knows.
    clock.advance(minutes=wait)
    run_all_once(app)
    assert len(on_air(app)) == 3

    resolve(heron, only_alert(app).id, "False alarm, a dropped handheld.")
    assert "was escalated" in text_of(heron.get("/host/alerts"))


def test_a_drill_is_marked_everywhere_stays_off_public_pages_and_leaves_a_report(app, clock):
    heron = logged_in(app, "Heron", DISPATCH)
    response = submit(heron, "/host/drills", {"kind": drills.SOS, "place": "the old bakery"})

    assert "Drill 1 started: a mock SOS alert is on its way to every handheld, marked DRILL." in text_of(response)
    [notice] = broadcasts(app)
    assert notice.text.startswith("DRILL SOS A1: Heron, the old bakery.") and notice.priority == outbox.URGENT
    assert "Drill 1 · Mock SOS · alert A1" in text_of(response) and "running" in text_of(response)

    alerts_page = text_of(heron.get("/host/alerts"))
    assert "DRILL A1 · SOS · Heron" in alerts_page
    assert "DRILL A1 SOS · Heron · the old bakery" in text_of(heron.get("/host/"))
    neighbour = app.test_client()
    for public in ("/", "/log"):
        for visitor in (neighbour, heron):
            shown = text_of(visitor.get(public))
            assert "DRILL" not in shown and "A1" not in shown and "bakery" not in shown, public

    # The bridge gets the notice on the air 8 s later; Wren answers after a minute.
    with app.app_context():
        message = db.session.get(outbox.OutboxMessage, notice.id)
        outbox.begin_send(db.session, clock(), message)
        outbox.mark_sent(db.session, clock() + timedelta(seconds=8), message, 1.2)
        db.session.commit()
    wren = logged_in(app, "Wren", CAPTAIN)
    clock.advance(minutes=1)
    wren.post("/host/alerts/1/ack", data={"csrf_token": csrf_token(wren, "/host/alerts")})
    running = text_of(heron.get("/host/drills/1"))
    assert "Still running." in running and "first responder acknowledged: 1 min 00 s" in running

    clock.advance(minutes=3, seconds=30)
    ended = submit(heron, "/host/drills", {}, action="/host/drills/1/end")

    page = text_of(ended)
    assert ended.request.path == "/host/drills/1"
    assert "Drill 1 has ended. Its report is below, for the assembly." in page
    assert "Drill 1: Mock SOS, started 2026-11-21 20:00 UTC" in page
    for line in ("notice on the air: 0 min 08 s", "first responder acknowledged: 1 min 00 s",
                 "resolved: 4 min 30 s", "Ended 20:04 UTC, after 4 min 30 s."):
        assert line in page
    assert "open alert" not in page
    assert on_air(app)[-1] == "DRILL A1 resolved. Thank you."

    download = heron.get("/host/drills/1/report.txt")
    assert download.status_code == 200 and download.mimetype == "text/plain"
    assert download.headers["Content-Disposition"] == 'attachment; filename="drill-1-report.txt"'
    assert download.get_data(as_text=True) == (
        "Drill 1: Mock SOS, started 2026-11-21 20:00 UTC\n"
        "- notice on the air: 0 min 08 s\n"
        "- first responder acknowledged: 1 min 00 s\n"
        "- resolved: 4 min 30 s\n"
        "Ended 20:04 UTC, after 4 min 30 s.\n"
    )
    with app.app_context():
        assert all(e.drill for e in patrol.recent_entries(db.session) if e.kind in ("sos", "alert_ack", "alert_clear"))


def test_a_mock_arrest_goes_out_marked_drill_and_its_report_times_each_ring(app, clock):
    app.config["LEGAL_HOTLINE"] = "+49 30 1234567"
    heron = logged_in(app, "Heron", HOST)

    refused = submit(heron, "/host/drills", {"place": "the park"})
    assert refused.status_code == 400 and "Please choose a mock SOS or a mock arrest." in text_of(refused)
    assert 'value="the park"' in refused.get_data(as_text=True)

    submit(heron, "/host/drills", {"kind": drills.ARREST})
    [notice] = on_air(app)
    assert notice.startswith("DRILL ARREST C1: 1 at the bench, 20:00Z. Legal hotline +49 30 1234567.")

    clock.advance(minutes=20)
    page = text_of(submit(heron, "/host/drills", {}, action="/host/drills/1/end"))
    assert "Drill 1: Mock arrest" in page
    assert "ring 1 (Legal): first action: did not happen" in page
    assert "everyone accounted for (released): 20 min 00 s" in page


def test_a_drill_that_is_not_there_is_not_found(app):
    heron = logged_in(app, "Heron", DISPATCH)
    assert heron.get("/host/drills/7").status_code == 404
    assert heron.get("/host/drills/7/report.txt").status_code == 404
    token = csrf_token(heron, "/host/drills")
    assert heron.post("/host/drills/7/end", data={"csrf_token": token}).status_code == 404
    assert heron.post("/host/alerts/7/ack", data={"csrf_token": token}).status_code == 404


# -- at the Pi's terminal ------------------------------------------------------


def test_the_host_raises_an_sos_from_the_terminal(app, runner):
    make_member(app, "Wren", STEWARD, node="!a1b2c3d4")

    done = runner.invoke(args=["sos", "Market", "square", "--who", "wren"])

    assert done.exit_code == 0, done.output
    assert "SOS A1 raised for Wren at Market square: queued as urgent, with the bell." in done.output
    assert on_air(app) == ["SOS A1: Wren, Market square. ACK A1 to respond." + BELL]
    assert only_alert(app).source == patrol.SOURCE_CLI

    unknown = runner.invoke(args=["sos", "Market", "--who", "Nobody"])
    assert unknown.exit_code != 0 and "No one here goes by 'Nobody'." in unknown.output
    assert runner.invoke(args=["sos"]).exit_code != 0
    assert len(on_air(app)) == 1


def test_the_host_runs_a_drill_from_the_terminal_and_prints_its_report(app, runner, clock):
    started = runner.invoke(args=["drill", "sos", "--where", "the bench"])

    assert started.exit_code == 0, started.output
    assert started.output.startswith("Drill 1 started: Mock SOS, alert A1, marked DRILL on the air.")
    assert on_air(app)[0].startswith("DRILL SOS A1: the hub, the bench.")
    assert "Still running." in runner.invoke(args=["drill", "report", "1"]).output

    clock.advance(minutes=2)
    ended = runner.invoke(args=["drill", "end", "1"])
    assert ended.exit_code == 0, ended.output
    report = runner.invoke(args=["drill", "report", "1"]).output
    assert report == ended.output
    assert report.splitlines() == [
        "Drill 1: Mock SOS, started 2026-11-21 20:00 UTC",
        "- notice on the air: did not happen",
        "- first responder acknowledged: did not happen",
        "- resolved: 2 min 00 s",
        "Ended 20:02 UTC, after 2 min 00 s.",
    ]

    arrest = runner.invoke(args=["drill", "arrest"])
    assert arrest.exit_code == 0 and "Drill 2 started: Mock arrest, case C1" in arrest.output

    missing = runner.invoke(args=["drill", "report", "9"])
    assert missing.exit_code != 0 and "That drill does not exist." in missing.output
