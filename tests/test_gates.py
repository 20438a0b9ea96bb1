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


def _two_gates(legal_takes: float) -> wf.Workflow:
    """Two gated branches that join: `legal` (its body takes ``legal_takes`` s) and `finance`."""
    import asyncio

    flow = wf.Workflow("two-gates")
    flow.step(lambda s: {}, name="start")

    @flow.step(approval="legal signs off")
    async def legal(state: Any) -> dict[str, Any]:
        await asyncio.sleep(legal_takes)
        return {"legal": True}

    flow.step(lambda s: {"finance": True}, name="finance", approval="finance signs off")
    flow.step(lambda s: {"shipped": s["legal"] and s["finance"]}, name="ship")
    flow.edge("start", "legal", "finance")
    flow.edge("legal", "ship")
    flow.edge("finance", "ship")
    return flow


@pytest.mark.parametrize("legal_takes", [0.0, 0.5])
def test_the_second_gate_decided_while_the_first_decision_runs_is_applied(legal_takes: float) -> None:
    """On a running loop (two approval panels, or two calls in a cell), deciding one gate while the
    decision of the other is still being applied, or the step it let through still runs, is
    applied after it: the run goes on through both gates. It was refused ("`await run` first"),
    which left the second panel locked and the run halted at a gate nobody could click."""
    import asyncio

    async def cell() -> wf.Run:
        run = _two_gates(legal_takes).start({})
        await run
        run.approve(by="ann", step="legal", comment="fine")
        await asyncio.sleep(legal_takes / 2)  # legal's body is running (when it takes any time)
        run.approve(by="bob", step="finance")
        return await run

    run = asyncio.run(cell())
    assert ("succeeded", True) == (run.status, run.state["shipped"])
    decided = {t.step: (t.status, t.decided_by, t.comment) for t in run.tickets(status=None)}
    assert {"legal": ("approved", "ann", "fine"), "finance": ("approved", "bob", "")} == decided
    journal = [(e.step, e.approver) for e in Workspace().events(run.run_id) if e.status == "approved"]
    assert sorted(journal) == [("finance", "bob"), ("legal", "ann")]


def test_the_second_gate_decided_while_a_script_runs_the_first_is_applied() -> None:
    """From plain code the run goes on in the background after the first decision; the second,
    made while `legal` still runs, was written but nobody resumed the run, which halted with both
    gates approved."""
    import time

    run = _two_gates(0.5).run({})
    run.approve(by="ann", step="legal")
    time.sleep(0.25)
    assert "running" == run.status
    run.approve(by="bob", step="finance").wait(10)
    assert ("succeeded", True) == (run.status, run.state["shipped"])
    assert {"legal": "ann", "finance": "bob"} == {t.step: t.decided_by for t in run.tickets(status=None)}


def test_a_gate_decided_after_the_deadline_says_the_step_never_started() -> None:
    """With count_approval_wait, a decision made after the run's deadline times the run out before
    the approved step starts; its row says so, not that the step ran and "did not finish within 0 s"."""
    import time as _time

    calls: list[str] = []
    flow = _gated(calls)
    run = flow.run({"amount": 1}, timeout=0.3, count_approval_wait=True)
    _time.sleep(0.4)
    run.approve(by="ann")
    with pytest.raises(wf.RunTimeoutError):
        run.wait(10)
    assert ("timed_out", []) == (run.status, calls)
    [row] = [e for e in Workspace().events(run.run_id) if e.status == "timeout"]
    assert ("refund", 0.0) == (row.step, row.latency_s)
    assert "step 'refund' was not started: the run's deadline had passed" == row.error_message
