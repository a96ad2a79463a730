"""The live panel and the browser client in a real JupyterLab 4 or Notebook 7 page, over their
lifetime.

A second client of the notebook's own kernel (``kernel_client``) reads the server's state
(clients, the event log), so each check compares what the page shows with what the kernel
knows. Each test runs in both front ends (``app``: Notebook 7 is built from JupyterLab's
components, but has its own pages, menus and widget manager setup). Screenshots go to
test-artifacts/ (``-notebook7`` in the name for Notebook 7).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.sign import NotebookNotary
from playwright.sync_api import Locator, Page, expect

from .jupyter_server import (
    APPS,
    JupyterServer,
    chromium_page,
    evaluate,
    kernel_client,
    needs_chromium,
    open_notebook,
    run_all_cells,
)

pytestmark = [pytest.mark.browser, pytest.mark.kernel, needs_chromium, pytest.mark.timeout(240)]

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


def start_lab(tmp_path: Path, cells: list[str], app: str = "lab") -> JupyterServer:
    """A server (``app``: JupyterLab or Notebook 7) on a folder with ``cells`` as test.ipynb.

    Default settings throughout (Settings › Save Widget State Automatically is off).
    """
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "test.ipynb", cells)
    return JupyterServer(notebooks, tmp_path / "jupyter", app=app)


def screenshot(page: Page, name: str, app: str) -> None:
    """test-artifacts/NAME.png (JupyterLab) or NAME-notebook7.png."""
    page.screenshot(
        path=ARTIFACTS / f"{name}{'' if app == 'lab' else '-notebook7'}.png", full_page=True
    )


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


@pytest.mark.parametrize("app", APPS)
def test_browser_client_closes_with_1000_when_its_view_goes(tmp_path: Path, app: str) -> None:
    """Re-running or clearing a ``%websocket browser`` cell closes its socket (1000), no leak."""
    with start_lab(tmp_path, [LOAD, ECHO, BROWSER], app) as server, chromium_page() as page:
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
            screenshot(page, "browser-client-rerun", app)


# 150 JSON messages of 116 characters, echoed: 300 rows of long payloads; then two longer ones.
TRAFFIC = (
    'async with websockets.connect(ws_notebook.url("echo")) as ws:\n'
    "    for i in range(150):\n"
    '        await ws.send(json.dumps({"seq": i, "items": [{"id": n, "name": "x" * 8}'
    " for n in range(3)]}))\n"
    "        await ws.recv()\n"
    # Then 5,000 characters (kept whole) and 1 MB (kept in part: its first 8,192 characters).
    '    await ws.send("L" * 4987 + "<end-of-5000>")\n'
    "    await ws.recv()\n"
    '    await ws.send("h" * 1_000_000)\n'
    "    await ws.recv()\n"
    'print("traffic done")'
)


@pytest.mark.parametrize("app", APPS)
def test_panel_height_stays_bounded_under_traffic(tmp_path: Path, app: str) -> None:
    """300 rows of long JSON: the panel scrolls its log instead of growing; the send box shows."""
    cells = [LOAD + "\nimport json", ECHO, "%websocket monitor", TRAFFIC]
    with start_lab(tmp_path, cells, app) as server, chromium_page(height=1000) as page:
        try:
            open_notebook(page, server, "test.ipynb")
            run_all_cells(page)
            expect(page.get_by_text("traffic done")).to_be_visible(timeout=60 * SECONDS)
            panels = page.locator(".ws-notebook-panel")
            expect(panels).to_have_count(2, timeout=10 * SECONDS)
            echo, monitor = panels.nth(0), panels.nth(1)
            huge = echo.locator("tr.wsnb-out", has_text="… 991,808 more characters")
            expect(huge).to_be_attached(timeout=10 * SECONDS)
            time.sleep(0.5)  # a last flush
            for panel in (echo, monitor):
                height = panel.bounding_box()["height"]
                assert height < 900, f"panel is {height:.0f} px tall"
            # The newest row is in view at the top of the log; the send box stays in the page.
            echo.scroll_into_view_if_needed()
            newest = echo.locator("tr.wsnb-in, tr.wsnb-out").first
            expect(newest).to_contain_text("… 991,808 more characters")  # 1 MB, kept bounded
            expect(newest).to_be_in_viewport()
            expect(echo.get_by_placeholder("message to send")).to_be_in_viewport()
            # A payload wider than its column is cut short, and shown whole when clicked.
            for text, end in (('"seq": 149', '"xxxxxxxx"}]}'), ("<end-of-5000>", "L<end-of-5000>")):
                payload = echo.locator("tr.wsnb-in", has_text=text).first.locator("td").last
                cut = payload.evaluate("td => td.scrollWidth > td.clientWidth")
                payload.click()
                assert cut and payload.evaluate("td => td.scrollWidth <= td.clientWidth"), text
                assert payload.inner_text().endswith(end), text
            assert len(payload.inner_text()) == 5000  # all of it, and no "more" marker
            # One endpoint: no endpoint column; the monitor of all endpoints has one.
            expect(echo.get_by_role("columnheader", name="endpoint")).to_have_count(0)
            expect(monitor.get_by_role("columnheader", name="endpoint").first).to_be_visible()
            pause = echo.get_by_role("button", name="Pause")
            pause.click()
            expect(echo.get_by_role("button", name="Resume")).to_be_visible()
            expect(echo).to_contain_text("log paused")
        finally:
            screenshot(page, "panel-bounded", app)


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


SNAPSHOT = "A static snapshot, taken when this widget was displayed"


@pytest.mark.parametrize("app", APPS)
def test_widgets_say_when_the_kernel_restarts_and_a_saved_notebook_reads(
    tmp_path: Path, app: str
) -> None:
    """Restart the kernel: both widgets say so. Reopened, the saved notebook shows their state.

    With default settings: JupyterLab and Notebook 7 save no widget state (Settings › Save
    Widget State Automatically is off), so our widgets' code writes their own into the
    notebook when the page saves it; without it a reopened notebook shows "Error displaying
    widget: model not found". The notebook is saved while the kernel runs, as a user saves
    their work, then the server stops and a fresh one (the next day) opens it.
    """
    with start_lab(tmp_path, [LOAD, ECHO, BROWSER], app) as server, chromium_page() as page:
        try:
            open_notebook(page, server, "test.ipynb")
            run_all_cells(page)
            client = page.locator(".ws-notebook-browser-client")
            expect(client.locator(".wsnb-status")).to_contain_text("open:", timeout=60 * SECONDS)
            panel = page.locator(".ws-notebook-panel")
            expect(panel).to_contain_text("1 open", timeout=10 * SECONDS)
            with kernel_client(server, "test.ipynb") as kernel:
                token = evaluate(kernel, "ws_notebook.api.default_server().page_token")
            save(page, server, "ws-notebook-panel")  # the panel's saved widget state
            assert token not in (server.root_dir / "test.ipynb").read_text()

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
        finally:
            screenshot(page, "kernel-restarted", app)

    saved = nbformat.read(server.root_dir / "test.ipynb", as_version=4)
    state = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    classes = [entry["state"].get("_dom_classes", []) for entry in state.values()]
    assert ["ws-notebook-panel"] in classes and ["ws-notebook-browser-client"] in classes
    # The same notebook without its widget state, as saved by a page without our widgets' code:
    # unsigned, so untrusted (as a notebook from elsewhere); the widget renderer is not "safe".
    del saved.metadata["widgets"]
    nbformat.write(saved, server.root_dir / "stateless.ipynb")
    # A copy signed as Jupyter signs what it saves: trusted, as the user's own notebook. (Trust
    # goes by content: the copy must differ, or the unsigned one would be trusted too.)
    saved.metadata["copy"] = "signed"
    NotebookNotary().sign(saved)
    nbformat.write(saved, server.root_dir / "trusted-stateless.ipynb")

    # A fresh server on the same folder (the same user: the notebook it signed is trusted).
    again = JupyterServer(server.root_dir, tmp_path / "jupyter-again", app=app)
    with again, chromium_page() as page:
        try:
            open_notebook(page, again, "test.ipynb")
            panel = page.locator(".ws-notebook-panel")
            expect(panel).to_contain_text("1 open, 1 total", timeout=30 * SECONDS)  # as saved
            expect(panel.locator(".wsnb-kernel-watch")).to_contain_text(
                "no kernel: this panel shows the state saved with the notebook"
            )
            expect(page.locator(".ws-notebook-browser-client .wsnb-note")).to_contain_text(
                "no kernel behind this saved client"
            )
            expect(page.get_by_text(re.compile("Error displaying widget"))).to_have_count(0)
            screenshot(page, "notebook-reopened", app)

            open_notebook(page, again, "stateless.ipynb")
            snapshots = page.locator(".ws-notebook-snapshot")
            expect(snapshots).to_have_count(2, timeout=30 * SECONDS)
            expect(snapshots.first).to_contain_text("echo")
            expect(snapshots.first).to_contain_text(SNAPSHOT)
            expect(snapshots.last).to_contain_text("browser client of endpoint echo")
            expect(page.get_by_text(re.compile("Error displaying widget"))).to_have_count(0)
            screenshot(page, "notebook-reopened-stateless", app)

            # The limit (README): in a trusted notebook the widget renderer ranks before
            # text/html, so with no saved state the error shows, whatever else the output has.
            open_notebook(page, again, "trusted-stateless.ipynb")
            not_found = page.get_by_text("Error displaying widget: model not found")
            expect(not_found).to_have_count(2, timeout=30 * SECONDS)
        finally:
            screenshot(page, "notebook-reopened-trusted-stateless", app)
