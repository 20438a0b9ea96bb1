"""Tests for wfkit.replay._signals: every deterministic signal of a run read back from its workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

import wfkit as wf
from wfkit.replay._errors import ReplayError
from wfkit.replay._signals import SIGNALS, Settings, settings_of, source_digest, summarise_workspace


def _flow() -> tuple[wf.Workflow, Any]:
    tools = wf.llm.ToolRegistry()

    @tools.tool(cost_estimate=0.25)
    async def lookup_table(name: str) -> dict[str, int]:
        return {"rows": 3}

    flow = wf.Workflow("signals", tools=tools)
    llm = wf.llm.ChatClient(model="sim-a", transport=wf.llm.SimulatedModel(p50=0, p99=0, seed=1, reply="yes"))

    @flow.step
    async def ask(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
        reply = await ctx.llm.complete("Is it ready?")
        ctx.record(rule="r1")
        return {"answer": reply.text}

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.002, jitter=0))
    async def fetch(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise wf.TransientError(f"busy (run {ctx.run_id})")
        table = await ctx.tool("lookup_table", name="t")
        return {"rows": table["rows"], "key": ctx.idempotency_key}

    @flow.step(approval=wf.Approval("Check it", payload=["rows"]))
    def publish(state: dict[str, Any]) -> dict[str, Any]:
        return {"published": True}

    flow.route("ask", wf.when("answer", "eq", "yes") >> wf.go("fetch", tools=["lookup_table"]), default=wf.go(wf.END))
    flow.edge("fetch", "publish")
    return flow, llm


def test_summary_holds_every_signal_per_step_and_visit(tmp_path: Path) -> None:
    """Route, tools bound and called, attempts with errors and retry delay, the decision with its decider
    and comment, the model and tokens, the extra recorded, the writes, inputs and final state."""
    flow, llm = _flow()
    run = flow.run({"n": 1}, workspace=tmp_path / "ws", llm=llm, policy="approve", seed=0)
    assert "succeeded" == run.status
    summary = summarise_workspace(tmp_path / "ws")
    (only,) = summary["runs"]
    assert ("signals", "succeeded", None, {"n": 1}) == (only["workflow"], only["status"], only["error"], only["inputs"])
    assert ["ask", "fetch", "publish"] == only["path"]
    ask, fetch, publish = only["steps"]["ask#1"], only["steps"]["fetch#1"], only["steps"]["publish#1"]
    assert "fetch" == ask["route"]
    assert {"answer": "yes"} == ask["writes"]
    (asked,) = ask["attempts"]
    # sim-a is in no price table: its call's cost is unknown (no cost signal), and extra says which model.
    assert ("ok", "sim-a", 1, {"rule": "r1", "unpriced_models": ["sim-a"]}) == (
        asked["attempt_status"],
        asked["model"],
        asked["llm_calls"],
        asked["extra"],
    )
    assert asked["tokens_in"] > 0
    assert 1 == asked["tokens_out"]
    assert "cost" not in asked
    assert ["lookup_table"] == fetch["tools_bound"]
    first, second = fetch["attempts"]
    assert ("retry", "transient", "TransientError", "busy (run <run_id>)", 0.002) == (
        first["attempt_status"],
        first["error_kind"],
        first["error_type"],
        first["error_message"],
        first["retry_delay"],
    )
    assert [{"tool": "lookup_table", "ok": True, "cost_usd": 0.25}] == second["tools_called"]
    assert 0.25 == second["cost"]
    assert "<run_id>" in fetch["writes"]["key"]
    assert ("Check it", "approved", "policy:approve_all") == (publish["gate"], publish["decision"], publish["decider"])
    assert "decided by the approve_all policy" == publish["decision_comment"]
    assert {"n": 1, "answer": "yes", "rows": 3, "key": fetch["writes"]["key"], "published": True} == only["state"]
    assert {"signals": {"ask", "fetch", "publish"}} == {w: set(steps) for w, steps in summary["latency"].items()}
    assert 2 == summary["latency"]["signals"]["fetch"]["n"]  # both attempts
    assert run.run_id not in json.dumps(summary)


def test_an_attempt_calling_two_models_keeps_their_shares_but_not_their_times(tmp_path: Path) -> None:
    """An attempt that called two models has each one's calls, tokens and cost in its extra signal,
    which repeats under a seed, and not the shares' model time and first token (wall clock, which
    would make every replay a regression); two seeded workspaces summarise alike."""
    summaries = []
    for name in ("a", "b"):
        flow = wf.Workflow("two_models")
        llm = wf.llm.ChatClient(
            model="sim-a",
            transport=wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=1, reply="yes"),
            prices={"sim-a": (0.001, 0.002), "sim-b": (0.01, 0.02)},
        )

        @flow.step
        async def ask(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
            await ctx.llm.complete("Is it ready?")
            async with ctx.llm.stream("Is it ready?", model="sim-b") as stream:
                text = "".join([t async for t in stream])
            return {"answer": text.strip()}

        flow.run({}, workspace=tmp_path / name, llm=llm, seed=0)
        summaries.append(summarise_workspace(tmp_path / name))
    (attempt,) = summaries[0]["runs"][0]["steps"]["ask#1"]["attempts"]
    shares = attempt["extra"]["by_model"]
    assert ["sim-a", "sim-b"] == list(shares)
    assert {"calls": 1, "tokens_out": 1} == {k: shares["sim-b"][k] for k in ("calls", "tokens_out")}
    assert {"calls", "tokens_in", "tokens_out", "cost_usd"} == set(shares["sim-a"]) == set(shares["sim-b"])
    assert pytest.approx(attempt["cost"], rel=1e-12) == shares["sim-a"]["cost_usd"] + shares["sim-b"]["cost_usd"]
    for summary in summaries:
        summary.pop("latency")
    assert summaries[0] == summaries[1]


def test_a_test_mode_retry_keeps_its_planned_delay_as_the_retry_delay_signal(tmp_path: Path) -> None:
    """Under test_mode a retry waits 0 s (its retry_delay_s), and the retry_delay signal is still the
    delay the policy chose, with no extra: a baseline reads the same in and out of test mode."""
    from wfkit.testing import test_mode

    flow, llm = _flow()
    with test_mode():
        flow.run({"n": 1}, workspace=tmp_path / "ws", llm=llm, policy="approve", seed=0)
    assert [0.0, None] == [e.retry_delay_s for e in wf.Workspace(tmp_path / "ws").events() if e.step == "fetch"]
    first, _ = summarise_workspace(tmp_path / "ws")["runs"][0]["steps"]["fetch#1"]["attempts"]
    assert (0.002, None) == (first["retry_delay"], first.get("extra"))


def test_two_seeded_runs_summarise_identically(tmp_path: Path) -> None:
    """Under the same seeds, two workspaces give the same summary apart from latency."""
    summaries = []
    for name in ("a", "b"):
        flow, llm = _flow()
        flow.run({"n": 1}, workspace=tmp_path / name, llm=llm, policy="approve", seed=0)
        summaries.append({k: v for k, v in summarise_workspace(tmp_path / name).items() if k != "latency"})
    assert summaries[0] == summaries[1]


def test_an_empty_workspace_has_no_runs(tmp_path: Path) -> None:
    """A notebook that started no run gives an empty summary, not an error."""
    assert [] == summarise_workspace(tmp_path / "nothing")["runs"]


def _notebook(path: Path, meta: dict[str, Any], code: str = "x = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nb.metadata["wfkit"] = meta
    nbformat.write(nb, path)
    return path


def test_masks_are_read_by_name_from_the_notebook_metadata(tmp_path: Path) -> None:
    """SIGNAL, STEP:SIGNAL and state/writes/inputs fields are masks; ignore_fields masks state and writes."""
    settings = settings_of(
        _notebook(
            tmp_path / "m.ipynb", {"mask": ["retry_delay", "fetch:tools_called", "state.when"], "ignore_fields": ["t"]}
        )
    )
    assert settings.masks("retry_delay", "any")
    assert settings.masks("tools_called", "fetch")
    assert not settings.masks("tools_called", "other")
    assert settings.masks("state.when")
    assert not settings.masks("state.other")
    assert settings.masks("state.t")
    assert settings.masks("writes.t", "fetch")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"mask": ["retry_delays"]}, "unknown signal 'retry_delays' to mask"),
        ({"mask": ["route.x"]}, "unknown signal 'route.x'"),
        ({"mask": "retry_delay"}, "must be a list of signal names"),
        ({"mask": [3]}, "each mask is a signal name"),
        ({"masks": ["retry_delay"]}, "unknown setting\\(s\\) masks"),
        ({"latency_factor": "fast"}, "not a number"),
    ],
)
def test_a_misspelt_setting_is_refused_by_name(tmp_path: Path, meta: dict[str, Any], message: str) -> None:
    """A mask or setting that would silently compare less is an error naming it and the known names."""
    with pytest.raises(ReplayError, match=message):
        settings_of(_notebook(tmp_path / "bad.ipynb", meta))


def test_every_signal_name_is_unique_and_settings_round_trip() -> None:
    """Signal names are unique, and settings serialise with their masks."""
    assert len(SIGNALS) == len(set(SIGNALS))
    settings = Settings(mask=("model",), masked_steps={"s": frozenset({"route"})})
    assert ["model", "s:route"] == settings.to_json()["mask"]


def test_source_digest_follows_the_code_not_the_file_name(tmp_path: Path) -> None:
    """A renamed notebook keeps its digest; a changed one does not."""
    a = _notebook(tmp_path / "a.ipynb", {}, "x = 1")
    b = _notebook(tmp_path / "b.ipynb", {}, "x = 1")
    c = _notebook(tmp_path / "c.ipynb", {}, "x = 2")
    assert source_digest(a) == source_digest(b)
    assert source_digest(a) != source_digest(c)
