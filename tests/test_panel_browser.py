"""The live panel and the browser client in a real JupyterLab page, over their lifetime.

A second client of the notebook's own kernel (``kernel_client``) reads the server's state
(clients, the event log), so each check compares what the page shows with what the kernel
knows. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Locator, Page, expect

from .jupyter_server import (
    JupyterServer,
    chromium_page,
    evaluate,
    kernel_client,
    needs_chromium,
    open_notebook,
    run_all_cells,
)

pytestmark = [needs_chromium, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SECONDS = 1000  # Playwright counts milliseconds

LOAD = "%load_ext ws_notebook\nimport websockets\nimport ws_notebook"
ECHO = "%%websocket echo\ndef on_message(message, client):\n    client.send(message)"
BROWSER = "%websocket browser echo"


def write_notebook(path: Path, cells: list[str]) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(notebook, path)


def start_lab(tmp_path: Path, cells: list[str], save_widget_state: bool = False) -> JupyterServer:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "test.ipynb", cells)
    server = JupyterServer(notebooks, tmp_path / "jupyter")
    if save_widget_state:  # Settings › Save Widget State Automatically
        folder = server.state_dir / "lab-settings" / "@jupyter-widgets" / "jupyterlab-manager"
        folder.mkdir(parents=True)
        (folder / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))
    return server


def cell(page: Page, index: int) -> Locator:
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def rerun(page: Page, index: int) -> None:
    """Select a cell and run it in place (Ctrl+Enter), as a user re-running it would."""
    cell(page, index).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")


def until(condition, what: str, timeout: float = 20) -> None:
    """Poll ``condition`` (a kernel query) until true; bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.3)


CLOSES = '[e.detail for e in ws_notebook.endpoint("echo").log.since(0) if e.kind == "close"]'
CLIENTS = '[c.id for c in ws_notebook.clients("echo")]'


def test_browser_client_closes_with_1000_when_its_view_goes(tmp_path: Path) -> None:
    """Re-running or clearing a ``%websocket browser`` cell closes its socket (1000), no leak."""
    with start_lab(tmp_path, [LOAD, ECHO, BROWSER]) as server, chromium_page() as page:
        try:
            open_notebook(page, server, "test.ipynb")
            run_all_cells(page)
            status = page.locator(".ws-notebook-browser-client .wsnb-status")
            expect(status).to_contain_text("open: ws://", timeout=60 * SECONDS)
            with kernel_client(server, "test.ipynb") as kernel:
                first = evaluate(kernel, CLIENTS)
                assert len(first) == 1 and evaluate(kernel, CLOSES) == []

                rerun(page, 2)  # its old view is removed, a new one connects
                until(lambda: evaluate(kernel, CLOSES) == ["1000 view removed"], "old closed")
                until(lambda: len(evaluate(kernel, CLIENTS)) == 1, "one client")
                second = evaluate(kernel, CLIENTS)
                assert second != first
                expect(status).to_have_count(1)
                expect(status).to_contain_text("open: ws://", timeout=20 * SECONDS)
                assert evaluate(kernel, 'ws_notebook.broadcast("echo", "to-the-page")') == 1
                received = page.locator(".wsnb-messages li", has_text="to-the-page")
                expect(received).to_have_count(1, timeout=10 * SECONDS)

                cell(page, 2).locator(".jp-OutputArea").click(button="right")
                page.get_by_role("menuitem", name="Clear Cell Output").click()
                until(lambda: evaluate(kernel, CLIENTS) == [], "no client left")
                assert evaluate(kernel, CLOSES) == ["1000 view removed"] * 2
                expect(status).to_have_count(0)
        finally:
            page.screenshot(path=ARTIFACTS / "browser-client-rerun.png", full_page=True)


# 150 JSON messages of 116 characters (the log keeps 120), echoed: 300 rows of long payloads.
TRAFFIC = (
    'async with websockets.connect(ws_notebook.url("echo")) as ws:\n'
    "    for i in range(150):\n"
    '        await ws.send(json.dumps({"seq": i, "items": [{"id": n, "name": "x" * 8}'
    " for n in range(3)]}))\n"
    "        await ws.recv()\n"
    'print("traffic done")'
)


def test_panel_height_stays_bounded_under_traffic(tmp_path: Path) -> None:
    """300 rows of long JSON: the panel scrolls its log instead of growing; the send box shows."""
    cells = [LOAD + "\nimport json", ECHO, "%websocket monitor", TRAFFIC]
    with start_lab(tmp_path, cells) as server, chromium_page(height=1000) as page:
        try:
            open_notebook(page, server, "test.ipynb")
            run_all_cells(page)
            expect(page.get_by_text("traffic done")).to_be_visible(timeout=60 * SECONDS)
            panels = page.locator(".ws-notebook-panel")
            expect(panels).to_have_count(2, timeout=10 * SECONDS)
            echo, monitor = panels.nth(0), panels.nth(1)
            expect(echo.locator("tr.wsnb-in", has_text='"seq": 149').first).to_be_attached(
                timeout=10 * SECONDS
            )
            time.sleep(0.5)  # a last flush
            for panel in (echo, monitor):
                height = panel.bounding_box()["height"]
                assert height < 900, f"panel is {height:.0f} px tall"
            # The newest row is in view at the top of the log; the send box stays in the page.
            echo.scroll_into_view_if_needed()
            newest = echo.locator("tr.wsnb-in, tr.wsnb-out").first
            expect(newest).to_contain_text('"seq": 149')
            expect(newest).to_be_in_viewport()
            expect(echo.get_by_placeholder("message to send")).to_be_in_viewport()
            # A payload wider than its column is cut short, and shown whole when clicked.
            payload = newest.locator("td").last
            cut = payload.evaluate("td => td.scrollWidth > td.clientWidth")
            payload.click()
            assert cut and payload.evaluate("td => td.scrollWidth <= td.clientWidth")
            assert payload.inner_text().endswith('"xxxxxxxx"}]}')
            # One endpoint: no endpoint column; the monitor of all endpoints has one.
            expect(echo.get_by_role("columnheader", name="endpoint")).to_have_count(0)
            expect(monitor.get_by_role("columnheader", name="endpoint").first).to_be_visible()
            pause = echo.get_by_role("button", name="Pause")
            pause.click()
            expect(echo.get_by_role("button", name="Resume")).to_be_visible()
            expect(echo).to_contain_text("log paused")
        finally:
            page.screenshot(path=ARTIFACTS / "panel-bounded.png", full_page=True)


def save(page: Page, server: JupyterServer, expected: str) -> None:
    """Save the notebook (Ctrl+S, in command mode) and wait until the file holds ``expected``."""
    cell(page, 0).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    saved = server.root_dir / "test.ipynb"
    deadline = time.monotonic() + 20
    while expected not in saved.read_text():
        assert time.monotonic() < deadline, f"the saved notebook has no {expected!r}"
        time.sleep(0.3)


def test_widgets_say_when_the_kernel_restarts_and_a_saved_notebook_reads(tmp_path: Path) -> None:
    """Restart the kernel: both widgets say so. Reopened, the saved notebook shows their state.

    ipywidgets saves the state of live widgets only, so the notebook is saved before the
    restart, as a user saves their work; and only with Settings › Save Widget State
    Automatically, without which JupyterLab shows "Error displaying widget: model not found".
    """
    with (
        start_lab(tmp_path, [LOAD, ECHO, BROWSER], save_widget_state=True) as server,
        chromium_page() as page,
    ):
        try:
            open_notebook(page, server, "test.ipynb")
            run_all_cells(page)
            client = page.locator(".ws-notebook-browser-client")
            expect(client.locator(".wsnb-status")).to_contain_text("open:", timeout=60 * SECONDS)
            panel = page.locator(".ws-notebook-panel")
            expect(panel).to_contain_text("1 open", timeout=10 * SECONDS)
            save(page, server, "ws-notebook-panel")  # the panel's saved widget state

            page.get_by_role("menuitem", name="Kernel", exact=True).click()
            page.get_by_role("menuitem", name=re.compile("^Restart Kernel")).first.click()
            page.locator(".jp-Dialog button.jp-mod-accept").click()
            expect(panel.locator(".wsnb-kernel-watch")).to_contain_text(
                "kernel restarted: this panel shows the last known state", timeout=30 * SECONDS
            )
            expect(client.locator(".wsnb-status")).to_contain_text("closed (")
            expect(client.locator(".wsnb-note")).to_contain_text("the kernel restarted")
            expect(client.get_by_role("button", name="Reconnect")).to_be_visible()
            client.locator(".wsnb-input").fill("into the void")
            client.get_by_role("button", name="Send").click()
            expect(client.locator("li.wsnb-error")).to_contain_text("not sent (closed")
            page.screenshot(path=ARTIFACTS / "kernel-restarted.png", full_page=True)

            # The page loaded afresh, on the restarted kernel, which never ran the cells.
            open_notebook(page, server, "test.ipynb")
            panel = page.locator(".ws-notebook-panel")
            expect(panel).to_contain_text("1 open, 1 total", timeout=30 * SECONDS)  # as saved
            expect(panel.locator(".wsnb-kernel-watch")).to_contain_text(
                "no kernel: this panel shows the state saved with the notebook"
            )
            expect(page.locator(".ws-notebook-browser-client .wsnb-note")).to_contain_text(
                "no kernel behind this saved client"
            )
            expect(page.get_by_text(re.compile("Error displaying widget"))).to_have_count(0)
        finally:
            page.screenshot(path=ARTIFACTS / "notebook-reopened.png", full_page=True)
