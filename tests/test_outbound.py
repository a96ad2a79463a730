"""Outbound connections (``ws_notebook.connect``, ``%%websocket NAME --connect URI``): a real
kernel connecting to real servers on loopback, a ``websockets`` server on a thread of the test
process or a ws_notebook endpoint of the kernel itself."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import nbformat
import pytest
import trustme
import websockets
from nbclient import NotebookClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

import ws_notebook
from ws_notebook import Descriptor, DescriptorError, Reconnect
from ws_notebook.outbound import default_name, shown

from .kernels import Kernel, start_kernel
from .test_cli import Served

WAIT = 15.0
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "outbound-feed.ipynb"
# What the notebook prints whichever feed it explores (tests/test_notebooks.py checks it too).
EXPECTED_IN_NOTEBOOK = [
    "first message: hello",
    'echo:{"subscribe": "ticks"}',
    "echo:ping from the notebook",
    "handlers updated in place",
    "feed: closed",
]


class Feed:
    """A ``websockets`` server on a thread: says "hello", answers "echo:MESSAGE", and keeps
    what it received and the close codes its connections ended with."""

    def __init__(
        self, port: int = 0, ssl_context: ssl.SSLContext | None = None, reject: bool = False
    ) -> None:
        self.received: list[str | bytes] = []
        self.close_codes: list[int | None] = []
        self.connections: list[ServerConnection] = []
        self.requests: list[dict[str, str]] = []
        self.server = serve(
            self._handle,
            "127.0.0.1",
            port,
            ssl=ssl_context,
            process_request=self._refuse if reject else self._note,
        )
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _refuse(self, connection: ServerConnection, request: Any) -> Any:
        return connection.respond(HTTPStatus.FORBIDDEN, "no entry for you\n")

    def _note(self, connection: ServerConnection, request: Any) -> None:
        self.requests.append(dict(request.headers.raw_items()))

    def _handle(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        connection.send("hello")
        try:
            for message in connection:
                self.received.append(message)
                connection.send(f"echo:{message}")
        except ConnectionClosed:
            pass
        self.close_codes.append(connection.close_code)

    def uri(self, path: str = "/feed") -> str:
        scheme = "ws" if self.server.socket.__class__ is not ssl.SSLSocket else "wss"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Stop listening; the library closes every connection with 1001 (going away)."""
        self.server.shutdown()
        self.thread.join(timeout=WAIT)


@pytest.fixture
def feed() -> Iterator[Feed]:
    started = Feed()
    yield started
    started.stop()


def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s (last: {found!r})")
        time.sleep(0.05)


def value(kernel: Kernel, expression: str) -> Any:
    """A JSON-able expression's value in the kernel."""
    return json.loads(kernel.value(f"json.dumps({expression}, default=str)"))


# The cell's handlers keep their state in a namespace of their own.
SEEN = "ws_notebook.endpoint('feed').handlers.namespace['seen']"


def kinds(kernel: Kernel, name: str) -> list[str]:
    return [e["kind"] for e in value(kernel, f"ws_notebook.events({name!r})")]


def define(kernel: Kernel, cell: str, check: bool = True) -> str:
    reply = kernel.run(textwrap.dedent(cell), check=check)
    return reply.stdout + reply.stderr


RECORDER = """\
%%websocket feed --connect {uri} --no-panel
seen = []
def on_open(client):
    seen.append(("open", client.id))
    client.send("hi from the kernel")
def on_message(message, client):
    seen.append(message)
    if message == "hello":
        return "a reply"
def on_close(client):
    seen.append(("close", client.close_code))
"""


# --- in a kernel: a websockets server -------------------------------------------------------


def test_cell_connects_events_in_order_and_replies_go_back(fresh: Kernel, feed: Feed) -> None:
    out = define(fresh, RECORDER.format(uri=feed.uri()))
    assert f"feed: connecting to {feed.uri()} (handlers: open, message, close)" in out
    until(lambda: len(feed.received) == 2, "open send and reply")
    assert feed.received == ["hi from the kernel", "a reply"]  # on_open's, then the return
    until(lambda: len(value(fresh, SEEN)) == 4, "echoes")
    seen = value(fresh, SEEN)
    client_id = seen[0][1]
    assert seen == [["open", client_id], "hello", "echo:hi from the kernel", "echo:a reply"]
    assert kinds(fresh, "feed") == ["open", "out", "in", "out", "in", "in"]

    # the kernel sends whenever it likes: on the connection, or to the client by its id
    fresh.run("ws_notebook.endpoint('feed').outbound.send({'n': 1})")
    fresh.run(f"ws_notebook.client({client_id!r}).send(b'\\x00raw')")
    until(lambda: len(feed.received) == 4, "sends from cells")
    assert feed.received[2:] == ['{"n": 1}', b"\x00raw"]

    listed = fresh.run("%websocket list").text
    assert "out" in listed and f"{feed.uri()} (open)" in listed
    clients = fresh.run("%websocket clients").text
    assert client_id in clients and f"out to {feed.uri()}" in clients
    assert value(fresh, "[c.id for c in ws_notebook.clients()]") == [client_id]
    assert value(fresh, "ws_notebook.endpoint('feed').messages_in") == 5  # hello + 4 echoes
    assert value(fresh, "ws_notebook.endpoint('feed').direction") == "out"


def test_redefining_the_cell_swaps_handlers_and_keeps_the_connection(
    fresh: Kernel, feed: Feed
) -> None:
    define(fresh, RECORDER.format(uri=feed.uri()))
    until(lambda: len(feed.received) == 2, "the first handlers' sends")
    first = value(fresh, "ws_notebook.endpoint('feed').outbound.client.id")
    out = define(
        fresh,
        f"""\
        %%websocket feed --connect {feed.uri()} --no-panel
        seen = []
        def on_message(message, client):
            seen.append(message)
            return "v2:" + message
        """,
    )
    assert "feed: handlers updated in place (message); the connection to" in out
    assert "is kept (open)" in out
    assert "kept the values of seen" in out  # an unchanged assignment keeps its value
    fresh.run("ws_notebook.endpoint('feed').outbound.send('again')")
    until(lambda: "v2:echo:again" in feed.received, "the new handler's reply")
    assert len(feed.connections) == 1 and feed.close_codes == []  # never dropped
    assert value(fresh, "ws_notebook.endpoint('feed').outbound.client.id") == first


@pytest.mark.slow
def test_reconnects_after_the_server_restarts_with_backoff_shown(fresh: Kernel) -> None:
    feed = Feed()
    port = feed.port
    try:
        out = define(fresh, RECORDER.format(uri=feed.uri()).replace("--no-panel", "--reconnect"))
        assert "connecting to" in out
        until(lambda: len(feed.received) == 2, "the first connection")
        feed.stop()
        states = []

        def reconnecting() -> bool:
            states.append(value(fresh, "ws_notebook.endpoint('feed').outbound.state"))
            return states[-1].startswith("reconnecting in")

        until(reconnecting, "a reconnecting state")
        assert any(s.startswith("reconnecting in") and ", attempt " in s for s in states)
        headers = "[(p.refresh(), p.header.value)[1] for p in ws_notebook.widgets.panels()]"
        until(
            lambda: any("(outbound: reconnecting in " in h for h in value(fresh, headers)),
            "the panel showing the backoff",
        )
        listed = fresh.run("%websocket list").text
        assert "(reconnecting in " in listed or "(connecting)" in listed
        feed = Feed(port)  # the same address, as a restarted server has
        until(lambda: len(feed.received) == 2, "the connection opened again", timeout=30)
        seen = value(fresh, SEEN)
        closed = [item for item in seen if isinstance(item, list) and item[0] == "close"]
        assert closed == [["close", 1001]]  # the server going away, seen by on_close
        opened = [item[1] for item in seen if isinstance(item, list) and item[0] == "open"]
        assert len(opened) == 2 and opened[0] != opened[1]  # each connection a new client
        assert value(fresh, "ws_notebook.endpoint('feed').outbound.state") == "open"
        assert value(fresh, "ws_notebook.endpoint('feed').connections") == 2
    finally:
        fresh.run("ws_notebook.reset()")
        feed.stop()


@pytest.mark.slow
def test_stop_reset_and_unload_close_with_1001_and_leave_no_task(fresh: Kernel, feed: Feed) -> None:
    tasks = "[t.get_name() for t in asyncio.all_tasks() if 'outbound' in t.get_name()]"
    fresh.run("import asyncio")
    for ending in ("ws_notebook.stop()", "ws_notebook.reset()", "%websocket stop feed"):
        count = len(feed.close_codes)
        define(fresh, RECORDER.format(uri=feed.uri()).replace("--connect", "--reconnect --connect"))
        until(lambda: value(fresh, "ws_notebook.endpoint('feed').outbound.state") == "open", "open")
        fresh.run(ending)
        until(lambda n=count + 1: len(feed.close_codes) == n, f"the close after {ending}")
        assert feed.close_codes[-1] == 1001
        until(lambda: value(fresh, tasks) == [], f"no outbound task after {ending}")
        time.sleep(1.5)  # longer than the first reconnection delay: it does not come back
        assert len(feed.connections) == count + 1
        fresh.run("ws_notebook.reset()")


@pytest.mark.slow
@pytest.mark.kernel
def test_kernel_shutdown_and_unload_close_with_1001(feed: Feed) -> None:
    for ending in ("%unload_ext ws_notebook", None):  # None: the kernel is shut down
        kernel = start_kernel()
        try:
            kernel.run("%load_ext ws_notebook\nimport ws_notebook")
            kernel.run(f"c = ws_notebook.connect({feed.uri()!r}, {{}}, name='f')")
            kernel.run("await c.wait_open()")
            count = len(feed.close_codes)
            if ending is not None:
                kernel.run(ending)
            else:
                kernel.manager.shutdown_kernel(now=False)  # a shutdown request, as Jupyter's
            until(lambda n=count + 1: len(feed.close_codes) == n, f"the close ({ending})")
            assert feed.close_codes[-1] == 1001
        finally:
            if kernel.manager.is_alive():
                kernel.stop()


def test_javascript_cell_drives_an_outbound_connection(fresh: Kernel, feed: Feed) -> None:
    out = define(
        fresh,
        f"""\
        %%websocket jsfeed --connect {feed.uri()} --js --no-panel
        import {{ websockets }} from "sdk/net";
        export function onOpen(from) {{ websockets.getClient(from).send("js says hi"); }}
        export function onMessage(message) {{ return "js:" + message; }}
        """,
    )
    assert f"jsfeed: connecting to {feed.uri()}" in out
    until(lambda: "js:hello" in feed.received, "the JavaScript handler's reply")
    assert feed.received[:2] == ["js says hi", "js:hello"]
    assert "error" not in kinds(fresh, "jsfeed")


def test_connect_from_python_to_an_endpoint_of_the_same_kernel(fresh: Kernel) -> None:
    define(
        fresh,
        """\
        %%websocket echo --no-panel
        def on_message(message, client):
            return "served:" + message
        """,
    )
    fresh.run(
        "got = []\n"
        "probe = ws_notebook.create_websocket(ws_notebook.url('echo'), "
        "{'onOpen': lambda client: client.send('ping'), 'onMessage': lambda m: got.append(m)}, "
        "name='probe')\n"
        "client = await probe.wait_open()"
    )
    until(lambda: value(fresh, "got") == ["served:ping"], "the served endpoint's reply")
    listed = value(
        fresh, "sorted((c.endpoint, getattr(c, 'direction', 'in')) for c in ws_notebook.clients())"
    )
    assert listed == [["echo", "in"], ["probe", "out"]]  # both ends, one registry
    assert kinds(fresh, "echo") == ["open", "in", "out"]
    assert kinds(fresh, "probe") == ["open", "out", "in"]
    assert value(fresh, "ws_notebook.client_by_handler('python:dict').id") == value(
        fresh, "client.id"
    )


def test_an_outbound_name_is_not_served(fresh: Kernel) -> None:
    """A client asking this server for an outbound connection's name gets a 404 saying what
    that name is, not a served endpoint with the outbound handlers."""
    define(
        fresh, "%%websocket echo --no-panel\ndef on_message(message, client):\n    return message\n"
    )
    fresh.run(
        "probe = ws_notebook.connect(ws_notebook.url('echo'), {'on_message': print}, name='probe')\n"
        "await probe.wait_open()\n"
        "wrong = ws_notebook.url('echo').replace('/echo', '/probe')"
    )
    wrong = value(fresh, "wrong")

    async def attempt() -> websockets.exceptions.InvalidStatus:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(wrong, open_timeout=WAIT):
                pass
        return refused.value

    refused = asyncio.run(attempt())
    assert refused.response.status_code == 404
    assert b"'probe' here is an outbound connection" in refused.response.body


def test_headers_and_subprotocols_are_sent(fresh: Kernel) -> None:
    feed = Feed()
    try:
        fresh.run(
            f"c = ws_notebook.connect({feed.uri()!r}, {{}}, name='h', "
            "headers={'X-Api-Key': 'k1'}, ping_interval=5)\n"
            "await c.wait_open()"
        )
        assert feed.requests[0]["X-Api-Key"] == "k1"
    finally:
        fresh.run("ws_notebook.reset()")
        feed.stop()


# --- in a kernel: each failure, named ---------------------------------------------------------


def failure(kernel: Kernel, uri: str, **options: str) -> tuple[str, str, str]:
    """Connect and wait for the failure: the error event, the state, and the cell's output."""
    extra = "".join(f", {name}={value}" for name, value in options.items())
    reply = kernel.run(
        "errors = []\n"
        f"c = ws_notebook.connect({uri!r}, {{'on_error': lambda e, client: errors.append(str(e))}}"
        f", name='bad'{extra})\n"
        "await asyncio.wait_for(c.wait_closed(), 20)"
    )
    events = value(kernel, "ws_notebook.events('bad')")
    assert [e["kind"] for e in events] == ["error"]
    assert value(kernel, "errors") == [value(kernel, "c.error")]  # on_error got the same text
    state = value(kernel, "c.state")
    kernel.run("ws_notebook.reset()")
    return events[0]["detail"], state, reply.stdout + reply.stderr


@pytest.fixture
def failing(fresh: Kernel) -> Kernel:
    fresh.run("import asyncio")
    return fresh


def test_refused_connection(failing: Kernel) -> None:
    with socket.socket() as bound:  # bound, never listening: connecting to it is refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        detail, state, shown_in_cell = failure(failing, f"ws://127.0.0.1:{port}/")
    text = f"connection refused by 127.0.0.1:{port} (is the server running?)"
    assert detail == f"connecting to ws://127.0.0.1:{port}/: {text}"
    assert state == f"failed: {text}"
    assert f"bad: {text}" in shown_in_cell  # one line, no traceback
    assert "Traceback" not in shown_in_cell


def test_dns_failure(failing: Kernel) -> None:
    detail, state, shown_in_cell = failure(failing, "ws://no-such-host.invalid/feed")
    assert "DNS failure: cannot resolve 'no-such-host.invalid'" in detail
    assert state.startswith("failed: DNS failure")
    assert "bad: DNS failure: cannot resolve 'no-such-host.invalid'" in shown_in_cell


def test_rejected_handshake_names_status_and_reason(failing: Kernel) -> None:
    feed = Feed(reject=True)
    try:
        detail, state, _ = failure(failing, feed.uri())
    finally:
        feed.stop()
    text = f"handshake rejected by 127.0.0.1:{feed.port}: HTTP 403 Forbidden: no entry for you"
    assert detail.endswith(text)
    assert state == f"failed: {text}"


def test_rejected_handshake_is_not_retried(failing: Kernel) -> None:
    feed = Feed(reject=True)
    try:
        _, state, _ = failure(failing, feed.uri(), reconnect="True")
    finally:
        feed.stop()
    assert state.startswith("failed: handshake rejected") and "HTTP 403" in state


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def tls_feed(ca: trustme.CA, host: str = "127.0.0.1") -> Feed:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    return Feed(ssl_context=context)


def test_tls_with_an_unknown_authority_names_the_certificate_problem(
    failing: Kernel, authority: tuple[trustme.CA, Path]
) -> None:
    feed = tls_feed(authority[0])
    try:
        detail, state, shown_in_cell = failure(failing, feed.uri())
    finally:
        feed.stop()
    assert "TLS failed: certificate problem with 127.0.0.1:" in detail
    assert "unable to get local issuer certificate; pass cafile= to trust a private CA" in detail
    assert state.startswith("failed: TLS failed: certificate problem")
    assert "bad: TLS failed: certificate problem" in shown_in_cell


def test_tls_with_a_certificate_for_another_host_names_it(
    failing: Kernel, authority: tuple[trustme.CA, Path]
) -> None:
    feed = tls_feed(authority[0], host="example.org")
    try:
        detail, _, _ = failure(failing, feed.uri(), cafile=repr(str(authority[1])))
    finally:
        feed.stop()
    assert "certificate problem with 127.0.0.1:" in detail
    assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in detail
    assert "cafile=" not in detail.split("'127.0.0.1'.")[-1]  # a cafile was given: no hint


def test_tls_with_the_given_cafile_connects(
    fresh: Kernel, authority: tuple[trustme.CA, Path]
) -> None:
    feed = tls_feed(authority[0])
    try:
        fresh.run(
            "got = []\n"
            f"c = ws_notebook.connect({feed.uri()!r}, {{'on_message': got.append}}, name='tls', "
            f"cafile={str(authority[1])!r})\n"
            "await c.wait_open()"
        )
        until(lambda: value(fresh, "got") == ["hello"], "a message over TLS")
    finally:
        fresh.run("ws_notebook.reset()")
        feed.stop()


# --- export, load, serve ------------------------------------------------------------------------


@pytest.mark.slow
def test_export_then_load_connects_again(fresh: Kernel, feed: Feed, tmp_path: Path) -> None:
    define(fresh, RECORDER.format(uri=feed.uri()))
    until(lambda: len(feed.received) == 2, "the first connection")
    out = fresh.run(f"%websocket export feed {tmp_path}").stdout
    assert f"wrote {tmp_path / 'feed.websocket'}" in out
    written = json.loads((tmp_path / "feed.websocket").read_text("utf-8"))
    assert written["uri"] == feed.uri() and written["endpoint"] == "feed"
    assert Descriptor.from_json(written).uri == feed.uri()  # the file reads back, uri and all
    fresh.run("ws_notebook.reset()")
    until(lambda: feed.close_codes == [1001], "the close on reset")
    out = fresh.run(f"%websocket load {tmp_path}").stdout
    assert f"feed: connecting to {feed.uri()}" in out
    until(lambda: len(feed.received) == 4, "the loaded handlers' sends")
    assert feed.received[2:] == ["hi from the kernel", "a reply"]
    assert value(fresh, "ws_notebook.endpoint('feed').direction") == "out"


@pytest.mark.slow
async def test_serve_opens_an_exported_outbound_descriptor(feed: Feed, tmp_path: Path) -> None:
    (tmp_path / "feed.py").write_text(
        "def on_open(client):\n    client.send('from serve')\n"
        "def on_message(message, client):\n    print('got', message)\n",
        "utf-8",
    )
    descriptor = {"handler": "feed.py", "endpoint": "feed", "uri": feed.uri()}
    (tmp_path / "feed.websocket").write_text(json.dumps(descriptor), "utf-8")
    served = Served([sys.executable, "-m", "ws_notebook", "serve", str(tmp_path), "--port", "0"])
    try:
        await served.wait_for(f"feed: connecting to {feed.uri()}")
        await served.wait_for(r"got echo:from serve")
        assert feed.received == ["from serve"]
        served.process.terminate()
        assert await served.exit_code() == 0
        await asyncio.to_thread(until, lambda: feed.close_codes, "the close")
        assert feed.close_codes == [1001]
    finally:
        served.kill()


# --- without a kernel: checks, the descriptor field ---------------------------------------------


def test_the_uri_field_is_an_extension_read_leniently_and_refused_strictly() -> None:
    data = {"endpoint": "feed", "handler": "feed.py", "uri": "wss://example.org/x"}
    read = Descriptor.from_json(data)
    assert read.uri == "wss://example.org/x" and read.warnings == ()
    assert read.to_json()["uri"] == "wss://example.org/x"
    with pytest.raises(DescriptorError) as strict:
        Descriptor.from_json(data, strict=True)
    assert strict.value.problems == [
        "uri: not in the strict schema (ws_notebook's extension for an outbound connection; "
        "read without --strict, it is kept)"
    ]
    with pytest.raises(DescriptorError) as bad:
        Descriptor.from_json({**data, "uri": "http://example.org"})
    assert bad.value.problems == ["uri: 'http://example.org' is not a ws:// or wss:// URI"]


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda: ws_notebook.connect("http://x/"), "uri: 'http://x/' is not a ws:// or wss://"),
        (lambda: ws_notebook.connect("ws:///feed"), "is not a ws:// or wss:// URI with a host"),
        (lambda: ws_notebook.connect("ws://h:99999/"), "uri: 'ws://h:99999/': Port out of range"),
        (lambda: ws_notebook.connect("ws://h/", cafile="/x.pem"), "cafile: given for ws://h/"),
        (lambda: ws_notebook.connect("wss://h/", cafile="/no/x.pem"), "cafile: /no/x.pem: "),
        (lambda: ws_notebook.connect("ws://h/", ping_interval=0), "ping_interval: 0 must be"),
        (lambda: ws_notebook.connect("ws://h/", reconnect=3), "reconnect: 3 is not True"),
        (lambda: Reconnect(initial=0), "reconnect initial: 0 must be a positive number"),
        (lambda: Reconnect(jitter=2), "reconnect jitter: 2 must be between 0 and 1"),
        (lambda: Reconnect(attempts=0), "reconnect attempts: 0 must be at least 1"),
    ],
)
async def test_bad_arguments_name_the_field(call: Callable[[], Any], problem: str) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        call()
    assert problem in str(caught.value)
    assert len(ws_notebook.endpoints()) == 0  # nothing was mounted


def test_connect_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        ws_notebook.connect("ws://127.0.0.1:1/")
    assert ws_notebook.endpoints() == []


async def test_an_outbound_name_may_not_take_a_served_endpoints() -> None:
    ws_notebook.serve("taken", {})
    try:
        with pytest.raises(ValueError, match="'taken' is an endpoint this kernel serves"):
            ws_notebook.connect("ws://127.0.0.1:1/", name="taken")
    finally:
        ws_notebook.reset()


def test_backoff_grows_to_the_maximum_with_jitter() -> None:
    policy = Reconnect(initial=1, maximum=8, factor=2, jitter=0.5)
    for attempt, full in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 10  # jittered, not all equal
    assert Reconnect(jitter=0).delay(3) == 4


def test_names_and_shown_uris_leave_credentials_out() -> None:
    assert (
        default_name("ws://feed.example.org:8765/v1/ticks?key=s")
        == "feed.example.org-8765-v1-ticks"
    )
    assert shown("wss://user:pw@example.org/feed?token=s") == "wss://example.org/feed"


# --- the notebook -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.kernel
def test_the_outbound_notebook_explores_a_local_feed(feed: Feed, monkeypatch: Any) -> None:
    monkeypatch.setenv("FEED_URI", feed.uri("/ticks"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": "."}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert f"feed: connecting to {feed.uri('/ticks')}" in text
    for expected in EXPECTED_IN_NOTEBOOK:
        assert expected in text
    assert feed.received == ['{"subscribe": "ticks"}', "ping from the notebook"]
    assert feed.close_codes == [1000]
