"""What a step receives beside the state: where it is, what it may use, and a place to report usage."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a step failed; a fallback step reads it as ``ctx.failure``."""

    step: str
    attempt: int
    error_kind: str
    error_type: str
    error_message: str


# The key of an attempt's ``extra`` listing the models it called that no price table knew; its
# presence means the attempt's cost is unknown (``cost_usd`` None), whatever else it paid for.
UNPRICED_MODELS = "unpriced_models"
# Its sibling: the models of calls that succeeded but whose server sent no token usage (a proxy or a
# local server that leaves ``usage`` out, a stream whose server ignores ``stream_options.include_usage``).
# No tokens came back to price, yet the call was made and billed: the attempt's cost is unknown too,
# never the $0 of a step that called no model.
NO_USAGE_MODELS = "no_usage_models"
# Their kin for a server whose usage carried one count but not the other (``prompt_tokens`` without
# ``completion_tokens``, or the reverse): the count that came back is recorded, the other is not
# counted, and the call cannot be priced. Kept apart from ``no_usage_models``, which says neither came.
NO_TOKENS_IN_MODELS = "no_tokens_in_models"
NO_TOKENS_OUT_MODELS = "no_tokens_out_models"
# A streamed call its caller left before its end (a ``break`` out of ``async for text in stream``
# before the server's last chunk, which carries the usage): the server went on, or stopped when
# the connection closed, and billed what it made; no count came back. Its model is listed here,
# and the attempt's ``abandoned_streams`` counts such calls.
ABANDONED_STREAM_MODELS = "abandoned_stream_models"
ABANDONED_STREAMS = "abandoned_streams"
# A call that failed after its request reached the server, so that the server may have generated,
# and billed, a reply nobody read: a read timeout, a step's timeout while it waited, a 2xx whose body
# was cut short or could not be read. No count came back. (A refused call, a 429, a 503, any error
# status, a connection never made, generated nothing: it costs a known 0 and is not marked.) Its
# model is listed here, and the attempt's ``unknown_outcome_calls`` counts such calls.
UNKNOWN_OUTCOME_MODELS = "unknown_outcome_models"
UNKNOWN_OUTCOME_CALLS = "unknown_outcome_calls"
# The endpoints an attempt's calls went to over the network, ``{model asked: base URL}`` (a
# ChatClient of a URL, not the simulated model nor a cassette): what resuming or forking the run
# reads to refuse the built-in simulated model for the steps left (``Store.endpoints_called``).
LLM_ENDPOINTS = "llm_endpoints"
# The keys of calls some or all of whose token counts never came back: whatever their model's
# price, their cost is unknown.
UNCOUNTED_CALL_KEYS = (
    NO_USAGE_MODELS,
    NO_TOKENS_IN_MODELS,
    NO_TOKENS_OUT_MODELS,
    ABANDONED_STREAM_MODELS,
    UNKNOWN_OUTCOME_MODELS,
)
# Any of these keys in an attempt's ``extra`` makes its cost unknown.
UNKNOWN_COST_KEYS = (UNPRICED_MODELS, *UNCOUNTED_CALL_KEYS)
# A call whose server sent its price but no token count of that kind (a gateway that bills per call
# and leaves ``usage`` out: ``ctx.record(cost_usd=..., no_usage=True)``): its cost is known, so it is
# kept apart from the keys above, which make the cost unknown; its tokens are not.
PRICED_NO_TOKENS_IN_MODELS = "priced_no_tokens_in_models"
PRICED_NO_TOKENS_OUT_MODELS = "priced_no_tokens_out_models"
# The keys that say a token column of the attempt's row holds less than its calls used: the counted
# calls' sum, some call's count of that kind having not come back (``df.wf.cost()`` shows it unknown).
UNCOUNTED_KEYS = {
    "tokens_in": (
        NO_USAGE_MODELS,
        NO_TOKENS_IN_MODELS,
        PRICED_NO_TOKENS_IN_MODELS,
        ABANDONED_STREAM_MODELS,
        UNKNOWN_OUTCOME_MODELS,
    ),
    "tokens_out": (
        NO_USAGE_MODELS,
        NO_TOKENS_OUT_MODELS,
        PRICED_NO_TOKENS_OUT_MODELS,
        ABANDONED_STREAM_MODELS,
        UNKNOWN_OUTCOME_MODELS,
    ),
}
# Every key that says a part of an attempt's usage is unknown (what a model's share of it keeps).
USAGE_MARK_KEYS = (*UNKNOWN_COST_KEYS, PRICED_NO_TOKENS_IN_MODELS, PRICED_NO_TOKENS_OUT_MODELS)
# The key of an attempt's ``extra`` that splits its usage by model, when it called more than one
# (a cheap model, then a costly one): ``{model: {"calls", "tokens_in", "tokens_out", "cost_usd",
# "model_latency_s", "ttft_s"}}``, unknown parts null. The row's ``model`` is the last one called,
# and ``df.wf.cost(by="model")`` reads this to put each call under its own. Left out of the common
# row of one model, which says it all. (Not "models": a name a step's own ``ctx.record`` might use.)
BY_MODEL = "by_model"


class ChatModel(Protocol):
    """What ``ctx.llm`` needs of a chat client. ``wfkit.llm.ChatClient`` is one; any object with an
    async ``complete(prompt, **options)`` serves (a client may also offer ``for_step(ctx)`` to record
    each call's model, tokens and cost in the step's event)."""

    async def complete(self, prompt: Any, **options: Any) -> Any: ...


_CLIENT = "wf.llm.ChatClient"
_OFFLINE = f"llm={_CLIENT}(transport=wf.llm.SimulatedModel())"
_ENDPOINT = f"llm={_CLIENT}('http://HOST:PORT/v1', model='MODEL')"


def check_chat_model(llm: object, given: str) -> ChatModel | None:
    """``llm`` if it can be a run's chat client (None, or an object with a ``complete`` method);
    else a TypeError naming ``given`` (``"run(llm=...)"``), what ``llm`` is and what to pass.

    Taken as it was, the class ``SimulatedModel``, a ``SimulatedModel()`` or ``Cassette`` (the
    transports a client sends through) or a model's name or URL failed only when a step called
    ``ctx.llm.complete``, with an AttributeError deep in the step."""
    if llm is None:
        return None
    if not isinstance(llm, type) and callable(getattr(llm, "complete", None)):
        return llm  # type: ignore[return-value]  # duck-typed: any object with complete() serves
    raise TypeError(f"{given} needs a chat client, such as {_CLIENT}(...); it got {_what_was_given(llm)}")


def _what_was_given(llm: object) -> str:
    """What ``llm`` is, and the call to pass instead (see :func:`check_chat_model`)."""
    kind = llm if isinstance(llm, type) else type(llm)
    name = kind.__qualname__
    transport = callable(getattr(kind, "handle_async_request", None))
    if isinstance(llm, type):
        if callable(getattr(llm, "complete", None)):
            return f"the class {name} itself: pass an instance, llm={name}(...)"
        if name == "SimulatedModel":
            return f"the class SimulatedModel, the simulated model's transport: pass {_OFFLINE}"
        if name == "Cassette":
            return (
                f"the class Cassette, a transport that replays recorded calls: pass llm={_CLIENT}(model='MODEL', "
                f"transport=wf.llm.Cassette('PATH.jsonl'))"
            )
        return f"the class {kind.__module__}.{name}, not a client: pass an instance of a chat client, {_ENDPOINT}"
    if transport:  # an httpx transport: what a client sends its requests through
        shown = repr(llm)
        if name == "SimulatedModel":
            return f"{shown}, the transport a client sends through: pass llm={_CLIENT}(transport={shown})"
        if name == "Cassette":
            return (
                f"{shown}, the transport a client sends through: pass llm={_CLIENT}(model='MODEL', "
                f"transport={shown}) to replay it (with the endpoint's URL first, 'http://HOST:PORT/v1', to record)"
            )
        return (
            f"the httpx transport {kind.__module__}.{name}: pass llm={_CLIENT}('http://HOST:PORT/v1', "
            f"model='MODEL', transport=...)"
        )
    if isinstance(llm, str):
        text = llm.strip()
        if "://" in text or text.startswith(("localhost", "127.", "[")) or "/v1" in text:
            url = text if "://" in text else "http://" + text
            return f"the URL {llm!r}: pass llm={_CLIENT}({url!r}, model='MODEL')"
        return (
            f"the text {llm!r} (a model's name?): pass llm={_CLIENT}('http://HOST:PORT/v1', model={text!r}), "
            f"or {_OFFLINE} to run offline"
        )
    return (
        f"{kind.__module__}.{name} {_short(llm)}, which has no complete() method: pass {_ENDPOINT}, or "
        f"{_OFFLINE} to run offline (any object with an async complete(prompt, **options) serves)"
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ToolProvider(Protocol):
    """What ``ctx.tool`` needs of a tool registry: names to look up. ``wfkit.llm.ToolRegistry`` is
    one, and so is a plain dict of functions."""

    def __contains__(self, name: object, /) -> bool: ...

    def __iter__(self) -> Iterator[str]: ...


class RunServices(Protocol):
    """What a run lends its steps' contexts: the chat client, the tool registry, and the tool call.

    The engine implements it; the model layer only names it, so ``ctx.tool`` reaches the tool layer
    through the run that was handed in, never by importing it.
    """

    @property
    def tool_registry(self) -> ToolProvider | None: ...

    def llm_client(self) -> ChatModel: ...

    async def call_tool(self, ctx: StepContext, name: str, arguments: dict[str, Any]) -> Any: ...

    def on_chunk(self, ctx: StepContext, text: str) -> None: ...


class StepContext:
    """Handed to a step as its second argument, one per attempt.

    ``state`` is the read-only state the step saw (a map step's first argument is its item instead);
    ``map_index`` the item's position in a map step (None otherwise).

    ``tools`` are the tools bound by the route that led here (or the step's own). ``failure`` is
    set when this step was reached as another step's fallback. Call :meth:`record` to put the
    model, token counts, cost and anything else into this attempt's step-log row.
    """

    __slots__ = (
        "_by_model",
        "_rng_source",
        "_services",
        "_usage",
        "attempt",
        "deadline",
        "failure",
        "map_index",
        "run_id",
        "state",
        "step",
        "tools",
        "visit",
        "workflow",
    )

    def __init__(
        self,
        *,
        run_id: str,
        workflow: str,
        step: str,
        visit: int,
        attempt: int,
        tools: tuple[str, ...],
        rng_source: Callable[[], random.Random],
        services: RunServices | None = None,
        deadline: float | None,
        failure: Failure | None,
        map_index: int | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.step = step
        self.visit = visit
        self.attempt = attempt
        self.tools = tools
        self._rng_source = rng_source
        self._services = services  # the run: where ctx.llm and ctx.tool find their client and registry
        self.deadline = deadline
        self.failure = failure
        self.map_index = map_index  # the item's position when this is an item of a map step
        self.state: Mapping[str, Any] = {} if state is None else state  # read-only, as the step saw it
        self._usage: dict[str, Any] | None = None
        self._by_model: dict[str | None, dict[str, Any]] = {}  # what record() collected per model

    @property
    def rng(self) -> random.Random:
        """The run's random generator: seeded in test mode or with ``run(..., seed=...)``."""
        return self._rng_source()

    @property
    def llm(self) -> Any:
        """The run's chat client (any OpenAI-compatible endpoint over httpx); offline, the
        seeded simulated model. Set it with ``Workflow.run(..., llm=...)``."""
        if self._services is None:
            raise RuntimeError("this context belongs to no run")
        client = self._services.llm_client()
        # Bound to this attempt, so model, tokens and cost land in its event by themselves.
        bind = getattr(client, "for_step", None)
        return bind(self) if callable(bind) else client

    async def tool(self, name: str, /, **arguments: Any) -> Any:
        """Call a registered tool. Only the tools the route to this step bound (``ctx.tools``)
        may be called; the call is recorded in this attempt's event."""
        if self._services is None:
            raise RuntimeError("this context belongs to no run")
        return await self._services.call_tool(self, name, arguments)

    @property
    def tool_registry(self) -> Any:
        return None if self._services is None else self._services.tool_registry

    def chunk(self, text: str) -> None:
        """Hand a piece of streamed text to the run's live views and ``run.stream(chunks=True)``
        (``ctx.llm.stream`` does it for every token chunk); the step log keeps only totals."""
        if self._services is not None:
            self._services.on_chunk(self, text)

    @property
    def idempotency_key(self) -> str:
        """Stable across retries of this visit: hand it to APIs that deduplicate requests."""
        return f"{self.run_id}:{self.step}:{self.visit}"

    def time_left(self) -> float | None:
        """Seconds until the run's deadline, or None when the run has none."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def usage(self) -> Mapping[str, Any] | None:
        """What :meth:`record` has collected for this attempt so far; None when nothing was recorded."""
        return self._usage

    def record(
        self,
        *,
        model: str | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        cost_usd: float | None = None,
        model_latency_s: float | None = None,
        ttft_s: float | None = None,
        no_usage: bool = False,
        abandoned: bool = False,
        outcome_unknown: bool = False,
        **extra: Any,
    ) -> None:
        """Add usage to this attempt's event; token counts, cost and the model's time (seconds one
        call took) add up over several calls; of the times to first token (a streamed call's), the
        attempt keeps the first: what its user waited before text began to come.

        A call recorded with tokens but no ``cost_usd`` is one whose price is unknown (``ctx.llm``
        records so a model no price table knows): from then on the attempt's cost is unknown, None
        however many priced calls or tools it adds before or after, and ``extra["unpriced_models"]``
        lists the models of such calls (None for a call that named none). ``cost_usd=0.0`` is free.

        ``no_usage=True`` (with no ``cost_usd``) records a call that succeeded but whose server sent no
        token usage (``ctx.llm`` records so a reply without ``usage``): it was made and billed, but
        nothing says how much, so the attempt's cost is unknown as for an unpriced call, and
        ``extra["no_usage_models"]`` lists the models of such calls instead. With one count given
        (a server whose usage held ``prompt_tokens`` but no ``completion_tokens``, or the reverse),
        that count is added and only the other is marked not counted: ``extra["no_tokens_out_models"]``
        (or ``no_tokens_in_models``) lists the model, and the cost is unknown as well. The row's
        token columns keep the counted calls' sums; these keys say a sum is short, and
        ``df.wf.cost()`` shows its group's count as unknown.

        ``no_usage=True`` with a ``cost_usd`` (a gateway that sends each call's price but no token
        counts) adds the cost, and marks the counts not given as unknown, not 0:
        ``extra["priced_no_tokens_in_models"]`` and ``extra["priced_no_tokens_out_models"]`` list the
        model, and ``df.wf.cost()`` shows its group's tokens as unknown beside the cost.

        ``abandoned=True`` records a streamed call its caller left before it ended (``ctx.llm.stream``
        records so a ``break`` out of ``async for`` before the server's last chunk, the one with the
        usage): made and billed, its tokens never counted, so the attempt's tokens and cost are
        unknown as for ``no_usage``; ``extra["abandoned_stream_models"]`` lists the model and
        ``extra["abandoned_streams"]`` counts such calls.

        ``outcome_unknown=True`` records a call that failed after its request reached the server, so
        that the server may have generated and billed a reply nobody read (``ctx.llm`` records so a
        read timeout, a step's timeout while the call waited, a 2xx whose body was cut short or could
        not be read): its tokens and cost are unknown as for ``abandoned``;
        ``extra["unknown_outcome_models"]`` lists the model and ``extra["unknown_outcome_calls"]``
        counts such calls. A call the server refused (an error status) or never got (no connection)
        is recorded with neither: it generated nothing, and costs nothing.

        An attempt that records calls of more than one model keeps each model's share in
        ``extra["by_model"]`` (calls, tokens, cost, model time, first token; null where unknown, so a
        priced model keeps its cost beside an unpriced one), as the row's ``model`` is only the last
        one. A record that names no model counts under the model named before it (a priced tool's
        cost under the model whose call asked for it), or under the first named after it."""
        usage = self._usage if self._usage is not None else {}
        # A call made, perhaps billed, whose usage never came: as a reply without one, under its own mark.
        lost = (
            (ABANDONED_STREAMS, ABANDONED_STREAM_MODELS)
            if abandoned
            else (UNKNOWN_OUTCOME_CALLS, UNKNOWN_OUTCOME_MODELS)
            if outcome_unknown
            else None
        )
        if lost is not None:
            no_usage, tokens_in, tokens_out, cost_usd = True, None, None, None
            known = usage.setdefault("extra", {})
            known[lost[0]] = int(known.get(lost[0], 0)) + 1
        self._add_to_model(model, tokens_in, tokens_out, cost_usd, model_latency_s, ttft_s, no_usage)
        self._usage = usage
        if model is not None:
            usage["model"] = model
        for key, value in (("tokens_in", tokens_in), ("tokens_out", tokens_out), ("model_latency_s", model_latency_s)):
            if value is not None:
                usage[key] = usage.get(key, 0) + value
        if cost_usd is None and (no_usage or tokens_in is not None or tokens_out is not None):
            # The priced calls' sum would read as the attempt's whole cost, in the step log, df.wf.cost()
            # and an eval's cost_budget: an unknown part makes the whole unknown.
            usage.pop("cost_usd", None)
            known = usage.setdefault("extra", {})
            name = model if model is not None else usage.get("model")
            if lost is not None:
                key = lost[1]
            elif no_usage and tokens_in is None and tokens_out is None:
                key = NO_USAGE_MODELS
            elif no_usage and (tokens_in is None or tokens_out is None):
                # One count came back (added above): only the other is not counted.
                key = NO_TOKENS_OUT_MODELS if tokens_out is None else NO_TOKENS_IN_MODELS
            else:
                key = UNPRICED_MODELS
            listed = known.get(key) or []
            known[key] = listed if name in listed else [*listed, name]
        elif cost_usd is not None and not any(key in usage.get("extra", ()) for key in UNKNOWN_COST_KEYS):
            usage["cost_usd"] = usage.get("cost_usd", 0) + cost_usd
        if no_usage and cost_usd is not None:
            # Priced, but uncounted: a count not given is unknown, never the 0 the row's sum would show.
            known = usage.setdefault("extra", {})
            name = model if model is not None else usage.get("model")
            for count, key in ((tokens_in, PRICED_NO_TOKENS_IN_MODELS), (tokens_out, PRICED_NO_TOKENS_OUT_MODELS)):
                if count is None:
                    listed = known.get(key) or []
                    known[key] = listed if name in listed else [*listed, name]
        if ttft_s is not None:
            usage.setdefault("ttft_s", ttft_s)
        if extra:
            usage.setdefault("extra", {}).update(extra)
        named = [name for name in self._by_model if name is not None]
        if len(named) > 1:
            usage.setdefault("extra", {})[BY_MODEL] = {name: dict(self._by_model[name]) for name in named}

    def _add_to_model(
        self,
        model: str | None,
        tokens_in: int | None,
        tokens_out: int | None,
        cost_usd: float | None,
        model_latency_s: float | None,
        ttft_s: float | None,
        no_usage: bool,
    ) -> None:
        """Add one record to its model's share (see :meth:`record`): an unknown part stays null."""
        given = (model, tokens_in, tokens_out, cost_usd, model_latency_s, ttft_s)
        if all(value is None for value in given) and not no_usage:
            return  # extra alone: no usage of any model
        shares = self._by_model
        if model is not None and None in shares:  # what was recorded before any model was named
            shares[model] = shares.pop(None)
        name = model if model is not None else (self._usage or {}).get("model")
        share = shares.setdefault(
            name,
            {"calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "model_latency_s": None, "ttft_s": None},
        )
        share["calls"] += model is not None
        for key, value in (("tokens_in", tokens_in), ("tokens_out", tokens_out)):
            if value is None and no_usage:
                share[key] = None  # this call's server did not count it (priced or not): the model's sum is short
            elif value is not None and share[key] is not None:
                share[key] += value
        if cost_usd is None and (no_usage or tokens_in is not None or tokens_out is not None):
            share["cost_usd"] = None  # unpriced or uncounted, as for the attempt
        elif cost_usd is not None and share["cost_usd"] is not None:
            share["cost_usd"] += cost_usd
        if model_latency_s is not None:
            share["model_latency_s"] = (share["model_latency_s"] or 0) + model_latency_s
        if ttft_s is not None and share["ttft_s"] is None:
            share["ttft_s"] = ttft_s

    def __repr__(self) -> str:
        return (
            f"StepContext(run_id={self.run_id!r}, step={self.step!r}, visit={self.visit}, "
            f"attempt={self.attempt}, tools={self.tools!r})"
        )
