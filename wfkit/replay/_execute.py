"""Running one notebook headless: papermill in replay mode, then its workspace summarised.

:func:`run_notebook` runs one :class:`NotebookJob` in the calling process and returns plain data,
so any executor can call it: a local process pool (:func:`local_runner`), a Dask worker. It sets
environment variables and redirects file descriptor 2 for the kernel it starts, so it runs one
notebook at a time per process: parallelism comes from more processes.

A runner takes jobs and yields ``(job, outcome)`` as each notebook finishes, in the order they
finish, so the command can print each line the moment it is known.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from wfkit._extras import require
from wfkit.replay._kernel import environment, setup_failure
from wfkit.replay._outputs import cell_outputs
from wfkit.replay._signals import settings_of, summarise_with_ids

KERNEL_LOG = "kernel-stderr.log"
KERNEL_SETUP = "kernel-setup.json"  # how the kernel's setup went (wfkit.replay._kernel)
KERNEL_START_ATTEMPTS = 2  # a kernel that dies before its first cell is started once more
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class NotebookJob:
    """One notebook to replay: its file, its key (path from the project root), where the executed
    notebook and its workspace go, and papermill's settings."""

    notebook: Path
    key: str
    out_dir: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    cell_timeout: float = 600.0
    kernel: str | None = None  # None: the notebook's own kernelspec
    cwd: Path | None = None  # None: the notebook's folder, so it reads the files beside it


Outcome: TypeAlias = dict[str, Any]  # error, seconds, summary, output (the executed notebook), kernel_log
NotebookRunner: TypeAlias = Callable[[Sequence[NotebookJob]], Iterator[tuple[NotebookJob, Outcome]]]


def run_notebook(job: NotebookJob) -> Outcome:
    """papermill on ``job.notebook`` in replay mode, then the summary of the runs it made and of what its
    cells showed."""
    pm = require("papermill", "replay", purpose="wfkit replay")

    folder = job.out_dir
    workspace = folder / "workspace"
    folder.mkdir(parents=True, exist_ok=True)
    env_before = dict(os.environ)
    os.environ.update({"WFKIT_HOME": str(workspace), "WFKIT_MODE": "headless", "WFKIT_REPLAY": "1"})
    # tables shown whole (wfkit.replay._kernel), and how that went said in a file
    settings = settings_of(job.notebook)
    os.environ.update(environment(env_before, folder / KERNEL_SETUP, settings.float_tolerance))
    output = folder / job.notebook.name
    error: dict[str, Any] | None = None
    t0 = time.perf_counter()
    # The kernel inherits this process's stderr: send its chatter (transport warnings, shutdown
    # notices) to a log beside the output notebook instead of the terminal running the replay.
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with (folder / KERNEL_LOG).open("wb") as log:
        os.dup2(log.fileno(), 2)
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            try:
                pm.execute_notebook(
                    str(job.notebook),
                    str(output),
                    parameters=job.parameters,
                    kernel_name=job.kernel,
                    cwd=str(job.cwd or job.notebook.parent),
                    execution_timeout=job.cell_timeout,
                    progress_bar=False,
                    log_output=False,
                )
            except pm.PapermillExecutionError as exc:
                error = {
                    "kind": "error",
                    "cell": _source_cell(output, exc.cell_index),
                    "exception": exc.ename,
                    "message": exc.evalue,
                    "traceback": _ANSI.sub("", "\n".join(exc.traceback or [])),
                }
            except Exception as exc:  # a cell timeout, a dead kernel, a broken notebook: a failed row
                cell = _failing_cell(output)
                if cell is None and attempt < KERNEL_START_ATTEMPTS:
                    # No cell started: the kernel never came up. Kernels pick their ports by
                    # binding port 0 and letting go, so kernels started at once by parallel jobs
                    # can race for a port; none of the notebook's code ran, so starting it again
                    # is safe. Said in the kernel log, never silent.
                    sys.stderr.write(f"wfkit replay: the kernel did not start ({exc!r}); starting it again\n")
                    sys.stderr.flush()
                    continue
                text = str(exc).strip()
                error = {
                    "kind": type(exc).__name__,
                    "cell": cell,
                    "exception": type(exc).__name__,
                    # The headline: papermill's text about a timed-out cell ends with a preview
                    # of the cell between rows of dashes.
                    "message": text.splitlines()[0] if text else repr(exc),
                    # No traceback from the kernel here (a timeout or a dead kernel records none):
                    # say what papermill said, which names the cell's source and the time limit.
                    "traceback": _ANSI.sub("", text) or repr(exc),
                }
            break
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.environ.clear()
        os.environ.update(env_before)
    seconds = time.perf_counter() - t0
    if error is not None and error.get("cell") is not None:
        # Its first line of code, as a difference names a cell: "cell 8" alone has the reader count
        # cells from 0, markdown included, where JupyterLab's status bar counts from 1.
        error["code"] = _first_line(job.notebook, error["cell"])
    if _failing_cell(output) is not None and _language(output) == "python":
        # A kernel set up wrong showed what cannot be compared: that is the notebook's error, whatever
        # a cell then raised (a name the user's startup file did not get to define).
        failed = setup_failure(
            folder / KERNEL_SETUP,
            kernel=job.kernel or _kernel_name(output),
            user_startup=env_before.get("PYTHONSTARTUP", ""),
        )
        if failed is not None:
            if error is not None:
                failed["traceback"] += f"\n\nThen cell {error.get('cell')} failed:\n{error.get('traceback')}"
            error = failed
    summary, ids = summarise_with_ids(workspace, settings)
    # The replay's folder first: it may lie under the notebook's.
    folders = {str(folder): "<replay folder>", str(job.cwd or job.notebook.parent): "<notebook folder>"}
    summary["outputs"] = cell_outputs(job.notebook, output, ids=ids, folders=folders)
    return {
        "error": error,
        "seconds": seconds,
        "summary": summary,
        "output": str(output) if output.exists() else None,
        "kernel_log": str(folder / KERNEL_LOG),
    }


def _output_cells(output: Path) -> list[dict[str, Any]]:
    """The cells of the executed notebook papermill wrote (none if it wrote nothing readable)."""
    try:
        cells: list[dict[str, Any]] = json.loads(output.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return []
    return cells


def _metadata(output: Path) -> dict[str, Any]:
    try:
        metadata: dict[str, Any] = json.loads(output.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return {}
    return metadata


def _language(output: Path) -> str | None:
    """The language of the kernel that ran the executed notebook (PYTHONSTARTUP means nothing to another)."""
    metadata = _metadata(output)
    return (metadata.get("language_info") or {}).get("name") or (metadata.get("kernelspec") or {}).get("language")


def _kernel_name(output: Path) -> str:
    return str((_metadata(output).get("kernelspec") or {}).get("name", "python3"))


def _source_cell(output: Path, index: int | None) -> int | None:
    """Cell ``index`` of the executed notebook as its place in the notebook the user wrote: the
    cell papermill injects with the parameters (only when some are given) is not theirs, and
    counting it would name another cell once they pass ``-p``."""
    if index is None:
        return None
    injected = sum(
        "injected-parameters" in cell.get("metadata", {}).get("tags", []) for cell in _output_cells(output)[:index]
    )
    return index - injected


def _first_line(notebook: Path, place: int) -> str:
    """The first line of code of the cell at ``place`` in the notebook the user wrote ("" if none)."""
    cells = _output_cells(notebook)
    if not 0 <= place < len(cells):
        return ""
    source = cells[place].get("source", "")
    code = ("".join(source) if isinstance(source, list) else str(source)).strip()
    return code.splitlines()[0] if code else ""


def _failing_cell(output: Path) -> int | None:
    """The last cell that started before papermill gave up, by its place in the user's notebook.
    (On a cell timeout papermill marks that cell "completed" with no exception, so the start times
    are what tells.)"""
    started = [
        index
        for index, cell in enumerate(_output_cells(output))
        if cell.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    return _source_cell(output, started[-1]) if started else None


def worker_died(exc: BaseException) -> Outcome:
    """The outcome of a notebook whose process died under it: still a row, never a crash."""
    return {
        "error": {
            "kind": "worker",
            "cell": None,
            "exception": type(exc).__name__,
            "message": str(exc) or repr(exc),
            "traceback": f"the process running the notebook died: {exc!r}",
        },
        "seconds": 0.0,
        "summary": {"runs": []},
        "output": None,
        "kernel_log": None,
    }


def local_runner(jobs: int) -> NotebookRunner:
    """Notebooks in up to ``jobs`` processes on this machine, yielded as each finishes."""

    def run(todo: Sequence[NotebookJob]) -> Iterator[tuple[NotebookJob, Outcome]]:
        # spawn, not fork: this process may hold threads (the exporter, a background loop).
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context) as pool:
            futures = {pool.submit(run_notebook, job): job for job in todo}
            for future in concurrent.futures.as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as exc:
                    outcome = worker_died(exc)
                yield futures[future], outcome

    return run
