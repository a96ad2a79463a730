"""The bounded event log of an endpoint."""

from __future__ import annotations

import json
import time

import pytest

from ws_notebook.events import LINE_PREVIEW_CHARS, PREVIEW_BYTES, PREVIEW_CHARS, Event, EventLog


def kinds(events: list[Event]) -> list[str]:
    return [event.kind for event in events]


def seqs(events: list[Event]) -> list[int]:
    return [event.seq for event in events]


def fill(log: EventLog, count: int) -> None:
    for i in range(count):
        log.record("in", f"c{i}", size=i, preview=f"m{i}")


def test_empty_log() -> None:
    log = EventLog()
    assert log.capacity == 1000
    assert len(log) == 0
    assert log.total == 0
    assert log.dropped == 0
    assert log.since() == []


def test_record_fields() -> None:
    log = EventLog()
    before = time.time()
    log.record("open", "client-1")
    log.record("error", "client-1", detail="boom")
    log.record("close", "client-1", detail="1000 bye")
    after = time.time()
    events = log.since()
    assert [tuple(e)[:1] + tuple(e)[2:] for e in events] == [
        (0, "open", "client-1", 0, "", ""),
        (1, "error", "client-1", 0, "", "boom"),
        (2, "close", "client-1", 0, "", "1000 bye"),
    ]
    assert all(before <= e.time <= after for e in events)
    assert all(isinstance(e, Event) for e in events)
    assert log.total == 3


def test_bounded_capacity_keeps_the_newest() -> None:
    log = EventLog(capacity=3)
    fill(log, 5)
    assert log.capacity == 3
    assert len(log) == 3
    assert log.total == 5
    assert seqs(log.since()) == [2, 3, 4]
    assert [e.client for e in log.since()] == ["c2", "c3", "c4"]


def test_dropped_counts_pushed_out_events() -> None:
    log = EventLog(capacity=2)
    fill(log, 2)
    assert log.dropped == 0
    fill(log, 1)
    assert log.dropped == 1
    fill(log, 4)
    assert log.dropped == 5
    assert len(log) == 2


def test_since_returns_only_newer_events() -> None:
    log = EventLog()
    fill(log, 5)
    assert seqs(log.since(0)) == [0, 1, 2, 3, 4]
    assert seqs(log.since(3)) == [3, 4]
    assert seqs(log.since(4)) == [4]
    assert log.since(5) == []
    assert log.since(100) == []
    assert seqs(log.since(-3)) == [0, 1, 2, 3, 4]


def test_since_polling_sees_each_event_once() -> None:
    log = EventLog()
    seen: list[int] = []
    cursor = 0
    for batch in (2, 0, 3, 1):
        fill(log, batch)
        new = log.since(cursor)
        seen.extend(seqs(new))
        cursor = log.total
    assert seen == [0, 1, 2, 3, 4, 5]


def test_since_after_drops() -> None:
    log = EventLog(capacity=3)
    fill(log, 10)  # keeps 7, 8, 9
    assert seqs(log.since(0)) == [7, 8, 9]  # older ones are gone
    assert seqs(log.since(5)) == [7, 8, 9]
    assert seqs(log.since(8)) == [8, 9]
    assert log.since(10) == []


def test_clear_does_not_count_as_dropped() -> None:
    log = EventLog(capacity=3)
    fill(log, 5)
    assert log.dropped == 2
    log.clear()
    assert len(log) == 0
    assert log.since() == []
    assert log.dropped == 2
    assert log.total == 5


def test_sequence_numbers_continue_after_clear() -> None:
    log = EventLog(capacity=3)
    fill(log, 2)
    log.clear()
    fill(log, 2)
    assert seqs(log.since()) == [2, 3]
    assert seqs(log.since(3)) == [3]
    assert log.dropped == 0
    fill(log, 3)  # five since the clear, capacity three
    assert seqs(log.since()) == [4, 5, 6]
    assert log.dropped == 2  # seq 2 and 3, pushed out after the clear


def test_clear_twice_keeps_dropped_stable() -> None:
    log = EventLog(capacity=2)
    fill(log, 3)
    log.clear()
    log.clear()
    assert log.dropped == 1
    assert log.total == 3


def test_message_text_preview_is_truncated() -> None:
    log = EventLog()
    text = "x" * (PREVIEW_CHARS + 30)
    log.message("in", "c", text)
    (event,) = log.since()
    assert event.kind == "in"
    assert event.size == PREVIEW_CHARS + 30
    assert event.preview == "x" * PREVIEW_CHARS
    assert event.detail == ""
    assert event.cut == 30
    assert PREVIEW_CHARS == 8192


def test_message_bytes_preview_is_truncated() -> None:
    log = EventLog()
    data = bytes(range(256)) * 10
    log.message("out", "c", data)
    (event,) = log.since()
    assert event.kind == "out"
    assert event.size == 2560
    assert event.preview == data[:PREVIEW_BYTES]
    assert isinstance(event.preview, bytes)
    assert event.cut == 2560 - PREVIEW_BYTES
    assert PREVIEW_BYTES == 2048


def test_short_messages_are_kept_whole() -> None:
    log = EventLog()
    log.message("in", "c", "hello")
    log.message("in", "c", b"\x00\xff")
    log.message("in", "c", "")
    first, second, third = log.since()
    assert (first.preview, first.size) == ("hello", 5)
    assert (second.preview, second.size) == (b"\x00\xff", 2)
    assert (third.preview, third.size) == ("", 0)
    assert seqs([first, second, third]) == [0, 1, 2]


def test_message_at_exact_limit_is_not_cut() -> None:
    log = EventLog()
    log.message("in", "c", "y" * PREVIEW_CHARS)
    log.message("in", "c", b"z" * PREVIEW_BYTES)
    text, data = log.since()
    assert text.preview == "y" * PREVIEW_CHARS
    assert data.preview == b"z" * PREVIEW_BYTES


def test_message_and_record_share_sequence_numbers() -> None:
    log = EventLog()
    log.record("open", "c")
    log.message("in", "c", "hi")
    log.record("close", "c")
    assert kinds(log.since()) == ["open", "in", "close"]
    assert seqs(log.since()) == [0, 1, 2]
    assert log.total == 3


def test_message_respects_capacity() -> None:
    log = EventLog(capacity=1)
    log.message("in", "c", "a")
    log.message("in", "c", "b")
    assert [e.preview for e in log.since()] == ["b"]
    assert log.dropped == 1


def test_as_dict_text() -> None:
    log = EventLog()
    log.message("in", "client-7", "hello")
    (event,) = log.since()
    data = event.as_dict()
    assert data == {
        "seq": 0,
        "time": event.time,
        "kind": "in",
        "client": "client-7",
        "size": 5,
        "preview": "hello",
        "detail": "",
        "binary": False,
        "cut": 0,
    }
    json.dumps(data)  # ready for the widgets and the HTTP API


def test_as_dict_bytes_preview_is_hex() -> None:
    log = EventLog()
    log.message("out", "c", b"\x00\x01\xab\xff")
    (event,) = log.since()
    data = event.as_dict()
    assert data["preview"] == "00 01 ab ff"
    assert data["binary"] is True
    assert data["size"] == 4
    assert event.preview == b"\x00\x01\xab\xff"  # the event itself is unchanged
    assert json.loads(json.dumps(data))["preview"] == "00 01 ab ff"


def test_as_dict_truncated_bytes_preview() -> None:
    log = EventLog()
    log.message("in", "c", b"\xff" * (PREVIEW_BYTES + 100))
    data = log.since()[0].as_dict()
    assert data["preview"] == " ".join(["ff"] * PREVIEW_BYTES)
    assert data["size"] == PREVIEW_BYTES + 100
    assert data["cut"] == 100


def test_as_dict_of_a_built_event() -> None:
    event = Event(3, 1.5, "error", "c", 0, "", "ValueError: bad")
    assert event.as_dict() == {
        "seq": 3,
        "time": 1.5,
        "kind": "error",
        "client": "c",
        "size": 0,
        "preview": "",
        "detail": "ValueError: bad",
        "binary": False,
        "cut": 0,
    }


def test_capacity_zero_keeps_nothing_but_counts() -> None:
    log = EventLog(capacity=0)
    assert log.capacity == 0
    fill(log, 3)
    log.message("in", "c", "x")
    assert len(log) == 0
    assert log.since() == []
    assert log.total == 4
    assert log.dropped == 4
    log.clear()
    assert log.dropped == 4


def test_negative_capacity_is_an_error() -> None:
    with pytest.raises(ValueError) as caught:
        EventLog(capacity=-1)
    assert str(caught.value) == "capacity: -1 is negative; use 0 to keep no events"


def test_a_5000_character_message_is_kept_whole_and_not_copied() -> None:
    """The panel can show a long JSON message whole: the log keeps it (by reference)."""
    log = EventLog()
    message = json.dumps({"items": ["x" * 40] * 113})  # 4,983 characters
    assert 4900 < len(message) <= PREVIEW_CHARS
    log.message("in", "c", message)
    (event,) = log.since()
    assert event.preview is message and event.cut == 0
    assert event.as_dict()["preview"] == message


def test_a_megabyte_message_is_kept_bounded() -> None:
    log = EventLog()
    text, data = "t" * 1_000_000, b"\x07" * 1_000_000
    log.message("in", "c", text)
    log.message("out", "c", data)
    kept_text, kept_data = log.since()
    assert kept_text.preview == "t" * PREVIEW_CHARS and kept_text.size == 1_000_000
    assert kept_text.cut == 1_000_000 - PREVIEW_CHARS
    assert kept_data.preview == b"\x07" * PREVIEW_BYTES and kept_data.cut == 1_000_000 - 2048


def test_the_log_holds_a_bounded_amount_of_payload() -> None:
    """What the docstring promises: capacity times PREVIEW_CHARS at most, whatever comes."""
    log = EventLog(capacity=50)
    for i in range(200):
        log.message("in", "c", str(i % 10) * (100_000 + i))
    kept = sum(len(event.preview) for event in log.since())
    assert len(log) == 50 and kept == 50 * PREVIEW_CHARS


def test_a_printed_line_is_kept_in_its_detail() -> None:
    """A printed line's preview is short; its detail keeps the line, so only the rest is cut."""
    line = Event(0, 1.5, "stdout", "c", 5000, "x" * LINE_PREVIEW_CHARS, "x" * 4000)
    assert line.cut == 1000 and line.as_dict()["cut"] == 1000
    assert Event(1, 1.5, "stderr", "c", 7, "careful", "careful").cut == 0
    assert Event(2, 1.5, "error", "c", 0, "", "ValueError: bad").cut == 0
    assert Event(3, 1.5, "wait", "c", 3, "", "3 messages waited 1.0 s").cut == 0  # not a payload
