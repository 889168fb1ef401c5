"""The bench speaks the neighbourhood's languages: the page follows the phone, a switcher remembers a choice.

Issue 15. The catalogs live in server/translations; the web reads them with
Flask-Babel, the bridge and the command line with the standard library
(server/i18n.py). Here: which language a page is written in, and that every
language is its own shared rendering of a public page.
"""

from __future__ import annotations

import re

from server import i18n


def html_lang(response) -> tuple[str, str]:
    found = re.search(r'<html lang="([^"]+)" dir="([^"]+)">', response.get_data(as_text=True))
    assert found, "the page names its language"
    return found.group(1), found.group(2)


def test_a_phone_set_to_spanish_gets_the_bench_page_in_spanish_and_an_arabic_one_right_to_left(client):
    assert html_lang(client.get("/", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})) == ("es", "ltr")
    assert html_lang(client.get("/", headers={"Accept-Language": "ar-EG,ar;q=0.9"})) == ("ar", "rtl")
    # A language the bench does not ship falls to the next one the phone accepts, then to the hub's.
    assert html_lang(client.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9,es;q=0.5"})) == ("es", "ltr")
    assert html_lang(client.get("/", headers={"Accept-Language": "fr-FR"})) == ("en", "ltr")


def test_the_switcher_remembers_a_choice_without_an_account_and_sends_the_neighbour_back(client):
    page = client.get("/log", headers={"Accept-Language": "en"})
    assert b"/language/ar?next=/log" in page.data, "every page offers the other languages"
    switched = client.get("/language/ar?next=/log")
    assert switched.status_code == 303 and switched.headers["Location"].endswith("/log")
    assert html_lang(client.get("/log", headers={"Accept-Language": "en"})) == ("ar", "rtl")
    # The switcher sends nobody to another site, whatever the link says.
    for elsewhere in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        away = client.get("/language/es", query_string={"next": elsewhere})
        assert away.headers["Location"] in ("/", "http://localhost/")
    # An unknown code forgets the choice: the phone's language again.
    client.get("/language/xx?next=/")
    assert html_lang(client.get("/", headers={"Accept-Language": "es"})) == ("es", "ltr")


def test_each_language_is_its_own_shared_rendering_of_a_public_page(client):
    # The crowd's cache (server/web/caching.py) keeps one page per language, in front of Flask too.
    for _ in range(2):
        assert html_lang(client.get("/", headers={"Accept-Language": "ar"}))[0] == "ar"
        assert html_lang(client.get("/", headers={"Accept-Language": "en"}))[0] == "en"
        assert html_lang(client.get("/", headers={"Accept-Language": "es"}))[0] == "es"
    assert "Accept-Language" in client.get("/").headers["Vary"]


def test_code_without_flask_writes_in_the_hub_language_or_the_one_it_is_asked_for():
    with i18n.speaking("es") as code:
        assert code == "es" and i18n.active() == "es"
    with i18n.speaking("klingon") as code:
        assert code == i18n.hub_language()
    assert i18n.choose(None, "de;q=1, *;q=0.5, es;q=0.1", "en") == "en", "a wildcard stops the search"
    assert i18n.choose(None, "es;q=abc, ar", "en") == "ar", "a malformed part is skipped, never an error"


# Every way a template asks for a text: a placeholder that holds markup, a plural, a literal %%, a context,
# in a loop, in a macro, with autoescaping off; rendered by the hub and by Jinja's own newstyle gettext.
TEXTS_WITH_PLACEHOLDERS = """
{{ _("Showing their handle: %(shown)s.", shown=evil) }}
{% trans shown=evil %}Showing their handle: {{ shown }}.{% endtrans %}
{% for n in (0, 1, 2, 5, 11, 100) %}{% trans count=n %}{{ count }} steward on patrol{% pluralize %}{{ count }} stewards on patrol{% endtrans %}
{{ ngettext("%(count)s steward on patrol", "%(count)s stewards on patrol", n, count=n) }}{% endfor %}
{{ _("(%(region)s allows %(g)s %%)", region=evil, g=10) }}
{{ pgettext("menu", "Patrol log") }} {{ npgettext("menu", "%(num)s log", "%(num)s logs", 3) }}
{% macro log_out(name) %}{% trans handle=name %}Log out {{ handle }}{% endtrans %}{% endmacro %}{{ log_out(evil) }}
{% autoescape false %}{{ _("Showing their handle: %(shown)s.", shown=evil) }}{% endautoescape %}
"""


def test_a_translated_text_escapes_its_placeholders_in_every_language_as_jinja_itself_does(app):
    # Issue 14: the pages' gettext reads the request's catalog once per page (server/web/languages.py) instead of
    # Flask-Babel's lookup for every text; what comes out must be what Jinja's newstyle gettext writes.
    from flask import render_template_string
    from flask_babel import get_translations
    from jinja2 import Environment

    evil = "<script>alert('x')</script>"
    for code in i18n.LANGUAGES:
        with app.test_request_context("/", headers={"Cookie": f"{i18n.COOKIE}={code}"}):
            app.preprocess_request()
            page = render_template_string(TEXTS_WITH_PLACEHOLDERS, evil=evil)
            jinja = Environment(extensions=["jinja2.ext.i18n"], autoescape=True)
            jinja.install_gettext_translations(get_translations(), newstyle=True)
            assert page == jinja.from_string(TEXTS_WITH_PLACEHOLDERS).render(evil=evil), code
        assert page.count(evil) == 1, "only where the template turns autoescaping off"
        assert page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") == 4
        assert "10 %)" in page and "%%" not in page
    assert "خروج &lt;script&gt;" in page, "the last page was Arabic"


def test_a_page_rendered_in_a_forced_language_and_a_macro_imported_without_context_speak_it_too(app):
    from flask import render_template_string
    from flask_babel import force_locale

    with app.test_request_context("/", headers={"Cookie": f"{i18n.COOKIE}=es"}):
        app.preprocess_request()
        assert render_template_string('{{ _("Patrol log") }}') == "Registro de patrulla"
        with force_locale("ar"):
            arabic = render_template_string('{{ _("Patrol log") }}')
        assert arabic != "Patrol log" and arabic != "Registro de patrulla"
        # macros.html's own texts, with only Flask-Babel's globals to translate them.
        summary = render_template_string('{% from "macros.html" import error_summary %}{{ error_summary(["a", "b"]) }}')
        assert "Hay 2 problemas" in summary or "2 problemas" in summary, summary
