"""Durable runs of every workflow shape across a real SIGKILL: fan-out and join, a routed branch,
a map over a list made at run time, a sub-workflow, a state-machine loop.

For each shape and a kill point inside it (a step that says it is running by creating a file,
then sleeps), the run is started in a process of its own, killed with SIGKILL once the steps
that should be done are checkpointed, and resumed with `wfkit resume` in a fresh process. Then:
the final state is an uninterrupted run's; no step completed before the kill ran again (the
fsynced side file of ``shapeflows.py`` says what ran); the irreversible step had its side effect
at most once, and when the kill cut it off the resume waited for reconciliation instead of
running it again; the step log (parquet) holds the uninterrupted run's rows plus one crashed
attempt (kind ``unknown``) of the killed step (and of the sub-workflow step running its child).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

import wfkit as wf
from wfkit.engine._durability import _WAITS_PER_WRITE

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from shapeflows import RUN_ID  # noqa: E402

# (shape, the label of the step killed, the labels checkpointed before the kill, and for the
# irreversible step how a person reconciles it: the side effect happened, or it did not)
KILLS = [
    ("fanout", "b2", {"start", "b1", "b3"}, None),
    ("fanout", "join", {"start", "b1", "b2", "b3"}, None),
    ("fanout", "notify", {"start", "b1", "b2", "b3", "join"}, "done"),
    ("cond", "left", {"classify"}, None),
    ("cond", "notify", {"classify", "left", "join"}, "retry"),
    ("mapped", "each[1]", {"load", "each[0]", "each[2]", "each[3]"}, None),
    ("mapped", "total", {"load", "each[0]", "each[1]", "each[2]", "each[3]"}, None),
    ("sub", "c2", {"prepare", "c1"}, None),
    ("sub", "send", {"prepare", "c1", "c2"}, "done"),
    ("sub", "send", {"prepare", "c1", "c2"}, "retry"),
    ("sub", "finish", {"prepare", "c1", "c2", "send"}, None),
    ("loop", "work#2", {"init", "work#1", "send#1"}, None),
    ("loop", "send#2", {"init", "work#1", "send#1", "work#2"}, "done"),
]


# SQLite's sync per shape: the default (full), where every checkpoint goes through the writer
# thread, and normal, where a write made while the loop is idle commits on the loop at once.
SYNCHRONOUS = {
    "fanout": "full",
    "cond": "normal",
    "mapped": "full",
    "sub": "normal",
    "sub_retried": "full",
    "loop": "full",
    "first": "full",
    "chain": "normal",
}


def _env(shape: str, logs: Path, kill: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SHAPES_KILL"}
    env.update(SHAPES_LOG=str(logs), PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    env["WFKIT_SYNCHRONOUS"] = SYNCHRONOUS[shape]
    if kill is not None:
        env["SHAPES_KILL"] = kill
    return env


def _wfkit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "wfkit", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def _label(shape: str, event: Any) -> str | None:
    """The side file's label of a journal or step-log row (None: a row of no step body of ours)."""
    step, visit, index = event.step, event.visit, event.map_index
    if shape == "mapped" and step == "each":
        return None if index is None or index is pd.NA else f"each[{int(index)}]"
    if shape == "sub" and step == "inner":
        return None  # the parent's step that runs the child: its body is the child run
    if shape == "loop" and step in ("work", "send"):
        return f"{step}#{int(visit)}"
    return str(step)


def _run_ids(ws: wf.Workspace) -> list[str]:
    return [RUN_ID, *ws.run_info(RUN_ID)["children"]]


def _checkpointed(shape: str, workspace: Path) -> set[str]:
    """The labels of steps whose success is in the journal (the parent's and its children's)."""
    if not workspace.exists():
        return set()
    ws = wf.Workspace(workspace)
    if not any(r["run_id"] == RUN_ID for r in ws.runs()):
        return set()
    return {
        label
        for run_id in _run_ids(ws)
        for e in ws.events(run_id)
        if e.status == "ok" and (label := _label(shape, e)) is not None
    }


def _wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str], err: Path) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended ({proc.returncode}) before {what}:\n{err.read_text(encoding='utf-8')}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"still not {what} after 60 s:\n{err.read_text(encoding='utf-8')}")
        time.sleep(0.02)


def _side_file(logs: Path, ws: wf.Workspace) -> Counter[str]:
    """What ran, its child's run id (random, in idempotency keys) replaced by CHILD."""
    text = (logs / "ran.log").read_text()
    for child in ws.run_info(RUN_ID)["children"]:
        text = text.replace(child, "CHILD")
    return Counter(text.splitlines())


def _state(ws: wf.Workspace) -> dict[str, Any]:
    """The run's final state, its child's run id (random) replaced by CHILD."""
    text = json.dumps(ws.run_info(RUN_ID)["state"], default=sorted, sort_keys=True)
    for child in ws.run_info(RUN_ID)["children"]:
        text = text.replace(child, "CHILD")
    state: dict[str, Any] = json.loads(text)
    return state


def _step_log(shape: str, workspace: Path) -> dict[tuple[str, str | None, int], list[tuple[Any, ...]]]:
    """The parquet step log of the run and its children: per (workflow, label, visit), its rows'
    (attempt, status, error_kind, error_type), in the order they started."""
    ws = wf.Workspace(workspace)
    frame = wf.steps(workspace, run_id=_run_ids(ws))
    rows: dict[tuple[str, str | None, int], list[tuple[Any, ...]]] = {}
    for row in frame.itertuples():
        label = _label(shape, row) or f"{row.step}(own row)"
        kind = None if not isinstance(row.error_kind, str) else row.error_kind
        error = None if not isinstance(row.error_type, str) else row.error_type
        rows.setdefault((str(row.workflow), label, int(row.visit)), []).append(
            (int(row.attempt), row.status, kind, error)
        )
    return rows


class Outcome(NamedTuple):
    state: dict[str, Any]
    ran: Counter[str]
    step_log: dict[tuple[str, str | None, int], list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Outcome]:
    """Per shape, what an uninterrupted run leaves (run once per shape, on first use)."""
    done: dict[str, Outcome] = {}

    def outcome(shape: str) -> Outcome:
        if shape not in done:
            root = tmp_path_factory.mktemp(f"uninterrupted-{shape}")
            finished = subprocess.run(
                [sys.executable, str(HERE / "shapeflows.py"), shape, str(root / "ws")],
                env=_env(shape, root),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert 0 == finished.returncode, finished.stderr
            ws = wf.Workspace(root / "ws")
            assert "succeeded" == ws.run_info(RUN_ID)["status"]
            done[shape] = Outcome(_state(ws), _side_file(root, ws), _step_log(shape, root / "ws"))
        return done[shape]

    return outcome


@pytest.mark.parametrize(
    ("shape", "kill", "done_before", "reconcile"),
    KILLS,
    ids=[f"{s}-{k}" + (f"-{r}" if r else "") for s, k, _, r in KILLS],
)
def test_a_run_killed_inside_a_step_resumes_to_the_uninterrupted_outcome(
    shape: str,
    kill: str,
    done_before: set[str],
    reconcile: str | None,
    tmp_path: Path,
    uninterrupted: Callable[[str], Outcome],
) -> None:
    """SIGKILL while step ``kill`` runs, resume: the uninterrupted run's state, no completed step
    again, the irreversible step's effect at most once, and one crashed attempt in the step log."""
    expected = uninterrupted(shape)
    logs, workspace = tmp_path, tmp_path / "ws"
    _killed_in(
        [sys.executable, str(HERE / "shapeflows.py"), shape, str(workspace)], shape, kill, done_before, logs, workspace
    )
    assert done_before == _checkpointed(shape, workspace)  # the kill came where this case says
    assert "interrupted" == wf.Workspace(workspace).run_info(RUN_ID)["status"]  # its process is gone

    resume = ["resume", RUN_ID, "--workflow", f"shapeflows:{shape}", "--workspace", str(workspace)]
    resumed = _wfkit(*resume, env=_env(shape, logs))
    ws = wf.Workspace(workspace)
    stem = kill.split("#")[0]
    if reconcile is not None:
        # Killed between its intent and its result: resume does not run it again by itself, and
        # the run says so wherever it is listed, with the command that settles it.
        assert 1 == resumed.returncode, resumed.stdout + resumed.stderr
        assert f"run {RUN_ID}: needs_reconciliation" in resumed.stdout
        owner = _run_ids(ws)[-1]  # the run whose step it is: the child, for the sub-workflow
        settle = f"`wfkit reconcile {owner} {stem} --workspace {workspace} --done|--retry --by NAME`"
        assert settle in resumed.stdout  # resume says what to reconcile, as show does
        assert 1 == sum(1 for line in _side_file(logs, ws) if line.startswith(f"effect:{kill} "))
        assert "needs_reconciliation" == ws.run_info(RUN_ID)["status"]
        assert RUN_ID in [r["run_id"] for r in ws.runs(status="needs_reconciliation")]
        shown = _wfkit("show", RUN_ID, "--workspace", str(workspace), env=_env(shape, logs))
        assert settle in shown.stdout
        visit = kill.split("#")[1] if "#" in kill else "1"
        key = f"{owner}:{stem}:{visit}"
        updates = {"trail": kill, "sent": key if shape == "loop" else [key]}
        command = ["reconcile", owner, stem, f"--{reconcile}", "--by", "ops", "--workspace", str(workspace)]
        reconciled = _wfkit(
            *command, *(["--updates", json.dumps(updates)] if reconcile == "done" else []), env=_env(shape, logs)
        )
        assert 0 == reconciled.returncode, reconciled.stderr
        assert "interrupted" == ws.run_info(RUN_ID)["status"]  # settled: resume it
        resumed = _wfkit(*resume, env=_env(shape, logs))
    assert 0 == resumed.returncode, resumed.stdout + resumed.stderr
    assert f"run {RUN_ID}: succeeded" in resumed.stdout

    # (a) the state an uninterrupted run ends with, from one child run for the sub-workflow
    assert expected.state == _state(ws)
    assert (2 if shape == "sub" else 1) == len(_run_ids(ws))
    # (b) + (c) every execution once but the killed step's, which ran again: by itself, or, for
    # the irreversible one, when a person said its side effect had not happened (retry)
    again = Counter({f"run:{kill}": 1}) if reconcile is None else Counter()
    if reconcile == "retry":
        again = Counter(
            {f"run:{kill}": 1, next(line for line in expected.ran if line.startswith(f"effect:{kill} ")): 1}
        )
    assert expected.ran + again == _side_file(logs, ws)
    # (d) the step log: the uninterrupted run's rows, and a crashed attempt of the killed step
    # (and of the sub-workflow step whose child it cut off) before its next attempt (a
    # reconciliation's row is attempt 0)
    crashed = (1, "retry", "unknown", "ProcessCrashedError")
    after = {
        None: [(2, "ok", None, None)],
        "done": [(0, "ok", None, None)],
        "retry": [(0, "skipped", None, None), (2, "ok", None, None)],
    }[reconcile]
    rows = {k: [crashed, *after] if k[1] == kill else v for k, v in expected.step_log.items()}
    if shape == "sub" and kill not in ("prepare", "finish"):
        rows[("shape-sub", "inner(own row)", 1)] = [crashed, (2, "ok", None, None)]
    assert rows == _step_log(shape, workspace)


def _killed_in(command: list[str], shape: str, kill: str, done_before: set[str], logs: Path, workspace: Path) -> None:
    """Run ``command`` until step ``kill`` runs with ``done_before`` checkpointed, then SIGKILL it."""
    (logs / "ready").unlink(missing_ok=True)
    err = logs / "killed.err"
    with err.open("w") as stderr:
        env = _env(shape, logs, kill)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        try:
            _wait_for(
                lambda: (logs / "ready").exists() and done_before <= _checkpointed(shape, workspace),
                f"running {kill} with {sorted(done_before)} checkpointed",
                proc,
                err,
            )
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
    assert -signal.SIGKILL == proc.returncode


@pytest.mark.parametrize("shape", ["sub", "sub_retried"])
def test_crashes_inside_a_child_run_count_against_the_child_step_not_the_parent_step(
    shape: str, tmp_path: Path, uninterrupted: Callable[[str], Outcome]
) -> None:
    """SIGKILL twice while a child run's step runs: both crashes are the child step's attempts, the
    child fails by its step's budget (naming it and the crash count), and the parent's sub-workflow
    step fails with the child's error, its own budget untouched (``sub_retried`` retries it, with a
    new child run, and succeeds)."""
    logs, workspace = tmp_path, tmp_path / "ws"
    start = [sys.executable, str(HERE / "shapeflows.py"), shape, str(workspace)]
    resume = ["resume", RUN_ID, "--workflow", f"shapeflows:{shape}", "--workspace", str(workspace)]
    _killed_in(start, shape, "c2", {"prepare", "c1"}, logs, workspace)
    _killed_in([sys.executable, "-m", "wfkit", *resume], shape, "c2", {"prepare", "c1"}, logs, workspace)
    resumed = _wfkit(*resume, env=_env(shape, logs))

    ws = wf.Workspace(workspace)
    first_child = ws.run_info(RUN_ID)["children"][0]
    child = ws.run_info(first_child)
    assert "failed" == child["status"]
    crashed = "ProcessCrashedError"
    assert [(1, "retry", crashed), (2, "failed", crashed)] == [
        (e.attempt, e.status, e.error_type) for e in ws.events(first_child) if e.step == "c2"
    ]
    assert "step 'c2'" in child["error"]
    assert "crashed the process 2 times" in child["error"]
    inner = [(e.attempt, e.status, e.error_type) for e in ws.events(RUN_ID) if e.step == "inner"]
    assert [(1, "retry", crashed), (2, "retry", crashed)] == inner[:2]
    if shape == "sub":
        assert 1 == resumed.returncode, resumed.stdout + resumed.stderr
        assert [(3, "failed", "SubflowError")] == inner[2:]
        error = ws.run_info(RUN_ID)["error"]
        assert "failed" == ws.run_info(RUN_ID)["status"]
        for said in (f"run {first_child}", "step 'c2'", "crashed the process 2 times", "step 'inner'"):
            assert said in error
    else:
        # The parent's one retry was left for its own failures: it starts a new child run.
        assert 0 == resumed.returncode, resumed.stdout + resumed.stderr
        assert [(3, "retry", "SubflowError"), (4, "ok", None)] == inner[2:]
        assert 2 == len(ws.run_info(RUN_ID)["children"])
        assert uninterrupted("sub").state["trail"] == ws.run_info(RUN_ID)["state"]["trail"]


def _state_letter(pid: int) -> str:
    """A process's state (``R``, ``S``, ``Z``, ...) from ``/proc/PID/stat``, after its name's ``)``."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    return stat[stat.rindex(")") + 1 :].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a zombie is read from /proc on Linux only")
def test_a_run_killed_in_a_child_process_not_yet_waited_for_resumes_in_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: Callable[[str], Outcome]
) -> None:
    """A notebook starts a run with Popen, the process is SIGKILLed and never waited for (a zombie
    that still holds the run's lease): the notebook resumes the run at once, no LeaseError."""
    logs, workspace = tmp_path, tmp_path / "ws"
    err = logs / "first.err"
    with err.open("w") as stderr:
        first = subprocess.Popen(
            [sys.executable, str(HERE / "shapeflows.py"), "fanout", str(workspace)],
            env=_env("fanout", logs, "b2"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:
        _wait_for(lambda: (logs / "ready").exists(), "running b2", first, err)
        first.send_signal(signal.SIGKILL)
        # Not wait(): the process stays a zombie of this one. Its state says when the kill landed.
        deadline = time.monotonic() + 60
        while _state_letter(first.pid) != "Z":
            assert time.monotonic() < deadline, f"process {first.pid} not a zombie after 60 s"
            time.sleep(0.02)
        assert first.returncode is None  # still unreaped

        monkeypatch.setenv("SHAPES_LOG", str(logs))
        monkeypatch.delenv("SHAPES_KILL", raising=False)
        import shapeflows

        run = shapeflows.fanout.resume(RUN_ID, workspace=workspace)
        assert "succeeded" == run.status
        assert uninterrupted("fanout").state == _state(wf.Workspace(workspace))
        assert "Z" == _state_letter(first.pid)  # the check read it, and reaped nothing
    finally:
        first.wait(timeout=60)


# The step-log columns that say which run a row is of: every row of one run holds the same value.
RUN_COLUMNS = ("workflow", "workflow_version", "parameters_hash", "parent_run_id", "host")


def _cell(value: Any) -> Any:
    """A step-log cell as a plain value (an array of tools as a tuple, a missing value as None)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(value)
    return None if pd.isna(value) else value


def test_the_reconciliation_row_of_a_child_run_carries_the_runs_columns(tmp_path: Path) -> None:
    """SIGKILL inside the child's irreversible step, resume, `wfkit reconcile --done`, resume: in
    the parquet step log the reconciliation row holds its run's value in every column that says
    which run a row is of, and the step visit's tools (it had none of parent_run_id,
    parameters_hash, host or tools, so it fell out of a filter by parent run)."""
    logs, workspace = tmp_path, tmp_path / "ws"
    start = [sys.executable, str(HERE / "shapeflows.py"), "sub", str(workspace)]
    resume = ["resume", RUN_ID, "--workflow", "shapeflows:sub", "--workspace", str(workspace)]
    _killed_in(start, "sub", "send", {"prepare", "c1", "c2"}, logs, workspace)
    assert 1 == _wfkit(*resume, env=_env("sub", logs)).returncode  # halts: send needs reconciling
    child = _run_ids(wf.Workspace(workspace))[-1]
    settle = ["reconcile", child, "send", "--done", "--by", "ops", "--workspace", str(workspace)]
    updates = json.dumps({"trail": "send", "sent": [f"{child}:send:1"]})
    assert 0 == _wfkit(*settle, "--updates", updates, env=_env("sub", logs)).returncode
    resumed = _wfkit(*resume, env=_env("sub", logs))
    assert 0 == resumed.returncode, resumed.stdout + resumed.stderr

    frame = pd.read_parquet(workspace / "steps")
    rows = frame[frame["run_id"] == child]
    reconciled = rows[rows["extra"].str.contains('"reconciled"', na=False)]
    assert 1 == len(reconciled)
    others = rows.drop(index=reconciled.index)
    run_values = {column: {_cell(v) for v in others[column]} for column in RUN_COLUMNS}
    assert all(1 == len(v) and None not in v for v in run_values.values()), run_values
    run_values["tools"] = {_cell(v) for v in others[others["step"] == "send"]["tools"]}  # the crashed attempt's
    row_values = {column: {_cell(reconciled[column].iloc[0])} for column in (*RUN_COLUMNS, "tools")}
    assert run_values == row_values
    assert {RUN_ID} == row_values["parent_run_id"]


def test_a_run_reconciled_before_any_row_has_its_host_on_the_reconciliation_row(tmp_path: Path) -> None:
    """SIGKILL inside a run's first step, irreversible, then `wfkit reconcile --done` before any
    resume: the run has no row yet, and the reconciliation row takes its host from the run's
    lease (the process that died), like the run's later rows (it had no host)."""
    logs, workspace = tmp_path, tmp_path / "ws"
    start = [sys.executable, str(HERE / "shapeflows.py"), "first", str(workspace)]
    _killed_in(start, "first", "send", set(), logs, workspace)
    assert [] == wf.Workspace(workspace).events(RUN_ID)
    settle = ["reconcile", RUN_ID, "send", "--done", "--by", "ops", "--workspace", str(workspace)]
    updates = json.dumps({"trail": "send", "sent": [f"{RUN_ID}:send:1"]})
    assert 0 == _wfkit(*settle, "--updates", updates, env=_env("first", logs)).returncode
    resume = ["resume", RUN_ID, "--workflow", "shapeflows:first", "--workspace", str(workspace)]
    resumed = _wfkit(*resume, env=_env("first", logs))
    assert 0 == resumed.returncode, resumed.stdout + resumed.stderr

    rows = pd.read_parquet(workspace / "steps")
    reconciled = rows[rows["extra"].str.contains('"reconciled"', na=False)]
    assert ["send"] == list(reconciled["step"])
    others = rows.drop(index=reconciled.index)
    run_values = {column: {_cell(v) for v in others[column]} for column in RUN_COLUMNS}
    assert None not in run_values["host"]
    assert run_values == {column: {_cell(reconciled[column].iloc[0])} for column in RUN_COLUMNS}


def test_reconciling_a_run_whose_process_still_runs_its_irreversible_step_is_refused(tmp_path: Path) -> None:
    """`wfkit reconcile` (and Workspace.reconcile) of a run whose process is alive in its
    irreversible step is refused, naming that process and what to do, and records nothing; once
    the process is killed, the same command settles it."""
    logs, workspace = tmp_path, tmp_path / "ws"
    (logs / "ready").unlink(missing_ok=True)
    err = logs / "running.err"
    settle = ["reconcile", RUN_ID, "send", "--retry", "--by", "ops", "--workspace", str(workspace)]
    with err.open("w") as stderr:
        command = [sys.executable, str(HERE / "shapeflows.py"), "first", str(workspace)]
        env = _env("first", logs, "send")
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        try:
            _wait_for(lambda: (logs / "ready").exists(), "running send", proc, err)
            refused = _wfkit(*settle, env=_env("first", logs))
            assert 1 == refused.returncode, refused.stdout + refused.stderr
            said = refused.stderr
            assert f"is running in process {proc.pid} on {socket.gethostname()}" in said
            assert "wait for it to finish, or stop that process first" in said
            ws = wf.Workspace(workspace)
            with pytest.raises(wf.LeaseError, match=f"process {proc.pid} on"):
                ws.reconcile(RUN_ID, "send", action="done", by="ops")
            assert [] == ws.events(RUN_ID)  # no crashed attempt for an attempt that is alive
            assert ["pending"] == [i["status"] for i in ws.store.intents(RUN_ID)]
            assert None is proc.poll()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
    settled = _wfkit(*settle, env=_env("first", logs))
    assert 0 == settled.returncode, settled.stdout + settled.stderr
    assert ["retry"] == [i["status"] for i in wf.Workspace(workspace).store.intents(RUN_ID)]


# (shape, its irreversible step, the labels checkpointed before it)
CUT_OFF = {"first": ("send", set()), "fanout": ("notify", {"start", "b1", "b2", "b3", "join"})}


@pytest.mark.parametrize(
    ("shape", "action", "order"),
    [
        ("first", "done", "reconcile-first"),
        ("first", "retry", "reconcile-first"),
        ("first", "done", "resume-first"),
        ("first", "retry", "resume-first"),
        ("fanout", "retry", "reconcile-first"),
    ],
)
def test_the_cut_off_attempt_of_an_irreversible_step_is_logged_once_whatever_the_order(
    shape: str, action: str, order: str, tmp_path: Path
) -> None:
    """SIGKILL inside an irreversible step, then `wfkit reconcile` before any resume, or after a
    resume that halted for it: either way the journal and the parquet step log hold one crashed
    attempt of the step (attempt 1, kind unknown, latency NaN) before the reconciliation row, and
    a step run again after `--retry` is attempt 2 (reconciled first, the crash had no row and the
    run again was attempt 1)."""
    logs, workspace = tmp_path, tmp_path / "ws"
    step, done_before = CUT_OFF[shape]
    _killed_in(
        [sys.executable, str(HERE / "shapeflows.py"), shape, str(workspace)], shape, step, done_before, logs, workspace
    )
    resume = ["resume", RUN_ID, "--workflow", f"shapeflows:{shape}", "--workspace", str(workspace)]
    if order == "resume-first":
        halted = _wfkit(*resume, env=_env(shape, logs))
        assert 1 == halted.returncode, halted.stdout + halted.stderr
    settle = ["reconcile", RUN_ID, step, f"--{action}", "--by", "ops", "--workspace", str(workspace)]
    if action == "done":
        settle += ["--updates", json.dumps({"trail": step, "sent": [f"{RUN_ID}:{step}:1"]})]
    assert 0 == _wfkit(*settle, env=_env(shape, logs)).returncode
    resumed = _wfkit(*resume, env=_env(shape, logs))
    assert 0 == resumed.returncode, resumed.stdout + resumed.stderr

    crashed = (1, "retry", "unknown", "ProcessCrashedError")
    expected = (
        [crashed, (0, "ok", None, None)]
        if action == "done"
        else [crashed, (0, "skipped", None, None), (2, "ok", None, None)]
    )
    journal = [
        (e.attempt, e.status, e.error_kind, e.error_type)
        for e in wf.Workspace(workspace).events(RUN_ID)
        if e.step == step
    ]
    assert expected == journal
    assert expected == _step_log(shape, workspace)[(f"shape-{shape}", step, 1)]
    frame = wf.steps(workspace, run_id=RUN_ID)
    cut = frame[(frame["step"] == step) & (frame["error_type"] == "ProcessCrashedError")].iloc[0]
    assert f"the process died during attempt 1 of irreversible step '{step}' (visit 1)" in cut["error_message"]
    assert np.isnan(cut["latency_s"])
    assert cut["host"] is not None


def test_a_crash_loses_the_durable_waits_of_a_few_checkpoints_at_most_and_they_read_unknown(tmp_path: Path) -> None:
    """SIGKILL in the middle of a 40-step chain (during c35, c01-c34 checkpointed): the journal
    holds the durable wait of every checkpoint but the last few before the kill (at most 32), and
    those few read unknown (NULL, NaN in the parquet step log), never 0; after the resume every
    checkpoint's wait is written. (The waits rode in batches of 64 with the run's later writes, so
    all 34 were lost.)"""
    logs, workspace = tmp_path, tmp_path / "ws"
    before = [f"c{i:02d}" for i in range(1, 35)]
    start = [sys.executable, str(HERE / "shapeflows.py"), "chain", str(workspace)]
    _killed_in(start, "chain", "c35", set(before), logs, workspace)
    waits = {e.step: e.durable_wait_s for e in wf.Workspace(workspace).events(RUN_ID)}
    assert before == list(waits)
    lost = [step for step in before if waits[step] is None]
    assert lost == before[len(before) - len(lost) :]  # the last ones before the kill, if any
    assert len(lost) <= _WAITS_PER_WRITE, lost
    assert all(waits[step] is not None and waits[step] >= 0.0 for step in before if step not in lost)

    resume = ["resume", RUN_ID, "--workflow", "shapeflows:chain", "--workspace", str(workspace)]
    resumed = _wfkit(*resume, env=_env("chain", logs))
    assert 0 == resumed.returncode, resumed.stdout + resumed.stderr
    frame = wf.steps(workspace, run_id=RUN_ID)
    unknown = frame[frame["durable_wait_s"].isna()]
    # unknown: the checkpoints whose wait was lost, and the crashed attempt (it had no checkpoint)
    assert [*((s, 1) for s in lost), ("c35", 1)] == list(zip(unknown["step"], unknown["attempt"], strict=True))
    assert "ProcessCrashedError" == unknown["error_type"].iloc[-1]
    assert (frame.drop(index=unknown.index)["durable_wait_s"] >= 0.0).all()
    assert 41 == len(frame)  # c01-c40, and c35's crashed attempt
