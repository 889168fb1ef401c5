"""The security pass: forged forms, stolen sessions, guessed passwords, framed pages and hostile input.

The bench WiFi is open to anyone in range and the hub speaks plain HTTP, so
everything here is seen from the other side: someone nearby who can make a
phone send what they like. Routes come from the app's URL map and forms from
the hub's own pages, so a route or form added later is covered without
anyone remembering to add it here.

Fuzzing runs a bounded number of inputs per form (``FUZZ_EXAMPLES``); how
many each form really took is printed at the end of the run and written to
``tests/artifacts/fuzz_inputs.json`` (the README quotes it).
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import tempfile
import time
import unicodedata
from collections import Counter
from contextlib import closing
from datetime import timedelta
from html import unescape
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from urllib.parse import quote_from_bytes, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from werkzeug.datastructures import MultiDict

from server import config
from server.db import HubBusy
from server.domain import (
    aid,
    allies,
    alerts,
    cases,
    compact,
    complaints,
    drills,
    federation,
    ledger,
    mandates,
    mediation,
    patrol,
    people,
    radio_trust,
    receipt_keys,
    sealing,
    tasks,
)
from server.domain.people import ROLES
from server.domain.radio_commands import Command, parse_command
from server.domain.radio_text import fits_one_packet
from server.extensions import db
from server.web.access import audience_of, public
from tests.helpers import (
    PASSWORD,
    FakeClock,
    csrf_token,
    login,
    make_app,
    make_member,
    prefixed,
    seat_role,
    submit,
    text_of,
    reader_keys,
)

ARTIFACTS = Path(__file__).parent / "artifacts"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_REFUSAL = "This form had expired"


# -- the hub under attack -----------------------------------------------------------


def build_hub(instance: Path, clock: FakeClock, **settings_):
    """A migrated hub on a real SQLite file, CSRF on, with something of everything in it.

    Ids 1 in URLs point at the bystander's records: an aid post with a
    message (and a hidden one), a mediation request, an arrest case, a drill
    and its alert, a real SOS, a log entry, an area, a landmark, a compact
    signature; a neighbour's arrest report waiting for confirmation; a radio key waiting for a host.
    """
    app = make_app(instance, clock, RATELIMIT_ENABLED=False, CACHE_TYPE="NullCache", CACHE_NO_NULL_WARNING=True,
                   **settings_)
    make_member(app, "Bystander", "steward", node="!00000001")
    make_member(app, "Everyone", *ROLES)  # holds every role, so every page opens for them
    # Hosts who ask what Everyone countersigns, and countersign what Everyone may not.
    make_member(app, "Second", people.HOST)
    make_member(app, "Third", people.HOST)
    # Only in the accountability circle: reads the complaints that name a role, which Everyone holds.
    make_member(app, "Circle", people.ACCOUNTABILITY)
    with app.app_context():
        now = clock()
        bystander = people.get_member(db.session, "Bystander")
        patrol.add_area(db.session, "Market")
        patrol.add_landmark(db.session, "Station underpass")
        post, code = aid.post_aid(db.session, now, kind=aid.OFFER, category=aid.CATEGORIES[0],
                                  text="Spare phone chargers", area_id=1, days=7, max_days=60, contact="the bench")
        # The hub keeps no receipt code: the poster's phone does, and here the story does.
        app.aid_receipt = code
        aid.leave_message(db.session, now, post, "I could use one tonight")
        hidden = aid.post_aid(db.session, now, kind=aid.ASK, category=aid.CATEGORIES[0], text="Hidden by the host",
                              area_id=None, days=7, max_days=60).post
        aid.hide(db.session, now, hidden)
        mediation.submit_request(db.session, now, what="Music late at night", where="Elm St", who=None,
                                 urgency="soon", contact=None)
        complaints.submit_complaint(db.session, now, what="Nobody came when we called", about=complaints.ABOUT_HANDLING)
        cases.open_case(db.session, now, place="Market", source="web")
        drills.start(db.session, now, drills.SOS, None, "Market")
        alerts.raise_sos(db.session, now, bystander, "Elm St", patrol.SOURCE_RADIO)
        patrol.start_shift(db.session, now, bystander, "Market", patrol.SOURCE_RADIO)
        # An entry withdrawn from the public log: the full log offers to put it back.
        twice = patrol.record_incident(db.session, now, bystander, patrol.SOURCE_RADIO, "Logged twice")
        patrol.withdraw_entry(db.session, now, twice.id, bystander, people.CAPTAIN, "logged twice")
        compact.sign(db.session, now, "B.", compact.current_number(db.session))
        cases.open_case(db.session, now, place="Market", source=cases.SOURCE_NEIGHBOUR)
        # The radio heard a key for the bystander's node: the stewards page offers it to the hosts.
        radio_trust.note_heard_key(db.session, now, bystander, bytes(range(1, 33)))
        # Mandates: a grant asked at the terminal waits for a countersign, a recall for its second
        # role-holder, and a member with no role in force may be given a password.
        ruling = people.Decision(now.date(), "assembly at the library", "item 1")
        mandates.grant(db.session, now, bystander, people.MEDIATOR, decision=ruling, term_days=28, cap_days=28, by=None)
        plover = people.add_member(db.session, now, "Plover")
        recalled = seat_role(db.session, now, plover, people.STEWARD)
        mandates.ask_suspension(db.session, now, recalled, by=bystander, reason="kept the bench key")
        people.add_member(db.session, now, "Newcomer")
        # Everyone set a duress password (so /duress offers to remove it), and the bystander chose to
        # show their handle (so the stewards page offers to hide it): every form there is, is on a page.
        sealing.set_duress_password(db.session, people.get_member(db.session, "Everyone"), "a duress passphrase")
        people.set_show_handle(db.session, bystander, True, by=bystander)
        # The open task map: one the bystander took (Everyone may close, release or cancel it), one nobody
        # took (the map offers to take it), one Everyone closed (it asks for the after-action account).
        everyone = people.get_member(db.session, "Everyone")
        frame = {"done_means": "it is done", "area_id": 1, "starts_at": now, "due_at": now + timedelta(hours=4)}
        tasks.take(db.session, now, tasks.create(db.session, now, everyone, title="Fix the gate", **frame).task,
                   bystander)
        tasks.create(db.session, now, everyone, title="Sweep the path", **frame)
        tasks.finish(db.session, now, tasks.create(db.session, now, everyone, title="Oil the hinge", **frame).task,
                     everyone, "oiled")
        # The ledger: the kitchen's account in force, kept by Everyone (who may reverse what it was given and
        # confirm or turn down a neighbour's waiting offer; a keeper never countersigns their crew's decisions,
        # so a third host did), the bail fund open (its page's forms), and the bike workshop's opening asked
        # by a second host, for Everyone to countersign.
        second, third = people.get_member(db.session, "Second"), people.get_member(db.session, "Third")
        kitchen = ledger.open_account(db.session, now, "kitchen", soft_limit=10, hard_limit=20, keepers="Everyone",
                                      decision=ruling, by=second)
        ledger.countersign(db.session, now, kitchen, by=third)
        fund = ledger.open_account(db.session, now, "", kind=ledger.FUND, soft_limit=0, hard_limit=0, keepers=None,
                                   decision=ruling, by=second)
        ledger.countersign(db.session, now, fund, by=everyone)
        ledger.record_cash(db.session, now, amount=5, by=everyone)
        wallet = ledger.account_for_member(db.session, now, bystander)
        bread = ledger.propose(db.session, now, giver=wallet, receiver=kitchen.account, amount=2, memo="bread",
                               by=bystander)
        ledger.confirm(db.session, now, bread.transfer, by=everyone)
        ledger.propose(db.session, now, giver=wallet, receiver=kitchen.account, amount=1, memo="soup", by=bystander)
        ledger.open_account(db.session, now, "bike workshop", soft_limit=5, hard_limit=10, keepers="Bystander",
                            decision=ruling, by=second)
        # Allies: a café with a vow in force (to mark kept or withdraw) and one waiting for a countersign.
        cafe = allies.record_ally(db.session, now, name="Corner Cafe", place="Market Square", endorsed_on=now.date(),
                                  organisation=True, by=second)
        tea = allies.record_vow(db.session, now, cafe, text="Free tea for stewards on shift", kind=allies.REFRESHMENT,
                                hours="daily 18:00-02:00", crisis_only=False, area="Market", decision=ruling,
                                by=second)
        allies.countersign_vow(db.session, now, tea, by=everyone)
        allies.record_vow(db.session, now, cafe, text="Shelter after midnight", kind=allies.SHELTER, hours="24/7",
                          crisis_only=True, area="Market", decision=ruling, by=second)
        # Issue 17: the bench joined a federation; Canal is trusted (the page offers to revoke it and set its
        # bordering areas), Dockside only heard (to confirm, or take off the list); Everyone may roam.
        federation.join(db.session, now, app.config["INSTANCE"], url="mqtts://broker.example:8883",
                        federation="Eastside", bench="Market")
        db.session.add_all([
            federation.FederationMember(name="Canal", public_key=federation._b64(bytes(range(1, 33))),
                                        first_heard_at=now, confirmed_at=now, trusted_at=now, arrested=0, released=0),
            federation.FederationMember(name="Dockside", public_key=HEARD_BENCH_KEY, first_heard_at=now, arrested=0,
                                        released=0),
        ])
        db.session.commit()
    return app


def database_path(app) -> str:
    return app.config["DATABASE_URL"].removeprefix("sqlite:///")


def database_state(app) -> dict[str, list[tuple]]:
    """Every row of every table, read through a connection of its own, as another process would."""
    with closing(sqlite3.connect(database_path(app))) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {table: sorted(conn.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr) for table in tables}


def opened(app, rows_by_table: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """Rows with their sealed cells opened, as a reader whose role reads them sees the words.

    The card holds only sealed text in those columns (server/domain/sealing.py); what was kept, and
    how it is shown, is checked on the words.
    """
    keys = reader_keys(app)
    if code := getattr(app, "aid_receipt", None):  # helpers' answers open with the poster's code
        with app.app_context():
            keys[sealing.RECEIPT] = receipt_keys.key_for(db.session, code).private

    def words(cell: object) -> object:
        return sealing.open_text(sealing.Sealed(cell), keys) \
            if isinstance(cell, str) and cell.startswith(sealing.PREFIX) else cell

    return {table: [tuple(words(cell) for cell in row) for row in rows] for table, rows in rows_by_table.items()}


def changed_tables(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> list[str]:
    return [table for table in after if before.get(table) != after[table]]


class Snapshot:
    """The database as it was, to put back between attacks so each starts from the same hub."""

    def __init__(self, app) -> None:
        self.app = app
        self.copy = sqlite3.connect(":memory:")
        with closing(sqlite3.connect(database_path(app))) as live:
            live.backup(self.copy)

    def restore(self) -> None:
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()
        with closing(sqlite3.connect(database_path(self.app))) as live:
            self.copy.backup(live)


def rules(app, methods: set[str]):
    """(endpoint, method, url) for every rule accepting one of ``methods``, ids in the URL set to 1."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        url = rule.build({arg: 1 for arg in rule.arguments}, append_unknown=False)[1]
        found.extend((rule.endpoint, method, url) for method in sorted(rule.methods & methods))
    return sorted(found)


def get_pages(app):
    return [(endpoint, url) for endpoint, _, url in rules(app, {"GET"})]


def read(response) -> str:
    """A response's body; a live stream is closed unread (it would hold for STREAM_HOLD_S)."""
    if response.mimetype == "text/event-stream":
        response.close()
        return ""
    return response.get_data(as_text=True)


# -- forms, as the hub's own pages offer them ----------------------------------------


class FormReader(HTMLParser):
    """The forms of a page: where each posts to, and what a browser would send if nothing were typed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._select: dict | None = None
        self._textarea: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "method": (a.get("method") or "get").upper(),
                               "fields": []})
            return
        if not self.forms:
            return
        fields = self.forms[-1]["fields"]
        if tag == "input" and a.get("name"):
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image", "reset"):
                return
            fields.append({"name": a["name"], "type": kind, "value": a.get("value") or "",
                           "checked": "checked" in a, "maxlength": int(a.get("maxlength") or 0)})
        elif tag == "button" and a.get("name") and not any(f["type"] == "button" for f in fields):
            # A browser sends the name and value of the button pressed: here, the first one.
            fields.append({"name": a["name"], "type": "button", "value": a.get("value") or "", "checked": False,
                           "maxlength": 0})
        elif tag == "textarea" and a.get("name"):
            self._textarea = {"name": a["name"], "type": "textarea", "value": "", "checked": False,
                              "maxlength": int(a.get("maxlength") or 0)}
            fields.append(self._textarea)
        elif tag == "select" and a.get("name"):
            self._select = {"name": a["name"], "type": "select", "value": None, "options": [], "checked": False,
                            "maxlength": 0}
            fields.append(self._select)
        elif tag == "option" and self._select is not None:
            self._select["options"].append(a.get("value", ""))
            if "selected" in a or self._select["value"] is None:
                self._select["value"] = a.get("value", "")

    def handle_data(self, data):
        if self._textarea is not None:
            # A line break straight after <textarea> is not part of its value (HTML's parsing rules).
            if not self._textarea["value"] and data[:1] in ("\r", "\n"):
                data = data[2:] if data.startswith("\r\n") else data[1:]
            self._textarea["value"] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None


def forms_on(html: str) -> list[dict]:
    reader = FormReader()
    reader.feed(html)
    return reader.forms


# What a person would type into a field the hub sends empty, by the end of the field's name
# (fields of a form repeated per row are named like "member-1-node_id").
TYPED = {
    "handle": "Bystander", "holder": "Bystander", "node_id": "!0000beef", "password": PASSWORD,
    "new_password": "another long password", "confirm": "another long password", "area_name": "Harbour",
    "code": "", "days": "7", "count": "2", "more": "1", "released": "1", "when": "", "decision": "assembly 12",
    "decided_on": "2026-11-20", "endorsed_on": "2026-11-20", "on": "2026-11-20",
}
# The key a bench not yet trusted announced (the federation page offers to confirm it).
HEARD_BENCH_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
# ... and where one form wants something else than the others.
TYPED_FOR = {
    "auth.login": {"handle": "Everyone"},
    "host.register_steward": {"handle": "Wren", "radio_key": "AgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICE="},
    "radio_keys.pin_key": {"key": "AgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICE="},
    "host.change_node": {"node_id": "!0000beef"},  # the form shows the current node: change it
    "roles.add_member": {"handle": "Heron"},
    "roles.set_password": {"holder": "Newcomer"},  # not a role-holder in office: a host may
    "compact.save_text": {"text": "We look out for each other, and we say so."},  # an edit changes the text
    # A task's time frame: from the story's evening to the next morning (the hub's clock is FakeClock's).
    "tasks.new": {"starts_at": "2026-11-21T20:30", "due_at": "2026-11-22T08:00"},
    # The ledger's numbers; an offer from the kitchen (which holds 2 credits) to a neighbour; a payout
    # from the bail fund by case code, as its memo must be.
    "ledger.mine": {"to": "Bystander", "amount": "1", "memo": "bread"},
    "ledger.fund": {"amount": "1", "memo": "bail C1"},
    "ledger.host_page": {"name": "bike crew", "soft_limit": "5", "hard_limit": "10", "keepers": "Bystander"},
    "ledger.set_limits": {"soft_limit": "5", "hard_limit": "10", "keepers": "Bystander"},
    "allies.new_vow": {"hours": "daily 18:00-02:00"},
    # The fingerprint Dockside's host read aloud: the one heard (a wrong one is refused and saves nothing).
    "federation.confirm": {"fingerprint": federation.fingerprint(HEARD_BENCH_KEY)},
}

# The boxes a person ticks on a form that refuses to do its work unticked.
TICKED = {"allies.record_ally": {"organisation"}}


def typed(endpoint: str, name: str, default: str) -> str | None:
    for table in (TYPED_FOR.get(endpoint, {}), TYPED):
        for end, value in table.items():
            if name == end or name.endswith(f"-{end}"):
                return value
    return default


def filled(form: dict, endpoint: str = "") -> MultiDict:
    """The form as a browser sends it after a person filled in the empty text fields."""
    data = MultiDict()
    radios_done = set()
    for f in form["fields"]:
        name, kind, value = f["name"], f["type"], f["value"]
        if kind == "checkbox" and not f["checked"]:
            if name.rpartition("-")[2] not in TICKED.get(endpoint, ()):
                continue
            value = value or "y"
        if kind == "radio":
            group = [g for g in form["fields"] if g["name"] == name]
            if name in radios_done or (not f["checked"] and any(g["checked"] for g in group)):
                continue
            radios_done.add(name)
        if kind == "select" and not value and len(f["options"]) > 1:
            value = next(option for option in f["options"] if option)  # "Choose one" is no choice
        if kind in ("text", "textarea", "password", "number", "date", "datetime-local"):
            if not value:
                value = typed(endpoint, name, "Quiet night on Elm")
            elif endpoint in TYPED_FOR:
                value = TYPED_FOR[endpoint].get(name.rpartition("-")[2], value)
        data.add(name, value)
    return data


def collect_forms(app, client, pages) -> dict[str, dict]:
    """endpoint -> the first form on ``pages`` that posts to it, with the URL it posts to."""
    adapter = app.url_map.bind("localhost")
    found: dict[str, dict] = {}
    for url in pages:
        html = read(client.get(url))
        for form in forms_on(html):
            if form["method"] != "POST":
                continue
            action = urlsplit(form["action"]).path or urlsplit(url).path
            try:
                endpoint, _ = adapter.match(action, method="POST")
            except Exception:  # noqa: BLE001, S112  (a form pointing nowhere is caught by its own test)
                continue
            found.setdefault(endpoint, {**form, "url": action})
    return found


# -- CSRF: a page on another site cannot make a phone at the bench post a form --------------


@pytest.fixture
def hub(tmp_path, clock):
    return build_hub(tmp_path / "hub", clock)


def test_every_post_form_on_every_page_posts_somewhere_real(hub):
    """The form collection below depends on it: a form whose action matches no route would go unchecked."""
    client = hub.test_client()
    login(client, "Everyone")
    adapter = hub.url_map.bind("localhost")
    broken = []
    for _, url in get_pages(hub):
        for form in forms_on(read(client.get(url))):
            if form["method"] == "POST":
                try:
                    adapter.match(urlsplit(form["action"]).path or urlsplit(url).path, method="POST")
                except Exception:  # noqa: BLE001
                    broken.append((url, form["action"]))
    assert broken == []


# Routes whose forms write nothing to the database: they read, or change only the session.
READS_ONLY = [
    "aid.forget_receipt",  # forgets the code in the session
    "mediation.forget_receipt",  # the same, for a mediation request
    "complaints.forget_receipt",  # the same, for a complaint
    "cases.forget_report",  # forgets that this phone reported an arrest
    "aid.mine",  # looks a post up by its receipt code
    "auth.login",  # a member holding every role logs in again
    "mediation.status",  # looks a request up by its receipt code
    "complaints.status",  # looks a complaint up by its receipt code
]


# What a neighbour's phone keeps after sending each public form: its thank-you page offers to forget it.
RECEIPTS_IN_THE_SESSION = {"aid_receipt": "H-0000-0000", "mediation_receipt": "M-0000-0000",
                           "complaint_receipt": "P-0000-0000", "arrest_reported": "dispatch"}


@pytest.mark.parametrize("identity", ["anonymous", "member holding every role"])
def test_a_forged_form_changes_nothing_and_the_real_one_goes_through(hub, identity):
    """Every state-changing route, posted without its token, with a garbage token and with another
    session's token, is refused with the hub's page and leaves the database exactly as it was; the same
    form with this session's own token is not refused for CSRF (and, for the member, does its work)."""
    attacker = hub.test_client()  # a valid token, but for someone else's session
    other_token = csrf_token(attacker, "/login")
    client = hub.test_client()
    if identity != "anonymous":
        assert login(client, "Everyone").request.path != "/login"
    pages = [url for _, url in get_pages(hub)]
    with client.session_transaction() as session:  # the receipt pages, as after sending each public form
        session.update(RECEIPTS_IN_THE_SESSION)
    forms = collect_forms(hub, client, pages)
    token = csrf_token(client, "/login")
    snapshot = Snapshot(hub)

    wrong, did_nothing = [], []
    for endpoint, method, url in rules(hub, STATE_CHANGING):
        form = forms.get(endpoint)
        data = filled(form, endpoint) if form else MultiDict()
        target = form["url"] if form else url
        for name in [name for name in data if name.endswith("csrf_token")]:  # a prefixed form's too
            data.pop(name)
        for label, forged in (("no token", None), ("garbage token", "forged-by-a-stranger"),
                              ("another session's token", other_token)):
            sent = MultiDict(data)
            if forged is not None:
                sent.add("csrf_token", forged)
            before = database_state(hub)
            response = client.open(target, method=method, data=sent)
            page = text_of(response)
            if response.status_code != 400 or CSRF_REFUSAL not in page or "Nothing was saved" not in page:
                wrong.append(f"{method} {target} with {label}: {response.status_code} {page[:80]!r}")
            if changed := changed_tables(before, database_state(hub)):
                wrong.append(f"{method} {target} with {label} changed {changed}")
        before = database_state(hub)
        sent = MultiDict(data)
        sent.add("csrf_token", token)
        response = client.open(target, method=method, data=sent)
        if response.status_code >= 500 or CSRF_REFUSAL in text_of(response):
            wrong.append(f"{method} {target} with its token: {response.status_code}")
        if identity != "anonymous" and form and not changed_tables(before, database_state(hub)):
            did_nothing.append(endpoint)
        snapshot.restore()
        if endpoint.startswith("auth."):
            # Logging out (or in) starts a new session, with a new token; the next route starts as before.
            client = hub.test_client()
            if identity != "anonymous":
                login(client, "Everyone")
            token = csrf_token(client, "/login")
    assert wrong == []
    if identity != "anonymous":
        # Every route with a form on some page was reached through it, and the forms that should
        # write did write: so the refusals above are refusals of something real.
        assert sorted({e for e, _, _ in rules(hub, STATE_CHANGING)} - set(forms)) == []
        assert sorted(did_nothing) == sorted(READS_ONLY)



# -- the session cookie: unreadable by scripts, not sent by other sites, not forever -----------


def cookie(response, name: str = "session") -> dict[str, str] | None:
    """The attributes of the cookie ``name`` a response sets, lower-cased keys; None if it sets none."""
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        key, _, value = first.partition("=")
        if key == name:
            parsed = {"value": value}
            for attribute in attributes:
                attr, _, attr_value = attribute.partition("=")
                parsed[attr.lower()] = attr_value
            return parsed
    return None


def log_in_raw(client, handle: str, password: str = PASSWORD, **environ):
    """Log in without following the redirect, to see the cookies the login itself sets."""
    token = csrf_token(client, "/login")
    return client.post("/login", data={"handle": handle, "password": password, "csrf_token": token},
                       environ_base=environ)


def test_the_login_cookie_is_hidden_from_scripts_stays_on_this_site_and_ends_with_a_quiet_night(app, client):
    make_member(app, "Kestrel", "host")
    response = log_in_raw(client, "Kestrel")
    assert response.status_code == 302
    session_cookie = cookie(response)
    assert session_cookie is not None
    assert "httponly" in session_cookie  # no script on any page can read it
    assert session_cookie["samesite"] == "Lax"  # another site's form or image does not carry it
    assert session_cookie["path"] == "/"
    # Plain HTTP on the bench WiFi: a Secure cookie would never come back, and no one could log in.
    assert "secure" not in session_cookie
    # A login lasts a night's watch after the last page opened (sliding), not the 31 days Flask allows.
    expires = session_cookie["expires"]
    assert app.permanent_session_lifetime == timedelta(hours=12)
    from email.utils import parsedate_to_datetime

    left = parsedate_to_datetime(expires).timestamp() - time.time()
    assert 11 * 3600 < left <= 12 * 3600 + 5
    # The hub offers no "remember me": no second, longer-lived cookie.
    assert cookie(response, app.config.get("REMEMBER_COOKIE_NAME", "remember_token")) is None


def test_a_hub_behind_tls_marks_its_cookies_secure(tmp_path, clock):
    """SAFEBENCH_SESSION_COOKIE_SECURE=true, for a coordination hub served over HTTPS."""
    settings_ = config.load_settings(tmp_path, environ={"SAFEBENCH_SESSION_COOKIE_SECURE": "true"})
    assert settings_["SESSION_COOKIE_SECURE"] is True and settings_["REMEMBER_COOKIE_SECURE"] is True
    assert config.load_settings(tmp_path, environ={})["SESSION_COOKIE_SECURE"] is False
    app = make_app(tmp_path / "tls", clock, SESSION_COOKIE_SECURE=True)
    make_member(app, "Kestrel", "host")
    client = app.test_client()
    assert "secure" in cookie(log_in_raw(client, "Kestrel"))


def test_logging_in_renews_the_session_so_a_planted_cookie_or_token_is_worth_nothing(app, clock):
    """Session fixation: on open WiFi a stranger can plant a cookie in a phone (plain HTTP), or use the
    bench laptop before the host does. What they planted must not become the host's session."""
    make_member(app, "Kestrel", "host")
    stranger = app.test_client()
    planted_token = csrf_token(stranger, "/login")  # the stranger's session now holds a CSRF secret
    planted = stranger.get_cookie("session").value

    host = app.test_client()
    host.set_cookie("session", planted)
    response = log_in_raw(host, "Kestrel")
    renewed = cookie(response)["value"]
    assert renewed != planted
    # The host is in; the stranger's copy of the planted cookie still opens nothing.
    assert host.get("/host/").status_code == 200
    assert stranger.get("/host/").status_code == 302
    # The CSRF token the stranger knew does not work in the host's renewed session.
    forged = host.post("/host/areas", data={"area_name": "Planted", "csrf_token": planted_token})
    assert forged.status_code == 400 and CSRF_REFUSAL in text_of(forged)
    with app.app_context():
        assert [area.name for area in patrol.list_areas(db.session)] == []


def test_logging_out_clears_everything_the_session_held(app, client):
    make_member(app, "Kestrel", "host")
    login(client, "Kestrel")
    with client.session_transaction() as session:  # a receipt code kept on this (shared) browser
        session["mediation_receipt"] = "M-AAAA-BBBB"
    token = csrf_token(client, "/host/")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    with client.session_transaction() as session:
        assert set(session) <= {"_flashes"}  # only "You are logged out." is left, for the next page
    assert client.get("/host/").status_code == 302
    # The old token went with the session: a form left open before logging out is refused.
    stale = client.post("/host/areas", data={"area_name": "After logout", "csrf_token": token})
    assert stale.status_code == 400


def test_logging_out_ends_the_session_everywhere_even_a_copied_cookie(app, clock):
    """On the bench's open WiFi (plain HTTP) a neighbour's laptop can copy the host's cookie as it
    goes by. When the host logs out, the copy must stop working then, not 12 hours later."""
    make_member(app, "Kestrel", "host")
    phone, laptop, eavesdropper = app.test_client(), app.test_client(), app.test_client()
    login(laptop, "Kestrel")
    copied = cookie(log_in_raw(phone, "Kestrel"))["value"]
    eavesdropper.set_cookie("session", copied)
    assert eavesdropper.get("/host/").status_code == 200  # the copy works while the host is logged in

    logged_out = phone.post("/logout", data={"csrf_token": csrf_token(phone, "/host/")}, follow_redirects=True)
    assert "You are logged out, on every device." in text_of(logged_out)
    assert eavesdropper.get("/host/").status_code == 302
    assert laptop.get("/host/").status_code == 302  # the host's other device too: logged out everywhere
    login(laptop, "Kestrel")
    assert laptop.get("/host/").status_code == 200  # and logging in again works as before
    assert eavesdropper.get("/host/").status_code == 302


def test_a_new_password_set_by_another_host_logs_a_taken_phone_out(app, clock):
    """A host's phone is taken at an arrest, logged in. Two role-holders suspend the role (the phone opens
    nothing that minute); another host sets a new password, which logs the phone out; the assembly restores it.

    A host never sets the password of a role-holder in office: they could log in as them and countersign
    their own grants (server/domain/mandates.py)."""
    make_member(app, "Kestrel", "host")
    make_member(app, "Heron", "host")
    make_member(app, "Plover", "dispatch")
    taken, other_host, dispatcher = app.test_client(), app.test_client(), app.test_client()
    login(taken, "Kestrel")
    login(other_host, "Heron")
    login(dispatcher, "Plover")
    password = prefixed("password", {"holder": "Kestrel", "new_password": "a fresh long passphrase"})
    refused = submit(other_host, "/host/roles", password, action="/host/roles/password")
    assert refused.status_code == 400 and "holds a role in force" in text_of(refused)
    with app.app_context():
        role = people.get_member(db.session, "Kestrel").roles[0].id
    submit(other_host, "/mandates", {f"suspend-{role}-reason": "phone taken at an arrest"},
           action=f"/mandates/{role}/suspend")
    submit(dispatcher, "/mandates", {}, action=f"/mandates/{role}/confirm-suspension")
    assert taken.get("/host/").status_code == 403  # the same minute
    submit(other_host, "/host/roles", password, action="/host/roles/password")
    assert taken.get("/host/").status_code == 302  # and logged out everywhere
    assert other_host.get("/host/").status_code == 200  # Heron's own session is untouched
    submit(other_host, "/host/roles", {f"decide-{role}-outcome": "restore", f"decide-{role}-decision": "item 1",
                                       f"decide-{role}-decided_on": clock().date().isoformat(),
                                       f"decide-{role}-decision_place": "assembly at the library"},
           action=f"/host/roles/{role}/decide")
    assert login(app.test_client(), "Kestrel", "a fresh long passphrase").request.path != "/login"


def test_a_copied_cookie_stops_working_after_the_lifetime(app, client, monkeypatch):
    """Cookies are signed, not stored: a copied one works until it ages out, so it must age out.
    The cookie is forged as the hub would have signed it 13 hours ago."""
    import itsdangerous.timed

    make_member(app, "Kestrel", "host")
    login(client, "Kestrel")
    assert client.get("/host/").status_code == 200
    with client.session_transaction() as session:
        contents = dict(session)
    serializer = app.session_interface.get_signing_serializer(app)
    thirteen_hours_ago = int(time.time()) - 13 * 3600
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda _self: thirteen_hours_ago)
    old = serializer.dumps(contents)
    monkeypatch.undo()
    stale = app.test_client()
    stale.set_cookie("session", old)
    assert stale.get("/host/").status_code == 302  # back to the login page
    fresh = app.test_client()
    fresh.set_cookie("session", serializer.dumps(contents))
    assert fresh.get("/host/").status_code == 200  # the same contents, signed now, still open it


# -- guessing passwords -----------------------------------------------------------------


@pytest.fixture
def limited(tmp_path, clock):
    """A hub with its real rate limits on, as on the bench."""
    app = make_app(tmp_path / "limited", clock)
    make_member(app, "Kestrel", "host")
    return app


def test_guessing_is_throttled_at_one_phone_while_the_host_logs_in_from_another(limited):
    guesser = limited.test_client()
    for attempt in range(5):
        wrong = log_in_raw(guesser, "Kestrel", f"guess number {attempt}", REMOTE_ADDR="10.42.0.66")
        assert wrong.status_code == 400 and "do not match" in text_of(wrong)
    blocked = log_in_raw(guesser, "Kestrel", "guess number 6", REMOTE_ADDR="10.42.0.66")
    assert blocked.status_code == 429
    page = text_of(blocked)
    assert "Too many tries from this phone" in page and "try again" in page
    assert "guess number 6" not in blocked.get_data(as_text=True)  # passwords are never echoed
    # The real host, on their own phone, is not locked out by the guesser.
    host = limited.test_client()
    response = log_in_raw(host, "Kestrel", REMOTE_ADDR="10.42.0.23")
    assert response.status_code == 302 and response.location.startswith("/host/")  # the board, or the dashboard


def test_a_wrong_handle_and_a_wrong_password_look_and_take_the_same(app, client):
    """No user enumeration: the page cannot tell whether a handle exists, and neither can a stopwatch.
    Checking a password costs a deliberate hash (tens of milliseconds); an unknown handle must cost one too."""
    make_member(app, "Kestrel", "host")
    unknown = log_in_raw(client, "Nobody-here", "some password here")
    wrong = log_in_raw(client, "Kestrel", "some password here")
    assert (unknown.status_code, wrong.status_code) == (400, 400)
    assert text_of(unknown).replace("Nobody-here", "X") == text_of(wrong).replace("Kestrel", "X")

    def seconds(handle: str) -> float:
        token = csrf_token(client, "/login")
        start = time.perf_counter()
        client.post("/login", data={"handle": handle, "password": "some password here", "csrf_token": token})
        return time.perf_counter() - start

    # Taken in turns, so a busy machine slows both alike.
    pairs = [(seconds("Nobody-here"), seconds("Kestrel")) for _ in range(5)]
    unknown_s = statistics.median(unknown for unknown, _ in pairs)
    wrong_s = statistics.median(wrong for _, wrong in pairs)
    # The same class: within a factor of two either way (the hash dominates both).
    assert 0.5 < unknown_s / wrong_s < 2, (unknown_s, wrong_s)


# -- headers: no page can be framed, sniffed, or made to run a script it did not ship ------------


def policy(response) -> dict[str, list[str]]:
    """The Content-Security-Policy as {directive: [sources]}."""
    directives = {}
    for part in response.headers.get("Content-Security-Policy", "").split(";"):
        name, *sources = part.split()
        if name:
            directives[name.lower()] = sources
    return directives


_SCRIPT_TAG = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_EVENT_ATTRIBUTE = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)


def header_problems(response, what: str) -> list[str]:
    """Everything wrong with one response's protective headers and, for HTML, its scripts."""
    problems = []
    csp = policy(response)
    scripts = csp.get("script-src", csp.get("default-src"))
    if scripts is None:
        problems.append("no script-src or default-src")
    elif {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:"} & set(scripts):
        problems.append(f"scripts allowed from {scripts}")
    framing_denied = csp.get("frame-ancestors") == ["'none'"] or response.headers.get("X-Frame-Options") == "DENY"
    if not framing_denied or csp.get("frame-ancestors") not in (None, ["'none'"]):
        problems.append("may be framed")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("no nosniff")
    if response.headers.get("Referrer-Policy") not in ("no-referrer", "same-origin", "strict-origin"):
        problems.append(f"Referrer-Policy {response.headers.get('Referrer-Policy')!r}")
    if response.mimetype == "text/html":
        body = read(response)
        for attributes, inline in _SCRIPT_TAG.findall(body):
            src = re.search(r'src="([^"]+)"', attributes)
            if inline.strip() or not src or not src.group(1).startswith("/static/") or "'self'" not in (scripts or []):
                problems.append(f"a script the policy does not allow: <script{attributes}>")
        if _EVENT_ATTRIBUTE.search(body) or "javascript:" in body.lower():
            problems.append("inline event handler or javascript: URL")
    else:
        read(response)
    return [f"{what}: {problem}" for problem in problems]


@pytest.mark.parametrize("identity", ["anonymous", "host"])
def test_every_response_of_every_route_carries_the_protective_headers(tmp_path, clock, identity):
    """The whole URL map (the bench WiFi's captive probes included), every method, as anonymous and as a
    member holding every role; POSTs carry a valid token and the form as the page offers it."""
    app = build_hub(tmp_path / "headers", clock, CAPTIVE_PORTAL=True)
    client = app.test_client()
    if identity == "host":
        login(client, "Everyone")
    forms = collect_forms(app, client, [url for _, url in get_pages(app)])
    problems, scripts = [], {}
    for endpoint, method, url in rules(app, {"GET", *STATE_CHANGING}):
        if endpoint in ("auth.login", "auth.logout", "auth.lock") and method == "POST":
            continue  # last: they change whose session the other routes are opened with (locking ends it)
        if method == "GET":
            response = client.get(url)
            if response.mimetype == "text/html":
                html = response.get_data(as_text=True)
                problems += scripts_allowed_problems(endpoint, response, html)
                scripts[endpoint] = script_files(html)
        else:
            form = forms.get(endpoint)
            data = filled(form, endpoint) if form else MultiDict()
            data.setlist("csrf_token", [csrf_token(client, "/login")])
            response = client.open(form["url"] if form else url, method=method, data=data)
        problems += header_problems(response, f"{method} {url}")
    for static in ("/static/bench.css", "/static/live-log.js", "/static/board.js", "/static/board.css", COUNTERS):
        problems += header_problems(client.get(static), static)
    for action in ("/lock", "/login", "/logout"):
        data = filled(forms["auth.login"], "auth.login") if action == "/login" else MultiDict()
        data.setlist("csrf_token", [csrf_token(client, "/login")])
        problems += header_problems(client.post(action, data=data), f"POST {action}")
    assert problems == []
    # The rule was put to work: the arrest form counts for anyone; for a host, the live pages ran their own
    # scripts, the roles page counts; the bench page and the dashboard run nothing.
    assert scripts["cases.report"] == [COUNTERS] and scripts["bench.index"] == []
    if identity == "host":
        assert scripts["live.page"] == LIVE_SCRIPTS["live.page"] and scripts["board.page"] == LIVE_SCRIPTS["board.page"]
        assert scripts["roles.page"] == [COUNTERS] and scripts["host.dashboard"] == []


# Which pages may run a script, and why. Only the hub's own files, named here; never inline, never another site's.
# - The live log and the board, for those who watch the night: their own script listens to the hub's stream.
# - A page with a long field the form macro counts (data-limit): the live counter, counters.js, and nothing else.
# Every other page refuses scripts outright (default-src 'none', no script-src).
LIVE_SCRIPTS = {"live.page": ["/static/live-log.js"], "board.page": ["/static/board.js"]}
COUNTERS = "/static/counters.js"


def script_files(html: str) -> list[str]:
    return re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', html)


def scripts_allowed_problems(endpoint: str, response, html: str) -> list[str]:
    """What a page runs, and what its policy lets it run, against the rule above."""
    counted = bool(re.search(r'<(?:input|textarea)\b[^>]*\sdata-limit="\d+"', html))
    if endpoint in LIVE_SCRIPTS and response.status_code == 200:
        expected, sources = LIVE_SCRIPTS[endpoint], {"script-src": ["'self'"], "connect-src": ["'self'"]}
    elif counted:
        expected, sources = [COUNTERS], {"script-src": ["'self'"], "connect-src": None}
    else:
        expected, sources = [], {"script-src": None, "connect-src": None}
    found = {name: policy(response).get(name) for name in sources}
    problems = []
    if script_files(html) != expected:
        problems.append(f"runs {script_files(html)}, may run {expected}")
    if found != sources:
        problems.append(f"its policy allows {found}, should allow {sources}")
    return [f"GET {endpoint}: {problem}" for problem in problems]


def test_error_pages_carry_the_protective_headers_too(tmp_path, clock):
    """404, 405, 400 (CSRF), 403, 413, 429, 500 and 503, and the captive portal's redirect of a stranger's
    address: a page the hub did not mean to serve is still one a stranger must not frame."""
    app = make_app(tmp_path / "errors", clock, TESTING=False, CAPTIVE_PORTAL=True)
    make_member(app, "Steward", "steward")
    make_member(app, "Kestrel", "host")

    @public
    def broken():
        raise RuntimeError("disk on fire")

    @public
    def busy():
        raise HubBusy("locked")

    app.add_url_rule("/broken", view_func=broken)
    app.add_url_rule("/busy", view_func=busy)
    client = app.test_client()
    steward = app.test_client()
    login(steward, "Steward")
    token = csrf_token(client, "/login")
    answers = {
        404: client.get("/wp-admin/setup.php"),
        405: client.delete("/"),
        400: client.post("/login", data={"handle": "Kestrel", "password": "x"}),
        403: steward.get("/host/roles"),
        413: client.post("/login", data={"csrf_token": token, "handle": "x" * 100_000, "password": "y"}),
        500: client.get("/broken"),
        503: client.get("/busy"),
        302: client.get("/anything", headers={"Host": "connectivitycheck.gstatic.com"}),
    }
    for _ in range(5):
        client.post("/login", data={"csrf_token": token, "handle": "Kestrel", "password": "guess guess"})
    answers[429] = client.post("/login", data={"csrf_token": token, "handle": "Kestrel", "password": "guess"})
    problems = []
    for status, response in answers.items():
        assert response.status_code == status, (status, text_of(response)[:200])
        problems += header_problems(response, str(status))
    assert problems == []


def test_the_live_page_runs_only_the_hubs_own_script_file(app, client):
    """Its policy adds script-src 'self' (and connect-src 'self' for the stream) and nothing inline."""
    make_member(app, "Kestrel", "host")
    login(client, "Kestrel")
    response = client.get("/host/live")
    csp = policy(response)
    assert csp["script-src"] == ["'self'"] and csp["connect-src"] == ["'self'"]
    assert csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert [src for src, _ in re.findall(r'<script src="([^"]+)"[^>]*>(\s*)</script>', read(response))] == [
        "/static/live-log.js"]
    # A page with a counted field runs the counter alone, and connects nowhere; every other page refuses scripts.
    log = client.get("/host/log")
    assert policy(log)["script-src"] == ["'self'"] and "connect-src" not in policy(log)
    assert script_files(read(log)) == [COUNTERS]
    assert "script-src" not in policy(client.get("/host/"))


# -- fuzzing every public form ------------------------------------------------------------------
#
# Anyone in range of the bench WiFi can send a public form anything at all. Whatever they send, the
# hub answers with a page, never a 5xx or a stack trace; a refusal says in words what to change, next
# to the field it is about; what it accepts is kept cleaned, and shown escaped wherever it appears.

FUZZ_EXAMPLES = 45  # per form: the file stays well under a minute; the README quotes the counts
LOGIN_EXAMPLES = 30  # each login hashes a password on purpose (~0.1 s)
FUZZ_TRIED: Counter = Counter()
FUZZ_OUTCOMES: dict[str, Counter] = {}  # per form: how many inputs were accepted, refused, answered in place

# Markup that must never come back unescaped, in any answer or on any page that shows what was kept.
INJECTED = ["<x-fz", "<script>alert", "<img src=x", "<svg onload"]
NASTY = [
    "", " ", "   \t  ", "\n\n\n", "\r\n", "\x00", "a\x00b", "\x07SOS\x07", "\x1b[31mred\x1b[0m",
    "\u202eevil\u202c", "\u200f\u200e\u200b", "\ufeff", "\u2028line\u2029", "e\u0301\u0301\u0301",
    "👩‍👩‍👧‍👦🏳️‍🌈🆘", "ＳＯＳ", "ﷺ", "\U0010fffd", "<script>alert('fz')</script>", '"><img src=x onerror=alert(1)>',
    "<x-fz>bold</x-fz>", "<svg onload=alert(1)>", "{{ 7*7 }}{% raw %}", "' OR 1=1; --", "%s%n%x", "../../etc/passwd",
    "javascript:alert(1)", "\r\nSet-Cookie: a=b", "&amp;&lt;&#0;",
]
WRONG_TYPES = ["-1", "0", "1.5", "1e400", "99999999999999999999999999", "NaN", "abc", "[]", "{}", "null", "true",
               "  7  ", "٣", "0x10", "+3", "7 days", "2026-13-45T25:61", "21:40", "-"]
# Fields whose value becomes something else than text (a number, a time, a choice, an id).
NOT_KEPT_AS_TEXT = {"days", "count", "when", "area", "action", "code", "handle", "password", "csrf_token", "about",
                    "version"}
# Where what each table keeps is shown again, and to whom.
SHOWN_ON = {
    "aid_post": [("anonymous", "/aid/{id}"), ("anonymous", "/aid"), ("anonymous", "/"), ("host", "/host/aid")],
    "aid_message": [("host", "/host/aid")],
    "mediation_request": [("host", "/host/mediation/{id}"), ("host", "/host/mediation")],
    # A complaint naming a role Everyone holds is kept from Everyone: the circle's other member reads it.
    "complaint": [("host", "/host/complaints/{id}"), ("host", "/host/complaints"), ("circle", "/host/complaints/{id}"),
                  ("circle", "/host/complaints")],
    "arrest_case": [("host", "/cases/{id}"), ("host", "/cases"), ("anonymous", "/")],
    "log_entry": [("host", "/host/log"), ("host", "/host/live"), ("anonymous", "/log")],
    "outbox_message": [("host", "/host/radio")],
    "compact_signature": [("host", "/host/compact")],
}


def pytest_generate_tests(metafunc):
    if "public_form" in metafunc.fixturenames:
        metafunc.parametrize("public_form", public_post_endpoints())


def public_post_endpoints() -> list[str]:
    """Every public route that accepts a post, read from a throwaway hub's URL map (captive portal on)."""
    from server import create_app

    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"INSTANCE": Path(folder), "DATABASE_URL": f"sqlite:///{folder}/map.db", "TESTING": True,
                          "CAPTIVE_PORTAL": True})
        endpoints = sorted({e for e, _, _ in rules(app, STATE_CHANGING) if audience_of(app, e) is None})
        with app.app_context():
            db.engine.dispose()
    return endpoints


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried(request):
    """At the end, how many inputs each form and the radio took: printed, and kept for the README."""
    yield
    if not FUZZ_TRIED:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    tried = {name: {"inputs": count, **FUZZ_OUTCOMES.get(name, {})} for name, count in sorted(FUZZ_TRIED.items())}
    (ARTIFACTS / "fuzz_inputs.json").write_text(json.dumps(tried, indent=2) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\ninputs tried: " + "; ".join(
                f"{name} {counts.pop('inputs')} ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})"
                for name, counts in tried.items()))


def hostile_text(limit: int) -> st.SearchStrategy[str]:
    lengths = [limit - 1, limit, limit + 1, 2 * limit] if limit else [60, 600, 6000]
    return st.one_of(
        st.text(max_size=40),  # any code point but lone surrogates: controls, NUL, marks, RTL, emoji...
        st.sampled_from(NASTY),
        st.builds(lambda piece, n: (piece * n)[:n], st.sampled_from(["a", "é", "🆘", " ", "<", "\x00", "ab\n"]),
                  st.sampled_from(lengths)),
        st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=12)), min_size=2, max_size=5).map("".join),
        st.just("x" * 70_000),  # past the whole-request cap
    )


def field_strategy(field: dict, valid: str) -> st.SearchStrategy[list]:
    """The values a field is sent with: none (missing), one, or several (duplicated)."""
    one = st.one_of(
        st.just(valid),
        hostile_text(field["maxlength"]),
        st.sampled_from(WRONG_TYPES),
        st.sampled_from(field.get("options") or [valid]),
    )
    return st.one_of(st.just([]), one.map(lambda value: [value]), st.lists(one, min_size=2, max_size=3))


@st.composite
def submissions(draw, form: dict, valid: MultiDict):
    """(pairs, encoding): a form as a stranger might send it, often one field away from a good one."""
    names = list(dict.fromkeys(f["name"] for f in form["fields"] if f["name"] != "csrf_token"))
    fields = {f["name"]: f for f in form["fields"]}
    pairs: list[tuple[str, object]] = []
    mutate = set(names) if draw(st.booleans()) else {draw(st.sampled_from(names))} if names else set()
    for name in names:
        values = draw(field_strategy(fields[name], valid.get(name, ""))) if name in mutate else valid.getlist(name)
        pairs += [(name, value) for value in values]
    extra_names = st.one_of(st.sampled_from(["id", "status", "submit", "__proto__", "csrf_token", "what[]"]),
                            st.text(min_size=1, max_size=15))
    pairs += draw(st.lists(st.tuples(extra_names, st.text(max_size=30)), max_size=3))
    encoding = draw(st.sampled_from(["urlencoded", "multipart", "raw bytes"]))
    if encoding == "multipart" and pairs and draw(st.booleans()):
        # A file where text was expected.
        name, _ = pairs[0]
        pairs[0] = (name, (BytesIO(b"<x-fz>\x00\xff"), "evil.html"))
    if encoding == "raw bytes":
        # Percent-encoded bytes that are not UTF-8 at all, as a crafted client can send.
        pairs += [(draw(st.sampled_from(names or ["x"])), draw(st.binary(max_size=30)))]
    return pairs, encoding


def send(client, url: str, token: str, pairs: list, encoding: str):
    if encoding == "raw bytes":
        def encoded(text: object) -> bytes:
            raw = text if isinstance(text, bytes) else str(text).encode("utf-8")
            return quote_from_bytes(raw).encode("ascii")

        body = b"&".join(encoded(k) + b"=" + encoded(v) for k, v in [("csrf_token", token), *pairs])
        return client.post(url, data=body, content_type="application/x-www-form-urlencoded")
    data = MultiDict([("csrf_token", token), *pairs])
    if encoding == "multipart":
        return client.post(url, data=data, content_type="multipart/form-data")
    return client.post(url, data=data)


_FIELD_ERROR = re.compile(r'<p class="error" id="([^"]+)-error">(.*?)</p>', re.DOTALL)
# macros.form_errors: a form's own errors beside it (the summary at the top of the page repeats them as links).
_FORM_ERRORS = re.compile(r'<div class="flash error" id="[^"]*form-errors">(.*?)</div>', re.DOTALL)
# error.html: a title, what happened, and the way back to the bench page closing the page.
_ERROR_PAGE = re.compile(
    r'<main id="main">\s*(?:<p class="flash[^"]*" role="status">.*?</p>\s*)*<h1>(.*?)</h1>\s*<p>(.*?)</p>'
    r'(?=.*Back to the bench page</a></p>\s*</main>)', re.DOTALL)


def refusal_messages(body: str, field_names: set[str]) -> list[str]:
    """The words a refusal gives; a field's message must sit with a field of the form."""
    messages = []
    for field_id, message in _FIELD_ERROR.findall(body):
        assert field_id in field_names, f"an error for {field_id!r}, which is no field of this form"
        messages.append(message)
    for block in _FORM_ERRORS.findall(body):
        messages += re.findall(r"<p>(.*?)</p>", block, re.DOTALL)
    for title, message in _ERROR_PAGE.findall(body):
        messages.append(f"{title}: {message}")
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", m)).split()) for m in messages]


# WTForms' stock words: correct, but they do not say what to do ("Not a valid choice." of what?).
_STOCK_MESSAGES = ("This field is required.", "Not a valid choice", "Field cannot be longer", "Not a valid integer",
                   "Invalid input.", "Field must be")


def looks_human(message: str) -> bool:
    return (8 <= len(message) <= 400 and message[-1] in ".?!)" and not message.startswith(_STOCK_MESSAGES)
            and not re.search(r"Traceback|Exception|Error\(|None\b|\{|\}|Invalid\(|<|>", message))


def kept_clean(value: str) -> bool:
    """What clean_text promises: no control or format characters but line breaks, no edge space."""
    return value == value.strip() and all(
        ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co") for ch in value
    ) and all(line == line.rstrip() for line in value.split("\n"))


def new_rows(before: dict, after: dict) -> dict[str, list[tuple]]:
    return {t: [row for row in rows if row not in before.get(t, [])] for t, rows in after.items()
            if rows != before.get(t)}


def cleaned_variants(value: str) -> set[str]:
    from server.domain.errors import Invalid
    from server.domain.text import clean_text

    variants = set()
    for multiline in (False, True):
        try:
            variants.add(clean_text(value.replace("\r\n", "\n"), field="x", max_length=10**6, required=False,
                                    multiline=multiline))
        except Invalid:
            pass
    return variants - {""}


class FuzzHub:
    """A seeded hub, an anonymous neighbour's phone and a host's laptop, and the form under test."""

    def __init__(self, tmp_path: Path, clock: FakeClock, endpoint: str) -> None:
        self.app = build_hub(tmp_path / "fuzz", clock)
        self.endpoint = endpoint
        self.neighbour = self.app.test_client()
        self.host = self.app.test_client()
        login(self.host, "Everyone")
        self.circle = self.app.test_client()
        login(self.circle, "Circle")
        with self.app.app_context():
            receipts = {"aid.mine": self.app.aid_receipt,
                        "mediation.status": db.session.get(mediation.MediationRequest, 1).receipt_code,
                        "complaints.status": db.session.get(complaints.Complaint, 1).receipt_code}
        with self.neighbour.session_transaction() as session:  # the receipt pages offer "forget it"
            session.update(RECEIPTS_IN_THE_SESSION, aid_receipt=receipts["aid.mine"])
        public_pages = [url for endpoint_, url in get_pages(self.app) if audience_of(self.app, endpoint_) is None]
        # Logging out is offered only to someone logged in; the neighbour posts it all the same.
        self.form = (collect_forms(self.app, self.neighbour, public_pages).get(endpoint)
                     or collect_forms(self.app, self.host, ["/host/"]).get(endpoint))
        assert self.form is not None, f"no page offers the form that posts to {endpoint}"
        self.valid = filled(self.form, endpoint)
        if endpoint in receipts:
            self.valid.setlist("code", [receipts[endpoint]])
        self.token = csrf_token(self.neighbour, "/login")

    def try_once(self, pairs: list, encoding: str) -> None:
        FUZZ_TRIED[self.endpoint] += 1
        outcomes = FUZZ_OUTCOMES.setdefault(self.endpoint, Counter())
        before = database_state(self.app)
        response = send(self.neighbour, self.form["url"], self.token, pairs, encoding)
        body = response.get_data(as_text=True)
        status = response.status_code
        assert status < 500, (status, text_of(response)[:300])
        assert "Traceback" not in body and 'File "' not in body
        assert not any(marker in body for marker in INJECTED), "what was sent came back as markup"
        outcomes["refused" if status >= 400 else "accepted" if status in (302, 303) else "answered"] += 1
        if status >= 400:
            names = {f["name"] for f in self.form["fields"]}
            messages = refusal_messages(body, names)
            assert messages, f"a {status} without a word of why: {text_of(response)[:300]}"
            assert all(looks_human(m) for m in messages), messages
            assert not changed_tables(before, database_state(self.app)), "a refusal that changed something"
        elif status in (302, 303):
            self.check_kept(pairs, opened(self.app, new_rows(before, database_state(self.app))))
            # Where a browser goes next (and where the thank-you waits): it too shows no markup.
            landing = self.neighbour.get(response.location).get_data(as_text=True)
            assert not any(marker in landing for marker in INJECTED)
            # Logging in or out starts a new session, and logging in must be undone for the next input.
            if self.endpoint == "auth.login":
                self.neighbour.post("/logout", data={"csrf_token": csrf_token(self.neighbour, "/login")})
            if self.endpoint.startswith("auth."):
                self.token = csrf_token(self.neighbour, "/login")
        else:
            assert status == 200, status

    def check_kept(self, pairs: list, added: dict[str, list[tuple]]) -> None:
        """Accepted: what was kept is clean, is what was typed (cleaned), and is shown escaped."""
        # The outbox is left out: an urgent broadcast carries the bell character on purpose.
        cells = [cell for table, rows in added.items() if table != "outbox_message"
                 for row in rows for cell in row if isinstance(cell, str)]
        assert all(kept_clean(cell) for cell in cells), [c for c in cells if not kept_clean(c)]
        first: dict[str, object] = {}
        for name, value in pairs:
            first.setdefault(name, value)
        if added:
            for name, value in first.items():
                if isinstance(value, str) and name in {f["name"] for f in self.form["fields"]} \
                        and name not in NOT_KEPT_AS_TEXT and (variants := cleaned_variants(value)):
                    assert variants & set(cells), f"{name}={value!r} was not kept as typed"
        for table, rows in added.items():
            for row in rows:
                self.check_shown(table, row)

    def check_shown(self, table: str, row: tuple) -> None:
        viewers = {"anonymous": self.neighbour, "host": self.host, "circle": self.circle}
        pages = [viewers[who].get(url.format(id=row[0])) for who, url in SHOWN_ON.get(table, [])]
        bodies = [page.get_data(as_text=True) for page in pages]
        for body in bodies:
            assert not any(marker in body for marker in INJECTED), f"{table} {row[0]} shown as markup"
        for cell in row:
            if isinstance(cell, str) and bodies and any(ch in cell for ch in "<>&\"'"):
                # The radio page shows a queued broadcast's bell as a "bell" tag, not as the character.
                for line in cell.replace("\x07", "").splitlines():
                    assert any(str(escape(line)) in body for body in bodies), f"{line!r} of {table} not shown"


def test_no_input_to_a_public_form_breaks_the_hub_or_gets_a_refusal_without_words(tmp_path, clock, public_form):
    """One test per public form found in the URL map (a new one is fuzzed without being listed here)."""
    hub = FuzzHub(tmp_path, clock, public_form)
    examples = LOGIN_EXAMPLES if public_form == "auth.login" else FUZZ_EXAMPLES

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(submissions(hub.form, hub.valid))
    def any_submission(submission):
        hub.try_once(*submission)

    any_submission()


# Forms whose every text field is kept sealed (server/domain/sealing.py).
WORDS_ALL_SEALED = {"compact.sign", "complaints.new", "mediation.new"}


@pytest.mark.parametrize("endpoint", ["aid.new", "aid.show", "cases.report", "compact.sign", "complaints.new",
                                      "mediation.new"])
def test_markup_typed_into_a_good_form_is_kept_as_text_and_shown_escaped_everywhere(tmp_path, clock, endpoint):
    """The fuzzer's acceptance checks, made certain for every form that keeps what it is sent: markup in
    every text field is accepted, kept cleaned, and every page that shows it (public or host) escapes it."""
    hub = FuzzHub(tmp_path, clock, endpoint)
    text = "<x-fz>Elm</x-fz> & 'q'\x00\u202e"
    kinds = {f["name"]: f["type"] for f in hub.form["fields"]}
    pairs = [(name, text if kinds[name] in ("text", "textarea") and name not in NOT_KEPT_AS_TEXT else value)
             for name, value in hub.valid.items(multi=True)]
    before = database_state(hub.app)
    response = send(hub.neighbour, hub.form["url"], hub.token, pairs, "urlencoded")
    assert response.status_code == 302, text_of(response)[:300]
    raw = new_rows(before, database_state(hub.app))
    if endpoint in WORDS_ALL_SEALED:
        # Every text field of this form is sealed on the card: none of it is there in the clear.
        assert not any("Elm" in cell for rows in raw.values() for row in rows for cell in row
                       if isinstance(cell, str)), raw
    added = opened(hub.app, raw)
    kept = [cell for rows in added.values() for row in rows for cell in row
            if isinstance(cell, str) and "<x-fz>Elm</x-fz> & 'q'" in cell]
    assert kept  # something of it was kept (and check_kept finds it shown, escaped, on every page listed)
    hub.check_kept(pairs, added)


GET_EXAMPLES = 120


def test_no_address_or_query_string_breaks_a_page(tmp_path, clock):
    """The GET forms (the aid board's filters) and every other page, as anonymous and as a host, with
    any query string and any id in the address: a page or a friendly 404, never a 5xx."""
    app = build_hub(tmp_path / "get", clock)
    anonymous, host = app.test_client(), app.test_client()
    login(host, "Everyone")
    page_rules = [rule for rule in app.url_map.iter_rules() if "GET" in rule.methods and rule.endpoint != "static"]
    names = st.one_of(st.sampled_from(["kind", "category", "next", "finished", "after", "page", "id"]),
                      st.text(max_size=10))
    values = st.one_of(hostile_text(0), st.sampled_from(WRONG_TYPES), st.sampled_from(["offer", "ask", "1"]))
    ids = st.one_of(st.integers(-5, 2**70).map(str), st.sampled_from(["0", "01", "1e3", "%00", "..", "1;2"]))

    @settings(max_examples=GET_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.sampled_from(page_rules), st.booleans(), st.lists(st.tuples(names, values), max_size=4), ids)
    def a_visit(rule, as_host, query, row_id):
        FUZZ_TRIED["GET pages: query strings and ids"] += 1
        path = re.sub(r"<[^>]+>", row_id, rule.rule)
        client = host if as_host else anonymous
        response = client.get(path, query_string=MultiDict(query), headers={"Last-Event-ID": row_id})
        body = read(response)
        assert response.status_code < 500 and "Traceback" not in body, (path, query, response.status_code)
        assert not any(marker in body for marker in INJECTED)
        FUZZ_OUTCOMES.setdefault("GET pages: query strings and ids", Counter())[str(response.status_code)] += 1

    a_visit()


def test_logging_in_never_sends_anyone_to_another_site(app, client):
    """``?next=`` is kept for after the login, and only ever within the hub."""
    make_member(app, "Kestrel", "host")
    for target in ["https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example",
                   "javascript:alert(1)", " //evil.example", "/host/log"]:
        fresh = app.test_client()
        token = csrf_token(fresh, "/login")
        response = fresh.post("/login", query_string={"next": target},
                              data={"handle": "Kestrel", "password": PASSWORD, "csrf_token": token})
        location = response.location
        assert response.status_code == 302 and location.startswith("/") and not location.startswith("//"), target
        assert not urlsplit(location).netloc and "\\" not in location and "\t" not in location
    assert location == "/host/log"  # a page of the hub's own is where the login goes


# -- fuzzing the radio: whatever a handheld sends, the hub answers in one short packet -----------------

RADIO_EXAMPLES = 300
INBOUND_EXAMPLES = 300
HUB_NODE = 0x0000BEEF
STEWARD_NODE, CAPTAIN_NODE, LAPSED_NODE, STRANGER_NODE = 0x0000A001, 0x0000A002, 0x0000A003, 0x0000A0FF
VERBS = ["SOS", "ON", "OFF", "CI", "OK", "CHECK IN", "INC", "ARREST", "ACK", "CLR", "STATUS", "HELP", "?", "START",
         "END", "/sos", "'ok'", "🆘", "ＳＯＳ", "sod", "arest", "mayday"]

radio_text = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=240).map(lambda raw: raw.decode("utf-8", "replace")),  # what the bridge decodes
    st.builds(lambda verb, sep, rest: f"{verb}{sep}{rest}", st.sampled_from(VERBS),
              st.sampled_from([" ", "", ": ", "\x07 ", "\n"]), st.one_of(st.text(max_size=250), st.sampled_from(NASTY))),
    st.builds(lambda verb, n: f"{verb} " + "x" * n, st.sampled_from(VERBS), st.sampled_from([119, 120, 121, 199, 200,
                                                                                           201, 1000, 5000])),
)


def clear_reply(text: str) -> bool:
    """One packet, printable, a sentence: what a steward's handheld can show and a person can act on."""
    return (fits_one_packet(text) and 4 <= len(text) and text[-1] in ".?!" and text == text.strip()
            and not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)
            and not re.search(r"Traceback|None\b|Error\(|\{|\}", text))


@settings(max_examples=RADIO_EXAMPLES, deadline=None, database=None)
@given(st.one_of(radio_text, st.binary(max_size=240)))
def test_whatever_a_radio_sends_is_read_and_every_refusal_fits_one_clear_packet(text):
    FUZZ_TRIED["radio: parse_command"] += 1
    command = parse_command(text)
    assert isinstance(command, Command)
    FUZZ_OUTCOMES.setdefault("radio: parse_command", Counter())["known" if command.is_known else "refused"] += 1
    if not command.is_known:
        assert clear_reply(command.reason), command.reason


@pytest.fixture
def bridge_hub(tmp_path, clock):
    """A hub with a steward, a captain, a steward whose role lapsed, and the bridge's inbound handling."""
    from radio_bridge.inbound import Inbound, InboundSettings

    app = make_app(tmp_path / "radio", clock)
    make_member(app, "Ash", "steward", password=None, node=f"!{STEWARD_NODE:08x}")
    make_member(app, "Birch", "captain", password=None, node=f"!{CAPTAIN_NODE:08x}")
    make_member(app, "Cedar", "steward", password=None, node=f"!{LAPSED_NODE:08x}", term_days=1)
    clock.advance(days=1, minutes=1)
    # Every refusal answered at once (normally once per few minutes per sender), so each can be read.
    inbound = Inbound(radio_node=lambda: HUB_NODE, settings=InboundSettings(error_reply_every=timedelta(0)))
    with app.app_context():
        yield app, inbound, clock


def test_whatever_a_handheld_sends_the_bridge_handles_and_answers_a_refusal_in_one_packet(bridge_hub):
    """Through radio_bridge.inbound at the domain level (no radio): arbitrary text from a steward, a
    captain, a lapsed steward and a stranger never raises, and every answer queued for the sender is a
    short, clear sentence that fits one packet; what goes to everyone fits too, part by part."""
    from sqlalchemy import select

    from radio_bridge.packets import TextPacket
    from server.db import run_in_transaction
    from server.domain import outbox

    _app, inbound, clock = bridge_hub
    session = db.session
    packet_ids = iter(range(1, 10**6))
    outcomes = FUZZ_OUTCOMES.setdefault("radio: bridge inbound", Counter())

    @settings(max_examples=INBOUND_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from([STEWARD_NODE, STEWARD_NODE, CAPTAIN_NODE, LAPSED_NODE, STRANGER_NODE]), radio_text)
    def a_packet(sender, text):
        FUZZ_TRIED["radio: bridge inbound"] += 1
        now = clock.advance(minutes=1)  # replies are keyed by the minute; one packet a minute keeps them apart
        newest = session.scalar(select(outbox.OutboxMessage.id).order_by(outbox.OutboxMessage.id.desc())) or 0
        packet = TextPacket(sender=sender, packet_id=next(packet_ids), text=text, heard_at=now)
        outcome = run_in_transaction(session, lambda s: inbound.handle_text(s, now, packet))
        outcomes[outcome] += 1
        queued = list(session.scalars(select(outbox.OutboxMessage).where(outbox.OutboxMessage.id > newest)))
        for message in queued:
            assert fits_one_packet(message.text), message.text
        replies = [m.text for m in queued if m.destination == sender]
        if outcome in ("unknown", "refused") or (outcome == "ignored" and sender == LAPSED_NODE):
            assert len(replies) == 1 and clear_reply(replies[0]), (outcome, replies)
        if sender == STRANGER_NODE:
            assert outcome == "ignored" and replies == []  # never obeyed, never answered

    a_packet()
    # The fuzzing reached acceptances and refusals alike.
    assert outcomes["unknown"] and outcomes["ignored"] and len(outcomes) >= 5, outcomes
