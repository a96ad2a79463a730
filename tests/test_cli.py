"""``ws-notebook``: serve, validate and list a project folder; graceful shutdown (its hot
reload is in test_watch.py).

The server runs as a real subprocess on a temporary folder; clients are real ``websockets``
connections on loopback. Every wait is bounded and every process is killed if a test fails.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ws_notebook import Descriptor, Server
from ws_notebook.cli import main
from ws_notebook.project import export_endpoint

from .kernels import start_kernel

pytestmark = pytest.mark.timeout(120)

WAIT = 15.0  # seconds: the longest any single expected thing may take
SCRIPT = Path(sys.executable).with_name("ws-notebook")

ECHO = """\
def on_open(client):
    client.send(f"welcome {client.id}")

def on_message(message, client):
    if message == "boom":
        raise ValueError("bad input")
    client.send(message)
"""


def write_endpoint(folder: Path, name: str, source: str, **properties: str) -> Path:
    """``folder/NAME.websocket`` naming ``NAME.py``, and the handler module itself."""
    (folder / f"{name}.py").write_text(source, "utf-8")
    descriptor = {"endpoint": name, "handler": f"{name}.py", **properties}
    path = folder / f"{name}.websocket"
    path.write_text(json.dumps(descriptor), "utf-8")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ws_notebook", *args], capture_output=True, text=True, timeout=60
    )


class Served:
    """A ``ws-notebook serve`` subprocess; its stderr is collected line by line."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self.stdout: list[str] = []
        self._readers = [
            threading.Thread(
                target=self._read, args=(self.process.stderr, self.lines), daemon=True
            ),
            threading.Thread(
                target=self._read, args=(self.process.stdout, self.stdout), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()
        self.port = 0
        self.scheme = "ws"

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def mark(self) -> int:
        """A position in stderr: ``wait_for(..., after=mark)`` only looks at later lines."""
        return len(self.lines)

    async def wait_for(self, pattern: str, after: int = 0, timeout: float = WAIT) -> re.Match:
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            for line in self.lines[after:]:
                match = compiled.search(line)
                if match:
                    return match
            if self.process.poll() is not None and not any(r.is_alive() for r in self._readers):
                raise AssertionError(f"server exited before {pattern!r}:\n{self.stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout}s in:\n{self.stderr}")
            await asyncio.sleep(0.02)

    async def started(self) -> Served:
        match = await self.wait_for(
            r"serving \d+ endpoints? from .* at (wss?)://127\.0\.0\.1:(\d+)/"
        )
        self.scheme, self.port = match.group(1), int(match.group(2))
        await self.wait_for(r"watching .* for changes")
        return self

    def url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/websockets/service/{name}"

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    async def exit_code(self, timeout: float = WAIT) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"server still running after {timeout}s:\n{self.stderr}")
            await asyncio.sleep(0.02)
        for reader in self._readers:
            reader.join(timeout=5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)


@pytest.fixture
async def serve() -> AsyncIterator:
    """Start ``ws-notebook serve`` (``python -m ws_notebook`` by default) on a folder."""
    started: list[Served] = []

    async def start(folder: Path, *options: str, script: bool = False) -> Served:
        command = [str(SCRIPT)] if script else [sys.executable, "-m", "ws_notebook"]
        served = Served([*command, "serve", str(folder), "--port", "0", *options])
        started.append(served)
        return await served.started()

    yield start
    for served in started:
        served.kill()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    write_endpoint(folder, "echo", ECHO, description="Echoes back")
    return folder


async def connect(url: str) -> websockets.ClientConnection:
    return await asyncio.wait_for(websockets.connect(url, open_timeout=WAIT), WAIT)


async def recv(ws: websockets.ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), WAIT)


async def close_code(ws: websockets.ClientConnection) -> int | None:
    """Wait for the server to close the connection; the code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


# --- validate and list ----------------------------------------------------------------------------


@pytest.mark.slow
def test_validate_and_list(project: Path) -> None:
    write_endpoint(
        project, "shout", "def onMessage(message, client):\n    client.send(message.upper())\n"
    )
    valid = run("validate", str(project))
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.strip() == "2 endpoints OK: echo, shout"

    listed = run("list", str(project), "--port", "9123")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["endpoint", "url", "handlers"]
    assert rows[0].split()[:3] == ["echo", "ws://127.0.0.1:9123/websockets/service/echo", "open,"]
    assert "Echoes back" in rows[0]
    assert rows[1].split()[:3] == [
        "shout",
        "ws://127.0.0.1:9123/websockets/service/shout",
        "message",
    ]

    as_json = json.loads(run("list", str(project), "--port", "9123", "--json").stdout)
    assert [entry["endpoint"] for entry in as_json] == ["echo", "shout"]
    assert as_json[0]["descriptor"]["description"] == "Echoes back"
    assert as_json[0]["handlers"] == ["open", "message"]


@pytest.mark.slow
def test_invalid_project_lists_every_problem_and_starts_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    (folder / "sub").mkdir(parents=True)
    write_endpoint(folder, "fine", ECHO)
    (folder / "a.websocket").write_text(
        json.dumps({"endpoint": "my ws", "handler": "fine.py", "createdAt": "soon"})
    )
    (folder / "sub" / "b.websocket").write_text('{"endpoint": "b", "handler": "b.py",}')
    write_endpoint(folder, "syntax", "def on_message(message, client:\n    pass\n")
    (folder / "nohandler.websocket").write_text(json.dumps({"endpoint": "x", "handler": "gone.py"}))
    (folder / "dup.websocket").write_text(json.dumps({"endpoint": "fine", "handler": "fine.py"}))
    # Each problem starts with its descriptor's path in the project (the folder is the project).
    expected = [
        "/broken/a.websocket: endpoint: 'my ws' is not a valid endpoint name",
        "/broken/a.websocket: createdAt: 'soon' is not an ISO 8601 timestamp",
        "/broken/sub/b.websocket: invalid JSON at line 1",
        f"/broken/syntax.websocket: {folder / 'syntax.py'}:1: '(' was never closed",
        "/broken/nohandler.websocket: handler: 'gone.py' not found",
        "/broken/fine.websocket: endpoint: 'fine' is already defined by /broken/dup.websocket",
    ]
    for command in (["validate"], ["list"], ["serve", "--port", "0"]):
        started = time.monotonic()
        result = run(*command[:1], str(folder), *command[1:])
        assert result.returncode == 2, (command, result.stderr)
        for line in expected:
            assert line in result.stderr, (command, line, result.stderr)
        assert "ws-notebook: 6 problems in" in result.stderr
        assert result.stdout == ""
        assert "serving" not in result.stderr
        assert time.monotonic() - started < 30


def test_other_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In process: ``main(argv)`` returns the exit code (argparse's own errors exit 2 too)."""
    assert main(["serve", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["validate", str(tmp_path / "empty")]) == 2
    assert "empty: no *.websocket files found" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "empty"), "--no-watch", "--port", "0"]) == 2
    assert "empty: no *.websocket files found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["frobnicate", str(tmp_path)])
    assert usage.value.code == 2


# --- serving --------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_serve_echo_lists_endpoints_and_logs_one_line_per_event(project: Path, serve) -> None:
    served = await serve(project, script=True)  # the console script, this time
    async with await connect(served.url("echo") + "?token=not-logged") as ws:
        welcome = await recv(ws)
        assert welcome.startswith("welcome c")
        client_id = welcome.split()[1]
        await ws.send("hello")
        assert await recv(ws) == "hello"
        await ws.send("boom")  # the handler raises; the connection stays open
        await ws.send("still here")
        assert await recv(ws) == "still here"

    # the same JSON as in the kernel: endpoint, URLs, clients, handlers, descriptor
    status, body = await asyncio.to_thread(served.http, "/websockets")
    assert status == 200
    (entry,) = json.loads(body)
    assert entry["endpoint"] == "echo"
    assert entry["url"] == served.url("echo")
    assert entry["v4_url"] == served.url("echo").replace("/service/", "/v4/service/")
    assert entry["handlers"] == ["open", "message"]
    assert entry["descriptor"] == {
        "location": f"/{project.name}/echo.websocket",  # where it is in the project
        "handler": "echo.py",
        "endpoint": "echo",
        "description": "Echoes back",
        "createdBy": "SYSTEM",  # none in the file: as the platform records it
    }
    assert await asyncio.to_thread(served.http, "/healthz") == (200, "ok\n")
    async with await connect(f"ws://127.0.0.1:{served.port}/websockets/v4/service/echo") as ws:
        assert (await recv(ws)).startswith("welcome")
    status, body = await asyncio.to_thread(served.http, "/websockets/service/nope")
    assert status == 404

    stamp = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} "
    await served.wait_for(stamp + rf"echo {client_id} open 127\.0\.0\.1$")
    await served.wait_for(
        stamp + rf"echo {client_id} error on_message raised ValueError: bad input$"
    )
    await served.wait_for(stamp + rf"echo {client_id} close 1000$")
    assert "Traceback" not in served.stderr  # one line per error unless --verbose
    assert "not-logged" not in served.stderr
    served.process.send_signal(signal.SIGTERM)
    assert await served.exit_code() == 0


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
async def test_signal_closes_clients_with_1001_and_exits_0(
    project: Path, serve, signal_number
) -> None:
    write_endpoint(project, "quiet", "def on_message(message, client):\n    pass\n")
    served = await serve(project)
    clients = [await connect(served.url(name)) for name in ("echo", "echo", "quiet")]
    await recv(clients[0]), await recv(clients[1])  # welcome: the connections are open
    await served.wait_for(r"quiet c\d+ open")
    mark = served.mark()
    served.process.send_signal(signal_number)
    codes = await asyncio.gather(*(close_code(ws) for ws in clients))
    assert codes == [1001, 1001, 1001]
    assert clients[0].close_reason == "server shutting down"
    assert await served.exit_code() == 0
    assert f"{signal.Signals(signal_number).name} received" in served.stderr
    assert "shutting down: closing 3 clients (1001)" in served.stderr
    closes = [
        line for line in served.lines[mark:] if re.search(r" close 1001 server shutting down", line)
    ]
    assert len(closes) == 3, served.stderr
    assert served.lines[-1].endswith(" stopped")
    await asyncio.sleep(0.1)
    with pytest.raises(OSError):  # the port is free again: nothing listens
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", served.port), 5)


@pytest.mark.skipif(
    "token" not in inspect.signature(Server).parameters, reason="Server has no token option yet"
)
@pytest.mark.slow
async def test_generated_token_is_printed_once_to_stdout_and_never_logged(
    project: Path, serve
) -> None:
    served = await serve(project, "--token", "auto")
    deadline = time.monotonic() + WAIT
    while not served.stdout and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    (line,) = served.stdout
    token = line.removeprefix("token: ")
    with pytest.raises(InvalidStatus) as refused:
        await connect(served.url("echo") + "?token=wrong")
    assert refused.value.response.status_code == 403
    async with await connect(served.url("echo") + f"?token={token}") as ws:
        assert (await recv(ws)).startswith("welcome")
    with pytest.raises(InvalidStatus) as unknown:  # Tornado logs a 404 with its URL
        await connect(served.url("nope") + f"?token={token}")
    assert unknown.value.response.status_code == 404
    await served.wait_for(r"http 404 GET /websockets/service/nope\?token=\*\*\* \(127\.0\.0\.1\)")
    await served.wait_for(r"echo c\d+ close 1000")
    assert token not in served.stderr
    assert "token=wrong" not in served.stderr


@pytest.mark.slow
def test_tls_options_reach_the_server(project: Path, tmp_path: Path) -> None:
    missing = run("serve", str(project), "--port", "0", "--certfile", str(tmp_path / "no.pem"))
    assert missing.returncode == 2
    assert "no.pem: no such file" in missing.stderr
    assert "serving" not in missing.stderr


@pytest.mark.slow
async def test_wss_with_certfile_and_keyfile(project: Path, tmp_path: Path, serve) -> None:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    served = await serve(project, "--certfile", str(certfile), "--keyfile", str(keyfile))
    assert served.scheme == "wss"
    context = ssl.create_default_context()
    authority.configure_trust(context)
    async with websockets.connect(served.url("echo"), ssl=context, open_timeout=WAIT) as ws:
        assert (await recv(ws)).startswith("welcome")
    with urllib.request.urlopen(
        f"https://127.0.0.1:{served.port}/healthz", timeout=5, context=context
    ) as health:
        assert health.status == 200


# --- a folder exported from a notebook --------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``%websocket export`` of a ``%%websocket`` cell, run in a real kernel."""
    folder = tmp_path_factory.mktemp("exported") / "notebook-project"
    kernel = start_kernel()
    try:
        kernel.run("%load_ext ws_notebook")
        kernel.run(
            "%%websocket greet --description 'Greets and shouts' --no-panel\n"
            "import json\n"
            "def on_open(client):\n"
            "    client.send(json.dumps({'hello': client.endpoint}))\n"
            "\n"
            "async def on_message(message, client):\n"
            "    await client.send(message.upper())\n"
        )
        reply = kernel.run(f"%websocket export greet {folder}")
        assert "wrote" in reply.stdout
    finally:
        kernel.stop()
    yield folder


@pytest.mark.slow
@pytest.mark.kernel
async def test_a_folder_exported_from_a_notebook_serves_the_same(exported: Path, serve) -> None:
    assert run("validate", str(exported)).returncode == 0
    served = await serve(exported)
    async with await connect(served.url("greet")) as ws:
        assert json.loads(await recv(ws)) == {"hello": "greet"}
        await ws.send("shout")
        assert await recv(ws) == "SHOUT"
    status, body = await asyncio.to_thread(served.http, "/websockets")
    descriptor = json.loads(body)[0]["descriptor"]
    assert descriptor["description"] == "Greets and shouts"
    assert descriptor["location"] == "/notebook-project/greet.websocket"


@pytest.mark.slow
async def test_export_endpoint_folder_serves(tmp_path: Path, serve) -> None:
    """The same without a kernel: ``export_endpoint`` as the magic calls it."""
    source = "def onMessage(message, client):\n    client.send(message[::-1])\n"
    export_endpoint(Descriptor.new("rev", handler="cell", created_by="t"), source, tmp_path / "out")
    served = await serve(tmp_path / "out")
    async with await connect(served.url("rev")) as ws:
        await ws.send("abc")
        assert await recv(ws) == "cba"
