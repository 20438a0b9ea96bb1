"""`wfkit report` (HTML page and PNG plots) and `wfkit logs export|compact`, through the CLI."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import wfkit as wf
from wfkit.cli._cli import main
from wfkit.logs._steplog import steps_dir
from wfkit.store._workspace import DB_NAME

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TITLES = (
    "Run latency (s)",
    "Latency per step (s)",
    "Failures per step",
    "Retries per step",
    "Cost per step",
    "Proposed timeouts (P99 x 1.5)",
    "Runs",
)
PLOTS = ("latency.png", "failures.png", "timeline.png")
RETRY = wf.RetryPolicy(max_retries=1, base_delay=0.001, jitter=0)


def mixed_runs() -> None:
    """Five runs: fetch retried once in two, answer failing for good in one."""
    flow = wf.Workflow("mixed")

    @flow.step(retry=RETRY)
    def fetch(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(model="m", tokens_in=3, tokens_out=1, cost_usd=0.01)
        if ctx.attempt == 1 and state["i"] < 2:
            raise ConnectionError("reset")

    @flow.step
    def answer(state: Any) -> None:
        if state["i"] == 4:
            raise ValueError("bad input")

    flow.chain("fetch", "answer")
    for i in range(5):
        flow.run({"i": i}, raise_on_error=False)


def outage_runs() -> None:
    """Three runs of a step that always fails (transiently), retried once each."""
    flow = wf.Workflow("outage")

    @flow.step(retry=RETRY)
    def call(state: Any) -> None:
        raise ConnectionError("service down")

    for _ in range(3):
        flow.run({}, raise_on_error=False)


def assert_full_report(out: Path, printed: str, attempts: int, runs: int) -> None:
    page = out / "index.html"
    assert f"report written to {page}" == printed.strip()
    html = page.read_text()
    assert html.startswith("<!doctype html>")
    assert f"{attempts} attempts, {runs} runs" in html
    for title in TITLES:
        assert f"<h2>{title}</h2>" in html
    for name in PLOTS:
        assert f'<img src="{name}" alt="{name[:-4]}">' in html
        assert PNG_MAGIC == (out / name).read_bytes()[:8]
    assert "<table" in html


def test_report_writes_a_page_with_tables_and_pngs(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """`wfkit report --out DIR` writes index.html with every table and plot, and the PNGs."""
    outage_runs()
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    assert_full_report(out, capsys.readouterr().out, attempts=6, runs=3)


def test_report_of_runs_that_mostly_succeed(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """The report of ordinary runs (most attempts ok, some retried, one failed) is written."""
    mixed_runs()
    out = tmp_path / "report"
    assert 0 == main(["report", "--out", str(out)])
    assert_full_report(out, capsys.readouterr().out, attempts=12, runs=5)


def test_report_since_the_future_says_there_are_no_attempts(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """`--since` after every run gives a page that says no attempts were recorded, and no PNGs."""
    mixed_runs()
    out = tmp_path / "empty"
    assert 0 == main(["report", "--out", str(out), "--since", "2999-01-01"])
    html = (out / "index.html").read_text()
    assert "0 attempts, 0 runs, since 2999-01-01" in html
    assert "No step attempts recorded yet." in html
    assert "<img" not in html
    assert [] == sorted(p.name for p in out.glob("*.png"))
    assert f"report written to {out / 'index.html'}" == capsys.readouterr().out.strip()


def test_report_of_one_workflow(workspace: Path, tmp_path: Path, capsys: Any) -> None:
    """`--workflow` limits the report to one workflow's runs."""
    outage_runs()
    mixed_runs()
    out = tmp_path / "one"
    assert 0 == main(["report", "--out", str(out), "--workflow", "outage", "--workspace", str(workspace)])
    assert "6 attempts, 3 runs" in (out / "index.html").read_text()
    capsys.readouterr()


def test_logs_export_prints_the_rows_it_exported(workspace: Path, capsys: Any) -> None:
    """`wfkit logs export` exports what the journal holds beyond parquet and says how much."""
    mixed_runs()
    wf.steps()
    with contextlib.closing(sqlite3.connect(workspace / DB_NAME)) as conn, conn:
        conn.execute("UPDATE runs SET exported_seq = 0")  # as if a crash came before recording
    assert 0 == main(["logs", "export"])
    assert f"exported 12 rows to {steps_dir(workspace)}" == capsys.readouterr().out.strip()
    assert 0 == main(["logs", "export"])
    assert f"exported 0 rows to {steps_dir(workspace)}" == capsys.readouterr().out.strip()
    assert 12 == len(wf.steps())


def test_logs_compact_prints_what_it_merged(workspace: Path, capsys: Any) -> None:
    """`wfkit logs compact` exports first, merges the small files, and says how many."""
    mixed_runs()
    assert 0 == main(["logs", "compact"])
    printed = capsys.readouterr().out.strip()
    folders = {p.parent for p in steps_dir(workspace).rglob("*.parquet")}
    assert f"compacted 5 files into {len(folders)} (exported " in printed
    assert printed.endswith(" rows first)")
    assert all(p.name.startswith("compact-") for p in steps_dir(workspace).rglob("*.parquet"))
    assert 12 == len(wf.steps())
    assert 0 == main(["logs", "compact"])
    assert "compacted 0 files into 0 (exported 0 rows first)" == capsys.readouterr().out.strip()
