"""The package type-checks clean under mypy with the configuration in pyproject.toml, so type
hints stay true as the code changes."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean() -> None:
    # No arguments: pyproject.toml's [tool.mypy] names the files, the Python version and the
    # untyped packages, so this run and `mypy` typed at the repository's root agree.
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
