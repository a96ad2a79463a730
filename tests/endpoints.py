"""Endpoints from plain functions, for tests that serve without a kernel."""

from __future__ import annotations

from ws_notebook import Descriptor, Endpoint, Handlers, Server


def mount(
    server: Server, name: str, log_capacity: int | None = None, **functions: object
) -> Endpoint:
    """Mount an endpoint whose handlers are ``functions`` (``on_message=...``, ...)."""
    descriptor = Descriptor.new(name, handler="test", created_by="test")
    handlers = Handlers.from_namespace(functions)
    return server.registry.mount(descriptor, handlers, log_capacity).endpoint
