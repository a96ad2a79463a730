"""The panel's traffic chart: the per-second series from counters (plain Python), its SVG
snapshot, and the chart widget in a real kernel while real clients send."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest
from websockets.sync.client import connect

from ws_notebook.series import STALL, Counters, TrafficSeries, nice_ceiling, render_svg

from .kernels import Kernel
from .test_kernel import define, url_of

T0 = 1_700_000_000.0  # a wall-clock second, so buckets line up with whole numbers


def sampled(samples: list[tuple[float, Counters]], seconds: int = 60) -> TrafficSeries:
    series = TrafficSeries(seconds)
    for now, counters in samples:
        series.sample(now, counters)
    return series


# --- the series --------------------------------------------------------------------------------


def test_the_first_sample_is_a_baseline_and_only_whole_seconds_count() -> None:
    series = TrafficSeries(60)
    assert series.sample(T0 + 0.1, Counters(500, 400, 3, 7)) is False  # history before the panel
    assert series.sample(T0 + 0.5, Counters(510, 405, 3, 7)) is False  # same second: no change
    assert series.as_dict()["in"] == []
    assert series.sample(T0 + 1.1, Counters(530, 420, 4, 8)) is True  # a second completed
    data = series.as_dict()
    assert (data["in"], data["out"], data["open"], data["opened"]) == ([10], [5], [3], [0])
    assert data["end"] == T0 + 1 and data["seconds"] == 60 and data["stalls"] == []


def test_steady_traffic_five_samples_a_second_changes_the_chart_once_a_second() -> None:
    series = TrafficSeries(60)
    changes = 0
    for tick in range(51):  # 10 s at the panel's 200 ms, 100 messages/s in, 50 out
        now = T0 + 0.1 + tick * 0.2
        changes += series.sample(now, Counters(tick * 20, tick * 10, 2, 2))
    data = series.as_dict()
    assert changes == 10
    # The first second is the panel's first: it began with the baseline, at T0 + 0.1.
    assert data["in"] == [80] + [100] * 9 and data["out"] == [40] + [50] * 9
    assert data["open"] == [2] * 10


def test_memory_is_bounded_by_the_window() -> None:
    series = TrafficSeries(30)
    for tick in range(1000):
        series.sample(T0 + tick * 0.5, Counters(tick, tick, 1, 1))
    data = series.as_dict()
    assert all(len(data[key]) == 30 for key in ("in", "out", "open", "opened", "closed"))
    assert data["end"] == T0 + 499


def test_a_stall_is_marked_and_its_messages_are_spread_over_it_not_lost() -> None:
    # 2 s at 50 messages/s, sampled every 200 ms from T0 + 0.1 to T0 + 2.1.
    before = [(T0 + 0.1 + i * 0.2, Counters(i * 10, i * 10, 1, 1)) for i in range(11)]
    # The kernel's loop was blocked for 12.4 s; 1,003 messages were counted across the gap.
    after = [
        (T0 + 14.5, Counters(1103, 1103, 1, 1)),
        (T0 + 15.5, Counters(1153, 1153, 1, 1)),
        (T0 + 16.5, Counters(1153, 1153, 1, 1)),
    ]
    data = sampled(before + after).as_dict()
    assert data["in"][:3] == [40, 50, 10]
    assert data["stalls"] == [[3, 11]]  # the 11 seconds with no sample, T0+3 .. T0+13
    spread = data["in"][3:15]  # those and T0+14, where the samples began again
    assert max(spread) - min(spread) <= 1 and sum(spread) == 1003  # none lost
    assert data["open"][3:14] == [1] * 11  # the last known count through the stall
    assert data["in"][15:] == [50] and sum(data["in"]) == 1153


def test_a_short_pause_is_no_stall() -> None:
    samples = [(T0, Counters()), (T0 + 0.9, Counters(5, 5)), (T0 + 0.9 + STALL - 0.1, Counters())]
    assert sampled(samples).as_dict()["stalls"] == []


def test_a_gap_longer_than_the_window_costs_no_more_than_the_window() -> None:
    series = TrafficSeries(20)
    series.sample(T0, Counters())
    started = time.perf_counter()
    series.sample(T0 + 10**9, Counters(10**9, 0, 0, 0))  # a laptop that slept for 30 years
    assert time.perf_counter() - started < 1.0
    data = series.as_dict()
    assert len(data["in"]) == 20 and data["stalls"] == [[0, 20]] and data["in"][-1] == 1


def test_a_reconnect_within_one_second_shows_as_a_close_and_an_open() -> None:
    data = sampled(
        [
            (T0 + 0.5, Counters(0, 0, 1, 1)),
            (T0 + 1.5, Counters(10, 10, 1, 1)),
            (T0 + 1.7, Counters(10, 10, 0, 1)),  # dropped
            (T0 + 1.9, Counters(12, 12, 1, 2)),  # back, as a new connection
            (T0 + 2.5, Counters(20, 20, 1, 2)),
            (T0 + 3.5, Counters(20, 20, 0, 2)),  # closed for good
            (T0 + 4.5, Counters(20, 20, 0, 2)),
        ]
    ).as_dict()
    assert data["in"] == [0, 12, 8, 0] and data["open"] == [1, 1, 1, 0]
    assert data["opened"] == [0, 1, 0, 0] and data["closed"] == [0, 1, 0, 1]


def test_counters_going_back_start_a_new_baseline() -> None:
    """An endpoint unmounted under a monitor of all endpoints: no negative rate, no spike."""
    data = sampled(
        [
            (T0 + 0.5, Counters(1000, 1000, 2, 5)),
            (T0 + 1.5, Counters(1100, 1100, 2, 5)),
            (T0 + 2.5, Counters(40, 40, 1, 1)),  # the busier endpoint went
            (T0 + 3.5, Counters(60, 60, 1, 1)),
            (T0 + 4.5, Counters(60, 60, 1, 1)),
        ]
    ).as_dict()
    assert data["in"] == [0, 100, 0, 20] and data["closed"] == [0, 0, 1, 0]


def test_a_clock_set_back_counts_into_the_current_second() -> None:
    data = sampled(
        [
            (T0 + 0.5, Counters()),
            (T0 + 1.5, Counters(5)),
            (T0 - 30, Counters(9)),
            (T0 + 2.5, Counters(12)),
            (T0 + 3.5, Counters(12)),
        ]
    ).as_dict()
    assert data["in"] == [0, 9, 3] and data["end"] == T0 + 3


@pytest.mark.parametrize("bad", [0, 5, 10.5, "300", None])
def test_a_bad_window_is_a_clear_error(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"seconds: a window of at least 10 seconds, not {bad!r}"):
        TrafficSeries(bad)  # type: ignore[arg-type]


def test_what_the_page_is_sent_stays_small_at_a_full_window() -> None:
    """Five minutes of 99,999 messages/s and 9,999 connections: one trait of about 10 kB, sent
    once a second at most (the log view sends more in one flush under load)."""
    series = TrafficSeries()
    for tick in range(302):
        series.sample(T0 + 0.5 + tick, Counters(tick * 99_999, tick * 99_999, 9_999, tick * 9))
    data = series.as_dict()
    assert len(data["in"]) == 300 and max(data["in"]) == 99_999
    assert len(json.dumps(data)) < 11_000


def test_counters_of_real_endpoints_in_a_registry() -> None:
    from ws_notebook.descriptor import Descriptor
    from ws_notebook.handlers import Handlers
    from ws_notebook.registry import Registry

    registry = Registry()
    one = registry.mount(Descriptor(endpoint="one", handler="one.py"), Handlers()).endpoint
    two = registry.mount(Descriptor(endpoint="two", handler="two.py"), Handlers()).endpoint
    one.messages_in, one.messages_out, one.connections = 3, 4, 5
    two.messages_in, two.messages_out, two.connections = 10, 20, 1
    assert Counters.of(registry) == Counters(13, 24, 0, 6)
    assert Counters.of([]) == Counters(0, 0, 0, 0)


def test_the_recorder_keeps_each_endpoint_and_their_sum() -> None:
    """What a panel shown later starts with: per endpoint and in all, counting what an endpoint
    mounted between two samples did before the second; a copy goes on on its own."""
    from ws_notebook.descriptor import Descriptor
    from ws_notebook.handlers import Handlers
    from ws_notebook.registry import Registry
    from ws_notebook.series import Recorder

    registry = Registry()

    def mount(name: str) -> Any:
        return registry.mount(Descriptor(endpoint=name, handler=f"{name}.py"), Handlers()).endpoint

    one = mount("one")
    one.messages_in = 1000  # before the recorder: not charted
    recorder = Recorder(60)
    recorder.sample(T0 + 0.5, list(registry))
    one.messages_in += 10
    two = mount("two")
    two.messages_in = 5  # mounted since the last sample: all of it is charted
    recorder.sample(T0 + 1.5, list(registry))
    recorder.sample(T0 + 2.5, list(registry))
    assert recorder.history("one").as_dict()["in"] == [0, 10]
    assert recorder.history("two").as_dict()["in"] == [5]
    assert recorder.history(None).as_dict()["in"] == [0, 15]
    copy = recorder.history("one")
    one.messages_in += 7
    copy.sample(T0 + 2.7, Counters.of([one]))  # into the second the recorder had begun
    copy.sample(T0 + 3.5, Counters.of([one]))
    assert copy.as_dict()["in"] == [0, 10, 7]
    assert recorder.history("one").as_dict()["in"] == [0, 10]  # the recorder's is as it was
    registry.unmount("two")
    recorder.sample(T0 + 3.5, list(registry))
    assert recorder.history("two").as_dict()["in"] == []  # forgotten once unmounted
    assert Recorder(60, from_zero=True).history(None).as_dict()["in"] == []


# --- the drawing -------------------------------------------------------------------------------


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 1.5, 3, 7, 10, 11, 499, 12_345)] == [
        1,
        1,
        2,
        5,
        10,
        10,
        20,
        500,
        20_000,
    ]


def points(svg: str, key: str) -> list[tuple[float, float]]:
    found = re.search(rf'class="wsnb-{key}"[^>]* points="([^"]*)"', svg)
    assert found, key
    return [tuple(map(float, pair.split(","))) for pair in found.group(1).split()]


def test_the_svg_draws_each_second_and_the_stall() -> None:
    before = [(T0 + 0.5 + i, Counters(i * 40, i * 20, 1, 1)) for i in range(5)]
    after = [(T0 + 10.5 + i, Counters(160 + i * 100, 80 + i * 50, 2, 2)) for i in range(4)]
    data = sampled(before + after).as_dict()
    assert data["in"] == [0, 40, 40, 40, 40, 0, 0, 0, 0, 0, 0, 100, 100]
    svg = render_svg(data, width=640, height=120)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    drawn_in, drawn_out = points(svg, "in"), points(svg, "out")
    assert len(drawn_in) == len(drawn_out) == 13
    # Newest at the right edge (640 - 30); the top of the scale is the peak's nice ceiling.
    assert drawn_in[-1][0] == 610.0 and ">100</text>" in svg  # in peaks at 100/s
    assert min(y for _, y in drawn_in) == 16.0  # the top of the plot
    assert min(y for _, y in drawn_out) == pytest.approx(16 + 88 / 2, abs=0.1)  # 50/s
    assert drawn_in[0][0] == pytest.approx(610 - 12 * 570 / 60, abs=0.1)  # 60 s across 570 px
    assert svg.count('class="wsnb-stall"') == 1 and "kernel busy 5 s" in svg
    assert svg.count('class="wsnb-opened"') == 1  # the second connection
    legend = re.search(r'class="wsnb-legend"[^>]*>(.*?)</text>', svg).group(1)
    assert re.sub("<[^>]+>", "", legend) == "in 100/s · out 50/s · open 2 · peak 100/s"


@pytest.mark.parametrize("kept", [5, 60, 200, 300, 400])
def test_the_time_axis_spans_what_is_kept_from_one_minute_to_the_window(kept: int) -> None:
    samples = [(T0 + 0.5 + i, Counters(i, i, 1, 1)) for i in range(kept + 1)]
    svg = sampled(samples, seconds=300).svg(width=640)
    drawn = points(svg, "in")
    span = min(300, max(60, kept))
    assert len(drawn) == min(kept, 300) and drawn[-1][0] == 610.0
    assert drawn[0][0] == pytest.approx(610 - (len(drawn) - 1) * 570 / span, abs=0.1)
    start = time.strftime("%H:%M:%S", time.localtime(T0 + kept - span))
    assert f">{start}</text>" in svg


def test_an_empty_series_draws_a_frame_that_says_so() -> None:
    svg = TrafficSeries(60).svg()
    assert "no whole second sampled yet" in svg and "wsnb-in" not in svg


# --- the widget in a real kernel -----------------------------------------------------------------

ECHO = "%%websocket echo\ndef on_message(m, c):\n    c.send(m)\n"


def chart(kernel: Kernel, index: int = -1) -> dict:
    code = f"print(json.dumps(ws_notebook.widgets.panels()[{index}].chart.series), end='')"
    return json.loads(kernel.run(code).stdout)


def wait_for(kernel: Kernel, check, what: str, timeout: float = 15) -> dict:
    """Read the chart from later cells until ``check(series)``; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        series = chart(kernel)
        if check(series):
            return series
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}: {series}"
        time.sleep(0.3)


@pytest.mark.slow
def test_the_chart_follows_traffic_connections_and_a_busy_kernel(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO)
    url = url_of(fresh, "echo")
    with connect(url) as ws:
        for i in range(300):
            ws.send(f"burst {i}")
        for _ in range(300):
            ws.recv(timeout=5)
        # Right after the burst, a cell blocks the kernel for 4 s while the client sends more.
        fresh.client.execute("import time; time.sleep(4)")
        time.sleep(1)
        for i in range(20):
            ws.send(f"during {i}")
        for _ in range(20):
            ws.recv(timeout=15)
        series = wait_for(fresh, lambda s: s["stalls"] and sum(s["in"]) == 320, "a stall")
        ((first, length),) = series["stalls"]
        assert length >= 2 and sum(series["out"]) == 320
        # The burst is charted before the stall; what waited for the kernel, over it and after.
        assert sum(series["in"][:first]) == 300 and max(series["in"][:first]) >= 100
        assert sum(series["in"][first:]) == 20
        assert series["open"][-1] == 1 and sum(series["opened"]) == 1
    # The client went: the open connections drop and a close is marked.
    series = wait_for(fresh, lambda s: s["open"][-1] == 0, "the close")
    assert sum(series["closed"]) == 1 and sum(series["in"]) == sum(series["out"]) == 320
    # The static snapshot (a notebook viewer, an untrusted notebook) draws the same series.
    html = fresh.run(
        "print(ws_notebook.widgets.panels()[-1]._repr_mimebundle_()['text/html'], end='')"
    ).stdout
    image = re.search(r'<img class="wsnb-chart-snapshot" alt="[^"]+" [^>]*src="([^"]+)">', html)
    assert image and image.group(1).startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(image.group(1).split(",", 1)[1]).decode()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" class="wsnb-chart"')
    assert 'class="wsnb-stall"' in svg and 'class="wsnb-closed"' in svg


@pytest.mark.slow
def test_the_page_gets_the_series_at_most_once_a_second(fresh: Kernel) -> None:
    """While traffic flows, the chart's trait reaches the page on IOPub, and changes."""
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO)
    chart_id = fresh.value("ws_notebook.widgets.panels()[-1].chart.model_id")
    while fresh.client.iopub_channel.msg_ready():
        fresh.client.get_iopub_msg(timeout=1)
    updates: list[dict] = []
    with connect(url_of(fresh, "echo")) as ws:
        start = time.monotonic()
        while time.monotonic() - start < 4:  # 4 s of traffic at about 200 messages/s
            for _ in range(10):
                ws.send("tick")
            for _ in range(10):
                ws.recv(timeout=5)
            time.sleep(0.05)
            while fresh.client.iopub_channel.msg_ready():
                message = fresh.client.get_iopub_msg(timeout=1)
                content = message["content"]
                if message["msg_type"] == "comm_msg" and content["comm_id"] == chart_id:
                    updates.append(content["data"]["state"]["series"])
        elapsed = time.monotonic() - start
    assert 2 <= len(updates) <= elapsed + 2, (len(updates), elapsed)
    assert len({json.dumps(update) for update in updates}) == len(updates)  # each one news
    assert updates[-1]["in"][-1] > 0 and len(updates[-1]["in"]) > len(updates[0]["in"])


@pytest.mark.slow
def test_a_monitor_of_all_endpoints_charts_their_sum(fresh: Kernel) -> None:
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO.replace("echo", "one"))
    define(fresh, ECHO.replace("echo", "two"))
    fresh.run("%websocket monitor")
    with connect(url_of(fresh, "one")) as a, connect(url_of(fresh, "two")) as b:
        for ws, count in ((a, 30), (b, 70)):
            for _ in range(count):
                ws.send("x")
            for _ in range(count):
                ws.recv(timeout=5)
        series = wait_for(fresh, lambda s: sum(s["in"]) == 100, "both endpoints' messages")
        assert series["open"][-1] == 2


OUTBOUND = """\
%%websocket probe --connect {url} --reconnect
def on_open(client):
    client.send("0")
def on_message(message, client):
    if int(message) < 99:
        return str(int(message) + 1)
"""


@pytest.mark.slow
def test_an_outbound_connection_and_its_reconnect_are_charted_too(fresh: Kernel) -> None:
    """A connection the kernel opened (to its own echo endpoint): the same chart."""
    fresh.run("import ws_notebook.widgets")
    define(fresh, ECHO.replace("echo", "echo --no-panel"))
    define(fresh, OUTBOUND.format(url=fresh.value("ws_notebook.url('echo')")))
    assert fresh.value("ws_notebook.widgets.panels()[-1].name") == "probe"
    series = wait_for(fresh, lambda s: sum(s["in"]) == 100, "100 echoes")
    assert sum(series["out"]) == 100 and series["open"][-1] == 1 and sum(series["opened"]) == 1
    fresh.run("ws_notebook.endpoint('echo').close_all()")  # the far end drops it: it reconnects
    series = wait_for(fresh, lambda s: sum(s["in"]) == 200, "the reconnected connection's echoes")
    assert sum(series["opened"]) == 2 and sum(series["closed"]) == 1 and series["open"][-1] == 1


@pytest.mark.slow
def test_a_panel_shown_after_a_burst_starts_with_it(fresh: Kernel) -> None:
    """No panel while the traffic flowed: ``%websocket monitor`` shows it at once, from the
    history sampled since the extension was loaded; a fresh server starts a fresh history."""
    define(fresh, ECHO.replace("echo", "echo --no-panel"))
    assert fresh.value("len(ws_notebook.widgets.panels())") == "0"
    with connect(url_of(fresh, "echo")) as ws:
        for i in range(300):
            ws.send(f"burst {i}")
        for _ in range(300):
            ws.recv(timeout=5)
        time.sleep(1.5)  # the burst's second is over: a whole second of the history
        shown = "%websocket monitor {}\nprint(json.dumps(ws_notebook.widgets.panels()[-1]" + (
            ".chart.series), end='')"
        )
        echo, every = (json.loads(fresh.run(shown.format(name)).stdout) for name in ("echo", ""))
    for series in echo, every:
        assert sum(series["in"]) == sum(series["out"]) == 300 and max(series["in"]) >= 100
        assert series["open"][-1] == 1 and sum(series["opened"]) == 1
    fresh.run("ws_notebook.reset()")
    assert sum(json.loads(fresh.run(shown.format("")).stdout)["in"]) == 0


def snapshot_svg(bundle: dict) -> str:
    """The chart's SVG in a panel's static snapshot (its ``text/html``)."""
    html = bundle["text/html"]
    html = "".join(html) if isinstance(html, list) else html
    image = re.search(r'<img class="wsnb-chart-snapshot" alt="[^"]+" [^>]*src="([^"]+)">', html)
    assert image and image.group(1).startswith("data:image/svg+xml;base64,"), html
    return base64.b64decode(image.group(1).split(",", 1)[1]).decode()


def peak(svg: str) -> int:
    legend = re.search(r'class="wsnb-legend"[^>]*>(.*?)</text>', svg).group(1)
    found = re.search(r"peak ([\d,]+)/s", re.sub("<[^>]+>", "", legend))
    return int(found.group(1).replace(",", "")) if found else 0


@pytest.mark.slow
@pytest.mark.kernel
def test_a_saved_notebook_snapshot_shows_the_traffic_after_the_display(tmp_path) -> None:
    """A notebook run by nbclient (as ``nbconvert --execute`` saves it, no page): the panel's
    static snapshot, displayed before any traffic, is refreshed with ``update_display`` as the
    chart changes, so viewers without the widget (GitHub, nbviewer) see the burst."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext ws_notebook\nimport asyncio, websockets, ws_notebook"),
        nbformat.v4.new_code_cell(ECHO),
        nbformat.v4.new_code_cell(
            'async with websockets.connect(ws_notebook.url("echo")) as ws:\n'
            "    for i in range(300):\n"
            '        await ws.send(f"burst {i}")\n'
            "    for _ in range(300):\n"
            "        await ws.recv()\n"
            "    await asyncio.sleep(8)  # the kernel's loop runs: the panel flushes"
        ),
    ]
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute(cwd=str(tmp_path))
    (panel,) = [o for o in notebook.cells[1].outputs if o.output_type == "display_data"]
    assert "application/vnd.jupyter.widget-view+json" in panel.data
    svg = snapshot_svg(panel.data)
    assert peak(svg) >= 100 and 'class="wsnb-in"' in svg, svg
