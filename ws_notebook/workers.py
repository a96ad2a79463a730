"""``ws-notebook serve DIR --workers N --broker URL``: N worker processes sharing one port.

The supervisor (this module) runs N copies of ``ws-notebook serve DIR ... --workers 1``, each in
a session of its own, with ``WS_NOTEBOOK_WORKER`` set: a worker then binds the port with
``SO_REUSEPORT`` (the kernel spreads new connections over them; Linux, BSDs, macOS) and joins
the broker, which makes them one server (``ws_notebook.broker``). Worker 1 starts first: a
project with problems, or a port in use, is reported once and nothing else starts. A worker
that dies later is logged and started again. SIGTERM or SIGINT is passed on once as SIGTERM:
each worker closes its clients with 1001; the supervisor exits 0 when all have stopped.

``--workers`` above 1 needs ``--broker`` (or ``$WS_NOTEBOOK_BROKER``): without a bus,
broadcasts, client lists and sends to an id would silently cover one worker's clients only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from .broker import _safe

__all__ = ["WORKER_ENV", "WORKER_TOKEN_ENV", "supervise"]

WORKER_ENV = "WS_NOTEBOOK_WORKER"  # set in a worker: its number (1..N)
WORKER_TOKEN_ENV = "WS_NOTEBOOK_WORKER_TOKEN"  # the token --token auto made, for every worker
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


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Worker:
    def __init__(self, number: int, command: list[str], env: dict[str, str]) -> None:
        self.number = number
        self.command = command
        self.env = {**env, WORKER_ENV: str(number)}
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.started = time.monotonic()
        _say(f"worker {self.number} started (pid {self.process.pid})")


def supervise(
    argv: Sequence[str], workers: int, broker: str, host: str, port: int, token: str | None
) -> int:
    """Run ``workers`` serve processes until SIGTERM/SIGINT; returns the exit code."""
    command = [sys.executable, "-m", "ws_notebook", *argv, "--workers", "1"]
    env = dict(os.environ, WS_NOTEBOOK_BROKER=broker)
    if token is not None:
        env[WORKER_TOKEN_ENV] = token
    stopping: list[int] = []

    def on_signal(number: int, _frame: object) -> None:
        stopping.append(number)

    previous = {n: signal.signal(n, on_signal) for n in (signal.SIGTERM, signal.SIGINT)}
    pool = [_Worker(number, command, env) for number in range(1, workers + 1)]
    try:
        first = pool[0]
        first.start()
        deadline = time.monotonic() + START_SECONDS
        while not _listening(host, port):
            code = first.process.poll()
            if code is not None:
                _say(f"worker 1 could not start ({_how(code)}); nothing else was started")
                return code if code > 0 else 1
            if stopping or time.monotonic() > deadline:
                if not stopping:
                    _say(f"worker 1 did not listen on {host}:{port} within {START_SECONDS:g} s")
                _stop(pool)
                return 0 if stopping else 1
            time.sleep(0.05)
        for worker in pool[1:]:
            worker.start()
        _say(f"{workers} workers serving on {host}:{port}, broker {_safe(broker)}")
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


def _stop(pool: list[_Worker]) -> None:
    running = [w for w in pool if w.process is not None and w.process.poll() is None]
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
