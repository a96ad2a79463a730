"""A second event loop, in a thread of its own, for endpoints whose handlers run while cells block.

An endpoint mounted with ``thread=True`` (``%%websocket NAME --thread``) is served here: its
connections are read, its handlers run and its replies are written on this thread, so it keeps
serving while a cell computes (a status feed, a proxy). Everything else stays on the kernel's
loop. Both share one port: the server looks at each new connection's request line (without
reading it) and hands those for threaded endpoints to this loop, where Tornado takes them as
usual (see ``Listener`` and ``Server.divert``).

What that means for handlers, as the README says: they run beside the notebook's code, so a
handler that changes notebook objects (a list a cell also appends to, a DataFrame) needs a lock,
and one that blocks holds up only this endpoint's clients (and other threaded endpoints').
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tornado.web import Application

from .listener import Listener

__all__ = ["EndpointThread"]

CLOSING_TIMEOUT = 2.0  # seconds stop() waits for clients to answer their close frames


class EndpointThread:
    """A thread running an asyncio loop and a Tornado HTTP server without a listening socket."""

    def __init__(self, application: Application, **http_options: Any) -> None:
        self._application = application
        self._http_options = http_options
        self._ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop  # both set by the thread before _ready
        self._http: Listener
        self._thread = threading.Thread(target=self._run, name="ws_notebook endpoints", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._http = Listener(self._application, **self._http_options)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def serve(self, connection: socket.socket, address: Any) -> None:
        """Take an accepted connection (from any thread): its request is still to be read."""
        self.loop.call_soon_threadsafe(self._http.handle_connection, connection, address)

    def stop(self, still_open: Callable[[], int], abort: Callable[[], None]) -> None:
        """Let closing handshakes finish (up to ``CLOSING_TIMEOUT``), then end the thread.

        ``still_open()`` counts this thread's open connections (called from the caller's
        thread); ``abort()`` drops those left, on this thread, before its loop stops.
        """
        if not self._thread.is_alive():
            return
        deadline = time.monotonic() + CLOSING_TIMEOUT
        while still_open() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.loop.call_soon_threadsafe(abort)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=CLOSING_TIMEOUT)
