"""What handlers print: into their endpoint's event log, and to where the endpoint's output goes.

While a handler runs, :data:`running` holds its client (``Endpoint`` sets it, also across an
async handler's awaits). :func:`install` wraps ``sys.stdout`` and ``sys.stderr`` once in a
:class:`Routed` stream: with no handler running it passes text straight through, so the only
cost to a handler that prints nothing is setting and resetting the variable. A handler's text
is recorded line by line as ``stdout``/``stderr`` events and handed to the endpoint's
``output`` target: in a kernel, the cell that defined it (see ``magics``). This module knows
nothing of IPython; a target is any ``(stream name, text)`` callable.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from .events import LINE_PREVIEW_CHARS

if TYPE_CHECKING:
    from .endpoint import Peer

__all__ = ["DETAIL_CHARS", "OUTPUT_KINDS", "Routed", "Routing", "Target", "install", "running"]

DETAIL_CHARS = 4000  # of a printed line kept in its event's detail; its size counts them all
OUTPUT_KINDS = ("stdout", "stderr")

# Where an endpoint's output goes besides its log: called with "stdout" or "stderr" and the text.
Target = Callable[[str, str], None]

running: ContextVar[Peer | None] = ContextVar("ws_notebook_running", default=None)


class Routed:
    """Stands in for ``sys.stdout`` or ``sys.stderr`` and sends a handler's text to its endpoint.

    Lines are recorded whole: a line printed in pieces (``print`` writes each argument on its
    own) becomes one event when it ends, when the stream is flushed, or when another client's
    handler prints. ``record=False`` forwards without recording (for the logged tracebacks,
    which the log already has as an error event). ``echo=False`` drops the text of endpoints
    without a target (``ws-notebook serve`` prints their events instead). Anything else, such
    as ipykernel's ``set_parent``, is the wrapped stream's.
    """

    def __init__(self, name: str, stream: TextIO, record: bool = True, echo: bool = True) -> None:
        self.name = name
        self.stream = stream
        self.record = record
        self.echo = echo
        self._client: Peer | None = None  # whose line is being printed
        self._line = ""  # its text so far, up to DETAIL_CHARS
        self._size = 0  # its length so far

    def write(self, text: str) -> int:
        client = running.get()
        if client is None:
            return self.stream.write(text)
        if self.record:
            self._record(client, text)
        target = client._endpoint.output
        if target is not None:
            target(self.name, text)
        elif self.echo:
            self.stream.write(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._size:
            self._end_line()
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def _record(self, client: Peer, text: str) -> None:
        if client is not self._client:
            if self._size:
                self._end_line()
            self._client = client
        *ended, rest = text.split("\n")
        for piece in ended:
            self._add(piece)
            self._end_line()
        self._add(rest)

    def _add(self, piece: str) -> None:
        room = DETAIL_CHARS - len(self._line)
        if room > 0:
            self._line += piece[:room]
        self._size += len(piece)

    def _end_line(self) -> None:
        client, line = self._client, self._line
        assert client is not None
        client._endpoint.log.record(
            self.name, client.id, self._size, line[:LINE_PREVIEW_CHARS], line
        )
        self._line, self._size = "", 0


@dataclass
class Routing:
    """The two installed streams, and the way back to the ones they wrap."""

    stdout: Routed
    stderr: Routed

    def restore(self) -> None:
        """Put the wrapped streams back (unless something replaced ours since)."""
        for routed in (self.stdout, self.stderr):
            routed.flush()
            if getattr(sys, routed.name) is routed:
                setattr(sys, routed.name, routed.stream)


def install(echo: bool = True) -> Routing:
    """Wrap ``sys.stdout`` and ``sys.stderr`` so that handlers' output is routed; see ``Routed``."""
    routing = Routing(
        Routed("stdout", sys.stdout, echo=echo), Routed("stderr", sys.stderr, echo=echo)
    )
    sys.stdout, sys.stderr = routing.stdout, routing.stderr
    return routing


# Tornado's loggers, as ws_notebook shows them: tornado.access for 5xx only (a 4xx has its line
# in tornado.general, with the reason).
TORNADO_LEVELS = {
    "tornado.access": logging.ERROR,
    "tornado.general": logging.WARNING,
    "tornado.application": logging.WARNING,
}


def send_logs_to(handler: logging.Handler, levels: dict[str, int]) -> Callable[[], None]:
    """Send these loggers' lines (at these levels) to ``handler`` alone; returns an undo."""
    changed: list[tuple[logging.Logger, int, bool]] = []
    for name, level in levels.items():
        log = logging.getLogger(name)
        changed.append((log, log.level, log.propagate))
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False

    def restore() -> None:
        for log, level, propagate in changed:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate

    return restore
