"""The host's board: the night at a glance on a screen at the bench, on the web and in the terminal.

A host opens ``/host/board`` and sees who is on shift with their check-in
clocks, open alerts with who is responding, open arrest cases with their
48-hour clock, the radio's health and the latest entries; without
JavaScript the page reloads itself. ``safebench board --once`` prints the
same from the hub's database, as a real process, without a sealed word.
"""

from __future__ import annotations

import base64
import re
import subprocess
from datetime import timedelta

import pytest

from server.clock import utcnow
from server.domain import alerts, cases, overdue, patrol, people, radio, radio_trust
from server.domain.outbox import AirtimeUse
from server.extensions import db
from server.web.live import LIVE_PAGE_POLICY
from tests.helpers import PASSWORD, csrf_token, login, make_app, make_member, text_of
from tests.processes import SAFEBENCH, env_for, safebench

WREN_NODE = "!a1b2c3d4"
KESTREL_NODE = "!0000beef"
KESTREL_KEY = base64.b64encode(bytes(range(1, 33))).decode()


def logged_in(app, handle: str, *roles: str, node: str | None = None):
    make_member(app, handle, *roles, node=node)
    client = app.test_client()
    assert login(client, handle).request.path != "/login"
    return client


def member(session, handle: str):
    return people.get_member(session, handle)


def a_night_on_patrol(app, clock) -> None:
    """Two stewards out from 20:00 (Wren's radio unproven, Kestrel's key pinned), a radio bridge running,
    and an arrest at 14:00 that day."""
    make_member(app, "Wren", people.STEWARD, node=WREN_NODE)
    make_member(app, "Kestrel", people.STEWARD, node=KESTREL_NODE)
    with app.app_context():
        now = clock()
        patrol.add_area(db.session, "Market")
        patrol.add_area(db.session, "Canal")
        radio_trust.pin_key(db.session, now, member(db.session, "Kestrel"), KESTREL_KEY, by=None)
        patrol.start_shift(db.session, now, member(db.session, "Wren"), "Market", patrol.SOURCE_RADIO)
        patrol.start_shift(db.session, now, member(db.session, "Kestrel"), "Canal", patrol.SOURCE_RADIO)
        db.session.add(radio.BridgeStatus(radio="serial:/dev/ttyACM0", simulated=False, connected=True, since=now,
                                          heartbeat_at=now, region="EU_868", reconnects=0, send_failures=0))
        db.session.add(AirtimeUse(at=now, seconds=54.0, priority=1))
        case = cases.open_case(db.session, now, place="Market", arrested=3, source=patrol.SOURCE_WEB,
                               arrested_at=now - timedelta(hours=6))
        cases.count_out(db.session, now, case, 1, None)
        db.session.commit()


def fresh_login(app, handle: str, password: str = PASSWORD):
    """A login of ``handle`` now: a login idle for LOCK_IDLE_MINUTES closes, and the stories move the clock."""
    client = app.test_client()
    assert login(client, handle, password).request.path != "/login"
    return client


def panels(client) -> str:
    response = client.get("/host/board/panels")
    assert response.status_code == 200
    return text_of(response)


def test_a_host_opens_the_board_and_sees_the_night_at_a_glance(app, clock):
    a_night_on_patrol(app, clock)
    make_member(app, "Osprey", people.HOST)
    heron = make_member(app, "Heron", people.DISPATCH)
    clock.advance(minutes=23)
    with app.app_context():
        patrol.record_check_in(db.session, clock(), member(db.session, "Kestrel"), patrol.SOURCE_RADIO)
        sos = alerts.raise_sos(db.session, clock(), member(db.session, "Wren"), "by the fountain",
                               patrol.SOURCE_RADIO, verified=False)
        alerts.acknowledge(db.session, clock(), sos, db.session.get(people.Member, heron), patrol.SOURCE_RADIO)
        db.session.commit()
        sos_id = sos.id
    clock.advance(minutes=2)
    with app.app_context():
        radio.bridge_status(db.session).heartbeat_at = clock()  # the bridge is alive: it wrote a minute ago
        db.session.commit()

    osprey = fresh_login(app, "Osprey")
    page = osprey.get("/host/board")
    assert page.status_code == 200
    # The page alone (with the live log) may run the hub's own script and connect back to it.
    assert page.headers["Content-Security-Policy"] == LIVE_PAGE_POLICY
    shown = text_of(page)

    # An open SOS: its code, place, age and who is on their way; an unproven cry says so.
    assert "Open alerts 1 A1 SOS · Wren · by the fountain unverified sender 2 min ago · Responding: Heron" in shown
    # Who is on shift, in which area, the minutes since each last word and the overdue countdown.
    assert ("Wren · Market unverified radio Last heard 25 min ago · "
            "Check-in 5 min late: ping soon, alert in 20 min") in shown
    assert "Kestrel · Canal Last heard 2 min ago · Check-in due in 18 min" in shown
    assert "Kestrel · Canal unverified" not in shown  # her key is pinned: what her radio sends is proven
    # The arrest case, counted in and out, on its 48-hour clock.
    assert "C1 Market 3 taken · 1 out · 2 held · 6 h since the arrest: 42 h to the 48-hour mark" in shown
    # The radio: connected, airtime against the budget (EU 868: 10% of an hour), what waits to go out.
    assert "Connected since 20:00" in shown
    with app.app_context():
        radio.bridge_status(db.session).heartbeat_at = clock() - timedelta(minutes=3)
        db.session.commit()
    assert "Bridge silent since 20:22" in panels(osprey)
    assert "54 s of 360 s (15%)" in shown
    assert re.search(r"Waiting to go out \d+ messages · \d+ urgent", shown)
    # The latest entries, urgent ones marked, the SOS linking to its alert.
    assert "20:23 URGENT SOS · Wren · by the fountain · Alert: A1, unverified sender" in shown
    assert f'href="/host/alerts#alert-{sos_id}"' in page.get_data(as_text=True)
    # And the hub's nav leads here.
    assert '<a href="/host/board">Board</a>' in osprey.get("/host/").get_data(as_text=True)


def test_without_javascript_the_board_reloads_itself_and_with_it_listens_to_the_live_log(app):
    osprey = logged_in(app, "Osprey", people.HOST)
    html = osprey.get("/host/board").get_data(as_text=True)
    assert re.search(r'<noscript><meta http-equiv="refresh" content="30"></noscript>', html)
    assert "JavaScript is off: this page reloads itself every 30 seconds." in html
    assert 'data-events="/host/live/events"' in html and 'data-panels="/host/board/panels"' in html
    assert '<script src="/static/board.js" defer></script>' in html
    assert "Nobody is on shift." in html and "No open alerts." in html and "No open arrest cases." in html
    assert "No radio bridge has run on this hub yet." in html
    # Every other page still refuses scripts.
    assert "script-src" not in osprey.get("/host/").headers["Content-Security-Policy"]


def test_the_countdown_runs_to_the_ping_and_then_to_the_alert(app, clock):
    a_night_on_patrol(app, clock)
    make_member(app, "Osprey", people.HOST)
    rules = overdue.OverdueRules()  # 20 minutes, 5 of grace: the hub's defaults

    def wren_row() -> str:
        shown = panels(fresh_login(app, "Osprey"))
        return shown[shown.index("Wren · Market"):].split(" Kestrel")[0]

    assert "Check-in due in 20 min" in wren_row()
    clock.advance(minutes=26)
    with app.app_context():
        patrol.record_check_in(db.session, clock(), member(db.session, "Kestrel"), patrol.SOURCE_RADIO)
        assert overdue.check(db.session, clock(), rules) == ["Wren pinged"]
        db.session.commit()
    assert "Pinged: alert in 19 min" in wren_row()
    clock.advance(minutes=19)
    with app.app_context():
        [done] = overdue.check(db.session, clock(), rules)
        db.session.commit()
    assert done.startswith("Wren overdue")
    shown = panels(fresh_login(app, "Osprey"))
    assert "OVERDUE: alert out" in wren_row()
    assert "Overdue check-in · Wren · Market" in shown  # and the alert is on the board's alerts
    # Whoever is nearest to being missed comes first.
    assert shown.index("Wren · Market unverified radio") < shown.index("Kestrel · Canal")


@pytest.mark.parametrize("roles", [(), (people.STEWARD,), (people.MEDIATOR,), (people.CARE,)])
def test_a_neighbour_without_a_log_role_is_refused_the_board(app, roles):
    anonymous = app.test_client()
    for path in ("/host/board", "/host/board/panels", "/host/board/alert-banner", "/host/log/1/alert"):
        assert anonymous.get(path).headers["Location"].startswith("/login")
    if not roles:
        return
    someone = logged_in(app, "Plover", *roles)
    for path in ("/host/board", "/host/board/panels", "/host/board/alert-banner", "/host/log/1/alert"):
        assert someone.get(path).status_code == 403, path
    assert "/host/board" not in someone.get("/host/").get_data(as_text=True)


def test_a_captain_sees_the_board_but_never_a_silent_alert(app, clock):
    a_night_on_patrol(app, clock)
    crane = logged_in(app, "Crane", people.CAPTAIN)
    heron = logged_in(app, "Heron", people.DISPATCH)
    with app.app_context():
        alerts.raise_alert(db.session, clock(), alerts.DURESS, member(db.session, "Kestrel"), None,
                           patrol.SOURCE_RADIO)
        db.session.commit()
    for_dispatch = panels(heron)
    assert "Silent alert (duress word) · Kestrel" in for_dispatch
    assert "SILENT: do not mention on the channel" in for_dispatch
    for_captain = panels(crane)
    assert "No open alerts." in for_captain and "Silent alert" not in for_captain and "SILENT" not in for_captain
    assert "Kestrel · Canal" in for_captain  # the rest of the board as for anyone


def test_sealed_words_open_only_for_a_logged_in_reader_whose_keys_open_them(app, clock):
    a_night_on_patrol(app, clock)
    note = "man in a red coat by number 12"
    osprey = logged_in(app, "Osprey", people.HOST)
    make_member(app, "Crane", people.CAPTAIN)
    first = fresh_login(app, "Crane")  # Crane's login gets the log's key
    first.post("/logout", data={"csrf_token": csrf_token(first, "/host/")})
    with app.app_context():
        entry = patrol.record_incident(db.session, clock(), member(db.session, "Wren"), patrol.SOURCE_RADIO,
                                       what=note, place="behind 4 Cobbold Row")
        db.session.commit()
        assert note not in str(entry.note)  # sealed in the database
    shown = panels(osprey)
    assert note in shown and "behind 4 Cobbold Row" in shown
    osprey.post("/logout", data={"csrf_token": csrf_token(osprey, "/host/")})

    # Crane's password was set again (a lost one): until a reader holding the key logs in, nothing opens for him.
    with app.app_context():
        people.set_password(member(db.session, "Crane"), "a brand new password", clock())
        db.session.commit()
    crane = app.test_client()
    assert login(crane, "Crane", "a brand new password").request.path != "/login"
    shown = panels(crane)
    assert note not in shown and "Cobbold" not in shown
    assert "Incident logged · Wren · sealed" in shown
    assert login(app.test_client(), "Osprey").request.path != "/login"  # Osprey's login gives the key on
    clock.advance(seconds=10)
    assert note in panels(crane)


def test_the_live_log_links_an_sos_to_its_alert_and_its_banner_arrives_on_a_page_opened_before(app, clock):
    a_night_on_patrol(app, clock)
    osprey = logged_in(app, "Osprey", people.HOST)
    live = osprey.get("/host/live").get_data(as_text=True)
    assert 'id="alert-banner"></div>' in live  # open before any alert: an empty place for the banner
    assert 'data-banner="/host/board/alert-banner"' in live
    assert osprey.get("/host/board/alert-banner").get_data(as_text=True).strip() == ""
    with app.app_context():
        sos = alerts.raise_sos(db.session, clock(), member(db.session, "Wren"), None, patrol.SOURCE_RADIO)
        [entry] = [e for e in patrol.recent_entries(db.session) if e.kind == "sos"]
        db.session.commit()
        sos_id, entry_id = sos.id, entry.id
    banner = text_of(osprey.get("/host/board/alert-banner"))
    assert banner.startswith("1 open alert: see who is on their way on the alerts page A1 SOS · Wren · Market")

    live = osprey.get("/host/live")
    row = text_of(live)
    assert "URGENT SOS" in row and "Alert: A1" in row and "Note: A1" not in row
    link = f"/host/log/{entry_id}/alert"
    assert f'href="{link}"' in live.get_data(as_text=True)
    assert osprey.get(link).headers["Location"] == f"/host/alerts#alert-{sos_id}"
    # A check-in links nowhere: it raised no alert.
    with app.app_context():
        check_in = patrol.record_check_in(db.session, clock(), member(db.session, "Kestrel"), patrol.SOURCE_RADIO)
        db.session.commit()
        check_in_id = check_in.id
    assert osprey.get(f"/host/log/{check_in_id}/alert", follow_redirects=True).request.path == "/host/alerts"


def test_the_board_in_the_terminal_prints_once_with_the_fake_clock(app, clock, runner):
    a_night_on_patrol(app, clock)
    clock.advance(minutes=5)
    with app.app_context():
        radio.bridge_status(db.session).heartbeat_at = clock()
        alerts.raise_sos(db.session, clock(), member(db.session, "Wren"), "by the fountain", patrol.SOURCE_RADIO)
        patrol.record_incident(db.session, clock(), member(db.session, "Kestrel"), patrol.SOURCE_RADIO,
                               what="a man in a red coat")
        db.session.commit()
    done = runner.invoke(args=["board", "--once"])
    assert done.exit_code == 0, done.output
    printed = done.output
    assert printed.startswith("SAFE BENCH BOARD · 20:05 · q to quit")
    assert "!! A1 SOS · Wren · by the fountain · 0 min ago · nobody responding yet" in printed
    assert re.search(r"Wren +Market +last heard 5 min ago · due in 15 min \[unverified radio\]", printed)
    assert re.search(r"Kestrel +Canal +last heard 0 min ago · due in 20 min\n", printed)
    assert "C1 Market · 3 taken · 1 out · 2 held · 6 h: 42 h to the 48-hour mark" in printed
    assert "RADIO: connected since 20:00" in printed
    assert "airtime 54 s of 360 s in the last hour (15%)" in printed
    assert re.search(r"!! 20:05 SOS +Wren", printed)
    assert "red coat" not in printed  # no login in a terminal: no sealed word


def test_safebench_board_once_in_a_real_process_on_the_hubs_database(tmp_path):
    """A real hub's database on the wall clock (the child process reads its own clock), read by ``safebench board``."""
    instance = tmp_path / "instance"
    app = make_app(instance, utcnow)
    make_member(app, "Wren", people.STEWARD, node=WREN_NODE)
    make_member(app, "Kestrel", people.STEWARD, node=KESTREL_NODE)
    with app.app_context():
        now = utcnow()
        patrol.add_area(db.session, "Market")
        patrol.start_shift(db.session, now, member(db.session, "Wren"), "Market", patrol.SOURCE_RADIO)
        patrol.record_check_in(db.session, now, member(db.session, "Wren"), patrol.SOURCE_RADIO,
                               note="quiet by the fountain, man in red at number 12")
        alerts.raise_sos(db.session, now, member(db.session, "Wren"), "Market", patrol.SOURCE_RADIO)
        # A silent alert never reaches a screen anyone in the room may read.
        alerts.raise_alert(db.session, now, alerts.DURESS, member(db.session, "Kestrel"), None, patrol.SOURCE_RADIO)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()

    for args in (["board", "--once"], ["board"]):  # not a terminal: printed once either way
        done = safebench(instance, *args)
        assert done.returncode == 0, done.stderr
        printed = done.stdout
        assert "Traceback" not in printed + done.stderr
        assert "OPEN ALERTS (1)" in printed and "!! A1 SOS · Wren · Market" in printed
        assert re.search(r"Wren +Market +last heard 0 min ago · due in (19|20) min \[unverified radio\]", printed)
        assert "RADIO: no radio bridge has run on this hub yet" in printed
        assert "Silent alert" not in printed and "duress" not in printed.lower()
        assert "fountain" not in printed and "number 12" not in printed
    assert "Usage: safebench board" in safebench(instance, "board", "--help").stdout
    assert PASSWORD not in printed
    # Piped into something that stops reading at once (`| head -1`): no traceback, a clean exit.
    reader = subprocess.Popen([SAFEBENCH, "board", "--once"], env=env_for(instance), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdout.close()
    assert reader.wait(timeout=60) == 0
    assert b"Traceback" not in reader.stderr.read()
