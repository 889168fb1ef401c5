"""Nightly copies of the hub's database, and putting one back.

Flask-free, so ``safebench backup`` and ``safebench restore`` and the tests
call the same functions. Copies go through SQLite's online backup API
(``sqlite3.Connection.backup``), which reads a consistent snapshot while the
web server, the worker and the bridge keep writing; copying the file with
``cp`` could catch it halfway through a write or miss what is still in the
WAL file beside it. A city hub on PostgreSQL is copied by PostgreSQL's own
``pg_dump`` (one consistent snapshot too) and put back by ``psql`` in one
transaction (``back_up_postgresql``, ``restore_postgresql``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
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
        raise BackupError(f"Only a SQLite database file is copied this way, not {url.render_as_string()}; "
                          "a PostgreSQL database is copied with pg_dump (back_up_postgresql).")
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


# -- PostgreSQL (a city hub) ------------------------------------------------------

# safebench-20261121T031500Z.sql: pg_dump's plain SQL, which psql puts back and a person can read.
PG_BACKUP_NAME = re.compile(r"^safebench-\d{8}T\d{6}Z\.sql$")
_DUMP_START = "-- PostgreSQL database dump"
_DUMP_END = "-- PostgreSQL database dump complete"
# Before a copy goes back, every table of the hub's schema goes, newer ones too (a copy from before an
# upgrade lacks them, and its migrations would find them in the way); in the same transaction as the copy.
_EMPTY_SCHEMA = """DO $$ DECLARE name text; BEGIN
  FOR name IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', name);
  END LOOP;
  FOR name IN SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP SEQUENCE IF EXISTS %I CASCADE', name);
  END LOOP;
END $$;"""


def is_postgresql(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def _libpq_environment(database_url: str) -> dict[str, str]:
    """pg_dump's and psql's connection, as libpq's variables: the password never on a command line."""
    url = make_url(database_url)
    env = dict(os.environ)  # PG* variables the hub's own connection (libpq too) also reads, then the URL's
    given = {"PGHOST": url.host, "PGPORT": url.port, "PGUSER": url.username, "PGPASSWORD": url.password,
             "PGDATABASE": url.database}
    # A Unix socket folder or TLS settings given as query parameters (?host=/run/postgresql, ?sslmode=...).
    given.update({f"PG{key.upper()}": value for key, value in url.query.items()
                  if key in ("host", "port", "sslmode", "sslrootcert", "sslcert", "sslkey", "options")})
    env.update({key: str(value) for key, value in given.items() if value not in (None, "")})
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def _run(tool: str, arguments: list[str], database_url: str, **options) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([tool, *arguments], env=_libpq_environment(database_url), text=True,
                              stderr=subprocess.PIPE, check=False, **options)
    except FileNotFoundError:
        raise BackupError(f"{tool} is not installed here; on Debian: apt-get install postgresql-client.") from None


def _is_whole_dump(path: Path) -> bool:
    """pg_dump's first and last lines: a dump cut short (a full disk, a dropped connection) lacks the last."""
    with path.open("rb") as fh:
        start = fh.read(200).decode("utf-8", "replace")
        fh.seek(max(0, path.stat().st_size - 400))  # after it, newer pg_dumps write only psql's \unrestrict
        end = fh.read().decode("utf-8", "replace")
    return _DUMP_START in start and _DUMP_END in end


def back_up_postgresql(database_url: str, folder: Path, keep: int | None, now: datetime) -> Backup:
    """``back_up`` for a hub on PostgreSQL: ``pg_dump`` into ``folder``, checked, then the oldest copies go."""
    if keep is not None and keep < 1:
        raise BackupError("Keep at least one backup.")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _keep_private(folder)
    target = folder / backup_name(now).replace(".db", ".sql")
    partial = folder / f".{target.name}.partial"
    partial.unlink(missing_ok=True)  # left by a night the power went out
    # The copy holds everything the hub knows: only the hub's user may read it.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            # No owners or grants: the copy goes back into whichever role's database restores it.
            done = _run("pg_dump", ["--format=plain", "--no-owner", "--no-privileges"], database_url, stdout=out)
        if done.returncode != 0:
            raise BackupError(f"pg_dump could not copy the database: {done.stderr.strip()}")
        if not _is_whole_dump(partial):
            raise BackupError("pg_dump's copy ended before its last line; nothing was replaced.")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    copies = sorted(path for path in folder.iterdir() if PG_BACKUP_NAME.match(path.name) and path.is_file())
    removed = tuple(copies[:-keep]) if keep is not None else ()
    for old in removed:
        old.unlink()
    return Backup(target, removed)


def restore_postgresql(copy: Path, database_url: str, folder: Path, now: datetime) -> Backup | None:
    """``restore`` for a hub on PostgreSQL: the database as it is now is copied first, then emptied and
    filled from ``copy`` by ``psql`` in one transaction, so a copy that fails halfway changes nothing."""
    if not copy.is_file():
        raise BackupError(f"There is no file {copy}.")
    if not _is_whole_dump(copy):
        raise BackupError(f"{copy} is not a whole PostgreSQL dump (pg_dump's plain SQL).")
    with copy.open(encoding="utf-8", errors="replace") as fh:
        tables = {match.group(1) for line in fh if (match := re.match(r"CREATE TABLE (?:\S+\.)?(\w+) \(", line))}
    if not {"alembic_version", "member"} <= tables:
        raise BackupError(f"{copy} is not a Safe Bench database.")
    try:
        safety = back_up_postgresql(database_url, folder, None, now)
    except BackupError:
        safety = None  # the damaged database is why we restore: go on without a copy of it
    done = _run("psql", ["--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1",
                         "--command", _EMPTY_SCHEMA, "--file", str(copy)], database_url, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BackupError(f"Could not put {copy} back, and nothing was changed: {done.stderr.strip()}")
    return safety
