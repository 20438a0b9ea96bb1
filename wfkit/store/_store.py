"""The run store: one SQLite file per workspace, in WAL mode, holding runs, the journal
of attempts (which doubles as the checkpoint log), intents of irreversible steps, and approval tickets.

Why these choices:
- WAL, ``BEGIN IMMEDIATE`` and a busy timeout let many processes write one workspace without
  "database is locked": writers queue for the lock instead of failing at commit.
- A checkpoint stores the *updates* a step returned (JSON), not the whole state: cost stays
  proportional to what changed, and resume rebuilds the state by replaying them in order.
- JSON, never pickle: a store may come from someone else's machine, and unpickling runs code.
- Every write of this process goes through one writer thread (``_writer``) in group commits:
  the event loop never waits for the disk, and many runs share each transaction and fsync.
  Write methods come in two forms: ``X(...)`` blocks until the write is durable (the CLI,
  ``Workspace``), ``X_op(...)`` is the write itself, which the engine hands to
  ``store.writer.submit_async`` (and may combine with others into one write).
- What a crash cut off is read from what is already written, so a step costs one INSERT: a run
  whose row still says ``running`` died, and the steps its checkpoints had started but not
  settled were in flight. Only a retry writes more: after its backoff, ``attempts`` records that
  attempt N+1 started (else resume knows the process died during the backoff, and waits out
  the rest of it).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import operator
import os
import re
import shlex
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from wfkit.model._context import LLM_ENDPOINTS
from wfkit.model._environ import setting
from wfkit.model._errors import LeaseError, ProcessCrashedError, StoreCorruptError, WorkspaceNotFoundError
from wfkit.model._events import FIELDS, Status, StepEvent
from wfkit.model._process import pid_alive
from wfkit.model._processors import redact_optional, redact_text
from wfkit.model._retry import ErrorKind
from wfkit.model._status import RunStatus
from wfkit.store._codec import encode_state
from wfkit.store._journal import (
    COLUMNS,
    CRASHED_IN_CHILD_TEXT,
    JOURNAL_INSERT,
    JOURNAL_SELECT,
    UNTIMED,
    event_from_row,
    event_row,
    execute_padded,
    execute_rows,
    insert_rows,
    run_checksum,
    verify_rows,
    verify_run,
    with_run_columns,
)
from wfkit.store._keeper import LeaseKeeper
from wfkit.store._tickets import Tickets
from wfkit.store._writer import Rows, WriteOp, Writer, roll_back

# 2: journal rows carry checksum format 2 (see ``_journal``). A store a version-1 wfkit made is
# raised to 2 when this wfkit first opens it, so an older wfkit then says "upgrade wfkit" instead
# of reporting the new rows as damaged.
SCHEMA_VERSION = 2
_FIX = "it is damaged or truncated. Move it aside (or restore a backup) and wfkit will create a new one"
_MAGIC = b"SQLite format 3\x00"
# Seconds a run's lease lasts unless renewed; ``$WFKIT_LEASE_TTL`` sets it per store (a test of a
# step that outlives the lease need not wait a minute for it).
LEASE_TTL = 60.0
_HOST = socket.gethostname()
logger = logging.getLogger("wfkit")

T = TypeVar("T")

# The journal is a rowid table: its rows are appended in the order they are written, and the key
# (run_id, seq) is an index beside them. Why not a table clustered by that key (WITHOUT ROWID, as
# stores made by an earlier wfkit have it: rebuilt when this wfkit first opens them): run ids are
# random, so every row of a group commit then lands on a page of its own among the whole journal's,
# and a row is some 300 bytes, so those pages are full and split often; every page a commit
# touches is written to the WAL whole. Appended, a group commit's rows share a few pages at the
# end, and only the key's small entries land at random. Measured on the writer thread (1,000 runs
# x 5 checkpoints in group commits of 100 writes), CPU per write: 52 to 63 us clustered, 37 to 43
# appended at synchronous=NORMAL (the INSERT 16-20 -> 10-12, the COMMIT 16-19 -> 7-9, the
# durable-wait UPDATE 7-8 -> 5-6), 59 to 73 against 42 to 45 at FULL; inside F2 (the event loop
# busy beside it) 53 to 69 against 45 to 56. A sequential run's single-row commit costs the same
# or a little less (W4's statements at NORMAL: 75 to 84 us of CPU per step against 68 to 76).
_JOURNAL_TABLE = """CREATE TABLE IF NOT EXISTS journal (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, workflow TEXT NOT NULL, workflow_version TEXT NOT NULL,
    step TEXT NOT NULL, visit INTEGER NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
    error_kind TEXT, error_type TEXT, error_message TEXT,
    started_at REAL NOT NULL, ended_at REAL NOT NULL, latency_s REAL NOT NULL, queue_s REAL NOT NULL,
    retry_delay_s REAL, route_taken TEXT, tools TEXT, model TEXT, tokens_in INTEGER,
    tokens_out INTEGER, cost_usd REAL, approver TEXT, decision_comment TEXT, parameters_hash TEXT,
    host TEXT, extra TEXT,
    outcome TEXT, updates TEXT, failure TEXT, map_index INTEGER, parent_run_id TEXT,
    durable_wait_s REAL, checksum TEXT, model_latency_s REAL, ttft_s REAL,
    PRIMARY KEY (run_id, seq)
)"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    workflow_version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    definition TEXT NOT NULL,
    workflow_ref TEXT,
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT,
    error_type TEXT,
    error TEXT,
    seed INTEGER,
    timeout REAL,
    elapsed REAL NOT NULL DEFAULT 0,
    count_waiting INTEGER NOT NULL DEFAULT 0,
    parameters_hash TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL,
    lease_owner TEXT,
    lease_host TEXT,
    lease_pid INTEGER,
    lease_expires REAL,
    exported_seq INTEGER NOT NULL DEFAULT 0,
    checksum TEXT,
    policy TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS intents (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    visit INTEGER NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    resolved_by TEXT,
    PRIMARY KEY (run_id, step, visit)
);
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    step TEXT NOT NULL,
    visit INTEGER NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    comment TEXT,
    created_at REAL NOT NULL,
    decided_at REAL,
    UNIQUE (run_id, step, visit)
);
CREATE INDEX IF NOT EXISTS tickets_open ON tickets (status);
{_JOURNAL_TABLE};
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    visit INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_at REAL NOT NULL,
    PRIMARY KEY (run_id, step, visit)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_links (
    run_id TEXT PRIMARY KEY,
    parent_run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at_step TEXT,
    at_seq INTEGER,
    parent_step TEXT,
    parent_visit INTEGER,
    detail TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS run_links_by_parent ON run_links (parent_run_id);
CREATE TABLE IF NOT EXISTS step_cache (
    workflow TEXT NOT NULL,
    step TEXT NOT NULL,
    code TEXT NOT NULL,
    reads TEXT NOT NULL,
    key TEXT NOT NULL,
    updates TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    source_run_id TEXT,
    PRIMARY KEY (workflow, step, code, reads, key)
)
"""

# Added to stores made before they existed: columns appended to the journal (a store written by an
# older wfkit has none of them, and older wfkit ignores them), and the tables above.
_JOURNAL_ADDED = (
    ("map_index", "INTEGER"),
    ("parent_run_id", "TEXT"),
    ("durable_wait_s", "REAL"),
    ("checksum", "TEXT"),
    ("model_latency_s", "REAL"),
    ("ttft_s", "REAL"),
)
# Rows written before checksums keep NULL there and are read unchecked (their JSON still is).
# ``policy``: the approval policy a run was given (JSON, ``policy_record``), NULL when it was given
# none; a resume given none decides by it. Outside the checksum, which an older wfkit would then
# find changed in every row that has one.
_RUNS_ADDED = (("checksum", "TEXT"), ("policy", "TEXT"))


_AT = {name: i + 1 for i, name in enumerate(COLUMNS)}  # positions in (seq, *COLUMNS)


def _log_failed_write(future: Any) -> None:
    if future.exception() is not None:
        logger.error("wfkit: a write the run did not wait for failed: %s", future.exception())


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The device and inode of the file at ``path`` (None when there is none)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def lost_wal_frames(db: Path) -> int:
    """How many committed WAL frames the ``-shm`` index records that the ``-wal`` file no longer
    holds (0 when all is well, or when there is no index to tell).

    SQLite keeps the index's header twice (48 bytes, native byte order: mxFrame at offset 16) and
    the checkpoint's progress (nBackfill) at offset 96. Frames past nBackfill live only in the WAL:
    a deleted or truncated WAL after a crash loses them without a word from SQLite.
    """
    shm, wal = Path(f"{db}-shm"), Path(f"{db}-wal")
    try:
        with shm.open("rb") as fh:
            head = fh.read(100)
    except OSError:
        return 0
    if len(head) < 100 or head[:48] != head[48:96] or head[12] != 1:  # not initialised, or mid-update
        return 0
    (page,) = struct.unpack("=H", head[14:16])
    (frames,) = struct.unpack("=I", head[16:20])
    (backfilled,) = struct.unpack("=I", head[96:100])
    if frames <= backfilled:
        return 0
    page_size = 65536 if page == 1 else page
    try:
        size = wal.stat().st_size
    except OSError:
        size = 0
    present = max(0, (size - 32) // (24 + page_size)) if page_size else frames
    return max(0, int(frames) - int(present))


def effective_status(run: dict[str, Any], *, pending_intents: int) -> str:
    """The status a stored run truly has: one stored as running whose lease no one holds
    (:func:`_lease_holder`, the rule a resume and a reconciliation go by), or one waiting for a reconciliation that
    already happened, is ``interrupted``: nothing runs it, and resuming continues it.
    ``pending_intents``: those of the run and of its sub-workflow runs (a parent waits for its
    child's reconciliation)."""
    status = str(run["status"])
    if status == RunStatus.RUNNING:
        if _lease_holder(run, time.time()) is None:
            return RunStatus.INTERRUPTED
    elif status == RunStatus.NEEDS_RECONCILIATION and pending_intents == 0:
        return RunStatus.INTERRUPTED
    return status


def _lease_ttl() -> float:
    """The lease's length, ``$WFKIT_LEASE_TTL`` seconds (``LEASE_TTL`` when it is not set)."""
    raw = setting("WFKIT_LEASE_TTL")
    if raw is None:
        return LEASE_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = math.nan
    if not (0 < ttl < math.inf):
        raise ValueError(
            f"$WFKIT_LEASE_TTL must be a number of seconds above 0 (how long a run's lease lasts "
            f"unless renewed; {LEASE_TTL:g} by default), got {raw!r}: set it to one, or unset it"
        )
    return ttl


class Store:
    """Low-level access to one workspace's SQLite file. One connection per thread."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "full",
        create: bool = True,
        workspace_option: Callable[[], str] | None = None,
    ) -> None:
        if synchronous.lower() not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self.owner = f"{_HOST}:{os.getpid()}:{id(self):x}"
        self.lease_ttl = _lease_ttl()
        self._upgraded = False
        self._check_file(create)
        self._identity = _file_identity(path)
        self._connect()
        self.writer = Writer(
            self._connect,
            name=str(path),
            translate=self._damaged,
            bulk=self._bulk_write,
            stale=self._forget_seqs,
            # A small write may be committed on an idle loop (at FULL, a quiet one: see _writer).
            inline=self._connect_for_loop,
            inline_waits_for_disk=self.synchronous == "FULL",
        )
        # Approval tickets: a part of the store, handed its write and read (``store.tickets``), and
        # ``workspace_option``: how a command their messages name finds this workspace (from
        # open_store, which knows the default one; a store opened on its own names its folder).
        named = f" --workspace {shlex.quote(str(path.parent))}"
        self.workspace_option = workspace_option or (lambda: named)
        self.tickets = Tickets(path, self.do, self.read, self.workspace_option)
        # The leases of the runs this store executes, renewed while they run (``leases.keep`` as a
        # run starts, ``leases.drop`` as it stops), however long a step goes without a write.
        # It also fences the writes of a run another process took over (see _keeper).
        self.leases = LeaseKeeper(self._renew_leases, ttl=self.lease_ttl, name=str(path), holder=self._holder_now)
        # Used by the writer only (its thread, or a loop's commit under its gate).
        self._next_seqs = _NextSeqs()

    # ---- connection --------------------------------------------------------------------------

    def _check_file(self, create: bool) -> None:
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise WorkspaceNotFoundError(
                f"the workspace {folder} is a file, not a folder; pass a folder (--workspace DIR, "
                f"$WFKIT_HOME, or workspace=...)"
            )
        if not self.path.exists():
            if not create:
                raise WorkspaceNotFoundError(
                    f"no workspace at {folder} (no {self.path.name} there), and reading never creates one; "
                    f"check the path (--workspace, $WFKIT_HOME, or the current folder's .wfkit), or create "
                    f"it by running a workflow there: flow.run(inputs, workspace={str(folder)!r})"
                )
            try:
                self._create_file()
            except (OSError, sqlite3.OperationalError) as exc:
                raise WorkspaceNotFoundError(
                    f"cannot create a workspace at {folder} ({exc}); choose a folder you can write to "
                    f"(--workspace DIR, $WFKIT_HOME, or workspace=...)"
                ) from exc
            return
        lost = lost_wal_frames(self.path)
        if lost:
            raise StoreCorruptError(
                f"the run store's write-ahead log {self.path}-wal is missing or cut short: {lost} committed "
                f"page(s) that had not yet reached {self.path.name} are gone (its -shm index says so), so "
                f"recent runs would silently vanish. Put the -wal file back (from a backup, or wherever it "
                f"went) to recover them; to accept the loss, `wfkit doctor --repair --workspace "
                f"{self.path.parent}` moves the stale -shm aside (nothing is deleted)",
                path=f"{self.path}-wal",
            )
        try:
            with self.path.open("rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise WorkspaceNotFoundError(
                f"cannot read the run store {self.path} ({exc}); check the path and its permissions"
            ) from exc
        if head != _MAGIC:
            what = "empty (truncated to 0 bytes)" if not head else "not an SQLite database"
            raise StoreCorruptError(
                f"the run store {self.path} is {what}; wfkit will not read it as an empty store: {_FIX}"
            )

    def _create_file(self) -> None:
        """Build the schema in a private file, then link it into place: other processes never see
        a half-made store (a 0-byte file is how a truncated store looks)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            with _transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        finally:
            conn.close()
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            pass  # another process made it first: theirs is as good as ours
        finally:
            tmp.unlink(missing_ok=True)

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        # Each thread gets its own connection; check_same_thread is off only so that close() can
        # close those of threads that have ended (an export timer's, say). The writer's bulk
        # statements come in a size per power of two and NULL pattern: more than the default 128
        # cached statements would hold, and a large one costs milliseconds to prepare again.
        conn = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            # Check it is ours before changing anything in it (WAL mode persists in the file).
            version = self._schema_version(conn)
            if version is None:
                raise StoreCorruptError(f"the run store {self.path} holds no tables; {_FIX}")
            if version > SCHEMA_VERSION:
                raise StoreCorruptError(
                    f"the run store {self.path} has schema version {version}, newer than this "
                    f"wfkit understands ({SCHEMA_VERSION}); upgrade wfkit"
                )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            if not self._upgraded:
                self._upgrade(conn, version)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise
            raise StoreCorruptError(f"the run store {self.path} cannot be read ({exc}); {_FIX}") from exc
        except BaseException:
            conn.close()  # never keep a refused file open (it could not be moved aside on Windows)
            raise
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append((threading.current_thread(), conn))
        return conn

    def _connect_for_loop(self) -> sqlite3.Connection:
        """A connection for the writer's commits on an event loop's thread: it never waits for a
        lock (busy timeout 0: the writer takes the write instead) and never checkpoints the WAL
        (the writer does); at FULL its commit waits for an fsync, made only on a quiet loop."""
        conn = sqlite3.connect(self.path, timeout=0.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    def _upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        """Bring a store made by an earlier wfkit up to date: appended journal columns, new tables,
        and its schema version (an older wfkit then refuses it with "upgrade wfkit")."""
        have = {r[1] for r in conn.execute("PRAGMA table_info(journal)")}
        have_runs = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        missing = [(name, kind) for name, kind in _JOURNAL_ADDED if name not in have]
        missing += [(name, kind) for name, kind in _RUNS_ADDED if name not in have_runs]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if missing or version < SCHEMA_VERSION or not {"run_links", "step_cache", "attempts"} <= tables:
            with _transaction(conn):
                have = {r[1] for r in conn.execute("PRAGMA table_info(journal)")}  # under the lock now
                for name, kind in _JOURNAL_ADDED:
                    if name not in have:
                        conn.execute(f"ALTER TABLE journal ADD COLUMN {name} {kind}")
                have_runs = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
                for name, kind in _RUNS_ADDED:
                    if name not in have_runs:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                for statement in _SCHEMA.split(";"):
                    if "IF NOT EXISTS" in statement and any(
                        t in statement for t in ("run_links", "step_cache", "attempts")
                    ):
                        conn.execute(statement)
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
                    (str(SCHEMA_VERSION), SCHEMA_VERSION),
                )
        if _clustered_journal(conn):
            self._append_journal(conn)
        self._upgraded = True

    def _append_journal(self, conn: sqlite3.Connection) -> None:
        """Rebuild a journal an earlier wfkit clustered by its key (see ``_JOURNAL_TABLE``). Only its
        speed depends on it, so a store that cannot be written now (a read-only file, a lock held past
        the busy timeout) is used as it is, and rebuilt by a later open."""
        try:
            with _transaction(conn):
                if _clustered_journal(conn):  # under the lock now: another process may have done it
                    rows = conn.execute("SELECT count(*) FROM journal").fetchone()[0]
                    if rows >= _ANNOUNCED_REBUILD_ROWS:  # a long wait, holding the lock: said before it starts
                        logger.warning(
                            "wfkit: rebuilding the journal of %s (%d rows) with its rows appended in the order "
                            "written, once; this takes about %.0f s, and other processes wait for the store "
                            "meanwhile",
                            self.path,
                            rows,
                            rows * _REBUILD_SECONDS_PER_ROW,
                        )
                    started = time.perf_counter()
                    _append_journal(conn)
                    # Once per store, some 1.5 s per 100,000 rows: said, so a slow first open is explained.
                    logger.info(
                        "wfkit: rebuilt the journal of %s with its rows appended in the order written (faster "
                        "group commits), once, in %.1f s",
                        self.path,
                        time.perf_counter() - started,
                    )
        except sqlite3.OperationalError as exc:
            logger.warning(
                "wfkit: the journal of %s keeps the layout an earlier wfkit made (%s); it works as it is, "
                "with slower group commits, and is rebuilt when the store is next opened",
                self.path,
                exc,
            )

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None
        if "meta" not in tables or "runs" not in tables:
            raise StoreCorruptError(
                f"{self.path} is an SQLite file but not a wfkit run store (tables: "
                f"{', '.join(sorted(tables))}); point WFKIT_HOME at another folder"
            )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise StoreCorruptError(
                f"the run store {self.path} has no schema version or an invalid one ({row!r}); {_FIX}"
            ) from None

    def _damaged(self, exc: sqlite3.DatabaseError) -> BaseException:
        if isinstance(exc, sqlite3.OperationalError):
            return self._unwritable(exc)
        return StoreCorruptError(f"the run store {self.path} is damaged: {exc}; {_FIX}")

    def _unwritable(self, exc: sqlite3.OperationalError) -> sqlite3.OperationalError:
        """A write the file system refused, said with the file and what to do (SQLite says only
        "disk I/O error" or "attempt to write a readonly database"); any other error as it is."""
        text = str(exc)
        if "readonly" in text:
            why = (
                f"the workspace {self.path.parent} or its files are read-only for this user: make them "
                f"writable, or run in another workspace (workspace=..., $WFKIT_HOME, --workspace); reading "
                f"it works as it is"
            )
        elif "disk I/O error" in text or "disk is full" in text:
            why = (
                "the disk is likely full (or a file-size limit was reached): free space there, or run in a "
                "workspace on another disk; what was committed before is intact, and `wfkit runs --status "
                "interrupted` lists the runs to resume"
            )
        else:
            return exc
        said = sqlite3.OperationalError(f"the run store {self.path} cannot be written ({text}); {why}")
        said.__cause__ = exc
        return said

    def moved_away(self) -> bool:
        """Whether the file this store opened is no longer at its path (the workspace was deleted,
        perhaps made again, or the file replaced): its writes then reach a file nobody reads."""
        return _file_identity(self.path) != self._identity

    @property
    def conn(self) -> sqlite3.Connection:
        return self._connect()

    def _bulk_write(self, conn: sqlite3.Connection, rows: Rows) -> Sequence[int | None]:
        if self.leases.due():  # a lease of a run here may have run out: the fence looks first
            return self._fenced_bulk_write(conn, rows)
        return self._write_rows(conn, rows)

    def _write_rows(self, conn: sqlite3.Connection, rows: Rows) -> Sequence[int | None]:
        try:
            return _bulk_write(conn, rows, self._next_seqs)
        except ValueError as exc:  # name the store a refused run id was meant for
            raise ValueError(
                str(exc).replace(" already exists;", f" already exists in {self.path};")
            ) from exc.__cause__

    def _fenced_bulk_write(self, conn: sqlite3.Connection, rows: Rows) -> Sequence[int | None]:
        """:meth:`_bulk_write` behind the lease fence (``LeaseKeeper.fence``), in a transaction of its
        own when the writer gave it none (a lone row committed by itself): the lease's read and the
        write must see the same file, with no takeover in between."""
        began = not conn.in_transaction
        if began:
            conn.execute("BEGIN IMMEDIATE")
        try:
            self.leases.fence(conn, _runs_written(rows))
            said = self._write_rows(conn, rows)
            if began:
                conn.execute("COMMIT")
        except BaseException:
            if began:
                roll_back(conn, "a write behind the lease fence")
            raise
        return said

    def fenced(self, run_id: str, op: WriteOp[T]) -> WriteOp[T]:
        """``op``, a write of a run executing here, behind the lease fence: refused with a
        :class:`~wfkit.LeaseError` once another process took the run over (see ``_keeper``)."""
        leases = self.leases

        def fenced_op(conn: sqlite3.Connection) -> T:
            if leases.due():
                leases.fence(conn, (run_id,))
            return op(conn)

        return fenced_op

    def _holder_now(self, conn: sqlite3.Connection, run_id: str) -> str | None:
        """Who took the run over (for the fence's error), read in the caller's transaction: None
        while its lease is still this store's."""
        row = conn.execute(f"SELECT {', '.join(_LEASE)} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            return "the run is no longer in the store"
        owner, host, pid, _ = row
        if owner == self.owner:
            return None
        if owner is None:
            return "another process took this run over and has let it go since"
        return f"process {pid} on {host} took this run over"

    def _forget_seqs(self) -> None:
        self._next_seqs.clear()

    def do(self, op: WriteOp[Any]) -> Any:
        """Hand a write to the writer thread and block until it is durable."""
        return self.writer.run(op)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front (``BEGIN IMMEDIATE``)."""
        conn = self.conn
        try:
            with _transaction(conn):
                yield conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            raise StoreCorruptError(f"the run store {self.path} is damaged: {exc}; {_FIX}") from exc

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql, params))
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "no such" not in str(exc):
                raise
            raise StoreCorruptError(f"the run store {self.path} is damaged: {exc}; {_FIX}") from exc

    # ---- the step-log export ledger: which journal rows parquet already holds ----------------

    def unexported_rows(self, run_id: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """The run's journal rows that parquet does not hold yet, in order: ``columns`` then the
        workflow name. Empty for an unknown run."""
        unknown = set(columns) - {*FIELDS, "seq"}
        if unknown:
            raise ValueError(f"the journal has no step-log column(s) {sorted(unknown)}")
        done = self.read("SELECT exported_seq FROM runs WHERE run_id = ?", (run_id,))
        if not done:
            return []
        return self.rows_between(run_id, columns, after=done[0][0])

    def rows_between(
        self, run_id: str, columns: Sequence[str], *, after: int, upto: int | None = None
    ) -> list[tuple[Any, ...]]:
        """The run's journal rows with ``after < seq <= upto``, verified (checksums, no gap), as
        ``columns`` then the workflow name: what the step log is exported from."""
        rows = self.journal_rows(run_id, after=after)
        if upto is not None:
            rows = [r for r in rows if r[0] <= upto]
        # The columns then the workflow, picked in C: an export pays this for every row it writes.
        pick = operator.itemgetter(*(0 if c == "seq" else _AT[c] for c in columns), _AT["workflow"])
        return list(map(pick, rows))

    def export_ledger(self) -> dict[str, int]:
        """How far each run's journal was exported to parquet (runs with something exported)."""
        return {r[0]: r[1] for r in self.read("SELECT run_id, exported_seq FROM runs WHERE exported_seq > 0")}

    def journal_lengths(self) -> dict[str, int]:
        """The last seq of each run's journal."""
        return {r[0]: r[1] for r in self.read("SELECT run_id, MAX(seq) FROM journal GROUP BY run_id")}

    def all_journal_rows(self, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """Every journal row of every run, exported or not, by run and in order: ``columns`` then
        the workflow name (a Dask partition's scratch workspace, copied whole to the dataset)."""
        unknown = set(columns) - {*FIELDS, "seq"}  # names are checked: they go into the SQL text
        if unknown:
            raise ValueError(f"the journal has no step-log column(s) {sorted(unknown)}")
        sql = f"SELECT {', '.join(columns)}, workflow FROM journal ORDER BY run_id, seq"
        return [tuple(r) for r in self.read(sql)]

    def drop_all_rows(self) -> None:
        """Delete every row of every table but the store's own ``meta``: the store is then as a
        new one is. For a scratch workspace (a Dask partition's, its rows copied to a dataset)
        used again by the next partition, which saves making, syncing and closing a new file."""

        def drop(conn: sqlite3.Connection) -> None:
            tables = [
                r[0]
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if r[0] != "meta" and not r[0].startswith("sqlite_")
            ]
            for table in tables:  # names read from the schema, never from a caller
                conn.execute(f'DELETE FROM "{table}"')
            self._next_seqs.clear()

        self.do(drop)

    def mark_exported(self, last_seqs: Mapping[str, int]) -> None:
        """Record that parquet holds each run's journal rows up to its seq in ``last_seqs`` (run id ->
        last seq exported), in one write; a run's mark never moves back."""
        rows = list(last_seqs.items())

        def mark(conn: sqlite3.Connection) -> None:
            # One statement per 512 runs, not one per run: a background export marks hundreds of
            # runs at once, and every statement lets go of the interpreter and waits to win it
            # back from a busy event loop, in the same commit as the live runs' checkpoints.
            execute_rows(conn, _bulk_exported, rows)

        self.do(mark)

    def runs_with_unexported_rows(self) -> list[tuple[str, bool]]:
        """Each run whose journal holds rows parquet lacks, and whether a live process executes it
        now (its lease is valid and, on this host, its process is alive)."""
        rows = self.read(
            "SELECT r.run_id, r.lease_owner, r.lease_host, r.lease_pid, r.lease_expires FROM runs r WHERE EXISTS "
            "(SELECT 1 FROM journal j WHERE j.run_id = r.run_id AND j.seq > r.exported_seq)"
        )
        now = time.time()
        return [(r[0], _lease_holder(dict(zip(_LEASE, r[1:], strict=True)), now) is not None) for r in rows]

    def close(self) -> None:
        """Stop the writer (after it committed what it was handed), close this thread's connection
        and those of threads that have ended. A live thread's connection is left to it: closing
        it under a running transaction would crash SQLite."""
        self.writer.close()
        self.release_thread()

    def release_thread(self) -> None:
        """Close this thread's connection and those of threads that have ended, and nothing else:
        for a thread about to end while the store stays in use (the writer goes on committing
        other threads' writes, and a live thread's connection is left to it)."""
        me = threading.current_thread()
        with self._conns_lock:
            closing = [(t, c) for t, c in self._conns if t is me or not t.is_alive()]
            self._conns = [(t, c) for t, c in self._conns if not (t is me or not t.is_alive())]
        for _, conn in closing:
            conn.close()
        self._local.conn = None

    # ---- runs and leases -----------------------------------------------------------------------

    def create_run(self, row: Mapping[str, Any]) -> None:
        """Record a new run, leased to this process."""
        rows = self.create_run_rows(row)
        self.writer.run(None, rows)
        self.created(rows)

    def created(self, create: Rows) -> None:
        """The new runs of ``create`` (``create_run_rows``) are written: the fence knows their
        leases from now on (not before: a refused run id is another run's, not this process's)."""
        for kind, values in create:
            if kind == "run":
                self.leases.granted(values[0], values[_RUN_LEASE_EXPIRES])

    def create_run_rows(self, row: Mapping[str, Any]) -> Rows:
        """A new run, as a row for the writer's bulk insert (a run id that exists is refused)."""
        unknown = row.keys() - _RUN_COLUMN_SET
        if unknown:
            raise TypeError(f"create_run got unknown run columns: {', '.join(sorted(unknown))}")
        now = time.time()
        values = {
            **dict.fromkeys(_RUN_COLUMNS),
            "elapsed": 0.0,
            "count_waiting": 0,
            **row,
            # The boundary: inputs (and a policy's path or repr) are text a secret can reach like any other.
            "inputs": redact_text(row["inputs"]),
            "policy": redact_optional(row.get("policy")),
            "created_at": now,
            "updated_at": now,
            "status": "running",
            "lease_owner": self.owner,
            "lease_host": _HOST,
            "lease_pid": os.getpid(),
            "lease_expires": now + self.lease_ttl,
        }
        values["checksum"] = run_checksum(values)
        return [("run", _RUN_VALUES(values))]

    def acquire(self, run_id: str) -> dict[str, Any]:
        """Take the run's lease for this process; refuse if a live process holds it."""
        taken_at = time.time()
        run: dict[str, Any] = self.do(self.acquire_op(run_id))
        self.leases.granted(run_id, taken_at + self.lease_ttl)  # (it expires no sooner)
        return run

    def acquire_op(self, run_id: str) -> WriteOp[dict[str, Any]]:
        """The write that takes the run's lease (returns the run's row), for ``submit_async``."""
        path, me, ttl = self.path, self.owner, self.lease_ttl

        def acquire(conn: sqlite3.Connection) -> dict[str, Any]:
            now = time.time()
            cur = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
            row = cur.fetchone()
            if row is None:
                raise KeyError(f"no run {run_id!r} in {path}; `wfkit runs` lists the runs there")
            run = dict(zip([d[0] for d in cur.description], row, strict=True))
            verify_run(path, run)
            holder = _lease_holder(run, now)
            if holder is not None and run["lease_owner"] != me:
                raise LeaseError(
                    f"it is being executed by {holder}; only one process may execute a run: wait "
                    f"for it to finish, or stop that process",
                    run_id=run_id,
                )
            conn.execute(
                "UPDATE runs SET lease_owner=?, lease_host=?, lease_pid=?, lease_expires=? WHERE run_id=?",
                (me, _HOST, os.getpid(), now + ttl, run_id),
            )
            return run

        return acquire

    def _renew_leases(self, run_ids: tuple[str, ...]) -> None:
        """Hand the renewal of these runs' leases to the writer (from the lease keeper's thread);
        only a lease this store still holds is renewed (one released or taken over is left alone)."""
        me, ttl, leases = self.owner, self.lease_ttl, self.leases

        def renew(conn: sqlite3.Connection) -> tuple[float, list[str]]:
            expires = time.time() + ttl
            renewed = [
                r
                for r in run_ids
                if conn.execute(
                    "UPDATE runs SET lease_expires=? WHERE run_id=? AND lease_owner=?", (expires, r, me)
                ).rowcount
            ]
            return expires, renewed

        def renewed(done: concurrent.futures.Future[tuple[float, list[str]]]) -> None:
            # The fence counts on a renewal once it is durable (a failed commit renewed nothing).
            if done.exception() is None:
                leases.renewed(done.result()[1], done.result()[0])
            _log_failed_write(done)

        self.writer.submit(renew).add_done_callback(renewed)

    def mark_running_op(self, run_id: str, elapsed: float) -> WriteOp[None]:
        """A resumed run is running again, ``elapsed`` seconds of its deadline used. While a run
        runs, its row's ``elapsed`` is what it had used at ``updated_at`` (written here and by a
        checkpoint every half lease), so a resume after a crash can count the time up to its last step."""

        def mark(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE runs SET status='running', updated_at=?, elapsed=? WHERE run_id=?",
                (time.time(), elapsed, run_id),
            )

        return mark

    def release(self, run_id: str) -> None:
        self.do(self.release_op(run_id))

    def release_later(self, run_id: str) -> None:
        """Hand the lease's release to the writer without waiting for it (from a coroutine: the
        writer keeps the order, so a later acquire in this process comes after it)."""
        self.writer.submit(self.release_op(run_id)).add_done_callback(_log_failed_write)

    def release_op(self, run_id: str) -> WriteOp[None]:
        me = self.owner
        self.leases.drop(run_id)  # no renewal and no fence for it from now on

        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE runs SET lease_owner=NULL, lease_host=NULL, lease_pid=NULL, lease_expires=NULL "
                "WHERE run_id=? AND lease_owner=?",
                (run_id, me),
            )

        return release

    def finish_rows(
        self,
        run_id: str,
        *,
        status: str,
        state: Mapping[str, Any],
        error: BaseException | None,
        elapsed: float,
        ended: bool,
    ) -> Rows:
        """Where a run stopped (ended, halted or failed), with its lease released, as a row for
        the writer's bulk update. Its attempt records go too: none is in flight any more."""
        now = time.time()
        try:
            state_json: str | None = redact_text(encode_state("the run's final", state))
        except ValueError:  # a merge function built a value state cannot keep: the checkpoints still hold it
            state_json = None
        error_text = redact_optional(None if error is None else str(error))
        return [
            (
                "finish",
                (
                    run_id,
                    status,
                    state_json,
                    None if error is None else type(error).__name__,
                    error_text,
                    elapsed,
                    now,
                    now if ended else None,
                    self.owner,
                ),
            )
        ]

    def finish(
        self,
        run_id: str,
        *,
        status: str,
        state: Mapping[str, Any],
        error: BaseException | None,
        elapsed: float,
        ended: bool,
    ) -> None:
        """Record where a run stopped (ended, halted or failed) and release its lease."""
        self.writer.run(
            None, self.finish_rows(run_id, status=status, state=state, error=error, elapsed=elapsed, ended=ended)
        )
        self.leases.drop(run_id)  # no renewal and no fence for it from now on

    # ---- checkpoints and journal ---------------------------------------------------------------

    def checkpoint_write(
        self,
        event: StepEvent,
        outcome: str,
        updates: str | None,
        failure: str | None,
        *,
        intent_status: str | None = None,
        elapsed: float | None = None,
    ) -> tuple[WriteOp[None] | None, Rows]:
        """A settled step: its final event carrying the outcome and updates, as a row for the
        writer's bulk insert, and what else must change with it (None when nothing must).
        ``elapsed``: the run's time used so far (see :meth:`mark_running_op`), written only while
        this store holds the run's lease: a run another process took over keeps that one's clock.
        The lease itself is the lease keeper's alone (``leases``), which renews it only while it
        is this store's, whatever the steps write."""
        rows = self.checkpoint_rows(event, outcome, updates, failure)
        if intent_status is None and elapsed is None:
            return None, rows
        run_id, step, visit, me = event.run_id, event.step, event.visit, self.owner

        def with_checkpoint(conn: sqlite3.Connection) -> None:
            if intent_status is not None:  # only irreversible steps have intents
                conn.execute(
                    "UPDATE intents SET status=? WHERE run_id=? AND step=? AND visit=? AND status='pending'",
                    (intent_status, run_id, step, visit),
                )
            if elapsed is not None:
                conn.execute(
                    "UPDATE runs SET updated_at=?, elapsed=? WHERE run_id=? AND lease_owner=?",
                    (time.time(), elapsed, run_id, me),
                )

        return with_checkpoint, rows

    @staticmethod
    def checkpoint_rows(event: StepEvent, outcome: str, updates: str | None, failure: str | None) -> Rows:
        """A settled step's checkpoint when nothing else must change with it: its final event,
        carrying the outcome and updates, as a row for the writer's bulk insert."""
        return [_journal_row(event, outcome, updates, failure)]

    def checkpoint(
        self,
        event: StepEvent,
        outcome: str,
        updates: str | None,
        failure: str | None,
        *,
        intent_status: str | None = None,
        elapsed: float | None = None,
    ) -> None:
        fn, rows = self.checkpoint_write(event, outcome, updates, failure, intent_status=intent_status, elapsed=elapsed)
        self.writer.run(fn, rows)

    @staticmethod
    def event_rows(events: Sequence[StepEvent]) -> Rows:
        """Events without a checkpoint of their own, as rows for the writer's bulk insert."""
        return [_journal_row(e, None, None, None) for e in events]

    def journal(self, events: Sequence[StepEvent]) -> None:
        self.writer.run(None, self.event_rows(events))

    def journal_rows(self, run_id: str, *, after: int = 0) -> list[tuple[Any, ...]]:
        """One run's journal rows after seq ``after``, verified (checksums, no gap): (seq, *COLUMNS)."""
        rows = self.read(JOURNAL_SELECT + " WHERE run_id=? AND seq>? ORDER BY seq", (run_id, after))
        return verify_rows(self.path, run_id, rows, after=after)

    def checkpoints(self, run_id: str) -> list[tuple[Any, ...]]:
        """The settled steps of a run: (seq, step, visit, outcome, updates, route_taken, failure)."""
        return [
            (
                r[0],
                r[_AT["step"]],
                r[_AT["visit"]],
                r[_AT["outcome"]],
                r[_AT["updates"]],
                r[_AT["route_taken"]],
                r[_AT["failure"]],
                r[_AT["map_index"]],
            )
            for r in self.journal_rows(run_id)
            if r[_AT["outcome"]] is not None
        ]

    # ---- links between runs: forks and sub-workflows ------------------------------------------

    def link_run_op(
        self,
        run_id: str,
        parent_run_id: str,
        kind: str,
        *,
        at_step: str | None = None,
        at_seq: int | None = None,
        parent_step: str | None = None,
        parent_visit: int | None = None,
        detail: str | None = None,
    ) -> WriteOp[None]:
        """The write recording that ``run_id`` was forked from (``kind="fork"``) or started as a
        sub-workflow by (``kind="child"``) ``parent_run_id``; handed to the writer with the linked
        run's row, so both land in one commit."""
        values = (
            run_id,
            parent_run_id,
            kind,
            at_step,
            at_seq,
            parent_step,
            parent_visit,
            redact_optional(detail),
            time.time(),
        )

        def link(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO run_links (run_id, parent_run_id, kind, at_step, at_seq, parent_step, "
                "parent_visit, detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

        return link

    def run_link(self, run_id: str) -> dict[str, Any] | None:
        """Where a run came from (a fork's origin, a child's parent), or None."""
        keys = ("run_id", "parent_run_id", "kind", "at_step", "at_seq", "parent_step", "parent_visit", "detail")
        rows = self.read(f"SELECT {', '.join(keys)} FROM run_links WHERE run_id=?", (run_id,))
        return dict(zip(keys, rows[0], strict=True)) if rows else None

    def child_runs(self, parent_run_id: str) -> list[dict[str, Any]]:
        """The sub-workflow runs a run started, oldest first."""
        keys = ("run_id", "parent_step", "parent_visit")
        rows = self.read(
            "SELECT run_id, parent_step, parent_visit FROM run_links WHERE parent_run_id=? AND kind='child' "
            "ORDER BY created_at",
            (parent_run_id,),
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def child_run(self, parent_run_id: str, step: str, visit: int) -> str | None:
        """The sub-workflow run a step's visit started last (a retry starts another), if it did."""
        rows = self.read(
            "SELECT run_id FROM run_links WHERE parent_run_id=? AND kind='child' AND parent_step=? AND parent_visit=? "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (parent_run_id, step, visit),
        )
        return str(rows[0][0]) if rows else None

    def running_child(self, parent_run_id: str, step: str, visit: int) -> str | None:
        """The sub-workflow run of a step's visit if it is stored as running (a crash cut it off
        while it ran: it had neither ended nor halted), else None."""
        child = self.child_run(parent_run_id, step, visit)
        if child is None:
            return None
        rows = self.read("SELECT status FROM runs WHERE run_id=?", (child,))
        return child if rows and rows[0][0] == RunStatus.RUNNING else None

    def top_run(self, run_id: str) -> str:
        """The run at the top of a chain of sub-workflows (``run_id`` itself for a top-level run):
        the one to resume when a gate inside a child is decided."""
        seen = {run_id}
        link = self.run_link(run_id)
        while link is not None and link["kind"] == "child" and link["parent_run_id"] not in seen:
            run_id = link["parent_run_id"]
            seen.add(run_id)
            link = self.run_link(run_id)
        return run_id

    def descendant_runs(self, run_id: str) -> list[str]:
        """``run_id`` and every sub-workflow run below it, parents before their children.

        One recursive query, breadth first (SQLite's queue of a recursive CTE is first in, first
        out, so a run is read only after its parent), each run's children in the order they were
        linked; UNION keeps each run once, should links ever form a cycle. Before, one query per run
        and a list search per child: a map over thousands of items, each a sub-workflow run, took
        0.3 s at 5,000 children to list its approvals, growing with their square."""
        rows = self.read(
            "WITH RECURSIVE below(run_id) AS (SELECT ? UNION SELECT l.run_id FROM below "
            "JOIN run_links l ON l.parent_run_id = below.run_id AND l.kind = 'child') SELECT run_id FROM below",
            (run_id,),
        )
        return [str(r[0]) for r in rows]

    def lineage_checkpoints(self, run_id: str) -> list[tuple[Any, ...]]:
        """A run's checkpoints, preceded by those it shares with the run it was forked from.

        A fork copies nothing: its replay reads the origin's checkpoints up to the fork point
        (recursively, for a fork of a fork), then one ``fork`` row carrying the update, then its own.
        """
        link = self.run_link(run_id)
        own = self.checkpoints(run_id)
        if link is None or link["kind"] != "fork":
            return own
        # at_seq counts the origin's lineage rows the fork shares (positions, not journal numbers:
        # a fork of a fork shares rows of several runs, each numbered on its own).
        shared = self.lineage_checkpoints(link["parent_run_id"])[: link["at_seq"]]
        fork_row = (
            link["at_seq"],
            link["at_step"],
            link["parent_visit"] or 0,
            "fork",
            link["detail"],
            None,
            None,
            None,
        )
        return [*shared, fork_row, *own]

    def endpoints_called(self, run_id: str) -> dict[str, str]:
        """The models a run called at a network endpoint, ``{model asked: base URL}``, from its
        journal's ``extra["llm_endpoints"]``: its own attempts', its sub-workflow runs' and those of
        the runs it was forked from (whose steps it shares). Calls of the simulated model or a
        cassette leave none; a later call of a model at another URL wins."""
        runs = self.descendant_runs(run_id)
        seen, link = set(runs), self.run_link(run_id)
        while link is not None and link["kind"] == "fork" and link["parent_run_id"] not in seen:
            runs.append(link["parent_run_id"])
            seen.add(link["parent_run_id"])
            link = self.run_link(link["parent_run_id"])
        rows = self.read(
            f"SELECT extra FROM journal WHERE run_id IN ({', '.join('?' * len(runs))}) AND instr(extra, ?) > 0 "
            "ORDER BY ended_at",
            (*runs, f'"{LLM_ENDPOINTS}"'),
        )
        found: dict[str, str] = {}
        for (text,) in rows:
            try:
                extra = json.loads(text)
            except ValueError:  # cut short by a processor: it names no endpoint we can read
                continue
            endpoints = extra.get(LLM_ENDPOINTS) if isinstance(extra, dict) else None
            if isinstance(endpoints, dict):
                found.update((str(model), str(url)) for model, url in endpoints.items())
        return found

    # ---- the step cache ----------------------------------------------------------------------

    def cache_get(self, workflow: str, step: str, code: str, now: float) -> list[tuple[str, str, str]]:
        """The live cache entries of a step's code, as (reads, key, updates)."""
        rows = self.read(
            "SELECT reads, key, updates FROM step_cache WHERE workflow=? AND step=? AND code=? "
            "AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC",
            (workflow, step, code, now),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def cache_put(
        self,
        workflow: str,
        step: str,
        code: str,
        reads: str,
        key: str,
        updates: str,
        ttl: float | None,
        run_id: str,
    ) -> None:
        """Store a step's result for reuse. Handed to the writer and not waited for: a run on the
        event loop never waits for the disk, and an entry lost to a crash is only a later miss."""
        now = time.time()
        # The boundary: a cached result is stored data like a checkpoint (the key is a hash).
        values = (
            workflow,
            step,
            code,
            reads,
            key,
            redact_text(updates),
            now,
            None if ttl is None else now + ttl,
            run_id,
        )

        def put(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO step_cache (workflow, step, code, reads, key, updates, created_at, "
                "expires_at, source_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

        self.writer.submit(put).add_done_callback(_log_failed_write)

    def cache_clear(self, *, workflow: str | None = None, step: str | None = None, expired_only: bool = False) -> int:
        """Drop cache entries (all, a workflow's, a step's, or only the expired ones); returns how many."""
        sql, params = "DELETE FROM step_cache WHERE 1=1", list[Any]()
        if workflow is not None:
            sql += " AND workflow=?"
            params.append(workflow)
        if step is not None:
            sql += " AND step=?"
            params.append(step)
        if expired_only:
            sql += " AND expires_at IS NOT NULL AND expires_at <= ?"
            params.append(time.time())

        def clear(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, params).rowcount

        cleared: int = self.do(clear)
        return cleared

    def cache_steps(self) -> dict[tuple[str, str], int]:
        """How many cache entries each (workflow, step) holds, expired ones included."""
        rows = self.read("SELECT workflow, step, COUNT(*) FROM step_cache GROUP BY workflow, step ORDER BY 1, 2")
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def events(self, run_id: str | None = None) -> list[StepEvent]:
        if run_id is not None:
            return [event_from_row(self.path, r) for r in self.journal_rows(run_id)]
        rows = self.read(JOURNAL_SELECT + " ORDER BY started_at, run_id, seq")
        return [event_from_row(self.path, r) for r in verify_rows(self.path, None, rows)]

    def attempts_so_far(self, run_id: str) -> dict[tuple[str, int] | tuple[str, int, int], int]:
        """The last attempt number of each step visit of a run, and of each map item, keyed
        (step, visit, map_index): an item counts its own attempts, so an item that never ran is
        attempt 1 on resume, whatever its siblings made."""
        rows = self.read(
            "SELECT step, visit, map_index, MAX(attempt) FROM journal WHERE run_id=? GROUP BY step, visit, map_index",
            (run_id,),
        )
        return {
            (step, visit) if index is None else (step, visit, index): attempt for step, visit, index, attempt in rows
        }

    # ---- attempts in flight ----------------------------------------------------------------------

    def attempt_facts(self, run_id: str) -> dict[tuple[str, int], AttemptFacts]:
        """Per step visit of a run: its last attempt's row and whether a later attempt started.
        Resume reads what a crash cut off from these (see :class:`AttemptFacts`)."""
        rows = self.read(
            # A map's items count apart (item_crashes; the attempt runner numbers them per item).
            "SELECT j.step, j.visit, j.attempt, j.status, j.ended_at, j.retry_delay_s, "
            "(SELECT COUNT(*) FROM journal c WHERE c.run_id = j.run_id AND c.step = j.step "
            "AND c.visit = j.visit AND c.error_type = ? AND c.map_index IS NULL), "
            "(SELECT COUNT(*) FROM journal c WHERE c.run_id = j.run_id AND c.step = j.step "
            "AND c.visit = j.visit AND c.error_type = ? AND c.map_index IS NULL AND instr(c.extra, ?) > 0) "
            "FROM journal j WHERE j.run_id = ? AND j.attempt > 0 AND j.map_index IS NULL AND j.seq = "
            "(SELECT MAX(seq) FROM journal k WHERE k.run_id = j.run_id AND k.step = j.step AND k.visit = j.visit "
            "AND k.attempt > 0 AND k.map_index IS NULL)",
            (ProcessCrashedError.__name__, ProcessCrashedError.__name__, CRASHED_IN_CHILD_TEXT, run_id),
        )
        facts = {(r[0], r[1]): AttemptFacts(r[2], r[3], r[4], r[5], None, None, r[6], r[7]) for r in rows}
        for step, visit, attempt, started_at in self.read(
            "SELECT step, visit, attempt, started_at FROM attempts WHERE run_id=?", (run_id,)
        ):
            last = facts.get((step, visit))
            if last is None or attempt > last.attempt:  # older ones settled: their row is the last
                base = last or AttemptFacts(0, None, None, None, None, None, 0, 0)
                facts[(step, visit)] = base._replace(started_attempt=attempt, started_at=started_at)
        return facts

    def item_crashes(self, run_id: str, step: str, visit: int) -> dict[int, int]:
        """Per map item of a step visit, the crashes its attempts recorded (resume counts them)."""
        rows = self.read(
            "SELECT map_index, COUNT(*) FROM journal WHERE run_id=? AND step=? AND visit=? "
            "AND map_index IS NOT NULL AND error_type=? GROUP BY map_index",
            (run_id, step, visit, ProcessCrashedError.__name__),
        )
        return {int(index): int(count) for index, count in rows}

    def last_settled_at(self, run_id: str) -> float | None:
        """When the run's last journal row ended (a cut-off attempt started about then)."""
        rows = self.read("SELECT MAX(ended_at) FROM journal WHERE run_id=?", (run_id,))
        return rows[0][0] if rows else None

    @staticmethod
    def attempt_op(run_id: str, step: str, visit: int, attempt: int, *, started_at: float) -> WriteOp[None]:
        """A retry's attempt starts after its backoff (a first attempt needs no record: see above)."""

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO attempts (run_id, step, visit, attempt, started_at) VALUES (?, ?, ?, ?, ?)",
                (run_id, step, visit, attempt, started_at),
            )

        return record

    @staticmethod
    def durable_wait_row(wait: float, run_id: str, seq: int) -> tuple[str, tuple[Any, ...]]:
        """Fill in ``durable_wait_s`` of a checkpoint row once its wait is known (a row for the
        writer's bulk update; it rides in the run's next write). ``seq``: the row's, which the
        writer resolved the checkpoint's write to."""
        return ("wait", (wait, run_id, seq))

    # ---- intents --------------------------------------------------------------------------------

    @staticmethod
    def intent_op(run_id: str, step: str, visit: int, key: str) -> WriteOp[None]:
        """An irreversible step is about to run: its intent."""

        def intent(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute(
                "INSERT INTO intents (run_id, step, visit, key, status, created_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT (run_id, step, visit) "
                "DO UPDATE SET status='pending'",
                (run_id, step, visit, key, now),
            )

        return intent

    def intent(self, run_id: str, step: str, visit: int, key: str) -> None:
        self.do(self.intent_op(run_id, step, visit, key))

    def intents(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.read(
            "SELECT step, visit, key, status, created_at, resolved_by FROM intents WHERE run_id=? ORDER BY created_at",
            (run_id,),
        )
        keys = ("step", "visit", "key", "status", "created_at", "resolved_by")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def _pending_count(self, run: Mapping[str, Any]) -> int:
        """The pending intents of a stored run and its sub-workflows, for ``effective_status``: only
        a run stored as waiting for a reconciliation asks (for any other, the count is not read)."""
        return len(self.pending_intents(run["run_id"])) if run["status"] == RunStatus.NEEDS_RECONCILIATION else 0

    def pending_intents(self, run_id: str) -> list[dict[str, Any]]:
        """The irreversible steps waiting for a reconciliation in a run and in its sub-workflow
        runs, at any depth (a child's halts its parent): ``run_id``, ``step``, ``visit``, ``key``."""
        rows = self.read(
            "WITH RECURSIVE tree(run_id) AS (VALUES (?) UNION "
            "SELECT l.run_id FROM run_links l JOIN tree t ON l.parent_run_id = t.run_id WHERE l.kind = 'child') "
            "SELECT i.run_id, i.step, i.visit, i.key FROM intents i JOIN tree USING (run_id) "
            "WHERE i.status = 'pending' ORDER BY i.created_at",
            (run_id,),
        )
        keys = ("run_id", "step", "visit", "key")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def intent_cut_off(self, run_id: str, step: str, visit: int) -> IntentCut | None:
        """What a crash left of an irreversible step visit whose intent is pending (None when its
        intent is not), in one read of the intent and the visit's rows: the attempt it cut off
        after its intent, and about when that started; attempt 0 when a row journals that attempt
        already; or, ``waits_to_retry``, no attempt cut off (see :func:`_waits_to_retry`).
        Whoever meets the cut-off attempt first journals it as crashed
        (:meth:`crashed_intent_attempt`): the resume that finds the intent pending, or the
        reconciliation (:meth:`settle_intent`), in either order, once."""
        return _intent_cut_off(self.conn, run_id, step, visit)

    def crashed_intent_attempt(self, base: StepEvent, attempt: int, started_at: float) -> StepEvent:
        """The row of attempt ``attempt`` of an irreversible step that a crash cut off in its body
        (:meth:`intent_cut_off`), on ``base``'s columns (its run, step and visit, and those that
        say which run's rows it belongs with), whoever journals it: of unknown kind and latency,
        with no backoff, as any crashed attempt: a ``retry`` row, as the step's next row is another
        attempt (or the reconciliation that says the side effect happened), never the run's end.
        But it is not retried by itself: whether its side effect happened is for a person to say,
        and its error says how, its command naming this workspace unless it is the default one
        (it is copied into a shell anywhere)."""
        run_id, step, visit = base.run_id, base.step, base.visit
        error = ProcessCrashedError(
            f"the process died during attempt {attempt} of irreversible step {step!r} (visit {visit}), "
            f"after its intent was recorded: whether its side effect happened is unknown; check, then "
            f"`wfkit reconcile {run_id} {step}{self.workspace_option()} --done|--retry --by NAME`"
        )
        return base._replace(
            attempt=attempt,
            status=Status.RETRY,
            error_kind=ErrorKind.UNKNOWN.value,
            error_type=type(error).__name__,
            error_message=str(error),
            started_at=started_at,
            ended_at=math.nan,
            latency_s=math.nan,
            retry_delay_s=0.0,
            extra=dict(UNTIMED),
        )

    def settle_intent(self, event: StepEvent, updates: str | None, *, status: str, by: str) -> None:
        """A person's verdict on an interrupted irreversible step; with updates it counts as done.
        The attempt the crash cut off is journaled first, unless a resume did already: a
        reconciliation made before any resume leaves that resume nothing pending to find it by."""
        outcome = None if updates is None else "ok"
        key = (status, by, event.run_id, event.step, event.visit)

        def settle(conn: sqlite3.Connection) -> None:
            # In the same transaction as the verdict: a run some process executes (this one
            # included) may be in that step's body right now, which no one can say has ended.
            lease = conn.execute(f"SELECT {', '.join(_LEASE)} FROM runs WHERE run_id=?", (event.run_id,)).fetchone()
            holder = None if lease is None else _lease_holder(dict(zip(_LEASE, lease, strict=True)), time.time())
            if holder is not None:
                raise LeaseError(
                    f"it is running in {holder}: its irreversible step {event.step!r} may be running "
                    f"right now, and only once it has stopped can anyone say whether its side effect "
                    f"happened: wait for it to finish, or stop that process first, then reconcile",
                    run_id=event.run_id,
                )
            self._next_seqs.pop(event.run_id, None)  # a row not written by the bulk insert
            cut = _intent_cut_off(conn, event.run_id, event.step, event.visit)
            if cut is not None and cut.attempt:
                crashed = self.crashed_intent_attempt(event, cut.attempt, cut.started_at)
                conn.execute(JOURNAL_INSERT, event_row(with_run_columns(conn, crashed)))
            conn.execute(JOURNAL_INSERT, event_row(with_run_columns(conn, event), outcome, updates))
            conn.execute("UPDATE intents SET status=?, resolved_by=? WHERE run_id=? AND step=? AND visit=?", key)

        self.do(settle)

    def intent_end_op(self, run_id: str, step: str, visit: int, status: str, by: str | None = None) -> WriteOp[None]:
        def end(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE intents SET status=?, resolved_by=? WHERE run_id=? AND step=? AND visit=?",
                (status, by, run_id, step, visit),
            )

        return end

    # ---- runs, read side ----------------------------------------------------------------------

    def run_row(self, run_id: str) -> dict[str, Any]:
        conn = self.conn
        try:
            cur = conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
            row = cur.fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(f"the run store {self.path} is damaged: {exc}; {_FIX}") from exc
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.path}; `wfkit runs` lists the runs there")
        run = dict(zip([d[0] for d in cur.description], row, strict=True))
        verify_run(self.path, run)
        run["status"] = effective_status(run, pending_intents=self._pending_count(run))
        return run

    def run_ids_from(self, prefix: str, *, limit: int = 10) -> list[tuple[str, str, str, float]]:
        """The runs whose id starts with ``prefix`` (id, workflow, stored status, created at), newest
        first, at most ``limit``: what a command given part of a run id may mean."""
        sql = (
            "SELECT run_id, workflow, status, created_at FROM runs WHERE substr(run_id, 1, ?) = ? "
            "ORDER BY created_at DESC LIMIT ?"
        )
        try:
            return [tuple(row) for row in self.conn.execute(sql, (len(prefix), prefix, limit))]
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(f"the run store {self.path} is damaged: {exc}; {_FIX}") from exc

    def run_ids_ending(self, suffix: str, *, limit: int = 10) -> list[tuple[str, str, str, float]]:
        """The runs whose id ends with ``suffix``, as :meth:`run_ids_from` gives those it starts: a
        run id begins with the time it was made, so runs of one session share their first characters
        and differ in their last."""
        sql = (
            "SELECT run_id, workflow, status, created_at FROM runs WHERE substr(run_id, -?) = ? "
            "ORDER BY created_at DESC LIMIT ?"
        )
        try:
            return [tuple(row) for row in self.conn.execute(sql, (len(suffix), suffix, limit))]
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(f"the run store {self.path} is damaged: {exc}; {_FIX}") from exc

    def run_rows(self, *, limit: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, with the status they truly have (``interrupted`` when the process
        running them is gone). ``status`` filters; an unknown one is a ValueError listing the valid."""
        if status is not None and status not in RunStatus.ALL:
            raise ValueError(f"unknown run status {status!r}; the statuses are: {', '.join(RunStatus.ALL)}")
        sql = (
            "SELECT r.run_id, r.workflow, r.status, r.created_at, r.updated_at, r.ended_at, "
            "(SELECT COUNT(*) FROM journal j WHERE j.run_id = r.run_id AND j.outcome = 'ok'), "
            "r.error_type, r.error, r.lease_owner, r.lease_host, r.lease_pid, r.lease_expires FROM runs r"
        )
        params: list[Any] = []
        if status is not None:
            # interrupted runs are stored as running (or as needing a reconciliation that happened)
            stored = {
                RunStatus.INTERRUPTED: (RunStatus.RUNNING, RunStatus.NEEDS_RECONCILIATION),
                RunStatus.RUNNING: (RunStatus.RUNNING,),
                RunStatus.NEEDS_RECONCILIATION: (RunStatus.NEEDS_RECONCILIATION,),
            }.get(status, (status,))
            sql += f" WHERE r.status IN ({', '.join('?' for _ in stored)})"
            params.extend(stored)
        sql += " ORDER BY r.created_at DESC"
        derived = status in (RunStatus.INTERRUPTED, RunStatus.RUNNING, RunStatus.NEEDS_RECONCILIATION)
        if limit is not None and not derived:
            sql += " LIMIT ?"
            params.append(limit)
        keys = (
            "run_id",
            "workflow",
            "status",
            "started",
            "updated",
            "ended",
            "steps_done",
            "error_type",
            "error",
        )
        out = []
        for r in self.read(sql, params):
            row = dict(zip(keys, r[: len(keys)], strict=True))
            facts = dict(zip(_LEASE, r[len(keys) :], strict=True))
            row["status"] = effective_status({**row, **facts}, pending_intents=self._pending_count(row))
            if status is None or row["status"] == status:
                out.append(row)
        return out if limit is None else out[:limit]


_LEASE = ("lease_owner", "lease_host", "lease_pid", "lease_expires")


def _lease_holder(run: Mapping[str, Any], now: float) -> str | None:
    """Which process executes a stored run now (``process PID on HOST (lease until HH:MM:SS)``),
    from its lease columns: one holds a lease not yet expired, unless it is a process of this host
    that is gone; None when none does (never leased, released, expired, or its process died). The
    one rule for whether a run is running (``effective_status``), may be taken over (``acquire``)
    or reconciled (``settle_intent``).

    The expiry decides, on this host too; the pid only says sooner that a holder is gone. A live
    holder never lets its lease expire: its lease keeper renews it every third of the TTL while
    the run runs, however long a step takes (``_keeper``). A live pid does not keep an expired
    lease held: after a crash that pid may be another process's (pids are reused), which would
    then hold the run until it ended, for ever for a long-lived one (a kernel, a server), and no
    resume could take it over. So a reused pid holds a dead process's run until its lease expires
    (at most the TTL), no longer."""
    owner, host, pid, expires = run["lease_owner"], run["lease_host"], run["lease_pid"], run["lease_expires"]
    if owner is None or expires is None or expires <= now:
        return None
    if host == _HOST and pid is not None and not pid_alive(pid):
        return None
    return f"process {pid} on {host} (lease until {time.strftime('%H:%M:%S', time.localtime(expires))})"


class IntentCut(NamedTuple):
    """What a crash left of an irreversible step visit whose intent is pending
    (:meth:`Store.intent_cut_off`): the attempt it cut off in its body and about when that
    started; attempt and start 0 when that attempt is journaled already, or, with
    ``waits_to_retry``, when there is none (the step waited out the backoff of a retry of a
    refused call)."""

    attempt: int
    started_at: float
    waits_to_retry: bool = False


_WAITS_TO_RETRY = IntentCut(0, 0.0, True)
_JOURNALED = IntentCut(0, 0.0)
_VISIT_ROWS = "FROM journal WHERE run_id=? AND step=? AND visit=? AND map_index IS NULL"


def _last_of_visit(conn: sqlite3.Connection, run_id: str, step: str, visit: int) -> tuple[Any, ...] | None:
    """The last row of a step visit (not of its map items): ``(attempt, status, error_kind, error_type)``."""
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT attempt, status, error_kind, error_type {_VISIT_ROWS} ORDER BY seq DESC LIMIT 1",
        (run_id, step, visit),
    ).fetchone()
    return row


def _waits_to_retry(conn: sqlite3.Connection, run_id: str, step: str, visit: int, last: tuple[Any, ...] | None) -> bool:
    """Whether an irreversible step visit was stopped while it waited out the backoff of a
    retry of a transient error (``last``: the visit's :func:`_last_of_visit`): its last attempt
    ended (its row is the visit's last) and no later one started. Its intent stays pending, but
    no body was cut off, and a transient error is one the call was refused with (a 429, a 503, a
    refused connection): no side effect happened, so resume retries it per the step's policy, as
    the process would have. A retry after an error of unknown kind, or a timeout (a timed-out
    sync body may still have been running in its thread), is not this: its side effect may have
    happened, a person says. The failed attempt's row is durable before its backoff begins, and
    a later attempt's start (``attempts``) before its body runs: with that row last and no later
    start, no body was running when the process died."""
    if last is None or last[0] < 1 or (last[1], last[2]) != (Status.RETRY, ErrorKind.TRANSIENT.value):
        return False
    later = conn.execute(
        "SELECT 1 FROM attempts WHERE run_id=? AND step=? AND visit=? AND attempt > ?", (run_id, step, visit, last[0])
    ).fetchone()
    return later is None


def _intent_cut_off(conn: sqlite3.Connection, run_id: str, step: str, visit: int) -> IntentCut | None:
    """See :meth:`Store.intent_cut_off`. While its intent is pending the step never runs again (a
    person must say first), so a crashed attempt as the visit's last row is the one this intent's
    crash cut off; any other last row (none, a failed attempt that was being retried, the
    reconciliation of an earlier crash that said run it again) came before it. The attempt
    started after the intent was recorded and after the run's last row ended."""
    intent = conn.execute(
        "SELECT created_at FROM intents WHERE run_id=? AND step=? AND visit=? AND status='pending'",
        (run_id, step, visit),
    ).fetchone()
    if intent is None:
        return None
    last = _last_of_visit(conn, run_id, step, visit)
    if _waits_to_retry(conn, run_id, step, visit, last):
        return _WAITS_TO_RETRY
    if last is not None and last[3] == ProcessCrashedError.__name__:
        return _JOURNALED
    attempt, settled = conn.execute(
        f"SELECT (SELECT MAX(attempt) {_VISIT_ROWS}), (SELECT MAX(ended_at) FROM journal WHERE run_id=?)",
        (run_id, step, visit, run_id),
    ).fetchone()
    return IntentCut((attempt or 0) + 1, max(intent[0], settled or 0.0))


# Columns a new run's row sets (the rest keep their defaults).
_RUN_COLUMNS = (
    "run_id",
    "workflow",
    "workflow_version",
    "fingerprint",
    "definition",
    "workflow_ref",
    "status",
    "inputs",
    "seed",
    "timeout",
    "elapsed",
    "count_waiting",
    "parameters_hash",
    "created_at",
    "updated_at",
    "lease_owner",
    "lease_host",
    "lease_pid",
    "lease_expires",
    "checksum",
    "policy",
)
_RUN_COLUMN_SET = frozenset(_RUN_COLUMNS)
_RUN_VALUES = operator.itemgetter(*_RUN_COLUMNS)
_RUN_LEASE_EXPIRES = _RUN_COLUMNS.index("lease_expires")  # a run's row, in C (every durable run builds one)


# The writer's bulk statements, one per kind of row, for ``execute_rows``: each is given its
# VALUES table, whose rows start with 1 (padding rows with 0, dropped), so ``v.column2`` is a
# row's first value.
def _bulk_runs(values: str) -> str:
    columns = ", ".join(f"v.column{i + 2}" for i in range(len(_RUN_COLUMNS)))
    return f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) SELECT {columns} FROM (VALUES {values}) v WHERE v.column1 = 1"


def _bulk_finish(values: str) -> str:
    return (
        "UPDATE runs SET status=v.column3, state=v.column4, error_type=v.column5, error=v.column6, "
        "elapsed=v.column7, updated_at=v.column8, ended_at=v.column9, lease_owner=NULL, lease_host=NULL, "
        f"lease_pid=NULL, lease_expires=NULL FROM (VALUES {values}) v WHERE v.column1 = 1 "
        "AND runs.run_id = v.column2 AND (runs.lease_owner IS NULL OR runs.lease_owner = v.column10)"
    )


_WAIT_NULLS = (False, False, False)  # a wait row's (seconds, run id, seq): none is NULL


def _bulk_waits(values: str) -> str:
    return (
        f"UPDATE journal SET durable_wait_s = v.column2 FROM (VALUES {values}) v WHERE v.column1 = 1 "
        "AND journal.run_id = v.column3 AND journal.seq = v.column4"
    )


def _bulk_exported(values: str) -> str:
    return (
        f"UPDATE runs SET exported_seq = MAX(exported_seq, v.column3) FROM (VALUES {values}) v "
        "WHERE v.column1 = 1 AND runs.run_id = v.column2"
    )


def _bulk_forget(values: str) -> str:
    return f"DELETE FROM attempts WHERE run_id IN (SELECT v.column2 FROM (VALUES {values}) v WHERE v.column1 = 1)"


def _journal_row(
    event: StepEvent, outcome: str | None, updates: str | None, failure: str | None
) -> tuple[str, tuple[Any, ...]]:
    """An event's journal row for the writer's bulk insert: as the event itself (kind ``event``),
    made into its row, redacted and checksummed, by whoever writes it (:func:`_bulk_write`).

    Why not made here: this runs on the event loop for every durable step, and the row costs some
    5 us (timed alone), while the loop's time is what every other run's recorded latency waits
    for. Measured on F1 (500 concurrent runs): 40 us more of loop work per durable step raised the
    durable P50 by 8 to 10 ms, 40 us more in the writer thread by 2.5 to 3.3 (the writer takes the
    interpreter in turns with the loop, and its time lands in the runs' durable waits). Everything
    in the event is immutable but ``extra`` (a dict): an event with one is made into its row here,
    before anyone can change it."""
    if event.extra is None:
        return ("event", (event, outcome, updates, failure))
    return ("journal", event_row(event, outcome, updates, failure))


def _runs_written(rows: Rows) -> Iterator[str]:
    """The runs whose rows these are, for the lease fence (a new run's own row needs none)."""
    for kind, values in rows:
        if kind == "event":  # (StepEvent, outcome, updates, failure)
            yield values[0][0]
        elif kind == "wait":  # (seconds, run id, seq)
            yield values[1]
        elif kind != "run":  # a journal row or a finish: the run id first
            yield values[0]


def _bulk_write(conn: sqlite3.Connection, rows: Rows, nexts: _NextSeqs | None = None) -> Sequence[int | None]:
    """The writer's bulk step: new runs, then journal rows, then durable waits, then runs that
    stopped, each kind in one statement per 512 rows and NULL pattern (every statement costs the
    writer the GIL). Returns, per row, the seq a journal row went to (None for other rows): the
    writer resolves a checkpoint's write to it, and the checkpoint's durable wait is written to
    that row later. ``nexts``: the next seq of runs whose journal this store wrote (see
    :class:`_NextSeqs`)."""
    if len(rows) == 1 and rows[0][0] == "event":  # a lone checkpoint (a sequential run's): one INSERT
        return insert_rows(conn, [event_row(*rows[0][1])], nexts)
    by_kind: dict[str, list[Sequence[Any]]] = {"run": [], "journal": [], "wait": [], "finish": []}
    journal = by_kind["journal"]
    said: list[int | None] = [None] * len(rows)
    at: list[int] = []  # where each journal row is among ``rows``
    for i, (kind, values) in enumerate(rows):
        if kind == "event":  # made into its journal row here, in its place among the others
            journal.append(event_row(*values))
            at.append(i)
        elif kind == "journal":
            journal.append(values)
            at.append(i)
        else:
            by_kind[kind].append(values)
    if by_kind["run"]:
        try:
            execute_rows(conn, _bulk_runs, by_kind["run"])
        except sqlite3.IntegrityError as exc:
            if len(by_kind["run"]) > 1:
                raise  # the writer runs each write alone next, and the one at fault says so
            raise ValueError(
                f"a run with id {by_kind['run'][0][0]!r} already exists; pass another run_id, or resume that run"
            ) from exc
        if nexts is not None:
            nexts.start([r[0] for r in by_kind["run"]])
    if journal:
        for i, seq in zip(at, insert_rows(conn, journal, nexts), strict=True):
            said[i] = seq
    if by_kind["wait"]:
        # Every durable step's wait comes here: one NULL pattern (seconds, run id, seq), so its
        # parameters are laid out directly, not through execute_rows' lookup of a shape per row
        # (74 ns a row instead of 529, in the writer or, at NORMAL, on the loop).
        params: list[Any] = []
        for wait, run_id, seq in by_kind["wait"]:
            params += (1, wait, run_id, seq)
        execute_padded(conn, _bulk_waits, _WAIT_NULLS, params)
    if by_kind["finish"]:
        execute_rows(conn, _bulk_finish, by_kind["finish"])
        # Attempt records of stopped runs (only retried steps have them): none is in flight now.
        execute_rows(conn, _bulk_forget, [(r[0],) for r in by_kind["finish"]])
        if nexts is not None:
            for finish in by_kind["finish"]:  # its last waits came with it
                nexts.pop(finish[0], None)
    if nexts is not None:
        nexts.bound()
    return said


class _NextSeqs(dict[str, int]):
    """The next seq of each run whose journal this store wrote or read: handed to ``insert_rows``,
    so a lone checkpoint (a sequential run's) is one INSERT, and a group commit reads no seqs,
    instead of a statement more each (every statement costs the writer the GIL).

    They are dropped (``clear``) whenever they may no longer match the file: the writer calls it
    after a rollback and after a write function ran (it may have written journal rows itself).
    A seq known wrongly can only be behind (rows are never deleted but by ``drop_all_rows``,
    which forgets them too): another process wrote the run's rows, and the journal's primary key
    refuses the insert rather than leave a hole; the writer rolls back, forgets, and writes again.
    """

    _RUNS = 4096  # runs remembered at once (the oldest is forgotten first; a run that stopped at once)

    def start(self, run_ids: Sequence[str]) -> None:
        """Runs just created: their journals are empty."""
        for run_id in run_ids:
            self[run_id] = 1

    def bound(self) -> None:
        """Forget the oldest runs past ``_RUNS`` (runs resumed here are read again if they go on)."""
        while len(self) > self._RUNS:
            del self[next(iter(self))]


class AttemptFacts(NamedTuple):
    """What the store knows of a step visit's attempts: its last journal row (attempt, status,
    end, and the backoff before the next one if it was retried), a later attempt that started
    (``started_attempt`` at ``started_at``, from ``attempts``), how many crashes were recorded
    for it already, and how many of those came while its sub-workflow's child run ran
    (``child_crashes``: the child's step counted them)."""

    attempt: int
    status: str | None
    ended_at: float | None
    retry_delay_s: float | None
    started_attempt: int | None
    started_at: float | None
    crashes: int
    child_crashes: int


# Rebuilding a clustered journal copies some 100,000 rows in 1.5 s: from this many rows the wait
# is long enough to be announced at WARNING before it starts, not only reported at INFO after.
_ANNOUNCED_REBUILD_ROWS = 100_000
_REBUILD_SECONDS_PER_ROW = 1.5e-5


def _clustered_journal(conn: sqlite3.Connection) -> bool:
    """Whether the journal is the table clustered by (run_id, seq) of stores an earlier wfkit made."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'journal'").fetchone()
    return row is not None and _WITHOUT_ROWID.search(row[0]) is not None


_WITHOUT_ROWID = re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.IGNORECASE)


def _append_journal(conn: sqlite3.Connection) -> None:
    """Rebuild a clustered journal as the rowid table new stores have (see ``_JOURNAL_TABLE``), in the
    caller's transaction: every row is copied as it is (its checksum with it), in key order, so a run's
    old rows stay together. The layout is all that changes: an earlier wfkit reads and writes the
    rebuilt table as it did its own."""
    columns = ", ".join(r[1] for r in conn.execute("PRAGMA table_info(journal)"))
    conn.execute("ALTER TABLE journal RENAME TO journal_clustered")
    conn.execute(_JOURNAL_TABLE)
    conn.execute(f"INSERT INTO journal ({columns}) SELECT {columns} FROM journal_clustered ORDER BY run_id, seq")
    conn.execute("DROP TABLE journal_clustered")


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
