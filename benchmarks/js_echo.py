"""A JavaScript echo handler against the Python one, on the same ws_notebook server.

    python benchmarks/js_echo.py [--seconds S] [--rounds N] [--quick] [--json PATH]

One server process (``--serve``, started by this script) mounts two echo endpoints with the
event log on (1,000 events, as they come): ``py-echo``, whose Python
``on_message(message, client)`` calls ``client.send(message)``, and ``js-echo``, a JavaScript
module run in V8 (``ws_notebook.javascript``) whose
``export function onMessage(message) { return message; }`` replies the platform's way, by
returning the reply. This process drives them with a lean
asyncio client (one loop, masked frames, no library in the way), endpoints in alternation
(py, js, then js, py, ...), and prints each figure and the ratio JS / Python:

1. round trip, sequential: one connection, 64-byte text messages one at a time; messages/s
   and p50/p99 latency. Measured with every core kept from halting by idle-priority spinners
   (as ``compare.py`` does: on a virtual machine, waking a halted CPU costs more than a small
   echo) and as the machine is;
2. pipelined: 4 connections each keeping 32 messages of 64 bytes in flight; messages/s.

The goal is a ratio of at least 0.5. Where the time goes: each call into JavaScript is a
hand-over to V8's own thread and back (mini-racer runs each isolate on a thread of its own),
about 30 us when calls come back to back and 60-140 us when the threads slept in between,
on top of the Python handler's path; messages that arrive together run in one call (see
``ws_notebook/javascript/__init__.py``), which is what the pipelined figure shows. The server's
CPU time per message (all its threads, V8's included) is printed beside each figure: unlike
the rates, it hardly moves when other work shares the machine. ``--quick`` runs a short smoke
test (a few tenths of a second per figure) and exits 1 if a message was lost, changed or
answered out of order.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HOST, cpus_kept_awake, latency_summary  # noqa: E402

JS_ECHO = "export function onMessage(message) {\n  return message;\n}\n"
SIZE = 64
CONNECTIONS = 4
WINDOW = 32


# --- the server process ----------------------------------------------------------------------


async def serve() -> None:
    from ws_notebook import Descriptor, Handlers, Limits, Registry, Server

    def on_message(message: str | bytes, client: Any) -> None:
        client.send(message)

    folder = Path(tempfile.mkdtemp(prefix="js-echo-"))
    (folder / "echo.js").write_text(JS_ECHO, "utf-8")
    registry = Registry()
    registry.mount(
        Descriptor.new("py-echo", handler="bench", created_by="bench"),
        Handlers.from_namespace({"on_message": on_message}),
    )
    registry.mount(
        Descriptor.new("js-echo", handler="bench/echo.js", created_by="bench"),
        Handlers.from_file(folder / "echo.js"),
    )
    limits = Limits(ping_interval=0, ping_timeout=0, max_connections=10_000)
    server = Server(registry, HOST, 0, limits=limits)
    server.start()
    print(json.dumps({"port": server.port}), flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    await done  # stdin closed: the parent is finished
    server.stop()


# --- the client --------------------------------------------------------------------------------

MASK = b"\x00\x00\x00\x00"  # a zero mask leaves the payload as it is: no client-side cost


def frame(payload: bytes) -> bytes:
    return bytes((0x81, 0x80 | len(payload))) + MASK + payload  # text, < 126 bytes


class Client(asyncio.Protocol):
    def __init__(self, path: str) -> None:
        self.path = path
        self.buffer = bytearray()
        self.loop = asyncio.get_running_loop()
        self.opened = self.loop.create_future()
        self.handshaken = False
        self.received: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.on_reply: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        transport.write(
            b"GET " + self.path.encode() + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshaken:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(bytes(self.buffer[:end]).decode()))
                return
            del self.buffer[: end + 4]
            self.handshaken = True
            self.opened.set_result(None)
        buffer = self.buffer
        pos = 0
        replies = []
        while len(buffer) - pos >= 2:
            length = buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            if start + length > len(buffer):
                break
            replies.append(bytes(buffer[start : start + length]))
            pos = start + length
        del buffer[:pos]
        if replies and self.on_reply is not None:
            self.on_reply(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(str(exc)))


async def connect(port: int, name: str) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: Client(f"/websockets/service/{name}"), HOST, port
    )
    await client.opened
    return client


def payload(seq: int) -> bytes:
    head = f"{seq:08d} ".encode()
    return head + b"x" * (SIZE - len(head))


async def round_trips(port: int, name: str, seconds: float) -> dict[str, Any]:
    client = await connect(port, name)
    latencies: list[float] = []
    errors = 0
    seq = 0
    loop = asyncio.get_running_loop()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        message = payload(seq)
        future = loop.create_future()
        client.on_reply = lambda replies, f=future: f.done() or f.set_result(replies)
        started = time.perf_counter()
        client.transport.write(frame(message))
        replies = await future
        latencies.append(time.perf_counter() - started)
        errors += replies != [message]
        seq += 1
    client.transport.close()
    total = sum(latencies)
    return {"rate": len(latencies) / total, **latency_summary(latencies), "errors": errors}


async def pipelined(port: int, name: str, seconds: float) -> dict[str, Any]:
    clients = [await connect(port, name) for _ in range(CONNECTIONS)]
    loop = asyncio.get_running_loop()
    counts = [0] * CONNECTIONS
    sent = [0] * CONNECTIONS
    errors = [0]
    running = [True]
    done = loop.create_future()

    def handler(index: int) -> Any:
        client = clients[index]

        def on_reply(replies: list[bytes]) -> None:
            for data in replies:
                if data != payload(counts[index]):
                    errors[0] += 1
                counts[index] += 1
            if running[0]:
                more = b"".join(frame(payload(sent[index] + i)) for i in range(len(replies)))
                sent[index] += len(replies)
                client.transport.write(more)
            elif all(c == s for c, s in zip(counts, sent, strict=True)) and not done.done():
                done.set_result(None)

        return on_reply

    for index, client in enumerate(clients):
        client.on_reply = handler(index)
        client.transport.write(b"".join(frame(payload(i)) for i in range(WINDOW)))
        sent[index] = WINDOW
    await asyncio.sleep(seconds * 0.2)  # warm up
    before = sum(counts)
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    measured = sum(counts) - before
    elapsed = time.perf_counter() - started
    running[0] = False
    await asyncio.wait_for(done, 10)
    for client in clients:
        client.transport.close()
    return {"rate": measured / elapsed, "errors": errors[0]}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its threads (V8's included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measured(scenario: Any, pid: int, port: int, name: str, seconds: float) -> dict:
    """A scenario's figures, and the server's CPU time per message during it."""
    before = cpu_seconds(pid)
    started = time.perf_counter()
    result = await scenario(port, name, seconds)
    elapsed = time.perf_counter() - started
    messages = result["rate"] * elapsed  # the measured window; warm-up and setup come on top
    result["cpu_us"] = (cpu_seconds(pid) - before) / max(messages, 1) * 1e6
    return result


async def measure(pid: int, port: int, seconds: float, rounds: int) -> dict[str, Any]:
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    scenarios = [
        ("round trip, cores kept awake", round_trips, True),
        ("round trip, cores left to halt", round_trips, False),
        ("pipelined, 4 x 32 in flight", pipelined, True),
    ]
    for title, scenario, awake in scenarios:
        runs: dict[str, list[dict[str, Any]]] = {"py": [], "js": []}
        for round_ in range(rounds):
            order = ["py", "js"] if round_ % 2 == 0 else ["js", "py"]
            for name in order:
                if awake:
                    async with cpus_kept_awake(seconds * 4 + 5):
                        runs[name].append(
                            await measured(scenario, pid, port, f"{name}-echo", seconds)
                        )
                else:
                    runs[name].append(await measured(scenario, pid, port, f"{name}-echo", seconds))
        results[title] = runs
    return results


def report(results: dict[str, Any]) -> tuple[list[str], bool]:
    lines = []
    clean = True
    for title, runs in results.items():
        figures = {}
        cpu: dict[str, float] = {}
        for name in ("py", "js"):
            rate = statistics.median(run["rate"] for run in runs[name])
            p50 = [run["p50_ms"] for run in runs[name] if "p50_ms" in run]
            p99 = [run["p99_ms"] for run in runs[name] if "p99_ms" in run]
            figures[name] = (rate, statistics.median(p50) if p50 else None, p99)
            cpu[name] = statistics.median(run["cpu_us"] for run in runs[name])
            clean = clean and not any(run["errors"] for run in runs[name])
        (py_rate, py_p50, py_p99), (js_rate, js_p50, js_p99) = figures["py"], figures["js"]
        line = f"{title}: Python {py_rate:,.0f}/s, JavaScript {js_rate:,.0f}/s"
        if py_p50 is not None and js_p50 is not None:
            line += (
                f" (p50 {py_p50:.3f} / {js_p50:.3f} ms, "
                f"p99 {statistics.median(py_p99):.3f} / {statistics.median(js_p99):.3f} ms)"
            )
        line += f": JS/Python = {js_rate / py_rate:.2f}"
        line += f"; server CPU per message {cpu['py']:.0f} / {cpu['js']:.0f} us"
        lines.append(line)
    return lines, clean


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per figure and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (endpoints alternate)")
    parser.add_argument("--quick", action="store_true", help="a smoke test, about 5 s")
    parser.add_argument("--json", help="write the figures there too")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        await serve()
        return 0
    seconds, rounds = (0.3, 1) if args.quick else (args.seconds, args.rounds)
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        hello = json.loads(await asyncio.wait_for(server.stdout.readline(), 60))
        results = await measure(server.pid, hello["port"], seconds, rounds)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        await asyncio.wait_for(server.wait(), 30)
    lines, clean = report(results)
    print(f"JavaScript echo vs Python echo, ws_notebook, {os.cpu_count()} cores:")
    for line in lines:
        print("  " + line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), "utf-8")
    if not clean:
        print("messages were lost, changed or answered out of order", file=sys.stderr)
    return 0 if clean or not args.quick else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
