"""A page's links are built once and remembered (server/web/template_urls.py, issue 14), and stay right.

The bench page builds the same two dozen addresses on every rendering; the
templates' url_for remembers them, keyed on what each address is made of.
Here: a hub behind a path prefix and the same hub at the root each get their
own links, an external link names the host that was asked, values of other
types are other addresses, a flood of odd paths does not grow the memory, and
a page without a request still gets Flask's own.
"""

from __future__ import annotations

import re

from flask import render_template_string, url_for

from server.web import template_urls


def links(html: bytes) -> list[str]:
    return re.findall(r'href="([^"]*)"', html.decode())


def test_the_bench_page_remembers_its_links_and_a_hub_behind_a_prefix_gets_its_own(client, app):
    remembered = app.jinja_env.globals["url_for"].cache_info
    at_root = links(client.get("/").data)
    before = remembered().hits
    assert links(client.get("/").data) == at_root
    assert remembered().hits - before >= 20, "the second rendering builds nothing again"
    assert "/mediation/new" in at_root and "/static/bench.css" in at_root

    # The same hub behind a reverse proxy's /bench/ (SCRIPT_NAME): every link under it, none from the root's.
    prefixed = links(client.get("/", environ_overrides={"SCRIPT_NAME": "/bench"}).data)
    assert "/bench/mediation/new" in prefixed and "/bench/static/bench.css" in prefixed
    local = [link for link in prefixed if link.startswith("/")]
    assert local and all(link.startswith("/bench/") for link in local), local
    assert links(client.get("/").data) == at_root


def test_an_external_link_names_the_host_asked_and_each_value_type_is_its_own_address(app):
    page = "{{ url_for('bench.index', _external=True) }} {{ url_for('bench.index', n=1) }} " \
           "{{ url_for('bench.index', n=True) }} {{ url_for('bench.index', n=1.5) }} {{ url_for('.index') }}"
    for host in ("bench.local", "10.0.0.1:8080"):
        with app.test_request_context("/", base_url=f"http://{host}/"):
            assert render_template_string(page) == f"http://{host}/ /?n=1 /?n=True /?n=1.5 /"
            assert render_template_string(page) == f"http://{host}/ /?n=1 /?n=True /?n=1.5 /"


def test_a_flood_of_odd_paths_only_pushes_links_out_and_a_page_outside_a_request_gets_flasks_own(app):
    remembered = app.jinja_env.globals["url_for"].cache_info
    switcher = "{{ url_for('languages.switch', code='es', next=path) }}"
    with app.test_request_context("/"):
        for number in range(template_urls.REMEMBERED + 200):
            path = f"/odd/{number}"
            assert render_template_string(switcher, path=path) == f"/language/es?next=/odd/{number}"
    assert remembered().currsize <= template_urls.REMEMBERED
    # The command line's printouts have no request: Flask's url_for, external, as before.
    app.config["SERVER_NAME"] = "bench.local"
    with app.app_context():
        assert render_template_string("{{ url_for('bench.index') }}") == url_for("bench.index") == "http://bench.local/"
