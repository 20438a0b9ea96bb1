"""Engine overhead against plain asyncio doing the same work in the same process.

    python benchmarks/engine.py [--json] [--only W1,W2]

Prints one line per workload. Figures are medians over repeats; each workload's asyncio figure is
measured in the same run, its samples alternating with wfkit's, so compare the two (the machines
are shared and noisy: each row carries the 1-minute load average when it was measured).

W4, the durable sequential chain against plain sqlite3 commits, is in ``fidelity.py``: it times each
side in blocks of whole chains, as a user's chain commits, beside the floor a thread hop sets. (Timed
here sample by sample, alternating with the durable chain, the plain commits' fsyncs cost 212 to 286
us a step against 122 to 150 in a block, which flattered wfkit's ratio: 1.13 to 1.33 against 2.0 to
2.6.)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import wfkit as wf
from wfkit.testing import MemorySink


async def _noop(state: Any, ctx: Any = None) -> dict[str, Any]:
    return {}


async def _paired_medians(
    fn: Callable[[], Awaitable[Any]], baseline: Callable[[], Awaitable[Any]], repeats: int
) -> tuple[float, float]:
    """Median seconds of ``fn`` and of ``baseline``, timed alternately, sample by sample (which goes
    first swaps every pair): these shared machines change speed by up to 2x from one second to the
    next (a busy neighbour on the core), and two blocks timed one after the other could each catch
    a different speed."""
    for _ in range(max(2, repeats // 10)):  # warm up
        await fn()
        await baseline()
    samples: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            await (fn, baseline)[side]()
            samples[side].append(time.perf_counter() - t0)
    return statistics.median(samples[0]), statistics.median(samples[1])


def _chain(n: int) -> wf.Workflow:
    flow = wf.Workflow(f"chain{n}")
    names = [f"s{i}" for i in range(n)]
    for name in names:
        flow.step(_noop, name=name)
    flow.chain(*names)
    return flow


async def w1(repeats: int) -> dict[str, Any]:
    n = 100
    flow, sink = _chain(n), MemorySink()

    async def run_wfkit() -> None:
        await flow.arun({}, sinks=[sink], workspace=False)
        sink.clear()

    fns = [_noop] * n

    async def run_asyncio() -> None:
        state: dict[str, Any] = {}
        for fn in fns:
            state.update(await fn(state))

    a, b = await _paired_medians(run_wfkit, run_asyncio, repeats)
    return _row("W1", "linear chain of 100 no-op steps", a / n, b / n)


async def w2(repeats: int) -> dict[str, Any]:
    n = 50
    flow, sink = wf.Workflow("fanout"), MemorySink()
    flow.step(_noop, name="start")
    branches = [f"b{i}" for i in range(n)]
    for name in branches:
        flow.step(_noop, name=name)
        flow.edge(name, "join")
    flow.step(_noop, name="join")
    flow.edge("start", *branches)

    async def run_wfkit() -> None:
        await flow.arun({}, sinks=[sink], workspace=False)
        sink.clear()

    async def run_asyncio() -> None:
        state: dict[str, Any] = {}
        state.update(await _noop(state))
        for update in await asyncio.gather(*(_noop(state) for _ in range(n))):
            state.update(update)
        state.update(await _noop(state))

    a, b = await _paired_medians(run_wfkit, run_asyncio, repeats)
    return _row("W2", "fan-out to 50 parallel steps and a join", a / n, b / n)


async def w3(repeats: int) -> dict[str, Any]:
    laps = 200
    flow, sink = wf.Workflow("loop"), MemorySink()

    @flow.step(max_visits=laps + 1)
    async def work(state: Any) -> dict[str, Any]:
        return {"i": state["i"] + 1}

    flow.route("work", wf.when("i", "lt", laps) >> wf.go("work"), default=wf.go(wf.END))

    async def run_wfkit() -> None:
        await flow.arun({"i": 0}, sinks=[sink], workspace=False)
        sink.clear()

    cond = wf.when("i", "lt", laps)

    async def run_asyncio() -> None:
        state = {"i": 0}
        while True:
            state.update(await work(state))
            if not cond.evaluate(state):
                break

    a, b = await _paired_medians(run_wfkit, run_asyncio, repeats)
    return _row("W3", "loop of 200 laps through a conditional route", a / laps, b / laps)


def sleepy_chain(timeout: float | None = None) -> wf.Workflow:
    """W5's chain: five steps of ``await asyncio.sleep(0.01)`` (``fidelity.py``'s F1 and F2 run it too)."""
    flow = wf.Workflow("sleepy")
    names = [f"s{i}" for i in range(5)]

    async def nap(state: Any) -> None:
        await asyncio.sleep(0.01)

    for name in names:
        flow.step(nap, name=name, timeout=timeout)
    flow.chain(*names)
    return flow


async def _concurrent(runs: int, flow: wf.Workflow) -> tuple[float, float]:
    return (await _concurrent_cpu(runs, flow))[:2]


async def _concurrent_cpu(
    runs: int, flow: wf.Workflow, timeout: float | None = None
) -> tuple[float, float, float, float]:
    """Wall seconds of ``runs`` concurrent runs of ``flow`` (a 5-step chain of 10 ms sleeps) and of
    the same sleeps in plain coroutines (each under ``asyncio.timeout(timeout)``, if given), then
    the CPU seconds of each (this thread's: the event loop's)."""

    async def plain() -> None:
        for _ in range(5):
            if timeout is None:
                await asyncio.sleep(0.01)
            else:
                async with asyncio.timeout(timeout):
                    await asyncio.sleep(0.01)

    gc.collect()
    t0, c0 = time.perf_counter(), time.thread_time()
    await asyncio.gather(*(flow.arun({}, workspace=False) for _ in range(runs)))
    a, a_cpu = time.perf_counter() - t0, time.thread_time() - c0
    gc.collect()
    t0, c0 = time.perf_counter(), time.thread_time()
    await asyncio.gather(*(plain() for _ in range(runs)))
    b, b_cpu = time.perf_counter() - t0, time.thread_time() - c0
    return a, b, a_cpu, b_cpu


async def w5(repeats: int) -> dict[str, Any]:
    row = await _w5_like("W5", "1,000 concurrent runs of a 5-step chain of 10 ms sleeps", None)
    row["ideal"] = 0.05
    return row


async def w5t(repeats: int) -> dict[str, Any]:
    return await _w5_like("W5t", "W5 with a 0.2 s timeout on each step (asyncio: asyncio.timeout)", 0.2)


async def _w5_like(workload: str, what: str, timeout: float | None) -> dict[str, Any]:
    """W5 (with ``timeout`` on each step): wall time of the median of 3 bursts, and the event
    loop's CPU per step, against plain coroutines doing the same sleeps."""
    flow = sleepy_chain(timeout=timeout)
    results = [await _concurrent_cpu(1000, flow, timeout=timeout) for _ in range(3)]
    a = statistics.median(r[0] for r in results)
    b = statistics.median(r[1] for r in results)
    row = _row(workload, what, a, b, unit="s_wall")
    steps = 1000 * 5
    row["cpu_us_per_step"] = round(statistics.median(r[2] for r in results) / steps * 1e6, 1)
    row["asyncio_cpu_us_per_step"] = round(statistics.median(r[3] for r in results) / steps * 1e6, 1)
    return row


async def _peak_bytes(make: Callable[[], Awaitable[Any]], runs: int) -> int:
    gc.collect()
    tracemalloc.start()
    await asyncio.gather(*(make() for _ in range(runs)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


async def w6(repeats: int) -> dict[str, Any]:
    runs = 10_000
    flow = sleepy_chain()
    before = [s["collections"] for s in gc.get_stats()]
    # Three bursts, each beside its asyncio burst (a single pair swings by 50% on a shared machine).
    pairs = [await _concurrent(runs, flow) for _ in range(3)]
    after = [s["collections"] for s in gc.get_stats()]
    a = statistics.median(p[0] for p in pairs)
    b = statistics.median(p[1] for p in pairs)

    async def plain() -> None:
        for _ in range(5):
            await asyncio.sleep(0.01)

    peak = await _peak_bytes(lambda: flow.arun({}, workspace=False), runs)
    plain_peak = await _peak_bytes(plain, runs)
    row = _row("W6", "10,000 concurrent runs of a 5-step chain of 10 ms sleeps", a, b, unit="s_wall")
    row["ratio_per_pair"] = [round(x / y, 2) for x, y in pairs]
    row["peak_mib"] = round(peak / 2**20, 1)
    row["kib_per_run"] = round(peak / 1024 / runs, 2)
    row["asyncio_kib_per_run"] = round(plain_peak / 1024 / runs, 2)
    # Collections by generation during all the bursts (the explicit gc.collect() calls count too).
    row["gc_collections"] = [y - x for x, y in zip(before, after, strict=True)]
    return row


def _row(workload: str, what: str, wfkit_v: float, asyncio_v: float, unit: str = "us_per_step") -> dict[str, Any]:
    scale = 1e6 if unit == "us_per_step" else 1.0
    row = {
        "workload": workload,
        "what": what,
        "wfkit": round(wfkit_v * scale, 3),
        "asyncio": round(asyncio_v * scale, 3),
        "unit": unit,
        "ratio": round(wfkit_v / asyncio_v, 2) if asyncio_v else None,
    }
    if unit == "us_per_step":
        row["overhead_us"] = round((wfkit_v - asyncio_v) * scale, 3)
    return row


async def _item(doc: Any, ctx: Any = None) -> Any:
    return doc


async def w7(repeats: int) -> list[dict[str, Any]]:
    """A map over 1,000 items (each its own activation, attempts and event) beside asyncio.gather,
    unbounded and with max_concurrency=8 (beside a semaphore of 8)."""
    n = 1000
    docs = list(range(n))
    rows = []
    for limit in (None, 8):
        flow, sink = wf.Workflow(f"map{limit}", inputs=["docs"]), MemorySink()
        flow.map(_item, over="docs", into="out", max_concurrency=limit, name="each")

        async def run_wfkit(flow: wf.Workflow = flow, sink: MemorySink = sink) -> None:
            await flow.arun({"docs": docs}, sinks=[sink], workspace=False)
            sink.clear()

        async def run_asyncio(limit: int | None = limit) -> None:
            state: dict[str, Any] = {"docs": docs}
            if limit is None:
                state["out"] = list(await asyncio.gather(*(_item(d) for d in state["docs"])))
                return
            gate = asyncio.Semaphore(limit)

            async def bounded(doc: Any) -> Any:
                async with gate:
                    return await _item(doc)

            state["out"] = list(await asyncio.gather(*(bounded(d) for d in state["docs"])))

        reps = max(5, repeats // 10)
        a, b = await _paired_medians(run_wfkit, run_asyncio, reps)
        what = "map over 1,000 items" + ("" if limit is None else f", max_concurrency={limit}")
        rows.append(_row("W7", what, a / n, b / n, unit="us_per_step"))
    return rows


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3, "W5": w5, "W5t": w5t, "W6": w6, "W7": w7}


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    for name in chosen:
        load_before = os.getloadavg()[0]
        result = await WORKLOADS[name](args.repeats)
        load = round(max(load_before, os.getloadavg()[0]), 2)
        for row in result if isinstance(result, list) else [result]:
            row["load"] = load  # the higher of the 1-minute load averages before and after
            _print(name, row, args.json)


def _print(name: str, row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
        return
    base = "sqlite3" if "sqlite3" in row else "asyncio"
    extra = {k: v for k, v in row.items() if k not in ("workload", "what", "wfkit", base, "unit")}
    figures = f"wfkit {row['wfkit']} vs {base} {row[base]} {row['unit']}"
    print(f"{name}  {row['what']}: {figures}  {extra}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
