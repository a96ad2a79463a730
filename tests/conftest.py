"""Shared fixtures: a real IPython kernel to run magics in (tests/kernels.py, imported only by the
tests that ask for one) and a plain server on the test's own loop; and the ``kernel`` marker put
on every test that uses a kernel fixture, so ``-m "not kernel"`` leaves them out.

The markers (registered in pyproject.toml) are ``kernel`` (starts a real Jupyter kernel),
``browser`` (drives Chromium) and ``slow`` (left out of the fast loop,
``pytest -m "not slow and not browser"``); CONTRIBUTING.md says how to run the suite in pieces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from ws_notebook import Server

if TYPE_CHECKING:
    from .kernels import Kernel

KERNEL_FIXTURES = {"kernel", "fresh"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if KERNEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    """One kernel per test module, with the extension loaded."""
    from .kernels import start_kernel

    started = start_kernel()
    started.run("%load_ext ws_notebook\nimport json\nimport ws_notebook")
    yield started
    started.stop()


@pytest.fixture
def fresh(kernel: Kernel) -> Iterator[Kernel]:
    """The module's kernel, with no endpoints left over from an earlier test."""
    kernel.run(
        "import ws_notebook.widgets\n"
        "for panel in ws_notebook.widgets.panels(): panel.close()\n"
        "ws_notebook.reset()"
    )
    yield kernel


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A server on a free loopback port, on the test's loop; stopped afterwards."""
    started = Server()
    started.start()
    yield started
    started.stop()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Server]]:
    """Start servers with the given options; all are stopped afterwards."""
    started: list[Server] = []

    def start(**options: object) -> Server:
        server = Server(**options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
