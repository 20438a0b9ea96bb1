"""Tests for wfkit.replay._console: a line per notebook as it finishes, and a progress bar on a terminal."""

from __future__ import annotations

import html
import io
import xml.etree.ElementTree as ET
from pathlib import Path

from wfkit.replay._compare import Difference
from wfkit.replay._console import ConsoleProgress
from wfkit.replay._report import write_html, write_junit
from wfkit.replay._result import NotebookReport, totals


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _rows() -> list[NotebookReport]:
    return [
        NotebookReport("nb/a.ipynb", "ok", 1.25, 1),
        NotebookReport(
            "nb/b.ipynb", "regression", 2.0, 3, diffs=[Difference("route", "x", "y", run=1, workflow="w", step="s#1")]
        ),
        NotebookReport("nb/c.ipynb", "failed", 0.5, 0, error={"cell": 2, "exception": "KeyError", "message": "'k'"}),
    ]


def test_each_line_is_printed_as_the_notebook_finishes_without_a_bar_off_a_terminal() -> None:
    """Off a terminal: plain lines, with the right grammar, and no bar on stderr."""
    out, err = io.StringIO(), io.StringIO()
    with ConsoleProgress(3, out=out, err=err) as progress:
        progress(_rows()[0])
        assert "              ok  nb/a.ipynb  (1 run, 1.2 s)\n" == out.getvalue()
        for row in _rows()[1:]:
            progress(row)
    assert "" == err.getvalue()
    assert '- run 1 (w), s visit 1: route "x" -> "y"' in out.getvalue()
    assert "cell 2: KeyError: 'k'" in out.getvalue()  # a row from before the cell's code was kept


def test_a_terminal_gets_a_progress_bar_below_the_lines() -> None:
    """On a terminal, a bar counts notebooks on stderr while the lines go to stdout."""
    out, err = io.StringIO(), _Terminal()
    with ConsoleProgress(3, out=out, err=err) as progress:
        progress(_rows()[0])
        assert "1/3 notebooks" in err.getvalue()
    assert "ok  nb/a.ipynb" in out.getvalue()


def test_totals_count_every_status_with_plurals() -> None:
    """The totals line counts ok, regressions and failures, and names missing or updated baselines."""
    assert "3 notebooks: 1 ok, 1 regression, 1 failed" == totals(_rows())
    assert "1 notebook: 0 ok, 0 regressions, 0 failed, 1 without a baseline" == totals(
        [NotebookReport("n", "no baseline", 0, 0)]
    )
    assert "2 notebooks: 0 ok, 0 regressions, 0 failed, 2 baselines updated" == totals(
        [NotebookReport("n", "baseline updated", 0, 0), NotebookReport("m", "baseline updated", 0, 0)]
    )


def test_a_regression_says_how_to_accept_a_change_and_how_to_leave_out_a_cell_that_varies(tmp_path: Path) -> None:
    """A regression's line, its JUnit failure and its report row end with what to do when the change
    is meant (record it) and, when a cell's output differs, how to leave out a cell that varies by
    nature; an ok notebook's line says neither."""
    cell = Difference("stdout", "id 1", "id 2", cell="cell 3 (print(ids))")
    route = Difference("route", "x", "y", run=1, workflow="w", step="s#1")
    shows = NotebookReport("nb/shows.ipynb", "regression", 2.0, 1, diffs=[route, cell])
    routes = NotebookReport("nb/routes.ipynb", "regression", 2.0, 1, diffs=[route])
    fine = NotebookReport("nb/a.ipynb", "ok", 1.25, 1)

    record = "a change you meant: record it, `wfkit replay nb/shows.ipynb --update-baseline`"
    assert shows.line().endswith(
        f"{record}; a cell whose output differs on every run (a measured value, an unseeded draw): "
        "tag it `wfkit-ignore-output` (a plot of measured values: `wfkit-ignore-figure-data`)"
    )
    assert routes.line().endswith("a change you meant: record it, `wfkit replay nb/routes.ipynb --update-baseline`")
    assert "update-baseline" not in fine.line()

    junit = write_junit(tmp_path / "replay.xml", [shows, routes, fine], seconds=5.0)
    failures = {c.get("name"): c.find("failure") for c in ET.parse(junit).getroot().iter("testcase")}
    shown = failures["shows.ipynb"]
    assert shown is not None
    assert (shown.text or "").splitlines()[-1] == shows.accept_note
    assert "wfkit-ignore-output" in (shown.text or "")
    assert failures["a.ipynb"] is None

    (tmp_path / "report").mkdir()
    page = write_html(tmp_path / "report", [shows, fine], seconds=5.0).read_text(encoding="utf-8")
    assert 1 == page.count("wfkit-ignore-output")
    assert html.escape(record) in page


def test_a_failed_notebooks_line_names_its_cell_by_its_first_line_of_code(tmp_path: Path) -> None:
    """A failed cell is named as a difference names one, by its place and first line of code, on the
    console, in the JUnit error and in the report."""
    error = {"cell": 8, "code": "time.sleep(60)", "exception": "CellTimeoutError", "message": "timed out"}
    row = NotebookReport("nb/slow.ipynb", "failed", 5.0, 0, error=error)
    assert "cell 8 (time.sleep(60)): CellTimeoutError: timed out" in row.line()
    junit = write_junit(tmp_path / "replay.xml", [row], seconds=5.0)
    (case,) = ET.parse(junit).getroot().iter("testcase")
    failed = case.find("error")
    assert failed is not None
    assert "cell 8 (time.sleep(60)): CellTimeoutError: timed out" == failed.get("message")
    (tmp_path / "report").mkdir()
    page = write_html(tmp_path / "report", [row], seconds=5.0).read_text(encoding="utf-8")
    assert "cell 8 (time.sleep(60)): <b>CellTimeoutError</b>" in page
