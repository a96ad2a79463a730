"""The client object handed to handlers: one open WebSocket connection to an endpoint."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from tornado.ioloop import IOLoop
from tornado.iostream import StreamBufferFullError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

if TYPE_CHECKING:
    from .registry import Endpoint

__all__ = ["Client", "ConnectionClosed"]

_ids = itertools.count(1)
POLICY_VIOLATION = 1008


class ConnectionClosed(ConnectionError):
    """Sending to a client whose connection is already closed."""


def _frame(message: Any) -> str | bytes:
    """What ``send`` puts on the wire: text as a text frame, bytes as binary, JSON for the rest."""
    if isinstance(message, (str, bytes)):
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    if isinstance(message, (Mapping, list, tuple, int, float, bool)) or message is None:
        return json.dumps(message)
    raise TypeError(
        f"cannot send {type(message).__name__}: pass str (text frame), bytes (binary frame), "
        "or a dict/list to send as JSON"
    )


class Client:
    """One connection: who it is, what it sent and received, and how to talk back.

    ``id`` is unique within the process and stable for the connection's life, so it can be
    used to find the client again with ``ws_notebook.client(id)``.
    """

    def __init__(self, socket: WebSocketHandler, endpoint: Endpoint) -> None:
        self._socket = socket
        self._endpoint = endpoint
        # Created on the server's loop thread; sends from other threads are handed over to it.
        self._loop = IOLoop.current()
        self._thread = threading.get_ident()
        request = socket.request
        self.id = f"c{next(_ids)}"
        self.endpoint = endpoint.name
        self.remote_address: str = request.remote_ip or ""
        # Headers and query may carry the Jupyter cookie or token: repr and as_dict leave them out.
        self.headers: dict[str, str] = dict(request.headers.get_all())
        self.query: dict[str, list[str]] = parse_qs(request.query, keep_blank_values=True)
        self.path: str = request.path
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0

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
        if threading.get_ident() != self._thread:
            frame = _frame(message)  # a bad type is the caller's error, raised here
            self._loop.add_callback(self._send_on_loop, frame)
            return None
        frame = _frame(message)
        if self.closed_at is not None:
            raise ConnectionClosed(f"client {self.id} of {self.endpoint!r} is closed")
        try:
            written = self._socket.write_message(frame, binary=frame.__class__ is bytes)
        except WebSocketClosedError as error:
            raise ConnectionClosed(f"client {self.id} of {self.endpoint!r} is closed") from error
        except StreamBufferFullError as error:
            self._too_slow()
            raise ConnectionClosed(
                f"client {self.id} of {self.endpoint!r} does not read: its send queue is full, "
                "so it was disconnected (1008)"
            ) from error
        self.messages_out += 1
        self.bytes_out += len(frame)
        self._endpoint.messages_out += 1
        self._endpoint.log.message("out", self.id, frame)
        return written

    def _too_slow(self) -> None:
        """A client that lets its send queue fill up is closed rather than let memory grow."""
        queued = self._socket.ws_connection.stream.max_write_buffer_size
        self._endpoint.log.record(
            "error", self.id, detail=f"send queue full ({queued} bytes): the client does not read"
        )
        self._socket.ws_connection.stream.max_write_buffer_size = None  # room for the close frame
        self.close(POLICY_VIOLATION, "send queue full: the client does not read")

    def _send_on_loop(self, frame: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):  # closed while the message was on its way
            self.send(frame)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; ``on_close`` runs when it completes."""
        if threading.get_ident() != self._thread:
            self._loop.add_callback(self._socket.close, code, reason)
            return
        self._socket.close(code, reason)

    def __repr__(self) -> str:
        return (
            f"<Client {self.id} {self.endpoint!r} from {self.remote_address} {self.state}, "
            f"{self.messages_in} in / {self.messages_out} out>"
        )

    def as_dict(self) -> dict[str, Any]:
        """A summary for tables: no headers or query, which may carry credentials."""
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "remote_address": self.remote_address,
            "opened_at": self.opened_at,
            "state": self.state,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }
