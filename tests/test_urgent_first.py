"""Stories of urgent things first: a neighbour finds "I saw an arrest" at once and types the time as they say it;
what they send is answered truthfully while nobody may read it; each role lands where its work is; the host's
dashboard lists everything waiting on anyone.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from server.domain import aid, mandates, people
from server.domain.cases import ArrestCase
from server.domain.people import CARE, DISPATCH, HOST, MEDIATOR, Decision
from server.extensions import db
from tests.helpers import PASSWORD, login, make_member, submit, text_of

WITNESS = {"where": "Larch Street corner by the bakery", "when": "", "count": "2", "description": "",
           "agency": "", "contact": ""}
NOBODY_READS_ARREST = "Nobody holds the dispatch or care ring role right now, so nobody can read this yet."
NOBODY_READS_MEDIATION = "Nobody holds the mediator role right now, so nobody can read your request yet."
UNREAD_CASES = "Nobody holds the dispatch or care ring role: nobody can read the arrests neighbours report."
UNREAD_MEDIATION = "Nobody holds the mediator role: nobody can read neighbours' mediation requests."
UNREAD_COMPLAINTS = "Nobody holds the accountability circle role: nobody can read neighbours' concerns"


def report_arrest(client, **changes: str):
    return submit(client, "/arrest", {**WITNESS, **changes})


def ask_for_mediation(client):
    return submit(client, "/mediation/new", {"what": "Music from the flat below until 3 every night.",
                                             "where": "", "who": "", "urgency": "soon", "contact": ""})


def arrest_times(app) -> list[datetime]:
    with app.app_context():
        return list(db.session.scalars(select(ArrestCase.arrested_at).order_by(ArrestCase.id)))


def signed_in(app, handle: str, *roles: str):
    """A member's own browser, logged in; returns it with the page it landed on."""
    make_member(app, handle, *roles)
    browser = app.test_client()
    landed = login(browser, handle)
    assert landed.status_code == 200 and landed.request.path != "/login", text_of(landed)
    return browser, landed.request.path


def host_landing(app) -> str:
    return "/host/board" if "board.page" in app.view_functions else "/host/"


# -- the arrest form ------------------------------------------------------------------


def test_every_public_page_offers_i_saw_an_arrest_first_and_the_bench_page_as_its_first_big_action(client):
    for page in ("/", "/log", "/aid", "/mediation/new", "/compact", "/arrest"):
        html = client.get(page).get_data(as_text=True)
        header = html[html.index('<header class="top">'):html.index("</header>")]
        links = re.findall(r"<a [^>]*href=\"([^\"]+)\"", header)
        assert links[1] == "/arrest#main", (page, links)  # right after the bench's name
        assert len(links) <= 5, "the header stays a few Tab stops long"
    bench = client.get("/").get_data(as_text=True)
    actions = bench[bench.index('<nav aria-label="What you can do here">'):]
    actions = actions[:actions.index("</nav>")]
    buttons = re.findall(r'<a class="([^"]+)" href="([^"]+)">([^<]+)</a>', actions)
    assert buttons[0] == ("button big urgent", "/arrest#main", "I saw an arrest")
    assert all("big" in css for css, _, _ in buttons)
    assert "Read or sign the compact" not in actions, "the compact is a link further down, not a big button"


def test_the_arrest_form_asks_where_first_and_explains_privacy_after_the_fields(client):
    html = client.get("/arrest").get_data(as_text=True)
    fields = re.findall(r'<(?:input|textarea)[^>]* name="(\w+)"', html)
    assert [name for name in fields if name != "csrf_token"][:2] == ["where", "when"]
    assert html.index('name="contact"') < html.index("Who will see this")
    when = re.search(r'<input[^>]* name="when"[^>]*>', html).group(0)
    assert 'type="text"' in when, "a plain text field: a date-time picker refuses 2140"


def test_a_neighbour_types_the_time_as_they_say_it(app, client, clock):
    make_member(app, "Heron", DISPATCH)
    clock.now = datetime(2026, 11, 21, 22, 5)  # UTC is the hub's zone in the tests
    for typed in ("2140", "9.40pm", "21h40", "9:40 pm"):
        assert report_arrest(client, when=typed).request.path == "/arrest/thanks", typed
    report_arrest(client, when="now")
    # Ten past midnight, "23:50" is last night's.
    clock.now = datetime(2026, 11, 22, 0, 10)
    report_arrest(client, when="23:50")
    assert arrest_times(app) == [datetime(2026, 11, 21, 21, 40)] * 4 + [datetime(2026, 11, 21, 22, 5),
                                                                        datetime(2026, 11, 21, 23, 50)]


def test_a_time_the_hub_cannot_read_comes_back_with_what_was_typed(app, client):
    answer = report_arrest(client, when="half nine-ish", description="Two people in green rain jackets")
    assert answer.status_code == 400
    assert "Please give the time like 21:40, 2140 or 9.40pm, or leave it empty for just now." in text_of(answer)
    html = answer.get_data(as_text=True)
    assert 'value="half nine-ish"' in html and "green rain jackets" in html
    assert arrest_times(app) == []


# -- truthful answers ------------------------------------------------------------------------


def test_an_arrest_report_nobody_can_read_says_so_until_someone_holds_dispatch(app, client):
    alone = text_of(report_arrest(client))
    assert "Thank you: your report is kept, sealed" in alone and NOBODY_READS_ARREST in alone
    assert "dispatch was told" not in alone
    assert "Nobody holds the host role either, so nobody at the bench was told." in alone
    assert "If someone is in danger now" in alone

    make_member(app, "Kestrel", HOST)
    hosts_only = text_of(report_arrest(app.test_client()))
    assert NOBODY_READS_ARREST in hosts_only
    assert "The bench's hosts were told that an arrest was reported, how many and when, but not what you wrote" \
        in hosts_only

    make_member(app, "Otter", CARE)  # the care ring reads the cases vault as dispatch does
    told = text_of(report_arrest(app.test_client()))
    assert "Thank you: dispatch was told" in told and NOBODY_READS_ARREST not in told


def test_a_mediation_request_nobody_can_read_says_so_until_a_mediator_is_named(app, client):
    alone = text_of(ask_for_mediation(client))
    assert "Your request is kept, sealed" in alone and NOBODY_READS_MEDIATION in alone
    assert "reached the mediators" not in alone
    assert re.search(r"[A-Z]-[0-9A-Z]{4}-[0-9A-Z]{4}", alone), "the receipt code is there all the same"

    make_member(app, "Wren", MEDIATOR)
    reached = text_of(ask_for_mediation(app.test_client()))
    assert "Your request has reached the mediators" in reached and NOBODY_READS_MEDIATION not in reached


def test_a_helpers_message_says_so_when_nobody_can_pass_it_on(app, client):
    with app.app_context():
        posted = aid.post_aid(db.session, datetime(2026, 11, 21, 20), kind="offer", category="charging",
                              text="Phone charging at number 12", area_id=None, days=3, max_days=14,
                              contact="ring the top bell")
        db.session.commit()
        post_id = posted.post.id
    sent = text_of(submit(client, f"/aid/{post_id}", {"text": "I need a charge tonight", "contact_choice": "shown"}))
    assert "Nobody holds the host role right now, so nobody can pass your message on yet" in sent


def test_a_poster_who_leaves_a_contact_is_told_when_nobody_can_read_it(app, client):
    form = {"kind": "offer", "category": "charging", "text": "Phone charging at number 12", "area": "", "days": "3",
            "contact": "ring the top bell"}
    told = text_of(submit(client, "/aid/new", form))
    assert "nobody can read the way to reach you that you left" in told
    # Without a contact there is nothing to read; with a host seated, the host passes messages on.
    assert "nobody can read the way" not in text_of(submit(app.test_client(), "/aid/new", form | {"contact": ""}))
    make_member(app, "Kestrel", HOST)
    assert "nobody can read the way" not in text_of(submit(app.test_client(), "/aid/new", form))


def test_a_host_sees_on_every_hub_page_what_nobody_may_read_until_someone_holds_the_role(app):
    kestrel, _ = signed_in(app, "Kestrel", HOST)
    pages = ("/host/", "/host/log", "/host/roles", "/host/stewards", "/host/aid", "/host/compact", "/host/radio",
             "/host/alerts")
    for page in pages:
        answer = kestrel.get(page)
        assert answer.status_code == 200, page
        shown = text_of(answer)
        assert UNREAD_CASES in shown and UNREAD_MEDIATION in shown and UNREAD_COMPLAINTS in shown, page
        assert "Nobody holds the host role" not in shown

    make_member(app, "Heron", DISPATCH)
    make_member(app, "Wren", MEDIATOR)
    for page in pages:
        shown = text_of(kestrel.get(page))
        assert UNREAD_CASES not in shown and UNREAD_MEDIATION not in shown, page
        assert UNREAD_COMPLAINTS in shown, page

    heron = app.test_client()
    login(heron, "Heron")
    assert UNREAD_COMPLAINTS not in text_of(heron.get("/cases")), "only hosts give roles: only hosts are warned"
    assert "Nobody holds" not in text_of(app.test_client().get("/")), "the public pages say nothing of it"


# -- landing where the work is ---------------------------------------------------------------


def test_each_role_lands_where_its_work_is(app, client):
    assert signed_in(app, "Heron", DISPATCH)[1] == "/cases"
    assert signed_in(app, "Otter", CARE)[1] == "/cases"
    assert signed_in(app, "Wren", MEDIATOR)[1] == "/host/mediation"
    assert signed_in(app, "Kestrel", HOST)[1] == host_landing(app)
    # With nothing waiting anywhere, a host who also dispatches starts on the board.
    assert signed_in(app, "Osprey", HOST, DISPATCH)[1] == host_landing(app)
    # Several roles: the most urgent waiting work first.
    ask_for_mediation(client)
    assert signed_in(app, "Plover", DISPATCH, MEDIATOR)[1] == "/host/mediation"
    assert signed_in(app, "Linnet", HOST, MEDIATOR)[1] == "/host/mediation"
    report_arrest(client)
    assert signed_in(app, "Pipit", DISPATCH, MEDIATOR)[1] == "/cases"
    assert signed_in(app, "Merlin", HOST, DISPATCH, MEDIATOR)[1] == "/cases"
    # A link followed to the login page still leads back to it.
    make_member(app, "Tern", DISPATCH)
    browser = app.test_client()
    page = submit(browser, "/login", {"handle": "Tern", "password": PASSWORD}, action="/login?next=/host/log")
    assert page.request.path == "/host/log"


# -- the dashboard: everything waiting on anyone -----------------------------------------------


def test_the_host_dashboard_lists_everything_waiting_on_anyone(app, client, clock):
    report_arrest(client)
    ask_for_mediation(client)
    ask_for_mediation(client)
    with app.app_context():
        posted = aid.post_aid(db.session, clock(), kind="offer", category="charging", text="Charging at number 12",
                              area_id=None, days=3, max_days=14, contact="ring the top bell")
        aid.leave_message(db.session, clock(), posted.post, "Tonight please", aid.SHOWN)
        heron = people.add_member(db.session, clock(), "Heron")
        mandates.grant(db.session, clock(), heron, DISPATCH, decision=Decision(clock().date(), "the library",
                       "Heron dispatches"), term_days=28, cap_days=28, by=None)
        db.session.commit()

    kestrel, _ = signed_in(app, "Kestrel", HOST)
    page = kestrel.get("/host/")
    shown = text_of(page).replace(" :", ":")
    assert "Waiting at the bench" in shown
    assert "URGENT Open arrest cases: 1 · 1 not confirmed yet" in shown
    assert "A case's details are for dispatch and the care ring." in shown
    assert "Mediation requests waiting for a mediator: 2" in shown
    assert shown.count("Aid messages waiting to be passed on: 1") == 1
    assert "Roles waiting for a countersign: 1" in shown
    html = page.get_data(as_text=True)
    assert 'href="/cases/waiting">Open arrest cases</a>' in html, "a host may confirm it, not open the case"


def test_a_dispatcher_sees_the_open_cases_and_arrest_rows_marked_urgent(app, client, clock):
    report_arrest(client)
    clock.advance(hours=49)
    heron, _ = signed_in(app, "Heron", DISPATCH)
    page = heron.get("/host/")
    shown = text_of(page).replace(" :", ":")
    assert "URGENT Open arrest cases: 1" in shown and "1 past 48 hours" in shown
    assert "Mediation requests" not in shown, "a dispatcher's dashboard is about the cases"
    html = page.get_data(as_text=True)
    assert 'href="/cases">Open arrest cases</a>' in html
    latest = html[html.index('id="log-heading"'):]
    assert re.search(r'<li class="card urgent"><span class="tag urgent">URGENT</span> <time[^>]*>[^<]*</time> · '
                     r"<strong>Arrest reported</strong>", latest), latest[:600]
