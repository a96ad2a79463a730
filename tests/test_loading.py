"""Loading handler modules: what their code may do, what they import, where they may come from.

- Module code that raises ``KeyboardInterrupt`` or ``SystemExit`` is that module's load error; it
  stops neither ``load_project`` nor ``ws-notebook serve`` (nor a watcher: test_watch.py).
- Each handler imports the modules beside it from a namespace of its own: same-named helpers of
  two folders stay apart, imports at message time find the handler's own folder, an edited
  helper is loaded afresh.
- Handlers are only found inside the project folder; ``run_handlers=False`` checks a project
  without running any of its code.

Real files in ``tmp_path``, real servers on 127.0.0.1, real ``websockets`` clients.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ws_notebook import Registry
from ws_notebook.handlers import HandlerError, Handlers
from ws_notebook.project import ProjectError, load_project

from .test_cli import Served

pytestmark = pytest.mark.timeout(120)

WAIT = 15.0  # seconds: the longest any single expected thing may take
NAMESPACES = "_ws_notebook_handlers."

ECHO = "def on_message(message, client):\n    client.send(message)\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def write_endpoint(folder: Path, name: str, source: str, **properties: str) -> Path:
    """``folder/NAME.websocket`` naming ``NAME.py``, and that handler module."""
    write(folder / f"{name}.py", source)
    return write(
        folder / f"{name}.websocket",
        json.dumps({"endpoint": name, "handler": f"{name}.py", **properties}),
    )


def in_project(folder: Path, name: str) -> str:
    """How loading ``folder`` names its descriptor ``name``: by its path in the project."""
    return f"/{folder.name}/{name}"


def problems_of(path: Path, **options: Any) -> list[str]:
    with pytest.raises(ProjectError) as caught:
        load_project(path, **options)
    return caught.value.problems


def without_interrupt(call: Callable[[], Any]) -> Any:
    """``call()``; a KeyboardInterrupt escaping it fails the test instead of ending the session."""
    try:
        return call()
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped from loading a handler module")


def namespaces() -> set[str]:
    """The handler import namespaces in ``sys.modules`` (packages, not their modules)."""
    return {name for name in sys.modules if name.startswith(NAMESPACES) and name.count(".") == 1}


# --- A. module code that stops things is a load error ------------------------------------------


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
        ("import sys\nsys.exit()\n", "SystemExit"),
        ("raise SystemExit(3)\n", "SystemExit: 3"),
    ],
)
def test_module_stopping_the_process_is_its_load_error(
    tmp_path: Path, source: str, error: str
) -> None:
    path = write(tmp_path / "h.py", "x = 1\n" + source)
    with pytest.raises(HandlerError) as caught:
        without_interrupt(lambda: Handlers.from_file(path))
    line = source.count("\n") + 1
    assert str(caught.value).startswith(f"{path}:{line}: {error}")
    write_endpoint(tmp_path, "e", "x = 1\n" + source)
    assert problems_of(tmp_path)[0].startswith(
        f"{in_project(tmp_path, 'e.websocket')}: {tmp_path / 'e.py'}:{line}: {error}"
    )


@pytest.mark.slow
def test_serve_refuses_a_project_whose_module_interrupts(tmp_path: Path) -> None:
    write_endpoint(tmp_path, "echo", "raise KeyboardInterrupt\n")
    served = Served([sys.executable, "-m", "ws_notebook", "serve", str(tmp_path), "--port", "0"])
    try:
        assert served.process.wait(timeout=60) == 2
    finally:
        served.kill()
    assert f"{tmp_path / 'echo.py'}:1: KeyboardInterrupt" in served.stderr
    assert "nothing was started" in served.stderr


# --- B. each handler imports from its own folder -----------------------------------------------


def two_folders_with_a_helper(project: Path) -> None:
    """``a/h.py`` and ``b/h.py``, each importing its own ``helper.py`` in every way."""
    for folder in ("a", "b"):
        write(project / folder / "helper.py", f"NAME = {folder!r}\n")
        write(project / folder / "h.websocket", json.dumps({"endpoint": folder, "handler": "h"}))
        write(
            project / folder / "h.py",
            "import helper\n"
            "from helper import NAME\n"
            "\n"
            "def on_message(message, client):\n"
            "    import helper as later\n"
            "    from helper import NAME as later_name\n"
            "    return (helper.NAME, NAME, later.NAME, later_name)\n",
        )


def test_same_named_helpers_of_two_folders_stay_apart(tmp_path: Path) -> None:
    two_folders_with_a_helper(tmp_path)
    path_before = list(sys.path)
    a, b = load_project(tmp_path)
    assert sys.path == path_before
    assert a.handlers.on_message("m", None) == ("a", "a", "a", "a")
    assert b.handlers.on_message("m", None) == ("b", "b", "b", "b")
    assert "helper" not in sys.modules
    assert a.handlers.local_files == (tmp_path / "a" / "helper.py",)
    assert b.handlers.local_files == (tmp_path / "b" / "helper.py",)


def test_packages_and_helpers_importing_each_other(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "__init__.py", "from . import sub\n")
    write(tmp_path / "pkg" / "sub.py", "import util\nVALUE = 'sub+' + util.VALUE\n")
    write(tmp_path / "util.py", "import words\nVALUE = words.WORD\n")
    write(tmp_path / "words.py", "WORD = 'util'\n")
    write(tmp_path / "later.py", "VALUE = 'later'\n")
    write_endpoint(
        tmp_path,
        "e",
        "import pkg.sub\n"
        "from pkg import sub\n"
        "from . import util\n"
        "import json\n"
        "\n"
        "def on_message(message, client):\n"
        "    import later\n"
        "    return json.dumps([pkg.sub.VALUE, sub.VALUE, util.VALUE, later.VALUE])\n",
    )
    (loaded,) = load_project(tmp_path)
    assert json.loads(loaded.handlers.on_message("m", None)) == [
        "sub+util",
        "sub+util",
        "util",
        "later",
    ]
    assert set(loaded.handlers.local_files) == {
        tmp_path / "pkg" / "__init__.py",
        tmp_path / "pkg" / "sub.py",
        tmp_path / "util.py",
        tmp_path / "words.py",
    }


def test_a_websockets_folder_beside_a_handler_does_not_hide_the_library(tmp_path: Path) -> None:
    # A codbex project keeps its descriptors in websockets/: a folder without __init__.py.
    write(tmp_path / "websockets" / "e.websocket", json.dumps({"endpoint": "e", "handler": "h"}))
    write(tmp_path / "websockets" / "h.py", ECHO)
    write(tmp_path / "shared.websocket", json.dumps({"endpoint": "s", "handler": "s"}))
    write(tmp_path / "s.py", "import websockets\n\nCONNECT = websockets.connect\n" + ECHO)
    loaded = load_project(tmp_path)
    assert sorted(item.descriptor.endpoint for item in loaded) == ["e", "s"]


def test_an_edited_helper_is_loaded_afresh(tmp_path: Path) -> None:
    write(tmp_path / "helper.py", "VALUE = 1\n")
    write_endpoint(
        tmp_path,
        "e",
        "import helper\n\ndef on_message(message, client):\n    return helper.VALUE\n",
    )
    (first,) = load_project(tmp_path)
    write(tmp_path / "helper.py", "VALUE = 2\n")  # within the same second, same size
    (second,) = load_project(tmp_path)
    assert first.handlers.on_message("m", None) == 1
    assert second.handlers.on_message("m", None) == 2
    assert not (tmp_path / "__pycache__").exists()


def test_mounting_again_releases_the_replaced_namespace(tmp_path: Path) -> None:
    """``%websocket load`` twice, or a cell redefining a loaded endpoint: no namespace piles up."""
    write(tmp_path / "helper.py", "VALUE = 1\n")
    write_endpoint(tmp_path, "e", "import helper\n\ndef on_message(message, client):\n    pass\n")
    registry = Registry()
    (first,) = load_project(tmp_path)
    registry.mount(first.descriptor, first.handlers)
    before = namespaces()
    for _ in range(3):
        (again,) = load_project(tmp_path)
        registry.mount(again.descriptor, again.handlers)
    assert len(namespaces()) == len(before)
    registry.mount(again.descriptor, Handlers())
    assert len(namespaces()) == len(before) - 1


# --- C. handlers come from inside the project, and can be checked without running them ---------


MARKER = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


def test_a_handler_outside_the_loaded_folder_is_refused(tmp_path: Path) -> None:
    work = tmp_path.resolve()
    marker = work / "ran.txt"
    write(work / "other" / "evil.py", MARKER.format(marker=str(marker)) + ECHO)
    write(work / "proj" / "e.websocket", json.dumps({"endpoint": "e", "handler": "other/evil"}))
    assert problems_of(work / "proj") == [
        f"/proj/e.websocket: handler: 'other/evil' is outside the project folder {work / 'proj'} "
        f"(found {work / 'other' / 'evil.py'}); handlers are only loaded from inside it"
    ]
    assert not marker.exists()


def test_a_single_file_does_not_search_its_parents(tmp_path: Path) -> None:
    work = tmp_path.resolve()
    marker = work / "ran.txt"
    write(work / "evil.py", MARKER.format(marker=str(marker)) + ECHO)
    descriptor = write(
        work / "a" / "b" / "x.websocket", json.dumps({"endpoint": "x", "handler": "evil"})
    )
    (problem,) = problems_of(descriptor)
    assert problem.startswith("/b/x.websocket: handler: 'evil' not found")
    assert not marker.exists()


def test_a_single_files_project_is_the_folder_its_location_names(tmp_path: Path) -> None:
    work = tmp_path.resolve()
    write(work / "my-project" / "h.py", ECHO)
    write(work / "other-project" / "h.py", ECHO)
    descriptor = work / "my-project" / "websockets" / "x.websocket"
    location = "/my-project/websockets/x.websocket"
    write(
        descriptor, json.dumps({"location": location, "endpoint": "x", "handler": "my-project/h"})
    )
    assert load_project(descriptor)[0].handler_path == work / "my-project" / "h.py"
    write(
        descriptor,
        json.dumps({"location": location, "endpoint": "x", "handler": "other-project/h"}),
    )
    assert problems_of(descriptor) == [
        f"{location}: handler: 'other-project/h' is outside the project folder "
        f"{work / 'my-project'} (found {work / 'other-project' / 'h.py'}); handlers are only "
        "loaded from inside it"
    ]


@pytest.mark.parametrize("linked", ["file", "folder"])
def test_a_link_leaving_the_project_is_refused(tmp_path: Path, linked: str) -> None:
    work = tmp_path.resolve()
    marker = work / "ran.txt"
    evil = write(work / "outside" / "evil.py", MARKER.format(marker=str(marker)) + ECHO)
    project = work / "proj"
    project.mkdir()
    if linked == "file":
        (project / "h.py").symlink_to(evil)
        handler, candidate = "h", project / "h.py"
    else:
        (project / "lib").symlink_to(work / "outside", target_is_directory=True)
        handler, candidate = "lib/evil", project / "lib" / "evil.py"
    write(project / "e.websocket", json.dumps({"endpoint": "e", "handler": handler}))
    assert problems_of(project) == [
        f"/proj/e.websocket: handler: {handler!r} leaves the project: {candidate} links to {evil}, "
        f"outside the project folder {project}"
    ]
    assert not marker.exists()


def test_a_link_inside_the_project_is_followed(tmp_path: Path) -> None:
    project = tmp_path.resolve() / "proj"
    real = write(project / "real" / "h.py", ECHO)
    (project / "h.py").symlink_to(real)
    write(project / "e.websocket", json.dumps({"endpoint": "e", "handler": "h"}))
    assert load_project(project)[0].handler_path == project / "h.py"


def test_checking_without_running_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    write(tmp_path / "helper.py", MARKER.format(marker=str(marker)))
    write_endpoint(
        tmp_path,
        "e",
        MARKER.format(marker=str(marker))
        + "import helper\n"
        + "async def on_open(client):\n    pass\n"
        + "onMessage = lambda message: message\n"
        + "try:\n    from elsewhere import on_close\n"
        + "except ImportError:\n    def on_close(client):\n        pass\n"
        + "def on_eror(error, client):\n    pass\n",
        description="checked",
    )
    (loaded,) = load_project(tmp_path, run_handlers=False)
    assert not marker.exists()
    handlers = loaded.handlers
    assert handlers.defined == ["open", "message", "close"]
    assert (handlers.on_open, handlers.on_message, handlers.on_error, handlers.on_close) == (
        None,
        None,
        None,
        None,
    )
    assert handlers.warnings == ("'on_eror' looks like a handler name; did you mean 'on_error'?",)
    assert loaded.descriptor.description == "checked"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def on_open(client):\n    pass\n\ndef on_message(:\n", ":4: invalid syntax"),
        ("x = 1\nreturn x\n", ":2: 'return' outside function"),
        (
            "def on_open(client):\n    pass\n\nonOpen = on_open\n",
            ": both on_open and onOpen are defined; keep one of them",
        ),
        (
            "def on_open(client, extra, more=1):\n    pass\n",
            ": on_open(client, extra, more=1) takes 2 arguments; it is called as on_open(client)",
        ),
        (
            "def on_message(message, *, client):\n    pass\n",
            ": on_message(message, *, client) needs keyword arguments client; it is called as "
            "on_message(message, client)",
        ),
    ],
)
def test_checking_without_running_finds_what_running_would(
    tmp_path: Path, source: str, problem: str
) -> None:
    write_endpoint(tmp_path, "e", source)
    where = in_project(tmp_path, "e.websocket")
    assert problems_of(tmp_path, run_handlers=False) == [f"{where}: {tmp_path / 'e.py'}{problem}"]
    assert problems_of(tmp_path) == [f"{where}: {tmp_path / 'e.py'}{problem}"]  # as when it runs


@pytest.mark.slow
def test_validate_and_list_run_no_handler_code_unless_asked(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    write_endpoint(tmp_path / "proj", "e", MARKER.format(marker=str(marker)) + ECHO)
    for command in ("validate", "list"):
        result = subprocess.run(
            [sys.executable, "-m", "ws_notebook", command, str(tmp_path / "proj")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert not marker.exists()
    imported = subprocess.run(
        [sys.executable, "-m", "ws_notebook", "validate", "--import", str(tmp_path / "proj")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert marker.read_text() == "ran"
