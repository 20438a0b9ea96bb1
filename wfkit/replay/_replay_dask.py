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

import dataclasses
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wfkit.distributed._dask import Executor, PartitionOutput, Progress, announce_default, run_job
from wfkit.replay._execute import KERNEL_LOG, NotebookJob, NotebookRunner, Outcome, run_notebook, worker_died

# run_notebook sets environment variables and redirects fd 2 for its kernel: one notebook at a
# time in a worker process (parallelism comes from more worker processes).
_ONE_AT_A_TIME = threading.Lock()


@dataclass(frozen=True)
class _ReplayPartition:
    jobs: tuple[NotebookJob, ...]

    def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput:
        rows: list[dict[str, Any]] = []
        workspaces: list[Path] = []
        for job in self.jobs:
            out = scratch / Path(job.key).with_suffix("")
            if not job.notebook.exists():
                message = (
                    f"{job.notebook} is not on worker {socket.gethostname()}: replaying on a cluster needs the "
                    f"notebooks at the same path on every worker (a shared checkout, or the same image)"
                )
                result = worker_died(FileNotFoundError(message))
                result["error"]["kind"] = "worker"
            else:
                with _ONE_AT_A_TIME:
                    result = run_notebook(dataclasses.replace(job, out_dir=out))
                workspaces.append(out / "workspace")
            executed = out / job.notebook.name
            log = out / KERNEL_LOG
            rows.append(
                {
                    "notebook": str(job.notebook),
                    # Paths on the worker mean nothing to the driver: it writes the files and sets them.
                    "outcome": json.dumps(
                        {k: v for k, v in result.items() if k not in ("output", "kernel_log")}, default=str
                    ),
                    "executed": executed.read_text(encoding="utf-8") if executed.exists() else None,
                    "kernel_log": log.read_text(encoding="utf-8", errors="replace") if log.exists() else None,
                }
            )
            progress()
        return PartitionOutput(rows, tuple(workspaces))

    def describe(self) -> str:
        return f"notebooks {', '.join(str(job.notebook) for job in self.jobs)}"

    def at_most_once(self) -> str | None:
        return None  # a notebook's runs are its own: replaying it again is what a replay does


def dask_runner(
    executor: Executor,
    dataset: str | os.PathLike[str],
    *,
    progress: bool = False,
    announce: Callable[[str], None] = announce_default,
) -> NotebookRunner:
    """A runner for :func:`wfkit.replay._replay.replay` that sends each notebook to a Dask worker.
    The outcomes come back when the job ends, so their lines print then (the Dask progress bar and
    dashboard show the notebooks finishing)."""

    def run(todo: Sequence[NotebookJob]) -> Iterator[tuple[NotebookJob, Outcome]]:
        works = [_ReplayPartition((job,)) for job in todo]
        outcome = run_job(
            executor, dataset, works, cases=[1] * len(works), label="replay", progress=progress, announce=announce
        )
        by_notebook = {str(job.notebook): job for job in todo}
        done: set[str] = set()
        for row in [] if outcome.results is None else outcome.results.to_pylist():
            job = by_notebook[row["notebook"]]
            job.out_dir.mkdir(parents=True, exist_ok=True)
            result: dict[str, Any] = json.loads(row["outcome"])
            result["output"] = result["kernel_log"] = None
            if row["executed"] is not None:
                (job.out_dir / job.notebook.name).write_text(row["executed"], encoding="utf-8")
                result["output"] = str(job.out_dir / job.notebook.name)
            if row["kernel_log"] is not None:
                (job.out_dir / KERNEL_LOG).write_text(row["kernel_log"], encoding="utf-8")
                result["kernel_log"] = str(job.out_dir / KERNEL_LOG)
            done.add(row["notebook"])
            yield job, result
        for job in todo:  # a partition Dask gave up on: still a row, never a crash
            if str(job.notebook) not in done:
                yield job, worker_died(RuntimeError("Dask returned no result for this notebook"))

    return run
