"""A run whose process is stopped (SIGSTOP) past its lease while another process takes it over.

    python tests/frozenflow.py WORKSPACE LOGDIR ROLE

``ROLE`` ``first`` starts run "frozen-run"; its first step writes LOGDIR/in_wait and then waits
for LOGDIR/go (the test stops the process meanwhile). ``second`` resumes the run (a takeover once
the first's lease ran out), and its first step does not wait. The irreversible ``send`` step
appends the role to LOGDIR/outbox.txt, standing for an email sent. Each process writes
LOGDIR/ROLE.json: the run's status, and its error's type and message.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import wfkit as wf


def build(logs: Path, role: str) -> wf.Workflow:
    flow = wf.Workflow("frozenflow")

    @flow.step
    async def wait(state: Any) -> dict[str, Any]:
        if role == "first":
            (logs / "in_wait").write_text("1")
            while not (logs / "go").exists():  # noqa: ASYNC110 (a file: the test process says go)
                await asyncio.sleep(0.02)
        return {"waited_in": role}

    @flow.step(irreversible=True)
    def send(state: Any) -> dict[str, Any]:
        with (logs / "outbox.txt").open("a") as fh:
            fh.write(role + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return {"sent_by": role}

    @flow.step
    def after(state: Any) -> dict[str, Any]:
        return {"done_by": role}

    flow.chain("wait", "send", "after")
    return flow


def main(workspace: str, log_dir: str, role: str) -> int:
    logs = Path(log_dir)
    flow = build(logs, role)
    if role == "first":
        run = flow.run({}, run_id="frozen-run", workspace=workspace, raise_on_error=False)
    else:
        run = flow.resume("frozen-run", workspace=workspace, raise_on_error=False)
    error = run.error
    (logs / f"{role}.json").write_text(
        json.dumps(
            {
                "status": run.status,
                "error_type": None if error is None else type(error).__name__,
                "error": None if error is None else str(error),
                "pid": os.getpid(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
