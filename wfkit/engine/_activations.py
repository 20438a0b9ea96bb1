"""What the engine's parts hand each other: an activation (a step about to run), a map step's
batch of items, an activation's outcome, and an attempt a crash cut off.

The scheduler (``_engine``) creates activations and settles outcomes; the attempt runner
(``_attempts``) turns an activation into an outcome; the durability layer (``_durability``)
checkpoints outcomes and finds, on resume, the attempts a crash cut off. Plain data, no behaviour
beyond building an item's activation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from wfkit.engine._subflows import ChildHalted
from wfkit.model._context import Failure
from wfkit.model._errors import StateKeyError
from wfkit.model._events import Status
from wfkit.model._retry import NOT_RETRIED, ErrorKind
from wfkit.model._steps import StepSpec
from wfkit.model._suggest import did_you_mean


class CutOff(NamedTuple):
    """An attempt a crash cut off, found on resume: ``started_at`` set when its body was running
    (it counts as a failed attempt), None when the step was waiting out a backoff until
    ``not_before`` (the attempt after it never ran). ``crashes``: crashes recorded before, of
    which ``child_crashes`` came while the step's sub-workflow child run ran. ``child``: the child
    run this crash came inside of (a sub-workflow step whose child was running), else None."""

    attempt: int
    started_at: float | None
    not_before: float | None
    crashes: int
    child_crashes: int = 0
    child: str | None = None


class Activation:
    """One scheduled execution of a step (or of one item of a map step: ``batch`` is set)."""

    __slots__ = ("batch", "failure", "index", "item", "queued", "spec", "tools", "version", "view", "visit")

    def __init__(
        self,
        spec: StepSpec,
        visit: int,
        tools: tuple[str, ...],
        version: int,
        failure: Failure | None,
        view: Mapping[str, Any],
        queued: float,
    ) -> None:
        self.spec = spec
        self.visit = visit
        self.tools = tools
        self.version = version  # state version when queued: later writes by others are conflicts
        self.failure = failure
        # When it became due (perf_counter): its queue time runs from here to its first attempt.
        # A successor is due once its predecessor's body returned, so the scheduler hands in that
        # moment (no clock read per activation): the settling of the predecessor is part of the
        # successor's wait, as it is.
        self.queued = queued
        # The state as of activation (``snapshot``): a parallel sibling's later commit is not
        # visible, so what a step sees depends on the graph, not on timing (and a resumed step
        # sees what it saw).
        self.view = view
        self.batch: Batch | None = None
        self.index: int | None = None
        self.item: Any = None

    # An activation that settled and that nothing holds any more, made the activation of another
    # step (or visit) in place: the scheduler's successor of a settled step, without allocating.
    reset = __init__

    def for_item(self, batch: Batch, index: int, item: Any) -> Activation:
        """The activation of one item of this map step: same step, visit and view (not copied)."""
        act = Activation.__new__(Activation)
        act.spec, act.visit, act.tools, act.version, act.failure = self.spec, self.visit, self.tools, 0, None
        act.view, act.queued = self.view, time.perf_counter()
        act.batch, act.index, act.item = batch, index, item
        return act


def error_text(error: BaseException | None) -> str:
    """An attempt's error as its row and the run's error say it: its message, and for a forgotten
    ``await`` (Python's message names the coroutine, never the missing keyword) how to fix it."""
    text = str(error)
    if isinstance(error, (AttributeError, TypeError)) and "'coroutine' object" in text:
        text += " (a coroutine: `await` the call that made it, as in reply = await ctx.llm.complete(...))"
    return text


class Fields(dict[str, Any]):
    """The copy of the state under a step's read-only view. A field it lacks (``state["topic"]`` on
    a run given ``{"topc": ...}``) raises a ``StateKeyError`` (a ``KeyError``, ``args[0]`` the field)
    saying what the state holds and how to fix it, where a bare ``KeyError: 'topic'`` said neither.
    A field it holds is read as fast as from a ``dict`` (``__missing__`` is consulted on a miss
    only), and ``get`` and ``in`` stay quiet."""

    __slots__ = ()

    def __missing__(self, key: Any) -> Any:
        held = sorted(map(str, self))
        more = f" and {len(held) - 20} more" if len(held) > 20 else ""
        holds = f"it holds {held[:20]}{more}" if held else "it is empty"
        raise StateKeyError(
            key,
            f"the state has no field {key!r}: {holds}{did_you_mean(str(key), held)}; pass it in the run's "
            f"inputs, return it from a step that runs before this one, or, if it is optional, read it "
            f"with state.get({key!r})",
        )


def snapshot(state: dict[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of ``state`` for activations to share until the state changes."""
    return MappingProxyType(Fields(state))


class Batch:
    """The items of one activation of a map step: what is queued, running and finished."""

    __slots__ = ("act", "done", "failed", "items", "pending", "results", "running", "started")

    def __init__(self, act: Activation, items: list[Any], done: Mapping[int, Any]) -> None:
        self.act = act
        self.items = items
        self.results: list[Any] = [None] * len(items)
        for index, result in done.items():  # finished before a resume: never run again
            if index < len(items):
                self.results[index] = result
        self.done = sum(1 for i in done if i < len(items))
        self.pending = [i for i in range(len(items) - 1, -1, -1) if i not in done]  # popped from the end
        self.running = 0
        self.failed = False
        self.started = time.perf_counter()


class Outcome:
    """How an activation ended: updates on success, the error otherwise, and the last attempt's timing."""

    __slots__ = (
        "attempt",
        "body_end",
        "encoded",
        "error",
        "halted",
        "kind",
        "latency",
        "not_retried",
        "queue_s",
        "run_timeout",
        "started_at",
        "status",
        "updates",
        "usage",
        "value",
    )

    def __init__(self) -> None:
        self.updates: Mapping[str, Any] | None = None
        self.value: Any = None  # a map item's result
        self.encoded: str | None = None  # the updates as JSON, when the run is durable
        self.error: BaseException | None = None
        self.halted: ChildHalted | None = None  # a sub-workflow's child run halted: the step parks
        self.kind: ErrorKind | None = None
        self.not_retried: str | None = None  # why the retry policy made no retry of a retryable error
        self.status = Status.OK
        self.run_timeout = False
        self.usage: Mapping[str, Any] | None = None
        self.attempt = 0
        self.started_at = 0.0
        self.latency = 0.0
        self.queue_s = 0.0
        self.body_end = 0.0  # perf_counter when the body returned: the durable wait starts there

    def error_message(self) -> str:
        """The error's message, and why the retry policy made no retry of it when it says: what
        the step log's row, a fallback's ``ctx.failure`` and the run's error all show."""
        text = error_text(self.error)
        return text if self.not_retried is None else f"{text}{NOT_RETRIED}{self.not_retried}"
