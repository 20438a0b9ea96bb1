"""What the replay's command-line options take, checked as they are parsed: shared by ``wfkit
replay`` and the pytest plugin, and cheap to import (the plugin loads in every pytest run)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def at_least_one(what: str) -> Callable[[str], int]:
    """An argparse type: a whole number of 1 or more; ``what`` (after a semicolon) says what the
    number counts, or how to leave it out. A smaller one is refused rather than taken: ``runs --limit
    0`` would list nothing and say the workspace holds no runs, ``demo --runs 0`` print empty tables,
    ``replay --jobs 0`` quietly ran one notebook at a time."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}; {what}")
        return value

    return parse


processes = at_least_one("it is how many notebooks run at once")


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
