"""The step log in parquet: one row per attempt, derived from the SQLite journal.

The journal is the durable record; parquet is an export of it, so a crash can delay rows but never
lose them. Layout (hive partitions, read directly by pandas, pyarrow and DuckDB)::

    WORKSPACE/steps/workflow=NAME/date=YYYY-MM-DD/part-RUN-FROM-TO.parquet

Segments are written under a temporary name, fsynced, and renamed into place, so a reader never
meets half a file. The runs table remembers how far each run was exported; whatever is missing is
exported again by :func:`export_pending`, which every reader calls first. ``compact`` merges small
files; a merged file names its sources in its metadata, and readers skip sources that a merged
file already holds, so a crash mid-compaction shows no row twice.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import traceback
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfkit.logs._dataset import (
    STEPS_DIR,
    counted_files,
    fsync_dir,
    is_attempt_segment,
    is_url,
    mirror,
)
from wfkit.model._errors import StoreCorruptError, WorkspaceNotFoundError
from wfkit.model._events import FIELDS, Status
from wfkit.model._process import pid_alive
from wfkit.model._suggest import did_you_mean
from wfkit.model._warn import user_stacklevel
from wfkit.store._journal import untimed

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from wfkit.store._store import Store

logger = logging.getLogger("wfkit")

SOURCES_KEY = b"wfkit.sources"
SMALL_FILE = 8 * 2**20

# Columns in file order. `workflow` and `date` are hive partitions (in the path, not the file):
# a reader of the dataset gets them back as columns.
# Fields appended to StepEvent after `seq` existed go after it, so a file's first columns never move.
# Segments written before they existed lack them: every reader takes them as nulls.
LATER_FIELDS = ("map_index", "parent_run_id", "durable_wait_s", "model_latency_s", "ttft_s")
FILE_COLUMNS: tuple[str, ...] = (
    *(f for f in FIELDS if f != "workflow" and f not in LATER_FIELDS),
    "seq",
    *LATER_FIELDS,
)


def schema() -> pa.Schema:
    """The one explicit schema of a segment file. Columns are appended, never retyped."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    types: dict[str, pa.DataType] = {
        "run_id": pa.string(),
        "workflow_version": pa.string(),
        "step": pa.string(),
        "visit": pa.int32(),
        "attempt": pa.int32(),
        "status": pa.string(),
        "error_kind": pa.string(),
        "error_type": pa.string(),
        "error_message": pa.string(),
        "started_at": ts,
        "ended_at": ts,
        "latency_s": pa.float64(),
        "queue_s": pa.float64(),
        "retry_delay_s": pa.float64(),
        "route_taken": pa.string(),
        "tools": pa.list_(pa.string()),
        "model": pa.string(),
        "tokens_in": pa.int64(),
        "tokens_out": pa.int64(),
        "cost_usd": pa.float64(),
        "approver": pa.string(),
        "decision_comment": pa.string(),
        "parameters_hash": pa.string(),
        "host": pa.string(),
        "extra": pa.string(),
        "seq": pa.int64(),
        "map_index": pa.int32(),
        "parent_run_id": pa.string(),
        "durable_wait_s": pa.float64(),
        "model_latency_s": pa.float64(),
        "ttft_s": pa.float64(),
    }
    return pa.schema([pa.field(name, types[name]) for name in FILE_COLUMNS])


def dataset_schema() -> pa.Schema:
    """The schema a reader of the whole dataset sees: the file schema plus the partitions."""
    import pyarrow as pa

    return schema().append(pa.field("workflow", pa.string())).append(pa.field("date", pa.string()))


def steps_dir(workspace: Path) -> Path:
    return workspace / STEPS_DIR


def _partition(workspace: Path, workflow: str, date: str) -> Path:
    # URI-encode the name: pyarrow's hive partitioning decodes it back ("a/b" is one workflow).
    return steps_dir(workspace) / f"workflow={urllib.parse.quote(workflow, safe='')}" / f"date={date}"


def _write_atomic(table: pa.Table, target: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_file(table, target, metadata)
    fsync_dir(target.parent)


# A temporary file is named ".FINAL.HOST-PID.TOKEN.tmp": HOST (a hash of the host name) and PID
# name its owner, the one process that may rename it into place: the process that wrote it, or
# for the export process's files, the process that asked for them (``hand_temporaries_to``). Who
# finds a temporary whose owner is certainly gone deletes it (:func:`sweep_temporaries`).
_HOST_TAG = hashlib.blake2s(socket.gethostname().encode(), digest_size=4).hexdigest()
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
# What wfkit before owners wrote (and a Dask worker's segments still are): ".FINAL.TOKEN.tmp".
_UNOWNED = re.compile(r"^\..+\.parquet\.[0-9a-f]{8}\.tmp$")
_UNOWNED_AGE = 24 * 3600.0
_temporaries_owner: int | None = None  # None: this process


def hand_temporaries_to(pid: int) -> None:
    """Name process ``pid`` the owner of the temporary files this process writes from now on: the
    export process's, which the process that asked renames into place."""
    global _temporaries_owner
    _temporaries_owner = pid


def sweep_temporaries(paths: Iterable[Path], *, delete: bool = True) -> int:
    """Delete the temporary files among ``paths`` whose writer is certainly gone; how many (with
    ``delete=False``, how many there are, none deleted).

    The rule: a temporary is gone for good when its owner ran on this host and no process has its
    pid any more, since only that owner ever renames it (a process SIGKILLed before it placed its
    export process's files left them so). Never by age alone: a live owner's files wait for the
    export process's reply, which at the lowest CPU priority may take minutes. A pid reused after
    its owner died keeps the file until that process ends too (a leftover kept longer, never a
    live writer's file deleted); another host's owner cannot be asked, so its files stay. Files
    with no owner in their name (older wfkit, a Dask worker's own) are deleted after a day: such a
    writer renames each at once, so by then none is ever renamed."""
    import time

    now = time.time()
    swept = 0
    for path in paths:
        owned = _TEMPORARY.match(path.name)
        if owned is not None:
            if owned["host"] != _HOST_TAG or pid_alive(int(owned["pid"])):
                continue
        elif _UNOWNED.match(path.name) is None:
            continue
        else:
            try:
                if now - path.stat().st_mtime < _UNOWNED_AGE:
                    continue
            except OSError:  # gone meanwhile
                continue
        if delete:
            try:
                path.unlink()
            except OSError:  # another reader swept it first (or, on Windows, it is still open)
                continue
        swept += 1
    return swept


def _write_file(
    table: pa.Table, target: Path, metadata: dict[bytes, bytes] | None = None, *, place: bool = True
) -> Path:
    """``table`` as ``target``, in a folder that exists: written under a temporary name, fsynced
    and renamed into place (with ``place=False``, left under the temporary name, which it returns).
    The rename is durable once the caller fsyncs the folder (once for all the files it wrote there)."""
    import pyarrow.parquet as pq

    owner = os.getpid() if _temporaries_owner is None else _temporaries_owner
    tmp = target.with_name(f".{target.name}.{_HOST_TAG}-{owner}.{uuid.uuid4().hex[:8]}.tmp")
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with tmp.open("wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())
    if place:
        os.replace(tmp, target)
    return tmp


_EXTRA_AT = FILE_COLUMNS.index("extra")


def _table(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Journal rows (FILE_COLUMNS order, times as epoch floats) as an arrow table."""
    import pyarrow as pa

    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in FILE_COLUMNS]
    cut = [extra is not None and untimed(extra) for extra in columns[_EXTRA_AT]]
    if any(cut):
        # Attempts a crash cut off: their latency is unknown, null here (NaN to pandas), not the
        # 0 the journal keeps for it (see wfkit.store._journal.UNTIMED).
        for name in ("latency_s", "ended_at"):
            at = FILE_COLUMNS.index(name)
            columns[at] = [None if unknown else v for v, unknown in zip(columns[at], cut, strict=True)]
    arrays = {}
    sch = schema()
    for name, values in zip(FILE_COLUMNS, columns, strict=True):
        if name in ("started_at", "ended_at"):
            micros = [None if v is None else int(v * 1_000_000) for v in values]
            arrays[name] = pa.array(micros, type=pa.int64()).cast(sch.field(name).type)
        elif name == "tools":
            arrays[name] = pa.array([None if v is None else json.loads(v) for v in values], sch.field(name).type)
        else:
            arrays[name] = pa.array(values, sch.field(name).type)
    return pa.table(arrays, schema=sch)


# Rows an export holds in memory at most (past one run's): a backlog of many runs goes out in
# chunks of about this many, each written and recorded before the next is read.
_EXPORT_CHUNK_ROWS = 50_000


# What an export hands over, chunk by chunk: how far each run is exported (run id -> last seq), and
# its segments, written under temporary names (temporary, final path). Recording puts them in place,
# then in the ledger (:func:`placed`); the export process hands both to the process that asked.
Record = Callable[[Mapping[str, int], Sequence[tuple[str, str]]], None]


def placed(store: Store) -> Record:
    """Record an export in this process: its segments renamed into place, then the ledger."""

    def record(marks: Mapping[str, int], segments: Sequence[tuple[str, str]]) -> None:
        place_segments(segments)  # durable before the ledger says so
        store.mark_exported(marks)

    return record


def export_runs(store: Store, workspace: Path, run_ids: Iterable[str], record: Record | None = None) -> int:
    """Write the journal rows parquet lacks of each run in ``run_ids`` as segments, then record
    them (default :func:`placed`: renamed into place, and in the ledger how far each run is
    exported); returns the row count. The export process's ``record`` hands both to the process
    that asked, which renames the files and writes the ledger through its store's writer.

    Runs go together: one arrow table per partition, sliced per run, one listing and one fsync per
    folder, and one ledger write for all. An export runs beside live runs, and its Python holds the
    interpreter they need: run by run, a 5-step run's export took some 8 ms of CPU (most of it with
    the interpreter held), which a burst of 500 finished runs turned into seconds of stolen time."""
    record = placed(store) if record is None else record
    exported = held = 0
    chunk: dict[str, list[tuple[Any, ...]]] = {}
    for run_id in run_ids:
        rows = store.unexported_rows(run_id, FILE_COLUMNS)
        if rows:
            chunk[run_id] = rows
            held += len(rows)
        if held >= _EXPORT_CHUNK_ROWS:
            exported += _export_chunk(workspace, chunk, record)
            chunk, held = {}, 0
    if chunk:
        exported += _export_chunk(workspace, chunk, record)
    return exported


def _export_chunk(workspace: Path, chunk: Mapping[str, Sequence[Sequence[Any]]], record: Record) -> int:
    segments = _write_segments(workspace, chunk)
    seq_at = FILE_COLUMNS.index("seq")
    record({run_id: rows[-1][seq_at] for run_id, rows in chunk.items()}, segments)
    return sum(map(len, chunk.values()))


def export_run(store: Store, workspace: Path, run_id: str, record: Record | None = None) -> int:
    """:func:`export_runs` of one run."""
    return export_runs(store, workspace, (run_id,), record)


def _write_segments(workspace: Path, rows_by_run: Mapping[str, Sequence[Sequence[Any]]]) -> list[tuple[str, str]]:
    """Journal rows (FILE_COLUMNS, then the workflow) of each run as one segment per partition they
    fall in, each written under a temporary name and fsynced: (temporary, final path) of each, for
    :func:`place_segments`. Only the process that records an export puts its files in place: a
    background export that a reader took over meanwhile (its runs exported again, perhaps with
    more rows) is then dropped whole, never a file that replaces or deletes the reader's."""
    started_at, seq_at = FILE_COLUMNS.index("started_at"), FILE_COLUMNS.index("seq")
    parts: dict[tuple[str, str], list[Sequence[Any]]] = {}
    # Per partition, each run's rows there: (run, offset in the partition's rows, count).
    spans: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    dates: dict[int, str] = {}  # UTC day number -> its date: one strftime per day, not per row
    for run_id, rows in rows_by_run.items():
        by_partition: dict[tuple[str, str], list[Sequence[Any]]] = {}
        for r in rows:
            day = int(r[started_at] // 86400)
            date = dates.get(day)
            if date is None:
                date = dates[day] = dt.datetime.fromtimestamp(day * 86400, dt.UTC).strftime("%Y-%m-%d")
            by_partition.setdefault((r[-1], date), []).append(r[:-1])
        for key, mine in by_partition.items():
            part = parts.setdefault(key, [])
            spans.setdefault(key, []).append((run_id, len(part), len(mine)))
            part.extend(mine)
    written: list[tuple[str, str]] = []
    for (workflow, date), part in parts.items():
        folder = _partition(workspace, workflow, date)
        folder.mkdir(parents=True, exist_ok=True)
        table = _table(part)
        for run_id, offset, count in spans[(workflow, date)]:
            first, last = part[offset][seq_at], part[offset + count - 1][seq_at]
            target = folder / f"part-{run_id}-{first:06d}-{last:06d}.parquet"
            written.append((str(_write_file(table.slice(offset, count), target, place=False)), str(target)))
    return written


def place_segments(segments: Sequence[tuple[str, str]]) -> None:
    """Rename each (temporary, final path) of :func:`_write_segments` into place, durable when it
    returns. A segment replaces one of the same run and first seq: an earlier export of the same
    range that crashed before it was recorded."""
    by_folder: dict[Path, list[tuple[Path, Path]]] = {}
    for temporary, final in segments:
        by_folder.setdefault(Path(final).parent, []).append((Path(temporary), Path(final)))
    for folder, moves in by_folder.items():
        earlier: dict[tuple[str, int], list[str]] = {}
        for name in os.listdir(folder):
            match = _SEGMENT.match(name)
            if match is not None:
                earlier.setdefault((match["run"], int(match["first"])), []).append(name)
        for tmp, target in moves:
            os.replace(tmp, target)
            match = _SEGMENT.match(target.name)
            assert match is not None
            for stale in earlier.get((match["run"], int(match["first"])), ()):
                if stale != target.name:
                    (folder / stale).unlink(missing_ok=True)
        fsync_dir(folder)


def drop_segments(segments: Sequence[tuple[str, str]]) -> None:
    """Delete the temporary files of an export that is not recorded."""
    for tmp, _ in segments:
        Path(tmp).unlink(missing_ok=True)


def export_each(
    store: Store, workspace: Path, run_ids: Sequence[str], record: Record | None = None
) -> tuple[int, dict[str, str]]:
    """:func:`export_runs`, and if that fails, run by run, so that a run that cannot be exported
    (a damaged journal row) holds up no other: the rows exported (after a failure part-way, those
    exported run by run), and for each run that failed, what went wrong (its traceback). A failed
    run is never lost: the next reader exports it again (:func:`export_pending`).

    Runs a chunk of the batch recorded before the failure are not exported again: the ledger may
    not say so yet (the export process's ``record`` only collects what the asking process writes)."""
    record = placed(store) if record is None else record
    recorded: set[str] = set()

    def noted(marks: Mapping[str, int], segments: Sequence[tuple[str, str]]) -> None:
        record(marks, segments)
        recorded.update(marks)

    try:
        return export_runs(store, workspace, run_ids, noted), {}
    except Exception:
        pass
    rows, failed = 0, {}
    for run_id in run_ids:
        if run_id in recorded:
            continue
        try:
            rows += export_run(store, workspace, run_id, record)
        except Exception:
            failed[run_id] = traceback.format_exc()
    return rows, failed


def export_pending(store: Store, workspace: Path) -> int:
    """Export every run not executing now whose journal rows are missing from parquet (crash
    recovery). A run whose executor died (its lease expired, or its process on this host is gone)
    counts as not executing."""
    idle = [run_id for run_id, executing in store.runs_with_unexported_rows() if not executing]
    return export_runs(store, workspace, idle)


def _export_command() -> list[str]:
    """How the exporter starts the export process."""
    return [sys.executable, "-m", "wfkit.logs._export_process"]


class Exporter:
    """Exports finished runs to parquet off the runs' path.

    Exports wait: a background thread exports what is pending every ``delay`` seconds, readers
    (``wfkit.steps``, reports, replay) flush first, and so does the process at exit. Exporting
    right after each run would make the export fight live runs for the interpreter and distort
    the very latencies it records. For the same reason the background exports run in a process
    of their own (:mod:`wfkit.logs._export_process`), started on the first of them; if it cannot
    start or dies, they run in this process from then on, and a warning says so. Readers and the
    exit export here: they wait for the rows anyway.
    """

    def __init__(self, delay: float = 30.0) -> None:
        self.delay = delay
        self._pending: dict[str, tuple[Store, Path]] = {}
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()  # exports in this process, and placing the export process's files
        self._process_lock = threading.Lock()  # the request to the export process under way
        # The runs of the request under way (guarded by _lock): a reader takes them over.
        self._held: dict[str, tuple[Store, Path]] = {}
        self._timer: threading.Timer | None = None
        self._registered = False
        self._process: subprocess.Popen[str] | None = None
        self._process_pid = 0  # the process that started it (a forked child starts its own)
        self._in_process = False  # the export process failed: background exports run here

    def submit(self, store: Store, workspace: Path, run_id: str) -> None:
        with self._lock:
            self._pending[run_id] = (store, workspace)
            try:
                if not self._registered:
                    # pyarrow imports pandas on first use, and pandas a thread pool, which cannot
                    # register itself once the interpreter is shutting down: load it now, so an
                    # export that runs at exit can still write.
                    import concurrent.futures.thread  # noqa: F401

                    atexit.register(self.flush)
                    atexit.register(self.close)  # runs first: the exit's export is this process's
                    self._registered = True
                if self._timer is None:
                    timer = threading.Timer(self.delay, self._tick)
                    timer.daemon = True
                    timer.start()
                    self._timer = timer
                return
            except RuntimeError:
                # The interpreter is shutting down (a run ended on a background loop during exit):
                # no atexit hook, no thread. Export now, quietly; the journal keeps the rows anyway
                # and the next reader exports what this could not.
                pending = self._pending.pop(run_id)
        with contextlib.suppress(Exception):
            export_run(pending[0], pending[1], run_id)

    def clear(self) -> None:
        """Forget pending exports (export_pending finds them again whenever someone reads)."""
        with self._lock:
            self._pending.clear()

    def _tick(self) -> None:
        with self._lock:
            self._timer = None
        self.flush(elsewhere=True)

    def flush(self, *, elsewhere: bool = False) -> None:
        """Export every pending run now (readers call this before they read); ``elsewhere``: in
        the export process (the background exports).

        A reader never waits for the export process, which at the lowest priority on a busy
        machine may not run for minutes: it takes over the runs of a background request under way
        and exports them here; that request's files are then dropped when its reply comes."""
        if elsewhere and not self._in_process:
            with self._process_lock:  # one request at a time: the export process answers in order
                with self._lock:
                    pending, self._pending = self._pending, {}
                    self._held.update(pending)
                for store, workspace, run_ids in self._by_store(pending):
                    self._export_elsewhere(store, workspace, run_ids)
        else:
            with self._export_lock:
                with self._lock:
                    pending, self._pending = self._pending, {}
                    pending.update(self._held)  # the background request under way: taken over
                    self._held.clear()
                for store, workspace, run_ids in self._by_store(pending):
                    self._export_here(store, workspace, run_ids)
        if threading.current_thread() is not threading.main_thread():
            # A timer thread ends now: its connection goes, not the store's writer, which the
            # runs still executing go on writing through (stopped, the next write would start
            # another thread and connection while the old one still commits).
            for store, _, _ in self._by_store(pending, quiet=True):
                store.release_thread()

    def _by_store(
        self, pending: Mapping[str, tuple[Store, Path]], *, quiet: bool = False
    ) -> list[tuple[Store, Path, list[str]]]:
        """The runs of ``pending`` by store, those of a store whose file went away left out."""
        by_store: dict[int, tuple[Store, Path, list[str]]] = {}
        for run_id, (store, workspace) in pending.items():
            by_store.setdefault(id(store), (store, workspace, []))[2].append(run_id)
        if quiet:
            return list(by_store.values())
        kept = []
        for store, workspace, run_ids in by_store.values():
            if store.moved_away():  # checked here, off the event loop, once per store
                if store.path.exists():  # deleted and made again: the rows are not this store's
                    logger.warning(
                        "wfkit: the run store %s was deleted or replaced after these runs wrote to it: "
                        "%s. Their checkpoints and journal went to the removed file, so no workspace "
                        "holds them (they cannot be listed, resumed or read in the step log) and their "
                        "rows are not exported into the one there now; their final state is only in "
                        "this process (run.state). Delete a workspace only when no run uses it",
                        store.path,
                        ", ".join(run_ids),
                    )
                continue  # the workspace went away (a temporary folder): nothing to export to
            kept.append((store, workspace, run_ids))
        return kept

    def _export_here(self, store: Store, workspace: Path, run_ids: list[str]) -> None:
        _, failed = export_each(store, workspace, run_ids)
        for run_id, why in failed.items():
            logger.error("wfkit: exporting run %s to parquet failed; it will be retried\n%s", run_id, why)

    def _still_held(self, run_ids: list[str]) -> bool:
        """Whether the background request for ``run_ids`` is still theirs (no reader took it over);
        with ``_lock`` held."""
        return all(run_id in self._held for run_id in run_ids)

    def _export_elsewhere(self, store: Store, workspace: Path, run_ids: list[str]) -> None:
        """:func:`export_each` in the export process, the files it wrote then put in place and
        recorded here; or dropped, if a reader took these runs over meanwhile."""
        with self._lock:
            if not self._still_held(run_ids):
                return
        process = self._export_process()
        reply = None if process is None else self._ask(process, store, workspace, run_ids)
        if process is not None and reply is None:
            self._give_up_if(process)
        with self._export_lock:
            with self._lock:
                mine = self._still_held(run_ids)
                for run_id in run_ids:
                    self._held.pop(run_id, None)
            segments = [] if reply is None else [tuple(s) for s in reply.get("segments", ())]
            if not mine:  # a reader exported them itself: this request's files would be a second copy
                drop_segments(segments)
                return
            if reply is None:  # the export process failed: export here
                self._export_here(store, workspace, run_ids)
                return
            if "error" in reply:
                logger.warning(
                    "wfkit: the step-log export process could not export from %s (%s); exporting here",
                    store.path,
                    reply["error"],
                )
                self._export_here(store, workspace, run_ids)
                return
            try:
                place_segments(segments)  # durable before the ledger says so
                if reply["exported"]:
                    store.mark_exported(reply["exported"])  # through this process's writer (see the export process)
            except Exception:  # never lost: the next reader exports them again (export_pending)
                logger.exception("wfkit: recording exported runs in %s failed; they will be exported again", store.path)
            for run_id, why in reply["failed"].items():
                logger.error("wfkit: exporting run %s to parquet failed; it will be retried\n%s", run_id, why)

    def _ask(
        self, process: subprocess.Popen[str], store: Store, workspace: Path, run_ids: list[str]
    ) -> dict[str, Any] | None:
        """The export process's reply to a request for ``run_ids``; None when it gave none."""
        assert process.stdin is not None and process.stdout is not None
        request = {
            "db": str(store.path),
            "synchronous": store.synchronous,
            "workspace": str(workspace),
            "runs": run_ids,
        }
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
        except (OSError, ValueError):  # its pipe is broken or closed
            line = ""
        return json.loads(line) if line else None

    def _give_up_if(self, process: subprocess.Popen[str]) -> None:
        """After no reply: stop using the export process (unless it was closed meanwhile)."""
        if self._process is process:
            code = _wait_or_kill(process, timeout=10)
            self._give_up(f"it exited with code {code}", process)

    def _export_process(self) -> subprocess.Popen[str] | None:
        """The export process, started on first use (in this process: a forked child starts its own)."""
        if self._in_process:
            return None
        if self._process is not None and self._process_pid == os.getpid():
            return self._process
        env = dict(os.environ)
        # It imports wfkit from where this process does (a checkout on sys.path, a notebook's folder).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self._process = subprocess.Popen(
                _export_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        except OSError as exc:
            self._give_up(str(exc), None)
            return None
        self._process_pid = os.getpid()
        return self._process

    def _give_up(self, why: str, process: subprocess.Popen[str] | None) -> None:
        if process is not None:
            _close_pipes(process)
        logger.warning(
            "wfkit: the step-log export process failed (%s); from now on this process exports finished "
            "runs to parquet itself, which takes time from the runs still executing",
            why,
        )
        self._in_process = True
        self._process = None

    def close(self) -> None:
        """Stop the export process, once it finished what it was asked (a later export starts it
        again). A request under way is taken over: its runs are pending again, for the next flush
        (at exit, the exit's own)."""
        with self._lock:
            process, self._process = self._process, None
            self._pending.update(self._held)
            self._held.clear()
        if process is None or self._process_pid != os.getpid():
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.close()  # it finishes the request under way, then exits
        _wait_or_kill(process, timeout=30)
        _close_pipes(process)


def _wait_or_kill(process: subprocess.Popen[str], timeout: float) -> int:
    """The export process's exit code, once it exited: killed if it has not within ``timeout``."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _close_pipes(process: subprocess.Popen[str]) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


exporter = Exporter()


# ---- reading ------------------------------------------------------------------------------------


def _superseded(files: Iterable[Path]) -> set[str]:
    """The names of files whose rows a merged file holds: its sources, and a merged file whose
    sources another one merged too (two processes that compacted a folder at once each wrote one;
    of two alike, the first by name counts)."""
    import pyarrow.parquet as pq

    gone: set[str] = set()
    merged: dict[Path, frozenset[str]] = {}
    for path in files:
        if path.name.startswith("compact-"):
            meta = pq.read_schema(path).metadata or {}
            merged[path] = frozenset(json.loads(meta.get(SOURCES_KEY, b"[]")))
            gone.update(merged[path])
    for path, sources in merged.items():
        for other, theirs in merged.items():
            same_folder = other.parent == path.parent and other != path
            if same_folder and sources <= theirs and (sources != theirs or other.name < path.name):
                gone.add(path.name)
                break
    return gone


def segment_files(root: Path) -> list[Path]:
    """The live segment files under ``root``: temporaries, superseded sources and the files of
    partition attempts that do not count (``_dataset``) left out."""
    files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))
    gone = _superseded(files)
    return counted_files([p for p in files if p.name not in gone], root)


def steps(
    path: str | os.PathLike[str] | None = None,
    *,
    workflow: str | Sequence[str] | None = None,
    run_id: str | Sequence[str] | None = None,
    step: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    columns: Sequence[str] | None = None,
    sort: bool | None = None,
) -> pd.DataFrame:
    """The step log as a DataFrame, one row per attempt.

    ``path`` is a workspace (default ``$WFKIT_HOME`` or ``./.wfkit``), a folder of segment files,
    or one parquet file. Reading a workspace first exports any rows the journal holds that are not
    in parquet yet (after a crash, or runs that just ended). Filters are pushed down to the files;
    ``columns`` reads only those columns. Rows come in start-time order when the frame has the
    ``started_at`` column (all of them do unless ``columns`` leaves it out); ``sort=True`` orders
    them by start time anyway, ``sort=False`` never (then each run's rows come together, in order).
    Summaries need no order: ``wf.steps(columns=[...]).wf.latency()`` pays for no sort.
    """
    from wfkit.logs._register import register_accessor
    from wfkit.logs._tables import check_window, parse_time

    register_accessor()
    # Checked before the read: a filter that is no date is the caller's mistake, not a damaged file.
    check_window(since, until)
    given = f"since={since!r}" if isinstance(since, str) else f"since={since}"
    since = None if since is None else parse_time("since", since)
    until = None if until is None else parse_time("until", until)
    check_columns(columns)  # a misspelt column is no damaged segment either
    check_statuses(status)
    root = resolve_root(path)
    options: dict[str, Any] = {
        "workflow": workflow,
        "run_id": run_id,
        "step": step,
        "status": status,
        "since": since,
        "until": until,
        "columns": columns,
        "sort": sort,
    }
    try:
        frame = read_steps(root, **options)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        if not rebuild_damaged(root, exc):
            raise
        frame = read_steps(root, **options)
    if frame.empty:
        warn_of_absent(root, {"workflow": workflow, "step": step})
        future = since_in_future(root, since, given)
        if future:
            warnings.warn(future, stacklevel=2)
    executing = executing_note(root, workflow=workflow, run_id=run_id)
    if executing:  # at the user's line, also when a StepLog question or a report reads through here
        warnings.warn(executing, stacklevel=user_stacklevel())
    return frame


def executing_note(
    root: Path,
    *,
    workflow: str | Sequence[str] | None = None,
    run_id: str | Sequence[str] | None = None,
    where: str = "the step log",
) -> str | None:
    """What a read of a workspace's step log leaves out: the attempts of runs a live process
    executes now (of the ``workflow`` and ``run_id`` asked for), exported when each ends. Without a
    word they read as runs that never started: a frame empty, or short by their steps done."""
    from wfkit.store._workspace import DB_NAME, open_store

    if root.name != STEPS_DIR or not (root.parent / DB_NAME).exists():
        return None
    store = open_store(root.parent, create=False)
    executing = [rid for rid, live in store.runs_with_unexported_rows() if live]
    if not executing:
        return None
    rows = store.read(
        f"SELECT run_id, workflow FROM runs WHERE run_id IN ({', '.join('?' for _ in executing)}) ORDER BY created_at",
        executing,
    )
    workflows = None if workflow is None else {workflow} if isinstance(workflow, str) else set(workflow)
    ids = None if run_id is None else {run_id} if isinstance(run_id, str) else set(run_id)
    left = [
        (str(r[0]), str(r[1]))
        for r in rows
        if (workflows is None or r[1] in workflows) and (ids is None or r[0] in ids)
    ]
    if not left:
        return None
    named = ", ".join(f"{name} {rid}" for rid, name in left[:3]) + (
        f" and {len(left) - 3} more" if len(left) > 3 else ""
    )
    runs = f"{len(left)} run{'s' if len(left) > 1 else ''} still executing ({named})"
    return (
        f"{runs} {'are' if len(left) > 1 else 'is'} not in {where}: a run's attempts are exported "
        f"when it ends (await it, then read again)"
    )


def check_columns(columns: Sequence[str] | None) -> None:
    """Refuse a ``columns=`` the step log cannot answer: a single name given as a string (read as
    its letters) or a name that is no column, closest ones suggested."""
    if columns is None:
        return
    if isinstance(columns, str):
        raise TypeError(f"columns= is a list of step-log column names, got the string {columns!r}: pass [{columns!r}]")
    names = dataset_schema().names
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise ValueError(
            f"unknown step-log column(s) {', '.join(f'{c!r}{did_you_mean(str(c), names)}' for c in unknown)}; "
            f"the columns are {', '.join(names)}"
        )


# The values an attempt's status takes (``Status``): a filter on another is a mistake, not a question.
STATUSES: tuple[str, ...] = tuple(v for k, v in vars(Status).items() if k.isupper())


def check_statuses(status: str | Sequence[str] | None) -> None:
    """Refuse a ``status=`` no attempt can have (``"error"``, ``"success"``...): its empty frame
    would read as "nothing of the kind happened"."""
    if status is None:
        return
    unknown = [s for s in ([status] if isinstance(status, str) else status) if s not in STATUSES]
    if unknown:
        named = ", ".join(f"{s!r}{did_you_mean(str(s), STATUSES)}" for s in unknown)
        raise ValueError(f"status= {named} is no attempt status; an attempt's status is one of {', '.join(STATUSES)}")


def warn_of_absent(root: Path, filters: Mapping[str, str | Sequence[str] | None], *, stacklevel: int = 3) -> None:
    """After a filtered read came back empty: warn of each filter value that no row of the step log
    holds at all (a misspelt workflow or step), naming the closest value and those there are. An
    empty answer stays an answer (a step that never failed has no failed rows), so this warns,
    and says nothing when some row holds every value given, or when the log holds no rows yet.
    (Not for run ids: a run that exists may have no row yet, and its id is copied, not typed.)"""
    asked = {name: [v] if isinstance(v, str) else list(v) for name, v in filters.items() if v is not None}
    if not asked:
        return
    held = read_steps(root, columns=list(asked), sort=False)
    if held.empty:
        return
    for name, values in asked.items():
        present = {str(v) for v in held[name].dropna().unique()}
        absent = [v for v in values if v not in present]
        if not absent:
            continue
        named = ", ".join(f"{v!r}{did_you_mean(str(v), present)}" for v in absent)
        listed = ", ".join(repr(v) for v in sorted(present)[:12]) + (", ..." if len(present) > 12 else "")
        warnings.warn(
            f"no row of the step log at {root} has {name} {named}; its {name}s are {listed}", stacklevel=stacklevel
        )


def since_in_future(root: Path, since: dt.datetime | None, given: str) -> str | None:
    """What to say of a ``since`` (``given``, as the caller wrote it) that lies in the future: no
    attempt can have started since then, so its empty answer answers no question. The message names
    the dates the step log at ``root`` holds, to pick one from. None for a ``since`` that has passed:
    an empty answer after it is one (nothing ran since)."""
    now = dt.datetime.now(dt.UTC)
    if since is None or since <= now:
        return None
    held = read_steps(root, columns=["started_at"], sort=False)["started_at"].dropna() if root.exists() else None

    def at(moment: Any) -> str:
        return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"

    span = (
        f"the step log at {root} holds attempts from {at(held.min())} to {at(held.max())}: give a time in that range"
        if held is not None and len(held)
        else f"the step log at {root} holds no attempts yet"
    )
    return f"{given} is in the future ({at(since)}; it is now {at(now)}), so no attempt has started since; {span}"


def rebuild_damaged(root: Path, exc: BaseException) -> bool:
    """After a failed read of a workspace's step log: move damaged segments aside and export their
    rows again from the journal (True), or raise StoreCorruptError when there is none to rebuild.
    False when ``root`` is not a workspace's step log (nothing to rebuild it from)."""
    from wfkit.store._workspace import DB_NAME, open_store

    workspace = root.parent
    if root.name != STEPS_DIR or not (workspace / DB_NAME).exists():
        return False
    report = check_ledger(open_store(workspace, create=False), workspace, deep=True)
    if not report.moved:
        raise StoreCorruptError(
            f"the step log under {root} cannot be read ({exc}), and no damaged segment was found "
            f"to rebuild; run `wfkit doctor --workspace {workspace}`",
            path=str(root),
        ) from exc
    logger.warning(
        "wfkit: moved %d damaged step-log segment(s) to %s and rebuilt them from the journal",
        len(report.moved),
        report.moved[0][1].parent,
    )
    return True


def resolve_root(path: str | os.PathLike[str] | None) -> Path:
    """The folder (or file) of segments for ``path``: a workspace (its rows exported first), a
    dataset that Dask workers wrote (a folder, or an fsspec URL such as ``s3://bucket/evals``), a
    folder of segment files, or one parquet file; ``None`` is the default workspace."""
    from wfkit.store._workspace import DB_NAME, open_store, workspace_path

    if path is not None and is_url(path):
        path = mirror(os.fspath(path))  # the segments that count, cached locally (they never change)
    root = workspace_path(path) if path is None else Path(os.fspath(path).removeprefix("file://"))
    if not root.exists():  # a typo must not read as an empty history (nor create anything)
        raise WorkspaceNotFoundError(
            f"no workspace or step log at {root}; check the path (a workspace folder, a folder of "
            f"segment files, or one .parquet file). A workspace is created by the first run in it: "
            f"flow.run(inputs, workspace={str(root)!r})"
        )
    if root.is_dir() and (root / DB_NAME).exists():
        store = open_store(root, create=False)
        exporter.flush()
        export_pending(store, root)
        check_ledger(store, root)  # a missing segment is written again from the journal
        return steps_dir(root)
    if path is None or (root / STEPS_DIR).is_dir() or (root / "evals").is_dir():
        # A workspace whose store is gone or not made yet: its step log only, never the eval
        # results (or eval runs) that live elsewhere below it.
        return steps_dir(root)
    return root


def _filter(
    *,
    workflow: str | Sequence[str] | None,
    run_id: str | Sequence[str] | None,
    step: str | Sequence[str] | None,
    status: str | Sequence[str] | None,
    since: dt.datetime | str | None,
    until: dt.datetime | str | None,
) -> Any:
    """The filters as one pyarrow expression (None: no filter)."""
    import pyarrow.compute as pc

    expr = None
    for name, value in (("workflow", workflow), ("run_id", run_id), ("step", step), ("status", status)):
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        cond = pc.field(name).isin(values)
        expr = cond if expr is None else expr & cond
    if since is not None:
        cond = pc.field("started_at") >= _timestamp("since", since)
        expr = cond if expr is None else expr & cond
    if until is not None:
        cond = pc.field("started_at") < _timestamp("until", until)
        expr = cond if expr is None else expr & cond
    return expr


def read_steps(
    root: Path,
    *,
    workflow: str | Sequence[str] | None = None,
    run_id: str | Sequence[str] | None = None,
    step: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    columns: Sequence[str] | None = None,
    sort: bool | None = None,
) -> pd.DataFrame:
    """Read the step-log dataset under ``root`` with filters pushed down to the files, only
    ``columns`` (all by default), in start-time order if ``sort`` (None: when ``started_at`` is
    among the columns).

    Where the time goes on millions of rows, and what this does about it: the columns with few
    distinct values (step, status, the partitions...) are read as the dictionaries parquet stores
    them in and become categoricals without ever being strings; the sort is skipped when the rows
    come in order already, and otherwise reorders the strings and lists in arrow, the rest in pandas
    (a categorical moves its one-byte codes).
    """

    full = dataset_schema()
    check_columns(columns)
    wanted = list(full.names) if columns is None else list(dict.fromkeys(columns))
    if sort is None:  # an order the frame can show; a summary of some columns needs none
        sort = "started_at" in wanted
    # Sorting needs its key, even when the caller did not ask for it; dropped again below.
    read = wanted + (["started_at"] if sort and "started_at" not in wanted else [])
    if not root.exists():
        return _to_pandas(_categorical_schema(full).empty_table().select(wanted))
    files = segment_files(root) if root.is_dir() else [root]
    data = _dataset(root, files)
    expr = _filter(workflow=workflow, run_id=run_id, step=step, status=status, since=since, until=until)
    table = data.to_table(columns=read, filter=expr)
    order = _start_order(table.column("started_at")) if sort and table.num_rows else None
    if len(read) != len(wanted):
        table = table.select(wanted)
    return _to_pandas(table) if order is None else _to_pandas_in_order(table, order)


# Few distinct values, many rows: read as dictionaries, they become categoricals, which make
# group-bys fast and the frame small. `workflow` and `date` are the hive partitions.
_CATEGORICAL = ("workflow", "workflow_version", "step", "status", "error_kind", "error_type", "model", "host", "date")
_PARTITIONS = ("workflow", "date")


def _categorical_schema(full: pa.Schema) -> pa.Schema:
    """``full`` with the categorical columns as dictionaries of strings."""
    import pyarrow as pa

    coded = pa.dictionary(pa.int32(), pa.string())
    return pa.schema([pa.field(f.name, coded) if f.name in _CATEGORICAL else f for f in full])


def _dataset(root: Path, files: Sequence[Path]) -> Any:
    """The files as one pyarrow dataset: the categorical columns decoded straight into
    dictionaries, the partitions' values taken from the folder names (no file is opened to
    learn them)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    full = _categorical_schema(dataset_schema())
    values: dict[str, set[str]] = {name: set() for name in _PARTITIONS}
    for path in files:
        # One file alone: pyarrow reads partitions from its whole path, as a folder of hive
        # partitions around it has them.
        for part in (path.relative_to(root) if root.is_dir() else path).parts[:-1]:
            name, sep, value = part.partition("=")
            if sep and name in values:
                values[name].add(urllib.parse.unquote(value))
    partitioning = ds.HivePartitioning(
        pa.schema([full.field(name) for name in _PARTITIONS]),
        dictionaries={name: pa.array(sorted(found), pa.string()) for name, found in values.items()},
    )
    parquet = ds.ParquetFileFormat(
        read_options=ds.ParquetReadOptions(dictionary_columns=[c for c in _CATEGORICAL if c not in _PARTITIONS])
    )
    return ds.dataset(
        [str(f) for f in files],
        schema=full,
        format=parquet,
        partitioning=partitioning,
        partition_base_dir=str(root) if root.is_dir() else None,
    )


def _start_order(started: pa.ChunkedArray) -> Any:
    """The row order by start time (None: the rows are in that order already). Stable: each file
    is one run's rows in order and files come run by run, so ties keep (run, seq) order."""
    import numpy as np
    import pyarrow as pa

    times = started.combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    if len(times) < 2 or bool(np.all(times[1:] >= times[:-1])):
        return None
    # Timsort merges the ordered stretches (a file each) in a few passes over the keys.
    return times.argsort(kind="stable")


# Integer columns every row has (numpy integers in pandas); the others may be missing (a step that
# called no model has no tokens_in, a step that is no map item no map_index): pandas' nullable
# integers hold them as they are, where numpy would turn the column into floats (120 -> 120.0).
_ALWAYS_SET = ("visit", "attempt", "seq")


def _nullable_integers(table: pa.Table) -> list[str]:
    """The integer columns of ``table`` that read as pandas' nullable integers (Int32, Int64): those
    that may be missing, and any other that is (never as floats)."""
    import pyarrow as pa

    return [
        f.name
        for f in table.schema
        if pa.types.is_integer(f.type) and (f.name not in _ALWAYS_SET or table.column(f.name).null_count)
    ]


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """``table`` as pandas, the dictionary columns as categoricals with their categories in sorted
    order (summaries then group in the order a reader expects, and DuckDB gives), the integer
    columns that may be missing as pandas' nullable integers (Int32, Int64), as DuckDB gives them."""
    import pandas as pd
    import pyarrow as pa

    coded = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
    nullable = _nullable_integers(table)
    aside = coded + nullable
    frame = table.drop_columns(aside).to_pandas() if aside else table.to_pandas()
    masked = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
    }
    for position, name in enumerate(table.column_names):
        if name in coded:
            frame.insert(position, name, _categorical(table.column(name)))
        elif name in nullable:
            frame.insert(position, name, table.column(name).to_pandas(types_mapper=masked.get))
    return frame


def _to_pandas_in_order(table: pa.Table, order: Any) -> pd.DataFrame:
    """``_to_pandas(table.take(order))``, the same frame, at a fraction of the cost: a column of
    strings or lists is taken in arrow (its chunks joined first: taking from many chunks costs
    twice as much), every other column after conversion, in numpy, where a value taken is one to
    eight bytes (a categorical's code, not a 32-bit dictionary index; no chunks to join). A column
    with no value at all (a field nobody filled) reads the same in any order: it is not taken. On
    a large table the strings and the rest are reordered on two threads at once (arrow and numpy
    let go of the GIL while they copy)."""
    import pyarrow as pa

    from wfkit.logs._tables import workers_for

    columns = zip(table.column_names, table.columns, strict=True)
    blank = [name for name, column in columns if column.null_count == len(column)]
    wide = [
        f.name
        for f in table.schema
        if f.name not in blank and not (pa.types.is_dictionary(f.type) or pa.types.is_primitive(f.type))
    ]
    narrow = [name for name in table.column_names if name not in wide and name not in blank]

    def narrow_part() -> pd.DataFrame:
        return _to_pandas(table.select(narrow)).take(order).reset_index(drop=True)

    def wide_part() -> pd.DataFrame | None:
        return _to_pandas(table.select(wide).combine_chunks().take(order)) if wide else None

    if workers_for(table.num_rows) > 1 and wide and narrow:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="wfkit-steps") as pool:
            later = pool.submit(wide_part)
            frame = narrow_part()
            taken = later.result()
    else:
        frame, taken = narrow_part(), wide_part()
    others = [part for part in (taken, _to_pandas(table.select(blank)) if blank else None) if part is not None]
    for position, name in enumerate(table.column_names):
        for part in others:
            if name in part.columns:
                frame.insert(position, name, part[name])
    return frame


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """A dictionary column as a pandas Categorical, its categories the values of every chunk's
    dictionary, sorted. One pass over the indices: each chunk (a row group of a file, a partition)
    has a dictionary of its own, whose codes are mapped straight to their values' positions among
    the sorted categories (no unified dictionary, no combined copy of the indices first)."""
    import numpy as np
    import pandas as pd

    # Most chunks repeat the dictionary of the one before: its values are read once.
    values: list[list[str | None]] = []
    previous = None
    for chunk in column.chunks:
        if previous is None or not chunk.dictionary.equals(previous):
            previous = chunk.dictionary
            values.append(previous.to_pylist())
        else:
            values.append(values[-1])
    distinct = {id(found): found for found in values}.values()
    categories = sorted({v for found in distinct for v in found if v is not None})
    rank = {v: i for i, v in enumerate(categories)}
    width = np.int8 if len(categories) < 2**7 else np.int16 if len(categories) < 2**15 else np.int32
    codes = np.empty(len(column), dtype=width)
    lookups: dict[int, Any] = {}
    at = 0
    for chunk, found in zip(column.chunks, values, strict=True):
        lookup = lookups.get(id(found))
        if lookup is None:
            # The last slot is a missing value's code, -1 (a null index is filled with it).
            lookup = np.array([-1 if v is None else rank[v] for v in found] + [-1], dtype=width)
            lookups[id(found)] = lookup
        indices = chunk.indices
        if indices.null_count:
            indices = indices.fill_null(len(found))
        np.take(lookup, indices.to_numpy(), out=codes[at : at + len(chunk)], mode="clip")
        at += len(chunk)
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype="str"), validate=False)


def _timestamp(name: str, value: dt.datetime | str) -> Any:
    import pyarrow as pa

    from wfkit.logs._tables import parse_time

    return pa.scalar(parse_time(name, value), type=pa.timestamp("us", tz="UTC"))


# ---- the export ledger, checked on read -----------------------------------------------------------

DAMAGED_DIR = "steps-damaged"
_SEGMENT = re.compile(r"^part-(?P<run>.+)-(?P<first>\d{6,})-(?P<last>\d{6,})\.parquet$")


@dataclass
class LedgerReport:
    """What :func:`check_ledger` found, and what it did about it."""

    missing: list[tuple[str, int, int]] = field(default_factory=list)  # (run, first seq, last seq)
    damaged: list[Path] = field(default_factory=list)
    moved: list[tuple[Path, Path]] = field(default_factory=list)  # (from, to): never deleted
    reexported: int = 0  # rows written again from the journal
    orphaned: list[tuple[str, int]] = field(default_factory=list)  # (run, rows) parquet holds, the journal lacks
    unrecoverable: list[str] = field(default_factory=list)  # with strict=False: what could not be rebuilt
    swept: int = 0  # temporary files whose writer is gone, deleted (with repair=False: found)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.damaged or self.orphaned)


def _covered(root: Path, files: Sequence[Path]) -> dict[str, list[tuple[int, int]]]:
    """Seq ranges per run that segment files hold, by their names (a compacted file by its sources')."""
    import pyarrow.parquet as pq

    ranges: dict[str, list[tuple[int, int]]] = {}
    names: list[str] = []
    for path in files:
        if path.name.startswith("compact-"):
            meta = pq.read_schema(path).metadata or {}
            names.extend(json.loads(meta.get(SOURCES_KEY, b"[]")))
        else:
            names.append(path.name)
    for name in names:
        match = _SEGMENT.match(name)
        if match is not None:
            ranges.setdefault(match["run"], []).append((int(match["first"]), int(match["last"])))
    return ranges


def _gaps(ranges: list[tuple[int, int]], upto: int) -> list[tuple[int, int]]:
    gaps, nxt = [], 1
    for first, last in sorted(ranges):
        if first > nxt and nxt <= upto:
            gaps.append((nxt, min(first - 1, upto)))
        nxt = max(nxt, last + 1)
    if nxt <= upto:
        gaps.append((nxt, upto))
    return gaps


def _unreadable(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        pq.read_table(path, schema=schema())
    except Exception:  # any failure to read it back is damage (ArrowInvalid, OSError, ...)
        return True
    return False


def check_ledger(
    store: Store, workspace: Path, *, repair: bool = True, deep: bool = False, strict: bool = True
) -> LedgerReport:
    """Check the parquet dataset against the journal's export ledger (how far each run was exported),
    and delete the temporary files of writers that are gone (:func:`sweep_temporaries`).

    A segment that is missing is written again from the journal; with ``deep``, every file is read
    back, and a damaged one is moved to ``WORKSPACE/steps-damaged/`` (never deleted) and its rows
    written again. Rows the journal cannot supply are a :class:`StoreCorruptError`: a read never
    returns a silently shorter history (``strict=False``, for ``wfkit doctor``: listed in the
    report instead). With ``repair=False`` nothing is changed, only reported. Cheap unless
    ``deep``: file names and the ledger, no file contents.
    """
    report = LedgerReport()
    root = steps_dir(workspace)
    found = list(root.rglob("*")) if root.exists() else []
    files = [p for p in found if p.suffix == ".parquet" and not p.name.startswith(".")]
    report.swept = sweep_temporaries((p for p in found if p.name.startswith(".")), delete=repair)
    if deep:
        for path in files:
            if _unreadable(path):
                report.damaged.append(path)
        if repair:
            for path in report.damaged:
                target = workspace / DAMAGED_DIR / path.relative_to(root)
                target = target.with_name(f"{target.stem}.{uuid.uuid4().hex[:6]}{target.suffix}")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                report.moved.append((path, target))
        files = [p for p in files if p not in report.damaged]
    covered = _covered(root, files)
    ledger = store.export_ledger()
    for run_id, exported in ledger.items():
        for first, last in _gaps(covered.get(run_id, []), exported):
            report.missing.append((run_id, first, last))
    if deep:  # a full pass over the journal: doctor's job, not every read's
        journal_max = store.journal_lengths()
        for run_id, ranges in covered.items():
            beyond = max(last for _, last in ranges) - journal_max.get(run_id, 0)
            if beyond > 0:  # parquet has rows SQLite lost (a deleted -wal, a restored old file)
                report.orphaned.append((run_id, beyond))
    if repair:
        for run_id, first, last in report.missing:
            try:
                rows = _rows_to_rebuild(store, root, run_id, first, last)
            except StoreCorruptError as exc:
                if strict:
                    raise
                report.unrecoverable.append(str(exc))
                continue
            place_segments(_write_segments(workspace, {run_id: rows}))
            report.reexported += len(rows)
    return report


def _rows_to_rebuild(store: Store, root: Path, run_id: str, first: int, last: int) -> list[tuple[Any, ...]]:
    rows = store.rows_between(run_id, FILE_COLUMNS, after=first - 1, upto=last)
    if len(rows) != last - first + 1:
        raise StoreCorruptError(
            f"the step log under {root} lacks rows {first}-{last} of run {run_id}, and the journal "
            f"in {store.path} cannot supply them (it holds {len(rows)}); the history of that run is "
            f"incomplete: restore the workspace from a backup",
            path=str(store.path),
            run_id=run_id,
            row=first,
            column="journal.seq",
        )
    return rows


# ---- compaction ---------------------------------------------------------------------------------


def compact(workspace: Path, *, small: int = SMALL_FILE) -> dict[str, int]:
    """Merge the small files of each partition into one; returns files merged and written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wfkit.store._workspace import open_store

    # Export first: a segment written but not yet recorded would be written again after it was
    # merged, and its rows would show twice.
    exporter.flush()
    export_pending(open_store(workspace), workspace)
    merged = written = 0
    root = steps_dir(workspace)
    if not root.exists():
        return {"merged": 0, "written": 0}
    for folder in sorted({p.parent for p in root.rglob("*.parquet")}):
        live = segment_files(folder)
        # A partition attempt's file stays whole: which attempt counts is decided by its markers.
        sources = [p for p in live if p.stat().st_size < small and not is_attempt_segment(p.name)]
        if len(sources) < 2:
            continue
        try:
            table = pa.concat_tables([pq.read_table(p, schema=schema()) for p in sources])
        except FileNotFoundError:
            continue  # another process compacted this folder meanwhile: its merged file holds these rows
        target = folder / f"compact-{uuid.uuid4().hex[:12]}.parquet"
        names = sorted(p.name for p in sources)
        # Sources of sources stay listed, so a half-finished earlier compaction never doubles rows.
        inherited = _superseded(p for p in sources if p.name.startswith("compact-"))
        _write_atomic(table, target, {SOURCES_KEY: json.dumps(sorted({*names, *inherited})).encode()})
        for p in sources:
            p.unlink(missing_ok=True)
        merged += len(sources)
        written += 1
    return {"merged": merged, "written": written}
