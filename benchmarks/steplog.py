"""Step-log figures: summarising 10 million rows, and what logging adds to a step.

    python benchmarks/steplog.py [--json] [--rows 10000000]

S1 summarises a synthetic 10M-row step log (latency percentiles per step, failure rates by error
kind) against a plain pandas groupby-mean of the same frame measured in the same run.
S2 is the per-step overhead of the event processors (redaction, truncation) on W1, the 100-step
in-memory chain, against W1 without processors. S3 is the background parquet export per row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import wfkit as wf
from wfkit.logs._analysis import register_accessor
from wfkit.logs._steplog import export_run
from wfkit.store._workspace import open_store


def synthetic(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = np.array([f"step_{i}" for i in range(10)])
    step = pd.Categorical.from_codes(rng.integers(0, 10, rows), categories=steps)
    latency = rng.lognormal(mean=np.log(0.5), sigma=1.0, size=rows)
    failed = rng.random(rows) < 0.03
    kinds = np.where(rng.random(rows) < 0.7, "transient", "permanent")
    start = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.arange(rows) * 0.01, unit="s")
    return pd.DataFrame(
        {
            "run_id": pd.Categorical.from_codes(
                np.arange(rows) // 10 % 1_000_000, categories=[f"r{i}" for i in range(1_000_000)]
            ),
            "step": step,
            "attempt": np.ones(rows, dtype=np.int32),
            "status": np.where(failed, "failed", "ok"),
            "error_kind": np.where(failed, kinds, None),
            "latency_s": latency,
            "started_at": start,
            "ended_at": start + pd.to_timedelta(latency, unit="s"),
        }
    )


def s1(rows: int) -> dict[str, Any]:
    register_accessor()
    frame = synthetic(rows)
    t0 = time.perf_counter()
    latency = frame.wf.latency()
    failures = frame.wf.failures()
    summary = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame.groupby("step", observed=True)["latency_s"].mean()
    base = time.perf_counter() - t0
    if len(latency) != 10 or len(failures) != 10:
        raise RuntimeError("the summary lost steps")
    return {
        "workload": "S1",
        "what": f"summarise {rows:,} step rows (percentiles + failure rates)",
        "wfkit": round(summary, 3),
        "pandas_groupby_mean": round(base, 3),
        "unit": "s",
        "ratio": round(summary / base, 1),
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
    args = parser.parse_args(argv)
    for row in (s1(args.rows), s2(), s3()):
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            rest = {k: v for k, v in row.items() if k not in ("workload", "what")}
            print(f"{row['workload']}  {row['what']}: {rest}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
