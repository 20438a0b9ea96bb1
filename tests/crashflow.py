"""A 10-step workflow with a parallel section and an irreversible step, for crash tests.

    python tests/crashflow.py WORKSPACE LOGDIR [CRASH_AT]

Starts run "crash-run" (or resumes it if it exists). ``CRASH_AT`` is ``step:phase`` with phase
``start`` (right after the step begins: the boundary after the previous commit) or ``middle``
(after part of its work); the process then kills itself with SIGKILL, as a power cut or kill -9
would. Each step appends ``start:STEP`` and ``done:STEP`` to LOGDIR/ran.log; the irreversible
``email`` step appends a line to LOGDIR/outbox.txt, standing for an email sent.
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

STEPS = ["a", "b", "fan", "left", "right", "join", "c", "email", "d", "e"]


def build(log_dir: Path, crash_at: str | None) -> wf.Workflow:
    flow = wf.Workflow("crashflow", merge={"trail": wf.append})

    def note(line: str) -> None:
        with (log_dir / "ran.log").open("a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def maybe_crash(step: str, phase: str) -> None:
        if crash_at == f"{step}:{phase}":
            os.kill(os.getpid(), signal.SIGKILL)

    def make(name: str, delay: float) -> Any:
        async def step(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
            note(f"start:{name}")
            maybe_crash(name, "start")
            await asyncio.sleep(delay)
            maybe_crash(name, "middle")
            note(f"done:{name}")
            return {"trail": name, f"out_{name}": len(state.get("trail") or [])}

        return step

    for name in STEPS:
        if name == "email":
            continue
        # `right` is slow, so `left` has finished and committed when `right` crashes.
        flow.step(make(name, 0.3 if name == "right" else 0.01), name=name)

    @flow.step(irreversible=True)
    def email(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        note("start:email")
        maybe_crash("email", "start")
        with (log_dir / "outbox.txt").open("a") as fh:
            fh.write(f"email key={ctx.idempotency_key}\n")
            fh.flush()
            os.fsync(fh.fileno())
        maybe_crash("email", "middle")
        note("done:email")
        return {"trail": "email", "emailed": True}

    flow.chain("a", "b", "fan")
    flow.edge("fan", "left", "right")
    flow.edge("left", "join")
    flow.edge("right", "join")
    flow.chain("join", "c", "email", "d", "e")
    return flow


def main(workspace: str, log_dir: str, crash_at: str | None) -> int:
    logs = Path(log_dir)
    flow = build(logs, crash_at)
    marker = logs / "started"
    if marker.exists():
        run = flow.resume("crash-run", workspace=workspace, raise_on_error=False)
    else:
        marker.write_text("1")
        run = flow.run({"ticket": 7}, run_id="crash-run", workspace=workspace, raise_on_error=False)
    (logs / "result.json").write_text(json.dumps({"status": run.status, "state": run.state}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
