"""The npm clients codbex front ends use, installed once into a cache folder, and a way to run
``tests/node/stomp_client.cjs`` with them.

``node_modules()`` installs the pinned packages with npm from the npm registry into
``$WS_NOTEBOOK_NPM_CACHE`` (else ``~/.cache/ws_notebook/npm``) unless they are there already
(about 3 s, once), and returns the ``node_modules`` folder; without npm and Node it skips the
test, saying so. The browser test loads the same packages' browser builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PACKAGES = {
    "sockjs-client": "1.6.1",  # SockJS's client (codbex front ends load sockjs 0.3.4 / 1.x)
    "@stomp/stompjs": "7.5.0",  # today's STOMP client
    "stompjs": "2.3.3",  # stomp.js 2.3.3, the one the platform's test project ships
    "ws": "8.18.3",  # a plain WebSocket in Node 20
}
HELPER = Path(__file__).with_name("node") / "stomp_client.cjs"


def cache_dir() -> Path:
    override = os.environ.get("WS_NOTEBOOK_NPM_CACHE")
    if override:
        return Path(override).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "ws_notebook" / "npm"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _installed(modules: Path) -> bool:
    for name, version in PACKAGES.items():
        manifest = modules / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text()).get("version") != version:
            return False
    return True


def node_modules() -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip(
            "npm and Node are not installed (apt-get install nodejs npm): these tests drive the "
            "npm clients codbex front ends use, sockjs-client and @stomp/stompjs"
        )
    folder = cache_dir()
    modules = folder / "node_modules"
    with _locked(folder):
        if _installed(modules):
            return modules
        (folder / "package.json").write_text(
            json.dumps({"private": True, "dependencies": PACKAGES}, indent=2)
        )
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--omit=optional", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0 or not _installed(modules):
            raise AssertionError(f"npm install failed in {folder}:\n{done.stdout}{done.stderr}")
    return modules


async def run_client(modules: Path, **options: Any) -> list[dict[str, Any]]:
    """Run the Node client with these options; its events, once it exits (which must be 0)."""
    process = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node",
        str(HELPER),
        json.dumps(options),
        env={**os.environ, "NODE_PATH": str(modules)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    events = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    assert process.returncode == 0, f"node exited {process.returncode}: {events}\n{stderr.decode()}"
    return events
