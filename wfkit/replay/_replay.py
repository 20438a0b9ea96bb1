"""``wfkit replay``: notebooks run headless under papermill as regression runs, against baselines.

Each notebook runs in a process of its own and a workspace of its own, in replay mode (headless,
seeded simulated model or cassettes, approval decisions from the ``wfkit_policy`` parameter). Its
runs are read back and reduced to every signal that repeats under its seeds
(:mod:`wfkit.replay._signals`), compared with the baseline (:mod:`wfkit.replay._compare`), and each
notebook's result is handed to ``on_result`` the moment it is known. Then the report is written
(:mod:`wfkit.replay._report`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wfkit.replay._compare import baseline_latency, compare, evals_not_compared
from wfkit.replay._errors import ReplayError
from wfkit.replay._execute import NotebookJob, NotebookRunner, Outcome, local_runner
from wfkit.replay._notebooks import (
    REPORT_MARKER,
    baseline_file,
    missing_baseline_hint,
    notebook_key,
    project_root,
    read_baseline,
)
from wfkit.replay._outputs import digested
from wfkit.replay._parameters import check_parameters
from wfkit.replay._report import latency_plot, write_html, write_junit, write_summary
from wfkit.replay._result import (
    BAD_BASELINE,
    FAILED,
    NO_BASELINE,
    OK,
    REGRESSION,
    UPDATED,
    NotebookReport,
    replay_command,
)
from wfkit.replay._signals import Settings, settings_of, source_digest


def check_kernel(name: str) -> None:
    """Refuse an unknown kernel before anything runs, naming those that are installed."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if name not in specs:
        installed = ", ".join(sorted(specs)) or "none"
        raise ReplayError(f"no Jupyter kernel named {name!r}; installed: {installed} (`jupyter kernelspec list`)")


def nothing_compared(summary: Mapping[str, Any], settings: Settings) -> str | None:
    """Why a replay compared nothing (no runs, and no cell output it compares), or None if it compared something."""
    if summary.get("runs") or summary.get("evals"):
        return None
    if settings.masks("outputs"):
        return "no runs, cell output masked"
    outputs = (summary.get("outputs") or {}).values()
    if any(not cell.get("ignored") for cell in outputs):
        return None
    return "no runs, cell output ignored" if outputs else "no runs, no cell output"


def other_parameters(key: str, recorded: Mapping[str, Any], given: Mapping[str, Any]) -> str | None:
    """Why a replay may differ from its baseline with nothing changed: it ran with parameters other
    than those its baseline was recorded with (a seed of its own draws other runs). None when the
    two ran alike."""
    if dict(recorded) == dict(given):
        return None

    def said(values: Mapping[str, Any]) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in values.items()) or "none (the notebook's defaults)"

    return (
        f"its baseline was recorded with the parameters {said(recorded)}, and this replay ran with {said(given)}: "
        f"the differences below may follow from that alone. Replay it with the baseline's (`"
        f"{replay_command(key, recorded)}`), or record a baseline of these (`{replay_command(key, given)} "
        f"--update-baseline`)"
    )


def run_count(summary: Mapping[str, Any]) -> int:
    """The runs a notebook made: its own, and its evals' (one per variant and case)."""
    evals = summary.get("evals") or {}
    cases = sum(len(cases or {}) for variants in evals.values() for cases in (variants or {}).values())
    return len(summary.get("runs") or []) + cases


def judge(job: NotebookJob, outcome: Outcome, *, baseline: Path, root: Path, update_baseline: bool) -> NotebookReport:
    """One notebook's outcome against its baseline (or recorded as the new baseline)."""
    summary = {**outcome["summary"], "notebook": job.key, "source_digest": source_digest(job.notebook)}
    if job.parameters:  # (none given: the notebook's defaults, which every baseline so far holds)
        summary["parameters"] = job.parameters
    row = NotebookReport(
        key=job.key,
        status=OK,
        seconds=float(outcome["seconds"]),
        runs=run_count(summary),
        error=outcome["error"],
        output=Path(outcome["output"]) if outcome.get("output") else None,
        kernel_log=Path(outcome["kernel_log"]) if outcome.get("kernel_log") else None,
        digested=digested(summary.get("outputs") or {}),
        parameters=dict(job.parameters),
    )
    base_file = baseline_file(baseline, job.key)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    (job.out_dir / "summary.json").write_text(
        json.dumps(summary, indent=1, sort_keys=True, default=str), encoding="utf-8"
    )
    if row.error is not None:
        row.status = FAILED
    elif update_baseline:
        base_file.parent.mkdir(parents=True, exist_ok=True)
        base_file.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        row.status = UPDATED
    elif not base_file.exists():
        row.status = NO_BASELINE
        row.hint = missing_baseline_hint(baseline, job.key, summary["source_digest"], root)
    else:
        try:
            base = read_baseline(base_file)
        except ReplayError as exc:  # this notebook's row says so; the others are still judged
            row.status = BAD_BASELINE
            restore = f"restore it (`git checkout -- {base_file}`)"
            row.hint = f"{exc}: {restore} or record it again (`wfkit replay {job.key} --update-baseline`)"
            return row
        settings = settings_of(job.notebook)
        row.diffs = compare(base, summary, settings)
        row.status = REGRESSION if row.diffs else OK
        hints = [
            None if not row.diffs else other_parameters(job.key, base.get("parameters") or {}, job.parameters),
            None if settings.masks("evals") else evals_not_compared(base, summary),
        ]
        row.hint = "; ".join(hint for hint in hints if hint) or None
        row.nothing_compared = None if row.diffs else nothing_compared(summary, settings)
        row.plot = latency_plot(
            job.out_dir / "latency.png", job.key, baseline_latency(base)[0], summary.get("latency", {})
        )
    return row


def replay(
    notebooks: Sequence[Path],
    *,
    report: Path,
    root: Path | None = None,
    baseline: Path | None = None,
    jobs: int = 2,
    parameters: Mapping[str, Any] | None = None,
    update_baseline: bool = False,
    cell_timeout: float = 600.0,
    kernel: str | None = None,
    cwd: Path | None = None,
    junit_xml: Path | None = None,
    runner: NotebookRunner | None = None,
    on_result: Callable[[NotebookReport], None] | None = None,
) -> tuple[int, list[NotebookReport]]:
    """Run, compare, report. Returns the exit code (0: nothing regressed, 1: something did) and a
    report per notebook in the order given. ``root`` (default: the project holding the current
    folder) keys the baselines, which live under ``baseline`` (default ``ROOT/data/baselines``).
    ``runner`` runs the notebooks (default: ``jobs`` processes here)."""
    if not notebooks:
        raise ReplayError("no notebooks to replay")
    root = (root or project_root(Path.cwd())).resolve()
    baseline = baseline if baseline is not None else root / "data" / "baselines"
    for nb in notebooks:
        if not nb.is_file() or nb.suffix != ".ipynb":
            raise ReplayError(f"not a notebook: {nb}")
        settings_of(nb)  # a misspelt mask is refused before anything runs
    if kernel is not None:
        check_kernel(kernel)
    if cwd is not None and not cwd.is_dir():
        raise ReplayError(f"--cwd {cwd} is not a folder")
    report.mkdir(parents=True, exist_ok=True)
    (report / REPORT_MARKER).write_text(
        "a wfkit replay report: notebooks searched for replay skip this folder\n", encoding="utf-8"
    )
    todo = []
    for nb in notebooks:
        key = notebook_key(nb, root)
        out_dir = (report / "runs" / Path(key).with_suffix("")).resolve()
        todo.append(
            NotebookJob(
                notebook=nb.resolve(),
                key=key,
                out_dir=out_dir,
                parameters=check_parameters(nb, parameters) if parameters else {},
                cell_timeout=cell_timeout,
                kernel=kernel,
                cwd=None if cwd is None else cwd.resolve(),
            )
        )
    if len({job.key for job in todo}) != len(todo):
        raise ReplayError("the same notebook is named twice")
    for job in todo:  # a fresh workspace per notebook: runs of an earlier replay must not count
        shutil.rmtree(job.out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    done: dict[str, NotebookReport] = {}
    for job, outcome in (runner or local_runner(min(jobs, len(todo))))(todo):
        row = judge(job, outcome, baseline=baseline, root=root, update_baseline=update_baseline)
        done[job.key] = row
        if on_result is not None:
            on_result(row)
    seconds = time.perf_counter() - t0
    rows = [done[job.key] for job in todo]
    write_summary(report, rows)
    write_html(report, rows, seconds=seconds)
    if junit_xml is not None:
        write_junit(junit_xml, rows, seconds=seconds)
    return (1 if any(r.failing for r in rows) else 0), rows
