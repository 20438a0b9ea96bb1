"""What a replay found for each notebook, and the totals line that sums it up."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wfkit.replay._compare import Difference
from wfkit.replay._kernel import WHOLE_CELLS
from wfkit.replay._outputs import IGNORE_FIGURE_DATA_TAG, IGNORE_TAG

# Statuses, and which of them fail the replay (exit 1).
OK, UPDATED, REGRESSION, FAILED, NO_BASELINE = "ok", "baseline updated", "regression", "failed", "no baseline"
BAD_BASELINE = "bad baseline"  # a baseline file that cannot be read as one
FAILING = (REGRESSION, FAILED, NO_BASELINE, BAD_BASELINE)


@dataclass
class NotebookReport:
    """One notebook's replay: its status, what differs, what failed, and where its files are."""

    key: str  # path from the project root
    status: str
    seconds: float
    runs: int
    diffs: list[Difference] = field(default_factory=list)
    error: dict[str, Any] | None = None  # cell, exception, message, traceback
    # No baseline or a bad one: where, what is wrong and how to get one; or what an older one leaves out.
    hint: str | None = None
    output: Path | None = None  # the executed notebook
    kernel_log: Path | None = None
    plot: Path | None = None  # the latency chart
    nothing_compared: str | None = None  # why an ok notebook tested nothing: "no runs, no cell output"
    digested: list[str] = field(default_factory=list)  # what was too big to compare but by its digest
    parameters: dict[str, Any] = field(default_factory=dict)  # what the replay handed the notebook (-p, -f, -y)

    @property
    def failing(self) -> bool:
        return self.status in FAILING

    @property
    def verdict(self) -> str:
        """Its status, and for an ok notebook that compared nothing, that it did: a pass that tests
        nothing must not read like one that tested something."""
        return f"{self.status} (nothing compared: {self.nothing_compared})" if self.nothing_compared else self.status

    @property
    def error_cell(self) -> str:
        """``cell 8 (import time)``: the failing cell as a difference names one (its first line of
        code, when the row has it); empty for an error of no cell."""
        e = self.error or {}
        if e.get("cell") is None:
            return ""
        return f"cell {e['cell']} ({e['code']})" if e.get("code") else f"cell {e['cell']}"

    @property
    def error_line(self) -> str:
        """``cell 3 (raise ValueError("bad")): ValueError: bad``, or without the cell for an error of
        none (the kernel's setup)."""
        e = self.error or {}
        where = f"{self.error_cell}: " if self.error_cell else ""
        return f"{where}{e.get('exception')}: {e.get('message')}"

    @property
    def digest_note(self) -> str:
        """What was compared by a digest of every cell, not line by line (empty if nothing was)."""
        if not self.digested:
            return ""
        return (
            f"too big to compare line by line (over {WHOLE_CELLS:,} cells), so compared by a digest of every cell: "
            + "; ".join(self.digested)
        )

    @property
    def accept_note(self) -> str:
        """For a regression, what to do when its differences are no regression: a change meant is
        recorded; a cell whose output differs on every run by nature is tagged out of the comparison
        (the README says both; the user reading CI's log has only these lines). Empty otherwise."""
        if self.status != REGRESSION:
            return ""
        note = f"a change you meant: record it, `{replay_command(self.key, self.parameters)} --update-baseline`"
        if any(d.cell for d in self.diffs):
            note += (
                f"; a cell whose output differs on every run (a measured value, an unseeded draw): tag it "
                f"`{IGNORE_TAG}` (a plot of measured values: `{IGNORE_FIGURE_DATA_TAG}`)"
            )
        return note

    def line(self) -> str:
        """The line printed when this notebook finishes, then its errors and differences."""
        lines = [f"{self.verdict:>16}  {self.key}  ({plural(self.runs, 'run')}, {self.seconds:.1f} s)"]
        if self.error:
            lines.append(f"{'':>18}{self.error_line}")
        if self.hint:
            lines.append(f"{'':>18}{self.hint}")
        if self.digested:
            lines.append(f"{'':>18}{self.digest_note}")
        lines.extend(f"{'':>18}- {d}" for d in self.diffs)
        if self.accept_note:
            lines.append(f"{'':>18}{self.accept_note}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "notebook": self.key,
            "status": self.status,
            "nothing_compared": self.nothing_compared,
            "digested": self.digested,
            "seconds": round(self.seconds, 2),
            "runs": self.runs,
            "diffs": [d.to_json() for d in self.diffs],
            "error": self.error,
            "hint": self.hint,
            "output": None if self.output is None else str(self.output),
            "kernel_log": None if self.kernel_log is None else str(self.kernel_log),
            "plot": None if self.plot is None else str(self.plot),
        }


def replay_command(key: str, parameters: Mapping[str, Any]) -> str:
    """``wfkit replay KEY -p seed 8``: the command that replays a notebook with these parameters."""
    given = "".join(f" -p {name} {shlex.quote(_yaml_text(value))}" for name, value in parameters.items())
    return f"wfkit replay {key}{given}"


def _yaml_text(value: Any) -> str:
    """A parameter's value as ``-p`` reads it back (YAML): 8, 0.5, true, a string as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) or value is None:
        return "null" if value is None else repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def plural(count: int, noun: str, many: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def totals(rows: Sequence[NotebookReport]) -> str:
    """``7 notebooks: 6 ok, 1 regression, 0 failed`` (and baselines missing or updated, if any)."""
    counts = Counter(r.status for r in rows)
    parts = [f"{counts[OK]} ok", plural(counts[REGRESSION], "regression"), f"{counts[FAILED]} failed"]
    if counts[NO_BASELINE]:
        parts.append(f"{counts[NO_BASELINE]} without a baseline")
    if counts[BAD_BASELINE]:
        parts.append(f"{counts[BAD_BASELINE]} with a bad baseline")
    if counts[UPDATED]:
        parts.append(f"{plural(counts[UPDATED], 'baseline')} updated")
    return f"{plural(len(rows), 'notebook')}: {', '.join(parts)}"
