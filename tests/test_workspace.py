"""The workspace: where it is, listing runs, deciding approval tickets (also from another process),
exporting decisions for headless replay, and reconciling irreversible steps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.store._workspace import DB_NAME, Workspace, open_store, workspace_path

REPO = Path(__file__).parent.parent


def _refunds() -> wf.Workflow:
    """draft -> pay, where paying needs a human's approval."""
    flow = wf.Workflow("refunds")

    @flow.step
    def draft(state: Any) -> dict[str, Any]:
        return {"amount": state["amount"], "drafted": True}

    @flow.step(approval="Refunds need a human")
    def pay(state: Any) -> dict[str, Any]:
        return {"paid": True}

    flow.chain("draft", "pay")
    return flow


def _ok() -> wf.Workflow:
    flow = wf.Workflow("ok")
    flow.step(lambda s: {"a": 1}, name="a")
    flow.step(lambda s: {"b": 2}, name="b")
    flow.chain("a", "b")
    return flow


def _broken() -> wf.Workflow:
    flow = wf.Workflow("broken")
    flow.step(lambda s: {"a": 1}, name="a")

    @flow.step
    def b(state: Any) -> None:
        raise PermissionError("no access")

    flow.chain("a", "b")
    return flow


def _halted(flow: wf.Workflow | None = None, amount: int = 40) -> tuple[wf.Workflow, wf.Run, wf.Ticket]:
    """A refunds run halted at its gate, and its one open ticket."""
    flow = flow or _refunds()
    run = flow.run({"amount": amount})
    assert "waiting_approval" == run.status
    (ticket,) = Workspace().pending()
    return flow, run, ticket


# ---- where the workspace is ------------------------------------------------------------------------


def test_workspace_path_argument_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit path beats $WFKIT_HOME."""
    monkeypatch.setenv("WFKIT_HOME", str(tmp_path / "env"))
    assert tmp_path / "arg" == workspace_path(tmp_path / "arg")


def test_a_relative_workspace_path_follows_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative path names a folder under the current one each time (absolute ones are resolved once)."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    monkeypatch.chdir(tmp_path / "one")
    first = workspace_path("ws")
    monkeypatch.chdir(tmp_path / "two")
    assert (tmp_path / "one" / "ws", tmp_path / "two" / "ws") == (first, workspace_path("ws"))
    assert workspace_path(str(tmp_path / "abs")) is workspace_path(str(tmp_path / "abs"))
    assert tmp_path / "abs" == workspace_path(str(tmp_path / "abs"))


def test_the_default_workspace_follows_the_current_folder_and_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolved folders are remembered (every durable run asks), but never across a change of the
    current folder, of $WFKIT_HOME or of $HOME."""
    for sub in ("one", "two", "h1", "h2"):
        (tmp_path / sub).mkdir()
    monkeypatch.delenv("WFKIT_HOME", raising=False)
    monkeypatch.chdir(tmp_path / "one")
    assert (tmp_path / "one" / ".wfkit", tmp_path / "one" / ".wfkit") == (workspace_path(), workspace_path())
    monkeypatch.chdir(tmp_path / "two")
    assert tmp_path / "two" / ".wfkit" == workspace_path()
    monkeypatch.setenv("WFKIT_HOME", "runs")
    assert tmp_path / "two" / "runs" == workspace_path()
    monkeypatch.setenv("WFKIT_HOME", "~/runs")
    monkeypatch.setenv("HOME", str(tmp_path / "h1"))
    assert tmp_path / "h1" / "runs" == workspace_path()
    monkeypatch.setenv("HOME", str(tmp_path / "h2"))
    assert (tmp_path / "h2" / "runs", tmp_path / "h2" / "runs") == (workspace_path(), workspace_path(Path("~/runs")))


def test_workspace_path_uses_environment_without_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument, $WFKIT_HOME is the workspace."""
    monkeypatch.setenv("WFKIT_HOME", str(tmp_path / "env"))
    assert tmp_path / "env" == workspace_path()


def test_workspace_path_defaults_to_dot_wfkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument or $WFKIT_HOME, the workspace is ./.wfkit in the current folder."""
    monkeypatch.delenv("WFKIT_HOME")
    monkeypatch.chdir(tmp_path)
    assert Path.cwd() / ".wfkit" == workspace_path()


def test_empty_environment_value_falls_back_to_dot_wfkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty $WFKIT_HOME counts as unset."""
    monkeypatch.setenv("WFKIT_HOME", "")
    monkeypatch.chdir(tmp_path)
    assert Path.cwd() / ".wfkit" == workspace_path()


def test_relative_workspace_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative path is resolved against the current folder when chosen, not later."""
    monkeypatch.chdir(tmp_path)
    chosen = workspace_path("runs")
    assert chosen.is_absolute()
    assert Path.cwd() / "runs" == chosen


def test_workspace_path_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path starting with ~ is expanded to the user's home folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tmp_path / "runs" == workspace_path("~/runs")


def test_workspace_object_follows_the_same_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workspace(create=True) opens ./.wfkit when nothing else is set, and creates its store there."""
    monkeypatch.delenv("WFKIT_HOME")
    monkeypatch.chdir(tmp_path)
    ws = Workspace(create=True)
    assert Path.cwd() / ".wfkit" == ws.path
    assert (Path.cwd() / ".wfkit" / DB_NAME).is_file()
    assert f"<Workspace {ws.path}>" == repr(ws)


def test_workspace_on_a_corrupt_store_raises_and_keeps_the_file(workspace: Path) -> None:
    """Workspace() over a 0-byte store raises StoreCorruptError and does not replace the file."""
    workspace.mkdir(parents=True)
    (workspace / DB_NAME).write_bytes(b"")
    with pytest.raises(wf.StoreCorruptError, match="Move it aside"):
        Workspace()
    assert 0 == (workspace / DB_NAME).stat().st_size


def test_open_store_synchronous_comes_from_the_environment(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_store uses $WFKIT_SYNCHRONOUS when not told, and an explicit level wins over it."""
    monkeypatch.setenv("WFKIT_SYNCHRONOUS", "full")
    assert 2 == open_store().conn.execute("PRAGMA synchronous").fetchone()[0]
    assert 1 == open_store(synchronous="normal").conn.execute("PRAGMA synchronous").fetchone()[0]


def test_a_scratch_workspace_store_is_normal_until_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scratch folder gets a synchronous=normal store despite $WFKIT_SYNCHRONOUS=full; forgotten, full again."""
    from wfkit.store._workspace import forget_store, mark_scratch

    monkeypatch.setenv("WFKIT_SYNCHRONOUS", "full")
    scratch = tmp_path / "scratch"
    mark_scratch(scratch)
    assert 1 == open_store(scratch).conn.execute("PRAGMA synchronous").fetchone()[0]
    assert 2 == open_store(scratch, synchronous="full").conn.execute("PRAGMA synchronous").fetchone()[0]
    forget_store(scratch)
    assert 2 == open_store(scratch).conn.execute("PRAGMA synchronous").fetchone()[0]
    forget_store(scratch)


# ---- runs ---------------------------------------------------------------------------------------------


@pytest.fixture
def three_runs() -> Workspace:
    """r1 succeeded (2 steps), r2 waits for approval (1 step), r3 failed (1 step), created in that order."""
    _ok().run({}, run_id="r1")
    _refunds().run({"amount": 5}, run_id="r2")
    _broken().run({}, run_id="r3", raise_on_error=False)
    return Workspace()


def test_runs_are_listed_newest_first(three_runs: Workspace) -> None:
    """Workspace.runs lists runs newest first with their workflow and status."""
    listed = [(r["run_id"], r["workflow"], r["status"]) for r in three_runs.runs()]
    assert [("r3", "broken", "failed"), ("r2", "refunds", "waiting_approval"), ("r1", "ok", "succeeded")] == listed


def test_runs_count_completed_steps(three_runs: Workspace) -> None:
    """steps_done counts the steps that completed (not failed attempts)."""
    assert {"r1": 2, "r2": 1, "r3": 1} == {r["run_id"]: r["steps_done"] for r in three_runs.runs()}


def test_runs_carry_the_error_of_failed_runs(three_runs: Workspace) -> None:
    """A failed run's row has its error type and message; other rows have none."""
    errors = {r["run_id"]: r["error_type"] for r in three_runs.runs()}
    assert {"r1": None, "r2": None, "r3": "StepFailedError"} == errors
    (failed,) = three_runs.runs(status="failed")
    assert "no access" in failed["error"]


def test_runs_filter_by_status(three_runs: Workspace) -> None:
    """status=... keeps only runs in that status; an unused status gives none."""
    assert ["r2"] == [r["run_id"] for r in three_runs.runs(status="waiting_approval")]
    assert ["r1"] == [r["run_id"] for r in three_runs.runs(status="succeeded")]
    assert [] == three_runs.runs(status="cancelled")


def test_runs_limit_keeps_the_newest(three_runs: Workspace) -> None:
    """limit=N keeps the N newest runs."""
    assert ["r3", "r2"] == [r["run_id"] for r in three_runs.runs(limit=2)]


def test_runs_of_a_new_workspace_is_empty() -> None:
    """A new workspace lists no runs."""
    assert [] == Workspace(create=True).runs()


def test_a_missing_workspace_is_an_error_and_is_not_created(workspace: Path) -> None:
    """Workspace() on a folder with no workspace raises WorkspaceNotFoundError naming it, and creates nothing."""
    with pytest.raises(wf.WorkspaceNotFoundError, match=f"no workspace at {re.escape(str(workspace))}.*flow.run"):
        Workspace()
    assert not workspace.exists()


def test_a_workspace_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    """A workspace path that is a file is refused saying it must be a folder."""
    path = tmp_path / "afile"
    path.write_text("x")
    with pytest.raises(wf.WorkspaceNotFoundError, match="is a file, not a folder"):
        Workspace(path, create=True)


def test_run_info_decodes_inputs_state_steps_intents_and_tickets() -> None:
    """run_info has the run's inputs and state as dicts, its steps, intents and ticket ids."""
    flow = wf.Workflow("payout")
    flow.step(lambda s: {"amount": s["amount"] * 2}, name="prepare")

    @flow.step(approval="Money leaves the company", irreversible=True)
    def pay(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"paid": ctx.idempotency_key}

    flow.chain("prepare", "pay")
    run = flow.run({"amount": 21}, run_id="p1", policy="approve")
    info = Workspace().run_info("p1")
    assert ("p1", "payout", "succeeded") == (info["run_id"], info["workflow"], info["status"])
    assert {"amount": 21} == info["inputs"]
    assert {"amount": 42, "paid": "p1:pay:1"} == info["state"] == run.state
    assert [("prepare", 1, "ok"), ("pay", 1, "ok")] == [(s["step"], s["visit"], s["outcome"]) for s in info["steps"]]
    assert [("pay", 1, "p1:pay:1", "done")] == [(i["step"], i["visit"], i["key"], i["status"]) for i in info["intents"]]
    assert [] == run.tickets()
    assert 1 == len(info["tickets"])
    assert "approved" == Workspace().ticket(info["tickets"][0]).status
    assert info["lease"] is None
    assert "definition" not in info
    assert not any(key.startswith("lease_") for key in info)


def test_run_info_of_an_unknown_run_is_a_key_error() -> None:
    """run_info of an id the workspace does not hold raises KeyError."""
    with pytest.raises(KeyError, match="no run 'nope'"):
        Workspace(create=True).run_info("nope")


# ---- approvals ---------------------------------------------------------------------------------------


def test_gated_run_halts_with_one_open_ticket() -> None:
    """A gated step under the default policy halts the run with one open ticket showing the state."""
    _, run, ticket = _halted(amount=40)
    assert (run.run_id, "refunds", "pay", 1) == (ticket.run_id, ticket.workflow, ticket.step, ticket.visit)
    assert "Refunds need a human" == ticket.reason
    assert {"amount": 40, "drafted": True} == ticket.payload
    assert ("open", None, None) == (ticket.status, ticket.decided_by, ticket.decided_at)
    assert "waiting_approval" == Workspace().run_info(run.run_id)["status"]


def test_halted_run_journals_a_waiting_event() -> None:
    """Halting at a gate journals one waiting_approval event pointing at the ticket."""
    _, run, ticket = _halted()
    waiting = [e for e in Workspace().events(run.run_id) if e.status == "waiting_approval"]
    assert [("pay", {"ticket": ticket.ticket_id, "reason": "Refunds need a human"})] == [
        (e.step, e.extra) for e in waiting
    ]


def test_approval_from_a_second_workspace_then_resume_finishes() -> None:
    """A ticket approved through another Workspace object lets Workflow.resume finish the run."""
    flow, run, ticket = _halted()
    other = Workspace(os.environ["WFKIT_HOME"])
    approved = other.approve(ticket.ticket_id, by="ana", comment="fine")
    assert ("approved", "ana", "fine") == (approved.status, approved.decided_by, approved.comment)
    assert [] == Workspace().pending()
    done = flow.resume(run.run_id)
    assert "succeeded" == done.status
    assert {"amount": 40, "drafted": True, "paid": True} == done.state
    assert "succeeded" == Workspace().run_info(run.run_id)["status"]
    decisions = [(e.step, e.status, e.approver, e.decision_comment) for e in Workspace().events(run.run_id)]
    assert ("pay", "approved", "ana", "fine") in decisions
    assert ("pay", "ok") == (decisions[-1][0], decisions[-1][1])


def test_approval_from_another_process_then_resume_finishes(workspace: Path) -> None:
    """A ticket approved by a separate Python process (its own SQLite connection) lets resume finish."""
    flow, run, ticket = _halted()
    code = (
        "import sys; from wfkit import Workspace; print(Workspace(sys.argv[1]).approve(sys.argv[2], by='ops').status)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run(
        [sys.executable, "-c", code, str(workspace), ticket.ticket_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == child.returncode, child.stderr
    assert "approved" == child.stdout.strip()
    assert "succeeded" == flow.resume(run.run_id).status


def test_same_decision_twice_is_a_no_op() -> None:
    """Deciding a ticket the same way again returns changed=False and journals nothing more."""
    _, run, ticket = _halted()
    ws = Workspace()
    first, changed = ws.decide(ticket.ticket_id, "approve", by="ana")
    again, changed_again = ws.decide(ticket.ticket_id, "approve", by="bob", comment="late")
    assert (True, False) == (changed, changed_again)
    assert first == again
    assert "ana" == again.decided_by
    assert 1 == sum(e.status == "approved" for e in ws.events(run.run_id))


def test_approve_twice_returns_the_same_ticket() -> None:
    """Workspace.approve on an approved ticket returns it unchanged, and says it was decided."""
    _, _, ticket = _halted()
    ws = Workspace()
    first = ws.approve(ticket.ticket_id, by="ana")
    with pytest.warns(wf.AlreadyDecidedWarning, match="already approved by ana at "):
        assert first == ws.approve(ticket.ticket_id, by="ana")


def test_reject_after_approve_is_refused() -> None:
    """A conflicting reject after an approval raises TicketError saying it was already approved."""
    _, _, ticket = _halted()
    ws = Workspace()
    ws.approve(ticket.ticket_id, by="ana")
    with pytest.raises(wf.TicketError, match=f"ticket {ticket.ticket_id} was already approved by ana"):
        ws.reject(ticket.ticket_id, by="bob")
    assert "approved" == ws.ticket(ticket.ticket_id).status


def test_approve_after_reject_is_refused() -> None:
    """A conflicting approve after a rejection raises TicketError saying it was already rejected."""
    _, _, ticket = _halted()
    ws = Workspace()
    ws.reject(ticket.ticket_id, by="bob", comment="too much")
    with pytest.raises(wf.TicketError, match=r"already rejected by bob.*cannot be reversed"):
        ws.approve(ticket.ticket_id, by="ana")


def test_unknown_ticket_is_refused() -> None:
    """Deciding or reading a ticket id that does not exist raises TicketError pointing at `wfkit pending`."""
    ws = Workspace(create=True)
    with pytest.raises(wf.TicketError, match=r"no approval ticket 'nope'.*wfkit pending"):
        ws.approve("nope", by="ana")
    with pytest.raises(wf.TicketError, match="no approval ticket 'nope'"):
        ws.ticket("nope")


@pytest.mark.parametrize("by", ["", "   "])
def test_decision_needs_a_reviewer_name(by: str) -> None:
    """A decision with an empty reviewer name raises TicketError and leaves the ticket open."""
    _, _, ticket = _halted()
    ws = Workspace()
    with pytest.raises(wf.TicketError, match=r"reviewer's name \(by=...\)"):
        ws.approve(ticket.ticket_id, by=by)
    assert ws.ticket(ticket.ticket_id).is_open


def test_decision_must_be_approve_or_reject() -> None:
    """A decision other than 'approve' or 'reject' raises TicketError."""
    _, _, ticket = _halted()
    with pytest.raises(wf.TicketError, match="'approve' or 'reject', got 'maybe'"):
        Workspace().decide(ticket.ticket_id, "maybe", by="ana")  # type: ignore[arg-type]


def test_pending_lists_open_tickets_oldest_first() -> None:
    """pending() lists open tickets of every run, oldest first, and drops decided ones."""
    flow = _refunds()
    first = flow.run({"amount": 1}, run_id="first")
    second = flow.run({"amount": 2}, run_id="second")
    ws = Workspace()
    assert [first.run_id, second.run_id] == [t.run_id for t in ws.pending()]
    ws.reject(ws.pending()[0].ticket_id, by="ana")
    assert [second.run_id] == [t.run_id for t in ws.pending()]


# ---- exporting decisions -------------------------------------------------------------------------------


def test_export_decisions_writes_jsonl(tmp_path: Path) -> None:
    """export_decisions writes one JSON line per decided ticket with workflow, step, visit, reviewer and run."""
    _, run, ticket = _halted()
    _refunds().run({"amount": 99})  # a second run whose ticket stays open: not exported
    Workspace().approve(ticket.ticket_id, by="ana", comment="fine")
    path = tmp_path / "decisions.jsonl"
    assert 1 == Workspace().export_decisions(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    expected = {"workflow": "refunds", "step": "pay", "visit": 1, "decision": "approve", "by": "ana", "comment": "fine"}
    assert [{**expected, "run_id": run.run_id}] == rows


def test_export_of_runs_that_decided_a_gate_differently_is_refused(tmp_path: Path) -> None:
    """Two runs that approved and rejected one gate visit: the export raises TicketError naming the
    gate, each side's runs and run_ids=, and writes nothing (an older file stays as it was)."""
    flow = _refunds()
    for run_id in ("yes-1", "no-1", "yes-2"):
        flow.run({"amount": 5}, run_id=run_id)
    ws = Workspace()
    for t in ws.pending():
        ws.decide(t.ticket_id, "reject" if t.run_id == "no-1" else "approve", by="ana")
    path = tmp_path / "decisions.jsonl"
    path.write_text("kept\n")
    with pytest.raises(wf.TicketError) as caught:
        ws.export_decisions(path)
    message = str(caught.value)
    assert "workflow 'refunds' step 'pay' visit 1: approved in runs yes-1, yes-2; rejected in run no-1" in message
    assert "export_decisions(path, run_ids=[...])" in message
    assert "kept\n" == path.read_text()
    assert 2 == ws.export_decisions(path, run_ids=["yes-1", "yes-2"])
    assert [("yes-1", "approve"), ("yes-2", "approve")] == [
        (row["run_id"], row["decision"]) for row in map(json.loads, path.read_text().splitlines())
    ]


def test_runs_that_agree_export_and_replay(tmp_path: Path) -> None:
    """Runs that made the same decision at a gate export one line each, and the file replays headless."""
    flow = _refunds()
    for run_id in ("a", "b"):
        flow.run({"amount": 5}, run_id=run_id)
    ws = Workspace()
    for t in ws.pending():
        ws.approve(t.ticket_id, by=f"reviewer-{t.run_id}")
    path = tmp_path / "decisions.jsonl"
    assert 2 == ws.export_decisions(path)
    replay = flow.run({"amount": 7}, policy=wf.DecisionsFile(path))
    assert "succeeded" == replay.status
    assert ["reviewer-a"] == [e.approver for e in ws.events(replay.run_id) if e.status == "approved"]


def test_export_decisions_filters_by_run(tmp_path: Path) -> None:
    """run_ids=[...] exports only those runs' decisions."""
    flow = _refunds()
    flow.run({"amount": 1}, run_id="keep")
    flow.run({"amount": 2}, run_id="drop")
    ws = Workspace()
    for t in ws.pending():
        ws.reject(t.ticket_id, by="ana")
    path = tmp_path / "decisions.jsonl"
    assert 1 == ws.export_decisions(path, run_ids=["keep"])
    assert ["reject"] == [json.loads(line)["decision"] for line in path.read_text().splitlines()]


def test_exported_decisions_read_back_as_a_policy(tmp_path: Path) -> None:
    """DecisionsFile reads an export back: the recorded reviewer's verdict for that step."""
    _, _, ticket = _halted()
    Workspace().approve(ticket.ticket_id, by="ana", comment="fine")
    path = tmp_path / "decisions.jsonl"
    Workspace().export_decisions(path)
    verdict = wf.DecisionsFile(path).decide(Workspace().ticket(ticket.ticket_id))
    assert verdict is not None
    assert ("approve", "ana", "fine") == (verdict.decision, verdict.by, verdict.comment)


def test_exported_decisions_let_a_fresh_run_pass_headless(tmp_path: Path) -> None:
    """A fresh run with policy=<export> passes the gate at once, journaling the recorded reviewer."""
    flow, _, ticket = _halted()
    Workspace().approve(ticket.ticket_id, by="ana", comment="fine")
    path = tmp_path / "decisions.jsonl"
    Workspace().export_decisions(path)
    replay = flow.run({"amount": 70}, policy=str(path))
    assert "succeeded" == replay.status
    assert {"amount": 70, "drafted": True, "paid": True} == replay.state
    journal = [(e.step, e.status, e.approver, e.decision_comment) for e in Workspace().events(replay.run_id)]
    assert [
        ("draft", "ok", None, None),
        ("pay", "waiting_approval", None, None),
        ("pay", "approved", "ana", "fine"),
        ("pay", "ok", None, None),
    ] == journal
    assert [] == Workspace().pending()


def test_exported_reject_then_approve_replays_the_same_path(tmp_path: Path) -> None:
    """Decisions per visit (reject, then approve after revising) replay headless along the same path."""
    flow = wf.Workflow("essay")
    flow.step(lambda s: {"version": 1}, name="draft")

    @flow.step(max_visits=3)
    def revise(state: Any) -> dict[str, Any]:
        return {"version": state["version"] + 1}

    @flow.step(approval=wf.Approval("Publish?", on_reject="revise"))
    def publish(state: Any) -> dict[str, Any]:
        return {"published": state["version"]}

    flow.chain("draft", "publish")
    flow.route("revise", default=wf.go("publish"))
    run = flow.run({})
    ws = Workspace()
    ws.reject(ws.pending()[0].ticket_id, by="ed", comment="shorter")
    flow.resume(run.run_id)
    ws.approve(ws.pending()[0].ticket_id, by="ed")
    assert {"version": 2, "published": 2} == flow.resume(run.run_id).state
    path = tmp_path / "decisions.jsonl"
    assert 2 == ws.export_decisions(path)
    replay = flow.run({}, policy=wf.DecisionsFile(path))
    assert {"version": 2, "published": 2} == replay.state
    assert ["draft", "revise", "publish"] == replay.path()


# ---- reconciling irreversible steps ---------------------------------------------------------------------


def _payout() -> wf.Workflow:
    """prepare -> send, where send is gated and irreversible."""
    flow = wf.Workflow("payout")
    flow.step(lambda s: {"ready": True}, name="prepare")

    @flow.step(approval="Send money?", irreversible=True)
    def send(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"sent": ctx.idempotency_key}

    flow.chain("prepare", "send")
    return flow


def test_reconcile_unknown_step_is_refused() -> None:
    """Reconciling a step the run has no intent for raises TicketError pointing at `wfkit show`."""
    _payout().run({}, run_id="p1", policy="approve")
    with pytest.raises(wf.TicketError, match=r"run p1 has no irreversible step 'nope' waiting.*wfkit show p1"):
        Workspace().reconcile("p1", "nope", action="done", by="ops")


def test_reconcile_settled_step_is_refused() -> None:
    """Reconciling an irreversible step that completed (no pending intent) raises TicketError."""
    _payout().run({}, run_id="p1", policy="approve")
    with pytest.raises(wf.TicketError, match="no irreversible step 'send' waiting for reconciliation"):
        Workspace().reconcile("p1", "send", action="retry", by="ops")
    assert ["done"] == [i["status"] for i in Workspace().run_info("p1")["intents"]]


def test_reconcile_unknown_run_is_refused() -> None:
    """Reconciling a run id the workspace does not hold says there is no such run."""
    with pytest.raises(KeyError, match="no run 'ghost'"):
        Workspace(create=True).reconcile("ghost", "send", action="done", by="ops")


def test_reconcile_action_must_be_done_or_retry() -> None:
    """An action other than 'done' or 'retry' raises ValueError."""
    with pytest.raises(ValueError, match="action is 'done' or 'retry', got 'skip'"):
        Workspace(create=True).reconcile("p1", "send", action="skip", by="ops")  # type: ignore[arg-type]


@pytest.mark.parametrize("by", ["", "  "])
def test_reconcile_needs_the_checkers_name(by: str) -> None:
    """Reconciling with an empty `by` raises ValueError asking who checked."""
    with pytest.raises(ValueError, match=r"name of the person who checked \(by=...\)"):
        Workspace(create=True).reconcile("p1", "send", action="done", by=by)


def _cut_off_send() -> wf.Workflow:
    """A payout run whose send step's intent is committed with no result, as after a crash mid-step."""
    flow = _payout()
    run = flow.run({}, run_id="p1")
    ws = Workspace()
    ws.approve(ws.pending()[0].ticket_id, by="ana", resume=False)
    ws.store.intent(run.run_id, "send", 1, "p1:send:1")  # the process died right after this commit
    return flow


def test_reconcile_done_counts_the_step_as_completed() -> None:
    """reconcile(action='done') records the step's result and resume finishes without running it."""
    flow = _cut_off_send()
    settled = Workspace().reconcile("p1", "send", action="done", by="ops", updates={"sent": "by hand"})
    assert ("send", 1, "reconciled_done", "ops") == (
        settled["step"],
        settled["visit"],
        settled["status"],
        settled["resolved_by"],
    )
    done = flow.resume("p1")
    assert "succeeded" == done.status
    assert {"ready": True, "sent": "by hand"} == done.state
    # The run's events cover the whole run: the reconciliation row is there, and no executed send.
    sends = [e for e in done.events if e.step == "send" and e.status == "ok"]
    assert [{"reconciled": "done", "by": "ops"}] == [e.extra for e in sends]


def test_reconcile_retry_lets_resume_run_the_step_again() -> None:
    """reconcile(action='retry') lets resume run the step, with the same idempotency key."""
    flow = _cut_off_send()
    Workspace().reconcile("p1", "send", action="retry", by="ops")
    assert {"ready": True, "sent": "p1:send:1"} == flow.resume("p1").state
