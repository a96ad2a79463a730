"""codbex projects on disk: ``*.websocket`` descriptors with Python handler modules.

Loading checks every descriptor and handler of a folder before anything is mounted, so a
project with three broken files reports all three at once. Exporting writes an endpoint back in
the same layout, atomically, so that loading the folder again mounts the same endpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .descriptor import Descriptor, DescriptorError, printable, read_descriptor
from .handlers import HandlerError, Handlers

__all__ = [
    "LoadedEndpoint",
    "ProjectError",
    "export_endpoint",
    "find_descriptors",
    "load_endpoint",
    "load_project",
]

SUFFIX = ".websocket"


class ProjectError(ValueError):
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


def _workspace_roots(descriptor: Descriptor, path: Path, root: Path | None) -> list[Path]:
    """Folders a project-relative ``handler`` path may start from, most specific first.

    ``location`` (e.g. ``/my-project/websockets/myws.websocket``) says where the file sits in
    the workspace, so the part of the real path before it is the workspace root. Failing that,
    each folder from the descriptor's own up to the loaded folder's parent is tried (every
    ancestor, when a single file was loaded).
    """
    roots: list[Path] = []
    location = PurePosixPath(descriptor.location.lstrip("/")) if descriptor.location else None
    absolute = path.resolve()
    if location and location.parts and absolute.parts[-len(location.parts) :] == location.parts:
        roots.append(absolute.parents[len(location.parts) - 1])
    top = root.resolve().parent if root is not None else None
    for folder in absolute.parents:
        roots.append(folder)
        if folder == top:
            break
    return list(dict.fromkeys(roots))


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, say: no such handler
        return False


def resolve_handler(descriptor: Descriptor, path: Path, root: Path | None) -> Path:
    """Find the handler module a descriptor names; ``.py`` is assumed when it has no extension."""
    relative = PurePosixPath(descriptor.handler.lstrip("/"))
    if not relative.name or relative.name in (".", ".."):
        raise HandlerError(f"{path}: handler: {descriptor.handler!r} does not name a module")
    if ".." in relative.parts:
        raise HandlerError(
            f"{path}: handler: {descriptor.handler!r} leaves the project ('..'); "
            "name the module by its path inside the workspace"
        )
    names = [relative] if relative.suffix in (".py", ".js") else [relative.with_suffix(".py")]
    if relative.suffix == ".js":  # a ported project: prefer the Python module beside the .js
        names.insert(0, relative.with_suffix(".py"))
    roots = _workspace_roots(descriptor, path, root)
    for name in names:
        for folder in roots:
            candidate = folder.joinpath(*name.parts)
            if _is_file(candidate):
                return candidate
    if relative.suffix == ".js":
        raise HandlerError(
            f"{path}: handler: {descriptor.handler!r} is JavaScript, which is not supported yet; "
            f"write {relative.with_suffix('.py').name} beside it (onOpen, onMessage, onError, "
            "onClose keep their names)"
        )
    tried = ", ".join(printable(str(folder.joinpath(*names[-1].parts))) for folder in roots)
    raise HandlerError(f"{path}: handler: {descriptor.handler!r} not found (looked for {tried})")


def load_project(path: str | Path) -> list[LoadedEndpoint]:
    """Read, validate and load every descriptor under ``path``; raise ProjectError listing all problems."""
    root = Path(path)
    files = find_descriptors(root)
    if not files:
        raise ProjectError([f"{root}: no *{SUFFIX} files found"])
    folder = root if root.is_dir() else None
    problems: list[str] = []
    loaded: list[LoadedEndpoint] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            descriptor = read_descriptor(file)
        except DescriptorError as error:
            problems.extend(str(error).splitlines())
            continue
        if descriptor.endpoint in seen:
            problems.append(
                f"{file}: endpoint: {descriptor.endpoint!r} is already defined by {seen[descriptor.endpoint]}"
            )
            continue
        seen[descriptor.endpoint] = file
        try:
            handler_path = resolve_handler(descriptor, file, folder)
            handlers = Handlers.from_file(handler_path)
        except HandlerError as error:
            problems.append(str(error))
            continue
        loaded.append(LoadedEndpoint(descriptor, handlers, file, handler_path))
    if problems:
        raise ProjectError(problems)
    return loaded


def load_endpoint(path: str | Path, root: str | Path | None = None) -> LoadedEndpoint:
    """Read, validate and load one ``.websocket`` file and its handler, as ``load_project`` does.

    ``root`` is the project folder the file was found in (handler paths are resolved as when
    that folder is loaded); raise ProjectError listing the file's problems.
    """
    file = Path(path)
    try:
        descriptor = read_descriptor(file)
    except DescriptorError as error:
        raise ProjectError(str(error).splitlines()) from error
    try:
        handler_path = resolve_handler(descriptor, file, Path(root) if root is not None else None)
        handlers = Handlers.from_file(handler_path)
    except HandlerError as error:
        raise ProjectError([str(error)]) from error
    return LoadedEndpoint(descriptor, handlers, file, handler_path)


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


def export_endpoint(descriptor: Descriptor, source: str | None, directory: str | Path) -> Path:
    """Write ``DIR/NAME.websocket`` and its handler ``DIR/NAME.py``; return the descriptor's path.

    The folder is treated as a codbex project named after itself, so ``location`` and ``handler``
    read ``/DIR/NAME.websocket`` and ``DIR/NAME.py`` as the platform writes them.
    """
    if source is None:
        raise HandlerError(
            f"endpoint {descriptor.endpoint!r} has no handler source to export "
            "(it was mounted from Python objects, not from a cell or a file)"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = descriptor.endpoint
    project = directory.resolve().name
    exported = descriptor.replace(
        location=f"/{project}/{name}{SUFFIX}", handler=f"{project}/{name}.py"
    )
    _write_atomically(directory / f"{name}.py", source if source.endswith("\n") else source + "\n")
    target = directory / f"{name}{SUFFIX}"
    _write_atomically(target, json.dumps(exported.to_json(), indent=2) + "\n")
    return target
