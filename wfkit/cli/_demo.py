"""``wfkit demo``: the query router over a batch of queries, offline, with flaky searches."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from typing import TextIO

from wfkit.engine._run import Run
from wfkit.engine._workflow import Workflow
from wfkit.examples import QUERIES, query_router
from wfkit.testing import MemorySink


def _quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def demo_router() -> Workflow:
    """The demo's query router, whose searches fail now and then: what `wfkit resume` and
    `wfkit fork` build again for a run the demo made (its runs record this function as their
    workflow; without it they read as started from a script, which the CLI cannot rebuild)."""
    return query_router(flaky=0.25, slow=0.1)


async def _run_all(runs: int, seed: int, sink: MemorySink) -> list[Run]:
    flow = demo_router()
    flow._origin = f"{__name__}:{demo_router.__name__}"
    return list(
        await asyncio.gather(
            *(
                flow.arun(QUERIES[i % len(QUERIES)], sinks=[sink], seed=seed + i, raise_on_error=False)
                for i in range(runs)
            )
        )
    )


def run_demo(*, runs: int, seed: int, out: TextIO) -> int:
    sink = MemorySink()
    results = asyncio.run(_run_all(runs, seed, sink))
    statuses = Counter(r.status for r in results)
    paths = Counter(" > ".join(r.path()) for r in results)
    print(f"query-router: {runs} runs, offline, seed {seed}", file=out)
    print("run status: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())), file=out)
    print("\npaths taken:", file=out)
    for path, count in paths.most_common():
        print(f"  {count:4d}  {path}", file=out)
    print(f"\n{'step':16} {'attempts':>8} {'retries':>8} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}", file=out)
    by_step: dict[str, list[float]] = {}
    kinds: Counter[tuple[str, str]] = Counter()
    for e in sink.events:
        kinds[(e.step, e.status)] += 1
        lat = by_step.setdefault(e.step, [])
        # A refused call of 0.02 ms is no fast call: latency is of successes, as wf.steps() gives it.
        if e.status == "ok":
            lat.append(e.latency_s * 1000)
    for step, lat in by_step.items():
        attempts = sum(n for (name, _), n in kinds.items() if name == step)
        p50, p99 = (f"{_quantile(lat, q):8.2f}" for q in (0.5, 0.99)) if lat else (f"{'-':>8}",) * 2
        print(f"{step:16} {attempts:8d} {kinds[(step, 'retry')]:8d} {kinds[(step, 'failed')]:7d} {p50} {p99}", file=out)
    where = results[0].workspace if results else None
    if where is not None:
        print(
            f"\n{runs} runs stored in {where}: `wfkit runs` lists them, `wfkit show RUN_ID` shows one's "
            "attempts, wf.steps() reads their step log",
            file=out,
        )
    return 0 if statuses.get("succeeded", 0) == runs else 1
