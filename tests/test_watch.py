"""Watching a project folder: ``ProjectWatcher`` applies edits to a running registry, in
``ws-notebook serve`` (on by default) and behind ``%websocket load --watch`` in a notebook.

- A changed handler or descriptor is reloaded in place (connections kept); a broken edit is
  reported and the last good version keeps serving; files added and removed mount and unmount.
- Module code that interrupts (``KeyboardInterrupt``, ``SystemExit``) is a broken edit too.
- An edited helper module reloads the endpoints that import it.
- Modules load off the serving loop, with a time limit, so a slow or endless one holds up
  nothing else.

Real files in ``tmp_path``, real ``ws-notebook serve`` subprocesses and servers on 127.0.0.1,
real ``websockets`` clients, and a real kernel for the magic.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect

from ws_notebook import Descriptor, Handlers, Registry, Server
from ws_notebook.watch import ProjectWatcher, WatchEvent

from . import test_cli
from .kernels import Kernel
from .test_cli import ECHO as WELCOMING_ECHO
from .test_cli import Served, close_code, connect, recv
from .test_kernel import url_of
from .test_loading import (
    ECHO,
    WAIT,
    in_project,
    namespaces,
    without_interrupt,
    write,
    write_endpoint,
)

pytestmark = pytest.mark.timeout(120)


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        await asyncio.sleep(0.02)


async def round_trip(url: str, text: str) -> tuple[str, float]:
    """One message to ``url`` and its reply, with the time it took."""
    async with websockets.connect(url, open_timeout=WAIT) as ws:
        started = time.monotonic()
        await ws.send(text)
        reply = await asyncio.wait_for(ws.recv(), WAIT)
        return str(reply), time.monotonic() - started


serve = test_cli.serve  # the fixture: `ws-notebook serve FOLDER --port 0 OPTIONS`, killed after


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    write_endpoint(folder, "echo", WELCOMING_ECHO, description="Echoes back")
    return folder


# --- ws-notebook serve reloads what changes -------------------------------------------------------


@pytest.mark.slow
async def test_changed_handler_is_reloaded_in_place_and_a_broken_edit_keeps_the_old_one(
    project: Path, serve
) -> None:
    served = await serve(project)
    ws = await connect(served.url("echo"))
    await recv(ws)
    await ws.send("a")
    assert await recv(ws) == "a"

    mark = served.mark()
    (project / "echo.py").write_text(
        "def on_message(message, client):\n    client.send(message * 2)\n"
    )
    await served.wait_for(r"echo: reloaded from .*echo\.websocket .*1 connections kept", mark)
    await ws.send("b")
    assert await recv(ws) == "bb"  # the same connection, the new handler

    mark = served.mark()
    (project / "echo.py").write_text(
        "def on_message(message, client):\n    client.send(message * 3\n"
    )
    await served.wait_for(re.escape(f"{project / 'echo.py'}:2: '(' was never closed"), mark)
    await served.wait_for(
        r"echo: .*echo\.websocket is broken; the last good version keeps serving", mark
    )
    await ws.send("c")
    assert await recv(ws) == "cc"  # still the last good version
    async with await connect(served.url("echo")) as other:
        await other.send("d")
        assert await recv(other) == "dd"

    mark = served.mark()
    (project / "echo.py").write_text(
        "def on_message(message, client):\n    client.send(message * 3)\n"
    )
    await served.wait_for(
        r"echo: reloaded from .*\(fixed; handlers: message; 1 connections kept\)", mark
    )
    await ws.send("e")
    assert await recv(ws) == "eee"

    # a handler that raises when it is loaded is a broken edit too
    mark = served.mark()
    (project / "echo.py").write_text("raise RuntimeError('no config')\n")
    await served.wait_for(re.escape(f"{project / 'echo.py'}:1: RuntimeError: no config"), mark)
    await ws.send("f")
    assert await recv(ws) == "fff"
    await ws.close()


@pytest.mark.slow
async def test_broken_descriptor_keeps_the_last_good_version(project: Path, serve) -> None:
    served = await serve(project)
    descriptor = project / "echo.websocket"
    good = descriptor.read_text()

    mark = served.mark()
    descriptor.write_text(json.dumps({"endpoint": "echo", "handler": "echo.py", "createdBy": 7}))
    await served.wait_for(re.escape("/project/echo.websocket: createdBy: 7 is not a string"), mark)
    await served.wait_for(r"echo: .* is broken; the last good version keeps serving", mark)
    async with await connect(served.url("echo")) as ws:
        assert (await recv(ws)).startswith("welcome")

    mark = served.mark()
    descriptor.write_text(good)
    await served.wait_for(r"echo: .*echo\.websocket is back to the version being served", mark)

    # a description change is a reload (the descriptor is swapped), seen in GET /websockets
    mark = served.mark()
    descriptor.write_text(
        json.dumps({"endpoint": "echo", "handler": "echo.py", "description": "v2"})
    )
    await served.wait_for(r"echo: reloaded from", mark)
    status, body = await asyncio.to_thread(served.http, "/websockets")
    assert json.loads(body)[0]["descriptor"]["description"] == "v2"


@pytest.mark.slow
async def test_added_and_removed_endpoints_are_mounted_and_unmounted(tmp_path: Path, serve) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    served = await serve(folder)  # an empty folder is served, waiting for endpoints
    await served.wait_for(r"no \*\.websocket files in .* yet")
    with pytest.raises(InvalidStatus) as missing:
        await connect(served.url("shout"))
    assert missing.value.response.status_code == 404

    mark = served.mark()
    (folder / "nested").mkdir()
    write_endpoint(
        folder / "nested",
        "shout",
        "def on_message(message, client):\n    client.send(message.upper())\n",
    )
    await served.wait_for(r"shout: mounted from .*shout\.websocket \(handlers: message\)", mark)
    ws = await connect(served.url("shout"))
    await ws.send("hey")
    assert await recv(ws) == "HEY"
    status, body = await asyncio.to_thread(served.http, "/websockets")
    assert [entry["endpoint"] for entry in json.loads(body)] == ["shout"]

    # renaming the endpoint in its descriptor unmounts the old name
    mark = served.mark()
    descriptor = folder / "nested" / "shout.websocket"
    descriptor.write_text(json.dumps({"endpoint": "yell", "handler": "shout.py"}))
    await served.wait_for(
        r"shout: unmounted \(renamed to 'yell'\); 1 clients closed \(1001\)", mark
    )
    await served.wait_for(r"yell: mounted from", mark)
    assert await close_code(ws) == 1001
    ws = await connect(served.url("yell"))

    mark = served.mark()
    descriptor.unlink()
    await served.wait_for(
        r"yell: unmounted \(shout\.websocket was removed\); 1 clients closed", mark
    )
    assert await close_code(ws) == 1001
    await served.wait_for(r"yell c\d+ close 1001 shout\.websocket was removed", mark)
    with pytest.raises(InvalidStatus) as gone:
        await connect(served.url("yell"))
    assert gone.value.response.status_code == 404
    assert await asyncio.to_thread(served.http, "/websockets") == (200, "[]")

    # a new file that is broken is reported and not mounted; fixed, it is mounted
    mark = served.mark()
    (folder / "late.websocket").write_text(json.dumps({"endpoint": "late", "handler": "late.py"}))
    await served.wait_for(r"late\.websocket: handler: 'late\.py' not found", mark)
    await served.wait_for(r"late\.websocket: not mounted until it is fixed", mark)
    (folder / "late.py").write_text("def on_open(client):\n    client.send('late')\n")
    await served.wait_for(r"late: mounted from .*\(fixed; handlers: open\)", mark)
    async with await connect(served.url("late")) as late:
        assert await recv(late) == "late"


def test_watcher_rescan_reports_an_interrupting_module_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    registry = Registry()
    write_endpoint(tmp_path, "e", "def on_message(message, client):\n    return 'old'\n")
    watcher = ProjectWatcher(registry, tmp_path)
    watcher.load()
    write(tmp_path / "e.py", "raise KeyboardInterrupt\n")
    (event,) = without_interrupt(watcher.rescan)
    assert event.kind == "error"
    assert event.problems == (
        f"{in_project(tmp_path, 'e.websocket')}: {tmp_path / 'e.py'}:1: KeyboardInterrupt",
    )
    assert registry.get("e").handlers.on_message("m", None) == "old"


@pytest.mark.slow
async def test_serve_keeps_serving_when_an_edit_interrupts(tmp_path: Path) -> None:
    write_endpoint(tmp_path, "echo", ECHO)
    served = Served([sys.executable, "-m", "ws_notebook", "serve", str(tmp_path), "--port", "0"])
    try:
        await served.started()
        for source, shown in [
            ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
            ("import sys\nsys.exit(4)\n", "SystemExit: 4"),
        ]:
            mark = served.mark()
            write(tmp_path / "echo.py", source)
            await served.wait_for(rf"echo\.py:\d+: {shown}", mark)
            await served.wait_for(r"echo: .* is broken; the last good version keeps serving", mark)
            assert (await round_trip(served.url("echo"), "still"))[0] == "still"
        assert served.process.poll() is None
    finally:
        served.kill()


# --- ProjectWatcher in process --------------------------------------------------------------------


async def test_watcher_applies_changes_and_stops_without_leaving_tasks(project: Path) -> None:
    registry = Registry()
    events: list[WatchEvent] = []
    watcher = ProjectWatcher(registry, project, on_event=events.append, step_ms=20)
    assert [item.descriptor.endpoint for item in watcher.load()] == ["echo"]
    before = asyncio.all_tasks()
    watcher.start()
    await watcher.wait_ready(WAIT)
    assert watcher.running

    async def until(count: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(events) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    write_endpoint(project, "two", "def on_message(message, client):\n    pass\n")
    await until(1)
    (project / "dup.websocket").write_text(json.dumps({"endpoint": "two", "handler": "two.py"}))
    await until(2)
    kinds = {(event.kind, event.endpoint, event.path.name) for event in events}
    assert ("mounted", "two", "two.websocket") in kinds
    (error,) = [event for event in events if event.kind == "error"]
    assert error.path.name == "dup.websocket"
    assert error.problems == (
        "/project/dup.websocket: endpoint: 'two' is already defined by /project/two.websocket",
    )
    assert watcher.served == {"echo": project / "echo.websocket", "two": project / "two.websocket"}
    assert watcher.problems == {project / "dup.websocket": error.problems}
    assert watcher.rescan() == []  # nothing changed since: nothing reloaded or reported again

    await watcher.aclose()
    assert not watcher.running
    assert asyncio.all_tasks() == before
    assert sorted(endpoint.name for endpoint in registry) == ["echo", "two"]  # still mounted


async def test_watcher_stop_from_sync_code_cancels_the_task(project: Path) -> None:
    watcher = ProjectWatcher(Registry(), project)
    watcher.load()
    task = watcher.start()
    await watcher.wait_ready(WAIT)
    watcher.stop()
    await asyncio.wait_for(asyncio.wait({task}), 5)
    assert task.done()
    with pytest.raises(RuntimeError):
        await ProjectWatcher(Registry(), project).wait_ready()


async def test_watcher_leaves_an_endpoint_redefined_elsewhere(project: Path) -> None:
    registry = Registry()
    watcher = ProjectWatcher(registry, project)
    watcher.load()
    registry.mount(Descriptor.new("echo", handler="notebook", created_by="t"), Handlers())
    (project / "echo.websocket").unlink()
    (event,) = watcher.rescan()
    assert event.kind == "unmounted"
    assert "left mounted, as it was redefined elsewhere" in event.message
    assert registry.get("echo").descriptor.handler == "notebook"


def test_watcher_reloads_the_endpoint_whose_helper_changed(tmp_path: Path) -> None:
    registry = Registry()
    write(tmp_path / "helper.py", "VALUE = 'one'\n")
    uses = "import helper\n\ndef on_message(message, client):\n    return helper.VALUE\n"
    write_endpoint(tmp_path, "uses", uses)
    write_endpoint(tmp_path, "other", "def on_message(message, client):\n    return 'other'\n")
    watcher = ProjectWatcher(registry, tmp_path)
    watcher.load()
    before = namespaces()
    write(tmp_path / "helper.py", "VALUE = 'two'\n")
    (event,) = watcher.rescan()
    assert (event.kind, event.endpoint) == ("reloaded", "uses")
    assert registry.get("uses").handlers.on_message("m", None) == "two"
    assert watcher.rescan() == []
    # The replaced handler's namespace left sys.modules; the new one took its place.
    after = namespaces()
    assert len(after) == len(before)
    assert registry.get("uses").handlers.imports.name in after - before


# --- modules load off the serving loop, with a time limit ---------------------------------------


@pytest.fixture
def two_endpoints(tmp_path: Path) -> Path:
    write_endpoint(tmp_path, "echo", ECHO)
    write_endpoint(tmp_path, "other", ECHO)
    return tmp_path


@pytest.mark.slow
async def test_a_slow_module_does_not_hold_up_other_endpoints(
    two_endpoints: Path, server: Server
) -> None:
    events: list[WatchEvent] = []
    watcher = ProjectWatcher(
        server.registry, two_endpoints, on_event=events.append, debounce_ms=50, step_ms=20
    )
    watcher.load()
    watcher.start()
    try:
        await watcher.wait_ready(WAIT)
        write(two_endpoints / "echo.py", "import time\n\ntime.sleep(3)\n" + ECHO)
        delays = []
        deadline = time.monotonic() + WAIT
        while not events and time.monotonic() < deadline:
            reply, delay = await round_trip(server.url("other"), "ping")
            assert reply == "ping"
            delays.append(delay)
            await asyncio.sleep(0.05)
        (event,) = events
        assert (event.kind, event.endpoint) == ("reloaded", "echo")
        assert len(delays) >= 10, delays  # the reload took seconds, and other was served all along
        assert max(delays) < 0.5, delays
    finally:
        await watcher.aclose()


@pytest.mark.slow
async def test_a_module_that_does_not_finish_is_reported_and_the_old_one_serves(
    two_endpoints: Path, server: Server
) -> None:
    events: list[WatchEvent] = []
    watcher = ProjectWatcher(
        server.registry,
        two_endpoints,
        on_event=events.append,
        debounce_ms=50,
        step_ms=20,
        load_timeout=1,
    )
    watcher.load()
    old = server.registry.get("echo").handlers
    watcher.start()
    try:
        await watcher.wait_ready(WAIT)
        before = namespaces()
        # Busy for 4 s, as `while True: pass` would be for ever: a thread that never ends would
        # keep spinning through the rest of the test session (the serve test below has one).
        write(
            two_endpoints / "echo.py",
            "import time\n\nuntil = time.monotonic() + 4\nwhile time.monotonic() < until:\n"
            "    pass\n" + ECHO,
        )
        await until(lambda: bool(events))
        (event,) = events
        assert (event.kind, event.endpoint) == ("error", "echo")
        assert event.problems[0].startswith(
            f"{in_project(two_endpoints, 'echo.websocket')}: {two_endpoints / 'echo.py'}: "
            "did not finish loading in 1 s"
        )
        assert "cannot stop" in event.problems[0]
        assert server.registry.get("echo").handlers is old
        for name in ("echo", "other"):
            reply, delay = await round_trip(server.url(name), "still")
            assert (reply, delay < 0.5) == ("still", True)

        # Another change while it runs does not start the same module again.
        write(two_endpoints / "other.py", ECHO + "\n")
        await until(lambda: len(events) == 2)
        assert (events[1].kind, events[1].endpoint) == ("reloaded", "other")
        loading = [t for t in threading.enumerate() if t.name == "ws_notebook load echo.websocket"]
        assert len(loading) == 1 and loading[0].daemon

        # When it ends, what it loaded is dropped.
        loading[0].join(WAIT)
        await asyncio.sleep(0.1)
        assert server.registry.get("echo").handlers is old
        assert namespaces() - before == {server.registry.get("other").handlers.imports.name}
    finally:
        await watcher.aclose()


@pytest.mark.slow
async def test_serve_with_an_endless_module_keeps_serving_and_stops_on_sigterm(
    two_endpoints: Path,
) -> None:
    command = [sys.executable, "-m", "ws_notebook", "serve", str(two_endpoints), "--port", "0"]
    served = Served(command)
    try:
        await served.started()
        mark = served.mark()
        write(two_endpoints / "echo.py", "while True:\n    pass\n" + ECHO)
        await served.wait_for(r"echo\.py: did not finish loading in 10 s", mark, timeout=30)
        for name in ("echo", "other"):
            assert (await round_trip(served.url(name), "still"))[0] == "still"
        served.process.send_signal(signal.SIGTERM)
        assert await served.exit_code() == 0
    finally:
        served.kill()


# --- %websocket load --watch in a kernel -----------------------------------------------------------


@pytest.mark.slow
def test_load_watch_reloads_between_cells(fresh: Kernel, tmp_path: Path) -> None:
    project = tmp_path / "live"
    project.mkdir()
    (project / "live.websocket").write_text(json.dumps({"endpoint": "live", "handler": "h.py"}))
    handler = project / "h.py"
    handler.write_text("def on_message(m, c):\n    c.send('v1 ' + m)\n")
    out = fresh.run(f"%websocket load {project} --watch").stdout
    assert "live: serving at" in out and f"watching {project}" in out
    with sync_connect(url_of(fresh, "live")) as ws:
        ws.send("a")
        assert ws.recv(timeout=5) == "v1 a"
        handler.write_text("def on_message(m, c):\n    c.send('v2 ' + m)\n")
        deadline = time.monotonic() + 15
        reply = ""
        while reply != "v2 b" and time.monotonic() < deadline:  # the same connection
            time.sleep(0.3)
            ws.send("b")
            reply = ws.recv(timeout=5)
        assert reply == "v2 b"
        fresh.run("%websocket unwatch")
        handler.write_text("def on_message(m, c):\n    c.send('v3 ' + m)\n")
        time.sleep(2.5)  # longer than the watcher's debounce: a watcher would have reloaded
        ws.send("c")
        assert ws.recv(timeout=5) == "v2 c"
