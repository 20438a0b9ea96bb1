"""What a replay's kernel does before the notebook's first cell, so that what its cells show holds
everything the comparison needs.

pandas cuts a table of more than 60 rows to its first and last few (``...`` between them), in its
text and its HTML alike, and a long string in a cell to 50 characters: a value changed in what it
cut would replay ok. A replay's kernel shows every row, column and character instead, in what the
cells display and what they print.

The replay hands its kernel ``$PYTHONSTARTUP`` naming :data:`STARTUP`, which IPython runs at start
in the notebook's namespace, before any cell; it calls :func:`setup`, defines no name, and sets
``$PYTHONSTARTUP`` back to what the user had (whose file then runs, as it would have). Nothing is
written into the notebook, on disk or as a cell, and the numbering of its cells is untouched; a
kernel Jupyter starts never runs this, so what a user sees there is pandas' usual table.
"""

from __future__ import annotations

import os
from pathlib import Path

STARTUP = Path(__file__).with_name("_startup.py")
USER_STARTUP = "WFKIT_REPLAY_USER_PYTHONSTARTUP"  # the user's $PYTHONSTARTUP, while the replay's stands in
WHOLE = ("display.max_rows", "display.max_columns", "display.max_colwidth", "display.max_seq_items")


def environment(env: dict[str, str]) -> dict[str, str]:
    """What to add to the environment ``env`` of the process that starts the replay's kernel."""
    return {"PYTHONSTARTUP": str(STARTUP), USER_STARTUP: env.get("PYTHONSTARTUP", "")}


def setup() -> None:
    """In the replay's kernel, at its start: pandas shows tables whole; then the user's own startup file."""
    import pandas as pd

    for option in WHOLE:
        pd.set_option(option, None)
    from IPython import get_ipython

    shell = get_ipython()
    user = os.environ.pop(USER_STARTUP, "")
    if not user:
        os.environ.pop("PYTHONSTARTUP", None)
        return
    os.environ["PYTHONSTARTUP"] = user
    if shell is not None:
        shell.safe_execfile(user, shell.user_ns, raise_exceptions=True)
