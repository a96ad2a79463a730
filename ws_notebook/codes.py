"""The WebSocket vocabulary, defined once: close codes, opcodes and frame header bits.

Close codes are an ``IntEnum``, so they compare equal to the ints handlers and clients use
(``client.close_code == 1000``) and show their name in logs (``CloseCode.GOING_AWAY``).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "Opcode", "close_reason", "valid_close_code"]


class CloseCode(IntEnum):
    """RFC 6455 7.4.1 and the IANA registry: why a connection closed."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server stops or the endpoint is unmounted
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never sent: a close frame without a code
    ABNORMAL = 1006  # never sent: the connection ended without a close frame
    INVALID_DATA = 1007  # text that is not UTF-8
    POLICY_VIOLATION = 1008  # here: a client that does not read its send queue
    TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013  # here: the endpoint has max_connections clients
    BAD_GATEWAY = 1014

    def __str__(self) -> str:
        """The number, on every Python (3.10's IntEnum shows ``CloseCode.NORMAL``)."""
        return str(self.value)


class Opcode(IntEnum):
    """RFC 6455 5.2: what a frame carries."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


FIN = 0x80  # first byte: the last frame of a message
RSV1 = 0x40  # first byte: permessage-deflate's "compressed" bit (RFC 7692)
MASKED = 0x80  # second byte: a client's frame is masked
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
