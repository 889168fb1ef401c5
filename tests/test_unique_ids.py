"""Every id on a page is its own, and everything that points at an id finds the one it means.

Two forms on one page with the same field names once gave their fields the
same ids (the roles page: a handle to grant a role and a handle for a new
member): the second form's labels named the first form's fields, and the
error summary's link to the member form's handle landed in the grant form.
Here every page a host (holding every role) or a stranger can open, on a hub
with something of everything in it, is read as HTML: no id twice; each
``<label for>``, ``aria-describedby``/``aria-labelledby`` and in-page link
points at an element that is there. The roles page is also read with each of
its forms refused, where error messages and the summary's links add ids.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from tests.helpers import FakeClock, csrf_token, login, prefixed, text_of
from tests.test_security import build_hub, get_pages, read


class IdReader(HTMLParser):
    """The ids of a page, what points at them, and which form each field id is in."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.pointers: list[tuple[str, str]] = []  # (what points, the id it names)
        self.form_of: dict[str, str] = {}  # a field's id -> the action of its form
        self._action: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._action = a.get("action") or ""
        if a.get("id"):
            self.ids.append(a["id"])
            if self._action is not None:
                self.form_of[a["id"]] = self._action
        if tag == "label" and a.get("for"):
            self.pointers.append((f"<label for={a['for']}>", a["for"]))
        for name in ("aria-describedby", "aria-labelledby", "aria-controls"):
            for target in (a.get(name) or "").split():
                self.pointers.append((f"<{tag} {name}>", target))
        href = a.get("href") or ""
        if tag == "a" and href.startswith("#") and len(href) > 1:
            self.pointers.append((f"<a href={href}>", href[1:]))

    def handle_endtag(self, tag):
        if tag == "form":
            self._action = None


def id_problems(html: str, what: str) -> list[str]:
    reader = IdReader()
    reader.feed(html)
    seen = set(reader.ids)
    twice = sorted(id_ for id_, n in Counter(reader.ids).items() if n > 1)
    problems = [f"{what}: id {id_!r} on more than one element" for id_ in twice]
    problems += [f"{what}: {pointer} points at no element" for pointer, target in reader.pointers if target not in seen]
    return problems


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return build_hub(tmp_path_factory.mktemp("ids") / "hub", FakeClock(datetime(2026, 11, 21, 20, 0, 0)))


@pytest.mark.parametrize("identity", ["anonymous", "host"])
def test_no_page_gives_one_id_to_two_elements_or_points_at_one_that_is_not_there(hub, identity):
    client = hub.test_client()
    if identity == "host":
        assert login(client, "Everyone").request.path != "/login"
    problems, read_pages = [], 0
    for endpoint, url in get_pages(hub):
        if endpoint in ("auth.logout", "auth.lock"):
            continue
        response = client.get(url)
        html = read(response)
        if response.mimetype != "text/html" or "<html" not in html:
            continue
        read_pages += 1
        problems += id_problems(html, f"{endpoint} ({url})")
    assert problems == []
    assert read_pages > (40 if identity == "host" else 15), read_pages  # the hub's pages were really read


def _roles_refused(client, action: str, data: dict):
    return client.post(action, data={**data, "csrf_token": csrf_token(client, "/host/roles")})


def test_on_the_roles_page_each_refused_form_links_its_own_fields(hub):
    """Each form refused in turn: the page's ids stay unique, and the summary's links land in that form."""
    client = hub.test_client()
    assert login(client, "Everyone").request.path != "/login"
    page = client.get("/host/roles").get_data(as_text=True)
    reader = IdReader()
    reader.feed(page)
    # A row's renew form, by the id its prefix gives its fields.
    renew_action = next(action for id_, action in reader.form_of.items() if id_.startswith("renew-"))
    role = renew_action.rstrip("/").split("/")[-2]
    day_to_come = {"decided_on": "2027-01-30", "decision_place": "assembly at the library", "decision": "item 1"}
    tries = {
        "/host/roles": prefixed("grant", {"handle": "Wren <3", "role": "dispatch", "term_days": "28", **day_to_come}),
        "/host/roles/members": prefixed("member", {"handle": "Heron <3", "role": "dispatch", "term_days": "28",
                                                   "new_password": "short", **day_to_come}),
        "/host/roles/password": prefixed("password", {"holder": "", "new_password": "short"}),
        renew_action: prefixed(f"renew-{role}", {"term_days": "0", **day_to_come}),
    }
    for action, data in tries.items():
        refused = _roles_refused(client, action, data)
        assert refused.status_code == 400, (action, text_of(refused)[:300])
        html = refused.get_data(as_text=True)
        assert id_problems(html, f"the roles page after {action} was refused") == []
        reader = IdReader()
        reader.feed(html)
        links = [target for pointer, target in reader.pointers if pointer.startswith("<a href=#") and
                 target in reader.form_of]
        assert links, f"{action}: the error summary links no field"
        # Every field the summary links to is in the form that was sent, never in its neighbour.
        assert {urlsplit(reader.form_of[target]).path for target in links} == {urlsplit(action).path}, (action, links)
