"""``%%websocket NAME --js`` in a real kernel: a cell of JavaScript served to ``websockets``
clients, its errors, its re-runs, and its export loaded again by another kernel."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from websockets.sync.client import connect

from .kernels import Kernel, start_kernel
from .test_output import IOPub

HELLO = """\
%%websocket hello --js --description "Greets in JavaScript"
import { websockets } from "sdk/net";

export function onMessage(message, from) {
    console.log(`${websockets.getMethod()} from ${from}: ${message}`);
    return `Hello from WebSocket! [${message}]`;
}
"""


def url_of(kernel: Kernel, name: str) -> str:
    return kernel.run(f"%websocket url {name}").stdout.splitlines()[0]


def events(kernel: Kernel, name: str) -> list[dict]:
    return json.loads(kernel.value(f"json.dumps(ws_notebook.events({name!r}))"))


def test_js_cell_replies_and_logs_console_output(fresh: Kernel) -> None:
    out = fresh.run(HELLO).stdout
    assert "hello: serving at ws://127.0.0.1:" in out
    assert "handlers: message" in out
    with connect(url_of(fresh, "hello")) as ws:
        ws.send("codbex")
        assert ws.recv(timeout=5) == "Hello from WebSocket! [codbex]"
        client = fresh.value("ws_notebook.clients('hello')[0].id")
    logged = events(fresh, "hello")
    stdout = [e for e in logged if e["kind"] == "stdout"]
    assert [e["detail"] for e in stdout] == [f"onmessage from {client}: codbex"]
    assert stdout[0]["client"] == client
    assert any(e["kind"] == "out" and "Hello from WebSocket!" in e["preview"] for e in logged)
    descriptor = json.loads(
        fresh.value("json.dumps(ws_notebook.endpoint('hello').descriptor.to_json())")
    )
    assert descriptor["description"] == "Greets in JavaScript"


def test_console_prints_under_the_defining_cell(fresh: Kernel) -> None:
    watched = IOPub(fresh)
    cell = watched.execute(
        "%%websocket printer --js --no-panel\n"
        "exports.onMessage = (message) => {\n"
        '    console.log("printer got " + message);\n'
        '    console.error("printer complains");\n'
        '    return "ok";\n'
        "};\n"
    )
    watched.execute("x = 1")  # another cell ran since
    with connect(watched.url("printer")) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ok"
    watched.wait_for(cell, "printer got ping", "printer complains")
    assert ("stderr", "printer complains\n") in watched.streams(cell)


def test_commonjs_cell(fresh: Kernel) -> None:
    fresh.run(
        textwrap.dedent(
            """\
            %%websocket upper --js
            const { websockets } = require("sdk/net");
            exports.onMessage = function (message, from) {
                websockets.getClient(from).send(message.toUpperCase());
            };
            """
        )
    )
    with connect(url_of(fresh, "upper")) as ws:
        ws.send("shout")
        assert ws.recv(timeout=5) == "SHOUT"


def test_syntax_error_names_the_cell_line(fresh: Kernel) -> None:
    cell = """\
%%websocket broken --js
export function onMessage(message) {
    return message +;
}
"""
    reply = fresh.run(cell, check=False)
    assert reply.error is not None
    assert ":2: SyntaxError:" in reply.stderr
    assert "return message +;" in reply.stderr  # the line itself, under the message
    assert "Traceback" not in reply.stderr
    assert fresh.run("%websocket list").results[0].count("broken") == 0


def test_unknown_import_names_the_cell_line(fresh: Kernel) -> None:
    reply = fresh.run(
        '%%websocket imports --js\n// a comment\nimport _ from "lodash";\n'
        "export function onMessage(m) { return m; }\n",
        check=False,
    )
    assert reply.error is not None
    assert ":2: cannot import 'lodash'" in reply.stderr
    assert 'import _ from "lodash";' in reply.stderr


def test_rerun_replaces_handlers_and_keeps_the_connection(fresh: Kernel) -> None:
    fresh.run(HELLO)
    with connect(url_of(fresh, "hello")) as ws:
        ws.send("one")
        assert ws.recv(timeout=5) == "Hello from WebSocket! [one]"
        out = fresh.run(
            textwrap.dedent(
                """\
                %%websocket hello --js
                export function onMessage(message) {
                    return "Goodbye [" + message + "]";
                }
                """
            )
        ).stdout
        assert "handlers updated in place" in out and "1 open connections kept" in out
        ws.send("two")
        assert ws.recv(timeout=5) == "Goodbye [two]"


def test_js_error_at_run_time_is_reported_and_the_connection_stays(fresh: Kernel) -> None:
    fresh.run(
        textwrap.dedent(
            """\
            %%websocket thrower --js
            export function onMessage(message) {
                if (message === "boom") {
                    throw new Error("asked to fail");
                }
                return "ok " + message;
            }
            """
        )
    )
    with connect(url_of(fresh, "thrower")) as ws:
        ws.send("boom")
        ws.send("after")
        assert ws.recv(timeout=5) == "ok after"
    errors = [e for e in events(fresh, "thrower") if e["kind"] == "error"]
    assert len(errors) == 1 and "asked to fail" in errors[0]["detail"]
    assert ">:3:" in errors[0]["detail"]  # the line of the throw in the cell body


@pytest.mark.slow
def test_export_writes_js_and_another_kernel_serves_it(fresh: Kernel, tmp_path: Path) -> None:
    fresh.run(HELLO)
    folder = tmp_path / "js-export"
    out = fresh.run(f"%websocket export hello {folder}").stdout
    assert f"wrote {folder / 'hello.websocket'} and {folder / 'hello.js'}" in out
    cell_body = HELLO.split("\n", 1)[1]
    assert (folder / "hello.js").read_text() == cell_body
    assert not (folder / "hello.py").exists()
    descriptor = json.loads((folder / "hello.websocket").read_text())
    assert descriptor["handler"] == "js-export/hello.js"
    assert descriptor["endpoint"] == "hello"

    other = start_kernel()
    try:
        other.run("%load_ext ws_notebook\nimport json\nimport ws_notebook")
        loaded = other.run(f"%websocket load {folder}").stdout
        assert "hello: serving at" in loaded
        with connect(url_of(other, "hello")) as ws:
            ws.send("again")
            assert ws.recv(timeout=5) == "Hello from WebSocket! [again]"
        printed = [e["detail"] for e in events(other, "hello") if e["kind"] == "stdout"]
        assert len(printed) == 1 and printed[0].endswith(": again")
    finally:
        other.stop()


def test_export_refuses_a_python_module_in_the_way(fresh: Kernel, tmp_path: Path) -> None:
    fresh.run(HELLO)
    (tmp_path / "hello.py").write_text("def on_message(m, c): c.send('python')\n")
    reply = fresh.run(f"%websocket export hello {tmp_path}", check=False)
    assert reply.error is not None
    assert "would serve it instead of hello.js" in reply.stderr
    assert not (tmp_path / "hello.js").exists()
