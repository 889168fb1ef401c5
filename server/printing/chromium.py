"""A poster as PDF and PNG, rendered by Debian's headless chromium when it is installed.

Chromium is optional on the Pi: without it the poster's HTML still prints
from any browser. One chromium run writes both files: the PDF through the
print stylesheet (A4, ready to print), the PNG through the screen one, one A4
sheet at 96 px an inch times ``SCALE``, for a preview and for the tests to
decode.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# Debian calls it chromium; Raspberry Pi OS up to Bookworm, chromium-browser.
NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = "sudo apt-get install chromium"
# One A4 sheet in CSS pixels (96 an inch), drawn at twice that for a sharper preview.
A4_PX = (794, 1123)
SCALE = 2
# A Pi Zero 2 W takes a while to start chromium the first time.
TIMEOUT_S = 180


class RenderError(RuntimeError):
    """Chromium ran but did not write the files."""


def find_chromium() -> str | None:
    """The chromium on the PATH, or None."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def render(chromium: str, html: Path, pdf: Path, png: Path) -> None:
    """Print ``html`` to ``pdf`` and take an A4-sized screenshot of it into ``png``."""
    for path in (pdf, png):
        path.unlink(missing_ok=True)  # so a stale file is never taken for a fresh one
    with tempfile.TemporaryDirectory(prefix="safebench-chromium-") as profile:
        argv = [
            chromium,
            "--headless",
            # The page is our own file, with no script and nothing fetched: the
            # sandbox guards against the web, and refuses to start as root or
            # in most containers.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            # A profile of its own: never the host's browser profile, nor a lock on it.
            f"--user-data-dir={profile}",
            f"--window-size={A4_PX[0]},{A4_PX[1]}",
            f"--force-device-scale-factor={SCALE}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            f"--screenshot={png}",
            html.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RenderError(f"chromium did not finish within {TIMEOUT_S} s.") from None
    missing = [path.name for path in (pdf, png) if not path.exists() or path.stat().st_size == 0]
    if missing:
        # Chromium's stderr is mostly noise about D-Bus; its last lines say what went wrong.
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RenderError(f"chromium (exit {done.returncode}) did not write {' and '.join(missing)}:\n{tail}")
