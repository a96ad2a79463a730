"""One echo server of the comparison, in its own process: ws_notebook, bare Tornado or websockets.

    python benchmarks/_servers.py {ws_notebook,tornado,websockets} [--log-capacity N]
                                  [--checkout DIR] [--js]

Each serves an echo on 127.0.0.1 (a free port) and prints ``{"port", "pid", "path"}`` as its
first line (ws_notebook adds ``module``, the file it imported, and ``keeper``, whether that
code has the wire keeper); then it answers JSON commands on stdin (see
``_common.serve_commands``):

- ``stats``: RSS, CPU time, open connections, and for ws_notebook the event log's figures;
- ``broadcast`` (count, interval, size): every ``interval`` seconds, one text message of ``size``
  bytes to every connected client, ``count`` times; each message starts with its sequence number
  and the ``time.monotonic()`` at which its broadcast began, so clients can time its delivery.

The three echo handlers do the same, each the way its library's documentation shows: ws_notebook
an endpoint whose ``on_message`` calls ``client.send(message)`` (so the endpoint's dispatch, the
client bookkeeping and the event log are all on the path), Tornado a ``WebSocketHandler`` whose
``on_message`` calls ``self.write_message``, websockets a connection handler that does
``async for message in ws: await ws.send(message)``. With ``--js`` ws_notebook's endpoint runs a
JavaScript module instead (in V8, ``ws_notebook.javascript``) that replies as codbex handlers
do, by returning: ``export function onMessage(message) { return message; }``. Broadcasts use
``Endpoint.broadcast``, a loop of ``write_message`` over the open handlers, and
``websockets.asyncio.server.broadcast``.
Keep-alive pings are off everywhere (idle benchmark clients would otherwise be pinged), and no
compression is offered by the clients.

``--checkout DIR`` serves ws_notebook from another copy of the package (a directory holding
``ws_notebook/``, such as a ``git worktree`` of an earlier commit): ``compare.py --before REV``
runs the code before a change beside the code after it, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import HOST, raise_fd_limit, reply, rss_kb, serve_commands

PATH = "/websockets/service/echo"
JS_ECHO = "export function onMessage(message) {\n  return message;\n}\n"
MAX_MESSAGE = 16 * 1024 * 1024


def message_for(seq: int, size: int) -> str:
    head = f"{seq:06d} {time.monotonic():.6f} "
    return head + "x" * max(0, size - len(head))


async def run_broadcasts(
    send: Callable[[str], Any], count: int, interval: float, size: int
) -> dict[str, Any]:
    """``count`` broadcasts paced every ``interval`` seconds; late ones go out at once, none skipped."""
    start = time.monotonic()
    late_max = 0.0
    for seq in range(count):
        due = start + seq * interval
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            late_max = max(late_max, now - due)
            await asyncio.sleep(0)  # let the loop write out and read in between
        send(message_for(seq, size))
    await asyncio.sleep(0)
    return {"broadcasts": count, "seconds": time.monotonic() - start, "late_max": late_max}


# --- the three servers -------------------------------------------------------------------------


async def ws_notebook_server(
    log_capacity: int, javascript: bool = False
) -> tuple[int, Callable, Callable, Callable]:
    from ws_notebook import Descriptor, Handlers, Limits, Registry, Server

    def on_message(message: str | bytes, client: Any) -> None:
        client.send(message)

    if javascript:  # as a codbex handler replies: by returning the reply
        folder = Path(tempfile.mkdtemp(prefix="ws_compare_js_"))
        (folder / "echo.js").write_text(JS_ECHO, "utf-8")
        handlers = Handlers.from_file(folder / "echo.js")
        shutil.rmtree(folder)  # read and compiled: V8 has it
    else:
        handlers = Handlers.from_namespace({"on_message": on_message})
    registry = Registry()
    endpoint = registry.mount(
        Descriptor.new("echo", handler="bench", created_by="bench"),
        handlers,
        log_capacity=log_capacity,
    ).endpoint
    if endpoint.log.capacity != log_capacity:
        raise SystemExit(f"asked for log capacity {log_capacity}, got {endpoint.log.capacity}")
    limits = Limits(
        max_message_size=MAX_MESSAGE, ping_interval=0, ping_timeout=0, max_connections=100_000
    )
    server = Server(registry, HOST, 0, limits=limits)
    server.start()

    def stats() -> dict[str, Any]:
        log = endpoint.log
        return {
            "connections": len(endpoint.clients),
            "log_capacity": log.capacity,
            "log_total": log.total,
            "log_kept": len(log),
            "log_dropped": log.dropped,
            "messages_in": endpoint.messages_in,
            "messages_out": endpoint.messages_out,
        }

    return server.port, endpoint.broadcast, stats, server.stop


async def tornado_server() -> tuple[int, Callable, Callable, Callable]:
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from tornado.web import Application
    from tornado.websocket import WebSocketClosedError, WebSocketHandler

    handlers: set[WebSocketHandler] = set()

    class Echo(WebSocketHandler):
        def open(self) -> None:
            handlers.add(self)

        def on_message(self, message: str | bytes) -> None:
            self.write_message(message, binary=isinstance(message, bytes))

        def on_close(self) -> None:
            handlers.discard(self)

    app = Application([(PATH, Echo)], websocket_max_message_size=MAX_MESSAGE)
    sockets = bind_sockets(0, HOST)
    http = HTTPServer(app)
    http.add_sockets(sockets)

    def broadcast(message: str) -> None:
        for handler in list(handlers):
            with contextlib.suppress(WebSocketClosedError):
                handler.write_message(message)

    def stats() -> dict[str, Any]:
        return {"connections": len(handlers)}

    return sockets[0].getsockname()[1], broadcast, stats, http.stop


async def websockets_server() -> tuple[int, Callable, Callable, Callable]:
    from websockets.asyncio.server import broadcast as ws_broadcast
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(
        echo, HOST, 0, ping_interval=None, compression=None, max_size=MAX_MESSAGE
    ).__aenter__()
    port = next(iter(server.sockets)).getsockname()[1]

    def broadcast(message: str) -> None:
        ws_broadcast(server.connections, message)

    def stats() -> dict[str, Any]:
        return {"connections": len(server.connections)}

    return port, broadcast, stats, server.close


SERVERS = {
    "ws_notebook": ws_notebook_server,
    "tornado": tornado_server,
    "websockets": websockets_server,
}


class GcProbe:
    """Counts the collector's runs by generation and the time they take (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._start = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            generation = info["generation"]
            self.counts[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._start


async def main(kind: str, log_capacity: int, javascript: bool) -> None:
    raise_fd_limit()
    probe = GcProbe()
    hello: dict[str, Any] = {}
    if kind == "ws_notebook":
        port, broadcast, stats, stop = await ws_notebook_server(log_capacity, javascript)
        import ws_notebook

        hello["module"] = ws_notebook.__file__
        hello["keeper"] = importlib.util.find_spec("ws_notebook.wire") is not None
    else:
        port, broadcast, stats, stop = await SERVERS[kind]()

    async def handle(command: dict[str, Any]) -> bool:
        cmd = command["cmd"]
        if cmd == "stats":
            if command.get("collect"):
                gc.collect()
            times = os.times()
            reply(
                {
                    "rss_kb": rss_kb(),
                    "cpu": times.user + times.system,
                    "gc_counts": probe.counts,
                    "gc_seconds": probe.seconds,
                    "gc_objects": len(gc.get_objects()),
                    **stats(),
                }
            )
        elif cmd == "broadcast":
            reply(
                await run_broadcasts(
                    broadcast, command["count"], command["interval"], command["size"]
                )
            )
        else:
            reply({"error": f"unknown command {cmd!r}"})
        return True

    reply({"port": port, "pid": os.getpid(), "path": PATH, **hello})
    try:
        await serve_commands(handle)
    finally:
        stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--log-capacity", type=int, default=1000)
    parser.add_argument("--checkout", help="import ws_notebook from this directory")
    parser.add_argument("--js", action="store_true", help="ws_notebook: a JavaScript echo")
    args = parser.parse_args()
    if args.js and args.kind != "ws_notebook":
        parser.error("--js: only ws_notebook runs JavaScript handlers")
    if args.checkout:  # ahead of this checkout (and of an editable install's path entry)
        sys.path.insert(0, os.path.abspath(args.checkout))
    asyncio.run(main(args.kind, args.log_capacity, args.js))
