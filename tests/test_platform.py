"""The platform's semantics for Python handlers, its descriptors and its URLs (issue 13).

Real servers on the test's loop, real ``websockets`` clients, real files, the real CLI and a real
kernel: what ``onMessage`` returns is the reply, ``ws_notebook.context()`` tells a handler its
event with codbex's names, ``getClients()`` and friends find clients, descriptors are read as the
platform reads them (``validate --strict`` as the schema is written), ``GET
/services/websockets`` and the short form ``ws://HOST:PORT/NAME`` work, every load error starts
with the descriptor's project path, and a 404 prints nothing into the notebook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from jupyter_client.manager import KernelManager
from websockets.exceptions import InvalidStatus

import ws_notebook
from ws_notebook import Descriptor, Handlers, Server, api
from ws_notebook.project import ProjectError, load_project, project_path
from ws_notebook.registry import RESERVED_PATHS
from ws_notebook.server import endpoint_in

from .endpoints import mount
from .kernels import Kernel

WAIT = 10.0


def http(url: str) -> tuple[int, str]:
    """Status and body of a plain GET."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def get(server: Server, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(http, f"http://127.0.0.1:{server.port}{path}")


async def recv(ws: websockets.ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), WAIT)


async def nothing_more(ws: websockets.ClientConnection) -> None:
    with pytest.raises(asyncio.TimeoutError):
        extra = await asyncio.wait_for(ws.recv(), 0.3)
        raise AssertionError(f"unexpected message {extra!r}")


async def until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def short(server: Server, name: str) -> str:
    return f"ws://127.0.0.1:{server.port}/{name}"


# --- 2. what on_message returns is the reply ------------------------------------------------------


async def test_what_on_message_returns_is_sent_back_to_that_client(server: Server) -> None:
    replies: dict[str, Any] = {
        "text": "a reply",
        "bytes": b"\x00\x01",
        "dict": {"a": 1, "b": [True, None]},
        "list": [1, "x"],
        "none": None,
    }
    endpoint = mount(server, "replies", on_message=lambda message, client: replies[message])
    async with (
        websockets.connect(server.url("replies")) as ws,
        websockets.connect(server.url("replies")) as other,
    ):
        await ws.send("text")
        assert await recv(ws) == "a reply"
        await ws.send("bytes")
        assert await recv(ws) == b"\x00\x01"  # a binary frame
        await ws.send("dict")
        assert json.loads(await recv(ws)) == {"a": 1, "b": [True, None]}
        await ws.send("list")
        assert json.loads(await recv(ws)) == [1, "x"]
        await ws.send("none")  # None: nothing is sent
        await ws.send("text")
        assert await recv(ws) == "a reply"
        await nothing_more(other)  # only the sender gets the reply
        client = next(c for c in endpoint.clients.values() if c.messages_in == 6)
        assert client.messages_out == 5  # as client.send counts them
    outs = [e for e in endpoint.log.since() if e.kind == "out"]
    assert [e.preview for e in outs][:2] == ["a reply", b"\x00\x01"]


async def test_a_codbex_onmessage_returning_its_reply_works_unchanged(server: Server) -> None:
    # The platform's own test handler: onMessage(message, from) returns the reply.
    async def onMessage(message: str) -> str:  # noqa: N802 (codbex's name)
        await asyncio.sleep(0)
        return f"Hello from WebSocket! [{message}]"

    mount(server, "test", onMessage=onMessage)
    async with websockets.connect(server.url("test")) as ws:
        await ws.send("hi")
        assert await recv(ws) == "Hello from WebSocket! [hi]"


async def test_the_reply_goes_after_what_the_handler_sent_and_only_on_message_replies(
    server: Server,
) -> None:
    closed = asyncio.Event()

    def on_message(message: str, client: ws_notebook.Client) -> str:
        if message == "boom":
            raise ValueError(message)
        client.send("first")
        return "second"

    def on_close(client: ws_notebook.Client) -> str:
        closed.set()
        return "not sent"

    mount(
        server,
        "order",
        on_open=lambda client: "not sent",
        on_message=on_message,
        on_error=lambda error, client: "not sent either",
        on_close=on_close,
    )
    async with websockets.connect(server.url("order")) as ws:
        await ws.send("go")
        assert [await recv(ws), await recv(ws)] == ["first", "second"]
        await ws.send("boom")
        await nothing_more(ws)
    await asyncio.wait_for(closed.wait(), WAIT)


async def test_a_reply_that_cannot_be_sent_is_the_handlers_error(server: Server) -> None:
    errors: list[BaseException] = []
    endpoint = mount(
        server,
        "odd",
        on_message=lambda message, client: object() if message == "odd" else message,
        on_error=lambda error, client: errors.append(error),
    )
    async with websockets.connect(server.url("odd")) as ws:
        await ws.send("odd")
        await ws.send("still open")
        assert await recv(ws) == "still open"
    (error,) = errors  # Python's on_error gets the exception itself
    assert isinstance(error, TypeError)
    assert str(error).startswith("the value it returned cannot be sent back: cannot send object")
    (event,) = [e for e in endpoint.log.since() if e.kind == "error"]
    assert event.detail.startswith("on_message raised TypeError: the value it returned cannot be")


# --- 2. the event context: ws_notebook.context() ---------------------------------------------------


def _seen() -> tuple:
    ctx = ws_notebook.context()
    flags = (ctx.isOnOpen(), ctx.isOnMessage(), ctx.isOnError(), ctx.isOnClose())
    snake = (ctx.is_on_open(), ctx.is_on_message(), ctx.is_on_error(), ctx.is_on_close())
    assert flags == snake
    assert (ctx.get_method(), ctx.get_message(), ctx.get_error()) == (
        ctx.getMethod(),
        ctx.getMessage(),
        ctx.getError(),
    )
    return ctx.getMethod(), ctx.getMessage(), ctx.getError(), flags, ctx.client


async def test_context_tells_each_handler_its_event(server: Server) -> None:
    seen: list[tuple] = []
    closed = asyncio.Event()
    failure = ValueError("bad input")

    def on_message(message: str, client: ws_notebook.Client) -> None:
        seen.append(_seen())
        if message == "boom":
            raise failure

    def on_close(client: ws_notebook.Client) -> None:
        seen.append(_seen())
        closed.set()

    mount(
        server,
        "ctx",
        on_open=lambda client: seen.append(_seen()),
        on_message=on_message,
        on_error=lambda error, client: seen.append(_seen()),
        on_close=on_close,
    )
    async with websockets.connect(server.url("ctx")) as ws:
        await ws.send("hello")
        await ws.send(b"\x01")
        await ws.send("boom")
        await until(lambda: len(seen) == 5)
    await asyncio.wait_for(closed.wait(), WAIT)
    client = seen[0][4]
    assert isinstance(client, ws_notebook.Client)
    assert [entry[:4] for entry in seen] == [
        ("onopen", None, None, (True, False, False, False)),
        ("onmessage", "hello", None, (False, True, False, False)),
        ("onmessage", b"\x01", None, (False, True, False, False)),
        ("onmessage", "boom", None, (False, True, False, False)),
        ("onerror", None, failure, (False, False, True, False)),
    ] + [("onclose", None, None, (False, False, False, True))] * (len(seen) - 5)
    assert all(entry[4] is client for entry in seen)
    # Outside a handler: no event.
    assert _seen() == (None, None, None, (False, False, False, False), None)


async def test_context_holds_across_an_await_while_other_clients_are_served(
    server: Server,
) -> None:
    gate = asyncio.Event()
    got: dict[str, tuple] = {}

    async def on_message(message: str, client: ws_notebook.Client) -> None:
        if message == "first":
            await gate.wait()  # the second client's message is handled meanwhile
        else:
            gate.set()
            await asyncio.sleep(0)
        got[message] = (ws_notebook.context().getMessage(), ws_notebook.context().client)
        client.send(message)

    mount(server, "interleaved", on_message=on_message)
    async with (
        websockets.connect(server.url("interleaved")) as a,
        websockets.connect(server.url("interleaved")) as b,
    ):
        await a.send("first")
        await asyncio.sleep(0.1)
        await b.send("second")
        assert await recv(b) == "second"
        assert await recv(a) == "first"
    assert got["first"][0] == "first" and got["second"][0] == "second"
    assert got["first"][1] is not got["second"][1]


# --- 2. codbex's client registry names ---------------------------------------------------------------


@pytest.fixture
def default(server: Server) -> Iterator[Server]:
    """``server`` as the one ws_notebook's functions act on, as in a kernel or ``serve``."""
    previous = api._server
    api.set_default_server(server)
    yield server
    api._server = previous


def test_codbex_client_names_are_the_same_functions() -> None:
    assert ws_notebook.getClients is ws_notebook.get_clients is ws_notebook.clients
    assert ws_notebook.getClient is ws_notebook.get_client is ws_notebook.client
    assert (
        ws_notebook.getClientByHandler
        is ws_notebook.get_client_by_handler
        is ws_notebook.client_by_handler
    )


async def test_get_clients_get_client_and_get_client_by_handler(default: Server) -> None:
    opened: list[ws_notebook.Client] = []
    closed = asyncio.Event()
    descriptor = Descriptor.new("chat", handler="my-project/chat-handler.js", created_by="t")
    handlers = Handlers.from_namespace(
        {"on_open": opened.append, "on_close": lambda client: closed.set()}
    )
    default.registry.mount(descriptor, handlers)
    mount(default, "other", on_open=opened.append)
    async with (
        websockets.connect(default.url("chat")) as first,
        websockets.connect(default.url("chat")),
    ):
        await until(lambda: len(opened) == 2)
        assert {c.id for c in ws_notebook.getClients()} == {c.id for c in opened}
        assert ws_notebook.get_clients("chat") == opened
        assert ws_notebook.getClient(opened[1].id) is opened[1]
        assert ws_notebook.get_client("c0") is None
        for name in ("my-project/chat-handler", "/my-project/chat-handler.js"):
            assert ws_notebook.getClientByHandler(name) is opened[0]
        assert ws_notebook.getClientByHandler("my-project/other") is None
        async with websockets.connect(default.url("other")):
            await until(lambda: len(opened) == 3)
            assert ws_notebook.get_client_by_handler("test") is opened[2]  # mount()'s handler
        await first.close()
        await asyncio.wait_for(closed.wait(), WAIT)
        assert ws_notebook.getClientByHandler("my-project/chat-handler") is opened[1]


# --- 4. the platform's URLs -------------------------------------------------------------------------


async def test_services_websockets_answers_like_websockets(server: Server) -> None:
    mount(server, "echo", on_message=lambda message, client: message)
    listed = await get(server, "/websockets")
    assert listed[0] == 200
    assert await get(server, "/services/websockets") == listed
    assert await get(server, "/services/websockets/") == listed
    (entry,) = json.loads(listed[1])
    assert entry["short_url"] == short(server, "echo")


async def test_services_websockets_needs_the_token_like_websockets(
    serve: Callable[..., Server],
) -> None:
    server = serve(token="secret")
    assert (await get(server, "/services/websockets"))[0] == 401
    assert (await get(server, "/services/websockets?token=secret"))[0] == 200


async def test_the_short_form_reaches_the_endpoint(server: Server) -> None:
    mount(server, "my-websocket", on_message=lambda message, client: f"got {message}")
    for url in (short(server, "my-websocket"), short(server, "my-websocket") + "/"):
        async with websockets.connect(url) as ws:
            await ws.send("hi")
            assert await recv(ws) == "got hi"
    assert server.short_url("my-websocket") == short(server, "my-websocket")
    # Only WebSocket requests: a plain GET there is not found, as before.
    status, body = await get(server, "/my-websocket")
    assert (status, body) == (
        404,
        "404 Not Found: nothing at /my-websocket: endpoints are at /websockets/service/NAME "
        "(GET /websockets lists them)\n",
    )


async def test_the_short_form_of_an_unknown_name_is_404_naming_the_endpoints(
    server: Server,
) -> None:
    mount(server, "echo")
    with pytest.raises(InvalidStatus) as raised:
        await websockets.connect(short(server, "nope"))
    assert raised.value.response.status_code == 404
    assert b"no WebSocket endpoint 'nope' here (mounted: echo" in raised.value.response.body


async def test_the_short_form_needs_the_token_like_the_full_url(
    serve: Callable[..., Server],
) -> None:
    server = serve(token="secret")
    mount(server, "echo", on_message=lambda message, client: message)
    with pytest.raises(InvalidStatus) as raised:
        await websockets.connect(short(server, "echo"))
    assert raised.value.response.status_code == 401
    async with websockets.connect(short(server, "echo") + "?token=secret") as ws:
        await ws.send("in")
        assert await recv(ws) == "in"


@pytest.mark.parametrize("name", RESERVED_PATHS)
async def test_a_name_the_server_uses_says_so_when_mounted_and_keeps_its_full_url(
    server: Server, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert set(RESERVED_PATHS) == {"websockets", "healthz", "services", "stomp", "js"}
    with caplog.at_level(logging.WARNING, logger="ws_notebook"):
        mount(server, name, on_message=lambda message, client: f"{name} got {message}")
    assert (
        f"endpoint {name!r}: /{name} is a path the server itself uses, so clients reach this "
        f"endpoint at /websockets/service/{name} only (not by the short form /{name})"
    ) in caplog.messages
    async with websockets.connect(server.url(name)) as ws:
        await ws.send("x")
        assert await recv(ws) == f"{name} got x"
    with pytest.raises(InvalidStatus):  # /NAME is the server's own path, not the endpoint
        await websockets.connect(short(server, name))
    assert server.short_url(name) is None
    head = f"GET /{name} HTTP/1.1\r\n".encode()
    assert endpoint_in(head) is None
    upgrade = (
        f"GET /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    assert server.upgrade_answer(upgrade) is None
    assert server.upgrade_answer(upgrade.replace(f"/{name} ".encode(), b"/echo ")) is None
    mount(server, "echo")
    assert server.upgrade_answer(upgrade.replace(f"/{name} ".encode(), b"/echo ")) == "echo"
    assert endpoint_in(b"GET /echo?x=1 HTTP/1.1\r\n") == "echo"


async def test_the_short_form_reaches_an_endpoint_on_its_own_thread(server: Server) -> None:
    threads: list[str] = []

    def on_message(message: str, client: ws_notebook.Client) -> str:
        threads.append(threading.current_thread().name)
        return message

    descriptor = Descriptor.new("status", handler="test", created_by="t")
    server.registry.mount(
        descriptor, Handlers.from_namespace({"on_message": on_message}), threaded=True
    )
    async with websockets.connect(short(server, "status")) as ws:
        await ws.send("on a thread")
        assert await recv(ws) == "on a thread"
    assert threads and threads[0] != threading.main_thread().name


async def test_a_refused_connection_is_an_event_of_the_endpoints_log(
    serve: Callable[..., Server],
) -> None:
    server = serve(token="secret")
    endpoint = mount(server, "echo")
    for url, status in ((server.url("echo"), 401), (short(server, "echo") + "?token=wrong", 403)):
        with pytest.raises(InvalidStatus) as raised:
            await websockets.connect(url)
        assert raised.value.response.status_code == status
    details = [e.detail for e in endpoint.log.since() if e.kind == "error"]
    assert details == [
        "refused a connection from 127.0.0.1: 401 this server needs a token: Authorization: "
        "Bearer TOKEN or ?token=TOKEN",
        "refused a connection from 127.0.0.1: 403 wrong token",
    ]


# --- 3 and 5. descriptors as the platform reads them; load errors name the project path -------------


def write(path: Path, content: str | dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content, indent=2)
    path.write_text(text, "utf-8")
    return path


HELLO = "def onMessage(message):\n    return f'Hello from WebSocket! [{message}]'\n"

# As the platform writes them: its own fields, a null, a leading slash, no createdBy.
PLATFORM_DESCRIPTOR = {
    "handler": "test-project/websockets/test-handler",
    "endpoint": "/mycustomwebsocket",
    "description": None,
    "engine": "javascript",
    "createdAt": "2024-01-02T03:04:05Z",
    "updatedBy": "editor",
    "updatedAt": "2024-02-03T04:05:06Z",
    "colour": "red",
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """``test-project/websockets/test.websocket`` beside its handler, as the platform lays it out."""
    folder = tmp_path.resolve() / "workspace"
    write(folder / "test-project" / "websockets" / "test.websocket", PLATFORM_DESCRIPTOR)
    write(folder / "test-project" / "websockets" / "test-handler.py", HELLO)
    return folder


def test_a_platform_descriptor_loads_as_the_platform_reads_it(workspace: Path) -> None:
    (loaded,) = load_project(workspace / "test-project")
    d = loaded.descriptor
    assert (d.endpoint, d.description, d.created_by) == ("mycustomwebsocket", "", "SYSTEM")
    assert (d.engine, d.updated_by, d.updated_at) == (
        "javascript",
        "editor",
        "2024-02-03T04:05:06Z",
    )
    assert d.location == "/test-project/websockets/test.websocket"
    assert d.declared_location == ""
    assert d.warnings == (
        "colour: unknown property, ignored (expected one of location, handler, endpoint, "
        "description, createdBy, createdAt, engine, updatedBy, updatedAt, uri)",
        "endpoint: '/mycustomwebsocket' starts with '/', which is dropped: clients connect to "
        "'mycustomwebsocket'",
    )
    with pytest.raises(ProjectError) as strict:
        load_project(workspace / "test-project", strict=True)
    where = "/test-project/websockets/test.websocket"
    assert [problem.partition(": ")[0] for problem in strict.value.problems] == [where] * 6
    assert "".join(strict.value.problems).count("engine: not in the strict schema") == 1


def test_location_is_where_the_file_really_is_and_its_own_is_kept(workspace: Path) -> None:
    path = workspace / "test-project" / "websockets" / "test.websocket"
    write(path, {**PLATFORM_DESCRIPTOR, "location": "/old-name/test.websocket"})
    (loaded,) = load_project(workspace / "test-project")
    assert loaded.descriptor.location == "/test-project/websockets/test.websocket"
    assert loaded.descriptor.declared_location == "/old-name/test.websocket"
    server = Server()
    server.registry.mount(loaded.descriptor, loaded.handlers)
    (entry,) = server.describe()
    assert entry["descriptor"]["location"] == "/test-project/websockets/test.websocket"
    assert entry["declared_location"] == "/old-name/test.websocket"
    assert entry["descriptor"]["engine"] == "javascript"
    assert entry["descriptor"]["createdBy"] == "SYSTEM"
    # Loading the whole workspace: the file's own location, matching, names the project.
    write(path, {**PLATFORM_DESCRIPTOR, "location": "/test-project/websockets/test.websocket"})
    (loaded,) = load_project(workspace)
    assert loaded.descriptor.location == "/test-project/websockets/test.websocket"
    assert loaded.descriptor.declared_location == ""


def test_without_a_location_a_project_json_names_the_project(workspace: Path) -> None:
    path = workspace / "test-project" / "websockets" / "test.websocket"
    assert project_path(path, workspace) == "/workspace/test-project/websockets/test.websocket"
    write(workspace / "test-project" / "project.json", "{}")
    assert project_path(path, workspace) == "/test-project/websockets/test.websocket"
    (loaded,) = load_project(workspace)
    assert loaded.descriptor.location == "/test-project/websockets/test.websocket"


def test_every_load_error_starts_with_the_descriptors_project_path(workspace: Path) -> None:
    project = workspace / "test-project"
    write(project / "project.json", "{}")
    write(project / "ws" / "broken.websocket", '{"endpoint": "b"')
    write(project / "ws" / "bad.websocket", {"endpoint": "a b", "handler": "h"})
    write(project / "ws" / "missing.websocket", {"endpoint": "m", "handler": "nowhere"})
    write(project / "ws" / "syntax.websocket", {"endpoint": "s", "handler": "syntax"})
    write(project / "ws" / "syntax.py", "def on_message(:\n")
    write(project / "ws" / "undefined.websocket", {"endpoint": "u", "handler": "undefined"})
    write(project / "ws" / "undefined.py", "def on_message(m, c):\n    return A + B\n")
    write(project / "ws" / "twice.websocket", {"endpoint": "mycustomwebsocket", "handler": "x"})
    with pytest.raises(ProjectError) as caught:
        load_project(project, run_handlers=False)  # as validate checks: names read, not defined
    problems = caught.value.problems
    where = [problem.partition(": ")[0] for problem in problems]
    assert where == [
        "/test-project/ws/bad.websocket",
        "/test-project/ws/broken.websocket",
        "/test-project/ws/missing.websocket",
        "/test-project/ws/syntax.websocket",
        "/test-project/ws/twice.websocket",
        "/test-project/ws/undefined.websocket",
        "/test-project/ws/undefined.websocket",
    ]
    assert (
        problems[3]
        == f"/test-project/ws/syntax.websocket: {project / 'ws' / 'syntax.py'}:1: invalid syntax"
    )
    assert problems[4] == (
        "/test-project/ws/twice.websocket: endpoint: 'mycustomwebsocket' is already defined by "
        "/test-project/websockets/test.websocket"
    )
    assert problems[5].endswith("undefined.py:2: name 'A' is not defined")


@pytest.mark.slow
def test_validate_warns_and_validate_strict_refuses(workspace: Path) -> None:
    command = [sys.executable, "-m", "ws_notebook", "validate", str(workspace / "test-project")]
    lenient = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert lenient.returncode == 0, lenient.stderr
    assert lenient.stdout == "1 endpoint OK: mycustomwebsocket\n"
    where = "/test-project/websockets/test.websocket"
    assert lenient.stderr.splitlines() == [
        f"warning: {where}: colour: unknown property, ignored (expected one of location, "
        "handler, endpoint, description, createdBy, createdAt, engine, updatedBy, updatedAt, uri)",
        f"warning: {where}: endpoint: '/mycustomwebsocket' starts with '/', which is dropped: "
        "clients connect to 'mycustomwebsocket'",
    ]
    strict = subprocess.run([*command, "--strict"], capture_output=True, text=True, timeout=60)
    assert strict.returncode == 2
    assert strict.stderr.splitlines() == [
        f"{where}: colour: unknown property (expected one of location, handler, endpoint, "
        "description, createdBy, createdAt)",
        f"{where}: engine: not in the strict schema (a field the platform itself writes; read "
        "without --strict, it is kept)",
        f"{where}: updatedAt: not in the strict schema (a field the platform itself writes; "
        "read without --strict, it is kept)",
        f"{where}: updatedBy: not in the strict schema (a field the platform itself writes; "
        "read without --strict, it is kept)",
        f"{where}: description: null is not a string",
        f"{where}: endpoint: '/mycustomwebsocket' is not a valid endpoint name (letters, "
        "digits, '-', '_', '.')",
        f"ws-notebook: 6 problems in {workspace / 'test-project'}",
    ]


@pytest.mark.slow
def test_list_shows_the_platforms_fields(workspace: Path) -> None:
    project = str(workspace / "test-project")
    command = [sys.executable, "-m", "ws_notebook", "list", project, "--port", "9999"]
    table = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    header, row = table.stdout.splitlines()
    assert header.split() == [
        "endpoint",
        "url",
        "handlers",
        "description",
        "createdBy",
        "createdAt",
        "engine",
        "updatedBy",
        "updatedAt",
        "file",
    ]
    assert row.split()[:2] == [
        "mycustomwebsocket",
        "ws://127.0.0.1:9999/websockets/service/mycustomwebsocket",
    ]
    assert "SYSTEM" in row and "javascript" in row and "editor" in row
    listed = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True)
    (entry,) = json.loads(listed.stdout)
    assert entry["short_url"] == "ws://127.0.0.1:9999/mycustomwebsocket"
    assert entry["descriptor"] == {
        "location": "/test-project/websockets/test.websocket",
        "handler": "test-project/websockets/test-handler",
        "endpoint": "mycustomwebsocket",
        "createdBy": "SYSTEM",
        "createdAt": "2024-01-02T03:04:05Z",
        "engine": "javascript",
        "updatedBy": "editor",
        "updatedAt": "2024-02-03T04:05:06Z",
    }


@pytest.mark.slow
async def test_serve_answers_the_platforms_urls(workspace: Path) -> None:
    from .test_cli import Served

    project = str(workspace / "test-project")
    served = await Served(
        [sys.executable, "-m", "ws_notebook", "serve", project, "--port", "0"]
    ).started()
    try:
        await served.wait_for(r"warning: /test-project/websockets/test\.websocket: colour")
        for url in (
            served.url("mycustomwebsocket"),
            f"ws://127.0.0.1:{served.port}/mycustomwebsocket",
        ):
            async with websockets.connect(url) as ws:
                await ws.send("hi")
                assert await recv(ws) == "Hello from WebSocket! [hi]"
        status, body = await asyncio.to_thread(served.http, "/services/websockets")
        assert status == 200
        assert json.loads(body) == json.loads(
            (await asyncio.to_thread(served.http, "/websockets"))[1]
        )
    finally:
        served.kill()


# --- in a kernel ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_load_in_a_kernel_says_from_the_project_path_with_warnings(
    fresh: Kernel, workspace: Path
) -> None:
    reply = fresh.run(f"%websocket load {workspace / 'test-project'}")
    assert reply.stdout.startswith("mycustomwebsocket: serving at ws://127.0.0.1:")
    assert reply.stdout.rstrip().endswith(
        "/websockets/service/mycustomwebsocket (from /test-project/websockets/test.websocket)"
    )
    assert "warning: /test-project/websockets/test.websocket: colour: unknown property" in (
        reply.stderr
    )
    assert "warning: /test-project/websockets/test.websocket: endpoint: '/mycustomwebsocket'" in (
        reply.stderr
    )
    listed = fresh.run("%websocket list").text
    header = listed.splitlines()[0]
    assert header.split()[-3:] == ["engine", "updatedBy", "updatedAt"]
    assert "javascript" in listed and "SYSTEM" in listed
    write(workspace / "test-project" / "websockets" / "test-handler.py", "def on_open(:\n")
    fresh.run("ws_notebook.reset()")
    broken = fresh.run(f"%websocket load {workspace / 'test-project'}", check=False)
    assert broken.error is not None
    assert "UsageError: /test-project/websockets/test.websocket: " in broken.error


def test_a_ported_handler_in_a_cell_replies_and_reads_its_context(fresh: Kernel) -> None:
    fresh.run(
        textwrap.dedent("""\
        %%websocket ported --no-panel
        import ws_notebook

        def onMessage(message):
            ctx = ws_notebook.context()
            clients = ws_notebook.getClients("ported")
            return f"{ctx.getMethod()} {ctx.getMessage()} {ctx.isOnMessage()} {len(clients)}"
        """)
    )
    url = fresh.run("%websocket url ported").stdout.splitlines()[0]
    from websockets.sync.client import connect

    with connect(url.replace("/websockets/service/ported", "/ported")) as ws:
        ws.send("hi")
        assert ws.recv(timeout=WAIT) == "onmessage hi True 1"


@pytest.fixture(scope="module")
def jupyter_kernel() -> Iterator[Kernel]:
    """A kernel that forwards its file descriptors 1 and 2 into the notebook, as under Jupyter.

    ipykernel does not when it sees it runs inside pytest (``PYTEST_CURRENT_TEST``), and then
    what Tornado logs never reaches a cell whatever ws_notebook does.
    """
    manager = KernelManager(kernel_name="python3")
    manager.kernel_spec.argv[0] = sys.executable
    manager.start_kernel(
        env={name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}
    )
    started = Kernel(manager)
    started.run("%load_ext ws_notebook\nimport json\nimport ws_notebook")
    yield started
    started.stop()


@pytest.fixture
def jupyter(jupyter_kernel: Kernel) -> Kernel:
    jupyter_kernel.run("ws_notebook.reset()")
    return jupyter_kernel


@pytest.mark.slow
@pytest.mark.kernel
def test_a_404_prints_nothing_into_the_notebook(jupyter: Kernel) -> None:
    fresh = jupyter
    fresh.run("%%websocket echo --no-panel\ndef on_message(message, client):\n    return message")
    url = fresh.run("%websocket url echo").stdout.splitlines()[0]
    reply = fresh.run(
        textwrap.dedent(f"""\
        import asyncio, urllib.request, websockets

        def get(path):
            try:
                urllib.request.urlopen({url.split("/websockets")[0].replace("ws:", "http:")!r} + path, timeout=5)
            except Exception as error:
                print(type(error).__name__)

        await asyncio.to_thread(get, "/websockets/service/nope")
        await asyncio.to_thread(get, "/elsewhere")
        try:
            await websockets.connect({url.replace("/echo", "/nope")!r})
        except Exception as error:
            print(type(error).__name__)
        await asyncio.sleep(0.3)
        """)
    )
    assert reply.stdout == "HTTPError\nHTTPError\nInvalidStatus\n"
    assert reply.stderr == ""
    assert fresh.run("await asyncio.sleep(0.2)").stderr == ""


@pytest.mark.slow
@pytest.mark.kernel
def test_a_refusal_in_a_kernel_is_in_the_event_log_not_the_notebook(jupyter: Kernel) -> None:
    fresh = jupyter
    fresh.run("%websocket start --token secret")
    fresh.run("%%websocket echo --no-panel\ndef on_message(message, client):\n    return message")
    url = fresh.run("%websocket url echo").stdout.splitlines()[0]
    reply = fresh.run(
        textwrap.dedent(f"""\
        import websockets
        try:
            await websockets.connect({url!r})
        except Exception as error:
            print(error.response.status_code)
        print([e["detail"] for e in ws_notebook.events("echo") if e["kind"] == "error"])
        """)
    )
    assert reply.stdout.splitlines() == [
        "401",
        "['refused a connection from 127.0.0.1: 401 this server needs a token: Authorization: "
        "Bearer TOKEN or ?token=TOKEN']",
    ]
    assert reply.stderr == ""


# --- the short form while a cell blocks the kernel ---------------------------------------------------------


@pytest.mark.slow
async def test_the_short_form_is_answered_while_a_cell_blocks(fresh: Kernel) -> None:
    from .test_busy_kernel import BLOCK, SLEEP, Block, client, define_echo, run

    await run(fresh, "import asyncio, json, threading, time\nhandled = []")
    url = await define_echo(fresh, "echo")
    async with (
        Block(fresh, SLEEP) as cell,
        client(url.replace("/websockets/service/echo", "/echo"), open_timeout=2) as ws,
    ):
        assert cell.elapsed() < BLOCK - 1, "the handshake completed only after the block"
        await ws.send("hi")
        await cell.finished()
        assert (await recv(ws)).startswith("welcome ")
        assert await recv(ws) == "1:hi"
