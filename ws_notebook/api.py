"""The process-wide server and the functions that act on it: what ``import ws_notebook`` offers.

A kernel has one server, started lazily on first use, so ``serve("echo", handlers)`` is all a
notebook or script needs. codbex's ``websockets`` API has its names here too, for ported code:
``getClients``, ``getClient``, ``getClientByHandler`` (and ``get_clients`` ...), and ``context()``
for the event a handler runs for (``getMethod()``, ``getMessage()``, ``isOnOpen()`` ...).
"""

from __future__ import annotations

import atexit
import difflib
import importlib.util
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .descriptor import Descriptor
from .endpoint import Endpoint, EventContext, context
from .handlers import HandlerError, Handlers
from .project import export_endpoint, load_project
from .registry import Mounted, UnknownEndpoint
from .server import Limits, Server, ServerError
from .watch import ProjectWatcher

if TYPE_CHECKING:
    from .endpoint import Peer

__all__ = [
    "EventContext",
    "broadcast",
    "client",
    "client_by_handler",
    "clients",
    "context",
    "default_server",
    "endpoint",
    "endpoints",
    "events",
    "export",
    "getClient",
    "getClientByHandler",
    "getClients",
    "get_client",
    "get_client_by_handler",
    "get_clients",
    "jupyter_base_url",
    "load_descriptor",
    "mount",
    "proxy_installed",
    "proxy_path",
    "reset",
    "serve",
    "set_default_server",
    "start",
    "stop",
    "unmount",
    "unwatch",
    "url",
]

_server: Server | None = None
_watchers: dict[Path, ProjectWatcher] = {}
_stop_at_exit_registered = False
_background: set[Any] = set()
# Endpoints unmounted on purpose, by name: what stopped them and how to serve them again, so
# that using one afterwards says so rather than that no such endpoint exists.
_stopped: dict[str, str] = {}
# The outbound connections stop() closed, by endpoint name: start() opens them again.
_closed_by_stop: dict[str, Any] = {}  # ws_notebook.outbound.OutboundConnection


def default_server() -> Server:
    """The process's server (not necessarily started)."""
    global _server
    if _server is None:
        _server = Server()
    return _server


def set_default_server(server: Server) -> None:
    """Make ``server`` the one these functions act on.

    ``ws-notebook serve`` makes its own server; handlers it runs that call
    ``ws_notebook.broadcast(client.endpoint, ...)`` or ``ws_notebook.clients(...)``, as cells do,
    must reach that server's endpoints, not an empty one of their own.
    """
    global _server
    _server = server


def start(
    host: str | None = None,
    port: int | None = None,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    token: str | None = None,
    limits: Limits | None = None,
    allowed_origins: Iterable[str] | None = None,
    broker: str | None = None,
) -> Server:
    """Start the server if it is not running, with these settings for a stopped one.

    ``broker="redis://HOST:PORT/DB"`` joins the deployment sharing that Redis (see
    ``ws_notebook.broker``): broadcasts, sends to client ids and client lists then span every
    worker, ``ws-notebook serve --broker`` processes included. Joining happens in the
    background; an unreachable Redis is logged and retried.

    Settings not passed keep the values they had (a token given once stays across a stop and
    start). A running server is left as it is; asking it for another address or other settings
    is an error that says to stop it first. ``token="auto"`` generates a token. Endpoints stay
    mounted across a stop and start.

    Starting a stopped server opens again, with the same options, the outbound connections
    ``stop()`` closed (see ``ws_notebook.outbound``): a stop and start restarts everything that
    serves the notebook's WebSockets. This holds for whatever starts the server again
    (``%websocket start``, a ``%%websocket`` cell, ``serve``). A connection closed or unmounted
    before, or connected again since, is left as it is.
    """
    global _stop_at_exit_registered
    server = default_server()
    settings = {"certfile": certfile, "keyfile": keyfile, "token": token, "limits": limits}
    wanted: dict[str, Any] = {name: value for name, value in settings.items() if value is not None}
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
        if broker is not None:
            _join(server, broker)
        return server
    server.configure(**wanted)
    server.start(host, port)
    _reopen(server)
    if not _stop_at_exit_registered:
        # A kernel that shuts down closes its clients with 1001 (going away): the close
        # frames are written straight to the sockets, with no loop needed.
        atexit.register(stop)
        _stop_at_exit_registered = True
    if broker is not None:
        _join(server, broker)
    return server


def _reopen(server: Server) -> None:
    """Open again the outbound connections ``stop()`` closed, of endpoints still mounted."""
    from .outbound import open_mounted

    closed = dict(_closed_by_stop)
    _closed_by_stop.clear()
    for name, connection in closed.items():
        found = server.registry.find(name)
        if found is None or found.outbound is not connection or not found.descriptor.uri:
            continue  # unmounted, or connected again since
        open_mounted(found, connection.options)  # a new one: that one is closed or closing


def _join(server: Server, url: str) -> None:
    """Join the broker at ``url`` (once: a server already on a broker keeps it)."""
    import asyncio

    from .broker import Broker

    if server.registry.bus is not None:
        if server.registry.bus.url != url:
            raise ServerError(f"the server is already on broker {server.registry.bus.url}")
        return
    bus = Broker(url, server)
    bus.attach()  # at once, so that broadcasts made right away are published
    task = asyncio.get_running_loop().create_task(bus.start())
    _background.add(task)
    task.add_done_callback(_background.discard)


def mount(
    descriptor: Descriptor,
    handlers: Any = None,
    *,
    log_capacity: int | None = None,
    thread: bool = False,
) -> Mounted:
    """Mount or redefine an endpoint without starting the server.

    ``thread=True`` serves it on a thread of its own, so its handlers run while a cell blocks;
    they then run beside the notebook's code (see ``ws_notebook.worker``).
    """
    found = Handlers() if handlers is None else Handlers.from_object(handlers)
    _stopped.pop(descriptor.endpoint, None)
    return default_server().registry.mount(descriptor, found, log_capacity, threaded=thread)


def serve(
    endpoint: str | Descriptor,
    handlers: Any = None,
    *,
    description: str = "",
    created_by: str | None = None,
    host: str | None = None,
    port: int | None = None,
    log_capacity: int | None = None,
    thread: bool = False,
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
    return mount(endpoint, handlers, log_capacity=log_capacity, thread=thread).endpoint


def unmount(name: str, *, stopped_with: str | None = None) -> Endpoint:
    """Remove an endpoint; its clients are closed with 1001.

    Using the name afterwards is an error saying it was stopped with ``stopped_with`` (what the
    user typed; by default this call) and how to serve it again.
    """
    found = _endpoint(name)
    default_server().registry.unmount(name)
    location = found.descriptor.location
    if location.startswith("notebook"):
        again = "run its cell again to serve it"
    elif location == "python":
        again = "serve it again with ws_notebook.serve"
    else:
        again = "load its .websocket file again to serve it"
    _stopped[name] = f"was stopped with {stopped_with or f'ws_notebook.unmount({name!r})'}; {again}"
    return found


def stop() -> None:
    """Stop serving: clients are closed with 1001 and the port is freed; endpoints stay mounted.

    Outbound connections are closed with 1001 too, and ``start()`` opens them again. A broker
    joined with ``start(broker=...)`` is left too: its tasks stop, this kernel's clients leave
    the Redis registry and its connections close (``start(broker=...)`` joins again)."""
    if _server is not None:
        for found in _server.registry:
            if found.outbound is not None and not found.outbound.done:
                _closed_by_stop[found.name] = found.outbound
        _server.stop()
        bus = _server.registry.bus
        if bus is not None:
            leaving = bus.close()
            if leaving is not None:
                _background.add(leaving)
                leaving.add_done_callback(_background.discard)


def going_away(reason: str) -> None:
    """Close every client with 1001, from any thread, even while a cell blocks the kernel.

    The kernel's shutdown and restart requests run on its control thread: this is what the
    extension calls from there, so clients learn the kernel went away instead of seeing the
    connection drop (1006) when the process is killed.
    """
    if _server is None:
        return
    from .outbound import going_away as close_outbound

    # First: their I/O thread writes the close frames even while a cell blocks the loop
    # (server.going_away waits up to a second for the loop).
    close_outbound(_server.registry, reason)
    if _server.running:
        _server.going_away(reason)


def reset() -> None:
    """Stop the server and watchers and forget every endpoint, as a fresh kernel would have it."""
    global _server
    unwatch()
    stop()
    _server = None
    _stopped.clear()
    _closed_by_stop.clear()


def endpoint(name: str) -> Endpoint:
    """The mounted endpoint of that name; UnknownEndpoint says what went wrong if there is none:
    stopped (and how to serve it again), or a misspelling (with the names it may have meant)."""
    return _endpoint(name)


# ``endpoint`` under another name, for the functions whose parameter is called ``endpoint``.
def _endpoint(name: str) -> Endpoint:
    registry = default_server().registry
    found = registry.find(name)
    if found is not None:
        return found
    if name in _stopped:
        raise UnknownEndpoint(f"endpoint {name!r} {_stopped[name]}")
    mounted = sorted(e.name for e in registry)
    by_case = {known.lower(): known for known in [*_stopped, *mounted]}
    close = difflib.get_close_matches(name.lower(), by_case, n=3, cutoff=0.6)
    meant = f"; did you mean {' or '.join(repr(by_case[c]) for c in close)}?" if close else ""
    raise UnknownEndpoint(f"no endpoint {name!r} (mounted: {', '.join(mounted) or 'none'}){meant}")


def endpoints() -> list[Endpoint]:
    return list(default_server().registry)


def url(name: str, with_token: bool = False) -> str:
    """The ``ws://`` (or ``wss://``) URL of a mounted endpoint.

    ``with_token=True`` adds the server's ``?token=``: for a client to use, never to display.
    An outbound connection is not served here, so it has no URL: UnknownEndpoint says so, with
    its remote URI (credentials left out; ``endpoint(name).outbound.uri`` has it whole).
    """
    found = _endpoint(name)
    if found.outbound is not None:
        raise UnknownEndpoint(
            f"{name!r} is an outbound connection to {found.outbound.uri_shown}, not an endpoint "
            f"this server serves: it has no URL here (its URI: "
            f"ws_notebook.endpoint({name!r}).outbound.uri)"
        )
    return default_server().url(name, with_token=with_token)


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


def proxy_installed() -> bool:
    """Whether jupyter-server-proxy is installed here, so that ``proxy_path`` can lead anywhere."""
    return importlib.util.find_spec("jupyter_server_proxy") is not None


def proxy_path(name: str) -> str:
    """The path to the endpoint through jupyter-server-proxy, on the notebook page's own host
    (UnknownEndpoint for an outbound connection, which is not served here)."""
    url(name)  # says what an outbound connection is
    return default_server().proxy_path(name, jupyter_base_url())


def clients(endpoint: str | None = None) -> list[Peer]:
    """Open clients of one endpoint, or of all endpoints."""
    registry = default_server().registry
    bus = registry.bus
    if endpoint is not None:
        if bus is not None and registry.find(endpoint) is None:
            return bus.remote_clients(endpoint)  # served by other workers only
        found = list(_endpoint(endpoint).clients.values())
    else:
        found = registry.clients()
    return found + (bus.remote_clients(endpoint) if bus is not None else [])


def client(client_id: str) -> Peer | None:
    """The open client with that id, or None (as codbex's ``getClient``); with a broker, a
    client of another worker is a ``RemoteClient`` (``send`` and ``close`` work)."""
    registry = default_server().registry
    found = registry.client(client_id)
    if found is None and registry.bus is not None:
        return registry.bus.remote_client(client_id)
    return found


def _module_key(handler: str) -> str:
    """A handler path as the platform compares them, without a leading '/' or an extension."""
    path = handler.lstrip("/")
    stem, dot, suffix = path.rpartition(".")
    return stem if dot and suffix in ("js", "mjs", "cjs", "ts", "py") else path


def client_by_handler(handler: str) -> Peer | None:
    """An open client of an endpoint served by the handler module ``handler`` (the descriptor's
    ``handler``, with or without its extension), or None (as codbex's ``getClientByHandler``)."""
    wanted = _module_key(handler)
    for found in default_server().registry:
        if _module_key(found.descriptor.handler) == wanted:
            for open_client in found.clients.values():
                return open_client
    return None


# codbex's names (websockets.getClients() ...), and the same in Python's spelling.
getClients = get_clients = clients
getClient = get_client = client
getClientByHandler = get_client_by_handler = client_by_handler


def broadcast(endpoint: str, message: Any) -> int:
    """Send a message to every client of an endpoint; returns how many got it.

    With a broker, an endpoint served by other workers only (a notebook broadcasting to a
    deployment) is reached too."""
    bus = default_server().registry.bus
    if bus is not None and default_server().registry.find(endpoint) is None:
        from .connection import encode

        bus.publish(endpoint, encode(message))
        return bus.remote_count(endpoint)
    return _endpoint(endpoint).broadcast(message)


def events(endpoint: str, since: int = 0) -> list[dict[str, Any]]:
    """The endpoint's event log, oldest first, as dicts."""
    return [event.as_dict() for event in _endpoint(endpoint).log.since(since)]


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
    edit keeps the last good version serving; a descriptor with a ``uri`` connects when added,
    reconnects when its ``uri`` changes and is closed with 1001 when removed); ``unwatch`` or
    ``reset`` stops that.
    """
    registry = default_server().registry
    if not watch:
        loaded = load_project(path)
        start(host, port)
        mounted = [mount(item.descriptor, item.handlers).endpoint for item in loaded]
        _connect_outbound(mounted)
        return mounted
    key = Path(path).resolve()
    unwatch(key)
    watcher = ProjectWatcher(registry, path)
    loaded = watcher.load()
    start(host, port)
    watcher.start()
    _watchers[key] = watcher
    for item in loaded:
        _stopped.pop(item.descriptor.endpoint, None)
    mounted = [registry.get(item.descriptor.endpoint) for item in loaded]
    _connect_outbound(mounted)
    return mounted


def _connect_outbound(endpoints: list[Endpoint]) -> None:
    """Open the connections of the descriptors with a ``uri`` (see ``ws_notebook.outbound``)."""
    from .outbound import open_mounted

    for found in endpoints:
        if found.descriptor.uri:
            open_mounted(found)


def unwatch(path: str | Path | None = None) -> None:
    """Stop watching one folder, or every watched folder; its endpoints stay mounted."""
    keys = list(_watchers) if path is None else [Path(path).resolve()]
    for key in keys:
        watcher = _watchers.pop(key, None)
        if watcher is not None:
            watcher.stop()


def export(name: str, directory: str | Path) -> Path:
    """Write a mounted endpoint as ``DIR/NAME.websocket`` plus its handler module.

    An endpoint defined in a cell takes the notebook's imports and constants its handlers use
    along (see ``export_endpoint``). A JavaScript one (``%%websocket NAME --js``, or a ``.js``
    file that imports no modules beside it) is written as it is, to ``DIR/NAME.js``.
    """
    found = _endpoint(name)
    handlers = found.handlers
    if getattr(handlers, "language", "python") == "javascript":
        if handlers.local_files:
            raise HandlerError(
                f"cannot export {name!r}: its JavaScript handler imports modules beside it "
                f"({', '.join(str(p) for p in handlers.local_files)}); copy its project folder "
                "instead"
            )
        source = getattr(handlers, "javascript_source", None)
        return export_endpoint(found.descriptor, source, directory, suffix=".js")
    return export_endpoint(found.descriptor, handlers.source, directory, handlers.notebook)
