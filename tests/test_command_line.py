"""The host at the Pi's terminal: the ``safebench`` commands, run for real."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from server.clock import utcnow
from server.domain import patrol, people
from server.extensions import db
from tests.helpers import PASSWORD, make_member
from tests.processes import safebench


@pytest.fixture
def instance(app):
    """The instance folder of a migrated hub, shared by the app fixture and the commands."""
    return app.instance_path


def test_the_first_host_is_created_with_a_password_from_standard_input(app, instance, client):
    done = safebench(instance, "create-host", "Kestrel", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "Host Kestrel created" in done.stdout
    login = client.post("/login", data={"handle": "kestrel", "password": PASSWORD})
    # CSRF is on: a form without its token is refused, which proves the check runs.
    assert login.status_code == 400

    again = safebench(instance, "create-host", "Kestrel", stdin=PASSWORD + "\n")
    assert again.returncode != 0
    assert "exists already" in again.stderr and "Traceback" not in again.stderr

    weak = safebench(instance, "create-host", "Osprey", stdin="short\n")
    assert weak.returncode != 0 and "at least 10 characters" in weak.stderr
    with app.app_context():
        assert people.find_member(db.session, "Osprey") is None


def test_stewards_are_registered_with_their_node_ids_and_listed(instance):
    assert safebench(instance, "steward", "add", "Kestrel", "!a1b2c3d4").returncode == 0
    assert safebench(instance, "steward", "add", "Wren", "305419896").returncode == 0

    listing = safebench(instance, "steward", "list").stdout
    assert "Kestrel" in listing and "!a1b2c3d4" in listing
    assert "Wren" in listing and "!12345678" in listing

    taken = safebench(instance, "steward", "add", "Heron", "!a1b2c3d4")
    assert taken.returncode != 0 and "already registered to Kestrel" in taken.stderr
    nonsense = safebench(instance, "steward", "add", "Heron", "not-a-node")
    assert nonsense.returncode != 0 and "!a1b2c3d4" in nonsense.stderr and "Traceback" not in nonsense.stderr


def test_a_stewards_radio_key_is_pinned_from_the_terminal_and_a_new_node_id_drops_it(app, instance):
    key = "fEl7TF3AqQ0r5WmJ1m1n8yqkO4tq1y2yM1a0X7z2bHs="
    added = safebench(instance, "steward", "add", "Kestrel", "!a1b2c3d4", "--key", key)
    assert added.returncode == 0, added.stderr
    assert "Radio key pinned: fEl7 TF3A" in added.stdout
    assert "key fEl7 TF3A" in safebench(instance, "steward", "list").stdout

    bad = safebench(instance, "steward", "add", "Wren", "!12345678", "--key", "AAAA")
    assert bad.returncode != 0 and "32 bytes in base64" in bad.stderr and "Traceback" not in bad.stderr
    with app.app_context():
        assert people.find_member(db.session, "Wren") is None, "nothing is half-registered"

    # Kestrel has another radio now: the old radio's key does not follow, and it is recorded.
    moved = safebench(instance, "steward", "add", "Kestrel", "!a1b2c3d5")
    assert moved.returncode == 0 and "No radio key pinned yet" in moved.stdout
    with app.app_context():
        from server.domain import radio_trust

        assert people.find_member(db.session, "Kestrel").radio_key is None
        (changed,) = [e for e in radio_trust.recent_events(db.session) if e.kind == radio_trust.NODE_CHANGED]
        assert "!a1b2c3d4 -> !a1b2c3d5" in changed.detail


def test_the_log_prints_one_json_object_per_line(app, instance, clock):
    make_member(app, "Kestrel", "steward", node="!a1b2c3d4")  # on the test's clock, as the shift below
    with app.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        patrol.add_area(db.session, "Market")
        patrol.start_shift(db.session, clock(), kestrel, "Market", patrol.SOURCE_RADIO)
        patrol.record_incident(db.session, clock.advance(minutes=3), kestrel, patrol.SOURCE_WEB, "bins on fire")
        db.session.commit()

    printed = safebench(instance, "log", "--json", "--limit", "5").stdout
    rows = [json.loads(line) for line in printed.splitlines()]
    assert [row["kind"] for row in rows] == ["shift_start", "incident"]
    # The note is sealed, and the terminal holds no login: it says there is one, never its words.
    assert rows[1] | {"id": None} == {
        "id": None, "time": "2026-11-21T20:03:00Z", "kind": "incident", "steward": "Kestrel",
        "area": "Market", "note": "(sealed)", "source": "web",
    }
    assert rows[0]["note"] is None, "no note, nothing sealed"
    plain = safebench(instance, "log").stdout
    assert "(sealed)" in plain
    assert "bins on fire" not in printed and "bins on fire" not in plain
    assert safebench(instance, "log", "--limit", "0").returncode != 0


def test_a_second_host_from_the_terminal_waits_for_the_first_hosts_countersign(app, instance):
    assert "Host Kestrel created; the role runs for 28 days" in safebench(
        instance, "create-host", "Kestrel", stdin=PASSWORD + "\n").stdout
    second = safebench(instance, "create-host", "Osprey", stdin=PASSWORD + "\n")
    assert second.returncode == 0, second.stderr
    assert "Host Osprey created, pending" in second.stdout and "countersign" in second.stdout
    assert "Osprey                   host           pending" in safebench(instance, "role", "list").stdout

    wrong = safebench(instance, "role", "countersign", "Osprey", "host", "--as", "Kestrel", stdin="guess\n")
    assert wrong.returncode != 0 and "do not match" in wrong.stderr
    alone = safebench(instance, "role", "countersign", "Osprey", "host", "--as", "Osprey", stdin=PASSWORD + "\n")
    assert alone.returncode != 0 and "Nobody countersigns a role for themselves" in alone.stderr
    signed = safebench(instance, "role", "countersign", "Osprey", "host", "--as", "Kestrel", stdin=PASSWORD + "\n")
    assert signed.returncode == 0, signed.stderr
    assert "Osprey                   host           active" in safebench(instance, "role", "list").stdout


def test_a_lapsed_role_is_renewed_from_the_terminal_with_the_assembly_decision_and_a_countersign(app, instance):
    safebench(instance, "create-host", "Kestrel", stdin=PASSWORD + "\n")
    safebench(instance, "create-host", "Osprey", stdin=PASSWORD + "\n")
    safebench(instance, "role", "countersign", "Osprey", "host", "--as", "Kestrel", stdin=PASSWORD + "\n")
    with app.app_context():
        kestrel = people.get_member(db.session, "Kestrel")
        (assignment,) = kestrel.roles
        # It ran out yesterday by the clock the commands read (the real one), not the test's fixed clock.
        assignment.expires_at = utcnow() - timedelta(days=1)
        db.session.commit()

    assert "lapsed" in safebench(instance, "role", "list").stdout
    today = utcnow().date().isoformat()
    unnamed = safebench(instance, "role", "renew", "Kestrel", "host", "--decision", "assembly of 20 Nov, item 3")
    assert unnamed.returncode != 0 and "--decided-on" in unnamed.stderr
    too_long = safebench(instance, "role", "renew", "Kestrel", "host", "--decision", "assembly of 20 Nov, item 3",
                         "--decided-on", today, "--at", "assembly at the library", "--days", "366")
    assert too_long.returncode != 0 and "from 1 to 28 days" in too_long.stderr
    renewed = safebench(instance, "role", "renew", "Kestrel", "host", "--decision", "assembly of 20 Nov, item 3",
                        "--decided-on", today, "--at", "assembly at the library")
    assert renewed.returncode == 0, renewed.stderr
    assert "lapsed" in safebench(instance, "role", "list").stdout  # pending: the old term still ran out
    assert safebench(instance, "role", "countersign", "Kestrel", "host", "--as", "Kestrel",
                     stdin=PASSWORD + "\n").returncode != 0
    signed = safebench(instance, "role", "countersign", "Kestrel", "host", "--as", "Osprey", stdin=PASSWORD + "\n")
    assert signed.returncode == 0, signed.stderr
    assert "Kestrel                  host           active" in safebench(instance, "role", "list").stdout
    with app.app_context():
        (assignment,) = people.get_member(db.session, "Kestrel").roles
        assert [r.decision for r in assignment.renewals] == ["assembly of 20 Nov, item 3"]
        assert assignment.renewals[0].countersigned_by.handle == "Osprey"
