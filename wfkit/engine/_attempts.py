"""One activation of a step: its attempts, with retries, backoff and timeouts.

A mixin of :class:`wfkit.engine._engine.Execution`, kept apart because it is the part that talks to the
step's own code: sync steps go to a worker thread (never blocking the loop), async steps are
awaited under ``asyncio.timeout``, and each failed attempt is classified and maybe retried.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from wfkit.engine._cache import ITEM, ReadRecorder, StepCache
from wfkit.engine._subflows import ChildHalted
from wfkit.model._context import Failure, RunServices, StepContext
from wfkit.model._errors import ProcessCrashedError, StateValueError, StepTimeoutError
from wfkit.model._events import Status, StepEvent
from wfkit.model._retry import ErrorKind, RetryPolicy, classify_error, retry_after_of
from wfkit.model._steps import StepSpec
from wfkit.store._codec import check_state, decode_state
from wfkit.store._journal import encode_state, encode_updates
from wfkit.store._store import Store

logger = logging.getLogger("wfkit")

_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    # Our own pool, so a sync step that overstays its timeout never starves asyncio's default one.
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="wfkit-step")
    return _executor


class CutOff(NamedTuple):
    """An attempt a crash cut off, found on resume: ``started_at`` set when its body was running
    (it counts as a failed attempt), None when the step was waiting out a backoff until
    ``not_before`` (the attempt after it never ran). ``crashes``: crashes recorded before."""

    attempt: int
    started_at: float | None
    not_before: float | None
    crashes: int


class _Activation:
    """One scheduled execution of a step (or of one item of a map step: ``batch`` is set)."""

    __slots__ = ("batch", "failure", "index", "item", "queued", "spec", "tools", "version", "view", "visit")

    def __init__(
        self,
        spec: StepSpec,
        visit: int,
        tools: tuple[str, ...],
        version: int,
        failure: Failure | None,
        state: dict[str, Any],
    ) -> None:
        self.spec = spec
        self.visit = visit
        self.tools = tools
        self.version = version  # state version when queued: later writes by others are conflicts
        self.failure = failure
        self.queued = time.perf_counter()
        # The state as of activation: a parallel sibling's later commit is not visible, so what a
        # step sees depends on the graph, not on timing (and a resumed step sees what it saw).
        self.view: Mapping[str, Any] = MappingProxyType(dict(state))
        self.batch: _Batch | None = None
        self.index: int | None = None
        self.item: Any = None

    def for_item(self, batch: _Batch, index: int, item: Any) -> _Activation:
        """The activation of one item of this map step: same step, visit and view (not copied)."""
        act = _Activation.__new__(_Activation)
        act.spec, act.visit, act.tools, act.version, act.failure = self.spec, self.visit, self.tools, 0, None
        act.view, act.queued = self.view, time.perf_counter()
        act.batch, act.index, act.item = batch, index, item
        return act


class _Batch:
    """The items of one activation of a map step: what is queued, running and finished."""

    __slots__ = ("act", "done", "failed", "items", "pending", "results", "running", "started")

    def __init__(self, act: _Activation, items: list[Any], done: Mapping[int, Any]) -> None:
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


class _Outcome:
    """How an activation ended: updates on success, the error otherwise, and the last attempt's timing."""

    __slots__ = (
        "attempt",
        "body_end",
        "encoded",
        "error",
        "halted",
        "kind",
        "latency",
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
        self.status = Status.OK
        self.run_timeout = False
        self.usage: Mapping[str, Any] | None = None
        self.attempt = 0
        self.started_at = 0.0
        self.latency = 0.0
        self.queue_s = 0.0
        self.body_end = 0.0  # perf_counter when the body returned: the durable wait starts there


class Attempts:
    """Running one activation to its outcome (mixed into Execution, which provides the rest)."""

    run_id: str
    workflow: str
    deadline: float | None
    store: Store | None
    state: dict[str, Any]
    late_results: list[dict[str, Any]]
    _attempt_base: dict[tuple[str, int], int]
    _cut_off: dict[tuple[str, int], CutOff]
    _sleep: Callable[[float], Awaitable[Any]]
    _get_rng: Callable[[], random.Random]
    _record: Callable[..., None]
    _event: Callable[..., StepEvent]
    _outcome_event: Callable[[_Activation, _Outcome, str | None], StepEvent]
    step_cache: StepCache
    _services: Callable[[], RunServices]  # the Execution itself: ctx.llm and ctx.tool reach the run through it
    _run_child: Callable[[StepSpec, Mapping[str, Any], int], Coroutine[Any, Any, dict[str, Any]]]

    async def _execute(self, act: _Activation) -> _Outcome:
        spec = act.spec
        cache = self.step_cache if spec.cache is not None else None
        if cache is not None:
            hit = self._cached(cache, act)
            if hit is not None:
                return hit
        policy = spec.retry
        classify = spec.classifier or classify_error
        out = _Outcome()
        first_start = time.monotonic()
        key = (spec.name, act.visit)
        attempt = self._attempt_base.get(key, 0) if self._attempt_base else 0
        is_item = act.batch is not None
        store = self.store
        cut = self._cut_off.pop(key, None) if self._cut_off and not is_item else None
        if cut is not None:
            attempt = cut.attempt - 1
            if cut.started_at is None:
                # The process died while this step waited out a backoff (maybe a Retry-After):
                # the wait still applies, the attempt after it never ran.
                if cut.not_before is not None and cut.not_before > time.time():
                    await self._sleep(cut.not_before - time.time())
            else:
                attempt += 1
                if not await self._crashed(act, out, cut, attempt, policy):
                    return out
        while True:
            attempt += 1
            out.attempt = attempt
            timeout, by_deadline = spec.timeout, False
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                if left <= 0:  # the run is out of time: do not even start this attempt
                    out.error, out.kind, out.status = (
                        StepTimeoutError(spec.name, 0.0),
                        ErrorKind.TRANSIENT,
                        Status.TIMEOUT,
                    )
                    out.run_timeout, out.started_at, out.latency = True, time.time(), 0.0
                    return out
                if timeout is None or left < timeout:
                    timeout, by_deadline = left, True
            ctx = StepContext(
                run_id=self.run_id,
                workflow=self.workflow,
                step=spec.name,
                visit=act.visit,
                attempt=attempt,
                tools=act.tools,
                rng_source=self._get_rng,
                services=self._services(),
                deadline=self.deadline,
                failure=act.failure,
                map_index=act.index,
                state=act.view,
            )
            if store is not None and attempt > 1 and not is_item:
                # A first attempt needs no record (resume finds it in flight from the checkpoints);
                # a later one does, durable before the body runs: if the body takes the process
                # down, resume counts the crash against the step's retry budget.
                await store.writer.submit_async(
                    store.attempt_op(self.run_id, spec.name, act.visit, attempt, started_at=time.time())
                )
            out.started_at = time.time()
            t0 = time.perf_counter()
            out.queue_s = t0 - act.queued if attempt == 1 else 0.0
            recorder = None if cache is None or is_item else ReadRecorder(act.view)
            try:
                try:
                    if is_item:
                        out.value = await self._call(spec, act.item, ctx, timeout)
                    else:
                        result = await self._call(spec, act.view if recorder is None else recorder, ctx, timeout)
                finally:
                    # The body's own time, nothing else: no encoding, no store, no queue.
                    out.body_end = time.perf_counter()
                    out.latency = out.body_end - t0
                if is_item:
                    who = f"item {act.index} of step {spec.name!r} returned"
                    if self.store is not None or cache is not None:
                        out.encoded = encode_state(who, {"result": out.value})
                    else:
                        check_state(who, {"result": out.value})
                    out.usage = ctx.usage
                    out.error = out.kind = None
                    out.status = Status.OK
                    if cache is not None:
                        self._cache_put(cache, act, None, out)
                    return out
                if result is None:
                    result = {}
                elif not isinstance(result, Mapping):
                    raise StateValueError(
                        f"step {spec.name!r} returned {type(result).__name__}; a step returns a "
                        f"dict of state updates (or None)"
                    )
                if spec.writes is not None and not spec.writes.issuperset(result):
                    raise StateValueError(
                        f"step {spec.name!r} wrote {sorted(set(result) - spec.writes)}, which its "
                        f"writes={sorted(spec.writes)} does not declare: add them to writes= or stop writing them"
                    )
                # The same rule in memory and durable: a value state cannot keep is refused here,
                # before the result is accepted (the store redacts the JSON as it writes it).
                if self.store is not None or cache is not None:
                    out.encoded = encode_updates(spec.name, result)
                elif result:
                    check_state(f"step {spec.name!r} wrote", result)
                out.updates, out.usage = result, ctx.usage
                out.error = out.kind = None
                out.status = Status.OK
                if cache is not None:
                    self._cache_put(cache, act, recorder, out)
                return out
            except ChildHalted as halt:
                out.latency = time.perf_counter() - t0
                out.halted, out.status = halt, Status.WAITING_APPROVAL
                return out
            except asyncio.CancelledError:
                out.error, out.kind, out.status = (
                    asyncio.CancelledError("cancelled"),
                    ErrorKind.UNKNOWN,
                    Status.FAILED,
                )
                self._record(self._outcome_event(act, out, None))
                raise
            except Exception as exc:
                out.error, out.usage = exc, ctx.usage
                timed_out = isinstance(exc, StepTimeoutError)
                if timed_out and by_deadline:
                    out.run_timeout, out.kind, out.status = True, ErrorKind.TRANSIENT, Status.TIMEOUT
                    return out
                kind = out.kind = classify(exc)
                out.status = Status.TIMEOUT if timed_out else Status.FAILED
                if not policy.allows(kind, attempt - 1):
                    return out
                delay = policy.backoff(attempt, self._get_rng())
                wait = retry_after_of(exc)
                if wait is not None and wait > delay:
                    delay = wait
                elapsed = time.monotonic() - first_start
                if policy.max_elapsed is not None and elapsed + delay > policy.max_elapsed:
                    return out
                if self.deadline is not None and time.monotonic() + delay >= self.deadline:
                    out.run_timeout = True
                    return out
                status = Status.TIMEOUT if timed_out else Status.RETRY
                event = self._event(
                    spec.name,
                    act.visit,
                    attempt,
                    status,
                    exc,
                    kind,
                    out.started_at,
                    out.latency,
                    out.queue_s,
                    delay,
                    None,
                    act.tools,
                    out.usage,
                    act.index,
                )
                await self._retry_after(event, delay, durable=not is_item)

    async def _retry_after(self, event: StepEvent, delay: float, *, durable: bool = True) -> None:
        """Journal a failed attempt that will be retried, then wait out its backoff. In a durable
        run the row (with its backoff) is durable first: a crash during the wait resumes with
        the rest of the wait, not with an immediate retry."""
        store = self.store
        if store is None or not durable:
            self._record(event)
        else:
            await store.writer.submit_async(None, store.event_rows((event,)))
            self._record(event, journaled=True)
        await self._sleep(delay)

    async def _crashed(self, act: _Activation, out: _Outcome, cut: CutOff, attempt: int, policy: RetryPolicy) -> bool:
        """Account for an attempt a crash cut off: journal it as a failed attempt of kind unknown;
        True when the retry budget allows another attempt (after its backoff)."""
        crashes = cut.crashes + 1
        times = "once" if crashes == 1 else f"{crashes} times"
        error = ProcessCrashedError(
            f"the process died during attempt {attempt} of step {act.spec.name!r} (visit {act.visit}); "
            f"this step has crashed the process {times}"
        )
        out.attempt, out.error, out.kind, out.status = attempt, error, ErrorKind.UNKNOWN, Status.FAILED
        out.started_at = cut.started_at or time.time()
        out.latency = 0.0  # unknown: the process that could have timed it is gone (extra says so)
        out.usage = {"extra": {"crashed": True, "latency": "unknown"}}
        # A first crash is always forgiven once: most crashes are not the step's doing (kill -9,
        # the OOM killer, a power cut), and resuming after one is what durable runs are for. A
        # step that crashes again is held to its retry budget, like any error of unknown kind.
        if crashes > 1 and not policy.allows(ErrorKind.UNKNOWN, attempt - 1):
            return False
        # No backoff: the crash is noticed only when the run resumes, which is later already.
        delay = 0.0
        event = self._event(
            act.spec.name,
            act.visit,
            attempt,
            Status.RETRY,
            error,
            ErrorKind.UNKNOWN,
            out.started_at,
            0.0,
            0.0,
            delay,
            None,
            act.tools,
            out.usage,
        )
        await self._retry_after(event, delay)
        out.usage = None
        return True

    def _cached(self, cache: StepCache, act: _Activation) -> _Outcome | None:
        """A cache hit as the activation's outcome (status ``cached``; the step does not run)."""
        t0 = time.perf_counter()
        is_item = act.batch is not None
        found = cache.lookup(act.spec, act.view, act.item, is_item)
        if found is None:
            return None
        key, encoded = found
        out = _Outcome()
        out.attempt, out.status, out.started_at = 1, Status.CACHED, time.time()
        out.queue_s = t0 - act.queued
        decoded = decode_state(encoded)
        if is_item:
            out.value = decoded["result"]
        else:
            out.updates = decoded
        out.encoded = encoded if self.store is not None else None
        out.usage = {"extra": {"cache_key": key[:16]}}
        out.latency = time.perf_counter() - t0
        return out

    def _cache_put(self, cache: StepCache, act: _Activation, recorder: ReadRecorder | None, out: _Outcome) -> None:
        assert out.encoded is not None
        reads = [ITEM] if recorder is None else sorted(recorder.read)
        key = cache.key(act.spec, reads, act.view, act.item)
        cache.put(act.spec, reads, key, out.encoded, self.run_id)
        if self.store is None:
            out.encoded = None  # only needed for the cache: in-memory runs keep no checkpoints

    async def _call(self, spec: StepSpec, state: Any, ctx: StepContext, timeout: float | None) -> Any:
        args = (state, ctx) if spec.takes_context else (state,)
        if spec.is_async or spec.subflow is not None:

            def body() -> Awaitable[Any]:  # a sub-workflow step runs its child run in place of its function
                return self._run_child(spec, state, ctx.visit) if spec.subflow is not None else spec.fn(*args)

            if timeout is None:
                return await body()
            scope = asyncio.timeout(timeout)
            try:
                async with scope:
                    return await body()
            except TimeoutError:
                if scope.expired():
                    raise StepTimeoutError(spec.name, timeout) from None
                raise
        # Plain functions run in a worker thread so they never block the event loop (a notebook
        # kernel stays responsive); the context is copied so contextvars reach the step.
        call = contextvars.copy_context().run
        cfut = _thread_pool().submit(call, spec.fn, *args)
        fut = asyncio.wrap_future(cfut)
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            if cfut.done() and not cfut.cancelled() and isinstance(cfut.exception(), TimeoutError):
                raise  # the step's own TimeoutError, not ours
            if not cfut.cancel():  # already running: let it finish, discard and record its result
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
        self.late_results.append(record)  # list.append is atomic: safe from the worker thread
        logger.warning(
            "run %s: step %r attempt %d finished after its timeout; %s",
            self.run_id,
            step,
            ctx.attempt,
            record["outcome"],
        )

    # ---- events ----------------------------------------------------------------------------
