"""The database is locked (a backup, another process mid-write): the neighbour is told, keeps their words, and nothing is half-saved."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.domain.mediation import MediationRequest
from server.extensions import db
from tests.helpers import csrf_token, make_app, text_of

REQUEST = {"what": "The bins by the school gate keep getting set alight", "where": "School lane", "urgency": "soon"}


@pytest.fixture
def impatient_app(tmp_path, clock):
    """A hub that gives up on a lock quickly, so the story runs in a second."""
    return make_app(tmp_path / "busy", clock, RATELIMIT_ENABLED=False, DB_BUSY_TIMEOUT_MS=100, DB_RETRY_ATTEMPTS=2)


def count_requests(app) -> int:
    with app.app_context():
        return db.session.query(MediationRequest).count()


def test_a_request_sent_while_the_database_is_locked_is_refused_plainly_and_succeeds_after(impatient_app):
    client = impatient_app.test_client()
    token = csrf_token(client, "/mediation/new")
    blocker = sqlite3.connect(Path(impatient_app.instance_path) / "safebench.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        refused = client.post("/mediation/new", data={**REQUEST, "csrf_token": token})
        assert refused.status_code == 503
        page = text_of(refused)
        assert "The hub is busy" in page and "nothing was saved" in page
        assert REQUEST["what"] in page  # their words, ready to copy
        # Pages that only read still work while a writer holds the lock.
        assert client.get("/").status_code == 200
    finally:
        blocker.rollback()
        blocker.close()
    assert count_requests(impatient_app) == 0

    sent = client.post("/mediation/new", data={**REQUEST, "csrf_token": token}, follow_redirects=True)
    assert sent.status_code == 200 and "receipt" in text_of(sent).lower()
    assert count_requests(impatient_app) == 1
