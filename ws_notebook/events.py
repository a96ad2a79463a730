"""A bounded log of what happened on an endpoint: opens, messages in and out, errors, closes,
and the lines its handlers printed.

It is the single source that ``%websocket log`` and the live widgets read. Recording must stay
cheap on the server's hot path, so an event is a plain tuple appended to a ``deque`` with a
maximum length; readers turn tuples into :class:`Event` objects only when they ask. Every event
gets a sequence number, so a reader can fetch only what is new since its last look, and the
log counts what it had to drop. A reader that must see every open, error, close and printed
line (the ``serve`` command's stderr) sets a ``listener`` instead, as messages can push those
out.

Memory stays bounded: an event keeps at most :data:`PREVIEW_CHARS` characters of a text message
(:data:`PREVIEW_BYTES` bytes of a binary one) and records its full size, so a log of
``capacity`` events holds at most ``capacity * PREVIEW_CHARS`` characters of payload, whatever
the traffic (about 8 MB of ASCII text at the default capacity of 1,000; up to four times that for
text outside Latin-1, as Python stores it). A message no longer than that is kept by reference,
not copied.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Event", "EventLog"]

PREVIEW_CHARS = 8192  # of a text message kept in its event
PREVIEW_BYTES = 2048  # of a binary message
LINE_PREVIEW_CHARS = 120  # of a printed line: its event's detail keeps the line (or its start)
LINE_KINDS = ("stdout", "stderr")
MESSAGE_KINDS = ("in", "out")


class Event(NamedTuple):
    seq: int
    time: float
    kind: str  # "open", "in", "out", "error", "close", or "stdout"/"stderr": a line printed
    client: str
    size: int  # of a message, or of a printed line
    preview: str | bytes
    detail: str  # the error text, the close code and reason, or a printed line (its start)

    @property
    def cut(self) -> int:
        """How many characters (bytes, for binary) of the message or printed line were not kept."""
        if self.kind in LINE_KINDS:
            return max(0, self.size - len(self.detail))
        return max(0, self.size - len(self.preview)) if self.kind in MESSAGE_KINDS else 0

    def as_dict(self) -> dict[str, object]:
        data = self._asdict()
        if isinstance(self.preview, bytes):
            data["preview"] = self.preview.hex(" ")
            data["binary"] = True
        else:
            data["binary"] = False
        data["cut"] = self.cut
        return data


class EventLog:
    """The last ``capacity`` events of one endpoint, and a count of those dropped before them."""

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 0:
            raise ValueError(f"capacity: {capacity} is negative; use 0 to keep no events")
        self._events: deque[tuple] = deque(maxlen=capacity)
        self._off = capacity == 0  # the log is off: count events, keep none
        self.total = 0  # events ever recorded; the next one gets this sequence number
        self._cleared = 0  # events removed on purpose by clear(), not counted as dropped
        # Called with each open, error, close and output event as it is recorded (not
        # messages: they are the hot path), even with the log off.
        self.listener: Callable[[Event], None] | None = None

    @property
    def capacity(self) -> int:
        return self._events.maxlen or 0

    @property
    def dropped(self) -> int:
        """How many events were recorded but pushed out of the buffer."""
        return self.total - self._cleared - len(self._events)

    def record(
        self,
        kind: str,
        client: str,
        size: int = 0,
        preview: str | bytes = "",
        detail: str = "",
    ) -> None:
        event = (self.total, time.time(), kind, client, size, preview, detail)
        if not self._off:
            self._events.append(event)
        self.total += 1
        if self.listener is not None:
            self.listener(Event._make(event))

    def message(self, kind: str, client: str, message: str | bytes) -> None:
        """Record a message in or out: its size and its first ``PREVIEW_CHARS`` characters
        (``PREVIEW_BYTES`` bytes), which is all of most messages."""
        if not self._off:
            limit = PREVIEW_BYTES if message.__class__ is bytes else PREVIEW_CHARS
            self._events.append(
                (self.total, time.time(), kind, client, len(message), message[:limit], "")
            )
        self.total += 1

    def since(self, seq: int = 0) -> list[Event]:
        """Events numbered ``seq`` or later that are still in the buffer, oldest first."""
        first = self.total - len(self._events)
        skip = max(0, seq - first)
        events = self._events
        if skip:
            return [Event._make(events[i]) for i in range(skip, len(events))]
        return [Event._make(item) for item in events]

    def clear(self) -> None:
        """Forget the buffered events; sequence numbers and the total keep counting."""
        self._cleared += len(self._events)
        self._events.clear()

    def __len__(self) -> int:
        return len(self._events)
