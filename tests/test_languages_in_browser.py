"""The bench page on a phone set to Arabic: in Arabic, right to left, and nothing scrolls sideways.

Issue 15. A neighbour's phone says Arabic (Accept-Language, no switcher touched); the real hub process
serves the page and Debian's chromium lays it out on a 360 px screen. Right to left means the header's
first item (the bench's name) sits at the right edge and what follows it goes leftwards, the arrest link
first; numbers and handles inside Arabic sentences keep their own direction (<bdi>). Screenshots of each
step go to tests/artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from server.domain import patrol
from tests.browser import ARTIFACTS, chromium, fits_and_is_labelled, offline_but_for, running_hub, seeding
from tests.helpers import add_steward

PHONE = {"width": 360, "height": 740}


def _seed(instance: Path) -> None:
    """Two stewards on shift in a published area, with a check-in: the page has numbers and a log to show."""
    with seeding(instance) as (session, now):
        patrol.add_area(session, "Market")
        for handle, node in (("Kestrel", "!a1b2c3d4"), ("Heron", "!a1b2c3d5")):
            steward = add_steward(session, now, handle, node)
            patrol.start_shift(session, now, steward, "Market square", patrol.SOURCE_RADIO)
            patrol.record_check_in(session, now, steward, patrol.SOURCE_RADIO)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    instance = tmp_path_factory.mktemp("hub") / "instance"
    _seed(instance)
    with running_hub(instance, "serve") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def test_a_phone_set_to_arabic_gets_the_bench_page_in_arabic_laid_out_right_to_left(browser, hub):
    context, foreign = offline_but_for(browser, hub, viewport=PHONE, locale="ar-EG")
    try:
        page = context.new_page()
        response = page.goto(hub + "/", wait_until="load")
        assert response is not None and response.status == 200
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "bench-360-ar.png", full_page=True)

        assert page.evaluate("[document.documentElement.lang, document.dir]") == ["ar", "rtl"]
        assert "رأيت اعتقالًا" in page.inner_text("body"), "the page speaks Arabic, not only its direction"
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"

        # The header reads from the right: the bench's name at the right edge, the arrest link after it, leftwards.
        brand = page.locator("header.top .brand").bounding_box()
        arrest = page.locator("header.top a.arrest-now").bounding_box()
        assert brand is not None and arrest is not None
        assert PHONE["width"] - (brand["x"] + brand["width"]) <= 24, f"the name is not at the right edge: {brand}"
        same_line = abs(arrest["y"] - brand["y"]) < brand["height"]
        assert (arrest["x"] + arrest["width"] <= brand["x"] + 1) if same_line else (
            PHONE["width"] - (arrest["x"] + arrest["width"]) <= 24), f"the arrest link does not follow leftwards: {arrest}"

        # Nothing scrolls sideways, every field is labelled, and axe-core finds nothing, in Arabic too.
        fits_and_is_labelled(page, "the bench page in Arabic on a 360 px phone")
        assert not foreign, f"the page asked other hosts than the hub for: {foreign}"

        # The language footer offers the others, each named in its own words; Spanish is one tap away.
        page.get_by_role("link", name="Español").click()
        page.wait_for_function("document.documentElement.lang === 'es'")
        assert page.evaluate("document.dir") == "ltr" and "Vi una detención" in page.inner_text("body")
        page.screenshot(path=ARTIFACTS / "bench-360-es.png", full_page=True)
    finally:
        context.close()
