"""The plain Python API, without IPython: a Server on the test's own asyncio loop."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import types

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

import ws_notebook
from ws_notebook import Server, ServerError

from .endpoints import mount


def test_core_does_not_import_ipython() -> None:
    code = (
        "import sys, ws_notebook\n"
        "ws_notebook.Server(); ws_notebook.Descriptor.new('x', handler='h')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('IPython', 'ipywidgets', 'ipykernel')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_start_needs_a_running_loop() -> None:
    with pytest.raises(ServerError, match="no running event loop"):
        Server().start()


async def test_echo_and_binary(server: Server) -> None:
    mount(server, "echo", on_message=lambda message, client: client.send(message))
    async with websockets.connect(server.url("echo")) as ws:
        await ws.send("text")
        assert await ws.recv() == "text"
        await ws.send(b"\x01\x02")
        assert await ws.recv() == b"\x01\x02"


async def test_send_json_and_reject_other_types(server: Server) -> None:
    errors: list[str] = []

    def on_message(message: str, client: ws_notebook.Client) -> None:
        client.send({"got": message, "n": [1, 2]})
        client.send(object())

    mount(server, "json", on_message=on_message, on_error=lambda e, c: errors.append(str(e)))
    async with websockets.connect(server.url("json")) as ws:
        await ws.send("x")
        assert json.loads(await ws.recv()) == {"got": "x", "n": [1, 2]}
    assert errors and errors[0].startswith("cannot send object")


async def test_async_handlers_run_in_order(server: Server) -> None:
    seen: list[str] = []

    async def on_open(client: ws_notebook.Client) -> None:
        await asyncio.sleep(0.05)  # messages wait until open has finished
        seen.append("open")

    async def on_message(message: str, client: ws_notebook.Client) -> None:
        await asyncio.sleep(0.001)
        seen.append(message)
        await client.send(message)

    closed = asyncio.Event()

    async def on_close(client: ws_notebook.Client) -> None:
        seen.append("close")
        closed.set()

    mount(server, "ordered", on_open=on_open, on_message=on_message, on_close=on_close)
    async with websockets.connect(server.url("ordered")) as ws:
        for i in range(5):
            await ws.send(str(i))
        assert [await ws.recv() for _ in range(5)] == ["0", "1", "2", "3", "4"]
    await asyncio.wait_for(closed.wait(), 5)
    assert seen == ["open", "0", "1", "2", "3", "4", "close"]


async def test_handler_error_is_logged_and_others_keep_working(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    def on_message(message: str, client: ws_notebook.Client) -> None:
        if message == "boom":
            raise ZeroDivisionError("no")
        client.send(message)

    endpoint = mount(server, "fragile", on_message=on_message)
    with caplog.at_level(logging.ERROR, logger="ws_notebook"):
        async with (
            websockets.connect(server.url("fragile")) as a,
            websockets.connect(server.url("fragile")) as b,
        ):
            await a.send("boom")
            await b.send("fine")
            assert await b.recv() == "fine"
            await a.send("after")
            assert await a.recv() == "after"
    assert (
        "endpoint 'fragile'" in caplog.text
        and "on_message raised ZeroDivisionError: no" in caplog.text
    )
    assert any(record.exc_info for record in caplog.records)
    kinds = [event.kind for event in endpoint.log.since()]
    assert kinds.count("error") == 1 and kinds.count("open") == 2


async def test_default_api_serve_from_plain_python() -> None:
    module = types.ModuleType("echo_handler")
    exec("def onMessage(message, client):\n    client.send(message.upper())\n", module.__dict__)
    try:
        endpoint = ws_notebook.serve("upper", module, description="shouts back")
        assert endpoint.descriptor.description == "shouts back"
        async with websockets.connect(ws_notebook.url("upper")) as ws:
            await ws.send("hi")
            assert await ws.recv() == "HI"
            assert [c.endpoint for c in ws_notebook.clients()] == ["upper"]
            assert ws_notebook.broadcast("upper", "all") == 1
            assert await ws.recv() == "all"
        kinds = [event["kind"] for event in ws_notebook.events("upper")]
        assert kinds[:3] == ["open", "in", "out"]
    finally:
        ws_notebook.reset()


async def test_server_stop_closes_with_1001(server: Server) -> None:
    mount(server, "echo", on_message=lambda m, c: c.send(m))
    async with websockets.connect(server.url("echo")) as ws:
        server.stop()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1001
    with pytest.raises(OSError):
        await websockets.connect(server.url("echo"), open_timeout=2)


async def test_origin_policy(server: Server) -> None:
    mount(server, "echo", on_message=lambda m, c: c.send(m))
    url = server.url("echo")
    async with websockets.connect(
        url, origin="http://127.0.0.1:8888"
    ) as ws:  # a local Jupyter page
        await ws.send("ok")
        assert await ws.recv() == "ok"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        await websockets.connect(url, origin="https://evil.example")
    assert refused.value.response.status_code == 403


async def test_send_from_another_thread_is_handed_to_the_loop(server: Server) -> None:
    endpoint = mount(server, "threads")
    async with websockets.connect(server.url("threads")) as ws:
        while not endpoint.clients:
            await asyncio.sleep(0.01)
        client = next(iter(endpoint.clients.values()))

        def worker() -> None:
            for i in range(3):
                ws_notebook.Endpoint.broadcast(endpoint, f"from a thread {i}")
            client.close(4001, "done")

        await asyncio.to_thread(worker)
        assert [await ws.recv() for _ in range(3)] == [f"from a thread {i}" for i in range(3)]
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4001
    assert [e.kind for e in endpoint.log.since()].count("out") == 3
