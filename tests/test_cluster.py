"""wfkit.distributed.local_cluster: real worker processes with Dask's profiler and monitors quieted."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kernels import running_kernel

import wfkit as wf
from wfkit.distributed import QUIET_DASK_SETTINGS, local_cluster


def worker_settings() -> dict[str, object]:
    """The quiet settings' keys as this process's Dask config has them (run on a worker)."""
    import dask

    return {key: dask.config.get(key) for key in QUIET_DASK_SETTINGS}


SETTINGS_BEFORE: dict[str, object] = {}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A client of local_cluster(2), shared by this module (this process's settings noted before)."""
    from distributed import Client

    SETTINGS_BEFORE.update(worker_settings())
    with local_cluster(2) as cluster, Client(cluster, set_as_default=False) as running:
        yield running


def test_two_single_thread_worker_processes_on_loopback(client: Any) -> None:
    """local_cluster(2) runs two worker processes of one thread each, listening on 127.0.0.1 only."""
    threads = client.nthreads()
    assert [1, 1] == sorted(threads.values())
    assert all(address.startswith("tcp://127.0.0.1:") for address in threads)
    pids = set(client.run(os.getpid).values())
    assert 2 == len(pids)
    assert os.getpid() not in pids


def test_workers_run_with_the_quiet_settings(client: Any) -> None:
    """Each worker process has the quiet settings: no profiler, a slow tick, slow monitors."""
    expected = dict(QUIET_DASK_SETTINGS)
    assert [expected, expected] == list(client.run(worker_settings).values())


def _saturation(dask_scheduler: Any) -> float:
    return float(dask_scheduler.WORKER_SATURATION)


def test_the_scheduler_sends_a_worker_no_task_ahead(client: Any) -> None:
    """The scheduler holds the partitions left until a worker thread frees (worker-saturation 1.0),
    so no worker holds one it has not started while another idles."""
    assert 1.0 == client.run_on_scheduler(_saturation)


def test_this_process_keeps_its_own_settings(client: Any) -> None:
    """Starting the cluster does not change the Dask settings of the process that started it."""
    assert SETTINGS_BEFORE == worker_settings()
    assert dict(QUIET_DASK_SETTINGS) != SETTINGS_BEFORE


def test_a_worker_restarted_after_a_crash_keeps_the_settings(client: Any) -> None:
    """A worker process SIGKILLed is started again by its nanny, with the same quiet settings."""
    before = client.run(os.getpid)
    victim = sorted(before)[0]
    os.kill(before[victim], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = client.run(os.getpid, on_error="ignore")  # the dead worker until the scheduler drops it
        if 2 == len(now) and before[victim] not in now.values():
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no worker replaced pid {before[victim]} within 60 s")
    expected = dict(QUIET_DASK_SETTINGS)
    assert [expected, expected] == list(client.run(worker_settings).values())


def test_an_eval_on_it_matches_the_local_eval(client: Any, tmp_path: Path) -> None:
    """The same suite gives the same summary on local_cluster as in this process."""
    flow = wf.Workflow("double")

    @flow.step
    def double(state: Any) -> dict[str, Any]:
        return {"y": state["x"] * 2}

    rows = [{"id": f"c{i}", "x": i, "expected": {"y": 2 * i if i % 3 else -1}} for i in range(12)]
    suite = wf.evals.Suite(name="double", dataset=rows, workflow=flow, scorers=[wf.evals.exact_match("y")])
    local = wf.evals.evaluate(suite, workspace=tmp_path / "local", progress=False, store=False)
    remote = wf.evals.evaluate(
        suite, executor=client, dataset=tmp_path / "data", progress=False, store=False, announce=lambda m: None
    )
    assert local.summary.to_dict() == remote.summary.to_dict()
    assert 8 == int(remote.cases["passed"].sum())


def test_profile_true_keeps_dasks_profiler() -> None:
    """profile=True leaves Dask's profiler on and quiets the rest."""
    from distributed import Client

    with (
        local_cluster(1, profile=True, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as one,
    ):
        (settings,) = one.run(worker_settings).values()
    expected = {**QUIET_DASK_SETTINGS, "distributed.worker.profile.enabled": True}
    assert expected == settings


def test_zero_workers_is_refused() -> None:
    """workers=0 is an error that says what to pass instead."""
    with pytest.raises(ValueError, match=r"workers must be >= 1, got 0; or leave it out for one per core"):
        local_cluster(0)


def test_without_the_extra_it_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Dask installed, local_cluster says which extra to install."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r'pip install "wfkit\[dask\]"'):
        local_cluster(1)


def test_the_stop_button_of_the_notebook_that_started_it_leaves_its_workers_alone(tmp_path: Path) -> None:
    """local_cluster() started in a notebook, then the stop button on another cell (a long
    computation of the user's own): the cell ends with the KeyboardInterrupt, and the cluster
    answers the next cell on the same worker processes. Before, the interrupt, sent to the kernel's
    whole process group, killed the worker processes, and nothing started them again."""
    with running_kernel(tmp_path / "ws") as kernel:
        setup = (
            "import os, time\n"
            "from distributed import Client\n"
            "from wfkit.distributed import local_cluster\n"
            "cluster = local_cluster(1, dashboard_address=None)\n"
            "dask = Client(cluster, set_as_default=False)\n"
            "pids = dask.run(os.getpid)"
        )
        assert "ok" == kernel.run(setup, timeout=120).status
        sent = kernel.send(
            f"open({str(tmp_path / 'started')!r}, 'w').close()\ntime.sleep(120)",
            started=(tmp_path / "started").exists,
            timeout=60,
        )
        reply = kernel.interrupt(sent, timeout=60)
        time.sleep(1)  # a worker the interrupt killed would be gone by now
        again = "print('same workers', dask.run(os.getpid) == pids)\nprint('sum', dask.submit(sum, [1, 2]).result())"
        printed = kernel.run(again, timeout=120).printed
        kernel.run("dask.close(); cluster.close()", timeout=60)
    assert ("error", "KeyboardInterrupt") == (reply["status"], reply["ename"])
    assert "same workers True\nsum 3\n" == printed
