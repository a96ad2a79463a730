"""SockJS conformance: the sockjs-protocol suite against ws_notebook's SockJS transports.

    python tests/conformance/sockjs_protocol.py --suite PATH/TO/sockjs-protocol [-v]

The suite is the SockJS project's own definition of the protocol, a Python 2 unittest module
(``sockjs-protocol.py``, from the ``sockjs/sockjs-protocol`` repository; get a checkout with git
and pass its folder, or set ``$SOCKJS_PROTOCOL_DIR``). It is not shipped here. What this does:

1. makes sure a Python 2.7 virtual environment with the suite's dependencies exists under a
   cache folder (``~/.cache/ws_notebook/sockjs-protocol``), made as ``autobahn.py`` makes its
   own (pyenv's Python 2.7.18 and ``virtualenv==20.21.1``);
2. serves, in this process on a thread of its own, the four services the suite expects
   (``echo`` with streaming responses cut at 4 KiB, ``close``, ``disabled_websocket_echo``,
   ``cookie_needed_echo``) with :class:`ws_notebook.sockjs.Service` on a ``ws_notebook.Server``
   (its listener, limits and error pages; every origin allowed, as the suite sends made-up ones);
3. runs the suite (or the test classes named with ``--tests``) against it and prints, per test
   class, what passed and what failed, marking the failures expected of a server that leaves out
   the ``iframe`` page and the ``jsonp``/``htmlfile`` transports (see ``ws_notebook/sockjs.py``)
   and Hixie-76 WebSockets (Tornado speaks RFC 6455 only).

Exit code: 0 when every failure is an expected one, 1 otherwise, 2 if the run broke.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(ROOT))

from tornado.web import Application  # noqa: E402

from ws_notebook.server import NotFound, Server  # noqa: E402
from ws_notebook.sockjs import Service, Session  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "autobahn_conformance", Path(__file__).with_name("autobahn.py")
)
assert _spec is not None and _spec.loader is not None
autobahn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(autobahn)

PINNED = ["unittest2==1.1.0", "ws4py==0.5.1", "websocket-client==0.59.0", "six==1.16.0"]
SUITE_FILES = ("sockjs-protocol.py", "utils.py", "httplib_fork.py")
# Failures expected, and why: what this server leaves out on purpose.
EXPECTED = {
    "IframePage": "no iframe page (it loads the SockJS client from elsewhere)",
    "HtmlFile": "no htmlfile transport (script requests carry no Origin)",
    "JsonPolling": "no jsonp transport (script requests carry no Origin)",
    "JsessionidCookie.test_htmlfile": "no htmlfile transport",
    "JsessionidCookie.test_jsonp": "no jsonp transport",
    "Websocket.test_haproxy": "Hixie-76 WebSockets (Tornado speaks RFC 6455 only)",
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "ws_notebook" / "sockjs-protocol"


def ensure_python2_env(python2: Path) -> Path:
    """The Python of a cached 2.7 environment with the suite's dependencies, made if missing."""
    cache = cache_dir()
    env = cache / "py27"
    stamp = env / "ws_notebook-pins.txt"
    wanted = "\n".join([str(python2), autobahn.VIRTUALENV, *PINNED]) + "\n"
    with autobahn._locked(cache):
        if stamp.is_file() and stamp.read_text() == wanted:
            return env / "bin" / "python"
        print(f"setting up the suite's Python 2.7 environment in {env} (once) ...", flush=True)
        shutil.rmtree(env, ignore_errors=True)
        bootstrap = cache / "virtualenv"
        if not (bootstrap / "bin" / "virtualenv").is_file():
            autobahn._run([sys.executable, "-m", "venv", str(bootstrap)], "creating a venv")
            autobahn._run(
                [str(bootstrap / "bin" / "pip"), "install", "--quiet", autobahn.VIRTUALENV],
                f"installing {autobahn.VIRTUALENV}",
            )
        autobahn._run(
            [str(bootstrap / "bin" / "virtualenv"), "--quiet", "-p", str(python2), str(env)],
            "creating the Python 2.7 virtualenv",
        )
        autobahn._run(
            [
                str(env / "bin" / "pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *PINNED,
            ],
            "installing the suite's dependencies",
        )
        stamp.write_text(wanted)
        return env / "bin" / "python"


class Echo:
    def __init__(self, session: Session) -> None:
        self.session = session

    def on_message(self, message: str | bytes) -> None:
        self.session.send(message)

    def on_close(self) -> None:
        pass


def close_at_once(session: Session) -> Echo:
    session.close(3000, "Go away!")
    return Echo(session)


class ConformanceServer(Server):
    """The real server (listener, limits, error pages) with the suite's four services."""

    def application(self) -> Application:
        services = [
            Service("/echo", Echo, response_limit=4096),
            Service("/close", close_at_once),
            Service("/disabled_websocket_echo", Echo, websocket=False),
            Service("/cookie_needed_echo", Echo, cookie_needed=True),
        ]
        limits = self.limits
        return Application(
            [route for service in services for route in service.routes()],
            default_handler_class=NotFound,
            websocket_max_message_size=limits.max_message_size,
            websocket_ping_interval=limits.ping_interval or None,
            websocket_ping_timeout=limits.ping_timeout or None,
        )


def serve_in_thread() -> tuple[int, asyncio.AbstractEventLoop]:
    """Start the conformance server on a loop of its own thread; its port and loop."""
    started: dict[str, object] = {}
    ready = threading.Event()

    async def run() -> None:
        for name in ("tornado.access", "tornado.general"):  # the suite's refusals, on purpose
            logging.getLogger(name).setLevel(logging.ERROR)
        server = ConformanceServer(allowed_origins=["*"])
        server.start()
        started["port"], started["loop"] = server.port, asyncio.get_running_loop()
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(run(),), daemon=True).start()
    if not ready.wait(10):
        raise RuntimeError("the conformance server did not start")
    return started["port"], started["loop"]  # type: ignore[return-value]


def run_suite(python: Path, suite: Path, port: int, tests: list[str], verbose: bool) -> str:
    env = {**os.environ, "SOCKJS_URL": f"http://127.0.0.1:{port}", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [str(python), "sockjs-protocol.py", "-v", *tests],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if verbose:
        print(done.stderr)
    return done.stderr


RESULT = re.compile(r"^(test\w+) \(__main__\.(\w+)\) \.\.\. (ok|FAIL|ERROR|skipped.*|expected.*)$")


def summarize(output: str) -> tuple[dict[str, Counter], list[tuple[str, str]]]:
    """Results per class, and the failures (test name, outcome)."""
    per_class: dict[str, Counter] = {}
    failures = []
    # A test with a docstring has it on a line of its own, before " ... ok".
    output = re.sub(r"\)\n[^\n]*? \.\.\. ", ") ... ", output)
    for line in output.splitlines():
        match = RESULT.match(line.strip())
        if match is None:
            continue
        name, cls, outcome = match.groups()
        outcome = "passed" if outcome == "ok" else outcome.split()[0].lower()
        per_class.setdefault(cls, Counter())[outcome] += 1
        if outcome in ("fail", "error"):
            failures.append((f"{cls}.{name}", outcome))
    return per_class, failures


def expected(test: str) -> str | None:
    return EXPECTED.get(test) or EXPECTED.get(test.split(".")[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=os.environ.get("SOCKJS_PROTOCOL_DIR"))
    parser.add_argument("--tests", nargs="*", default=[], help="test classes or Class.test names")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the suite's output")
    args = parser.parse_args(argv)
    if args.suite is None or not all((args.suite / f).is_file() for f in SUITE_FILES):
        print(
            f"BROKEN: --suite must name a sockjs-protocol checkout (with {', '.join(SUITE_FILES)})"
        )
        return 2
    python2 = autobahn.find_python2()
    if python2 is None:
        print(
            f"BROKEN: no Python {autobahn.PYTHON2_VERSION} (pyenv install {autobahn.PYTHON2_VERSION})"
        )
        return 2
    python = ensure_python2_env(python2)
    port, _loop = serve_in_thread()
    started = time.monotonic()
    output = run_suite(python, args.suite, port, args.tests, args.verbose)
    seconds = time.monotonic() - started
    per_class, failures = summarize(output)
    if not per_class:
        print("BROKEN: the suite ran no test:\n" + output[-3000:])
        return 2
    totals: Counter = Counter()
    print(f"{'class':<20} passed  failed")
    for cls, counts in per_class.items():
        totals.update(counts)
        failed = counts["fail"] + counts["error"]
        print(f"{cls:<20} {counts['passed']:>6}  {failed:>6}")
    unexpected = [(test, outcome) for test, outcome in failures if expected(test) is None]
    print(
        f"{sum(totals.values())} tests in {seconds:.1f} s: {totals['passed']} passed, "
        f"{len(failures)} failed ({len(failures) - len(unexpected)} expected, "
        f"{len(unexpected)} unexpected)"
    )
    for test, outcome in failures:
        why = expected(test)
        print(
            f"  {'expected' if why else 'UNEXPECTED'} {outcome}: {test}"
            + (f" ({why})" if why else "")
        )
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
