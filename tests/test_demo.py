"""The demo's summary is computed from real runs."""

from __future__ import annotations

import io
from pathlib import Path

import wfkit as wf
from wfkit.cli._demo import _quantile, run_demo


def test_quantile_of_one_value_and_of_many() -> None:
    """Quantiles handle a single sample and interpolate otherwise."""
    assert _quantile([5.0], 0.99) == 5.0
    assert _quantile([float(i) for i in range(1, 101)], 0.5) == 50.5


def test_demo_reports_retries_from_flaky_searches() -> None:
    """With flaky searches the summary shows retries, and every run still succeeds."""
    out = io.StringIO()
    assert run_demo(runs=40, seed=7, out=out) == 0
    lines = out.getvalue().splitlines()
    rows = {
        line.split()[0]: line.split() for line in lines if line.startswith(("code_search", "web_search", "data_query"))
    }
    assert sum(int(r[2]) for r in rows.values()) > 0, out.getvalue()


def test_demo_latency_is_of_successful_attempts_as_the_step_log_gives_it(workspace: Path) -> None:
    """The demo's p50 and p99 took the searches' failed attempts (a refused call of 0.02 ms) as fast
    calls, so code_search's p50 read 1.93 ms where its calls' was 4.40 ms; the README's latency
    tables use successful attempts. The demo's figures are now those of `wf.steps().wf.latency()`."""
    out = io.StringIO()
    assert run_demo(runs=40, seed=7, out=out) == 0
    printed = {
        line.split()[0]: (float(line.split()[4]), float(line.split()[5]))
        for line in out.getvalue().splitlines()
        if line.startswith(("classify", "code_search", "data_query", "web_search"))
    }
    table = wf.steps(workspace).wf.latency().loc["query-router"]
    assert {
        step: (round(row.p50 * 1000, 2), round(row.p99 * 1000, 2)) for step, row in table.iterrows() if step in printed
    } == printed


def test_demo_says_where_its_runs_are_and_how_to_look_at_them(workspace: Path) -> None:
    """The demo stored its runs in the workspace (./.wfkit unasked) without a word: a newcomer did
    not learn that they were there, nor which commands read them."""
    out = io.StringIO()
    assert run_demo(runs=3, seed=7, out=out) == 0
    last = out.getvalue().splitlines()[-1]
    assert (
        f"3 runs stored in {workspace}: `wfkit runs` lists them, `wfkit show RUN_ID` shows one's attempts, "
        "wf.steps() reads their step log"
    ) == last
    assert 3 == len(wf.Workspace(workspace).runs())


def test_a_demo_run_can_be_forked_and_resumed_from_the_cli(workspace: Path) -> None:
    """`wfkit fork <a demo run> --at classify` said the run "was started from a notebook or script"
    (it was started by `wfkit demo`, which recorded no workflow), and `--workflow
    wfkit.examples:query_router` built a router without the demo's flaky searches. The demo's runs
    now record the function that builds their router, which the CLI calls again."""
    from wfkit.cli._cli import main

    assert run_demo(runs=2, seed=7, out=io.StringIO()) == 0
    store = wf.Workspace().store
    made = dict(store.read("SELECT run_id, workflow_ref FROM runs"))
    assert {"wfkit.cli._demo:demo_router"} == set(made.values())
    assert 0 == main(["fork", next(iter(made)), "--at", "classify", "--workspace", str(workspace)])
    after = dict(store.read("SELECT run_id, status FROM runs"))
    assert ["succeeded"] == [status for run_id, status in after.items() if run_id not in made]
