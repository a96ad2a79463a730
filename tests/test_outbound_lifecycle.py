"""Outbound connections across their endpoint's life: a watched folder's descriptors with a
``uri`` added, moved to another URI, edited and removed (``ws-notebook serve`` and
``%websocket load --watch``); ``stop()`` then ``start()``; and what ``url`` says of one.

Real ``websockets`` servers on threads of the test process (``Feed``), a real kernel and real
``ws-notebook serve`` subprocesses, files in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from ws_notebook import Registry, Server
from ws_notebook.watch import ProjectWatcher

from . import test_cli, test_outbound
from .kernels import Kernel
from .test_cli import close_code, recv
from .test_outbound import RECORDER, Feed, define, until, value

pytestmark = pytest.mark.timeout(120)

serve = test_cli.serve  # the fixture: `ws-notebook serve FOLDER --port 0 OPTIONS`, killed after
feed = test_outbound.feed  # a Feed on a free port, stopped after

# A handler module: says which version it is on opening, answers "ping ..." only (the feed
# echoes everything, so answering everything would never end).
HANDLER = """\
def on_open(client):
    client.send("{version} open")
def on_message(message, client):
    if message.startswith("ping"):
        return "{version}:" + message
"""


@pytest.fixture
def feeds() -> Iterator[tuple[Feed, Feed]]:
    """Two feeds, for a descriptor moving from one URI to another."""
    started = (Feed(), Feed())
    yield started
    for each in started:
        each.stop()


def write_outbound(folder: Path, uri: str) -> Path:
    """``folder/feed.websocket`` connecting to ``uri``, and its handler ``feed.py`` (v1)."""
    (folder / "feed.py").write_text(HANDLER.format(version="v1"), "utf-8")
    descriptor = {"endpoint": "feed", "handler": "feed.py", "uri": uri}
    path = folder / "feed.websocket"
    path.write_text(json.dumps(descriptor), "utf-8")
    return path


async def eventually(check: Callable[[], Any], what: str) -> None:
    """``until``, without holding up the test's loop (which reads the subprocess's output)."""
    await asyncio.to_thread(until, check, what)


# --- a watched folder ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_serve_connects_moves_keeps_and_closes_as_descriptors_change(
    tmp_path: Path, serve, feeds: tuple[Feed, Feed]
) -> None:
    first, second = feeds
    served = await serve(tmp_path)  # an empty folder, watched

    mark = served.mark()
    descriptor = write_outbound(tmp_path, first.uri())
    await served.wait_for(rf"feed: mounted from .*; connecting to {first.uri()}$", mark)
    await eventually(lambda: first.received == ["v1 open"], "the added descriptor's connection")

    # a handler edit, then a descriptor edit without a new uri: the same connection
    mark = served.mark()
    (tmp_path / "feed.py").write_text(HANDLER.format(version="v2"), "utf-8")
    await served.wait_for(r"feed: reloaded from .*1 connections kept\)$", mark)
    first.connections[0].send("ping 1")
    await eventually(lambda: "v2:ping 1" in first.received, "the new handler's answer")
    mark = served.mark()
    data = json.loads(descriptor.read_text("utf-8"))
    descriptor.write_text(json.dumps({**data, "description": "ticks"}), "utf-8")
    await served.wait_for(r"feed: reloaded from .*1 connections kept\)$", mark)
    first.connections[0].send("ping 2")
    await eventually(lambda: "v2:ping 2" in first.received, "an answer after the edit")
    assert len(first.connections) == 1 and first.close_codes == []

    # another uri: the connection moves
    mark = served.mark()
    descriptor.write_text(json.dumps({**data, "uri": second.uri()}), "utf-8")
    await served.wait_for(rf"feed: reloaded from .*; reconnecting to {second.uri()}", mark)
    await eventually(lambda: second.received == ["v2 open"], "the connection to the new uri")
    await eventually(lambda: first.close_codes == [1000], "the old connection's close")

    # removed: closed with 1001, and the endpoint is gone
    mark = served.mark()
    descriptor.unlink()
    await served.wait_for(r"feed: unmounted \(feed\.websocket was removed\); 1 clients", mark)
    await eventually(lambda: second.close_codes == [1001], "the close of the removed one")
    await asyncio.sleep(1.5)  # longer than a first reconnection delay: it does not come back
    assert len(second.connections) == 1 and len(first.connections) == 1
    assert served.process.poll() is None


@pytest.mark.slow
def test_a_folder_watched_in_the_notebook_connects_moves_and_closes(
    fresh: Kernel, tmp_path: Path, feeds: tuple[Feed, Feed]
) -> None:
    first, second = feeds
    try:
        fresh.run(f"%websocket load {tmp_path} --watch")  # empty: nothing mounted yet
        descriptor = write_outbound(tmp_path, first.uri())
        until(lambda: first.received == ["v1 open"], "the added descriptor's connection")
        assert value(fresh, "ws_notebook.endpoint('feed').direction") == "out"

        data = json.loads(descriptor.read_text("utf-8"))
        descriptor.write_text(json.dumps({**data, "uri": second.uri()}), "utf-8")
        until(lambda: second.received == ["v1 open"], "the connection to the new uri")
        until(lambda: first.close_codes == [1000], "the old connection's close")

        descriptor.unlink()
        until(lambda: second.close_codes == [1001], "the close of the removed one")
        until(lambda: value(fresh, "[e.name for e in ws_notebook.endpoints()]") == [], "unmounted")
    finally:
        fresh.run("ws_notebook.reset()")


async def test_a_descriptor_turning_outbound_or_served_is_mounted_afresh(
    tmp_path: Path, feed: Feed
) -> None:
    """Served clients must not get an outbound connection's events, nor the other way round:
    the endpoint is unmounted (its clients, or its connection, closed with 1001) and mounted
    again."""
    registry = Registry()
    server = Server(registry)
    server.start()
    try:
        descriptor = write_outbound(tmp_path, feed.uri())
        data = json.loads(descriptor.read_text("utf-8"))
        served = {key: item for key, item in data.items() if key != "uri"}
        descriptor.write_text(json.dumps(served), "utf-8")
        watcher = ProjectWatcher(registry, tmp_path)
        watcher.load()
        async with websockets.connect(server.url("feed")) as ws:
            assert await recv(ws) == "v1 open"
            descriptor.write_text(json.dumps(data), "utf-8")
            events = await watcher.arescan()
            assert [event.message.split(" from ")[0] for event in events] == [
                "feed: unmounted (now an outbound connection); 1 clients closed (1001)",
                "feed: mounted",
            ]
            assert events[1].message.endswith(f"; connecting to {feed.uri()}")
            assert await close_code(ws) == 1001
        await eventually(lambda: feed.received == ["v1 open"], "the connection")
        assert registry.get("feed").direction == "out"

        descriptor.write_text(json.dumps(served), "utf-8")
        events = await watcher.arescan()
        assert events[0].message.startswith("feed: unmounted (now served)")
        await eventually(lambda: feed.close_codes == [1001], "the connection's close")
        assert registry.get("feed").direction == "in"
        async with websockets.connect(server.url("feed")) as ws:
            assert await recv(ws) == "v1 open"
    finally:
        server.stop()


# --- stop, then start ---------------------------------------------------------------------------


def state(kernel: Kernel, name: str = "feed") -> str:
    return value(kernel, f"ws_notebook.endpoint({name!r}).outbound.state")


@pytest.mark.slow
def test_start_reopens_the_outbound_connections_stop_closed(fresh: Kernel, feed: Feed) -> None:
    define(fresh, RECORDER.format(uri=feed.uri()).replace("--connect", "--reconnect --connect"))
    until(lambda: state(fresh) == "open", "the connection")
    out = fresh.run("%websocket stop").stdout
    assert "%websocket start serves again and reconnects feed" in out
    until(lambda: feed.close_codes == [1001], "the close on stop")
    time.sleep(1.5)  # longer than the first reconnection delay: stopped, it does not come back
    assert len(feed.connections) == 1 and state(fresh) == "closed"

    out = fresh.run("%websocket start").stdout
    assert f"feed: connecting to {feed.uri()} again" in out
    until(lambda: len(feed.connections) == 2 and state(fresh) == "open", "the connection again")
    assert value(fresh, "ws_notebook.endpoint('feed').outbound.options.reconnect is not None")

    # both in one cell, while the connection stop() closed is still closing
    fresh.run("ws_notebook.stop(); ws_notebook.start()")
    until(lambda: feed.close_codes == [1001, 1001], "the close on the second stop")
    until(lambda: len(feed.connections) == 3 and state(fresh) == "open", "the third connection")

    # what the user closed, or unmounted, before stopping is not opened again
    fresh.run(
        f"mine = ws_notebook.connect({feed.uri('/mine')!r}, {{}}, name='mine')\n"
        "await mine.wait_open()\n"
        "mine.close()\n"
        "await mine.wait_closed()"
    )
    fresh.run("ws_notebook.stop()\nws_notebook.unmount('feed')\nws_notebook.start()")
    time.sleep(1.5)
    assert len(feed.connections) == 4  # feed's three, mine's one
    assert state(fresh, "mine") == "closed"


# --- url ----------------------------------------------------------------------------------------


def test_url_of_an_outbound_connection_is_its_remote_uri(fresh: Kernel, feed: Feed) -> None:
    secret = f"ws://user:pw@127.0.0.1:{feed.port}/feed?key=s3cret"
    fresh.run(f"c = ws_notebook.connect({secret!r}, {{}}, name='feed')\nawait c.wait_open()")
    out = fresh.run("%websocket url feed").stdout
    assert out.splitlines()[0] == feed.uri()  # credentials hidden
    assert "feed is an outbound connection (open)" in out
    assert "s3cret" not in out and "pw" not in out
    reply = fresh.run("ws_notebook.url('feed')", check=False)
    assert reply.error is not None and reply.error.startswith("UnknownEndpoint: ")
    assert f"'feed' is an outbound connection to {feed.uri()}" in reply.error
    assert "s3cret" not in reply.error
