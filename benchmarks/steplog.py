"""Step-log figures: summaries of a large step log read from disk, and what logging adds to a step.

    python benchmarks/steplog.py [--json] [--rows 10000000] [--big 100000000] [--keep DIR]

S1 writes a synthetic step log of ``--rows`` rows as wfkit lays it out on disk (hive partitions by
workflow and date, zstd parquet; generated once by DuckDB into a temporary folder) and measures,
in the same run, wfkit's tables against DuckDB answering the same question over the same files:
S1a the latency table (P50/P90/P95/P99/max/mean/count per (workflow, step)), S1b the failures
table, S1c the retries table (`wf.StepLog(...)`), S1d the accessor on a frame already in memory
against DuckDB on that same frame, and S1e `wf.steps(columns=[...])` then the accessor, the path
of a notebook that loads the rows (S1e-sorted: the same with ``sort=True``; S1e-all: every column,
in start order, what ``wf.steps(path).wf.latency()`` costs). S1g is the runs table (one row per
run, with how it ended) against DuckDB's plainest per-run table (start, end, attempts) on the same
files, and S1h ``wfkit report`` of the whole log in a fresh process, with its peak memory (no
baseline: it reads the runs, latency, failures, errors and advice tables, and draws 3 figures per
workflow). S1f are the latency, failures and retries tables of ``--big`` rows, each in a fresh
process, with its peak memory. Every wfkit
figure and its DuckDB baseline are timed alternately in the same loop (each warmed up once),
medians of ``--repeats``; the machine's load average is printed beside each figure.
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
from wfkit.logs._steplog import export_runs, segment_files
from wfkit.store._workspace import open_store

WORKFLOWS = 3
STEPS = 10
DAYS = 10


def generate(folder: Path, rows: int, seed: int = 0) -> None:
    """``rows`` step-log rows in wfkit's layout: 3 workflows x 10 steps, lognormal latencies, 3% of
    attempts failing (70% transient, retried), runs of 10 steps, 10 days."""
    import duckdb

    conn = duckdb.connect()
    conn.execute("SET enable_progress_bar = false")
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
            0.0::DOUBLE AS queue_s,
            CASE WHEN u < 0.021 THEN 0.5::DOUBLE ELSE NULL END AS retry_delay_s,
            NULL::VARCHAR AS route_taken, NULL::VARCHAR[] AS tools, NULL::VARCHAR AS model,
            NULL::BIGINT AS tokens_in, NULL::BIGINT AS tokens_out, NULL::DOUBLE AS cost_usd,
            NULL::VARCHAR AS approver, NULL::VARCHAR AS decision_comment, NULL::VARCHAR AS parameters_hash,
            'bench' AS host, NULL::VARCHAR AS extra, (i % {STEPS})::BIGINT AS seq,
            NULL::INTEGER AS map_index, NULL::VARCHAR AS parent_run_id,
            CASE WHEN u < 0.03 THEN NULL ELSE 0.0002 END::DOUBLE AS durable_wait_s,
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
    "runs": (
        'SELECT run_id, min(started_at) AS start, max(ended_at) AS "end", count(*) FILTER (WHERE attempt > 0) '
        "AS attempts, first(workflow) AS workflow FROM {src} GROUP BY run_id ORDER BY start, run_id"
    ),
    "retries": (
        "SELECT workflow, step, sum(r), avg(r), max(r) FROM (SELECT workflow, step, run_id, visit, map_index, "
        "max(attempt) - 1 AS r FROM {src} WHERE attempt > 0 GROUP BY ALL) GROUP BY ALL ORDER BY ALL"
    ),
}


REPEATS = 5


def paired(ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Medians of ``ours`` and ``theirs`` timed alternately (each warmed up once), so a change in
    the machine's load (other people's jobs) weighs on both alike; and ours' last result."""
    result = ours()  # warm-up: file cache, imports, DuckDB's first connection
    theirs()
    mine, other = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = ours()
        mine.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs()
        other.append(time.perf_counter() - t0)
    return statistics.median(mine), statistics.median(other), result


def load() -> float:
    """The 1-minute load average (the machine is shared: read each figure beside it)."""
    return round(os.getloadavg()[0], 1)


_CONN: Any = None


def duckdb_table(folder: Path, question: str) -> Any:
    """DuckDB's answer on one connection kept open, as StepLog keeps its own."""
    import duckdb

    global _CONN
    if _CONN is None:
        _CONN = duckdb.connect()
        _CONN.execute("SET enable_progress_bar = false")
    return _CONN.execute(DUCKDB[question].format(src=_source(folder))).df()


COLUMNS = ["workflow", "step", "attempt", "status", "latency_s", "map_index"]


def s1(folder: Path, rows: int, repeats: int = REPEATS) -> list[dict[str, Any]]:
    log = wf.StepLog(folder)
    out = []
    for code, question in (("S1a", "latency"), ("S1b", "failures"), ("S1c", "retries")):
        ours, theirs, table = paired(getattr(log, question), lambda q=question: duckdb_table(folder, q), repeats)
        reference = duckdb_table(folder, question)
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
                "load_avg": load(),
            }
        )
    # The accessor on a frame in memory (pandas), against DuckDB querying that same frame.
    import duckdb

    frame = wf.steps(folder, columns=COLUMNS, sort=False)
    query = DUCKDB["latency"].format(src="frame")
    ours, theirs, _ = paired(frame.wf.latency, lambda f=frame: duckdb.query_df(f, "frame", query).df(), repeats)
    out.append(
        {
            "workload": "S1d",
            "what": f"latency table of {len(frame):,} rows already in memory (df.wf accessor, pandas)",
            "wfkit": round(ours, 3),
            "duckdb_same_frame": round(theirs, 3),
            "unit": "s",
            "ratio": round(ours / theirs, 2),
            "load_avg": load(),
        }
    )
    del frame
    loads: list[tuple[str, str, Callable[[], Any], int]] = [
        ("S1e", "wf.steps(columns=[6 columns]).wf.latency()", lambda: wf.steps(folder, columns=COLUMNS), repeats),
        (
            "S1e-sorted",
            "wf.steps(columns=[6 columns], sort=True).wf.latency()",
            lambda: wf.steps(folder, columns=COLUMNS, sort=True),
            repeats,
        ),
        # Every column of every row into pandas: slow by nature, so fewer repeats.
        ("S1e-all", "wf.steps(path).wf.latency() (all 31 columns, start order)", lambda: wf.steps(folder), 3),
    ]
    for code, what, read, times in loads:
        ours, theirs, table = paired(
            lambda read=read: read().wf.latency(), lambda: duckdb_table(folder, "latency"), times
        )
        if len(table) != WORKFLOWS * STEPS:
            raise RuntimeError(f"{code}: {len(table)} rows, expected {WORKFLOWS * STEPS}")
        out.append(
            {
                "workload": code,
                "what": f"{what} of {rows:,} rows (load into pandas, then summarise)",
                "wfkit": round(ours, 3),
                "duckdb_same_files": round(theirs, 3),
                "unit": "s",
                "ratio": round(ours / theirs, 2),
                "load_avg": load(),
            }
        )
    ours, theirs, table = paired(log.runs, lambda: duckdb_table(folder, "runs"), repeats)
    if len(table) != rows // STEPS:
        raise RuntimeError(f"runs: {len(table)} rows, expected {rows // STEPS}")
    out.append(
        {
            "workload": "S1g",
            "what": f"runs table (one row per run, how it ended) of {rows:,} rows on disk (wf.StepLog)",
            "wfkit": round(ours, 3),
            "duckdb_per_run_min_max_count": round(theirs, 3),
            "unit": "s",
            "ratio": round(ours / theirs, 2),
            "load_avg": load(),
        }
    )
    report = Path(tempfile.mkdtemp(prefix="wfkit-steplog-report-"))
    try:
        elapsed, peak = _peak(
            f"from wfkit.logs._report import write_report\nwrite_report({str(folder)!r}, {str(report)!r})"
        )
    finally:
        shutil.rmtree(report, ignore_errors=True)
    out.append(
        {
            "workload": "S1h",
            "what": f"wfkit report of {rows:,} rows on disk ({rows // STEPS:,} runs), in a fresh process",
            "wfkit": round(elapsed, 2),
            "unit": "s",
            "peak_rss_mb": round(peak),
            "load_avg": load(),
        }
    )
    return out


def _peak(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter; its wall time for the summary and peak RSS (MB).

    The peak is the child's own high-water mark (VmHWM, which starts afresh with the program the
    child runs): getrusage's ru_maxrss carries over the parent's resident size at the fork, which
    after generating the dataset in this process is gigabytes."""
    script = (
        "import resource, time, sys\nimport wfkit as wf\nimport duckdb\n"
        f"t0 = time.perf_counter()\n{code}\nelapsed = time.perf_counter() - t0\n"
        "try:\n"
        "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "    peak = int(status.split()[0]) / 1024\n"
        "except (OSError, IndexError):\n"
        "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(elapsed, peak)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    elapsed, peak = done.stdout.strip().splitlines()[-1].split()  # after anything DuckDB printed
    return float(elapsed), float(peak)


def s1f(folder: Path, rows: int, repeats: int = REPEATS) -> list[dict[str, Any]]:
    """Each summary of ``rows`` rows in a fresh process (its peak RSS is the summary's own),
    alternating with DuckDB's in a fresh process; medians of ``repeats``."""
    _peak(f"wf.StepLog({str(folder)!r}).latency()")  # warm the file cache
    _, baseline_peak = _peak("pass")
    dataset_mb = round(sum(p.stat().st_size for p in segment_files(folder)) / 2**20)
    out = []
    for code, question in (("S1f-latency", "latency"), ("S1f-failures", "failures"), ("S1f-retries", "retries")):
        sql = DUCKDB[question].format(src=_source(folder))
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        for _ in range(repeats):
            ours.append(_peak(f"wf.StepLog({str(folder)!r}).{question}()"))
            theirs.append(
                _peak(f"c = duckdb.connect()\nc.execute('SET enable_progress_bar = false')\nc.execute({sql!r}).df()")
            )
        time_ours, time_theirs = (statistics.median(t for t, _ in side) for side in (ours, theirs))
        out.append(
            {
                "workload": code,
                "what": f"{question} table of {rows:,} rows on disk ({dataset_mb:,} MB), each in a fresh process",
                "wfkit": round(time_ours, 3),
                "duckdb_same_files": round(time_theirs, 3),
                "unit": "s",
                "ratio": round(time_ours / time_theirs, 2),
                "peak_rss_mb": round(max(p for _, p in ours)),
                "duckdb_peak_rss_mb": round(max(p for _, p in theirs)),
                "interpreter_with_wfkit_duckdb_mb": round(baseline_peak),
                "load_avg": load(),
            }
        )
    return out


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
        rows = export_runs(store, Path(tmp), run_ids)  # as the exporter's thread does: together
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
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed repeats per figure (medians)")
    parser.add_argument("--only", choices=["s1", "s1f", "s2", "s3"], action="append", help="run only these parts")
    args = parser.parse_args(argv)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wfkit-steplog-bench-"))

    def emit(row: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            rest = {k: v for k, v in row.items() if k not in ("workload", "what")}
            print(f"{row['workload']}  {row['what']}: {rest}", flush=True)

    parts = set(args.only or ["s1", "s1f", "s2", "s3"])
    try:
        for rows, run, part in ((args.rows, s1, "s1"), (args.big, s1f, "s1f")):
            if not rows or part not in parts:
                continue
            folder = base / f"steps-{rows}"
            if not folder.exists():
                base.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                generate(folder, rows)
                print(f"# generated {rows:,} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            for row in run(folder, rows, args.repeats):
                emit(row)
        if "s2" in parts:
            emit(s2())
        if "s3" in parts:
            emit(s3())
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
