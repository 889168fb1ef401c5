"""The radio opened, and everything it says journaled, before the hub's domain layer has loaded.

Loading SQLAlchemy and the domain layer is most of the bridge's start (half a
second of CPU here, several on a Pi Zero 2 W), and the library's handshake
with a serial radio is mostly waiting: a pause after each write, then the
radio's answer. One after the other, the radio was deaf for both, and a
serial radio drops what it hears while nobody reads its line. So the bridge
process starts the handshake in a thread of its own first and imports the
rest meanwhile; every packet the radio sends in that time goes to the journal
(plain sqlite3) exactly as it does later, and the bridge acts on it once it
is ready. This module imports nothing heavier than meshtastic.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

from radio_bridge.journal import Journal
from radio_bridge.mesh import RadioLink, RadioSpec
from radio_bridge.packets import RadioInfo

log = logging.getLogger("radio_bridge")

WAKE = object()  # on the events queue: the journal has something new


class Listening:
    """The radio's link and the journal its packets go to, shared by the reader thread and the bridge."""

    def __init__(self, journal: Journal, clock: Callable[[], datetime], connect_timeout: float) -> None:
        self.journal = journal
        self.clock = clock
        self.events: queue.Queue = queue.Queue()
        # Packets the journal could not take (its disk failed): the only copy, so the bridge acts on them first.
        self.unjournaled: deque[tuple[bytes, datetime]] = deque()
        self.link = RadioLink(self.events, connect_timeout=connect_timeout, on_packet=self.take_packet)
        self._opening: threading.Thread | None = None
        self._opened: tuple[str | None, RadioInfo | Exception] | None = None

    def take_packet(self, raw: bytes) -> None:
        """On the library's reader thread: the packet is on disk before the next one is read."""
        heard_at = self.clock()
        try:
            self.journal.append(raw, heard_at, time.time())
        except Exception:
            log.exception("could not write a packet to the journal; holding it in memory")
            self.unjournaled.append((raw, heard_at))
        self.events.put(WAKE)

    def open_soon(self, spec: RadioSpec, device_path: str | None = None) -> None:
        """Begin opening the radio in a thread; the bridge's first ``open`` takes the outcome."""
        read_at = self.journal.recall("read_at")  # before opening: the handshake's packets move it on

        def opening() -> None:
            try:
                outcome: RadioInfo | Exception = self.link.open(spec, device_path=device_path)
            except Exception as error:  # noqa: BLE001  (RadioUnavailable and the like: raised again in the bridge's thread)
                outcome = error
            self._opened = (read_at, outcome)

        self._opening = threading.Thread(target=opening, name="radio opening", daemon=True)
        self._opening.start()

    @property
    def opened_early(self) -> bool:
        """An opening ``open_soon`` began waits for the bridge's ``open`` (open or not yet, the link is not its own)."""
        return self._opening is not None

    def open(self, spec: RadioSpec, device_path: str | None = None) -> tuple[str | None, RadioInfo]:
        """Open the radio, or finish the opening ``open_soon`` began.

        Returns when the line was last read before (unix time, as the journal
        keeps it; None if never) and the radio's own facts. Raises
        RadioUnavailable as RadioLink.open does.
        """
        opening, self._opening = self._opening, None
        if opening is None:
            read_at = self.journal.recall("read_at")
            return read_at, self.link.open(spec, device_path=device_path)
        opening.join()
        read_at, outcome = self._opened
        self._opened = None
        if isinstance(outcome, Exception):
            raise outcome
        return read_at, outcome

    def close(self) -> None:
        """Let go of the radio (once an opening under way has finished) and of the journal."""
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.join()  # else it could open the radio after this
        self.link.close()
        self.journal.close()
