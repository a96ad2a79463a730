"""Tornado's HTTPServer with an accept loop that survives running out of file descriptors.

Tornado's accept handler (``tornado.netutil.add_accept_handler``) skips ECONNABORTED but lets
every other ``accept()`` error escape to the event loop, which logs a traceback. Out of file
descriptors (EMFILE) the waiting connection stays in the backlog, so the listening socket stays
readable and the loop calls the handler again at once: the server spun at 100% CPU, logging the
same error hundreds of thousands of times. Here such an error stops polling the socket for
``RETRY_AFTER`` seconds, and the failures are logged at most once per ``REPORT_EVERY`` seconds,
with how many there were.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from tornado.ioloop import IOLoop

from .tornado_internals import HTTPServerHooks
from .wire import HEAD_AT_MOST, WireSocket, WireStream

__all__ = ["Listener"]

logger = logging.getLogger("ws_notebook")

ACCEPT_BATCH = 128  # connections accepted per wake-up at most, as Tornado does: others get a turn
RETRY_AFTER = 0.1  # seconds the socket is not polled after an error that would repeat at once
REPORT_EVERY = 1.0  # seconds: at most one log line this often, counting the failed accepts
WAIT_FOR_MORE = 0.02  # seconds between looks at a request head that came in parts

# The peer gave up before accept() returned its connection: take the next one, nothing to report.
_PEER_GONE = frozenset({errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO})


class Router(Protocol):
    def wants_routing(self) -> bool: ...
    def divert(self, head: bytes, sock: socket.socket, address: Any) -> bool: ...


class Listener(HTTPServerHooks):
    """Tornado's HTTPServer, accepting connections with :class:`_Acceptor`.

    With a ``router`` that wants it (some endpoint runs on a thread of its own), a new
    connection's request head is looked at first (peeked: Tornado still reads it), and the
    router may take the connection elsewhere.
    """

    router: Router | None = None

    def handle_connection(self, connection: socket.socket, address: Any) -> None:
        if self.router is None or self.ssl_options is not None or not self.router.wants_routing():
            self.handle_here(connection, address)
        else:
            _HeadWait(connection, address, self)

    def handle_here(self, connection: socket.socket, address: Any) -> None:
        """Serve the connection on this loop, as Tornado does, with a :class:`WireStream` for a
        :class:`WireSocket` (Tornado's ``TLS`` streams are its own)."""
        if not isinstance(connection, WireSocket):
            super().handle_connection(connection, address)
            return
        stream = WireStream(
            connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
        )
        self.handle_stream(stream, address)

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            wire = self.ssl_options is None  # TLS streams wrap the socket themselves
            self.add_listening(sock, _Acceptor(sock, self.handle_connection, wire).remove)


class _HeadWait:
    """Waits (on the loop, without reading) for a request head, then routes the connection.

    A connection that sends no complete head within the handshake timeout, or closes, or
    sends more than a head may hold, is left to Tornado, which answers it as it would.
    """

    def __init__(self, sock: socket.socket, address: Any, listener: Listener) -> None:
        self.sock, self.address, self.listener = sock, address, listener
        self.loop = IOLoop.current()
        timeout = listener.conn_params.header_timeout or 10.0
        self.deadline = self.loop.call_later(timeout, self._route, b"")
        self.retry: object | None = None  # the timeout that looks again at a partial head
        self.loop.add_handler(sock, self._readable, IOLoop.READ)

    def _readable(self, sock: socket.socket, events: int) -> None:
        try:
            data = sock.recv(HEAD_AT_MOST, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.loop.remove_handler(sock)
        if data and b"\r\n\r\n" not in data and len(data) < HEAD_AT_MOST:
            # Part of a head: look again shortly (the bytes stay, so polling now would spin).
            self.retry = self.loop.call_later(WAIT_FOR_MORE, self._watch)
            return
        self._route(data)

    def _watch(self) -> None:
        self.retry = None
        self.loop.add_handler(self.sock, self._readable, IOLoop.READ)

    def _route(self, head: bytes) -> None:
        if self.retry is not None:
            self.loop.remove_timeout(self.retry)
        self.loop.remove_handler(self.sock)
        self.loop.remove_timeout(self.deadline)
        router = self.listener.router
        if not (head and router is not None and router.divert(head, self.sock, self.address)):
            self.listener.handle_here(self.sock, self.address)


class _Acceptor:
    """Accepts connections on one listening socket and hands each to ``callback``.

    Errors other than a peer that gave up (out of file descriptors, buffers or memory) leave the
    connection waiting, so trying again at once would fail again: the socket is not polled for
    ``RETRY_AFTER`` seconds. Meanwhile the server keeps serving its open connections, and the
    handshake timeout closes idle ones, which frees descriptors.
    """

    def __init__(
        self, sock: socket.socket, callback: Callable[[socket.socket, Any], None], wire: bool
    ):
        self.sock = sock
        self.wire = wire  # hand connections over as WireSockets, for the wire keeper
        # What socket.accept() reads from the listening socket for every connection (three
        # enum conversions), read once.
        self.kind = (sock.family, sock.type, sock.proto)
        self.callback = callback
        self.loop = IOLoop.current()
        self.removed = False
        self.retry: object | None = None  # the timeout that polls again, while paused
        self.failures = 0  # failed accepts not logged yet
        self.error = ""  # what the last of them said
        self.loop.add_handler(sock, self._accept, IOLoop.READ)

    def _accept(self, sock: socket.socket, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.removed:  # the callback stopped the server
                return
            connection: socket.socket
            try:
                if self.wire:  # as socket.accept() does, but made a WireSocket at once
                    fd, address = sock._accept()  # type: ignore[attr-defined]
                    connection = WireSocket(*self.kind, fileno=fd)
                    connection.setblocking(False)
                else:
                    connection, address = sock.accept()
            except BlockingIOError:
                return  # every waiting connection is accepted
            except OSError as error:
                if error.errno in _PEER_GONE:
                    continue
                self._pause(error)
                return
            self.callback(connection, address)

    def _pause(self, error: OSError) -> None:
        self.loop.remove_handler(self.sock)
        self.retry = self.loop.call_later(RETRY_AFTER, self._resume)
        if self.failures == 0:
            self.loop.call_later(REPORT_EVERY, self._report)
        self.failures += 1
        self.error = error.strerror or str(error)

    def _resume(self) -> None:
        self.retry = None
        self.loop.add_handler(self.sock, self._accept, IOLoop.READ)

    def _report(self) -> None:
        times = f"{self.failures:,} time" + ("s" if self.failures > 1 else "")
        logger.error(
            "cannot accept connections: %s (%s in the last %.1f s); the server keeps serving "
            "its open connections and tries again every %.1f s",
            self.error,
            times,
            REPORT_EVERY,
            RETRY_AFTER,
        )
        self.failures = 0

    def remove(self) -> None:
        """Stop accepting, as ``TCPServer.stop`` asks before it closes the socket."""
        self.removed = True
        if self.retry is not None:
            self.loop.remove_timeout(self.retry)
        else:
            self.loop.remove_handler(self.sock)
