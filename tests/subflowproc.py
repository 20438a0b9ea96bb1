"""A parent run whose sub-workflow's process can kill itself mid-child, for the durable sub-workflow test.

    python tests/subflowproc.py WORKSPACE LOGDIR [crash]

Starts (or resumes) run "parent-run". Each step appends its name to LOGDIR/ran.log; with ``crash``
the process sends itself SIGKILL when the child's second step starts, after its first step was
checkpointed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import wfkit as wf


def _log(log_dir: Path, name: str) -> None:
    with (log_dir / "ran.log").open("a") as fh:
        fh.write(f"{name}\n")
        fh.flush()
        os.fsync(fh.fileno())


def build(log_dir: Path, crash: bool) -> wf.Workflow:
    child = wf.Workflow("subproc-child", inputs=["text"])

    @child.step
    def first(state: Any) -> dict[str, Any]:
        _log(log_dir, "child.first")
        return {"upper": state["text"].upper()}

    @child.step
    def second(state: Any) -> dict[str, Any]:
        _log(log_dir, "child.second")
        if crash:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"shout": state["upper"] + "!"}

    child.edge("first", "second")

    parent = wf.Workflow("subproc-parent")

    @parent.step
    def prepare(state: Any) -> dict[str, Any]:
        _log(log_dir, "parent.prepare")
        return {"text": "hi"}

    parent.subflow(child, name="inner", inputs={"text": "text"}, outputs={"result": "shout"})

    @parent.step
    def finish(state: Any) -> dict[str, Any]:
        _log(log_dir, "parent.finish")
        return {"done": state["result"]}

    parent.chain("prepare", "inner", "finish")
    return parent


def main() -> None:
    workspace, log_dir = Path(sys.argv[1]), Path(sys.argv[2])
    flow = build(log_dir, len(sys.argv) > 3 and sys.argv[3] == "crash")
    ws = wf.Workspace(workspace, create=True)
    if any(r["run_id"] == "parent-run" for r in ws.runs()):
        run = flow.resume("parent-run", workspace=workspace)
    else:
        run = flow.run({}, run_id="parent-run", workspace=workspace)
    info = ws.run_info("parent-run")
    (log_dir / "result.json").write_text(
        json.dumps({"status": run.status, "state": run.state, "children": info["children"]})
    )


if __name__ == "__main__":
    main()
