"""``%%websocket`` and ``%websocket``: a thin IPython layer over :mod:`ws_notebook.api`.

The cell magic defines an endpoint from the cell's handler functions; the line magic manages
endpoints. Everything here parses arguments and formats output; the work is done by the API.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import logging
import sys
from collections.abc import Sequence
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display
from IPython.utils.process import arg_split
from IPython.utils.text import dedent

from . import api
from .browser import BrowserClient
from .descriptor import Descriptor, DescriptorError, check_endpoint_name
from .handlers import HandlerError, Handlers
from .project import ProjectError
from .registry import UnknownEndpoint
from .rows import CLIENT_COLUMNS, EVENT_COLUMNS, client_row, event_row
from .server import SERVICE_PATH, V4_SERVICE_PATH, ServerError
from .widgets import EndpointPanel, panels

__all__ = ["WebSocketMagics", "load_ipython_extension", "unload_ipython_extension"]

# Errors a user causes with bad input: shown as one clear message, not a traceback.
_USER_ERRORS = (DescriptorError, HandlerError, ProjectError, UnknownEndpoint, ServerError)


def _cell_parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(
        prog="%%websocket",
        description="Define an endpoint whose handlers are the cell's functions: on_open(client), "
        "on_message(message, client), on_error(error, client), on_close(client) (any subset, "
        "async def allowed; codbex's onOpen, onMessage, onError, onClose work too). "
        "Running the cell again replaces the handlers in place; open connections stay open.",
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
    return parser


def _line_parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(prog="%websocket", description="Manage WebSocket endpoints.")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=MagicArgumentParser
    )
    commands.add_parser("list", help="table of endpoints")
    url = commands.add_parser("url", help="the ws:// URL of an endpoint, and its path via Jupyter")
    url.add_argument("name")
    stop = commands.add_parser(
        "stop", help="unmount NAME (clients closed, 1001), or stop the server"
    )
    stop.add_argument("name", nargs="?")
    start = commands.add_parser("start", help="start the server (endpoints stay mounted)")
    start.add_argument("--port", type=int, default=None)
    start.add_argument("--host", default=None)
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
    clients = commands.add_parser("clients", help="table of open connections")
    clients.add_argument("name", nargs="?")
    send = commands.add_parser("send", help="send MESSAGE to every client of NAME")
    send.add_argument("name")
    send.add_argument("message", nargs="+")
    log = commands.add_parser("log", help="the event log of NAME, or of every endpoint")
    log.add_argument("name", nargs="?")
    log.add_argument("-n", "--last", type=int, default=50, help="how many events (default 50)")
    load = commands.add_parser("load", help="mount a .websocket file, or every one under a folder")
    load.add_argument("path")
    load.add_argument(
        "--watch", action="store_true", help="reload as files change (until %%websocket unwatch)"
    )
    unwatch = commands.add_parser("unwatch", help="stop watching PATH (or every folder)")
    unwatch.add_argument("path", nargs="?")
    export = commands.add_parser("export", help="write NAME as DIR/NAME.websocket + handler module")
    export.add_argument("name")
    export.add_argument("directory")
    browser = commands.add_parser("browser", help="a WebSocket client in this page, to NAME")
    browser.add_argument("name")
    browser.add_argument("--mode", choices=["auto", "direct", "proxy"], default="auto")
    monitor = commands.add_parser("monitor", help="live panel of NAME, or of every endpoint")
    monitor.add_argument("name", nargs="?")
    return parser


class Table:
    """Rows shown as an HTML table in a notebook and as aligned text elsewhere."""

    def __init__(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str = ""
    ) -> None:
        self.columns = list(columns)
        self.rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
        self.note = note

    def __repr__(self) -> str:
        widths = [
            max(len(column), *(len(row[i]) for row in self.rows)) if self.rows else len(column)
            for i, column in enumerate(self.columns)
        ]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [self.columns, *self.rows]
        ]
        if not self.rows:
            lines.append("(none)")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in self.rows
        )
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _parse(parser: MagicArgumentParser, line: str) -> Any:
    """Split as a shell would (quotes group words and are removed), then parse."""
    return parser.parse_args(arg_split(line, posix=True))


@magics_class
class WebSocketMagics(Magics):
    @line_cell_magic
    def websocket(self, line: str, cell: str | None = None) -> Any:
        try:
            if cell is None:
                return self._command(line)
            return self._define(line, cell)
        except _USER_ERRORS as error:
            raise UsageError(str(error)) from None

    # --- %%websocket NAME ---------------------------------------------------------------

    def _define(self, line: str, cell: str) -> None:
        args = _parse(_cell_parser(), line)
        try:
            check_endpoint_name(args.name)
        except DescriptorError as error:
            raise UsageError(f"%%websocket: {error}") from None
        where = self._cell_reference()
        filename = f"<%%websocket {args.name} {where}>"
        handlers = Handlers.from_source(cell, filename, fallback=self.shell.user_ns)
        for warning in handlers.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        descriptor = Descriptor.new(
            args.name,
            handler=where,
            location=where,
            description=args.description,
            created_by=args.created_by,
        )
        server = api.start(args.host, args.port)  # first: a busy port must not leave it mounted
        mounted = api.mount(descriptor, handlers, log_capacity=args.log_capacity)
        url = server.url(args.name)
        defined = ", ".join(handlers.defined) or "none: only broadcast will reach clients"
        previous = mounted.replaced
        if previous is None:
            print(f"{args.name}: serving at {url} (handlers: {defined})")
        elif previous.location != descriptor.location:
            print(
                f"{args.name}: replaced the endpoint defined by {previous.location}; "
                f"{len(mounted.endpoint.clients)} open connections now use this cell's handlers "
                f"({defined}), at {url}"
            )
        else:
            print(
                f"{args.name}: handlers updated in place ({defined}); "
                f"{len(mounted.endpoint.clients)} open connections kept, at {url}"
            )
        if args.panel:
            display(EndpointPanel(args.name, origin=where))

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
        rows = [
            (
                e.name,
                server.url(e.name) if server.running else "(stopped)",
                len(e.clients),
                f"{e.messages_in} in / {e.messages_out} out",
                e.descriptor.description,
                e.descriptor.created_by,
                e.descriptor.created_at,
            )
            for e in server.registry
        ]
        columns = [
            "endpoint",
            "url",
            "clients",
            "messages",
            "description",
            "createdBy",
            "createdAt",
        ]
        return Table(columns, rows)

    def _url(self, args: Any) -> None:
        print(api.url(args.name))
        print(
            f"via Jupyter's proxy (JupyterHub, Binder): {api.proxy_path(args.name)} on the notebook's host"
        )

    def _browser(self, args: Any) -> None:
        display(BrowserClient(args.name, mode=args.mode))

    def _stop(self, args: Any) -> None:
        if args.name:
            endpoint = api.unmount(args.name)
            print(f"{args.name}: unmounted, {len(endpoint.clients)} clients closed (1001)")
            return
        clients = len(api.clients())
        api.stop()
        print(f"server stopped, {clients} clients closed (1001); %websocket start serves again")

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
        if server.token is not None:
            print(
                "clients must send the token (Authorization: Bearer TOKEN, or ?token=TOKEN); "
                "ws_notebook.url(NAME, with_token=True) gives a URL with it. It is not shown "
                "here, so it stays out of the saved notebook."
            )

    def _clients(self, args: Any) -> Table:
        return Table(CLIENT_COLUMNS, [client_row(c) for c in api.clients(args.name)])

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
        for endpoint in api.load_descriptor(args.path, watch=args.watch):
            where = endpoint.descriptor.location or args.path
            print(f"{endpoint.name}: serving at {api.url(endpoint.name)} (from {where})")
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
        print(f"{args.name}: wrote {path} and {path.with_suffix('.py')}")


WebSocketMagics.websocket.__doc__ = dedent(
    "Define WebSocket endpoints from cells, and manage them.\n\n"
    + _cell_parser().format_help()
    + "\n"
    + _line_parser().format_help()
    + f"\nClients connect to ws://HOST:PORT{SERVICE_PATH}NAME (or {V4_SERVICE_PATH}NAME).\n"
)

_log_handler: logging.Handler | None = None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ws_notebook``: register the magics and show handler errors in the notebook."""
    global _log_handler
    ipython.register_magics(WebSocketMagics)
    if _log_handler is None:
        _log_handler = logging.StreamHandler(sys.stderr)
        _log_handler.setFormatter(logging.Formatter("ws_notebook: %(message)s"))
        logger = logging.getLogger("ws_notebook")
        logger.addHandler(_log_handler)
        logger.setLevel(logging.INFO)  # errors, and what a watched folder's changes did
        logger.propagate = False


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext ws_notebook``: close every client with 1001, free the port, forget endpoints."""
    global _log_handler
    for panel in panels():
        panel.close()
    api.reset()
    if _log_handler is not None:
        logger = logging.getLogger("ws_notebook")
        logger.removeHandler(_log_handler)
        logger.propagate = True
        _log_handler = None
