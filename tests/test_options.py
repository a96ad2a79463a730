"""Every option of ``%websocket start`` and of ``ws-notebook serve`` takes effect on the wire.

An option parsed and then silently dropped on its way to the server would pass any test that
only reads the options back, so each is checked by what a client sees: the size limit (1009),
the connection limit (1013), the send queue (1008), pings, permessage-deflate, allowed
origins (403), TLS and the handshake timeout. The kernel and the serve subprocess
each get several options at once, and the same checks.
"""

from __future__ import annotations

import ast
import contextlib
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from .kernels import Kernel
from .test_cli import Served, write_endpoint
from .test_security import frame

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]  # ws-notebook serve, timers of seconds

WAIT = 15.0
# Tornado caps the ping timeout at the interval: a timeout well under it tells the two apart.
PING_INTERVAL = 2.0
PING_TIMEOUT = 0.4
LIMITS = [
    "--max-message-size",
    "1000",
    "--max-connections",
    "2",
    "--max-send-queue",
    "262144",
    "--ping-interval",
    str(PING_INTERVAL),
    "--ping-timeout",
    str(PING_TIMEOUT),
    "--compression",
    "--allow-origin",
    "https://app.example",
    "--allow-origin",
    "https://two.example",
]

HANDLER = """\
def on_message(message, client):
    if message == "flood":  # 5 MB of replies to a client that does not read them
        for _ in range(50_000):
            client.send("r" * 100)
    else:
        client.send(message)
"""


# --- what a client sees ----------------------------------------------------------------------------


def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes the connection; the code it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            ws.recv(timeout=WAIT)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


def raw_client(url: str) -> socket.socket:
    """A client that completes the handshake and then does only what the test does."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=WAIT)
    sock.sendall(
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def frames_until_closed(sock: socket.socket) -> list[tuple[float, int]]:
    """Read, never answering, until the server's close frame: each frame's time and opcode.

    Times are seconds from the call. The server sends this client only pings and a close,
    short frames whose length is in the second byte.
    """
    start = time.monotonic()
    frames: list[tuple[float, int]] = []
    received = b""
    with sock:
        while True:
            while len(received) >= 2 and len(received) >= 2 + received[1]:
                frames.append((time.monotonic() - start, received[0] & 0x0F))
                received = received[2 + received[1] :]
                if frames[-1][1] == 0x8:
                    return frames
            chunk = sock.recv(4096)
            assert chunk, f"the connection ended without a close frame, after {frames}"
            received += chunk


def seconds_until_hangup(sock: socket.socket) -> float:
    start = time.monotonic()
    with sock, contextlib.suppress(ConnectionResetError):
        while sock.recv(4096):
            pass
    return time.monotonic() - start


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def check_limits(url: str, closes: Callable[[], list[str]]) -> None:
    """The LIMITS options, seen by clients of the echo endpoint at ``url``.

    ``closes`` gives the server's close events so far (their details: code and reason), for
    what a client cannot read on the wire: why the server dropped it.
    """
    with connect(url) as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        ws.send("a" * 1000)  # at the limit
        assert ws.recv(timeout=WAIT) == "a" * 1000
        ws.send("a" * 1001)
        assert close_code(ws) == 1009

    with (
        connect(url, origin="https://app.example"),  # allowed origins, and the connection limit
        connect(url, origin="https://two.example"),
        connect(url) as third,
    ):
        assert close_code(third) == 1013
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin="https://other.example", open_timeout=WAIT)
    assert refused.value.response.status_code == 403

    # Pings: a client that never answers is closed; one that does (websockets) is kept.
    with connect(url) as answering:
        frames = frames_until_closed(raw_client(url))
        (ping_at, ping), *_, (closed_at, close) = frames
        assert (ping, close) == (0x9, 0x8), frames
        assert PING_INTERVAL * 0.8 < ping_at < PING_INTERVAL + 3, frames
        assert PING_TIMEOUT * 0.8 < closed_at - ping_at < (PING_INTERVAL + PING_TIMEOUT) / 2, frames
        answering.send("still here")
        assert answering.recv(timeout=WAIT) == "still here"
    wait_for(lambda: any("ping" in close.lower() for close in closes()), "close for a ping")

    flooded = raw_client(url)  # asks for 5 MB and reads none of it
    flooded.sendall(frame(0x1, b"flood"))
    try:
        wait_for(lambda: any(close.startswith("1008 ") for close in closes()), "1008 close")
    finally:
        flooded.close()


# --- in a kernel: %websocket start -----------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[trustme.CA, Path, Path]]:
    """A CA, and a certificate for 127.0.0.1 it signed, in PEM files the kernel can read."""
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    issued.private_key_pem.write_to_path(str(keyfile))
    yield authority, certfile, keyfile


def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


def test_every_websocket_start_option_takes_effect(
    fresh: Kernel, certificate: tuple[trustme.CA, Path, Path]
) -> None:
    fresh.run("%%websocket echo --no-panel\n" + HANDLER)  # starts a server with the defaults
    url = fresh.value("ws_notebook.url('echo')")
    with connect(url) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers  # no --compression

    fresh.run("%websocket stop")
    fresh.run(f"%websocket start {' '.join(LIMITS)} --handshake-timeout 1")
    url = fresh.value("ws_notebook.url('echo')")

    def closes() -> list[str]:
        return ast.literal_eval(  # the kernel prints a list of strings
            fresh.value("[e['detail'] for e in ws_notebook.events('echo') if e['kind'] == 'close']")
        )

    check_limits(url, closes)
    # A connection that never sends its request is closed after --handshake-timeout.
    idle = socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=WAIT)
    assert seconds_until_hangup(idle) < 1 + 5

    authority, certfile, keyfile = certificate
    fresh.run("%websocket stop")
    fresh.run(f"%websocket start --certfile {certfile} --keyfile {keyfile}")
    url = fresh.value("ws_notebook.url('echo')")
    assert url.startswith("wss://127.0.0.1:")
    with connect(url, ssl=trusting(authority)) as ws:
        ws.send("secret")
        assert ws.recv(timeout=WAIT) == "secret"


# --- ws-notebook serve -------------------------------------------------------------------------------


def served(folder: Path, *options: str) -> Served:
    """``ws-notebook serve FOLDER --port 0 OPTIONS``, once it is serving."""
    command = [sys.executable, "-m", "ws_notebook", "serve", str(folder), "--port", "0"]
    process = Served([*command, "--no-watch", *options])
    deadline = time.monotonic() + WAIT
    while not any(" serving " in line for line in process.lines):
        if process.process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"serve did not start:\n{process.stderr}")
        time.sleep(0.02)
    line = next(line for line in process.lines if " serving " in line)
    scheme_and_port = line.split(" at ", 1)[1].split("/websockets", 1)[0]
    process.scheme, port = scheme_and_port.split("://")
    process.port = int(port.rsplit(":", 1)[1])
    return process


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_endpoint(tmp_path, "echo", HANDLER)
    return tmp_path


def test_every_serve_option_takes_effect(
    project: Path, certificate: tuple[trustme.CA, Path, Path]
) -> None:
    server = served(project, *LIMITS, "--handshake-timeout", "1")
    try:

        def closes() -> list[str]:
            return [line.split(" close ", 1)[1] for line in server.lines if " close " in line]

        check_limits(server.url("echo"), closes)
        # A connection that never sends its request is closed after --handshake-timeout.
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        assert seconds_until_hangup(idle) < 1 + 5
    finally:
        server.kill()

    authority, certfile, keyfile = certificate
    server = served(project, "--certfile", str(certfile), "--keyfile", str(keyfile))
    try:
        assert server.url("echo").startswith("wss://127.0.0.1:")
        with connect(server.url("echo"), ssl=trusting(authority)) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers  # no --compression
            ws.send("secret")
            assert ws.recv(timeout=WAIT) == "secret"
    finally:
        server.kill()


def test_serve_refuses_meaningless_limits(project: Path) -> None:
    for option, value in (("--max-message-size", "0"), ("--ping-timeout", "-1")):
        server = Served([sys.executable, "-m", "ws_notebook", "serve", str(project), option, value])
        assert server.process.wait(timeout=WAIT) == 2
        server.kill()
        assert option in server.stderr and "serving" not in server.stderr
