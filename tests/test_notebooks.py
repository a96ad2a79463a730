"""Every demo notebook runs top to bottom without errors in a real kernel."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.slow, pytest.mark.kernel]  # nbclient runs each notebook in a kernel

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

# Text each notebook must print, showing it did its job rather than merely ran.
EXPECTED = {
    "quickstart": ["welcome, c", "hello", "binary", "echo"],
    "chat-room": [
        "* ada joined",
        "ada: hello, Grace",
        "grace: hi Ada!",
        "the notebook says hello too",
    ],
    "live-data": ["history on connect:", "live: {'n':", "points sent"],
    # its own demo feed here; tests/test_outbound.py runs it against a websockets server
    "outbound-feed": [
        "first message: hello",
        'echo:{"subscribe": "ticks"}',
        "echo:ping from the notebook",
        "handlers updated in place",
        "feed: closed",
    ],
    "codbex-project": [
        "Hello c",
        "my-websocket received: hello codbex",
        "'most_common': [['to', 2], ['be', 2], ['or', 1]]",
        "Hello from WebSocket! [hello from the notebook]",
        "sent hello from the notebook",
        "bad.websocket: endpoint: 'my ws' is not a valid endpoint name",
        '"handler": "exported-project/shout.py"',
        "EXPORTED AND BACK",
    ],
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert [o for o in outputs if o.output_type == "error"] == []
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    for expected in EXPECTED.get(path.stem, []):
        assert expected in text
