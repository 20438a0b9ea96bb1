"""How long `import wfkit` takes, against importing asyncio alone, in fresh interpreters.

python benchmarks/import_time.py [--json] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _median_ms(code: str, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    bare = _median_ms("pass", args.repeats)
    wfkit_ms = _median_ms("import wfkit", args.repeats) - bare
    asyncio_ms = _median_ms("import asyncio", args.repeats) - bare
    row = {
        "workload": "I1",
        "what": "import wfkit (interpreter start-up subtracted)",
        "wfkit": round(wfkit_ms, 1),
        "asyncio": round(asyncio_ms, 1),
        "unit": "ms",
        "ratio": round(wfkit_ms / asyncio_ms, 1),
    }
    print(json.dumps(row) if args.json else f"I1 {row}")


if __name__ == "__main__":
    main(sys.argv[1:])
