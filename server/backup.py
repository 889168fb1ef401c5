"""Nightly copies of the hub's SQLite database, and putting one back.

Flask-free, so ``safebench backup`` and ``safebench restore`` and the tests
call the same functions. Copies go through SQLite's online backup API
(``sqlite3.Connection.backup``), which reads a consistent snapshot while the
web server, the worker and the bridge keep writing; copying the file with
``cp`` could catch it halfway through a write or miss what is still in the
WAL file beside it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

# safebench-20261121T031500Z.db: UTC, so names sort in the order they were taken.
BACKUP_NAME = re.compile(r"^safebench-\d{8}T\d{6}Z\.db$")
BACKUP_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


class BackupError(Exception):
    """A backup or a restore could not be done; nothing was changed."""


@dataclass(frozen=True)
class Backup:
    path: Path
    removed: tuple[Path, ...]  # older copies deleted to keep the last N


def sqlite_path(database_url: str) -> Path:
    """The database file behind a ``sqlite:///...`` URL; other databases have their own tools."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(f"Only a SQLite database file can be backed up this way, not {url.render_as_string()}; "
                          "for PostgreSQL use pg_dump.")
    return Path(url.database)


def backup_name(now: datetime) -> str:
    """The file name of a copy taken at ``now`` (UTC)."""
    return f"safebench-{now.strftime(BACKUP_TIME_FORMAT)}.db"


def list_backups(folder: Path) -> list[Path]:
    """The copies in ``folder``, oldest first. Other files there are never touched."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if BACKUP_NAME.match(path.name) and path.is_file())


def _check(connection: sqlite3.Connection, what: str) -> None:
    result = connection.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"{what} is damaged: {result}")


def _copy_into(source: Path, target: Path) -> None:
    """A consistent copy of the database ``source`` into the new file ``target`` (mode 600)."""
    # The copy holds everything the hub knows: only the hub's user may read it.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    # Read-write like every connection of the hub: a read-only one could not
    # open a WAL database whose -shm file is not there yet.
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        dst.execute("PRAGMA secure_delete=ON")  # as every connection of the hub
        src.backup(dst)
        # A single file: the copy needs no -wal and -shm beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
        _check(dst, f"The copy of {source}")
    finally:
        dst.close()
        src.close()


def back_up(database: Path, folder: Path, keep: int | None, now: datetime) -> Backup:
    """Copy ``database`` into ``folder`` and delete all but the newest ``keep`` copies (``None``: none).

    The copy is written under a temporary name and checked before it takes
    its place, so a failed night never replaces a good copy, and older
    copies are deleted only once the new one is in place.
    """
    if keep is not None and keep < 1:
        raise BackupError("Keep at least one backup.")
    if not database.is_file():
        raise BackupError(f"There is no database at {database}.")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _keep_private(folder)
    target = folder / backup_name(now)
    partial = folder / f".{target.name}.partial"
    partial.unlink(missing_ok=True)  # left by a night the power went out
    try:
        _copy_into(database, partial)
    except sqlite3.Error as error:
        partial.unlink(missing_ok=True)
        raise BackupError(f"Could not copy {database}: {error}") from None
    except BackupError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    removed = tuple(list_backups(folder)[:-keep]) if keep is not None else ()
    for old in removed:
        old.unlink()
    return Backup(target, removed)


def _keep_private(folder: Path) -> None:
    """The folder and the copies in it for the hub's user alone, as older versions may not have left them."""
    for path in (folder, *list_backups(folder)):
        info = path.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(stat.S_IMODE(info.st_mode) & ~0o077)


def _is_safebench_database(connection: sqlite3.Connection) -> bool:
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {"alembic_version", "member"} <= tables


def restore(copy: Path, database: Path, folder: Path, now: datetime) -> Backup | None:
    """Put the copy ``copy`` back as the hub's ``database``.

    First the database as it is now is backed up into ``folder`` (the
    restore can be undone with that copy), unless there is none or it is
    too damaged to copy; no older copy is deleted for it (least of all the
    one being restored) until the next nightly backup keeps the last N.
    The copy is written through SQLite's backup API too, so a WAL file left
    beside the database is taken care of rather than replayed over the
    restored data. Returns the safety copy, if one was made.
    """
    if not copy.is_file():
        raise BackupError(f"There is no file {copy}.")
    try:
        source = sqlite3.connect(f"{copy.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise BackupError(f"{copy} cannot be opened: {error}") from None
    try:
        try:
            _check(source, str(copy))
            if not _is_safebench_database(source):
                raise BackupError(f"{copy} is not a Safe Bench database.")
        except sqlite3.DatabaseError as error:
            raise BackupError(f"{copy} is not a database: {error}") from None
        safety = None
        if database.is_file():
            try:
                safety = back_up(database, folder, None, now)
            except BackupError:
                safety = None  # the damaged database is why we restore: go on without a copy of it
        database.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(database)
        try:
            target.execute("PRAGMA secure_delete=ON")  # as every connection of the hub
            source.backup(target)
        except sqlite3.Error as error:
            raise BackupError(f"Could not write {database}: {error}. If it is too damaged to open, stop the hub, "
                              f"move {database.name} and its -wal and -shm files aside, and restore again.") from None
        finally:
            target.close()
    finally:
        source.close()
    return safety
