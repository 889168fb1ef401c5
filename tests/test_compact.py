"""Stories of the Community Safety Compact: neighbours read and sign it, the host keeps it."""

from __future__ import annotations

from server.domain import compact
from server.domain.people import HOST
from server.extensions import db
from server.web.access import audience_of
from tests.helpers import login, make_member, submit, text_of

MARK = "Ruth from number 9"


def public_pages(app) -> list[str]:
    """Every public page that takes no arguments, from the app's own URL map."""
    return [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and not rule.arguments and audience_of(app, rule.endpoint) is None
    ]


def signatures_kept(app) -> int:
    with app.app_context():
        return compact.signature_count(db.session)


def test_a_neighbour_signs_and_only_the_count_is_public(app, client):
    page = text_of(client.get("/compact"))
    assert "We look out for each other" in page and "0 neighbours have signed" in page

    signed = submit(client, "/compact", {"mark": MARK}, action="/compact/sign")

    assert signed.status_code == 200 and signed.request.path == "/compact"
    assert "Thank you for signing the compact." in text_of(signed)
    assert "1 neighbour has signed" in text_of(signed)
    assert "1 neighbour has signed" in text_of(client.get("/"))
    for url in public_pages(app):
        assert MARK not in client.get(url).get_data(as_text=True), url


def test_the_host_sees_the_marks_and_removes_a_prank(app, client):
    submit(client, "/compact", {"mark": MARK}, action="/compact/sign")
    submit(client, "/compact", {"mark": "Mickey Mouse"}, action="/compact/sign")
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")

    marks = text_of(client.get("/host/compact"))
    assert MARK in marks and "Mickey Mouse" in marks
    with app.app_context():
        prank = next(s.id for s in compact.signatures(db.session) if s.mark == "Mickey Mouse")
    removed = submit(client, "/host/compact", {}, action=f"/host/compact/signatures/{prank}/remove")

    assert "Mickey Mouse" not in text_of(removed) and MARK in text_of(removed)
    assert "1 neighbour has signed" in text_of(client.get("/compact"))


def test_the_host_edits_the_text_and_neighbours_read_the_new_text(app, client):
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")
    new_text = "We, the neighbours of Elm Court, agree:\n1. We look out for each other.\n\n2. We talk first."

    saved = submit(client, "/host/compact", {"text": new_text})

    assert saved.status_code == 200
    assert "The new text of the compact is published." in text_of(saved)
    html = client.get("/compact").get_data(as_text=True)
    # Line breaks and paragraphs survive; the old text is gone.
    assert "agree:<br>1. We look out for each other.</p>" in html
    assert "<p>2. We talk first.</p>" in html
    assert "de-escalate" not in html


def test_an_empty_compact_is_refused_and_the_old_text_stays(app, client):
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")

    refused = submit(client, "/host/compact", {"text": "   "})

    assert refused.status_code == 400
    assert "The compact cannot be empty." in text_of(refused)
    assert "de-escalate" in text_of(client.get("/compact"))


def test_an_oversized_mark_gets_a_clear_message_and_is_not_counted(app, client):
    too_long = "x" * (compact.MAX_MARK + 1)

    refused = submit(client, "/compact", {"mark": too_long}, action="/compact/sign")

    assert refused.status_code == 400
    assert f"A name or mark is at most {compact.MAX_MARK} characters." in text_of(refused)
    assert f'value="{too_long}"' in refused.get_data(as_text=True)  # kept for the signer to shorten
    assert signatures_kept(app) == 0


def test_a_mark_of_nothing_visible_is_refused(app, client):
    blank = submit(client, "/compact", {"mark": "   "}, action="/compact/sign")
    invisible = submit(client, "/compact", {"mark": " \u200b\u200b "}, action="/compact/sign")

    assert blank.status_code == invisible.status_code == 400
    assert "Please write your name or a mark to sign." in text_of(blank)
    assert "Please fill in the name or mark." in text_of(invisible)
    assert signatures_kept(app) == 0
