"""Live length counters on long fields: which answers may run static/counters.js, and the words it says.

Every page refuses scripts (web/headers.py) except the live log, the board, and
a page that renders a counted field: macros.field calls ``counted_field()`` for
each, which marks the request, and headers.py then adds ``script-src 'self'``
to that answer alone. The script only counts; the server still refuses
overlong text with its count and keeps every word, so a page without
JavaScript loses nothing but the live count.
"""

from __future__ import annotations

from flask import Flask, g
from flask_babel import get_locale, ngettext

# Set on flask.g while a page renders a counted field: headers.py lets that answer run the hub's own script.
COUNTED = "counted_fields"
# The counts a script may have to say, searched for one example of each plural category of the page's language
# (Spanish has a "many" only at a million: past any field's limit, so the script uses "other" there).
_SAMPLES = (*range(200), 1_000_000)
PLACEHOLDER = "{n}"  # the script puts the count here


def counted_field() -> str:
    """Called by macros.field for a counted field: this answer may run counters.js. Writes nothing."""
    setattr(g, COUNTED, True)
    return ""


def page_has_counted_field() -> bool:
    return bool(g.get(COUNTED))


def counter_words() -> dict[str, str]:
    """The script's words in the page's language, as ``data-*`` attributes of its <script> tag.

    One sentence per plural category of the language (Arabic has six), each
    with ``{n}`` where the count goes; the script picks the category with
    ``Intl.PluralRules`` for the page's language, the same CLDR rules Babel
    gives the catalogs.
    """
    locale = get_locale()
    rule = locale.plural_form if locale is not None else None
    examples: dict[str, int] = {}
    for n in _SAMPLES:
        examples.setdefault(rule(n) if rule is not None else ("one" if n == 1 else "other"), n)
    words = {}
    for category, n in examples.items():
        words[f"data-say-left-{category}"] = ngettext(
            "%(count)s character left", "%(count)s characters left", n, count=PLACEHOLDER)
        words[f"data-say-over-{category}"] = ngettext(
            "%(count)s character too many", "%(count)s characters too many", n, count=PLACEHOLDER)
    return words


def init_app(app: Flask) -> None:
    app.add_template_global(counted_field, "counted_field")
    app.add_template_global(page_has_counted_field, "page_has_counted_field")
    app.add_template_global(counter_words, "counter_words")
