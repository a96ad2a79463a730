"""A real IPython kernel to run cells in: started on the interpreter running the tests, with
helpers that collect what a cell printed. Tests get one through the ``kernel`` and ``fresh``
fixtures (tests/conftest.py), which import this module only when a test asks for them."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from jupyter_client.manager import KernelManager


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
