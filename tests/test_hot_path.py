"""What the hot-path work for benchmarks/compare.py must keep: same frames, same behaviour."""

from __future__ import annotations

import asyncio
import gc
import socket
import time

import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.uri import parse_uri

import ws_notebook
from ws_notebook import ConnectionClosed, Descriptor, EventLog, Handlers, Limits, Registry, Server

from .endpoints import mount


@pytest.mark.parametrize(
    "message",
    [
        "",
        "x" * 125,  # the largest 7-bit length
        "x" * 126,  # 16-bit length
        "é" * 40_000,  # 80,000 bytes of UTF-8: 64-bit length
        b"",
        bytes(range(256)) * 256,  # 65,536 bytes: 64-bit length
        b"\x00" * 65_535,  # the largest 16-bit length
    ],
    ids=repr,
)
async def test_echo_frames_of_every_length_encoding(server: Server, message: str | bytes) -> None:
    mount(server, "echo", on_message=lambda message, client: client.send(message))
    async with websockets.connect(server.url("echo"), max_size=None) as ws:
        await ws.send(message)
        assert await ws.recv() == message


async def test_compressed_connections_still_echo(server: Server) -> None:
    server.stop()
    server.limits = Limits(compression=True)
    server.start()
    mount(server, "echo", on_message=lambda message, client: client.send(message))
    async with websockets.connect(server.url("echo"), compression="deflate") as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        for message in ("text " * 1000, b"\x01" * 5000):
            await ws.send(message)
            assert await ws.recv() == message


async def test_send_returns_an_awaitable_and_starts_no_task(server: Server) -> None:
    sent: list = []

    async def on_message(message: str, client: ws_notebook.Client) -> None:
        result = client.send(message)
        sent.append(result)
        assert await result is None  # resolves once written

    def not_awaited(message: str, client: ws_notebook.Client) -> None:
        sent.append((len(asyncio.all_tasks()), client.send(message), len(asyncio.all_tasks())))

    mount(server, "awaited", on_message=on_message)
    mount(server, "fire", on_message=not_awaited)
    async with websockets.connect(server.url("awaited")) as ws:
        await ws.send("a")
        assert await ws.recv() == "a"
    async with websockets.connect(server.url("fire")) as ws:
        await ws.send("b")
        assert await ws.recv() == "b"
    before, _, after = sent[-1]
    assert after == before  # no asyncio Task per message


async def test_awaiting_a_send_after_the_connection_dropped_raises() -> None:
    from ws_notebook.outbox import Sent

    loop = asyncio.get_running_loop()
    from tornado.iostream import StreamClosedError

    failed = loop.create_future()
    failed.set_exception(StreamClosedError())
    with pytest.raises(ConnectionClosed):  # the package's own error, not Tornado's
        await Sent(failed)
    done = loop.create_future()
    done.set_result(None)
    assert await Sent(done) is None


async def test_awaiting_send_to_a_client_that_dropped_raises_connection_closed(
    server: Server,
) -> None:
    """A handler awaiting its sends to a client that stops reading and then drops the TCP
    connection gets the package's ``ConnectionClosed`` (an ``Error``), never Tornado's
    ``WebSocketClosedError``, whether the send was pending or made after the drop."""
    raised: list[BaseException] = []
    writing = asyncio.Event()
    done = asyncio.Event()

    async def flood(message: str, client: ws_notebook.Client) -> None:
        try:
            for _ in range(500):  # bounded: 500 MiB would fill any socket buffer
                pending = client.send(b"x" * (1 << 20))
                writing.set()
                await pending
        except Exception as error:
            raised.append(error)
        finally:
            done.set()

    mount(server, "flood", on_message=flood)
    ws = await websockets.connect(server.url("flood"), max_size=None)
    await ws.send("go")
    await asyncio.wait_for(writing.wait(), 10)
    await asyncio.sleep(0.2)  # the server's writes back up: this client reads nothing
    ws.transport.abort()  # TCP reset, no closing handshake
    await asyncio.wait_for(done.wait(), 10)
    assert len(raised) == 1
    assert isinstance(raised[0], ConnectionClosed), repr(raised[0])
    assert isinstance(raised[0], ws_notebook.Error) and isinstance(raised[0], ConnectionError)


async def test_a_closed_client_lets_go_of_its_connection(server: Server) -> None:
    kept: list[ws_notebook.Client] = []
    closed = asyncio.Event()
    endpoint = mount(
        server,
        "keep",
        on_open=kept.append,
        on_close=lambda client: closed.set(),
    )
    async with websockets.connect(server.url("keep") + "?a=1&b=&a=2") as ws:
        await ws.send("hi")
        client = kept[0]
        assert client.query == {"a": ["1", "2"], "b": [""]}
        assert client.headers["Upgrade"].lower() == "websocket"
    await asyncio.wait_for(closed.wait(), 5)
    assert client.state == "closed" and client._socket is None
    assert client.headers["Upgrade"].lower() == "websocket"  # still readable after the close
    client.close()  # closing again does nothing
    with pytest.raises(ConnectionClosed):
        client.send("too late")
    assert endpoint.clients == {}


@pytest.mark.slow
async def test_closed_connections_leave_no_cyclic_garbage(server: Server) -> None:
    mount(server, "churn", on_message=lambda message, client: client.send(message))
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            async with websockets.connect(server.url("churn")) as ws:
                await ws.send("x")
                await ws.recv()
        await asyncio.sleep(0.2)
        from ws_notebook.server import EndpointSocket

        left = [o for o in gc.get_objects() if type(o) is EndpointSocket]
        assert left == []  # freed by reference counting alone
    finally:
        gc.enable()


def test_log_capacity_zero_mounts_an_endpoint_with_the_log_off() -> None:
    registry = Registry()
    descriptor = Descriptor.new("quiet", handler="test")
    endpoint = registry.mount(descriptor, Handlers(), log_capacity=0).endpoint
    assert endpoint.log.capacity == 0
    assert (
        registry.mount(Descriptor.new("default", handler="t"), Handlers()).endpoint.log.capacity
        == 1000
    )
    endpoint.log.message("in", "c1", "hello")
    endpoint.log.record("open", "c1")
    assert len(endpoint.log) == 0 and endpoint.log.total == 2 and endpoint.log.dropped == 2


def test_log_off_is_cheap_and_log_on_unchanged() -> None:
    log = EventLog(0)
    for i in range(1000):
        log.message("out", "c", "x" * i)
    assert log.since() == [] and log.total == 1000
    on = EventLog(2)
    on.message("in", "c", "abc")
    on.message("out", "c", b"\x01\x02")
    assert [(e.kind, e.size, e.preview) for e in on.since()] == [
        ("in", 3, "abc"),
        ("out", 2, b"\x01\x02"),
    ]


async def test_frames_keep_their_order_when_the_socket_stops_taking_them(server: Server) -> None:
    """Once the socket refuses a frame, later frames queue in the stream behind it, even if the
    socket has room again before the loop has flushed the stream; all arrive in order.

    The client is a blocking socket driven from this thread (websockets' sans-I/O protocol does
    the handshake and parses the frames), so the loop does not run between its steps.
    """
    endpoint = mount(server, "order")
    protocol = ClientProtocol(parse_uri(server.url("order")), max_size=None)
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    protocol.send_request(protocol.connect())
    raw.sendall(b"".join(protocol.data_to_send()))
    while not endpoint.clients:
        await asyncio.sleep(0.01)
    client = next(iter(endpoint.clients.values()))

    sent = [client.send(f"{i:04d}" + "x" * 65_532) for i in range(100)]
    queued = [i for i, s in enumerate(sent) if s._future is not None]
    assert queued, "the socket took 100 x 64 KiB: the test needs a client that does not read"
    raw.settimeout(5)
    received: list = []

    def read_some(size: int) -> None:
        protocol.receive_data(raw.recv(size))
        received.extend(e for e in protocol.events_received() if isinstance(e, Frame))

    read_some(1 << 20)  # room in the server's socket again, and the loop has not run since
    time.sleep(0.05)
    last = client.send("last")
    while len(received) < 101:
        await asyncio.sleep(0)  # let the loop flush the stream
        read_some(1 << 20)
    raw.close()
    texts = [frame.data.decode() for frame in received]
    assert [t[:4] for t in texts[:100]] == [f"{i:04d}" for i in range(100)]
    assert texts[100] == "last"
    assert [await s for s in [*sent, last]] == [None] * 101  # each resolves once written


async def test_broadcast_encodes_and_logs_once_and_reaches_every_client(server: Server) -> None:
    endpoint = mount(server, "room")
    clients = [await websockets.connect(server.url("room")) for _ in range(3)]
    try:
        while len(endpoint.clients) < 3:
            await asyncio.sleep(0.01)
        assert endpoint.broadcast({"n": 1}) == 3
        assert endpoint.broadcast(b"\x00\x01") == 3
        assert [await ws.recv() for ws in clients] == ['{"n": 1}'] * 3
        assert [await ws.recv() for ws in clients] == [b"\x00\x01"] * 3
        with pytest.raises(TypeError, match="cannot send object"):
            endpoint.broadcast(object())  # refused before any client gets anything
        assert endpoint.messages_out == 6
        outs = [(e.client, e.size) for e in endpoint.log.since() if e.kind == "out"]
        assert outs == [("all 3", 8), ("all 3", 2)]  # one event per broadcast, not per client
    finally:
        for ws in clients:
            await ws.close()


async def test_a_broadcast_from_another_thread_is_delivered(server: Server) -> None:
    endpoint = mount(server, "threads")
    async with websockets.connect(server.url("threads")) as ws:
        while not endpoint.clients:
            await asyncio.sleep(0.01)
        sent = await asyncio.to_thread(endpoint.broadcast, "from a thread")
        assert sent == 1
        assert await ws.recv() == "from a thread"


# --- replies held back while a burst of input is read (Outbox.hold) ----------------------------


async def test_replies_to_a_pipelined_burst_arrive_complete_and_in_order(server: Server) -> None:
    def on_message(message: str, client: ws_notebook.Client) -> None:
        client.send(message)
        client.send(message.upper())

    mount(server, "burst", on_message=on_message)
    async with websockets.connect(server.url("burst")) as ws:
        for i in range(500):  # sent back to back: the server reads them in large chunks
            await ws.send(f"m{i}")
        replies = [await ws.recv() for _ in range(1000)]
    assert replies == [r for i in range(500) for r in (f"m{i}", f"M{i}")]


async def test_a_reply_goes_before_the_close_the_handler_starts(server: Server) -> None:
    def on_message(message: str, client: ws_notebook.Client) -> None:
        client.send("bye")
        client.close(4000, "done")

    mount(server, "closing", on_message=on_message)
    async with websockets.connect(server.url("closing")) as ws:
        await ws.send("hi")
        assert await ws.recv() == "bye"
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (4000, "done")


async def test_an_async_handler_sends_before_it_waits(server: Server) -> None:
    """A send made before an ``await`` is not held until the handler returns."""
    go_on = asyncio.Event()

    async def on_message(message: str, client: ws_notebook.Client) -> None:
        client.send("working")
        await go_on.wait()  # set only once "working" has arrived
        client.send("done")

    mount(server, "slow", on_message=on_message)
    async with websockets.connect(server.url("slow")) as ws:
        await ws.send("start")
        assert await asyncio.wait_for(ws.recv(), 5) == "working"
        go_on.set()
        assert await asyncio.wait_for(ws.recv(), 5) == "done"


async def test_a_held_reply_is_written_when_awaited_and_pings_are_answered(server: Server) -> None:
    written: list = []

    def on_message(message: str, client: ws_notebook.Client) -> None:
        written.append(client.send(message))

    mount(server, "ping", on_message=on_message)
    async with websockets.connect(server.url("ping")) as ws:
        for i in range(50):
            await ws.send(f"{i}")
        pong = await ws.ping()
        for i in range(50, 100):
            await ws.send(f"{i}")
        await asyncio.wait_for(pong, 5)
        assert [await ws.recv() for _ in range(100)] == [f"{i}" for i in range(100)]
    assert [await sent for sent in written] == [None] * 100


async def test_connections_do_not_delay_small_writes(server: Server) -> None:
    """TCP_NODELAY: without it, a second small reply waits for the client's delayed ACK."""
    endpoint = mount(server, "nodelay")
    async with websockets.connect(server.url("nodelay")):
        while not endpoint.clients:
            await asyncio.sleep(0.01)
        stream = next(iter(endpoint.clients.values()))._socket.ws_connection.stream
        assert stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
