"""Many durable runs in flight in one process, for crash tests of group commits.

    python tests/crashgroup.py WORKSPACE LOGDIR start RUNS KILL_AFTER
    python tests/crashgroup.py WORKSPACE LOGDIR resume

``start`` launches RUNS concurrent runs of ``a -> b -> email -> c`` (``email`` irreversible) and
kills the process with SIGKILL once KILL_AFTER step bodies have begun, while commits of many runs
are in flight. ``resume`` resumes every run of the workspace that did not succeed. Each body
appends ``start RUN STEP`` and ``done RUN STEP`` to LOGDIR/ran.log (fsynced before it goes on), and
``email`` appends ``RUN KEY`` to LOGDIR/outbox.txt, standing for an email sent. With
``$CRASHGROUP_INLINE=1``, ``a``, ``b`` and ``c`` take no context (the run's id comes from its
inputs), so the scheduler awaits and checkpoints them itself (a durable run's inline steps).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import wfkit as wf

STEPS = ["a", "b", "email", "c"]
PREDECESSOR = {"b": "a", "email": "b", "c": "email"}
_lock = threading.Lock()


def _append(path: Path, line: str) -> int:
    with _lock, path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()


def build(logs: Path, kill_after: int | None) -> wf.Workflow:
    flow = wf.Workflow("crashgroup")
    started = [0]

    def begin(run_id: str, step: str) -> None:
        _append(logs / "ran.log", f"start {run_id} {step}")
        started[0] += 1
        if kill_after is not None and started[0] >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def make(name: str) -> Any:
        async def step(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
            begin(ctx.run_id, name)
            await asyncio.sleep(random.uniform(0.001, 0.02))
            _append(logs / "ran.log", f"done {ctx.run_id} {name}")
            return {name: True}

        async def inline_step(state: Any) -> dict[str, Any]:
            begin(state["run"], name)
            await asyncio.sleep(random.uniform(0.001, 0.02))
            _append(logs / "ran.log", f"done {state['run']} {name}")
            return {name: True}

        return inline_step if os.environ.get("CRASHGROUP_INLINE") == "1" else step

    for name in ("a", "b", "c"):
        flow.step(make(name), name=name)

    @flow.step(irreversible=True)
    def email(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        begin(ctx.run_id, "email")
        _append(logs / "outbox.txt", f"{ctx.run_id} {ctx.idempotency_key}")
        _append(logs / "ran.log", f"done {ctx.run_id} email")
        return {"email": True}

    flow.chain(*STEPS)
    return flow


async def start(workspace: str, logs: Path, runs: int, kill_after: int) -> None:
    flow = build(logs, kill_after)
    await asyncio.gather(
        *(flow.arun({"run": f"run{i:03d}"}, run_id=f"run{i:03d}", workspace=workspace) for i in range(runs))
    )


def resume(workspace: str, logs: Path) -> dict[str, str]:
    flow = build(logs, None)
    statuses = {}
    for row in wf.Workspace(workspace).runs():
        if row["status"] != "succeeded":
            run = flow.resume(row["run_id"], workspace=workspace, raise_on_error=False)
            statuses[row["run_id"]] = run.status
    return statuses


if __name__ == "__main__":
    ws, log_dir, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if mode == "start":
        asyncio.run(start(ws, log_dir, int(sys.argv[4]), int(sys.argv[5])))
    else:
        print(json.dumps(resume(ws, log_dir)))
