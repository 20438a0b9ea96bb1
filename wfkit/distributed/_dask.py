"""Work sent to a Dask cluster in partitions, all of it landing in one dataset.

The scheduler is Dask's own. Each partition is one task submitted with ``retries=``; a partition
whose worker dies is run again on another worker by Dask (its ``allowed-failures``), and
``_segments`` makes sure a re-run is never counted twice. On the worker, a partition runs on an
event loop of its own, in a scratch workspace on the worker's disk (its own while it runs, then
emptied for the worker's next partition), and its result rows and step-log rows are written to
the dataset as one attempt. Once its cases are done, a partition gives its worker thread to the
next partition (Dask's ``secede``) while it writes and syncs its files.

This module knows nothing of evals, runs or notebooks: each hands it one picklable ``work`` per
partition, a callable ``(scratch folder, progress) -> PartitionOutput``.

Progress: a worker reports cases done (at most about five times a second per partition) as a Dask
event; the driver shows one bar of partitions and one of cases. The dashboard link is announced
before any work is sent (for a scheduler that serves no dashboard: that it has none, and how to get
one).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from wfkit._jupyter import progress_bar
from wfkit.logs._dataset import ATTEMPTS_DIR, STEPS_DIR, Location
from wfkit.logs._driver import DRIVER_FILE, driver_record
from wfkit.logs._segments import (
    abort_job,
    begin_attempt,
    commit_job,
    job_ended,
    job_file,
    journal_rows,
    new_job_id,
    read_results,
    set_aside_attempt,
    write_attempt,
)
from wfkit.model._errors import (
    DatasetUnreachableError,
    ExecutorError,
    PartitionError,
    SchedulerLostError,
    SchedulerUnreachableError,
)

if TYPE_CHECKING:
    import pyarrow as pa

#: A ``distributed.Client``, a cluster object (``LocalCluster``...), or a scheduler address.
Executor: TypeAlias = Any

CONNECT_TIMEOUT = 5.0
WORKERS_TIMEOUT = 30.0
PARTITIONS_PER_THREAD = 4  # several partitions per worker thread: a slow one does not hold the end


def import_distributed() -> Any:
    """``distributed``, or a MissingExtraError (an ImportError) naming the extra to install."""
    from wfkit._extras import require

    return require("distributed", "dask", purpose="executor= (work sent to a Dask cluster)")


@dataclass
class Connection:
    client: Any  # a distributed.Client (typed loosely: distributed's API is largely unannotated)
    owned: bool  # made here from an address: closed when the job ends

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address) if self.client.scheduler else "?"

    def close(self) -> None:
        if not self.owned:
            return
        if self.client.status == "running":
            self.client.close()
            return
        # The scheduler went away: the client is trying to reconnect, and closing it cancels that
        # attempt, which distributed logs as an error with a traceback. The caller has a clear
        # error of its own to raise: keep that one alone on the screen.
        import logging

        logger = logging.getLogger("distributed.client")
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            self.client.close()
        finally:
            logger.setLevel(level)


def connect(executor: Executor, *, timeout: float = CONNECT_TIMEOUT) -> Connection:
    """A client for ``executor``; an address is tried for ``timeout`` seconds, then a clear error."""
    distributed = import_distributed()
    if isinstance(executor, distributed.Client):
        if executor.status in ("closing", "closed"):  # it failed later as "RuntimeError: IOLoop is closed"
            raise SchedulerUnreachableError(
                _closed_address(executor),
                f"the Dask client given as executor= is closed ({executor!r}: client.close() was called, or the "
                f"`with Client(...)` block it was made by ended); make a new one (Client(cluster), "
                f"Client('tcp://HOST:8786')), or pass the cluster or the scheduler's address",
            )
        return Connection(executor, owned=False)
    if hasattr(executor, "scheduler_address"):  # a cluster object: LocalCluster, a deployment's cluster
        if getattr(getattr(executor, "status", None), "name", None) in ("closing", "closed"):
            raise SchedulerUnreachableError(
                _closed_address(executor),
                f"the Dask cluster given as executor= is closed ({executor!r}: cluster.close() was called, or "
                f"the `with` block it was made by ended); start a new one (local_cluster(2)), or pass a running "
                f"cluster's scheduler address",
            )
        return Connection(distributed.Client(executor, set_as_default=False), owned=True)
    if not isinstance(executor, str) or not executor.strip():
        raise TypeError(
            f"executor= takes a distributed.Client, a cluster, or a scheduler address such as "
            f"'tcp://host:8786'; got {executor!r}"
        )
    address = executor.strip()
    deadline = time.monotonic() + timeout
    _check_is_a_scheduler(address, timeout)
    try:
        client = distributed.Client(address, timeout=max(1.0, deadline - time.monotonic()), set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerUnreachableError(address, _unreachable(address, timeout, exc)) from exc
    return Connection(client, owned=True)


def _closed_address(executor: Any) -> str:
    """The scheduler address a closed client or cluster had, or "?" when it no longer says."""
    try:
        address = executor.scheduler_address if hasattr(executor, "scheduler_address") else executor.scheduler.address
    except Exception:  # a closed object may have let go of its scheduler
        return "?"
    return str(address) if address else "?"


def _unreachable(address: str, timeout: float, exc: BaseException | None) -> str:
    reason = str(exc)
    if reason.startswith("in <") and ">: " in reason:  # distributed's "in <TCPConnector object at 0x...>: ..."
        reason = reason.split(">: ", 1)[1]
    return (
        f"cannot reach a Dask scheduler at {address} (tried for {timeout:g} s: {reason}); start one with "
        f"`dask scheduler` and workers with `dask worker {address}`, or check the address and that "
        f"this machine can reach its port"
    )


def _check_is_a_scheduler(address: str, timeout: float) -> None:
    """A Dask scheduler answers at ``address`` within ``timeout`` seconds, or a
    SchedulerUnreachableError says what answered instead.

    Done before a ``Client`` is made, which bounds only the TCP connection by its ``timeout=``:
    a peer that accepts the connection and never speaks Dask (an HTTP server: the dashboard's
    port, given by mistake) keeps it waiting for ever, and a peer whose bytes read as a frame
    length makes it try to allocate that much (``MemoryError: Unable to allocate 3.07 EiB``).
    The check runs on an event loop of its own in a thread of its own (this may be a notebook
    cell, inside a running loop), and closes what it opened whatever happens."""
    found: list[tuple[str, Any]] = []

    def check() -> None:
        try:
            found.append(asyncio.run(_identify(address, timeout)))
        except BaseException as exc:  # a bug of ours: raised in the caller's thread below
            found.append(("error", exc))

    checker = threading.Thread(target=check, name="wfkit-dask-check", daemon=True)
    checker.start()
    checker.join(timeout + 5.0)  # _identify keeps to its deadline: this is a backstop
    what, detail = found[0] if found else ("silent", None)
    if what == "error" and isinstance(detail, BaseException):
        raise detail
    if what == "scheduler":
        return
    if what == "not-an-address":
        raise SchedulerUnreachableError(
            address,
            f"{address} is not a Dask scheduler's address ({detail}): give it as tcp://HOST:PORT, which "
            f"`dask scheduler` prints (port 8786 by default: tcp://{_host_of(address)}:8786); an http:// link is "
            f"its dashboard, a web page",
        ) from (detail if isinstance(detail, BaseException) else None)
    if what == "unreachable":
        cause = detail if isinstance(detail, BaseException) else None
        raise SchedulerUnreachableError(address, _unreachable(address, timeout, detail)) from cause
    if what == "no-tls":
        raise SchedulerUnreachableError(
            address,
            f"{address} is a TLS address, and no TLS settings were found to connect with: make the client "
            f"yourself with them and pass it as executor= (from distributed import Client, Security; "
            f"Client({address!r}, security=Security(tls_ca_file=..., tls_client_cert=..., tls_client_key=...))), "
            f"or set them in Dask's configuration (distributed.comm.tls.ca-file, .client.cert, .client.key)",
        )
    if what == "dask":
        raise SchedulerUnreachableError(
            address,
            f"{address} is a Dask {detail}, not the scheduler: give the scheduler's address instead (a "
            f"worker's log names it after 'Registered to:'; `dask scheduler` listens on port 8786 by default)",
        )
    said = {
        "silent": f"it did not answer Dask's handshake within {timeout:g} s",
        "closed": "it closed the connection instead of answering Dask's handshake",
    }.get(what, f"it answered Dask's handshake with bytes that are not Dask's protocol ({detail})")
    raise SchedulerUnreachableError(
        address,
        f"something answers at {address}, but it is not a Dask scheduler: {said}. Check the address and "
        f"its port: a scheduler listens on 8786 by default and its dashboard (a web page, http://) on 8787; "
        f"`dask scheduler` prints its address as tcp://HOST:PORT",
    )


def _host_of(address: str) -> str:
    """The host an address names (``HOST`` when it names none), for the example a message gives."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return (host if port.isdigit() else rest) or "HOST"


async def _identify(address: str, timeout: float) -> tuple[str, Any]:
    """What answers at ``address``, within ``timeout`` s: ``("scheduler", None)``, ``("dask", its
    type)`` for another Dask server (a worker, a nanny), ``("not-an-address", why)`` for an address
    Dask cannot parse (an http:// link), ``("no-tls", None)`` for a tls:// address without TLS
    settings in Dask's configuration, ``("unreachable", the last error)`` when
    no connection could be made, ``("silent", None)`` when the peer accepted it but did not answer
    the handshake in time, ``("closed", None)`` when it hung up, ``("garbage", what failed)`` when
    it answered something else. Never raises.

    The steps of ``distributed.comm.connect``, each bounded by the deadline (its handshake is not),
    then the ``identity`` call a Client makes first."""
    distributed = import_distributed()
    from distributed.comm.core import FatalCommClosedError
    from distributed.comm.registry import get_backend

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        scheme, location = distributed.comm.parse_address(address)
        backend: Any = get_backend(scheme)
        connector = backend.get_connector()
        connection_args = distributed.Security().get_connection_args("client")
    except (ValueError, TypeError) as exc:
        return "not-an-address", exc
    if scheme == "tls" and connection_args.get("ssl_context") is None:
        return "no-tls", None  # Dask's TLS connector would fail with a TypeError about ssl_context
    comm: Any = None
    last: BaseException | None = None
    while comm is None:  # a scheduler that is starting: try again until the deadline, as connect does
        left = deadline - loop.time()
        if left <= 0:
            return "unreachable", last or TimeoutError(f"no connection within {timeout:g} s")
        try:
            comm = await asyncio.wait_for(connector.connect(location, deserialize=True, **connection_args), left)
        except FatalCommClosedError as exc:  # TLS refused: no retry helps
            return "unreachable", exc
        except ValueError as exc:  # a malformed host (`localhost`, no port): no address to try at all
            return "not-an-address", exc
        except (OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
    try:
        async with asyncio.timeout_at(deadline):
            local = comm.handshake_info()
            await comm.write(local)
            remote = await comm.read()
            if not isinstance(remote, dict):
                return "garbage", f"a handshake of type {type(remote).__name__}"
            comm.remote_info = {**remote, "address": comm.peer_address}
            comm.local_info = {**local, "address": comm.local_address}
            comm.handshake_options = comm.handshake_configuration(comm.local_info, comm.remote_info)
            await comm.write({"op": "identity", "reply": True})
            identity = await comm.read()
    except TimeoutError:
        return "silent", None
    except distributed.comm.CommClosedError:
        return "closed", None
    except Exception as exc:  # MemoryError for a "frame" of exabytes, a payload that does not decode...
        return "garbage", type(exc).__name__
    finally:
        comm.abort()
    kind = identity.get("type") if isinstance(identity, dict) else None
    if isinstance(kind, str) and kind.endswith("Scheduler"):  # Scheduler, or a deployment's subclass
        return "scheduler", None
    if isinstance(kind, str):
        return "dask", kind
    return "garbage", "an identity without a type"


def threads_of(conn: Connection) -> int:
    """Worker threads in the cluster, once there is at least one worker."""
    try:
        conn.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except TimeoutError as exc:
        raise SchedulerUnreachableError(
            conn.address,
            f"the Dask scheduler at {conn.address} has no workers (waited {WORKERS_TIMEOUT:g} s); "
            f"start some with `dask worker {conn.address}`",
        ) from exc
    return max(1, int(sum(conn.client.nthreads().values())))


def partition_size(cases: int, threads: int, requested: int | None = None) -> int:
    """Cases per partition: ``requested``, else enough partitions for a few per worker thread."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"partition_size must be >= 1, got {requested}")
        return requested
    return max(1, math.ceil(cases / (PARTITIONS_PER_THREAD * threads)))


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# ---- the worker's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionOutput:
    """What a partition's work produced: result rows, and the workspaces its runs were kept in."""

    rows: list[dict[str, Any]]
    workspaces: tuple[Path, ...] = ()


class Progress(Protocol):
    """What a partition's work tells of its progress: ``cases`` more done. Raises (on a worker) once
    the driver gave the job up, so a work calls it with 0 as each case starts, to stop before it."""

    def __call__(self, cases: int = 1) -> None: ...


class Work(Protocol):
    """One partition's work, run on a worker: picklable, given a private scratch folder."""

    def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput: ...

    def describe(self) -> str:
        """What this work runs, said for a person ("runs of workflow 'w' for inputs 4, 5"): what an
        error about its partition names."""
        ...

    def at_most_once(self) -> str | None:
        """What of this work must not run twice (runs with irreversible steps), said for a person;
        None when running it again is harmless."""
        ...


def _topic(job: str) -> str:
    return f"wfkit-progress-{job}"


class _GivenUp(Exception):
    """Raised on a worker, as a case ends or starts, in a partition whose job the driver gave up."""


class _Reporter:
    """Cases done in this attempt, sent to the driver as a Dask event now and then; at each call (a
    case ended, or one starts), a :class:`_GivenUp` when the driver has given the job up meanwhile."""

    def __init__(self, job: str, partition: int, stem: str) -> None:
        self.job, self.partition, self.stem = job, partition, stem
        self.done = 0
        self._sent_at = 0.0
        self._lock = threading.Lock()
        try:
            distributed = import_distributed()
            self._worker: Any = distributed.get_worker()
            self._key: Any = getattr(distributed.worker.thread_state, "key", None)  # this task's
        except (ImportError, ValueError):
            self._worker = self._key = None  # run outside a worker (a test, a local call): nobody to tell

    def __call__(self, cases: int = 1) -> None:
        with self._lock:
            self.done += cases
            if time.monotonic() - self._sent_at >= 0.2:
                self.send()
        if self._given_up():
            raise _GivenUp(f"job {self.job} was given up: partition {self.partition} stops after {self.done} cases")

    def _given_up(self) -> bool:
        """The driver cancelled this task (an interrupt, a failed partition). Dask then forgets it
        at the scheduler, but cannot stop the thread running it: left alone, the partition would run
        all its cases on (their LLM calls too), holding its worker from the user's next job."""
        if self._worker is None or self._key is None:
            return False
        # Read from this thread: a dict look-up, which the GIL keeps whole.
        task = self._worker.state.tasks.get(self._key)
        return task is None or task.state in ("cancelled", "released", "forgotten")

    def send(self) -> None:
        self._sent_at = time.monotonic()
        if self._worker is not None:
            message = {"partition": self.partition, "stem": self.stem, "done": self.done}
            self._worker.log_event(_topic(self.job), message)


def _scratch_root() -> str:
    try:
        return str(import_distributed().get_worker().local_directory)
    except (ImportError, ValueError):
        return tempfile.gettempdir()


def _unpickle(payload: bytes) -> Work:
    import pickle

    try:
        work: Work = pickle.loads(payload)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"a Dask worker cannot import {exc.name!r}, which the work sent to it uses: install it on every "
            f"worker, or define the workflow in the notebook or script that sends it",
            name=exc.name,
        ) from exc
    return work


class _ScratchWorkspaces:
    """This process's scratch workspaces, used again partition after partition.

    A partition's runs are kept in a scratch workspace only until :func:`write_attempt` has put
    their rows in the dataset, durably. Making a new store for each partition (a new SQLite file,
    its schema, a writer thread, the syncs of its creation and its closing) cost about a third of
    a partition's own CPU and, on a busy disk, more idle time than that; so a partition that ends
    well hands its folder back, emptied (its store's rows dropped, its other files removed), to the
    next partition of this process. One partition at a time per folder: a worker of several
    threads holds as many. A partition that fails takes its folder with it (deleted), and so does
    a worker that dies: its partition runs again elsewhere. The folders live in the Dask worker's
    own directory, which Dask removes with the worker; this process removes those left at exit.
    """

    def __init__(self) -> None:
        self._idle: list[Path] = []
        self._all: set[Path] = set()
        self._lock = threading.Lock()
        self._atexit = False

    def take(self) -> Path:
        from wfkit.store._workspace import mark_scratch

        with self._lock:
            if self._idle:
                return self._idle.pop()
        folder = Path(tempfile.mkdtemp(prefix="wfkit-scratch-", dir=_scratch_root()))
        # Its store need not wait for the disk at each commit ($WFKIT_SYNCHRONOUS is "full" on a
        # worker nobody configured): a worker that dies loses the folder anyway.
        mark_scratch(folder)
        with self._lock:
            self._all.add(folder)
            if not self._atexit:
                atexit.register(self.remove_all)
                self._atexit = True
        return folder

    def give_back(self, folder: Path) -> None:
        """``folder``'s rows are in the dataset: empty it for the next partition."""
        from wfkit.store._workspace import DB_NAME, open_store

        store = open_store(folder)
        store.drop_all_rows()
        keep = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"}
        for entry in folder.iterdir():  # what the work wrote beside its runs (notebooks, exports)
            if entry.name not in keep:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        with self._lock:
            self._idle.append(folder)

    def discard(self, folder: Path) -> None:
        from wfkit.store._workspace import forget_store

        forget_store(folder)  # its store closed, the scratch mark dropped
        shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._all.discard(folder)

    def remove_all(self) -> None:
        with self._lock:
            folders, self._idle = list(self._all), []
        for folder in folders:
            self.discard(folder)


_scratch_workspaces = _ScratchWorkspaces()


def run_partition(dataset: str, job: str, partition: int, payload: bytes) -> dict[str, Any]:
    """Run one partition as a new attempt and write it to the dataset; returns its commit marker.
    ``payload`` is the partition's work, cloudpickled by the driver (see :func:`run_job`)."""
    import pyarrow as pa

    from wfkit.store._workspace import DB_NAME, forget_store, open_store

    work = _unpickle(payload)
    location = Location(dataset)
    attempt = begin_attempt(location, job, partition)
    if attempt.number > 1:
        _refuse_a_second_run(work, job, partition)
    scratch = _scratch_workspaces.take()
    try:
        reporter = _Reporter(job, partition, attempt.stem)
        output = work(scratch, reporter)
        _leave_the_thread_pool()
        step_rows: list[Sequence[Any]] = []
        for workspace in output.workspaces:
            if (workspace / DB_NAME).exists():
                step_rows.extend(journal_rows(open_store(workspace)))
        results = pa.Table.from_pylist(output.rows) if output.rows else None
        marker = write_attempt(location, attempt, step_rows, results)
        if job_ended(location, job):  # the driver gave the job up, or took another attempt, meanwhile
            set_aside_attempt(location, marker)
    except BaseException:
        _scratch_workspaces.discard(scratch)
        raise
    reporter.send()
    try:
        for workspace in output.workspaces:
            if workspace != scratch:  # the work's own workspaces (a replayed notebook's): done with
                forget_store(workspace)
        _scratch_workspaces.give_back(scratch)
    except Exception:  # the attempt is committed: a folder that cannot be emptied is only dropped
        _scratch_workspaces.discard(scratch)
    return marker


def _refuse_a_second_run(work: Work, job: str, partition: int) -> None:
    """An earlier attempt of this partition started and never committed (its worker died, or it
    failed): its runs are gone with its scratch workspace, intents and all, so running them again
    would run an irreversible step a second time (a second email), which at-most-once forbids."""
    described = work.at_most_once()
    if described is not None:
        raise RuntimeError(
            f"partition {partition} of job {job} was cut off on an earlier attempt (its worker died, or the "
            f"attempt failed) while it ran {described}: it is not run again, so that no irreversible step "
            f"runs twice. Check which of those inputs' irreversible steps took effect, then run again only "
            f"the others"
        )


def _leave_the_thread_pool() -> None:
    """Hand this task's worker thread to the worker's next partition (Dask's ``secede``): what is
    left of this one, writing its files to the dataset, mostly waits for the disk (six fsyncs, for
    the segments and then the commit marker), and that wait would leave the thread, and its core,
    idle. The task still ends only once its marker is written, so nothing changes for retries or
    for a worker that dies. Outside a worker (a direct call), nothing to do."""
    try:
        distributed = import_distributed()
        worker = distributed.get_worker()
    except (ImportError, ValueError):
        return
    if getattr(worker.status, "name", "running") not in ("running", "paused"):
        # A closing worker holds the lock secede needs while it waits (30 s) for its threads,
        # this one among them: leaving the pool then would only wait for that timeout. A paused
        # one (memory pressure) is not closing: it still finishes what it runs, and the thread
        # goes back to its pool as on a running worker.
        return
    distributed.secede()


def _can_see(dataset: str, probe: str) -> bool:
    return Location(dataset).exists(probe)


# ---- the driver's side ----------------------------------------------------------------------


@dataclass
class JobOutcome:
    """A finished job: the attempt taken per partition, and their result rows."""

    job: str
    location: Location
    markers: list[dict[str, Any]]
    results: pa.Table | None
    seconds: float
    partitions: int
    dashboard: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


class _Bars:
    """A bar of partitions and a bar of cases (see :func:`wfkit._jupyter.progress_bar`)."""

    def __init__(self, label: str, partitions: int, cases: int, enabled: bool) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._done: dict[int, tuple[str, int]] = {}  # partition -> (attempt stem, cases done)
        if not enabled:
            return
        self.parts = progress_bar(partitions, desc=f"{label}: partitions", unit="partition")
        self.cases = progress_bar(cases, desc=f"{label}: cases", unit="case")

    def event(self, event: tuple[float, dict[str, Any]]) -> None:
        """From the client's thread: a worker's count. A re-run partition replaces its earlier
        count, so the bar never counts a case twice."""
        msg = event[1]
        with self._lock:
            self._done[int(msg["partition"])] = (str(msg["stem"]), int(msg["done"]))

    def refresh(self, finished: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            cases = sum(n for _, n in self._done.values())
        if finished == self.parts.total:  # a partition's last count may reach us after its result
            cases = self.cases.total
        self.parts.n = finished
        self.cases.n = min(cases, self.cases.total)
        self.parts.refresh()
        self.cases.refresh()

    def close(self) -> None:
        # The lower bar first: closing the upper one first leaves the cursor at the end of a
        # line of spaces, and whatever prints next starts there and wraps.
        if self.enabled:
            self.cases.close()
            self.parts.close()


def announce_default(message: str) -> None:
    print(message, file=sys.stdout, flush=True)


W = TypeVar("W", bound=Work)


def run_partitioned(
    executor: Executor,
    dataset: str | os.PathLike[str],
    *,
    cases: int,
    split: Callable[[int], Sequence[W]],
    size_of: Callable[[W], int],
    label: str,
    requested_size: int | None = None,
    retries: int = 2,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> JobOutcome:
    """Run ``cases`` cases on Dask: connect (an unreachable scheduler is an error before any work),
    cut them into partitions sized for the cluster (``split(size)``: the works, each of
    ``size_of(work)`` cases; ``requested_size`` overrides the size), run them, and close. ``stop``:
    see :func:`run_job`."""
    conn = connect(executor)
    try:
        works = split(partition_size(cases, threads_of(conn), requested_size))
        return run_job(
            executor,
            dataset,
            works,
            cases=[size_of(w) for w in works],
            label=label,
            retries=retries,
            progress=progress,
            announce=announce or announce_default,
            connection=conn,
            stop=stop,
        )
    finally:
        conn.close()


def run_job(
    executor: Executor,
    dataset: str | os.PathLike[str],
    works: Sequence[Work],
    *,
    cases: Sequence[int],
    label: str,
    retries: int = 2,
    progress: bool = True,
    announce: Callable[[str], None] = announce_default,
    connection: Connection | None = None,
    stop: threading.Event | None = None,
) -> JobOutcome:
    """Send ``works`` (one per partition, ``cases[i]`` cases each) to Dask and wait for them all.

    The dataset must be visible from every worker; that is checked before any work is sent. A
    partition that fails on every attempt cancels the rest and raises :class:`PartitionError`.
    ``stop``, set from another thread (whose caller was interrupted while this one waits for the
    job), gives the job up as an interrupt does: a KeyboardInterrupt, noting where its rows went.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    conn = connection or connect(executor)
    client = conn.client
    try:
        threads_of(conn)
        link, dashboard = _dashboard(client)
        announce(f"Dask: {len(works)} partitions of {label} to {conn.address}; {dashboard}")
        location = Location(dataset)
        job = new_job_id()
        _check_dataset(client, location, job, label=label, partitions=len(works))
        from wfkit.distributed._shield import InterruptShield

        # Workers this process started (a LocalCluster in the same notebook) outlive its stop button.
        client.register_plugin(InterruptShield())
        t0 = time.perf_counter()
        bars = _Bars(label, len(works), sum(cases), progress)
        topic = _topic(job)
        client.subscribe_topic(topic, bars.event)
        keys = [f"wfkit-{label}-{job}-p{i:05d}" for i in range(len(works))]
        futures = client.map(
            run_partition,
            [location.url] * len(works),
            [job] * len(works),
            list(range(len(works))),
            _pickled(works),
            key=keys,
            retries=retries,
            pure=False,
        )
        t_submitted = time.perf_counter()
        index = {f.key: i for i, f in enumerate(futures)}
        markers: dict[int, dict[str, Any]] = {}
        results: dict[int, pa.Table | None] = {}
        read_s = 0.0
        # Each future, once finished (done, failed on every attempt, or cancelled), is put here by
        # the client's callback thread: the driver takes it at once, rather than at its next look.
        finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        try:
            for future in futures:
                future.add_done_callback(finished.put)
            while len(markers) < len(futures):
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt(f"interrupted while job {job} ran")
                try:
                    future = finished.get(timeout=0.2)
                except queue.Empty:
                    bars.refresh(len(markers))  # the cases bar moves with the workers' events
                    continue
                part = index[future.key]
                try:
                    # Read from the scheduler: a future it finished may still fail here, when the
                    # scheduler went away between finishing it and handing over its result.
                    markers[part] = future.result()
                except Exception as exc:
                    raise _failure(
                        conn, future, exc, job, part, retries, location, done=len(markers), total=len(futures),
                        work=works[part],
                    ) from exc  # fmt: skip
                # Its result is here: let the scheduler forget it. A held result whose worker
                # dies is computed again, and a finished partition would run a second time.
                future.release()
                # Read now, while other partitions still run: the driver's share of the job
                # then ends with its last partition, instead of a read per partition after it.
                t_read = time.perf_counter()
                results[part] = read_results(location, [markers[part]])
                read_s += time.perf_counter() - t_read
                bars.refresh(len(markers))
        except BaseException as exc:
            with suppress(Exception):  # a client whose scheduler is gone cannot cancel anything
                client.cancel([f for i, f in enumerate(futures) if i not in markers])
            _abort(location, job, label, exc, markers.values())
            raise
        finally:
            with suppress(Exception):
                client.unsubscribe_topic(topic)
            bars.close()
        t_done = time.perf_counter()
        ordered = [markers[i] for i in range(len(works))]
        _check_not_given_up(location, job)
        commit_job(location, job, ordered, label=label)
        tables = [t for t in (results[i] for i in range(len(works))) if t is not None]
        table = _concat(tables) if tables else None
        t_end = time.perf_counter()
        timings = {"submit_s": t_submitted - t0, "wait_s": t_done - t_submitted, "collect_s": t_end - t_done}
        timings["read_s"] = read_s  # reading each partition's results as it came (inside wait_s)
        return JobOutcome(job, location, ordered, table, t_end - t0, len(works), link, timings)
    finally:
        if connection is None:
            conn.close()


def _dashboard(client: Any) -> tuple[str | None, str]:
    """The dashboard's link (None when there is none) and what to announce of it: "dashboard: LINK",
    or why there is none and how to get one. Dask names a dashboard among a scheduler's services
    whether or not it serves one, so a scheduler in this process is asked what it serves, and the
    link of one in another process is tried (``missing_remote``)."""
    from wfkit.distributed._local import missing_for_client

    missing = missing_for_client(client)
    if missing is not None:
        return None, missing
    try:
        link = client.dashboard_link
    except KeyError:  # a scheduler naming no dashboard among its services
        link = None
    if not link:
        return None, "no dashboard: the scheduler names none"
    return str(link), f"dashboard: {link}"


def _check_not_given_up(location: Location, job: str) -> None:
    """The job was not recorded as aborted while it ran (``wfkit doctor --abort`` on another machine,
    whose user took this driver for dead): committing would take that back, and count the job beside
    the run that likely replaced it."""
    if not job_ended(location, job):
        return
    ended = json.loads(location.read_bytes(job_file(job)))
    raise ExecutorError(
        f"job {job} was given up while it ran ({ended.get('aborted', 'its end was recorded elsewhere')}): none "
        f"of its rows count; they are set aside in {location.url.rstrip('/')}/steps-uncounted/{job}. Run it "
        f"again if no other run replaced it"
    )


def _concat(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    return pa.concat_tables(tables, promote_options="default")


def _pickled(works: Sequence[Work]) -> list[bytes]:
    """Each work cloudpickled here. Dask pickles a task's arguments with plain pickle when it can,
    which names functions by module; a module the workers cannot import (a suite file loaded by
    path) would then fail while the worker reads its messages, and the task would never end.
    Unpickled inside the task, such a failure is the task's error, retried and reported."""
    import cloudpickle

    payloads = []
    for number, work in enumerate(works):
        try:
            payloads.append(cloudpickle.dumps(work))
        except Exception as exc:  # pickling raises TypeError, PicklingError, AttributeError...
            raise TypeError(
                f"partition {number}'s work ({type(work).__name__}) cannot be sent to Dask workers: "
                f"{type(exc).__name__}: {exc}. {_SENDABLE_HINT}"
            ) from exc
    return payloads


_SENDABLE_HINT = (
    "What runs on a worker is pickled (with cloudpickle): make the object picklable (its "
    "__getstate__/__reduce__), or make it on the worker instead, inside the step"
)


def check_sendable(values: Mapping[str, Any]) -> None:
    """Each value pickles as the work sent to Dask will; else a TypeError naming it (its key in
    ``values``, e.g. ``"llm="``), before anything is sent."""
    import cloudpickle

    for name, value in values.items():
        try:
            cloudpickle.dumps(value)
        except Exception as exc:  # pickling raises TypeError, PicklingError, AttributeError...
            raise TypeError(
                f"{name} cannot be sent to Dask workers: {type(exc).__name__}: {exc}. {_SENDABLE_HINT}"
            ) from exc


def _failure(
    conn: Connection,
    future: Any,
    cause: BaseException,
    job: str,
    partition: int,
    retries: int,
    location: Location,
    *,
    done: int,
    total: int,
    work: Work | None = None,
) -> ExecutorError:
    """Why a partition's future gave no result (``cause``, what reading it raised): the scheduler
    went away, or the partition failed on every attempt. Either way the job is given up (see
    :func:`_abort`), as the message says."""
    root = location.url.rstrip("/")
    if done:
        aside = (
            f"None of this job's rows count: those of the {done} of {total} partitions that finished are set "
            f"aside in {root}/steps-uncounted/{job} (step log) and {root}/results/{job}."
        )
    else:
        aside = f"No partition had finished; whatever one writes now is set aside in {root}/steps-uncounted/{job}."
    lost = getattr(cause, "reason", None) == "scheduler-connection-lost" or (
        # a failure to talk to the scheduler, not a partition's own error (raised on a worker)
        isinstance(cause, OSError) and future.status == "finished"
    )
    if lost or conn.client.status != "running":
        error: ExecutorError = SchedulerLostError(
            conn.address,
            job,
            f"lost the Dask scheduler at {conn.address} while job {job} ran ({done} of {total} partitions "
            f"had finished). {aside} Start the scheduler and its workers again (`dask scheduler`, "
            f"`dask worker {conn.address}`), then run the whole job again.",
        )
    else:
        error = PartitionError(
            job,
            partition,
            f"partition {partition} of job {job} failed on every attempt ({retries} retries, plus re-runs "
            f"for workers that died): {type(cause).__name__}: {cause}\n{_died_hint(cause, work)}{aside}",
        )
    return error


def _died_hint(cause: BaseException, work: Work | None) -> str:
    """For a partition every worker died running (Dask's KilledWorker): what kills a worker, what
    the partition held, and how to find the culprit; "" for any other failure (its error says)."""
    if type(cause).__name__ != "KilledWorker" or work is None:
        return ""
    return (
        f"Each worker that ran it died: something ends the worker's process (os._exit or a signal in a step, "
        f"a crash in native code, memory beyond the worker's limit; the worker's log says which), in this "
        f"partition or in one running beside it on the same worker. It held {work.describe()}: run those "
        f"without Dask (executor=None; a command without --dask) to see which.\n"
    )


def _abort(location: Location, job: str, label: str, exc: BaseException, markers: Iterable[dict[str, Any]]) -> None:
    """Give ``job`` up: record it as aborted (readers count none of it) and set its rows aside.
    Never hides ``exc``: a dataset that cannot be written to says so in a note on it."""
    finished = list(markers)
    try:
        aside = abort_job(location, job, f"{type(exc).__name__}: {exc}"[:2000], label=label)
    except Exception as failed:  # the dataset may be what failed
        exc.add_note(
            f"wfkit could not mark job {job} as aborted in {location.url} ({type(failed).__name__}: {failed}): "
            f"no reader counts its rows, which stay staged until `wfkit doctor --dataset {location.url} --repair` "
            f"gives the job up"
        )
        return
    if not isinstance(exc, ExecutorError):  # an interrupt, a bug: say what became of the job too
        exc.add_note(
            f"wfkit gave up job {job} ({len(finished)} partitions had finished): none of its rows count; "
            f"what its partitions wrote is set aside in {aside}"
        )


def _check_dataset(client: Any, location: Location, job: str, **about: Any) -> None:
    """Every worker must see the dataset (a folder on this machine is not on another one). The file
    they look for is the job's driver record, which ``wfkit doctor`` reads should this process die
    before the job ends."""
    probe = f"{STEPS_DIR}/{ATTEMPTS_DIR}/{job}/{DRIVER_FILE}"
    location.write_bytes(probe, json.dumps(driver_record(**about)).encode())
    try:
        seen = client.run(_can_see, location.url, probe)
    except (ImportError, ModuleNotFoundError) as exc:
        raise DatasetUnreachableError(
            f"the Dask workers cannot import wfkit ({exc}); install wfkit, and the modules your "
            f"workflows come from, on every worker"
        ) from exc
    blind = sorted(worker for worker, ok in seen.items() if not ok)
    if blind:
        raise DatasetUnreachableError(
            f"worker(s) {', '.join(blind)} cannot see the dataset {location.url}: pass dataset= a folder "
            f"every worker shares, or an fsspec URL such as s3://bucket/path"
        )
