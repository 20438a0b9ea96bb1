"""The step log in parquet: one row per journal event, hive partitions, one schema, filters,
crash recovery, leftovers ignored, compaction, and many processes writing one workspace."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from durable_flows import run_still_executing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wfkit as wf
from wfkit.logs._steplog import (
    DAMAGED_DIR,
    SOURCES_KEY,
    _write_atomic,
    check_ledger,
    compact,
    schema,
    segment_files,
    steps_dir,
)
from wfkit.model._process import pid_alive
from wfkit.store._workspace import DB_NAME

# ---- helpers ------------------------------------------------------------------------------------


def two_step_flow(name: str, *, fail_on: int | None = None) -> wf.Workflow:
    """``one`` then ``two``; ``two`` raises ValueError when the input ``i`` equals ``fail_on``."""
    flow = wf.Workflow(name)

    @flow.step
    def one(state: Any) -> dict[str, Any]:
        return {"x": state["i"]}

    @flow.step
    def two(state: Any) -> dict[str, Any]:
        if state["i"] == fail_on:
            raise ValueError(f"input {state['i']} is bad")
        return {"y": state["x"] + 1}

    flow.chain("one", "two")
    return flow


def event_keys(events: list[wf.StepEvent]) -> Counter[tuple[Any, ...]]:
    return Counter((e.run_id, e.step, e.visit, e.attempt, e.status, round(e.latency_s, 6)) for e in events)


def frame_keys(frame: pd.DataFrame) -> Counter[tuple[Any, ...]]:
    return Counter(
        (r.run_id, str(r.step), r.visit, r.attempt, str(r.status), round(r.latency_s, 6))
        for r in frame.itertuples(index=False)
    )


def sql(workspace: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the workspace's SQLite file in its own, closed, connection."""
    with contextlib.closing(sqlite3.connect(workspace / DB_NAME)) as conn, conn:
        return conn.execute(statement, params).fetchall()


def parquet_files(workspace: Path) -> list[Path]:
    return sorted(steps_dir(workspace).rglob("*.parquet"))


def run_child(workspace: Path, tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "WFKIT_HOME": str(workspace), "WFKIT_SYNCHRONOUS": "normal"}
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)


# ---- one row per event, layout, schema, readers ---------------------------------------------------


def test_one_row_per_journal_event(workspace: Path) -> None:
    """After runs (one failing), the step log holds exactly the journal's events, each once."""
    flow = wf.Workflow("retrying")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.001, jitter=0))
    def fetch(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        if ctx.attempt == 1 and state["i"] % 2:
            raise ConnectionError("reset by peer")
        return {"fetched": True}

    @flow.step
    def answer(state: Any) -> dict[str, Any]:
        if state["i"] == 3:
            raise ValueError("cannot answer 3")
        return {"answer": 42}

    flow.chain("fetch", "answer")
    for i in range(5):
        flow.run({"i": i}, raise_on_error=False)

    frame = wf.steps()
    events = wf.Workspace().events()
    assert 5 + 2 + 5 == len(events)  # fetch once each, two retries, answer once each
    assert len(events) == len(frame)
    assert event_keys(events) == frame_keys(frame)
    assert not frame.duplicated(["run_id", "seq"]).any()


def test_partitions_schema_and_readers(workspace: Path) -> None:
    """Segments sit under workflow=/date= folders, have the explicit schema, and pandas and
    pyarrow read the folder directly."""
    flow = two_step_flow("layout")
    for i in range(3):
        flow.run({"i": i})
    frame = wf.steps()
    root = steps_dir(workspace)

    files = parquet_files(workspace)
    assert 3 == len(files)
    for path in files:
        assert "workflow=layout" == path.parent.parent.name
        assert path.parent.name.startswith("date=")
        assert schema() == pq.read_schema(path)
        dates = pq.read_table(path).column("started_at").to_pandas().dt.strftime("%Y-%m-%d")
        assert {f"date={d}" for d in dates} == {path.parent.name}

    by_pandas = pd.read_parquet(root)
    assert len(frame) == len(by_pandas)
    assert {"layout"} == set(by_pandas["workflow"].astype(str))
    by_arrow = pads.dataset(root, format="parquet", partitioning="hive").to_table()
    assert len(frame) == by_arrow.num_rows
    assert {"layout"} == set(by_arrow.column("workflow").to_pylist())
    assert sorted(frame["seq"]) == sorted(by_arrow.column("seq").to_pylist())


def test_workflow_name_with_slash_and_spaces_round_trips(workspace: Path) -> None:
    """A name with "/", spaces and "%" is one partition folder and comes back unchanged."""
    name = "team a/triage 50% v2"
    flow = two_step_flow(name)
    flow.run({"i": 1})
    frame = wf.steps()

    assert {name} == set(frame["workflow"].astype(str))
    assert 1 == len(list(steps_dir(workspace).iterdir()))
    by_arrow = pads.dataset(steps_dir(workspace), format="parquet", partitioning="hive").to_table()
    assert {name} == set(by_arrow.column("workflow").to_pylist())
    assert {name} == set(pd.read_parquet(steps_dir(workspace))["workflow"].astype(str))
    assert 2 == len(wf.steps(workflow=name))


def test_duckdb_reads_the_dataset(workspace: Path) -> None:
    """DuckDB reads the folder with hive partitioning (only where duckdb is installed)."""
    duckdb = pytest.importorskip("duckdb")
    flow = two_step_flow("ducks")
    for i in range(2):
        flow.run({"i": i})
    frame = wf.steps()
    pattern = str(steps_dir(workspace) / "**" / "*.parquet")
    rows = duckdb.sql(
        f"SELECT workflow, count(*) FROM read_parquet('{pattern}', hive_partitioning = true) GROUP BY workflow"
    ).fetchall()
    assert [("ducks", len(frame))] == rows


def test_integer_columns_that_may_be_missing_read_as_nullable_integers(workspace: Path) -> None:
    """tokens_in, tokens_out and map_index, missing on some rows, read as pandas' Int64/Int32 with
    every value as written (a count past 2**53 too, which floats cannot hold), as DuckDB reads
    them; visit, attempt and seq, on every row, stay numpy integers. wf.steps (whole, some
    columns, reordered) and StepLog.frame give the same dtypes, and the accessor's cost sums them."""
    duckdb = pytest.importorskip("duckdb")
    flow = wf.Workflow("ints", inputs=["xs"])
    big = 2**53 + 1

    @flow.step
    def ask(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="m", tokens_in=big, tokens_out=120)

    flow.map(lambda x: x + 1, over="xs", into="ys", name="each")
    flow.chain("ask", "each")
    flow.run({"xs": [1, 2]})
    frame = wf.steps()
    integers = {"visit": "int32", "attempt": "int32", "seq": "int64", "tokens_in": "Int64", "tokens_out": "Int64"}
    integers["map_index"] = "Int32"
    assert integers == {name: str(frame[name].dtype) for name in integers}
    asked = frame[frame["step"] == "ask"].iloc[0]
    assert (big, 120) == (asked["tokens_in"], asked["tokens_out"])
    assert frame.loc[frame["step"] == "each", "tokens_in"].isna().all()
    assert [0, 1, None] == sorted(
        (None if pd.isna(v) else int(v) for v in frame.loc[frame["step"] == "each", "map_index"]),
        key=lambda v: (v is None, v),
    )

    pattern = str(steps_dir(workspace) / "**" / "*.parquet")
    ducked = duckdb.sql(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)").df()
    assert {name: str(ducked[name].dtype) for name in integers} == {name: str(frame[name].dtype) for name in integers}
    assert wf.StepLog().frame().dtypes.equals(frame.dtypes)
    some = wf.steps(columns=["map_index", "tokens_in", "started_at"], sort=True)
    assert ["Int32", "Int64"] == [str(some[name].dtype) for name in ("map_index", "tokens_in")]
    assert big == frame.wf.cost(by=None).loc[("ints", "ask"), "tokens_in"]


# ---- filters ------------------------------------------------------------------------------------


def test_a_since_in_the_future_warns_naming_the_dates_held(workspace: Path) -> None:
    """wf.steps(since=) a date to come comes back empty warning that it is in the future and which
    dates the log holds (it came back empty without a word); a since that has passed says nothing."""
    two_step_flow("alpha").run({"i": 1})
    held = wf.steps()["started_at"]
    first, last = (f"{t.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" for t in (held.min(), held.max()))
    with pytest.warns(UserWarning, match="is in the future") as caught:
        assert wf.steps(since="2999-01-01").empty
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("since='2999-01-01' is in the future (2999-01-01 00:00 UTC; it is now ")
    assert message.endswith(
        f"), so no attempt has started since; the step log at {workspace / 'steps'} holds attempts from "
        f"{first} to {last}: give a time in that range"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wf.steps(since=dt.datetime.now(dt.UTC)).empty


def test_filters(workspace: Path) -> None:
    """workflow, run_id, step, status, since and until select the matching rows only."""
    alpha, beta = two_step_flow("alpha", fail_on=2), two_step_flow("beta")
    early = [alpha.run({"i": i}, raise_on_error=False) for i in range(3)]
    wf.steps()  # exported; nothing after this instant is early
    middle = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    late = [beta.run({"i": i}) for i in range(2)]
    events = wf.Workspace().events()

    assert 6 == len(wf.steps(workflow="alpha"))
    assert len(events) == len(wf.steps(workflow=["alpha", "beta"]))
    assert 2 == len(wf.steps(run_id=late[0].run_id))
    assert 4 == len(wf.steps(run_id=[early[0].run_id, late[1].run_id]))
    assert {"one"} == set(wf.steps(step="one")["step"].astype(str))
    assert 5 == len(wf.steps(step="one"))
    failed = wf.steps(status="failed")
    assert [(early[2].run_id, "two")] == list(zip(failed["run_id"], failed["step"].astype(str), strict=True))
    assert {r.run_id for r in late} == set(wf.steps(since=middle)["run_id"])
    assert {r.run_id for r in late} == set(wf.steps(since=middle.isoformat())["run_id"])
    assert {r.run_id for r in early} == set(wf.steps(until=middle)["run_id"])
    assert 0 == len(wf.steps(workflow="alpha", since=middle))
    with pytest.warns(UserWarning, match="has workflow 'nobody'; its workflows are 'alpha', 'beta'"):
        assert 0 == len(wf.steps(workflow="nobody"))


@pytest.mark.parametrize(
    ("since", "until", "hint"),
    [
        (
            "2026-12-05",
            "2026-12-05",
            "; until excludes its own time, so for the whole day of 2026-12-05 write until='2026-12-06'",
        ),
        ("2026-12-06", "2026-12-01", "; swap them: since='2026-12-01', until='2026-12-06'"),
        ("2026-12-05T10:00", "2026-12-05T10:00", "; until excludes its own time: give a later one"),
    ],
)
def test_a_time_window_no_row_can_fall_in_is_refused(workspace: Path, since: str, until: str, hint: str) -> None:
    """since/until that no attempt can meet (until at or before since: one day given to both, or
    the two swapped) are refused, by wf.steps and wf.StepLog alike, saying what to write; the read
    came back empty, which reads as "nothing ran then"."""
    two_step_flow("window").run({"i": 1})
    message = (
        f"until={until!r} is not after since={since!r}: no attempt starts at or after since and before until{hint}"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        wf.steps(since=since, until=until)
    with pytest.raises(ValueError, match=re.escape(message)):
        wf.StepLog(since=since, until=until)
    assert 2 == len(wf.steps(since="2026-01-01", until="2100-01-01"))


# ---- recovery -----------------------------------------------------------------------------------


def test_a_deleted_segment_is_exported_again_from_the_journal(workspace: Path) -> None:
    """The ledger check on read: a deleted segment is written again from the journal, so the
    history is never silently shorter."""
    flow = two_step_flow("deleted")
    for i in range(3):
        flow.run({"i": i})
    before = wf.steps()
    assert 6 == len(before)
    victim = parquet_files(workspace)[0]
    victim.unlink()
    after = wf.steps()
    assert frame_keys(before) == frame_keys(after)
    assert victim.exists()


def test_a_truncated_segment_is_moved_aside_and_rebuilt(workspace: Path) -> None:
    """A damaged segment is moved to steps-damaged (never deleted) and its rows exported again."""
    flow = two_step_flow("truncated")
    for i in range(2):
        flow.run({"i": i})
    before = wf.steps()
    victim = parquet_files(workspace)[0]
    victim.write_bytes(victim.read_bytes()[:40])
    after = wf.steps()
    assert frame_keys(before) == frame_keys(after)
    [aside] = list((workspace / DAMAGED_DIR).rglob("*.parquet"))
    assert 40 == aside.stat().st_size
    assert aside.name.startswith(victim.stem)


def test_rows_neither_parquet_nor_the_journal_hold_fail_loudly(workspace: Path) -> None:
    """When a segment is gone and the journal cannot supply its rows either, the read fails naming them."""
    flow = two_step_flow("lost")
    run = flow.run({"i": 0})
    wf.steps()
    for path in parquet_files(workspace):
        path.unlink()
    sql(workspace, f"DELETE FROM journal WHERE run_id = '{run.run_id}' AND seq = 2")
    with pytest.raises(wf.StoreCorruptError, match=f"lacks rows 1-2 of run {run.run_id}.*journal") as info:
        wf.steps()
    assert run.run_id == info.value.run_id


def test_check_ledger_without_repair_only_reports(workspace: Path) -> None:
    """check_ledger(repair=False) names the missing range and changes nothing."""
    flow = two_step_flow("report-only")
    run = flow.run({"i": 0})
    wf.steps()
    for path in parquet_files(workspace):
        path.unlink()
    report = check_ledger(wf.Workspace().store, workspace, repair=False)
    assert [(run.run_id, 1, 2)] == report.missing
    assert [] == parquet_files(workspace)


def test_rows_missing_after_a_crash_are_exported_by_the_next_reader(workspace: Path) -> None:
    """With exported_seq set back (a crash before the export was recorded), steps() exports by
    itself, and no row is lost or doubled, whether the old files are gone or still there."""
    flow = two_step_flow("recovered", fail_on=1)
    runs = [flow.run({"i": i}, raise_on_error=False) for i in range(3)]
    wf.steps()
    events = wf.Workspace().events()

    # Files still there, export not recorded: re-exported over the same files, no doubles.
    sql(workspace, "UPDATE runs SET exported_seq = 0")
    frame = wf.steps()
    assert event_keys(events) == frame_keys(frame)
    assert 3 == len(parquet_files(workspace))

    # Files gone too (the crash came before the rename): every row comes back.
    for path in parquet_files(workspace):
        path.unlink()
    sql(workspace, "UPDATE runs SET exported_seq = 0 WHERE run_id != ?", (runs[0].run_id,))
    frame = wf.steps()  # the ledger check brings back runs[0], whose export was recorded
    assert event_keys(events) == frame_keys(frame)
    assert not frame.duplicated(["run_id", "seq"]).any()


def test_a_longer_export_supersedes_an_unrecorded_shorter_one(workspace: Path) -> None:
    """A run halted for approval is exported; the export is not recorded (crash); when the run
    resumes, its longer segment replaces the shorter one and no row shows twice."""
    flow = wf.Workflow("halting")
    flow.step(lambda s: {"x": 1}, name="quote")
    flow.step(lambda s: {"paid": True}, name="pay", approval="payments need a human")
    flow.chain("quote", "pay")
    run = flow.run({}, raise_on_error=False)
    assert "waiting_approval" == run.status
    assert 2 == len(wf.steps())
    sql(workspace, "UPDATE runs SET exported_seq = 0")

    flow.resume(run.run_id, policy="approve")
    frame = wf.steps()
    assert event_keys(wf.Workspace().events()) == frame_keys(frame)
    assert ["part"] == sorted({p.name.split("-")[0] for p in parquet_files(workspace)})
    assert 1 == len(parquet_files(workspace))


@pytest.mark.parametrize("elsewhere", [False, True], ids=["here", "in-the-export-process"])
def test_a_run_that_cannot_be_exported_holds_up_no_other(
    workspace: Path, caplog: pytest.LogCaptureFixture, elsewhere: bool
) -> None:
    """Runs are exported together; one whose journal rows fail their check is logged (by this
    process, whichever exported it) and left to the next reader, and the others are exported and
    recorded all the same."""
    from wfkit.logs._steplog import Exporter

    flow = two_step_flow("together")
    good, bad, other = (flow.run({"i": i}) for i in range(3))
    sql(workspace, "UPDATE journal SET step = 'tampered' WHERE run_id = ? AND seq = 1", (bad.run_id,))
    exporter = Exporter(delay=60)
    store = wf.Workspace().store
    for run in (good, bad, other):
        exporter.submit(store, workspace, run.run_id)
    try:
        exporter.flush(elsewhere=elsewhere)
    finally:
        exporter.close()
    assert {good.run_id, other.run_id} == {p.name.split("-")[1] for p in parquet_files(workspace)}
    ledger = dict(sql(workspace, "SELECT run_id, exported_seq FROM runs"))
    assert {good.run_id: 2, bad.run_id: 0, other.run_id: 2} == ledger
    assert f"exporting run {bad.run_id} to parquet failed" in caplog.text
    assert "StoreCorruptError" in caplog.text  # the traceback says why
    assert "export process failed" not in caplog.text


def test_runs_a_failed_batch_recorded_before_it_failed_are_not_exported_again(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails part-way (its first chunk written and recorded, a damaged run in the
    next) goes on run by run with the runs not yet recorded only: the export process's record
    collects what the asking process writes, so the ledger cannot tell it which are done."""
    from wfkit.logs import _steplog

    flow = two_step_flow("partway")
    runs = [flow.run({"i": i}) for i in range(3)]
    sql(workspace, "UPDATE runs SET exported_seq = 0")
    sql(workspace, "UPDATE journal SET step = 'tampered' WHERE run_id = ? AND seq = 1", (runs[2].run_id,))
    monkeypatch.setattr(_steplog, "_EXPORT_CHUNK_ROWS", 3)
    marks: list[dict[str, int]] = []
    rows, failed = _steplog.export_each(
        wf.Workspace().store, workspace, [r.run_id for r in runs], lambda m, _: marks.append(dict(m))
    )
    assert [{runs[0].run_id: 2, runs[1].run_id: 2}] == marks
    assert [runs[2].run_id] == list(failed)
    assert 0 == rows


def test_background_exports_run_in_a_process_of_their_own(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The background export takes none of this interpreter's time: it is the export process
    that reads the journal and writes the segments (here, an export in this process would raise),
    this process records the ledger, and the export process ends when the exporter closes it."""
    from wfkit.logs import _steplog

    flow = two_step_flow("elsewhere")
    runs = [flow.run({"i": i}) for i in range(3)]
    events = wf.Workspace().events()

    def not_here(*args: Any) -> Any:
        raise AssertionError("exported in this process")

    monkeypatch.setattr(_steplog, "export_runs", not_here)
    monkeypatch.setattr(_steplog, "export_run", not_here)
    exporter = _steplog.Exporter(delay=0.01)
    store = wf.Workspace().store
    for run in runs:
        exporter.submit(store, workspace, run.run_id)
    deadline = time.monotonic() + 60
    while len(parquet_files(workspace)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    exporter.flush()  # the files are in place: their request was recorded, nothing is left pending
    process = exporter._process
    assert process is not None
    assert process.pid != os.getpid()
    # At the lowest CPU priority: a thread of the runs' process that wakes never waits behind it.
    assert 19 == os.getpriority(os.PRIO_PROCESS, process.pid)
    if sys.platform.startswith("linux"):
        assert os.SCHED_IDLE == os.sched_getscheduler(process.pid)
    exporter.close()
    assert 0 == process.returncode
    assert {r.run_id for r in runs} == {p.name.split("-")[1] for p in parquet_files(workspace)}
    assert {r.run_id: 2 for r in runs} == dict(sql(workspace, "SELECT run_id, exported_seq FROM runs"))
    monkeypatch.undo()
    assert event_keys(events) == frame_keys(wf.steps(workspace))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pins processes to a CPU (Linux)")
def test_the_export_process_ends_when_closed_on_a_busy_cpu(workspace: Path) -> None:
    """Closing the exporter (what a script's exit does) on a CPU that other processes keep busy:
    the export process, which gets only that CPU's idle time, ends by itself, not killed after
    the exporter's 30 s wait (its interpreter's teardown took that long at its priority)."""
    from wfkit.logs import _steplog

    flow = two_step_flow("busy")
    run = flow.run({"i": 1})
    exporter = _steplog.Exporter(delay=60)
    exporter.submit(wf.Workspace().store, workspace, run.run_id)
    exporter.flush(elsewhere=True)  # the export process has started and exported the run
    process = exporter._process
    assert process is not None
    cpu = min(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {cpu})
        os.sched_setaffinity(process.pid, {cpu})  # it now runs only when the busy loop lets it
        exporter.close()
    finally:
        busy.kill()
        busy.wait()
    assert 0 == process.returncode
    assert [run.run_id] == [p.name.split("-")[1] for p in parquet_files(workspace)]


def _read_three_ways(workspace: Path) -> list[Counter[tuple[str, int]]]:
    """(run, seq) of every row of the step log as pandas (wf.steps), pyarrow and DuckDB read it."""
    duckdb = pytest.importorskip("duckdb")
    root = steps_dir(workspace)
    by_pandas = wf.steps(workspace)
    by_arrow = pads.dataset(root, format="parquet", partitioning="hive").to_table(columns=["run_id", "seq"])
    pattern = str(root / "**" / "*.parquet")
    by_duckdb = duckdb.sql(f"SELECT run_id, seq FROM read_parquet('{pattern}', hive_partitioning = true)").fetchall()
    return [
        Counter(zip(by_pandas["run_id"], by_pandas["seq"], strict=True)),
        Counter(zip(by_arrow.column("run_id").to_pylist(), by_arrow.column("seq").to_pylist(), strict=True)),
        Counter(map(tuple, by_duckdb)),
    ]


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="stops the export process (POSIX)")
def test_a_reader_does_not_wait_for_the_background_export(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader (wf.steps) while a background export is under way in the export process, which the
    scheduler leaves off a busy CPU (here: stopped): the reader exports those runs itself and
    returns, every row once; when the export process goes on and answers, its work is dropped and
    the step log is unchanged (no row twice, none missing, no temporary file left)."""
    from wfkit.logs import _steplog

    flow = two_step_flow("stalled")
    runs = [flow.run({"i": i}) for i in range(4)]
    expected = Counter(sql(workspace, "SELECT run_id, seq FROM journal"))
    assert 8 == sum(expected.values())
    exporter = _steplog.Exporter(delay=60)
    monkeypatch.setattr(_steplog, "exporter", exporter)  # the one wf.steps flushes
    store = wf.Workspace().store
    exporter.submit(store, workspace, runs[0].run_id)
    exporter.flush(elsewhere=True)  # the export process has started and exported a run
    process = exporter._process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        for run in runs[1:]:
            exporter.submit(store, workspace, run.run_id)
        background = threading.Thread(target=exporter.flush, kwargs={"elsewhere": True}, daemon=True)
        background.start()
        deadline = time.monotonic() + 60
        while exporter._pending and time.monotonic() < deadline:  # the request is on its way
            time.sleep(0.01)
        found: list[list[Counter[tuple[str, int]]]] = []
        reader = threading.Thread(target=lambda: found.append(_read_three_ways(workspace)), daemon=True)
        reader.start()
        reader.join(timeout=120)  # a guard against a hang, not a measure: it returns at once
        assert not reader.is_alive(), "the reader waited for the stopped export process"
        assert [expected] * 3 == found[0]
    finally:
        os.kill(process.pid, signal.SIGCONT)
    background.join(timeout=120)
    assert not background.is_alive()
    assert [expected] * 3 == _read_three_ways(workspace)
    assert {r.run_id: 2 for r in runs} == dict(sql(workspace, "SELECT run_id, exported_seq FROM runs"))
    assert [] == [p.name for p in steps_dir(workspace).rglob(".*")]  # its temporary files are gone
    assert 4 == len(parquet_files(workspace))
    exporter.close()
    assert 0 == process.returncode


def test_a_background_export_leaves_the_store_s_writer_running(workspace: Path) -> None:
    """The timer thread that ran a background export closes its own connection as it ends, not
    the store's writer: runs still executing go on writing through the same writer thread (a
    writer stopped from there made the next write start another thread and connection while the
    old one still committed)."""
    from wfkit.logs import _steplog

    flow = two_step_flow("keeps-writer")
    first = flow.run({"i": 1})
    store = wf.Workspace().store
    writer_thread = store.writer._thread
    assert writer_thread is not None
    assert writer_thread.is_alive()
    exporter = _steplog.Exporter(delay=0.01)
    exporter.submit(store, workspace, first.run_id)
    deadline = time.monotonic() + 60
    while not parquet_files(workspace) and time.monotonic() < deadline:
        time.sleep(0.05)
    exporter.flush()  # waits for the timer thread's export
    exporter.close()
    assert [first.run_id] == [p.name.split("-")[1] for p in parquet_files(workspace)]
    assert store.writer._thread is writer_thread
    assert writer_thread.is_alive()
    second = flow.run({"i": 2})
    assert store.writer._thread is writer_thread
    assert "succeeded" == second.status


def test_the_export_process_answers_each_request_and_says_what_it_could_not_open(workspace: Path) -> None:
    """One reply line per request: the rows exported, how far each run is and the segments it
    wrote under temporary names (for the asking process to place and record), and for a store it
    cannot open, the error (the exporter then exports those runs itself)."""
    import io

    from wfkit.logs._export_process import serve

    flow = two_step_flow("served")
    run = flow.run({"i": 1})
    store = wf.Workspace().store
    requests = [
        json.dumps({"db": str(store.path), "synchronous": "NORMAL", "workspace": str(workspace), "runs": [run.run_id]}),
        json.dumps(
            {"db": str(workspace / "nowhere.db"), "synchronous": "NORMAL", "workspace": str(workspace), "runs": []}
        ),
    ]
    replies = io.StringIO()
    serve(requests, replies)
    first, second = (json.loads(line) for line in replies.getvalue().splitlines())
    segments = first.pop("segments")
    assert {"rows": 2, "exported": {run.run_id: 2}, "failed": {}} == first
    assert "error" in second
    # Its files stay under temporary names: the asking process renames them into place.
    assert [] == parquet_files(workspace)
    [(temporary, final)] = segments
    assert Path(temporary).name.startswith(".")
    assert Path(temporary).exists()
    assert Path(final).name.startswith(f"part-{run.run_id}-")
    # It only reads the store: the ledger is the asking process's to write.
    assert [(0,)] == sql(workspace, "SELECT exported_seq FROM runs WHERE run_id = ?", (run.run_id,))


def test_an_export_process_that_dies_leaves_the_exports_to_this_one(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An export process that exits without answering: a warning says so and what it exited with,
    this process exports the runs itself, and every later background export too."""
    from wfkit.logs import _steplog

    monkeypatch.setattr(_steplog, "_export_command", lambda: [sys.executable, "-c", "raise SystemExit(3)"])
    flow = two_step_flow("fallback")
    first, second = flow.run({"i": 1}), flow.run({"i": 2})
    exporter = _steplog.Exporter(delay=60)
    store = wf.Workspace().store
    exporter.submit(store, workspace, first.run_id)
    exporter.flush(elsewhere=True)
    assert "export process failed (it exited with code 3)" in caplog.text
    assert [first.run_id] == [p.name.split("-")[1] for p in parquet_files(workspace)]
    exporter.submit(store, workspace, second.run_id)
    exporter.flush(elsewhere=True)
    assert exporter._process is None
    assert 1 == caplog.text.count("export process failed")
    assert {first.run_id, second.run_id} == {p.name.split("-")[1] for p in parquet_files(workspace)}


def test_a_backlog_is_exported_in_chunks(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many runs' rows go out in chunks of a bounded size, each written and recorded before the
    next is read: memory stays bounded, and every row arrives once."""
    from wfkit.logs import _steplog
    from wfkit.store._store import Store

    flow = two_step_flow("backlog")
    runs = [flow.run({"i": i}) for i in range(3)]
    events = wf.Workspace().events()
    sql(workspace, "UPDATE runs SET exported_seq = 0")
    marks: list[dict[str, int]] = []
    mark = Store.mark_exported

    def noted(self: Store, last_seqs: dict[str, int]) -> None:
        marks.append(dict(last_seqs))
        mark(self, last_seqs)

    monkeypatch.setattr(Store, "mark_exported", noted)
    monkeypatch.setattr(_steplog, "_EXPORT_CHUNK_ROWS", 3)
    store = wf.Workspace().store
    assert 6 == _steplog.export_runs(store, workspace, [r.run_id for r in runs])
    assert [{runs[0].run_id: 2, runs[1].run_id: 2}, {runs[2].run_id: 2}] == marks
    assert event_keys(events) == frame_keys(wf.steps())


def test_rows_journaled_before_a_kill_after_the_runs_are_all_in_the_log(workspace: Path, tmp_path: Path) -> None:
    """A process killed right after its runs returned, its background export maybe unfinished:
    the next reader's step log holds every journal row once."""
    done = run_child(
        workspace,
        tmp_path,
        """
        import os, signal
        import wfkit as wf
        flow = wf.Workflow("killed-after")
        flow.step(lambda s: {"x": 1}, name="one")
        flow.step(lambda s: {"y": 2}, name="two")
        flow.chain("one", "two")
        for i in range(5):
            flow.run({"i": i})
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    assert -signal.SIGKILL == done.returncode, done.stderr
    events = wf.Workspace().events()
    assert 10 == len(events)
    frame = wf.steps()
    assert event_keys(events) == frame_keys(frame)


def test_rows_of_a_run_killed_before_it_finished_are_exported(workspace: Path, tmp_path: Path) -> None:
    """A process SIGKILLed in a sink after its run's last event: its journal rows reach the log."""
    done = run_child(
        workspace,
        tmp_path,
        """
        import os, signal
        import wfkit as wf
        flow = wf.Workflow("killed-in-sink")
        flow.step(lambda s: {"x": 1}, name="one")
        flow.step(lambda s: {"y": 2}, name="two")
        flow.chain("one", "two")
        flow.run({"i": 0})
        def kill_after_last(event):
            if event.step == "two":
                os.kill(os.getpid(), signal.SIGKILL)
        flow.run({"i": 1}, sinks=[kill_after_last])
        """,
    )
    assert -signal.SIGKILL == done.returncode, done.stderr
    events = wf.Workspace().events()
    assert 4 == len(events)
    # The dead process's lease also runs out: still the rows must come.
    sql(workspace, "UPDATE runs SET lease_expires = 0")
    assert event_keys(events) == frame_keys(wf.steps())


def test_temporary_and_truncated_leftovers_are_ignored(workspace: Path) -> None:
    """A crashed writer's temporary file (truncated parquet) is never read as part of the log."""
    flow = two_step_flow("leftovers")
    flow.run({"i": 1})
    wf.steps()
    [segment] = parquet_files(workspace)
    whole = segment.read_bytes()
    (segment.parent / f".{segment.name}.deadbeef.tmp").write_bytes(whole[: len(whole) // 2])
    (segment.parent / ".something.tmp").write_bytes(b"PAR1\x00\x01")
    (segment.parent / ".half-written.parquet").write_bytes(whole[:100])

    assert [segment] == segment_files(steps_dir(workspace))
    assert 2 == len(wf.steps())
    assert 2 == len(pd.read_parquet(steps_dir(workspace)))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kills the asking process (POSIX)")
def test_temporaries_of_an_asker_killed_before_it_placed_them_are_swept(workspace: Path, tmp_path: Path) -> None:
    """A process SIGKILLed after its export process wrote a background export's segments under
    temporary names but before it renamed them into place: the next reader (another process)
    deletes those temporaries, whose writer is gone, and reads every row once; a temporary whose
    owner is alive (this process) is left for it to rename."""
    script = tmp_path / "asker.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            import wfkit as wf
            from wfkit.logs import _steplog
            flow = wf.Workflow("asker-killed")
            flow.step(lambda s: {"x": 1}, name="one")
            flow.step(lambda s: {"y": 2}, name="two")
            flow.chain("one", "two")
            runs = [flow.run({"i": i}) for i in range(3)]
            exporter = _steplog.Exporter(delay=3600)

            def stop_before_placing(segments):  # the reply came: wait here to be killed
                print("written", exporter._process.pid, flush=True)
                time.sleep(3600)

            _steplog.place_segments = stop_before_placing
            for run in runs:
                exporter.submit(wf.Workspace().store, wf.Workspace().path, run.run_id)
            exporter.flush(elsewhere=True)
            """
        )
    )
    env = {**os.environ, "WFKIT_HOME": str(workspace), "WFKIT_SYNCHRONOUS": "normal"}
    asker = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert asker.stdout is not None
        line = asker.stdout.readline()
        assert line.startswith("written"), line
        export_pid = int(line.split()[1])
    finally:
        os.kill(asker.pid, signal.SIGKILL)
        asker.wait()
        assert asker.stdout is not None
        asker.stdout.close()
    deadline = time.monotonic() + 60  # the export process ends as its pipe closes
    while pid_alive(export_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = sorted(p.name for p in steps_dir(workspace).rglob(".*.tmp"))
    assert 3 == len(left), left  # the killed process's export, never renamed into place
    folder = steps_dir(workspace).rglob(".*.tmp").__next__().parent
    mine = folder / "part-mine-000001-000002.parquet"
    from wfkit.logs._steplog import _write_file

    own = _write_file(pa.table({"x": [1]}), mine, place=False)  # a live writer's, still to be renamed

    frame = wf.steps(workspace)

    assert 6 == len(frame)
    assert Counter(sql(workspace, "SELECT run_id, seq FROM journal")) == Counter(
        zip(frame["run_id"], frame["seq"], strict=True)
    )
    assert [own.name] == sorted(p.name for p in steps_dir(workspace).rglob(".*"))
    own.unlink()


# ---- compaction ---------------------------------------------------------------------------------


def test_compaction_merges_small_files_once(workspace: Path) -> None:
    """compact() merges each partition's small files into one compact-*.parquet, every row once,
    and a second compaction after more runs carries the first one's rows along."""
    flow = two_step_flow("compacted")
    for i in range(4):
        flow.run({"i": i})
    before = wf.steps()
    folders = {p.parent for p in parquet_files(workspace)}

    result = compact(workspace)
    files = parquet_files(workspace)
    assert {"merged": 4, "written": len(folders)} == result
    assert all(p.name.startswith("compact-") for p in files)
    assert len(folders) == len(files)
    assert schema() == pq.read_schema(files[0])
    after = wf.steps()
    assert frame_keys(before) == frame_keys(after)

    flow.run({"i": 9})
    wf.steps()  # the new run's segment is exported (compact() does not wait for exports)
    assert {"merged": 2 * len(folders), "written": len(folders)} == compact(workspace)
    assert frame_keys(wf.steps()) == event_keys(wf.Workspace().events())
    assert 10 == len(wf.steps())
    assert {"merged": 0, "written": 0} == compact(workspace)


def _three_runs_to_merge(
    workspace: Path, name: str
) -> tuple[wf.Workflow, list[Any], Path, list[Path], pa.Table, bytes]:
    """Three runs of a two-step flow, exported: the flow, their events, the one folder of segments,
    its segment files, their rows as one table and their names as a merged file lists them."""
    flow = two_step_flow(name)
    for i in range(3):
        flow.run({"i": i})
    events = wf.Workspace().events()
    wf.steps()
    [folder] = {p.parent for p in parquet_files(workspace)}
    sources = segment_files(folder)
    table = pa.concat_tables([pq.read_table(p, schema=schema()) for p in sources])
    return flow, events, folder, sources, table, json.dumps(sorted(p.name for p in sources)).encode()


def test_a_crash_mid_compaction_shows_no_row_twice(workspace: Path) -> None:
    """A merged file written but its sources not yet deleted: readers skip the sources, and the
    next compaction keeps them skipped."""
    flow, events, folder, _, table, names = _three_runs_to_merge(workspace, "half-compacted")
    _write_atomic(table, folder / "compact-crashed.parquet", {SOURCES_KEY: names})
    assert 4 == len(parquet_files(workspace))  # the sources are still there

    assert event_keys(events) == frame_keys(wf.steps())
    flow.run({"i": 7})
    wf.steps()
    compact(workspace)
    assert event_keys(wf.Workspace().events()) == frame_keys(wf.steps())


def test_two_compactions_at_once_show_every_row_once(workspace: Path) -> None:
    """Two processes compacting one folder at once each merge the same files into a file of their
    own (and one that listed a file more merges a superset): readers count each row once."""
    flow, events, folder, sources, table, names = _three_runs_to_merge(workspace, "compacted-twice")
    # What two concurrent compactions leave: a merged file each, their sources deleted.
    for name in ("compact-one-process.parquet", "compact-other-process.parquet"):
        _write_atomic(table, folder / name, {SOURCES_KEY: names})
    for source in sources:
        source.unlink()
    assert event_keys(events) == frame_keys(wf.steps())
    assert len(events) == len(pd.read_parquet(steps_dir(workspace)).drop_duplicates(["run_id", "seq"]))

    # One that listed the folder after another run's segment landed merged a superset.
    flow.run({"i": 3})
    events = wf.Workspace().events()
    wf.steps()
    live = segment_files(folder)
    more = pa.concat_tables([pq.read_table(p, schema=schema()) for p in live])
    inherited = json.loads(pq.read_schema(folder / "compact-other-process.parquet").metadata[SOURCES_KEY])
    listed = sorted({*(p.name for p in live), *inherited})
    _write_atomic(more, folder / "compact-superset.parquet", {SOURCES_KEY: json.dumps(listed).encode()})
    assert event_keys(events) == frame_keys(wf.steps())
    compact(workspace)
    assert event_keys(events) == frame_keys(wf.steps())


@pytest.mark.slow  # 150 runs, then 8 compacting processes: about 12 s
def test_compactions_in_two_processes_at_once_both_succeed(workspace: Path, tmp_path: Path) -> None:
    """A compaction whose sources another process merged (and deleted) meanwhile leaves the folder
    to it instead of failing on a vanished file; every row still shows once."""
    flow = two_step_flow("compacting-processes")
    for i in range(150):
        flow.run({"i": i})
    events = wf.Workspace().events()
    wf.steps()
    code = "import sys; from pathlib import Path; from wfkit.logs._steplog import compact; compact(Path(sys.argv[1]))"
    for round_ in range(4):
        copy = tmp_path / f"copy{round_}"
        subprocess.run(["cp", "-r", str(workspace), str(copy)], check=True)
        children = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(copy)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [child.communicate(timeout=120) for child in children]
        assert [0, 0] == [child.returncode for child in children], [err for _, err in outputs]
        assert event_keys(events) == frame_keys(wf.steps(copy))


def test_compaction_between_a_crashed_export_and_a_resume_keeps_rows_once(workspace: Path) -> None:
    """A halted run's export is written but not recorded, compaction merges it, the run resumes:
    every journal row still shows once."""
    flow = wf.Workflow("halting-compacted")
    flow.step(lambda s: {"x": 1}, name="quote")
    flow.step(lambda s: {"paid": True}, name="pay", approval="payments need a human")
    flow.chain("quote", "pay")
    first = flow.run({}, raise_on_error=False)
    flow.run({}, raise_on_error=False)
    wf.steps()
    sql(workspace, "UPDATE runs SET exported_seq = 0 WHERE run_id = ?", (first.run_id,))
    compact(workspace)

    flow.resume(first.run_id, policy="approve")
    assert event_keys(wf.Workspace().events()) == frame_keys(wf.steps())


# ---- many processes -----------------------------------------------------------------------------


def test_several_processes_log_into_one_workspace(workspace: Path, tmp_path: Path) -> None:
    """Four processes of twenty runs each: their own exports land every row once, no conflicts."""
    script = tmp_path / "writer.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import wfkit as wf
            flow = wf.Workflow("parallel-writers")
            flow.step(lambda s: {"x": s["i"]}, name="one")
            flow.step(lambda s: {"y": s["x"] * 2}, name="two")
            flow.chain("one", "two")
            for i in range(20):
                flow.run({"i": i, "writer": sys.argv[1]})
            """
        )
    )
    env = {**os.environ, "WFKIT_HOME": str(workspace), "WFKIT_SYNCHRONOUS": "normal"}
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(n)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for n in range(4)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [0, 0, 0, 0] == [child.returncode for child in children], [err for _, err in outputs]

    events = wf.Workspace().events()
    assert 4 * 20 * 2 == len(events)
    # The writers' own background exports (flushed at exit) hold every row, before any recovery.
    written = pd.concat([pq.read_table(p).to_pandas() for p in segment_files(steps_dir(workspace))])
    assert len(events) == len(written)
    assert not written.duplicated(["run_id", "seq"]).any()
    frame = wf.steps()
    assert event_keys(events) == frame_keys(frame)
    assert 80 == frame["run_id"].nunique()


# ---- durable waits --------------------------------------------------------------------------------


def test_durable_wait_is_a_column_appended_after_seq(workspace: Path) -> None:
    """The file schema ends with seq, the fields appended before, then durable_wait_s,
    model_latency_s and ttft_s (float64); durable_wait_s is filled for checkpointed attempts."""
    two_step_flow("waits").run({"i": 1})
    names = schema().names
    assert ["seq", "map_index", "parent_run_id", "durable_wait_s", "model_latency_s", "ttft_s"] == names[-6:]
    timed = ("durable_wait_s", "model_latency_s", "ttft_s")
    assert {pa.float64()} == {schema().field(name).type for name in timed}
    frame = wf.steps(workspace, workflow="waits")
    assert 2 == len(frame)
    assert (frame["durable_wait_s"] > 0).all()


def test_files_written_before_the_column_existed_read_as_null(workspace: Path) -> None:
    """A segment without durable_wait_s (an older wfkit's) reads back with nulls, beside new rows."""
    two_step_flow("mixed").run({"i": 1})
    wf.steps(workspace)  # exports
    [path] = parquet_files(workspace)
    old = pq.read_table(path).drop(["durable_wait_s"])
    _write_atomic(old.replace_schema_metadata(None), path.with_name("part-older-000001-000002.parquet"))
    frame = wf.steps(workspace, workflow="mixed")
    assert 4 == len(frame)
    assert 2 == frame["durable_wait_s"].isna().sum()
    compact(workspace, small=2**30)
    assert 4 == len(wf.steps(workspace, workflow="mixed"))


# ---- properties: a journal row comes back from parquet as it went in ---------------------------------

_words = st.text(alphabet="abcdefghij XYZ_-.é", max_size=12)
_maybe = st.none() | _words
_events = st.builds(
    wf.StepEvent,
    run_id=st.just("r"),
    workflow=st.sampled_from(["w", "w/two", "wé"]),
    workflow_version=_words,
    step=st.text(alphabet="abc_", min_size=1, max_size=5),
    visit=st.integers(1, 5),
    attempt=st.integers(0, 5),
    status=st.sampled_from(["ok", "retry", "failed", "timeout", "approved"]),
    error_kind=st.none() | st.sampled_from(["transient", "permanent", "unknown"]),
    error_type=_maybe,
    error_message=_maybe,
    # Years apart (a partition each) or within one hour (runs sharing a partition).
    started_at=st.floats(1.6e9, 1.9e9) | st.floats(1.7e9, 1.7e9 + 3600),
    ended_at=st.just(0.0),
    latency_s=st.floats(0, 100),
    queue_s=st.floats(0, 1),
    retry_delay_s=st.none() | st.floats(0, 10),
    route_taken=_maybe,
    tools=st.none() | st.lists(_words, max_size=3).map(tuple),
    model=_maybe,
    tokens_in=st.none() | st.integers(0, 10**6),
    tokens_out=st.none() | st.integers(0, 10**6),
    cost_usd=st.none() | st.floats(0, 5),
    approver=_maybe,
    decision_comment=_maybe,
    parameters_hash=_maybe,
    host=_maybe,
    extra=st.none() | st.dictionaries(_words, st.integers(-(2**53), 2**53) | _words, max_size=3),
    map_index=st.none() | st.integers(0, 1000),
    parent_run_id=_maybe,
    durable_wait_s=st.none() | st.floats(0, 10),  # every field named: builds would draw NaN for it
    model_latency_s=st.none() | st.floats(0, 10),
    ttft_s=st.none() | st.floats(0, 10),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_events, min_size=1, max_size=4), min_size=1, max_size=3))
def test_journal_rows_come_back_from_parquet_as_written(tmp_path: Path, runs: list[list[wf.StepEvent]]) -> None:
    """Events of runs journaled, exported to parquet together and read back as a frame equal the
    events, field by field; each segment holds one run's rows, and the ledger has every run's last."""
    import uuid

    from wfkit.logs._steplog import export_runs, read_steps
    from wfkit.store._store import Store

    ws = tmp_path / uuid.uuid4().hex
    store = Store(ws / DB_NAME, synchronous="normal")
    expected: list[wf.StepEvent] = []
    try:
        for events in runs:
            run_id = uuid.uuid4().hex
            events = [e._replace(run_id=run_id, ended_at=e.started_at + e.latency_s) for e in events]
            store.create_run(
                {
                    "run_id": run_id,
                    "workflow": "w",
                    "workflow_version": "v",
                    "fingerprint": "f",
                    "definition": "{}",
                    "inputs": "{}",
                }
            )
            store.journal(events)
            expected.extend(events)
        run_ids = list(dict.fromkeys(e.run_id for e in expected))
        assert len(expected) == export_runs(store, ws, run_ids)
        assert {run_id: len(events) for run_id, events in zip(run_ids, runs, strict=True)} == store.export_ledger()
        frame = read_steps(steps_dir(ws))
    finally:
        store.close()
    for path in parquet_files(ws):
        (run_id,) = set(pq.read_table(path, columns=["run_id"])["run_id"].to_pylist())
        assert path.name.startswith(f"part-{run_id}-")
    back = sorted(frame.to_dict("records"), key=lambda r: (run_ids.index(r["run_id"]), r["seq"]))
    assert len(expected) == len(back)
    for event, row in zip(expected, back, strict=True):
        want = event._asdict()
        got = {name: _plain(name, row[name]) for name in want}
        for name in ("started_at", "ended_at"):
            assert abs(want[name] - got[name]) < 1e-5  # parquet keeps microseconds
            want[name] = got[name]
        assert want == got


def _plain(name: str, value: Any) -> Any:
    """A frame cell as the StepEvent field it came from (NaN for a missing value, categories as str)."""
    if name == "tools":
        return None if value is None else tuple(str(v) for v in value)
    if value is None or (isinstance(value, float) and value != value):
        return None
    if name == "extra":
        return json.loads(value)
    if name in ("started_at", "ended_at"):
        return value.timestamp()
    if name in ("visit", "attempt", "tokens_in", "tokens_out"):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return float(value) if isinstance(value, float) else value


def test_a_run_ending_at_interpreter_shutdown_exports_quietly(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When atexit and threads are refused (the interpreter is shutting down), submit exports at
    once and raises nothing: a clean exit, and no row lost."""
    import atexit
    import threading

    from wfkit.logs._steplog import Exporter

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("can't register atexit after shutdown")

    flow = two_step_flow("shutdown")
    run = flow.run({"i": 1})
    exporter = Exporter(delay=60)
    monkeypatch.setattr(atexit, "register", refuse)
    monkeypatch.setattr(threading.Timer, "start", refuse)
    exporter.submit(wf.Workspace().store, workspace, run.run_id)
    assert [(2,)] == sql(workspace, "SELECT exported_seq FROM runs")
    assert 2 == len(pq.read_table(parquet_files(workspace)[0]))


def test_a_script_whose_run_ends_during_exit_leaves_no_traceback(tmp_path: Path) -> None:
    """A run still going when the script's last line returns ends during shutdown without a traceback."""
    script = tmp_path / "exit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, atexit, threading, time, wfkit as wf
            exiting = threading.Event()
            flow = wf.Workflow("exiting")
            @flow.step
            async def slow(state):
                while not exiting.is_set():  # the step ends only once the interpreter shuts down
                    await asyncio.sleep(0.01)
                return {{"x": 1}}
            run = flow.start({{}}, workspace={str(tmp_path / "ws")!r})
            def at_exit():
                exiting.set()
                while not run.done():  # the run ends while the interpreter shuts down
                    time.sleep(0.01)
            atexit.register(at_exit)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    assert (0, "") == (done.returncode, done.stderr)
    assert 1 == len(wf.steps(tmp_path / "ws"))


# ---- reading at columnar speed: dictionaries, order only when the frame shows it -------------------


def write_dataset(root: Path) -> None:
    """Three segment files in two workflows' partitions, whose runs overlap in time and whose
    dictionaries list the steps in different orders (one file has no error at all)."""
    base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
    layout = [
        ("zeta", "r1", ["search", "answer", "search"], [0.0, 2.0, 4.0], [None, "transient", None]),
        ("alpha", "r2", ["plan", "answer"], [1.0, 2.0], [None, None]),
        ("alpha", "r3", ["answer", "plan", "check"], [0.5, 3.0, 3.0], ["permanent", None, "unknown"]),
    ]
    for workflow, run_id, step_names, offsets, kinds in layout:
        rows = len(step_names)
        table = pa.table(
            {
                "run_id": [run_id] * rows,
                "step": step_names,
                "visit": [1] * rows,
                "attempt": [1] * rows,
                "status": ["ok" if k is None else "retry" for k in kinds],
                "error_kind": kinds,
                "started_at": pa.array([int((base + o) * 1e6) for o in offsets], pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "latency_s": [0.1 * (i + 1) for i in range(rows)],
                "seq": list(range(1, rows + 1)),
            }
        )
        columns = {
            f.name: table.column(f.name) if f.name in table.column_names else pa.nulls(rows, f.type) for f in schema()
        }
        folder = root / f"workflow={workflow}" / "date=2026-03-01"
        _write_atomic(pa.table(columns, schema=schema()), folder / f"part-{run_id}-000001-{rows:06d}.parquet")


def test_categorical_columns_read_as_dictionaries_with_sorted_categories(tmp_path: Path) -> None:
    """The categorical columns (steps, statuses, partitions...) come back as categoricals whose
    categories are sorted strings, holding the same values a plain pyarrow read gives."""
    write_dataset(tmp_path)
    frame = wf.steps(tmp_path, sort=False)
    plain = pads.dataset(tmp_path, format="parquet", partitioning="hive").to_table().to_pandas()
    for name in ("workflow", "step", "status", "error_kind", "date", "model"):
        column = frame[name]
        assert isinstance(column.dtype, pd.CategoricalDtype)
        assert sorted(column.cat.categories) == list(column.cat.categories)
        assert "str" == str(column.cat.categories.dtype)
        assert [None if pd.isna(v) else str(v) for v in plain[name]] == [None if pd.isna(v) else str(v) for v in column]
    assert ["answer", "check", "plan", "search"] == list(frame["step"].cat.categories)
    assert ["alpha", "zeta"] == list(frame["workflow"].cat.categories)
    assert 0 == len(frame["model"].cat.categories)  # a column nobody filled: no categories, all missing
    assert 8 == int(frame["model"].isna().sum())


def test_rows_in_start_order_when_the_frame_has_the_start_time(tmp_path: Path) -> None:
    """All columns: rows in start order, ties in the files' order (a run's rows by seq). Columns without started_at:
    the files' order (no sort), unless sort=True asks for it; sort=False never sorts."""
    write_dataset(tmp_path)
    ordered = wf.steps(tmp_path)
    starts = list(ordered["started_at"])
    assert sorted(starts) == starts
    assert [("r1", 1), ("r3", 1), ("r2", 1), ("r2", 2), ("r1", 2), ("r3", 2), ("r3", 3), ("r1", 3)] == list(
        zip(ordered["run_id"], ordered["seq"], strict=True)
    )
    unsorted = wf.steps(tmp_path, sort=False)
    assert sorted(starts) != list(unsorted["started_at"])
    some = wf.steps(tmp_path, columns=["run_id", "seq"])
    assert ["run_id", "seq"] == list(some.columns)
    assert list(zip(unsorted["run_id"], unsorted["seq"], strict=True)) == list(
        zip(some["run_id"], some["seq"], strict=True)
    )
    asked = wf.steps(tmp_path, columns=["run_id", "seq"], sort=True)
    assert ["run_id", "seq"] == list(asked.columns)
    assert list(zip(ordered["run_id"], ordered["seq"], strict=True)) == list(
        zip(asked["run_id"], asked["seq"], strict=True)
    )


def test_a_misspelt_column_of_a_workspace_is_the_callers_mistake(workspace: Path) -> None:
    """wf.steps(columns=[...]) with a name that is no column, on a workspace's log, said the step log
    could not be read and to run `wfkit doctor`, as if a file were damaged: it names the column, the
    closest one, and every column, and moves nothing aside."""
    two_step_flow("colflow").run({"i": 1})
    said = r"unknown step-log column\(s\) 'latncy_s' \(did you mean 'latency_s'\?\)"
    with pytest.raises(ValueError, match=said) as caught:
        wf.steps(columns=["step", "latncy_s"])
    assert "doctor" not in str(caught.value)
    assert "the columns are run_id, " in str(caught.value)
    with pytest.raises(TypeError, match=r"pass \['latency_s'\]"):
        wf.steps(columns="latency_s")
    assert not (workspace / DAMAGED_DIR).exists()
    assert ["step", "latency_s"] == list(wf.steps(columns=["step", "latency_s"]).columns)


def test_filters_on_categorical_and_partition_columns(tmp_path: Path) -> None:
    """Filters on dictionary-read columns and on the partitions select the same rows as on strings."""
    write_dataset(tmp_path)
    assert ["r2", "r2", "r3", "r3", "r3"] == sorted(wf.steps(tmp_path, workflow="alpha")["run_id"])
    assert 3 == len(wf.steps(tmp_path, step=["answer"]))
    assert ["r1", "r3", "r3"] == sorted(wf.steps(tmp_path, status="retry")["run_id"])
    with pytest.warns(UserWarning, match="no row of the step log"):
        assert 0 == len(wf.steps(tmp_path, workflow="nobody", columns=["step"]))
    with pytest.warns(UserWarning, match="no row of the step log"):
        assert isinstance(wf.steps(tmp_path, workflow="nobody")["step"].dtype, pd.CategoricalDtype)


def test_a_filter_no_row_can_match_says_so(tmp_path: Path) -> None:
    """wf.steps(step="anwser") or status="error" came back as an empty frame, which reads as "it
    never happened": a status no attempt can have is refused naming the statuses, and a workflow,
    or step that no row holds warns naming the closest value and those there are. An empty
    answer to a real question says nothing."""
    write_dataset(tmp_path)
    with pytest.raises(ValueError, match=r"status= 'error' .*is no attempt status; .*one of ok, retry, failed"):
        wf.steps(tmp_path, status="error")
    with pytest.raises(ValueError, match=r"'fail' \(did you mean 'failed'\?\)"):
        wf.steps(tmp_path, status=["ok", "fail"])
    with pytest.warns(
        UserWarning,
        match=r"has step 'anwser' \(did you mean 'answer'\?\); its steps are 'answer', 'check', 'plan', 'search'",
    ):
        assert wf.steps(tmp_path, step="anwser").empty
    with pytest.warns(UserWarning, match=r"has workflow 'alpah' \(did you mean 'alpha'\?\)"):
        assert wf.steps(tmp_path, workflow=["alpah"], step="answer").empty
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wf.steps(tmp_path, status="failed").empty  # a real question with an empty answer
        assert wf.steps(tmp_path, workflow="alpha", run_id="r1").empty  # both held, never together
        assert wf.steps(tmp_path, run_id="r9").empty  # a run may have no row yet


def test_one_parquet_file_reads_without_partitions(tmp_path: Path) -> None:
    """A single segment file reads alone: its rows, its workflow and date from the folders around it."""
    write_dataset(tmp_path)
    [path] = list(tmp_path.glob("workflow=zeta/*/*.parquet"))
    frame = wf.steps(path)
    assert ["search", "answer", "search"] == list(frame["step"].astype(str))
    assert ["zeta"] * 3 == list(frame["workflow"].astype(str))
    assert ["2026-03-01"] * 3 == list(frame["date"].astype(str))
    loose = tmp_path / "loose.parquet"
    loose.write_bytes(path.read_bytes())
    assert wf.steps(loose)["workflow"].isna().all()


def _dictionary_chunk(values: list[str | None], dictionary: list[str]) -> pa.DictionaryArray:
    """``values`` as a dictionary array over ``dictionary`` (its own order, unused entries kept)."""
    words = list(dict.fromkeys([*dictionary, *(v for v in values if v is not None)]))
    indices = pa.array([None if v is None else words.index(v) for v in values], pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(words, pa.string()))


_WORDS = st.sampled_from(["ok", "retry", "failed", "b", "a", "é", "Z"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(
        st.tuples(
            st.lists(
                st.tuples(
                    st.one_of(st.none(), _WORDS), st.one_of(st.none(), st.text(max_size=5)), st.integers(0, 10**6)
                ),
                max_size=12,
            ),
            st.lists(_WORDS, max_size=3, unique=True),  # a chunk's dictionary may hold values no row uses
        ),
        min_size=1,
        max_size=5,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_categoricals_and_a_reordered_read_equal_the_plain_conversion(
    chunks: list[tuple[list[tuple[str | None, str | None, int]], list[str]]], seed: int
) -> None:
    """Any chunks, each with a dictionary of its own (nulls, unused entries): the categorical holds
    the rows' values with every dictionary's values as sorted categories; reordered, the frame is
    exactly the conversion of the table taken in that order."""
    import numpy as np

    from wfkit.logs._steplog import _to_pandas, _to_pandas_in_order

    table = pa.Table.from_batches(
        [
            pa.record_batch(
                {
                    "status": _dictionary_chunk([r[0] for r in rows], dictionary),
                    "error_message": pa.array([r[1] for r in rows], pa.string()),
                    "tools": pa.array([None if r[1] is None else [r[1]] for r in rows], pa.list_(pa.string())),
                    "seq": pa.array([r[2] for r in rows], pa.int64()),
                    "latency_s": pa.array([None if r[2] % 7 == 0 else r[2] / 3 for r in rows], pa.float64()),
                }
            )
            for rows, dictionary in chunks
        ]
    )
    frame = _to_pandas(table)
    assert [None if pd.isna(v) else v for v in frame["status"]] == table.column("status").to_pylist()
    every = {v for chunk in table.column("status").chunks for v in chunk.dictionary.to_pylist()}
    assert sorted(every) == list(frame["status"].cat.categories)
    order = np.random.default_rng(seed).permutation(table.num_rows)
    expected = _to_pandas(table.combine_chunks().take(order))
    actual = _to_pandas_in_order(table, order)
    assert list(expected.dtypes) == list(actual.dtypes)
    assert expected.equals(actual)


def test_a_large_reordered_read_with_unfilled_columns_equals_the_plain_conversion() -> None:
    """A table large enough to be reordered on two threads, with columns nobody filled (strings,
    lists, integers, a dictionary, all missing): the frame is exactly the conversion of the table
    taken in that order, dtypes included."""
    import numpy as np

    from wfkit.logs._steplog import _to_pandas, _to_pandas_in_order
    from wfkit.logs._tables import PARALLEL_ROWS

    n = PARALLEL_ROWS + 1000
    rng = np.random.default_rng(5)
    half = n // 2
    table = pa.Table.from_batches(
        [
            pa.record_batch(
                {
                    "run_id": pa.array([f"r{i % 977}" for i in range(lo, hi)], pa.string()),
                    "step": _dictionary_chunk([("a", "b", "c")[i % 3] for i in range(lo, hi)], ["c", "b", "a"]),
                    "latency_s": pa.array(rng.random(hi - lo)),
                    "approver": pa.nulls(hi - lo, pa.string()),
                    "tools": pa.nulls(hi - lo, pa.list_(pa.string())),
                    "tokens_in": pa.nulls(hi - lo, pa.int64()),
                    "model": pa.DictionaryArray.from_arrays(pa.nulls(hi - lo, pa.int32()), pa.array([], pa.string())),
                }
            )
            for lo, hi in ((0, half), (half, n))
        ]
    )
    order = rng.permutation(n)
    expected = _to_pandas(table.combine_chunks().take(order))
    actual = _to_pandas_in_order(table, order)
    assert list(expected.columns) == list(actual.columns)
    assert list(expected.dtypes) == list(actual.dtypes)
    assert expected.equals(actual)


def test_a_read_while_a_run_executes_says_it_is_left_out(workspace: Path) -> None:
    """A run still executing is exported when it ends: read meanwhile, its steps done were left
    out without a word (an empty frame read as no runs at all). The read says which run it lacks,
    for the workflow and run ids asked about only; once the run ended, its rows are there and
    nothing is said."""
    import asyncio

    async def main() -> None:
        run = await run_still_executing()
        with pytest.warns(UserWarning, match=rf"1 run still executing \(long {run.run_id}\) is not in the step log"):
            assert wf.steps().empty
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            wf.steps(workflow="other")  # another workflow's read: nothing to say
        await run
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ["first", "second"] == list(wf.steps()["step"])

    asyncio.run(main())
