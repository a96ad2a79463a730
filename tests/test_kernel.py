"""End to end in a real kernel: ``%%websocket`` cells served to real ``websockets`` clients."""

from __future__ import annotations

import json
import socket
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from .kernels import Kernel

ECHO = """\
%%websocket echo --description "Echo service" --created-by tester
def on_message(message, client):
    client.send(message)
"""


def define(kernel: Kernel, cell: str) -> str:
    return kernel.run(textwrap.dedent(cell)).stdout


def url_of(kernel: Kernel, name: str) -> str:
    return kernel.run(f"%websocket url {name}").stdout.splitlines()[0]


def test_echo_text_and_binary(fresh: Kernel) -> None:
    out = define(fresh, ECHO)
    assert "echo: serving at ws://127.0.0.1:" in out
    url = url_of(fresh, "echo")
    assert url.endswith("/websockets/service/echo")
    with connect(url) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\xffbinary")
        assert ws.recv(timeout=5) == b"\x00\xffbinary"


def test_proxy_path_follows_the_hub_prefix(fresh: Kernel) -> None:
    """(Whether ``%websocket url`` offers the proxied form: tests/test_first_hour.py.)"""
    define(fresh, ECHO)
    lines = fresh.run("%websocket url echo").stdout.splitlines()
    port = lines[0].split(":")[2].split("/")[0]
    fresh.run("import os; os.environ['JUPYTERHUB_SERVICE_PREFIX'] = '/user/demo/'")
    try:
        assert fresh.value("ws_notebook.proxy_path('echo')") == (
            f"/user/demo/proxy/{port}/websockets/service/echo"
        )
    finally:
        fresh.run("del os.environ['JUPYTERHUB_SERVICE_PREFIX']")


def test_dirigible_v4_path_serves_the_same_endpoint(fresh: Kernel) -> None:
    define(fresh, ECHO)
    url = url_of(fresh, "echo").replace("/websockets/service/", "/websockets/v4/service/")
    with connect(url) as ws:
        ws.send("v4")
        assert ws.recv(timeout=5) == "v4"


def test_descriptor_and_listing(fresh: Kernel) -> None:
    define(fresh, ECHO)
    descriptor = json.loads(
        fresh.value("json.dumps(ws_notebook.endpoint('echo').descriptor.to_json())")
    )
    assert descriptor["endpoint"] == "echo"
    assert descriptor["description"] == "Echo service"
    assert descriptor["createdBy"] == "tester"
    assert descriptor["createdAt"][:4].isdigit() and "T" in descriptor["createdAt"]
    assert descriptor["location"].startswith("notebook")
    table = fresh.run("%websocket list").results[0]
    assert "echo" in table and "Echo service" in table and "tester" in table
    url = url_of(fresh, "echo")
    listing_url = url.replace("ws://", "http://").replace("/service/echo", "")
    with urllib.request.urlopen(listing_url, timeout=5) as response:
        listed = json.load(response)
    assert [item["endpoint"] for item in listed] == ["echo"]
    assert listed[0]["descriptor"]["description"] == "Echo service"


def test_created_by_defaults_to_the_user(fresh: Kernel) -> None:
    define(fresh, "%%websocket mine\ndef on_message(m, c): pass\n")
    import getpass

    assert fresh.value("ws_notebook.endpoint('mine').descriptor.created_by") == getpass.getuser()


def test_handlers_see_notebook_globals_live(fresh: Kernel) -> None:
    fresh.run("greeting = 'hello'")
    define(
        fresh,
        """\
        %%websocket greet
        suffix = '!'
        def on_message(message, client):
            client.send(f"{greeting} {message}{suffix}")
        """,
    )
    with connect(url_of(fresh, "greet")) as ws:
        ws.send("ada")
        assert ws.recv(timeout=5) == "hello ada!"
        fresh.run("greeting = 'bonjour'")
        ws.send("ada")
        assert ws.recv(timeout=5) == "bonjour ada!"
    # The cell's own names stay in the endpoint's namespace.
    assert fresh.run("'suffix' in globals(), 'on_message' in globals()").results == [
        "(False, False)"
    ]


def test_broadcast_reaches_every_client(fresh: Kernel) -> None:
    define(
        fresh,
        """\
        %%websocket room
        def on_message(message, client):
            ws_notebook.broadcast(client.endpoint, f"{client.id}: {message}")
        """,
    )
    url = url_of(fresh, "room")
    with connect(url) as a, connect(url) as b, connect(url) as c:
        a.send("hi all")
        received = [ws.recv(timeout=5) for ws in (a, b, c)]
        assert len(set(received)) == 1 and received[0].endswith(": hi all")
        out = fresh.run("%websocket send room 'from the notebook'").stdout
        assert "sent to 3 clients" in out
        assert [ws.recv(timeout=5) for ws in (a, b, c)] == ["from the notebook"] * 3
        assert fresh.value("len(ws_notebook.clients('room'))") == "3"
        assert fresh.value("len(ws_notebook.getClients())") == "3"


def test_redefinition_keeps_open_connections(fresh: Kernel) -> None:
    define(
        fresh,
        "%%websocket ver\ndef on_message(message, client):\n    client.send('v1 ' + message)\n",
    )
    url = url_of(fresh, "ver")
    with connect(url) as ws:
        ws.send("a")
        assert ws.recv(timeout=5) == "v1 a"
        out = define(
            fresh,
            "%%websocket ver\nasync def on_message(message, client):\n    client.send('v2 ' + message)\n",
        )
        assert "handlers updated in place" in out and "1 open connections kept" in out
        assert url_of(fresh, "ver") == url  # same server, same port
        ws.send("b")
        assert ws.recv(timeout=5) == "v2 b"


@pytest.mark.slow
def test_same_name_from_another_definition_says_it_replaces(fresh: Kernel, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "dup.websocket").write_text(json.dumps({"endpoint": "dup", "handler": "h.py"}))
    (project / "h.py").write_text("def on_message(m, c):\n    c.send('file ' + m)\n")
    fresh.run(f"%websocket load {project}")
    out = define(fresh, "%%websocket dup\ndef on_message(m, c):\n    c.send('cell ' + m)\n")
    assert "replaced the endpoint defined by" in out
    with connect(url_of(fresh, "dup")) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "cell x"


def test_codbex_handler_names_and_signatures(fresh: Kernel) -> None:
    define(
        fresh,
        """\
        %%websocket codbex
        opened = []
        def onOpen():
            opened.append(1)
        def onMessage(message, client):
            client.send(f"{len(opened)} {message}")
        """,
    )
    with connect(url_of(fresh, "codbex")) as ws:
        ws.send("ok")
        assert ws.recv(timeout=5) == "1 ok"


def test_client_object(fresh: Kernel) -> None:
    define(
        fresh,
        """\
        %%websocket who
        import json
        def on_message(message, client):
            client.send(json.dumps({
                "id": client.id, "endpoint": client.endpoint, "remote": client.remote_address,
                "query": client.query, "agent": client.headers.get("User-Agent", ""),
                "in": client.messages_in, "out": client.messages_out,
                "same": ws_notebook.client(client.id) is client,
                "codbex": ws_notebook.getClient(client.id) is client,
                "opened": client.opened_at > 0,
            }))
        """,
    )
    with connect(url_of(fresh, "who") + "?room=blue&x=1", user_agent_header="tester/1") as ws:
        ws.send("?")
        first = json.loads(ws.recv(timeout=5))
        ws.send("?")
        second = json.loads(ws.recv(timeout=5))
        close_in_kernel = f"ws_notebook.client({first['id']!r}).close(4000, 'bye')"
        fresh.run(close_in_kernel)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4000 and ws.close_reason == "bye"
    assert first["endpoint"] == "who" and first["remote"] == "127.0.0.1"
    assert first["query"] == {"room": ["blue"], "x": ["1"]}
    assert first["agent"] == "tester/1"
    assert (first["in"], first["out"], second["in"], second["out"]) == (1, 0, 2, 1)
    assert first["id"] == second["id"] and first["same"] and first["codbex"] and first["opened"]
    assert fresh.value(f"ws_notebook.client({first['id']!r})") == "None"


def test_handler_exception_goes_to_on_error_and_connection_stays_open(fresh: Kernel) -> None:
    define(
        fresh,
        """\
        %%websocket fragile
        def on_message(message, client):
            if message == "boom":
                raise ValueError("bad input: boom")
            client.send("ok " + message)
        def on_error(error, client):
            client.send(f"error: {error}")
        """,
    )
    url = url_of(fresh, "fragile")
    with connect(url) as ws, connect(url) as bystander:
        ws.send("boom")
        assert ws.recv(timeout=5) == "error: bad input: boom"
        ws.send("again")
        assert ws.recv(timeout=5) == "ok again"
        bystander.send("fine")
        assert bystander.recv(timeout=5) == "ok fine"
    errors = json.loads(
        fresh.value(
            "json.dumps([e for e in ws_notebook.events('fragile') if e['kind'] == 'error'])"
        )
    )
    assert len(errors) == 1
    assert errors[0]["detail"] == "on_message raised ValueError: bad input: boom"


def test_async_handler_exception_and_raising_on_error(fresh: Kernel) -> None:
    define(
        fresh,
        """\
        %%websocket afragile
        import asyncio
        async def on_message(message, client):
            await asyncio.sleep(0)
            if message == "boom":
                raise KeyError(message)
            client.send(message)
        def on_error(error, client):
            raise RuntimeError("on_error broke too")
        """,
    )
    with connect(url_of(fresh, "afragile")) as ws:
        ws.send("boom")
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
    details = json.loads(
        fresh.value(
            "json.dumps([e['detail'] for e in ws_notebook.events('afragile') if e['kind'] == 'error'])"
        )
    )
    assert details == [
        "on_message raised KeyError: 'boom'",
        "on_error raised RuntimeError: on_error broke too",
    ]


def test_unknown_endpoint_is_404_with_a_clear_body(fresh: Kernel) -> None:
    define(fresh, ECHO)
    url = url_of(fresh, "echo").replace("/echo", "/nope")
    with pytest.raises(InvalidStatus) as raised:
        connect(url)
    response = raised.value.response
    assert response.status_code == 404
    assert b"no WebSocket endpoint 'nope'" in response.body and b"echo" in response.body
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(
            url.replace("ws://", "http://").replace("/websockets/service/nope", "/x")
        )
    assert http.value.code == 404


def test_stop_endpoint_closes_its_clients_with_1001(fresh: Kernel) -> None:
    define(fresh, ECHO)
    define(fresh, ECHO.replace("echo --description", "other --description"))
    url = url_of(fresh, "echo")
    with connect(url) as ws, connect(url_of(fresh, "other")) as other:
        out = fresh.run("%websocket stop echo").stdout
        assert "echo: unmounted, 1 clients closed (1001)" in out
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1001
        other.send("still")
        assert other.recv(timeout=5) == "still"
    with pytest.raises(InvalidStatus):
        connect(url)


def test_stop_and_start_server(fresh: Kernel) -> None:
    define(fresh, ECHO)
    url = url_of(fresh, "echo")
    port = int(url.split(":")[2].split("/")[0])
    with connect(url) as ws:
        fresh.run("%websocket stop")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1001
    assert "(stopped)" in fresh.run("%websocket list").results[0]
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    new_port = free.getsockname()[1]
    free.close()
    out = fresh.run(f"%websocket start --port {new_port}").stdout
    assert f"serving 1 endpoints at ws://127.0.0.1:{new_port}" in out
    assert new_port != port
    with connect(url.replace(str(port), str(new_port))) as ws:
        ws.send("back")
        assert ws.recv(timeout=5) == "back"


def test_a_restart_changes_only_the_options_given(fresh: Kernel) -> None:
    define(fresh, ECHO)
    fresh.run("%websocket stop")
    fresh.run("%websocket start --token s3cret --max-message-size 100 --compression")
    fresh.run("%websocket stop")
    fresh.run("%websocket start --ping-interval 5")
    settings = fresh.value(
        "(ws_notebook.default_server().token, ws_notebook.default_server().limits)"
    )
    assert settings.startswith("('s3cret', Limits(max_message_size=100, ping_interval=5.0,")
    assert "compression=True" in settings
    with pytest.raises(InvalidStatus) as missing:
        connect(url_of(fresh, "echo"))
    assert missing.value.response.status_code == 401
    with connect(fresh.value("ws_notebook.url('echo', with_token=True)")) as ws:
        ws.send("x" * 101)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1009
    fresh.run("%websocket stop")
    fresh.run("%websocket start --no-compression")
    assert "compression=False" in fresh.value("ws_notebook.default_server().limits")
    fresh.run("%websocket stop")
    fresh.run("ws_notebook.reset()")


def test_port_in_use_is_a_clear_error(fresh: Kernel) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        reply = fresh.run(ECHO.replace("--created-by tester", f"--port {port}"), check=False)
    finally:
        busy.close()
    assert reply.error is not None and "UsageError" in reply.error
    assert f"port {port} on 127.0.0.1 is in use" in reply.error


def test_bad_endpoint_name_is_rejected(fresh: Kernel) -> None:
    reply = fresh.run("%%websocket 'my ws'\ndef on_message(m, c): pass\n", check=False)
    assert reply.error is not None
    assert (
        "endpoint: 'my ws' is not a valid endpoint name (letters, digits, '-', '_', '.')"
        in reply.error
    )
    assert fresh.value("len(ws_notebook.endpoints())") == "0"


def test_log_and_clients_commands(fresh: Kernel) -> None:
    define(fresh, ECHO.replace("--created-by tester", "--log-capacity 4"))
    with connect(url_of(fresh, "echo")) as ws:
        for word in ("one", "two", "three"):
            ws.send(word)
            ws.recv(timeout=5)
        clients = fresh.run("%websocket clients echo").results[0]
        assert "echo" in clients and "127.0.0.1" in clients and "open" in clients
    log = fresh.run("%websocket log echo").results[0]
    # open + 3 in + 3 out + close = 8 events, capacity 4: the last four are kept.
    assert "4 older events dropped" in log
    assert "three" in log and "close" in log and "one" not in log


def test_help_documents_every_option(fresh: Kernel) -> None:
    doc = fresh.value("get_ipython().find_cell_magic('websocket').__doc__")
    for option in ("--description", "--created-by", "--port", "--host", "--log-capacity"):
        assert option in doc
    for command in ("list", "url", "stop", "start", "clients", "send", "log", "load", "export"):
        assert command in doc


@pytest.mark.slow
def test_load_folder_and_export_round_trip(fresh: Kernel, tmp_path: Path) -> None:
    project = tmp_path / "my-project"
    (project / "websockets").mkdir(parents=True)
    (project / "websockets" / "myws.websocket").write_text(
        json.dumps(
            {
                "location": "/my-project/websockets/myws.websocket",
                "handler": "my-project/websockets/my-handler.js",
                "endpoint": "my-websocket",
                "description": "My Websocket",
                "createdBy": "admin",
                "createdAt": "2022-07-06T2:24:12+0000",
            }
        )
    )
    # The ported handler sits beside where the .js would be; codbex names keep working.
    (project / "websockets" / "my-handler.py").write_text(
        "def onMessage(message, client):\n    client.send('codbex: ' + message)\n"
    )
    out = fresh.run(f"%websocket load {project}").stdout
    assert "my-websocket: serving at ws://" in out
    with connect(url_of(fresh, "my-websocket")) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "codbex: hi"

    define(
        fresh,
        "%%websocket inline --description 'from a cell'\ndef on_message(m, c):\n    c.send(m[::-1])\n",
    )
    exported = tmp_path / "exported"
    out = fresh.run(f"%websocket export inline {exported}").stdout
    assert "inline.websocket" in out
    written = json.loads((exported / "inline.websocket").read_text())
    assert written["endpoint"] == "inline" and written["description"] == "from a cell"
    assert written["handler"] == "exported/inline.py"
    assert (exported / "inline.py").read_text().startswith("def on_message")

    fresh.run("ws_notebook.reset()")
    fresh.run(f"%websocket load {exported}")
    with connect(url_of(fresh, "inline")) as ws:
        ws.send("abc")
        assert ws.recv(timeout=5) == "cba"


@pytest.mark.slow
def test_load_reports_every_broken_file(fresh: Kernel, tmp_path: Path) -> None:
    (tmp_path / "a.websocket").write_text('{"endpoint": "my ws", "handler": "a.py"}')
    (tmp_path / "b.websocket").write_text("{not json")
    (tmp_path / "c.websocket").write_text('{"endpoint": "c", "handler": "missing.py"}')
    reply = fresh.run(f"%websocket load {tmp_path}", check=False)
    assert reply.error is not None
    assert "a.websocket: endpoint: 'my ws' is not a valid endpoint name" in reply.error
    assert "b.websocket: invalid JSON at line 1 column 2" in reply.error
    assert "c.websocket: handler: 'missing.py' not found" in reply.error
    assert fresh.value("len(ws_notebook.endpoints())") == "0"


@pytest.mark.slow
@pytest.mark.kernel
def test_unload_closes_clients_with_1001_frees_port_and_reload_works() -> None:
    from .kernels import start_kernel

    kernel = start_kernel()
    try:
        kernel.run("%load_ext ws_notebook")
        define(kernel, ECHO)
        url = url_of(kernel, "echo")
        port = int(url.split(":")[2].split("/")[0])
        with connect(url) as ws:
            kernel.run("%unload_ext ws_notebook")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.close_code == 1001
        with pytest.raises(ConnectionRefusedError):  # nothing listens any more
            socket.create_connection(("127.0.0.1", port), timeout=5)
        probe = socket.socket()  # and a new server can listen there (as servers do, REUSEADDR)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
        probe.close()
        kernel.run("%load_ext ws_notebook")
        define(kernel, ECHO)
        with connect(url_of(kernel, "echo")) as ws:
            ws.send("again")
            assert ws.recv(timeout=5) == "again"
    finally:
        kernel.stop()


def test_handler_error_is_shown_in_the_notebook(fresh: Kernel) -> None:
    """Handler errors reach the notebook's output (the cell that started the server)."""
    define(
        fresh,
        "%%websocket loud\ndef on_message(m, c):\n    raise ValueError('shown to the user')\n",
    )
    with connect(url_of(fresh, "loud")) as ws:
        ws.send("x")
        printed = ""
        while "shown to the user" not in printed:
            message = fresh.client.get_iopub_msg(timeout=10)
            if message["msg_type"] == "stream" and message["content"]["name"] == "stderr":
                printed += message["content"]["text"]
    assert "ws_notebook: endpoint 'loud', client c" in printed
    assert "on_message raised ValueError: shown to the user" in printed
    assert "Traceback" in printed and "line 2, in on_message" in printed
