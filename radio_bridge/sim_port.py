"""The plumbing under the simulated radio: a pty behind a stable symlink, and delayed jobs.

One ``PtyPort`` is one plugged-in life of the radio. Closing it hangs up the
pty under the client (the library then publishes ``connection.lost``) and
removes the symlink, as a USB unplug removes ``/dev/serial/by-id/...``;
a new ``PtyPort`` re-points the same symlink at a fresh pty.
"""

from __future__ import annotations

import errno
import fcntl
import heapq
import itertools
import logging
import os
import select
import socket
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 2.0


class PtyPort:
    """A pty pair in raw mode, a symlink to its follower, and a thread reading the host's bytes."""

    def __init__(self, link: Path, on_bytes: Callable[[bytes], None]) -> None:
        self.leader, self.follower = os.openpty()
        # We keep our own follower fd open for the port's whole life, so the leader
        # never reads EIO between clients, and raw mode survives a client's close.
        tty.setraw(self.follower)
        os.set_blocking(self.leader, False)
        self.device = os.ttyname(self.follower)
        self.link = link
        self.closing = threading.Event()
        self.written = 0  # bytes put on the line towards the client, for the delivery bookkeeping
        self._on_bytes = on_bytes
        tmp = link.with_name(link.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(self.device, tmp)
        os.replace(tmp, link)  # atomic: the path never points nowhere while plugged
        self._reader = threading.Thread(target=self._read_loop, name="sim-radio-reader", daemon=True)
        self._reader.start()

    def close(self) -> None:
        self.closing.set()
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=2)
        for fd in (self.leader, self.follower):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            if os.readlink(self.link) == self.device:
                self.link.unlink()
        except OSError:
            pass

    def write(self, data: bytes) -> None:
        """Write all of ``data``; give up (and log) only if the host reads nothing before the first byte.

        A frame half-written and then abandoned would swallow the next frame on
        the host's side, so once a write has started it is finished.
        """
        view = memoryview(data)
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        while view and not (self.closing.is_set() and time.monotonic() > deadline):
            try:
                done = os.write(self.leader, view)
                self.written += done
                view = view[done:]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                logger.warning("simulated radio: write failed: %s", exc)
                return
            if time.monotonic() > deadline and len(view) == len(data):
                logger.warning("simulated radio: the host is not reading; %d bytes dropped", len(data))
                return
            select.select([], [self.leader], [], 0.1)

    def unread(self) -> int:
        """Bytes on the line that no client has read yet (the follower's input queue)."""
        count = fcntl.ioctl(self.follower, termios.FIONREAD, struct.pack("i", 0))
        return struct.unpack("i", count)[0]

    def _read_loop(self) -> None:
        while not self.closing.is_set():
            try:
                ready, _, _ = select.select([self.leader], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self.leader, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if self.closing.is_set():
                    return
                if exc.errno != errno.EIO:
                    logger.warning("simulated radio: read failed: %s", exc)
                time.sleep(0.05)
                continue
            try:
                self._on_bytes(data)
            except Exception:
                logger.exception("simulated radio: failed to handle bytes from the host")


class TcpRelay:
    """The simulated radio on a TCP port, as a WiFi radio (or meshtasticd) offers its API on 4403.

    The firmware speaks the same framed stream over TCP as over USB, so each
    client connection is joined to the simulated radio's serial port: when
    the radio is unplugged the connection drops, and a new one finds it again
    once it is plugged back in. Listens on loopback only.
    """

    def __init__(self, device_path: Path, port: int = 0) -> None:
        self.device_path = device_path
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="sim-radio-tcp", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.closing.set()
        self._thread.join(timeout=3)
        self.server.close()

    def _accept_loop(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._relay(client)  # one client at a time, like the firmware's TCP API

    def _relay(self, client: socket.socket) -> None:
        try:
            fd = os.open(self.device_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            client.close()  # no radio behind the port: the connection drops at once
            return
        try:
            tty.setraw(fd)
            client.settimeout(WRITE_TIMEOUT_S)
            while not self.closing.is_set():
                ready, _, _ = select.select([client, fd], [], [], 0.1)
                try:
                    if client in ready:
                        data = client.recv(4096)
                        if not data:
                            return
                        os.write(fd, data)
                    if fd in ready:
                        data = os.read(fd, 4096)
                        if not data:
                            return
                        client.sendall(data)
                except BlockingIOError:
                    continue
        except OSError as exc:  # the radio was unplugged (EIO) or the client went away
            logger.info("simulated radio: TCP client dropped (%s)", exc)
        finally:
            os.close(fd)
            client.close()


class DelayedJobs:
    """One thread running callables after a delay (ACKs arrive a little after the send)."""

    def __init__(self) -> None:
        self._jobs: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="sim-radio-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._running = False
            self._jobs.clear()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def later(self, delay: float, job: Callable[[], None]) -> None:
        with self._cv:
            heapq.heappush(self._jobs, (time.monotonic() + delay, next(self._seq), job))
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._running and (not self._jobs or self._jobs[0][0] > time.monotonic()):
                    self._cv.wait(self._jobs[0][0] - time.monotonic() if self._jobs else None)
                if not self._running:
                    return
                _, _, job = heapq.heappop(self._jobs)
            try:
                job()
            except Exception:
                logger.exception("simulated radio: delayed job failed")
