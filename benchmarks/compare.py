"""ws_notebook side by side with a bare Tornado echo server and the ``websockets`` library.

    python benchmarks/compare.py [--quick] [--json PATH] [--no-kernel] [--scenarios LIST]
                                 [--servers LIST] [--before REV|DIR] [--after REV|DIR]

One run starts, on 127.0.0.1, five echo servers, each in its own process (``_servers.py``):
bare Tornado (a ``WebSocketHandler``), the ``websockets`` library (``websockets.asyncio``),
ws_notebook with its event log off (``log_capacity=0``), ws_notebook as it comes (event log
on, 1,000 events), and the same with a JavaScript echo handler (``export function
onMessage(message) { return message; }``, run in V8), measured in scenarios 1 and 2 only, for
its ratio to the Python echo (the goal: at least 0.5; the column "JS/Python"). ``--servers``
picks some of them: ``--servers nb,nb_js --scenarios seq,pipe --no-kernel`` compares the
JavaScript echo with the Python one in about 40 s. One client process (``_clients.py``: one
asyncio loop, many connections, a lean RFC 6455 client) drives them in turn, so that on a
2-core machine the server under test has a core and the clients the other. Scenarios:

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
   halting, as in scenario 1);
6. busy kernel, in the same kernel: 4 clients send numbered 64-byte messages at a fixed rate to
   an echo endpoint (log on) and keep their connection alive as the ``websockets`` library does
   (a ping every 0.25 s, closed with 1011 if its pong takes over 2 s), while a cell blocks the
   kernel (``time.sleep``, 5 s; 2.5 s in --quick, so that a client of a server that answered no
   ping during the block would time out); two more clients connect during the block (one
   before the wire keeper steps in, after ``STALL_AFTER``, one after; --quick: the first only).
   Figures: clients still connected, messages sent during the block, the backlog at its end,
   the time from the block's end to the first answer, how fast the backlog was answered, the
   handshake times, the pings' longest round trip, and whether every message was answered
   once and in order.

``--before REV`` (a git revision, such as ``b17a213``, the commit before the wire keeper, or a
directory holding ``ws_notebook/``) measures that code in the same run: one more server process
("nb before", log on) and, for scenarios 5 and 6, a second kernel that imports it, measured in
alternation with the first. A table "cost of ..." then gives every figure of ws_notebook after
over before, with the target of staying within 10%. ``--after REV`` does the same for the code
measured as "ws_notebook" (default: this checkout, as it is on disk). A revision is exported
with ``git archive`` into a temporary directory, nothing in the repository changes.

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
ratios move by several percent from run to run; the JavaScript echo wakes a third thread and
back for each message (V8 runs on a thread of its own), so its ratio moves the most with other
load on the machine (0.34-0.62 in seven runs on a busy machine, 0.52 the median); latencies
are the client's view, including its own scheduling. Full mode takes about 4 minutes on 2
cores (5.5 with ``--before``) and always exits 0 (it is a report); ``--quick`` (every scenario
at a tiny scale, about 20 s, most of it starting the kernel and the blocking cell) exits 1
when the run itself breaks (a server or the kernel died, a message was lost, answered twice or
out of order, a client was dropped during the block), never because of a figure.
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
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any, NamedTuple

from _common import (
    HERE,
    HOST,
    ROOT,
    Broken,
    Child,
    cpus_kept_awake,
    latency_summary,
    monotonic,
    percentile,
)

SERVERS = {  # key: (column header, argv after _servers.py)
    "tornado": ("bare Tornado", ["tornado"]),
    "websockets": ("websockets", ["websockets"]),
    "nb_off": ("ws_notebook log off", ["ws_notebook", "--log-capacity", "0"]),
    "nb": ("ws_notebook", ["ws_notebook", "--log-capacity", "1000"]),
    "nb_js": ("ws_notebook JS", ["ws_notebook", "--log-capacity", "1000", "--js"]),
}
ECHO_ONLY = ("nb_js",)  # servers measured in scenarios 1 and 2 only
BEFORE = "nb_before"  # the extra server of --before: ws_notebook as it comes, earlier code
BEFORE_LABEL = "nb before"
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
BUSY_ENDPOINT = "k_busy"  # scenario 6: an echo as it comes (log on)
# The blocking cell: its start and end on CLOCK_MONOTONIC, which the client process shares.
BLOCK_CELL = """\
import json as _bj, time as _bt
_b0 = _bt.monotonic()
_bt.sleep({seconds})
_b1 = _bt.monotonic()
print(_bj.dumps([_b0, _b1]), end="")
"""
# What the busy endpoint's event log says waited for the kernel ("wait" events), kept as they
# are recorded: the log itself (1,000 events) has moved on after the backlog's echoes.
WAIT_COUNTER = """\
busy_waits = []
def _busy_listener(event, _then=ws_notebook.endpoint({name!r}).log.listener):
    if event.kind == "wait":
        busy_waits.append(event.detail)
    if _then is not None:
        _then(event)
ws_notebook.endpoint({name!r}).log.listener = _busy_listener
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
        "busy_clients": 4,
        "busy_rate": 250,  # messages/s per client
        "busy_block": 5.0,  # seconds the cell blocks
        "busy_joins": (0.3, 2.5),  # seconds after the cell was sent: a client connects
        "busy_lead": 0.5,  # seconds of traffic before the block, and after it
        "busy_ping_interval": 0.25,
        "busy_ping_timeout": 2.0,
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
        "busy_clients": 4,
        "busy_rate": 100,
        "busy_block": 2.5,  # a ping in the block's first 0.25 s times out before it ends
        "busy_joins": (0.3,),
        "busy_lead": 0.3,
        "busy_ping_interval": 0.25,
        "busy_ping_timeout": 2.0,
    },
}
SMALL, LARGE = 64, 64 * 1024
ALL_SCENARIOS = ("broadcast", "seq", "pipe", "churn", "kernel", "busy")
KERNEL_SCENARIOS = ("kernel", "busy")

# Targets (from the issue)
DISPATCH_TOLERANCE = 0.10  # ws_notebook within 10% of bare Tornado on scenarios 1-4
JS_TARGET = 0.5  # a JavaScript echo at least half as fast as the Python echo (issue 13)
OBSERVATION_BUDGET = 0.15  # the event log and the live panel cost under 15%
KEEPER_TOLERANCE = 0.10  # ws_notebook after the change within 10% of before, on every row


def url_of(hello: dict[str, Any]) -> str:
    return f"ws://{HOST}:{hello['port']}{hello['path']}"


def checkout(spec: str, tmp: Path, name: str) -> tuple[Path, str]:
    """A directory holding ``ws_notebook/`` for ``spec`` (a directory, or a git revision of this
    repository, exported with ``git archive``), and the name to print for it."""
    path = Path(spec).expanduser()
    if (path / "ws_notebook" / "__init__.py").is_file():
        return path.resolve(), str(path)
    git = ["git", "-C", str(ROOT)]
    try:
        rev = subprocess.run(
            [*git, "rev-parse", "--short", f"{spec}^{{commit}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        archive = subprocess.run(
            [*git, "archive", rev, "ws_notebook"], check=True, capture_output=True
        ).stdout
        target = tmp / name
        target.mkdir()
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise Broken(
            f"{spec!r} is neither a directory holding ws_notebook/ nor a revision of this "
            f"repository: {getattr(error, 'stderr', b'') or error}"
        ) from None
    return target, rev


def kernel_session(code: Path | None) -> Any:
    """A real kernel (``panel_load.KernelSession``) that imports ws_notebook from ``code``
    (default: this checkout): started there, with it first on ``PYTHONPATH``."""
    from panel_load import KernelSession  # the benchmark beside this one: same kernel driver

    class Session(KernelSession):
        async def start(self) -> None:
            from jupyter_client.manager import AsyncKernelManager

            self.manager = AsyncKernelManager(kernel_name="python3")
            self.manager.kernel_spec.argv[0] = sys.executable
            env = dict(os.environ)
            if code is not None:
                env["PYTHONPATH"] = os.pathsep.join(
                    filter(None, (str(code), env.get("PYTHONPATH")))
                )
            await self.manager.start_kernel(cwd=str(code or ROOT), env=env)
            self.pid = self.manager.provisioner.process.pid  # for cpu_seconds()
            self.client = self.manager.client()
            self.client.start_channels()
            await self.client.wait_for_ready(timeout=60)
            self._pump = asyncio.create_task(self._read_iopub())

    return Session()


# --- running the scenarios ------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale = dict(SCALES["quick" if args.quick else "full"])
        if args.rounds:
            self.scale["rounds"] = self.scale["kernel_rounds"] = args.rounds
        if args.seconds:
            self.scale["seconds"] = self.scale["kernel_seconds"] = args.seconds
        self.tmp = Path(tempfile.mkdtemp(prefix="ws_compare_"))
        self.servers: dict[str, Child] = {}
        self.urls: dict[str, str] = {}
        self.client = Child(
            "client process", [sys.executable, str(HERE / "_clients.py")], self.tmp / "client.log"
        )
        self.results: dict[str, Any] = {"scale": self.scale, "memory": {}, "kernel": {}}
        self.table: dict[str, tuple[str, list[str]]] = {key: SERVERS[key] for key in args.servers}
        # The code measured as "ws_notebook" (None: this checkout) and, with --before, the
        # code before the change; with the names to print for them.
        self.after: Path | None = None
        self.before: Path | None = None
        self.names = {"after": "this checkout", "before": ""}

    def order(self, round_: int, echo: bool = True) -> list[str]:
        """The servers of a round (those of scenarios 1 and 2 only if ``echo``), in order."""
        keys = [key for key in self.table if echo or key not in ECHO_ONLY]
        return keys if round_ % 2 == 0 else keys[::-1]

    async def start(self) -> None:
        args = self.args
        if args.after:
            self.after, self.names["after"] = checkout(args.after, self.tmp, "after")
            for key in ("nb", "nb_off", "nb_js"):
                if key in self.table:
                    label, argv = self.table[key]
                    self.table[key] = (label, [*argv, "--checkout", str(self.after)])
        if args.before:
            self.before, self.names["before"] = checkout(args.before, self.tmp, "before")
            argv = SERVERS["nb"][1]
            self.table[BEFORE] = (BEFORE_LABEL, [*argv, "--checkout", str(self.before)])
        self.results["servers"] = {key: label for key, (label, _) in self.table.items()}
        self.results["code"] = dict(self.names)
        for key, (label, argv) in self.table.items():
            self.servers[key] = Child(
                f"{label} server",
                [sys.executable, str(HERE / "_servers.py"), *argv],
                self.tmp / f"server-{key}.log",
            )
        children = [self.client, *self.servers.values()]
        await asyncio.gather(*(child.start() for child in children))
        for key, server in self.servers.items():
            self.urls[key] = url_of(server.hello)
            code = {BEFORE: self.before}.get(key, self.after)
            if key in ("nb", "nb_off", "nb_js", BEFORE):
                expected = (code or ROOT) / "ws_notebook" / "__init__.py"
                if Path(server.hello["module"]).resolve() != expected.resolve():
                    raise Broken(f"{key} imported {server.hello['module']}, not {expected}")
                self.results.setdefault("keeper", {})[key] = server.hello["keeper"]
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
        for key in self.order(0, echo=False):
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
            for key in self.order(round_, echo=False):
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

    # --- 5. and 6. in a real kernel ----------------------------------------------------------

    async def kernels(self) -> None:
        """Start a kernel (two with --before), run scenarios 5 and 6 in it, stop it."""
        sides = {"after": self.after}
        if self.before is not None:
            sides["before"] = self.before
        sessions = {side: kernel_session(code) for side, code in sides.items()}
        urls: dict[str, dict[str, str]] = {}
        try:
            await asyncio.gather(*(session.start() for session in sessions.values()))
            for side, session in sessions.items():
                urls[side] = await self.kernel_endpoints(session, sides[side])
            if "kernel" in self.args.scenarios:
                await self.kernel(sessions, urls)
            if "busy" in self.args.scenarios:
                for side, session in sessions.items():
                    name = "busy" if side == "after" else "busy_before"
                    self.results[name] = await self.busy(session, urls[side][BUSY_ENDPOINT])
                    self.results[name]["code"] = self.names[side]
                print("6. busy kernel done", flush=True)
            for side, session in sessions.items():
                if not await session.alive():
                    raise Broken(f"the kernel ({self.names[side]}) died")
        finally:
            await asyncio.gather(
                *(session.stop() for session in sessions.values()), return_exceptions=True
            )

    async def kernel_endpoints(self, session: Any, code: Path | None) -> dict[str, str]:
        """Load ws_notebook (checking which copy the kernel imported), define the echo
        endpoints of scenarios 5 and 6; their URLs by key (and by BUSY_ENDPOINT)."""
        await session.run(
            "%load_ext ws_notebook\nimport json, os, ws_notebook, ws_notebook.widgets"
        )
        module = await session.value("ws_notebook.__file__")
        expected = (code or ROOT) / "ws_notebook" / "__init__.py"
        if Path(module).resolve() != expected.resolve():
            raise Broken(f"the kernel imported ws_notebook from {module}, not {expected}")
        urls = {}
        for key, (_, name, options) in KERNEL_VARIANTS.items():
            await session.run(ECHO_CELL.format(name=name, options=options))
            urls[key] = await session.value(f"ws_notebook.url({name!r})")
        await session.run(ECHO_CELL.format(name=BUSY_ENDPOINT, options=""))
        urls[BUSY_ENDPOINT] = await session.value(f"ws_notebook.url({BUSY_ENDPOINT!r})")
        await session.run(WAIT_COUNTER.format(name=BUSY_ENDPOINT))
        capacities = await session.value(
            "{e.name: e.log.capacity for e in ws_notebook.endpoints()}"
        )
        if capacities.get("k_off") != 0:
            raise Broken(f"the log-off endpoint has a log of {capacities.get('k_off')} events")
        return urls

    async def kernel(self, sessions: dict[str, Any], urls: dict[str, dict[str, str]]) -> None:
        """Scenario 5 in each kernel; with two, each variant is measured in both back to back."""
        scale = self.scale
        keys = list(KERNEL_VARIANTS)
        sides = list(sessions)
        merged: dict[str, dict[str, dict[str, dict[str, Any]]]] = {side: {} for side in sides}
        panel_updates = dict.fromkeys(sides, 0)
        comm_msgs = dict.fromkeys(sides, 0)
        async with cpus_kept_awake():  # as in scenario 1
            for round_ in range(scale["kernel_rounds"]):
                for key in keys if round_ % 2 == 0 else keys[::-1]:
                    for side in sides if round_ % 2 == 0 else sides[::-1]:
                        session = sessions[side]
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
                                url=urls[side][key],
                                seconds=scale["kernel_seconds"],
                                warmup=scale["warmup"],
                            )
                            cpu, start = session.cpu_seconds(), time.perf_counter()
                            result = await self.client.request(
                                command, 90 + scale["kernel_seconds"]
                            )
                            result["server_cpu"] = (session.cpu_seconds() - cpu) / (
                                time.perf_counter() - start
                            )
                            merge_rounds(
                                merged[side].setdefault(kind, {}).setdefault(key, {}), result
                            )
                        if key == "panel":
                            panel_updates[side] += await session.value("panel.updates") - updates
                            comm_msgs[side] += session.comm_msgs - msgs
                            await session.run("panel.close()")
        for side in sides:
            results: dict[str, Any] = {
                kind: {key: finish_rounds(value) for key, value in by_key.items()}
                for kind, by_key in merged[side].items()
            }
            results["panel_updates"] = panel_updates[side]
            results["comm_msgs"] = comm_msgs[side]
            self.results["kernel" if side == "after" else "kernel_before"] = results
        print("5. kernel: log off / on / panel done", flush=True)

    async def busy(self, session: Any, url: str) -> dict[str, Any]:
        """Scenario 6: clients keep sending while a cell blocks the kernel; see the docstring."""
        scale = self.scale
        block = scale["busy_block"]
        await self.client.request(
            {
                "cmd": "busy_open",
                "url": url,
                "clients": scale["busy_clients"],
                "size": SMALL,
                "rate": scale["busy_rate"],
                "ping_interval": scale["busy_ping_interval"],
                "ping_timeout": scale["busy_ping_timeout"],
            },
            timeout=60,
        )
        await asyncio.sleep(scale["busy_lead"])
        await session.run("busy_waits.clear()")
        cell = asyncio.create_task(
            session.execute(BLOCK_CELL.format(seconds=block), timeout=block + 60)
        )
        sent = monotonic()
        for at in scale["busy_joins"]:
            await asyncio.sleep(max(0.0, sent + at - monotonic()))
            await self.client.request({"cmd": "busy_join", "timeout": block + 30}, timeout=30)
        output, _ = await cell
        if output.error:
            raise Broken(f"the blocking cell failed: {output.error}")
        block_start, block_end = json.loads(output.stdout)
        await asyncio.sleep(scale["busy_lead"])
        result = await self.client.request(
            {
                "cmd": "busy_result",
                "block_start": block_start,
                "block_end": block_end,
                "drain_timeout": 10.0,
            },
            timeout=120,
        )
        result["block_s"] = block_end - block_start
        result["rate"] = scale["busy_rate"]
        result["ping_interval"] = scale["busy_ping_interval"]
        result["ping_timeout"] = scale["busy_ping_timeout"]
        await asyncio.sleep(0.2)  # the keeper's last pass; the code before it logs no "wait"
        result["wait_events"] = await session.value("busy_waits")
        return result


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
    # Per round, for ratios between two servers measured back to back (see keeper_rows).
    if "server_cpu" in rounds[0]:
        out["per_round_cpu_per_msg"] = [
            r["server_cpu"] / r["rate"] if r["rate"] else math.nan for r in rounds
        ]
    if "latencies" in rounds[0]:
        out["per_round_p50_ms"] = [
            percentile(sorted(array("d", base64.b64decode(r["latencies"]))), 0.5) * 1000
            for r in rounds
        ]
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


# Scenario rows compared before and after a change (--before): (label, section, field, scale,
# format, higher is better). Plain server processes: ws_notebook as it comes (log on).
KEEPER_ROWS = (
    ("1. echo sequential 64 B: msg/s", "seq", "rate", 1, ",.0f", True),
    ("   round trip p50 (ms)", "seq", "p50_ms", 1, ".3f", False),
    ("   round trip p99 (ms)", "seq", "p99_ms", 1, ".3f", False),
    ("   server CPU per message (us)", "seq", "cpu_per_msg", 1e6, ".1f", False),
    ("   cores left to halt: msg/s", "seq_idle", "rate", 1, ",.0f", True),
    ("   cores left to halt: p50 (ms)", "seq_idle", "p50_ms", 1, ".3f", False),
    ("2. echo pipelined 64 B: msg/s", "pipe_small", "rate", 1, ",.0f", True),
    ("   server CPU per message (us)", "pipe_small", "cpu_per_msg", 1e6, ".1f", False),
    ("   echo pipelined 64 KiB: msg/s", "pipe_large", "rate", 1, ",.0f", True),
    ("3. broadcast: delivery rate (msg/s)", "broadcast", "rate", 1, ",.0f", True),
    ("   delivery latency p50 (ms)", "broadcast", "p50_ms", 1, ".2f", False),
    ("   delivery latency p99 (ms)", "broadcast", "p99_ms", 1, ".2f", False),
    ("   server CPU (% of a core)", "broadcast", "server_cpu", 100, ".0f", False),
    ("4. churn: connections/s", "churn", "rate", 1, ",.0f", True),
    ("memory: RSS fresh (MiB)", "memory", "fresh_kb", 1 / 1024, ".1f", False),
    ("   per idle connection (KiB)", "memory", "per_idle_kb", 1, ".1f", False),
)
KERNEL_KEEPER_ROWS = (
    ("echo sequential 64 B: msg/s", "seq", "rate", 1, ",.0f", True),
    ("round trip p50 (ms)", "seq", "p50_ms", 1, ".3f", False),
    ("round trip p99 (ms)", "seq", "p99_ms", 1, ".3f", False),
    ("kernel CPU per message, sequential (us)", "seq", "cpu_per_msg", 1e6, ".1f", False),
    ("echo pipelined 64 B: msg/s", "pipe", "rate", 1, ",.0f", True),
    ("kernel CPU per message, pipelined (us)", "pipe", "cpu_per_msg", 1e6, ".1f", False),
)


PER_ROUND = {"rate": "per_round_rate", "cpu_per_msg": "per_round_cpu_per_msg"}
PER_ROUND_P50 = "per_round_p50_ms"


class KeeperRow(NamedTuple):
    label: str
    before: float
    after: float
    spec: str
    higher_better: bool
    ratios: list[float]  # after/before round by round (measured back to back); may be empty


def keeper_rows(results: dict[str, Any]) -> list[KeeperRow]:
    """Every figure measured before and after (--before), with the per-round ratios."""
    out: list[KeeperRow] = []

    def figures(data: dict[str, Any], field: str) -> tuple[float | None, list[float]]:
        if field == "cpu_per_msg":
            value = data["server_cpu"] / data["rate"] if data.get("rate") else None
        else:
            value = data.get(field)
        rounds = data.get(PER_ROUND.get(field, PER_ROUND_P50 if field == "p50_ms" else ""), [])
        return value, rounds

    def add(label: str, before: dict, after: dict, field: str, scale: float, *rest: Any) -> None:
        (b, b_rounds), (a, a_rounds) = figures(before, field), figures(after, field)
        if not b or not a or math.isnan(b) or math.isnan(a):
            return
        ratios = [x / y for x, y in zip(a_rounds, b_rounds, strict=False) if x and y]
        out.append(KeeperRow(label, b * scale, a * scale, *rest, ratios))

    for label, section, field, scale, spec, higher in KEEPER_ROWS:
        if section == "memory":
            memory = results.get("memory") or {}
            before, after = (dict(memory.get(k) or {}) for k in (BEFORE, "nb"))
            for data in (before, after):
                if "idle_kb" in data:
                    data["per_idle_kb"] = (data["idle_kb"] - data["before_idle_kb"]) / data[
                        "idle_connections"
                    ]
        else:
            data = results.get(section) or {}
            before, after = data.get(BEFORE) or {}, data.get("nb") or {}
        add(label, before, after, field, scale, spec, higher)
    after_k, before_k = results.get("kernel") or {}, results.get("kernel_before") or {}
    for key, (variant, _, _) in KERNEL_VARIANTS.items():
        for label, kind, field, scale, spec, higher in KERNEL_KEEPER_ROWS:
            add(
                f"5. kernel, {variant}: {label}",
                (before_k.get(kind) or {}).get(key) or {},
                (after_k.get(kind) or {}).get(key) or {},
                field,
                scale,
                spec,
                higher,
            )
    return out


def print_keeper_table(results: dict[str, Any]) -> list[tuple[bool, str]]:
    """The table of figures after over before (--before); returns one verdict per row.

    Where a figure was measured in rounds, each round measured before and after back to back,
    so the median of the rounds' ratios is what the verdict uses: load from elsewhere on the
    machine moves both sides of a pair, not the ratio.
    """
    rows = keeper_rows(results)
    if not rows:
        return []
    code = results.get("code") or {}
    header = [
        "figure (plain process: log on)",
        "before",
        "after",
        "after/before",
        "per round: median [min-max]",
        "cost",
    ]
    table = []
    verdicts = []
    section = ""
    for row in rows:
        pooled = row.after / row.before
        r = statistics.median(row.ratios) if row.ratios else pooled
        spread = (
            f"{r:.2f} [{min(row.ratios):.2f}-{max(row.ratios):.2f}] x{len(row.ratios)}"
            if len(row.ratios) > 1
            else "-"
        )
        # The cost: how much worse after is, as a share (negative: better).
        cost = (1 - r) if row.higher_better else (r - 1)
        table.append(
            [
                row.label,
                fmt(row.before, row.spec),
                fmt(row.after, row.spec),
                f"{pooled:.2f}",
                spread,
                f"{cost:+.0%}",
            ]
        )
        if not row.label.startswith(" "):
            section = row.label.split(":")[0]
            name = row.label
        else:
            name = f"{section}: {row.label.strip()}"
        verdicts.append((cost <= KEEPER_TOLERANCE, f"after/before, {name}: {r:.2f}x"))
    print(
        f"\ncost of the change: after = {code.get('after')}, before = {code.get('before')} "
        "(same run; target: every row within 10%)"
    )
    print_table(header, table)
    print(
        "cost: how much worse after is than before, from the median of the per-round ratios "
        "where there are rounds\n(rates: 1 - after/before; latency, CPU and memory: "
        "after/before - 1); negative is better."
    )
    return verdicts


def print_busy_table(results: dict[str, Any]) -> None:
    sides = [
        (name, results[name]) for name in ("busy", "busy_before") if results.get(name) is not None
    ]
    if not sides:
        return
    first = sides[0][1]
    code = results.get("code") or {}
    header = [
        "6. busy kernel",
        *(f"{side}: {code.get(side)}" for side in ("after", "before")[: len(sides)]),
    ]
    rows: list[list[str]] = []

    def row(label: str, make: Any) -> None:
        cells = []
        for _, data in sides:
            try:
                cells.append(make(data))
            except (KeyError, TypeError, ValueError, IndexError):
                cells.append("-")
        rows.append([label, *cells])

    row("cell: time.sleep (s)", lambda d: f"{d['block_s']:.2f}")
    row("clients still connected", lambda d: f"{d['connected']} of {d['clients']}")
    row("messages sent during the block", lambda d: f"{d['sent_during']:,}")
    row("  answered during the block", lambda d: f"{d['answered_during']:,}")
    row("backlog at the block's end", lambda d: f"{d['backlog']:,}")
    row("time to first answer (ms)", lambda d: fmt(d["first_answer_ms"], ".1f"))
    row("backlog answered by (ms after the block)", lambda d: fmt(d["drained_ms"], ".1f"))
    row("  answered/s while draining", lambda d: fmt(d["drain_rate"], ",.0f"))
    row(
        "every message answered once, in order",
        lambda d: "yes" if d["in_order_once"] else f"no: {d['answered']:,} of {d['sent']:,}",
    )
    for i in range(max(len(d["handshakes"]) for _, d in sides)):
        row(
            f"client joining at +{first['handshakes'][i]['at_ms'] / 1000:.1f} s: handshake (ms)"
            if i < len(first["handshakes"])
            else f"client joining #{i + 1}: handshake (ms)",
            lambda d, i=i: (
                f"{d['handshakes'][i]['handshake_ms']:,.0f}"
                + (" in the block" if d["handshakes"][i]["during_block"] else " after it")
            ),
        )
    row(
        "  joined clients still connected",
        lambda d: f"{d['joined_connected']} of {d['joined']}",
    )
    row(
        "keepalive pings answered in the block / longest round trip (ms)",
        lambda d: f"{d['pings_during']} / {fmt(d['ping_rtt_max_ms'], ',.0f')}",
    )
    row(
        "'wait' events in the log / messages they count",
        lambda d: (
            f"{len(d['wait_events'])} / "
            f"{sum(int(text.split()[0]) for text in d['wait_events'] if text[:1].isdigit())}"
        ),
    )
    print()
    print_table(header, rows)
    print(
        f"{first['clients']} clients, 64 B messages at {first['rate']} msg/s each, keepalive as "
        f"the websockets library's: a ping every {first['ping_interval']:g} s, closed (1011) "
        f"if its pong takes over {first['ping_timeout']:g} s."
    )
    for side, (_, data) in zip(("after", "before"), sides, strict=False):
        for dropped in data["dropped"][:6]:
            print(f"  {side}: dropped {dropped}")


def report(results: dict[str, Any], args: argparse.Namespace) -> list[tuple[bool, str]]:
    """Print the tables and the verdicts; returns the verdicts."""
    labels: dict[str, str] = results.get("servers") or {k: v[0] for k, v in SERVERS.items()}
    keys = list(labels)
    with_before = BEFORE in keys
    with_js = "nb_js" in keys
    header = [
        "scenario / figure",
        *(labels[k] for k in keys),
        "nb/Tornado",
        "nb/websockets",
        "log on/off",
        *(["JS/Python"] if with_js else []),
        *(["nb/before"] if with_before else []),
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
                *([ratio(values.get("nb_js"), values.get("nb"))] if with_js else []),
                *([ratio(values.get("nb"), values.get(BEFORE))] if with_before else []),
            ]
        )

    def pick(section: str, field: str, scale: float = 1.0) -> dict[str, float | None]:
        data = results.get(section) or {}
        return {
            k: (data[k][field] * scale if k in data and data[k].get(field) is not None else None)
            for k in keys
        }

    def per_message(section: str) -> dict[str, float | None]:
        """The server's CPU time per message, in microseconds."""
        data = results.get(section) or {}
        return {
            k: (
                data[k]["server_cpu"] / data[k]["rate"] * 1e6
                if data.get(k, {}).get("rate")
                else None
            )
            for k in keys
        }

    if "seq" in results:
        row("1. echo sequential 64 B: msg/s", pick("seq", "rate"), ",.0f")
        row("   round trip p50 (ms, lower better)", pick("seq", "p50_ms"), ".3f")
        row("   round trip p99 (ms, lower better)", pick("seq", "p99_ms"), ".3f")
        row("   server CPU (% of a core)", pick("seq", "server_cpu", 100), ".0f")
        row("   server CPU per message (us)", per_message("seq"), ".0f")
        row("   server time in GC (%)", pick("seq", "server_gc", 100), ".1f")
        row("   client CPU (% of a core)", pick("seq", "client_cpu", 100), ".0f")
    if "seq_idle" in results:
        row("   cores left to halt: msg/s", pick("seq_idle", "rate"), ",.0f")
        row("   cores left to halt: p50 (ms)", pick("seq_idle", "p50_ms"), ".3f")
        row("   cores left to halt: p99 (ms)", pick("seq_idle", "p99_ms"), ".3f")
    if "pipe_small" in results:
        row("2. echo pipelined 64 B: msg/s", pick("pipe_small", "rate"), ",.0f")
        row("   server CPU (% of a core)", pick("pipe_small", "server_cpu", 100), ".0f")
        row("   server CPU per message (us)", per_message("pipe_small"), ".1f")
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
    if with_js:
        print(
            "ws_notebook JS: the same, its echo a JavaScript handler (V8) that returns the "
            "message; JS/Python is its\nfigure over nb's (scenarios 1 and 2 only)."
        )
    code = results.get("code") or {}
    if with_before:
        print(f"ws_notebook: {code.get('after')}; nb before: {code.get('before')} (log on)")

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

    print_busy_table(results)
    keeper_verdicts = print_keeper_table(results)

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
        verdict(ok, f"{label}: {r:.2f}x {labels[other]}")

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
    for section, label in (
        ("seq", "1. sequential msg/s"),
        ("seq_idle", "1. sequential msg/s, cores left to halt"),
        ("pipe_small", "2. pipelined 64 B msg/s"),
    ):
        data = results.get(section) or {}
        if data.get("nb_js", {}).get("rate") and data.get("nb", {}).get("rate"):
            r = data["nb_js"]["rate"] / data["nb"]["rate"]
            verdict(
                r >= JS_TARGET,
                f"{label}: the JavaScript echo at least {JS_TARGET:g}x the Python echo: {r:.2f}x",
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
    busy = results.get("busy")
    if busy:
        verdict(
            busy["connected"] == busy["clients"] and busy["joined_connected"] == busy["joined"],
            f"6. every client stayed connected through the block "
            f"({busy['connected'] + busy['joined_connected']} of "
            f"{busy['clients'] + busy['joined']})",
        )
        verdict(busy["in_order_once"], "6. every message answered once and in order")
        for handshake in busy["handshakes"]:
            verdict(
                handshake["during_block"],
                f"6. a client connecting {handshake['at_ms'] / 1000:.1f} s into the block "
                f"completed its handshake during it ({handshake['handshake_ms']:,.0f} ms)",
            )
    verdicts.extend(keeper_verdicts)
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
            + ", ".join(f"{run.table[k][0]} {url}" for k, url in run.urls.items())
            + f"; client pid {run.client.pid}",
            flush=True,
        )
        print(
            f"ws_notebook: {run.names['after']}"
            + (f"; nb before: {run.names['before']}" if run.before is not None else ""),
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
        if set(KERNEL_SCENARIOS) & set(args.scenarios):
            await run.kernels()
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
    broken.extend(busy_broken(run.results.get("busy")))
    return run.results, broken


def busy_broken(busy: dict[str, Any] | None) -> list[str]:
    """What broke in scenario 6 (ws_notebook as measured, not the code --before names)."""
    if not busy:
        return []
    broken = [f"busy kernel: {problem}" for problem in busy["problems"]]
    broken += [f"busy kernel: a client could not join: {e}" for e in busy["join_errors"]]
    if busy["connected"] < busy["clients"] or busy["joined_connected"] < busy["joined"]:
        broken.append(f"busy kernel: clients dropped: {'; '.join(busy['dropped'])}")
    if not busy["in_order_once"] and not busy["problems"]:
        broken.append("busy kernel: messages lost, answered twice or out of order")
    if not busy["sent_during"]:
        broken.append("busy kernel: no message was sent during the block")
    return broken


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every scenario at a tiny scale")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--no-kernel", action="store_true", help="skip the kernel scenarios (kernel, busy)"
    )
    parser.add_argument(
        "--before",
        metavar="REV|DIR",
        help="also measure this ws_notebook (a git revision, e.g. b17a213, or a directory "
        "holding ws_notebook/), beside the one measured",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of scenarios 1, 2, 4 and 5 (default: 2; 1 in --quick); with --before, "
        "more rounds of shorter --seconds give the cost table a median over more pairs",
    )
    parser.add_argument(
        "--seconds", type=float, help="seconds per round, server and scenario (default: 2)"
    )
    parser.add_argument(
        "--after",
        metavar="REV|DIR",
        help="the ws_notebook measured (default: this checkout as it is on disk)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)}",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated subset of {','.join(SERVERS)} (the plain server processes; "
        "e.g. nb,nb_js with --scenarios seq,pipe --no-kernel: JavaScript against Python)",
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.no_kernel:
        args.scenarios = [s for s in args.scenarios if s not in KERNEL_SCENARIOS]
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
    budget = 60 if args.quick else (900 if args.before else 600)
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
