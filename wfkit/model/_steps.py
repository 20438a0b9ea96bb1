"""A step's declaration: its function and the options that govern how it runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import math
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from wfkit.model._approvals import Approval, as_approval
from wfkit.model._retry import NO_RETRY, Classifier, RetryPolicy
from wfkit.model._seconds import Seconds, as_seconds, as_timeout

StepFunction: TypeAlias = Callable[..., Any]
CacheKey: TypeAlias = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A step that runs once per item of a list in the state (``flow.map(...)``), as plain data.

    ``over`` is the state field holding the list, ``into`` the field that receives the results in
    item order, ``max_concurrency`` how many items run at once (None: all).
    """

    over: str
    into: str
    max_concurrency: int | None = None

    def describe(self) -> dict[str, Any]:
        return {"over": self.over, "into": self.into, "max_concurrency": self.max_concurrency}


class SubWorkflow(Protocol):
    """What a step needs of the workflow it runs as a sub-workflow (``Workflow`` is one): named
    here so the model never imports the engine that defines it."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def inputs(self) -> tuple[str, ...] | None: ...

    def validate(self) -> object: ...

    def _ref(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Subflow:
    """A step that runs another workflow as a child run (``flow.subflow(...)``), as plain data.

    ``inputs`` pairs (child field, parent field): the child run starts with those fields of the
    parent's state. ``outputs`` pairs (parent field, child field): what the parent's state receives
    from the child's final state. ``ref`` is where the child can be imported again
    (``module:attribute``), when it can.
    """

    workflow: SubWorkflow
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]
    ref: str | None = None

    def describe(self) -> dict[str, Any]:
        # Not ``ref``: where the child is imported from does not change what the step does.
        return {
            "workflow": self.workflow.name,
            "version": self.workflow.version,
            "inputs": dict(self.inputs),
            "outputs": dict(self.outputs),
        }


@dataclass(frozen=True, slots=True)
class Cache:
    """Cache a step's result across runs: ``@flow.step(cache=wfkit.Cache(ttl=3600))``.

    The key is the step's code fingerprint and the values of the state fields it read (for a map
    step, the item), plus ``key(state)`` if given. ``ttl`` in seconds (or a timedelta); None keeps
    entries until ``wfkit cache clear``. A hit records an event with status ``cached`` and does not
    run the step. Durable runs keep the cache in the workspace; in-memory runs in the process.
    """

    ttl: float | dt.timedelta | None = None
    key: CacheKey | None = None

    def __post_init__(self) -> None:
        ttl = as_seconds(self.ttl)
        object.__setattr__(self, "ttl", ttl)  # kept in seconds from here on
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf):
            # Infinity too: no expiry is said by None, and a flow spec can hold no infinity
            # (flow.save would write one its loader refuses).
            raise ValueError(f"Cache(ttl=...) is seconds > 0 or a timedelta (None: no expiry), got {ttl!r}")
        if self.key is not None and not callable(self.key):
            raise TypeError(f"Cache(key=...) is a function of the state, got {self.key!r}")

    @property
    def ttl_seconds(self) -> float | None:
        return as_seconds(self.ttl)

    def describe(self) -> dict[str, Any]:
        return {"ttl": self.ttl_seconds, "key": None if self.key is None else code_hash(self.key)}


def as_cache(cache: bool | Cache | None) -> Cache | None:
    if cache is None or cache is False:
        return None
    if cache is True:
        return Cache()
    if isinstance(cache, Cache):
        return cache
    raise TypeError(f"cache= takes True or wfkit.Cache(ttl=..., key=...), got {cache!r}")


@dataclass(frozen=True, slots=True)
class StepSpec:
    """Everything the engine needs to run one step. Built by :meth:`Workflow.step`."""

    name: str
    fn: StepFunction
    is_async: bool
    takes_context: bool
    retry: RetryPolicy = NO_RETRY
    timeout: float | None = None
    max_visits: int | None = None
    fallback: str | None = None
    classifier: Classifier | None = None
    tools: tuple[str, ...] = ()
    description: str = ""
    approval: Approval | None = None
    irreversible: bool = False
    # Appended options, all plain data: a map over a list in the state, a result cache, and the
    # fields the step declares it writes (None: undeclared).
    map: MapSpec | None = None
    cache: Cache | None = None
    writes: frozenset[str] | None = None
    subflow: Subflow | None = None  # the step runs another workflow as a child run
    # Whether the engine must check something before running it (approval, intent). Read before
    # every activation, so worked out once here; derived, so outside the constructor, the repr and
    # equality (``dataclasses.replace`` works it out again).
    gated: bool = field(init=False, repr=False, compare=False)
    # Whether the scheduler may await the body itself (under its timeout, if it has one), in its
    # own task, with no attempt runner: an async function taking no context, with no cache, map,
    # gate, sub-workflow or declared writes to enforce. Its first attempt's result (or error, a
    # timeout's included) still goes to the attempt runner for anything beyond a plain success
    # (retries, classification, checks).
    inline: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        gated = self.approval is not None or self.irreversible
        object.__setattr__(self, "gated", gated)
        object.__setattr__(
            self,
            "inline",
            self.is_async
            and not self.takes_context
            and not gated
            and self.map is None
            and self.cache is None
            and self.writes is None
            and self.subflow is None,
        )

    def describe(self) -> dict[str, Any]:
        """The options that define behaviour, as plain data (for fingerprints and display)."""
        r = self.retry
        return {
            "name": self.name,
            "async": self.is_async,
            "retry": [
                r.max_retries,
                r.base_delay,
                r.max_delay,
                r.backoff_factor,
                r.jitter,
                r.max_elapsed,
                r.max_unknown_retries,
            ],
            "timeout": self.timeout,
            "max_visits": self.max_visits,
            "fallback": self.fallback,
            "tools": list(self.tools),
            "approval": None if self.approval is None else self.approval.describe(),
            "irreversible": self.irreversible,
            "code": code_hash(self.fn),
            **({} if self.map is None else {"map": self.map.describe()}),
            **({} if self.cache is None else {"cache": self.cache.describe()}),
            **({} if self.writes is None else {"writes": sorted(self.writes)}),
            **({} if self.subflow is None else {"subflow": self.subflow.describe()}),
        }


def irreversible_steps(steps: Mapping[str, StepSpec]) -> list[str]:
    """The irreversible steps among ``steps`` and those of the sub-workflows they run, by name."""
    found: list[str] = []
    for spec in steps.values():
        if spec.irreversible:
            found.append(spec.name)
        if spec.subflow is not None:  # a Workflow has its steps; another SubWorkflow may not say
            child = getattr(spec.subflow.workflow, "steps", {})
            found += [f"{spec.subflow.workflow.name}.{name}" for name in irreversible_steps(child)]
    return found


def code_hash(fn: Any) -> str:
    """A hash of what a function does (bytecode, names, constants), not of where it lives: line
    numbers and file names (a notebook cell's file differs per kernel) do not change it."""
    digest = hashlib.sha256()

    def feed(code: types.CodeType) -> None:
        digest.update(code.co_code)
        digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                feed(const)
            else:
                digest.update(repr(const).encode())

    code = getattr(fn, "__code__", None) or getattr(type(fn).__call__, "__code__", None)
    if isinstance(code, types.CodeType):
        feed(code)
    else:
        digest.update(getattr(type(fn), "__qualname__", repr(type(fn))).encode())
    return digest.hexdigest()[:12]


def _arity(fn: StepFunction, name: str, *, item: bool = False) -> bool:
    """True if ``fn`` takes (state, ctx), False if it takes (state) only; a map step's function
    (``item``) takes its item in place of the state."""
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):  # builtins without a signature: assume the full form
        return True
    if len(params) not in (1, 2):
        if item:
            raise TypeError(
                f"map step {name!r} must take (item) or (item, ctx), but its function takes {len(params)} "
                f"required positional arguments ({', '.join(p.name for p in params)}); it is called once per item "
                "of the list it maps over, and reads the state as ctx.state"
            )
        raise TypeError(
            f"step {name!r} must take (state) or (state, ctx), but its function takes "
            f"{len(params)} required positional arguments"
        )
    return len(params) == 2


def make_spec(
    fn: StepFunction,
    *,
    name: str | None,
    retry: RetryPolicy | None,
    timeout: Seconds | None,
    max_visits: int | None,
    fallback: str | None,
    classifier: Classifier | None,
    tools: tuple[str, ...],
    approval: str | Approval | None = None,
    irreversible: bool = False,
    cache: bool | Cache | None = None,
    writes: Iterable[str] | None = None,
    item: bool = False,
) -> StepSpec:
    """A step's spec; ``item`` for a map step's function, which takes (item) or (item, ctx)."""
    if not callable(fn):
        raise TypeError(f"a step must be a function, got {fn!r}")
    step_name = name or getattr(fn, "__name__", None)
    if not step_name or not isinstance(step_name, str) or step_name == "<lambda>":
        raise TypeError("a step needs a name: pass name='...' for lambdas and callables")
    timeout = as_timeout(timeout, f"step {step_name!r}: timeout")
    if max_visits is not None and (not isinstance(max_visits, int) or max_visits < 1):
        raise ValueError(f"step {step_name!r}: max_visits must be an int >= 1, got {max_visits!r}")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"step {step_name!r}: retry must be a wfkit.RetryPolicy, got {retry!r}")
    return StepSpec(
        name=step_name,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__),
        takes_context=_arity(fn, step_name, item=item),
        retry=retry or NO_RETRY,
        timeout=timeout,
        max_visits=max_visits,
        fallback=fallback,
        classifier=classifier,
        tools=tools,
        description=(inspect.getdoc(fn) or "").split("\n", 1)[0],
        approval=as_approval(approval),
        irreversible=bool(irreversible),
        cache=as_cache(cache),
        writes=None if writes is None else _field_names(step_name, "writes", writes),
    )


def _field_names(step: str, option: str, names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):
        names = [names]
    out = frozenset(names)
    if not all(isinstance(n, str) and n for n in out):
        raise TypeError(f"step {step!r}: {option}= takes state field names, got {sorted(map(repr, out))}")
    return out


def make_map(over: str, into: str, max_concurrency: int | None) -> MapSpec:
    for option, value in (("over", over), ("into", into)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"map {option}= takes a state field name, got {value!r}")
    if over == into:
        raise ValueError(
            f"a map reads its items from {over!r} and writes its results to another field: into= must differ"
        )
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
    ):
        raise ValueError(f"max_concurrency must be an int >= 1 (None: all items at once), got {max_concurrency!r}")
    return MapSpec(over, into, max_concurrency)


def make_subflow(workflow: SubWorkflow, inputs: Mapping[str, str] | None, outputs: Mapping[str, str] | None) -> Subflow:
    """Check a sub-workflow's mappings: ``inputs={child_field: parent_field}``,
    ``outputs={parent_field: child_field}``."""
    for option, mapping, sides in (
        ("inputs", inputs, "{child_field: parent_field}"),
        ("outputs", outputs, "{parent_field: child_field}"),
    ):
        if mapping is None:
            continue
        if not isinstance(mapping, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in mapping.items()
        ):
            raise TypeError(f"subflow {option}= maps state field names, {sides}, got {mapping!r}")
    if not outputs:
        raise ValueError(
            f"sub-workflow {workflow.name!r} gives its parent nothing back: pass "
            f"outputs={{parent_field: child_field}} naming what the parent's state receives"
        )
    ref = workflow._ref()
    return Subflow(workflow, tuple(sorted((inputs or {}).items())), tuple(sorted(outputs.items())), ref)


def subflow_body(state: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    """A sub-workflow step's function: the engine runs the child run in its place."""
    raise RuntimeError(
        f"step {ctx.step!r} is a sub-workflow: it runs inside its parent's run (flow.run/start), not on its own"
    )
