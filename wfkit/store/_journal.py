"""Rows of the journal: how a step event (and a checkpoint's updates) is written to SQLite and
read back, checked against its checksum, with every text column through the redaction boundary.

A row's checksum is four CRC-32s: the event's columns, then ``updates``, ``failure`` and
``extra`` on their own, so a mismatch names the column that changed. It is computed on the row
right before it is inserted and verified on every read; a mismatch, JSON that does not parse, or a
gap in a run's sequence numbers is a :class:`StoreCorruptError` naming the file, the run, the row
(its ``seq``) and the column.
"""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from wfkit.model._errors import SecretInStateWarning, StoreCorruptError
from wfkit.model._events import FIELDS, StepEvent
from wfkit.model._processors import REDACTED, redact_text
from wfkit.model._warn import site_of, warn_at
from wfkit.store import _codec

# Every stored column of a journal row but seq, in insert order.
COLUMNS: tuple[str, ...] = (*FIELDS, "outcome", "updates", "failure")

# One table is both the journal (a row per attempt) and the checkpoint log: the final event of a
# settled step carries its outcome and the updates it returned (its layout: ``_store._JOURNAL_TABLE``).
JOURNAL_INSERT = (
    f"INSERT INTO journal (seq, {', '.join(COLUMNS)}, checksum) VALUES ("
    f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM journal WHERE run_id = ?), "
    f"{', '.join('?' for _ in COLUMNS)}, ?)"
)
# Verified reads select this: seq, the columns, the checksum.
JOURNAL_SELECT = f"SELECT seq, {', '.join(COLUMNS)}, checksum FROM journal"
# Rows per statement when many are written at once. Each statement is one step of SQLite, so one
# release of the GIL by the writer thread, which must then win it back from a busy event loop: a
# wait of up to the interpreter's switch interval (5 ms) each time the loop is running Python,
# measured at 3 to 6 ms per statement in a batch of a thousand concurrent runs. So a batch's rows
# of one kind go in one statement per ``CHUNKS[0]`` rows: the statement of the next size up, the
# rows it has no use for padded with zeros and dropped by its ``WHERE v.column1 = 1`` (each real
# row starts with a 1; ints bind at no cost). Powers of two: few sizes, kept in the statement
# cache, and at most half of a statement padding. SQLite before 3.32 allows 999 bound values per
# statement, later ones 32766.
CHUNKS = tuple(2**i for i in range(9, -1, -1)) if sqlite3.sqlite_version_info >= (3, 32) else (16, 8, 4, 2, 1)


# Why the bulk statements write NULL as a literal instead of binding None: Python's sqlite3 binds
# int, float and str directly but sends every other value, None included, through its adapter
# lookup (about 0.85 us per None, with the GIL held, so the event loop waits too), and a journal
# row is half NULLs. So a statement is made per pattern of NULL values (a workload has a handful:
# a checkpoint, a failed attempt, an LLM step with tokens...), and only the other values are
# bound. What is stored is the same: NULL where the value was None.
Nulls = tuple[bool, ...]
"""Which values of a row are None."""

Shape = tuple[Nulls, Callable[[Sequence[Any]], Sequence[Any]]]
"""A row's NULL pattern, and a getter of its other values (a tuple)."""

# Shapes by the types of a row's values: ``tuple(map(type, row))`` and a dict lookup find a row's
# NULL pattern and the getter of its other values without a Python step per value, a third of what
# ``[v is None for v in row]`` and ``[v for v in row if v is not None]`` cost. A workload has a
# handful (ints and floats may alternate in a column: a few more).
_SHAPES: dict[tuple[type, ...], Shape] = {}
_NONE = type(None)


def _new_shape(types: tuple[type, ...]) -> Shape:
    nulls = tuple([t is _NONE for t in types])
    kept = [i for i, null in enumerate(nulls) if not null]
    if len(kept) == 1:
        only = kept[0]
        getter: Callable[[Sequence[Any]], Sequence[Any]] = lambda row: (row[only],)  # noqa: E731
    else:
        getter = operator.itemgetter(*kept) if kept else lambda row: ()
    if len(_SHAPES) >= 4096:  # a workload of ever new shapes: start again rather than grow
        _SHAPES.clear()
    shape = _SHAPES[types] = (nulls, getter)
    return shape


Statement = Callable[[str], str]
"""Makes a bulk statement from its VALUES table, whose rows are ``(1, value, ...)`` (so
``v.column2`` is a row's first value); the statement keeps only rows with ``v.column1 = 1``."""


@functools.lru_cache(maxsize=512)
def _sql(statement: Statement, nulls: Nulls, rows: int) -> str:
    row = "(?, " + ", ".join("NULL" if null else "?" for null in nulls) + ")"
    return statement(", ".join(row for _ in range(rows)))


def execute_rows(conn: sqlite3.Connection, statement: Statement, rows: Iterable[Sequence[Any]]) -> None:
    """Run ``statement`` over ``rows``: one statement per NULL pattern per ``CHUNKS[0]`` rows
    (so rows of different patterns may be applied out of order)."""
    groups: dict[Nulls, list[Any]] = {}
    for row in rows:
        types = tuple(map(type, row))
        shape = _SHAPES.get(types) or _new_shape(types)
        params = groups.get(shape[0])
        if params is None:
            params = groups[shape[0]] = []
        params.append(1)
        params += shape[1](row)
    for nulls, params in groups.items():
        execute_padded(conn, statement, nulls, params)


def execute_padded(conn: sqlite3.Connection, statement: Statement, nulls: Nulls, params: list[Any]) -> None:
    """Run ``statement`` over flat ``params``: rows of one NULL pattern, each starting with 1 and
    holding its values that are not None (see :data:`CHUNKS`); the last statement's missing rows
    are padded with zeros."""
    width = 1 + nulls.count(False)
    total, largest = len(params) // width, CHUNKS[0]
    for at in range(0, total, largest):
        rows = min(largest, total - at)
        size = min(c for c in CHUNKS if c >= rows)
        chunk = params[at * width : (at + rows) * width]
        if size > rows:
            chunk.extend([0] * ((size - rows) * width))
        conn.execute(_sql(statement, nulls, size), chunk)


def _insert_one(nulls: Nulls) -> str:
    """INSERT of one journal row with its seq bound (``nulls`` covers the values after the seq)."""
    marks = ", ".join("NULL" if null else "?" for null in nulls)
    return f"INSERT INTO journal (seq, {', '.join(COLUMNS)}, checksum) VALUES (?, {marks})"


JournalShape = tuple[Nulls, Callable[[Sequence[Any]], Sequence[Any]], str]
"""A journal row's shape (its values after the run id): the NULL pattern of (seq, values), the
getter of its other values, and the INSERT of the row alone."""
_JOURNAL_SHAPES: dict[tuple[type, ...], JournalShape] = {}


def _journal_shape(types: tuple[type, ...]) -> JournalShape:
    nulls, getter = _SHAPES.get(types) or _new_shape(types)
    if len(_JOURNAL_SHAPES) >= 4096:
        _JOURNAL_SHAPES.clear()
    shape = _JOURNAL_SHAPES[types] = ((False, *nulls), getter, _insert_one(nulls))
    return shape


_INSERTED = ", ".join(f"v.column{i}" for i in range(2, len(COLUMNS) + 4))  # seq, the columns, checksum


def _insert_many(values: str) -> str:
    """INSERT of journal rows, each (seq, the columns, the checksum), for :func:`execute_padded`."""
    return (
        f"INSERT INTO journal (seq, {', '.join(COLUMNS)}, checksum) SELECT {_INSERTED} "
        f"FROM (VALUES {values}) v WHERE v.column1 = 1"
    )


@functools.lru_cache(maxsize=16)
def _last_seqs(runs: int) -> str:
    """Each of ``runs`` run ids with its last seq (NULL: none yet); the correlated MAX seeks the
    end of the run's key range instead of scanning its rows."""
    return (
        "SELECT v.column1, (SELECT MAX(k.seq) FROM journal k WHERE k.run_id = v.column1) "
        f"FROM (VALUES {', '.join('(?)' for _ in range(runs))}) v"
    )


def insert_rows(
    conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], nexts: dict[str, int] | None = None
) -> list[int]:
    """Write journal rows (as made by :func:`event_row`: run_id, the columns, the checksum), in
    order: each run's rows take the next seqs of its journal in the order given. Returns the seqs.

    ``nexts``: the next seq of runs whose journal the caller knows (it is updated with the rows
    written). Runs not in it are read, in one statement, and added to it. Why remember: every
    statement lets go of the GIL and has to win it back from a busy event loop, and a lone row
    (a sequential run's checkpoint) is then one statement, not a read and a write. The caller must
    drop what it knows when the transaction is rolled back, or when rows reach the journal another
    way; a seq known wrongly is at worst behind (another process wrote the run's rows), which the
    primary key refuses rather than leave a hole."""
    known: dict[str, int] = {} if nexts is None else nexts
    if len(rows) == 1:
        row = rows[0]
        run_id = row[0]
        seq = known.get(run_id)
        if seq is None:
            seq = _next_seqs(conn, [run_id])[run_id]
        known[run_id] = seq + 1
        values = row[1:]
        types = tuple(map(type, values))
        _, kept, alone = _JOURNAL_SHAPES.get(types) or _journal_shape(types)
        conn.execute(alone, [seq, *kept(values)])
        return [seq]
    # The seqs are worked out here, once per run, from memory or one read (the writer holds the
    # write lock, so nobody adds rows in between): no MAX per row and no window over the rows in
    # SQLite, and rows of different NULL patterns may go in different statements without losing
    # their order.
    missing = [run_id for run_id in dict.fromkeys([row[0] for row in rows]) if run_id not in known]
    if missing:
        known.update(_next_seqs(conn, missing))
    groups: dict[Nulls, list[Any]] = {}
    seqs: list[int] = []
    for row in rows:
        run_id = row[0]
        seq = known[run_id]
        known[run_id] = seq + 1
        seqs.append(seq)
        values = row[1:]
        types = tuple(map(type, values))
        nulls, kept, _ = _JOURNAL_SHAPES.get(types) or _journal_shape(types)
        params = groups.get(nulls)
        if params is None:
            params = groups[nulls] = []
        params.append(1)
        params.append(seq)
        params += kept(values)
    for nulls, params in groups.items():
        execute_padded(conn, _insert_many, nulls, params)
    return seqs


def _next_seqs(conn: sqlite3.Connection, run_ids: list[str]) -> dict[str, int]:
    """The next seq of each run's journal, in as few statements as the chunk sizes allow: the
    list is padded with its first run id up to a chunk size (a run asked twice costs a seek)."""
    nexts: dict[str, int] = {}
    largest = CHUNKS[0]
    for at in range(0, len(run_ids), largest):
        part = run_ids[at : at + largest]
        size = min(c for c in CHUNKS if c >= len(part))
        for run_id, last in conn.execute(_last_seqs(size), part + [part[0]] * (size - len(part))):
            nexts[run_id] = (last or 0) + 1
    return nexts


_TOOLS_AT = FIELDS.index("tools")
_EXTRA_AT = FIELDS.index("extra")
_LATENCY_AT = FIELDS.index("latency_s")
_ENDED_AT = FIELDS.index("ended_at")
_UPDATES_AT = COLUMNS.index("updates")
_FAILURE_AT = COLUMNS.index("failure")
# Text columns a secret could reach (ids, names and numbers cannot).
_REDACTED_AT = tuple(
    COLUMNS.index(c) for c in ("error_message", "approver", "decision_comment", "extra", "updates", "failure")
)
_RESTORE = "restore the workspace from a backup, or start the run again; `wfkit doctor` lists all damage"
# The parts of a checksum, in order, and what each covers (named in errors).
_PARTS = ("the event's columns", "updates", "failure", "extra")


# Encoders made once (see _codec.json_encoder). ``extra`` is whatever a step recorded, so its
# encoder keeps json's search for cycles.
dumps: Callable[[Any], str] = _codec.json_encoder()
_dumps_extra: Callable[[Any], str] = json.JSONEncoder(default=repr).encode


def encode_updates(step: str, updates: Mapping[str, Any], fn: object = None) -> str:
    """JSON for a step's updates as its checkpoint keeps them (types kept); a value that cannot be
    kept is named with its step and field, and one the redaction boundary will take out of the
    stored copy is warned about (:func:`warn_if_redacted`). ``fn``: the step's function, where
    such warnings point (see :mod:`wfkit.model._warn`)."""
    if not updates:
        return "{}"  # a step that wrote nothing (the JSON encode_state makes of it, with nothing to check)
    who = f"step {step!r} wrote"
    text = _codec.encode_state(who, updates, fn)
    warn_if_redacted(who, updates, text, fn)
    return text


def encode_state(who: str, values: Mapping[str, Any]) -> str:
    """JSON for state fields, types kept (see :mod:`wfkit.store._codec`)."""
    return _codec.encode_state(who, values)


def warn_if_restored_redacted(run_id: str, who: str, text: str, values: Any) -> None:
    """On resume: warn when a stored payload (``text``, decoded into ``values``) holds the redaction
    placeholder, naming the fields that read ``[REDACTED]`` now instead of what was written."""
    if REDACTED not in text:
        return
    fields = [key for key, value in values.items() if REDACTED in repr(value)] if isinstance(values, dict) else []
    named = ", ".join(map(repr, fields)) or "a value"
    warnings.warn(
        SecretInStateWarning(
            f"resuming run {run_id}: {who} {named} as [REDACTED]: it held a secret, or text shaped like "
            f"one, which the workspace never stores, so the resumed run reads the placeholder, not the "
            f"value. Keep secrets out of the state (read them in the step that needs them)"
        ),
        stacklevel=3,
    )


def warn_if_redacted(who: str, values: Mapping[str, Any], encoded: str, fn: object = None) -> None:
    """Warn when the store will keep ``[REDACTED]`` in place of (part of) a state
    value: a secret never reaches the disk, so a run resumed from this checkpoint reads the
    placeholder. Said as it is written, not first noticed after a crash. ``encoded``: the values'
    JSON (the fields are looked at one by one only when it changes); ``fn``: the function that
    wrote them, where the warning points (None: the caller's caller)."""
    if len(encoded) < 4 or redact_text(encoded) == encoded:
        return
    for key, value in values.items():
        text = _codec.encode_state(who, {key: value})
        if redact_text(text) == text:
            continue
        # Said once per step and field: the warnings module shows a message once per place.
        warn_at(
            SecretInStateWarning(
                f"{who} state field {key!r} holding a secret, or text shaped like one (a key, a password "
                f"in a URL, key=value); secrets never reach the workspace, so its checkpoint keeps "
                f"[REDACTED] in its place, and a run resumed after this step reads that. Keep secrets "
                f"out of the state: read them in the step that needs them (os.environ, a secret store)"
            ),
            site_of(fn),
            stacklevel=3,
        )


# ---- checksums ------------------------------------------------------------------------------------


def _crc(text: str | None) -> str:
    return "--------" if text is None else f"{zlib.crc32(text.encode('utf-8', 'surrogatepass')):08x}"


def _text(value: Any) -> str:
    """A value as SQLite will hand it back, so the checksum of what was written equals that of what
    is read: None (and NaN, stored as NULL) apart from "None", a whole float like the int a REAL
    column may return for it (and the other way round), booleans as the 0/1 SQLite keeps."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return "\x00"
    if kind is float:
        if value != value:
            return "\x00"
        return str(int(value)) if value.is_integer() else repr(value)
    if kind is bool:
        return "1" if value else "0"
    return str(value)


# The event's columns: everything but the three JSON payloads, which get checksums of their own,
# ``durable_wait_s``, a measurement filled in after the row is written (the checkpoint's own
# commit is what it measures), and ``model_latency_s`` and ``ttft_s``, measurements appended after
# checksums existed: the rows of a store written before them carry checksums that do not cover them.
_LATER_MEASURES = ("durable_wait_s", "model_latency_s", "ttft_s")
_UNCHECKED_AT = (_UPDATES_AT, _FAILURE_AT, _EXTRA_AT, *map(COLUMNS.index, _LATER_MEASURES))
_EVENT_AT = tuple(i for i in range(len(COLUMNS)) if i not in _UNCHECKED_AT)
_EVENT_COLUMNS = operator.itemgetter(*_EVENT_AT)

# Checksum format 2 (rows written from wfkit 0.x on; format 1 rows still verify, see
# ``verify_rows``): the same four parts, but the event's REAL columns enter as their eight bytes
# (``struct``) instead of as ``repr`` text. Turning a float into its shortest decimal text is
# most of what format 1 costs, and every durable step pays it (in the store's writer thread, where
# the interpreter it holds is taken from every run on the event loop). The bytes are
# those SQLite hands back: an int or a bool in a REAL column reads back as the float it equals
# (``+ 0.0``, which also folds -0.0, stored as 0, into 0.0), and NULL and NaN (stored as NULL)
# are one quiet NaN. The other columns are text as in format 1 (``_text``, whose form does not
# depend on the type a value was handed in as).
CHECKSUM_V2 = "2:"
# The journal's REAL columns among the event's (the schema's types: tests check they agree).
REAL_COLUMNS = ("started_at", "ended_at", "latency_s", "queue_s", "retry_delay_s", "cost_usd")
_REAL_COLUMNS = operator.itemgetter(*(COLUMNS.index(c) for c in REAL_COLUMNS))
_OTHER_COLUMNS = operator.itemgetter(*(i for i in _EVENT_AT if COLUMNS[i] not in REAL_COLUMNS))
_PACK_REALS = struct.Struct(f"<{len(REAL_COLUMNS)}d").pack
_NAN = float("nan")


def _other_text(values: Sequence[Any]) -> str:
    """The checksum's text of the columns that are not REAL (``_OTHER_COLUMNS``): ``_text`` of
    each, joined by unit separators. Every durable step pays it while holding the interpreter, and a Python
    loop over twenty columns was most of what a row cost there: a row whose columns hold only
    text, integers and NULLs (nearly all) is written by a ``%`` template made once per pattern of
    NULLs, in C."""
    shape = tuple(map(type, values))
    try:
        plan = _PLANS[shape]
    except KeyError:
        plan = _plan(shape)
    if plan is not None:
        template, pick = plan
        return template % pick(values)
    return "\x1f".join(
        [v if type(v) is str else "\x00" if v is None else str(v) if type(v) is int else _text(v) for v in values]
    )


_Plan = tuple[str, Callable[[Sequence[Any]], tuple[Any, ...]]]
# Column types of a row -> its plan (None: some column holds another type; _text decides each).
_PLANS: dict[tuple[type, ...], _Plan | None] = {}
_MAX_PLANS = 256  # patterns of NULLs are few; past this, new ones take the loop


def _plan(shape: tuple[type, ...]) -> _Plan | None:
    """How :func:`_other_text` writes rows of column types ``shape``: a ``%`` template with the
    NULLs written in, filled with the other columns (``%s`` of exact text is the text, of an exact
    integer ``str`` of it; a bool, a float or a subclass takes the loop)."""
    kept = [i for i, kind in enumerate(shape) if kind is not type(None)]
    plan: _Plan | None = None
    if len(kept) >= 2 and all(shape[i] is str or shape[i] is int for i in kept):
        template = "\x1f".join("\x00" if kind is type(None) else "%s" for kind in shape)
        plan = (template, operator.itemgetter(*kept))
    if len(_PLANS) < _MAX_PLANS:
        _PLANS[shape] = plan
    return plan


def row_checksum(columns: Sequence[Any]) -> str:
    """The checksum of a journal row given in :data:`COLUMNS` order (format 2; a row whose REAL
    columns hold something that is no number gets format 1, which takes any value)."""
    # Every row written passes here: text, NULL and integers (most columns) join
    # without a call per column; the rest takes the form SQLite hands back (``_text``).
    other = _other_text(_OTHER_COLUMNS(columns))
    try:
        reals = _PACK_REALS(*[_NAN if v is None or v != v else v + 0.0 for v in _REAL_COLUMNS(columns)])
    except (TypeError, OverflowError):  # text in a REAL column (SQLite may keep it as text): format 1 says it as text
        return row_checksum_v1(columns)
    return f"{CHECKSUM_V2}{_crc32(reals, _crc32(other.encode('utf-8', 'surrogatepass'))):08x}.{_payload_crcs(columns)}"


def row_checksum_v1(columns: Sequence[Any]) -> str:
    """Format 1 of :func:`row_checksum` (wfkit before format 2 wrote it; still verified): every
    event column as text."""
    event = "\x1f".join(
        [
            v if type(v) is str else "\x00" if v is None else str(v) if type(v) is int else _text(v)
            for v in _EVENT_COLUMNS(columns)
        ]
    )
    return f"{_crc32(event.encode('utf-8', 'surrogatepass')):08x}.{_payload_crcs(columns)}"


def _payload_crcs(columns: Sequence[Any]) -> str:
    """The last three parts of a checksum: ``updates``, ``failure`` and ``extra``."""
    updates, failure, extra = columns[_UPDATES_AT], columns[_FAILURE_AT], columns[_EXTRA_AT]
    return (
        f"{_NULL_CRC if updates is None else _crc_of(updates)}."
        f"{_NULL_CRC if failure is None else _crc_of(failure)}."
        f"{_NULL_CRC if extra is None else _crc_of(extra)}"
    )


def _verify_checksum(columns: Sequence[Any], stored: str) -> str:
    """The checksum of a row read back, in the format its stored checksum has."""
    # (A format 2 row whose REAL column no longer holds a number gets a format 1 checksum here,
    # which differs from the stored one in its first part: the event's columns changed.)
    return row_checksum(columns) if stored.startswith(CHECKSUM_V2) else row_checksum_v1(columns)


_crc32 = zlib.crc32
_NULL_CRC = _crc(None)
# The CRC of the payloads most rows carry (a step that wrote nothing, a failure-free row): kept.
_KNOWN_CRCS = {text: _crc(text) for text in ("{}", "[]")}


def _crc_of(text: str) -> str:
    known = _KNOWN_CRCS.get(text)
    return known if known is not None else f"{_crc32(text.encode('utf-8', 'surrogatepass')):08x}"


def checked_row(columns: Sequence[Any]) -> tuple[Any, ...]:
    """Insert parameters for a row in :data:`COLUMNS` order: run_id (for the seq), the columns
    through the redaction boundary, and their checksum."""
    return _checked(list(columns))


def _checked(values: list[Any]) -> tuple[Any, ...]:
    """:func:`checked_row` of a list it may change in place (one the caller just built)."""
    for at in _REDACTED_AT:  # only the text columns a secret can reach, and only when they hold text
        value = values[at]
        if value is not None:
            values[at] = redact_text(value)
    return (values[0], *values, row_checksum(values))


# The extra of an attempt a crash cut off, whose latency nobody could measure: its event and the
# step log say NaN (latency_s, ended_at); the journal's columns refuse NULL, so its row keeps 0 and
# the start, and every reader of the journal (event_from_row, the parquet export) reads NaN again.
UNTIMED = {"crashed": True, "latency": "unknown"}
UNTIMED_TEXT = '"latency": "unknown"'  # as the row's extra JSON holds it
# In the extra of a sub-workflow step's crashed attempt when the crash came while its child run
# ran: the child run it was inside. The child's step accounts for that crash, so the parent's
# step does not count it against its own retry budget (``Store.attempt_facts`` counts these).
CRASHED_IN_CHILD = "crashed_in_child"
CRASHED_IN_CHILD_TEXT = f'"{CRASHED_IN_CHILD}": '  # as the row's extra JSON holds it


def untimed(extra: object) -> bool:
    """Whether an event's ``extra`` (a dict, or the row's JSON text) marks its latency unknown."""
    if isinstance(extra, str):
        return UNTIMED_TEXT in extra
    return isinstance(extra, dict) and extra.get("latency") == "unknown"


def event_row(
    event: StepEvent, outcome: str | None = None, updates: str | None = None, failure: str | None = None
) -> tuple[Any, ...]:
    """Insert parameters for :data:`JOURNAL_INSERT`: :func:`checked_row` of the event's columns and
    the checkpoint's. Every durable step pays it (mostly in the store's writer thread, see
    ``Store.checkpoint_write``), so it is :func:`_checked` and
    :func:`row_checksum` written out for a row known to come from a StepEvent: the redaction
    boundary sees only the text columns that hold text (a step that wrote nothing, ``"{}"``, holds
    none a secret could be in), and the checksum is the same."""
    row: list[Any] = [*event, outcome, updates, failure]
    tools = event.tools
    if tools is not None:
        row[_TOOLS_AT] = dumps(list(tools)) if tools else "[]"  # most steps call no tool
    extra: str | None = None
    if event.extra is not None:
        extra = row[_EXTRA_AT] = redact_text(_dumps_extra(event.extra))
        if untimed(event.extra):  # NaN would be NULL in columns that refuse it: 0 and the start
            row[_LATENCY_AT], row[_ENDED_AT] = 0.0, event.started_at
    if event.error_message is not None or event.approver is not None or event.decision_comment is not None:
        for at in _EVENT_TEXT_AT:
            value = row[at]
            if value is not None:
                row[at] = redact_text(value)
    if updates is not None and updates != "{}":
        updates = row[_UPDATES_AT] = redact_text(updates)
    if failure is not None:
        failure = row[_FAILURE_AT] = redact_text(failure)
    # row_checksum (format 2), with the payloads' CRCs from the values at hand.
    other = _other_text(_OTHER_COLUMNS(row))
    try:
        reals = _PACK_REALS(*[_NAN if v is None or v != v else v + 0.0 for v in _REAL_COLUMNS(row)])
    except (TypeError, OverflowError):  # text in a REAL column: format 1 (row_checksum says why)
        return (row[0], *row, row_checksum_v1(row))
    return (
        row[0],
        *row,
        f"{CHECKSUM_V2}{_crc32(reals, _crc32(other.encode('utf-8', 'surrogatepass'))):08x}."
        f"{_NULL_CRC if updates is None else _crc_of(updates)}."
        f"{_NULL_CRC if failure is None else _crc_of(failure)}."
        f"{_NULL_CRC if extra is None else _crc_of(extra)}",
    )


_EVENT_TEXT_AT = tuple(FIELDS.index(c) for c in ("error_message", "approver", "decision_comment"))


def verify_rows(
    path: object, run_id: str | None, rows: Iterable[Sequence[Any]], *, after: int = 0
) -> list[tuple[Any, ...]]:
    """Rows from :data:`JOURNAL_SELECT` (one run's, in seq order, after ``after``), checked: each
    checksum, and no gap in the sequence. Returns them as (seq, *COLUMNS)."""
    out: list[tuple[Any, ...]] = []
    expected = after + 1
    for raw in rows:
        seq, *columns, checksum = raw
        row_run = columns[0]
        if run_id is not None:
            if seq != expected:
                missing = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
                raise StoreCorruptError(
                    f"the run store {path} is damaged: run {row_run} has no journal row {missing} (the next "
                    f"is {seq}), so its history has a hole; {_RESTORE}",
                    path=str(path),
                    run_id=row_run,
                    row=expected,
                    column="seq",
                )
            expected += 1
        if checksum is not None:
            actual = _verify_checksum(columns, str(checksum))
            if actual != checksum:
                parts = [
                    _PARTS[i]
                    for i, (a, b) in enumerate(zip(actual.split("."), str(checksum).split("."), strict=False))
                    if a != b
                ] or ["the checksum itself"]
                raise StoreCorruptError(
                    f"the run store {path} is damaged: run {row_run}, journal row {seq}: {', '.join(parts)} "
                    f"changed since it was written (checksum mismatch); {_RESTORE}",
                    path=str(path),
                    run_id=row_run,
                    row=seq,
                    column="journal." + ("updates" if parts[0] == "updates" else parts[0].replace("the ", "")),
                )
        out.append((seq, *columns))
    return out


def load_json(path: object, run_id: str, column: str, text: str, *, row: int | None = None) -> Any:
    """Decode a stored JSON column (types kept); damage is a StoreCorruptError saying where."""
    try:
        return _codec.decode_state(text)
    except ValueError as exc:
        where = f"run {run_id}" + (f", journal row {row}" if row is not None else "")
        raise StoreCorruptError(
            f"the run store {path} is damaged: {where}, column {column} does not parse ({exc}); {_RESTORE}",
            path=str(path),
            run_id=run_id,
            row=row,
            column=column,
        ) from exc


def event_from_row(path: object, row: Sequence[Any]) -> StepEvent:
    """A StepEvent from (seq, *COLUMNS)."""
    seq, *columns = row
    values = columns[: len(FIELDS)]
    if values[_TOOLS_AT] is not None:
        values[_TOOLS_AT] = tuple(load_json(path, values[0], "journal.tools", values[_TOOLS_AT], row=seq))
    if values[_EXTRA_AT] is not None:
        values[_EXTRA_AT] = load_json(path, values[0], "journal.extra", values[_EXTRA_AT], row=seq)
        if untimed(values[_EXTRA_AT]):
            values[_LATENCY_AT] = values[_ENDED_AT] = float("nan")
    return StepEvent(*values)


def with_run_columns(conn: sqlite3.Connection, event: StepEvent) -> StepEvent:
    """``event``, a row written for a run outside its steps' attempts (a ticket decided, by a
    person or a policy; an irreversible step reconciled), with the columns that the run's own rows
    carry filled where it left them None, from the run's records: the parameters hash from its
    row, the parent run from its link (a sub-workflow's child), the host from its last row (else
    from its lease, held by the process that died), and the tools from its last row of the same
    step visit. Without them the row fell out of a filter by parent run and counted apart in any
    grouping by those columns."""
    filled: dict[str, Any] = {}
    run = conn.execute("SELECT parameters_hash, lease_host FROM runs WHERE run_id=?", (event.run_id,)).fetchone()
    if event.parameters_hash is None and run is not None:
        filled["parameters_hash"] = run[0]
    if event.parent_run_id is None:
        link = conn.execute(
            "SELECT parent_run_id FROM run_links WHERE run_id=? AND kind='child'", (event.run_id,)
        ).fetchone()
        if link is not None:
            filled["parent_run_id"] = link[0]
    if event.host is None:
        last = conn.execute(
            "SELECT host FROM journal WHERE run_id=? AND host IS NOT NULL ORDER BY seq DESC LIMIT 1", (event.run_id,)
        ).fetchone()
        if last is not None:
            filled["host"] = last[0]
        elif run is not None:
            filled["host"] = run[1]
    if event.tools is None:
        visit = conn.execute(
            "SELECT tools FROM journal WHERE run_id=? AND step=? AND visit=? AND map_index IS NULL "
            "AND tools IS NOT NULL ORDER BY seq DESC LIMIT 1",
            (event.run_id, event.step, event.visit),
        ).fetchone()
        if visit is not None:
            filled["tools"] = tuple(json.loads(visit[0]))
    return event._replace(**filled) if filled else event


# ---- the runs table ----------------------------------------------------------------------------

# The columns a run is created with and that never change after: its checksum covers them.
RUN_IDENTITY = (
    "run_id",
    "workflow",
    "workflow_version",
    "fingerprint",
    "workflow_ref",
    "seed",
    "timeout",
    "count_waiting",
    "parameters_hash",
)


def run_checksum(row: Mapping[str, Any]) -> str:
    """The checksum of a run's creation columns: identity, then ``definition`` and ``inputs``."""
    identity = _other_text([row.get(c) for c in RUN_IDENTITY])  # _text of each, joined as a row's are
    return ".".join((_crc(identity), _definition_crc(row.get("definition")), _crc(row.get("inputs"))))


def _definition_crc(text: str | None) -> str:
    """``_crc`` of a workflow's definition: the same long text for every run of a version, so its
    CRC is kept (keyed by the text object: a run of the same version hands the same one)."""
    global _last_definition
    if text is not None and _last_definition[0] is text:
        return _last_definition[1]
    crc = _crc(text)
    if text is not None:
        _last_definition = (text, crc)
    return crc


_last_definition: tuple[str | None, str] = (None, "")


def verify_run(path: object, row: Mapping[str, Any]) -> None:
    checksum = row.get("checksum")
    if checksum is None:
        return  # written before checksums (schema 1)
    actual = run_checksum(row)
    if actual != checksum:
        names = ("run identity columns", "definition", "inputs")
        parts = [
            names[i]
            for i, (a, b) in enumerate(zip(actual.split("."), str(checksum).split("."), strict=False))
            if a != b
        ]
        column = "runs." + (parts[0] if parts and parts[0] != names[0] else "run_id")
        raise StoreCorruptError(
            f"the run store {path} is damaged: run {row['run_id']}: {', '.join(parts) or 'its checksum'} changed "
            f"since the run was created (checksum mismatch); {_RESTORE}",
            path=str(path),
            run_id=row["run_id"],
            column=column,
        )
