"""The benchmarks still run: ``benchmarks/panel_load.py --quick`` goes through and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_panel_load_quick_runs_and_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "panel_load.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "BROKEN" not in result.stdout, output
    for figure in (
        "cell `1+1` latency p99 (ms)",
        "messages served (echoed back)",
        "messages/s served",
        "widget updates sent (comm_msg)",
        "kernel RSS before (MB)",
        "kernel RSS after 1 s settle (MB)",
        "cell latency p99, load with panel / idle",
        "messages/s served, with panel / without panel",
        "p99 cell latency < 100 ms",
    ):
        assert figure in result.stdout, output
