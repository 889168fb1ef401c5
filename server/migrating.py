"""Applying schema migrations safely when several processes start at once."""

from __future__ import annotations

import fcntl
from pathlib import Path

from flask import Flask
from flask_migrate import upgrade


def apply_migrations(app: Flask) -> None:
    """Bring the database to the newest schema, one process at a time.

    The web server, the worker and the bridge may start together (systemd
    starts them in parallel); a lock file in the instance folder makes the
    first one migrate and the others wait, then find nothing to do.
    """
    lock_path = Path(app.instance_path) / "migrate.lock"
    with lock_path.open("w") as lock, app.app_context():
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            upgrade()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
