"""Shared fixtures: a real IPython kernel to run magics in (and helpers to talk to it), and a
plain server on the test's own loop."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from jupyter_client.manager import KernelManager

from ws_notebook import Server


@dataclass
class Reply:
    """What one cell printed and returned."""

    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)  # text/plain of results and displays
    error: str | None = None  # "ename: evalue" when the cell raised

    @property
    def text(self) -> str:
        return self.stdout + "".join(self.results)


class Kernel:
    """A running kernel; ``run`` executes a cell and collects its output."""

    def __init__(self, manager: KernelManager) -> None:
        self.manager = manager
        self.client = manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 30, check: bool = True) -> Reply:
        reply = Reply()

        def collect(message: dict) -> None:
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    reply.stdout += content["text"]
                else:
                    reply.stderr += content["text"]
            elif kind in ("execute_result", "display_data"):
                reply.results.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                reply.error = f"{content['ename']}: {content['evalue']}"
                reply.stderr += "\n".join(content["traceback"])

        done = self.client.execute_interactive(code, output_hook=collect, timeout=timeout)
        if done["content"]["status"] == "error" and reply.error is None:
            reply.error = reply.stderr.strip()  # a UsageError is shown as text, not a traceback
        if check and reply.error:
            raise AssertionError(f"cell failed: {reply.error}\n{reply.stderr}")
        return reply

    def value(self, expression: str) -> str:
        """The printed value of an expression evaluated in the kernel."""
        return self.run(f"print({expression}, end='')").stdout

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def start_kernel() -> Kernel:
    manager = KernelManager(kernel_name="python3")
    # Run the kernel on the interpreter running the tests, whatever kernelspecs are installed.
    manager.kernel_spec.argv[0] = sys.executable
    manager.start_kernel()
    return Kernel(manager)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    """One kernel per test module, with the extension loaded."""
    started = start_kernel()
    started.run("%load_ext ws_notebook\nimport json\nimport ws_notebook")
    yield started
    started.stop()


@pytest.fixture
def fresh(kernel: Kernel) -> Iterator[Kernel]:
    """The module's kernel, with no endpoints left over from an earlier test."""
    kernel.run(
        "import ws_notebook.widgets\n"
        "for panel in ws_notebook.widgets.panels(): panel.close()\n"
        "ws_notebook.reset()"
    )
    yield kernel


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A server on a free loopback port, on the test's loop; stopped afterwards."""
    started = Server()
    started.start()
    yield started
    started.stop()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Server]]:
    """Start servers with the given options; all are stopped afterwards."""
    started: list[Server] = []

    def start(**options: object) -> Server:
        server = Server(**options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
