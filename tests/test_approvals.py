"""Approval gates: what a reviewer sees, the headless policies, recorded decisions, and gates in real
runs (conditional gates, reject-and-revise loops, rejections that fail the run)."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wfkit as wf
from wfkit.model._approvals import (
    APPROVE_ALL,
    FAIL,
    HALT,
    REJECT_ALL,
    ApprovalPolicy,
    DecisionsFile,
    Ticket,
    Verdict,
    as_approval,
    as_policy,
)
from wfkit.store._workspace import Workspace

STATE = {"amount": 250, "customer": "c-1", "note": "late delivery"}


def _ticket(workflow: str = "refunds", step: str = "pay", visit: int = 1) -> wf.Ticket:
    return wf.Ticket(
        ticket_id="t1",
        run_id="r1",
        workflow=workflow,
        step=step,
        visit=visit,
        reason="why",
        payload={},
        status="open",
        decided_by=None,
        comment=None,
        created_at=0.0,
        decided_at=None,
    )


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---- Approval and as_approval -----------------------------------------------------------------------


def test_payload_none_is_the_whole_state() -> None:
    """Without a payload, the reviewer sees a copy of the whole state."""
    payload = wf.Approval("check").payload_for(STATE)
    assert STATE == payload
    assert payload is not STATE


def test_payload_fields_pick_those_fields() -> None:
    """A list of field names shows only those fields; a missing one shows as None."""
    assert {"amount": 250, "reason": None} == wf.Approval("check", payload=["amount", "reason"]).payload_for(STATE)


def test_payload_function_computes_the_view() -> None:
    """A function of the state computes what the reviewer sees, returned as a dict."""
    approval = wf.Approval("check", payload=lambda s: {"refund": f"{s['amount']} EUR to {s['customer']}"})
    assert {"refund": "250 EUR to c-1"} == approval.payload_for(STATE)


def test_approval_describe_lists_reason_condition_and_reject_route() -> None:
    """describe() gives the reason, the condition as data, and the on_reject step."""
    approval = wf.Approval("big refunds", when=wf.when("amount", "gt", 100), on_reject="revise")
    described = approval.describe()
    assert ("big refunds", "revise") == (described["reason"], described["on_reject"])
    assert wf.when("amount", "gt", 100).to_dict() == described["when"]


def test_as_approval_of_a_string_is_an_approval_with_that_reason() -> None:
    """A reason string becomes Approval(reason) with no payload, condition or reject route."""
    assert wf.Approval("Refunds need a human") == as_approval("Refunds need a human")


def test_as_approval_keeps_an_approval_and_none() -> None:
    """An Approval is returned as is, and None means no gate."""
    approval = wf.Approval("x", on_reject="revise")
    assert approval is as_approval(approval)
    assert as_approval(None) is None


@pytest.mark.parametrize("bad", [42, "", "   ", ["reason"]])
def test_as_approval_refuses_other_values(bad: Any) -> None:
    """Anything but a non-blank string, an Approval or None raises TypeError saying what is accepted."""
    with pytest.raises(TypeError, match=r"approval must be a reason string or wfkit\.Approval"):
        as_approval(bad)


def test_step_with_bad_approval_is_refused() -> None:
    """@flow.step(approval=<not a string or Approval>) raises TypeError."""
    flow = wf.Workflow("w")
    with pytest.raises(TypeError, match="approval must be"):
        flow.step(lambda s: {}, name="a", approval=3)  # type: ignore[arg-type]


# ---- as_policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "policy"),
    [
        ("halt", HALT),
        ("approve", APPROVE_ALL),
        ("approve_all", APPROVE_ALL),
        ("reject", REJECT_ALL),
        ("reject_all", REJECT_ALL),
        ("fail", FAIL),
        ("Approve", APPROVE_ALL),
        (None, HALT),
    ],
)
def test_as_policy_names(name: str | None, policy: ApprovalPolicy) -> None:
    """Policy names (any case) and None map to the shared policy objects."""
    assert policy is as_policy(name)


def test_as_policy_keeps_a_policy_object() -> None:
    """A policy object is returned as is."""

    class Always(ApprovalPolicy):
        name = "always"

        def decide(self, ticket: wf.Ticket) -> Verdict:
            return Verdict("approve", "bot")

    policy = Always()
    assert policy is as_policy(policy)


@pytest.mark.parametrize("as_str", [True, False])
def test_as_policy_of_a_jsonl_path_is_a_decisions_file(tmp_path: Path, as_str: bool) -> None:
    """A .jsonl path (str or Path) becomes a DecisionsFile reading that file."""
    path = _write(tmp_path / "d.jsonl", '{"workflow": "refunds", "step": "pay", "decision": "approve"}')
    policy = as_policy(str(path) if as_str else path)
    assert isinstance(policy, DecisionsFile)
    assert "file:d.jsonl" == policy.name
    assert Verdict("approve", "recorded", "") == policy.decide(_ticket())


def test_as_policy_of_a_missing_jsonl_file_says_it_cannot_read_it(tmp_path: Path) -> None:
    """A .jsonl path that does not exist raises ValueError naming the file."""
    with pytest.raises(ValueError, match=r"cannot read the decisions file .*nope\.jsonl: "):
        as_policy(str(tmp_path / "nope.jsonl"))


def test_a_relative_decisions_file_that_cannot_be_read_says_which_folder_it_was_read_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under papermill a notebook runs in its own folder, not the one the command was typed in:
    a relative path that names nothing there says where it was looked for."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        as_policy("decisions.jsonl")
    assert str(info.value).startswith(
        f"cannot read the decisions file decisions.jsonl (a relative path is read from {tmp_path}): [Errno 2]"
    )


@pytest.mark.parametrize("bad", ["approved", "yes", 3])
def test_as_policy_unknown_value_lists_the_options(bad: Any) -> None:
    """An unknown policy raises ValueError listing halt, approve, reject, fail and decisions files."""
    with pytest.raises(ValueError, match=r"unknown approval policy .*'halt', 'approve', 'reject', 'fail'.*\.jsonl"):
        as_policy(bad)


def test_fixed_policies_decide_with_their_name() -> None:
    """approve/reject policies give a verdict signed 'policy:<name>'; halt and fail give none."""
    assert Verdict("approve", "policy:approve_all", "decided by the approve_all policy") == APPROVE_ALL.decide(
        _ticket()
    )
    assert ("reject", "policy:reject_all") == (REJECT_ALL.decide(_ticket()).decision, REJECT_ALL.decide(_ticket()).by)
    assert HALT.decide(_ticket()) is None
    assert FAIL.decide(_ticket()) is None


# ---- DecisionsFile ----------------------------------------------------------------------------------


def test_decisions_file_exact_visit_wins_over_step_match(tmp_path: Path) -> None:
    """A decision recorded for the ticket's visit wins; other visits fall back to the step's first one."""
    path = _write(
        tmp_path / "d.jsonl",
        '{"workflow": "refunds", "step": "pay", "visit": 1, "decision": "reject", "by": "ana", "comment": "no"}',
        '{"workflow": "refunds", "step": "pay", "visit": 2, "decision": "approve", "by": "bob", "comment": "ok"}',
    )
    policy = DecisionsFile(path)
    assert Verdict("reject", "ana", "no") == policy.decide(_ticket(visit=1))
    assert Verdict("approve", "bob", "ok") == policy.decide(_ticket(visit=2))
    assert Verdict("reject", "ana", "no") == policy.decide(_ticket(visit=3))


def test_decisions_file_later_line_for_a_visit_wins(tmp_path: Path) -> None:
    """A visit-level match wins even when an earlier line set the step-level fallback."""
    path = _write(
        tmp_path / "d.jsonl",
        '{"workflow": "refunds", "step": "pay", "visit": 1, "decision": "approve", "by": "ana"}',
        '{"workflow": "refunds", "step": "pay", "visit": 3, "decision": "reject", "by": "bob"}',
    )
    assert "reject" == DecisionsFile(path).decide(_ticket(visit=3)).decision  # type: ignore[union-attr]


def test_decisions_file_missing_decision_is_none(tmp_path: Path) -> None:
    """A ticket of another workflow or step has no recorded decision: decide returns None."""
    path = _write(tmp_path / "d.jsonl", '{"workflow": "refunds", "step": "pay", "visit": 1, "decision": "approve"}')
    policy = DecisionsFile(path)
    assert policy.decide(_ticket(workflow="other")) is None
    assert policy.decide(_ticket(step="ship")) is None


def test_decisions_file_skips_blank_lines_and_defaults(tmp_path: Path) -> None:
    """Blank lines are skipped; a line without visit is visit 1, without by/comment 'recorded'/''."""
    path = _write(tmp_path / "d.jsonl", "", '{"workflow": "refunds", "step": "pay", "decision": "approve"}', "   ")
    assert Verdict("approve", "recorded", "") == DecisionsFile(path).decide(_ticket(visit=1))


def test_empty_decisions_file_decides_nothing(tmp_path: Path) -> None:
    """An empty decisions file is valid and has no decision for any ticket."""
    assert DecisionsFile(_write(tmp_path / "d.jsonl")).decide(_ticket()) is None


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        ("{not json", "Expecting property name"),
        ('{"workflow": "refunds", "decision": "approve"}', "'step'"),
        ('["refunds", "pay"]', "list indices"),
        ('{"workflow": "refunds", "step": "pay", "visit": "first", "decision": "approve"}', "invalid literal"),
    ],
)
def test_decisions_file_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, why: str) -> None:
    """A malformed line raises ValueError naming the file, the line number, the problem and the format."""
    path = _write(
        tmp_path / "d.jsonl",
        '{"workflow": "refunds", "step": "pay", "decision": "approve"}',
        "",
        bad_line,
    )
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}, line 3: .*{re.escape(why)}.*each line is a JSON"):
        DecisionsFile(path)


def test_decisions_file_rejects_a_bad_decision_value(tmp_path: Path) -> None:
    """A decision other than approve/reject raises ValueError naming the line and the value."""
    path = _write(tmp_path / "d.jsonl", '{"workflow": "refunds", "step": "pay", "decision": "approved"}')
    with pytest.raises(ValueError, match=r"line 1: decision must be 'approve' or 'reject', got 'approved'"):
        DecisionsFile(path)


def test_decisions_file_with_two_decisions_for_one_visit_names_both_lines(tmp_path: Path) -> None:
    """Two lines deciding one (workflow, step, visit) differently raise DecisionsFileError naming the
    file, both line numbers and their runs, and how to fix it; nothing is replayed."""
    path = _write(
        tmp_path / "d.jsonl",
        '{"workflow": "refunds", "step": "pay", "visit": 1, "decision": "approve", "by": "ana", "run_id": "r-1"}',
        '{"workflow": "refunds", "step": "ship", "visit": 1, "decision": "approve", "by": "ana"}',
        '{"workflow": "refunds", "step": "pay", "visit": 1, "decision": "reject", "by": "bob", "run_id": "r-2"}',
    )
    with pytest.raises(wf.DecisionsFileError) as caught:
        DecisionsFile(path)
    assert (
        f"{path}, lines 1 and 3: workflow 'refunds' step 'pay' visit 1 is decided twice, 'approve' on line 1 "
        f"(run r-1) and 'reject' on line 3 (run r-2)"
    ) in str(caught.value)
    assert "delete the other" in str(caught.value)
    assert "export_decisions(path, run_ids=[...])" in str(caught.value)


def test_decisions_file_accepts_lines_that_agree(tmp_path: Path) -> None:
    """Two lines giving one visit the same decision are accepted; the first line's reviewer is replayed."""
    same = '{"workflow": "refunds", "step": "pay", "visit": 1, "decision": "approve", "by": "ana"}'
    path = _write(
        tmp_path / "d.jsonl",
        same,
        same,
        '{"workflow": "refunds", "step": "pay", "visit": 1, "decision": "approve", "by": "bob", "run_id": "r-2"}',
    )
    assert Verdict("approve", "ana", "") == DecisionsFile(path).decide(_ticket(visit=1))


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"workflow": "refunds", "step": "pya", "decision": "approve"}', "it has no step 'pya' (did you mean 'pay'?)"),
        ('{"workflow": "refunds", "step": "check", "decision": "approve"}', "step 'check' has no approval gate"),
    ],
)
def test_decisions_file_naming_no_gate_of_the_workflow_refuses_the_run(tmp_path: Path, line: str, why: str) -> None:
    """A line naming a step the workflow lacks (with a did-you-mean) or a step with no gate refuses the
    run before it writes anything, naming the line and the workflow's gate steps."""
    path = _write(tmp_path / "d.jsonl", '{"workflow": "refunds", "step": "pay", "decision": "approve"}', line, line)
    with pytest.raises(wf.DecisionsFileError) as caught:
        _refunds().run({"amount": 30}, policy=DecisionsFile(path))
    message = str(caught.value)
    assert f"{path} records decisions that workflow 'refunds' can never use (lines 2, 3: {why}); " in message
    assert "its gate steps are 'pay'" in message
    assert "Correct the step name on those lines or delete them" in message
    assert [] == Workspace(create=True).runs()


def test_decisions_file_lines_of_other_workflows_are_not_checked_against_this_one(tmp_path: Path) -> None:
    """Lines naming another workflow's steps (an export of a whole workspace) do not refuse this run."""
    path = _write(
        tmp_path / "d.jsonl",
        '{"workflow": "shipping", "step": "label", "decision": "approve"}',
        '{"workflow": "refunds", "step": "pay", "decision": "approve", "by": "ana"}',
    )
    assert "succeeded" == _refunds().run({"amount": 30}, policy=str(path)).status


def test_decisions_file_naming_a_removed_gate_refuses_the_resume(tmp_path: Path) -> None:
    """Resuming with a decisions file whose line names a gate the workflow no longer has is refused
    (the run stays halted, its lease given back), and a corrected file resumes it."""
    run = _refunds().run({"amount": 30})
    assert "waiting_approval" == run.status
    renamed = wf.Workflow("refunds")
    renamed.step(lambda s: {"checked": True}, name="check")
    renamed.step(lambda s: {"paid": s["amount"]}, name="pay", approval="Refunds need a human")
    renamed.step(lambda s: {"shipped": True}, name="ship_it", approval="Shipping needs a human")
    renamed.chain("check", "pay", "ship_it")
    stale = _write(
        tmp_path / "d.jsonl",
        '{"workflow": "refunds", "step": "pay", "decision": "approve"}',
        '{"workflow": "refunds", "step": "ship", "decision": "approve"}',
    )
    with (
        pytest.warns(wf.WorkflowChangedWarning),
        pytest.raises(wf.DecisionsFileError, match=r"line 2: it has no step 'ship' \(did you mean 'ship_it'\?\)"),
    ):
        renamed.resume(run.run_id, policy=DecisionsFile(stale))
    assert "waiting_approval" == Workspace().run_info(run.run_id)["status"]
    fixed = _write(tmp_path / "fixed.jsonl", stale.read_text().replace('"ship"', '"ship_it"'))
    with pytest.warns(wf.WorkflowChangedWarning):
        assert "succeeded" == renamed.resume(run.run_id, policy=DecisionsFile(fixed)).status


def test_decisions_file_naming_no_gate_refuses_a_fork_before_it_is_written(tmp_path: Path) -> None:
    """Forking a stored run with a decisions file that names no gate of the workflow writes no fork."""
    flow = _refunds()
    run = flow.run({"amount": 30})
    path = _write(tmp_path / "d.jsonl", '{"workflow": "refunds", "step": "pays", "decision": "approve"}')
    with pytest.raises(wf.DecisionsFileError, match=r"line 1: it has no step 'pays' \(did you mean 'pay'\?\)"):
        flow.fork(run.run_id, at="check", update={"amount": 10}, policy=DecisionsFile(path))
    assert [run.run_id] == [r["run_id"] for r in Workspace().runs()]


# ---- gates in real runs -----------------------------------------------------------------------------


def _refunds(approval: str | wf.Approval = "Refunds need a human") -> wf.Workflow:
    flow = wf.Workflow("refunds")
    flow.step(lambda s: {"checked": True}, name="check")

    @flow.step(approval=approval)
    def pay(state: Any) -> dict[str, Any]:
        return {"paid": state["amount"]}

    flow.chain("check", "pay")
    return flow


def _decisions(run_id: str) -> list[tuple[str, str, str | None]]:
    """The journal's approval rows of a run: (step, status, approver)."""
    return [
        (e.step, e.status, e.approver)
        for e in Workspace().events(run_id)
        if e.status in ("waiting_approval", "approved", "rejected")
    ]


def test_policy_approve_passes_the_gate_at_once() -> None:
    """policy='approve' approves the ticket in the run, journaled with approver 'policy:approve_all'."""
    run = _refunds().run({"amount": 30}, policy="approve")
    assert "succeeded" == run.status
    assert {"amount": 30, "checked": True, "paid": 30} == run.state
    assert [("pay", "waiting_approval", None), ("pay", "approved", "policy:approve_all")] == _decisions(run.run_id)
    (ticket,) = Workspace().store.tickets.find(status=None, run_id=run.run_id)
    assert ("approved", "policy:approve_all") == (ticket.status, ticket.decided_by)


def test_policy_reject_fails_an_ungated_rejection() -> None:
    """policy='reject' rejects at once (approver 'policy:reject_all'); with no on_reject the run fails."""
    with pytest.raises(wf.ApprovalRejectedError, match="step 'pay': rejected by policy:reject_all") as caught:
        _refunds().run({"amount": 30}, policy="reject")
    run = caught.value.run  # type: ignore[attr-defined]
    assert "failed" == run.status
    assert "paid" not in run.state
    assert [("pay", "waiting_approval", None), ("pay", "rejected", "policy:reject_all")] == _decisions(run.run_id)
    assert "failed" == Workspace().run_info(run.run_id)["status"]


def test_policy_fail_fails_the_run_at_the_gate() -> None:
    """policy='fail' fails the run with ApprovalRequiredError naming the gate and how to decide it."""
    with pytest.raises(wf.ApprovalRequiredError, match=r"step 'pay': needs approval \(Refunds need a human\).*'fail'"):
        _refunds().run({"amount": 30}, policy="fail")
    (row,) = Workspace().runs()
    assert ("failed", "ApprovalRequiredError") == (row["status"], row["error_type"])


def test_policy_fail_in_another_workspace_says_the_command_that_finds_its_ticket(tmp_path: Path) -> None:
    """A run failed at a gate by policy='fail' in a workspace other than the default one (a
    notebook's `workspace` parameter) says to decide with `wfkit approve ... --workspace DIR`:
    without it, the command copied into a shell looks in the default workspace and finds no ticket."""
    elsewhere = tmp_path / "team's runs"
    run = _refunds().run({"amount": 30}, policy="fail", workspace=elsewhere, raise_on_error=False)
    (ticket,) = Workspace(elsewhere).store.tickets.find(status=None, run_id=run.run_id)
    expected = f"`wfkit approve {ticket.ticket_id} --workspace {shlex.quote(str(elsewhere))} --by NAME`"
    assert expected in str(run.error)


@pytest.mark.parametrize("by", ["", "  "])
def test_a_decision_by_nobody_is_refused_saying_what_was_given(by: str) -> None:
    """`run.approve(by="")`, `Workspace().approve(..., by=" ")` and `ticket.approve(by="")` are refused
    with a TicketError showing the `by` given and how to name the reviewer; the ticket stays open."""
    run = _refunds().run({"amount": 300})
    [ticket] = Workspace().pending()
    message = rf"^a decision needs the reviewer's name \(by=...\), got by={by!r}, which names no one: pass who decides"
    for decide in (
        lambda: run.approve(by=by),
        lambda: Workspace().approve(ticket.ticket_id, by=by),
        lambda: ticket.reject(by=by),
    ):
        with pytest.raises(wf.TicketError, match=message):
            decide()
    assert [ticket.ticket_id] == [t.ticket_id for t in Workspace().pending()]


_VALID = (
    "set it to 'halt', 'approve', 'reject', 'fail', or the path of a decisions file (.jsonl) recorded with "
    "Workspace.export_decisions, or unset it (a run given no policy then halts at a gate, or fails under papermill)"
)


@pytest.mark.parametrize(("value", "meant"), [("aprove", " (did you mean 'approve'?)"), ("sometimes", "")])
def test_a_misspelt_wfkit_policy_names_the_variable_and_the_valid_values(
    monkeypatch: pytest.MonkeyPatch, value: str, meant: str
) -> None:
    """`$WFKIT_POLICY=aprove` failed a run given no policy with "unknown approval policy 'aprove'", which
    no line of the user's code holds: the error now names the variable it came from, its value, the
    closest valid one and every valid value, before the run starts."""
    monkeypatch.delenv("WFKIT_MODE", raising=False)
    monkeypatch.setenv("WFKIT_POLICY", value)
    with pytest.raises(ValueError) as info:
        _refunds().run({"amount": 30})
    assert f"$WFKIT_POLICY={value!r} is no approval policy{meant}: {_VALID}" == str(info.value)
    assert [] == Workspace().runs()  # refused before the run was stored
    assert "succeeded" == _refunds().run({"amount": 30}, policy="approve").status  # a policy in code wins


def test_a_wfkit_policy_naming_a_missing_decisions_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A decisions file named by `$WFKIT_POLICY` that cannot be read says it was named there."""
    monkeypatch.delenv("WFKIT_MODE", raising=False)
    missing = tmp_path / "decisons.jsonl"
    monkeypatch.setenv("WFKIT_POLICY", str(missing))
    with pytest.raises(wf.DecisionsFileError, match=r"^\$WFKIT_POLICY='.*decisons\.jsonl' names a decisions file "
                       r"wfkit cannot use: cannot read the decisions file "):  # fmt: skip
        _refunds().run({"amount": 30})


def test_policy_fail_is_in_the_step_log_as_the_runs_end() -> None:
    """A run that policy='fail' failed at a gate has the gate's failure in its events and the step
    log (attempt 0: the step never ran), so runs() and the report count it failed; approved and
    resumed, the run is not failed any more."""
    run = _refunds().run({"amount": 30}, policy="fail", raise_on_error=False)
    (last,) = [e for e in run.events if e.step == "pay" and e.status == "failed"]
    assert (0, "ApprovalRequiredError", "permanent") == (last.attempt, last.error_type, last.error_kind)
    for table in (wf.steps().wf.runs(), wf.StepLog().runs()):
        assert bool(table.loc[run.run_id, "run_failed"])
        assert 1 == int(table.loc[run.run_id, "failed"])
    run.approve(by="ana")  # a failed run is not resumed by a decision: resumed as its error says
    run.resume().wait(10)
    assert "succeeded" == run.status
    for table in (wf.steps().wf.runs(), wf.StepLog().runs()):
        assert not bool(table.loc[run.run_id, "run_failed"])


def test_default_policy_halts_and_leaves_the_ticket_open() -> None:
    """With no policy the run halts at the gate, the gated step not run, its ticket open."""
    run = _refunds().run({"amount": 30})
    assert "waiting_approval" == run.status
    assert "paid" not in run.state
    assert [("pay", "open")] == [(t.step, t.status) for t in run.tickets()]


def test_conditional_gate_only_stops_large_amounts() -> None:
    """Approval(when=amount > 100) lets small amounts through and halts large ones."""
    flow = _refunds(wf.Approval("Large refunds need a human", when=wf.when("amount", "gt", 100)))
    small = flow.run({"amount": 50})
    assert "succeeded" == small.status
    assert [] == _decisions(small.run_id)
    large = flow.run({"amount": 500})
    assert "waiting_approval" == large.status
    (ticket,) = Workspace().pending()
    assert (large.run_id, "Large refunds need a human") == (ticket.run_id, ticket.reason)


def test_a_conditional_gate_on_a_field_the_state_lacks_asks_instead_of_letting_the_step_through() -> None:
    """A gate whose condition compares a field the state lacks (misspelt in the inputs, or written by
    a step that did not run) fails closed: its condition would compare false and let the risky step
    run unasked. It asks, and the ticket says why; a headless run decides by its policy."""
    flow = _refunds(wf.Approval("Large refunds need a human", when=wf.when("amount", "gt", 100)))
    unasked = flow.run({"amonut": 500})  # the field misspelt
    assert "waiting_approval" == unasked.status
    (ticket,) = Workspace().pending()
    assert unasked.run_id == ticket.run_id
    assert (
        "Large refunds need a human (asked because the gate's condition compares 'amount', which the run's "
        "state lacks: it would have let the step through unasked)"
    ) == ticket.reason
    rejected = flow.run({"amonut": 500}, policy="reject", raise_on_error=False)
    assert "failed" == rejected.status
    assert "paid" not in rejected.state
    small = flow.run({"amount": 50})  # present and below: no ticket, as before
    assert "succeeded" == small.status
    assert [] == _decisions(small.run_id)


def test_ticket_payload_follows_the_approval() -> None:
    """The ticket shows the fields the Approval's payload names."""
    _refunds(wf.Approval("check", payload=["amount"])).run({"amount": 70})
    assert [{"amount": 70}] == [t.payload for t in Workspace().pending()]


def _essay() -> wf.Workflow:
    """draft -> publish (gated; a rejection routes to revise) and revise -> publish, at most 3 revisions."""
    flow = wf.Workflow("essay")
    flow.step(lambda s: {"version": 1}, name="draft")

    @flow.step(max_visits=3)
    def revise(state: Any) -> dict[str, Any]:
        return {"version": state["version"] + 1}

    @flow.step(approval=wf.Approval("Publish?", payload=["version"], on_reject="revise"))
    def publish(state: Any) -> dict[str, Any]:
        return {"published": state["version"]}

    flow.chain("draft", "publish")
    flow.route("revise", default=wf.go("publish"))
    return flow


def test_rejection_routes_to_revise_and_approval_completes() -> None:
    """A rejection runs the on_reject step, the gate asks again, and approving that completes the run."""
    flow = _essay()
    run = flow.run({})
    ws = Workspace()
    (first,) = ws.pending()
    assert (1, {"version": 1}) == (first.visit, first.payload)
    ws.reject(first.ticket_id, by="ed", comment="too long")
    again = flow.resume(run.run_id)
    assert "waiting_approval" == again.status
    (second,) = ws.pending()
    assert (2, {"version": 2}) == (second.visit, second.payload)
    ws.approve(second.ticket_id, by="ed")
    done = flow.resume(run.run_id)
    assert "succeeded" == done.status
    assert {"version": 2, "published": 2} == done.state
    steps = [(s["step"], s["visit"], s["outcome"], s["route"]) for s in ws.run_info(run.run_id)["steps"]]
    assert [
        ("draft", 1, "ok", None),
        ("publish", 1, "rejected", "revise"),
        ("revise", 1, "ok", "publish"),
        ("publish", 2, "ok", None),
    ] == steps


def test_rejecting_every_revision_hits_the_visit_bound() -> None:
    """Under policy='reject' the revise loop stops at max_visits with VisitLimitError."""
    with pytest.raises(wf.VisitLimitError, match=r"step 'revise'.*max_visits=3"):
        _essay().run({}, policy="reject")


def test_rejection_routed_to_revise_is_journaled_once() -> None:
    """One rejection of one visit is one 'rejected' row in the journal, as the sinks saw it."""
    flow = _essay()
    run = flow.run({})
    ws = Workspace()
    ws.reject(ws.pending()[0].ticket_id, by="ed")
    again = flow.resume(run.run_id)
    seen = [(e.step, e.visit) for e in again.events if e.status == "rejected"]
    journaled = [(e.step, e.visit) for e in ws.events(run.run_id) if e.status == "rejected"]
    assert [("publish", 1)] == seen
    assert seen == journaled


def test_human_rejection_without_on_reject_fails_the_run() -> None:
    """A reviewer's rejection of a gate with no on_reject fails the resumed run with ApprovalRejectedError."""
    flow = _refunds()
    run = flow.run({"amount": 30})
    Workspace().reject(run.tickets()[0].ticket_id, by="ana", comment="fraud")
    with pytest.raises(wf.ApprovalRejectedError, match=r"rejected by ana: fraud.*on_reject") as caught:
        flow.resume(run.run_id)
    assert "pay" == caught.value.step
    assert "failed" == Workspace().run_info(run.run_id)["status"]


def test_run_approve_decides_and_resumes() -> None:
    """Run.approve decides the run's open gate; after waiting the run has finished."""
    run = _refunds().run({"amount": 30})
    run.approve(by="ana").wait(10)
    assert "succeeded" == run.status
    assert [("pay", "waiting_approval", None), ("pay", "approved", "ana")] == _decisions(run.run_id)


def test_gates_need_a_workspace() -> None:
    """A workflow with an approval gate refuses workspace=False: tickets live in a workspace."""
    with pytest.raises(ValueError, match=r"has approval gates.*drop workspace=False"):
        _refunds().run({"amount": 1}, workspace=False)


def test_decisions_file_policy_decides_in_a_run(tmp_path: Path) -> None:
    """A decisions file passes a recorded gate in a run, signed by the recorded reviewer."""
    path = _write(
        tmp_path / "d.jsonl",
        '{"workflow": "refunds", "step": "pay", "visit": 1, "decision": "approve", "by": "ana", "comment": "ok"}',
    )
    run = _refunds().run({"amount": 30}, policy=DecisionsFile(path))
    assert "succeeded" == run.status
    assert ("pay", "approved", "ana") == _decisions(run.run_id)[-1]


def test_decisions_file_without_a_match_halts(tmp_path: Path) -> None:
    """A decisions file with no decision for the gate halts the run (missing='halt', the default)."""
    path = _write(tmp_path / "d.jsonl", '{"workflow": "other", "step": "pay", "decision": "approve"}')
    run = _refunds().run({"amount": 30}, policy=DecisionsFile(path))
    assert "waiting_approval" == run.status


def test_decisions_file_missing_fail_fails_the_run(tmp_path: Path) -> None:
    """A decisions file with missing='fail' and no decision for the gate fails the run."""
    path = _write(tmp_path / "d.jsonl", '{"workflow": "other", "step": "pay", "decision": "approve"}')
    run = _refunds().run({"amount": 30}, policy=DecisionsFile(path, missing="fail"), raise_on_error=False)
    assert "failed" == run.status
    assert isinstance(run.error, wf.ApprovalRequiredError)


# ---- every way of deciding resumes the run when this process defines its workflow ------------------


def _refund_flow(name: str) -> wf.Workflow:
    flow = wf.Workflow(name)
    flow.step(lambda s: {"amount": s["amount"]}, name="quote")
    flow.step(lambda s: {"refunded": s["amount"]}, name="refund", approval="Refunds need a human")
    flow.chain("quote", "refund")
    return flow


def _wait_for(run_id: str, status: str) -> str:
    """The run's stored status once it is ``status`` (or after 10 s, whatever it is then)."""
    import time

    deadline = time.monotonic() + 10
    while (now := Workspace().run_info(run_id)["status"]) != status and time.monotonic() < deadline:
        time.sleep(0.02)
    return now


def test_workspace_approve_resumes_the_run() -> None:
    """Workspace.approve records the decision and resumes the run its process defines, to the end."""
    flow = _refund_flow("ws-approve")
    run = flow.run({"amount": 10})
    Workspace().approve(run.tickets()[0].ticket_id, by="ana")
    assert "succeeded" == _wait_for(run.run_id, "succeeded")
    assert {"amount": 10, "refunded": 10} == Workspace().run_info(run.run_id)["state"]


def test_workspace_reject_resumes_the_run_to_its_end() -> None:
    """Workspace.reject resumes too: with no on_reject route the run ends failed, not waiting."""
    flow = _refund_flow("ws-reject")
    run = flow.run({"amount": 10})
    Workspace().reject(run.tickets()[0].ticket_id, by="ana", comment="no")
    assert "failed" == _wait_for(run.run_id, "failed")


def test_ticket_approve_decides_where_it_was_read_and_resumes() -> None:
    """A Ticket read from a workspace approves itself there (ticket.approve) and the run resumes."""
    flow = _refund_flow("ticket-approve")
    run = flow.run({"amount": 20})
    [ticket] = wf.pending().tickets
    decided = ticket.approve(by="bo", comment="fine")
    assert ("approved", "bo") == (decided.status, decided.decided_by)
    assert "succeeded" == _wait_for(run.run_id, "succeeded")


def test_the_handle_a_notebook_holds_follows_a_decision_made_in_the_pending_panel() -> None:
    """Deciding in wf.pending() (or a Workspace, or the ticket) on the kernel's loop resumes the run
    through the handle its cell holds: that handle, and the live view drawn from it, end
    "succeeded" with the step's result, instead of staying "waiting_approval" while a second
    handle nobody holds ran the rest (notebook 04 printed `large waiting_approval` after the
    pending panel's Approve)."""
    flow = _refund_flow("panel-approve")

    async def cell() -> tuple[str, dict[str, Any], list[str]]:
        run = await flow.arun({"amount": 900})
        assert "waiting_approval" == run.status
        seen: list[str] = []
        run.subscribe(lambda event: seen.append("end" if event is None else event.status))
        wf.pending().approve(by="ana", comment="checked")  # the panel's Approve calls this
        await wf.drain()
        return run.status, run.state, seen

    status, state, seen = asyncio.run(cell())
    assert ("succeeded", 900) == (status, state.get("refunded"))
    assert ["approved", "ok", "end"] == seen


def test_a_held_handle_follows_a_decision_from_plain_code_too() -> None:
    """From a script (no running loop) the held handle resumes in the background: run.wait() waits for it."""
    flow = _refund_flow("script-approve")
    run = flow.run({"amount": 5})
    Workspace().approve(run.tickets()[0].ticket_id, by="ana")
    assert "succeeded" == run.wait().status
    assert 5 == run.state["refunded"]


def test_a_ticket_built_by_hand_cannot_decide_itself() -> None:
    """A Ticket that no workspace handed out says how to decide it instead."""
    ticket = Ticket("t1", "r1", "w", "s", 1, "why", {}, "open", None, None, 0.0, None)
    with pytest.raises(RuntimeError, match=r"Workspace\(path\).approve\('t1'"):
        ticket.approve(by="x")


def test_pending_approve_and_reject_by_id_index_or_the_only_one() -> None:
    """wf.pending().approve/reject take a ticket id, an index, or nothing when there is one ticket."""
    flow = _refund_flow("pending-approve")
    runs = [flow.run({"amount": a}) for a in (1, 2, 3)]
    pending = wf.pending()
    pending.approve(pending.tickets[0].ticket_id, by="cy")
    pending.reject(1, by="cy")
    with pytest.raises(wf.TicketError, match="3 open tickets"):
        pending.approve(by="cy")
    only = wf.pending()
    only.approve(by="cy")
    assert ["succeeded", "failed", "succeeded"] == [
        _wait_for(r.run_id, s) for r, s in zip(runs, ["succeeded", "failed", "succeeded"], strict=True)
    ]


@pytest.mark.parametrize("decide", ["workspace", "run"])
def test_an_explicit_resume_after_a_decision_waits_for_the_run_it_started(decide: str) -> None:
    """Deciding then calling flow.resume (two lines of one script, as the README says) runs the rest
    once, not twice, whether the decision went through a Workspace or run.approve (which raised
    LeaseError, naming the run id twice)."""
    calls: list[int] = []
    flow = wf.Workflow(f"decide-then-resume-{decide}")
    flow.step(lambda s: {"a": 1}, name="first")

    @flow.step(approval="check")
    def second(state: Any) -> dict[str, Any]:
        calls.append(1)
        return {"b": 2}

    flow.chain("first", "second")
    run = flow.run({})
    if decide == "workspace":
        Workspace().approve(run.tickets()[0].ticket_id, by="ana")
    else:
        run.approve(by="ana")
    done = flow.resume(run.run_id)
    assert ("succeeded", [1]) == (done.status, calls)


def test_no_shipped_notebook_or_example_approves_by_default() -> None:
    """No notebook's parameters cell (and no example module) makes "approve" its approval policy default."""
    import json

    root = Path(__file__).resolve().parents[1]
    defaults = {}
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        text = "".join("".join(c["source"]) for c in params)
        match = re.search(r"^wfkit_policy\s*=\s*(\S+)", text, re.M)
        defaults[path.name] = None if match is None else match.group(1).strip("\"'")
    assert [] == [name for name, policy in defaults.items() if policy in ("approve", "approve_all")]
    examples = (root / "wfkit" / "examples.py").read_text()
    assert not re.search(r"policy\s*=\s*[\"']approve", examples)


@settings(max_examples=60, deadline=None)
@given(
    amount=st.one_of(st.none(), st.integers(-500, 500)),
    region=st.one_of(st.none(), st.sampled_from(["eu", "us"])),
    keys=st.sets(st.sampled_from(["amount", "region"])),
)
def test_a_gate_asks_with_one_reason_or_not_at_all(amount: int | None, region: str | None, keys: set[str]) -> None:
    """``Approval.ask(state)``, what a run asks of a gate before its step, is the ticket's reason
    when the gate asks (the reason, and the fields its condition compares that the state lacks)
    and None when it lets the step through: one answer, from one look at what the state lacks."""
    when = wf.when("amount", "gt", 100) & wf.when("region", "eq", "eu")
    gate = wf.Approval("Large EU refunds need a human", when=when)
    values = {"amount": amount, "region": region}
    state = {key: values[key] for key in keys}
    lacking = sorted(name for name in ("amount", "region") if state.get(name) is None)
    holds = not lacking and amount is not None and amount > 100 and region == "eu"
    asked = gate.ask(state)
    if lacking:
        fields = ", ".join(map(repr, lacking))
        assert (
            f"Large EU refunds need a human (asked because the gate's condition compares {fields}, which the "
            f"run's state lacks: it would have let the step through unasked)"
        ) == asked
    elif holds:
        assert "Large EU refunds need a human" == asked
    else:
        assert asked is None
    assert (asked is not None) == gate.asks(state)
    assert "Always asks" == wf.Approval("Always asks").ask(state)


@pytest.mark.parametrize("how", ["workspace", "ticket", "pending"])
def test_a_gate_decided_again_through_the_workspace_says_who_decided_and_changes_nothing(how: str) -> None:
    """``Workspace.approve``, ``ticket.approve()`` and ``wf.pending().approve`` asked again the same
    way of a decided gate warn as ``run.approve`` does (they returned the ticket silently), the
    warning pointing at the user's own line, and the ticket stays as it was."""
    run = _refunds().run({"amount": 30}, policy="halt")
    (ticket,) = run.tickets()
    Workspace().approve(ticket.ticket_id, by="ann", comment="fine")
    before = Workspace().ticket(ticket.ticket_id)
    said = rf"ticket {ticket.ticket_id} was already approved by ann at .+ UTC \(fine\): nothing changed"
    decide_again = {
        "workspace": lambda: Workspace().approve(ticket.ticket_id, by="bob"),
        "ticket": lambda: Workspace().ticket(ticket.ticket_id).approve(by="bob"),
        "pending": lambda: wf.pending().approve(ticket.ticket_id, by="bob"),
    }[how]
    with pytest.warns(wf.AlreadyDecidedWarning, match=said) as caught:
        again = decide_again()
    assert [__file__] == [w.filename for w in caught]
    assert before == again == Workspace().ticket(ticket.ticket_id)
