"""Shared fixtures: a real SQLite file per test, migrations applied, CSRF on.

Helpers are plain functions in ``tests/helpers.py``; fixtures here only
build the app, its client and its clock.
"""

from __future__ import annotations

import os
from datetime import datetime

import pytest

# Argon2id at its real cost (tests/benchmarks/sealing.py measures it) would spend
# most of the suite deriving keys; stories need the keys to work, not to be slow.
# Set before any hub process starts, so the real processes tests start inherit it.
os.environ.setdefault("SAFEBENCH_KDF_PASSES", "1")
os.environ.setdefault("SAFEBENCH_KDF_MEMORY_KIB", "64")

from hypothesis import settings  # noqa: E402

# The property tests draw the same examples on every run: a landing is never blocked by a case
# one run happened to draw and the last one did not. Explore with `--hypothesis-seed=<n>` or
# HYPOTHESIS_PROFILE=explore; what it finds goes into the examples as a story.
settings.register_profile("suite", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

from tests.helpers import FakeClock, make_app  # noqa: E402


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
