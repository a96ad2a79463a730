"""The write path of one connection: the one place its frames are written to the socket.

A :class:`~ws_notebook.connection.Client` encodes and counts what handlers send; its
:class:`Outbox` writes the frames. Three things make that more than ``write_message``:

- a frame goes straight to the socket when nothing is queued before it (``WireStream.send_now``),
  without the asyncio Task, Future and buffer copy Tornado spends per message;
- while the protocol has more input already read, replies are held back and written together
  when the input runs dry (``hold`` / ``release``), so a client pipelining small messages costs
  one write per burst, not one per reply;
- the backlog is bounded by ``max_send_queue``: past it, ``on_full`` is told (the client is
  then closed with 1008) rather than the server's memory growing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketProtocol13

from .errors import ConnectionClosed
from .tornado_internals import compresses
from .wire import WireStream

if TYPE_CHECKING:
    from .connection import Frame

__all__ = ["Outbox", "Sent"]

HOLD_AT_MOST = 64 * 1024  # bytes of replies held back before they are written anyway
_FRAME_HEAD_AT_MOST = 14  # bytes: an unmasked frame's header


class Sent:
    """What ``Client.send`` returns: awaiting it waits until the frame is written to the socket.

    Tornado's ``write_message`` wraps the stream's write future in a new asyncio Task for every
    message, whether or not anyone awaits it; that Task (and its scheduling) was the biggest
    single cost of an echo. This wrapper costs nothing until it is awaited, and then behaves as
    that Task did: it resolves to None, or raises ``ConnectionClosed`` (where Tornado raises its
    ``WebSocketClosedError``) if the connection closed before the frame went out. ``future`` is
    None for a frame the socket took at once; ``held_by`` is the outbox holding the frame back
    (see ``Outbox.hold``): awaiting writes it.
    """

    __slots__ = ("_future", "_held_by")

    def __init__(self, future: Any = None, held_by: Outbox | None = None) -> None:
        self._future = future
        self._held_by = held_by

    def __await__(self) -> Any:
        future = self._future
        if self._held_by is not None:
            future = self._held_by.flush()._future
        if future is None:
            return None
        try:
            return (yield from future.__await__())
        except StreamClosedError as error:
            raise ConnectionClosed(
                "the connection closed before the message was written"
            ) from error


WRITTEN = Sent()  # a frame the socket took whole: nothing left to wait for


class Outbox:
    """The frames one WebSocket connection sends, written in order, held back or bounded.

    ``write`` raises Tornado's ``WebSocketClosedError`` or ``StreamClosedError`` for a closed
    connection and ``StreamBufferFullError`` past ``max_send_queue``; the client turns them
    into ``ConnectionClosed``. A flush of held frames that finds the queue full calls
    ``on_full`` instead, as no sender is there to tell.
    """

    __slots__ = (
        "_connection",
        "_stream",
        "_deflate",
        "_max_queue",
        "on_full",
        "_holding",
        "_held",
        "_held_size",
        "_last_write",
    )

    def __init__(
        self,
        connection: WebSocketProtocol13,
        max_queue: int | None,
        on_full: Callable[[], None],
    ) -> None:
        self._connection: WebSocketProtocol13 | None = connection
        stream = connection.stream
        assert stream is not None, "the connection is open: its stream is set"
        self._stream: IOStream = stream
        # With permessage-deflate (agreed before the connection opens), Tornado's own
        # write_message compresses and writes each frame.
        self._deflate = compresses(connection)
        self._max_queue = max_queue  # bytes queued for the client; None: no limit
        self.on_full = on_full
        self._holding = False  # replies to a burst of input are held back, see hold
        self._held: list[bytes] = []
        self._held_size = 0
        self._last_write = WRITTEN  # what the latest write of held frames returned

    def write(self, frame: Frame) -> Sent | Any:
        """Write one message as one frame, as ``WebSocketHandler.write_message`` would: same
        checks, same bytes on the wire."""
        connection = self._connection
        if connection is None or connection.is_closing():
            raise WebSocketClosedError()
        if self._deflate:
            self._allow_backlog(sum(map(len, frame.wire)))
            return connection.write_message(frame.message, binary=frame.binary)
        wire = frame.wire
        if self._holding and len(wire) == 1:
            self._held.append(wire[0])
            self._held_size += len(wire[0])
            if self._held_size >= HOLD_AT_MOST:
                return self.flush()
            return Sent(held_by=self)
        if self._held:  # keep the order: what is held goes first
            self.flush()
        return self._write_now(wire)

    def hold(self) -> None:
        """Hold replies back until the protocol has read all the input it has (then ``release``).

        With TCP_NODELAY each write is a segment, and on loopback a ``send`` also runs the
        peer's receive path: a client that pipelines small messages cost a write per reply.
        Held replies go out in one write when the input runs dry, before any frame Tornado
        writes itself (pong, close), when they reach 64 KiB, or when awaited; the replies of
        one message never wait for anything but the other messages already received.
        """
        self._holding = True

    def release(self) -> None:
        self._holding = False
        if self._held:
            self.flush()

    def flush(self) -> Sent:
        """Write the held frames as one; returns what that write returned."""
        if not self._held:
            return self._last_write
        data = b"".join(self._held)
        self._held.clear()
        self._held_size = 0
        if self._connection is None or self._stream.closed():
            self._last_write = WRITTEN  # closed meanwhile: as a write to a closed stream, dropped
            return self._last_write
        try:
            self._last_write = self._write_now((data,))
        except StreamBufferFullError:
            self.on_full()
            self._last_write = WRITTEN
        return self._last_write

    def _write_now(self, wire: tuple[bytes, ...]) -> Sent:
        """Hand the frame to the socket at once when nothing is queued before it.

        ``IOStream.write`` makes a Future, a done callback and a loop callback per write, and
        copies the frame through its buffer: over half of a broadcast's cost. A socket with an
        empty queue usually takes the whole frame, so it goes straight to ``send`` (as asyncio's
        transports do); whatever it does not take, and every frame of a TLS stream, goes through
        the stream as before, which keeps the order, the backlog limit and the error handling.
        """
        stream = self._stream
        whole = len(wire) == 1
        sent = 0
        if stream.__class__ is WireStream and not stream.writing():
            try:
                sent = stream.send_now(wire)
            except OSError:  # would block, or failed: the stream's own write handles it below
                sent = 0
            if sent == (len(wire[0]) if whole else len(wire[0]) + len(wire[1])):
                return WRITTEN
        rest = (wire[0] if whole else b"".join(wire))[sent:]
        self._allow_backlog(len(rest))
        return Sent(stream.write(rest))

    def _allow_backlog(self, size: int) -> None:
        """Let the stream take this frame unless ``max_send_queue`` bytes already wait.

        The stream refuses a write when what is queued plus the new frame exceeds its limit;
        allowing for the frame makes the limit one on the backlog, whatever the message size.
        """
        if self._max_queue is not None:
            self._stream.max_write_buffer_size = self._max_queue + size + _FRAME_HEAD_AT_MOST

    def make_room(self) -> None:
        """Lift the backlog limit, so that a close frame can be queued behind what the client
        does not read."""
        self._stream.max_write_buffer_size = None

    def drop(self) -> None:
        """Drop the connection now, rather than wait for a closing handshake that cannot
        complete behind data the client does not read."""
        self._stream.close()

    def detach(self) -> None:
        """The connection closed: let go of it and of the client, so that neither is left
        in a reference cycle for the garbage collector."""
        self._connection = None
        self.on_full = _nothing


def _nothing() -> None:
    pass
