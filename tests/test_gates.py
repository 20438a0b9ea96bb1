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
    # A second identical decision changes nothing (and says so); a conflicting one is refused.
    with pytest.warns(wf.AlreadyDecidedWarning, match="already approved by alice"):
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
    with pytest.warns(wf.AlreadyDecidedWarning, match=f"by carol at .*; run {run.run_id} continues from that"):
        run.approve(by="alice").wait(10)
    assert ("succeeded", 120) == (run.status, run.state["refunded"])

    async def cell() -> wf.Run:
        run = flow.start({"amount": 500})
        await run
        approve_from_a_shell(run)
        with pytest.warns(wf.AlreadyDecidedWarning, match="already approved by carol at "):
            run.approve(by="alice")
        return await run

    looped = asyncio.run(cell())
    assert ("succeeded", 500) == (looped.status, looped.state["refunded"])

    # The same from the workspace (wf.pending().approve, ticket.approve, the pending panel).
    held = flow.run({"amount": 300})
    approve_from_a_shell(held)
    with pytest.warns(wf.AlreadyDecidedWarning, match="already approved by carol at "):
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


def _reject_from_a_shell(run: wf.Run, *, by: str, comment: str) -> wf.Ticket:
    """`wfkit reject TICKET --by NAME` in a process of its own; the ticket as it then reads."""
    import subprocess
    import sys

    [ticket] = run.tickets()
    command = [sys.executable, "-m", "wfkit", "reject", ticket.ticket_id, "--by", by, "--comment", comment]
    subprocess.run(command, check=True, capture_output=True)
    return Workspace().ticket(ticket.ticket_id)


def _refusal(ticket: wf.Ticket, run: wf.Run) -> str:
    """What refusing a second decision on ``ticket`` says: who decided what and when, and what to do."""
    import time

    assert ticket.decided_at is not None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ticket.decided_at))
    return (
        f"ticket {ticket.ticket_id} was already rejected by alice at {when} (too much); a decision is "
        f"applied once and cannot be reversed. Run {run.run_id} waits at 'refund' until it is resumed "
        f"(`wfkit resume {run.run_id} --workflow module:name` (started from a notebook or script, the run "
        f"recorded no workflow: module:name is the module attribute, or a function returning it, that "
        f"defines 'refunds'), or run.resume() in Python), and then follows the rejection; to decide "
        f"again, start a new run"
    )


def test_approving_a_gate_rejected_in_a_shell_is_refused_saying_who_when_and_to_resume() -> None:
    """A ticket rejected by `wfkit reject` in a shell, then approved from the run's handle (the live
    panel's Approve), from a cell on a running loop or from the workspace: each is refused, naming
    who rejected it, when and why, and saying the run waits for a resume; the run stays halted and
    resuming it follows the rejection (the refusal said nothing of the halted run)."""
    import asyncio

    calls: list[str] = []
    flow = _gated(calls)
    run = flow.run({"amount": 120})
    ticket = _reject_from_a_shell(run, by="alice", comment="too much")
    with pytest.raises(wf.TicketError) as refused:
        run.approve(by="bob")
    assert _refusal(ticket, run) == str(refused.value)

    async def cell() -> str:
        with pytest.raises(wf.TicketError) as refused:
            run.approve(by="bob")
        return str(refused.value)

    assert _refusal(ticket, run) == asyncio.run(cell())
    with pytest.raises(wf.TicketError) as refused:
        Workspace().approve(ticket.ticket_id, by="bob")
    assert _refusal(ticket, run) == str(refused.value)
    assert ("waiting_approval", "rejected") == (run.status, Workspace().ticket(ticket.ticket_id).status)
    with pytest.raises(wf.ApprovalRejectedError, match="rejected by alice: too much"):
        run.resume().wait(10)
    assert [] == calls


def test_the_other_decision_on_a_gate_the_run_went_past_says_so() -> None:
    """A stale panel's Approve on a visit the run already followed (rejected, revised, and now
    waiting at the gate's next visit) is refused without telling to resume for it."""
    flow = wf.Workflow("revised")
    flow.step(lambda s: {"version": 1}, name="draft")
    flow.step(lambda s: {"version": s["version"] + 1}, name="revise", max_visits=3)
    flow.step(lambda s: {"published": True}, name="publish", approval=wf.Approval("Publish?", on_reject="revise"))
    flow.chain("draft", "publish")
    flow.route("revise", default=wf.go("publish"))
    run = flow.run({})
    first = _reject_from_a_shell(run, by="alice", comment="too much")
    again = flow.resume(run.run_id)
    assert ("waiting_approval", [2]) == (again.status, [t.visit for t in again.tickets()])
    with pytest.raises(wf.TicketError) as refused:
        Workspace().approve(first.ticket_id, by="bob")
    assert f"Run {run.run_id} went past this gate and is waiting_approval; to decide again" in str(refused.value)


def test_deciding_a_gate_again_the_same_way_says_who_decided_it_and_when_and_changes_nothing() -> None:
    """A reviewer's second Approve on a gate already approved (a re-run cell, a colleague's
    decision) warns who approved it, when and why, as `wfkit approve` prints it, from plain code and
    on a running loop alike; the ticket and the journal stay as they were (it returned silently).
    The other decision is refused, naming who decided and how to start over."""
    import asyncio
    import subprocess
    import sys
    import time

    flow = _gated([])
    run = flow.run({"amount": 120})
    run.approve(by="alice", comment="fine").wait(10)
    [ticket] = run.tickets(status=None)
    assert ticket.decided_at is not None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ticket.decided_at))
    said = f"ticket {ticket.ticket_id} was already approved by alice at {when} (fine): nothing changed"
    before = (Workspace().events(run.run_id), run.tickets(status=None), run.status)

    with pytest.warns(wf.AlreadyDecidedWarning) as warned:
        assert run is run.approve(by="bob", comment="me too")

    async def cell() -> list[str]:
        with pytest.warns(wf.AlreadyDecidedWarning) as warned:
            run.approve(by="bob")
        return [str(w.message) for w in warned]

    assert [said] == [str(w.message) for w in warned]
    assert [said] == asyncio.run(cell())
    shell = subprocess.run(
        [sys.executable, "-m", "wfkit", "approve", ticket.ticket_id, "--by", "bob"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert f"{said}\n" == shell.stdout
    with pytest.raises(wf.TicketError) as refused:
        run.reject(by="bob")
    assert str(refused.value).startswith(f"ticket {ticket.ticket_id} was already approved by alice at {when} (fine)")
    assert str(refused.value).endswith("to decide again, start a new run")
    assert before == (Workspace().events(run.run_id), run.tickets(status=None), run.status)
