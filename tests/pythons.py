"""Finding an interpreter of a given Python version: this one, one on PATH, or one of pyenv's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` ("3.11"), or None if this machine has none."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(str(p) for p in root.glob(f"versions/{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        # pyenv's shims exist for every version it has, and fail for those not selected.
        if subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return None


if __name__ == "__main__":  # .ci/run: python3 tests/pythons.py 3.10
    found = find_python(sys.argv[1])
    print(found or "", end="")
    sys.exit(0 if found else 1)
