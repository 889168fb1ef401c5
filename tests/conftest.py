"""Shared fixtures: a real SQLite file per test, migrations applied, CSRF on.

Helpers are plain functions in ``tests/helpers.py``; fixtures here only
build the app, its client and its clock.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.helpers import FakeClock, make_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 21, 20, 0, 0))


@pytest.fixture
def app(tmp_path, clock):
    app = make_app(
        tmp_path / "instance",
        clock,
        # Rate limits have their own tests; elsewhere they would only
        # make stories depend on the order tests run in.
        RATELIMIT_ENABLED=False,
        # Stories read the page right after changing the data.
        CACHE_TYPE="NullCache",
        CACHE_NO_NULL_WARNING=True,
    )
    yield app
    with app.app_context():
        from server.extensions import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
