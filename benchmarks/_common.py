"""What the comparison benchmark's processes share: the control pipe, statistics, process figures.

Every process of ``compare.py`` (the orchestrator, one process per server, one client process)
talks over its stdin/stdout with one JSON object per line: a request ``{"cmd": ...}`` goes down,
one reply (or, for a few commands, an acknowledgement and then a reply) comes back up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"


class Broken(RuntimeError):
    """The run itself failed (a process died, a client could not connect), not a slow figure."""


# --- process figures -------------------------------------------------------------------------


def raise_fd_limit(wanted: int = 8192) -> int:
    """Raise this process's open-file limit toward ``wanted`` (1,000 connections need more fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process, in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    """User plus system CPU time this process has used so far."""
    times = os.times()
    return times.user + times.system


# A spinner of the lowest priority Linux has (SCHED_IDLE): it runs only on a core nothing else
# wants, and gives the core up at once when something does. It stops by itself at its deadline
# or when its parent is gone.
_SPINNER = """
import os, sys, time
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
deadline, parent = time.monotonic() + float(sys.argv[1]), os.getppid()
while time.monotonic() < deadline and os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@contextlib.asynccontextmanager
async def cpus_kept_awake(limit: float = 600.0) -> Any:
    """Keep every core busy with idle-priority spinners, so that none is halted in between.

    On a virtual machine, waking a halted virtual CPU costs tens of microseconds, more than a
    server spends on a small echo; a sequential round trip then measures how soon each process
    went to sleep rather than the server's work. Yields how many spinners run (0 where
    SCHED_IDLE does not exist).
    """
    if not hasattr(os, "SCHED_IDLE"):
        yield 0
        return
    spinners = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _SPINNER, str(limit))
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        await asyncio.sleep(0.2)  # started and spinning
        yield len(spinners)
    finally:
        for spinner in spinners:
            with contextlib.suppress(ProcessLookupError):
                spinner.kill()
            await spinner.wait()


# --- statistics ------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values; NaN for none."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of latencies in seconds, as milliseconds."""
    ordered = sorted(seconds)
    return {
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] * 1000) if ordered else float("nan"),
        "count": len(ordered),
    }


# --- the control pipe: child side --------------------------------------------------------------


def reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve_commands(handle: Callable[[dict[str, Any]], Awaitable[bool]]) -> None:
    """Read JSON commands from stdin and run them one at a time until ``handle`` returns False.

    Reading goes through the running loop (``add_reader``), so the process keeps serving
    WebSocket traffic while it waits for the next command; stdin closing (the parent died)
    ends the loop, as does a ``quit`` command.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    pending = b""

    def on_stdin() -> None:
        nonlocal pending
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            lines.put_nowait(None)
            loop.remove_reader(sys.stdin.fileno())
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            lines.put_nowait(line.decode())

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    try:
        while True:
            line = await lines.get()
            if line is None:
                return
            if not line.strip():
                continue
            command = json.loads(line)
            if command.get("cmd") == "quit":
                reply({"ok": True})
                return
            try:
                go_on = await handle(command)
            except Exception as error:  # report it to the parent, which decides
                reply({"error": f"{type(error).__name__}: {error}"})
                go_on = True
            if not go_on:
                return
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(sys.stdin.fileno())


# --- the control pipe: parent side -------------------------------------------------------------


class Child:
    """A child process of the benchmark, driven over its stdin/stdout JSON lines."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.hello: dict[str, Any] = {}

    async def start(self, timeout: float = 60.0) -> dict[str, Any]:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            limit=2**24,
        )
        self.hello = await self.read(timeout)
        return self.hello

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise Broken(f"{self.name}: no answer within {timeout:.0f} s") from None
        if not line:
            raise Broken(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
        answer = json.loads(line)
        if "error" in answer:
            raise Broken(f"{self.name}: {answer['error']}")
        return answer

    async def request(self, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        await self.send(command)
        return await self.read(timeout)

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(Exception):
                await self.send({"cmd": "quit"})
                await asyncio.wait_for(process.wait(), 5)
        if process.returncode is None:
            process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 5)
        self._log.close()


def monotonic() -> float:
    """The clock every process stamps messages with: CLOCK_MONOTONIC, system-wide on Linux."""
    return time.monotonic()
