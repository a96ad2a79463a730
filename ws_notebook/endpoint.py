"""One endpoint: its descriptor, its handlers, its clients and its event log.

An :class:`Endpoint` is what stays put while a user iterates: redefining it swaps the handlers
and descriptor in place, so connections that are already open carry on and get the new
handlers' events from then on. It also runs the handlers, and is where a handler that raises
is caught, logged and reported to ``on_error`` without disturbing anything else. While a
handler runs, ``output.running`` names its client, so that what it prints goes to the endpoint's
log and output target (see :mod:`ws_notebook.output`), and :func:`context` tells the handler
which event it runs for, with codbex's names (``getMethod()``, ``getMessage()``, ...). What
``on_message`` returns is sent back to its client, as the platform sends ``onMessage``'s reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .codes import CloseCode
from .connection import Client, ConnectionClosed, encode
from .descriptor import Descriptor
from .events import EventLog
from .handlers import EVENT_NAMES, Handlers
from .output import Target, running

if TYPE_CHECKING:
    from typing import TypeAlias

    from .outbound import OutboundClient

    # Handlers get a client of a served connection, or of one this process opened.
    Peer: TypeAlias = Client | OutboundClient

__all__ = ["DEFAULT_LOG_CAPACITY", "Endpoint", "EventContext", "context"]

logger = logging.getLogger("ws_notebook")

DEFAULT_LOG_CAPACITY = 1000
# What a handler may raise that is not its own error: the task running it is being cancelled.
_PROPAGATE = (asyncio.CancelledError, GeneratorExit)

# The event the running handler was called for, and its arguments: set and reset around every
# handler call (and in the task awaiting an async one), as ``output.running`` is.
_event: ContextVar[tuple[str, tuple] | None] = ContextVar("ws_notebook_event", default=None)
# codbex's names of the events, as getMethod() gives them.
METHODS = {"open": "onopen", "message": "onmessage", "error": "onerror", "close": "onclose"}


class EventContext:
    """The event a handler runs for, as codbex's ``websockets`` module tells it.

    ``getMethod()`` is ``"onopen"``, ``"onmessage"``, ``"onerror"`` or ``"onclose"``;
    ``getMessage()`` the message (in ``on_message``), ``getError()`` the exception (in
    ``on_error``), else None; ``isOnOpen()`` and friends say which. ``client`` is the client
    the event is about. Outside a handler every answer is None or False. Each method also has
    its Python name (``get_method``, ``is_on_open``, ...).
    """

    __slots__ = ("_args", "_event")

    def __init__(self, event: str | None = None, args: tuple = ()) -> None:
        self._event = event
        self._args = args

    def __repr__(self) -> str:
        return f"<EventContext {self.getMethod()}>"

    @property
    def client(self) -> Client | None:
        return self._args[-1] if self._args else None

    def getMethod(self) -> str | None:
        return METHODS.get(self._event) if self._event is not None else None

    def getMessage(self) -> str | bytes | None:
        return self._args[0] if self._event == "message" else None

    def getError(self) -> BaseException | None:
        return self._args[0] if self._event == "error" else None

    def isOnOpen(self) -> bool:
        return self._event == "open"

    def isOnMessage(self) -> bool:
        return self._event == "message"

    def isOnError(self) -> bool:
        return self._event == "error"

    def isOnClose(self) -> bool:
        return self._event == "close"

    get_method = getMethod
    get_message = getMessage
    get_error = getError
    is_on_open = isOnOpen
    is_on_message = isOnMessage
    is_on_error = isOnError
    is_on_close = isOnClose


def context() -> EventContext:
    """The event the running handler was called for (codbex: ``websockets.getMethod()``, ...);
    outside a handler, a context of no event."""
    current = _event.get()
    return EventContext() if current is None else EventContext(*current)


def _reply(value: Any, client: Peer) -> None:
    """Send what ``on_message`` returned to its client, as the platform sends a reply."""
    try:
        client.send(value)
    except TypeError as error:
        raise TypeError(f"the value it returned cannot be sent back: {error}") from error


class Endpoint:
    """A mounted endpoint: it dispatches its connections' events to its current handlers.

    Whatever a handler raises is that handler's error (logged, recorded, passed to
    ``on_error``), ``SystemExit`` and ``KeyboardInterrupt`` included, so a handler calling
    ``sys.exit()`` or argparse on a client's message cannot end the kernel or ``ws-notebook
    serve``. A ``KeyboardInterrupt`` can only come from the handler's own code in ``serve``
    (SIGINT is handled on the loop); in a kernel, an interrupt that lands while a handler runs
    stops that handler only. Only task cancellation (``CancelledError``, ``GeneratorExit``)
    goes on up, as shutdown needs it to.
    """

    def __init__(
        self, descriptor: Descriptor, handlers: Handlers, log_capacity: int = DEFAULT_LOG_CAPACITY
    ) -> None:
        self.descriptor = descriptor
        self.handlers = handlers
        self.log = EventLog(log_capacity)
        self.clients: dict[str, Peer] = {}
        self.connections = 0  # over the endpoint's life, open or closed since
        self.messages_in = 0
        self.messages_out = 0
        # Where what its handlers print goes besides the log (None: the process's own streams);
        # whoever defines the endpoint sets it, as the notebook sets it to the defining cell.
        self.output: Target | None = None
        # Served on a thread of its own (ws_notebook.worker), so its handlers run while cells
        # block; new connections follow a change, open ones stay where they are.
        self.threaded = False
        # The latest messages that waited for a busy kernel: how many, how long, when it ended.
        self.last_wait: tuple[int, float, float] | None = None
        self.bus: Any = None  # a ws_notebook.broker.Broker: broadcasts reach other workers too
        # A ws_notebook.outbound.OutboundConnection: this endpoint is a connection this process
        # opened to another server (its descriptor's ``uri``), not one it serves.
        self.outbound: Any = None

    @property
    def name(self) -> str:
        return self.descriptor.endpoint

    @property
    def direction(self) -> str:
        """``"in"`` for a served endpoint, ``"out"`` for an outbound connection."""
        return "in" if self.outbound is None else "out"

    def __repr__(self) -> str:
        return f"<Endpoint {self.name!r} {len(self.clients)} clients, handlers {self.handlers.defined}>"

    def broadcast(self, message: Any, _relay: bool = True) -> int:
        """Send a message to every open client; returns how many it was sent to.

        The message is encoded once, and logged once (as sent to "all N"), not once per client:
        one broadcast to 1,000 clients would otherwise push everything else out of the log.
        From another thread, the broadcast is handed over to the server's loop. With a broker,
        it is also published to the other workers, and the count includes their clients.
        """
        frame = encode(message)
        remote = 0
        if _relay and self.bus is not None:
            self.bus.publish(self.name, frame)
            remote = self.bus.remote_count(self.name)
        clients = list(self.clients.values())
        if clients and clients[0]._elsewhere():
            clients[0]._loop.add_callback(self.broadcast, frame, False)
            return len(clients) + remote
        sent = 0
        for client in clients:
            try:
                client._deliver(frame)
            except ConnectionClosed:
                continue
            sent += 1
        if sent:
            self.log.message("out", f"all {sent}", frame.message)
        return sent + remote

    def waited(self, client: str, messages: int, since: float, stall_ended: float) -> None:
        """Record messages of a client that waited for the kernel (a cell blocked its loop)."""
        seconds = stall_ended - since
        plural = "s" if messages != 1 else ""
        self.log.record(
            "wait",
            client,
            detail=f"{messages} message{plural} waited {seconds:.1f} s for the kernel",
        )
        if self.last_wait is not None and self.last_wait[2] == stall_ended:  # other clients'
            messages += self.last_wait[0]
            seconds = max(seconds, self.last_wait[1])
        self.last_wait = (messages, seconds, stall_ended)

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        if self.outbound is not None:  # closed for good: it does not reconnect
            self.outbound.close(code, reason)
        for client in list(self.clients.values()):
            client.close(code, reason)

    # --- called by the server for each connection event -------------------------------

    def opened(self, client: Peer) -> Any:
        self.connections += 1
        self.clients[client.id] = client
        self.log.record("open", client.id, detail=client.remote_address)
        handler = self.handlers.on_open
        if handler is not None:
            return self._run("open", handler, (client,), client)
        return None

    def received(self, message: str | bytes, client: Peer) -> Any:
        self.messages_in += 1
        client.messages_in += 1
        client.bytes_in += len(message)
        self.log.message("in", client.id, message)
        handler = self.handlers.on_message
        if handler is not None:
            return self._run("message", handler, (message, client), client)
        return None

    def closed(self, client: Peer, by_server: bool = False) -> Any:
        self.clients.pop(client.id, None)
        client._detach()
        if client.close_code is None:
            detail = "connection dropped without a close frame"
        else:
            detail = f"{client.close_code} {client.close_reason or ''}".rstrip()
            detail += " (closed by the server)" if by_server else ""
        self.log.record("close", client.id, detail=detail)
        handler = self.handlers.on_close
        if handler is not None:
            return self._run("close", handler, (client,), client)
        return None

    # --- running handlers ----------------------------------------------------------------

    def _run(self, event: str, handler: Any, args: tuple, client: Peer) -> Any:
        """Call a handler; an ``async`` one is returned as a coroutine for Tornado to await.

        What ``on_message`` returns (but None) is sent to its client; a value that cannot be
        sent is that handler's error.
        """
        token = running.set(client)  # the error report too goes where the handler's prints go
        current = _event.set((event, args))
        try:
            result = handler(*args)
            if result is None:
                return None
            if hasattr(result, "__await__"):
                return self._finish(event, result, client, args)
            if event == "message":
                _reply(result, client)
            return None
        except _PROPAGATE:
            raise
        except BaseException as error:
            return self._failed(event, error, client)  # an async on_error, for Tornado to await
        finally:
            _event.reset(current)
            running.reset(token)

    async def _finish(self, event: str, pending: Any, client: Peer, args: tuple) -> None:
        # Set here, in the task that awaits the handler: Tornado makes its task after _run
        # returned, in a context without the variables; on_open is awaited in the connection's
        # own task, which must not keep them.
        token = running.set(client)
        current = _event.set((event, args))
        try:
            result = await pending
            if result is not None and event == "message":
                _reply(result, client)
        except _PROPAGATE:
            raise
        except BaseException as error:
            await self._failed_async(event, error, client)
        finally:
            # ValueError: the garbage collector closed the coroutine unfinished, from elsewhere.
            with contextlib.suppress(ValueError):
                _event.reset(current)
            with contextlib.suppress(ValueError):
                running.reset(token)

    def _failed(self, event: str, error: BaseException, client: Peer) -> Any:
        """Record a handler's exception and hand it to ``on_error``; the connection stays open."""
        self._report(event, error, client)
        on_error = self.handlers.on_error
        if on_error is None or event == "error":
            return None
        return self._run("error", on_error, (error, client), client)

    async def _failed_async(self, event: str, error: BaseException, client: Peer) -> None:
        pending = self._failed(event, error, client)
        if pending is not None:
            await pending

    def _report(self, event: str, error: BaseException, client: Peer) -> None:
        name = EVENT_NAMES[event][0]
        text = f"{name} raised {type(error).__name__}: {error}"
        self.log.record("error", client.id, detail=text)
        logger.error("endpoint %r, client %s: %s", self.name, client.id, text, exc_info=error)
