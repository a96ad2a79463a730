"""RFC 6455 conformance: ``tests/conformance/autobahn.py --quick`` against a ws_notebook endpoint.

The quick run is Autobahn|Testsuite's fuzzing client, groups 1-7 and 10 (247 cases, about 11 s,
plus about 30 s the first time to set up its Python 2.7 environment in the cache). It runs once
per module; each test below reads its results. Every case must be OK, NON-STRICT or
INFORMATIONAL (bare Tornado fails 7.9.1-7.9.9: it echoes invalid close codes instead of closing
with 1002; ws_notebook's protocol checks them).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "conformance" / "autobahn.py"

_spec = importlib.util.spec_from_file_location("autobahn_conformance", SCRIPT)
assert _spec is not None and _spec.loader is not None
autobahn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(autobahn)

pytestmark = [
    pytest.mark.slow,  # one run of Autobahn|Testsuite's quick cases, for all the tests
    pytest.mark.skipif(
        autobahn.find_python2() is None,
        reason=f"pyenv's Python {autobahn.PYTHON2_VERSION} is missing: Autobahn|Testsuite's "
        f"wstest is Python 2 code (pyenv install {autobahn.PYTHON2_VERSION})",
    ),
]

QUICK_GROUPS = [pattern.split(".")[0] for pattern in autobahn.QUICK_CASES]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    results = tmp_path_factory.mktemp("autobahn") / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--server",
            "ws_notebook",
            "--json",
            str(results),
            "--report-dir",
            str(ROOT / "test-artifacts" / "autobahn-quick"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1), f"the conformance run broke:\n{output}"
    found = json.loads(results.read_text())["servers"]["ws_notebook"]
    return {"returncode": done.returncode, "stdout": done.stdout, "output": output, **found}


def _describe(run: dict[str, Any], cases: list[str]) -> str:
    return "\n".join(
        f"{case}: {run['cases'][case]['behavior']} (close {run['cases'][case]['behaviorClose']}, "
        f"server's close code {run['cases'][case]['remoteCloseCode']})"
        for case in cases
    )


def test_every_quick_case_ran_and_the_table_is_printed(quick_run: dict[str, Any]) -> None:
    assert len(quick_run["cases"]) == 247, quick_run["output"]
    assert quick_run["counts"]["UNIMPLEMENTED"] == 0
    for behavior in autobahn.BEHAVIORS:
        assert behavior in quick_run["stdout"]
    assert "ws_notebook FAILED (" in quick_run["stdout"]


@pytest.mark.parametrize("group", QUICK_GROUPS)
def test_group_passes(quick_run: dict[str, Any], group: str) -> None:
    """Every case of the group is OK, NON-STRICT or INFORMATIONAL (known failures aside)."""
    cases = [case for case in quick_run["cases"] if case.split(".")[0] == group]
    assert cases, f"no case of group {group} ran"
    failing = [case for case in cases if quick_run["cases"][case]["behavior"] not in PASSING]
    assert not failing, _describe(quick_run, failing)


def test_invalid_close_codes_are_answered_with_1002(quick_run: dict[str, Any]) -> None:
    """7.9.x: where bare Tornado echoes 0, 999, 1005, ... back, the server closes with 1002."""
    cases = [f"7.9.{n}" for n in range(1, 10)]
    assert [quick_run["cases"][case]["behavior"] for case in cases] == ["OK"] * 9, _describe(
        quick_run, cases
    )
    assert {quick_run["cases"][case]["remoteCloseCode"] for case in cases} == {1002}


def test_exit_code_says_whether_a_case_failed(quick_run: dict[str, Any]) -> None:
    assert quick_run["returncode"] == (1 if quick_run["failed"] else 0), quick_run["output"]
