"""Rows of the journal: how a step event (and a checkpoint's updates) is written to SQLite and
read back, and how state is encoded as JSON with an error that names the step and the field."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from wfkit.model._errors import StateValueError
from wfkit.model._events import FIELDS, StepEvent

# One table is both the journal (a row per attempt) and the checkpoint log: the final event of a
# settled step carries its outcome and the updates it returned. Clustered by (run_id, seq), one
# B-tree takes each commit, which keeps a durable step near a bare SQLite commit.
JOURNAL_INSERT = (
    f"INSERT INTO journal (seq, {', '.join(FIELDS)}, outcome, updates, failure) VALUES ("
    f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM journal WHERE run_id = ?), "
    f"{', '.join('?' for _ in FIELDS)}, ?, ?, ?)"
)
_COLUMNS = (*FIELDS, "outcome", "updates", "failure")
# Rows per statement when many are written at once: one statement (one step of SQLite, so one
# release of the GIL by the writer thread, which must then win it back from a busy event loop)
# per chunk instead of per row. SQLite before 3.32 allows 999 bound values per statement, later
# ones 32766; a few fixed sizes keep the statements in the connection's cache.
CHUNKS = (512, 64, 8, 1) if sqlite3.sqlite_version_info >= (3, 32) else (32, 4, 1)


def _bulk_insert(rows: int) -> str:
    """INSERT of ``rows`` journal rows in one statement. Each row's seq continues its run's
    journal; rows of one run in the same statement take consecutive seqs in the order given (the
    last value of a row is its position). SQLite evaluates the SELECT before inserting, so the
    MAX(seq) it reads never includes rows of this statement."""
    width = len(_COLUMNS)
    marks = "(" + ", ".join("?" for _ in range(width + 1)) + ")"
    columns = ", ".join(f"v.column{i + 1}" for i in range(width))
    return (
        f"INSERT INTO journal (seq, {', '.join(_COLUMNS)}) SELECT "
        f"COALESCE((SELECT MAX(k.seq) FROM journal k WHERE k.run_id = v.column1), 0) "
        f"+ ROW_NUMBER() OVER (PARTITION BY v.column1 ORDER BY v.column{width + 1}), {columns} "
        f"FROM (VALUES {', '.join(marks for _ in range(rows))}) v"
    )


_BULK = {size: _bulk_insert(size) for size in CHUNKS}


def insert_rows(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Write journal rows (as made by :func:`event_row`), in order, in a few statements."""
    at, total = 0, len(rows)
    while at < total:
        size = next(c for c in CHUNKS if c <= total - at)
        params = [value for n, row in enumerate(rows[at : at + size]) for value in (*row[1:], n)]
        conn.execute(_BULK[size], params)
        at += size


_TOOLS_AT = FIELDS.index("tools")
_EXTRA_AT = FIELDS.index("extra")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


def encode_updates(step: str, updates: Mapping[str, Any]) -> str:
    """JSON for a step's updates; a value JSON cannot hold is named with its step and field."""
    return encode_state(f"step {step!r} wrote", updates)


def encode_state(who: str, values: Mapping[str, Any]) -> str:
    try:
        return dumps(values)
    except (TypeError, ValueError):
        for key, value in values.items():
            try:
                dumps(value)
            except (TypeError, ValueError) as exc:
                raise StateValueError(
                    f"{who} state field {key!r} = {type(value).__name__}, which "
                    f"cannot be stored as JSON ({exc}); store plain data (str, int, float, bool, "
                    f"None, lists and dicts of them), e.g. an ISO string for a datetime"
                ) from exc
        raise


def event_row(
    event: StepEvent, outcome: str | None = None, updates: str | None = None, failure: str | None = None
) -> tuple[Any, ...]:
    row: list[Any] = [event.run_id, *event, outcome, updates, failure]
    tools = event.tools
    row[_TOOLS_AT + 1] = None if tools is None else dumps(list(tools))
    extra = event.extra
    row[_EXTRA_AT + 1] = None if extra is None else json.dumps(extra, default=repr)
    return tuple(row)


def event_from_row(row: Sequence[Any]) -> StepEvent:
    values = list(row)
    if values[_TOOLS_AT] is not None:
        values[_TOOLS_AT] = tuple(json.loads(values[_TOOLS_AT]))
    if values[_EXTRA_AT] is not None:
        values[_EXTRA_AT] = json.loads(values[_EXTRA_AT])
    return StepEvent(*values)
