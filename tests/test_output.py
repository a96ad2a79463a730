"""Handler output in a real kernel: each endpoint's prints and errors under its own defining cell,
in order, and in its event log; in ``ws-notebook serve``, as attributed lines on stderr."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from .kernels import Kernel, start_kernel
from .test_cli import Served, recv, write_endpoint
from .test_cli import connect as connect_async

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]  # a kernel of its own per test

WAIT = 60.0

PRINTER = """\
%%websocket {name} --no-panel
import sys

def on_message(message, client):
    print("{name} got", message)
    if message == "warn":
        print("{name} warns", file=sys.stderr)
    if message == "boom":
        raise ValueError("{name} exploded")
    client.send("ok " + message)
"""


class IOPub:
    """Runs cells and keeps every IOPub message, by the msg_id of the request it answers.

    ``Kernel.run`` drops messages of other requests: handler output arrives as output of the
    cells that defined the endpoints, long after they ran.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.client = kernel.client
        self.by_parent: dict[str, list[dict]] = defaultdict(list)

    def _read(self, timeout: float) -> dict | None:
        try:
            message = self.client.get_iopub_msg(timeout=timeout)
        except Exception:  # queue.Empty
            return None
        self.by_parent[message["parent_header"].get("msg_id", "")].append(message)
        return message

    def execute(self, code: str) -> str:
        """Run a cell to the end; returns its msg_id."""
        msg_id = self.client.execute(textwrap.dedent(code))
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            message = self._read(0.2)
            if (
                message is not None
                and message["parent_header"].get("msg_id") == msg_id
                and message["msg_type"] == "status"
                and message["content"]["execution_state"] == "idle"
            ):
                errors = [m for m in self.by_parent[msg_id] if m["msg_type"] == "error"]
                assert not errors, errors[0]["content"]
                return msg_id
        raise AssertionError(f"cell did not finish within {WAIT}s: {code}")

    def stdout(self, msg_id: str) -> str:
        return "".join(text for name, text in self.streams(msg_id) if name == "stdout")

    def streams(self, msg_id: str) -> list[tuple[str, str]]:
        """The stream output of a cell, as (name, text), in the order it was sent."""
        return [
            (m["content"]["name"], m["content"]["text"])
            for m in self.by_parent[msg_id]
            if m["msg_type"] == "stream"
        ]

    def text(self, msg_id: str) -> str:
        return "".join(text for _, text in self.streams(msg_id))

    def wait_for(self, msg_id: str, *parts: str) -> str:
        """Read IOPub until the cell's stream output holds every part; returns that output."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            text = self.text(msg_id)
            if all(part in text for part in parts):
                return text
            self._read(0.1)
        raise AssertionError(f"{parts} not all under {msg_id} within {WAIT}s:\n{self.text(msg_id)}")

    def settle(self, seconds: float = 0.6) -> None:
        """Read whatever else arrives in the next moments (the kernel flushes every 0.2 s)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(0.05)

    def url(self, name: str) -> str:
        msg_id = self.execute(f"print(ws_notebook.url({name!r}))")
        return self.stdout(msg_id).strip()


@pytest.fixture
def iopub() -> Iterator[IOPub]:
    """A kernel of its own (with a decoy endpoint cell run first, as a notebook has), watched."""
    kernel = start_kernel()
    try:
        watched = IOPub(kernel)
        watched.execute("%load_ext ws_notebook\nimport ws_notebook, json, sys")
        watched.execute("%%websocket decoy --no-panel\ndef on_message(message, client): pass\n")
        yield watched
    finally:
        kernel.stop()


def exchange(url: str, *messages: str) -> None:
    """Send each message; every handler call has ended once the last reply is in."""
    with connect(url, open_timeout=WAIT) as ws:
        for message in messages:
            ws.send(message)
        ws.send("done")
        while ws.recv(timeout=WAIT) != "ok done":
            pass


@pytest.mark.kernel
def test_each_endpoint_prints_under_its_own_cell_in_order(iopub: IOPub) -> None:
    alpha = iopub.execute(PRINTER.format(name="alpha"))
    beta = iopub.execute(PRINTER.format(name="beta"))
    unrelated = iopub.execute("print('the notebook says hi')")
    alpha_url, beta_url = iopub.url("alpha"), iopub.url("beta")

    exchange(alpha_url, "hello", "warn", "boom")
    exchange(beta_url, "hello", "boom")
    iopub.wait_for(alpha, "alpha got done", "alpha exploded")
    iopub.wait_for(beta, "beta got done", "beta exploded")
    iopub.settle()

    for mine, other, name in ((alpha, beta, "alpha"), (beta, alpha, "beta")):
        text = iopub.text(mine)
        assert "Traceback (most recent call last)" in text
        assert f"ValueError: {name} exploded" in text
        # In order: the print of "boom" before its traceback, which comes before the next print.
        assert (
            text.index(f"{name} got boom")
            < text.index(f"ValueError: {name} exploded")
            < text.index(f"{name} got done")
        )
        assert name not in iopub.text(other)
        assert name not in iopub.text(unrelated)
        assert ("stdout", f"{name} got hello\n") in merged(iopub.streams(mine))
    assert ("stderr", "alpha warns\n") in merged(iopub.streams(alpha))
    assert iopub.streams(unrelated) == [("stdout", "the notebook says hi\n")]


def merged(streams: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Stream outputs as a front end shows them: consecutive texts of one stream as lines."""
    return [(name, line) for name, text in streams for line in text.splitlines(keepends=True)]


@pytest.mark.kernel
def test_rerunning_the_cell_moves_its_output(iopub: IOPub) -> None:
    first = iopub.execute(PRINTER.format(name="alpha"))
    url = iopub.url("alpha")
    exchange(url, "before")
    iopub.wait_for(first, "alpha got before")
    second = iopub.execute(PRINTER.format(name="alpha"))
    exchange(url, "after", "boom")
    iopub.wait_for(second, "alpha got after", "alpha exploded")
    iopub.settle()
    assert "after" not in iopub.text(first) and "exploded" not in iopub.text(first)
    assert "before" not in iopub.text(second)


@pytest.mark.kernel
def test_async_handler_prints_after_await_under_its_cell(iopub: IOPub) -> None:
    cell = iopub.execute(
        """\
        %%websocket slow --no-panel
        import asyncio

        async def on_open(client):
            await asyncio.sleep(0.01)
            print("opened after await")

        async def on_message(message, client):
            print("before await", message)
            await asyncio.sleep(0.05)
            print("after await", message)
            if message == "boom":
                raise ValueError("slow exploded")
            client.send("ok " + message)
        """
    )
    later = iopub.execute("y = 2")
    exchange(iopub.url("slow"), "one", "boom")
    text = iopub.wait_for(cell, "after await done", "slow exploded")
    iopub.settle()
    assert text.index("opened after await") < text.index("after await one")
    assert text.index("after await one") < text.index("after await boom")
    assert text.index("after await boom") < text.index("ValueError: slow exploded")
    assert "await" not in iopub.text(later)


@pytest.mark.kernel
def test_output_is_in_the_event_log(iopub: IOPub) -> None:
    iopub.execute(
        """\
        %%websocket talk --no-panel
        import sys

        def on_message(message, client):
            print("said", message, end="")
            print("!")
            print("careful", file=sys.stderr)
            print("x" * 5000)
            client.send("ok " + message)
        """
    )
    exchange(iopub.url("talk"), "hi")
    cell = iopub.execute("print(json.dumps(ws_notebook.events('talk')))")
    events = [e for e in json.loads(iopub.stdout(cell)) if e["kind"] in ("stdout", "stderr")]
    said, careful, long, *_ = events
    assert (said["kind"], said["preview"], said["detail"]) == ("stdout", "said hi!", "said hi!")
    assert (careful["kind"], careful["detail"]) == ("stderr", "careful")
    assert long["size"] == 5000 and long["preview"] == "x" * 120
    assert long["detail"] == "x" * 4000
    assert said["client"] == careful["client"] != ""
    shown = iopub.execute("%websocket log talk")
    table = "".join(
        m["content"]["data"]["text/plain"]
        for m in iopub.by_parent[shown]
        if m["msg_type"] == "execute_result"
    )
    assert "stdout" in table and "said hi!" in table and "stderr" in table


@pytest.mark.kernel
def test_unload_gives_back_the_streams(iopub: IOPub) -> None:
    cell = iopub.execute("%unload_ext ws_notebook\nprint(type(sys.stdout).__name__)")
    assert iopub.stdout(cell).strip() == "OutStream"
    iopub.execute("%load_ext ws_notebook")
    first = iopub.execute(PRINTER.format(name="first"))  # starts the server again
    again = iopub.execute(PRINTER.format(name="again"))
    exchange(iopub.url("again"), "hello")
    iopub.wait_for(again, "again got hello")
    assert "again got" not in iopub.text(first)


async def test_serve_prints_handler_output_as_attributed_lines(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    handler = (
        "import sys\n"
        "def on_message(message, client):\n"
        "    print('said', message)\n"
        "    print('careful', file=sys.stderr)\n"
        "    client.send(message)\n"
    )
    write_endpoint(folder, "echo", handler)
    served = Served([sys.executable, "-m", "ws_notebook", "serve", str(folder), "--port", "0"])
    try:
        await served.started()
        ws = await connect_async(served.url("echo"))
        await ws.send("hello")
        assert await recv(ws) == "hello"
        await ws.close()
        said = await served.wait_for(r"echo (c\d+) stdout said hello$")
        await served.wait_for(rf"echo {said.group(1)} stderr careful$")
        assert not any("said hello" in line for line in served.stdout)
    finally:
        served.kill()


@pytest.mark.kernel
def test_loaded_handlers_print_under_the_load_cell(iopub: IOPub, tmp_path: Path) -> None:
    write_endpoint(
        tmp_path, "loaded", "def on_message(message, client):\n    print('loaded got', message)\n"
    )
    load = iopub.execute(f"%websocket load {tmp_path}")
    later = iopub.execute("print('an unrelated cell')")
    with connect(iopub.url("loaded")) as ws:
        ws.send("hello")
        iopub.wait_for(load, "loaded got hello")
    iopub.settle()
    assert "loaded got" not in iopub.text(later)
