"""Unit tests for wfkit.model._events: the StepEvent record and sink normalisation."""

from __future__ import annotations

import datetime as dt

import pytest

import wfkit.model._events
from wfkit.model._events import FIELDS, SinkObject, Status, StepEvent, as_callables

EXPECTED_FIELDS = (
    "run_id",
    "workflow",
    "workflow_version",
    "step",
    "visit",
    "attempt",
    "status",
    "error_kind",
    "error_type",
    "error_message",
    "started_at",
    "ended_at",
    "latency_s",
    "queue_s",
    "retry_delay_s",
    "route_taken",
    "tools",
    "model",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "approver",
    "decision_comment",
    "parameters_hash",
    "host",
    "extra",
    "map_index",
    "parent_run_id",
    "durable_wait_s",  # appended: fields are added at the end, never changed
    "model_latency_s",
    "ttft_s",
)


def make_event(**overrides: object) -> StepEvent:
    """A StepEvent with the required fields filled in."""
    fields: dict[str, object] = {
        "run_id": "r1",
        "workflow": "triage",
        "workflow_version": "v1",
        "step": "classify",
        "visit": 1,
        "attempt": 1,
        "status": Status.OK,
    }
    fields.update(overrides)
    return StepEvent(**fields)  # type: ignore[arg-type]


# --- fields -------------------------------------------------------------------------------------


def test_fields_are_the_step_log_columns_in_order():
    """StepEvent's fields are exactly the step-log columns, in their documented order."""
    assert EXPECTED_FIELDS == StepEvent._fields


def test_module_fields_constant_matches_step_event():
    """wfkit.model._events.FIELDS is StepEvent's field tuple."""
    assert StepEvent._fields == wfkit.model._events.FIELDS
    assert EXPECTED_FIELDS == FIELDS


def test_only_identity_fields_are_required():
    """Only run_id through status are required; every other field has a default."""
    assert EXPECTED_FIELDS[7:] == tuple(StepEvent._field_defaults)
    with pytest.raises(TypeError):
        StepEvent("r1", "wf", "v1", "s", 1, 1)  # type: ignore[call-arg]


def test_defaults():
    """Optional fields default to None, and times and durations to 0.0."""
    event = make_event()
    assert 0.0 == event.started_at == event.ended_at == event.latency_s == event.queue_s
    for name in EXPECTED_FIELDS[7:]:
        if name not in ("started_at", "ended_at", "latency_s", "queue_s"):
            assert getattr(event, name) is None, name


def test_positional_construction_follows_field_order():
    """Positional arguments fill the fields in FIELDS order."""
    values = tuple(f"v{i}" for i in range(len(FIELDS)))
    event = StepEvent(*values)  # type: ignore[arg-type]
    assert dict(zip(FIELDS, values, strict=True)) == event._asdict()


def test_as_dict_has_one_key_per_field():
    """_asdict() gives a row keyed by field name, ready for a table."""
    event = make_event(model="gpt-x", tokens_in=10, extra={"k": 1})
    row = event._asdict()
    assert list(EXPECTED_FIELDS) == list(row)
    assert ("gpt-x", 10, {"k": 1}) == (row["model"], row["tokens_in"], row["extra"])


# --- immutability ------------------------------------------------------------------------------


def test_event_is_immutable():
    """Assigning to a field of a StepEvent raises AttributeError."""
    event = make_event()
    with pytest.raises(AttributeError):
        event.status = Status.FAILED  # type: ignore[misc]


def test_event_cannot_gain_attributes():
    """A StepEvent cannot be given new attributes."""
    event = make_event()
    with pytest.raises(AttributeError):
        event.note = "x"  # type: ignore[attr-defined]


def test_replace_returns_a_new_event():
    """_replace makes a changed copy and leaves the original untouched."""
    event = make_event()
    changed = event._replace(status=Status.RETRY, attempt=2)
    assert (Status.OK, 1) == (event.status, event.attempt)
    assert (Status.RETRY, 2) == (changed.status, changed.attempt)


def test_events_with_equal_fields_are_equal():
    """Two events with the same field values compare equal and hash alike."""
    assert make_event(latency_s=0.5) == make_event(latency_s=0.5)
    assert hash(make_event(tools=("a",))) == hash(make_event(tools=("a",)))


# --- datetimes ----------------------------------------------------------------------------------


def test_started_and_ended_are_aware_utc_datetimes():
    """.started and .ended convert the epoch-second floats to timezone-aware UTC datetimes."""
    event = make_event(started_at=1_700_000_000.25, ended_at=1_700_000_003.75)
    expected_start = dt.datetime(2023, 11, 14, 22, 13, 20, 250_000, tzinfo=dt.UTC)
    assert expected_start == event.started
    assert expected_start + dt.timedelta(seconds=3.5) == event.ended
    for value in (event.started, event.ended):
        assert value.tzinfo is not None
        assert dt.timedelta(0) == value.utcoffset()


def test_started_default_is_the_epoch():
    """With the default started_at 0.0, .started is the Unix epoch in UTC."""
    assert dt.datetime(1970, 1, 1, tzinfo=dt.UTC) == make_event().started


def test_started_round_trips_to_the_timestamp():
    """.started.timestamp() gives back started_at."""
    event = make_event(started_at=1_234_567_890.5)
    assert 1_234_567_890.5 == event.started.timestamp()


# --- Status -------------------------------------------------------------------------------------


def test_status_values():
    """Status holds the string values written to the status column."""
    expected = {
        "OK": "ok",
        "RETRY": "retry",
        "FAILED": "failed",
        "TIMEOUT": "timeout",
        "WAITING_APPROVAL": "waiting_approval",
        "APPROVED": "approved",
        "REJECTED": "rejected",
        "SKIPPED": "skipped",
        "CACHED": "cached",
        "CANCELLED": "cancelled",
    }
    actual = {k: v for k, v in vars(Status).items() if k.isupper()}
    assert expected == actual


# --- as_callables -------------------------------------------------------------------------------


def test_plain_callable_sink_is_kept():
    """A plain function sink is returned as is and receives events when called."""
    seen: list[StepEvent] = []
    callables = as_callables([seen.append])
    event = make_event()
    callables[0](event)
    assert [event] == seen


def test_object_with_emit_becomes_its_bound_emit():
    """An object with .emit(event) is turned into its bound emit method."""

    class Collector:
        def __init__(self) -> None:
            self.events: list[StepEvent] = []

        def emit(self, event: StepEvent) -> None:
            self.events.append(event)

    sink = Collector()
    (fn,) = as_callables([sink])
    event = make_event()
    fn(event)
    assert [event] == sink.events
    assert isinstance(sink, SinkObject)


def test_emit_is_preferred_over_call():
    """An object that is callable and has .emit is used through .emit."""

    class Both:
        def __init__(self) -> None:
            self.via: list[str] = []

        def emit(self, event: StepEvent) -> None:
            self.via.append("emit")

        def __call__(self, event: StepEvent) -> None:
            self.via.append("call")

    sink = Both()
    as_callables([sink])[0](make_event())
    assert ["emit"] == sink.via


def test_callable_with_non_callable_emit_attribute_is_called():
    """A callable whose emit attribute is not callable is used as a plain callable."""

    class Odd:
        emit = "not a method"

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, event: StepEvent) -> None:
            self.calls += 1

    sink = Odd()
    as_callables([sink])[0](make_event())
    assert 1 == sink.calls


def test_as_callables_keeps_order_and_accepts_any_iterable():
    """as_callables returns a tuple in the sinks' order from any iterable, e.g. a generator."""
    order: list[int] = []
    sinks = (lambda e, i=i: order.append(i) for i in range(3))
    callables = as_callables(sinks)
    assert isinstance(callables, tuple)
    for fn in callables:
        fn(make_event())
    assert [0, 1, 2] == order


def test_no_sinks_gives_empty_tuple():
    """No sinks gives an empty tuple."""
    assert () == as_callables([])


@pytest.mark.parametrize("bad", ["events.jsonl", 42, None, object()])
def test_non_callable_sink_is_rejected(bad):
    """A sink that is neither callable nor has .emit raises TypeError saying what a sink is."""
    with pytest.raises(TypeError, match=r"a sink must be callable or have .emit\(event\), got "):
        as_callables([print, bad])


def test_token_chunks_carry_where_the_text_was_streamed() -> None:
    """A TokenChunk names run, step, visit, attempt, text, time and map item (None by default)."""
    chunk = wfkit.TokenChunk("r1", "write", 1, 2, "hello", 10.0)
    assert ("r1", "write", 1, 2, "hello", 10.0, None) == tuple(chunk)
