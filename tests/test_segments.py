"""Partition attempts in a shared dataset (wfkit.logs._segments and _dataset): each attempt's files,
its commit marker, and readers that count one attempt per partition, locally and at an fsspec URL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import wfkit as wf
from wfkit.distributed._dask import PartitionOutput, Progress, run_partition
from wfkit.logs._dataset import Location, counted_files
from wfkit.logs._segments import abort_job, begin_attempt, commit_job, new_job_id, read_results, write_attempt
from wfkit.logs._steplog import compact, segment_files


def doubler() -> wf.Workflow:
    """One step: y = 2x."""
    flow = wf.Workflow("seg-doubler")

    @flow.step
    def double(state: Any) -> dict[str, Any]:
        return {"y": state["x"] * 2}

    return flow


class RunInputs:
    """A partition's work: run the doubler on some inputs in the scratch workspace (picklable)."""

    def __init__(self, xs: list[int]) -> None:
        self.xs = xs

    def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput:
        flow = doubler()
        rows = []
        for x in self.xs:
            run = flow.run({"x": x}, workspace=scratch)
            rows.append({"x": x, "run_id": run.run_id})
            progress()
        return PartitionOutput(rows, (scratch,))

    def describe(self) -> str:
        return f"doubler runs for {self.xs}"

    def at_most_once(self) -> None:
        return None  # the doubler has no irreversible step: a partition may run again


def attempt(dataset: str | Path, job: str, partition: int, xs: list[int], *, commit: bool = True) -> dict[str, Any]:
    """Run one attempt of a partition in this process, as a worker would (optionally cut off before its commit)."""
    import cloudpickle

    if commit:
        return run_partition(str(dataset), job, partition, cloudpickle.dumps(RunInputs(xs)))
    location = Location(dataset)
    started = begin_attempt(location, job, partition)
    table = pa.table({"x": xs})
    steps_rows: list[Any] = []
    write_attempt(location, started, steps_rows, table)  # writes the files, then the marker ...
    (Path(dataset) / started.marker_dir / f"{started.stem}.commit").unlink()  # ... which a kill took away
    return {}


class SynchronousLevel:
    """A partition's work that reports the durability level of its scratch workspace's store."""

    def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput:
        from wfkit.store._workspace import open_store

        level = open_store(scratch).conn.execute("PRAGMA synchronous").fetchone()[0]
        return PartitionOutput([{"synchronous": level}], (scratch,))

    def describe(self) -> str:
        return "a check of the scratch store's durability level"

    def at_most_once(self) -> None:
        return None


def test_a_partitions_scratch_store_does_not_wait_for_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a worker where $WFKIT_SYNCHRONOUS is full, a partition's scratch store is synchronous=normal (1)."""
    import cloudpickle

    monkeypatch.setenv("WFKIT_SYNCHRONOUS", "full")
    marker = run_partition(str(tmp_path), new_job_id(), 0, cloudpickle.dumps(SynchronousLevel()))
    assert [{"synchronous": 1}] == read_results(Location(tmp_path), [marker]).to_pylist()


def test_a_start_marker_is_whole_and_numbers_the_attempts(tmp_path: Path) -> None:
    """Start markers (written without fsync) are whole JSON, leave no temporary behind, and number attempts 1, 2."""
    job = new_job_id()
    location = Location(tmp_path)
    first, second = begin_attempt(location, job, 3), begin_attempt(location, job, 3)
    names = location.names(first.marker_dir)
    assert sorted([f"{first.stem}.started", f"{second.stem}.started"]) == names
    assert (1, 2) == (first.number, second.number)
    assert {"host", "pid", "started_at"} == set(json.loads(location.read_bytes(f"{first.marker_dir}/{names[0]}")))
    assert [] == [p.name for p in (tmp_path / first.marker_dir).iterdir() if p.name.startswith(".")]


def test_names_lists_files_only(tmp_path: Path) -> None:
    """Location.names: the folder's files, sorted, without subfolders or temporaries; a missing folder has none."""
    (tmp_path / "f" / "sub").mkdir(parents=True)
    for name in ("b", "a", ".a.1234.tmp"):
        (tmp_path / "f" / name).write_bytes(b"")
    assert ["a", "b"] == Location(tmp_path).names("f")
    assert [] == Location(tmp_path).names("missing")
    assert [] == Location(tmp_path).names("f/a")


def test_a_rerun_partition_counts_once(tmp_path: Path) -> None:
    """Two committed attempts of one partition: no reader counts either until the job commits, then
    readers count the one the driver took."""
    job = new_job_id()
    first = attempt(tmp_path, job, 0, [1, 2, 3])
    second = attempt(tmp_path, job, 0, [1, 2, 3])
    assert 0 == len(wf.steps(tmp_path))
    commit_job(Location(tmp_path), job, [second])
    frame = wf.steps(tmp_path)
    assert 3 == len(frame)
    second_runs = {r["run_id"] for r in Location(tmp_path).read_table(second["results"]["path"]).to_pylist()}
    assert second_runs == set(frame["run_id"])
    assert (1, 2) == (first["attempt"], second["attempt"])


def test_the_drivers_choice_wins_once_the_job_is_committed(tmp_path: Path) -> None:
    """After commit_job, the attempt the driver took counts, even when a later one committed too."""
    job = new_job_id()
    taken = attempt(tmp_path, job, 0, [5])
    attempt(tmp_path, job, 0, [5])  # a zombie re-run that finished after the driver moved on
    commit_job(Location(tmp_path), job, [taken])
    taken_run = Location(tmp_path).read_table(taken["results"]["path"]).to_pylist()[0]["run_id"]
    assert [taken_run] == list(wf.steps(tmp_path)["run_id"])


def test_an_attempt_cut_off_before_its_commit_is_never_read(tmp_path: Path) -> None:
    """Files of an attempt with no commit marker (a killed worker) count for nothing."""
    job = new_job_id()
    attempt(tmp_path, job, 0, [7, 8], commit=False)
    kept = attempt(tmp_path, job, 1, [9])
    commit_job(Location(tmp_path), job, [kept])
    frame = wf.steps(tmp_path)
    assert 1 == len(frame)
    assert 2 == len(list(tmp_path.glob("results/*/*.parquet")))
    assert [r["x"] for r in read_results(Location(tmp_path), [kept]).to_pylist()] == [9]


def _run_ids(dataset: Path, *markers: dict[str, Any]) -> list[str]:
    return sorted(r["run_id"] for m in markers for r in read_results(Location(dataset), [m]).to_pylist())


def test_once_a_job_commits_the_attempts_it_did_not_take_leave_the_steps_folder(tmp_path: Path) -> None:
    """commit_job moves the segments of an attempt cut off before its marker and of a re-run the
    driver did not take to steps-uncounted/JOB: pandas and DuckDB reading steps/ count each run once."""
    import duckdb
    import pandas as pd

    job = new_job_id()
    cut = attempt(tmp_path, job, 0, [1, 2])
    (tmp_path / "steps" / "_attempts" / job / f"{cut['stem']}.commit").unlink()  # killed before its marker
    taken = attempt(tmp_path, job, 0, [1, 2])
    attempt(tmp_path, job, 0, [1, 2])  # a re-run that finished after the driver had taken the one before
    other = attempt(tmp_path, job, 1, [3])
    commit_job(Location(tmp_path), job, [taken, other])
    counted = _run_ids(tmp_path, taken, other)
    assert counted == sorted(pd.read_parquet(tmp_path / "steps")["run_id"])
    glob = f"{tmp_path}/steps/**/*.parquet"
    assert counted == sorted(r[0] for r in duckdb.sql(f"select run_id from read_parquet('{glob}')").fetchall())
    assert counted == sorted(wf.steps(tmp_path)["run_id"])
    assert 4 == len(pd.read_parquet(tmp_path / "steps-uncounted" / job))  # the other two attempts' rows, kept
    assert not (tmp_path / "steps-staging" / job).exists()  # no empty folders left behind either


def test_an_aborted_job_counts_nothing_and_keeps_its_rows_aside(tmp_path: Path) -> None:
    """After abort_job no reader counts the job's rows, which wait in steps-uncounted/JOB; an attempt
    that commits after that (a partition still running when the driver gave up) goes there too."""
    import pandas as pd

    job = new_job_id()
    done = attempt(tmp_path, job, 0, [1, 2])
    aside = abort_job(Location(tmp_path), job, "SchedulerLostError: gone")
    assert str(tmp_path / "steps-uncounted" / job) == aside
    assert [] == list((tmp_path / "steps").rglob("*.parquet"))
    assert 0 == len(wf.steps(tmp_path))
    late = attempt(tmp_path, job, 1, [3])
    assert [] == list((tmp_path / "steps").rglob("*.parquet"))
    assert 0 == len(wf.steps(tmp_path))
    assert _run_ids(tmp_path, done, late) == sorted(pd.read_parquet(aside)["run_id"])
    assert [] == list((tmp_path / "steps-staging").iterdir())


def test_an_attempt_cut_off_before_its_marker_leaves_no_row_where_raw_readers_read(tmp_path: Path) -> None:
    """A worker killed after writing its segment, before its commit marker: its rows never reach
    steps/ (pandas finds no file there), and once the job is given up they wait in steps-uncounted/JOB."""
    import pandas as pd

    job = new_job_id()
    cut = attempt(tmp_path, job, 0, [1, 2])
    (tmp_path / "steps" / "_attempts" / job / f"{cut['stem']}.commit").unlink()  # killed before its marker
    assert [] == list((tmp_path / "steps").rglob("*.parquet"))
    abort_job(Location(tmp_path), job, "PartitionError: failed on every attempt")
    assert [] == list((tmp_path / "steps").rglob("*.parquet"))
    assert _run_ids(tmp_path, cut) == sorted(pd.read_parquet(tmp_path / "steps-uncounted" / job)["run_id"])


def test_a_hive_subfolder_reads_with_its_markers(tmp_path: Path) -> None:
    """Reading one workflow's folder still finds the markers above it and counts once."""
    job = new_job_id()
    attempt(tmp_path, job, 0, [1, 2])
    commit_job(Location(tmp_path), job, [attempt(tmp_path, job, 0, [1, 2])])
    folder = next((tmp_path / "steps").glob("workflow=*"))
    assert 2 == len(wf.steps(folder))


def test_an_attempt_file_without_any_markers_is_not_counted(tmp_path: Path) -> None:
    """A partition-attempt segment copied somewhere without its markers is not vouched for."""
    job = new_job_id()
    commit_job(Location(tmp_path), job, [attempt(tmp_path, job, 0, [1])])
    segment = next((tmp_path / "steps").rglob("job-*.parquet"))
    lone = tmp_path / "elsewhere"
    lone.mkdir()
    copy = lone / segment.name
    copy.write_bytes(segment.read_bytes())
    assert [] == counted_files([copy], lone)


def test_compaction_leaves_partition_attempts_whole(tmp_path: Path, workspace: Path) -> None:
    """`compact` merges a workspace's small run files but never an attempt's segment."""
    job = new_job_id()
    attempt(workspace, job, 0, [1])
    commit_job(Location(workspace), job, [attempt(workspace, job, 0, [1])])
    (aside,) = (workspace / "steps-uncounted").rglob("job-*.parquet")
    aside.rename(next((workspace / "steps").rglob("job-*.parquet")).parent / aside.name)  # put back by hand
    for x in range(3):
        doubler().run({"x": x}, workspace=workspace)
    before = len(wf.steps(workspace))
    compact(workspace)
    assert 4 == before
    assert before == len(wf.steps(workspace))
    assert 1 == len([p for p in segment_files(workspace / "steps") if p.name.startswith("job-")])
    assert 2 == len(list((workspace / "steps").rglob("job-*.parquet")))


def test_a_dataset_at_an_fsspec_url_is_written_and_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """memory:// stands for s3:// or gs://: attempts go there, and wf.steps(url) counts each run once."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = f"memory://wfkit-{new_job_id()}"
    job = new_job_id()
    attempt(url, job, 0, [1, 2])
    taken = [attempt(url, job, 0, [1, 2]), attempt(url, job, 1, [3])]
    assert [] == Location(url).files("steps/workflow=seg-doubler")  # staged until the job commits
    commit_job(Location(url), job, taken)
    assert 3 == len(wf.steps(url))
    assert 3 == len(wf.steps(url))  # a second read uses the cache, and still counts each run once
    markers = json.loads(Location(url).read_bytes(f"steps/_attempts/{job}/" + _first_commit(url, job)))
    assert job == markers["job"]


def _first_commit(url: str, job: str) -> str:
    return next(n for n in Location(url).names(f"steps/_attempts/{job}") if n.endswith(".commit"))


def test_bad_locations_and_job_ids_are_refused(tmp_path: Path) -> None:
    """An empty location and a job id with other characters are errors that say what is expected."""
    with pytest.raises(ValueError, match="a dataset location is a folder or a URL"):
        Location("")
    with pytest.raises(ValueError, match="a job id is lowercase letters and digits"):
        begin_attempt(Location(tmp_path), "Job/1", 0)


def _driven_by(dataset: Path, job: str, pid: int) -> None:
    """Record ``pid`` on this host as the driver of ``job``, as run_job does before sending work."""
    from wfkit.logs._driver import DRIVER_FILE, driver_record

    record = {**driver_record(label="runs of seg-doubler", partitions=2), "pid": pid}
    Location(dataset).write_bytes(f"steps/_attempts/{job}/{DRIVER_FILE}", json.dumps(record).encode())


def test_reading_a_job_whose_driver_died_before_its_end_warns_once_and_counts_none_of_it(tmp_path: Path) -> None:
    """A job with no end recorded whose driver (on this host) is gone: wf.steps counts none of its
    rows (they are staged, out of every reader's sight), and warns once, naming the job and the doctor
    command that gives it up; a job whose driver is alive (still running) is read without a warning."""
    import os
    import subprocess
    import sys
    import warnings

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, running, done = new_job_id() + "a", new_job_id() + "b", new_job_id() + "d"
    _driven_by(tmp_path, dead, int(ended.stdout))
    attempt(tmp_path, dead, 0, [1, 2])
    _driven_by(tmp_path, running, os.getpid())
    attempt(tmp_path, running, 0, [3])
    taken = attempt(tmp_path, done, 0, [4])
    commit_job(Location(tmp_path), done, [taken])
    said = rf"job {dead} in {tmp_path} \(runs of seg-doubler\) has no end recorded and its driver, pid \d+ on this host"
    with pytest.warns(wf.UnfinishedJobWarning, match=said) as caught:
        assert _run_ids(tmp_path, taken) == list(wf.steps(tmp_path)["run_id"])  # the ended job's run only
    assert 1 == len(caught)
    # Said at the reader's line, not at wfkit's (it pointed at _steplog.py and printed its line).
    assert (__file__, "test_segments.py") == (caught[0].filename, Path(caught[0].filename).name)
    assert "is gone: no reader counts its 1 committed partition(s)" in str(caught[0].message)
    assert f"wfkit doctor --dataset {tmp_path} --repair` records the job as aborted" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 1 == len(wf.steps(tmp_path))  # warned once: this read says nothing


def test_the_warning_for_a_whole_job_whose_driver_died_says_repair_records_it_as_committed(tmp_path: Path) -> None:
    """A job with no end recorded whose driver (on this host) is gone after every partition it planned
    committed: wf.steps counts none of it yet, and warns that the job is whole and that `wfkit doctor
    --repair` records it as committed (its rows then count)."""
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job = new_job_id() + "c"
    _driven_by(tmp_path, job, int(ended.stdout))  # a driver that planned 2 partitions
    attempt(tmp_path, job, 0, [1, 2])
    attempt(tmp_path, job, 1, [3])
    said = (
        rf"job {job} in {tmp_path} \(runs of seg-doubler\) has no end recorded .* but all 2 partitions were committed"
    )
    with pytest.warns(wf.UnfinishedJobWarning, match=said) as caught:
        assert 0 == len(wf.steps(tmp_path))
    message = str(caught[0].message)
    assert f"`wfkit doctor --dataset {tmp_path} --repair` records the job as committed: its rows then count" in message
