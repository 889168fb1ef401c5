"""The page's language: Flask-Babel over server/i18n.py's catalogs, and the switcher that remembers a choice.

The switcher is a plain link (no script, no account): it sets a cookie that
holds a language code and nothing else, and sends the visitor back where they
were. Every request also tells server/i18n.py which language it speaks, so a
message written by the domain layer for this visitor comes out in theirs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, g, has_request_context, redirect, request, url_for
from flask_babel import Babel

from server import i18n
from server.web.access import public

bp = Blueprint("languages", __name__)


def request_language() -> str:
    """The switcher's choice, else the phone's language, else the hub's: what caching.py keys pages by, too."""
    if not has_request_context():
        # A page rendered by the command line (the audit's printout): the hub's language, or `speaking`'s.
        return i18n.active()
    cached = g.get("language")
    if cached is None:
        cached = g.language = i18n.choose(
            request.cookies.get(i18n.COOKIE), request.headers.get("Accept-Language"), i18n.hub_language()
        )
    return cached


def _speak_the_visitors_language() -> None:
    g.language_token = i18n.set_active(request_language())


def _stop_speaking(_error: BaseException | None) -> None:
    token = g.pop("language_token", None)
    if token is not None:
        i18n.reset_active(token)


def _language_of_the_page() -> dict[str, Any]:
    code = request_language()
    return {
        "lang": code,
        "text_direction": "rtl" if i18n.is_rtl(code) else "ltr",
        "languages": i18n.LANGUAGES,
    }


def _vary_by_language(response: Response) -> Response:
    # The same address answers in several languages: a shared cache must keep them apart.
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response


def _local_path(target: str | None) -> str:
    """``target`` if it is a path on this hub, else the bench page: the switcher never sends anyone elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("bench.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("bench.index")
    return target


@bp.get("/language/<code>")
@public
def switch(code: str) -> Response:
    """Remember ``code`` on this phone (a year) and go back; an unknown code forgets the choice."""
    response = redirect(_local_path(request.args.get("next")), code=303)
    chosen = i18n.known(code)
    if chosen:
        response.set_cookie(i18n.COOKIE, chosen, max_age=i18n.COOKIE_MAX_AGE_S, samesite="Lax", httponly=True)
    else:
        response.delete_cookie(i18n.COOKIE)
    return response


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=request_language)
    app.before_request(_speak_the_visitors_language)
    app.teardown_request(_stop_speaking)
    app.context_processor(_language_of_the_page)
    app.after_request(_vary_by_language)
    app.register_blueprint(bp)
