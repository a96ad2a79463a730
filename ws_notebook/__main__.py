"""``python -m ws_notebook``: the ``ws-notebook`` command."""

from .cli import main

raise SystemExit(main())
