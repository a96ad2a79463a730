"""RFC 6455 strictness that Tornado's WebSocket protocol leaves out.

Tornado echoes any close code it receives, even invalid ones (0, 999, 1005, ...), accepts
unmasked frames from a client, and on invalid UTF-8 or a frame that breaks the framing rules
drops the connection without a close frame. RFC 6455 asks for a 1002 (protocol error) close for
a bad frame and 1007 for text that is not UTF-8, and says why in the close frame, which clients
and the Autobahn test suite check. This subclass does that, and remembers why the server closed
a connection so that the event log can say it (1009 message too big, ...). Close reasons are cut
to what a close frame can carry, where Tornado raises ValueError.

It also has the handler hold replies back while more input is already read (``Client._hold``),
and write them before waiting for more input or writing a frame of its own. It overrides
``WebSocketProtocol13._receive_frame``, ``_handle_message``, ``_read_bytes`` and ``_write_frame``
and leans on a few of Tornado's private attributes, so the supported Tornado range is pinned in
``pyproject.toml`` and the behaviour is covered by the tests and the conformance run.
"""

from __future__ import annotations

import struct
from typing import Any

from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13, _DecompressTooLargeError

__all__ = ["EndpointProtocol", "close_reason", "valid_close_code"]

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
OPCODES = frozenset(
    (OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG)
)
FIN = 0x80
RSV1 = 0x40  # permessage-deflate's "compressed" bit (RFC 7692)
MASKED = 0x80
WHOLE_MESSAGES = frozenset((FIN | OPCODE_TEXT, FIN | OPCODE_BINARY))  # without RSV bits
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009
MAX_CLOSE_REASON = 123  # bytes: a control frame's payload is at most 125, 2 of them the code


def valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4, and the IANA registry's 1012-1014)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_reason(text: str) -> str:
    """``text`` cut to the 123 UTF-8 bytes a close frame has room for, at a character boundary.

    Tornado raises ValueError for a longer reason instead of sending the close frame. Characters
    UTF-8 cannot encode (lone surrogates, as in an undecodable file name) become ``?``.
    """
    return text.encode("utf-8", "replace")[:MAX_CLOSE_REASON].decode("utf-8", "ignore")


class EndpointProtocol(WebSocketProtocol13):
    """Tornado's protocol, with checked frames, close frames and a 1007 close for invalid UTF-8."""

    _fragments_compressed = False  # the compressed bit of the fragmented message being read
    # For the wire keeper (ws_notebook.wire): where this protocol's first byte is in its socket's
    # count of bytes read, where the frame being read (or the last one) ends, and the stream read
    # this protocol awaits. Slots, not instance attributes: Tornado's protocol has 29 of those,
    # and past 30 CPython stops sharing the instance dict's keys (a 1.5 KiB dict per connection,
    # and slower attribute access on every frame).
    __slots__ = ("wire_base", "frame_end", "pending_read")

    async def _receive_frame_loop(self) -> None:
        self.wire_base = getattr(self.stream.socket, "received", 0) - self.stream._read_buffer_size
        self.frame_end = self.wire_base
        self.pending_read = None
        await super()._receive_frame_loop()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if reason is not None:
            reason = close_reason(reason)
        if not self.server_terminated and not self.client_terminated and (code or reason):
            # As Tornado does: a reason without a code goes out as 1000 (e.g. "ping timed out").
            self.handler.closed_by_server = (code or 1000, reason or "")
        super().close(code, reason)

    def _fail(self, code: int, reason: str) -> None:
        """Say why in a close frame, then drop the connection (RFC 6455 7.1.7)."""
        self.close(code, reason)
        self._abort()

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
        """Read one frame and hand a complete message or a control frame to ``_handle_message``.

        Replaces Tornado's parser, which drops TCP without a word on a frame that breaks the
        rules and accepts unmasked client frames. Here each rule is checked and a broken one is
        named in a 1002 close. Everything else is as Tornado does it: 1009 past
        ``max_message_size``, fragments joined, the compressed bit of a message's first frame
        kept for ``_handle_message``. This is the hot path: a masked, unfragmented text or binary
        frame, the common case, passes the rules in one ``if``, and a small frame's mask and
        payload are taken in one read.
        """
        head = await self._read_bytes(2)
        first, second = head[0], head[1]
        fragments = self._fragmented_message_buffer
        if first not in WHOLE_MESSAGES or second < MASKED or fragments is not None:
            problem = self._frame_problem(first, second)
            if problem is not None:
                self._fail(PROTOCOL_ERROR, problem)
                return
        length = second & 0x7F
        if length > 125:
            length = int.from_bytes(await self._read_bytes(2 if length == 126 else 8), "big")
        if length + (len(fragments) if fragments is not None else 0) > self.params.max_message_size:
            self._fail(TOO_BIG, "message too big")
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
        elif opcode == OPCODE_CONTINUATION:
            fragments.extend(data)
            if not first & FIN:
                return
            opcode = self._fragmented_message_opcode
            data = bytes(fragments)
            self._fragmented_message_buffer = None
            self._frame_compressed = self._fragments_compressed
        elif first & FIN:
            self._frame_compressed = (first & RSV1) != 0
        else:
            self._fragmented_message_opcode = opcode
            self._fragmented_message_buffer = bytearray(data)
            self._fragments_compressed = (first & RSV1) != 0
            return
        handled = self._handle_message(opcode, data)
        if handled is not None:
            await handled

    def _frame_problem(self, first: int, second: int) -> str | None:
        """The RFC 6455 rule a frame header breaks, if any (for all but plain whole messages)."""
        opcode = first & 0x0F
        control = opcode & 0x8
        if second < MASKED:
            return "unmasked frame from client"  # 5.1
        if opcode not in OPCODES:
            return f"reserved opcode 0x{opcode:X}"
        if first & 0x20:
            return "RSV2 set without an extension"
        if first & 0x10:
            return "RSV3 set without an extension"
        if first & RSV1:
            if self._decompressor is None:
                return "RSV1 set without an extension"
            if control or opcode == OPCODE_CONTINUATION:  # RFC 7692 6: first data frames only
                return f"RSV1 set on a {'control' if control else 'continuation'} frame"
        if control:
            if not first & FIN:
                return "fragmented control frame"
            if second & 0x7F > 125:
                return "control frame payload over 125 bytes"
        elif opcode == OPCODE_CONTINUATION:
            if self._fragmented_message_buffer is None:
                return "continuation frame without a message to continue"
        elif self._fragmented_message_buffer is not None:
            return "new message before the fragmented one ended"
        return None

    def _write_frame(self, fin: bool, opcode: int, data: bytes, flags: int = 0) -> Any:
        self.handler.output_due()  # replies held back go before a pong, a close, ...
        return super()._write_frame(fin, opcode, data, flags)

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if self.client_terminated:
            return None
        if self.server_terminated and opcode in (OPCODE_TEXT, OPCODE_BINARY):
            return None  # we are closing: the peer's last messages reach no handler (RFC 6455 1.4)
        if opcode in (OPCODE_TEXT, OPCODE_BINARY) and self.stream._read_buffer_size:
            self.handler.hold_output()  # more input is here already: answer it all in one write
        if opcode == OPCODE_TEXT:
            return self._text_message(data)
        if opcode == OPCODE_CLOSE:
            return self._close_frame(data)
        if opcode == OPCODE_PING and self.frame_end <= getattr(self.stream.socket, "ponged", 0):
            self.handler.on_ping(data)  # the wire keeper answered it while the loop was busy
            return None
        return super()._handle_message(opcode, data)

    def _text_message(self, data: bytes) -> Any:
        if self._frame_compressed:
            try:
                data = self._decompressor.decompress(data)
            except _DecompressTooLargeError:
                self._fail(TOO_BIG, "message too big after decompression")
                return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.close(INVALID_DATA, "text message is not valid UTF-8")
            return None
        self._message_bytes_in += len(data)
        return self._run_callback(self.handler.on_message, text)

    def _close_frame(self, data: bytes) -> None:
        """The peer closes: echo its code, or answer a malformed close frame with 1002/1007."""
        self.client_terminated = True
        problem: tuple[int, str] | None = None
        if len(data) == 1:
            problem = (PROTOCOL_ERROR, "close frame payload of 1 byte")
        elif len(data) >= 2:
            self.close_code = struct.unpack(">H", data[:2])[0]
            try:
                self.close_reason = data[2:].decode("utf-8")
            except UnicodeDecodeError:
                problem = (INVALID_DATA, "close reason is not valid UTF-8")
            if not valid_close_code(self.close_code):
                problem = (PROTOCOL_ERROR, f"invalid close code {self.close_code}")
        if problem is not None:
            self.handler.closed_by_server = problem
            self.close(*problem)
        else:
            self.close(self.close_code)
