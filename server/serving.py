"""The hub's web server: waitress, tuned so that one phone on the open WiFi cannot starve it.

Waitress reads a request whole before a thread sees it, so a slow phone costs
a connection, never a thread. Connections are what is scarce: waitress stops
accepting at ``connection_limit``, and a phone that opens hundreds and feeds
each a byte now and then (a "slowloris") would hold them all, while an idle
timeout alone never fires because every byte counts as activity. So, on top
of waitress's own limits:

- one address holds at most ``WEB_CONNECTIONS_PER_ADDRESS`` connections: the
  next is refused at once (waitress has no per-address cap; hub_setup/ adds
  the same cap in the kernel on the bench WiFi);
- a request must arrive whole within ``WEB_REQUEST_TIMEOUT_S`` of its first
  byte, however busily it trickles in;
- an idle connection closes after ``WEB_IDLE_TIMEOUT_S``.

A crowd must not slow the bench page either: requests a watcher makes
again and again (the live log's stream, asked for twice a second by each
watcher without a slot) wait behind every other request, and never hold the
last thread (a held stream counts); once one has waited ``BACK_SEAT_MAX_S``,
the two kinds take turns, so no watcher starves.

And the journal hears what a host can act on, not every queued request:
waitress warns "Task queue depth is N" each time a request waits for a
thread (thousands a minute under load, on a Pi all into journald). That
says nothing; what does is that requests keep waiting, seconds at a time,
and that is said once a minute at most, plainly, with a count.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection
from typing import Any

from flask import Flask
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger("server.serving")

# How often the server looks for connections to close: idle ones, and
# requests past their deadline. A pass over 500 connections takes well under
# a millisecond; waitress's default of 30 s would let a slow request live
# half a minute past its deadline.
CLEANUP_INTERVAL_S = 2
# Every header of one request together. The hub's cookies are a few hundred
# bytes; waitress's default of 256 KB would let each connection park that much.
MAX_HEADER_BYTES = 32 * 1024
# What waitress reads of a body before the hub sees it. A form is at most
# MAX_CONTENT_LENGTH (64 KB): a bigger one still reaches the hub, which
# answers with its own "too much to send" page; beyond this waitress refuses
# it by itself instead of buffering up to its default of 1 GB to disk.
MAX_BODY_BYTES = 1024 * 1024
# A refused connection is logged at most this often: a flood must not flood the journal.
REFUSAL_LOG_INTERVAL_S = 60
# Callables in app.extensions[SERVER_STOP_HOOKS], called as the server stops:
# the live log's held streams end then, instead of keeping threads waitress
# waits for (and warns about) on the way out.
SERVER_STOP_HOOKS = "safebench.on_server_stop"
# Overload, as a host would notice it: requests wait this long for a free
# thread (a page that should take milliseconds takes seconds) ...
SLOW_WAIT_S = 1.0
# ... again and again for this long (a moment's burst is not worth a line),
# a spell ending once no request has waited that long for SPELL_GAP_S.
SUSTAINED_S = 10.0
SPELL_GAP_S = 5.0
OVERLOAD_LOG_INTERVAL_S = 60
# The endpoints asked for again and again by every watcher, which go behind
# everyone else's requests; one waiting this long goes first all the same.
BACK_SEAT_ENDPOINTS = ("live.events",)
BACK_SEAT_MAX_S = 1.0


class _SaysNothing:
    """Stands in for waitress's queue logger, whose one line is "Task queue depth is N" per waiting request."""

    def warning(self, *args: Any, **kwargs: Any) -> None:
        pass


class OverloadWatch:
    """Says, at most once a minute, that requests keep waiting for a thread: something a host can act on."""

    def __init__(self, threads: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.threads = threads
        self.clock = clock
        self._guard = threading.Lock()
        self.spell_started: float | None = None
        self.last_slow = 0.0
        self.counted_since = 0.0
        self.slow = 0  # requests that waited SLOW_WAIT_S or more since counted_since
        self.longest = 0.0
        self.next_report = 0.0

    def waited(self, seconds: float) -> None:
        """A request waited ``seconds`` in the queue before a thread took it."""
        if seconds < SLOW_WAIT_S:
            return
        now = self.clock()
        with self._guard:
            if self.spell_started is None or now - self.last_slow > SPELL_GAP_S:
                self.spell_started = self.counted_since = now
                self.slow, self.longest = 0, 0.0
            self.last_slow = now
            self.slow += 1
            self.longest = max(self.longest, seconds)
            if now - self.spell_started < SUSTAINED_S or now < self.next_report:
                return
            log.warning(
                "overloaded: for %d s requests have waited over %g s for one of the %d web threads "
                "(%d such requests in the last %d s, the longest %.1f s), so pages are slow for everyone. "
                "If it goes on, look for what asks so much: many live-log watchers, or a device sending "
                "request after request.",
                now - self.spell_started, SLOW_WAIT_S, self.threads, self.slow, now - self.counted_since,
                self.longest)
            self.counted_since, self.slow, self.longest = now, 0, 0.0
            self.next_report = now + OVERLOAD_LOG_INTERVAL_S


class TwoLanes:
    """waitress's task queue (a deque to it) in two lanes: the back seat's requests go after the others'.

    A task is a connection with a request ready (``task.requests[0]``),
    stamped with ``queued_at`` by HubDispatcher. Only ever used under the
    dispatcher's lock. Back seat requests hold at most ``back_threads``
    threads at once, so one is always free for the others: waitress's
    threads wait while the queue is false, and HubDispatcher wakes one when
    a back seat request is done.
    """

    def __init__(self, back_seat_paths: Collection[str], max_wait_s: float = BACK_SEAT_MAX_S,
                 back_threads: int | None = None) -> None:
        self.back_seat_paths = frozenset(back_seat_paths)
        self.max_wait_s = max_wait_s
        self.back_threads = back_threads  # None: no limit
        self.back_running = 0
        self.front: deque = deque()
        self.back: deque = deque()
        self._back_owed = False  # a back seat request that waited too long goes next, then one of the others

    def _in_back_seat(self, task: Any) -> bool:
        requests = getattr(task, "requests", None)
        return bool(requests) and getattr(requests[0], "path", None) in self.back_seat_paths

    def append(self, task: Any) -> None:
        (self.back if self._in_back_seat(task) else self.front).append(task)

    def _back_may_go(self) -> bool:
        return bool(self.back) and (self.back_threads is None or self.back_running < self.back_threads)

    def popleft(self) -> Any:
        if self._back_may_go() and (not self.front or (
                self._back_owed and self.back[0].queued_at <= time.monotonic() - self.max_wait_s)):
            self._back_owed = False
            task = self.back.popleft()
            task.back_seated = True
            self.back_running += 1
            return task
        self._back_owed = bool(self.back)
        return self.front.popleft()

    def __bool__(self) -> bool:
        """Whether a thread has anything it may take now."""
        return bool(self.front) or self._back_may_go()

    def __len__(self) -> int:
        return len(self.front) + len(self.back)


class HubDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool: the watchers' requests in the back seat, and each request's wait noted, not logged."""

    queue_logger = _SaysNothing()

    def __init__(self, overload: OverloadWatch, back_seat_paths: Collection[str] = (),
                 on_stop: Collection[Callable[[], None]] = ()) -> None:
        super().__init__()
        self.overload = overload
        self.on_stop = list(on_stop)
        self.queue = TwoLanes(back_seat_paths)  # type: ignore[assignment]  (what waitress uses of a deque)

    def set_thread_count(self, count: int) -> None:
        if count > 0:  # (0 is waitress stopping: shutdown has lifted the limit)
            # Every thread but one, for the back seat (with one thread, that one).
            self.queue.back_threads = max(1, count - 1)
        super().set_thread_count(count)

    def back_seat_done(self) -> None:
        with self.lock:
            self.queue.back_running -= 1
            self.queue_cv.notify()  # a back seat request may have been waiting for this thread

    def add_task(self, task: Any) -> None:
        task.queued_at = time.monotonic()
        super().add_task(task)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        for stop in self.on_stop:
            stop()
        self.queue.back_threads = None  # whatever waits is cancelled alike
        return super().shutdown(cancel_pending, timeout)


class HubChannel(HTTPChannel):
    """One connection, which remembers when the request now arriving began."""

    request_started: float | None = None
    _timed_request: object = None
    queued_at: float | None = None  # set by HubDispatcher when the request waits for a thread
    back_seated = False  # set by TwoLanes when a thread takes it from the back seat

    def received(self, data: bytes) -> bool:
        result = super().received(data)
        # waitress keeps the request still arriving in self.request, a new
        # parser for each request: a new parser is a new request's first bytes.
        if self.request is None:
            self._timed_request = self.request_started = None
        elif self.request is not self._timed_request:
            self._timed_request, self.request_started = self.request, time.time()
        return result

    def service(self) -> None:
        # A thread took this request from the queue: how long it waited is the measure of overload.
        dispatcher = self.server.task_dispatcher
        if not isinstance(dispatcher, HubDispatcher):
            super().service()
            return
        if self.queued_at is not None:
            dispatcher.overload.waited(time.monotonic() - self.queued_at)
            self.queued_at = None
        back_seated, self.back_seated = self.back_seated, False
        try:
            super().service()
        finally:
            if back_seated:
                dispatcher.back_seat_done()

    def del_channel(self, map: dict | None = None) -> None:  # noqa: A002 (waitress's name)
        if self._fileno is not None:  # closing twice must not count twice
            self.server.release(self.addr)
        super().del_channel(map)


class HubServer(TcpWSGIServer):
    """waitress's TCP server with a cap per address and a deadline per request."""

    channel_class = HubChannel

    def __init__(self, *args: Any, held: Counter, per_address: int, request_timeout: float, **kwargs: Any) -> None:
        # Set before waitress's __init__, which may start accepting at once.
        # ``held`` is shared by every listening socket of one hub.
        self.held = held
        self.per_address = per_address
        self.request_timeout = request_timeout
        self.refused = 0
        self.next_refusal_log = 0.0
        super().__init__(*args, **kwargs)

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
            if accepted is None:
                return
            conn, addr = accepted
        except OSError:
            return  # the phone gave up before we got to it (waitress logs and ignores these too)
        address = _host_of(addr)
        if self.held[address] >= self.per_address:
            self._refuse(conn)
            return
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return
        try:
            self.channel_class(self, conn, addr, self.adj, map=self._map)
        except OSError:  # the connection died between accept and here
            conn.close()
            return
        self.held[address] += 1

    def release(self, addr: Any) -> None:
        address = _host_of(addr)
        self.held[address] -= 1
        if self.held[address] <= 0:
            del self.held[address]

    def _refuse(self, conn: socket.socket) -> None:
        # A reset rather than a polite close: the phone learns at once, and the
        # hub keeps no closing connection around (TIME_WAIT) for it.
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        conn.close()
        self.refused += 1
        now = time.monotonic()
        if now >= self.next_refusal_log:
            # No address in the log: the journal carries no one's whereabouts.
            log.warning("refused %d connection(s) from an address already holding %d (the cap per address)",
                        self.refused, self.per_address)
            self.refused = 0
            self.next_refusal_log = now + REFUSAL_LOG_INTERVAL_S

    def maintenance(self, now: float) -> None:
        """Close idle connections (waitress), and requests still arriving past their deadline."""
        super().maintenance(now)
        cutoff = now - self.request_timeout
        for channel in self.active_channels.values():
            started = getattr(channel, "request_started", None)
            if started is not None and started < cutoff and not channel.requests:
                channel.will_close = True


def _host_of(addr: Any) -> str:
    return addr[0] if isinstance(addr, tuple) else str(addr)


def create_server(app: Flask, host: str, port: int) -> HubServer | MultiSocketServer:
    """The hub's server on ``host:port``, with the limits from ``app.config``; ``.run()`` serves."""
    config = app.config
    adj = Adjustments(
        host=host,
        port=port,
        ident="safebench",
        threads=int(config["WEB_THREADS"]),
        connection_limit=int(config["WEB_CONNECTIONS"]),
        channel_timeout=int(config["WEB_IDLE_TIMEOUT_S"]),
        cleanup_interval=CLEANUP_INTERVAL_S,
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=max(MAX_BODY_BYTES, int(config["MAX_CONTENT_LENGTH"] or 0)),
        # poll() rather than select(), which fails beyond 1,024 open files and
        # costs more the more connections are open.
        asyncore_use_poll=True,
    )
    back_seat = {rule.rule for endpoint in BACK_SEAT_ENDPOINTS if endpoint in app.view_functions
                 for rule in app.url_map.iter_rules(endpoint)}
    dispatcher = HubDispatcher(OverloadWatch(adj.threads), back_seat, app.extensions.get(SERVER_STOP_HOOKS, ()))
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict = {}
    held: Counter = Counter()
    servers = [
        HubServer(app, map=socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo, held=held,
                  per_address=int(config["WEB_CONNECTIONS_PER_ADDRESS"]),
                  request_timeout=float(config["WEB_REQUEST_TIMEOUT_S"]))
        for sockinfo in adj.listen
    ]
    if len(servers) == 1:
        return servers[0]
    # A name such as "localhost" can mean 127.0.0.1 and ::1: one socket each, one loop.
    listening = [(server.effective_host, server.effective_port) for server in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[0].log_info)
