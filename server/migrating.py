"""Applying schema migrations safely when several processes start at once,
and telling, without Flask or Alembic, whether there is anything to apply."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from flask import Flask

# The newest revision in server/migrations/versions. The radio bridge compares
# the database with it so that a restart after a crash skips loading Flask and
# Alembic (about a second here, several on a Pi Zero 2 W, while packets reaching
# the radio are lost). A new migration must move it:
# tests/test_running_the_hub.py fails until it does.
SCHEMA_HEAD = "j16m0000mem"


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at SCHEMA_HEAD; False if it is older, newer, empty or unreadable."""
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:
        return False  # no database or no schema yet; or busy: migrating will wait its turn and say
    return versions == [SCHEMA_HEAD]


def ensure_schema(app: Flask) -> bool:
    """Apply pending migrations unless the database is at SCHEMA_HEAD already; True if it migrated.

    For every command that reads or writes the database: one query when the
    schema is current (Alembic is not even loaded), migrations under the lock
    when it is not, e.g. on a new instance before ``safebench up`` ever ran.
    """
    from server.extensions import db

    with app.app_context():
        if schema_is_current(db.engine):
            return False
    apply_migrations(app)
    return True


def apply_migrations(app: Flask) -> None:
    """Bring the database to the newest schema, one process at a time.

    The web server, the worker and the bridge may start together (systemd
    starts them in parallel); a lock file in the instance folder makes the
    first one migrate and the others wait, then find nothing to do.
    """
    from flask_migrate import upgrade

    lock_path = Path(app.instance_path) / "migrate.lock"
    with lock_path.open("w") as lock, app.app_context():
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            upgrade()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def schema_ready(instance: Path, settings: dict) -> bool:
    """For a process without Flask (the bridge, the worker): is the database at the newest schema,
    after migrating it in a child process if not?

    A child process, so that Flask and Alembic leave memory when it exits.
    """
    from server.db import make_engine

    engine = make_engine(settings["DATABASE_URL"], int(settings["DB_BUSY_TIMEOUT_MS"]))
    try:
        if schema_is_current(engine):
            return True
        logging.getLogger(__name__).info("the database needs migrating first")
        env = {**os.environ, "SAFEBENCH_INSTANCE": str(instance)}
        subprocess.run([sys.executable, "-m", "server", "migrate"], env=env, check=False)
        return schema_is_current(engine)
    finally:
        engine.dispose()
