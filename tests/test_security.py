"""TLS, tokens, origins, limits and protocol errors, against a real server on loopback."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import ssl
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

import ws_notebook
from ws_notebook import Endpoint, Limits, Server, ServerError
from ws_notebook.access import check_token, mask, refusal

from .endpoints import mount


def mount_echo(server: Server, name: str = "echo", **extra: Callable) -> Endpoint:
    handlers = {"on_message": lambda message, client: client.send(message), **extra}
    return mount(server, name, **handlers)


async def closed(ws: websockets.ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the server to close the connection; its close code and reason."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason


# --- TLS --------------------------------------------------------------------------------------


async def test_wss_with_a_certificate_made_now(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    server = serve(certfile=str(certfile))
    mount_echo(server)
    url = server.url("echo")
    assert url.startswith("wss://127.0.0.1:")
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    async with websockets.connect(url, ssl=client_context) as ws:
        await ws.send("secret")
        assert await ws.recv() == "secret"
    # A client that does not trust the certificate fails the TLS handshake.
    with pytest.raises(ssl.SSLCertVerificationError):
        await websockets.connect(url, ssl=ssl.create_default_context())


def test_tls_files_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"cannot read .*missing\.pem: no such file"):
        Server(certfile=str(tmp_path / "missing.pem"))
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ServerError, match="cannot use certfile .*bad.pem"):
        Server(certfile=str(tmp_path / "bad.pem"))
    with pytest.raises(ServerError, match="a keyfile without a certfile"):
        Server(keyfile=str(tmp_path / "bad.pem"))


# --- tokens -----------------------------------------------------------------------------------


async def test_token_is_required_and_checked(serve: Callable[..., Server]) -> None:
    opened: list[str] = []
    server = serve(token="s3cret-token")
    mount_echo(server, on_open=lambda client: opened.append(client.id))
    url = server.url("echo")
    with pytest.raises(InvalidStatus) as missing:
        await websockets.connect(url)
    assert missing.value.response.status_code == 401
    assert missing.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(InvalidStatus) as wrong:
        await websockets.connect(url + "?token=guess")
    assert wrong.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as wrong_header:
        await websockets.connect(url, additional_headers={"Authorization": "Bearer guess"})
    assert wrong_header.value.response.status_code == 403
    # Without the token, not even the endpoints' names are revealed.
    with pytest.raises(InvalidStatus) as unknown:
        await websockets.connect(url.replace("/echo", "/nope"))
    assert unknown.value.response.status_code == 401
    assert opened == []  # the handler never ran

    async with websockets.connect(server.url("echo", with_token=True)) as ws:
        await ws.send("in")
        assert await ws.recv() == "in"
    async with websockets.connect(
        url, additional_headers={"Authorization": "Bearer s3cret-token"}
    ) as ws:
        await ws.send("in")
        assert await ws.recv() == "in"
    assert len(opened) == 2


async def test_auto_token_and_the_listing_needs_it(serve: Callable[..., Server]) -> None:
    server = serve(token="auto")
    assert server.token and len(server.token) >= 24
    assert server.token not in server.url("echo")  # shown URLs never carry it
    mount_echo(server)
    listing = f"http://127.0.0.1:{server.port}/websockets"
    status = await asyncio.to_thread(http_status, listing)
    assert status == 401
    assert await asyncio.to_thread(http_status, f"{listing}?token={server.token}") == 200


def http_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_check_token_and_mask() -> None:
    assert check_token("t", None, "") == 401
    assert check_token("t", "Bearer t", "") is None
    assert check_token("t", "bearer t", "") is None
    assert check_token("t", "Basic dDp0", "") == 401
    assert check_token("t", None, "token=t&x=1") is None
    assert check_token("t", None, "token=u") == 403
    assert check_token("t", "Bearer u", "token=t") is None
    assert mask("ws://h:1/websockets/service/e?token=abc&x=1") == (
        "ws://h:1/websockets/service/e?token=***&x=1"
    )
    assert mask("GET /x?a=1&token=abc") == "GET /x?a=1&token=***"
    assert mask("no secret here") == "no secret here"
    # The name as the server reads it: percent-encoded, it is still the token.
    assert check_token("t", None, "%74oken=t") is None
    assert mask("GET /x?%74oken=abc&t%6Fken=def") == "GET /x?%74oken=***&t%6Fken=***"
    assert mask("GET /x?tokens=abc&mytoken=def") == "GET /x?tokens=abc&mytoken=def"


def test_a_prefix_or_an_empty_token_is_refused() -> None:
    token = "s3cret-token-of-some-length"
    assert check_token(token, f"Bearer {token[:-1]}", "") == 403
    assert check_token(token, None, f"token={token[:5]}") == 403
    assert check_token(token, "Bearer ", "") == 403
    assert check_token(token, "Bearer", "") == 403
    assert check_token(token, None, "token=") == 403
    assert check_token(token, None, "token") == 403
    assert check_token(token, f"Bearer {token}x", "") == 403


async def test_a_prefix_or_an_empty_token_is_refused_on_the_wire(
    serve: Callable[..., Server],
) -> None:
    token = "s3cret-token-of-some-length"
    server = serve(token=token)
    mount_echo(server)
    url = server.url("echo")
    for attempt in (
        {"uri": f"{url}?token={token[:-1]}"},
        {"uri": f"{url}?token="},
        {"uri": url, "additional_headers": {"Authorization": "Bearer "}},
        {"uri": url, "additional_headers": {"Authorization": f"Bearer {token[:1]}"}},
    ):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(**attempt)
        assert refused.value.response.status_code == 403, attempt
    async with websockets.connect(f"{url}?token={token}") as ws:
        await ws.send("the whole token")
        assert await ws.recv() == "the whole token"


# --- origins ----------------------------------------------------------------------------------


async def test_origin_allow_list(serve: Callable[..., Server]) -> None:
    server = serve(allowed_origins=["https://app.example"])
    mount_echo(server)
    url = server.url("echo")
    async with websockets.connect(url, origin="https://app.example") as ws:
        await ws.send("ok")
        assert await ws.recv() == "ok"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin="https://other.example")
    assert refused.value.response.status_code == 403
    assert b"needs the server's token" in refused.value.response.body
    # ... unless the page carries the server's page token (as the browser widget does).
    async with websockets.connect(
        server.url("echo", with_token=True), origin="https://other.example"
    ) as ws:
        await ws.send("with the page token")
        assert await ws.recv() == "with the page token"
    # A local Jupyter page, straight or through its proxy: a loopback origin, allowed.
    for origin in (f"http://127.0.0.1:{server.port}", "http://localhost:8888"):
        async with websockets.connect(url, origin=origin) as ws:
            await ws.send("local page")
            assert await ws.recv() == "local page"
    everyone = serve(allowed_origins=["*"])
    mount_echo(everyone)
    async with websockets.connect(everyone.url("echo"), origin="https://anyone.example") as ws:
        await ws.send("all")
        assert await ws.recv() == "all"


# --- limits -----------------------------------------------------------------------------------


async def test_oversized_message_closes_with_1009_and_is_logged(
    serve: Callable[..., Server],
) -> None:
    server = serve(limits=Limits(max_message_size=1000))
    endpoint = mount_echo(server)
    async with (
        websockets.connect(server.url("echo")) as big,
        websockets.connect(server.url("echo")) as small,
    ):
        await big.send("x" * 1001)
        assert (await closed(big))[0] == 1009
        await small.send("y" * 1000)
        assert await small.recv() == "y" * 1000  # the others carry on
    close_events = [e.detail for e in endpoint.log.since() if e.kind == "close"]
    assert any(
        detail.startswith("1009 message too big") and "closed by the server" in detail
        for detail in close_events
    )


async def test_max_connections_refuses_with_a_reason(serve: Callable[..., Server]) -> None:
    server = serve(limits=Limits(max_connections=2))
    endpoint = mount_echo(server)
    url = server.url("echo")
    async with websockets.connect(url), websockets.connect(url):
        async with websockets.connect(url) as third:
            code, reason = await closed(third)
        assert code == 1013 and reason == "endpoint 'echo' is full (2 connections)"
        assert len(endpoint.clients) == 2
    assert any("refused a connection" in e.detail for e in endpoint.log.since())


async def test_client_that_does_not_read_is_disconnected(serve: Callable[..., Server]) -> None:
    server = serve(limits=Limits(max_send_queue=256 * 1024))
    endpoint = mount_echo(server)
    reader, writer = await raw_handshake(server.port, "/websockets/service/echo")
    # Fill the socket buffers and then the send queue: the client never reads.
    client = next(iter(endpoint.clients.values()))
    chunk = "z" * 65536
    sent = 0
    with pytest.raises(ConnectionError, match="does not read"):
        for _ in range(2000):  # bounded: 128 MiB at most
            client.send(chunk)
            sent += 1
            await asyncio.sleep(0)
    assert sent < 2000
    await asyncio.sleep(0.1)
    await wait_until(lambda: not endpoint.clients, timeout=2)  # dropped at once, no 5 s wait
    details = [e.detail for e in endpoint.log.since() if e.kind == "error"]
    assert len(details) == 1 and details[0].startswith("send queue full")
    closes = [e.detail for e in endpoint.log.since() if e.kind == "close"]
    assert closes == ["1008 send queue full: the client does not read (closed by the server)"]
    writer.close()


async def test_replies_held_for_a_burst_still_respect_the_send_queue(
    serve: Callable[..., Server],
) -> None:
    """Two messages in one segment: the first one's replies are held while the second waits in
    the buffer. A client that reads none of them is dropped with 1008 all the same, and the
    server goes on serving others."""
    server = serve(limits=Limits(max_send_queue=256 * 1024))

    def flood(message: str, client: ws_notebook.Client) -> None:
        for _ in range(50_000):  # 5 MB of 100-byte replies, held and written 64 KiB at a time
            client.send("r" * 100)

    endpoint = mount_echo(server, "flood", on_message=flood)
    mount_echo(server)
    reader, writer = await raw_handshake(server.port, "/websockets/service/flood")
    writer.write(frame(0x1, b"one") + frame(0x1, b"two"))
    await wait_until(lambda: not endpoint.clients, timeout=10)
    closes = [e.detail for e in endpoint.log.since() if e.kind == "close"]
    assert closes == ["1008 send queue full: the client does not read (closed by the server)"]
    async with websockets.connect(server.url("echo")) as ws:  # the others are still served
        await ws.send("hi")
        assert await ws.recv() == "hi"
    writer.close()


async def test_a_message_bigger_than_the_send_queue_reaches_a_reader(
    serve: Callable[..., Server],
) -> None:
    """The send queue limits the backlog, not the size of one message."""
    server = serve(limits=Limits(max_send_queue=64 * 1024, max_message_size=4 * 1024 * 1024))
    mount_echo(server)
    async with websockets.connect(server.url("echo"), max_size=None) as ws:
        big = "b" * (1024 * 1024)
        await ws.send(big)
        assert await ws.recv() == big


@pytest.mark.slow
async def test_dead_peer_is_closed_by_ping_timeout(serve: Callable[..., Server]) -> None:
    server = serve(limits=Limits(ping_interval=0.2, ping_timeout=0.4))
    endpoint = mount_echo(server)
    reader, writer = await raw_handshake(server.port, "/websockets/service/echo")
    assert len(endpoint.clients) == 1
    await wait_until(lambda: not endpoint.clients, timeout=10)  # it never answered a ping
    writer.close()
    details = [e.detail for e in endpoint.log.since() if e.kind == "close"]
    assert details and "ping" in details[0].lower()


async def test_compression_is_negotiated_when_on(serve: Callable[..., Server]) -> None:
    plain, deflate = serve(), serve(limits=Limits(compression=True))
    for server in (plain, deflate):
        mount_echo(server)
    async with websockets.connect(deflate.url("echo")) as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        await ws.send("a" * 10000)
        assert await ws.recv() == "a" * 10000
    async with websockets.connect(plain.url("echo")) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


# --- protocol errors --------------------------------------------------------------------------


async def test_invalid_utf8_text_closes_with_1007(serve: Callable[..., Server]) -> None:
    server = serve()
    endpoint = mount_echo(server)
    reader, writer = await raw_handshake(server.port, "/websockets/service/echo")
    writer.write(frame(0x1, b"\xff\xfe not utf-8"))
    code, reason = await read_close(reader)
    assert code == 1007 and reason == "text message is not valid UTF-8"
    writer.close()
    await wait_until(lambda: not endpoint.clients)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1016, 2999, 5000])
async def test_invalid_close_code_is_answered_with_1002(
    serve: Callable[..., Server], code: int
) -> None:
    server = serve()
    mount_echo(server)
    reader, writer = await raw_handshake(server.port, "/websockets/service/echo")
    writer.write(frame(0x8, struct.pack(">H", code)))
    assert await read_close(reader) == (1002, f"invalid close code {code}")
    writer.close()


async def test_valid_close_code_is_echoed(serve: Callable[..., Server]) -> None:
    server = serve()
    mount_echo(server)
    reader, writer = await raw_handshake(server.port, "/websockets/service/echo")
    writer.write(frame(0x8, struct.pack(">H", 4000) + b"bye"))
    assert (await read_close(reader))[0] == 4000
    writer.close()


async def test_slow_async_handler_is_reported_and_others_are_served(
    serve: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def on_message(message: str, client: object) -> None:
        if message == "block":
            await release.wait()
        client.send(message)

    server = serve(limits=Limits(slow_handler=0.2))
    endpoint = mount_echo(server, on_message=on_message)
    async with (
        websockets.connect(server.url("echo")) as stuck,
        websockets.connect(server.url("echo")) as other,
    ):
        await stuck.send("block")
        await asyncio.sleep(0.4)
        await other.send("free")
        assert await other.recv() == "free"
        release.set()
        assert await stuck.recv() == "block"
    slow = [e.detail for e in endpoint.log.since() if e.kind == "error"]
    assert slow == [
        "on_message still running after 0.2 s: later messages from this client wait for it"
    ]


# --- raw frames, for what well-behaved client libraries refuse to send -------------------------


async def raw_handshake(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert response.startswith(b"HTTP/1.1 101"), response
    await asyncio.sleep(0.05)  # let the server run open()
    return reader, writer


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame, as a client must send it."""
    mask_key = os.urandom(4)
    masked = bytes(b ^ mask_key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask_key + masked


async def read_close(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Read frames until the server's close frame; its code and reason."""
    while True:
        head = await asyncio.wait_for(reader.readexactly(2), 5)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(length)
        if head[0] & 0x0F == 0x8:
            return struct.unpack(">H", payload[:2])[0], payload[2:].decode()


async def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_no_log_shows_the_token(
    serve: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    """Every log path of the server: access log, refusals, 404s, handler errors, Tornado's own."""

    def on_message(message: str, client: object) -> None:
        raise ValueError(f"handler failed on {message!r}")

    server = serve(token="do-not-print-me")
    mount_echo(server)
    mount(server, "failing", on_message=on_message)
    secrets = ("do-not-print-me", "wrong-but-secret", "encoded-secret")
    with caplog.at_level(logging.DEBUG):  # every logger
        for path in ("/websockets/service/nope", "/elsewhere", "/websockets", "/healthz"):
            for query in ("token=do-not-print-me", "%74oken=encoded-secret", "a=1&token="):
                url = f"http://127.0.0.1:{server.port}{path}?{query}"
                await asyncio.to_thread(http_status, url)
        for query in ("?token=wrong-but-secret", "?t%6Fken=encoded-secret"):
            with pytest.raises(InvalidStatus):
                await websockets.connect(server.url("echo") + query)
        async with websockets.connect(server.url("failing", with_token=True)) as ws:
            await ws.send("x")
            await wait_until(
                lambda: any("handler failed" in r.getMessage() for r in caplog.records)
            )
        async with websockets.connect(server.url("echo", with_token=True)) as ws:
            await ws.send("x")
            await ws.recv()
    logged = "\n".join(
        logging.Formatter().format(record)  # with tracebacks
        for record in caplog.records
        if not record.name.startswith("websockets")  # the test's client logs what it sends
    )
    assert "token=***" in logged and "%74oken=***" in logged  # the requests were logged, masked
    assert "handler failed on 'x'" in logged
    for secret in secrets:
        assert secret not in logged


@pytest.mark.slow
async def test_serve_logs_no_token_when_stopped_during_an_async_handler(tmp_path: Path) -> None:
    """SIGTERM while a handler awaits: Tornado logged the request line, token and all."""
    from .test_cli import Served, write_endpoint

    write_endpoint(
        tmp_path,
        "slow",
        "import asyncio\n\nasync def on_message(message, client):\n    await asyncio.sleep(30)\n",
    )
    command = [sys.executable, "-m", "ws_notebook", "serve", str(tmp_path), "--port", "0"]
    served = await Served([*command, "--token", "do-not-print-me"]).started()
    try:
        for query in ("?token=do-not-print-me", "?%74oken=do-not-print-me"):
            ws = await websockets.connect(served.url("slow") + query)
            await ws.send("wait for me")
        await served.wait_for(r"slow c2 open")
        served.process.send_signal(signal.SIGTERM)
        assert await served.exit_code() == 0
    finally:
        served.kill()
    output = served.stderr + "\n".join(served.stdout)
    assert "shutting down" in output
    assert "do-not-print-me" not in output


# --- DNS rebinding and the origin policy -------------------------------------------------------


def test_the_origin_policy_depends_on_where_the_server_listens() -> None:
    page = "http://127.0.0.1:8888"
    for loopback in ("127.0.0.1", "::1", "localhost"):
        assert refusal(page, "127.0.0.1:9000", [], loopback) is None
        assert refusal(None, "localhost:9000", [], loopback) is None  # a program
        assert refusal("https://elsewhere.example", "127.0.0.1:9000", [], loopback) is not None
        assert refusal("null", "127.0.0.1:9000", [], loopback) is not None  # a sandboxed frame
    for everywhere in ("0.0.0.0", "192.168.1.20", "::"):
        # On a network address, a loopback page is any page of the machine that browses it.
        assert refusal(page, "192.168.1.20:9000", [], everywhere) is not None
        assert refusal(page, "192.168.1.20:9000", [page], everywhere) is None
        assert refusal(None, "192.168.1.20:9000", [], everywhere) is None
        assert refusal(None, "server.lan:9000", [], everywhere) is None
    assert refusal("https://x.example", "127.0.0.1:9000", ["*"], "127.0.0.1") is None


def test_a_dns_name_other_than_localhost_needs_the_token_on_loopback() -> None:
    rebound = "http://evil.example:9000"
    assert refusal(rebound, "evil.example:9000", [], "127.0.0.1") is not None
    assert refusal(None, "evil.example:9000", [], "127.0.0.1") is not None
    assert refusal(rebound, "evil.example:9000", ["*"], "127.0.0.1") is not None
    assert refusal(None, "app.localhost:9000", [], "127.0.0.1") is None
    # Look-alikes and repeated headers are not loopback.
    for host in ("127.0.0.1.evil.example", "localhost.evil.example", "0x7f000001", "127.0.0.1,x"):
        assert refusal(None, f"{host}:9000", [], "127.0.0.1") is not None, host
        assert refusal(f"http://{host}:9000", "127.0.0.1:9000", [], "127.0.0.1") is not None
    assert refusal("http://127.0.0.1:1, https://evil.example", "127.0.0.1", [], "::1") is not None
    assert refusal("HTTP://LOCALHOST:8888", "127.0.0.1:9000", [], "127.0.0.1") is None
    assert refusal(None, "[::1]:9000", [], "::1") is None


async def test_dns_rebinding_is_refused(serve: Callable[..., Server]) -> None:
    """A page whose name was re-pointed at 127.0.0.1: same origin as far as Host says."""
    opened: list[str] = []
    server = serve()
    mount_echo(server, on_open=lambda client: opened.append(client.id))
    rebound = f"evil.example:{server.port}"
    url = f"ws://{rebound}/websockets/service/echo"
    loopback = {"host": "127.0.0.1", "port": server.port}  # where the name now points
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin=f"http://{rebound}", **loopback)
    assert refused.value.response.status_code == 403
    assert b"evil.example" in refused.value.response.body
    # The page's own fetch("/websockets") sends no Origin: refused by its Host.
    assert await asyncio.to_thread(http_get, server.port, "/websockets", rebound) == 403
    assert opened == []
    # Programs and local pages are not asked for anything; the page token lets the name in.
    assert await asyncio.to_thread(http_get, server.port, "/websockets", "localhost") == 200
    async with websockets.connect(
        f"{url}?token={server.page_token}", origin=f"http://{rebound}", **loopback
    ) as ws:
        await ws.send("with the token")
        assert await ws.recv() == "with the token"


async def test_a_server_on_all_interfaces_refuses_loopback_pages(
    serve: Callable[..., Server],
) -> None:
    server = serve(host="0.0.0.0")
    mount_echo(server)
    url = f"ws://127.0.0.1:{server.port}/websockets/service/echo"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin="http://127.0.0.1:8888")
    assert refused.value.response.status_code == 403
    async with websockets.connect(url) as ws:  # a program
        await ws.send("no origin")
        assert await ws.recv() == "no origin"
    async with websockets.connect(
        f"{url}?token={server.page_token}", origin="http://127.0.0.1:8888"
    ) as ws:
        await ws.send("page with the token")
        assert await ws.recv() == "page with the token"


def http_get(port: int, path: str, host: str) -> int:
    """The status of a GET to 127.0.0.1:PORT that names the server as ``host``."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


# --- settings kept across a restart ------------------------------------------------------------


async def test_a_restart_keeps_the_settings_not_passed_again() -> None:
    ws_notebook.reset()
    try:
        ws_notebook.serve("echo", {"on_message": lambda message, client: client.send(message)})
        ws_notebook.stop()
        ws_notebook.start(token="s3cret", limits=Limits(max_message_size=100))
        ws_notebook.stop()
        ws_notebook.start(allowed_origins=["https://app.example"])
        ws_notebook.stop()
        server = ws_notebook.start(limits=Limits(max_message_size=100, max_connections=5))
        assert server.token == "s3cret"
        assert server.allowed_origins == ["https://app.example"]
        url = ws_notebook.url("echo")
        with pytest.raises(InvalidStatus) as missing:
            await websockets.connect(url)
        assert missing.value.response.status_code == 401
        async with websockets.connect(ws_notebook.url("echo", with_token=True)) as ws:
            await ws.send("x" * 101)
            assert await closed(ws) == (1009, "message too big")
    finally:
        ws_notebook.reset()
