"""The suite on PostgreSQL: a fresh database per hub, cloned from one migrated template.

``tests/run.sh`` starts a private PostgreSQL cluster and runs the tests marked ``postgres`` with
``TESTS_POSTGRES_URL`` set to it (``postgresql://postgres@127.0.0.1:PORT/postgres``); without it
every hub in the tests is a SQLite file, as on a bench. ``CREATE DATABASE ... TEMPLATE`` copies the
migrated template's files (tens of milliseconds) instead of running thirty migrations per test.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

SERVER = os.environ.get("TESTS_POSTGRES_URL", "")
MARK = "database.url"  # in the instance folder: the database this instance's hub was given
_template: str | None = None
_created: list[str] = []

on_postgresql = bool(SERVER)
sqlite_only = pytest.mark.skipif(on_postgresql, reason="reads the hub's SQLite file itself; on PostgreSQL "
                                 "the data is not in the instance folder (tests/test_postgresql.py tells its stories)")


def url_for(database: str) -> str:
    base, _, _ = SERVER.rpartition("/")
    return f"{base}/{database}".replace("postgresql://", "postgresql+psycopg://", 1)


def _admin(statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(SERVER, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def _migrated_template() -> str:
    """Migrated once per test run (per pytest process), from the migrations as they are on disk."""
    global _template
    if _template is None:
        import atexit
        import tempfile

        from server import create_app
        from server.extensions import db
        from server.migrating import apply_migrations

        name = f"safebench_template_{os.getpid()}"
        _admin([f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"])
        atexit.register(_admin, [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
        with tempfile.TemporaryDirectory() as folder:
            app = create_app({"INSTANCE": Path(folder), "DATABASE_URL": url_for(name), "TESTING": True})
            apply_migrations(app)
            with app.app_context():
                db.engine.dispose()  # a template takes no connections while it is copied
        _template = name
    return _template


def database_url(instance: Path, migrated: bool = True) -> str:
    """The database of the hub in ``instance``: the same one each time the instance is opened again."""
    instance = Path(instance)
    mark = instance / MARK
    if mark.exists():
        return mark.read_text()
    name = "t_" + hashlib.sha1(str(instance.resolve()).encode()).hexdigest()[:20]
    template = f" TEMPLATE {_migrated_template()}" if migrated else ""
    _admin([f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}{template}"])
    _created.append(name)
    instance.mkdir(parents=True, exist_ok=True)
    url = url_for(name)
    mark.write_text(url)
    return url


def instance_url(instance: Path) -> str | None:
    """The PostgreSQL database already given to ``instance``, if any (for the processes a test starts)."""
    mark = Path(instance) / MARK
    return mark.read_text() if SERVER and mark.exists() else None


def drop_created() -> None:
    """After each test module: its databases go (a copy is about 10 MB; the run makes hundreds)."""
    if _created:
        _admin([f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in _created])
        _created.clear()
ids_reused = pytest.mark.skipif(on_postgresql, reason="SQLite gives a new row the id of a deleted last one; "
                                "PostgreSQL's sequences never give an id twice, so the story cannot happen there")
