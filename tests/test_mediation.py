"""Stories of mediation: a neighbour asks, keeps a receipt code, and mediators work the request."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from server.domain import codes, mediation, sealing
from server.domain.mediation import MAX_WHAT, MAX_WHERE, MediationNote, MediationRequest
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import PASSWORD, login, make_app, make_member, submit, text_of, unsealed

CONFLICT = {
    "what": "Music from the flat below until 3 every night.\r\nI knocked once and it got worse.",
    "where": "Larch Street 12, second floor",
    "who": "the couple downstairs",
    "urgency": "soon",
    "contact": "ask for Robin at the bench",
}
_RECEIPT = re.compile(r'class="receipt"[^>]*>([^<]+)<')


def ask_for_mediation(client, **changes: str):
    """A neighbour fills in the mediation form and sends it."""
    return submit(client, "/mediation/new", {**CONFLICT, **changes})


def receipt_code(response) -> str:
    match = _RECEIPT.search(response.get_data(as_text=True))
    assert match, text_of(response)
    return match.group(1).strip()


def check_status(client, code: str):
    return submit(client, "/mediation/status", {"code": code})


def count_rows(app, model: type = MediationRequest) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def only_request_id(app) -> int:
    with app.app_context():
        return db.session.scalars(select(MediationRequest.id)).one()


def log_in(app, handle: str, landing: str):
    """Another browser, logged in as ``handle`` and sent on to ``landing``, as after following a link."""
    browser = app.test_client()
    page = submit(browser, "/login", {"handle": handle, "password": PASSWORD}, action=f"/login?next={landing}")
    assert page.request.path == landing, text_of(page)
    return browser


def mediator_client(app, handle: str = "Wren"):
    """A mediator opens the queue, logs in, and lands back on it."""
    make_member(app, handle, "mediator")
    browser = log_in(app, handle, "/host/mediation")
    return browser


def act(browser, request_id: int, action: str, data: dict | None = None):
    """A mediator presses a button on the request's page."""
    page = f"/host/mediation/{request_id}"
    return submit(browser, page, data or {}, action=f"{page}/{action}")


def test_a_neighbour_asks_for_mediation_and_checks_the_status_with_the_receipt_code(client, app):
    form = client.get("/mediation/new")
    assert form.status_code == 200
    assert "Only the bench's mediators read what you write here" in text_of(form)
    assert "receipt code" in text_of(form)

    receipt = ask_for_mediation(client)
    assert receipt.status_code == 200
    assert receipt.request.path == "/mediation/receipt"
    code = receipt_code(receipt)
    assert re.fullmatch(r"M-[0-9A-Z]{4}-[0-9A-Z]{4}", code)
    assert "Write it down" in text_of(receipt)

    status = check_status(client, code)
    assert status.status_code == 200
    page = text_of(status)
    assert "Received, waiting for a mediator" in page
    assert "Received on Sat 21 Nov 2026" in page
    # The code is a bearer token: whoever holds it learns nothing of the conflict.
    for told in ("Music from the flat", "Larch Street", "couple downstairs", "Robin"):
        assert told not in page

    with app.app_context():
        kept = db.session.scalars(select(MediationRequest)).one()
        # Sealed on the card; opened, one line break from the browser's CRLF, not a blank line.
        assert sealing.is_sealed(kept.what)
    assert unsealed(app, kept.what) == "Music from the flat below until 3 every night.\nI knocked once and it got worse."


def test_refreshing_the_receipt_page_does_not_send_the_request_twice(client, app):
    code = receipt_code(ask_for_mediation(client))
    for _refresh in range(3):
        again = client.get("/mediation/receipt")
        assert again.status_code == 200
        assert receipt_code(again) == code
    assert count_rows(app) == 1

    # Someone else's phone, with no receipt in its session, is sent to the status form.
    other = app.test_client().get("/mediation/receipt")
    assert other.status_code == 302
    assert other.headers["Location"].endswith("/mediation/status")


def test_a_mediator_takes_a_request_works_it_resolves_and_closes_it(client, app):
    code = receipt_code(ask_for_mediation(client, urgency="urgent"))
    wren = mediator_client(app)
    request_id = only_request_id(app)

    queue = text_of(wren.get("/host/mediation"))
    assert code in queue
    assert "Today — it may escalate" in queue
    assert "nobody has taken it yet" in queue

    detail = text_of(wren.get(f"/host/mediation/{request_id}"))
    for told in ("Music from the flat", "Larch Street 12", "the couple downstairs", "ask for Robin at the bench"):
        assert told in detail

    taken = act(wren, request_id, "take")
    assert taken.status_code == 200
    assert "You have taken this request" in text_of(taken)
    assert "mediator: Wren" in text_of(taken)

    started = act(wren, request_id, "status", {"status": "in_progress"})
    assert "Status is now: Mediation in progress" in text_of(started)

    noted = act(wren, request_id, "notes", {"text": "Met both at the bench.\r\nAgreed: quiet after 22:00."})
    assert noted.status_code == 200
    assert "Agreed: quiet after 22:00." in text_of(noted)
    assert "Wren ·" in text_of(noted)

    assert "Status is now: Resolved" in text_of(act(wren, request_id, "status", {"status": "resolved"}))
    closed = act(wren, request_id, "status", {"status": "closed"})
    assert "Status is now: Closed" in text_of(closed)
    assert "deleted 14 days" in text_of(closed)

    # A closed request cannot move on, whatever a stale page still offers.
    refused = act(wren, request_id, "status", {"status": "in_progress"})
    assert refused.status_code == 400
    assert "A request that is closed cannot become mediation in progress." in text_of(refused)
    retaken = act(wren, request_id, "take")
    assert retaken.status_code == 400
    assert "This request is finished" in text_of(retaken)

    assert code not in text_of(wren.get("/host/mediation"))
    assert code in text_of(wren.get("/host/mediation?finished=1"))

    status = text_of(check_status(client, code))
    assert "Closed" in status
    assert "quiet after 22:00" not in status


def test_an_empty_note_or_an_unknown_status_comes_back_to_the_mediator(client, app):
    ask_for_mediation(client)
    wren = mediator_client(app)
    request_id = only_request_id(app)

    empty = act(wren, request_id, "notes", {"text": "   "})
    assert empty.status_code == 400
    assert "Please write the note first." in text_of(empty)

    long_note = act(wren, request_id, "notes", {"text": "n" * (mediation.MAX_NOTE + 1)})
    assert long_note.status_code == 400
    assert f"at most {mediation.MAX_NOTE} fit here" in text_of(long_note)

    odd = act(wren, request_id, "status", {"status": "forgotten"})
    assert odd.status_code == 400
    assert count_rows(app, MediationNote) == 0

    assert wren.get("/host/mediation/999").status_code == 404
    assert wren.get("/host/mediation/99999999999999999999999").status_code == 404


def test_the_mediation_queue_is_only_for_mediators(client, app):
    ask_for_mediation(client)
    request_id = only_request_id(app)

    anonymous = app.test_client()
    for page in ("/host/mediation", f"/host/mediation/{request_id}"):
        answer = anonymous.get(page)
        assert answer.status_code == 302
        assert "/login" in answer.headers["Location"]

    make_member(app, "Kestrel", "host")
    kestrel = log_in(app, "Kestrel", "/")
    assert kestrel.get("/host/mediation").status_code == 403
    denied = kestrel.get(f"/host/mediation/{request_id}")
    assert denied.status_code == 403
    assert "Music from the flat" not in text_of(denied)
    # The bench page carries a CSRF token in its logout form; the action is still refused.
    assert submit(kestrel, "/", {}, action=f"/host/mediation/{request_id}/take").status_code == 403


def test_a_description_left_empty_or_too_long_comes_back_with_the_rest_kept(client, app):
    empty = ask_for_mediation(client, what="")
    assert empty.status_code == 400
    page = text_of(empty)
    assert "Please describe what happened" in page
    html = empty.get_data(as_text=True)
    assert 'value="Larch Street 12, second floor"' in html
    assert "the couple downstairs" in html
    assert 'value="ask for Robin at the bench"' in html

    too_long = ask_for_mediation(client, what="loud " * (MAX_WHAT // 5) + "!")
    assert too_long.status_code == 400
    assert f"That is {MAX_WHAT + 1} characters; at most {MAX_WHAT} fit here." in text_of(too_long)
    assert "loud loud loud" in too_long.get_data(as_text=True)
    assert 'value="Larch Street 12, second floor"' in too_long.get_data(as_text=True)

    # Characters that look like something but are nothing: the domain refuses them.
    invisible = ask_for_mediation(client, what="\u200b\u200b")
    assert invisible.status_code == 400
    assert "Please fill in the description." in text_of(invisible)

    assert ask_for_mediation(client, where="x" * (MAX_WHERE + 1)).status_code == 400
    assert ask_for_mediation(client, urgency="yesterday").status_code == 400
    assert count_rows(app) == 0


def test_an_unknown_receipt_code_gets_a_clear_message(client):
    unknown = check_status(client, "M-ZZZZ-ZZZZ")
    assert unknown.status_code == 400
    assert "No request has that receipt code" in text_of(unknown)
    assert 'value="M-ZZZZ-ZZZZ"' in unknown.get_data(as_text=True)

    for typed in ("hello!", "<script>", "M-" + "7" * 500, ""):
        answer = check_status(client, typed)
        assert answer.status_code == 400, typed
        assert answer.request.path == "/mediation/status"


def test_a_receipt_code_typed_loosely_still_finds_the_request(client, monkeypatch):
    # A code with a zero and a one, the characters people mistype most.
    monkeypatch.setattr(codes, "new_receipt_code", lambda prefix: f"{prefix}-0K1P-9QXD")
    assert receipt_code(ask_for_mediation(client)) == "M-0K1P-9QXD"

    for typed in ("m-0k1p-9qxd", "M0K1P9QXD", "mOkLp 9qxd", " M-OKIP-9QXD "):
        answer = check_status(client, typed)
        assert answer.status_code == 200, typed
        assert "Received, waiting for a mediator" in text_of(answer)


def test_a_closed_request_is_purged_after_the_retention_days(client, app, clock):
    code = receipt_code(ask_for_mediation(client))
    wren = mediator_client(app)
    request_id = only_request_id(app)
    act(wren, request_id, "take")
    act(wren, request_id, "notes", {"text": "They did not want to meet."})
    act(wren, request_id, "status", {"status": "closed"})
    retention = app.config["MEDIATION_RETENTION_DAYS"]

    clock.advance(days=retention - 1)
    run_all_once(app)
    assert "Closed" in text_of(check_status(client, code))

    clock.advance(days=1, minutes=1)
    run_all_once(app)
    assert count_rows(app) == 0
    assert count_rows(app, MediationNote) == 0
    gone = check_status(client, code)
    assert gone.status_code == 400
    assert "requests are deleted some days after they close" in text_of(gone)
    # Days went by: Wren's login ended long ago, so she logs in again to find the request gone.
    login(wren, "Wren")
    assert wren.get(f"/host/mediation/{request_id}").status_code == 404


def test_the_public_forms_answer_too_many_tries_kindly(tmp_path, clock):
    # The limiter reads RATELIMIT_ENABLED once, when the app is built: it must be on from the start.
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=True,
                   PUBLIC_FORM_LIMIT="2 per hour", RECEIPT_LOOKUP_LIMIT="3 per hour")
    client = app.test_client()
    try:
        code = receipt_code(ask_for_mediation(client))
        ask_for_mediation(client)
        refused = ask_for_mediation(client, what="A third time, from the same phone.")
        assert refused.status_code == 429
        assert "Too many tries from this phone" in text_of(refused)
        assert "A third time, from the same phone." in text_of(refused)
        assert count_rows(app) == 2
        # Reading the form is never limited.
        assert client.get("/mediation/new").status_code == 200

        for _try in range(2):
            check_status(client, "M-ZZZZ-ZZZZ")
        assert check_status(client, code).status_code == 200
        assert check_status(client, code).status_code == 429
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
