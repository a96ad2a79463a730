"""``ws-notebook``: serve a folder of ``.websocket`` endpoints outside the notebook, hot-reloading.

``ws-notebook serve DIR`` checks every descriptor and handler under DIR first (all problems are
listed, and nothing starts if there is one: exit code 2), mounts them on the same Tornado server
the kernel uses, then watches DIR and re-mounts, reloads or unmounts endpoints as files change.
SIGINT or SIGTERM closes every client with 1001 (going away) and exits 0.
``ws-notebook validate DIR`` only checks; ``ws-notebook list DIR`` prints the endpoints.

What the server does is logged to stderr, one line per event::

    2026-11-25 12:00:00 echo c3 open 127.0.0.1
    2026-11-25 12:00:01 echo c3 stdout got bad input
    2026-11-25 12:00:01 echo c3 error on_message raised ValueError: bad input
    2026-11-25 12:00:02 echo c3 close 1000

Every open, error and close is printed, however many messages flow: the registry hands them to
the printer as they are recorded, and it prints them every 0.1 s. So is every line a handler
prints (to stdout or stderr), attributed to its endpoint and client. With ``-v``, messages in and
out are read from the endpoints' bounded event logs (the record ``%websocket log`` reads), so
under a flood some are only counted. The rest is the ``ws_notebook`` logger. Headers, cookies,
tokens and query strings are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import api, outbound, output
from .access import mask
from .descriptor import PLATFORM_FIELDS
from .endpoint import Endpoint
from .events import Event, EventLog
from .project import LoadedEndpoint, ProjectError, find_descriptors, load_project
from .registry import Registry
from .rows import Table
from .server import DEFAULT_HOST, Limits, Server, ServerError
from .watch import ProjectWatcher
from .workers import WORKER_ENV, WORKER_TOKEN_ENV, inherited_sockets, tell_ready

BROKER_ENV = "WS_NOTEBOOK_BROKER"

__all__ = ["main"]

DEFAULT_PORT = 8080
INVALID = 2  # invalid input: a broken project, bad options (argparse uses 2 as well)
FAILED = 1  # could not serve: the port is taken, ...
POLL_SECONDS = 0.1
SHUTDOWN_SECONDS = 5.0  # how long clients get to answer the 1001 close frame
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TOKEN_ENV = "WS_NOTEBOOK_TOKEN"

logger = logging.getLogger("ws_notebook")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ws-notebook",
        description="Serve, check or list a folder of codbex *.websocket endpoints "
        "(Python handler modules), as ws_notebook serves them in a notebook.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve every endpoint under DIR, reloading them as files change",
        description="Check every descriptor and handler under DIR, serve them at "
        "ws://HOST:PORT/websockets/service/NAME, and reload endpoints as files are added, "
        "changed or removed. GET /websockets lists the endpoints, GET /healthz answers 200 "
        "while serving. SIGINT/SIGTERM close clients with 1001 and exit 0.",
    )
    serve.add_argument("directory", metavar="DIR", help="project folder (or one .websocket file)")
    _address_options(serve)
    serve.add_argument("--certfile", help="PEM certificate: serve wss:// (with --keyfile)")
    serve.add_argument("--keyfile", help="PEM private key of --certfile")
    serve.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help="require this token (Authorization: Bearer TOKEN or ?token=TOKEN) on every "
        f"request; 'auto' makes one and prints it to stdout (default: ${TOKEN_ENV}, else none)",
    )
    serve.add_argument(
        "--allow-origin",
        dest="origins",
        action="append",
        default=[],
        metavar="URL",
        help="a browser origin allowed besides same-origin and loopback pages ('*': all); "
        "repeat for more",
    )
    _limit_options(serve)
    serve.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="N worker processes sharing the port (SO_REUSEPORT, else one socket bound before "
        "they start); a crashed one is restarted. More than 1 needs --broker (default: 1)",
    )
    serve.add_argument(
        "--broker",
        default=os.environ.get(BROKER_ENV) or None,
        metavar="URL",
        help="redis://HOST:PORT/DB: join the workers and machines sharing this Redis, so "
        "broadcasts, sends to a client id and client counts span them all "
        f"(default: ${BROKER_ENV}, else none)",
    )
    serve.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="serve the endpoints as they are now, without reloading",
    )
    serve.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log messages in and out (sizes only) and handler tracebacks",
    )

    validate = commands.add_parser(
        "validate",
        help="check every descriptor and handler under DIR",
        description="Check every descriptor and handler under DIR; list every problem with its "
        "descriptor's path in the project and the property. Descriptors are read as the "
        "platform reads them: its own fields (engine, updatedBy, updatedAt) are kept, other "
        "unknown properties and a leading '/' in endpoint are warnings, null is 'not set'. "
        "Exit code 0 if all are valid, 2 if not.",
    )
    validate.add_argument("directory", metavar="DIR")
    _import_option(validate)
    validate.add_argument(
        "--strict",
        action="store_true",
        help="check descriptors against the schema as written: the six documented properties "
        "only, strings only (no null), no leading '/' in endpoint",
    )

    listing = commands.add_parser(
        "list",
        help="table of the endpoints under DIR",
        description="Check the project under DIR and print its endpoints with the URLs "
        "`serve` would give them.",
    )
    listing.add_argument("directory", metavar="DIR")
    _import_option(listing)
    _address_options(listing)
    listing.add_argument(
        "--json", action="store_true", help="print JSON, as GET /websockets lists the endpoints"
    )
    return parser


def _import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="run_handlers",
        action="store_true",
        help="also import every handler module, running its code as serve does (by default "
        "handlers are checked without running them)",
    )


def _address_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address (default: {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: free)"
    )


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds (0 or more)")
    return value


# The Limits fields serve sets from options, as %websocket start does: (type, metavar, help).
_LIMIT_OPTIONS: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "max_message_size": (_count, "BYTES", "a bigger message closes the connection with 1009"),
    "max_connections": (_count, "N", "per endpoint; more are refused with 1013"),
    "max_send_queue": (_count, "BYTES", "waiting for one client; past it, closed with 1008"),
    "ping_interval": (_seconds, "S", "seconds between pings, 0: none"),
    "ping_timeout": (_seconds, "S", "seconds a peer has to answer a ping before it is closed"),
    "handshake_timeout": (_seconds, "S", "a connection still in its handshake then is closed"),
}


def _limit_options(parser: argparse.ArgumentParser) -> None:
    """Options for the fields of :class:`Limits`; their defaults are Limits' own."""
    defaults = Limits()
    for name, (kind, metavar, text) in _LIMIT_OPTIONS.items():
        value = getattr(defaults, name)
        default = format(value, "g" if isinstance(value, float) else "d")
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            metavar=metavar,
            help=f"{text} (default: {default})",
        )
    parser.add_argument(
        "--compression",
        action="store_true",
        default=None,
        help="offer permessage-deflate (default: off)",
    )


def _limits(args: argparse.Namespace) -> Limits:
    chosen = {name: getattr(args, name, None) for name in (*_LIMIT_OPTIONS, "compression")}
    return Limits(**{name: value for name, value in chosen.items() if value is not None})


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ws-notebook`` with ``argv`` (default: the command line); returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "list":
            return _list(args)
        if args.workers > 1:
            return _supervise(args, sys.argv[1:] if argv is None else list(argv))
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:  # before the signal handlers were in place
        return 130


# --- validate and list ---------------------------------------------------------------------------


def _load(directory: str, run_handlers: bool, strict: bool = False) -> list[LoadedEndpoint] | None:
    """The project's endpoints, or None after printing every problem to stderr."""
    try:
        loaded = load_project(directory, run_handlers=run_handlers, strict=strict)
    except ProjectError as error:
        _print_problems(directory, error.problems)
        return None
    _print_warnings(loaded)
    return loaded


def _print_problems(directory: str, problems: Sequence[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    print(f"ws-notebook: {count} in {directory}", file=sys.stderr)


def _print_warnings(loaded: Sequence[LoadedEndpoint]) -> None:
    for item in loaded:
        for warning in item.descriptor.warnings:
            print(f"warning: {item.descriptor.location}: {warning}", file=sys.stderr)
        for warning in item.handlers.warnings:
            print(f"warning: {item.handler_path}: {warning}", file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    loaded = _load(args.directory, args.run_handlers, args.strict)
    if loaded is None:
        return INVALID
    names = ", ".join(item.descriptor.endpoint for item in loaded)
    print(f"{len(loaded)} endpoint{'s' if len(loaded) != 1 else ''} OK: {names}")
    return 0


def _list(args: argparse.Namespace) -> int:
    loaded = _load(args.directory, args.run_handlers)
    if loaded is None:
        return INVALID
    registry = Registry()
    for item in loaded:
        registry.mount(item.descriptor, item.handlers)
    server = Server(registry, args.host, args.port)  # not started: it only words the URLs
    if args.json:
        print(json.dumps(server.describe(), indent=2))
        return 0
    # The platform's own fields, when a descriptor has them.
    platform = [
        (column, field)
        for column, field in PLATFORM_FIELDS.items()
        if any(getattr(item.descriptor, field) for item in loaded)
    ]
    columns = ["endpoint", "url", "handlers", "description", "createdBy", "createdAt"]
    columns += [column for column, _ in platform] + ["file"]
    rows = [
        [
            item.descriptor.endpoint,
            server.url(item.descriptor.endpoint),
            ", ".join(item.handlers.defined) or "none",
            item.descriptor.description,
            item.descriptor.created_by,
            item.descriptor.created_at,
            *(getattr(item.descriptor, field) for _, field in platform),
            str(item.path),
        ]
        for item in loaded
    ]
    print(Table(columns, rows).text(empty=""))
    return 0


# --- serve ----------------------------------------------------------------------------------------


def _supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """``--workers N`` (N > 1): N serve processes on one port, joined by the broker."""
    if not args.broker:
        print(
            f"ws-notebook: --workers {args.workers} needs a broker (--broker redis://HOST:PORT/DB "
            f"or ${BROKER_ENV}): without one, each worker would see only its own clients",
            file=sys.stderr,
        )
        return INVALID
    if args.port == 0:
        print(
            "ws-notebook: --workers needs a fixed --port (0 would give each its own)",
            file=sys.stderr,
        )
        return INVALID
    from .access import AUTO, new_token
    from .workers import supervise

    token = args.token
    if token == AUTO:
        token = new_token()
        print(f"token: {token}", flush=True)
    return supervise(argv, args.workers, args.broker, args.host, args.port, token)


async def _serve(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if not directory.exists():
        print(f"{directory}: no such file or folder", file=sys.stderr)
        return INVALID
    if not args.watch and not find_descriptors(directory):
        _print_problems(args.directory, [f"{directory}: no *.websocket files found"])
        return INVALID
    registry = Registry()
    printer = _EventPrinter(registry, sys.stderr, verbose=args.verbose)  # before any event
    watcher = ProjectWatcher(registry, directory)
    try:
        loaded = watcher.load()
    except ProjectError as error:
        _print_problems(args.directory, error.problems)
        print("ws-notebook: nothing was started", file=sys.stderr)
        return INVALID
    _print_warnings(loaded)
    if os.environ.get(WORKER_TOKEN_ENV):  # a worker of --workers N: the supervisor's token
        args.token = os.environ[WORKER_TOKEN_ENV]
    try:
        server = Server(
            registry,
            args.host,
            args.port,
            limits=_limits(args),
            certfile=args.certfile,
            keyfile=args.keyfile,
            token=args.token,
            allowed_origins=args.origins,
        )
    except ServerError as error:  # unreadable TLS files
        print(f"ws-notebook: {error}", file=sys.stderr)
        return INVALID
    server.reuse_port = bool(os.environ.get(WORKER_ENV))  # the port is shared with the others
    server.inherited = inherited_sockets()  # or bound once by the supervisor, and given to us
    api.set_default_server(server)  # handlers' ws_notebook.broadcast(...) reach these endpoints
    restore = _log_to_stderr(args.verbose, before=printer.flush)
    routing = output.install(echo=False)  # handlers' prints become events, printed as above
    try:
        return await _run(server, watcher, printer, args)
    finally:
        routing.restore()
        printer.flush()  # a line a handler left unfinished
        restore()


async def _run(
    server: Server, watcher: ProjectWatcher, printer: _EventPrinter, args: argparse.Namespace
) -> int:
    bus = None
    if args.broker:
        from .broker import Broker, BrokerError

        number = os.environ.get(WORKER_ENV)
        try:
            bus = Broker(args.broker, server)
        except BrokerError as error:
            logger.error("%s", error)
            return INVALID
        if number:
            bus.worker_id += f" (worker {number})"
        bus.attach()  # before the first client: its id and its join are the bus's
    try:
        server.start()
    except ServerError as error:
        logger.error("%s", error)
        if bus is not None:
            await bus.aclose()
        return FAILED
    if bus is not None:
        await bus.start()
        logger.info("worker %s on broker %s", bus.worker_id, bus.safe_url)
    registry = server.registry
    base = server.url("").removesuffix("/websockets/service/")
    logger.info(
        "serving %d endpoint%s from %s at %s/websockets/service/NAME (GET /websockets lists them)",
        len(registry),
        "" if len(registry) == 1 else "s",
        args.directory,
        base,
    )
    for endpoint in registry:
        if endpoint.descriptor.uri:  # an outbound connection: see ws_notebook.outbound
            outbound.open_mounted(endpoint)
            logger.info(
                "%s: connecting to %s", endpoint.name, outbound.shown(endpoint.descriptor.uri)
            )
        else:
            logger.info("%s: %s", endpoint.name, server.url(endpoint.name))
    tell_ready()  # worker 1 of --workers N: the supervisor starts the others now
    token = getattr(server, "token", None)
    if args.token == "auto" and token:
        # The only place the generated token is shown: stdout, never the log on stderr.
        print(f"token: {token}", flush=True)
    printing = asyncio.create_task(printer.run(), name="ws-notebook events")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, _on_signal, stopping, signum)
        except NotImplementedError:  # Windows' loops: a plain handler hands over to the loop
            signal.signal(signum, lambda n, _: loop.call_soon_threadsafe(_on_signal, stopping, n))
    try:
        if args.watch:
            watcher.start()
            await watcher.wait_ready(timeout=30)
            logger.info("watching %s for changes", args.directory)
        if not len(registry):
            logger.warning(
                "no *.websocket files in %s yet; they are served when added", args.directory
            )
        await stopping.wait()
        clients = len(registry.clients())
        logger.info(
            "shutting down: closing %d client%s (1001)", clients, "" if clients == 1 else "s"
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
        await watcher.aclose()
        server.stop("server shutting down")
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        while registry.clients() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if bus is not None:
            await bus.aclose()
        printing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printing
        printer.flush()
    logger.info("stopped")
    return 0


def _on_signal(stopping: asyncio.Event, number: int) -> None:
    if stopping.is_set():  # a second Ctrl-C: do not wait for slow clients
        logger.warning("%s again: exiting now", signal.Signals(number).name)
        os._exit(1)
    logger.info("%s received", signal.Signals(number).name)
    stopping.set()


# --- logging ---------------------------------------------------------------------------------------


class _Formatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", TIME_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        message = mask(record.getMessage())  # a URL's ?token=
        if record.name.startswith("tornado"):
            message = f"http {message}"
        record.msg, record.args = message, None
        return super().format(record)


class _Quiet(logging.Filter):
    """Without --verbose, a handler's error is logged once, from the event log, on one line."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        from_endpoint = record.name == "ws_notebook" and record.module == "endpoint"
        return self.verbose or not (from_endpoint and record.exc_info)


class _Handler(logging.StreamHandler):
    """Runs ``before`` (the connection events not printed yet) first, to keep lines in order."""

    def __init__(self, stream: TextIO, before: Callable[[], None] | None) -> None:
        super().__init__(stream)
        self.before = before
        self.thread = threading.get_ident()  # the loop's: event logs are only read there

    def emit(self, record: logging.LogRecord) -> None:
        if self.before is not None and threading.get_ident() == self.thread:
            self.before()
        super().emit(record)


def _log_to_stderr(verbose: bool, before: Callable[[], None] | None = None) -> Any:
    """Send ws_notebook's and Tornado's warnings to stderr, one line each; returns an undo."""
    handler = _Handler(sys.stderr, before)
    handler.setFormatter(_Formatter())
    handler.addFilter(_Quiet(verbose))
    # Tornado logs a refused request (tornado.general) with its URL, query string and all; the
    # formatter drops query strings. Configured even when quiet: left alone, logging's last
    # resort would print them as they are.
    return output.send_logs_to(handler, {"ws_notebook": logging.INFO, **output.TORNADO_LEVELS})


def _printable(text: str) -> str:
    """One line, no terminal control characters: close reasons come from clients."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _EventPrinter:
    """Prints the endpoints' open, error, close and output events (and, verbose, in/out) as log
    lines.

    Opens, errors, closes and the lines handlers print come from the registry as they are
    recorded, so none is missed however many messages flow; they wait for the next flush, to be
    printed in order with the rest. Verbose in/out lines are read from each endpoint's bounded event log from where the
    last flush left off: under a flood, those pushed out are counted, not printed. Lines carry
    the time the event happened. Unmounted endpoints are read until their clients have closed.
    """

    def __init__(self, registry: Registry, stream: TextIO, verbose: bool = False) -> None:
        self.registry = registry
        self.stream = stream
        self.verbose = verbose
        self._heard: list[tuple[float, int, str, EventLog]] = []  # since the last flush
        self._followed: dict[int, tuple[Endpoint, EventLog, int]] = {}
        registry.subscribe(self._hear)

    def _hear(self, endpoint: Endpoint, event: Event) -> None:
        text = f"{endpoint.name} {event.client} {event.kind} {_printable(event.detail)}"
        self._heard.append((event.time, event.seq, text.rstrip(), endpoint.log))

    async def run(self) -> None:
        while True:
            self.flush()
            await asyncio.sleep(POLL_SECONDS)

    def flush(self) -> None:
        heard, self._heard = self._heard, []
        lines = [(when, seq, text) for when, seq, text, _ in heard]
        if self.verbose:
            lines += self._messages(heard)
        for when, _, text in sorted(lines, key=lambda line: line[:2]):
            stamp = time.strftime(TIME_FORMAT, time.localtime(when))
            self.stream.write(f"{stamp} {text}\n")
        if lines:
            self.stream.flush()

    def _messages(
        self, heard: list[tuple[float, int, str, EventLog]]
    ) -> list[tuple[float, int, str]]:
        """In/out lines from the event logs since the last flush, and how many were pushed out."""
        mounted = {id(endpoint): endpoint for endpoint in self.registry}
        lines: list[tuple[float, int, str]] = []
        followed: dict[int, tuple[Endpoint, EventLog, int]] = {}
        endpoints = {key: endpoint for key, (endpoint, _, _) in self._followed.items()}
        endpoints.update(mounted)
        for key, endpoint in endpoints.items():
            log = endpoint.log
            known = self._followed.get(key)
            seq = known[2] if known is not None and known[1] is log else 0
            events = log.since(seq)
            if events and events[0].seq > seq:  # pushed out: count the messages among them
                first = events[0].seq
                heard_there = sum(1 for _, n, _, of in heard if of is log and seq <= n < first)
                missed = first - seq - heard_there
                if missed:
                    text = f"{endpoint.name} ({missed} message events not shown)"
                    lines.append((events[0].time, -1, text))
            for event in events:
                if event.kind in ("in", "out"):
                    text = f"{endpoint.name} {event.client} {event.kind} {event.size} bytes"
                    lines.append((event.time, event.seq, text))
            if key in mounted or endpoint.clients:
                followed[key] = (endpoint, log, log.total)
        self._followed = followed
        return lines
