"""Stories of the open task map (issue 16): tasks created on the web, taken and closed by radio or the web,
overdue ones on the board and the bench page, the public map that never says who took a task, a neighbour
volunteering through the aid board's brokered contact, and the audit's counts.

The radio stories use the real meshtastic library against the simulated radio, as tests/test_radio_bridge.py
does (its fixtures: Kestrel and Wren with their radio keys pinned, the area Market).
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from server.board_terminal import lines as terminal_lines
from server.domain import aid, audit, board, lunar, people, power_record, radio_trust, sealing, tasks
from server.domain.patrol import Area, add_area
from server.domain.radio_text import utf8_len
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import login, make_app, make_member, seat_role, submit, text_of, unsealed
from tests.test_radio_bridge import KESTREL, WREN, bridge, sim, texts_on_air, turn_until, turns  # noqa: F401

WHEN = "%Y-%m-%dT%H:%M"


def a_web_hub(clock, tmp_path):
    """The web hub as it runs beside the bridge: its own app on the same database file and clock."""
    return make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache",
                    CACHE_NO_NULL_WARNING=True)


def create_task(client, clock, *, title="Fix the gate latch at the allotments", area="Market", hours=(1, 5),
                public=False, done_means="the gate closes and latches by itself"):
    with client.application.app_context():
        area_id = next(a.id for a in db.session.scalars(select(Area)) if a.name == area)
    data = {"title": title, "done_means": done_means, "area": str(area_id),
            "starts_at": (clock() + timedelta(hours=hours[0])).strftime(WHEN),
            "due_at": (clock() + timedelta(hours=hours[1])).strftime(WHEN)}
    if public:
        data["public"] = "y"
    return submit(client, "/host/tasks/new", data)


def the_task(app, code: str = "T1") -> tasks.Task:
    with app.app_context():
        task = db.session.scalar(select(tasks.Task).where(tasks.Task.code == code).order_by(tasks.Task.id.desc()))
        db.session.expunge_all()
        return task


@pytest.fixture
def hub(app):
    """Market and Allotments published; Heron the host, Kestrel and Wren stewards who can log in."""
    with app.app_context():
        add_area(db.session, "Market")
        add_area(db.session, "Allotments")
        db.session.commit()
    make_member(app, "Heron", people.HOST)
    make_member(app, "Kestrel", people.STEWARD)
    make_member(app, "Wren", people.STEWARD)
    return app


# -- the radio ---------------------------------------------------------------------------------------


def test_a_task_created_on_the_web_is_taken_and_closed_by_radio_and_its_account_written_on_the_web(
        bridge, sim, clock, tmp_path):  # noqa: F811
    web = a_web_hub(clock, tmp_path)
    try:
        make_member(web, "Heron", people.HOST)
        heron = web.test_client()
        login(heron, "Heron")
        created = create_task(heron, clock)
        assert "Task T1 is on the map" in text_of(created)

        # Kestrel takes it from her handheld, by a direct message to the hub: the hub answers with the task.
        sim.deliver_dm(KESTREL, "TAKE T1")
        turn_until(bridge, lambda: len(sim.sent_packets) == 1)
        (answer,) = texts_on_air(sim)
        assert sim.sent_packets[0].to == KESTREL
        assert answer.startswith("T1 is yours: Fix the gate latch at the allotments, Market, until ")
        assert "DONE T1" in answer and utf8_len(answer) <= 200
        task = the_task(web)
        assert (task.status, task.taken_via) == (tasks.TAKEN, "radio")

        clock.advance(hours=2)
        sim.deliver_dm(KESTREL, "DONE T1 fixed the gate latch, new screw")
        turn_until(bridge, lambda: len(sim.sent_packets) == 2)
        assert texts_on_air(sim)[1] == "T1 done. Thank you. Please write its after-action account on the hub."
        task = the_task(web)
        assert task.status == tasks.DONE and sealing.is_sealed(task.result)
        assert unsealed(web, task.result) == "fixed the gate latch, new screw"

        # On the web she is asked for the after-action account, on every hub page until it is written.
        with web.app_context():
            people.set_password(people.get_member(db.session, "Kestrel"), "correct horse battery")
            db.session.commit()
        kestrel = web.test_client()
        dashboard = text_of(login(kestrel, "Kestrel"))
        assert "You closed a task: please write its after-action account." in dashboard
        page = f"/host/tasks/{task.id}"
        kept = submit(kestrel, page, {"account-text": "Latch screw was rusted through. Keep spare screws in the bench box."},
                      action=f"{page}/account")
        assert "kept for the assembly" in text_of(kept)
        assert "please write its after-action account" not in text_of(kestrel.get("/host/tasks"))
        task = the_task(web)
        assert sealing.is_sealed(task.account)
        # Hosts and captains read it on the assembly's page (Heron's login ended while she was away: again).
        login(heron, "Heron")
        accounts = text_of(heron.get("/host/tasks/accounts"))
        assert "Latch screw was rusted through" in accounts and "fixed the gate latch, new screw" in accounts
        turns(bridge, 0.3)
        assert len(sim.sent_packets) == 2  # nothing more on the air
    finally:
        with web.app_context():
            db.session.remove()
            db.engine.dispose()


def test_take_and_done_from_an_unverified_sender_are_refused_and_the_hosts_see_the_attempt(bridge, sim):  # noqa: F811
    heron = people.add_member(db.session, _clock_now(), "Heron", None)
    seat_role(db.session, _clock_now(), heron, people.HOST)
    market = db.session.scalar(select(Area))
    tasks.create(db.session, _clock_now(), heron, title="Carry the spare chargers to the bench",
                 done_means="chargers in the bench box", area_id=market.id, starts_at=_clock_now(),
                 due_at=_clock_now() + timedelta(hours=3))
    db.session.commit()

    # Someone holding the channel key writes Kestrel's node as the sender, on the channel.
    sim.deliver_text(KESTREL, "TAKE T1")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    (refusal,) = texts_on_air(sim)
    assert refusal.startswith("TAKE counts only as a direct message from your own radio to the hub")
    db.session.expire_all()
    task = db.session.scalar(select(tasks.Task))
    assert task.status == tasks.OPEN and task.taken_by is None
    assert any("TAKE T1 claimed to be from Kestrel: refused" in event.detail for event in trust_events())

    sim.deliver_text(WREN, "DONE T1 all done")
    turns(bridge, 0.5)
    db.session.expire_all()
    assert db.session.scalar(select(tasks.Task)).status == tasks.OPEN

    # From Wren's own radio, as a direct message, DONE counts: doing it was taking it.
    sim.deliver_dm(WREN, "DONE T1 chargers in the box")
    turn_until(bridge, lambda: any(p.text and p.text.startswith("T1 done") for p in sim.sent_packets))
    db.session.expire_all()
    task = db.session.scalar(select(tasks.Task))
    assert task.status == tasks.DONE and task.taken_by.handle == "Wren" and task.closed_by.handle == "Wren"


def trust_events():
    return radio_trust.recent_events(db.session)


def _clock_now():
    from flask import current_app

    return current_app.config["CLOCK"]()


def test_a_task_taken_by_someone_else_cannot_be_taken_or_closed_by_radio(bridge, sim):  # noqa: F811
    heron = people.add_member(db.session, _clock_now(), "Heron", None)
    seat_role(db.session, _clock_now(), heron, people.HOST)
    market = db.session.scalar(select(Area))
    task = tasks.create(db.session, _clock_now(), heron, title="Sweep the glass by the bus stop",
                        done_means="no glass left", area_id=market.id, starts_at=_clock_now(),
                        due_at=_clock_now() + timedelta(hours=3)).task
    tasks.take(db.session, _clock_now(), task, people.get_member(db.session, "Kestrel"))
    db.session.commit()

    sim.deliver_dm(WREN, "TAKE T1")
    turn_until(bridge, lambda: len(sim.sent_packets) == 1)
    assert texts_on_air(sim) == ["T1 is taken already; its creator or a host can release it."]
    db.session.expire_all()
    assert db.session.scalar(select(tasks.Task)).taken_by.handle == "Kestrel"


# -- the web, the board, the bench page --------------------------------------------------------------


def test_a_task_is_taken_released_and_done_on_the_web_and_only_hosts_and_captains_create(hub, client, clock):
    login(client, "Kestrel")
    assert client.get("/host/tasks/new").status_code == 403
    heron = hub.test_client()
    login(heron, "Heron")
    create_task(heron, clock)
    task = the_task(hub)
    page = f"/host/tasks/{task.id}"

    assert "The task is yours" in text_of(submit(client, page, {}, action=f"{page}/take"))
    # Kestrel goes quiet. Heron releases it, and must say why: it lands in the record of power used.
    refused = submit(heron, page, {"release-reason": ""}, action=f"{page}/release")
    assert refused.status_code == 400 and "Please fill in the reason" in text_of(refused)
    assert "There is a problem" in text_of(refused)
    released = submit(heron, page, {"release-reason": "Kestrel is ill this week"}, action=f"{page}/release")
    assert "back on the map" in text_of(released)
    with hub.app_context():
        use = db.session.scalars(select(power_record.PowerUse).order_by(power_record.PowerUse.id.desc())).first()
        assert (use.action, use.actor, use.subject) == ("task-released", "Heron", "task T1: released from Kestrel")

    wren = hub.test_client()
    login(wren, "Wren")
    submit(wren, page, {}, action=f"{page}/take")
    empty = submit(wren, page, {"done-result": ""}, action=f"{page}/done")
    assert empty.status_code == 400 and "Please say in a line what was done." in text_of(empty)
    done = submit(wren, page, {"done-result": "latch fixed"}, action=f"{page}/done")
    assert "Please write its after-action account now" in text_of(done)
    # Only whoever closed it writes the account.
    other = submit(heron, page, {"account-text": "I was not there"}, action=f"{page}/account")
    assert other.status_code == 400 and "written by whoever closed the task" in text_of(other)


def test_a_bad_task_form_reports_every_problem_at_once_and_keeps_what_was_typed(hub, clock):
    heron = hub.test_client()
    login(heron, "Heron")
    answer = submit(heron, "/host/tasks/new", {
        "title": "Paint over the graffiti", "done_means": "", "area": "",
        "starts_at": (clock() - timedelta(hours=5)).strftime(WHEN),
        "due_at": (clock() - timedelta(hours=1)).strftime(WHEN)})
    page = text_of(answer)
    assert answer.status_code == 400
    assert "There are 3 problems" in page
    assert "Please choose the published area where the task is." in page
    assert "That time frame is over already" in page
    assert 'value="Paint over the graffiti"' in answer.get_data(as_text=True)

    public_with_a_number = submit(heron, "/host/tasks/new", {
        "title": "Call Sam on 0151 496 0123 about the gate", "done_means": "gate fixed",
        "area": "1", "starts_at": clock().strftime(WHEN), "due_at": (clock() + timedelta(hours=2)).strftime(WHEN),
        "public": "y"})
    assert public_with_a_number.status_code == 400
    assert "looks like a phone number" in text_of(public_with_a_number)


def test_an_overdue_task_shows_on_the_board_the_terminal_and_the_bench_page_never_saying_who_took_it(
        hub, client, clock):
    heron = hub.test_client()
    login(heron, "Heron")
    create_task(heron, clock, title="Replace the bench's bulb", public=True, hours=(0, 2))
    create_task(heron, clock, title="Walk the Allotments path before dusk", area="Allotments", hours=(0, 30))
    task = the_task(hub)
    kestrel = hub.test_client()
    login(kestrel, "Kestrel")
    submit(kestrel, f"/host/tasks/{task.id}", {}, action=f"/host/tasks/{task.id}/take")

    bench = text_of(client.get("/"))
    assert "Replace the bench's bulb" in bench and "Help needed" not in bench
    assert "Walk the Allotments path" not in bench  # not public

    clock.advance(hours=3)
    login(heron, "Heron")  # her login ended while the hours passed
    board_page = text_of(heron.get("/host/board"))
    assert "Overdue tasks 1" in board_page
    assert "T1 Replace the bench's bulb · Market" in board_page and "Taken by Kestrel" in board_page
    assert "Walk the Allotments path" not in board_page  # not overdue
    with hub.app_context():
        read = board.read_board(db.session, clock(), board.BoardRules.from_config(hub.config),
                                hidden_kinds=frozenset(), show_silent=False)
        printed = "\n".join(text for text, _urgent in terminal_lines(read, None))
    assert "OVERDUE TASKS (1)" in printed and "T1 Replace the bench's bulb · Market" in printed

    bench = client.get("/")
    assert "Help needed Replace the bench's bulb" in text_of(bench)
    assert "Kestrel" not in bench.get_data(as_text=True)
    assert "<script" not in bench.get_data(as_text=True)

    # Kestrel stays quiet: twelve hours past its "until" the hub puts it back on the map, and says so.
    clock.advance(hours=12)
    run_all_once(hub)
    with hub.app_context():
        task = db.session.get(tasks.Task, task.id)
        assert task.status == tasks.OPEN and task.taken_by is None
        use = db.session.scalars(select(power_record.PowerUse).order_by(power_record.PowerUse.id.desc())).first()
        assert (use.action, use.actor) == ("task-released", power_record.SYSTEM)


def test_the_public_task_map_lists_open_tasks_by_area_and_never_who_took_one_or_what_anyone_wrote(
        hub, client, clock):
    heron = hub.test_client()
    login(heron, "Heron")
    made = create_task(heron, clock, title="Clear the leaves from the Allotments drain", area="Allotments", public=True)
    # The creator is shown the ask's receipt code once, as the task is made; the hub keeps no copy.
    code = re.search(r"the code (H-[0-9A-Z]{4}-[0-9A-Z]{4}) on the aid board", text_of(made)).group(1)
    assert code not in text_of(heron.get("/host/tasks/1"))
    create_task(heron, clock, title="Fix the Market noticeboard", public=True)
    create_task(heron, clock, title="Escort the late shift home", public=False)
    kestrel = hub.test_client()
    login(kestrel, "Kestrel")
    drain = the_task(hub, "T1")
    submit(kestrel, f"/host/tasks/{drain.id}", {}, action=f"/host/tasks/{drain.id}/take")
    board_ = the_task(hub, "T2")
    submit(kestrel, f"/host/tasks/{board_.id}", {}, action=f"/host/tasks/{board_.id}/take")
    submit(kestrel, f"/host/tasks/{board_.id}", {"done-result": "pinned the board back SECRET-RESULT"},
           action=f"/host/tasks/{board_.id}/done")
    submit(kestrel, f"/host/tasks/{board_.id}", {"account-text": "SECRET-ACCOUNT the screws were gone"},
           action=f"/host/tasks/{board_.id}/account")

    page = client.get("/tasks")
    html, words = page.get_data(as_text=True), text_of(page)
    assert page.status_code == 200
    assert "Allotments" in words and "Clear the leaves from the Allotments drain" in words
    assert "Done when: the gate closes and latches by itself" in words
    assert "Fix the Market noticeboard" not in words  # done: off the map
    assert "Escort the late shift home" not in words  # not public
    for private in ("Kestrel", "Heron", "SECRET-RESULT", "SECRET-ACCOUNT", "taken", "Taken", "<script"):
        assert private not in html, private
    assert client.get("/host/tasks/accounts").status_code == 302  # to the login: never public

    # The aid board's brokered contact: the task is an ask there; its answer reaches the creator by the code.
    offer = re.search(r'href="/aid/(\d+)"', html)
    assert offer, "the map offers the aid board's contact"
    sent = submit(client, f"/aid/{offer.group(1)}", {"contact_choice": aid.SHOWN,
                                                     "text": "I can bring a rake on Saturday: robin@example.org"})
    assert sent.request.path == "/aid/sent"
    mine = submit(heron, "/aid/mine", {"code": code})
    assert "I can bring a rake on Saturday: robin@example.org" in text_of(mine)
    # Nothing about the volunteer reaches the public map or the bench page.
    assert "robin" not in client.get("/tasks").get_data(as_text=True)
    assert "robin" not in client.get("/").get_data(as_text=True)

    # Done, the task's ask leaves the aid board with it.
    submit(kestrel, f"/host/tasks/{drain.id}", {"done-result": "drain clear"}, action=f"/host/tasks/{drain.id}/done")
    assert client.get(f"/aid/{offer.group(1)}").status_code == 404


def test_the_audit_counts_closed_tasks_and_written_accounts_never_their_words(hub, clock):
    heron = hub.test_client()
    login(heron, "Heron")
    for title in ("Fix the gate", "Paint the bench", "Check the first-aid kit", "Mend the sign"):
        create_task(heron, clock, title=title)
    with hub.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        for number, code in enumerate(("T1", "T2", "T3")):
            task = tasks.find_open(db.session, code)
            tasks.finish(db.session, clock(), task, kestrel, f"done {code}")
            if number < 2:
                tasks.write_account(db.session, clock(), task, kestrel, f"ACCOUNT-{code} went fine")
        db.session.commit()
        report = audit.report(db.session, lunar.cycle_at(clock()), clock(), 360.0)
        assert (report.tasks_done, report.task_accounts) == (3, 2)
        audit.keep_tally(db.session, clock())
        db.session.commit()
        kept = audit.find(db.session, lunar.cycle_at(clock()).number).facts
        assert "ACCOUNT-" not in kept and "done T" not in kept
    page = text_of(hub.test_client().get("/audit"))
    assert "Tasks on the task map done 3" in page
    assert "After-action accounts written fewer than 3" in page


def test_closed_tasks_are_deleted_after_three_lunar_cycles_and_the_audit_keeps_their_count(hub, clock):
    with hub.app_context():
        heron = people.get_member(db.session, "Heron")
        market = db.session.scalar(select(Area))
        task = tasks.create(db.session, clock(), heron, title="Oil the gate", done_means="it is quiet",
                            area_id=market.id, starts_at=clock(), due_at=clock() + timedelta(hours=1)).task
        tasks.finish(db.session, clock(), task, heron, "oiled")
        db.session.commit()
        cycle = lunar.cycle_at(clock())
    run_all_once(hub)
    clock.advance(days=90)
    run_all_once(hub)
    with hub.app_context():
        assert db.session.scalar(select(tasks.Task)) is None
        assert audit.report(db.session, cycle, clock(), 360.0).tasks_done == 1


def test_the_bridge_reads_take_and_done_without_loading_the_web_app():
    code = ("import sys; import radio_bridge.inbound; "
            "print('flask' in sys.modules, 'server.domain.tasks' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
