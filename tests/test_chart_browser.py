"""The panel's traffic chart in a real JupyterLab page: drawn, and redrawn as traffic flows.

Real clients (``websockets``, from the test process) talk to the notebook's echo endpoint while
Chromium shows its panel; a second client of the kernel blocks it for a few seconds (a stall)
and reads the chart's series, so the page is compared with what the kernel knows. Screenshot:
test-artifacts/panel-chart.png.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from ws_notebook.series import render_svg
from ws_notebook.widgets import SNAPSHOT_EVERY

from .jupyter_server import (
    chromium_page,
    evaluate,
    kernel_client,
    needs_chromium,
    open_notebook,
    run_all_cells,
)
from .test_chart import peak, snapshot_svg
from .test_panel_browser import ARTIFACTS, SECONDS, save, start_lab

pytestmark = [pytest.mark.browser, pytest.mark.kernel, needs_chromium, pytest.mark.timeout(240)]

LOAD = "%load_ext ws_notebook\nimport ws_notebook"
ECHO = "%%websocket echo\ndef on_message(message, client):\n    client.send(message)"
SERIES = "ws_notebook.widgets.panels()[-1].chart.series"


def echo(ws, count: int) -> None:
    for i in range(count):
        ws.send(f"message {i}")
    for _ in range(count):
        ws.recv(timeout=30)


def drawn(svg: str) -> list[list[float]]:
    """The coordinates of the lines and bands of a chart's SVG, for comparing two drawings."""
    lines = [
        re.search(rf'class="wsnb-{key}"[^>]* points="([^"]*)"', svg).group(1)
        for key in ("in", "out", "open")
    ]
    bands = re.findall(r'class="wsnb-stall" x="([^"]*)" y="[^"]*" width="([^"]*)"', svg)
    ticks = re.findall(r'class="wsnb-(?:opened|closed)" x1="([^"]*)"', svg)
    return [
        [float(v) for v in text.replace(",", " ").split()]
        for text in [*lines, " ".join(" ".join(band) for band in bands), " ".join(ticks)]
    ]


def same_drawing(page_svg: str, kernel_svg: str) -> bool:
    """Whether the page drew what ``series.render_svg`` draws (to rounding)."""
    ours, theirs = drawn(page_svg), drawn(kernel_svg)
    return all(
        len(a) == len(b) and all(abs(x - y) < 0.11 for x, y in zip(a, b, strict=True))
        for a, b in zip(ours, theirs, strict=True)
    )


def until_counted(kernel: object, messages: int, timeout: float = 10) -> dict:
    """The kernel's chart series once its whole seconds hold ``messages`` in; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        series = evaluate(kernel, SERIES)
        if sum(series["in"]) >= messages:
            assert sum(series["in"]) == messages, series
            return series
        assert time.monotonic() < deadline, f"not {messages} messages in: {series}"
        time.sleep(0.3)


def test_the_chart_shows_a_burst_a_stall_and_a_reconnect(tmp_path: Path) -> None:
    with start_lab(tmp_path, [LOAD, ECHO]) as server, chromium_page(height=900) as page:
        try:
            open_notebook(page, server, "test.ipynb")
            run_all_cells(page)
            chart = page.locator(".ws-notebook-panel .wsnb-chart-view")
            legend = chart.locator(".wsnb-legend")
            expect(legend).to_contain_text("in 0/s", timeout=60 * SECONDS)  # a whole second
            with kernel_client(server, "test.ipynb") as kernel:
                url = evaluate(kernel, 'ws_notebook.url("echo")')
                quiet = chart.inner_html()
                assert 'class="wsnb-in"' in quiet and 'class="wsnb-stall"' not in quiet

                with connect(url) as ws:
                    for _ in range(20):  # 2 s at about 50 messages/s
                        echo(ws, 5)
                        time.sleep(0.1)
                    echo(ws, 1000)  # a burst
                    # A cell of another client blocks the kernel for 4 s while messages wait.
                    kernel.execute("import time; time.sleep(4)")
                    time.sleep(0.5)
                    echo(ws, 10)
                expect(chart.locator(".wsnb-stall")).to_have_count(1, timeout=15 * SECONDS)
                with connect(url) as ws:  # the client is back
                    echo(ws, 10)
                    expect(chart.locator(".wsnb-closed")).to_have_count(1, timeout=10 * SECONDS)
                    expect(chart.locator(".wsnb-opened")).to_have_count(2)

                    busy = chart.inner_html()
                    assert busy != quiet
                    drawn = re.search(r'class="wsnb-in"[^>]* points="([^"]*)"', busy).group(1)
                    heights = [float(pair.split(",")[1]) for pair in drawn.split()]
                    # The burst stands out: the scale's top (1, 2 or 5 times a power of ten) is
                    # at most 2.5 times the peak, so the peak is at least 40% of the 88 px.
                    assert max(heights) - min(heights) >= 0.4 * 88
                    series = until_counted(kernel, 1120)  # 100 + 1,000 + 10 + 10
                    peak = max(series["in"] + series["out"])
                    assert peak >= 300 and sum(series["out"]) == 1120
                    expect(legend).to_contain_text(f"peak {peak:,}/s")
                    expect(legend).to_contain_text("open 1")

                    # The page's JavaScript draws what series.render_svg (the snapshot) draws
                    # from the same series, at the page's width (both move on every second).
                    for _ in range(20):
                        series, page_svg = evaluate(kernel, SERIES), chart.inner_html()
                        width = int(re.search(r'<svg[^>]* width="(\d+)"', page_svg).group(1))
                        if same_drawing(page_svg, render_svg(series, width, 120)):
                            break
                        time.sleep(0.2)
                    else:
                        raise AssertionError(f"the page drew otherwise: {page_svg}")
                    assert not same_drawing(page_svg, render_svg(series, width + 10, 120))

                    # Hovering a second shows its own figures, with its time.
                    box = chart.bounding_box()
                    page.mouse.move(box["x"] + box["width"] - 40, box["y"] + 60)
                    expect(legend).to_contain_text(re.compile(r"^\d\d:\d\d:\d\d: in \d"))
                    page.mouse.move(0, 0)
                    expect(legend).to_contain_text("peak")
                    chart.scroll_into_view_if_needed()
                    page.locator(".ws-notebook-panel").screenshot(
                        path=ARTIFACTS / "panel-chart.png"
                    )

                # The notebook, saved: the chart's series is in the panel's widget state.
                save(page, server, '"stalls": [')

            # Without that state and untrusted, the output's static snapshot shows: the chart
            # as it was when displayed, an image (JupyterLab strips an untrusted <svg>).
            saved = nbformat.read(server.root_dir / "test.ipynb", as_version=4)
            del saved.metadata["widgets"]
            nbformat.write(saved, server.root_dir / "stateless.ipynb")
            open_notebook(page, server, "stateless.ipynb")
            image = page.locator(".ws-notebook-snapshot img.wsnb-chart-snapshot")
            expect(image).to_be_visible(timeout=30 * SECONDS)
            assert image.evaluate("img => img.complete && img.naturalWidth") == 640
        finally:
            page.screenshot(path=ARTIFACTS / "panel-chart-page.png", full_page=True)


def test_a_notebook_saved_from_the_page_has_the_chart_in_its_snapshot(tmp_path: Path) -> None:
    """Saved after traffic: the output's static snapshot (for viewers without the widget) draws
    the chart as the page has it then; the panel's view is never re-created meanwhile (the
    kernel sends no update of a displayed panel once a page shows it)."""
    with start_lab(tmp_path, [LOAD, ECHO]) as server, chromium_page() as page:
        open_notebook(page, server, "test.ipynb")
        run_all_cells(page)
        panel = page.locator(".ws-notebook-panel")
        expect(panel.locator(".wsnb-legend")).to_contain_text("in 0/s", timeout=60 * SECONDS)
        panel.evaluate("el => { el.dataset.first = 'yes'; }")  # gone if the view is made anew
        with kernel_client(server, "test.ipynb") as kernel:
            with connect(evaluate(kernel, 'ws_notebook.url("echo")')) as ws:
                echo(ws, 500)
            until_counted(kernel, 500)
            time.sleep(SNAPSHOT_EVERY + 1.5)  # the kernel would have sent an update by now
            assert evaluate(kernel, "ws_notebook.widgets.panels()[-1].chart.viewed") is True
        expect(panel.locator(".wsnb-legend")).to_contain_text("peak")
        expect(page.locator(".ws-notebook-panel[data-first=yes]")).to_have_count(1)
        save(page, server, "wsnb-chart-snapshot")
    saved = nbformat.read(server.root_dir / "test.ipynb", as_version=4)
    (output,) = [o for o in saved.cells[1].outputs if o.output_type == "display_data"]
    svg = snapshot_svg(output.data)
    assert peak(svg) >= 100 and 'class="wsnb-in"' in svg, svg
