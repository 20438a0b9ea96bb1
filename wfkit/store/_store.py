"""The run store: one SQLite file per workspace, in WAL mode, holding runs, the journal
of attempts (which doubles as the checkpoint log), intents of irreversible steps, and approval tickets.

Why these choices:
- WAL, ``BEGIN IMMEDIATE`` and a busy timeout let many processes write one workspace without
  "database is locked": writers queue for the lock instead of failing at commit.
- A checkpoint stores the *updates* a step returned (JSON), not the whole state: cost stays
  proportional to what changed, and resume rebuilds the state by replaying them in order.
- JSON, never pickle: a store may come from someone else's machine, and unpickling runs code.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wfkit.model._errors import LeaseError, StoreCorruptError, WorkspaceNotFoundError
from wfkit.model._events import FIELDS, StepEvent
from wfkit.model._processors import redact_optional, redact_text
from wfkit.model._status import RunStatus
from wfkit.store._codec import encode_state
from wfkit.store._journal import (
    COLUMNS,
    JOURNAL_INSERT,
    JOURNAL_SELECT,
    RUN_IDENTITY,
    event_from_row,
    event_row,
    run_checksum,
    verify_rows,
    verify_run,
)
from wfkit.store._tickets import TicketStore

SCHEMA_VERSION = 1
_FIX = "it is damaged or truncated. Move it aside (or restore a backup) and wfkit will create a new one"
_MAGIC = b"SQLite format 3\x00"
LEASE_TTL = 60.0
_HOST = socket.gethostname()

_SCHEMA = """
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
    checksum TEXT
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
CREATE TABLE IF NOT EXISTS journal (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, workflow TEXT NOT NULL, workflow_version TEXT NOT NULL,
    step TEXT NOT NULL, visit INTEGER NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
    error_kind TEXT, error_type TEXT, error_message TEXT,
    started_at REAL NOT NULL, ended_at REAL NOT NULL, latency_s REAL NOT NULL, queue_s REAL NOT NULL,
    retry_delay_s REAL, route_taken TEXT, tools TEXT, model TEXT, tokens_in INTEGER,
    tokens_out INTEGER, cost_usd REAL, approver TEXT, decision_comment TEXT, parameters_hash TEXT,
    host TEXT, extra TEXT,
    outcome TEXT, updates TEXT, failure TEXT, map_index INTEGER, parent_run_id TEXT, checksum TEXT,
    PRIMARY KEY (run_id, seq)
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
_JOURNAL_ADDED = (("map_index", "INTEGER"), ("parent_run_id", "TEXT"), ("checksum", "TEXT"))
# Rows written before checksums keep NULL there and are read unchecked (their JSON still is).
_RUNS_ADDED = (("checksum", "TEXT"),)


_AT = {name: i + 1 for i, name in enumerate(COLUMNS)}  # positions in (seq, *COLUMNS)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    """The status a stored run truly has: one stored as running whose lease holder is gone (its
    lease expired, or its process on this host died), or one waiting for a reconciliation that
    already happened, is ``interrupted``: nothing runs it, and resuming continues it."""
    status = str(run["status"])
    if status == RunStatus.RUNNING:
        owner, host, pid, expires = run["lease_owner"], run["lease_host"], run["lease_pid"], run["lease_expires"]
        if owner is None:
            return RunStatus.INTERRUPTED
        if host == _HOST and pid is not None:
            # Here we can ask the process itself (a long step may outlive the lease it renews).
            return RunStatus.RUNNING if _pid_alive(pid) else RunStatus.INTERRUPTED
        if (expires or 0) < time.time():
            return RunStatus.INTERRUPTED
    elif status == RunStatus.NEEDS_RECONCILIATION and pending_intents == 0:
        return RunStatus.INTERRUPTED
    return status


class Store(TicketStore):
    """Low-level access to one workspace's SQLite file. One connection per thread."""

    def __init__(self, path: Path, *, synchronous: str = "full", create: bool = True) -> None:
        if synchronous.lower() not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self.owner = f"{_HOST}:{os.getpid()}:{id(self):x}"
        self._upgraded = False
        self._check_file(create)
        self._connect()

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
        # close those of threads that have ended (an export timer's, say).
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
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
                self._upgrade(conn)
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

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Bring a store made by an earlier wfkit up to date: appended journal columns, new tables.
        Only additions, so an older wfkit still reads the file."""
        have = {r[1] for r in conn.execute("PRAGMA table_info(journal)")}
        have_runs = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        missing = [(name, kind) for name, kind in _JOURNAL_ADDED if name not in have]
        missing += [(name, kind) for name, kind in _RUNS_ADDED if name not in have_runs]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if missing or not {"run_links", "step_cache"} <= tables:
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
                    if "IF NOT EXISTS" in statement and ("run_links" in statement or "step_cache" in statement):
                        conn.execute(statement)
        self._upgraded = True

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

    @property
    def conn(self) -> sqlite3.Connection:
        return self._connect()

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
        at = [0 if c == "seq" else _AT[c] for c in columns]
        workflow_at = _AT["workflow"]
        return [(*(r[i] for i in at), r[workflow_at]) for r in rows]

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

    def mark_exported(self, run_id: str, last_seq: int) -> None:
        """Record that parquet holds the run's journal rows up to ``last_seq`` (never moves back)."""
        with self.write() as conn:
            conn.execute("UPDATE runs SET exported_seq = MAX(exported_seq, ?) WHERE run_id = ?", (last_seq, run_id))

    def runs_with_unexported_rows(self) -> list[tuple[str, bool]]:
        """Each run whose journal holds rows parquet lacks, and whether a live process executes it
        now (its lease is valid and, on this host, its process is alive)."""
        rows = self.read(
            "SELECT r.run_id, r.lease_owner, r.lease_host, r.lease_pid, r.lease_expires FROM runs r WHERE EXISTS "
            "(SELECT 1 FROM journal j WHERE j.run_id = r.run_id AND j.seq > r.exported_seq)"
        )
        now = time.time()
        out = []
        for run_id, owner, host, pid, expires in rows:
            executing = (
                owner is not None and (expires or 0) > now and not (host == _HOST and pid and not _pid_alive(pid))
            )
            out.append((run_id, bool(executing)))
        return out

    def close(self) -> None:
        """Close this thread's connection and those of threads that have ended. A live thread's
        connection is left to it: closing it under a running transaction would crash SQLite."""
        me = threading.current_thread()
        with self._conns_lock:
            closing = [(t, c) for t, c in self._conns if t is me or not t.is_alive()]
            self._conns = [(t, c) for t, c in self._conns if not (t is me or not t.is_alive())]
        for _, conn in closing:
            conn.close()
        self._local.conn = None

    # ---- runs and leases -----------------------------------------------------------------------

    def create_run(self, row: Mapping[str, Any]) -> None:
        now = time.time()
        values = {
            **row,
            # Every column the checksum covers has its stored value (the table's defaults included).
            **{column: row.get(column) for column in RUN_IDENTITY},
            "count_waiting": row.get("count_waiting", 0),
            # The boundary: inputs are text a secret can reach like any other.
            "inputs": redact_text(row["inputs"]),
            "created_at": now,
            "updated_at": now,
            "status": "running",
            "lease_owner": self.owner,
            "lease_host": _HOST,
            "lease_pid": os.getpid(),
            "lease_expires": now + LEASE_TTL,
        }
        values["checksum"] = run_checksum(values)
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.write() as conn:
            try:
                conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(values.values()))
            except sqlite3.IntegrityError as exc:
                raise ValueError(
                    f"a run with id {row['run_id']!r} already exists in {self.path}; pass another "
                    f"run_id, or resume that run"
                ) from exc

    def acquire(self, run_id: str) -> dict[str, Any]:
        """Take the run's lease for this process; refuse if a live process holds it."""
        now = time.time()
        with self.write() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run {run_id!r} in {self.path}; `wfkit runs` lists the runs there")
            columns = [d[0] for d in conn.execute("SELECT * FROM runs LIMIT 0").description]
            run = dict(zip(columns, row, strict=True))
            verify_run(self.path, run)
            owner, host, pid = run["lease_owner"], run["lease_host"], run["lease_pid"]
            expires = run["lease_expires"]
            if owner is not None and owner != self.owner and expires is not None and expires > now:
                stale = host == _HOST and pid is not None and not _pid_alive(pid)
                if not stale:
                    raise LeaseError(
                        f"run {run_id} is being executed by process {pid} on {host} (lease until "
                        f"{time.strftime('%H:%M:%S', time.localtime(expires))}); only one process "
                        f"may execute a run: wait for it to finish, or stop that process",
                        run_id=run_id,
                    )
            conn.execute(
                "UPDATE runs SET lease_owner=?, lease_host=?, lease_pid=?, lease_expires=? WHERE run_id=?",
                (self.owner, _HOST, os.getpid(), now + LEASE_TTL, run_id),
            )
        return run

    def mark_running(self, run_id: str) -> None:
        with self.write() as conn:
            conn.execute("UPDATE runs SET status='running', updated_at=? WHERE run_id=?", (time.time(), run_id))

    def release(self, run_id: str) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE runs SET lease_owner=NULL, lease_host=NULL, lease_pid=NULL, lease_expires=NULL "
                "WHERE run_id=? AND lease_owner=?",
                (run_id, self.owner),
            )

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
        now = time.time()
        try:
            state_json: str | None = redact_text(encode_state("the run's final", state))
        except ValueError:  # a merge function built a value state cannot keep: the checkpoints still hold it
            state_json = None
        error_text = redact_optional(None if error is None else str(error))
        with self.write() as conn:
            conn.execute(
                "UPDATE runs SET status=?, state=?, error_type=?, error=?, elapsed=?, updated_at=?, "
                "ended_at=?, lease_owner=NULL, lease_host=NULL, lease_pid=NULL, lease_expires=NULL "
                "WHERE run_id=? AND (lease_owner IS NULL OR lease_owner=?)",
                (
                    status,
                    state_json,
                    None if error is None else type(error).__name__,
                    error_text,
                    elapsed,
                    now,
                    now if ended else None,
                    run_id,
                    self.owner,
                ),
            )

    # ---- checkpoints and journal ---------------------------------------------------------------

    def checkpoint(
        self,
        event: StepEvent,
        outcome: str,
        updates: str | None,
        failure: str | None,
        *,
        lease_due: bool,
        intent_status: str | None = None,
    ) -> None:
        """One transaction per settled step: its final event carrying the outcome and updates."""
        with self.write() as conn:
            conn.execute(JOURNAL_INSERT, event_row(event, outcome, updates, failure))
            if intent_status is not None:  # only irreversible steps have intents
                conn.execute(
                    "UPDATE intents SET status=? WHERE run_id=? AND step=? AND visit=? AND status='pending'",
                    (intent_status, event.run_id, event.step, event.visit),
                )
            if lease_due:
                now = time.time()
                conn.execute(
                    "UPDATE runs SET lease_expires=?, updated_at=? WHERE run_id=?",
                    (now + LEASE_TTL, now, event.run_id),
                )

    def journal(self, events: Sequence[StepEvent]) -> None:
        with self.write() as conn:
            conn.executemany(JOURNAL_INSERT, [event_row(e) for e in events])

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

    def link_run(
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
    ) -> None:
        """Record that ``run_id`` was forked from (``kind="fork"``) or started as a sub-workflow
        by (``kind="child"``) ``parent_run_id``."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO run_links (run_id, parent_run_id, kind, at_step, at_seq, parent_step, "
                "parent_visit, detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    parent_run_id,
                    kind,
                    at_step,
                    at_seq,
                    parent_step,
                    parent_visit,
                    redact_optional(detail),
                    time.time(),
                ),
            )

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
        """The sub-workflow run a step's visit started, if it did."""
        rows = self.read(
            "SELECT run_id FROM run_links WHERE parent_run_id=? AND kind='child' AND parent_step=? AND parent_visit=?",
            (parent_run_id, step, visit),
        )
        return str(rows[0][0]) if rows else None

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
        now = time.time()
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO step_cache (workflow, step, code, reads, key, updates, created_at, "
                "expires_at, source_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                # The boundary: a cached result is stored data like a checkpoint (the key is a hash).
                (
                    workflow,
                    step,
                    code,
                    reads,
                    key,
                    redact_text(updates),
                    now,
                    None if ttl is None else now + ttl,
                    run_id,
                ),
            )

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
        with self.write() as conn:
            return conn.execute(sql, params).rowcount

    def events(self, run_id: str | None = None) -> list[StepEvent]:
        if run_id is not None:
            return [event_from_row(self.path, r) for r in self.journal_rows(run_id)]
        rows = self.read(JOURNAL_SELECT + " ORDER BY started_at, run_id, seq")
        return [event_from_row(self.path, r) for r in verify_rows(self.path, None, rows)]

    def attempts_so_far(self, run_id: str) -> dict[tuple[str, int], int]:
        rows = self.read("SELECT step, visit, MAX(attempt) FROM journal WHERE run_id=? GROUP BY step, visit", (run_id,))
        return {(r[0], r[1]): r[2] for r in rows}

    # ---- intents --------------------------------------------------------------------------------

    def intent(self, run_id: str, step: str, visit: int, key: str) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO intents (run_id, step, visit, key, status, created_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT (run_id, step, visit) "
                "DO UPDATE SET status='pending'",
                (run_id, step, visit, key, time.time()),
            )

    def intent_status(self, run_id: str, step: str, visit: int) -> str | None:
        rows = self.read("SELECT status FROM intents WHERE run_id=? AND step=? AND visit=?", (run_id, step, visit))
        return rows[0][0] if rows else None

    def intents(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.read(
            "SELECT step, visit, key, status, created_at, resolved_by FROM intents WHERE run_id=? ORDER BY created_at",
            (run_id,),
        )
        keys = ("step", "visit", "key", "status", "created_at", "resolved_by")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def settle_intent(self, event: StepEvent, updates: str | None, *, status: str, by: str) -> None:
        """A person's verdict on an interrupted irreversible step; with updates it counts as done."""
        with self.write() as conn:
            conn.execute(JOURNAL_INSERT, event_row(event, None if updates is None else "ok", updates))
            conn.execute(
                "UPDATE intents SET status=?, resolved_by=? WHERE run_id=? AND step=? AND visit=?",
                (status, by, event.run_id, event.step, event.visit),
            )

    def intent_end(self, run_id: str, step: str, visit: int, status: str, by: str | None = None) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE intents SET status=?, resolved_by=? WHERE run_id=? AND step=? AND visit=?",
                (status, by, run_id, step, visit),
            )

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
        pending = self.read("SELECT COUNT(*) FROM intents WHERE run_id=? AND status='pending'", (run_id,))[0][0]
        run["status"] = effective_status(run, pending_intents=pending)
        return run

    def run_rows(self, *, limit: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, with the status they truly have (``interrupted`` when the process
        running them is gone). ``status`` filters; an unknown one is a ValueError listing the valid."""
        if status is not None and status not in RunStatus.ALL:
            raise ValueError(f"unknown run status {status!r}; the statuses are: {', '.join(RunStatus.ALL)}")
        sql = (
            "SELECT r.run_id, r.workflow, r.status, r.created_at, r.updated_at, r.ended_at, "
            "(SELECT COUNT(*) FROM journal j WHERE j.run_id = r.run_id AND j.outcome = 'ok'), "
            "r.error_type, r.error, r.lease_owner, r.lease_host, r.lease_pid, r.lease_expires, "
            "(SELECT COUNT(*) FROM intents i WHERE i.run_id = r.run_id AND i.status = 'pending') FROM runs r"
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
        lease = ("lease_owner", "lease_host", "lease_pid", "lease_expires")
        out = []
        for r in self.read(sql, params):
            row = dict(zip(keys, r[: len(keys)], strict=True))
            facts = dict(zip(lease, r[len(keys) : len(keys) + 4], strict=True))
            row["status"] = effective_status({**row, **facts}, pending_intents=r[-1])
            if status is None or row["status"] == status:
                out.append(row)
        return out if limit is None else out[:limit]


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
