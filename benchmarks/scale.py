"""Scaling out on Redis: broadcasts to 2,000 clients from 1 worker, and from 2 workers joined by
Redis, and what an idle connection costs a worker.

    python benchmarks/scale.py             # 2,000 clients, 10,000 idle: the README's figures
    python benchmarks/scale.py --quick     # 200 clients, 400 idle, a few seconds (in the tests)
    python benchmarks/scale.py --json FILE # the figures as JSON too

Both setups are real ``ws-notebook serve`` processes (keepalive pings off, the event log on as
it comes) of a project with two endpoints: ``feed``, whose clients only listen (each is told its
id on open, so the benchmark knows which worker holds it), and ``control``, whose handler makes
the broadcasts when asked. The setups, in the same run:

- ``1 worker``: ``serve`` without a broker, the baseline;
- ``2 workers + Redis``: ``serve --workers 2 --broker redis://...`` (``SO_REUSEPORT`` spreads the
  clients), with a ``redis-server`` started here (no persistence).

For each: RSS of every worker before and after the clients connect (KiB per idle connection),
then two broadcast runs, each message stamped with ``time.monotonic()`` when its broadcast began:
*paced* (a 256-byte message every 100 ms: 20,000 deliveries/s offered to 2,000 clients, a load
both setups keep up with, so the latency is the delivery's, not a backlog's) and *burst*
(broadcasts back to back: the highest delivery rate). With 2 workers, the clients of the worker that broadcasts get each
message directly and the others through Redis, in the same broadcast: the difference of their
latencies is the broker hop, the headline figure. Then capacity: ``--idle`` idle connections
held by the 2 workers, checked open through ``GET /websockets``, with RSS per connection.

The clients are this process (one asyncio loop, the lean client of ``_clients.py``); on the
2-core machine the benchmark targets, they share the cores with the workers and Redis, as
everything does here. A run that fails (a client cannot connect, a message is missing) prints
BROKEN and exits 1; no figure is judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from pathlib import Path
from typing import Any

from _clients import WS, _factory, client_frame, connect
from _common import ROOT, Broken, latency_summary, monotonic, raise_fd_limit, rss_kb

HOST = "127.0.0.1"
CONNECT_CONCURRENCY = 50
TICKS = os.sysconf("SC_CLK_TCK")

FEED = """\
def on_open(client):
    client.send(f"id {client.id}")
"""

CONTROL = """\
import asyncio
import time

import ws_notebook


async def on_message(message, client):
    \"\"\"go COUNT INTERVAL SIZE: COUNT broadcasts to `feed`, one every INTERVAL seconds (late
    ones at once, none skipped; 0: back to back), each stamped with when it began.\"\"\"
    _, count, interval, size = message.split()
    count, interval, size = int(count), float(interval), int(size)
    start = time.monotonic()
    for seq in range(count):
        delay = start + seq * interval - time.monotonic()
        await asyncio.sleep(max(delay, 0))  # 0: the loop writes out and reads in between
        head = f"{seq:06d} {time.monotonic():.6f} "
        ws_notebook.broadcast("feed", head + "x" * max(0, size - len(head)))
    client.send(f"done {time.monotonic() - start:.6f} {client.id}")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of another process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as answer:
        return json.load(answer)


# --- the processes ----------------------------------------------------------------------------


class Redis:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", HOST, "--dir", str(folder), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

    async def ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection(HOST, self.port)
                writer.write(b"PING\r\n")
                answer = await reader.read(16)
                writer.close()
                if answer.startswith(b"+PONG"):
                    return
            await asyncio.sleep(0.05)
        raise Broken("redis-server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Deployment:
    """``ws-notebook serve`` of the benchmark's project, with 1 or N workers."""

    def __init__(self, project: Path, workers: int, broker: str | None, log: Path) -> None:
        self.port = free_port()
        self.workers = workers
        self.log = log
        command = [sys.executable, "-m", "ws_notebook", "serve", str(project), "--no-watch",
                   "--port", str(self.port), "--ping-interval", "0",
                   "--max-connections", "100000", "--workers", str(workers)]  # fmt: skip
        if broker:
            command += ["--broker", broker]
        env = {k: v for k, v in os.environ.items() if k != "WS_NOTEBOOK_BROKER"}
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=ROOT
            )
        self.pids: list[int] = []

    async def ready(self) -> None:
        """Wait until every worker serves; then ``pids`` holds the workers' process ids."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Broken(f"serve exited ({self.process.returncode}):\n{self.log.read_text()}")
            if self.log.read_text().count("serving 2 endpoints") == self.workers:
                break
            await asyncio.sleep(0.05)
        else:
            raise Broken(f"serve did not start:\n{self.log.read_text()}")
        if self.workers == 1:
            self.pids = [self.process.pid]
        else:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            self.pids = [int(pid) for pid in children.read_text().split()]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss(self) -> list[int]:
        return [rss_kb(pid) for pid in self.pids]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the clients -------------------------------------------------------------------------------


class Tally:
    """Deliveries and their latencies, for clients of the broadcasting worker and the others."""

    def __init__(self) -> None:
        self.reset(0, "")

    def reset(self, expected: int, sender: str) -> None:
        self.expected = expected
        self.sender = sender  # the worker (id suffix) that makes the broadcasts
        self.received = 0
        self.bad = 0
        self.local = array("d")
        self.remote = array("d")
        self.first_sent = float("inf")
        self.last_received = 0.0
        self.complete = asyncio.get_running_loop().create_future()


class Listener(WS):
    """A feed client: learns its worker from the greeting, then times every broadcast."""

    want_payload = True

    def __init__(self, host: str, path: str, tally: Tally) -> None:
        super().__init__(host, path)
        self.tally = tally
        self.worker: str | None = None
        self.greeted = self.loop.create_future()
        self.now = 0.0

    def data_received(self, data: bytes) -> None:
        self.now = monotonic()
        super().data_received(data)

    def on_message(self, buffer: bytearray, start: int, end: int) -> None:
        if self.worker is None:  # "id c12.4f2a9c": the suffix names the worker ("" alone)
            self.worker = bytes(buffer[start + 3 : end]).decode().partition(".")[2]
            self.greeted.set_result(None)
            return
        tally = self.tally
        try:
            sent = float(buffer[start + 7 : buffer.find(b" ", start + 7, end)])
        except ValueError:
            tally.bad += 1
            return
        (tally.local if self.worker == tally.sender else tally.remote).append(self.now - sent)
        tally.received += 1
        tally.last_received = self.now
        tally.first_sent = min(tally.first_sent, sent)
        if tally.received >= tally.expected and not tally.complete.done():
            tally.complete.set_result(None)


async def open_listeners(url: str, count: int, tally: Tally) -> list[Listener]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    factory = _factory(Listener, url, tally)

    async def one() -> Listener:
        async with gate:
            listener = await connect(factory, url, timeout=60)
            await asyncio.wait_for(listener.greeted, 60)
            return listener

    try:
        return list(await asyncio.gather(*(one() for _ in range(count))))
    except (OSError, ConnectionError, asyncio.TimeoutError) as error:
        raise Broken(f"a client could not connect to {url}: {error!r}") from None


async def close_all(listeners: list[Listener]) -> None:
    gate = asyncio.Semaphore(200)

    async def one(listener: Listener) -> None:
        async with gate:
            await listener.close(timeout=10)

    await asyncio.gather(*(one(listener) for listener in listeners))


class Control(WS):
    want_payload = True

    def __init__(self, host: str, path: str) -> None:
        super().__init__(host, path)
        self.answers: asyncio.Queue[str] = asyncio.Queue()

    def on_message(self, buffer: bytearray, start: int, end: int) -> None:
        self.answers.put_nowait(bytes(buffer[start:end]).decode())


# --- the measurements --------------------------------------------------------------------------


async def broadcast_run(
    deployment: Deployment,
    redis: Redis | None,
    control: Control,
    tally: Tally,
    sender: str,
    clients: int,
    count: int,
    interval: float,
) -> dict[str, Any]:
    tally.reset(count * clients, sender)
    processes = deployment.pids + ([redis.process.pid] if redis is not None else [])
    cpu_before = sum(cpu_seconds(pid) for pid in processes)
    control.write(_control_frame(f"go {count} {interval} 256"))
    answer = await asyncio.wait_for(control.answers.get(), 120)
    if not answer.startswith("done "):
        raise Broken(f"control answered {answer!r}")
    seen = -1
    deadline = time.monotonic() + 60
    while not tally.complete.done() and tally.received != seen and time.monotonic() < deadline:
        seen = tally.received
        await asyncio.wait([tally.complete], timeout=2.0)  # 2 s without a message: it is over
    cpu = sum(cpu_seconds(pid) for pid in processes) - cpu_before
    span = tally.last_received - tally.first_sent if tally.received else 0.0
    every = array("d", tally.local)
    every.extend(tally.remote)
    result = {
        "broadcasts": count,
        "interval_ms": interval * 1000,
        "expected": tally.expected,
        "received": tally.received,
        "bad": tally.bad,
        "send_seconds": float(answer.split()[1]),
        "rate": tally.received / span if span > 0 else 0.0,
        "server_cpu_per_1000": cpu / tally.received * 1e6 if tally.received else None,  # ms
        "all": latency_summary(every),
        "local": latency_summary(tally.local),
        "remote": latency_summary(tally.remote),
    }
    if tally.received != tally.expected or tally.bad:
        result["broken"] = f"{tally.received:,} of {tally.expected:,} delivered ({tally.bad} bad)"
    return result


def _control_frame(text: str) -> bytes:
    return client_frame(text.encode())


async def measure(
    deployment: Deployment, redis: Redis | None, args: argparse.Namespace
) -> dict[str, Any]:
    await deployment.ready()
    base = f"ws://{HOST}:{deployment.port}/websockets/service"
    await asyncio.sleep(0.5)  # settle after start
    rss_before = deployment.rss()
    redis_before = rss_kb(redis.process.pid) if redis is not None else 0
    tally = Tally()
    started = time.perf_counter()
    try:
        listeners = await open_listeners(f"{base}/feed", args.clients, tally)
    except Broken as error:
        tail = "\n".join(deployment.log.read_text().splitlines()[-15:])
        raise Broken(f"{error} ({deployment.workers} worker(s)); serve said:\n{tail}") from None
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(1.0)
    rss_after = deployment.rss()
    held: dict[str, int] = {}
    for listener in listeners:
        held[listener.worker or ""] = held.get(listener.worker or "", 0) + 1
    control = await connect(_factory(Control, f"{base}/control"), f"{base}/control")
    sender = await _worker_of(control)
    await asyncio.sleep(1.5 if redis is not None else 0.1)  # every worker's registry refreshed
    result: dict[str, Any] = {
        "workers": deployment.workers,
        "clients": len(listeners),
        "connect_seconds": connect_seconds,
        "held": sorted(held.values(), reverse=True),
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "kib_per_connection": (sum(rss_after) - sum(rss_before)) / len(listeners),
        "redis_kib_per_connection": (
            (rss_kb(redis.process.pid) - redis_before) / len(listeners) if redis else None
        ),
    }
    for run, count, interval in (
        ("paced", args.broadcasts, args.interval),
        ("burst", args.broadcasts, 0.0),
    ):
        result[run] = await broadcast_run(
            deployment, redis, control, tally, sender, len(listeners), count, interval
        )
    await control.close()
    await close_all(listeners)
    return result


async def _worker_of(control: Control) -> str:
    """The worker holding the control connection, which makes the broadcasts ("" alone)."""
    control.write(_control_frame("go 0 0 0"))  # no broadcast: "done 0.000001 c7.4f2a9c"
    answer = await asyncio.wait_for(control.answers.get(), 30)
    return answer.split()[2].partition(".")[2]


async def capacity(deployment: Deployment, redis: Redis, count: int) -> dict[str, Any]:
    """``count`` idle connections on the 2 workers: all held? RSS per connection."""
    url = f"ws://{HOST}:{deployment.port}/websockets/service/feed"
    await asyncio.sleep(0.5)
    before = deployment.rss()
    redis_before = rss_kb(redis.process.pid)
    listeners = await open_listeners(url, count, Tally())
    await asyncio.sleep(2.0)  # idle; the registry refreshed on every worker
    after = deployment.rss()
    entry = next(e for e in get_json(deployment.port, "/websockets") if e["endpoint"] == "feed")
    per_worker: dict[str, int] = {}
    for listener in listeners:
        per_worker[listener.worker or ""] = per_worker.get(listener.worker or "", 0) + 1
    still_open = sum(1 for listener in listeners if not listener.closed.done())
    result = {
        "opened": count,
        "still_open": still_open,
        "counted": entry["clients"],
        "held": sorted(per_worker.values(), reverse=True),
        "kib_per_connection": (sum(after) - sum(before)) / count,
        "redis_kib_per_connection": (rss_kb(redis.process.pid) - redis_before) / count,
        "rss_after_kb": after,
    }
    if still_open != count or entry["clients"] != count:
        result["broken"] = f"{still_open:,} open, {entry['clients']:,} counted of {count:,}"
    await close_all(listeners)
    return result


# --- the report -------------------------------------------------------------------------------


def _n(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b or a != a or b != b else f"{a / b:.2f}"


def _pair(latency: dict[str, float]) -> str:
    return f"{_n(latency['p50_ms'], '.1f')} / {_n(latency['p99_ms'], '.1f')}"


def report(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """Print the table; returns what broke."""
    one, two, held = results["one"], results["two"], results["capacity"]
    rows: list[list[str]] = []

    def row(figure: str, a: str, b: str, ratio: str = "") -> None:
        rows.append([figure, a, b, ratio])

    row(
        "clients per worker",
        " / ".join(_n(n) for n in one["held"]),
        " / ".join(_n(n) for n in two["held"]),
    )
    row(
        f"connect {args.clients:,} clients, s",
        _n(one["connect_seconds"], ".2f"),
        _n(two["connect_seconds"], ".2f"),
        _ratio(two["connect_seconds"], one["connect_seconds"]),
    )
    row(
        "worker RSS per idle connection, KiB",
        _n(one["kib_per_connection"], ".1f"),
        _n(two["kib_per_connection"], ".1f"),
        _ratio(two["kib_per_connection"], one["kib_per_connection"]),
    )
    offered = args.clients / args.interval
    for run, title in (("paced", f"paced, {offered:,.0f}/s offered"), ("burst", "burst")):
        a, b = one[run], two[run]
        row(f"{title}: delivered msg/s", _n(a["rate"]), _n(b["rate"]), _ratio(b["rate"], a["rate"]))
        row(
            "  latency p50 / p99, ms",
            _pair(a["all"]),
            _pair(b["all"]),
            _ratio(b["all"]["p99_ms"], a["all"]["p99_ms"]),
        )
        row("  broadcasting worker's clients", "", _pair(b["local"]))
        row("  other worker's clients, via Redis", "", _pair(b["remote"]))
        row(
            "  CPU per 1,000 deliveries, ms",
            _n(a["server_cpu_per_1000"], ".1f"),
            _n(b["server_cpu_per_1000"], ".1f"),
            _ratio(b["server_cpu_per_1000"], a["server_cpu_per_1000"]),
        )
    header = ["figure", "1 worker", "2 workers + Redis", "2w/1w"]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(4)]
    for line in [header, ["-" * w for w in widths], *rows]:
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells))

    paced = two["paced"]
    hop = paced["remote"]["p50_ms"] - paced["local"]["p50_ms"]
    print()
    print(
        f"broker hop per broadcast (paced, same broadcasts): +{hop:.2f} ms at p50 "
        f"(via Redis / direct: p50 {_ratio(paced['remote']['p50_ms'], paced['local']['p50_ms'])}, "
        f"p99 {_ratio(paced['remote']['p99_ms'], paced['local']['p99_ms'])})"
    )
    print(
        f"capacity: {held['opened']:,} idle connections on 2 workers, "
        f"{held['still_open']:,} open and {held['counted']:,} counted by GET /websockets; "
        f"held per worker {' / '.join(_n(n) for n in held['held'])}; "
        f"{held['kib_per_connection']:.1f} KiB worker RSS and "
        f"{held['redis_kib_per_connection']:.2f} KiB Redis RSS per connection"
    )
    broken = [
        f"{name} {run}: {part['broken']}"
        for name in ("one", "two")
        for run in ("paced", "burst")
        if "broken" in (part := results[name][run])
    ]
    if "broken" in held:
        broken.append(f"capacity: {held['broken']}")
    for line in broken:
        print(f"BROKEN: {line}")
    return broken


# --- running it -------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(args.clients + args.idle + 2048)  # the workers inherit it
    with tempfile.TemporaryDirectory(prefix="ws-notebook-scale-") as tmp:
        folder = Path(tmp)
        project = folder / "project"
        project.mkdir()
        for name, source in (("feed", FEED), ("control", CONTROL)):
            (project / f"{name}.py").write_text(source, "utf-8")
            descriptor = {"endpoint": name, "handler": f"{name}.py"}
            (project / f"{name}.websocket").write_text(json.dumps(descriptor), "utf-8")
        redis = Redis(folder)
        results: dict[str, Any] = {}
        try:
            await redis.ready()
            one = Deployment(project, 1, None, folder / "one.log")
            try:
                results["one"] = await measure(one, None, args)
            finally:
                one.stop()
            two = Deployment(project, 2, redis.url, folder / "two.log")
            try:
                results["two"] = await measure(two, redis, args)
                results["capacity"] = await capacity(two, redis, args.idle)
            finally:
                two.stop()
        finally:
            redis.stop()
        return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small scale, a few seconds")
    parser.add_argument("--clients", type=int, help="broadcast clients (default 2,000)")
    parser.add_argument("--broadcasts", type=int, help="broadcasts per run (default 250)")
    parser.add_argument("--interval", type=float, help="paced: seconds apart (default 0.1)")
    parser.add_argument("--idle", type=int, help="idle connections held (default 10,000)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    small = {"clients": 200, "broadcasts": 20, "interval": 0.02, "idle": 400}
    full = {"clients": 2000, "broadcasts": 200, "interval": 0.1, "idle": 10_000}
    for name, value in (small if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("redis-server") is None:
        print("BROKEN: redis-server is not installed (apt-get install redis-server)")
        return 1
    try:
        results = asyncio.run(run(args))
    except Broken as error:
        print(f"BROKEN: {error}")
        return 1
    broken = report(results, args)
    if args.json is not None:
        args.json.write_text(json.dumps({**results, "broken": broken}, indent=1))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
