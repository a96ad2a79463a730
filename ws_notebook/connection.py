"""The client object handed to handlers: one open WebSocket connection to an endpoint."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import functools
import itertools
import json
import struct
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import parse_qs

from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop
from tornado.iostream import StreamBufferFullError, StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .codes import FIN, CloseCode, Opcode
from .errors import ConnectionClosed
from .outbox import Outbox, Sent

if TYPE_CHECKING:
    from .endpoint import Endpoint

__all__ = ["Client", "ConnectionClosed", "Frame", "encode"]

_ids = itertools.count(1)
# Set by a broker (ws_notebook.broker) so that ids are unique across the workers sharing it.
id_suffix = ""


def _header(first: int, length: int) -> bytes:
    """An unmasked RFC 6455 frame header: FIN and opcode byte, then the payload length."""
    if length < 126:
        return bytes((first, length))
    if length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


_TEXT = FIN | Opcode.TEXT
_BINARY = FIN | Opcode.BINARY
_JOIN_BELOW = 16 * 1024  # smaller payloads are sent joined to their header, larger ones beside it


class Frame(NamedTuple):
    """A message encoded for the wire once, so a broadcast encodes it once for all its clients.

    ``message`` is what the event log and the counters see (text as str, binary as bytes),
    ``binary`` says which kind of frame it is, and ``wire`` is the unmasked, final RFC 6455
    frame: header and payload as one bytes object, or as two when the payload is large (so it
    is not copied to join them).
    """

    message: str | bytes
    binary: bool
    wire: tuple[bytes] | tuple[bytes, bytes]


def _frame(message: str | bytes, binary: bool, payload: bytes) -> Frame:
    header = _header(_BINARY if binary else _TEXT, len(payload))
    if len(payload) < _JOIN_BELOW:
        return Frame(message, binary, (header + payload,))
    return Frame(message, binary, (header, payload))


def _json_default(value: Any) -> Any:
    """What JSON has no type for, as handlers commonly send it: datetimes, dates and times as
    ISO 8601 text, Decimal and UUID as text (so no digit is lost), sets as lists."""
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise TypeError(
        f"cannot send {shown} as JSON: a {type(value).__name__} has no JSON form; convert it "
        "first (to str, a number, a list or a dict), or send text you encoded yourself, such "
        "as json.dumps(message, default=str)"
    )


# Made once: json.dumps(message, default=...) would make an encoder for every message.
_to_json = json.JSONEncoder(default=_json_default).encode


def encode(message: Any) -> Frame:
    """Text as a text frame, bytes as binary, JSON for dicts, lists, sets and numbers."""
    if message.__class__ is str:  # the common case first: no ABC checks
        return _frame(message, False, message.encode())
    if message.__class__ is Frame:
        return message
    if isinstance(message, (bytearray, memoryview)):
        message = bytes(message)
    elif (
        isinstance(message, (Mapping, list, tuple, set, frozenset, int, float, bool))
        or message is None
    ):
        message = _to_json(message)
    if message.__class__ is bytes:
        return _frame(message, True, message)
    if isinstance(message, str):
        return _frame(message, False, message.encode())
    if isinstance(message, bytes):  # a bytes subclass: text, as write_message(binary=False) has it
        return _frame(message, False, bytes(message))
    raise TypeError(
        f"cannot send {type(message).__name__}: pass str (text frame), bytes (binary frame), "
        "or a dict/list to send as JSON"
    )


class Opened(Protocol):
    """What a client is made from: its WebSocket's handler, or (a STOMP session's client)
    something holding the request that opened its session."""

    @property
    def request(self) -> HTTPServerRequest: ...


class Client:
    """One connection as handlers see it: who it is, what it sent and received, ``send`` and
    ``close``. Its frames are written by its :class:`~ws_notebook.outbox.Outbox`.

    ``id`` is unique within the process and stable for the connection's life, so it can be
    used to find the client again with ``ws_notebook.client(id)``.
    """

    def __init__(
        self, socket: Opened, endpoint: Endpoint, max_send_queue: int | None = None
    ) -> None:
        self._socket = socket if isinstance(socket, WebSocketHandler) else None
        self._endpoint = endpoint
        self._max_send_queue = max_send_queue  # bytes queued for the client; None: no limit
        connection = getattr(socket, "ws_connection", None)  # None: a subclass writes (STOMP)
        self._outbox: Outbox | None = None
        if connection is not None:
            self._outbox = Outbox(connection, max_send_queue, self._too_slow)
            self._write = self._outbox.write  # type: ignore[method-assign]  # one call less
        # Created on the server's loop thread; sends from other threads are handed over to it.
        self._loop = IOLoop.current()
        self._thread = threading.get_ident()
        request = socket.request
        self.id = f"c{next(_ids)}{id_suffix}"
        self.endpoint = endpoint.name
        self.remote_address: str = request.remote_ip or ""
        self._request_headers = request.headers  # turned into dicts when first asked for
        self._query_string = request.query
        self.path: str = request.path
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # Headers and query may carry the Jupyter cookie or token: repr and the tables leave them out.
    @functools.cached_property
    def headers(self) -> dict[str, str]:
        """The request's headers (the last value of a repeated one)."""
        return dict(self._request_headers.get_all())

    @functools.cached_property
    def query(self) -> dict[str, list[str]]:
        """The URL's query string, parsed: each name to its list of values."""
        return parse_qs(self._query_string, keep_blank_values=True)

    @property
    def open(self) -> bool:
        return self.closed_at is None

    @property
    def state(self) -> str:
        return "open" if self.closed_at is None else "closed"

    def send(self, message: Any) -> Any:
        """Send a message; returns an awaitable that resolves once it is written out.

        Awaiting it is optional; it is the way to respect a slow reader's pace. Called from
        another thread (a computation running in a thread, say), the send is handed over to the
        server's loop and None is returned.
        """
        frame = encode(message)  # a bad type is the caller's error, raised here
        if self._elsewhere():
            self._loop.add_callback(self._send_on_loop, frame)
            return None
        written = self._deliver(frame)
        self._endpoint.log.message("out", self.id, frame.message)
        return written

    def _elsewhere(self) -> bool:
        """Called from a thread other than the server loop's (sends are then handed over)."""
        return threading.get_ident() != self._thread

    def _deliver(self, frame: Frame) -> Sent:
        """Write a frame and count it; the caller logs it (a broadcast logs once for all)."""
        if self.closed_at is not None:
            raise ConnectionClosed(f"client {self.id} of {self.endpoint!r} is closed")
        try:
            written = self._write(frame)
        except (WebSocketClosedError, StreamClosedError) as error:
            raise ConnectionClosed(f"client {self.id} of {self.endpoint!r} is closed") from error
        except StreamBufferFullError as error:
            self._too_slow()
            raise ConnectionClosed(
                f"client {self.id} of {self.endpoint!r} does not read: its send queue is full, "
                "so it was disconnected (1008)"
            ) from error
        self.messages_out += 1
        self.bytes_out += len(frame.message)
        self._endpoint.messages_out += 1
        return written

    def _write(self, frame: Frame) -> Any:
        """Write one message as one frame: the outbox's ``write``, or a subclass's own."""
        raise NotImplementedError

    def _too_slow(self) -> None:
        """A client that lets its send queue fill up is closed rather than let memory grow.

        The close frame is queued behind data the client is not reading, so the connection
        is dropped at once rather than after Tornado's 5 s wait for the closing handshake.
        """
        self._endpoint.log.record(
            "error",
            self.id,
            detail=f"send queue full (over {self._max_send_queue} bytes): the client does not read",
        )
        outbox = self._outbox
        assert outbox is not None, "only an outbox finds its queue full"
        outbox.make_room()  # for the close frame
        self.close(CloseCode.POLICY_VIOLATION, "send queue full: the client does not read")
        outbox.drop()

    def _send_on_loop(self, frame: Frame) -> None:
        with contextlib.suppress(ConnectionClosed):  # closed while the message was on its way
            self.send(frame)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake; ``on_close`` runs when it completes."""
        if self._elsewhere():
            self._loop.add_callback(self.close, code, reason)
            return
        if self._socket is not None:  # None once closed: closing again does nothing
            self._socket.close(code, reason)

    def _detach(self) -> None:
        """Once closed, let go of the connection: the handler and the client referred to each
        other, a cycle that left every closed connection's objects to the garbage collector."""
        self._socket = None
        if self._outbox is not None:
            self._outbox.detach()

    def __repr__(self) -> str:
        return (
            f"<Client {self.id} {self.endpoint!r} from {self.remote_address} {self.state}, "
            f"{self.messages_in} in / {self.messages_out} out>"
        )
