"""``wfkit replay``: notebooks run headless under papermill as regression runs, against baselines.

Each notebook runs in its own process and its own workspace, in replay mode (headless, seeded
simulated model or cassettes; approval decisions from the ``wfkit_policy`` parameter). Its runs are
then read back from the workspace and reduced to what should not change between two replays:
the path of steps (branches and loops), final outputs, statuses and error kinds, retry counts,
and, where the notebook says its latency is seeded, latency percentiles. That summary is compared
with the baseline; a difference is a regression with a readable diff.

A notebook tunes the comparison in its metadata (``"wfkit": {"ignore_fields": [...],
"float_tolerance": 1e-9, "compare_latency": false, "latency_factor": 2.0}``).
"""

from __future__ import annotations

import ast
import concurrent.futures
import datetime as dt
import html
import json
import keyword
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wfkit._extras import require

SUMMARY_VERSION = 1


class ReplayError(ValueError):
    """Bad replay input: an unknown notebook, a parameter the notebook does not declare."""


# ---- parameters ---------------------------------------------------------------------------------


def declared_parameters(notebook: Path) -> dict[str, str]:
    """Names assigned in the notebook's ``parameters`` cell, with their source text."""
    data = json.loads(notebook.read_text())
    for cell in data.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell.get("source", []))
            names: dict[str, str] = {}
            for node in ast.parse(source).body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else ([node.target] if isinstance(node, ast.AnnAssign) else [])
                )
                for target in targets:
                    if isinstance(target, ast.Name):
                        names[target.id] = ast.get_source_segment(source, node) or target.id
            return names
    return {}


def parse_value(text: str) -> Any:
    """A parameter value from the command line: JSON if it parses (numbers, true, null), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_parameters(notebook: Path, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Only identifiers declared in the parameters cell pass: papermill writes names into code
    unescaped, so a crafted name would run in the kernel."""
    declared = declared_parameters(notebook)
    bad = [n for n in parameters if not n.isidentifier() or keyword.iskeyword(n)]
    if bad:
        raise ReplayError(f"parameter names must be Python identifiers, got {', '.join(map(repr, bad))}")
    unknown = [n for n in parameters if n not in declared]
    if unknown:
        known = ", ".join(sorted(declared)) or "none (the notebook has no cell tagged 'parameters')"
        raise ReplayError(
            f"{notebook.name} does not declare parameter(s) {', '.join(map(repr, unknown))}; it declares: {known}"
        )
    return dict(parameters)


# ---- running one notebook -----------------------------------------------------------------------


@dataclass
class NotebookResult:
    notebook: str
    status: str  # ok | failed
    seconds: float
    error: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    output: str | None = None


def _run_notebook_child(notebook: str, out_dir: str, parameters: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Runs in a worker process: papermill, then the workspace summary."""
    pm = require("papermill", "replay", purpose="wfkit replay")

    src = Path(notebook)
    folder = Path(out_dir)
    workspace = folder / "workspace"
    folder.mkdir(parents=True, exist_ok=True)
    env_before = dict(os.environ)
    os.environ.update(
        {"WFKIT_HOME": str(workspace), "WFKIT_MODE": "headless", "WFKIT_REPLAY": "1", "WFKIT_SYNCHRONOUS": "normal"}
    )
    output = folder / src.name
    error: dict[str, Any] | None = None
    t0 = time.perf_counter()
    # The kernel inherits this worker's stderr: send its chatter (transport warnings, shutdown
    # notices) to a log beside the output notebook instead of the terminal running the replay.
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with (folder / "kernel-stderr.log").open("wb") as log:
        os.dup2(log.fileno(), 2)
    try:
        pm.execute_notebook(
            str(src),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(src.parent),
            execution_timeout=timeout,
            progress_bar=False,
            log_output=False,
        )
    except pm.PapermillExecutionError as exc:
        error = {"kind": "error", "cell": exc.cell_index, "exception": exc.ename, "message": exc.evalue}
    except Exception as exc:  # a cell timeout, a dead kernel, a broken notebook: a failed row
        error = {
            "kind": type(exc).__name__,
            "cell": _failing_cell(output),
            "exception": type(exc).__name__,
            "message": str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc),
        }
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.environ.clear()
        os.environ.update(env_before)
    seconds = time.perf_counter() - t0
    summary = summarise_workspace(workspace, _comparison_settings(src))
    return {"error": error, "seconds": seconds, "summary": summary, "output": str(output)}


def _failing_cell(output: Path) -> int | None:
    """The last cell that started before papermill gave up. (On a cell timeout papermill marks
    that cell "completed" with no exception, so the start times are what tells.)"""
    try:
        data = json.loads(output.read_text())
    except (OSError, ValueError):
        return None
    started = [
        index
        for index, cell in enumerate(data.get("cells", []))
        if cell.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    return started[-1] if started else None


def _comparison_settings(notebook: Path) -> dict[str, Any]:
    meta = json.loads(notebook.read_text()).get("metadata", {}).get("wfkit", {})
    return {
        "ignore_fields": list(meta.get("ignore_fields", [])),
        "float_tolerance": float(meta.get("float_tolerance", 1e-9)),
        "compare_latency": bool(meta.get("compare_latency", False)),
        "latency_factor": float(meta.get("latency_factor", 2.0)),
        "latency_floor_s": float(meta.get("latency_floor_s", 0.02)),
    }


def summarise_workspace(workspace: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a notebook's runs did, minus what differs between two identical replays."""
    if not (workspace / "wfkit.db").exists():
        return {"version": SUMMARY_VERSION, "settings": dict(settings), "runs": []}
    from wfkit.store._workspace import Workspace

    ws = Workspace(workspace)
    ignore = set(settings.get("ignore_fields", []))
    runs = []
    pooled: dict[str, list[float]] = {}  # latency per step over all the notebook's runs
    for row in reversed(ws.runs()):  # oldest first: the order the notebook started them
        info = ws.run_info(row["run_id"])
        events = ws.events(row["run_id"])
        retries: dict[str, int] = {}
        for e in events:
            if e.status in ("retry", "timeout"):
                retries[e.step] = retries.get(e.step, 0) + 1
            elif e.status == "failed" and e.attempt > 1:
                retries.setdefault(e.step, 0)  # failed after earlier attempts: listed, if only with 0
            if e.attempt > 0:
                pooled.setdefault(e.step, []).append(e.latency_s)
        # A run id inside an output (an idempotency key, say) differs on every replay: mask it.
        state = _mask(info.get("state") or {}, row["run_id"])
        runs.append(
            {
                "workflow": info["workflow"],
                "status": info["status"],
                "path": [e.step for e in events if e.status in ("ok", "cached") and e.map_index is None],
                "decisions": [f"{e.step}:{e.status}" for e in events if e.status in ("approved", "rejected")],
                "error_kinds": [f"{e.step}:{e.error_kind}" for e in events if e.error_kind],
                "retries": retries,
                "outputs": {k: v for k, v in sorted(state.items()) if k not in ignore},
            }
        )
    ws.store.close()
    latency = {
        step: {"p50": _quantile(v, 0.5), "p99": _quantile(v, 0.99), "n": len(v)} for step, v in sorted(pooled.items())
    }
    return {"version": SUMMARY_VERSION, "settings": dict(settings), "runs": runs, "latency": latency}


def _mask(value: Any, run_id: str) -> Any:
    if isinstance(value, str):
        return value.replace(run_id, "<run_id>")
    if isinstance(value, dict):
        return {k: _mask(v, run_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, run_id) for v in value]
    return value


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# ---- comparing ----------------------------------------------------------------------------------


def _same(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=tolerance, abs_tol=tolerance)
        except (TypeError, ValueError):
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, tolerance) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def compare(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Differences between two summaries, each a readable line; empty when nothing regressed."""
    settings = {**baseline.get("settings", {}), **current.get("settings", {})}
    tolerance = float(settings.get("float_tolerance", 1e-9))
    diffs: list[str] = []
    old_runs, new_runs = baseline.get("runs", []), current.get("runs", [])
    if len(old_runs) != len(new_runs):
        diffs.append(f"number of runs: {len(old_runs)} -> {len(new_runs)}")
    for i, (old, new) in enumerate(zip(old_runs, new_runs, strict=False)):
        where = f"run {i + 1} ({new.get('workflow')})"
        for key in ("workflow", "status", "path", "decisions", "error_kinds", "retries"):
            if old.get(key) != new.get(key):
                diffs.append(f"{where}: {key} {_short(old.get(key))} -> {_short(new.get(key))}")
        old_out, new_out = old.get("outputs", {}), new.get("outputs", {})
        for name in sorted(set(old_out) | set(new_out)):
            if name not in new_out:
                diffs.append(f"{where}: output {name!r} is gone (was {_short(old_out[name])})")
            elif name not in old_out:
                diffs.append(f"{where}: new output {name!r} = {_short(new_out[name])}")
            elif not _same(old_out[name], new_out[name], tolerance):
                diffs.append(f"{where}: output {name!r} {_short(old_out[name])} -> {_short(new_out[name])}")
    if settings.get("compare_latency"):
        # Pooled over the notebook's runs; P99 only with enough samples to mean more than "the max".
        factor = float(settings.get("latency_factor", 2.0))
        floor = float(settings.get("latency_floor_s", 0.02))
        for step, old_q in baseline.get("latency", {}).items():
            new_q = current.get("latency", {}).get(step)
            if new_q is None:
                continue
            for q in ("p50", "p99"):
                if q == "p99" and min(old_q.get("n", 0), new_q.get("n", 0)) < 20:
                    continue
                a, b = old_q[q], new_q[q]
                # Both a ratio and an absolute shift: sub-millisecond steps jitter by 10x.
                if a > 0 and b > 0 and not (1 / factor <= b / a <= factor) and abs(b - a) > floor:
                    diffs.append(f"{step}: latency {q} {a * 1000:.1f} ms -> {b * 1000:.1f} ms")
    return diffs


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- the command --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookJob:
    """One notebook to replay: where its output goes, its parameters, the per-cell timeout."""

    notebook: Path
    out_dir: Path
    parameters: dict[str, Any]
    timeout: float


#: Runs notebooks and returns, per notebook, what ``_run_notebook_child`` returns.
NotebookRunner = Callable[[Sequence[NotebookJob]], dict[Path, dict[str, Any]]]


def _local_runner(jobs: int) -> NotebookRunner:
    """Notebooks in parallel processes on this machine."""

    def run(todo: Sequence[NotebookJob]) -> dict[Path, dict[str, Any]]:
        # spawn, not fork: this process may hold threads (the exporter, a background loop).
        context = multiprocessing.get_context("spawn")
        results: dict[Path, dict[str, Any]] = {}
        with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context) as pool:
            futures = {
                pool.submit(_run_notebook_child, str(j.notebook), str(j.out_dir), j.parameters, j.timeout): j
                for j in todo
            }
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                try:
                    results[job.notebook] = future.result()
                except Exception as exc:  # the worker itself died: still a row, never a crash
                    results[job.notebook] = {
                        "error": {"kind": "worker", "cell": None, "exception": type(exc).__name__, "message": str(exc)},
                        "seconds": 0.0,
                        "summary": {"runs": []},
                    }
        return results

    return run


def replay(
    notebooks: Sequence[Path],
    *,
    baseline: Path,
    report: Path,
    jobs: int = 2,
    parameters: Mapping[str, Any] | None = None,
    update_baseline: bool = False,
    timeout: float = 600.0,
    runner: NotebookRunner | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Run, compare, report. Returns the exit code (0: no regression) and one row per notebook.
    ``runner`` runs the notebooks (default: ``jobs`` processes here; ``_replay_dask`` on Dask)."""
    if not notebooks:
        raise ReplayError("no notebooks to replay")
    for nb in notebooks:
        if not nb.exists() or nb.suffix != ".ipynb":
            raise ReplayError(f"not a notebook: {nb}")
    checked = (
        {nb: check_parameters(nb, parameters or {}) for nb in notebooks} if parameters else {nb: {} for nb in notebooks}
    )
    report.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:  # a fresh workspace per notebook: runs of an earlier replay must not count
        shutil.rmtree(report / "runs" / nb.stem, ignore_errors=True)
    rows: list[dict[str, Any]] = []
    todo = [NotebookJob(nb.resolve(), (report / "runs" / nb.stem).resolve(), checked[nb], timeout) for nb in notebooks]
    done = (runner or _local_runner(jobs))(todo)
    results = {nb: done[job.notebook] for nb, job in zip(notebooks, todo, strict=True)}
    for nb in notebooks:
        result = results[nb]
        base_file = baseline / f"{nb.stem}.json"
        row: dict[str, Any] = {
            "notebook": nb.name,
            "seconds": round(result["seconds"], 2),
            "error": result["error"],
            "runs": len(result["summary"].get("runs", [])),
            "diffs": [],
        }
        if result["error"] is not None:
            row["status"] = "failed"
        elif update_baseline:
            baseline.mkdir(parents=True, exist_ok=True)
            base_file.write_text(json.dumps(result["summary"], indent=1, sort_keys=True) + "\n")
            row["status"] = "baseline updated"
        elif not base_file.exists():
            row["status"] = "no baseline"
            row["diffs"] = [f"no baseline at {base_file}; run with --update-baseline to record one"]
        else:
            base = json.loads(base_file.read_text())
            row["diffs"] = compare(base, result["summary"])
            row["status"] = "regression" if row["diffs"] else "ok"
            row["plot"] = _latency_plot(report, nb.stem, base.get("latency", {}), result["summary"].get("latency", {}))
        (report / "runs" / nb.stem).mkdir(parents=True, exist_ok=True)
        (report / "runs" / nb.stem / "summary.json").write_text(json.dumps(result["summary"], indent=1, sort_keys=True))
        rows.append(row)
    _write_report(report, rows)
    bad = [r for r in rows if r["status"] in ("failed", "regression", "no baseline")]
    return (1 if bad else 0), rows


def _write_report(report: Path, rows: list[dict[str, Any]]) -> None:
    (report / "summary.json").write_text(json.dumps({"notebooks": rows}, indent=1, default=str))
    colours = {"ok": "#15803d", "baseline updated": "#2563eb", "regression": "#b91c1c", "failed": "#b91c1c"}
    body = []
    for r in rows:
        colour = colours.get(r["status"], "#b45309")
        detail = ""
        if r["error"]:
            e = r["error"]
            detail = html.escape(f"cell {e.get('cell')}: {e.get('exception')}: {e.get('message')}")
        diffs = "".join(f"<li><code>{html.escape(d)}</code></li>" for d in r["diffs"])
        if r.get("plot"):
            diffs += f'<img src="{html.escape(r["plot"])}" alt="latency" style="max-width:640px">'
        body.append(
            f"<tr><td>{html.escape(r['notebook'])}</td><td style='color:{colour}'><b>{html.escape(r['status'])}</b>"
            f"</td><td>{r['runs']}</td><td>{r['seconds']}</td><td>{detail}<ul>{diffs}</ul></td></tr>"
        )
    (report / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>wfkit replay</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "vertical-align:top}table{border-collapse:collapse}</style>"
        f"<h1>wfkit replay</h1><p>{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</p>"
        "<table><tr><th>notebook</th><th>status</th><th>runs</th><th>seconds</th><th>errors and differences</th></tr>"
        + "".join(body)
        + "</table>"
    )


def _latency_plot(report: Path, stem: str, base: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """Baseline against this replay: P50 and P99 per step, as a PNG beside the report."""
    steps = [s for s in base if s in current]
    if not steps:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 0.45 * len(steps) + 1.4), layout="constrained")
    ax = fig.subplots()
    y = range(len(steps))
    for offset, (label, source, colour) in enumerate(
        (("baseline", base, "#2a6f97"), ("this replay", current, "#e0a100"))
    ):
        ys = [i + (offset - 0.5) * 0.4 for i in y]
        ax.barh(ys, [source[s]["p50"] * 1000 for s in steps], height=0.4, color=colour, label=f"{label} P50")
        ax.scatter([source[s]["p99"] * 1000 for s in steps], ys, color=colour, marker="|", s=120, label=f"{label} P99")
    ax.set_yticks(list(y), steps)
    ax.invert_yaxis()
    ax.set(xlabel="latency (ms)", title=f"{stem}: latency per step")
    ax.legend(fontsize="x-small")
    name = f"{stem}-latency.png"
    fig.savefig(report / name, dpi=90)
    return name


def print_rows(rows: list[dict[str, Any]], out: Any = None) -> None:
    out = out or sys.stdout
    for r in rows:
        print(f"{r['status']:>16}  {r['notebook']}  ({r['runs']} runs, {r['seconds']} s)", file=out)
        if r["error"]:
            e = r["error"]
            print(f"{'':>18}cell {e.get('cell')}: {e.get('exception')}: {e.get('message')}", file=out)
        for d in r["diffs"]:
            print(f"{'':>18}- {d}", file=out)
