"""Handler functions of an endpoint, found by name in a cell, a module or a mapping.

A handler reacts to a connection opening, a message, an error and a close. Both the Python
names (``on_open(client)``, ``on_message(message, client)``, ``on_error(error, client)``,
``on_close(client)``) and the codbex names (``onOpen``, ``onMessage``, ...) are accepted. A handler
may take fewer arguments than offered (codbex's ``onMessage(message)`` ports unchanged) and may
be ``async def``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import linecache
import sys
import traceback
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["HandlerError", "Handlers", "EVENT_NAMES"]

# event -> (Python name, codbex name, the arguments a handler is offered)
EVENT_NAMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "open": ("on_open", "onOpen", ("client",)),
    "message": ("on_message", "onMessage", ("message", "client")),
    "error": ("on_error", "onError", ("error", "client")),
    "close": ("on_close", "onClose", ("client",)),
}
_ALL_NAMES = [name for python, codbex, _ in EVENT_NAMES.values() for name in (python, codbex)]


class HandlerError(ValueError):
    """Handler code that cannot be used: missing file, syntax error, wrong signature."""


def _adapt(name: str, function: Callable, offered: tuple[str, ...]) -> Callable:
    """Return ``function`` callable with all ``offered`` arguments, dropping those it does not take."""
    if not callable(function):
        raise HandlerError(f"{name} is {type(function).__name__}, not a function")
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: offer everything
        return function
    keyword_only = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if keyword_only:
        raise HandlerError(
            f"{name}{inspect.signature(function)} needs keyword arguments {', '.join(keyword_only)}; "
            f"it is called as {name}({', '.join(offered)})"
        )
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters) or len(positional) == len(offered):
        return function
    required = [p for p in positional if p.default is p.empty]
    if len(required) > len(offered):
        raise HandlerError(
            f"{name}{inspect.signature(function)} takes {len(required)} arguments; "
            f"it is called as {name}({', '.join(offered)})"
        )
    taken = min(len(positional), len(offered))
    if inspect.iscoroutinefunction(function):

        async def adapted_async(*args: Any) -> Any:
            return await function(*args[:taken])

        return adapted_async

    def adapted(*args: Any) -> Any:
        return function(*args[:taken])

    return adapted


@dataclasses.dataclass(frozen=True)
class Handlers:
    """The functions that serve one endpoint; each takes the full argument list."""

    on_open: Callable[..., Any] | None = None
    on_message: Callable[..., Any] | None = None
    on_error: Callable[..., Any] | None = None
    on_close: Callable[..., Any] | None = None
    source: str | None = None  # the module source, so the endpoint can be exported
    warnings: tuple[str, ...] = ()  # near-miss names such as "on_mesage"

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any], source: str | None = None) -> Handlers:
        """Pick the handler functions out of a module's or cell's namespace."""
        found: dict[str, Callable] = {}
        for event, (python, codbex, offered) in EVENT_NAMES.items():
            if python in namespace and codbex in namespace:
                raise HandlerError(f"both {python} and {codbex} are defined; keep one of them")
            name = python if python in namespace else codbex
            if name in namespace:
                found[f"on_{event}"] = _adapt(name, namespace[name], offered)
        warnings = tuple(
            f"{name!r} looks like a handler name; did you mean {near[0]!r}?"
            for name, value in namespace.items()
            if callable(value)
            and name not in _ALL_NAMES
            and (near := difflib.get_close_matches(name, _ALL_NAMES, n=1, cutoff=0.8))
        )
        return cls(**found, source=source, warnings=warnings)

    @classmethod
    def from_object(cls, handler: Any) -> Handlers:
        """Handlers from a module, a mapping of names to functions, or any object with them."""
        if isinstance(handler, Handlers):
            return handler
        if isinstance(handler, Mapping):
            return cls.from_namespace(handler)
        names = {name: getattr(handler, name) for name in _ALL_NAMES if hasattr(handler, name)}
        source = None
        if isinstance(handler, types.ModuleType):
            try:
                source = inspect.getsource(handler)
            except (OSError, TypeError):
                source = None
        return cls.from_namespace(names, source)

    @classmethod
    def from_source(
        cls, source: str, filename: str, fallback: Mapping[str, Any] | None = None
    ) -> Handlers:
        """Run handler code and pick its handlers.

        With ``fallback`` (a notebook's globals), the code gets a namespace of its own whose
        missing names are looked up there, live: handlers see notebook state, and two endpoints
        can each define ``on_message`` or a helper of the same name without clashing.
        """
        try:
            code = compile(source, filename, "exec")
        except (SyntaxError, ValueError) as error:  # ValueError: a NUL byte in the source
            name = getattr(error, "filename", None) or filename
            lineno = getattr(error, "lineno", None)
            where = f"{name}:{lineno}" if lineno else name
            raise HandlerError(f"{where}: {getattr(error, 'msg', None) or error}") from error
        # Make tracebacks show the handler's lines, as IPython does for cells.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: dict[str, Any] = (
            _NotebookScope(fallback) if fallback is not None else {"__name__": Path(filename).stem}
        )
        exec(code, namespace)
        return cls.from_namespace(namespace, source)

    @classmethod
    def from_file(cls, path: str | Path) -> Handlers:
        """Load a Python handler module from a file."""
        path = Path(path)
        if path.suffix == ".js":
            raise HandlerError(
                f"{path}: JavaScript handlers are not supported yet; port it to a Python module "
                "(onOpen, onMessage, onError, onClose keep their names)"
            )
        try:
            source = path.read_text("utf-8")
        except OSError as error:
            raise HandlerError(f"{path}: cannot read handler: {error.strerror or error}") from error
        except UnicodeDecodeError as error:
            raise HandlerError(f"{path}: handler is not UTF-8 text ({error.reason})") from error
        # Its folder is importable while it runs, so a handler can import modules beside it.
        sys.path.insert(0, str(path.parent))
        try:
            return cls.from_source(source, str(path))
        except HandlerError:
            raise
        except (Exception, SystemExit) as error:  # the module raised while it ran: say where
            lines = [
                f.lineno
                for f in traceback.extract_tb(error.__traceback__)
                if f.filename == str(path)
            ]
            where = f"{path}:{lines[-1]}" if lines else str(path)
            raise HandlerError(f"{where}: {type(error).__name__}: {error}") from error
        finally:
            sys.path.remove(str(path.parent))

    @property
    def defined(self) -> list[str]:
        """Names of the events this set reacts to."""
        return [event for event in EVENT_NAMES if getattr(self, f"on_{event}") is not None]


class _NotebookScope(dict):
    """Globals of a cell's handlers: its own names first, then the notebook's, then builtins."""

    def __init__(self, fallback: Mapping[str, Any]) -> None:
        super().__init__(__name__="__main__")
        self._fallback = fallback

    def __missing__(self, name: str) -> Any:
        try:
            return self._fallback[name]
        except KeyError:
            pass
        builtins = self.get("__builtins__")
        namespace = builtins if isinstance(builtins, dict) else vars(builtins)
        return namespace[name]
