"""Live panels: an endpoint's connections and message log, updating while traffic flows.

A panel never sits on the server's path. It reads the endpoint's event log on a timer (every
200 ms by default), takes at most the last ``rows`` new events, and re-renders a bounded view,
so the cost of an update does not grow with the traffic seen so far, and a burst of ten
thousand messages costs the kernel one small widget update, not ten thousand. The log and the
connections table scroll in fixed heights, so the panel never pushes its send box off screen.

A view outlives its kernel (a restart, a reopened notebook): a small banner, driven by a
heartbeat and by the page's kernel status, says when the panel shows a last known state.

The chart's history is sampled from the extension's load on, shown or not, so a panel shown
later starts with the last minutes; the static snapshot saved with the notebook follows the chart
(``_refresh_snapshot``, and the page's own hook in ``chart.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import html
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets
from IPython.display import display, update_display
from tornado.ioloop import IOLoop, PeriodicCallback

from . import api
from .browser import KERNEL_WATCH_JS, STATIC_NOTE, with_static_html
from .chart import TrafficChart
from .endpoint import Endpoint
from .events import LINE_KINDS, Event
from .rows import CLIENT_COLUMNS, EVENT_COLUMNS, Table, client_row, clock, event_row, payload
from .series import Counters, Recorder, TrafficSeries
from .server import Server
from .wire import Waiting

__all__ = ["EndpointPanel", "panels"]

ALL = None  # a panel with no endpoint name watches every endpoint
MONITOR = "monitor"  # the origin of a panel shown by ``%websocket monitor``, not by a cell
BROADCAST = "all clients"
RATE_WINDOW = 3.0  # seconds over which messages/s are averaged
BEAT = 2.0  # seconds between two heartbeats, which tell the page the kernel is still there
RECORD = 0.2  # seconds between two samples of every endpoint's history: as a panel flushes
SNAPSHOT_EVERY = 5.0  # seconds at least between two refreshes of a panel's static snapshot
CHART_NOTE = " Its chart is as of the time at its right end."
PAYLOAD = "payload / detail"
_ROW_CLASS = {"in": "wsnb-in", "out": "wsnb-out", "error": "wsnb-error"}

_STYLE = """
<style>
.wsnb-table { border-collapse: collapse; font-family: var(--jp-code-font-family, monospace);
              font-size: 12px; width: 100%; }
.wsnb-table th { text-align: left; border-bottom: 1px solid #ccc; padding: 1px 6px;
                 position: sticky; top: 0; background: var(--jp-layout-color1, white); }
.wsnb-table td { padding: 1px 6px; white-space: pre; overflow: hidden; text-overflow: ellipsis;
                 max-width: 40em; }
.wsnb-error td { background: #fde2e1; color: #a4000f; }
.wsnb-event td { color: #666; }
.wsnb-log:not(.wsnb-one) .wsnb-in td:nth-child(3), .wsnb-one .wsnb-in td:nth-child(2) {
  color: #0b6e0b; }
.wsnb-log:not(.wsnb-one) .wsnb-out td:nth-child(3), .wsnb-one .wsnb-out td:nth-child(2) {
  color: #1a4fa0; }
.wsnb-log td:last-child { cursor: pointer; }
.wsnb-log td:last-child:hover, .wsnb-log td:last-child:focus {
  white-space: pre-wrap; word-break: break-all; }
</style>
"""

# The live panels, so that a newer panel for the same endpoint and origin retires the older.
_live: dict[tuple[str | None, str], EndpointPanel] = {}


def panels() -> list[EndpointPanel]:
    """The panels displayed now: updating, or retired because a later cell took their endpoint."""
    return list(_live.values())


def _payload(event: Event) -> str:
    """All the log kept of a message or printed line (a line is in its detail), or the detail of
    another event; if the log kept only part of it, how much more there was."""
    line = event.kind in LINE_KINDS
    if not (event.cut or line):
        return payload(event)
    preview = event.preview
    binary = isinstance(preview, bytes)
    kept = event.detail if line else preview.hex(" ") if isinstance(preview, bytes) else preview
    return (
        f"{kept} … {event.cut:,} more {'bytes' if binary else 'characters'}" if event.cut else kept
    )


def _log_row(name: str, event: Event) -> list[str]:
    cells = event_row(name, event)
    cells[-1] = _payload(event)
    return cells


def _table(
    columns: list[str],
    rows: Sequence[tuple[str, list[str]]],
    hide: str | None = None,
    css: str = "",
) -> str:
    """The panel's tables: ``rows`` are (CSS class, cells); the ``hide`` column (the endpoint,
    in a one-endpoint panel) is left out."""
    table = Table(columns, [cells for _, cells in rows], kinds=[kind for kind, _ in rows])
    return _STYLE + table.html(hide, css=f"wsnb-table {css}".rstrip(), focusable=PAYLOAD)


class _Recording:
    """Samples the default server's endpoints on the kernel's loop, shown or not, so that a
    panel shown later starts with their last minutes (``series.Recorder``); a fresh server (as
    after ``ws_notebook.reset()``) starts a fresh history."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self._server: Server | None = None
        self._stall_seen: tuple[float, float, int] | None = None
        self._timer = PeriodicCallback(self.sample, RECORD * 1000)
        self._timer.start()
        self.sample()  # the baseline: what the endpoints mounted now counted is not charted

    def sample(self) -> None:
        server = api.default_server()
        if server is not self._server:
            if self._server is not None:
                with contextlib.suppress(ValueError):
                    self._server.waiting_listeners.remove(self._stalled)
                self.recorder = Recorder(from_zero=True)
            self._server, self._stall_seen = server, server.last_stall
            server.waiting_listeners.append(self._stalled)
        self.recorder.sample(time.time(), list(server.registry))

    def _stalled(self, waiting: list[Waiting]) -> None:
        """Once a stall has ended, sample as of its start, as the panels do (``_chart_stall``)."""
        server = self._server
        stall = server.last_stall if server is not None else None
        if waiting or server is None or stall is None or stall is self._stall_seen:
            return
        self._stall_seen = stall
        ended, seconds, _ = stall
        self.recorder.sample(ended - seconds, list(server.registry), stall_start=True)

    def history(self, name: str | None) -> TrafficSeries:
        self.sample()
        return self.recorder.history(name)


_recording: _Recording | None = None


def record() -> None:
    """Sample every endpoint from now on, on the running loop (the kernel's); outside a loop,
    nothing. Called when the extension loads (the magics import this module) and by panels."""
    global _recording
    if _recording is not None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    _recording = _Recording()


class _Rate:
    """Messages per second over the last few seconds, from samples of a growing counter."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, count: int) -> float:
        samples = self._samples
        if samples and count < samples[-1][1]:
            samples.clear()  # the counter went back: its endpoint was unmounted or replaced
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        first_time, first_count = samples[0]
        return (count - first_count) / (now - first_time) if now > first_time else 0.0


_WATCH_ESM = (
    KERNEL_WATCH_JS
    + r"""
const STALE_MS = 10000;  // five missed heartbeats

// Says so when the kernel behind the panel is gone: the rest of the panel keeps its last state.
function render({ model, el }) {
  el.classList.add("wsnb-kernel-watch");
  el.style.cssText = "display: none; padding: 2px 6px; margin-bottom: 4px; font-weight: bold; " +
                     "background: #fff3cd; color: #664d03; border: 1px solid #e0c36b";
  let lastBeat = Date.now(), restarted = false;
  const say = (text) => { el.textContent = text; el.style.display = text ? "" : "none"; };
  model.on("change:beat", () => { lastBeat = Date.now(); if (!restarted) say(""); });
  const unwatch = watchKernel(model, el, (why) => {
    restarted = true;
    say(why === "saved"
      ? "no kernel: this panel shows the state saved with the notebook; run its cell again"
      : "kernel restarted: this panel shows the last known state; run its cell again");
  });
  const timer = setInterval(() => {
    const quiet = Date.now() - lastBeat;
    if (!restarted && quiet > STALE_MS && !el.textContent) {
      say(`no word from the kernel for ${Math.round(quiet / 1000)} s (busy, or no longer ` +
          "running): this panel shows the last known state");
    }
  }, 1000);
  return () => { clearInterval(timer); unwatch(); };
}
export default { render };
"""
)


class KernelWatch(anywidget.AnyWidget):
    """A banner that appears when the panel's kernel is gone, restarted or silent.

    The kernel sets ``beat`` every few seconds; the page says so when the beats stop, when the
    kernel restarts, and when the view comes from widget state saved in the notebook, so a
    dead panel never passes for a live one.
    """

    _esm = _WATCH_ESM
    beat = traitlets.Float(0.0).tag(sync=True)  # the kernel's wall clock, in milliseconds


class EndpointPanel(widgets.VBox):
    """Header, counters, connections table, message log and send box for one endpoint (or all).

    The panel stops updating when it is closed, when a newer panel for the same endpoint and
    origin (the defining cell, or ``%websocket monitor``) replaces it, and when a later cell
    (or file) redefines the endpoint its cell defined: it then says so rather than go on
    showing another cell's endpoint as its own.
    """

    def __init__(
        self,
        name: str | None = ALL,
        *,
        origin: str = MONITOR,
        interval: float = 0.2,
        rows: int = 200,
    ) -> None:
        self.name = name
        self.origin = origin
        self.rows = rows
        self.updates = 0  # flushes that changed something, for tests and benchmarks
        self._seen: dict[str, int] = {}  # endpoint name -> next event sequence number to read
        self._log: deque[tuple[str, Event]] = deque(maxlen=rows)
        self._rate_in, self._rate_out = _Rate(), _Rate()
        self._log_changed = True
        self._last_beat = 0.0
        self.replaced_by = ""  # where the endpoint is defined now, once another cell took it
        self._display_id: str | None = None  # once displayed, for refreshing its snapshot
        self._snapshot_sent = 0.0
        self._snapshot_figures: tuple[Any, ...] = ()

        self.watch = KernelWatch()
        self.header = widgets.HTML()
        self.counters = widgets.HTML()
        record()
        history = _recording.history(name) if _recording is not None else None
        self.chart = TrafficChart(history)  # the last minutes' traffic, a point a second
        self.waiting = widgets.HTML()  # set from the wire keeper's thread while a cell blocks
        # Fixed heights that scroll, so the send box stays in view however much traffic comes.
        self.connections = widgets.HTML(layout={"max_height": "150px", "overflow": "auto"})
        self.log_view = widgets.HTML(layout={"height": "320px", "overflow": "auto"})
        self.pause_button = widgets.ToggleButton(
            description="Pause", icon="pause", tooltip="Pause the log"
        )
        self.clear_button = widgets.Button(
            description="Clear", icon="trash", tooltip="Clear the log view"
        )
        self.filter_box = widgets.Text(
            placeholder="filter: client id or text", continuous_update=True
        )
        self.target_menu = widgets.Dropdown(
            options=[BROADCAST], description="to", layout={"width": "14em"}
        )
        self.message_box = widgets.Text(placeholder="message to send")
        self.send_button = widgets.Button(
            description="Send", icon="paper-plane", button_style="primary"
        )
        self.clear_button.on_click(lambda _: self._clear())
        self.send_button.on_click(lambda _: self._send_message())
        self.pause_button.observe(self._paused, "value")
        self.filter_box.observe(lambda _: self._log_view_changed(), "value")
        controls = widgets.HBox([self.pause_button, self.clear_button, self.filter_box])
        self.sender = widgets.HBox([self.target_menu, self.message_box, self.send_button])
        if name is ALL:
            self.sender.layout.display = "none"  # sending needs one endpoint
        super().__init__(
            [
                self.watch,
                self.header,
                self.counters,
                self.chart,
                self.waiting,
                self.connections,
                controls,
                self.log_view,
                self.sender,
            ]
        )
        self.add_class("ws-notebook-panel")

        previous = _live.pop((name, origin), None)
        if previous is not None:
            previous.close()
        _live[(name, origin)] = self
        self._key = (name, origin)
        self._loop = IOLoop.current()
        self._timer = PeriodicCallback(self.refresh, interval * 1000)
        self._timer.start()
        self._server = api.default_server()
        self._stall_seen = self._server.last_stall  # the last stall the chart was told of
        self._server.waiting_listeners.append(self._show_waiting)
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view, and a static snapshot (header and chart) for where it cannot show."""
        chart = self.chart.snapshot()
        note = html.escape(STATIC_NOTE + CHART_NOTE)
        snapshot = f"{self.header.value}<br>{chart}<br><small>{note}</small>"
        return with_static_html(super()._repr_mimebundle_(**kwargs), snapshot)

    def _bundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        bundle = self._repr_mimebundle_()
        return bundle if isinstance(bundle, tuple) else (bundle, {})

    def _ipython_display_(self) -> None:
        """Displayed with a display id, so that its static snapshot can follow the chart."""
        self._display_id = f"ws-notebook-panel-{self.model_id}"
        self._snapshot_sent, self._snapshot_figures = time.time(), self._figures()
        data, metadata = self._bundle()
        display(data, metadata=metadata, raw=True, display_id=self._display_id)

    def _figures(self) -> tuple[Any, ...]:
        """What the chart shows, but for its time axis."""
        series = self.chart.series
        return (
            *(sum(series[key]) for key in ("in", "out", "opened", "closed")),
            series["open"][-1:],  # not their sum: it grows with the window while idle
            [length for _, length in series["stalls"]],
        )

    def _refresh_snapshot(self, now: float) -> None:
        """Send the static snapshot again (``update_display``), for a notebook saved with the
        outputs the kernel sent (``nbclient``, ``nbconvert --execute``): at most every
        ``SNAPSHOT_EVERY`` seconds, when the chart's figures changed, and only until a page
        shows the panel, as an update re-creates the page's view (a page keeps the snapshot it
        saves fresh itself, see ``chart.py``)."""
        figures = self._figures()
        if (
            self._display_id is None
            or self.chart.viewed
            or now - self._snapshot_sent < SNAPSHOT_EVERY
            or figures == self._snapshot_figures
        ):
            return
        self._snapshot_sent, self._snapshot_figures = now, figures
        data, metadata = self._bundle()
        # In an empty context ipykernel sends it as output of the request it runs now (or ran
        # last), not of the cell that showed the panel, whose context the timer keeps: nbclient
        # takes only the running cell's messages; a page goes by the display id anyway.
        contextvars.Context().run(
            update_display, data, metadata=metadata, raw=True, display_id=self._display_id
        )

    # --- reading the core ---------------------------------------------------------------

    def _endpoints(self) -> list[Endpoint]:
        registry = api.default_server().registry
        if self.name is ALL:
            return list(registry)
        found = registry.find(self.name)
        return [found] if found is not None else []

    def _take_new_events(self, endpoints: list[Endpoint]) -> None:
        """Move new events into the bounded view: at most ``rows`` per endpoint per flush."""
        fresh: list[tuple[str, Event]] = []
        for endpoint in endpoints:
            log = endpoint.log
            start = max(self._seen.get(endpoint.name, 0), log.total - self.rows)
            if start < log.total:
                fresh.extend((endpoint.name, event) for event in log.since(start))
            self._seen[endpoint.name] = log.total
        if len(endpoints) > 1:
            fresh.sort(key=lambda pair: pair[1].time)
        if fresh:
            self._log.extend(fresh)
            self._log_changed = True

    # --- rendering ------------------------------------------------------------------------

    def refresh(self) -> None:
        """One flush: read what is new and update the widgets whose content changed."""
        if self.comm is None:  # closed
            self._timer.stop()
            return
        now = time.time()
        if now - self._last_beat >= BEAT:
            self._last_beat = now
            self.watch.beat = now * 1000
        endpoints = self._endpoints()
        if self._replaced(endpoints):
            return
        self._take_new_events(endpoints)
        changed = False
        changed |= self._set(self.header, self._render_header(endpoints))
        changed |= self._set(self.counters, self._render_counters(endpoints))
        if self.chart.sample(now, Counters.of(endpoints)):
            changed = True
            self._refresh_snapshot(now)
        changed |= self._set(self.connections, self._render_connections(endpoints))
        if self._log_changed and not self.pause_button.value:
            changed |= self._set(self.log_view, self._render_log())
            self._log_changed = False
        self._update_targets(endpoints)
        if changed:
            self.updates += 1

    def _replaced(self, endpoints: list[Endpoint]) -> bool:
        """Whether another cell or file now defines this cell's endpoint; if so, retire."""
        if self.replaced_by:
            return True
        if self.origin == MONITOR or not endpoints:
            return False
        location = endpoints[0].descriptor.location
        if location == self.origin:
            return False
        self.replaced_by = location
        by = "a later cell" if location.startswith("notebook") else html.escape(location)
        self.header.value += (
            f"<br><b>replaced by {by}</b> <small>({html.escape(location)}): this panel no "
            "longer updates; that cell's panel shows the endpoint now</small>"
        )
        self.sender.layout.display = "none"  # sending is the new cell's panel's job now
        self._timer.stop()  # from now on, only the heartbeat: the page must not think it dead
        self._timer = PeriodicCallback(self.refresh, BEAT * 1000)
        self._timer.start()
        self.updates += 1
        return True

    def _set(self, widget: widgets.HTML, value: str) -> bool:
        if widget.value == value:
            return False
        widget.value = value
        return True

    def _render_header(self, endpoints: list[Endpoint]) -> str:
        server = api.default_server()
        if self.name is ALL:
            status = "serving" if server.running else "stopped"
            where = f"{server.host}:{server.port}" if server.running else ""
            return f"<b>All endpoints</b> — {len(endpoints)} mounted, {status} {where}"
        if not endpoints:
            return f"<b>{html.escape(self.name)}</b> — <i>not mounted</i>"
        descriptor = endpoints[0].descriptor
        outbound = endpoints[0].outbound
        if outbound is not None:  # a connection this kernel opened: where to, and how it is
            status, url, proxied = f"outbound: {outbound.state}", outbound.uri_shown, ""
        else:
            status = "serving" if server.running else "stopped"
            url = server.url(self.name) if server.running else ""
            proxied = (
                f" · via Jupyter: <code>{html.escape(api.proxy_path(self.name))}</code>"
                if url and api.proxy_installed()  # else that path leads nowhere
                else ""
            )
        details = " · ".join(
            html.escape(part)
            for part in (
                descriptor.description,
                f"by {descriptor.created_by}" if descriptor.created_by else "",
                descriptor.created_at,
            )
            if part
        )
        mode = " · <b>handlers on their own thread</b>" if endpoints[0].threaded else ""
        return (
            f"<b>{html.escape(self.name)}</b> <code>{html.escape(url)}</code> "
            f"<span>({status})</span>{proxied}{mode}<br><small>{details}</small>"
        )

    def _render_counters(self, endpoints: list[Endpoint]) -> str:
        now = time.monotonic()
        rate_in = self._rate_in.update(now, sum(e.messages_in for e in endpoints))
        rate_out = self._rate_out.update(now, sum(e.messages_out for e in endpoints))
        open_now = sum(len(e.clients) for e in endpoints)
        total = sum(e.connections for e in endpoints)
        dropped = sum(e.log.dropped for e in endpoints)
        paused = " · <b>log paused</b>" if self.pause_button.value else ""
        waits = [e.last_wait for e in endpoints if e.last_wait is not None]
        waited = ""
        if waits:
            messages, seconds, ended = max(waits, key=lambda wait: wait[2])
            waited = (
                f" · last waited for the kernel: {messages} message"
                f"{'s' if messages != 1 else ''}, {seconds:.1f} s (at {clock(ended)[:8]})"
            )
        return (
            f"<small>connections: {open_now} open, {total} total · "
            f"messages/s: {rate_in:.0f} in, {rate_out:.0f} out · "
            f"log: {dropped} dropped{paused}{waited}</small>"
        )

    def _render_connections(self, endpoints: list[Endpoint]) -> str:
        clients = [client for e in endpoints for client in e.clients.values()]
        rows = [("", client_row(c)) for c in clients[: self.rows]]
        hide = None if self.name is ALL else "endpoint"
        more = (
            f"<small>… and {len(clients) - self.rows} more</small>"
            if len(clients) > self.rows
            else ""
        )
        return (
            _table(CLIENT_COLUMNS, rows, hide) + more
            if clients
            else "<small>no open connections</small>"
        )

    def _shown_events(self) -> list[tuple[str, Event]]:
        """The buffered events that pass the filter box (client id or text), oldest first."""
        needle = self.filter_box.value.strip().lower()
        if not needle:
            return list(self._log)
        return [
            (name, event)
            for name, event in self._log
            if needle in event.client.lower() or needle in _payload(event).lower()
        ]

    def _render_log(self) -> str:
        rows = [
            (_ROW_CLASS.get(event.kind, "wsnb-event"), _log_row(name, event))
            for name, event in self._shown_events()
        ]
        if not rows:
            filtered = self.filter_box.value.strip()
            return "<small>no events match</small>" if filtered else "<small>no events yet</small>"
        if self.name is ALL:
            return _table(EVENT_COLUMNS, rows[::-1], css="wsnb-log")  # newest first, on top
        return _table(EVENT_COLUMNS, rows[::-1], "endpoint", "wsnb-log wsnb-one")

    def _update_targets(self, endpoints: list[Endpoint]) -> None:
        options = [BROADCAST] + [c.id for e in endpoints for c in e.clients.values()][: self.rows]
        if list(self.target_menu.options) != options:
            current = self.target_menu.value
            self.target_menu.options = options
            self.target_menu.value = current if current in options else BROADCAST

    # --- controls -------------------------------------------------------------------------

    @property
    def log_rows(self) -> list[dict[str, Any]]:
        """The log rows the panel shows now (after the filter), newest last."""
        return [{"endpoint": name, **event.as_dict()} for name, event in self._shown_events()]

    def _paused(self, change: dict[str, Any]) -> None:
        """The button says what pressing it does now, and looks pressed while paused."""
        paused = change["new"]
        self.pause_button.description = "Resume" if paused else "Pause"
        self.pause_button.icon = "play" if paused else "pause"
        self.pause_button.button_style = "warning" if paused else ""
        self.pause_button.tooltip = "Resume the log" if paused else "Pause the log"
        self._log_view_changed()

    def _log_view_changed(self) -> None:
        self._log_changed = True
        self._loop.add_callback(self.refresh)  # the control may be changed from any thread

    def _clear(self) -> None:
        self._log.clear()
        self._log_view_changed()

    def _send_message(self) -> None:
        text = self.message_box.value
        if not text or self.name is ALL:
            return
        target = self.target_menu.value
        # Widget callbacks may arrive off the loop thread; the server is only touched on it.
        self._loop.add_callback(self._deliver, text, target)
        self.message_box.value = ""

    def _deliver(self, text: str, target: str) -> None:
        if target == BROADCAST:
            if self.name is not ALL:  # a monitor of all endpoints offers no broadcast
                api.broadcast(self.name, text)
        else:
            client = api.client(target)
            if client is not None and client.open:
                client.send(text)
        self.refresh()

    def _show_waiting(self, waiting: list[Waiting]) -> None:
        """What waits for the kernel while a cell blocks it: called from the wire keeper's
        thread (the panel's own updates wait for the loop), and with nothing once it runs."""
        mine = [w for w in waiting if self.name is ALL or w.endpoint == self.name]
        if not mine:
            self.waiting.value = ""
            self._chart_stall()
            return
        messages = sum(w.messages for w in mine)
        clients = len(mine)
        seconds = time.time() - min(w.since for w in mine)
        self.waiting.value = (
            f"<small><b>waiting for the kernel</b> (a cell is running): {messages} message"
            f"{'s' if messages != 1 else ''} from {clients} client{'s' if clients != 1 else ''}, "
            f"for {seconds:.0f} s; they are handled in order when the cell ends</small>"
        )

    def _chart_stall(self) -> None:
        """Once a stall has ended (on the loop, before what waited is handled): sample the
        chart as of its start, so the messages handled before it are charted before it, not
        spread over it with those that waited. Not for endpoints on their own thread: theirs
        went on being handled during it."""
        stall = self._server.last_stall
        if stall is None or stall is self._stall_seen:
            return
        self._stall_seen = stall
        endpoints = self._endpoints()
        if not any(endpoint.threaded for endpoint in endpoints):
            ended, seconds, _ = stall
            self.chart.sample(ended - seconds, Counters.of(endpoints))

    def close(self) -> None:
        """Stop updating and close the widgets."""
        self._timer.stop()
        with contextlib.suppress(ValueError):
            self._server.waiting_listeners.remove(self._show_waiting)
        if _live.get(self._key) is self:
            del _live[self._key]
        for child in self.children:
            for grandchild in getattr(child, "children", ()):
                grandchild.close()
            child.close()
        super().close()


record()  # from the extension's load on: the magics import this module then
