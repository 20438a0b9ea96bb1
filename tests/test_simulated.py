"""Tests for wfkit.llm._simulated: the offline model's latency, faults, replies and wire format."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from typing import Any

import httpx
import pytest

import wfkit as wf
from wfkit.llm._llm import ChatClient, LLMResponseError, LLMStatusError, LLMTimeoutError, Reply
from wfkit.llm._simulated import SimulatedModel, estimate_tokens
from wfkit.testing import test_mode


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def complete(sim: SimulatedModel, prompt: str = "hello", **kwargs: Any) -> Reply:
    async def main() -> Reply:
        async with ChatClient(transport=sim) as client:
            return await client.complete(prompt, **kwargs)

    return asyncio.run(main())


def failure(sim: SimulatedModel, **kwargs: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        complete(sim, **kwargs)
    return info.value


def post(model: SimulatedModel, body: Any, path: str = "/v1/chat/completions") -> httpx.Response:
    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=model, base_url="http://sim") as http:
            return await http.post(path, json=body)

    return asyncio.run(main())


# --- latency ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("p50", "p99"), [(0.05, 0.5), (0.2, 0.4), (1.0, 20.0)])
def test_latency_quantiles_match_the_requested_p50_and_p99(p50: float, p99: float) -> None:
    """Over 20,000 draws the median is within 3% of p50 and the 99th percentile within 8% of p99."""
    model = SimulatedModel(p50=p50, p99=p99, seed=11)
    latencies = [model.draw().latency_s for _ in range(20_000)]
    assert pytest.approx(p50, rel=0.03) == quantile(latencies, 0.50)
    assert pytest.approx(p99, rel=0.08) == quantile(latencies, 0.99)


def test_latency_has_a_long_tail() -> None:
    """The mean sits above the median and the slowest draws run well past p99."""
    model = SimulatedModel(p50=0.05, p99=0.5, seed=2)
    latencies = [model.draw().latency_s for _ in range(5000)]
    assert statistics.fmean(latencies) > 1.3 * statistics.median(latencies)
    assert max(latencies) > 0.5


def test_equal_p50_and_p99_give_constant_latency() -> None:
    """p50 == p99 is a fixed latency; 0 and 0 is none at all."""
    assert {0.02} == {SimulatedModel(p50=0.02, p99=0.02, seed=1).draw().latency_s for _ in range(50)}
    assert 0.0 == SimulatedModel(p50=0, p99=0).draw().latency_s


def test_calls_take_the_drawn_latency() -> None:
    """A call really sleeps: with p50 == p99 == 0.1 s a completion takes about 0.1 s."""
    started = time.perf_counter()
    reply = complete(SimulatedModel(p50=0.1, p99=0.1))
    assert 0.09 < time.perf_counter() - started < 0.5
    assert reply.latency_s >= 0.09


# --- faults -----------------------------------------------------------------------------------------


def test_fault_mix_matches_the_requested_rates() -> None:
    """Over 20,000 draws each fault's share is within one point of its rate."""
    rates = {"429": 0.10, "503": 0.05, "timeout": 0.03, "malformed": 0.02}
    model = SimulatedModel(seed=5, faults=rates)
    counts = Counter(model.draw().fault for _ in range(20_000))
    for fault, rate in rates.items():
        assert pytest.approx(rate, abs=0.01) == counts[fault] / 20_000
    assert pytest.approx(0.80, abs=0.01) == counts[None] / 20_000


def test_same_seed_same_sequence() -> None:
    """Two models with one seed draw the same latencies and faults; another seed differs."""
    faults = {"429": 0.2, "500": 0.1}
    a, b, c = (SimulatedModel(seed=s, faults=faults) for s in (9, 9, 10))
    draws = [a.draw() for _ in range(200)]
    assert draws == [b.draw() for _ in range(200)]
    assert draws != [c.draw() for _ in range(200)]


def test_changing_the_fault_mix_keeps_the_latencies() -> None:
    """Latency and faults have separate seeded streams, so adding faults leaves latencies alone."""
    calm, stormy = SimulatedModel(seed=4), SimulatedModel(seed=4, faults={"429": 0.5})
    assert [calm.draw().latency_s for _ in range(100)] == [stormy.draw().latency_s for _ in range(100)]


def test_a_pickled_model_keeps_its_configuration_and_starts_afresh() -> None:
    """A copy (as a Dask partition gets) has the model's settings and draws its seeded sequence from
    the start, with its replies' rules and no outcomes counted yet."""
    import pickle

    import cloudpickle

    model = SimulatedModel(p50=0.001, p99=0.002, seed=5, faults={"429": 0.3}, model="m1")
    draws = [model.draw() for _ in range(50)]
    copy = pickle.loads(pickle.dumps(model))
    assert (repr(model), "m1") == (repr(copy), copy.model)
    assert draws == [copy.draw() for _ in range(50)]
    by_rules = SimulatedModel(p50=0.001, p99=0.002, reply={"refund": "R"})
    assert "R" == complete(by_rules, "a refund please").text
    copy = pickle.loads(pickle.dumps(by_rules))
    assert (0, "R") == (sum(copy.outcomes.values()), complete(copy, "a refund please").text)
    by_function = cloudpickle.loads(cloudpickle.dumps(SimulatedModel(reply=lambda messages: "from a lambda")))
    assert "from a lambda" == complete(by_function).text


def test_429_carries_retry_after_and_is_transient() -> None:
    """An injected 429 is an HTTP 429 with a Retry-After header, classified transient."""
    exc = failure(SimulatedModel(faults={"429": 1.0}, retry_after=2.5))
    assert isinstance(exc, LLMStatusError)
    assert (429, 2.5) == (exc.status_code, wf.retry_after_of(exc))
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(exc)


def test_5xx_fault_uses_its_status() -> None:
    """A "502" fault answers HTTP 502, transient."""
    exc = failure(SimulatedModel(faults={"502": 1.0}))
    assert 502 == exc.status_code  # type: ignore[attr-defined]
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(exc)


def test_malformed_fault_is_a_permanent_response_error() -> None:
    """A malformed reply is a 200 whose body is not JSON: LLMResponseError, permanent."""
    exc = failure(SimulatedModel(faults={"malformed": 1.0}))
    assert isinstance(exc, LLMResponseError)
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)


def test_timeout_fault_stalls_until_the_read_timeout() -> None:
    """A timeout fault waits out the call's read timeout, then fails as a transient timeout."""
    started = time.perf_counter()
    exc = failure(SimulatedModel(faults={"timeout": 1.0}), timeout=0.1)
    assert 0.09 < time.perf_counter() - started < 0.5
    assert isinstance(exc, LLMTimeoutError)
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(exc)


def test_a_draw_slower_than_the_read_timeout_times_out() -> None:
    """A latency beyond the call's read timeout is a timeout after the timeout, not after the latency."""
    model = SimulatedModel(p50=5.0, p99=5.0)
    started = time.perf_counter()
    assert isinstance(failure(model, timeout=0.05), LLMTimeoutError)
    assert time.perf_counter() - started < 1.0
    assert {"timeout": 1} == dict(model.outcomes)


def test_invalid_settings_are_refused() -> None:
    """Unknown fault names, rates outside [0, 1], rates over 1 in total and p50 > p99 are errors."""
    with pytest.raises(ValueError, match="unknown fault 'boom'"):
        SimulatedModel(faults={"boom": 0.1})
    with pytest.raises(ValueError, match=r"add up to 1\.2"):
        SimulatedModel(faults={"429": 0.6, "500": 0.6})
    with pytest.raises(ValueError, match="rate in"):
        SimulatedModel(faults={"429": 1.5})
    with pytest.raises(ValueError, match="p50 <= p99"):
        SimulatedModel(p50=1.0, p99=0.5)


# --- replies and wire format ------------------------------------------------------------------------


def test_answers_the_chat_completions_wire_format() -> None:
    """A plain httpx client gets an OpenAI-shaped completion with estimated usage."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]}
    data = post(SimulatedModel(p50=0, p99=0), body).json()
    assert "chat.completion" == data["object"]
    assert "gpt-4o-mini" == data["model"]
    assert {"role": "assistant", "content": "Simulated reply to: one two three"} == data["choices"][0]["message"]
    assert {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12} == data["usage"]


def test_wrong_path_or_body_is_a_4xx() -> None:
    """Anything but POST .../chat/completions with a messages list is answered 404 or 400."""
    model = SimulatedModel(p50=0, p99=0)
    assert 404 == post(model, {"messages": []}, path="/v1/embeddings").status_code
    assert 400 == post(model, {"prompt": "hi"}).status_code


def test_replies_from_rules() -> None:
    """Rules are regexes searched in the last user message; the first match wins, else an echo."""
    model = SimulatedModel(p50=0, p99=0, reply={r"refund|money back": "refund", r"\bbug\b": "code"})
    assert "refund" == complete(model, "I want my MONEY BACK").text
    assert "code" == complete(model, "there is a bug here").text
    assert "Simulated reply to: debugging" == complete(model, "debugging").text


def test_replies_from_a_function_or_a_string() -> None:
    """reply= may be a function of the messages, or one fixed string."""
    by_fn = SimulatedModel(p50=0, p99=0, reply=lambda messages: str(len(messages)))
    two = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert "2" == complete(by_fn, two).text  # type: ignore[arg-type]
    assert "fixed" == complete(SimulatedModel(p50=0, p99=0, reply="fixed"), "anything").text


def test_simulated_calls_are_priced() -> None:
    """Estimated tokens meet the price table: the simulated model costs something, a named model its price."""
    reply = complete(SimulatedModel(p50=0, p99=0), "one two three")
    assert (4, estimate_tokens("Simulated reply to: one two three")) == (reply.tokens_in, reply.tokens_out)
    assert reply.cost_usd is not None
    assert reply.cost_usd > 0
    priced = complete(SimulatedModel(p50=0, p99=0), "one two three", model="gpt-4o")
    assert pytest.approx((4 * 0.0025 + 8 * 0.01) / 1000) == priced.cost_usd


def test_streams_like_a_real_endpoint() -> None:
    """A streamed call yields the reply word by word and ends with the usage chunk."""

    async def main() -> tuple[list[str], Reply | None]:
        async with ChatClient(transport=SimulatedModel(p50=0, p99=0, reply="alpha beta gamma")) as client:
            async with client.stream("go") as stream:
                chunks = [text async for text in stream]
            return chunks, stream.reply

    chunks, reply = asyncio.run(main())
    assert ["alpha ", "beta ", "gamma"] == chunks
    assert reply is not None
    assert ("alpha beta gamma", 1, 4, "stop") == (reply.text, reply.tokens_in, reply.tokens_out, reply.finish_reason)


# --- inside runs ------------------------------------------------------------------------------------


def asking_flow(**step: Any) -> wf.Workflow:
    flow = wf.Workflow("ask")

    @flow.step(**step)
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete(state["q"], ctx=ctx)).text}

    return flow


def test_step_timeout_cancels_a_slow_simulated_call() -> None:
    """The engine's step timeout really cancels the model's sleep: the run ends at the timeout."""
    model = SimulatedModel(p50=5.0, p99=5.0)
    started = time.perf_counter()
    run = asking_flow(timeout=0.1).run(
        {"q": "x"}, workspace=False, llm=ChatClient(transport=model), raise_on_error=False
    )
    assert time.perf_counter() - started < 1.0
    assert [("timeout", "StepTimeoutError")] == [(e.status, e.error_type) for e in run.events]


def test_faulty_model_is_retried_and_runs_repeat_by_seed() -> None:
    """With 40% faults and retries every run succeeds; the same seeds give the same event sequence."""

    def statuses() -> list[list[str]]:
        flow = asking_flow(retry=wf.RetryPolicy(max_retries=8, base_delay=0.01))
        out = []
        with test_mode():
            for seed in range(15):
                model = SimulatedModel(p50=0.001, p99=0.003, seed=seed, faults={"429": 0.2, "500": 0.2})
                run = flow.run({"q": "x"}, workspace=False, llm=ChatClient(transport=model))
                out.append([e.status for e in run.events])
        return out

    first = statuses()
    assert all(s[-1] == "ok" for s in first)
    assert any("retry" in s for s in first)
    assert first == statuses()


def test_a_seeded_model_gives_each_map_item_its_reply_whatever_order_items_run_in() -> None:
    """Concurrent map items reach the shared model in an order timing decides; two runs with one
    seed still give every item the same outcome and reply, faults included."""

    def replies(first_to_ask: str) -> list[str]:
        flow = wf.Workflow("ask-all", inputs=["questions"])

        @flow.map(over="questions", into="answers", max_concurrency=12, retry=wf.RetryPolicy(max_retries=0))
        async def ask(question: str, ctx: wf.StepContext) -> str:
            index = ctx.map_index or 0
            await asyncio.sleep(0.003 * (index if first_to_ask == "first item" else 11 - index))
            try:
                reply = await ctx.llm.complete(question)
            except LLMStatusError as exc:
                return f"HTTP {exc.status_code}"
            return f"{reply.raw['id']}: {reply.text}"

        model = SimulatedModel(p50=0.001, p99=0.001, seed=3, faults={"429": 0.4})
        questions = [f"question {i}" for i in range(12)]
        return flow.run({"questions": questions}, workspace=False, llm=ChatClient(transport=model)).state["answers"]

    answers = replies("first item")
    assert "HTTP 429" in answers  # some items drew the fault, others a reply
    assert any(": Simulated reply to: question" in a for a in answers)
    assert answers == replies("first item")
    assert answers == replies("last item")


def test_run_seed_seeds_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without llm=, runs with one seed see the same simulated latencies."""
    monkeypatch.delenv("WFKIT_LLM_BASE_URL", raising=False)
    flow = wf.Workflow("peek")

    @flow.step
    async def peek(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"latency": ctx.llm.transport.draw().latency_s}

    one, two = (flow.run({}, workspace=False, seed=21).state["latency"] for _ in range(2))
    assert one == two


def test_malformed_stream_is_a_permanent_response_error() -> None:
    """A streamed reply with a cut-off event raises LLMResponseError quoting the bad chunk."""

    async def main() -> None:
        client = ChatClient(transport=SimulatedModel(p50=0, p99=0, faults={"malformed": 1.0}))
        async with client, client.stream("go") as stream:
            async for _ in stream:
                pass

    with pytest.raises(LLMResponseError, match="stream chunk that is not chat-completions JSON"):
        asyncio.run(main())
