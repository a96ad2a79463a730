"""Clients and events as rows of text, and the one table they and the CLI's are shown in.

``ws-notebook validate``, ``%websocket clients``/``log`` and the live panel all render their
rows with :class:`Table`: aligned text for a terminal, HTML for a notebook and the panel.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .events import Event
from .output import OUTPUT_KINDS

if TYPE_CHECKING:
    from .endpoint import Peer

__all__ = [
    "CLIENT_COLUMNS",
    "EVENT_COLUMNS",
    "Table",
    "client_row",
    "clock",
    "event_row",
    "payload",
]

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


def client_row(client: Peer) -> list[str]:
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


class Table:
    """Rows shown as aligned text (``repr``, a terminal) and as an HTML table (a notebook).

    ``kinds`` gives each row a CSS class (the panel colours events by kind); ``note`` is a line
    under the table.
    """

    def __init__(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        note: str = "",
        kinds: Sequence[str] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
        self.kinds = list(kinds) if kinds is not None else [""] * len(self.rows)
        self.note = note

    def text(self, empty: str = "(none)") -> str:
        """Columns padded to their widest cell; ``empty`` on a line of its own if no rows."""
        widths = [max(map(len, cells)) for cells in zip(self.columns, *self.rows, strict=True)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [self.columns, *self.rows]
        ]
        if not self.rows and empty:
            lines.append(empty)
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def html(self, hide: str | None = None, css: str = "", focusable: str | None = None) -> str:
        """The table without the ``hide`` column; cells of the ``focusable`` one take focus (the
        panel shows a focused payload whole)."""
        shown = [i for i, column in enumerate(self.columns) if column != hide]
        head = "".join(f"<th>{html.escape(self.columns[i])}</th>" for i in shown)
        cell = {i: '<td tabindex="0">' if self.columns[i] == focusable else "<td>" for i in shown}
        body = "".join(
            (f'<tr class="{kind}">' if kind else "<tr>")
            + "".join(f"{cell[i]}{html.escape(row[i])}</td>" for i in shown)
            + "</tr>"
            for kind, row in zip(self.kinds, self.rows, strict=True)
        )
        table = f'<table class="{css}">' if css else "<table>"
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"{table}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"

    def _repr_html_(self) -> str:
        return self.html()
