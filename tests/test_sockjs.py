"""SockJS transports (``ws_notebook.sockjs``): real HTTP and WebSocket clients on loopback.

Most tests serve small echo services with short heartbeats and timeouts on a bare Tornado
application; the access-policy tests use the real ``Server`` with its ``/stomp`` routes. The
SockJS project's own conformance suite is run by hand (``tests/conformance/sockjs_protocol.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import websockets
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ws_notebook import Server
from ws_notebook.sockjs import Service, Session

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """An echo listener that remembers its session's end."""

    ended: list[Session] = []

    def __init__(self, session: Session) -> None:
        self.session = session

    def on_message(self, message: str | bytes) -> None:
        self.session.send(message)

    def on_close(self) -> None:
        Recorder.ended.append(self.session)


@pytest.fixture
async def sockjs() -> AsyncIterator[Callable[..., str]]:
    """Serve ``/echo`` (a Service with the given options) on a free port; its base URL."""
    servers: list[HTTPServer] = []
    Recorder.ended = []

    def start(**options: object) -> str:
        service = Service("/echo", Recorder, **options)  # type: ignore[arg-type]
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(Application(service.routes()))
        server.add_sockets(sockets)
        servers.append(server)
        return f"http://127.0.0.1:{sockets[0].getsockname()[1]}/echo"

    yield start
    for server in servers:
        server.stop()


async def fetch(
    url: str, method: str = "POST", body: str | None = None, **options: object
) -> HTTPResponse:
    if method == "POST" and body is None:
        body = ""
    try:
        return await AsyncHTTPClient().fetch(url, method=method, body=body, **options)  # type: ignore[arg-type]
    except HTTPClientError as error:
        assert error.response is not None, error
        return error.response


def session_url(base: str) -> str:
    return f"{base}/000/{uuid.uuid4()}"


async def eventually(condition: Callable[[], object], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


class Stream:
    """A streaming request (xhr_streaming, eventsource) on a socket of its own, so it can be cut
    off: its status and what it received so far, chunked transfer decoded."""

    def __init__(self, url: str, method: str = "POST", headers: dict[str, str] | None = None):
        self.url, self.method, self.headers = urlsplit(url), method, headers or {}
        self.status = 0
        self.body = ""
        self.ended = False
        self.task = asyncio.ensure_future(self._run())
        self.writer: asyncio.StreamWriter | None = None

    async def _run(self) -> None:
        reader, self.writer = await asyncio.open_connection(self.url.hostname, self.url.port)
        target = self.url.path + (f"?{self.url.query}" if self.url.query else "")
        headers = {"Host": self.url.netloc, "Content-Length": "0", **self.headers}
        lines = [f"{self.method} {target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.status = int(head.split()[1])
        if "chunked" not in head.lower():
            self.body = (await reader.read()).decode()
            self.ended = True
            return
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            self.body += (await reader.readexactly(size + 2))[:-2].decode()
        self.ended = True

    async def until(self, text: str, timeout: float = 5) -> str:
        """Everything received, once it contains ``text``."""
        await eventually(lambda: text in self.body or self.task.done(), timeout)
        if text not in self.body:
            self.task.result()
            raise AssertionError(f"ended without {text!r}: {self.body!r}")
        return self.body

    async def close(self) -> None:
        self.task.cancel()
        if self.writer is not None:
            self.writer.close()
        await asyncio.sleep(0.05)


async def test_info_greeting_and_nothing_else(sockjs: Callable[..., str]) -> None:
    base = sockjs()
    info = await fetch(f"{base}/info", "GET", headers={"Origin": "http://127.0.0.1:9"})
    data = json.loads(info.body)
    assert data["websocket"] is True and data["cookie_needed"] is False
    assert data["origins"] == ["*:*"] and 0 <= data["entropy"] < 2**32
    assert info.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert info.headers["Cache-Control"].startswith("no-store, no-cache")
    assert info.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9"
    assert info.headers["Access-Control-Allow-Credentials"] == "true"
    greeting = await fetch(base, "GET")
    assert greeting.body == b"Welcome to SockJS!\n"
    for path in ("/a", "/a/b/c", "/iframe.html", "/0/0/jsonp", "/a./b/xhr", "/0/0/htmlfile"):
        assert (await fetch(base + path, "GET")).code == 404, path
    preflight = await fetch(
        f"{base}/0/0/xhr_send",
        "OPTIONS",
        headers={"Origin": "http://x", "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.code == 204
    assert preflight.headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type"
    assert "Access-Control-Allow-Origin" not in (await fetch(base, "GET")).headers


async def test_xhr_polling(sockjs: Callable[..., str]) -> None:
    url = session_url(sockjs())
    assert (await fetch(f"{url}/xhr")).body == b"o\n"
    sent = await fetch(f"{url}/xhr_send", body='["a", "b\\u2028"]')
    assert sent.code == 204 and sent.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert (await fetch(f"{url}/xhr")).body == b'a["a","b\\u2028"]\n'  # escaped as SockJS asks
    waiting = asyncio.ensure_future(fetch(f"{url}/xhr"))
    await asyncio.sleep(0.1)
    second = await fetch(f"{url}/xhr")
    assert second.body == b'c[2010,"Another connection still open"]\n'
    await fetch(f"{url}/xhr_send", body='"c"')
    assert (await waiting).body == b'a["c"]\n'
    assert b"Broken JSON encoding." in (await fetch(f"{url}/xhr_send", body='["x')).body
    assert b"Payload expected." in (await fetch(f"{url}/xhr_send", body="")).body
    assert (await fetch(f"{session_url(sockjs())}/xhr_send", body='["x"]')).code == 404


async def test_streaming_transports_and_their_limit(sockjs: Callable[..., str]) -> None:
    base = sockjs(response_limit=200)
    url = session_url(base)
    stream = Stream(f"{url}/xhr_streaming")
    assert (await stream.until("o\n")) == "h" * 2048 + "\n" + "o\n"
    await fetch(f"{url}/xhr_send", body=json.dumps(["x" * 150]))
    await stream.until("x" * 150)
    assert not stream.ended
    await fetch(f"{url}/xhr_send", body=json.dumps(["y" * 150]))
    await stream.until("y" * 150)
    await asyncio.wait_for(stream.task, 5)  # past 200 bytes of frames: the response ends
    assert stream.status == 200 and stream.ended
    assert Recorder.ended == []  # the session waits for the next receiving request
    url = session_url(base)
    events = Stream(f"{url}/eventsource", "GET")
    assert (await events.until("data: o\r\n\r\n")) == "\r\ndata: o\r\n\r\n"
    await fetch(f"{url}/xhr_send", body='["z"]')
    await events.until('data: a["z"]\r\n\r\n')
    await events.close()


async def test_heartbeats_interruptions_and_timeouts(sockjs: Callable[..., str]) -> None:
    base = sockjs(heartbeat=0.1, disconnect_delay=0.3)
    url = session_url(base)
    stream = Stream(f"{url}/xhr_streaming")
    await stream.until("o\nh\n")  # a heartbeat every 0.1 s
    await stream.close()  # the receiving request is cut off: the session ends
    assert [(s.close_code, s.close_reason) for s in Recorder.ended] == [
        (1002, "Connection interrupted")
    ]
    assert (await fetch(f"{url}/xhr")).body == b'c[1002,"Connection interrupted"]\n'
    url = session_url(base)
    assert (await fetch(f"{url}/xhr")).body == b"o\n"
    await asyncio.sleep(0.6)  # no receiving request for 0.3 s: the session is over
    assert Recorder.ended[-1].close_code is None
    assert "no receiving request" in (Recorder.ended[-1].close_reason or "")
    assert (await fetch(f"{url}/xhr_send", body='["late"]')).code == 404


async def test_send_queue_limit(sockjs: Callable[..., str]) -> None:
    url = session_url(sockjs(max_queue=1000))
    await fetch(f"{url}/xhr")
    await fetch(f"{url}/xhr_send", body=json.dumps(["x" * 600]))  # echoed: queued, nobody polls
    await fetch(f"{url}/xhr_send", body=json.dumps(["x" * 600]))
    assert (await fetch(f"{url}/xhr")).body.startswith(b'c[1008,"send queue full')


async def test_websocket_transports(sockjs: Callable[..., str]) -> None:
    base = sockjs().replace("http:", "ws:")
    async with websockets.connect(f"{base}/000/{uuid.uuid4()}/websocket") as ws:
        assert await ws.recv() == "o"
        await ws.send("")  # ignored, as are empty arrays
        await ws.send("[]")
        await ws.send('["a","b"]')
        assert await ws.recv() == 'a["a"]'
        assert await ws.recv() == 'a["b"]'
        await ws.send('["broken')
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1002
    async with websockets.connect(f"{base}/websocket", subprotocols=["v12.stomp"]) as raw:
        assert raw.subprotocol is None  # this service agrees to no subprotocol
        await raw.send("plain text\uffff")
        assert await raw.recv() == "plain text\uffff"
    not_found = await fetch(base.replace("ws:", "http:") + "/0/0/websocket", "GET")
    assert not_found.code == 400  # a WebSocket URL, asked without the upgrade
    wrong = await fetch(base.replace("ws:", "http:") + "/0/0/websocket", "POST")
    assert wrong.code == 405 and wrong.headers["Allow"] == "GET" and not wrong.body


# -- the server's access policy and limits, on every transport of /stomp --------------------------

TRANSPORTS = ["info", "xhr", "xhr_streaming", "eventsource", "websocket", "raw websocket"]


async def attempt(server: Server, transport: str, query: str = "", **headers: str) -> int:
    """The HTTP status a request for a transport gets (101 for an accepted WebSocket)."""
    base = f"http://127.0.0.1:{server.port}/stomp"
    if transport == "info":
        return (await fetch(f"{base}/info{query}", "GET", headers=headers)).code
    if "websocket" in transport:
        path = "/websocket" if transport == "raw websocket" else f"/0/{uuid.uuid4()}/websocket"
        host = headers.pop("Host", "127.0.0.1")  # a name: still connect to 127.0.0.1
        try:
            async with websockets.connect(
                f"ws://{host}:{server.port}/stomp{path}{query}",
                host="127.0.0.1",
                port=server.port,
                origin=headers.pop("Origin", None),  # type: ignore[arg-type]
                additional_headers=headers,
            ):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code
    url = f"{base}/0/{uuid.uuid4()}/{transport}{query}"
    if transport == "xhr":
        return (await fetch(url, headers=headers)).code
    stream = Stream(url, "GET" if transport == "eventsource" else "POST", headers)
    try:
        await eventually(lambda: stream.status or stream.task.done())
        return stream.status
    finally:
        await stream.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_token_on_every_transport(
    serve: Callable[..., Server], transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-token-value"
    server = serve(token=secret)
    assert await attempt(server, transport) == 401
    assert await attempt(server, transport, "?token=wrong") == 403
    assert await attempt(server, transport, "?token=s3cret") == 403  # a prefix is wrong
    ok = 101 if "websocket" in transport else 200
    assert await attempt(server, transport, f"?token={secret}", Cookie=f"session={secret}") == ok
    assert await attempt(server, transport, Authorization=f"Bearer {secret}") == ok
    logged = "\n".join(  # the server's logs (the client's own debug log shows its headers)
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(("tornado", "ws_notebook"))
    )
    assert "/stomp" in logged and secret not in logged


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_origin_policy_on_every_transport(
    serve: Callable[..., Server], transport: str
) -> None:
    server = serve(allowed_origins=["https://front.example"])
    ok = 101 if "websocket" in transport else 200
    assert await attempt(server, transport, Origin="http://evil.example") == 403
    assert await attempt(server, transport, Origin="https://front.example") == ok
    assert await attempt(server, transport, Origin="http://localhost:8888") == ok  # a local page
    assert await attempt(server, transport, Host="rebound.example") == 403  # DNS rebinding
    token = f"?token={server.page_token}"
    assert await attempt(server, transport, token, Origin="http://evil.example") == ok


@pytest.mark.slow
async def test_sessions_are_capped_and_closed_when_the_server_stops(
    serve: Callable[..., Server],
) -> None:
    from ws_notebook.server import Limits

    server = serve(limits=Limits(max_connections=2))
    base = f"http://127.0.0.1:{server.port}/stomp"
    for _ in range(2):
        assert (await fetch(f"{base}/0/{uuid.uuid4()}/xhr")).body == b"o\n"
    refused = await fetch(f"{base}/0/{uuid.uuid4()}/xhr")
    assert refused.code == 503 and b"2 SockJS sessions open already" in refused.body
    url = f"ws://127.0.0.1:{server.port}/js/0/{uuid.uuid4()}/websocket"
    async with websockets.connect(url) as ws:  # /js counts its own sessions
        assert await ws.recv() == "o"
        server.stop()
        assert await asyncio.wait_for(ws.recv(), 3) == 'c[1001,"server stopping"]'


SUITE = os.environ.get("SOCKJS_PROTOCOL_DIR")


@pytest.mark.skipif(
    not SUITE,
    reason="the sockjs-protocol suite is not shipped: set SOCKJS_PROTOCOL_DIR to a checkout of "
    "sockjs/sockjs-protocol to run it (it also runs by hand: tests/conformance/sockjs_protocol.py)",
)
def test_the_sockjs_protocol_suite() -> None:
    """Every failure of the SockJS project's own suite is one of the transports left out."""
    script = Path(__file__).parent / "conformance" / "sockjs_protocol.py"
    done = subprocess.run(
        [sys.executable, str(script), "--suite", str(SUITE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(
        r"68 tests in .*: 50 passed, 18 failed \(18 expected, 0 unexpected\)", done.stdout
    )
