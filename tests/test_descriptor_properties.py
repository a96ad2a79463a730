"""Property-based tests: whatever a ``.websocket`` file or a project folder holds, loading it either
works or raises the documented error, with a message that names the file; never another exception.

- ``Descriptor.from_json`` (any JSON value, and objects biased to the six properties): a
  Descriptor, or ``DescriptorError`` whose every line starts with the source;
- ``read_descriptor`` (any bytes, any text, any JSON): the same, prefixed with the file's path;
- ``load_project`` of a folder of such files, with handler modules (valid, broken, binary): a list
  of endpoints, or ``ProjectError`` whose every line names a file of the folder.

The edge cases hypothesis found (huge integers, deep nesting, empty or over-long handler names,
NUL bytes, SystemExit at import, non-ASCII digits, line breaks in names) have regression tests of
their own at the end.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ws_notebook.descriptor import (
    Descriptor,
    DescriptorError,
    check_endpoint_name,
    read_descriptor,
)
from ws_notebook.project import ProjectError, load_project, project_path

PROPERTIES = ["location", "handler", "endpoint", "description", "createdBy", "createdAt"]
NEAR_MISSES = ["Endpoint", "endpiont", "handlers", "created_at", "createdat", "name", ""]
SOURCE = "prop.websocket"

FAST = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)

# Lone surrogates ("\ud800" escapes in the JSON) are not text: they must be refused.
surrogates = st.sampled_from(["\ud800", "a\udfffb", "\udbff\udbff"])
names = st.sampled_from(
    ["echo", "my-ws_1.0", "a", "A" * 128, "A" * 129, "", " ", ".", "..", "my ws", "a\n", "é"]
)
paths = st.sampled_from(
    [
        "h",
        "h.py",
        "h.js",
        "sub/h",
        "sub/h.py",
        "/proj/h.py",
        "proj/h",
        "missing",
        "../h",
        "h/",
        "..",
        "a/..",
        "x" * 300,
        "/",
        ".",
        "./",
        "a\x00b",
    ]
)
timestamps = st.sampled_from(
    [
        "2022-07-06T2:24:12+0000",
        "2022-07-06T02:24:12+00:00",
        "2022-07-06T02:24:12.123456789Z",
        "2022-07-06 02:24",
        "2022-07-06",
        "2022-13-01",
        "2022-02-30T00:00:00Z",
        "2022-07-06T24:00:00",
        "2022-07-06T02:24:12+2400",
        "2022-07-06T02:24:12+23:60",
        "2022-07-06T02:24:12+99:00",
        "0000-01-01",
        "9999-12-31T23:59:59-23:59",
        "yesterday",
    ]
) | st.builds(
    "{}-{}-{}T{}:{}:{}{}".format,
    st.text("0123456789", min_size=4, max_size=4),
    st.text("0123456789", min_size=2, max_size=2),
    st.text("0123456789", min_size=2, max_size=2),
    st.text("0123456789", min_size=1, max_size=2),
    st.text("0123456789", min_size=2, max_size=2),
    st.text("0123456789", min_size=2, max_size=2),
    st.sampled_from(["", "Z", "+0000", "-05:30", "+1", "+12:345"]),
)
property_values = names | paths | timestamps | surrogates | st.text(max_size=30) | json_values

descriptor_objects = st.dictionaries(
    st.sampled_from(PROPERTIES + NEAR_MISSES) | st.text(max_size=8),
    property_values,
    max_size=8,
) | st.fixed_dictionaries(
    {"endpoint": names | st.text(max_size=10), "handler": paths | st.text(max_size=10)},
    optional={name: property_values for name in PROPERTIES[:1] + PROPERTIES[3:]},
)

any_json = json_values | descriptor_objects


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2)


def _object_text(pairs: list[tuple[str, Any]]) -> str:
    """A JSON object with these members in this order, a name given twice included."""
    return (
        "{" + ", ".join(f"{json.dumps(name)}: {json.dumps(value)}" for name, value in pairs) + "}"
    )


def _names_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    assert len(set(names)) == len(names), f"a name given twice was accepted: {names}"
    return dict(pairs)


# Objects whose members may repeat a name: json.loads would keep the last one silently.
member_lists = st.lists(
    st.tuples(st.sampled_from(PROPERTIES), names | paths | timestamps | st.text(max_size=10)),
    max_size=8,
)


file_bytes = (
    st.binary(max_size=200)
    | st.text(max_size=200).map(lambda text: text.encode("utf-8"))
    | any_json.map(lambda value: _json_text(value).encode("utf-8"))
    | st.tuples(descriptor_objects, st.integers(0, 200)).map(  # valid JSON, cut short
        lambda pair: _json_text(pair[0]).encode("utf-8")[: pair[1]]
    )
    | member_lists.map(lambda pairs: _object_text(pairs).encode("utf-8"))
    | st.sampled_from([b"", b"\xef\xbb\xbf{}", b"NaN", b"[1e999]", b"\xff\xfe{\x00}\x00", b"{}"])
)

HANDLER_SOURCES = [
    "def on_message(message, client):\n    client.send(message)\n",
    "def onMessage(message):\n    return message\n",
    "def on_message(a, b, c):\n    pass\n",
    "",
    "def broken(:\n",
    "raise RuntimeError('boom')\n",
    "import no_such_module_here\n",
    "on_message = 3\n",
]
handler_files = st.sampled_from(HANDLER_SOURCES).map(str.encode) | st.binary(max_size=40)


# --- properties ----------------------------------------------------------------------------------


def _strings(descriptor: Descriptor) -> list[object]:
    """The descriptor's properties (all but its warnings)."""
    return [
        getattr(descriptor, field.name)
        for field in dataclasses.fields(descriptor)
        if field.name != "warnings"
    ]


def _assert_names_source(error: DescriptorError, source: str) -> None:
    message = str(error)
    assert message.strip(), "empty error message"
    assert error.problems and all(problem.strip() for problem in error.problems)
    for line in message.splitlines():
        assert line.startswith(f"{source}: "), f"line does not name {source}: {line!r}"


@FAST
@given(any_json, st.booleans())
@pytest.mark.slow
def test_from_json_loads_or_raises_descriptor_error(data: Any, strict: bool) -> None:
    try:
        descriptor = Descriptor.from_json(data, source=SOURCE, strict=strict)
    except DescriptorError as error:
        _assert_names_source(error, SOURCE)
        return
    # What loads is a usable descriptor that survives the round trip through its JSON form.
    assert isinstance(data, dict)
    assert check_endpoint_name(descriptor.endpoint) == descriptor.endpoint
    assert descriptor.handler
    assert all(isinstance(value, str) for value in _strings(descriptor))
    assert all(value.encode("utf-8") is not None for value in _strings(descriptor))
    assert Descriptor.from_json(descriptor.to_json()) == descriptor
    # Each warning is one printable line; what the strict schema accepts needs no warning.
    for warning in descriptor.warnings:
        assert warning.strip() and len(warning.splitlines()) == 1
        warning.encode("utf-8")
    if strict:
        assert Descriptor.from_json(data, source=SOURCE) == descriptor
        assert Descriptor.from_json(data).warnings == ()


@FAST
@given(names | paths | json_values)
@pytest.mark.slow
def test_check_endpoint_name_returns_it_or_raises_descriptor_error(name: Any) -> None:
    try:
        assert check_endpoint_name(name) == name
    except DescriptorError as error:
        assert str(error).strip() and error.problems


@FAST
@given(file_bytes)
@pytest.mark.slow
def test_read_descriptor_loads_or_raises_descriptor_error_naming_the_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "some.websocket"
        path.write_bytes(content)
        try:
            descriptor = read_descriptor(path)
        except DescriptorError as error:
            _assert_names_source(error, str(path))
            assert error.source == str(path)
            return
        data = json.loads(content.decode("utf-8"), object_pairs_hook=_names_once)
        assert descriptor == Descriptor.from_json(data)
        assert all(value.encode("utf-8") is not None for value in _strings(descriptor))


@SLOW
@given(
    descriptors=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "sub/c", ".hidden/d", "sub/deeper/e"]),
            file_bytes | descriptor_objects.map(lambda value: _json_text(value).encode()),
        ),
        min_size=1,
        max_size=4,
    ),
    handlers=st.dictionaries(
        st.sampled_from(["h.py", "h.js", "sub/h.py", "proj/h.py", "missing.txt"]),
        handler_files,
        max_size=3,
    ),
)
@pytest.mark.slow
def test_load_project_loads_or_raises_project_error_naming_the_file(
    descriptors: list[tuple[str, bytes]], handlers: dict[str, bytes]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder).resolve() / "proj"
        files = []
        for name, content in descriptors:
            path = root / f"{name}.websocket"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            files.append(path)
        for name, source in handlers.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(source)
        # Each problem starts with the path of its descriptor in the project, as the platform
        # names it (its own location when that is where it really is).
        named = {project_path(path, root) for path in files} | {str(root)}  # or the folder
        try:
            loaded = load_project(root)
        except ProjectError as error:
            message = str(error)
            assert message.strip() and error.problems
            for line in message.splitlines():
                assert line.partition(": ")[0] in named, f"names no descriptor: {line!r}"
            return
        assert loaded
        assert {endpoint.path for endpoint in loaded} <= set(files)
        assert len({endpoint.descriptor.endpoint for endpoint in loaded}) == len(loaded)


# --- edge cases hypothesis found once, kept as plain regression tests -------------------------


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def test_read_descriptor_huge_integer(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.websocket", '{"endpoint": ' + "1" * 5000 + "}")
    with pytest.raises(DescriptorError, match="big.websocket"):
        read_descriptor(path)


def test_read_descriptor_deeply_nested_json(tmp_path: Path) -> None:
    limit = sys.getrecursionlimit()
    for depth in [*range(limit - 150, limit + 20, 2), 100_000]:
        path = _write(tmp_path, "deep.websocket", '{"endpoint": ' + "[" * depth + "]" * depth + "}")
        with pytest.raises(DescriptorError, match="deep.websocket"):
            read_descriptor(path)


@pytest.mark.parametrize("handler", ["/", ".", "./"])
def test_load_project_handler_with_empty_name(tmp_path: Path, handler: str) -> None:
    _write(tmp_path, "a.websocket", json.dumps({"endpoint": "a", "handler": handler}))
    with pytest.raises(ProjectError, match="a.websocket"):
        load_project(tmp_path)


def test_load_project_handler_name_too_long(tmp_path: Path) -> None:
    _write(tmp_path, "a.websocket", json.dumps({"endpoint": "a", "handler": "x" * 300}))
    with pytest.raises(ProjectError, match="a.websocket"):
        load_project(tmp_path)


def test_load_project_handler_with_nul_byte_names_the_handler(tmp_path: Path) -> None:
    _write(tmp_path, "a.websocket", json.dumps({"endpoint": "a", "handler": "h.py"}))
    handler = _write(tmp_path, "h.py", b"x = 1\x00\n")
    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path)
    assert str(handler) in str(caught.value)


def test_load_project_handler_raising_system_exit(tmp_path: Path) -> None:
    _write(tmp_path, "a.websocket", json.dumps({"endpoint": "a", "handler": "h.py"}))
    _write(tmp_path, "h.py", "raise SystemExit(3)\n")
    with pytest.raises(ProjectError, match="h.py"):
        load_project(tmp_path)


def test_created_at_needs_ascii_digits() -> None:
    with pytest.raises(DescriptorError, match="createdAt"):
        Descriptor.from_json({"endpoint": "a", "handler": "h", "createdAt": "٢٠٢٢-٠٧-٠٦"})


def test_unknown_property_name_with_line_break_stays_on_its_line() -> None:
    data = {"endpoint": "a", "handler": "h", "bad\nname": 1}
    with pytest.raises(DescriptorError) as caught:
        Descriptor.from_json(data, source=SOURCE, strict=True)
    assert all(line.startswith(f"{SOURCE}: ") for line in str(caught.value).splitlines())
    (warning,) = Descriptor.from_json(data).warnings
    assert warning.startswith("'bad\\nname': unknown property, ignored")


def test_missing_handler_with_line_break_stays_on_its_line(tmp_path: Path) -> None:
    _write(tmp_path, "a.websocket", json.dumps({"endpoint": "a", "handler": "h\x85"}))
    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path)
    assert all("a.websocket" in line for line in str(caught.value).splitlines())
