"""Eval throughput: 1,000 cases of a 3-step workflow on the simulated model (50 ms median).

    python benchmarks/evals.py [--json] [--cases 1000] [--concurrency 200]

Baseline measured in the same run: the same 3,000 model calls made directly with the ChatClient
under asyncio.gather with the same concurrency bound, no workflow, no store, no scoring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from typing import Any

import wfkit as wf


def client() -> wf.llm.ChatClient:
    return wf.llm.ChatClient(transport=wf.llm.SimulatedModel(p50=0.05, p99=0.5, seed=1, reply="ok"))


def build() -> wf.Workflow:
    flow = wf.Workflow("eval-bench")
    llm = client()

    async def call(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        reply = await llm.for_step(ctx).complete(f"{ctx.step}: {state['q']}")
        return {ctx.step: reply.text}

    for name in ("plan", "draft", "check"):
        flow.step(call, name=name)
    flow.chain("plan", "draft", "check")
    return flow


async def baseline(cases: int, concurrency: int) -> float:
    llm = client()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            for step in ("plan", "draft", "check"):
                await llm.complete(f"{step}: question {i}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(cases)))
    return time.perf_counter() - t0


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        suite = wf.evals.Suite(
            name="bench",
            dataset=[{"id": str(i), "q": f"question {i}", "expected": {"check": "ok"}} for i in range(args.cases)],
            workflow=build,
            scorers=[wf.evals.exact_match("check"), wf.evals.latency_budget(5.0)],
        )
        os.environ["WFKIT_HOME"] = tmp
        t0 = time.perf_counter()
        result = wf.evals.evaluate(suite, concurrency=args.concurrency, progress=False)
        took = time.perf_counter() - t0
        base = asyncio.run(baseline(args.cases, args.concurrency))
    row = {
        "workload": "E1",
        "what": f"{args.cases} cases x 3-step workflow, simulated model p50 50 ms",
        "wfkit": round(took, 2),
        "plain_calls": round(base, 2),
        "unit": "s_wall",
        "ratio": round(took / base, 2),
        "pass_rate": float(result.cases["passed"].mean()),
        "concurrency": args.concurrency,
    }
    print(json.dumps(row) if args.json else f"E1 {row['what']}: {row}")


if __name__ == "__main__":
    main(sys.argv[1:])
