"""``python -m wfkit``: the same as the ``wfkit`` command."""

from wfkit.cli._cli import main

raise SystemExit(main())
