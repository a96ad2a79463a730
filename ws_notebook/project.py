"""codbex projects on disk: ``*.websocket`` descriptors with Python handler modules.

Loading checks every descriptor and handler of a folder before anything is mounted, so a
project with three broken files reports all three at once. A descriptor is known by its path in
the project, as the platform knows it (``/my-project/websockets/x.websocket``, see
``project_path``): that is its ``location`` once loaded, and every problem found loading it
starts with it. Handlers are only loaded from inside the project: loading runs a module's code,
and a descriptor must not name one elsewhere on the machine. Exporting writes an endpoint back
in the same layout, atomically, so that loading the folder again mounts the same endpoint; a
cell's handler module takes along the notebook's imports and constants it uses.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import os
import sys
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .descriptor import Descriptor, DescriptorError, printable, read_descriptor
from .errors import Error
from .handlers import HandlerError, Handlers, free_names

__all__ = [
    "LoadedEndpoint",
    "ProjectError",
    "export_endpoint",
    "find_descriptors",
    "load_endpoint",
    "load_project",
    "locate_endpoint",
    "project_path",
]

SUFFIX = ".websocket"
PROJECT_FILE = "project.json"  # what a codbex project folder holds at its top


class ProjectError(Error, ValueError):
    """Some descriptors or handlers of a project cannot be used; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class LoadedEndpoint:
    descriptor: Descriptor
    handlers: Handlers
    path: Path  # the .websocket file
    handler_path: Path


def find_descriptors(path: str | Path) -> list[Path]:
    """The ``.websocket`` file itself, or every one under a folder (hidden folders skipped)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ProjectError([f"{path}: no such file or folder"])
    return sorted(
        found
        for found in path.rglob(f"*{SUFFIX}")
        if found.is_file()
        and not any(part.startswith(".") for part in found.relative_to(path).parts[:-1])
    )


def _location_parts(descriptor: Descriptor, absolute: Path) -> tuple[str, ...]:
    """The parts of ``location`` (``my-project/websockets/x.websocket``) if the real path of the
    file ends with them, else none: a ``location`` copied from elsewhere says nothing."""
    location = PurePosixPath(descriptor.location.lstrip("/"))
    parts = location.parts if descriptor.location else ()
    return parts if parts and absolute.parts[-len(parts) :] == parts else ()


def _project_folder(descriptor: Descriptor, path: Path, root: Path | None) -> Path:
    """The folder (a real path) that the handler of the descriptor at ``path`` must be inside.

    ``root``, the folder that was loaded; for a single file (no ``root``), the project folder
    its ``location`` names when that matches where the file is (``/my-project/websockets/
    x.websocket`` at ``/home/u/ws/my-project/websockets/x.websocket``: ``/home/u/ws/my-project``),
    else the file's own folder.
    """
    if root is not None:
        return root.resolve()
    absolute = path.resolve()
    parts = _location_parts(descriptor, absolute)
    return absolute.parents[len(parts) - 2] if len(parts) >= 2 else absolute.parent


def _workspace_roots(descriptor: Descriptor, path: Path, project: Path) -> list[Path]:
    """Folders a project-relative ``handler`` path may start from, most specific first.

    ``location`` (e.g. ``/my-project/websockets/myws.websocket``) says where the file sits in
    the workspace, so the part of the real path before it is the workspace root. Then each
    folder from the descriptor's own up to the project folder's parent: codbex handler paths
    start with the project's name (``my-project/ws-handler`` for the folder ``my-project``).
    """
    roots: list[Path] = []
    absolute = path.resolve()
    parts = _location_parts(descriptor, absolute)
    if parts:
        roots.append(absolute.parents[len(parts) - 1])
    for folder in absolute.parents:
        roots.append(folder)
        if folder == project.parent:
            break
    return list(dict.fromkeys(roots))


def project_path(
    file: str | Path, root: str | Path | None = None, declared: str | None = None
) -> str:
    """Where the descriptor ``file`` is in its project, as the platform writes ``location``:
    ``/my-project/websockets/x.websocket``.

    The file's own ``location`` (``declared``; None: read it from the file) when the file's
    path really ends with it (a project and a file at least); else the path from the project
    folder, named after it: the nearest folder holding a ``project.json`` up to ``root`` (the
    folder being loaded), else ``root``, else (a file loaded by itself) the file's own folder.
    """
    absolute = Path(os.path.abspath(file))
    if declared is None:
        declared = _declared_location(absolute)
    parts = PurePosixPath(declared.lstrip("/")).parts if declared else ()
    if len(parts) >= 2 and ".." not in parts and absolute.parts[-len(parts) :] == parts:
        return "/" + "/".join(parts)
    top = Path(os.path.abspath(root)) if root is not None else absolute.parent
    project = top
    if absolute.is_relative_to(top):
        for folder in absolute.parents:
            if not folder.is_relative_to(top):
                break
            if _is_file(folder / PROJECT_FILE):
                project = folder
                break
    else:
        project = absolute.parent
    inside = absolute.relative_to(project).parts
    return "/" + "/".join(part for part in (project.name, *inside) if part)


def _declared_location(file: Path) -> str:
    """The ``location`` a descriptor file gives, whatever else is wrong with it; else ""."""
    try:
        data = json.loads(file.read_text("utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return ""
    location = data.get("location") if isinstance(data, dict) else None
    return location if isinstance(location, str) else ""


def _placed(descriptor: Descriptor, where: str) -> Descriptor:
    """The descriptor with its real project path as ``location``, its own value kept beside it
    when that says something else."""
    declared = descriptor.location
    differs = declared and declared.lstrip("/") != where.lstrip("/")
    return descriptor.replace(location=where, declared_location=declared if differs else "")


def _in_project(where: str, file: Path, error: Exception) -> list[str]:
    """The lines of an error found loading the descriptor ``file``, each starting with its
    project path ``where`` (in place of the file's path, where one started with that)."""
    prefix = f"{file}: "
    return [f"{where}: {line.removeprefix(prefix)}" for line in str(error).splitlines() or [""]]


def _read(file: Path, root: Path | None, strict: bool = False) -> tuple[Descriptor, str]:
    """Read and validate a descriptor (as the file has it: its own ``location`` says where its
    workspace starts, for ``resolve_handler``), and its project path; ProjectError names it by
    that path."""
    try:
        descriptor = read_descriptor(file, strict=strict)
    except DescriptorError as error:
        where = project_path(file, root, error.location)
        raise ProjectError([f"{where}: {problem}" for problem in error.problems]) from error
    return descriptor, project_path(file, root, descriptor.location)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, say: no such handler
        return False


def resolve_handler(descriptor: Descriptor, path: Path, root: Path | None) -> Path:
    """Find the handler module a descriptor names, inside its project folder.

    Without an extension, as the platform writes it (``my-project/ws-handler``), the first of
    ``.py``, ``.js``, ``.mjs``, ``.cjs`` and ``.ts`` found is the module. A ``.js`` with a
    Python module beside it (a project ported by hand) is served by the Python module. A module
    found only outside the project, or inside it but through a link that leads out, is refused.
    """
    relative = PurePosixPath(descriptor.handler.lstrip("/"))
    if not relative.name or relative.name in (".", ".."):
        raise HandlerError(f"{path}: handler: {descriptor.handler!r} does not name a module")
    if ".." in relative.parts:
        raise HandlerError(
            f"{path}: handler: {descriptor.handler!r} leaves the project ('..'); "
            "name the module by its path inside the workspace"
        )
    javascript = (".js", ".mjs", ".cjs", ".ts")
    named = relative.suffix in (".py", *javascript)  # else the extension is left out
    if named:
        names = [relative]
    else:  # no extension: Python, then JavaScript
        names = [relative.with_suffix(suffix) for suffix in (".py", *javascript)]
    if relative.suffix == ".js":  # a ported project: prefer the Python module beside the .js
        names.insert(0, relative.with_suffix(".py"))
    project = _project_folder(descriptor, path, root)
    roots = _workspace_roots(descriptor, path, project)
    outside: Path | None = None
    for name in names:
        for folder in roots:
            candidate = folder.joinpath(*name.parts)
            if not _is_file(candidate):
                continue
            if not candidate.is_relative_to(project):
                outside = outside or candidate
                continue
            real = candidate.resolve()
            if not real.is_relative_to(project):
                raise HandlerError(
                    f"{path}: handler: {descriptor.handler!r} leaves the project: "
                    f"{printable(str(candidate))} links to {printable(str(real))}, outside "
                    f"the project folder {printable(str(project))}"
                )
            return candidate
    if outside is not None:
        raise HandlerError(
            f"{path}: handler: {descriptor.handler!r} is outside the project folder "
            f"{printable(str(project))} (found {printable(str(outside))}); handlers are only "
            "loaded from inside it"
        )
    tried = [folder.joinpath(*names[-1 if named else 0].parts) for folder in roots]
    shown = ", ".join(printable(str(p)) for p in tried if p.is_relative_to(project))
    if relative.suffix in javascript:
        raise HandlerError(
            f"{path}: handler: {descriptor.handler!r} does not exist (looked for {shown})"
        )
    if not named:
        shown += ", and for each with .js, .mjs, .cjs and .ts instead of .py"
    raise HandlerError(f"{path}: handler: {descriptor.handler!r} not found (looked for {shown})")


def load_project(
    path: str | Path, *, run_handlers: bool = True, strict: bool = False
) -> list[LoadedEndpoint]:
    """Read, validate and load every descriptor under ``path``; raise ProjectError listing all problems.

    ``run_handlers=False`` checks the handler modules without running them
    (``Handlers.from_file(path, run=False)``): nothing of the project executes. ``strict=True``
    checks descriptors against the schema as written (see ``Descriptor.from_json``). Every
    problem starts with its descriptor's project path (see ``project_path``).
    """
    root = Path(path)
    files = find_descriptors(root)
    if not files:
        raise ProjectError([f"{root}: no *{SUFFIX} files found"])
    folder = root if root.is_dir() else None
    problems: list[str] = []
    loaded: list[LoadedEndpoint] = []
    seen: dict[str, str] = {}
    for file in files:
        try:
            descriptor, where = _read(file, folder, strict)
        except ProjectError as error:
            problems.extend(error.problems)
            continue
        name = descriptor.endpoint
        if name in seen:
            problems.append(f"{where}: endpoint: {name!r} is already defined by {seen[name]}")
            continue
        seen[name] = where
        try:
            handler_path = resolve_handler(descriptor, file, folder)
            handlers = Handlers.from_file(handler_path, run=run_handlers)
        except HandlerError as error:
            problems.extend(_in_project(where, file, error))
            continue
        loaded.append(LoadedEndpoint(_placed(descriptor, where), handlers, file, handler_path))
    if problems:
        for item in loaded:
            item.handlers.release()
        raise ProjectError(problems)
    return loaded


def locate_endpoint(path: str | Path, root: str | Path | None = None) -> tuple[Descriptor, Path]:
    """Read and validate one ``.websocket`` file and find its handler module, without loading it.

    ``root`` is the project folder the file was found in (handler paths are resolved as when
    that folder is loaded); raise ProjectError listing the file's problems.
    """
    file = Path(path)
    folder = None if root is None else Path(root)
    descriptor, where = _read(file, folder)
    try:
        return _placed(descriptor, where), resolve_handler(descriptor, file, folder)
    except HandlerError as error:
        raise ProjectError(_in_project(where, file, error)) from error


def load_endpoint(path: str | Path, root: str | Path | None = None) -> LoadedEndpoint:
    """Read, validate and load one ``.websocket`` file and its handler, as ``load_project`` does.

    ``root`` is the project folder the file was found in (see ``locate_endpoint``); raise
    ProjectError listing the file's problems.
    """
    descriptor, handler_path = locate_endpoint(path, root)
    try:
        handlers = Handlers.from_file(handler_path)
    except HandlerError as error:
        raise ProjectError(_in_project(descriptor.location, Path(path), error)) from error
    return LoadedEndpoint(descriptor, handlers, Path(path), handler_path)


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _constant(value: Any) -> bool:
    """Whether ``repr(value)`` is Python source giving the value back: str, bytes, int, finite
    float, bool, None, and lists, tuples and dicts of those."""
    kind = type(value)
    if kind in (str, bytes, int, bool, type(None)):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind in (list, tuple):
        return all(_constant(item) for item in value)
    if kind is dict:
        return all(_constant(key) and _constant(item) for key, item in value.items())
    return False


def _import_of(value: Any) -> str | None:
    """``from MODULE import NAME`` for a function or class a module defines; else None."""
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
    if module in (None, "__main__") or not qualname.isidentifier():
        return None
    return (
        f"from {module} import {qualname}"
        if getattr(sys.modules.get(module), qualname, None) is value
        else None
    )


def _described(value: Any) -> str:
    if isinstance(value, (types.FunctionType, type)):
        return f"a {'class' if isinstance(value, type) else 'function'} defined in the notebook"
    return f"a {type(value).__name__} object"


def notebook_prelude(source: str, notebook: Mapping[str, Any]) -> list[str]:
    """The lines giving a cell's code, run as a module, the notebook names it reads: imports,
    then constants, each in the order the code first reads them.

    A module becomes an ``import``, a function or class a module defines a ``from ... import``,
    a constant (see ``_constant``) an assignment. Anything else (a function defined in the
    notebook, an object, a name the notebook does not define) cannot be written down: a
    HandlerError names each, so the export never writes a module that fails with NameError.
    """
    imports: list[str] = []
    constants: list[str] = []
    refused: list[str] = []
    for name in free_names(source):
        if name not in notebook:
            if not hasattr(builtins, name):
                refused.append(f"{name} (not defined in the notebook)")
            continue
        value = notebook[name]
        if isinstance(value, types.ModuleType):
            alias = "" if value.__name__ == name else f" as {name}"
            imports.append(f"import {value.__name__}{alias}")
        elif (line := _import_of(value)) is not None:
            imports.append(line if line.endswith(f" {name}") else f"{line} as {name}")
        elif _constant(value):
            constants.append(f"{name} = {value!r}")
        else:
            refused.append(f"{name} ({_described(value)})")
    if refused:
        raise HandlerError(
            "the handlers use names from the notebook that cannot be written into the exported "
            f"module: {', '.join(refused)}; define them in the endpoint's cell (or import them "
            "there from a module) and export again"
        )
    return imports + constants


def _with_prelude(source: str, prelude: list[str]) -> str:
    """``source`` with the prelude after its docstring and ``__future__`` imports, which must
    come first."""
    if not prelude:
        return source
    body = ast.parse(source).body
    after = 0
    for index, node in enumerate(body):
        docstring = (
            index == 0
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        if not docstring and not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            break
        after = node.end_lineno or after
    lines = source.splitlines(keepends=True)
    head = "".join(lines[:after])
    if head and not head.endswith("\n"):
        head += "\n"
    taken = "# From the notebook, as it was when this endpoint was exported:\n"
    return head + taken + "\n".join(prelude) + "\n\n" + "".join(lines[after:])


def export_endpoint(
    descriptor: Descriptor,
    source: str | None,
    directory: str | Path,
    notebook: Mapping[str, Any] | None = None,
    *,
    suffix: str = ".py",
) -> Path:
    """Write ``DIR/NAME.websocket`` and its handler ``DIR/NAME.py``; return the descriptor's path.

    The folder is treated as a codbex project named after itself, so ``location`` and ``handler``
    read ``/DIR/NAME.websocket`` and ``DIR/NAME.py`` as the platform writes them. ``notebook``
    (the globals a cell's handlers fall back to) adds the notebook's imports and constants the
    code reads at the top of the module (see ``notebook_prelude``), so it runs on its own.

    ``suffix=".js"`` writes a JavaScript handler (a ``%%websocket --js`` cell) as it is, to
    ``DIR/NAME.js``; a ``DIR/NAME.py`` already there is refused, as loading would serve it
    instead (see ``resolve_handler``).
    """
    if source is None:
        raise HandlerError(
            f"endpoint {descriptor.endpoint!r} has no handler source to export "
            "(it was mounted from Python objects, not from a cell or a file)"
        )
    if notebook is not None:
        try:
            source = _with_prelude(source, notebook_prelude(source, notebook))
        except HandlerError as error:
            raise HandlerError(f"cannot export {descriptor.endpoint!r}: {error}") from None
    directory = Path(directory)
    name = descriptor.endpoint
    if suffix != ".py" and (directory / f"{name}.py").exists():
        raise HandlerError(
            f"cannot export {name!r} to {directory}: {directory / f'{name}.py'} is there, and "
            f"loading the folder would serve it instead of {name}{suffix} (a Python module "
            "beside a .js handler wins); remove it or export to another folder"
        )
    directory.mkdir(parents=True, exist_ok=True)
    project = directory.resolve().name
    exported = descriptor.replace(
        location=f"/{project}/{name}{SUFFIX}",
        handler=f"{project}/{name}{suffix}",
        declared_location="",
        warnings=(),
    )
    handler = directory / f"{name}{suffix}"
    _write_atomically(handler, source if source.endswith("\n") else source + "\n")
    target = directory / f"{name}{SUFFIX}"
    _write_atomically(target, json.dumps(exported.to_json(), indent=2) + "\n")
    return target
