"""Database plumbing shared by the web app, the worker and the bridge."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
T = TypeVar("T")


class HubBusy(Exception):
    """The database stayed locked through every retry; nothing was saved."""


def configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL so readers never wait for the writer, foreign keys on, a busy timeout, and secure delete.

    ``synchronous`` stays at SQLite's default (FULL): a Pi loses power
    without warning, and a row the hub has acknowledged must survive that.
    ``secure_delete`` zeroes what a purge or an update takes away instead of
    leaving it in free space, where anyone holding the card could read it.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection, _record):  # noqa: ANN001  (DB-API objects)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()


# The writers' lock on PostgreSQL (begin_writing): one transaction-level advisory lock for the whole
# database, as SQLite has one write lock. Any fixed number does; this one spells "SafeBnch".
WRITERS_LOCK = 0x53616665426E6368
_TAKE_WRITERS_LOCK = text(f"SELECT pg_advisory_xact_lock({WRITERS_LOCK})")


def engine_options(url: str, busy_timeout_ms: int) -> dict:
    """The driver's options: how long a connection waits for a lock before the caller is told it is busy."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": busy_timeout_ms / 1000}}
    if url.startswith("postgresql"):
        # lock_timeout is PostgreSQL's busy timeout (the writers' lock included); a connection
        # the server dropped (a restart) is noticed before a request uses it.
        return {"connect_args": {"options": f"-c lock_timeout={int(busy_timeout_ms)}"}, "pool_pre_ping": True}
    return {}


def make_engine(url: str, busy_timeout_ms: int) -> Engine:
    """An engine for a process without Flask (the radio bridge), set up as the web app's is."""
    # An error's message never carries the values of its statement: they are what people wrote.
    engine = create_engine(url, hide_parameters=True, **engine_options(url, busy_timeout_ms))
    configure_sqlite(engine, busy_timeout_ms)
    return engine


def checkpoint(engine: Engine) -> bool:
    """Copy the WAL into the database and truncate it to nothing; False if a reader or writer was in the way.

    Until then the WAL keeps old copies of changed pages, what a purge took
    away among them, even after SQLite has reused the file from its start.
    Run outside any transaction; a busy database is truncated at the next try.
    """
    if engine.dialect.name != "sqlite":
        return True  # nothing of this kind to truncate
    try:
        with engine.connect() as connection:
            busy, _frames, _copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    except OperationalError as error:
        if not is_lock_error(error):
            raise
        return False
    return not busy


# PostgreSQL's lock_not_available (lock_timeout ran out), deadlock_detected and serialization_failure:
# each means "another writer was in the way; nothing was saved; try again".
_POSTGRESQL_LOCK_STATES = frozenset({"55P03", "40P01", "40001"})


def is_lock_error(error: OperationalError) -> bool:
    if getattr(error.orig, "sqlstate", None) in _POSTGRESQL_LOCK_STATES:
        return True
    text = str(error.orig).lower()
    return "locked" in text or "busy" in text


def begin_writing(session: Session) -> None:
    """On SQLite, take the write lock before ``work`` reads anything, trying often for it.

    The driver starts a transaction only at the first INSERT or UPDATE, so
    what ``work`` read before that (the next free case code, say) may be
    stale by the time it writes: two arrest reports sent together both got
    case C11 (tests/test_load.py). ``BEGIN IMMEDIATE`` makes writers take
    turns from their first read.

    While the lock is taken, SQLite's own busy handler sleeps longer and
    longer, up to 100 ms between tries, and a writer in a tight loop (the
    radio bridge working through a burst of check-ins, one transaction
    each) takes it back in the instant between two of those tries: a
    neighbour's post waited up to 8 s. So the busy timeout is spent here
    instead, trying every 2 ms at most, and the lock goes to whoever asks.
    Not needed if the session is already writing.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # Rows are locked one by one there, and at READ COMMITTED each statement reads what is committed
        # when it starts: so one advisory lock for all writers, taken before ``work`` reads, keeps the
        # same guarantee (tests/test_postgresql.py). Released by the commit or rollback; waiting
        # writers queue in order, bounded by lock_timeout. Taking it twice in one transaction is free.
        connection.execute(_TAKE_WRITERS_LOCK)
        return
    if connection.dialect.name != "sqlite" or connection.connection.dbapi_connection.in_transaction:
        return
    patience_ms = int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
    connection.exec_driver_sql("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + patience_ms / 1000
        pause = 0.0005
        while True:
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as error:
                if not is_lock_error(error) or time.monotonic() >= deadline:
                    raise  # run_in_transaction rolls back and tries again, then says HubBusy
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {patience_ms}")


def run_in_transaction(session: Session, work: Callable[[Session], T], attempts: int = 3, pause: float = 0.2) -> T:
    """Run ``work`` and commit; on a lock, roll back and run it again.

    ``work`` must be safe to repeat: it reads what it needs inside the
    transaction, which holds the write lock from its start (``begin_writing``).
    After the last attempt the caller gets ``HubBusy`` and can tell the person
    nothing was saved.
    """
    for attempt in range(1, attempts + 1):
        try:
            begin_writing(session)
            result = work(session)
            session.commit()
            return result
        except OperationalError as error:
            session.rollback()
            if not is_lock_error(error):
                raise
            log.warning("database locked (attempt %d of %d)", attempt, attempts)
            if attempt < attempts:
                time.sleep(pause * attempt)
        except BaseException:
            session.rollback()
            raise
    raise HubBusy("The hub's database is busy; nothing was saved.")
