"""Who can open what: every route of the app, as anonymous, as every role, and as every role run out.

The routes come from the app's URL map (with the bench WiFi's captive
portal on, so its addresses are there too), every method of every rule, so
a page added later is covered without anyone remembering to add it here,
and a page that forgets to declare its audience fails the first test.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.domain import cases, drills, people
from server.domain.people import ROLES
from server.extensions import db
from server.web.access import ANY_ROLE, audience_of
from tests.helpers import csrf_token, login, make_app, make_member

# Each role, run out while its holder was logged in; and a host role the assembly took back.
LAPSED = {f"lapsed {role}": role for role in ROLES}
REVOKED = "revoked host"
IDENTITIES = ["anonymous", *ROLES, *LAPSED, REVOKED]


@pytest.fixture
def app(tmp_path, clock):
    """The usual test hub, with the captive portal's probe addresses in its URL map."""
    app = make_app(tmp_path / "instance", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache",
                   CACHE_NO_NULL_WARNING=True, CAPTIVE_PORTAL=True)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def routes(app):
    """(endpoint, method, url) for every method of every rule, GETs first, logging out last.

    A rule that takes GET and POST is checked both ways: the check runs
    before the view, and a view could tell the two apart.
    """
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        url = rule.build({arg: 1 for arg in rule.arguments}, append_unknown=False)[1]
        found.extend((rule.endpoint, method, url) for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return sorted(found, key=lambda r: (r[0] == "auth.logout", r[1] != "GET", r[2]))


def test_the_routes_checked_are_every_method_of_every_rule(app):
    checked = {(endpoint, method) for endpoint, method, _ in routes(app)}
    assert ("auth.login", "POST") in checked and ("aid.show", "GET") in checked and ("aid.show", "POST") in checked
    assert any(endpoint == "captive.probe" for endpoint, _ in checked)


def test_every_page_declares_who_may_open_it(app):
    undeclared = [endpoint for endpoint, _, _ in routes(app) if audience_of(app, endpoint) is False]
    assert undeclared == []


@pytest.mark.parametrize("identity", IDENTITIES)
def test_each_route_opens_for_its_audience_and_no_one_else(app, client, clock, identity):
    # Someone else's records come first, so ids in the URLs (1) point at them
    # and not at the visitor's own role.
    make_member(app, "Bystander", "steward", node="!00000001")
    with app.app_context():
        cases.open_case(db.session, app.config["CLOCK"](), place="Market", source="web")
        db.session.commit()
    with app.app_context():
        # A running drill and its alert: /host/drills/1 and /host/alerts/1/... point at them.
        drills.start(db.session, app.config["CLOCK"](), drills.SOS, None, "Market")
        db.session.commit()
    held: set[str] = set()
    if identity in LAPSED:
        make_member(app, "Visitor", LAPSED[identity], term_days=1)
        # The login outlives the role here (its idle lock and lifetime stretched), so
        # the role's lapse alone is what closes the pages.
        ring = app.extensions["safebench.keyring"]
        ring.idle = ring.lifetime = timedelta(days=2)
        assert login(client, "Visitor").request.path != "/login"
        clock.advance(days=1, minutes=1)  # the role ran out while they were logged in
    elif identity == REVOKED:
        visitor_id = make_member(app, "Visitor", "host")
        assert login(client, "Visitor").request.path != "/login"
        with app.app_context():  # the assembly took the role back while they were logged in
            assignment = people.get_member(db.session, "Visitor").roles[0]
            assert assignment.member_id == visitor_id
            assignment.revoked_at = clock()  # as mandates.decide(outcome="end") by another host does
            db.session.commit()
    elif identity != "anonymous":
        make_member(app, "Visitor", identity)
        assert login(client, "Visitor").request.path != "/login"
        held = {identity}

    token = csrf_token(client, "/login")
    wrong = []
    for endpoint, method, url in routes(app):
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={"csrf_token": token})
        audience = audience_of(app, endpoint)
        sent_to_login = response.status_code == 302 and response.location.startswith("/login")
        if audience is None:
            expected = "open"
        elif identity == "anonymous":
            expected = "login"
        elif ANY_ROLE in audience:
            expected = "open" if held else "refused"
        else:
            expected = "open" if held & audience else "refused"
        outcome = "login" if sent_to_login else "refused" if response.status_code == 403 else "open"
        if outcome != expected or response.status_code >= 500:
            wrong.append(f"{method} {url} ({endpoint}): {outcome}/{response.status_code}, expected {expected}")
    assert wrong == []
