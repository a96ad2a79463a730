"""A browser's WebSocket stays open through a blocking cell (issue 12), in headless Chromium.

Browsers send no pings of their own, so what could drop them is the server's pings (here every
second, with a second to answer) and a handshake that nobody completes. The page is served from
a loopback ``http://`` origin, from which Chromium may open ``ws://127.0.0.1``.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import pytest

from .jupyter_server import chromium_page, loopback_page, needs_chromium
from .kernels import Kernel, start_kernel

pytestmark = [pytest.mark.browser, pytest.mark.kernel, needs_chromium, pytest.mark.timeout(180)]

BLOCK = 5  # seconds the cell blocks: several of the server's ping periods

PAGE = b"""<!doctype html><title>busy</title><script>
window.events = [];
window.open_socket = (url, name) => {
  const ws = new WebSocket(url);
  ws.onopen = () => events.push([name, "open", Date.now()]);
  ws.onmessage = (e) => events.push([name, "message", e.data]);
  ws.onclose = (e) => events.push([name, "close", e.code]);
  window[name] = ws;
};
</script>"""


@pytest.fixture
def page_url() -> Iterator[str]:
    with loopback_page(PAGE) as url:
        yield url


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    started = start_kernel()
    started.run("%load_ext ws_notebook\nimport time, ws_notebook")
    started.run("%websocket start --ping-interval 1 --ping-timeout 1")
    started.run(
        "%%websocket echo --no-panel\ndef on_message(message, client):\n    client.send('re ' + message)\n"
    )
    yield started
    started.stop()


def wait_reply(kernel: Kernel, msg_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            message = kernel.client.get_shell_msg(timeout=0.5)
        except queue.Empty:
            continue
        if message["parent_header"].get("msg_id") == msg_id:
            return message["content"]
    raise AssertionError("the blocking cell never ended")


def test_a_browser_client_stays_open_through_a_blocking_cell(kernel: Kernel, page_url: str) -> None:
    url = kernel.value("ws_notebook.url('echo')")
    with chromium_page() as page:
        page.goto(page_url)
        page.evaluate("url => open_socket(url, 'first')", url)
        page.wait_for_function("events.some(e => e[0] == 'first' && e[1] == 'open')")
        msg_id = kernel.client.execute(f"time.sleep({BLOCK})")
        started = time.time()
        time.sleep(1.5)
        page.evaluate("['a', 'b', 'c'].forEach(m => first.send(m))")
        page.evaluate("url => open_socket(url, 'second')", url)  # a new client, mid-block
        page.wait_for_function(
            "events.some(e => e[0] == 'second' && e[1] == 'open')", timeout=BLOCK * 1000
        )
        opened_after = time.time() - started
        assert opened_after < BLOCK - 1, f"the handshake waited for the cell ({opened_after:.1f} s)"
        assert page.evaluate("events.filter(e => e[1] == 'message').length") == 0
        assert wait_reply(kernel, msg_id)["status"] == "ok"
        page.evaluate("second.send('d')")
        page.wait_for_function("events.filter(e => e[1] == 'message').length == 4")
        time.sleep(2.5)  # past the server's ping timeout after the block
        events = page.evaluate("events.filter(e => e[1] != 'open')")
        # Each client's messages in order, once each, and no close. (Between clients there is
        # no order: on a loaded machine `d`, sent after the block, can overtake the backlog.)
        for name, replies in (("first", ["re a", "re b", "re c"]), ("second", ["re d"])):
            assert [e[1:] for e in events if e[0] == name] == [["message", r] for r in replies]
        assert len(events) == 4, events
        assert page.evaluate("[first.readyState, second.readyState]") == [1, 1]
