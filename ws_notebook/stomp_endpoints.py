"""The codbex platform's client protocol: SockJS + STOMP at ``/stomp`` and ``/js``, wired to endpoints.

Today's codbex front ends connect with ``new SockJS('/stomp')`` and a STOMP client, and talk to
an endpoint through destinations:

- SEND to ``/ws/stomp/ENDPOINT`` with a JSON body ``{"from": F, "text": T}``: the endpoint's
  ``on_message(T, client)`` runs; what it returns comes back to that session only, as a MESSAGE
  on ``/user/queue/reply/ENDPOINT`` with body ``{"from": F, "text": REPLY, "time": "HH:MM"}``. A
  handler's error, and a body that is not such JSON, go to ``/user/queue/errors/ENDPOINT``.
- The older shape: SEND to ``/ws/js/ENDPOINT``; replies are broadcast on
  ``/topic/messages/ENDPOINT`` to every session subscribed to it.
- Other ``/topic/...`` and ``/queue/...`` destinations are plain publish/subscribe.

A STOMP session becomes a client of an endpoint (a :class:`StompClient`) when it first sends to
it or subscribes to one of its destinations; ``on_open`` runs then, ``on_close`` when the session
ends. Such clients are clients like any other: in ``clients``, the event log, the live panel
(their remote address says ``(stomp, TRANSPORT)``), ``client.send`` (a MESSAGE on the session's
reply queue), ``broadcast`` (to every STOMP subscriber of the endpoint too) and
``client.close()`` (which ends the whole STOMP session). ``client.sender`` is the ``from`` of
its latest message.

The same STOMP runs over a plain WebSocket at ``/stomp/websocket`` (subprotocols
``v12.stomp``, ``v11.stomp``, ``v10.stomp``). Every request passes the server's token and origin
policy; frames are limited to ``--max-message-size``, sessions to ``--max-connections`` per
prefix, what waits for a client to ``--max-send-queue``; STOMP heart-beats follow
``--ping-interval``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from tornado.websocket import WebSocketClosedError

from .codes import CloseCode
from .connection import Client, ConnectionClosed, encode
from .outbox import Sent
from .sockjs import Service, Session
from .stomp import Broker, Frame, StompError, StompSession, Subscription

if TYPE_CHECKING:
    from .endpoint import Endpoint
    from .events import Event
    from .registry import Registry
    from .server import Server

__all__ = ["PREFIXES", "StompClient", "routes"]

PREFIXES = ("/stomp", "/js")
SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")
SEND_STOMP = "/ws/stomp/"
SEND_JS = "/ws/js/"
REPLY = "/user/queue/reply/"
ERRORS = "/user/queue/errors/"
TOPIC = "/topic/messages/"
JSON = "application/json"

_brokers: weakref.WeakKeyDictionary[Server, Broker] = weakref.WeakKeyDictionary()
_services: weakref.WeakKeyDictionary[Server, list[Service]] = weakref.WeakKeyDictionary()
_watched: weakref.WeakSet[Registry] = weakref.WeakSet()
_close_tasks: set[asyncio.Future] = set()
# The STOMP client whose message a handler is answering: replies say its "from".
_answering: ContextVar[StompClient | None] = ContextVar("ws_notebook_stomp", default=None)


def routes(server: Server) -> list[tuple[str, Any, dict[str, Any]]]:
    """The routes of SockJS + STOMP at ``/stomp`` and ``/js``, for ``Server.application()``."""
    broker = _brokers.setdefault(server, Broker())
    if server.registry not in _watched:
        _watched.add(server.registry)
        server.registry.subscribe(_handler_error)
    limits = server.limits
    serving: dict[str, Any] = {}

    def alive() -> bool:
        """The server still serves with the listener these routes were first reached through."""
        listener = server._http
        return listener is not None and serving.setdefault("listener", listener) is listener

    def guard(request: Any) -> tuple[int, str] | None:
        headers = request.headers
        return server.refusal(
            headers.get("Authorization"), request.query, headers.get("Origin"), request.host
        )

    def factory(prefix: str) -> Callable[[Session], PlatformSession]:
        def opened(session: Session) -> PlatformSession:
            return PlatformSession(session, broker, server.registry, prefix, limits)

        return opened

    services = [
        Service(
            prefix,
            factory(prefix),
            guard=guard,
            alive=alive,
            subprotocols=SUBPROTOCOLS,
            max_sessions=limits.max_connections,
            max_queue=limits.max_send_queue,
        )
        for prefix in PREFIXES
    ]
    _services[server] = services
    return [route for service in services for route in service.routes()]


def websockets(server: Server) -> list[tuple[Any, str, tuple[str, float]]]:
    """The server's SockJS and STOMP sessions open on a WebSocket: protocol, prefix, keepalive
    (for the wire keeper; see ``Service.websockets``)."""
    return [
        (protocol, service.prefix, keepalive)
        for service in _services.get(server, ())
        for protocol, keepalive in service.websockets()
    ]


def _handler_error(endpoint: Endpoint, event: Event) -> None:
    """A handler of a STOMP client raised: say so on the session's errors queue."""
    if event.kind != "error" or " raised " not in event.detail:
        return
    client = endpoint.clients.get(event.client)
    if isinstance(client, StompClient):
        client._session.deliver(ERRORS + endpoint.name, event.detail)


class PlatformSession(StompSession):
    """A STOMP session whose destinations reach the registry's endpoints."""

    transport: Session  # a SockJS session: it tells how the connection closed

    def __init__(
        self, transport: Session, broker: Broker, registry: Registry, prefix: str, limits: Any
    ) -> None:
        beat = int(limits.ping_interval * 1000)  # ms: heart-beats as often as WebSocket pings
        super().__init__(
            transport,
            broker,
            max_frame=limits.max_message_size,
            heart_beat=(beat, beat),
            connect_timeout=limits.handshake_timeout,
        )
        self.registry = registry
        self.prefix = prefix
        self.limits = limits
        self.clients: dict[str, StompClient] = {}  # by endpoint name

    def destinations_help(self) -> str:
        return (
            "SEND to /ws/stomp/ENDPOINT (replies on /user/queue/reply/ENDPOINT), /ws/js/ENDPOINT "
            "(replies on /topic/messages/ENDPOINT), or /topic/NAME and /queue/NAME"
        )

    def on_send(self, frame: Frame) -> Any:
        destination = frame.headers["destination"]
        for prefix, shape in ((SEND_STOMP, "stomp"), (SEND_JS, "js")):
            if destination.startswith(prefix):
                client, opening = self._client(destination[len(prefix) :], must_exist=True)
                client.shape = shape
                if opening is not None:  # on_open first, as for any client
                    return self._after(
                        opening, functools.partial(self._message, client, frame.body)
                    )
                return self._message(client, frame.body)
        return super().on_send(frame)

    def on_subscribe(self, subscription: Subscription) -> Any:
        for prefix in (REPLY, ERRORS, TOPIC):
            if subscription.destination.startswith(prefix):
                client, opening = self._client(subscription.destination[len(prefix) :])
                if (
                    client is not None
                    and prefix == TOPIC
                    and not self.subscribed_to(REPLY + client.endpoint)
                ):
                    client.shape = "js"
                return opening
        return None

    def on_end(self) -> None:
        transport = self.transport
        by_server = transport.closed_by_server and not self.disconnected
        for client in self.clients.values():
            client.closed_at = time.time()
            client.close_code, client.close_reason = transport.close_code, transport.close_reason
            pending = client._endpoint.closed(client, by_server)
            if pending is not None:  # an async on_close: keep its task alive
                task = asyncio.ensure_future(pending)
                _close_tasks.add(task)
                task.add_done_callback(_close_tasks.discard)

    def end(self, code: int, reason: str) -> None:
        """Closed by the server: an ERROR frame says why (unless it is a normal close)."""
        if code != CloseCode.NORMAL:
            self.send_frame(
                "ERROR", {"message": reason or f"closed ({code})", "content-type": "text/plain"}
            )
        self.close(code, reason)

    # -- inside -------------------------------------------------------------------------------

    def _client(self, name: str, must_exist: bool = False) -> tuple[Any, Any]:
        """This session's client of an endpoint, made (and opened) if new: (client, on_open's
        awaitable or None); (None, None) for an endpoint not mounted, unless ``must_exist``."""
        client = self.clients.get(name)
        if client is not None:
            return client, None
        endpoint = self.registry.find(name)
        if endpoint is None:
            if not must_exist:
                return None, None
            mounted = ", ".join(e.name for e in self.registry) or "none"
            raise StompError(f"no WebSocket endpoint {name!r}", f"endpoints mounted: {mounted}")
        limit = self.limits.max_connections
        if len(endpoint.clients) >= limit:
            reason = f"endpoint {name!r} is full ({limit} connections)"
            endpoint.log.record("error", "-", detail=f"refused a STOMP session: {reason}")
            raise StompError(reason)
        client = self.clients[name] = StompClient(self, endpoint)
        return client, endpoint.opened(client)

    async def _after(self, first: Any, then: Callable[[], Any]) -> None:
        await first
        pending = then()
        if pending is not None:
            await pending

    def _message(self, client: StompClient, body: str) -> Any:
        """``{"from": F, "text": T}`` → ``on_message(T, client)``."""
        problem: str | None = None
        try:
            data = json.loads(body)
        except ValueError as error:
            data, problem = None, f"the body is not JSON ({error})"
        if problem is None and not (isinstance(data, dict) and "text" in data):
            problem = 'the body is not a JSON object {"from": NAME, "text": MESSAGE}'
        endpoint = client._endpoint
        if problem is not None:
            endpoint.log.record("error", client.id, detail=f"STOMP SEND refused: {problem}")
            self.deliver(ERRORS + client.endpoint, problem)
            return None
        text = data["text"]
        client.sender = data.get("from")
        token = _answering.set(client)
        try:
            pending = endpoint.received(text if isinstance(text, str) else json.dumps(text), client)
        finally:
            _answering.reset(token)
        return None if pending is None else self._answer(client, pending)

    async def _answer(self, client: StompClient, pending: Any) -> None:
        """Await an async handler (later frames wait for it, as a WebSocket's messages do)."""
        seconds = self.limits.slow_handler
        endpoint = client._endpoint

        def report() -> None:
            detail = f"on_message still running after {seconds:g} s: later frames wait for it"
            endpoint.log.record("error", client.id, detail=detail)

        timer = asyncio.get_running_loop().call_later(seconds, report)
        token = _answering.set(client)
        try:
            await pending
        finally:
            timer.cancel()
            _answering.reset(token)


class StompClient(Client):
    """An endpoint's client that is a STOMP session (or its part that talks to this endpoint)."""

    kind = "stomp"

    def __init__(self, session: PlatformSession, endpoint: Endpoint) -> None:
        transport = session.transport
        super().__init__(SimpleNamespace(request=transport.request), endpoint)
        self._socket = None  # no WebSocket of its own: frames go through the session
        self._session = session
        self.transport = transport.transport  # "websocket", "xhr_streaming", ...
        self.remote_address = f"{self.remote_address} (stomp, {self.transport})"
        self.path = session.prefix  # the request's path names the SockJS session: kept hidden
        self.sender: Any = endpoint.name  # the "from" of its latest message
        self.shape = "stomp"  # or "js": replies go to /topic/messages/ENDPOINT

    def send(self, message: Any) -> Any:
        """A MESSAGE on the session's reply queue; in the older shape, to the topic's subscribers."""
        frame = encode(message)
        if self.shape != "js" or self._elsewhere():
            return super().send(frame)
        if self.closed_at is not None or self._session.closed:
            raise ConnectionClosed(f"client {self.id} of {self.endpoint!r} is closed")
        self._session.broker.publish(TOPIC + self.endpoint, self._envelope(frame), JSON)
        self.messages_out += 1
        self.bytes_out += len(frame.message)
        self._endpoint.messages_out += 1
        self._endpoint.log.message("out", self.id, frame.message)
        return Sent()

    def _write(self, frame: Any) -> Sent:
        """This session's copy of a message (``send``, or a broadcast to every client)."""
        session = self._session
        if session.closed:
            raise WebSocketClosedError()
        body = self._envelope(frame)
        if not session.deliver(REPLY + self.endpoint, body, JSON):
            session.deliver(TOPIC + self.endpoint, body, JSON)
        return Sent()

    def _envelope(self, frame: Any) -> str:
        message = frame.message
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        answering = _answering.get()
        sender = self.sender
        if answering is not None and answering._endpoint is self._endpoint:
            sender = answering.sender
        envelope = {"from": sender, "text": text, "time": time.strftime("%H:%M")}
        return json.dumps(envelope, ensure_ascii=False)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """End the STOMP session (all of it: its other endpoints' clients close too)."""
        if self._elsewhere():
            self._loop.add_callback(self.close, code, reason)
            return
        if self.closed_at is None and not self._session.closed:
            self._session.end(code, reason)
