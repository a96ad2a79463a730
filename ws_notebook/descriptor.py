"""The codbex ``*.websocket`` descriptor: its JSON Schema, validation and (de)serialisation.

A descriptor says which endpoint name clients connect to and which handler module serves it.
Validation collects every problem at once and names the offending property, so a user fixing a
file sees all that is wrong in one go.

Files are read as leniently as the platform reads them (its JSON mapper ignores unknown keys),
and no more: the platform's own fields ``engine``, ``updatedBy`` and ``updatedAt`` are kept,
any other unknown property is a warning, ``null`` for an optional string means "not set", a
leading ``/`` in ``endpoint`` is dropped with a warning, and a missing ``createdBy`` is
``SYSTEM``. ``strict=True`` applies the schema as it is written (six properties, no more), as
``ws-notebook validate --strict`` does.

ws_notebook extends the format with one field of its own, read as the platform's are: ``uri``
(a ``ws://`` or ``wss://`` URI) makes the descriptor an outbound connection, whose handler
drives a WebSocket opened to that server (see :mod:`ws_notebook.outbound`).
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import getpass
import json
import re
from datetime import datetime, timedelta, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .errors import Error

if TYPE_CHECKING:
    import jsonschema


__all__ = [
    "Descriptor",
    "DescriptorError",
    "check_endpoint_name",
    "descriptor_schema",
    "parse_timestamp",
    "read_descriptor",
]

ENDPOINT_NAME_HINT = "letters, digits, '-', '_', '.'"
# What the platform's repository records as the author of a descriptor that names none.
DEFAULT_CREATED_BY = "SYSTEM"
# The fields the platform writes besides the schema's six: JSON name -> Descriptor attribute.
PLATFORM_FIELDS = {"engine": "engine", "updatedBy": "updated_by", "updatedAt": "updated_at"}
TIMESTAMP_EXAMPLE = "2022-07-06T02:24:12+00:00"

# ISO 8601 as people write it: the hour may have one digit and the offset may lack its colon,
# as in the platform's own example "2022-07-06T2:24:12+0000".
_TIMESTAMP = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{1,2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?"
    r"(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,  # \d is 0-9 only: "٢٠٢٢" is not a year here
)

# A JSON escape can spell half of a UTF-16 pair ("\ud800") alone: not text, it cannot be printed.
_SURROGATE = re.compile("[\ud800-\udfff]")


class DescriptorError(Error, ValueError):
    """A descriptor that cannot be used; ``problems`` holds one ``"property: what is wrong"`` each.

    ``location`` is the file's own ``location`` when it could be read (a string), else "".
    """

    def __init__(self, problems: list[str], source: str | None = None, location: str = "") -> None:
        self.problems = problems
        self.source = source
        self.location = location
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + problem for problem in problems))


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp, leniently; raise ValueError if it is not one."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp")
    parts = match.groupdict()
    offset = parts["offset"]
    tz = None
    if offset == "Z":
        tz = timezone.utc
    elif offset:
        digits = offset[1:].replace(":", "")
        if int(digits[2:4] or 0) > 59:
            raise ValueError(f"{text!r} has an offset with more than 59 minutes")
        minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
        tz = timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
    fraction = (parts["fraction"] or "0")[:6].ljust(6, "0")
    return datetime(
        int(parts["year"]),
        int(parts["month"]),
        int(parts["day"]),
        int(parts["hour"] or 0),
        int(parts["minute"] or 0),
        int(parts["second"] or 0),
        int(fraction),
        tzinfo=tz,
    )


def _is_timestamp(value: object) -> bool:
    if isinstance(value, str):
        parse_timestamp(value)
    return True


@cache
def descriptor_schema() -> dict[str, Any]:
    """The JSON Schema of a ``.websocket`` file, as shipped with the package."""
    text = resources.files(__package__).joinpath("websocket.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _platform_properties() -> dict[str, Any]:
    """The fields the platform writes besides the schema's six (``engine``, ``updatedBy``,
    ``updatedAt``), as the schema file describes them."""
    return descriptor_schema()["$defs"]["platformProperties"]["properties"]


@cache
def _extension_properties() -> dict[str, Any]:
    """ws_notebook's own fields (``uri``: an outbound connection), read as the platform's are."""
    return descriptor_schema()["$defs"]["wsNotebookProperties"]["properties"]


@cache
def _known(strict: bool) -> list[str]:
    """The property names a descriptor may have, in the order they are listed."""
    names = list(descriptor_schema()["properties"])
    return names if strict else names + list(_platform_properties()) + list(_extension_properties())


@cache
def _validator(strict: bool = True) -> jsonschema.protocols.Validator:
    """The schema's validator, made on first use; ``strict=False`` also knows the platform's
    own fields (unknown properties are taken out before it runs, see ``Descriptor.from_json``).

    ``jsonschema`` is imported here, not with the module: where ``rfc3987_syntax`` is installed
    (any Jupyter environment), importing jsonschema builds its IRI grammar, about 1 s and 17 MiB
    of objects that every full garbage collection of the kernel then walks. Endpoints defined
    in cells never need it; descriptors read from files do.
    """
    import jsonschema

    schema = descriptor_schema()
    if not strict:
        extra = _platform_properties() | _extension_properties()
        schema = dict(schema, properties=schema["properties"] | extra)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("iso8601-timestamp", raises=ValueError)(_is_timestamp)
    return cls(schema, format_checker=checker)


@cache
def _endpoint_pattern() -> re.Pattern[str]:
    return re.compile(descriptor_schema()["properties"]["endpoint"]["pattern"])


def _unknown(name: str, known: list[str], what: str = "unknown property") -> str:
    """``name: unknown property (did you mean ...?)``, with the closest known name if any."""
    if name in _extension_properties() and name not in known:  # strict
        return (
            f"{name}: not in the strict schema (ws_notebook's extension for an outbound "
            "connection; read without --strict, it is kept)"
        )
    if name in _platform_properties() and name not in known:  # strict
        return (
            f"{name}: not in the strict schema (a field the platform itself writes; read "
            "without --strict, it is kept)"
        )
    hint = difflib.get_close_matches(name, known, n=1)
    also = f"did you mean '{hint[0]}'?" if hint else f"expected one of {', '.join(known)}"
    return f"{printable(name)}: {what} ({also})"


def _describe(error: jsonschema.ValidationError) -> list[str]:
    """Turn one jsonschema error into ``property: problem`` lines a person can act on."""
    known = _known(strict=True)
    instance: Any = error.instance  # the JSON value itself (typeshed allows an "unset" marker)
    if not error.path:
        if error.validator == "type":
            return [f"expected a JSON object, got {_json_type(instance)}"]
        if error.validator == "required":
            required = cast("list[str]", error.validator_value)
            missing = [name for name in required if name not in instance]
            return [f"{name}: missing (required)" for name in missing]
        if error.validator == "additionalProperties":
            return [_unknown(name, known) for name in sorted(set(instance) - set(known))]
        return [error.message]
    name = str(error.path[0])
    if error.validator == "type":
        return [f"{name}: {_shown(instance)} is not a string"]
    if name == "endpoint" and error.validator == "pattern":
        return [f"endpoint: {instance!r} is not a valid endpoint name ({ENDPOINT_NAME_HINT})"]
    if name == "uri" and error.validator == "pattern":
        return [f"uri: {instance!r} is not a ws:// or wss:// URI"]
    if error.validator == "minLength":
        return [f"{name}: must not be empty"]
    if error.validator == "format":
        return [f"{name}: {instance!r} is not an ISO 8601 timestamp (e.g. {TIMESTAMP_EXAMPLE})"]
    return [f"{name}: {error.message}"]


def printable(text: str) -> str:
    """``text`` if it prints on one line, else its escaped repr: a problem stays one line."""
    return text if text.isprintable() else repr(text)


def _shown(value: object) -> str:
    """A value as the file spells it: JSON, shortened (strings keep Python quotes, as elsewhere)."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (ValueError, RecursionError):  # a number too long, or nesting too deep, to print
        text = f"<{_json_type(value)}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: object) -> str:
    for kind, name in ((bool, "boolean"), (str, "string"), (dict, "object"), (list, "array")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else "number"


def _surrogates(data: object) -> list[str]:
    """``property: ...`` for each property whose value holds an unpaired surrogate."""
    if not isinstance(data, dict):
        return []
    return [
        f"{printable(name)}: contains an unpaired surrogate "
        f"(\\u{ord(found.group()):04x}), not valid Unicode text"
        for name, value in data.items()
        if isinstance(value, str) and (found := _SURROGATE.search(value))
    ]


class _Object(dict):
    """A JSON object that remembers the names it was given more than once (``json`` keeps the last)."""

    repeated: dict[str, int]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    found = _Object(pairs)
    counts = collections.Counter(name for name, _ in pairs) if len(found) < len(pairs) else {}
    found.repeated = {name: count for name, count in counts.items() if count > 1}
    return found


def check_endpoint_name(name: object) -> str:
    """Return ``name`` if clients can use it in a URL, else raise DescriptorError naming it.

    The schema's own ``endpoint`` pattern, applied as jsonschema applies it (``re.search``).
    """
    if not isinstance(name, str):
        raise DescriptorError([f"endpoint: {_shown(name)} is not a string"])
    if not _endpoint_pattern().search(name):
        raise DescriptorError(
            [f"endpoint: {name!r} is not a valid endpoint name ({ENDPOINT_NAME_HINT})"]
        )
    return name


def _lenient(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` as the platform reads it, and warnings saying what was made of it.

    Unknown properties are dropped (a warning names each, with the closest known name),
    ``null`` optional strings are left out (not set), and a leading ``/`` is dropped from
    ``endpoint`` when what follows is a valid name (the platform's own tests name one
    ``/mycustomwebsocket``). The rest is for the schema to check.
    """
    known = _known(strict=False)
    required = descriptor_schema()["required"]
    warnings = [
        _unknown(name, known, "unknown property, ignored")
        for name in sorted(name for name in data if name not in known)
    ]
    kept = {
        name: value
        for name, value in data.items()
        if name in known and (value is not None or name in required)
    }
    endpoint = kept.get("endpoint")
    if (
        isinstance(endpoint, str)
        and endpoint.startswith("/")
        and _endpoint_pattern().search(endpoint[1:])
    ):
        kept["endpoint"] = endpoint[1:]
        warnings.append(
            f"endpoint: {endpoint!r} starts with '/', which is dropped: clients connect to "
            f"{endpoint[1:]!r}"
        )
    return kept, warnings


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """One endpoint as the platform describes it: the six properties of a ``.websocket`` file,
    and the platform's own ``engine``, ``updatedBy`` and ``updatedAt``.

    ``location`` of a descriptor loaded from a project is where the file really is in the
    project (``/my-project/websockets/x.websocket``); ``declared_location`` keeps the file's own
    value when that differs. ``warnings`` says what reading the file leniently made of it.
    """

    endpoint: str
    handler: str
    location: str = ""
    description: str = ""
    created_by: str = ""
    created_at: str = ""
    engine: str = ""
    updated_by: str = ""
    updated_at: str = ""
    declared_location: str = ""
    # ws_notebook's extension: the server an outbound connection connects to (ws://, wss://).
    uri: str = ""
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)

    @classmethod
    def new(
        cls,
        endpoint: str,
        handler: str,
        *,
        location: str = "",
        description: str = "",
        created_by: str | None = None,
    ) -> Descriptor:
        """A descriptor created now, by the current user unless ``created_by`` says otherwise.

        Only the endpoint name is checked (the schema's pattern): the other properties are
        made here. Values that are not strings get the schema's full check and its messages.
        """
        properties = {
            "endpoint": endpoint,
            "handler": handler,
            "location": location,
            "description": description,
            "createdBy": created_by if created_by is not None else _user_name(),
            "createdAt": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        }
        if not handler or not all(isinstance(value, str) for value in properties.values()):
            return cls.from_json(properties, strict=True)
        return cls(
            endpoint=check_endpoint_name(endpoint),
            handler=handler,
            location=location,
            description=description,
            created_by=properties["createdBy"],
            created_at=properties["createdAt"],
        )

    @classmethod
    def from_json(cls, data: Any, source: str | None = None, *, strict: bool = False) -> Descriptor:
        """Validate parsed JSON; raise DescriptorError listing every problem.

        Read as the platform reads it (see ``_lenient``: what it ignored or changed is in
        ``warnings``), or with ``strict=True`` against the schema as written, where an unknown
        property (the platform's ``engine``, ``updatedBy``, ``updatedAt`` included), a ``null``
        and a leading ``/`` in ``endpoint`` are errors. Either way a descriptor naming no
        author was created by ``SYSTEM``, as the platform records it.
        """
        warnings: list[str] = []
        if not strict and isinstance(data, dict):
            data, warnings = _lenient(data)
        errors = sorted(
            _validator(strict).iter_errors(data), key=lambda e: [str(p) for p in e.path]
        )
        lines = [line for error in errors for line in _describe(error)] + _surrogates(data)
        # dict.fromkeys: one line per problem, though jsonschema may report it more than once.
        problems = list(dict.fromkeys(lines))
        if problems:
            location = data.get("location") if isinstance(data, dict) else None
            raise DescriptorError(problems, source, location if isinstance(location, str) else "")
        return cls(
            endpoint=data["endpoint"],
            handler=data["handler"],
            location=data.get("location", ""),
            description=data.get("description", ""),
            created_by=data.get("createdBy") or DEFAULT_CREATED_BY,
            created_at=data.get("createdAt", ""),
            engine=data.get("engine", ""),
            updated_by=data.get("updatedBy", ""),
            updated_at=data.get("updatedAt", ""),
            uri=data.get("uri", ""),
            warnings=tuple(warnings),
        )

    def to_json(self) -> dict[str, str]:
        """The descriptor as the platform writes it, in the artifact's order then the platform's
        own fields; unset ones left out."""
        properties = {
            "location": self.location,
            "handler": self.handler,
            "endpoint": self.endpoint,
            "description": self.description,
            "createdBy": self.created_by,
            "createdAt": self.created_at,
            "engine": self.engine,
            "updatedBy": self.updated_by,
            "updatedAt": self.updated_at,
            "uri": self.uri,
        }
        return {name: value for name, value in properties.items() if value}

    def replace(self, **changes: Any) -> Descriptor:
        return dataclasses.replace(self, **changes)


def read_descriptor(path: str | Path, *, strict: bool = False) -> Descriptor:
    """Read and validate one ``.websocket`` file; errors are prefixed with the file name.

    Leniently, as the platform reads it, or with ``strict=True`` against the schema as written
    (see ``Descriptor.from_json``).
    """
    path = Path(path)
    try:
        text = path.read_text("utf-8-sig")  # a byte order mark, as some editors write, is fine
    except OSError as error:
        raise DescriptorError(
            [f"cannot read file: {error.strerror or error}"], str(path)
        ) from error
    except UnicodeDecodeError as error:
        raise DescriptorError([f"not UTF-8 text ({error.reason})"], str(path)) from error
    try:
        data = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as error:
        problem = f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        raise DescriptorError([problem], str(path)) from error
    except (ValueError, RecursionError) as error:  # a huge integer, or nesting too deep
        problem = (
            f"invalid JSON: {error}"
            if isinstance(error, ValueError)
            else "invalid JSON: nested too deeply"
        )
        raise DescriptorError([problem], str(path)) from error
    repeated = [
        f"{printable(name)}: defined {'twice' if count == 2 else f'{count} times'}"
        for name, count in getattr(data, "repeated", {}).items()
    ]
    try:
        descriptor = Descriptor.from_json(data, source=str(path), strict=strict)
    except DescriptorError as error:
        raise DescriptorError(repeated + error.problems, str(path), error.location) from error
    if repeated:
        raise DescriptorError(repeated, str(path), descriptor.location)
    return descriptor


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry, as in some containers
        return "unknown"
