"""Outbound connections: handlers driving a WebSocket this process opens to another server.

codbex's ``createWebsocket(uri, handler)``, in Python::

    feed = ws_notebook.connect("wss://example.org/feed", {"on_message": on_message},
                               name="feed", reconnect=True)
    feed.send({"subscribe": "ticks"})   # to the current connection
    feed.state                          # "open", "reconnecting in 4 s, attempt 3", ...
    feed.close()                        # for good: no reconnecting

``connect(uri, handlers, *, name=None, headers=None, subprotocols=None, reconnect=None,
cafile=None, ping_interval=20, ping_timeout=20, open_timeout=10, max_message_size=2**20,
proxy=True, description="", log_capacity=None)`` returns an :class:`OutboundConnection`;
``create_websocket`` is the same function. It must be called on a running loop (a notebook
cell's, or ``asyncio.run``'s): the connection lives on it. ``handlers`` is anything
``Handlers.from_object`` takes (a mapping or module of ``on_open``/``on_message``/``on_error``/
``on_close`` or codbex's names, or ``Handlers``, JavaScript handlers included); they are called
as for a served endpoint, with an :class:`OutboundClient` as the client, and what ``on_message``
returns is sent back on the same connection. In a notebook, ``%%websocket NAME --connect URI``
defines the handlers in a cell (``--js``: JavaScript, whose handlers get the client's id as
``from``, so ``websockets.getClient(from).send(...)`` answers on the connection).

An outbound connection is an endpoint of the server's registry like a served one, whose
``outbound`` is its :class:`OutboundConnection` (``endpoint.direction == "out"``), so
``%websocket list``, ``clients()``, ``client(id)``, the event log and the live panel show it,
and its counters count its messages. Connecting again under the same name swaps the handlers
(and options) in place without dropping the connection; another URI closes the connection and
opens one to the new URI. ``stop()``, ``reset()``, unmounting and the kernel's shutdown close it
with 1001, and it does not reconnect; ``start()`` after ``stop()`` opens it again. A descriptor
with a ``uri`` in a watched folder connects when added, connects anew when its ``uri`` changes
and is closed with 1001 when removed.

Each connection, the first and every reconnection, is a new client (a new id). A failure to
connect is an ``error`` event of the log, a one-line message (the ``ws_notebook`` logger: in a
notebook, under the defining cell) and an ``on_error(error, client)`` call with a
:class:`ConnectError` saying what went wrong: the DNS name that does not resolve, the refused
address, the certificate problem, or the status and reason of a rejected handshake.

``reconnect=True`` (or a :class:`Reconnect`) reconnects after the connection drops or the server
closes it, and after failed attempts, waiting with exponential backoff and jitter; a rejected
handshake (4xx), a certificate problem and a bad URI are not retried, as trying again cannot
help.

The client is the ``websockets`` library's (``websockets.asyncio.client``), rather than
Tornado's ``websocket_connect``, which the server is built on: Tornado's client cannot go
through a proxy (its simple HTTP client refuses ``proxy_host``), while ``websockets`` takes
``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment (``proxy=True``) or a proxy URL;
its errors carry the rejected response (status, reason, body) and the certificate verification
message; both send keepalive pings and verify ``wss://`` against the system's CA bundle or a
given ``cafile``.

A cell that blocks the kernel (``time.sleep(60)``, a long loop) does not drop the connection: its
socket is read and written on a thread of its own, ``ws_notebook outbound`` (one asyncio loop for
every outbound connection, started with the first, stopped once none is left), which answers the
server's pings, sends the keepalive pings and writes what handlers send, while the handlers, the
counters and the log stay on the kernel's loop. Each event (open, message, close, a failure to
connect) is handed over to the kernel's loop in order, so handlers run on its main thread, in
order, once each, as before: messages that come in during a block wait for it, up to
``HELD_BYTES`` a connection; past that the thread stops reading (the server's data waits in the
socket buffers, TCP flow control) and the log says so. The price is a thread hop per message each
way (tens of microseconds), which outbound feeds can afford: they are not the hot path that
served endpoints are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import itertools
import logging
import math
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tornado.ioloop import IOLoop

from . import api
from .codes import CloseCode
from .connection import ConnectionClosed, Frame, encode
from .descriptor import Descriptor
from .endpoint import Endpoint
from .errors import Error
from .output import running

__all__ = [
    "ConnectError",
    "OutboundClient",
    "OutboundConnection",
    "Reconnect",
    "connect",
    "connect_endpoint",
    "create_websocket",
]

logger = logging.getLogger("ws_notebook")

_ids = itertools.count(1)

# Bytes of received messages a connection holds for a busy kernel before it stops reading, as
# the wire keeper holds a served connection's (ws_notebook.wire).
HELD_BYTES = 16 * 2**20
# A message handled this many seconds after it came in waited for the kernel: the log says so.
LATE = 0.4


class ConnectError(Error, ConnectionError):
    """Connecting failed; the message is one line saying why (the library's error is the cause)."""


@dataclasses.dataclass(frozen=True)
class Reconnect:
    """When to reconnect: after ``initial`` seconds, then ``factor`` times longer each attempt,
    at most ``maximum``; each wait is shortened at random by up to ``jitter`` of it, so that
    many clients of one server do not all come back at once. ``attempts``: give up after that
    many failed attempts in a row (None: never)."""

    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.5
    attempts: int | None = None

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"reconnect initial: {self.initial!r} must be a positive number")
        if not self.maximum >= self.initial:
            raise ValueError(f"reconnect maximum: {self.maximum!r} is less than initial")
        if not self.factor >= 1:
            raise ValueError(f"reconnect factor: {self.factor!r} must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"reconnect jitter: {self.jitter!r} must be between 0 and 1")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"reconnect attempts: {self.attempts!r} must be at least 1 or None")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (1 for the first)."""
        full = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        return full * (1 - self.jitter * random.random())


@dataclasses.dataclass(frozen=True)
class _Options:
    """How to connect: what ``connect`` was given, checked."""

    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    reconnect: Reconnect | None = None
    cafile: str | None = None
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float | None = 10.0
    max_message_size: int | None = 2**20
    proxy: str | bool | None = True


def _check_uri(uri: object) -> str:
    if not isinstance(uri, str):
        raise TypeError(f"uri: {uri!r} is not a string")
    parts = urlsplit(uri)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"uri: {uri!r} is not a ws:// or wss:// URI with a host")
    try:
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError as error:
        raise ValueError(f"uri: {uri!r}: {error}") from None
    return uri


def shown(uri: str) -> str:
    """The URI without its query and user info, which may carry credentials: for logs, tables."""
    parts = urlsplit(uri)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def default_name(uri: str) -> str:
    """An endpoint name made of the URI's host, port and path: ``ws://h:8765/feed`` -> ``h-8765-feed``."""
    parts = urlsplit(uri)
    text = f"{parts.hostname}-{parts.port or ''}-{parts.path}"
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-")[:128] or "outbound"


def _options(
    uri: str,
    *,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    subprotocols: Iterable[str] | None,
    reconnect: bool | Reconnect | None,
    cafile: str | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    open_timeout: float | None,
    max_message_size: int | None,
    proxy: str | bool | None,
) -> _Options:
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    for pair in pairs:
        if not (len(pair) == 2 and all(isinstance(part, str) for part in pair)):
            raise TypeError(f"headers: {pair!r} is not a (name, value) pair of strings")
    if isinstance(subprotocols, str):
        subprotocols = [subprotocols]
    if reconnect is True:
        reconnect = Reconnect()
    elif reconnect is False:
        reconnect = None
    elif reconnect is not None and not isinstance(reconnect, Reconnect):
        raise TypeError(f"reconnect: {reconnect!r} is not True, False, None or a Reconnect")
    if cafile is not None:
        if urlsplit(uri).scheme != "wss":
            raise ValueError(f"cafile: given for {shown(uri)}, which is not wss:// (no TLS)")
        try:
            ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"cafile: {cafile}: {error.strerror or error}") from None
    for field, value in (
        ("ping_interval", ping_interval),
        ("ping_timeout", ping_timeout),
        ("open_timeout", open_timeout),
        ("max_message_size", max_message_size),
    ):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{field}: {value!r} must be a positive number, or None for none")
    return _Options(
        headers=tuple(pairs),
        subprotocols=tuple(subprotocols or ()),
        reconnect=reconnect,
        cafile=cafile,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        open_timeout=open_timeout,
        max_message_size=max_message_size,
        proxy=proxy,
    )


def _failure(error: BaseException, uri: str, options: _Options) -> tuple[str, bool]:
    """One line saying why connecting failed, and whether trying again cannot help."""
    from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus

    parts = urlsplit(uri)
    address = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'wss' else 80)}"
    if isinstance(error, InvalidStatus):
        response = error.response
        body = bytes(response.body or b"").decode("utf-8", "replace").strip().splitlines()
        said = f": {body[0][:200]}" if body else ""
        status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        return f"handshake rejected by {address}: {status}{said}", response.status_code < 500
    if isinstance(error, ssl.SSLCertVerificationError):
        hint = "" if options.cafile else "; pass cafile= to trust a private CA"
        problem = error.verify_message or error.reason or str(error)
        return f"TLS failed: certificate problem with {address}: {problem}{hint}", True
    if isinstance(error, ssl.SSLError):
        return f"TLS failed with {address}: {error.reason or error}", True
    if isinstance(error, socket.gaierror):
        return f"DNS failure: cannot resolve {parts.hostname!r} ({error.strerror})", False
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused by {address} (is the server running?)", False
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"no handshake with {address} within {options.open_timeout:g} s", False
    if isinstance(error, InvalidMessage):
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        return f"{address} is not a WebSocket server: {error}{cause}", False
    if isinstance(error, InvalidHandshake):
        return f"handshake with {address} failed: {error}", True
    if isinstance(error, OSError):
        return f"cannot connect to {address}: {error.strerror or error}", False
    return f"cannot connect to {address}: {type(error).__name__}: {error}", True


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> bool:
    """Hand ``callback`` to ``loop`` from any thread; False if the loop is closed."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True


class _IOThread:
    """The ``ws_notebook outbound`` thread: one asyncio loop for the sockets of every outbound
    connection, so they are read and written while a cell blocks the kernel's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.users = 0
        self.thread = threading.Thread(target=self._run, name="ws_notebook outbound", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Left only by connections whose kernel loop went away: a second to close, then out.
            left = asyncio.all_tasks(loop)
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=1.0))
                for task in left:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())  # DNS lookups' threads
        finally:
            loop.close()


_io: _IOThread | None = None
_io_lock = threading.Lock()


def _acquire() -> _IOThread:
    """The I/O thread, started if none runs, for one more connection."""
    global _io
    with _io_lock:
        if _io is None:
            _io = _IOThread()
        _io.users += 1
        return _io


def _release(io: _IOThread) -> None:
    """One connection less; the last one stops the thread (it ends once its loop is done)."""
    global _io
    with _io_lock:
        io.users -= 1
        if io.users > 0:
            return
        if _io is io:
            _io = None
    _post(io.loop, io.loop.stop)


class _Session:
    """One connection attempt's socket, on the I/O thread: connect, read, write, close.

    What happens is put in ``inbox`` (an ``asyncio.Queue`` of the kernel's loop), in order:
    ``("open", websocket)`` or ``("failed", error)``; then ``("message", message, arrived)``
    for each message, ``("held", bytes)`` when it stops reading, and ``("closed",)`` once the
    connection is closed. The kernel calls ``handled`` for each message it is done with, so
    that a session holding ``HELD_BYTES`` reads again.
    """

    def __init__(
        self, io: _IOThread, inbox: asyncio.Queue, uri: str, options: dict[str, Any]
    ) -> None:
        self.io = io
        self.websocket: Any = None  # a websockets ClientConnection, once open
        self._inbox = inbox
        self._kernel = asyncio.get_running_loop()
        self._uri = uri
        self._options = options
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()
        self._held = 0  # bytes handed to the kernel's loop and not handled yet
        self._paused = False
        self._draining = False  # closing: read on whatever is held, to see the close frame
        self._resume = asyncio.Event()
        _post(io.loop, self._start)

    def _start(self) -> None:
        if not self._draining:  # else closed before it started
            self._task = self.io.loop.create_task(self._run())

    def _tell(self, *event: Any) -> None:
        _post(self._kernel, self._inbox.put_nowait, event)

    async def _run(self) -> None:
        from websockets.asyncio.client import connect as open_websocket
        from websockets.exceptions import ConnectionClosed as Closed

        try:
            websocket = await open_websocket(self._uri, **self._options)
        except Exception as error:
            self._tell("failed", error)
            return
        self.websocket = websocket
        self._tell("open", websocket)
        try:
            async for message in websocket:
                self._tell("message", message, time.time())
                if self._hold(len(message)):
                    self._tell("held", self._held)
                    await self._resume.wait()
        except Closed:
            pass  # the close event says how it ended
        self._tell("closed")

    def _hold(self, size: int) -> bool:
        """Count a message handed to the kernel; True: stop reading until it catches up."""
        with self._lock:
            self._held += size
            if self._held <= HELD_BYTES or self._draining:
                return False
            self._paused = True
            self._resume.clear()
            return True

    def handled(self, size: int) -> None:
        """From the kernel's loop: a message is handled; read again once half is."""
        with self._lock:
            self._held -= size
            wake = self._paused and self._held <= HELD_BYTES // 2
            if wake:
                self._paused = False
        if wake:
            _post(self.io.loop, self._resume.set)

    def send(self, frame: Frame) -> concurrent.futures.Future:
        """From the kernel's loop: write a frame (in the order of the calls)."""
        sending = self.websocket.send(frame.message, text=not frame.binary)
        return asyncio.run_coroutine_threadsafe(sending, self.io.loop)

    def close(self, code: int, reason: str) -> None:
        """From any thread: close the connection, or stop connecting."""
        _post(self.io.loop, self._close, code, reason)

    def _close(self, code: int, reason: str) -> None:
        self._draining = True
        self._resume.set()
        if self.websocket is not None:
            closing = self.io.loop.create_task(self.websocket.close(code, reason))
            closing.add_done_callback(_retrieved)
        elif self._task is not None:
            self._task.cancel()  # the handshake: the kernel's side stopped waiting for it


class _Written:
    """What ``OutboundClient.send`` returns: awaiting it (on the kernel's loop) waits until the
    frame is written; it costs nothing more until then."""

    __slots__ = ("_future",)

    def __init__(self, future: concurrent.futures.Future) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, None]:
        return (yield from asyncio.wrap_future(self._future).__await__())


class OutboundClient:
    """One connection this process opened: the client its handlers get.

    It has what a served :class:`~ws_notebook.connection.Client` has (``id``, ``endpoint``,
    ``send``, ``close``, the counters, ``state``), ``direction == "out"``, and ``uri``;
    ``remote_address`` and ``path`` are the URI without its query and user info (the platform
    lists an outgoing client's ``uri``), ``headers`` are the response's to the handshake and
    ``query`` the URI's. ``close`` closes the connection for good (no reconnecting).
    """

    direction = "out"
    _socket = None  # no Tornado handler: the server's wire keeper leaves this connection alone

    def __init__(self, connection: OutboundConnection) -> None:
        self._connection = connection
        self._endpoint = connection.endpoint
        self._websocket: Any = None  # a websockets ClientConnection, once open
        self._session: _Session | None = None  # its socket's side, on the I/O thread
        self._loop = IOLoop.current()
        self._thread = threading.get_ident()
        self.id = f"o{next(_ids)}"
        self.endpoint = connection.endpoint.name
        self.uri = connection.uri
        self.remote_address = shown(connection.uri)
        self.path = self.remote_address
        self.headers: dict[str, str] = {}
        self.query = parse_qs(urlsplit(connection.uri).query, keep_blank_values=True)
        self.subprotocol: str | None = None
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def _attach(self, websocket: Any, session: _Session) -> None:
        self._websocket = websocket
        self._session = session
        self.opened_at = time.time()
        self.subprotocol = websocket.subprotocol
        if websocket.response is not None:
            self.headers = dict(websocket.response.headers.raw_items())

    @property
    def open(self) -> bool:
        return self._websocket is not None and self.closed_at is None

    @property
    def state(self) -> str:
        return "open" if self.open else "closed"

    def send(self, message: Any) -> Any:
        """Send a message; returns an awaitable that resolves once it is written out.

        From another thread, the send is handed over to the loop and None is returned.
        """
        frame = encode(message)
        if self._elsewhere():
            self._loop.add_callback(self._send_on_loop, frame)
            return None
        written = self._deliver(frame)
        self._endpoint.log.message("out", self.id, frame.message)
        return written

    def _send_on_loop(self, frame: Frame) -> None:
        with contextlib.suppress(ConnectionClosed):
            self.send(frame)

    def _elsewhere(self) -> bool:
        return threading.get_ident() != self._thread

    def _deliver(self, frame: Frame) -> _Written:
        """Write a frame and count it (the caller logs it), as ``Client._deliver`` does.

        The I/O thread writes it: each send is a task there, made in the order of the calls,
        and tasks start in the order they are made, so messages go out in the order they were
        sent, at once, even from a cell that goes on to block. A close meanwhile is the close
        event's to tell.
        """
        from websockets.protocol import State

        websocket, session = self._websocket, self._session
        if not self.open or session is None or websocket.protocol.state is not State.OPEN:
            raise ConnectionClosed(f"client {self.id} of {self.endpoint!r} is closed")
        sending = session.send(frame)
        self.messages_out += 1
        self.bytes_out += len(frame.message)
        self._endpoint.messages_out += 1
        return _Written(sending)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection, for good: it does not reconnect."""
        if self.closed_at is None:
            self._connection.close(code, reason)

    def _detach(self) -> None:
        self._websocket = None
        self._session = None

    def __repr__(self) -> str:
        return (
            f"<OutboundClient {self.id} {self.endpoint!r} to {self.remote_address} {self.state}, "
            f"{self.messages_in} in / {self.messages_out} out>"
        )


def _retrieved(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class OutboundConnection:
    """The outbound connection of one endpoint, across reconnections: what ``connect`` returns.

    ``state`` says where it is ("connecting", "open", "reconnecting in 4 s, attempt 3",
    "closed", "failed: WHY"); ``client`` is the open connection's client (None while there is
    none); ``error`` the latest failure to connect, as one line. ``send`` sends to the open
    connection, ``close`` closes it for good, ``await wait_open()`` waits until it is open.
    """

    def __init__(self, endpoint: Endpoint, uri: str, options: _Options) -> None:
        self.endpoint = endpoint
        self.uri = uri
        self.options = options
        self.client: OutboundClient | None = None
        self.error: str | None = None
        self.attempt = 0  # reconnection attempts since the connection was last open
        self._state = "connecting"
        self._retry_at: float | None = None  # loop time of the next attempt, while waiting
        self._closing: tuple[int, str] | None = None
        self._connecting = False  # awaiting the handshake
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._changed = asyncio.Event()
        self._lock = threading.Lock()  # close() may come from any thread
        self._session: _Session | None = None  # the current attempt's socket, until it ends
        self._io = _acquire()
        self._task = self._loop.create_task(self._run(), name=f"ws_notebook outbound {self.name}")

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def state(self) -> str:
        if self._retry_at is not None:
            seconds = max(0, math.ceil(self._retry_at - self._loop.time()))
            return f"reconnecting in {seconds} s, attempt {self.attempt}"
        return self._state

    @property
    def done(self) -> bool:
        """Closed, closing or failed for good: it will not connect again."""
        return self._closing is not None or self._task.done()

    @property
    def uri_shown(self) -> str:
        """The URI without its query and user info, which may carry credentials."""
        return shown(self.uri)

    def __repr__(self) -> str:
        return f"<OutboundConnection {self.name!r} to {self.uri_shown} {self.state}>"

    def send(self, message: Any) -> Any:
        """Send to the open connection; ConnectionClosed (saying the state) if there is none."""
        client = self.client
        if client is None or not client.open:
            raise ConnectionClosed(f"{self.name!r} is not connected ({self.state})")
        return client.send(message)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection, or stop trying to connect, for good (from any thread).

        The I/O thread writes the close frame at once, even while a cell blocks the kernel's
        loop (the kernel's shutdown calls this from its control thread); ``on_close`` runs on
        the kernel's loop when the closing handshake is over.
        """
        with self._lock:
            if self._closing is not None or self._task.done():
                return
            self._closing = (code, reason)
            session = self._session
        if session is not None:
            session.close(code, reason)
        if threading.get_ident() == self._thread:
            self._stop_waiting()
        else:
            _post(self._loop, self._stop_waiting)

    def _stop_waiting(self) -> None:
        if self._connecting or self._retry_at is not None:
            self._task.cancel()
        # else the connection closes (its close event ends the loop), or a handler runs for a
        # failure or a close: the loop ends after it

    async def wait_open(self, timeout: float | None = 10) -> OutboundClient:
        """The open connection's client, once open; ConnectError if it failed or closed for
        good first, ``asyncio.TimeoutError`` after ``timeout`` seconds."""

        async def opened() -> OutboundClient:
            while True:
                client = self.client
                if client is not None and client.open:
                    return client
                if self._task.done():
                    raise ConnectError(f"{self.name!r} will not connect: {self.state}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(opened(), timeout)

    async def wait_closed(self) -> None:
        """Wait until it is closed, or has failed, for good."""
        await asyncio.shield(self._task)

    def _notify(self) -> None:
        self._changed.set()

    # --- the connection's life -------------------------------------------------------------

    async def _run(self) -> None:
        """The connection's life on the kernel's loop: each attempt's socket is a ``_Session``
        on the I/O thread, whose events come in through ``inbox``, in order."""
        try:
            while self._closing is None:
                client = OutboundClient(self)
                self._state = "connecting"
                self._notify()
                self._connecting = True
                inbox: asyncio.Queue = asyncio.Queue()
                session = _Session(self._io, inbox, self.uri, self._library_options())
                with self._lock:
                    self._session = session
                    closing = self._closing
                if closing is not None:  # from another thread meanwhile: the finally closes it
                    return
                event = await inbox.get()
                self._connecting = False
                if event[0] == "failed":
                    self._session = None
                    error = event[1]
                    text, final = _failure(error, self.uri, self.options)
                    await self._failed(client, error, text)
                    if final or not await self._wait_to_retry():
                        self._state = f"failed: {self.error}"
                        return
                    continue
                self.attempt = 0
                self.error = None
                await self._serve(client, session, event[1], inbox)
                self._session = None
                if self._closing is not None or not await self._wait_to_retry():
                    return
        except asyncio.CancelledError:
            if self._closing is None:
                raise  # not ours: the loop is going away
        finally:
            self._retry_at = None
            if not self._state.startswith("failed"):
                self._state = "closed"
            self.client = None
            with self._lock:
                left, self._session = self._session, None
            if left is not None:  # cancelled: the socket closes without us
                left.close(*(self._closing or (CloseCode.GOING_AWAY, "going away")))
            _release(self._io)
            self._notify()

    def _library_options(self) -> dict[str, Any]:
        options = self.options
        chosen: dict[str, Any] = {
            "additional_headers": list(options.headers) or None,
            "subprotocols": list(options.subprotocols) or None,
            "proxy": options.proxy,
            "open_timeout": options.open_timeout,
            "ping_interval": options.ping_interval,
            "ping_timeout": options.ping_timeout,
            "max_size": options.max_message_size,
        }
        if options.cafile is not None:  # else wss:// verifies against the system's CAs
            chosen["ssl"] = ssl.create_default_context(cafile=options.cafile)
        return chosen

    async def _serve(
        self, client: OutboundClient, session: _Session, websocket: Any, inbox: asyncio.Queue
    ) -> None:
        """Run the handlers for one open connection, in order, until it closes."""
        endpoint = self.endpoint
        client._attach(websocket, session)
        self.client = client
        self._state = "open"
        self._notify()
        pending = endpoint.opened(client)
        if pending is not None:
            await pending
        waited: list[float] = []  # when the messages that waited for the kernel came in
        while True:
            event = await inbox.get()
            if event[0] == "message":
                _, message, arrived = event
                if time.time() - arrived > LATE:
                    waited.append(arrived)
                pending = endpoint.received(message, client)
                if pending is not None:
                    await pending
                session.handled(len(message))
                if waited and inbox.empty():
                    endpoint.waited(client.id, len(waited), waited[0], time.time())
                    waited.clear()
            elif event[0] == "held":
                self._stopped_reading(client, event[1])
            else:  # closed
                break
        client.closed_at = time.time()
        code = websocket.close_code
        client.close_code = None if code in (None, CloseCode.ABNORMAL) else code
        client.close_reason = websocket.close_reason or ""
        self.client = None
        self._state = "closing"
        sent = websocket.protocol.close_sent
        if client.close_code is None and sent is not None and self._closing is None:
            endpoint.log.record("error", client.id, detail=f"connection lost: {sent.reason}")
        pending = endpoint.closed(client)
        if pending is not None:
            await pending

    def _stopped_reading(self, client: OutboundClient, held: int) -> None:
        """Tell that the I/O thread stopped reading: the kernel has that much to catch up on."""
        text = (
            f"{held / 2**20:.1f} MiB of messages wait for the kernel: stopped reading until it "
            "catches up (the server's data waits in the socket buffers)"
        )
        self.endpoint.log.record("wait", client.id, detail=text)
        token = running.set(client)
        try:
            logger.warning("%s", f"{self.endpoint.name}: {text}")
        finally:
            running.reset(token)

    async def _failed(self, client: OutboundClient, error: Exception, text: str) -> None:
        """Tell of a failed attempt: error event, one line in the cell, ``on_error``."""
        self.error = text
        endpoint = self.endpoint
        endpoint.log.record("error", client.id, detail=f"connecting to {shown(self.uri)}: {text}")
        token = running.set(client)  # the line goes where the endpoint's handlers print
        try:
            logger.error("%s", f"{endpoint.name}: {text}")
        finally:
            running.reset(token)
        on_error = endpoint.handlers.on_error
        if on_error is not None:
            failure = ConnectError(text)
            failure.__cause__ = error
            pending = endpoint._run("error", on_error, (failure, client), client)
            if pending is not None:
                await pending

    async def _wait_to_retry(self) -> bool:
        """Wait before the next attempt; False: no reconnecting (not asked, or given up)."""
        policy = self.options.reconnect
        if policy is None or self._closing is not None:
            return False
        if policy.attempts is not None and self.attempt >= policy.attempts:
            self.error = f"{self.error or 'closed'} (gave up after {self.attempt} attempts)"
            self._state = f"failed: {self.error}"
            return False
        self.attempt += 1
        delay = policy.delay(self.attempt)
        self._retry_at = self._loop.time() + delay
        self._notify()
        try:
            await asyncio.sleep(delay)
        finally:
            self._retry_at = None
        return self._closing is None


def connect_endpoint(
    descriptor: Descriptor,
    handlers: Any = None,
    *,
    log_capacity: int | None = None,
    **options: Any,
) -> OutboundConnection:
    """Mount ``descriptor`` (its ``uri`` says where to connect) with ``handlers`` and connect it.

    An endpoint of that name that is already connected keeps its connection: its handlers and
    options are swapped in place (new options apply from the next reconnection), unless the URI
    changed. ``options`` are ``connect``'s.
    """
    uri = _check_uri(descriptor.uri)
    checked = _options(uri, **{**_DEFAULTS, **options})
    if importlib.util.find_spec("websockets") is None:
        raise ImportError(
            "outbound connections need the websockets package: pip install websockets"
        )
    try:
        asyncio.get_running_loop()  # now, not once mounted
    except RuntimeError:
        raise RuntimeError(
            "connect needs a running asyncio loop (a notebook cell's, or asyncio.run's): the "
            "connection lives on it"
        ) from None
    current = api.default_server().registry.find(descriptor.endpoint)
    if current is not None and current.outbound is None:
        raise ValueError(
            f"name: {descriptor.endpoint!r} is an endpoint this kernel serves; give the "
            "outbound connection another name"
        )
    endpoint = api.mount(descriptor, handlers, log_capacity=log_capacity).endpoint
    return open_mounted(endpoint, checked)


def open_mounted(endpoint: Endpoint, options: _Options | None = None) -> OutboundConnection:
    """Connect a mounted endpoint whose descriptor has a ``uri`` (one loaded from a file)."""
    uri = _check_uri(endpoint.descriptor.uri)
    options = options or _options(uri, **_DEFAULTS)
    current = endpoint.outbound
    if current is not None and current.uri == uri and not current.done:
        current.options = options
        return current
    if current is not None:
        current.close(CloseCode.NORMAL, "connecting to another URI")
    endpoint.outbound = OutboundConnection(endpoint, uri, options)
    return endpoint.outbound


_DEFAULTS: dict[str, Any] = {
    "headers": None,
    "subprotocols": None,
    "reconnect": None,
    "cafile": None,
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    "open_timeout": 10.0,
    "max_message_size": 2**20,
    "proxy": True,
}


def connect(
    uri: str,
    handlers: Any = None,
    *,
    name: str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    subprotocols: Iterable[str] | None = None,
    reconnect: bool | Reconnect | None = None,
    cafile: str | None = None,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    open_timeout: float | None = 10.0,
    max_message_size: int | None = 2**20,
    proxy: str | bool | None = True,
    description: str = "",
    log_capacity: int | None = None,
) -> OutboundConnection:
    """Open a WebSocket connection to ``uri`` whose events ``handlers`` handle (see the module).

    ``name`` is its endpoint name (default: made from the URI's host, port and path);
    ``headers`` are sent with the handshake; ``cafile`` is a PEM bundle of CAs to trust for
    ``wss://`` instead of the system's; ``ping_interval``/``ping_timeout`` are the keepalive
    (None: no pings); ``proxy=True`` takes a proxy from the environment, None goes direct.
    """
    uri = _check_uri(uri)
    origin = getattr(handlers, "__name__", type(handlers).__name__)
    descriptor = Descriptor.new(
        name if name is not None else default_name(uri),
        handler=f"python:{origin}",
        location="python",
        description=description,
    ).replace(uri=uri)
    return connect_endpoint(
        descriptor,
        handlers,
        log_capacity=log_capacity,
        headers=headers,
        subprotocols=subprotocols,
        reconnect=reconnect,
        cafile=cafile,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        open_timeout=open_timeout,
        max_message_size=max_message_size,
        proxy=proxy,
    )


create_websocket = connect  # codbex's createWebsocket, in Python's spelling


def going_away(endpoints: Iterable[Endpoint], reason: str) -> None:
    """From any thread, even while a cell blocks the kernel: close these endpoints' outbound
    connections with 1001 and wait (up to a second) until their close frames are on their way."""
    connections = [e.outbound for e in endpoints if e.outbound is not None and not e.outbound.done]
    for connection in connections:
        connection.close(CloseCode.GOING_AWAY, reason)  # the I/O thread closes the socket
    done = threading.Event()
    for loop in {connection._io.loop for connection in connections}:
        # After the closing tasks' first step, which writes the frame.
        if _post(loop, loop.call_soon, done.set):
            done.wait(1.0)
            done.clear()
