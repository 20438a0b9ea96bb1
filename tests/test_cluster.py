"""wfkit.distributed.local_cluster: real worker processes with Dask's profiler and monitors quieted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from kernels import running_kernel

import wfkit as wf
from wfkit.distributed import QUIET_DASK_SETTINGS, local_cluster
from wfkit.distributed._local import NOT_SERVED, NOT_STARTED, missing_remote

# Real Dask schedulers and worker processes (`pytest -m "not slow"` leaves them out).
pytestmark = pytest.mark.slow


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


def announced(executor: Any, folder: Path) -> str:
    """The line a job on ``executor`` announces before its work (one run of a one-step flow)."""
    flow = wf.Workflow("announce")

    @flow.step
    def one(state: Any) -> dict[str, Any]:
        return {"y": 1}

    said: list[str] = []
    batch = flow.run_many([{}], executor=executor, dataset=folder, progress=False, announce=said.append)
    assert ["succeeded"] == list(batch.runs["status"])
    (line,) = said
    return line


def fetch(url: str) -> tuple[int, bytes]:
    """GET ``url``: its status and body, a 404 included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def test_the_dashboard_link_announced_answers_with_the_dashboard(client: Any, tmp_path: Path) -> None:
    """local_cluster() starts a dashboard: the link a job announces, the cluster's and the client's
    are one, and it serves Dask's status page."""
    line = announced(client, tmp_path / "data")
    link = line.split("; dashboard: ")[1]
    assert link == client.cluster.dashboard_link == client.dashboard_link
    assert link.startswith("http://127.0.0.1:")
    assert link.endswith("/status")
    status, page = fetch(link)
    assert 200 == status
    assert b"<title>Dask Diagnostic UI</title>" in page
    assert f'<a href="{link}" target="_blank">{link}</a>' in client.cluster._repr_html_()


def test_no_dashboard_announces_none_and_says_how_to_get_one(tmp_path: Path) -> None:
    """local_cluster(dashboard_address=None) offers no link anywhere (the announced line, the cluster's
    and the client's link and HTML), says how to get one, and leaves port 8787 alone. Before, all
    of them offered http://127.0.0.1:8787/status, which answered 404 (Dask's scheduler serves HTTP
    without the dashboard's pages), and with 8787 in use Dask warned "Port 8787 is already in use"."""
    from distributed import Client

    with ExitStack() as stack, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cluster = stack.enter_context(local_cluster(1, dashboard_address=None))
        one = stack.enter_context(Client(cluster, set_as_default=False))
        line = announced(one, tmp_path / "data")
        port = one.scheduler_info()["services"]["dashboard"]  # Dask names its HTTP server so
        status, _ = fetch(f"http://127.0.0.1:{port}/status")
        links = (cluster.dashboard_link, one.dashboard_link)
        pages = cluster._repr_html_() + one._repr_html_()
    # Before, it took 8787 when free (keeping it from a later cluster's dashboard), else warned.
    assert [] == [str(w.message) for w in caught if "already in use" in str(w.message)]
    assert 8787 != port
    assert 404 == status
    assert line.endswith(f"; {NOT_STARTED}")
    assert "dashboard_address='127.0.0.1:8787'" in line
    assert "http" not in line
    assert ("", "") == links
    assert "/status" not in pages
    assert f":{port}" not in pages
    assert "no dashboard was started (local_cluster(..., dashboard_address=None))" in pages


def test_without_bokeh_no_dashboard_is_announced_and_it_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without bokeh the dashboard cannot start: no link is offered, and the line says what to install."""
    import dask
    from distributed import Client

    monkeypatch.setitem(sys.modules, "distributed.dashboard.scheduler", None)  # as if bokeh were missing
    # Dask's scheduler then appends its page asking for bokeh to the routes list of Dask's config
    # itself, which every later scheduler of this process would serve at /status in the dashboard's
    # place: this test's scheduler appends to a copy, dropped at its end.
    routes = list(dask.config.get("distributed.scheduler.http.routes"))
    with (
        dask.config.set({"distributed.scheduler.http.routes": routes}),
        local_cluster(1) as cluster,
        Client(cluster, set_as_default=False) as one,
    ):
        line = announced(one, tmp_path / "data")
        port = one.scheduler_info()["services"]["dashboard"]
        status, page = fetch(f"http://127.0.0.1:{port}/status")
        link = cluster.dashboard_link
        # The same scheduler in another process (a `dask scheduler` on a machine without bokeh) is
        # asked over HTTP: its page says what to install, a link worth following, so it is kept.
        remote = missing_remote(f"http://127.0.0.1:{port}/status")
    assert (200, True) == (status, b"Dask needs bokeh" in page)  # Dask's page in the dashboard's place
    assert "; no dashboard: Dask's dashboard needs bokeh>=" in line
    assert 'pip install "wfkit[dask]" (its dask[diagnostics] brings bokeh)' in line
    assert "http" not in line
    assert "" == link
    assert remote is None


def test_workers_as_threads_listen_on_loopback_too(tmp_path: Path) -> None:
    """local_cluster(processes=False) (workers as threads of this process) starts on 127.0.0.1 and
    runs a job; Dask's in-process protocol took no host, and the scheduler failed to start."""
    with local_cluster(1, processes=False, dashboard_address=None) as cluster:
        line = announced(cluster, tmp_path / "data")
        address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    assert line.endswith(f"; {NOT_STARTED}")


def test_a_dashboard_port_given_alone_listens_on_loopback_only() -> None:
    """dashboard_address=":PORT" (as Dask's documentation writes it) serves the dashboard on 127.0.0.1,
    the cluster's host, as the rest of local_cluster; Dask bound it on every interface."""
    import psutil

    with local_cluster(1, processes=False, dashboard_address=":0") as cluster:
        port = int(cluster.dashboard_link.rsplit(":", 1)[1].split("/")[0])
        listening = {
            c.laddr.ip
            for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        status, _ = fetch(cluster.dashboard_link)
    assert {"127.0.0.1"} == listening
    assert 200 == status


def test_a_dask_local_cluster_without_a_dashboard_is_announced_as_such(tmp_path: Path) -> None:
    """Dask's own LocalCluster started without a dashboard, handed to a job: no dead link announced."""
    from distributed import LocalCluster

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Port 8787 is already in use")  # Dask's own, when it is
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
            line = announced(cluster, tmp_path / "data")
    assert line.endswith(f"; {NOT_SERVED}")


UNGUARDED = """\
from wfkit.distributed import local_cluster

cluster = local_cluster(1, dashboard_address=None)
print("started")
"""


def test_a_script_starting_it_at_its_top_level_is_told_to_start_it_under_the_main_guard(tmp_path: Path) -> None:
    """A script calling local_cluster() at its top level, not under `if __name__ == "__main__":`:
    each worker process, importing the script again to start, says what to do, and so does the
    error the script ends with. It ended with "RuntimeError: Nanny failed to start." after 460 lines
    of tracebacks, multiprocessing's advice lost among them."""
    (tmp_path / "unguarded.py").write_text(UNGUARDED)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [root, os.environ.get("PYTHONPATH", "")] if p)}
    done = subprocess.run(
        [sys.executable, "unguarded.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert 1 == done.returncode
    assert "started" not in done.stdout
    worker_says = (
        "RuntimeError: local_cluster() was called while a worker process of a cluster imported the script "
        "that started it (Dask starts worker processes by importing the main module again): in that script, "
        'start the cluster under `if __name__ == "__main__":`'
    )
    assert worker_says in done.stderr
    assert (
        "RuntimeError: Nanny failed to start.\nIf unguarded.py starts the cluster at its top level: its worker "
        "processes import it again to start, and start a cluster each, which fails (their errors are above); "
        'start it under `if __name__ == "__main__":`'
    ) in done.stderr


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


def test_workers_given_as_text_is_refused() -> None:
    """workers="2" (a command line's argument passed on) is an error that says what to give; it was
    "'<' not supported between instances of 'str' and 'int'"."""
    with pytest.raises(TypeError, match=r"workers must be a whole number of worker processes, got '2'; or leave"):
        local_cluster("2")  # type: ignore[arg-type]


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
