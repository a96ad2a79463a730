"""Handler functions of an endpoint, found by name in a cell, a module or a mapping.

A handler reacts to a connection opening, a message, an error and a close. Both the Python
names (``on_open(client)``, ``on_message(message, client)``, ``on_error(error, client)``,
``on_close(client)``) and the codbex names (``onOpen``, ``onMessage``, ...) are accepted. A handler
may take fewer arguments than offered (codbex's ``onMessage(message)`` ports unchanged) and may
be ``async def``.

A handler module loaded from a file imports the modules beside it from a namespace of its own
(:mod:`ws_notebook.imports`); ``from_file(path, run=False)`` checks one without running it.
A cell's handlers run in a namespace of their own that falls back to the notebook's globals;
running the cell again keeps the state its unchanged assignments hold (see ``from_source``).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import dataclasses
import difflib
import inspect
import linecache
import symtable
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import Error
from .imports import LocalImports

__all__ = ["HandlerError", "Handlers", "EVENT_NAMES", "free_names"]

# event -> (Python name, codbex name, the arguments a handler is offered)
EVENT_NAMES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "open": ("on_open", "onOpen", ("client",)),
    "message": ("on_message", "onMessage", ("message", "client")),
    "error": ("on_error", "onError", ("error", "client")),
    "close": ("on_close", "onClose", ("client",)),
}
_ALL_NAMES = [name for python, codbex, _ in EVENT_NAMES.values() for name in (python, codbex)]
# Names every module has without binding them.
_MODULE_NAMES = frozenset(
    [
        "__name__",
        "__file__",
        "__doc__",
        "__builtins__",
        "__spec__",
        "__loader__",
        "__package__",
        "__cached__",
        "__annotations__",
        "__path__",
    ]
)


class HandlerError(Error, ValueError):
    """Handler code that cannot be used: missing file, syntax error, wrong signature."""


def _arguments_taken(name: str, signature: inspect.Signature, offered: tuple[str, ...]) -> int:
    """How many of the ``offered`` arguments a handler takes; HandlerError if it cannot be called."""
    parameters = list(signature.parameters.values())
    keyword_only = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if keyword_only:
        raise HandlerError(
            f"{name}{signature} needs keyword arguments {', '.join(keyword_only)}; "
            f"it is called as {name}({', '.join(offered)})"
        )
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return len(offered)
    required = [p for p in positional if p.default is p.empty]
    if len(required) > len(offered):
        raise HandlerError(
            f"{name}{signature} takes {len(required)} arguments; "
            f"it is called as {name}({', '.join(offered)})"
        )
    return min(len(positional), len(offered))


def _adapt(name: str, function: Callable, offered: tuple[str, ...]) -> Callable:
    """Return ``function`` callable with all ``offered`` arguments, dropping those it does not take."""
    if not callable(function):
        raise HandlerError(f"{name} is {type(function).__name__}, not a function")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins without a signature: offer everything
        return function
    taken = _arguments_taken(name, signature, offered)
    if taken == len(offered):
        return function
    if inspect.iscoroutinefunction(function):

        async def adapted_async(*args: Any) -> Any:
            return await function(*args[:taken])

        return adapted_async

    def adapted(*args: Any) -> Any:
        return function(*args[:taken])

    return adapted


def _near_misses(names: Iterable[str]) -> tuple[str, ...]:
    """Warnings for names that look like a handler's but are not one, such as ``on_mesage``."""
    return tuple(
        f"{name!r} looks like a handler name; did you mean {near[0]!r}?"
        for name in names
        if name not in _ALL_NAMES
        and (near := difflib.get_close_matches(name, _ALL_NAMES, n=1, cutoff=0.8))
    )


def _compile(source: str | ast.Module, filename: str, flags: int = 0) -> Any:
    """``compile``, with a syntax error turned into a HandlerError saying ``file:line: what``."""
    try:
        return compile(source, filename, "exec", flags)
    except (SyntaxError, ValueError) as error:  # ValueError: a NUL byte in the source
        name = getattr(error, "filename", None) or filename
        lineno = getattr(error, "lineno", None)
        where = f"{name}:{lineno}" if lineno else name
        raise HandlerError(f"{where}: {getattr(error, 'msg', None) or error}") from error


@dataclasses.dataclass(frozen=True)
class Handlers:
    """The functions that serve one endpoint; each takes the full argument list."""

    on_open: Callable[..., Any] | None = None
    on_message: Callable[..., Any] | None = None
    on_error: Callable[..., Any] | None = None
    on_close: Callable[..., Any] | None = None
    source: str | None = None  # the module source, so the endpoint can be exported
    warnings: tuple[str, ...] = ()  # near-miss names such as "on_mesage"
    # Modules the handler module imported from its folder while it loaded (helpers, package
    # __init__ files), so that a watcher reloads it when one of them changes.
    local_files: tuple[Path, ...] = ()
    # Set when the module was only read, not run (from_file(path, run=False)): the events it
    # defines. The functions above are then all None, so nothing of it can be called.
    static_events: tuple[str, ...] | None = None
    imports: LocalImports | None = dataclasses.field(default=None, repr=False, compare=False)
    # The globals the handlers run in, for code run by from_source: a re-run of the cell takes
    # its state from here, and an export the notebook names the handlers use.
    namespace: dict[str, Any] | None = dataclasses.field(default=None, repr=False, compare=False)
    kept: tuple[str, ...] = ()  # names whose values a re-run kept from the previous run

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any], source: str | None = None) -> Handlers:
        """Pick the handler functions out of a module's or cell's namespace."""
        found: dict[str, Any] = {}
        for event, (python, codbex, offered) in EVENT_NAMES.items():
            if python in namespace and codbex in namespace:
                raise HandlerError(f"both {python} and {codbex} are defined; keep one of them")
            name = python if python in namespace else codbex
            if name in namespace:
                found[f"on_{event}"] = _adapt(name, namespace[name], offered)
        warnings = _near_misses(name for name, value in namespace.items() if callable(value))
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
        cls,
        source: str,
        filename: str,
        fallback: Mapping[str, Any] | None = None,
        previous: Handlers | None = None,
    ) -> Handlers:
        """Run handler code and pick its handlers.

        With ``fallback`` (a notebook's globals), the code gets a namespace of its own whose
        missing names are looked up there, live: handlers see notebook state, and two endpoints
        can each define ``on_message`` or a helper of the same name without clashing.

        With ``previous`` (the handlers the endpoint has now, from an earlier run of the cell),
        state survives the re-run, because connections kept open rely on it: a top-level
        assignment whose expression is unchanged (``names = {}``) keeps the value it holds now,
        so what ``on_open`` stored for a client is still there for its next message. An edited
        assignment takes its new value; functions, classes and modules are always the new ones.
        ``kept`` lists the names kept.
        """
        code = _compile(source, filename)
        namespace: dict[str, Any] = (
            _NotebookScope(fallback) if fallback is not None else {"__name__": Path(filename).stem}
        )
        _execute(code, source, filename, namespace)
        kept = _keep_state(previous, source, namespace) if previous is not None else ()
        handlers = cls.from_namespace(namespace, source)
        return dataclasses.replace(handlers, namespace=namespace, kept=kept)

    @classmethod
    def from_syntax(cls, source: str, filename: str) -> Handlers:
        """Check handler code without running it: for ``ws-notebook validate``.

        Syntax errors, the handlers a module defines at module level (``def``, ``async def``, an
        assignment, an import), their signatures (for ``def`` and ``lambda``), near-miss names
        and a handler defined under both names are found as when the module runs; what running
        it would raise is not, except for names the module reads but never defines (neither
        assigned, imported nor defined at module level, nor builtins): running it would raise
        NameError, as a handler exported without the notebook's globals it used did.
        The result has no functions: ``static_events`` lists the events.
        """
        tree = _compile(source, filename, ast.PyCF_ONLY_AST)
        _compile(tree, filename)  # what only the compiler finds, such as 'return' outside a def
        _check_defined(source, tree, filename)
        bound = dict(_bindings(tree.body))  # the last binding of a name wins, as when it runs
        events = []
        for event, (python, codbex, offered) in EVENT_NAMES.items():
            if python in bound and codbex in bound:
                raise HandlerError(
                    f"{filename}: both {python} and {codbex} are defined; keep one of them"
                )
            name = python if python in bound else codbex
            node = bound.get(name)
            if node is None:
                continue
            if isinstance(node, ast.Lambda) or (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not node.decorator_list
            ):
                try:
                    _arguments_taken(name, _signature(node.args), offered)
                except HandlerError as error:
                    raise HandlerError(f"{filename}: {error}") from None
            events.append(event)
        functions = [name for name, node in bound.items() if isinstance(node, _CALLABLE_NODES)]
        return cls(source=source, warnings=_near_misses(functions), static_events=tuple(events))

    @classmethod
    def from_file(cls, path: str | Path, *, run: bool = True) -> Handlers:
        """Load a handler module from a file, or with ``run=False`` only check it.

        JavaScript (``.js``, ``.mjs``, ``.cjs``; ``.ts`` is refused with what to do) runs in
        V8 and gives handlers of the same shape (:mod:`ws_notebook.javascript`).

        The module imports the modules beside it from a namespace of its own (see
        :mod:`ws_notebook.imports`). Whatever its code raises is its load error, naming the file
        and line, ``KeyboardInterrupt`` and ``SystemExit`` included: loading a module must not
        stop the server or the watcher.
        """
        path = Path(path)
        if path.suffix in (".js", ".mjs", ".cjs", ".ts"):  # run in V8: see ws_notebook.javascript
            from . import javascript

            return javascript.from_file(path, run=run)
        try:
            source = path.read_text("utf-8")
        except OSError as error:
            raise HandlerError(f"{path}: cannot read handler: {error.strerror or error}") from error
        except UnicodeDecodeError as error:
            raise HandlerError(f"{path}: handler is not UTF-8 text ({error.reason})") from error
        if not run:
            return cls.from_syntax(source, str(path))
        code = _compile(source, str(path))
        imports = LocalImports(path.absolute().parent)
        namespace = imports.module_globals(path)
        try:
            _execute(code, source, str(path), namespace)
            handlers = cls.from_namespace(namespace, source)
        except HandlerError as error:  # a handler that cannot be called as it will be
            imports.release()
            raise HandlerError(f"{path}: {error}") from error
        except BaseException as error:
            imports.release()
            # Cancellation and generator exits belong to the caller, not to the module.
            if isinstance(error, (GeneratorExit, asyncio.CancelledError)):
                raise
            lines = [
                f.lineno
                for f in traceback.extract_tb(error.__traceback__)
                if f.filename == str(path)
            ]
            where = f"{path}:{lines[-1]}" if lines else str(path)
            what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise HandlerError(f"{where}: {what}") from error
        return dataclasses.replace(handlers, local_files=imports.local_files, imports=imports)

    def release(self) -> None:
        """Forget the modules the handler imported from its folder, once it has been replaced."""
        if self.imports is not None:
            self.imports.release()

    @property
    def notebook(self) -> Mapping[str, Any] | None:
        """The notebook globals a cell's handlers fall back to; None for a file or an object."""
        return self.namespace.fallback if isinstance(self.namespace, _NotebookScope) else None

    @property
    def defined(self) -> list[str]:
        """Names of the events this set reacts to."""
        if self.static_events is not None:
            return list(self.static_events)
        return [event for event in EVENT_NAMES if getattr(self, f"on_{event}") is not None]


_CALLABLE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ImportFrom)
_BLOCKS = (ast.If, ast.With, ast.AsyncWith, ast.Try, getattr(ast, "TryStar", ast.Try))


def _bindings(body: list[ast.stmt]) -> Iterator[tuple[str, ast.AST]]:
    """The names module-level code binds, each with what binds it, in order.

    Statements inside ``if``, ``try`` and ``with`` blocks run at module level too.
    """
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield statement.name, statement
        elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            if statement.value is None:  # ``name: type`` alone binds nothing
                continue
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        yield node.id, statement.value
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                if alias.name != "*":
                    yield (alias.asname or alias.name).partition(".")[0], statement
        elif isinstance(statement, _BLOCKS):
            blocks = [statement.body, getattr(statement, "orelse", [])]
            blocks += [getattr(statement, "finalbody", [])]
            blocks += [handler.body for handler in getattr(statement, "handlers", [])]
            for block in blocks:
                yield from _bindings(block)


def free_names(source: str, filename: str = "<handler>") -> dict[str, int]:
    """The global names code reads but does not bind at module level, each with the first line
    reading it, in the order they are first read: what it takes from elsewhere (builtins, a
    notebook's globals).

    A name a function assigns under ``global`` counts as bound. The source must compile.
    """
    top = symtable.symtable(source, filename, "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    read: set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        for symbol in table.get_symbols():
            if symbol.is_declared_global() and symbol.is_assigned():
                bound.add(symbol.get_name())
            elif symbol.is_referenced() and symbol.is_global():
                read.add(symbol.get_name())
    free = read - bound - _MODULE_NAMES
    first: dict[str, tuple[int, int]] = {}  # (line, column)
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Name) and node.id in free:
            here = (node.lineno, node.col_offset)
            first[node.id] = min(first.get(node.id, here), here)
    return {name: first[name][0] for name in sorted(first, key=first.__getitem__)}


def _check_defined(source: str, tree: ast.Module, filename: str) -> None:
    """HandlerError naming, with its line, every name the module reads but nothing defines."""
    if any(
        isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names)
        for node in tree.body
    ):
        return  # ``from x import *`` may define anything
    undefined = [
        f"{filename}:{line}: name {name!r} is not defined"
        for name, line in free_names(source, filename).items()
        if not hasattr(builtins, name)
    ]
    if undefined:
        raise HandlerError("\n".join(undefined))


def _assignments(source: str) -> dict[str, str]:
    """The names top-level assignments bind, each with its expression (``ast.dump``, so spacing
    and comments do not count); the last assignment of a name wins, as when the code runs."""
    bindings = _bindings(ast.parse(source).body)
    return {name: ast.dump(node) for name, node in bindings if isinstance(node, ast.expr)}


def _keep_state(previous: Handlers, source: str, namespace: dict[str, Any]) -> tuple[str, ...]:
    """Put the values of ``previous``'s unchanged assignments back into a re-run's namespace.

    Only data is kept: a function, class or module (or any callable) is the new run's.
    """
    if previous.namespace is None or previous.source is None:
        return ()
    before = _assignments(previous.source)
    kept = []
    for name, expression in _assignments(source).items():
        if before.get(name) != expression or name not in previous.namespace:
            continue
        value = previous.namespace[name]
        if name in namespace and not callable(value) and not isinstance(value, types.ModuleType):
            namespace[name] = value
            kept.append(name)
    return tuple(kept)


def _execute(code: types.CodeType, source: str, filename: str, namespace: dict[str, Any]) -> None:
    # Make tracebacks show the handler's lines, as IPython does for cells.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(code, namespace)


class _Shown(str):
    """A default value as the source spells it, for a signature read from the syntax tree."""

    def __repr__(self) -> str:
        return str(self)


def _signature(arguments: ast.arguments) -> inspect.Signature:
    """The signature a ``def`` or ``lambda`` will have, from its syntax tree."""
    P = inspect.Parameter
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults))
    defaults += arguments.defaults
    parameters = [
        P(
            arg.arg,
            P.POSITIONAL_ONLY if index < len(arguments.posonlyargs) else P.POSITIONAL_OR_KEYWORD,
            default=P.empty if default is None else _Shown(ast.unparse(default)),
        )
        for index, (arg, default) in enumerate(zip(positional, defaults, strict=True))
    ]
    if arguments.vararg:
        parameters.append(P(arguments.vararg.arg, P.VAR_POSITIONAL))
    for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        shown = P.empty if default is None else _Shown(ast.unparse(default))
        parameters.append(P(arg.arg, P.KEYWORD_ONLY, default=shown))
    if arguments.kwarg:
        parameters.append(P(arguments.kwarg.arg, P.VAR_KEYWORD))
    return inspect.Signature(parameters)


class _NotebookScope(dict):
    """Globals of a cell's handlers: its own names first, then the notebook's, then builtins."""

    def __init__(self, fallback: Mapping[str, Any]) -> None:
        super().__init__(__name__="__main__")
        self.fallback = fallback

    def __missing__(self, name: str) -> Any:
        try:
            return self.fallback[name]
        except KeyError:
            pass
        builtins = self.get("__builtins__")
        namespace = builtins if isinstance(builtins, dict) else vars(builtins)
        return namespace[name]
