"""What the replay's command-line options take, checked as they are parsed: shared by ``wfkit
replay`` and the pytest plugin, and cheap to import (the plugin loads in every pytest run)."""

from __future__ import annotations

import argparse
import math


def processes(text: str) -> int:
    """How many notebooks run at once: 1 or more (``--jobs 0`` quietly ran one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def cell_seconds(text: str) -> float:
    """A cell's time limit in seconds, above 0 and finite. papermill reads 0 or less as no limit at
    all, so a typo would let a cell that waits for a click hang the replay."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0, got {text}; a cell that runs longer fails its notebook "
            "(leave it out for 600 s; papermill would take 0 or less for no limit at all)"
        )
    return value
