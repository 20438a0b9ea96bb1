"""Step-log figures: summaries of a large step log read from disk, and what logging adds to a step.

    python benchmarks/steplog.py [--json] [--rows 10000000] [--big 100000000] [--keep DIR]

S1 writes a synthetic step log of ``--rows`` rows as wfkit lays it out on disk (hive partitions by
workflow and date, zstd parquet; generated once by DuckDB into a temporary folder) and measures,
in the same run, wfkit's tables against DuckDB answering the same question over the same files:
S1a the latency table (P50/P90/P95/P99/max/mean/count per (workflow, step)), S1b the failures
table, S1c the retries table (`wf.StepLog(...)`), S1d the accessor on a frame already in memory
against DuckDB on that same frame, and S1e `wf.steps()` (columns pruned) then the accessor, the
path of a notebook that loads the rows. S1f is the latency table of ``--big`` rows, with the peak
memory of the process that computed it. Figures are medians of 3 (each summary warms up once).
S2 is the per-step overhead of the event processors (redaction, truncation) on W1, the 100-step
in-memory chain, against W1 without processors. S3 is the background parquet export per row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wfkit as wf
from wfkit.logs._steplog import export_run, segment_files
from wfkit.store._workspace import open_store

WORKFLOWS = 3
STEPS = 10
DAYS = 10


def generate(folder: Path, rows: int, seed: int = 0) -> None:
    """``rows`` step-log rows in wfkit's layout: 3 workflows x 10 steps, lognormal latencies, 3% of
    attempts failing (70% transient, retried), runs of 10 steps, 10 days."""
    import duckdb

    conn = duckdb.connect()
    conn.execute(f"SELECT setseed({seed / 1000})")
    conn.execute(
        f"""
        COPY (
          WITH base AS (
            SELECT i, random() AS u, random() AS v, random() AS w FROM range({rows}) t(i)
          )
          SELECT
            'r' || (i // {STEPS})::VARCHAR AS run_id,
            '1' AS workflow_version,
            'step_' || (i % {STEPS})::VARCHAR AS step,
            1::INTEGER AS visit,
            CASE WHEN u < 0.021 THEN 1 ELSE 1 + (hash(i) % 2 = 0 AND u > 0.97)::INTEGER END::INTEGER AS attempt,
            CASE WHEN u < 0.021 THEN 'retry' WHEN u < 0.03 THEN 'failed' ELSE 'ok' END AS status,
            CASE WHEN u < 0.021 THEN 'transient' WHEN u < 0.03 THEN 'permanent' ELSE NULL END AS error_kind,
            CASE WHEN u < 0.021 THEN 'ConnectionError' WHEN u < 0.03 THEN 'ValueError' ELSE NULL END AS error_type,
            CASE WHEN u < 0.021 THEN 'reset by peer' WHEN u < 0.03 THEN 'bad input' ELSE NULL END AS error_message,
            TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_microseconds((i::DOUBLE * 86400e6 * {DAYS} / {rows})::BIGINT)
              AS started_at,
            started_at + to_microseconds((exp(ln(0.5) + sqrt(-2 * ln(v)) * cos(2 * pi() * w)) * 1e6)::BIGINT)
              AS ended_at,
            exp(ln(0.5) + sqrt(-2 * ln(v)) * cos(2 * pi() * w)) AS latency_s,
            0.0 AS queue_s,
            CASE WHEN u < 0.021 THEN 0.5 ELSE NULL END AS retry_delay_s,
            NULL::VARCHAR AS route_taken, NULL::VARCHAR[] AS tools, NULL::VARCHAR AS model,
            NULL::BIGINT AS tokens_in, NULL::BIGINT AS tokens_out, NULL::DOUBLE AS cost_usd,
            NULL::VARCHAR AS approver, NULL::VARCHAR AS decision_comment, NULL::VARCHAR AS parameters_hash,
            'bench' AS host, NULL::VARCHAR AS extra, (i % {STEPS})::BIGINT AS seq,
            'flow_' || ((i // {STEPS}) % {WORKFLOWS})::VARCHAR AS workflow,
            strftime(started_at, '%Y-%m-%d') AS date
          FROM base
        ) TO '{folder}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (workflow, date))
        """
    )
    conn.close()


def _source(folder: Path) -> str:
    return (
        f"read_parquet('{folder}/**/*.parquet', hive_partitioning=true, "
        "hive_types={'workflow': 'VARCHAR', 'date': 'VARCHAR'})"
    )


DUCKDB = {
    "latency": (
        "SELECT workflow, step, quantile_cont(latency_s, [0.5, 0.9, 0.95, 0.99]) AS q, max(latency_s), "
        "avg(latency_s), count(latency_s) FROM {src} WHERE attempt > 0 AND status = 'ok' GROUP BY ALL ORDER BY ALL"
    ),
    "failures": (
        "SELECT workflow, step, count(*), count(*) FILTER (WHERE error_kind = 'transient'), "
        "count(*) FILTER (WHERE error_kind = 'permanent'), count(*) FILTER (WHERE error_kind = 'unknown'), "
        "count(*) FILTER (WHERE status = 'timeout') FROM {src} WHERE attempt > 0 GROUP BY ALL ORDER BY ALL"
    ),
    "retries": (
        "SELECT workflow, step, sum(r), avg(r), max(r) FROM (SELECT workflow, step, run_id, visit, "
        "max(attempt) - 1 AS r FROM {src} WHERE attempt > 0 GROUP BY ALL) GROUP BY ALL ORDER BY ALL"
    ),
}


def median_time(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    result = fn()  # warm-up: file cache, imports, DuckDB's first connection
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


_CONN: Any = None


def duckdb_table(folder: Path, question: str) -> Any:
    """DuckDB's answer on one connection kept open, as StepLog keeps its own."""
    import duckdb

    global _CONN
    if _CONN is None:
        _CONN = duckdb.connect()
    return _CONN.execute(DUCKDB[question].format(src=_source(folder))).df()


def s1(folder: Path, rows: int) -> list[dict[str, Any]]:
    log = wf.StepLog(folder)
    out = []
    for code, question in (("S1a", "latency"), ("S1b", "failures"), ("S1c", "retries")):
        ours, table = median_time(getattr(log, question))
        theirs, reference = median_time(lambda q=question: duckdb_table(folder, q))
        if len(table) != len(reference) or len(table) != WORKFLOWS * STEPS:
            raise RuntimeError(f"{question}: {len(table)} rows against DuckDB's {len(reference)}")
        out.append(
            {
                "workload": code,
                "what": f"{question} table per (workflow, step) of {rows:,} rows on disk (wf.StepLog)",
                "wfkit": round(ours, 3),
                "duckdb_same_files": round(theirs, 3),
                "unit": "s",
                "ratio": round(ours / theirs, 2),
            }
        )
    # The accessor on a frame in memory (pandas), against DuckDB querying that same frame.
    import duckdb

    frame = wf.steps(folder, columns=["workflow", "step", "attempt", "status", "latency_s"], sort=False)
    ours, table = median_time(frame.wf.latency)
    query = DUCKDB["latency"].format(src="frame")
    theirs, _ = median_time(lambda: duckdb.query_df(frame, "frame", query).df())
    out.append(
        {
            "workload": "S1d",
            "what": f"latency table of {len(frame):,} rows already in memory (df.wf accessor, pandas)",
            "wfkit": round(ours, 3),
            "duckdb_same_frame": round(theirs, 3),
            "unit": "s",
            "ratio": round(ours / theirs, 2),
        }
    )
    load, _ = median_time(
        lambda: wf.steps(folder, columns=["workflow", "step", "attempt", "status", "latency_s"]).wf.latency(), 1
    )
    theirs, _ = median_time(lambda: duckdb_table(folder, "latency"), 1)
    out.append(
        {
            "workload": "S1e",
            "what": f"wf.steps(columns=...) then df.wf.latency() of {rows:,} rows (load into pandas, sort, summarise)",
            "wfkit": round(load, 3),
            "duckdb_same_files": round(theirs, 3),
            "unit": "s",
            "ratio": round(load / theirs, 2),
        }
    )
    return out


def _peak(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter; its wall time for the summary and peak RSS (MB)."""
    script = (
        "import resource, time, sys\nimport wfkit as wf\nimport duckdb\n"
        f"t0 = time.perf_counter()\n{code}\nelapsed = time.perf_counter() - t0\n"
        "print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    elapsed, peak = done.stdout.strip().splitlines()[-1].split()  # after anything DuckDB printed
    return float(elapsed), float(peak)


def s1f(folder: Path, rows: int) -> dict[str, Any]:
    _peak(f"wf.StepLog({str(folder)!r}).latency()")  # warm the file cache
    ours, ours_peak = _peak(f"wf.StepLog({str(folder)!r}).latency()")
    sql = DUCKDB["latency"].format(src=_source(folder))
    theirs, theirs_peak = _peak(f"duckdb.connect().execute({sql!r}).df()")
    _, baseline_peak = _peak("pass")
    return {
        "workload": "S1f",
        "what": f"latency table of {rows:,} rows on disk, each in a fresh process",
        "wfkit": round(ours, 3),
        "duckdb_same_files": round(theirs, 3),
        "unit": "s",
        "ratio": round(ours / theirs, 2),
        "peak_rss_mb": round(ours_peak),
        "duckdb_peak_rss_mb": round(theirs_peak),
        "interpreter_with_wfkit_duckdb_mb": round(baseline_peak),
        "dataset_mb": round(sum(p.stat().st_size for p in segment_files(folder)) / 2**20),
    }


async def _w1(processors: tuple[Any, ...], repeats: int = 300) -> float:
    flow = wf.Workflow("chain100", processors=processors)

    async def noop(state: Any) -> None:
        return None

    names = [f"s{i}" for i in range(100)]
    for name in names:
        flow.step(noop, name=name)
    flow.chain(*names)
    samples = []
    for i in range(repeats + 20):
        t0 = time.perf_counter()
        await flow.arun({}, workspace=False)
        if i >= 20:
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples) / 100


def s2() -> dict[str, Any]:
    with_p = asyncio.run(_w1(wf.Workflow("x").processors))
    without = asyncio.run(_w1(()))
    return {
        "workload": "S2",
        "what": "event processors' overhead per step on W1 (100-step chain, in memory)",
        "wfkit": round(with_p * 1e6, 3),
        "without_processors": round(without * 1e6, 3),
        "unit": "us_per_step",
        "overhead_us": round((with_p - without) * 1e6, 3),
    }


def s3() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WFKIT_SYNCHRONOUS"] = "normal"
        flow = wf.Workflow("chain100")
        names = [f"s{i}" for i in range(100)]
        for name in names:
            flow.step(lambda s: None, name=name)
        flow.chain(*names)
        store = open_store(tmp)
        run_ids = [flow.run({}, workspace=tmp).run_id for _ in range(20)]
        from wfkit.logs._steplog import exporter

        exporter.flush()
        with store.write() as conn:  # export again, timed, on this thread
            conn.execute("UPDATE runs SET exported_seq = 0")
        t0 = time.perf_counter()
        rows = sum(export_run(store, Path(tmp), r) for r in run_ids)
        per_row = (time.perf_counter() - t0) / rows
        store.close()
    return {
        "workload": "S3",
        "what": "parquet export per row (background thread, 100-row segments)",
        "wfkit": round(per_row * 1e6, 2),
        "unit": "us_per_row",
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--big", type=int, default=100_000_000, help="rows of S1f (0 skips it)")
    parser.add_argument("--keep", help="generate the datasets into this folder and keep them (reused if there)")
    args = parser.parse_args(argv)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wfkit-steplog-bench-"))

    def emit(row: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            rest = {k: v for k, v in row.items() if k not in ("workload", "what")}
            print(f"{row['workload']}  {row['what']}: {rest}", flush=True)

    try:
        for rows, run in ((args.rows, s1), (args.big, s1f)):
            if not rows:
                continue
            folder = base / f"steps-{rows}"
            if not folder.exists():
                base.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                generate(folder, rows)
                print(f"# generated {rows:,} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            result = run(folder, rows)
            for row in result if isinstance(result, list) else [result]:
                emit(row)
        emit(s2())
        emit(s3())
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
