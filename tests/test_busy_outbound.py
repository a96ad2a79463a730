"""Outbound connections survive a cell that blocks the kernel (the ``ws_notebook outbound`` thread).

A cell that blocks the kernel's main thread (``time.sleep``) used to leave an outbound connection
deaf and mute: the server's pings went unanswered, our keepalive pings were not sent, so servers
dropped the kernel. Real kernel, real ``websockets`` servers on a thread of the test process,
on loopback; the blocking cell is sent without waiting for it (``Block``).
"""

from __future__ import annotations

import queue
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.sync.server import ServerConnection, serve

from .kernels import Kernel, start_kernel
from .test_outbound import until, value

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(120)]  # cells block

WAIT = 15.0  # seconds: the longest any single expected thing may take
BLOCK = 4  # seconds a blocking cell lasts: several keepalive periods
SILENCE = 1.5  # seconds without a frame after which the strict server drops a peer
MARK = "blocking now"
THREADS = "[t.name for t in threading.enumerate() if t.name == 'ws_notebook outbound']"

# The handlers record each event with the client's id and the thread they ran on.
CONNECT = """\
import threading, ws_notebook
seen = []
def on_open(client):
    seen.append(["open", client.id, threading.current_thread().name])
def on_message(message, client):
    seen.append([message, client.id, threading.current_thread().name])
def on_close(client):
    seen.append(["close", client.close_code])
feed = ws_notebook.connect({uri!r}, {{"on_open": on_open, "on_message": on_message,
                           "on_close": on_close}}, name="feed", {options})
await feed.wait_open()
"""


class Peer(ServerConnection):
    """A server connection that notes when each frame came in (pings included)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.frames: list[tuple[float, Opcode]] = []
        self.opened = time.monotonic()
        super().__init__(*args, **kwargs)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame):  # not the handshake's request
            self.frames.append((time.monotonic(), event.opcode))
        super().process_event(event)

    def silent_for(self) -> float:
        last = self.frames[-1][0] if self.frames else self.opened
        return time.monotonic() - last


class Feed:
    """A ``websockets`` server on a thread that keeps its connections, what they received and
    the close codes they ended with. ``strict``: it drops a peer silent for ``SILENCE`` s (no
    frame, not even a ping), as servers that expect heartbeats from their clients do."""

    def __init__(
        self,
        strict: bool = False,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
    ) -> None:
        self.strict = strict
        self.connections: list[Peer] = []
        self.received: list[str | bytes] = []
        self.close_codes: list[int | None] = []
        self.server = serve(
            self._handle,
            "127.0.0.1",
            0,
            create_connection=Peer,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=1,
        )
        self.uri = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/feed"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, Peer)
        self.connections.append(connection)
        try:
            while True:
                try:
                    self.received.append(connection.recv(timeout=0.1))
                except TimeoutError:
                    if self.strict and connection.silent_for() > SILENCE:
                        connection.close(4000, "no heartbeat")
        except ConnectionClosed:
            pass
        self.close_codes.append(connection.close_code)

    def send(self, message: str) -> None:
        self.connections[-1].send(message)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=WAIT)


@pytest.fixture
def feeds() -> Iterator[Callable[..., Feed]]:
    started: list[Feed] = []

    def start(**options: Any) -> Feed:
        started.append(Feed(**options))
        return started[-1]

    yield start
    for feed in started:
        feed.stop()


@pytest.fixture
def notebook(fresh: Kernel) -> Kernel:
    fresh.run("import threading, time")
    return fresh


def connect(kernel: Kernel, feed: Feed, **options: float) -> str:
    """Connect the kernel to ``feed``; the client's id."""
    given = ", ".join(f"{key}={value!r}" for key, value in options.items())
    kernel.run(CONNECT.format(uri=feed.uri, options=given))
    until(lambda: feed.connections, "the connection at the server")
    return str(value(kernel, "feed.client.id"))


class Block:
    """A cell that blocks the kernel's main thread, sent without waiting for it: entering waits
    until it runs; ``finished`` waits for its reply; leaving interrupts it if still running."""

    def __init__(self, kernel: Kernel, code: str) -> None:
        self.kernel = kernel
        self.code = f"import time\nprint({MARK!r}, flush=True)\n{code}"
        self.reply: dict | None = None

    def __enter__(self) -> Block:
        self.msg_id = self.kernel.client.execute(self.code)
        self.started = self._wait(self.kernel.client.get_iopub_msg, self._started)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.reply is None and self.kernel.manager.is_alive():
            self.kernel.manager.interrupt_kernel()
            self.finished()

    def finished(self) -> dict:
        if self.reply is None:
            self.reply = self._wait(self.kernel.client.get_shell_msg, lambda m: m["content"])
        return self.reply

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _started(self, message: dict) -> float | None:
        text = message["content"].get("text", "") if message["msg_type"] == "stream" else ""
        return time.monotonic() if MARK in text else None

    def _wait(self, get: Callable[..., dict], check: Callable[[dict], Any]) -> Any:
        deadline = time.monotonic() + BLOCK + WAIT
        while time.monotonic() < deadline:
            try:
                message = get(timeout=0.2)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") == self.msg_id:
                found = check(message)
                if found is not None:
                    return found
        raise AssertionError(f"the blocking cell did not get that far: {self.code!r}")


def kinds(kernel: Kernel) -> list[str]:
    return [event["kind"] for event in value(kernel, "ws_notebook.events('feed')")]


def test_the_servers_pings_are_answered_and_messages_wait_in_order(
    notebook: Kernel, feeds: Callable[..., Feed]
) -> None:
    feed = feeds(ping_interval=0.5, ping_timeout=1)  # drops a peer whose pong is 1 s late
    client_id = connect(notebook, feed)
    with Block(notebook, f"time.sleep({BLOCK})") as cell:
        for number in range(5):
            time.sleep(0.4)
            feed.send(f"m{number}")
        time.sleep(1.5)  # several of the server's pings, each needing a pong within 1 s
        assert cell.elapsed() < BLOCK - 0.3, "the server's part ended after the block"
        assert feed.close_codes == [], "the server dropped the kernel during the block"
        assert cell.finished()["status"] == "ok"
    until(lambda: len(value(notebook, "seen")) >= 6, "the messages handled after the block")
    seen = value(notebook, "seen")
    assert seen == [
        ["open", client_id, "MainThread"],
        *([f"m{number}", client_id, "MainThread"] for number in range(5)),
    ]
    assert value(notebook, "feed.state") == "open"
    assert value(notebook, "feed.client.id") == client_id
    events = value(notebook, "ws_notebook.events('feed')")
    assert [event["kind"] for event in events] == ["open", *["in"] * 5, "wait"]  # no close
    assert events[-1]["detail"].startswith("5 messages waited ")
    assert len(feed.connections) == 1 and feed.close_codes == []
    notebook.run("feed.send('after the block')")
    until(lambda: feed.received == ["after the block"], "a send after the block")


def test_our_keepalive_pings_go_on_during_the_block(
    notebook: Kernel, feeds: Callable[..., Feed]
) -> None:
    feed = feeds(strict=True, ping_interval=None)  # only our pings keep the connection
    client_id = connect(notebook, feed, ping_interval=0.5, ping_timeout=1)
    with Block(notebook, f"time.sleep({BLOCK})") as cell:
        time.sleep(BLOCK - 1)
        assert cell.elapsed() < BLOCK - 0.3, "the server's part ended after the block"
        assert feed.close_codes == [], "the server dropped the kernel, silent during the block"
        pings = [at for at, opcode in feed.connections[0].frames if opcode is Opcode.PING]
        assert len([at for at in pings if at > cell.started]) >= 3
        assert cell.finished()["status"] == "ok"
    time.sleep(1.5)  # a keepalive ping right after the block must get its pong in time
    assert value(notebook, "feed.state") == "open"
    assert value(notebook, "feed.client.id") == client_id
    assert value(notebook, "seen") == [["open", client_id, "MainThread"]]
    assert kinds(notebook) == ["open"]
    feed.send("still there?")
    until(lambda: len(value(notebook, "seen")) == 2, "a message after the block")
    assert feed.close_codes == []


def test_stop_right_after_a_block_closes_with_1001_and_leaves_no_thread(
    notebook: Kernel, feeds: Callable[..., Feed]
) -> None:
    feed = feeds()
    connect(notebook, feed, ping_interval=0.5, ping_timeout=1)
    assert value(notebook, THREADS) == ["ws_notebook outbound"]
    with Block(notebook, "time.sleep(2)\nws_notebook.stop()") as cell:
        for number in range(3):
            feed.send(f"m{number}")
        assert cell.finished()["status"] == "ok"
    until(lambda: feed.close_codes, "the close at the server")
    assert feed.close_codes == [1001]
    until(lambda: value(notebook, THREADS) == [], "the outbound thread gone")
    seen = value(notebook, "seen")
    handled = [item[0] for item in seen]
    assert handled == ["open", "m0", "m1", "m2", "close"]  # what came first is handled first
    assert seen[-1] == ["close", 1001]
    assert value(notebook, "feed.state") == "closed"

    connect(notebook, feed)  # connecting again starts the thread again
    assert value(notebook, THREADS) == ["ws_notebook outbound"]
    notebook.run("ws_notebook.reset()")
    until(lambda: len(feed.close_codes) == 2, "the close on reset")
    assert feed.close_codes == [1001, 1001]
    until(lambda: value(notebook, THREADS) == [], "the outbound thread gone after reset")


def test_past_the_bound_it_stops_reading_says_so_and_loses_nothing(
    notebook: Kernel, feeds: Callable[..., Feed]
) -> None:
    feed = feeds()
    notebook.run("import ws_notebook.outbound\nws_notebook.outbound.HELD_BYTES = 10_000")
    try:
        client_id = connect(notebook, feed)
        with Block(notebook, "time.sleep(3)") as cell:
            for number in range(40):
                feed.send(f"{number:04}" + "x" * 996)  # 40 kB: the socket buffers take them
            assert cell.finished()["status"] == "ok"
        until(lambda: len(value(notebook, "seen")) == 41, "every message, after the block")
    finally:
        notebook.run("ws_notebook.outbound.HELD_BYTES = 16 * 2**20")
    numbers = [item[0][:4] for item in value(notebook, "seen")[1:]]
    assert numbers == [f"{number:04}" for number in range(40)]
    events = value(notebook, "ws_notebook.events('feed')")
    stopped = [e["detail"] for e in events if e["kind"] == "wait" and "stopped" in e["detail"]]
    assert stopped and "stopped reading until it catches up" in stopped[0]
    assert not [e for e in events if e["kind"] in ("close", "error")]
    assert value(notebook, "feed.client.id") == client_id


# A cell that the interrupt sent before a shutdown request does not stop (as C code that does
# not check for signals): the kernel's loop stays blocked through the shutdown.
UNINTERRUPTIBLE = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(30)"


def test_kernel_shutdown_during_a_block_closes_with_1001(feeds: Callable[..., Feed]) -> None:
    feed = feeds()
    kernel = start_kernel()
    try:
        kernel.run("%load_ext ws_notebook\nimport json, threading")
        connect(kernel, feed)
        with Block(kernel, UNINTERRUPTIBLE):
            began = time.monotonic()
            shutdown = threading.Thread(
                target=kernel.manager.shutdown_kernel, kwargs={"now": False}, daemon=True
            )
            shutdown.start()
            until(lambda: feed.close_codes, "the close at the server", timeout=10)
            assert feed.close_codes == [1001], "not closed with 1001 (going away)"
            assert time.monotonic() - began < 5
            shutdown.join(timeout=30)
    finally:
        kernel.client.stop_channels()
        if kernel.manager.has_kernel:
            kernel.manager.shutdown_kernel(now=True)


def test_the_block_leaves_handlers_and_sends_as_they_were(
    notebook: Kernel, feeds: Callable[..., Feed]
) -> None:
    """A send from a cell before the block goes out at once, sends during the block go out in
    order: the I/O thread writes them, the cell need not end."""
    feed = feeds()
    connect(notebook, feed)
    code = textwrap.dedent("""\
        for number in range(3):
            feed.send(f"s{number}")
        time.sleep(3)
        """)
    with Block(notebook, code) as cell:
        until(lambda: len(feed.received) == 3, "the sends, during the block", timeout=2.5)
        assert cell.elapsed() < 3, "the sends went out after the block"
        assert feed.received == ["s0", "s1", "s2"]
        assert cell.finished()["status"] == "ok"
