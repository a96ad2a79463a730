"""The npm clients codbex front ends use (``sockjs-client``, ``@stomp/stompjs``, stomp.js 2.3.3),
in Node, against ``/stomp`` on ``ws-notebook serve`` and on an endpoint defined in a kernel.

Each client connects, subscribes to ``/user/queue/reply/NAME`` and ``/user/queue/errors/NAME``,
SENDs ``{"from", "text"}`` to ``/ws/stomp/NAME`` and waits for the reply JSON; the SockJS
transport is forced with the client's ``transports`` option, and reported by the client.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .kernels import Kernel
from .npm_clients import node_modules, run_client
from .test_cli import Served, write_endpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]  # Node clients

HANDLER = """\
def on_message(message, client):
    if message == "boom":
        raise ValueError("bad input")
    return f"echo: {message}"
"""


@pytest.fixture(scope="module")
def modules() -> Path:
    return node_modules()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    write_endpoint(tmp_path, "echo", HANDLER)
    process = Served([sys.executable, "-m", "ws_notebook", "serve", str(tmp_path), "--port", "0"])
    try:
        yield await process.started()
    finally:
        process.kill()


def replies(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    found = []
    for event in events:
        if event["event"] == "reply":
            body = event["body"]
            found.append((event["destination"], json.loads(body) if body.startswith("{") else body))
    return found


def check_reply(
    reply: tuple[str, Any], sender: str, text: str, queue: str = "/user/queue/reply/echo"
) -> None:
    destination, body = reply
    assert destination == queue
    assert (body["from"], body["text"]) == (sender, text)
    assert re.fullmatch(r"\d\d:\d\d", body["time"])


async def test_serve_over_every_transport(served: Served, modules: Path) -> None:
    base = f"http://127.0.0.1:{served.port}"
    runs = {
        "websocket": dict(url=f"{base}/stomp", transports=["websocket"]),
        "xhr-streaming": dict(url=f"{base}/stomp", transports=["xhr-streaming"]),
        "xhr-polling": dict(url=f"{base}/stomp", transports=["xhr-polling"]),
        "eventsource": dict(url=f"{base}/stomp", transports=["eventsource"]),
        "raw v12.stomp": dict(url=f"ws://127.0.0.1:{served.port}/stomp/websocket", raw=True),
    }
    results = await asyncio.gather(
        *(run_client(modules, **o, texts=["hi", "boom"], **{"from": t}) for t, o in runs.items())
    )
    for transport, events in zip(runs, results, strict=True):
        connected = events[0]
        assert (connected["event"], connected["version"], connected["transport"]) == (
            "connected",
            "1.2",
            transport,
        )
        reply, error = replies(events)
        check_reply(reply, transport, "echo: hi")
        assert error == ("/user/queue/errors/echo", "on_message raised ValueError: bad input")
    # serve's log shows the STOMP clients as any other, marked, and never a token
    await served.wait_for(r"echo c\d+ open 127\.0\.0\.1 \(stomp, xhr_streaming\)")
    await served.wait_for(r"echo c\d+ close")


async def test_stomp_js_2_and_the_older_shape(served: Served, modules: Path) -> None:
    """stomp.js 2.3.3 over SockJS, as the platform's test page; /js, /ws/js and /topic/messages."""
    events = await run_client(
        modules,
        url=f"http://127.0.0.1:{served.port}/js",
        library="stomp.js",
        shape="js",
        texts=["hello"],
        **{"from": "old page"},
    )
    assert events[0]["version"] == "1.1"  # stomp.js 2.3.3 accepts 1.0 and 1.1
    (reply,) = replies(events)
    check_reply(reply, "old page", "echo: hello", queue="/topic/messages/echo")
    assert events[-1]["event"] == "done"


@pytest.fixture(scope="module")
def endpoint_kernel(kernel: Kernel) -> Iterator[Kernel]:
    kernel.run(f"%%websocket echo --no-panel\n{HANDLER}")
    yield kernel
    kernel.run("%websocket stop echo", check=False)


async def test_a_kernel_endpoint(endpoint_kernel: Kernel, modules: Path) -> None:
    url = endpoint_kernel.value("ws_notebook.url('echo')")
    base = re.sub(r"^ws://([^/]+)/.*", r"http://\1", url)
    results = await asyncio.gather(
        *(
            run_client(modules, url=f"{base}/stomp", transports=[t], texts=["from the kernel"])
            for t in ("websocket", "xhr-streaming")
        )
    )
    for events in results:
        (reply,) = replies(events)
        check_reply(reply, "node", "echo: from the kernel")
    listed = endpoint_kernel.run("%websocket log echo -n 40").text
    assert "(stomp, websocket)" in listed and "(stomp, xhr_streaming)" in listed
    assert "echo: from the kernel" in listed
