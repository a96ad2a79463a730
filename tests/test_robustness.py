"""A handler cannot take the server down, and ``serve`` logs every connection event under load.

A handler that raises ``SystemExit`` (argparse on a client's message, ``sys.exit()``) or
``KeyboardInterrupt`` used to end the kernel or the ``ws-notebook serve`` process; now it is that
handler's error, like any other. And ``serve`` used to lose opens, errors and closes from stderr
when a flood of messages pushed them out of the event log before it was read.

Real kernel, real ``ws-notebook serve`` subprocesses, real ``websockets`` clients on loopback.
"""

from __future__ import annotations

import asyncio
import io
import re
import signal
import textwrap
from pathlib import Path

import pytest
from websockets.sync.client import connect as connect_sync

from ws_notebook import Descriptor, Handlers, Registry
from ws_notebook.cli import _EventPrinter

from . import test_cli
from .kernels import Kernel
from .test_cli import WAIT, close_code, connect, recv, write_endpoint

pytestmark = pytest.mark.timeout(180)


serve = test_cli.serve  # the fixture: `ws-notebook serve FOLDER --port 0 OPTIONS`, killed after


STRICT = """\
%%websocket strict --no-panel
import argparse

parser = argparse.ArgumentParser(prog="strict")
parser.add_argument("--n", type=int)

def on_message(message, client):
    if message == "interrupt":
        raise KeyboardInterrupt
    args = parser.parse_args(message.split())  # '--n five': sys.exit(2)
    client.send(f"n={args.n}")

async def on_error(error, client):  # awaited, though on_message is not async
    seen.append(type(error).__name__)
"""

QUITTER = """\
%%websocket quitter --no-panel
import asyncio, sys

async def on_message(message, client):
    await asyncio.sleep(0)
    if message == "quit":
        sys.exit(5)
    await client.send(message)

async def on_close(client):
    raise SystemExit(6)

def on_error(error, client):
    seen.append(f"{type(error).__name__} {error}")
"""


@pytest.mark.slow
def test_system_exit_and_keyboard_interrupt_in_a_kernel_are_handler_errors(
    fresh: Kernel,
) -> None:
    fresh.run("seen = []")  # a notebook list the handlers append to
    fresh.run(textwrap.dedent(STRICT))
    with connect_sync(fresh.value("ws_notebook.url('strict')"), open_timeout=WAIT) as ws:
        ws.send("--n five")  # argparse exits: the kernel used to die here
        ws.send("--n 5")
        assert ws.recv(timeout=WAIT) == "n=5"  # the same connection
        ws.send("interrupt")
        ws.send("--n 6")
        assert ws.recv(timeout=WAIT) == "n=6"
    assert fresh.value("seen") == "['SystemExit', 'KeyboardInterrupt']"  # the next cell runs
    errors = fresh.value(
        "[e['detail'] for e in ws_notebook.events('strict') if e['kind'] == 'error']"
    )
    assert "on_message raised SystemExit: 2" in errors
    assert "on_message raised KeyboardInterrupt" in errors

    fresh.run("seen.clear()")
    fresh.run(textwrap.dedent(QUITTER))
    with connect_sync(fresh.value("ws_notebook.url('quitter')"), open_timeout=WAIT) as ws:
        ws.send("quit")
        ws.send("still here")
        assert ws.recv(timeout=WAIT) == "still here"
    fresh.run(
        "import time\n"
        "deadline = time.monotonic() + 10\n"
        "while len(seen) < 2 and time.monotonic() < deadline:\n"
        "    await asyncio.sleep(0.02)"
    )
    assert fresh.value("seen") == "['SystemExit 5', 'SystemExit 6']"  # async on_message, on_close
    assert fresh.value("1 + 1") == "2"


EXITING = """\
import sys

def on_open(client):
    client.send(f"welcome {client.id}")

def on_message(message, client):
    if message == "exit":
        sys.exit(3)
    if message == "interrupt":
        raise KeyboardInterrupt("from the handler")
    client.send(message)
"""


@pytest.mark.slow
async def test_sys_exit_in_a_handler_does_not_end_serve(tmp_path: Path, serve) -> None:
    write_endpoint(tmp_path, "exiting", EXITING)
    served = await serve(tmp_path)
    first, second = await connect(served.url("exiting")), await connect(served.url("exiting"))
    first_id = (await recv(first)).split()[1]
    await recv(second)
    await first.send("exit")  # used to end the process with exit code 3, no close frames
    await first.send("interrupt")
    await first.send("still here")
    assert await recv(first) == "still here"
    await second.send("other")
    assert await recv(second) == "other"
    await served.wait_for(rf"exiting {first_id} error on_message raised SystemExit: 3$")
    await served.wait_for(
        rf"exiting {first_id} error on_message raised KeyboardInterrupt: from the handler$"
    )
    assert served.process.poll() is None
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.gather(close_code(first), close_code(second)) == [1001, 1001]
    assert await served.exit_code() == 0


FLOOD_ECHO = """\
def on_open(client):
    client.send(f"welcome {client.id}")

def on_message(message, client):
    if message == "boom":
        raise ValueError("boom")
    client.send(message)
"""

FLOODERS = 4
FLOOD = 20_000  # messages each flooder pipelines: far more events than the log's 1,000
VISITORS = 10


@pytest.mark.slow
async def test_every_open_error_and_close_reaches_stderr_during_a_flood(
    tmp_path: Path, serve
) -> None:
    write_endpoint(tmp_path, "echo", FLOOD_ECHO)
    served = await serve(tmp_path)
    url = served.url("echo")

    async def flooder() -> str:
        async with await connect(url) as ws:
            client_id = (await recv(ws)).split()[1]
            for number in range(FLOOD):
                await ws.send(f"{number:06d}")
            for _ in range(FLOOD):
                await recv(ws)
        return client_id

    async def visitor(delay: float) -> str:
        await asyncio.sleep(delay)  # arrive while the floods flow
        async with await connect(url) as ws:
            client_id = (await recv(ws)).split()[1]
            await ws.send("boom")
            await ws.send("after")
            assert await recv(ws) == "after"
        return client_id

    floods = [asyncio.create_task(flooder()) for _ in range(FLOODERS)]
    visitors = await asyncio.gather(*(visitor(0.05 * n) for n in range(VISITORS)))
    flooders = await asyncio.gather(*floods)
    served.process.send_signal(signal.SIGTERM)
    assert await served.exit_code() == 0

    events = [re.search(r" echo (c\d+) (open|error|close)\b", line) for line in served.lines]
    seen = [match.groups() for match in events if match]
    for client_id in visitors:
        kinds = sorted(kind for who, kind in seen if who == client_id)
        assert kinds == ["close", "error", "open"], (client_id, served.stderr[-3000:])
    for client_id in flooders:
        kinds = sorted(kind for who, kind in seen if who == client_id)
        assert kinds == ["close", "open"], (client_id, served.stderr[-3000:])
    assert "not shown" not in served.stderr  # without -v, no message lines to summarise


def test_printer_prints_every_connection_event_and_counts_the_messages_it_missed() -> None:
    """In process, verbose: open/error/close lines whatever the log kept, in time order with
    the message lines it still had, and a count of those it had not (real registry, no server)."""
    registry = Registry()
    descriptor = Descriptor.new("echo", handler="test", created_by="test")
    endpoint = registry.mount(descriptor, Handlers(), log_capacity=10).endpoint
    stream = io.StringIO()
    printer = _EventPrinter(registry, stream, verbose=True)
    endpoint.log.record("open", "c1", detail="127.0.0.1")
    for _ in range(100):
        endpoint.log.message("in", "c1", "x")
    endpoint.log.record("error", "c1", detail="on_message raised ValueError: bad")
    for _ in range(50):
        endpoint.log.message("out", "c1", "yy")
    endpoint.log.record("close", "c1", detail="1000")
    printer.flush()
    lines = [line.split(" ", 2)[2] for line in stream.getvalue().splitlines()]
    assert lines == [
        "echo c1 open 127.0.0.1",
        "echo c1 error on_message raised ValueError: bad",
        "echo (141 message events not shown)",  # 150 messages, of which the log kept 9
        *["echo c1 out 2 bytes"] * 9,
        "echo c1 close 1000",
    ]

    # A log replaced for a new capacity is followed too.
    registry.mount(descriptor, Handlers(), log_capacity=5)
    endpoint.log.record("open", "c2", detail="127.0.0.1")
    printer.flush()
    assert stream.getvalue().splitlines()[-1].endswith(" echo c2 open 127.0.0.1")
