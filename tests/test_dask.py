"""Work on Dask (wfkit._dask): real scheduler and worker processes, a worker SIGKILLed mid-partition,
an unreachable scheduler, a dataset the workers cannot see, the missing extra, the dashboard."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dask_cluster import Cluster, dask_cluster, free_port
from kernels import running_kernel
from llm_server import LLMServer

import wfkit as wf
from wfkit.cli._cli import main
from wfkit.distributed._dask import partition_size
from wfkit.distributed._local import missing_remote
from wfkit.engine._run import DetachedRun
from wfkit.model._errors import DatasetUnreachableError, PartitionError, SchedulerLostError, SchedulerUnreachableError

# Real Dask schedulers and worker processes, and waits for handshakes that never come
# (`pytest -m "not slow"` leaves them out).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUERY_ROUTER = ROOT / "evals" / "query_router"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A `dask scheduler` and two `dask worker` processes on 127.0.0.1, shared by this module."""
    with dask_cluster(tmp_path_factory.mktemp("cluster"), workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[Any]:
    """A LocalCluster of two single-thread worker processes, for the quick cases."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as running:
        yield running


def router_suite() -> wf.evals.Suite:
    """The query-router suite from its file, with the scorers whose values do not depend on timing."""
    suite = wf.evals.load_suite(QUERY_ROUTER)
    scorers = [wf.evals.route_taken(), wf.evals.tools_used(), wf.evals.contains("answer")]
    return dataclasses.replace(suite, scorers=scorers)


def slow_flow(seconds: float) -> wf.Workflow:
    """One step that sleeps ``seconds`` and returns its input squared."""
    flow = wf.Workflow("slow-square")

    @flow.step
    def square(state: Any) -> dict[str, Any]:
        time.sleep(seconds)
        return {"y": state["x"] ** 2}

    return flow


def held_flow(release: Path, first_held: int) -> wf.Workflow:
    """One step that returns its input squared; the cases from input ``first_held`` on first wait
    (60 s at most) for the file ``release`` to exist."""
    flow = wf.Workflow("held-square")

    @flow.step
    def square(state: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while state["x"] >= first_held and not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"y": state["x"] ** 2}

    return flow


def asking_flow() -> wf.Workflow:
    """One step that asks ctx.llm about the input's question (retried at once on a 5xx)."""
    flow = wf.Workflow("ask-on-dask")

    @flow.step(retry=wf.RetryPolicy(base_delay=0.01, jitter=0.0))
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        reply = await ctx.llm.complete(state["q"], ctx=ctx)
        return {"answer": reply.text, "tokens_out": reply.tokens_out}

    return flow


class LockedModel:
    """A chat model of the user's own that holds a lock, so it cannot be pickled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    async def complete(self, prompt: Any, **options: Any) -> Any:
        raise AssertionError("never called: the client is refused before any run")


def without_run_ids(frame: Any) -> list[dict[str, Any]]:
    return frame.drop(columns=["run_id"]).to_dict("records")


# ---- the quick cases: LocalCluster ------------------------------------------------------------


def test_eval_on_dask_gives_the_local_summary(local_cluster: Any, tmp_path: Path) -> None:
    """The same suite, seeds and scorers give the same summary and case rows on Dask as locally."""
    suite = router_suite()
    local = wf.evals.evaluate(suite, workspace=tmp_path / "local", progress=False)
    remote = wf.evals.evaluate(
        suite, executor=local_cluster, workspace=tmp_path / "remote", progress=False, announce=print
    )
    assert local.summary.to_dict() == remote.summary.to_dict()
    assert without_run_ids(local.cases) == without_run_ids(remote.cases)
    assert remote.saved_to is not None
    assert (remote.saved_to / "summary.parquet").exists()


SUITE_OF_A_WORKFLOW = """
import wfkit as wf

flow = wf.Workflow("suite-file-flow")

@flow.step
def kind(state):
    return {"kind": state["q"].split()[0]}

def first_word(case, run):
    return run.state["kind"] == case.expected["kind"]

suite = wf.evals.Suite(name="of-a-workflow", dataset=[{"inputs": {"q": f"w{i} x"}, "expected": {"kind": f"w{i}"}}
                                                      for i in range(6)],
                       workflow=flow, scorers=[wf.evals.custom(first_word)])
"""


def test_a_suite_file_holding_a_workflow_and_its_own_scorer_runs_on_dask(local_cluster: Any, tmp_path: Path) -> None:
    """workflow= a Workflow (not a factory) and custom(fn), both defined in the suite file: the
    workers get them by value, as they get a factory, and score as a local eval does."""
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "suite.py").write_text(SUITE_OF_A_WORKFLOW)
    suite = wf.evals.load_suite(tmp_path / "suite")
    local = wf.evals.evaluate(suite, workspace=tmp_path / "local", progress=False)
    remote = wf.evals.evaluate(suite, executor=local_cluster, workspace=tmp_path / "remote", progress=False)
    assert [1.0] * 6 == list(remote.cases["value"])
    assert without_run_ids(local.cases) == without_run_ids(remote.cases)


def test_eval_step_logs_land_in_the_dataset_once(local_cluster: Any, tmp_path: Path) -> None:
    """Every run of a Dask eval has its step rows in the dataset, and wf.steps reads each once."""
    suite = router_suite()
    result = wf.evals.evaluate(suite, executor=local_cluster, dataset=f"file://{tmp_path / 'data'}", progress=False)
    frame = wf.steps(tmp_path / "data")
    assert set(result.cases["run_id"]) == set(frame["run_id"])
    assert 0 == int(frame.duplicated(["run_id", "step", "visit", "attempt"]).sum())
    assert {"query-router-keywords", "query-router-llm"} == set(frame["workflow"].astype(str))


def test_an_eval_on_dask_into_a_dataset_url_reads_its_step_log_from_there(
    local_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dataset= an fsspec URL (local:// stands for s3://): result.steps() reads the eval's runs from
    it, as wf.steps(url) does (it said the result "was built, not evaluated")."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = f"local://{tmp_path / 'data'}"
    result = wf.evals.evaluate(router_suite(), executor=local_cluster, dataset=url, workspace=tmp_path, progress=False)
    steps = result.steps()
    assert sorted(set(result.cases["run_id"])) == sorted(set(steps["run_id"]))
    assert len(wf.steps(url)) == len(steps)
    assert url == result.runs_workspace


def test_eval_on_dask_keeps_its_runs_out_of_the_interactive_step_log(local_cluster: Any, workspace: Path) -> None:
    """With no dataset=, a Dask eval's runs land in WORKSPACE/evals/runs beside a local eval's, so
    wf.steps() of interactive runs never counts them, and result.steps() reads each eval's own runs."""
    suite = dataclasses.replace(router_suite(), variants={"keywords": {"classifier": "keywords"}})
    local = wf.evals.evaluate(suite, progress=False)
    remote = wf.evals.evaluate(suite, executor=local_cluster, progress=False)
    assert workspace / "evals" / "runs" == local.runs_workspace == remote.runs_workspace
    assert not (workspace / "steps").exists()  # no interactive step log was written at all
    for result in (local, remote):
        steps = result.steps()
        assert sorted(set(result.cases["run_id"])) == sorted(set(steps["run_id"]))
        assert 20 == (steps["step"] == "classify").sum()
    assert 40 == wf.steps(workspace / "evals" / "runs")["run_id"].nunique()


def test_run_many_on_dask_matches_local(local_cluster: Any, tmp_path: Path) -> None:
    """run_many gives a row per input in input order, the same statuses and states as locally."""
    flow = slow_flow(0.0)
    inputs = [{"x": i} for i in range(12)]
    local = flow.run_many(inputs, progress=False, workspace=tmp_path / "ws")
    remote = flow.run_many(inputs, executor=local_cluster, dataset=tmp_path / "data", progress=False, partition_size=5)
    keep = ["index", "status", "state"]
    assert local.runs[keep].to_dict("records") == remote.runs[keep].to_dict("records")
    assert [i**2 for i in range(12)] == [s["y"] for s in remote.runs["state"]]
    assert sorted(remote.runs["run_id"]) == sorted(remote.steps()["run_id"])


def test_run_many_on_dask_with_a_simulated_chat_client_matches_local(local_cluster: Any, tmp_path: Path) -> None:
    """llm=ChatClient(transport=SimulatedModel(...)) reaches the workers by its configuration: the
    same statuses, replies and token counts as a local batch."""
    model = wf.llm.SimulatedModel(p50=0.001, p99=0.005, seed=7, reply={r"refund": "label: refund"})
    llm = wf.llm.ChatClient(transport=model, prices={"simulated": (0.001, 0.002)})
    inputs = [{"q": f"question {i}" + (" about a refund" if i % 3 == 0 else "")} for i in range(8)]
    flow = asking_flow()
    local = flow.run_many(inputs, llm=llm, progress=False, workspace=tmp_path / "ws")
    remote = flow.run_many(
        inputs, executor=local_cluster, llm=llm, dataset=tmp_path / "data", progress=False, partition_size=3
    )
    keep = ["index", "status", "state"]
    assert local.runs[keep].to_dict("records") == remote.runs[keep].to_dict("records")
    assert ["succeeded"] * 8 == list(remote.runs["status"])
    assert "label: refund" == remote.runs["state"][3]["answer"]
    steps = remote.steps()
    assert {"simulated"} == set(steps["model"].astype(str))
    assert float(local.steps()["cost_usd"].sum()) == pytest.approx(float(steps["cost_usd"].sum()))


def test_run_many_on_dask_sends_the_chat_clients_key_and_keeps_it_out_of_the_dataset(
    local_cluster: Any, tmp_path: Path
) -> None:
    """A ChatClient for a real endpoint reaches the workers with its API key (the server refuses
    calls without it); an error quoting the key is redacted on the worker, and no file of the
    dataset holds the key."""
    key = "opaque-dask-key-7f3a9c21"  # not key-shaped: only its marking as a secret hides it
    data = tmp_path / "data"
    with LLMServer(api_key=key) as server:
        server.script("echo_auth")  # a 500 repeating the Authorization header, then normal replies
        llm = wf.llm.ChatClient(server.url, model="test-model", api_key=key)
        batch = asking_flow().run_many(
            [{"q": f"q{i}"} for i in range(4)], executor=local_cluster, llm=llm, dataset=data, progress=False
        )
        headers = [r["headers"].get("Authorization") for r in server.requests]
    assert ["succeeded"] * 4 == list(batch.runs["status"])
    assert [f"reply to: q{i}" for i in range(4)] == [s["answer"] for s in batch.runs["state"]]
    assert [f"Bearer {key}"] * 5 == headers
    errors = [e for e in batch.steps()["error_message"] if isinstance(e, str)]
    assert 1 == len(errors)
    assert "[REDACTED]" in errors[0]
    assert key not in errors[0]
    files = [p for p in data.rglob("*") if p.is_file()]
    assert files
    assert [] == [p.name for p in files if key.encode() in p.read_bytes()]


def test_a_record_cassette_on_dask_workers_keeps_every_partition_and_replays_there(
    local_cluster: Any, tmp_path: Path
) -> None:
    """A Cassette in record mode records on the workers without one partition erasing another's
    lines; a replay cassette then answers the same batch on the workers with the server gone."""
    path, key = tmp_path / "c.jsonl", "opaque-cassette-key-5521"
    inputs = [{"q": f"q{i}"} for i in range(4)]
    flow = asking_flow()
    with LLMServer(api_key=key) as server:
        url = server.url
        cassette = wf.llm.Cassette(path, mode="record")
        recording = wf.llm.ChatClient(url, model="test-model", api_key=key, transport=cassette)
        recorded = flow.run_many(
            inputs, executor=local_cluster, llm=recording, dataset=tmp_path / "a", progress=False, partition_size=1
        )
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert ["q0", "q1", "q2", "q3"] == sorted(x["request"]["body"]["messages"][0]["content"] for x in lines)
    assert key not in path.read_text()
    replaying = wf.llm.ChatClient(url, model="test-model", transport=wf.llm.Cassette(path))
    replayed = flow.run_many(
        inputs, executor=local_cluster, llm=replaying, dataset=tmp_path / "b", progress=False, partition_size=2
    )
    keep = ["index", "status", "state"]
    assert recorded.runs[keep].to_dict("records") == replayed.runs[keep].to_dict("records")
    assert ["succeeded"] * 4 == list(replayed.runs["status"])


def test_a_run_option_that_cannot_be_sent_to_workers_is_named(local_cluster: Any, tmp_path: Path) -> None:
    """An option that does not pickle is refused by name before anything is sent or written."""
    refused = r"llm= cannot be sent to Dask workers: TypeError: cannot pickle '_thread\.lock'"
    with pytest.raises(TypeError, match=refused):
        slow_flow(0.0).run_many(
            [{"x": 1}], executor=local_cluster, dataset=tmp_path / "data", llm=LockedModel(), progress=False
        )
    assert not (tmp_path / "data").exists()


def test_dashboard_link_is_announced_and_answers(local_cluster: Any, tmp_path: Path) -> None:
    """The dashboard link is announced before the work and serves the Dask dashboard."""
    said: list[str] = []
    slow_flow(0.0).run_many([{"x": 1}], executor=local_cluster, dataset=tmp_path, progress=False, announce=said.append)
    assert 1 == len(said)
    link = said[0].split("dashboard: ")[1]
    assert link.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(link, timeout=10) as reply:
        assert 200 == reply.status


def test_a_remote_schedulers_dashboard_is_announced_only_where_it_serves_one(cluster: Cluster, tmp_path: Path) -> None:
    """A `dask scheduler` names its HTTP server its dashboard even when started with --no-dashboard,
    and that link answered 404: the job now announces that it has none and how to get one. The
    shared cluster's scheduler, started with one, is still announced by its link."""
    said: list[str] = []
    flow = slow_flow(0.0)
    flow.run_many([{"x": 1}], executor=cluster.address, dataset=tmp_path / "with", progress=False, announce=said.append)
    assert said[-1].endswith(f"; dashboard: http://127.0.0.1:{cluster.dashboard}/status")
    with dask_cluster(tmp_path / "own", workers=1, dashboard=False) as own:
        dead = f"http://127.0.0.1:{own.dashboard}/status"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(dead, timeout=10)
        flow.run_many(
            [{"x": 1}], executor=own.address, dataset=tmp_path / "without", progress=False, announce=said.append
        )
    assert said[-1].endswith(
        f"; no dashboard: the scheduler serves none at {dead} (`dask scheduler --no-dashboard` starts it so); "
        "start it without --no-dashboard, with bokeh installed beside it, for one"
    )
    # A link that does not answer from here (that scheduler is gone now) says nothing against it: a
    # browser elsewhere (through a proxy, past a firewall) may still reach it, so Dask's link is kept.
    assert missing_remote(dead) is None


class _BrokenRunner(wf.Workflow):
    """A workflow whose runs cannot even start: its partitions' work raises on every attempt (a
    run's own failure would be a row)."""

    async def arun(self, inputs: Any = None, **options: Any) -> Any:
        raise RuntimeError("the runner broke before its run started")


def test_a_partition_failing_every_attempt_is_an_error_naming_it(local_cluster: Any, tmp_path: Path) -> None:
    """A partition whose work raises on every attempt raises PartitionError with its number and
    what its work raised. (It was made to raise by a run timeout of -1 s, which is now refused
    before anything is sent to Dask.)"""
    flow = _BrokenRunner("broken")
    flow.step(lambda state: {}, name="never")
    with pytest.raises(
        PartitionError, match=r"partition 0 of job \w+ failed on every attempt .*the runner broke"
    ) as info:
        flow.run_many([{"x": 1}], executor=local_cluster, dataset=tmp_path, progress=False, retries=1)
    assert 0 == info.value.partition


def test_workers_that_cannot_see_the_dataset_are_refused(local_cluster: Any) -> None:
    """An in-memory URL lives in this process only: the workers cannot see it, so nothing starts."""
    with pytest.raises(DatasetUnreachableError, match=r"cannot see the dataset memory://wfkit-test"):
        slow_flow(0.0).run_many([{"x": 1}], executor=local_cluster, dataset="memory://wfkit-test", progress=False)


def _leave_the_pool_while(status: str) -> tuple[str, bool]:
    """On a worker: set the worker's status (on its loop, as Dask does), leave the thread pool as a
    partition does once its cases are done, and say whether this thread still belongs to the pool."""
    from distributed import get_worker
    from distributed.core import Status
    from distributed.threadpoolexecutor import thread_state

    from wfkit.distributed._dask import _leave_the_thread_pool

    worker = get_worker()
    memory, pause_at = worker.memory_manager, worker.memory_manager.memory_pause_fraction

    def set_status(to: str, pause_at: Any) -> None:
        memory.memory_pause_fraction = pause_at  # False: the memory monitor would resume it at once
        worker.status = Status[to]

    worker.loop.add_callback(set_status, status, False)
    deadline = time.monotonic() + 10
    while worker.status.name != status and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        seen = worker.status.name
        _leave_the_thread_pool()
        return seen, bool(getattr(thread_state, "proceed", True))
    finally:
        worker.loop.add_callback(set_status, "running", pause_at)


def test_a_paused_worker_still_hands_its_thread_on_once_a_partition_is_done(local_cluster: Any) -> None:
    """A worker Dask paused (memory pressure) still runs the partition it has: once its cases are
    done, the thread goes back to the pool as on a running worker (a paused worker starts no new task
    anyway, and keeping the thread would only hold its slot through the partition's file writes).
    Only a closing worker keeps it: secede would wait there for the lock the closing holds."""
    from distributed import Client

    with Client(local_cluster, set_as_default=False) as client:
        status, in_pool = client.submit(_leave_the_pool_while, "paused", pure=False).result(timeout=60)
    assert ("paused", False) == (status, in_pool)


def _run_a_map_failing_on_its_second_item(workspace: str) -> None:
    """On a worker: a run in a workspace (so its error holds the run's handle) whose map fails on item 1."""
    flow = wf.Workflow("sizes", inputs=["docs"])

    @flow.map(over="docs", into="sizes")
    def size(doc: str) -> int:
        if doc == "b":
            raise PermissionError("no access to doc b")
        return len(doc)

    flow.run({"docs": ["a", "b", "c"]}, workspace=workspace)


def test_a_map_item_failing_on_a_worker_reaches_the_driver_as_its_own_error(local_cluster: Any, tmp_path: Path) -> None:
    """A run that fails on a Dask worker raises on the driver its StepFailedError, caused by the
    MapItemError naming the step, the item and the item's error (not Dask's stand-in for an error
    that would not unpickle)."""
    from distributed import Client

    with Client(local_cluster, set_as_default=False) as client:
        future = client.submit(_run_a_map_failing_on_its_second_item, str(tmp_path / "ws"), pure=False)
        with pytest.raises(wf.StepFailedError, match="map step 'size'") as info:
            future.result(timeout=60)
    item = info.value.__cause__
    assert isinstance(item, wf.MapItemError)
    assert ("size", 1, 3) == (item.step, item.index, item.count)
    assert "item 1 of 3 of map step 'size' failed: PermissionError: no access to doc b" == str(item)
    assert isinstance(item.__cause__, PermissionError)


class LedgerClosed(Exception):
    """An error of the user's own, not wfkit's."""


def _closing_merge(current: object, update: object) -> object:
    raise LedgerClosed("the ledger is closed for the day")


def _run_whose_merge_rule_fails(workspace: str) -> None:
    """On a worker: a run in a workspace whose own merge rule raises: flow.run raises that error
    itself, carrying the run's handle (``err.run``)."""
    flow = wf.Workflow("ledger", inputs=["entries"], merge={"entries": _closing_merge})

    @flow.step
    def book(state: dict[str, Any]) -> dict[str, Any]:
        return {"entries": [1]}

    flow.run({"entries": []}, workspace=workspace)


def test_a_users_own_error_failing_a_run_on_a_worker_reaches_the_driver_as_itself(
    local_cluster: Any, tmp_path: Path
) -> None:
    """A run that fails on a Dask worker with an error of the user's own type (not a wfkit error,
    so not pickled by wfkit's rules) raises on the driver that type with its message, its run's
    handle left behind (not a pickling failure)."""
    from distributed import Client

    with Client(local_cluster, set_as_default=False) as client:
        future = client.submit(_run_whose_merge_rule_fails, str(tmp_path / "ws"), pure=False)
        with pytest.raises(LedgerClosed) as info:
            future.result(timeout=60)
    detached = info.value.run  # type: ignore[attr-defined]
    assert "the ledger is closed for the day" == str(info.value)
    assert (DetachedRun, "failed") == (type(detached), detached.status)  # its handle stayed on the worker


def test_partition_size_gives_a_few_partitions_per_thread() -> None:
    """Default: about four partitions per worker thread; an explicit size wins; zero is refused."""
    assert (50, 7, 1) == (partition_size(400, 2), partition_size(400, 2, 7), partition_size(3, 8))
    with pytest.raises(ValueError, match="partition_size must be >= 1"):
        partition_size(10, 2, 0)


# ---- errors before any work -------------------------------------------------------------------


def test_unreachable_scheduler_is_a_clear_error_before_any_work(tmp_path: Path) -> None:
    """Nothing listens at the address: a SchedulerUnreachableError naming it, and no file written."""
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(SchedulerUnreachableError, match=f"cannot reach a Dask scheduler at {address}") as info:
        wf.evals.evaluate(router_suite(), executor=address, dataset=tmp_path / "data", progress=False)
    assert time.monotonic() - t0 < 30
    assert address == info.value.address
    assert not (tmp_path / "data").exists()


class _Page(BaseHTTPRequestHandler):
    """A web page, as the Dask dashboard on :8787 serves."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def not_a_scheduler(kind: str) -> Iterator[tuple[str, threading.Event]]:
    """A server on 127.0.0.1 that is no Dask scheduler, and an event set once a client it sent bytes
    to has closed its connection: "http" (the stdlib's HTTP server), "garbage" (sends bytes the moment
    a client connects), "hangs-up" (closes each connection at once). Stopped on exit."""
    closed = threading.Event()
    if kind == "http":
        http = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        thread = threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield f"tcp://127.0.0.1:{http.server_address[1]}", closed
        finally:
            http.shutdown()
            http.server_close()
            thread.join()
        return
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                if kind == "garbage":
                    conn.sendall(b"garbage!" * 64)  # read by Dask as a frame length: 7.0 EiB
                    conn.settimeout(10)
                    while conn.recv(4096):  # until the client closes its end
                        pass
                    closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}", closed
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("http", "it did not answer Dask's handshake within 5 s"),
        ("garbage", "it answered Dask's handshake with bytes that are not Dask's protocol (MemoryError)"),
        ("hangs-up", "it closed the connection instead of answering Dask's handshake"),
    ],
)
def test_an_address_where_no_scheduler_answers_is_a_clear_error_within_the_timeout(
    kind: str, said: str, tmp_path: Path
) -> None:
    """A port that answers but is no Dask scheduler (the dashboard's :8787 given by mistake, a peer
    sending garbage, one hanging up) is a SchedulerUnreachableError naming the address within the
    5 s connect timeout, with nothing written and no thread or connection left behind."""
    threads = set(threading.enumerate())
    outcome: list[BaseException] = []

    def attempt(address: str) -> None:
        try:
            slow_flow(0.0).run_many([{"x": 1}], executor=address, dataset=tmp_path / "data", progress=False)
        except BaseException as exc:
            outcome.append(exc)

    with not_a_scheduler(kind) as (address, closed):
        t0 = time.monotonic()
        trying = threading.Thread(target=attempt, args=(address,), daemon=True)
        trying.start()
        trying.join(60)  # before the fix the http case waited for ever
        took = time.monotonic() - t0
        assert not trying.is_alive(), f"run_many(executor={address!r}) still waits after 60 s"
        if kind == "garbage":
            assert closed.wait(5), "the connection to the peer was left open"
    assert 1 == len(outcome)
    error = outcome[0]
    assert isinstance(error, SchedulerUnreachableError), repr(error)
    assert address == error.address
    assert f"something answers at {address}, but it is not a Dask scheduler: {said}" in str(error)
    assert "a scheduler listens on 8786 by default and its dashboard (a web page, http://) on 8787" in str(error)
    assert took < 5 + 3
    assert not (tmp_path / "data").exists()
    time.sleep(0.1)  # the check's thread has ended; give the interpreter a moment to forget it
    assert set() == {t for t in set(threading.enumerate()) - threads if t.is_alive()}


def test_evaluate_at_an_address_that_is_no_scheduler_is_a_clear_error(tmp_path: Path) -> None:
    """evaluate(executor=address) checks the address the same way before any work."""
    with (
        not_a_scheduler("garbage") as (address, _),
        pytest.raises(
            SchedulerUnreachableError, match=f"something answers at {address}, but it is not a Dask scheduler"
        ),
    ):
        wf.evals.evaluate(router_suite(), executor=address, dataset=tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


def test_a_workers_address_is_refused_asking_for_the_schedulers(local_cluster: Any, tmp_path: Path) -> None:
    """A Dask worker's address is a Dask server but not the scheduler: the error says which it is."""
    worker = next(iter(local_cluster.scheduler_info["workers"]))
    with pytest.raises(SchedulerUnreachableError, match=f"{worker} is a Dask Worker, not the scheduler"):
        slow_flow(0.0).run_many([{"x": 1}], executor=worker, dataset=tmp_path / "data", progress=False)


def test_a_peer_sending_garbage_leaves_no_traceback_at_exit(tmp_path: Path) -> None:
    """In a process of its own: the error is raised and caught, and the process ends without a
    traceback on stderr (before, distributed's Client printed one from its __del__ at exit)."""
    code = (
        "import sys, wfkit as wf\n"
        "flow = wf.Workflow('probe')\n"
        "@flow.step\n"
        "def s(state): return {}\n"
        "try:\n"
        "    flow.run_many([{}], executor=sys.argv[1], progress=False)\n"
        "except wf.SchedulerUnreachableError as exc:\n"
        "    print('refused', exc.address)\n"
    )
    env = {**os.environ, "WFKIT_HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    with not_a_scheduler("garbage") as (address, _):
        done = subprocess.run(
            [sys.executable, "-c", code, address], capture_output=True, text=True, env=env, timeout=60, check=False
        )
    assert (0, f"refused {address}\n", "") == (done.returncode, done.stdout, done.stderr)


def test_a_dashboard_link_is_refused_at_once_as_no_schedulers_address(tmp_path: Path) -> None:
    """An http:// link (the dashboard's) is not a Dask address: said at once, with the form to use."""
    started = time.monotonic()
    with pytest.raises(SchedulerUnreachableError, match=r"is not a Dask scheduler's address .* tcp://HOST:PORT"):
        slow_flow(0).run_many([{"x": 1}], executor="http://127.0.0.1:8787/status", dataset=tmp_path, progress=False)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("address", ["localhost", "tcp://localhost", "tcp://127.0.0.1"])
def test_an_address_without_a_port_is_refused_at_once_with_the_form_to_use(address: str, tmp_path: Path) -> None:
    """`executor="tcp://localhost"` (no port) said `cannot reach a Dask scheduler at tcp://localhost
    (tried for 5 s: missing port number ...)`, though nothing was tried, and told to start workers
    with `dask worker tcp://localhost`, an address that cannot work either. It is now refused at
    once as no scheduler's address, with the default port to add."""
    started = time.monotonic()
    with pytest.raises(SchedulerUnreachableError) as caught:
        slow_flow(0).run_many([{"x": 1}], executor=address, dataset=tmp_path / "data", progress=False)
    message = str(caught.value)
    host = address.split("://")[-1]
    assert message.startswith(f"{address} is not a Dask scheduler's address (missing port number"), message
    default = f"(port 8786 by default: tcp://{host}:8786)"
    assert f"give it as tcp://HOST:PORT, which `dask scheduler` prints {default}" in message
    assert "tried for" not in message
    assert "dask worker" not in message
    assert time.monotonic() - started < 2
    assert not (tmp_path / "data").exists()


def test_a_tls_address_without_tls_settings_says_how_to_give_them(tmp_path: Path) -> None:
    """`executor="tls://host:8786"` with no TLS settings in Dask's configuration failed with Dask's own
    `TypeError: TLS expects a ssl_context argument ... Instead got None`: it is refused at once
    naming the two ways to give them (a client made with a Security, or Dask's configuration)."""
    started = time.monotonic()
    with pytest.raises(SchedulerUnreachableError) as caught:
        slow_flow(0).run_many([{"x": 1}], executor="tls://127.0.0.1:8786", dataset=tmp_path / "data", progress=False)
    message = str(caught.value)
    assert message.startswith("tls://127.0.0.1:8786 is a TLS address, and no TLS settings were found"), message
    assert "Client('tls://127.0.0.1:8786', security=Security(tls_ca_file=" in message
    assert "distributed.comm.tls.ca-file" in message
    assert time.monotonic() - started < 2
    assert not (tmp_path / "data").exists()


def test_executor_of_the_wrong_type_is_refused() -> None:
    """executor= takes a client, a cluster or an address."""
    with pytest.raises(TypeError, match=r"executor= takes a distributed\.Client"):
        slow_flow(0.0).run_many([{"x": 1}], executor=42, progress=False)


def test_executor_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Dask installed, executor= says which extra to install."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r'pip install "wfkit\[dask\]"'):
        slow_flow(0.0).run_many([{"x": 1}], executor="tcp://127.0.0.1:8786", progress=False)


def test_import_wfkit_does_not_import_dask() -> None:
    """`import wfkit` loads neither dask nor distributed nor fsspec."""
    code = "import sys, wfkit; print(sorted(m for m in ('dask', 'distributed', 'fsspec') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == out.stdout.strip()


# ---- real processes: `dask scheduler` and `dask worker` ---------------------------------------


def test_worker_killed_mid_partition_reruns_it_and_counts_each_case_once(cluster: Cluster, tmp_path: Path) -> None:
    """SIGKILL the worker running a partition: Dask re-runs it elsewhere, and every input shows up
    exactly once in the results and in the step log, with the re-run as attempt 2."""
    import threading

    data = tmp_path / "data"
    inputs = [{"x": i} for i in range(16)]
    killed: list[dict[str, Any]] = []

    def kill_first_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            started = sorted(data.glob("steps/_attempts/*/p*-a01-*.started"))
            if started:
                time.sleep(0.4)  # mid-partition: a few of its runs are done, the rest are not
                who = json.loads(started[0].read_text())
                os.kill(who["pid"], signal.SIGKILL)
                killed.append({"stem": started[0].stem, **who})
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    result = slow_flow(0.15).run_many(
        inputs, executor=cluster.address, dataset=data, progress=False, concurrency=1, partition_size=4
    )
    killer.join()
    assert 1 == len(killed)
    assert list(range(16)) == list(result.runs["index"])
    assert ["succeeded"] * 16 == list(result.runs["status"])
    steps = wf.steps(data)
    assert sorted(result.runs["run_id"]) == sorted(steps["run_id"])  # one row per run: nothing twice
    plain = pd.read_parquet(data / "steps")  # and so for a reader that knows nothing of attempts
    assert sorted(result.runs["run_id"]) == sorted(plain["run_id"])
    partition = killed[0]["stem"].split("-")[0]
    job = json.loads(next(data.glob("steps/_attempts/*/_job.json")).read_text())
    chosen = job["partitions"][str(int(partition[1:]))]
    assert chosen.startswith(f"{partition}-a02-")
    assert [] == list(data.glob(f"steps/_attempts/*/{killed[0]['stem']}.commit"))


def test_a_worker_killed_in_an_irreversible_step_never_runs_it_a_second_time(cluster: Cluster, tmp_path: Path) -> None:
    """SIGKILL the worker while a run is in its irreversible step (an email sent, a card charged): Dask
    re-runs the partition elsewhere, which would send that email again, silently; the step runs at
    most once per input, and the batch fails naming the partition, the irreversible step, and what to do."""
    import threading

    data, sent, release = tmp_path / "data", tmp_path / "sent", tmp_path / "release"
    sent.mkdir()
    flow = wf.Workflow("charge-on-dask")

    @flow.step(irreversible=True)
    def charge(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        (sent / f"{state['x']}-{os.getpid()}-{time.monotonic_ns()}").touch()
        deadline = time.monotonic() + 60
        while state["x"] == 1 and not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker is killed here
        return {"charged": True}

    killed: list[int] = []

    def kill_the_charging_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for marker in sent.glob("1-*"):
                killed.append(int(marker.name.split("-")[1]))
                os.kill(killed[0], signal.SIGKILL)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_charging_worker)
    killer.start()
    try:
        with pytest.raises(PartitionError) as failed:
            flow.run_many(
                [{"x": i} for i in range(4)],
                executor=cluster.address, dataset=data, progress=False, concurrency=1, partition_size=2,
            )  # fmt: skip
    finally:
        release.touch()
        killer.join()
    assert 1 == len(killed)
    charged = [marker.name.split("-")[0] for marker in sent.iterdir()]
    assert sorted(set(charged)) == sorted(charged)  # no input charged twice
    assert "irreversible" in str(failed.value)
    assert "'charge'" in str(failed.value)


def test_a_finished_partition_is_not_run_again_when_its_worker_dies_later(cluster: Cluster, tmp_path: Path) -> None:
    """SIGKILL a worker after it finished a partition: the driver has that partition's result, so
    Dask does not run it a second time (it would, for a result still held on the dead worker)."""
    import threading

    data = tmp_path / "data"
    killed: list[dict[str, Any]] = []

    def kill_after_its_first_partition() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = sorted(data.glob("steps/_attempts/*/p*-a01-*.commit"))
            if committed:
                time.sleep(0.5)  # the driver reads the marker and lets the result go
                who = json.loads(committed[0].read_text())
                os.kill(who["pid"], signal.SIGKILL)
                killed.append({**who, "stem": committed[0].name[:6]})
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_after_its_first_partition)
    killer.start()
    inputs = [{"x": i} for i in range(16)]
    result = slow_flow(0.15).run_many(
        inputs, executor=cluster.address, dataset=data, progress=False, concurrency=1, partition_size=2
    )
    killer.join()
    assert 1 == len(killed)
    assert ["succeeded"] * 16 == list(result.runs["status"])
    assert 1 == len(list(data.glob(f"steps/_attempts/*/{killed[0]['stem']}-*.started")))
    assert sorted(result.runs["run_id"]) == sorted(pd.read_parquet(data / "steps")["run_id"])


def test_a_scheduler_that_goes_away_mid_job_is_an_error_saying_so(tmp_path: Path) -> None:
    """SIGKILL the scheduler while a job runs: a SchedulerLostError naming its address and the job,
    saying where the finished partitions' rows are; the job counts for nothing, in any reader."""
    import threading

    data, done = tmp_path / "data", tmp_path / "test-done"
    # Only the first partition (inputs 0 and 1) runs until the test is done with the dataset: the
    # job cannot end before the scheduler is killed, however slowly the killer sees the commit, and
    # no partition writes to the dataset after the driver gave the job up (a worker ended halfway
    # through its writes would leave a segment there, which is not the driver's doing).
    flow = held_flow(done, first_held=2)
    with dask_cluster(tmp_path / "own", workers=1) as own:

        def kill_the_scheduler() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not list(data.glob("steps/_attempts/*/p*.commit")):
                time.sleep(0.02)
            own.processes[0].send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_the_scheduler)
        killer.start()
        try:
            with pytest.raises(SchedulerLostError) as caught:
                flow.run_many(
                    [{"x": i} for i in range(12)], executor=own.address, dataset=data, progress=False,
                    concurrency=1, partition_size=2,
                )  # fmt: skip
            killer.join()
            error = caught.value
            assert own.address == error.address
            assert f"lost the Dask scheduler at {own.address} while job {error.job} ran" in str(error)
            assert f"{data}/steps-uncounted/{error.job}" in str(error)
            assert "aborted" in json.loads((data / "steps" / "_attempts" / error.job / "_job.json").read_text())
            assert 0 == len(wf.steps(data))
            assert [] == list((data / "steps").rglob("*.parquet"))
            assert 2 <= len(pd.read_parquet(data / "steps-uncounted" / error.job))
        finally:
            done.touch()


def test_raw_readers_never_see_the_rows_of_a_job_that_has_not_committed(local_cluster: Any, tmp_path: Path) -> None:
    """While a job runs, pandas (or pyarrow, DuckDB) reading DATASET/steps find none of its rows, though a
    partition has committed; the job given up (`wfkit doctor --abort`) while partitions still run, those
    finish late and still put no row there: every row the job wrote waits in steps-uncounted/JOB."""
    data, release = tmp_path / "data", tmp_path / "release"
    failed: list[BaseException] = []

    def drive() -> None:
        try:
            held_flow(release, first_held=2).run_many(
                [{"x": i} for i in range(6)], executor=local_cluster, dataset=data, progress=False,
                concurrency=1, partition_size=2,
            )  # fmt: skip
        except BaseException as exc:
            failed.append(exc)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        deadline = time.monotonic() + 60
        while not list(data.glob("steps/_attempts/*/p00000-*.commit")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(data.glob("steps/_attempts/*/p00000-*.commit")), "the first partition did not commit"
        assert [] == list((data / "steps").rglob("*.parquet"))
        record = next(data.glob("steps/_attempts/*/_driver.json"))
        job = record.parent.name
        # As another machine sees it: a driver it cannot check, given up by the user there
        record.write_text(json.dumps({**json.loads(record.read_text()), "host": "another-machine"}))
        assert 0 == main(["doctor", "--dataset", str(data), "--abort", job])
    finally:
        release.touch()
        driver.join(120)
    assert 1 == len(failed)
    assert isinstance(failed[0], wf.ExecutorError)
    assert f"job {job} was given up while it ran" in str(failed[0])
    assert 3 == len(list(data.glob(f"steps/_attempts/{job}/p*.commit")))  # the late two committed after the abort
    assert [] == list((data / "steps").rglob("*.parquet"))
    assert 0 == len(wf.steps(data))
    assert 6 == len(pd.read_parquet(data / "steps-uncounted" / job))


HELD_SUITE = """
import time
from pathlib import Path
import wfkit as wf

RELEASE = Path({release!r})
flow = wf.Workflow("held-eval")

@flow.step
def answer(state):
    deadline = time.monotonic() + 60
    while state["n"] >= 2 and not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return {{"n2": state["n"] * 2}}

def doubled(case, run):
    return run.state["n2"] == case.expected["n2"]

suite = wf.evals.Suite(name="held", dataset=[{{"inputs": {{"n": i}}, "expected": {{"n2": 2 * i}}}} for i in range(6)],
                       workflow=flow, scorers=[wf.evals.custom(doubled)])
"""

EVAL_DRIVER = """
import signal, sys
import wfkit as wf

signal.signal(signal.SIGINT, signal.default_int_handler)  # started in the background: SIGINT would be ignored
wf.evals.evaluate(sys.argv[1], executor=sys.argv[2], dataset=sys.argv[3], progress=False, partition_size=2,
                  concurrency=1)
"""


def test_an_interrupted_dask_eval_gives_its_job_up_at_once(local_cluster: Any, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) during `wf.evals.evaluate(executor=...)` from a script (or `wfkit eval --dask`): the
    process ends at once with the KeyboardInterrupt, noting that its job was given up, and the job is
    recorded as aborted, none of its rows counted; before, the job went on to its end in a thread,
    was committed (every row counted) and only then was the interrupt raised."""
    data, release = tmp_path / "data", tmp_path / "release"
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "suite.py").write_text(HELD_SUITE.format(release=str(release)))
    env = {**os.environ, "WFKIT_HOME": str(tmp_path / "ws"), "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    driver = subprocess.Popen(
        [sys.executable, "-c", EVAL_DRIVER, str(tmp_path / "suite"), local_cluster.scheduler_address, str(data)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list(data.glob("steps/_attempts/*/p00000-*.commit")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(data.glob("steps/_attempts/*/p00000-*.commit")), "the first partition did not commit"
        driver.send_signal(signal.SIGINT)
        try:
            _, err = driver.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the interrupted eval did not end while its partitions were held")
    finally:
        release.touch()
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    job = next(data.glob("steps/_attempts/*/_driver.json")).parent.name
    assert "KeyboardInterrupt" in err
    assert f"wfkit gave up job {job}" in err
    assert "aborted" in json.loads((data / "steps" / "_attempts" / job / "_job.json").read_text())
    assert [] == list((data / "steps").rglob("*.parquet"))


def test_an_interrupted_dask_eval_in_a_notebook_gives_its_job_up_at_once(local_cluster: Any, tmp_path: Path) -> None:
    """Interrupting a Jupyter kernel (the notebook's stop button) while its cell runs
    `wf.evals.evaluate(executor=...)`: the cell ends at once with the KeyboardInterrupt, noting that
    the job was given up, and the job is recorded as aborted, none of its rows counted."""
    data, release = tmp_path / "data", tmp_path / "release"
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "suite.py").write_text(HELD_SUITE.format(release=str(release)))
    with running_kernel(tmp_path / "ws") as kernel:
        try:
            cell = (
                f"import wfkit as wf\nwf.evals.evaluate({str(tmp_path / 'suite')!r}, executor="
                f"{local_cluster.scheduler_address!r}, dataset={str(data)!r}, progress=False, partition_size=2, "
                f"concurrency=1)"
            )
            sent = kernel.send(cell, started=lambda: list(data.glob("steps/_attempts/*/p00000-*.commit")), timeout=60)
            # Before the fix: no reply at all, the job running on until released. (60 s, not "at once":
            # a kernel on a machine loaded by a whole test run once took over 20 s to answer.)
            reply = kernel.interrupt(sent, timeout=60)
            errors = []
            while True:
                message = kernel.client.get_iopub_msg(timeout=10)
                if message["parent_header"].get("msg_id") != sent:
                    continue
                if message["msg_type"] == "error":
                    errors.append(message["content"])
                if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                    break
        finally:
            release.touch()
    job = next(data.glob("steps/_attempts/*/_driver.json")).parent.name
    assert ("error", "KeyboardInterrupt") == (reply["status"], reply["ename"])
    assert 1 == len(errors)
    assert f"wfkit gave up job {job}" in "\n".join(errors[0]["traceback"])
    assert "aborted" in json.loads((data / "steps" / "_attempts" / job / "_job.json").read_text())
    assert [] == list((data / "steps").rglob("*.parquet"))


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def wait_until_cancelled_on_the_worker(client: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = client.run(lambda dask_worker: [ts.state for ts in dask_worker.state.tasks.values()])
        if not any(state == "executing" for each in states.values() for state in each):
            return
        time.sleep(0.05)
    pytest.fail(f"the worker still executes the job's task 60 s after it was given up: {states}")


def test_an_interrupted_eval_stops_its_partitions_on_the_workers(tmp_path: Path) -> None:
    """An eval on Dask given up by an interrupt (`wf.evals.evaluate_async(...)` cancelled, the stop
    button) stops the cases left in its partitions on the workers, not just at the scheduler; before,
    each partition ran all its cases on (LLM calls and all), holding its worker from the next job."""
    from distributed import Client, LocalCluster

    from wfkit.evals._evals import _evaluate_on_dask

    started, release = tmp_path / "started", tmp_path / "release"
    started.mkdir()
    flow = wf.Workflow("held-cases")

    @flow.step
    def answer(state: Any) -> dict[str, Any]:
        (started / str(state["n"])).touch()
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"n2": state["n"] * 2}

    suite = wf.evals.Suite(
        name="held", dataset=[{"inputs": {"n": i}} for i in range(8)], workflow=flow, scorers=[wf.evals.contains("n2")]
    )
    stop, interrupted = threading.Event(), []

    def drive(client: Any) -> None:
        try:
            _evaluate_on_dask(
                suite, list(suite.variants), suite.cases(), executor=client, concurrency=1,
                dataset=tmp_path / "data", partition_size=8, retries=2, progress=False, announce=None, stop=stop,
            )  # fmt: skip
        except KeyboardInterrupt as exc:  # what evaluate_async raises once its task is cancelled
            interrupted.append(exc)

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        driver = threading.Thread(target=drive, args=(client,))
        driver.start()
        try:
            wait_for(started / "0")
            stop.set()  # as evaluate_async does when its task is cancelled
            driver.join(60)
            wait_until_cancelled_on_the_worker(client)  # the scheduler tells the worker a moment later
        finally:
            release.touch()
        assert 1 == client.submit(int, 1, pure=False).result(timeout=60)  # the worker's thread is free
    assert 1 == len(interrupted)
    assert ["0"] == sorted(p.name for p in started.iterdir())
    assert [] == list((tmp_path / "data" / "results").rglob("*.parquet"))  # nothing written late for it


def test_cli_eval_on_a_scheduler_prints_the_local_summary(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit eval SUITE --dask ADDRESS` prints the summary a local `wfkit eval` prints, and the dashboard."""
    assert 0 == main(["eval", str(QUERY_ROUTER), "--variant", "keywords", "--workspace", str(tmp_path / "a"), "--json"])
    local = json.loads(capsys.readouterr().out)["summary"]
    argv = ["eval", str(QUERY_ROUTER), "--variant", "keywords", "--workspace", str(tmp_path / "b"), "--json"]
    assert 0 == main([*argv, "--dask", cluster.address])
    out, err = capsys.readouterr()
    remote = json.loads(out)["summary"]
    scores = [r for r in local if r["scorer"] != "latency_budget:2.0s"]
    assert scores == [r for r in remote if r["scorer"] != "latency_budget:2.0s"]
    assert f"dashboard: http://127.0.0.1:{cluster.dashboard}/status" in err


def test_cli_eval_unreachable_scheduler_exits_1_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit eval --dask` with nobody at the address exits 1 with the address in the message."""
    address = f"tcp://127.0.0.1:{free_port()}"
    assert 1 == main(["eval", str(QUERY_ROUTER), "--workspace", str(tmp_path), "--dask", address])
    assert f"cannot reach a Dask scheduler at {address}" in capsys.readouterr().err


def test_cli_dataset_without_dask_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dataset only means something with --dask: exit 2 and say so."""
    assert 2 == main(["eval", str(QUERY_ROUTER), "--dataset", str(tmp_path)])
    assert "give --dask ADDRESS too" in capsys.readouterr().err


def test_the_case_bar_counts_a_rerun_partition_once() -> None:
    """A re-run partition's count replaces its killed attempt's, so the bar of cases never overcounts."""
    from wfkit.distributed._dask import _Bars

    bars = _Bars("eval", partitions=2, cases=10, enabled=True)
    try:
        bars.event((0.0, {"partition": 0, "stem": "p00000-a01-aa", "done": 4}))
        bars.event((0.0, {"partition": 1, "stem": "p00001-a01-bb", "done": 5}))
        bars.event((0.0, {"partition": 0, "stem": "p00000-a02-cc", "done": 2}))  # the re-run starts over
        bars.refresh(finished=1)
        assert (1, 7) == (bars.parts.n, bars.cases.n)
    finally:
        bars.close()


def test_a_job_given_up_on_an_interrupt_is_aborted_and_the_interrupt_says_so(tmp_path: Path) -> None:
    """Ctrl-C while a job runs: the job is recorded as aborted (readers count none of it), and a
    note on the KeyboardInterrupt names the job and where its rows were set aside."""
    from wfkit.distributed._dask import _abort
    from wfkit.logs._dataset import Location
    from wfkit.logs._segments import new_job_id

    job = new_job_id()
    interrupt = KeyboardInterrupt()
    _abort(Location(tmp_path), job, "runs", interrupt, [])
    assert (
        "KeyboardInterrupt: "
        == json.loads((tmp_path / "steps" / "_attempts" / job / "_job.json").read_text())["aborted"]
    )
    assert [f"wfkit gave up job {job} (0 partitions had finished): none of its rows count; what its partitions "
            f"wrote is set aside in {tmp_path}/steps-uncounted/{job}"] == interrupt.__notes__  # fmt: skip


def test_the_bars_close_from_the_bottom_up(capsys: pytest.CaptureFixture[str]) -> None:
    """The cases bar closes before the partitions bar, so what prints next starts on a line of its own."""
    from wfkit.distributed._dask import _Bars

    bars = _Bars("eval", partitions=2, cases=10, enabled=True)
    closed: list[str] = []
    for name in ("parts", "cases"):
        bar = getattr(bars, name)
        bar.close = lambda bar=bar, name=name: (closed.append(name), type(bar).close(bar))
    bars.close()
    assert ["cases", "parts"] == closed


def test_a_partition_that_ends_well_hands_its_scratch_workspace_on_emptied(tmp_path: Path) -> None:
    """The next partition in the process gets the same scratch folder with an empty store and
    nothing else in it; each attempt's rows are its own in the dataset."""
    import cloudpickle

    from wfkit.distributed._dask import PartitionOutput, Progress, _scratch_workspaces, run_partition
    from wfkit.logs._dataset import Location
    from wfkit.logs._segments import new_job_id, read_results
    from wfkit.store._workspace import DB_NAME, open_store

    @dataclasses.dataclass(frozen=True)
    class Square:
        xs: tuple[int, ...]

        def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput:
            runs_before = len(open_store(scratch).read("SELECT run_id FROM runs"))
            files_before = sorted(p.name for p in scratch.iterdir() if not p.name.startswith(DB_NAME))
            (scratch / "notes").mkdir()
            (scratch / "notes" / "leftover.txt").write_text("a file the work wrote")
            flow = slow_flow(0.0)
            rows = [
                {
                    "x": x,
                    "y": flow.run({"x": x}, workspace=scratch).state["y"],
                    "scratch": str(scratch),
                    "runs_before": runs_before,
                    "files_before": ",".join(files_before),
                }
                for x in self.xs
            ]
            return PartitionOutput(rows, (scratch,))

    job, data = new_job_id(), str(tmp_path / "data")
    markers = [run_partition(data, job, i, cloudpickle.dumps(Square(xs))) for i, xs in enumerate([(1, 2), (3,)])]
    table = read_results(Location(data), markers)
    assert table is not None
    rows = table.to_pylist()
    assert [(1, 1), (2, 4), (3, 9)] == [(r["x"], r["y"]) for r in rows]
    assert 1 == len({r["scratch"] for r in rows})
    assert [(0, "")] * 3 == [(r["runs_before"], r["files_before"]) for r in rows]
    assert [2, 1] == [sum(s["rows"] for s in m["steps"]) for m in markers]
    _scratch_workspaces.remove_all()
    assert not Path(rows[0]["scratch"]).exists()


def test_a_failing_partition_deletes_its_scratch_workspace(tmp_path: Path) -> None:
    """A work that raises leaves no scratch folder behind and none for the next partition to reuse."""
    import cloudpickle

    from wfkit.distributed._dask import PartitionOutput, Progress, run_partition
    from wfkit.logs._segments import new_job_id

    @dataclasses.dataclass(frozen=True)
    class Broken:
        def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput:
            raise RuntimeError(str(scratch))

    job, used = new_job_id(), []
    for partition in (0, 1):
        with pytest.raises(RuntimeError) as failed:
            run_partition(str(tmp_path / "data"), job, partition, cloudpickle.dumps(Broken()))
        used.append(Path(str(failed.value)))
    assert (False, False) == (used[0].exists(), used[1].exists())
    assert used[0] != used[1]


DRIVER = """
import sys, time
import wfkit as wf

flow = wf.Workflow("slow-square")

@flow.step
def square(state):
    time.sleep(0.15)
    return {"y": state["x"] ** 2}

flow.run_many([{"x": i} for i in range(16)], executor=sys.argv[1], dataset=sys.argv[2], progress=False,
              concurrency=1, partition_size=2)
"""


def kill_a_driver_mid_job(cluster: Cluster, data: Path, env: dict[str, str]) -> str:
    """Start run_many in a process of its own, SIGKILL it once two partitions committed; the job's id."""
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.address, str(data)], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list(data.glob("steps/_attempts/*/p*.commit"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        driver.kill()
        driver.wait()
    assert [] == list(data.glob("steps/_attempts/*/_job.json"))
    return next(data.glob("steps/_attempts/*")).name


def test_a_job_whose_driver_was_killed_is_found_by_doctor_and_repair_stops_it_counting(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL the driver mid-job (a killed kernel): `wfkit doctor --dataset` names the job as having
    no end and a driver that is gone; after the user ran the job again, `--repair` records the first
    as aborted, and readers count each case once again."""
    data = tmp_path / "data"
    env = {**os.environ, "WFKIT_HOME": str(tmp_path / "ws"), "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    job = kill_a_driver_mid_job(cluster, data, env)
    assert 1 == main(["doctor", "--dataset", str(data)])
    out = capsys.readouterr().out
    assert f"problem: job {job} (runs of slow-square) has no end recorded and its driver" in out
    assert "is gone" in out
    assert "committed partition(s) (of 8)" in out
    assert f"wfkit doctor --dataset {data} --repair" in out
    again = slow_flow(0.0).run_many(
        [{"x": i} for i in range(16)], executor=cluster.address, dataset=data, progress=False, partition_size=2
    )
    assert 0 == main(["doctor", "--dataset", str(data), "--repair"])
    out = capsys.readouterr().out
    assert f"repaired: job {job} recorded as aborted" in out
    assert "aborted" in json.loads((data / "steps" / "_attempts" / job / "_job.json").read_text())
    assert sorted(again.runs["run_id"]) == sorted(wf.steps(data)["run_id"])
    assert sorted(again.runs["run_id"]) == sorted(pd.read_parquet(data / "steps")["run_id"])
    assert 0 == main(["doctor", "--dataset", str(data)])
    assert "no problems found" in capsys.readouterr().out


def test_a_job_given_up_from_another_machine_while_it_runs_is_not_taken_back(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit doctor --abort JOB` run elsewhere while the job's driver still runs (it looked gone from
    there): the driver does not overwrite the abort with its commit; it raises an ExecutorError saying
    the job was given up, and no reader counts any of it."""
    import threading

    data = tmp_path / "data"
    aborted: list[int] = []

    def give_it_up_from_elsewhere() -> None:
        deadline = time.monotonic() + 60
        while not list(data.glob("steps/_attempts/*/p*.commit")) and time.monotonic() < deadline:
            time.sleep(0.02)
        record = next(data.glob("steps/_attempts/*/_driver.json"))
        # As another machine sees it: a driver it cannot check, given up by the user there
        record.write_text(json.dumps({**json.loads(record.read_text()), "host": "another-machine"}))
        aborted.append(main(["doctor", "--dataset", str(data), "--abort", record.parent.name]))

    other = threading.Thread(target=give_it_up_from_elsewhere)
    other.start()
    with pytest.raises(wf.ExecutorError, match=r"job \w+ was given up while it ran \(its driver \(pid \d+ on another"):
        slow_flow(0.15).run_many(
            [{"x": i} for i in range(12)], executor=cluster.address, dataset=data, progress=False,
            concurrency=1, partition_size=2,
        )  # fmt: skip
    other.join()
    assert [0] == aborted
    assert "aborted" in json.loads(next(data.glob("steps/_attempts/*/_job.json")).read_text())
    assert 0 == len(wf.steps(data))
    assert [] == list((data / "steps").rglob("*.parquet"))


DRIVER_DYING_BEFORE_ITS_END = """
import sys, time
from pathlib import Path
import wfkit as wf
import wfkit.distributed._dask as sent_to_dask

def killed_here(location, job, markers, **about):
    # Every partition's result is in: the driver is killed here, before it records the job's end
    Path(sys.argv[3]).write_text(job)
    time.sleep(600)

sent_to_dask.commit_job = killed_here
flow = wf.Workflow("slow-square")

@flow.step
def square(state):
    time.sleep(0.05)
    return {"y": state["x"] ** 2}

flow.run_many([{"x": i} for i in range(16)], executor=sys.argv[1], dataset=sys.argv[2], progress=False,
              concurrency=1, partition_size=2)
"""


def kill_a_driver_before_its_end(address: str, data: Path, tmp_path: Path) -> str:
    """Start run_many in a process of its own and SIGKILL it once all of its partitions committed,
    where it was about to record the job's end; the job's id."""
    env = {**os.environ, "WFKIT_HOME": str(tmp_path / "ws"), "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    ready = tmp_path / "about-to-end"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER_DYING_BEFORE_ITS_END, address, str(data), str(ready)], env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), f"the driver exited ({driver.returncode}) or stalled before the job's end"
    finally:
        driver.kill()
        driver.wait()
    assert [] == list(data.glob("steps/_attempts/*/_job.json"))
    return ready.read_text()


def test_a_job_whose_driver_died_after_every_partition_committed_is_repaired_as_committed(
    local_cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL the driver after all 8 partitions committed, before it recorded the job's end:
    `wfkit doctor` says so, `--repair` records the job as committed (not aborted), and readers
    (wfkit, pandas, pyarrow) count every case once, with no warning and nothing to run again."""
    data = tmp_path / "data"
    job = kill_a_driver_before_its_end(local_cluster.scheduler_address, data, tmp_path)
    folder = data / "steps" / "_attempts" / job
    assert 8 == json.loads((folder / "_driver.json").read_text())["partitions"]
    assert 1 == main(["doctor", "--dataset", str(data)])
    out = capsys.readouterr().out
    assert f"problem: job {job} (runs of slow-square) has no end recorded and its driver" in out
    assert "is gone (started " in out
    assert "but all 8 partitions were committed: the job is whole" in out
    assert f"`wfkit doctor --dataset {data} --repair` records the job as committed" in out
    assert 0 == main(["doctor", "--dataset", str(data), "--repair"])
    out = capsys.readouterr().out
    assert f"repaired: job {job}: all 8 partitions were committed before its driver died; recorded as committed" in out
    ended = json.loads((folder / "_job.json").read_text())
    assert "aborted" not in ended
    committed = {
        json.loads(m.read_text())["partition"]: m.name.removesuffix(".commit") for m in folder.glob("*.commit")
    }
    assert {str(p): stem for p, stem in committed.items()} == ended["partitions"]
    steps = wf.steps(data)  # warnings are errors here: an UnfinishedJobWarning would fail the test
    assert 16 == len(steps) == steps["run_id"].nunique()
    plain = pd.read_parquet(data / "steps")
    assert sorted(steps["run_id"]) == sorted(plain["run_id"])
    import pyarrow.parquet as pq

    results = [pq.read_table(data / "results" / job / f"{stem}.parquet") for stem in ended["partitions"].values()]
    rows = [row for table in results for row in table.to_pylist()]
    assert list(range(16)) == sorted(row["index"] for row in rows)
    assert ["succeeded"] * 16 == [row["status"] for row in rows]
    assert sorted(steps["run_id"]) == sorted(row["run_id"] for row in rows)
    assert 0 == main(["doctor", "--dataset", str(data)])
    assert "no problems found" in capsys.readouterr().out


def test_abort_gives_up_a_job_even_when_every_partition_committed(
    local_cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit doctor --abort JOB` does what it says for a job whose driver died after all its partitions
    committed: the job is recorded as aborted, and no reader counts any of it."""
    data = tmp_path / "data"
    job = kill_a_driver_before_its_end(local_cluster.scheduler_address, data, tmp_path)
    assert 0 == main(["doctor", "--dataset", str(data), "--abort", job])
    assert f"job {job} recorded as aborted; its rows are set aside in" in capsys.readouterr().out
    assert "aborted" in json.loads((data / "steps" / "_attempts" / job / "_job.json").read_text())
    assert 0 == len(wf.steps(data))
    assert [] == list((data / "steps").rglob("*.parquet"))
    assert 16 == len(pd.read_parquet(data / "steps-uncounted" / job))


def test_the_stop_button_leaves_a_local_cluster_started_in_the_notebook_usable(tmp_path: Path) -> None:
    """The stop button on a cell running an eval on a LocalCluster started in the same notebook:
    the cell ends with the KeyboardInterrupt, and the next cell's eval on that cluster runs on
    the same worker processes. Before, the interrupt (sent to the kernel's whole process group)
    killed the cluster's worker processes too, and the next eval on the cluster failed."""
    release = tmp_path / "release"
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "suite.py").write_text(HELD_SUITE.format(release=str(release)))

    def evaluate(dataset: Path) -> str:
        return (
            f"wf.evals.evaluate({str(tmp_path / 'suite')!r}, executor=cluster, dataset={str(dataset)!r}, "
            f"progress=False, partition_size=2, concurrency=1)"
        )

    with running_kernel(tmp_path / "ws") as kernel:
        try:
            setup = (
                "import os, wfkit as wf\n"
                "from distributed import Client, LocalCluster\n"
                "cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host='127.0.0.1',\n"
                "                       dashboard_address=None)\n"
                "dask = Client(cluster, set_as_default=False)\n"
                "pids = dask.run(os.getpid)"
            )
            kernel.run(setup, timeout=120)
            first = tmp_path / "first"
            sent = kernel.send(
                evaluate(first), started=lambda: list(first.glob("steps/_attempts/*/p00000-*.commit")), timeout=120
            )
            reply = kernel.interrupt(sent, timeout=60)
            release.touch()  # the case held on the worker may end: its partition was given up
            again = (
                f"result = {evaluate(tmp_path / 'second')}\n"
                "row = result.summary.iloc[0]\n"
                "print('passed', int(row['pass_rate'] * row['cases']), 'of', int(row['cases']))\n"
                "print('same workers', dask.run(os.getpid) == pids)"
            )
            printed = kernel.run(again, timeout=180).printed
            kernel.run("dask.close(); cluster.close()", timeout=60)
        finally:
            release.touch()
    assert ("error", "KeyboardInterrupt") == (reply["status"], reply["ename"])
    assert "passed 6 of 6\n" in printed, printed
    assert "same workers True\n" in printed, printed


def test_the_progress_bars_of_a_dask_job_in_a_notebook_run_by_papermill_end_at_the_work_done(
    local_cluster: Any, tmp_path: Path
) -> None:
    """In a notebook executed by papermill, the saved outputs of a job's bars (run_many on Dask here;
    an eval's are the same bars) end at the partitions and cases done, in texts without times (a
    replay compares them): they stayed at "0%", widgets' first texts, as a widget's updates never
    reach the saved notebook."""
    from papermilled import saved_outputs

    cell = (
        "import wfkit as wf\n\n"
        "flow = wf.Workflow('dbl')\n\n\n"
        "@flow.step\n"
        "def double(state):\n"
        "    return {'y': state['x'] * 2}\n\n\n"
        f"result = flow.run_many([{{'x': i}} for i in range(30)], executor={local_cluster.scheduler_address!r}, "
        f"dataset={str(tmp_path / 'data')!r}, partition_size=10, concurrency=4)\n"
    )
    announced, *bars = saved_outputs(tmp_path, cell)
    assert announced.startswith("Dask: 3 partitions of runs of dbl to ")
    assert [
        "runs of dbl: partitions: 100%|" + "█" * 20 + "| 3/3 partitions",
        "runs of dbl: cases: 100%|" + "█" * 20 + "| 30/30 cases",
    ] == bars


def test_the_case_bar_is_full_once_every_partition_finished() -> None:
    """A partition's last count reaches the driver as an event, which may come after its result: once
    every partition finished, the bar of cases reads all of them, not the counts heard so far."""
    from wfkit.distributed._dask import _Bars

    bars = _Bars("eval", partitions=2, cases=10, enabled=True)
    try:
        bars.event((0.0, {"partition": 0, "stem": "p00000-a01-aa", "done": 5}))
        bars.event((0.0, {"partition": 1, "stem": "p00001-a01-bb", "done": 3}))  # its last count is not here yet
        bars.refresh(finished=2)
        assert (2, 10) == (bars.parts.n, bars.cases.n)
    finally:
        bars.close()


def test_a_partition_whose_workers_all_die_names_its_inputs_and_what_kills_a_worker(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A step that ends its worker's process (os._exit, a crash in native code) failed the batch
    with Dask's KilledWorker alone: `partition 0 of job J failed ... KilledWorker: Attempted to run
    task 'wfkit-runs of ...-p00000' on 4 different workers`, naming no input, nor what kills a
    worker. The error now says what kills one and which inputs the partition held, to run without
    Dask."""
    flow = wf.Workflow("dies-on-dask")

    @flow.step
    def crash(state: Any) -> dict[str, Any]:
        if state["x"] == 1:
            os._exit(1)  # as a segfault in a native library would
        return {"ok": True}

    with pytest.raises(PartitionError) as failed:
        flow.run_many(
            [{"x": i} for i in range(4)],
            executor=cluster.address, dataset=tmp_path / "data", progress=False, partition_size=2, retries=0,
        )  # fmt: skip
    message = str(failed.value)
    first = 2 * failed.value.partition  # Dask may blame a partition that ran beside the culprit on its worker
    assert "KilledWorker" in message
    assert (
        "Each worker that ran it died: something ends the worker's process (os._exit or a signal in a step, "
        "a crash in native code, memory beyond the worker's limit; the worker's log says which), in this "
        "partition or in one running beside it on the same worker. It held runs of workflow 'dies-on-dask' for "
        f"inputs {first}, {first + 1}: run those without Dask (executor=None; a command without --dask) to see which."
    ) in message


def test_a_closed_client_or_cluster_as_executor_says_it_is_closed(tmp_path: Path) -> None:
    """A client whose `with Client(cluster) as client:` block had ended (a notebook's next cell)
    failed with `RuntimeError: IOLoop is closed`, naming neither the client nor what to do. A
    closed client, and a closed cluster, are now refused at once saying so, with what to pass."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            pass
        with pytest.raises(SchedulerUnreachableError) as closed_client:
            slow_flow(0.0).run_many([{"x": 1}], executor=client, dataset=tmp_path / "data", progress=False)
    assert str(closed_client.value).startswith("the Dask client given as executor= is closed (")
    assert "make a new one (Client(cluster), Client('tcp://HOST:8786'))" in str(closed_client.value)
    closed = r"the Dask cluster given as executor= is closed \(LocalCluster"
    with pytest.raises(SchedulerUnreachableError, match=closed):
        slow_flow(0.0).run_many([{"x": 1}], executor=cluster, dataset=tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()
