"""Steward privacy on the open WiFi: the public counts stewards by published area, and names only those who chose it.

Anyone in the bench WiFi's range reads the bench page and the public log. A
handle beside every shift maps a steward's nights over weeks, so the public
sees how many are out and in which published areas; a handle only when its
steward chose to show it: on their own dashboard, or in person when they are
registered. Nobody else turns it on; it can always be turned off.
"""

from __future__ import annotations

import itertools
import re

import pytest

from radio_bridge.inbound import Inbound
from radio_bridge.packets import Proof, TextPacket
from server.db import run_in_transaction
from server.domain import patrol, people, power_record
from server.domain.errors import Conflict
from server.domain.people import BROADCAST_NODE, CAPTAIN, HOST, STEWARD
from server.extensions import db
from tests.helpers import login, make_app, make_member, submit, text_of
from tests.processes import safebench

HUB_NODE = 0x5AFEB00C
WREN_NODE, TERN_NODE, KESTREL_NODE = 0x12345678, 0x0000BEEF, 0xA1B2C3D4
ELM = "12 Elm Street"


class Handhelds:
    """Stewards' radios, through the bridge's own inbound handler, as a shift really starts."""

    def __init__(self, app) -> None:
        self.app = app
        self.inbound = Inbound(radio_node=lambda: HUB_NODE)
        self.ids = itertools.count(1)

    def send(self, sender: int, text: str) -> str:
        with self.app.app_context():
            now = self.app.config["CLOCK"]()
            packet = TextPacket(sender=sender, packet_id=next(self.ids), text=text, heard_at=now,
                                proof=Proof(to=BROADCAST_NODE))
            outcome = run_in_transaction(db.session, lambda s: self.inbound.handle_text(s, now, packet))
            db.session.remove()
        return outcome


def show_handle_of(app, handle: str) -> bool:
    with app.app_context():
        return people.get_member(db.session, handle).show_handle


def newest_assignment(app) -> int:
    with app.app_context():
        return max(a.id for m in people.list_members(db.session) for a in m.roles)


def named(handle: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(handle)}\b", text) is not None


def public_pages(app) -> tuple[str, str]:
    """The bench page and the public log, as a phone on the open WiFi reads them."""
    neighbour = app.test_client()
    return text_of(neighbour.get("/")), text_of(neighbour.get("/log"))


@pytest.fixture
def night(app, clock):
    """Osprey hosts, Crane captains; the host registers Wren (who asks to be shown) and Tern at the bench."""
    make_member(app, "Osprey", HOST)
    make_member(app, "Crane", CAPTAIN)
    make_member(app, "Kestrel", STEWARD, node="!a1b2c3d4")  # logs in on the web as well
    host, captain = app.test_client(), app.test_client()
    login(host, "Osprey")
    login(captain, "Crane")
    for area in ("Market", "Park north"):
        submit(host, "/host/stewards", {"area_name": area}, action="/host/areas")
    decision = {"decided_on": clock().date().isoformat(), "decision_place": "assembly at the library",
                "decision": "item 4: new stewards"}
    for handle, node, asked in (("Wren", "!12345678", True), ("Tern", "!0000beef", False)):
        form = {"handle": handle, "node_id": node, **decision}
        if asked:
            form["show_handle"] = "y"
        registered = submit(host, "/host/stewards", form)
        assert f"{handle} is registered" in text_of(registered)
        countersigned = submit(captain, "/host/stewards", {"back": "stewards"},
                               action=f"/host/roles/{newest_assignment(app)}/countersign")
        assert countersigned.status_code == 200
    radio = Handhelds(app)
    assert radio.send(WREN_NODE, "ON Market") == "on"
    assert radio.send(TERN_NODE, f"ON {ELM}") == "on"
    assert radio.send(KESTREL_NODE, "ON Park north gate") == "on"
    return host


def test_the_bench_page_counts_stewards_by_published_area_and_names_only_the_one_who_asked(app, night):
    bench, log = public_pages(app)

    assert "3 stewards on patrol: 1 in Market, 1 in Park north, 1 elsewhere." in bench
    assert "Showing their handle: Wren." in bench
    # Tern's typed place is no published area: counted as "elsewhere", never shown.
    assert "Elm" not in bench and "Elm" not in log
    for hidden in ("Tern", "Kestrel"):
        assert not named(hidden, bench) and not named(hidden, log), hidden
    assert "Shift started Wren Market" in log
    assert "Shift started — Park north" in log  # Kestrel's shift: process, no person
    assert "A steward's handle shows only if they chose to show it." in log


def test_a_steward_shows_their_handle_on_their_dashboard_and_hides_it_again(app, night):
    kestrel = app.test_client()
    login(kestrel, "Kestrel")
    dashboard = text_of(kestrel.get("/host/"))
    assert "What the public sees of me" in dashboard and "The public sees you only as a count" in dashboard

    shown = submit(kestrel, "/host/", {"show_handle": "1"}, action="/host/me/public-handle")

    assert "The bench page and the public log now show your handle." in text_of(shown)
    assert "You chose to show your handle" in text_of(shown)
    bench, log = public_pages(app)
    assert "Showing their handle: Kestrel, Wren." in bench
    # Every entry of theirs, the shift that began before they chose, too.
    assert "Shift started Kestrel Park north" in log

    hidden = submit(kestrel, "/host/", {"show_handle": "0"}, action="/host/me/public-handle")

    assert "Your handle is hidden" in text_of(hidden)
    bench, log = public_pages(app)
    assert not named("Kestrel", bench) and not named("Kestrel", log)
    assert "Showing their handle: Wren." in bench and "Shift started — Park north" in log

    # A choice that is neither is refused plainly, and changes nothing.
    odd = submit(kestrel, "/host/", {"show_handle": "yes please"}, action="/host/me/public-handle")
    assert odd.status_code == 200 and "Please choose to show or to hide your handle." in text_of(odd)
    assert not show_handle_of(app, "Kestrel")


def test_nobody_but_the_steward_turns_it_on_and_a_host_hides_it_when_asked(app, night, clock):
    host = night
    with app.app_context():
        uses_before = len(power_record.entries(db.session))

    # The host's own choice is the host's: the dashboard form changes Osprey, nobody else.
    submit(host, "/host/", {"show_handle": "1"}, action="/host/me/public-handle")
    assert show_handle_of(app, "Osprey") and not show_handle_of(app, "Tern")
    # Registering Tern again "as asked" is refused: Tern is a member already, and chooses for themself.
    again = submit(host, "/host/stewards", {"handle": "Tern", "node_id": "!0000beef", "show_handle": "y",
                                            "decided_on": clock().date().isoformat(),
                                            "decision_place": "the bench", "decision": "item 5"})
    assert again.status_code == 400
    assert "Tern is already a member: only they can choose to show their handle" in text_of(again)
    assert not show_handle_of(app, "Tern")
    # The stewards page offers to hide a shown handle, and never to show a hidden one.
    page = host.get("/host/stewards").get_data(as_text=True)
    assert "Hide Wren&#39;s handle, as they asked" in page or "Hide Wren's handle, as they asked" in page
    assert "Hide Tern" not in page and 'name="show_handle" value="1"' not in page
    with app.app_context():
        tern = people.get_member(db.session, "Tern")
        with pytest.raises(Conflict):
            people.set_show_handle(db.session, tern, True, by=people.get_member(db.session, "Osprey"))
        db.session.rollback()

    # Wren, who never logs in, asks the host at the bench to hide it.
    with app.app_context():
        wren_id = people.get_member(db.session, "Wren").id
    hidden = submit(host, "/host/stewards", {}, action=f"/host/stewards/{wren_id}/hide-handle")

    assert "Wren's handle is hidden from the public: only Wren can show it again" in text_of(hidden)
    bench, log = public_pages(app)
    assert "3 stewards on patrol" in bench and not named("Wren", bench) and not named("Wren", log)
    # Consent is nobody's business in public: no log entry, no line in the record of power used.
    with app.app_context():
        assert len(power_record.entries(db.session)) == uses_before
        kinds = {entry.kind for entry in patrol.recent_entries(db.session, limit=100)}
    assert kinds == {patrol.SHIFT_START}


def test_a_cached_bench_page_forgets_a_handle_the_moment_its_steward_hides_it(tmp_path, clock):
    # The real cache, for long enough that only forgetting it can explain a change.
    app = make_app(tmp_path / "cached", clock, RATELIMIT_ENABLED=False, CACHE_TYPE="SimpleCache",
                   CACHE_DEFAULT_TIMEOUT=600)
    make_member(app, "Kestrel", STEWARD, node="!a1b2c3d4")
    make_member(app, "Tern", STEWARD, node="!0000beef")
    with app.app_context():
        patrol.add_area(db.session, "Market")
        db.session.commit()
    kestrel = app.test_client()
    login(kestrel, "Kestrel")
    submit(kestrel, "/host/", {"show_handle": "1"}, action="/host/me/public-handle")
    radio = Handhelds(app)
    radio.send(KESTREL_NODE, "ON Market")
    bench, log = public_pages(app)
    assert "Showing their handle: Kestrel." in bench and "Shift started Kestrel Market" in log

    # The crowd's copies are cached: another steward going out is not in them yet.
    radio.send(TERN_NODE, "ON Market")
    assert "1 steward on patrol" in public_pages(app)[0]

    submit(kestrel, "/host/", {"show_handle": "0"}, action="/host/me/public-handle")

    bench, log = public_pages(app)
    assert not named("Kestrel", bench) and not named("Kestrel", log)
    assert "2 stewards on patrol: 2 in Market." in bench


def test_the_host_at_the_terminal_registers_a_steward_as_asked_and_hides_a_handle_on_request(app):
    instance = app.instance_path
    shown = safebench(instance, "steward", "add", "Wren", "!12345678", "--show-handle")
    assert shown.returncode == 0, shown.stderr
    assert "The public sees their handle, as they asked." in shown.stdout
    counted = safebench(instance, "steward", "add", "Tern", "!0000beef")
    assert counted.returncode == 0 and "The public sees them only as a count" in counted.stdout
    assert show_handle_of(app, "Wren") and not show_handle_of(app, "Tern")

    # Later is too late for anyone but Tern: the flag on an existing member is refused.
    later = safebench(instance, "steward", "add", "Tern", "!0000beef", "--show-handle")
    assert later.returncode != 0 and "Tern is already a member" in later.stderr and "Traceback" not in later.stderr
    assert not show_handle_of(app, "Tern")

    hidden = safebench(instance, "steward", "hide-handle", "wren")
    assert hidden.returncode == 0, hidden.stderr
    assert "Wren's handle is hidden from the public" in hidden.stdout
    assert not show_handle_of(app, "Wren")
    nobody = safebench(instance, "steward", "hide-handle", "Heron")
    assert nobody.returncode != 0 and "No one here goes by 'Heron'" in nobody.stderr
    assert "Traceback" not in nobody.stderr


def test_members_from_before_this_version_start_hidden_and_keep_their_roles(tmp_path, clock):
    from flask_migrate import upgrade

    from server import create_app
    from server.migrating import apply_migrations

    app = create_app({"INSTANCE": tmp_path / "old-hub", "TESTING": True, "CLOCK": clock})
    with app.app_context():
        upgrade(revision="f13s0000seal")  # the schema just before stewards chose
        db.session.execute(db.text(
            "INSERT INTO member (id, handle, handle_key, node_num, created_at, session_epoch, appears_as_role) "
            "VALUES (1, 'Wren', 'wren', 305419896, '2026-11-01 20:00:00', 0, 0)"))
        db.session.execute(db.text(
            "INSERT INTO role_assignment (id, member_id, role, granted_at, expires_at, decision, countersigned_at) "
            "VALUES (1, 1, 'steward', '2026-11-20 20:00:00', '2026-12-18 20:00:00', 'item 4', "
            "'2026-11-20 20:00:00')"))
        db.session.commit()
    apply_migrations(app)
    with app.app_context():
        wren = people.get_member(db.session, "Wren")
        # Shown by handle before, counted now: only Wren can consent to more.
        assert wren.show_handle is False
        assert people.active_roles(db.session, wren, clock()) == {STEWARD}
        db.session.remove()
        db.engine.dispose()
