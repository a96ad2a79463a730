"""The package's one exception base: ``except ws_notebook.Error`` catches whatever it raises.

Each error also keeps the builtin base it had before there was a common one, so code catching
``ValueError`` or ``ConnectionError`` still catches it.
"""

from __future__ import annotations

__all__ = ["ConnectionClosed", "Error"]


class Error(Exception):
    """Base of every error ws_notebook raises on purpose::

    Error
    ├── DescriptorError (ValueError)      a *.websocket file or dict is not valid
    ├── HandlerError (ValueError)         a handler module cannot be loaded or run
    ├── ProjectError (ValueError)         a project's files cannot be loaded
    ├── UnknownEndpoint (KeyError)        no endpoint by that name
    ├── ServerError (RuntimeError)        the server cannot start
    ├── BrokerError (RuntimeError)        the Redis broker cannot be used
    ├── ConnectionClosed (ConnectionError) sending to a closed connection
    ├── ConnectError (ConnectionError)    an outbound connection cannot be made
    ├── StompError                        a STOMP frame breaks the protocol
    └── JavaScriptError                   a JavaScript handler failed (ws_notebook.javascript)
    """


class ConnectionClosed(Error, ConnectionError):
    """Sending to a client whose connection is already closed."""
