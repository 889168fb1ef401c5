"""Stories of the Community Safety Compact: neighbours read and sign it, the host keeps it."""

from __future__ import annotations

import re
from html import unescape

from server.domain import compact, power_record, sealing
from server.domain.people import HOST, Member
from server.extensions import db
from server.web.access import audience_of
from tests.helpers import login, make_member, submit, text_of, unsealed

MARK = "Ruth from number 9"
DECISION = "assembly 3 Dec at the library, item 4: the compact names Elm Court"
_VERSION = re.compile(r'name="version"[^>]*value="([^"]*)"')


def version_on(html: str) -> str:
    """The version a sign form was shown with, as a browser sends it back."""
    match = _VERSION.search(html)
    assert match, "no sign form with the version it shows"
    return unescape(match.group(1))


def current_text_on(response) -> str:
    """The compact's text in force, as the page shows it above its history."""
    html = response.get_data(as_text=True)
    return html[html.index('aria-label="Text of the compact"'):html.index("</article>")]


def sign(client, mark: str, version: str | None = None):
    """A neighbour opens the compact page and signs the text it shows (or, given ``version``, an older page's)."""
    version = version or version_on(client.get("/compact").get_data(as_text=True))
    return submit(client, "/compact", {"mark": mark, "version": version}, action="/compact/sign")


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

    signed = sign(client, MARK)

    assert signed.status_code == 200 and signed.request.path == "/compact"
    assert "Thank you for signing the compact." in text_of(signed)
    assert "1 neighbour has signed" in text_of(signed)
    assert "1 neighbour has signed" in text_of(client.get("/"))
    for url in public_pages(app):
        assert MARK not in client.get(url).get_data(as_text=True), url


def test_the_host_sees_the_marks_and_removes_a_prank(app, client):
    sign(client, MARK)
    sign(client, "Mickey Mouse")
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")

    marks = text_of(client.get("/host/compact"))
    assert MARK in marks and "Mickey Mouse" in marks
    with app.app_context():
        kept = [(s.id, s.mark) for s in compact.signatures(db.session)]
    # Marks are sealed on the card, for the host's eyes only.
    assert all(sealing.is_sealed(mark) for _id, mark in kept)
    prank = next(mark_id for mark_id, mark in kept if unsealed(app, mark) == "Mickey Mouse")
    no_reason = submit(client, "/host/compact", {"reason": " "}, action=f"/host/compact/signatures/{prank}/remove")
    removed = submit(client, "/host/compact", {"reason": "a prank, says the assembly"},
                     action=f"/host/compact/signatures/{prank}/remove")

    assert no_reason.status_code == 400
    assert "Say why this signature goes (a prank, or its signer asked)" in text_of(no_reason)
    assert "Mickey Mouse" not in text_of(removed) and MARK in text_of(removed)
    assert "The signature is removed, and the removal is in the record of power used." in text_of(removed)
    assert "1 neighbour has signed" in text_of(client.get("/compact"))
    with app.app_context():
        entry = power_record.entries(db.session)[0]
        assert (entry.actor, entry.action, entry.subject, entry.reason) == (
            "Kestrel", "signature-removed", "a signature on compact version 1", "a prank, says the assembly")
    gone = submit(client, "/host/compact", {"reason": "twice"}, action=f"/host/compact/signatures/{prank}/remove")
    assert gone.status_code == 400 and "That signature does not exist" in text_of(gone)


def test_the_host_edits_the_text_and_neighbours_read_the_new_text(app, client):
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")
    new_text = "We, the neighbours of Elm Court, agree:\n1. We look out for each other.\n\n2. We talk first."

    saved = submit(client, "/host/compact", {"text": new_text, "decision": DECISION})

    assert saved.status_code == 200
    assert "Version 2 of the compact is published." in text_of(saved)
    html = current_text_on(client.get("/compact"))
    # Line breaks and paragraphs survive; the old text is gone from the text in force.
    assert "agree:<br>1. We look out for each other.</p>" in html
    assert "<p>2. We talk first.</p>" in html
    assert "de-escalate" not in html


def test_an_empty_compact_is_refused_and_the_old_text_stays(app, client):
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")

    refused = submit(client, "/host/compact", {"text": "   ", "decision": DECISION})

    assert refused.status_code == 400
    assert "The compact cannot be empty." in text_of(refused)
    assert "de-escalate" in text_of(client.get("/compact"))


def test_an_oversized_mark_gets_a_clear_message_and_is_not_counted(app, client):
    too_long = "x" * (compact.MAX_MARK + 1)

    refused = sign(client, too_long)

    assert refused.status_code == 400
    assert f"A name or mark is at most {compact.MAX_MARK} characters." in text_of(refused)
    assert f'value="{too_long}"' in refused.get_data(as_text=True)  # kept for the signer to shorten
    assert signatures_kept(app) == 0


def test_a_mark_of_nothing_visible_is_refused(app, client):
    blank = sign(client, "   ")
    invisible = sign(client, " \u200b\u200b ")

    assert blank.status_code == invisible.status_code == 400
    assert "Please write your name or a mark to sign." in text_of(blank)
    assert "Please fill in the name or mark." in text_of(invisible)
    assert signatures_kept(app) == 0


# -- versions -------------------------------------------------------------------

ELM_COURT = """We, the neighbours of Elm Court, agree:

1. We look out for each other, and we talk before we do anything else.
2. We call on mediation before conflicts grow, and we keep what we hear in confidence.
7. No one films a neighbour in trouble without their consent."""


def edit(client, text: str, decision: str = DECISION):
    return submit(client, "/host/compact", {"text": text, "decision": decision})


def test_a_compact_edit_keeps_old_signatures_on_the_old_version(app, client, clock):
    sign(client, MARK)
    sign(client, "J.")
    make_member(app, "Kestrel", HOST)
    host = app.test_client()
    clock.advance(days=3)
    login(host, "Kestrel")  # three days on: a login from then would have ended long ago

    published = edit(host, ELM_COURT)

    assert "Version 2 of the compact is published." in text_of(published)
    page = text_of(client.get("/compact"))
    assert "Version 2, in force since Tue 24 Nov 2026" in page
    assert "0 neighbours have signed this version of the compact." in page
    assert "0 neighbours have signed the current text" in text_of(client.get("/"))
    # The two who signed the first text are still counted, for the text they read.
    assert "Version 1 Sat 21 Nov 2026 · 2 signatures" in page
    assert "Version 2 (current) Tue 24 Nov 2026 · 0 signatures" in page

    sign(client, "Mo")

    assert "1 neighbour has signed this version" in text_of(client.get("/compact"))
    with app.app_context():
        by_version = {s.mark: s.version.number for s in compact.signatures(db.session)}
    assert {unsealed(app, mark): number for mark, number in by_version.items()} == {MARK: 1, "J.": 1, "Mo": 2}
    with app.app_context():
        assert compact.versions(db.session)[-1].text.startswith("We, the neighbours who keep this bench")


def test_signing_a_text_that_changed_meanwhile_is_refused_and_the_new_text_shown(app, client):
    read = version_on(client.get("/compact").get_data(as_text=True))  # the neighbour starts reading...
    make_member(app, "Kestrel", HOST)
    host = app.test_client()
    login(host, "Kestrel")
    edit(host, ELM_COURT)  # ... the host publishes a new text meanwhile ...

    refused = sign(client, MARK, version=read)  # ... and the neighbour signs the page they read

    assert refused.status_code == 400
    assert ("The compact changed while you were reading it: this is now version 2, shown above. "
            "Read it, and sign again if you agree.") in text_of(refused)
    assert "No one films a neighbour in trouble" in current_text_on(refused)
    assert f'value="{MARK}"' in refused.get_data(as_text=True)  # kept, to sign the new text in one tap
    assert version_on(refused.get_data(as_text=True)) == "2"
    assert signatures_kept(app) == 0

    signed = sign(client, MARK, version=version_on(refused.get_data(as_text=True)))

    assert "Thank you for signing the compact." in text_of(signed)
    with app.app_context():
        assert [s.version.number for s in compact.signatures(db.session)] == [2]


def test_a_sign_form_with_no_version_or_a_made_up_one_signs_nothing(app, client):
    for version in ("", "7", "²", "1; DROP TABLE", "9" * 40):
        refused = submit(client, "/compact", {"mark": MARK, "version": version}, action="/compact/sign")
        assert refused.status_code == 400, version
        assert "The compact changed while you were reading it" in text_of(refused)
    assert signatures_kept(app) == 0


def test_the_history_shows_what_changed_escaped(app, client, clock):
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")
    edit(client, ELM_COURT)
    clock.advance(days=20)  # within the host's term
    login(client, "Kestrel")  # though long past a login's life
    with_markup = ELM_COURT.replace("7. No one films", "7. <b>No one</b> films") + "\n8. <script>alert(1)</script>"
    edit(client, with_markup, decision="assembly 2 Jan, item 1: clause 8 <as drafted>")

    response = client.get("/compact")
    html, page = response.get_data(as_text=True), text_of(response)

    assert "Version 3 (current) Fri 11 Dec 2026 · 0 signatures Decision: assembly 2 Jan, item 1: clause 8 <as drafted>" in page
    assert f"Version 2 Sat 21 Nov 2026 · 0 signatures Decision: {DECISION}" in page
    assert "Version 1 Sat 21 Nov 2026 · 0 signatures Decision: The text the hub comes with" in page
    # Version 2 from version 1: a word changed within a line, a line removed, a line added.
    assert "We, the neighbours <del>who keep this bench, </del><ins>of Elm Court, </ins>agree:" in html
    assert "and we <del>de-escalate </del><ins>talk </ins>before we do anything else." in html
    assert "Removed: 3. Our patrol log is public" in page
    assert "Added: 7. No one films a neighbour in trouble without their consent." in page
    # Version 3 from version 2: what anyone typed is shown as text, never as markup.
    assert "7. <del>No one </del><ins>&lt;b&gt;No one&lt;/b&gt; </ins>films a neighbour" in html
    assert "<ins>8. &lt;script&gt;alert(1)&lt;/script&gt;</ins>" in html
    assert "<script>alert(1)" not in html and "<b>No one</b>" not in html and "<as drafted>" not in html


def test_a_compact_edit_appears_in_the_record_with_its_decision(app, client, clock):
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")
    edit(client, ELM_COURT)

    with app.app_context():
        entry = power_record.entries(db.session)[0]
        assert (entry.at, entry.actor, entry.role, entry.action, entry.subject, entry.reason) == (
            clock.now, "Kestrel", HOST, "compact-edited", "compact version 2", DECISION)
        assert power_record.broken_links(db.session) == []


def test_an_edit_without_a_decision_or_a_change_or_on_an_old_page_is_refused(app, client):
    make_member(app, "Kestrel", HOST)
    login(client, "Kestrel")
    other_host = app.test_client()
    make_member(app, "Heron", HOST)
    login(other_host, "Heron")
    opened = client.get("/host/compact").get_data(as_text=True)
    stale = re.search(r'name="based_on"[^>]*value="([^"]*)"', opened).group(1)

    no_decision = edit(client, ELM_COURT, decision="  ")
    vague = edit(client, ELM_COURT, decision="x")
    unchanged = edit(client, compact.DEFAULT_TEXT, decision=DECISION)
    edit(other_host, ELM_COURT)
    overwrite = submit(client, "/host/compact", {"text": ELM_COURT + "\n9. More.", "decision": DECISION,
                                                 "based_on": stale})

    assert no_decision.status_code == vague.status_code == unchanged.status_code == overwrite.status_code == 400
    assert "Name the assembly decision behind this text: its date, the meeting, and what it decided." \
        in text_of(no_decision)
    assert "Name the assembly decision behind this text" in text_of(vague)
    assert "This is the text already published: change it, or leave the page." in text_of(unchanged)
    assert "Another host published version 2 of the compact while you were editing." in text_of(overwrite)
    with app.app_context():
        assert [v.number for v in compact.versions(db.session)] == [2, 1]


def test_a_hub_with_an_edited_compact_upgrades_with_each_signature_on_the_text_it_was_made_on(tmp_path, clock):
    from flask_migrate import upgrade

    from server import create_app
    from server.migrating import apply_migrations

    app = create_app({"INSTANCE": tmp_path / "old-hub", "TESTING": True, "CLOCK": clock})
    with app.app_context():
        upgrade(revision="b12r0000rec1")  # the schema before versions had numbers and decisions
        for row in ("INSERT INTO compact_version (id, text, edited_at) VALUES (1, 'We talk first.', '2026-11-05 20:00:00')",
                    "INSERT INTO compact_version (id, text, edited_at) VALUES (2, 'We talk, then listen.', "
                    "'2026-11-10 20:00:00')",
                    # Signed on the text the hub came with, before any edit: no version.
                    "INSERT INTO compact_signature (id, mark, signed_at) VALUES (1, 'A', '2026-11-01 20:00:00')",
                    "INSERT INTO compact_signature (id, mark, signed_at) VALUES (2, 'B', '2026-11-03 20:00:00')",
                    "INSERT INTO compact_signature (id, mark, signed_at, version_id) "
                    "VALUES (3, 'C', '2026-11-06 20:00:00', 1)",
                    # A signature that lost its version: the one in force when it was made.
                    "INSERT INTO compact_signature (id, mark, signed_at) VALUES (4, 'D', '2026-11-12 20:00:00')"):
            db.session.execute(db.text(row))
        db.session.commit()
    apply_migrations(app)

    with app.app_context():
        kept = {v.number: (v.text[:14], v.decision[:12]) for v in compact.versions(db.session)}
        placed = {s.mark: s.version.number for s in compact.signatures(db.session)}
        count = compact.signature_count(db.session)
    assert kept == {1: ("We, the neighb", "The text the"), 2: ("We talk first.", "Not recorded"),
                    3: ("We talk, then ", "Not recorded")}
    # The upgrade sealed the marks that were on the card in the clear.
    assert all(sealing.is_sealed(mark) for mark in placed)
    assert {unsealed(app, mark): number for mark, number in placed.items()} == {"A": 1, "B": 1, "C": 2, "D": 3}
    assert count == 1
    page = text_of(app.test_client().get("/compact"))
    assert "Version 1 Sun 01 Nov 2026 · 2 signatures" in page and "Version 2 Thu 05 Nov 2026 · 1 signature" in page


def test_a_neighbour_reads_the_versions_and_what_changed_on_a_small_phone(tmp_path):
    """The real server, a real browser 320 px wide: the history opens, fits the screen and runs no script."""
    from server import config, create_app
    from server.migrating import apply_migrations
    from tests.browser import chromium, console_errors, fits_and_is_labelled, offline_but_for, running_hub

    instance = tmp_path / "instance"
    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    apply_migrations(app)
    host_id = make_member(app, "Kestrel", HOST)
    with app.app_context():
        now, kestrel = app.config["CLOCK"](), db.session.get(Member, host_id)
        compact.sign(db.session, now, MARK, compact.FIRST_NUMBER)
        compact.edit_text(db.session, now, kestrel, ELM_COURT, DECISION)
        compact.edit_text(db.session, now, kestrel, ELM_COURT + "\n8. Ourneighbourhoodwatchneverfilmsanyone"
                          "withoutaskingfirstwhateverhappensatallwhatsoever, yes.", "assembly 4 Dec, item 2: clause 8")
        db.session.commit()
        db.session.remove()
        db.engine.dispose()

    with running_hub(instance, "serve") as base, chromium() as browser:
        context, foreign = offline_but_for(browser, base, viewport={"width": 320, "height": 640})
        try:
            page = context.new_page()
            problems = console_errors(page)
            page.goto(base + "/compact", wait_until="load")
            for summary in page.locator("details:not([open]) summary").all():
                summary.click()

            assert page.locator("#history article").count() == 3
            assert page.locator("#history del").count() and page.locator("#history ins").count()
            # No script but the length counter of the signing form's long field (its own file, never inline).
            sources = [script.get_attribute("src") or "" for script in page.locator("script").all()]
            assert all(src.split("?")[0].endswith("/static/counters.js") for src in sources), sources
            fits_and_is_labelled(page, "/compact with its history open")
            assert not problems and not foreign
        finally:
            context.close()
