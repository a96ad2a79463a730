"""The benchmark's client process: many WebSocket connections on one asyncio loop.

    python benchmarks/_clients.py      (started by compare.py; JSON commands on stdin)

The machine the benchmark targets has 2 cores: one for the server under test, one for the
clients. So the clients are a single process, and a lean one: a plain ``asyncio.Protocol`` that
speaks just the RFC 6455 this needs (the opening handshake, unfragmented frames, close, and pong
for a ping) rather than a full client library, so that the client's cost per message stays a
small part of the server's and the figures compare the servers rather than the client. Frames to
the server are masked, as RFC 6455 requires, with an all-zero masking key: a legal key for which
unmasking is the identity, so sending costs no XOR pass over the payload (the servers still run
their unmasking code). The same client drives all three servers, so whatever it costs is the
same for each.

Commands: ``echo_seq`` (one connection, one message at a time), ``echo_pipe`` (connections each
keeping a window of messages in flight), ``churn`` (connect, handshake, close, repeat),
``bcast_connect`` / ``bcast_collect`` / ``close_all`` (the broadcast scenario's 1,000 idle
clients and the delivery of the server's broadcasts to them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import time
from array import array
from typing import Any
from urllib.parse import urlsplit

from _common import (
    cpu_seconds,
    latency_summary,
    monotonic,
    raise_fd_limit,
    reply,
    serve_commands,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ZERO_MASK = b"\x00\x00\x00\x00"
CLOSE_FRAME = b"\x88\x82" + ZERO_MASK + (1000).to_bytes(2, "big")
CONNECT_CONCURRENCY = 50


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked, final frame with the all-zero key (so the payload goes out as it is)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    return header + ZERO_MASK + payload


def text_payload(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


class WS(asyncio.Protocol):
    """One client connection. Subclasses say what to do with each batch of frames."""

    want_payload = False  # call on_message per frame (else only on_frames with a count)

    def __init__(self, host: str, path: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.path = path
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.handshaken = False
        self.close_received = False
        self.protocol_errors = 0
        self._key = base64.b64encode(os.urandom(16))

    # --- the opening handshake ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(
            b"GET " + self.path.encode() + b" HTTP/1.1\r\nHost: " + self.host.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
            + self._key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        status, *lines = head.split("\r\n")
        accept = base64.b64encode(hashlib.sha1(self._key + GUID).digest()).decode()
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        if not status.startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != accept:
            if not self.opened.done():
                self.opened.set_exception(ConnectionError(f"handshake refused: {status}"))
            assert self.transport is not None
            self.transport.close()
            return False
        self.handshaken = True
        self.opened.set_result(None)
        return True

    # --- frames ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.handshaken and not self._handshake():
            return
        size = len(buffer)
        pos = 0
        count = 0
        want_payload = self.want_payload
        while size - pos >= 2:
            length = buffer[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                start = pos + 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = buffer[pos] & 0x0F
            if opcode == 0x1 or opcode == 0x2:  # noqa: PLR1714 - the hot path
                count += 1
                if want_payload:
                    self.on_message(buffer, start, end)
                if not buffer[pos] & 0x80:
                    self.protocol_errors += 1  # fragmented: the servers never send that here
            else:
                self._control(opcode, bytes(buffer[start:end]))
            pos = end
        if pos:
            del buffer[:pos]
        if count:
            self.on_frames(count)

    def _control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 0x8:  # close: answer it (unless we started it) and let the server close
            if not self.close_received:
                self.close_received = True
                if not self.transport.is_closing():
                    self.transport.write(b"\x88\x82" + ZERO_MASK + payload[:2])
        elif opcode == 0x9:  # ping
            self.transport.write(client_frame(payload[:125], 0xA))

    def on_message(self, buffer: bytearray, start: int, end: int) -> None:
        pass

    def on_frames(self, count: int) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def close(self, timeout: float = 5.0) -> None:
        """Close handshake, then wait for the server to close the TCP connection."""
        if self.transport is None:
            return
        if not self.transport.is_closing():
            self.transport.write(CLOSE_FRAME)
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            self.transport.abort()


async def connect(factory: Any, url: str, timeout: float = 20.0) -> Any:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(factory, parts.hostname, parts.port), timeout
    )
    await asyncio.wait_for(protocol.opened, timeout)
    return protocol


def _factory(cls: type[WS], url: str, *args: Any) -> Any:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return lambda: cls(host, path, *args)


# --- 1. sequential echo ------------------------------------------------------------------------


class SequentialEcho(WS):
    """Sends one message, waits for its echo, sends the next: from the event loop's callbacks."""

    want_payload = True

    def __init__(self, host: str, path: str, size: int) -> None:
        super().__init__(host, path)
        self.payload = text_payload(size)
        self.frame = client_frame(self.payload)
        self.latencies = array("d")
        self.record_from = float("inf")
        self.stop_at = float("inf")
        self.sent_at = 0.0
        self.mismatched = 0
        self.done: asyncio.Future[None] = self.loop.create_future()

    def go(self, warmup: float, seconds: float) -> None:
        now = time.perf_counter()
        self.record_from = now + warmup
        self.stop_at = now + warmup + seconds
        self.sent_at = now
        self.write(self.frame)

    def on_message(self, buffer: bytearray, start: int, end: int) -> None:
        now = time.perf_counter()
        if end - start != len(self.payload):
            self.mismatched += 1
        if now >= self.record_from:
            self.latencies.append(now - self.sent_at)
        if now < self.stop_at:
            self.sent_at = time.perf_counter()
            self.write(self.frame)
        elif not self.done.done():
            self.done.set_result(None)


async def echo_seq(url: str, size: int, seconds: float, warmup: float) -> dict[str, Any]:
    ws = await connect(_factory(SequentialEcho, url, size), url)
    cpu = cpu_seconds()
    ws.go(warmup, seconds)
    await asyncio.wait_for(ws.done, warmup + seconds + 30)
    cpu = cpu_seconds() - cpu
    await ws.close()
    count = len(ws.latencies)
    return {
        "messages": count,
        "rate": count / sum(ws.latencies) if count else 0.0,
        "client_cpu": cpu / (warmup + seconds),
        "mismatched": ws.mismatched,
        "errors": ws.protocol_errors,
        "latencies": base64.b64encode(ws.latencies.tobytes()).decode(),
        **latency_summary(ws.latencies),
    }


# --- 2. pipelined echo --------------------------------------------------------------------------


class PipelinedEcho(WS):
    """Keeps ``window`` messages in flight: every echo received lets one more go out."""

    def __init__(self, host: str, path: str, size: int, window: int) -> None:
        super().__init__(host, path)
        self.size = size
        self.frame = client_frame(text_payload(size))
        self.window = window
        self.sending = False
        self.sent = 0
        self.received = 0
        self.drained: asyncio.Future[None] = self.loop.create_future()

    def go(self) -> None:
        self.sending = True
        self.sent += self.window
        self.write(self.frame * self.window)

    def on_frames(self, count: int) -> None:
        self.received += count
        if self.sending:
            self.sent += count
            self.write(self.frame * count)
        elif self.received >= self.sent and not self.drained.done():
            self.drained.set_result(None)


async def echo_pipe(
    url: str, size: int, seconds: float, warmup: float, connections: int, window: int
) -> dict[str, Any]:
    clients = [
        await connect(_factory(PipelinedEcho, url, size, window), url) for _ in range(connections)
    ]
    cpu = cpu_seconds()
    for ws in clients:
        ws.go()
    await asyncio.sleep(warmup)
    start, before = time.perf_counter(), sum(ws.received for ws in clients)
    await asyncio.sleep(seconds)
    elapsed, count = time.perf_counter() - start, sum(ws.received for ws in clients) - before
    cpu = cpu_seconds() - cpu
    for ws in clients:
        ws.sending = False
        if ws.received >= ws.sent and not ws.drained.done():
            ws.drained.set_result(None)
    lost = 0
    for ws in clients:
        try:
            await asyncio.wait_for(asyncio.shield(ws.drained), 30)
        except asyncio.TimeoutError:
            lost += ws.sent - ws.received
    await asyncio.gather(*(ws.close() for ws in clients))
    return {
        "messages": count,
        "rate": count / elapsed,
        "mib_per_s": count * size / elapsed / 2**20,
        "client_cpu": cpu / (warmup + seconds),
        "unanswered": lost,
        "errors": sum(ws.protocol_errors for ws in clients),
    }


# --- 3. broadcast -------------------------------------------------------------------------------


class Collector:
    """What the broadcast clients received: counts and delivery latencies, over all clients."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.latencies = array("d")
        self.first_sent = float("inf")
        self.last_received = 0.0
        self.bad = 0
        self.complete = asyncio.get_running_loop().create_future()


class BroadcastListener(WS):
    """Receives broadcasts; each message carries the monotonic time its broadcast began."""

    want_payload = True

    def __init__(self, host: str, path: str, collector: Collector) -> None:
        super().__init__(host, path)
        self.collector = collector
        self.now = 0.0

    def data_received(self, data: bytes) -> None:
        self.now = monotonic()  # one arrival time for every frame of this read
        super().data_received(data)

    def on_message(self, buffer: bytearray, start: int, end: int) -> None:
        collector = self.collector
        space = buffer.find(b" ", start + 7, end)
        try:
            sent = float(buffer[start + 7 : space])
        except ValueError:
            collector.bad += 1
            return
        collector.latencies.append(self.now - sent)
        collector.received += 1
        collector.last_received = self.now
        if sent < collector.first_sent:
            collector.first_sent = sent
        if collector.received >= collector.expected and not collector.complete.done():
            collector.complete.set_result(None)


class Broadcast:
    def __init__(self) -> None:
        self.collector = Collector()
        self.clients: list[BroadcastListener] = []
        self.cpu = 0.0

    async def connect(self, url: str, count: int) -> dict[str, Any]:
        factory = _factory(BroadcastListener, url, self.collector)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)  # under the listen backlog
        start = time.perf_counter()

        async def one() -> BroadcastListener:
            async with gate:
                return await connect(factory, url, timeout=60)

        self.clients = list(await asyncio.gather(*(one() for _ in range(count))))
        return {"connected": len(self.clients), "seconds": time.perf_counter() - start}

    def collect(self, expected: int) -> None:
        self.collector.reset(expected)
        self.cpu = cpu_seconds()

    async def result(self, quiet: float, limit: float) -> dict[str, Any]:
        """Wait for every expected message, or ``quiet`` seconds without one (bounded by limit)."""
        collector = self.collector
        deadline = time.perf_counter() + limit
        while not collector.complete.done() and time.perf_counter() < deadline:
            seen = collector.received
            await asyncio.wait([collector.complete], timeout=quiet)
            if collector.received == seen:
                break
        cpu = cpu_seconds() - self.cpu
        span = collector.last_received - collector.first_sent if collector.received else 0.0
        return {
            "expected": collector.expected,
            "received": collector.received,
            "span": span,
            "rate": collector.received / span if span > 0 else 0.0,
            "client_cpu_seconds": cpu,
            "bad": collector.bad,
            "errors": sum(ws.protocol_errors for ws in self.clients),
            **latency_summary(collector.latencies),
        }

    async def close_all(self) -> dict[str, Any]:
        clients, self.clients = self.clients, []
        start = time.perf_counter()
        gate = asyncio.Semaphore(200)

        async def one(ws: BroadcastListener) -> None:
            async with gate:
                await ws.close(timeout=10)

        await asyncio.gather(*(one(ws) for ws in clients))
        return {"closed": len(clients), "seconds": time.perf_counter() - start}


# --- 4. connection churn --------------------------------------------------------------------------


async def churn(url: str, seconds: float, warmup: float, concurrency: int) -> dict[str, Any]:
    """``concurrency`` loops of connect, opening handshake, close handshake, as fast as they go."""
    factory = _factory(WS, url)
    counted = 0
    failures = 0
    record_from = time.perf_counter() + warmup
    stop_at = record_from + seconds

    async def loop() -> None:
        nonlocal counted, failures
        while time.perf_counter() < stop_at:
            try:
                ws = await connect(factory, url, timeout=10)
                await ws.close(timeout=10)
            except (OSError, asyncio.TimeoutError):
                failures += 1
                await asyncio.sleep(0.01)
                continue
            if time.perf_counter() >= record_from:
                counted += 1

    cpu = cpu_seconds()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    cpu = cpu_seconds() - cpu
    return {
        "connections": counted,
        "rate": counted / seconds,
        "failures": failures,
        "client_cpu": cpu / (warmup + seconds),
    }


# --- the command loop ------------------------------------------------------------------------------


async def main() -> None:
    raise_fd_limit()
    broadcast = Broadcast()

    async def handle(command: dict[str, Any]) -> bool:
        cmd = command.pop("cmd")
        if cmd == "echo_seq":
            reply(await echo_seq(**command))
        elif cmd == "echo_pipe":
            reply(await echo_pipe(**command))
        elif cmd == "churn":
            reply(await churn(**command))
        elif cmd == "bcast_connect":
            reply(await broadcast.connect(**command))
        elif cmd == "bcast_collect":
            broadcast.collect(command["expected"])
            reply({"ok": True})
            reply(await broadcast.result(command["quiet"], command["limit"]))
        elif cmd == "close_all":
            reply(await broadcast.close_all())
        else:
            reply({"error": f"unknown command {cmd!r}"})
        return True

    reply({"pid": os.getpid()})
    try:
        await serve_commands(handle)
    finally:
        with contextlib.suppress(Exception):
            await broadcast.close_all()


if __name__ == "__main__":
    asyncio.run(main())
