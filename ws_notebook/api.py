"""The process-wide server and the functions that act on it: what ``import ws_notebook`` offers.

A kernel has one server, started lazily on first use, so ``serve("echo", handlers)`` is all a
notebook or script needs. The names mirror codbex's ``websockets`` API where one exists
(``getClients``, ``getClient``).
"""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .connection import Client
from .descriptor import Descriptor
from .handlers import Handlers
from .project import export_endpoint, load_project
from .registry import Endpoint, Mounted
from .server import Limits, Server, ServerError
from .watch import ProjectWatcher

__all__ = [
    "broadcast",
    "client",
    "clients",
    "default_server",
    "endpoint",
    "endpoints",
    "events",
    "export",
    "getClient",
    "getClients",
    "jupyter_base_url",
    "load_descriptor",
    "mount",
    "proxy_path",
    "reset",
    "serve",
    "start",
    "stop",
    "unmount",
    "unwatch",
    "url",
]

_server: Server | None = None
_watchers: dict[Path, ProjectWatcher] = {}
_stop_at_exit_registered = False


def default_server() -> Server:
    """The process's server (not necessarily started)."""
    global _server
    if _server is None:
        _server = Server()
    return _server


def start(
    host: str | None = None,
    port: int | None = None,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    token: str | None = None,
    limits: Limits | None = None,
    allowed_origins: Iterable[str] | None = None,
) -> Server:
    """Start the server if it is not running, with these settings for a stopped one.

    Settings not passed keep the values they had (a token given once stays across a stop and
    start). A running server is left as it is; asking it for another address or other settings
    is an error that says to stop it first. ``token="auto"`` generates a token. Endpoints stay
    mounted across a stop and start.
    """
    global _stop_at_exit_registered
    server = default_server()
    settings = {"certfile": certfile, "keyfile": keyfile, "token": token, "limits": limits}
    wanted = {name: value for name, value in settings.items() if value is not None}
    if allowed_origins is not None:
        wanted["allowed_origins"] = allowed_origins
    if server.running:
        if (
            (host is not None and host != server.host)
            or (port not in (None, 0, server.port))
            or wanted
        ):
            raise ServerError(
                f"the server already runs on {server.host}:{server.port}; to change its address "
                "or settings, stop it first (%websocket stop, or ws_notebook.stop())"
            )
        return server
    server.configure(**wanted)
    server.start(host, port)
    if not _stop_at_exit_registered:
        # A kernel that shuts down closes its clients with 1001 (going away): the close
        # frames are written straight to the sockets, with no loop needed.
        atexit.register(stop)
        _stop_at_exit_registered = True
    return server


def mount(
    descriptor: Descriptor, handlers: Any = None, *, log_capacity: int | None = None
) -> Mounted:
    """Mount or redefine an endpoint without starting the server."""
    found = Handlers() if handlers is None else Handlers.from_object(handlers)
    return default_server().registry.mount(descriptor, found, log_capacity)


def serve(
    endpoint: str | Descriptor,
    handlers: Any = None,
    *,
    description: str = "",
    created_by: str | None = None,
    host: str | None = None,
    port: int | None = None,
    log_capacity: int | None = None,
) -> Endpoint:
    """Mount an endpoint and make sure the server is running; returns the endpoint.

    ``handlers`` is a module, a mapping, or any object with ``on_message`` and friends (or
    codbex's ``onMessage`` ...). Serving a name again replaces its handlers in place.
    """
    if isinstance(endpoint, str):
        origin = getattr(handlers, "__name__", type(handlers).__name__)
        endpoint = Descriptor.new(
            endpoint,
            handler=f"python:{origin}",
            location="python",
            description=description,
            created_by=created_by,
        )
    start(host, port)
    return mount(endpoint, handlers, log_capacity=log_capacity).endpoint


def unmount(name: str) -> Endpoint:
    """Remove an endpoint; its clients are closed with 1001."""
    return default_server().registry.unmount(name)


def stop() -> None:
    """Stop serving: clients are closed with 1001 and the port is freed; endpoints stay mounted."""
    if _server is not None:
        _server.stop()


def reset() -> None:
    """Stop the server and watchers and forget every endpoint, as a fresh kernel would have it."""
    global _server
    unwatch()
    stop()
    _server = None


def endpoint(name: str) -> Endpoint:
    return default_server().registry.get(name)


def endpoints() -> list[Endpoint]:
    return list(default_server().registry)


def url(name: str, with_token: bool = False) -> str:
    """The ``ws://`` (or ``wss://``) URL of a mounted endpoint.

    ``with_token=True`` adds the server's ``?token=``: for a client to use, never to display.
    """
    server = default_server()
    server.registry.get(name)
    return server.url(name, with_token=with_token)


def jupyter_base_url() -> str:
    """The base URL of the Jupyter server this kernel belongs to ("/" when unknown).

    JupyterHub tells kernels in ``JUPYTERHUB_SERVICE_PREFIX``. A plain Jupyter server does not,
    but it starts kernels with ``JPY_PARENT_PID`` set to its own process id, and describes itself
    in ``jpserver-PID.json`` in the Jupyter runtime folder.
    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        return prefix
    server_pid = os.environ.get("JPY_PARENT_PID")
    if server_pid:
        try:
            from jupyter_core.paths import jupyter_runtime_dir

            info = Path(jupyter_runtime_dir(), f"jpserver-{server_pid}.json").read_text("utf-8")
            return json.loads(info).get("base_url") or "/"
        except (ImportError, OSError, ValueError):
            pass
    return "/"


def proxy_path(name: str) -> str:
    """The path to the endpoint through jupyter-server-proxy, on the notebook page's own host."""
    server = default_server()
    server.registry.get(name)
    return server.proxy_path(name, jupyter_base_url())


def clients(endpoint: str | None = None) -> list[Client]:
    """Open clients of one endpoint, or of all endpoints."""
    return default_server().registry.clients(endpoint)


def client(client_id: str) -> Client | None:
    """The open client with that id, or None (as codbex's ``getClient``)."""
    return default_server().registry.client(client_id)


getClients = clients
getClient = client


def broadcast(endpoint: str, message: Any) -> int:
    """Send a message to every client of an endpoint; returns how many got it."""
    return default_server().registry.get(endpoint).broadcast(message)


def events(endpoint: str, since: int = 0) -> list[dict[str, Any]]:
    """The endpoint's event log, oldest first, as dicts."""
    return [event.as_dict() for event in default_server().registry.get(endpoint).log.since(since)]


def load_descriptor(
    path: str | Path,
    *,
    host: str | None = None,
    port: int | None = None,
    watch: bool = False,
) -> list[Endpoint]:
    """Load a ``.websocket`` file, or every one under a folder, mount them and serve.

    Every file is checked first; if any is broken, ``ProjectError`` lists all problems and
    nothing is mounted. With ``watch=True`` the folder is then watched: added, changed and
    removed files are mounted, reloaded in place and unmounted while the server runs (a broken
    edit keeps the last good version serving); ``unwatch`` or ``reset`` stops that.
    """
    registry = default_server().registry
    if not watch:
        loaded = load_project(path)
        start(host, port)
        return [mount(item.descriptor, item.handlers).endpoint for item in loaded]
    key = Path(path).resolve()
    unwatch(key)
    watcher = ProjectWatcher(registry, path)
    loaded = watcher.load()
    start(host, port)
    watcher.start()
    _watchers[key] = watcher
    return [registry.get(item.descriptor.endpoint) for item in loaded]


def unwatch(path: str | Path | None = None) -> None:
    """Stop watching one folder, or every watched folder; its endpoints stay mounted."""
    keys = list(_watchers) if path is None else [Path(path).resolve()]
    for key in keys:
        watcher = _watchers.pop(key, None)
        if watcher is not None:
            watcher.stop()


def export(name: str, directory: str | Path) -> Path:
    """Write a mounted endpoint as ``DIR/NAME.websocket`` plus its handler module."""
    found = default_server().registry.get(name)
    return export_endpoint(found.descriptor, found.handlers.source, directory)
