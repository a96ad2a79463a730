"""Traffic over the last minutes, one point a second: what the live panel's chart draws.

The panel samples its endpoints' counters on each flush (every 200 ms); a ``TrafficSeries``
turns those growing counters into per-second buckets of messages in and out, open connections,
and connections opened and closed, in a window of fixed length, so its memory and the cost of
drawing it stay bounded however long the panel runs. Only whole seconds are shown: the chart
changes once a second at most, whatever the traffic.

The panel flushes on the kernel's loop, so while a cell blocks that loop there are no samples.
A gap of more than ``STALL`` seconds between two samples is marked as a stall ("kernel busy"),
and the messages counted across it are spread evenly over it: nothing tells when within the
gap they came (an endpoint on its own thread goes on serving; others' messages wait for the
cell, and are handled when it ends). The panel takes a sample as of the stall's start once the
wire keeper says when it began, so what came before a stall is charted before it.

A ``Recorder`` keeps such series for every endpoint from the moment the extension is loaded
(``widgets`` samples it on the kernel's loop), so a panel shown later starts with them.

Plain Python: no IPython, no ipywidgets. ``svg()`` draws the same picture as the chart
widget's JavaScript, for a saved notebook's static snapshot.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ["SPAN", "STALL", "WINDOW", "Counters", "Recorder", "TrafficSeries", "render_svg"]

WINDOW = 300  # seconds kept: five minutes, one bucket a second
SPAN = 60  # seconds across the chart at least: a fresh panel's first minute fills its width
STALL = 2.0  # seconds without a sample that mean the kernel's loop was blocked


class Counters(NamedTuple):
    """Totals at one instant: messages so far, connections open now and opened so far."""

    messages_in: int = 0
    messages_out: int = 0
    open: int = 0
    connections: int = 0

    @classmethod
    def of(cls, endpoints: Iterable[Any]) -> Counters:
        """The sums over endpoints (served or outbound: anything with an Endpoint's counters)."""
        messages_in = messages_out = open_now = connections = 0
        for endpoint in endpoints:
            messages_in += endpoint.messages_in
            messages_out += endpoint.messages_out
            open_now += len(endpoint.clients)
            connections += endpoint.connections
        return cls(messages_in, messages_out, open_now, connections)


class _Second:
    """One bucket: what happened in one second of wall-clock time."""

    __slots__ = ("closed", "messages_in", "messages_out", "open", "opened", "stalled")

    def __init__(self, open_now: int, stalled: bool = False) -> None:
        self.messages_in = 0
        self.messages_out = 0
        self.open = open_now  # at the end of the second (the last sample in it)
        self.opened = 0
        self.closed = 0
        self.stalled = stalled


def _increase(now: int, before: int) -> int:
    """How much a counter grew; a counter that went back (its endpoint was unmounted or
    replaced) starts a new baseline rather than count a negative or a spurious burst."""
    return now - before if now >= before else 0


def _share(total: int, index: int, parts: int) -> int:
    """Part ``index`` of ``total`` split into ``parts`` integers as even as they can be."""
    return total * (index + 1) // parts - total * index // parts


class TrafficSeries:
    """Per-second traffic over the last ``seconds``, from samples of growing counters."""

    def __init__(self, seconds: int = WINDOW) -> None:
        if not isinstance(seconds, int) or seconds < 10:
            raise ValueError(f"seconds: a window of at least 10 seconds, not {seconds!r}")
        self.seconds = seconds
        self._done: deque[_Second] = deque(maxlen=seconds)  # whole seconds, oldest first
        self._end = 0  # the wall-clock second after the last whole one (the one being counted)
        self._current: _Second | None = None
        self._last: Counters | None = None
        self._last_time = 0.0

    def sample(self, now: float, counters: Counters) -> bool:
        """Take one sample (``now``: wall-clock seconds); True when a second was completed,
        that is when what the chart shows changed."""
        second = math.floor(now)
        last, current = self._last, self._current
        if last is None or current is None:  # the first sample is the baseline
            self._start(now, second, counters)
            return False
        second = max(second, self._end)  # a clock set back: count into the current second
        messages_in = _increase(counters.messages_in, last.messages_in)
        messages_out = _increase(counters.messages_out, last.messages_out)
        opened = _increase(counters.connections, last.connections)
        closed = max(0, last.open + opened - counters.open)
        stalled = now - self._last_time > STALL
        self._last, self._last_time = counters, now
        gap = second - self._end  # whole seconds gone by since the last sample
        if gap == 0:
            current.messages_in += messages_in
            current.messages_out += messages_out
            current.open = counters.open
            current.opened += opened
            current.closed += closed
            return False
        # The seconds between the two samples share the messages counted across them; the
        # connections' comings and goings are put at the end, where they were seen.
        self._done.append(current)
        skipped = gap - 1
        for index in range(max(0, skipped - self.seconds), skipped):
            between = _Second(last.open, stalled)
            between.messages_in = _share(messages_in, index, gap)
            between.messages_out = _share(messages_out, index, gap)
            self._done.append(between)
        fresh = _Second(counters.open)
        fresh.messages_in = _share(messages_in, skipped, gap)
        fresh.messages_out = _share(messages_out, skipped, gap)
        fresh.opened, fresh.closed = opened, closed
        self._current, self._end = fresh, second
        return True

    def _start(self, now: float, second: int, counters: Counters) -> None:
        self._last, self._last_time = counters, now
        self._current, self._end = _Second(counters.open), second

    def as_dict(self) -> dict[str, Any]:
        """The whole seconds, as compact columns for the chart widget (and saved with it).

        ``end`` is the wall-clock second after the newest bucket; ``stalls`` are runs of
        stalled buckets as ``[first index, length]``.
        """
        done = self._done
        stalls: list[list[int]] = []
        for index, bucket in enumerate(done):
            if not bucket.stalled:
                continue
            if stalls and stalls[-1][0] + stalls[-1][1] == index:
                stalls[-1][1] += 1
            else:
                stalls.append([index, 1])
        return {
            "seconds": self.seconds,
            "end": self._end,
            "in": [b.messages_in for b in done],
            "out": [b.messages_out for b in done],
            "open": [b.open for b in done],
            "opened": [b.opened for b in done],
            "closed": [b.closed for b in done],
            "stalls": stalls,
        }

    def svg(self, width: int = 640, height: int = 120) -> str:
        return render_svg(self.as_dict(), width, height)

    def copy(self) -> TrafficSeries:
        """A series that goes on from this one on its own (a panel's, from the recorder's)."""
        twin = TrafficSeries(self.seconds)
        twin._done = self._done.copy()  # whole seconds never change: they can be shared
        twin._end, twin._last, twin._last_time = self._end, self._last, self._last_time
        current = self._current
        if current is not None:
            twin._current = _Second(current.open, current.stalled)
            for name in ("messages_in", "messages_out", "opened", "closed"):
                setattr(twin._current, name, getattr(current, name))
        return twin


class Recorder:
    """The series of every endpoint, and of all of them together, sampled whether or not a
    panel shows them, so that a panel shown later (``%websocket monitor`` after a burst) starts
    with the last minutes rather than an empty chart. Memory: a window per mounted endpoint."""

    def __init__(self, seconds: int = WINDOW, *, from_zero: bool = False) -> None:
        """``from_zero``: every endpoint it will see is mounted after it is made (a fresh
        server's), so what they count before its first sample is charted too."""
        self.seconds = seconds
        self.total = TrafficSeries(seconds)
        self._each: dict[str, tuple[Any, TrafficSeries]] = {}  # name: endpoint, its series
        self._from_zero = from_zero
        self._sampled = False

    def sample(self, now: float, endpoints: list[Any], stall_start: bool = False) -> None:
        """Sample ``endpoints`` (all those mounted); those no longer mounted are forgotten.

        ``stall_start``: a sample as of a stall's start, taken once it ended, before what
        waited is handled. Only of endpoints served on the loop (those on their own thread went
        on meanwhile), and of the total only if all of them are.
        """
        if stall_start:
            looped = [e for e in endpoints if not e.threaded]
            if len(looped) == len(endpoints):
                self.total.sample(now, Counters.of(endpoints))
            for endpoint in looped:
                known, series = self._each.get(endpoint.name, (None, None))
                if known is endpoint and series is not None:
                    series.sample(now, Counters.of([endpoint]))
            return
        # An endpoint not seen before was mounted since the last sample, counters at zero.
        mounted_since = self._sampled or self._from_zero
        if not self._sampled and self._from_zero:
            self.total.sample(now, Counters())
        self.total.sample(now, Counters.of(endpoints))
        each: dict[str, tuple[Any, TrafficSeries]] = {}
        for endpoint in endpoints:
            known, series = self._each.get(endpoint.name, (None, None))
            if series is None:
                series = TrafficSeries(self.seconds)
            if known is not endpoint and mounted_since:  # (or mounted anew: a new baseline)
                series.sample(now, Counters())
            series.sample(now, Counters.of([endpoint]))
            each[endpoint.name] = (endpoint, series)
        self._each, self._sampled = each, True

    def history(self, name: str | None) -> TrafficSeries:
        """A copy of the series of endpoint ``name`` (None: of all of them), to go on from."""
        if name is None:
            return self.total.copy()
        _, series = self._each.get(name, (None, None))
        return series.copy() if series is not None else TrafficSeries(self.seconds)


# --- drawing: the same picture as the chart widget's JavaScript (chart.py) ----------------------

IN_COLOR, OUT_COLOR, OPEN_COLOR = "#3a9a3a", "#1a4fa0", "#777777"
STALL_COLOR, OPENED_COLOR, CLOSED_COLOR = "#f3dd9b", "#555555", "#c0392b"
LEFT, RIGHT, TOP, BOTTOM = 40, 30, 16, 16  # margins: the axes' labels and the legend


def nice_ceiling(value: float) -> float:
    """The axis' top: 1, 2 or 5 times a power of ten, at least ``value`` (and at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _clock(second: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(second))


def _count(value: float) -> str:
    return f"{value / 1000:g}k" if value >= 10_000 else f"{value:,.0f}"


def legend(series: dict[str, Any]) -> str:
    """The newest second's figures in the lines' colours, and the window's peak (SVG text)."""
    if not series["in"]:
        return "no whole second sampled yet"
    peak = max(max(series["in"]), max(series["out"]))
    return (
        f'<tspan fill="{IN_COLOR}">in {series["in"][-1]:,}/s</tspan> · '
        f'<tspan fill="{OUT_COLOR}">out {series["out"][-1]:,}/s</tspan> · '
        f'<tspan fill="{OPEN_COLOR}">open {series["open"][-1]:,}</tspan> · peak {peak:,}/s'
    )


def render_svg(series: dict[str, Any], width: int = 640, height: int = 120) -> str:
    """An inline SVG of ``series`` (``TrafficSeries.as_dict()``): messages/s in (a wide green
    line) and out (a thin blue one over it: an echo shows both) on the left axis, open
    connections (a grey step line) on the right one, connections opened and closed as dark and
    red ticks, stalls as yellow bands. The time axis spans the seconds kept, at least a minute
    (or the whole window, if shorter)."""
    end, count = series["end"], len(series["in"])
    span = min(series["seconds"], max(SPAN, count))
    plot_width, plot_height = width - LEFT - RIGHT, height - TOP - BOTTOM
    bottom = TOP + plot_height
    step = plot_width / span
    rate_top = nice_ceiling(max(series["in"] + series["out"], default=0))
    open_top = nice_ceiling(max(series["open"], default=0) + 1)  # headroom: off the frame

    def x(index: int) -> float:  # the right edge of bucket ``index``
        return LEFT + plot_width - (count - 1 - index) * step

    def y(value: float, top: float) -> float:
        return bottom - value / top * plot_height

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="wsnb-chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        'font-size="10">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" '
        'fill="none" stroke="#ddd"/>',
    ]
    for first, length in series["stalls"]:
        left = x(first) - step
        parts.append(
            f'<rect class="wsnb-stall" x="{left:.1f}" y="{TOP}" width="{length * step:.1f}" '
            f'height="{plot_height}" fill="{STALL_COLOR}"><title>kernel busy {length} s: '
            "no samples; the messages counted across it are spread over it</title></rect>"
        )
    if count:
        steps = " ".join(
            f"{x(i) - step:.1f},{y(v, open_top):.1f} {x(i):.1f},{y(v, open_top):.1f}"
            for i, v in enumerate(series["open"])
        )
        parts.append(
            f'<polyline class="wsnb-open" fill="none" stroke="{OPEN_COLOR}" points="{steps}"/>'
        )
        for key, color, tall in (("opened", OPENED_COLOR, 4), ("closed", CLOSED_COLOR, 7)):
            parts.extend(
                f'<line class="wsnb-{key}" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{bottom}" '
                f'y2="{bottom - tall}" stroke="{color}" stroke-width="2"/>'
                for i, value in enumerate(series[key])
                if value
            )
        for key, color, wide in (("in", IN_COLOR, 3), ("out", OUT_COLOR, 1.2)):
            points = " ".join(f"{x(i):.1f},{y(v, rate_top):.1f}" for i, v in enumerate(series[key]))
            parts.append(
                f'<polyline class="wsnb-{key}" fill="none" stroke="{color}" '
                f'stroke-width="{wide}" stroke-linejoin="round" points="{points}"/>'
            )
    start = end - span
    parts += [
        f'<text x="{LEFT - 3}" y="{TOP + 8}" text-anchor="end">{_count(rate_top)}</text>',
        f'<text x="{LEFT - 3}" y="{bottom}" text-anchor="end">0</text>',
        f'<text x="{LEFT - 3}" y="{TOP + plot_height / 2 + 4:.1f}" text-anchor="end">msg/s</text>',
        f'<text x="{width - RIGHT + 3}" y="{TOP + 8}" fill="#777">{_count(open_top)}</text>',
        f'<text x="{width - RIGHT + 3}" y="{bottom}" fill="#777">0</text>',
        f'<text x="{width - RIGHT + 3}" y="{TOP + plot_height / 2 + 4:.1f}" fill="#777">open'
        "</text>",
        f'<text x="{LEFT}" y="{height - 3}">{_clock(start)}</text>',
        f'<text x="{width - RIGHT}" y="{height - 3}" text-anchor="end">{_clock(end)}</text>',
        f'<text class="wsnb-legend" x="{LEFT}" y="{TOP - 4}">{legend(series)}</text>',
        "</svg>",
    ]
    return "".join(parts)
