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
clients and the delivery of the server's broadcasts to them), ``busy_open`` / ``busy_join`` /
``busy_result`` (the busy kernel scenario: clients that send numbered messages at a fixed rate
and keep their connection alive as the ``websockets`` library does, while a cell blocks the
kernel; see ``BusyEcho``).
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


# --- 6. busy kernel ------------------------------------------------------------------------------


class BusyEcho(WS):
    """Sends numbered messages at a fixed rate and pings as ``websockets``' keepalive does.

    Every message carries ``INDEX:SEQ:``; the echoes must come back once each and in order.
    The keepalive is the ``websockets`` library's (``ClientConnection.keepalive``): sleep
    ``ping_interval``, send a ping, wait ``ping_timeout`` for its pong, else close with 1011
    ("keepalive ping timeout") and drop the connection. Every time is ``time.monotonic()``,
    which the kernel's clock shares (CLOCK_MONOTONIC), so sends and answers can be placed
    against the blocking cell's start and end.
    """

    want_payload = True

    def __init__(
        self,
        host: str,
        path: str,
        index: int,
        size: int,
        rate: float,
        ping_interval: float,
        ping_timeout: float,
    ) -> None:
        super().__init__(host, path)
        self.index = index
        self.size = size
        self.period = 1.0 / rate
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.sent_at = array("d")  # by sequence number
        self.answered_at = array("d")  # in the order the echoes came
        self.answered_seq = array("l")
        self.foreign = 0  # messages that are not an echo of ours
        self.pongs: dict[bytes, asyncio.Future[float]] = {}
        self.ping_rtts = array("d")
        self.ping_sent = array("d")
        self.dropped: str | None = None  # why the client gave up on the connection
        self.dropped_at = 0.0
        self.sending = False
        self.tasks: list[asyncio.Task] = []
        self.connect_started = 0.0
        self.opened_at = 0.0

    def start(self) -> None:
        self.sending = True
        self.tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._keepalive()),
        ]

    async def stop(self) -> None:
        self.sending = False
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def open(self) -> bool:
        return self.dropped is None and not self.closed.done()

    async def _send_loop(self) -> None:
        """One message every ``period``; a late tick sends what is due at once (none skipped)."""
        start = monotonic()
        while self.sending and self.open:
            due = start + len(self.sent_at) * self.period
            wait = due - monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            head = f"{self.index}:{len(self.sent_at)}:".encode()
            self.sent_at.append(monotonic())
            self.write(client_frame(head + b"x" * max(0, self.size - len(head))))

    async def _keepalive(self) -> None:
        latency = 0.0
        count = 0
        while self.open:
            await asyncio.sleep(max(0.0, self.ping_interval - latency))
            if not self.open:
                return
            count += 1
            payload = count.to_bytes(4, "big")
            pong = self.loop.create_future()
            self.pongs[payload] = pong
            sent = monotonic()
            self.ping_sent.append(sent)
            self.write(client_frame(payload, 0x9))
            try:
                latency = await asyncio.wait_for(pong, self.ping_timeout) - sent
            except asyncio.TimeoutError:
                self.dropped = f"keepalive ping timeout ({self.ping_timeout:g} s)"
                self.dropped_at = monotonic()
                assert self.transport is not None
                if not self.transport.is_closing():
                    reason = b"keepalive ping timeout"
                    self.write(client_frame((1011).to_bytes(2, "big") + reason, 0x8))
                    self.transport.close()
                return
            self.ping_rtts.append(latency)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0xA:
            pong = self.pongs.pop(payload, None)
            if pong is not None and not pong.done():
                pong.set_result(monotonic())
            return
        super()._control(opcode, payload)

    def on_message(self, buffer: bytearray, start: int, end: int) -> None:
        now = monotonic()
        head = bytes(buffer[start : min(end, start + 24)]).split(b":", 2)
        try:
            index, seq = int(head[0]), int(head[1])
        except (ValueError, IndexError):
            self.foreign += 1
            return
        if index != self.index:
            self.foreign += 1
            return
        self.answered_at.append(now)
        self.answered_seq.append(seq)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.dropped is None and self.sending:
            self.dropped = f"closed by the server ({exc or 'clean close'})"
            self.dropped_at = monotonic()
        super().connection_lost(exc)


class Busy:
    """The busy kernel scenario's clients: the first ones, and those that join during the block."""

    def __init__(self) -> None:
        self.clients: list[BusyEcho] = []
        self.joins: list[asyncio.Task] = []
        self.settings: dict[str, Any] = {}

    def _factory(self, url: str) -> Any:
        s = self.settings
        index = len(self.clients) + len(self.joins)
        return _factory(
            BusyEcho, url, index, s["size"], s["rate"], s["ping_interval"], s["ping_timeout"]
        )

    async def open(
        self,
        url: str,
        clients: int,
        size: int,
        rate: float,
        ping_interval: float,
        ping_timeout: float,
    ) -> dict[str, Any]:
        self.clients, self.joins = [], []
        self.settings = {
            "url": url,
            "size": size,
            "rate": rate,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
        }
        for _ in range(clients):
            ws = await connect(self._factory(url), url)
            ws.opened_at = monotonic()
            self.clients.append(ws)
        for ws in self.clients:
            ws.start()
        return {"connected": len(self.clients)}

    def join(self, timeout: float) -> dict[str, Any]:
        """Connect one more client in the background; its handshake time is in the result."""
        url = self.settings["url"]
        factory = self._factory(url)
        started = monotonic()

        async def one() -> BusyEcho:
            ws = await connect(factory, url, timeout=timeout)
            ws.connect_started, ws.opened_at = started, monotonic()
            ws.start()
            return ws

        self.joins.append(asyncio.create_task(one()))
        return {"started": started}

    async def result(
        self, block_start: float, block_end: float, drain_timeout: float
    ) -> dict[str, Any]:
        joined: list[BusyEcho] = []
        join_errors: list[str] = []
        if self.joins:  # each had the block and then ``drain_timeout`` seconds to open
            await asyncio.wait(self.joins, timeout=drain_timeout)
        for task in self.joins:
            if not task.done():
                task.cancel()
                join_errors.append(
                    f"no handshake within {drain_timeout:g} s of the block's end"
                    f" ({monotonic() - block_end:.1f} s)"
                )
                continue
            try:
                joined.append(task.result())
            except (OSError, asyncio.TimeoutError) as error:
                join_errors.append(f"{type(error).__name__}: {error}")
        everyone = [*self.clients, *joined]
        for ws in everyone:
            ws.sending = False
        # Let every answer come in (or the time run out), then stop pinging and close.
        deadline = monotonic() + drain_timeout
        while monotonic() < deadline and any(
            ws.open and len(ws.answered_seq) < len(ws.sent_at) for ws in everyone
        ):
            await asyncio.sleep(0.01)
        still_open = [ws.open for ws in everyone]
        for ws in everyone:
            await ws.stop()
        await asyncio.gather(*(ws.close(timeout=5) for ws in everyone if not ws.closed.done()))

        sent_during = answered_during = backlog = backlog_unanswered = 0
        first_after = float("inf")
        last_backlog = 0.0
        answered_in_order = True
        problems: list[str] = []
        rtts = array("d")
        pings_during = 0
        for ws in everyone:
            seqs = list(ws.answered_seq)
            sent = len(ws.sent_at)
            if seqs != list(range(len(seqs))):
                answered_in_order = False
                duplicates = len(seqs) - len(set(seqs))
                problems.append(
                    f"client {ws.index}: answers out of order or twice ({duplicates} duplicates)"
                )
            if len(seqs) != sent:
                answered_in_order = False
                problems.append(f"client {ws.index}: {len(seqs)} answers to {sent} messages")
            if ws.foreign:
                problems.append(f"client {ws.index}: {ws.foreign} messages not its own")
            sent_during += sum(block_start <= t <= block_end for t in ws.sent_at)
            answered_by = {seq: t for seq, t in zip(seqs, ws.answered_at, strict=True)}
            for seq, at in enumerate(ws.sent_at):
                answered = answered_by.get(seq)
                if answered is not None and block_start < answered <= block_end:
                    answered_during += 1
                if at <= block_end and (answered is None or answered > block_end):
                    backlog += 1
                    if answered is not None:
                        last_backlog = max(last_backlog, answered)
                    else:
                        backlog_unanswered += 1
            after = [t for t in ws.answered_at if t > block_end]
            if after:
                first_after = min(first_after, after[0])
            for sent_ping, rtt in zip(ws.ping_sent, ws.ping_rtts, strict=False):
                if block_start <= sent_ping <= block_end:
                    pings_during += 1
                    rtts.append(rtt)
        # How fast the backlog went, once every message of it was answered.
        drained = bool(backlog) and not backlog_unanswered and first_after < 1e300
        drain_span = last_backlog - first_after if drained else 0.0
        return {
            "clients": len(self.clients),
            "joined": len(joined),
            "join_errors": join_errors,
            "connected": sum(still_open[: len(self.clients)]),
            "joined_connected": sum(still_open[len(self.clients) :]),
            "dropped": [
                f"client {ws.index}: {ws.dropped}, {ws.dropped_at - block_start:.2f} s after "
                "the block began"
                for ws in everyone
                if ws.dropped
            ],
            "sent": sum(len(ws.sent_at) for ws in everyone),
            "answered": sum(len(ws.answered_seq) for ws in everyone),
            "sent_during": sent_during,
            "answered_during": answered_during,
            "backlog": backlog,
            "first_answer_ms": (first_after - block_end) * 1000 if first_after < 1e300 else None,
            "backlog_unanswered": backlog_unanswered,
            "drained_ms": (last_backlog - block_end) * 1000 if drained else None,
            "drain_rate": backlog / drain_span if drain_span > 0 else None,
            "in_order_once": answered_in_order,
            "problems": problems,
            "handshakes": [
                {
                    "at_ms": (ws.connect_started - block_start) * 1000,
                    "handshake_ms": (ws.opened_at - ws.connect_started) * 1000,
                    "during_block": ws.opened_at <= block_end,
                }
                for ws in joined
            ],
            "pings_during": pings_during,
            "ping_rtt_max_ms": max(rtts) * 1000 if rtts else None,
        }


# --- the command loop ------------------------------------------------------------------------------


async def main() -> None:
    raise_fd_limit()
    broadcast = Broadcast()
    busy = Busy()

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
        elif cmd == "busy_open":
            reply(await busy.open(**command))
        elif cmd == "busy_join":
            reply(busy.join(**command))
        elif cmd == "busy_result":
            reply(await busy.result(**command))
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
