"""Hot reload of a codbex project: watch a folder and keep a registry in step with its files.

A :class:`ProjectWatcher` watches a folder (with ``watchfiles``) as a task on the running asyncio
loop. When a ``.websocket`` file or a handler module changes, it loads again only the
descriptors whose files changed and applies the difference to the registry:

- a new descriptor is mounted;
- a changed descriptor or handler is mounted again, which swaps the handlers in place, so open
  connections stay open and get the new handlers' events from then on;
- a removed descriptor is unmounted, its clients closed with 1001 (going away);
- a change that breaks a descriptor or its handler leaves the last good version serving, and the
  problems (file and property, as ``load_project`` words them) are reported, once each.

Reports go to the ``ws_notebook`` logger and, as :class:`WatchEvent` objects, to an optional
callback. Nothing here needs IPython.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchfiles import DefaultFilter, awatch

from .project import (
    LoadedEndpoint,
    ProjectError,
    find_descriptors,
    load_endpoint,
    load_project,
)
from .registry import Registry

__all__ = ["ProjectWatcher", "WatchEvent"]

logger = logging.getLogger("ws_notebook")


@dataclass(frozen=True)
class WatchEvent:
    """One thing the watcher did or found.

    ``kind`` is ``"mounted"`` (a new endpoint), ``"reloaded"`` (handlers or descriptor swapped in
    place; open connections kept), ``"unmounted"`` (its descriptor was removed, or it was renamed;
    clients closed with 1001), ``"error"`` (a file cannot be loaded: ``problems`` says why, one
    line each; ``endpoint`` is the name still served from its last good version, if any) or
    ``"recovered"`` (a broken file is back to the version being served: nothing to reload).
    ``path`` is the ``.websocket`` file; ``warnings`` are the handler module's near-miss names.
    """

    kind: str
    path: Path
    endpoint: str | None
    message: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# What a served file looked like when it was loaded: descriptor bytes, handler path and bytes.
_Stamp = tuple[bytes | None, Path, bytes | None]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class ProjectWatcher:
    """Keeps ``registry`` in step with the ``.websocket`` files under ``path``.

    ``load()`` mounts the project as it is (all or nothing, as ``load_project``), ``start()``
    watches it for changes from a task on the running loop, ``stop()`` cancels that task (the
    endpoints stay mounted). ``rescan()`` applies the differences once, now, without watching.
    """

    def __init__(
        self,
        registry: Registry,
        path: str | Path,
        *,
        on_event: Callable[[WatchEvent], None] | None = None,
        debounce_ms: int = 1600,
        step_ms: int = 50,
    ) -> None:
        self.registry = registry
        self.root = Path(path)
        self.on_event = on_event
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        # The folder handler paths are resolved from, as load_project(path) does it.
        self._folder: Path | None = self.root if self.root.is_dir() else None
        self._served: dict[Path, LoadedEndpoint] = {}  # descriptor file -> what it mounted
        self._stamps: dict[Path, _Stamp] = {}
        self._reported: dict[Path, tuple[str, ...]] = {}  # problems already reported, per file
        self._task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None

    def __repr__(self) -> str:
        state = "watching" if self.running else "not watching"
        return f"<ProjectWatcher {str(self.root)!r} {state}, serving {sorted(self.served)}>"

    # --- what is served ---------------------------------------------------------------------

    @property
    def served(self) -> dict[str, Path]:
        """Endpoint name -> the ``.websocket`` file whose last good version is mounted."""
        return {item.descriptor.endpoint: file for file, item in self._served.items()}

    @property
    def problems(self) -> dict[Path, tuple[str, ...]]:
        """Files that cannot be loaded right now, with their problems."""
        return dict(self._reported)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- loading ------------------------------------------------------------------------------

    def load(self) -> list[LoadedEndpoint]:
        """Mount every endpoint of the project; ProjectError lists all problems, nothing mounted.

        A folder without ``.websocket`` files yet is not an error here: nothing is mounted, and
        a watcher mounts the files when they appear.
        """
        if not find_descriptors(self.root):  # ProjectError if there is no such folder
            return []
        loaded = load_project(self.root)
        for item in loaded:
            self.registry.mount(item.descriptor, item.handlers)
            self._served[item.path] = item
            self._stamps[item.path] = self._stamp(item.path, item.handler_path)
        return loaded

    def rescan(self) -> list[WatchEvent]:
        """Compare the files with what is served, and mount, reload or unmount accordingly."""
        events: list[WatchEvent] = []
        files = self._descriptor_files()
        present = set(files)
        for file in [f for f in self._served if f not in present]:
            events.append(self._remove(file, f"{file.name} was removed"))
        for file in [f for f in self._reported if f not in present]:
            del self._reported[file]
        for file in files:
            events.extend(self._refresh(file))
        for event in events:
            self._emit(event)
        return events

    def _descriptor_files(self) -> list[Path]:
        try:
            return find_descriptors(self.root)
        except ProjectError:  # the folder (or the single file) is gone
            return []

    def _stamp(self, file: Path, handler_path: Path) -> _Stamp:
        return (_read(file), handler_path, _read(handler_path))

    def _refresh(self, file: Path) -> list[WatchEvent]:
        current = self._served.get(file)
        if current is not None and self._stamp(file, current.handler_path) == self._stamps[file]:
            return self._recovered(file, current)
        try:
            loaded = load_endpoint(file, self._folder)
        except ProjectError as error:
            return self._failed(file, current, error.problems)
        except Exception as error:  # an unexpected failure must not end the watching
            return self._failed(file, current, [f"{file}: {type(error).__name__}: {error}"])
        name = loaded.descriptor.endpoint
        for other, item in self._served.items():
            if other != file and item.descriptor.endpoint == name:
                problem = f"{file}: endpoint: {name!r} is already defined by {other}"
                return self._failed(file, current, [problem])
        events = []
        if current is not None and current.descriptor.endpoint != name:
            events.append(self._remove(file, f"renamed to {name!r}"))
            current = None
        try:
            mounted = self.registry.mount(loaded.descriptor, loaded.handlers)
        except Exception as error:
            return events + self._failed(
                file, current, [f"{file}: {type(error).__name__}: {error}"]
            )
        self._served[file] = loaded
        self._stamps[file] = self._stamp(file, loaded.handler_path)
        note = "fixed; " if self._reported.pop(file, None) is not None else ""
        handlers = ", ".join(loaded.handlers.defined) or "none"
        if mounted.replaced is None:
            kind, what = "mounted", f"mounted from {file} ({note}handlers: {handlers})"
        else:
            kept = len(mounted.endpoint.clients)
            kind = "reloaded"
            what = f"reloaded from {file} ({note}handlers: {handlers}; {kept} connections kept)"
        warnings = tuple(f"{loaded.handler_path}: {w}" for w in loaded.handlers.warnings)
        return [*events, WatchEvent(kind, file, name, f"{name}: {what}", warnings=warnings)]

    def _recovered(self, file: Path, current: LoadedEndpoint) -> list[WatchEvent]:
        """A broken file is back to the version being served: no reload, just say so."""
        if self._reported.pop(file, None) is None:
            return []
        name = current.descriptor.endpoint
        message = f"{name}: {file} is back to the version being served"
        return [WatchEvent("recovered", file, name, message)]

    def _failed(
        self, file: Path, current: LoadedEndpoint | None, problems: list[str]
    ) -> list[WatchEvent]:
        found = tuple(problems)
        if self._reported.get(file) == found:
            return []  # already said
        self._reported[file] = found
        if current is not None:
            name: str | None = current.descriptor.endpoint
            outcome = f"{name}: {file} is broken; the last good version keeps serving"
        else:
            name = None
            outcome = f"{file}: not mounted until it is fixed"
        return [WatchEvent("error", file, name, outcome, found)]

    def _remove(self, file: Path, why: str) -> WatchEvent:
        item = self._served.pop(file)
        self._stamps.pop(file, None)
        self._reported.pop(file, None)
        name = item.descriptor.endpoint
        endpoint = self.registry.find(name)
        if endpoint is None:
            return WatchEvent("unmounted", file, name, f"{name}: {why}; it was not mounted")
        if endpoint.descriptor != item.descriptor:  # redefined elsewhere since: not ours to drop
            message = f"{name}: {why}; left mounted, as it was redefined elsewhere"
            return WatchEvent("unmounted", file, name, message)
        clients = len(endpoint.clients)
        self.registry.unmount(name, reason=why[:100])
        message = f"{name}: unmounted ({why}); {clients} clients closed (1001)"
        return WatchEvent("unmounted", file, name, message)

    def _emit(self, event: WatchEvent) -> None:
        if event.kind == "error":
            for problem in event.problems:
                logger.error("%s", problem)
            logger.error("%s", event.message)
        else:
            logger.info("%s", event.message)
        for warning in event.warnings:
            logger.warning("warning: %s", warning)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                logger.exception("the watcher's on_event callback raised")

    # --- watching ------------------------------------------------------------------------------

    def start(self) -> asyncio.Task:
        """Watch for changes from a task on the running loop; returns the task."""
        if self.running:
            raise RuntimeError(f"already watching {self.root}")
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._task = loop.create_task(self._watch(), name=f"ws_notebook watch {self.root}")
        return self._task

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until changes are being watched (``start`` returns before that)."""
        if self._ready is None:
            raise RuntimeError("not started: call start() first")
        await asyncio.wait_for(self._ready.wait(), timeout)

    def stop(self) -> None:
        """Stop watching: the task is cancelled (the endpoints stay mounted)."""
        if self._stop is not None:
            self._stop.set()  # the watching thread sees it within step_ms
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def aclose(self) -> None:
        """``stop()``, then wait until the task has ended."""
        task = self._task
        self.stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        assert self._stop is not None and self._ready is not None
        watched = self.root if self._folder is not None else self.root.parent
        changes = awatch(
            watched,
            watch_filter=DefaultFilter(),
            stop_event=self._stop,
            debounce=self.debounce_ms,
            step=self.step_ms,
        )
        # The first step of awatch sets up the OS watch, then waits in a thread: after it, a
        # rescan catches whatever changed between load() and now.
        first = asyncio.ensure_future(changes.__anext__())
        try:
            await asyncio.sleep(0)
            self.rescan()
            self._ready.set()
            logger.debug("watching %s for changes", watched)
            try:
                await first
            except StopAsyncIteration:
                return
            self.rescan()
            async for _ in changes:
                self.rescan()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("stopped watching %s", watched)
        finally:
            self._ready.set()
            self._stop.set()  # also when cancelled without stop(): the thread ends within step_ms
            if not first.done():
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                    await first
            with contextlib.suppress(RuntimeError):
                await changes.aclose()
