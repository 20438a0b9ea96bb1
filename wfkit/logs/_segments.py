"""A dataset written by many workers at once: one segment per partition attempt.

Work sent to Dask goes in partitions. A worker killed mid-partition has its partition run again
elsewhere, and a partition may even run twice at once (a worker the scheduler gave up on, still
alive). So every attempt writes files of its own, named by job, partition, attempt and a random
token, and declares itself complete with a commit marker written after them::

    DATASET/steps/workflow=W/date=D/job-JOB-p00003-a02-TOKEN.parquet   step-log rows
    DATASET/results/JOB/p00003-a02-TOKEN.parquet                         the job's result rows
    DATASET/steps/_attempts/JOB/p00003-a02-TOKEN.started                 who started it, and where
    DATASET/steps/_attempts/JOB/p00003-a02-TOKEN.commit                  its files; written last
    DATASET/steps/_attempts/JOB/_job.json                                the attempt taken per partition

Readers count one attempt per partition: the one the driver took, once the job is done; before
that, the latest committed one. Files of any other attempt (cut off, or superseded) are never read,
so no row shows twice. The dataset is a local folder or an fsspec URL (``s3://``, ``gs://``...):
local files are written to a temporary name, fsynced and renamed; elsewhere a temporary object is
moved into place. Step-log segments keep the schema and hive layout of ``_steplog``, so the
workspace reader (and pandas, pyarrow, DuckDB) read them as they read a workspace's.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfkit.logs._dataset import ATTEMPTS_DIR, JOB_FILE, STEPS_DIR, Location
from wfkit.logs._steplog import FILE_COLUMNS, _partition, _table

if TYPE_CHECKING:
    import pyarrow as pa

    from wfkit.store._store import Store

RESULTS_DIR = "results"


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
    """Write the attempt's step-log segments and result rows, then its commit marker (last: an
    attempt cut off before it is never counted). Returns the marker's content."""
    started_at = FILE_COLUMNS.index("started_at")
    by_partition: dict[tuple[str, str], list[Sequence[Any]]] = {}
    for row in step_rows:
        date = dt.datetime.fromtimestamp(row[started_at], dt.UTC).strftime("%Y-%m-%d")
        by_partition.setdefault((row[-1], date), []).append(row[:-1])
    steps = []
    for (workflow, date), rows in sorted(by_partition.items()):
        folder = _partition(Path(), workflow, date).as_posix()
        rel = f"{folder}/job-{attempt.job}-{attempt.stem}.parquet"
        location.write_table(rel, _table(rows))
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


def commit_job(location: Location, job: str, markers: Iterable[dict[str, Any]], **about: Any) -> None:
    """Record the attempt the driver took for each partition: from now on readers count those."""
    chosen = {str(m["partition"]): m["stem"] for m in markers}
    body = {"job": job, "partitions": chosen, "committed_at": time.time(), **about}
    location.write_bytes(f"{STEPS_DIR}/{ATTEMPTS_DIR}/{job}/{JOB_FILE}", json.dumps(body).encode())


def read_results(location: Location, markers: Sequence[dict[str, Any]]) -> pa.Table | None:
    """The result rows of the given attempts, in partition order (None when there are none)."""
    import pyarrow as pa

    ordered = sorted((m for m in markers if m["results"]), key=lambda m: int(m["partition"]))
    tables = [location.read_table(m["results"]["path"]) for m in ordered]
    return pa.concat_tables(tables, promote_options="default") if tables else None
