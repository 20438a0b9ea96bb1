"""Rows of the journal: how a step event (and a checkpoint's updates) is written to SQLite and
read back, and how state is encoded as JSON with an error that names the step and the field."""

from __future__ import annotations

import json
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
