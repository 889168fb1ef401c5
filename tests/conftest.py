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


# The suite's PostgreSQL run (tests/run.sh, tests/postgres.py) runs these again, `pytest -m postgres`:
# whole modules, or module::test. The schema against the models, the domain's stories, the web's stories,
# locking and backups; a few minutes. The rest run on SQLite only.
POSTGRES_STORIES = {
    "test_postgresql",  # writers' lock, busy hub, backup and restore
    "test_running_the_hub::test_the_migrations_build_exactly_the_schema_the_models_describe",
    "test_running_the_hub::test_safebench_up_serves_the_bench_page_runs_the_scheduler_and_the_bridge_then_stops_cleanly",
    "test_running_the_hub::test_a_restarted_bridge_is_back_on_the_radio_without_loading_the_web_app",
    "test_arrest_cases", "test_patrol_log", "test_ledger", "test_ledger_radio_and_races", "test_task_map",
    "test_mediation", "test_retention", "test_receipts", "test_complaints", "test_audit", "test_sealed_storage",
    "test_host", "test_alerts_web", "test_quick_polls", "test_rapid_response",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.nodeid.split("::", 1)[0].rpartition("/")[2].removesuffix(".py")
        if module in POSTGRES_STORIES or f"{module}::{getattr(item, 'originalname', '')}" in POSTGRES_STORIES:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="module", autouse=True)
def _postgresql_databases_dropped():
    """In the PostgreSQL run, each module's databases are dropped after it, once its module-wide hubs
    are done with them too (nothing happens on SQLite)."""
    yield
    from tests import postgres

    if postgres.on_postgresql:
        postgres.drop_created()


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
