"""Handler functions: names, argument adaptation, async, cells with a notebook fallback, files."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import linecache
import textwrap
import types
from pathlib import Path

import pytest

from ws_notebook.handlers import EVENT_NAMES, HandlerError, Handlers, free_names


class Recorder:
    """Collects the calls handlers make, so a test can check the arguments they got."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, *args: object) -> None:
        self.calls.append(args)


def run(value: object) -> object:
    """The result of a handler call, awaited if the handler is async."""
    if inspect.isawaitable(value):
        return asyncio.run(_await(value))
    return value


async def _await(value: object) -> object:
    return await value  # type: ignore[misc]


# --- event names -----------------------------------------------------------------------------


def test_event_names_table() -> None:
    assert EVENT_NAMES == {
        "open": ("on_open", "onOpen", ("client",)),
        "message": ("on_message", "onMessage", ("message", "client")),
        "error": ("on_error", "onError", ("error", "client")),
        "close": ("on_close", "onClose", ("client",)),
    }


def test_empty_namespace_has_no_handlers() -> None:
    h = Handlers.from_namespace({})
    assert h.defined == []
    assert (h.on_open, h.on_message, h.on_error, h.on_close) == (None, None, None, None)
    assert h.warnings == ()
    assert h.source is None


def test_python_names_with_full_arguments_are_used_as_is() -> None:
    def on_open(client):
        return ("open", client)

    def on_message(message, client):
        return ("message", message, client)

    def on_error(error, client):
        return ("error", error, client)

    def on_close(client):
        return ("close", client)

    h = Handlers.from_namespace(
        {"on_open": on_open, "on_message": on_message, "on_error": on_error, "on_close": on_close}
    )
    assert h.on_open is on_open
    assert h.on_message is on_message
    assert h.on_error is on_error
    assert h.on_close is on_close
    assert h.defined == ["open", "message", "error", "close"]
    assert h.on_message("hi", "c1") == ("message", "hi", "c1")


def test_codbex_names_are_accepted() -> None:
    def onOpen():
        return "opened"

    def onMessage(message):
        return f"got {message}"

    def onError(error):
        return f"error {error}"

    def onClose():
        return "closed"

    h = Handlers.from_namespace(
        {"onOpen": onOpen, "onMessage": onMessage, "onError": onError, "onClose": onClose}
    )
    assert h.defined == ["open", "message", "error", "close"]
    # The adapted functions take the full argument list and pass on what each one accepts.
    assert h.on_open("client") == "opened"
    assert h.on_message("hello", "client") == "got hello"
    assert h.on_error(ValueError("x"), "client") == "error x"
    assert h.on_close("client") == "closed"
    assert h.on_message is not onMessage


def test_fewer_arguments_get_the_leading_ones() -> None:
    seen: list[tuple] = []

    def on_message(message):
        seen.append((message,))

    def on_error():
        seen.append(())

    h = Handlers.from_namespace({"on_message": on_message, "on_error": on_error})
    h.on_message("m", "client")
    h.on_error(RuntimeError("e"), "client")
    assert seen == [("m",), ()]


def test_optional_extra_parameters_keep_their_defaults() -> None:
    def on_message(message, client, extra="default"):
        return (message, client, extra)

    def on_open(client, verbose=False):
        return (client, verbose)

    h = Handlers.from_namespace({"on_message": on_message, "on_open": on_open})
    assert h.on_message("m", "c") == ("m", "c", "default")
    assert h.on_open("c") == ("c", False)


def test_one_required_and_one_optional_gets_both() -> None:
    def on_message(message, client=None):
        return (message, client)

    h = Handlers.from_namespace({"on_message": on_message})
    assert h.on_message("m", "c") == ("m", "c")


def test_var_positional_gets_everything() -> None:
    def on_message(*args):
        return args

    h = Handlers.from_namespace({"on_message": on_message})
    assert h.on_message is on_message
    assert h.on_message("m", "c") == ("m", "c")


def test_callable_objects_and_bound_methods() -> None:
    class Service:
        def __init__(self) -> None:
            self.got: list[str] = []

        def onMessage(self, message):
            self.got.append(message)

    service = Service()
    recorder = Recorder()
    h = Handlers.from_namespace({"onMessage": service.onMessage, "on_close": recorder})
    h.on_message("m", "c")
    h.on_close("c")
    assert service.got == ["m"]
    assert recorder.calls == [("c",)]


def test_builtin_without_signature_is_used_as_is() -> None:
    h = Handlers.from_namespace({"on_message": print})
    assert h.on_message is print


def test_lambda_handlers() -> None:
    h = Handlers.from_namespace({"onMessage": lambda m: m.upper()})
    assert h.on_message("abc", "client") == "ABC"


# --- async handlers --------------------------------------------------------------------------


def test_async_handler_with_full_arguments_is_kept() -> None:
    async def on_message(message, client):
        return (message, client)

    h = Handlers.from_namespace({"on_message": on_message})
    assert h.on_message is on_message
    assert run(h.on_message("m", "c")) == ("m", "c")


def test_async_handler_with_fewer_arguments_is_adapted_and_stays_async() -> None:
    async def onMessage(message):
        await asyncio.sleep(0)
        return f"async {message}"

    async def onOpen():
        return "opened"

    h = Handlers.from_namespace({"onMessage": onMessage, "onOpen": onOpen})
    assert inspect.iscoroutinefunction(h.on_message)
    assert inspect.iscoroutinefunction(h.on_open)
    assert run(h.on_message("m", "client")) == "async m"
    assert run(h.on_open("client")) == "opened"


def test_sync_adapted_handler_is_not_async() -> None:
    h = Handlers.from_namespace({"onMessage": lambda m: m})
    assert not inspect.iscoroutinefunction(h.on_message)
    assert h.on_message("m", "c") == "m"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "codbex"),
    [
        ("on_open", "onOpen"),
        ("on_message", "onMessage"),
        ("on_error", "onError"),
        ("on_close", "onClose"),
    ],
)
def test_both_python_and_codbex_name_is_an_error(python: str, codbex: str) -> None:
    with pytest.raises(HandlerError) as caught:
        Handlers.from_namespace({python: lambda *a: None, codbex: lambda *a: None})
    assert str(caught.value) == f"both {python} and {codbex} are defined; keep one of them"


def test_too_many_required_arguments_names_the_function() -> None:
    def on_open(client, extra):
        pass

    with pytest.raises(HandlerError) as caught:
        Handlers.from_namespace({"on_open": on_open})
    assert str(caught.value) == (
        "on_open(client, extra) takes 2 arguments; it is called as on_open(client)"
    )


def test_too_many_arguments_codbex_name() -> None:
    def onMessage(message, client, session):
        pass

    with pytest.raises(HandlerError) as caught:
        Handlers.from_namespace({"onMessage": onMessage})
    assert str(caught.value) == (
        "onMessage(message, client, session) takes 3 arguments; "
        "it is called as onMessage(message, client)"
    )


def test_too_many_arguments_async() -> None:
    async def on_close(client, code, reason):
        pass

    with pytest.raises(HandlerError, match=r"^on_close\(client, code, reason\) takes 3 arguments"):
        Handlers.from_namespace({"on_close": on_close})


def test_required_keyword_only_argument_is_an_error() -> None:
    def on_message(message, *, client):
        pass

    with pytest.raises(HandlerError, match="on_message"):
        Handlers.from_namespace({"on_message": on_message})


def test_not_a_function_is_an_error() -> None:
    with pytest.raises(HandlerError) as caught:
        Handlers.from_namespace({"on_message": "echo"})
    assert str(caught.value) == "on_message is str, not a function"
    with pytest.raises(HandlerError) as caught:
        Handlers.from_namespace({"onClose": None})
    assert str(caught.value) == "onClose is NoneType, not a function"


def test_handler_error_is_a_value_error() -> None:
    assert issubclass(HandlerError, ValueError)


# --- near-miss warnings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("on_mesage", "on_message"),
        ("on_messages", "on_message"),
        ("onmessage", "on_message"),  # the DOM spelling
        ("on_opn", "on_open"),
        ("onClos", "onClose"),
    ],
)
def test_near_miss_names_warn(name: str, meant: str) -> None:
    h = Handlers.from_namespace({name: lambda *a: None})
    assert h.warnings == (f"{name!r} looks like a handler name; did you mean {meant!r}?",)
    assert h.defined == []


def test_near_miss_beside_real_handler_still_warns() -> None:
    h = Handlers.from_namespace({"on_open": lambda c: None, "on_mesage": lambda m, c: None})
    assert h.defined == ["open"]
    assert h.warnings == ("'on_mesage' looks like a handler name; did you mean 'on_message'?",)


def test_no_warning_for_unrelated_names_or_non_callables() -> None:
    h = Handlers.from_namespace(
        {
            "helper": lambda: None,
            "send_all": lambda: None,
            "on_mesage": "not callable",
            "json": types.ModuleType("json"),
            "on_message": lambda m, c: None,
        }
    )
    assert h.warnings == ()


# --- from_source -----------------------------------------------------------------------------


ECHO = """\
def on_message(message, client):
    return message
"""


def test_from_source_without_fallback() -> None:
    h = Handlers.from_source(
        "def onMessage(message):\n    return (__name__, message)\n", "/x/my-handler.py"
    )
    assert h.defined == ["message"]
    assert h.on_message("hi", "c") == ("my-handler", "hi")
    assert h.source == "def onMessage(message):\n    return (__name__, message)\n"


def test_from_source_with_fallback_sees_notebook_names_live() -> None:
    notebook: dict[str, object] = {"prefix": ">", "counter": [0]}
    source = textwrap.dedent(
        """\
        def on_message(message, client):
            counter[0] += 1
            return prefix + message
        """
    )
    h = Handlers.from_source(source, "<cell-1>", fallback=notebook)
    assert h.on_message("a", "c") == ">a"
    notebook["prefix"] = "#"  # a later cell changes the notebook
    assert h.on_message("b", "c") == "#b"
    assert notebook["counter"] == [2]


def test_from_source_names_added_to_fallback_later_are_seen() -> None:
    notebook: dict[str, object] = {}
    h = Handlers.from_source(
        "def on_message(message, client):\n    return later(message)\n", "<cell>", notebook
    )
    with pytest.raises(NameError, match="later"):
        h.on_message("x", "c")
    notebook["later"] = str.upper
    assert h.on_message("x", "c") == "X"


def test_from_source_own_names_shadow_the_fallback() -> None:
    notebook = {"greeting": "notebook", "helper": lambda: "notebook helper"}
    source = textwrap.dedent(
        """\
        greeting = "cell"
        def helper():
            return "cell helper"
        def on_message(message, client):
            return greeting, helper()
        """
    )
    h = Handlers.from_source(source, "<cell>", notebook)
    assert h.on_message("m", "c") == ("cell", "cell helper")
    assert notebook["greeting"] == "notebook"


def test_from_source_builtins_still_work_with_fallback() -> None:
    h = Handlers.from_source(
        "def on_message(message, client):\n    return len(message), sorted(message)\n",
        "<cell>",
        {"unrelated": 1},
    )
    assert h.on_message("cab", "c") == (3, ["a", "b", "c"])


def test_from_source_fallback_names_shadow_builtins() -> None:
    # As in a notebook, a user's own ``len`` wins over the builtin.
    h = Handlers.from_source(
        "def on_message(message, client):\n    return len(message)\n",
        "<cell>",
        {"len": lambda _: "notebook len"},
    )
    assert h.on_message("abc", "c") == "notebook len"


def test_from_source_unknown_name_is_a_name_error() -> None:
    h = Handlers.from_source("def on_message(message, client):\n    return nowhere\n", "<cell>", {})
    with pytest.raises(NameError, match="nowhere"):
        h.on_message("m", "c")


def test_from_source_names_do_not_leak_into_the_fallback() -> None:
    notebook: dict[str, object] = {"existing": 1}
    source = textwrap.dedent(
        """\
        import json
        helper_value = 42
        def on_message(message, client):
            global state
            state = message
            return state
        """
    )
    h = Handlers.from_source(source, "<cell>", notebook)
    assert h.on_message("m", "c") == "m"
    assert notebook == {"existing": 1}


def test_two_cells_with_the_same_names_do_not_clash() -> None:
    notebook: dict[str, object] = {}
    first = Handlers.from_source(
        "tag = 'one'\ndef on_message(message, client):\n    return tag\n", "<cell-1>", notebook
    )
    second = Handlers.from_source(
        "tag = 'two'\ndef on_message(message, client):\n    return tag\n", "<cell-2>", notebook
    )
    assert first.on_message("m", "c") == "one"
    assert second.on_message("m", "c") == "two"


def test_from_source_handlers_only_from_the_cell_not_from_the_fallback() -> None:
    notebook = {"on_message": lambda m, c: "notebook handler", "on_mesage": lambda: None}
    h = Handlers.from_source("def on_open(client):\n    return client\n", "<cell>", notebook)
    assert h.defined == ["open"]
    assert h.on_message is None
    assert h.warnings == ()


def test_from_source_cell_runs_as_main() -> None:
    h = Handlers.from_source(
        "def on_open(client):\n    return __name__\n", "<cell>", {"__name__": "other"}
    )
    assert h.on_open("c") == "__main__"


def test_from_source_warns_about_near_misses() -> None:
    h = Handlers.from_source("def on_mesage(message, client):\n    pass\n", "<cell>", {})
    assert h.defined == []
    assert h.warnings == ("'on_mesage' looks like a handler name; did you mean 'on_message'?",)


def test_from_source_keeps_source_and_registers_lines_for_tracebacks() -> None:
    filename = "<ws-cell-test-linecache>"
    h = Handlers.from_source(ECHO, filename)
    assert h.source == ECHO
    assert linecache.getline(filename, 2) == "    return message\n"


def test_from_source_syntax_error_names_file_and_line() -> None:
    source = "x = 1\n\ndef on_message(message client):\n    pass\n"
    with pytest.raises(HandlerError) as caught:
        Handlers.from_source(source, "handlers/echo.py")
    message = str(caught.value)
    assert message.startswith("handlers/echo.py:3: ")
    assert "invalid syntax" in message or "comma" in message
    assert isinstance(caught.value.__cause__, SyntaxError)


def test_from_source_unclosed_bracket() -> None:
    with pytest.raises(HandlerError) as caught:
        Handlers.from_source("x = (\n", "cell.py")
    assert str(caught.value) == "cell.py:1: '(' was never closed"


def test_from_source_bad_signature_is_a_handler_error() -> None:
    with pytest.raises(HandlerError, match=r"^onOpen\(a, b\) takes 2 arguments"):
        Handlers.from_source("def onOpen(a, b):\n    pass\n", "<cell>")


# --- from_file -------------------------------------------------------------------------------


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "my-handler.py"
    path.write_text("def onMessage(message):\n    return __name__ + ':' + message\n", "utf-8")
    h = Handlers.from_file(path)
    assert h.on_message("hi", "c") == "my-handler:hi"
    assert h.source == path.read_text("utf-8")
    h2 = Handlers.from_file(str(path))
    assert h2.defined == ["message"]


def test_from_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.py"
    with pytest.raises(HandlerError) as caught:
        Handlers.from_file(path)
    assert str(caught.value) == f"{path}: cannot read handler: No such file or directory"
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_from_file_folder(tmp_path: Path) -> None:
    with pytest.raises(HandlerError) as caught:
        Handlers.from_file(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read handler: Is a directory"


def test_from_file_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def on_open(client):\n    pass\n\ndef on_message(:\n", "utf-8")
    with pytest.raises(HandlerError) as caught:
        Handlers.from_file(path)
    assert str(caught.value).startswith(f"{path}:4: ")


def test_from_file_without_running(tmp_path: Path) -> None:
    path = tmp_path / "h.py"
    path.write_text(
        "import functools\n"
        "raise SystemExit('never run')\n"
        "@functools.lru_cache\n"
        "def on_open(a, b, c):\n"
        "    pass\n"
        "on_close: object = print\n"
        "def onMesage(message):\n"
        "    pass\n",
        "utf-8",
    )
    h = Handlers.from_file(path, run=False)
    assert h.defined == ["open", "close"]  # a decorated def's signature is not known until it runs
    assert (h.on_open, h.on_message, h.on_error, h.on_close) == (None, None, None, None)
    assert h.warnings == ("'onMesage' looks like a handler name; did you mean 'onMessage'?",)
    assert h.source == path.read_text("utf-8")
    with pytest.raises(HandlerError, match=r"h\.py:2: SystemExit: never run"):
        Handlers.from_file(path)


def test_from_file_module_globals(tmp_path: Path) -> None:
    path = tmp_path / "h.py"
    path.write_text("NAMES = (__name__, __file__)\ndef on_open(client):\n    return NAMES\n")
    assert Handlers.from_file(path).on_open(None) == ("h", str(path))


# --- from_object -----------------------------------------------------------------------------


def test_from_object_dict() -> None:
    h = Handlers.from_object({"onMessage": lambda m: m * 2, "helper": 1})
    assert h.defined == ["message"]
    assert h.on_message("ab", "c") == "abab"
    assert h.source is None


def test_from_object_dict_warns_about_near_misses() -> None:
    h = Handlers.from_object({"on_mesage": lambda m: m})
    assert h.defined == []
    assert h.warnings == ("'on_mesage' looks like a handler name; did you mean 'on_message'?",)


def test_from_object_dict_with_both_names() -> None:
    with pytest.raises(HandlerError, match="both on_open and onOpen"):
        Handlers.from_object({"on_open": lambda c: 1, "onOpen": lambda: 2})


def test_from_object_plain_object() -> None:
    class EchoService:
        def __init__(self) -> None:
            self.opened: list[str] = []

        def on_open(self, client):
            self.opened.append(client)

        def onMessage(self, message):
            return message[::-1]

        def unrelated(self):
            return None

    service = EchoService()
    h = Handlers.from_object(service)
    assert h.defined == ["open", "message"]
    h.on_open("c1")
    assert service.opened == ["c1"]
    assert h.on_message("abc", "c1") == "cba"
    assert h.source is None


def test_from_object_class_namespace() -> None:
    ns = types.SimpleNamespace(on_close=lambda: "closed", on_error=lambda error, client: error)
    h = Handlers.from_object(ns)
    assert h.defined == ["error", "close"]
    assert h.on_close("c") == "closed"
    assert h.on_error("e", "c") == "e"


def test_from_object_module_from_file_keeps_source(tmp_path: Path) -> None:
    source = (
        "def onOpen():\n    return 'open'\n\ndef on_message(message, client):\n    return message\n"
    )
    path = tmp_path / "ws_test_handler_module.py"
    path.write_text(source, "utf-8")
    spec = importlib.util.spec_from_file_location("ws_test_handler_module", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    h = Handlers.from_object(module)
    assert h.defined == ["open", "message"]
    assert h.on_open("c") == "open"
    assert h.on_message("m", "c") == "m"
    assert h.source == source


def test_from_object_module_without_source() -> None:
    module = types.ModuleType("generated")
    module.onMessage = lambda message: message  # type: ignore[attr-defined]
    h = Handlers.from_object(module)
    assert h.defined == ["message"]
    assert h.source is None
    assert h.on_message("m", "c") == "m"


def test_from_object_handlers_is_returned_as_is() -> None:
    h = Handlers.from_namespace({"on_open": lambda c: c})
    assert Handlers.from_object(h) is h


def test_from_object_without_handlers() -> None:
    h = Handlers.from_object(object())
    assert h.defined == []


def test_from_object_bad_signature() -> None:
    class Bad:
        def on_message(self, a, b, c):
            pass

    with pytest.raises(HandlerError, match=r"^on_message\(a, b, c\) takes 3 arguments"):
        Handlers.from_object(Bad())


# --- names a module reads but never defines ---------------------------------------------------


def test_free_names_are_the_globals_read_and_never_bound_in_order_of_first_read() -> None:
    source = textwrap.dedent(
        """\
        from __future__ import annotations
        import json as j
        LIMIT = 3

        def on_message(message: Message, client) -> None:
            global count
            count = len(message)
            def reply(text):
                return PREFIX + text + suffix
            client.send(reply(j.dumps([m for m in message if m not in SKIP])))

        class Room:
            members = MEMBERS
            def join(self):
                return super().join(LIMIT, count)
        """
    )
    # count is bound by the assignment under ``global``; the annotations are never evaluated.
    assert free_names(source) == {
        "len": 7,
        "PREFIX": 9,
        "suffix": 9,
        "SKIP": 10,
        "MEMBERS": 13,
        "super": 15,
    }


@pytest.mark.parametrize(
    "source",
    [
        "import json\ndef on_message(m, c):\n    c.send(json.dumps(m), len(m))\n",
        "def on_open(c):\n    global n\n    n = 1\ndef on_close(c):\n    print(n)\n",
        "try:\n    import ujson as json\nexcept ImportError:\n    json = None\n"
        "def on_message(m, c):\n    c.send(json)\n",
        "from helpers import *\ndef on_message(m, c):\n    c.send(shout(m))\n",
        "def on_message(m, c):\n    c.send((__name__, __file__, [x for x in m]))\n",
    ],
    ids=["imports-and-builtins", "global-in-a-function", "try-import", "star-import", "dunders"],
)
def test_checking_without_running_accepts_names_that_are_defined(source: str) -> None:
    assert Handlers.from_syntax(source, "h.py").source == source


def test_checking_without_running_reports_every_undefined_name_with_its_line() -> None:
    source = (
        "import json\n"
        "\n"
        "def on_open(client):\n"
        "    client.send(PREFIX)\n"
        "\n"
        "def on_message(message, client):\n"
        "    client.send(PREFIX + json.dumps(shout(message)))\n"
    )
    with pytest.raises(HandlerError) as caught:
        Handlers.from_syntax(source, "echo.py")
    assert str(caught.value) == (
        "echo.py:4: name 'PREFIX' is not defined\necho.py:7: name 'shout' is not defined"
    )


# --- running a cell again -------------------------------------------------------------------


CHAT = textwrap.dedent(
    """\
    names = {}
    tag = "v1"
    started = object()
    shout = str.upper
    def on_open(client):
        names[client] = client
    def on_message(message, client):
        return tag, names[client], message
    """
)


def test_a_rerun_keeps_the_values_of_unchanged_assignments() -> None:
    notebook: dict[str, object] = {}
    first = Handlers.from_source(CHAT, "<cell>", notebook)
    first.on_open("ada")
    again = Handlers.from_source(CHAT, "<cell>", notebook, first)
    assert again.kept == ("names", "tag", "started")  # not shout: a callable is the new run's
    assert again.on_message("hi", "ada") == ("v1", "ada", "hi")
    assert again.namespace["started"] is first.namespace["started"]
    edited = Handlers.from_source(CHAT.replace('"v1"', '"v2"'), "<cell>", notebook, again)
    assert edited.kept == ("names", "started")
    assert edited.on_message("hi", "ada") == ("v2", "ada", "hi")


def test_a_rerun_keeps_nothing_without_previous_handlers_from_source(tmp_path: Path) -> None:
    path = tmp_path / "chat.py"
    path.write_text(CHAT)
    from_file = Handlers.from_file(path)
    fresh = Handlers.from_source(CHAT, "<cell>", {}, from_file)
    assert fresh.kept == ()  # a file's module state is its own
    assert Handlers.from_source(CHAT, "<cell>", {}).kept == ()


def test_a_rerun_does_not_keep_a_name_the_cell_no_longer_assigns() -> None:
    first = Handlers.from_source(CHAT, "<cell>", {})
    again = Handlers.from_source(CHAT.replace("names = {}\n", ""), "<cell>", {}, first)
    assert "names" not in again.kept and "names" not in again.namespace
