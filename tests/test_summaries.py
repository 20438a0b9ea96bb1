"""wfkit.StepLog: summaries computed by DuckDB over the parquet files give the very tables the
pandas accessor computes from the same rows, with filters, on empty logs and on odd names."""

from __future__ import annotations

import asyncio
import datetime as dt
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pytest
from test_analysis import map_runs, retried_map_run, timed_out_map_run

import wfkit as wf

RETRY = wf.RetryPolicy(max_retries=2, base_delay=0.001, jitter=0)


class Logged(NamedTuple):
    folder: Path
    frame: pd.DataFrame


def two_workflows(folder: Path) -> None:
    """Two workflows sharing a step name; retries, permanent failures and many latencies."""
    for name, pause in (("alpha", 0.001), ("beta/β two", 0.003)):
        flow = wf.Workflow(name)

        @flow.step(retry=RETRY, name="fetch")
        async def fetch(state: Any, ctx: wf.StepContext, pause: float = pause) -> None:
            await asyncio.sleep(pause * (1 + state["i"] % 4))
            if ctx.attempt == 1 and state["i"] % 3 == 0:
                raise ConnectionError("connection reset")

        @flow.step(name="answer")
        def answer(state: Any) -> None:
            if state["i"] % 7 == 5:
                raise ValueError(f"no answer for {state['i'] % 2}")

        flow.chain("fetch", "answer")

        async def main(flow: wf.Workflow = flow) -> None:
            await asyncio.gather(*(flow.arun({"i": i}, workspace=folder, raise_on_error=False) for i in range(24)))

        asyncio.run(main())


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Logged:
    folder = tmp_path_factory.mktemp("summaries") / "ws"
    two_workflows(folder)
    return Logged(folder, wf.steps(folder))


def plain(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its index as plain strings (categorical levels and str dtypes differ)."""
    out = table.copy()
    if isinstance(out.index, pd.MultiIndex):
        out.index = pd.MultiIndex.from_tuples([tuple(map(str, k)) for k in out.index], names=out.index.names)
    else:
        out.index = pd.Index([str(k) for k in out.index], name=out.index.name, dtype=object)
    for name in out.columns:
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(str).astype(object)
        if out[name].dtype == object or str(out[name].dtype).startswith(("string", "str")):
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


@pytest.mark.parametrize("question", ["latency", "failures", "retries", "errors", "runs"])
def test_steplog_tables_equal_the_accessors(logged: Logged, question: str) -> None:
    """Each StepLog summary equals df.wf's for the same rows (index, columns, values)."""
    ours = getattr(wf.StepLog(logged.folder), question)()
    theirs = getattr(logged.frame.wf, question)()
    if question == "errors":
        theirs = theirs.sort_index()
        ours = ours.sort_index()
    pd.testing.assert_frame_equal(plain(theirs), plain(ours), check_dtype=False, check_exact=False, rtol=1e-9)


@pytest.mark.parametrize("question", ["latency", "failures", "retries", "errors", "runs", "advise_timeouts"])
def test_steplog_tables_equal_the_accessors_on_a_map(tmp_path: Path, question: str) -> None:
    """On a map step (item rows, and the map's own row, which is no attempt) both count the items'
    attempts alone, and give equal tables."""
    map_runs(tmp_path / "ws")
    ours = getattr(wf.StepLog(tmp_path / "ws"), question)()
    theirs = getattr(wf.steps(tmp_path / "ws").wf, question)()
    pd.testing.assert_frame_equal(
        plain(theirs.sort_index()), plain(ours.sort_index()), check_dtype=False, check_exact=False, rtol=1e-9
    )
    if question == "latency":
        assert 5 == ours.loc[("mapped", "size"), "count"]


def test_steplog_counts_a_map_steps_retries_per_item(tmp_path: Path) -> None:
    """Two map items retried twice each are four retries in StepLog too, as in df.wf."""
    retried_map_run(tmp_path / "ws")
    ours = wf.StepLog(tmp_path / "ws").retries()
    assert (4, 4 / 3, 2) == tuple(ours.loc[("remapped", "size")])
    pd.testing.assert_frame_equal(plain(wf.steps(tmp_path / "ws").wf.retries()), plain(ours), check_dtype=False)


def test_steplog_is_keyed_by_workflow_and_step(logged: Logged) -> None:
    """The shared step name is two rows, one per workflow (a name with / and β round-trips)."""
    table = wf.StepLog(logged.folder).latency()
    assert ["workflow", "step"] == list(table.index.names)
    assert [("alpha", "fetch"), ("alpha", "answer"), ("beta/β two", "fetch"), ("beta/β two", "answer")] == list(
        table.index
    )  # each workflow's steps in the order a run meets them


def test_steplog_advice_equals_the_accessors(logged: Logged) -> None:
    """advise_timeouts from the files equals the accessor's, attrs included."""
    ours = wf.StepLog(logged.folder).advise_timeouts(min_samples=10)
    theirs = logged.frame.wf.advise_timeouts(min_samples=10)
    pd.testing.assert_frame_equal(plain(theirs), plain(ours), check_dtype=False)
    assert theirs.attrs == ours.attrs


def test_steplog_filters_narrow_every_question(logged: Logged) -> None:
    """workflow=, step= and status= are pushed into the query, as wf.steps filters rows."""
    log = wf.StepLog(logged.folder, workflow="alpha", step="fetch")
    assert [("alpha", "fetch")] == list(log.latency().index)
    frame = wf.steps(logged.folder, workflow="alpha", step="fetch")
    assert int(frame[frame["status"] == "ok"].shape[0]) == int(log.latency()["count"].iloc[0])
    assert 24 == len(log.runs())
    failed = wf.StepLog(logged.folder, status="retry").failures()
    assert {("alpha", "fetch"), ("beta/β two", "fetch")} == set(failed.index)


def test_steplog_since_in_the_future_is_empty(logged: Logged) -> None:
    """A filter that keeps nothing gives empty tables with the usual columns (and says why)."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    log = wf.StepLog(logged.folder, since=later)
    with pytest.warns(UserWarning, match="is in the future"):
        assert 0 == len(log.latency())
    with pytest.warns(UserWarning, match="is in the future"):
        assert list(logged.frame.wf.latency().columns) == list(log.latency().columns)


def test_steplog_says_why_an_empty_answer_is_empty(logged: Logged) -> None:
    """wf.StepLog(workflow="alpah").runs(), step="fetchh" or since="2999-01-01" answered every
    question with an empty table, without a word, where wf.steps warns; and status="error" (no
    attempt's status) answered nothing as well. StepLog now warns as wf.steps does, once per
    question (advise_timeouts asks others), at the caller's line, and refuses a status there is not;
    an empty answer to a real question says nothing."""
    statuses = "ok, retry, failed, timeout, waiting_approval, approved, rejected, skipped, cached, cancelled"
    with pytest.raises(
        ValueError, match=rf"^status= 'error' is no attempt status; an attempt's status is one of {statuses}$"
    ):
        wf.StepLog(logged.folder, status="error")
    with pytest.raises(ValueError, match=r"^status= 'fail' \(did you mean 'failed'\?\) is no attempt status"):
        wf.StepLog(logged.folder).latency(status=["ok", "fail"])
    with pytest.raises(ValueError, match=r"'sucess' is no attempt status"):
        wf.StepLog(logged.folder, workflow="alpha").narrow(status="sucess")
    root = logged.folder / "steps"
    with pytest.warns(UserWarning, match="has workflow 'alpah'") as caught:
        assert wf.StepLog(logged.folder, workflow="alpah").runs().empty
    assert [
        f"no row of the step log at {root} has workflow 'alpah' (did you mean 'alpha'?); "
        "its workflows are 'alpha', 'beta/β two'"
    ] == [str(w.message) for w in caught]
    assert __file__ == caught[0].filename
    with pytest.warns(UserWarning, match="has step 'fetchh'") as caught:
        assert wf.StepLog(logged.folder, workflow="alpha", step="fetchh").advise_timeouts().empty
    assert [
        f"no row of the step log at {root} has step 'fetchh' (did you mean 'fetch'?); its steps are 'answer', 'fetch'"
    ] == [str(w.message) for w in caught]
    with pytest.warns(UserWarning, match="is in the future") as caught:
        assert wf.StepLog(logged.folder, since="2999-01-01").errors().empty
    (said,) = [str(w.message) for w in caught]
    assert said.startswith("since='2999-01-01' is in the future (2999-01-01 00:00 UTC; it is now ")
    assert f"so no attempt has started since; the step log at {root} holds attempts from " in said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wf.StepLog(logged.folder, step="fetch", status="failed").failures().empty  # fetch never gave up
        assert wf.StepLog(logged.folder, run_id="r9").runs().empty  # a run may have no row yet
        assert wf.StepLog(logged.folder, since="2000-01-01", until="2000-01-02").latency().empty  # a past window


def test_steplog_of_an_empty_workspace_has_the_accessors_columns(workspace: Path) -> None:
    """No files at all: each question answers an empty table shaped like the accessor's."""
    wf.Workspace(create=True)  # reads never create one
    log = wf.StepLog()
    empty = wf.steps()
    for question in ("latency", "failures", "retries", "errors", "runs"):
        table = getattr(log, question)()
        assert 0 == len(table)
        assert list(getattr(empty.wf, question)().columns) == list(table.columns)


def test_steplog_reads_rows_as_wf_steps_does(logged: Logged) -> None:
    """frame() is wf.steps with the same filters."""
    frame = wf.StepLog(logged.folder, workflow="alpha").frame(columns=["run_id", "step"])
    assert ["run_id", "step"] == list(frame.columns)
    assert len(wf.steps(logged.folder, workflow="alpha")) == len(frame)


def test_steplog_sees_runs_that_ended_after_it_was_made(workspace: Path) -> None:
    """Each question reads the files as they are then (the workspace's rows exported first)."""
    wf.Workspace(create=True)  # reads never create one
    log = wf.StepLog()
    flow = wf.Workflow("later")
    flow.step(lambda s: None, name="only")
    assert 0 == len(log.runs())
    flow.run({})
    assert 1 == len(log.runs())
    assert "StepLog(None)" == repr(log)
    assert "StepLog(None, workflow='later')" == repr(wf.StepLog(workflow="later"))


def test_steplog_reads_segments_written_before_the_later_columns(logged: Logged, tmp_path: Path) -> None:
    """Segments written before map_index, parent_run_id and durable_wait_s were appended to the
    schema lack those columns: every question still answers, as the accessor does on the same rows
    (which reads the missing columns as nulls), instead of DuckDB's 'column not found'."""
    import pyarrow.parquet as pq

    from wfkit.logs._steplog import segment_files

    source = wf.steps(logged.folder).wf  # (exports what is pending)
    del source
    root = logged.folder / "steps"
    old = tmp_path / "old-steps"
    for path in segment_files(root):
        table = pq.read_table(path, partitioning=None)
        kept = [c for c in table.column_names if c not in ("map_index", "parent_run_id", "durable_wait_s")]
        target = old / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.select(kept), target)
    frame = wf.steps(old)
    assert frame["map_index"].isna().all()
    for question in ("latency", "failures", "retries", "errors", "runs"):
        ours = getattr(wf.StepLog(old), question)()
        theirs = getattr(frame.wf, question)()
        if question == "errors":
            ours, theirs = ours.sort_index(), theirs.sort_index()
        pd.testing.assert_frame_equal(plain(theirs), plain(ours), check_dtype=False, check_exact=False, rtol=1e-9)
    assert 48 == len(wf.StepLog(old).runs())


def test_steplog_memory_limit_bounds_duckdb_and_spills_outside_the_working_folder(logged: Logged) -> None:
    """memory_limit= is DuckDB's for every question (narrowed logs too), the answers are the same, and
    spilled data goes to the system's temporary folder, not a `.tmp` folder in the current one."""
    log = wf.StepLog(logged.folder, memory_limit="256MB")
    pd.testing.assert_frame_equal(wf.StepLog(logged.folder).latency(), log.latency())
    narrowed = log.narrow(workflow="alpha")
    assert "256MB" == narrowed.memory_limit
    narrowed.failures()
    for asked in (log, narrowed):
        assert asked._conn is not None
        limit, spill = asked._conn.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchone()
        assert "244.1 MiB" == limit  # 256 MB as DuckDB says it
        assert Path(spill).is_absolute()
        assert Path.cwd() not in Path(spill).parents


@pytest.mark.parametrize("limit", ["lots", "2 apples", 2_000_000, ""])
def test_steplog_refuses_a_memory_limit_that_is_no_size(limit: Any) -> None:
    """A memory_limit that is no size is refused when the log is made, saying what to give."""
    with pytest.raises(ValueError, match=r"is not a size: give a number and a unit, such as '2GB'"):
        wf.StepLog(memory_limit=limit)


def test_steplog_runs_count_a_map_step_once(tmp_path: Path) -> None:
    """StepLog's runs table counts a map step as one step, as df.wf's: the failed item's run has one
    step that gave up, the other two steps done."""
    map_runs(tmp_path / "ws")
    runs = wf.StepLog(tmp_path / "ws").runs().sort_values("attempts")
    assert [(0, 1), (2, 0)] == list(zip(runs["steps_ok"], runs["failed"], strict=True))


def test_steplog_runs_say_a_map_item_timeout_failed_the_run_on_a_timeout(tmp_path: Path) -> None:
    """A run whose map item ran out of time failed on a timeout in StepLog too, as in df.wf."""
    timed_out_map_run(tmp_path / "ws")
    ours = wf.StepLog(tmp_path / "ws").runs()
    assert [True] == ours["failed_on_timeout"].tolist()
    pd.testing.assert_frame_equal(plain(wf.steps(tmp_path / "ws").wf.runs()), plain(ours), check_dtype=False)
