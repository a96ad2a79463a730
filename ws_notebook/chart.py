"""The live panel's chart: messages/s in and out and open connections over the last minutes.

The kernel keeps the numbers (``ws_notebook.series``) and sends them as one compact trait,
changed once a second at most; the page draws them as SVG with a few lines of JavaScript, so
the chart needs no charting library and no build step. A burst is a peak of the green (in) or
blue (out) line, a stall (a cell blocking the kernel) a yellow band, a reconnect a dip of the
grey line of open connections with a red tick where connections closed.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import anywidget
import traitlets

from .series import (
    BOTTOM,
    CLOSED_COLOR,
    IN_COLOR,
    LEFT,
    OPEN_COLOR,
    OPENED_COLOR,
    OUT_COLOR,
    RIGHT,
    SPAN,
    STALL_COLOR,
    TOP,
    WINDOW,
    Counters,
    TrafficSeries,
)

__all__ = ["TrafficChart"]

HEIGHT = 120  # pixels
ALT = "chart of messages/s in and out and open connections"

# The same drawing as series.render_svg, at the width of the page's output area.
_CHART_ESM = (
    f"""
const [LEFT, RIGHT, TOP, BOTTOM] = [{LEFT}, {RIGHT}, {TOP}, {BOTTOM}];
const [HEIGHT, SPAN] = [{HEIGHT}, {SPAN}];
const COLORS = {{ in: "{IN_COLOR}", out: "{OUT_COLOR}", open: "{OPEN_COLOR}",
                 stall: "{STALL_COLOR}", opened: "{OPENED_COLOR}", closed: "{CLOSED_COLOR}" }};
"""
    + r"""
const clock = (second) => new Date(second * 1000).toTimeString().slice(0, 8);
const grouped = (v) => v.toLocaleString("en-US");  // 12,345: as Python's f"{v:,}"
const count = (v) => v >= 10000 ? `${v / 1000}k` : grouped(v);  // an axis' top

function niceCeiling(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((top) => top >= value);
}

// The newest second's figures and the window's peak; or, hovered, that second's.
function legend(s, index) {
  const n = s.in.length;
  if (!n) return "no whole second sampled yet";
  const i = index === undefined ? n - 1 : index;
  const figures = `<tspan fill="${COLORS.in}">in ${grouped(s.in[i])}/s</tspan> · ` +
    `<tspan fill="${COLORS.out}">out ${grouped(s.out[i])}/s</tspan> · ` +
    `<tspan fill="${COLORS.open}">open ${grouped(s.open[i])}</tspan>`;
  if (index === undefined) return `${figures} · peak ${grouped(Math.max(...s.in, ...s.out))}/s`;
  const busy = s.stalls.some(([first, length]) => i >= first && i < first + length);
  return `${clock(s.end - n + i)}: ${figures}` +
    (s.opened[i] ? ` · ${s.opened[i]} opened` : "") +
    (s.closed[i] ? ` · ${s.closed[i]} closed` : "") + (busy ? " · kernel busy" : "");
}

// The seconds across the chart: those kept, at least a minute (or the window, if shorter).
const span = (s) => Math.min(s.seconds, Math.max(SPAN, s.in.length));

function draw(s, width) {
  const n = s.in.length, plotWidth = width - LEFT - RIGHT, plotHeight = HEIGHT - TOP - BOTTOM;
  const bottom = TOP + plotHeight, step = plotWidth / span(s);
  const rateTop = niceCeiling(Math.max(0, ...s.in, ...s.out));
  const openTop = niceCeiling(Math.max(0, ...s.open) + 1);  // headroom: off the frame
  const x = (i) => LEFT + plotWidth - (n - 1 - i) * step;
  const y = (v, top) => bottom - v / top * plotHeight;
  const f = (v) => v.toFixed(1);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="wsnb-chart" width="${width}" ` +
    `height="${HEIGHT}" viewBox="0 0 ${width} ${HEIGHT}" font-family="sans-serif" font-size="10">`,
    `<rect x="${LEFT}" y="${TOP}" width="${plotWidth}" height="${plotHeight}" fill="none" ` +
    `stroke="#ddd"/>`,
  ];
  for (const [first, length] of s.stalls) {
    parts.push(`<rect class="wsnb-stall" x="${f(x(first) - step)}" y="${TOP}" ` +
      `width="${f(length * step)}" height="${plotHeight}" fill="${COLORS.stall}"><title>kernel ` +
      `busy ${length} s: no samples; the messages counted across it are spread over it</title>` +
      `</rect>`);
  }
  if (n) {
    const steps = s.open.map((v, i) =>
      `${f(x(i) - step)},${f(y(v, openTop))} ${f(x(i))},${f(y(v, openTop))}`).join(" ");
    parts.push(`<polyline class="wsnb-open" fill="none" stroke="${COLORS.open}" ` +
      `points="${steps}"/>`);
    for (const [key, tall] of [["opened", 4], ["closed", 7]]) {
      s[key].forEach((v, i) => {
        if (v) parts.push(`<line class="wsnb-${key}" x1="${f(x(i))}" x2="${f(x(i))}" ` +
          `y1="${bottom}" y2="${bottom - tall}" stroke="${COLORS[key]}" stroke-width="2"/>`);
      });
    }
    for (const [key, wide] of [["in", 3], ["out", 1.2]]) {
      const points = s[key].map((v, i) => `${f(x(i))},${f(y(v, rateTop))}`).join(" ");
      parts.push(`<polyline class="wsnb-${key}" fill="none" stroke="${COLORS[key]}" ` +
        `stroke-width="${wide}" stroke-linejoin="round" points="${points}"/>`);
    }
  }
  const middle = f(TOP + plotHeight / 2 + 4), right = width - RIGHT + 3;
  parts.push(
    `<text x="${LEFT - 3}" y="${TOP + 8}" text-anchor="end">${count(rateTop)}</text>`,
    `<text x="${LEFT - 3}" y="${bottom}" text-anchor="end">0</text>`,
    `<text x="${LEFT - 3}" y="${middle}" text-anchor="end">msg/s</text>`,
    `<text x="${right}" y="${TOP + 8}" fill="#777">${count(openTop)}</text>`,
    `<text x="${right}" y="${bottom}" fill="#777">0</text>`,
    `<text x="${right}" y="${middle}" fill="#777">open</text>`,
    `<text x="${LEFT}" y="${HEIGHT - 3}">${clock(s.end - span(s))}</text>`,
    `<text x="${width - RIGHT}" y="${HEIGHT - 3}" text-anchor="end">${clock(s.end)}</text>`,
    `<text class="wsnb-legend" x="${LEFT}" y="${TOP - 4}">${legend(s)}</text>`,
    "</svg>");
  return parts.join("");
}

// A notebook this page saves keeps a static snapshot of the panel for viewers without the
// widget (GitHub, nbviewer): its chart is drawn again, from the series the page has, into what
// is written. The output on the page is left alone: changing it would re-create the panel's
// view. The hook uses ipywidgets 8's document context (JupyterLab 4, Notebook 7), as the
// widget state saving does; elsewhere the snapshot stays as the kernel last sent it.
const CHARTS = (window.wsnbCharts = window.wsnbCharts || new Map());  // key: model
const SNAPSHOT = /(<img class="wsnb-chart-snapshot" [^>]*data-chart="([^"]+)"[^>]* src=")[^"]*"/g;

function svgData(svg) {
  const bytes = new TextEncoder().encode(svg);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `data:image/svg+xml;base64,${btoa(binary)}`;
}

function freshSnapshots(notebook) {
  const fresh = (html) => html.replace(SNAPSHOT, (whole, start, key) =>
    CHARTS.has(key) ? `${start}${svgData(draw(CHARTS.get(key).get("series"), 640))}"` : whole);
  const output = (out) => {
    const html = out.data && out.data["text/html"];
    if (!html) return out;
    const text = Array.isArray(html) ? html.join("") : html;
    return text.includes("wsnb-chart-snapshot")
      ? { ...out, data: { ...out.data, "text/html": fresh(text) } } : out;
  };
  // New objects only: what toJSON returns may be the document's own.
  const cells = (notebook.cells || []).map((cell) =>
    cell.outputs ? { ...cell, outputs: cell.outputs.map(output) } : cell);
  return { ...notebook, cells };
}

function keepSnapshotFresh(model) {
  CHARTS.set(model.get("key"), model);
  const manager = model.widget_manager;
  const notebook = manager && manager._context && manager._context.model;
  if (!notebook || typeof notebook.toJSON !== "function" || notebook.wsnbSnapshots) return;
  notebook.wsnbSnapshots = true;  // one hook per notebook
  const toJSON = notebook.toJSON;
  notebook.toJSON = function () { return freshSnapshots(toJSON.call(this)); };
}

function render({ model, el }) {
  keepSnapshotFresh(model);
  // The kernel stops refreshing the snapshot with update_display, which re-creates views.
  model.send({ event: "view" });
  el.classList.add("wsnb-chart-view");
  el.style.cssText = `height: ${HEIGHT}px; margin: 2px 0`;
  let hovered;
  const width = () => Math.max(LEFT + RIGHT + 100, Math.min(el.clientWidth || 640, 1200));
  const label = () => {
    const text = el.querySelector(".wsnb-legend");
    if (text) text.innerHTML = legend(model.get("series"), hovered);
  };
  const redraw = () => { el.innerHTML = draw(model.get("series"), width()); label(); };
  // Hovering shows that second's figures in the legend; leaving shows the newest again.
  el.addEventListener("mousemove", (event) => {
    const s = model.get("series"), n = s.in.length;
    const plotWidth = width() - LEFT - RIGHT;
    const fromRight = LEFT + plotWidth - (event.clientX - el.getBoundingClientRect().left);
    const index = n - 1 - Math.floor(fromRight / (plotWidth / span(s)));
    hovered = index >= 0 && index < n && fromRight >= 0 ? index : undefined;
    label();
  });
  el.addEventListener("mouseleave", () => { hovered = undefined; label(); });
  model.on("change:series", redraw);
  const resized = new ResizeObserver(redraw);
  resized.observe(el);
  redraw();
  return () => { resized.disconnect(); model.off("change:series", redraw); };
}
export default { render };
"""
)


class TrafficChart(anywidget.AnyWidget):
    """The chart widget; ``sample`` is called on each panel flush, on the kernel's loop."""

    _esm = _CHART_ESM
    series = traitlets.Dict().tag(sync=True)  # TrafficSeries.as_dict(): whole seconds only
    key = traitlets.Unicode().tag(sync=True)  # names its snapshot, for the page to redraw it

    def __init__(self, history: TrafficSeries | None = None, seconds: int = WINDOW) -> None:
        """``history``: a series to go on from (a copy of the recorder's), else an empty one."""
        self.traffic = history if history is not None else TrafficSeries(seconds)
        self.viewed = False  # whether a page has shown the chart (and so keeps its snapshot)
        super().__init__(series=self.traffic.as_dict(), key=uuid.uuid4().hex)
        self.on_msg(self._message)

    def _message(self, _: object, content: dict[str, Any], buffers: object) -> None:
        if content.get("event") == "view":
            self.viewed = True

    def sample(self, now: float, counters: Counters) -> bool:
        """Count one sample; True when a second was completed and the chart was sent again."""
        if not self.traffic.sample(now, counters):
            return False
        self.series = self.traffic.as_dict()
        return True

    def snapshot(self) -> str:
        """The chart as an image for a static snapshot: an ``<img>`` of the SVG, as JupyterLab
        shows an untrusted notebook's HTML without its ``<svg>`` elements."""
        svg = self.traffic.svg(height=HEIGHT).encode()
        return (
            f'<img class="wsnb-chart-snapshot" alt="{ALT}" data-chart="{self.key}" '
            f'style="max-width: 100%" '
            f'src="data:image/svg+xml;base64,{base64.b64encode(svg).decode()}">'
        )
