"""Clients stay connected while a cell runs (issue 12).

A cell that blocks the kernel's main thread (``time.sleep``, a pure Python loop) used to leave
the server deaf: no ping answered, no handshake completed, so clients with a keepalive were
dropped. Real kernel, real ``websockets`` clients with short keepalives, on loopback. The
blocking cell is sent without waiting for it (``Block``), so the clients work while it runs.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import contextvars
import functools
import json
import queue
import re
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from .kernels import Kernel, start_kernel
from .npm_clients import node_modules, run_client

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(120)]  # cells block

T = TypeVar("T")

WAIT = 15.0  # seconds: the longest any single expected thing may take
KEEPALIVE = 1.0  # seconds: the clients' ping interval, and the time a pong may take
BLOCK = 5  # seconds a blocking cell lasts: several keepalive periods
SLEEP = f"time.sleep({BLOCK})"
BUSY_LOOP = f"t = time.time()\nwhile time.time() - t < {BLOCK}:\n    pass"
MARK = "blocking now"

# Each handler call appends (endpoint, thread name) to the notebook list `handled`; the counter
# in the reply shows the order and that no message is handled twice.
ECHO = """\
%%websocket {name} --no-panel {options}
import itertools
import threading

counter = itertools.count(1)

def on_open(client):
    client.send(f"welcome {{client.id}}")

def on_message(message, client):
    handled.append((client.endpoint, threading.current_thread().name))
    client.send(f"{{next(counter)}}:{{message}}")
"""


@pytest.fixture
def notebook(fresh: Kernel) -> Iterator[Kernel]:
    """The module's kernel, reset, with the notebook list the echo handlers append to."""
    fresh.run("import asyncio, json, threading, time\nhandled = []")
    yield fresh


async def off_loop(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Call a blocking function in a thread, so the clients' keepalives keep running.

    In an empty context: jupyter_client's sync methods run their coroutines on the loop a
    context variable names, and the test's context names the test's running loop.
    """
    call = functools.partial(contextvars.Context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, call)


async def run(kernel: Kernel, code: str) -> str:
    """Run a cell; its stdout."""
    return (await off_loop(kernel.run, code)).stdout


async def value(kernel: Kernel, expression: str) -> str:
    return await off_loop(kernel.value, expression)


async def define_echo(kernel: Kernel, name: str, *options: str) -> str:
    """Define an echo endpoint; its URL."""
    await run(kernel, ECHO.format(name=name, options=" ".join(options)))
    return await value(kernel, f"ws_notebook.url({name!r})")


def client(url: str, **options: object) -> websockets.connect:
    """A ``websockets`` client with a short keepalive (``KEEPALIVE``: ping interval and timeout)."""
    settings = {"ping_interval": KEEPALIVE, "ping_timeout": KEEPALIVE, "open_timeout": WAIT}
    return websockets.connect(url, **{**settings, "close_timeout": 1, **options})


async def recv(ws: websockets.ClientConnection, timeout: float = WAIT) -> str | bytes:
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no message within {timeout} s") from None
    except ConnectionClosed as closed:
        raise AssertionError(f"the connection closed: {closed}") from closed


async def answers_ping(ws: websockets.ClientConnection, within: float = 1.0) -> None:
    """The server answers a ping of ours, however busy the kernel is."""
    try:
        await asyncio.wait_for(await ws.ping(), within)
    except asyncio.TimeoutError:
        closing = ws.protocol.close_sent  # the client's own keepalive gave up, say
        why = f"the client is closing: {closing}" if closing else "the server is deaf"
        raise AssertionError(f"no pong within {within} s; {why}") from None
    except ConnectionClosed as closed:
        raise AssertionError(f"the connection closed: {closed}") from closed


async def nothing_more(ws: websockets.ClientConnection) -> None:
    """No further message arrives (none was answered twice)."""
    with pytest.raises(asyncio.TimeoutError):
        extra = await asyncio.wait_for(ws.recv(), 0.5)
        raise AssertionError(f"unexpected message {extra!r}")


async def close_code(ws: websockets.ClientConnection, within: float) -> int:
    """Wait for the connection to close; the code the server sent (1006: none)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), within)
    except asyncio.TimeoutError:
        raise AssertionError(f"still open after {within} s") from None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else 1006


async def ws_threads(kernel: Kernel, settle: float = 0) -> list[str]:
    """The kernel's threads named ws_notebook..., after waiting up to ``settle`` s for none."""
    code = textwrap.dedent(f"""\
        deadline = time.monotonic() + {settle}
        while True:
            names = [t.name for t in threading.enumerate() if t.name.startswith("ws_notebook")]
            if not names or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        print(names, end="")
        """)
    return ast.literal_eval(await run(kernel, code))


class Block:
    """A cell that blocks the kernel's main thread, sent without waiting for it.

    Entering waits until the cell runs (it prints ``MARK`` first). Leaving interrupts a cell
    still running (a failed test), so the kernel is free for the next one.
    """

    def __init__(self, kernel: Kernel, code: str) -> None:
        self.kernel = kernel
        self.code = f"import time\nprint({MARK!r}, flush=True)\n{code}"
        self._stop = threading.Event()
        self._reply: asyncio.Task[dict | None] | None = None

    async def __aenter__(self) -> Block:
        self.msg_id = self.kernel.client.execute(self.code)
        await off_loop(self._wait_started)
        self.started = time.monotonic()
        self._reply = asyncio.create_task(off_loop(self._wait_reply))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reply is not None
        if not self._reply.done() and self.kernel.manager.is_alive():
            self.kernel.manager.interrupt_kernel()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reply), WAIT)
        self._stop.set()
        await self._reply

    def elapsed(self) -> float:
        """Seconds since the cell started blocking (it ends ``BLOCK`` s after, for a short one)."""
        return time.monotonic() - self.started

    async def finished(self, timeout: float = WAIT) -> dict:
        """The cell's execute_reply content, once it ends."""
        assert self._reply is not None
        content = await asyncio.wait_for(asyncio.shield(self._reply), timeout)
        assert content is not None
        return content

    def _wait_started(self) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                message = self.kernel.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if (
                message["parent_header"].get("msg_id") == self.msg_id
                and message["msg_type"] == "stream"
                and MARK in message["content"]["text"]
            ):
                return
        raise AssertionError("the blocking cell did not start")

    def _wait_reply(self) -> dict | None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                message = self.kernel.client.get_shell_msg(timeout=0.2)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") == self.msg_id:
                return message["content"]
        return None


@pytest.mark.parametrize("block", [SLEEP, BUSY_LOOP], ids=["sleep", "busy-loop"])
async def test_a_client_stays_connected_and_is_answered_in_order_after_the_block(
    notebook: Kernel, block: str
) -> None:
    url = await define_echo(notebook, "echo")
    async with client(url) as ws:
        await recv(ws)  # welcome
        async with Block(notebook, block) as cell:
            for number in range(3):
                await ws.send(f"m{number}")
                await asyncio.sleep(0.2)
            await answers_ping(ws)
            await asyncio.sleep(3 * KEEPALIVE)
            await answers_ping(ws)
            assert cell.elapsed() < BLOCK - 0.5, "the client's work ended after the block"
            reply = await cell.finished()
        assert reply["status"] == "ok"
        assert [await recv(ws) for _ in range(3)] == ["1:m0", "2:m1", "3:m2"]
        await nothing_more(ws)
    assert await value(notebook, "handled") == repr([("echo", "MainThread")] * 3)


async def test_a_client_connecting_during_the_block_completes_its_handshake(
    notebook: Kernel,
) -> None:
    url = await define_echo(notebook, "echo")
    async with Block(notebook, SLEEP) as cell, client(url, open_timeout=2) as ws:
        assert cell.elapsed() < BLOCK - 1, "the handshake completed only after the block"
        await ws.send("hi")
        await answers_ping(ws)
        await cell.finished()
        assert (await recv(ws)).startswith("welcome ")
        assert await recv(ws) == "1:hi"
        await nothing_more(ws)


async def test_a_handshake_answered_during_the_block_for_an_endpoint_gone_after_it_is_closed(
    notebook: Kernel,
) -> None:
    """The keeper said 101; the cell then unmounts the endpoint, so the server refuses (404):
    the client, already open, gets a close frame saying so instead of an HTTP answer."""
    url = await define_echo(notebook, "echo")
    block = f"{SLEEP}\nws_notebook.unmount('echo')"
    async with Block(notebook, block) as cell, client(url, ping_interval=None) as ws:
        assert cell.elapsed() < BLOCK - 1, "the handshake completed only after the block"
        await cell.finished()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "refused" in closed.value.rcvd.reason and "404" in closed.value.rcvd.reason


async def test_a_client_that_fills_the_socket_buffers_during_the_block_stays_connected(
    notebook: Kernel,
) -> None:
    """Megabytes sent during the block fill the kernel's socket buffer and then the client's:
    its keepalive pings queue behind that data, so the keeper must take the data in (bounded)
    to see them. Everything is answered afterwards, in order, once."""
    url = await define_echo(notebook, "echo")
    chunk, count = "x" * 65536, 96  # 6 MiB: more than the socket buffers hold unread
    async with client(url, max_size=None, write_limit=2**20) as ws:
        await recv(ws)  # welcome
        async with Block(notebook, SLEEP) as cell:
            for number in range(count):
                await asyncio.wait_for(ws.send(f"{number}:{chunk}"), WAIT)
            await answers_ping(ws, within=2 * KEEPALIVE)
            assert cell.elapsed() < BLOCK - 0.5, "the client's work ended after the block"
            await cell.finished()
        for number in range(count):
            assert await recv(ws) == f"{number + 1}:{number}:{chunk}"
        await nothing_more(ws)


@pytest.mark.parametrize("transport", ["sockjs websocket", "raw websocket"])
async def test_a_stomp_front_end_with_heart_beats_stays_connected_through_the_block(
    notebook: Kernel, transport: str
) -> None:
    """codbex front ends (@stomp/stompjs, in Node) give up on a server silent for two
    heart-beat periods (1 s here): the keeper sends the STOMP heart-beats meanwhile, and what
    the client sent during the block is answered after it."""
    modules = node_modules()
    await run(notebook, "%websocket start --ping-interval 1 --ping-timeout 1")
    url = await define_echo(notebook, "echo")
    base = url.split("/websockets/")[0]
    where = (
        dict(url=f"{base}/stomp/websocket", raw=True)
        if transport == "raw websocket"
        else dict(url=base.replace("ws://", "http://") + "/stomp", transports=["websocket"])
    )
    front_end = asyncio.create_task(
        run_client(
            modules, **where, heartbeat=1000, delay=2500, texts=["during"], replies=2, timeout=25000
        )
    )
    await asyncio.sleep(1.5)  # connected, and heart-beats going both ways
    async with Block(notebook, SLEEP) as cell:
        await cell.finished()
    events = await asyncio.wait_for(front_end, WAIT + 10)
    kinds = [event["event"] for event in events]
    assert kinds[0] == "connected" and "reply" in kinds, events
    assert kinds.index("reply") < kinds.index("closed") if "closed" in kinds else True, events
    texts = [json.loads(event["body"])["text"] for event in events if event["event"] == "reply"]
    assert texts[0].startswith("welcome ") and texts[1] == "1:during", events


async def _frames_until(reader: asyncio.StreamReader, text: bytes) -> list[tuple[int, bytes]]:
    """Server frames (opcode, payload) read until a text frame whose payload starts so."""
    frames: list[tuple[int, bytes]] = []
    while not frames or not (frames[-1][0] == 0x1 and frames[-1][1].startswith(text)):
        first, length = await asyncio.wait_for(reader.readexactly(2), WAIT)
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        frames.append((first & 0x0F, await reader.readexactly(length)))
    return frames


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body
    return bytes((0x80 | opcode, 0x80 | 126)) + len(payload).to_bytes(2, "big") + mask + body


async def _raw_client(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client by hand, to send frames byte by byte; after the welcome."""
    host, port, path = re.fullmatch(r"ws://([^:/]+):(\d+)(/.*)", url).groups()
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(b"0123456789abcdef").decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b" 101 " in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    await _frames_until(reader, b"welcome ")
    return reader, writer


async def test_a_ping_answered_during_the_block_is_not_answered_again_after_it(
    notebook: Kernel,
) -> None:
    """One pong per ping: the server, reading the ping after the block, knows the keeper
    answered it. Raw frames, to count the pongs."""
    reader, writer = await _raw_client(await define_echo(notebook, "echo"))
    try:
        async with Block(notebook, SLEEP) as cell:
            writer.write(_masked(0x9, b"during"))
            first = await asyncio.wait_for(reader.readexactly(8), 3)
            assert first == bytes((0x8A, 6)) + b"during", first  # the keeper's pong, in time
            await cell.finished()
        writer.write(_masked(0x9, b"after") + _masked(0x1, b"hi"))
        frames = await _frames_until(reader, b"1:hi")
        assert frames == [(0xA, b"after"), (0x1, b"1:hi")], frames
    finally:
        writer.close()


async def test_a_client_caught_between_a_frames_first_bytes_and_its_length_is_kept(
    notebook: Kernel,
) -> None:
    """The loop read a frame's first two bytes and waits for its extended length when the cell
    blocks: the keeper still finds where frames start (the protocol kept those two bytes) and
    answers a ping sent behind that frame."""
    reader, writer = await _raw_client(await define_echo(notebook, "echo"))
    try:
        message = _masked(0x1, b"x" * 200)
        writer.write(message[:2])  # 126: a 16-bit length follows
        await writer.drain()
        await asyncio.sleep(0.5)  # the idle loop reads those two bytes
        async with Block(notebook, SLEEP) as cell:
            writer.write(message[2:] + _masked(0x9, b"during"))
            pong = await asyncio.wait_for(reader.readexactly(8), 3)
            assert pong == bytes((0x8A, 6)) + b"during", pong  # the keeper's, in time
            assert cell.elapsed() < BLOCK
            await cell.finished()
        frames = await _frames_until(reader, b"1:")
        assert frames == [(0x1, b"1:" + b"x" * 200)], frames  # the ping is not answered twice
    finally:
        writer.close()


async def test_server_pings_do_not_drop_a_quiet_client_after_the_block(notebook: Kernel) -> None:
    await run(notebook, "%websocket start --ping-interval 1 --ping-timeout 1")
    url = await define_echo(notebook, "echo")
    async with client(url, ping_interval=None) as ws:  # answers the server's pings, sends none
        await recv(ws)
        async with Block(notebook, SLEEP) as cell:
            await cell.finished()
        await asyncio.sleep(2.5)  # the server's pings go on after the block
        await ws.send("after")
        assert await recv(ws) == "1:after"


async def test_the_event_log_says_messages_waited_for_the_kernel(notebook: Kernel) -> None:
    url = await define_echo(notebook, "echo")
    # No client keepalive: this test is about the log, not about staying connected.
    async with client(url, ping_interval=None) as ws:
        client_id = (await recv(ws)).split()[1]
        async with Block(notebook, SLEEP) as cell:
            for number in range(3):
                await ws.send(f"m{number}")
            await cell.finished()
        assert [await recv(ws) for _ in range(3)] == ["1:m0", "2:m1", "3:m2"]
    code = textwrap.dedent("""\
        deadline = time.monotonic() + 5
        while True:
            rows = [e.as_dict() for e in ws_notebook.endpoint("echo").log.since() if e.kind == "wait"]
            if rows or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        print(json.dumps(rows), end="")
        """)
    rows = json.loads(await run(notebook, code))
    assert rows, "no event of kind 'wait' in the log"
    assert [row["client"] for row in rows] == [client_id] * len(rows)
    assert "waited" in rows[0]["detail"] and "for the kernel" in rows[0]["detail"], rows


async def test_a_message_over_the_limit_sent_during_the_block_closes_only_its_client(
    notebook: Kernel,
) -> None:
    await run(notebook, "%websocket start --max-message-size 1000")
    url = await define_echo(notebook, "echo")
    async with client(url, ping_interval=None) as big, client(url, ping_interval=None) as small:
        big_id = (await recv(big)).split()[1]
        await recv(small)
        async with Block(notebook, SLEEP) as cell:
            await big.send("x" * 5000)
            await small.send("fits")
            await cell.finished()
        assert await close_code(big, within=WAIT) == 1009
        assert await recv(small) == "1:fits"
    log = await run(
        notebook,
        'print([(e.kind, e.detail) for e in ws_notebook.endpoint("echo").log.since()'
        f' if e.client == "{big_id}"], end="")',
    )
    assert "('close', '1009 message too big (closed by the server)')" in log, log


def _widget_texts(kernel: Kernel, seconds: float) -> list[str]:
    """The HTML values widgets were given on IOPub during the next ``seconds``."""
    texts: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = kernel.client.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            continue
        if message["msg_type"] == "comm_msg":
            value = message["content"]["data"].get("state", {}).get("value")
            if isinstance(value, str):
                texts.append(value)
    return texts


async def test_the_panel_says_what_waits_while_the_cell_blocks(notebook: Kernel) -> None:
    url = await define_echo(notebook, "echo")
    await run(notebook, "%websocket monitor echo")
    async with client(url, ping_interval=None) as ws:
        await recv(ws)
        async with Block(notebook, SLEEP) as cell:
            await ws.send("m0")
            await ws.send("m1")
            during = await off_loop(_widget_texts, notebook, 2.5)
            await cell.finished()
        assert [await recv(ws) for _ in range(2)] == ["1:m0", "2:m1"]
    waiting = [text for text in during if "waiting for the kernel" in text]
    assert waiting, f"no waiting state shown during the block: {during}"
    assert "2 messages from 1 client" in waiting[-1], waiting[-1]
    counters = await run(
        notebook,
        "import ws_notebook.widgets\n"
        "print([p.counters.value for p in ws_notebook.widgets.panels()], end='')",
    )
    assert "last waited for the kernel: 2 messages" in counters, counters


async def test_the_panel_and_list_show_where_handlers_run(notebook: Kernel) -> None:
    await run(notebook, "%%websocket feed --thread\ndef on_message(m, c):\n    return m\n")
    await define_echo(notebook, "echo")
    shown = await run(
        notebook,
        "import ws_notebook.widgets\n"
        "print([p.header.value for p in ws_notebook.widgets.panels()], end='')",
    )
    assert "handlers on their own thread" in shown, shown
    table = await run(notebook, "print(repr(get_ipython().run_line_magic('websocket', 'list')))")
    rows = {
        line.split()[0]: line for line in table.splitlines() if line.startswith(("feed", "echo"))
    }
    assert "own thread" in rows["feed"] and "kernel" in rows["echo"], table


async def test_a_thread_endpoint_answers_during_the_block(notebook: Kernel) -> None:
    threaded = await define_echo(notebook, "status", "--thread")
    normal = await define_echo(notebook, "echo")
    async with client(threaded) as fast, client(normal) as slow:
        await recv(fast)
        await recv(slow)
        async with Block(notebook, SLEEP) as cell:
            await fast.send("now")
            await slow.send("later")
            assert await recv(fast, timeout=2) == "1:now"
            assert cell.elapsed() < BLOCK - 1.5, "the --thread endpoint answered after the block"
            late = asyncio.create_task(recv(slow))
            await asyncio.sleep(1)
            assert not late.done(), "a normal endpoint answered while the cell blocked"
            await cell.finished()
            assert await late == "1:later"
    handled = ast.literal_eval(await value(notebook, "handled"))
    assert [thread for endpoint, thread in handled if endpoint == "echo"] == ["MainThread"]
    status = [thread for endpoint, thread in handled if endpoint == "status"]
    assert len(status) == 1 and status[0] != "MainThread"


async def test_interrupting_the_cell_keeps_clients_and_answers_their_messages(
    notebook: Kernel,
) -> None:
    url = await define_echo(notebook, "echo")
    async with client(url) as ws:
        await recv(ws)
        async with Block(notebook, "time.sleep(30)") as cell:
            for number in range(3):
                await ws.send(f"m{number}")
                await asyncio.sleep(0.3)
            await answers_ping(ws)
            notebook.manager.interrupt_kernel()
            reply = await cell.finished()
        assert (reply["status"], reply.get("ename")) == ("error", "KeyboardInterrupt")
        assert [await recv(ws) for _ in range(3)] == ["1:m0", "2:m1", "3:m2"]
        await ws.send("after")
        assert await recv(ws) == "4:after"
        await answers_ping(ws)
    assert await value(notebook, "handled") == repr([("echo", "MainThread")] * 4)


async def test_shutdown_during_the_block_closes_clients_with_1001_and_the_kernel_exits() -> None:
    own = await off_loop(start_kernel)
    try:
        await run(own, "%load_ext ws_notebook\nimport threading, time, ws_notebook\nhandled = []")
        url = await define_echo(own, "echo")
        process = own.manager.provisioner.process
        # No client keepalive: this test is about the close the server sends on shutdown.
        async with client(url, ping_interval=None) as ws:
            await recv(ws)
            async with Block(own, "time.sleep(30)"):
                await ws.send("held")
                began = time.monotonic()
                shutdown = asyncio.create_task(off_loop(own.manager.shutdown_kernel, now=False))
                code = await close_code(ws, within=10)
                closed_after = time.monotonic() - began
                await asyncio.wait_for(shutdown, 30)
        assert code == 1001, f"closed with {code}, not 1001 (going away)"
        assert closed_after < 10
        assert not own.manager.is_alive()
        assert process.poll() is not None
        assert process.returncode != -signal.SIGKILL, "the kernel hung until it was killed"
    finally:
        own.client.stop_channels()
        if own.manager.has_kernel:
            await off_loop(own.manager.shutdown_kernel, now=True)


async def test_no_ws_notebook_thread_is_left_after_stop_or_unload(notebook: Kernel) -> None:
    url = await define_echo(notebook, "echo")
    async with client(url) as ws:
        await recv(ws)
        assert await ws_threads(notebook), "no ws_notebook thread while serving"
        await run(notebook, "ws_notebook.stop()")
        assert await close_code(ws, within=WAIT) == 1001
    assert await ws_threads(notebook, settle=2) == []
    await run(notebook, "%websocket start")
    assert await ws_threads(notebook), "no ws_notebook thread while serving"
    try:
        await run(notebook, "%unload_ext ws_notebook")
        assert await ws_threads(notebook, settle=2) == []
    finally:
        await run(notebook, "%load_ext ws_notebook")
