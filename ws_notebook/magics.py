"""``%%websocket`` and ``%websocket``: a thin IPython layer over :mod:`ws_notebook.api`.

The cell magic defines an endpoint from the cell's handler functions; the line magic manages
endpoints. Everything here parses arguments and formats output; the work is done by the API.
"""

from __future__ import annotations

import argparse
import contextvars
import dataclasses
import logging
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display
from IPython.utils.process import arg_split
from IPython.utils.text import dedent

from . import api, output
from .broker import RemoteClient
from .browser import BrowserClient
from .descriptor import PLATFORM_FIELDS, Descriptor, DescriptorError, check_endpoint_name
from .handlers import HandlerError, Handlers
from .project import ProjectError
from .registry import UnknownEndpoint
from .rows import CLIENT_COLUMNS, EVENT_COLUMNS, Table, client_row, clock, event_row
from .server import SERVICE_PATH, V4_SERVICE_PATH, ServerError
from .widgets import EndpointPanel, panels

__all__ = ["WebSocketMagics", "load_ipython_extension", "unload_ipython_extension"]

# Errors a user causes with bad input: shown as one clear message, not a traceback.
_USER_ERRORS = (DescriptorError, HandlerError, ProjectError, UnknownEndpoint, ServerError)


# IPython's help formatter writes its own '%' before a parser's name: "%websocket" shows as
# %%websocket, "websocket" as %websocket.
_CELL_DESCRIPTION = """\
Define the endpoint NAME. Its handlers are the cell's functions: on_open(client),
on_message(message, client), on_error(error, client), on_close(client) (any subset, async def
allowed; codbex's onOpen, onMessage, onError, onClose work too). The cell has a namespace of
its own that sees the notebook's globals, live.

Running the cell again replaces the handlers in place: open connections stay open, and the
cell's state stays with them. A top-level assignment you did not change (names = {}) keeps the
value it holds, so what on_open stored for a client is still there; an assignment you edited
takes its new value; functions, classes and imports are always the new ones. The output names
the values kept. --reset runs the cell afresh instead (connections still stay open).

With --js the cell is JavaScript, a codbex handler module as deployed (export function
onMessage(message, from), or exports.onMessage = ...; import/require "sdk/net"), run in V8:
what onMessage returns is the reply, console.log prints under the cell. A re-run replaces the
handlers in place too, with the module run afresh (open connections stay open).
"""

_CELL_EPILOG = """\
%websocket COMMAND manages endpoints (%websocket? shows each command and its options):
list, url, clients, send, log, stop, start, load, unwatch, export, browser, monitor.
"""


def _cell_parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(
        prog="%websocket", description=_CELL_DESCRIPTION, epilog=_CELL_EPILOG
    )
    parser.add_argument("name", help="endpoint name: letters, digits, '-', '_', '.'")
    parser.add_argument("--description", default="", help="what the endpoint is for")
    parser.add_argument(
        "--created-by", dest="created_by", default=None, help="author (default: the user name)"
    )
    parser.add_argument("--port", type=int, default=None, help="port of the server (default: free)")
    parser.add_argument("--host", default=None, help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--no-panel",
        dest="panel",
        action="store_false",
        help="do not display the live panel of connections and messages",
    )
    parser.add_argument(
        "--log-capacity",
        dest="log_capacity",
        type=int,
        default=None,
        help="events the endpoint's log keeps (default: 1000); older ones are counted as dropped",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="keep no value from the cell's previous run (open connections still stay open)",
    )
    parser.add_argument(
        "--thread",
        action="store_true",
        help="run the handlers on a thread of their own, so they answer while a cell computes; "
        "they then run beside your code: guard what both change with a lock",
    )
    parser.add_argument(
        "--js",
        action="store_true",
        help="the cell is JavaScript: a codbex handler module (export function "
        "onMessage(message, from) or exports.onMessage = ...), run in V8",
    )
    parser.add_argument(
        "--connect",
        metavar="URI",
        default=None,
        help="an outbound connection: the handlers drive a WebSocket this kernel opens to URI "
        "(ws:// or wss://), as codbex's createWebsocket does",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="with --connect: reconnect when the connection drops or fails, with exponential "
        "backoff and jitter",
    )
    return parser


def _last_wait(last: tuple[int, float, float] | None) -> str:
    """What waited the last time a cell blocked the kernel: "3 messages, 4.1 s (at 09:41:02)"."""
    if last is None:
        return ""
    messages, seconds, ended = last
    plural = "s" if messages != 1 else ""
    return f"{messages} message{plural}, {seconds:.1f} s (at {clock(ended)})"


def _address(server: Any, endpoint: Any) -> str:
    """Where an endpoint is served, or where its outbound connection goes and how it is."""
    if endpoint.outbound is not None:
        from .outbound import shown

        return f"{shown(endpoint.outbound.uri)} ({endpoint.outbound.state})"
    return server.url(endpoint.name) if server.running else "(stopped)"


def _line_parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(prog="websocket", description="Manage WebSocket endpoints.")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=MagicArgumentParser
    )

    def command(name: str, summary: str) -> MagicArgumentParser:
        return commands.add_parser(name, help=summary, description=summary)

    command("list", "table of endpoints")
    url = command("url", "the ws:// URL of an endpoint, and its path via Jupyter's proxy")
    url.add_argument("name")
    stop = command("stop", "unmount NAME (its clients are closed, 1001), or stop the server")
    stop.add_argument("name", nargs="?")
    start = command("start", "start the server (endpoints stay mounted)")
    start.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    start.add_argument("--host", default=None, help="address to bind (default: 127.0.0.1)")
    start.add_argument("--certfile", help="PEM certificate (chain): serve wss://")
    start.add_argument("--keyfile", help="PEM private key, if not in the certfile")
    start.add_argument("--token", help="clients must send it (Bearer or ?token=); 'auto' makes one")
    start.add_argument(
        "--allow-origin",
        dest="origins",
        action="append",
        help="a browser origin to allow ('*': all)",
    )
    start.add_argument(
        "--max-message-size", type=int, help="bytes; bigger messages close with 1009"
    )
    start.add_argument("--max-connections", type=int, help="per endpoint; more are refused (1013)")
    start.add_argument("--max-send-queue", type=int, help="bytes queued to a client before 1008")
    start.add_argument("--ping-interval", type=float, help="seconds between pings (0: none)")
    start.add_argument("--ping-timeout", type=float, help="seconds to wait for a pong")
    start.add_argument(
        "--handshake-timeout",
        type=float,
        help="seconds a connection may take to send its request (then closed)",
    )
    start.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        help="offer permessage-deflate (--no-compression: do not)",
    )
    clients = command("clients", "table of open connections, of NAME or of every endpoint")
    clients.add_argument("name", nargs="?")
    send = command("send", "send MESSAGE to every client of NAME")
    send.add_argument("name")
    send.add_argument("message", nargs="+")
    log = command("log", "the event log of NAME, or of every endpoint")
    log.add_argument("name", nargs="?")
    log.add_argument("-n", "--last", type=int, default=50, help="how many events (default 50)")
    load = command("load", "mount a .websocket file, or every one under a folder")
    load.add_argument("path")
    load.add_argument(
        "--watch", action="store_true", help="reload as files change (until %%websocket unwatch)"
    )
    unwatch = command("unwatch", "stop watching PATH (or every folder)")
    unwatch.add_argument("path", nargs="?")
    export = command(
        "export",
        "write NAME as DIR/NAME.websocket and its handler module DIR/NAME.py, with the "
        "notebook's imports and constants its handlers use (DIR/NAME.js, the cell as it is, "
        "for a --js endpoint)",
    )
    export.add_argument("name")
    export.add_argument("directory")
    browser = command("browser", "a WebSocket client in this page, to NAME")
    browser.add_argument("name")
    browser.add_argument(
        "--mode",
        choices=["auto", "direct", "proxy"],
        default="auto",
        help="how the page reaches the kernel (default: auto, the proxy when it answers)",
    )
    monitor = command("monitor", "live panel of NAME, or of every endpoint")
    monitor.add_argument("name", nargs="?")
    return parser


def _line_help() -> str:
    """The line magic's help: the command list, then every command with its options."""
    parser = _line_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return "\n".join(
        [parser.format_help(), *(sub.format_help() for sub in commands.choices.values())]
    )


def _client_row(client: Any) -> list[str]:
    """A row of ``%websocket clients``; a client of another worker (with a broker) says which:
    its counters are kept there."""
    if isinstance(client, RemoteClient):
        where = f"on worker {client.worker}"
        return [client.id, client.endpoint, where, "", "", "", "", "", client.state]
    return client_row(client)


def _parse(parser: MagicArgumentParser, line: str) -> Any:
    """Split as a shell would (quotes group words and are removed), then parse."""
    return parser.parse_args(arg_split(line, posix=True))


def _shown(error: Exception) -> str:
    """An error as the user reads it: a syntax error with its line and a caret under the place,
    as IPython shows one."""
    cause = error.__cause__
    if not isinstance(cause, SyntaxError) or not cause.text or not cause.offset:
        return str(error)
    line = cause.text.rstrip("\n")
    code = line.lstrip()
    start = cause.offset - 1 - (len(line) - len(code))
    end = cause.end_offset or 0
    same_line = cause.end_lineno in (None, cause.lineno) and end > cause.offset
    width = end - cause.offset if same_line else 1
    return f"{error}\n    {code}\n    {' ' * max(start, 0)}{'^' * max(width, 1)}"


def _javascript_cell(cell: str, filename: str) -> Handlers:
    """A ``--js`` cell's handlers; an error naming a line of the cell (``FILENAME:LINE: ...``,
    as V8 and the import checks report it) shows that line under it, as a Python cell's
    syntax error does."""
    from . import javascript  # V8 is started only for JavaScript

    try:
        return javascript.from_source(cell, filename)
    except HandlerError as error:
        text = str(error)
        number = text[len(filename) + 1 :].split(":", 1)[0] if text.startswith(filename) else ""
        lines = cell.splitlines()
        if not number.isdigit() or not 1 <= int(number) <= len(lines):
            raise
        raise HandlerError(f"{text}\n    {lines[int(number) - 1].strip()}") from None


@magics_class
class WebSocketMagics(Magics):
    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        # The execution count each endpoint cell last ran as, by cell: the cell ids in a
        # descriptor's location are not shown anywhere, "[n]" is.
        self._executed: dict[str, int] = {}

    @cell_magic("websocket")  # type: ignore[arg-type]  # IPython types the decorator as Never
    def websocket_cell(self, line: str, cell: str) -> None:
        try:
            self._define(line, cell)
        except _USER_ERRORS as error:
            raise UsageError(_shown(error)) from None

    @line_magic("websocket")  # type: ignore[arg-type]  # as above
    def websocket_command(self, line: str) -> Any:
        try:
            return self._command(line)
        except _USER_ERRORS as error:
            raise UsageError(_shown(error)) from None

    # --- %%websocket NAME ---------------------------------------------------------------

    def _run_cell(self, args: Any, cell: str, where: str, filename: str) -> Handlers:
        """The cell's handlers; a re-run keeps the values the cell's unchanged assignments hold
        (unless ``--reset``), because the connections kept open rely on them."""
        shell = self.shell
        assert shell is not None, "a magic runs in a shell"
        if args.js:  # the module runs afresh: V8 keeps no values across runs
            handlers = _javascript_cell(cell, filename)
            self._executed[where] = shell.execution_count - 1
            return handlers
        current = api.default_server().registry.find(args.name)
        previous = None if args.reset or current is None else current.handlers
        handlers = Handlers.from_source(cell, filename, shell.user_ns, previous)
        self._executed[where] = shell.execution_count - 1  # counted before the cell ran
        if handlers.kept:
            names = ", ".join(handlers.kept)
            print(
                f"{args.name}: kept the values of {names} from the cell's previous run "
                "(unchanged assignments; --reset for fresh values)"
            )
        return handlers

    def _origin(self, previous: Descriptor) -> str:
        """Where the endpoint a cell replaced came from, as the user can recognise it."""
        location = previous.location
        if location.startswith("notebook"):
            count = self._executed.get(location)
            return "defined in another cell" + (f" (executed as [{count}])" if count else "")
        if location == "python":
            return "defined by ws_notebook.serve"
        return f"defined by {location or 'a .websocket file'}"

    def _define(self, line: str, cell: str) -> None:
        args = _parse(_cell_parser(), line)
        try:
            check_endpoint_name(args.name)
        except DescriptorError as error:
            raise UsageError(f"%%websocket: {error}") from None
        where = self._cell_reference()
        filename = f"<%%websocket {args.name} {where}>"
        handlers = self._run_cell(args, cell, where, filename)
        for warning in handlers.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        descriptor = Descriptor.new(
            args.name,
            handler=where,
            location=where,
            description=args.description,
            created_by=args.created_by,
        )
        if args.connect is not None:
            self._connect(args, descriptor.replace(uri=args.connect), handlers)
            return
        if args.reconnect:
            raise UsageError("%%websocket: --reconnect goes with --connect URI")
        try:
            server = api.start(args.host, args.port)  # first: a busy port must not mount it
            mounted = api.mount(
                descriptor, handlers, log_capacity=args.log_capacity, thread=args.thread
            )
        except BaseException:
            handlers.release()  # a --js cell's V8 context, which nothing else would free
            raise
        mounted.endpoint.output = _cell_output(self.shell)  # this cell, even once others ran
        url = server.url(args.name)
        defined = ", ".join(handlers.defined) or "none: only broadcast will reach clients"
        previous = mounted.replaced
        mode = ", on its own thread" if args.thread else ""
        if previous is None:
            print(f"{args.name}: serving at {url} (handlers: {defined}{mode})")
        elif previous.location != descriptor.location:
            print(
                f"{args.name}: replaced the endpoint {self._origin(previous)}; "
                f"{len(mounted.endpoint.clients)} open connections now use this cell's handlers "
                f"({defined}{mode}), at {url}"
            )
        else:
            print(
                f"{args.name}: handlers updated in place ({defined}{mode}); "
                f"{len(mounted.endpoint.clients)} open connections kept, at {url}"
            )
        if args.panel:
            display(EndpointPanel(args.name, origin=where))

    def _connect(self, args: Any, descriptor: Descriptor, handlers: Handlers) -> None:
        """``--connect URI``: open (or keep, with the new handlers) an outbound connection."""
        from . import outbound

        current = api.default_server().registry.find(args.name)
        kept = current.outbound if current is not None else None
        try:
            connection = outbound.connect_endpoint(
                descriptor, handlers, log_capacity=args.log_capacity, reconnect=args.reconnect
            )
        except (ValueError, TypeError) as error:
            handlers.release()
            raise UsageError(f"%%websocket: {error}") from None
        connection.endpoint.output = _cell_output(self.shell)
        defined = ", ".join(handlers.defined) or "none"
        where = outbound.shown(connection.uri)
        if connection is kept:
            print(
                f"{args.name}: handlers updated in place ({defined}); the connection to {where} "
                f"is kept ({connection.state})"
            )
        else:
            print(f"{args.name}: connecting to {where} (handlers: {defined})")
        if args.panel:
            display(EndpointPanel(args.name, origin=descriptor.location))

    def _cell_reference(self) -> str:
        """Where a cell's endpoint comes from: its Jupyter cell id when the front end sends one."""
        get_parent = getattr(self.shell, "get_parent", None)
        parent = get_parent() if get_parent else {}
        cell_id = (parent or {}).get("metadata", {}).get("cellId")
        return f"notebook:cell-{cell_id}" if cell_id else "notebook"

    # --- %websocket COMMAND ---------------------------------------------------------------

    def _command(self, line: str) -> Any:
        args = _parse(_line_parser(), line)
        if args.command is None:
            return self._list()
        return getattr(self, f"_{args.command}")(args)

    def _list(self, args: Any = None) -> Table:
        server = api.default_server()
        endpoints = list(server.registry)
        # The platform's own fields, when a loaded descriptor has them.
        platform = [
            (column, field)
            for column, field in PLATFORM_FIELDS.items()
            if any(getattr(e.descriptor, field) for e in endpoints)
        ]
        rows = [
            (
                e.name,
                e.direction,
                _address(server, e),
                len(e.clients),
                f"{e.messages_in} in / {e.messages_out} out",
                "own thread" if e.threaded else "kernel",
                _last_wait(e.last_wait),
                e.descriptor.description,
                e.descriptor.created_by,
                e.descriptor.created_at,
                *(getattr(e.descriptor, field) for _, field in platform),
            )
            for e in endpoints
        ]
        columns = [
            "endpoint",
            "direction",
            "url",
            "clients",
            "messages",
            "handlers run on",
            "waited for the kernel",
            "description",
            "createdBy",
            "createdAt",
            *(column for column, _ in platform),
        ]
        return Table(columns, rows)

    def _url(self, args: Any) -> None:
        connection = api.endpoint(args.name).outbound
        if connection is not None:  # not served here: where it connects to, credentials left out
            print(connection.uri_shown)
            print(
                f"{args.name} is an outbound connection ({connection.state}): this kernel "
                "connects to that URI; it is not served here"
            )
            return
        print(api.url(args.name))
        if api.proxy_installed():  # else the path would lead nowhere
            print(
                f"via Jupyter's proxy (JupyterHub, Binder): {api.proxy_path(args.name)} on the notebook's host"
            )

    def _browser(self, args: Any) -> None:
        display(BrowserClient(args.name, mode=args.mode))

    def _stop(self, args: Any) -> None:
        if args.name:
            endpoint = api.unmount(args.name, stopped_with=f"%websocket stop {args.name}")
            print(f"{args.name}: unmounted, {len(endpoint.clients)} clients closed (1001)")
            return
        clients = len(api.clients())
        outbound = [
            e.name for e in api.endpoints() if e.outbound is not None and not e.outbound.done
        ]
        api.stop()
        again = f" and reconnects {', '.join(outbound)}" if outbound else ""
        print(
            f"server stopped, {clients} clients closed (1001); %websocket start serves again{again}"
        )

    def _start(self, args: Any) -> None:
        chosen = {
            name: getattr(args, name)
            for name in (
                "max_message_size",
                "max_connections",
                "max_send_queue",
                "ping_interval",
                "ping_timeout",
                "handshake_timeout",
                "compression",
            )
            if getattr(args, name) is not None
        }
        current = api.default_server().limits  # limits not given keep their values
        before = {e.name: e.outbound for e in api.endpoints()}
        server = api.start(
            args.host,
            args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            token=args.token,
            limits=dataclasses.replace(current, **chosen) if chosen else None,
            allowed_origins=args.origins,
        )
        print(
            f"serving {len(server.registry)} endpoints at {server.scheme}://{server.host}:{server.port}"
        )
        for endpoint in server.registry:  # the outbound connections stop closed, opened again
            if endpoint.outbound is not None and endpoint.outbound is not before.get(endpoint.name):
                print(f"{endpoint.name}: connecting to {endpoint.outbound.uri_shown} again")
        if server.token is not None:
            print(
                "clients must send the token (Authorization: Bearer TOKEN, or ?token=TOKEN); "
                "ws_notebook.url(NAME, with_token=True) gives a URL with it. It is not shown "
                "here, so it stays out of the saved notebook."
            )

    def _clients(self, args: Any) -> Table:
        return Table(CLIENT_COLUMNS, [_client_row(c) for c in api.clients(args.name)])

    def _send(self, args: Any) -> None:
        message = " ".join(args.message)
        sent = api.broadcast(args.name, message)
        print(f"{args.name}: sent to {sent} clients")

    def _log(self, args: Any) -> Table:
        endpoints = [api.endpoint(args.name)] if args.name else api.endpoints()
        events = (
            sorted(
                ((e.name, event) for e in endpoints for event in e.log.since()),
                key=lambda pair: pair[1].time,
            )[-args.last :]
            if args.last > 0
            else []
        )
        rows = [event_row(name, event) for name, event in events]
        dropped = sum(e.log.dropped for e in endpoints)
        note = f"{dropped} older events dropped (log capacity per endpoint)" if dropped else ""
        return Table(EVENT_COLUMNS, rows, note)

    def _load(self, args: Any) -> None:
        target = _cell_output(self.shell)  # loaded handlers print under this cell
        for endpoint in api.load_descriptor(args.path, watch=args.watch):
            endpoint.output = target
            descriptor = endpoint.descriptor
            # Its path in the project, as every problem loading it is named.
            where = descriptor.location or args.path
            if descriptor.declared_location:
                where += f"; the file says location {descriptor.declared_location}"
            if endpoint.outbound is not None:
                going = f"connecting to {endpoint.outbound.uri_shown}"
            else:
                going = f"serving at {api.url(endpoint.name)}"
            print(f"{endpoint.name}: {going} (from {where})")
            for warning in descriptor.warnings:
                print(f"warning: {descriptor.location}: {warning}", file=sys.stderr)
        if args.watch:
            print(f"watching {args.path}: changes are applied between cells and while cells await")

    def _unwatch(self, args: Any) -> None:
        api.unwatch(args.path)
        print(f"stopped watching {args.path or 'every folder'}; the endpoints stay mounted")

    def _monitor(self, args: Any) -> None:
        if args.name is not None:
            api.endpoint(args.name)  # an unknown name is an error, not an empty panel
        display(EndpointPanel(args.name))

    def _export(self, args: Any) -> None:
        path = api.export(args.name, args.directory)
        handler = api.endpoint(args.name).handlers
        suffix = ".js" if getattr(handler, "language", "") == "javascript" else ".py"
        print(f"{args.name}: wrote {path} and {path.with_suffix(suffix)}")


_CONNECT = f"\nClients connect to ws://HOST:PORT{SERVICE_PATH}NAME (or {V4_SERVICE_PATH}NAME).\n"
# (IPython types the decorated magics as Never, hence the ignores)
WebSocketMagics.websocket_cell.__doc__ = dedent(_cell_parser().format_help() + _CONNECT)  # type: ignore[assignment]
WebSocketMagics.websocket_command.__doc__ = dedent(_line_help() + _CONNECT)  # type: ignore[assignment]

_log_handler: logging.Handler | None = None
_tornado_logs: Any = None  # undoes _route_tornado_logs
_routing: output.Routing | None = None
_last_stream: str | None = None  # the kernel stream that handler output went to last


def _cell_output(shell: Any) -> output.Target | None:
    """Where the handlers of the endpoint the running cell defines print: under that cell.

    ipykernel's streams send text as output of the request their context names, which for a
    handler is whichever cell started the server; this names the defining cell instead. None
    outside a kernel (a terminal IPython): handler output goes to the terminal as it is.
    """
    get_parent = getattr(shell, "get_parent", None)
    parent = get_parent() if get_parent is not None else None
    if not parent or _routing is None:
        return None
    streams = {"stdout": _routing.stdout.stream, "stderr": _routing.stderr.stream}
    # ipykernel's OutStream keeps its parent in a context variable: set it for one write only.
    # 7.4 has set_thread_parent for that; 7.0-7.3 only the variable itself.
    parents: dict[str, contextvars.ContextVar] = {}
    for name, stream in streams.items():
        var = getattr(stream, "_parent_header", None)
        if not isinstance(var, contextvars.ContextVar):
            return None
        parents[name] = var
    from jupyter_client.session import extract_header  # installed wherever ipykernel is

    header = extract_header(parent)

    def write(name: str, text: str) -> None:
        global _last_stream
        if _last_stream is not None and _last_stream != name:
            streams[_last_stream].flush()  # a print before a traceback shows before it
        _last_stream = name
        token = parents[name].set(header)
        try:
            streams[name].write(text)
        finally:
            parents[name].reset(token)

    return write


# Tornado's loggers, as the kernel leaves them, would print into the notebook: ipykernel gives
# the "tornado" logger a handler writing to the cell output. A request the server refuses (a
# 404 for an unknown path, a missing token) is not the notebook's business: a refusal naming a
# mounted endpoint is an event of its log, and the lines go to the kernel's own stderr, the
# terminal running Jupyter, as Jupyter's server logs its requests.
def _terminal(stream: Any) -> Any:
    """The kernel process's own stderr, the terminal running Jupyter, not the notebook.

    ipykernel forwards what is written to file descriptor 2 into the notebook; it keeps a copy
    of the original descriptor, which is the terminal. Without that copy, file descriptor 2 is
    the terminal.
    """
    original = getattr(stream, "_original_stdstream_copy", None)
    if isinstance(original, int):
        return open(original, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
    return sys.__stderr__


def _route_tornado_logs(stream: Any) -> Any:
    """Send Tornado's log lines to the kernel's terminal, not the notebook; returns an undo."""
    terminal = _terminal(stream)
    handler: logging.Handler = (
        logging.StreamHandler(terminal) if terminal is not None else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("[ws_notebook %(name)s] %(levelname)s %(message)s"))
    undo = output.send_logs_to(handler, output.TORNADO_LEVELS)

    def restore() -> None:
        undo()
        if terminal is not None and terminal is not sys.__stderr__:
            terminal.close()

    return restore


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ws_notebook``: register the magics, route handler output and errors to the
    cells that defined the endpoints, and Tornado's request log to the kernel's terminal."""
    global _log_handler, _routing, _tornado_logs
    ipython.register_magics(WebSocketMagics)
    if _routing is None:
        _routing = output.install()
    if _log_handler is None:
        # Errors go where the handler's prints go; the event log has them already.
        _log_handler = logging.StreamHandler(
            output.Routed("stderr", _routing.stderr.stream, record=False)
        )
        _log_handler.setFormatter(logging.Formatter("ws_notebook: %(message)s"))
        logger = logging.getLogger("ws_notebook")
        logger.addHandler(_log_handler)
        logger.setLevel(logging.INFO)  # errors, and what a watched folder's changes did
        logger.propagate = False
    if _tornado_logs is None and getattr(ipython, "kernel", None) is not None:
        _tornado_logs = _route_tornado_logs(_routing.stderr.stream)
    _watch_kernel_shutdown(getattr(ipython, "kernel", None))


def _watch_kernel_shutdown(kernel: Any) -> None:
    """Close clients with 1001 when the kernel is shut down or restarted, even mid-cell.

    ipykernel has no shutdown hook; its control thread calls ``do_shutdown`` (this instance's
    is wrapped, and given back on unload) while a cell may still block the main thread.
    """
    if kernel is None or "do_shutdown" in vars(kernel):
        return
    original = kernel.do_shutdown

    def do_shutdown(restart: bool) -> Any:
        api.going_away("kernel restarting" if restart else "kernel shutting down")
        return original(restart)

    kernel.do_shutdown = do_shutdown


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext ws_notebook``: close every client with 1001, free the port, forget endpoints,
    give back sys.stdout and sys.stderr."""
    global _log_handler, _routing, _tornado_logs
    for panel in panels():
        panel.close()
    api.reset()
    kernel = getattr(ipython, "kernel", None)
    if kernel is not None and "do_shutdown" in vars(kernel):
        del kernel.do_shutdown
    if _routing is not None:
        _routing.restore()
        _routing = None
    if _log_handler is not None:
        logger = logging.getLogger("ws_notebook")
        logger.removeHandler(_log_handler)
        logger.propagate = True
        _log_handler = None
    if _tornado_logs is not None:
        _tornado_logs()
        _tornado_logs = None
