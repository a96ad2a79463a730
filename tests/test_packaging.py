"""The package as users get it: a wheel built from the repository and installed, not editable,
in a fresh virtual environment, then used in a real kernel and from its ``ws-notebook`` script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager
from websockets.sync.client import connect

from .kernels import Kernel

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(900)]  # builds a wheel

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)]
    subprocess.run(build, check=True, timeout=300)
    (built,) = dist.glob("ws_notebook-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel (and a kernel to run it in) installed."""
    folder = tmp_path_factory.mktemp("wheel") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    install = [folder / "bin" / "python", "-m", "pip", "install", "-q", str(wheel), "ipykernel"]
    subprocess.run(install, check=True, timeout=600)
    return folder


def test_the_wheel_holds_the_package_its_schema_and_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "ws_notebook/websocket.schema.json" in names
    assert any(name.endswith("licenses/LICENSE") for name in names), names
    assert not any(name.startswith(("tests/", "notebooks/", "benchmarks/")) for name in names)
    assert wheel.name.startswith(f"ws_notebook-{VERSION}-")


@pytest.fixture
def kernel(venv: Path, tmp_path: Path) -> Iterator[Kernel]:
    """A kernel on the wheel's environment, started away from the repository (so the source
    tree is not importable from its working folder)."""
    manager = KernelManager(kernel_name="python3")
    manager.kernel_spec.argv[0] = str(venv / "bin" / "python")
    manager.start_kernel(cwd=str(tmp_path))
    started = Kernel(manager)
    yield started
    started.stop()


def test_an_endpoint_runs_from_the_installed_wheel(kernel: Kernel, venv: Path) -> None:
    kernel.run("%load_ext ws_notebook\nimport ws_notebook")
    assert kernel.value("ws_notebook.__file__").startswith(str(venv))
    assert kernel.value("ws_notebook.__version__") == VERSION
    kernel.run(
        "%%websocket echo --no-panel\ndef on_message(message, client):\n    client.send(message)"
    )
    with connect(kernel.value("ws_notebook.url('echo')")) as ws:
        ws.send("from the wheel")
        assert ws.recv(timeout=10) == "from the wheel"


def test_the_installed_script_validates_a_project(venv: Path, tmp_path: Path) -> None:
    (tmp_path / "echo.py").write_text(
        "def on_message(message, client):\n    client.send(message)\n"
    )
    descriptor = {"endpoint": "echo", "handler": "echo.py"}
    (tmp_path / "echo.websocket").write_text(json.dumps(descriptor))
    result = subprocess.run(
        [venv / "bin" / "ws-notebook", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "1 endpoint OK: echo" in result.stdout
