"""Journal rows: a step event written as a row and read back unchanged; state encoded as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import wfkit as wf
from wfkit.store._journal import (
    COLUMNS,
    JOURNAL_INSERT,
    checked_row,
    encode_updates,
    event_from_row,
    event_row,
    load_json,
    row_checksum,
    run_checksum,
    verify_rows,
    verify_run,
)
from wfkit.store._store import Store


def _event() -> wf.StepEvent:
    return wf.StepEvent(
        "r1",
        "flow",
        "v1",
        "step",
        1,
        2,
        "retry",
        error_kind="transient",
        started_at=1.5,
        ended_at=2.0,
        latency_s=0.5,
        tools=("web_search", "sql_query"),
        extra={"tool_calls": [{"tool": "web_search"}]},
    )


def test_a_row_reads_back_as_the_same_event() -> None:
    """Tools (a tuple) and extra (a dict) survive the JSON columns; outcome columns and the checksum ride along."""
    event = _event()
    row = event_row(event, "ok", '{"x": 1}', None)
    assert ("r1", "r1") == (row[0], row[1])  # the run id feeds the per-run sequence, then the column
    assert ("ok", '{"x": 1}', None) == row[-4:-1]
    assert row_checksum(row[1:-1]) == row[-1]
    assert event == event_from_row("db", (7, *row[1:-1]))


def test_state_that_cannot_be_kept_names_step_and_field() -> None:
    """An object state cannot keep is refused with the step, the field and a fix."""
    assert '{"a":1}' == encode_updates("s", {"a": 1})
    with pytest.raises(wf.StateValueError, match=r"step 'load' wrote state field 'when' = .*object.*plain data"):
        encode_updates("load", {"ok": 1, "when": object()})


def test_rows_written_together_continue_each_runs_sequence(tmp_path: Path) -> None:
    """600 rows of two runs in one write take consecutive seqs per run, in order, after existing rows."""
    store = Store(tmp_path / "j.db")
    try:
        store.journal([_event()._replace(run_id="a", attempt=0)])
        events = [_event()._replace(run_id="ab"[i % 2], attempt=i + 1) for i in range(600)]
        store.journal(events)
        a = [(e.attempt) for e in store.events("a")]
        b = [(e.attempt) for e in store.events("b")]
        seqs = [r[0] for r in store.read("SELECT seq FROM journal WHERE run_id='a' ORDER BY seq")]
    finally:
        store.close()
    assert [0, *range(1, 601, 2)] == a
    assert list(range(2, 601, 2)) == b
    assert list(range(1, 302)) == seqs


def test_every_text_column_passes_the_redaction_boundary() -> None:
    """A key-shaped string in the message, the comment, extra, updates or failure is gone from the row."""
    key = "sk-" + "a1" * 12
    event = _event()._replace(error_message=f"failed with {key}", decision_comment=f"ok {key}", extra={"k": key})
    row = event_row(event, "ok", json.dumps({"echo": key}), json.dumps({"message": key}))
    assert [] == [value for value in row if isinstance(value, str) and key in value]
    assert "failed with [REDACTED]" == row[1 + COLUMNS.index("error_message")]


def test_an_event_row_is_the_checked_row_of_its_columns() -> None:
    """event_row (written out for speed) gives the row and checksum the generic path gives, whatever
    the event holds: secrets anywhere, tools, extra, a failure, NaN and ints in REAL columns, text there."""
    key = "sk-" + "b2" * 12
    base = _event()
    cases = [
        (base, "ok", '{"x":1}', None),
        (base._replace(tools=None, extra=None, error_kind=None, status="ok"), "ok", "{}", None),
        (base._replace(tools=(), retry_delay_s=float("nan"), cost_usd=2, tokens_in=3), None, None, None),
        (
            base._replace(error_message=f"bad {key}", approver=f"me {key}", decision_comment=key),
            "fallback",
            None,
            json.dumps({"message": key}),
        ),
        (base._replace(extra={"k": key, "n": 1.5}), "item", json.dumps({"result": key}), None),
        (base._replace(latency_s="3.5"), "ok", "{}", None),  # text in a REAL column: format 1
        (base._replace(approver="x" * 3, error_message=""), "ok", "[]", None),
    ]
    for event, outcome, updates, failure in cases:
        columns = [*event, outcome, updates, failure]
        columns[COLUMNS.index("tools")] = (
            None if event.tools is None else json.dumps(list(event.tools), separators=(",", ":"))
        )
        columns[COLUMNS.index("extra")] = None if event.extra is None else json.dumps(event.extra, default=repr)
        assert checked_row(columns) == event_row(event, outcome, updates, failure)


def _rows(n: int) -> list[tuple[object, ...]]:
    """n journal rows of run r1 as JOURNAL_SELECT returns them (seq, columns, checksum)."""
    out = []
    for seq in range(1, n + 1):
        params = event_row(_event()._replace(attempt=seq), "ok", f'{{"n": {seq}}}', None)
        out.append((seq, *params[1:]))
    return out


def test_verified_rows_come_back_in_order() -> None:
    """Rows whose checksums match and whose seqs have no gap pass verification unchanged."""
    rows = _rows(3)
    assert [r[:-1] for r in rows] == verify_rows("db", "r1", rows)


def test_a_changed_updates_column_names_the_row_and_column() -> None:
    """One digit changed inside a checkpoint's updates is a StoreCorruptError naming run, row and column."""
    rows = _rows(3)
    at = 1 + COLUMNS.index("updates")
    damaged = list(rows[1])
    damaged[at] = '{"n": 3}'
    with pytest.raises(wf.StoreCorruptError, match=r"db is damaged: run r1, journal row 2: updates changed") as info:
        verify_rows("db", "r1", [rows[0], tuple(damaged), rows[2]])
    assert ("db", "r1", 2, "journal.updates") == (info.value.path, info.value.run_id, info.value.row, info.value.column)


def test_a_gap_in_the_sequence_is_corruption() -> None:
    """A missing row in the middle of a run's journal is a StoreCorruptError, not a shorter history."""
    rows = _rows(4)
    with pytest.raises(wf.StoreCorruptError, match=r"run r1 has no journal row 2 to 3 \(the next is 4\)") as info:
        verify_rows("db", "r1", [rows[0], rows[3]])
    assert (2, "seq") == (info.value.row, info.value.column)


def test_unparsable_json_names_the_column() -> None:
    """Garbage JSON in a stored column is a StoreCorruptError naming the file, run, row and column."""
    with pytest.raises(wf.StoreCorruptError, match=r"run r1, journal row 5, column journal.updates does not parse"):
        load_json("db", "r1", "journal.updates", '{"a": 1,, }', row=5)


def test_a_changed_run_input_is_caught_by_the_run_checksum() -> None:
    """A run row whose inputs changed after creation fails verification naming the column."""
    row = {"run_id": "r1", "workflow": "w", "definition": "{}", "inputs": '{"a": 1}'}
    row["checksum"] = run_checksum(row)
    verify_run("db", row)
    with pytest.raises(wf.StoreCorruptError, match="inputs changed") as info:
        verify_run("db", {**row, "inputs": '{"a": 2}'})
    assert "runs.inputs" == info.value.column


def _v1_checksum(row: list[object]) -> str:
    """Format 1 as wfkit wrote it before format 2, spelled out: every event column as text."""
    from wfkit.store import _journal

    skip = {COLUMNS.index(c) for c in ("updates", "failure", "extra", "durable_wait_s", "model_latency_s", "ttft_s")}
    event_part = "\x1f".join(_journal._text(v) for i, v in enumerate(row) if i not in skip)
    parts = (event_part, row[COLUMNS.index("updates")], row[COLUMNS.index("failure")], row[COLUMNS.index("extra")])
    return ".".join(_journal._crc(p) for p in parts)  # type: ignore[arg-type]


def _v2_checksum(row: list[object]) -> str:
    """Format 2 spelled out: the REAL columns as eight bytes each (NULL and NaN one quiet NaN), the
    other event columns as text, then the payloads' CRCs as in format 1."""
    import math
    import struct
    import zlib

    from wfkit.store import _journal

    unchecked = ("updates", "failure", "extra", "durable_wait_s", "model_latency_s", "ttft_s")
    skip = {COLUMNS.index(c) for c in (*unchecked, *_journal.REAL_COLUMNS)}
    text = "\x1f".join(_journal._text(v) for i, v in enumerate(row) if i not in skip)
    reals = [row[COLUMNS.index(c)] for c in _journal.REAL_COLUMNS]
    packed = struct.pack("<6d", *(math.nan if v is None or math.isnan(v) else float(v) + 0.0 for v in reals))  # type: ignore[arg-type]
    event = zlib.crc32(packed, zlib.crc32(text.encode("utf-8")))
    return f"2:{event:08x}." + _v1_checksum(row).split(".", 1)[1]


def test_rows_written_before_format_2_still_verify() -> None:
    """Rows checksummed in format 1 (wfkit before format 2) pass verification, and a changed column in
    one is still named."""
    rows = []
    for seq in (1, 2):
        columns = list(event_row(_event()._replace(tokens_in=12, cost_usd=0.25, latency_s=3.0), "ok", "{}")[1:-1])
        rows.append((seq, *columns, _v1_checksum(columns)))
    assert [r[:-1] for r in rows] == verify_rows("db", "r1", rows)
    damaged = list(rows[1])
    damaged[1 + COLUMNS.index("latency_s")] = 3.5
    with pytest.raises(wf.StoreCorruptError, match=r"run r1, journal row 2: the event's columns changed") as info:
        verify_rows("db", "r1", [rows[0], tuple(damaged)])
    assert "journal.event's columns" == info.value.column


def test_the_checksum_keeps_its_form() -> None:
    """Rows are checksummed in format 2, the form spelled out in this test, so stores written now verify later."""
    row = list(
        event_row(_event()._replace(tokens_in=12, cost_usd=0.25, latency_s=3.0, map_index=None), "ok", "{}")[1:-1]
    )
    assert _v2_checksum(row) == row_checksum(row)


def test_the_checksum_of_rows_with_payloads_keeps_its_form() -> None:
    """Rows carrying updates, a failure and extra (not the kept "{}") checksum their payloads as per-part CRCs."""
    event = _event()._replace(extra={"note": "ünïcode"}, tools=("search",))
    row = list(event_row(event, "error", '{"a":[1,2]}', '{"kind":"bug"}')[1:-1])
    assert _v2_checksum(row) == row_checksum(row)


class _Text(str):
    """A str subclass, as a processor could hand back."""


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"route_taken": "next", "parameters_hash": "abc", "map_index": 3, "parent_run_id": "p1"},
        {"error_kind": None, "error_type": None, "error_message": None, "tools": None, "extra": None},
        {"tokens_in": True, "tokens_out": 0},  # a bool where an integer goes: 1, as SQLite keeps it
        {"model": 2.5, "visit": 7},  # a float in a text column
        {"model": _Text("gpt"), "approver": "{} {0} {name} %s %d %%", "decision_comment": "ok\x1f\x00"},
        {"step": "", "workflow": "ünïcode", "host": "h" * 300, "tokens_in": -(2**70)},
    ],
)
def test_the_checksum_of_any_mix_of_column_types_is_format_2(changes: dict[str, object]) -> None:
    """Rows mixing text, integers, NULLs, booleans, floats and str subclasses checksum as format 2 spells out."""
    event = _event()._replace(**changes)
    for _ in range(2):  # the second row takes the pattern's plan made by the first
        row = list(event_row(event, "ok", "{}")[1:-1])
        assert _v2_checksum(row) == row_checksum(row)
        assert row_checksum(row) == event_row(event, "ok", "{}")[-1]


def test_the_real_columns_of_the_checksum_are_the_journals(tmp_path: Path) -> None:
    """The columns format 2 packs as floats are exactly the journal's REAL columns among the event's."""
    from wfkit.store._journal import REAL_COLUMNS

    store = Store(tmp_path / "j.db")
    try:
        types = {r[1]: r[2] for r in store.read("PRAGMA table_info(journal)")}
    finally:
        store.close()
    event_columns = set(COLUMNS) - {"updates", "failure", "extra", "durable_wait_s", "model_latency_s", "ttft_s"}
    assert sorted(REAL_COLUMNS) == sorted(c for c in event_columns if types[c] == "REAL")


def test_numbers_of_any_type_in_real_columns_verify_after_a_round_trip(tmp_path: Path) -> None:
    """Ints, bools, -0.0, NaN and None in REAL columns come back from SQLite as other values of the
    same worth, and the row's checksum still verifies; so does text there (format 1 then)."""
    store = Store(tmp_path / "j.db")
    try:
        odd = [
            _event()._replace(attempt=1, started_at=2, ended_at=True, latency_s=-0.0, retry_delay_s=float("nan")),
            _event()._replace(attempt=2, retry_delay_s=10**17 + 1, cost_usd=False, tokens_in=3.0, tokens_out=True),
            _event()._replace(attempt=3, latency_s="0.5", cost_usd="cheap"),  # type: ignore[arg-type]
        ]
        store.journal(odd)
        checksums = [r[0] for r in store.read("SELECT checksum FROM journal ORDER BY seq")]
        first, second, third = store.events("r1")  # verified on the way
    finally:
        store.close()
    assert [True, True, False] == [c.startswith("2:") for c in checksums]
    assert (2.0, 1.0, 0.0, None) == (first.started_at, first.ended_at, first.latency_s, first.retry_delay_s)
    assert (float(10**17 + 1), 0.0, 3, 1) == (
        second.retry_delay_s,
        second.cost_usd,
        second.tokens_in,
        second.tokens_out,
    )
    assert (0.5, "cheap") == (third.latency_s, third.cost_usd)


def test_a_changed_real_column_names_the_events_columns(tmp_path: Path) -> None:
    """A latency changed in a stored row (format 2) is a StoreCorruptError naming the row and the event's columns."""
    import sqlite3

    path = tmp_path / "j.db"
    store = Store(path)
    try:
        store.journal([_event()._replace(attempt=1), _event()._replace(attempt=2)])
    finally:
        store.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE journal SET latency_s = 0.75 WHERE seq = 2")
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        with pytest.raises(wf.StoreCorruptError, match=r"run r1, journal row 2: the event's columns changed") as info:
            store.events("r1")
    finally:
        store.close()
    assert (2, "journal.event's columns") == (info.value.row, info.value.column)


def test_rows_without_tools_and_with_an_empty_tool_list_differ() -> None:
    """No tools is NULL in the journal, an empty tuple is "[]": both read back as they were written."""
    for tools, stored in ((None, None), ((), "[]")):
        event = _event()._replace(tools=tools)
        row = event_row(event)
        assert stored == row[1 + COLUMNS.index("tools")]
        assert event == event_from_row("db", (1, *row[1:-1]))


def test_runs_of_one_workflow_version_store_its_definition_and_a_changed_workflow_its_new_one(tmp_path: Path) -> None:
    """The definition's JSON is made once per graph: a step added later is in the next run's stored definition."""
    flow = wf.Workflow("definition-cache")
    flow.step(lambda s: {"a": 1}, name="a")
    first = flow.run({}, workspace=tmp_path)
    again = flow.run({}, workspace=tmp_path)
    flow.step(lambda s: {"b": 2}, name="b")
    flow.edge("a", "b")
    changed = flow.run({}, workspace=tmp_path)
    ws = wf.Workspace(tmp_path)

    def steps(run: wf.Run) -> list[str]:
        row = ws.store.run_row(run.run_id)
        verify_run(ws.store.path, row)  # the run checksum covers the definition as stored
        return sorted(s["name"] for s in json.loads(row["definition"])["steps"])

    assert (["a"], ["a"], ["a", "b"]) == (steps(first), steps(again), steps(changed))


def test_updates_that_write_nothing_encode_as_an_empty_object() -> None:
    """A step that wrote nothing stores "{}", as the general encoder would."""
    from wfkit.store._codec import encode_state as codec_encode

    assert codec_encode("step 's' wrote", {}) == encode_updates("s", {})
    assert "{}" == encode_updates("s", {})


def _typed_journal(store: Store) -> list[tuple[object, ...]]:
    """Every journal row with each column's SQLite type next to its value."""
    columns = ("seq", *COLUMNS, "checksum")
    typed = ", ".join(f"{c}, typeof({c})" for c in columns)
    return [tuple(r) for r in store.read(f"SELECT {typed} FROM journal ORDER BY run_id, seq")]


def test_bulk_rows_store_the_same_values_and_types_as_one_row_at_a_time(tmp_path: Path) -> None:
    """Rows of several NULL patterns (and ints in REAL columns), interleaved, in one write or one per write: the
    values, NULLs and types of rows bound alone."""
    variants = [
        _event()._replace(attempt=1),
        _event()._replace(attempt=2, status="ok", error_kind=None, tools=None, extra=None, retry_delay_s=0.0),
        _event()._replace(attempt=3, tokens_in=0, tokens_out=2**62, cost_usd=0.0, model="NULL", approver=""),
        _event()._replace(attempt=4, map_index=0, parent_run_id="0", error_message="-6917529027641081856"),
        _event()._replace(attempt=5, latency_s=1, queue_s=0, cost_usd=3),  # same NULLs as the first, other types
    ]
    events = [variants[i % 5]._replace(run_id=f"r{i % 3}", attempt=i) for i in range(700)]
    rows = [event_row(e, "ok" if i % 5 else None, "{}" if i % 2 else None, None) for i, e in enumerate(events)]
    together, alone = Store(tmp_path / "together.db"), Store(tmp_path / "alone.db")
    lone = Store(tmp_path / "lone.db", synchronous="normal")
    try:
        together.writer.run(None, [("journal", row) for row in rows])
        for row in rows:
            alone.do(lambda conn, row=row: conn.execute(JOURNAL_INSERT, row))
        for row in rows[:60]:  # one row per write: its seq remembered, or read once per run
            lone.writer.run(None, [("journal", row)])
        expected, actual = _typed_journal(alone), _typed_journal(together)
        one_by_one = _typed_journal(lone)
        ordered = [e.attempt for e in together.events("r1")]
    finally:
        together.close()
        alone.close()
        lone.close()
    assert 700 == len(actual)
    assert expected == actual
    assert [r for r in expected if r[0] <= 20] == one_by_one  # each run's first 20 rows
    assert list(range(1, 700, 3)) == ordered


def test_a_missing_required_value_is_still_refused_in_a_bulk_write(tmp_path: Path) -> None:
    """A None in a NOT NULL column is written as NULL: SQLite refuses it, alone or with others, as a bound None."""
    store = Store(tmp_path / "j.db")
    good = event_row(_event())
    bad = list(good)
    bad[1 + COLUMNS.index("status")] = None
    try:
        with pytest.raises(wf.StoreCorruptError, match=r"NOT NULL constraint failed: journal\.status"):
            store.writer.run(None, [("journal", good), ("journal", tuple(bad))])
        with pytest.raises(wf.StoreCorruptError, match=r"NOT NULL constraint failed: journal\.status"):
            store.writer.run(None, [("journal", tuple(bad))])
        stored = store.read("SELECT COUNT(*) FROM journal")[0][0]
    finally:
        store.close()
    assert 0 == stored
