"""Live panels in a real kernel: state read from later cells and from the IOPub stream."""

from __future__ import annotations

import html
import json
import time

import pytest
from websockets.sync.client import connect

from .kernels import Kernel
from .test_kernel import define, url_of

ECHO = "%%websocket echo --description 'Echo service'\ndef on_message(m, c):\n    c.send(m)\n"


def panel_state(kernel: Kernel, index: int = -1) -> dict:
    code = f"""
p = ws_notebook.widgets.panels()[{index}]
print(json.dumps({{
    "name": p.name, "rows": p.log_rows, "connections": p.connections.value,
    "counters": p.counters.value, "header": p.header.value, "log": p.log_view.value,
    "targets": list(p.target_menu.options), "updates": p.updates, "beat": p.watch.beat,
    "pause": [p.pause_button.description, p.pause_button.button_style],
    "running": p._timer.is_running(), "replaced_by": p.replaced_by,
}}, default=str), end="")
"""
    return json.loads(kernel.run(code).stdout)


def settle() -> None:
    """Give the kernel's loop time for a few panel flushes (every 200 ms)."""
    time.sleep(0.6)


@pytest.mark.slow
def test_panel_shows_connections_and_log_live(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO)
    state = panel_state(fresh)
    assert state["name"] == "echo"
    assert "Echo service" in state["header"] and "(serving)" in state["header"]
    # No jupyter-server-proxy in the test environment: no proxied path (the Binder test has one).
    assert "via Jupyter" not in state["header"]
    assert "no open connections" in state["connections"]
    url = url_of(fresh, "echo")
    with connect(url) as a, connect(url) as b:
        a.send("hello from a")
        a.recv(timeout=5)
        b.send(b"\x01\x02\x03")
        b.recv(timeout=5)
        settle()
        state = panel_state(fresh)
        ids = [row["client"] for row in state["rows"] if row["kind"] == "open"]
        assert len(ids) == 2
        for client_id in ids:
            assert f"<td>{client_id}</td>" in state["connections"]
        assert "2 open, 2 total" in state["counters"]
        assert state["targets"] == ["all clients", *ids]
        kinds = [(row["kind"], row["preview"]) for row in state["rows"]]
        assert ("in", "hello from a") in kinds and ("out", "01 02 03") in kinds
        assert "hello from a" in state["log"]
    settle()
    state = panel_state(fresh)
    assert "no open connections" in state["connections"]  # rows leave with their clients
    assert "0 open, 2 total" in state["counters"]
    assert [row["kind"] for row in state["rows"]].count("close") == 2


def test_errors_are_highlighted(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    define(fresh, "%%websocket bad\ndef on_message(m, c):\n    raise ValueError('no ' + m)\n")
    with connect(url_of(fresh, "bad")) as ws:
        ws.send("thanks")
        settle()
    state = panel_state(fresh)
    assert 'class="wsnb-error"' in state["log"]
    assert "on_message raised ValueError: no thanks" in state["log"]


@pytest.mark.slow
def test_filter_pause_clear_and_dropped(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO.replace("'Echo service'", "x --log-capacity 10"))
    url = url_of(fresh, "echo")
    with connect(url) as a, connect(url) as b:
        for i in range(5):
            a.send(f"apple {i}")
            a.recv(timeout=5)
        b.send("banana")
        b.recv(timeout=5)
        settle()
        state = panel_state(fresh)
        assert "log: 4 dropped" in state["counters"]  # 2 opens + 12 messages, capacity 10

        fresh.run("p = ws_notebook.widgets.panels()[-1]; p.filter_box.value = 'banana'")
        rows = panel_state(fresh)["rows"]
        assert rows and all("banana" in row["preview"] for row in rows)
        b_id = rows[0]["client"]
        fresh.run(f"p.filter_box.value = {b_id!r}")
        assert {row["client"] for row in panel_state(fresh)["rows"]} == {b_id}
        fresh.run("p.filter_box.value = ''")

        fresh.run("p.pause_button.value = True")
        frozen = panel_state(fresh)["log"]
        a.send("while paused")
        a.recv(timeout=5)
        settle()
        state = panel_state(fresh)
        assert state["log"] == frozen and "paused" in state["counters"]
        fresh.run("p.pause_button.value = False")
        settle()
        assert "while paused" in panel_state(fresh)["log"]

        fresh.run("p.clear_button.click()")
        assert panel_state(fresh)["rows"] == []


@pytest.mark.slow
def test_send_box_broadcasts_and_targets_one_client(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    define(fresh, "%%websocket quiet\n# no handlers: the notebook does the talking\n")
    url = url_of(fresh, "quiet")
    with connect(url) as a, connect(url) as b:
        settle()
        fresh.run(
            "p = ws_notebook.widgets.panels()[-1]; p.message_box.value = 'to all'; p.send_button.click()"
        )
        assert a.recv(timeout=5) == "to all" and b.recv(timeout=5) == "to all"
        target = panel_state(fresh)["targets"][2]
        fresh.run(
            f"p.target_menu.value = {target!r}; p.message_box.value = 'just you'; p.send_button.click()"
        )
        settle()
        rows = panel_state(fresh)["rows"]
        assert [(r["kind"], r["client"]) for r in rows if r["preview"] == "just you"] == [
            ("out", target)
        ]
        receiver = b if target != rows[0]["client"] else a
        assert receiver.recv(timeout=5) == "just you"


def test_rerun_and_close_stop_the_old_panel(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO)
    fresh.run("first = ws_notebook.widgets.panels()[-1]")
    define(fresh, ECHO)
    assert fresh.run(
        "len(ws_notebook.widgets.panels()), first._timer.is_running(), first.comm is None"
    ).results == ["(1, False, True)"]
    fresh.run("%websocket monitor")
    fresh.run("second = ws_notebook.widgets.panels()[-1]; second.close()")
    assert fresh.run("second._timer.is_running(), len(ws_notebook.widgets.panels())").results == [
        "(False, 1)"
    ]


def test_monitor_all_endpoints(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO.replace("echo", "one") + "\n")
    define(fresh, ECHO.replace("echo", "two"))
    fresh.run("%websocket monitor")
    with connect(url_of(fresh, "one")) as a, connect(url_of(fresh, "two")) as b:
        a.send("to one")
        a.recv(timeout=5)
        b.send("to two")
        b.recv(timeout=5)
        settle()
        state = panel_state(fresh)
    assert state["name"] is None and "All endpoints" in state["header"]
    assert {row["endpoint"] for row in state["rows"]} == {"one", "two"}
    reply = fresh.run("%websocket monitor nope", check=False)
    assert reply.error is not None and "no endpoint 'nope'" in reply.error


@pytest.mark.slow
def test_updates_are_throttled_under_load(fresh: Kernel) -> None:
    """A burst of messages costs a handful of widget updates, not one per message."""
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO)
    url = url_of(fresh, "echo")
    comm_messages = 0
    with connect(url) as ws:
        # Drain IOPub first, then count widget updates while 2,000 messages flow.
        while fresh.client.iopub_channel.msg_ready():
            fresh.client.get_iopub_msg(timeout=1)
        start = time.monotonic()
        for i in range(2000):
            ws.send(f"message {i}")
        for _ in range(2000):
            ws.recv(timeout=5)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                message = fresh.client.get_iopub_msg(timeout=0.1)
            except Exception:
                continue
            if message["msg_type"] == "comm_msg":
                comm_messages += 1
        elapsed = time.monotonic() - start
    flushes = elapsed / 0.2 + 2
    # At most a few widgets change per flush (header, counters, connections, log, menu).
    assert 0 < comm_messages <= flushes * 5, (comm_messages, elapsed)
    rows = panel_state(fresh)["rows"]
    assert len(rows) <= 200 and rows[-1]["preview"] == "message 1999"


def run_in_cell(kernel: Kernel, code: str, cell_id: str) -> None:
    """Run ``code`` as JupyterLab runs a cell: with its cell id in the request's metadata."""
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}}
    request = kernel.client.session.msg("execute_request", content, metadata={"cellId": cell_id})
    kernel.client.shell_channel.send(request)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = kernel.client.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
            assert reply["content"]["status"] == "ok", reply["content"]
            return
    raise AssertionError(f"no reply to cell {cell_id} within 30 s")


@pytest.mark.slow
def test_rates_never_go_negative_when_the_endpoint_goes(fresh: Kernel) -> None:
    """Unmounting (or stopping) drops the counters to zero: that is no negative rate."""
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO)
    with connect(url_of(fresh, "echo")) as ws:
        for i in range(40):
            ws.send(f"m{i}")
            ws.recv(timeout=5)
    time.sleep(3.5)  # past the 3 s rate window: its oldest sample now counts 80 messages
    fresh.run("%websocket stop echo")
    counters = []
    for _ in range(4):
        time.sleep(0.25)
        counters.append(panel_state(fresh)["counters"])
    assert all("messages/s: -" not in c and ", -" not in c for c in counters), counters
    assert "messages/s: 0 in, 0 out" in counters[-1]


@pytest.mark.slow
def test_a_cell_panel_says_when_a_later_cell_redefines_its_endpoint(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    run_in_cell(fresh, ECHO, "first")
    run_in_cell(fresh, ECHO.replace("Echo service", "Echo, second take"), "second")
    settle()
    first, second = panel_state(fresh, 0), panel_state(fresh, 1)
    assert first["replaced_by"] == "notebook:cell-second"
    assert "replaced by a later cell" in first["header"]
    with connect(url_of(fresh, "echo")) as ws:
        ws.send("only the second panel shows this")
        ws.recv(timeout=5)
        time.sleep(2.5)  # past a heartbeat: a retired panel still beats, so the page knows it live
    first_now, second_now = panel_state(fresh, 0), panel_state(fresh, 1)
    assert first_now["updates"] == first["updates"] and first_now["log"] == first["log"]
    assert first_now["beat"] > first["beat"]
    assert "only the second panel shows this" in second_now["log"]
    assert second["running"] and "replaced" not in second["header"]
    assert "Echo, second take" in second["header"]


def test_log_layout_pause_state_and_heartbeat(fresh: Kernel) -> None:
    """One endpoint: no endpoint column; a long payload's whole preview is in its cell."""
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO)
    long_text = json.dumps({"data": ["x" * 15] * 5})  # 105 characters: wider than the column
    with connect(url_of(fresh, "echo")) as ws:
        ws.send(long_text)
        ws.recv(timeout=5)
        settle()
        state = panel_state(fresh)
    assert "<th>endpoint</th>" not in state["log"] + state["connections"]
    assert f'<td tabindex="0">{html.escape(long_text)}</td>' in state["log"]
    assert state["beat"] > (time.time() - 10) * 1000  # the page's sign of a live kernel
    assert state["pause"] == ["Pause", ""]
    fresh.run("p = ws_notebook.widgets.panels()[-1]; p.pause_button.value = True")
    assert panel_state(fresh)["pause"] == ["Resume", "warning"]
    fresh.run("%websocket monitor")
    assert "<th>endpoint</th>" in panel_state(fresh)["log"]  # all endpoints: it tells them apart


def test_long_payloads_whole_in_the_panel_and_a_huge_one_bounded(fresh: Kernel) -> None:
    """A 5,000-character message is in the panel whole (click shows it); 1 MB is cut, saying
    how much more there was, so neither the log nor the panel holds it all."""
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO)
    long_text = json.dumps({"items": [{"id": n, "name": "x" * 30} for n in range(92)]})
    assert 4900 < len(long_text) < 5100
    huge = "h" * 1_000_000
    with connect(url_of(fresh, "echo"), max_size=None) as ws:
        ws.send(long_text)
        assert ws.recv(timeout=5) == long_text
        ws.send(huge)
        assert len(ws.recv(timeout=10)) == len(huge)
        settle()
        state = panel_state(fresh)
    rows = {(row["kind"], row["size"]): row for row in state["rows"]}
    whole = rows[("in", len(long_text))]
    assert whole["preview"] == long_text and whole["cut"] == 0
    assert f'<td tabindex="0">{html.escape(long_text)}</td>' in state["log"]
    cut = rows[("in", 1_000_000)]
    assert cut["preview"] == "h" * 8192 and cut["cut"] == 1_000_000 - 8192
    assert f'<td tabindex="0">{"h" * 8192} … 991,808 more characters</td>' in state["log"]
    assert len(state["log"]) < 100_000  # four rows of at most 8 KiB each, and the table


def test_a_long_printed_line_shows_as_far_as_the_log_kept_it(fresh: Kernel) -> None:
    """A handler's printed line: the panel shows the 4,000 characters the log kept, and how many
    more there were (the event's preview is only its first 120)."""
    fresh.run("import ws_notebook.widgets")
    define(fresh, "%%websocket loud\ndef on_message(m, c):\n    print('p' * 4999 + '!')\n")
    with connect(url_of(fresh, "loud")) as ws:
        ws.send("go")
        settle()
        state = panel_state(fresh)
    (row,) = [row for row in state["rows"] if row["kind"] == "stdout"]
    assert row["size"] == 5000 and row["cut"] == 1000 and len(row["preview"]) == 120
    assert f'<td tabindex="0">{"p" * 4000} … 1,000 more characters</td>' in state["log"]
