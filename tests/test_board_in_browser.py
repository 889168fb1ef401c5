"""The host's board in Debian's chromium on a 1280x720 screen: a fresh SOS arrives without a reload.

The hub's web server runs as it ships (``safebench serve``), and the SOS is
raised by another process, ``safebench sos`` at the Pi's terminal, as the
radio bridge would write one: the board hears of it through the live log's
stream. (The journeys in tests/test_journeys_in_browser.py send check-ins
from an emulated handheld through the bridge; an SOS is one more entry.)
After the one click browsers need before any sound, an urgent entry changes
the page title and asks for a beep: the page counts each in ``data-beeps``
on ``#board`` (and says so on the console), which is what the test sees.
Screenshots of each step land in ``tests/artifacts/board/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from server.domain import patrol, people
from tests.browser import (
    seeding,
    ARTIFACTS,
    chromium,
    console_errors,
    fits_and_is_labelled,
    offline_but_for,
    running_hub,
)
from tests.helpers import PASSWORD, add_steward, seat_role
from tests.processes import safebench

SHOTS = ARTIFACTS / "board"
KESTREL = 0xA1B2C3D4
SCREEN = {"width": 1280, "height": 720}


def _seed(instance: Path) -> None:
    with seeding(instance) as (session, now):
        patrol.add_area(session, "Market")
        osprey = people.add_member(session, now, "Osprey")
        people.set_password(osprey, PASSWORD)
        seat_role(session, now, osprey, people.HOST)
        add_steward(session, now, "Kestrel", KESTREL)


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> Path:
    instance = tmp_path_factory.mktemp("board") / "instance"
    _seed(instance)
    return instance


@pytest.fixture(scope="module")
def hub(instance) -> Iterator[str]:
    with running_hub(instance, "serve") as base:
        yield base
    log = (instance.parent / "hub.log").read_text()
    assert "Traceback" not in log, log


def test_the_board_shows_a_fresh_sos_without_a_reload_and_sounds_it(hub, instance):
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser: Browser
    with chromium() as browser:
        context, foreign = offline_but_for(browser, hub, viewport=SCREEN)
        page = context.new_page()
        problems = console_errors(page)
        said: list[str] = []
        page.on("console", lambda message: said.append(message.text))

        page.goto(hub + "/login")
        page.get_by_label("Handle").fill("Osprey")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        page.goto(hub + "/host/board")
        page.locator("#board-state[data-state=live]").wait_for()  # listening to the live log
        page.screenshot(path=SHOTS / "01-board-quiet.png")
        fits_and_is_labelled(page, "the quiet board on a 1280x720 screen")  # axe-core's rules included
        assert page.title().startswith("Board")
        assert "No open alerts." in page.locator("#board-panels").inner_text()
        marker = page.evaluate("() => (window.boardMarker = 'the same page')")  # gone if the page reloads

        page.get_by_role("button", name="Enable sound").click()
        page.locator("#board[data-sound=on]").wait_for()
        page.locator("#board[data-beeps='1']").wait_for()  # the sample beep on enabling
        assert page.get_by_role("button", name="Sound on").get_attribute("aria-pressed") == "true"
        page.screenshot(path=SHOTS / "02-sound-enabled.png")

        raised = safebench(instance, "sos", "--who", "Kestrel", "Market")
        assert raised.returncode == 0, raised.stderr
        alert = page.locator("#board-panels .row.alarm", has_text="SOS")
        alert.wait_for(timeout=15_000)
        text = " ".join(alert.inner_text().split())
        assert "A1" in text and "SOS · Kestrel · Market" in text and "Nobody responding yet" in text
        page.wait_for_function("() => document.title.startsWith('URGENT: SOS')")
        page.locator("#board[data-beeps='2']").wait_for()  # and it asked to play the alarm
        assert any("board: sound played (2)" in line for line in said)
        assert page.evaluate("() => window.boardMarker") == marker, "the page reloaded"
        page.screenshot(path=SHOTS / "03-sos-on-the-board.png")
        fits_and_is_labelled(page, "the board with a fresh SOS")  # its urgent colours readable too

        page.locator("body").click()  # whoever is at the board has seen it
        page.wait_for_function("() => !document.title.startsWith('URGENT')")
        page.screenshot(path=SHOTS / "04-seen.png")
        assert not foreign, f"the browser asked other hosts than the hub for {foreign}"
        assert not problems, f"the browser's console shows errors: {problems}"
        context.close()
