"""Text and HTML views of runs: readable in a terminal and in papermill outputs."""

from __future__ import annotations

import pytest

import wfkit as wf
from wfkit.notebook._display import run_html, run_text, statuses, step_rows


def _failing_run() -> wf.Run:
    flow = wf.Workflow("shown")
    flow.step(lambda s: {"x": 1}, name="first")

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0))
    def second(state: object) -> None:
        raise ConnectionError("backend <down>")

    flow.chain("first", "second")
    return flow.run({}, raise_on_error=False)


def test_step_rows_summarise_each_visit() -> None:
    """One row per step visit with its last status, attempts and error."""
    rows = step_rows(_failing_run().events)
    assert [("first", "ok", 1), ("second", "failed", 2)] == [(r["step"], r["status"], r["attempts"]) for r in rows]
    # The last attempt's error, and why it was the last (the step log's row says it too).
    expected = (
        "ConnectionError: backend <down>; not retried: the retry budget ran out after 2 attempts: max_retries=1 spent"
    )
    assert expected == rows[1]["error"]
    assert {"first": "ok", "second": "failed"} == statuses(_failing_run().events)


def test_text_and_html_forms_name_the_error() -> None:
    """Both forms show the run's status and its error; HTML escapes what it shows."""
    run = _failing_run()
    text = run_text(run)
    assert f"run {run.run_id} of 'shown': failed" in text
    assert "error: StepFailedError" in text
    page = run_html(run)
    assert "backend &lt;down&gt;" in page
    assert "<table" in page


def test_a_key_in_the_runs_error_is_redacted_in_both_forms() -> None:
    """An exception quoting a key-shaped string shows [REDACTED] in the text and HTML views, never the key."""
    key = "sk-" + "c3" * 12
    flow = wf.Workflow("leaky-error")

    @flow.step
    def call(state: object) -> None:
        raise PermissionError(f"refused key {key}")

    run = flow.run({}, raise_on_error=False)
    shown = run_text(run) + run_html(run)
    assert key not in shown
    assert "refused key [REDACTED]" in shown


@pytest.mark.parametrize(
    ("decision", "shown"),
    [("approve", "approved by carol: fine"), ("reject", "rejected by carol: fine")],
)
def test_a_gate_row_keeps_its_decision(decision: str, shown: str) -> None:
    """A gate step's row keeps the decision (what, by whom, the note) after the step ran, in the
    row and in both forms of the run."""
    flow = wf.Workflow("gated")
    flow.step(lambda s: {"done": True}, name="send", approval="a human reads it first")
    run = flow.run({})
    if decision == "approve":
        run.approve(by="carol", comment="fine").wait(10)
    else:
        run.reject(by="carol", comment="fine")
        with pytest.raises(wf.ApprovalRejectedError):
            run.wait(10)
    [row] = step_rows(run.events)
    assert shown == row["decision"]
    assert f"[{shown}]" in run_text(run)
    assert f'<td style="text-align:left">{shown}</td></tr>' in run_html(run)


def test_text_form_has_a_header_naming_each_column() -> None:
    """The plain-text view (a console's, papermill's) heads its step table with the names the HTML
    table and the quickstart use (step, visit, status, attempts, latency, route), each over its values."""
    flow = wf.Workflow("headed")
    flow.step(lambda s: {"n": s.get("n", 0) + 1}, name="count", max_visits=5)
    flow.route("count", wf.when("n", "lt", 2) >> wf.go("count"), default=wf.go(wf.END))
    lines = run_text(flow.run({}, workspace=False)).splitlines()
    header, first, second = lines[1:4]
    assert "step visit status attempts latency route / [error or decision]" == " ".join(header.split())
    assert ["count", "1", "ok", "1"] == first.split()[:4]
    assert ["count", "2", "ok", "1"] == second.split()[:4]
    assert "-> count" in first
    for column in ("visit", "attempts"):  # right-aligned numbers end under their header
        end = header.index(column) + len(column)
        assert (True, " ") == (first[end - 1].isdigit(), first[end]), (header, first)
    assert first.index("ok") == header.index("status")


def test_a_fast_steps_latency_reads_as_measured_not_as_zero() -> None:
    """A step of a few microseconds read `0.0 ms` in the run view (notebook 04's quote and refund),
    which says "not measured" more than "fast". Under 0.1 ms a latency now keeps three decimals of a
    millisecond (`0.004 ms`); the unit stays ms, so a replayed notebook's output does not change unit
    with the figure."""
    flow = wf.Workflow("quick")
    flow.step(lambda s: {"n": 1}, name="add")
    run = flow.run({}, workspace=False)
    (row,) = step_rows(run.events)
    assert 0 < row["latency_s"] < 1e-4
    shown = run_text(run).splitlines()[2].split()
    assert (f"{row['latency_s'] * 1000:.3f}", "ms") == (shown[4], shown[5]), shown
    assert "0.0 ms" not in run_text(run) + run_html(run)
