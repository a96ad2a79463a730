"""STOMP frames and sessions (``ws_notebook.stomp``), without a network: a session talks to a
transport that records what it sends."""

from __future__ import annotations

import asyncio
import re

import pytest

from ws_notebook.stomp import Broker, Parser, StompError, StompSession, encode


def parse(data: bytes | str, max_frame: int = 1024, version: str = "1.2") -> list:
    parser = Parser(max_frame)
    parser.version = version
    parser.feed(data.encode() if isinstance(data, str) else data)
    frames = []
    while (frame := parser.next()) is not None:
        frames.append(frame)
    return frames


def refused(data: bytes | str, **options: object) -> str:
    with pytest.raises(StompError) as caught:
        parse(data, **options)  # type: ignore[arg-type]
    return caught.value.message


# -- parsing -------------------------------------------------------------------------------------


def test_frames_split_over_messages_and_several_in_one() -> None:
    parser = Parser(1024)
    parser.feed(b"\n\r\nSEND\ndestination:/topic/a\n\nhel")  # heart-beats first
    assert parser.next() is None
    parser.feed(b"lo\0\nSEND\r\ndestination:/topic/b\r\n\r\nworld\0SUBSCRIBE\nid:1\n")
    first, second = parser.next(), parser.next()
    assert (first.command, first.headers, first.body) == (
        "SEND",
        {"destination": "/topic/a"},
        "hello",
    )
    assert (second.headers["destination"], second.body) == ("/topic/b", "world")
    assert parser.next() is None  # SUBSCRIBE's headers are not complete yet
    parser.feed(b"destination:/topic/c\n\n\0")
    assert parser.next().headers == {"id": "1", "destination": "/topic/c"}


def test_content_length_lets_a_body_hold_nul_and_counts_bytes() -> None:
    body = "é\0x".encode()
    (frame,) = parse(b"SEND\ndestination:/q\ncontent-length:%d\n\n%s\0" % (len(body), body))
    assert frame.body == "é\0x"


def test_repeated_header_first_one_counts() -> None:
    (frame,) = parse("SEND\ndestination:/topic/first\ndestination:/topic/second\n\n\0")
    assert frame.headers["destination"] == "/topic/first"


def test_header_escapes_by_version() -> None:
    text = "SEND\ndestination:/a\\cb\\nc\\\\d\\re\n\n\0"
    assert parse(text)[0].headers["destination"] == "/a:b\nc\\d\re"
    assert "invalid escape sequence '\\\\r'" in refused(text, version="1.1")
    raw = parse(text, version="1.0")[0].headers["destination"]
    assert raw == "/a\\cb\\nc\\\\d\\re"  # STOMP 1.0 has no escapes
    connect = parse("CONNECT\nlogin:a\\tb\n\n\0")[0]  # CONNECT is never escaped
    assert connect.headers["login"] == "a\\tb"


def test_invalid_escapes_are_named() -> None:
    assert (
        refused("SEND\ndestination:/a\\tb\n\n\0") == "invalid escape sequence '\\\\t' in a header"
    )
    assert refused("SEND\ndestination:/a\\\n\n\0").startswith("invalid escape sequence '\\\\'")


def test_bad_command_is_named() -> None:
    assert refused("HELLO\n\n\0") == "unknown command 'HELLO'"
    assert refused("MESSAGE\ndestination:/a\n\n\0") == "unknown command 'MESSAGE'"  # server's only
    assert refused("send\n\n\0") == "unknown command 'send'"  # commands are case-sensitive


def test_malformed_header_line() -> None:
    assert refused("SEND\ndestination /a\n\n\0") == "malformed header line 'destination /a'"


def test_oversized_frames() -> None:
    assert refused("SEND\ndestination:/a\n\n" + "x" * 2000, max_frame=1000) == "frame too large"
    assert refused("SEND\n" + "h:v\n" * 400, max_frame=1000) == "frame too large"  # headers
    announced = "SEND\ndestination:/a\ncontent-length:5000\n\nxy"
    assert refused(announced, max_frame=1000) == "frame too large"  # refused before the body
    (frame,) = parse("SEND\ndestination:/a\n\n" + "x" * 900 + "\0", max_frame=1000)
    assert len(frame.body) == 900


def test_content_length_problems() -> None:
    assert refused("SEND\ncontent-length:abc\n\nx\0") == "invalid content-length 'abc'"
    assert (
        refused("SEND\ncontent-length:1\n\nxy\0")
        == "frame does not end where its content-length says"
    )


def test_body_must_be_utf8() -> None:
    assert refused(b"SEND\ndestination:/a\n\n\xff\xfe\0") == "SEND frame's body is not UTF-8 text"


def test_encode_escapes_and_lengths() -> None:
    frame = encode("MESSAGE", {"destination": "/a:b\nc"}, "é", version="1.2")
    assert frame == "MESSAGE\ndestination:/a\\cb\\nc\ncontent-length:2\n\né\0"
    assert encode("CONNECTED", {"x": "a:b"}) == "CONNECTED\nx:a:b\n\n\0"  # never escaped
    assert encode("MESSAGE", {"d": "a\r"}, version="1.1") == "MESSAGE\nd:a\r\n\n\0"
    assert parse(encode("SEND", {"destination": "/a\\b:c\r\n"}))[0].headers == {
        "destination": "/a\\b:c\r\n"
    }


# -- sessions -----------------------------------------------------------------------------------


class Wire:
    """A transport that keeps what the session sends, and whether it closed it."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: str) -> None:
        self.sent.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def frames(self) -> list:
        """What was sent, parsed back (server frames are parsed as client ones would be)."""
        found = []
        for text in self.sent:
            command, _, rest = text.partition("\n")
            head, _, body = rest.partition("\n\n")
            pairs = (line.split(":", 1) for line in head.split("\n") if line)
            headers = {name: unescape(value) for name, value in pairs}
            found.append((command, headers, body.rstrip("\0")))
        return found


def unescape(value: str) -> str:
    table = {"n": "\n", "c": ":", "\\": "\\", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: table[m[1]], value)


def session(broker: Broker | None = None, **options: object) -> tuple[StompSession, Wire]:
    wire = Wire()
    return StompSession(wire, broker or Broker(), **options), wire  # type: ignore[arg-type]


def connect(stomp: StompSession, headers: str = "accept-version:1.2\nheart-beat:0,0\n") -> None:
    stomp.on_message(f"CONNECT\n{headers}\n\0")


async def test_version_negotiation() -> None:
    for accepted, version in [
        ("", "1.0"),
        ("accept-version:1.0,1.1\n", "1.1"),
        ("accept-version:1.1,1.2,2.0\n", "1.2"),
    ]:
        stomp, wire = session()
        connect(stomp, accepted)
        command, headers, _ = wire.frames()[0]
        assert (command, headers["version"]) == ("CONNECTED", version)
        assert ("heart-beat" in headers) == (version != "1.0")
    stomp, wire = session()
    connect(stomp, "accept-version:2.0,3.0\n")
    command, headers, body = wire.frames()[0]
    assert (command, headers["message"], headers["version"]) == (
        "ERROR",
        "no common STOMP version",
        "1.0,1.1,1.2",
    )
    assert "the client accepts 2.0, 3.0" in body
    assert wire.closed == (1002, "no common STOMP version") and stomp.closed


async def test_errors_name_the_problem_then_close() -> None:
    cases = {
        "SEND\ndestination:/topic/a\n\nx\0": "expected CONNECT or STOMP first, got SEND",
        "CONNECT\naccept-version:1.2\nheart-beat:fast\n\n\0": "invalid heart-beat header 'fast'",
    }
    for frame, message in cases.items():
        stomp, wire = session()
        stomp.on_message(frame)
        assert wire.frames()[-1][1]["message"] == message
        assert wire.closed is not None
    after_connect = {
        "SEND\nreceipt:77\n\nx\0": "SEND frame has no 'destination' header",
        "SUBSCRIBE\ndestination:/topic/a\n\n\0": "SUBSCRIBE frame has no 'id' header",
        "SUBSCRIBE\nid:1\n\n\0": "SUBSCRIBE frame has no 'destination' header",
        "SUBSCRIBE\nid:1\ndestination:/a\nack:sometimes\n\n\0": "invalid ack mode 'sometimes'",
        "SEND\ndestination:/elsewhere\n\nx\0": "no destination '/elsewhere'",
        "COMMIT\ntransaction:t\n\n\0": "no transaction 't'",
        "ACK\n\n\0": "ACK frame has no 'id' header",
        "CONNECT\naccept-version:1.2\n\n\0": "already connected: a second CONNECT",
        "BOGUS\n\n\0": "unknown command 'BOGUS'",
    }
    for frame, message in after_connect.items():
        stomp, wire = session()
        connect(stomp)
        stomp.on_message(frame)
        command, headers, _ = wire.frames()[-1]
        assert (command, headers["message"]) == ("ERROR", message)
        assert wire.closed == (1002, message)
        if "receipt" in frame:
            assert headers["receipt-id"] == "77"  # the ERROR answers the frame's receipt
        stomp.on_message("SEND\ndestination:/topic/a\n\nx\0")  # nothing more is handled
        assert wire.frames()[-1][0] == "ERROR"


async def test_oversized_frame_over_several_messages() -> None:
    stomp, wire = session(max_frame=100)
    connect(stomp)
    stomp.on_message("SEND\ndestination:/topic/a\n\n" + "x" * 60)
    assert wire.closed is None
    stomp.on_message("x" * 60)
    assert wire.frames()[-1][1]["message"] == "frame too large"
    assert wire.closed == (1002, "frame too large")


async def test_topics_subscriptions_receipts_and_unsubscribe() -> None:
    broker = Broker()
    alice, alice_wire = session(broker)
    bob, bob_wire = session(broker)
    connect(alice)
    connect(bob, "accept-version:1.1\n")
    bob.on_message("SUBSCRIBE\nid:s1\ndestination:/topic/news\nreceipt:r1\n\n\0")
    alice.on_message("SEND\ndestination:/topic/news\ncontent-type:text/plain\n\nfirst\0")
    bob.on_message("UNSUBSCRIBE\nid:s1\n\n\0")
    alice.on_message("SEND\ndestination:/topic/news\n\nsecond\0")
    frames = bob_wire.frames()
    assert [f[0] for f in frames] == ["CONNECTED", "RECEIPT", "MESSAGE"]
    assert frames[1][1] == {"receipt-id": "r1"}
    _, headers, body = frames[2]
    assert body == "first"
    assert headers["subscription"] == "s1" and headers["destination"] == "/topic/news"
    assert headers["message-id"] and headers["content-length"] == "5"
    assert [f[0] for f in alice_wire.frames()] == ["CONNECTED"]


async def test_transactions_wait_for_commit() -> None:
    broker = Broker()
    reader, wire = session(broker)
    writer, _ = session(broker)
    connect(reader)
    connect(writer)
    reader.on_message("SUBSCRIBE\nid:0\ndestination:/queue/q\nack:client\n\n\0")
    writer.on_message(
        "BEGIN\ntransaction:t1\n\n\0SEND\ndestination:/queue/q\ntransaction:t1\n\nkept\0"
    )
    writer.on_message(
        "BEGIN\ntransaction:t2\n\n\0SEND\ndestination:/queue/q\ntransaction:t2\n\ndropped\0"
    )
    assert len(wire.frames()) == 1
    writer.on_message("ABORT\ntransaction:t2\n\n\0COMMIT\ntransaction:t1\n\n\0")
    messages = [f for f in wire.frames() if f[0] == "MESSAGE"]
    assert [m[2] for m in messages] == ["kept"]
    assert messages[0][1]["ack"] == messages[0][1]["message-id"]  # client ack, STOMP 1.2
    reader.on_message(f"ACK\nid:{messages[0][1]['ack']}\n\n\0")
    assert reader.closed is False


async def test_disconnect_sends_its_receipt_then_closes() -> None:
    stomp, wire = session()
    connect(stomp)
    stomp.on_message("DISCONNECT\nreceipt:bye\n\n\0")
    assert wire.frames()[-1] == ("RECEIPT", {"receipt-id": "bye"}, "")
    assert wire.closed == (1000, "DISCONNECT") and stomp.closed


async def test_heart_beats_both_ways() -> None:
    stomp, wire = session(heart_beat=(50, 50))
    connect(stomp, "accept-version:1.2\nheart-beat:40,30\n")
    assert wire.frames()[0][1]["heart-beat"] == "50,50"
    await asyncio.sleep(0.07)
    stomp.on_message("\n")  # the client's heart-beat
    await asyncio.sleep(0.07)  # the server sends every max(50, 30) ms
    assert wire.sent.count("\n") >= 2
    assert wire.closed is None  # the client was heard from less than 2 x max(40, 50) ms ago
    await asyncio.sleep(0.25)
    assert wire.closed is not None and wire.closed[0] == 1001
    assert "no heart-beat from the client" in wire.closed[1]


async def test_no_heart_beats_when_either_side_says_zero() -> None:
    stomp, wire = session(heart_beat=(50, 50))
    connect(stomp, "accept-version:1.2\nheart-beat:0,0\n")
    await asyncio.sleep(0.15)
    assert "\n" not in wire.sent and wire.closed is None
    stomp.on_close()


async def test_a_connection_that_never_connects_is_closed() -> None:
    stomp, wire = session(connect_timeout=0.05)
    await asyncio.sleep(0.15)
    assert wire.frames()[-1][1]["message"] == "no CONNECT frame within 0.05 s"
    assert stomp.closed
    stomp, wire = session(connect_timeout=0.05)
    connect(stomp)
    await asyncio.sleep(0.15)
    assert not stomp.closed
