"""``wfkit doctor``, the store's half: everything that can be wrong with a workspace's SQLite file,
found in one pass and reported together, and what can be rebuilt without losing anything.

Checks: a write-ahead log lost after a crash (the ``-shm`` index still counts its frames),
SQLite's ``integrity_check``, the checksum of every run and journal row, JSON that does not parse,
and gaps in a run's journal. Repairs never delete: a damaged file is copied (or moved) aside under
a name that says so, and the rebuilt store is put in its place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from wfkit.model._errors import StoreCorruptError
from wfkit.store._codec import decode_state
from wfkit.store._journal import JOURNAL_SELECT, verify_rows, verify_run
from wfkit.store._store import Store, lost_wal_frames


@dataclass
class StoreReport:
    """What :func:`check_store` found (``problems``) and did (``repairs``); ``ok`` when nothing is wrong."""

    path: Path
    problems: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    runs: int = 0
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _aside(path: Path, label: str) -> Path:
    return path.with_name(f"{path.name}.{label}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_store(db: Path, *, repair: bool = False) -> StoreReport:
    """Check one workspace's store file; with ``repair``, rebuild what can be rebuilt."""
    report = StoreReport(db)
    lost = lost_wal_frames(db)
    if lost:
        report.problems.append(
            f"{db}-wal is missing or cut short: {lost} committed page(s) recorded in {db.name}-shm are gone "
            f"(recent runs lost). Put the -wal back to recover them"
        )
        if not repair:
            return report  # opening it now would make SQLite forget what the index remembers
        shm = Path(f"{db}-shm")
        target = _aside(shm, "stale")
        os.replace(shm, target)
        report.repairs.append(f"moved the stale index to {target.name} (the store opens with what {db.name} holds)")
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        try:
            verdict = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            verdict = [str(exc)]
    finally:
        conn.close()
    if verdict != ["ok"]:
        report.problems.append(f"SQLite's integrity check of {db} failed: {'; '.join(verdict[:5])}")
        if repair:
            _rebuild(db, report)
        return report
    store = Store(db, create=False)
    try:
        _check_rows(store, report)
    finally:
        store.close()
    return report


def _check_rows(store: Store, report: StoreReport) -> None:
    path = store.path
    runs = store.read("SELECT * FROM runs")
    columns = [d[0] for d in store.conn.execute("SELECT * FROM runs LIMIT 0").description]
    report.runs = len(runs)
    for values in runs:
        row = dict(zip(columns, values, strict=True))
        try:
            verify_run(path, row)
            for column in ("definition", "inputs", "state"):
                if row.get(column) is not None:
                    try:
                        decode_state(row[column])
                    except ValueError as exc:
                        raise StoreCorruptError(
                            f"run {row['run_id']}: column runs.{column} does not parse ({exc})"
                        ) from exc
        except StoreCorruptError as exc:
            report.problems.append(str(exc))
    for (run_id,) in store.read("SELECT DISTINCT run_id FROM journal"):
        rows = store.read(JOURNAL_SELECT + " WHERE run_id=? ORDER BY seq", (run_id,))
        report.rows += len(rows)
        try:
            checked = verify_rows(path, run_id, rows)
            for seq, *cols in checked:
                for name, text in (("updates", cols[-2]), ("failure", cols[-1])):
                    if text is not None:
                        try:
                            decode_state(text)
                        except ValueError as exc:
                            raise StoreCorruptError(
                                f"run {run_id}, journal row {seq}: column journal.{name} does not parse ({exc})"
                            ) from exc
        except StoreCorruptError as exc:
            report.problems.append(str(exc))


def _rebuild(db: Path, report: StoreReport) -> None:
    """Copy what SQLite can still read into a fresh file; keep the damaged original beside it."""
    fresh = db.with_name(f".{db.name}.rebuilt.tmp")
    fresh.unlink(missing_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("VACUUM INTO ?", (str(fresh),))
    except sqlite3.DatabaseError as exc:
        fresh.unlink(missing_ok=True)
        report.problems.append(
            f"could not rebuild {db} ({exc}); it is left as it is: restore the workspace from a backup"
        )
        return
    finally:
        conn.close()
    original = _aside(db, "damaged")
    shutil.copy2(db, original)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{original}{suffix}"))
    os.replace(fresh, db)
    with contextlib.suppress(OSError):
        fresh.unlink()
    report.repairs.append(f"rebuilt {db.name} from what could be read; the damaged original is {original.name}")
