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
  ``isOnError()``, ``isOnClose()``. ``createWebsocket`` raises a "not yet" error: outbound
  connections come later.
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

Each call is a hand-over to V8's thread and back: about 30 us when the cores are busy, 60-140
us when they idle in between (waking a thread costs that on a virtual machine), more than a
small handler's own work. So messages that arrive together (a client that pipelines) run in
one call: see :class:`_Runtime`. (Waiting for V8's answer without sleeping, ``sched_yield`` for
up to 0.2 ms, was tried: it saved a few microseconds only when calls came back to back, and
burned a core the rest of the time.)

Not here: timers (``setTimeout``; a handler runs only while an event is handled), outbound
connections (``createWebsocket``), other ``sdk`` modules, TypeScript.

TypeScript (``.ts``) is refused with an error saying what to do: no well-kept TypeScript
transpiler installs from PyPI as a wheel without a build step (checked: ``esbuild-py`` imports
``distutils``, gone in Python 3.12, and wraps esbuild's JSX transform only; ``oxc-py`` and
``oxc-python`` are 0.1 releases, the latter a parser only).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
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

from py_mini_racer import JSOOMException, init_mini_racer

# Below MiniRacer's own API (see the module docstring); mini-racer is pinned to 0.14.x for them.
from py_mini_racer._context import Context
from py_mini_racer._dll import mr_callback_func
from py_mini_racer._exc import JSTerminatedException
from py_mini_racer._objects import ObjectFactoryImpl

from ..connection import ConnectionClosed
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


class JavaScriptError(Exception):
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
    strings into V8 values and V8 results into Python values, and the queue on which V8's
    thread posts the results of tasks that have no asyncio callback (callback id 0).
    """

    def __init__(self, memory_limit: int) -> None:
        dll = init_mini_racer(ignore_duplicate_init=True)
        holder: list[Any] = []

        @mr_callback_func
        def callback(callback_id: int, raw: Any) -> None:
            holder[0].handle_callback_from_v8(callback_id, raw)

        raw_context = dll.mr_init_context(callback)
        # No event loop: only callback id 0 (results of evaluations) is ever used.
        context = Context(dll, raw_context, None, ObjectFactoryImpl(), itertools.count(1))
        holder.append(context)
        self._dll = dll
        self._raw = raw_context
        self._context = context
        self._results = context._non_cancelable_mr_task_results_queue
        self._lock = threading.Lock()
        self.memory_limit = memory_limit
        dll.mr_set_hard_memory_limit(raw_context, memory_limit)
        dll.mr_set_soft_memory_limit(raw_context, memory_limit * 3 // 4)
        # Freed with the object if nobody calls close(); the callback must outlive the context.
        self._finalizer = weakref.finalize(self, _free_context, dll, raw_context, callback)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        with self._lock:
            self._finalizer()

    def eval(self, code: str, timeout: float) -> Any:
        """Evaluate a script; the value of its last expression (a primitive), or raise.

        Raises mini-racer's ``JSEvalException`` family for a JavaScript error, ``_Stopped``
        when the time or memory limit stopped it. An interrupt (``KeyboardInterrupt``) while
        waiting stops the script too, and is raised once V8 is done with it.
        """
        with self._lock:
            if self.closed:
                raise RuntimeError("this JavaScript handler module was unloaded")
            handle = self._context._python_to_value_handle(code)
            task = self._dll.mr_eval(self._raw, handle.raw, 0)
            stopped = False
            try:
                result = self._results.get(timeout=timeout)
            except queue.Empty:
                stopped = True
                result = self._cancel(task)
            except BaseException:
                self._cancel(task)
                raise
            try:
                return self._context._value_handle_to_python(result)
            except JSOOMException:
                self._dll.mr_low_memory_notification(self._raw)
                raise _Stopped("memory") from None
            except JSTerminatedException:
                if stopped:
                    raise _Stopped("time") from None
                raise

    def _cancel(self, task: int) -> Any:
        """Stop a running script and wait for V8 to hand its (terminated) result over."""
        self._dll.mr_cancel_task(self._raw, task)
        while True:
            try:
                return self._results.get()
            except KeyboardInterrupt:  # a second interrupt: V8 is stopping already
                continue


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
        line, column = module.text.syntax_error
        return HandlerError(f"{module.path}:{line}:{column}: syntax error ({first})")
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
        self.context = self._compile()

    def _compile(self) -> _Context:
        """A new context with the runtime and the modules defined (compiled, not run)."""
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
        except BaseException:
            context.close()
            raise
        return context

    def _renew(self) -> None:
        """After a handler went over the memory limit, what it allocated may still be held by
        the module: give it a fresh context and run it again there (its state is lost)."""
        old = self.context
        try:
            self.context = self._compile()
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
                more = getattr(client, "_holding", False)
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
        clients = {id(client): client for _, _, client in events}
        holding = [c for c in clients.values() if hasattr(c, "_hold")]
        for client in holding:
            client._hold()  # one write per client for all its replies
        try:
            while events:
                try:
                    done, failure = self._run(events, direct=False)
                except Exception as error:  # not the handler's: still that event's error
                    done, failure = 1, error
                if failure is not None:
                    self._report(events[done - 1], failure)
                events = events[done:]
        finally:
            for client in holding:
                client._release()

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
        for index, data, client in events:
            sender = _sender(client)
            code = index
            if isinstance(data, (bytes, bytearray, memoryview)):
                code |= 4
                data = base64.b64encode(data).decode("ascii")
            items.append([code, sender, data])
        script = f"__ws_b({json.dumps(items)}"
        live: dict[str, Any] | None = None
        if self.wants_clients:
            live = _live_clients(events[0][2])
            script += f",{json.dumps([_describe_client(c) for c in live.values()])})"
        else:
            script += ")"
        stopped: _Stopped | None = None
        try:
            results = json.loads(self.context.eval(script, self.time_limit))
            later: list[list[Any]] = []
            if any(result[3] for result in results):  # promises: what their reactions did
                later = json.loads(self.context.eval("__ws_drain()", self.time_limit))[1]
        except (_Stopped, KeyboardInterrupt) as error:
            # An interrupt (in a kernel) stops the handler only, as it does a Python one.
            stopped = error if isinstance(error, _Stopped) else _Stopped("interrupt")
            results, partial = self._drain()
            results.append([None, partial, None, 0])
            later = []
            if stopped.reason == "memory":
                self._renew()
        failure: JavaScriptError | None = None
        for position, (result, (index, _data, client)) in enumerate(
            zip(results, events, strict=False)
        ):
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
        message = reply[1] if reply[0] == 1 else base64.b64decode(reply[1])
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
                    if hasattr(target, "send"):
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
        finally:
            if token is not None:
                running.reset(token)

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
    with contextlib.suppress(ConnectionClosed):  # it went away meanwhile: as a broadcast does
        send(message)


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
    """The client with that id: the caller, one of the live clients, or any the server has."""
    if caller is not None and getattr(caller, "id", caller) == client_id:
        return caller
    if live is not None and client_id in live:
        return live[client_id]
    from .. import api

    server = api._server
    return server.registry.client(client_id) if server is not None else None


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
    functions_by_event = {f"on_{_EVENTS[index]}": _handler(runtime, index) for index in found}
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
