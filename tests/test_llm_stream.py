"""Streamed chat completions (wfkit.llm._llm: ChatStream) against a real SSE server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from llm_server import LLMServer
from test_llm import ABC_USD, KEY, at, check_no_usage_is_unknown_cost, check_part_usage_counts_what_came, client_for

import wfkit as wf
from wfkit.testing import test_mode


def test_stream_yields_chunks_and_a_final_reply() -> None:
    """Chunks join to the reply's text; the reply carries tokens and cost."""
    client = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=1, reply="one two three four")
    )

    async def go() -> tuple[list[str], wf.llm.Reply | None]:
        async with client.stream("count to four") as stream:
            chunks = [text async for text in stream]
        return chunks, stream.reply

    chunks, reply = asyncio.run(go())
    assert reply is not None
    assert "one two three four" == "".join(chunks).strip()
    assert "one two three four" == reply.text.strip()
    assert reply.tokens_out is not None
    assert reply.tokens_out > 0


def test_stream_errors_are_classified() -> None:
    """A 503 before the stream starts raises the client's status error (transient)."""
    client = wf.llm.ChatClient(transport=wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=1, faults={"503": 1.0}))

    async def go() -> None:
        async with client.stream("hello") as stream:
            async for _ in stream:
                pass

    with pytest.raises(wf.llm.LLMStatusError) as info:
        asyncio.run(go())
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(info.value)


def test_a_stream_without_usage_makes_its_steps_cost_unknown_not_free(tmp_path: Path) -> None:
    """A stream whose server ignores ``stream_options.include_usage`` (it sends no usage chunk) over
    real HTTP: the reply's tokens and cost are None, and the step's cost is unknown in the step
    log, ``df.wf.cost()``, ``cost_budget`` and the report, where it read as a free call."""
    with LLMServer(api_key=KEY) as server:
        check_no_usage_is_unknown_cost(server, tmp_path, streamed=True)


def test_a_stream_with_one_token_count_records_it_and_marks_the_other_unknown(tmp_path: Path) -> None:
    """A stream whose usage chunk has one of the two counts, over real HTTP: that count is recorded,
    only the other reads as unknown in ``df.wf.cost()``, and the cost is unknown."""
    with LLMServer(api_key=KEY) as server:
        check_part_usage_counts_what_came(server, tmp_path, streamed=True)


def abandoning_flow() -> wf.Workflow:
    """``counted`` (a reply, then a stream read to its end), ``left`` (the same reply, then a
    stream it breaks out of at its first piece of text) and ``broken`` (a stream the server cuts
    off, which the step catches): each keeps what its stream's reply says."""
    flow = wf.Workflow("abandon")

    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        await ctx.llm.complete("a b c")
        async with ctx.llm.stream("a b c d e f") as stream:
            async for _text in stream:
                if ctx.step == "left":
                    break  # the caller has what it wanted: the usage chunk is still to come
        return {ctx.step: stream.reply is not None}

    async def broken(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        try:
            async with ctx.llm.stream("a b c") as stream:
                async for _text in stream:
                    pass
        except wf.llm.LLMConnectionError:
            return {"broken": True}
        return {"broken": False}

    flow.step(ask, name="counted")
    flow.step(ask, name="left")
    flow.step(broken, name="broken")
    flow.chain("counted", "left", "broken")
    return flow


def test_a_stream_left_before_its_end_makes_its_steps_tokens_and_cost_unknown(tmp_path: Path) -> None:
    """A step that breaks out of ``async for`` over a stream before the server's last chunk (the one
    with the usage), over real HTTP: its tokens and cost are unknown (they read as the step's
    other, priced call alone, as if the stream had cost nothing), its extra counts the stream as
    ``abandoned_streams``, and ``df.wf.cost()``, ``cost_budget`` and the report say so; a stream
    read to its end is no abandoned one, nor is one the server cut off (a call whose outcome is
    unknown, marked as such)."""
    from wfkit.logs._report import write_report

    with LLMServer(api_key=KEY) as server, test_mode():
        server.script("ok", "ok", "ok", "ok", ("broken_stream", 2))
        run = abandoning_flow().run({}, workspace=tmp_path, llm=client_for(server))
    assert {"counted": True, "left": False, "broken": True} == {k: run.state[k] for k in ("counted", "left", "broken")}
    counted, left, broken = run.events
    assert pytest.approx(ABC_USD + (6 * 0.001 + 8 * 0.002) / 1000) == counted.cost_usd
    assert {"llm_calls": 2, **at(server)} == counted.extra
    assert ("ok", "test-model", None) == (left.status, left.model, left.cost_usd)
    abandoned = {"abandoned_streams": 1, "abandoned_stream_models": ["test-model"]}
    assert {"llm_calls": 2, **abandoned, **at(server)} == left.extra
    unknown = {"unknown_outcome_calls": 1, "unknown_outcome_models": ["test-model"]}
    assert (None, {"llm_calls": 1, **unknown, **at(server)}) == (broken.cost_usd, broken.extra)

    frame = wf.steps(tmp_path)
    table = frame.wf.cost(by=None).loc["abandon"]
    assert pd.isna(table.loc["left", "tokens_in"])  # 3 of them counted: 3 would read as all
    assert pd.isna(table.loc["left", "tokens_out"])
    assert pd.isna(table.loc["left", "cost_usd"])
    assert 2 == table.loc["left", "calls"]
    assert (9, 13) == tuple(table.loc["counted", ["tokens_in", "tokens_out"]])
    assert pd.isna(frame.wf.cost().loc[run.run_id, "cost_usd"])

    judged = wf.evals.cost_budget(1.0)(wf.evals.Case("c1", {}), run)
    assert (True, False) == (judged.value != judged.value, judged.passed)  # NaN: unscored
    assert judged.detail.startswith(
        "cost unknown: step 'left' left a stream of model 'test-model' before its end (a break out of "
        "`async for`, or the step's timeout), before the server's last chunk brought its token usage, so there "
        "was nothing to price: "
        "read a stream to its end (or call client.complete(...)) to know what it cost; step 'broken' called "
        "model 'test-model', and the call failed after the server got it"
    )

    page = write_report(tmp_path, tmp_path / "report").read_text()
    per_step = page[page.index("<h3>Cost</h3>") : page.index("<h3>Cost per model</h3>")]
    assert "or it left a stream before its end, when its usage had not come" in per_step
    assert "only one kind of its tokens" not in per_step
    costs = page[page.index("<h3>Cost per model</h3>") :]
    assert "a step left a stream before its end (a break out of `async for`, or the step's timeout)" in costs
    assert "no token usage with its replies" not in costs


def test_a_stream_its_steps_timeout_cut_short_makes_the_attempts_cost_unknown(tmp_path: Path) -> None:
    """A step whose timeout fell while it read a stream (over real HTTP, a server that stalls after
    two chunks) had made a call the server went on generating and billing, its usage never read: the
    attempt recorded it as a failed call, which brought back nothing to pay for, so its cost was the
    step's other call's alone. It is an abandoned stream now, as a ``break`` out of ``async for`` is."""
    flow = wf.Workflow("cut-by-timeout")

    @flow.step(timeout=0.5)
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        await ctx.llm.complete("a b c")
        async with ctx.llm.stream("a b c d e f") as stream:
            async for _text in stream:
                pass
        return {}

    with LLMServer(api_key=KEY) as server, test_mode():
        server.script("ok", ("stall_stream", 2))
        run = flow.run({}, workspace=tmp_path, llm=client_for(server), raise_on_error=False)
    (event,) = run.events
    assert ("timeout", "test-model", None) == (event.status, event.model, event.cost_usd)
    assert {"abandoned_streams": 1, "abandoned_stream_models": ["test-model"]}.items() <= event.extra.items()
    assert pd.isna(wf.steps(tmp_path).wf.cost().loc[run.run_id, "cost_usd"])


def test_a_stream_that_failed_once_the_server_answered_has_an_unknown_cost_and_a_refused_one_costs_0(
    tmp_path: Path,
) -> None:
    """Over real HTTP: a stream that stalls past the read timeout after two chunks, and one the
    server refuses with a 503. The stalled one (generated, perhaps billed, its usage never read)
    was recorded as a failed call, costing nothing; it is marked ``unknown_outcome_calls`` now, its
    step's tokens and cost <NA> in ``cost()`` read back from parquet. The refused one still costs a
    known 0, its call counted."""
    from wfkit.logs._steplog import steps_dir

    flow = wf.Workflow("stream-failures")

    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        try:
            async with ctx.llm.stream("a b c d e f", timeout=httpx.Timeout(30.0, read=0.3)) as stream:
                async for _text in stream:
                    pass
        except (wf.llm.LLMTimeoutError, wf.llm.LLMStatusError) as exc:
            return {ctx.step: type(exc).__name__}
        return {ctx.step: "ok"}

    flow.step(ask, name="stalled")
    flow.step(ask, name="refused")
    flow.chain("stalled", "refused")
    with LLMServer(api_key=KEY) as server, test_mode():
        server.script(("stall_stream", 2), ("status", 503))
        run = flow.run({}, workspace=tmp_path, llm=client_for(server))
    assert {"stalled": "LLMTimeoutError", "refused": "LLMStatusError"} == {
        k: run.state[k] for k in ("stalled", "refused")
    }
    stalled, refused = run.events
    unknown = {"unknown_outcome_calls": 1, "unknown_outcome_models": ["test-model"]}
    assert {"llm_calls": 1, **unknown, **at(server)} == stalled.extra
    assert {"llm_calls": 1, **at(server)} == refused.extra

    wf.steps(tmp_path)  # exports the run's rows to the parquet files
    table = pd.read_parquet(steps_dir(tmp_path)).wf.cost(by=None).loc["stream-failures"]
    assert table.loc["stalled", ["tokens_in", "tokens_out", "cost_usd"]].isna().all()
    assert (1, 0, 0.0) == tuple(table.loc["refused", ["calls", "tokens_in", "cost_usd"]])
