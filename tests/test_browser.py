"""The live panel in a real JupyterLab page (and Notebook 7's, for handler output), in headless
Chromium.

The kernel-side tests check the panel's widget values; this one checks that a browser actually
renders them: a notebook defines an echo endpoint and talks to it, and the page must show the
panel's rows. It also opens a WebSocket from the Jupyter page itself, which proves the origin
policy lets a local Jupyter page connect. The last screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import expect

from .jupyter_server import (
    APPS,
    JupyterServer,
    chromium_page,
    free_port,
    needs_chromium,
    open_notebook,
    run_all_cells,
    wait_for_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.kernel, needs_chromium, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "test-artifacts" / "browser-panel.png"
KERNEL_TEXT = "hello-from-browser-test"
PAGE_TEXT = "hello-from-the-page"
SECONDS = 1000  # Playwright counts milliseconds

CELLS = [
    "%load_ext ws_notebook\nimport websockets\nimport ws_notebook",
    '%%websocket echo --description "Echo for the browser test"\n'
    "def on_message(message, client):\n"
    "    client.send(message)",
    # A cell that awaits lets the kernel's loop serve the connection it opens.
    'async with websockets.connect(ws_notebook.url("echo")) as ws:\n'
    f'    await ws.send("{KERNEL_TEXT}")\n'
    "    reply = await ws.recv()\n"
    'print("kernel client got:", reply)',
]

# Runs in the page: connect, send, return the echo; the socket stays open for the panel to show.
ECHO_FROM_PAGE = """
async ([url, text]) => {
  const ws = new WebSocket(url);
  const timeout = (what) => new Promise((_, fail) =>
    setTimeout(() => fail(new Error(`no ${what} within 10 s`)), 10000));
  const opened = new Promise((ok, fail) => {
    ws.onopen = ok;
    ws.onerror = () => fail(new Error(`cannot connect to ${url} from ${location.origin}`));
  });
  await Promise.race([opened, timeout("open")]);
  const reply = new Promise((ok) => { ws.onmessage = (event) => ok(event.data); });
  ws.send(text);
  window.wsnbTestSocket = ws;
  return await Promise.race([reply, timeout("echo")]);
}
"""


def write_notebook(path: Path) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in CELLS],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(notebook, path)


def test_panel_renders_in_jupyterlab(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "echo.ipynb")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    with (
        JupyterServer(notebooks, tmp_path / "jupyter") as server,
        chromium_page() as page,
    ):
        try:
            open_notebook(page, server, "echo.ipynb")
            run_all_cells(page)

            # The kernel's own client got its echo, and the panel logged both directions.
            wait_for_text(page, f"kernel client got: {KERNEL_TEXT}", timeout=60)
            panel = page.locator(".ws-notebook-panel")
            expect(panel).to_have_count(1, timeout=10 * SECONDS)
            expect(panel.locator("tr.wsnb-in", has_text=KERNEL_TEXT)).to_be_visible(
                timeout=10 * SECONDS
            )
            expect(panel.locator("tr.wsnb-out", has_text=KERNEL_TEXT)).to_be_visible()
            expect(panel).to_contain_text("Echo for the browser test")

            # A WebSocket opened by the Jupyter page itself (a loopback http:// origin) echoes.
            url = panel.locator("code", has_text=re.compile(r"^ws://")).inner_text()
            assert url.endswith("/websockets/service/echo"), url
            assert page.evaluate(ECHO_FROM_PAGE, [url, PAGE_TEXT]) == PAGE_TEXT

            # While that socket is open, the connections table has its row, and the log its text.
            connections = panel.locator(".wsnb-table").filter(
                has=page.get_by_role("columnheader", name="bytes in")
            )
            row = connections.locator("tr", has_text="127.0.0.1")
            expect(row).to_have_count(1, timeout=10 * SECONDS)
            expect(row).to_contain_text("open")
            expect(panel).to_contain_text("1 open, 2 total")
            expect(panel.locator("tr.wsnb-in", has_text=PAGE_TEXT)).to_be_visible()
            expect(page.get_by_text("Error displaying widget")).to_have_count(0)
        finally:
            page.screenshot(path=SCREENSHOT, full_page=True)


# Runs in the page: what a WebSocket and a fetch of the endpoint listing get from there.
PROBE_FROM_PAGE = """
async (url) => {
  const socket = await new Promise((done) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.close(1000); done("open"); };
    ws.onclose = (event) => done(`closed ${event.code}`);
    setTimeout(() => done("no answer in 10 s"), 10000);
  });
  const listing = await fetch("/websockets");
  return [socket, listing.status];
}
"""


def test_a_rebound_name_is_refused_in_a_real_browser(tmp_path: Path) -> None:
    """DNS rebinding: a page on an attacker's name, re-pointed at 127.0.0.1, gets nothing.

    The page is served by the server's own port (its /healthz), so the page, its WebSocket and
    its fetch are all same-origin, as after a rebinding. The same page on 127.0.0.1 connects.
    """
    (tmp_path / "echo.py").write_text(
        "def on_message(message, client):\n    client.send(message)\n"
    )
    (tmp_path / "echo.websocket").write_text('{"endpoint": "echo", "handler": "echo.py"}')
    port = free_port()
    command = [sys.executable, "-m", "ws_notebook", "serve", str(tmp_path), "--port", str(port)]
    server = subprocess.Popen([*command, "--no-watch"], stderr=subprocess.DEVNULL)
    try:
        wait_for_health(port)
        with chromium_page(host_map=["rebound.test"]) as page:
            for host, expected in (
                ("rebound.test", ["closed 1006", 403]),
                ("127.0.0.1", ["open", 200]),
            ):
                page.goto(f"http://{host}:{port}/healthz")
                url = f"ws://{host}:{port}/websockets/service/echo"
                assert page.evaluate(PROBE_FROM_PAGE, url) == expected, host
    finally:
        server.terminate()
        server.wait(15)


def wait_for_health(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, f"nothing serves on port {port}"
            time.sleep(0.1)


OUTPUT_CELLS = [
    "%load_ext ws_notebook\nimport websockets\nimport ws_notebook",
    "%%websocket shout --no-panel\n"
    "def on_message(message, client):\n"
    '    print("shout heard", message)\n'
    '    if message == "boom":\n'
    '        raise ValueError("shout exploded")\n'
    "    client.send(message)",
    "%%websocket quiet --no-panel\ndef on_message(message, client):\n    client.send(message)",
    'async with websockets.connect(ws_notebook.url("shout")) as ws:\n'
    '    await ws.send("boom")\n'
    '    await ws.send("from-the-last-cell")\n'
    "    reply = await ws.recv()\n"
    'print("last cell got:", reply)',
]


@pytest.mark.parametrize("app", APPS)
def test_handler_output_shows_under_its_own_cell(tmp_path: Path, app: str) -> None:
    """A handler's print and traceback, made while the last cell runs, show under the cell that
    defined the endpoint, in order; not under the cell that ran, nor under the other endpoint.
    In JupyterLab 4 and in Notebook 7."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in OUTPUT_CELLS],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(notebook, notebooks / "output.ipynb")
    suffix = "" if app == "lab" else "-notebook7"
    screenshot = ROOT / "test-artifacts" / f"browser-handler-output{suffix}.png"
    screenshot.parent.mkdir(exist_ok=True)
    with (
        JupyterServer(notebooks, tmp_path / "jupyter", app=app) as server,
        chromium_page() as page,
    ):
        try:
            open_notebook(page, server, "output.ipynb")
            run_all_cells(page)
            wait_for_text(page, "last cell got: from-the-last-cell", timeout=60)
            shout, quiet, last = (
                page.locator(".jp-CodeCell", has_text=text)
                for text in ("%%websocket shout", "%%websocket quiet", "last cell got")
            )
            output = shout.locator(".jp-OutputArea")
            expect(output).to_contain_text("shout heard from-the-last-cell", timeout=10 * SECONDS)
            text = output.inner_text()
            assert (
                text.index("shout heard boom")
                < text.index("ValueError: shout exploded")
                < text.index("shout heard from-the-last-cell")
            ), text
            for other in (quiet, last):
                expect(other.locator(".jp-OutputArea")).not_to_contain_text("shout heard")
        finally:
            page.screenshot(path=screenshot, full_page=True)
