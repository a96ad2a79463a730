"""Load benchmark: a kernel serving ~10,000 WebSocket messages/s with the live panel displayed.

The target (from the issue): with 10,000 messages per second flowing for 10 s, the kernel still
executes a trivial cell within 100 ms, the kernel's memory stays flat, and the messages are all
served. This script measures that on a real kernel and prints the figures:

    python benchmarks/panel_load.py [--quick] [--rate 10000] [--seconds 10] [--clients 2]
                                    [--json PATH]

What it does, all in one run so that the ratios compare like with like on the same machine:

1. starts a kernel (jupyter_client, on this interpreter), loads ws_notebook and defines an echo
   endpoint with ``--no-panel``;
2. idle baseline: runs a trivial cell (``1+1``) over and over and times each round trip (until
   its ``execute_reply`` and its final IOPub ``idle`` both arrived);
3. load without the panel: client processes (``websockets``, asyncio, loopback) send RATE
   messages/s for SECONDS against the ``--no-panel`` endpoint, paced in batches every 10 ms and
   pipelined (they never wait for an echo before sending on), and count the echoes, while this
   process keeps timing ``1+1`` cells;
4. defines a second echo endpoint with its live panel displayed and runs the same load on it.

Every phase counts the widget updates the kernel sends (IOPub ``comm_msg``), reads the kernel's
RSS (psutil, else /proc) before the load, right after it and after a short settle, its CPU time,
and its garbage collections (a ``gc.callbacks`` probe in the kernel): a full collection of the
kernel's heap pauses its event loop, cells and WebSocket traffic alike, so the GC rows tell such
a pause from the server's own work when reading the latency figures.

Full mode always exits 0: it is a report. ``--quick`` (about 2 s of load at 2,000 messages/s)
exits 1 when the run itself breaks (kernel dead, no messages served, a client or cell failed),
never because of a timing figure. ``--json PATH`` also writes each phase's figures and what
broke, for the tests to check what holds at any scale (every message served, no figure
missing, the panel updated); the timing targets are only judged in full mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import queue
import sys
import textwrap
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LATENCY_TARGET_MS = 100.0
RSS_GROWTH_TARGET_MB = 20.0
SERVED_TARGET = 0.95
PING_INTERVAL = 0.02  # seconds between two trivial cells
TICK = 0.01  # clients send a batch every 10 ms
CELL_TIMEOUT = 30.0

PLAIN_CELL = """\
%%websocket plain --no-panel --description "benchmark echo, no panel"
def on_message(message, client):
    client.send(message)
"""

# Times the kernel's garbage collections, to tell a GC pause from the server's own work.
GC_PROBE = """\
import gc as _panel_load_gc_module, time as _panel_load_time
_panel_load_gc = []
def _panel_load_gc_probe(phase, info, _start=[0.0]):
    if phase == "start":
        _start[0] = _panel_load_time.perf_counter()
    else:
        _panel_load_gc.append((info["generation"], _panel_load_time.perf_counter() - _start[0]))
_panel_load_gc_module.callbacks.append(_panel_load_gc_probe)
"""
GC_SUMMARY = (
    "[sum(g == 2 for g, _ in _panel_load_gc), len(_panel_load_gc), "
    "1000 * max((d for _, d in _panel_load_gc), default=0)]"
)

PANEL_CELL = """\
%%websocket echo --description "benchmark echo, with its live panel"
def on_message(message, client):
    client.send(message)
"""


class Broken(RuntimeError):
    """The run itself failed (not a slow figure): kernel dead, cell failed, no traffic."""


# --- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(seconds, 0.50) * 1000,
        "p99": percentile(seconds, 0.99) * 1000,
        "max": (max(seconds) if seconds else float("nan")) * 1000,
        "count": len(seconds),
    }


# --- the load: client processes --------------------------------------------------------------


def load_client(
    index: int,
    url: str,
    rate: float,
    seconds: float,
    size: int,
    drain: float,
    go: Any,
    results: Any,
) -> None:
    """One client process: connect, wait for ``go``, send paced and pipelined, count echoes."""
    try:
        result = asyncio.run(_drive(index, url, rate, seconds, size, drain, go, results))
    except BaseException as error:  # report, whatever it is: the parent decides
        result = {"index": index, "error": f"{type(error).__name__}: {error}"}
    results.put(("result", result))


async def _drive(
    index: int,
    url: str,
    rate: float,
    seconds: float,
    size: int,
    drain: float,
    go: Any,
    results: Any,
) -> dict[str, Any]:
    try:
        from websockets.asyncio.client import connect
    except ImportError:  # websockets < 13
        from websockets import connect

    loop = asyncio.get_running_loop()
    async with connect(
        url, compression=None, open_timeout=20, close_timeout=2, ping_interval=None, max_size=None
    ) as ws:
        results.put(("ready", index))
        if not await loop.run_in_executor(None, go.wait, 60):
            raise TimeoutError("no go signal within 60 s")
        sent_at: deque[float] = deque()
        round_trips = array("d")
        received = 0
        last_echo = 0.0

        async def receive() -> None:
            nonlocal received, last_echo
            async for _message in ws:
                now = time.perf_counter()
                round_trips.append(now - sent_at.popleft())  # echoes come back in order
                received += 1
                last_echo = now

        receiver = asyncio.create_task(receive())
        pad = "x" * max(0, size - 10)
        start = time.perf_counter()
        sent = 0
        ticks = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            due = int(rate * elapsed) + 1
            while sent < due:  # catch up if a send had to wait for the socket to drain
                sent_at.append(time.perf_counter())
                await ws.send(f"{sent:09d} {pad}")
                sent += 1
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks * TICK - time.perf_counter()))
        send_window = time.perf_counter() - start
        deadline = time.perf_counter() + drain
        while received < sent and time.perf_counter() < deadline and not receiver.done():
            await asyncio.sleep(0.005)
        error = None
        if receiver.done():  # the connection ended before the echoes did
            failure = receiver.exception()
            error = repr(failure) if failure else "the server closed the connection"
        else:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
    return {
        "index": index,
        "sent": sent,
        "received": received,
        "send_window": send_window,
        "serve_window": (last_echo - start) if received else send_window,
        "round_trips": round_trips.tobytes(),
        "error": error,
    }


# --- the kernel --------------------------------------------------------------------------------


@dataclass
class _Cell:
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class KernelSession:
    """A real kernel, its client, and one task reading IOPub: it counts widget messages."""

    def __init__(self) -> None:
        self.manager: Any = None
        self.client: Any = None
        self.pid = 0
        self.comm_msgs = 0
        self.comm_bytes = 0
        self.comm_opens = 0
        self._cells: dict[str, _Cell] = {}
        self._pump: asyncio.Task | None = None

    async def start(self) -> None:
        from jupyter_client.manager import AsyncKernelManager

        self.manager = AsyncKernelManager(kernel_name="python3")
        self.manager.kernel_spec.argv[0] = sys.executable  # this interpreter, whatever is installed
        await self.manager.start_kernel(cwd=str(Path(__file__).resolve().parent.parent))
        self.client = self.manager.client()
        self.client.start_channels()
        await self.client.wait_for_ready(timeout=60)
        self._pump = asyncio.create_task(self._read_iopub())

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        if self.client is not None:
            self.client.stop_channels()
        if self.manager is not None:
            await self.manager.shutdown_kernel(now=True)

    async def alive(self) -> bool:
        return self.manager is not None and await self.manager.is_alive()

    async def _read_iopub(self) -> None:
        while True:
            try:
                message = await self.client.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "comm_msg":
                self.comm_msgs += 1
                self.comm_bytes += len(json.dumps(content)) + sum(
                    len(buffer) for buffer in message.get("buffers", ())
                )
                continue
            if kind == "comm_open":
                self.comm_opens += 1
            cell = self._cells.get(message["parent_header"].get("msg_id"))
            if cell is None:
                continue
            if kind == "stream":
                if content["name"] == "stdout":
                    cell.stdout += content["text"]
                else:
                    cell.stderr += content["text"]
            elif kind == "error":
                cell.error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                cell.idle.set()

    async def execute(self, code: str, timeout: float = CELL_TIMEOUT) -> tuple[_Cell, float]:
        """Run a cell; returns its output and its round trip (execute_reply and IOPub idle)."""
        cell = _Cell()
        start = time.perf_counter()
        msg_id = self.client.execute(code, store_history=False, allow_stdin=False)
        self._cells[msg_id] = cell
        deadline = start + timeout
        try:
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise Broken(f"cell {code[:40]!r} got no reply within {timeout:.0f} s")
                try:
                    reply = await self.client.get_shell_msg(timeout=min(remaining, 1.0))
                except queue.Empty:
                    if not await self.alive():
                        raise Broken(f"the kernel died running {code[:40]!r}") from None
                    continue
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            try:
                await asyncio.wait_for(cell.idle.wait(), max(0.001, deadline - time.perf_counter()))
            except asyncio.TimeoutError:
                raise Broken(f"cell {code[:40]!r}: no IOPub idle within {timeout:.0f} s") from None
        finally:
            self._cells.pop(msg_id, None)
        elapsed = time.perf_counter() - start
        if reply["content"]["status"] != "ok" and cell.error is None:
            cell.error = cell.stderr.strip() or reply["content"].get("evalue", "error")
        return cell, elapsed

    async def run(self, code: str) -> str:
        """Run a cell that must succeed; returns what it printed."""
        cell, _ = await self.execute(textwrap.dedent(code))
        if cell.error:
            raise Broken(f"cell failed: {cell.error}\n{cell.stderr}")
        return cell.stdout

    async def value(self, expression: str) -> Any:
        return json.loads(await self.run(f"print(json.dumps({expression}), end='')"))

    def rss(self) -> int:
        """The kernel process's resident set size, in bytes."""
        try:
            import psutil
        except ImportError:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
            raise Broken(f"no VmRSS for kernel process {self.pid}") from None
        return psutil.Process(self.pid).memory_info().rss

    def cpu_seconds(self) -> float:
        """User plus system CPU time the kernel process has used so far."""
        try:
            import psutil
        except ImportError:
            pass
        else:
            times = psutil.Process(self.pid).cpu_times()
            return times.user + times.system
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def time_cells(session: KernelSession, until: float, rss_peak: list[int]) -> list[float]:
    """Run ``1+1`` cells one after another until ``until``; their round trips in seconds."""
    latencies: list[float] = []
    while time.perf_counter() < until:
        cell, elapsed = await session.execute("1+1")
        if cell.error:
            raise Broken(f"the trivial cell failed: {cell.error}")
        latencies.append(elapsed)
        rss_peak[0] = max(rss_peak[0], session.rss())
        await asyncio.sleep(PING_INTERVAL)
    return latencies


# --- one phase of the run ----------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    sent: int | None = None
    received: int | None = None
    served_per_s: float | None = None
    round_trips: list[float] = field(default_factory=list)
    comm_msgs: int | None = None
    comm_bytes: int | None = None
    panel_updates: int | None = None
    rss_before: int | None = None
    rss_peak: int | None = None
    rss_after: int | None = None
    rss_settled: int | None = None
    cpu: float | None = None  # kernel CPU time / wall time, during the phase
    gc: list | None = None  # [full collections, all collections, longest pause in ms]
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


async def idle_phase(session: KernelSession, seconds: float) -> Phase:
    phase = Phase("idle")
    await time_cells(session, time.perf_counter() + 0.5, [0])  # warm-up, not counted
    peak = [session.rss()]
    phase.rss_before = peak[0]
    await session.run("_panel_load_gc.clear()")
    start, cpu = time.perf_counter(), session.cpu_seconds()
    phase.latencies = await time_cells(session, start + seconds, peak)
    phase.seconds = time.perf_counter() - start
    phase.cpu = (session.cpu_seconds() - cpu) / phase.seconds
    phase.gc = await session.value(GC_SUMMARY)
    phase.rss_peak = peak[0]
    phase.rss_after = phase.rss_settled = session.rss()
    return phase


async def load_phase(
    session: KernelSession,
    name: str,
    url: str,
    args: argparse.Namespace,
    panel: bool,
) -> Phase:
    phase = Phase(name)
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")  # never fork a process holding zmq sockets
    go = context.Event()
    results = context.Queue()
    drain = 5.0
    workers = [
        context.Process(
            target=load_client,
            args=(i, url, args.rate / args.clients, args.seconds, args.size, drain, go, results),
            name=f"panel_load client {i}",
            daemon=True,
        )
        for i in range(args.clients)
    ]
    updates_before = await session.value("panel.updates") if panel else None
    for worker in workers:
        worker.start()
    try:
        finished: list[dict[str, Any]] = []
        ready = 0
        while ready < len(workers):
            try:
                kind, payload = await loop.run_in_executor(None, results.get, True, 60)
            except queue.Empty:
                raise Broken("load clients did not connect within 60 s") from None
            if kind == "ready":
                ready += 1
            else:  # a client that could not connect reports its error instead
                finished.append(payload)
                ready += 1
        phase.rss_before = session.rss()
        comm_msgs, comm_bytes = session.comm_msgs, session.comm_bytes
        peak = [phase.rss_before]
        await session.run("_panel_load_gc.clear()")
        go.set()
        start, cpu = time.perf_counter(), session.cpu_seconds()
        phase.latencies = await time_cells(session, start + args.seconds, peak)
        while len(finished) < len(workers):
            timeout = max(1.0, start + args.seconds + drain + 30 - time.perf_counter())
            try:
                kind, payload = await loop.run_in_executor(None, results.get, True, timeout)
            except queue.Empty:
                raise Broken("load clients did not report within their time bound") from None
            if kind == "result":
                finished.append(payload)
        phase.seconds = time.perf_counter() - start
        phase.cpu = (session.cpu_seconds() - cpu) / phase.seconds
        phase.rss_after = session.rss()
        phase.rss_peak = max(peak[0], phase.rss_after)
        phase.comm_msgs = session.comm_msgs - comm_msgs
        phase.comm_bytes = session.comm_bytes - comm_bytes
        phase.gc = await session.value(GC_SUMMARY)
    finally:
        go.set()
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
    if panel:
        phase.panel_updates = await session.value("panel.updates") - updates_before
    phase.sent = sum(r.get("sent", 0) for r in finished)
    phase.received = sum(r.get("received", 0) for r in finished)
    phase.served_per_s = sum(
        r["received"] / r["serve_window"] for r in finished if r.get("received")
    )
    for result in finished:
        if result.get("round_trips"):
            phase.round_trips.extend(array("d", result["round_trips"]))
        if result.get("error"):
            phase.errors.append(f"client {result['index']}: {result['error']}")
    await asyncio.sleep(args.settle)
    phase.rss_settled = session.rss()
    return phase


# --- the report ----------------------------------------------------------------------------------


def figures(phase: Phase) -> dict[str, float | int | None]:
    """A phase's figures as numbers (None: not measured in this phase), for ``--json``."""
    latency = summary_ms(phase.latencies)
    round_trip = summary_ms(phase.round_trips) if phase.round_trips else None
    return {
        "cells": latency["count"],
        "latency_p50_ms": latency["p50"],
        "latency_p99_ms": latency["p99"],
        "sent": phase.sent,
        "received": phase.received,
        "served_per_s": phase.served_per_s,
        "round_trip_p50_ms": round_trip and round_trip["p50"],
        "round_trip_p99_ms": round_trip and round_trip["p99"],
        "comm_msgs": phase.comm_msgs,
        "panel_updates": phase.panel_updates,
        "gc_full": phase.gc and phase.gc[0],
        "gc_longest_ms": phase.gc and phase.gc[2],
        "cpu": phase.cpu,
        "rss_before": phase.rss_before,
        "rss_settled": phase.rss_settled,
        "seconds": phase.seconds,
    }


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _num(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def report(args: argparse.Namespace, idle: Phase, plain: Phase, panel: Phase, extra: dict) -> None:
    phases = [idle, plain, panel]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cells: list[str]) -> None:
        rows.append((label, cells))

    lat = [summary_ms(p.latencies) for p in phases]
    rtt = [summary_ms(p.round_trips) if p.round_trips else None for p in phases]
    row("cell `1+1` latency p50 (ms)", [f"{s['p50']:.1f}" for s in lat])
    row("cell `1+1` latency p99 (ms)", [f"{s['p99']:.1f}" for s in lat])
    row("cell `1+1` latency max (ms)", [f"{s['max']:.1f}" for s in lat])
    row("cells timed", [str(s["count"]) for s in lat])
    row("messages sent", [_num(p.sent) for p in phases])
    row("messages served (echoed back)", [_num(p.received) for p in phases])
    row(
        "served / sent",
        ["-" if not p.sent else f"{100 * (p.received or 0) / p.sent:.2f}%" for p in phases],
    )
    row("messages/s served", [_num(p.served_per_s) for p in phases])
    row("echo round trip p50 (ms)", ["-" if r is None else f"{r['p50']:.1f}" for r in rtt])
    row("echo round trip p99 (ms)", ["-" if r is None else f"{r['p99']:.1f}" for r in rtt])
    row("widget updates sent (comm_msg)", [_num(p.comm_msgs) for p in phases])
    row("widget update bytes (KiB)", [_num(p.comm_bytes and p.comm_bytes / 1024) for p in phases])
    row("panel flushes that changed", [_num(p.panel_updates) for p in phases])
    row(
        "kernel GC: full / all collections",
        ["-" if p.gc is None else f"{p.gc[0]} / {p.gc[1]}" for p in phases],
    )
    row(
        "kernel GC: longest pause (ms)", ["-" if p.gc is None else f"{p.gc[2]:.1f}" for p in phases]
    )
    row("kernel CPU (% of one core)", [_num(p.cpu and 100 * p.cpu) for p in phases])
    row("kernel RSS before (MB)", [_mb(p.rss_before) for p in phases])
    row("kernel RSS peak during (MB)", [_mb(p.rss_peak) for p in phases])
    row("kernel RSS right after (MB)", [_mb(p.rss_after) for p in phases])
    row(f"kernel RSS after {args.settle:g} s settle (MB)", [_mb(p.rss_settled) for p in phases])
    row(
        "kernel RSS growth (MB)",
        [
            "-" if p.rss_before is None else f"{(p.rss_settled - p.rss_before) / 2**20:+.1f}"
            for p in phases
        ],
    )
    row("phase duration (s)", [f"{p.seconds:.1f}" for p in phases])

    headers = ["", "idle", "load, --no-panel", "load, with panel"]
    width0 = max(len(label) for label, _ in rows)
    widths = [max(len(headers[i + 1]), *(len(c[i]) for _, c in rows)) for i in range(3)]
    line = "  ".join(
        ["".ljust(width0)] + [h.rjust(w) for h, w in zip(headers[1:], widths, strict=True)]
    )
    print()
    print(line)
    print("-" * len(line))
    for label, cells in rows:
        print(
            "  ".join(
                [label.ljust(width0)] + [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
            )
        )
    print()

    print("ratios (same run, same machine)")
    for which, key in (("p50", "p50"), ("p99", "p99")):
        print(
            f"  cell latency {which}, load with panel / idle:     {lat[2][key] / lat[0][key]:.2f}x"
            f"   (load without panel / idle: {lat[1][key] / lat[0][key]:.2f}x)"
        )
    if plain.served_per_s and panel.served_per_s:
        print(
            f"  messages/s served, with panel / without panel: "
            f"{panel.served_per_s / plain.served_per_s:.3f}"
        )
    print()

    p99 = lat[2]["p99"]
    growth = (panel.rss_settled - panel.rss_before) / 2**20
    served = (panel.received or 0) / panel.sent if panel.sent else 0.0

    def verdict(ok: bool, text: str) -> None:
        print(f"  {'PASS' if ok else 'MISS'}  {text}")

    print(f"targets (load with panel, {args.rate:,.0f} msg/s offered for {args.seconds:g} s)")
    verdict(p99 < LATENCY_TARGET_MS, f"p99 cell latency < {LATENCY_TARGET_MS:.0f} ms: {p99:.1f} ms")
    verdict(
        growth < RSS_GROWTH_TARGET_MB,
        f"kernel RSS growth < {RSS_GROWTH_TARGET_MB:.0f} MB (before -> after settle): {growth:+.1f} MB",
    )
    verdict(
        served >= SERVED_TARGET,
        f"messages served >= {SERVED_TARGET:.0%} of sent: {served:.2%} "
        f"({_num(panel.received)} of {_num(panel.sent)})",
    )
    achieved = (panel.sent or 0) / args.seconds
    verdict(
        achieved >= 0.95 * args.rate,
        f"clients offered the target rate: {achieved:,.0f} msg/s sent of {args.rate:,.0f}",
    )
    if extra:
        print()
        print(
            "kernel-side counters: "
            + ", ".join(f"{key} {value}" for key, value in extra.items() if value is not None)
        )


# --- main ------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The whole run; returns what broke (empty when it ran through) and each phase's figures."""
    broken: list[str] = []
    phases: dict[str, Any] = {}
    session = KernelSession()
    started = time.perf_counter()
    try:
        await session.start()
        await session.run(
            "%load_ext ws_notebook\nimport json, os, ws_notebook, ws_notebook.widgets"
        )
        session.pid = await session.value("os.getpid()")
        await session.run(GC_PROBE)
        await session.run(PLAIN_CELL)
        plain_url = await session.value("ws_notebook.url('plain')")
        print(f"kernel pid {session.pid} ready; plain endpoint at {plain_url}", flush=True)

        idle = await idle_phase(session, args.idle_seconds)
        print(f"idle baseline: {len(idle.latencies)} cells", flush=True)

        plain = await load_phase(session, "load, --no-panel", plain_url, args, panel=False)
        print(f"load without panel: {plain.received:,} of {plain.sent:,} served", flush=True)

        opens = session.comm_opens
        await session.run(PANEL_CELL)
        await session.run("panel = ws_notebook.widgets.panels()[-1]")
        if session.comm_opens == opens or await session.value("panel.name") != "echo":
            raise Broken("the echo endpoint's panel was not displayed")
        panel_url = await session.value("ws_notebook.url('echo')")
        await asyncio.sleep(args.settle)  # let the fresh panel's first flushes go by
        panel = await load_phase(session, "load, with panel", panel_url, args, panel=True)
        print(f"load with panel: {panel.received:,} of {panel.sent:,} served", flush=True)

        extra = await session.value(
            "{name: {'in': e.messages_in, 'out': e.messages_out, 'log dropped': e.log.dropped}"
            " for name, e in ((e.name, e) for e in ws_notebook.endpoints())}"
        )
        report(args, idle, plain, panel, {"endpoints": extra})
        phases = {"idle": figures(idle), "plain": figures(plain), "panel": figures(panel)}
        for phase in (plain, panel):
            broken += [f"{phase.name}: {error}" for error in phase.errors]
            if not phase.received:
                broken.append(f"{phase.name}: no messages served")
        if not idle.latencies or not panel.latencies:
            broken.append("no cell latencies measured")
    except Broken as error:
        broken.append(str(error))
    except Exception as error:
        broken.append(f"{type(error).__name__}: {error}")
    finally:
        try:
            if not await session.alive():
                broken.append("the kernel died")
        except Exception as error:
            broken.append(f"kernel state unknown: {error}")
        await session.stop()
    print(f"\nrun took {time.perf_counter() - started:.1f} s")
    return broken, phases


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="about 2 s of load at 2,000 msg/s (a smoke test)"
    )
    parser.add_argument("--rate", type=float, default=None, help="messages/s (default 10000)")
    parser.add_argument("--seconds", type=float, default=None, help="load duration (default 10)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (default 64)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.rate is None:
        args.rate = 2000.0 if args.quick else 10000.0
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 10.0
    if not (0 < args.rate <= 100_000 and 0 < args.seconds <= 120 and 1 <= args.clients <= 8):
        parser.error("keep --rate in (0, 100000], --seconds in (0, 120], --clients in [1, 8]")
    args.idle_seconds = 1.0 if args.quick else 3.0
    args.settle = 1.0 if args.quick else 3.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"ws_notebook panel load benchmark ({'quick' if args.quick else 'full'}): "
        f"{args.rate:,.0f} msg/s of {args.size} bytes for {args.seconds:g} s from "
        f"{args.clients} client processes; python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}",
        flush=True,
    )
    budget = 120 + 3 * args.seconds
    try:
        broken, phases = asyncio.run(asyncio.wait_for(run(args), budget))
    except asyncio.TimeoutError:
        broken, phases = [f"the run exceeded its {budget:.0f} s time bound"], {}
    for problem in broken:
        print(f"BROKEN: {problem}")
    if args.json is not None:
        args.json.write_text(json.dumps({"broken": broken, **phases}, indent=2), "utf-8")
    if broken and args.quick:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
