"""Slow-loris: connections that trickle their request, or idle, are closed after the handshake
timeout; running out of file descriptors neither spins the accept loop nor floods the log."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from ws_notebook import Limits, Server

from .endpoints import mount

pytestmark = pytest.mark.slow  # trickles requests and waits out timeouts

ROOT = Path(__file__).resolve().parent.parent
TRICKLE = 0.2  # seconds between two bytes of a trickled request
# A WebSocket opening request: at one byte per TRICKLE, it takes half a minute to send.
REQUEST = (
    b"GET /websockets/service/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A server with a one-second handshake timeout and an echo endpoint."""
    started = Server(limits=Limits(handshake_timeout=1))
    mount(started, "echo", on_message=lambda message, client: client.send(message))
    started.start()
    yield started
    started.stop()


async def trickle(port: int, seconds: float) -> float | None:
    """Send ``REQUEST`` one byte per ``TRICKLE`` for at most ``seconds``: how long after
    connecting the server closed the connection, or None if it was still open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    try:
        for byte in REQUEST:
            if time.monotonic() - start > seconds:
                return None
            writer.write(bytes([byte]))
            try:
                if await asyncio.wait_for(reader.read(1024), TRICKLE) == b"":
                    return time.monotonic() - start
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                return time.monotonic() - start
        return None
    finally:
        writer.close()


async def echo(url: str) -> None:
    async with websockets.connect(url, open_timeout=10) as ws:
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 10) == "hello"


async def test_trickled_request_headers_are_cut_off(server: Server) -> None:
    closed_after = await asyncio.gather(*(trickle(server.port, seconds=5) for _ in range(4)))
    assert all(seconds is not None and 0.8 < seconds < 3 for seconds in closed_after), closed_after
    await echo(server.url("echo"))


async def test_idle_http_connection_is_closed_but_not_an_idle_websocket(server: Server) -> None:
    async with websockets.connect(server.url("echo")) as ws:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = await asyncio.wait_for(reader.readuntil(b"ok\n"), 5)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        answered = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # kept alive, then closed
        assert 0.8 < time.monotonic() - answered < 3
        writer.close()
        await asyncio.sleep(opened + 2 - time.monotonic())  # idle twice the timeout
        await ws.send("still open")
        assert await asyncio.wait_for(ws.recv(), 5) == "still open"


# A server allowed 64 file descriptors, logging to stderr; it exits by itself after a minute.
CHILD = """
import asyncio, logging, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
logging.getLogger("ws_notebook").addHandler(logging.StreamHandler(sys.stderr))
from ws_notebook import Limits, Server
from tests.endpoints import mount

async def main():
    server = Server(limits=Limits(handshake_timeout=2))
    mount(server, "echo", on_message=lambda message, client: client.send(message))
    server.start()
    print(server.port, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    """User and system time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(sys.platform != "linux", reason="needs RLIMIT_NOFILE and /proc")
async def test_out_of_file_descriptors_neither_spins_nor_floods_the_log(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as errors:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=errors
        )
    try:
        port = int(await asyncio.wait_for(child.stdout.readline(), 30))
        start = time.monotonic()
        # 100 connections, about 55 more than the server has descriptors for: the rest wait in
        # the listen backlog. Until the first ones time out (2 s), accept() fails.
        trickling = asyncio.gather(*(trickle(port, seconds=2.5) for _ in range(100)))
        await asyncio.sleep(0.3)
        cpu, wall = cpu_seconds(child.pid), time.monotonic()
        await asyncio.sleep(1.5)
        cpu_share = (cpu_seconds(child.pid) - cpu) / (time.monotonic() - wall)
        await trickling
        await echo(f"ws://127.0.0.1:{port}/websockets/service/echo")
        elapsed = time.monotonic() - start
    finally:
        child.kill()
        await child.wait()
    with stderr.open("rb") as errors:
        log = errors.read(100_000).decode(errors="replace")
    failures = re.findall(r"cannot accept connections: Too many open files \((\S+) times? in", log)
    assert 1 <= len(failures) <= elapsed + 1, log[:2000]
    assert log.count("Too many open files") == len(failures), log[:2000]
    assert "Traceback" not in log, log[:2000]
    assert cpu_share < 0.5, f"the server used {cpu_share:.0%} of a core while out of descriptors"
