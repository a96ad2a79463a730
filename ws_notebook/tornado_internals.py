"""Every private name of Tornado's that ws_notebook uses, and the contract it relies on.

Nothing else in the package touches a Tornado name that starts with ``_``: the rest goes
through the classes and functions here. ``tests/test_tornado_internals.py`` checks each name
still exists and behaves as written below, and CI runs the suite on the lowest Tornado
``pyproject.toml`` allows and on the newest. The contract, as of Tornado 6.5 and 6.6:

``tornado.websocket.WebSocketProtocol13`` (subclassed by :class:`TornadoProtocol`)
    ``_receive_frame_loop()`` calls ``_receive_frame()`` until ``client_terminated``, which
    reads with ``_read_bytes(n)`` (counting ``_wire_bytes_in``) and hands each message and
    control frame to ``_handle_message(opcode, data)``; that one answers pings and pongs,
    decompresses with ``_decompressor`` when ``_frame_compressed`` and delivers text with
    ``_run_callback``. Every frame written goes through ``_write_frame``. A fragmented message
    is kept in ``_fragmented_message_buffer`` / ``_fragmented_message_opcode``;
    ``_compressor`` is None without permessage-deflate; ``_abort()`` drops the connection;
    ``_received_pong`` tells the ping timer a pong came. ``_DecompressTooLargeError`` is raised
    past ``max_message_size`` after decompression; ``_WebSocketParams`` is the protocol's
    options; ``tornado.util._websocket_mask`` unmasks a payload (in C when built).
``tornado.iostream.IOStream``
    ``_read_buffer`` holds ``_read_buffer_size`` bytes read from the socket and not handed
    out; ``_consume(n)`` hands out n of them (n at most that size); ``_handle_events(fd,
    READ)`` reads the socket as the loop would.
``tornado.tcpserver.TCPServer`` / ``tornado.httpserver.HTTPServer``
    ``_sockets`` maps each listening socket's fd to it, ``_handlers`` its fd to the function
    ``stop()`` calls to stop accepting; ``_handle_connection(connection, address)`` serves an
    accepted socket.
``tornado.web.RequestHandler``
    ``_request_summary()`` is how the access and error logs name a request, ``_reason`` the
    reason phrase of the status set, ``_finished`` whether ``finish()`` ran;
    ``request.connection._disconnect_on_finish`` closes an HTTP/1.0 connection after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream
from tornado.util import _websocket_mask
from tornado.web import RequestHandler
from tornado.websocket import (
    WebSocketHandler,
    WebSocketProtocol,
    WebSocketProtocol13,
    _DecompressTooLargeError,
    _WebSocketParams,
)

from .codes import FIN, MASKED, RSV1, CloseCode, Opcode

__all__ = [
    "TornadoProtocol",
    "HTTPServerHooks",
    "RequestHooks",
    "abort",
    "compresses",
    "protocol_for",
    "read_now",
    "unread",
    "unread_size",
    "pong_received",
    "bytes_parsed",
    "disconnect_on_finish",
]

# Plain ints on the hot path: comparing an int with an IntEnum member skips the int fast path.
_TEXT, _BINARY, _CONTINUATION = int(Opcode.TEXT), int(Opcode.BINARY), int(Opcode.CONTINUATION)
_CLOSE, _PING = int(Opcode.CLOSE), int(Opcode.PING)
_DATA = (_TEXT, _BINARY)
WHOLE_MESSAGES = frozenset((FIN | _TEXT, FIN | _BINARY))  # unfragmented, no RSV bits


class TornadoProtocol(WebSocketProtocol13):
    """``WebSocketProtocol13`` with its frame reader replaced, and hooks for the rules.

    The reader is Tornado's with every RFC 6455 rule checked (``frame_problem``, named in a
    1002 close by ``fail``), a close frame handed to ``close_frame``, and the handler told when
    input is waiting (``hold_output``) and when it is used up or a frame of Tornado's own goes
    out (``output_due``), so that replies to a burst of input leave in one write. This is the
    hot path: a masked, unfragmented text or binary frame passes the rules in one ``if``, and a
    small frame's mask and payload are taken in one read.
    """

    _fragments_compressed = False  # the compressed bit of the fragmented message being read
    # For the wire keeper (ws_notebook.wire): where this protocol's first byte is in its socket's
    # count of bytes read, where the frame being read (or the last one) ends, the first two bytes
    # of a frame whose extended length is awaited, and the stream read this protocol awaits. Slots, not instance attributes: Tornado's protocol has 29 of those,
    # and past 30 CPython stops sharing the instance dict's keys (a 1.5 KiB dict per connection,
    # and slower attribute access on every frame).
    __slots__ = ("wire_base", "frame_end", "frame_head", "pending_read")
    wire_base: int
    frame_end: int
    frame_head: bytes
    pending_read: Awaitable[bytes] | None
    handler: Any  # the handler adds output_due, hold_output and closed_by_server

    # -- hooks for the subclass ------------------------------------------------------------------

    def frame_problem(self, first: int, second: int) -> str | None:
        """The rule a frame header breaks, if any (called for all but plain whole messages)."""
        return None

    def close_frame(self, data: bytes) -> None:
        """The peer's close frame arrived."""
        WebSocketProtocol13._handle_message(self, _CLOSE, data)

    def fail(self, code: int, reason: str) -> None:
        """Say why in a close frame, then drop the connection (RFC 6455 7.1.7)."""
        self.close(code, reason)
        self._abort()

    @property
    def compressing(self) -> bool:
        """permessage-deflate was agreed on."""
        return self._decompressor is not None

    @property
    def fragmented(self) -> bool:
        """A fragmented message is being read."""
        return self._fragmented_message_buffer is not None

    # -- Tornado's private methods ---------------------------------------------------------------

    async def _receive_frame_loop(self) -> None:
        self.wire_base = getattr(self.stream.socket, "received", 0) - self.stream._read_buffer_size
        self.frame_end = self.wire_base
        self.pending_read = None
        await super()._receive_frame_loop()

    async def _read_bytes(self, n: int) -> bytes:
        stream = self.stream
        if stream._read_buffer_size >= n:  # already read: take it without a Future and callbacks
            data = stream._consume(n)
        else:
            self.handler.output_due()  # input used up: write the replies held back, then wait
            # Kept for the wire keeper: once the stream has taken these bytes from its buffer,
            # this coroutine resumes only on the loop's next iteration; a cell that blocks the
            # loop in between leaves them in this future's result alone.
            self.pending_read = stream.read_bytes(n)
            data = await self.pending_read
            self.pending_read = None
        self._wire_bytes_in += n
        return data

    async def _receive_frame(self) -> None:
        head = await self._read_bytes(2)
        first, second = head[0], head[1]
        fragments = self._fragmented_message_buffer
        if first not in WHOLE_MESSAGES or second < MASKED or fragments is not None:
            problem = self.frame_problem(first, second)
            if problem is not None:
                self.fail(CloseCode.PROTOCOL_ERROR, problem)
                return
        length = second & 0x7F
        if length > 125:
            self.frame_head = head  # frame_end is not known before the length is read
            length = int.from_bytes(await self._read_bytes(2 if length == 126 else 8), "big")
        if length + (len(fragments) if fragments is not None else 0) > self.params.max_message_size:
            self.fail(CloseCode.TOO_BIG, "message too big")
            return
        self.frame_end = self.wire_base + self._wire_bytes_in + 4 + length
        if length < 126:  # mask and payload in one read, at the cost of copying a small payload
            masked = await self._read_bytes(4 + length)
            data = _websocket_mask(masked[:4], masked[4:])
        else:
            mask = await self._read_bytes(4)
            data = _websocket_mask(mask, await self._read_bytes(length))

        opcode = first & 0x0F
        if opcode & 0x8:  # never compressed (a fragmented message's bit waits meanwhile)
            self._frame_compressed = False
        elif opcode == _CONTINUATION:
            assert fragments is not None  # frame_problem refused a continuation without it
            fragments.extend(data)
            if not first & FIN:
                return
            opcode = self._fragmented_message_opcode  # type: ignore[assignment]
            data = bytes(fragments)
            self._fragmented_message_buffer = None
            self._frame_compressed = self._fragments_compressed
        elif first & FIN:
            self._frame_compressed = (first & RSV1) != 0
        else:
            self._fragmented_message_opcode = opcode  # type: ignore[assignment]
            self._fragmented_message_buffer = bytearray(data)
            self._fragments_compressed = (first & RSV1) != 0
            return
        handled = self._handle_message(opcode, data)
        if handled is not None:
            await handled

    def _write_frame(self, fin: bool, opcode: int, data: bytes, flags: int = 0) -> Any:
        self.handler.output_due()  # replies held back go before a pong, a close, ...
        return super()._write_frame(fin, opcode, data, flags)

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if self.client_terminated:
            return None
        if self.server_terminated and opcode in _DATA:
            return None  # we are closing: the peer's last messages reach no handler (RFC 6455 1.4)
        if opcode in _DATA and self.stream._read_buffer_size:
            self.handler.hold_output()  # more input is here already: answer it all in one write
        if opcode == _TEXT:
            return self._text_message(data)
        if opcode == _CLOSE:
            return self.close_frame(data)
        if opcode == _PING and self.frame_end <= getattr(self.stream.socket, "ponged", 0):
            self.handler.on_ping(data)  # the wire keeper answered it while the loop was busy
            return None
        return super()._handle_message(opcode, data)

    def _text_message(self, data: bytes) -> Any:
        if self._frame_compressed:
            assert self._decompressor is not None  # frame_problem refused RSV1 without it
            try:
                data = self._decompressor.decompress(data)
            except _DecompressTooLargeError:
                self.fail(CloseCode.TOO_BIG, "message too big after decompression")
                return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.close(CloseCode.INVALID_DATA, "text message is not valid UTF-8")
            return None
        self._message_bytes_in += len(data)
        return self._run_callback(self.handler.on_message, text)


P = TypeVar("P", bound=TornadoProtocol)


def protocol_for(
    handler: WebSocketHandler,
    protocol: Callable[[WebSocketHandler, bool, Any], P],
    compression_options: dict[str, Any] | None,
) -> P | None:
    """What ``WebSocketHandler.get_websocket_protocol`` returns, with our protocol class."""
    if handler.request.headers.get("Sec-WebSocket-Version") != "13":
        return None
    params = _WebSocketParams(
        ping_interval=handler.ping_interval,
        ping_timeout=handler.ping_timeout,
        max_message_size=handler.max_message_size,
        compression_options=compression_options,
    )
    return protocol(handler, False, params)


def abort(connection: WebSocketProtocol) -> None:
    """Drop the connection now, without a closing handshake."""
    connection._abort()


def compresses(connection: WebSocketProtocol13) -> bool:
    """permessage-deflate is on (Tornado's ``write_message`` must then write the frames)."""
    return getattr(connection, "_compressor", True) is not None


def pong_received(protocol: WebSocketProtocol13) -> None:
    """Tell the ping timer its ping was answered (the wire keeper read the pong)."""
    protocol._received_pong = True


def bytes_parsed(protocol: WebSocketProtocol13) -> int:
    """Bytes the protocol has read from its stream so far."""
    return protocol._wire_bytes_in


def unread_size(stream: IOStream) -> int:
    """Bytes the stream read from its socket and has not handed out yet."""
    return stream._read_buffer_size


def unread(stream: IOStream) -> bytes:
    """Those bytes (a copy)."""
    return bytes(stream._read_buffer[: stream._read_buffer_size])


def read_now(stream: IOStream) -> None:
    """Read the socket now, as the loop does when it is readable."""
    stream._handle_events(stream.fileno(), IOLoop.READ)


def disconnect_on_finish(handler: RequestHandler) -> None:
    """Close the connection once the response is finished (an HTTP/1.0 body ends so)."""
    handler.request.connection._disconnect_on_finish = True  # type: ignore[union-attr]


class RequestHooks:
    """A ``RequestHandler`` mixin: its private hooks under public names."""

    def request_summary(self) -> str:
        """How the access and error logs name the request."""
        return RequestHandler._request_summary(self)  # type: ignore[arg-type]

    def _request_summary(self) -> str:
        return self.request_summary()

    @property
    def reason(self) -> str:
        """The reason phrase of the status set (``Not Found``)."""
        return self._reason  # type: ignore[attr-defined]

    @property
    def finished(self) -> bool:
        """``finish()`` ran."""
        return self._finished  # type: ignore[attr-defined]


class HTTPServerHooks(HTTPServer):
    """Tornado's HTTP server with its accept path open: ``handle_connection`` serves an
    accepted socket, ``add_listening`` registers a listening one with its own acceptor."""

    def _handle_connection(self, connection: Any, address: Any) -> None:
        self.handle_connection(connection, address)

    def handle_connection(self, connection: Any, address: Any) -> None:
        """Serve an accepted socket (from the loop's thread)."""
        HTTPServer._handle_connection(self, connection, address)

    def add_listening(self, sock: Any, stop: Callable[[], None]) -> None:
        """A listening socket accepted on by our own code: ``stop()`` is called to stop."""
        self._sockets[sock.fileno()] = sock
        self._handlers[sock.fileno()] = stop

    @property
    def listening(self) -> list[Any]:
        return list(self._sockets.values())
