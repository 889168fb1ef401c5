"""A neighbour opens every public page on a small phone, in a real browser.

The hub runs as it ships (``safebench serve`` under waitress) and Debian's
chromium visits each public page at 320 px wide, in English and then in
Arabic (right to left, chosen with the language switcher): the page loads,
nothing scrolls sideways, every field has a label, axe-core finds no
accessibility problem, and nothing is fetched from anywhere but the hub (the
bench may have no internet at all). Screenshots land in ``tests/artifacts/``
for a human to look at.

The list of pages comes from the app's URL map, so a new public page is
checked the day it lands. Last, a host watches the live log, the one page
that runs a script: an entry the bridge writes appears without a reload.
"""

from __future__ import annotations

import re
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from sqlalchemy.orm import Session

from server import config, create_app
from server.clock import utcnow
from server.db import make_engine
from server.domain import aid, patrol, people
from server.extensions import db
from server.migrating import apply_migrations
from server.web.access import audience_of
from tests.browser import (
    ARTIFACTS,
    chromium,
    console_errors,
    fits_and_is_labelled,
    offline_but_for,
    running_hub,
)
from tests.helpers import PASSWORD, add_steward, seat_role
from tests.processes import safebench

VIEWPORT = {"width": 320, "height": 640}
PAGE_BUDGET_BYTES = 30_000  # the bench page's HTML plus its CSS


def public_pages() -> list[tuple[str, str]]:
    """(endpoint, path) of every page anyone may GET without parameters."""
    with tempfile.TemporaryDirectory() as instance:
        app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(Path(instance))})
        pages = sorted(
            (rule.endpoint, rule.rule)
            for rule in app.url_map.iter_rules()
            if rule.endpoint != "static"
            and "GET" in (rule.methods or ())
            and not rule.arguments
            and audience_of(app, rule.endpoint) is None
        )
        with app.app_context():
            db.engine.dispose()
    return pages


PUBLIC_PAGES = public_pages()


# -- the hub and the browser --------------------------------------------------


def _seed(instance: Path) -> None:
    """A steward on shift in a published area, a little log, an open offer."""
    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    apply_migrations(app)
    with app.app_context():
        session = db.session
        now = app.config["CLOCK"]()
        market = patrol.add_area(session, "Market")
        kestrel = add_steward(session, now, "Kestrel", "!a1b2c3d4")
        patrol.start_shift(session, now, kestrel, "Market square", patrol.SOURCE_RADIO)
        patrol.record_check_in(session, now, kestrel, patrol.SOURCE_RADIO, note="all quiet")
        patrol.record_incident(session, now, kestrel, patrol.SOURCE_RADIO, "loud argument, calmed down")
        aid.post_aid(
            session,
            now,
            kind=aid.OFFER,
            category="charging",
            text="Phone chargers at the bench",
            area_id=market.id,
            days=7,
            max_days=60,
        )
        session.commit()
        session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def hub_instance(tmp_path_factory) -> Path:
    """The seeded instance folder the hub serves, for stories that write to it as the bridge would."""
    instance = tmp_path_factory.mktemp("hub") / "instance"
    _seed(instance)
    return instance


@pytest.fixture(scope="module")
def hub(hub_instance):
    """The real ``safebench serve`` on a free local port; yields its base URL."""
    with running_hub(hub_instance, "serve") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


# -- what is checked on each page ---------------------------------------------

def stylesheets(html: str) -> list[str]:
    """The href of every ``<link rel="stylesheet">`` in a page."""
    links = [dict(re.findall(r'([\w-]+)\s*=\s*"([^"]*)"', tag)) for tag in re.findall(r"<link\b[^>]*>", html)]
    return [link["href"] for link in links if "stylesheet" in link.get("rel", "").split() and "href" in link]


def _artifact_name(endpoint: str) -> str:
    return re.sub(r"[^\w-]+", "-", endpoint).strip("-")


def _phone_offline_but_for(browser, hub: str):
    """A small phone's browser that may reach the hub and nothing else; returns it and what it tried elsewhere."""
    return offline_but_for(browser, hub, viewport=VIEWPORT)


@pytest.mark.parametrize(("endpoint", "path"), PUBLIC_PAGES, ids=[path for _, path in PUBLIC_PAGES])
def test_a_neighbour_reads_a_public_page_on_a_small_phone(browser, hub, endpoint, path):
    context, foreign = _phone_offline_but_for(browser, hub)
    try:
        page = context.new_page()
        response = page.goto(hub + path, wait_until="load")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{_artifact_name(endpoint)}-320.png", full_page=True)

        assert response is not None and response.status == 200, f"{path} answered {response and response.status}"
        fits_and_is_labelled(page, path)

        # The same page in Arabic, chosen with the switcher at its foot: right to left, and as sound.
        shown = page.url  # a receipt page without a receipt sends the phone on to its form
        page.get_by_role("navigation", name="Language").get_by_role("link", name="العربية").click()
        page.wait_for_function("document.documentElement.lang === 'ar'")
        assert page.url == shown and page.evaluate("document.dir") == "rtl", f"{shown} became {page.url}"
        page.screenshot(path=ARTIFACTS / f"{_artifact_name(endpoint)}-320-ar.png", full_page=True)
        fits_and_is_labelled(page, f"{path} in Arabic")
        assert not foreign, f"{path} asked other hosts than the hub for: {foreign}"
    finally:
        context.close()


def test_the_bench_page_and_its_css_stay_small(hub):
    with urllib.request.urlopen(hub + "/", timeout=10) as response:
        html = response.read()
    sizes = {"/": len(html)}
    for href in stylesheets(html.decode()):
        url = urljoin(hub + "/", href)
        with urllib.request.urlopen(url, timeout=10) as response:
            sizes[urlsplit(url).path] = len(response.read())
    assert len(sizes) > 1, "the bench page links no stylesheet: has the <link> changed shape?"
    assert sum(sizes.values()) < PAGE_BUDGET_BYTES, f"the bench page weighs {sum(sizes.values())} bytes: {sizes}"


# -- the host's live log ------------------------------------------------------


def _log_as_the_bridge(instance: Path, kind: str, place: str, drill: bool) -> int:
    """An entry committed from this process through the domain layer, as the radio bridge writes one."""
    engine = make_engine(config.default_database_uri(instance), 5000)
    try:
        with Session(engine) as session:
            kestrel = people.get_member(session, "Kestrel")
            entry = patrol.log_entry(session, utcnow(), kind, kestrel, patrol.SOURCE_RADIO, place=place, drill=drill)
            session.commit()
            return entry.id
    finally:
        engine.dispose()


def test_a_host_watching_the_live_log_sees_an_sos_appear_without_reloading(browser, hub, hub_instance):
    done = safebench(hub_instance, "create-host", "Osprey", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        # A script or connection the page's policy refused is a console error.
        problems = console_errors(page)
        page.goto(hub + "/login")
        page.get_by_label("Handle").fill("Osprey")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login" not in url)  # a host lands on the board or the dashboard
        page.get_by_role("navigation", name="Hub").get_by_role("link", name="Live log").click()
        page.wait_for_url("**/host/live")
        page.wait_for_selector("#live-state[data-state=live]")
        loaded = page.locator("#live-entries > li").count()

        entry_id = _log_as_the_bridge(hub_instance, "sos", "Market square, by the fountain", drill=True)

        row = page.locator(f"#entry-{entry_id}")
        row.wait_for(timeout=5_000)
        assert page.locator("#live-entries > li").count() == loaded + 1
        assert page.locator("#live-entries > li").first.get_attribute("id") == f"entry-{entry_id}"
        assert "urgent" in row.get_attribute("class").split()
        text = " ".join(row.inner_text().split())
        assert text.startswith("URGENT DRILL SOS") and "Kestrel" in text and "by the fountain" in text
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "host-live-320.png", full_page=True)
        assert not problems, problems
    finally:
        context.close()


# -- a neighbour reports an arrest --------------------------------------------


def test_a_neighbour_reports_an_arrest_from_the_bench_page_on_a_small_phone(browser, hub):
    context, foreign = _phone_offline_but_for(browser, hub)
    try:
        page = context.new_page()
        page.goto(hub + "/")
        page.get_by_role("navigation", name="What you can do here").get_by_role("link", name="I saw an arrest").click()
        page.wait_for_url("**/arrest#main")  # the form opens at its first field
        fits_and_is_labelled(page, "the arrest form")

        # Sent without the place: it comes back with the message and what was typed, still fitting the phone.
        page.get_by_label("How many people were taken?").fill("2")
        page.get_by_label("What you saw (optional)").fill("Two people in green rain jackets, pushed into a van.")
        page.get_by_label("A way to reach you (optional)").fill("ask for Robin at the bench")
        page.get_by_role("button", name="Tell dispatch").click()
        page.locator("#where-error", has_text="Please say where the arrest happened.").wait_for()  # under the field
        assert page.get_by_label("What you saw (optional)").input_value().startswith("Two people in green")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "cases-report-refused-320.png", full_page=True)
        fits_and_is_labelled(page, "the refused arrest form")

        page.get_by_label("Where did it happen?").fill("Larch Street corner by the bakery")
        page.get_by_role("button", name="Tell dispatch").click()
        page.wait_for_url(re.compile(r"/arrest/thanks(#main)?$"))  # a redirect keeps the form's #main
        told = " ".join(page.locator("main").inner_text().split())
        # Nobody on this hub holds dispatch or the care ring (a host may, by now): the page does not pretend otherwise.
        assert "dispatch was told" not in told and "nobody can read this yet" in told
        assert "The bench's hosts were told" in told or "nobody at the bench was told" in told
        # The case code is for dispatch; nothing typed comes back to the phone.
        assert "C1" not in told and "green rain jackets" not in told and "Robin" not in told
        page.screenshot(path=ARTIFACTS / "cases-thanks-320.png", full_page=True)
        fits_and_is_labelled(page, "the thank-you page")
        assert not foreign, f"the arrest pages asked other hosts than the hub for: {foreign}"
    finally:
        context.close()


# -- alerts ---------------------------------------------------------------------


def _another_host(instance: Path, handle: str) -> None:
    """Test setup: a host in force (seat_role), whether or not an earlier story made the hub's first host.

    ``safebench create-host`` makes a host in force only on a hub without one; a second waits for a countersign.
    """
    engine = make_engine(config.default_database_uri(instance), 5000)
    try:
        with Session(engine) as session:
            member = people.add_member(session, utcnow(), handle)
            people.set_password(member, PASSWORD)
            seat_role(session, utcnow(), member, people.HOST)
            session.commit()
    finally:
        engine.dispose()


def test_a_host_raises_an_sos_on_a_small_phone_and_every_hub_page_shouts_it(browser, hub, hub_instance):
    _another_host(hub_instance, "Plover")
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    place = "Corner of Kastanienallee and Schönhauser Allee, behind the bakery's back door"
    try:
        page = context.new_page()
        page.goto(hub + "/login")
        page.get_by_label("Handle").fill("Plover")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login" not in url)  # a host lands on the board or the dashboard
        page.get_by_role("navigation", name="Hub").get_by_role("link", name="Alerts").click()
        page.wait_for_url("**/host/alerts")
        fits_and_is_labelled(page, "/host/alerts with no alert open")

        page.get_by_label("Who is in danger").select_option(label="Kestrel")
        page.get_by_label("Where").fill(place)
        page.get_by_role("button", name="Raise SOS").click()
        page.wait_for_url("**/host/alerts*")
        flash = page.locator(".flash").first.inner_text()
        code = re.search(r"SOS (A\d+) is raised", flash).group(1)
        card = page.locator(".alert-card").first
        assert f"{code} · SOS · Kestrel" in card.inner_text()
        page.locator("summary", has_text=f"Resolve {code}").click()  # opens the resolve form
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "host-alerts-320.png", full_page=True)
        fits_and_is_labelled(page, "/host/alerts with an open alert")

        page.get_by_role("navigation", name="Hub").get_by_role("link", name="Dashboard").click()
        page.wait_for_url("**/host/")
        banner = page.get_by_role("alert").filter(has_text="open alert")
        assert f"{code} SOS · Kestrel · {place}" in " ".join(banner.inner_text().split())
        page.screenshot(path=ARTIFACTS / "host-alert-banner-320.png", full_page=True)
        fits_and_is_labelled(page, "the dashboard with the alert banner")

        banner.get_by_role("link", name=re.compile(code)).click()
        page.wait_for_url("**/host/alerts*")
        page.locator("summary", has_text=f"Resolve {code}").click()
        page.get_by_label("What happened").fill("Kestrel was fine: a dropped handheld.")
        page.get_by_role("button", name=f"Resolve {code}").click()
        page.wait_for_url("**/host/alerts")
        assert f"Alert {code} is resolved" in page.locator(".flash").first.inner_text()
        assert page.get_by_role("alert").filter(has_text="open alert").count() == 0
    finally:
        context.close()


# -- forms that speak plainly, and screens a phone can use (issue 15) --------------

PHONE = {"width": 360, "height": 640}

# Each word of each table header on one line: a header broken inside a word ("Stewa rd") has a word whose
# text spans two line boxes. A hyphen is a place a word may wrap, so the parts around it are counted apart.
HEADERS_BROKEN_MID_WORD = """() => {
  const broken = [];
  for (const th of document.querySelectorAll("th")) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(/[^\\s\u2010-]+/g)) {  // "Check-ins" may wrap at its hyphen
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""


def _logged_in_phone(browser, hub: str, handle: str):
    """A 360 px phone's browser with ``handle`` logged in; returns the context and its page."""
    context, _foreign = offline_but_for(browser, hub, viewport=PHONE)
    page = context.new_page()
    page.goto(hub + "/login")
    page.get_by_label("Handle").fill(handle)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/host/.*"))
    return context, page


def test_a_refused_form_opens_at_its_error_summary_which_has_the_focus(browser, hub):
    context, foreign = offline_but_for(browser, hub, viewport=PHONE)
    try:
        page = context.new_page()
        page.goto(hub + "/mediation/new")
        page.get_by_label("Roughly where (optional)").fill("Behind the old cinema, by the bins, " * 5)
        page.get_by_role("button", name=re.compile("Send")).click()
        summary = page.locator("#error-summary")
        summary.wait_for()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "error-summary-360.png")

        assert page.evaluate("document.activeElement.id") == "error-summary", "the summary does not have the focus"
        assert page.evaluate("document.querySelector('main').firstElementChild.id") == "error-summary"
        box = summary.bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= PHONE["height"], (
            f"the summary is not on the first screen: {box}")
        assert "There are 2 problems" in summary.inner_text()
        # Its links lead to the fields, which take the focus; what was typed is still there.
        summary.get_by_role("link", name=re.compile("at most 120 fit here")).click()
        assert page.evaluate("document.activeElement.id") == "where"
        assert page.get_by_label("Roughly where (optional)").input_value().startswith("Behind the old cinema")
        fits_and_is_labelled(page, "the refused mediation form")
        assert not foreign, foreign
    finally:
        context.close()


def test_no_table_header_breaks_inside_a_word_on_a_phone(browser, hub, hub_instance):
    _another_host(hub_instance, "Tern")
    context, page = _logged_in_phone(browser, hub, "Tern")
    try:
        checked = 0
        for path in ("/log", "/mandates", "/audit", "/host/radio"):
            page.goto(hub + path)
            headers = page.locator("th").count()
            if not headers:
                continue
            checked += headers
            assert page.evaluate(HEADERS_BROKEN_MID_WORD) == [], f"{path} breaks a table header inside a word"
            wrap = page.evaluate("getComputedStyle(document.querySelector('th')).overflowWrap")
            assert wrap not in ("anywhere", "break-word"), f"{path}: table headers have overflow-wrap: {wrap}"
            # Long cell content still never makes the page scroll sideways.
            fits_and_is_labelled(page, path)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / f"table-headers{_artifact_name(path)}-360.png", full_page=True)
        assert checked, "no page with a table header was checked"
    finally:
        context.close()


def test_a_host_page_starts_on_the_first_screen_of_a_phone(browser, hub, hub_instance):
    _another_host(hub_instance, "Gannet")
    context, page = _logged_in_phone(browser, hub, "Gannet")
    try:
        for path in ("/host/", "/host/stewards", "/host/log", "/host/roles"):
            page.goto(hub + path)
            top = page.evaluate("document.querySelector('main h1').getBoundingClientRect().top")
            assert top < PHONE["height"] - 40, (
                f"{path}: the page's own heading starts at {top:.0f} px, below the first screen of a 360x640 phone")
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{path} scrolls sideways: {width}"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / f"host-first-screen{_artifact_name(path)}-360.png")
        # Every hub link is still there, in the row that scrolls sideways.
        nav = page.get_by_role("navigation", name="Hub")
        nav.get_by_role("link", name="Record of power").click()
        page.wait_for_url("**/host/record/")
    finally:
        context.close()


def test_the_focus_ring_shows_on_a_dark_button(browser, hub):
    context, _foreign = offline_but_for(browser, hub, viewport=PHONE)
    try:
        page = context.new_page()
        page.goto(hub + "/mediation/status")
        page.get_by_label("Receipt code").focus()
        page.keyboard.press("Tab")  # to the "Check" button, dark green, by keyboard as its users reach it
        ring = page.evaluate("""() => { const el = document.activeElement, s = getComputedStyle(el);
            return {tag: el.tagName, text: el.textContent.trim(), width: parseFloat(s.outlineWidth),
                    style: s.outlineStyle, offset: parseFloat(s.outlineOffset), shadow: s.boxShadow,
                    background: s.backgroundColor}; }""")
        assert ring["tag"] == "BUTTON" and ring["text"] == "Check", ring
        assert ring["background"] == "rgb(20, 61, 43)", f"not the dark button: {ring}"
        assert ring["style"] != "none" and ring["width"] >= 3 and ring["offset"] >= 2, f"no clear ring: {ring}"
        assert "255, 212, 0" in ring["shadow"], f"no light inner ring to show against the dark button: {ring}"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "focus-ring-360.png")
    finally:
        context.close()
