"""ws_notebook: codbex-style WebSocket endpoints, defined and served from a Jupyter notebook.

In a notebook::

    %load_ext ws_notebook

    %%websocket echo
    def on_message(message, client):
        client.send(message)

From plain Python (inside a running asyncio loop)::

    import ws_notebook
    ws_notebook.serve("echo", {"on_message": lambda message, client: client.send(message)})

and the other way round, a connection to another server with the same handlers
(``create_websocket`` is the same, see :mod:`ws_notebook.outbound`)::

    feed = ws_notebook.connect("wss://example.org/feed", {"on_message": print}, reconnect=True)
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .api import (
    broadcast,
    client,
    client_by_handler,
    clients,
    context,
    default_server,
    endpoint,
    endpoints,
    events,
    export,
    get_client,
    get_client_by_handler,
    get_clients,
    getClient,
    getClientByHandler,
    getClients,
    load_descriptor,
    mount,
    proxy_path,
    reset,
    serve,
    start,
    stop,
    unmount,
    unwatch,
    url,
)
from .codes import CloseCode
from .connection import Client
from .descriptor import Descriptor, DescriptorError
from .endpoint import Endpoint, EventContext
from .errors import ConnectionClosed, Error
from .events import Event, EventLog
from .handlers import HandlerError, Handlers
from .outbound import (
    ConnectError,
    OutboundClient,
    OutboundConnection,
    Reconnect,
    connect,
    create_websocket,
)
from .project import ProjectError
from .registry import Registry, UnknownEndpoint
from .server import Limits, Server, ServerError

try:  # the installed distribution's version: pyproject.toml is the one place it is written
    __version__ = version("ws_notebook")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Client",
    "CloseCode",
    "ConnectError",
    "ConnectionClosed",
    "Descriptor",
    "DescriptorError",
    "Endpoint",
    "Event",
    "EventContext",
    "Error",
    "EventLog",
    "HandlerError",
    "Handlers",
    "Limits",
    "OutboundClient",
    "OutboundConnection",
    "ProjectError",
    "Reconnect",
    "Registry",
    "Server",
    "ServerError",
    "UnknownEndpoint",
    "broadcast",
    "client",
    "client_by_handler",
    "clients",
    "connect",
    "context",
    "create_websocket",
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
    "load_descriptor",
    "load_ipython_extension",
    "mount",
    "proxy_path",
    "reset",
    "serve",
    "start",
    "stop",
    "unload_ipython_extension",
    "unmount",
    "unwatch",
    "url",
]


# IPython looks these up on the package; importing the magics lazily keeps the core IPython-free.
def load_ipython_extension(ipython: Any) -> None:
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)
