"""The ``.websocket`` descriptor: schema, validation messages, timestamps and file reading."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ws_notebook import descriptor as descriptor_module
from ws_notebook.descriptor import (
    Descriptor,
    DescriptorError,
    check_endpoint_name,
    descriptor_schema,
    parse_timestamp,
    read_descriptor,
)

HINT = "letters, digits, '-', '_', '.'"
TS_HINT = "(e.g. 2022-07-06T02:24:12+00:00)"
PROPERTY_ORDER = ["location", "handler", "endpoint", "description", "createdBy", "createdAt"]

# The artifact page's own example, with a Python handler.
EXAMPLE = {
    "location": "/my-project/websockets/myws.websocket",
    "handler": "my-project/websockets/my-handler.py",
    "endpoint": "my-websocket",
    "description": "My Websocket",
    "createdBy": "admin",
    "createdAt": "2022-07-06T2:24:12+0000",
}


def problems_of(data: object, source: str | None = None, strict: bool = False) -> list[str]:
    with pytest.raises(DescriptorError) as caught:
        Descriptor.from_json(data, source, strict=strict)
    return caught.value.problems


def with_(**changes: object) -> dict[str, object]:
    data = dict(EXAMPLE)
    data.update(changes)
    return data


# --- the schema itself -----------------------------------------------------------------------


def test_schema_lists_the_six_properties_in_artifact_order() -> None:
    schema = descriptor_schema()
    assert list(schema["properties"]) == PROPERTY_ORDER
    assert schema["required"] == ["endpoint", "handler"]
    assert schema["additionalProperties"] is False
    assert schema["type"] == "object"


def test_schema_is_cached() -> None:
    assert descriptor_schema() is descriptor_schema()


# --- valid descriptors -----------------------------------------------------------------------


def test_artifact_example_is_accepted() -> None:
    d = Descriptor.from_json(EXAMPLE)
    assert d == Descriptor(
        endpoint="my-websocket",
        handler="my-project/websockets/my-handler.py",
        location="/my-project/websockets/myws.websocket",
        description="My Websocket",
        created_by="admin",
        created_at="2022-07-06T2:24:12+0000",
    )


def test_minimal_platform_descriptor_is_accepted_with_defaults() -> None:
    d = Descriptor.from_json(
        {
            "handler": "my-project/ws-handler",
            "endpoint": "my-endpoint",
            "description": "My Websocket",
        }
    )
    assert d.endpoint == "my-endpoint"
    assert d.handler == "my-project/ws-handler"
    assert d.description == "My Websocket"
    # createdBy: the platform's repository records SYSTEM for a descriptor naming no author.
    assert (d.location, d.created_by, d.created_at) == ("", "SYSTEM", "")
    assert d.warnings == ()


def test_descriptor_is_frozen() -> None:
    d = Descriptor.from_json(EXAMPLE)
    with pytest.raises(AttributeError):
        d.endpoint = "other"  # type: ignore[misc]


def test_replace_returns_a_changed_copy() -> None:
    d = Descriptor.from_json(EXAMPLE)
    changed = d.replace(description="Other")
    assert changed.description == "Other"
    assert d.description == "My Websocket"
    assert changed.endpoint == d.endpoint


# --- one bad value per property --------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        # location
        ({"location": 5}, "location: 5 is not a string"),
        ({"location": ["/a"]}, 'location: ["/a"] is not a string'),
        # handler
        ({"handler": ""}, "handler: must not be empty"),
        ({"handler": 42}, "handler: 42 is not a string"),
        ({"handler": None}, "handler: null is not a string"),
        # endpoint
        ({"endpoint": "my ws"}, f"endpoint: 'my ws' is not a valid endpoint name ({HINT})"),
        ({"endpoint": ""}, f"endpoint: '' is not a valid endpoint name ({HINT})"),
        ({"endpoint": ".."}, f"endpoint: '..' is not a valid endpoint name ({HINT})"),
        ({"endpoint": "."}, f"endpoint: '.' is not a valid endpoint name ({HINT})"),
        ({"endpoint": "a/b"}, f"endpoint: 'a/b' is not a valid endpoint name ({HINT})"),
        ({"endpoint": "a?b"}, f"endpoint: 'a?b' is not a valid endpoint name ({HINT})"),
        ({"endpoint": "é"}, f"endpoint: 'é' is not a valid endpoint name ({HINT})"),
        ({"endpoint": "a" * 129}, f"endpoint: {'a' * 129!r} is not a valid endpoint name ({HINT})"),
        ({"endpoint": 7}, "endpoint: 7 is not a string"),
        # description
        ({"description": 3.5}, "description: 3.5 is not a string"),
        ({"description": {"text": "x"}}, 'description: {"text": "x"} is not a string'),
        # createdBy
        ({"createdBy": True}, "createdBy: true is not a string"),
        # createdAt
        (
            {"createdAt": "2022-13-01"},
            f"createdAt: '2022-13-01' is not an ISO 8601 timestamp {TS_HINT}",
        ),
        (
            {"createdAt": "yesterday"},
            f"createdAt: 'yesterday' is not an ISO 8601 timestamp {TS_HINT}",
        ),
        (
            {"createdAt": "2022-07-06T25:00"},
            f"createdAt: '2022-07-06T25:00' is not an ISO 8601 timestamp {TS_HINT}",
        ),
        (
            {"createdAt": "2022-02-30"},
            f"createdAt: '2022-02-30' is not an ISO 8601 timestamp {TS_HINT}",
        ),
        ({"createdAt": 1657074252}, "createdAt: 1657074252 is not a string"),
    ],
)
def test_bad_value_is_reported_with_its_property(changes: dict, problem: str) -> None:
    assert problems_of(with_(**changes)) == [problem]
    assert problems_of(with_(**changes), strict=True) == [problem]


def test_message_is_prefixed_with_the_source() -> None:
    with pytest.raises(DescriptorError) as caught:
        Descriptor.from_json(with_(endpoint="my ws"), source="myws.websocket")
    error = caught.value
    assert str(error) == (
        "myws.websocket: endpoint: 'my ws' is not a valid endpoint name "
        "(letters, digits, '-', '_', '.')"
    )
    assert error.source == "myws.websocket"
    assert error.problems == [f"endpoint: 'my ws' is not a valid endpoint name ({HINT})"]


def test_descriptor_error_is_a_value_error() -> None:
    assert issubclass(DescriptorError, ValueError)
    assert str(DescriptorError(["a: x", "b: y"])) == "a: x\nb: y"
    assert (
        str(DescriptorError(["a: x", "b: y"], "f.websocket"))
        == "f.websocket: a: x\nf.websocket: b: y"
    )


@pytest.mark.parametrize(
    "name", ["a", "my-websocket", "A_b.c-9", "...", ".hidden", "a" * 128, "v1.2"]
)
def test_valid_endpoint_names(name: str) -> None:
    assert Descriptor.from_json(with_(endpoint=name)).endpoint == name


@pytest.mark.parametrize("name", ["abc\n", "a" * 128 + "\n"])
def test_endpoint_with_trailing_newline_is_rejected(name: str) -> None:
    assert problems_of(with_(endpoint=name)) == [
        f"endpoint: {name!r} is not a valid endpoint name ({HINT})"
    ]


# --- structure: required, unknown, non-objects -----------------------------------------------


@pytest.mark.parametrize("missing", ["endpoint", "handler"])
def test_missing_required_property(missing: str) -> None:
    data = dict(EXAMPLE)
    del data[missing]
    assert problems_of(data, "x.websocket") == [f"{missing}: missing (required)"]


@pytest.mark.parametrize("optional", ["location", "description", "createdBy", "createdAt"])
def test_optional_properties_may_be_left_out(optional: str) -> None:
    data = dict(EXAMPLE)
    del data[optional]
    written = Descriptor.from_json(data).to_json()
    if optional == "createdBy":  # as the platform records it
        assert written[optional] == "SYSTEM"
    else:
        assert optional not in written


def test_both_required_missing_are_reported_once_each() -> None:
    assert problems_of({}) == ["endpoint: missing (required)", "handler: missing (required)"]


def test_both_required_missing_are_both_reported() -> None:
    problems = problems_of({"description": "no endpoint, no handler"})
    assert "endpoint: missing (required)" in problems
    assert "handler: missing (required)" in problems


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("endpiont", "endpoint"),
        ("handle", "handler"),
        ("created_at", "createdAt"),
        ("createdby", "createdBy"),
        ("locaton", "location"),
        ("descripton", "description"),
    ],
)
def test_unknown_property_with_suggestion(name: str, suggestion: str) -> None:
    assert problems_of(with_(**{name: "x"}), strict=True) == [
        f"{name}: unknown property (did you mean '{suggestion}'?)"
    ]
    read = Descriptor.from_json(with_(**{name: "x"}))  # as the platform reads it: a warning
    assert read == Descriptor.from_json(EXAMPLE)
    assert read.warnings == (f"{name}: unknown property, ignored (did you mean '{suggestion}'?)",)


def test_unknown_property_without_close_match_lists_the_known_ones() -> None:
    assert problems_of(with_(version=2), strict=True) == [
        "version: unknown property (expected one of location, handler, endpoint, description, "
        "createdBy, createdAt)"
    ]
    assert Descriptor.from_json(with_(version=2)).warnings == (
        "version: unknown property, ignored (expected one of location, handler, endpoint, "
        "description, createdBy, createdAt, engine, updatedBy, updatedAt, uri)",
    )


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ([], "array"),
        ([EXAMPLE], "array"),
        ("my-websocket", "string"),
        (42, "number"),
        (True, "boolean"),
        (None, "null"),
    ],
)
def test_non_object_json(data: object, kind: str) -> None:
    assert problems_of(data, "x.websocket") == [f"expected a JSON object, got {kind}"]


def test_several_problems_are_reported_at_once_in_property_order() -> None:
    data = {
        "location": 5,
        "handler": "",
        "endpoint": "my ws",
        "description": ["x"],
        "createdBy": None,
        "createdAt": "yesterday",
        "endpiont": "x",
        "extra": 1,
    }
    with pytest.raises(DescriptorError) as caught:
        Descriptor.from_json(data, "myws.websocket", strict=True)
    expected = [
        "endpiont: unknown property (did you mean 'endpoint'?)",
        "extra: unknown property (expected one of location, handler, endpoint, description, "
        "createdBy, createdAt)",
        f"createdAt: 'yesterday' is not an ISO 8601 timestamp {TS_HINT}",
        "createdBy: null is not a string",
        'description: ["x"] is not a string',
        f"endpoint: 'my ws' is not a valid endpoint name ({HINT})",
        "handler: must not be empty",
        "location: 5 is not a string",
    ]
    assert caught.value.problems == expected
    assert str(caught.value).splitlines() == ["myws.websocket: " + line for line in expected]


def test_missing_and_bad_properties_together() -> None:
    assert problems_of({"endpoint": "a/b"}) == [
        "handler: missing (required)",
        f"endpoint: 'a/b' is not a valid endpoint name ({HINT})",
    ]


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "2022-07-06T2:24:12+0000",  # the platform's own example
        "2022-07-06T02:24:12+00:00",
        "2022-07-06T02:24:12Z",
        "2022-07-06T02:24:12+02:00",
        "2022-07-06T02:24:12-0530",
        "2022-07-06T02:24:12+02",
        "2022-07-06T02:24:12.5Z",
        "2022-07-06T02:24:12,123456789+01:00",
        "2022-07-06T02:24",
        "2022-07-06 02:24:12",
        "2022-07-06",
    ],
)
def test_iso_8601_forms_are_accepted(stamp: str) -> None:
    assert Descriptor.from_json(with_(createdAt=stamp)).created_at == stamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2022-07-06T2:24:12+0000",
            datetime(2022, 7, 6, 2, 24, 12, tzinfo=timezone.utc),
        ),
        ("2022-07-06T02:24:12Z", datetime(2022, 7, 6, 2, 24, 12, tzinfo=timezone.utc)),
        (
            "2022-07-06T02:24:12+02:00",
            datetime(2022, 7, 6, 2, 24, 12, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2022-07-06T02:24:12-0530",
            datetime(2022, 7, 6, 2, 24, 12, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        (
            "2022-07-06T02:24:12+02",
            datetime(2022, 7, 6, 2, 24, 12, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2022-07-06T02:24:12.5", datetime(2022, 7, 6, 2, 24, 12, 500000)),
        ("2022-07-06T02:24:12,000123", datetime(2022, 7, 6, 2, 24, 12, 123)),
        ("2022-07-06T02:24:12.123456789", datetime(2022, 7, 6, 2, 24, 12, 123456)),
        ("2022-07-06T02:24", datetime(2022, 7, 6, 2, 24)),
        ("2022-07-06", datetime(2022, 7, 6)),
    ],
)
def test_parse_timestamp_values(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()
    assert (parsed.tzinfo is None) == (expected.tzinfo is None)


def test_parse_timestamp_offset_becomes_tzinfo() -> None:
    parsed = parse_timestamp("2022-07-06T12:00:00-03:00")
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == timedelta(hours=-3)
    assert parsed.astimezone(timezone.utc) == datetime(2022, 7, 6, 15, 0, tzinfo=timezone.utc)


def test_parse_timestamp_without_offset_is_naive() -> None:
    assert parse_timestamp("2022-07-06T12:00:00").tzinfo is None


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2022-13-01",
        "2022-00-10",
        "2022-02-30",
        "2022-07-06T25:00",
        "2022-07-06T12:60",
        "2022-07-06T12:00:61",
        "2022-07-06T",
        "2022-7-6",
        "22-07-06",
        "2022/07/06",
        "2022-07-06T12:00:00+2",
        "2022-07-06T12:00:00 UTC",
        " 2022-07-06",
        "2022-07-06T12:00:00+24:00",
        "",
    ],
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_parse_timestamp_error_names_the_text() -> None:
    with pytest.raises(ValueError, match=r"^'yesterday' is not an ISO 8601 timestamp$"):
        parse_timestamp("yesterday")


def test_parse_timestamp_rejects_offset_minutes_above_59() -> None:
    with pytest.raises(ValueError):
        parse_timestamp("2022-07-06T02:24:12+00:99")


# --- Descriptor.new and to_json --------------------------------------------------------------


def test_new_fills_created_by_and_created_at(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(descriptor_module.getpass, "getuser", lambda: "alice")
    before = datetime.now(timezone.utc).replace(microsecond=0)
    d = Descriptor.new("echo", "proj/echo.py", location="/proj/echo.websocket", description="Echo")
    after = datetime.now(timezone.utc)
    assert d.endpoint == "echo"
    assert d.handler == "proj/echo.py"
    assert d.location == "/proj/echo.websocket"
    assert d.description == "Echo"
    assert d.created_by == "alice"
    created = parse_timestamp(d.created_at)
    assert created.tzinfo is not None  # a local time with its offset
    assert before <= created <= after
    assert "." not in d.created_at  # seconds precision


def test_new_with_explicit_created_by(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(descriptor_module.getpass, "getuser", lambda: "alice")
    assert Descriptor.new("echo", "h", created_by="bob").created_by == "bob"
    assert Descriptor.new("echo", "h", created_by="").created_by == ""


def test_new_without_user_database_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found: 12345")

    monkeypatch.setattr(descriptor_module.getpass, "getuser", no_user)
    assert Descriptor.new("echo", "h").created_by == "unknown"


def test_new_validates() -> None:
    with pytest.raises(DescriptorError) as caught:
        Descriptor.new("my ws", "", created_by="x")
    assert caught.value.problems == [
        f"endpoint: 'my ws' is not a valid endpoint name ({HINT})",
        "handler: must not be empty",
    ]


def test_to_json_order_and_values() -> None:
    d = Descriptor.from_json(EXAMPLE)
    data = d.to_json()
    assert list(data) == PROPERTY_ORDER
    assert data == EXAMPLE
    # serialised in the artifact's order too
    assert list(json.loads(json.dumps(data))) == PROPERTY_ORDER


def test_to_json_round_trip() -> None:
    d = Descriptor.new("echo", "proj/echo.py", description="Echo", created_by="me")
    assert Descriptor.from_json(json.loads(json.dumps(d.to_json()))) == d


def test_minimal_descriptor_round_trips_leaving_unset_properties_out() -> None:
    d = Descriptor.from_json({"endpoint": "e", "handler": "h"})
    assert d.to_json() == {"handler": "h", "endpoint": "e", "createdBy": "SYSTEM"}
    assert Descriptor.from_json(d.to_json()) == d


# --- read_descriptor -------------------------------------------------------------------------


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, indent=2), "utf-8")
    return path


def test_read_descriptor_from_file(tmp_path: Path) -> None:
    path = write(tmp_path / "myws.websocket", EXAMPLE)
    assert read_descriptor(path) == Descriptor.from_json(EXAMPLE)
    assert read_descriptor(str(path)) == Descriptor.from_json(EXAMPLE)


def test_read_descriptor_problems_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "myws.websocket", with_(endpoint="my ws", handler=""))
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert caught.value.source == str(path)
    assert str(caught.value).splitlines() == [
        f"{path}: endpoint: 'my ws' is not a valid endpoint name ({HINT})",
        f"{path}: handler: must not be empty",
    ]


def test_read_descriptor_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "myws.websocket"
    path.write_text('{\n  "endpoint": "e",\n  "handler" "h"\n}\n', "utf-8")
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert caught.value.problems == ["invalid JSON at line 3 column 13: Expecting ':' delimiter"]
    assert str(caught.value) == f"{path}: invalid JSON at line 3 column 13: Expecting ':' delimiter"
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)


def test_read_descriptor_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.websocket"
    path.write_text("", "utf-8")
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert caught.value.problems == ["invalid JSON at line 1 column 1: Expecting value"]


def test_read_descriptor_json_array(tmp_path: Path) -> None:
    path = write(tmp_path / "list.websocket", [EXAMPLE])
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert str(caught.value) == f"{path}: expected a JSON object, got array"


def test_read_descriptor_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.websocket"
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert caught.value.problems == ["cannot read file: No such file or directory"]
    assert str(caught.value) == f"{path}: cannot read file: No such file or directory"
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_read_descriptor_unreadable_path(tmp_path: Path) -> None:
    # A folder cannot be read as a file, whoever runs the tests (root ignores permission bits).
    path = tmp_path / "folder.websocket"
    path.mkdir()
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert caught.value.problems == ["cannot read file: Is a directory"]


def test_read_descriptor_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.websocket"
    text = json.dumps(with_(description="café"), ensure_ascii=False)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert caught.value.problems == ["not UTF-8 text (invalid continuation byte)"]
    assert str(caught.value).startswith(f"{path}: not UTF-8 text")
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


def test_read_descriptor_keeps_non_ascii_utf8(tmp_path: Path) -> None:
    path = tmp_path / "utf8.websocket"
    path.write_text(json.dumps(with_(description="Café ✓"), ensure_ascii=False), "utf-8")
    assert read_descriptor(path).description == "Café ✓"


SURROGATE = "contains an unpaired surrogate (\\ud800), not valid Unicode text"


@pytest.mark.parametrize(
    ("name", "strict"),
    [*((name, False) for name in PROPERTY_ORDER + ["engine", "updatedBy"]), ("colour", True)],
)
def test_read_descriptor_rejects_an_unpaired_surrogate(
    tmp_path: Path, name: str, strict: bool
) -> None:
    # "\ud800" in the file is a JSON escape for half a UTF-16 pair: json.loads accepts it, but
    # the string cannot be written out as UTF-8 (ws-notebook list crashed printing it).
    path = write(tmp_path / "x.websocket", with_(**{name: "a\ud800b"}))
    assert "\\ud800" in path.read_text("utf-8")
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path, strict=strict)
    assert f"{path}: {name}: {SURROGATE}" in str(caught.value).splitlines()
    str(caught.value).encode("utf-8")  # the message itself prints


def test_an_unknown_property_is_not_read_so_its_surrogate_does_not_matter(tmp_path: Path) -> None:
    path = write(tmp_path / "x.websocket", with_(colour="a\ud800b"))
    read = read_descriptor(path)
    assert read == Descriptor.from_json(EXAMPLE)
    assert read.warnings == (
        "colour: unknown property, ignored (expected one of location, handler, endpoint, "
        "description, createdBy, createdAt, engine, updatedBy, updatedAt, uri)",
    )


def test_from_json_rejects_an_unpaired_surrogate() -> None:
    assert problems_of(with_(description="\ud800", createdBy="\udfff!"), "x.websocket") == [
        f"description: {SURROGATE}",
        "createdBy: contains an unpaired surrogate (\\udfff), not valid Unicode text",
    ]


def test_read_descriptor_accepts_a_surrogate_pair(tmp_path: Path) -> None:
    path = tmp_path / "x.websocket"
    path.write_text('{"endpoint": "e", "handler": "h", "description": "\\ud83d\\ude00"}', "utf-8")
    assert read_descriptor(path).description == "\N{GRINNING FACE}"


def test_read_descriptor_rejects_a_property_given_twice(tmp_path: Path) -> None:
    path = tmp_path / "x.websocket"
    path.write_text(
        '{"endpoint": "my ws", "handler": "h", "endpoint": "e", "handler": "", "handler": "i",'
        ' "description": {"nested": 1, "nested": 2}}',
        "utf-8",
    )
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert str(caught.value).splitlines() == [
        f"{path}: endpoint: defined twice",
        f"{path}: handler: defined 3 times",
        f'{path}: description: {{"nested": 2}} is not a string',
    ]


@pytest.mark.slow
def test_list_refuses_an_unpaired_surrogate_instead_of_crashing(tmp_path: Path) -> None:
    write(tmp_path / "e.websocket", {"endpoint": "e", "handler": "e.py", "description": "\ud800"})
    (tmp_path / "e.py").write_text("def on_message(message, client):\n    pass\n", "utf-8")
    for command in ("list", "validate"):
        result = subprocess.run(
            [sys.executable, "-m", "ws_notebook", command, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        # named by its path in the project (the folder loaded is the project)
        assert f"/{tmp_path.name}/e.websocket: description: {SURROGATE}" in result.stderr


# --- check_endpoint_name ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["echo", "my-websocket", "a.b_c-1", "X" * 128])
def test_check_endpoint_name_returns_valid_names(name: str) -> None:
    assert check_endpoint_name(name) == name


@pytest.mark.parametrize("name", ["my ws", "", "..", ".", "a/b", "a" * 129, "a\tb", "a#b"])
def test_check_endpoint_name_rejects(name: str) -> None:
    with pytest.raises(DescriptorError) as caught:
        check_endpoint_name(name)
    assert caught.value.problems == [f"endpoint: {name!r} is not a valid endpoint name ({HINT})"]
    assert caught.value.source is None
    assert str(caught.value) == f"endpoint: {name!r} is not a valid endpoint name ({HINT})"


@pytest.mark.parametrize(("name", "shown"), [(5, "5"), (None, "null"), (["a"], '["a"]')])
def test_check_endpoint_name_rejects_non_strings(name: object, shown: str) -> None:
    with pytest.raises(DescriptorError) as caught:
        check_endpoint_name(name)
    assert caught.value.problems == [f"endpoint: {shown} is not a string"]


# --- read as the platform reads it (lenient) and as the schema is written (strict) -----------

# The platform's own descriptors: a minimal one from its documentation, one with the fields its
# repository writes, and one of its tests' (an endpoint with a leading slash).
PLATFORM_WRITTEN = {
    "handler": "my-project/ws-handler",
    "endpoint": "my-endpoint",
    "description": "My Websocket",
    "engine": "javascript",
    "createdBy": "admin",
    "createdAt": "2024-01-02T03:04:05Z",
    "updatedBy": "editor",
    "updatedAt": "2024-02-03T04:05:06+0100",
}


def test_the_platforms_own_fields_are_kept_and_written_back() -> None:
    d = Descriptor.from_json(PLATFORM_WRITTEN)
    assert (d.engine, d.updated_by, d.updated_at) == (
        "javascript",
        "editor",
        "2024-02-03T04:05:06+0100",
    )
    assert d.warnings == ()
    assert d.to_json() == PLATFORM_WRITTEN
    assert Descriptor.from_json(d.to_json()) == d


def test_strict_refuses_the_platforms_own_fields_as_the_schema_is_written() -> None:
    assert problems_of(PLATFORM_WRITTEN, strict=True) == [
        f"{name}: not in the strict schema (a field the platform itself writes; read without "
        "--strict, it is kept)"
        for name in ("engine", "updatedAt", "updatedBy")
    ]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"engine": 3}, "engine: 3 is not a string"),
        ({"updatedBy": []}, "updatedBy: [] is not a string"),
        ({"updatedAt": "soon"}, f"updatedAt: 'soon' is not an ISO 8601 timestamp {TS_HINT}"),
    ],
)
def test_the_platforms_own_fields_are_checked(changes: dict, problem: str) -> None:
    assert problems_of(with_(**changes)) == [problem]


@pytest.mark.parametrize(
    "name",
    ["location", "description", "createdBy", "createdAt", "engine", "updatedBy", "updatedAt"],
)
def test_null_for_an_optional_string_is_not_set(name: str) -> None:
    d = Descriptor.from_json(with_(**{name: None}))
    unset = dict(EXAMPLE)
    unset.pop(name, None)
    assert d == Descriptor.from_json(unset)
    assert d.warnings == ()
    if name in EXAMPLE:  # the platform's own fields are refused whole by the strict schema
        assert problems_of(with_(**{name: None}), strict=True) == [f"{name}: null is not a string"]


def test_null_created_by_is_system() -> None:
    assert Descriptor.from_json(with_(createdBy=None)).created_by == "SYSTEM"


@pytest.mark.parametrize("name", ["endpoint", "handler"])
def test_null_for_a_required_property_stays_an_error(name: str) -> None:
    assert problems_of(with_(**{name: None})) == [f"{name}: null is not a string"]


def test_a_leading_slash_in_endpoint_is_dropped_with_a_warning() -> None:
    d = Descriptor.from_json(with_(endpoint="/mycustomwebsocket"))
    assert d.endpoint == "mycustomwebsocket"
    assert d.warnings == (
        "endpoint: '/mycustomwebsocket' starts with '/', which is dropped: clients connect to "
        "'mycustomwebsocket'",
    )
    assert problems_of(with_(endpoint="/mycustomwebsocket"), strict=True) == [
        f"endpoint: '/mycustomwebsocket' is not a valid endpoint name ({HINT})"
    ]


@pytest.mark.parametrize("name", ["/", "//x", "/a b", "/.."])
def test_a_slash_before_an_invalid_name_is_reported_as_written(name: str) -> None:
    assert problems_of(with_(endpoint=name)) == [
        f"endpoint: {name!r} is not a valid endpoint name ({HINT})"
    ]


def test_warnings_do_not_make_descriptors_differ() -> None:
    assert Descriptor.from_json(with_(extra=1)) == Descriptor.from_json(EXAMPLE)
    assert "warnings" not in repr(Descriptor.from_json(with_(extra=1)))


def test_read_descriptor_is_lenient_unless_strict(tmp_path: Path) -> None:
    path = write(tmp_path / "x.websocket", {**PLATFORM_WRITTEN, "endpoint": "/x", "colour": "red"})
    read = read_descriptor(path)
    assert (read.endpoint, read.engine) == ("x", "javascript")
    assert [warning.split(":")[0] for warning in read.warnings] == ["colour", "endpoint"]
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path, strict=True)
    assert [line.split(": ")[1] for line in str(caught.value).splitlines()] == [
        "colour",
        "engine",
        "updatedAt",
        "updatedBy",
        "endpoint",
    ]


def test_a_descriptor_error_keeps_the_files_own_location(tmp_path: Path) -> None:
    path = write(tmp_path / "x.websocket", with_(handler=""))
    with pytest.raises(DescriptorError) as caught:
        read_descriptor(path)
    assert caught.value.location == EXAMPLE["location"]
