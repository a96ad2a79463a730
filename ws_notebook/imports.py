"""Each loaded handler module imports the modules beside it from a namespace of its own.

A handler does ``import helper`` for the ``helper.py`` in its folder. Putting the folder on
``sys.path`` made that one process-wide ``helper`` module: handlers of two folders that each have
a ``helper.py`` shared whichever was imported first, an edited helper never reloaded, and an
import run later inside a handler function found another folder's module, or none.

Instead, every load of a handler module gets a package of its own, ``_ws_notebook_handlers.N``,
whose ``__path__`` is the handler's folder, and a ``__builtins__`` whose ``__import__`` sends a
top-level name found in that folder (``name.py`` or ``name/``) to ``_ws_notebook_handlers.N.name``;
every other name imports as usual. The modules of that package are loaded with the same
builtins (a meta path finder gives them a loader that sets them), so helpers importing each other
by name, and imports done at message time inside handler functions, resolve in the same folder.
A new load is a new package, so edited helpers are imported afresh. ``sys.path`` is never
touched. (``importlib.import_module("helper")`` bypasses ``__import__`` and is not redirected.)
"""

from __future__ import annotations

import builtins
import importlib
import importlib.machinery
import importlib.util
import itertools
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["LocalImports"]

ROOT = "_ws_notebook_handlers"

_numbers = itertools.count(1)
_install_lock = threading.Lock()


class LocalImports:
    """The import namespace of one loaded handler module: its folder, as package ``self.name``."""

    def __init__(self, folder: Path) -> None:
        _install()
        importlib.invalidate_caches()  # the folder's listing may have changed since the last load
        self.folder = folder
        self.name = f"{ROOT}.{next(_numbers)}"
        self.package = types.ModuleType(self.name, f"modules beside {folder}")
        self.package.__path__ = [str(folder)]
        self.package.__package__ = self.name
        self.package.__spec__ = importlib.machinery.ModuleSpec(self.name, None, is_package=True)
        self.package.__spec__.submodule_search_locations = [str(folder)]
        self.package.__local_imports__ = self  # type: ignore[attr-defined]  # for _Finder
        # A copy taken now: a plain dict keeps builtin lookups in handler code at full speed.
        self.builtins: dict[str, Any] = {**vars(builtins), "__import__": self._import}
        self.files: list[Path] = []  # the folder's modules imported so far, in order
        sys.modules[self.name] = self.package

    def module_globals(self, path: Path) -> dict[str, Any]:
        """Globals for running the handler module at ``path`` in this namespace."""
        return {
            "__name__": path.stem,
            "__file__": str(path),
            "__package__": self.name,  # so ``from . import helper`` works as well
            "__builtins__": self.builtins,
        }

    @property
    def local_files(self) -> tuple[Path, ...]:
        """Files of the modules imported from the folder so far (helpers, package ``__init__``)."""
        return tuple(dict.fromkeys(self.files))

    def release(self) -> None:
        """Drop this namespace's modules from ``sys.modules``, once its handler is replaced."""
        prefix = self.name + "."
        for name in [n for n in list(sys.modules) if n == self.name or n.startswith(prefix)]:
            sys.modules.pop(name, None)

    def _import(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        top = name.partition(".")[0]
        if level or not self._is_local(top):
            return builtins.__import__(name, globals, locals, fromlist, level)
        # Code of a replaced handler may still run and import: give it its package back.
        sys.modules.setdefault(self.name, self.package)
        full = f"{self.name}.{name}"
        if fromlist:  # ``from helper import x``: the module itself, with ``x`` imported if a module
            return builtins.__import__(full, None, None, fromlist, 0)
        importlib.import_module(full)
        return sys.modules[f"{self.name}.{top}"]  # ``import pkg.sub`` binds ``pkg``

    def _is_local(self, top: str) -> bool:
        """Whether ``top`` is a module beside the handler: ``top.py``, or a ``top/`` package.

        A folder without ``__init__.py`` counts only if no module of that name exists elsewhere,
        as on ``sys.path``, where such a folder loses to a module found later: a codbex
        project's ``websockets/`` folder must not hide the ``websockets`` library.
        """
        if not top.isidentifier():
            return False
        folder = self.folder
        if (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file():
            return True
        if not (folder / top).is_dir():
            return False
        try:
            elsewhere = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return True
        return elsewhere is None or elsewhere.origin is None  # absent, or a namespace package


class _Loader(importlib.machinery.SourceFileLoader):
    """Runs a module of a handler's folder with that handler's builtins, always from source."""

    def __init__(self, fullname: str, path: str, scope: LocalImports) -> None:
        super().__init__(fullname, path)
        self.scope = scope

    def exec_module(self, module: types.ModuleType) -> None:
        module.__builtins__ = self.scope.builtins  # type: ignore[attr-defined]
        self.scope.files.append(Path(self.path))
        super().exec_module(module)

    def get_code(self, fullname: str) -> types.CodeType:
        # No bytecode cache: nothing is written into the project, and an edit made within the
        # same second as the last load (same size, same mtime) is never served stale.
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _Finder:
    """Finds ``_ws_notebook_handlers.N.*`` in N's folder, and loads it with N's builtins."""

    @classmethod
    def find_spec(
        cls, fullname: str, path: Sequence[str] | None = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        parts = fullname.split(".", 2)
        if parts[0] != ROOT or len(parts) < 3:
            return None
        package = sys.modules.get(f"{ROOT}.{parts[1]}")
        scope = getattr(package, "__local_imports__", None)
        if scope is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec and spec.origin and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = _Loader(fullname, spec.origin, scope)
        return spec


def _install() -> None:
    """Put the root package in ``sys.modules`` and the finder first on ``sys.meta_path``, once."""
    with _install_lock:
        if ROOT not in sys.modules:
            root = types.ModuleType(ROOT, "Import namespaces of loaded handler modules.")
            root.__path__ = []
            sys.modules[ROOT] = root
        if _Finder not in sys.meta_path:
            sys.meta_path.insert(0, _Finder)
