"""Every text a neighbour reads is translated, in every language the bench ships, and the catalogs a bench
runs from (the compiled .mo files, committed: a bench needs no build step) say what their .po files say.

Issue 15. The template of the catalogs is extracted afresh here, from the code and templates as they are now,
exactly as the README's "Adding a language" does it: a text someone added without translating it fails this
test, and so does a translation that drops or renames a placeholder (a page or a radio message would break
or say the wrong number).
"""

from __future__ import annotations

import re
import subprocess
import sys
from gettext import GNUTranslations, c2py
from pathlib import Path

import pytest
from babel.messages.checkers import python_format
from babel.messages.catalog import TranslationError
from babel.messages.pofile import read_po

from server import i18n

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "server" / "translations"
KEYWORDS = ("N_", "lazy_gettext", "_l")
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdifr]")
TRANSLATED = sorted(code for code in i18n.LANGUAGES if code != "en")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The catalog template extracted now from the code and templates (pybabel extract, as the README says)."""
    pot = tmp_path_factory.mktemp("catalogs") / "messages.pot"
    keywords = [arg for keyword in KEYWORDS for arg in ("-k", keyword)]
    done = subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(TRANSLATIONS / "babel.cfg"),
         *keywords, "-o", str(pot), "--no-location", "--omit-header", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with pot.open("rb") as f:
        return read_po(f)


def catalog(code: str):
    with (TRANSLATIONS / code / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=code)


def forms(message) -> list[str]:
    return list(message.string) if isinstance(message.id, tuple) else [message.string]


def names(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def test_every_shipped_language_has_a_catalog_and_arabic_its_six_plural_forms():
    for code in TRANSLATED:
        assert (TRANSLATIONS / code / "LC_MESSAGES" / "messages.po").exists(), code
    assert catalog("ar").num_plurals == 6


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_text_in_the_code_and_templates_is_translated(template, code):
    translations = catalog(code)
    missing = []
    for message in template:
        if not message.id:
            continue
        found = translations.get(message.id)
        if found is None or "fuzzy" in found.flags or not all(text.strip() for text in forms(found)):
            missing.append(message.id)
    assert not missing, (f"{len(missing)} texts are not translated into {code} (extract, update, translate, "
                         f"compile: see the README's 'Adding a language'), e.g. {missing[:5]}")


@pytest.mark.parametrize("code", TRANSLATED)
def test_translations_keep_every_placeholder(code):
    wrong = []
    translations = catalog(code)
    for message in translations:
        if not message.id or not message.string:
            continue
        try:
            python_format(translations, message)  # babel's own check: no unknown name, no changed type
        except TranslationError as error:
            wrong.append(f"{message.id!r}: {error}")
            continue
        if isinstance(message.id, tuple):
            wanted = names(message.id[0]) | names(message.id[1])
            # A plural form may leave the number to its words ("two stewards"), never another placeholder.
            dropped = [form for form in message.string if wanted - {"count", "num"} - names(form)]
        else:
            dropped = [message.string] if names(message.id) != names(message.string) else []
        if dropped:
            wrong.append(f"{message.id!r} -> {dropped[0]!r}")
    assert not wrong, f"{code}: placeholders differ between the English and the translation: {wrong[:5]}"


@pytest.mark.parametrize("code", TRANSLATED)
def test_the_compiled_catalog_is_the_one_its_po_file_says(code):
    mo = TRANSLATIONS / code / "LC_MESSAGES" / "messages.mo"
    with mo.open("rb") as f:
        compiled = GNUTranslations(f)
    stale = []
    translations = catalog(code)
    for message in translations:
        if not message.id or not message.string or "fuzzy" in message.flags:
            continue
        if isinstance(message.id, tuple):
            for n in (0, 1, 2, 3, 11, 100, 1000000):
                index = c2py(translations.plural_expr)(n)
                if compiled.ngettext(*message.id, n) != message.string[index]:
                    stale.append(message.id[0])
                    break
        elif compiled.gettext(message.id) != message.string:
            stale.append(message.id)
    assert not stale, f"{mo} is older than its .po (run pybabel compile -d server/translations): {stale[:3]}"


def test_a_page_and_a_radio_reply_read_in_spanish_and_arabic():
    from server.domain.radio_commands import help_text

    for code, word in (("es", "SOS [dónde]"), ("ar", "SOS [أين]")):
        i18n.use_hub_language(code)
        try:
            assert word in help_text()
        finally:
            i18n.use_hub_language("en")
    assert "Danger? Send SOS [where]." in help_text()


def test_a_page_names_days_and_months_in_its_own_language(app):
    from datetime import date, datetime

    from server.web.filters import date_filter, datetime_filter

    moment = datetime(2026, 12, 6, 21, 40)  # a Sunday
    with app.app_context():
        app.config["TIMEZONE"] = "UTC"
        shown = {}
        for code in ("en", "es", "ar"):
            with i18n.speaking(code):
                shown[code] = (datetime_filter(moment), date_filter(moment), i18n.format_day(date(2026, 12, 6)))
    assert shown["en"] == ("Sun 06 Dec, 21:40", "Sun 06 Dec 2026", "6 December 2026"), "English as the bench always had it"
    assert shown["es"][0].startswith("dom 06 dic") and "diciembre" in shown["es"][2]
    assert "ديسمبر" in shown["ar"][1] and "21:40" in shown["ar"][0]
