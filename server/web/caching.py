"""A short cache for the public pages a crowd opens at once.

Anonymous visitors share one rendering of each public read-only page (the
bench page, the public log, the audit) for up to CACHE_DEFAULT_TIMEOUT
seconds; a logged-in visitor, or one with a message waiting, always gets a
page of their own. ``CACHE_TYPE = "NullCache"`` turns the sharing off.

Two layers hold the same rendering, in this process's memory:

- ``public_page`` keeps the rendered HTML of each path, inside Flask: what a
  visitor who carries a session cookie (say, from a form they filled in)
  and turns out to be anonymous is given.
- ``SharedAnswers`` sits in front of Flask and keeps the whole answer
  (status, headers, body) as Flask last sent it to a visitor with none of
  the hub's cookies. The next anonymous visitor gets it before Flask runs:
  no session to open, no user to load, no hook, no database. Anonymous here
  is what ``_personal`` says inside Flask: no login (no remember cookie, no
  user id in the session) and no flashed message waiting. A session cookie
  is read for those two keys without checking its signature: the answer is
  for anyone, so a forged cookie can only get its sender the page they would
  get with no cookie at all; a real login or message always reaches Flask.
  An answer is kept only when a ``public_page`` view said it may be shared,
  and never longer than the HTML it carries: one rendering, one lifetime.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, request, session
from flask_login import current_user
from werkzeug.http import parse_cookie

from server import i18n
from server.extensions import limiter

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION_KEY = "safebench.public_pages"
# Set by public_page on a request whose answer every cookie-less visitor may share: (expiry, generation).
SHAREABLE = "safebench.shareable"
# Distinct (host, path) answers kept in front of Flask. Any address reaches the hub (the
# bench WiFi resolves every name to it), so the Host header is bounded here, not by the network.
MAX_ANSWERS = 64
# What in a session makes the bench page someone's own (_personal): Flask-Login's user id, a flashed message.
PERSONAL_KEYS = frozenset({"_user_id", "_flashes"})
SESSION_COOKIE_MAX = 8192  # browsers keep 4 KB per cookie; anything longer is not one of ours
# Set by a view (share_for_at_most) whose page changes at a known moment: an ally shown open closes at 02:00.
LIFETIME = "safebench.lifetime"


@dataclass(frozen=True)
class Page:
    expires: float  # monotonic()
    generation: int
    html: str


@dataclass(frozen=True)
class Answer:
    expires: float
    status: str
    headers: list[tuple[str, str]]
    body: bytes


class PublicPages:
    """The renderings anonymous visitors share, per path, and the whole answers made of them."""

    def __init__(self, timeout: float, enabled: bool) -> None:
        self.timeout = timeout
        self.enabled = enabled and timeout > 0
        # Keyed by (path, language) and (host, path, language): each language is its own rendering (issue 15).
        self.pages: dict[tuple[str, str], Page] = {}
        self.answers: dict[tuple[str, str, str], Answer] = {}
        # Moved on by every clear: a rendering begun before a clear is never kept after it,
        # so a steward who hides their handle is gone from the next reading, whatever was in flight.
        self.generation = 0
        self._guard = threading.Lock()

    def page(self, path: tuple[str, str]) -> Page | None:
        found = self.pages.get(path)
        return found if found is not None and found.expires > monotonic() else None

    def keep_page(self, path: tuple[str, str], html: str, generation: int, lifetime: float | None = None) -> Page:
        timeout = self.timeout if lifetime is None else max(0.0, min(self.timeout, lifetime))
        page = Page(monotonic() + timeout, generation, html)
        with self._guard:
            if generation == self.generation:
                self.pages[path] = page
        return page

    def answer(self, key: tuple[str, str, str]) -> Answer | None:
        found = self.answers.get(key)
        return found if found is not None and found.expires > monotonic() else None

    def keep_answer(self, key: tuple[str, str, str], answer: Answer, generation: int) -> None:
        with self._guard:
            if generation != self.generation:
                return
            if len(self.answers) >= MAX_ANSWERS and key not in self.answers:
                self.answers.clear()  # a flood of made-up host names costs a render each, not memory
            self.answers[key] = answer

    def clear(self) -> None:
        with self._guard:
            self.generation += 1
            self.pages.clear()
            self.answers.clear()


def public_pages(app: Flask | None = None) -> PublicPages:
    return (app or current_app).extensions[EXTENSION_KEY]


def _personal() -> bool:
    """A logged-in visitor, or one with a message waiting, gets a page of their own."""
    return current_user.is_authenticated or "_flashes" in session


def public_page(view: F) -> F:
    """Share an anonymous public page's rendering for CACHE_DEFAULT_TIMEOUT seconds (its times are rounded anyway)."""

    @functools.wraps(view)
    def shared(*args: Any, **kwargs: Any) -> Any:
        pages = public_pages()
        if not pages.enabled or _personal():
            return view(*args, **kwargs)
        from server.web.languages import request_language

        key = (request.path, request_language())
        page = pages.page(key)
        if page is None:
            generation = pages.generation  # read before the database is
            html = view(*args, **kwargs)
            if not isinstance(html, str):
                return html  # a redirect or an error page is nobody's to share
            page = pages.keep_page(key, html, generation, request.environ.get(LIFETIME))
        request.environ[SHAREABLE] = (page.expires, page.generation)
        return page.html

    shared.read_only = True  # type: ignore[attr-defined]
    return shared  # type: ignore[return-value]


def share_for_at_most(seconds: float) -> None:
    """This rendering is shared no longer than ``seconds``: what it shows changes then (an ally opens or closes)."""
    current = request.environ.get(LIFETIME)
    request.environ[LIFETIME] = seconds if current is None else min(current, seconds)


def forget_public_pages() -> None:
    """Drop every shared public page, so none outlives a choice about what the public may see.

    A steward who hides their handle must be gone from the bench page and the
    public log at the next reading, not CACHE_DEFAULT_TIMEOUT seconds later.
    """
    public_pages().clear()


def session_keys(cookie: str) -> frozenset[str] | None:
    """The keys in a Flask session cookie, read without checking its signature; None if it is not one.

    Flask signs ``payload.timestamp.signature``; the payload is URL-safe
    base64 of JSON, zlib-compressed when it starts with a dot.
    """
    payload = cookie.rsplit(".", 2)[0] if cookie.count(".") >= 2 else ""
    compressed = payload.startswith(".")
    payload = payload.lstrip(".")
    if not payload or len(payload) > SESSION_COOKIE_MAX:
        return None
    try:
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        if compressed:
            inflate = zlib.decompressobj()
            data = inflate.decompress(data, SESSION_COOKIE_MAX * 4)
            if inflate.unconsumed_tail:
                return None
        loaded = json.loads(data)
    except (ValueError, zlib.error):
        return None
    return frozenset(loaded) if isinstance(loaded, dict) else None


class SharedAnswers:
    """WSGI middleware: an anonymous GET of a shared public page is answered before Flask runs."""

    def __init__(self, app: WSGIApplication, pages: PublicPages, session_cookie: str, remember_cookie: str,
                 default_language: str) -> None:
        self.app = app
        self.default_language = default_language
        self.pages = pages
        self.session_cookie = session_cookie
        self.remember_cookie = remember_cookie

    def _anonymous(self, environ: WSGIEnvironment) -> bool:
        """A GET with no query string from a visitor with no login and no message waiting."""
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return False
        cookies = environ.get("HTTP_COOKIE")
        if not cookies:
            return True
        jar = parse_cookie(cookies)
        if self.remember_cookie in jar:
            return False
        session_cookie = jar.get(self.session_cookie)
        if session_cookie is None:
            return True
        keys = session_keys(session_cookie)
        return keys is not None and not keys & PERSONAL_KEYS

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.pages.enabled or not self._anonymous(environ):
            return self.app(environ, start_response)
        # The language as languages.request_language chooses it, from the same cookie and header.
        language = i18n.choose(parse_cookie(environ.get("HTTP_COOKIE", "")).get(i18n.COOKIE),
                               environ.get("HTTP_ACCEPT_LANGUAGE"), self.default_language)
        key = (environ.get("HTTP_HOST", ""), environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), language)
        answer = self.pages.answer(key)
        if answer is not None:
            start_response(answer.status, list(answer.headers))
            return [answer.body]
        return self._answer_and_keep(key, environ, start_response)

    def _answer_and_keep(self, key: tuple[str, str, str], environ: WSGIEnvironment,
                         start_response: StartResponse) -> Iterable[bytes]:
        sent: list[Any] = []

        def keep_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            sent[:] = [status, list(headers)]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        body = self.app(environ, keep_start)
        shareable = environ.get(SHAREABLE)
        if shareable is None or not sent or not sent[0].startswith("200"):
            return body  # not a shared page (and perhaps a stream): passed on untouched
        status, headers = sent
        names = {name.lower() for name, _value in headers}
        cache_control = next((value for name, value in headers if name.lower() == "cache-control"), "")
        try:
            content = b"".join(body)
        finally:
            if hasattr(body, "close"):
                body.close()
        # A cookie set, or an answer the hub marked not to keep, is not for the next visitor.
        if "set-cookie" not in names and "no-store" not in cache_control:
            expires, generation = shareable
            self.pages.keep_answer(key, Answer(expires, status, headers, content), generation)
        return [content]


def init_app(app: Flask) -> None:
    """The shared renderings, and the middleware that answers cookie-less visitors from them."""
    cfg = app.config
    # Of CACHE_TYPE only "NullCache" (off) is read: the one web process keeps the pages in its own memory.
    pages = PublicPages(float(cfg["CACHE_DEFAULT_TIMEOUT"]), enabled=cfg.get("CACHE_TYPE") != "NullCache")
    app.extensions[EXTENSION_KEY] = pages
    app.wsgi_app = SharedAnswers(  # type: ignore[method-assign]
        app.wsgi_app, pages, cfg["SESSION_COOKIE_NAME"], cfg.get("REMEMBER_COOKIE_NAME", "remember_token"),
        i18n.hub_language(),
    )


@limiter.request_filter  # once per process: the limiter object is shared by every app
def _read_only_request() -> bool:
    """GETs of read-only public pages skip the rate limiter: they carry no limit to check."""
    view = current_app.view_functions.get(request.endpoint or "")
    return request.method == "GET" and getattr(view, "read_only", False)
