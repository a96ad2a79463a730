"""Soak: ``benchmarks/soak.py --quick`` (8 s, 50 client loops, 1 slow reader, ~12 s in all).

The server runs in its own process; the script counts its fds in /proc and asks it for its
clients, asyncio tasks and RSS over a pipe. It runs once per module; each test reads one of its
checks, so a failure says which property broke and shows the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # runs benchmarks/soak.py

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("soak")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--json",
            str(folder / "soak.json"),
            "--server-log",
            str(folder / "server.log"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), f"the soak run broke:\n{done.stdout}{done.stderr}"
    found = json.loads((folder / "soak.json").read_text())
    found["stdout"] = done.stdout
    return found


def check(soak: dict[str, Any], *names: str) -> None:
    for name in names:
        assert soak["checks"][name], f"{name}: FAIL\n{soak['stdout']}"


def test_the_run_did_what_it_should(soak: dict[str, Any]) -> None:
    figures = soak["figures"]
    assert figures["sessions"].get("good", 0) > 100, soak["stdout"]
    assert figures["sessions"].get("abrupt", 0) > 0, soak["stdout"]
    assert figures["sessions"].get("oversize", 0) > 0, soak["stdout"]
    assert figures["sessions"].get("slow") == 1, soak["stdout"]


def test_no_connection_leak(soak: dict[str, Any]) -> None:
    check(
        soak,
        "no connection left (0 clients)",
        "server fds back to baseline (/proc)",
        "every connection closed on the server",
    )


def test_no_task_leak(soak: dict[str, Any]) -> None:
    check(soak, "asyncio tasks back to baseline")


def test_memory_back_near_its_start(soak: dict[str, Any]) -> None:
    check(soak, "RSS back near its start")


def test_every_well_behaved_message_answered(soak: dict[str, Any]) -> None:
    check(soak, "every well-behaved message answered")


def test_oversize_message_closes_with_1009(soak: dict[str, Any]) -> None:
    check(soak, "oversize messages closed with 1009")
    assert set(soak["figures"]["close codes recorded by the server, by role"]["oversize"]) == {
        "1009"
    }


def test_slow_reader_is_disconnected(soak: dict[str, Any]) -> None:
    check(soak, "slow readers disconnected by the server")
    assert soak["figures"]["close codes recorded by the server, by role"]["slow"] == {"1008": 1}


def test_abrupt_disconnects_recorded_without_close_code(soak: dict[str, Any]) -> None:
    closes = soak["figures"]["close codes recorded by the server, by role"]["abrupt"]
    assert set(closes) == {"None"}, soak["stdout"]


def test_no_unretrieved_task_exceptions(soak: dict[str, Any]) -> None:
    check(soak, "no unretrieved task exceptions on the server")


def test_server_process_exits_cleanly(soak: dict[str, Any]) -> None:
    check(soak, "server process exited cleanly")
