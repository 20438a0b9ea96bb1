"""Unit tests for wfkit.model._context: StepContext and Failure."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest

from wfkit.model._context import Failure, StepContext


def make_ctx(**overrides: object) -> StepContext:
    """A StepContext for run r1, step classify, visit 2, attempt 1."""
    rng = random.Random(0)
    kwargs: dict[str, object] = {
        "run_id": "r1",
        "workflow": "triage",
        "step": "classify",
        "visit": 2,
        "attempt": 1,
        "tools": ("web_search",),
        "rng_source": lambda: rng,
        "deadline": None,
        "failure": None,
    }
    kwargs.update(overrides)
    return StepContext(**kwargs)  # type: ignore[arg-type]


def usage_of(ctx: StepContext) -> dict[str, object] | None:
    """What the engine copies into the step event: the context's recorded usage."""
    return ctx._usage


# --- construction -------------------------------------------------------------------------------


def test_context_exposes_where_the_step_is():
    """A context carries the run, workflow, step, visit, attempt and tools it was made with."""
    ctx = make_ctx()
    assert ("r1", "triage", "classify", 2, 1, ("web_search",)) == (
        ctx.run_id,
        ctx.workflow,
        ctx.step,
        ctx.visit,
        ctx.attempt,
        ctx.tools,
    )
    assert ctx.failure is None


def test_arguments_are_keyword_only():
    """StepContext must be built with keyword arguments."""
    with pytest.raises(TypeError):
        StepContext("r1", "wf", "s", 1, 1, (), random.Random, None, None)  # type: ignore[misc]


def test_context_has_no_instance_dict():
    """StepContext uses slots, so a typo'd attribute cannot be set by mistake."""
    ctx = make_ctx()
    with pytest.raises(AttributeError):
        ctx.modle = "x"  # type: ignore[attr-defined]


def test_repr_names_the_step():
    """repr shows run, step, visit, attempt and tools."""
    expected = "StepContext(run_id='r1', step='classify', visit=2, attempt=1, tools=('web_search',))"
    assert expected == repr(make_ctx())


def test_failure_is_passed_through():
    """A fallback step's context carries the Failure that led to it."""
    failure = Failure("fetch", 3, "transient", "TimeoutError", "slow")
    assert failure is make_ctx(failure=failure).failure


def test_failure_is_immutable():
    """A Failure is frozen."""
    failure = Failure("fetch", 3, "transient", "TimeoutError", "slow")
    with pytest.raises(dataclasses.FrozenInstanceError):
        failure.attempt = 4  # type: ignore[misc]


# --- idempotency_key ----------------------------------------------------------------------------


def test_idempotency_key_is_run_step_visit():
    """idempotency_key is 'run_id:step:visit'."""
    assert "r1:classify:2" == make_ctx().idempotency_key


def test_idempotency_key_is_stable_across_attempts():
    """Retries of the same visit share an idempotency key."""
    assert make_ctx(attempt=1).idempotency_key == make_ctx(attempt=4).idempotency_key


def test_idempotency_key_differs_between_visits_and_runs():
    """A new visit or a new run gets a different idempotency key."""
    keys = {
        make_ctx().idempotency_key,
        make_ctx(visit=3).idempotency_key,
        make_ctx(run_id="r2").idempotency_key,
        make_ctx(step="answer").idempotency_key,
    }
    assert 4 == len(keys)


# --- time_left ----------------------------------------------------------------------------------


def test_time_left_is_none_without_deadline():
    """Without a run deadline time_left() is None."""
    assert make_ctx(deadline=None).time_left() is None


def test_time_left_counts_down_to_the_monotonic_deadline():
    """With a deadline time_left() is the seconds until it on the monotonic clock."""
    ctx = make_ctx(deadline=time.monotonic() + 30.0)
    left = ctx.time_left()
    assert left is not None
    assert 30.0 == pytest.approx(left, abs=1.0)


def test_time_left_is_negative_after_the_deadline():
    """Past the deadline time_left() is negative."""
    assert make_ctx(deadline=time.monotonic() - 5.0).time_left() < 0  # type: ignore[operator]


# --- rng ----------------------------------------------------------------------------------------


def test_rng_comes_from_the_run():
    """ctx.rng is the generator returned by the run's rng source."""
    rng = random.Random(99)
    assert rng is make_ctx(rng_source=lambda: rng).rng


def test_rng_source_is_called_lazily():
    """The rng source is only called when ctx.rng is read."""
    calls: list[int] = []

    def source() -> random.Random:
        calls.append(1)
        return random.Random(1)

    ctx = make_ctx(rng_source=source)
    assert [] == calls
    ctx.rng.random()
    assert [1] == calls


# --- record -------------------------------------------------------------------------------------


def share(calls: int, tokens_in: int | None, tokens_out: int | None, cost_usd: float | None, **times: float) -> dict:
    """One model's share of an attempt's usage, as ``extra["by_model"]`` holds it."""
    return {
        "calls": calls,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": cost_usd,
        "model_latency_s": times.get("model_latency_s"),
        "ttft_s": times.get("ttft_s"),
    }


def test_no_usage_until_record_is_called():
    """Before record() the context has no usage to report."""
    assert usage_of(make_ctx()) is None


def test_record_sets_model_and_counts():
    """record() stores the model, token counts and cost."""
    ctx = make_ctx()
    ctx.record(model="gpt-x", tokens_in=100, tokens_out=20, cost_usd=0.003)
    assert {"model": "gpt-x", "tokens_in": 100, "tokens_out": 20, "cost_usd": 0.003} == usage_of(ctx)


def test_record_accumulates_tokens_and_cost():
    """Token counts and cost add up over several record() calls."""
    ctx = make_ctx()
    ctx.record(model="m", tokens_in=100, tokens_out=10, cost_usd=0.01)
    ctx.record(tokens_in=50, tokens_out=5, cost_usd=0.02)
    ctx.record(tokens_in=1, cost_usd=0.005)
    usage = usage_of(ctx)
    assert usage is not None
    assert (151, 15) == (usage["tokens_in"], usage["tokens_out"])
    assert 0.035 == pytest.approx(usage["cost_usd"])


def test_record_counts_start_from_zero_when_first_given_later():
    """A count first given on a later call starts from that value."""
    ctx = make_ctx()
    ctx.record(model="m")
    ctx.record(tokens_out=7, cost_usd=0.001)
    ctx.record(tokens_out=3, cost_usd=0.002)
    assert {"model": "m", "tokens_out": 10, "cost_usd": pytest.approx(0.003)} == usage_of(ctx)


def test_record_zero_counts_are_recorded():
    """A count of zero is recorded as 0, not skipped like None."""
    ctx = make_ctx()
    ctx.record(tokens_in=0, cost_usd=0.0)
    assert {"tokens_in": 0, "cost_usd": 0.0} == usage_of(ctx)


def test_record_last_model_wins():
    """The model is replaced by each record() that names one and kept by those that do not."""
    ctx = make_ctx()
    ctx.record(model="small")
    ctx.record(model="large", tokens_in=1)
    ctx.record(tokens_in=1)
    usage = usage_of(ctx)
    assert usage is not None
    assert "large" == usage["model"]


def test_record_of_tokens_without_a_cost_makes_the_attempts_cost_unknown():
    """Tokens with no cost are a call no price table knew: the attempt's cost is unknown (no
    cost_usd, whatever was priced before or after) and extra names the model, once; a count of
    tokens recorded in pieces without a cost is unpriced too, naming the model recorded before."""
    ctx = make_ctx()
    ctx.record(model="priced-1", tokens_in=4, tokens_out=1, cost_usd=0.006)
    ctx.record(model="local-llama", tokens_in=4, tokens_out=1)
    ctx.record(cost_usd=0.001)  # a priced tool's call
    ctx.record(model="local-llama", tokens_out=2)
    ctx.record(model="priced-1", tokens_in=4, tokens_out=1, cost_usd=0.006)
    assert {
        "model": "priced-1",
        "tokens_in": 12,
        "tokens_out": 5,
        "extra": {
            "unpriced_models": ["local-llama"],
            # the tool's $0.001 counts under local-llama, whose call came before it: unknown there too
            "by_model": {"priced-1": share(2, 8, 2, pytest.approx(0.012)), "local-llama": share(2, 4, 3, None)},
        },
    } == usage_of(ctx)
    pieces = make_ctx()
    pieces.record(model="on-prem")
    pieces.record(tokens_out=7)
    pieces.record(cost_usd=0.5)
    assert {"model": "on-prem", "tokens_out": 7, "extra": {"unpriced_models": ["on-prem"]}} == usage_of(pieces)


def test_record_lists_each_unpriced_model_and_a_call_that_named_none():
    """Two unpriced models are both listed, in the order called; a call that named no model is None."""
    ctx = make_ctx()
    ctx.record(tokens_in=3)
    ctx.record(model="a", tokens_in=1, prompt="p1")
    ctx.record(model="b", tokens_out=1)
    ctx.record(model="a", tokens_in=1)
    assert {
        "unpriced_models": [None, "a", "b"],
        "prompt": "p1",
        "by_model": {"a": share(2, 5, 0, None), "b": share(1, 0, 1, None)},  # the unnamed call: under the first named
    } == (usage_of(ctx) or {})["extra"]
    assert "cost_usd" not in (usage_of(ctx) or {})


def test_record_of_a_call_with_no_usage_makes_the_attempts_cost_unknown_naming_why():
    """A call that succeeded but whose server sent no token usage (``no_usage=True``) was made, so
    it is no free call: the attempt's cost is unknown, whatever was priced before or after, and
    extra lists its model under no_usage_models (once), apart from the unpriced ones; with a cost
    of its own (a gateway that sends the price and no tokens) it is priced as given, its tokens
    marked as not counted (not 0)."""
    ctx = make_ctx()
    ctx.record(model="priced-1", tokens_in=4, tokens_out=1, cost_usd=0.006)
    ctx.record(model="proxied", no_usage=True)
    ctx.record(model="proxied", no_usage=True)
    ctx.record(model="local-llama", tokens_in=2, tokens_out=1)
    ctx.record(model="priced-1", tokens_in=4, tokens_out=1, cost_usd=0.006)
    assert {
        "model": "priced-1",
        "tokens_in": 10,
        "tokens_out": 3,
        "extra": {
            "no_usage_models": ["proxied"],
            "unpriced_models": ["local-llama"],
            "by_model": {
                "priced-1": share(2, 8, 2, pytest.approx(0.012)),
                "proxied": share(2, None, None, None),
                "local-llama": share(1, 2, 1, None),
            },
        },
    } == usage_of(ctx)
    given = make_ctx()
    given.record(model="gateway", cost_usd=0.002, no_usage=True)
    assert {
        "model": "gateway",
        "cost_usd": 0.002,
        "extra": {"priced_no_tokens_in_models": ["gateway"], "priced_no_tokens_out_models": ["gateway"]},
    } == usage_of(given)


def test_record_of_a_call_with_one_count_adds_it_and_marks_only_the_other():
    """A call whose server counted one kind of token (``no_usage=True`` with one count given) adds
    that count and lists its model under the other's key, once: the cost is unknown, and nothing
    says the count that came back is short; a call with neither is still ``no_usage_models``."""
    ctx = make_ctx()
    ctx.record(model="priced-1", tokens_in=4, tokens_out=1, cost_usd=0.006)
    ctx.record(model="half", tokens_in=3, no_usage=True)
    ctx.record(model="half", tokens_in=2, no_usage=True)
    ctx.record(model="other-half", tokens_out=5, no_usage=True)
    ctx.record(model="priced-1", tokens_in=4, tokens_out=1, cost_usd=0.006)
    assert {
        "model": "priced-1",
        "tokens_in": 13,
        "tokens_out": 7,
        "extra": {
            "no_tokens_out_models": ["half"],
            "no_tokens_in_models": ["other-half"],
            "by_model": {
                "priced-1": share(2, 8, 2, pytest.approx(0.012)),
                "half": share(2, 5, None, None),
                "other-half": share(1, None, 5, None),
            },
        },
    } == usage_of(ctx)
    neither = make_ctx()
    neither.record(model="proxied", no_usage=True)
    assert {"model": "proxied", "extra": {"no_usage_models": ["proxied"]}} == usage_of(neither)


def test_record_of_a_free_call_and_a_failed_one_keeps_the_cost_known():
    """cost_usd=0.0 with tokens is a free call, and a call with no tokens (one that failed) is no
    unpriced call: the attempt's cost stays the priced calls' sum."""
    ctx = make_ctx()
    ctx.record(model="on-prem", tokens_in=10, tokens_out=2, cost_usd=0.0)
    ctx.record(model="priced-1", model_latency_s=0.5)
    ctx.record(model="priced-1", tokens_in=4, tokens_out=1, cost_usd=0.006)
    assert {
        "model": "priced-1",
        "tokens_in": 14,
        "tokens_out": 3,
        "cost_usd": 0.006,
        "model_latency_s": 0.5,
        "extra": {
            "by_model": {"on-prem": share(1, 10, 2, 0.0), "priced-1": share(2, 4, 1, 0.006, model_latency_s=0.5)}
        },
    } == usage_of(ctx)


def test_record_of_several_models_keeps_each_ones_share():
    """An attempt calling a cheap model, then a costly one, keeps each one's calls, tokens, cost,
    model time and first token in ``extra["by_model"]``, whose parts add up to the row's; a priced
    tool's cost counts under the model called before it; an attempt of one model has no breakdown."""
    ctx = make_ctx()
    ctx.record(model="cheap", tokens_in=100, tokens_out=10, cost_usd=0.001, model_latency_s=0.2, ttft_s=0.05)
    ctx.record(cost_usd=0.5)  # a priced tool the cheap model's reply asked for
    ctx.record(model="costly", tokens_in=200, tokens_out=20, cost_usd=0.04, model_latency_s=1.5)
    ctx.record(model="cheap", tokens_in=50, tokens_out=5, cost_usd=0.0005, model_latency_s=0.1, ttft_s=0.9)
    usage = usage_of(ctx) or {}
    assert ("cheap", 350, 35, pytest.approx(0.5415)) == (
        usage["model"],
        usage["tokens_in"],
        usage["tokens_out"],
        usage["cost_usd"],
    )
    assert {
        "cheap": share(2, 150, 15, pytest.approx(0.5015), model_latency_s=pytest.approx(0.3), ttft_s=0.05),
        "costly": share(1, 200, 20, 0.04, model_latency_s=1.5),
    } == usage["extra"]["by_model"]
    one = make_ctx()
    one.record(model="cheap", tokens_in=1, tokens_out=1, cost_usd=0.001)
    one.record(model="cheap", tokens_in=1, tokens_out=1, cost_usd=0.001)
    assert "extra" not in (usage_of(one) or {})


def test_record_collects_extra_keywords():
    """Extra keyword arguments are collected into 'extra', merged over calls with later keys winning."""
    ctx = make_ctx()
    ctx.record(model="m", prompt_id="p1", cache_hit=False)
    ctx.record(cache_hit=True, temperature=0.2)
    usage = usage_of(ctx)
    assert usage is not None
    assert {"prompt_id": "p1", "cache_hit": True, "temperature": 0.2} == usage["extra"]
    assert "m" == usage["model"]


def test_record_without_extras_has_no_extra_key():
    """Without extra keywords no 'extra' entry is created."""
    ctx = make_ctx()
    ctx.record(tokens_in=1, cost_usd=0.0)
    usage = usage_of(ctx)
    assert usage is not None
    assert "extra" not in usage


def test_record_with_nothing_creates_empty_usage():
    """record() with no arguments leaves an empty usage, which reports nothing."""
    ctx = make_ctx()
    ctx.record()
    assert {} == usage_of(ctx)


def test_record_is_keyword_only():
    """record() accepts its values only by keyword."""
    with pytest.raises(TypeError):
        make_ctx().record("gpt-x")  # type: ignore[misc]


def test_usage_is_per_context():
    """Each attempt's context keeps its own usage."""
    first, second = make_ctx(), make_ctx(attempt=2)
    first.record(tokens_in=5)
    assert usage_of(second) is None
