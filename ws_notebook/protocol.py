"""RFC 6455 strictness that Tornado's WebSocket protocol leaves out.

Tornado echoes any close code it receives, even invalid ones (0, 999, 1005, ...), accepts
unmasked frames from a client, and on invalid UTF-8 or a frame that breaks the framing rules
drops the connection without a close frame. RFC 6455 asks for a 1002 (protocol error) close for
a bad frame and 1007 for text that is not UTF-8, and says why in the close frame, which clients
and the Autobahn test suite check. This subclass does that, and remembers why the server closed
a connection so that the event log can say it (1009 message too big, ...). Close reasons are cut
to what a close frame can carry, where Tornado raises ValueError.

The frame reader it plugs these rules into, and the holding back of replies while more input
is already read, are in ``ws_notebook.tornado_internals`` with the rest of what leans on
Tornado's private names.
"""

from __future__ import annotations

import struct

from .codes import FIN, MASKED, RSV1, CloseCode, Opcode, close_reason, valid_close_code
from .tornado_internals import TornadoProtocol

__all__ = ["EndpointProtocol", "close_reason", "valid_close_code"]

OPCODES = frozenset(Opcode)


class EndpointProtocol(TornadoProtocol):
    """Tornado's protocol, with checked frames, close frames and a 1007 close for invalid UTF-8."""

    __slots__ = ()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if reason is not None:
            reason = close_reason(reason)
        if not self.server_terminated and not self.client_terminated and (code or reason):
            # As Tornado does: a reason without a code goes out as 1000 (e.g. "ping timed out").
            self.handler.closed_by_server = (code or CloseCode.NORMAL, reason or "")
        super().close(code, reason)

    def frame_problem(self, first: int, second: int) -> str | None:
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
            if not self.compressing:
                return "RSV1 set without an extension"
            if control or opcode == Opcode.CONTINUATION:  # RFC 7692 6: first data frames only
                return f"RSV1 set on a {'control' if control else 'continuation'} frame"
        if control:
            if not first & FIN:
                return "fragmented control frame"
            if second & 0x7F > 125:
                return "control frame payload over 125 bytes"
        elif opcode == Opcode.CONTINUATION:
            if not self.fragmented:
                return "continuation frame without a message to continue"
        elif self.fragmented:
            return "new message before the fragmented one ended"
        return None

    def close_frame(self, data: bytes) -> None:
        """The peer closes: echo its code, or answer a malformed close frame with 1002/1007."""
        self.client_terminated = True
        problem: tuple[int, str] | None = None
        if len(data) == 1:
            problem = (CloseCode.PROTOCOL_ERROR, "close frame payload of 1 byte")
        elif len(data) >= 2:
            self.close_code = struct.unpack(">H", data[:2])[0]
            try:
                self.close_reason = data[2:].decode("utf-8")
            except UnicodeDecodeError:
                problem = (CloseCode.INVALID_DATA, "close reason is not valid UTF-8")
            if not valid_close_code(self.close_code):
                problem = (CloseCode.PROTOCOL_ERROR, f"invalid close code {self.close_code}")
        if problem is not None:
            self.handler.closed_by_server = problem
            self.close(*problem)
        else:
            self.close(self.close_code)
