"""Hot reload of a codbex project: watch a folder and keep a registry in step with its files.

A :class:`ProjectWatcher` watches a folder (with ``watchfiles``) as a task on the running asyncio
loop. When a ``.websocket`` file or a handler module changes, it loads again only the
descriptors whose files changed and applies the difference to the registry:

- a new descriptor is mounted;
- a changed descriptor or handler is mounted again, which swaps the handlers in place, so open
  connections stay open and get the new handlers' events from then on;
- a removed descriptor is unmounted, its clients closed with 1001 (going away);
- a descriptor with a ``uri`` is an outbound connection (see :mod:`ws_notebook.outbound`): a new
  one connects, a changed one keeps its connection (handlers swapped in place) unless its
  ``uri`` changed, when it reconnects to the new one, and a removed one is closed with 1001;
  one that becomes a served endpoint, or the other way round, is unmounted and mounted again;
- a change that breaks a descriptor or its handler leaves the last good version serving, and the
  problems (file and property, as ``load_project`` words them) are reported, once each.

A handler counts as changed when its module or a module it imported from its folder (a helper)
changed. Changed handler modules are run in a thread of their own, so a slow or endless module
never holds up the serving loop; one that has not finished within ``load_timeout`` seconds is
reported and the last good version keeps serving. (Python cannot stop a thread: such a module's
code runs on in the background, in a daemon thread that does not hold up the exit.)

Reports go to the ``ws_notebook`` logger and, as :class:`WatchEvent` objects, to an optional
callback. Nothing here needs IPython.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchfiles import DefaultFilter, awatch

from .endpoint import Endpoint
from .handlers import HandlerError, Handlers
from .project import (
    LoadedEndpoint,
    ProjectError,
    _in_project,
    find_descriptors,
    load_endpoint,
    load_project,
    locate_endpoint,
    project_path,
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


# What a served file looked like when it was loaded: descriptor bytes, handler path and bytes,
# and the path and bytes of each module the handler imported from its folder.
_Stamp = tuple[bytes | None, Path, bytes | None, tuple[tuple[Path, bytes | None], ...]]

# What loading a descriptor gave: the endpoint, or its problems (one line each).
_Outcome = LoadedEndpoint | list[str]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _stamp(file: Path, handler_path: Path, local_files: Sequence[Path] = ()) -> _Stamp:
    modules = tuple((path, _read(path)) for path in local_files)
    return (_read(file), handler_path, _read(handler_path), modules)


def _connect(endpoint: Endpoint) -> str:
    """Connect an endpoint whose descriptor has a ``uri``, as at start: a connection open to the
    same URI is kept (its handlers were swapped in place), one to another URI is closed and
    one to the new URI opened. Returns what was done, for the event ("" if nothing)."""
    uri = endpoint.descriptor.uri
    if not uri:
        return ""
    from .outbound import open_mounted, shown  # outbound imports the api, which imports this

    before = endpoint.outbound
    if open_mounted(endpoint) is before:
        return ""
    if before is not None and before.uri != uri:
        return f"; reconnecting to {shown(uri)} (the connection to {before.uri_shown} closed)"
    return f"; connecting to {shown(uri)}"


class ProjectWatcher:
    """Keeps ``registry`` in step with the ``.websocket`` files under ``path``.

    ``load()`` mounts the project as it is (all or nothing, as ``load_project``), without
    connecting its outbound connections: the caller does, once its server runs (as
    ``ws-notebook serve`` and ``load_descriptor`` do). ``start()`` watches it for changes from a
    task on the running loop, ``stop()`` cancels that task (the endpoints stay mounted).
    ``arescan()`` applies the differences once, now, without watching; ``rescan()`` does the
    same from synchronous code, running module code on the calling thread.
    ``load_timeout`` is how many seconds a changed handler module may take to load.
    """

    def __init__(
        self,
        registry: Registry,
        path: str | Path,
        *,
        on_event: Callable[[WatchEvent], None] | None = None,
        debounce_ms: int = 1600,
        step_ms: int = 50,
        load_timeout: float = 10.0,
    ) -> None:
        self.registry = registry
        self.root = Path(path)
        self.on_event = on_event
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.load_timeout = load_timeout
        # The folder handler paths are resolved from, as load_project(path) does it.
        self._folder: Path | None = self.root if self.root.is_dir() else None
        self._served: dict[Path, LoadedEndpoint] = {}  # descriptor file -> what it mounted
        self._stamps: dict[Path, _Stamp] = {}
        self._reported: dict[Path, tuple[str, ...]] = {}  # problems already reported, per file
        # Loads that timed out and still run: what the files were then, and the thread.
        self._stuck: dict[Path, tuple[_Stamp, threading.Thread]] = {}
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
            self._stamps[item.path] = _stamp(
                item.path, item.handler_path, item.handlers.local_files
            )
        return loaded

    def rescan(self) -> list[WatchEvent]:
        """Compare the files with what is served, and mount, reload or unmount accordingly.

        Changed handler modules run on the calling thread, without a time limit: the watching
        task uses ``arescan``, which keeps them off the loop.
        """
        files = self._descriptor_files()
        return self._apply(files, {file: self._load_here(file) for file in self._changed(files)})

    async def arescan(self) -> list[WatchEvent]:
        """``rescan``, with each changed handler module loaded in a thread of its own.

        The loop keeps serving meanwhile; a module that takes longer than ``load_timeout`` is
        reported, and the last good version keeps serving.
        """
        files = self._descriptor_files()
        changed = self._changed(files)
        outcomes = await asyncio.gather(*(self._load_off_loop(file) for file in changed))
        return self._apply(files, dict(zip(changed, outcomes, strict=True)))

    def _changed(self, files: list[Path]) -> list[Path]:
        """The files not served, or served from a version that has changed since."""
        return [
            file
            for file in files
            if (current := self._served.get(file)) is None
            or _stamp(file, current.handler_path, current.handlers.local_files)
            != self._stamps[file]
        ]

    def _apply(self, files: list[Path], outcomes: dict[Path, _Outcome | None]) -> list[WatchEvent]:
        """Unmount what was removed, then mount what loaded and report what did not.

        ``outcomes`` has the changed files (None: not loaded, as its last load still runs); the
        other files are served and unchanged.
        """
        events: list[WatchEvent] = []
        present = set(files)
        for file in [f for f in self._served if f not in present]:
            events.append(self._remove(file, f"{file.name} was removed"))
        for file in [f for f in self._reported if f not in present]:
            del self._reported[file]
        for file in files:
            if file not in outcomes:
                events.extend(self._recovered(file, self._served[file]))
            elif (outcome := outcomes[file]) is not None:
                events.extend(self._settle(file, outcome))
        for event in events:
            self._emit(event)
        return events

    def _descriptor_files(self) -> list[Path]:
        try:
            return find_descriptors(self.root)
        except ProjectError:  # the folder (or the single file) is gone
            return []

    def _load_here(self, file: Path) -> _Outcome:
        try:
            return load_endpoint(file, self._folder)
        except ProjectError as error:
            return error.problems
        except Exception as error:  # an unexpected failure must not end the watching
            return [f"{project_path(file, self._folder)}: {type(error).__name__}: {error}"]

    async def _load_off_loop(self, file: Path) -> _Outcome | None:
        """Load ``file``, its handler module in a thread; None if its last load still runs.

        The descriptor is read here (no user code runs for it). The module gets a daemon
        thread of its own: a module that never finishes keeps only its thread, which does not
        hold up the process's exit, and later loads are not queued behind it. Whatever a load
        that timed out gives in the end is dropped.
        """
        try:
            descriptor, handler_path = locate_endpoint(file, self._folder)
        except ProjectError as error:
            return error.problems
        current = self._served.get(file)
        before = _stamp(file, handler_path, current.handlers.local_files if current else ())
        stuck = self._stuck.pop(file, None)
        if stuck is not None and stuck[1].is_alive() and stuck[0] == before:
            self._stuck[file] = stuck
            return None  # it would run the same code again: already reported
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Handlers] = loop.create_future()

        def settle(result: Handlers | Exception) -> None:
            if done.done():  # it timed out, or the watcher stopped: nobody wants it any more
                if isinstance(result, Handlers):
                    result.release()
            elif isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result)

        def run() -> None:
            try:
                result: Handlers | Exception = Handlers.from_file(handler_path)
            except Exception as error:  # reported on the loop (from_file words module errors)
                result = error
            try:
                loop.call_soon_threadsafe(settle, result)
            except RuntimeError:  # the loop is closed
                if isinstance(result, Handlers):
                    result.release()

        thread = threading.Thread(target=run, name=f"ws_notebook load {file.name}", daemon=True)
        thread.start()
        try:
            handlers = await asyncio.wait_for(done, self.load_timeout)
        except asyncio.TimeoutError:
            self._stuck[file] = (before, thread)
            return [
                f"{descriptor.location}: {handler_path}: did not finish loading in "
                f"{self.load_timeout:g} s; its code "
                "keeps running in a background thread, which Python cannot stop (the server "
                "goes on serving); it is loaded again when the file changes"
            ]
        except HandlerError as error:
            return _in_project(descriptor.location, file, error)
        except Exception as error:
            return [f"{descriptor.location}: {type(error).__name__}: {error}"]
        return LoadedEndpoint(descriptor, handlers, file, handler_path)

    def _settle(self, file: Path, outcome: _Outcome) -> list[WatchEvent]:
        """Mount a new load of ``file`` in place of what it served, or report why not."""
        current = self._served.get(file)
        if isinstance(outcome, list):
            return self._failed(file, current, outcome)
        loaded = outcome
        name = loaded.descriptor.endpoint
        for other, item in self._served.items():
            if other != file and item.descriptor.endpoint == name:
                loaded.handlers.release()
                problem = (
                    f"{loaded.descriptor.location}: endpoint: {name!r} is already defined by "
                    f"{item.descriptor.location}"
                )
                return self._failed(file, current, [problem])
        events = []
        if current is not None and current.descriptor.endpoint != name:
            events.append(self._remove(file, f"renamed to {name!r}"))
            current = None
        elif current is not None and bool(current.descriptor.uri) != bool(loaded.descriptor.uri):
            # served clients must not get an outbound connection's events, nor the other way
            now = "now an outbound connection" if loaded.descriptor.uri else "now served"
            events.append(self._remove(file, now))
            current = None
        try:
            mounted = self.registry.mount(loaded.descriptor, loaded.handlers)
        except Exception as error:
            loaded.handlers.release()
            return events + self._failed(
                file, current, [f"{loaded.descriptor.location}: {type(error).__name__}: {error}"]
            )
        if current is not None:
            current.handlers.release()  # replaced: its helper modules can go
        self._served[file] = loaded
        self._stamps[file] = _stamp(file, loaded.handler_path, loaded.handlers.local_files)
        self._stuck.pop(file, None)
        note = "fixed; " if self._reported.pop(file, None) is not None else ""
        handlers = ", ".join(loaded.handlers.defined) or "none"
        where = loaded.descriptor.location  # its path in the project, as problems name it
        warnings = tuple(f"{loaded.descriptor.location}: {w}" for w in loaded.descriptor.warnings)
        warnings += tuple(f"{loaded.handler_path}: {w}" for w in loaded.handlers.warnings)
        try:
            going = _connect(mounted.endpoint)
        except (RuntimeError, ImportError) as error:  # no running loop, no websockets package
            going = ""
            warnings += (f"{where}: not connected: {error}",)
        if mounted.replaced is None:
            kind, what = "mounted", f"mounted from {where} ({note}handlers: {handlers}){going}"
        elif going:
            kind, what = "reloaded", f"reloaded from {where} ({note}handlers: {handlers}){going}"
        else:
            kept = len(mounted.endpoint.clients)
            kind = "reloaded"
            what = f"reloaded from {where} ({note}handlers: {handlers}; {kept} connections kept)"
        return [*events, WatchEvent(kind, file, name, f"{name}: {what}", warnings=warnings)]

    def _recovered(self, file: Path, current: LoadedEndpoint) -> list[WatchEvent]:
        """A broken file is back to the version being served: no reload, just say so."""
        if self._reported.pop(file, None) is None:
            return []
        name = current.descriptor.endpoint
        message = f"{name}: {current.descriptor.location} is back to the version being served"
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
            where = current.descriptor.location
            outcome = f"{name}: {where} is broken; the last good version keeps serving"
        else:
            name = None
            outcome = f"{project_path(file, self._folder)}: not mounted until it is fixed"
        return [WatchEvent("error", file, name, outcome, found)]

    def _remove(self, file: Path, why: str) -> WatchEvent:
        item = self._served.pop(file)
        item.handlers.release()
        self._stamps.pop(file, None)
        self._reported.pop(file, None)
        self._stuck.pop(file, None)
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
            await self.arescan()
            self._ready.set()
            logger.debug("watching %s for changes", watched)
            try:
                await first
            except StopAsyncIteration:
                return
            await self.arescan()
            async for _ in changes:
                await self.arescan()
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
