"""The Tornado server that mounts a registry's endpoints, on the event loop already running.

In a Jupyter kernel that loop is the kernel's own, so the server serves between cells and while
a cell awaits, with no thread and no second loop. Endpoints live at the paths codbex and Eclipse
Dirigible 4 clients use, ``/websockets/service/NAME`` and ``/websockets/v4/service/NAME``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import time
from typing import Any
from urllib.parse import urlparse

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler
from tornado.websocket import WebSocketHandler

from .connection import Client
from .registry import GOING_AWAY, Endpoint, Registry

__all__ = ["DEFAULT_HOST", "Server", "ServerError"]

logger = logging.getLogger("ws_notebook")

DEFAULT_HOST = "127.0.0.1"
SERVICE_PATH = "/websockets/service/"
V4_SERVICE_PATH = "/websockets/v4/service/"

_close_tasks: set[asyncio.Future] = set()


class ServerError(RuntimeError):
    """The server cannot start: no running loop, or the port cannot be bound."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _TextErrors:
    """Errors as a short plain-text body that says what went wrong, not Tornado's HTML page."""

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = error.log_message if isinstance(error, HTTPError) and error.log_message else None
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}: {message or self._reason}\n")


class EndpointSocket(_TextErrors, WebSocketHandler):
    """One WebSocket connection, handed to the endpoint named in its URL."""

    endpoint: Endpoint
    client: Client

    def initialize(self, server: Server) -> None:
        self.server = server

    def prepare(self) -> None:
        name = self.path_args[-1]
        endpoint = self.server.registry.find(name)
        if endpoint is None:
            mounted = ", ".join(e.name for e in self.server.registry) or "none"
            raise HTTPError(
                404,
                f"no WebSocket endpoint {name!r} here (mounted: {mounted}; GET /websockets lists them)",
            )
        self.endpoint = endpoint

    def check_origin(self, origin: str) -> bool:
        """Same-origin pages (as Jupyter's proxy presents them) and pages served from loopback."""
        if super().check_origin(origin):
            return True
        return _is_loopback(urlparse(origin).hostname) and _is_loopback(self.server.host)

    def open(self, *path_args: str) -> Any:
        self.client = Client(self, self.endpoint)
        return self.endpoint.opened(self.client)

    def on_message(self, message: str | bytes) -> Any:
        return self.endpoint.received(message, self.client)

    def on_close(self) -> None:
        client = self.__dict__.get("client")
        if client is None:  # closed before open() ran
            return
        client.closed_at = time.time()
        client.close_code = self.close_code
        client.close_reason = self.close_reason
        pending = self.endpoint.closed(client, self.close_code, self.close_reason)
        if pending is not None:  # an async on_close: Tornado does not await it, so keep it alive
            task = asyncio.ensure_future(pending)
            _close_tasks.add(task)
            task.add_done_callback(_close_tasks.discard)


class EndpointList(_TextErrors, RequestHandler):
    """``GET /websockets``: the mounted endpoints, their descriptors and URLs, as JSON."""

    def initialize(self, server: Server) -> None:
        self.server = server

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.server.describe(), indent=2))


class NotFound(_TextErrors, RequestHandler):
    def prepare(self) -> None:
        raise HTTPError(
            404,
            f"nothing at {self.request.path}: endpoints are at {SERVICE_PATH}NAME "
            "(GET /websockets lists them)",
        )


class Server:
    """Serves a registry's endpoints over HTTP/WebSocket on one host and port.

    Endpoints can be mounted before or after :meth:`start`; a stopped server keeps its registry,
    so starting it again (maybe on another port) serves the same endpoints.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
        **settings: Any,
    ) -> None:
        self.registry = registry if registry is not None else Registry()
        self.host = host
        self.port = port
        self.settings = settings
        self._http: HTTPServer | None = None

    @property
    def running(self) -> bool:
        return self._http is not None

    def application(self) -> Application:
        route = {"server": self}
        return Application(
            [
                (r".*/websockets/v4/service/([^/]+)/?", EndpointSocket, route),
                (r".*/websockets/service/([^/]+)/?", EndpointSocket, route),
                (r"/websockets/?", EndpointList, route),
            ],
            default_handler_class=NotFound,
            **self.settings,
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
            sockets = bind_sockets(port, host)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ServerError(
                    f"port {port} on {host} is in use: pick another (--port N) or use port 0 "
                    "for a free one"
                ) from error
            raise ServerError(
                f"cannot listen on {host}:{port}: {error.strerror or error}"
            ) from error
        http = HTTPServer(self.application())
        http.add_sockets(sockets)
        self._http = http
        self.host = host
        self.port = sockets[0].getsockname()[1]
        logger.info("serving on %s:%d", self.host, self.port)

    def stop(self, reason: str = "server stopping") -> None:
        """Close every client with 1001 (going away) and free the port."""
        for endpoint in self.registry:
            endpoint.close_all(GOING_AWAY, reason)
        if self._http is not None:
            self._http.stop()
            self._http = None

    def url(self, name: str, scheme: str = "ws") -> str:
        """The URL clients connect to; for an IPv6 host, in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{SERVICE_PATH}{name}"

    def proxy_path(self, name: str, base_url: str = "/") -> str:
        """The path a browser uses through jupyter-server-proxy, on the Jupyter page's own host."""
        return f"{base_url.rstrip('/')}/proxy/{self.port}{SERVICE_PATH}{name}"

    def describe(self) -> list[dict[str, Any]]:
        """The endpoints as ``GET /websockets`` lists them."""
        return [
            {
                "endpoint": endpoint.name,
                "url": self.url(endpoint.name),
                "v4_url": self.url(endpoint.name).replace(SERVICE_PATH, V4_SERVICE_PATH),
                "clients": len(endpoint.clients),
                "handlers": endpoint.handlers.defined,
                "descriptor": endpoint.descriptor.to_json(),
            }
            for endpoint in self.registry
        ]
