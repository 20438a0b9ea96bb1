"""A run's alarm: the timeouts of the steps its scheduler awaits itself, on one timer per run.

``asyncio.timeout`` schedules a timer for each step and cancels it when the step ends in time.
Those timers cost the event loop more than the rest of a step's bookkeeping: asyncio keeps them in
a heap whose entries it compares in Python (``TimerHandle.__lt__``: some ten comparisons to add
one among a thousand, as many to take it out), and a cancelled timer stays in the heap until its
time comes. In 500 concurrent runs of a 5-step chain of 10 ms sleeps, a timeout on each step cost
13 us of loop CPU per step (39 us against 26).

The alarm keeps one timer per run instead. It is set for the first step's deadline and stays set
when that step ends in time. When it rings, it looks at the step under it now: none, it stops; one
whose deadline is later, it is set again for that deadline; one whose deadline has come, it
cancels the run's task, as ``asyncio.timeout`` would, and :meth:`Alarm.within` makes that
cancellation the step's :class:`StepTimeoutError`. A chain whose steps end well inside their
timeouts schedules one timer per run (or one per timeout's length of running), not one per step.

Only what the scheduler awaits itself uses it (a lone step, one at a time, in the run's task:
a body it awaits inline, or the attempt runner's attempts at it, a run deadline's included).
Parallel branches run in tasks of their own, each under ``asyncio.timeout`` (``_attempts.within``),
and so does a sync body's thread (``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from wfkit.model._errors import StepTimeoutError

T = TypeVar("T")


class Alarm:
    """The deadline of the one step a run's scheduler is awaiting, on one timer that outlives it."""

    __slots__ = ("_cancelling", "_deadline", "_handle", "_loop", "_rang", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None  # the timer, when set
        self._deadline: float | None = None  # loop time the step under the alarm must end by
        # The run's task, only while a step is under the alarm (held longer, the task's frame
        # and this alarm would hold each other), and its cancellation count when the step began.
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._rang = False  # it cancelled the task for the step under it

    async def within(self, step: str, body: Awaitable[T], timeout: float) -> T:
        """Await ``body``, the run's step ``step``, for at most ``timeout`` seconds: raises
        :class:`StepTimeoutError` once they pass (a ``TimeoutError`` the body raises itself, or
        a cancellation from elsewhere, stays what it is)."""
        task = asyncio.current_task(self._loop)  # given its loop, asyncio makes no getpid system call
        assert task is not None  # a run's scheduler is a task
        self._set(task, timeout)
        try:
            result = await body
        except BaseException as exc:
            if self._clear(exc):
                raise StepTimeoutError(step, timeout) from None
            raise
        self._clear(None)  # (the body may have swallowed the alarm's cancellation: its result stands)
        return result

    def close(self) -> None:
        """The run ended: its timer goes (and with it, the loop's hold on this alarm)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def _set(self, task: asyncio.Task[object], timeout: float) -> None:
        loop = self._loop
        self._task, self._cancelling = task, task.cancelling()
        deadline = self._deadline = loop.time() + timeout
        handle = self._handle
        if handle is None or handle.when() > deadline:  # it would ring too late for this step
            if handle is not None:
                handle.cancel()
            self._handle = loop.call_at(deadline, self._ring)

    def _clear(self, error: BaseException | None) -> bool:
        """The step ended, raising ``error`` (None: it returned). True when it timed out: the alarm
        rang for it and ``error`` is that cancellation, with no other one requested meanwhile."""
        task, self._task, self._deadline = self._task, None, None
        if not self._rang:
            return False
        self._rang = False
        assert task is not None
        # As asyncio.timeout: withdraw the alarm's own cancellation request; if none is left
        # beyond those there were when the step began, the cancellation was the alarm's.
        return task.uncancel() <= self._cancelling and isinstance(error, asyncio.CancelledError)

    def _ring(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return  # no step under the alarm: the next one sets it again
        if deadline > self._loop.time():
            self._handle = self._loop.call_at(deadline, self._ring)  # a later step's deadline
            return
        assert self._task is not None
        self._rang = True
        self._task.cancel()
