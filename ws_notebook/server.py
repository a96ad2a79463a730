"""The Tornado server that mounts a registry's endpoints, on the event loop already running.

In a Jupyter kernel that loop is the kernel's own, so the server serves between cells and while
a cell awaits, with no thread and no second loop. Endpoints live at the paths codbex and Eclipse
Dirigible 4 clients use, ``/websockets/service/NAME`` and ``/websockets/v4/service/NAME``, and
at the short form the artifact's page shows, ``/NAME``, unless NAME is a path the server itself
uses (``RESERVED_PATHS``). ``GET /websockets`` (and the platform's ``GET /services/websockets``)
lists them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from tornado.httputil import HTTPHeaders, HTTPInputError, parse_request_start_line
from tornado.log import app_log, gen_log
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler
from tornado.websocket import WebSocketHandler

from .access import AUTO, check_token, mask, new_token, refusal
from .codes import CloseCode
from .connection import Client
from .endpoint import Endpoint
from .errors import Error
from .listener import Listener
from .protocol import EndpointProtocol
from .registry import RESERVED_PATHS, Registry
from .tornado_internals import RequestHooks, abort, protocol_for
from .wire import OpenConnection, Waiting, WireKeeper
from .worker import EndpointThread

if TYPE_CHECKING:
    from .endpoint import Peer

__all__ = ["DEFAULT_HOST", "Limits", "Server", "ServerError"]

logger = logging.getLogger("ws_notebook")

DEFAULT_HOST = "127.0.0.1"
SERVICE_PATH = "/websockets/service/"
V4_SERVICE_PATH = "/websockets/v4/service/"
# Where endpoints are: the name is the group (percent-encoded as in the URL). The last is the
# short form, /NAME, for every name but the server's own paths.
ENDPOINT_ROUTES = (
    re.compile(r".*/websockets/v4/service/([^/]+)/?"),
    re.compile(r".*/websockets/service/([^/]+)/?"),
    re.compile(rf"/(?!(?:{'|'.join(map(re.escape, RESERVED_PATHS))})/?$)([^/]+)/?"),
)
SHORT_ROUTE = ENDPOINT_ROUTES[-1]
# The paths clients use most, tried before every other route: Tornado tries routes in order, a
# regular expression each, and the SockJS routes before these would be 20 tries per connection.
# No other route matches a path that starts with /websockets/, so the order changes nothing.
DIRECT_ROUTE = r"/websockets/(?:v4/)?service/([^/]+)/?"

_close_tasks: set[asyncio.Future] = set()


class ServerError(Error, RuntimeError):
    """The server cannot start: no running loop, the port cannot be bound, bad TLS files."""


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server; every limit has a safe default.

    - ``max_message_size``: a bigger message closes the connection with 1009.
    - ``ping_interval`` / ``ping_timeout`` (seconds, 0 = off): a peer that does not answer pings
      is closed, so dead connections do not linger.
    - ``max_connections``: per endpoint; more are refused with 1013 (try again later).
    - ``max_send_queue``: bytes waiting to be written to one client; a client that does not
      read past that is closed with 1008 instead of growing the server's memory.
    - ``compression``: offer permessage-deflate.
    - ``slow_handler``: seconds after which an ``async`` handler still running is reported
      (the client's later messages wait for it; other clients are not affected).
    - ``handshake_timeout``: seconds a connection may take to send its request headers (or a
      body), and may stay idle between HTTP requests; then it is closed, so connections that
      trickle bytes do not hold the server's file descriptors. WebSocket connections have pings.
    """

    max_message_size: int = 10 * 1024 * 1024
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    max_connections: int = 1000
    max_send_queue: int = 16 * 1024 * 1024
    compression: bool = False
    slow_handler: float = 10.0
    handshake_timeout: float = 10.0


def _endpoint_route(path: str) -> re.Match[str] | None:
    return next(filter(None, (route.fullmatch(path) for route in ENDPOINT_ROUTES)), None)


def endpoint_in(head: bytes) -> str | None:
    """The endpoint name a request's first line asks for, if it asks for one."""
    line = head[: head.find(b"\r\n")].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3:
        return None
    match = _endpoint_route(parts[1].partition("?")[0])
    return unquote(match[1]) if match is not None else None


class _TextErrors(RequestHooks):
    """Errors as a short plain-text body that says what went wrong, not Tornado's HTML page.

    Also how Tornado's access and error logs name a request: with any ``?token=`` masked, as
    the Jupyter proxy forwards the user's token to us.
    """

    def request_summary(self: Any) -> str:
        request = self.request
        return f"{request.method} {mask(request.uri or '')} ({request.remote_ip})"

    def log_exception(self: Any, kind: Any, error: Any, traceback: Any) -> None:
        """Tornado's, without the request's repr (its URL would show the token unmasked)."""
        if isinstance(error, HTTPError):
            if error.log_message:
                message = error.log_message % error.args if error.args else error.log_message
                gen_log.warning("%d %s: %s", error.status_code, self.request_summary(), message)
            return
        if isinstance(error, asyncio.CancelledError):  # a handler still running at shutdown
            return
        app_log.error(
            "Uncaught exception %s", self.request_summary(), exc_info=(kind, error, traceback)
        )

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = error.log_message if isinstance(error, HTTPError) and error.log_message else None
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if status_code == 401:  # set here: send_error clears headers set before the error
            self.set_header("WWW-Authenticate", 'Bearer realm="ws_notebook"')
        self.finish(f"{status_code} {self.reason}: {message or self.reason}\n")


class _Guarded(_TextErrors):
    """Requests go ahead as the access policy says (``ws_notebook.access``)."""

    server: Server

    def check_access(self: Any) -> None:
        request = self.request
        refused = self.server.refusal(
            request.headers.get("Authorization"),
            request.query,
            request.headers.get("Origin"),
            request.host,
        )
        if refused is not None:
            raise HTTPError(*refused)


class EndpointSocket(_Guarded, WebSocketHandler):
    """One WebSocket connection, handed to the endpoint named in its URL."""

    endpoint: Endpoint
    client: Client
    closed_by_server: tuple[int, str] | None = None  # set by EndpointProtocol

    def initialize(self, server: Server) -> None:
        self.server = server

    def prepare(self) -> None:
        self.check_access()  # first: without the token, not even which endpoints exist
        name = self.path_args[-1]
        endpoint = self.server.registry.find(name)
        if endpoint is None or endpoint.outbound is not None:
            mounted = ", ".join(e.name for e in self.server.registry if e.outbound is None)
            outbound = " is an outbound connection of this server, not an endpoint it serves"
            raise HTTPError(
                404,
                f"no WebSocket endpoint {name!r} here"
                + (outbound if endpoint is not None else "")
                + f" (mounted: {mounted or 'none'}; GET /websockets lists them)",
            )
        self.endpoint = endpoint

    def check_origin(self, origin: str) -> bool:
        return True  # decided with the token in prepare(): see check_access

    def log_exception(self, kind: Any, error: Any, traceback: Any) -> None:
        """A refused connection to a mounted endpoint (no token, a wrong one, an origin the
        policy refuses) is an event of its log too: the panel and ``%websocket log`` show it."""
        if isinstance(error, HTTPError) and error.status_code in (401, 403) and self.path_args:
            endpoint = self.server.registry.find(unquote(self.path_args[-1]))
            if endpoint is not None:
                reason = error.log_message or self.reason
                endpoint.log.record(
                    "error",
                    "-",
                    detail=f"refused a connection from {self.request.remote_ip}: "
                    f"{error.status_code} {reason}",
                )
        super().log_exception(kind, error, traceback)

    def get_compression_options(self) -> dict[str, Any] | None:
        return {} if self.server.limits.compression else None

    def get_websocket_protocol(self) -> EndpointProtocol | None:
        return protocol_for(self, EndpointProtocol, self.get_compression_options())

    def open(self, *path_args: str, **path_kwargs: str) -> Any:
        limits = self.server.limits
        if len(self.endpoint.clients) >= limits.max_connections:
            reason = (
                f"endpoint {self.endpoint.name!r} is full ({limits.max_connections} connections)"
            )
            self.endpoint.log.record("error", "-", detail=f"refused a connection: {reason}")
            self.close(CloseCode.TRY_AGAIN_LATER, reason)
            return None
        self.set_nodelay(True)
        self.client = Client(self, self.endpoint, max_send_queue=limits.max_send_queue)
        pending = self._watch("on_open", self.endpoint.opened(self.client))
        stream = getattr(self.ws_connection, "stream", None)
        waited = getattr(getattr(stream, "socket", None), "waited", None)
        if waited is not None:  # opened by the wire keeper while a cell blocked the kernel
            ended = self.server.last_stall[0] if self.server.last_stall else time.time()
            self.endpoint.waited(self.client.id, waited.messages, waited.since, ended)
        return pending

    def on_message(self, message: str | bytes) -> Any:
        client = self.client
        pending = self.endpoint.received(message, client)
        if pending is None:
            return None
        if client._outbox is not None:  # an async handler's sends go out as it makes them
            client._outbox.release()
        return self._watch("on_message", pending)

    def hold_output(self) -> None:
        """The protocol has more input read already: hold replies until it is used up."""
        client = self.__dict__.get("client")
        if client is not None:
            client._outbox.hold()

    def output_due(self) -> None:
        """The protocol is about to wait for input, or to write a frame of its own."""
        client = self.__dict__.get("client")
        if client is not None:
            client._outbox.release()

    def _watch(self, name: str, pending: Any) -> Any:
        """Tornado awaits an async handler before the next message: report one that lingers."""
        if pending is None:
            return None
        return self._report_if_slow(name, pending)

    async def _report_if_slow(self, name: str, pending: Any) -> None:
        seconds = self.server.limits.slow_handler
        detail = (
            f"{name} still running after {seconds:g} s: later messages from this client wait for it"
        )
        endpoint, client = self.endpoint, self.client

        def report() -> None:
            endpoint.log.record("error", client.id, detail=detail)
            logger.warning("endpoint %r, client %s: %s", endpoint.name, client.id, detail)

        timer = asyncio.get_running_loop().call_later(seconds, report)
        try:
            await pending
        finally:
            timer.cancel()

    def on_close(self) -> None:
        client = self.__dict__.get("client")
        if client is None:  # refused, or closed before open() ran
            return
        client.closed_at = time.time()
        closed_by_server = self.closed_by_server
        by_server = closed_by_server is not None
        if closed_by_server is not None:
            client.close_code, client.close_reason = closed_by_server
        else:
            client.close_code, client.close_reason = self.close_code, self.close_reason
        pending = self.endpoint.closed(client, by_server)
        if pending is not None:  # an async on_close: Tornado does not await it, so keep it alive
            task = asyncio.ensure_future(pending)
            _close_tasks.add(task)
            task.add_done_callback(_close_tasks.discard)


class ShortFormSocket(EndpointSocket):
    """``/NAME``, the short form of an endpoint's URL: WebSocket requests only; anything else
    there is not found, as it was before this form existed."""

    def prepare(self) -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise HTTPError(404, _nothing_at(self.request.path))
        super().prepare()


class EndpointList(_Guarded, RequestHandler):
    """``GET /websockets`` (and the platform's ``GET /services/websockets``): the mounted
    endpoints, their descriptors and URLs, as JSON."""

    def initialize(self, server: Server) -> None:
        self.server = server

    def get(self) -> None:
        self.check_access()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.server.describe(), indent=2))


class Health(_TextErrors, RequestHandler):
    """``GET /healthz``: 200 while the server is serving; no token needed, as it tells nothing."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("ok\n")


def _nothing_at(path: str) -> str:
    return f"nothing at {path}: endpoints are at {SERVICE_PATH}NAME (GET /websockets lists them)"


class NotFound(_TextErrors, RequestHandler):
    def prepare(self) -> None:
        raise HTTPError(404, _nothing_at(self.request.path))


class Server:
    """Serves a registry's endpoints over HTTP/WebSocket on one host and port.

    Endpoints can be mounted before or after :meth:`start`; a stopped server keeps its registry,
    so starting it again (maybe on another port) serves the same endpoints.

    ``certfile``/``keyfile`` serve ``wss://``; with a ``token`` (``"auto"`` makes one) every
    request must carry it; ``allowed_origins`` adds browser origins to the default policy.
    Without a token, browser pages the policy does not let in need ``page_token``, made here
    (see ``ws_notebook.access``). :meth:`configure` changes settings of a stopped server.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        limits: Limits | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        token: str | None = None,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.registry = registry if registry is not None else Registry()
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.token = new_token() if token == AUTO else token
        self.allowed_origins = list(allowed_origins)
        self.certfile, self.keyfile = certfile, keyfile
        self.ssl_context = _ssl_context(certfile, keyfile)
        self._page_token = new_token()
        self._http: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keeper: WireKeeper | None = None
        self._worker: EndpointThread | None = None  # for threaded endpoints, made when needed
        # While a cell blocks the loop: the messages waiting for it, as the keeper last saw
        # them, and functions told of changes (from the keeper's thread).
        self.waiting: list[Waiting] = []
        self.waiting_listeners: list[Any] = []
        # The last stall: when it ended, how long it was, how many messages waited.
        self.last_stall: tuple[float, float, int] | None = None
        self.reuse_port = False  # SO_REUSEPORT: workers of `serve --workers N` share the port
        # Listening sockets to serve on instead of binding: a worker's of `serve --workers N`
        # where the supervisor bound the port once (no SO_REUSEPORT); used by the next start.
        self.inherited: list[socket.socket] = []

    def configure(
        self,
        *,
        limits: Limits | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        token: str | None = None,
        allowed_origins: Iterable[str] | None = None,
    ) -> None:
        """Change the settings passed (None: keep as is) of a stopped server; the rest stay."""
        if self.running:
            raise ServerError(
                f"the server runs on {self.host}:{self.port}; stop it before changing its settings"
            )
        if certfile is not None or keyfile is not None:
            certfile = certfile if certfile is not None else self.certfile
            self.ssl_context = _ssl_context(certfile, keyfile)  # first: bad files change nothing
            self.certfile, self.keyfile = certfile, keyfile
        if limits is not None:
            self.limits = limits
        if token is not None:
            self.token = new_token() if token == AUTO else token
        if allowed_origins is not None:
            self.allowed_origins = list(allowed_origins)

    def refusal(
        self, authorization: str | None, query: str, origin: str | None, host: str
    ) -> tuple[int, str] | None:
        """The HTTP status and why, if the access policy refuses a request (see ``access``)."""
        if self.token is not None:  # the user's token: every request needs it
            status = check_token(self.token, authorization, query)
            if status == 401:
                return (
                    401,
                    "this server needs a token: Authorization: Bearer TOKEN or ?token=TOKEN",
                )
            if status == 403:
                return 403, "wrong token"
            return None
        why = refusal(origin, host, self.allowed_origins, self.host)
        if why is not None and check_token(self.page_token, authorization, query) is not None:
            return (
                403,
                f"{why} needs the server's token (the %websocket browser widget sends it; "
                "ws_notebook.url(NAME, with_token=True) gives a URL with it)",
            )
        return None

    def upgrade_answer(self, head: bytes) -> str | None:
        """The endpoint a WebSocket handshake request opens, if the server will surely accept it.

        The wire keeper answers handshakes while the loop is stalled; it asks this, which checks
        what ``EndpointSocket`` and Tornado check before they answer 101 (a plain WebSocket
        upgrade, version 13, the access policy, a mounted endpoint). Anything else (compression
        offered when it is on, an odd request) is left to the server, once the loop runs.
        """
        try:
            first, _, rest = head.decode("latin-1").partition("\r\n")
            start = parse_request_start_line(first)
            headers = HTTPHeaders.parse(rest)
        except (HTTPInputError, ValueError):
            return None
        path, _, query = start.path.partition("?")
        match = _endpoint_route(path)
        connection = {part.strip().lower() for part in headers.get("Connection", "").split(",")}
        if (
            match is None
            or start.method != "GET"
            or start.version != "HTTP/1.1"
            or headers.get("Upgrade", "").lower() != "websocket"
            or "upgrade" not in connection
            or headers.get("Sec-WebSocket-Version") != "13"
            or not headers.get("Sec-WebSocket-Key")
            or (self.limits.compression and "Sec-WebSocket-Extensions" in headers)
        ):
            return None
        host = headers.get("Host") or "127.0.0.1"
        if self.refusal(headers.get("Authorization"), query, headers.get("Origin"), host):
            return None
        name = unquote(match[1])
        endpoint = self.registry.find(name)
        return name if endpoint is not None and endpoint.outbound is None else None

    @property
    def page_token(self) -> str:
        """The token that lets in any browser page: the user's token, or one made for the server."""
        return self.token if self.token is not None else self._page_token

    @property
    def running(self) -> bool:
        return self._http is not None

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context is not None else "ws"

    def application(self) -> Application:
        from .stomp_endpoints import routes as stomp_routes  # SockJS + STOMP at /stomp and /js

        route = {"server": self}
        limits = self.limits
        return Application(
            [
                (DIRECT_ROUTE, EndpointSocket, route),
                *stomp_routes(self),
                (r"/websockets/?", EndpointList, route),
                (r"/services/websockets/?", EndpointList, route),
                (r"/healthz", Health),
                *(
                    (
                        pattern.pattern,
                        ShortFormSocket if pattern is SHORT_ROUTE else EndpointSocket,
                        route,
                    )
                    for pattern in ENDPOINT_ROUTES
                ),
            ],
            default_handler_class=NotFound,
            websocket_max_message_size=limits.max_message_size,
            websocket_ping_interval=limits.ping_interval or None,
            websocket_ping_timeout=limits.ping_timeout or None,
        )

    def start(self, host: str | None = None, port: int | None = None) -> None:
        """Bind and serve on the running event loop; port 0 picks a free port."""
        if self.running:
            raise ServerError(f"already serving on {self.host}:{self.port}; stop it first")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ServerError(
                "no running event loop: start the server from async code (inside asyncio.run) "
                "or from a Jupyter kernel, whose loop is always running"
            ) from None
        host = self.host if host is None else host
        port = self.port if port is None else port
        try:
            sockets = self.inherited or bind_sockets(port, host, reuse_port=self.reuse_port)
            self.inherited = []
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ServerError(
                    f"port {port} on {host} is in use: pick another (--port N) or use port 0 "
                    "for a free one"
                ) from error
            raise ServerError(
                f"cannot listen on {host}:{port}: {error.strerror or error}"
            ) from error
        http = Listener(self.application(), **self._http_options())
        http.router = self
        http.add_sockets(sockets)
        self._http = http
        self._loop = asyncio.get_running_loop()
        self.host = host
        self.port = sockets[0].getsockname()[1]
        if self.ssl_context is None:  # a TLS stream's bytes are encrypted: nothing to keep
            self._keeper = WireKeeper(self._loop, http.listening, self)
            self._keeper.start()

    def _http_options(self) -> dict[str, Any]:
        # Tornado's idle_connection_timeout is the time from waiting for a request (after the
        # connection opens, or the last response) to its headers' end, TLS handshake included:
        # trickling bytes does not extend it. A WebSocket is past it once upgraded.
        timeout = self.limits.handshake_timeout
        return {
            "ssl_options": self.ssl_context,
            "idle_connection_timeout": timeout,
            "body_timeout": timeout,
            "max_header_size": 64 * 1024,
            "max_body_size": self.limits.max_message_size,  # no route reads a body
        }

    def stop(self, reason: str = "server stopping") -> None:
        """Close every client with 1001 (going away) and free the port."""
        if self._keeper is not None:
            self._keeper.stop()
            self._keeper = None
        for endpoint in self.registry:
            endpoint.close_all(CloseCode.GOING_AWAY, reason)
        self._stop_worker()
        if self._http is not None:
            self._http.stop()
            self._http = None

    def going_away(self, reason: str) -> None:
        """From any thread (the kernel's shutdown runs on its control thread): close every
        client with 1001, even while a cell blocks the loop (the wire keeper writes the close
        frames then). Returns once they are written, or after about a second."""
        loop, keeper = self._loop, self._keeper
        if loop is None or loop.is_closed():
            return
        done = threading.Event()

        def stop() -> None:
            self.stop(reason)
            done.set()

        loop.call_soon_threadsafe(stop)
        if not done.wait(1.0) and keeper is not None:
            keeper.close_all(reason)

    # -- threaded endpoints (see ws_notebook.worker) ------------------------------------------

    def wants_routing(self) -> bool:
        """New connections must be sorted by endpoint: some endpoint runs on its own thread."""
        return any(endpoint.threaded for endpoint in self.registry)

    def divert(self, head: bytes, sock: socket.socket, address: Any) -> bool:
        """Hand a new connection to the endpoint thread if its request names a threaded
        endpoint (from the loop's thread, or the wire keeper's); False: it stays here."""
        name = endpoint_in(head)
        endpoint = self.registry.find(name) if name is not None else None
        if endpoint is None or not endpoint.threaded:
            return False
        if self._worker is None:
            self._worker = EndpointThread(self.application(), **self._http_options())
        self._worker.serve(sock, address)
        return True

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return

        def on_worker() -> list[Peer]:
            return [
                client
                for endpoint in self.registry
                for client in list(endpoint.clients.values())
                if getattr(client._loop, "asyncio_loop", None) is worker.loop
            ]

        def abort_all() -> None:
            for client in on_worker():
                if client._socket is not None and client._socket.ws_connection is not None:
                    abort(client._socket.ws_connection)

        worker.stop(lambda: len(on_worker()), abort_all)

    # -- the wire keeper's view of the server (see ws_notebook.wire) ----------------------------

    def open_connections(self) -> list[OpenConnection]:
        """The open WebSocket connections of the server's own loop: its endpoints' clients, and
        the SockJS/STOMP sessions with the heart-beat their clients expect (from the keeper's
        thread, so a copy made while nothing changes them)."""
        from .stomp_endpoints import websockets as stomp_websockets

        try:
            return [
                *(
                    OpenConnection(client._socket.ws_connection, endpoint.name, client.id)
                    for endpoint in list(self.registry)
                    for client in list(endpoint.clients.values())
                    if client._socket is not None
                    and client._socket.ws_connection is not None
                    and getattr(client._loop, "asyncio_loop", None) is self._loop
                ),
                *(
                    OpenConnection(protocol, prefix, "", beat)
                    for protocol, prefix, beat in stomp_websockets(self)
                ),
            ]
        except RuntimeError:  # changed while copied: the loop runs again, nothing to keep
            return []

    def handle_connection(self, sock: socket.socket, address: Any) -> None:
        if self._http is None:  # stopped meanwhile
            sock.close()
        else:
            self._http.handle_connection(sock, address)

    def handle_answered(self, sock: socket.socket, address: Any) -> None:
        if self._http is None:
            sock.close()
        else:
            self._http.handle_here(sock, address)

    def report_waiting(self, waiting: list[Waiting]) -> None:
        """From the keeper's thread, while the loop is stalled: what waits, for the panels."""
        self.waiting = waiting
        for listener in list(self.waiting_listeners):
            listener(waiting)

    def waited(self, waits: list[Waiting], seconds: float) -> None:
        """On the loop, once it runs again: log what waited for it, client by client."""
        self.waiting = []
        ended = time.time()
        self.last_stall = (ended, seconds, sum(w.messages for w in waits))
        for waited in waits:
            endpoint = self.registry.find(waited.endpoint)
            if endpoint is not None:
                endpoint.waited(waited.client, waited.messages, waited.since, ended)
        for listener in list(self.waiting_listeners):
            listener([])

    def url(self, name: str, scheme: str | None = None, with_token: bool = False) -> str:
        """The URL clients connect to; ``?token=`` only when asked, as it must not be shown.

        The token is the user's, or else the page token: a URL any browser page may use.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"{scheme or self.scheme}://{host}:{self.port}{SERVICE_PATH}{name}"
        if with_token:
            url += f"?token={self.page_token}"
        return url

    def proxy_path(self, name: str, base_url: str = "/") -> str:
        """The path a browser uses through jupyter-server-proxy, on the Jupyter page's own host."""
        return f"{base_url.rstrip('/')}/proxy/{self.port}{SERVICE_PATH}{name}"

    def short_url(self, name: str) -> str | None:
        """``ws://HOST:PORT/NAME``, the short form; None for a name the server's own paths take."""
        if name in RESERVED_PATHS:
            return None
        return self.url(name).replace(SERVICE_PATH, "/")

    def describe(self) -> list[dict[str, Any]]:
        """The endpoints as ``GET /websockets`` lists them: the descriptor as the platform writes
        it (``location``: where the file is in its project; ``declared_location``: what the file
        itself said, when that differs). With a broker, ``clients`` counts every worker's clients,
        ``local_clients`` this worker's, and ``worker`` names the worker that answered."""
        described = []
        bus = self.registry.bus
        for endpoint in self.registry:
            entry = {
                "endpoint": endpoint.name,
                "url": self.url(endpoint.name),
                "v4_url": self.url(endpoint.name).replace(SERVICE_PATH, V4_SERVICE_PATH),
                "short_url": self.short_url(endpoint.name),
                "clients": len(endpoint.clients),
                "handlers": endpoint.handlers.defined,
                "descriptor": endpoint.descriptor.to_json(),
            }
            if bus is not None:
                entry["local_clients"] = entry["clients"]
                entry["clients"] += bus.remote_count(endpoint.name)
                entry["worker"] = bus.worker_id
            if endpoint.descriptor.declared_location:
                entry["declared_location"] = endpoint.descriptor.declared_location
            described.append(entry)
        return described


def _ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files, or None for plain ``ws://``."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None:
        raise ServerError("a keyfile without a certfile: wss:// needs the certificate too")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for path in (certfile, keyfile):
        if path is not None and not os.path.isfile(path):
            raise ServerError(f"cannot read {path}: no such file")
    try:
        context.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as error:
        raise ServerError(f"cannot use certfile {certfile} / keyfile {keyfile}: {error}") from error
    return context
