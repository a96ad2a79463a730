"""The first hour in a notebook, in a real kernel: re-running an endpoint cell keeps the state its
open connections rely on, an exported endpoint serves outside the notebook as it did inside,
and mistakes (a syntax error, a misspelt or stopped endpoint, a value JSON has no form for)
say what happened and what to do."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import websockets
from jupyter_client.manager import KernelManager
from websockets.sync.client import connect

from ws_notebook import Descriptor, Handlers, Server, api

from .kernels import Kernel
from .test_cli import Served

pytestmark = pytest.mark.timeout(120)

CHAT = """\
%%websocket chat --no-panel
names = {}
tag = "v1"

def on_open(client):
    names[client.id] = client.query["name"][0]

def on_message(message, client):
    client.send(f"{tag} {names[client.id]}: {message}")
"""


def define(kernel: Kernel, cell: str) -> str:
    return kernel.run(textwrap.dedent(cell)).stdout


def url_of(kernel: Kernel, name: str) -> str:
    return kernel.value(f"ws_notebook.url({name!r})")


def error_of(kernel: Kernel, code: str) -> str:
    reply = kernel.run(code, check=False)
    assert reply.error is not None, reply.text
    return reply.error


def run_in_cell(kernel: Kernel, code: str, cell_id: str) -> str:
    """Run ``code`` as JupyterLab runs a cell (its id in the request's metadata); its stdout."""
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}}
    request = kernel.client.session.msg("execute_request", content, metadata={"cellId": cell_id})
    kernel.client.shell_channel.send(request)
    msg_id = request["header"]["msg_id"]
    stdout = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = kernel.client.get_iopub_msg(timeout=30)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
            stdout += message["content"]["text"]
        elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            reply = kernel.client.get_shell_msg(timeout=30)
            assert reply["content"]["status"] == "ok", reply["content"]
            return stdout
    raise AssertionError(f"cell {cell_id} did not finish within 30 s")


# --- re-running an endpoint cell ------------------------------------------------------------------


def test_rerunning_the_cell_keeps_the_state_open_connections_rely_on(fresh: Kernel) -> None:
    define(fresh, CHAT)
    with connect(url_of(fresh, "chat") + "?name=ada") as ada:
        ada.send("one")
        assert ada.recv(timeout=5) == "v1 ada: one"
        out = define(fresh, CHAT)  # the same cell, run again: names = {} runs again
        assert "chat: kept the values of names, tag from the cell's previous run" in out
        assert "--reset for fresh values" in out
        ada.send("two")
        assert ada.recv(timeout=5) == "v1 ada: two"
        # An edited assignment takes its new value; the unchanged one is still kept.
        out = define(fresh, CHAT.replace('tag = "v1"', 'tag = "v2"'))
        assert "kept the values of names from" in out
        ada.send("three")
        assert ada.recv(timeout=5) == "v2 ada: three"


@pytest.mark.slow
def test_reset_runs_the_cell_afresh(fresh: Kernel) -> None:
    define(fresh, CHAT)
    with connect(url_of(fresh, "chat") + "?name=ada") as ada:
        ada.send("one")
        assert ada.recv(timeout=5) == "v1 ada: one"
        out = define(fresh, CHAT.replace("--no-panel", "--no-panel --reset"))
        assert "kept the values" not in out and "1 open connections kept" in out
        ada.send("two")  # names is empty again: the handler fails, as the user asked for
        with pytest.raises(TimeoutError):
            ada.recv(timeout=1)
    errors = fresh.value(
        "[e['detail'] for e in ws_notebook.events('chat') if e['kind'] == 'error']"
    )
    assert "on_message raised KeyError" in errors


def chat_cell() -> str:
    """The chat demo's endpoint cell, as the notebook has it (without the panel)."""
    notebook = json.loads((Path(__file__).parent.parent / "notebooks/chat-room.ipynb").read_text())
    (cell,) = [
        "".join(c["source"])
        for c in notebook["cells"]
        if "".join(c["source"]).startswith("%%websocket chat")
    ]
    return cell.replace("%%websocket chat", "%%websocket chat --no-panel", 1)


def test_the_chat_demo_survives_its_cell_running_again(fresh: Kernel) -> None:
    define(fresh, chat_cell())
    url = url_of(fresh, "chat")
    with connect(url + "?name=ada") as ada:
        assert ada.recv(timeout=5) == "* ada joined"
        define(fresh, chat_cell())
        ada.send("still here")
        assert ada.recv(timeout=5) == "ada: still here"
    errors = fresh.value("[e for e in ws_notebook.events('chat') if e['kind'] == 'error']")
    assert errors == "[]"


# --- export --------------------------------------------------------------------------------------


PREFIXED = """\
%%websocket prefixed --no-panel
def on_open(client):
    client.send(PREFIX + "welcome")

def on_message(message, client):
    client.send(PREFIX + j.dumps({"echo": message, "timed": started_at() > 0}))
"""


class Serving:
    """``ws-notebook serve FOLDER`` in a subprocess, killed on leaving."""

    def __init__(self, folder: Path) -> None:
        command = [sys.executable, "-m", "ws_notebook", "serve", str(folder), "--port", "0"]
        self.served = Served(command)

    async def __aenter__(self) -> Served:
        return await self.served.started()

    async def __aexit__(self, *exc: object) -> None:
        self.served.kill()


def validate(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ws_notebook", "validate", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def recv(ws: websockets.ClientConnection) -> str:
    return await asyncio.wait_for(ws.recv(), 15)


@pytest.mark.slow
async def test_an_exported_endpoint_serves_with_the_notebooks_imports_and_constants(
    fresh: Kernel, tmp_path: Path
) -> None:
    fresh.run("import json as j\nfrom time import monotonic as started_at\nPREFIX = '>> '")
    define(fresh, PREFIXED)
    folder = tmp_path / "exported"
    out = fresh.run(f"%websocket export prefixed {folder}").stdout
    assert "prefixed: wrote" in out
    assert (
        (folder / "prefixed.py")
        .read_text()
        .startswith(
            "# From the notebook, as it was when this endpoint was exported:\n"
            "import json as j\n"
            "from time import monotonic as started_at\n"
            "PREFIX = '>> '\n"
            "\n"
            "def on_open(client):"
        )
    )
    checked = validate(folder)
    assert checked.returncode == 0, checked.stderr
    async with Serving(folder) as served:
        async with websockets.connect(served.url("prefixed"), open_timeout=15) as ws:
            assert await recv(ws) == ">> welcome"
            await ws.send("hi")
            assert await recv(ws) == '>> {"echo": "hi", "timed": true}'
        assert " error " not in served.stderr, served.stderr


@pytest.mark.slow
async def test_the_exported_chat_demo_broadcasts_under_serve(fresh: Kernel, tmp_path: Path) -> None:
    define(fresh, chat_cell())
    fresh.run(f"%websocket export chat {tmp_path / 'chat'}")
    assert (
        (tmp_path / "chat" / "chat.py")
        .read_text()
        .startswith(
            "# From the notebook, as it was when this endpoint was exported:\nimport ws_notebook\n"
        )
    )
    async with Serving(tmp_path / "chat") as served:
        url = served.url("chat")
        async with websockets.connect(url + "?name=ada", open_timeout=15) as ada:
            assert await recv(ada) == "* ada joined"
            async with websockets.connect(url + "?name=grace", open_timeout=15) as grace:
                assert await recv(grace) == "* grace joined"
                await ada.send("hello")
                assert await recv(grace) == "ada: hello"


async def test_handlers_reach_the_default_server_that_is_set(server: Server) -> None:
    """What ``ws-notebook serve`` needs for handlers that call ``ws_notebook.broadcast``."""
    previous = api.default_server()
    api.set_default_server(server)
    try:
        source = "def on_message(message, client):\n    ws_notebook.broadcast(client.endpoint, message)\n"
        handlers = Handlers.from_source("import ws_notebook\n" + source, "room.py")
        server.registry.mount(Descriptor.new("room", handler="room.py"), handlers)
        url = server.url("room")
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            await a.send("to all")
            assert [await recv(a), await recv(b)] == ["to all", "to all"]
    finally:
        api.set_default_server(previous)


def test_export_refuses_what_it_cannot_write_down(fresh: Kernel, tmp_path: Path) -> None:
    fresh.run("def shout(text):\n    return text.upper()\nlock = __import__('threading').Lock()")
    define(
        fresh,
        """\
        %%websocket loud --no-panel
        def on_message(message, client):
            with lock:
                client.send(shout(message) + missing)
        """,
    )
    error = error_of(fresh, f"%websocket export loud {tmp_path / 'out'}")
    assert (
        "cannot export 'loud': the handlers use names from the notebook that cannot be written "
        "into the exported module: lock (a lock object), shout (a function defined in the "
        "notebook), missing (not defined in the notebook); define them in the endpoint's cell "
        "(or import them there from a module) and export again"
    ) in error
    assert not (tmp_path / "out" / "loud.py").exists()


@pytest.mark.slow
def test_validate_reports_names_a_handler_module_never_defines(tmp_path: Path) -> None:
    (tmp_path / "e.websocket").write_text(json.dumps({"endpoint": "e", "handler": "e.py"}))
    (tmp_path / "e.py").write_text(
        "import json\n\ndef on_message(message, client):\n    client.send(PREFIX + message)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "ws_notebook", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'e.py'}:4: name 'PREFIX' is not defined" in result.stderr
    assert "1 problem in" in result.stderr


# --- messages that say what happened --------------------------------------------------------------


def test_a_syntax_error_shows_the_line_and_a_caret(fresh: Kernel) -> None:
    error = error_of(fresh, "%%websocket bad1\nx = 1\ndef on_message(m, c)\n    pass\n")
    assert error.endswith(
        "<%%websocket bad1 notebook>:2: expected ':'\n"
        "    def on_message(m, c)\n"
        "                        ^"
    )


def test_replacing_an_endpoint_of_another_cell_names_its_execution_count(fresh: Kernel) -> None:
    run_in_cell(fresh, "%%websocket dup --no-panel\ndef on_message(m, c):\n    c.send(m)\n", "a1")
    count = int(fresh.value("get_ipython().execution_count")) - 2  # this cell, and the one before
    out = run_in_cell(fresh, "%%websocket dup --no-panel\ndef on_open(c):\n    pass\n", "b2")
    assert f"dup: replaced the endpoint defined in another cell (executed as [{count}]);" in out
    assert "notebook:cell" not in out


def test_each_magic_has_its_own_help(fresh: Kernel) -> None:
    cell = fresh.value("get_ipython().object_inspect_text('%%websocket')")
    line = fresh.value("get_ipython().object_inspect_text('%websocket')")
    assert cell != line
    assert "%%websocket [--description DESCRIPTION]" in cell and "%%%" not in cell
    assert "--reset" in cell and "A top-level assignment you did not change" in cell
    assert "%websocket COMMAND" in line and "%%websocket" not in line
    for usage in ("%websocket start [--port PORT]", "%websocket log [-n LAST] [name]"):
        assert usage in line
    for option in ("--handshake-timeout", "--max-send-queue", "--watch", "--mode"):
        assert option in line


def start_kernel_with(env: dict[str, str]) -> Kernel:
    manager = KernelManager(kernel_name="python3")
    manager.kernel_spec.argv[0] = sys.executable
    manager.start_kernel(env={**os.environ, **env})
    return Kernel(manager)


@pytest.mark.slow
def test_url_offers_the_proxy_only_where_jupyter_server_proxy_is_installed(
    fresh: Kernel, tmp_path: Path
) -> None:
    define(fresh, "%%websocket echo --no-panel\ndef on_message(m, c):\n    c.send(m)\n")
    assert (
        fresh.value("__import__('importlib.util').util.find_spec('jupyter_server_proxy')") == "None"
    )
    assert fresh.run("%websocket url echo").stdout.splitlines() == [url_of(fresh, "echo")]
    # A kernel where the package can be imported (an empty one: only its presence counts).
    (tmp_path / "jupyter_server_proxy").mkdir()
    (tmp_path / "jupyter_server_proxy" / "__init__.py").write_text("")
    kernel = start_kernel_with({"PYTHONPATH": str(tmp_path)})
    try:
        kernel.run("%load_ext ws_notebook")
        define(kernel, "%%websocket echo --no-panel\ndef on_message(m, c):\n    c.send(m)\n")
        lines = kernel.run("%websocket url echo").stdout.splitlines()
        port = lines[0].split(":")[2].split("/")[0]
        assert lines[1:] == [
            f"via Jupyter's proxy (JupyterHub, Binder): /proxy/{port}/websockets/service/echo "
            "on the notebook's host"
        ]
    finally:
        kernel.stop()


def test_a_misspelt_endpoint_gets_a_suggestion(fresh: Kernel) -> None:
    define(fresh, "%%websocket dup --no-panel\ndef on_message(m, c):\n    c.send(m)\n")
    define(fresh, "%%websocket echo --no-panel\ndef on_message(m, c):\n    c.send(m)\n")
    error = error_of(fresh, "%websocket url Dup")
    assert "no endpoint 'Dup' (mounted: dup, echo); did you mean 'dup'?" in error
    assert "did you mean" not in error_of(fresh, "%websocket url zzz")


def test_a_stopped_endpoint_says_it_was_stopped(fresh: Kernel) -> None:
    define(fresh, "%%websocket x --no-panel\ndef on_message(m, c):\n    c.send(m)\n")
    fresh.run("%websocket stop x")
    expected = "endpoint 'x' was stopped with %websocket stop x; run its cell again to serve it"
    assert expected in error_of(fresh, "%websocket url x")
    assert expected in error_of(fresh, "ws_notebook.broadcast('x', 'hello')")
    assert "did you mean 'x'?" in error_of(fresh, "%websocket log X")
    define(fresh, "%%websocket x --no-panel\ndef on_message(m, c):\n    c.send(m)\n")
    assert fresh.run("%websocket url x").stdout.startswith("ws://")


def test_handlers_send_dates_decimals_uuids_and_sets_as_json(fresh: Kernel) -> None:
    define(
        fresh,
        """\
        %%websocket typed --no-panel
        import datetime, decimal, uuid

        def on_message(message, client):
            if message == "object":
                client.send({"lock": __import__("threading").Lock()})
                return
            client.send({
                "now": datetime.datetime(2026, 11, 30, 9, 5, 1, tzinfo=datetime.timezone.utc),
                "day": datetime.date(2026, 11, 30),
                "price": decimal.Decimal("19.90"),
                "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
                "tags": {"new"},
            })

        def on_error(error, client):
            client.send(f"error: {error}")
        """,
    )
    with connect(url_of(fresh, "typed")) as ws:
        ws.send("values")
        assert json.loads(ws.recv(timeout=5)) == {
            "now": "2026-11-30T09:05:01+00:00",
            "day": "2026-11-30",
            "price": "19.90",
            "id": "12345678-1234-5678-1234-567812345678",
            "tags": ["new"],
        }
        ws.send("object")
        error = ws.recv(timeout=5)
    assert error.startswith("error: cannot send <unlocked _thread.lock object at ")
    assert error.endswith(
        "as JSON: a lock has no JSON form; convert it first (to str, a number, a list or a "
        "dict), or send text you encoded yourself, such as json.dumps(message, default=str)"
    )
