"""A map over ten documents whose process can kill itself mid-map, for the durable map test.

    python tests/mapflow.py WORKSPACE LOGDIR [CRASH_AT_ITEM [CONCURRENCY]]

Starts (or resumes) run "map-run". Each item appends ``start:I`` to LOGDIR/ran.log; with
``CRASH_AT_ITEM`` the process sends itself SIGKILL when that item starts, after the items before
it (one at a time: max_concurrency=1) were checkpointed. With ``CONCURRENCY`` (2 or more) items
run that many at a time, and the item before the one that crashes sleeps, so it is in flight too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import wfkit as wf


def build(log_dir: Path, crash_at: int | None, concurrency: int = 1) -> wf.Workflow:
    flow = wf.Workflow("mapflow", inputs=["docs"])

    @flow.map(over="docs", into="sizes", max_concurrency=concurrency)
    async def size(doc: str, ctx: wf.StepContext) -> int:
        with (log_dir / "ran.log").open("a") as fh:
            fh.write(f"start:{ctx.map_index}\n")
            fh.flush()
            os.fsync(fh.fileno())
        if crash_at == ctx.map_index:
            os.kill(os.getpid(), signal.SIGKILL)
        if crash_at is not None and concurrency > 1 and ctx.map_index == crash_at - 1:
            await asyncio.sleep(30)  # still running when its neighbour kills the process
        return len(doc)

    @flow.step
    def total(state: Any) -> dict[str, Any]:
        return {"total": sum(state["sizes"])}

    flow.edge("size", "total")
    return flow


def main() -> None:
    workspace, log_dir = Path(sys.argv[1]), Path(sys.argv[2])
    crash_at = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    flow = build(log_dir, crash_at, concurrency)
    ws = wf.Workspace(workspace, create=True)
    if any(r["run_id"] == "map-run" for r in ws.runs()):
        run = flow.resume("map-run", workspace=workspace)
    else:
        docs = ["x" * (i + 1) for i in range(10)]
        run = flow.run({"docs": docs}, run_id="map-run", workspace=workspace)
    (log_dir / "result.json").write_text(json.dumps({"status": run.status, "state": run.state}))


if __name__ == "__main__":
    main()
