"""Tools a step may call: a registry saying what each tool costs, how fast and how reliable it is.

    tools = ToolRegistry()

    @tools.tool(category="search", cost_estimate=0.001, avg_latency_ms=800, reliability=0.95)
    async def web_search(query: str) -> list[dict]: ...

    flow = wf.Workflow("triage", tools=tools)
    flow.route("classify", ..., default=wf.go("answer", tools=["web_search"]))

    @flow.step
    async def answer(state, ctx):
        hits = await ctx.tool("web_search", query=state["query"])

Each path loads only the tools it needs: a step may call only the tools its route bound
(``ctx.tools``; the step's own ``tools=`` when no route binds any). Any other call raises
:class:`ToolNotBoundError` before the tool runs. Every call is recorded in the step's event:
``extra["tool_calls"]`` lists ``{"tool", "ok", "latency_ms", "cost_usd"}`` (and ``"error"``), and
the tool's ``cost_estimate`` adds to the event's ``cost_usd`` (which stays None, unknown, in an
attempt that also called a model no price table knows).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from wfkit.model._context import StepContext
from wfkit.model._errors import WfkitError
from wfkit.model._retry import TransientError

F = TypeVar("F", bound=Callable[..., Any])


class ToolNotBoundError(WfkitError, ValueError):
    """A step called a tool that the route to it did not bind (permanent: fix the workflow)."""


class UnknownToolError(WfkitError, ValueError):
    """A bound tool that no registry provides (permanent: register it, or pass the registry)."""


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """What a tool is: its ``category``, ``cost_estimate`` (USD per call), ``avg_latency_ms``
    and ``reliability`` (the share of calls that succeed). Routing and analysis read these."""

    name: str
    category: str = "general"
    cost_estimate: float = 0.0
    avg_latency_ms: float = 0.0
    reliability: float = 1.0
    description: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not self.name:
            problems.append(f"name must be a non-empty string, got {self.name!r}")
        for key in ("cost_estimate", "avg_latency_ms"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                problems.append(f"{key} must be a number >= 0, got {value!r}")
        rel = self.reliability
        if isinstance(rel, bool) or not isinstance(rel, int | float) or not 0 <= rel <= 1:
            problems.append(f"reliability must be a fraction in [0, 1], got {rel!r}")
        if problems:
            raise ValueError(f"invalid ToolInfo {self.name!r}: " + "; ".join(problems))


def _parameter(p: inspect.Parameter) -> str:
    """A parameter as its function was written (``query: str``, ``max_results: int = 3``), its type
    unquoted when the module postpones annotations."""
    stars = "*" if p.kind == p.VAR_POSITIONAL else "**" if p.kind == p.VAR_KEYWORD else ""
    text = stars + p.name
    if p.annotation is not p.empty:
        kind = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", repr(p.annotation))
        text += f": {kind}"
    if p.default is not p.empty:
        text += f" = {p.default!r}"
    return text


@dataclass(frozen=True, slots=True)
class Tool:
    """A registered tool: its :class:`ToolInfo` and the function that does the work. A function
    with a ``ctx`` parameter gets the calling step's context (for ``ctx.rng``, ``ctx.idempotency_key``)."""

    info: ToolInfo
    fn: Callable[..., Any]
    takes_ctx: bool = field(init=False)

    def __post_init__(self) -> None:
        try:
            params = inspect.signature(self.fn).parameters
        except (TypeError, ValueError):  # some builtins have no signature
            params = {}  # type: ignore[assignment]
        object.__setattr__(self, "takes_ctx", "ctx" in params)

    @property
    def name(self) -> str:
        return self.info.name

    def _check_arguments(self, kwargs: Mapping[str, Any]) -> None:
        """A TypeError naming the tool, what it takes and the call to write, when ``kwargs`` do not
        fit its parameters (checked before it runs: Python's own said
        ``example_registry.<locals>.web_search() got an unexpected keyword argument 'q'``, naming
        neither the tool as the step called it nor what it takes)."""
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError):  # no signature to check against: the call says
            return
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            own = [p for p in signature.parameters.values() if p.name != "ctx" or not self.takes_ctx]
            takes = ", ".join(_parameter(p) for p in own) or "no arguments"
            named = [p for p in own if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            needed = [p.name for p in named if p.default is inspect.Parameter.empty] or [p.name for p in named]
            write = "".join(f", {name}=..." for name in needed)
            given = [k for k in kwargs if k != "ctx" or not self.takes_ctx]
            problems = []
            if not any(p.kind == p.VAR_KEYWORD for p in own):
                problems += [f"it has no parameter {k!r}" for k in given if k not in signature.parameters]
            problems += [f"{p.name!r} is missing" for p in named if p.default is p.empty and p.name not in kwargs]
            raise TypeError(
                f"tool {self.name!r} takes ({takes}), and was called with "
                f"{', '.join(f'{k}=...' for k in given) or 'no arguments'} ({'; '.join(problems) or exc}): "
                f"call ctx.tool({self.name!r}{write})"
            ) from None

    async def call(self, arguments: Mapping[str, Any], ctx: StepContext | None = None) -> Any:
        """Run the tool: async functions are awaited, plain ones run in a worker thread."""
        kwargs = dict(arguments)
        if self.takes_ctx:
            if "ctx" in kwargs:
                raise TypeError(f"tool {self.name!r} receives the step context as ctx; do not pass ctx yourself")
            kwargs["ctx"] = ctx
        self._check_arguments(kwargs)
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        result = await asyncio.to_thread(self.fn, **kwargs)
        return await result if inspect.isawaitable(result) else result


class ToolRegistry:
    """The tools a workflow may use, by name: ``Workflow(..., tools=registry)``.

    Register with ``@registry.tool(category=..., cost_estimate=..., avg_latency_ms=...,
    reliability=...)`` or :meth:`add`. A plain ``{name: function}`` dict also works as a registry.
    """

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self._put(tool)

    def _put(self, tool: Tool) -> Tool:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def add(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        category: str = "general",
        cost_estimate: float = 0.0,
        avg_latency_ms: float = 0.0,
        reliability: float = 1.0,
        description: str | None = None,
    ) -> Tool:
        """Register ``fn`` as a tool (named after the function unless ``name`` is given)."""
        info = ToolInfo(
            name or fn.__name__,
            category,
            cost_estimate,
            avg_latency_ms,
            reliability,
            (inspect.getdoc(fn) or "") if description is None else description,
        )
        return self._put(Tool(info, fn))

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        category: str = "general",
        cost_estimate: float = 0.0,
        avg_latency_ms: float = 0.0,
        reliability: float = 1.0,
        description: str | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        category: str = "general",
        cost_estimate: float = 0.0,
        avg_latency_ms: float = 0.0,
        reliability: float = 1.0,
        description: str | None = None,
    ) -> F | Callable[[F], F]:
        """Decorator: ``@registry.tool`` or ``@registry.tool(category="search", ...)``."""

        def register(f: F) -> F:
            self.add(
                f,
                name=name,
                category=category,
                cost_estimate=cost_estimate,
                avg_latency_ms=avg_latency_ms,
                reliability=reliability,
                description=description,
            )
            return f

        return register if fn is None else register(fn)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise UnknownToolError(f"no tool {name!r} in this registry; registered: {', '.join(self) or 'none'}")
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def infos(self, category: str | None = None) -> list[ToolInfo]:
        """Every tool's :class:`ToolInfo` (of one ``category`` if given), e.g. for a DataFrame."""
        return [t.info for t in self._tools.values() if category is None or t.info.category == category]

    def __repr__(self) -> str:
        return f"ToolRegistry({', '.join(f'{t.name} ({t.info.category})' for t in self._tools.values())})"


def _resolve(registry: Any, name: str) -> Tool | None:
    if isinstance(registry, ToolRegistry):
        return registry.get(name)
    if isinstance(registry, Mapping):
        found = registry.get(name)
        if found is None or isinstance(found, Tool):
            return found
        if callable(found):
            return Tool(ToolInfo(name), found)
        raise TypeError(f"tool {name!r} in the registry is {found!r}, not a function or Tool")
    raise TypeError(f"the tool registry must be a ToolRegistry or a dict of functions, got {type(registry).__name__}")


def _calls_so_far(ctx: StepContext) -> list[dict[str, Any]]:
    extra = (ctx.usage or {}).get("extra") or {}
    return list(extra.get("tool_calls") or ())


async def invoke(ctx: StepContext, name: str, arguments: dict[str, Any], *, reached: str | None = None) -> Any:
    """``await ctx.tool(name, **arguments)``: check the binding, run the tool, record the call.
    ``reached``: how this activation came to run when no route led to it (``"the workflow's entry
    step"``, ``"reached by an edge, not a route"``), so the refusal names what binds its tools."""
    if name not in ctx.tools:
        raise ToolNotBoundError(_not_bound(ctx, name, reached))
    registry = ctx.tool_registry
    if registry is None:
        raise UnknownToolError(
            f"step {ctx.step!r} called tool {name!r}, but the run has no tool registry; pass one with "
            f"Workflow(..., tools=registry) or run(..., tools=registry)"
        )
    tool = _resolve(registry, name)
    if tool is None:
        known = ", ".join(sorted(registry)) or "none"
        raise UnknownToolError(
            f"step {ctx.step!r} called tool {name!r}, which its route bound but the registry lacks "
            f"(registered: {known}); register it with @registry.tool"
        )
    started = time.perf_counter()
    call: dict[str, Any] = {"tool": name, "ok": True}
    try:
        return await tool.call(arguments, ctx)
    except BaseException as exc:
        call["ok"], call["error"] = False, type(exc).__name__
        raise
    finally:
        call["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        call["cost_usd"] = tool.info.cost_estimate
        cost = tool.info.cost_estimate or None  # a free tool leaves an unknown LLM cost unknown
        ctx.record(cost_usd=cost, tool_calls=[*_calls_so_far(ctx), call])


def _not_bound(ctx: StepContext, name: str, reached: str | None) -> str:
    """Why ``ctx.step`` may not call ``name``, and what binds a tool to it: the route that led to
    it, or, when no route leads to it (the entry step, a step after a plain edge), its own
    ``tools=``; ``wf.go(..., tools=...)`` would bind nothing to such a step."""
    bound = ", ".join(repr(t) for t in ctx.tools) or "no tools"
    if reached is None:
        return (
            f"step {ctx.step!r} called tool {name!r}, but the route that led to it bound {bound}; bind it "
            f"where the route is declared, e.g. wf.go({ctx.step!r}, tools=[..., {name!r}]), or on the step "
            f"itself with @flow.step(tools=[{name!r}]) when no route binds tools"
        )
    tools = [*ctx.tools, name]
    return (
        f"step {ctx.step!r} called tool {name!r}, but it may call {bound}: it is {reached}, so its own tools "
        f"are all it may call (a route's wf.go(..., tools=...) binds tools only to the step it leads to); "
        f"declare them on the step: @flow.step(tools={tools!r}) (in a flow spec, tools: [{', '.join(tools)}] "
        f"under the step)"
    )


# ---- the article's four tools, simulated -----------------------------------------------------------


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def example_registry(*, time_scale: float = 0.01, failures: bool = True) -> ToolRegistry:
    """The article's tool registry (web_search, code_interpreter, sql_query, file_read), simulated
    offline: answers are made up from the arguments, nothing runs, no file is read, no query
    executes. A call sleeps about ``avg_latency_ms * time_scale`` (exponentially distributed; 1.0
    for real time) and, with ``failures``, fails with a transient error at ``1 - reliability``.
    Randomness comes from the step's ``ctx.rng``, so a seeded run repeats exactly."""
    registry = ToolRegistry()

    async def behave(ctx: StepContext | None, info: ToolInfo) -> None:
        rng = ctx.rng if ctx is not None else random.Random()
        await asyncio.sleep(rng.expovariate(1.0) * info.avg_latency_ms * time_scale / 1000)
        if failures and rng.random() >= info.reliability:
            raise TransientError(f"{info.name}: simulated upstream failure (reliability {info.reliability:.1%})")

    @registry.tool(category="search", cost_estimate=0.001, avg_latency_ms=800, reliability=0.95)
    async def web_search(query: str, max_results: int = 3, ctx: StepContext | None = None) -> list[dict[str, str]]:
        """Search the web; returns titles, URLs and snippets."""
        await behave(ctx, registry["web_search"].info)
        slug = "-".join(query.lower().split())[:40]
        return [
            {
                "title": f"Result {i + 1} for {query}",
                "url": f"https://example.com/{slug}/{i + 1}",
                "snippet": f"Simulated snippet {i + 1} about {query}.",
            }
            for i in range(max_results)
        ]

    @registry.tool(category="compute", cost_estimate=0.002, avg_latency_ms=1500, reliability=0.98)
    async def code_interpreter(code: str, ctx: StepContext | None = None) -> dict[str, Any]:
        """Run code in a sandbox (simulated: the code is never executed)."""
        await behave(ctx, registry["code_interpreter"].info)
        lines = len(code.splitlines())
        return {"ok": True, "stdout": f"(simulated) ran {lines} line{'s' * (lines != 1)}", "executed": False}

    @registry.tool(category="database", cost_estimate=0.0005, avg_latency_ms=200, reliability=0.99)
    async def sql_query(query: str, ctx: StepContext | None = None) -> dict[str, Any]:
        """Query the data warehouse; returns columns and rows."""
        await behave(ctx, registry["sql_query"].info)
        seed = _digest(query)
        regions = ("north", "south", "east", "west")
        return {"columns": ["region", "value"], "rows": [[r, (seed >> (i * 4)) % 1000] for i, r in enumerate(regions)]}

    @registry.tool(category="filesystem", cost_estimate=0.0, avg_latency_ms=20, reliability=0.999)
    async def file_read(path: str, ctx: StepContext | None = None) -> dict[str, str]:
        """Read a document (simulated: no file is opened)."""
        await behave(ctx, registry["file_read"].info)
        return {"path": path, "content": f"Simulated contents of {path} ({_digest(path) % 90 + 10} lines)."}

    return registry
