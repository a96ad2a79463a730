"""codbex projects on disk: finding, validating and loading descriptors, and exporting endpoints."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ws_notebook import project as project_module
from ws_notebook.descriptor import Descriptor
from ws_notebook.handlers import HandlerError
from ws_notebook.project import (
    LoadedEndpoint,
    ProjectError,
    export_endpoint,
    find_descriptors,
    load_project,
)

HINT = "letters, digits, '-', '_', '.'"
JS_TOO = ", and for each with .js, .mjs, .cjs and .ts instead of .py"

ECHO = "def onMessage(message):\n    return 'echo:' + message\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace folder (resolved, so paths compare equal to what the loader builds)."""
    folder = tmp_path.resolve() / "workspace"
    folder.mkdir()
    return folder


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), "utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def make_project(workspace: Path, handler: str = "my-project/websockets/my-handler.py") -> Path:
    """The artifact page's example: my-project/websockets/myws.websocket and its handler."""
    write_json(
        workspace / "my-project" / "websockets" / "myws.websocket",
        {
            "location": "/my-project/websockets/myws.websocket",
            "handler": handler,
            "endpoint": "my-websocket",
            "description": "My Websocket",
            "createdBy": "admin",
            "createdAt": "2022-07-06T2:24:12+0000",
        },
    )
    write_text(workspace / "my-project" / "websockets" / "my-handler.py", ECHO)
    return workspace / "my-project"


def only(loaded: list[LoadedEndpoint]) -> LoadedEndpoint:
    assert len(loaded) == 1, loaded
    return loaded[0]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ProjectError) as caught:
        load_project(path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- loading a project -----------------------------------------------------------------------


def test_load_project_folder(workspace: Path) -> None:
    project = make_project(workspace)
    endpoint = only(load_project(project))
    assert endpoint.descriptor.endpoint == "my-websocket"
    assert endpoint.descriptor.description == "My Websocket"
    assert endpoint.descriptor.created_by == "admin"
    assert endpoint.path == project / "websockets" / "myws.websocket"
    assert endpoint.handler_path == project / "websockets" / "my-handler.py"
    assert endpoint.handlers.defined == ["message"]
    assert endpoint.handlers.on_message("hi", "client") == "echo:hi"
    assert endpoint.handlers.source == ECHO


def test_load_project_folder_as_string(workspace: Path) -> None:
    project = make_project(workspace)
    assert only(load_project(str(project))).descriptor.endpoint == "my-websocket"


def test_load_workspace_folder(workspace: Path) -> None:
    make_project(workspace)
    endpoint = only(load_project(workspace))
    assert endpoint.handler_path == workspace / "my-project" / "websockets" / "my-handler.py"


def test_load_single_file(workspace: Path) -> None:
    project = make_project(workspace)
    endpoint = only(load_project(project / "websockets" / "myws.websocket"))
    assert endpoint.path == project / "websockets" / "myws.websocket"
    assert endpoint.handler_path == project / "websockets" / "my-handler.py"
    assert endpoint.handlers.on_message("x", "c") == "echo:x"


def test_handler_without_extension(workspace: Path) -> None:
    project = make_project(workspace, handler="my-project/websockets/my-handler")
    endpoint = only(load_project(project))
    assert endpoint.handler_path == project / "websockets" / "my-handler.py"
    assert endpoint.descriptor.handler == "my-project/websockets/my-handler"


def test_handler_with_leading_slash(workspace: Path) -> None:
    project = make_project(workspace, handler="/my-project/websockets/my-handler.py")
    assert only(load_project(project)).handler_path == project / "websockets" / "my-handler.py"


def test_minimal_platform_descriptor_without_location(workspace: Path) -> None:
    # {"handler": "my-project/ws-handler", ...} as in the platform docs: no location, no extension.
    project = workspace / "my-project"
    write_json(
        project / "websockets" / "ws.websocket",
        {
            "handler": "my-project/ws-handler",
            "endpoint": "my-endpoint",
            "description": "My Websocket",
        },
    )
    write_text(project / "ws-handler.py", ECHO)
    endpoint = only(load_project(project))
    assert endpoint.handler_path == project / "ws-handler.py"
    # The platform fills location with where the file is in the project; so does loading.
    assert endpoint.descriptor.location == "/my-project/websockets/ws.websocket"
    assert endpoint.descriptor.declared_location == ""
    assert endpoint.descriptor.created_by == "SYSTEM"


def test_handler_relative_to_the_loaded_folder(workspace: Path) -> None:
    project = workspace / "proj"
    write_json(
        project / "websockets" / "e.websocket", {"handler": "websockets/e-handler", "endpoint": "e"}
    )
    write_text(project / "websockets" / "e-handler.py", ECHO)
    assert only(load_project(project)).handler_path == project / "websockets" / "e-handler.py"


def test_handler_relative_to_the_descriptor_folder(workspace: Path) -> None:
    project = workspace / "proj"
    write_json(project / "deep" / "er" / "e.websocket", {"handler": "e.py", "endpoint": "e"})
    write_text(project / "deep" / "er" / "e.py", ECHO)
    assert only(load_project(project)).handler_path == project / "deep" / "er" / "e.py"


def test_location_root_is_preferred_over_nearer_folders(workspace: Path) -> None:
    # Both workspace/my-project/websockets/h.py (via location) and
    # workspace/my-project/websockets/my-project/websockets/h.py (from the descriptor's folder)
    # exist; ``location`` says which workspace the handler path is relative to.
    project = make_project(workspace, handler="my-project/websockets/h.py")
    write_text(project / "websockets" / "h.py", "def on_open(client):\n    return 'right'\n")
    write_text(
        project / "websockets" / "my-project" / "websockets" / "h.py",
        "def on_open(client):\n    return 'wrong'\n",
    )
    endpoint = only(load_project(project))
    assert endpoint.handlers.on_open("c") == "right"


def test_single_file_without_location_is_its_own_project(workspace: Path) -> None:
    # Without a location, a single file's project is its own folder: the handler is not looked
    # for above it. With a location that matches, the project is the folder the location names.
    project = workspace / "my-project"
    path = write_json(
        project / "websockets" / "ws.websocket",
        {"handler": "my-project/websockets/ws-handler", "endpoint": "e"},
    )
    write_text(project / "websockets" / "ws-handler.py", ECHO)
    assert only(load_project(project)).handler_path == project / "websockets" / "ws-handler.py"
    (problem,) = problems_of(path)  # named by its path in that project: its own folder
    assert problem.startswith(
        "/websockets/ws.websocket: handler: 'my-project/websockets/ws-handler' not found"
    )
    write_json(
        path,
        {
            "location": "/my-project/websockets/ws.websocket",
            "handler": "my-project/websockets/ws-handler",
            "endpoint": "e",
        },
    )
    assert only(load_project(path)).handler_path == project / "websockets" / "ws-handler.py"


def test_several_endpoints_load_in_file_order(workspace: Path) -> None:
    project = workspace / "proj"
    for name in ("zeta", "alpha", "mid"):
        write_json(
            project / "ws" / f"{name}.websocket", {"handler": f"{name}.py", "endpoint": name}
        )
        write_text(project / "ws" / f"{name}.py", f"def on_open(client):\n    return {name!r}\n")
    loaded = load_project(project)
    assert [e.descriptor.endpoint for e in loaded] == ["alpha", "mid", "zeta"]
    assert [e.handlers.on_open("c") for e in loaded] == ["alpha", "mid", "zeta"]


# --- finding descriptors ---------------------------------------------------------------------


def test_hidden_folders_are_skipped(workspace: Path) -> None:
    project = make_project(workspace)
    # Broken copies that would fail the load if they were read.
    write_text(project / "websockets" / ".ipynb_checkpoints" / "myws-checkpoint.websocket", "{")
    write_text(project / ".git" / "stash" / "old.websocket", "not json")
    write_text(project / ".hidden.d" / "x.websocket", "[]")
    endpoint = only(load_project(project))
    assert endpoint.descriptor.endpoint == "my-websocket"
    assert find_descriptors(project) == [project / "websockets" / "myws.websocket"]


def test_loading_from_inside_a_hidden_folder_works(tmp_path: Path) -> None:
    hidden_workspace = tmp_path.resolve() / ".work"
    hidden_workspace.mkdir()
    project = make_project(hidden_workspace)
    assert only(load_project(project)).descriptor.endpoint == "my-websocket"


def test_find_descriptors(workspace: Path) -> None:
    write_text(workspace / "b" / "two.websocket", "{}")
    write_text(workspace / "a" / "one.websocket", "{}")
    write_text(workspace / "a" / "notes.txt", "")
    write_text(workspace / "a" / "one.websocket.bak", "")
    (workspace / "folder.websocket").mkdir()
    assert find_descriptors(workspace) == [
        workspace / "a" / "one.websocket",
        workspace / "b" / "two.websocket",
    ]
    assert find_descriptors(workspace / "b" / "two.websocket") == [
        workspace / "b" / "two.websocket"
    ]


def test_find_descriptors_missing_path(workspace: Path) -> None:
    missing = workspace / "nope"
    with pytest.raises(ProjectError) as caught:
        find_descriptors(missing)
    assert caught.value.problems == [f"{missing}: no such file or folder"]


def test_empty_folder_is_an_error(workspace: Path) -> None:
    write_text(workspace / "README.md", "no descriptors here")
    assert problems_of(workspace) == [f"{workspace}: no *.websocket files found"]


def test_missing_folder_is_an_error(workspace: Path) -> None:
    assert problems_of(workspace / "nope") == [f"{workspace / 'nope'}: no such file or folder"]


def test_project_error_is_a_value_error() -> None:
    error = ProjectError(["a: one", "b: two"])
    assert isinstance(error, ValueError)
    assert str(error) == "a: one\nb: two"
    assert error.problems == ["a: one", "b: two"]


# --- JavaScript handlers ---------------------------------------------------------------------


def test_missing_js_handler_says_it_does_not_exist(workspace: Path) -> None:
    project = make_project(workspace, handler="my-project/websockets/gone.js")
    path = "/my-project/websockets/myws.websocket"
    tried = [
        workspace / "my-project" / "websockets" / "gone.js",  # from location
        project / "websockets" / "my-project" / "websockets" / "gone.js",
        project / "my-project" / "websockets" / "gone.js",
    ]
    assert problems_of(project) == [
        f"{path}: handler: 'my-project/websockets/gone.js' does not exist "
        f"(looked for {', '.join(map(str, tried))})"
    ]


def test_python_module_beside_the_js_is_used(workspace: Path) -> None:
    project = make_project(workspace, handler="my-project/websockets/my-handler.js")
    write_text(project / "websockets" / "my-handler.js", "exports.onMessage = m => m;\n")
    endpoint = only(load_project(project))
    assert endpoint.handler_path == project / "websockets" / "my-handler.py"
    assert endpoint.handlers.on_message("js", "c") == "echo:js"
    assert endpoint.descriptor.handler == "my-project/websockets/my-handler.js"


# --- problems --------------------------------------------------------------------------------


def test_missing_handler_lists_the_paths_tried(workspace: Path) -> None:
    project = make_project(workspace, handler="my-project/websockets/nope")
    path = "/my-project/websockets/myws.websocket"
    tried = [
        workspace / "my-project" / "websockets" / "nope.py",  # from location
        project / "websockets" / "my-project" / "websockets" / "nope.py",
        project / "my-project" / "websockets" / "nope.py",
    ]
    assert problems_of(project) == [
        f"{path}: handler: 'my-project/websockets/nope' not found "
        f"(looked for {', '.join(map(str, tried))}{JS_TOO})"
    ]


def test_missing_handler_without_location_lists_the_paths_tried_inside_the_project(
    workspace: Path,
) -> None:
    project = workspace / "proj"
    write_json(project / "a" / "b" / "e.websocket", {"handler": "h", "endpoint": "e"})
    tried = [project / "a" / "b" / "h.py", project / "a" / "h.py", project / "h.py"]
    assert problems_of(project) == [
        f"/proj/a/b/e.websocket: handler: 'h' not found "
        f"(looked for {', '.join(map(str, tried))}{JS_TOO})"
    ]


def test_several_broken_files_are_all_reported(workspace: Path) -> None:
    folder = workspace / "proj" / "ws"
    write_text(folder / "a.websocket", '{\n  "endpoint": "a"\n  "handler": "a.py"\n}\n')
    write_json(folder / "b.websocket", {"endpoint": "b b", "handler": ""})
    write_json(folder / "c.websocket", {"endpoint": "c", "handler": "missing-c"})
    write_json(folder / "d.websocket", {"endpoint": "d", "handler": "d.py"})
    write_text(folder / "d.py", "def on_message(message client):\n    pass\n")
    write_json(folder / "e.websocket", {"endpoint": "e", "handler": "e.js"})
    write_json(folder / "f.websocket", {"endpoint": "f", "handler": "", "colour": "red"})
    # Each is named by its path in the project, as the platform names it.
    a, b, c, d, e, f = (f"/proj/ws/{name}.websocket" for name in "abcdef")
    write_json(folder / "ok.websocket", {"endpoint": "ok", "handler": "ok.py"})
    write_text(folder / "ok.py", ECHO)
    tried_c = ", ".join(str(p / "missing-c.py") for p in (folder, folder.parent))
    problems = problems_of(workspace / "proj")
    assert len(problems) == 7
    assert problems[:3] == [
        f"{a}: invalid JSON at line 3 column 3: Expecting ',' delimiter",
        f"{b}: endpoint: 'b b' is not a valid endpoint name ({HINT})",
        f"{b}: handler: must not be empty",
    ]
    assert problems[3] == f"{c}: handler: 'missing-c' not found (looked for {tried_c}{JS_TOO})"
    assert problems[4].startswith(f"{d}: {folder / 'd.py'}:1: ")
    tried_e = ", ".join(str(p / "e.js") for p in (folder, folder.parent))
    assert problems[5] == f"{e}: handler: 'e.js' does not exist (looked for {tried_e})"
    assert problems[6] == f"{f}: handler: must not be empty"  # colour: only a warning
    # every line starts with the descriptor it is about
    files = [a, b, b, c, d, e, f]
    assert all(line.startswith(f"{file}: ") for line, file in zip(problems, files, strict=True))


def test_bad_handler_signature_is_reported(workspace: Path) -> None:
    project = workspace / "proj"
    write_json(project / "e.websocket", {"endpoint": "e", "handler": "e"})
    write_text(project / "e.py", "def on_open(client, extra):\n    pass\n")
    assert problems_of(project) == [
        f"/proj/e.websocket: {project / 'e.py'}: on_open(client, extra) takes 2 arguments; "
        "it is called as on_open(client)"
    ]


def test_handler_failing_at_import_is_reported_with_the_others(workspace: Path) -> None:
    project = workspace / "proj"
    write_json(project / "a.websocket", {"endpoint": "a", "handler": "a"})
    write_text(project / "a.py", "import ws_notebook_no_such_module\n")
    write_json(project / "b.websocket", {"endpoint": "b b", "handler": "b"})
    with pytest.raises(ProjectError) as caught:
        load_project(project)
    assert len(caught.value.problems) == 2
    assert caught.value.problems[0].startswith(f"/proj/a.websocket: {project / 'a.py'}:1: ")
    assert "ws_notebook_no_such_module" in caught.value.problems[0]
    assert (
        caught.value.problems[1]
        == f"/proj/b.websocket: endpoint: 'b b' is not a valid endpoint name ({HINT})"
    )


def test_non_utf8_handler_is_reported(workspace: Path) -> None:
    project = workspace / "proj"
    write_json(project / "a.websocket", {"endpoint": "a", "handler": "a"})
    (project / "a.py").write_bytes(b"# caf\xe9\ndef on_open(client):\n    pass\n")
    with pytest.raises(ProjectError) as caught:
        load_project(project)
    assert caught.value.problems[0].startswith(f"/proj/a.websocket: {project / 'a.py'}:")


def test_duplicate_endpoint_names(workspace: Path) -> None:
    project = workspace / "proj"
    write_json(project / "one" / "x.websocket", {"endpoint": "dup", "handler": "h"})
    write_json(project / "two" / "y.websocket", {"endpoint": "dup", "handler": "h"})
    write_json(project / "two" / "z.websocket", {"endpoint": "dup", "handler": "h"})
    write_text(project / "one" / "h.py", ECHO)
    write_text(project / "two" / "h.py", ECHO)
    assert problems_of(project) == [
        "/proj/two/y.websocket: endpoint: 'dup' is already defined by /proj/one/x.websocket",
        "/proj/two/z.websocket: endpoint: 'dup' is already defined by /proj/one/x.websocket",
    ]


def test_invalid_descriptor_does_not_claim_its_endpoint(workspace: Path) -> None:
    project = workspace / "proj"
    write_json(project / "a.websocket", {"endpoint": "same", "handler": "", "x": 1})
    write_json(project / "b.websocket", {"endpoint": "same", "handler": "h"})
    write_text(project / "h.py", ECHO)
    assert problems_of(project) == ["/proj/a.websocket: handler: must not be empty"]
    with pytest.raises(ProjectError) as caught:
        load_project(project, strict=True)
    assert caught.value.problems == [
        "/proj/a.websocket: x: unknown property (expected one of location, handler, endpoint, description, createdBy, createdAt)",
        "/proj/a.websocket: handler: must not be empty",
    ]


# --- exporting -------------------------------------------------------------------------------


@pytest.fixture
def descriptor() -> Descriptor:
    return Descriptor.from_json(
        {
            "location": "/somewhere/else.websocket",
            "handler": "somewhere/else.py",
            "endpoint": "echo",
            "description": "Echo service",
            "createdBy": "tester",
            "createdAt": "2024-01-02T03:04:05+01:00",
        }
    )


def test_export_writes_descriptor_and_handler(workspace: Path, descriptor: Descriptor) -> None:
    folder = workspace / "my-project"
    target = export_endpoint(descriptor, ECHO, folder)
    assert target == folder / "echo.websocket"
    assert sorted(p.name for p in folder.iterdir()) == ["echo.py", "echo.websocket"]
    assert (folder / "echo.py").read_text("utf-8") == ECHO
    text = target.read_text("utf-8")
    assert text.endswith("}\n")
    data = json.loads(text)
    assert list(data) == [
        "location",
        "handler",
        "endpoint",
        "description",
        "createdBy",
        "createdAt",
    ]
    assert data == {
        "location": "/my-project/echo.websocket",
        "handler": "my-project/echo.py",
        "endpoint": "echo",
        "description": "Echo service",
        "createdBy": "tester",
        "createdAt": "2024-01-02T03:04:05+01:00",
    }
    assert text.startswith('{\n  "location": ')  # indented as the platform writes it


def test_export_then_load_gives_the_same_endpoint(workspace: Path, descriptor: Descriptor) -> None:
    folder = workspace / "my-project"
    target = export_endpoint(descriptor, ECHO, folder)
    endpoint = only(load_project(folder))
    assert endpoint.path == target
    assert endpoint.handler_path == folder / "echo.py"
    assert endpoint.descriptor == descriptor.replace(
        location="/my-project/echo.websocket", handler="my-project/echo.py"
    )
    assert endpoint.handlers.source == ECHO
    assert endpoint.handlers.defined == ["message"]
    assert endpoint.handlers.on_message("again", "c") == "echo:again"
    # the workspace above it loads too, and so does the single file
    assert only(load_project(workspace)).descriptor == endpoint.descriptor
    assert only(load_project(target)).handler_path == folder / "echo.py"


def test_export_adds_final_newline(workspace: Path, descriptor: Descriptor) -> None:
    export_endpoint(descriptor, "def on_open(client):\n    pass", workspace / "p")
    assert (workspace / "p" / "echo.py").read_text("utf-8") == "def on_open(client):\n    pass\n"


def test_export_creates_missing_folders(workspace: Path, descriptor: Descriptor) -> None:
    folder = workspace / "a" / "b" / "proj"
    target = export_endpoint(descriptor, ECHO, str(folder))
    assert target == folder / "echo.websocket"
    assert json.loads(target.read_text("utf-8"))["handler"] == "proj/echo.py"


def test_export_permissions_are_0644(workspace: Path, descriptor: Descriptor) -> None:
    old = os.umask(0o077)
    try:
        target = export_endpoint(descriptor, ECHO, workspace / "p")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE((workspace / "p" / "echo.py").stat().st_mode) == 0o644


def test_export_replaces_existing_files_without_leftovers(
    workspace: Path, descriptor: Descriptor
) -> None:
    folder = workspace / "p"
    export_endpoint(descriptor, "def on_open(client):\n    return 1\n", folder)
    export_endpoint(descriptor.replace(description="v2"), ECHO, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["echo.py", "echo.websocket"]
    assert (folder / "echo.py").read_text("utf-8") == ECHO
    assert json.loads((folder / "echo.websocket").read_text("utf-8"))["description"] == "v2"


def test_export_beside_other_endpoints(workspace: Path, descriptor: Descriptor) -> None:
    folder = workspace / "p"
    export_endpoint(descriptor, ECHO, folder)
    export_endpoint(
        descriptor.replace(endpoint="other"), "def on_open(client):\n    pass\n", folder
    )
    loaded = load_project(folder)
    assert [e.descriptor.endpoint for e in loaded] == ["echo", "other"]
    assert [e.handlers.defined for e in loaded] == [["message"], ["open"]]


def test_export_failure_leaves_no_temporary_file(
    workspace: Path, descriptor: Descriptor, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = workspace / "p"
    export_endpoint(descriptor, ECHO, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(project_module.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        export_endpoint(
            descriptor.replace(description="new"), "def on_open(c):\n    pass\n", folder
        )
    monkeypatch.undo()
    # the old files are untouched and no temporary file is left behind
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_export_without_source_is_a_handler_error(workspace: Path, descriptor: Descriptor) -> None:
    folder = workspace / "p"
    with pytest.raises(HandlerError) as caught:
        export_endpoint(descriptor, None, folder)
    assert str(caught.value) == (
        "endpoint 'echo' has no handler source to export "
        "(it was mounted from Python objects, not from a cell or a file)"
    )
    assert not folder.exists()


def test_export_of_minimal_descriptor_loads_back(workspace: Path) -> None:
    minimal = Descriptor.from_json({"endpoint": "e", "handler": "proj/e"})
    folder = workspace / "out"
    export_endpoint(minimal, ECHO, folder)
    assert only(load_project(folder)).descriptor.endpoint == "e"


def test_handler_imports_a_module_beside_it(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "e.websocket").write_text('{"endpoint": "e", "handler": "e.py"}')
    (project / "wsnb_test_helpers.py").write_text("def shout(text):\n    return text.upper()\n")
    (project / "e.py").write_text(
        "from wsnb_test_helpers import shout\n\ndef on_message(m, c):\n    return shout(m)\n"
    )
    (loaded,) = load_project(project)
    assert loaded.handlers.on_message("hi", None) == "HI"
    assert str(project) not in sys.path  # importable while loading, not for ever after


# --- exporting a cell: the notebook names its code reads ------------------------------------------


CELL = """\
def on_message(message, client):
    client.send(PREFIX + j.dumps(LIMITS) + ws_notebook.__name__ + join("a", "b") + str(len(message)))
"""


def test_export_writes_the_notebooks_imports_and_constants_its_code_reads(
    workspace: Path, descriptor: Descriptor
) -> None:
    import json as j
    from os.path import join

    import ws_notebook

    notebook = {
        "PREFIX": ">> ",
        "LIMITS": {"sizes": [1, 2.5], "names": ("a", None), "on": True, 3: "x"},
        "j": j,
        "ws_notebook": ws_notebook,
        "join": join,
        "unused": object(),  # not read by the cell: not written, not refused
    }
    export_endpoint(descriptor, CELL, workspace / "p", notebook)
    module = (workspace / "p" / "echo.py").read_text("utf-8")
    assert module == (
        "# From the notebook, as it was when this endpoint was exported:\n"
        "import json as j\n"
        "import ws_notebook\n"
        f"from {join.__module__} import join\n"
        "PREFIX = '>> '\n"
        "LIMITS = {'sizes': [1, 2.5], 'names': ('a', None), 'on': True, 3: 'x'}\n"
        "\n" + CELL
    )
    assert only(load_project(workspace / "p", run_handlers=False)).handlers.defined == ["message"]
    sent: list[str] = []
    client = type("Client", (), {"send": staticmethod(sent.append)})
    only(load_project(workspace / "p")).handlers.on_message("hi", client)
    assert sent == [">> " + j.dumps(notebook["LIMITS"]) + "ws_notebook" + join("a", "b") + "2"]


def test_export_keeps_the_docstring_and_future_imports_first(
    workspace: Path, descriptor: Descriptor
) -> None:
    source = '"""Echo."""\nfrom __future__ import annotations\ndef on_open(client):\n    client.send(GREETING)\n'
    export_endpoint(descriptor, source, workspace / "p", {"GREETING": "hi"})
    assert (workspace / "p" / "echo.py").read_text("utf-8") == (
        '"""Echo."""\nfrom __future__ import annotations\n'
        "# From the notebook, as it was when this endpoint was exported:\n"
        "GREETING = 'hi'\n"
        "\n"
        "def on_open(client):\n    client.send(GREETING)\n"
    )


def test_export_of_a_cell_that_reads_no_notebook_name_is_the_cell(
    workspace: Path, descriptor: Descriptor
) -> None:
    export_endpoint(descriptor, ECHO, workspace / "p", {"len": "shadowed, but not read"})
    assert (workspace / "p" / "echo.py").read_text("utf-8") == ECHO


def test_export_refuses_names_it_cannot_write_down(workspace: Path, descriptor: Descriptor) -> None:
    def helper() -> None:
        pass

    helper.__module__ = "__main__"  # as a function defined in a notebook cell is
    source = "def on_open(client):\n    client.send(str((helper, ratio, conn, nowhere)))\n"
    notebook = {"helper": helper, "ratio": float("nan"), "conn": Path("/")}
    with pytest.raises(HandlerError) as caught:
        export_endpoint(descriptor, source, workspace / "p", notebook)
    assert str(caught.value) == (
        "cannot export 'echo': the handlers use names from the notebook that cannot be written "
        "into the exported module: helper (a function defined in the notebook), ratio (a float "
        f"object), conn (a {type(Path('/')).__name__} object), nowhere (not defined in the "
        "notebook); define them in the endpoint's cell (or import them there from a module) "
        "and export again"
    )
    assert not (workspace / "p").exists()
