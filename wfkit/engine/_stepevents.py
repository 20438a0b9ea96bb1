"""A run's step events: how an attempt becomes a row (``EventMaker``) and who hears of it (``Outlet``).

Every part of the engine describes what happened as a :class:`~wfkit.model.StepEvent`, one per
attempt (and one per gate decision, visit-limit breach or parked sub-workflow): the maker stamps
the run's identity on it and passes it through the run's processors (redaction, truncation), so
no row reaches the journal or a sink unprocessed. The outlet hands finished rows to the run's
event list, the user's sinks and the live observers (a widget, a parent run), in that order.

The durability layer decides *when* a row is handed to the outlet (after its checkpoint is
durable); the outlet only delivers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from wfkit.engine._activations import Activation, Outcome, error_text
from wfkit.model._events import Status, StepEvent
from wfkit.model._processors import Processor, only_text
from wfkit.model._retry import ErrorKind

HOST = socket.gethostname()
"""This machine's name, on every row."""
_new_row = tuple.__new__

Observer = Callable[[StepEvent | None], object]
"""A live view of a run: hears each event, and None when the run's status changed (it ended or halted)."""


class Emit(Protocol):
    """Hand an event to the sinks; ``record=False`` when the run's event list holds it already."""

    def __call__(self, event: StepEvent, *, record: bool = True) -> None: ...


# The processors tuple last asked about and the answer: a workflow hands the same tuple to each
# of its runs, and asking anew costs a run more than a step does.
_last_asked: tuple[tuple[Processor, ...], bool] = ((), True)


def _only_text(processors: tuple[Processor, ...]) -> bool:
    """:func:`only_text`, remembered for the last tuple asked about (a processor's answer never
    changes: the built-in ones are known from their making)."""
    global _last_asked
    asked, answer = _last_asked
    if asked is not processors:
        answer = only_text(processors)
        _last_asked = (processors, answer)
    return answer


class EventMaker:
    """Builds one run's step events: its identity stamped on, its processors applied."""

    __slots__ = ("_processors", "only_text", "parameters_hash", "parent_run_id", "run_id", "version", "workflow")

    def __init__(
        self,
        run_id: str,
        workflow: str,
        version: str,
        parameters_hash: str | None,
        processors: tuple[Processor, ...],
        parent_run_id: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.version = version
        self.parameters_hash = parameters_hash
        self.parent_run_id = parent_run_id  # set when the run is a sub-workflow of another
        self._processors = processors  # applied in a loop here: no closure per run
        # A row with no error, comment or extra passes the processors unchanged (the scheduler's
        # inline settle reads this too: it builds its rows itself).
        self.only_text = _only_text(processors)

    def event(
        self,
        step: str,
        visit: int,
        attempt: int,
        status: str,
        error: BaseException | None,
        kind: ErrorKind | None,
        started_at: float,
        latency: float,
        queue_s: float,
        retry_delay: float | None,
        route: str | None,
        tools: tuple[str, ...],
        usage: Mapping[str, Any] | None,
        map_index: int | None = None,
        **fields: Any,
    ) -> StepEvent:
        """One row; ``usage`` is what the step recorded (model, tokens, cost, extra)."""
        if usage is None:
            model = tokens_in = tokens_out = cost = extra = model_latency = ttft = None
        else:
            model, tokens_in, tokens_out = usage.get("model"), usage.get("tokens_in"), usage.get("tokens_out")
            cost, extra, model_latency = usage.get("cost_usd"), usage.get("extra"), usage.get("model_latency_s")
            ttft = usage.get("ttft_s")
        # Positional, straight into the tuple: the NamedTuple's own __new__ is one Python call more
        # per attempt. In StepEvent's field order (a test checks it), written out to the last field
        # (durable_wait_s, None: a row is made before its checkpoint; then model_latency_s, ttft_s): a
        # starred tail would build the row through a list, a third more work per row.
        event: StepEvent = _new_row(
            StepEvent,
            (
                self.run_id,
                self.workflow,
                self.version,
                step,
                visit,
                attempt,
                status,
                None if kind is None else kind.value,
                None if error is None else type(error).__name__,
                None if error is None else error_text(error),
                started_at,
                started_at + latency,
                latency,
                queue_s,
                retry_delay,
                route,
                tools,
                model,
                tokens_in,
                tokens_out,
                cost,
                None,
                None,
                self.parameters_hash,
                HOST,
                extra,
                map_index,
                self.parent_run_id,
                None,
                model_latency,
                ttft,
            ),
        )
        if fields:
            event = event._replace(**fields)
        elif error is None and extra is None and self.only_text:
            return event  # nothing the processors would change
        return self.processed(event)

    def ended_before(
        self, step: str, visit: int, error: BaseException, route: str | None, tools: tuple[str, ...]
    ) -> StepEvent:
        """The row of a step visit that ends the run (or leaves to ``route``, its fallback) before
        the step ran: attempt 0, failed, a permanent error (a visit bound met, a gate that the
        approval policy fails)."""
        return self.event(
            step, visit, 0, Status.FAILED, error, ErrorKind.PERMANENT, time.time(), 0.0, 0.0, None, route, tools, None
        )

    def ok(
        self,
        step: str,
        visit: int,
        started_at: float,
        latency: float,
        queue_s: float,
        route: str | None,
        tools: tuple[str, ...],
    ) -> StepEvent:
        """The row of a first attempt that succeeded with nothing recorded (no usage, not a map
        item): most rows of a run in memory. :meth:`event` with those arguments, one call and
        eight arguments less per step (a test holds the two equal)."""
        event: StepEvent = _new_row(
            StepEvent,
            (
                self.run_id,
                self.workflow,
                self.version,
                step,
                visit,
                1,
                Status.OK,
                None,
                None,
                None,
                started_at,
                started_at + latency,
                latency,
                queue_s,
                None,
                route,
                tools,
                None,
                None,
                None,
                None,
                None,
                None,
                self.parameters_hash,
                HOST,
                None,
                None,
                self.parent_run_id,
                None,
                None,
                None,
            ),
        )
        if self.only_text:
            return event  # no text, no error, no extra: nothing the processors would change
        return self.processed(event)

    def processed(self, event: StepEvent) -> StepEvent:
        """``event`` passed through the run's processors, in order."""
        for process in self._processors:
            event = process(event)
        return event

    def outcome(self, act: Activation, out: Outcome, route: str | None) -> StepEvent:
        """The row of an activation's last attempt (the one that decided its outcome)."""
        return self.event(
            act.spec.name,
            act.visit,
            out.attempt,
            out.status,
            out.error,
            out.kind,
            out.started_at,
            out.latency,
            out.queue_s,
            None,
            route,
            act.tools,
            out.usage,
            act.index,
            **({} if out.not_retried is None else {"error_message": out.error_message()}),
        )

    def gate(self, act: Activation, status: str, at: float, **fields: Any) -> StepEvent:
        """A row for a gate (ticket opened, decision applied): attempt 0, no latency."""
        return self.event(
            act.spec.name, act.visit, 0, status, None, None, at, 0.0, 0.0, None, None, act.tools, None, **fields
        )


class Outlet:
    """Delivers a run's events: to its event list, the user's sinks, then the live observers.

    The outlet is itself an :class:`Emit` (calling it emits), so the durability layer is handed
    the outlet, not a bound method of it: one object less per run.

    A row no one hears as it happens (a run in memory with no sink, no live view, and processors
    that leave such a row as it is) may be kept compact in ``rows``: the scheduler's inline settle
    appends ``(step, visit, started_at, latency, queue_s, route, tools)`` and sets ``compact``.
    Such a row becomes the StepEvent ``EventMaker.ok`` makes of it when the events are read
    (:attr:`events`): building the row was a tenth of the engine's own work per step of an
    in-memory chain, and of the memory each run in flight holds.
    """

    __slots__ = ("compact", "make_ok", "observers", "rows", "sinks")

    def __init__(
        self, sinks: tuple[Callable[[StepEvent], object], ...], make_ok: Callable[..., StepEvent] | None = None
    ) -> None:
        self.rows: list[StepEvent | tuple[Any, ...]] = []  # the events, some of them compact
        self.compact = False  # whether some row of ``rows`` is compact (only with ``make_ok``)
        self.make_ok = make_ok
        self.sinks = sinks  # read by the scheduler's inline settle too, which delivers its rows itself
        self.observers: list[Observer] = []  # live views; the Run handle may swap in its own list

    @property
    def events(self) -> list[StepEvent]:
        """The run's events so far, in the order they were emitted (compact rows made now)."""
        rows = self.rows
        if self.compact:
            # Cleared first: a row kept while this reads (from another thread) is made by the next read.
            self.compact = False
            make = self.make_ok
            assert make is not None  # who keeps compact rows hands the outlet their maker
            for at in range(len(rows)):
                row = rows[at]
                if type(row) is tuple:
                    rows[at] = make(*row)
        return rows  # type: ignore[return-value]  # every row is a StepEvent now

    def emit(self, event: StepEvent, *, record: bool = True) -> None:
        """Hand ``event`` on. ``record=False``: the event list holds it already (read from the
        journal on resume); only the sinks and observers hear of it."""
        if record:
            self.rows.append(event)
        for sink in self.sinks:
            sink(event)
        for observer in self.observers:
            observer(event)

    __call__ = emit

    def status_changed(self) -> None:
        """Tell the live views the run ended or halted."""
        for observer in self.observers:
            observer(None)
