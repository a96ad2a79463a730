"""The documentation site: it builds with warnings as errors, its examples run, its links resolve,
and the README stays a short front page.

Every Python block of a page and of the README (and every ``%%websocket`` cell, JavaScript ones
included) runs, in page order, as the cells of one notebook in a real kernel whose working folder is a copy of
``notebooks/`` (so the sample ``codbex-project/`` is there). A block that needs a browser or a
deployment is preceded by ``<!-- docs-test: skip (why) -->``; there are few, and each says why.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from jupyter_client.manager import KernelManager

from tests.kernels import Kernel

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.rglob("*.md"))

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
SKIP = re.compile(r"<!-- docs-test: skip \((?P<why>[^)]+)\) -->[ \t]*$", re.M)
EXPECTED = re.compile(r"^\s*print\(.*\)\s+# (?P<text>.+)$", re.M)  # print(x)  # what it prints
LINK = re.compile(r"\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
MAX_SKIPPED = 12  # blocks that need a browser, a deployment or a Redis: keep them few

# The two commands CI runs, exactly as the README gives them first.
DEMO = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[demo]' && .venv/bin/jupyter lab "
    "--ip=127.0.0.1 --allow-root notebooks/quickstart.ipynb"
)
TEST = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """The runnable blocks of a page: (line, code, why it is skipped or None)."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        language = match["info"].strip().split(" ")[0]
        body = match["body"]
        if language != "python" and not body.startswith("%%websocket"):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, body, skip["why"] if skip else None))
    return found


def relative_links(page: Path) -> list[str]:
    """Links to files of the repository (not URLs, not anchors within the page)."""
    text = FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = (match["target"] for match in LINK.finditer(text))
    return [t for t in targets if not urlparse(t).scheme and not t.startswith("#")]


def test_docs_build_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reference" / "python-api" / "index.html").is_file()
    api = (tmp_path / "reference" / "python-api" / "index.html").read_text()
    assert "Mount an endpoint and make sure the server is running" in api  # from a docstring
    schema = (tmp_path / "reference" / "descriptor" / "index.html").read_text()
    assert "createdAt" in schema  # the schema file, included as it is


RUNNABLE = [p for p in [README, *PAGES] if any(why is None for _, _, why in blocks(p))]


@pytest.mark.kernel
@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_examples_run(page: Path, tmp_path: Path) -> None:
    """The page's blocks, in order, in one fresh kernel: each must finish without an error, no
    handler may raise (handler errors go to the cell's stderr, not to the cell's status), and a
    ``print(...)  # text`` line must print that text."""
    work = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", work)
    manager = KernelManager(kernel_name="python3")
    manager.kernel_spec.argv[0] = sys.executable
    manager.start_kernel(cwd=str(work))
    kernel = Kernel(manager)
    try:
        for line, code, why in blocks(page):
            if why is not None:
                continue
            reply = kernel.run(code, timeout=60, check=False)
            where = f"{page.relative_to(ROOT)}:{line}"
            assert reply.error is None, f"{where}: {reply.error}\n{reply.stderr}"
            assert "Traceback" not in reply.stderr, f"{where}:\n{reply.stderr}"
            assert " raised " not in reply.stderr, f"{where}:\n{reply.stderr}"
            for expected in EXPECTED.findall(code):
                assert expected.strip() in reply.stdout, f"{where}: {expected!r} not in output"
    finally:
        kernel.stop()


def test_skipped_examples_are_few() -> None:
    skipped = [
        f"{page.relative_to(DOCS)}:{line} ({why})"
        for page in PAGES
        for line, _, why in blocks(page)
        if why is not None
    ]
    assert len(skipped) <= MAX_SKIPPED, "\n".join(skipped)
    assert sum(why is None for page in PAGES for _, _, why in blocks(page)) >= 20


def test_every_skip_marker_precedes_a_block() -> None:
    """A marker whose block is not Python (or moved) would silently skip nothing."""
    for page in PAGES:
        markers = len(SKIP.findall(page.read_text()))
        skipped = sum(why is not None for _, _, why in blocks(page))
        assert markers == skipped, page


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    links = relative_links(page)
    for target in links:
        path = unquote(target.split("#", 1)[0])
        if path:
            assert (page.parent / path).exists(), f"{page.relative_to(ROOT)}: {target}"
    if page == README:
        assert any(link.startswith("docs/") for link in links)


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.encode()) < 6 * 1024, len(text.encode())
    first_two = [(m["info"], m["body"]) for m in FENCE.finditer(text)][:2]
    assert first_two == [("bash", DEMO + "\n"), ("bash", TEST + "\n")]
    assert "mybinder.org/badge_logo.svg" in text


def options(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """Every long option of a parser and of its subcommands, by command ("" for the parser)."""
    found = {"": {s for a in parser._actions for s in a.option_strings if s.startswith("--")}}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = options(sub)[""]
    for names in found.values():
        names.discard("--help")
    return found


def in_code(name: str, page: str) -> bool:
    """Whether ``name`` appears in one of the page's code spans (as an option, not in prose)."""
    return re.search(rf"`[^`\n]*{re.escape(name)}\b[^`\n]*`", page) is not None


def test_cli_reference_names_every_option() -> None:
    from ws_notebook.cli import _parser

    page = (DOCS / "reference" / "cli.md").read_text()
    for command, names in options(_parser()).items():
        assert f"`ws-notebook {command}" in page or not command, command
        for name in names:
            assert in_code(name, page), f"ws-notebook {command} {name}"


def test_magics_reference_names_every_option() -> None:
    from ws_notebook.magics import _cell_parser, _line_parser

    page = (DOCS / "reference" / "magics.md").read_text()
    for name in options(_cell_parser())[""]:
        assert in_code(name, page), f"%%websocket {name}"
    for command, names in options(_line_parser()).items():
        if command:
            assert f"`{command}" in page, f"%websocket {command}"
        for name in names:
            assert in_code(name, page), f"%websocket {command} {name}"
