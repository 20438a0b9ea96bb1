"""A real Dask cluster for tests: a `dask scheduler` and `dask worker` processes on 127.0.0.1,
on free ports, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    address: str
    dashboard: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _wait_for(address: str, workers: int, timeout: float = 60.0) -> None:
    from distributed import Client

    with Client(address, timeout=timeout, set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=timeout)


@contextmanager
def dask_cluster(folder: Path, *, workers: int = 2, dashboard: bool = True) -> Iterator[Cluster]:
    """Scheduler + ``workers`` single-thread worker processes (each under a nanny, which starts a
    new worker process when one is killed). Each is a process group of its own, stopped by PID.
    ``dashboard=False``: the scheduler is started with ``--no-dashboard`` (its HTTP server, which
    it keeps, listens on ``Cluster.dashboard`` all the same)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1]), *sys.path] if p)}
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(address, free_port())

    def start(name: str, *args: str) -> None:
        with (logs / f"{name}.log").open("wb") as log:  # the child keeps its own copy of the handle
            process = subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        cluster.processes.append(process)

    try:
        start(
            "scheduler",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            f"127.0.0.1:{cluster.dashboard}",
            *(() if dashboard else ("--no-dashboard",)),
        )
        for i in range(workers):
            start(
                f"worker{i}", "worker", address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
                "--no-dashboard", "--local-directory", str(folder / f"worker{i}"), "--name", f"w{i}",
            )  # fmt: skip
        _wait_for(address, workers)
        yield cluster
    finally:
        for process in reversed(cluster.processes):
            with_group_signal(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in cluster.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with_group_signal(process, signal.SIGKILL)
                process.wait()


def with_group_signal(process: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group this process leads (the nanny and the worker it started)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
