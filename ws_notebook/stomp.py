"""STOMP 1.0, 1.1 and 1.2, server side: frames, a session per connection, and a simple broker.

A :class:`StompSession` speaks STOMP over any transport that carries text messages: a SockJS
session or a raw WebSocket (``ws_notebook.sockjs``), whose ``send(text)`` and
``close(code, reason)`` it calls, and which calls its ``on_message(data)`` and ``on_close()``.

- ``CONNECT``/``STOMP`` → ``CONNECTED``: the highest version both sides accept (no
  ``accept-version``: 1.0), and heart-beats, negotiated as the specification says.
- ``SUBSCRIBE``/``UNSUBSCRIBE`` (by ``id``), ``SEND`` (to the :class:`Broker`'s ``/topic/...`` and
  ``/queue/...`` subscribers, or to what a subclass routes in :meth:`StompSession.on_send`),
  ``MESSAGE``, ``RECEIPT`` for any frame with a ``receipt`` header (once it is dealt with),
  ``BEGIN``/``COMMIT``/``ABORT`` (the transaction's frames wait for its ``COMMIT``), ``ACK``/``NACK``
  (accepted: every message counts as delivered when sent), ``DISCONNECT``.
- A malformed or forbidden frame gets an ``ERROR`` frame naming the problem, then the
  connection is closed: an unknown command, a missing header, a frame or content-length over the
  limit, an invalid escape in a 1.1/1.2 header, text that is not UTF-8.
- Frames may come several to a message, or split over messages (stomp.js 2.x splits frames
  over 16 KiB); what waits to be parsed, and what a transaction holds, is bounded by ``max_frame``.

Bodies are UTF-8 text (the transports carry text); a frame that is not is an error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .codes import CloseCode
from .errors import Error

__all__ = ["Broker", "Frame", "Parser", "StompError", "StompSession", "Subscription", "encode"]

logger = logging.getLogger("ws_notebook")

VERSIONS = ("1.0", "1.1", "1.2")
CLIENT_COMMANDS = frozenset(
    [
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    ]
)
ACK_MODES = ("auto", "client", "client-individual")
MAX_HEADERS = 1000
MAX_SUBSCRIPTIONS = 1000
PROTOCOL_ERROR = 1002
_ids = itertools.count(1)
_UNESCAPE = {
    "1.1": {"n": "\n", "c": ":", "\\": "\\"},
    "1.2": {"n": "\n", "c": ":", "\\": "\\", "r": "\r"},
}
_ESCAPE_11 = str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c"})
_ESCAPE_12 = str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"})
_ESCAPES = re.compile(r"\\(.?)", re.DOTALL)


class StompError(Error):
    """A frame the server refuses: ``message`` goes in the ERROR frame's header, ``details`` in
    its body."""

    def __init__(self, message: str, details: str = "", **headers: str) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or message
        self.headers = headers


@dataclass
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    def require(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise StompError(f"{self.command} frame has no '{name}' header")
        return value


def encode(command: str, headers: dict[str, str], body: str = "", version: str = "1.2") -> str:
    """A frame as text: the command, escaped headers (not for CONNECTED), a content-length
    when there is a body, the body, NUL."""
    lines = [command]
    escape = (
        None
        if command == "CONNECTED" or version == "1.0"
        else (_ESCAPE_12 if version == "1.2" else _ESCAPE_11)
    )
    for name, value in headers.items():
        if escape is not None:
            name, value = name.translate(escape), value.translate(escape)
        else:  # STOMP 1.0 has no escapes: a line break would end the header
            value = value.replace("\n", " ").replace("\r", " ")
        lines.append(f"{name}:{value}")
    if body:
        lines.append(f"content-length:{len(body.encode('utf-8', 'surrogatepass'))}")
    return "\n".join(lines) + "\n\n" + body + "\0"


class Parser:
    """Frames from the bytes a client sends, as they come; heart-beats (bare EOLs) skipped.

    ``version`` decides the header escapes (set once CONNECT is answered; CONNECT itself is
    never escaped). :meth:`next` returns the next complete frame or None; it raises
    :class:`StompError` for a malformed one. ``max_frame`` bounds a frame, and what may wait
    unparsed.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.version = "1.0"
        self._buffer = bytearray()

    @property
    def waiting(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> Frame | None:
        buffer = self._buffer
        start = 0
        while start < len(buffer) and buffer[start] in b"\r\n":  # heart-beats
            start += 1
        if start:
            del buffer[:start]
        if not buffer:
            return None
        end, gap = _headers_end(buffer)
        if end < 0:
            self._check_size(len(buffer), "its headers")
            return None
        head = bytes(buffer[:end])
        body_at = end + gap
        command, headers = self._head(head)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise StompError(
                    f"invalid content-length {length!r}", "content-length must be a number of bytes"
                )
            size = int(length)
            self._check_size(body_at + size + 1, f"content-length {size}")
            if len(buffer) < body_at + size + 1:
                return None
            if buffer[body_at + size] != 0:
                raise StompError(
                    "frame does not end where its content-length says",
                    f"content-length is {size}, but byte {size} of the body is not NUL",
                )
            stop = body_at + size
        else:
            stop = buffer.find(0, body_at)
            if stop < 0:
                self._check_size(len(buffer), "its body")
                return None
        self._check_size(stop + 1, "the frame")
        body = bytes(buffer[body_at:stop])
        del buffer[: stop + 1]
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise StompError(f"{command} frame's body is not UTF-8 text") from None
        return Frame(command, headers, text)

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_frame:
            raise StompError(
                "frame too large",
                f"{what} would make the frame over {self.max_frame} bytes, the server's limit",
            )

    def _head(self, head: bytes) -> tuple[str, dict[str, str]]:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            raise StompError("frame headers are not UTF-8 text") from None
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        command = lines[0]
        if command not in CLIENT_COMMANDS:
            shown = command if len(command) <= 40 else command[:37] + "..."
            raise StompError(
                f"unknown command {shown!r}",
                f"a client frame starts with one of {', '.join(sorted(CLIENT_COMMANDS))}",
            )
        if len(lines) - 1 > MAX_HEADERS:
            raise StompError(f"too many headers (over {MAX_HEADERS})")
        unescape = None if command in ("CONNECT", "STOMP") else _UNESCAPE.get(self.version)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                shown = line if len(line) <= 40 else line[:37] + "..."
                raise StompError(f"malformed header line {shown!r}", "a header is NAME:VALUE")
            if unescape is not None:
                name, value = _unescape(name, unescape), _unescape(value, unescape)
            headers.setdefault(name, value)  # repeated: the first one counts
        return command, headers


def _headers_end(buffer: bytearray) -> tuple[int, int]:
    """Where the headers end (the blank line's start) and how long the blank line is."""
    lf = buffer.find(b"\n\n")
    crlf = buffer.find(b"\n\r\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 3
    return (lf, 2) if lf >= 0 else (-1, 0)


def _unescape(text: str, table: dict[str, str]) -> str:
    if "\\" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        replaced = table.get(match[1])
        if replaced is None:
            raise StompError(
                f"invalid escape sequence {match[0]!r} in a header",
                "headers may escape only \\n, \\c, \\\\ (and \\r in STOMP 1.2)",
            )
        return replaced

    return _ESCAPES.sub(one, text)


class Transport(Protocol):
    """What a STOMP session runs over (``ws_notebook.sockjs.Session`` is one)."""

    def send(self, message: str) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass(eq=False)
class Subscription:
    session: StompSession
    id: str
    destination: str
    ack: str = "auto"


class Broker:
    """Subscriptions by destination, across sessions: SEND to ``/topic/x`` reaches them all."""

    def __init__(self) -> None:
        self._by_destination: dict[str, set[Subscription]] = {}

    def add(self, subscription: Subscription) -> None:
        self._by_destination.setdefault(subscription.destination, set()).add(subscription)

    def remove(self, subscription: Subscription) -> None:
        subscribed = self._by_destination.get(subscription.destination)
        if subscribed is not None:
            subscribed.discard(subscription)
            if not subscribed:
                del self._by_destination[subscription.destination]

    def subscribers(self, destination: str) -> list[Subscription]:
        return list(self._by_destination.get(destination, ()))

    def publish(self, destination: str, body: str, content_type: str = "text/plain") -> int:
        """A MESSAGE to every subscriber of ``destination``; how many got it."""
        sent = 0
        for subscription in self.subscribers(destination):
            sent += subscription.session.message(subscription, body, content_type)
        return sent


class StompSession:
    """One client's STOMP connection. Subclasses route destinations (:meth:`on_send`) and hear
    of subscriptions and of the end; each hook may return an awaitable, which is awaited
    before the next frame is handled (frames are handled in order, one at a time)."""

    server_name = "ws_notebook"

    def __init__(
        self,
        transport: Transport,
        broker: Broker,
        *,
        max_frame: int = 10 * 1024 * 1024,
        heart_beat: tuple[int, int] = (10_000, 10_000),
        connect_timeout: float | None = None,
    ) -> None:
        self.transport = transport
        self.broker = broker
        self.id = f"stomp-{next(_ids)}"
        self.version: str | None = None  # once connected
        self.subscriptions: dict[str, Subscription] = {}
        self.heart_beat = heart_beat  # what the server offers: (sends every, wants every) ms
        self.closed = False  # the connection ended
        self._closing = False  # the server closes it
        self.disconnected = False  # the client asked, with DISCONNECT
        self._parser = Parser(max_frame)
        self._ready: deque[Frame] = deque()  # frames released by a COMMIT, before new ones
        self._busy: asyncio.Future | None = None
        self._transactions: dict[str, list[Frame]] = {}
        self._held = 0  # bytes of frames transactions hold
        self._message_ids = itertools.count(1)
        self._last_in = time.monotonic()
        self._timers: list[asyncio.TimerHandle] = []
        # The heart-beat this server sends, once agreed: what and how often (seconds), so that
        # the thread keeping the wire alive while the kernel is busy sends it too (see wire.py).
        self.beat: tuple[str, float] | None = None
        if connect_timeout:  # a connection that never says CONNECT does not hold a session
            loop = asyncio.get_running_loop()
            self._timers.append(
                loop.call_later(connect_timeout, self._connect_due, connect_timeout)
            )

    # -- the transport's side ----------------------------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        if self.closed:
            return
        self._last_in = time.monotonic()
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        self._parser.feed(data)
        if self._busy is None:
            self._drain()
        elif self._parser.waiting > 2 * self._parser.max_frame:  # behind a slow handler
            self.error(
                StompError(
                    "too much input waiting",
                    f"over {2 * self._parser.max_frame} bytes of frames wait to be handled",
                )
            )

    def on_close(self) -> None:
        """The transport closed (the client left, or the server closed it)."""
        if self.closed:
            return
        self.closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for subscription in self.subscriptions.values():
            self.broker.remove(subscription)
        self.subscriptions.clear()
        if self._busy is not None:
            self._busy.cancel()
        self.on_end()

    # -- what the server sends -------------------------------------------------------------

    def send_frame(self, command: str, headers: dict[str, str], body: str = "") -> None:
        if not self.closed and not self._closing:
            self.transport.send(encode(command, headers, body, self.version or "1.2"))

    def message(
        self, subscription: Subscription, body: str, content_type: str = "text/plain"
    ) -> int:
        """A MESSAGE for one subscription; 1 if it was sent."""
        if self.closed:
            return 0
        message_id = f"{self.id}-{next(self._message_ids)}"
        headers = {
            "subscription": subscription.id,
            "message-id": message_id,
            "destination": subscription.destination,
            "content-type": content_type,
        }
        if subscription.ack != "auto" and self.version == "1.2":
            headers["ack"] = message_id
        self.send_frame("MESSAGE", headers, body)
        return 1

    def deliver(self, destination: str, body: str, content_type: str = "text/plain") -> int:
        """A MESSAGE to each of this session's subscriptions to ``destination``."""
        return sum(
            self.message(s, body, content_type)
            for s in list(self.subscriptions.values())
            if s.destination == destination
        )

    def subscribed_to(self, destination: str) -> bool:
        return any(s.destination == destination for s in self.subscriptions.values())

    def error(self, error: StompError, frame: Frame | None = None) -> None:
        """Send an ERROR frame, then close the connection."""
        if self.closed:
            return
        headers = {"message": error.message, "content-type": "text/plain", **error.headers}
        if frame is not None and "receipt" in frame.headers:
            headers["receipt-id"] = frame.headers["receipt"]
        self.send_frame("ERROR", headers, error.details)
        self.close(PROTOCOL_ERROR, error.message)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection (``on_close`` follows, from the transport)."""
        if self.closed or self._closing:
            return
        self._closing = True
        self.transport.close(code, reason)
        self.on_close()

    # -- hooks for subclasses ------------------------------------------------------------------

    def on_send(self, frame: Frame) -> Any:
        """SEND: to the broker's subscribers of ``/topic/...`` and ``/queue/...``."""
        destination = frame.headers["destination"]
        if not destination.startswith(("/topic/", "/queue/")):
            raise StompError(f"no destination {destination!r}", self.destinations_help())
        content_type = frame.headers.get("content-type", "text/plain")
        self.broker.publish(destination, frame.body, content_type)
        return None

    def destinations_help(self) -> str:
        return "SEND to /topic/NAME or /queue/NAME reaches their subscribers"

    def on_subscribe(self, subscription: Subscription) -> Any:
        return None

    def on_unsubscribe(self, subscription: Subscription) -> Any:
        return None

    def on_end(self) -> None:
        pass

    # -- frames, in order ----------------------------------------------------------------------

    def _frames(self) -> Iterator[Frame]:
        while not self.closed:
            if self._ready:
                yield self._ready.popleft()
                continue
            frame = self._parser.next()
            if frame is None:
                return
            yield frame

    def _drain(self) -> None:
        """Handle the frames waiting, until one needs to be awaited (then go on after it)."""
        try:
            for frame in self._frames():
                pending = self._handle(frame)
                if pending is not None:
                    self._busy = asyncio.ensure_future(self._await(pending, frame))
                    return
                self._receipt(frame)
        except StompError as error:
            self.error(error)

    async def _await(self, pending: Any, frame: Frame) -> None:
        try:
            await pending
        except StompError as error:
            self._busy = None
            self.error(error, frame)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("STOMP session %s: handling %s failed", self.id, frame.command)
        self._busy = None
        self._receipt(frame)
        self._drain()

    def _receipt(self, frame: Frame) -> None:
        receipt = frame.headers.get("receipt")
        if receipt is not None and frame.command not in ("CONNECT", "STOMP", "DISCONNECT"):
            self.send_frame("RECEIPT", {"receipt-id": receipt})

    def _handle(self, frame: Frame) -> Any:
        try:
            return self._dispatch(frame)
        except StompError as error:
            self.error(error, frame)
            return None

    def _dispatch(self, frame: Frame) -> Any:
        command = frame.command
        if command in ("CONNECT", "STOMP"):
            return self._connect(frame)
        if self.version is None:
            raise StompError(f"expected CONNECT or STOMP first, got {command}")
        transaction = frame.headers.get("transaction")
        if transaction is not None and command in ("SEND", "ACK", "NACK"):
            return self._hold(transaction, frame)
        return getattr(self, f"_{command.lower()}")(frame)

    def _connect(self, frame: Frame) -> None:
        if self.version is not None:
            raise StompError("already connected: a second CONNECT")
        accepted = [v.strip() for v in frame.headers.get("accept-version", "1.0").split(",")]
        common = [v for v in VERSIONS if v in accepted]
        if not common:
            raise StompError(
                "no common STOMP version",
                f"the client accepts {', '.join(accepted)}; this server speaks "
                f"{', '.join(VERSIONS)}",
                version=",".join(VERSIONS),
            )
        self.version = self._parser.version = common[-1]
        headers = {"version": self.version, "server": self.server_name, "session": self.id}
        if self.version != "1.0":
            headers["heart-beat"] = f"{self.heart_beat[0]},{self.heart_beat[1]}"
            self._start_heart_beats(frame.headers.get("heart-beat", "0,0"))
        self.send_frame("CONNECTED", headers)

    def _connect_due(self, seconds: float) -> None:
        if self.version is None:
            self.error(StompError(f"no CONNECT frame within {seconds:g} s"))

    def _start_heart_beats(self, offered: str) -> None:
        parts = offered.split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise StompError(
                f"invalid heart-beat header {offered!r}",
                "heart-beat is two numbers of milliseconds, as 10000,10000",
            )
        client_sends, client_wants = (int(p) for p in parts)
        server_sends, server_wants = self.heart_beat
        loop = asyncio.get_running_loop()
        if server_sends and client_wants:
            every = max(server_sends, client_wants) / 1000

            def beat() -> None:
                self.transport.send("\n")  # a heart-beat: an EOL
                self._timers.append(loop.call_later(every, beat))

            self.beat = ("\n", every)
            self._timers.append(loop.call_later(every, beat))
        if client_sends and server_wants:
            every = max(client_sends, server_wants) / 1000

            def check(due: float) -> None:
                silent = time.monotonic() - self._last_in
                if silent > 2 * every and loop.time() - due < every:
                    self.close(
                        CloseCode.GOING_AWAY, f"no heart-beat from the client for {silent:.1f} s"
                    )
                    return
                # Checked again later; also when the check itself ran late: the loop was busy
                # (a cell blocked the kernel), and the client's beats may still be unread.
                self._timers.append(loop.call_later(every, check, loop.time() + every))

            self._timers.append(loop.call_later(every, check, loop.time() + every))

    def _send(self, frame: Frame) -> Any:
        frame.require("destination")
        return self.on_send(frame)

    def _subscribe(self, frame: Frame) -> Any:
        destination = frame.require("destination")
        sub_id = frame.headers.get("id")
        if sub_id is None:
            if self.version != "1.0":
                raise StompError("SUBSCRIBE frame has no 'id' header")
            sub_id = destination
        if sub_id in self.subscriptions:
            raise StompError(f"subscription id {sub_id!r} is in use already")
        ack = frame.headers.get("ack", "auto")
        if ack not in ACK_MODES:
            raise StompError(f"invalid ack mode {ack!r}", f"ack is one of {', '.join(ACK_MODES)}")
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise StompError(f"too many subscriptions (over {MAX_SUBSCRIPTIONS})")
        subscription = Subscription(self, sub_id, destination, ack)
        self.subscriptions[sub_id] = subscription
        self.broker.add(subscription)
        return self.on_subscribe(subscription)

    def _unsubscribe(self, frame: Frame) -> Any:
        sub_id = frame.headers.get("id")
        if sub_id is None and self.version == "1.0":
            sub_id = frame.headers.get("destination")
        if sub_id is None:
            raise StompError("UNSUBSCRIBE frame has no 'id' header")
        subscription = self.subscriptions.pop(sub_id, None)
        if subscription is None:
            return None  # unknown or gone already: nothing to do
        self.broker.remove(subscription)
        return self.on_unsubscribe(subscription)

    def _ack(self, frame: Frame) -> None:
        frame.require("id" if self.version == "1.2" else "message-id")

    _nack = _ack

    def _begin(self, frame: Frame) -> None:
        name = frame.require("transaction")
        if name in self._transactions:
            raise StompError(f"transaction {name!r} has begun already")
        self._transactions[name] = []

    def _commit(self, frame: Frame) -> None:
        held = self._end_transaction(frame)
        for waiting in held:
            del waiting.headers["transaction"]
        self._ready.extendleft(reversed(held))  # before anything sent after the COMMIT

    def _abort(self, frame: Frame) -> None:
        self._end_transaction(frame)

    def _end_transaction(self, frame: Frame) -> list[Frame]:
        name = frame.require("transaction")
        held = self._transactions.pop(name, None)
        if held is None:
            raise StompError(f"no transaction {name!r}", "BEGIN it first")
        self._held -= sum(len(f.body) for f in held)
        return held

    def _hold(self, name: str, frame: Frame) -> None:
        held = self._transactions.get(name)
        if held is None:
            raise StompError(f"no transaction {name!r}", "BEGIN it first")
        self._held += len(frame.body)
        if self._held > self._parser.max_frame:
            raise StompError("transactions too large", f"over {self._parser.max_frame} bytes held")
        held.append(frame)

    def _disconnect(self, frame: Frame) -> None:
        self.disconnected = True
        receipt = frame.headers.get("receipt")
        if receipt is not None:
            self.send_frame("RECEIPT", {"receipt-id": receipt})
        self.close(CloseCode.NORMAL, "DISCONNECT")
