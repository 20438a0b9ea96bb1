"""The attempt runner: one activation of a step, run to its outcome.

This is where a step attempt is born: ``AttemptRunner.run`` builds the attempt's context, calls
the step's own code (sync steps in a worker thread, never blocking the loop; async steps under
``asyncio.timeout``), checks what it returned, and classifies a failure and maybe retries it after
a backoff (jittered by the activation's own seeded generator). Each attempt becomes a
:class:`~wfkit.model.StepEvent` made by the run's ``EventMaker``; retried attempts are reported to
an :class:`AttemptJournal` (the durability layer), the last one goes back to the scheduler inside
the :class:`~wfkit.engine._activations.Outcome`.

It knows nothing of routing, state commits or the store (values are encoded with the store
layer's codec, pure functions, so a value a checkpoint could not keep is refused here).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from wfkit.engine._activations import Activation, CutOff, Outcome
from wfkit.engine._alarm import Alarm
from wfkit.engine._cache import ITEM, ReadRecorder, StepCache
from wfkit.engine._stepevents import EventMaker
from wfkit.engine._stepthreads import StepThreads
from wfkit.engine._subflows import ChildHalted
from wfkit.model._context import RunServices, StepContext
from wfkit.model._errors import ProcessCrashedError, StateValueError, StepTimeoutError, WfkitError
from wfkit.model._events import Status, StepEvent
from wfkit.model._retry import ErrorKind, RetryPolicy, checked_kind, classify_error, permanent_by_type, retry_after_of
from wfkit.model._steps import StepSpec
from wfkit.store._codec import TAG, check_state, decode_state
from wfkit.store._journal import CRASHED_IN_CHILD, UNTIMED, encode_state, encode_updates

logger = logging.getLogger("wfkit")

_threads: StepThreads | None = None


def _thread_pool() -> StepThreads:
    # Our own threads, so a sync step that overstays its timeout never starves asyncio's default
    # pool, nor keeps the process from exiting (see StepThreads).
    global _threads
    if _threads is None:
        _threads = StepThreads(32, "wfkit-step")
    return _threads


T = TypeVar("T")

# Result values a checkpoint always keeps (no encoding to check, no size to warn about).
_ATOMS = frozenset({int, float, bool, type(None)})


def plain_updates(updates: Mapping[str, Any]) -> bool:
    """Whether ``updates`` hold only atoms under plain field names: nothing for ``check_state``
    to refuse or warn about, so an in-memory run need not call it (it reads the environment)."""
    for key, value in updates.items():  # noqa: SIM110  (a loop: no generator object per step)
        if type(value) not in _ATOMS or type(key) is not str or key == TAG:
            return False
    return True


# How Python refuses a write to the state a step sees (a mappingproxy; a cached step's ReadRecorder).
_READ_ONLY = ("'mappingproxy' object does not support item ", "'ReadRecorder' object does not support item ")


def in_place_write(step: str, item: int | None, exc: Exception, views: tuple[object, ...]) -> Exception:
    """``exc`` as a :class:`StateValueError` saying what to do, when it is Python refusing the step's
    write to its read-only state (``state[k] = v``, ``del state[k]``, ``state.update(...)``): its own
    words name a mappingproxy, which the step never made, and the ``AttributeError`` of ``update``
    would be retried as an error of unknown kind. Any other error is returned as it is."""
    if isinstance(exc, AttributeError):
        hit = any(getattr(exc, "obj", None) is view for view in views)  # the object whose attribute was missing
    else:
        hit = type(exc) is TypeError and str(exc).startswith(_READ_ONLY)
    if not hit:
        return exc
    who, fix = (
        (f"step {step!r}", "return the fields it changes instead, e.g. return {'field': value}")
        if item is None
        else (f"item {item} of map step {step!r}", "return the item's result, which the map puts in its list")
    )
    error = StateValueError(
        f"{who} changed its state in place ({type(exc).__name__}: {exc}): a step's state is read-only: {fix}"
    )
    error.__cause__ = exc
    return error


async def within(step: str, body: Awaitable[T], timeout: float) -> T:
    """Await an async step's ``body`` for at most ``timeout`` seconds: :class:`StepTimeoutError`
    once they pass (a ``TimeoutError`` the body raises itself stays its own)."""
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await body
    except TimeoutError:
        if scope.expired():
            raise StepTimeoutError(step, timeout) from None
        raise


def _timed(fn: Callable[..., Any], span: list[float]) -> Callable[..., Any]:
    """``fn``, noting in ``span`` when it starts and ends, in the thread that runs it."""

    def timed(*args: Any) -> Any:
        span.append(time.perf_counter())
        try:
            return fn(*args)
        finally:
            span.append(time.perf_counter())

    return timed


async def _returned(cfut: concurrent.futures.Future[Any]) -> None:
    """Wait until ``cfut`` (a step body's thread, already running) has returned or raised; its
    outcome stays in ``cfut``, read by the caller (so no wrapper holds an unretrieved error)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def wake() -> None:
        if not done.done():  # not if the run was cancelled meanwhile
            done.set_result(None)

    def returned(_: concurrent.futures.Future[Any]) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(wake)

    cfut.add_done_callback(returned)
    await done


def stamped(
    out: Outcome | None, attempt: int, started_at: float, queue_s: float, latency: float, body_end: float
) -> Outcome:
    """``out`` (made now if the activation has none yet) with the timing of the attempt that just ended."""
    if out is None:
        out = Outcome()
    out.attempt, out.started_at, out.queue_s = attempt, started_at, queue_s
    out.latency, out.body_end = latency, body_end
    return out


class AttemptJournal(Protocol):
    """Where the attempt runner reports attempts (the durability layer is one): it never talks
    to the store itself."""

    async def attempt_started(self, step: str, visit: int, attempt: int) -> None:
        """A later attempt (2, 3, ...) is about to run."""

    async def retrying(self, event: StepEvent, *, durable: bool = True) -> None:
        """A failed attempt that will be retried (``event`` carries its backoff)."""

    def record(self, event: StepEvent) -> None:
        """An attempt that ended the activation by being cancelled."""


def _planned(usage: Mapping[str, Any] | None, delay: float) -> dict[str, Any]:
    """``usage`` with the backoff a retry would have waited, had the sleep not been instant (test
    mode), in its ``extra`` as ``retry_delay_planned_s``: its row's ``retry_delay_s`` is the 0 s
    it waited, so analysis and a resume after a crash see no wait that never was."""
    usage = dict(usage or {})
    usage["extra"] = {**(usage.get("extra") or {}), "retry_delay_planned_s": delay}
    return usage


class FirstAttempt(NamedTuple):
    """A first attempt whose body the scheduler awaited itself (an inline step): what it
    returned, or the exception it raised, and when it ran (``time.time`` and ``perf_counter``)."""

    result: Any
    error: BaseException | None
    started_at: float
    t0: float
    body_end: float


ChildRunner = Callable[[StepSpec, Mapping[str, Any], int], Awaitable[dict[str, Any]]]
"""Runs a sub-workflow step's child run and returns the parent's updates (``ChildRuns.run``)."""


class AttemptRunner:
    """Runs one activation's attempts to an :class:`Outcome`: timeouts, retries with backoff,
    error classification, the step cache, and the checks on what a step returns.

    Knows nothing of routing, state commits or the store: what it learns of the run is handed to
    it here (``deadline`` once the run starts; ``attempts_before`` and ``cut_off`` when a stopped
    run is replayed).
    """

    __slots__ = (
        "_cache",
        "_encode",
        "_journal",
        "_make",
        "_rng",
        "_run_child",
        "_seed",
        "_services",
        "_sleep",
        "_sleeps",
        "attempts_before",
        "cancelled_before",
        "cut_off",
        "deadline",
        "late_results",
        "run_id",
        "workflow",
    )

    def __init__(
        self,
        run_id: str,
        workflow: str,
        *,
        make: EventMaker,
        journal: AttemptJournal,
        services: RunServices,
        cache: StepCache | None,
        run_child: ChildRunner | None,
        seed: int | None,
        encode: bool,
        sleep: Callable[[float], Awaitable[Any]],
        late_results: list[dict[str, Any]] | None = None,
        sleeps: bool = True,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self._make = make
        self._journal = journal
        self._services = services
        self._cache = cache  # None when no step of the graph is cached
        self._run_child = run_child  # None when no step of the graph is a sub-workflow
        self._seed = seed
        self._encode = encode  # keep each result as JSON (a durable run checkpoints it)
        self._sleep = sleep
        # Whether ``sleep`` really waits: under test_mode it returns at once, and a retry's row then
        # records the wait that happened (0 s), its planned backoff kept in ``extra``.
        self._sleeps = sleeps
        # Sync steps that finished after their timeout (made when a first one times out).
        self.late_results = late_results
        self._rng: random.Random | None = None
        self.deadline: float | None = None  # monotonic; set when the run starts, if it has a timeout
        # Attempts a resumed run made before: per (step, visit), and per (step, visit, map_index).
        self.attempts_before: dict[tuple[str, int] | tuple[str, int, int], int] = {}
        # Attempts a crash interrupted (resume): per (step, visit), and per (step, visit, map_index).
        self.cut_off: dict[tuple[str, int] | tuple[str, int, int], CutOff] = {}
        # Of attempts_before, those stopped from outside (run.cancel(), the stop button): they
        # spend none of the step's retry budget, as the step did not fail.
        self.cancelled_before: dict[tuple[str, int] | tuple[str, int, int], int] = {}

    def _run_rng(self) -> random.Random:
        """``ctx.rng``: one per run, seeded like it. Built on first use: seeding a Random costs
        more than a whole short run otherwise."""
        if self._rng is None:
            self._rng = random.Random(self._seed)
        return self._rng

    def _backoff_rng(self, act: Activation) -> random.Random:
        """The jitter of one activation's backoffs: its own generator, seeded from the run's seed,
        the step, the visit and the map item, so a seeded run's backoffs do not depend on the
        order in which concurrent items happen to fail."""
        if self._seed is None:
            return self._run_rng()
        return random.Random(f"{self._seed}:{act.spec.name}:{act.visit}:{act.index}")

    async def run(self, act: Activation, first: FirstAttempt | None = None, alarm: Alarm | None = None) -> Outcome:
        """Run ``act`` until it succeeds, fails for good, or the run's deadline passes.

        ``first``: the scheduler already ran the first attempt's body itself (an inline step,
        ``StepSpec.inline``) and it did something beyond a plain success: it is judged here as if
        run here (checked, classified, maybe retried), and not run again. ``alarm``: the run's, when
        the scheduler awaits this activation itself (one at a time, in the run's task): an async
        body's timeout goes on it instead of a timer of its own."""
        spec = act.spec
        cache = self._cache if spec.cache is not None else None
        if cache is not None:
            hit = self._cached(cache, act)
            if hit is not None:
                return hit
        policy = spec.retry
        # Made once the first attempt's body returns (or the activation ends without one): a run
        # sleeping inside a step keeps one object less alive meanwhile.
        out: Outcome | None = None
        first_start: float | None = None  # perf_counter at the first attempt: max_elapsed counts from it
        attempt = 0
        # Attempts that spend none of this step's retry budget: crashes inside its child run,
        # which the child's step counted (see _crashed), and attempts stopped from outside.
        spared = 0
        is_item = act.batch is not None
        if self.attempts_before or self.cut_off:  # a resumed run: what it did before counts
            key = (spec.name, act.visit)
            # A map item counts its own attempts (an item that never ran starts at 1).
            attempt = self.attempts_before.get(key if act.index is None else (*key, act.index), 0)
            spared = self.cancelled_before.get(key if act.index is None else (*key, act.index), 0)
            cut = self.cut_off.pop(key if act.index is None else (*key, act.index), None)
            if cut is not None:
                first_start = time.perf_counter()
                attempt = cut.attempt - 1
                spared += cut.child_crashes + (cut.child is not None)
                if cut.started_at is None:
                    # The process died while this step waited out a backoff (maybe a Retry-After):
                    # the wait still applies, the attempt after it never ran.
                    if cut.not_before is not None and cut.not_before > time.time():
                        await self._sleep(cut.not_before - time.time())
                else:
                    attempt += 1
                    out = Outcome()
                    if not await self._crashed(act, out, cut, attempt, policy, spared):
                        return out
        # Only a step that takes a context gets one (a sub-workflow's child and a sync step's late
        # result read it too): most steps never look, and one object per attempt adds up.
        wants_ctx = spec.takes_context or spec.subflow is not None or not spec.is_async
        inline = spec.is_async and spec.subflow is None  # awaited right here, no helper coroutine
        backoff_rng: random.Random | None = None  # made at the first retry: most activations never retry
        ctx: StepContext | None = None
        while True:
            attempt += 1
            timeout, by_deadline = spec.timeout, False
            deadline = self.deadline
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:  # the run is out of time: do not even start this attempt
                    if out is None:
                        out = Outcome()
                    out.attempt = attempt
                    out.error, out.kind, out.status = (
                        StepTimeoutError(spec.name, 0.0, started=False),
                        ErrorKind.TRANSIENT,
                        Status.TIMEOUT,
                    )
                    out.run_timeout, out.started_at, out.latency = True, time.time(), 0.0
                    return out
                if timeout is None or left < timeout:
                    timeout, by_deadline = left, True
            if wants_ctx:
                ctx = StepContext(
                    run_id=self.run_id,
                    workflow=self.workflow,
                    step=spec.name,
                    visit=act.visit,
                    attempt=attempt,
                    tools=act.tools,
                    rng_source=self._run_rng,
                    services=self._services,
                    deadline=deadline,
                    failure=act.failure,
                    map_index=act.index,
                    state=act.view,
                )
            if attempt > 1 and not is_item:
                await self._journal.attempt_started(spec.name, act.visit, attempt)
            if first is None:
                started_at = time.time()
                t0 = time.perf_counter()
            else:
                started_at, t0 = first.started_at, first.t0
            if first_start is None:
                first_start = t0
            queue_s = t0 - act.queued if attempt == 1 else 0.0
            recorder = None if cache is None or is_item else ReadRecorder(act.view)
            arg = act.item if is_item else act.view if recorder is None else recorder
            span: list[float] | None = None if inline else []  # a sync body's start and end, from its thread
            ran: FirstAttempt | None = None
            try:
                try:
                    if first is not None:  # the scheduler ran this attempt's body: its result or error
                        ran, first = first, None
                        if ran.error is not None:
                            raise ran.error
                        result = ran.result
                    elif inline and timeout is None:
                        result = await (spec.fn(arg, ctx) if spec.takes_context else spec.fn(arg))
                    else:
                        result = await self._call(spec, arg, ctx, timeout, span, alarm)
                finally:
                    # The body's own time, nothing else: no encoding, no store, no queue, and for a
                    # sync body not the hops to and from its thread (a busy loop delays those).
                    body_end = time.perf_counter() if ran is None else ran.body_end
                    ran = None  # it may hold the error, whose traceback holds this frame: no cycle
                    if span is not None and len(span) == 2:
                        latency = span[1] - span[0]
                        # The row starts when the body did: the wait for a thread of the pool (long
                        # when other steps hold them all) is queueing, and ended_at is then when the
                        # body ended (a resume waits out a backoff from it), never before.
                        waited = span[0] - t0
                        started_at += waited
                        if attempt == 1:
                            queue_s += waited
                    else:
                        latency = body_end - t0
                if out is None:
                    out = Outcome()
                out.attempt, out.started_at, out.queue_s, out.latency, out.body_end = (
                    attempt,
                    started_at,
                    queue_s,
                    latency,
                    body_end,
                )
                usage = None if ctx is None else ctx.usage
                if is_item:
                    out.value = result
                    if self._encode or cache is not None:
                        who = f"item {act.index} of step {spec.name!r} returned"
                        out.encoded = encode_state(who, {"result": result})
                    elif type(result) not in _ATOMS:
                        check_state(f"item {act.index} of step {spec.name!r} returned", {"result": result}, spec.fn)
                    out.usage = usage
                    out.error = out.kind = None
                    out.status = Status.OK
                    if cache is not None:
                        self._cache_put(cache, act, None, out)
                    return out
                if result is None:
                    result = {}
                elif type(result) is not dict and not isinstance(result, Mapping):
                    raise StateValueError(_not_updates(spec.name, result))
                if spec.writes is not None and not spec.writes.issuperset(result):
                    raise StateValueError(
                        f"step {spec.name!r} wrote {sorted(set(result) - spec.writes)}, which its "
                        f"writes={sorted(spec.writes)} does not declare: add them to writes= or stop writing them"
                    )
                # The same rule in memory and durable: a value state cannot keep is refused here,
                # before the result is accepted (the store redacts the JSON as it writes it).
                if self._encode or cache is not None:
                    out.encoded = encode_updates(spec.name, result, spec.fn)
                elif result and not plain_updates(result):
                    check_state(f"step {spec.name!r} wrote", result, spec.fn)
                out.updates, out.usage = result, usage
                out.error = out.kind = None
                out.status = Status.OK
                if cache is not None:
                    self._cache_put(cache, act, recorder, out)
                return out
            except ChildHalted as halt:
                out = stamped(out, attempt, started_at, queue_s, latency, body_end)
                out.latency = time.perf_counter() - t0
                out.halted, out.status = halt, Status.WAITING_APPROVAL
                return out
            except asyncio.CancelledError:
                out = stamped(out, attempt, started_at, queue_s, latency, body_end)
                out.error, out.kind, out.status = asyncio.CancelledError("cancelled"), None, Status.CANCELLED
                self._journal.record(self._make.outcome(act, out, None))
                raise
            except Exception as exc:  # (its name is unbound at the end of the block: no cycle through this frame)
                exc = in_place_write(spec.name, act.index, exc, (act.view, recorder))
                out = stamped(out, attempt, started_at, queue_s, latency, body_end)
                out.error, out.usage = exc, None if ctx is None else ctx.usage
                timed_out = isinstance(exc, StepTimeoutError)
                if isinstance(exc, StepTimeoutError) and by_deadline:
                    # Its row says the deadline cut it, not that it overran a timeout of its own.
                    by_run = StepTimeoutError(spec.name, exc.timeout, by_deadline=True)
                    by_run.returned_late, by_run.__cause__ = exc.returned_late, exc.__cause__
                    out.error = by_run
                    out.run_timeout, out.kind, out.status = True, ErrorKind.TRANSIENT, Status.TIMEOUT
                    return out
                classifier = spec.classifier
                kind = out.kind = (
                    classify_error(exc) if classifier is None else checked_kind(spec.name, classifier(exc), exc)
                )
                out.status = Status.TIMEOUT if timed_out else Status.FAILED
                if isinstance(exc, StepTimeoutError) and exc.returned_late:
                    out.not_retried = (
                        f"the step is irreversible and its body, which nothing can stop in its thread, "
                        f"returned after {out.latency:.3g} s: its side effect may have happened. Raise "
                        "its timeout, or write it as `async def` so that a timeout cancels it"
                    )
                    return out
                if not policy.allows(kind, attempt - 1 - spared):
                    # (wfkit's own errors, a tool the step may not call, are permanent by what they are.)
                    guessed = (
                        kind is ErrorKind.PERMANENT
                        and classifier is None
                        and not isinstance(exc, WfkitError)
                        and permanent_by_type(exc)
                    )
                    out.not_retried = policy.budget_spent(kind, attempt - 1 - spared, guessed=guessed)
                    return out
                if backoff_rng is None:
                    backoff_rng = self._backoff_rng(act)
                delay = policy.backoff(attempt, backoff_rng)
                asked = retry_after_of(exc)
                elapsed = time.perf_counter() - first_start
                if asked is not None and asked > delay:
                    out.not_retried = policy.wait_refused(asked, elapsed, asked)
                    to_deadline = None if self.deadline is None else self.deadline - time.monotonic()
                    delay = policy.server_wait(asked, elapsed, backoff_rng, to_deadline)
                else:  # the policy's own backoff is the longer wait
                    out.not_retried = policy.wait_refused(delay, elapsed, None)
                if out.not_retried is not None:
                    return out
                if self.deadline is not None and time.monotonic() + delay >= self.deadline:
                    out.run_timeout = True
                    return out
                status = Status.TIMEOUT if timed_out else Status.RETRY
                event = self._make.event(
                    spec.name,
                    act.visit,
                    attempt,
                    status,
                    exc,
                    kind,
                    out.started_at,
                    out.latency,
                    out.queue_s,
                    delay if self._sleeps else 0.0,
                    None,
                    act.tools,
                    out.usage if self._sleeps else _planned(out.usage, delay),
                    act.index,
                )
                await self._retry_after(event, delay, durable=not is_item)

    async def _retry_after(self, event: StepEvent, delay: float, *, durable: bool = True) -> None:
        """Journal a failed attempt that will be retried, then wait out its backoff."""
        await self._journal.retrying(event, durable=durable)
        await self._sleep(delay)

    async def _crashed(
        self, act: Activation, out: Outcome, cut: CutOff, attempt: int, policy: RetryPolicy, spared: int
    ) -> bool:
        """Account for an attempt a crash cut off: journal it as a failed attempt of kind unknown;
        True when the retry budget allows another attempt (after its backoff). ``spared``: the
        attempts that spend none of the budget (crashes inside the step's child run, this one too)."""
        crashes = cut.crashes + 1
        what = f"step {act.spec.name!r}" if act.index is None else f"item {act.index} of step {act.spec.name!r}"
        out.attempt, out.kind, out.status = attempt, ErrorKind.UNKNOWN, Status.FAILED
        out.started_at = cut.started_at or time.time()
        # Unknown, not 0: the process that could have timed it is gone. NaN in the event and the
        # step log (latency_s and ended_at); the journal, whose columns refuse NULL, keeps 0 and the
        # marker in extra, which its readers turn back into NaN (see wfkit.store._journal.UNTIMED).
        out.latency = float("nan")
        out.usage = {"extra": dict(UNTIMED)}
        if cut.child is not None:
            # The crash came while this sub-workflow step's child run was running: both were in
            # flight, but the child's step was what ran, so the crash is the child's to count.
            # Its resume (this step's next attempt resumes the same child run) records it as a
            # crashed attempt of that step and holds that step to its own retry budget; the child
            # fails by that rule, and then this step fails with the child's error. Counting the
            # crash here as well would spend two budgets on one crash, and could fail this step
            # before the child ever accounts for it (leaving the child interrupted for good). So
            # it is recorded here as an attempt, for the log, and is never refused: it spends
            # none of this step's budget (``spared``), now or when a later attempt fails.
            out.error = ProcessCrashedError(
                f"the process died during attempt {attempt} of {what} (visit {act.visit}), inside its "
                f"sub-workflow run {cut.child}: the crash counts against the retry budget of that "
                f"run's step, not this step's"
            )
            out.usage["extra"][CRASHED_IN_CHILD] = cut.child
        else:
            own = crashes - cut.child_crashes
            times = "once" if own == 1 else f"{own} times"
            out.error = ProcessCrashedError(
                f"the process died during attempt {attempt} of {what} (visit {act.visit}); "
                f"this {'step' if act.index is None else 'item'} has crashed the process {times}"
            )
            # A first crash is always forgiven once: most crashes are not the step's doing (kill
            # -9, the OOM killer, a power cut), and resuming after one is what durable runs are
            # for. A step that crashes again is held to its retry budget, like any error of
            # unknown kind.
            if own > 1 and not policy.allows(ErrorKind.UNKNOWN, attempt - 1 - spared):
                out.not_retried = policy.budget_spent(ErrorKind.UNKNOWN, attempt - 1 - spared)
                return False
        error = out.error
        # No backoff: the crash is noticed only when the run resumes, which is later already.
        delay = 0.0
        event = self._make.event(
            act.spec.name,
            act.visit,
            attempt,
            Status.RETRY,
            error,
            ErrorKind.UNKNOWN,
            out.started_at,
            out.latency,
            0.0,
            delay,
            None,
            act.tools,
            out.usage,
            act.index,
        )
        await self._retry_after(event, delay, durable=act.index is None)
        out.usage = None
        return True

    def _cached(self, cache: StepCache, act: Activation) -> Outcome | None:
        """A cache hit as the activation's outcome (status ``cached``; the step does not run)."""
        t0 = time.perf_counter()
        is_item = act.batch is not None
        found = cache.lookup(act.spec, act.view, act.item, is_item)
        if found is None:
            return None
        key, encoded = found
        out = Outcome()
        out.attempt, out.status, out.started_at = 1, Status.CACHED, time.time()
        out.queue_s = t0 - act.queued
        decoded = decode_state(encoded)
        if is_item:
            out.value = decoded["result"]
        else:
            out.updates = decoded
        out.encoded = encoded if self._encode else None
        out.usage = {"extra": {"cache_key": key[:16]}}
        out.latency = time.perf_counter() - t0
        return out

    def _cache_put(self, cache: StepCache, act: Activation, recorder: ReadRecorder | None, out: Outcome) -> None:
        assert out.encoded is not None
        reads = [ITEM] if recorder is None else sorted(recorder.read)
        key = cache.key(act.spec, reads, act.view, act.item)
        cache.put(act.spec, reads, key, out.encoded, self.run_id)
        if not self._encode:
            out.encoded = None  # only needed for the cache: in-memory runs keep no checkpoints

    async def _call(
        self,
        spec: StepSpec,
        state: Any,
        ctx: StepContext | None,
        timeout: float | None,
        span: list[float] | None = None,
        alarm: Alarm | None = None,
    ) -> Any:
        """Run the step's body (under ``timeout``, if any: an async body's on ``alarm``, if given).
        A sync body runs in a worker thread and, given ``span``, appends its own start and end
        (``perf_counter``) there: a timed-out body appends only its start. ``ctx`` is None only for
        an async step that takes none."""
        if spec.is_async or spec.subflow is not None:
            if spec.subflow is not None:  # a sub-workflow step runs its child run in place of its function
                assert ctx is not None and self._run_child is not None
                body = self._run_child(spec, state, ctx.visit)
            else:
                body = spec.fn(state, ctx) if spec.takes_context else spec.fn(state)
            if timeout is None:
                return await body
            return await (within(spec.name, body, timeout) if alarm is None else alarm.within(spec.name, body, timeout))
        assert ctx is not None
        args = (state, ctx) if spec.takes_context else (state,)
        # Plain functions run in a worker thread so they never block the event loop (a notebook
        # kernel stays responsive); the context is copied so contextvars reach the step.
        call = contextvars.copy_context().run
        fn = spec.fn if span is None else _timed(spec.fn, span)
        cfut = _thread_pool().submit(call, fn, *args)
        fut = asyncio.wrap_future(cfut)
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            if cfut.done() and not cfut.cancelled() and isinstance(cfut.exception(), TimeoutError):
                raise  # the step's own TimeoutError, not ours
            if not cfut.cancel():  # already running: it cannot be stopped
                if spec.irreversible:
                    # Its side effect may be under way in that thread: never let a retry (or the
                    # fallback, or the closing of its intent) overlap it. Wait for it to return.
                    await _returned(cfut)
                    if self.late_results is None:
                        self.late_results = []
                    self._late_result(spec.name, ctx, cfut)
                    late = StepTimeoutError(spec.name, timeout)
                    error = cfut.exception()
                    if error is None:
                        late.returned_late = True
                        raise late from None
                    raise late from error
                # Let it finish, discard and record its result.
                if self.late_results is None:
                    self.late_results = []  # here, on the loop's thread: the worker only appends
                cfut.add_done_callback(lambda f: self._late_result(spec.name, ctx, f))
            raise StepTimeoutError(spec.name, timeout) from None

    def _late_result(
        self,
        step: str,
        ctx: StepContext,
        fut: concurrent.futures.Future[Any],
    ) -> None:
        """A timed-out sync step finished after all: discard its result, but keep a record."""
        record = {
            "step": step,
            "visit": ctx.visit,
            "attempt": ctx.attempt,
            "at": time.time(),
            "outcome": f"error: {fut.exception()!r}" if fut.exception() else "result discarded",
        }
        assert self.late_results is not None  # made before this callback was added
        self.late_results.append(record)  # list.append is atomic: safe from the worker thread
        logger.warning(
            "run %s: step %r attempt %d finished after its timeout; %s",
            self.run_id,
            step,
            ctx.attempt,
            record["outcome"],
        )

    # ---- events ----------------------------------------------------------------------------


def _not_updates(step: str, result: object) -> str:
    """Why a step's return value is refused. A coroutine is a call the step forgot to ``await``
    (``return fetch(...)`` in a ``def`` step): it is closed, so Python's "never awaited" warning does
    not come later from nowhere, and the message says what to write."""
    if inspect.iscoroutine(result):
        result.close()
        return (
            f"step {step!r} returned a coroutine of {result.__name__}(), a call it did not await: write the "
            f"step as `async def` and return `await {result.__name__}(...)`, or return its result"
        )
    return f"step {step!r} returned {type(result).__name__}; a step returns a dict of state updates (or None)"
