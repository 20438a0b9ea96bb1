"""An importable workflow, so `wfkit resume RUN --workflow durable_flows:refunds` can find it."""

from __future__ import annotations

import os
from typing import Any

import wfkit as wf

refunds = wf.Workflow("refunds-cli")
refunds.step(lambda s: {"amount": s["amount"]}, name="quote")


@refunds.step(approval="Refunds need a human")
def pay(state: Any) -> dict[str, Any]:
    return {"paid": state["amount"]}


refunds.chain("quote", "pay")


router = wf.Workflow("router-cli")
router.step(lambda s: {"kind": "refund" if "money" in s["query"] else "other"}, name="classify")
router.step(lambda s: {"answer": "refunded"}, name="refund")
router.step(lambda s: {"answer": f"about {s['kind']}"}, name="answer")
router.route("classify", wf.when("kind", "eq", "refund") >> wf.go("refund"), default=wf.go("answer"))


flaky_refunds = wf.Workflow("flaky-refunds-cli")


@flaky_refunds.step
def quote(state: Any) -> dict[str, Any]:
    """Fails while the file ``state["down"]`` names exists (a service that is down), so the run
    stops before its gate and a resume gets there."""
    if os.path.exists(state["down"]):
        raise PermissionError("the quotes service is down")
    return {"amount": 120}


flaky_refunds.step(lambda s: {"refunded": s["amount"]}, name="refund", approval="Refunds need a human")
flaky_refunds.chain("quote", "refund")


asking = wf.Workflow("asking-cli")


@asking.step
async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
    return {"first": (await ctx.llm.complete("a b c")).model}


@asking.step
def check(state: Any) -> dict[str, Any]:
    """Fails while the file ``state["down"]`` names exists, so the run stops between its two calls."""
    if os.path.exists(state["down"]):
        raise PermissionError("the checker is down")
    return {}


@asking.step
async def reply(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
    return {"second": (await ctx.llm.complete("d e f")).model}


asking.chain("ask", "check", "reply")


async def run_still_executing() -> wf.Run:
    """A run of workflow "long" started in a workspace and still executing: its first step is done
    and recorded, its second sleeps for a second (a read of the step log meanwhile lacks the run)."""
    import asyncio

    flow = wf.Workflow("long")

    @flow.step
    async def first(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {}

    @flow.step
    async def second(state: Any) -> dict[str, Any]:
        await asyncio.sleep(1.0)
        return {}

    flow.edge("first", "second")
    run = flow.start({})
    for _ in range(200):  # until first's row is in the journal
        await asyncio.sleep(0.02)
        if run.events:
            break
    await asyncio.sleep(0.1)
    return run
