"""Binder, reproduced on this machine: what ``binder/requirements.txt`` installs, behind a base URL.

A fresh virtual environment gets exactly ``binder/requirements.txt`` (installed from the
repository root, as repo2docker does), ``jupyter lab`` runs with a token and JupyterHub's kind of
``base_url``, and headless Chromium runs the quickstart and chat notebooks. The page's own
WebSocket client must reach the kernel's endpoint through ``/user/demo/proxy/PORT/...`` (as on
Binder, where nothing else reaches the kernel's port), and the round trip must show in the page
and in the kernel's event log (the live panel renders it). The page is on a name, as on Binder
(Chromium maps it to 127.0.0.1), so the kernel's server lets it in only with the page token,
which the browser widget gets over its comm.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .jupyter_server import (
    JupyterServer,
    chromium_page,
    needs_chromium,
    open_notebook,
    run_all_cells,
)
from .pythons import find_python

pytestmark = [pytest.mark.browser, pytest.mark.kernel, needs_chromium, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
BASE_URL = "/user/demo/"
HUB = "hub.binder.test"  # as on Binder, the page's host is a name, not loopback
SECONDS = 1000  # Playwright counts milliseconds
PROXIED = re.compile(r"^open: ws://hub\.binder\.test:\d+/user/demo/proxy/\d+/websockets/service/")


@pytest.fixture(scope="module")
def binder_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A new virtual environment with exactly what Binder would install, on its Python.

    ``binder/runtime.txt`` names the Python Binder runs (``python-3.11``): the pins were tested
    with it, and some (tornado 6.6) do not install on older ones.
    """
    version = (ROOT / "binder" / "runtime.txt").read_text().strip().removeprefix("python-")
    interpreter = find_python(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} here (binder/runtime.txt names it)")
    venv = tmp_path_factory.mktemp("binder") / "venv"
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"]
    subprocess.run(install, cwd=ROOT, check=True, timeout=480)
    # Then binder/postBuild, as repo2docker runs it: with the environment's python first on PATH.
    path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    subprocess.run(["binder/postBuild"], cwd=ROOT, check=True, env={**os.environ, "PATH": path})
    return python


@pytest.fixture
def jupyter(
    binder_python: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """JupyterLab from the Binder environment, on the repository's notebooks (copied).

    One server per test: a fresh JupyterLab workspace, so no tab of an earlier test is open
    (its widgets would match the locators, and its kernel status would fool the wait for idle).
    """
    root = tmp_path_factory.mktemp("binder-root")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    with JupyterServer(
        root,
        tmp_path_factory.mktemp("jupyter"),
        base_url=BASE_URL,
        python=binder_python,
        host_name=HUB,
    ) as server:
        yield server


def browser_client(page: Page, nth: int = 0):
    return page.locator(".ws-notebook-browser-client").nth(nth)


def send_from_page(client, text: str) -> None:
    # JupyterLab only renders the cells near the viewport: bring the widget into view first.
    client.scroll_into_view_if_needed()
    client.locator(".wsnb-input").fill(text)
    client.locator(".wsnb-input").press("Enter")


def test_quickstart_round_trip_through_the_proxy(jupyter: JupyterServer) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(host_map=[HUB]) as page:
        try:
            open_notebook(page, jupyter, "notebooks/quickstart.ipynb")
            run_all_cells(page)
            client = browser_client(page)
            status = client.locator(".wsnb-status")
            expect(status).to_have_text(PROXIED, timeout=90 * SECONDS)
            expect(client.locator("li.wsnb-received").first).to_contain_text(
                "welcome, c", timeout=10 * SECONDS
            )

            send_from_page(client, "hello-through-the-proxy")
            expect(
                client.locator("li.wsnb-received", has_text="hello-through-the-proxy")
            ).to_have_count(1, timeout=10 * SECONDS)
            # The kernel's event log, as the live panel renders it: in and out, with the text.
            panel = page.locator(".ws-notebook-panel").first
            for direction in ("in", "out"):
                row = panel.locator(f"tr.wsnb-{direction}", has_text="hello-through-the-proxy")
                expect(row).to_have_count(1, timeout=10 * SECONDS)
            # The panel advertises the proxied path under Jupyter's base URL.
            expect(panel).to_contain_text(
                re.compile(r"via Jupyter: /user/demo/proxy/\d+/websockets/service/echo")
            )
            expect(page.get_by_text("Error displaying widget")).to_have_count(0)
        finally:
            page.screenshot(path=ARTIFACTS / "binder-quickstart.png", full_page=True)


def test_chat_room_from_the_page(jupyter: JupyterServer) -> None:
    with chromium_page(host_map=[HUB]) as page:
        try:
            open_notebook(page, jupyter, "notebooks/chat-room.ipynb")
            run_all_cells(page)
            client = browser_client(page)
            expect(client.locator(".wsnb-status")).to_have_text(PROXIED, timeout=90 * SECONDS)
            send_from_page(client, "hi from the browser")
            # The room broadcasts it back, with the sender's client id as its name.
            echoed = client.locator(
                "li.wsnb-received", has_text=re.compile(r"c\d+: hi from the browser")
            )
            expect(echoed).to_have_count(1, timeout=10 * SECONDS)
            panel = page.locator(".ws-notebook-panel").first
            expect(panel.locator("tr.wsnb-in", has_text="hi from the browser")).to_have_count(
                1, timeout=10 * SECONDS
            )
        finally:
            page.screenshot(path=ARTIFACTS / "binder-chat.png", full_page=True)


def test_binder_saves_widget_state_with_the_notebook(jupyter: JupyterServer) -> None:
    """binder/postBuild's overrides: reopened notebooks show the panels, not a widget error."""
    settings = "lab/api/settings/@jupyter-widgets/jupyterlab-manager:plugin"
    url = f"http://127.0.0.1:{jupyter.port}{BASE_URL}{settings}?token={jupyter.token}"
    with urllib.request.urlopen(url, timeout=30) as response:
        answer = json.loads(response.read())
    # JupyterLab applies overrides.json as the setting's default (ipywidgets ships False).
    assert answer["schema"]["properties"]["saveState"]["default"] is True
