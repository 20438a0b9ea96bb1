"""`wfkit replay --dask` (wfkit.replay._replay_dask): notebooks replayed on Dask worker processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.cli._cli import main

# Notebooks run by papermill on Dask worker processes (`pytest -m "not slow"` leaves them out).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "notebooks" / "01_quickstart.ipynb"


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[Any]:
    """A LocalCluster of two single-thread worker processes."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as running:
        yield running


def test_replay_on_dask_matches_the_local_baseline(
    local_cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A baseline recorded locally is matched by the same notebook replayed on a worker; the executed
    notebook lands in the report as locally, and the notebook's runs in the dataset."""
    base, report = tmp_path / "base", tmp_path / "rep"
    args = ["replay", str(QUICKSTART), "--root", str(ROOT), "--baseline", str(base)]
    assert 0 == main([*args, "--report", str(tmp_path / "l"), "--update-baseline"])
    capsys.readouterr()
    address = local_cluster.scheduler_address
    assert 0 == main([*args, "--report", str(report), "--dask", address])
    out, err = capsys.readouterr()
    assert "              ok  notebooks/01_quickstart.ipynb  (1 run, " in out
    assert "dashboard: http://127.0.0.1:" in err
    executed = report / "runs" / "notebooks" / "01_quickstart"
    assert (executed / "01_quickstart.ipynb").exists()
    assert (executed / "kernel-stderr.log").exists()
    summary = json.loads((executed / "summary.json").read_text())
    assert len(summary["runs"]) == wf.steps(report / "dataset")["run_id"].nunique()


def test_a_notebook_missing_on_the_worker_is_a_failed_row(local_cluster: Any, tmp_path: Path) -> None:
    """A notebook the worker cannot find is a failed row saying the notebooks must be on every worker."""
    from wfkit.replay._execute import NotebookJob
    from wfkit.replay._replay_dask import dask_runner

    gone = NotebookJob(tmp_path / "gone.ipynb", "gone.ipynb", tmp_path / "out", cell_timeout=30.0)
    runner = dask_runner(local_cluster, tmp_path / "data", announce=lambda message: None)
    ((job, result),) = list(runner([gone]))
    assert gone == job
    assert "FileNotFoundError" == result["error"]["exception"]
    assert "at the same path on every worker" in result["error"]["message"]


def test_dataset_without_dask_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit replay --dataset` without --dask exits 2 and says why."""
    assert 2 == main(["replay", str(QUICKSTART), "--dataset", str(tmp_path)])
    assert "give --dask ADDRESS too" in capsys.readouterr().err
