"""Unit tests for wfkit.engine._stepevents: how an attempt becomes a row, and who hears of it."""

from __future__ import annotations

from typing import Any

from wfkit.engine._stepevents import EventMaker, Outlet
from wfkit.model._events import FIELDS, Status, StepEvent
from wfkit.model._processors import DEFAULT_PROCESSORS, only_text, redact_secrets, truncate
from wfkit.model._retry import ErrorKind


def _row(make: EventMaker, **kwargs: Any) -> StepEvent:
    args: dict[str, Any] = {
        "error": None,
        "kind": None,
        "usage": None,
        "route": "next",
    }
    args.update(kwargs)
    return make.event(
        "fetch",
        2,
        3,
        Status.OK,
        args["error"],
        args["kind"],
        100.0,
        0.25,
        0.5,
        None,
        args["route"],
        ("search",),
        args["usage"],
        7,
    )


def test_a_row_carries_every_field_in_step_event_order() -> None:
    """Filled positionally, each value lands in the field of its name; later fields keep their defaults."""
    make = EventMaker("r1", "triage", "v1", "ph", (), parent_run_id="p1")
    usage = {"model": "m", "tokens_in": 5, "tokens_out": 6, "cost_usd": 0.5, "extra": {"k": 1}}
    event = _row(make, usage=usage)
    expected = StepEvent(
        run_id="r1",
        workflow="triage",
        workflow_version="v1",
        step="fetch",
        visit=2,
        attempt=3,
        status=Status.OK,
        started_at=100.0,
        ended_at=100.25,
        latency_s=0.25,
        queue_s=0.5,
        route_taken="next",
        tools=("search",),
        model="m",
        tokens_in=5,
        tokens_out=6,
        cost_usd=0.5,
        parameters_hash="ph",
        host=event.host,
        extra={"k": 1},
        map_index=7,
        parent_run_id="p1",
    )
    assert expected == event
    assert type(event) is StepEvent
    assert len(FIELDS) == len(event)
    assert event.host


def test_the_built_in_processors_are_known_to_change_only_text() -> None:
    """Redaction and truncation (any limit) are text-only; a user's processor is not assumed to be."""

    def tag(event: StepEvent) -> StepEvent:
        return event._replace(model="tagged")

    assert only_text(DEFAULT_PROCESSORS)
    assert only_text((redact_secrets, truncate(10)))
    assert not only_text((redact_secrets, tag))


def test_a_row_without_text_skips_the_built_in_processors_and_equals_their_result() -> None:
    """A row with no error, comment or extra is the same whether or not the built-in processors ran on it."""
    make = EventMaker("r1", "triage", "v1", None, DEFAULT_PROCESSORS)
    event = _row(make)
    processed = event
    for processor in DEFAULT_PROCESSORS:
        processed = processor(processed)
    assert processed == event


def test_a_user_processor_still_sees_a_row_without_text() -> None:
    """Only the built-in processors are skipped: a user's processor runs on every row."""

    def tag(event: StepEvent) -> StepEvent:
        return event._replace(model="tagged")

    make = EventMaker("r1", "triage", "v1", None, (*DEFAULT_PROCESSORS, tag))
    assert "tagged" == _row(make).model


def test_processors_apply_in_order() -> None:
    """A run's processors apply left to right: redacted first, so the truncated size is the redacted one."""

    def mark(tag: str) -> Any:
        return lambda e: e._replace(error_message=(e.error_message or "") + tag)

    make = EventMaker("r1", "triage", "v1", None, (mark("a"), mark("b")))
    assert "xab" == _row(make, error=RuntimeError("x"), kind=ErrorKind.PERMANENT).error_message
    make = EventMaker("r1", "triage", "v1", None, (redact_secrets, truncate(20)))
    error = RuntimeError("sk-abcdefghijklmnop1234 " + "z" * 30)
    message = _row(make, error=error, kind=ErrorKind.PERMANENT).error_message
    assert f"[REDACTED] {'z' * 9}... [truncated: 41 chars]" == message


def test_a_row_with_an_error_is_still_redacted() -> None:
    """A failed attempt's message passes through the built-in processors (a key in it is redacted)."""
    make = EventMaker("r1", "triage", "v1", None, DEFAULT_PROCESSORS)
    error = RuntimeError("bad key sk-abcdefghijklmnopqrstuvwx")
    event = _row(make, error=error, kind=ErrorKind.PERMANENT)
    assert "RuntimeError" == event.error_type
    assert "sk-abcdefghijklmnop" not in (event.error_message or "")
    assert "[REDACTED]" in (event.error_message or "")


def test_the_outlet_delivers_to_its_list_the_sinks_then_the_observers_and_is_callable() -> None:
    """Calling the outlet emits; record=False skips only the run's own list."""
    heard: list[tuple[str, Any]] = []
    outlet = Outlet((lambda e: heard.append(("sink", e.step)),))
    outlet.observers.append(lambda e: heard.append(("observer", None if e is None else e.step)))
    make = EventMaker("r1", "triage", "v1", None, ())
    first, second = _row(make), _row(make)._replace(step="parse")
    outlet(first)
    outlet.emit(second, record=False)
    outlet.status_changed()
    assert [first] == outlet.events
    assert [
        ("sink", "fetch"),
        ("observer", "fetch"),
        ("sink", "parse"),
        ("observer", "parse"),
        ("observer", None),
    ] == heard


def test_the_ok_row_is_the_row_event_makes_for_a_plain_first_attempt() -> None:
    """EventMaker.ok equals EventMaker.event for a first attempt that succeeded with no usage and no map item."""
    make = EventMaker("r1", "triage", "v1", "ph", (), parent_run_id="p1")
    full = make.event("fetch", 2, 1, Status.OK, None, None, 100.0, 0.25, 0.5, None, "next", ("search",), None, None)
    ok = make.ok("fetch", 2, 100.0, 0.25, 0.5, "next", ("search",))
    assert (full, StepEvent) == (ok, type(ok))


def test_the_ok_row_goes_through_a_processor_that_may_change_more_than_text() -> None:
    """A user's processor sees the ok row too (it is not known to change only text)."""

    def tag(event: StepEvent) -> StepEvent:
        return event._replace(model="tagged")

    make = EventMaker("r1", "triage", "v1", None, (tag,))
    assert "tagged" == make.ok("fetch", 1, 100.0, 0.25, 0.5, None, ()).model


def test_makers_of_different_processor_tuples_each_get_their_own_answer() -> None:
    """Makers built in turn with the built-in processors and with a user's each get their tuple's own answer."""

    def tag(event: StepEvent) -> StepEvent:
        return event._replace(model="tagged")

    mixed = (*DEFAULT_PROCESSORS, tag)
    models = []
    for processors in (DEFAULT_PROCESSORS, mixed, mixed, DEFAULT_PROCESSORS, DEFAULT_PROCESSORS, mixed):
        make = EventMaker("r1", "triage", "v1", None, processors)
        models.append(make.ok("fetch", 1, 100.0, 0.25, 0.5, None, ()).model)
    assert [None, "tagged", "tagged", None, None, "tagged"] == models


def test_compact_rows_become_the_events_event_maker_makes_when_read() -> None:
    """Rows kept compact (no one heard them as they happened) are made with ``EventMaker.ok`` when
    the events are read, in their place among the others; one kept after a read is made by the next."""
    make = EventMaker("r1", "triage", "v1", "p1", ())
    outlet = Outlet((), make.ok)
    failed = _row(make, error=RuntimeError("boom"), kind=ErrorKind.PERMANENT)
    outlet.rows.append(("fetch", 1, 10.0, 0.5, 0.01, "parse", ()))
    outlet.compact = True
    outlet(failed)
    outlet.rows.append(("parse", 1, 11.0, 0.25, 0.0, None, ("search",)))
    first = outlet.events
    assert [
        make.ok("fetch", 1, 10.0, 0.5, 0.01, "parse", ()),
        failed,
        make.ok("parse", 1, 11.0, 0.25, 0.0, None, ("search",)),
    ] == first
    assert all(type(e) is StepEvent for e in first)
    outlet.rows.append(("end", 1, 12.0, 0.1, 0.0, None, ()))
    outlet.compact = True
    assert make.ok("end", 1, 12.0, 0.1, 0.0, None, ()) == outlet.events[-1]
    assert first is outlet.events  # one list: what a caller holds stays the run's
