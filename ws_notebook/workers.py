"""``ws-notebook serve DIR --workers N --broker URL``: N worker processes sharing one port.

The supervisor (this module) runs N copies of ``ws-notebook serve DIR ... --workers 1``, each in
a session of its own, with ``WS_NOTEBOOK_WORKER`` set: a worker then binds the port with
``SO_REUSEPORT`` (the kernel spreads new connections over them; Linux, BSDs, macOS) and joins
the broker, which makes them one server (``ws_notebook.broker``). Where the OS has no
``SO_REUSEPORT`` (or ``WS_NOTEBOOK_SHARED_SOCKET=1`` asks for it, to test this way anywhere),
the supervisor binds the port once and every worker serves on that listening socket, inherited
(``WS_NOTEBOOK_LISTEN_FDS``): the workers then take turns at ``accept``, as pre-forking servers
do. Worker 1 starts first, and the others once it says it serves (a byte on a pipe): a project
with problems, or a port in use, is reported once and nothing else starts. A worker that dies
later is logged and started again. SIGTERM or SIGINT is passed on once as SIGTERM: each worker
closes its clients with 1001; the supervisor exits 0 when all have stopped.

``--workers`` above 1 needs ``--broker`` (or ``$WS_NOTEBOOK_BROKER``): without a bus,
broadcasts, client lists and sends to an id would silently cover one worker's clients only.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from tornado.netutil import bind_sockets

from .broker import _safe

__all__ = [
    "SHARED_SOCKET_ENV",
    "WORKER_ENV",
    "WORKER_TOKEN_ENV",
    "inherited_sockets",
    "supervise",
    "tell_ready",
]

WORKER_ENV = "WS_NOTEBOOK_WORKER"  # set in a worker: its number (1..N)
WORKER_TOKEN_ENV = "WS_NOTEBOOK_WORKER_TOKEN"  # the token --token auto made, for every worker
SHARED_SOCKET_ENV = "WS_NOTEBOOK_SHARED_SOCKET"  # "1": one socket bound here, even with REUSEPORT
LISTEN_FDS_ENV = "WS_NOTEBOOK_LISTEN_FDS"  # set in a worker: the listening sockets it inherits
READY_FD_ENV = "WS_NOTEBOOK_READY_FD"  # set in worker 1: the pipe to write a byte to once serving
START_SECONDS = 30.0  # for worker 1 to listen
EARLY_EXIT_SECONDS = 5.0  # a worker failing (exit 1 or 2) sooner than this: startup failure
STOP_SECONDS = 10.0  # for the workers to close their clients and exit after SIGTERM
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _say(text: str) -> None:
    stamp = time.strftime(TIME_FORMAT)
    sys.stderr.write(f"{stamp} supervisor: {text}\n")
    sys.stderr.flush()


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def inherited_sockets() -> list[socket.socket]:
    """In a worker given the supervisor's listening sockets: those sockets (else none)."""
    fds = os.environ.get(LISTEN_FDS_ENV, "")
    sockets = [socket.socket(fileno=int(fd)) for fd in fds.split(",") if fd]
    for sock in sockets:
        sock.setblocking(False)
    return sockets


def tell_ready() -> None:
    """In worker 1: tell the supervisor it serves, so that it starts the others."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None:
        with os.fdopen(int(fd), "wb") as pipe:
            pipe.write(b"!")


class _Worker:
    def __init__(self, number: int, command: list[str], env: dict[str, str]) -> None:
        self.number = number
        self.command = command
        self.env = {**env, WORKER_ENV: str(number)}
        self._process: subprocess.Popen[bytes] | None = None
        self.started = 0.0  # time.monotonic() of the last start; 0: never started

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"worker {self.number} was never started")
        return self._process

    def start(self, pass_fds: Sequence[int] = ()) -> None:
        self._process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=[*pass_fds, *_listen_fds(self.env)],
        )
        self.started = time.monotonic()
        _say(f"worker {self.number} started (pid {self._process.pid})")

    def start_and_wait(self, stopping: list[int]) -> str:
        """Start, then wait until the worker says it serves: "ready", "exited" or "stopping"."""
        ready, tell = os.pipe()
        self.env[READY_FD_ENV] = str(tell)
        try:
            self.start(pass_fds=[tell])
        finally:
            os.close(tell)
            del self.env[READY_FD_ENV]
        deadline = time.monotonic() + START_SECONDS
        try:
            while not stopping and time.monotonic() < deadline:
                if select.select([ready], [], [], 0.05)[0]:
                    return "ready" if os.read(ready, 1) else "exited"  # EOF: it is gone
            return "stopping" if stopping else "late"
        finally:
            os.close(ready)


def _listen_fds(env: dict[str, str]) -> list[int]:
    return [int(fd) for fd in env.get(LISTEN_FDS_ENV, "").split(",") if fd]


def supervise(
    argv: Sequence[str], workers: int, broker: str, host: str, port: int, token: str | None
) -> int:
    """Run ``workers`` serve processes until SIGTERM/SIGINT; returns the exit code."""
    command = [sys.executable, "-m", "ws_notebook", *argv, "--workers", "1"]
    env = dict(os.environ, WS_NOTEBOOK_BROKER=broker)
    if token is not None:
        env[WORKER_TOKEN_ENV] = token
    shared: list[socket.socket] = []
    if os.environ.get(SHARED_SOCKET_ENV) == "1" or not hasattr(socket, "SO_REUSEPORT"):
        try:
            shared = bind_sockets(port, host)
        except OSError as error:
            _say(f"cannot listen on {host}:{port}: {error.strerror or error}")
            return 1
        env[LISTEN_FDS_ENV] = ",".join(str(sock.fileno()) for sock in shared)
    how = "one socket bound by the supervisor" if shared else "SO_REUSEPORT"
    stopping: list[int] = []

    def on_signal(number: int, _frame: object) -> None:
        stopping.append(number)

    previous = {n: signal.signal(n, on_signal) for n in (signal.SIGTERM, signal.SIGINT)}
    pool = [_Worker(number, command, env) for number in range(1, workers + 1)]
    try:
        first = pool[0]
        started = first.start_and_wait(stopping)
        if started == "exited":
            exit_code = first.process.wait()
            _say(f"worker 1 could not start ({_how(exit_code)}); nothing else was started")
            return exit_code if exit_code > 0 else 1
        if started != "ready":
            if started == "late":
                _say(f"worker 1 did not serve on {host}:{port} within {START_SECONDS:g} s")
            _stop(pool)
            return 0 if started == "stopping" else 1
        for worker in pool[1:]:
            worker.start()
        _say(f"{workers} workers serving on {host}:{port} ({how}), broker {_safe(broker)}")
        while not stopping:
            for worker in pool:
                code = worker.process.poll()
                if code is None:
                    continue
                early = time.monotonic() - worker.started < EARLY_EXIT_SECONDS
                if early and code in (1, 2):
                    _say(f"worker {worker.number} failed at start ({_how(code)}): stopping")
                    _stop(pool)
                    return code
                _say(
                    f"worker {worker.number} (pid {worker.process.pid}) died ({_how(code)}); "
                    "restarting it"
                )
                worker.start()
            time.sleep(0.1)
        _say(f"{signal.Signals(stopping[0]).name} received: stopping {workers} workers")
        _stop(pool)
        _say("stopped")
        return 0
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for sock in shared:
            sock.close()


def _stop(pool: list[_Worker]) -> None:
    running = [w for w in pool if w.started and w.process.poll() is None]
    for worker in running:
        worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for worker in running:
        try:
            worker.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say(f"worker {worker.number} did not stop in {STOP_SECONDS:g} s: killing it")
            worker.process.kill()
            worker.process.wait()
