"""Scale-out figures: an eval suite on one process against Dask with 1 and 2 worker processes.

    python benchmarks/scaleout.py [--json] [--cases 400] [--cpu-ms 20] [--repeats 3] [--model-workers 100]

Each case runs a workflow whose one step spends ``--cpu-ms`` of CPU (a pure-Python loop, so the
GIL serialises it within a process: a local eval uses one core, however many the machine has).
Baseline, measured in the same run: the same suite evaluated locally in this one process
(``wf.evals.evaluate``, concurrency 16). Dask: ``wfkit.distributed.local_cluster`` of 1 and 2
single-thread worker processes (started before timing), the same call with ``executor=``, the
dataset on local disk; and, to show what its quiet settings buy, 2 workers of a ``LocalCluster``
with Dask's default settings (``dask_2_defaults``). Both paths at the same durability:
``WFKIT_SYNCHRONOUS=normal`` for the local store (the Dask workers' scratch stores are "normal"
anyway; their segments are fsynced). Same work on both sides: the same cases, concurrency and
scorers, and the same result rows (checked).

Reported: medians and the spread (min..max) over ``--repeats`` interleaved runs, the 1-minute load
average at the start of each run, the speed-up of 1 and 2 workers over local, and the CPU each
variant used (this process, which also hosts the LocalCluster's scheduler and nannies, and the
worker processes): wall times on a shared machine say how much CPU the neighbours left us, CPU
seconds say what wfkit and Dask cost. From the CPU seconds, the ceiling an idle machine would put
on the speed-up (local CPU over the larger of the busiest worker's CPU and all Dask CPU shared by
the cores): a bound for when neighbours take cores, not a measurement. Then the costs a capacity
plan needs: per partition on the worker (the slope between small and large partitions on 1
worker), per partition on the driver (submit, read its results), per task in Dask's scheduler
(no-op tasks), the files and bytes each partition writes, the engine's CPU per case; and from them
a model of ``--model-workers`` workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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


def _cores_for_one_burner(seconds: float) -> float:
    """CPU seconds over wall seconds of a plain busy loop in this process (1.0: a whole core)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    while time.thread_time() - c0 < seconds:
        sum(i * i for i in range(200))
    return (time.thread_time() - c0) / (time.perf_counter() - t0)


def two_process_capacity(seconds: float = 2.0) -> float:
    """Cores the machine gives two plain CPU-bound processes at once, right now: the most any two
    workers can get. On a shared machine it is below 2.0, so a speed-up is read against it."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return float(sum(pool.map(_cores_for_one_burner, [seconds, seconds])))


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


def fingerprint(result: Any) -> str:
    """What an eval gave, run ids and timings left out: its summary and its scores per case."""
    columns = ["case_id", "variant", "scorer", "value", "passed", "detail", "run_status"]
    cases = result.cases[columns].astype(str).sort_values(columns)
    return str(result.summary.to_csv()) + str(cases.to_csv(index=False))


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def folder_files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


class CpuMeter:
    """CPU seconds (user + system) of this process and of the cluster's worker processes, summed
    (:meth:`read`) or one by one (:meth:`per_worker`)."""

    def __init__(self, client: Any | None) -> None:
        import psutil

        self.me = psutil.Process()
        self.workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()] if client else []

    @staticmethod
    def _cpu(process: Any) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    def read(self) -> tuple[float, float]:
        return self._cpu(self.me), sum(self.per_worker())

    def per_worker(self) -> list[float]:
        return [self._cpu(p) for p in self.workers]


def measure(name: str, fn: Callable[[], Any], meter: CpuMeter) -> dict[str, Any]:
    load = os.getloadavg()[0]
    driver0, each0 = meter.read()[0], meter.per_worker()
    t0 = time.perf_counter()
    rows = fn()  # a fingerprint of what the variant computed (None: a part of a variant)
    wall = time.perf_counter() - t0
    driver1, each1 = meter.read()[0], meter.per_worker()
    each = [b - a for a, b in zip(each0, each1, strict=True)]
    return {
        "variant": name,
        "seconds": wall,
        "load1_at_start": load,
        "driver_cpu_s": driver1 - driver0,
        "workers_cpu_s": sum(each),
        "busiest_worker_cpu_s": max(each, default=0.0),
        "cores_used": (driver1 - driver0 + sum(each)) / wall,
        "rows": rows,
    }


def idle_cores(client: Any, seconds: float = 3.0) -> dict[str, float]:
    """Cores an idle cluster uses: this process (scheduler, nannies) and its workers."""
    meter = CpuMeter(client)
    time.sleep(0.5)
    driver0, workers0 = meter.read()
    time.sleep(seconds)
    driver1, workers1 = meter.read()
    return {"driver": (driver1 - driver0) / seconds, "workers": (workers1 - workers0) / seconds}


def noop(i: int) -> int:
    return i


def scheduler_per_task(client: Any, tasks: int = 400) -> dict[str, float]:
    """No-op tasks through this cluster: wall seconds per task (a round trip, as the single worker
    thread takes them one by one) and CPU seconds per task in this process, which hosts the
    LocalCluster's scheduler (with the client's side): the scheduler's serial cost per task."""
    import psutil

    me = psutil.Process()
    client.gather(client.map(noop, range(20), pure=False))  # warm
    cpu0, t0 = CpuMeter._cpu(me), time.perf_counter()
    client.gather(client.map(noop, range(tasks), pure=False))
    return {"wall_s": (time.perf_counter() - t0) / tasks, "cpu_s": (CpuMeter._cpu(me) - cpu0) / tasks}


def breakdown(client: Any, suite: Any, cases: int, sizes: tuple[int, int], tmp: Path) -> dict[str, Any]:
    """Per-partition costs on one worker: two partition sizes, the same cases."""
    from wfkit.distributed._dask import run_job
    from wfkit.evals._evals import _EvalPartition

    indexed = list(enumerate(suite.cases()))
    meter = CpuMeter(client)
    out: dict[int, dict[str, Any]] = {}
    for size in sizes:
        works = [_EvalPartition(suite, "default", tuple(indexed[i : i + size]), 16) for i in range(0, cases, size)]
        data = tmp / f"breakdown-{size}"
        driver0, workers0 = meter.read()
        outcome = run_job(
            client,
            data,
            works,
            cases=[len(w.cases) for w in works],
            label="bench",
            progress=False,
            announce=lambda m: None,
        )
        driver1, workers1 = meter.read()
        out[size] = {
            "partitions": len(works),
            "seconds": outcome.seconds,
            "workers_cpu_s": workers1 - workers0,
            "driver_cpu_s": driver1 - driver0,
            "submit_s": outcome.timings["submit_s"],
            "collect_s": outcome.timings["collect_s"],
            "read_s": outcome.timings["read_s"],
            "bytes": folder_bytes(data),
            "files": folder_files(data),
        }
    small, large = sizes
    extra = out[small]["partitions"] - out[large]["partitions"]
    return {
        "by_size": out,
        "per_partition_s": (out[small]["seconds"] - out[large]["seconds"]) / extra,
        "per_partition_worker_cpu_s": (out[small]["workers_cpu_s"] - out[large]["workers_cpu_s"]) / extra,
        "per_partition_driver_cpu_s": (out[small]["driver_cpu_s"] - out[large]["driver_cpu_s"]) / extra,
        "submit_per_partition_s": out[small]["submit_s"] / out[small]["partitions"],
        "read_per_partition_s": out[small]["read_s"] / out[small]["partitions"],
        "collect_after_s": out[small]["collect_s"],
        "bytes_per_partition": out[small]["bytes"] / out[small]["partitions"],
        "files_per_partition": out[small]["files"] / out[small]["partitions"],
    }


def capacity_model(
    workers: int, cases: int, case_s: float, parts: dict[str, Any], task_cpu_s: float, partitions_per_thread: int = 4
) -> dict[str, Any]:
    """What ``workers`` single-thread workers would do with ``cases`` cases, from the measured costs.

    The default split gives ``partitions_per_thread`` partitions per worker, so the work comes in
    that many waves; all partitions of a wave are alike here, so they end together. Per wave a
    worker spends ``cases_per_partition * case_s`` (the step's CPU plus the engine's) and the fixed
    per-partition cost. The driver pickles and submits every partition before any runs, and reads
    each partition's results when it ends: a wave's N reads queue up behind each other, and only
    the last wave's are not hidden behind the next wave's work. Dask's scheduler hands out the next
    wave's N tasks one after another (its CPU per task, measured with no-op tasks, with the
    client's share: an upper bound). Storage: each partition writes its
    files as it ends, so a wave's N file sets arrive at once.
    """
    import math

    partitions = min(cases, workers * partitions_per_thread)
    per_partition = math.ceil(cases / partitions)
    waves = math.ceil(partitions / workers)
    wave_s = per_partition * case_s + parts["per_partition_s"]
    submit_s = partitions * parts["submit_per_partition_s"]
    dispatch_s = waves * min(workers, partitions) * task_cpu_s
    last_reads_s = min(workers, partitions) * parts["read_per_partition_s"]
    wall = submit_s + waves * wave_s + dispatch_s + last_reads_s
    one = cases * case_s
    return {
        "workers": workers,
        "cases": cases,
        "partitions": partitions,
        "cases_per_partition": per_partition,
        "wave_s": wave_s,
        "submit_s": submit_s,
        "scheduler_dispatch_s": dispatch_s,
        "driver_last_reads_s": last_reads_s,
        "predicted_wall_s": wall,
        "speedup_vs_one_process": one / wall,
        "efficiency": one / wall / workers,
        "partitions_ending_at_once": min(workers, partitions),
        "mib_per_wave": min(workers, partitions) * parts["bytes_per_partition"] / 2**20,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--cpu-ms", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-workers", type=int, default=100)
    args = parser.parse_args(argv)

    suite = make_suite(args.cases, args.cpu_ms)
    tmp = Path(tempfile.mkdtemp(prefix="wfkit-scaleout-"))
    os.environ["WFKIT_HOME"] = str(tmp / "ws")
    os.environ.setdefault("WFKIT_SYNCHRONOUS", "normal")
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(50):
        burn(args.cpu_ms)
    wall_per_cpu = (time.perf_counter() - t0) / (time.thread_time() - c0)  # > 1 when neighbours load the machine

    def local() -> str:
        return fingerprint(
            wf.evals.evaluate(suite, concurrency=16, progress=False, store=False, workspace=tmp / "local")
        )

    def local_export() -> None:
        """The local runs' step log written to parquet. A local eval leaves that to a thread that
        starts 30 s later (or to the first reader, or the process's exit), while a Dask partition
        writes its step log to the dataset before it ends: timed apart, so the two can be compared
        with and without it, and done here, so it never runs inside another variant's time."""
        exporter.flush()

    def engine_only() -> None:  # the engine's own cost per case: the same suite, no CPU in the step
        wf.evals.evaluate(
            make_suite(args.cases, 0.0), concurrency=16, progress=False, store=False, workspace=tmp / "engine"
        )

    def on_dask(client: Any) -> Callable[[], str]:
        def run() -> str:
            result = wf.evals.evaluate(
                suite,
                executor=client,
                concurrency=16,
                dataset=tmp / "data",
                progress=False,
                store=False,
                announce=lambda m: None,
            )
            return fingerprint(result)

        return run

    def on_cluster(workers: int, then: Callable[[Any], Any], *, dask_defaults: bool = False) -> Any:
        """Start wfkit's local_cluster (or, ``dask_defaults``, a LocalCluster with Dask's default
        settings), warm its workers (imports, first connections), call ``then(client)`` and close
        it: no idle cluster shares the machine, or this process, with another variant."""
        from distributed import Client, LocalCluster

        from wfkit.distributed import local_cluster

        if dask_defaults:
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
            )
        else:
            cluster = local_cluster(workers, dashboard_address="127.0.0.1:0")
        with cluster, Client(cluster, set_as_default=False) as client:
            wf.evals.evaluate(
                make_suite(8, 1.0),
                executor=client,
                dataset=tmp / "warm",
                progress=False,
                store=False,
                announce=lambda m: None,
            )
            return then(client)

    from wfkit.logs._steplog import exporter

    runs: list[dict[str, Any]] = []
    capacity: list[float] = []
    engine_only()  # warm the local path
    exporter.flush()
    engine = measure("engine_only", engine_only, CpuMeter(None))
    exporter.flush()
    for _ in range(args.repeats):  # interleaved: a neighbour's load hits every variant alike
        runs.append(measure("local", local, CpuMeter(None)))
        runs.append(measure("local_export", local_export, CpuMeter(None)))
        capacity.append(two_process_capacity())  # the same-run ceiling for two workers' cores
        for workers in (1, 2):
            runs.append(on_cluster(workers, lambda c, w=workers: measure(f"dask_{w}", on_dask(c), CpuMeter(c))))
        runs.append(on_cluster(2, lambda c: measure("dask_2_defaults", on_dask(c), CpuMeter(c)), dask_defaults=True))
    idle = {
        "dask_2": on_cluster(2, idle_cores),
        "dask_2_defaults": on_cluster(2, idle_cores, dask_defaults=True),
    }
    outputs = [(r["variant"], r.pop("rows")) for r in runs if r["variant"] != "local_export"]
    if len({fp for _, fp in outputs}) != 1:
        differ = sorted({v for v, fp in outputs if fp != outputs[0][1]})
        raise SystemExit(f"{', '.join(differ)} gave other results than {outputs[0][0]}: their times do not compare")
    parts, task = on_cluster(1, lambda c: (breakdown(c, suite, args.cases, (5, 100), tmp), scheduler_per_task(c)))

    def of(variant: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["variant"] == variant]

    for evaluated, exported in zip(of("local", "seconds"), of("local_export", "seconds"), strict=True):
        runs.append({"variant": "local_with_export", "seconds": evaluated + exported})
    variants = ("local", "dask_1", "dask_2", "dask_2_defaults")
    stats = {v: spread(of(v, "seconds")) for v in (*variants, "local_export", "local_with_export")}
    cpu = {
        v: {
            "driver_cpu_s": statistics.median(of(v, "driver_cpu_s")),
            "workers_cpu_s": statistics.median(of(v, "workers_cpu_s")),
            "busiest_worker_cpu_s": statistics.median(of(v, "busiest_worker_cpu_s")),
            "cores_used": statistics.median(of(v, "cores_used")),
        }
        for v in (*variants, "local_export")
    }
    cores = os.cpu_count() or 1

    def ceiling(variant: str) -> float:
        """Local CPU (the eval, not its deferred export) over the CPU the variant needs on an idle
        machine of ``cores`` cores."""
        c = cpu[variant]
        shared = (c["driver_cpu_s"] + c["workers_cpu_s"]) / cores
        return cpu["local"]["driver_cpu_s"] / max(c["busiest_worker_cpu_s"], shared)

    local_s, one_s, two_s = (stats[k]["median"] for k in ("local", "dask_1", "dask_2"))
    engine_cpu_per_case = engine["driver_cpu_s"] / args.cases
    case_s = args.cpu_ms / 1000 + engine_cpu_per_case
    model = {
        str(n): capacity_model(args.model_workers, n, case_s, parts, task["cpu_s"])
        for n in (args.cases, 10_000, 100_000, 1_000_000)
    }
    result = {
        "cases": args.cases,
        "cpu_ms_per_case_target": args.cpu_ms,
        "wall_per_cpu_second_before_runs": wall_per_cpu,  # 1.0 on an idle core; 2.0 = half a core for us
        "repeats": args.repeats,
        "runs": runs,
        "seconds": stats,
        "cpu": cpu,
        "speedup_2_workers": local_s / two_s,
        "speedup_2_workers_range": [
            min(of("local", "seconds")) / max(of("dask_2", "seconds")),
            max(of("local", "seconds")) / min(of("dask_2", "seconds")),
        ],
        "speedup_2_workers_vs_local_with_export": stats["local_with_export"]["median"] / two_s,
        "speedup_1_worker": local_s / one_s,
        "speedup_2_workers_dask_defaults": local_s / stats["dask_2_defaults"]["median"],
        "idle_ceiling_2_workers": ceiling("dask_2"),
        "two_process_cores": spread(capacity),
        "dask_2_cores_of_two_process_cores": cpu["dask_2"]["cores_used"] / statistics.median(capacity),
        "idle_ceiling_2_workers_dask_defaults": ceiling("dask_2_defaults"),
        "load1_median": statistics.median(r["load1_at_start"] for r in runs if "load1_at_start" in r),
        "idle_cluster_cores": idle,
        "local_s_per_case": local_s / args.cases,
        "dask_overhead_s_per_case": (one_s - local_s) / args.cases,
        "dask_overhead_cpu_s_per_case": (
            cpu["dask_1"]["workers_cpu_s"] + cpu["dask_1"]["driver_cpu_s"] - cpu["local"]["driver_cpu_s"]
        )
        / args.cases,
        "engine_cpu_s_per_case": engine_cpu_per_case,
        "engine_wall_s_per_case": engine["seconds"] / args.cases,
        "scheduler_per_task": task,
        "partition_breakdown": parts,
        "model": model,
        "cpus": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return
    print(
        f"{args.cases} cases, {args.cpu_ms:g} ms CPU each, {args.repeats} interleaved runs; "
        f"before them a CPU second took {wall_per_cpu:.2f} s of wall time"
    )
    for run in runs:
        if run["variant"] == "local_with_export":
            continue
        print(
            f"  {run['variant']:15} {run['seconds']:6.2f} s  load {run['load1_at_start']:5.2f}  CPU: driver "
            f"{run['driver_cpu_s']:5.2f} s, workers {run['workers_cpu_s']:5.2f} s ({run['cores_used']:.2f} cores)"
        )
    for name, row in stats.items():
        print(f"  {name:15} median {row['median']:6.2f} s   (min {row['min']:.2f}, max {row['max']:.2f})")
    print(f"  speed-up, 2 workers vs local: {result['speedup_2_workers']:.2f}x (goal >= 1.7x)")
    print(
        f"  speed-up, 2 workers vs local with its step-log export (which Dask's partitions do inside their "
        f"time): {result['speedup_2_workers_vs_local_with_export']:.2f}x"
    )
    print(f"  speed-up, 1 worker vs local:  {result['speedup_1_worker']:.2f}x")
    print(
        f"  speed-up, 2 workers with Dask's default settings vs local: {result['speedup_2_workers_dask_defaults']:.2f}x"
    )
    print(
        f"  median 1-minute load at the runs' start: {result['load1_median']:.2f} on {cores} cores; "
        f"from CPU seconds, an idle machine would allow at most {result['idle_ceiling_2_workers']:.2f}x with 2 "
        f"workers ({result['idle_ceiling_2_workers_dask_defaults']:.2f}x with Dask's defaults)"
    )
    print(
        f"  two plain CPU-bound processes got {result['two_process_cores']['median']:.2f} cores in this run "
        f"(min {result['two_process_cores']['min']:.2f}, max {result['two_process_cores']['max']:.2f}): the most two "
        f"workers can use; 2 workers used {cpu['dask_2']['cores_used']:.2f} cores, "
        f"{result['dask_2_cores_of_two_process_cores']:.0%} of that"
    )
    print(
        "  an idle cluster of 2 workers uses (cores, this process / workers): "
        + ", ".join(f"{v} {c['driver']:.3f} / {c['workers']:.3f}" for v, c in idle.items())
    )
    print(
        f"  local per case: {result['local_s_per_case'] * 1000:.1f} ms; Dask overhead per case (1 worker vs local): "
        f"{result['dask_overhead_s_per_case'] * 1000:+.2f} ms wall, "
        f"{result['dask_overhead_cpu_s_per_case'] * 1000:+.2f} ms CPU (driver + worker against local)"
    )
    print(
        f"  engine alone (0 ms steps): {engine_cpu_per_case * 1000:.2f} ms CPU, "
        f"{result['engine_wall_s_per_case'] * 1000:.2f} ms wall per case"
    )
    print(
        f"  per partition: {parts['per_partition_s'] * 1000:.1f} ms wall and "
        f"{parts['per_partition_worker_cpu_s'] * 1000:.1f} ms CPU on the worker, "
        f"{parts['per_partition_driver_cpu_s'] * 1000:.1f} ms CPU in the driver process; driver: submit "
        f"{parts['submit_per_partition_s'] * 1000:.2f} ms, read results {parts['read_per_partition_s'] * 1000:.2f} ms; "
        f"{parts['files_per_partition']:.1f} files, {parts['bytes_per_partition'] / 1024:.1f} KiB written"
    )
    print(
        f"  Dask, no-op tasks on 1 worker: {task['wall_s'] * 1000:.2f} ms per task (round trip), "
        f"{task['cpu_s'] * 1000:.2f} ms CPU per task in the scheduler's process"
    )
    print(f"  model of {args.model_workers} workers (4 partitions each, from the costs above):")
    for n, m in model.items():
        print(
            f"    {int(n):>9,} cases: {m['partitions']} partitions of {m['cases_per_partition']}, "
            f"{m['predicted_wall_s']:8.1f} s, {m['speedup_vs_one_process']:5.1f}x ({m['efficiency']:.0%}); "
            f"waves of {m['wave_s']:.2f} s; submit {m['submit_s']:.2f} s, scheduler dispatch "
            f"{m['scheduler_dispatch_s']:.2f} s, last reads {m['driver_last_reads_s']:.2f} s; "
            f"{m['partitions_ending_at_once']} file sets ({m['mib_per_wave']:.1f} MiB) at each wave's end"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
