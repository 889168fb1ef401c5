"""Every file the hub writes is its own user's alone: files 0600, folders 0700.

The instance folder holds the database and its WAL, the radio journal, the
secret key, settings and (by default) the backups: whoever can read them
reads everything the hub knows. Each process sets a umask of 077 where it
starts (server/entry.py, radio_bridge/main.py, the supervisor), so every new
file is private whichever part writes it, SQLite's -wal and -shm included;
``keep_private`` also takes group and other access off what an older
version, an install script or a copy made by hand left readable.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

UMASK = 0o077


def keep_private(instance: Path | None) -> list[Path]:
    """Set the umask, then take group and other access off everything in ``instance``; returns what changed.

    Symbolic links are left alone (the simulated radio's points at a pty), and
    so is anything another user owns: it is named on stderr, for the host to fix.
    """
    os.umask(UMASK)
    if instance is None or not instance.is_dir():
        return []
    changed = []
    for folder, _folders, files in os.walk(instance):
        for path in (Path(folder), *(Path(folder) / name for name in files)):
            try:
                info = path.lstat()
                if stat.S_ISLNK(info.st_mode) or not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                    continue
                mode = stat.S_IMODE(info.st_mode)
                if mode & 0o077:
                    path.chmod(mode & ~0o077)
                    changed.append(path)
            except FileNotFoundError:
                continue  # removed meanwhile (a -wal at a checkpoint, a partial backup)
            except PermissionError:
                print(f"Warning: {path} is readable by others, and belongs to another user: "
                      f"only its owner can make it private (chmod go= {path}).", file=sys.stderr)
    return changed
