"""RFC 6455 strictness that Tornado's WebSocket protocol leaves out.

Tornado echoes any close code it receives, even invalid ones (0, 999, 1005, ...), and drops the
connection without a close frame on invalid UTF-8. RFC 6455 asks for a 1002 (protocol error)
close for a bad close frame and 1007 for text that is not UTF-8, and says why in the close frame,
which clients and the Autobahn test suite check. This subclass does that, and remembers why the
server closed a connection so that the event log can say it (1009 message too big, ...).

It also has the handler hold replies back while more input is already read (``Client._hold``),
and write them before waiting for more input or writing a frame of its own. It overrides
``WebSocketProtocol13._handle_message``, ``_read_bytes`` and ``_write_frame`` and leans on a few
of Tornado's private attributes, so the supported Tornado range is pinned in ``pyproject.toml``
and the behaviour is covered by the tests and the conformance run.
"""

from __future__ import annotations

import struct
from typing import Any

from tornado.websocket import WebSocketProtocol13, _DecompressTooLargeError

__all__ = ["EndpointProtocol", "valid_close_code"]

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009


def valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4, and the IANA registry's 1012-1014)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class EndpointProtocol(WebSocketProtocol13):
    """Tornado's protocol, with checked close frames and a 1007 close for invalid UTF-8."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if not self.server_terminated and not self.client_terminated and (code or reason):
            # As Tornado does: a reason without a code goes out as 1000 (e.g. "ping timed out").
            self.handler.closed_by_server = (code or 1000, reason or "")
        super().close(code, reason)

    async def _read_bytes(self, n: int) -> bytes:
        stream = self.stream
        if stream._read_buffer_size >= n:  # already read: take it without a Future and callbacks
            data = stream._consume(n)
        else:
            self.handler.output_due()  # input used up: write the replies held back, then wait
            data = await stream.read_bytes(n)
        self._wire_bytes_in += n
        return data

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
        return super()._handle_message(opcode, data)

    def _text_message(self, data: bytes) -> Any:
        if self._frame_compressed:
            try:
                data = self._decompressor.decompress(data)
            except _DecompressTooLargeError:
                self.close(TOO_BIG, "message too big after decompression")
                self._abort()
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
