"""WebSocket conformance: the Autobahn|Testsuite fuzzing client against a ws_notebook echo endpoint.

    python tests/conformance/autobahn.py [--quick] [--cases 1.*,7.9.*] [--server ws_notebook]

What it does:

1. makes sure a Python 2.7 virtual environment with Autobahn|Testsuite (``wstest``) exists under
   a cache folder (``$WS_NOTEBOOK_AUTOBAHN_CACHE``, else ``~/.cache/ws_notebook/autobahn``),
   creating it if it is missing or does not hold exactly the pinned set below. ``wstest`` is
   Python 2 code: the environment uses pyenv's Python 2.7.18 (``--python2`` to point elsewhere)
   and is made by ``virtualenv==20.21.1`` (later versions cannot create 2.7 environments), which
   is itself installed in a small Python 3 venv beside it. Setting it up takes about 15 s, once;
2. serves, in this process on one asyncio loop, a ws_notebook echo endpoint (``ws_notebook.Server``
   with a ``Registry`` and an echo handler, plain Python API) and, for comparison, a bare Tornado
   ``WebSocketHandler`` echo server, both on 127.0.0.1 with the maximum message size raised to
   64 MiB (cases 9.1.6 and 9.2.6 send 16 MiB messages, Tornado's default limit is 10 MiB);
3. runs ``wstest -m fuzzingclient`` against each in turn, each run bounded by a timeout;
4. reads each report's ``index.json`` and prints, per server, how many cases ended OK /
   NON-STRICT / INFORMATIONAL / UNIMPLEMENTED / FAILED, and which ones FAILED.

The full run covers groups 1-7, 9 and 10 (301 cases, about 20 s per server); ``--quick`` leaves
out group 9 (the large-message performance cases, about 11 s per server). The HTML reports land
in ``test-artifacts/autobahn/`` (``--report-dir`` to change it); ``--json PATH`` also writes the
results as JSON. The exit code is 1 if ws_notebook FAILED any of the cases run, 2 if the run
itself broke (no environment, a timeout, no report), 0 otherwise; bare Tornado's results never
change it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(ROOT))

# The set measured to work with Python 2.7.18 (see shared/reference/autobahn.md).
VIRTUALENV = "virtualenv==20.21.1"
PINNED = [
    "autobahntestsuite==0.8.2",
    "autobahn==0.10.9",
    "Twisted==20.3.0",
    "txaio==2.1.0",
    "six==1.16.0",
    "zope.interface==5.5.2",
    "pyOpenSSL==21.0.0",
    "cryptography==3.3.2",
    "service-identity==21.1.0",
    "attrs==21.4.0",
    "Automat==22.10.0",
    "hyperlink==21.0.0",
    "incremental==22.10.0",
    "constantly==15.1.0",
    "klein==20.6.0",
    "Werkzeug==1.0.1",
    "Jinja2==2.11.3",
    "MarkupSafe==1.1.1",
    "ujson==2.0.3",
    "wsaccel==0.6.6",
    "PyHamcrest==1.10.1",
    "Tubes==0.2.1",
    "unittest2==1.1.0",
    "traceback2==1.4.0",
    "linecache2==1.0.0",
    "enum34==1.1.10",
    "ipaddress==1.0.23",
    "typing==3.10.0.0",
    "pyasn1==0.5.1",
    "pyasn1-modules==0.3.0",
    "cffi==1.15.1",
    "pycparser==2.21",
    "idna==2.10",
]
PYTHON2_VERSION = "2.7.18"

FULL_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
QUICK_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]
BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
ENDPOINT = "echo"
SERVERS = ("ws_notebook", "tornado")


class SetupError(RuntimeError):
    """The wstest environment cannot be made (no Python 2.7, no network, a failed install)."""


# --- the Python 2.7 environment with wstest ---------------------------------------------------


def cache_dir() -> Path:
    override = os.environ.get("WS_NOTEBOOK_AUTOBAHN_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "ws_notebook" / "autobahn"


def find_python2() -> Path | None:
    """pyenv's Python 2.7.18, or None."""
    roots = [os.environ.get("PYENV_ROOT"), "~/.pyenv"]
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=10, check=True
            )
            roots.insert(0, found.stdout.strip())
    for root in roots:
        if not root:
            continue
        candidate = Path(root).expanduser() / "versions" / PYTHON2_VERSION / "bin" / "python2.7"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One setup at a time (two test processes, or a script run beside the tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], what: str, timeout: float = 600) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise SetupError(
            f"{what}: no result after {timeout:.0f} s ({' '.join(command)})"
        ) from error
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise SetupError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{tail}")


def _stamp(python2: Path) -> str:
    return "\n".join([f"python2 {python2}", VIRTUALENV, *PINNED]) + "\n"


def _env_is_valid(env: Path, python2: Path) -> bool:
    stamp = env / "ws_notebook-pins.txt"
    wstest = env / "bin" / "wstest"
    if not (stamp.is_file() and wstest.is_file()) or stamp.read_text() != _stamp(python2):
        return False
    check = "import autobahntestsuite, autobahn, twisted, wsaccel"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [str(env / "bin" / "python"), "-W", "ignore", "-c", check], timeout=60
        )
        return done.returncode == 0
    return False


def ensure_wstest(python2: Path, cache: Path | None = None, log: Any = print) -> Path:
    """The ``wstest`` of a valid cached environment, made first if needed."""
    cache = cache_dir() if cache is None else cache
    env = cache / "py27"
    with _locked(cache):
        if _env_is_valid(env, python2):
            return env / "bin" / "wstest"
        started = time.monotonic()
        log(f"setting up Autobahn|Testsuite in {env} (Python {PYTHON2_VERSION}, once) ...")
        shutil.rmtree(env, ignore_errors=True)
        bootstrap = cache / "virtualenv"
        if not (bootstrap / "bin" / "virtualenv").is_file():
            shutil.rmtree(bootstrap, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(bootstrap)], "creating a venv for virtualenv")
            _run(
                [str(bootstrap / "bin" / "pip"), "install", "--quiet", VIRTUALENV],
                f"installing {VIRTUALENV}",
            )
        _run(
            [str(bootstrap / "bin" / "virtualenv"), "--quiet", "-p", str(python2), str(env)],
            "creating the Python 2.7 virtualenv",
        )
        _run(
            [
                str(env / "bin" / "pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-python-version-warning",
                *PINNED,
            ],
            "installing Autobahn|Testsuite's pinned set",
        )
        (env / "ws_notebook-pins.txt").write_text(_stamp(python2))
        if not _env_is_valid(env, python2):
            raise SetupError(f"{env}: installed, but wstest does not import")
        log(f"... done in {time.monotonic() - started:.1f} s")
        return env / "bin" / "wstest"


# --- the servers under test --------------------------------------------------------------------


def conformance_server(max_message_size: int = MAX_MESSAGE_SIZE) -> Any:
    """A ws_notebook Server with an ``echo`` endpoint, its message size limit raised."""
    from ws_notebook import Descriptor, Handlers, Registry, Server

    registry = Registry()
    registry.mount(
        Descriptor.new(ENDPOINT, handler="conformance", created_by="autobahn"),
        Handlers.from_namespace({"on_message": lambda message, client: client.send(message)}),
    )
    return Server(registry, host="127.0.0.1", **server_limit_options(max_message_size))


def server_limit_options(max_message_size: int) -> dict[str, Any]:
    """The keyword arguments that give a ``ws_notebook.Server`` this maximum message size.

    ``limits=Limits(max_message_size=...)`` where the Server has it (with a send queue big
    enough to echo the largest message back), else a ``max_message_size``
    argument, else Tornado's ``websocket_max_message_size`` application setting.
    """
    from ws_notebook import server as server_module

    options = inspect.signature(server_module.Server.__init__).parameters
    if "limits" in options and hasattr(server_module, "Limits"):
        fields = {field.name for field in dataclasses.fields(server_module.Limits)}
        limits = {"max_message_size": max_message_size}
        if "max_send_queue" in fields:  # an echo of the largest message must fit in the queue
            limits["max_send_queue"] = 2 * max_message_size
        return {"limits": server_module.Limits(**limits)}
    if "max_message_size" in options:
        return {"max_message_size": max_message_size}
    return {"websocket_max_message_size": max_message_size}


def tornado_echo_server(max_message_size: int = MAX_MESSAGE_SIZE) -> tuple[Any, int]:
    """Bare Tornado: a ``WebSocketHandler`` that echoes, nothing else. Returns (server, port)."""
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from tornado.web import Application
    from tornado.websocket import WebSocketHandler

    class Echo(WebSocketHandler):
        def on_message(self, message: str | bytes) -> None:
            self.write_message(message, binary=isinstance(message, bytes))

    app = Application([(r"/echo", Echo)], websocket_max_message_size=max_message_size)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


# --- running wstest and reading its report ------------------------------------------------------


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


async def fuzz(
    wstest: Path, agent: str, url: str, cases: list[str], outdir: Path, timeout: float
) -> dict[str, Any]:
    """Run the fuzzing client against one server; its per-case results from ``index.json``."""
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    started = time.monotonic()
    with open(outdir / "wstest.log", "wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(wstest),
            "-m",
            "fuzzingclient",
            "-s",
            str(spec_path),
            cwd=outdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            code = await asyncio.wait_for(process.wait(), timeout)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            return {"agent": agent, "url": url, "error": f"wstest still running after {timeout} s"}
    duration = time.monotonic() - started
    index = outdir / "index.json"
    if not index.is_file():
        tail = (outdir / "wstest.log").read_text(errors="replace").splitlines()[-20:]
        return {
            "agent": agent,
            "url": url,
            "error": f"wstest exited {code} without a report; its log ends:\n" + "\n".join(tail),
        }
    report = json.loads(index.read_text())[agent]
    results = {
        case: {
            "behavior": found["behavior"],
            "behaviorClose": found.get("behaviorClose"),
            "remoteCloseCode": found.get("remoteCloseCode"),
        }
        for case, found in sorted(report.items(), key=lambda item: case_key(item[0]))
    }
    counts = {behavior: 0 for behavior in BEHAVIORS}
    for found in results.values():
        counts[found["behavior"]] = counts.get(found["behavior"], 0) + 1
    return {
        "agent": agent,
        "url": url,
        "duration_s": round(duration, 1),
        "counts": counts,
        "failed": [case for case, found in results.items() if found["behavior"] == "FAILED"],
        "cases": results,
        "report": str(outdir / "index.html"),
    }


async def run(args: argparse.Namespace, wstest: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    server = conformance_server()
    server.start()
    tornado_http, tornado_port = tornado_echo_server()
    urls = {
        "ws_notebook": server.url(ENDPOINT),
        "tornado": f"ws://127.0.0.1:{tornado_port}/echo",
    }
    try:
        for agent in args.server:
            results[agent] = await fuzz(
                wstest, agent, urls[agent], args.cases, args.report_dir / agent, args.timeout
            )
    finally:
        server.stop()
        tornado_http.stop()
    return results


def print_table(results: dict[str, dict[str, Any]], cases: list[str]) -> None:
    agents = list(results)
    width = max(14, *(len(agent) + 2 for agent in agents))
    print(f"\nAutobahn|Testsuite fuzzingclient, cases {', '.join(cases)}")
    print(f"{'behavior':<16}" + "".join(f"{agent:>{width}}" for agent in agents))
    for behavior in BEHAVIORS:
        row = "".join(
            f"{results[agent].get('counts', {}).get(behavior, '-')!s:>{width}}" for agent in agents
        )
        print(f"{behavior:<16}{row}")
    total = "".join(f"{len(results[agent].get('cases', {}))!s:>{width}}" for agent in agents)
    print(f"{'cases':<16}{total}")
    seconds = "".join(f"{results[agent].get('duration_s', '-')!s:>{width}}" for agent in agents)
    print(f"{'seconds':<16}{seconds}")
    for agent in agents:
        found = results[agent]
        if "error" in found:
            print(f"\n{agent}: RUN BROKEN: {found['error']}")
            continue
        failed = found["failed"]
        print(f"\n{agent} FAILED ({len(failed)}): {', '.join(failed) if failed else 'none'}")
        for case in failed:
            detail = found["cases"][case]
            print(
                f"  {case}: close {detail['behaviorClose']}, "
                f"server's close code {detail['remoteCloseCode']}"
            )
        print(f"  report: {found['report']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="groups 1-7 and 10, without the slow group 9"
    )
    parser.add_argument(
        "--cases", help="comma-separated case patterns (e.g. '1.*,7.9.*'); overrides --quick"
    )
    parser.add_argument(
        "--server",
        action="append",
        choices=SERVERS,
        help="which server(s) to fuzz; repeat for both (default: both)",
    )
    parser.add_argument("--timeout", type=float, help="seconds allowed per server's wstest run")
    parser.add_argument("--report-dir", type=Path, default=ROOT / "test-artifacts" / "autobahn")
    parser.add_argument("--json", type=Path, help="also write the results here, as JSON")
    parser.add_argument("--python2", type=Path, help=f"Python {PYTHON2_VERSION} (default: pyenv's)")
    parser.add_argument(
        "--setup-only", action="store_true", help="make the wstest environment, run nothing"
    )
    args = parser.parse_args(argv)
    if args.cases:
        args.cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    else:
        args.cases = QUICK_CASES if args.quick else FULL_CASES
    args.server = args.server or list(SERVERS)
    if args.timeout is None:
        args.timeout = 90.0 if args.quick else 240.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python2 = args.python2 or find_python2()
    if python2 is None or not Path(python2).is_file():
        print(
            f"BROKEN: no Python {PYTHON2_VERSION} (pyenv install {PYTHON2_VERSION}, or --python2)"
        )
        return 2
    try:
        wstest = ensure_wstest(Path(python2))
    except SetupError as error:
        print(f"BROKEN: {error}")
        return 2
    if args.setup_only:
        print(wstest)
        return 0
    results = asyncio.run(run(args, wstest))
    print_table(results, args.cases)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cases": args.cases, "servers": results}, indent=2))
    if any("error" in found for found in results.values()):
        return 2
    ours = results.get("ws_notebook")
    if ours is not None and ours["failed"]:
        print(f"\nws_notebook FAILED {len(ours['failed'])} case(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
