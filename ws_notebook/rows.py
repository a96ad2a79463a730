"""Clients and events as rows of text: what ``%websocket clients``/``log`` and the panel show."""

from __future__ import annotations

import time

from .connection import Client
from .events import Event
from .output import OUTPUT_KINDS

__all__ = ["CLIENT_COLUMNS", "EVENT_COLUMNS", "client_row", "clock", "event_row", "payload"]

CLIENT_COLUMNS = [
    "client",
    "endpoint",
    "remote",
    "opened",
    "in",
    "out",
    "bytes in",
    "bytes out",
    "state",
]
EVENT_COLUMNS = ["time", "endpoint", "event", "client", "size", "payload / detail"]
_SIZED = ("in", "out", *OUTPUT_KINDS)


def clock(timestamp: float) -> str:
    """Local wall-clock time to the millisecond, as logs show it."""
    return (
        time.strftime("%H:%M:%S", time.localtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}"
    )


def payload(event: Event) -> str:
    """An event's detail, or its preview (of a message or printed line): binary as hex; "…" if cut."""
    if event.detail and event.kind not in OUTPUT_KINDS:
        return event.detail
    more = "…" if event.size > len(event.preview) else ""
    if isinstance(event.preview, bytes):
        return event.preview.hex(" ") + more
    return event.preview + more


def client_row(client: Client) -> list[str]:
    outbound = getattr(client, "direction", "in") == "out"  # a connection this process opened
    return [
        client.id,
        client.endpoint,
        f"out to {client.remote_address}" if outbound else client.remote_address,
        clock(client.opened_at),
        str(client.messages_in),
        str(client.messages_out),
        str(client.bytes_in),
        str(client.bytes_out),
        client.state,
    ]


def event_row(endpoint: str, event: Event) -> list[str]:
    size = str(event.size) if event.kind in _SIZED else ""
    return [clock(event.time), endpoint, event.kind, event.client, size, payload(event)]
