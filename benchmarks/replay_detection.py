"""How well `wfkit replay` catches regressions, and how often it cries wolf.

    python benchmarks/replay_detection.py [--unchanged 20] [--jobs 2] [--json]

notebooks/07_regression_replay.ipynb takes a `change` parameter that alters its workflow in one
seeded way; each kind of change moves one signal of the baseline (a route, the tools bound or
called, an attempt's error kind, type or message, a retry delay, a decision's decider or comment,
the model or token counts of an LLM call, what a step wrote, the final state, latency, what a cell
shows: a table's hidden row, an array's hidden element, a table's float below the decimals shown,
a figure's data...), or one signal of an eval's run, which only the eval's step log shows. Every
change is replayed against the committed baseline; it is caught when replay exits non-zero *and*
names the signal it moved (an eval's change: in that eval's run, by suite, variant and case).
Then the unchanged notebook is replayed N times: any non-zero exit is a false alarm. Both batches
run `--jobs` notebooks at a time, as CI would; run it beside a CPU load to see that a busy machine
raises no alarm.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time
from pathlib import Path

from wfkit.replay._compare import Difference
from wfkit.replay._replay import replay
from wfkit.replay._result import NotebookReport

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_regression_replay.ipynb"
# change -> the signal a difference must name for the change to count as caught
CHANGES = {
    "other_branch": "route",
    "extra_retry": "attempts",
    "slower_step": "latency",
    "changed_output": "writes",
    "new_failure": "status",
    "dropped_step": "steps",
    "rejected_approval": "decision",
    "extra_loop": "steps",
    "different_error": "error_type",
    "missing_field": "state",
    "extra_tool_bound": "tools_bound",
    "extra_tool_call": "tools_called",
    "tool_cost": "tools_called",
    "failed_tool_call": "tools_called",
    "retry_backoff": "retry_delay",
    "error_message": "error_message",
    "error_kind": "error_kind",
    "step_timeout": "attempt_status",
    "other_decider": "decider",
    "decision_comment": "decision_comment",
    "gate_reason": "gate",
    "other_model": "model",
    "longer_prompt": "tokens_in",
    "longer_reply": "tokens_out",
    "extra_llm_call": "llm_calls",
    "extra_recorded": "extra",
    "draft_v1_text": "writes",
    "changed_input": "inputs",
    "extra_run": "runs",
    "hidden_row": "outputs",  # a value in a row pandas would cut from a 75-row table
    "plot_window": "outputs",  # a figure that draws other data at the same size and axes
    "long_array": "outputs",  # an element numpy would cut from a 1,500-element array
    "hidden_decimal": "outputs",  # a table's mean moved at its 7th decimal, below the 6 pandas shows
    "eval_route": "route",  # an eval's case routed elsewhere (its cases run at once), in no printed line
}


def _names(change: str, d: Difference) -> bool:
    """Whether ``d`` names the signal ``change`` moves, where it moves it (an eval's change in an eval's run)."""
    return d.signal == CHANGES[change] and (d.eval_case is not None or not change.startswith("eval_"))


def _batch(tmp: Path, label: str, parameters: list[dict[str, str]], jobs: int) -> list[NotebookReport]:
    """Replay the notebook once per parameter set, `jobs` replays at a time (each in a process of its
    own, as `wfkit replay --jobs` runs them), each against the committed baseline."""

    def one(index: int) -> NotebookReport:
        _code, rows = replay(
            [NOTEBOOK], root=ROOT, report=tmp / f"{label}{index}", jobs=1, parameters=parameters[index]
        )
        return rows[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, range(len(parameters))))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--unchanged", type=int, default=20, help="unchanged re-runs (false-alarm check)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks replayed at once")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    table: list[tuple[str, str, str, str]] = []
    caught, false_alarms = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        names = list(CHANGES)
        rows = _batch(Path(tmp), "change", [{"change": c} for c in names], args.jobs)
        for change, row in zip(names, rows, strict=True):
            hit = row.status == "regression" and any(_names(change, d) for d in row.diffs)
            caught += hit
            first = next((str(d) for d in row.diffs if _names(change, d)), None)
            shown = first or (row.diffs[0] if row.diffs else row.error or row.hint)
            table.append((change, CHANGES[change], "caught" if hit else "MISSED", str(shown)))
        same = _batch(Path(tmp), "same", [{} for _ in range(args.unchanged)], args.jobs)
        for row in same:
            if row.status != "ok":
                false_alarms += 1
                table.append(("(unchanged)", "-", "FALSE ALARM", str(row.diffs[:2] or row.error)))
    seconds = round(time.perf_counter() - t0, 1)
    result = {
        "workload": "R1",
        "what": "seeded changes caught by wfkit replay (naming the moved signal), and false alarms",
        "changes": len(CHANGES),
        "signals": len(set(CHANGES.values())),
        "caught": caught,
        "missed": [c for c, _s, verdict, _d in table if verdict == "MISSED"],
        "unchanged_runs": args.unchanged,
        "false_alarms": false_alarms,
        "jobs": args.jobs,
        "seconds": seconds,
    }
    if args.json:
        print(json.dumps(result))
        return
    print("| change | signal | verdict | first difference naming it |\n|---|---|---|---|")
    for change, signal, verdict, shown in table:
        print(f"| {change} | {signal} | {verdict} | {shown[:110]} |")
    print(
        f"\ncaught {caught}/{len(CHANGES)} changes across {result['signals']} signals; "
        f"{false_alarms} false alarms in {args.unchanged} unchanged re-runs (--jobs {args.jobs}); {seconds} s"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
