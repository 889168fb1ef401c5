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
from flask_babel import Babel, get_translations
from jinja2 import pass_eval_context
from jinja2.nodes import EvalContext
from markupsafe import Markup

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


def _gettext_of_the_page() -> dict[str, Any]:
    """The template's gettext callables, bound to the request's catalog once per rendered page (issue 14).

    Flask-Babel's own callables (installed as the environment's globals) look
    the request's translations up again for every text, through its domain,
    the locale and flask.g, and reach the catalog through three nested
    ``Context.call``: about 40 % of the bench page's template time. These do what
    Jinja's newstyle gettext does (jinja2.ext, ``install_gettext_translations``
    with ``newstyle=True``): a translated text is Markup when the template
    autoescapes, then always %-formatted, so a placeholder's value is escaped
    and a literal ``%%`` comes out as ``%``; ``num`` and ``context`` are set as
    there. Rendering starts here, so Flask-Babel's locale for the request (or a
    ``force_locale`` around the render) is the one used. A template that does
    not receive the page's context (a macro imported without context) still
    has Flask-Babel's globals: the same catalog, looked up each time.
    """
    translations = get_translations()

    def formatted(eval_ctx: EvalContext, text: str, variables: dict[str, Any]) -> str:
        return (Markup(text) if eval_ctx.autoescape else text) % variables

    @pass_eval_context
    def gettext(eval_ctx: EvalContext, string: str, **variables: Any) -> str:
        return formatted(eval_ctx, translations.ugettext(string), variables)

    @pass_eval_context
    def ngettext(eval_ctx: EvalContext, singular: str, plural: str, num: int, **variables: Any) -> str:
        variables.setdefault("num", num)
        return formatted(eval_ctx, translations.ungettext(singular, plural, num), variables)

    @pass_eval_context
    def pgettext(eval_ctx: EvalContext, context: str, string: str, **variables: Any) -> str:
        variables.setdefault("context", context)
        return formatted(eval_ctx, translations.upgettext(context, string), variables)

    @pass_eval_context
    def npgettext(eval_ctx: EvalContext, context: str, singular: str, plural: str, num: int,
                  **variables: Any) -> str:
        variables.setdefault("context", context)
        variables.setdefault("num", num)
        return formatted(eval_ctx, translations.unpgettext(context, singular, plural, num), variables)

    # ``_`` too: Jinja's own ``_`` only finds ``gettext`` in the context and calls it, one more Context.call.
    return {"_": gettext, "gettext": gettext, "ngettext": ngettext, "pgettext": pgettext, "npgettext": npgettext}


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
    app.context_processor(_gettext_of_the_page)
    app.after_request(_vary_by_language)
    app.register_blueprint(bp)
