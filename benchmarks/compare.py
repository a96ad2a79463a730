"""ws_notebook side by side with a bare Tornado echo server and the ``websockets`` library.

    python benchmarks/compare.py [--quick] [--json PATH] [--no-kernel] [--scenarios LIST]

One run starts, on 127.0.0.1, four echo servers, each in its own process (``_servers.py``):
bare Tornado (a ``WebSocketHandler``), the ``websockets`` library (``websockets.asyncio``),
ws_notebook with its event log off (``log_capacity=0``) and ws_notebook as it comes (event log
on, 1,000 events). One client process (``_clients.py``: one asyncio loop, many connections, a
lean RFC 6455 client) drives them in turn, so that on a 2-core machine the server under test has
a core and the clients the other. Scenarios:

1. echo round trip, sequential: one connection, 64-byte text messages one at a time;
   messages/s and p50/p99 round-trip latency. Measured twice: with every core kept from halting
   by idle-priority spinners (the figures compared: on a virtual machine, waking a halted CPU
   costs more than a small echo, so a server that finishes sooner and sleeps sooner would look
   slower), and as the machine is ("cores left to halt");
2. echo throughput, pipelined: 4 connections each keeping a window of messages in flight,
   64 B and 64 KiB;
3. broadcast: 1,000 connected clients, the server broadcasts a 256-byte message every 10 ms
   for 10 s (1,000 broadcasts, none skipped: a late one goes out at once); share delivered,
   delivery rate (messages received / time from the first broadcast to the last delivery) and
   p50/p99 delivery latency (from the start of the broadcast call to the client's read), after
   100 untimed broadcasts (a fresh server's first ones were sometimes several times slower);
4. connection churn: 8 loops of connect, opening handshake, closing handshake; per second;
5. the cost of observation: scenarios 1 and 2 (64 B) with the event log on against off, in
   the plain server processes above, and in a real Jupyter kernel (jupyter_client, as
   ``panel_load.py`` does) with the log off, the log on, and the log on with the endpoint's live
   panel displayed (``%websocket monitor``), each as a ratio to the log off (with cores kept from
   halting, as in scenario 1).

Memory: each server's RSS when fresh, with the broadcast scenario's 1,000 idle connections, and
at the end; ws_notebook's log-on server has then recorded over 1,000,000 events (an echo logs
its message in and out; a broadcast is one event however many clients it reaches) and keeps
only its capacity of them.

To keep noise from other work on the machine out of the comparison, scenarios 1, 2 and 4 run
in rounds (servers in order, then in reverse order) and every ratio comes from the same run.
The client's own CPU use is printed beside the figures, to show when the client rather than the
server was the limit, and so is the server's time in the garbage collector (``gc.callbacks``).

Limits, honestly: the client process shares the 2 cores with the server (about half a core
while a server is saturated), so the absolute figures are lower than on a bigger machine; the
sequential round trip on a virtual machine is dominated by waking the two processes up, so its
ratios move by several percent from run to run; latencies are the client's view, including its
own scheduling. Full mode takes about 3 minutes on 2 cores and always exits 0 (it is a report);
``--quick`` (every scenario at a tiny scale, about 15 s, most of it starting the kernel) exits 1
when the run itself breaks, never because of a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from _common import HERE, HOST, Broken, Child, cpus_kept_awake, latency_summary

SERVERS = {  # key: (column header, argv after _servers.py)
    "tornado": ("bare Tornado", ["tornado"]),
    "websockets": ("websockets", ["websockets"]),
    "nb_off": ("ws_notebook log off", ["ws_notebook", "--log-capacity", "0"]),
    "nb": ("ws_notebook", ["ws_notebook", "--log-capacity", "1000"]),
}
KERNEL_VARIANTS = {  # key: (column header, endpoint name, %%websocket options)
    "off": ("log off", "k_off", "--log-capacity 0"),
    "on": ("log on", "k_on", ""),
    "panel": ("log on + panel", "k_panel", ""),
}
ECHO_CELL = """\
%%websocket {name} --no-panel {options} --description "compare.py echo"
def on_message(message, client):
    client.send(message)
"""

SCALES: dict[str, dict[str, Any]] = {
    "full": {
        "rounds": 2,
        "seconds": 2.0,  # per round, per server, per scenario
        "warmup": 0.3,
        "pipe_connections": 4,
        "window_small": 32,
        "window_large": 4,
        "churn_concurrency": 8,
        "bcast_clients": 1000,
        "bcast_count": 1000,
        "bcast_warmup": 100,
        "bcast_interval": 0.01,
        "bcast_size": 256,
        "kernel_rounds": 2,
        "kernel_seconds": 2.0,
    },
    "quick": {
        "rounds": 1,
        "seconds": 0.25,
        "warmup": 0.05,
        "pipe_connections": 2,
        "window_small": 16,
        "window_large": 2,
        "churn_concurrency": 4,
        "bcast_clients": 50,
        "bcast_count": 30,
        "bcast_warmup": 5,
        "bcast_interval": 0.01,
        "bcast_size": 256,
        "kernel_rounds": 1,
        "kernel_seconds": 0.25,
    },
}
SMALL, LARGE = 64, 64 * 1024
ALL_SCENARIOS = ("broadcast", "seq", "pipe", "churn", "kernel")

# Targets (from the issue)
DISPATCH_TOLERANCE = 0.10  # ws_notebook within 10% of bare Tornado on scenarios 1-4
OBSERVATION_BUDGET = 0.15  # the event log and the live panel cost under 15%


def url_of(hello: dict[str, Any]) -> str:
    return f"ws://{HOST}:{hello['port']}{hello['path']}"


# --- running the scenarios ------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale = SCALES["quick" if args.quick else "full"]
        self.tmp = Path(tempfile.mkdtemp(prefix="ws_compare_"))
        self.servers: dict[str, Child] = {}
        self.urls: dict[str, str] = {}
        self.client = Child(
            "client process", [sys.executable, str(HERE / "_clients.py")], self.tmp / "client.log"
        )
        self.results: dict[str, Any] = {"scale": self.scale, "memory": {}, "kernel": {}}

    def order(self, round_: int) -> list[str]:
        keys = list(SERVERS)
        return keys if round_ % 2 == 0 else keys[::-1]

    async def start(self) -> None:
        for key, (label, argv) in SERVERS.items():
            self.servers[key] = Child(
                f"{label} server",
                [sys.executable, str(HERE / "_servers.py"), *argv],
                self.tmp / f"server-{key}.log",
            )
        children = [self.client, *self.servers.values()]
        await asyncio.gather(*(child.start() for child in children))
        for key, server in self.servers.items():
            self.urls[key] = url_of(server.hello)
        await asyncio.sleep(0.2)
        for key, server in self.servers.items():
            stats = await server.request({"cmd": "stats", "collect": True})
            self.results["memory"].setdefault(key, {})["fresh_kb"] = stats["rss_kb"]

    async def stop(self) -> None:
        await asyncio.gather(
            *(child.stop() for child in [self.client, *self.servers.values()]),
            return_exceptions=True,
        )
        shutil.rmtree(self.tmp, ignore_errors=True)  # the children's stderr: shown if they fail

    async def measured(self, key: str, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one client command against one server, with the server's CPU use around it."""
        server = self.servers[key]
        before = await server.request({"cmd": "stats"})
        start = time.perf_counter()
        result = await self.client.request({**command, "url": self.urls[key]}, timeout)
        elapsed = time.perf_counter() - start
        after = await server.request({"cmd": "stats"})
        result["server_cpu"] = (after["cpu"] - before["cpu"]) / elapsed
        result["server_gc"] = gc_share(before, after, elapsed)
        return result

    # --- 1. sequential echo -----------------------------------------------------------------

    async def sequential(self) -> None:
        """Twice: with every core kept from halting (the figures compared), and as the machine is."""
        scale = self.scale
        for name, keep_awake in (("seq_idle", False), ("seq", True)):
            merged: dict[str, dict[str, Any]] = {}
            async with cpus_kept_awake() if keep_awake else contextlib.nullcontext():
                for round_ in range(scale["rounds"]):
                    for key in self.order(round_):
                        result = await self.measured(
                            key,
                            {
                                "cmd": "echo_seq",
                                "size": SMALL,
                                "seconds": scale["seconds"],
                                "warmup": scale["warmup"],
                            },
                            timeout=60 + scale["seconds"],
                        )
                        merge_rounds(merged.setdefault(key, {}), result)
            self.results[name] = {key: finish_rounds(value) for key, value in merged.items()}
        print("1. sequential echo done", flush=True)

    # --- 2. pipelined echo -------------------------------------------------------------------

    async def pipelined(self) -> None:
        scale = self.scale
        for size, window, name in (
            (SMALL, scale["window_small"], "pipe_small"),
            (LARGE, scale["window_large"], "pipe_large"),
        ):
            merged: dict[str, dict[str, Any]] = {}
            for round_ in range(scale["rounds"]):
                for key in self.order(round_):
                    result = await self.measured(
                        key,
                        {
                            "cmd": "echo_pipe",
                            "size": size,
                            "seconds": scale["seconds"],
                            "warmup": scale["warmup"],
                            "connections": scale["pipe_connections"],
                            "window": window,
                        },
                        timeout=90 + scale["seconds"],
                    )
                    merge_rounds(merged.setdefault(key, {}), result)
            self.results[name] = {key: finish_rounds(value) for key, value in merged.items()}
        print("2. pipelined echo done", flush=True)

    # --- 3. broadcast, and memory with 1,000 idle connections ----------------------------------

    async def broadcast(self) -> None:
        scale = self.scale
        clients, count = scale["bcast_clients"], scale["bcast_count"]
        self.results["broadcast"] = {}
        for key in SERVERS:
            server = self.servers[key]
            memory = self.results["memory"][key]
            before = await server.request({"cmd": "stats", "collect": True})
            connected = await self.client.request(
                {"cmd": "bcast_connect", "url": self.urls[key], "count": clients}, timeout=180
            )
            await asyncio.sleep(0.1 if self.args.quick else 0.5)
            idle = await server.request({"cmd": "stats", "collect": True})
            if idle["connections"] != clients:
                raise Broken(f"{key}: {idle['connections']} connections open, not {clients}")
            memory["before_idle_kb"] = before["rss_kb"]
            memory["idle_kb"] = idle["rss_kb"]
            memory["idle_connections"] = clients
            # A short untimed run first: a fresh server's first broadcasts (memory for 1,000
            # send buffers, ...) were sometimes several times slower than the rest.
            for rounds in (scale["bcast_warmup"], count):
                await self.client.request(
                    {
                        "cmd": "bcast_collect",
                        "expected": clients * rounds,
                        "quiet": 2.0,
                        "limit": 60 + 5 * rounds * scale["bcast_interval"],
                    },
                    timeout=30,
                )
                start = await server.request({"cmd": "stats"})
                sent = await server.request(
                    {
                        "cmd": "broadcast",
                        "count": rounds,
                        "interval": scale["bcast_interval"],
                        "size": scale["bcast_size"],
                    },
                    timeout=120 + 10 * rounds * scale["bcast_interval"],
                )
                result = await self.client.read(timeout=180 + 10 * rounds * scale["bcast_interval"])
            after = await server.request({"cmd": "stats"})
            result["server_cpu"] = (after["cpu"] - start["cpu"]) / max(sent["seconds"], 1e-9)
            result["server_gc"] = gc_share(start, after, max(sent["seconds"], 1e-9))
            result["server_full_gcs"] = after["gc_counts"][2] - start["gc_counts"][2]
            result["client_cpu"] = result["client_cpu_seconds"] / max(sent["seconds"], 1e-9)
            result["server_seconds"] = sent["seconds"]
            result["late_max"] = sent["late_max"]
            result["connect_seconds"] = connected["seconds"]
            await self.client.request({"cmd": "close_all"}, timeout=120)
            self.results["broadcast"][key] = result
        print("3. broadcast done", flush=True)

    # --- 4. connection churn --------------------------------------------------------------------

    async def churn(self) -> None:
        scale = self.scale
        merged: dict[str, dict[str, Any]] = {}
        for round_ in range(scale["rounds"]):
            for key in self.order(round_):
                result = await self.measured(
                    key,
                    {
                        "cmd": "churn",
                        "seconds": scale["seconds"],
                        "warmup": scale["warmup"],
                        "concurrency": scale["churn_concurrency"],
                    },
                    timeout=90 + scale["seconds"],
                )
                merge_rounds(merged.setdefault(key, {}), result)
        self.results["churn"] = {key: finish_rounds(value) for key, value in merged.items()}
        print("4. connection churn done", flush=True)

    async def final_memory(self) -> None:
        await asyncio.sleep(0.1 if self.args.quick else 0.5)
        for key, server in self.servers.items():
            stats = await server.request({"cmd": "stats", "collect": True})
            memory = self.results["memory"][key]
            memory["end_kb"] = stats["rss_kb"]
            for field in ("log_capacity", "log_total", "log_kept", "log_dropped"):
                if field in stats:
                    memory[field] = stats[field]

    # --- 5. in a real kernel: the log and the live panel ------------------------------------------

    async def kernel(self) -> None:
        from panel_load import KernelSession  # the benchmark beside this one: same kernel driver

        scale = self.scale
        session = KernelSession()
        results: dict[str, dict[str, Any]] = {}
        try:
            await session.start()
            await session.run(
                "%load_ext ws_notebook\nimport json, os, ws_notebook, ws_notebook.widgets"
            )
            urls = {}
            for key, (_, name, options) in KERNEL_VARIANTS.items():
                await session.run(ECHO_CELL.format(name=name, options=options))
                urls[key] = await session.value(f"ws_notebook.url({name!r})")
            capacities = await session.value(
                "{e.name: e.log.capacity for e in ws_notebook.endpoints()}"
            )
            if capacities.get("k_off") != 0:
                raise Broken(f"the log-off endpoint has a log of {capacities.get('k_off')} events")
            keys = list(KERNEL_VARIANTS)
            merged: dict[str, dict[str, dict[str, Any]]] = {}
            panel_updates = 0
            comm_msgs = 0
            async with cpus_kept_awake():  # as in scenario 1
                for round_ in range(scale["kernel_rounds"]):
                    for key in keys if round_ % 2 == 0 else keys[::-1]:
                        name = KERNEL_VARIANTS[key][1]
                        if key == "panel":
                            opens = session.comm_opens
                            await session.run(f"%websocket monitor {name}")
                            await session.run("panel = ws_notebook.widgets.panels()[-1]")
                            if (
                                session.comm_opens == opens
                                or await session.value("panel.name") != name
                            ):
                                raise Broken("the live panel was not displayed")
                            updates = await session.value("panel.updates")
                            msgs = session.comm_msgs
                            await asyncio.sleep(0.5)  # the fresh panel's first flushes
                        for kind, command in (
                            ("seq", {"cmd": "echo_seq", "size": SMALL}),
                            (
                                "pipe",
                                {
                                    "cmd": "echo_pipe",
                                    "size": SMALL,
                                    "connections": scale["pipe_connections"],
                                    "window": scale["window_small"],
                                },
                            ),
                        ):
                            command.update(
                                url=urls[key],
                                seconds=scale["kernel_seconds"],
                                warmup=scale["warmup"],
                            )
                            result = await self.client.request(
                                command, 90 + scale["kernel_seconds"]
                            )
                            merge_rounds(merged.setdefault(kind, {}).setdefault(key, {}), result)
                        if key == "panel":
                            panel_updates += await session.value("panel.updates") - updates
                            comm_msgs += session.comm_msgs - msgs
                            await session.run("panel.close()")
            for kind, by_key in merged.items():
                results[kind] = {key: finish_rounds(value) for key, value in by_key.items()}
            results["panel_updates"] = panel_updates
            results["comm_msgs"] = comm_msgs
            if not await session.alive():
                raise Broken("the kernel died")
        finally:
            await session.stop()
        self.results["kernel"] = results
        print("5. kernel: log off / on / panel done", flush=True)


def gc_share(before: dict[str, Any], after: dict[str, Any], seconds: float) -> float:
    """The share of ``seconds`` the server spent in the garbage collector."""
    return (sum(after["gc_seconds"]) - sum(before["gc_seconds"])) / seconds


def merge_rounds(into: dict[str, Any], result: dict[str, Any]) -> None:
    """Add one round's result: counts add up, latencies pool, rates weight by time."""
    into.setdefault("rounds", []).append(result)


def finish_rounds(merged: dict[str, Any]) -> dict[str, Any]:
    rounds = merged["rounds"]
    out: dict[str, Any] = {"rounds": len(rounds)}
    out["per_round_rate"] = [r["rate"] for r in rounds]
    out["rate"] = sum(out["per_round_rate"]) / len(rounds)
    for field in ("server_cpu", "server_gc", "client_cpu", "mib_per_s"):
        if field in rounds[0]:
            out[field] = sum(r[field] for r in rounds) / len(rounds)
    for field in ("messages", "connections", "failures", "unanswered", "mismatched", "errors"):
        if field in rounds[0]:
            out[field] = sum(r[field] for r in rounds)
    if "latencies" in rounds[0]:
        pooled = array("d")
        for r in rounds:
            pooled.frombytes(base64.b64decode(r["latencies"]))
        out.update(latency_summary(pooled))
    return out


# --- the report -------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(
        [header[0].ljust(widths[0])]
        + [h.rjust(w) for h, w in zip(header[1:], widths[1:], strict=True)]
    )
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            "  ".join(
                [row[0].ljust(widths[0])]
                + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            )
        )


def report(results: dict[str, Any], args: argparse.Namespace) -> list[tuple[bool, str]]:
    """Print the tables and the verdicts; returns the verdicts."""
    keys = list(SERVERS)
    header = [
        "scenario / figure",
        *(SERVERS[k][0] for k in keys),
        "nb/Tornado",
        "nb/websockets",
        "log on/off",
    ]
    rows: list[list[str]] = []

    def row(label: str, values: dict[str, float | None], spec: str) -> None:
        rows.append(
            [
                label,
                *(fmt(values.get(k), spec) for k in keys),
                ratio(values.get("nb"), values.get("tornado")),
                ratio(values.get("nb"), values.get("websockets")),
                ratio(values.get("nb"), values.get("nb_off")),
            ]
        )

    def pick(section: str, field: str, scale: float = 1.0) -> dict[str, float | None]:
        data = results.get(section) or {}
        return {
            k: (data[k][field] * scale if k in data and data[k].get(field) is not None else None)
            for k in keys
        }

    if "seq" in results:
        row("1. echo sequential 64 B: msg/s", pick("seq", "rate"), ",.0f")
        row("   round trip p50 (ms, lower better)", pick("seq", "p50_ms"), ".3f")
        row("   round trip p99 (ms, lower better)", pick("seq", "p99_ms"), ".3f")
        row("   server CPU (% of a core)", pick("seq", "server_cpu", 100), ".0f")
        row("   server time in GC (%)", pick("seq", "server_gc", 100), ".1f")
        row("   client CPU (% of a core)", pick("seq", "client_cpu", 100), ".0f")
    if "seq_idle" in results:
        row("   cores left to halt: msg/s", pick("seq_idle", "rate"), ",.0f")
        row("   cores left to halt: p50 (ms)", pick("seq_idle", "p50_ms"), ".3f")
        row("   cores left to halt: p99 (ms)", pick("seq_idle", "p99_ms"), ".3f")
    if "pipe_small" in results:
        row("2. echo pipelined 64 B: msg/s", pick("pipe_small", "rate"), ",.0f")
        row("   server CPU (% of a core)", pick("pipe_small", "server_cpu", 100), ".0f")
        row("   server time in GC (%)", pick("pipe_small", "server_gc", 100), ".1f")
        row("   client CPU (% of a core)", pick("pipe_small", "client_cpu", 100), ".0f")
        row("   echo pipelined 64 KiB: msg/s", pick("pipe_large", "rate"), ",.0f")
        row("   echo pipelined 64 KiB: MiB/s", pick("pipe_large", "mib_per_s"), ",.0f")
        row("   server CPU (% of a core)", pick("pipe_large", "server_cpu", 100), ".0f")
        row("   server time in GC (%)", pick("pipe_large", "server_gc", 100), ".1f")
        row("   client CPU (% of a core)", pick("pipe_large", "client_cpu", 100), ".0f")
    if "broadcast" in results:
        b = results["broadcast"]
        delivered = {
            k: (100 * b[k]["received"] / b[k]["expected"] if k in b and b[k]["expected"] else None)
            for k in keys
        }
        scale = results["scale"]
        row(
            f"3. broadcast {scale['bcast_size']} B to {scale['bcast_clients']:,} clients "
            f"every {scale['bcast_interval'] * 1000:g} ms x {scale['bcast_count']:,}: delivered %",
            delivered,
            ".2f",
        )
        row("   delivery rate (msg/s)", pick("broadcast", "rate"), ",.0f")
        row("   delivery latency p50 (ms, lower better)", pick("broadcast", "p50_ms"), ".2f")
        row("   delivery latency p99 (ms, lower better)", pick("broadcast", "p99_ms"), ".2f")
        row("   time to send all broadcasts (s)", pick("broadcast", "server_seconds"), ".2f")
        row("   server CPU (% of a core)", pick("broadcast", "server_cpu", 100), ".0f")
        row("   server time in GC (%)", pick("broadcast", "server_gc", 100), ".1f")
        row("   full collections (gen 2)", pick("broadcast", "server_full_gcs"), ",.0f")
        row("   client CPU (% of a core)", pick("broadcast", "client_cpu", 100), ".0f")
    if "churn" in results:
        row("4. churn: connect+handshake+close /s", pick("churn", "rate"), ",.0f")
        row("   server CPU (% of a core)", pick("churn", "server_cpu", 100), ".0f")
        row("   server time in GC (%)", pick("churn", "server_gc", 100), ".1f")
        row("   client CPU (% of a core)", pick("churn", "client_cpu", 100), ".0f")
    memory = results.get("memory", {})
    mem = {k: memory.get(k, {}) for k in keys}

    def mib(field: str) -> dict[str, float | None]:
        return {k: (mem[k][field] / 1024 if field in mem[k] else None) for k in keys}

    row("memory: server RSS fresh (MiB)", mib("fresh_kb"), ".1f")
    if any("idle_kb" in m for m in mem.values()):
        clients = next(m["idle_connections"] for m in mem.values() if "idle_connections" in m)
        row(f"   RSS with {clients:,} idle connections (MiB)", mib("idle_kb"), ".1f")
        per = {
            k: (
                (mem[k]["idle_kb"] - mem[k]["before_idle_kb"]) / clients
                if "idle_kb" in mem[k]
                else None
            )
            for k in keys
        }
        row("   per idle connection (KiB)", per, ".1f")
    row("   RSS at the end of the run (MiB)", mib("end_kb"), ".1f")
    logged = {k: mem[k].get("log_total") for k in keys}
    row("   events logged (ws_notebook)", logged, ",.0f")
    kept = {k: mem[k].get("log_kept") for k in keys}
    row("   events kept in the log", kept, ",.0f")

    print()
    print_table(header, rows)
    print(
        "\nnb = ws_notebook as it comes (event log on, 1,000 events); ratios are nb's figure over "
        "the other's,\nmeasured in this run (for latency, below 1 is better)."
    )

    kernel = results.get("kernel") or {}
    if kernel.get("seq"):
        kkeys = list(KERNEL_VARIANTS)
        kheader = [
            "in a Jupyter kernel",
            *(KERNEL_VARIANTS[k][0] for k in kkeys),
            "on/off",
            "panel/off",
        ]
        krows: list[list[str]] = []

        def krow(label: str, kind: str, field: str, spec: str) -> None:
            values = {k: kernel[kind][k].get(field) for k in kkeys}
            krows.append(
                [
                    label,
                    *(fmt(values[k], spec) for k in kkeys),
                    ratio(values["on"], values["off"]),
                    ratio(values["panel"], values["off"]),
                ]
            )

        krow("5. echo sequential 64 B: msg/s", "seq", "rate", ",.0f")
        krow("   round trip p50 (ms)", "seq", "p50_ms", ".3f")
        krow("   round trip p99 (ms)", "seq", "p99_ms", ".3f")
        krow("   echo pipelined 64 B: msg/s", "pipe", "rate", ",.0f")
        print()
        print_table(kheader, krows)
        print(
            f"\nwhile the panel was displayed: {kernel.get('panel_updates', 0)} panel flushes "
            f"changed something, {kernel.get('comm_msgs', 0)} widget messages sent"
        )

    verdicts: list[tuple[bool, str]] = []

    def verdict(ok: bool | None, text: str) -> None:
        if ok is None:
            return
        verdicts.append((ok, text))

    def compare(
        section: str, field: str, other: str, higher_better: bool, tolerance: float, label: str
    ) -> None:
        data = results.get(section) or {}
        if "nb" not in data or other not in data:
            return
        mine, theirs = data["nb"].get(field), data[other].get(field)
        if not mine or not theirs or math.isnan(mine) or math.isnan(theirs):
            return
        r = mine / theirs
        ok = r >= 1 - tolerance if higher_better else r <= 1 + tolerance
        verdict(ok, f"{label}: {r:.2f}x {SERVERS[other][0]}")

    print("\ntargets")
    for section, label in (
        ("seq", "1. sequential msg/s"),
        ("pipe_small", "2. pipelined 64 B msg/s"),
        ("pipe_large", "2. pipelined 64 KiB msg/s"),
        ("broadcast", "3. broadcast delivery rate"),
        ("churn", "4. churn connections/s"),
    ):
        compare(
            section, "rate", "tornado", True, DISPATCH_TOLERANCE, f"{label} within 10% of Tornado"
        )
    for section, label in (
        ("seq", "1. sequential p50"),
        ("seq", "1. sequential p99"),
        ("broadcast", "3. broadcast p99"),
    ):
        field = "p50_ms" if "p50" in label else "p99_ms"
        compare(
            section,
            field,
            "tornado",
            False,
            DISPATCH_TOLERANCE,
            f"{label} latency within 10% of Tornado",
        )
    for section, label in (
        ("seq", "1. sequential msg/s"),
        ("pipe_small", "2. pipelined 64 B msg/s"),
        ("pipe_large", "2. pipelined 64 KiB msg/s"),
    ):
        compare(section, "rate", "websockets", True, 0.0, f"{label} ahead of websockets")
    # The broadcast's rate is the offered load when a server keeps up: "ahead" is keeping up
    # with less of a core.
    compare(
        "broadcast", "rate", "websockets", True, 0.01, "3. broadcast keeps the pace websockets does"
    )
    compare(
        "broadcast",
        "server_cpu",
        "websockets",
        False,
        0.0,
        "3. broadcast server CPU below websockets'",
    )
    compare(
        "seq", "p50_ms", "websockets", False, 0.0, "1. sequential p50 latency ahead of websockets"
    )
    compare(
        "broadcast",
        "p99_ms",
        "websockets",
        False,
        0.0,
        "3. broadcast p99 latency ahead of websockets",
    )
    for section, label in (("seq", "sequential"), ("pipe_small", "pipelined 64 B")):
        compare(
            section,
            "rate",
            "nb_off",
            True,
            OBSERVATION_BUDGET,
            f"5. event log costs under 15% ({label}, log on vs off)",
        )
    for kind, label in (("seq", "sequential"), ("pipe", "pipelined 64 B")):
        data = kernel.get(kind) or {}
        if {"off", "on", "panel"} <= set(data):
            for key, what in (("on", "event log"), ("panel", "log + live panel")):
                r = data[key]["rate"] / data["off"]["rate"]
                verdict(
                    r >= 1 - OBSERVATION_BUDGET,
                    f"5. in a kernel, {what} costs under 15% ({label}): {r:.2f}x log off",
                )
    nb = mem.get("nb", {})
    if "log_total" in nb:
        bounded = nb["log_kept"] <= nb["log_capacity"]
        verdict(
            bounded,
            f"memory: the log keeps {nb['log_kept']:,} of {nb['log_total']:,} events "
            f"(capacity {nb['log_capacity']:,})",
        )
        off = mem.get("nb_off", {})
        if "end_kb" in nb and "end_kb" in off:
            extra = (nb["end_kb"] - off["end_kb"]) / 1024
            verdict(
                extra < 16,
                f"memory: RSS at the end, log on minus log off after the same traffic: "
                f"{extra:+.1f} MiB (bounded by the capacity, not the {nb['log_total']:,} events)",
            )
    for ok, text in verdicts:
        print(f"  {'PASS' if ok else 'MISS'}  {text}")
    return verdicts


# --- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    broken: list[str] = []
    run = Run(args)
    try:
        await run.start()
        print(
            "servers: "
            + ", ".join(f"{SERVERS[k][0]} {url}" for k, url in run.urls.items())
            + f"; client pid {run.client.pid}",
            flush=True,
        )
        steps = {
            "broadcast": run.broadcast,
            "seq": run.sequential,
            "pipe": run.pipelined,
            "churn": run.churn,
        }
        for name, step in steps.items():
            if name in args.scenarios:
                await step()
        await run.final_memory()
        if "kernel" in args.scenarios:
            await run.kernel()
    except Broken as error:
        broken.append(str(error))
    except Exception as error:
        broken.append(f"{type(error).__name__}: {error}")
    finally:
        await run.stop()
    for section in ("seq", "seq_idle", "pipe_small", "pipe_large", "churn"):
        for key, data in (run.results.get(section) or {}).items():
            if data.get("messages", 1) == 0 or data.get("connections", 1) == 0:
                broken.append(f"{section}: {key} served nothing")
            for field in ("mismatched", "unanswered", "errors"):
                if data.get(field):
                    broken.append(f"{section}: {key}: {data[field]} {field}")
    for key, data in (run.results.get("broadcast") or {}).items():
        if not data.get("received"):
            broken.append(f"broadcast: {key} delivered nothing")
    return run.results, broken


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every scenario at a tiny scale")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--no-kernel", action="store_true", help="skip the kernel scenario")
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)}",
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.no_kernel and "kernel" in args.scenarios:
        args.scenarios.remove("kernel")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"ws_notebook vs bare Tornado vs websockets ({'quick' if args.quick else 'full'}); "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.machine()}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    started = time.perf_counter()
    budget = 60 if args.quick else 600
    try:
        results, broken = asyncio.run(asyncio.wait_for(run(args), budget))
    except asyncio.TimeoutError:
        results, broken = {}, [f"the run exceeded its {budget} s time bound"]
    if results:
        results["verdicts"] = report(results, args)
    seconds = time.perf_counter() - started
    print(f"\nrun took {seconds:.1f} s")
    if args.json:
        results["seconds"] = seconds
        results["broken"] = broken
        with contextlib.suppress(OSError):
            args.json.write_text(json.dumps(results, indent=1, default=str))
    for problem in broken:
        print(f"BROKEN: {problem}")
    if broken and args.quick:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
