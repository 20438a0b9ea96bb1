"""Which Jupyter this process runs in, and the progress bar that reads right there.

Below every layer (it imports nothing of wfkit): the engine decides interactive or headless from
:func:`in_kernel` and :func:`under_papermill` (``engine._mode``), and every long job shows its
progress with :func:`progress_bar`: an eval, ``run_many``, a job's bars on Dask.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any


def in_kernel() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, not plain Python)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def under_papermill() -> bool:
    """A kernel started by papermill/nbclient: it has no frontend."""
    return in_kernel() and "JPY_SESSION_NAME" not in os.environ


def progress_bar(total: int, *, desc: str, unit: str) -> Any:
    """A tqdm bar of ``total`` ``unit``: a widget in JupyterLab, text in a terminal.

    Under papermill (a CI run, ``wfkit replay``) a widget's updates are comm messages that no
    frontend renders, and the saved notebook keeps the widget's first text, "0%". An update of a
    display is applied to the saved output (by nbclient), so there the bar is text in one display,
    its last state kept (leave=True), without times: a replay compares it.
    """
    if under_papermill():
        from tqdm.std import tqdm as text_bar

        return text_bar(
            total=total,
            desc=desc,
            unit=unit,
            file=_OneDisplay(),
            bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} {unit}s",
            ascii=False,  # a file of no encoding would get "#" for blocks
        )
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)


class _OneDisplay:
    """A file for tqdm showing the last line written to it as one notebook output, updated in place."""

    def __init__(self) -> None:
        self._id = f"wfkit-progress-{random.randrange(16**12):012x}"
        self._shown = False

    def write(self, text: str) -> None:
        lines = text.replace("\r", "\n").split("\n")
        line = next((line.rstrip() for line in reversed(lines) if line.strip()), None)
        if line is None:  # the carriage returns and newlines between tqdm's lines
            return
        from IPython.display import display

        display({"text/plain": line}, raw=True, display_id=self._id, update=self._shown)  # type: ignore[no-untyped-call]
        self._shown = True

    def flush(self) -> None:
        pass
