"""Forms that speak plainly: every mistake at once, at the top of the page; nothing typed is ever cut or lost.

A neighbour who sends a form with two mistakes reads both in one answer, in a
summary at the top of the page that links to each field; a text longer than
its field takes comes back whole with a message, never cut at the limit; a
host registering a steward hears of every wrong part at once; the page that
says "too many tries" speaks of what was limited and when to try again,
never of the hub's own names; and a receipt's "Check the status" shows the
status without the code ever being in an address.
"""

from __future__ import annotations

import re
from html import unescape

from server.domain import aid, mediation, patrol
from server.domain.people import HOST
from server.extensions import db
from tests.helpers import login, make_app, make_member, prefixed, submit, text_of


def summary_of(html: str) -> str:
    """The error summary's HTML: it must come first in the page's content, before the page's own heading."""
    main = html[html.index('<main id="main">'):]
    match = re.search(r'<div class="error-summary"[^>]*>.*?</div>', main, flags=re.DOTALL)
    assert match, "no error summary on the page"
    assert match.start() < main.index("<h1"), "the error summary is not at the top of the content"
    opening = match.group(0).split(">", 1)[0]
    assert 'tabindex="-1"' in opening and "autofocus" in opening, "the summary does not take the focus"
    return match.group(0)


def links_in(summary: str) -> dict[str, str]:
    """Each link of the summary: the id it leads to, and its words."""
    return {target: unescape(" ".join(re.sub(r"<[^>]+>", " ", words).split()))
            for target, words in re.findall(r'<a href="#([^"]+)">(.*?)</a>', summary, flags=re.DOTALL)}


def test_a_request_with_two_mistakes_hears_of_both_at_once_with_a_link_to_each(client):
    where = "Behind the old cinema, " * 10  # 230 characters; the field takes 120

    refused = submit(client, "/mediation/new", {"what": "   ", "where": where, "urgency": "soon"})

    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    links = links_in(summary_of(html))
    assert links == {"what": "Please describe what happened, in a few words or many.",
                     "where": f"That is {len(where)} characters; at most 120 fit here. Please shorten it."}
    assert "There are 2 problems" in text_of(refused)
    # Each link leads to a field that is on the page, marked and described by its message.
    for target in links:
        assert re.search(rf'<(input|textarea)[^>]*aria-invalid="true"[^>]*id="{target}"', html)


def test_overlong_text_comes_back_whole_with_a_message_never_cut(client):
    what = "The bass from number 12 shakes our walls every night until three. " * 40  # about 2,700 characters

    form = client.get("/mediation/new").get_data(as_text=True)
    # The browser is never told to cut: it would drop the end of a paste without a word.
    assert "maxlength" not in form
    assert "Up to 2000 characters." in text_of(client.get("/mediation/new"))

    refused = submit(client, "/mediation/new", {"what": what, "urgency": "soon"})

    assert refused.status_code == 400
    counted = len(what)
    assert f"That is {counted} characters; at most 2000 fit here. Please shorten it." in text_of(refused)
    kept = re.search(r'<textarea[^>]*id="what"[^>]*>(.*?)</textarea>', refused.get_data(as_text=True), re.DOTALL)
    assert unescape(kept.group(1)).strip() == what.strip(), "every word typed comes back, nothing cut"


def test_no_form_on_the_hub_tells_the_browser_to_cut_a_paste(app, client):
    make_member(app, "Kestrel", HOST, term_days=365)
    login(client, "Kestrel")
    for page in ("/mediation/new", "/complaints/new", "/aid/new", "/arrest", "/compact",
                 "/host/log", "/host/stewards", "/host/roles", "/host/compact", "/host/alerts"):
        html = client.get(page).get_data(as_text=True)
        assert "maxlength" not in html, f"{page} cuts text at a maxlength"


def test_the_steward_form_reports_every_mistake_at_once(app, client):
    make_member(app, "Kestrel", HOST, term_days=365)
    login(client, "Kestrel")
    typed = {"handle": "Wren <3", "node_id": "the blue one", "radio_key": "not a key",
             "decided_on": "2027-01-30", "decision_place": "assembly at the library",
             "decision": "assembly 21 Nov, item 4"}

    refused = submit(client, "/host/stewards", typed)

    assert refused.status_code == 400
    links = links_in(summary_of(refused.get_data(as_text=True)))
    assert links == {
        "handle": "A handle uses letters, digits, spaces, dots, dashes or underscores.",
        "node_id": "A node id looks like !a1b2c3d4 (as the Meshtastic app shows it) or a node number.",
        "radio_key": "A radio key is 32 bytes in base64, as the Meshtastic app shows it (Settings, Security, Public key).",
        "decided_on": "That day is still to come: the assembly cannot have decided it yet.",
    }
    html = refused.get_data(as_text=True)
    assert 'value="Wren &lt;3"' in html and 'value="the blue one"' in html and 'value="not a key"' in html


def test_a_radio_taken_and_a_missing_decision_are_told_together(app, client):
    make_member(app, "Kestrel", HOST, term_days=365)
    login(client, "Kestrel")
    decided = {"decided_on": "2026-11-21", "decision_place": "assembly at the library"}
    submit(client, "/host/stewards", {"handle": "Wren", "node_id": "!a1b2c3d4", "decision": "item 4", **decided})

    refused = submit(client, "/host/stewards", {"handle": "Finch", "node_id": "a1b2c3d4", "decision": "", **decided})

    links = links_in(summary_of(refused.get_data(as_text=True)))
    assert links == {"node_id": "Node !a1b2c3d4 is already registered to Wren.",
                     "decision": "Please fill in the words of the decision."}


def test_too_many_tries_says_what_was_limited_and_when_to_try_again_in_plain_words(tmp_path, clock):
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=True, PUBLIC_FORM_LIMIT="1 per hour")
    client = app.test_client()
    with app.app_context():
        area = patrol.add_area(db.session, "Market")
        db.session.commit()
        area_id = area.id
    asked = {"kind": aid.ASK, "category": "food", "text": "A warm meal for two on Sunday", "area": str(area_id),
             "days": "7"}
    try:
        assert submit(client, "/aid/new", asked).status_code == 200
        refused = submit(client, "/aid/new", {**asked, "text": "Soup for the Larch Street flats"})

        assert refused.status_code == 429
        page = text_of(refused)
        assert "Too many tries from this phone" in page
        assert "the hub limits how often one phone can be used for sending forms, and this phone has reached that limit for now. Nothing was saved." in page
        assert "Please try again in 60 minutes." in page
        # What they typed comes back under its label; what they picked from a list, in the hub's names, does not.
        assert "In a few words Soup for the Larch Street flats" in page
        for internal in ("ask", "food", "per hour", "per 1 hour", "Kind", "Category", "Area", "Days", "limit:"):
            assert not re.search(rf"\b{re.escape(internal)}\b", page), f"the page shows {internal!r}"
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_check_the_status_after_a_receipt_shows_it_without_the_code_in_any_address(client):
    receipt = submit(client, "/mediation/new", {"what": "The hedge between us blocks the light.", "urgency": "soon"})
    assert receipt.request.path == "/mediation/receipt"
    html = receipt.get_data(as_text=True)
    code = re.search(r'id="receipt-code">([^<]+)<', html).group(1)
    # "Check the status" is a button that posts the code; no link carries it.
    button = re.search(r'<form class="inline" method="post" action="(/mediation/status)">(.*?)</form>', html, re.DOTALL)
    assert button and f'name="code" value="{code}"' in button.group(2) and "Check the status" in button.group(2)
    assert not re.search(rf'href="[^"]*{re.escape(code)}', html)

    token = re.search(r'name="csrf_token" value="([^"]+)"', button.group(2)).group(1)
    status = client.post("/mediation/status", data={"csrf_token": token, "code": code})

    assert status.status_code == 200 and status.request.path == "/mediation/status"
    page = text_of(status)
    assert f"Request {code}" in page and mediation.STATUS_LABELS[mediation.NEW] in page


def test_check_the_status_after_a_complaint_receipt_shows_it_too(client):
    receipt = submit(client, "/complaints/new", {"about": "role:steward", "what": "A steward shouted at my son."})
    html = receipt.get_data(as_text=True)
    code = re.search(r'class="receipt"[^>]*>([^<]+)<', html).group(1).strip()
    button = re.search(r'<form class="inline" method="post" action="(/complaints/status)">(.*?)</form>', html, re.DOTALL)
    assert button and f'name="code" value="{code}"' in button.group(2)
    token = re.search(r'name="csrf_token" value="([^"]+)"', button.group(2)).group(1)

    status = client.post("/complaints/status", data={"csrf_token": token, "code": code})

    assert status.status_code == 200 and code in text_of(status)


def test_a_role_asked_for_with_a_bad_handle_and_a_day_to_come_hears_of_both_at_once(app, client):
    make_member(app, "Kestrel", HOST, term_days=365)
    login(client, "Kestrel")
    refused = submit(client, "/host/roles", prefixed("grant", {
        "handle": "Wren <3", "role": "dispatch", "term_days": "28", "decided_on": "2027-01-30",
        "decision_place": "assembly at the library", "decision": "assembly 21 Nov, item 4"}), action="/host/roles")

    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    # Each link lands in the grant form, not in the member form below it, which has a handle too.
    assert links_in(summary_of(html)) == {
        "grant-handle": "A handle uses letters, digits, spaces, dots, dashes or underscores.",
        "grant-decided_on": "That day is still to come: the assembly cannot have decided it yet.",
    }
    assert html.count('id="grant-handle"') == 1 and 'id="member-handle"' in html and 'id="handle"' not in html
