"""Honest latency under load: the same workloads in memory and durable, side by side, in one run.

    python benchmarks/fidelity.py [--json] [--only F1,F2,F3,W4]

- F1: 500 concurrent runs x 5 steps of ``await asyncio.sleep(0.01)``, a 0.2 s timeout per step,
  parquet exports switched on: recorded step latency P50 and P99, durable (synchronous=FULL)
  against in memory. Targets: P50 ratio <= 1.10, P99 ratio <= 1.25, no spurious timeouts.
- F2: 1,000 concurrent durable runs x 5 steps of 10 ms: wall time against the same runs in memory
  (W5). Target: <= 2x (the ideal is 0.05 s). Also the CPU a durable step costs beyond the same step
  in memory (``cpu_us_per_durable_step``), split into the loop thread's and the writer thread's,
  and two floors from the same rounds: the same durable runs with a store that runs no SQL
  (``floor_no_sql_ratio``: the writes still cross to the writer thread and back) and with every
  write resolved on the loop as it is handed over (``floor_no_hop_ratio``: the engine's own work for
  a durable run, which no store can take away); and ``floor_loop_cpu_ratio``, the CPU time the
  durable runs took on the loop's thread against the memory runs' (the memory runs' wall on an idle
  machine; that work runs one piece at a time on the loop, so whatever the store, the durable wall
  is at least that).
- F3: 8 processes x 100 concurrent durable runs (the F2 chain) on one workspace: total wall time,
  per-process wall time and P99 run latency, against the same processes in memory.
- W4: one sequential 100-step chain of no-op steps, durable, against a plain sqlite3 WAL commit
  per step in the same process. Targets: FULL <= 1.25x, NORMAL within 30 us per step.

Every figure's baseline is measured in the same run (the machines are shared and noisy): compare
the ratio, not the absolute numbers. Each row carries the machine's load average (1 minute) when
the workload started and ended, and figures are medians over ``--rounds`` repeats. W4 also gives
CPU microseconds per step (this process's CPU time, which another process's load inflates far less
than wall time), the mean wall per step beside the median (``*_mean_us_per_step``: a stall that hits
one chain in a few shows there), and the same chain with the writer's commits on an idle loop
switched off (``writer_thread_*``: every commit through the writer thread, two thread hops per step;
at FULL a quiet loop commits itself too).
Beside them, two floors from the same rounds: ``hop_floor_*``, the baseline's own commit made by a
bare thread while the loop awaits it (what any store that keeps its commits off the event loop pays
at least), and ``journal_statements_*``, wfkit's checkpoint row alone in its BEGIN / INSERT / COMMIT
(what the journal's row costs beside the baseline's four columns).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import queue
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine import sleepy_chain  # this folder's engine.py: W5's chain, F2's in-memory side

import wfkit as wf
from wfkit.logs._steplog import exporter
from wfkit.model._events import StepEvent
from wfkit.store._journal import event_row, insert_rows
from wfkit.store._store import Store
from wfkit.store._workspace import open_store
from wfkit.store._writer import Writer
from wfkit.testing import MemorySink


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _forget_exports() -> None:
    """Drop the exports still pending, and wait for one under way (its timer thread may be writing
    into the temporary workspace that is about to be deleted)."""
    exporter.clear()
    exporter.flush()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _batch(flow: wf.Workflow, runs: int, workspace: Any, sink: MemorySink | None = None) -> float:
    return (await _timed_batch(flow, runs, workspace, sink))[0]


async def _timed_batch(
    flow: wf.Workflow, runs: int, workspace: Any, sink: MemorySink | None = None
) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds of the whole process (the loop and the store's writer thread) and
    CPU seconds of the loop's thread alone, for ``runs`` concurrent runs."""
    gc.collect()
    sinks = [sink] if sink is not None else []
    t0, c0, l0 = time.perf_counter(), time.process_time(), time.thread_time()
    await asyncio.gather(*(flow.arun({}, workspace=workspace, sinks=sinks, raise_on_error=False) for _ in range(runs)))
    return time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - l0


# ---- F1 -------------------------------------------------------------------------------------------


async def f1(rounds: int) -> dict[str, Any]:
    flow = sleepy_chain(timeout=0.2)
    memory, durable = MemorySink(), MemorySink()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WFKIT_SYNCHRONOUS"] = "full"
        store = open_store(tmp)
        # Exports on, and often: a round's runs are exported while the next round runs.
        exporter.delay = 0.05
        await _batch(flow, 50, False)  # warm up both paths
        await _batch(flow, 50, tmp)
        memory.clear()
        durable.clear()
        p50_ratios, p99_ratios = [], []
        for i in range(rounds):
            m0, d0 = len(memory.events), len(durable.events)
            # Which side goes first swaps every round: the side that follows a durable batch runs
            # beside that batch's export, and the machine's speed drifts from one batch to the next.
            for workspace, sink in ((False, memory), (tmp, durable))[:: 1 if i % 2 == 0 else -1]:
                await _batch(flow, 500, workspace, sink)
            mem_round = [e.latency_s for e in memory.events[m0:] if e.status == "ok"]
            dur_round = [e.latency_s for e in durable.events[d0:] if e.status == "ok"]
            p50_ratios.append(statistics.median(dur_round) / statistics.median(mem_round))
            p99_ratios.append(_quantile(dur_round, 0.99) / _quantile(mem_round, 0.99))
        exporter.flush()
        exported = len(wf.steps(tmp))
        commits, writes = store.writer.commits, store.writer.writes
        _forget_exports()
        store.close()
    exporter.delay = 30.0
    mem = [e.latency_s for e in memory.events if e.status == "ok"]
    dur = [e.latency_s for e in durable.events if e.status == "ok"]
    waits = [e.durable_wait_s for e in durable.events if e.durable_wait_s is not None]
    mem_timeouts = sum(1 for e in memory.events if e.status == "timeout")
    dur_timeouts = sum(1 for e in durable.events if e.status == "timeout")
    p50m, p99m = statistics.median(mem), _quantile(mem, 0.99)
    p50d, p99d = statistics.median(dur), _quantile(dur, 0.99)
    return {
        "workload": "F1",
        "what": f"{rounds} x 500 concurrent runs x 5 steps of sleep(0.01), timeout 0.2 s, parquet exports on",
        "memory_p50_ms": round(p50m * 1e3, 2),
        "durable_p50_ms": round(p50d * 1e3, 2),
        "p50_ratio": round(p50d / p50m, 3),
        "memory_p99_ms": round(p99m * 1e3, 2),
        "durable_p99_ms": round(p99d * 1e3, 2),
        "p99_ratio": round(p99d / p99m, 3),
        "p50_ratio_per_round": [round(r, 3) for r in p50_ratios],
        "p99_ratio_per_round": [round(r, 3) for r in p99_ratios],
        "memory_timeouts": mem_timeouts,
        "durable_timeouts": dur_timeouts,
        "durable_wait_p50_ms": round(statistics.median(waits) * 1e3, 2) if waits else None,
        "durable_wait_p99_ms": round(_quantile(waits, 0.99) * 1e3, 2) if waits else None,
        "steps": len(dur),
        "rows_exported": exported,
        "writes_per_commit": round(writes / commits, 1) if commits else None,
        "targets": {"p50_ratio": 1.10, "p99_ratio": 1.25, "durable_timeouts": 0},
    }


# ---- F2 -------------------------------------------------------------------------------------------


@contextmanager
def _store_floor(kind: str) -> Iterator[None]:
    """The durable runs' store made free, to measure what the rest of the durable path costs.

    ``no_sql``: the writer thread takes each batch of writes and resolves them as committed without
    running a statement (each checkpoint still crosses to that thread and back: the hand-over, the
    wait, the wake-up). ``no_hop``: every write is resolved as committed when it is handed over,
    on the loop, so no run ever waits (what is left is the engine's own work for a durable run:
    its rows, its checkpoints' JSON, its start and end). Nothing reaches the file: used on a
    workspace of its own."""
    seqs = itertools.count(1)

    def commit(self: Writer, conn: sqlite3.Connection, batch: list[Any], *, isolate: bool) -> bool:
        for pending in batch:
            pending.error, pending.result = None, next(seqs) if pending.fn is None else None
        self.commits += 1
        self.writes += len(batch)
        return True

    def submit_async(self: Writer, fn: Any, rows: Any = (), loop: Any = None) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = (loop or asyncio.get_running_loop()).create_future()
        done.set_result(next(seqs) if fn is None else None)
        return done

    name, free = ("_commit", commit) if kind == "no_sql" else ("submit_async", submit_async)
    saved = getattr(Writer, name)
    setattr(Writer, name, free)
    try:
        yield
    finally:
        setattr(Writer, name, saved)


async def f2(rounds: int) -> dict[str, Any]:
    flow = sleepy_chain()
    walls: dict[str, list[float]] = {"memory": [], "durable": [], "no_sql": [], "no_hop": []}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as floor:
        os.environ["WFKIT_SYNCHRONOUS"] = "full"
        store = open_store(tmp)
        open_store(floor)
        await _batch(flow, 100, False)
        await _batch(flow, 100, tmp)
        cpu_extra, loop_extra, loop_ratio = [], [], []
        commits, writes = store.writer.commits, store.writer.writes
        for i in range(rounds):
            # Which side goes first rotates every round, as in F1: the machine's speed drifts.
            order = ["memory", "durable", "no_sql", "no_hop"]
            order = order[i % 4 :] + order[: i % 4]
            figures = {}
            for side in order:
                if side in ("memory", "durable"):
                    figures[side] = await _timed_batch(flow, 1000, tmp if side == "durable" else False)
                else:
                    with _store_floor(side):
                        figures[side] = await _timed_batch(flow, 1000, floor)
                walls[side].append(figures[side][0])
            cpu_extra.append(figures["durable"][1] - figures["memory"][1])
            loop_extra.append(figures["durable"][2] - figures["memory"][2])
            loop_ratio.append(figures["durable"][2] / figures["memory"][2])
        commits, writes = store.writer.commits - commits, store.writer.writes - writes
        _forget_exports()
        store.close()
    median = {side: statistics.median(values) for side, values in walls.items()}
    a, b = median["durable"], median["memory"]
    steps = 1000 * 5
    cpu_us = statistics.median(cpu_extra) / steps * 1e6
    loop_us = statistics.median(loop_extra) / steps * 1e6
    return {
        "workload": "F2",
        "what": "1,000 concurrent runs x 5 steps of 10 ms: durable (FULL) wall time vs in memory (W5)",
        "durable_s": round(a, 3),
        "memory_s": round(b, 3),
        "ratio": round(a / b, 2),
        "ratio_per_round": [round(d / m, 2) for d, m in zip(walls["durable"], walls["memory"], strict=True)],
        "ideal_s": 0.05,
        # CPU a durable step costs beyond the same step in memory: the whole process's (loop and
        # writer thread), and the loop thread's share of it (the rest is the writer's).
        "cpu_us_per_durable_step": round(cpu_us, 1),
        "loop_cpu_us_per_durable_step": round(loop_us, 1),
        "writer_cpu_us_per_durable_step": round(cpu_us - loop_us, 1),
        "writes_per_commit": round(writes / commits, 1) if commits else None,
        # Floors from the same rounds (see _store_floor): the durable runs with a writer thread that
        # runs no SQL, and with every write resolved on the loop as it is handed over. What the
        # store's statements and its thread cost is the distance from the first to ``ratio``; the
        # second is the engine's own durable path, which no store can make cheaper.
        "floor_no_sql_ratio": round(median["no_sql"] / b, 2),
        "floor_no_hop_ratio": round(median["no_hop"] / b, 2),
        # The CPU time the durable runs took on the loop's own thread, against the memory runs'
        # (which is their wall on an idle machine: they wait for nothing but their sleeps, which
        # overlap): the loop runs that work one piece at a time, so no store (another thread,
        # another process, a free one) brings the durable wall below it. CPU over CPU, so the
        # machine's load moves it far less than the wall ratios.
        "floor_loop_cpu_ratio": round(statistics.median(loop_ratio), 2),
        "target": {"ratio": 2.0},
    }


# ---- F3 -------------------------------------------------------------------------------------------

_F3_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import wfkit as wf

    flow = wf.Workflow("busy")
    async def nap(state):
        await asyncio.sleep(0.01)
    for i in range(5):
        flow.step(nap, name=f"s{i}")
    flow.chain(*[f"s{i}" for i in range(5)])
    workspace = sys.argv[1] if sys.argv[1] != "memory" else False

    async def main():
        await flow.arun({}, workspace=workspace)  # warm up
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        sys.stdin.readline()  # all processes start together
        t0 = time.perf_counter()
        runs = await asyncio.gather(*(flow.arun({"i": i}, workspace=workspace) for i in range(100)))
        wall = time.perf_counter() - t0
        print(json.dumps({"wall": wall, "end": time.time(), "run_latency": [r.ended_at - r.started_at for r in runs],
                          "ok": sum(r.status == "succeeded" for r in runs)}))

    asyncio.run(main())
    """
)


def _f3_once(workspace: str) -> dict[str, Any]:
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _F3_CHILD, workspace],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for p in procs:
        assert "ready" == p.stdout.readline().strip()  # type: ignore[union-attr]
    t0 = time.time()
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    # Until the last run ended (not until the processes exited: a durable one exports its step
    # log to parquet on the way out, which is not the runs' time).
    total = max(r["end"] for r in results) - t0
    latencies = [x for r in results for x in r["run_latency"]]
    return {
        "total_s": total,
        "per_process_s": [r["wall"] for r in results],
        "p99_run_s": _quantile(latencies, 0.99),
        "succeeded": sum(r["ok"] for r in results),
    }


def f3(rounds: int) -> dict[str, Any]:
    durables, memories = [], []
    for _ in range(rounds):  # interleaved, so both see the same machine
        with tempfile.TemporaryDirectory() as tmp:
            durables.append(_f3_once(str(Path(tmp) / "ws")))
        memories.append(_f3_once("memory"))
    durable, memory = _median_round(durables), _median_round(memories)
    return {
        "workload": "F3",
        "what": "8 processes x 100 concurrent durable runs (5 steps of 10 ms) on one workspace, FULL",
        "durable_total_s": round(durable["total_s"], 3),
        "memory_total_s": round(memory["total_s"], 3),
        "total_ratio": round(durable["total_s"] / memory["total_s"], 2),
        "durable_per_process_s": [round(x, 3) for x in (min(durable["per_process_s"]), max(durable["per_process_s"]))],
        "memory_per_process_s": [round(x, 3) for x in (min(memory["per_process_s"]), max(memory["per_process_s"]))],
        "durable_p99_run_s": round(durable["p99_run_s"], 3),
        "memory_p99_run_s": round(memory["p99_run_s"], 3),
        "total_ratio_per_round": [
            round(d["total_s"] / m["total_s"], 2) for d, m in zip(durables, memories, strict=True)
        ],
        "succeeded": durable["succeeded"],
        "before_this_work": {"per_process_s": [4.2, 8.8], "p99_run_s": [0.55, 2.6]},
    }


def _median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose total wall time is the median (its other figures come with it)."""
    return sorted(results, key=lambda r: float(r["total_s"]))[len(results) // 2]


# ---- W4 -------------------------------------------------------------------------------------------


async def _noop(state: Any, ctx: Any = None) -> dict[str, Any]:
    return {}


async def _median_seconds(fn: Any, repeats: int) -> tuple[float, float, float]:
    """Median wall and CPU seconds of one call of ``fn`` (after a warm-up), and its mean wall
    seconds: a stall that hits one call in a few (a WAL checkpoint) hides from the median."""
    for _ in range(max(2, repeats // 10)):
        await fn()
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        await fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), statistics.mean(walls)


class _HopFloor:
    """The plain commit of W4's baseline made by a thread of its own, the loop awaiting each one
    through ``call_soon_threadsafe``: the least a store pays per step when its commits stay off
    the event loop (two thread wake-ups and the commit), with nothing of wfkit in it."""

    def __init__(self, path: Path, sync: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, args=(path, sync), daemon=True)
        self._thread.start()

    def _serve(self, path: Path, sync: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync.upper()}")
        conn.execute("CREATE TABLE t (run TEXT, seq INTEGER, step TEXT, updates TEXT)")
        while (job := self._jobs.get()) is not None:
            loop, done, i = job
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", ("r", i, f"s{i}", "{}"))
            conn.execute("COMMIT")
            loop.call_soon_threadsafe(done.set_result, None)
        conn.close()

    async def chain(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        state: dict[str, Any] = {}
        for i in range(n):
            state.update(await _noop(state))
            done: asyncio.Future[None] = loop.create_future()
            self._jobs.put((loop, done, i))
            await done

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()


def _journal_statements(store: Store, event: StepEvent) -> Callable[[int], None]:
    """W4's chain as the journal's own statements alone, on ``store`` (one of its own): per step the
    checkpoint row wfkit makes (redacted, checksummed) in one BEGIN IMMEDIATE / INSERT / COMMIT, on
    the calling thread. What the journal's row costs beside the baseline's four columns, before
    any of the engine's work."""
    conn = store.conn
    runs = itertools.count()

    def chain(n: int) -> None:
        run_id = f"{next(runs):024x}"
        nexts = {run_id: 1}
        for i in range(n):
            row = event_row(event._replace(run_id=run_id, step=f"s{i}"), "ok", "{}", None)
            conn.execute("BEGIN IMMEDIATE")
            insert_rows(conn, [row], nexts)
            conn.execute("COMMIT")

    return chain


async def w4(repeats: int, rounds: int) -> list[dict[str, Any]]:
    n = 100
    flow = wf.Workflow("chain100")
    names = [f"s{i}" for i in range(n)]
    for name in names:
        flow.step(_noop, name=name)
    flow.chain(*names)
    rows = []
    for sync in ("full", "normal"):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["WFKIT_SYNCHRONOUS"] = sync
            store = open_store(tmp)

            async def run_wfkit(tmp: str = tmp) -> None:
                await flow.arun({}, workspace=tmp)

            async def run_memory() -> None:
                await flow.arun({}, workspace=False)

            conn = sqlite3.connect(Path(tmp) / "plain.db", isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={sync.upper()}")
            conn.execute("CREATE TABLE t (run TEXT, seq INTEGER, step TEXT, updates TEXT)")

            async def run_sqlite(conn: sqlite3.Connection = conn) -> None:
                state: dict[str, Any] = {}
                for i in range(n):
                    update = await _noop(state)
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", ("r", i, f"s{i}", json.dumps(update)))
                    conn.execute("COMMIT")

            hop = _HopFloor(Path(tmp) / "hop.db", sync)
            sink = MemorySink()
            await flow.arun({}, workspace=False, sinks=[sink])
            statements_store = Store(Path(tmp) / "statements" / "wfkit.db", synchronous=sync)
            statements = _journal_statements(statements_store, sink.events[-1])

            async def run_statements(statements: Callable[[int], None] = statements) -> None:
                statements(n)

            async def run_hop(hop: _HopFloor = hop) -> None:
                await hop.chain(n)

            load = _load()
            # A write is committed on the loop when the loop is idle (at FULL, quiet) by default:
            # the same chain with every commit through the writer thread is measured as a variant.
            budget = store.writer.inline_budget
            samples: dict[str, list[tuple[float, float, float]]] = {}
            inline = 0
            for _ in range(rounds):  # interleaved, so all see the same machine
                inline -= store.writer.inline_commits
                samples.setdefault("wfkit", []).append(await _median_seconds(run_wfkit, repeats))
                inline += store.writer.inline_commits
                samples.setdefault("sqlite3", []).append(await _median_seconds(run_sqlite, repeats))
                samples.setdefault("memory", []).append(await _median_seconds(run_memory, repeats))
                samples.setdefault("hop", []).append(await _median_seconds(run_hop, repeats))
                samples.setdefault("statements", []).append(await _median_seconds(run_statements, repeats))
                if budget:
                    store.writer.inline_budget = 0.0  # every commit through the writer thread
                    samples.setdefault("writer_thread", []).append(await _median_seconds(run_wfkit, repeats))
                    store.writer.inline_budget = budget
            conn.close()
            hop.close()
            statements_store.close()
            _forget_exports()
            store.close()

        def us(name: str, at: int, samples: dict[str, list[tuple[float, float, float]]] = samples) -> float:
            return statistics.median(x[at] for x in samples[name]) / n * 1e6

        row: dict[str, Any] = {
            "workload": "W4",
            "what": f"sequential 100-step chain, durable, synchronous={sync.upper()}",
            "wfkit_us_per_step": round(us("wfkit", 0), 1),
            "sqlite3_us_per_step": round(us("sqlite3", 0), 1),
            "ratio": round(us("wfkit", 0) / us("sqlite3", 0), 2),
            "overhead_us": round(us("wfkit", 0) - us("sqlite3", 0), 1),
            "memory_us_per_step": round(us("memory", 0), 1),
            "wfkit_mean_us_per_step": round(us("wfkit", 2), 1),
            "sqlite3_mean_us_per_step": round(us("sqlite3", 2), 1),
            "cpu_wfkit_us_per_step": round(us("wfkit", 1), 1),
            "cpu_sqlite3_us_per_step": round(us("sqlite3", 1), 1),
            "cpu_memory_us_per_step": round(us("memory", 1), 1),
            "cpu_overhead_us": round(us("wfkit", 1) - us("sqlite3", 1), 1),
            # Floors, measured in the same rounds: the baseline's commit made off the loop by a bare
            # thread (no design that keeps the fsync off the loop can beat it: wfkit's commits take
            # that road when the loop is busy), and the journal's own statements per step.
            "hop_floor_us_per_step": round(us("hop", 0), 1),
            "hop_floor_ratio": round(us("hop", 0) / us("sqlite3", 0), 2),
            "journal_statements_us_per_step": round(us("statements", 0), 1),
            "journal_statements_overhead_us": round(us("statements", 0) - us("sqlite3", 0), 1),
        }
        if "writer_thread" in samples:
            row["on_loop_commits"] = f"{inline} of {rounds * (repeats + max(2, repeats // 10)) * (n + 2)} writes"
            row["writer_thread_us_per_step"] = round(us("writer_thread", 0), 1)
            row["writer_thread_overhead_us"] = round(us("writer_thread", 0) - us("sqlite3", 0), 1)
            row["cpu_writer_thread_us_per_step"] = round(us("writer_thread", 1), 1)
        row["load_avg"] = [load, _load()]
        row["target"] = {"ratio": 1.25} if sync == "full" else {"overhead_us": 30}
        rows.append(row)
    return rows


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. F1,W4")
    parser.add_argument("--rounds", type=int, default=3, help="repeats of every workload (figures are medians)")
    parser.add_argument("--repeats", type=int, default=10, help="repeats of W4 per sample")
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or ["F1", "F2", "F3", "W4"]
    for name in chosen:
        load = _load()
        if name == "F1":
            result: Any = await f1(args.rounds)
        elif name == "F2":
            result = await f2(args.rounds)
        elif name == "F3":
            result = f3(args.rounds)
        elif name == "W4":
            result = await w4(args.repeats, args.rounds)
        else:
            raise SystemExit(f"unknown workload {name!r}: choose from F1, F2, F3, W4")
        for row in result if isinstance(result, list) else [result]:
            row.setdefault("load_avg", [load, _load()])
            print(json.dumps(row) if args.json else _text(row), flush=True)


def _text(row: dict[str, Any]) -> str:
    figures = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("workload", "what"))
    return f"{row['workload']}  {row['what']}\n    {figures}"


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
