"""The opened keys of everyone logged in: in this process's memory, nowhere else.

A login unwraps the member's own key with their password and opens the
vaults their roles read (server/domain/sealing.py). What it opened is kept
here under a random token; the session cookie carries only the token. So:

- a restart, ``safebench lock``, the "Lock the hub now" button, a duress
  login, an idle spell or the session's absolute lifetime forget the keys,
  and with them the login: a cookie whose token is not here is nobody's;
- the app's secret key alone (on the card) no longer mints a working
  login, since no cookie can name a token that only memory holds.

``safebench lock`` runs in another process: it writes the time into
``instance/locked``, and every request here checks that file's mtime
(one ``stat``, only while someone is logged in).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, current_app

from server.db import HubBusy, run_in_transaction
from server.domain import sealing

if TYPE_CHECKING:
    from nacl.public import PrivateKey
    from sqlalchemy.orm import Session

    from server.domain.people import Member

LOCK_FILE = "locked"
EXTENSION_KEY = "safebench.keyring"


@dataclass
class Unlocked:
    member_id: int
    vaults: dict[str, PrivateKey]
    started: datetime
    last_seen: datetime
    duress: bool = False
    # The member's own key, to open a vault key granted after the login (web/access.py open_vaults).
    member_private: PrivateKey | None = None
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))


class Keyring:
    def __init__(self, lock_file: Path, idle: timedelta, lifetime: timedelta) -> None:
        self.lock_file = lock_file
        self.idle = idle
        self.lifetime = lifetime
        self._entries: dict[str, Unlocked] = {}
        self._guard = threading.Lock()
        self._lock_mark = self._read_lock_mark()
        # Called when the last login ends (a lock, idle, a logout): what was opened with the
        # keys and kept for a while (the live log's texts) goes with them.
        self.on_emptied: list[Callable[[], None]] = []

    def _emptied_if(self, had: bool) -> None:
        if had and not self._entries:
            for forget in self.on_emptied:
                forget()

    def _read_lock_mark(self) -> int:
        try:
            return self.lock_file.stat().st_mtime_ns
        except OSError:
            return 0

    def _check_lock_file(self) -> None:
        mark = self._read_lock_mark()
        if mark != self._lock_mark:
            self._lock_mark = mark
            had = bool(self._entries)
            self._entries.clear()
            self._emptied_if(had)

    def add(self, member_id: int, vaults: dict[str, PrivateKey], now: datetime, *, duress: bool = False,
            member_private: PrivateKey | None = None) -> Unlocked:
        entry = Unlocked(member_id, vaults, now, now, duress, member_private)
        with self._guard:
            self._check_lock_file()
            self._entries[entry.token] = entry
        return entry

    def get(self, token: str | None, now: datetime, *, touch: bool = True) -> Unlocked | None:
        """The live entry for ``token``, or None when it was forgotten, idle too long or too old."""
        if not token:
            return None
        with self._guard:
            if not self._entries:
                return None
            self._check_lock_file()
            self._forget_stale(now)
            entry = self._entries.get(token)
            if entry is not None and touch:
                entry.last_seen = max(entry.last_seen, now)
            return entry

    def _forget_stale(self, now: datetime) -> None:
        had = bool(self._entries)
        for token, entry in list(self._entries.items()):
            if now - entry.last_seen > self.idle or now - entry.started > self.lifetime:
                del self._entries[token]
        self._emptied_if(had)

    def forget(self, token: str | None) -> None:
        with self._guard:
            had = bool(self._entries)
            self._entries.pop(token or "", None)
            self._emptied_if(had)

    def forget_member(self, member_id: int) -> None:
        with self._guard:
            had = bool(self._entries)
            for token, entry in list(self._entries.items()):
                if entry.member_id == member_id:
                    del self._entries[token]
            self._emptied_if(had)

    def forget_all(self) -> int:
        """Every opened key, at once (the lock). Returns how many logins ended."""
        with self._guard:
            count = len(self._entries)
            self._entries.clear()
            self._emptied_if(True)  # a lock: whatever was opened goes, even with nobody logged in now
            return count

    def opened_vaults(self) -> dict[str, PrivateKey]:
        """Every vault key any logged-in reader holds: what ``sealing.sync`` may give on."""
        with self._guard:
            opened: dict[str, PrivateKey] = {}
            for entry in self._entries.values():
                opened.update(entry.vaults)
            return opened

    def count(self) -> int:
        with self._guard:
            return len(self._entries)


def open_new_grants(session: Session, moment: datetime, member: Member, entry: Unlocked, readable: set[str],
                    opened_by_all: dict[str, PrivateKey], attempts: int = 3) -> None:
    """Open the vaults ``entry``'s roles read that its login did not: made since, or given since.

    Only for a login missing one of them: a read of its grants, and a write
    only while such a vault's key still waits on the card for its first
    reader (then this reader is given it). A busy database leaves it to the
    scheduler, within a minute, and the next look.
    """
    if not readable - entry.vaults.keys() or entry.member_private is None:
        return
    entry.vaults.update(sealing.open_grants(session, member, entry.member_private))
    if not (readable - entry.vaults.keys()) & set(sealing.waiting_vaults(session)):
        return
    try:
        run_in_transaction(session, lambda s: sealing.sync(s, moment, opened_by_all), attempts=attempts)
    except HubBusy:
        return
    entry.vaults.update(sealing.open_grants(session, member, entry.member_private))


def lock_from_outside(instance: Path) -> Path:
    """What ``safebench lock`` does: move the lock file's mtime, which every hub process watches."""
    path = instance / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(datetime.now().isoformat(timespec="seconds") + "\n")
    path.chmod(0o600)
    return path


def keyring() -> Keyring:
    return current_app.extensions[EXTENSION_KEY]


def init_app(app: Flask) -> None:
    cfg = app.config
    app.extensions[EXTENSION_KEY] = Keyring(
        Path(cfg["INSTANCE"]) / LOCK_FILE,
        idle=timedelta(minutes=float(cfg["LOCK_IDLE_MINUTES"])),
        lifetime=timedelta(hours=float(cfg["SESSION_MAX_HOURS"])),
    )
