"""Sub-workflows: a workflow run as a step of another, as a child run linked to its parent."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import wfkit as wf
from wfkit.cli._cli import main
from wfkit.model._errors import SubflowError


def _child(name: str = "child", *, log: list[str] | None = None) -> wf.Workflow:
    child = wf.Workflow(name, inputs=["text"])

    @child.step
    def upper(state: Any) -> dict[str, Any]:
        if log is not None:
            log.append("upper")
        return {"up": state["text"].upper()}

    @child.step
    def count(state: Any) -> dict[str, Any]:
        if log is not None:
            log.append("count")
        return {"n": len(state["up"])}

    child.edge("upper", "count")
    return child


def _parent(child: wf.Workflow, name: str = "parent", **options: Any) -> wf.Workflow:
    parent = wf.Workflow(name)

    @parent.step
    def prep(state: Any) -> dict[str, Any]:
        return {"q": "hello"}

    parent.subflow(child, name="shout", inputs={"text": "q"}, outputs={"loud": "up", "size": "n"}, **options)

    @parent.step
    def done(state: Any) -> dict[str, Any]:
        return {"msg": f"{state['loud']}:{state['size']}"}

    parent.chain("prep", "shout", "done")
    return parent


@pytest.mark.parametrize("workspace_arg", ["memory", "durable"])
def test_the_child_runs_with_mapped_inputs_and_the_parent_receives_mapped_outputs(
    workspace_arg: str, workspace: Path
) -> None:
    """The child starts with inputs= taken from the parent's state; outputs= come back into it."""
    run = _parent(_child()).run({}, workspace=False if workspace_arg == "memory" else workspace)
    assert "succeeded" == run.status
    assert {"q": "hello", "loud": "HELLO", "size": 5, "msg": "HELLO:5"} == run.state
    assert ["prep", "shout", "done"] == run.path()


def test_child_events_carry_their_own_run_id_and_the_parents(workspace: Path) -> None:
    """Every event of the child has run_id = the child and parent_run_id = the parent, live and stored."""
    seen: list[wf.StepEvent] = []
    parent = _parent(_child())
    # (A sink, not run.subscribe after start: under load the child's steps ran before it, and
    # subscribe sees events from then on.)
    run = parent.start({}, workspace=workspace, sinks=[seen.append])
    run.wait()
    info = wf.Workspace(workspace).run_info(run.run_id)
    assert 1 == len(info["children"])
    child_id = info["children"][0]
    assert run.run_id == wf.Workspace(workspace).run_info(child_id)["parent_run_id"]
    child_events = [e for e in seen if e.workflow == "child"]
    assert [("upper", child_id, run.run_id), ("count", child_id, run.run_id)] == [
        (e.step, e.run_id, e.parent_run_id) for e in child_events
    ]
    stored = wf.Workspace(workspace).events(child_id)
    assert {run.run_id} == {e.parent_run_id for e in stored}
    assert {None} == {e.parent_run_id for e in run.events}


def test_stream_yields_the_childs_events_between_the_parents() -> None:
    """flow.stream() shows the child's steps as they happen, inside the parent's step."""

    async def collect() -> list[tuple[str, str]]:
        out = []
        async for event in _parent(_child()).stream({}, workspace=False):
            assert isinstance(event, wf.StepEvent)
            out.append((event.workflow, event.step))
        return out

    assert [
        ("parent", "prep"),
        ("child", "upper"),
        ("child", "count"),
        ("parent", "shout"),
        ("parent", "done"),
    ] == asyncio.run(collect())


def _gated_child() -> wf.Workflow:
    child = wf.Workflow("gated-child", inputs=["amount"])

    @child.step
    def check(state: Any) -> dict[str, Any]:
        return {"checked": True}

    @child.step(approval="refunds need a human")
    def refund(state: Any) -> dict[str, Any]:
        return {"refunded": state["amount"]}

    child.edge("check", "refund")
    return child


def _gated_parent() -> wf.Workflow:
    parent = wf.Workflow("gated-parent")

    @parent.step
    def prep(state: Any) -> dict[str, Any]:
        return {"amt": 120}

    parent.subflow(_gated_child(), name="pay", inputs={"amount": "amt"}, outputs={"paid": "refunded"})

    @parent.step
    def done(state: Any) -> dict[str, Any]:
        return {"msg": f"paid {state['paid']}"}

    parent.chain("prep", "pay", "done")
    return parent


def test_a_gate_in_the_child_halts_the_parent_and_approving_through_the_parent_finishes_both(
    workspace: Path,
) -> None:
    """The child's ticket is the parent's; run.approve continues the child, then the parent."""
    run = _gated_parent().run({}, workspace=workspace, policy="halt")
    assert "waiting_approval" == run.status
    tickets = run.tickets()
    assert [("gated-child", "refund")] == [(t.workflow, t.step) for t in tickets]
    child_id = tickets[0].run_id
    assert child_id != run.run_id
    halted = [e for e in run.events if e.step == "pay"]
    assert [("waiting_approval", child_id)] == [(e.status, e.extra["child_run_id"]) for e in halted]
    run.approve(by="ann", comment="fine")
    run.wait()
    assert "succeeded" == run.status
    assert {"amt": 120, "paid": 120, "msg": "paid 120"} == run.state
    ws = wf.Workspace(workspace)
    assert [child_id] == ws.run_info(run.run_id)["children"]  # the same child resumed, not a new one
    child_steps = [(s["step"], s["outcome"]) for s in ws.run_info(child_id)["steps"]]
    assert [("check", "ok"), ("refund", "ok")] == child_steps
    assert "succeeded" == ws.run_info(child_id)["status"]


def test_every_row_of_a_child_names_its_parent_and_its_own_version_the_decision_too(workspace: Path) -> None:
    """The decision row of a child's ticket, approved through the parent's handle, is the child's
    row like its others: it names the parent run, and carries the child's workflow version, not
    the parent's (it had neither: filtering a parent's sub-runs by parent_run_id lost it)."""
    run = _gated_parent().run({}, workspace=workspace, policy="halt")
    (ticket,) = run.tickets()
    run.approve(by="ann", comment="fine")
    run.wait()
    assert "succeeded" == run.status
    events = wf.Workspace(workspace).events(ticket.run_id)
    assert ["approved"] == [e.status for e in events if e.approver is not None]
    assert {run.run_id} == {e.parent_run_id for e in events}
    assert len({e.workflow_version for e in events}) == 1
    assert run.events[0].workflow_version != events[0].workflow_version


@pytest.mark.parametrize("decided_by", ["cli", "handle", "policy"])
def test_a_decision_row_in_the_step_log_carries_every_column_of_its_run_and_gate(
    decided_by: str, workspace: Path
) -> None:
    """Read back from parquet, the decision row of a child's gate (approved with `wfkit approve`,
    through the run's handle, or by the approval policy) holds the child run's value in every
    column that says which run a row is of, and the tools of its gate's row (it had no tools)."""
    flow = _gated_parent()
    run = flow.run({}, workspace=workspace, policy="approve" if decided_by == "policy" else "halt")
    if decided_by == "cli":
        (ticket,) = wf.Workspace(workspace).pending()
        assert 0 == main(["approve", ticket.ticket_id, "--by", "cy"])  # the test's workspace is $WFKIT_HOME
        run = flow.resume(run.run_id, workspace=workspace)
    elif decided_by == "handle":
        run.approve(by="ann")
        run.wait()
    assert "succeeded" == run.status
    (child,) = wf.Workspace(workspace).run_info(run.run_id)["children"]

    rows = wf.steps(workspace, run_id=child)  # the parquet step log, read with pandas
    decided = rows[rows["status"] == "approved"]
    assert 1 == len(decided)
    others = rows.drop(index=decided.index)
    run_columns = ("workflow", "workflow_version", "parameters_hash", "parent_run_id", "host")
    run_values = {column: {_cell(v) for v in others[column]} for column in run_columns}
    assert all(1 == len(v) and None not in v for v in run_values.values()), run_values
    run_values["tools"] = {_cell(v) for v in others[others["status"] == "waiting_approval"]["tools"]}
    assert 1 == len(run_values["tools"])  # the gate's row: the tools its step visit had
    assert run_values == {column: {_cell(decided[column].iloc[0])} for column in (*run_columns, "tools")}


def _cell(value: Any) -> Any:
    """A step-log cell as a plain value (an array of tools as a tuple, a missing value as None)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(value)
    return None if pd.isna(value) else value


def test_a_decisions_file_naming_no_gate_of_a_child_refuses_the_parent_before_it_runs(
    workspace: Path, tmp_path: Path
) -> None:
    """The child's runs use the parent's policy: a decisions file line naming a step the child
    lacks refuses the parent run up front (no step of it runs), and the corrected file replays."""
    bad = tmp_path / "decisions.jsonl"
    bad.write_text('{"workflow": "gated-child", "step": "refnud", "decision": "approve", "by": "ann"}\n')
    with pytest.raises(wf.DecisionsFileError, match=r"line 1: it has no step 'refnud' \(did you mean 'refund'\?\)"):
        _gated_parent().run({}, workspace=workspace, policy=wf.DecisionsFile(bad))
    assert [] == wf.Workspace(workspace).runs()
    good = tmp_path / "fixed.jsonl"
    good.write_text(bad.read_text().replace("refnud", "refund"))
    run = _gated_parent().run({}, workspace=workspace, policy=wf.DecisionsFile(good))
    assert ("succeeded", "paid 120") == (run.status, run.state["msg"])


def test_a_child_ticket_decided_in_the_workspace_resumes_with_the_parent(workspace: Path) -> None:
    """Deciding the ticket elsewhere (Workspace, CLI) and resuming the parent runs the rest of both."""
    flow = _gated_parent()
    run = flow.run({}, workspace=workspace, policy="halt")
    ws = wf.Workspace(workspace)
    (ticket,) = ws.pending()
    assert run.run_id == ws.store.top_run(ticket.run_id)
    ws.reject(ticket.ticket_id, by="bob", comment="too much")
    resumed = flow.resume(run.run_id, workspace=workspace, raise_on_error=False)
    assert "failed" == resumed.status
    assert isinstance(resumed.error, wf.StepFailedError)
    assert isinstance(resumed.error.__cause__, SubflowError)
    assert "rejected by bob: too much" in str(resumed.error)


def test_the_cli_names_the_parent_run_to_resume_after_a_child_ticket(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit approve` on a child's ticket says to resume the top run, which then finishes."""
    flow = _gated_parent()
    run = flow.run({}, workspace=workspace, policy="halt")
    (ticket,) = wf.Workspace(workspace).pending()
    assert 0 == main(["approve", ticket.ticket_id, "--by", "cy"])  # the test's workspace is $WFKIT_HOME
    # A workflow a function built is in no module: the command names the --workflow to pass.
    assert f"resume with `wfkit resume {run.run_id} --workflow module:name`" in capsys.readouterr().out
    assert "succeeded" == flow.resume(run.run_id, workspace=workspace).status


def test_a_killed_parent_resumes_its_child_where_it_stopped(tmp_path: Path) -> None:
    """SIGKILL in the child's second step; resuming the parent resumes the same child from that step."""
    here = Path(__file__).parent
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full", "PYTHONPATH": str(here.parent)}
    script = [sys.executable, str(here / "subflowproc.py"), str(tmp_path / "ws"), str(logs)]
    crashed = subprocess.run([*script, "crash"], env=env, capture_output=True, text=True, timeout=60)
    assert -9 == crashed.returncode, crashed.stderr
    assert ["parent.prepare", "child.first", "child.second"] == (logs / "ran.log").read_text().split()
    (logs / "ran.log").unlink()
    resumed = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert 0 == resumed.returncode, resumed.stderr
    assert ["child.second", "parent.finish"] == (logs / "ran.log").read_text().split()
    result = json.loads((logs / "result.json").read_text())
    assert "succeeded" == result["status"]
    assert {"text": "hi", "result": "HI!", "done": "HI!"} == result["state"]
    assert 1 == len(result["children"])


def test_retries_on_the_subflow_step_rerun_the_child_as_a_whole(workspace: Path) -> None:
    """A transient failure inside the child makes the parent step retry with a new child run."""
    calls = {"n": 0}
    child = wf.Workflow("flaky-child", inputs=["text"])

    @child.step
    def flaky(state: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("blip")
        return {"up": state["text"].upper(), "n": 1}

    run = _parent(child, retry=wf.RetryPolicy(max_retries=2, base_delay=0.0, jitter=0.0)).run({}, workspace=workspace)
    assert "succeeded" == run.status
    shout = [(e.attempt, e.status, e.error_type) for e in run.events if e.step == "shout"]
    assert [(1, "retry", "SubflowError"), (2, "ok", None)] == shout
    children = wf.Workspace(workspace).run_info(run.run_id)["children"]
    assert ["failed", "succeeded"] == [wf.Workspace(workspace).run_info(c)["status"] for c in children]


def test_a_permanent_failure_inside_the_child_is_not_retried() -> None:
    """The kind of the failure inside the child decides: a ValueError there is permanent."""
    child = wf.Workflow("bad-child", inputs=["text"])

    @child.step
    def broken(state: Any) -> dict[str, Any]:
        raise ValueError("bad input")

    run = _parent(child, retry=wf.RetryPolicy(max_retries=3, base_delay=0.0)).run(
        {}, workspace=False, raise_on_error=False
    )
    assert "failed" == run.status
    assert [(1, "failed", "permanent")] == [
        (e.attempt, e.status, e.error_kind) for e in run.events if e.step == "shout"
    ]
    assert "bad input" in str(run.error)


@pytest.mark.parametrize("where", ["memory", "durable"])
@pytest.mark.parametrize("verdict", [wf.ErrorKind.PERMANENT, wf.ErrorKind.TRANSIENT])
def test_the_child_steps_own_classifier_decides_the_kind_the_parent_retries_on(
    where: str, verdict: wf.ErrorKind
) -> None:
    """A child step's classify= is the child's word on its failure: the parent step takes that
    kind (a ConnectionError the child calls permanent is not retried; a ValueError it calls
    transient is), not its own classification of the child's exception."""
    calls = {"n": 0}
    child = wf.Workflow("classified-child", inputs=["text"])
    error = ConnectionError("quota used up") if verdict is wf.ErrorKind.PERMANENT else ValueError("not ready")

    @child.step(classify=lambda exc: verdict)
    def call(state: Any) -> dict[str, Any]:
        calls["n"] += 1
        raise error

    parent = _parent(child, retry=wf.RetryPolicy(max_retries=2, base_delay=0.0, jitter=0.0))
    run = parent.run({}, workspace=None if where == "durable" else False, raise_on_error=False)
    rows = [(e.attempt, e.status, e.error_kind) for e in run.events if e.step == "shout"]
    if verdict is wf.ErrorKind.PERMANENT:
        assert ([(1, "failed", "permanent")], 1) == (rows, calls["n"])
    else:
        assert ([(1, "retry", "transient"), (2, "retry", "transient"), (3, "failed", "transient")], 3) == (
            rows,
            calls["n"],
        )


def test_a_timeout_on_the_subflow_step_bounds_the_whole_child_run() -> None:
    """The step's timeout cancels the child run and the parent follows its fallback."""
    child = wf.Workflow("slow-child", inputs=["text"])

    @child.step
    async def slow(state: Any) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"up": "", "n": 0}

    parent = _parent(child, timeout=0.2, fallback="rescue")

    @parent.step
    def rescue(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        assert ctx.failure is not None
        return {"why": ctx.failure.error_type}

    run = parent.run({}, workspace=False)
    assert "StepTimeoutError" == run.state["why"]
    assert ["prep", "rescue"] == run.path()


def test_a_child_that_ends_without_an_output_field_fails_the_step_saying_which() -> None:
    """outputs= naming a field the child never wrote is a clear, permanent error."""
    child = wf.Workflow("short-child", inputs=["text"])

    @child.step
    def upper(state: Any) -> dict[str, Any]:
        return {"up": state["text"].upper()}

    run = _parent(child).run({}, workspace=False, raise_on_error=False)
    assert "failed" == run.status
    assert "ended without the field(s) ['n'] that outputs= maps back" in str(run.error)


def test_a_missing_parent_field_for_the_child_inputs_fails_the_step_saying_which() -> None:
    """inputs= naming a parent field that is not in the state is a clear error."""
    parent = wf.Workflow("orphan-parent")
    parent.subflow(_child(), name="shout", inputs={"text": "nowhere"}, outputs={"loud": "up"})
    run = parent.run({}, workspace=False, raise_on_error=False)
    assert "failed" == run.status
    assert "maps the parent's field(s) ['nowhere']" in str(run.error)


def test_a_misspelt_field_in_inputs_or_outputs_names_the_one_meant(workspace: Path) -> None:
    """inputs={"draft": "txet"} of a parent whose state holds 'text' (or outputs= naming 'verdcit' of
    a child that wrote 'verdict') failed saying the field was missing, "a step before it must write
    them", as if no step wrote it; the error now shows the fields there are and the one meant."""
    review = wf.Workflow("review", inputs=["draft"])

    @review.step
    def judge(state: Any) -> dict[str, Any]:
        return {"verdict": "ok"}

    for inputs, outputs, said in (
        (
            {"draft": "txet"},
            {"verdict": "verdict"},
            "maps the parent's field(s) ['txet'] into workflow 'review', but the state has no such field here "
            "(it holds ['text', 'topic']) (did you mean 'text'?); a step before it must write them, or fix the name "
            "in inputs=",
        ),
        (
            {"draft": "text"},
            {"verdict": "verdcit"},
            "workflow 'review' ended without the field(s) ['verdcit'] that outputs= maps back (its final state "
            "holds ['draft', 'verdict']) (did you mean 'verdict'?); map fields its steps write",
        ),
    ):
        parent = wf.Workflow("writer", inputs=["topic"])

        @parent.step
        def write(state: Any) -> dict[str, Any]:
            return {"text": state["topic"] + "!"}

        parent.subflow(review, name="check", inputs=inputs, outputs=outputs)
        parent.edge("write", "check")
        run = parent.run({"topic": "hi"}, raise_on_error=False)
        assert "failed" == run.status
        assert said in str(run.error)
        (shown,) = wf.steps(run_id=run.run_id, status="failed")["error_message"]
        assert said in shown  # the step log says it too


def test_a_sub_workflow_whose_own_validation_fails_is_reported_with_the_parents_problems() -> None:
    """The child's problems come prefixed with the step's name, beside the parent's own."""
    child = wf.Workflow("broken-child")

    @child.step
    def a(state: Any) -> None:
        return None

    child.edge("a", "nowhere")
    parent = wf.Workflow("broken-parent")
    parent.subflow(child, name="inner", outputs={"x": "y"})
    parent.edge("inner", "missing")
    with pytest.raises(wf.WorkflowDefinitionError) as err:
        parent.validate()
    problems = err.value.problems
    assert any(
        p.startswith("sub-workflow step 'inner' (workflow 'broken-child'): edge 'a' -> 'nowhere'") for p in problems
    )
    assert any("edge 'inner' -> 'missing'" in p and not p.startswith("sub-workflow") for p in problems)
    located = dict(zip(err.value.problems, err.value.locations, strict=True))
    child_problem = next(p for p in problems if p.startswith("sub-workflow step 'inner'"))
    assert ("steps", "inner", "workflow", "edges", "a", 0) == located[child_problem]


def test_inputs_the_child_declares_must_be_mapped() -> None:
    """A declared input of the child that inputs= does not fill is a validation problem."""
    parent = wf.Workflow("unmapped-parent")
    parent.subflow(_child(), name="shout", outputs={"loud": "up"})
    with pytest.raises(
        wf.WorkflowDefinitionError, match=r"declares the inputs \['text'\], which the step does not map"
    ):
        parent.validate()


def test_a_workflow_that_runs_itself_through_its_children_is_refused() -> None:
    """A cycle of sub-workflows is a validation problem, not a recursion error."""
    a = wf.Workflow("cycle-a")
    b = wf.Workflow("cycle-b")
    a.subflow(b, name="to_b", outputs={"x": "x"})
    b.subflow(a, name="to_a", outputs={"x": "x"})
    with pytest.raises(wf.WorkflowDefinitionError, match="runs itself through its sub-workflows"):
        a.validate()
    with pytest.raises(ValueError, match="cannot run itself"):
        a.subflow(a, name="me", outputs={"x": "x"})


def test_subflow_arguments_are_checked() -> None:
    """No outputs, a non-workflow, or a malformed mapping are refused with how to fix them."""
    parent = wf.Workflow("args-parent")
    with pytest.raises(ValueError, match="outputs=\\{parent_field: child_field\\}"):
        parent.subflow(_child(), name="x", outputs={})
    with pytest.raises(TypeError, match=r"runs a wfkit\.Workflow"):
        parent.subflow(lambda s: s, name="x", outputs={"a": "b"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="subflow inputs= maps state field names"):
        parent.subflow(_child(), name="x", inputs={"text": 3}, outputs={"a": "b"})  # type: ignore[dict-item]


def test_a_gated_child_cannot_run_in_memory() -> None:
    """A child with an approval gate needs a workspace for its tickets, as the parent says."""
    with pytest.raises(ValueError, match="approval gates \\(its own or its sub-workflows'\\)"):
        _gated_parent().run({}, workspace=False)


def test_the_subflow_is_plain_data_on_the_step_spec() -> None:
    """The step's spec names the child, its mappings and version (what a flow spec serialises)."""
    child = _child()
    spec = _parent(child).steps["shout"]
    assert spec.subflow is not None
    assert {
        "workflow": "child",
        "version": child.version,
        "inputs": {"text": "q"},
        "outputs": {"loud": "up", "size": "n"},
    } == spec.describe()["subflow"]
    assert frozenset({"loud", "size"}) == spec.writes
    assert spec.subflow.ref is None  # defined here, in a test function: no import path reaches it


def test_calling_a_subflow_steps_function_directly_says_where_it_runs() -> None:
    """The spec's function is not the child: calling it outside a run explains that."""
    spec = _parent(_child()).steps["shout"]
    with pytest.raises(RuntimeError, match="is a sub-workflow: it runs inside its parent's run"):
        spec.fn(
            {},
            wf.StepContext(
                run_id="r",
                workflow="w",
                step="shout",
                visit=1,
                attempt=1,
                tools=(),
                rng_source=random.Random,
                deadline=None,
                failure=None,
            ),
        )


def test_a_child_run_is_created_without_blocking_the_parents_loop(workspace: Path) -> None:
    """While another connection holds the store's lock, creating a child run (its row and link) waits in the
    parent's task: a heartbeat on the loop keeps ticking (it is the heartbeat that lets the lock go, after
    20 ticks), and the run succeeds once the lock is free."""
    import sqlite3
    import time

    held: dict[str, Any] = {}

    parent = wf.Workflow("parent-held")

    @parent.step
    def prep(state: Any) -> dict[str, Any]:
        return {"q": "hello"}

    @parent.step
    async def locker(state: Any) -> dict[str, Any]:
        # Started just before the sub-workflow step: takes the store's lock until the heartbeat lets it go.
        if held.get("armed"):
            conn = sqlite3.connect(workspace / "wfkit.db", isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")
            held["conn"], held["wall"] = conn, time.time()
        return {"locked": True}

    parent.subflow(_child(), name="shout", inputs={"text": "q"}, outputs={"loud": "up"})
    parent.edge("prep", "locker")
    parent.edge("prep", "shout")
    parent.run({}, workspace=workspace)  # the store exists, the code paths are warm

    async def main() -> tuple[wf.Run, int]:
        # Ticks of the loop, not time: a loop that waited for the lock could never tick to let it go (the
        # child's row would fail on the store's busy timeout instead), however loaded the machine.
        ticks_while_held = 0
        held["armed"] = True
        running = asyncio.create_task(parent.arun({}, workspace=workspace))
        while not running.done():
            if "conn" in held:
                ticks_while_held += 1
                if ticks_while_held == 20:
                    conn = held.pop("conn")
                    conn.execute("ROLLBACK")
                    conn.close()
            await asyncio.sleep(0.001)
        return await running, ticks_while_held

    run, ticks = asyncio.run(main())
    assert "succeeded" == run.status
    assert 20 == ticks  # the heartbeat let the lock go
    child_id = wf.Workspace(workspace).run_info(run.run_id)["children"][0]
    assert wf.Workspace(workspace).run_info(child_id)["created_at"] >= held["wall"]  # made while the lock was held


def test_a_gate_two_sub_workflows_down_is_the_top_runs_and_its_runs_are_listed_parents_first(
    workspace: Path,
) -> None:
    """A gate in a grandchild halts the top run, whose tickets() finds it; the store lists the runs
    below a run in one query, parents before their children, each once."""
    middle = wf.Workflow("middle")

    @middle.step
    def prep(state: Any) -> dict[str, Any]:
        return {"amt": 7}

    middle.subflow(_gated_child(), name="pay", inputs={"amount": "amt"}, outputs={"paid": "refunded"})
    middle.chain("prep", "pay")
    top = wf.Workflow("top")
    top.subflow(middle, name="inner", outputs={"paid": "paid"})
    run = top.run({}, workspace=workspace, policy="halt")
    assert "waiting_approval" == run.status
    (ticket,) = run.tickets()
    assert ("gated-child", "refund") == (ticket.workflow, ticket.step)
    ws = wf.Workspace(workspace)
    (middle_id,) = ws.run_info(run.run_id)["children"]
    assert [ticket.run_id] == ws.run_info(middle_id)["children"]
    assert [run.run_id, middle_id, ticket.run_id] == ws.store.descendant_runs(run.run_id)
    assert [ticket.run_id] == ws.store.descendant_runs(ticket.run_id)
    run.approve(by="ann", comment="fine")
    run.wait()
    assert ("succeeded", {"paid": 7}) == (run.status, run.state)


def test_a_workflow_given_to_step_or_map_says_what_runs_it() -> None:
    """`flow.step(child)` and `flow.map(child, over=..., into=...)` said "a step must be a function,
    got <Workflow 'child'...>": the first names the flow.subflow call to make (with the child's
    inputs); the second says a map step runs no sub-workflow per item and shows the item function
    that runs one (whose runs are not stored or resumed with the parent), which works as shown."""
    child = wf.Workflow("child", inputs=["q"])
    child.step(lambda s: {"a": s["q"].upper()}, name="answer")
    parent = wf.Workflow("parent")
    with pytest.raises(TypeError) as as_step:
        parent.step(child)
    assert str(as_step.value) == (
        "flow.step takes a function, got the workflow 'child': to run it as a step, "
        "flow.subflow(child, name='child', inputs={'q': ...}, outputs={...: ...})"
    )
    with pytest.raises(TypeError) as as_map:
        parent.map(child, over="qs", into="answers", name="each")
    said = str(as_map.value)
    assert said.startswith("flow.map runs a function per item, got the workflow 'child': a map step cannot run")
    assert "async def each(item): run = await child.arun({...}, workspace=False); return run.state[...]" in said
    assert not parent.steps  # nothing was added

    parent.step(lambda s: {"qs": ["x", "y"]}, name="plan", writes=["qs"])

    @parent.map(over="qs", into="answers")
    async def each(item: str) -> str:
        run = await child.arun({"q": item}, workspace=False)
        return str(run.state["a"])

    parent.chain("plan", "each")
    assert ["X", "Y"] == parent.run({}, workspace=False).state["answers"]
