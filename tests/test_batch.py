"""Batches of runs (wfkit.engine._batch, ``flow.run_many``) in this process: order, seeds, errors, step logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import wfkit as wf


def seeded() -> wf.Workflow:
    """Records the run's seed; fails for x == 3."""
    flow = wf.Workflow("batch-seeded")

    @flow.step
    def step(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        if state["x"] == 3:
            raise ValueError("three is bad")
        return {"y": state["x"] * 10}

    return flow


def test_run_many_gives_a_row_per_input_in_order(workspace: Path) -> None:
    """Rows come back in input order with each run's status, error and final state."""
    result = seeded().run_many([{"x": i} for i in range(6)], progress=False, concurrency=2)
    assert list(range(6)) == list(result.runs["index"])
    assert ["succeeded"] * 3 + ["failed"] + ["succeeded"] * 2 == list(result.runs["status"])
    assert [0, 10, 20, None, 40, 50] == [s.get("y") for s in result.runs["state"]]
    assert "StepFailedError" == result.runs["error_type"][3]
    assert str(workspace) == result.dataset


def test_run_many_runs_are_in_the_workspace_and_step_log(workspace: Path) -> None:
    """Each run is stored as usual, and steps() reads their rows."""
    result = seeded().run_many([{"x": 1}, {"x": 2}], progress=False)
    assert sorted(result.runs["run_id"]) == sorted(result.steps()["run_id"])
    assert {r["run_id"] for r in wf.Workspace(workspace).runs()} == set(result.runs["run_id"])


def test_run_many_in_memory_keeps_every_run_and_says_it_has_no_step_log(workspace: Path) -> None:
    """workspace=False runs every input in memory, as it runs one: the rows come back (it used to
    run them all, then fail on the result's folder), nothing reaches the workspace, and steps()
    says why it has nothing to read."""
    result = seeded().run_many([{"x": i} for i in range(4)], progress=False, workspace=False)
    assert ["succeeded"] * 3 + ["failed"] == list(result.runs["status"])
    assert [0, 10, 20, None] == [s.get("y") for s in result.runs["state"]]
    assert result.dataset is None
    assert not workspace.exists()
    with pytest.raises(ValueError, match=r"kept in memory \(workspace=False\), so no step log.*workspace=FOLDER"):
        result.steps()


def test_run_many_in_memory_on_dask_without_a_dataset_is_refused_before_connecting() -> None:
    """Dask workers write their step logs to a folder: workspace=False with executor= and no
    dataset= is refused at once (the address is never dialled), saying what to pass."""
    with pytest.raises(ValueError, match="pass dataset=FOLDER"):
        seeded().run_many([{"x": 1}], progress=False, workspace=False, executor="tcp://127.0.0.1:9")


def test_run_many_seeds_run_i_with_seed_plus_i(workspace: Path) -> None:
    """Run i gets seed + i, so a batch is reproducible (locally and on Dask)."""
    result = seeded().run_many([{"x": 0}, {"x": 1}], progress=False, seed=100)
    seeds = [wf.Workspace(workspace).store.run_row(r)["seed"] for r in result.runs["run_id"]]
    assert [100, 101] == seeds


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"concurrency": 0}, ValueError, "concurrency must be >= 1"),
        ({"dataset": "somewhere"}, ValueError, "dataset= is where Dask workers write"),
        ({"workspace": None, "raise_on_error": True}, TypeError, "never raises a run's error"),
        ({"run_id": "same-for-all"}, TypeError, "names each run itself"),
        ({"timout": 3}, TypeError, "did you mean 'timeout'"),
    ],
)
def test_run_many_refuses_bad_options(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    """Each bad option is an error that says what to do instead."""
    with pytest.raises(error, match=message):
        seeded().run_many([{"x": 1}], progress=False, **kwargs)


def test_run_many_refuses_an_input_that_is_not_a_dict() -> None:
    """Every input is a dict of a run's inputs; the first that is not is named."""
    with pytest.raises(TypeError, match="input 1 is a list"):
        seeded().run_many([{"x": 1}, [2]], progress=False)  # type: ignore[list-item]


def test_run_many_refuses_one_dict_or_a_dataframe_saying_what_to_pass() -> None:
    """One run's dict, or a DataFrame, given for the list of inputs: said so, with what to pass
    (iterated, they gave their keys or column names, refused as "input 0 is a str")."""
    import pandas as pd

    with pytest.raises(TypeError, match=r"was given one dict \(\{'x': 1\}\): pass \[inputs\] for one run"):
        seeded().run_many({"x": 1}, progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"was given a DataFrame: pass frame.to_dict\('records'\)"):
        seeded().run_many(pd.DataFrame({"x": [1, 2]}), progress=False)  # type: ignore[arg-type]


def test_run_many_refuses_inputs_lacking_declared_fields_before_any_run(workspace: Path) -> None:
    """Inputs lacking what the workflow declares are named together, by position, before any run
    starts; the batch used to run the others until the first such input's turn, then raise,
    its rows lost and the input unnamed."""
    flow = wf.Workflow("batch-declared", inputs=["x"])

    @flow.step
    def step(state: Any) -> dict[str, Any]:
        return {"y": state["x"]}

    inputs: list[dict[str, Any]] = [{"x": i} for i in range(10)]
    inputs[3], inputs[7] = {"xx": 3}, {}
    with pytest.raises(ValueError, match="run_many: 2 of 10 inputs lack") as caught:
        flow.run_many(inputs, progress=False, concurrency=2)
    assert "input 3 lacks 'x' ('xx' given: did you mean 'x'?); input 7 lacks 'x'" in str(caught.value)
    assert "no run was started" in str(caught.value)
    assert not (workspace / "wfkit.db").exists()


def test_run_many_refuses_an_input_run_state_cannot_keep_before_any_run(workspace: Path) -> None:
    """An input holding what run state refuses (a lock) is named by position and field, and no run starts."""
    import threading

    inputs = [{"x": 1}, {"x": 2, "lock": threading.Lock()}]
    with pytest.raises(wf.StateValueError, match=r"run_many input 1: state field 'lock' = _thread.lock"):
        seeded().run_many(inputs, progress=False)
    assert not (workspace / "wfkit.db").exists()  # not even the first input's run was made


def test_the_progress_bar_of_run_many_in_a_notebook_run_by_papermill_ends_at_the_runs_done(tmp_path: Path) -> None:
    """In a notebook executed by papermill, the saved output of run_many's progress bar ends at the
    runs done ("30/30 runs"), in a text without times (a replay compares it): it stayed at "0%", a
    widget's first text, as a widget's updates never reach the saved notebook."""
    from papermilled import saved_outputs

    assert ["runs of dbl: 100%|" + "█" * 20 + "| 30/30 runs"] == saved_outputs(tmp_path, RUN_MANY_CELL)


RUN_MANY_CELL = """\
import wfkit as wf

flow = wf.Workflow("dbl")


@flow.step
def double(state):
    return {"y": state["x"] * 2}


result = flow.run_many([{"x": i} for i in range(30)], concurrency=4)
"""


class GivenUp(Exception):
    """What a Dask partition's progress raises once its job was given up (``_GivenUp``)."""


def test_a_batch_whose_progress_raises_starts_no_run_after_it() -> None:
    """A Dask partition runs its inputs through ``_run_inputs`` with its progress (``Progress``), which
    raises once the driver gave the job up. Told only as each run ended, the next run was already
    through the gate: with one run at a time, all four ran here (on a worker, with their model calls;
    runs kept in memory, as here, make it certain, and the partition's durable runs made it happen
    under load). Asked as each run starts too, the batch stops before the next run."""
    import asyncio

    from wfkit.engine._batch import _run_inputs

    started: list[int] = []
    told: list[int] = []
    flow = wf.Workflow("batch-given-up")

    @flow.step
    async def work(state: Any) -> dict[str, Any]:
        started.append(state["n"])
        return {}

    def progress(cases: int = 1) -> None:
        told.append(cases)
        if started:  # the job was given up while the first run ran
            raise GivenUp

    inputs = [(i, {"n": i}) for i in range(4)]
    with pytest.raises(GivenUp):
        asyncio.run(_run_inputs(flow, inputs, concurrency=1, seed=0, options={"workspace": False}, on_run=progress))
    assert [0] == started
    assert [0, 1, 0, 0, 0] == told  # each run asked as it started; only the first one ran, and ended
