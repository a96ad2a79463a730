"""Kernel lifecycle and secrets: shutdown closes clients, re-runs leak nothing, tokens stay hidden."""

from __future__ import annotations

import json
import os
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .kernels import Kernel, start_kernel
from .test_kernel import ECHO, define, url_of

pytestmark = [pytest.mark.slow, pytest.mark.kernel]  # kernels of their own, many cells


def test_kernel_shutdown_closes_clients_with_1001() -> None:
    kernel = start_kernel()
    try:
        kernel.run("%load_ext ws_notebook")
        define(kernel, ECHO)
        url = url_of(kernel, "echo")
        with connect(url) as ws:
            ws.send("before")
            assert ws.recv(timeout=5) == "before"
            kernel.manager.shutdown_kernel(now=False)  # a graceful shutdown, as Jupyter does
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1001
    finally:
        kernel.client.stop_channels()
        if kernel.manager.is_alive():
            kernel.manager.shutdown_kernel(now=True)


def resources(kernel: Kernel) -> dict[str, int]:
    """Open file descriptors, asyncio tasks and live panels of the kernel process."""
    code = (
        "import asyncio, os, ws_notebook.widgets\n"
        "print(json.dumps({'fds': len(os.listdir('/proc/self/fd')),"
        " 'tasks': len(asyncio.all_tasks()),"
        " 'panels': len(ws_notebook.widgets.panels())}), end='')"
    )
    return json.loads(kernel.run(code).stdout)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
def test_rerunning_a_cell_many_times_leaks_nothing(fresh: Kernel) -> None:
    define(fresh, ECHO)
    url = url_of(fresh, "echo")
    with connect(url) as ws:  # a connection stays open across every re-run
        ws.send("warm up")
        ws.recv(timeout=5)
        time.sleep(0.3)
        before = resources(fresh)
        for i in range(40):
            define(fresh, ECHO.replace("client.send(message)", f"client.send('{i} ' + message)"))
        ws.send("after")
        assert ws.recv(timeout=5) == "39 after"
        time.sleep(0.3)
        after = resources(fresh)
    assert after["panels"] == before["panels"] == 1
    assert after["fds"] <= before["fds"] + 2, (before, after)
    assert after["tasks"] <= before["tasks"] + 1, (before, after)


def test_token_never_shown(fresh: Kernel) -> None:
    fresh.run("%websocket stop")
    fresh.run("ws_notebook.reset()")
    out = fresh.run("%websocket start --token auto").stdout
    token = fresh.value("ws_notebook.default_server().token")
    assert len(token) >= 24 and token not in out
    assert "clients must send the token" in out
    shown = define(fresh, ECHO) + fresh.run("%websocket url echo").stdout
    shown += "".join(fresh.run("%websocket list").results)
    assert token not in shown
    with connect(fresh.value("ws_notebook.url('echo', with_token=True)")) as ws:
        ws.send("with token")
        assert ws.recv(timeout=5) == "with token"
    time.sleep(0.5)
    panel = fresh.run(
        "p = ws_notebook.widgets.panels()[-1]\n"
        "print(p.header.value + p.log_view.value + p.connections.value, end='')"
    ).stdout
    assert "with token" in panel and token not in panel
    log = "".join(fresh.run("%websocket log echo").results)
    assert token not in log
    fresh.run("%websocket stop")
    fresh.run("ws_notebook.reset()")


@pytest.mark.parametrize("start", ["%websocket start --token auto", "%websocket start"])
def test_saved_notebook_holds_no_token(
    tmp_path, start: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """The browser widget's saved state, every output, and the kernel's own stderr.

    One cell starts the server and makes the requests that are logged (404s, a handler error,
    whose text it prints from the event log); Tornado's log goes to the kernel's stderr (the
    terminal running Jupyter), which the kernel inherits from this test.
    """
    import nbformat
    from nbclient import NotebookClient

    secret = tmp_path / "token"
    cells = [
        "%load_ext ws_notebook\nimport asyncio, urllib.request, ws_notebook",
        "%%websocket echo --no-panel\ndef on_message(message, client):\n    raise ValueError(message)",
        "%websocket browser echo",
        "%websocket url echo\n%websocket list",
        "%websocket stop\n"
        f"%{start[1:]}\n"
        "server = ws_notebook.default_server()\n"
        f"open({str(secret)!r}, 'w').write(server.page_token)\n"
        "def get(path):\n"
        "    try:\n"
        "        urllib.request.urlopen(f'http://127.0.0.1:{server.port}{path}', timeout=5)\n"
        "    except Exception as error:\n"
        "        print(type(error).__name__)\n"
        "for query in (f'token={server.page_token}', f'%74oken={server.page_token}'):\n"
        "    await asyncio.to_thread(get, f'/websockets/service/nope?{query}')\n"
        "    await asyncio.to_thread(get, f'/websockets?{query}x')\n"
        "import websockets\n"
        "async with websockets.connect(ws_notebook.url('echo', with_token=True)) as ws:\n"
        "    await ws.send('boom')\n"
        "    await asyncio.sleep(0.5)\n"
        "print([e['detail'] for e in ws_notebook.events('echo') if e['kind'] == 'error'])",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=60, kernel_name="python3", store_widget_state=True).execute()
    saved = tmp_path / "saved.ipynb"
    nbformat.write(notebook, saved)
    token = secret.read_text()
    text = saved.read_text()
    assert len(token) >= 24
    assert "application/vnd.jupyter.widget-state+json" in text  # the widget state was saved
    assert '"endpoint": "echo"' in text  # the browser widget's among it
    assert "on_message raised ValueError: boom" in text
    assert token not in text
    terminal = capfd.readouterr().err
    assert "token=***" in terminal and "%74oken=***" in terminal  # the requests were logged
    assert token not in terminal
