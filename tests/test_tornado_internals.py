"""Each private Tornado name ws_notebook relies on still exists and behaves as it relies on.

The contract is written in ``ws_notebook.tornado_internals``; a Tornado release that changes one
of these names fails here, by name, rather than somewhere deep in the server. Against real
Tornado objects: a stream over a socket pair, a plain Tornado WebSocket server (no ws_notebook
code in it) and a real ``websockets`` client, on loopback.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import zlib
from typing import Any

import pytest
import websockets
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets
from tornado.tcpserver import TCPServer
from tornado.util import _websocket_mask
from tornado.web import Application, RequestHandler
from tornado.websocket import (
    WebSocketHandler,
    WebSocketProtocol13,
    _DecompressTooLargeError,
    _WebSocketParams,
)

from ws_notebook import tornado_internals
from ws_notebook.codes import Opcode

WAIT = 10.0


def test_the_private_methods_overridden_or_called_exist_with_their_signatures() -> None:
    expected = {
        (WebSocketProtocol13, "_receive_frame_loop"): ["self"],
        (WebSocketProtocol13, "_receive_frame"): ["self"],
        (WebSocketProtocol13, "_read_bytes"): ["self", "n"],
        (WebSocketProtocol13, "_write_frame"): ["self", "fin", "opcode", "data", "flags"],
        (WebSocketProtocol13, "_handle_message"): ["self", "opcode", "data"],
        (WebSocketProtocol13, "_abort"): ["self"],
        (WebSocketProtocol13, "_run_callback"): ["self", "callback", "args", "kwargs"],
        (IOStream, "_consume"): ["self", "loc"],
        (IOStream, "_handle_events"): ["self", "fd", "events"],
        (TCPServer, "_handle_connection"): ["self", "connection", "address"],
        (RequestHandler, "_request_summary"): ["self"],
    }
    for (cls, name), parameters in expected.items():
        method = getattr(cls, name, None)
        assert callable(method), f"{cls.__name__}.{name} is gone"
        found = [p.name for p in inspect.signature(method).parameters.values()]
        assert found == parameters, f"{cls.__name__}.{name}{tuple(found)}"
    assert inspect.iscoroutinefunction(WebSocketProtocol13._receive_frame_loop)
    assert inspect.iscoroutinefunction(WebSocketProtocol13._receive_frame)


def test_websocket_mask_and_params() -> None:
    mask, payload = b"\x01\x02\x03\x04", b"hello, world"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert _websocket_mask(mask, masked) == payload
    params = _WebSocketParams(
        ping_interval=1.0, ping_timeout=2.0, max_message_size=3, compression_options=None
    )
    assert (params.ping_interval, params.ping_timeout, params.max_message_size) == (1.0, 2.0, 3)
    assert issubclass(_DecompressTooLargeError, Exception)


async def test_a_streams_read_buffer_consume_and_handle_events() -> None:
    """``_read_buffer``/``_read_buffer_size`` hold what was read and not handed out, ``_consume``
    hands it out, ``_handle_events(fd, READ)`` reads the socket as the loop would."""
    ours, theirs = socket.socketpair()
    stream = IOStream(ours)
    try:
        theirs.sendall(b"abcdef")
        assert await asyncio.wait_for(stream.read_bytes(2), WAIT) == b"ab"
        assert stream._read_buffer_size == 4  # the stream reads what the socket has
        assert tornado_internals.unread_size(stream) == 4
        assert tornado_internals.unread(stream) == b"cdef"
        assert stream._consume(3) == b"cde"
        assert tornado_internals.unread_size(stream) == 1
        pending = stream.read_bytes(4)  # 1 byte buffered: the stream waits for the socket
        theirs.sendall(b"ghi")
        assert not pending.done()
        tornado_internals.read_now(stream)  # no await: the loop has not run
        assert pending.done() and pending.result() == b"fghi"
    finally:
        stream.close()
        theirs.close()


class Recording(WebSocketProtocol13):
    """Tornado's own protocol, recording the private calls ws_notebook overrides."""

    calls: list[tuple[str, Any]]

    def _read_bytes(self, n: int) -> Any:
        self.calls.append(("read", n))
        return super()._read_bytes(n)

    async def _receive_frame(self) -> None:
        self.calls.append(("frame", self._wire_bytes_in))
        await super()._receive_frame()

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        self.calls.append(("message", (opcode, bytes(data))))
        return super()._handle_message(opcode, data)

    def _write_frame(self, fin: bool, opcode: int, data: bytes, flags: int = 0) -> Any:
        self.calls.append(("write", opcode))
        return super()._write_frame(fin, opcode, data, flags)


class Plain(WebSocketHandler):
    protocols: list[Recording] = []

    def get_compression_options(self) -> dict[str, Any] | None:
        return {} if "deflate" in self.request.path else None

    def get_websocket_protocol(self) -> Any:
        protocol = tornado_internals.protocol_for(self, Recording, self.get_compression_options())
        protocol.calls = []
        self.protocols.append(protocol)
        return protocol

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


class Summary(RequestHandler):
    def get(self) -> None:
        self.set_status(418)
        self.finish(f"{self._request_summary()}|{self._reason}|{self._finished}")
        assert self._finished is True


class Closing(RequestHandler):
    def get(self) -> None:
        tornado_internals.disconnect_on_finish(self)
        self.finish("bye")


@pytest.fixture
async def plain_server() -> Any:
    Plain.protocols = []
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(
        Application([(r"/summary", Summary), (r"/closing", Closing), (r"/ws.*", Plain)])
    )
    server.add_sockets(sockets)
    yield f"127.0.0.1:{sockets[0].getsockname()[1]}", server
    server.stop()


async def test_the_protocols_frame_reading_and_state(plain_server: Any) -> None:
    address, _ = plain_server
    async with websockets.connect(f"ws://{address}/ws", compression=None) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hi"
        await asyncio.wait_for(await ws.ping(b"p"), WAIT)
        protocol = Plain.protocols[0]
        assert protocol._compressor is None and protocol._decompressor is None
        assert protocol._fragmented_message_buffer is None
        assert protocol._message_bytes_in == 2
        assert protocol._wire_bytes_in == (2 + 4 + 2) + (2 + 4 + 1)  # text "hi", ping "p"
        assert not tornado_internals.compresses(protocol)
        assert tornado_internals.bytes_parsed(protocol) == protocol._wire_bytes_in
        # A frame: its head, mask and payload read with _read_bytes, then _handle_message.
        assert protocol.calls[:5] == [
            ("frame", 0),
            ("read", 2),
            ("read", 4),
            ("read", 2),
            ("message", (Opcode.TEXT, b"hi")),
        ]
        assert ("write", Opcode.TEXT) in protocol.calls  # the echo, through _write_frame
        assert ("message", (Opcode.PING, b"p")) in protocol.calls
        assert ("write", Opcode.PONG) in protocol.calls
        # A fragmented message is kept in these two until its last frame.
        second_part = asyncio.Event()

        async def parts() -> Any:
            yield "first "
            await second_part.wait()
            yield "second"

        sending = asyncio.ensure_future(ws.send(parts()))
        for _ in range(500):  # bounded: the first frame is on loopback
            if protocol._fragmented_message_buffer is not None:
                break
            await asyncio.sleep(0.01)
        assert protocol._fragmented_message_buffer == b"first "
        assert protocol._fragmented_message_opcode == Opcode.TEXT
        second_part.set()
        await asyncio.wait_for(sending, WAIT)
        assert await asyncio.wait_for(ws.recv(), WAIT) == "first second"
        assert protocol._fragmented_message_buffer is None
        # _received_pong: the ping timer's flag, set by a pong.
        tornado_internals.pong_received(protocol)
        assert protocol._received_pong is True
        # _run_callback runs a handler callback; _abort drops the connection.
        ran: list[str] = []
        protocol._run_callback(ran.append, "ran")
        assert ran == ["ran"]
        tornado_internals.abort(protocol)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT)
    assert protocol.stream.closed()


async def test_compression_state(plain_server: Any) -> None:
    address, _ = plain_server
    async with websockets.connect(f"ws://{address}/ws-deflate") as ws:
        await ws.send("hello " * 50)
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hello " * 50
        protocol = Plain.protocols[0]
        assert tornado_internals.compresses(protocol)
        assert protocol._decompressor is not None
        assert protocol._frame_compressed is True  # the last message read was compressed
        too_big = protocol._decompressor.__class__(False, None, 10)
        data = zlib.compressobj(wbits=-15)
        payload = data.compress(b"x" * 100) + data.flush(zlib.Z_SYNC_FLUSH)
        with pytest.raises(_DecompressTooLargeError):
            too_big.decompress(payload)


async def test_request_handler_names_and_the_accept_path(plain_server: Any) -> None:
    address, server = plain_server
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /summary?token=x HTTP/1.0\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), WAIT)  # HTTP/1.0: read to the end
    writer.close()
    body = answer.split(b"\r\n\r\n", 1)[1].decode()
    assert body == "GET /summary?token=x (127.0.0.1)|I'm a Teapot|False"  # finish() not yet run
    # The listening sockets and the stop functions, by fd; _handle_connection serves one.
    assert list(server._sockets) == list(server._handlers)
    assert all(callable(stop) for stop in server._handlers.values())
    ours, theirs = socket.socketpair()
    try:
        server._handle_connection(ours, ("127.0.0.1", 0))
        theirs.sendall(b"GET /summary HTTP/1.0\r\nHost: x\r\n\r\n")
        theirs.setblocking(False)
        loop = asyncio.get_running_loop()
        head = await asyncio.wait_for(loop.sock_recv(theirs, 1024), WAIT)
        assert head.startswith(b"HTTP/1.1 418")
    finally:
        theirs.close()


async def test_disconnect_on_finish_closes_a_keep_alive_connection(plain_server: Any) -> None:
    host, port = plain_server[0].split(":")
    for path, closes in (("/summary", False), ("/closing", True)):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), WAIT)
        if closes:
            assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed after the body
        else:
            with pytest.raises(asyncio.TimeoutError):  # HTTP/1.1: kept alive
                await asyncio.wait_for(reader.read(1), 0.3)
        writer.close()
