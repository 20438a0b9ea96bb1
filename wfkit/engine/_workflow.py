"""Defining a workflow: steps, edges, routes, and the ways to run it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import os
import sys
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, Unpack, cast, overload

from wfkit.engine._attempts import plain_updates
from wfkit.engine._durability import give_lease_back, record_run, take_lease
from wfkit.engine._engine import Execution, claim, executing_here, unclaim
from wfkit.engine._loops import run_blocking, running_loop, woken_by_signals
from wfkit.engine._run import (
    _RESUME_KEYS,
    BatchRunOptions,
    ResumeOptions,
    Run,
    RunOptions,
    WorkspaceArg,
    _Options,
    held_handle,
    resumed_by_decision,
    take_resumed_by_decision,
    under_way_here,
)
from wfkit.engine._services import check_same_model
from wfkit.model._approvals import HALT, Approval, ApprovalPolicy, Ticket, as_policy, policy_record, recorded_policy
from wfkit.model._context import ToolProvider
from wfkit.model._errors import WorkflowChangedError, WorkflowChangedWarning, WorkflowDefinitionError
from wfkit.model._events import Status, StepEvent, TokenChunk, as_callables
from wfkit.model._graph import Graph, compile_graph, describe_changes
from wfkit.model._merge import Merge, check_merges
from wfkit.model._processors import DEFAULT_PROCESSORS, Processor
from wfkit.model._retry import ATTEMPT_WORDS, RETRY_WORDS, Classifier, RetryPolicy, retry_field_value
from wfkit.model._routes import Go, Route, Router, as_go, check_step_names
from wfkit.model._seconds import Seconds
from wfkit.model._status import RunStatus
from wfkit.model._steps import Cache, MapSpec, StepFunction, StepSpec, make_map, make_spec, make_subflow, subflow_body
from wfkit.model._suggest import did_you_mean, misnamed, unexpected_keywords
from wfkit.store._codec import check_state, json_encoder
from wfkit.store._journal import encode_state, load_json, warn_if_redacted, warn_if_restored_redacted
from wfkit.store._store import Store
from wfkit.store._workspace import open_store
from wfkit.store._writer import Rows, WriteOp

if TYPE_CHECKING:
    from pathlib import Path

    from wfkit.engine._batch import BatchResult
    from wfkit.engine._subflows import ParentRun
    from wfkit.model._spec import Format

F = TypeVar("F", bound=StepFunction)


def _resolve_policy(
    o: _Options, graph: Graph, gated: bool, kept: tuple[Store, dict[str, Any]] | None = None
) -> ApprovalPolicy:
    """The run's approval policy, checked against ``graph`` (a decisions file naming a step that is
    no gate of it is refused here, before the run writes anything); ``gated``: whether the graph has
    an approval gate (``_gated``). A resumed run (``kept``: its store and row) given no policy keeps
    the one it was started with: a run started with policy="approve" and resumed after a crash, by
    `wfkit resume` or another process, was asked to be approved, not to halt at its gate."""
    if o.policy is not None:
        policy = as_policy(o.policy)
    elif not gated:
        return HALT  # no gate to decide: skip looking at the notebook and the environment
    elif kept is not None and kept[1].get("policy") is not None:
        store, row = kept
        policy = recorded_policy(load_json(store.path, row["run_id"], "runs.policy", row["policy"]), row["run_id"])
    else:
        from wfkit.engine._mode import current_mode, default_policy_from

        value, source = default_policy_from(current_mode(o.mode))
        policy = as_policy(value, source=source)
    _check_policy(policy, graph)
    return policy


def _check_policy(policy: ApprovalPolicy, graph: Graph) -> None:
    """``policy.check_workflow`` of a graph and of every sub-workflow inside it (its child runs
    use the same policy: a decisions file that names no gate of a child is refused up front too)."""
    policy.check_workflow(graph.name, graph.steps)
    if graph.subflows:
        for spec in graph.steps.values():
            child = None if spec.subflow is None else spec.subflow.workflow
            if isinstance(child, Workflow):
                _check_policy(policy, child.validate())


def check_tools(graph: Graph, registry: ToolProvider | None) -> None:
    """Every tool a step declares or a route binds must be in the run's registry, checked before
    the first step runs (not when a step happens to call it). Without a registry there is nothing
    to check against: ``ctx.tool`` then says so at call time."""
    if registry is None:
        return
    bound: dict[str, list[str]] = {}
    for name, spec in graph.steps.items():
        for tool in spec.tools:
            bound.setdefault(tool, []).append(f"step {name!r}")
    for source, router in graph.routers.items():
        for target in (*(r.go for r in router.routes), router.default):
            for tool in target.tools or ():
                bound.setdefault(tool, []).append(f"the route {source!r} -> {target.target!r}")
    missing = sorted(tool for tool in bound if tool not in registry)
    if missing:
        from wfkit.llm._tools import UnknownToolError

        where = "; ".join(f"{tool!r} (bound by {', '.join(bound[tool])})" for tool in missing)
        raise UnknownToolError(
            f"workflow {graph.name!r} binds tools its tool registry lacks: {where}. The registry has: "
            f"{', '.join(sorted(registry)) or 'nothing'}; register them, or pass another registry (tools=...)"
        )


# Workflows by name, so a ticket found after a kernel restart (wfkit.pending()) can resume its run
# with the workflow the notebook defined again.
_by_name: weakref.WeakValueDictionary[str, Workflow] = weakref.WeakValueDictionary()


def find_workflow(name: str) -> Workflow | None:
    return _by_name.get(name)


# The workflows being validated right now, outermost first: a sub-workflow cycle stops here.
_validating: list[Workflow] = []


def _gated(graph: Graph) -> bool:
    """Whether a graph, or a sub-workflow somewhere inside it, has an approval gate."""
    for spec in graph.steps.values():
        if spec.approval is not None:
            return True
        child = None if spec.subflow is None else spec.subflow.workflow
        if isinstance(child, Workflow) and _gated(child.validate()):
            return True
    return False


_EMPTY_HASH = hashlib.sha256(b"{}").hexdigest()[:16]


def _workflow_as_step(child: Workflow, name: str | None, mapping: MapSpec | None) -> str:
    """Why a workflow handed to ``flow.step`` or ``flow.map`` (which take functions) is refused, and
    what runs it: ``flow.subflow`` for one child run; for one per item, which no map step does, its
    run inside the item's function."""
    step = name or child.name
    fields = ", ".join(f"{f!r}: ..." for f in (child.inputs or ())) or "...: ..."
    subflow = f"flow.subflow({child.name}, name={step!r}, inputs={{{fields}}}, outputs={{...: ...}})"
    if mapping is None:
        return f"flow.step takes a function, got the workflow {child.name!r}: to run it as a step, {subflow}"
    return (
        f"flow.map runs a function per item, got the workflow {child.name!r}: a map step cannot run a "
        f"sub-workflow per item. Run it in the item's function (async def {step}(item): run = await "
        f"{child.name}.arun({{...}}, workspace=False); return run.state[...]: those runs are not stored "
        f"with this one, nor resumed with it), or run it once, as a step, with {subflow}"
    )


def _new_run_id() -> str:
    """24 hex digits: the wall clock in milliseconds (12), then 12 random ones.

    Time first, as in a ULID or a version 7 UUID: the ids of runs made together are neighbours in
    every index keyed by run id (the journal's, the runs', the attempts'), so a group commit of many
    concurrent runs' journal rows dirties a few pages of the index, not one per run. Measured: 334
    rows per commit from 1,000 concurrent runs, in a journal of some 50,000 rows at FULL, wrote
    125 KiB of WAL in 1.9-2.2 ms per commit, against 716-728 KiB in 4.0-4.2 ms with ids drawn at
    random (16 random digits, as earlier versions made them; stores keep those as they are); twelve
    bursts of benchmark F2's 1,000 runs wrote 89 MiB of WAL instead of 172. Two ids can be equal
    only if made in the same millisecond, and then one pair in 2**48 is."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(6).hex()}"


# ``json.dumps(inputs, sort_keys=True, default=repr)``, made once: the text the hash has always
# been taken of (runs stored by earlier versions compare equal).
_parameters_json = json_encoder(separators=(", ", ": "), sort_keys=True, default=repr)


M = TypeVar("M", bound=Callable[..., Any])


def _suggest_keywords(method: M) -> M:
    """``method`` with a misspelt keyword refused naming the closest one it takes ("did you mean
    'retry'?"), where Python 3.11 says only "unexpected keyword argument". The signature is
    unchanged (the overloads type its calls); a call that binds costs one ``try``."""
    takes = sorted(p.name for p in inspect.signature(method).parameters.values() if p.kind is p.KEYWORD_ONLY)

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except TypeError:
            unknown = sorted(kwargs.keys() - set(takes))
            if not unknown:  # raised by the call itself, not by binding its keywords
                raise
        retrying = {name: RETRY_WORDS[name] for name in unknown if name in RETRY_WORDS} if "retry" in takes else {}
        if retrying:  # a retry policy's keywords, given to the step itself: one call to write
            said = ", ".join(map(repr, retrying))
            policy = ", ".join(f"{field}={retry_field_value(name, kwargs[name])!r}" for name, field in retrying.items())
            others = [name for name in unknown if name not in retrying]
            also = "".join(
                f" ({name}={kwargs[name]!r} counts the first attempt)" for name in retrying if name in ATTEMPT_WORDS
            )
            also += f" ({unexpected_keywords(method.__qualname__, others, takes)})" if others else ""
            raise TypeError(
                f"{method.__qualname__}() takes no {said}: a retry policy does, so write "
                f"retry=wf.RetryPolicy({policy}){also}"
            )
        raise unexpected_keywords(method.__qualname__, unknown, takes)

    return cast("M", checked)


def _parameters_hash(inputs: Mapping[str, Any]) -> str:
    if not inputs:
        return _EMPTY_HASH
    return hashlib.sha256(_parameters_json(inputs).encode()).hexdigest()[:16]


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
        tools: ToolProvider | None = None,
        processors: Iterable[Processor] | None = None,
        inputs: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a workflow needs a non-empty name, got {name!r}")
        self.name = name
        self.description = description
        self.tools = tools  # the tool registry steps call through ctx.tool(); a run may override it
        # Event processors (redaction, truncation) applied before the journal and every sink.
        self.processors: tuple[Processor, ...] = DEFAULT_PROCESSORS if processors is None else tuple(processors)
        self._version = version
        # The state fields a run's inputs must hold (None: undeclared); maps may map over them.
        self.inputs: tuple[str, ...] | None = None if inputs is None else tuple(sorted(set(inputs)))
        self._merge = check_merges(merge or {})
        self._steps: dict[str, StepSpec] = {}
        self._edges: dict[str, list[str]] = {}
        self._routers: dict[str, Router] = {}
        self._entry: str | None = None
        self._graph: Graph | None = None
        self._definition: tuple[Graph, str] | None = None  # the graph's description as JSON, once per graph
        self._gates: tuple[Graph, bool] | None = None  # whether the graph has approval gates (_has_gates)
        # What a flow spec carries besides behaviour (the builder's layout), kept across load and save.
        self.metadata: dict[str, Any] = {}
        _by_name[name] = self
        # Where the workflow was defined, so `wfkit resume` can import it again.
        self._module: str | None = sys._getframe(1).f_globals.get("__name__")
        self._attr: str | None = None  # the module attribute _ref last found this workflow under
        # What rebuilds a workflow no module holds (the CLI sets it for a spec file it runs).
        self._origin: str | None = None

    # ---- definition ------------------------------------------------------------------------

    @overload
    def step(
        self,
        fn: F,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        max_visits: int | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        tools: Iterable[str] = (),
        entry: bool = False,
        approval: str | Approval | None = None,
        irreversible: bool = False,
        cache: bool | Cache | None = None,
        writes: Iterable[str] | None = None,
    ) -> F: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        max_visits: int | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        tools: Iterable[str] = (),
        entry: bool = False,
        approval: str | Approval | None = None,
        irreversible: bool = False,
        cache: bool | Cache | None = None,
        writes: Iterable[str] | None = None,
    ) -> Callable[[F], F]: ...

    @_suggest_keywords
    def step(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        max_visits: int | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        tools: Iterable[str] = (),
        entry: bool = False,
        approval: str | Approval | None = None,
        irreversible: bool = False,
        cache: bool | Cache | None = None,
        writes: Iterable[str] | None = None,
    ) -> F | Callable[[F], F]:
        """Declare a step; use as ``@flow.step`` or ``@flow.step(retry=..., timeout=...)``.

        A step is ``def f(state)`` or ``def f(state, ctx)``, sync or async, returning a dict of
        state updates (or None). Sync steps run in a worker thread.

        - ``retry``: a RetryPolicy (default: no retries).
        - ``timeout``: seconds (or a timedelta) per attempt; async steps are cancelled, a late sync result is
          discarded and recorded in ``run.late_results``.
        - ``max_visits``: bound on how often a loop may come back here.
        - ``fallback``: the step to go to when this one fails for good (``wfkit.END`` to end the
          branch quietly); without it the run fails.
        - ``classify``: replaces :func:`wfkit.classify_error` for this step.
        - ``tools``: the tools this step may use when no route binds others.
        - ``approval``: a reason string or :class:`Approval`: the run halts for a human's decision
          before the step runs (headless runs decide by policy).
        - ``irreversible``: the step has a side effect that must happen at most once (an email,
          a payment): an intent is committed before it runs, ``ctx.idempotency_key`` is stable
          across retries and resumes, no attempt starts while an earlier one's body may still run
          (a plain ``def`` body past its timeout is waited for, and not retried if it returned),
          and a crash mid-step waits for reconciliation.
        - ``cache``: ``True`` or :class:`wfkit.Cache`: reuse the result of an earlier run whose
          step code and the state fields it read were the same (never on gated steps).
        - ``writes``: the state fields the step writes; a map over a field needs a declared producer,
          and a step returning an undeclared field fails.
        """
        return self._register(
            fn,
            name=name,
            retry=retry,
            timeout=timeout,
            max_visits=max_visits,
            fallback=fallback,
            classify=classify,
            tools=tools,
            entry=entry,
            approval=approval,
            irreversible=irreversible,
            cache=cache,
            writes=writes,
            mapping=None,
        )

    @overload
    def map(
        self,
        fn: F,
        /,
        *,
        over: str,
        into: str,
        max_concurrency: int | None = None,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        tools: Iterable[str] = (),
        entry: bool = False,
        cache: bool | Cache | None = None,
    ) -> F: ...

    @overload
    def map(
        self,
        fn: None = None,
        /,
        *,
        over: str,
        into: str,
        max_concurrency: int | None = None,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        tools: Iterable[str] = (),
        entry: bool = False,
        cache: bool | Cache | None = None,
    ) -> Callable[[F], F]: ...

    @_suggest_keywords
    def map(
        self,
        fn: F | None = None,
        /,
        *,
        over: str,
        into: str,
        max_concurrency: int | None = None,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        tools: Iterable[str] = (),
        entry: bool = False,
        cache: bool | Cache | None = None,
    ) -> F | Callable[[F], F]:
        """Declare a step that runs once per item of the list in state field ``over``, and writes
        the results, in item order, to ``into``; use as ``@flow.map(over="docs", into="summaries")``.

        The function takes ``(item)`` or ``(item, ctx)`` and returns the item's result
        (``ctx.map_index`` is the item's position, ``ctx.state`` the state). Each item is an
        activation of its own: its own attempts, ``retry``, ``timeout``, events (``map_index`` in
        the step log) and checkpoint, so a resumed run runs only the unfinished items. A failed
        item sends the step to its ``fallback`` (``ctx.failure`` names the item) or fails the run.
        ``max_concurrency`` bounds the items in flight (None: all at once).
        """
        return self._register(
            fn,
            name=name,
            retry=retry,
            timeout=timeout,
            max_visits=None,
            fallback=fallback,
            classify=classify,
            tools=tools,
            entry=entry,
            approval=None,
            irreversible=False,
            cache=cache,
            writes=None,
            mapping=make_map(over, into, max_concurrency),
        )

    @_suggest_keywords
    def subflow(
        self,
        child: Workflow,
        /,
        *,
        name: str,
        outputs: Mapping[str, str],
        inputs: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: Seconds | None = None,
        max_visits: int | None = None,
        fallback: str | None = None,
        classify: Classifier | None = None,
        entry: bool = False,
    ) -> Workflow:
        """Add a step ``name`` that runs the workflow ``child`` as a sub-workflow.

        The child run starts with ``inputs={child_field: parent_field}`` taken from the parent's
        state, and when it succeeds the parent's state receives ``outputs={parent_field:
        child_field}`` from the child's final state. The child run has its own run id, linked to the
        parent's (``Workspace.run_info``), and its events carry the parent's id in
        ``parent_run_id``. A gate inside the child halts the parent too: its ticket shows among the
        parent's (``run.tickets()``), and approving it through the parent continues the child, then
        the parent. Resuming the parent resumes the child where it stopped. ``retry`` and ``timeout``
        apply to the child run as a whole (a retry starts a new child run); ``fallback`` as for any
        step. Returns the workflow, so calls chain.
        """
        if not isinstance(child, Workflow):
            raise TypeError(f"subflow() runs a wfkit.Workflow as a step, got {child!r}")
        if child is self:
            raise ValueError(f"workflow {self.name!r} cannot run itself as a sub-workflow")
        sub = make_subflow(child, inputs, outputs)
        spec = make_spec(
            subflow_body,
            name=name,
            retry=retry,
            timeout=timeout,
            max_visits=max_visits,
            fallback=fallback,
            classifier=classify,
            tools=(),
            writes=[parent for parent, _ in sub.outputs],
        )
        spec = dataclasses.replace(spec, subflow=sub, description=child.description or f"runs workflow {child.name!r}")
        old = self._steps.get(spec.name)
        if old is not None and old.subflow is None:
            raise ValueError(
                f"workflow {self.name!r} already has a step named {spec.name!r}; give this one another name"
            )
        self._steps[spec.name] = spec
        if entry or self._entry is None:
            self._entry = spec.name
        self._graph = None
        return self

    def _register(
        self,
        fn: F | None,
        *,
        name: str | None,
        retry: RetryPolicy | None,
        timeout: Seconds | None,
        max_visits: int | None,
        fallback: str | None,
        classify: Classifier | None,
        tools: Iterable[str],
        entry: bool,
        approval: str | Approval | None,
        irreversible: bool,
        cache: bool | Cache | None,
        writes: Iterable[str] | None,
        mapping: MapSpec | None,
    ) -> F | Callable[[F], F]:
        def register(func: F) -> F:
            if isinstance(func, Workflow):
                raise TypeError(_workflow_as_step(func, name, mapping))
            spec = make_spec(
                func,
                name=name,
                retry=retry,
                timeout=timeout,
                max_visits=max_visits,
                fallback=fallback,
                classifier=classify,
                tools=tuple(tools),
                approval=approval,
                irreversible=irreversible,
                cache=cache,
                writes=writes,
                item=mapping is not None,
            )
            if mapping is not None:
                spec = dataclasses.replace(spec, map=mapping)
            old = self._steps.get(spec.name)
            if old is not None and getattr(old.fn, "__qualname__", None) != getattr(func, "__qualname__", None):
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
        check_step_names("flow.edge", source, *targets)
        if not targets:
            raise TypeError(f"edge({source!r}) needs at least one target step")
        out = self._edges.setdefault(source, [])
        out.extend(t for t in targets if t not in out)
        self._graph = None
        return self

    def chain(self, *steps: str) -> Workflow:
        """Edges along a sequence: ``chain("a", "b", "c")`` is a -> b -> c."""
        check_step_names("flow.chain", *steps)
        for source, target in itertools.pairwise(steps):
            self.edge(source, target)
        return self

    def route(self, source: str, *routes: Route, default: Go | str) -> Workflow:
        """Conditional routes out of ``source``, tried in order after it completes.

        ``flow.route("classify", wfkit.when("kind", "eq", "code") >> wfkit.go("code_search",
        tools=["web_search"]), default="answer")``. A destination is ``wfkit.go(step, tools=...)``,
        or the step's name alone (``default="answer"`` is ``default=wfkit.go("answer")``: the step
        keeps its own tools). The default is required, so no state leads to a dead end;
        ``default=wfkit.END`` ends the branch. Calling route again for the same source replaces its
        routes.
        """
        check_step_names("flow.route", source, more=", ...")
        for r in routes:
            if not isinstance(r, Route):
                raise TypeError(f"routes out of {source!r} must be `wfkit.when(...) >> wfkit.go(...)`, got {r!r}")
        caller = sys._getframe(1)  # where the routes are declared: their warnings point there
        self._routers[source] = Router(
            tuple(routes),
            as_go(default, "default must be wfkit.go('step') or a step's name"),
            (caller.f_code.co_filename, caller.f_lineno, caller.f_globals.get("__name__", "__main__")),
        )
        self._graph = None
        return self

    def set_entry(self, step: str) -> Workflow:
        """Make ``step`` the one the run starts with."""
        check_step_names("flow.set_entry", step)
        self._entry = step
        self._graph = None
        return self

    # ---- inspection ------------------------------------------------------------------------

    def validate(self) -> Graph:
        """Check the definition; raise WorkflowDefinitionError listing every problem."""
        if self._graph is None:
            if self in _validating:  # a sub-workflow that contains this one again, somewhere down
                raise WorkflowDefinitionError(
                    self.name,
                    [f"workflow {self.name!r} runs itself through its sub-workflows: break the cycle"],
                )
            _validating.append(self)
            try:
                self._graph = compile_graph(
                    self.name, self._steps, self._edges, self._routers, self._entry, self._merge, self.inputs
                )
            finally:
                _validating.remove(self)
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

    def describe(self, *, expand: bool = False) -> str:
        """The graph as text: steps with their options, edges with their conditions; ``expand``
        shows each sub-workflow's own graph under its step."""
        from wfkit.model._graphview import to_text

        return to_text(self.validate(), expand=expand)

    def to_svg(self, *, expand: bool = False) -> str:
        """The graph as SVG (what the notebook shows); ``expand`` draws each sub-workflow's own
        graph in a frame joined to its step."""
        from wfkit.model._graphview import to_svg

        return to_svg(self.validate(), expand=expand)

    def to_mermaid(self) -> str:
        """The graph as Mermaid ``flowchart`` text (routes labelled with condition and tools)."""
        from wfkit.model._graphexport import to_mermaid

        return to_mermaid(self.validate())

    def to_dot(self) -> str:
        """The graph as Graphviz DOT text."""
        from wfkit.model._graphexport import to_dot

        return to_dot(self.validate())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The graph as SVG (drawn here: no network, no graphviz) and Mermaid, with a text fallback."""
        from wfkit.model._errors import WorkflowDefinitionError
        from wfkit.model._graphexport import to_mermaid
        from wfkit.model._graphview import as_img, to_svg

        try:
            graph = self.validate()
        except WorkflowDefinitionError as exc:
            return {"text/plain": f"{self!r}\n{exc}"}
        text = self.describe()
        # An image, not inline <svg>: JupyterLab's sanitizer strips inline SVG from notebooks it
        # does not trust (executed by papermill, opened from disk), leaving only the labels.
        html = as_img(to_svg(graph), alt=text)
        return {"text/plain": text, "text/html": html, "text/vnd.mermaid": to_mermaid(graph)}

    # ---- as data ---------------------------------------------------------------------------

    def _parts(self) -> Any:
        from wfkit.model._spec import FlowParts

        return FlowParts(
            name=self.name,
            entry=self._entry,
            steps=self._steps,
            edges=self._edges,
            routers=self._routers,
            merge=self._merge,
            version=self._version,
            description=self.description,
            inputs=self.inputs,
            metadata=self.metadata,
        )

    def to_spec(self) -> dict[str, Any]:
        """The workflow as plain data (a flow spec): steps by function reference, edges, routes,
        options and merge rules, in a fixed key order. :meth:`from_spec` builds it back.

        A step function importable as ``module:function`` is written that way; one defined in a
        notebook or inside a function is written by its name, to be passed back in ``steps=``.
        """
        from wfkit.model._spec import to_spec

        self.validate()
        return to_spec(self._parts())

    def save(self, path: str | Path, *, format: Format | None = None) -> Path:
        """Write :meth:`to_spec` as YAML (``.yaml``/``.yml``) or JSON (``.json``)."""
        from wfkit.model._spec import write

        return write(self.to_spec(), path, format)

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any] | str | Path,
        *,
        steps: ModuleType | Mapping[str, Any] | Iterable[Callable[..., Any]] | None = None,
        tools: Any = None,
        processors: Iterable[Processor] | None = None,
    ) -> Workflow:
        """Build a workflow from a flow spec (a mapping, or a .yaml/.json file).

        ``steps`` supplies the functions the spec names without a module: their module, a mapping
        of names to functions (``globals()`` in a notebook) or a list of functions. ``tools`` and
        ``processors`` are runtime objects, as on :class:`Workflow`. Every problem (schema,
        missing functions, bad options, graph) is reported at once in a
        :class:`~wfkit.FlowSpecError` whose lines start with their JSON path.
        """
        from pathlib import Path

        from wfkit.model._spec import load_parts, read_file

        data, source = read_file(spec) if isinstance(spec, str | Path) else (spec, None)
        parts = load_parts(data, steps, source)
        flow = cls(
            parts.name,
            version=parts.version,
            merge=parts.merge,
            description=parts.description,
            tools=tools,
            processors=processors,
            inputs=parts.inputs,
        )
        flow._steps = dict(parts.steps)
        flow._edges = {src: list(targets) for src, targets in parts.edges.items()}
        flow._routers = dict(parts.routers)
        flow._entry = parts.entry
        flow.metadata = dict(parts.metadata or {})
        flow._module = None  # not importable by name: `wfkit resume` needs --workflow, or the CLI's _origin
        return flow

    def replace_definition(self, other: Workflow) -> Workflow:
        """Take ``other``'s steps, edges, routes, merge rules, version, description and metadata,
        keeping this object (so every name bound to it sees the change, as after re-running the
        cell that defined it). The visual builder's Save uses it."""
        if other.name != self.name:
            if _by_name.get(self.name) is self:
                del _by_name[self.name]
            self.name = other.name
            _by_name[self.name] = self
        self._steps = dict(other._steps)
        self._edges = {src: list(targets) for src, targets in other._edges.items()}
        self._routers = dict(other._routers)
        self._entry = other._entry
        self._merge = dict(other._merge)
        self._version = other._version
        self.description = other.description
        self.inputs = other.inputs
        self.metadata = dict(other.metadata)
        self._graph = None
        return self

    # ---- running ---------------------------------------------------------------------------

    def _ref(self) -> str | None:
        """``module:attribute`` where this workflow can be imported again (for `wfkit resume`), or
        the origin the CLI recorded for a workflow it built from a spec file."""
        if self._origin is not None:  # said by whoever built it (the CLI, from a spec or for the demo)
            return self._origin
        module = sys.modules.get(self._module or "")
        if module is None or self._module == "__main__":
            return None
        names = vars(module)
        # Every durable run asks: the name found last time is tried first, not the whole module,
        # and a workflow the module does not hold (one a factory function built) is ruled out by
        # comparing identities in C, not by a Python step per global (all of them are alive, so
        # no two share an id).
        if self._attr is not None and names.get(self._attr) is self:
            return f"{self._module}:{self._attr}"
        if id(self) not in map(id, names.values()):
            return None
        for attr, value in names.items():
            if value is self:
                self._attr = attr
                return f"{self._module}:{attr}"
        return None

    def _store(self, workspace: WorkspaceArg) -> Store | None:
        if workspace is False:
            if self._has_gates(self.validate()):
                raise ValueError(
                    f"workflow {self.name!r} has approval gates (its own or its sub-workflows'), whose "
                    f"tickets live in a workspace; "
                    f"drop workspace=False (wfkit run: drop --no-workspace), or pass a folder"
                )
            return None
        return open_store(workspace)

    def _execution(self, inputs: Mapping[str, Any] | None, o: _Options) -> Execution:
        """A new run, recorded in the workspace (blocking on the store's writer)."""
        execution, create = self._new_execution(inputs, o)
        if create is not None and execution.store is not None:
            execution.store.writer.run(None, create)
            execution.store.created(create)
            claim(execution.run_id)
        return execution

    async def _aexecution(self, inputs: Mapping[str, Any] | None, o: _Options) -> Execution:
        """A new run, recorded in the workspace without blocking the event loop."""
        execution, create = self._new_execution(inputs, o)
        if create is not None and execution.store is not None:
            await record_run(execution.store, create)
            claim(execution.run_id)
        return execution

    def _has_gates(self, graph: Graph) -> bool:
        """``_gated(graph)``, worked out once per graph (every run asks, twice in memory) unless a
        sub-workflow could change its answer: a child workflow may gain or lose a gate after this one's
        graph was built."""
        made = self._gates
        if made is not None and made[0] is graph:
            return made[1]
        gated = _gated(graph)
        if not graph.subflows:
            self._gates = (graph, gated)
        return gated

    def _definition_json(self, graph: Graph) -> str:
        """The graph's description as stored with each run: made once per graph (a version), not
        once per run (on the event loop, a thousand runs started together would each pay for it)."""
        made = self._definition
        if made is None or made[0] is not graph:
            made = self._definition = (graph, json.dumps(graph.description))
        return made[1]

    def _new_execution(self, inputs: Mapping[str, Any] | None, o: _Options) -> tuple[Execution, Rows | None]:
        graph = self.validate()
        inputs = {} if inputs is None else inputs
        if not isinstance(inputs, Mapping) or not all(isinstance(k, str) for k in inputs):
            raise TypeError(f"a run's inputs are a dict with string keys, got {inputs!r}")
        missing = [k for k in self.inputs or () if k not in inputs]
        if missing:
            raise ValueError(
                f"workflow {self.name!r} declares the inputs {list(self.inputs or ())}, and this run's inputs "
                f"lack {missing}{misnamed(inputs, missing)}: pass them (or drop them from Workflow(..., inputs=...))"
            )
        if o.timeout is not None and not o.timeout > 0:
            raise ValueError(f"a run's timeout must be > 0 seconds, got {o.timeout!r}")
        check_tools(graph, o.tools if o.tools is not None else self.tools)
        store = self._store(o.workspace)
        policy = _resolve_policy(o, graph, self._has_gates(graph))
        run_id = o.run_id or _new_run_id()
        version = self._version or graph.fingerprint
        create = None
        if store is None:
            if not plain_updates(inputs):  # atoms under plain names: nothing check_state could refuse
                check_state("the run's inputs:", inputs)  # the rule durable runs follow, kept in memory too
            phash = _parameters_hash(inputs)  # (of inputs checked: no cycle in them)
        else:
            encoded = encode_state("the run's inputs:", inputs)
            warn_if_redacted("the run's inputs:", inputs, encoded)
            phash = _parameters_hash(inputs)
            create = store.create_run_rows(
                {
                    "run_id": run_id,
                    "workflow": self.name,
                    "workflow_version": version,
                    "fingerprint": graph.fingerprint,
                    "definition": self._definition_json(graph),
                    "workflow_ref": self._ref(),
                    "inputs": encoded,
                    "seed": o.seed,
                    "timeout": o.timeout,
                    "count_waiting": int(o.count_approval_wait),
                    "parameters_hash": phash,
                    # Kept for its resumes; none given: they decide by their own default, as it did.
                    "policy": None if o.policy is None else json.dumps(policy_record(policy)),
                }
            )
        execution = Execution(
            graph,
            self._merge,
            run_id,
            inputs,
            version=version,
            timeout=o.timeout,
            sinks=as_callables(o.sinks),
            seed=o.seed,
            parameters_hash=phash,
            store=store,
            policy=policy,
            count_waiting=o.count_approval_wait,
            llm=o.llm,
            tool_registry=o.tools if o.tools is not None else self.tools,
            processors=self.processors,
        )
        return execution, create

    async def _achild_execution(
        self, parent: ParentRun, step: str, visit: int, inputs: Mapping[str, Any]
    ) -> Execution | dict[str, Any]:
        """This workflow's run as the sub-workflow of ``parent``'s ``step`` (visit ``visit``): the
        run that step visit started before if it has not failed (resumed where it stopped, or its
        final state if it had succeeded), else a new run linked to the parent. Called in the
        parent's task: the lease, the new run's row and its link go through the writer, so the
        loop never waits for the store (the row and the link in one commit)."""
        store = parent.store
        options = _Options(
            workspace=False if store is None else store.path.parent,
            policy=parent.policy,
            llm=parent.llm,
            seed=parent.seed,
            sinks=parent.user_sinks,
        )
        if store is not None:
            earlier = store.child_run(parent.run_id, step, visit)
            if earlier is not None:
                row = store.run_row(earlier)
                if row["status"] == RunStatus.SUCCEEDED:
                    return dict(load_json(store.path, earlier, "runs.state", row["state"] or "{}"))
                if row["status"] not in RunStatus.FINISHED:  # halted, or cut off by a crash
                    resumed = await self._aresumed_execution(earlier, options)
                    resumed.parent_run_id = parent.run_id
                    return resumed
        child, create = self._new_execution(inputs, options)
        child.parent_run_id = parent.run_id
        if store is not None and create is not None:
            link = store.link_run_op(child.run_id, parent.run_id, "child", parent_step=step, parent_visit=visit)
            await record_run(store, create, link)
            claim(child.run_id)
        return child

    def _resumed_execution(self, run_id: str, o: _Options) -> Execution:
        graph, store = self._resume_claim(run_id, o)
        try:
            row = store.acquire(run_id)  # first: "someone else is running it" trumps everything
        except BaseException:
            unclaim(run_id)
            raise
        return self._resumed_or_released(graph, store, run_id, row, o, store.release)

    async def _aresumed_execution(self, run_id: str, o: _Options) -> Execution:
        """:meth:`_resumed_execution` from a coroutine: the lease is taken (and given back on a
        refusal) through the writer, so the loop never waits for a lock or the disk."""
        graph, store = self._resume_claim(run_id, o)
        try:
            row = await take_lease(store, run_id)
        except BaseException:
            unclaim(run_id)
            raise
        return self._resumed_or_released(graph, store, run_id, row, o, lambda run: give_lease_back(store, run))

    def _resumed_or_released(
        self,
        graph: Graph,
        store: Store,
        run_id: str,
        row: dict[str, Any],
        o: _Options,
        release: Callable[[str], object],
    ) -> Execution:
        """:meth:`_resumed_from`, or, when it refuses, the claim and the lease given back (by
        ``release``: at once, or through the writer from a coroutine)."""
        try:
            return self._resumed_from(graph, store, run_id, row, o)
        except BaseException:
            unclaim(run_id)
            release(run_id)
            raise

    def _resume_claim(self, run_id: str, o: _Options) -> tuple[Graph, Store]:
        """Check that the stored run can be resumed by this workflow here, and claim it."""
        graph = self.validate()
        check_tools(graph, o.tools if o.tools is not None else self.tools)
        store = self._store(o.workspace)
        if store is None:
            raise ValueError("resuming needs the workspace the run was stored in, not workspace=False")
        row = store.run_row(run_id)
        if row["workflow"] != self.name:
            raise ValueError(
                f"run {run_id} belongs to workflow {row['workflow']!r}, not {self.name!r}; resume it with that workflow"
            )
        if row["status"] == RunStatus.SUCCEEDED:
            raise ValueError(f"run {run_id} already succeeded; there is nothing to resume")
        check_same_model(store, run_id, o.llm, f"flow.resume({run_id!r})")
        claim(run_id)  # not twice in this process (the lease cannot tell)
        return graph, store

    def _resumed_from(self, graph: Graph, store: Store, run_id: str, row: dict[str, Any], o: _Options) -> Execution:
        """The execution of a stored run whose lease this process holds (``row``: its row)."""
        if row["status"] == RunStatus.SUCCEEDED:  # another process finished it while this one waited for the lease
            raise ValueError(f"run {run_id} already succeeded; there is nothing to resume")
        checkpoints = store.lineage_checkpoints(run_id)
        removed, changes = describe_changes(
            load_json(store.path, run_id, "runs.definition", row["definition"]), graph.description
        )
        lost = sorted({c[1] for c in checkpoints} & set(removed))
        if lost:
            raise WorkflowChangedError(
                f"completed step(s) {', '.join(map(repr, lost))} no longer exist in the workflow, so "
                f"resuming would lose their results; restore them, or start a new run"
                + (f" (other changes: {'; '.join(changes)})" if changes else ""),
                run_id=run_id,
            )
        if row["fingerprint"] != graph.fingerprint:
            warnings.warn(
                WorkflowChangedWarning(
                    f"run {run_id} was started with another definition of {self.name!r}; resuming "
                    f"with the current one. Changes: {'; '.join(changes) or 'step code or options'}"
                ),
                stacklevel=4,
            )
        elapsed = row["elapsed"] or 0.0
        if row["count_waiting"] and row["status"] in RunStatus.HALTED:
            elapsed += max(0.0, time.time() - row["updated_at"])
        elif row["status"] == RunStatus.RUNNING:
            # Cut off by a crash: the row holds the time used when it last (re)started or renewed
            # its lease (``updated_at``); the steps it settled since count too. (The time from its
            # last step to the crash is not known, and the time it lay dead is not the run's.)
            settled = store.last_settled_at(run_id)
            if settled is not None:
                elapsed += max(0.0, settled - row["updated_at"])
        execution = Execution(
            graph,
            self._merge,
            run_id,
            _restored_inputs(store, run_id, row["inputs"]),
            version=self._version or graph.fingerprint,
            timeout=row["timeout"],
            sinks=as_callables(o.sinks),
            seed=row["seed"] if o.seed is None else o.seed,
            parameters_hash=row["parameters_hash"],
            store=store,
            policy=_resolve_policy(o, graph, self._has_gates(graph), (store, row)),
            count_waiting=bool(row["count_waiting"]),
            elapsed_before=elapsed,
            llm=o.llm,
            tool_registry=o.tools if o.tools is not None else self.tools,
            processors=self.processors,
        )
        execution.started_at = row["created_at"]
        link = store.run_link(run_id)
        if link is not None and link["kind"] == "child":  # resumed alone too: its rows name the parent
            execution.parent_run_id = link["parent_run_id"]
        if link is not None and link["kind"] == "fork":
            execution.origin = {
                "run_id": link["parent_run_id"],
                "at": link["at_step"],
                "visit": link["parent_visit"],
                "update": load_json(store.path, run_id, "run_links.detail", link["detail"] or "{}"),
            }
        # A run whose row still says "running" under another executor's lease died with that
        # process: what was in flight was cut off. (Under our own lease it is a run this
        # process made to resume at once: a fork, a child.)
        crashed = row["status"] == RunStatus.RUNNING and row["lease_owner"] != store.owner
        before = store.events(run_id)
        # What a cancellation stopped (a cancelled run, or a branch ended by a sibling's failure)
        # runs again with its whole retry budget: the user's stop is no failure of the step.
        cancelled: dict[tuple[str, int] | tuple[str, int, int], int] = {}
        for e in before:
            if e.status == Status.CANCELLED:
                key = (e.step, e.visit) if e.map_index is None else (e.step, e.visit, e.map_index)
                cancelled[key] = cancelled.get(key, 0) + 1
        execution.replay(checkpoints, store.attempts_so_far(run_id), crashed=crashed, cancelled=cancelled)
        # The whole run's history, not only what this process will add: path() and events
        # cover the steps that ran before the halt or the crash too.
        execution.events[:0] = before
        return execution

    def _forked_execution(
        self,
        source: Execution | str,
        at: str,
        update: Mapping[str, Any],
        visit: int | None,
        run_id: str | None,
        o: _Options,
    ) -> Execution:
        """A new run sharing ``source``'s checkpoints up to step ``at``, with ``update`` applied there."""
        graph, update = self._checked_fork(at, update)
        new_id = run_id or _new_run_id()
        store = source.store if isinstance(source, Execution) else self._store(o.workspace)
        source_id = source if isinstance(source, str) else source.run_id
        if store is None:
            assert isinstance(source, Execution)
            rows: list[tuple[Any, ...]] = list(source.log)
            position, at_visit = _fork_point(rows, source_id, at, visit)
            execution = self._fork_of(graph, source, new_id, None, o)
            execution.replay([*rows[:position], (position, at, at_visit, "fork", update, None, None, None)], {})
            execution.origin = {"run_id": source_id, "at": at, "visit": at_visit, "update": update}
            return execution
        check_same_model(store, source_id, o.llm, f"flow.fork({source_id!r}, at={at!r})")
        fork = self._stored_fork(graph, store, source_id, at, update, visit, new_id, o)
        store.writer.run(fork.link, fork.create)  # the fork's row and its origin: one commit
        store.created(fork.create)
        return self._resumed_execution(new_id, fork.options)

    def _checked_fork(self, at: str, update: Mapping[str, Any]) -> tuple[Graph, dict[str, Any]]:
        """The graph, and the fork's update as a dict, once ``at`` and ``update`` are known good."""
        graph = self.validate()
        if at not in graph.steps:
            raise ValueError(
                f"cannot fork at {at!r}: workflow {self.name!r} has no such step"
                f"{did_you_mean(at, graph.steps)}; steps: {', '.join(sorted(graph.steps))}"
            )
        if not isinstance(update, Mapping) or not all(isinstance(k, str) for k in update):
            raise TypeError(f"a fork's update is a dict with string keys, got {update!r}")
        return graph, dict(update)

    def _fork_of(self, graph: Graph, source: Execution, new_id: str, store: Store | None, o: _Options) -> Execution:
        """An execution of the fork ``new_id`` of ``source``, with its inputs and version, nothing run yet."""
        return Execution(
            graph,
            self._merge,
            new_id,
            source.inputs,
            version=source.version,
            timeout=source.timeout,
            sinks=as_callables(o.sinks),
            seed=o.seed,
            parameters_hash=source.parameters_hash,
            store=store,
            policy=_resolve_policy(o, graph, self._has_gates(graph)),
            llm=o.llm,
            tool_registry=o.tools if o.tools is not None else self.tools,
            processors=self.processors,
        )

    def _stored_fork(
        self,
        graph: Graph,
        store: Store,
        source_id: str,
        at: str,
        update: dict[str, Any],
        visit: int | None,
        new_id: str,
        o: _Options,
    ) -> _StoredFork:
        """What forking a stored run writes (checked against the store first: nothing is written yet)."""
        parent = store.run_row(source_id)
        if parent["workflow"] != self.name:
            raise ValueError(f"run {source_id} belongs to workflow {parent['workflow']!r}, not {self.name!r}")
        position, at_visit = _fork_point(store.lineage_checkpoints(source_id), source_id, at, visit)
        detail = encode_state("the fork's update", update)
        # A fork runs as its run was asked to (inputs, seed, timeout, approval policy), but for what
        # it is given: to try a change, not to be stopped at a gate its run's policy decided. A
        # policy it would refuse (a decisions file naming no gate, an object that cannot be
        # rebuilt) is refused here, before anything is written.
        policy = _resolve_policy(o, graph, self._has_gates(graph), (store, parent))
        create = store.create_run_rows(
            {
                "run_id": new_id,
                "workflow": self.name,
                "workflow_version": parent["workflow_version"],
                "fingerprint": parent["fingerprint"],
                "definition": parent["definition"],
                "workflow_ref": parent["workflow_ref"],
                "inputs": parent["inputs"],
                "seed": parent["seed"],
                "timeout": parent["timeout"],
                "count_waiting": parent["count_waiting"],
                "parameters_hash": parent["parameters_hash"],
                "policy": parent["policy"] if o.policy is None else json.dumps(policy_record(policy)),
            }
        )
        link = store.link_run_op(
            new_id, source_id, "fork", at_step=at, at_seq=position, parent_step=at, parent_visit=at_visit, detail=detail
        )
        return _StoredFork(create, link, dataclasses.replace(o, workspace=store.path.parent))

    def _fork_on_loop(
        self, source: Execution, at: str, update: Mapping[str, Any], visit: int | None, run_id: str | None, o: _Options
    ) -> tuple[Execution, _Options, Callable[[], Awaitable[None]]]:
        """:meth:`_forked_execution` of a stored run, from a running loop: checked now, written
        later by the fork's own task (``record``, awaited before its execution is rebuilt from the
        store), so the loop never waits for the store. Returns the fork's execution until then
        (its id, nothing run), its options, and ``record``."""
        assert source.store is not None
        graph, checked = self._checked_fork(at, update)
        store, new_id = source.store, run_id or _new_run_id()
        check_same_model(store, source.run_id, o.llm, f"flow.fork({source.run_id!r}, at={at!r})")
        fork = self._stored_fork(graph, store, source.run_id, at, checked, visit, new_id, o)
        until_recorded = self._fork_of(graph, source, new_id, store, o)

        async def record() -> None:
            await record_run(store, fork.create, fork.link)

        return until_recorded, fork.options, record

    def fork(
        self,
        run_id: str,
        /,
        *,
        at: str,
        update: Mapping[str, Any] | None = None,
        visit: int | None = None,
        new_run_id: str | None = None,
        raise_on_error: bool = True,
        **options: Unpack[ResumeOptions],
    ) -> Run:
        """Fork a stored run at step ``at`` with ``update`` applied, and run the fork (blocking,
        like :meth:`resume`); see :meth:`Run.fork`. ``wfkit fork RUN --at STEP --set key=json``."""
        o = _Options.of("fork", options, _RESUME_KEYS)
        run = Run(self._forked_execution(run_id, at, update or {}, visit, new_run_id, o), self, o)
        run_blocking(run._exec.drive())
        return run.raise_for_status() if raise_on_error else run

    async def stream(
        self,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        chunks: bool = False,
        raise_on_error: bool = True,
        **options: Unpack[RunOptions],
    ) -> AsyncIterator[StepEvent | TokenChunk]:
        """Start a run and yield each step event as it happens: ``async for event in
        flow.stream(inputs)``; with ``chunks=True`` also the text steps stream from
        ``ctx.llm.stream`` (:class:`wfkit.TokenChunk`). Ends when the run ends or halts, raising its
        error if it failed. Leaving the loop early does not stop the run. Takes :meth:`run`'s options."""
        run = self.start(inputs, **options)
        async for item in run.stream(chunks=chunks, raise_on_error=raise_on_error):
            yield item

    @woken_by_signals  # the stop button cancels it at once
    async def arun(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        raise_on_error: bool = True,
        **options: Unpack[RunOptions],
    ) -> Run:
        """Run until it ends or halts, in the current task (``await flow.arun(...)`` in a cell).

        ``workspace``: the folder that keeps the run (default ``$WFKIT_HOME`` or ``./.wfkit``);
        ``False`` keeps it in memory only. ``policy`` decides approval gates when nobody is there:
        ``"halt"`` (default: wait for a decision), ``"approve"``, ``"reject"``, ``"fail"``, or a
        decisions file. ``count_approval_wait``: whether time halted for approval counts against
        ``timeout``. With ``raise_on_error`` a failed run raises its error (``err.run`` is the run).
        """
        o = _Options.of("arun", options)
        run = Run(await self._aexecution(inputs, o), self, o)
        await run._exec.drive()
        return run.raise_for_status() if raise_on_error else run

    def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        raise_on_error: bool = True,
        **options: Unpack[RunOptions],
    ) -> Run:
        """Like :meth:`arun`, from synchronous code, also inside a running loop (no nest_asyncio)."""
        o = _Options.of("run", options)
        run = Run(self._execution(inputs, o), self, o)
        run_blocking(run._exec.drive())
        return run.raise_for_status() if raise_on_error else run

    def start(
        self,
        inputs: Mapping[str, Any] | None = None,
        **options: Unpack[RunOptions],
    ) -> Run:
        """Start a run and return its handle at once; ``await run`` waits for the end.

        In a notebook the run is a task on the kernel's loop, so the cell is free at once. From
        plain synchronous code it runs on a background loop; ``run.wait()`` blocks for it.
        """
        o = _Options.of("start", options)
        if running_loop() is not None:
            # On a running loop (a notebook cell) the run's row is written by the run's own task:
            # the cell returns at once even while the store's writer waits for a lock or the disk.
            execution, create = self._new_execution(inputs, o)
            run = Run(execution, self, o)
            run._launch(before=None if create is None else lambda: _record_new_run(execution, create))
            return run
        run = Run(self._execution(inputs, o), self, o)
        run._launch()
        return run

    def resume(
        self,
        run_id: str,
        *,
        raise_on_error: bool = True,
        **options: Unpack[ResumeOptions],
    ) -> Run:
        """Continue a stored run from its last completed step (blocking, like :meth:`run`).

        Completed steps never run again; an irreversible step cut off between its intent and its
        result waits for :meth:`Workspace.reconcile` instead of running twice.
        """
        underway = take_resumed_by_decision(run_id)
        if underway is not None:  # deciding its ticket here resumed it already: wait for that
            if underway._cfuture is None and not underway.done():
                raise RuntimeError(
                    f"run {run_id} was resumed on this event loop when its ticket was decided; "
                    f"`await` it (or `await wfkit.drain()`) instead of resuming it again"
                )
            with contextlib.suppress(Exception):
                underway.wait()
            return underway.raise_for_status() if raise_on_error else underway
        o = _Options.of("resume", options, _RESUME_KEYS)
        run = Run(self._resumed_execution(run_id, o), self, o)
        run_blocking(run._exec.drive())
        return run.raise_for_status() if raise_on_error else run

    def run_many(
        self,
        inputs: Iterable[Mapping[str, Any]],
        *,
        executor: Any = None,
        concurrency: int = 16,
        seed: int = 0,
        workspace: WorkspaceArg = None,
        dataset: str | os.PathLike[str] | None = None,
        partition_size: int | None = None,
        retries: int = 2,
        progress: bool = True,
        announce: Callable[[str], None] | None = None,
        **options: Unpack[BatchRunOptions],
    ) -> BatchResult:
        """Run once per input, at most ``concurrency`` at once; run ``i`` is seeded ``seed + i``.

        Locally by default. ``executor=`` (a ``distributed.Client``, a cluster, or a scheduler
        address such as ``"tcp://host:8786"``) sends the inputs to Dask workers in partitions of
        ``partition_size``, each run there with the same bound; step logs land in ``dataset`` (a
        folder every worker sees, or an fsspec URL; default the workspace). ``options`` go to every
        run (``timeout``, ``policy``, ``llm``, ``tools``); ``announce`` receives the dashboard link
        (default: printed). ``workspace=False`` keeps the runs in memory (locally: their rows, no
        step log). Returns a :class:`BatchResult` with a row per input, in input order.
        """
        from wfkit.engine._batch import run_many

        return run_many(
            self,
            inputs,
            executor=executor,
            concurrency=concurrency,
            seed=seed,
            workspace=workspace,
            dataset=dataset,
            partition_size=partition_size,
            retries=retries,
            progress=progress,
            announce=announce,
            **options,
        )

    @woken_by_signals
    async def aresume(
        self,
        run_id: str,
        *,
        raise_on_error: bool = True,
        **options: Unpack[ResumeOptions],
    ) -> Run:
        """Continue a stored run in the current task; see :meth:`resume`."""
        underway = take_resumed_by_decision(run_id)
        if underway is not None:  # deciding its ticket here resumed it already: wait for that
            with contextlib.suppress(Exception):
                await underway
            return underway.raise_for_status() if raise_on_error else underway
        o = _Options.of("aresume", options, _RESUME_KEYS)
        run = Run(await self._aresumed_execution(run_id, o), self, o)
        await run._exec.drive()
        return run.raise_for_status() if raise_on_error else run


class _StoredFork(NamedTuple):
    """A stored run's fork, ready to write: its run row, its link to the origin, its options."""

    create: Rows
    link: WriteOp[None]
    options: _Options


async def _record_new_run(execution: Execution, create: Rows) -> None:
    """Write a started run's row (before its first step), then claim it as executing here."""
    assert execution.store is not None
    await record_run(execution.store, create)
    claim(execution.run_id)


def _fork_point(rows: list[tuple[Any, ...]], run_id: str, at: str, visit: int | None) -> tuple[int, int]:
    """(how many checkpoint rows the fork shares, the visit of ``at`` it forks at)."""
    for i in range(len(rows) - 1, -1, -1):
        row = rows[i]
        if row[1] == at and row[3] == "ok" and (visit is None or row[2] == visit) and (len(row) < 8 or row[7] is None):
            return i + 1, int(row[2])
    done = sorted({r[1] for r in rows if r[3] == "ok"})
    which = f"step {at!r}" + ("" if visit is None else f" (visit {visit})")
    raise ValueError(
        f"run {run_id} never completed {which}, so there is no checkpoint to fork from; "
        f"steps it completed: {', '.join(done) or 'none'}"
    )


def _restored_inputs(store: Store, run_id: str, text: str) -> Any:
    """A stored run's inputs, decoded (and warned about, if a secret in them was not stored)."""
    inputs = load_json(store.path, run_id, "runs.inputs", text)
    warn_if_restored_redacted(run_id, "its inputs held", text, inputs)
    return inputs


def resume_decided(workspace: str | os.PathLike[str], ticket: Ticket) -> Run | None:
    """Continue a ticket's run after its decision, as a task on the running loop (or in the
    background), if this process defines the run's workflow; otherwise the decision waits for
    ``wfkit resume`` and this returns None."""
    store = open_store(workspace, create=False)
    run_id = store.top_run(ticket.run_id)  # a gate inside a sub-workflow: the top run resumes it
    name = ticket.workflow if run_id == ticket.run_id else store.run_row(run_id)["workflow"]
    flow = find_workflow(name)
    if flow is None or executing_here(run_id) or under_way_here(run_id):
        # Not defined here, or already on its way (it will meet the decision itself): two panels of
        # one ticket (the run's view, wf.pending()'s) both learn of a decision made elsewhere.
        return None
    status = store.run_row(run_id)["status"]
    if status not in RunStatus.HALTED and status != RunStatus.INTERRUPTED:
        return None  # a resume that came first has taken it on, or finished it already
    held = held_handle(run_id)
    if held is not None and held._resumable():
        run = held.resume()  # the handle its owner holds (and its live view) follows the run
    else:
        options = _Options(workspace=workspace)
        try:
            check_same_model(store, run_id, options.llm, f"flow.resume({run_id!r})")
        except ValueError:  # it called a model no client here is given: its resume must name one
            return None
        run = Run(flow._resumed_execution(run_id, options), flow, options)
        run._launch()
    resumed_by_decision(run)
    return run
