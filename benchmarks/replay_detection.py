"""How well `wfkit replay` catches regressions, and how often it cries wolf.

    python benchmarks/replay_detection.py [--json]

notebooks/07_regression_replay.ipynb takes a `change` parameter that alters its workflow in one
seeded way (a different branch, an extra retry, a slower step, a changed output, a new failure, a
dropped step, a rejected approval, an extra loop lap, a different error, a missing field). Each is
replayed against the committed baseline; a caught change is one that makes replay exit non-zero.
Then the unchanged notebook is replayed 10 times: any non-zero exit is a false alarm.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from wfkit.replay._replay import replay

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_regression_replay.ipynb"
CHANGES = [
    "other_branch",
    "extra_retry",
    "slower_step",
    "changed_output",
    "new_failure",
    "dropped_step",
    "rejected_approval",
    "extra_loop",
    "different_error",
    "missing_field",
]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--unchanged", type=int, default=10, help="unchanged re-runs (false-alarm check)")
    args = parser.parse_args(argv)
    caught, missed, false_alarms = [], [], 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for change in CHANGES:
            code, rows = replay(
                [NOTEBOOK],
                baseline=ROOT / "data" / "baselines",
                report=Path(tmp) / change,
                jobs=1,
                parameters={"change": change},
            )
            (caught if code else missed).append(change)
            if not args.json:
                print(f"{change:18} {'caught' if code else 'MISSED'}: {rows[0]['diffs'][:1] or rows[0]['error']}")
        for i in range(args.unchanged):
            code, rows = replay([NOTEBOOK], baseline=ROOT / "data" / "baselines", report=Path(tmp) / f"same{i}", jobs=1)
            false_alarms += bool(code)
            if code and not args.json:
                print(f"false alarm: {rows[0]['diffs'] or rows[0]['error']}")
    result = {
        "workload": "R1",
        "what": "seeded changes caught by wfkit replay, and false alarms",
        "changes": len(CHANGES),
        "caught": len(caught),
        "missed": missed,
        "unchanged_runs": args.unchanged,
        "false_alarms": false_alarms,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(
        json.dumps(result)
        if args.json
        else f"caught {len(caught)}/{len(CHANGES)} changes; {false_alarms} false alarms in {args.unchanged} re-runs"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
