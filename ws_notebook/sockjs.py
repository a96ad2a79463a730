"""A SockJS server for Tornado: the transports SockJS clients use to reach ``/stomp`` and ``/js``.

SockJS (the protocol of the ``sockjs-client`` library) gives browsers a WebSocket-like
connection even where WebSockets are blocked, falling back to plain HTTP. A :class:`Service`
serves it under a prefix (``/stomp``):

- ``GET PREFIX`` greets, ``GET PREFIX/info`` says what the server offers (JSON);
- ``PREFIX/SERVER/SESSION/websocket``: a WebSocket carrying SockJS frames;
- ``PREFIX/SERVER/SESSION/xhr_streaming``, ``.../eventsource``, ``.../xhr`` (polling): HTTP
  responses that carry frames to the client, and ``.../xhr_send`` for what the client sends;
- ``PREFIX/websocket``: a raw WebSocket, no SockJS framing (STOMP clients that need no fallback).

Frames to the client: ``o`` (open), ``h`` (heartbeat, every 25 s), ``a["msg",...]`` (messages),
``c[code,"reason"]`` (close). A session without a receiving request for 5 s is closed; a
streaming response is ended after 128 KiB, and the client opens another. Not served: the
``iframe`` page and the ``jsonp``/``htmlfile`` transports. They exist for browsers without CORS,
and a ``<script>`` request carries no ``Origin``, which the access policy reads as a program's.

What a session carries is up to the service's ``factory``: it is called with each new
:class:`Session` and returns a :class:`Listener` (``on_message(text)``, ``on_close()``).
Every request first passes the service's ``guard`` (the server's token and origin policy), but
CORS preflights, which browsers send without credentials and which reveal nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, cast

from tornado.httputil import HTTPServerRequest, format_timestamp
from tornado.iostream import StreamBufferFullError, StreamClosedError
from tornado.web import HTTPError, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .codes import CloseCode, valid_close_code
from .protocol import EndpointProtocol
from .server import _TextErrors
from .tornado_internals import disconnect_on_finish, protocol_for

__all__ = ["Listener", "Service", "Session"]

logger = logging.getLogger("ws_notebook")

HEARTBEAT = 25.0  # seconds between "h" frames
DISCONNECT_DELAY = 5.0  # seconds a session waits for its next receiving request
RESPONSE_LIMIT = 128 * 1024  # bytes a streaming response carries before the client opens another
NOT_CACHED = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
ONE_YEAR = 365 * 24 * 3600
ANOTHER_CONNECTION = (2010, "Another connection still open")
INTERRUPTED = (CloseCode.PROTOCOL_ERROR, "Connection interrupted")
QUEUE_FULL = (CloseCode.POLICY_VIOLATION, "send queue full: the client does not read")

_S = TypeVar("_S", bound="Session")

# What SockJS asks servers to escape in JSON (besides what JSON escapes): characters browsers
# mangle, and surrogates, which cannot be encoded on their own.
_ESCAPE = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ud800-\udfff\ufff0-\uffff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match[0]):04x}"


def encode_messages(messages: Iterable[str]) -> str:
    """An ``a[...]`` frame."""
    text = json.dumps(list(messages), ensure_ascii=False, separators=(",", ":"))
    return "a" + _ESCAPE.sub(_escape, text)


def close_frame(code: int, reason: str) -> str:
    return "c" + json.dumps([code, reason], separators=(",", ":"))


class Listener(Protocol):
    """What a service's factory returns for a session: told of its messages and of its end."""

    def on_message(self, message: str | bytes) -> None: ...  # bytes: a raw WebSocket's binary

    def on_close(self) -> None: ...


class Receiver(Protocol):
    """Where a session's frames go: a WebSocket, or the HTTP response of a receiving request."""

    def write_frame(self, frame: str) -> None: ...

    def end(self, code: int, reason: str) -> None: ...


class Session:
    """One SockJS session: what the application sends and how it closes, whatever the transport.

    ``request`` is the request that opened it (its headers, remote address and query), and
    ``transport`` names the transport (``"websocket"``, ``"xhr_streaming"``, ``"raw websocket"``,
    ...). Once ended, ``close_code``/``close_reason`` say why (None: the client went away
    without a word) and ``closed_by_server`` who closed it.
    """

    def __init__(
        self, service: Service, key: str | None, request: HTTPServerRequest, transport: str
    ):
        self.service = service
        self.key = key  # the session id of HTTP sessions; never shown to the application
        self.request = request
        self.transport = transport
        self.listener: Listener | None = None
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by_server = False
        self._frame: str | None = None  # the close frame, once closed
        self._queue: list[str] = []
        self._queued = 0  # characters in the queue
        self._receiver: Receiver | None = None
        self._opened = False
        self._loop = asyncio.get_running_loop()
        self._expiry: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.TimerHandle | None = None

    @property
    def remote_ip(self) -> str:
        return self.request.remote_ip or ""

    def keepalive(self) -> tuple[str, float] | None:
        """The frame that keeps the client from giving up on a silent server, and how often
        (seconds): the application's own heart-beat if it has one (a STOMP session's EOL, which
        the client's STOMP layer sees), else SockJS's "h"."""
        beat = getattr(self.listener, "beat", None)
        if beat is not None:
            return encode_messages([beat[0]]), beat[1]
        return "h", self.service.heartbeat

    def send(self, message: str) -> None:
        """Queue a message; it goes out at once if a receiver is there."""
        if self.closed:
            return
        self._queue.append(message)
        self._queued += len(message)
        if self._queued > self.service.max_queue:  # let go of it all: the client does not read
            self._queue, self._queued = [], 0
            self.close(*QUEUE_FULL)
            return
        if self._receiver is not None:
            self._flush()

    def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        """End the session from the server: the client gets the close frame (after what is queued)."""
        if self.closed:
            return
        self._ended(code, reason, by_server=True)
        self._frame = close_frame(code, reason)
        receiver = self._receiver
        if receiver is not None:
            self._flush()
            if self._receiver is receiver:
                self._receiver = None
                receiver.write_frame(self._frame)
                receiver.end(code, reason)
        self._expire_later()

    # -- receivers come and go ------------------------------------------------------------

    def attach(self, receiver: Receiver) -> None:
        """A receiving request (or a WebSocket) arrived: send it what is due."""
        if self._receiver is not None:  # one at a time: the new one is told so
            receiver.write_frame(close_frame(*ANOTHER_CONNECTION))
            receiver.end(*ANOTHER_CONNECTION)
            return
        self._cancel_expiry()
        self._receiver = receiver
        if not self._opened:
            self._opened = True
            receiver.write_frame("o")
            self._beat(now=False)
            try:
                self.listener = self.service.factory(self)
            except Exception:
                logger.exception("SockJS %s: opening a session failed", self.service.prefix)
                self.close(CloseCode.INTERNAL_ERROR, "server error")
                return
        if self._queue and self._receiver is receiver:
            self._flush()
        if self.closed and self._receiver is receiver:  # nothing left but to say so
            self._receiver = None
            receiver.write_frame(self._frame or close_frame(*INTERRUPTED))
            receiver.end(self.close_code or CloseCode.NORMAL, self.close_reason or "")
            self._expire_later()

    def detach(self, receiver: Receiver, aborted: bool) -> None:
        """A receiver is done: its response ended (then wait for the next), or it broke off."""
        if self._receiver is not receiver:
            return
        self._receiver = None
        if aborted and not self.closed:
            # SockJS: a receiving request cut off by the network ends the session.
            self._ended(*INTERRUPTED, by_server=False)
            self._frame = close_frame(*INTERRUPTED)
        self._expire_later()

    def received(self, message: str | bytes) -> None:
        if self.closed or self.listener is None:
            return
        try:
            self.listener.on_message(message)
        except Exception:
            logger.exception("SockJS %s: a message's listener failed", self.service.prefix)

    def transport_closed(self, code: int | None, reason: str | None, by_server: bool) -> None:
        """The WebSocket under the session closed (the client closed it, or the protocol)."""
        self._receiver = None
        self._ended(code, reason, by_server)

    # -- inside ------------------------------------------------------------------------------

    def _flush(self) -> None:
        receiver, messages = self._receiver, self._queue
        self._queue, self._queued = [], 0
        if receiver is not None and messages:
            receiver.write_frame(encode_messages(messages))

    def _ended(self, code: int | None, reason: str | None, by_server: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code, self.close_reason, self.closed_by_server = code, reason, by_server
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self.service.forget(self, now=self.key is None)
        listener, self.listener = self.listener, None
        if listener is not None:
            try:
                listener.on_close()
            except Exception:
                logger.exception(
                    "SockJS %s: a session's close listener failed", self.service.prefix
                )

    def _beat(self, now: bool = True) -> None:
        """Send "h" to the receiver there is, every ``heartbeat`` seconds."""
        if self.closed:
            return
        if now and self._receiver is not None:
            self._receiver.write_frame("h")
        self._heartbeat = self._loop.call_later(self.service.heartbeat, self._beat)

    def _expire_later(self) -> None:
        """Without a receiver for ``disconnect_delay``, an open session is over; a closed one
        is forgotten (until then, receiving requests get its close frame)."""
        if self.key is None or self._receiver is not None:
            return
        self._cancel_expiry()
        self._expiry = self._loop.call_later(self.service.disconnect_delay, self._expire)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _expire(self) -> None:
        self._expiry = None
        if self._receiver is not None:
            return
        if not self.closed:
            self._ended(
                None,
                f"no receiving request for {self.service.disconnect_delay:g} s",
                by_server=False,
            )
        self.service.forget(self, now=True)


class Service:
    """SockJS at ``prefix``: the routes to mount, the sessions, and their settings.

    ``factory(session)`` makes each session's :class:`Listener`. ``guard(request)`` returns
    ``(status, reason)`` to refuse a request (None: it may go ahead). ``alive()`` says whether
    the server still serves: once it does not, every session is closed with 1001. Sessions
    are capped at ``max_sessions``; each queues at most ``max_queue`` characters for a client
    that does not read (past that it is closed with 1008).
    """

    def __init__(
        self,
        prefix: str,
        factory: Callable[[Session], Listener],
        *,
        guard: Callable[[HTTPServerRequest], tuple[int, str] | None] | None = None,
        alive: Callable[[], bool] | None = None,
        websocket: bool = True,
        cookie_needed: bool = False,
        subprotocols: Iterable[str] = (),
        heartbeat: float = HEARTBEAT,
        disconnect_delay: float = DISCONNECT_DELAY,
        response_limit: int = RESPONSE_LIMIT,
        max_sessions: int = 1000,
        max_queue: int = 16 * 1024 * 1024,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.factory = factory
        self.guard = guard
        self.alive = alive
        self.websocket = websocket
        self.cookie_needed = cookie_needed
        self.subprotocols = list(subprotocols)
        self.heartbeat = heartbeat
        self.disconnect_delay = disconnect_delay
        self.response_limit = response_limit
        self.max_sessions = max_sessions
        self.max_queue = max_queue
        self.sessions: dict[str, Session] = {}  # HTTP sessions by id, closed ones until forgotten
        self.live: set[Session] = set()  # every open session, WebSocket ones too
        self._watch: asyncio.TimerHandle | None = None

    def routes(self) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
        prefix, part = re.escape(self.prefix), "[^/.]+"
        session = f"{prefix}/{part}/({part})"
        spec = {"service": self}
        websockets = [
            (f"{prefix}/websocket", RawWebSocket, spec),
            (f"{session}/websocket", FramedWebSocket, spec),
        ]
        return [
            (f"{prefix}/?", Greeting, spec),
            (f"{prefix}/info", Info, spec),
            *(websockets if self.websocket else []),
            (f"{session}/xhr", XhrPolling, spec),
            (f"{session}/xhr_streaming", XhrStreaming, spec),
            (f"{session}/eventsource", EventSource, spec),
            (f"{session}/xhr_send", XhrSend, spec),
        ]

    def check(self, request: HTTPServerRequest) -> None:
        """Raise the HTTP error a request is refused with, if it is."""
        refused = self.guard(request) if self.guard is not None else None
        if refused is not None:
            raise HTTPError(*refused)
        if self.alive is not None and not self.alive():
            raise HTTPError(503, "the server is stopping")

    def make_room(self) -> None:
        """Refuse a new session (HTTP 503) when ``max_sessions`` are open."""
        if len(self.live) >= self.max_sessions:
            raise HTTPError(
                503, f"{self.prefix}: {self.max_sessions} SockJS sessions open already; try later"
            )

    def open(self, session: _S) -> _S:
        """Count a new session in, and watch that the server still serves while any is open."""
        self.make_room()
        key = session.key
        self.live.add(session)
        if key is not None:
            self.sessions[key] = session
        if self._watch is None and self.alive is not None:
            self._watch = session._loop.call_later(1.0, self._check_alive)
        return session

    def forget(self, session: Session, now: bool) -> None:
        self.live.discard(session)
        if now and session.key is not None and self.sessions.get(session.key) is session:
            del self.sessions[session.key]

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "server stopping") -> None:
        for session in list(self.live):
            session.close(code, reason)

    def websockets(self) -> list[tuple[Any, tuple[str, float]]]:
        """The WebSocket protocols of the sessions open on a WebSocket transport, each with its
        keepalive (see :meth:`Session.keepalive`): for the thread that keeps the wire alive
        while the loop is busy (:mod:`ws_notebook.wire`), which calls it from its own thread."""
        found = []
        for session in list(self.live):
            socket = session.socket if isinstance(session, RawSession) else session._receiver
            keepalive = session.keepalive()
            if isinstance(socket, _WebSocket) and socket.ws_connection and keepalive:
                found.append((socket.ws_connection, keepalive))
        return found

    def _check_alive(self) -> None:
        self._watch = None
        if self.alive is not None and not self.alive():
            self.close_all()
        if self.live:
            self._watch = asyncio.get_running_loop().call_later(1.0, self._check_alive)


# -- HTTP ----------------------------------------------------------------------------------------


class _Handler(_TextErrors, RequestHandler):
    """Access checks, CORS and caching headers shared by every SockJS request."""

    methods = "OPTIONS, GET"
    service: Service

    def initialize(self, service: Service) -> None:
        self.service = service

    def prepare(self) -> None:
        if self.request.method != "OPTIONS":  # a preflight carries no credentials: answer it
            self.service.check(self.request)

    def options(self, *args: str) -> None:
        self.set_status(204)
        self.set_header("Cache-Control", f"public, max-age={ONE_YEAR}")
        self.set_header("Expires", format_timestamp(time.time() + ONE_YEAR))
        self.set_header("Access-Control-Max-Age", str(ONE_YEAR))
        self.set_header("Access-Control-Allow-Methods", self.methods)
        self.cors()
        self.finish()

    def cors(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin:  # a page that passed the access policy (or a preflight): let it read
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Credentials", "true")
        else:
            self.set_header("Access-Control-Allow-Origin", "*")
        asked = self.request.headers.get("Access-Control-Request-Headers")
        if asked:
            self.set_header("Access-Control-Allow-Headers", asked)

    def not_cached(self) -> None:
        self.set_header("Cache-Control", NOT_CACHED)

    def cookie(self) -> None:
        if self.service.cookie_needed:  # for load balancers' sticky sessions, as SockJS has it
            value = self.get_cookie("JSESSIONID") or "dummy"
            try:
                self.set_cookie("JSESSIONID", value, path="/")
            except ValueError:
                self.set_cookie("JSESSIONID", "dummy", path="/")


class Greeting(_Handler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish("Welcome to SockJS!\n")


class Info(_Handler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.not_cached()
        self.cors()
        info = {
            "websocket": self.service.websocket,
            "origins": ["*:*"],
            "cookie_needed": self.service.cookie_needed,
            "entropy": secrets.randbits(32),
        }
        self.finish(json.dumps(info))


class XhrSend(_Handler):
    """``POST .../xhr_send``: a JSON array of messages for the session."""

    methods = "OPTIONS, POST"

    def post(self, session_key: str) -> None:
        session = self.service.sessions.get(session_key)
        if session is None or session.closed:
            raise HTTPError(404, "no such SockJS session")
        messages = self._messages()
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.not_cached()
        self.cors()
        self.cookie()
        self.set_status(204)
        self.finish()
        for message in messages:
            session.received(message)

    def _messages(self) -> list[str]:
        body = self.request.body
        if not body:
            raise HTTPError(500, "Payload expected.")
        try:
            messages = json.loads(body)
        except ValueError:
            raise HTTPError(500, "Broken JSON encoding.") from None
        if isinstance(messages, str):
            messages = [messages]
        if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
            raise HTTPError(500, "Broken JSON encoding.")
        return messages

    def _clear_representation_headers(self) -> None:
        pass  # Tornado drops Content-Type from a 204; SockJS clients want text/plain there


class _Receiving(_Handler):
    """A request that receives frames: one (polling) or a stream of them, until it ends."""

    methods = "OPTIONS, POST"
    transport = ""
    content_type = "application/javascript; charset=UTF-8"
    prelude = ""
    framing = "{}\n"
    streaming = True

    _done: asyncio.Future | None = None
    _sent = 0

    async def post(self, session_key: str) -> None:
        await self.receive(session_key)

    async def receive(self, session_key: str) -> None:
        self.set_header("Content-Type", self.content_type)
        self.not_cached()
        self.cors()
        self.cookie()
        self._done = asyncio.get_running_loop().create_future()
        session = self.service.sessions.get(session_key)
        if session is None:
            session = self.service.open(
                Session(self.service, session_key, self.request, self.transport)
            )
        self.session = session
        if self.request.version == "HTTP/1.0":  # no chunks: the body ends when the connection does
            disconnect_on_finish(self)
        if self.prelude:
            self._write(self.prelude)
            self._sent = 0  # the limit counts frames only
        session.attach(self)
        if not self._done.done():
            await self._done

    def write_frame(self, frame: str) -> None:
        if self.finished:
            return
        self._write(self.framing.format(frame))
        if not self.streaming or self._sent >= self.service.response_limit:
            self.session.detach(self, aborted=False)
            self.end(CloseCode.NORMAL, "")

    def end(self, code: int, reason: str) -> None:
        if not self.finished:
            with contextlib.suppress(StreamClosedError):
                self.finish()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _write(self, data: str) -> None:
        self._sent += len(data)
        stream = cast(Any, self.request.connection).stream  # an HTTP1Connection's
        stream.max_write_buffer_size = self.service.max_queue + len(data) + 64
        self.write(data)
        try:
            self.flush()
        except StreamBufferFullError:  # the client does not read what it asked for
            session = self.session
            session.detach(self, aborted=False)
            session.close(*QUEUE_FULL)
            stream.close()

    def on_connection_close(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.detach(self, aborted=True)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


class XhrPolling(_Receiving):
    transport = "xhr"
    streaming = False


class XhrStreaming(_Receiving):
    transport = "xhr_streaming"
    prelude = "h" * 2048 + "\n"  # browsers show a streamed response only after 2 KiB


class EventSource(_Receiving):
    methods = "OPTIONS, GET"
    transport = "eventsource"
    content_type = "text/event-stream"
    prelude = "\r\n"
    framing = "data: {}\r\n\r\n"

    async def get(self, session_key: str) -> None:
        await self.receive(session_key)


# -- WebSockets --------------------------------------------------------------------------------


class _WebSocket(_TextErrors, WebSocketHandler):
    """A WebSocket transport, with the server's stricter RFC 6455 protocol and its limits."""

    transport = ""
    service: Service
    session: Session
    closed_by_server: tuple[int, str] | None = None  # set by EndpointProtocol

    def initialize(self, service: Service) -> None:
        self.service = service

    def prepare(self) -> None:
        self.service.check(self.request)
        self.service.make_room()

    def check_origin(self, origin: str) -> bool:
        return True  # decided with the token in prepare(), by the service's guard

    def post(self, *args: str) -> None:
        self.set_status(405)
        self.set_header("Allow", "GET")
        self.clear_header("Content-Type")
        self.finish()

    def get_websocket_protocol(self) -> EndpointProtocol | None:
        return protocol_for(self, EndpointProtocol, None)

    def hold_output(self) -> None:
        pass

    def output_due(self) -> None:
        pass

    def on_close(self) -> None:
        session = self.__dict__.get("session")
        if session is None:
            return
        code, reason = self.close_code, self.close_reason
        if self.closed_by_server is not None:
            code, reason = self.closed_by_server
        session.transport_closed(code, reason, by_server=self.closed_by_server is not None)

    def send_text(self, data: str | bytes) -> None:
        connection = self.ws_connection
        if connection is None or connection.stream is None or connection.is_closing():
            return
        stream = connection.stream
        stream.max_write_buffer_size = self.service.max_queue + len(data) + 14
        try:
            written = self.write_message(data, binary=isinstance(data, bytes))
        except WebSocketClosedError:
            return
        except StreamBufferFullError:
            stream.max_write_buffer_size = None
            self.close(*QUEUE_FULL)
            stream.close()
            return
        written.add_done_callback(lambda done: done.cancelled() or done.exception())

    def end(self, code: int, reason: str) -> None:
        self.close(code if valid_close_code(code) else 1000, reason)


class FramedWebSocket(_WebSocket):
    """``.../SESSION/websocket``: SockJS frames over a WebSocket."""

    transport = "websocket"

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.session = self.service.open(Session(self.service, None, self.request, self.transport))
        self.session.attach(self)

    def write_frame(self, frame: str) -> None:
        self.send_text(frame)

    def on_message(self, message: str | bytes) -> None:
        if not message:
            return  # SockJS: empty messages are ignored
        try:
            messages = json.loads(message)
        except ValueError:
            messages = None
        if isinstance(messages, str):
            messages = [messages]
        if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
            self.close(1002, "Broken JSON encoding.")
            return
        for text in messages:
            self.session.received(text)


class RawWebSocket(_WebSocket):
    """``PREFIX/websocket``: messages as they are, no SockJS frames (a subprotocol may be agreed)."""

    transport = "raw websocket"

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        offered = set(subprotocols)
        return next((p for p in self.service.subprotocols if p in offered), None)

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        session = self.service.open(RawSession(self.service, self.request, self))
        self.session = session
        session.start()

    def on_message(self, message: str | bytes) -> None:
        self.session.received(message)


class RawSession(Session):
    """A raw WebSocket's session: each message goes out as one WebSocket message."""

    def __init__(self, service: Service, request: HTTPServerRequest, socket: RawWebSocket):
        super().__init__(service, None, request, RawWebSocket.transport)
        self.socket = socket
        self.subprotocol = socket.selected_subprotocol

    def start(self) -> None:
        self._opened = True
        try:
            self.listener = self.service.factory(self)
        except Exception:
            logger.exception("SockJS %s: opening a session failed", self.service.prefix)
            self.close(CloseCode.INTERNAL_ERROR, "server error")

    def send(self, message: str | bytes) -> None:
        if not self.closed:
            self.socket.send_text(message)

    def keepalive(self) -> tuple[str, float] | None:
        return getattr(self.listener, "beat", None)  # no SockJS frames: the application's only

    def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        if self.closed:
            return
        self._ended(code, reason, by_server=True)
        self.socket.end(code, reason)
