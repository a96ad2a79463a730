"""Endpoints by name: the :class:`Registry` one server mounts (see :mod:`ws_notebook.endpoint`
for what an endpoint is)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from .codes import CloseCode
from .descriptor import Descriptor, check_endpoint_name
from .endpoint import DEFAULT_LOG_CAPACITY, Endpoint
from .errors import Error
from .events import Event, EventLog
from .handlers import Handlers

if TYPE_CHECKING:
    from .endpoint import Peer

__all__ = ["Mounted", "Registry", "RESERVED_PATHS", "UnknownEndpoint"]

logger = logging.getLogger("ws_notebook")

# Paths at the root of the server that are not endpoints, so an endpoint of that name is not
# reachable by the short form /NAME: the endpoint list, the health check, the platform's REST
# prefix, and the SockJS paths (STOMP, and the older /js) kept for them.
RESERVED_PATHS = ("websockets", "healthz", "services", "stomp", "js")

Subscriber = Callable[[Endpoint, Event], None]


class UnknownEndpoint(Error, KeyError):
    """No endpoint of that name is mounted."""

    def __str__(self) -> str:
        return str(self.args[0])


class Mounted(NamedTuple):
    """What ``Registry.mount`` did: the endpoint, and the descriptor it replaced, if any."""

    endpoint: Endpoint
    replaced: Descriptor | None


class Registry:
    """The endpoints one server mounts, by name."""

    def __init__(self) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        self._subscribers: list[Subscriber] = []
        self.bus: Any = None  # a ws_notebook.broker.Broker, given to every endpoint mounted

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(endpoint, event)`` for every open, error, close and output event.

        Of every endpoint mounted here, now or later, including after its log is replaced, and
        after it is unmounted (its clients still close). Unlike reading the bounded logs, nothing
        is missed however many messages push those events out of them.
        """
        self._subscribers.append(subscriber)
        for endpoint in self._endpoints.values():
            self._listen(endpoint)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber`` (a broker that left, say); unknown ones are ignored."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def _listen(self, endpoint: Endpoint) -> None:
        if self._subscribers:
            endpoint.log.listener = functools.partial(self._notify, endpoint)

    def _notify(self, endpoint: Endpoint, event: Event) -> None:
        for subscriber in self._subscribers:
            subscriber(endpoint, event)

    def mount(
        self,
        descriptor: Descriptor,
        handlers: Handlers,
        log_capacity: int | None = None,
        threaded: bool = False,
    ) -> Mounted:
        """Mount an endpoint, or swap the handlers of the one already mounted under that name."""
        check_endpoint_name(descriptor.endpoint)
        if descriptor.endpoint in RESERVED_PATHS:
            name = descriptor.endpoint
            logger.warning(
                "%s",
                f"endpoint {name!r}: /{name} is a path the server itself uses, so clients reach "
                f"this endpoint at /websockets/service/{name} only (not by the short form /{name})",
            )
        current = self._endpoints.get(descriptor.endpoint)
        if current is None:
            capacity = DEFAULT_LOG_CAPACITY if log_capacity is None else log_capacity
            endpoint = Endpoint(descriptor, handlers, capacity)
            endpoint.threaded = threaded
            endpoint.bus = self.bus
            self._endpoints[descriptor.endpoint] = endpoint
            self._listen(endpoint)
            return Mounted(endpoint, None)
        current.threaded = threaded
        replaced = current.descriptor
        current.output = None  # the new definer says where its output goes
        if current.handlers is not handlers:
            current.handlers.release()  # the modules its handler module imported beside it
        current.descriptor = descriptor
        current.handlers = handlers
        if log_capacity is not None and log_capacity != current.log.capacity:
            current.log = EventLog(log_capacity)
            self._listen(current)
        return Mounted(current, replaced)

    def unmount(self, name: str, reason: str = "endpoint removed") -> Endpoint:
        """Remove an endpoint; its clients are closed with 1001 (going away)."""
        endpoint = self.get(name)
        del self._endpoints[name]
        endpoint.close_all(CloseCode.GOING_AWAY, reason)
        return endpoint

    def get(self, name: str) -> Endpoint:
        try:
            return self._endpoints[name]
        except KeyError:
            mounted = ", ".join(sorted(self._endpoints)) or "none"
            raise UnknownEndpoint(f"no endpoint {name!r} (mounted: {mounted})") from None

    def find(self, name: str) -> Endpoint | None:
        return self._endpoints.get(name)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(list(self._endpoints.values()))

    def __len__(self) -> int:
        return len(self._endpoints)

    def __contains__(self, name: object) -> bool:
        return name in self._endpoints

    def clients(self, endpoint: str | None = None) -> list[Peer]:
        """Open clients of one endpoint, or of all of them."""
        endpoints = [self.get(endpoint)] if endpoint is not None else list(self)
        return [client for e in endpoints for client in e.clients.values()]

    def client(self, client_id: str) -> Peer | None:
        for endpoint in self._endpoints.values():
            client = endpoint.clients.get(client_id)
            if client is not None:
                return client
        return None
