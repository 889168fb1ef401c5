"""The inbound journal: every packet taken off the radio's line is on disk before the next is read.

The radio hands a packet over once and forgets it (the phone API has no
acknowledgement from the client), while the steward's handheld has already
shown "delivered". So the library's reader thread writes each packet here,
as the raw protobuf, before it reads another byte; the bridge's own thread
then acts on journal entries in order and deletes each one in step with the
hub's transaction. A bridge killed at any moment finds, when it starts
again, every packet it had taken still waiting; the hub's heard-packet
table makes the replay of one already acted on a no-op.

A file of its own (stdlib sqlite3, next to the hub's database) rather than a
table in the hub's database: a hub database held busy by a backup or a long
write must never stop the radio's packets from reaching the disk.

What stewards (and strangers) sent must not outlive its being acted on:
deleted rows are zeroed (``secure_delete``), and the WAL, which keeps a copy
of every page written until it is truncated, is truncated whenever the
bridge has emptied the journal (``checkpoint``) and when it closes.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path

JOURNAL_FILE = "radio-journal.sqlite"  # in the instance folder, next to the hub's database

SCHEMA = """
CREATE TABLE IF NOT EXISTS heard (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    heard_at TEXT NOT NULL,
    packet BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS remembered (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class Journal:
    """Append from the radio's reader thread, take and forget from the bridge's thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by two threads under a lock: each write is a
        # few hundred bytes, and a second connection would only add WAL traffic.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        self._closed = False
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a committed entry survives the process being killed (it is
            # in the WAL, in the page cache); only a power cut may take the
            # last few, the price of not waiting for the SD card on every packet.
            self._db.execute("PRAGMA synchronous=NORMAL")
            # What stewards sent must not linger in freed pages once acted on.
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(SCHEMA)

    def append(self, packet: bytes, heard_at: datetime, read_at: float) -> int:
        """Keep one packet, and when the line was last read (unix time); returns its place in the journal.

        ``read_at`` lets the next bridge tell which stewards the radio heard
        while no bridge was reading (see Bridge._ask_to_resend).
        """
        with self._lock:
            self._db.execute("BEGIN")
            cursor = self._db.execute("INSERT INTO heard (heard_at, packet) VALUES (?, ?)",
                                      (heard_at.isoformat(), packet))
            self._db.execute("INSERT OR REPLACE INTO remembered (key, value) VALUES ('read_at', ?)", (repr(read_at),))
            self._db.execute("COMMIT")
            return int(cursor.lastrowid)

    def waiting(self, limit: int = 50) -> list[tuple[int, datetime, bytes]]:
        """The oldest entries not yet acted on: (seq, heard_at, packet)."""
        with self._lock:
            rows = self._db.execute("SELECT seq, heard_at, packet FROM heard ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, datetime.fromisoformat(at), bytes(packet)) for seq, at, packet in rows]

    def forget(self, seq: int) -> None:
        """The hub has acted on entry ``seq`` (its transaction committed)."""
        with self._lock:
            self._db.execute("DELETE FROM heard WHERE seq = ?", (seq,))

    def remember(self, key: str, value: str) -> None:
        """Keep a small fact about the radio across restarts of the bridge."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO remembered (key, value) VALUES (?, ?)", (key, value))

    def recall(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM remembered WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM heard").fetchone()[0])

    def checkpoint(self) -> bool:
        """Copy the WAL into the journal file and truncate it to nothing; False if that could not be done now."""
        with self._lock:
            if self._closed:
                return False
            busy, _frames, _copied = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # closing the last connection checkpoints and removes the WAL anyway, when it can
            self._db.close()
