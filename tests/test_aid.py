"""Stories of the aid board: offering and asking, answering, taking up, lapsing, moderating."""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import func, select

from server.domain import aid, patrol
from server.domain.aid import AidMessage, AidPost
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import csrf_token, login, make_app, make_member, submit, text_of

CONTACT = "Signal 07700 900123, ask for Rowan"
CHARGING = "Two chargers (USB-C and Lightning) on my porch, come by after 6"


def add_area(app, name: str) -> int:
    with app.app_context():
        area = patrol.add_area(db.session, name)
        db.session.commit()
        return area.id


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def post_of(app, code: str) -> AidPost:
    with app.app_context():
        post = aid.post_for_receipt(db.session, code).post
        db.session.expunge(post)
        return post


def receipt_code(response) -> str:
    match = re.search(r'class="receipt">\s*([^<\s]+)\s*<', response.get_data(as_text=True))
    assert match, text_of(response)
    return unescape(match.group(1))


def offer_charging(client, area_id: int | str = "", **changes):
    """A neighbour puts a phone-charging offer on the board; the response is the receipt page."""
    form = {"kind": "offer", "category": "charging", "text": CHARGING, "area": str(area_id), "days": "3",
            "contact": CONTACT, **changes}
    return submit(client, "/aid/new", form)


def test_a_neighbour_offers_phone_charging_and_it_is_on_the_board_without_the_contact(app, client):
    elm = add_area(app, "Elm Street")

    receipt = offer_charging(client, elm)

    assert receipt.status_code == 200
    code = receipt_code(receipt)
    assert code.startswith("H-")
    assert "Keep this code" in text_of(receipt)
    # Reloading the receipt shows the same code and posts nothing more.
    again = client.get("/aid/receipt")
    assert receipt_code(again) == code
    assert count(app, AidPost) == 1

    post_id = post_of(app, code).id
    board = client.get("/aid")
    board_text = text_of(board)
    assert CHARGING in board_text
    assert "Offer · Phone charging" in board_text
    assert "Elm Street" in board_text
    assert "until Tue 24 Nov 2026" in board_text
    bench = client.get("/")
    assert CHARGING in text_of(bench)
    post_page = client.get(f"/aid/{post_id}")
    assert "Leave a message for this offer" in text_of(post_page)
    for page in (board, bench, post_page):
        assert "07700" not in page.get_data(as_text=True)
        assert code not in page.get_data(as_text=True)

    # On a borrowed phone, the poster can make the phone forget the code (tests/test_receipts.py).
    submit(client, "/aid/receipt", {}, action="/aid/receipt/forget")
    assert client.get("/aid/receipt").status_code == 302


def test_the_board_filters_by_kind_and_category_and_ignores_nonsense(client):
    offer_charging(client)
    submit(client, "/aid/new", {"kind": "ask", "category": "rides", "text": "A lift to the clinic on Tuesday",
                                "area": "", "days": "2"})

    assert "A lift to the clinic" not in text_of(client.get("/aid?kind=offer"))
    only_rides = text_of(client.get("/aid?category=rides"))
    assert "A lift to the clinic" in only_rides and CHARGING not in only_rides
    for nonsense in ("?kind=bogus", "?category=%3Cscript%3E", "?kind=&category=", "?kind=offer&kind=ask", "?x=1"):
        page = client.get(f"/aid{nonsense}")
        assert page.status_code == 200, nonsense
        assert "<script>" not in page.get_data(as_text=True)
    assert "A lift to the clinic" in text_of(client.get("/aid?kind=bogus"))


def test_an_offer_is_answered_read_with_the_receipt_code_and_taken_up(app, client):
    code = receipt_code(offer_charging(client))
    post_id = post_of(app, code).id

    neighbour = app.test_client()
    sent = submit(neighbour, f"/aid/{post_id}", {"text": "My phone is dead since the outage.\nI'm at no. 9, knock twice.",
                                                 "contact_choice": "kept"})
    assert sent.status_code == 200
    assert "your message is with the hub" in text_of(sent)
    assert "What happens next" in text_of(sent)
    assert count(app, AidMessage) == 1

    mine = submit(client, "/aid/mine", {"code": code.lower().replace("-", " ")})
    mine_text = text_of(mine)
    assert mine.status_code == 200
    assert "Status: Open" in mine_text
    assert "My phone is dead since the outage." in mine_text
    assert "I'm at no. 9, knock twice." in mine_text
    # The poster's own contact stays with the host, even on the poster's page.
    assert "07700" not in mine.get_data(as_text=True)

    taken = submit(client, "/aid/mine", {"code": code, "action": "taken"})
    assert taken.status_code == 200
    assert "Status: Taken up" in text_of(taken)
    assert "has left the board" in text_of(taken)
    assert CHARGING not in text_of(client.get("/aid"))
    assert client.get(f"/aid/{post_id}").status_code == 404

    # Pressing the button a second time is refused politely.
    twice = submit(client, "/aid/mine", {"code": code, "action": "taken"})
    assert twice.status_code == 400
    assert "already taken up" in text_of(twice)


def test_the_host_sees_the_message_with_the_contact_and_passes_it_on(app, client):
    code = receipt_code(offer_charging(client))
    post_id = post_of(app, code).id
    submit(app.test_client(), f"/aid/{post_id}", {"text": "Could I charge a radio too? Call 07700 900456",
                                                  "contact_choice": "shown"})

    host = app.test_client()
    make_member(app, "Kestrel", "host")
    login(host, "Kestrel")
    queue = host.get("/host/aid")
    assert queue.status_code == 200
    assert CONTACT in text_of(queue)
    assert "Could I charge a radio too? Call 07700 900456" in text_of(queue)
    with app.app_context():
        message_id = db.session.scalar(select(AidMessage.id))

    done = submit(host, "/host/aid", {}, action=f"/host/aid/messages/{message_id}/passed-on")
    assert "marked as passed on" in text_of(done)
    assert "Mark as passed on" not in text_of(done)
    with app.app_context():
        assert db.session.get(AidMessage, message_id).passed_on_at is not None
    assert "passed on by the host" in text_of(submit(client, "/aid/mine", {"code": code}))


def test_the_host_hides_a_post_and_restores_it(app, client):
    code = receipt_code(offer_charging(client))
    post_id = post_of(app, code).id
    host = app.test_client()
    make_member(app, "Kestrel", "host")
    login(host, "Kestrel")

    hidden = submit(host, "/host/aid", {}, action=f"/host/aid/{post_id}/hide")
    assert "hidden from the board" in text_of(hidden)
    assert CHARGING not in text_of(client.get("/aid"))
    assert "Hidden by the host" in text_of(submit(client, "/aid/mine", {"code": code}))

    submit(host, "/host/aid", {}, action=f"/host/aid/{post_id}/restore")
    assert CHARGING in text_of(client.get("/aid"))


def test_a_withdrawn_post_cannot_be_hidden_and_so_never_restored_onto_the_board(app, client):
    code = receipt_code(offer_charging(client))
    post_id = post_of(app, code).id
    submit(client, "/aid/mine", {"code": code, "action": "withdrawn"})
    host = app.test_client()
    make_member(app, "Kestrel", "host")
    login(host, "Kestrel")

    refused = submit(host, "/host/aid", {}, action=f"/host/aid/{post_id}/hide")
    assert "so it is not on the board" in text_of(refused)
    assert post_of(app, code).status == aid.WITHDRAWN


def test_an_offer_lapses_by_itself_after_its_days(app, client, clock):
    code = receipt_code(offer_charging(client, days="3"))
    post_id = post_of(app, code).id

    clock.advance(days=2)
    run_all_once(app)
    assert CHARGING in text_of(client.get("/aid"))

    clock.advance(days=1, minutes=1)
    run_all_once(app)
    assert CHARGING not in text_of(client.get("/aid"))
    assert client.get(f"/aid/{post_id}").status_code == 404
    assert post_of(app, code).status == aid.LAPSED
    assert "Status: Lapsed" in text_of(submit(client, "/aid/mine", {"code": code}))


def test_a_finished_post_is_purged_with_its_messages_after_the_retention_period(app, client, clock):
    code = receipt_code(offer_charging(client))
    post_id = post_of(app, code).id
    for text in ("Yes please, Tuesday?", "Me too, I live by the market"):
        submit(app.test_client(), f"/aid/{post_id}", {"text": text, "contact_choice": "kept"})
    submit(client, "/aid/mine", {"code": code, "action": "withdrawn"})
    assert (count(app, AidPost), count(app, AidMessage)) == (1, 2)
    retention = app.config["AID_RETENTION_DAYS"]

    clock.advance(days=retention - 1)
    run_all_once(app)
    assert (count(app, AidPost), count(app, AidMessage)) == (1, 2)

    clock.advance(days=1, minutes=1)
    run_all_once(app)
    assert (count(app, AidPost), count(app, AidMessage)) == (0, 0)
    gone = submit(client, "/aid/mine", {"code": code})
    assert gone.status_code == 404
    assert "No post has that receipt code" in text_of(gone)


def test_only_the_hub_host_opens_aid_moderation(app, client):
    offer_charging(client)
    post_id = count(app, AidPost)

    anonymous = app.test_client()
    assert anonymous.get("/host/aid").status_code == 302
    assert "/login" in anonymous.get("/host/aid").headers["Location"]

    dispatcher = app.test_client()
    make_member(app, "Wren", "dispatch")
    login(dispatcher, "Wren")
    denied = dispatcher.get("/host/aid")
    assert denied.status_code == 403
    assert CONTACT not in denied.get_data(as_text=True)
    hide = dispatcher.post(f"/host/aid/{post_id}/hide", data={"csrf_token": csrf_token(dispatcher, "/aid/new")})
    assert hide.status_code == 403
    assert CHARGING in text_of(client.get("/aid"))


def test_a_message_to_a_withdrawn_post_is_refused_and_the_words_kept(app, client):
    code = receipt_code(offer_charging(client))
    post_id = post_of(app, code).id
    neighbour = app.test_client()
    token = csrf_token(neighbour, f"/aid/{post_id}")  # the page was open before the post went
    submit(client, "/aid/mine", {"code": code, "action": "withdrawn"})

    refused = neighbour.post(f"/aid/{post_id}", data={"text": "Is it still free?", "contact_choice": "kept",
                                                       "csrf_token": token})

    assert refused.status_code == 404
    assert "no longer on the board" in text_of(refused)
    assert "Is it still free?" in text_of(refused)
    assert count(app, AidMessage) == 0


def test_bad_post_inputs_come_back_with_messages_and_the_typed_text_kept(app, client):
    add_area(app, "Market")
    typed = "Soup on Sundays for whoever needs it"

    cases = {
        "days=abc": ({"days": "abc"}, "whole number"),
        "days=0": ({"days": "0"}, "from 1 to 60 days"),
        "days huge": ({"days": "9" * 40}, "from 1 to 60 days"),
        "category=bogus": ({"category": "bogus"}, "choose a kind of help"),
        "no category": ({"category": ""}, "choose a kind of help"),
        "kind=bogus": ({"kind": "bogus"}, "offer or ask for help"),
        "area=999": ({"area": "999"}, "choose an area from the list"),
        "area=abc": ({"area": "abc"}, "choose an area from the list"),
        "contact too long": ({"contact": "x" * (aid.MAX_CONTACT + 1)}, "at most 200"),
    }
    for name, (change, message) in cases.items():
        response = offer_charging(client, text=typed, **change)
        assert response.status_code == 400, name
        assert message.lower() in text_of(response).lower(), name
        assert typed in text_of(response), name
    assert count(app, AidPost) == 0
    assert 'value="abc"' in offer_charging(client, days="abc").get_data(as_text=True)

    too_long = offer_charging(client, text="x" * (aid.MAX_TEXT + 1))
    assert too_long.status_code == 400 and "at most 280" in text_of(too_long)
    blank = offer_charging(client, text=" \t ")
    assert blank.status_code == 400 and "fill in the description" in text_of(blank)
    # Control characters are stripped by the domain, leaving nothing: refused, not saved.
    only_controls = offer_charging(client, text="\u200b\u200b")
    assert only_controls.status_code == 400
    missing_kind = submit(client, "/aid/new", {"category": "food", "text": typed, "area": "", "days": "3"})
    assert missing_kind.status_code == 400 and typed in text_of(missing_kind)
    assert count(app, AidPost) == 0


def test_bad_message_and_receipt_inputs_come_back_with_messages(app, client):
    code = receipt_code(offer_charging(client))
    post_id = post_of(app, code).id

    long_message = "word " * 300
    too_long = submit(client, f"/aid/{post_id}", {"text": long_message, "contact_choice": "kept"})
    assert too_long.status_code == 400
    assert "at most 1000" in text_of(too_long)
    assert long_message.strip() in text_of(too_long)
    empty = submit(client, f"/aid/{post_id}", {"text": "   ", "contact_choice": "kept"})
    assert empty.status_code == 400 and "Please write a message" in text_of(empty)

    malformed = submit(client, "/aid/mine", {"code": "my code is 12"})
    assert malformed.status_code == 400
    assert "does not look like a receipt code" in text_of(malformed)
    assert 'value="my code is 12"' in malformed.get_data(as_text=True)
    unknown = submit(client, "/aid/mine", {"code": "H-0000-0000"})
    assert unknown.status_code == 404
    assert "No post has that receipt code" in text_of(unknown)
    assert 'value="H-0000-0000"' in unknown.get_data(as_text=True)
    assert submit(client, "/aid/mine", {"code": ""}).status_code == 400
    assert submit(client, "/aid/mine", {"code": "H" * 500}).status_code == 400
    forged = submit(client, "/aid/mine", {"code": code, "action": "open"})
    assert forged.status_code == 400 and "taken up or withdraw" in text_of(forged)
    assert post_of(app, code).status == aid.OPEN
    forged_code = submit(client, "/aid/mine", {"code": "H-0000-0000", "action": "withdrawn"})
    assert forged_code.status_code == 404

    for address in ("/aid/999", "/aid/abc", f"/aid/{'9' * 30}", "/aid/-1"):
        assert client.get(address).status_code == 404, address


def test_one_phone_cannot_flood_the_board_or_guess_receipt_codes(tmp_path, clock):
    # The limiter reads RATELIMIT_ENABLED once, when the app is built: it must be on from the start.
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=True,
                   PUBLIC_FORM_LIMIT="2 per hour", RECEIPT_LOOKUP_LIMIT="3 per hour")
    client = app.test_client()
    try:
        code = receipt_code(offer_charging(client))
        offer_charging(client)
        refused = offer_charging(client, text="A third offer from the same phone")
        assert refused.status_code == 429
        assert "A third offer from the same phone" in text_of(refused)
        assert count(app, AidPost) == 2
        assert client.get("/aid/new").status_code == 200

        for guess in ("H-ZZZZ-ZZZZ", "H-ZZZZ-ZZZY"):
            assert submit(client, "/aid/mine", {"code": guess}).status_code == 404
        assert submit(client, "/aid/mine", {"code": code}).status_code == 200
        assert submit(client, "/aid/mine", {"code": code}).status_code == 429
        # Closing a post carries the code too, so it counts against the same phone.
        assert submit(client, "/aid/mine", {"code": code, "action": "withdrawn"}).status_code == 429
        assert post_of(app, code).status == aid.OPEN
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# -- what a helper lets the poster see -------------------------------------------------------

def answer(app, post_id: int, text: str, choice: str | None):
    """Another neighbour answers the post on their own phone; the response is where the form led."""
    form = {"text": text} if choice is None else {"text": text, "contact_choice": choice}
    return submit(app.test_client(), f"/aid/{post_id}", form)


def test_a_helper_chooses_whether_the_poster_may_see_how_to_reach_them(app, client):
    code = receipt_code(offer_charging(client, contact=""))  # this poster reads messages with the code
    post_id = post_of(app, code).id
    form_page = text_of(client.get(f"/aid/{post_id}"))
    assert "May the person who posted this see how to reach you?" in form_page
    assert "No, I keep it to myself" in form_page and "Yes, they may see it" in form_page

    # No choice is made for the helper: the form asks, and keeps what they wrote.
    unchosen = answer(app, post_id, "Could I come by on Friday?", None)
    assert unchosen.status_code == 400
    assert "Please choose whether the person who posted may see how to reach you." in text_of(unchosen)
    assert "Could I come by on Friday?" in text_of(unchosen)

    # Keeping it means the message holds none of it, however it is written.
    for typed, found in [("Call me on 0176 555 0123 after work", "“0176 555 0123” looks like a phone number"),
                         ("I'm on telegram: @rowan_k", "“@rowan_k” looks like a messenger name or handle"),
                         ("Write to rowan@example.org", "“rowan@example.org” looks like an email address")]:
        refused = answer(app, post_id, typed, "kept")
        assert refused.status_code == 400, typed
        assert found in text_of(refused), typed
        assert "You chose to keep how to reach you to yourself, so take it out of the message" in text_of(refused)
        assert typed in text_of(refused), "what they wrote is kept on the form"
    assert count(app, AidMessage) == 0

    kept = answer(app, post_id, "I need one from 18:00 on Friday, 2 phones. I'm at the bench Nr. 12 side.", "kept")
    assert kept.request.path == "/aid/sent"
    assert "You kept how to reach you to yourself: nobody at the hub has it" in text_of(kept)
    shown = answer(app, post_id, "Happy to swap a cable too: call 0176 555 0123", "shown")
    assert "You let them see how to reach you" in text_of(shown)
    with app.app_context():
        assert sorted(db.session.scalars(select(AidMessage.contact_choice))) == ["kept", "shown"]

    # The poster reads both, each saying what its helper chose.
    mine = text_of(submit(client, "/aid/mine", {"code": code}))
    assert "I'm at the bench Nr. 12 side." in mine and "call 0176 555 0123" in mine
    assert "They keep how to reach them to themselves: answer where their message says, or at the bench." in mine
    assert "They let you see how to reach them: it is in their message, for you alone." in mine


def test_the_host_reads_a_helpers_contact_only_to_pass_it_on(app, client):
    make_member(app, "Kestrel", "host")
    host = app.test_client()
    login(host, "Kestrel")
    # A poster who reads messages with their code: the host is no go-between for them.
    reads_with_code = post_of(app, receipt_code(offer_charging(client, contact=""))).id
    # A poster who left the hub a way to reach them: the host passes messages on.
    left_contact = post_of(app, receipt_code(offer_charging(client, text="Soup on Sundays"))).id
    answer(app, reads_with_code, "My number is 0176 555 0123", "shown")
    answer(app, reads_with_code, "See you at the bench on Saturday", "kept")
    answer(app, left_contact, "Text me on 0151 2345 6789 please", "shown")

    queue = host.get("/host/aid")
    page = text_of(queue)
    assert "0176 555 0123" not in queue.get_data(as_text=True)
    assert "Not shown here: it holds how to reach the helper, which they gave to the poster alone" in page
    assert "See you at the bench on Saturday" in page  # kept: it holds no contact, the host may moderate it
    assert "Text me on 0151 2345 6789 please" in page  # the go-between's job
    # Only the message the host can pass on waits for them, on the page and on the dashboard.
    assert page.count("Mark as passed on") == 1
    assert "Aid messages waiting to be passed on : 1" in text_of(host.get("/host/"))
    with app.app_context():
        nothing_to_pass_on = db.session.scalar(select(AidMessage.id).where(AidMessage.post_id == reads_with_code))
    forged = submit(host, "/host/aid", {}, action=f"/host/aid/messages/{nothing_to_pass_on}/passed-on")
    assert "nothing to pass on" in text_of(forged)
    with app.app_context():
        assert db.session.get(AidMessage, nothing_to_pass_on).passed_on_at is None


@pytest.mark.parametrize("typed, found", [
    ("Charger to lend, ring 0176 555 0123", "0176 555 0123"),
    ("Charger to lend, ring 0176.555.0123", "0176.555.0123"),
    ("Charger to lend, ring +49-176-5550123", "+49-176-5550123"),
    ("Charger to lend, ring (030) 555 01 23", "(030) 555 01 23"),
    ("Charger to lend, signal @rowan", "@rowan"),
    ("Charger to lend, telegram: @rowan", "@rowan"),
    ("Charger to lend, @rowan on insta", "@rowan"),
    ("Charger to lend, Signal: rowan.01", "Signal: rowan.01"),
    ("Charger to lend, t.me/rowan_k", "t.me/rowan_k"),
    ("Charger to lend, mail rowan@example.org", "rowan@example.org"),
])
def test_a_post_with_a_way_to_reach_someone_is_refused_saying_what_to_change(app, client, typed, found):
    refused = offer_charging(client, text=typed)
    assert refused.status_code == 400
    assert f"“{found}” looks like" in text_of(refused)
    assert aid.CONTACT_IN_TEXT in text_of(refused)
    assert typed in text_of(refused), "what they typed is kept on the form"
    assert count(app, AidPost) == 0


def test_times_dates_amounts_and_house_numbers_go_on_the_board(client):
    for text in ("Soup from 18:00, 2 bags of bread", "Nr. 12, 1.5 kg of apples, 3,50 € a jar",
                 "Sat 21.11. 10-12 and 14.00-16.00, 2026-12-05 too", "Childcare 8.30-12.30 on 28.11.2026"):
        assert offer_charging(client, text=text).request.path == "/aid/receipt", text
        assert text in text_of(client.get("/aid"))


def test_messages_left_before_the_choice_existed_stay_readable_to_their_poster(tmp_path, clock):
    """Those helpers wrote under a form that asked how to reach them and said the poster reads it."""
    from flask_migrate import upgrade

    from server import create_app
    from server.migrating import apply_migrations

    app = create_app({"INSTANCE": tmp_path / "old-hub", "TESTING": True, "CLOCK": clock})
    with app.app_context():
        upgrade(revision="f13p0000pub")  # the schema just before the helper's choice
        db.session.execute(db.text(
            "INSERT INTO aid_post (id, receipt_code, kind, category, text, status, created_at, available_until) "
            "VALUES (1, 'H-7K2M-9QXR', 'offer', 'food', 'Soup', 'open', '2026-11-21 19:00:00', '2026-11-28 19:00:00')"))
        db.session.execute(db.text(
            "INSERT INTO aid_message (id, post_id, text, created_at) "
            "VALUES (1, 1, 'Yes please, 0176 555 0123', '2026-11-21 19:30:00')"))
        db.session.commit()
    apply_migrations(app)
    with app.app_context():
        assert db.session.get(AidMessage, 1).contact_choice == aid.SHOWN
        db.session.remove()
    mine = submit(app.test_client(), "/aid/mine", {"code": "H-7K2M-9QXR"})
    assert "Yes please, 0176 555 0123" in text_of(mine)
    assert "They let you see how to reach them" in text_of(mine)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    # The upgrade took the code and the words off the card: the answer is sealed for the poster alone.
    card = (tmp_path / "old-hub" / "safebench.db").read_bytes()
    assert b"H-7K2M-9QXR" not in card and b"0176 555 0123" not in card


def test_a_hub_taken_back_a_version_and_upgraded_again_keeps_the_hosts_copy_and_tells_the_poster(tmp_path, clock):
    """Going back cannot give the codes back: the answers stay sealed, and nothing pretends otherwise."""
    from flask_migrate import downgrade, upgrade

    from server import create_app
    from server.domain import sealing
    from tests.helpers import reader_keys

    app = create_app({"INSTANCE": tmp_path / "hub", "TESTING": True, "CLOCK": clock})
    with app.app_context():
        upgrade()
        posted = aid.post_aid(db.session, clock.now, kind=aid.OFFER, category="food", text="Soup", area_id=None,
                              days=7, max_days=60, contact="ask at the kiosk")
        aid.leave_message(db.session, clock.now, posted.post, "Yes please, for two")
        db.session.commit()
        downgrade(revision="f13r0000ret")
        assert db.session.execute(db.text("SELECT text FROM aid_message")).scalar().startswith(sealing.PREFIX)
        upgrade()
        db.session.remove()
    make_member(app, "Heron", "host")
    with app.app_context():
        message = db.session.scalar(select(AidMessage))
        assert sealing.open_text(message.for_host, reader_keys(app)) == "Yes please, for two"
        # The poster's code is not on the card to be made into a key again: it no longer finds the post.
        with pytest.raises(aid.NotFound):
            aid.post_for_receipt(db.session, posted.receipt_code)
        db.session.remove()
        db.engine.dispose()
