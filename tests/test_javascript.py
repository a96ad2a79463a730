"""JavaScript handlers (issue 13): codbex projects run unchanged, in V8 (``ws_notebook.javascript``).

``tests/js_projects/test-project`` is laid out like a platform project: ``websockets/test.websocket``
naming ``test-project/websockets/test-handler.js`` (an ES module whose ``onMessage`` returns
``Hello from WebSocket! [<message>]``), ``my-endpoint.websocket`` naming the CommonJS
``test-project/ws-handler`` without its extension, a template-style chat room that broadcasts
with ``websockets.getClients()``, and ``checks``, which throws, loops forever and calls the rest
of the ``websockets`` API. It is served as it is: in this process (checked with the
``websockets`` library), by ``ws-notebook serve`` (with the ``websockets`` library, Node's ``ws``
and Chromium) and by ``%websocket load`` in a real kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import websockets
from websockets.sync.client import connect as connect_sync

from ws_notebook import Registry, Server, api, javascript
from ws_notebook.descriptor import Descriptor
from ws_notebook.handlers import HandlerError, Handlers
from ws_notebook.project import ProjectError, load_project, resolve_handler

from .jupyter_server import chromium_page, loopback_page, needs_chromium
from .kernels import Kernel
from .test_outbound import Feed

pytestmark = pytest.mark.timeout(120)

PROJECT = Path(__file__).parent / "js_projects" / "test-project"
WAIT = 10.0
LIMIT = 0.5  # seconds: the JavaScript time limit in these tests
GREETING = "Hello from WebSocket! [{}]"
CHECKS_THROW = "websockets/checks.js:5:11: RangeError: no such thing"  # fail()'s throw
CHECKS_HANDLER = "websockets/checks.js:8: onMessage was stopped"  # onMessage's line


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the test project, in a workspace folder of its own."""
    return Path(shutil.copytree(PROJECT, tmp_path / "workspace" / "test-project"))


@pytest.fixture
async def served(project: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    """The project loaded and served on this test's loop, with a time limit of 0.5 s."""
    monkeypatch.setenv("WS_NOTEBOOK_JS_TIME_LIMIT", str(LIMIT))
    registry = Registry()
    loaded = load_project(project)
    for item in loaded:
        registry.mount(item.descriptor, item.handlers)
    server = Server(registry, "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()
    for item in loaded:
        item.handlers.release()


async def recv(ws: websockets.ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), WAIT)


async def logged(server: Server, name: str, kind: str, text: str) -> str:
    """Wait for an event of ``kind`` in endpoint ``name``'s log whose detail has ``text``."""
    deadline = time.monotonic() + WAIT
    while True:
        for event in server.registry.get(name).log.since(0):
            if event.kind == kind and text in event.detail:
                return event.detail
        if time.monotonic() > deadline:
            rows = [(e.kind, e.detail) for e in server.registry.get(name).log.since(0)]
            raise AssertionError(f"no {kind} event with {text!r} in {name}'s log: {rows}")
        await asyncio.sleep(0.02)


# --- the project, served in this process ------------------------------------------------------


async def test_the_platform_test_project_replies_with_what_onmessage_returns(
    served: Server, project: Path
) -> None:
    loaded = {item.descriptor.endpoint: item for item in load_project(project, run_handlers=False)}
    assert loaded["test"].handler_path == project / "websockets" / "test-handler.js"
    assert loaded["test"].handlers.defined == ["open", "message", "error", "close"]
    async with websockets.connect(served.url("test")) as ws:
        await ws.send("hi")
        assert await recv(ws) == GREETING.format("hi")
        await ws.send("again")
        assert await recv(ws) == GREETING.format("again")
        (client,) = served.registry.get("test").clients
    # console.log / console.warn are stdout / stderr rows of the endpoint's log
    assert await logged(served, "test", "stdout", f"test: {client} said hi")
    assert await logged(served, "test", "stdout", "test: a client connected (onopen)")
    assert await logged(served, "test", "stderr", "test: a client went away")


async def test_a_commonjs_handler_named_without_its_extension(
    served: Server, project: Path
) -> None:
    (item,) = [i for i in load_project(project) if i.descriptor.endpoint == "my-endpoint"]
    item.handlers.release()
    assert item.descriptor.handler == "test-project/ws-handler"
    assert item.handler_path == project / "ws-handler.js"
    async with websockets.connect(served.url("my-endpoint")) as ws:
        (client,) = served.registry.get("my-endpoint").clients
        for counter, text in enumerate(["one", "two"], start=1):
            await ws.send(text)
            assert json.loads(await recv(ws)) == {
                "counter": counter,  # module state lives on between messages
                "echo": text,
                "from": client,  # onMessage(message, from): the client's id
                "method": "onmessage",  # require("net/v4/websockets"): the event context
                "message": text,
            }
    assert await logged(served, "my-endpoint", "stdout", "my-endpoint: closed after 2 messages")


async def test_the_chat_broadcasts_to_the_clients_getclients_lists(served: Server) -> None:
    async with (
        websockets.connect(served.url("chat")) as a,
        websockets.connect(served.url("chat")) as b,
        websockets.connect(served.url("chat")) as c,
        websockets.connect(served.url("test")),  # another endpoint's client, not a member
    ):
        chat = served.registry.get("chat")
        ids = sorted(chat.clients)
        assert len(ids) == 3
        assert await recv(c) == f"* {ids[2]} joined (3 here)"
        await b.send("hello all")
        for ws in (a, b, c):
            while (text := await recv(ws)).startswith("*"):
                continue
            assert text == f"{ids[1]}: hello all"
        await a.send("/who")
        assert json.loads(await recv(a)) == ids
        await c.close()
        await logged(served, "chat", "stdout", f"chat: {ids[2]} left")
        await a.send("/who")
        assert json.loads(await recv(a)) == ids[:2]


async def test_a_javascript_error_names_the_file_and_line_and_reaches_onerror(
    served: Server, project: Path
) -> None:
    async with websockets.connect(served.url("checks")) as ws:
        await ws.send("throw left")
        text = "RangeError: no such thing: left"
        # onError(error) gets the error's text; getMethod()/getError() say the same
        assert await recv(ws) == f"error seen: {text} | onerror | {text}"
        await ws.send("after")
        assert await recv(ws) == "checked after"
    error = await logged(served, "checks", "error", "RangeError")
    assert error == f"on_message raised JavaScriptError: {project / CHECKS_THROW}: left"
    assert await logged(served, "checks", "stderr", f"Error: {text}")


async def test_an_endless_loop_is_stopped_and_the_connection_goes_on(
    served: Server, project: Path
) -> None:
    async with (
        websockets.connect(served.url("checks")) as ws,
        websockets.connect(served.url("test")) as other,
    ):
        started = time.monotonic()
        await ws.send("spin")
        reply = await recv(ws)
        took = time.monotonic() - started
        assert reply.startswith(
            "error seen: onMessage was stopped: it ran over the time limit of 0.5 s"
        )
        assert LIMIT <= took < LIMIT + 3
        error = await logged(served, "checks", "error", "stopped")
        assert error.startswith(f"on_message raised JavaScriptError: {project / CHECKS_HANDLER}")
        await ws.send("still there?")  # the same connection, the same V8 context
        assert await recv(ws) == "checked still there?"
        await other.send("and you?")
        assert await recv(other) == GREETING.format("and you?")


async def test_the_websockets_module_of_sdk_net(served: Server) -> None:
    async with websockets.connect(served.url("checks")) as ws:
        (me,) = served.registry.get("checks").clients
        await ws.send("context")
        assert (
            await recv(ws) == 'method="onmessage" message="context" flags=[false,true,false,false]'
        )
        await ws.send("clients")
        assert await recv(ws) == "sent through getClient"  # getClient(id).send, before the reply
        assert await recv(ws) == f'ids=["{me}"] byHandler="test-project/websockets/checks"'
        await ws.send("outbound")  # no handler module
        assert await recv(ws) == (
            "refused: websockets.createWebsocket(uri, handler): the handler module is missing "
            "(a path such as my-project/client-handler.js)"
        )
        await ws.send("object")  # an object returned is sent as JSON
        assert json.loads(await recv(ws)) == {"from": me, "size": 6}
        await ws.send(b"\x01\x02\x03")  # binary in: a Uint8Array; a Uint8Array back: binary
        assert await recv(ws) == b"\x03\x02\x01"


@pytest.mark.slow
async def test_create_websocket_opens_a_connection_its_handler_module_handles(
    served: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """codbex's ``createWebsocket(uri, handler)``: the handler module (a workspace path, no
    extension) handles the outbound connection's events; what is sent on the client returned
    goes out once it is open; getClients() and getClientByHandler() include the connection."""
    monkeypatch.setattr(api, "_server", served)  # the server a notebook or `serve` would have
    feed = Feed()
    try:
        async with websockets.connect(served.url("checks")) as ws:
            await ws.send(f"outbound {feed.uri()}")
            assert await recv(ws) == f"created feed-handler-1 to {feed.uri()}"
            deadline = time.monotonic() + WAIT
            while sorted(feed.received[:2]) != ["feed-handler got hello", "hi from checks"]:
                assert time.monotonic() < deadline, feed.received
                await asyncio.sleep(0.05)
            await ws.send("feed client")
            handler = "test-project/websockets/feed-handler"
            assert await recv(ws) == f"{handler} feed-handler-1 true"
            said = await logged(served, "feed-handler-1", "stdout", "feed said hello")
            assert said == "feed said hello"
            assert served.registry.get("feed-handler-1").direction == "out"
    finally:
        with contextlib.suppress(Exception):
            served.registry.get("feed-handler-1").close_all()
        feed.stop()


async def test_create_websocket_names_a_missing_handler_module(
    served: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "_server", served)
    async with websockets.connect(served.url("test")) as ws:
        await ws.send("warm up")
        await recv(ws)
    handlers = javascript.from_source(
        'import { websockets } from "sdk/net";\n'
        "export function onMessage(message) {\n"
        "    websockets.createWebsocket('ws://127.0.0.1:9/x', 'no-such-project/handler');\n"
        "}\n",
        "creator.js",
    )
    try:
        served.registry.mount(Descriptor.new("creator", handler="creator.js"), handlers)
        async with websockets.connect(served.url("creator")) as ws:
            await ws.send("go")
            error = await logged(served, "creator", "error", "createWebsocket")
        assert "handler 'no-such-project/handler' not found" in error, error
    finally:
        handlers.release()


async def test_pipelined_messages_are_answered_in_order(served: Server) -> None:
    async with (
        websockets.connect(served.url("test")) as a,
        websockets.connect(served.url("my-endpoint")) as b,
    ):
        # Mixed with text beyond ASCII and beyond the BMP, each part's own length in a batch.
        messages = [f"{n} \u00e9\U0001f600\n" if n % 3 else str(n) for n in range(200)]
        for n, message in enumerate(messages):
            await a.send(message)
            await b.send(str(n))
        assert [await recv(a) for _ in range(200)] == [GREETING.format(m) for m in messages]
        counters = [json.loads(await recv(b))["counter"] for _ in range(200)]
        assert counters == list(range(1, 201))


# --- loading: module styles, errors, limits ------------------------------------------------------


def test_module_forms_and_async_handlers(tmp_path: Path) -> None:
    (tmp_path / "lib.mjs").write_text(
        "export const prefix = '>';\nexport function onClose() {}\n", "utf-8"
    )
    (tmp_path / "data.json").write_text('{"greeting": "hey"}', "utf-8")
    (tmp_path / "main.js").write_text(
        "import { prefix } from './lib.mjs';\n"
        "import data from './data.json';\n"
        "export * from './lib.mjs';\n"
        "function reply(message) { return prefix + data.greeting + ' ' + message; }\n"
        "export { reply as onMessage };\n"
        "export default { ignored: true };\n",
        "utf-8",
    )
    handlers = Handlers.from_file(tmp_path / "main.js")
    assert handlers.defined == ["message", "close"]
    assert handlers.on_message("you", "c1") == ">hey you"  # no server: the reply is returned
    assert set(handlers.local_files) == {tmp_path / "lib.mjs", tmp_path / "data.json"}
    handlers.release()

    cell = javascript.from_source(
        "export default {\n  async onMessage(message) {\n    await null;\n"
        "    return message.toUpperCase();\n  },\n};\n",
        "cell.js",
    )
    assert cell.on_message("later", "c1") == "LATER"
    cell.release()

    commonjs = javascript.from_source(
        "module.exports = { onOpen() { console.log('open'); }, onMessage: (m) => m + m };",
        "cjs.cjs",
    )
    assert commonjs.defined == ["open", "message"]
    assert commonjs.on_message("ab", "c1") == "abab"
    commonjs.release()


@pytest.mark.slow
def test_load_errors_name_the_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WS_NOTEBOOK_JS_TIME_LIMIT", "1")
    tmp_path = tmp_path / "a folder"  # V8's names for files end at a space: it must not matter
    tmp_path.mkdir()

    def problem(name: str, source: str) -> str:
        path = tmp_path / name
        path.write_text(source, "utf-8")
        with pytest.raises(HandlerError) as caught:
            Handlers.from_file(path)
        return str(caught.value)

    path = tmp_path / "syntax.js"
    assert problem("syntax.js", "export function onMessage(m) {\n  return m +;\n}\n") == (
        f"{path}:2: SyntaxError: Unexpected token ';'"
    )
    path = tmp_path / "throws.js"
    assert problem("throws.js", "const x = 1;\n\nnull.boom;\n") == (
        f"{path}:3:6: TypeError: Cannot read properties of null (reading 'boom')"
    )
    path = tmp_path / "imports.js"
    assert problem("imports.js", "\nimport { query } from 'sdk/db';\n") == (
        f"{path}:2: cannot import 'sdk/db': handlers here can import sdk/net (websockets) and "
        "the modules beside them (./name.js)"
    )
    path = tmp_path / "both.js"
    assert problem("both.js", "exports.onOpen = () => 1;\nexports.on_open = () => 2;\n") == (
        f"{path}: both onOpen and on_open are exported; keep one of them"
    )
    path = tmp_path / "loops.js"
    started = time.monotonic()
    assert problem("loops.js", "while (true) {}\n") == (
        f"{path}: loading it was stopped: it ran over the time limit of 1 s "
        "(WS_NOTEBOOK_JS_TIME_LIMIT)"
    )
    assert 1 <= time.monotonic() - started < 4
    path = tmp_path / "typed.ts"
    message = problem("typed.ts", "export function onMessage(m: string): string { return m }\n")
    assert message.startswith(f"{path}: TypeScript handlers are not supported yet")
    assert "npx tsc" in message and "typed.js" in message


def test_validate_reads_a_module_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "h.js"
    path.write_text(
        "throw new Error('never run');\nexport function onMesage(m) {}\n"
        "export const onClose = () => {};\n",
        "utf-8",
    )
    checked = Handlers.from_file(path, run=False)
    assert checked.defined == ["close"]
    assert checked.warnings == ("'onMesage' looks like a handler name; did you mean 'onMessage'?",)
    assert checked.on_close is None


@pytest.mark.slow
def test_the_memory_limit_stops_a_handler_and_the_module_goes_on() -> None:
    handlers = javascript.from_source(
        "let kept = [];\nexport function onMessage(m) {\n"
        "  if (m === 'grow') { while (true) kept.push(new Array(100000).fill(m)); }\n"
        "  kept = [];\n  return 'ok ' + m;\n}\n",
        "greedy.js",
        memory_limit=64 * 1024 * 1024,
    )
    with pytest.raises(javascript.JavaScriptError) as caught:
        handlers.on_message("grow", "c1")
    assert str(caught.value) == (
        "greedy.js:2: onMessage was stopped: it went over the memory limit of 64 MiB "
        "(WS_NOTEBOOK_JS_MEMORY_LIMIT); the module was loaded afresh, its state is lost"
    )
    assert handlers.on_message("small", "c1") == "ok small"
    assert handlers.on_message("again", "c1") == "ok again"
    handlers.release()


def test_handlers_made_off_the_loop_run_on_any_thread_and_are_freed() -> None:
    from py_mini_racer._context import context_count

    before = context_count()
    made: list[Handlers] = []
    thread = threading.Thread(
        target=lambda: made.append(
            javascript.from_source("export const onMessage = (m, from) => m + '@' + from;", "t.js")
        )
    )
    thread.start()
    thread.join()
    (handlers,) = made
    assert context_count() == before + 1
    assert handlers.on_message("plain", "c1") == "plain@c1"

    async def on_a_loop() -> str:
        return handlers.on_message("loop", "c2")

    assert asyncio.run(on_a_loop()) == "loop@c2"
    results: list[str] = []
    other = threading.Thread(target=lambda: results.append(asyncio.run(on_a_loop())))
    other.start()
    other.join()
    assert results == ["loop@c2"]
    handlers.release()
    assert context_count() == before
    with pytest.raises(RuntimeError, match="unloaded"):
        handlers.on_message("gone", "c1")


THREAD_STATES = """
import ctypes
from ws_notebook import javascript

api = ctypes.pythonapi
head = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(("PyInterpreterState_ThreadHead", api))
after = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(("PyThreadState_Next", api))
interpreter = ctypes.PYFUNCTYPE(ctypes.c_void_p)(("PyInterpreterState_Get", api))

def thread_states():
    count, state = 0, head(interpreter())
    while state:
        count, state = count + 1, after(state)
    return count

before = thread_states()
source = "export const onMessage = (m) => m;"
modules = [javascript.from_source(source, f"m{n}.js") for n in range(3)]
assert [m.on_message("hi", "c1") for m in modules] == ["hi"] * 3
during = thread_states()
for m in modules:
    m.release()
print(before, during, thread_states())
"""


def test_v8_threads_keep_a_python_thread_state_until_the_module_is_released() -> None:
    """V8's thread calls back into Python with each result: it keeps the Python thread state it
    made (making one per call cost about half a call), and gives it back when the module is
    released. Counted in a process of its own, where no other thread comes or goes."""
    done = subprocess.run(
        [sys.executable, "-c", THREAD_STATES], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    before, during, after = map(int, done.stdout.split())
    assert (during, after) == (before + 3, before)


FOLLOWS_THE_CALLER = """
import json
import os
from ws_notebook import javascript

def allowed(thread):
    with open(f"/proc/self/task/{thread}/status") as status:
        line = next(line for line in status if line.startswith("Cpus_allowed_list:"))
    return line.split()[1]

cpus = sorted(os.sched_getaffinity(0))
before = set(os.listdir("/proc/self/task"))
module = javascript.from_source("export const onMessage = (m) => m;", "m.js")
(v8,) = set(os.listdir("/proc/self/task")) - before
seen = []
for cpu in (cpus[-1], cpus[0]):
    os.sched_setaffinity(0, {cpu})  # this thread, the caller, runs there now
    assert module.on_message("hi", "c1") == "hi"
    seen.append((cpu, int(allowed(v8))))
module.release()
print(json.dumps(seen))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="Linux, with two CPUs or more",
)
@pytest.mark.slow
def test_v8s_thread_runs_on_the_cpu_of_the_thread_that_calls_it() -> None:
    """So that a call is a hand-over within one CPU (see ``_Context``). In a process of its
    own, whose main thread is moved from one CPU to another between two calls."""
    done = subprocess.run(
        [sys.executable, "-c", FOLLOWS_THE_CALLER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert [cpu for cpu, _ in seen] == [v8 for _, v8 in seen] and seen[0][0] != seen[1][0]


def test_handler_paths_js_beside_and_missing(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "ws").mkdir(parents=True)
    (project / "ws" / "h.js").write_text("exports.onMessage = (m) => m;\n", "utf-8")
    file = project / "ws" / "e.websocket"

    def resolve(handler: str) -> Path:
        return resolve_handler(Descriptor.new("e", handler=handler), file, project)

    assert resolve("proj/ws/h") == project / "ws" / "h.js"
    with pytest.raises(HandlerError) as caught:
        resolve("proj/ws/gone.js")
    message = str(caught.value)
    assert message.startswith(f"{file}: handler: 'proj/ws/gone.js' does not exist (looked for ")
    assert f"{project / 'ws' / 'gone.js'})" in message
    with pytest.raises(HandlerError) as caught:
        resolve("proj/ws/nope")
    assert str(caught.value).endswith(", and for each with .js, .mjs, .cjs and .ts instead of .py)")
    (project / "ws" / "broken.websocket").write_text(
        json.dumps({"endpoint": "broken", "handler": "proj/ws/missing.js"}), "utf-8"
    )
    with pytest.raises(ProjectError) as caught:
        load_project(project)
    assert "handler: 'proj/ws/missing.js' does not exist" in str(caught.value)


# --- ws-notebook serve, with the websockets library, Node's ws and Chromium -----------------------


class Served:
    """``ws-notebook serve`` on a copy of the project; stderr collected line by line."""

    def __init__(self, folder: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ws_notebook", "serve", str(folder), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**__import__("os").environ, "WS_NOTEBOOK_JS_TIME_LIMIT": str(LIMIT)},
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = int(self.wait_for(r"at ws://127\.0\.0\.1:(\d+)/").group(1))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, after: int = 0) -> re.Match:
        compiled = re.compile(pattern)
        deadline = time.monotonic() + 30
        while True:
            for line in self.lines[after:]:
                if found := compiled.search(line):
                    return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in:\n" + "\n".join(self.lines))
            time.sleep(0.02)

    def url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.port}/websockets/service/{name}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.reader.join(5)


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("served") / "test-project"
    shutil.copytree(PROJECT, folder)
    served = Served(folder)
    yield served
    served.stop()


@pytest.mark.slow
def test_serve_runs_the_project_and_prints_console_output_and_errors(serving: Served) -> None:
    serving.wait_for(r"serving 4 endpoints from ")
    mark = len(serving.lines)
    with connect_sync(serving.url("test")) as ws:
        ws.send("from python")
        assert ws.recv(timeout=WAIT) == GREETING.format("from python")
    client = serving.wait_for(r" test (c\d+) stdout test: \1 said from python", mark).group(1)
    serving.wait_for(rf" test {client} stdout test: a client connected \(onopen\)", mark)
    serving.wait_for(rf" test {client} stderr test: a client went away", mark)
    with connect_sync(serving.url("checks")) as ws:
        ws.send("throw there")
        assert ws.recv(timeout=WAIT).startswith("error seen: RangeError: no such thing: there")
        ws.send("spin")
        assert "time limit of 0.5 s" in ws.recv(timeout=WAIT)
        ws.send("still?")
        assert ws.recv(timeout=WAIT) == "checked still?"
    line = serving.wait_for(r" checks c\d+ error on_message raised JavaScriptError: (.*)", mark)
    assert line.group(1).endswith(f"{CHECKS_THROW}: there")
    serving.wait_for(rf" checks c\d+ error .*{re.escape(CHECKS_HANDLER)}", mark)
    serving.wait_for(r" checks c\d+ stderr Error: RangeError: no such thing: there", mark)


NODE_CLIENT = """
const WebSocket = require("ws");
const [test, chat] = process.argv.slice(2);
setTimeout(() => { console.error("timed out"); process.exit(2); }, 10000);
const ws = new WebSocket(test);
ws.on("error", (error) => { console.error(error.message); process.exit(1); });
ws.on("open", () => ws.send("from node"));
ws.on("message", (data) => {
  console.log("test: " + data);
  ws.close();
  const room = new WebSocket(chat);
  room.on("message", (text) => {
    text = String(text);
    console.log("chat: " + text);
    if (text.startsWith("*")) room.send("hello from node");
    else { room.close(); process.exit(0); }
  });
});
"""


@pytest.fixture(scope="module")
def node_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with Node's ``ws`` package installed (npm), and the client script."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm and node are needed to check with Node's ws client")
    folder = tmp_path_factory.mktemp("node-ws")
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", "ws@8"],
        cwd=folder,
        check=True,
        timeout=180,
        capture_output=True,
    )
    (folder / "client.js").write_text(NODE_CLIENT, "utf-8")
    return folder


@pytest.mark.slow
def test_node_ws_clients_talk_to_the_served_project(serving: Served, node_ws: Path) -> None:
    with connect_sync(serving.url("chat")) as member:
        assert member.recv(timeout=WAIT).startswith("* ")  # its own arrival
        done = subprocess.run(
            ["node", str(node_ws / "client.js"), serving.url("test"), serving.url("chat")],
            cwd=node_ws,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "test: " + GREETING.format("from node")
        node = re.fullmatch(r"chat: \* (c\d+) joined \(2 here\)", lines[1]).group(1)
        assert lines[2] == f"chat: {node}: hello from node"
        # the Python member heard the Node member: getClients() listed both
        assert member.recv(timeout=WAIT) == f"* {node} joined (2 here)"
        assert member.recv(timeout=WAIT) == f"{node}: hello from node"


PAGE = b"""<!doctype html><title>js handlers</title><script>
window.events = [];
window.talk = (url, name, message) => {
  const ws = new WebSocket(url);
  ws.onopen = () => ws.send(message);
  ws.onmessage = (e) => events.push([name, e.data]);
  window[name] = ws;
};
</script>"""


@pytest.mark.browser
@needs_chromium
def test_chromium_talks_to_the_served_project(serving: Served) -> None:
    with loopback_page(PAGE) as page_url, chromium_page() as page:
        page.goto(page_url)
        page.evaluate("url => talk(url, 'test', 'from chromium')", serving.url("test"))
        page.evaluate("url => talk(url, 'checks', 'context')", serving.url("checks"))
        page.wait_for_function("events.length == 2", timeout=WAIT * 1000)
        assert sorted(page.evaluate("events")) == [
            ["checks", 'method="onmessage" message="context" flags=[false,true,false,false]'],
            ["test", GREETING.format("from chromium")],
        ]


# --- a real kernel ------------------------------------------------------------------------------


@pytest.mark.slow
def test_websocket_load_of_the_js_project_in_a_kernel(fresh: Kernel, project: Path) -> None:
    out = fresh.run(f"%websocket load {project}").stdout
    for name in ("test", "my-endpoint", "chat", "checks"):
        assert f"{name}: serving at ws://" in out
    url = fresh.value("ws_notebook.url('test')")
    with connect_sync(url) as ws:
        ws.send("from a kernel")
        assert ws.recv(timeout=WAIT) == GREETING.format("from a kernel")
    deadline = time.monotonic() + WAIT
    while True:
        events = json.loads(fresh.value("json.dumps(ws_notebook.events('test'))"))
        rows = [(e["kind"], e["detail"]) for e in events if e["kind"] in ("stdout", "stderr")]
        if any(kind == "stderr" and "went away" in text for kind, text in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
    said = [text for kind, text in rows if kind == "stdout" and "said" in text]
    assert len(said) == 1 and said[0].endswith(" said from a kernel")
