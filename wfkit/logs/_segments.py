"""A dataset written by many workers at once: one segment per partition attempt.

Work sent to Dask goes in partitions. A worker killed mid-partition has its partition run again
elsewhere, and a partition may even run twice at once (a worker the scheduler gave up on, still
alive). So every attempt writes files of its own, named by job, partition, attempt and a random
token, and declares itself complete with a commit marker written after them::

    DATASET/steps-staging/JOB/workflow=W/date=D/job-JOB-p00003-a02-TOKEN.parquet   step-log rows
    DATASET/results/JOB/p00003-a02-TOKEN.parquet                         the job's result rows
    DATASET/steps/_attempts/JOB/p00003-a02-TOKEN.started                 who started it, and where
    DATASET/steps/_attempts/JOB/p00003-a02-TOKEN.commit                  its files; written last
    DATASET/steps/_attempts/JOB/_driver.json                             who sent the job (see ``_driver``)
    DATASET/steps/_attempts/JOB/_job.json                                the attempt taken per partition

An attempt's step-log segments are staged outside ``steps/``, where no reader looks. The job's
end moves them: when the driver commits the job (``_job.json`` names the attempt taken per
partition), the taken attempts' segments are renamed into ``steps/`` (same hive layout, one
atomic rename each), and every other attempt's (cut off, superseded, or committed after the job
ended) to ``DATASET/steps-uncounted/JOB/`` (never deleted). A job the driver gave up on (a
partition failed on every attempt, the scheduler went away, the caller interrupted it) is recorded
as aborted in its ``_job.json``, and all its segments go to ``steps-uncounted``. So ``steps/``
holds only rows of committed jobs, each run once, and pandas, pyarrow and DuckDB reading it
directly count what wfkit counts; a partition still running when its job ended moves its own
segments aside. A job with no end (its driver killed) counts nothing until ``wfkit doctor
--repair`` ends it (see ``_unfinished``), which also finishes the moves of a driver killed halfway
through them. The dataset is a local folder or an fsspec URL (``s3://``, ``gs://``...): local
files are written to a temporary name, fsynced and renamed; elsewhere a temporary object is moved
into place. Step-log segments keep the schema and hive layout of ``_steplog``, so the workspace
reader (and pandas, pyarrow, DuckDB) read them as they read a workspace's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfkit.logs._dataset import ATTEMPTS_DIR, JOB_FILE, SEGMENT_NAME, STAGING_DIR, STEPS_DIR, Location
from wfkit.logs._steplog import FILE_COLUMNS, _partition, _table

if TYPE_CHECKING:
    import pyarrow as pa

    from wfkit.store._store import Store

RESULTS_DIR = "results"
UNCOUNTED_DIR = "steps-uncounted"
"""Where a job's step-log segments that no reader counts are set aside, one folder per job."""


def new_job_id() -> str:
    """Sortable by start time, unique without coordination."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(3)


# ---- writing one attempt ----------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One attempt at one partition of a job."""

    job: str
    partition: int
    number: int
    token: str

    @property
    def stem(self) -> str:
        return f"p{self.partition:05d}-a{self.number:02d}-{self.token}"

    @property
    def marker_dir(self) -> str:
        return f"{STEPS_DIR}/{ATTEMPTS_DIR}/{self.job}"


def begin_attempt(location: Location, job: str, partition: int) -> Attempt:
    """Number this attempt (earlier attempts of the partition + 1) and record who runs it; the
    token keeps two attempts that took the same number apart."""
    if not re.fullmatch(r"[0-9a-z]+", job):
        raise ValueError(f"a job id is lowercase letters and digits, got {job!r}")
    folder = f"{STEPS_DIR}/{ATTEMPTS_DIR}/{job}"
    prefix = f"p{partition:05d}-"
    earlier = [n for n in location.names(folder) if n.startswith(prefix) and n.endswith(".started")]
    attempt = Attempt(job, partition, len(earlier) + 1, secrets.token_hex(4))
    who = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}
    # Not fsynced: a start marker lost in a power cut only lets a later attempt take the same
    # number, which its token keeps apart; readers count commit markers, never start markers.
    location.write_bytes(f"{folder}/{attempt.stem}.started", json.dumps(who).encode(), durable=False)
    return attempt


def journal_rows(store: Store) -> list[Sequence[Any]]:
    """Every journal row of a partition's scratch workspace (segment columns, then the workflow),
    whether or not the process that ran them (a notebook's kernel, say) exported them there too."""
    return list(store.all_journal_rows(FILE_COLUMNS))


def write_attempt(
    location: Location, attempt: Attempt, step_rows: Sequence[Sequence[Any]], results: pa.Table | None
) -> dict[str, Any]:
    """Write the attempt's step-log segments (staged: see :func:`settle`) and result rows, then its
    commit marker (last: an attempt cut off before it is never counted). Returns the marker's
    content, which names each segment by the path it has in ``steps/`` once its job takes it."""
    started_at = FILE_COLUMNS.index("started_at")
    by_partition: dict[tuple[str, str], list[Sequence[Any]]] = {}
    for row in step_rows:
        date = dt.datetime.fromtimestamp(row[started_at], dt.UTC).strftime("%Y-%m-%d")
        by_partition.setdefault((row[-1], date), []).append(row[:-1])
    steps = []
    for (workflow, date), rows in sorted(by_partition.items()):
        folder = _partition(Path(), workflow, date).as_posix()
        rel = f"{folder}/job-{attempt.job}-{attempt.stem}.parquet"
        location.write_table(staged(attempt.job, rel), _table(rows))
        steps.append({"path": rel, "rows": len(rows)})
    result_file = None
    if results is not None:
        rel = f"{RESULTS_DIR}/{attempt.job}/{attempt.stem}.parquet"
        location.write_table(rel, results)
        result_file = {"path": rel, "rows": results.num_rows}
    marker = {
        "job": attempt.job,
        "partition": attempt.partition,
        "attempt": attempt.number,
        "token": attempt.token,
        "stem": attempt.stem,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "committed_at": time.time(),
        "steps": steps,
        "results": result_file,
    }
    location.write_bytes(f"{attempt.marker_dir}/{attempt.stem}.commit", json.dumps(marker).encode())
    return marker


def staged(job: str, rel: str) -> str:
    """Where the segment that counts at ``rel`` (``steps/...``) is staged until ``job`` ends."""
    return f"{STAGING_DIR}/{job}/{rel.removeprefix(STEPS_DIR + '/')}"


def job_file(job: str) -> str:
    return f"{STEPS_DIR}/{ATTEMPTS_DIR}/{job}/{JOB_FILE}"


def job_ended(location: Location, job: str) -> bool:
    """The driver committed ``job``, or gave it up: no attempt written from now on counts."""
    return location.exists(job_file(job))


def commit_job(location: Location, job: str, markers: Iterable[dict[str, Any]], **about: Any) -> None:
    """Record the attempt the driver took for each partition: from now on readers count those,
    whose segments are moved into ``steps/`` (the others' aside: see :func:`settle`)."""
    chosen = {str(m["partition"]): m["stem"] for m in markers}
    body = {"job": job, "partitions": chosen, "committed_at": time.time(), **about}
    location.write_bytes(job_file(job), json.dumps(body).encode())
    settle(location, job, set(chosen.values()))


def abort_job(location: Location, job: str, reason: str, **about: Any) -> str:
    """Record that the driver gave ``job`` up: readers count none of its partitions, and its
    segments are set aside. Returns the folder they are in now."""
    body = {"job": job, "partitions": {}, "aborted": reason, "committed_at": time.time(), **about}
    location.write_bytes(job_file(job), json.dumps(body).encode())
    settle(location, job, set())
    return f"{location.url.rstrip('/')}/{UNCOUNTED_DIR}/{job}"


def settle(location: Location, job: str, taken: set[str]) -> tuple[int, int]:
    """Move what ``job``'s attempts staged, once the job ended: the segments of the ``taken``
    attempts (their stems) into ``steps/``, where every reader counts them, and all else to
    ``UNCOUNTED_DIR/JOB/``. Returns how many files went each way. A file still being written (a
    temporary) is left to its attempt, which sets itself aside when it sees the job ended; a file
    another process moved first is skipped. A taken segment that cannot be moved raises: its rows
    would count nowhere (``wfkit doctor --repair`` moves it later)."""
    base = f"{STAGING_DIR}/{job}/"
    counted = aside = 0
    for rel in location.files(base.rstrip("/")):
        inner = rel.removeprefix(base)
        name = inner.rpartition("/")[2]
        if name.startswith("."):
            continue
        match = SEGMENT_NAME.match(name)
        if match is not None and match["stem"] in taken:
            try:
                location.move(rel, f"{STEPS_DIR}/{inner}")
            except FileNotFoundError:  # moved by another process meanwhile
                continue
            counted += 1
        else:
            with suppress(OSError):  # moved already, or cannot be: no reader looks in staging anyway
                location.move(rel, f"{UNCOUNTED_DIR}/{job}/{inner}")
                aside += 1
    location.remove_empty_folders(base.rstrip("/"))
    return counted, aside


def set_aside_attempt(location: Location, marker: dict[str, Any]) -> None:
    """Set aside the segments of one attempt, committed after its job ended."""
    job = str(marker["job"])
    for segment in marker.get("steps") or ():
        rel = staged(job, segment["path"])
        with suppress(OSError):  # moved already by the job's end, or cannot be: no reader looks there
            location.move(rel, f"{UNCOUNTED_DIR}/{rel.removeprefix(STAGING_DIR + '/')}")
    location.remove_empty_folders(f"{STAGING_DIR}/{job}")


def read_results(location: Location, markers: Sequence[dict[str, Any]]) -> pa.Table | None:
    """The result rows of the given attempts, in partition order (None when there are none)."""
    import pyarrow as pa

    ordered = sorted((m for m in markers if m["results"]), key=lambda m: int(m["partition"]))
    tables = [location.read_table(m["results"]["path"]) for m in ordered]
    return pa.concat_tables(tables, promote_options="default") if tables else None
