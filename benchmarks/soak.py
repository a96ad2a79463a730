"""Soak test: many clients connecting, talking and leaving at random, some of them misbehaving.

    python benchmarks/soak.py [--seconds 60] [--clients 200] [--quick] [--json PATH]

A ws_notebook echo endpoint is served by a ``ws_notebook.Server`` (plain Python API, no kernel)
in a separate process, started as ``soak.py --serve``; it answers ``stats`` requests on its
stdin/stdout pipe (clients, asyncio tasks, fds, RSS, close codes). This process runs the clients
on loopback (``websockets``, asyncio), CLIENTS loops at once, each a series of sessions until
SECONDS have passed:

- well-behaved (most sessions): connect, send 1-20 text or binary messages (0 B to 48 KiB; one
  at a time or pipelined), check every echo, close with 1000;
- abrupt: connect, send a little, then drop the TCP connection with no close frame, half of
  them in the middle of a frame;
- oversize: send one message bigger than the server's maximum message size (64 KiB here):
  the server must close with 1009;
- slow readers (a few, for the whole run): send and never read, while the server echoes to them;
  the server should disconnect them (1008) once their send queue is full (256 KiB here) rather
  than let its memory grow. Each stops by itself after sending 64 times that queue.

Then it waits for the server to settle (up to 15 s) and checks: no connection left (0 clients,
the server process's open fds, counted in /proc, back to the baseline), no asyncio task left
(``len(asyncio.all_tasks())`` back to the baseline), memory back near its start (RSS after
``gc.collect()`` and ``malloc_trim``, within 10 MB or 25 %), every message a well-behaved client
sent answered, every oversize client closed with 1009, every slow reader disconnected. Everything
is bounded: every session has a timeout, loops stop at the deadline, the server is killed on exit.

It prints the figures and each check (PASS/FAIL) and exits 1 if a check failed, 2 if the run
itself broke. ``--quick`` is 8 s with 50 clients and 1 slow reader (about 15 s in all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import inspect
import json
import logging
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(ROOT))

ENDPOINT = "echo"
MAX_MESSAGE_SIZE = 64 * 1024
MAX_SEND_QUEUE = 256 * 1024
SLOW_BUDGET = 64 * MAX_SEND_QUEUE  # what a slow reader sends at most: 16 MiB
SLOW_CHUNK = 32 * 1024
SLOW_WAIT = 8.0  # seconds a slow reader waits to be disconnected, once its budget is sent
SESSION_TIMEOUT = 20.0
SETTLE_TIMEOUT = 15.0
RSS_TOLERANCE_MB = 10.0
RSS_TOLERANCE_RATIO = 0.25
WEIGHTS = {"good": 0.88, "abrupt": 0.07, "oversize": 0.05}


# --- the server process ---------------------------------------------------------------------


def _rss_kb(pid: int | str = "self") -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields


def _fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_options(max_message_size: int, max_send_queue: int) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments for ``ws_notebook.Server`` with these limits, and the limits it lacks.

    ``limits=Limits(...)`` where the Server has it, else Tornado's application settings.
    """
    from ws_notebook import server as server_module

    parameters = inspect.signature(server_module.Server.__init__).parameters
    if "limits" in parameters and hasattr(server_module, "Limits"):
        fields = {field.name for field in dataclasses.fields(server_module.Limits)}
        wanted = {"max_message_size": max_message_size, "max_send_queue": max_send_queue}
        limits = {name: value for name, value in wanted.items() if name in fields}
        missing = sorted(set(wanted) - set(limits))
        return {"limits": server_module.Limits(**limits)}, missing
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return {"websocket_max_message_size": max_message_size}, ["max_send_queue"]
    return {}, ["max_message_size", "max_send_queue"]


class _ErrorCount(logging.Handler):
    """Counts the ws_notebook logger's errors by kind, with the role of the client concerned."""

    def __init__(self, roles: dict[str, str]) -> None:
        super().__init__(logging.ERROR)
        self.roles = roles
        self.count = 0
        self.kinds: Counter = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        message = record.getMessage()
        client = re.search(r"\bclient (c\d+)\b", message)
        role = self.roles.get(client.group(1), "?") if client else "-"
        self.kinds[f"{role} client: " + re.sub(r"\bc\d+\b", "cN", message)[:200]] += 1


async def serve(max_message_size: int, max_send_queue: int) -> None:
    """``--serve``: the echo endpoint; one JSON line per ``stats`` line read on stdin."""
    from ws_notebook import Descriptor, Handlers, Registry, Server

    roles: dict[str, str] = {}  # open client id -> role, to say whose errors they are
    errors = _ErrorCount(roles)
    logger = logging.getLogger("ws_notebook")
    logger.addHandler(errors)
    logger.propagate = False  # handler tracebacks (a send to a closing client) are counted only
    closes: dict[str, Counter] = defaultdict(Counter)

    loop_errors: Counter = Counter()
    loop = asyncio.get_running_loop()

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Count what asyncio reports (e.g. "Task exception was never retrieved"), and log it."""
        error = context.get("exception")
        loop_errors[f"{context.get('message')}: {type(error).__name__ if error else '-'}"] += 1
        loop.default_exception_handler(context)

    loop.set_exception_handler(on_loop_error)

    def role(client: Any) -> str:
        return client.query.get("role", ["?"])[0]

    def on_open(client: Any) -> None:
        roles[client.id] = role(client)

    def on_message(message: str | bytes, client: Any) -> None:
        client.send(message)  # not awaited, as in the README's echo

    def on_close(client: Any) -> None:
        roles.pop(client.id, None)
        closes[role(client)][str(client.close_code)] += 1

    registry = Registry()
    mounted = registry.mount(
        Descriptor.new(ENDPOINT, handler="soak", created_by="soak"),
        Handlers.from_namespace(
            {"on_open": on_open, "on_message": on_message, "on_close": on_close}
        ),
    )
    endpoint = mounted.endpoint
    options, missing = server_options(max_message_size, max_send_queue)
    server = Server(registry, host="127.0.0.1", **options)
    server.start()
    done = loop.create_future()
    libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
    pending = b""

    def stats(trim: bool) -> dict[str, Any]:
        gc.collect()
        if trim and libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
        memory = _rss_kb()
        return {
            "clients": len(endpoint.clients),
            "open_by_role": dict(Counter(role(client) for client in endpoint.clients.values())),
            "open_slow": sorted(
                client.query.get("n", ["?"])[0]
                for client in endpoint.clients.values()
                if role(client) == "slow"
            ),
            "connections": endpoint.connections,
            "messages_in": endpoint.messages_in,
            "messages_out": endpoint.messages_out,
            "tasks": len(asyncio.all_tasks()),
            "fds": _fd_count(),
            "rss_kb": memory["VmRSS"],
            "peak_rss_kb": memory["VmHWM"],
            "closes": {name: dict(codes) for name, codes in closes.items()},
            "handler_errors": errors.count,
            "handler_error_kinds": dict(errors.kinds),
            "loop_errors": dict(loop_errors),
            "limits_missing": missing,
        }

    def on_stdin() -> None:
        nonlocal pending
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:  # the parent is gone
            if not done.done():
                done.set_result(None)
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            command = line.decode().strip()
            if command in ("stats", "stats trim"):
                reply = stats(trim=command == "stats trim")
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
            elif command == "quit" and not done.done():
                done.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    sys.stdout.write(json.dumps({"port": server.port, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    await done
    loop.remove_reader(sys.stdin.fileno())
    server.stop()


class ServerProcess:
    """The ``--serve`` subprocess and its stats pipe."""

    def __init__(self, log_path: Path | None) -> None:
        self.log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve",
                "--max-message-size",
                str(MAX_MESSAGE_SIZE),
                "--max-send-queue",
                str(MAX_SEND_QUEUE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=ROOT,
        )
        hello = self._line(timeout=30)
        self.port = hello["port"]
        self.pid = self.process.pid
        self.url = f"ws://127.0.0.1:{self.port}/websockets/service/{ENDPOINT}"

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise RuntimeError(f"the server process did not answer within {timeout} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server process exited ({self.process.poll()})")
        return json.loads(line)

    async def stats(self, trim: bool = False) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(b"stats trim\n" if trim else b"stats\n")
        self.process.stdin.flush()
        found = await asyncio.to_thread(self._line, 10)
        found["fds_proc"] = _fd_count(self.pid)  # counted from outside, in /proc
        return found

    def stop(self) -> int | None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.write(b"quit\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()
        return self.process.returncode


# --- the clients -------------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    sessions: Counter = dataclasses.field(default_factory=Counter)
    connected: int = 0
    good_sent: int = 0
    good_answered: int = 0
    good_mismatched: int = 0
    good_errors: Counter = dataclasses.field(default_factory=Counter)
    abrupt_errors: Counter = dataclasses.field(default_factory=Counter)
    oversize_codes: Counter = dataclasses.field(default_factory=Counter)
    slow: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    timeouts: Counter = dataclasses.field(default_factory=Counter)


def _message(rng: random.Random) -> str | bytes:
    size = rng.choice([0, 1, 10, 100, 1000, 4000, 16000, 48000])
    size = rng.randint(size // 2, size) if size else 0
    if rng.random() < 0.5:
        return rng.randbytes(size)
    return "".join(rng.choice("abcdefé€😀 ") for _ in range(size // 4 + 1))[: size // 2 + 1]


async def _connect(url: str, role: str, n: int) -> Any:
    import websockets

    return await websockets.connect(
        f"{url}?role={role}&n={n}", max_size=None, ping_interval=None, compression=None
    )


async def good_session(url: str, rng: random.Random, tally: Tally, n: int) -> None:
    from websockets.exceptions import ConnectionClosed

    ws = await _connect(url, "good", n)
    tally.connected += 1
    messages = [_message(rng) for _ in range(rng.randint(1, 20))]
    try:
        if rng.random() < 0.5:  # lock-step
            for message in messages:
                await ws.send(message)
                tally.good_sent += 1
                answer = await ws.recv()
                tally.good_answered += answer == message
                tally.good_mismatched += answer != message
        else:  # pipelined
            for message in messages:
                await ws.send(message)
                tally.good_sent += 1
            for message in messages:
                answer = await ws.recv()
                tally.good_answered += answer == message
                tally.good_mismatched += answer != message
        await ws.close()
    except ConnectionClosed as error:
        tally.good_errors[f"closed {error.rcvd.code if error.rcvd else 'without close frame'}"] += 1
        ws.transport.abort()


async def abrupt_session(url: str, rng: random.Random, tally: Tally, n: int) -> None:
    ws = await _connect(url, "abrupt", n)
    tally.connected += 1
    try:
        for _ in range(rng.randint(0, 3)):
            await ws.send(_message(rng))
        if rng.random() < 0.5:
            await asyncio.sleep(rng.random() * 0.05)  # some echoes may be on their way
        if rng.random() < 0.5:  # mid-frame: a masked binary frame announcing 1000 bytes, 10 sent
            ws.transport.write(b"\x82\xfe\x03\xe8" + rng.randbytes(4) + rng.randbytes(10))
    except Exception as error:  # the connection is dropped either way
        tally.abrupt_errors[type(error).__name__] += 1
    ws.transport.abort()


async def oversize_session(url: str, rng: random.Random, tally: Tally, n: int) -> None:
    from websockets.exceptions import ConnectionClosed

    ws = await _connect(url, "oversize", n)
    tally.connected += 1
    size = MAX_MESSAGE_SIZE + rng.randint(1, MAX_MESSAGE_SIZE)
    try:
        await ws.send(rng.randbytes(size) if rng.random() < 0.5 else "x" * size)
        await asyncio.wait_for(ws.recv(), 10)
        tally.oversize_codes["answered instead of closed"] += 1
    except ConnectionClosed as error:
        tally.oversize_codes[str(error.rcvd.code) if error.rcvd else "no close frame"] += 1
    except asyncio.TimeoutError:
        tally.oversize_codes["still open after 10 s"] += 1
    ws.transport.abort()


async def slow_session(server: ServerProcess, n: int, tally: Tally) -> None:
    """Send, never read; see whether (and when) the server drops this client."""
    ws = await _connect(server.url, "slow", n)
    tally.connected += 1
    started = time.monotonic()
    sent = 0
    chunk = b"s" * SLOW_CHUNK
    send_error = None
    peak_rss_kb = 0
    try:
        while sent < SLOW_BUDGET:
            await asyncio.wait_for(ws.send(chunk), 5)
            sent += len(chunk)
            if sent % (16 * SLOW_CHUNK) == 0:
                await asyncio.sleep(0.01)  # let the others run
    except Exception as error:  # the server dropped us, or stopped reading
        send_error = f"{type(error).__name__}: {error}"[:200]
    budget_sent_after = time.monotonic() - started
    disconnected_after = None
    deadline = time.monotonic() + SLOW_WAIT
    while time.monotonic() < deadline:
        stats = await server.stats()
        peak_rss_kb = max(peak_rss_kb, stats["rss_kb"])
        if str(n) not in stats["open_slow"]:
            disconnected_after = time.monotonic() - started
            break
        await asyncio.sleep(0.25)
    ws.transport.abort()
    tally.slow.append(
        {
            "n": n,
            "sent_bytes": sent,
            "send_error": send_error,
            "seconds_sending": round(budget_sent_after, 2),
            "disconnected_by_server": disconnected_after is not None,
            "disconnected_after_s": round(disconnected_after, 2) if disconnected_after else None,
            "server_rss_while_slow_mb": round(peak_rss_kb / 1024, 1),
        }
    )


async def client_loop(url: str, n: int, deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    sessions = {"good": good_session, "abrupt": abrupt_session, "oversize": oversize_session}
    roles, weights = list(WEIGHTS), list(WEIGHTS.values())
    while time.monotonic() < deadline:
        role = rng.choices(roles, weights)[0]
        tally.sessions[role] += 1
        try:
            await asyncio.wait_for(sessions[role](url, rng, tally, n), SESSION_TIMEOUT)
        except asyncio.TimeoutError:
            tally.timeouts[role] += 1
        except Exception as error:
            tally.good_errors[f"{role}: {type(error).__name__}: {error}"[:120]] += 1
        await asyncio.sleep(rng.random() * 0.05)


async def settle(server: ServerProcess, baseline: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Wait until the server is back to its baseline (or SETTLE_TIMEOUT); the last stats."""
    started = time.monotonic()
    while True:
        stats = await server.stats()
        back = (
            stats["clients"] == 0
            and stats["tasks"] <= baseline["tasks"]
            and stats["fds_proc"] <= baseline["fds_proc"]
        )
        if back or time.monotonic() - started > SETTLE_TIMEOUT:
            return await server.stats(trim=True), time.monotonic() - started
        await asyncio.sleep(0.2)


async def soak(seconds: float, clients: int, slow_readers: int, seed: int, log: Path | None):
    server = ServerProcess(log)
    tally = Tally()
    try:
        # Warm up (imports, caches, the first connection's allocations), then take the baseline.
        warm = Tally()
        rng = random.Random(seed - 1)
        for n in range(5):
            await good_session(server.url, rng, warm, -1 - n)
        await abrupt_session(server.url, rng, warm, -9)
        await oversize_session(server.url, rng, warm, -10)
        await asyncio.sleep(0.5)
        baseline, _ = await settle(server, {"tasks": 10**6, "fds_proc": 10**6})
        started = time.monotonic()
        deadline = started + seconds
        tasks = [
            asyncio.create_task(client_loop(server.url, n, deadline, tally, seed + n))
            for n in range(clients)
        ]
        for n in range(slow_readers):
            tally.sessions["slow"] += 1
            tasks.append(asyncio.create_task(slow_session(server, n, tally)))
        peak = baseline
        while not all(task.done() for task in tasks):
            await asyncio.sleep(0.5)
            stats = await server.stats()
            if stats["rss_kb"] > peak["rss_kb"]:
                peak = stats
        await asyncio.gather(*tasks)
        load_seconds = time.monotonic() - started
        final, settle_seconds = await settle(server, baseline)
    finally:
        code = server.stop()
    return tally, baseline, peak, final, load_seconds, settle_seconds, code


def report(args: argparse.Namespace, result: tuple) -> dict[str, Any]:
    tally, baseline, peak, final, load_seconds, settle_seconds, exit_code = result
    mb = 1 / 1024
    rss_growth = (final["rss_kb"] - baseline["rss_kb"]) * mb
    tolerance = max(RSS_TOLERANCE_MB, RSS_TOLERANCE_RATIO * baseline["rss_kb"] * mb)
    server_closes = sum(sum(codes.values()) for codes in final["closes"].values())
    baseline_closes = sum(sum(codes.values()) for codes in baseline["closes"].values())
    oversize_total = sum(tally.oversize_codes.values())
    checks = {
        "no connection left (0 clients)": final["clients"] == 0,
        "server fds back to baseline (/proc)": final["fds_proc"] <= baseline["fds_proc"],
        "asyncio tasks back to baseline": final["tasks"] <= baseline["tasks"],
        "every connection closed on the server": (
            final["connections"] - baseline["connections"] == tally.connected
            and server_closes - baseline_closes == tally.connected
        ),
        "RSS back near its start": rss_growth <= tolerance,
        "every well-behaved message answered": (
            tally.good_sent > 0
            and tally.good_answered == tally.good_sent
            and tally.good_mismatched == 0
            and not tally.good_errors
            and not tally.timeouts
        ),
        "oversize messages closed with 1009": (
            tally.oversize_codes["1009"] == oversize_total if oversize_total else None
        ),
        "slow readers disconnected by the server": (
            all(slow["disconnected_by_server"] for slow in tally.slow) if tally.slow else None
        ),
        "no unretrieved task exceptions on the server": not final["loop_errors"],
        "server process exited cleanly": exit_code == 0,
    }
    figures = {
        "seconds of load": round(load_seconds, 1),
        "client loops": args.clients,
        "slow readers": args.slow_readers,
        "sessions": dict(tally.sessions),
        "connections": tally.connected,
        "sessions per second": round(sum(tally.sessions.values()) / load_seconds, 1),
        "well-behaved messages sent": tally.good_sent,
        "well-behaved messages answered": tally.good_answered,
        "echo mismatches": tally.good_mismatched,
        "well-behaved errors": dict(tally.good_errors),
        "session timeouts": dict(tally.timeouts),
        "messages/s echoed": round(
            (final["messages_out"] - baseline["messages_out"]) / load_seconds
        ),
        "oversize: close codes seen by the client": dict(tally.oversize_codes),
        "close codes recorded by the server, by role": final["closes"],
        "slow reader sessions": tally.slow,
        "settle seconds": round(settle_seconds, 1),
        "server clients: baseline / final": [baseline["clients"], final["clients"]],
        "server fds (/proc): baseline / final": [baseline["fds_proc"], final["fds_proc"]],
        "server tasks: baseline / final": [baseline["tasks"], final["tasks"]],
        "server RSS MB: baseline / peak / final (after gc + malloc_trim)": [
            round(baseline["rss_kb"] * mb, 1),
            round(peak["rss_kb"] * mb, 1),
            round(final["rss_kb"] * mb, 1),
        ],
        "server RSS growth MB (tolerance)": [round(rss_growth, 1), round(tolerance, 1)],
        "server peak RSS MB (VmHWM)": round(final["peak_rss_kb"] * mb, 1),
        "server handler errors logged": final["handler_errors"] - baseline["handler_errors"],
        "server handler errors, by kind": final["handler_error_kinds"],
        "server asyncio loop errors (all run)": final["loop_errors"],
        "limits the Server lacks": final["limits_missing"],
    }
    return {"figures": figures, "checks": checks}


def print_report(found: dict[str, Any]) -> None:
    print("\nws_notebook soak")
    for name, value in found["figures"].items():
        if name == "slow reader sessions":
            for slow in value:
                print(f"  slow reader {slow['n']}: {json.dumps(slow)}")
            continue
        print(f"  {name}: {json.dumps(value, ensure_ascii=False)}")
    print()
    for name, ok in found["checks"].items():
        print(f"  {'n/a ' if ok is None else 'PASS' if ok else 'FAIL'}  {name}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--slow-readers", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="8 s, 50 clients, 1 slow reader")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write figures and checks here")
    parser.add_argument("--server-log", type=Path, help="the server process's stderr")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--max-message-size", type=int, default=MAX_MESSAGE_SIZE)
    parser.add_argument("--max-send-queue", type=int, default=MAX_SEND_QUEUE)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.clients, args.slow_readers = 8.0, 50, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.max_message_size, args.max_send_queue))
        return 0
    try:
        result = asyncio.run(
            soak(args.seconds, args.clients, args.slow_readers, args.seed, args.server_log)
        )
    except Exception as error:
        print(f"BROKEN: {type(error).__name__}: {error}")
        return 2
    found = report(args, result)
    print_report(found)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(found, indent=2, ensure_ascii=False))
    return 1 if False in found["checks"].values() else 0


if __name__ == "__main__":
    sys.exit(main())
