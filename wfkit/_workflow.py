"""Defining a workflow: steps, edges, routes, and the ways to run it."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

from wfkit._engine import Execution
from wfkit._events import Sink, as_callables
from wfkit._graph import Graph, compile_graph
from wfkit._loops import background_loop, run_blocking, running_loop
from wfkit._merge import Merge, check_merges
from wfkit._retry import Classifier, RetryPolicy
from wfkit._routing import Go, Route, Router
from wfkit._run import Run
from wfkit._steps import StepFunction, StepSpec, make_spec

F = TypeVar("F", bound=StepFunction)


def _parameters_hash(inputs: Mapping[str, Any]) -> str:
    blob = json.dumps(inputs, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class Workflow:
    """A graph of steps: DAG fan-out and joins, routed branches, bounded loops.

    >>> flow = Workflow("triage")
    >>> @flow.step
    ... def classify(state): return {"kind": "code"}
    >>> @flow.step
    ... def answer(state): return {"answer": f"a {state['kind']} question"}
    >>> _ = flow.edge("classify", "answer")
    >>> flow.run({}).state["answer"]
    'a code question'

    The first step declared is the entry unless ``@flow.step(entry=True)`` says otherwise. The
    definition is validated before the first run (or by :meth:`validate`), reporting every problem
    at once.
    """

    def __init__(
        self,
        name: str,
        *,
        version: str | None = None,
        merge: Mapping[str, Merge] | None = None,
        description: str = "",
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a workflow needs a non-empty name, got {name!r}")
        self.name = name
        self.description = description
        self._version = version
        self._merge = check_merges(merge or {})
        self._steps: dict[str, StepSpec] = {}
        self._edges: dict[str, list[str]] = {}
        self._routers: dict[str, Router] = {}
        self._entry: str | None = None
        self._graph: Graph | None = None

    # ---- definition ------------------------------------------------------------------------

    @overload
    def step(self, fn: F, /) -> F: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        tools: Iterable[str] = (),
        entry: bool = False,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_visits: int | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        tools: Iterable[str] = (),
        entry: bool = False,
    ) -> F | Callable[[F], F]:
        """Declare a step; use as ``@flow.step`` or ``@flow.step(retry=..., timeout=...)``.

        A step is ``def f(state)`` or ``def f(state, ctx)``, sync or async, returning a dict of
        state updates (or None). Sync steps run in a worker thread.

        - ``retry``: a RetryPolicy (default: no retries).
        - ``timeout``: seconds per attempt; async steps are cancelled, a late sync result is
          discarded and recorded in ``run.late_results``.
        - ``max_visits``: bound on how often a loop may come back here.
        - ``fallback``: the step to go to when this one fails for good (``wfkit.END`` to end the
          branch quietly); without it the run fails.
        - ``classify``: replaces :func:`wfkit.classify_error` for this step.
        - ``tools``: the tools this step may use when no route binds others.
        """

        def register(func: F) -> F:
            spec = make_spec(
                func,
                name=name,
                retry=retry,
                timeout=timeout,
                max_visits=max_visits,
                fallback=fallback,
                classifier=classify,
                tools=tuple(tools),
            )
            old = self._steps.get(spec.name)
            if old is not None and getattr(old.fn, "__qualname__", None) != getattr(
                func, "__qualname__", None
            ):
                raise ValueError(
                    f"workflow {self.name!r} already has a step named {spec.name!r} "
                    f"(function {getattr(old.fn, '__qualname__', old.fn)!r}); give this one another name"
                )
            # Re-running a notebook cell redefines the same function: replace it in place.
            self._steps[spec.name] = spec
            if entry or self._entry is None:
                self._entry = spec.name
            self._graph = None
            return func

        if fn is not None:
            return register(fn)
        return register

    def edge(self, source: str, *targets: str) -> Workflow:
        """Unconditional edges ``source -> each target``. Several targets run in parallel; a step
        with several incoming edges is a join and waits for every predecessor that can still come."""
        if not targets:
            raise TypeError(f"edge({source!r}) needs at least one target step")
        out = self._edges.setdefault(source, [])
        out.extend(t for t in targets if t not in out)
        self._graph = None
        return self

    def chain(self, *steps: str) -> Workflow:
        """Edges along a sequence: ``chain("a", "b", "c")`` is a -> b -> c."""
        for source, target in itertools.pairwise(steps):
            self.edge(source, target)
        return self

    def route(self, source: str, *routes: Route, default: Go) -> Workflow:
        """Conditional routes out of ``source``, tried in order after it completes.

        ``flow.route("classify", wfkit.when("kind", "eq", "code") >> wfkit.go("code_search",
        tools=["web_search"]), default=wfkit.go("answer"))``. The default is required, so no state
        leads to a dead end; ``default=wfkit.go(wfkit.END)`` ends the branch. Calling route again
        for the same source replaces its routes.
        """
        for r in routes:
            if not isinstance(r, Route):
                raise TypeError(
                    f"routes out of {source!r} must be `wfkit.when(...) >> wfkit.go(...)`, got {r!r}"
                )
        if not isinstance(default, Go):
            raise TypeError(f"default must be wfkit.go('step'), got {default!r}")
        self._routers[source] = Router(tuple(routes), default)
        self._graph = None
        return self

    def set_entry(self, step: str) -> Workflow:
        """Make ``step`` the one the run starts with."""
        self._entry = step
        self._graph = None
        return self

    # ---- inspection ------------------------------------------------------------------------

    def validate(self) -> Graph:
        """Check the definition; raise WorkflowDefinitionError listing every problem."""
        if self._graph is None:
            self._graph = compile_graph(
                self.name, self._steps, self._edges, self._routers, self._entry, self._merge
            )
        return self._graph

    @property
    def steps(self) -> dict[str, StepSpec]:
        return dict(self._steps)

    @property
    def version(self) -> str:
        """The declared version, or a fingerprint of the definition."""
        return self._version or self.validate().fingerprint

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {len(self._steps)} steps, entry={self._entry!r}>"

    # ---- running ---------------------------------------------------------------------------

    def _execution(
        self,
        inputs: Mapping[str, Any] | None,
        run_id: str | None,
        timeout: float | None,
        sinks: Iterable[Sink],
        seed: int | None,
    ) -> Execution:
        graph = self.validate()
        inputs = {} if inputs is None else inputs
        if not isinstance(inputs, Mapping) or not all(isinstance(k, str) for k in inputs):
            raise TypeError(f"a run's inputs are a dict with string keys, got {inputs!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"a run's timeout must be > 0 seconds, got {timeout!r}")
        return Execution(
            graph,
            self._merge,
            run_id or uuid.uuid4().hex[:16],
            inputs,
            version=self._version or graph.fingerprint,
            timeout=timeout,
            sinks=as_callables(sinks),
            seed=seed,
            parameters_hash=_parameters_hash(inputs),
        )

    async def arun(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
        sinks: Iterable[Sink] = (),
        seed: int | None = None,
        raise_on_error: bool = True,
    ) -> Run:
        """Run to the end in the current task (``await flow.arun(...)`` in a notebook cell)."""
        execution = self._execution(inputs, run_id, timeout, sinks, seed)
        await execution.drive()
        run = Run(execution)
        return run.raise_for_status() if raise_on_error else run

    def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
        sinks: Iterable[Sink] = (),
        seed: int | None = None,
        raise_on_error: bool = True,
    ) -> Run:
        """Run to the end from synchronous code, also inside a running loop (no nest_asyncio)."""
        execution = self._execution(inputs, run_id, timeout, sinks, seed)
        run_blocking(execution.drive())
        run = Run(execution)
        return run.raise_for_status() if raise_on_error else run

    def start(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
        sinks: Iterable[Sink] = (),
        seed: int | None = None,
    ) -> Run:
        """Start a run and return its handle at once; ``await run`` waits for the end.

        In a notebook the run is a task on the kernel's loop, so the cell is free at once. From
        plain synchronous code it runs on a background loop; ``run.wait()`` blocks for it.
        """
        execution = self._execution(inputs, run_id, timeout, sinks, seed)
        run = Run(execution)
        loop = running_loop()
        if loop is not None:
            run._task = loop.create_task(execution.drive(), name=f"wfkit-run-{execution.run_id}")
        else:
            run._cfuture = asyncio.run_coroutine_threadsafe(execution.drive(), background_loop())
        return run
