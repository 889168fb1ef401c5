"""A real hub process and Debian's chromium, for the stories told in a browser.

Plain helpers, shared by the browser tests:
the hub runs as it ships (a ``safebench`` command in a child process on
127.0.0.1), chromium is driven by Playwright with ``executable_path`` (no
browser download: a Pi or a CI box may have no internet), and every browser
context may reach the hub and nothing else.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Route,
    sync_playwright,
)

from server.i18n import COOKIE as LANGUAGE_COOKIE
from tests.processes import SAFEBENCH, env_for, free_port, wait_for_http

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
START_TIMEOUT_S = 30

# What sticks out past the right edge: the first few culprits, to name in a failure.
OVERFLOWING = """() => {
  const width = window.innerWidth;
  return [...document.querySelectorAll("body *")]
    .filter(el => el.getBoundingClientRect().right > width + 0.5)
    .slice(0, 5)
    .map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
               + (el.className && typeof el.className === "string" ? "." + el.className.trim().replace(/\\s+/g, ".") : ""));
}"""

UNLABELLED = """() => {
  const labelled = el => {
    if (el.labels && el.labels.length) return true;  // <label for> or a wrapping <label>
    if ((el.getAttribute("aria-label") || "").trim()) return true;
    const ids = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
    return ids.some(id => (document.getElementById(id)?.textContent || "").trim());
  };
  // Buttons name themselves by their value; hidden inputs are not seen.
  const skipped = new Set(["hidden", "submit", "reset", "button", "image"]);
  return [...document.querySelectorAll("input, select, textarea")]
    .filter(el => !(el.tagName === "INPUT" && skipped.has(el.type)))
    .filter(el => el.checkVisibility())
    .filter(el => !labelled(el))
    .map(el => el.outerHTML.slice(0, 120));
}"""


@contextmanager
def seeding(instance: Path) -> Iterator[tuple[Any, datetime]]:
    """A migrated hub at ``instance`` for a story's setup: its session and the hub's time; committed after."""
    from server import config, create_app
    from server.extensions import db
    from server.migrating import apply_migrations

    app = create_app({"INSTANCE": instance, "DATABASE_URL": config.default_database_uri(instance)})
    apply_migrations(app)
    with app.app_context():
        yield db.session, app.config["CLOCK"]()
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


@contextmanager
def running_hub(instance: Path, *argv: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``safebench ARGV --host 127.0.0.1 --port <free>`` on ``instance``; yields its base URL, stops it after.

    Its output goes to ``hub.log`` beside the instance folder, shown when it does not start.
    """
    port = free_port()
    log_path = instance.parent / "hub.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [SAFEBENCH, *argv, "--host", "127.0.0.1", "--port", str(port)],
            env=env_for(instance, **(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            status = wait_for_http(base + "/", seconds=START_TIMEOUT_S)
        except OSError:
            status = None
        if status != 200:
            pytest.fail(f"the hub did not start (status {status}); its log:\n{log_path.read_text()}")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, driven by Playwright; a module's ``browser`` fixture yields it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: these checks need Debian's chromium. "
            "Install it with `sudo apt-get install -y chromium`, or run the whole suite with "
            "`bash tests/run.sh`, which installs it."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def offline_but_for(browser: Browser, hub: str, **options) -> tuple[BrowserContext, list[str]]:
    """A browser (``options`` as for ``new_context``) that may reach the hub and nothing else.

    Returns it and the list of what it tried to fetch elsewhere.
    """
    hub_host = urlsplit(hub).netloc
    context = browser.new_context(**options)
    context.set_default_timeout(15_000)
    foreign: list[str] = []

    def only_the_hub(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).netloc != hub_host:
            foreign.append(url)
            route.abort()  # the bench may have no internet: a foreign fetch would only hang
        else:
            route.continue_()

    context.route("**/*", only_the_hub)
    return context, foreign


def console_errors(page: Page) -> list[str]:
    """A list that fills with the page's console errors and uncaught script errors.

    A script or connection the page's policy refused, or a resource that failed to load, is a console error.
    """
    problems: list[str] = []

    def note(message: ConsoleMessage) -> None:
        url = message.location.get("url", "")
        if message.type == "error" and not url.endswith("/favicon.ico"):  # the hub has no icon
            problems.append(f"{message.text} ({url})")

    page.on("console", note)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def fits_and_is_labelled(page: Page, what: str) -> None:
    """The checks every page passes: nothing scrolls sideways, every visible field has a label, and axe-core
    finds no accessibility problem (see ``accessible``)."""
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width, (
        f"{what} scrolls sideways at {inner_width} px (content is {scroll_width} px wide); "
        f"too wide: {page.evaluate(OVERFLOWING)}"
    )
    unlabelled = page.evaluate(UNLABELLED)
    assert not unlabelled, f"{what} has fields without a label: {unlabelled}"
    accessible(page, what)


# axe-core, from the axe-playwright-python wheel: injected into the page by the test (the hub's policy does not
# apply to Playwright's own scripts), never served by the hub. Every rule axe runs by default, `region`
# (all content inside landmarks) and colour contrast included.
AXE = Axe()
AXE_OPTIONS = {"resultTypes": ["violations"]}
TARGETS_SHOWN = 3


def axe_violations(page: Page) -> list[dict]:
    """What axe-core finds wrong on the page as it stands."""
    results = AXE.run(page, options=AXE_OPTIONS).response
    # No rule passed means axe checked nothing (an empty page, a failed injection): never a silent pass.
    assert results["passes"], f"axe-core checked nothing on {page.url}"
    return results["violations"]


def describe_violation(violation: dict) -> str:
    """One violation in a line or two: rule, impact, where (a few selectors) and what would fix it."""
    nodes = violation["nodes"]
    targets = ", ".join(" ".join(map(str, node["target"])) for node in nodes[:TARGETS_SHOWN])
    more = f" and {len(nodes) - TARGETS_SHOWN} more" if len(nodes) > TARGETS_SHOWN else ""
    first = nodes[0].get("failureSummary", "").replace("\n", " ").strip() if nodes else ""
    return (f"- {violation['id']} ({violation['impact']}): {violation['help']}\n"
            f"    at {targets}{more}\n    {first}")


def accessible(page: Page, what: str) -> None:
    """axe-core finds nothing wrong with the page; a failure lists each violation readably."""
    violations = axe_violations(page)
    assert not violations, f"axe-core finds {len(violations)} problem(s) on {what}:\n" + "\n".join(
        describe_violation(v) for v in violations)


def last_navigation(page: Page) -> dict[str, str]:
    """A dict whose "method" is the method of the page's latest navigation (GET, or POST for a form's answer)."""
    last = {"method": "GET"}

    def note(request) -> None:
        if request.is_navigation_request() and request.frame == page.main_frame:
            last["method"] = request.method

    page.on("request", note)
    return last


class InArabic:
    """Someone's pages opened again in Arabic (right to left), on the same screen, with the same login.

    A second browser with a copy of their cookies and the language switcher's cookie set to Arabic: what they
    see is re-opened there (only pages reached by GET: a form's answer cannot be fetched again), screenshotted
    and checked as every page is.
    """

    def __init__(self, browser: Browser, hub: str, options: dict) -> None:
        self.hub = hub
        self.context, self.foreign = offline_but_for(browser, hub, **options)
        self.page = self.context.new_page()
        self.problems = console_errors(self.page)

    def look_at(self, page: Page, shot: Path, what: str) -> None:
        self.context.clear_cookies()
        self.context.add_cookies(
            [cookie for cookie in page.context.cookies() if cookie["name"] != LANGUAGE_COOKIE]
            + [{"name": LANGUAGE_COOKIE, "value": "ar", "url": self.hub}])
        response = self.page.goto(page.url)
        assert response is not None and response.ok, f"{what}, opened again in Arabic, answered {response and response.status}"
        assert self.page.evaluate("[document.documentElement.lang, document.dir]") == ["ar", "rtl"], (
            f"{what} is not in Arabic, right to left, with the language cookie set")
        self.page.screenshot(path=shot, full_page=True)
        fits_and_is_labelled(self.page, f"{what} in Arabic")
        assert not self.foreign, f"{what} in Arabic: the browser asked other hosts than the hub for {self.foreign}"
        assert not self.problems, f"{what} in Arabic: the browser's console shows errors: {self.problems}"
        # An onlooker leaves nothing open: a live page's stream would make it one more watcher of the hub.
        self.page.goto("about:blank")

    def close(self) -> None:
        self.context.close()
