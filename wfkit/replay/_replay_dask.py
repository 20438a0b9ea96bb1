"""``wfkit replay --dask ADDRESS``: the notebooks replayed on Dask workers.

Each notebook is a partition of its own (a notebook is minutes of work, not milliseconds). A worker
runs it under papermill exactly as a local replay does, in a scratch folder, then writes the
outcome (error, summary, the executed notebook and its kernel log) as a result row and the
notebook's runs as step-log rows to the dataset. The driver puts the executed notebooks where a
local replay puts them, so the comparison and the report that follow are the same.

The notebooks must sit at the same path on every worker (a shared checkout, or the same image):
they read files beside them.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wfkit.distributed._dask import Executor, PartitionOutput, Progress, announce_default, run_job
from wfkit.replay._replay import NotebookJob, NotebookRunner, _run_notebook_child

# _run_notebook_child sets environment variables and redirects fd 2 for its kernel: one notebook
# at a time in a worker process (parallelism comes from more worker processes).
_ONE_AT_A_TIME = threading.Lock()
KERNEL_LOG = "kernel-stderr.log"


@dataclass(frozen=True)
class _ReplayPartition:
    jobs: tuple[NotebookJob, ...]

    def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput:
        rows: list[dict[str, Any]] = []
        workspaces: list[Path] = []
        for job in self.jobs:
            out = scratch / job.notebook.stem
            if not job.notebook.exists():
                message = (
                    f"{job.notebook} is not on worker {socket.gethostname()}: replaying on a cluster needs the "
                    f"notebooks at the same path on every worker (a shared checkout, or the same image)"
                )
                result: dict[str, Any] = {
                    "error": {"kind": "worker", "cell": None, "exception": "FileNotFoundError", "message": message},
                    "seconds": 0.0,
                    "summary": {"runs": []},
                }
            else:
                with _ONE_AT_A_TIME:
                    result = _run_notebook_child(str(job.notebook), str(out), job.parameters, job.timeout)
                workspaces.append(out / "workspace")
            executed = out / job.notebook.name
            log = out / KERNEL_LOG
            rows.append(
                {
                    "notebook": str(job.notebook),
                    "outcome": json.dumps({k: v for k, v in result.items() if k != "output"}, default=str),
                    "executed": executed.read_text() if executed.exists() else None,
                    "kernel_log": log.read_text(errors="replace") if log.exists() else None,
                }
            )
            progress()
        return PartitionOutput(rows, tuple(workspaces))


def dask_runner(
    executor: Executor,
    dataset: str | os.PathLike[str],
    *,
    progress: bool = False,
    announce: Callable[[str], None] = announce_default,
) -> NotebookRunner:
    """A runner for :func:`wfkit._replay.replay` that sends each notebook to a Dask worker."""

    def run(todo: Sequence[NotebookJob]) -> dict[Path, dict[str, Any]]:
        works = [_ReplayPartition((job,)) for job in todo]
        outcome = run_job(
            executor, dataset, works, cases=[1] * len(works), label="replay", progress=progress, announce=announce
        )
        by_notebook = {str(job.notebook): job for job in todo}
        results: dict[Path, dict[str, Any]] = {}
        for row in [] if outcome.results is None else outcome.results.to_pylist():
            job = by_notebook[row["notebook"]]
            job.out_dir.mkdir(parents=True, exist_ok=True)
            result = json.loads(row["outcome"])
            if row["executed"] is not None:
                (job.out_dir / job.notebook.name).write_text(row["executed"])
                result["output"] = str(job.out_dir / job.notebook.name)
            if row["kernel_log"] is not None:
                (job.out_dir / KERNEL_LOG).write_text(row["kernel_log"])
            results[job.notebook] = result
        return results

    return run
