"""The documented defaults, pinned: in the code, in the docs, and on the wire where cheap.

A default changed by mistake (the message size limit once went from 10 MiB to 10 GiB) went
unnoticed; now changing one means changing ``DEFAULTS`` here and the "Limits" table of
docs/how-to/secure.md, on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from ws_notebook import Limits, Server
from ws_notebook.cli import _limits, _parser

from .endpoints import mount
from .test_security import closed, raw_handshake, read_close

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024

DEFAULTS: dict[str, object] = {
    "max_message_size": 10 * MiB,
    "max_connections": 1000,
    "max_send_queue": 16 * MiB,
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    "compression": False,
    "slow_handler": 10.0,
    "handshake_timeout": 10.0,
}
UNITS = {"MiB": MiB, "KiB": 1024, "s": 1, "": 1}


def readme_defaults() -> dict[str, object]:
    """``{Limits field: default}`` as the docs' "Limits" section (docs/how-to/secure.md) states them.

    One table row per option (``| `--max-message-size N` | bytes (default 10 MiB): ... |``),
    and the sentence on slow ``async`` handlers.
    """
    page = (ROOT / "docs" / "how-to" / "secure.md").read_text("utf-8")
    section = page.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, object] = {}
    for flag, does in re.findall(r"^\| `--([a-z-]+)[^|]*\| (.*) \|$", section, re.MULTILINE):
        stated = re.search(r"\bdefault (off|on|(\d+(?:\.\d+)?) ?(MiB|KiB|s)?)\b", does)
        if stated is None:
            continue
        name = flag.replace("-", "_")
        if stated.group(1) in ("off", "on"):
            documented[name] = stated.group(1) == "on"
        else:
            value = float(stated.group(2)) * UNITS[stated.group(3) or ""]
            documented[name] = int(value) if stated.group(3) != "s" else value
    slow = re.search(r"`async` handler still running after (\d+(?:\.\d+)?) s\s", section)
    if slow is not None:
        documented["slow_handler"] = float(slow.group(1))
    return documented


def test_defaults_are_pinned_and_documented() -> None:
    limits = Limits()
    fields = [field.name for field in dataclasses.fields(Limits)]
    assert {name: getattr(limits, name) for name in fields} == DEFAULTS  # a new one: pin it here
    assert readme_defaults() == DEFAULTS  # the README states each, and the same value
    # Everything that builds a server without being told otherwise uses these.
    assert Server().limits == limits
    assert _limits(_parser().parse_args(["serve", "somewhere"])) == limits


# --- on the wire ---------------------------------------------------------------------------------


def echo(message: str | bytes, client) -> None:
    client.send(message)


async def test_default_message_size_limit_on_the_wire(server: Server) -> None:
    mount(server, "echo", on_message=echo)
    limit = DEFAULTS["max_message_size"]
    async with websockets.connect(server.url("echo"), max_size=None) as ws:
        await ws.send(b"x" * limit)
        assert len(await asyncio.wait_for(ws.recv(), 30)) == limit
    async with websockets.connect(server.url("echo"), max_size=None) as ws:
        with contextlib.suppress(ConnectionClosed):  # closed before the last byte was sent
            await ws.send(b"x" * (limit + 1))
        assert (await closed(ws))[0] == 1009


async def test_default_compression_is_off_on_the_wire(server: Server) -> None:
    mount(server, "echo", on_message=echo)
    async with websockets.connect(server.url("echo"), compression="deflate") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers  # offered, not taken


async def test_default_connection_limit_on_the_wire(server: Server) -> None:
    endpoint = mount(server, "echo", on_message=echo)
    limit = DEFAULTS["max_connections"]
    connections: list[asyncio.StreamWriter] = []

    async def handshake() -> asyncio.StreamReader:
        """A raw WebSocket handshake: 1,000 of them take a second, not a websockets client's."""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        connections.append(writer)
        writer.write(
            b"GET /websockets/service/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert response.startswith(b"HTTP/1.1 101"), response
        return reader

    try:
        for _ in range(limit // 100):
            await asyncio.gather(*(handshake() for _ in range(100)))
        deadline = time.monotonic() + 30
        while len(endpoint.clients) < limit and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(endpoint.clients) == limit
        assert (await read_close(await handshake()))[0] == 1013
        assert len(endpoint.clients) == limit
    finally:
        for writer in connections:
            writer.close()


async def test_default_send_queue_limit_on_the_wire(server: Server) -> None:
    endpoint = mount(server, "echo", on_message=echo)
    reader, writer = await raw_handshake(server.port, "/websockets/service/echo")
    (client,) = endpoint.clients.values()
    chunk = b"z" * 65536
    queued = 0
    try:
        with pytest.raises(ConnectionError, match="does not read"):
            while queued <= 2 * DEFAULTS["max_send_queue"]:  # bounded: 32 MiB at most
                client.send(chunk)
                queued += len(chunk)
                await asyncio.sleep(0)
        # The limit, plus what the loopback socket's buffers took before the queue grew.
        assert DEFAULTS["max_send_queue"] <= queued < 2 * DEFAULTS["max_send_queue"]
    finally:
        writer.close()


def test_default_ping_settings_reach_tornado() -> None:
    settings = Server().application().settings
    assert settings["websocket_ping_interval"] == DEFAULTS["ping_interval"]
    assert settings["websocket_ping_timeout"] == DEFAULTS["ping_timeout"]
