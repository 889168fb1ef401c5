"""Stories of complaints about the patrol: a neighbour raises a concern, the accountability circle works it,
and the person it names never sees it."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from server.domain import complaints, people, power_record
from server.domain.complaints import Complaint, ComplaintExclusion
from server.domain.people import ACCOUNTABILITY, CAPTAIN, HOST, STEWARD
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import login, make_app, make_member, seat_role, submit, text_of

CONCERN = "Captain shoved a teenager against the Kiosk wall\r\nand laughed when asked for his handle."
TOLD = ("shoved a teenager", "Kiosk wall", "laughed when asked")
_RECEIPT = re.compile(r'class="receipt"[^>]*>([^<]+)<')


@pytest.fixture
def app(tmp_path, clock):
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache",
                   CACHE_NO_NULL_WARNING=True,
                   # Held streams end at once, so reading /host/live/events returns.
                   STREAM_HOLD_S=0.05)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def member_id(app, handle: str) -> int:
    with app.app_context():
        return people.get_member(db.session, handle).id


def raise_concern(client, about: str, what: str = CONCERN):
    """A neighbour's phone fills in the complaint form and sends it."""
    return submit(client, "/complaints/new", {"about": about, "what": what})


def receipt_code(response) -> str:
    match = _RECEIPT.search(response.get_data(as_text=True))
    assert match, text_of(response)
    return match.group(1).strip()


def check_status(client, code: str):
    return submit(client, "/complaints/status", {"code": code})


def only_complaint_id(app) -> int:
    with app.app_context():
        return db.session.scalars(select(Complaint.id)).one()


def browser_for(app, handle: str):
    browser = app.test_client()
    assert login(browser, handle).request.path != "/login"
    return browser


def act(browser, complaint_id: int, action: str, data: dict | None = None):
    page = f"/host/complaints/{complaint_id}"
    return submit(browser, page, data or {}, action=f"{page}/{action}")


def every_page(app, browser) -> dict[str, tuple[int, str]]:
    """Every GET route as this browser, each id that exists filled in, and the live stream from its start."""
    ids = {"complaint_id": Complaint, "member_id": people.Member, "assignment_id": people.RoleAssignment}
    seen = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        if set(rule.arguments) - set(ids):
            continue  # pages about other things (cases, posts, alerts): nothing of a complaint can be there
        with app.app_context():
            rows = {arg: list(db.session.scalars(select(ids[arg].id))) for arg in rule.arguments}
        combos = [{}] if not rule.arguments else [
            {arg: row} for arg in rule.arguments for row in rows[arg]]
        for values in combos:
            url = rule.build(values, append_unknown=False)[1]
            response = browser.get(url, headers={"Last-Event-ID": "0"})
            seen[url] = (response.status_code, response.get_data(as_text=True))
    return seen


def test_a_complaint_naming_a_captain_is_invisible_to_that_captain_in_every_view_and_stream(app, client):
    # Crane is a patrol captain and sits in the accountability circle too; Tern sits in the circle.
    make_member(app, "Crane", CAPTAIN, ACCOUNTABILITY)
    make_member(app, "Tern", ACCOUNTABILITY)
    make_member(app, "Osprey", HOST)
    crane = member_id(app, "Crane")

    form = client.get("/complaints/new")
    assert "Never the person you name" in text_of(form)
    assert f'value="member:{crane}"' in form.get_data(as_text=True), "the form offers Crane by handle"
    code = receipt_code(raise_concern(client, f"member:{crane}"))
    complaint_id = only_complaint_id(app)

    # Tern, in the circle, reads it: in the queue, on its page, as a count on the dashboard.
    tern = browser_for(app, "Tern")
    assert "About Crane" in text_of(tern.get("/host/complaints"))
    page = text_of(tern.get(f"/host/complaints/{complaint_id}"))
    assert all(told in page for told in TOLD)
    assert "Complaints waiting for the circle : 1" in text_of(tern.get("/host/"))

    # Crane, in the circle too, finds nothing of it anywhere: every page the hub has, the live log and its
    # stream, the dashboard's counts. Its own page answers as an id that never existed does.
    captain = browser_for(app, "Crane")
    for url, (status, body) in every_page(app, captain).items():
        assert status < 500, url
        for told in (*TOLD, "About Crane"):
            assert told not in body, (url, told)
    assert "No open complaints for you to read" in text_of(captain.get("/host/complaints"))
    assert "No complaints for you to read" in text_of(captain.get("/host/complaints?closed=1"))
    hidden, missing = captain.get(f"/host/complaints/{complaint_id}"), captain.get("/host/complaints/999")
    assert hidden.status_code == missing.status_code == 404
    assert text_of(hidden) == text_of(missing)
    assert "Complaints waiting for the circle : 0" in text_of(captain.get("/host/"))
    assert "Complaints" in text_of(captain.get("/host/")), "the circle's page is there for Crane's other complaints"
    assert captain.get("/host/live/events", headers={"Last-Event-ID": "0"}).status_code == 200
    # Nor can Crane act on it: taking it up or closing it answer the same 404 and change nothing.
    assert act(captain, complaint_id, "take").status_code == 404
    assert act(captain, complaint_id, "close", {"outcome": "Nothing happened."}).status_code == 404
    with app.app_context():
        assert db.session.get(Complaint, complaint_id).status == complaints.RECEIVED

    # The host reads no complaint at all: that is the circle's work.
    host = browser_for(app, "Osprey")
    assert host.get("/host/complaints").status_code == 403
    assert "Complaints waiting" not in text_of(host.get("/host/"))

    # Tern looks into it and closes it; the outcome stays inside the circle.
    assert "You are looking into this complaint" in text_of(act(tern, complaint_id, "take"))
    closed = act(tern, complaint_id, "close", {"outcome": "Talked with Crane; apology at the assembly."})
    assert "Closed." in text_of(closed) and "apology at the assembly" in text_of(closed)
    assert "apology at the assembly" not in text_of(captain.get("/host/complaints?closed=1"))
    with app.app_context():
        (use,) = [u for u in power_record.entries(db.session) if u.action == "complaint-closed"]
        assert (use.actor, use.role, use.subject) == ("Tern", ACCOUNTABILITY, f"complaint #{complaint_id}")
        assert "Crane" not in use.reason + use.subject and "apology" not in use.reason
    assert "Closed" in text_of(check_status(client, code))


def test_a_complaint_naming_a_role_is_kept_from_its_holders_and_read_by_the_rest_of_the_circle(app, client, clock):
    make_member(app, "Crane", CAPTAIN, ACCOUNTABILITY)
    make_member(app, "Tern", ACCOUNTABILITY)
    make_member(app, "Kite", ACCOUNTABILITY)
    raise_concern(client, "role:captain", "The captains sent stewards home early on a busy night.")
    complaint_id = only_complaint_id(app)

    assert "busy night" in text_of(browser_for(app, "Tern").get(f"/host/complaints/{complaint_id}"))
    assert browser_for(app, "Crane").get(f"/host/complaints/{complaint_id}").status_code == 404
    # Kite becomes a captain after it came in: kept from it too, while the role lasts.
    with app.app_context():
        kite = people.get_member(db.session, "Kite")
        seat_role(db.session, clock(), kite, CAPTAIN, term_days=7)
        db.session.commit()
    kite_browser = browser_for(app, "Kite")
    assert kite_browser.get(f"/host/complaints/{complaint_id}").status_code == 404
    # Crane's captaincy runs out; having held it when the complaint came in, Crane stays kept from it.
    clock.advance(days=30)
    with app.app_context():
        for handle in ("Crane", "Tern", "Kite"):
            seat_role(db.session, clock(), people.get_member(db.session, handle), ACCOUNTABILITY)
        db.session.commit()
    assert browser_for(app, "Crane").get(f"/host/complaints/{complaint_id}").status_code == 404
    assert "busy night" in text_of(browser_for(app, "Kite").get(f"/host/complaints/{complaint_id}"))


def test_when_nobody_in_the_circle_may_read_it_the_neighbour_is_told(app, client):
    make_member(app, "Tern", ACCOUNTABILITY)
    receipt = raise_concern(client, f"member:{member_id(app, 'Tern')}", "The circle's only member ignored me.")
    assert "Right now nobody in the accountability circle may read it" in text_of(receipt)
    assert "No open complaints for you to read" in text_of(browser_for(app, "Tern").get("/host/complaints"))
    # A complaint about how something was handled names nobody: the circle reads it.
    receipt = raise_concern(client, "handling", "Nobody came when we called about the fire.")
    assert "nobody in the accountability circle may read it" not in text_of(receipt)


def test_a_handle_written_in_the_complaint_keeps_that_member_from_it_and_the_list_respects_who_hides_their_handle(
        app, client):
    make_member(app, "Crane", CAPTAIN, ACCOUNTABILITY)
    make_member(app, "Tern", ACCOUNTABILITY)
    make_member(app, "Wren", STEWARD)
    # Wren chose to appear as "a steward" on the mandates page: the public form does not list Wren.
    with app.app_context():
        people.get_member(db.session, "Wren").appears_as_role = True
        db.session.commit()
    form = client.get("/complaints/new").get_data(as_text=True)
    assert f'value="member:{member_id(app, "Crane")}"' in form
    assert f'value="member:{member_id(app, "Wren")}"' not in form and ">Wren<" not in form
    refused = raise_concern(client, f"member:{member_id(app, 'Wren')}", "Wren was rude.")
    assert refused.status_code == 400

    # "How something was handled", but the neighbour writes Crane's handle: Crane is kept from it all the same.
    raise_concern(client, "handling", "Nobody came, and CRANE laughed about it on the radio.")
    complaint_id = only_complaint_id(app)
    assert browser_for(app, "Crane").get(f"/host/complaints/{complaint_id}").status_code == 404
    assert "laughed about it" in text_of(browser_for(app, "Tern").get(f"/host/complaints/{complaint_id}"))
    # A handle inside another word names nobody: not Tern in "Eastern", nor Crane in "cranes".
    raise_concern(client, "handling", "The Eastern gate was left open by the cranes' crew.")
    with app.app_context():
        newest = db.session.scalar(select(Complaint).order_by(Complaint.id.desc()).limit(1))
        assert newest.kept_from == []


def test_the_neighbour_follows_the_complaint_with_the_receipt_code_and_sees_state_and_dates_only(app, client, clock):
    make_member(app, "Tern", ACCOUNTABILITY)
    make_member(app, "Wren", STEWARD)
    receipt = raise_concern(client, f"member:{member_id(app, 'Wren')}")
    assert receipt.request.path == "/complaints/receipt"
    code = receipt_code(receipt)
    assert re.fullmatch(r"P-[0-9A-Z]{4}-[0-9A-Z]{4}", code)
    assert "Write it down" in text_of(receipt)
    assert client.get("/complaints/receipt").status_code == 200, "a refresh sends nothing again"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Complaint)) == 1

    status = text_of(check_status(client, code))
    assert "Received, waiting for the accountability circle" in status
    assert "Received on Sat 21 Nov 2026" in status
    assert not any(told in status for told in (*TOLD, "Wren"))

    tern = browser_for(app, "Tern")
    complaint_id = only_complaint_id(app)
    clock.advance(days=2)
    # Days pass between visits, and a login lasts far less: Tern logs in each time she comes back.
    login(tern, "Tern")
    act(tern, complaint_id, "take")
    status = text_of(check_status(client, code.lower().replace("-", "")))
    assert "Being looked into by the accountability circle" in status and "Last change on Mon 23 Nov 2026" in status
    clock.advance(days=3)
    login(tern, "Tern")
    act(tern, complaint_id, "close", {"outcome": "Spoke with Wren, who will apologise."})
    status = text_of(check_status(client, code))
    assert "Closed" in status and "Closed on Thu 26 Nov 2026" in status
    assert "apologise" not in status and "Wren" not in status

    unknown = check_status(client, "P-ZZZZ-ZZZZ")
    assert unknown.status_code == 400 and "No complaint has that receipt code" in text_of(unknown)


def test_the_counts_are_public_and_count_what_stays_open_past_a_lunar_cycle(app, client, clock):
    make_member(app, "Tern", ACCOUNTABILITY)
    raise_concern(client, "handling", "Nobody answered at the bench for an hour.")
    clock.advance(days=10)
    raise_concern(client, "role:host", "The host hid a log entry without saying why.")
    tern = browser_for(app, "Tern")
    with app.app_context():
        first, second = db.session.scalars(select(Complaint.id).order_by(Complaint.id)).all()
    act(tern, second, "close", {"outcome": "The host explained at the assembly."})

    bench = text_of(app.test_client().get("/"))
    assert "Complaints about the patrol so far: 2 raised, 1 closed, 1 open, 0 of them open longer than a lunar cycle" in bench
    clock.advance(days=19, hours=13)  # 29.54 days since the first came in
    assert "1 of them open longer than a lunar cycle" in text_of(app.test_client().get("/"))
    assert "2 raised, 1 closed, 1 open" in text_of(app.test_client().get("/complaints/new"))
    # Counts, never what or whom.
    assert "hid a log entry" not in bench and "Nobody answered" not in bench


def test_a_closed_complaint_is_purged_after_the_retention_days_and_still_counted(app, client, clock):
    make_member(app, "Tern", ACCOUNTABILITY, term_days=60)
    make_member(app, "Wren", STEWARD)
    code = receipt_code(raise_concern(client, f"member:{member_id(app, 'Wren')}"))
    complaint_id = only_complaint_id(app)
    tern = browser_for(app, "Tern")
    act(tern, complaint_id, "close", {"outcome": "Wren was not on shift that night."})
    retention = app.config["COMPLAINT_RETENTION_DAYS"]

    clock.advance(days=retention - 1)
    run_all_once(app)
    assert "Closed" in text_of(check_status(client, code))
    # Weeks later Tern's login has long ended: she logs in again to read it.
    login(tern, "Tern")
    assert "not on shift" in text_of(tern.get(f"/host/complaints/{complaint_id}"))

    clock.advance(days=1, minutes=1)
    run_all_once(app)
    login(tern, "Tern")
    with app.app_context():
        kept = db.session.get(Complaint, complaint_id)
        assert (kept.receipt_code, kept.what, kept.outcome, kept.about, kept.about_member_id) == (None,) * 5
        assert kept.created_at and kept.closed_at and kept.purged_at == clock()
        assert db.session.scalar(select(func.count()).select_from(ComplaintExclusion)) == 0
    gone = check_status(client, code)
    assert gone.status_code == 400 and "complaints are deleted some days after they close" in text_of(gone)
    assert tern.get(f"/host/complaints/{complaint_id}").status_code == 404
    assert "No complaints for you to read" in text_of(tern.get("/host/complaints?closed=1"))
    assert "1 raised, 1 closed, 0 open" in text_of(app.test_client().get("/"))


def test_the_form_refuses_what_it_cannot_take_with_words_next_to_the_field(app, client):
    make_member(app, "Tern", ACCOUNTABILITY)
    empty = raise_concern(client, "handling", "   ")
    assert empty.status_code == 400 and "Please say what happened" in text_of(empty)
    for about in ("role:accountability", "member:999", "member:x", "role:", "nobody"):
        refused = raise_concern(client, about, "Something happened.")
        assert refused.status_code == 400, about
        assert "Please choose from the list who or what your concern is about." in text_of(refused)
        assert "Something happened." in text_of(refused), "what they typed is kept"
    long = raise_concern(client, "handling", "x" * (complaints.MAX_WHAT + 1))
    assert long.status_code == 400 and "Please shorten it" in text_of(long)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Complaint)) == 0


def test_the_public_forms_answer_too_many_tries_kindly(tmp_path, clock):
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=True,
                   PUBLIC_FORM_LIMIT="2 per hour", RECEIPT_LOOKUP_LIMIT="3 per hour")
    client = app.test_client()
    try:
        code = receipt_code(raise_concern(client, "handling"))
        raise_concern(client, "handling")
        refused = raise_concern(client, "handling", "A third time, from the same phone.")
        assert refused.status_code == 429
        assert "Too many tries from this phone" in text_of(refused)
        assert client.get("/complaints/new").status_code == 200
        for _try in range(2):
            check_status(client, "P-ZZZZ-ZZZZ")
        assert check_status(client, code).status_code == 200
        assert check_status(client, code).status_code == 429
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
