"""Scaling out on Redis (issue 16): ``serve --broker``, ``serve --workers N``.

A real ``redis-server`` per test module (its own port and temp dir, no persistence, stopped by
PID) and real ``ws-notebook serve`` processes; clients are real ``websockets`` connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

pytest.importorskip("redis", reason="redis-py is not installed (pip install 'ws_notebook[scale]')")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = [
    pytest.mark.slow,  # Redis, and worker processes
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis-server)"
    ),
]

WAIT = 10.0

RELAY = """\
import ws_notebook

def on_open(client):
    client.send(f"id {client.id}")

def on_message(message, client):
    command, _, rest = message.partition(" ")
    if command == "all":
        ws_notebook.broadcast(client.endpoint, rest)
    elif command == "to":
        target, _, text = rest.partition(" ")
        found = ws_notebook.client(target)
        client.send("sent" if found is not None else "unknown")
        if found is not None:
            found.send(text)
    elif command == "count":
        client.send(f"count {len(ws_notebook.clients(client.endpoint))}")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Redis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(WAIT)
        self.process = None


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "relay.py").write_text(RELAY, "utf-8")
    descriptor = {"endpoint": "relay", "handler": "relay.py"}
    (folder / "relay.websocket").write_text(json.dumps(descriptor), "utf-8")
    return folder


class Serve:
    """A ``ws-notebook serve`` process; stderr goes to a file, read as it grows."""

    def __init__(
        self,
        folder: Path,
        port: int,
        *options: str,
        name: str = "serve",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.log = folder.parent / f"{name}-{port}.log"
        self.command = [sys.executable, "-m", "ws_notebook", "serve", str(folder), "--no-watch",
                        "--port", str(port), *options]  # fmt: skip
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=None if env is None else {**os.environ, **env},
            )
        self.wait_for(lambda: _get(self.port) is not None, "listening")

    def text(self) -> str:
        return self.log.read_text("utf-8", errors="replace")

    def wait_for(self, condition, what: str, seconds: float = WAIT) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited ({self.process.returncode}):\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"not {what} after {seconds} s:\n{self.text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _get(port: int) -> list[dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/websockets", timeout=1) as answer:
            return json.load(answer)
    except OSError:
        return None


def _relay(port: int) -> dict:
    return next(entry for entry in _get(port) or [] if entry["endpoint"] == "relay")


@pytest.fixture
def pair(redis: Redis, project: Path) -> Iterator[tuple[Serve, Serve]]:
    first = Serve(project, free_port(), "--broker", redis.url, name="a")
    try:
        second = Serve(project, free_port(), "--broker", redis.url, name="b")
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


async def connect(port: int) -> tuple[websockets.ClientConnection, str]:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/websockets/service/relay")
    greeting = await asyncio.wait_for(ws.recv(), WAIT)
    assert greeting.startswith("id ")
    return ws, greeting[3:]


async def until(condition, what: str, *servers: Serve, seconds: float = WAIT) -> None:
    """Waits for ``condition``; failing, shows what the ``servers`` list and logged."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            shown = [f"{s.port}: {_get(s.port)}\n{s.text()[-3000:]}" for s in servers]
            raise AssertionError("\n".join([f"not {what} after {seconds} s", *shown]))
        await asyncio.sleep(0.1)


async def nothing_more(ws: websockets.ClientConnection, seconds: float = 0.5) -> None:
    with pytest.raises(asyncio.TimeoutError):
        extra = await asyncio.wait_for(ws.recv(), seconds)
        print("unexpected:", extra)


async def test_broadcast_send_to_id_and_counts_span_workers(pair: tuple[Serve, Serve]) -> None:
    a, b = pair
    ws_a, id_a = await connect(a.port)
    ws_b, id_b = await connect(b.port)
    assert id_a != id_b  # ids are unique across workers
    await until(
        lambda: _relay(a.port)["clients"] == 2 and _relay(b.port)["clients"] == 2, "2", a, b
    )
    for port in (a.port, b.port):
        entry = _relay(port)
        assert entry["local_clients"] == 1
    assert _relay(a.port)["worker"] != _relay(b.port)["worker"]

    # A broadcast made via worker B reaches the client on A, once, and B's own client once.
    for n in range(5):
        await ws_b.send(f"all m{n}")
    for ws in (ws_a, ws_b):
        assert [await asyncio.wait_for(ws.recv(), WAIT) for _ in range(5)] == [
            f"m{n}" for n in range(5)
        ]  # in order
        await nothing_more(ws)

    # Sending to a client id of another worker.
    await ws_a.send(f"to {id_b} psst")
    assert await asyncio.wait_for(ws_a.recv(), WAIT) == "sent"
    assert await asyncio.wait_for(ws_b.recv(), WAIT) == "psst"
    await ws_b.send("count")
    assert await asyncio.wait_for(ws_b.recv(), WAIT) == "count 2"
    await ws_a.close()
    await until(lambda: _relay(b.port)["clients"] == 1, "1 after a close", a, b)
    await ws_b.close()


async def test_a_dead_workers_clients_expire(pair: tuple[Serve, Serve]) -> None:
    a, b = pair
    ws_a, _ = await connect(a.port)
    clients_b = [await connect(b.port) for _ in range(3)]
    await until(lambda: _relay(a.port)["clients"] == 4, "4 clients", a, b)
    b.process.send_signal(signal.SIGKILL)
    b.process.wait()
    started = time.monotonic()
    await until(lambda: _relay(a.port)["clients"] == 1, "B's clients expired", a, seconds=12)
    assert time.monotonic() - started < 8
    await ws_a.close()
    for ws, _ in clients_b:
        ws.transport.abort()


async def test_broker_outage_is_logged_and_delivery_resumes(
    pair: tuple[Serve, Serve], redis: Redis
) -> None:
    a, b = pair
    ws_a, _ = await connect(a.port)
    ws_b, id_b = await connect(b.port)
    await until(lambda: _relay(a.port)["clients"] == 2, "2 clients", a, b)
    redis.stop()
    try:
        await asyncio.to_thread(
            a.wait_for, lambda: "unreachable" in a.text(), "an outage logged on A"
        )
        for n in range(3):  # local delivery goes on
            await ws_a.send(f"all lost{n}")
            assert await asyncio.wait_for(ws_a.recv(), WAIT) == f"lost{n}"
        for n in range(2):  # sends to B's client (known from before the outage) are lost too
            await ws_a.send(f"to {id_b} lost-send{n}")
            assert await asyncio.wait_for(ws_a.recv(), WAIT) == "sent"
    finally:
        redis.start()
    await asyncio.to_thread(
        a.wait_for, lambda: "reachable again" in a.text(), "the end of the outage logged on A"
    )
    await asyncio.sleep(0.3)  # the event printer's next flush
    errors = [line for line in a.text().splitlines() if " relay - error " in line]
    assert any("unreachable" in line for line in errors), a.text()
    ended = r"ended: 3 messages broadcast here during it and 2 messages sent to clients of other "
    assert any(re.search(ended, line) for line in errors), a.text()
    # Cross-worker delivery resumes (B resubscribes within its retry delay).
    got: list[str] = []
    deadline = time.monotonic() + WAIT
    while "back" not in got:
        assert time.monotonic() < deadline, f"B got {got}"
        await ws_a.send("all back")
        assert await asyncio.wait_for(ws_a.recv(), WAIT) == "back"
        with contextlib.suppress(asyncio.TimeoutError):
            got.append(await asyncio.wait_for(ws_b.recv(), 0.5))
    assert not any(m.startswith("lost") for m in got)  # not replayed
    await until(lambda: _relay(a.port)["clients"] == 2, "the registry rewritten", a, b)
    # Sends to B's client get through again (any made before B resubscribed are logged lost).
    got.clear()
    deadline = time.monotonic() + WAIT
    while "again" not in got:
        assert time.monotonic() < deadline, f"B got {got}"
        await ws_a.send(f"to {id_b} again")
        assert await asyncio.wait_for(ws_a.recv(), WAIT) == "sent"
        with contextlib.suppress(asyncio.TimeoutError):
            got.append(await asyncio.wait_for(ws_b.recv(), 0.5))
    assert not any(m.startswith("lost") for m in got), got
    await ws_a.close()
    await ws_b.close()


@pytest.mark.parametrize("sharing", ["SO_REUSEPORT", "one socket bound by the supervisor"])
async def test_workers_share_a_port_restart_and_stop(
    redis: Redis, project: Path, sharing: str
) -> None:
    port = free_port()
    shared = {"WS_NOTEBOOK_SHARED_SOCKET": "1" if sharing != "SO_REUSEPORT" else "0"}
    served = Serve(project, port, "--workers", "2", "--broker", redis.url, name="w", env=shared)
    try:
        await asyncio.to_thread(
            served.wait_for, lambda: served.text().count("serving 1 endpoint") == 2, "2 workers"
        )
        assert f"2 workers serving on 127.0.0.1:{port} ({sharing})" in served.text()
        conns = [await connect(port) for _ in range(16)]
        workers = {ident.rpartition(".")[2] for _, ident in conns}
        while len(workers) < 2 and len(conns) < 64:  # an inherited socket: whoever accepts first
            conns.append(await connect(port))
            workers.add(conns[-1][1].rpartition(".")[2])
        assert len(workers) == 2, workers  # both workers serve the port
        await until(
            lambda: _relay(port)["clients"] == len(conns), "every client, from any worker", served
        )
        await conns[0][0].send("all hello")
        for ws, _ in conns:
            assert await asyncio.wait_for(ws.recv(), WAIT) == "hello"
        # A worker killed is restarted (and logged).
        pids = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(served.process.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        await asyncio.to_thread(
            served.wait_for, lambda: "restarting it" in served.text(), "a restart logged"
        )
        assert "killed by SIGKILL" in served.text()
        survivors = []
        for ws, _ident in conns:
            try:
                await ws.send("count")
                survivors.append(ws)
            except websockets.ConnectionClosed:
                pass
        served.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(served.process.wait, WAIT) == 0
        codes = set()
        for ws in survivors:
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), WAIT)
            codes.add(ws.close_code)
        assert codes == {1001}, codes
    finally:
        served.stop()


def test_workers_without_a_broker_is_an_error(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WS_NOTEBOOK_BROKER"}
    done = subprocess.run(
        [sys.executable, "-m", "ws_notebook", "serve", str(project), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 2
    assert "needs a broker" in done.stderr


# --- a notebook kernel joined to a deployment ------------------------------------------------

JS_RELAY = """\
%%websocket relay --js --no-panel
import { websockets } from "sdk/net";

export function onMessage(message, from) {
    const [command, id, text] = message.split(" ");
    if (command === "list") return websockets.getClients().map((c) => c.getId()).sort().join(" ");
    const target = websockets.getClient(id);
    if (target === null) return "unknown " + id;
    if (command === "to") target.send(text);
    if (command === "close") target.close();
    return "done";
}
"""


def _named(redis: Redis, short: str) -> list[dict]:
    """Redis's connections made by the broker member ``short``."""
    import redis as redis_py

    with redis_py.Redis.from_url(redis.url) as client:
        return [c for c in client.client_list() if c.get("name") == f"ws-notebook:{short}"]


def _registry_keys(redis: Redis) -> list[str]:
    import redis as redis_py

    with redis_py.Redis.from_url(redis.url) as client:
        return sorted(key.decode() for key in client.keys("wsn:clients:*"))


@pytest.mark.timeout(180)
async def test_a_notebook_joins_a_deployment_and_leaves_it(
    kernel, redis: Redis, project: Path
) -> None:
    """``start(broker=...)`` in a kernel: it broadcasts and sends to a deployed ``serve``'s
    clients, lists them (``%websocket clients``, JS ``getClients()``), and ``stop()`` and
    ``reset()`` leave the bus: tasks ended, connections closed, its clients out of Redis."""
    b = Serve(project, free_port(), "--broker", redis.url, name="deployed")
    try:
        ws_b, id_b = await connect(b.port)
        kernel.run(
            "import asyncio\nws_notebook.reset()\n"
            f"ws_notebook.start('127.0.0.1', 0, broker={redis.url!r})"
        )
        wait = "import time\ndeadline = time.monotonic() + 10\n"
        # Only B's client (entries of workers killed by earlier tests expire within 5 s).
        seen = kernel.run(
            wait + f"while [c.id for c in ws_notebook.clients('relay')] != [{id_b!r}] "
            "and time.monotonic() < deadline:\n"
            "    await asyncio.sleep(0.1)\n"
            "print(repr(ws_notebook.clients('relay')))",
        ).stdout
        assert id_b in seen and "RemoteClient" in seen and seen.count("RemoteClient") == 1, seen
        # A broadcast from the notebook, which does not serve `relay` itself.
        assert kernel.value("ws_notebook.broadcast('relay', 'from the notebook')") == "1"
        assert await asyncio.wait_for(ws_b.recv(), WAIT) == "from the notebook"

        # The kernel serves `relay` too, in JavaScript: its getClients() holds B's client.
        kernel.run(JS_RELAY)
        ws_k = await websockets.connect(kernel.value("ws_notebook.url('relay')"))
        await ws_k.send("list")
        listed = (await asyncio.wait_for(ws_k.recv(), WAIT)).split()
        assert id_b in listed and len(listed) == 2, listed
        await ws_k.send(f"to {id_b} hello-from-js")
        assert await asyncio.wait_for(ws_k.recv(), WAIT) == "done"
        assert await asyncio.wait_for(ws_b.recv(), WAIT) == "hello-from-js"
        await until(lambda: _relay(b.port)["clients"] == 2, "B counting the kernel's client", b)

        table = kernel.run("%websocket clients relay").text
        row = next(line for line in table.splitlines() if id_b in line)
        assert "on worker" in row and "remote" in row, table
        assert all(ident in table for ident in listed), table  # the kernel's own client too

        await ws_k.send(f"close {id_b}")
        assert await asyncio.wait_for(ws_k.recv(), WAIT) == "done"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws_b.recv(), WAIT)
        assert ws_b.close_code == 1000

        # stop(): the kernel leaves the bus; reset() after joining again does too.
        for leave in ("ws_notebook.stop()", "ws_notebook.reset()"):
            short = kernel.value("ws_notebook.default_server().registry.bus.short")
            assert _named(redis, short), "the kernel's Redis connections, while joined"
            assert f"wsn:clients:{short}" in _registry_keys(redis)
            kernel.run(
                f"{leave}\n{wait}"
                "def broker_tasks():\n"
                "    return [t.get_name() for t in asyncio.all_tasks() if 'broker' in t.get_name()]\n"
                "while broker_tasks() and time.monotonic() < deadline:\n"
                "    await asyncio.sleep(0.05)"
            )
            assert kernel.value("broker_tasks()") == "[]"
            assert kernel.value("ws_notebook.default_server().registry.bus") == "None"
            subscribers = "[repr(s) for s in ws_notebook.default_server().registry._subscribers]"
            assert "Broker" not in kernel.value(subscribers)  # nothing left listening
            assert _named(redis, short) == []
            assert f"wsn:clients:{short}" not in _registry_keys(redis)  # at once, not expired
            await until(lambda: _relay(b.port)["clients"] == 0, "B no longer counting them", b)
            if leave.endswith("stop()"):
                kernel.run(f"ws_notebook.start(broker={redis.url!r})")
                kernel.run(JS_RELAY)
                ws_k = await websockets.connect(kernel.value("ws_notebook.url('relay')"))
                await until(lambda: _relay(b.port)["clients"] == 1, "B seeing the kernel again", b)
                assert kernel.value("ws_notebook.default_server().registry.bus.short") != short
    finally:
        kernel.run("ws_notebook.reset()", check=False)
        b.stop()


# --- one worker in this process: its entry in Redis's registry ------------------------------


def _hash(redis: Redis, short: str) -> set[str]:
    import redis as redis_py

    with redis_py.Redis.from_url(redis.url) as client:
        return {key.decode() for key in client.hkeys(f"wsn:clients:{short}")}


async def test_the_registry_entry_stays_true_through_churn_and_outages(redis: Redis) -> None:
    """Clients open and close without pause while the worker joins the bus and while Redis
    goes away and comes back: afterwards Redis lists exactly the clients open here. (The
    worker's list, written whole at start and after each outage, once raced the joins written
    meanwhile and lost one until the next outage.)"""
    from ws_notebook import Server
    from ws_notebook.broker import Broker

    from .endpoints import mount

    server = Server()
    server.start()
    mount(server, "churn", on_message=lambda message, client: None)
    bus = Broker(redis.url, server)
    bus.attach()
    kept: list[websockets.ClientConnection] = []
    stop = asyncio.Event()

    async def churn() -> None:
        for n in range(1, 2000):  # about 10 s at most
            if stop.is_set():
                return
            ws = await websockets.connect(server.url("churn"))
            if n % 10:
                await ws.close()
            else:
                kept.append(ws)
            await asyncio.sleep(0.005)

    churning = [asyncio.create_task(churn()) for _ in range(4)]
    try:
        await bus.start()
        for _ in range(2):  # two outages, each ending with the list written whole
            await asyncio.sleep(0.3)
            redis.stop()
            await until(lambda: not bus.up, "the outage noticed")
            redis.start()
            await until(lambda: bus.up, "Redis back")
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*churning)
        open_here = {client.id for client in server.registry.clients()}
        assert len(open_here) == len(kept) > 10
        await until(lambda: _hash(redis, bus.short) == open_here, "Redis listing the open clients")
    finally:
        stop.set()
        for ws in kept:
            await ws.close()
        await bus.aclose()
        server.stop()
