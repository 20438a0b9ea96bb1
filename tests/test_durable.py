"""Durable runs across real process deaths: SIGKILL at every step boundary and inside steps,
resume, at-most-once side effects, leases, many processes on one workspace."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.store._workspace import Workspace, open_store

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from crashflow import STEPS  # noqa: E402


def _child(workspace: Path, logs: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full", "PYTHONPATH": str(HERE.parent)}
    args = [sys.executable, str(HERE / "crashflow.py"), str(workspace), str(logs)]
    return subprocess.run(args + ([crash_at] if crash_at else []), env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The final state of a crash-free run."""
    root = tmp_path_factory.mktemp("baseline")
    logs = root / "logs"
    logs.mkdir()
    done = _child(root / "ws", logs)
    assert 0 == done.returncode, done.stderr
    result = json.loads((logs / "result.json").read_text())
    assert "succeeded" == result["status"]
    return dict(result["state"])


@pytest.mark.parametrize("crash_at", [f"{s}:{p}" for s in STEPS for p in ("start", "middle")])
def test_sigkill_then_resume_runs_each_step_once(crash_at: str, tmp_path: Path, baseline: dict[str, Any]) -> None:
    """After kill -9 anywhere, resume completes the run with every step done once and one email."""
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    logs.mkdir()
    first = _child(ws, logs, crash_at)
    assert -signal.SIGKILL == first.returncode, first.stderr
    assert not (logs / "result.json").exists()

    second = _child(ws, logs)
    assert 0 == second.returncode, second.stderr
    status = json.loads((logs / "result.json").read_text())["status"]
    crashed_step, phase = crash_at.split(":")
    if crashed_step == "email":
        # Died between the intent and the result: never re-sent by itself; a person decides.
        assert "needs_reconciliation" == status
        outbox = logs / "outbox.txt"
        sent = len(outbox.read_text().splitlines()) if outbox.exists() else 0
        assert (0 if phase == "start" else 1) == sent
        if sent:
            Workspace(ws).reconcile(
                "crash-run", "email", action="done", by="ops", updates={"trail": "email", "emailed": True}
            )
        else:
            Workspace(ws).reconcile("crash-run", "email", action="retry", by="ops")
        third = _child(ws, logs)
        assert 0 == third.returncode, third.stderr
        status = json.loads((logs / "result.json").read_text())["status"]
        # The attempt the crash cut off is in the step log, crashed (once, though the run was
        # resumed twice), and the attempt after a "retry" is numbered after it.
        rows = [(e.attempt, e.status, e.error_type) for e in Workspace(ws).events("crash-run") if e.step == "email"]
        crashed = (1, "retry", "ProcessCrashedError")
        assert ([crashed, (0, "ok", None)] if sent else [crashed, (0, "skipped", None), (2, "ok", None)]) == rows
        assert math.isnan(next(e for e in Workspace(ws).events("crash-run") if e.step == "email").latency_s)
        # ... and the step log does not read the run as failed, nor the crash as a step giving up.
        log = wf.steps(ws)
        run = log.wf.runs().loc["crash-run"]
        assert (False, 0) == (bool(run["run_failed"]), int(run["failed"]))
        assert 1 == int(log.wf.failures().loc[("crashflow", "email"), "unknown"])

    assert "succeeded" == status
    assert baseline == json.loads((logs / "result.json").read_text())["state"]
    lines = (logs / "ran.log").read_text().split()
    # Steps in flight at the kill start again. `left` starts first and is fast: it dies at its
    # start before `right` begins; it has committed by the time `right` dies in its middle.
    in_flight = {crashed_step} - ({"email"} if phase == "middle" else set())
    if crash_at in ("left:middle", "right:start"):
        in_flight |= {"left", "right"}
    for step in STEPS:
        reconciled_by_hand = step == "email" and phase == "middle" and crashed_step == "email"
        assert (0 if reconciled_by_hand else 1) == lines.count(f"done:{step}"), (step, lines)
        assert (2 if step in in_flight else 1) == lines.count(f"start:{step}"), (step, lines)
    assert 1 == len((logs / "outbox.txt").read_text().splitlines())
    keys = {line.split("key=")[1] for line in (logs / "outbox.txt").read_text().splitlines()}
    assert {"crash-run:email:1"} == keys


@pytest.mark.parametrize("crash_at", ["c:middle", "right:middle"])
def test_a_run_resumed_after_a_crash_lasts_the_time_it_ran_not_its_downtime(crash_at: str, tmp_path: Path) -> None:
    """runs() (df.wf and StepLog alike) gives a run killed with SIGKILL and resumed later the time
    it ran as ``duration_s``, without the time it lay dead between the kill and the resume;
    ``span_s`` is its wall-clock span, start to end, downtime included."""
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    logs.mkdir()
    assert -signal.SIGKILL == _child(ws, logs, crash_at).returncode
    down = 2.0
    time.sleep(down)  # the process is dead: nothing of the run runs
    second = _child(ws, logs)
    assert 0 == second.returncode, second.stderr
    for runs in (wf.steps(ws).wf.runs(), wf.StepLog(ws).runs()):
        run = runs.loc["crash-run"]
        assert pytest.approx((run["end"] - run["start"]).total_seconds()) == run["span_s"]
        assert run["span_s"] - run["duration_s"] >= down
        assert 0 < run["duration_s"]
    assert wf.steps(ws).wf.run_latency().loc["crashflow", "max"] == wf.steps(ws).wf.runs()["duration_s"].max()


def _steps_flow(calls: list[str] | None = None) -> wf.Workflow:
    flow = wf.Workflow("resumable", merge={"trail": wf.append})

    @flow.step
    def one(state: Any) -> dict[str, Any]:
        if calls is not None:
            calls.append("one")
        return {"trail": "one"}

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0))
    def two(state: Any) -> dict[str, Any]:
        if calls is not None:
            calls.append("two")
        if state.get("break_two", True) and not os.environ.get("FIXED"):
            raise ConnectionError("backend down")
        return {"trail": "two"}

    @flow.step
    def three(state: Any) -> dict[str, Any]:
        return {"trail": "three"}

    flow.chain("one", "two", "three")
    return flow


@pytest.mark.parametrize("first", ["resume", "reconcile"])
def test_the_crash_message_of_an_irreversible_step_names_its_workspace(
    tmp_path: Path, workspace: Path, first: str
) -> None:
    """Killed in its irreversible step, a run in a workspace other than the default one logs a
    crashed attempt whose command is `wfkit reconcile RUN STEP --workspace DIR ...`, whether a
    resume or the reconciliation journals it: copied into a shell, it finds the run."""
    ws, logs = tmp_path / "notebook folder" / ".wfkit", tmp_path / "logs"
    logs.mkdir()
    assert -signal.SIGKILL == _child(ws, logs, "email:middle").returncode
    if first == "resume":
        assert 0 == _child(ws, logs).returncode
        assert "needs_reconciliation" == json.loads((logs / "result.json").read_text())["status"]
    else:
        Workspace(ws).reconcile("crash-run", "email", action="retry", by="ops")
    [crashed] = [e for e in Workspace(ws).events("crash-run") if e.error_type == "ProcessCrashedError"]
    command = f"`wfkit reconcile crash-run email --workspace '{ws}' --done|--retry --by NAME`"
    assert command in crashed.error_message


def test_a_pending_intent_reads_as_pending_once_its_crashed_attempt_is_journaled(tmp_path: Path) -> None:
    """Killed in its irreversible step: the store's one read of the step's intent gives the
    attempt the crash cut off; after a resume journaled it (and halted for a person), the same
    read still says the intent is pending, with no attempt left to journal, so a second resume
    halts again, never sending a second email, and journals no second crash."""
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    logs.mkdir()
    assert -signal.SIGKILL == _child(ws, logs, "email:middle").returncode
    store = Workspace(ws).store
    cut = store.intent_cut_off("crash-run", "email", 1)
    assert cut is not None
    assert (1, False) == (cut.attempt, cut.waits_to_retry)
    for _ in range(2):
        assert 0 == _child(ws, logs).returncode
        assert "needs_reconciliation" == json.loads((logs / "result.json").read_text())["status"]
        after = store.intent_cut_off("crash-run", "email", 1)
        assert after is not None
        assert (0, False) == (after.attempt, after.waits_to_retry)
    assert 1 == len((logs / "outbox.txt").read_text().splitlines())
    crashed = [e for e in Workspace(ws).events("crash-run") if e.error_type == "ProcessCrashedError"]
    assert [1] == [e.attempt for e in crashed]


def test_reconciling_a_run_this_process_is_running_is_refused() -> None:
    """Workspace.reconcile of a run this very process executes (a notebook's run, its irreversible
    step in its body) is refused naming this process; the run then ends as if never asked."""
    started, release = threading.Event(), threading.Event()
    flow = wf.Workflow("live-here")

    @flow.step(irreversible=True)
    def send(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        started.set()
        release.wait(30)
        return {"sent": ctx.idempotency_key}

    run = flow.start({})
    try:
        assert started.wait(30)
        with pytest.raises(wf.LeaseError, match=f"it is running in process {os.getpid()} on"):
            Workspace().reconcile(run.run_id, "send", action="done", by="ops")
    finally:
        release.set()
    assert "succeeded" == run.wait(30).status
    assert ["done"] == [i["status"] for i in Workspace().store.intents(run.run_id)]
    assert [(1, "ok")] == [(e.attempt, e.status) for e in Workspace().events(run.run_id)]


def test_failed_run_resumes_from_failed_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose retries ran out resumes at that step; completed steps do not run again."""
    calls: list[str] = []
    flow = _steps_flow(calls)
    run = flow.run({}, raise_on_error=False)
    assert "failed" == run.status
    assert ["one", "two", "two"] == calls
    monkeypatch.setenv("FIXED", "1")
    resumed = flow.resume(run.run_id)
    assert "succeeded" == resumed.status
    assert ["one", "two", "two", "two"] == calls
    assert ["one", "two", "three"] == resumed.state["trail"]
    # Attempts keep counting across the resume: one row per attempt, no duplicates.
    rows = [(e.step, e.attempt, e.status) for e in Workspace().events(run.run_id)]
    assert [("one", 1, "ok"), ("two", 1, "retry"), ("two", 2, "failed"), ("two", 3, "ok"), ("three", 1, "ok")] == rows


def test_run_handle_resume_and_cli_listing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """run.resume() continues the same handle; `wfkit runs` and `wfkit show` list it, also as JSON."""
    from wfkit.cli._cli import main

    flow = _steps_flow()
    run = flow.run({}, raise_on_error=False)
    monkeypatch.setenv("FIXED", "1")
    assert "succeeded" == run.resume().wait(10).status
    assert 0 == main(["runs"])
    out = capsys.readouterr().out
    assert run.run_id in out
    assert "succeeded" in out
    assert 0 == main(["runs", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(run.run_id, "resumable", "succeeded", 3)] == [
        (r["run_id"], r["workflow"], r["status"], r["steps_done"]) for r in rows
    ]
    assert 0 == main(["show", run.run_id, "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert ["one", "two", "three"] == [s["step"] for s in shown["steps"]]
    assert 5 == len(shown["events"])
    assert 0 == main(["show", run.run_id])
    assert "two" in capsys.readouterr().out
    assert 1 == main(["show", "no-such-run"])
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_succeeded_run_does_not_resume() -> None:
    """Resuming a finished run is refused with a clear message."""
    flow = _steps_flow()
    run = flow.run({"break_two": False})
    with pytest.raises(ValueError, match="already succeeded; there is nothing to resume"):
        flow.resume(run.run_id)


def test_parallel_sibling_that_finished_is_not_rerun() -> None:
    """After a failure in one branch, resume runs only that branch; its finished sibling is kept."""
    calls: list[str] = []
    flow = wf.Workflow("siblings", merge={"seen": wf.append})
    flow.step(lambda s: None, name="start")

    @flow.step
    def fast(state: Any) -> dict[str, Any]:
        calls.append("fast")
        return {"seen": "fast"}

    @flow.step
    def fragile(state: Any) -> dict[str, Any]:
        calls.append("fragile")
        if len(calls) < 3:
            raise PermissionError("not yet")
        return {"seen": "fragile"}

    flow.step(lambda s: {"joined": sorted(s["seen"])}, name="join")
    flow.edge("start", "fast", "fragile")
    flow.edge("fast", "join")
    flow.edge("fragile", "join")
    run = flow.run({}, raise_on_error=False)
    assert "failed" == run.status
    resumed = flow.resume(run.run_id)
    assert ["fast", "fragile"] == resumed.state["joined"]
    assert 1 == calls.count("fast")


def test_state_that_cannot_be_stored_names_step_and_field() -> None:
    """A step writing a value state cannot keep fails, naming the step and field, in memory and durable alike."""
    flow = wf.Workflow("unstorable")
    flow.step(lambda s: {"when": object()}, name="stamp")
    for workspace in (None, False):
        with pytest.raises(wf.StepFailedError) as info:
            flow.run({}, workspace=workspace)
        cause = info.value.__cause__
        assert isinstance(cause, wf.StateValueError)
        assert "step 'stamp' wrote state field 'when' = builtins.object" in str(cause)


def test_inputs_that_cannot_be_stored_are_refused() -> None:
    """Inputs follow the state rule, durable and in memory alike: an object state cannot keep is refused."""
    flow = wf.Workflow("inputs")
    flow.step(lambda s: None, name="a")
    with pytest.raises(wf.StateValueError, match="the run's inputs: state field 'obj'"):
        flow.run({"obj": object()})
    with pytest.raises(wf.StateValueError, match="the run's inputs: state field 'obj'"):
        flow.run({"obj": object()}, workspace=False)


def test_second_executor_is_refused_by_the_lease(tmp_path: Path) -> None:
    """While one live process executes a run, a resume from another process is refused."""
    ws = tmp_path / "leased"
    script = textwrap.dedent(
        f"""
        import asyncio, sys, wfkit as wf
        flow = wf.Workflow("slow")
        @flow.step
        async def wait(state):
            print("started", flush=True)
            await asyncio.sleep(30)
        flow.run({{}}, run_id="held", workspace={str(ws)!r})
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert "started" == holder.stdout.readline().strip()  # type: ignore[union-attr]
            flow = wf.Workflow("slow")
            flow.step(lambda s: None, name="wait")
            with pytest.raises(wf.LeaseError, match=f"being executed by process {holder.pid}"):
                flow.resume("held", workspace=ws)  # refused before any definition check
        finally:
            holder.kill()
    # The holder is dead now: its lease is stale and the run can be taken over.
    flow = wf.Workflow("slow")
    flow.step(lambda s: None, name="wait")
    with pytest.warns(wf.WorkflowChangedWarning, match="step 'wait': async True -> False"):
        assert "succeeded" == flow.resume("held", workspace=ws).status


LONG_STEP = textwrap.dedent(
    """
    import os, sys, time, wfkit as wf

    def build(logs, irreversible):
        flow = wf.Workflow("long-step")

        @flow.step(irreversible=irreversible)
        def call(state):  # an LLM call with a long timeout, a person at a tool: no write while it runs
            with open(os.path.join(logs, "ran.log"), "a") as fh:
                fh.write("call\\n")
            print("started", flush=True)
            # Only the process the test started waits (a resume that wrongly takes the run over
            # here, in the test's process, runs the step at once: the test fails, it never hangs).
            while os.environ.get("LONG_STEP_WAITS") and not os.path.exists(os.path.join(logs, "release")):
                time.sleep(0.02)
            return {"answer": 42}

        return flow

    if __name__ == "__main__":
        ws, logs, kind = sys.argv[1:]
        print(build(logs, kind == "irreversible").run({}, run_id="long", workspace=ws).status, flush=True)
    """
)


@pytest.mark.parametrize("kind", ["plain", "irreversible"])
def test_a_step_longer_than_the_lease_keeps_its_run(tmp_path: Path, kind: str) -> None:
    """A live process whose step outlives the lease's first expiry (no write meanwhile) still holds
    its run: a resume from another process is refused naming it, and so is a reconciliation of its
    irreversible step; the status says running; the step runs once and the run succeeds."""
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    logs.mkdir()
    script = tmp_path / "long_step.py"
    script.write_text(LONG_STEP, encoding="utf-8")
    env = {**os.environ, "WFKIT_LEASE_TTL": "2", "LONG_STEP_WAITS": "1", "PYTHONPATH": str(HERE.parent)}
    args = [sys.executable, str(script), str(ws), str(logs), kind]
    with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert "started" == holder.stdout.readline().strip()  # type: ignore[union-attr]
            first_expiry = Workspace(ws).run_info("long")["lease"]["until"]
            time.sleep(max(0.0, first_expiry - time.time()) + 0.3)  # the lease it took at its start is over
            assert "running" == Workspace(ws).run_info("long")["status"]
            sys.path.insert(0, str(tmp_path))
            try:
                from long_step import build  # type: ignore[import-not-found]
            finally:
                sys.path.remove(str(tmp_path))
                sys.modules.pop("long_step", None)
            flow = build(str(logs), kind == "irreversible")
            with pytest.raises(wf.LeaseError, match=f"being executed by process {holder.pid} on"):
                flow.resume("long", workspace=ws)
            if kind == "irreversible":
                with pytest.raises(wf.LeaseError, match=f"it is running in process {holder.pid} on"):
                    Workspace(ws).reconcile("long", "call", action="retry", by="ops")
        finally:
            (logs / "release").touch()
        out, _ = holder.communicate(timeout=60)
    assert (0, "succeeded") == (holder.returncode, out.strip())
    assert ["call"] == (logs / "ran.log").read_text().splitlines()
    assert [("call", 1, "ok")] == [(e.step, e.attempt, e.status) for e in Workspace(ws).events("long")]


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="stops a process (POSIX)")
def test_a_process_stopped_past_its_lease_writes_nothing_after_the_takeover(tmp_path: Path) -> None:
    """A process stopped (SIGSTOP: a laptop's lid, a paused VM) for longer than its run's lease,
    while another process takes the run over and finishes it, comes back to a run that is not its
    own any more: its step ends, but its checkpoint is refused (the lease fence), so nothing of it
    reaches the journal after the takeover, the irreversible step runs once (the new holder's),
    and the stopped process's run ends with a LeaseError naming the process that took it over."""
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "WFKIT_LEASE_TTL": "1", "WFKIT_SYNCHRONOUS": "full", "PYTHONPATH": str(HERE.parent)}
    args = [sys.executable, str(HERE / "frozenflow.py"), str(ws), str(logs)]
    with subprocess.Popen([*args, "first"], env=env) as first:
        try:
            give_up = time.time() + 30
            while not (logs / "in_wait").exists():
                assert first.poll() is None, "the first process ended before its step"
                assert time.time() < give_up, "the first process never reached its step"
                time.sleep(0.02)
            os.kill(first.pid, signal.SIGSTOP)
            lease = Workspace(ws).run_info("frozen-run")["lease"]["until"]
            time.sleep(max(0.0, lease - time.time()) + 0.2)  # its lease runs out while it is stopped
            second = subprocess.run([*args, "second"], env=env, capture_output=True, text=True, timeout=60)
            assert 0 == second.returncode, second.stderr
        finally:
            os.kill(first.pid, signal.SIGCONT)
            (logs / "go").touch()
        assert 0 == first.wait(timeout=60)
    took_over = json.loads((logs / "second.json").read_text())
    stopped = json.loads((logs / "first.json").read_text())
    assert ("succeeded", None) == (took_over["status"], took_over["error_type"])
    assert ("failed", "LeaseError") == (stopped["status"], stopped["error_type"])
    # (It finished the run before the stopped one came back, so the lease is released by then.)
    assert stopped["error"].startswith(
        "run frozen-run: another process took this run over and has let it go since: its lease had run out here"
    )
    assert "stops executing the run and wrote nothing of it since" in stopped["error"]
    assert ["second"] == (logs / "outbox.txt").read_text().splitlines()
    info = Workspace(ws).run_info("frozen-run")
    assert ("succeeded", {"waited_in": "second", "sent_by": "second", "done_by": "second"}) == (
        info["status"],
        {k: info["state"][k] for k in ("waited_in", "sent_by", "done_by")},
    )
    # Each step settled once, all by the process that took the run over: none of the stopped
    # process's writes after the takeover is in the journal.
    events = Workspace(ws).events("frozen-run")
    assert [("wait", "ok"), ("send", "ok"), ("after", "ok")] == [(e.step, e.status) for e in events if e.status == "ok"]


@pytest.mark.parametrize("start", ["run", "arun", "resume", "fork", "child"])
def test_every_way_a_stored_run_starts_puts_its_lease_behind_the_fence(tmp_path: Path, start: str) -> None:
    """The lease fence guards only the leases it knows of: a run created (``run``, ``arun``), taken
    up again (``resume``), forked or started as a sub-workflow's child is known to it from its
    first step on. (White-box: ``leases._until`` is the fence's table of leases; a path that forgot
    to tell it would leave its runs unfenced, which no takeover test of another path would show.)"""
    ws = str(tmp_path / "ws")
    known: list[bool] = []

    def fenced(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        known.append(ctx.run_id in open_store(ws).leases._until)
        return {"n": state.get("n", 0) + 1}

    child = wf.Workflow("child")
    child.step(fenced, name="inner")
    flow = wf.Workflow("fenced")
    flow.step(fenced, name="a")
    if start == "child":
        flow.subflow(child, name="sub", outputs={"n": "n"})
        flow.chain("a", "sub")
    halts = wf.Workflow("fenced")  # the same run, halting at a gate before its second step
    halts.step(fenced, name="a")
    halts.step(fenced, name="b", approval=wf.Approval("check"))
    halts.chain("a", "b")
    if start == "run":
        flow.run({}, workspace=ws)
    elif start == "arun":
        asyncio.run(flow.arun({}, workspace=ws))
    elif start == "child":
        flow.run({}, workspace=ws)
        assert 2 == len(known)  # the parent's step, then the child's
    elif start == "resume":
        first = halts.run({}, workspace=ws, policy="halt", raise_on_error=False)
        assert "waiting_approval" == first.status
        known.clear()
        halts.resume(first.run_id, workspace=ws, policy="approve")
    else:
        two = wf.Workflow("fenced")  # a fork at its first step runs its second
        two.step(fenced, name="a")
        two.step(fenced, name="c")
        two.chain("a", "c")
        first = two.run({}, workspace=ws)
        known.clear()
        two.fork(first.run_id, at="a", update={"n": 5}, workspace=ws)
    assert known
    assert all(known)


def test_changed_workflow_warns_or_refuses() -> None:
    """Resuming with a changed definition warns; if a completed step is gone, it refuses."""
    flow = _steps_flow()
    run = flow.run({}, raise_on_error=False)

    changed = _steps_flow()
    changed.step(lambda s: None, name="four")
    changed.edge("three", "four")
    with pytest.warns(wf.WorkflowChangedWarning, match="step 'four' added"), pytest.raises(wf.StepFailedError):
        changed.resume(run.run_id)

    gone = wf.Workflow("resumable")
    gone.step(lambda s: None, name="two")
    with pytest.raises(wf.WorkflowChangedError, match="completed step\\(s\\) 'one' no longer exist"):
        gone.resume(run.run_id)


def _stopped_before_its_gate(tmp_path: Path, **options: Any) -> tuple[wf.Workflow, str]:
    """A run of ``flaky_refunds`` (with ``options``) that failed before its gate, its cause fixed."""
    import durable_flows

    down = tmp_path / "down"
    down.touch()
    flow = durable_flows.flaky_refunds
    run = asyncio.run(flow.arun({"down": str(down)}, raise_on_error=False, **options))
    assert "failed" == run.status
    down.unlink()
    return flow, run.run_id


def _approvers(run_id: str) -> list[str | None]:
    return [e.approver for e in Workspace().events(run_id) if e.status == "approved"]


def test_a_resume_keeps_the_approval_policy_the_run_was_started_with(tmp_path: Path) -> None:
    """A run started with policy="approve" and resumed without one (another process, `wfkit resume`)
    decides its gate by that policy (it halted at the gate: the resume's default policy applied);
    a policy passed to the resume wins."""
    flow, run_id = _stopped_before_its_gate(tmp_path, policy="approve")
    resumed = flow.resume(run_id)
    assert ("succeeded", 120) == (resumed.status, resumed.state["refunded"])
    assert ["policy:approve_all"] == _approvers(run_id)
    flow, run_id = _stopped_before_its_gate(tmp_path, policy="approve")
    assert "waiting_approval" == flow.resume(run_id, policy="halt").status


def test_a_resume_keeps_a_decisions_file_policy(tmp_path: Path) -> None:
    """A decisions file the run was started with decides its gate on resume too, from any folder."""
    path = tmp_path / "decisions.jsonl"
    path.write_text(json.dumps({"workflow": "flaky-refunds-cli", "step": "refund", "decision": "reject", "by": "ed"}))
    flow, run_id = _stopped_before_its_gate(tmp_path, policy=wf.DecisionsFile(path))
    with pytest.raises(wf.ApprovalRejectedError, match="rejected by ed"):
        flow.resume(run_id)


def test_a_resume_of_a_run_started_with_a_policy_object_of_its_own_asks_for_it(tmp_path: Path) -> None:
    """A policy of the user's own class cannot be rebuilt from the store: the resume is refused,
    naming it and saying to pass it again, rather than deciding by another policy."""

    from wfkit.model._approvals import Verdict

    class Mine(wf.ApprovalPolicy):
        name = "mine"

        def decide(self, ticket: wf.Ticket) -> Verdict:
            return Verdict("approve", "mine")

    flow, run_id = _stopped_before_its_gate(tmp_path, policy=Mine())
    with pytest.raises(ValueError, match=r"started with the approval policy <ApprovalPolicy mine>.*pass it again"):
        flow.resume(run_id)
    assert "succeeded" == flow.resume(run_id, policy=Mine()).status
    assert ["mine"] == _approvers(run_id)


def test_wfkit_resume_keeps_the_approval_policy_the_run_was_started_with(tmp_path: Path) -> None:
    """`wfkit resume` (its own process) of a run started with policy="approve" approves the gate as
    the run would have; it halted there (its --policy defaulted to halt)."""
    _, run_id = _stopped_before_its_gate(tmp_path, policy="approve")
    command = [sys.executable, "-m", "wfkit", "resume", run_id, "--workflow", "durable_flows:flaky_refunds"]
    resumed = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parent, check=False)
    assert (0, f"run {run_id}: succeeded") == (resumed.returncode, resumed.stdout.splitlines()[0]), resumed.stderr
    assert ["policy:approve_all"] == _approvers(run_id)


def test_a_fork_keeps_the_approval_policy_its_run_was_started_with() -> None:
    """A fork (the run again from a checkpoint, to try a change) of a run started with
    policy="approve" and given no policy decides its gate by that policy, as a resume does (it
    halted at the gate); a policy given to the fork wins, and is the one the fork's resumes keep."""
    import durable_flows

    flow = durable_flows.refunds
    run = flow.run({"amount": 120}, policy="approve")
    fork = flow.fork(run.run_id, at="quote", update={"amount": 50})
    assert ("succeeded", 50) == (fork.status, fork.state["paid"])
    assert ["policy:approve_all"] == _approvers(fork.run_id)
    halted = flow.fork(run.run_id, at="quote", update={"amount": 60}, policy="halt")
    assert "waiting_approval" == halted.status
    assert "waiting_approval" == flow.resume(halted.run_id).status


def test_a_fork_of_a_run_started_with_a_policy_object_of_its_own_asks_for_it() -> None:
    """Such a policy cannot be rebuilt from the store: a fork given none is refused, naming it and
    saying to pass it again, before anything is written (rather than deciding by another policy)."""
    import durable_flows

    from wfkit.model._approvals import Verdict

    class Mine(wf.ApprovalPolicy):
        name = "mine"

        def decide(self, ticket: wf.Ticket) -> Verdict:
            return Verdict("approve", "mine")

    flow = durable_flows.refunds
    run = flow.run({"amount": 120}, policy=Mine())
    with pytest.raises(ValueError, match=r"started with the approval policy <ApprovalPolicy mine>.*pass it again"):
        flow.fork(run.run_id, at="quote", update={"amount": 50})
    assert [run.run_id] == [r["run_id"] for r in Workspace().runs()]
    fork = flow.fork(run.run_id, at="quote", update={"amount": 50}, policy=Mine())
    assert ("succeeded", ["mine"]) == (fork.status, _approvers(fork.run_id))


def test_run_deadline_survives_a_resume() -> None:
    """Time used before a failure counts against the deadline after resume."""
    import asyncio

    flow = wf.Workflow("deadline")

    @flow.step
    async def slow(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.3)
        return {"slow": True}

    @flow.step
    def flaky(state: Any) -> None:
        raise PermissionError("fails")

    @flow.step
    async def slow_again(state: Any) -> None:
        await asyncio.sleep(0.3)

    flow.chain("slow", "flaky", "slow_again")
    run = flow.run({}, timeout=0.5, raise_on_error=False)
    assert "failed" == run.status
    flaky_ok = wf.Workflow("deadline")
    flaky_ok.step(slow)
    flaky_ok.step(lambda s: None, name="flaky")
    flaky_ok.step(slow_again)
    flaky_ok.chain("slow", "flaky", "slow_again")
    with pytest.warns(wf.WorkflowChangedWarning):
        resumed = flaky_ok.resume(run.run_id, raise_on_error=False)
    assert "timed_out" == resumed.status


DEADLINE_KILL = textwrap.dedent(
    """
    import os, signal, sys, time, wfkit as wf

    ws = sys.argv[1]
    flow = wf.Workflow("deadline-kill")
    flow.step(lambda s: time.sleep(0.4) or {"a": 1}, name="a")
    flow.step(lambda s: time.sleep(0.4) or {"b": 1}, name="b")

    @flow.step
    def c(state):
        if not os.path.exists(ws + ".crashed"):
            open(ws + ".crashed", "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.9)
        return {"c": 1}

    flow.chain("a", "b", "c")
    if os.path.exists(ws + ".crashed"):
        run = flow.resume("dl", workspace=ws, raise_on_error=False)
    else:
        run = flow.run({}, run_id="dl", workspace=ws, timeout=1.5)
    print(run.status)
    """
)


@pytest.mark.parametrize("renew", ["rarely", "often"])
def test_run_deadline_counts_the_time_before_a_crash(tmp_path: Path, renew: str) -> None:
    """Steps that ran before a crash count against the run's deadline after the resume: 0.8 s of
    steps before the crash and 0.9 s after are over a 1.5 s deadline (the resume started the clock
    at 0 again, so the run succeeded). Whether a checkpoint wrote the time used in between or not.
    (The 0.7 s between the steps before the crash and the deadline: with 0.3 s, a loaded machine
    once timed the run out before its crash.)"""
    ws = tmp_path / "ws"
    args = [sys.executable, "-c", DEADLINE_KILL, str(ws)]
    # often: with a lease of 0.2 s every checkpoint (each half lease) writes the run's time used,
    # so the row's clock moves with each step of 0.4 s
    env = {**os.environ, "WFKIT_LEASE_TTL": "0.2"} if renew == "often" else None
    first = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert -signal.SIGKILL == first.returncode, first.stderr
    time.sleep(1.0)  # the time the run lay dead is not the run's
    second = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert (0, "timed_out") == (second.returncode, second.stdout.strip()), second.stderr
    elapsed = Workspace(ws).run_info("dl")["elapsed"]
    assert 1.5 <= elapsed < 2.2  # the 1 s it lay dead and the new process's start are not counted


CONCURRENT = textwrap.dedent(
    """
    import sys, wfkit as wf
    flow = wf.Workflow("busy")
    flow.step(lambda s: {"a": 1}, name="a")
    flow.step(lambda s: {"b": s["a"] + 1}, name="b")
    flow.step(lambda s: {"c": s["b"] + 1}, name="c")
    flow.chain("a", "b", "c")
    for i in range(50):
        flow.run({"worker": int(sys.argv[1]), "i": i}, workspace=sys.argv[2])
    print("ok")
    """
)


def test_eight_processes_fifty_runs_each_share_one_workspace(tmp_path: Path) -> None:
    """8 processes x 50 runs on one workspace: no lock errors, no lost run."""
    ws = tmp_path / "shared"
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "normal"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(n), str(ws)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert 0 == proc.returncode, err
        assert "ok" == out.strip()
        assert "locked" not in err
    runs = Workspace(ws).runs()
    assert 400 == len(runs)
    assert {"succeeded"} == {r["status"] for r in runs}
    assert {3} == {r["steps_done"] for r in runs}
    assert 1200 == len(Workspace(ws).events())


def test_a_run_cancelled_again_while_its_end_is_written_still_records_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second cancellation (a second Ctrl-C) that lands while a cancelled run's last write is
    awaited: the cancellation goes on, and the run's end is durable when it does (stored as
    cancelled, its lease given back), not lost with the waiter."""
    from wfkit.store._writer import Writer

    ws = tmp_path / "twice"
    flow = wf.Workflow("twice")
    submit = Writer.submit_async

    @flow.step
    def first(state: Any) -> dict[str, Any]:
        return {"first": True}

    sleeping: list[asyncio.Event] = []

    @flow.step
    async def second(state: Any) -> None:
        sleeping[0].set()
        await asyncio.sleep(30)

    flow.chain("first", "second")

    async def cell() -> None:
        sleeping.append(asyncio.Event())
        task = asyncio.ensure_future(flow.arun({}, run_id="twice", workspace=ws))
        await sleeping[0].wait()  # the first step's checkpoint is durable, the second is sleeping
        cancelled_again: list[bool] = []

        def submit_then_cancel(self: Writer, fn: Any, rows: Any = (), loop: Any = None) -> Any:
            future = submit(self, fn, rows, loop)
            if not cancelled_again:  # the run's last write: cancel it while it is awaited
                cancelled_again.append(True)
                asyncio.get_running_loop().call_soon(task.cancel)
            return future

        blocked: list[Any] = []  # the fallback: blocking on the writer until the last write is durable
        block = Writer.submit

        def noted(self: Writer, fn: Any, rows: Any = ()) -> Any:
            blocked.append(fn)
            return block(self, fn, rows)

        monkeypatch.setattr(Writer, "submit_async", submit_then_cancel)
        monkeypatch.setattr(Writer, "submit", noted)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cancelled_again
        assert [None] == blocked

    asyncio.run(cell())
    info = Workspace(ws).run_info("twice")
    assert "cancelled" == info["status"]
    assert ["first"] == [s["step"] for s in info["steps"]]
    assert info["lease"] is None


def test_ctrl_c_leaves_a_resumable_run(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) mid-run records the run as cancelled; resume finishes it."""
    ws = tmp_path / "interrupted"
    script = textwrap.dedent(
        f"""
        import asyncio, wfkit as wf
        flow = wf.Workflow("interruptible")
        @flow.step
        def first(state):
            return {{"first": True}}
        @flow.step
        async def second(state):
            print("second", flush=True)
            await asyncio.sleep(30)
            return {{"second": True}}
        flow.chain("first", "second")
        flow.run({{}}, run_id="ctrl-c", workspace={str(ws)!r})
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert "second" == proc.stdout.readline().strip()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    info = Workspace(ws).run_info("ctrl-c")
    assert "cancelled" == info["status"]
    assert ["first"] == [s["step"] for s in info["steps"]]
    assert info["lease"] is None

    flow = wf.Workflow("interruptible")
    flow.step(lambda s: {"first": True}, name="first")
    flow.step(lambda s: {"second": True}, name="second")
    flow.chain("first", "second")
    with pytest.warns(wf.WorkflowChangedWarning):
        run = flow.resume("ctrl-c", workspace=ws)
    assert {"first": True, "second": True} == run.state


def test_cli_approve_reject_pending_resume(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI lists open tickets, decides them once, and resumes a run by its recorded workflow."""
    from wfkit.cli._cli import main

    flow = load_refunds()
    run = flow.run({"amount": 250})
    assert "waiting_approval" == run.status
    assert 0 == main(["pending"])
    out = capsys.readouterr().out
    [ticket] = Workspace().pending()
    assert ticket.ticket_id in out
    assert 0 == main(["approve", ticket.ticket_id, "--by", "dana", "--comment", "fine"])
    assert "approved by dana" in capsys.readouterr().out
    assert 0 == main(["approve", ticket.ticket_id, "--by", "dana"])
    assert "already approved" in capsys.readouterr().out
    assert 1 == main(["reject", ticket.ticket_id, "--by", "eve"])
    assert "cannot be reversed" in capsys.readouterr().err
    assert 1 == main(["approve", "nope", "--by", "x"])
    assert "no approval ticket 'nope'" in capsys.readouterr().err
    assert 0 == main(["resume", run.run_id, "--workflow", "durable_flows:refunds"])
    assert f"run {run.run_id}: succeeded" in capsys.readouterr().out


def load_refunds() -> wf.Workflow:
    import durable_flows

    return durable_flows.refunds


# ---- crashes counted as attempts ------------------------------------------------------------------

KILLER = textwrap.dedent(
    """
    import os, signal, sys, time, wfkit as wf

    ws, log, policy = sys.argv[1], sys.argv[2], sys.argv[3]
    retry = {"none": None,
             "three": wf.RetryPolicy(max_retries=3, base_delay=0, jitter=0),
             }[policy]
    flow = wf.Workflow("killer")
    flow.step(lambda s: {"ready": True}, name="prepare")

    @flow.step(retry=retry)
    def explode(state, ctx):
        with open(log, "a") as fh:
            fh.write(f"attempt {ctx.attempt}\\n")
        if policy == "three" and ctx.attempt <= 2:
            raise ConnectionError("flaky before it turns deadly")
        os.kill(os.getpid(), signal.SIGKILL)

    flow.chain("prepare", "explode")
    if os.path.exists(ws):
        run = flow.resume("boom", workspace=ws, raise_on_error=False)
    else:
        run = flow.run({}, run_id="boom", workspace=ws, raise_on_error=False)
    print(run.status, type(run.error).__name__, run.error)
    """
)


def _kill_loop(tmp_path: Path, policy: str, processes: int) -> tuple[list[str], list[str]]:
    """Run the killer flow up to ``processes`` times (each a new process, as resume after a crash
    would be); returns the attempts its step began and the last process's output lines."""
    ws, log = tmp_path / "ws", tmp_path / "attempts.log"
    out: list[str] = []
    for _ in range(processes):
        done = subprocess.run(
            [sys.executable, "-c", KILLER, str(ws), str(log), policy],
            env={**os.environ, "WFKIT_SYNCHRONOUS": "full"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != -signal.SIGKILL:
            assert 0 == done.returncode, done.stderr
            out = done.stdout.splitlines()
            break
    return log.read_text().splitlines(), out


def test_a_step_that_kills_its_process_fails_the_run_after_its_second_crash(tmp_path: Path) -> None:
    """With no retries, a first crash is forgiven once; the second fails the run, saying it crashed twice."""
    attempts, out = _kill_loop(tmp_path, "none", 5)
    assert ["attempt 1", "attempt 2"] == attempts
    assert 1 == len(out)
    assert out[0].startswith("failed StepFailedError")
    assert "failed with ProcessCrashedError (unknown)" in out[0]
    assert "crashed the process 2 times" in out[0]
    events = Workspace(tmp_path / "ws").events("boom")
    rows = [(e.attempt, e.status, e.error_kind, e.error_type) for e in events]
    assert [
        (1, "ok", None, None),
        (1, "retry", "unknown", "ProcessCrashedError"),
        (2, "failed", "unknown", "ProcessCrashedError"),
    ] == rows
    # A crashed attempt's latency is unknown, not 0: NaN in the events and the step log (it read
    # latency_s 0.0 with ended_at equal to started_at), while a timed attempt keeps its figure.
    assert [False, True, True] == [math.isnan(e.latency_s) and math.isnan(e.ended_at) for e in events]
    frame = wf.steps(tmp_path / "ws", run_id="boom", sort=True)
    assert [False, True, True] == frame["latency_s"].isna().tolist()
    assert [False, True, True] == frame["ended_at"].isna().tolist()
    assert frame["started_at"].notna().all()
    assert 2 == frame.wf.failures()["failed"].sum()  # the tables still count both failed attempts


def test_crashes_count_against_the_retry_budget(tmp_path: Path) -> None:
    """max_retries=3: two failures then kills stop after 4 executions in all (it was 8 before)."""
    attempts, out = _kill_loop(tmp_path, "three", 8)
    assert ["attempt 1", "attempt 2", "attempt 3", "attempt 4"] == attempts
    assert "crashed the process 2 times" in out[0]
    rows = [
        (e.attempt, e.status, e.error_type) for e in Workspace(tmp_path / "ws").events("boom") if e.step != "prepare"
    ]
    assert [
        (1, "retry", "ConnectionError"),
        (2, "retry", "ConnectionError"),
        (3, "retry", "ProcessCrashedError"),
        (4, "failed", "ProcessCrashedError"),
    ] == rows


BACKOFF = textwrap.dedent(
    """
    import asyncio, os, signal, sys, time, wfkit as wf

    ws, log = sys.argv[1], sys.argv[2]
    flow = wf.Workflow("patient")

    class Busy(ConnectionError):
        retry_after = 1.5  # the server asked for 1.5 s

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, jitter=0))
    def call(state, ctx):
        with open(log, "a") as fh:
            fh.write(f"{ctx.attempt} {time.time()}\\n")
        if ctx.attempt == 1:
            raise Busy("429 Too Many Requests")
        return {"ok": True}

    def die_in_the_backoff(event):
        # Die 0.3 s into the 1.5 s backoff. The sinks hear the retry row once it is durable, on the
        # run's loop, just before the backoff's sleep: the loop runs a call due 0.3 s from now
        # before that sleep's end, however late a loaded machine wakes it.
        if event.status == "retry":
            asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGKILL)

    if os.path.exists(ws):
        print(flow.resume("patient", workspace=ws).status)
    else:
        flow.run({}, run_id="patient", workspace=ws, sinks=[die_in_the_backoff])
    """
)


def test_resume_waits_out_a_backoff_the_crash_interrupted(tmp_path: Path) -> None:
    """Killed during a Retry-After backoff, resume waits out the rest of it and counts no crash."""
    ws, log = tmp_path / "ws", tmp_path / "attempts.log"
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full"}
    args = [sys.executable, "-c", BACKOFF, str(ws), str(log)]
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert -signal.SIGKILL == first.returncode, first.stderr
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert 0 == second.returncode, second.stderr
    assert "succeeded" == second.stdout.strip()
    (one, t1), (two, t2) = (line.split() for line in log.read_text().splitlines())
    assert ("1", "2") == (one, two)
    assert float(t2) - float(t1) >= 1.5
    rows = [(e.attempt, e.status, e.error_type, e.retry_delay_s) for e in Workspace(ws).events("patient")]
    assert [(1, "retry", "Busy", 1.5), (2, "ok", None, None)] == rows


IRREVERSIBLE_BACKOFF = textwrap.dedent(
    """
    import asyncio, os, signal, sys, time, wfkit as wf

    ws, log, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    flow = wf.Workflow("patient-payer")

    class Busy(ConnectionError):
        retry_after = 1.5  # the server refused the payment, asking for 1.5 s

    class Reset(Exception):
        pass  # of unknown kind: the request was sent, whether it was paid is not known

    @flow.step(irreversible=True, retry=wf.RetryPolicy(max_retries=2, base_delay=1.5, jitter=0))
    def pay(state, ctx):
        with open(log, "a") as fh:
            fh.write(f"{ctx.attempt} {time.time()} {ctx.idempotency_key}\\n")
        if ctx.attempt == 1:
            raise Reset("connection reset") if kind == "unknown" else Busy("429 Too Many Requests")
        if kind == "in-retry" and not os.path.exists(ws + ".resumed"):
            os.kill(os.getpid(), signal.SIGKILL)  # in the retry's body: it may have paid
        return {"paid": ctx.idempotency_key}

    def die_in_the_backoff(event):
        # 0.3 s into the 1.5 s backoff: the retry row is durable when the sinks hear it.
        if event.status == "retry" and kind != "in-retry":
            asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGKILL)

    if os.path.exists(ws):
        open(ws + ".resumed", "w").close()
        print(flow.resume("payer", workspace=ws, raise_on_error=False).status)
    else:
        flow.run({}, run_id="payer", workspace=ws, sinks=[die_in_the_backoff])
    """
)


@pytest.mark.parametrize("kind", ["transient", "unknown", "in-retry"])
def test_an_irreversible_step_killed_waiting_to_retry_a_transient_error_retries_on_resume(
    tmp_path: Path, kind: str
) -> None:
    """Killed while an irreversible step waited out the backoff of a retry (its attempt ended,
    no body ran), resume waits out the rest of it and retries per policy without asking, when the
    attempt failed with a transient error (refused: no side effect). One of unknown kind (the side
    effect may have happened) still waits for a person's reconciliation, attempt 2 never run, as
    does a kill inside the retry's body (``in-retry``)."""
    ws, log = tmp_path / "ws", tmp_path / "attempts.log"
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full"}
    args = [sys.executable, "-c", IRREVERSIBLE_BACKOFF, str(ws), str(log), kind]
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert -signal.SIGKILL == first.returncode, first.stderr
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert 0 == second.returncode, second.stderr
    lines = [line.split() for line in log.read_text().splitlines()]
    events = Workspace(ws).events("payer")
    [intent] = Workspace(ws).store.intents("payer")
    if kind != "transient":
        assert "needs_reconciliation" == second.stdout.strip()
        assert (["1"] if kind == "unknown" else ["1", "2"]) == [attempt for attempt, _, _ in lines]
        assert "pending" == intent["status"]
        if kind == "in-retry":
            assert [(1, "retry", "Busy"), (2, "retry", "ProcessCrashedError")] == [
                (e.attempt, e.status, e.error_type) for e in events
            ]
        return
    assert "succeeded" == second.stdout.strip()
    assert ["1", "2"] == [attempt for attempt, _, _ in lines]
    assert float(lines[1][1]) - float(lines[0][1]) >= 1.5  # the rest of the backoff, waited out
    assert ["payer:pay:1"] * 2 == [key for _, _, key in lines]
    assert [(1, "retry", "Busy", 1.5), (2, "ok", None, None)] == [
        (e.attempt, e.status, e.error_type, e.retry_delay_s) for e in events
    ]
    assert "done" == intent["status"]


SINK_KILL = textwrap.dedent(
    """
    import contextlib, os, signal, sys, time, wfkit as wf
    from wfkit.testing import test_mode

    ws, log, mode, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    flow = wf.Workflow("patient")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=delay, jitter=0))
    def call(state, ctx):
        with open(log, "a") as fh:
            fh.write(f"{ctx.attempt} {time.time()}\\n")
        if ctx.attempt == 1:
            raise ConnectionError("down")
        return {"ok": True}

    def die_at_the_retry(event):
        # The retry row is durable when the sinks hear it, and its backoff has not begun.
        if event.status == "retry":
            os.kill(os.getpid(), signal.SIGKILL)

    if os.path.exists(ws):  # the resume: never in test mode
        with open(log, "a") as fh:
            fh.write(f"resume {time.time()}\\n")
        print(flow.resume("patient", workspace=ws).status)
    else:
        with test_mode() if mode == "test" else contextlib.nullcontext():
            flow.run({}, run_id="patient", workspace=ws, sinks=[die_at_the_retry])
    """
)


@pytest.mark.parametrize(("mode", "delay"), [("test", 20.0), ("real", 1.5)])
def test_a_retry_records_the_backoff_it_waits_and_resume_waits_only_that(
    tmp_path: Path, mode: str, delay: float
) -> None:
    """Killed as its backoff begins: a test-mode run recorded retry_delay_s 0 (the planned backoff in
    extra), so resume retries at once; a real run recorded its backoff, and resume waits it out."""
    ws, log = tmp_path / "ws", tmp_path / "attempts.log"
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full"}
    args = [sys.executable, "-c", SINK_KILL, str(ws), str(log), mode, str(delay)]
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert -signal.SIGKILL == first.returncode, first.stderr
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert 0 == second.returncode, second.stderr
    assert "succeeded" == second.stdout.strip()
    (one, t1), (resume, t_resume), (two, t2) = (line.split() for line in log.read_text().splitlines())
    assert ("1", "resume", "2") == (one, resume, two)
    recorded = 0.0 if mode == "test" else delay
    events = Workspace(ws).events("patient")
    assert [(1, "retry", recorded), (2, "ok", None)] == [(e.attempt, e.status, e.retry_delay_s) for e in events]
    assert recorded == wf.steps(ws, run_id="patient", sort=True)["retry_delay_s"].iloc[0]
    if mode == "test":
        assert {"retry_delay_planned_s": delay} == events[0].extra
        assert float(t2) - float(t_resume) < 5  # it waited ~19 s for a backoff it never had
    else:
        assert events[0].extra is None
        assert float(t2) - float(t1) >= delay


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@pytest.mark.parametrize(("kill_after", "inline"), [(40, False), (100, False), (70, True)])
def test_sigkill_during_group_commits_of_many_runs(tmp_path: Path, kill_after: int, inline: bool) -> None:
    """40 runs in flight, killed mid-way: no step began before its predecessor's checkpoint was
    durable, resume continues every run at its last durable step, and no email goes twice (also
    with steps the scheduler checkpoints itself, ``inline``)."""
    from crashgroup import PREDECESSOR, STEPS

    ws, logs = tmp_path / "ws", tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "WFKIT_SYNCHRONOUS": "full", "PYTHONPATH": str(HERE.parent)}
    env["CRASHGROUP_INLINE"] = "1" if inline else "0"
    script = [sys.executable, str(HERE / "crashgroup.py"), str(ws), str(logs)]
    first = subprocess.run(
        [*script, "start", "40", str(kill_after)], env=env, capture_output=True, text=True, timeout=120
    )
    assert -signal.SIGKILL == first.returncode, first.stderr

    store = Workspace(ws).store
    durable = {(r, s) for r, (_seq, s, _v, outcome, *_rest) in _checkpoints(store) if outcome == "ok"}
    before = _lines(logs / "ran.log")
    # Every step that began had its predecessor's checkpoint on disk already (they survived the kill).
    for kind, run_id, step in before:
        if kind == "start" and step in PREDECESSOR:
            assert (run_id, PREDECESSOR[step]) in durable, (run_id, step)
    assert len(Workspace(ws).runs()) > 0
    sent_before = {line[0] for line in _lines(logs / "outbox.txt")}

    # Resume; an email cut off between intent and result waits for a person, who checks the outbox.
    statuses = json.loads(
        subprocess.run([*script, "resume"], env=env, capture_output=True, text=True, timeout=120).stdout
    )
    sent = {line[0] for line in _lines(logs / "outbox.txt")}
    for run_id, status in statuses.items():
        if status == "needs_reconciliation":
            action = "done" if run_id in sent else "retry"
            Workspace(ws).reconcile(run_id, "email", action=action, by="ops", updates={"email": True})
    final = json.loads(subprocess.run([*script, "resume"], env=env, capture_output=True, text=True, timeout=120).stdout)
    assert set(final.values()) <= {"succeeded"}

    runs = {r["run_id"]: r for r in Workspace(ws).runs()}
    created = {run_id for _kind, run_id, _step in before}
    assert created <= set(runs)
    assert {"succeeded"} == {r["status"] for r in runs.values()}
    after = _lines(logs / "ran.log")[len(before) :]
    for run_id in runs:
        # Resume began exactly the steps without a durable checkpoint, each once.
        again = [step for kind, r, step in after if kind == "start" and r == run_id]
        assert sorted(again) == sorted(
            s for s in STEPS if (run_id, s) not in durable and not (s == "email" and run_id in sent_before)
        ), run_id
        # At most once: one email per run, with the run's own key.
        emails = [key for r, key in _lines(logs / "outbox.txt") if r == run_id]
        assert [f"{run_id}:email:1"] == emails, run_id


def _checkpoints(store: Any) -> list[tuple[str, tuple[Any, ...]]]:
    return [(row["run_id"], cp) for row in store.run_rows() for cp in store.checkpoints(row["run_id"])]


def test_a_workspace_deleted_and_made_again_under_a_running_run_is_said(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The workspace folder is deleted while a run executes, and another process makes a new one
    there: the run says its record went with the deleted file (naming it), plants none of its rows
    in the new workspace's step log, and this process's next run is recorded in the new one."""
    import shutil

    flow = wf.Workflow("under-a-deleted-workspace")
    unblock = asyncio.Event()

    @flow.step
    async def wait(state: Any) -> dict[str, Any]:
        await unblock.wait()
        return {"waited": True}

    other = "import wfkit as wf\nflow = wf.Workflow('elsewhere')\nflow.step(lambda s: {}, name='one')\nflow.run({})"

    async def main() -> tuple[wf.Run, wf.Run]:
        first = flow.start({})
        await asyncio.sleep(0.2)
        shutil.rmtree(workspace)
        made = await asyncio.create_subprocess_exec(sys.executable, "-c", other)  # a new workspace there
        assert 0 == await made.wait()
        unblock.set()
        await first
        second = await flow.arun({})
        unblock.clear()
        return first, second

    with caplog.at_level("WARNING", logger="wfkit"):
        first, second = asyncio.run(main())
        logged = set(wf.steps(workspace)["run_id"])  # a reader exports what is pending
    assert "succeeded" == first.status
    said = " ".join(r.getMessage() for r in caplog.records)
    assert first.run_id in said
    assert str(workspace / "wfkit.db") in said
    assert "deleted or replaced" in said

    runs = {r["run_id"] for r in Workspace(workspace).runs()}
    assert second.run_id in runs
    assert first.run_id not in runs
    assert first.run_id not in logged
    assert second.run_id in logged


def test_a_run_another_process_finished_while_this_resume_waited_for_the_lease_is_not_resumed(
    workspace: Path,
) -> None:
    """Two resumes of one run: the second read the run's row before the first finished it, and
    took the lease after. What it finds under the lease decides: the run succeeded, so there is
    nothing to resume (it said "succeeded" itself, and rewrote the run's end)."""
    import sqlite3
    import threading

    flow = wf.Workflow("resumed-twice")
    flow.step(lambda s: {"x": 1}, name="one")
    flow.step(lambda s: 1 / 0 if s["bad"] else {"y": 2}, name="two")
    flow.chain("one", "two")
    failed = flow.run({"bad": True}, raise_on_error=False)
    assert "failed" == failed.status
    rows_before = len(Workspace(workspace).events(failed.run_id))

    other = sqlite3.connect(workspace / "wfkit.db", isolation_level=None, timeout=60)
    other.execute("BEGIN IMMEDIATE")  # the first resume, finishing the run while holding the write lock
    other.execute(
        "UPDATE runs SET status='succeeded', ended_at=?, error=NULL WHERE run_id=?", (time.time(), failed.run_id)
    )
    outcome: list[object] = []

    def resume() -> None:
        try:
            outcome.append(flow.resume(failed.run_id))
        except Exception as exc:
            outcome.append(exc)

    second = threading.Thread(target=resume)
    second.start()
    time.sleep(0.5)  # it has read the row ("failed") and waits for the lock
    other.execute("COMMIT")
    other.close()
    second.join(60)

    [said] = outcome
    assert isinstance(said, ValueError), said
    assert "already succeeded" in str(said)
    assert rows_before == len(Workspace(workspace).events(failed.run_id))
    assert Workspace(workspace).run_info(failed.run_id)["status"] == "succeeded"
