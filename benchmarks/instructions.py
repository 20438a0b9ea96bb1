"""What a durable step costs in CPU instructions: W4's chain counted by valgrind, which load cannot move.

    python benchmarks/instructions.py [--json] [--chains 10]

Wall and CPU times on a shared 2-core machine move by 30% or more between two runs of the same
code (``fidelity.py`` measures its baselines in the same run for that reason), which hides a change
worth a few microseconds a step. Instructions do not move: this runs W4's sequential chain of 100
no-op steps (``fidelity.py``) at synchronous=NORMAL in child processes under
``valgrind --tool=callgrind`` and prints the instructions per step, the same on any load:

- ``memory``: the chain in memory (the engine alone);
- ``durable``: the chain in a workspace (what W4 measures);
- ``durable_no_journal_sql``: the same with the journal's INSERT left out (its row still made);
- ``durable_no_row``: the same with each step's journal row (redacted, checksummed) made once per step
  name and reused;
- ``sqlite3``: W4's baseline, a plain four-column INSERT committed per step.

From them, per durable step: ``journal_sql`` (the INSERT and its commit, in SQLite and the sqlite3
module), ``journal_row`` (the row and its checksum), and ``engine_glue`` (everything else a durable
step adds to the memory step: the writer's checks, the checkpoint's bookkeeping, its durable wait).
Each child runs ``--chains`` chains and three times as many after the same warm-up; the difference
is what the extra chains cost, so start-up and imports drop out. Instructions are not time (a
system call's kernel work is not counted, and an instruction that misses the cache costs more), so
use this to compare two versions of the code, and ``fidelity.py`` for the figures the targets name.
Needs valgrind (Debian: ``apt install valgrind``). Takes some three minutes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

STEPS = 100
_VALGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
VARIANTS = ("memory", "durable", "durable_no_journal_sql", "durable_no_row", "sqlite3")

_CHILD = textwrap.dedent(
    """
    import asyncio, itertools, json, os, sqlite3, sys, tempfile
    import wfkit as wf
    import wfkit.store._store as store_module
    from wfkit.logs._steplog import Exporter
    from wfkit.store._workspace import open_store

    variant, chains, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # Parquet exports run in a process of their own, which valgrind does not follow (and which
    # falls back to this process under valgrind's slowness): left out, as W4 leaves them out.
    Exporter.submit = lambda self, *args: None
    if variant == "durable_no_row":
        made, make = {}, store_module.event_row

        def reused(event, outcome=None, updates=None, failure=None):
            row = made.get(event.step)
            if row is None:
                row = made[event.step] = make(event, outcome, updates, failure)
            return (event.run_id, event.run_id, *row[2:])

        store_module.event_row = reused
    if variant == "durable_no_journal_sql":
        seqs = itertools.count(1)
        store_module.insert_rows = lambda conn, rows, nexts=None: [next(seqs) for _ in rows]

    async def noop(state, ctx=None):
        return {}

    flow = wf.Workflow("chain")
    names = [f"s{i}" for i in range(steps)]
    for name in names:
        flow.step(noop, name=name)
    flow.chain(*names)
    folder = tempfile.mkdtemp()
    os.environ["WFKIT_SYNCHRONOUS"] = "normal"
    # Every commit on the loop, as on a machine fast enough to stay within the loop's budget:
    # under valgrind a step takes 50 times as long, and the budget would send commits elsewhere.
    open_store(folder).writer.inline_budget = 1e9
    conn = sqlite3.connect(os.path.join(folder, "plain.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (run TEXT, seq INTEGER, step TEXT, updates TEXT)")

    async def chain():
        if variant == "sqlite3":
            state = {}
            for i in range(steps):
                update = await noop(state)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", ("r", i, f"s{i}", json.dumps(update)))
                conn.execute("COMMIT")
        else:
            await flow.arun({}, workspace=False if variant == "memory" else folder)

    async def main():
        for _ in range(3):
            await chain()
        for _ in range(chains):
            await chain()

    asyncio.run(main())
    """
)


def _instructions(variant: str, chains: int, repo: Path) -> int:
    """Instructions valgrind counted for a child that ran ``chains`` chains of ``variant``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(_CHILD)
        done = subprocess.run(
            [*_VALGRIND, sys.executable, str(script), variant, str(chains), str(STEPS)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            check=False,
        )
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the {variant} child failed under valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_step(chains: int, repo: Path) -> dict[str, float]:
    """Instructions per step of each variant: what 2 x ``chains`` more chains cost, per step (the
    children two at a time: valgrind runs each on one core)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        few = {v: pool.submit(_instructions, v, chains, repo) for v in VARIANTS}
        many = {v: pool.submit(_instructions, v, 3 * chains, repo) for v in VARIANTS}
        return {v: (many[v].result() - few[v].result()) / (2 * chains * STEPS) for v in VARIANTS}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--chains", type=int, default=10, help="chains per child (and three times as many)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("this benchmark counts instructions with valgrind: install it (Debian: apt install valgrind)")
    repo = Path(__file__).resolve().parent.parent
    counts = per_step(args.chains, repo)
    durable = counts["durable"]
    result: dict[str, Any] = {
        "what": f"instructions per step of a sequential {STEPS}-step chain, synchronous=NORMAL (valgrind)",
        **{f"{variant}_per_step": round(count) for variant, count in counts.items()},
        "durable_beyond_memory": round(durable - counts["memory"]),
        "journal_sql": round(durable - counts["durable_no_journal_sql"]),
        "journal_row": round(durable - counts["durable_no_row"]),
        "ratio_to_sqlite3": round(durable / counts["sqlite3"], 2),
    }
    result["engine_glue"] = result["durable_beyond_memory"] - result["journal_sql"] - result["journal_row"]
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:28s} {value}")


if __name__ == "__main__":
    main(sys.argv[1:])
