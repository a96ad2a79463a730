"""Close reasons that fit a close frame, and a 1002 close naming the rule a client's frame broke.

Against a real server on loopback. The framing errors are written by hand on a plain socket, as
client libraries refuse to send them; the server's replies are read until it closes the TCP
connection, which it must do promptly after a protocol error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from ws_notebook import Endpoint, Limits, Registry, Server
from ws_notebook.protocol import close_reason
from ws_notebook.watch import ProjectWatcher, WatchEvent

from .endpoints import mount

WAIT = 10.0  # seconds: the longest any single expected thing may take
DROP = 2.0  # seconds: a server failing a connection drops it well before its 5 s close wait


def mount_echo(server: Server, name: str = "echo") -> Endpoint:
    return mount(server, name, on_message=lambda message, client: client.send(message))


async def closed(ws: websockets.ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the server to close the connection; its close code and reason."""
    with pytest.raises(ConnectionClosed):
        for _ in range(1000):  # bounded: the server closes after a few messages at most
            await asyncio.wait_for(ws.recv(), WAIT)
    return ws.close_code, ws.close_reason


async def echoes(server: Server, name: str = "echo") -> None:
    """Another client of the endpoint is served."""
    async with websockets.connect(server.url(name)) as ws:
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "still here"


async def until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def fits(reason: str | None, full: str) -> bool:
    """``reason`` is ``full`` cut to at most 123 bytes of UTF-8, and no shorter than need be."""
    sent = (reason or "").encode()
    return full.startswith(reason or "") and 120 <= len(sent) <= 123  # characters: 4 bytes at most


# --- close reasons ------------------------------------------------------------------------------


def test_close_reason_cuts_at_a_character_boundary() -> None:
    assert close_reason("short") == "short"
    assert close_reason("r" * 200) == "r" * 123
    assert close_reason("é" * 100) == "é" * 61  # 122 bytes: the 62nd would need 124
    assert close_reason("\U0001f600" * 40) == "\U0001f600" * 30  # 4-byte characters: 120 bytes
    assert close_reason("lost \udcff name") == "lost ? name"  # an undecodable file name's byte


@pytest.mark.parametrize("name", ["n" * 100, "x" * 128], ids=["100 chars", "128 chars"])
async def test_a_refused_connection_gets_1013_whatever_the_endpoint_name(
    serve: Callable[..., Server], name: str
) -> None:
    server = serve(limits=Limits(max_connections=1))
    endpoint = mount_echo(server, name)
    async with websockets.connect(server.url(name)):
        async with websockets.connect(server.url(name)) as refused:
            code, reason = await closed(refused)
        assert code == 1013
        assert fits(reason, f"endpoint {name!r} is full (1 connections)")
        assert len(endpoint.clients) == 1
    await echoes(server, name)  # served once the first client is gone


REASONS = {
    "ascii": ("r" * 200, "r" * 123),
    "accents": ("é" * 100, "é" * 61),
    "surrogate": ("file \udcff.websocket removed", "file ?.websocket removed"),
}


@pytest.mark.parametrize("which", sorted(REASONS))
async def test_a_handler_closing_with_a_long_reason_sends_it_cut(
    serve: Callable[..., Server], which: str
) -> None:
    server = serve()
    endpoint = mount(
        server, "bye", on_message=lambda message, client: client.close(1000, REASONS[message][0])
    )
    async with websockets.connect(server.url("bye")) as ws:
        await ws.send(which)
        assert await closed(ws) == (1000, REASONS[which][1])
    await until(lambda: not endpoint.clients)
    events = endpoint.log.since()
    assert [e.detail for e in events if e.kind == "error"] == []
    closes = [e.detail for e in events if e.kind == "close"]
    assert closes == [f"1000 {REASONS[which][1]} (closed by the server)"]


async def test_removing_a_file_with_a_long_non_ascii_name_keeps_hot_reload_going(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """The watcher closes the clients with "FILE was removed": here over 123 bytes of UTF-8."""
    long_name = "é" * 60 + ".websocket"
    for name, file in (("accents", long_name), ("other", "other.websocket")):
        (tmp_path / f"{name}.py").write_text(
            "def on_message(message, client):\n    client.send(message)\n", "utf-8"
        )
        (tmp_path / file).write_text(json.dumps({"endpoint": name, "handler": f"{name}.py"}))
    registry = Registry()
    server = serve(registry=registry)
    events: list[WatchEvent] = []
    watcher = ProjectWatcher(registry, tmp_path, on_event=events.append, debounce_ms=50, step_ms=20)
    watcher.load()
    watcher.start()
    try:
        await watcher.wait_ready(WAIT)
        async with (
            websockets.connect(server.url("accents")) as accents,
            websockets.connect(server.url("other")) as other,
        ):
            (tmp_path / long_name).unlink()
            code, reason = await closed(accents)
            assert code == 1001 and fits(reason, f"{long_name} was removed")
            await until(lambda: [e.endpoint for e in events] == ["accents"])
            (tmp_path / "other.websocket").unlink()  # a later change is still applied
            assert await closed(other) == (1001, "other.websocket was removed")
            await until(lambda: [e.endpoint for e in events] == ["accents", "other"])
        assert [e.kind for e in events] == ["unmounted", "unmounted"]
        assert watcher.running and len(registry) == 0
    finally:
        await watcher.aclose()


# --- protocol errors, on a plain socket ----------------------------------------------------------


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """A client frame as written on the wire; any of its bits may break a rule."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, n))
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    head = head[:1] + bytes((head[1] | 0x80,)) + head[2:]
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def handshake(port: int, path: str, extensions: str = "") -> socket.socket:
    """A TCP connection upgraded to WebSocket by hand."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), WAIT)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 101") and response.endswith(b"\r\n\r\n"), response
    if extensions:
        assert b"permessage-deflate" in response, response
    return sock


async def replies(sock: socket.socket, data: bytes) -> list[tuple[int, bytes]]:
    """Send ``data``, then read the server's frames (opcode, payload) until it drops TCP.

    Read from the socket, not a StreamReader: a reset after the close frame must not hide it.
    """
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, data)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), DROP):
            received += chunk
    sock.close()
    frames = []
    while received:
        length, at = received[1] & 0x7F, 2
        if length == 126:
            length, at = struct.unpack("!H", received[2:4])[0], 4
        elif length == 127:
            length, at = struct.unpack("!Q", received[2:10])[0], 10
        assert received[1] & 0x80 == 0, "a server's frames are not masked"
        frames.append((received[0], received[at : at + length]))
        received = received[at + length :]
    return frames


def close_frame(code: int, reason: str) -> tuple[int, bytes]:
    return 0x88, struct.pack("!H", code) + reason.encode()


PROTOCOL_ERRORS = {
    "unmasked": (frame(0x1, b"hello", masked=False), "unmasked frame from client"),
    "unmasked ping": (frame(0x9, b"", masked=False), "unmasked frame from client"),
    "opcode 3": (frame(0x3), "reserved opcode 0x3"),
    "opcode 7": (frame(0x7, b"data"), "reserved opcode 0x7"),
    "opcode B": (frame(0xB), "reserved opcode 0xB"),
    "opcode F": (frame(0xF), "reserved opcode 0xF"),
    "big ping": (frame(0x9, b"p" * 126), "control frame payload over 125 bytes"),
    "big close": (frame(0x8, b"\x03\xe8" + b"c" * 124), "control frame payload over 125 bytes"),
    "fragmented ping": (frame(0x9, b"p", fin=False), "fragmented control frame"),
    "RSV1": (frame(0x1, b"x", rsv=0x40), "RSV1 set without an extension"),
    "RSV2": (frame(0x2, b"x", rsv=0x20), "RSV2 set without an extension"),
    "RSV3 on a ping": (frame(0x9, b"x", rsv=0x10), "RSV3 set without an extension"),
    "lone continuation": (frame(0x0, b"x"), "continuation frame without a message to continue"),
    "text inside a fragmented message": (
        frame(0x1, b"a", fin=False) + frame(0x1, b"b"),
        "new message before the fragmented one ended",
    ),
    "binary inside a fragmented message": (
        frame(0x2, b"a", fin=False) + frame(0x0, b"b", fin=False) + frame(0x2, b"c", fin=False),
        "new message before the fragmented one ended",
    ),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
async def test_a_protocol_error_is_closed_with_1002_naming_it(
    serve: Callable[..., Server], case: str
) -> None:
    data, problem = PROTOCOL_ERRORS[case]
    server = serve()
    endpoint = mount_echo(server)
    async with websockets.connect(server.url("echo")) as bystander:
        sock = await handshake(server.port, "/websockets/service/echo")
        assert await replies(sock, frame(0x1, b"fine") + data) == [
            (0x81, b"fine"),  # what came before the bad frame is served
            close_frame(1002, problem),
        ]
        await until(lambda: len(endpoint.clients) == 1)
        await bystander.send("unaffected")
        assert await asyncio.wait_for(bystander.recv(), WAIT) == "unaffected"
    closes = [e.detail for e in endpoint.log.since() if e.kind == "close"]
    assert f"1002 {problem} (closed by the server)" in closes
    await echoes(server)


def deflate(message: bytes) -> bytes:
    """A message compressed as permessage-deflate sends it (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


COMPRESSED_ERRORS = {
    "RSV1 on a continuation": (
        frame(0x1, b"a", fin=False, rsv=0x40) + frame(0x0, b"b", rsv=0x40),
        "RSV1 set on a continuation frame",
    ),
    "RSV1 on a ping": (frame(0x9, b"p", rsv=0x40), "RSV1 set on a control frame"),
}


@pytest.mark.parametrize("case", list(COMPRESSED_ERRORS))
async def test_with_deflate_rsv1_is_allowed_on_first_frames_only(
    serve: Callable[..., Server], case: str
) -> None:
    data, problem = COMPRESSED_ERRORS[case]
    server = serve(limits=Limits(compression=True))
    mount_echo(server)
    sock = await handshake(server.port, "/websockets/service/echo", "permessage-deflate")
    frames = await replies(sock, data)
    assert frames == [close_frame(1002, problem)]


async def test_a_ping_between_the_fragments_of_a_compressed_message(
    serve: Callable[..., Server],
) -> None:
    """The ping is not compressed; the message around it is, and is decompressed all the same."""
    server = serve(limits=Limits(compression=True))
    mount_echo(server)
    message = "compressed " * 20
    compressed = deflate(message.encode())
    sock = await handshake(server.port, "/websockets/service/echo", "permessage-deflate")
    data = (
        frame(0x1, compressed[:10], fin=False, rsv=0x40)
        + frame(0x9, b"between")
        + frame(0x0, compressed[10:])
        + frame(0x8, struct.pack("!H", 1000))
    )
    pong, echo, close = await replies(sock, data)
    assert pong == (0x8A, b"between")
    assert echo[0] == 0xC1  # FIN, RSV1: compressed, text
    decompressor = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
    assert decompressor.decompress(echo[1] + b"\x00\x00\xff\xff").decode() == message
    assert close == close_frame(1000, "")


async def test_frames_that_keep_the_rules_are_served(serve: Callable[..., Server]) -> None:
    """Every length encoding, fragments with control frames between them, a valid close."""
    server = serve()
    mount_echo(server)
    big = os.urandom(70_000)
    sock = await handshake(server.port, "/websockets/service/echo")
    data = (
        frame(0x1, b"")
        + frame(0x1, b"x" * 125)
        + frame(0x2, b"y" * 126)
        + frame(0x2, big)
        + frame(0x1, b"frag", fin=False)
        + frame(0x9, b"ping")
        + frame(0x0, b"mented ", fin=False)
        + frame(0xA, b"unsolicited pong")
        + frame(0x0, "é".encode())
        + frame(0x8, struct.pack("!H", 4000) + b"done")
    )
    assert await replies(sock, data) == [
        (0x81, b""),
        (0x81, b"x" * 125),
        (0x82, b"y" * 126),
        (0x82, big),
        (0x8A, b"ping"),
        (0x81, "fragmented é".encode()),
        close_frame(4000, ""),
    ]


async def test_a_fragmented_message_past_max_message_size_is_closed_with_1009(
    serve: Callable[..., Server],
) -> None:
    server = serve(limits=Limits(max_message_size=100))
    endpoint = mount_echo(server)
    sock = await handshake(server.port, "/websockets/service/echo")
    data = frame(0x1, b"a" * 60, fin=False) + frame(0x0, b"b" * 41)
    assert await replies(sock, data) == [close_frame(1009, "message too big")]
    await until(lambda: not endpoint.clients)
    closes = [e.detail for e in endpoint.log.since() if e.kind == "close"]
    assert closes == ["1009 message too big (closed by the server)"]
