"""The platform's STOMP destinations wired to endpoints (``ws_notebook.stomp_endpoints``).

A real ``Server`` on the test's loop; STOMP clients over its raw WebSocket at
``/stomp/websocket`` (``v12.stomp``); the npm clients and the SockJS fallbacks are in
``test_stomp_node.py``, a browser in ``test_stomp_browser.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from ws_notebook import Descriptor, Handlers, Server
from ws_notebook.server import Limits
from ws_notebook.stomp import encode

pytestmark = pytest.mark.timeout(60)


class Stomp:
    """A STOMP 1.2 client over a raw WebSocket, frames parsed back as tuples."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, server: Server, prefix: str = "/stomp") -> Stomp:
        url = f"ws://127.0.0.1:{server.port}{prefix}/websocket"
        client = cls(await websockets.connect(url, subprotocols=["v12.stomp"]))
        assert client.ws.subprotocol == "v12.stomp"
        await client.send("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0"})
        assert (await client.frame())[0] == "CONNECTED"
        return client

    async def send(self, command: str, headers: dict[str, str], body: str = "") -> None:
        await self.ws.send(encode(command, headers, body))

    async def say(
        self, endpoint: str, text: str, sender: str = "ann", shape: str = "stomp"
    ) -> None:
        body = json.dumps({"from": sender, "text": text})
        await self.send("SEND", {"destination": f"/ws/{shape}/{endpoint}"}, body)

    async def subscribe(self, destination: str, receipt: bool = True) -> None:
        headers = {"id": destination, "destination": destination}
        await self.send("SUBSCRIBE", {**headers, "receipt": "r"} if receipt else headers)
        if receipt:
            assert (await self.frame())[0] == "RECEIPT"

    async def frame(self, timeout: float = 5) -> tuple[str, dict[str, str], str]:
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        command, _, rest = text.partition("\n")
        head, _, body = rest.partition("\n\n")
        pairs = (line.split(":", 1) for line in head.split("\n") if line)
        unescape = {"n": "\n", "c": ":", "\\": "\\", "r": "\r"}
        headers = {k: re.sub(r"\\(.)", lambda m: unescape[m[1]], v) for k, v in pairs}
        return command, headers, body[:-1]

    async def reply(self) -> dict[str, Any]:
        command, headers, body = await self.frame()
        assert command == "MESSAGE", (command, headers, body)
        return {"destination": headers["destination"], **json.loads(body)}


def mount(server: Server, name: str = "echo", **handlers: Any) -> Any:
    return server.registry.mount(
        Descriptor(endpoint=name, handler=f"{name}.py"), Handlers.from_namespace(handlers)
    ).endpoint


def echo(message: str, client: Any) -> str:
    if message == "boom":
        raise ValueError("bad input")
    return f"echo: {message}"


async def test_send_reply_errors_and_the_client_it_is(serve: Callable[..., Server]) -> None:
    server = serve()
    endpoint = mount(server, on_message=echo)
    stomp = await Stomp.connect(server)
    await stomp.subscribe("/user/queue/reply/echo")
    await stomp.subscribe("/user/queue/errors/echo")
    await stomp.say("echo", "hi", sender="ann")
    reply = await stomp.reply()
    assert reply["destination"] == "/user/queue/reply/echo"
    assert (reply["from"], reply["text"]) == ("ann", "echo: hi")
    assert re.fullmatch(r"\d\d:\d\d", reply["time"])
    await stomp.say("echo", "boom")
    command, headers, body = await stomp.frame()
    assert (headers["destination"], body) == (
        "/user/queue/errors/echo",
        "on_message raised ValueError: bad input",
    )
    await stomp.send("SEND", {"destination": "/ws/stomp/echo"}, "not json")
    command, headers, body = await stomp.frame()
    assert headers["destination"] == "/user/queue/errors/echo" and "not JSON" in body
    (client,) = server.registry.clients("echo")
    assert client.remote_address == "127.0.0.1 (stomp, raw websocket)"
    assert client.kind == "stomp" and client.sender == "ann" and client.path == "/stomp"
    await stomp.send("DISCONNECT", {"receipt": "bye"})
    assert (await stomp.frame())[:2] == ("RECEIPT", {"receipt-id": "bye"})
    await asyncio.sleep(0.1)
    assert server.registry.clients("echo") == []
    kinds = [(e.kind, e.detail or e.preview) for e in endpoint.log.since(0)]
    assert kinds[:4] == [
        ("open", "127.0.0.1 (stomp, raw websocket)"),
        ("in", "hi"),
        ("out", "echo: hi"),
        ("in", "boom"),
    ]
    assert ("close", "1000 DISCONNECT") in kinds


async def test_unknown_endpoint_is_an_error_then_close(serve: Callable[..., Server]) -> None:
    server = serve()
    mount(server, on_message=echo)
    stomp = await Stomp.connect(server)
    await stomp.subscribe("/user/queue/reply/nowhere")  # subscribing is allowed
    await stomp.say("nowhere", "hi")
    command, headers, body = await stomp.frame()
    assert (command, headers["message"], body) == (
        "ERROR",
        "no WebSocket endpoint 'nowhere'",
        "endpoints mounted: echo",
    )
    with pytest.raises(ConnectionClosed) as closed:
        await stomp.frame()
    assert closed.value.rcvd.code == 1002


async def test_client_send_broadcast_and_the_older_shape(serve: Callable[..., Server]) -> None:
    server = serve()
    endpoint = mount(server, on_open=lambda client: client.send("welcome"), on_message=echo)
    first, second = await Stomp.connect(server), await Stomp.connect(server, "/js")
    await first.subscribe("/user/queue/reply/echo", receipt=False)
    welcome = await first.reply()  # on_open ran when the session subscribed
    assert (welcome["from"], welcome["text"]) == ("echo", "welcome")
    await second.subscribe("/topic/messages/echo", receipt=False)
    assert (await second.reply())["destination"] == "/topic/messages/echo"
    async with websockets.connect(server.url("echo")) as bare:
        assert await bare.recv() == "welcome"
        assert server.registry.get("echo").broadcast({"n": 1}) == 3
        assert json.loads((await first.reply())["text"]) == {"n": 1}
        assert json.loads((await second.reply())["text"]) == {"n": 1}
        assert json.loads(await bare.recv()) == {"n": 1}
        await first.subscribe("/topic/messages/echo")  # the older shape: replies to the topic
        await second.say("echo", "to all", sender="bob", shape="js")
        for stomp in (first, second):
            reply = await stomp.reply()
            assert (reply["destination"], reply["from"], reply["text"]) == (
                "/topic/messages/echo",
                "bob",
                "echo: to all",
            )
        client = next(c for c in endpoint.clients.values() if c.path == "/stomp")
        client.send("just you")
        assert (await first.reply())["text"] == "just you"
        assert client.messages_out == 3 and client.messages_in == 0


async def test_async_handlers_in_order(serve: Callable[..., Server]) -> None:
    server = serve()
    seen = []

    async def on_open(client: Any) -> None:
        await asyncio.sleep(0.1)
        seen.append("open")

    async def on_message(message: str, client: Any) -> str:
        await asyncio.sleep(0.05 if message == "slow" else 0)
        seen.append(message)
        return message.upper()

    mount(server, on_open=on_open, on_message=on_message)
    stomp = await Stomp.connect(server)
    await stomp.subscribe("/user/queue/reply/echo", receipt=False)
    await stomp.say("echo", "slow")
    await stomp.say("echo", "fast")
    assert [(await stomp.reply())["text"] for _ in range(2)] == ["SLOW", "FAST"]
    assert seen == ["open", "slow", "fast"]


async def test_unmount_and_close_end_the_session(serve: Callable[..., Server]) -> None:
    server = serve()
    closed = []
    mount(server, on_message=echo, on_close=lambda client: closed.append(client.id))
    stomp = await Stomp.connect(server)
    await stomp.subscribe("/user/queue/reply/echo")
    server.registry.unmount("echo")
    command, headers, _ = await stomp.frame()
    assert (command, headers["message"]) == ("ERROR", "endpoint removed")
    with pytest.raises(ConnectionClosed) as ended:
        await stomp.frame()
    assert ended.value.rcvd.code == 1001 and len(closed) == 1


async def test_limits_of_the_server_apply(serve: Callable[..., Server]) -> None:
    server = serve(limits=Limits(max_message_size=1000, max_connections=1))
    mount(server, on_message=echo)
    stomp = await Stomp.connect(server)
    await stomp.say("echo", "hi")
    other = await Stomp.connect(server, "/js")  # sessions are capped per prefix too
    await other.say("echo", "hi")
    command, headers, _ = await other.frame()
    assert (command, headers["message"]) == ("ERROR", "endpoint 'echo' is full (1 connections)")
    await stomp.ws.send("SEND\ndestination:/ws/stomp/echo\n\n" + "x" * 600)  # under the
    await stomp.ws.send("x" * 600)  # message limit each, over it together
    command, headers, _ = await stomp.frame()
    assert (command, headers["message"]) == ("ERROR", "frame too large")
    await asyncio.sleep(0.1)
    third = await Stomp.connect(server)
    await third.ws.send("SEND\ndestination:/topic/a\n\n" + "x" * 2000 + "\0")
    with pytest.raises(ConnectionClosed) as closed:
        await third.frame()
    assert closed.value.rcvd.code == 1009  # one WebSocket message over --max-message-size
