"""Approval gates in runs: tickets, decisions from Python and from a running loop, and the
deadline across an approval wait."""

from __future__ import annotations

from typing import Any

import pytest

import wfkit as wf
from wfkit.store._workspace import Workspace


def _gated(calls: list[str]) -> wf.Workflow:
    flow = wf.Workflow("refunds")
    flow.step(lambda s: {"amount": s["amount"]}, name="quote")

    @flow.step(approval=wf.Approval("Refunds over $100 need a human", payload=["amount"]), irreversible=True)
    def refund(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        calls.append(ctx.idempotency_key)
        return {"refunded": state["amount"]}

    flow.chain("quote", "refund")
    return flow


def test_approval_from_python_handle_resumes_the_run() -> None:
    """A halted run shows its ticket; run.approve(by=...) decides it and the run finishes."""
    calls: list[str] = []
    flow = _gated(calls)
    run = flow.run({"amount": 120})
    assert "waiting_approval" == run.status
    [ticket] = run.tickets()
    assert {"amount": 120} == ticket.payload
    assert "Refunds over $100 need a human" == ticket.reason
    run.approve(by="alice", comment="ok").wait(10)
    assert "succeeded" == run.status
    assert [f"{run.run_id}:refund:1"] == calls
    decided = [e for e in Workspace().events(run.run_id) if e.status in ("waiting_approval", "approved")]
    assert [("waiting_approval", None), ("approved", "alice")] == [(e.status, e.approver) for e in decided]
    # A second identical decision changes nothing; a conflicting one is refused.
    run.approve(by="alice")
    with pytest.raises(wf.TicketError, match="already approved by alice"):
        run.reject(by="bob")


def test_approval_inside_a_running_loop_continues_as_a_task() -> None:
    """In a notebook-like loop, approve() resumes the run as a task; awaiting it gives the result."""
    import asyncio

    calls: list[str] = []
    flow = _gated(calls)

    async def cell() -> wf.Run:
        run = flow.start({"amount": 500})
        await run
        assert "waiting_approval" == run.status
        run.approve(by="carol")
        return await run

    run = asyncio.run(cell())
    assert "succeeded" == run.status
    assert 500 == run.state["refunded"]


def test_count_approval_wait_is_explicit() -> None:
    """With count_approval_wait the time halted for approval uses up the run's deadline."""
    import time as _time

    calls: list[str] = []
    flow = _gated(calls)
    counted = flow.run({"amount": 1}, timeout=0.3, count_approval_wait=True)
    free = flow.run({"amount": 1}, timeout=0.3)
    _time.sleep(0.4)
    # resume=False: the test resumes each run itself (a background resume would race with it).
    Workspace().approve(counted.tickets()[0].ticket_id, by="x", resume=False)
    Workspace().approve(free.tickets()[0].ticket_id, by="x", resume=False)
    assert "timed_out" == flow.resume(counted.run_id, raise_on_error=False).status
    assert "succeeded" == flow.resume(free.run_id).status
    assert [f"{free.run_id}:refund:1"] == calls


def test_approving_a_gate_another_process_approved_continues_the_run() -> None:
    """`wfkit approve` in a shell decides the gate but cannot resume a run it does not define; the
    same approval from the run's handle (the live panel's Approve) then continues the run, in a
    plain script and on a running loop alike, and the decision recorded stays the shell's."""
    import asyncio
    import subprocess
    import sys

    def approve_from_a_shell(run: wf.Run) -> None:
        [ticket] = run.tickets()
        command = [sys.executable, "-m", "wfkit", "approve", ticket.ticket_id, "--by", "carol"]
        subprocess.run(command, check=True, capture_output=True)

    calls: list[str] = []
    flow = _gated(calls)
    run = flow.run({"amount": 120})
    approve_from_a_shell(run)
    run.approve(by="alice").wait(10)
    assert ("succeeded", 120) == (run.status, run.state["refunded"])

    async def cell() -> wf.Run:
        run = flow.start({"amount": 500})
        await run
        approve_from_a_shell(run)
        run.approve(by="alice")
        return await run

    looped = asyncio.run(cell())
    assert ("succeeded", 500) == (looped.status, looped.state["refunded"])

    # The same from the workspace (wf.pending().approve, ticket.approve, the pending panel).
    held = flow.run({"amount": 300})
    approve_from_a_shell(held)
    Workspace().approve(held.tickets(status=None)[0].ticket_id, by="alice")
    held.wait(10)
    assert ("succeeded", 300) == (held.status, held.state["refunded"])
    for done in (run, looped, held):
        approvals = [e.approver for e in Workspace().events(done.run_id) if e.status == "approved"]
        assert ["carol"] == approvals
        assert ["carol"] == [t.decided_by for t in done.tickets(status=None)]
