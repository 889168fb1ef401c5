"""Plain helper functions for the stories in the tests."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape

from server.domain import people
from server.extensions import db

PASSWORD = "correct horse battery"


class FakeClock:
    """A clock the test moves by hand; the app asks it for the time."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def seat_role(session, now: datetime, member, role: str, term_days: int = 28):
    """Test setup: ``role`` in force for ``member`` at once, as if granted and countersigned before the story began.

    No page or command does this (mandates.grant waits for a second role-holder's
    countersign); stories about countersigning build their own grants.
    """
    assignment = people.RoleAssignment(member=member, role=role, granted_at=now,
                                       expires_at=now + timedelta(days=term_days), decision="test assembly",
                                       countersigned_at=now)
    session.add(assignment)
    session.flush()
    return assignment


def add_steward(session, now: datetime, handle: str, node, term_days: int = 28):
    """Test setup: a steward with their radio's node and a steward role in force (see ``seat_role``)."""
    member = people.add_member(session, now, handle, people.parse_node_id(node))
    seat_role(session, now, member, people.STEWARD, term_days)
    return member


def make_member(app, handle: str, *roles: str, password: str | None = PASSWORD, node: str | None = None,
                term_days: int = 28):
    """A member with the given roles, in force from now for ``term_days``.

    Test setup: the roles are created active and countersigned directly
    (``seat_role``), so stories about other things need no second host.
    """
    with app.app_context():
        now = app.config["CLOCK"]()
        member = people.add_member(db.session, now, handle, people.parse_node_id(node) if node else None)
        if password:
            people.set_password(member, password)
        for role in roles:
            seat_role(db.session, now, member, role, term_days)
        db.session.commit()
        return member.id


def chose_to_show_handle(app, handle: str) -> None:
    """Test setup: the member chose to show their handle on the bench page and the public log (their own consent)."""
    with app.app_context():
        member = people.get_member(db.session, handle)
        people.set_show_handle(db.session, member, True, by=member)
        db.session.commit()


_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client, page: str) -> str:
    """The CSRF token from a page's form, as a browser would have it."""
    html = client.get(page).get_data(as_text=True)
    match = _TOKEN.search(html)
    assert match, f"no form with a CSRF token on {page}"
    return unescape(match.group(1))


def submit(client, page: str, data: dict, action: str | None = None, follow: bool = True):
    """Open ``page``, then send its form (or the one at ``action``) with ``data``."""
    token = csrf_token(client, page)
    return client.post(action or page, data={**data, "csrf_token": token}, follow_redirects=follow)


def prefixed(prefix: str, data: dict) -> dict:
    """A form's fields as a page with several forms names them: ``prefixed("grant", {"handle": ...})`` sends
    ``grant-handle`` (Flask-WTF's prefix, which keeps the forms' ids apart)."""
    return {f"{prefix}-{name}": value for name, value in data.items()}


def login(client, handle: str, password: str = PASSWORD):
    return submit(client, "/login", {"handle": handle, "password": password})


def text_of(response) -> str:
    """The visible text of a page, tags removed, whitespace folded."""
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def make_app(instance, clock, **config):
    """A migrated hub on a real SQLite file in ``instance`` (a PostgreSQL database of its own in the
    suite's PostgreSQL run, tests/postgres.py); ``config`` overrides the test defaults."""
    from server import create_app
    from server.migrating import apply_migrations
    from tests import postgres

    app = create_app({
        "INSTANCE": instance,
        # Pinned, so a SAFEBENCH_DATABASE_URL in a developer's shell never reaches a test.
        "DATABASE_URL": postgres.database_url(instance) if postgres.on_postgresql
        else f"sqlite:///{instance / 'safebench.db'}",
        "TESTING": True,
        "CLOCK": clock,
        "TIMEZONE": "UTC",
        **config,
    })
    apply_migrations(app)
    return app


def make_wall_clock_hub(instance, stewards):
    """A migrated hub on the wall clock (a bridge process runs on real time) with ``stewards`` registered.

    ``stewards``: the simulated radio's nodes, each a steward named steward0, steward1...
    """
    from server.clock import utcnow

    app = make_app(instance, utcnow)
    with app.app_context():
        for number, node in enumerate(stewards):
            add_steward(db.session, utcnow(), f"steward{number}", node.num)
        db.session.commit()
    return app



def reader_keys(app, password: str = PASSWORD) -> dict:
    """The vault keys a reader would hold: every member's grants opened with ``password`` (stories use one),
    and any vault key still waiting on the card for its first reader."""
    from nacl.public import PrivateKey
    from sqlalchemy import select

    from server.domain import sealing

    with app.app_context():
        opened = {vault.vault: PrivateKey(vault.pending_private)
                  for vault in db.session.scalars(select(sealing.VaultKey)) if vault.pending_private}
        for key in db.session.scalars(select(sealing.MemberKey)):
            private = sealing.open_member_key(key, password)
            if private is not None:
                opened = {**sealing.open_grants(db.session, key.member, private), **opened}
        return opened


def unsealed(app, value, password: str = PASSWORD):
    """The words in a sealed value, opened as a reader would (``reader_keys``)."""
    from server.domain import sealing

    if value is None or not sealing.is_sealed(value):
        return value
    return sealing.open_text(value, reader_keys(app, password))
