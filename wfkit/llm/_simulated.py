"""The simulated model: an httpx transport that answers the OpenAI chat-completions wire format offline.

    model = SimulatedModel(p50=0.2, p99=2.0, seed=7, faults={"429": 0.05, "503": 0.02, "timeout": 0.01},
                           reply={r"refund|money back": "refund", r"\\bbug\\b": "code"})
    client = ChatClient(transport=model)

Requests really go through httpx, so a 429 reaches the retry policy as an HTTP status with a
Retry-After header, a stall is an ``httpx.ReadTimeout`` after the call's read timeout, and a step
timeout cancels the sleep: the same paths a real endpoint takes.

Latency is lognormal, fitted so that its median is ``p50`` and its 99th percentile ``p99``
(``sigma = ln(p99 / p50) / 2.3263``): a long tail, like real model latency. Latency and faults
come from two generators seeded from ``seed``, so changing the fault mix keeps the latencies.
Seeded, a request's draw depends on the seed, its body and how many times that body was asked
before, not on which requests came in between: concurrent map items, which reach the model in
whatever order they happen to run, get the same latency, fault and reply in every run with that
seed. Requests with one body (a call's retries, items asking the same thing) take turns in the
order they come.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

import httpx

ReplyRule: TypeAlias = (
    str | Mapping[str, str] | Sequence[tuple[str, str]] | Callable[[list[dict[str, Any]]], str] | None
)

_Z99 = 2.3263478740408408  # the standard normal's 99th percentile
_NAMED_FAULTS = ("429", "timeout", "malformed")


class SimulatedCall(NamedTuple):
    """What the next request gets: its latency in seconds and its fault (None for a good reply)."""

    latency_s: float
    fault: str | None


def _check_faults(faults: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    problems = []
    for name, rate in faults.items():
        if name not in _NAMED_FAULTS and not (name.isdigit() and 500 <= int(name) <= 599):
            problems.append(f"unknown fault {name!r} (use '429', '500'...'599', 'timeout', 'malformed')")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            problems.append(f"fault {name!r} needs a rate in [0, 1], got {rate!r}")
    if not problems and sum(faults.values()) > 1:
        problems.append(f"fault rates add up to {sum(faults.values()):g}, more than 1")
    if problems:
        raise ValueError("invalid SimulatedModel faults: " + "; ".join(problems))
    return tuple((name, float(rate)) for name, rate in faults.items() if rate > 0)


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": "..."}]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def estimate_tokens(text: str) -> int:
    """A rough token count (1.3 per word, at least 1), so simulated calls have a cost."""
    return max(1, round(len(text.split()) * 1.3))


class SimulatedModel(httpx.AsyncBaseTransport):
    """An offline chat-completions endpoint with seeded, long-tailed latency and injected faults.

    - ``p50``, ``p99``: median and 99th-percentile latency in seconds (``p50 == p99`` is constant).
    - ``faults``: the share of requests that fail, by kind: ``"429"`` (with ``Retry-After:
      retry_after``), a 5xx code such as ``"500"`` or ``"503"``, ``"timeout"`` (the reply stalls
      past the call's read timeout, then ``httpx.ReadTimeout``), ``"malformed"`` (a 200 whose
      body is not JSON; streamed, an event whose JSON is cut off).
    - ``reply``: a fixed string; rules ``{regex: reply}`` searched in the last user message
      (first match wins, case-insensitive); or a function of the message list. Unmatched
      messages get an echo.
    - ``model``: the name answered when a request names none (requests naming a model get it
      back, so its price applies).

    ``outcomes`` counts what was served: ``ok``, ``429``, ``timeout``...

    A model pickles by its configuration (a function given as ``reply`` must pickle too, as
    cloudpickle does with a lambda): a copy, such as the one each Dask partition gets, starts its
    seeded sequence, its count of the requests asked and its ``outcomes`` afresh.
    """

    def __init__(
        self,
        *,
        p50: float = 0.005,
        p99: float = 0.05,
        seed: int | None = None,
        faults: Mapping[str, float] | None = None,
        reply: ReplyRule = None,
        model: str = "simulated",
        retry_after: float = 1.0,
    ) -> None:
        if not (isinstance(p50, int | float) and isinstance(p99, int | float) and 0 <= p50 <= p99):
            raise ValueError(f"SimulatedModel needs 0 <= p50 <= p99 (seconds), got p50={p50!r}, p99={p99!r}")
        if p50 == 0 and p99 > 0:
            raise ValueError("SimulatedModel: p50=0 only with p99=0 (no latency at all)")
        self.p50, self.p99, self.seed, self.model, self.retry_after = p50, p99, seed, model, retry_after
        self.faults = dict(faults or {})
        self._faults = _check_faults(self.faults)
        self._sigma = math.log(p99 / p50) / _Z99 if p50 > 0 else 0.0
        self._rngs: tuple[random.Random, random.Random] | None = None  # built on first draw: cheap to create
        self._reply = reply
        self._rules = self._compile(reply)
        self._asked: Counter[str] = Counter()  # request body digest -> how many times it was asked
        self.outcomes: Counter[str] = Counter()

    @staticmethod
    def _compile(reply: ReplyRule) -> Callable[[list[dict[str, Any]]], str | None] | None:
        if reply is None or callable(reply):
            return reply
        if isinstance(reply, str):
            return lambda messages: reply
        pairs = list(reply.items()) if isinstance(reply, Mapping) else list(reply)
        rules = [(re.compile(pattern, re.IGNORECASE), text) for pattern, text in pairs]

        def by_rules(messages: list[dict[str, Any]]) -> str | None:
            users = [m for m in messages if m.get("role") == "user"] or messages
            last = _text_of(users[-1]) if users else ""
            return next((text for pattern, text in rules if pattern.search(last)), None)

        return by_rules

    def draw(self, request: str | None = None) -> SimulatedCall:
        """A latency and a fault. Each request draws once, by ``request`` (its body's digest and
        how many times that body was asked before): seeded, the draw depends on the seed and
        ``request`` alone (see the module doc). Without ``request``, the next draw of the model's
        own seeded sequence: call it so to study the distribution."""
        if self.seed is not None and request is not None:
            latency_rng = random.Random(f"{self.seed}:{request}")
            fault_rng = random.Random(f"wfkit-faults-{self.seed}:{request}")
        else:
            if self._rngs is None:
                if self.seed is None:
                    self._rngs = (random.Random(), random.Random())
                else:
                    self._rngs = (random.Random(self.seed), random.Random(f"wfkit-faults-{self.seed}"))
            latency_rng, fault_rng = self._rngs
        latency = self.p50 * math.exp(self._sigma * latency_rng.gauss(0.0, 1.0)) if self.p50 else 0.0
        u, total = fault_rng.random(), 0.0
        for name, rate in self._faults:
            total += rate
            if u < total:
                return SimulatedCall(latency, name)
        return SimulatedCall(latency, None)

    def answer(self, messages: list[dict[str, Any]]) -> str:
        """The reply text for ``messages``, by the rules or the function given as ``reply``."""
        text = self._rules(messages) if self._rules is not None else None
        if text is None:
            users = [m for m in messages if m.get("role") == "user"] or messages
            last = " ".join(_text_of(users[-1]).split()) if users else ""
            text = f"Simulated reply to: {last[:200]}"
        return str(text)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return _error(
                404,
                f"the simulated model serves POST .../chat/completions, not {request.method} {request.url.path}",
                "not_found",
            )
        try:
            body = json.loads(await request.aread())
            messages = body["messages"]
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _error(400, "the request body must be JSON with a 'messages' list", "invalid_request_error")
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
        self._asked[digest] += 1
        request_id = f"{digest}-{self._asked[digest]}"
        call = self.draw(request_id)
        timeouts = request.extensions.get("timeout") or {}
        read = timeouts.get("read")
        if call.fault == "timeout" or (read is not None and call.latency_s > read):
            self.outcomes["timeout"] += 1
            await asyncio.sleep(read if read is not None else max(10 * self.p99, 1.0))
            raise httpx.ReadTimeout("the simulated model did not answer within the read timeout", request=request)
        await asyncio.sleep(call.latency_s)
        self.outcomes[call.fault or "ok"] += 1
        if call.fault == "429":
            return _error(429, "rate limit reached (simulated)", "rate_limit_exceeded", self.retry_after)
        if call.fault is not None and call.fault.isdigit():
            return _error(int(call.fault), "upstream failure (simulated)", "server_error")
        model = str(body.get("model") or self.model)
        cid = f"chatcmpl-sim-{request_id}"
        if call.fault == "malformed":
            cut = f'{{"id": "{cid}", "object": "chat.completion", "choices": [{{"message": {{"content": "Trunc'
            if body.get("stream"):
                # A whole event (ended by its blank line) whose JSON is cut: an event the body ends
                # inside is never dispatched, so it would look like no event at all.
                return httpx.Response(
                    200, headers={"content-type": "text/event-stream"}, content=f"data: {cut}\n\n".encode()
                )
            # Whole, but not JSON (a server writing Python's repr): a JSON body cut short is
            # transient, and this fault is the permanent reply that asking again cannot mend.
            whole = repr({"id": cid, "object": "chat.completion", "choices": [{"message": {"content": "Not JSON"}}]})
            return httpx.Response(200, headers={"content-type": "application/json"}, content=whole.encode())
        text = self.answer(messages)
        usage = {"prompt_tokens": sum(estimate_tokens(_text_of(m)) for m in messages)}
        usage["completion_tokens"] = estimate_tokens(text)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _sse(cid, model, text, usage if include_usage else None)
        return httpx.Response(
            200,
            json={
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            },
        )

    def __getstate__(self) -> dict[str, Any]:
        """The configuration only: a copy starts afresh (see the class doc)."""
        return {
            "p50": self.p50,
            "p99": self.p99,
            "seed": self.seed,
            "faults": self.faults,
            "reply": self._reply,
            "model": self.model,
            "retry_after": self.retry_after,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        SimulatedModel.__init__(self, **state)

    def __repr__(self) -> str:
        faults = f", faults={self.faults!r}" if self.faults else ""
        return f"SimulatedModel(p50={self.p50:g}, p99={self.p99:g}, seed={self.seed!r}{faults})"


def _error(status: int, message: str, kind: str, retry_after: float | None = None) -> httpx.Response:
    headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
    return httpx.Response(status, headers=headers, json={"error": {"message": message, "type": kind, "code": status}})


def _sse(cid: str, model: str, text: str, usage: dict[str, int] | None) -> httpx.Response:
    """A streamed reply: one chunk per word, a final chunk with the finish reason, usage, [DONE]."""
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    words = re.findall(r"\S+\s*", text) or [""]
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in words]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage is not None:
        events.append({**base, "choices": [], "usage": usage})
    payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=payload.encode())
