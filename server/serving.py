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
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections import Counter
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


class HubChannel(HTTPChannel):
    """One connection, which remembers when the request now arriving began."""

    request_started: float | None = None
    _timed_request: object = None

    def received(self, data: bytes) -> bool:
        result = super().received(data)
        # waitress keeps the request still arriving in self.request, a new
        # parser for each request: a new parser is a new request's first bytes.
        if self.request is None:
            self._timed_request = self.request_started = None
        elif self.request is not self._timed_request:
            self._timed_request, self.request_started = self.request, time.time()
        return result

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
    dispatcher = ThreadedTaskDispatcher()
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
