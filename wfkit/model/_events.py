"""Step events: one immutable record per attempt of a step, handed to sinks.

The fields are the columns of the step log. They are appended to, never changed in type, so a
sink written today keeps working when a field is added.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol, TypeAlias, runtime_checkable


class Status:
    """The values of :attr:`StepEvent.status`."""

    OK = "ok"
    RETRY = "retry"  # the attempt failed and another attempt follows
    FAILED = "failed"  # the attempt failed and the step gave up
    TIMEOUT = "timeout"  # the attempt ran out of time (another may follow: see retry_delay_s)
    WAITING_APPROVAL = "waiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    CACHED = "cached"  # the step's result came from the cache: its body did not run
    # The attempt was stopped from outside (run.cancel(), the stop button, Ctrl-C, a sibling
    # branch's failure ending the run): no failure of the step, and no retry spent (resume runs it
    # again with its whole budget). Its row keeps error_type CancelledError and no error_kind.
    CANCELLED = "cancelled"


class StepEvent(NamedTuple):
    """One attempt of one step. Times are seconds since the epoch (UTC); see ``started``."""

    run_id: str
    workflow: str
    workflow_version: str
    step: str
    visit: int
    attempt: int
    status: str
    error_kind: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    latency_s: float = 0.0
    # From when the step became due (the body of the step before it returned, or it was queued) to
    # its first attempt's start: the scheduler's own time between two steps counts here, and a plain
    # function's wait for a thread of the step pool.
    queue_s: float = 0.0
    retry_delay_s: float | None = None
    route_taken: str | None = None
    tools: tuple[str, ...] | None = None
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    approver: str | None = None
    decision_comment: str | None = None
    parameters_hash: str | None = None
    host: str | None = None
    extra: dict[str, Any] | None = None
    # Appended fields (never retyped): the item of a map step this attempt ran (None otherwise),
    # and the run that started this one as a sub-workflow (None for a top-level run).
    map_index: int | None = None
    parent_run_id: str | None = None
    # How long the run waited, after the body returned, for this attempt's checkpoint to be
    # durable (encoding, the writer's queue, the commit and its fsync). None when nothing was
    # checkpointed (a retry, a crashed attempt, a run kept in memory), and in the stored row of a
    # checkpoint whose wait its process did not write before it was killed (at most its last 32:
    # the waits ride in later writes). Unknown, never 0. Never part of latency_s.
    durable_wait_s: float | None = None
    # The time this attempt's model calls took, in seconds: the sum of its calls (``ctx.llm``'s
    # own, or what a step gave ``ctx.record(model_latency_s=...)``), a failed call's up to its
    # failure; None when it called none. Part of latency_s (the calls run inside the body), so a
    # slow model is told from slow code; calls made at once can add up to more than it.
    model_latency_s: float | None = None
    # Time to first token: of this attempt's streamed calls (``ctx.llm.stream``, or what a step
    # gave ``ctx.record(ttft_s=...)``), the first to stream anything: the seconds from its request
    # to its first reasoning, text or tool call (when the model began to answer at all), what a
    # user comparing endpoints and models waits to see; None when the attempt streamed nothing
    # (no stream, or each failed before its first token). Part of model_latency_s.
    ttft_s: float | None = None

    @property
    def started(self) -> _dt.datetime:
        """``started_at`` as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.started_at, _dt.UTC)

    @property
    def ended(self) -> _dt.datetime:
        """``ended_at`` as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.ended_at, _dt.UTC)


FIELDS: tuple[str, ...] = StepEvent._fields


class TokenChunk(NamedTuple):
    """A piece of text an LLM streamed to a step (``ctx.llm.stream``), as it arrived.

    Handed to observers and streams that asked for chunks (``run.stream(chunks=True)``); never
    journaled or written to the step log (the attempt's event carries the totals)."""

    run_id: str
    step: str
    visit: int
    attempt: int
    text: str
    at: float
    map_index: int | None = None


@runtime_checkable
class SinkObject(Protocol):
    """A sink with an ``emit`` method; a plain callable taking one event also works."""

    def emit(self, event: StepEvent) -> None: ...


Sink: TypeAlias = Callable[[StepEvent], object] | SinkObject


def as_callables(sinks: Iterable[Sink]) -> tuple[Callable[[StepEvent], object], ...]:
    """Normalise sinks to plain callables once per run, so emitting is one call per sink."""
    out: list[Callable[[StepEvent], object]] = []
    for sink in sinks:
        emit = getattr(sink, "emit", None)
        if callable(emit):
            out.append(emit)
        elif callable(sink):
            out.append(sink)
        else:
            raise TypeError(f"a sink must be callable or have .emit(event), got {sink!r}")
    return tuple(out)
