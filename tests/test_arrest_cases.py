"""Stories of arrest cases on the web: a neighbour reports one, dispatch and the care ring work it to release.

Nobody is forgotten in a cell, and nobody is exposed by the hub: the radio
hears code, a listed place, count and time, a neighbour's report only once
dispatch, a captain or a host confirmed it; the bench page shows counts; the
case itself is for dispatch and the care ring, and is deleted after everyone
is out plus the grace period.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from server.domain import cases, outbox, patrol, sealing
from server.domain.cases import MAX_DESCRIPTION, ArrestCase, CaseStep
from server.domain.people import BROADCAST_NODE, parse_node_id
from server.domain.radio_text import BELL
from server.extensions import db
from server.scheduler import run_all_once
from tests.helpers import login, make_app, make_member, submit, text_of, unsealed

HOTLINE = "+49 30 1234567"
WITNESS = {
    "where": "Larch Street corner by the bakery",
    "when": "19:45",
    "count": "2",
    "description": "Two young people in green rain jackets, one with a bike.\r\nPushed into a white van.",
    "agency": "city police, van 4-17",
    "contact": "ask for Robin at the bench",
}
# What the neighbour told that must never reach the air or a public page.
PRIVATE = ("green rain jackets", "white van", "van 4-17", "Robin")


@pytest.fixture
def hub(app):
    """The test app with a legal hotline configured, as a real bench would have."""
    app.config["LEGAL_HOTLINE"] = HOTLINE
    return app


def report_arrest(client, **changes: str):
    """A neighbour fills in "I saw an arrest" at the bench page and sends it."""
    return submit(client, "/arrest", {**WITNESS, **changes})


def browser_of(app, handle: str, *roles: str, node: str | None = None):
    """Another phone or laptop, logged in as a member holding ``roles``."""
    make_member(app, handle, *roles, node=node)
    browser = app.test_client()
    assert login(browser, handle).request.path != "/login"
    return browser


def only_case(app) -> ArrestCase:
    with app.app_context():
        case = db.session.scalars(select(ArrestCase)).one()
        db.session.expunge(case)
        return case


def count_rows(app, model: type) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def queued(app) -> list[outbox.OutboxMessage]:
    with app.app_context():
        messages = list(reversed(outbox.recent(db.session, limit=None)))
        for message in messages:
            db.session.expunge(message)
        return messages


def act(browser, case_id: int, action: str, data: dict | None = None):
    """Dispatch or the care ring presses a button on the case's page."""
    page = f"/cases/{case_id}"
    return submit(browser, page, data or {}, action=f"{page}/{action}")


def test_a_neighbour_reports_an_arrest_dispatch_hears_at_once_and_the_air_once_dispatch_confirms(client, hub):
    heron = browser_of(hub, "Heron", "dispatch", node="!0000a001")
    bench = client.get("/")
    assert "I saw an arrest" in text_of(bench)
    assert 'href="/arrest#main"' in bench.get_data(as_text=True)
    assert "Arrests still open" not in text_of(bench)  # nothing open, nothing said

    form = client.get("/arrest")
    assert form.status_code == 200
    page = text_of(form)
    assert "Only the bench's dispatch and the care ring read what you write here" in page
    assert "A way to reach you (optional)" in page
    assert "Only dispatch and the care ring see it" in page
    assert HOTLINE in page

    thanks = report_arrest(client)
    assert thanks.status_code == 200
    assert thanks.request.path == "/arrest/thanks"
    told = text_of(thanks)
    assert "dispatch was told" in told
    assert HOTLINE in told
    # The code is internal, and nothing the neighbour wrote comes back.
    assert "C1" not in told
    assert not any(private in told for private in PRIVATE)

    case = only_case(hub)
    assert (case.code, case.source, unsealed(hub, case.place), case.arrested, case.released) == (
        "C1", "bench", "Larch Street corner by the bakery", 2, 0)
    assert sealing.is_sealed(case.place)
    assert case.arrested_at == datetime(2026, 11, 21, 19, 45)
    # What the neighbour wrote about people is sealed on the card; dispatch and the care ring open it.
    assert sealing.is_sealed(case.description) and sealing.is_sealed(case.witness_contact)
    assert unsealed(hub, case.description) == ("Two young people in green rain jackets, one with a bike.\n"
                                               "Pushed into a white van.")
    assert (case.agency, unsealed(hub, case.witness_contact), case.reported_by_id) == (
        "city police, van 4-17", "ask for Robin at the bench", None)
    # No listed place is named: the air will say so, never the street the neighbour typed.
    assert (case.air_place, case.confirmed_at, case.verified) == ("place with dispatch", None, True)

    # Dispatch's radio buzzes at once; the patrol's handhelds hear nothing yet.
    (asked,) = queued(hub)
    assert asked.priority == outbox.URGENT and asked.destination == parse_node_id("!0000a001")
    assert asked.text == (f"ARREST report C1 from the bench, not confirmed: 2 at place with dispatch, 19:45Z. "
                          f"Dispatch: confirm on the hub or ACK C1.{BELL}")
    assert "Arrests still open" not in text_of(client.get("/")), "a report nobody vouched for moves no public count"
    waiting = text_of(heron.get("/host/"))
    assert "Arrest report waiting for confirmation" in waiting and "C1: 2 at place with dispatch" in waiting

    confirmed = act(heron, case.id, "confirm")
    assert "C1 is confirmed" in text_of(confirmed)
    assert "Confirmed by Heron" in text_of(confirmed)
    notice = queued(hub)[-1]
    assert notice.priority == outbox.URGENT and notice.destination == BROADCAST_NODE
    assert notice.text == f"ARREST C1: 2 at place with dispatch, 19:45Z. Legal hotline {HOTLINE}.{BELL}"
    for message in queued(hub):
        assert not any(private in message.text for private in PRIVATE) and "Larch" not in message.text
    again = act(heron, case.id, "confirm")
    assert again.status_code == 400 and "C1 is confirmed already by Heron" in text_of(again)
    assert len(queued(hub)) == 2

    # A refresh of the thank-you page opens no second case; another phone is sent to the form.
    assert client.get("/arrest/thanks").status_code == 200
    assert count_rows(hub, ArrestCase) == 1
    assert hub.test_client().get("/arrest/thanks").headers["Location"].endswith("/arrest")

    # The public sees counts, nothing else: not the place, not the code, not what was seen.
    for address in ("/", "/log"):
        public = text_of(client.get(address))
        assert "Larch Street" not in public and "C1" not in public
        assert not any(private in public for private in PRIVATE)
    assert "Arrests still open: 2 taken, 0 released." in text_of(client.get("/"))


def test_a_time_typed_at_the_bench_is_the_hubs_local_time(client, app, clock):
    make_member(app, "Heron", "dispatch", node="!0000a001")  # whose radio hears the report, with its time
    app.config["TIMEZONE"] = "Europe/Berlin"  # 20:00 UTC is 21:00 in Berlin
    report_arrest(client, when="20:45")
    assert only_case(app).arrested_at == datetime(2026, 11, 21, 19, 45)
    assert "19:45Z" in queued(app)[0].text

    # Ten past midnight, an arrest "at 23:50" was last night; a date and time is taken as written.
    clock.now = datetime(2026, 11, 21, 23, 10)  # 00:10 on the 22nd in Berlin
    report_arrest(client, when="23:50")
    report_arrest(client, when="2026-11-21T01:30")
    with app.app_context():
        times = list(db.session.scalars(select(ArrestCase.arrested_at).order_by(ArrestCase.id)))
    assert times[1:] == [datetime(2026, 11, 21, 22, 50), datetime(2026, 11, 21, 0, 30)]


def test_only_dispatch_and_the_care_ring_see_a_case(client, hub):
    report_arrest(client)
    case_id = only_case(hub).id
    pages = ("/cases", f"/cases/{case_id}", f"/cases/{case_id}/export.txt")

    anonymous = hub.test_client()
    for page in pages:
        answer = anonymous.get(page)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"]

    # A host runs the bench, but a case is for dispatch and the care ring only.
    for handle, role in (("Kestrel", "steward"), ("Magpie", "host"), ("Rook", "mediator")):
        outsider = browser_of(hub, handle, role)
        for page in pages:
            denied = outsider.get(page)
            assert denied.status_code == 403, (role, page)
            assert not any(private in text_of(denied) for private in PRIVATE)
        assert "Cases" not in text_of(outsider.get("/host/"))
        assert submit(outsider, "/host/", {"released": "1"}, action=f"/cases/{case_id}/count-out").status_code == 403

    for handle, role in (("Heron", "dispatch"), ("Otter", "care")):
        insider = browser_of(hub, handle, role)
        listing = insider.get("/cases")
        assert listing.status_code == 200
        assert "C1" in text_of(listing) and "Larch Street corner" in text_of(listing)
        assert "Cases" in text_of(insider.get("/host/"))
        detail = text_of(insider.get(f"/cases/{case_id}"))
        assert all(private in detail for private in PRIVATE)

    # Opening a case by hand is dispatch's job; the care ring works the ones that exist.
    assert browser_of(hub, "Vole", "care").get("/cases/new").status_code == 403


def test_dispatch_opens_a_case_and_works_the_rings_to_everyone_released(hub, clock):
    with hub.app_context():
        patrol.add_area(db.session, "Market")
        db.session.commit()
    heron = browser_of(hub, "Heron", "dispatch")
    otter = browser_of(hub, "Otter", "care")

    opened = submit(heron, "/cases/new", {"where": "Market square", "count": "1",
                                          "description": "Older man, grey coat, no bust card seen."})
    assert opened.status_code == 200
    case = only_case(hub)
    assert opened.request.path == f"/cases/{case.id}"
    assert "Case C1 is open" in text_of(opened) and "as the place, “Market”" in text_of(opened)
    assert (case.source, case.arrested_at, case.drill, case.confirmed_at) == ("web", clock.now, False, clock.now)
    # Dispatch's own word goes on the air at once, with the published area "Market square" names.
    (notice,) = queued(hub)
    assert notice.text.startswith("ARREST C1: 1 at Market, 20:00Z. Legal hotline")

    # Two more were taken than first reported.
    more = act(heron, case.id, "count-in", {"more": "1"})
    assert "Counted in: 2 arrested, 0 released." in text_of(more)

    clock.advance(minutes=5)
    done = act(heron, case.id, "step", {"step": "witness", "note": "Two witnesses, both at the bench."})
    assert "Done: Witness details captured." in text_of(done)
    clock.advance(minutes=10)
    act(heron, case.id, "step", {"step": "legal", "note": "Hotline has both descriptions."})

    # Family is told only with consent given beforehand: refused until it is on record.
    page = text_of(otter.get(f"/cases/{case.id}"))
    assert "No prior consent is on record" in page
    clock.advance(minutes=5)
    refused = act(otter, case.id, "step", {"step": "family", "note": "Called the sister."})
    assert refused.status_code == 400
    assert "No consent on record to inform family" in text_of(refused)
    assert "Called the sister." in refused.get_data(as_text=True)
    consent = act(otter, case.id, "consent")
    assert "Prior consent to inform family is recorded" in text_of(consent)
    act(otter, case.id, "step", {"step": "family", "note": "Called the sister."})
    clock.advance(minutes=40)
    # Forty minutes without a request end a login (and its keys): each logs in again to go on.
    login(otter, "Otter")
    act(otter, case.id, "step", {"step": "bail", "note": "Bail fund covers both."})
    act(otter, case.id, "step", {"step": "station"})

    login(heron, "Heron")
    page = text_of(heron.get(f"/cases/{case.id}"))
    assert "Done Sat 21 Nov, 20:05 by Heron Two witnesses, both at the bench." in page
    assert "Done Sat 21 Nov, 20:15 by Heron" in page
    assert "Done Sat 21 Nov, 20:20 by Otter Called the sister." in page
    assert "Done Sat 21 Nov, 21:00 by Otter Bail fund covers both." in page
    assert "Legal 2/2" in page and "Family and funds 2/2" in page and "Release and welcome 1/3" not in page
    assert "Release and welcome 1/2" in page

    # Counted out one at a time; nobody can be released twice.
    clock.advance(hours=3)
    login(otter, "Otter")
    login(heron, "Heron")
    first = act(otter, case.id, "count-out", {"released": "1"})
    assert "Counted out: 1 of 2 released, 1 still held." in text_of(first)
    too_many = act(otter, case.id, "count-out", {"released": "2"})
    assert too_many.status_code == 400
    assert "Only 1 still held in case C1." in text_of(too_many)
    nonsense = act(otter, case.id, "count-out", {"released": "lots"})
    assert nonsense.status_code == 400
    assert "Give the number of people as a number." in text_of(nonsense)

    last = act(otter, case.id, "count-out", {"released": "1"})
    assert "Everyone is released: case C1 is closed and will be deleted on Sun 29 Nov 2026" in text_of(last)
    act(otter, case.id, "step", {"step": "welcome", "note": "Met at the door with soup and a phone charger."})
    closed = text_of(heron.get(f"/cases/{case.id}"))
    assert "Everyone is released" in closed and "deleted on Sun 29 Nov 2026" in closed
    assert "Arrested 2 / released 2" in closed

    listing = text_of(heron.get("/cases"))
    assert "No open case" in listing
    assert "deleted on Sun 29 Nov 2026 — export first if the legal coordinator needs it" in listing

    # The description can be corrected; nothing of it ever goes on the air.
    edited = act(heron, case.id, "details", {"description": "Two people, grey and blue coats.", "agency": "state police"})
    assert "Description and agency saved." in text_of(edited)
    assert "state police" in text_of(edited)
    assert all("grey" not in message.text for message in queued(hub))


def test_the_48_hour_clock_reminds_dispatch_over_radio_and_on_the_hub_pages(client, hub, clock):
    heron = browser_of(hub, "Heron", "dispatch", node="!0000a001")
    browser_of(hub, "Ibis", "dispatch", node="!0000a002")
    otter = browser_of(hub, "Otter", "care")
    magpie = browser_of(hub, "Magpie", "host", "steward", node="!0000a003")
    report_arrest(client, when="", count="3")
    case = only_case(hub)
    act(otter, case.id, "count-out", {"released": "1"})

    def reminders_queued() -> list[outbox.OutboxMessage]:
        return [m for m in queued(hub) if "h since arrest" in m.text]

    clock.advance(hours=23, minutes=59)
    run_all_once(hub)
    assert reminders_queued() == []
    # A day on, every login has ended with its keys: each logs in again to look.
    for browser, handle in ((heron, "Heron"), (otter, "Otter"), (magpie, "Magpie")):
        assert login(browser, handle).request.path != "/login"
    assert "h since the arrest" not in text_of(heron.get("/host/"))

    clock.advance(minutes=1)
    run_all_once(hub)
    reminders = reminders_queued()
    assert sorted(m.destination for m in reminders) == [parse_node_id("!0000a001"), parse_node_id("!0000a002")]
    for message in reminders:
        assert message.text == f"C1: 24 h since arrest, 2 not released. Check the case.{BELL}"
        assert message.priority == outbox.URGENT
    run_all_once(hub)  # a minute later the job runs again: no second reminder
    assert len(reminders_queued()) == 2

    for browser in (heron, otter):
        for page in ("/host/", "/cases"):
            shown = browser.get(page)
            assert "Case C1: 24 h since the arrest, 2 not released — past 24 hours." in text_of(shown)
            assert f'href="/cases/{case.id}"' in shown.get_data(as_text=True)
    listing = heron.get("/cases").get_data(as_text=True)
    assert "clock warn" in listing and "24 h held: past 24 h" in text_of(heron.get("/cases"))
    # The host without dispatch or care gets no banner (the full log has code, place and count, as the air does).
    for_host = magpie.get("/host/")
    assert "h since the arrest" not in text_of(for_host) and f"/cases/{case.id}" not in for_host.get_data(as_text=True)

    clock.advance(hours=24)
    run_all_once(hub)
    for browser, handle in ((heron, "Heron"), (otter, "Otter")):
        assert login(browser, handle).request.path != "/login"
    later = [m.text for m in reminders_queued()]
    assert later.count(f"C1: 48 h since arrest, 2 not released. Check the case.{BELL}") == 2
    assert "past the 48-hour mark" in text_of(otter.get("/host/"))
    assert "48 h held: past 48 h" in text_of(otter.get("/cases"))

    act(otter, case.id, "count-out", {"released": "2"})
    assert "h since the arrest" not in text_of(heron.get("/host/"))


def test_the_legal_coordinator_downloads_a_case_as_a_plain_file(client, hub, clock):
    report_arrest(client)
    heron = browser_of(hub, "Heron", "dispatch")
    case = only_case(hub)
    clock.advance(minutes=5)
    act(heron, case.id, "step", {"step": "witness", "note": "Robin saw it from the bakery."})
    clock.advance(minutes=5)

    download = heron.get(f"/cases/{case.id}/export.txt")
    assert download.status_code == 200
    assert download.mimetype == "text/plain"
    assert download.headers["Content-Disposition"] == 'attachment; filename="arrest-case-C1-2026-11-21.txt"'
    assert download.headers["Cache-Control"] == "no-store"
    text = download.get_data(as_text=True)
    assert text.startswith("Arrest case C1\n")
    for line in (
        "Arrested at: 2026-11-21 19:45 UTC",
        "Place: Larch Street corner by the bakery",
        "Count: arrested 2, released 0",
        "Agency: city police, van 4-17",
        "Witness contact: ask for Robin at the bench",
        "Two young people in green rain jackets",
        "Checklist:",
        "- [Legal] Witness details captured: 2026-11-21 20:05 UTC by Heron (Robin saw it from the bakery.)",
        "- [Legal] Legal contact called: not done",
        "- [Release and welcome] Released and met: ride, food, phone sorted: not done",
    ):
        assert line in text, line
    assert "Last exported Sat 21 Nov, 20:10" in text_of(heron.get(f"/cases/{case.id}"))


def test_a_released_case_is_deleted_after_the_grace_period_and_the_bench_page_forgets_it(client, hub, clock):
    report_arrest(client)
    otter = browser_of(hub, "Otter", "care")
    case = only_case(hub)
    act(browser_of(hub, "Heron", "dispatch"), case.id, "confirm")
    act(otter, case.id, "step", {"step": "witness"})
    act(otter, case.id, "count-out", {"released": "1"})
    assert "Arrests still open: 2 taken, 1 released." in text_of(client.get("/"))
    act(otter, case.id, "count-out", {"released": "1"})
    assert "Arrests still open" not in text_of(client.get("/"))
    grace = hub.config["CASE_GRACE_DAYS"]

    clock.advance(days=grace - 1)
    run_all_once(hub)
    # Days later Otter's login has long ended: she logs in again to look.
    login(otter, "Otter")
    assert otter.get(f"/cases/{case.id}").status_code == 200

    clock.advance(days=1, minutes=1)
    run_all_once(hub)
    login(otter, "Otter")
    assert count_rows(hub, ArrestCase) == 0
    assert count_rows(hub, CaseStep) == 0
    gone = otter.get(f"/cases/{case.id}")
    assert gone.status_code == 404
    assert "That case does not exist (it may have been purged)." in text_of(gone)
    assert otter.get(f"/cases/{case.id}/export.txt").status_code == 404
    assert "None." in text_of(otter.get("/cases"))
    assert "Larch Street" not in text_of(otter.get("/cases"))
    assert "Arrests still open" not in text_of(client.get("/"))


def test_a_blank_or_oversized_report_comes_back_with_a_message_and_what_was_typed(client, app):
    blank = report_arrest(client, where="   ")
    assert blank.status_code == 400
    assert "Please say where the arrest happened." in text_of(blank)
    html = blank.get_data(as_text=True)
    assert "green rain jackets" in html and 'value="ask for Robin at the bench"' in html

    # Characters that look like something but are nothing: the domain refuses them.
    invisible = report_arrest(client, where="\u200b\u200b")
    assert invisible.status_code == 400
    assert "Say where the arrest happened." in text_of(invisible)

    too_long = report_arrest(client, description=("jacket " * MAX_DESCRIPTION)[:MAX_DESCRIPTION] + "!")
    assert too_long.status_code == 400
    assert f"That is {MAX_DESCRIPTION + 1} characters; at most {MAX_DESCRIPTION} fit here." in text_of(too_long)
    assert "jacket jacket" in too_long.get_data(as_text=True)
    assert 'value="Larch Street corner by the bakery"' in too_long.get_data(as_text=True)

    for changes, message in (
        ({"count": "lots"}, "Give the number of people as a number."),
        ({"count": "0"}, "The number of people must be between 1 and 50."),
        # One witness cannot count a crowd that size from the street: dispatch counts more in later.
        ({"count": "51"}, "More than 50 is more than one witness can count. Write 50"),
        ({"count": "200"}, "More than 50 is more than one witness can count."),
        ({"when": "2026-11-21T21:30"}, "The time of the arrest is in the future."),
        ({"when": "half past nine"}, "Please give the time like 21:40, 2140 or 9.40pm, or leave it empty for just now."),
        ({"when": "25:00"}, "Please give the time like 21:40, 2140 or 9.40pm"),
        ({"when": "2026-11-20T19:59"}, "That is more than 24 hours ago: please tell dispatch in person"),
        ({"when": "2026-11-01T10:00"}, "That is more than 24 hours ago: please tell dispatch in person"),
    ):
        answer = report_arrest(client, **changes)
        assert answer.status_code == 400, changes
        assert message in text_of(answer), changes
        assert "green rain jackets" in answer.get_data(as_text=True)
    assert count_rows(app, ArrestCase) == 0
    assert queued(app) == []


def test_the_arrest_form_answers_too_many_tries_kindly(tmp_path, clock):
    # The limiter reads RATELIMIT_ENABLED once, when the app is built: it must be on from the start.
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=True, PUBLIC_FORM_LIMIT="2 per hour")
    client = app.test_client()
    try:
        report_arrest(client)
        report_arrest(client, where="the station")
        refused = report_arrest(client, where="A third time, from the same phone.")
        assert refused.status_code == 429
        assert "Too many tries from this phone" in text_of(refused)
        assert "A third time, from the same phone." in text_of(refused)
        assert count_rows(app, ArrestCase) == 2
        assert client.get("/arrest").status_code == 200  # reading the form is never limited
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_stale_or_forged_button_on_a_case_page_gets_a_message_not_a_crash(client, hub):
    report_arrest(client)
    heron = browser_of(hub, "Heron", "dispatch")
    case_id = only_case(hub).id
    for action, data, message in (
        ("step", {"step": "tea"}, "Unknown checklist step."),
        ("step", {"step": "legal", "note": "n" * 501}, "at most 500 fit here"),
        ("count-in", {"more": "500"}, "The number of people must be between 1 and 200."),
        ("details", {"description": "d" * (MAX_DESCRIPTION + 1)}, f"at most {MAX_DESCRIPTION} fit here"),
    ):
        answer = act(heron, case_id, action, data)
        assert answer.status_code == 400, (action, data)
        assert message in text_of(answer), (action, data)
    assert heron.get("/cases/999").status_code == 404
    assert heron.get("/cases/99999999999999999999999").status_code == 404
    assert count_rows(hub, CaseStep) == 0


def test_a_drill_arrest_is_labelled_for_dispatch_and_never_counted_on_the_bench_page(client, hub):
    with hub.app_context():
        cases.open_case(db.session, hub.config["CLOCK"](), place="Library steps", arrested=2, source="web",
                        drill=True)
        db.session.commit()
    otter = browser_of(hub, "Otter", "care")
    listing = text_of(otter.get("/cases"))
    assert "C1 DRILL · Library steps" in listing
    assert "Arrests still open" not in text_of(client.get("/"))


def test_on_a_night_of_mass_arrests_the_hundredth_open_case_still_gets_a_code(app):
    # Codes stay short (C1..C99) while they can; the 100th witness must not be turned away.
    with app.app_context():
        now = app.config["CLOCK"]()
        opened = [cases.open_case(db.session, now, place="Station", source="web") for _ in range(101)]
        db.session.commit()
        codes = [case.code for case in opened]
    assert len(set(codes)) == 101
    assert sorted(codes[99:]) == ["C100", "C101"]
    assert all(len(code) <= 3 for code in codes[:99])
