"""A real JupyterLab or Notebook 7 and a real browser for tests: start, open a notebook, run it.

``JupyterServer`` runs ``jupyter lab`` (or ``jupyter notebook``, Notebook 7: ``app="notebook"``)
from the interpreter running the tests (so its kernels see this checkout's ``ws_notebook``) on
loopback with a random token. ``chromium_page`` drives Debian's Chromium through Playwright,
which cannot download its own browser here. Both are kept free of this project's specifics so
other tests (a Binder-like one with a ``base_url`` and jupyter-server-proxy) can reuse them.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run does it)",
)

# --headless, --no-sandbox (we may run as root) and --disable-gpu make it start in a container;
# the rest stop Chromium's own background traffic, which floods a closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the server is told not to retry others if it is taken)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


APPS = ("lab", "notebook")  # the front ends: JupyterLab 4, Notebook 7
_MODULES = {"lab": "jupyterlab", "notebook": "notebook"}


class JupyterServer:
    """``jupyter lab`` (or ``jupyter notebook``) on 127.0.0.1, serving ``root_dir``.

    Use it as a context manager. ``app`` is ``"lab"`` (JupyterLab 4) or ``"notebook"`` (Notebook
    7, built from JupyterLab's components: the same cells, outputs and widget manager, a page per
    notebook and no status bar).

    It runs on ``python`` (default: the interpreter running the tests). Its ``python3`` kernels run
    on that interpreter too (jupyter_client maps the kernelspec's
    ``python`` to the server's interpreter), so they import this checkout's packages.

    Jupyter's config, runtime, settings and workspace folders are private to this server (under
    ``state_dir``), so neither the user's setup nor an earlier run changes what the page shows.
    The server's output goes to ``state_dir/jupyter.log``, quoted when it fails to start.
    """

    def __init__(
        self,
        root_dir: Path,
        state_dir: Path,
        base_url: str = "/",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 60,
        python: str = sys.executable,
        host_name: str = "127.0.0.1",
        app: str = "lab",
    ) -> None:
        if app not in APPS:
            raise ValueError(f"app: {app!r} is not one of {APPS}")
        self.app = app
        self.python = python
        self.host_name = host_name  # what the browser calls it (see chromium_page's host_map)
        self.root_dir = Path(root_dir)
        self.state_dir = Path(state_dir)
        self.base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.log_path = self.state_dir / "jupyter.log"
        self.process: subprocess.Popen | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host_name}:{self.port}{self.base_url}"

    def url(self, path: str = "", token: bool = True) -> str:
        """``path`` under the server's base URL, with ``?token=`` to log in a browser."""
        url = self.root_url + path.lstrip("/")
        return f"{url}{'&' if '?' in url else '?'}token={self.token}" if token else url

    def notebook_url(self, path: str) -> str:
        """Where the front end shows the notebook ``path`` (relative to the root), with the token."""
        return self.url(f"lab/tree/{path}" if self.app == "lab" else f"notebooks/{path}")

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for variable, folder in {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        }.items():
            env[variable] = str(self.state_dir / folder)
        return env

    def _quiet_settings(self) -> None:
        """No "get Jupyter news?" toast and no update check: they cover the page, need network."""
        folder = self.state_dir / "lab-settings" / "@jupyterlab" / "apputils-extension"
        folder.mkdir(parents=True, exist_ok=True)
        settings = {"fetchNews": "false", "checkForUpdates": False}
        (folder / "notification.jupyterlab-settings").write_text(json.dumps(settings))

    def start(self) -> JupyterServer:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._quiet_settings()
        command = [
            self.python,
            "-m",
            _MODULES[self.app],
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.base_url={self.base_url}",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--IdentityProvider.token={self.token}",
            *(["--allow-root"] if os.geteuid() == 0 else []),
            # A name other than localhost in the Host header, as on a hub: allowed when asked for.
            *(["--ServerApp.allow_remote_access=True"] if self.host_name != "127.0.0.1" else []),
            *self.extra_args,
        ]
        with open(self.log_path, "wb") as log:
            # A session of its own, so a last-resort kill also reaches the kernels it started.
            self.process = subprocess.Popen(
                command,
                cwd=self.root_dir,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_answering()
        return self

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        status = f"http://127.0.0.1:{self.port}{self.base_url}api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"jupyter {self.app} exited ({self.process.returncode}):\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(status, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"jupyter {self.app} did not answer in {self.startup_timeout}s:\n{self.log()}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM lets Jupyter shut its kernels down; kill the whole session if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def chromium_page(
    width: int = 1280, height: int = 1200, host_map: Sequence[str] = ()
) -> Iterator[Page]:
    """A fresh page in headless Debian Chromium; never ``playwright install``'s browser.

    ``host_map`` names that Chromium resolves to 127.0.0.1 (a hub's name, an attacker's name
    re-pointed at loopback), with no DNS involved.
    """
    args = list(CHROMIUM_FLAGS)
    if host_map:
        rules = ", ".join(f"MAP {name} 127.0.0.1" for name in host_map)
        args.append(f"--host-resolver-rules={rules}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


@contextmanager
def loopback_page(html: bytes) -> Iterator[str]:
    """Serve ``html`` at an ``http://127.0.0.1`` URL (yielded): a page from a loopback origin
    may open ``ws://127.0.0.1`` in Chromium, which ``about:blank`` may not."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_notebook(page: Page, server: JupyterServer, path: str, timeout: float = 60) -> None:
    """Open ``path`` (relative to the server's root) in the server's front end; wait for a kernel.

    Logging in with ``?token=`` sets Jupyter's cookie, so the page's own API calls work. Cells
    run before the kernel is connected are silently skipped, so wait for it. JupyterLab: the
    status bar's "<kernel> | Idle" (the toolbar's execution indicator says "idle" already before
    the kernel even starts: "No Kernel | Initializing"). Notebook 7 has no status bar: wait for
    its toolbar to name a kernel and for the server to see that kernel idle with a WebSocket
    connection (the page's own).
    """
    page.goto(server.notebook_url(path), timeout=timeout * 1000)
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=timeout * 1000)
    if server.app == "lab":
        kernel_idle = page.locator(
            ".jp-StatusBar-TextItem", has_text=re.compile(r"^(?!No Kernel).+ \| Idle$")
        )
        expect(kernel_idle).to_have_count(1, timeout=timeout * 1000)
        return
    kernel_name = page.locator(".jp-Toolbar-kernelName")
    expect(kernel_name).to_have_text(re.compile(r"^(?!No Kernel).+"), timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    while True:
        try:
            kernel = rest(server, "GET", f"api/kernels/{kernel_id(server, path)}")
            if kernel["execution_state"] == "idle" and kernel["connections"] > 0:
                return
        except LookupError:
            pass  # no session yet
        assert time.monotonic() < deadline, f"no idle kernel for {path} within {timeout} s"
        time.sleep(0.2)


def run_all_cells(page: Page) -> None:
    """Run > Run All Cells, through the menu bar as a user would (works on any server setup)."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def wait_for_text(page: Page, text: str, timeout: float = 30) -> None:
    """Wait until ``text`` is visible somewhere in the page."""
    expect(page.get_by_text(text).first).to_be_visible(timeout=timeout * 1000)


def rest(server: JupyterServer, method: str, path: str) -> object:
    """Call the server's REST API (``api/...``) with its token; the decoded JSON answer."""
    request = urllib.request.Request(
        server.url(path, token=False),
        method=method,
        headers={"Authorization": f"token {server.token}"},
        data=b"{}" if method == "POST" else None,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def kernel_id(server: JupyterServer, path: str) -> str:
    """The id of the kernel behind the notebook ``path``'s session."""
    for session in rest(server, "GET", "api/sessions"):
        if session["path"] == path:
            return session["kernel"]["id"]
    raise LookupError(f"no session for {path}")


@contextmanager
def kernel_client(server: JupyterServer, path: str) -> Iterator[object]:
    """A second client of the notebook's own kernel, to read its state without the page."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient()
    client.load_connection_file(
        server.state_dir / "runtime" / f"kernel-{kernel_id(server, path)}.json"
    )
    client.start_channels()
    try:
        client.wait_for_ready(timeout=30)
        yield client
    finally:
        client.stop_channels()


def evaluate(client: object, expression: str, timeout: float = 30) -> object:
    """The value of a Python expression in the kernel (printed as JSON there, decoded here)."""
    out: list[str] = []

    def collect(message: dict) -> None:
        if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
            out.append(message["content"]["text"])

    code = f"import json as _json\nprint(_json.dumps({expression}))"
    reply = client.execute_interactive(code, output_hook=collect, timeout=timeout)
    assert reply["content"]["status"] == "ok", reply["content"]
    return json.loads("".join(out))
