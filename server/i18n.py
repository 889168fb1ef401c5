"""The bench's languages: which ones ship, which way each reads, and gettext for code that runs without Flask.

One set of catalogs serves everything a neighbour or a steward reads:
``server/translations/<lang>/LC_MESSAGES/messages.po`` (and the ``.mo``
compiled from it, committed so that a bench needs no build step). The web
pages read them through Flask-Babel; the domain layer, the radio bridge, the
scheduler and the command line read the same files through the standard
library's :mod:`gettext` here, so the bridge never imports Babel.

Which language: a page follows the visitor's choice (a cookie the language
switcher sets, no account needed), else their phone's ``Accept-Language``,
else the hub's own (``SAFEBENCH_LANGUAGE``). What goes on the air, the pocket
card and the posters is in the hub's language: a broadcast reaches everyone.
Code that writes a sentence calls :func:`gettext` at the moment it writes it;
a text defined at import time is marked with :func:`N_` and translated where
it is used.
"""

from __future__ import annotations

import gettext as _stdlib_gettext
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

# Each shipped language, named in its own words (the switcher shows these).
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español", "ar": "العربية"}
DEFAULT_LANGUAGE = "en"
RIGHT_TO_LEFT = frozenset({"ar"})
# The switcher's cookie: a language code and nothing else, so it identifies nobody.
COOKIE = "safebench_lang"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
DOMAIN = "messages"
TRANSLATIONS = Path(__file__).parent / "translations"

# The language of the sentence being written now: set per web request, or by `speaking`.
_speaking: ContextVar[str | None] = ContextVar("safebench_language", default=None)


_hub: list[str] = []  # set from the settings by each process's start (use_hub_language)


def hub_language() -> str:
    """The hub's language (``SAFEBENCH_LANGUAGE``, a shipped one), else English."""
    if _hub:
        return _hub[0]
    return known(os.environ.get("SAFEBENCH_LANGUAGE")) or DEFAULT_LANGUAGE


def use_hub_language(code: str | None) -> str:
    """Take the hub's language from the loaded settings (env or settings.toml); an unknown code means English."""
    _hub[:] = [known(code) or DEFAULT_LANGUAGE]
    return _hub[0]


def known(code: str | None) -> str | None:
    """``code`` if it is a shipped language (``es-MX`` counts as ``es``), else None."""
    if not code:
        return None
    base = code.strip().lower().replace("_", "-").split("-", 1)[0]
    return base if base in LANGUAGES else None


def choose(cookie: str | None, accept_language: str | None, default: str | None = None) -> str:
    """The language a page is written in: the switcher's choice, the phone's, or the hub's."""
    chosen = known(cookie)
    if chosen:
        return chosen
    for code, _quality in _accepted(accept_language or ""):
        if code == "*":
            break
        chosen = known(code)
        if chosen:
            return chosen
    return known(default) or hub_language()


def _accepted(header: str) -> list[tuple[str, float]]:
    """``Accept-Language`` as (code, quality), best first; malformed parts are skipped, never an error."""
    found: list[tuple[str, float]] = []
    for part in header.split(",")[:32]:  # a phone sends a handful; a hostile header is not read to its end
        code, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if code and quality > 0:
            found.append((code.strip(), quality))
    found.sort(key=lambda pair: -pair[1])  # stable: equal qualities keep the phone's order
    return found


def is_rtl(code: str) -> bool:
    return code in RIGHT_TO_LEFT


@lru_cache(maxsize=len(LANGUAGES))
def catalog(code: str) -> _stdlib_gettext.NullTranslations:
    return _stdlib_gettext.translation(DOMAIN, TRANSLATIONS, languages=[code], fallback=True)


def active() -> str:
    return _speaking.get() or hub_language()


def set_active(code: str | None) -> object:
    """Speak ``code`` from now on in this context (a web request); returns the token `reset_active` takes."""
    return _speaking.set(known(code))


def reset_active(token: object) -> None:
    _speaking.reset(token)  # type: ignore[arg-type]


@contextmanager
def speaking(code: str | None) -> Iterator[str]:
    """Write in ``code`` inside the block (the hub's language when None)."""
    token = _speaking.set(known(code) or hub_language())
    try:
        yield active()
    finally:
        _speaking.reset(token)


def gettext(message: str, **variables: object) -> str:
    """``message`` in the language being spoken, with ``%(name)s`` placeholders filled (as Flask-Babel does)."""
    text = catalog(active()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: object) -> str:
    """The singular or plural form for ``num`` (Arabic has six); ``%(num)d`` is always available."""
    variables.setdefault("num", num)
    return catalog(active()).ngettext(singular, plural, num) % variables


def teach(environment: Any) -> Any:
    """Give a Jinja environment without Flask (posters, the pocket card) ``_()`` and ``{% trans %}``
    over these catalogs, in the language being spoken when it renders."""
    environment.add_extension("jinja2.ext.i18n")
    # Jinja fills the placeholders itself (newstyle): it gets the bare translated texts.
    environment.install_gettext_callables(
        lambda message: catalog(active()).gettext(message),
        lambda singular, plural, num: catalog(active()).ngettext(singular, plural, num),
        newstyle=True)
    environment.globals["page_language"] = page_language
    environment.globals["format_day"] = format_day
    return environment


def format_day(day: Any) -> str:
    """A printed date as the language says it: "6 December 2026", "6 de diciembre de 2026", "6 ديسمبر 2026"."""
    from babel.dates import format_date  # Babel only where a page is printed: the bridge never loads it

    code = active()
    # English as the bench has always printed it ("6 December 2026"); other languages their long form.
    return format_date(day, "d MMMM yyyy" if code == "en" else "long", locale=code)


def page_language() -> dict[str, str]:
    """``lang`` and ``dir`` for a printed page's ``<html>``: the language being spoken."""
    code = active()
    return {"lang": code, "dir": "rtl" if is_rtl(code) else "ltr"}


def N_(message: str) -> str:  # noqa: N802 - the name gettext's tools look for
    """Mark a text for the catalogs without translating it now: it is translated where it is used."""
    return message


class Labels(dict[str, str]):
    """Labels marked with `N_` that read out in the language being spoken (``labels[key]``, ``get``,
    ``items``, ``values``), wherever they are shown: a view, a template, the command line."""

    def __getitem__(self, key: str) -> str:
        return gettext(super().__getitem__(key))

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self[key] if key in self else default

    def values(self) -> list[str]:  # type: ignore[override]
        return [gettext(value) for value in super().values()]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return [(key, gettext(value)) for key, value in super().items()]

    def untranslated(self, key: str) -> str:
        """The label as marked (English): for what is stored or compared, never shown."""
        return super().__getitem__(key)
