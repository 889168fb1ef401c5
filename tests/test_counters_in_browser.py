"""A neighbour typing in a long field sees how much is left, in Debian's chromium on a phone.

The hub runs as it ships (``safebench serve``). The mediation form's "Roughly
where" takes 120 characters and "What happened" 2000: near the limit the
page counts ("10 characters left"), a paste past it says how many are too
many, and nothing is cut; a screen reader hears the count once typing
pauses, never on every key, and nothing far from the limit. The form still
goes, and the server still refuses the overlong text with its count, keeping
every word. In Arabic the same counter speaks the page's language, right to
left, with Arabic's plural forms. With JavaScript off, the page is what it
was: a limit said up front and the server's refusal. On the roles page (two
forms, both with a "Meeting or place") each counter sits under its own field.
Screenshots land in ``tests/artifacts/counters/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from server.domain import people
from server.i18n import COOKIE as LANGUAGE_COOKIE
from tests.browser import (
    ARTIFACTS,
    chromium,
    console_errors,
    fits_and_is_labelled,
    offline_but_for,
    running_hub,
    seeding,
)
from tests.helpers import PASSWORD, seat_role

SHOTS = ARTIFACTS / "counters"
PHONE = {"width": 360, "height": 640}
WHERE_LIMIT, WHAT_LIMIT = 120, 2000
QUIET_S = 1.5  # the script speaks once typing has paused for a second

# Counts every change to the live line a screen reader follows, so a story can tell how often it spoke.
LISTEN = """(id) => {
  const heard = document.getElementById(id);
  window.spoken = [];
  new MutationObserver(() => window.spoken.push(heard.textContent))
    .observe(heard, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[str]:
    instance = tmp_path_factory.mktemp("counters") / "instance"
    with seeding(instance) as (session, now):
        osprey = people.add_member(session, now, "Osprey")
        people.set_password(osprey, PASSWORD)
        seat_role(session, now, osprey, people.HOST)
    with running_hub(instance, "serve") as base:
        yield base
    log = (instance.parent / "hub.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def shown(page: Page, field_id: str) -> str | None:
    """The counter under a field as a sighted person sees it; None when it is not shown."""
    counter = page.locator(f"#{field_id}-count")
    return counter.inner_text() if counter.is_visible() else None


def heard(page: Page, field_id: str) -> str:
    return page.locator(f"#{field_id}-count-heard").text_content() or ""


def test_a_neighbour_sees_the_count_near_the_limit_and_a_paste_past_it_is_kept_and_refused(browser, hub):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, foreign = offline_but_for(browser, hub, viewport=PHONE)
    try:
        page = context.new_page()
        problems = console_errors(page)  # a script the page's policy refused would be one
        page.goto(hub + "/mediation/new")
        where = page.get_by_label("Roughly where (optional)")
        assert "Up to 120 characters." in page.locator(".field", has=where).inner_text()
        page.evaluate(LISTEN, "where-count-heard")

        # Far from the limit: no count on the screen, nothing said.
        where.press_sequentially("Behind the old cinema")
        page.wait_for_timeout(QUIET_S * 1000)
        assert shown(page, "where") is None and page.evaluate("window.spoken") == []

        # Near it (the last tenth, at least ten): the count shows at each key; a screen reader hears it once.
        where.fill("")
        where.press_sequentially("Behind the old cinema, by the bins on the corner of Elm Street and the little "
                                 "lane that goes down to the")  # 104 characters: 16 left, not yet near
        assert shown(page, "where") is None
        where.press_sequentially(" river")  # 110: 10 left
        assert shown(page, "where") == "10 characters left"
        page.wait_for_timeout(QUIET_S * 1000)
        assert page.evaluate("window.spoken") == ["10 characters left"], "the count is said once typing pauses"
        assert page.locator("#where-count-heard").get_attribute("aria-live") == "polite"
        page.screenshot(path=SHOTS / "near-the-limit-360.png")
        fits_and_is_labelled(page, "the mediation form with a count shown")

        # A paste past the limit: every character stays, the count says how many are too many.
        what = page.get_by_label("What happened")
        told = "The bass from number 12 shakes our walls every night until three. " * 31  # 2046 characters
        what.focus()
        page.keyboard.insert_text(told)
        assert what.input_value() == told, "the browser kept every character pasted"
        over = len(told) - WHAT_LIMIT
        assert shown(page, "what") == f"{over} characters too many"
        page.wait_for_timeout(QUIET_S * 1000)
        assert heard(page, "what") == f"{over} characters too many"
        page.screenshot(path=SHOTS / "too-many-360.png", full_page=True)
        fits_and_is_labelled(page, "the mediation form with too much in it")

        assert not problems, problems  # counters.js ran: the page's policy let the hub's own file run
        # The form still goes; the server refuses the text with its count and keeps every word.
        page.get_by_label("In the next few days").check()
        page.get_by_role("button", name=re.compile("Send")).click()
        page.locator("#error-summary").wait_for()
        assert f"That is {len(told)} characters; at most 2000 fit here." in page.locator("#error-summary").inner_text()
        assert page.get_by_label("What happened").input_value().strip() == told.strip()
        assert shown(page, "what") == f"{over} characters too many"  # counted again as the page opens
        assert page.evaluate("document.activeElement.id") == "error-summary"  # the summary keeps the focus
        page.screenshot(path=SHOTS / "refused-360.png")
        fits_and_is_labelled(page, "the refused mediation form")
        # The refusal's status (400) is the one thing the console notes.
        assert [p for p in problems if "status of 400" not in p] == [], problems
        assert not foreign, foreign
    finally:
        context.close()


def test_in_arabic_the_counter_speaks_the_pages_language_with_its_plural_forms(browser, hub):
    context, foreign = offline_but_for(browser, hub, viewport=PHONE)
    context.add_cookies([{"name": LANGUAGE_COOKIE, "value": "ar", "url": hub}])
    try:
        page = context.new_page()
        problems = console_errors(page)
        page.goto(hub + "/mediation/new")
        assert page.evaluate("[document.documentElement.lang, document.dir]") == ["ar", "rtl"]
        words = page.evaluate("Object.assign({}, document.querySelector('script[src$=\"counters.js\"]').dataset)")
        # Arabic has six plural forms; the page hands the script each, in the catalogs' words.
        assert {"sayLeftZero", "sayLeftOne", "sayLeftTwo", "sayLeftFew", "sayLeftMany", "sayLeftOther",
                "sayOverOther"} <= set(words)
        where = page.locator("#where")
        for left, form in ((10, "sayLeftFew"), (2, "sayLeftTwo"), (1, "sayLeftOne"), (0, "sayLeftZero")):
            where.fill("")
            where.press_sequentially("ش" * (WHERE_LIMIT - left))
            assert shown(page, "where") == words[form].replace("{n}", str(left)), (left, form)
        where.press_sequentially("ش" * 11)
        assert shown(page, "where") == words["sayOverMany"].replace("{n}", "11")
        assert where.input_value() == "ش" * (WHERE_LIMIT + 11)
        page.locator("#where-count").scroll_into_view_if_needed()
        page.screenshot(path=SHOTS / "arabic-too-many-360.png")
        fits_and_is_labelled(page, "the mediation form in Arabic with too much in it")
        assert not problems, problems
        assert not foreign, foreign
    finally:
        context.close()


def test_with_javascript_off_the_page_is_as_before(browser, hub):
    # No page.evaluate here: with JavaScript off it waits for ever.
    context, foreign = offline_but_for(browser, hub, viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(hub + "/mediation/new")
        assert page.locator(".counter, [aria-live]").count() == 0  # only the script adds them
        where = page.get_by_label("Roughly where (optional)")
        assert "Up to 120 characters." in page.locator(".field", has=where).inner_text()
        assert where.get_attribute("maxlength") is None
        typed = "Behind the old cinema, by the bins. " * 4  # 144 characters
        where.fill(typed)
        assert where.input_value() == typed, "nothing cut"
        page.get_by_label("What happened").fill("Music until three every night.")
        page.get_by_label("In the next few days").check()
        page.get_by_role("button", name=re.compile("Send")).click()
        page.locator("#error-summary").wait_for()
        assert f"That is {len(typed)} characters; at most 120 fit here." in page.locator("#error-summary").inner_text()
        assert page.get_by_label("Roughly where (optional)").input_value().strip() == typed.strip()
        assert page.locator(".counter, [aria-live]").count() == 0
        page.screenshot(path=SHOTS / "no-javascript-refused-360.png")
        # (axe-core needs a script in the page: these pages are checked with it, JavaScript on, above and in
        # tests/test_pages_in_browser.py; what the script adds is all that differs.)
        assert not foreign, foreign
    finally:
        context.close()


def test_on_the_roles_page_each_counter_sits_under_its_own_field(browser, hub):
    context, foreign = offline_but_for(browser, hub, viewport=PHONE)
    try:
        page = context.new_page()
        problems = console_errors(page)
        page.goto(hub + "/login")
        page.get_by_label("Handle").fill("Osprey")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r".*/host/.*"))
        page.goto(hub + "/host/roles")
        # Both forms have a "Meeting or place"; each label names its own field.
        places = page.get_by_label("Meeting or place")
        ids = [places.nth(i).get_attribute("id") for i in range(places.count())]
        assert "grant-decision_place" in ids and "member-decision_place" in ids and len(set(ids)) == len(ids)
        member_place = page.locator("#member-decision_place")
        limit = int(member_place.get_attribute("data-limit"))
        member_place.fill("a" * (limit + 3))
        assert shown(page, "member-decision_place") == "3 characters too many"
        assert shown(page, "grant-decision_place") is None
        box = page.locator("#member-decision_place-count").bounding_box()
        field = member_place.bounding_box()
        assert box and field and box["y"] >= field["y"] + field["height"] - 1, "the count sits under its field"
        page.locator("#member-decision_place").scroll_into_view_if_needed()
        page.screenshot(path=SHOTS / "roles-member-form-360.png")
        fits_and_is_labelled(page, "the roles page with a count shown")
        assert not problems, problems
        assert not foreign, foreign
    finally:
        context.close()
