"""Scale-out figures: an eval suite on one process against Dask with 1 and 2 worker processes.

    python benchmarks/scaleout.py [--json] [--cases 400] [--cpu-ms 20] [--repeats 3]

Each case runs a workflow whose one step spends ``--cpu-ms`` of CPU (a pure-Python loop, so the
GIL serialises it within a process). Baseline, measured in the same run: the same suite evaluated
locally in this one process (``wf.evals.evaluate``, concurrency 16). Dask: a LocalCluster of 1 and
2 single-thread worker processes (started before timing), the same call with ``executor=``, the
dataset on local disk. Reported: medians and the spread (min..max) over ``--repeats`` runs, the
speed-up of 2 workers over local, and the per-case overhead of going through Dask (1 worker
against local, both one core). A breakdown for capacity planning: per-partition cost (the slope
between small and large partitions on 1 worker), the driver's per-partition collect cost, the bytes
each partition writes, and the CPU per case.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import wfkit as wf


def burn(ms: float) -> int:
    """About ``ms`` milliseconds of CPU in pure Python (holds the GIL)."""
    end = time.thread_time() + ms / 1000
    n = 0
    while time.thread_time() < end:
        n += sum(i * i for i in range(200))
    return n


def build(cpu_ms: float = 20.0) -> wf.Workflow:
    flow = wf.Workflow("scaleout")

    @flow.step
    def work(state: Any) -> dict[str, Any]:
        burn(cpu_ms)
        return {"y": state["x"] * 2}

    return flow


def make_suite(cases: int, cpu_ms: float) -> Any:
    rows = [{"id": f"c{i:05d}", "x": i, "expected": {"y": 2 * i}} for i in range(cases)]
    return wf.evals.Suite(
        name="scaleout",
        dataset=rows,
        workflow=build,
        variants={"default": {"cpu_ms": cpu_ms}},
        scorers=[wf.evals.exact_match("y")],
    )


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def breakdown(client: Any, suite: Any, cases: int, sizes: tuple[int, int], tmp: Path) -> dict[str, Any]:
    """Per-partition costs on one worker: two partition sizes, the same cases."""
    from wfkit.distributed._dask import run_job
    from wfkit.evals._evals import _EvalPartition

    indexed = list(enumerate(suite.cases()))
    out: dict[str, Any] = {}
    for size in sizes:
        works = [_EvalPartition(suite, "default", tuple(indexed[i : i + size]), 16) for i in range(0, cases, size)]
        data = tmp / f"breakdown-{size}"
        outcome = run_job(
            client,
            data,
            works,
            cases=[len(w.cases) for w in works],
            label="bench",
            progress=False,
            announce=lambda m: None,
        )
        out[size] = {
            "partitions": len(works),
            "seconds": outcome.seconds,
            "collect_s": outcome.timings["collect_s"],
            "bytes": folder_bytes(data),
        }
    small, large = sizes
    extra_partitions = out[small]["partitions"] - out[large]["partitions"]
    return {
        "by_size": out,
        "per_partition_s": (out[small]["seconds"] - out[large]["seconds"]) / extra_partitions,
        "collect_per_partition_s": out[small]["collect_s"] / out[small]["partitions"],
        "bytes_per_partition": out[small]["bytes"] / out[small]["partitions"],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--cpu-ms", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    suite = make_suite(args.cases, args.cpu_ms)
    tmp = Path(tempfile.mkdtemp(prefix="wfkit-scaleout-"))
    os.environ["WFKIT_HOME"] = str(tmp / "ws")
    os.environ.setdefault("WFKIT_SYNCHRONOUS", "normal")
    cpu_per_case = timed(lambda: [burn(args.cpu_ms) for _ in range(50)]) / 50

    def local() -> None:
        wf.evals.evaluate(suite, concurrency=16, progress=False, store=False, workspace=tmp / "local")

    times: dict[str, list[float]] = {"local": [], "dask_1": [], "dask_2": []}
    clusters = {}
    for workers in (1, 2):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        )
        clusters[workers] = (cluster, Client(cluster, set_as_default=False))
    try:
        for workers in (1, 2):  # warm the workers (imports, first connections) outside the timings
            client = clusters[workers][1]
            small = make_suite(8, 1.0)
            wf.evals.evaluate(
                small, executor=client, dataset=tmp / "warm", progress=False, store=False, announce=lambda m: None
            )
        for _ in range(args.repeats):  # interleaved: a neighbour's load hits every variant alike
            times["local"].append(timed(local))
            for workers in (1, 2):
                client = clusters[workers][1]
                times[f"dask_{workers}"].append(
                    timed(
                        lambda c=client: wf.evals.evaluate(
                            suite,
                            executor=c,
                            concurrency=16,
                            dataset=tmp / "data",
                            progress=False,
                            store=False,
                            announce=lambda m: None,
                        )
                    )
                )
        parts = breakdown(clusters[1][1], suite, args.cases, (5, 100), tmp)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    stats = {k: spread(v) for k, v in times.items()}
    local_s, one_s, two_s = (stats[k]["median"] for k in ("local", "dask_1", "dask_2"))
    result = {
        "cases": args.cases,
        "cpu_ms_per_case_target": args.cpu_ms,
        "wall_s_per_case_cpu_work": cpu_per_case,  # > cpu-ms when neighbours load the machine
        "repeats": args.repeats,
        "seconds": stats,
        "speedup_2_workers": local_s / two_s,
        "speedup_2_workers_range": [
            min(times["local"]) / max(times["dask_2"]),
            max(times["local"]) / min(times["dask_2"]),
        ],
        "speedup_1_worker": local_s / one_s,
        "local_s_per_case": local_s / args.cases,
        "dask_overhead_s_per_case": (one_s - local_s) / args.cases,
        "partition_breakdown": parts,
        "cpus": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return
    print(f"{args.cases} cases, {args.cpu_ms:g} ms CPU each ({cpu_per_case * 1000:.1f} ms wall), {args.repeats} runs")
    for name, row in stats.items():
        print(f"  {name:7} median {row['median']:6.2f} s   (min {row['min']:.2f}, max {row['max']:.2f})")
    print(f"  speed-up, 2 workers vs local: {result['speedup_2_workers']:.2f}x (goal >= 1.7x)")
    print(f"  speed-up, 1 worker vs local:  {result['speedup_1_worker']:.2f}x")
    print(
        f"  local per case: {result['local_s_per_case'] * 1000:.1f} ms; Dask overhead per case (1 worker vs local): "
        f"{result['dask_overhead_s_per_case'] * 1000:+.2f} ms"
    )
    print(
        f"  per partition: {parts['per_partition_s'] * 1000:.1f} ms on the worker side, "
        f"{parts['collect_per_partition_s'] * 1000:.2f} ms to collect on the driver, "
        f"{parts['bytes_per_partition'] / 1024:.1f} KiB written"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
