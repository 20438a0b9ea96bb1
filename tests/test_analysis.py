"""wfkit.steps() and the df.wf accessor: latency percentiles, failures by error kind, retries,
cost and tokens, runs and run latency, on a workflow whose latencies and failures are known."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

import wfkit as wf
from wfkit.logs._register import register_accessor
from wfkit.logs._steplog import dataset_schema, schema, steps_dir
from wfkit.logs._tables import QUANTILES, _pandas_quantiles, in_run_order

RUNS = 30
RETRY = wf.RetryPolicy(max_retries=2, base_delay=0.001, jitter=0)


def known_flow() -> wf.Workflow:
    """fetch sleeps 10 ms (a transient error first when i % 3 == 0), parse sleeps 2 ms (an unknown
    error first when i % 5 == 0), answer sleeps 30 ms (a permanent error when i % 10 == 7)."""
    flow = wf.Workflow("known")

    @flow.step(retry=RETRY)
    async def fetch(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        ctx.record(model="embed-1", tokens_in=5, cost_usd=0.0001)
        await asyncio.sleep(0.01)
        if ctx.attempt == 1 and state["i"] % 3 == 0:
            raise ConnectionError("connection reset")
        return {"docs": state["i"]}

    @flow.step(retry=RETRY)
    def parse(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        time.sleep(0.002)
        if ctx.attempt == 1 and state["i"] % 5 == 0:
            raise RuntimeError("odd parser state")
        return {"parsed": True}

    @flow.step
    async def answer(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        ctx.record(model="chat-1", tokens_in=100, tokens_out=state["i"], cost_usd=0.002)
        await asyncio.sleep(0.03)
        if state["i"] % 10 == 7:
            raise ValueError("unanswerable")
        return {"answer": "ok"}

    flow.chain("fetch", "parse", "answer")
    return flow


class Known(NamedTuple):
    frame: pd.DataFrame  # wfkit.steps() of the workspace
    run_ids: dict[int, str]  # input i -> run id
    folder: Path  # the workspace


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Known:
    """The step log of RUNS runs of the known workflow, and each input's run id."""
    folder = tmp_path_factory.mktemp("analysis") / "ws"
    flow = known_flow()

    async def all_runs() -> list[wf.Run]:
        return list(
            await asyncio.gather(
                *(flow.arun({"i": i}, workspace=folder, seed=i, raise_on_error=False) for i in range(RUNS))
            )
        )

    runs = asyncio.run(all_runs())
    return Known(wf.steps(folder), {i: run.run_id for i, run in enumerate(runs)}, folder)


def test_latency_percentiles_per_step(known: Known) -> None:
    """latency() has p50, p90, p95, p99, max, mean and count per (workflow, step) over successful
    attempts, ordered and plausible; status=None counts every attempt."""
    frame = known.frame
    keyed = frame.wf.latency()
    assert [("known", "fetch"), ("known", "parse"), ("known", "answer")] == list(keyed.index)  # as runs meet them
    assert ["workflow", "step"] == list(keyed.index.names)
    table = keyed.loc["known"]
    assert ["p50", "p90", "p95", "p99", "max", "mean", "count"] == list(table.columns)
    assert {"fetch": RUNS, "parse": RUNS, "answer": RUNS - 3} == table["count"].to_dict()
    every = frame.wf.latency(status=None).loc["known"]
    assert {"fetch": RUNS + 10, "parse": RUNS + 6, "answer": RUNS} == every["count"].to_dict()
    for _, row in table.iterrows():
        assert row["p50"] <= row["p90"] <= row["p95"] <= row["p99"] <= row["max"]
    sleeps = {"fetch": 0.01, "parse": 0.002, "answer": 0.03}
    for step, sleep in sleeps.items():
        assert sleep <= table.loc[step, "p50"] < sleep + 0.25
        assert sleep <= table.loc[step, "mean"]
    latencies = frame.loc[(frame["step"] == "answer") & (frame["status"] == "ok"), "latency_s"]
    assert latencies.quantile(0.9) == pytest.approx(table.loc["answer", "p90"])
    assert latencies.max() == table.loc["answer", "max"]


def test_latency_takes_other_quantiles_and_groupings(known: Known) -> None:
    """latency(by=..., quantiles=...) names columns after the quantiles asked for."""
    frame = known.frame
    table = frame.wf.latency(by="workflow", quantiles=(0.25, 0.999), status=None)
    assert ["p25", "p99.9", "max", "mean", "count"] == list(table.columns)
    assert [RUNS * 3 + 16] == list(table["count"])


def test_failures_on_a_step_log_from_steps(known: Known) -> None:
    """failures() works on the frame wfkit.steps() returns."""
    frame = known.frame
    assert 3 == frame.wf.failures().loc[("known", "answer"), "permanent"]


def test_failures_by_error_kind(known: Known) -> None:
    """failures() counts attempts, failed attempts by kind, the failure rate and the timeouts
    (on the log read by pandas directly, whose error_kind is plain strings)."""
    register_accessor()
    table = pd.read_parquet(steps_dir(known.folder)).wf.failures()
    expected = pd.DataFrame(
        {
            "attempts": [RUNS + 10, RUNS + 6, RUNS],
            "transient": [10, 0, 0],
            "permanent": [0, 0, 3],
            "unknown": [0, 6, 0],
            "failed": [10, 6, 3],
            "failure_rate": [10 / (RUNS + 10), 6 / (RUNS + 6), 3 / RUNS],
            "timeouts": [0, 0, 0],
        },
        index=pd.MultiIndex.from_product([["known"], ["fetch", "parse", "answer"]], names=["workflow", "step"]),
    )
    table.index = pd.MultiIndex.from_tuples([tuple(map(str, k)) for k in table.index], names=table.index.names)
    pd.testing.assert_frame_equal(expected, table, check_dtype=False)


def test_retries_per_step_and_run(known: Known) -> None:
    """retries() totals the retries per step visit, by step and by run."""
    frame, run_ids = known.frame, known.run_ids
    by_step = frame.wf.retries().loc["known"]
    assert ["retries", "mean_per_visit", "max_per_visit"] == list(by_step.columns)
    assert {"answer": 0, "fetch": 10, "parse": 6} == by_step["retries"].to_dict()
    assert pytest.approx(10 / RUNS) == by_step.loc["fetch", "mean_per_visit"]
    assert 1 == by_step.loc["fetch", "max_per_visit"]
    by_run = frame.wf.retries(by="run_id")["retries"]
    assert {run_ids[i]: (i % 3 == 0) + (i % 5 == 0) for i in range(RUNS)} == by_run.to_dict()


@pytest.mark.parametrize("method", ["latency", "failures", "errors", "retries", "cost"])
def test_a_misspelt_by_names_the_column_it_meant(known: Known, method: str) -> None:
    """df.wf.cost(by="modle") (or latency, failures, errors, retries) raised a bare KeyError
    "['modle'] not in index"; it names the column by= gave, the closest one and the frame's columns."""
    with pytest.raises(ValueError, match=r"by= names no column of this frame: 'modle' \(did you mean 'model'\?\)"):
        getattr(known.frame.wf, method)(by="modle")
    with pytest.raises(ValueError, match=r"'stpe' \(did you mean 'step'\?\); group by its columns .*run_id"):
        getattr(known.frame.wf, method)(by=["workflow", "stpe"])
    assert len(getattr(known.frame.wf, method)(by="workflow")) >= 1


def test_cost_and_tokens_by_run_and_step(known: Known) -> None:
    """cost() sums tokens, cost and model calls recorded with ctx.record, by run and by step."""
    frame, run_ids = known.frame, known.run_ids
    by_run = frame.wf.cost()
    # Counts and money only: a wall-clock figure (model_latency_s) would make every notebook that
    # shows this table fail its replay.
    assert ["tokens_in", "tokens_out", "cost_usd", "calls"] == list(by_run.columns)
    for i, run_id in run_ids.items():
        fetches = 2 if i % 3 == 0 else 1
        row = by_run.loc[run_id]
        assert (5 * fetches + 100, i, fetches + 1) == (row["tokens_in"], row["tokens_out"], row["calls"])
        assert pytest.approx(0.0001 * fetches + 0.002) == row["cost_usd"]
    by_step = frame.wf.cost(by="step")
    by_step.index = by_step.index.astype(str)
    assert {"answer": 100 * RUNS, "fetch": 5 * (RUNS + 10), "parse": 0} == by_step["tokens_in"].to_dict()
    assert {"answer": sum(range(RUNS)), "fetch": 0, "parse": 0} == by_step["tokens_out"].to_dict()
    assert {"answer": RUNS, "fetch": RUNS + 10, "parse": 0} == by_step["calls"].to_dict()
    assert pytest.approx(0.002 * RUNS) == by_step.loc["answer", "cost_usd"]
    assert pytest.approx(0.0001 * (RUNS + 10)) == by_step.loc["fetch", "cost_usd"]
    # Nullable integers, exact where every call was counted, <NA> where one was not (test_llm.py).
    assert ["Int64", "Int64", "int64"] == [str(by_step[c].dtype) for c in ("tokens_in", "tokens_out", "calls")]
    assert not by_step[["tokens_in", "tokens_out"]].isna().any(axis=None)


def test_cost_counts_each_llm_call_of_an_attempt(tmp_path: Path) -> None:
    """An attempt that called the model three times is three calls (its extra.llm_calls), not one;
    a failed call counts too. Without the extra column, cost() counts the attempts that named a model."""
    model = wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=1, faults={"503": 1.0})
    flow = wf.Workflow("chatty")

    @flow.step
    async def draft(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        texts = [(await ctx.llm.complete(f"part {n}")).text for n in range(3)]
        return {"draft": texts}

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0.001))
    async def check(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:  # one call, answered 503: a failed attempt that still called the model
            await wf.llm.ChatClient(transport=model).complete("check", ctx=ctx)
        return {"checked": True}

    flow.edge("draft", "check")
    flow.run({}, workspace=tmp_path / "ws", seed=3)
    frame = wf.steps(tmp_path / "ws")
    by_step = frame.wf.cost(by="step")
    by_step.index = by_step.index.astype(str)
    assert {"draft": 3, "check": 1} == by_step["calls"].to_dict()
    without_extra = wf.steps(tmp_path / "ws", columns=["workflow", "step", "attempt", "status", *COST_COLUMNS])
    assert 2 == without_extra.wf.cost(by=None)["calls"].sum()


COST_COLUMNS = ["tokens_in", "tokens_out", "cost_usd", "model", "run_id"]


# USD per 1,000 tokens: "a b c" asks 4 tokens and "yes" answers 1, so a call costs $0.006.
PRICED = {"priced-1": wf.llm.Price(1.0, 2.0)}  # taken as written, though dearer than any model
CALL_USD = (4 * 1.0 + 1 * 2.0) / 1000


class Costed(NamedTuple):
    frame: pd.DataFrame  # the step log's parquet files, read back by pandas
    run_ids: list[str]  # in input order: on priced-1, on local-llama (no price), on priced-1


@pytest.fixture(scope="module")
def costed(tmp_path_factory: pytest.TempPathFactory) -> Costed:
    """Three runs: ``ask`` on the model the input names (priced-1, or local-llama, which no price
    table knows), ``summarise`` on priced-1 (its first call answered 503 and retried), ``tidy``
    calling no model. Real calls through ChatClient to the simulated model, as a notebook makes them."""
    folder = tmp_path_factory.mktemp("costed") / "ws"
    model = wf.llm.SimulatedModel(p50=0, p99=0, seed=0, reply="yes")
    client = wf.llm.ChatClient(transport=model, model="priced-1", prices=PRICED)
    down = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0, p99=0, seed=0, faults={"503": 1.0}), model="priced-1", prices=PRICED
    )
    flow = wf.Workflow("costed")

    @flow.step
    async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"asked": (await ctx.llm.complete("a b c", model=state["model"])).text}

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0.001))
    async def summarise(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:  # a failed call: no tokens came back, so it is no unpriced call
            await down.complete("a b c", ctx=ctx)
        return {"summary": (await ctx.llm.complete("a b c")).text}

    @flow.step
    def tidy(state: Any) -> dict[str, Any]:
        return {"tidy": True}

    flow.chain("ask", "summarise", "tidy")
    runs = [flow.run({"model": m}, workspace=folder, llm=client) for m in ("priced-1", "local-llama", "priced-1")]
    wf.steps(folder)  # exports the runs' rows to the parquet files
    return Costed(pd.read_parquet(steps_dir(folder)), [run.run_id for run in runs])


def test_cost_of_priced_calls_is_their_exact_sum(costed: Costed) -> None:
    """Runs whose calls are all priced: the exact sum of their calls' costs; a call that failed (a
    503, no tokens back) leaves the cost known, and a step that called no model costs 0, not NaN."""
    frame, (first, _, third) = costed
    log = frame[frame["attempt"] > 0]
    failed = log[(log["step"] == "summarise") & (log["status"] == "retry")]
    assert 3 == len(failed)
    assert failed["model"].eq("priced-1").all()
    assert failed["tokens_in"].isna().all()
    by_run = frame.wf.cost()
    for run_id in (first, third):  # ask once, summarise twice (one failed), tidy none
        assert (8, 2, 3) == tuple(by_run.loc[run_id, ["tokens_in", "tokens_out", "calls"]])
        assert pytest.approx(2 * CALL_USD, rel=1e-12) == by_run.loc[run_id, "cost_usd"]
    by_step = frame.wf.cost(by=None).loc["costed"]
    assert pytest.approx(3 * CALL_USD, rel=1e-12) == by_step.loc["summarise", "cost_usd"]
    assert (0, 0, 0.0) == tuple(by_step.loc["tidy", ["tokens_in", "calls", "cost_usd"]])
    priced_only = frame[frame["run_id"].isin([first, third])].wf.cost(by=None).loc["costed"]
    assert {"ask": 2 * CALL_USD, "summarise": 2 * CALL_USD, "tidy": 0.0} == pytest.approx(
        priced_only["cost_usd"].to_dict(), rel=1e-12
    )


def test_cost_of_unpriced_calls_is_unknown_not_zero(costed: Costed) -> None:
    """A model no price table knows: its calls' tokens and count, and a cost of NaN (unknown),
    never the $0 that reads as free, whether the group is a run, a model or a step."""
    frame, (_, second, _) = costed
    by_model = frame.wf.cost(by="model")
    by_model.index = by_model.index.astype(str)
    assert (4, 1, 1) == tuple(by_model.loc["local-llama", ["tokens_in", "tokens_out", "calls"]])
    assert np.isnan(by_model.loc["local-llama", "cost_usd"])
    assert pytest.approx(5 * CALL_USD, rel=1e-12) == by_model.loc["priced-1", "cost_usd"]
    assert 2 + 6 == by_model.loc["priced-1", "calls"]  # the three failed calls count as calls
    ask_unpriced = frame[(frame["run_id"] == second) & (frame["step"] == "ask")]
    only = ask_unpriced.wf.cost(by=None)
    assert (4, 1, 1) == tuple(only.iloc[0][["tokens_in", "tokens_out", "calls"]])
    assert only["cost_usd"].isna().all()


def test_cost_of_a_group_mixing_priced_and_unpriced_calls_is_unknown(costed: Costed) -> None:
    """``ask`` called priced-1 in two runs and local-llama in one: its cost is NaN, not the two
    priced calls' $0.012, which would read as the whole. Its tokens and calls stay exact."""
    by_step = costed.frame.wf.cost(by=None).loc["costed"]
    assert (12, 3, 3) == tuple(by_step.loc["ask", ["tokens_in", "tokens_out", "calls"]])
    assert np.isnan(by_step.loc["ask", "cost_usd"])
    assert ["ask", "summarise", "tidy"] == list(by_step.index.astype(str))  # still in run order


def test_cost_of_groups_mixed_across_is_unknown_only_where_unpriced(costed: Costed) -> None:
    """Per run: the run that called local-llama costs NaN; the two on priced-1 keep their exact
    sums. The same with a frame read without the extra column (calls then count attempts)."""
    frame, (first, second, third) = costed
    by_run = frame.wf.cost()
    assert [first, second, third] == sorted(by_run.index.astype(str), key=costed.run_ids.index)
    assert np.isnan(by_run.loc[second, "cost_usd"])
    assert (8, 2, 3) == tuple(by_run.loc[second, ["tokens_in", "tokens_out", "calls"]])
    assert pytest.approx([2 * CALL_USD, 2 * CALL_USD], rel=1e-12) == list(by_run.loc[[first, third], "cost_usd"])
    lean = frame[["workflow", "step", "attempt", "status", "map_index", *COST_COLUMNS]].wf.cost()
    assert lean["cost_usd"].isna().tolist() == [run_id == second for run_id in lean.index]
    assert lean[["tokens_in", "tokens_out"]].equals(by_run[["tokens_in", "tokens_out"]])


TOOL_USD = 0.001  # the priced tool's cost_estimate in the mixed fixture


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """One run whose attempts each make two calls, through ChatClient to the simulated model and a
    priced tool: ``priced_first`` (priced-1, then local-llama, which no price table knows),
    ``unpriced_first`` (the other way round), ``tool_then_unpriced`` (the tool, then local-llama)
    and ``all_priced`` (priced-1, then the tool). The step log's parquet files, read by pandas."""
    folder = tmp_path_factory.mktemp("mixed") / "ws"
    client = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0, p99=0, seed=0, reply="yes"), model="priced-1", prices=PRICED
    )
    tools = wf.llm.ToolRegistry()

    @tools.tool(category="database", cost_estimate=TOOL_USD)
    async def lookup(query: str) -> str:
        return "row"

    flow = wf.Workflow("mixed", tools=tools)

    @flow.step
    async def priced_first(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c")
        await ctx.llm.complete("a b c", model="local-llama")

    @flow.step
    async def unpriced_first(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c", model="local-llama")
        await ctx.llm.complete("a b c")

    @flow.step(tools=["lookup"])
    async def tool_then_unpriced(state: Any, ctx: wf.StepContext) -> None:
        await ctx.tool("lookup", query="plan")
        await ctx.llm.complete("a b c", model="local-llama")

    @flow.step(tools=["lookup"])
    async def all_priced(state: Any, ctx: wf.StepContext) -> None:
        await ctx.llm.complete("a b c")
        await ctx.tool("lookup", query="plan")

    flow.chain("priced_first", "unpriced_first", "tool_then_unpriced", "all_priced")
    flow.run({}, workspace=folder, llm=client)
    wf.steps(folder)  # exports the run's rows to the parquet files
    return pd.read_parquet(steps_dir(folder))


def test_an_attempt_mixing_priced_and_unpriced_calls_records_no_cost(mixed: pd.DataFrame) -> None:
    """An attempt that called priced-1 (or a priced tool) and local-llama, in either order, records
    cost_usd null, not the priced part ($0.006, $0.001) that would read as its whole cost; its
    tokens are both calls', and extra names local-llama, though the row's model is the last called."""
    rows = mixed[mixed["attempt"] > 0].set_index("step")
    rows.index = rows.index.astype(str)
    extra = {step: json.loads(text) for step, text in rows["extra"].items()}
    for step in ("priced_first", "unpriced_first", "tool_then_unpriced"):
        assert np.isnan(rows.loc[step, "cost_usd"]), step
        assert ["local-llama"] == extra[step]["unpriced_models"], step
    assert {"priced_first": "local-llama", "unpriced_first": "priced-1", "tool_then_unpriced": "local-llama"} == {
        step: rows.loc[step, "model"] for step in ("priced_first", "unpriced_first", "tool_then_unpriced")
    }
    assert [8, 8, 4, 4] == rows["tokens_in"].tolist()
    assert [2, 2, 1, 1] == rows["tokens_out"].tolist()
    assert [TOOL_USD] == [call["cost_usd"] for call in extra["tool_then_unpriced"]["tool_calls"]]
    assert "unpriced_models" not in extra["all_priced"]
    assert pytest.approx(CALL_USD + TOOL_USD, rel=1e-12) == rows.loc["all_priced", "cost_usd"]


def test_cost_of_an_attempt_mixing_priced_and_unpriced_calls_is_unknown(mixed: pd.DataFrame) -> None:
    """df.wf.cost() gives NaN for each mixed attempt's step and its run; the step whose calls were
    all priced keeps its exact cost, and every group its tokens and calls. By model, each call is
    under its own model (the row's model is only the last one called): local-llama's cost is
    unknown, priced-1 keeps its exact $0.019 (three calls and the tool that all_priced called after
    one), each with its own tokens and calls."""
    by_step = mixed.wf.cost(by="step")
    by_step.index = by_step.index.astype(str)
    assert [True, True, True, False] == by_step["cost_usd"].isna().tolist()
    assert pytest.approx(CALL_USD + TOOL_USD, rel=1e-12) == by_step.loc["all_priced", "cost_usd"]
    assert [2, 2, 1, 1] == by_step["calls"].tolist()
    by_run = mixed.wf.cost()
    assert (24, 6, 6) == tuple(by_run.iloc[0][["tokens_in", "tokens_out", "calls"]])
    assert pd.isna(by_run["cost_usd"].iloc[0])
    by_model = mixed.wf.cost(by="model")
    by_model.index = by_model.index.astype(str)
    assert {"local-llama": (12, 3, 3), "priced-1": (12, 3, 3)} == {
        model: (row["tokens_in"], row["tokens_out"], row["calls"]) for model, row in by_model.iterrows()
    }
    assert pd.isna(by_model.loc["local-llama", "cost_usd"])
    assert pytest.approx(3 * CALL_USD + TOOL_USD, rel=1e-12) == by_model.loc["priced-1", "cost_usd"]


def test_cost_recorded_by_a_client_of_your_own_without_a_price_is_unknown(tmp_path: Path) -> None:
    """``ctx.record(model=..., tokens_in=..., tokens_out=...)`` with no ``cost_usd`` is a call whose
    price is unknown, as ChatClient records an unpriced one; with ``cost_usd=0.0`` it is free."""
    flow = wf.Workflow("own-client")

    @flow.step
    def free(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="on-prem", tokens_in=10, tokens_out=2, cost_usd=0.0)

    @flow.step
    def unknown(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="on-prem", tokens_in=10, tokens_out=2)

    flow.edge("free", "unknown")
    flow.run({}, workspace=tmp_path / "ws")
    wf.steps(tmp_path / "ws")  # exports the run's rows to the parquet files
    table = pd.read_parquet(steps_dir(tmp_path / "ws")).wf.cost(by="step")
    table.index = table.index.astype(str)
    assert 0.0 == table.loc["free", "cost_usd"]
    assert np.isnan(table.loc["unknown", "cost_usd"])
    assert {"free": 10, "unknown": 10} == table["tokens_in"].to_dict()


def test_a_priced_call_without_token_counts_keeps_its_cost_and_reads_its_tokens_unknown(tmp_path: Path) -> None:
    """``ctx.record(cost_usd=..., no_usage=True)`` (a gateway that sends a call's price but no token
    counts) keeps the cost, and its tokens read as unknown (<NA>, as a reply without usage does),
    not the 0 of a step that called no model: in ``df.wf.cost()`` by step, by run and by model,
    a model's share of an attempt that called two included."""
    flow = wf.Workflow("gateway")

    @flow.step
    def gateway(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="billed", cost_usd=0.002, no_usage=True)

    @flow.step
    def both(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="counted", tokens_in=7, tokens_out=3, cost_usd=0.001)
        ctx.record(model="billed", tokens_in=5, cost_usd=0.004, no_usage=True)  # no completion count

    @flow.step
    def counted(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="counted", tokens_in=10, tokens_out=2, cost_usd=0.003)

    flow.chain("gateway", "both", "counted")
    flow.run({}, workspace=tmp_path / "ws")
    wf.steps(tmp_path / "ws")  # exports the run's rows to the parquet files
    df = pd.read_parquet(steps_dir(tmp_path / "ws"))
    by_step = df.wf.cost(by="step")
    by_step.index = by_step.index.astype(str)
    assert {"gateway": 0.002, "both": 0.005, "counted": 0.003} == pytest.approx(by_step["cost_usd"].to_dict())
    assert [True, False, False] == by_step["tokens_in"].isna().tolist()  # both's prompt tokens were counted
    assert [True, True, False] == by_step["tokens_out"].isna().tolist()
    assert (12, 10) == (by_step.loc["both", "tokens_in"], by_step.loc["counted", "tokens_in"])
    by_run = df.wf.cost()
    assert 0.010 == pytest.approx(by_run["cost_usd"].iloc[0])
    assert pd.isna(by_run["tokens_in"].iloc[0])
    assert pd.isna(by_run["tokens_out"].iloc[0])
    by_model = df.wf.cost(by="model")
    by_model.index = by_model.index.astype(str)
    assert {"billed": 0.006, "counted": 0.004} == pytest.approx(by_model["cost_usd"].to_dict())
    assert pd.isna(by_model.loc["billed", "tokens_in"])
    assert pd.isna(by_model.loc["billed", "tokens_out"])
    assert (17, 5) == (by_model.loc["counted", "tokens_in"], by_model.loc["counted", "tokens_out"])


def test_runs_and_run_latency(known: Known) -> None:
    """runs() has one row per run with its attempts and outcomes; run_latency() its percentiles."""
    frame, run_ids = known.frame, known.run_ids
    runs = frame.wf.runs()
    assert RUNS == len(runs)
    assert set(run_ids.values()) == set(runs.index)
    for i, run_id in run_ids.items():
        row = runs.loc[run_id]
        retries = (i % 3 == 0) + (i % 5 == 0)
        failed = int(i % 10 == 7)
        assert (3 + retries, 3 - failed, failed, retries, "known") == (
            row["attempts"],
            row["steps_ok"],
            row["failed"],
            row["retries"],
            row["workflow"],
        )
        assert 0.042 <= row["duration_s"] < 5
        assert pytest.approx((row["end"] - row["start"]).total_seconds()) == row["duration_s"]
    assert runs["start"].is_monotonic_increasing

    latency = frame.wf.run_latency().loc["known"]
    assert ["p50", "p90", "p95", "p99", "max", "count"] == list(latency.index)
    assert RUNS == latency["count"]
    assert runs["duration_s"].max() == latency["max"]
    assert pytest.approx(np.quantile(runs["duration_s"], 0.99)) == latency["p99"]
    assert latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_run_latency_is_per_workflow(workspace: Path) -> None:
    """`wf.steps().wf.run_latency()` of a workspace holding two workflows pooled their runs into one
    set of percentiles, which described neither (a quick lookup's P50 under a slow report's P99),
    though every other table of the log is keyed by workflow. It now has a row per workflow."""
    quick, slow = wf.Workflow("quick"), wf.Workflow("slow")
    quick.step(lambda state: {"done": True}, name="lookup")

    @slow.step
    async def write(state: Any) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"done": True}

    for _ in range(3):
        quick.run({})
        slow.run({})
    frame = wf.steps()

    latency = frame.wf.run_latency()
    assert ["quick", "slow"] == list(latency.index)
    assert ["p50", "p90", "p95", "p99", "max", "count"] == list(latency.columns)
    runs = frame.wf.runs()
    for name in ("quick", "slow"):
        durations = runs.loc[runs["workflow"] == name, "duration_s"]
        assert 3 == latency.loc[name, "count"]
        assert pytest.approx(durations.quantile(0.5)) == latency.loc[name, "p50"]
        assert durations.max() == latency.loc[name, "max"]


def test_runs_counts_a_retried_timeout_as_a_retry(workspace: Path) -> None:
    """A run whose step timed out once and then succeeded has one retry and no failure."""
    flow = wf.Workflow("slow-once")

    @flow.step(timeout=0.05, retry=RETRY)
    async def slow(state: Any, ctx: wf.StepContext) -> None:
        await asyncio.sleep(1 if ctx.attempt == 1 else 0)

    run = flow.run({})
    frame = wf.steps()
    assert ["timeout", "ok"] == list(frame["status"].astype(str))
    assert 1 == frame.wf.retries(by="run_id").loc[run.run_id, "retries"]
    assert (1, 0) == tuple(frame.wf.runs().loc[run.run_id, ["retries", "failed"]])


def outcome_runs() -> None:
    """Runs that end every way the step log can tell: saved by a step's fallback or a map's,
    failed by a step or a map item with no fallback, a visit bound met with the end as its
    fallback or with none, cut by the run deadline, rejected at a gate
    with and without an on_reject step, approved, and parked at a gate."""

    def failing(state: Any) -> dict[str, Any]:
        raise wf.PermanentError("model refused")

    saved = wf.Workflow("saved")
    saved.step(failing, name="llm", fallback="apologise")
    saved.step(lambda s: {"out": "sorry"}, name="apologise")
    saved.run({})
    failed = wf.Workflow("failed")
    failed.step(failing, name="llm")
    failed.run({}, raise_on_error=False)

    slow = wf.Workflow("deadline")

    @slow.step
    async def wait(state: Any) -> None:
        await asyncio.sleep(1)

    slow.run({}, timeout=0.05, raise_on_error=False)

    def inc(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x + 1

    mapped = wf.Workflow("map-saved", inputs=["xs"])
    mapped.map(inc, over="xs", into="ys", name="inc", fallback="rescue")
    mapped.step(lambda s: {"r": 1}, name="rescue")
    mapped.run({"xs": [1, 2, 3]})
    bare = wf.Workflow("map-failed", inputs=["xs"])
    bare.map(inc, over="xs", into="ys", name="inc")
    bare.run({"xs": [1, 2, 3]}, raise_on_error=False)

    resumed = wf.Workflow("resumed")  # failed, then resumed to success: its outcome is the resume's
    tries = iter([wf.PermanentError("down"), None])

    def flaky(state: Any) -> dict[str, Any]:
        error = next(tries)
        if error is not None:
            raise error
        return {"ok": True}

    resumed.step(flaky, name="call")
    resumed.resume(resumed.run({}, raise_on_error=False).run_id)

    for name, fallback in (("loop-ended", wf.END), ("loop-failed", None)):  # a visit bound met
        loop = wf.Workflow(name)
        loop.step(lambda s: {"n": s.get("n", 0) + 1}, name="again", max_visits=2, fallback=fallback)
        loop.route("again", wf.when("n", "lt", 100) >> wf.go("again"), default=wf.go(wf.END))
        loop.run({}, raise_on_error=False)

    for on_reject, policy in ((None, "reject"), ("revise", "reject"), (None, "approve"), (None, None)):
        gated = wf.Workflow(f"gate-{on_reject}-{policy}")
        gated.step(lambda s: {"paid": True}, name="pay", approval=wf.Approval("check", on_reject=on_reject))
        if on_reject:
            gated.step(lambda s: {"revised": True}, name=on_reject)
        gated.run({}, policy=policy, raise_on_error=False)


def test_runs_tell_a_run_a_fallback_saved_from_one_that_failed(workspace: Path) -> None:
    """runs() says whether each run failed by how it ended: a step failure a fallback took over
    (fell_back) is not a failed run, a failure with no fallback, a run deadline or a rejection
    with nowhere to go is; StepLog.runs() says the same. The journal's run statuses agree."""
    outcome_runs()
    frame = wf.steps()
    runs = frame.wf.runs()
    status = {row["run_id"]: row["status"] for row in wf.Workspace().runs(limit=100)}
    assert len(status) == len(runs)
    by_workflow = {str(w): row for w, row in runs.set_index(runs["workflow"].astype(str)).iterrows()}
    expected = {
        "saved": (1, 1, False, False, "succeeded"),
        "failed": (1, 0, True, False, "failed"),
        "deadline": (1, 0, True, True, "timed_out"),
        "map-saved": (1, 1, False, False, "succeeded"),  # the map step, not also its item
        "map-failed": (1, 0, True, False, "failed"),
        "resumed": (1, 0, False, False, "succeeded"),  # the failure is counted, the run did not fail
        "loop-ended": (1, 1, False, False, "succeeded"),  # its bound's fallback is the end
        "loop-failed": (1, 0, True, False, "failed"),
        "gate-None-reject": (0, 0, True, False, "failed"),
        "gate-revise-reject": (0, 0, False, False, "succeeded"),
        "gate-None-approve": (0, 0, False, False, "succeeded"),
        "gate-None-None": (0, 0, False, False, "waiting_approval"),
    }
    outcome = ["fell_back", "run_failed", "failed_on_timeout"]
    actual = {
        name: (
            *(int(row[c]) if c in ("failed", "fell_back") else bool(row[c]) for c in ["failed", *outcome]),
            status[str(run_id)],
        )
        for (name, row), run_id in zip(by_workflow.items(), runs.index, strict=True)
    }
    assert expected == actual
    assert outcome == list(runs.columns[-3:])
    on_disk = wf.StepLog().runs()
    pd.testing.assert_frame_equal(
        runs[["failed", *outcome]].sort_index(), on_disk[["failed", *outcome]].sort_index(), check_index_type=False
    )


def test_accessor_refuses_a_frame_that_is_not_a_step_log() -> None:
    """df.wf on another frame raises AttributeError naming the missing columns."""
    register_accessor()
    with pytest.raises(AttributeError, match=r"missing columns: step, attempt, status$"):
        _ = pd.DataFrame({"a": [1]}).wf
    with pytest.raises(AttributeError, match=r"missing columns: status$"):
        _ = pd.DataFrame(columns=["run_id", "step", "attempt"]).wf


def test_a_question_names_the_columns_it_lacks(known: Known) -> None:
    """A frame read with a few columns answers what they allow; other questions name what is missing."""
    frame = wf.steps(
        known.folder,
        columns=["workflow", "step", "attempt", "status", "latency_s", "map_index", "started_at"],
        sort=False,
    )
    assert frame.wf.latency().equals(known.frame.wf.latency())
    with pytest.raises(ValueError, match=r"df.wf.runs\(\) needs the column\(s\) run_id, ended_at"):
        frame.wf.runs()


def test_steps_of_an_empty_workspace_is_an_empty_step_log(workspace: Path) -> None:
    """An empty workspace gives an empty frame with the schema's columns, and summaries of nothing."""
    wf.Workspace(create=True)
    frame = wf.steps()
    assert 0 == len(frame)
    assert set(schema().names) | {"workflow"} <= set(frame.columns)
    assert 0 == len(frame.wf.runs())
    assert 0 == len(frame.wf.retries())
    assert 0 == len(frame.wf.cost())


def test_empty_and_non_empty_logs_have_the_same_columns(workspace: Path) -> None:
    """The empty frame has the very columns, in order, of a frame with rows."""
    wf.Workspace(create=True)
    empty = wf.steps()
    flow = wf.Workflow("one-step")
    flow.step(lambda s: None, name="only")
    flow.run({})
    assert list(dataset_schema().names) == list(wf.steps().columns)
    assert list(dataset_schema().names) == list(empty.columns)


def test_steps_of_a_missing_path_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    """wf.steps() of a path that does not exist raises WorkspaceNotFoundError naming it, creating nothing."""
    typo = tmp_path / "typo"
    with pytest.raises(wf.WorkspaceNotFoundError, match=r"no workspace or step log at .*typo"):
        wf.steps(typo)
    assert not typo.exists()


def test_latency_of_no_attempts_is_an_empty_table(workspace: Path) -> None:
    """latency() of an empty log is an empty table with the usual columns."""
    wf.Workspace(create=True)
    table = wf.steps().wf.latency()
    assert ["p50", "p90", "p95", "p99", "max", "mean", "count"] == list(table.columns)
    assert 0 == len(table)


def test_an_attempt_a_crash_cut_off_is_no_latency(known: Known) -> None:
    """A ProcessCrashedError row (its latency unknown: NaN, and no ended_at) changes no latency
    figure and no advice."""
    frame = known.frame
    crashed = frame[frame["step"] == "answer"].iloc[[0]].copy()
    crashed["status"], crashed["error_kind"], crashed["error_type"] = "retry", "unknown", "ProcessCrashedError"
    crashed["latency_s"] = float("nan")
    crashed["ended_at"] = pd.NaT
    both = pd.concat([frame, crashed], ignore_index=True)
    assert len(frame) + 1 == len(both)
    pd.testing.assert_frame_equal(frame.wf.latency(), both.wf.latency())
    pd.testing.assert_frame_equal(frame.wf.advise_timeouts(), both.wf.advise_timeouts())


def test_tables_equal_those_of_the_attempts_copied_out_first(known: Known) -> None:
    """The accessor masks rows instead of copying the frame: every table equals the one computed
    on a copy holding only the attempts (the rows it always summarised), latency to pandas' own
    groupby quantiles."""
    frame = known.frame
    attempts = frame[frame["attempt"] > 0].reset_index(drop=True)
    ok = attempts[attempts["status"] == "ok"]
    expected_latency = in_run_order(_pandas_quantiles(ok, ["workflow", "step"], "latency_s", QUANTILES), frame)
    latency = frame.wf.latency()
    assert list(expected_latency.index) == list(latency.index)
    # pandas interpolates between order statistics by another formula than np.quantile (whose
    # figures the accessor gives to the bit), so the two may differ in the last bit.
    figures = ["p50", "p90", "p95", "p99", "max", "mean"]
    np.testing.assert_allclose(
        expected_latency[figures].to_numpy(dtype=float), latency[figures].to_numpy(dtype=float), rtol=1e-12
    )
    assert expected_latency["count"].equals(latency["count"])
    assert attempts.wf.failures().equals(frame.wf.failures())
    assert attempts.wf.retries().equals(frame.wf.retries())
    assert attempts.wf.retries(by="run_id").equals(frame.wf.retries(by="run_id"))
    assert attempts.wf.errors().equals(frame.wf.errors())
    assert attempts.wf.cost(by=None).equals(frame.wf.cost(by=None))
    assert ok.wf.latency(status=None).equals(frame.wf.latency())


def map_runs(folder: Path) -> None:
    """Two runs of a map over three documents: in the first, item 1 fails once (transiently) and
    its retry succeeds; in the second, item 2 fails for good, and so does the map step."""
    flow = wf.Workflow("mapped", inputs=["docs", "fail"])

    @flow.map(over="docs", into="sizes", retry=RETRY, max_concurrency=1)
    async def size(doc: str, ctx: wf.StepContext) -> int:
        await asyncio.sleep(0.002)
        if ctx.map_index == 1 and ctx.attempt == 1:
            raise ConnectionError("connection reset")
        if ctx.map_index == 2 and ctx.state["fail"]:
            raise ValueError("no size for ccc")
        return len(doc)

    @flow.step
    def total(state: Any) -> dict[str, Any]:
        return {"total": sum(state["sizes"])}

    flow.edge("size", "total")
    for fail in (False, True):
        flow.run({"docs": ["a", "bb", "ccc"], "fail": fail}, workspace=folder, raise_on_error=False)


def test_a_map_steps_attempts_are_its_items_attempts(tmp_path: Path) -> None:
    """A map step's attempts are its items' attempts; its own row (no map_index: how the map as a
    whole ended, its latency the whole map's) is no attempt of anything: not counted, not timed,
    and its MapItemError is not a second failure beside the item's."""
    map_runs(tmp_path / "ws")
    frame = wf.steps(tmp_path / "ws")
    items = frame[(frame["step"] == "size") & frame["map_index"].notna()]
    assert 2 * 4 == len(items)  # item 1 twice in each run, items 0 and 2 once
    latency = frame.wf.latency().loc[("mapped", "size")]
    assert 5 == latency["count"]  # 3 items in the first run, items 0 and 1 in the second
    assert items.loc[items["status"] == "ok", "latency_s"].max() == latency["max"]
    failures = frame.wf.failures().loc[("mapped", "size")]
    assert (8, 3, 2, 1) == (failures["attempts"], failures["failed"], failures["transient"], failures["permanent"])
    errors = frame.wf.errors()
    assert "MapItemError" not in set(errors.index.get_level_values("error_type"))
    assert 2 == len(errors)
    assert [4, 5] == sorted(frame.wf.runs()["attempts"].tolist())  # 4 item attempts, and total in the first


def empty_map_runs(folder: Path) -> list[wf.Run]:
    """Two durable runs of a map over an empty list, then a step summing its (no) results."""
    flow = wf.Workflow("empty-map", inputs=["docs"])

    @flow.map(over="docs", into="sizes")
    async def size(doc: str, ctx: wf.StepContext) -> int:
        raise AssertionError("a map over no items runs no item")

    @flow.step
    def total(state: Any) -> dict[str, Any]:
        return {"total": sum(state["sizes"])}

    flow.edge("size", "total")
    return [flow.run({"docs": []}, workspace=folder) for _ in range(2)]


def test_a_map_over_an_empty_list_made_no_attempt(tmp_path: Path) -> None:
    """A map over no items is a visit that is done with no attempt: it has no latency, failures,
    retries or errors in the step log's questions (in pandas and on disk alike), each run's
    attempts are those of its other step, and the map still counts as a step done."""
    runs = empty_map_runs(tmp_path / "ws")
    assert [["size", "total"]] * 2 == [run.path() for run in runs]
    assert [[]] * 2 == [run.state["sizes"] for run in runs]
    frame = wf.steps(tmp_path / "ws")
    own = frame[frame["step"] == "size"]
    assert ([0, 0], ["ok", "ok"], ['{"items": 0}'] * 2) == (
        own["attempt"].tolist(),
        own["status"].tolist(),
        own["extra"].tolist(),
    )
    on_disk = wf.StepLog(tmp_path / "ws")
    for name, table in [
        ("latency", frame.wf.latency()),
        ("failures", frame.wf.failures()),
        ("retries", frame.wf.retries()),
        ("advise_timeouts", frame.wf.advise_timeouts(min_samples=1)),
        ("StepLog.latency", on_disk.latency()),
        ("StepLog.failures", on_disk.failures()),
        ("StepLog.retries", on_disk.retries()),
        ("StepLog.advise_timeouts", on_disk.advise_timeouts(min_samples=1)),
    ]:
        assert [("empty-map", "total")] == table.index.tolist(), name
    assert ["total", "total"] == frame.wf.attempts["step"].tolist()
    assert 0 == len(frame.wf.errors()) == len(on_disk.errors())
    assert ["total"] == frame.wf.predict_timeouts({"total": 1.0}, runs=100).index.tolist()
    for table in (frame.wf.runs(), on_disk.runs()):
        assert [(1, 2, 0, 0, False)] * 2 == [
            (row.attempts, row.steps_ok, row.failed, row.retries, row.run_failed) for row in table.itertuples()
        ]


def test_a_question_counting_attempts_needs_map_index(known: Known) -> None:
    """Which rows are a map step's attempts takes map_index: a frame read without it says so."""
    frame = wf.steps(known.folder, columns=["workflow", "step", "attempt", "status", "latency_s"], sort=False)
    with pytest.raises(ValueError, match=r"df.wf.latency\(\) needs the column\(s\) map_index"):
        frame.wf.latency()


def retried_map_run(folder: Path) -> None:
    """One run of a map over three documents: items 0 and 1 each fail twice (transiently) before
    their third attempt succeeds; item 2 succeeds at once."""
    flow = wf.Workflow("remapped", inputs=["docs"])

    @flow.map(over="docs", into="sizes", retry=RETRY, max_concurrency=2)
    async def size(doc: str, ctx: wf.StepContext) -> int:
        if ctx.map_index in (0, 1) and ctx.attempt <= 2:
            raise ConnectionError("connection reset")
        return len(doc)

    flow.run({"docs": ["a", "bb", "ccc"]}, workspace=folder)


def test_retries_of_a_map_step_are_its_items_retries(tmp_path: Path) -> None:
    """Each map item is retried on its own: two items retried twice are four retries, the most
    any item took is two, and the mean is per item (4 / 3), not per map."""
    retried_map_run(tmp_path / "ws")
    table = wf.steps(tmp_path / "ws").wf.retries()
    assert (4, 4 / 3, 2) == tuple(table.loc[("remapped", "size")])
    assert 4 == wf.steps(tmp_path / "ws").wf.runs()["retries"].sum()  # the runs table agrees


def test_runs_count_a_map_step_once_however_many_items(tmp_path: Path) -> None:
    """In the runs table a map step is one step, whatever its items did: the run whose item 2
    failed has one step that gave up (the map, with its MapItemError; not also the item), and
    the run whose three items succeeded has two steps done (the map and total), not five."""
    map_runs(tmp_path / "ws")
    runs = wf.steps(tmp_path / "ws").wf.runs().sort_values("attempts")
    assert [(4, 0, 1, 0, True), (5, 2, 0, 0, False)] == [
        (row.attempts, row.steps_ok, row.failed, row.fell_back, row.run_failed) for row in runs.itertuples()
    ]


def timed_out_map_run(folder: Path) -> None:
    """One run of a map over three documents whose item 1 outlasts its 50 ms timeout: the map step
    fails (its own row a MapItemError), and so does the run."""
    flow = wf.Workflow("slow-item", inputs=["docs"])

    @flow.map(over="docs", into="sizes", max_concurrency=1, timeout=0.05)
    async def size(doc: str, ctx: wf.StepContext) -> int:
        if ctx.map_index == 1:
            await asyncio.sleep(5)
        return len(doc)

    flow.run({"docs": ["a", "bb", "ccc"]}, workspace=folder, raise_on_error=False)


def test_a_run_whose_map_item_timed_out_failed_on_a_timeout(tmp_path: Path) -> None:
    """A map step that failed because an item ran out of time ran out of time: how long the run
    would have taken is unknown, as when a step of its own times out (its own row says only
    MapItemError, failed)."""
    timed_out_map_run(tmp_path / "ws")
    run = wf.steps(tmp_path / "ws").wf.runs().iloc[0]
    assert (1, True, True) == (run["failed"], run["run_failed"], run["failed_on_timeout"])


def test_steps_are_listed_in_the_order_a_run_meets_them(known: Known, tmp_path: Path) -> None:
    """latency(), failures(), retries(), cost(by=None), plot_latency()'s panels, plot_failures()'s
    bars and advise_timeouts() list each workflow's steps by when they first ran (fetch, parse,
    answer), not alphabetically (answer, fetch, parse), in the accessor and in StepLog alike;
    workflows stay in their sorted order, and the index is otherwise the same."""
    essay = wf.Workflow("essay")
    for name in ("draft", "critique", "revise"):
        essay.step(lambda s: {}, name=name)
    essay.chain("draft", "critique", "revise")
    for i in range(3):
        essay.run({"i": i}, workspace=tmp_path, seed=i)
    known_flow().run({"i": 1}, workspace=tmp_path, seed=1)
    frame = wf.steps(tmp_path)
    met = [("essay", "draft"), ("essay", "critique"), ("essay", "revise")]
    met += [("known", "fetch"), ("known", "parse"), ("known", "answer")]
    assert met == list(frame.wf.latency().index)
    assert ["workflow", "step"] == list(frame.wf.latency().index.names)
    assert met == list(frame.wf.advise_timeouts().index)
    assert met == list(frame.wf.plot_latency().axes)
    for question in ("failures", "retries"):
        assert met == list(getattr(frame.wf, question)().index), question
        assert met == list(getattr(wf.StepLog(tmp_path), question)().index), question
    assert met == list(frame.wf.cost(by=None).index)
    labels = [t.get_text() for t in frame.wf.plot_failures().get_yticklabels()]
    assert [f"{w} · {s}" for w, s in met] == labels
    assert ["fetch", "parse", "answer"] == list(known.frame.wf.latency().loc["known"].index)
    assert ["fetch", "parse", "answer"] == list(known.frame.wf.failures().loc["known"].index)
