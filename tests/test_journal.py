"""Journal rows: a step event written as a row and read back unchanged; state encoded as JSON."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import wfkit as wf
from wfkit.store._journal import encode_state, encode_updates, event_from_row, event_row
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
    """Tools (a tuple) and extra (a dict) survive the JSON columns; outcome columns ride along."""
    event = _event()
    row = event_row(event, "ok", '{"x": 1}', None)
    assert ("r1", "r1") == (row[0], row[1])  # the run id feeds the per-run sequence, then the column
    assert ("ok", '{"x": 1}', None) == row[-3:]
    assert event == event_from_row(row[1:-3])


def test_state_that_json_cannot_hold_names_step_and_field() -> None:
    """A datetime in a step's updates is refused with the step, the field and a fix."""
    assert '{"a":1}' == encode_updates("s", {"a": 1})
    with pytest.raises(wf.StateValueError, match=r"step 'load' wrote state field 'when' = datetime.*ISO string"):
        encode_updates("load", {"ok": 1, "when": datetime.datetime(2026, 1, 1)})
    with pytest.raises(wf.StateValueError, match="the run's inputs state field 'tags' = set"):
        encode_state("the run's inputs", {"tags": {"a"}})


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
