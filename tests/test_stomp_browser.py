"""A codbex front end in headless Chromium: a page like the platform's WebSockets test page.

The page (served by the test from a loopback ``http://`` origin of its own, so every request to
the server is cross-origin, as from a front end on another port) loads the browser builds of
the installed npm packages, ``sockjs-client`` and stomp.js 2.3.3 (the STOMP client the
platform's test project ships), connects to ``/stomp`` of a ws_notebook server, subscribes to the
reply and error queues of an endpoint, sends ``{"from", "text"}`` and shows the reply as
"from: text (time)". Run once with SockJS's WebSocket, once with the ``xhr-streaming`` fallback.
"""

from __future__ import annotations

import asyncio
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ws_notebook import Descriptor, Handlers, Server

from .jupyter_server import chromium_page, needs_chromium
from .npm_clients import node_modules

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.timeout(120)]

PAGE = """<!doctype html>
<html><head><title>JavaScript WebSocket</title>
<script src="/node_modules/sockjs-client/dist/sockjs.min.js"></script>
<script src="/node_modules/stompjs/lib/stomp.min.js"></script>
<script>
  var stompClient = null;
  function connect(url, transports) {
    var socket = new SockJS(url, null, transports ? {transports: transports} : {});
    stompClient = Stomp.over(socket);
    stompClient.debug = null;
    stompClient.connect({}, function (frame) {
      document.getElementById('status').textContent = 'connected ' + socket.transport;
      stompClient.subscribe('/user/queue/reply/my-websocket', function (output) {
        showMessage(JSON.parse(output.body));
      });
      stompClient.subscribe('/user/queue/errors/my-websocket', function (error) {
        show('error: ' + error.body);
      });
    }, function (error) { show('failed: ' + error); });
  }
  function sendMessage() {
    var from = document.getElementById('from').value;
    var text = document.getElementById('text').value;
    stompClient.send('/ws/stomp/my-websocket', {}, JSON.stringify({from: from, text: text}));
  }
  function showMessage(message) {
    show(message.from + ': ' + message.text + ' (' + message.time + ')');
  }
  function show(line) {
    var p = document.createElement('p');
    p.appendChild(document.createTextNode(line));
    document.getElementById('response').appendChild(p);
  }
</script></head>
<body>
  <input type="text" id="from" placeholder="Choose a nickname"/>
  <p id="status">disconnected</p>
  <input type="text" id="text" placeholder="Write a message..."/>
  <button id="sendMessage" onclick="sendMessage();">Send</button>
  <div id="response"></div>
</body></html>
"""


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """The test page and the npm packages' files, from a loopback origin of their own."""
    modules = node_modules()
    root = modules.parent

    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            if self.path.startswith("/node_modules/"):
                super().do_GET()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(PAGE.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture
def ws_server() -> Iterator[Server]:
    """A ws_notebook server with ``my-websocket``, on a loop of its own thread (the page is
    driven by Playwright's synchronous API on this one)."""
    ready = threading.Event()
    holder: dict[str, object] = {}

    def on_message(message: str, client: object) -> str:
        if message == "boom":
            raise ValueError("bad input")
        return f"Hello from WebSocket! [{message}]"

    async def run() -> None:
        server = Server()
        server.registry.mount(
            Descriptor(endpoint="my-websocket", handler="my-handler.py"),
            Handlers.from_namespace({"on_message": on_message}),
        )
        server.start()
        stop = asyncio.Event()
        holder.update(server=server, loop=asyncio.get_running_loop(), stop=stop)
        ready.set()
        await stop.wait()
        server.stop()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder["server"]  # type: ignore[misc]
    holder["loop"].call_soon_threadsafe(holder["stop"].set)  # type: ignore[attr-defined]
    thread.join(10)


@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming"])
def test_the_platform_test_page(ws_server: Server, page_url: str, transport: str) -> None:
    url = f"http://127.0.0.1:{ws_server.port}/stomp"
    with chromium_page() as page:
        page.goto(page_url)
        page.evaluate("([url, t]) => connect(url, [t])", [url, transport])
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('connected')"
        )
        assert page.text_content("#status") == f"connected {transport}"
        page.fill("#from", "ada")
        page.fill("#text", "hi there")
        page.click("#sendMessage")
        page.fill("#text", "boom")
        page.click("#sendMessage")
        page.wait_for_function("document.querySelectorAll('#response p').length == 2")
        lines = page.eval_on_selector_all("#response p", "ps => ps.map(p => p.textContent)")
        assert re.fullmatch(r"ada: Hello from WebSocket! \[hi there\] \(\d\d:\d\d\)", lines[0])
        assert lines[1] == "error: on_message raised ValueError: bad input"
        page.screenshot(path=str(_artifacts() / f"stomp-page-{transport}.png"))


def _artifacts() -> Path:
    folder = Path(__file__).resolve().parent.parent / "test-artifacts"
    folder.mkdir(exist_ok=True)
    return folder
