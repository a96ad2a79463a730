"""JavaScript handlers, run unchanged in an embedded V8 (``mini-racer``).

:func:`from_file` turns a handler module (``.js``, ``.mjs``, ``.cjs``) into a
:class:`~ws_notebook.handlers.Handlers` like a Python module's, and :func:`from_source` does the
same for JavaScript text (a notebook cell): the rest of ws_notebook does not care which language
a handler is written in. Both module styles of codbex projects run as they are: ES modules
(``export function onMessage(message, from)``, ``import { websockets } from "sdk/net"``) and
CommonJS (``exports.onOpen = ...``, ``require("sdk/net")``); modules are parsed with
tree-sitter's JavaScript grammar and only their import/export statements are rewritten
(:mod:`ws_notebook.javascript.modules`), so errors name the lines of the file as written.

What a handler gets, as on the platform:

- ``onOpen(from)``, ``onMessage(message, from)``, ``onError(error, from)``, ``onClose(from)``:
  ``from`` is the client's id (``"c3"``; for a STOMP client, the ``from`` of its message),
  ``message`` a string (a ``Uint8Array`` for a binary
  message), ``error`` the error's text (``"TypeError: ..."``), so ``"Error: " + error`` reads
  as it does there. What ``onMessage`` returns is sent back to that client: a string as text, a
  ``Uint8Array``/``ArrayBuffer`` as binary, anything else as JSON; ``undefined``/``null``
  sends nothing. An ``async`` handler's promise is followed up when the call ends.
- ``sdk/net``'s ``websockets`` (``require("net/v4/websockets")`` for Dirigible 4):
  ``getClients()`` (every open client of the server, each ``{id, uri, handler, endpoint}`` with
  ``send(text)`` and ``close()``), ``getClient(id)``, ``getClientByHandler(handler)``, and the
  event context: ``getMessage()``, ``getError()``, ``getMethod()`` (``"onopen"``,
  ``"onmessage"``, ``"onerror"``, ``"onclose"``), ``isOnOpen()``, ``isOnMessage()``,
  ``isOnError()``, ``isOnClose()``; ``createWebsocket(uri, handler)`` opens an outbound
  connection (:mod:`ws_notebook.outbound`) whose events the handler module (a workspace path,
  as a descriptor's ``handler``) handles. The client it returns is named for the connection
  (its id is the connection's name; ``getClients()`` lists the connection's current client);
  what is sent on it before the connection is open goes out once it is.
- ``console.log/info/debug`` and ``console.warn/error/trace`` print as a Python handler's
  ``print`` to stdout and stderr does: each line is a ``stdout``/``stderr`` event in the
  endpoint's log, goes to the cell that defined the endpoint, and ``ws-notebook serve`` prints
  it on its stderr. Each line is also logged on the ``ws_notebook.javascript`` logger at DEBUG.
- ``require``/``import`` of the modules beside the handler (``./util.js``, ``./data.json``),
  named by a string literal: they are read from disk when the handler loads (JavaScript in V8
  cannot read files), and a change to one reloads the handler where the folder is watched.

Limits. Each call has a time limit (:data:`TIME_LIMIT`, 5 s; environment variable
``WS_NOTEBOOK_JS_TIME_LIMIT`` in seconds): a handler still running then (``while (true) {}``)
is stopped and that is the handler's error, naming its file and the line of the handler; the
context stays usable, so the same connection and the server carry on. Each context has a
memory limit (:data:`MEMORY_LIMIT`, 256 MiB; ``WS_NOTEBOOK_JS_MEMORY_LIMIT`` in MiB): a
handler that goes over it is stopped the same way, and as what it allocated may still be held
by the module, the module is run again in a fresh context (its state is lost). A thrown error
is reported with the JavaScript file, line and column of the frame that threw (the first frame
in one of the handler's modules); the exception's ``stack`` keeps the JavaScript stack.

How it runs. mini-racer 0.14 makes one V8 isolate per context (``MiniRacer``): it has no way to
make several contexts in one isolate, so each handler module gets an isolate of its own (and
the modules it imports share it), not one per project. V8 runs on a thread of the isolate's;
a call waits for it on the caller's thread, which is the thread the endpoint's handlers run on
(the kernel's loop, or an endpoint's own thread with ``--thread``), as a Python handler runs
there. mini-racer's own ``eval`` ties each context to an asyncio loop: made on the running
loop, its calls must come from that loop and take no time limit; made with no loop running,
mini-racer starts a thread with a loop of its own per context and every call hops through it
(about three times slower), and its JS-to-Python callbacks return promises, so a synchronous
``getClients()`` could not be answered by them. This module therefore talks to mini-racer's
context below that layer (its task queue and ``mr_cancel_task``; hence the pin to 0.14.x):
calls run on whatever thread makes them, with or without a loop (a module loaded by a
watcher's thread and called on the kernel's loop, say), and JavaScript never calls Python
while it runs. The live clients go in with each event (to modules whose source mentions
``getClient``), and what the handler did (console lines, sends, closes) comes back with its
result and is carried out, in order, before its reply is sent.

Each call is a hand-over to V8's thread and back: about 15 us when calls come back to back; in a
server, where both threads sleep between messages, 40-80 us (waking a thread costs that on a
virtual machine). That is more than a small handler's own work, and about a Python echo's whole
round trip (40-55 us in ``benchmarks/compare.py``): there a JavaScript echo answers about half
as many sequential round trips as the Python echo (0.5-0.6, 0.35 on a bad run of a busy machine;
it was 0.3-0.4), and a client that pipelines, whose messages run in batches, 0.55-0.7 times as
many (about 0.5 before). Besides the hand-over, a call does as little as it can: it calls the
runtime's ``__ws_b`` (``mr_call_function``, no script to compile) with one string as its
``this``, a line of JSON and the messages after it as they are (no argument list to build, which
takes a hand-over of its own, and no escaping); the usual outcome, one text reply, comes back as
that text; and V8's thread keeps its Python thread state between calls and runs on the CPU of
its caller (see :class:`_Context`). The echo's server CPU per message went from 150-250 us to
100-120 us (the Python echo's: 35-55). Messages that arrive together run in one call: see
:class:`_Runtime`. Waiting for V8's answer without sleeping (``sched_yield`` for up to 50-200
us) was tried twice: a few microseconds saved, lost in the noise of a round trip, and on a busy
machine a yield can give the core away for a whole time slice.

Not here: timers (``setTimeout``; a handler runs only while an event is handled), other
``sdk`` modules, TypeScript.

TypeScript (``.ts``) is refused with an error saying what to do: no well-kept TypeScript
transpiler installs from PyPI as a wheel without a build step (checked: ``esbuild-py`` imports
``distutils``, gone in Python 3.12, and wraps esbuild's JSX transform only; ``oxc-py`` and
``oxc-python`` are 0.1 releases, the latter a parser only).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import dataclasses
import itertools
import json
import logging
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, init_mini_racer

# Below MiniRacer's own API (see the module docstring); mini-racer is pinned to 0.14.x for them.
from py_mini_racer._context import Context
from py_mini_racer._dll import mr_callback_func
from py_mini_racer._exc import JSTerminatedException
from py_mini_racer._objects import ObjectFactoryImpl
from py_mini_racer._value_handle import RawValueHandleType, ValueHandle

from ..connection import ConnectionClosed
from ..errors import Error
from ..events import PREVIEW_CHARS
from ..handlers import EVENT_NAMES, HandlerError, Handlers, _near_misses
from ..output import DETAIL_CHARS, Routed, running
from .modules import EXPORTS, ModuleText, analyse

__all__ = [
    "MEMORY_LIMIT",
    "SUFFIXES",
    "TIME_LIMIT",
    "JavaScriptError",
    "JavaScriptHandlers",
    "from_file",
    "from_source",
]

logger = logging.getLogger("ws_notebook.javascript")

SUFFIXES = (".js", ".mjs", ".cjs", ".ts")
TIME_LIMIT = 5.0  # seconds a call may run
MEMORY_LIMIT = 256 * 1024 * 1024  # bytes of V8 heap a handler module's context may use
_RUNTIME = Path(__file__).with_name("runtime.js")
_RUNTIME_URL = "ws_notebook/javascript/runtime.js"
_EVENTS = list(EVENT_NAMES)  # open, message, error, close: the runtime's handler indexes
_JSON_SUFFIXES = (".json",)
_LOCAL_SUFFIXES = (".js", ".mjs", ".cjs", ".json")


class JavaScriptError(Error):
    """A JavaScript handler threw, or was stopped at its time or memory limit.

    ``str()`` is ``FILE:LINE:COLUMN: TEXT``; ``text`` is the error as JavaScript shows it
    (``TypeError: ...``), what ``onError`` receives; ``stack`` its JavaScript stack.
    """

    def __init__(self, where: str, text: str, stack: str = "") -> None:
        super().__init__(f"{where}: {text}" if where else text)
        self.where = where
        self.text = text
        self.stack = stack


def _time_limit(value: float | None) -> float:
    if value is not None:
        return value
    configured = os.environ.get("WS_NOTEBOOK_JS_TIME_LIMIT")
    try:
        return float(configured) if configured else TIME_LIMIT
    except ValueError:
        return TIME_LIMIT


def _memory_limit(value: int | None) -> int:
    if value is not None:
        return value
    configured = os.environ.get("WS_NOTEBOOK_JS_MEMORY_LIMIT")
    try:
        return int(float(configured) * 1024 * 1024) if configured else MEMORY_LIMIT
    except ValueError:
        return MEMORY_LIMIT


def _seconds(limit: float) -> str:
    return f"{limit:g} s"


def _mib(limit: int) -> str:
    return f"{limit / 1024 / 1024:g} MiB"


# --- the V8 context ---------------------------------------------------------------------------


class _Stopped(Exception):
    """The call was stopped: ``reason`` is "time" or "memory"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Context:
    """One mini-racer context (a V8 isolate), called synchronously from any thread.

    mini-racer's ``Context`` wrapper is used for what needs no event loop: turning Python
    values into V8 values and V8 results into Python values. Results come from V8's thread
    through the context's callback, into a queue the calling thread waits on.

    That callback is Python code called on a thread Python did not start: each time, ctypes
    made the thread a Python thread state and deleted it afterwards, about half of what a
    call cost (on Python 3.11, with a fresh frame stack: page faults, then an ``munmap``).
    So V8's thread keeps the state its first callback made (one more ``PyGILState_Ensure``),
    and gives it back in the last callback, made by ``close``. A context nobody closes is
    freed when it is garbage, and its thread's state (a few KiB) is not given back.

    On Linux, V8's thread is also kept on the CPU of the thread that calls it (its affinity
    set to that CPU when the caller's changes): the caller waits while V8 works, so they never
    need two CPUs, and a hand-over within one CPU needs no interrupt to another, which on a
    virtual machine costs more than a small handler's work (a JavaScript echo's round trip
    took about a fifth less time).
    """

    def __init__(self, memory_limit: int) -> None:
        dll = init_mini_racer(ignore_duplicate_init=True)
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        kept: list[int] = []  # the PyGILState_Ensure that keeps V8's thread's state
        v8_thread: list[int] = []  # its id for the operating system

        @mr_callback_func
        def callback(callback_id: int, raw_val_handle: RawValueHandleType) -> None:
            if not kept:
                kept.append(_gil_state_ensure())
                v8_thread.append(threading.get_native_id())
            results.put(raw_val_handle)
            if callback_id == _LAST_CALL:
                _gil_state_release(kept.pop())

        raw_context = dll.mr_init_context(callback)
        self._dll = dll
        self._raw = raw_context
        # No event loop: mini-racer's asyncio side (its callback ids) is not used.
        self._context = Context(
            dll,
            raw_context,
            None,  # type: ignore[arg-type]  # typed as required; only loop-free methods are used
            ObjectFactoryImpl(),
            itertools.count(1),
        )
        self._results = results
        self._v8_thread = v8_thread
        self._cpu = -1  # the CPU V8's thread is kept on (-1: any)
        self._lock = threading.Lock()
        self.memory_limit = memory_limit
        dll.mr_set_hard_memory_limit(raw_context, memory_limit)
        dll.mr_set_soft_memory_limit(raw_context, memory_limit * 3 // 4)
        # Freed with the object if nobody calls close(); the callback must outlive the context.
        self._finalizer = weakref.finalize(self, _free_context, dll, raw_context, callback)
        self._no_arguments = self.handle("[]")

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            code = self._string("0")
            with contextlib.suppress(Exception):  # V8's thread gives its Python state back
                self._run(
                    lambda last: self._dll.mr_eval(self._raw, code.raw, last), 1.0, _LAST_CALL
                )
            self._finalizer()

    def eval(self, code: str, timeout: float) -> Any:
        """Evaluate a script; the value of its last expression, or raise.

        Raises mini-racer's ``JSEvalException`` family for a JavaScript error, ``_Stopped``
        when the time or memory limit stopped it. An interrupt (``KeyboardInterrupt``) while
        waiting stops the script too, and is raised once V8 is done with it.
        """
        with self._lock:
            self._check()
            handle = self._string(code)
            return self._run(
                lambda callback_id: self._dll.mr_eval(self._raw, handle.raw, callback_id), timeout
            )

    def call(self, function: ValueHandle, this: str, timeout: float) -> Any:
        """Call ``function`` with ``this`` a string and no arguments; returns and raises as
        ``eval`` does. Unlike a script, a call has nothing to compile, and unlike arguments,
        ``this`` needs no hand-over to V8's thread to be set up."""
        with self._lock:
            self._check()
            handle = self._string(this)
            return self._run(
                lambda callback_id: self._dll.mr_call_function(
                    self._raw, function.raw, handle.raw, self._no_arguments.raw, callback_id
                ),
                timeout,
            )

    def handle(self, code: str) -> ValueHandle:
        """What a script evaluates to (an object, such as a function), kept for later calls."""
        return self.eval(code, TIME_LIMIT).raw_handle

    def _check(self) -> None:
        if self.closed:
            raise RuntimeError("this JavaScript handler module was unloaded")

    def _string(self, text: str) -> ValueHandle:
        data = text.encode("utf-8")
        raw = self._dll.mr_alloc_string_val(self._raw, data, len(data), _STRING)
        return self._context._wrap_raw_handle(raw)

    def _run(self, start: Callable[[int], int], timeout: float, callback_id: int = 0) -> Any:
        """Start a task (``start(callback_id)`` returns its id) and wait for its result."""
        if _current_cpu is not None and self._v8_thread:
            self._follow(_current_cpu())
        task = start(callback_id)
        stopped = False
        try:
            raw = self._results.get(timeout=timeout)
        except queue.Empty:
            stopped = True
            raw = self._cancel(task)
        except BaseException:
            self._cancel(task)
            raise
        result = raw.contents
        if result.type == _STRING:  # what calls return: as mini-racer would convert it, sooner
            try:
                return result.value.bytes_val[: result.len].decode("utf-8")
            finally:
                self._dll.mr_free_value(self._raw, raw)
        try:
            return self._context._value_handle_to_python(self._context._wrap_raw_handle(raw))
        except JSTerminatedException:
            if stopped:
                raise _Stopped("time") from None
            raise
        except JSEvalException as error:
            # A script over the limit is a JSOOMException; a call, an error without a text.
            if isinstance(error, JSOOMException) or self._dll.mr_hard_memory_limit_reached(
                self._raw
            ):
                self._dll.mr_low_memory_notification(self._raw)
                raise _Stopped("memory") from None
            raise

    def _follow(self, cpu: int) -> None:
        """Keep V8's thread on ``cpu``, the caller's (see the class docstring)."""
        if cpu != self._cpu:
            self._cpu = cpu
            with contextlib.suppress(OSError):  # not allowed there (a cpuset): it stays put
                os.sched_setaffinity(self._v8_thread[0], {cpu})

    def _cancel(self, task: int) -> Any:
        """Stop a running task and wait for V8 to hand its (terminated) result over."""
        self._dll.mr_cancel_task(self._raw, task)
        while True:
            try:
                return self._results.get()
            except KeyboardInterrupt:  # a second interrupt: V8 is stopping already
                continue


_LAST_CALL = 1  # the callback id of a context's last call (0: all the others)
_STRING = 5  # mini-racer's type of a value that is a (UTF-8) string
# Called on V8's thread, which holds the GIL then (PYFUNCTYPE: ctypes keeps it held).
_gil_state_ensure = ctypes.PYFUNCTYPE(ctypes.c_int)(("PyGILState_Ensure", ctypes.pythonapi))
_gil_state_release = ctypes.PYFUNCTYPE(None, ctypes.c_int)(("PyGILState_Release", ctypes.pythonapi))
# The CPU the calling thread runs on, where V8's thread can be kept (Linux only).
_current_cpu: Callable[[], int] | None = (
    getattr(ctypes.CDLL(None), "sched_getcpu", None) if sys.platform == "linux" else None
)


def _free_context(dll: Any, raw_context: Any, callback: Any) -> None:
    dll.mr_free_context(raw_context)
    del callback


# --- loading modules ----------------------------------------------------------------------------

_BUILTINS = frozenset({"sdk/net", "sdk/net/websockets", "net/v4/websockets"})


@dataclasses.dataclass
class _Module:
    path: str  # the name in stack traces and errors: the file's path, or a cell's name
    text: ModuleText | None  # None for a JSON file
    source: str
    resolved: dict[str, str]  # specifier -> path of a local module


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except OSError as error:
        raise HandlerError(f"{path}: cannot read handler: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise HandlerError(f"{path}: handler is not UTF-8 text ({error.reason})") from error


def _esm_for(name: str) -> bool | None:
    suffix = PurePosixPath(name).suffix
    return True if suffix == ".mjs" else False if suffix == ".cjs" else None


def _resolve_local(specifier: str, base: Path, root: Path) -> Path | None:
    """The file a relative specifier names (``./util``, ``./util.js``, ``./lib/index.js``)."""
    target = base / specifier
    candidates = [target] if target.suffix in _LOCAL_SUFFIXES else []
    candidates += [target.with_name(target.name + suffix) for suffix in _LOCAL_SUFFIXES]
    candidates += [target / f"index{suffix}" for suffix in (".js", ".mjs", ".cjs")]
    for candidate in candidates:
        if candidate.is_file():
            real = candidate.resolve()
            if not real.is_relative_to(root):
                raise HandlerError(
                    f"{specifier!r} is outside the handler's folder {root}; handlers import "
                    "modules beside them"
                )
            return real
    return None


def _collect(main: _Module, folder: Path | None) -> list[_Module]:
    """The handler module and every local module it imports, by a string literal, read and
    parsed: the main module last, so its dependencies are defined before it."""
    found: dict[str, _Module] = {}
    order: list[_Module] = []
    root = folder.resolve() if folder is not None else None
    if folder is not None:  # a local module importing the handler module gets that one
        found[str(Path(main.path).resolve())] = main

    def visit(module: _Module, base: Path | None) -> None:
        found[module.path] = module
        text = module.text
        if text is not None:
            wanted = [(spec, line, True) for spec, line in text.imports]
            wanted += [(spec, line, False) for spec, line in text.requires]
            for specifier, line, required in wanted:
                if specifier in _BUILTINS or specifier in module.resolved:
                    continue
                where = f"{module.path}:{line}"
                relative = specifier.startswith(("./", "../"))
                target = None
                if relative and base is not None and root is not None:
                    try:
                        target = _resolve_local(specifier, base, root)
                    except HandlerError as error:
                        raise HandlerError(f"{where}: cannot import {error}") from None
                if target is None:
                    if not required:
                        continue  # a require() that may never run, or sits in a try
                    if relative and base is None:
                        why = "a handler defined in a notebook cell cannot import files"
                    elif relative:
                        why = "no such file beside the handler"
                    else:
                        why = (
                            "handlers here can import sdk/net (websockets) and the modules "
                            "beside them (./name.js)"
                        )
                    raise HandlerError(f"{where}: cannot import {specifier!r}: {why}")
                known = found.get(str(target))
                module.resolved[specifier] = known.path if known is not None else str(target)
                if known is None:
                    source = _read(target)
                    if target.suffix in _JSON_SUFFIXES:
                        child = _Module(str(target), None, source, {})
                        found[child.path] = child
                        order.append(child)
                        continue
                    child = _Module(str(target), analyse(source, _esm_for(target.name)), source, {})
                    visit(child, target.parent)
        order.append(module)

    visit(main, folder)
    return order


def _url(path: str) -> str:
    """A module's name in V8 (``//# sourceURL=``), which ends at white space: spaces and the
    like are %-escaped (and ``%`` itself), so that a stack frame leads back to the path."""
    return "".join(
        f"%{ord(char):02X}" if char.isspace() or char == "%" or not char.isprintable() else char
        for char in path
    )


def _definition(module: _Module) -> str:
    """The script that defines a module in the runtime (without running it)."""
    path = json.dumps(module.path)
    resolved = json.dumps(module.resolved)
    if module.text is None:  # JSON
        return f"__ws_define({path}, {{}}, false, null, {json.dumps(module.source)});"
    text = module.text
    esm = "true" if text.esm else "false"
    # The wrapper and the prologue share the module's first line, so its lines keep their
    # numbers; the closing brace goes on a line of its own, after a possible line comment.
    return (
        f"__ws_define({path}, {resolved}, {esm}, function (exports, require, module, "
        f"__filename, __dirname, {EXPORTS}) {{{text.prologue} {text.body}\n}});\n"
        f"//# sourceURL={_url(module.path)}"
    )


def _syntax_error(module: _Module, error: Exception) -> HandlerError:
    """V8's parse error (``PATH:LINE: SyntaxError: ...`` then the line and a caret) as
    ``PATH:LINE: SyntaxError: ...``."""
    first = str(error).split("\n", 1)[0]
    location, _, what = first.partition(": ")
    line = location.rpartition(":")[2]
    if what and line.isdigit():
        return HandlerError(f"{module.path}:{line}: {what}")
    if module.text is not None and module.text.syntax_error is not None:
        error_line, column = module.text.syntax_error
        return HandlerError(f"{module.path}:{error_line}:{column}: syntax error ({first})")
    return HandlerError(f"{module.path}: {first}")


# --- running handlers -----------------------------------------------------------------------------


class _Runtime:
    """A handler module running in its V8 context, and the calls of its handlers.

    Messages are run in batches: ``on_message`` called by a server (on a thread with a running
    event loop) queues the message and returns; the queue is run as soon as the loop is free,
    in one call into V8 for all the messages that arrived meanwhile (a client that pipelines,
    or many clients at once). Each V8 call is a hand-over to V8's thread and back, which costs
    more than a small handler's work; a batch pays it once. Every other event (open, error,
    close), and a message while others are queued on another thread, runs the queue first, so
    each client's events keep their order. In a batch, an event whose handler throws or is
    stopped ends the V8 call: its error is reported (and ``onError`` run) before the events
    after it run, as if each had been a call of its own; and a batch's V8 call returns after
    50 ms of work so the time limit stays one of a handler's call.
    """

    def __init__(
        self,
        modules: list[_Module],
        time_limit: float,
        memory_limit: int,
    ) -> None:
        self.modules = modules
        self.main = modules[-1]
        self.paths = {_url(module.path): module.path for module in modules}  # V8's name: path
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self.wants_clients = any("getClient" in module.source for module in modules)
        self.lines: dict[str, int] = dict(self.main.text.exports) if self.main.text else {}
        self._queue: list[tuple[int, Any, Any]] = []  # (event index, data, client)
        self._queue_thread: int | None = None  # the thread whose loop will run the queue
        self._queue_lock = threading.Lock()
        self.context, self._events = self._compile()

    def _compile(self) -> tuple[_Context, ValueHandle]:
        """A new context with the runtime and the modules defined (compiled, not run), and
        the runtime's function that runs events (``__ws_b``)."""
        context = _Context(self.memory_limit)
        try:
            context.eval(
                _RUNTIME.read_text("utf-8") + f"\n//# sourceURL={_RUNTIME_URL}", self.time_limit
            )
            for module in self.modules:
                try:
                    context.eval(_definition(module), self.time_limit)
                except _Stopped:
                    raise
                except Exception as error:
                    raise _syntax_error(module, error) from None
            return context, context.handle("__ws_b")
        except BaseException:
            context.close()
            raise

    def _renew(self) -> None:
        """After a handler went over the memory limit, what it allocated may still be held by
        the module: give it a fresh context and run it again there (its state is lost)."""
        old = self.context
        try:
            self.context, self._events = self._compile()
            self.load()
        except (HandlerError, _Stopped) as error:
            logger.error("%s could not be loaded again: %s", self.main.path, error)
        finally:
            old.close()

    def load(self) -> tuple[list[int], list[str], list[str]]:
        """Run the handler module; (the events it handles, problems, exported functions)."""
        try:
            result = json.loads(
                self.context.eval(f"__ws_load({json.dumps(self.main.path)})", self.time_limit)
            )
        except _Stopped as stopped:
            raise HandlerError(
                f"{self.main.path}: {self._stopped_text(stopped, 'loading it', renewed=False)}"
            ) from None
        if result[0] is None:
            text, _stack, frames = result[1]
            raise HandlerError(f"{self._where(frames, self.main.path)}: {text}")
        found, problems, functions, actions = result
        self._apply(actions, None, None)
        return found, problems, functions

    def close(self) -> None:
        """Free the context, once the messages queued for this module have run."""
        if not self.context.closed:
            self.run_queue()
        self.context.close()

    # --- calls ----------------------------------------------------------------------------

    def call(self, index: int, data: Any, client: Any) -> Any:
        """Run the handler of event ``index`` (0 open, 1 message, 2 error, 3 close) for a
        client; see the class docstring for when a message is queued instead."""
        if index == 1 and getattr(client, "_endpoint", None) is not None:
            loop = _running_loop()
            if loop is not None:
                # More input of this client is read already (the protocol holds its replies
                # until it is used up): queue the message, to run with what follows.
                outbox = getattr(client, "_outbox", None)
                more = outbox is not None and outbox._holding
                thread = threading.get_ident()
                with self._queue_lock:
                    queued = self._queue_thread in (None, thread) and (more or self._queue)
                    if queued:
                        self._queue.append((1, data, client))
                        if self._queue_thread is None:
                            self._queue_thread = thread
                            loop.call_soon(self.run_queue)
                if queued:
                    if not more:  # this client's burst is over: run what is queued now
                        self.run_queue()
                    return None
        self.run_queue()
        return self._call_now(index, data, client)

    def run_queue(self) -> None:
        """Run the queued messages, in order, in as few V8 calls as it takes."""
        with self._queue_lock:
            events, self._queue, self._queue_thread = self._queue, [], None
        if not events:
            return
        # One write per client for all its replies: hold them (unless the protocol does).
        outboxes = {id(client): getattr(client, "_outbox", None) for _, _, client in events}
        holding = [box for box in outboxes.values() if box is not None and not box._holding]
        for outbox in holding:
            outbox.hold()
        try:
            while events:
                failure: Exception | None
                try:
                    done, failure = self._run(events, direct=False)
                except Exception as error:  # not the handler's: still that event's error
                    done, failure = 1, error
                if failure is not None:
                    self._report(events[done - 1], failure)
                events = events[done:]
        finally:
            for outbox in holding:
                outbox.release()

    def _call_now(self, index: int, data: Any, client: Any) -> Any:
        """One event in a V8 call of its own; raises its error, for the caller to report."""
        replies: list[Any] = []
        _done, failure = self._run([(index, data, client)], direct=True, replies=replies)
        if failure is not None:
            raise failure
        return replies[-1] if replies else None

    def _run(
        self,
        events: list[tuple[int, Any, Any]],
        direct: bool,
        replies: list[Any] | None = None,
    ) -> tuple[int, JavaScriptError | None]:
        """Run events from the first until one fails or V8 returns; carry out what each did.

        Returns how many events were run and the error of the last one, if it failed.
        """
        items = []
        texts = []
        for index, data, client in events:
            code = index
            length = -1
            if data is not None:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    code |= 4
                    data = base64.b64encode(data).decode("ascii")
                length = len(data) if data.isascii() else len(data.encode("utf-16-le")) // 2
                texts.append(data)
            items.append([code, _sender(client), length])
        live: dict[str, Any] | None = None
        described = None
        if self.wants_clients:
            live = _live_clients(events[0][2])
            described = [_describe_client(c) for c in live.values()]
        # The data after a line of JSON (see __ws_b in runtime.js): a copy, no escaping.
        this = "\n".join((json.dumps([items, described]), "".join(texts)))
        stopped: _Stopped | None = None
        try:
            results = _results(self.context.call(self._events, this, self.time_limit))
            later: list[list[Any]] = []
            if any(type(r) is list and r[3] for r in results):  # promises: what they did
                later = json.loads(self.context.eval("__ws_drain()", self.time_limit))[1]
        except (_Stopped, KeyboardInterrupt) as interruption:
            # An interrupt (in a kernel) stops the handler only, as it does a Python one.
            stopped = interruption if isinstance(interruption, _Stopped) else _Stopped("interrupt")
            results, partial = self._drain()
            results.append([None, partial, None, 0])
            later = []
            if stopped.reason == "memory":
                self._renew()
        failure: JavaScriptError | None = None
        for position, (result, (index, _data, client)) in enumerate(
            zip(results, events, strict=False)
        ):
            if result.__class__ is str:  # a text reply, and nothing else
                self._deliver(result, client, replies)
                continue
            reply, actions, error, _pending = result
            if actions:
                self._apply(actions, live, client, replies)
            if reply is not None:
                self._reply(reply, client, replies)
            if position == len(results) - 1:
                name = EVENT_NAMES[_EVENTS[index]][1]
                if stopped is not None:
                    failure = JavaScriptError(
                        self._handler_where(name), self._stopped_text(stopped, name)
                    )
                elif error is not None:
                    text, stack, frames = error
                    failure = JavaScriptError(
                        self._where(frames, self._handler_where(name)), text, stack
                    )
        for action in later:  # after the batch: replies and errors of async handlers
            if action[0] == "e":
                target = _find_client(action[1], live, events[0][2])
                text, stack, frames = action[2]
                error = JavaScriptError(self._where(frames, self.main.path), text, stack)
                if direct:
                    failure = failure or error
                elif target is not None:
                    self._report((1, None, target), error)
            else:
                self._apply([action], live, events[0][2], replies)
        return len(results), failure

    def _drain(self) -> tuple[list[list[Any]], list[list[Any]]]:
        """After a stop: the results of the events the call finished, and what the stopped one
        had done. A module still over its memory limit may be stopped again doing this: then
        what it did is lost."""
        try:
            done, partial = json.loads(self.context.eval("__ws_drain()", self.time_limit))
        except _Stopped:
            return [], []
        return done, partial

    def _report(self, event: tuple[int, Any, Any], error: Exception) -> None:
        """A queued event's error, reported as the server reports a handler's: the endpoint
        logs it and runs ``onError``."""
        index, _data, client = event
        endpoint = getattr(client, "_endpoint", None)
        if endpoint is None:
            logger.error("%s", error)
            return
        pending = endpoint._failed(_EVENTS[index], error, client)
        if pending is not None:  # an async on_error (not one of ours): let it run
            asyncio.ensure_future(pending)

    def _reply(self, reply: list[Any], client: Any, replies: list[Any] | None) -> None:
        self._deliver(reply[1] if reply[0] == 1 else base64.b64decode(reply[1]), client, replies)

    def _deliver(self, message: str | bytes, client: Any, replies: list[Any] | None) -> None:
        send = getattr(client, "send", None)
        if send is None:  # called directly, not by a server: hand the reply back
            if replies is not None:
                replies.append(message)
            return
        _send(send, message)

    def _apply(
        self,
        actions: list[list[Any]],
        live: dict[str, Any] | None,
        client: Any,
        replies: list[Any] | None = None,
    ) -> None:
        """Carry out what a handler did for ``client``, in order: console lines (as that
        client's output), sends and closes. A send to ``client`` when it is no server's client
        (a direct call, in a test) goes to ``replies``."""
        token = running.set(client) if hasattr(client, "_endpoint") else None
        try:
            for action in actions:
                kind = action[0]
                if kind == "o":
                    _console(action[1], action[2], client)
                elif kind == "s":
                    target = _find_client(action[1], live, client)
                    if target is None:
                        continue
                    if hasattr(target, "wait_open") and not _is_open(target):
                        _send_once_open(target, action)  # one createWebsocket just opened
                    elif hasattr(target, "send"):
                        _send(
                            target.send,
                            action[3] if action[2] == 1 else base64.b64decode(action[3]),
                        )
                    elif replies is not None:
                        self._reply(action[2:], target, replies)
                elif kind == "c":
                    target = _find_client(action[1], live, client)
                    if target is not None and hasattr(target, "close"):
                        target.close()
                elif kind == "w":
                    self._create_websocket(action[1], action[2], action[3])
        finally:
            if token is not None:
                running.reset(token)

    def _create_websocket(self, uri: str, handler: str, name: str) -> None:
        """codbex's ``createWebsocket(uri, handler)``: an outbound connection (see
        :mod:`ws_notebook.outbound`) named as the JavaScript client object returned, whose
        events the handler module handles (JavaScript, or a Python port of it)."""
        from .. import outbound
        from ..descriptor import Descriptor

        path = _module_for(handler, Path(self.main.path))
        handlers = Handlers.from_file(path) if path.suffix == ".py" else from_file(path)
        descriptor = Descriptor.new(name, handler=handler, location=str(path)).replace(uri=uri)
        try:
            outbound.connect_endpoint(descriptor, handlers)
        except Exception:
            handlers.release()
            raise

    # --- error texts ------------------------------------------------------------------------

    def _where(self, frames: list[list[Any]], fallback: str) -> str:
        """``FILE:LINE:COLUMN`` of the first frame in one of the handler's modules."""
        for file, line, column, _function in frames:
            if file in self.paths and line:
                return f"{self.paths[file]}:{line}:{column}"
        return fallback

    def _handler_where(self, name: str) -> str:
        line = self.lines.get(name) or self.lines.get(_python_name(name))
        return f"{self.main.path}:{line}" if line else self.main.path

    def _stopped_text(self, stopped: _Stopped, doing: str, renewed: bool = True) -> str:
        if stopped.reason == "interrupt":
            return f"{doing} was interrupted (KeyboardInterrupt)"
        if stopped.reason == "memory":
            text = (
                f"{doing} was stopped: it went over the memory limit of "
                f"{_mib(self.memory_limit)} (WS_NOTEBOOK_JS_MEMORY_LIMIT)"
            )
            return text + ("; the module was loaded afresh, its state is lost" if renewed else "")
        return (
            f"{doing} was stopped: it ran over the time limit of "
            f"{_seconds(self.time_limit)} (WS_NOTEBOOK_JS_TIME_LIMIT)"
        )


def _results(text: str) -> list[Any]:
    """What ``__ws_b`` returned: JSON, or ``=`` and the text of the one event's reply when
    replying was all it did (the usual case: without JSON on either side). Each result is
    ``[reply, actions, error, pending]``, or only the text of a reply when that is all."""
    return [text[1:]] if text[0] == "=" else json.loads(text)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _sender(client: Any) -> str:
    """``from`` for the handler: the ``from`` a STOMP client sent its message with, else the
    client's id (a bare WebSocket has no other name)."""
    if getattr(client, "kind", None) == "stomp" and isinstance(
        getattr(client, "sender", None), str
    ):
        return client.sender
    sender = getattr(client, "id", None)
    return sender if isinstance(sender, str) else str(client)


def _python_name(codbex: str) -> str:
    for python, name, _ in EVENT_NAMES.values():
        if name == codbex:
            return python
    return codbex


def _send(send: Callable[[Any], Any], message: Any) -> None:
    # Not contextlib.suppress: on the path of every reply, it cost a microsecond of 4 or 5.
    try:  # noqa: SIM105
        send(message)
    except ConnectionClosed:  # it went away meanwhile: as a broadcast does
        pass


def _console(stream: int, text: str, client: Any) -> None:
    """A console line, as a Python handler's print: through sys.stdout/sys.stderr, which
    ws_notebook routes (``output.install``) to the endpoint's log and output while a handler
    runs. Where nothing routes them, the line is recorded in the log here, then printed."""
    name = "stdout" if stream == 1 else "stderr"
    target = sys.stdout if stream == 1 else sys.stderr
    endpoint = getattr(client, "_endpoint", None)
    logger.debug("%s %s: %s", getattr(client, "id", client), name, text)
    if endpoint is None or isinstance(target, Routed):
        target.write(text + "\n")
        return
    for line in text.split("\n"):
        endpoint.log.record(name, client.id, len(line), line[:PREVIEW_CHARS], line[:DETAIL_CHARS])
    if endpoint.output is not None:
        endpoint.output(name, text + "\n")
    else:
        target.write(text + "\n")


def _live_clients(client: Any) -> dict[str, Any]:
    """Every open client of the server the calling client's endpoint is served by."""
    from .. import api

    live: dict[str, Any] = {}
    server = api._server
    endpoint = getattr(client, "_endpoint", None)
    if server is not None and (endpoint is None or server.registry.find(endpoint.name) is endpoint):
        for known in server.registry.clients():
            live[known.id] = known
        if server.registry.bus is not None:  # with a broker: other workers' clients too
            for remote in server.registry.bus.remote_clients():
                live.setdefault(remote.id, remote)
    elif endpoint is not None:  # an endpoint of a server of its own
        live.update(endpoint.clients)
    return live


def _describe_client(client: Any) -> list[str]:
    socket = getattr(client, "_socket", None)
    request = getattr(socket, "request", None)
    host = request.headers.get("Host", "") if request is not None else ""
    scheme = "wss" if request is not None and request.protocol == "https" else "ws"
    uri = f"{scheme}://{host}{client.path}" if host else client.path
    endpoint = getattr(client, "_endpoint", None)  # None: a RemoteClient, of another worker
    handler = endpoint.descriptor.handler if endpoint is not None else client.handler
    return [client.id, uri, handler, client.endpoint]


def _find_client(client_id: str, live: dict[str, Any] | None, caller: Any = None) -> Any:
    """The client with that id: the caller, one of the live clients, or any the server has;
    or the outbound connection of that name (what ``createWebsocket`` returned names it)."""
    if caller is not None and getattr(caller, "id", caller) == client_id:
        return caller
    if live is not None and client_id in live:
        return live[client_id]
    from .. import api

    server = api._server
    if server is None:
        return None
    found = server.registry.client(client_id)
    if found is None:
        endpoint = server.registry.find(client_id)
        if endpoint is not None and endpoint.outbound is not None:
            return endpoint.outbound
    return found


def _is_open(connection: Any) -> bool:
    return connection.client is not None and connection.client.open


def _send_once_open(connection: Any, action: list[Any]) -> None:
    """A send to an outbound connection still connecting: it goes out once it is open (as on
    the platform, where ``createWebsocket`` returns an open client); if it never opens, the
    connection's own log says why, and this says what was not sent."""
    message = action[3] if action[2] == 1 else base64.b64decode(action[3])

    async def send() -> None:
        try:
            await connection.wait_open()
            connection.send(message)
        except Exception as error:
            logger.warning("%s: a message was not sent: %s", connection.name, error)

    task = asyncio.get_running_loop().create_task(send())
    _pending_sends.add(task)
    task.add_done_callback(_pending_sends.discard)


_pending_sends: set[asyncio.Task] = set()  # kept from the garbage collector until done


def _module_for(handler: str, caller: Path) -> Path:
    """The file a handler path names, as a descriptor's ``handler`` does (a workspace path,
    the extension optional): looked for from the calling module's folder upwards (a cell's
    handlers: from the working folder)."""
    relative = PurePosixPath(handler.lstrip("/"))
    if not relative.name or ".." in relative.parts:
        raise HandlerError(f"createWebsocket: handler {handler!r} does not name a module")
    start = caller.parent if caller.is_file() else Path.cwd()
    known = (".js", ".mjs", ".cjs", ".py")
    names = (
        [relative]
        if relative.suffix in known
        else [relative.with_name(relative.name + suffix) for suffix in known]
    )
    for folder in (start, *start.parents):
        for name in names:
            candidate = folder.joinpath(*name.parts)
            if candidate.is_file():
                return candidate
    raise HandlerError(
        f"createWebsocket: handler {handler!r} not found in {start} or the folders above it"
    )


# --- Handlers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JavaScriptHandlers(Handlers):
    """Handlers whose functions call into a JavaScript module's V8 context.

    ``source`` stays None (``%websocket export`` would write it into a ``.py``);
    ``javascript_source`` is the module's text and ``language`` says ``"javascript"``.
    ``release()`` runs the messages still queued, then frees the context: a copy made with
    ``dataclasses.replace`` shares the context, so release only the one that is replaced.
    """

    javascript_source: str | None = None
    language: str = "javascript"
    runtime: _Runtime | None = dataclasses.field(default=None, repr=False, compare=False)

    def release(self) -> None:
        super().release()
        if self.runtime is not None:
            self.runtime.close()


def _handler(runtime: _Runtime, index: int) -> Callable[..., Any]:
    call = runtime.call
    if index == 1:

        def on_message(message: str | bytes, client: Any) -> Any:
            return call(1, message, client)

        return on_message
    if index == 2:

        def on_error(error: BaseException, client: Any) -> Any:
            text = error.text if isinstance(error, JavaScriptError) else _error_text(error)
            return call(2, text, client)

        return on_error

    def on_event(client: Any) -> Any:
        return call(index, None, client)

    on_event.__name__ = EVENT_NAMES[_EVENTS[index]][0]
    return on_event


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _check_typescript(name: str) -> None:
    if PurePosixPath(name).suffix == ".ts":
        raise HandlerError(
            f"{name}: TypeScript handlers are not supported yet: no well-kept TypeScript "
            "transpiler installs from PyPI as a wheel. Compile it to JavaScript beside it "
            f"(npx tsc --target es2022 --module es2022 {PurePosixPath(name).name}, or "
            f"npx esbuild {PurePosixPath(name).name} --outfile="
            f"{PurePosixPath(name).with_suffix('.js').name}) and name the .js in the "
            "descriptor, or leave the handler's extension out: the .js beside it is found"
        )


def _build(
    main: _Module,
    folder: Path | None,
    run: bool,
    time_limit: float | None,
    memory_limit: int | None,
) -> JavaScriptHandlers:
    modules = _collect(main, folder)
    local_files = tuple(Path(m.path) for m in modules[:-1])
    text = main.text
    assert text is not None
    runtime = _Runtime(modules, _time_limit(time_limit), _memory_limit(memory_limit))
    if not run:  # compiled (so syntax errors are found) but not run
        runtime.close()
        events = [
            event
            for event, (python, codbex, _) in EVENT_NAMES.items()
            if python in text.exports or codbex in text.exports
        ]
        return JavaScriptHandlers(
            warnings=_near_misses(text.exports),
            local_files=local_files,
            static_events=tuple(events),
            javascript_source=main.source,
        )
    try:
        found, problems, functions = runtime.load()
        if problems:
            raise HandlerError(f"{main.path}: {'; '.join(problems)}")
    except BaseException:
        runtime.close()
        raise
    # Any: spread into keywords of which only the on_* ones (callables) are meant.
    functions_by_event: dict[str, Any] = {
        f"on_{_EVENTS[index]}": _handler(runtime, index) for index in found
    }
    return JavaScriptHandlers(
        **functions_by_event,
        warnings=_near_misses(functions),
        local_files=local_files,
        javascript_source=main.source,
        runtime=runtime,
    )


def from_file(
    path: str | Path,
    *,
    run: bool = True,
    time_limit: float | None = None,
    memory_limit: int | None = None,
) -> JavaScriptHandlers:
    """Load a JavaScript handler module (``.js``, ``.mjs``, ``.cjs``), or with ``run=False``
    only check it: parse and compile it and the modules it imports, without running any.

    ``time_limit`` (seconds per call) and ``memory_limit`` (bytes) default to
    :data:`TIME_LIMIT` and :data:`MEMORY_LIMIT`, or the environment variables above.
    Errors are ``HandlerError`` naming the file and line.
    """
    path = Path(path)
    _check_typescript(str(path))
    source = _read(path)
    main = _Module(str(path), analyse(source, _esm_for(path.name)), source, {})
    return _build(main, path.absolute().parent, run, time_limit, memory_limit)


def from_source(
    source: str,
    filename: str,
    *,
    run: bool = True,
    time_limit: float | None = None,
    memory_limit: int | None = None,
) -> JavaScriptHandlers:
    """Handlers from JavaScript text, such as a notebook cell's; ``filename`` names it in
    errors and stack traces. It can import ``sdk/net`` but no files."""
    _check_typescript(filename)
    main = _Module(filename, analyse(source, _esm_for(filename)), source, {})
    return _build(main, None, run, time_limit, memory_limit)
