"""`wfkit replay`: notebooks run headless under papermill and are compared with their baselines.

These tests run real Jupyter kernels: the repository's notebooks against the committed baselines,
and small notebooks in a throw-away project (a folder with a pyproject.toml) for the rest.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import html5lib
import nbformat
import pytest
from browsers import CHROMIUM, launch

from wfkit.cli._cli import main
from wfkit.replay._compare import baseline_latency
from wfkit.replay._replay import replay
from wfkit.replay._report import latency_chart
from wfkit.replay._signals import summarise_workspace

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REGRESSION = ROOT / "notebooks" / "07_regression_replay.ipynb"
TINY = (
    "import wfkit as wf\n"
    "flow = wf.Workflow('tiny')\n"
    "flow.step(lambda s: {'y': s['x'] * factor}, name='double')\n"
    "for i in range(3):\n"
    "    run = flow.run({'x': x + i}, workspace=workspace, seed=i)\n"
    "print(run.state)"
)


def _notebook(path: Path, *sources: str, params: str = "x = 1\nworkspace = None\nfactor = 2") -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away project: the current folder, with a pyproject.toml marking its root."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("")
    monkeypatch.chdir(root)
    return root


# Each `wfkit replay` starts its worker processes (importing papermill and nbformat takes them 3-7 s
# here) and a kernel per notebook. Most tests below begin from a notebook with its baseline recorded:
# those notebooks are recorded once for the module, in one replay of them all (RECORDED, the
# `recorded` fixture), and a test copies its notebook and baseline into its own project, where it
# changes what it changes and replays as before. Several tests whose notebook must replay ok
# unchanged read one shared replay of them (`replayed_again`).
RECORDED: dict[str, Callable[[Path], object]] = {}


def recorded_notebook(name: str) -> Callable[[Callable[[Path], object]], Callable[[Path], object]]:
    """Registers a writer of notebook ``nbs/NAME.ipynb`` for the module's recording."""

    def register(write: Callable[[Path], object]) -> Callable[[Path], object]:
        RECORDED[name] = write
        return write

    return register


@dataclass(frozen=True)
class Replayed:
    """One `wfkit replay` of several notebooks: its exit code, what it printed, and its summary's
    row per notebook."""

    root: Path
    report: Path
    code: int
    out: str
    rows: dict[str, dict[str, Any]]

    def block(self, key: str) -> str:
        """The line of notebook ``key`` and the lines under it (its errors, hints and differences),
        as the replay printed them."""
        lines = self.out.splitlines()
        start = next((i for i, line in enumerate(lines) if f"  {key}  (" in line), None)
        assert start is not None, f"no line for {key} in:\n{self.out}"
        end = start + 1
        while end < len(lines) and lines[end].startswith(" " * 18):
            end += 1
        return "\n".join(lines[start:end]) + "\n"


def _replay_in(root: Path, *args: str) -> Replayed:
    """`wfkit replay ARGS --report rep-N` run in project ``root`` (its workspace and SQLite sync as a
    test's), what it printed captured."""
    report = root / f"rep-{len(list(root.glob('rep-*')))}"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(root)
        mp.setenv("WFKIT_HOME", str(root / "ws"))
        mp.setenv("WFKIT_SYNCHRONOUS", "normal")
        code = main(["replay", *args, "--report", str(report)])
    rows = json.loads((report / "summary.json").read_text())["notebooks"]
    return Replayed(root, report, code, printed.getvalue(), {row["notebook"]: row for row in rows})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """The notebooks of RECORDED in a project of the module's, recorded with
    `wfkit replay nbs --update-baseline --jobs 2`."""
    root = tmp_path_factory.mktemp("recorded")
    (root / "pyproject.toml").write_text("")
    for name, write in RECORDED.items():
        write(root / "nbs" / f"{name}.ipynb")
    return _replay_in(root, "nbs", "--update-baseline", "--jobs", "2")


def _copy_recorded(recorded: Replayed, project: Path, *names: str) -> list[Path]:
    """Notebooks ``nbs/NAME.ipynb`` of the module's recording, each recorded ok, copied with their
    baselines into the test's project under the same keys: what `--update-baseline` left there."""
    copied = []
    for name in names:
        key = f"nbs/{name}.ipynb"
        assert "baseline updated" == recorded.rows[key]["status"], recorded.block(key)
        for path in (key, f"data/baselines/nbs/{name}.json"):
            (project / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(recorded.root / path, project / path)
        copied.append(project / key)
    return copied


# Recorded notebooks whose tests replay them unchanged first: one replay of them all.
AGAIN = ("noisy", "plot", "array", "big", "scores", "saved")


@pytest.fixture(scope="module")
def replayed_again(recorded: Replayed) -> Replayed:
    """The notebooks of AGAIN replayed unchanged against the baselines just recorded (2 processes)."""
    for name in AGAIN:
        assert "baseline updated" == recorded.rows[f"nbs/{name}.ipynb"]["status"], recorded.block(f"nbs/{name}.ipynb")
    return _replay_in(recorded.root, *(f"nbs/{name}.ipynb" for name in AGAIN), "--jobs", "2")


def test_every_notebook_is_committed_without_outputs() -> None:
    """Notebooks in git carry no outputs and no execution counts, and each has a baseline."""
    from wfkit.replay._parameters import declared_parameters

    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert [] == cell.outputs, path.name
                assert cell.execution_count is None, path.name
        assert declared_parameters(path), f"{path.name} has no parameters cell"
        assert (ROOT / "data" / "baselines" / "notebooks" / f"{path.stem}.json").exists()


def test_the_retries_notebook_shows_retries_and_both_ways_to_give_up() -> None:
    """Notebook 03's seeded baseline (which its replay must match) has runs that recover after retries,
    one whose step gives up after its last transient failure and one on a permanent error, both
    ending in the `give_up` fallback: what its markdown teaches."""
    summary = json.loads((ROOT / "data" / "baselines" / "notebooks" / "03_retries_and_timeouts.json").read_text())
    runs = [run for run in summary["runs"] if run["workflow"] == "summarise"]
    attempts = [[a["attempt_status"] for a in run["steps"]["summarise#1"]["attempts"]] for run in runs]
    assert sum(statuses[0] == "retry" and statuses[-1] == "ok" for statuses in attempts) >= 5
    gave_up = [run for run in runs if run["path"] == ["give_up"]]
    last = [run["steps"]["summarise#1"]["attempts"][-1] for run in gave_up]
    assert [("failed", "transient"), ("failed", "permanent")] == [(a["attempt_status"], a["error_kind"]) for a in last]
    assert {"succeeded"} == {run["status"] for run in runs}


def test_the_regression_notebook_quotes_the_mean_seats_its_table_shows() -> None:
    """Notebook 07 said pandas "shows 6 decimals" of the mean seats, and its table showed 21.1 and
    19.4: a reader looked for six decimals and found one. Its markdown now quotes what the table
    shows (the baseline's text of that cell), and that a change at the 7th decimal would not show,
    which it would not: pandas rounds to 6 decimals and drops the trailing zeros."""
    import pandas as pd

    nb = nbformat.read(REGRESSION, as_version=4)
    (text,) = [c.source for c in nb.cells if c.cell_type == "markdown" and "mean seats below" in c.source]
    summary = json.loads((ROOT / "data" / "baselines" / "notebooks" / f"{REGRESSION.stem}.json").read_text())
    (shown,) = [o["results"][0] for o in summary["outputs"].values() if "mean seats" in o["code"].lower()]
    values = re.findall(r"\d+\.\d+", shown)
    assert values == ["21.1", "19.4"]
    assert f"read {values[0]} and {values[1]}, and moved at their 7th\ndecimal they would still read" in text
    moved = pd.DataFrame({"mean seats": [21.1 + 3e-7, 19.4]}, index=["pro", "team"])
    assert values == re.findall(r"\d+\.\d+", repr(moved))


@pytest.mark.slow  # runs a notebook in a Jupyter kernel (papermill)
def test_the_latency_notebook_with_few_runs_says_which_figures_it_cannot_give(tmp_path: Path) -> None:
    """Notebook 06 run with `-p runs 10` stopped at its run deadline with `TypeError: unsupported
    format string passed to NoneType.__format__`: ten runs are too few for a deadline, which is None.
    It now says, in words, why each figure too few runs cannot give is absent (the deadline, the
    timeouts at P99 x 1.5, the P50 check) and how much it needs, and runs to its end."""
    import papermill

    notebook = ROOT / "notebooks" / "06_latency_analysis.ipynb"
    saved = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(notebook),
        str(saved),
        parameters={"runs": 10, "workspace": str(tmp_path / "ws")},
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    cells = nbformat.read(saved, as_version=4).cells
    text = "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)
    assert "no run deadline for three-calls: only 10 runs that no timeout failed; need 20\n" in text
    for step in ("draft", "critique", "revise"):
        assert (
            f"  {step} gets none, so nothing cuts it below: only 10 successful attempts; need 20 for advice\n" in text
        )
    assert re.search(
        r"P50 not checked: 30 successful calls are too few to hold their median within 15% of the model's "
        r"\(by chance alone it may land up to \d+% off\); the check needs 368 calls \(runs=123 or more\)\n",
        text,
    ), text
    assert not [o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_notebooks_run_again_in_the_same_workspace_show_this_sessions_runs(tmp_path: Path) -> None:
    """A user runs a notebook again (Restart and Run All) in the workspace it used before, as
    ./.wfkit is by default. Notebook 06 then read every session's runs from the step log (its table
    counted 300 attempts per step for runs=150, its deadline "from 300 runs"), and notebook 08's
    cache, kept in the workspace for an hour, served its first run too (`['cached'] ['cached'] body
    ran 0 time`, where the markdown explains a miss, then a hit). Each shows its own session now."""
    import papermill

    def run(name: str, **parameters: object) -> str:
        notebook = ROOT / "notebooks" / name
        saved = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.ipynb"
        papermill.execute_notebook(
            str(notebook),
            str(saved),
            parameters={"workspace": str(tmp_path / "ws"), **parameters},
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
        )
        cells = nbformat.read(saved, as_version=4).cells
        assert not [o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        return "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)

    for _ in range(2):
        assert "no run deadline for three-calls: only 10 runs that no timeout failed; need 20\n" in run(
            "06_latency_analysis.ipynb", runs=10
        )
        assert "['ok'] ['cached'] body ran 1 time\n" in run("08_maps_forks_cache_streaming.ipynb")


def test_the_quickstart_explains_the_controls_under_its_run_view() -> None:
    """Notebook 01's run view ends with an "inspect step" picker (empty until a step is picked) and a
    "state" toggle, which its "What to look at" never mentioned: a newcomer saw a blank dropdown and
    a grey button and no word on either. The paragraph under the view now says what each shows."""
    nb = nbformat.read(ROOT / "notebooks" / "01_quickstart.ipynb", as_version=4)
    view = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.rstrip().endswith("\nrun"))
    under = " ".join(nb.cells[view + 1].source.split())
    assert "**inspect step**" in under
    assert "the state before it and what it wrote" in under
    assert "**state** shows the run's current state" in under


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_all_notebooks_replay_against_their_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wfkit replay notebooks` (a folder) runs every notebook and matches the committed baselines;
    it ends with the totals, writes valid HTML and one JUnit test case per notebook."""
    monkeypatch.delenv("WFKIT_SYNCHRONOUS", raising=False)  # as `wfkit replay` runs for a user: synchronous=FULL
    monkeypatch.chdir(ROOT)
    junit = tmp_path / "junit.xml"
    code = main(["replay", "notebooks", "--report", str(tmp_path / "report"), "--jobs", "2", "--junit-xml", str(junit)])
    out = capsys.readouterr().out
    assert 0 == code, out
    assert len(NOTEBOOKS) == out.count("              ok  notebooks/")
    assert f"{len(NOTEBOOKS)} notebooks: {len(NOTEBOOKS)} ok, 0 regressions, 0 failed in " in out
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert {"ok"} == {row["status"] for row in summary["notebooks"]}
    page = (tmp_path / "report" / "index.html").read_text()
    html5lib.HTMLParser(strict=True).parse(page)
    plots = sorted((tmp_path / "report" / "runs" / "notebooks").glob("*/latency.png"))
    # A latency chart per notebook with runs (notebook 10's are an eval's, kept in the eval's own
    # workspace, WORKSPACE/evals/runs, which the replay reads too).
    with_runs = sorted(Path(row["notebook"]).stem for row in summary["notebooks"] if row["runs"])
    assert len(NOTEBOOKS) == len(with_runs)
    assert with_runs == [p.parent.name for p in plots]
    cases = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert [p.name for p in NOTEBOOKS] == sorted(c.get("name") for c in cases)
    assert [] == [c for c in cases if c.find("failure") is not None or c.find("error") is not None]


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_seeded_change_is_a_regression_naming_the_signal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A changed backoff (same number of retries) makes replay exit 1 and name the retry delay that moved;
    the JUnit case fails with that line."""
    junit = tmp_path / "junit.xml"
    args = ["replay", str(REGRESSION), "--root", str(ROOT), "--report", str(tmp_path), "--junit-xml", str(junit)]
    code = main([*args, "-p", "change", "retry_backoff"])
    out = capsys.readouterr().out
    assert 1 == code, out
    line = "run 2 (ticket-triage), lookup visit 1: attempt 1: retry_delay 0.001 -> 0.025"
    assert "      regression  notebooks/07_regression_replay.ipynb  (6 runs, " in out
    assert line in out
    assert "1 notebook: 0 ok, 1 regression, 0 failed in " in out
    (case,) = ET.parse(junit).getroot().findall("./testsuite/testcase")
    failure = case.find("failure")
    assert failure is not None
    assert line in (failure.text or "")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_update_baseline_then_replay_is_clean_and_a_rename_is_no_baseline(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--update-baseline records the runs under the notebook's path from the root; replaying then
    matches; the same notebook renamed finds no baseline (exit 1) and is told which one to move."""
    _notebook(project / "nbs" / "tiny.ipynb", TINY)
    assert 0 == main(["replay", "nbs", "--update-baseline", "--report", "rep"])
    assert (project / "data" / "baselines" / "nbs" / "tiny.json").exists()
    assert 0 == main(["replay", "nbs/tiny.ipynb", "--report", "rep"])
    assert "              ok  nbs/tiny.ipynb  (3 runs, " in capsys.readouterr().out
    (project / "nbs" / "tiny.ipynb").rename(project / "nbs" / "renamed.ipynb")
    assert 1 == main(["replay", "nbs/*.ipynb", "--report", "rep"])
    out = capsys.readouterr().out
    assert "     no baseline  nbs/renamed.ipynb  (3 runs, " in out
    assert "The baseline of nbs/tiny.ipynb (a notebook that is gone) was recorded from the same code" in out
    assert "1 notebook: 0 ok, 0 regressions, 0 failed, 1 without a baseline in " in out


TWO_FETCHES = (
    "import time\n"
    "import wfkit as wf\n"
    "def flow(name, seconds):\n"
    "    f = wf.Workflow(name)\n"
    "    f.step(lambda s: time.sleep(seconds) or {'done': True}, name='fetch')\n"
    "    return f\n"
    "for i in range(5):\n"
    "    flow('quick', 0.01 * slower).run({}, workspace=workspace, seed=i)\n"
    "    flow('steady', 0.2).run({}, workspace=workspace, seed=i)"
)


@recorded_notebook("fetches")
def _fetches(path: Path) -> None:
    nb = nbformat.read(_notebook(path, TWO_FETCHES, params="workspace = None\nslower = 1"), 4)
    nb.metadata["wfkit"] = {"compare_latency": True, "latency_floor_s": 0.05}
    nbformat.write(nb, path)


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_latency_is_compared_per_workflow_and_step(
    recorded: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two workflows with a step of the same name keep their own latency: `quick`'s fetch 15x slower
    is a regression of `quick`'s fetch, and `steady`'s (20x slower than `quick`'s, unchanged) neither
    hides it nor takes the blame. Pooled by name, P50 moved x1.7 only: within the factor."""
    _copy_recorded(recorded, project, "fetches")  # recorded with slower = 1
    baseline = json.loads((project / "data" / "baselines" / "nbs" / "fetches.json").read_text())
    assert {"quick": ["fetch"], "steady": ["fetch"]} == {w: list(s) for w, s in baseline["latency"].items()}
    assert [5, 5] == [baseline["latency"][w]["fetch"]["n"] for w in ("quick", "steady")]
    capsys.readouterr()
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "slower", "15"])
    out = capsys.readouterr().out
    assert "      regression  nbs/fetches.ipynb  (10 runs, " in out
    assert "fetch (all runs of quick): latency p50 " in out
    assert "steady" not in out


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_papermills_options_reach_the_kernel(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-f params.yaml, -y and -p set parameters (later ones win), --kernel picks the kernel and --cwd
    the folder the notebook runs in."""
    (project / "data").mkdir()
    (project / "data" / "factor.txt").write_text("5")
    _notebook(
        project / "nbs" / "opts.ipynb",
        TINY.replace("* factor", "* factor * int(open('data/factor.txt').read())"),
        params="x = 1\nworkspace = None\nfactor = 2\nlabel = 'a'",
    )
    (project / "p.yaml").write_text("x: 10\nfactor: 7\n")
    args = ["replay", "nbs/opts.ipynb", "--report", "rep", "--update-baseline", "--kernel", "python3", "--cwd", "."]
    code = main([*args, "-f", "p.yaml", "-y", "factor: 3\nlabel: b", "-p", "x", "4"])
    assert 0 == code, capsys.readouterr()
    summary = json.loads((project / "rep" / "runs" / "nbs" / "opts" / "summary.json").read_text())
    assert [{"x": 4, "y": 60}, {"x": 5, "y": 75}, {"x": 6, "y": 90}] == [r["state"] for r in summary["runs"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "no such notebook or folder: nowhere"),
        (["pyproject.toml"], "not a notebook: pyproject.toml"),
        (["nbs/ok.ipynb", "--kernel", "no-such-kernel"], "no Jupyter kernel named 'no-such-kernel'; installed: "),
        (["nbs/ok.ipynb", "--cwd", "missing"], "--cwd missing is not a folder"),
        (["nbs/masked.ipynb"], "unknown signal 'rout' to mask"),
    ],
)
def test_bad_input_exits_2_before_anything_runs(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Each bad input is refused with exit code 2 and a message saying what to fix."""
    _notebook(project / "nbs" / "ok.ipynb", "x")
    masked = nbformat.read(_notebook(project / "nbs" / "masked.ipynb", "x"), as_version=4)
    masked.metadata["wfkit"] = {"mask": ["rout"]}
    nbformat.write(masked, project / "nbs" / "masked.ipynb")
    assert 2 == main(["replay", *args, "--report", "rep"])
    assert message in capsys.readouterr().err
    assert not (project / "rep" / "runs").exists()


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_broken_notebooks_are_failed_rows_with_their_traceback(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error, a cell timeout and a dead kernel each give a failed row naming the cell and saying
    what happened; an error carries the kernel's traceback."""
    _notebook(project / "nbs" / "error.ipynb", "def explode():\n    return 1 / 0\nexplode()")
    _notebook(project / "nbs" / "slow.ipynb", "import time\ntime.sleep(30)")
    _notebook(project / "nbs" / "dies.ipynb", "import os\nos._exit(3)")
    code = main(["replay", "nbs", "--report", "r", "--cell-timeout", "3", "--jobs", "3"])
    out = capsys.readouterr().out
    assert 1 == code
    rows = {r["notebook"]: r for r in json.loads((project / "r" / "summary.json").read_text())["notebooks"]}
    error = rows["nbs/error.ipynb"]
    assert ("failed", 1, "ZeroDivisionError") == (error["status"], error["error"]["cell"], error["error"]["exception"])
    assert "in explode()" in error["error"]["traceback"] or "explode" in error["error"]["traceback"]
    assert "\x1b[" not in error["error"]["traceback"]
    slow = rows["nbs/slow.ipynb"]
    assert ("failed", 1) == (slow["status"], slow["error"]["cell"]), slow
    # papermill's headline, not the last line of its preview of the cell (a row of dashes)
    line = "cell 1 (import time): CellTimeoutError: A cell timed out while it was being executed, after 3 seconds."
    assert line in out
    assert "failed" == rows["nbs/dies.ipynb"]["status"]
    assert "          failed  nbs/dies.ipynb" in out
    assert "3 notebooks: 0 ok, 0 regressions, 3 failed in " in out


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_failing_cell_is_named_by_its_place_in_the_notebook_whatever_the_parameters(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The failing cell's number is its place in the notebook the user wrote: papermill's
    injected-parameters cell (there only when parameters are given) does not shift it, for an
    error and for a cell timeout alike; its first line of code follows, as a difference names a cell."""
    _notebook(project / "nbs" / "error.ipynb", "y = x * factor", "raise ValueError(f'bad {y}')")
    _notebook(project / "nbs" / "slow.ipynb", "import time\ntime.sleep(30)")
    cells = {}
    for given in ([], ["-p", "x", "2"]):
        code = main(["replay", "nbs", "--report", "r", "--cell-timeout", "3", *given])
        out = capsys.readouterr().out
        assert 1 == code, out
        rows = json.loads((project / "r" / "summary.json").read_text())["notebooks"]
        cells[bool(given)] = {r["notebook"]: r["error"]["cell"] for r in rows}
        assert "cell 2 (raise ValueError(f'bad {y}')): ValueError: bad " in out
        assert "cell 1 (import time): CellTimeoutError: " in out
    assert {"nbs/error.ipynb": 2, "nbs/slow.ipynb": 1} == cells[False] == cells[True]


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_kernel_that_dies_before_its_first_cell_is_started_again(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kernel that dies while starting (as when parallel kernels race for a port) is started once
    more, since none of the notebook ran; the kernel log says so and the notebook passes."""
    marker = project / "first-start-failed"
    launcher = (
        "import pathlib, sys\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.write_text('x')\n"
        "    sys.exit(1)\n"
        "from ipykernel import kernelapp\n"
        "kernelapp.launch_new_instance()\n"
    )
    spec = project / "kernels" / "kernels" / "flaky-start"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", launcher, "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(project / "kernels"))
    _notebook(project / "nbs" / "ok.ipynb", "print(x * factor)")
    code = main(["replay", "nbs", "--report", "r", "--update-baseline", "--kernel", "flaky-start"])
    out = capsys.readouterr().out
    assert 0 == code, out
    assert marker.exists()
    log = (project / "r" / "runs" / "nbs" / "ok" / "kernel-stderr.log").read_text()
    assert "wfkit replay: the kernel did not start" in log


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_gate_under_papermill_without_a_policy_fails_the_notebook_clearly(project: Path) -> None:
    """Headless under papermill, a gate with no decision policy fails the notebook with a clear
    message instead of waiting forever for a click nobody can make."""
    nb = _notebook(
        project / "gate.ipynb",
        "import wfkit as wf\nflow = wf.Workflow('gated')\n"
        "flow.step(lambda s: {'ok': True}, name='pay', approval='Payments need a human')\n"
        "run = flow.run({}, raise_on_error=False)\n"
        "assert run.status == 'succeeded', run.error",
    )
    code, rows = replay([nb], root=project, report=project / "r", jobs=1, cell_timeout=60)
    assert 1 == code
    assert ("failed", 1) == (rows[0].status, rows[0].error["cell"] if rows[0].error else None)
    summary = json.loads((project / "r" / "runs" / "gate" / "summary.json").read_text())
    assert ["failed"] == [r["status"] for r in summary["runs"]]


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_the_report_in_a_browser(project: Path) -> None:
    """index.html in Chromium: totals at the top; per notebook links to the executed notebook and the
    kernel log, differences grouped by run and step, the failing cell's traceback, and the latency
    chart in its own column, loaded; at 1280 px nothing spills sideways."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it")
    from playwright.sync_api import sync_playwright

    tiny = _notebook(project / "nbs" / "tiny.ipynb", TINY)
    broken = _notebook(project / "nbs" / "broken.ipynb", "def explode():\n    return {}['missing']\nexplode()")
    replay([tiny], root=project, report=project / "r", update_baseline=True, jobs=1)
    changed = nbformat.read(tiny, as_version=4)
    changed.cells[0].source = changed.cells[0].source.replace("factor = 2", "factor = 3")
    nbformat.write(changed, tiny)
    # No baseline: its hint names the path where one was expected, a long word the page must wrap.
    unrecorded = _notebook(project / "nbs" / "a_notebook_recorded_by_nobody_yet.ipynb", "print(x)")
    code, _rows = replay([tiny, broken, unrecorded], root=project, report=project / "r", jobs=2)
    assert 1 == code
    page = project / "r" / "index.html"
    html5lib.HTMLParser(strict=True).parse(page.read_text())
    with sync_playwright() as p:
        browser = launch(p)
        try:
            tab = browser.new_page(viewport={"width": 1600, "height": 1000})
            tab.goto(page.as_uri())
            assert "3 notebooks: 0 ok, 1 regression, 1 failed, 1 without a baseline" == (
                tab.locator("p.totals").inner_text()
            )
            headers = tab.locator("thead th").all_inner_texts()
            assert ["notebook", "status", "runs", "seconds", "files", "errors and differences", "latency"] == headers
            rows = tab.locator("tbody tr")
            assert ["nbs/tiny.ipynb", "nbs/broken.ipynb"] == [
                rows.nth(i).locator("td").first.inner_text() for i in range(2)
            ]
            regressed = rows.nth(0)
            assert [
                "run 1 (tiny): 2 differences",
                "run 2 (tiny): 2 differences",
                "run 3 (tiny): 2 differences",
                "cell 1 (import wfkit as wf): 1 difference",
            ] == regressed.locator("summary").all_inner_texts()
            assert "stdout line 1 {'x': 3, 'y': 6} -> {'x': 3, 'y': 9}" in (  # as printed, no JSON quotes
                regressed.locator("td.findings").inner_text()
            )
            assert "double visit 1" in regressed.locator("h4").all_inner_texts()
            assert "writes 'y' 2 -> 3" in regressed.locator("td.findings").inner_text()
            loaded = regressed.locator("td.chart img").evaluate("img => img.complete && img.naturalWidth")
            assert loaded > 100
            # Shrunk to its column, the chart is a link to itself at full size.
            link = regressed.locator("td.chart a").get_attribute("href")
            assert link == regressed.locator("td.chart a img").get_attribute("src")
            assert (project / "r" / str(link)).is_file()
            for row in (rows.nth(0), rows.nth(1)):
                hrefs = row.locator("td.files a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
                assert 2 == len(hrefs)
                assert all((project / "r" / href).is_file() for href in hrefs)
            traceback = rows.nth(1).locator("pre.traceback").inner_text()
            assert "KeyError" in traceback
            assert "explode" in traceback
            tab.screenshot(path=str(project / "r" / "screenshot.png"), full_page=True)
            tab.set_viewport_size({"width": 1280, "height": 900})  # a laptop: nothing spills sideways
            assert 1280 >= tab.evaluate("document.documentElement.scrollWidth")
            chart = regressed.locator("td.chart img").evaluate("img => img.getBoundingClientRect().right")
            assert 1280 >= chart
        finally:
            browser.close()
    shutil.copy(project / "r" / "screenshot.png", project.parent / "replay-report.png")


SPACED = (
    "import sys\n"
    "import pandas as pd\n"
    "print(pd.DataFrame({'step': ['a', 'b', 'c'], 'cost': [1.5, 2.5, cost]}))\n"
    "if loud:\n"
    "    print('careful:\\n  two  spaces in', file=sys.stderr)"
)


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_the_report_shows_values_as_they_were_printed(project: Path) -> None:
    """In Chromium the report shows a difference's values with their whitespace: a DataFrame row
    keeps the spaces that align its columns, and a stderr value its line breaks, not `\\n`."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it")
    import pandas as pd
    from playwright.sync_api import sync_playwright

    nb = _notebook(project / "nbs" / "spaced.ipynb", SPACED, params="cost = 3.5\nloud = False")
    replay([nb], root=project, report=project / "r", update_baseline=True, jobs=1)
    code, _rows = replay([nb], root=project, report=project / "r", jobs=1, parameters={"cost": 3.6, "loud": True})
    assert 1 == code
    rows = [str(pd.DataFrame({"step": ["a", "b", "c"], "cost": [1.5, 2.5, c]})).splitlines()[-1] for c in (3.5, 3.6)]
    assert all("    " in row for row in rows)  # columns aligned by runs of spaces
    with sync_playwright() as p:
        browser = launch(p)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.goto((project / "r" / "index.html").as_uri())
            said = tab.locator("td.findings li").all_inner_texts()
            assert any(rows[0] in line and rows[1] in line for line in said), said
            assert any("careful:\n  two  spaces in" in line for line in said), said
            assert not any("\\n" in line for line in said), said
            # Two rows that differ in one digit render alike, each on one line, the stderr on two.
            values = tab.locator("td.findings li code")
            boxes = {text: values.nth(i).bounding_box() for i, text in enumerate(values.all_inner_texts())}
            before, after, stderr = boxes[rows[0]], boxes[rows[1]], boxes["careful:\n  two  spaces in\n"]
            assert None not in (before, after, stderr)
            assert (before["width"], before["height"]) == (after["width"], after["height"])
            assert 2 * before["height"] <= stderr["height"] < 3 * before["height"]
            tab.screenshot(path=str(project.parent / "replay-report-values.png"), full_page=True)
        finally:
            browser.close()


PRICED = (
    "import wfkit as wf\n"
    "flow = wf.Workflow('priced')\n"
    "flow.step(lambda s, ctx: ctx.record(cost_usd=tokens * 1e-07), name='price')\n"
    "flow.run({}, workspace=workspace, seed=1)"
)


@recorded_notebook("priced")
def _priced(path: Path) -> None:
    _notebook(path, PRICED, params="workspace = None\ntokens = 25")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_float_that_changed_is_shown_with_the_digits_that_tell_it_apart(
    recorded: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cost that moved from 25 to 26 tokens' worth reads `cost 2.5e-06 -> 2.6e-06`, not its full
    repr, on the console, in the report and in the JUnit failure."""
    _copy_recorded(recorded, project, "priced")  # recorded with tokens = 25
    junit = project / "rep" / "junit.xml"
    assert 1 == main(["replay", "nbs", "--report", "rep", "--junit-xml", str(junit), "-p", "tokens", "26"])
    said = "run 1 (priced), price visit 1: attempt 1: cost 2.5e-06 -> 2.6e-06"
    assert repr(25 * 1e-07) != "2.5e-06"  # the full repr is what would have been shown
    assert said in capsys.readouterr().out
    (case,) = ET.parse(junit).getroot().findall("./testsuite/testcase")
    failure = case.find("failure")
    assert failure is not None
    assert said in (failure.text or "")
    page = (project / "rep" / "index.html").read_text()
    assert (
        '<li>attempt 1: cost <code class="value">2.5e-06</code> -&gt; <code class="value">2.6e-06</code></li>' in page
    )


RECORDED["silent"] = lambda path: _notebook(path, "y = x * factor")
RECORDED["printed"] = lambda path: _notebook(path, "print(x * factor)")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_notebook_that_compares_nothing_passes_saying_so(
    recorded: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A notebook with no runs and no cell output is ok, and its line says that nothing was compared,
    on the console, in the report and in the JUnit XML; one that printed something is plain ok."""
    _copy_recorded(recorded, project, "silent", "printed")
    junit = project / "rep" / "junit.xml"
    assert 0 == main(["replay", "nbs", "--report", "rep", "--junit-xml", str(junit)])
    out = capsys.readouterr().out
    said = "ok (nothing compared: no runs, no cell output)"
    assert f"{said}  nbs/silent.ipynb  (0 runs, " in out
    assert "              ok  nbs/printed.ipynb  (0 runs, " in out
    assert "2 notebooks: 2 ok, 0 regressions, 0 failed in " in out
    page = (project / "rep" / "index.html").read_text()
    statuses = [re.sub(r"<[^>]+>", "", s) for s in re.findall(r'<td class="status"[^>]*>(.*?)</td>', page)]
    assert ["ok", said] == sorted(statuses)
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().findall("./testsuite/testcase")}
    assert [] == [c for c in cases.values() if c.find("failure") is not None or c.find("error") is not None]
    assert f"{said}: 0 runs" == cases["silent.ipynb"].findtext("system-out")
    assert "ok: 0 runs" == cases["printed.ipynb"].findtext("system-out")


OUTPUTS = (
    "import warnings\n"
    "import pandas as pd\n"
    "print('ratio', round(x / 7, 4))\n"
    "print('first')\n"
    "print('second')\n"
    "pd.DataFrame({'step': ['a', 'b', 'c'], 'n': [1, 2, 3]})"
)


RECORDED["shows"] = lambda path: _notebook(path, TINY, OUTPUTS)
SHOWN_CHANGES = [
    ("round(x / 7, 4)", "round(x / 7 + 0.0001, 4)", 'stdout line 1 "ratio 0.1429" -> "ratio 0.143"'),
    (
        "print('first')\nprint('second')",
        "print('second')\nprint('first')",
        'stdout line 3 "second" moved to line 2',
    ),
    ("'n': [1, 2, 3]", "'n': [1, 2, 4]", 'result 1 line 4 "2    c  3" -> "2    c  4"'),
    ("['a', 'b', 'c'], 'n': [1, 2, 3]", "['a', 'b'], 'n': [1, 2]", 'result 1 line 4 is gone: "2    c  3"'),
    ("import pandas as pd", "import pandas as pd\nwarnings.warn('mind the gap')", "stderr is new: "),
]


@pytest.fixture(scope="module")
def shown_changes(recorded: Replayed, tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """Notebook `shows` as recorded, once per change of SHOWN_CHANGES (`nbs/shows-N.ipynb`, each with
    the recorded baseline), each changed in its cell 2, replayed in one `wfkit replay nbs`."""
    root = tmp_path_factory.mktemp("shows")
    (root / "pyproject.toml").write_text("")
    (recorded_nb,) = _copy_recorded(recorded, root, "shows")
    baselines = root / "data" / "baselines" / "nbs"
    for i, (old, new, _said) in enumerate(SHOWN_CHANGES):
        changed = nbformat.read(recorded_nb, as_version=4)
        assert old in changed.cells[2].source
        changed.cells[2].source = changed.cells[2].source.replace(old, new)
        nbformat.write(changed, root / "nbs" / f"shows-{i}.ipynb")
        shutil.copy(baselines / "shows.json", baselines / f"shows-{i}.json")
    recorded_nb.unlink()
    (baselines / "shows.json").unlink()
    return _replay_in(root, "nbs", "--jobs", "2")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
@pytest.mark.parametrize(("old", "new", "said"), SHOWN_CHANGES)
def test_a_change_only_in_what_a_cell_shows_is_a_regression_naming_the_cell_and_line(
    shown_changes: Replayed, old: str, new: str, said: str
) -> None:
    """A cell's printed text, a table it displays and a warning it emits are compared with the
    baseline even where no run changed: one changed character, a swapped line, a table cell or a row
    fewer, a new warning is a regression naming the cell, the stream and the line."""
    key = f"nbs/shows-{SHOWN_CHANGES.index((old, new, said))}.ipynb"
    assert 1 == shown_changes.code
    out = shown_changes.block(key)
    assert f"      regression  {key}  (3 runs, " in out
    assert f"cell 2 (import warnings): {said}" in out
    assert "regression" == shown_changes.rows[key]["status"]


@recorded_notebook("noisy")
def _noisy(path: Path) -> None:
    noisy = (
        "import datetime, time, warnings\n"
        "t0 = time.perf_counter()\n"
        "print(run.run_id, 'took', f'{(time.perf_counter() - t0) * 1e6:.3f} ms')\n"
        "print('at', datetime.datetime.now(datetime.UTC).isoformat(), 'and', datetime.datetime.now())\n"
        "print(object())\n"
        "import uuid\n"
        "print('ticket', uuid.uuid4(), 'trace', uuid.uuid1())\n"
        "warnings.warn('kept in the comparison')"
    )
    nb = _notebook(path, TINY, noisy, "import random\nprint(random.random())")
    tagged = nbformat.read(nb, as_version=4)
    tagged.cells[3].metadata["tags"] = ["wfkit-ignore-output"]
    nbformat.write(tagged, nb)


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_noise_in_what_cells_show_is_no_regression(recorded: Replayed, replayed_again: Replayed) -> None:
    """Run ids, timings, timestamps, random UUIDs, memory addresses and the kernel's file names in a
    warning differ on every replay and are masked; a cell tagged `wfkit-ignore-output` is not compared at all."""
    assert "baseline updated" == recorded.rows["nbs/noisy.ipynb"]["status"], recorded.block("nbs/noisy.ipynb")
    baseline = json.loads((recorded.root / "data" / "baselines" / "nbs" / "noisy.json").read_text())
    assert "kept in the comparison" in json.dumps(baseline["outputs"])
    assert "ok" == replayed_again.rows["nbs/noisy.ipynb"]["status"], replayed_again.block("nbs/noisy.ipynb")


RECORDED["b"] = lambda path: _notebook(path, TINY)


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_an_unreadable_baseline_fails_its_notebook_and_every_other_is_still_judged(
    recorded: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A baseline that is not JSON, or JSON but not a baseline, is a failing row of its own notebook
    saying what is wrong with the file and how to restore or record it; the other notebooks are
    judged, and the report and JUnit XML are written. (Three notebooks with a baseline broken in a
    way of its own each, and one recorded ok, in one replay.)"""
    _copy_recorded(recorded, project, "b")
    broken = {
        "a1": ('{"version": 4, "runs": [', "is not JSON (Expecting value: line 1 column 25"),
        "a2": ("[]", "is not a baseline (a JSON object), it holds a list"),
        "a3": ('{"version": 4, "runs": {"x": 1}}', "is not a baseline: its runs are not a list of objects"),
    }
    for name, (content, _said) in broken.items():
        _notebook(project / "nbs" / f"{name}.ipynb", TINY)
        (project / "data" / "baselines" / "nbs" / f"{name}.json").write_text(content)
    assert 1 == main(["replay", "nbs", "--report", "rep", "--junit-xml", "rep/junit.xml"])
    out = capsys.readouterr().out
    assert "              ok  nbs/b.ipynb  (3 runs, " in out
    assert "4 notebooks: 1 ok, 0 regressions, 0 failed, 3 with a bad baseline in " in out
    rows = {r["notebook"]: r["status"] for r in json.loads((project / "rep" / "summary.json").read_text())["notebooks"]}
    assert {**{f"nbs/{name}.ipynb": "bad baseline" for name in broken}, "nbs/b.ipynb": "ok"} == rows
    junit = ET.parse(project / "rep" / "junit.xml").getroot()
    cases = {c.get("name"): c for c in junit.findall("./testsuite/testcase")}
    assert cases["b.ipynb"].find("failure") is None
    printed = Replayed(project, project / "rep", 1, out, {})
    for name, (_content, said) in broken.items():
        file, key = project / "data" / "baselines" / "nbs" / f"{name}.json", f"nbs/{name}.ipynb"
        shown = printed.block(key)
        assert f"    bad baseline  {key}  (3 runs, " in shown
        assert f"the baseline {file} {said}" in shown
        fix = f"restore it (`git checkout -- {file}`) or record it again (`wfkit replay {key} --update-baseline`)"
        assert fix in shown
        failure = cases[f"{name}.ipynb"].find("failure")
        assert failure is not None
        assert said in failure.get("message", "")


LONG_TEXT = (
    "text = 'Answer to the question about orchestration, with citations from the three sources the search "
    "found, checked against the style guide: ' + ending\n"
    "flow = __import__('wfkit').Workflow('long')\n"
    "flow.step(lambda s: {'text': text}, name='write')\n"
    "flow.run({}, workspace=workspace, seed=1)\n"
    "print(text)"
)
RECORDED["long"] = lambda path: _notebook(path, LONG_TEXT, params="workspace = None\nending = 'fine.'")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_change_past_the_shown_width_of_a_long_value_is_shown(
    recorded: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long text that changed near its end (what a step wrote, a printed line) is shown from a
    little before its first difference, so the two sides of `before -> after` never read the same."""
    _copy_recorded(recorded, project, "long")  # recorded with ending = 'fine.'
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "ending", "fine!"])
    out = capsys.readouterr().out
    changed = [line for line in out.splitlines() if "'text'" in line or "stdout line 1" in line]
    assert 3 == len(changed), out  # what the step wrote, the final state, the printed line
    for line in changed:
        before, after = line.split(" -> ")
        assert before.endswith('the style guide: fine."'), line
        assert after.endswith('the style guide: fine!"'), line


LONG_TABLE = (
    "import pandas as pd\n"
    "table = pd.DataFrame({'item': [f'item {i}' for i in range(100)], 'score': [i * 10 for i in range(100)]})\n"
    "table.loc[50, 'score'] = middle\n"
    "print(table)\n"
    "table"
)


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_change_in_the_rows_a_long_table_hides_is_a_regression(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DataFrame of more than 60 rows, displayed or printed, is compared whole: a changed value in a
    middle row that pandas cuts from the table it shows (with "...") is a regression naming that row.
    The notebook on disk is left as it was, and the user's own $PYTHONSTARTUP still runs in the kernel
    and is what the kernel's environment names."""
    startup = project / "startup.py"
    startup.write_text("greeting = 'hello from the startup file'\n")
    monkeypatch.setenv("PYTHONSTARTUP", str(startup))
    check = f"import os\nprint(greeting, os.environ['PYTHONSTARTUP'] == {str(startup)!r})"
    nb = _notebook(project / "nbs" / "long.ipynb", LONG_TABLE, check, params="middle = 500")
    written = nb.read_bytes()
    assert 0 == main(["replay", "nbs", "--update-baseline", "--report", "rep"])
    capsys.readouterr()
    assert 0 == main(["replay", "nbs", "--report", "rep"]), capsys.readouterr().out
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "middle", "501"])
    out = capsys.readouterr().out
    assert "      regression  nbs/long.ipynb  (0 runs, " in out
    assert 'cell 1 (import pandas as pd): stdout line 52 "50  item 50    500" -> "50  item 50    501"' in out
    assert 'cell 1 (import pandas as pd): result 1 line 52 "50  item 50    500" -> "50  item 50    501"' in out
    assert 2 == out.count("- cell "), out  # nothing else differs
    assert written == nb.read_bytes()
    baseline = json.loads((project / "data" / "baselines" / "nbs" / "long.json").read_text())
    shown = {cell["cell"]: cell.get("stdout") for cell in baseline["outputs"].values()}
    assert "hello from the startup file True\n" == shown[2]


FIGURE = (
    "import matplotlib.pyplot as plt\n"
    "fig, ax = plt.subplots(figsize=(4, 2))\n"
    "ax.plot([1, 2, 3, 4, 5], [10, 20, middle, 40, 50], label='seats')\n"
    "ax.set(title=title, xlabel='account', ylim=(0, 60))\n"
    "ax.legend()\n"
    "plt.show()"
)
RECORDED["plot"] = lambda path: _notebook(path, FIGURE, params="middle = 30\ntitle = 'seats'")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("middle", "31", 'result 1 line 4 "axes 1: 1 line; x 0.8 to 5.2, y 0 to 60; digest '),
        (
            "title",
            "seats per account",
            "result 1 line 2 \"axes 1: title 'seats', x 'account' (linear), y '' (linear)\" -> ",
        ),
    ],
)
def test_a_figure_that_draws_something_else_is_a_regression(
    recorded: Replayed,
    replayed_again: Replayed,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    said: str,
) -> None:
    """A figure of the same size and axes that draws one point elsewhere, or has another title, is a
    regression naming the cell, the figure and the axes; its pixels are never compared, so the
    same figure replays ok."""
    assert "ok" == replayed_again.rows["nbs/plot.ipynb"]["status"], replayed_again.block("nbs/plot.ipynb")
    (nb,) = _copy_recorded(recorded, project, "plot")
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", option, value])
    out = capsys.readouterr().out
    assert "      regression  nbs/plot.ipynb  (0 runs, " in out
    assert f"cell 1 (import matplotlib.pyplot as plt): {said}" in out
    assert 1 == out.count("- cell "), out
    executed = nbformat.read(project / "rep" / "runs" / "nbs" / "plot" / "plot.ipynb", as_version=4)
    (shown,) = executed.cells[-1].outputs
    assert "image/png" in shown.data  # the notebook shows the figure as before
    assert [] == [c.outputs for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code" and c.outputs]


@recorded_notebook("measured")
def _measured(path: Path) -> None:
    random_plot = FIGURE.replace("[10, 20, middle, 40, 50]", "__import__('numpy').random.rand(5) * middle")
    nb = _notebook(path, random_plot, params="middle = 30\ntitle = 'seats'")
    tagged = nbformat.read(nb, as_version=4)
    tagged.cells[1].metadata["tags"] = ["wfkit-ignore-figure-data"]
    nbformat.write(tagged, nb)


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_figure_tagged_to_ignore_its_data_compares_its_titles_only(
    recorded: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A figure of measured (random) values in a cell tagged `wfkit-ignore-figure-data` replays ok
    whatever it draws; its title is still compared."""
    _copy_recorded(recorded, project, "measured")  # recorded with middle = 30, title = 'seats'
    assert 0 == main(["replay", "nbs", "--report", "rep", "-p", "middle", "40"]), capsys.readouterr().out
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "title", "seats per account"])
    assert "result 1 line 2 \"axes 1: title 'seats'" in capsys.readouterr().out


LONG_ARRAY = "import numpy as np\nvalues = np.arange(2000)\nvalues[1500] = late\nprint(values)\nvalues"
RECORDED["array"] = lambda path: _notebook(path, LONG_ARRAY, params="late = 1500")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_change_past_the_elements_numpy_shows_is_a_regression(
    recorded: Replayed, replayed_again: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A numpy array of more than 1000 elements, printed or displayed, is compared whole: a changed
    element that numpy would cut from what it shows (`0 1 2 ... 1997 1998 1999`) is a regression
    naming the line it is on."""
    assert "ok" == replayed_again.rows["nbs/array.ipynb"]["status"], replayed_again.block("nbs/array.ipynb")
    _copy_recorded(recorded, project, "array")  # recorded with late = 1500
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "late", "-1"])
    out = capsys.readouterr().out
    assert "      regression  nbs/array.ipynb  (0 runs, " in out
    changed = [line for line in out.splitlines() if line.lstrip().startswith("- cell 1 (import numpy as np)")]
    assert 2 == len(changed), out  # what it printed and what it displayed, nothing else
    stdout, result = changed
    assert re.search(r'stdout line \d+ "[ \d]*1499 1500 1501[ \d]*" -> "[ \d]*1499   -1 1501[ \d]*"', stdout), stdout
    assert re.search(r'result 1 line \d+ "[ \d,]*1499, 1500, 1501,[ \d,]*" -> "[ \d,]*1499,   -1, 1501,', result)


RECORDED["table"] = lambda path: _notebook(path, LONG_TABLE, params="middle = 500")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_startup_file_that_fails_in_the_kernel_fails_the_notebook_naming_it(
    recorded: Replayed, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's $PYTHONSTARTUP raising in the replay's kernel, or a file beside the notebook that
    hides a module the replay's kernel setup imports, fails the notebook with a line naming the
    error, the file and how to fix it: not differences in what the cells showed, nor the traceback
    in the kernel's log alone."""
    (nb,) = _copy_recorded(recorded, project, "table")
    startup = project / "startup.py"
    startup.write_text("import os\ncolour = os.environ['NO_SUCH_VARIABLE']\n")
    monkeypatch.setenv("PYTHONSTARTUP", str(startup))
    assert 1 == main(["replay", "nbs", "--report", "rep"])
    out = capsys.readouterr().out
    assert "          failed  nbs/table.ipynb  (0 runs, " in out
    assert (
        f"kernel setup failed: KeyError: 'NO_SUCH_VARIABLE' (startup.py line 2), raised by your $PYTHONSTARTUP "
        f"file {startup}, which the replay's kernel runs before the notebook's first cell: fix that file, or "
        "replay without it (`PYTHONSTARTUP= wfkit replay ...`); the notebook was not compared"
    ) in out, out
    assert "- cell" not in out
    (row,) = json.loads((project / "rep" / "summary.json").read_text())["notebooks"]
    assert "KeyError: 'NO_SUCH_VARIABLE'" in row["error"]["traceback"]

    monkeypatch.delenv("PYTHONSTARTUP")
    (nb.parent / "numpy.py").write_text("raise ImportError('this numpy is a stub')\n")
    assert 1 == main(["replay", "nbs", "--report", "rep"])
    out = capsys.readouterr().out
    assert (
        f"kernel setup failed: ImportError: this numpy is a stub ({nb.parent / 'numpy.py'} line 1), as the replay "
        "set up its kernel before the notebook's first cell"
    ) in out, out
    assert "- cell" not in out


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_kernel_that_never_runs_the_replays_setup_fails_the_notebook_saying_so(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kernel whose kernelspec sets its own $PYTHONSTARTUP never runs the replay's setup (tables
    and arrays would be compared cut): the notebook fails saying so, and which kernel to use."""
    spec = project / "kernels" / "kernels" / "own-startup"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "own", "language": "python", "env": {"PYTHONSTARTUP": ""}}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(project / "kernels"))
    _notebook(project / "nbs" / "ok.ipynb", "print(x * factor)")
    assert 1 == main(["replay", "nbs", "--report", "r", "--update-baseline", "--kernel", "own-startup"])
    out = capsys.readouterr().out
    assert "          failed  nbs/ok.ipynb  (0 runs, " in out
    assert (
        "kernel setup did not run: the kernel 'own-startup' did not run the replay's $PYTHONSTARTUP, which sets it "
        "up before the notebook's first cell (its kernelspec sets PYTHONSTARTUP, or it does not start IPython)"
    ) in out, out
    assert not (project / "data" / "baselines" / "nbs" / "ok.json").exists()


BIG = (
    "import numpy as np\n"
    "import pandas as pd\n"
    "table = pd.DataFrame({'id': np.arange(200_000), 'score': np.arange(200_000) * 0.5})\n"
    "table.loc[123_456, 'score'] = hidden\n"
    "print(table)\n"
    "table"
)
BIG_ARRAY = "values = np.arange(50_000) * 0.5\nvalues[40_000] = hidden\nvalues"
RECORDED["big"] = lambda path: _notebook(path, BIG, BIG_ARRAY, params="hidden = 0.25")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_table_too_big_to_keep_whole_is_compared_by_a_digest_of_every_cell(
    recorded: Replayed, replayed_again: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DataFrame of 400,000 cells, printed and displayed, and a displayed array of 50,000 elements
    are kept in the baseline as pandas and numpy show them in a notebook (their first and last rows
    or elements) with a digest of every cell: the baseline stays small, a change where nothing is
    shown is still a regression, and the replay says what it compared by digest."""
    _copy_recorded(recorded, project, "big")  # recorded with hidden = 0.25
    baseline = project / "data" / "baselines" / "nbs" / "big.json"
    assert baseline.stat().st_size < 20_000
    assert 8 == json.loads(baseline.read_text())["version"]
    # Replayed unchanged (with other notebooks):
    assert "ok" == replayed_again.rows["nbs/big.ipynb"]["status"], replayed_again.block("nbs/big.ipynb")
    out = replayed_again.block("nbs/big.ipynb")
    table = "a table of 200,000 rows x 2 columns"
    assert (
        "too big to compare line by line (over 10,000 cells), so compared by a digest of every cell: "
        f"cell 1 (import numpy as np) stdout: {table}; "
        f"cell 1 (import numpy as np) result 1: {table}; cell 2 (values = np.arange(50_000) * 0.5) result 1: "
        "an array of 50,000 elements\n"
    ) in out, out
    assert 3 == len(replayed_again.rows["nbs/big.ipynb"]["digested"])
    page = (replayed_again.report / "index.html").read_text()
    assert f"compared by a digest of every cell: cell 1 (import numpy as np) stdout: {table}; " in page

    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "hidden", "0.75"])
    out = capsys.readouterr().out
    # sorted: the differences come in the order of the cells' ids (random), not of their places
    changed = sorted(line.strip() for line in out.splitlines() if line.lstrip().startswith("- cell "))
    assert 3 == len(changed), out
    for line, what in zip(changed, (table, table, "an array of 50,000 elements"), strict=True):
        assert what[-12:] in line, line
        assert re.search(r"digest of every cell [0-9a-f]{16}, at full precision [0-9a-f]{16}>\" -> ", line), line
    # Below what it shows (the digest as shown is the same), beyond the float tolerance, and within it.
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "hidden", "0.2500001"])
    (row,) = json.loads((project / "rep" / "summary.json").read_text())["notebooks"]
    assert 3 == len(row["diffs"]), row["diffs"]
    for diff in row["diffs"]:
        was, now = (
            re.search(r"cell ([0-9a-f]{16}), at full precision ([0-9a-f]{16})>", diff[k]) for k in ("before", "after")
        )
        assert was, diff
        assert now, diff
        assert was[1] == now[1], diff  # the same as shown
        assert was[2] != now[2], diff  # not at full precision
    assert 0 == main(["replay", "nbs", "--report", "rep", "-p", "hidden", "0.250000000001"]), capsys.readouterr().out
    executed = nbformat.read(project / "rep" / "runs" / "nbs" / "big" / "big.ipynb", as_version=4)
    (shown,) = [c for c in executed.cells if c.source.startswith("import numpy")]
    html_table = shown.outputs[-1].data["text/html"]
    assert "<p>200000 rows \N{MULTIPLICATION SIGN} 2 columns</p>" in html_table  # pandas' own cut
    assert len(html_table) < 10_000


@recorded_notebook("two")
def _two(path: Path) -> None:
    nb = _notebook(path, "print('upper', factor)", "print('calm')", "print('lower', factor)")
    ids = nbformat.read(nb, as_version=4)
    # Ids that sort against the cells' order: the first cell's comes last alphabetically.
    for cell, cell_id in zip(ids.cells, ("params", "zz-upper", "mm-calm", "aa-lower"), strict=True):
        cell.id = cell_id
    nbformat.write(ids, nb)


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_what_cells_show_differently_is_listed_in_the_notebooks_order(
    recorded: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Baselines are saved with sorted keys, and a cell's key is its random id: two cells that now
    show something else are still listed as the notebook has them, in the console, in the HTML
    report and in the report's summary.json, so a reader goes down the notebook once."""
    (nb,) = _copy_recorded(recorded, project, "two")  # recorded with factor = 2
    changed = nbformat.read(nb, as_version=4)
    changed.cells[0].source = changed.cells[0].source.replace("factor = 2", "factor = 3")
    nbformat.write(changed, nb)
    capsys.readouterr()
    assert 1 == main(["replay", "nbs", "--report", "rep"])
    out = capsys.readouterr().out
    upper = 'cell 1 (print(\'upper\', factor)): stdout line 1 "upper 2" -> "upper 3"'
    lower = 'cell 3 (print(\'lower\', factor)): stdout line 1 "lower 2" -> "lower 3"'
    assert [upper, lower] == [line.strip()[2:] for line in out.splitlines() if "- cell " in line], out
    summary = json.loads((project / "rep" / "summary.json").read_text())
    assert [upper, lower] == [d["text"] for d in summary["notebooks"][0]["diffs"] if d["cell"]]
    page = (project / "rep" / "index.html").read_text()
    assert page.index("cell 1 (print(&#x27;upper&#x27;, factor))") < page.index("cell 3 (print(&#x27;lower&#x27;")


SCORES = (
    "import numpy as np\n"
    "import pandas as pd\n"
    "scores = pd.DataFrame({'eval': ['tone', 'facts', 'format', 'safety'], 'score': [0.5, 0.25, 0.75, mean]})\n"
    "scores"
)
SCORES_ARRAY = "np.array([0.25, mean / 100])"
RECORDED["scores"] = lambda path: _notebook(path, SCORES, SCORES_ARRAY, params="mean = 0.8123451")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_change_below_what_a_table_or_array_shows_is_a_regression_naming_the_cell_and_how_much(
    recorded: Replayed, replayed_again: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An eval's mean that moves at its 7th decimal (0.8123451 -> 0.8123454) reads the same in the
    table pandas shows (6 decimals), and in an array numpy shows (8 decimals) a hundredth of it
    does too: each is still a regression, naming the row and column or the element and by how
    much it moved, shown as the user sees it. Unchanged, the notebook replays ok."""
    assert "ok" == replayed_again.rows["nbs/scores.ipynb"]["status"], replayed_again.block("nbs/scores.ipynb")
    _copy_recorded(recorded, project, "scores")  # recorded with mean = 0.8123451
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "mean", "0.8123454"])
    out = capsys.readouterr().out
    assert "      regression  nbs/scores.ipynb  (0 runs, " in out
    assert (
        "- cell 1 (import numpy as np): result 1 row 3, column 'score': 0.812345 -> 0.812345 "
        "(changed by 3e-07; shown at display precision)"
    ) in out, out
    assert (
        "- cell 2 (np.array([0.25, mean / 100])): result 1 element 1: 0.00812345 -> 0.00812345 "
        "(changed by 3e-09; shown at display precision)"
    ) in out, out
    assert 2 == out.count("- cell "), out


def test_the_latency_chart_lists_steps_in_the_order_a_run_meets_them(tmp_path: Path) -> None:
    """The report's latency chart lists a workflow's steps as its runs met them (draft, critique,
    revise), not as the baseline file sorts them (critique, draft, revise)."""
    import wfkit as wf

    essay = wf.Workflow("essay")
    for name in ("draft", "critique", "revise"):
        essay.step(lambda s: {}, name=name)
    essay.chain("draft", "critique", "revise")
    for i in range(3):
        essay.run({"i": i}, workspace=tmp_path / "ws", seed=i)
    current = summarise_workspace(tmp_path / "ws")
    base = json.loads(json.dumps(current, sort_keys=True))  # as a baseline file holds it
    fig = latency_chart("essay.ipynb", baseline_latency(base)[0], current["latency"])
    assert fig is not None
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ["draft (essay)", "critique (essay)", "revise (essay)"] == labels


def test_the_latency_chart_is_readable_in_a_1280_px_window(tmp_path: Path) -> None:
    """In Chromium at 1280x900, the report's latency chart is shown at nine tenths of its drawn size
    or more, so its step names and legend are read near the size they were set in (drawn at 585 px
    and shrunk to 392, it was a thumbnail of 7 px step names); it still links to itself."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); this browser test drives it")
    from playwright.sync_api import sync_playwright

    from wfkit.replay._compare import Difference
    from wfkit.replay._report import latency_plot, write_html
    from wfkit.replay._result import NotebookReport

    steps = ["classify", "web_search", "code_search", "sql_lookup", "answer"]
    base = {"router": {s: {"p50": 0.01 * (i + 1), "p99": 0.03 * (i + 1), "n": 30} for i, s in enumerate(steps)}}
    now = {"router": {s: {"p50": 0.012 * (i + 1), "p99": 0.05 * (i + 1), "n": 30} for i, s in enumerate(steps)}}
    key = "notebooks/02_branching_and_tools.ipynb"
    plot = latency_plot(tmp_path / "latency.png", key, base, now)
    diffs = [Difference("state", 0.3, 0.4, run=1, workflow="router")]
    page = write_html(tmp_path, [NotebookReport(key, "regression", 3.2, 5, diffs=diffs, plot=plot)], seconds=3.2)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.goto(page.as_uri())
            shown, drawn = tab.locator("td.chart img").evaluate(
                "img => [img.getBoundingClientRect().width, img.complete && img.naturalWidth]"
            )
            assert drawn > 100
            assert shown / drawn >= 0.9, (shown, drawn)
            assert "latency.png" == tab.locator("td.chart a").get_attribute("href")
            assert 1280 >= tab.evaluate("document.documentElement.scrollWidth")
            tab.screenshot(path=str(tmp_path / "report-1280.png"))
        finally:
            browser.close()


def test_the_latency_charts_title_is_whole_on_the_image_whatever_the_names(tmp_path: Path) -> None:
    """A long notebook path over long step names: the title, centred over the axes, ran off the
    image's right edge ("notebooks/02_branching_and_tools.ipynb: latency pe"). Every text of the
    saved figure lies inside it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    stats = {"p50": 0.002, "p99": 0.004}
    steps = {"a_step_with_a_rather_long_name": stats, "generate_answer": stats}
    latency = {"a-workflow-with-a-long-name": steps}
    fig = latency_chart("notebooks/02_branching_and_tools_and_then_some.ipynb", latency, latency)
    assert fig is not None
    canvas = FigureCanvasAgg(fig)
    fig.savefig(tmp_path / "chart.png", dpi=100)  # lays it out as the report does
    renderer = canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    ax = fig.axes[0]
    titles = [t for t in (fig._suptitle, ax.title) if t is not None and t.get_text()]
    # Whole, though broken into lines where it is longer than the chart is wide.
    assert [("notebooks/02_branching_and_tools_and_then_some.ipynb", "latency per step")] == [
        ("".join(t.get_text().split("\n")[:-1]), t.get_text().split("\n")[-1]) for t in titles
    ]
    for text in [*titles, *ax.get_yticklabels(), ax.xaxis.label]:
        box = text.get_window_extent(renderer)
        assert 0 <= box.x0, text.get_text()
        assert box.x1 <= width, text.get_text()
        assert 0 <= box.y0, text.get_text()
        assert box.y1 <= height, text.get_text()


def test_the_latency_charts_title_breaks_a_path_longer_than_the_image(tmp_path: Path) -> None:
    """A notebook path longer than the chart is wide (a folder per team, a descriptive name): the
    title, one line, was cut at both ends ("ooks/customer_support/...notebook_name."). It is broken
    into lines (after a slash or an underscore), every one inside the image, the whole path kept."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = "notebooks/customer_support/escalation_triage_with_a_very_long_descriptive_notebook_name.ipynb"
    stats = {"p50": 0.002, "p99": 0.004}
    latency = {"quickstart": {"plan": stats, "write": stats}}
    fig = latency_chart(path, latency, latency)
    assert fig is not None
    canvas = FigureCanvasAgg(fig)
    fig.savefig(tmp_path / "chart.png", dpi=100)
    title = fig._suptitle
    assert title is not None
    assert path == "".join(title.get_text().split("\n")[:-1])
    assert title.get_text().endswith("\nlatency per step")
    box = title.get_window_extent(canvas.get_renderer())
    assert 0 <= box.x0
    assert box.x1 <= fig.bbox.width


EVAL_CASES = (
    "import asyncio\n"
    "import wfkit as wf\n"
    "def build(scale=1):\n"
    "    flow = wf.Workflow(f'router-x{scale}')\n"
    "    async def classify(s):\n"
    "        await asyncio.sleep(0.005 * ((s['n'] * 5) % 8))  # the cases finish in an order of their own\n"
    "        return {'size': s['n'] * scale}\n"
    "    flow.step(classify)\n"
    "    flow.step(lambda s: {'answer': 'deep'}, name='deep')\n"
    "    flow.step(lambda s: {'answer': 'quick'}, name='quick')\n"
    "    flow.route('classify', wf.when('size', 'gt', cut) >> wf.go('deep'), default=wf.go('quick'))\n"
    "    return flow\n"
    "cases = [{'id': f'c{n}', 'inputs': {'n': n}, 'expected': {'answer': 'deep'}} for n in range(8)]\n"
    "suite = wf.evals.Suite(\n"
    "    name='routing',\n"
    "    dataset=cases[::-1] if reverse else cases,\n"
    "    workflow=build,\n"
    "    variants={'x1': {'scale': 1}, 'x2': {'scale': 2}},\n"
    "    scorers=[wf.evals.exact_match('answer')],\n"
    ")\n"
    "result = await wf.evals.evaluate_async(suite, workspace=workspace, concurrency=concurrency, progress=False)\n"
    "print(len(result.cases), 'scores')"
)


RECORDED["evals"] = lambda path: _notebook(
    path, EVAL_CASES, params="workspace = None\ncut = 4\nreverse = False\nconcurrency = 3"
)


def test_an_evals_runs_are_summarised_by_suite_variant_and_case(tmp_path: Path) -> None:
    """The runs of an eval, kept in the eval's own workspace (WORKSPACE/evals/runs), are read by
    suite, variant and case: the same whatever order the cases ran and finished in. An eval not
    saved (store=False) has its runs keyed by workflow and seed (the case's place in its dataset)."""
    import asyncio

    import wfkit as wf

    def build(scale: int = 1) -> wf.Workflow:
        flow = wf.Workflow(f"router-x{scale}")
        flow.step(lambda s: {"size": s["n"] * scale}, name="classify")
        flow.step(lambda s: {"answer": "deep"}, name="deep")
        flow.step(lambda s: {"answer": "quick"}, name="quick")
        flow.route("classify", wf.when("size", "gt", 4) >> wf.go("deep"), default=wf.go("quick"))
        return flow

    cases = [{"id": f"c{n}", "inputs": {"n": n}, "expected": {"answer": "deep"}} for n in range(4)]
    summaries, orders = [], []
    for name, dataset in (("ran", cases), ("reversed", cases[::-1])):
        suite = wf.evals.Suite(
            name="routing",
            dataset=dataset,
            workflow=build,
            variants={"x1": {"scale": 1}, "x2": {"scale": 2}},
            scorers=[wf.evals.exact_match("answer")],
        )
        asyncio.run(wf.evals.evaluate_async(suite, workspace=tmp_path / name, concurrency=1, progress=False))
        summary = summarise_workspace(tmp_path / name)
        assert [] == summary["runs"]  # the notebook's own runs: none
        summaries.append(summary["evals"])
        ws = wf.Workspace(tmp_path / name / "evals" / "runs")
        orders.append([(r["workflow"], ws.run_info(r["run_id"])["inputs"]) for r in ws.runs()])
    assert orders[0] != orders[1]
    assert summaries[0] == summaries[1]
    assert {"routing": {"x1": ["c0", "c1", "c2", "c3"], "x2": ["c0", "c1", "c2", "c3"]}} == {
        suite: {variant: sorted(runs) for variant, runs in variants.items()} for suite, variants in summaries[0].items()
    }
    c3 = summaries[0]["routing"]["x2"]["c3"]
    assert ("router-x2", "deep", {"n": 3}) == (c3["workflow"], c3["steps"]["classify#1"]["route"], c3["inputs"])

    suite = wf.evals.Suite(name="routing", dataset=cases, workflow=build, scorers=[wf.evals.exact_match("answer")])
    asyncio.run(wf.evals.evaluate_async(suite, workspace=tmp_path / "unsaved", progress=False, store=False))
    unsaved = summarise_workspace(tmp_path / "unsaved")["evals"]
    assert {"(not saved)": ["router-x1"]} == {suite: list(variants) for suite, variants in unsaved.items()}
    assert ["seed 0", "seed 1", "seed 2", "seed 3"] == sorted(unsaved["(not saved)"]["router-x1"])


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_an_evals_runs_replay_by_case_and_a_changed_route_is_a_regression_naming_it(
    recorded: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A notebook that runs an eval replays its runs case by case: run in another order (the
    dataset reversed, fewer at once) they replay ok; a routing rule that sends one case elsewhere,
    which no cell's output shows, is a regression naming the suite, variant, case and step."""
    _copy_recorded(recorded, project, "evals")  # recorded with cut = 4, in dataset order, 3 at once
    baseline = json.loads((project / "data" / "baselines" / "nbs" / "evals.json").read_text())
    assert {"x1", "x2"} == set(baseline["evals"]["routing"])
    capsys.readouterr()
    for order in (
        ["-p", "reverse", "True"],
        ["-p", "concurrency", "8"],
        ["-p", "reverse", "True", "-p", "concurrency", "1"],
    ):
        assert 0 == main(["replay", "nbs", "--report", "rep", *order]), capsys.readouterr().out
        assert "              ok  nbs/evals.ipynb  (16 runs, " in capsys.readouterr().out
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "cut", "5"])
    out = capsys.readouterr().out
    assert "      regression  nbs/evals.ipynb  (16 runs, " in out
    assert 'eval routing, variant x1, case c5 (router-x1), classify visit 1: route "deep" -> "quick"' in out
    assert "case c4" not in out
    assert "variant x2" not in out


SAVED_RESULTS = (
    "import wfkit as wf\n"
    "flow = wf.Workflow('dbl')\n"
    "flow.step(lambda s: {'y': s['x'] * 2}, name='double')\n"
    "rows = [{'id': str(i), 'x': i, 'expected': {'y': 2 * i}} for i in range(3)]\n"
    "suite = wf.evals.Suite(name='dbl', dataset=rows, workflow=flow, scorers=[wf.evals.exact_match('y')])\n"
    "first = wf.evals.evaluate(suite, progress=False)\n"
    "second = wf.evals.evaluate(suite, progress=False)\n"
    "print('saved to', (first if shown == 'first' else second).saved_to)\n"
    "print('named', second.saved_to.name)"
)
RECORDED["saved"] = lambda path: _notebook(path, SAVED_RESULTS, params="shown = 'first'")


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_where_an_eval_saved_its_result_replays_ok_and_printing_another_is_a_regression(
    recorded: Replayed, replayed_again: Replayed, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell printing an eval's `result.saved_to` (a folder named by the time and a random suffix)
    replays ok, again and again: it was a regression at every replay. Printing the folder of another
    of the notebook's saved results is still a regression, saying which."""
    assert "              ok  nbs/saved.ipynb  (6 runs, " in replayed_again.block("nbs/saved.ipynb")
    _copy_recorded(recorded, project, "saved")  # recorded with shown = 'first'
    assert 0 == main(["replay", "nbs", "--report", "rep"]), capsys.readouterr().out  # and once more
    assert "              ok  nbs/saved.ipynb  (6 runs, " in capsys.readouterr().out
    assert 1 == main(["replay", "nbs", "--report", "rep", "-p", "shown", "second"])
    out = capsys.readouterr().out
    assert (
        'cell 1 (import wfkit as wf): stdout line 1 "saved to <replay folder>/workspace/evals/dbl/<eval dbl result 1>"'
        ' -> "saved to <replay folder>/workspace/evals/dbl/<eval dbl result 2>"'
    ) in out
    assert "line 2" not in out


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_fourth_ticket_in_the_regression_notebook_is_a_regression_naming_the_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Notebook 07's `extra_run` change (a fourth ticket) replays to its end and is a regression
    naming the runs: its eval cell, judging the three tickets, failed on the fourth (`zip(...,
    strict=True)`), so the notebook failed and the replay benchmark counted the change missed."""
    args = ["replay", str(REGRESSION), "--root", str(ROOT), "--report", str(tmp_path)]
    code = main([*args, "-p", "change", "extra_run"])
    out = capsys.readouterr().out
    assert 1 == code, out
    assert "      regression  notebooks/07_regression_replay.ipynb  (7 runs, " in out
    assert "                  - runs 3 -> 4\n" in out
    assert 'run 4 (ticket-triage): new run: succeeded, inputs {"text": "where is my invoice?"}' in out


def test_a_random_uuid_in_what_a_cell_shows_is_masked_and_a_name_based_one_is_compared(tmp_path: Path) -> None:
    """A uuid4 (random) or uuid1 (time and host) a cell prints differs on every replay by construction,
    as a timestamp does, and is masked; a uuid5 is a function of its name and stays compared."""
    import uuid

    from wfkit.replay._outputs import cell_outputs

    source = _notebook(tmp_path / "src.ipynb", "print(ids)")
    named = uuid.uuid5(uuid.NAMESPACE_URL, "https://example.org/ticket/17")

    def shown(*printed: uuid.UUID) -> dict[str, object]:
        executed = nbformat.read(source, as_version=4)
        text = "".join(f"id {u}\n" for u in printed) + f"upper {str(printed[0]).upper()}\n"
        executed.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        path = tmp_path / "executed.ipynb"
        nbformat.write(executed, path)
        return cell_outputs(source, path, ids={}, folders={})

    first = shown(uuid.uuid4(), uuid.uuid1(), named)
    second = shown(uuid.uuid4(), uuid.uuid1(), named)
    assert first == second
    (cell,) = first.values()
    assert f"id <uuid>\nid <uuid>\nid {named}\nupper <uuid>\n" == cell["stdout"]


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--cell-timeout", "0", "must be a number of seconds above 0, got 0"),
        ("--cell-timeout", "-1", "must be a number of seconds above 0, got -1"),
        ("--timeout", "nan", "must be a number of seconds above 0, got nan"),
        ("--cell-timeout", "inf", "must be a number of seconds above 0, got inf"),
        ("--jobs", "0", "must be 1 or more, got 0"),
        ("--jobs", "-2", "must be 1 or more, got -2"),
    ],
)
def test_a_cell_timeout_or_jobs_that_would_be_read_otherwise_is_refused(
    project: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, said: str
) -> None:
    """papermill reads a cell timeout of 0 or less as no limit at all (a cell waiting for a click
    would hang the replay), and `--jobs 0` ran one process: each is a usage error, before anything
    runs, saying what the option takes."""
    _notebook(project / "nbs" / "ok.ipynb", "x")
    with pytest.raises(SystemExit) as info:
        main(["replay", "nbs", "--report", "rep", option, value])
    assert 2 == info.value.code
    err = capsys.readouterr().err
    assert said in err
    assert option.removeprefix("--").split("-")[0] in err
    assert not (project / "rep").exists()


def test_notebooks_named_after_an_option_are_replayed_too(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit replay a.ipynb --list-parameters b.ipynb` takes both notebooks (argparse left the
    second over as an unrecognized argument); an unknown option is still refused."""
    _notebook(project / "nbs" / "a.ipynb", "x")
    _notebook(project / "nbs" / "b.ipynb", "x", params="y = 2")
    assert 0 == main(["replay", "nbs/a.ipynb", "--list-parameters", "nbs/b.ipynb"])
    out = capsys.readouterr().out
    assert "nbs/a.ipynb: 3 parameters" in out
    assert "nbs/b.ipynb: 1 parameter" in out
    with pytest.raises(SystemExit) as info:
        main(["replay", "nbs/a.ipynb", "--list-parametres", "nbs/b.ipynb"])
    assert 2 == info.value.code
    assert "unrecognized arguments: --list-parametres" in capsys.readouterr().err


@pytest.mark.slow  # starts a Jupyter kernel per case (papermill)
@pytest.mark.parametrize(
    ("notebook", "parameters", "said"),
    [
        (
            "06_latency_analysis",
            {"concurrency": 0},
            "runs and concurrency must be at least 1, got runs=150, concurrency=0",
        ),
        ("06_latency_analysis", {"runs": 0}, "runs and concurrency must be at least 1, got runs=0, concurrency=16"),
        ("03_retries_and_timeouts", {"runs": 0}, "runs must be at least 1, got 0: pass e.g. papermill -p runs 30"),
    ],
)
def test_a_notebook_run_with_nothing_to_run_says_so(
    tmp_path: Path, notebook: str, parameters: dict[str, int], said: str
) -> None:
    """Notebook 06 run with `-p concurrency 0` waited for ever (no run ever got a slot), with
    `-p runs 0` it failed with a WorkspaceNotFoundError that blamed the workspace; notebook 03 with
    `-p runs 0` printed empty tables and "gave up: 0 of 0" as if that were a result. Each now stops
    at once, in its first cell after the parameters, saying which value to give."""
    import papermill

    path = ROOT / "notebooks" / f"{notebook}.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as raised:
        papermill.execute_notebook(
            str(path),
            str(tmp_path / "out.ipynb"),
            parameters={**parameters, "workspace": str(tmp_path / "ws")},
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=False,
            execution_timeout=60,
        )
    assert raised.value.ename == "ValueError"
    assert said in raised.value.evalue
    assert not (tmp_path / "ws").exists()  # nothing ran


@pytest.mark.slow  # runs notebooks in Jupyter kernels (papermill)
def test_a_replay_with_other_parameters_than_its_baseline_says_so(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit replay nb -p seed 8` against a baseline recorded with the defaults reported every
    difference as a regression, and its advice (`--update-baseline`, without `-p`) would have
    recorded the defaults again. A baseline now keeps the parameters it was recorded with, and a
    replay with others says so first, with the commands for either; the same parameters compare
    as before."""
    _notebook(project / "nbs" / "p.ipynb", "print(x * factor)")
    assert 0 == main(["replay", "nbs", "--report", "r", "--update-baseline"])
    assert "parameters" not in json.loads((project / "data" / "baselines" / "nbs" / "p.json").read_text())
    capsys.readouterr()
    assert 1 == main(["replay", "nbs", "--report", "r", "-p", "x", "3"])
    out = capsys.readouterr().out
    assert (
        "its baseline was recorded with the parameters none (the notebook's defaults), and this replay ran with "
        "x=3: the differences below may follow from that alone. Replay it with the baseline's (`wfkit replay "
        "nbs/p.ipynb`), or record a baseline of these (`wfkit replay nbs/p.ipynb -p x 3 --update-baseline`)"
    ) in out
    assert "a change you meant: record it, `wfkit replay nbs/p.ipynb -p x 3 --update-baseline`" in out
    assert 0 == main(["replay", "nbs", "--report", "r", "-p", "x", "3", "--update-baseline"])
    assert {"x": 3} == json.loads((project / "data" / "baselines" / "nbs" / "p.json").read_text())["parameters"]
    assert 0 == main(["replay", "nbs", "--report", "r", "-p", "x", "3"])
    capsys.readouterr()
    assert 1 == main(["replay", "nbs", "--report", "r"])
    assert "recorded with the parameters x=3, and this replay ran with none (the notebook's defaults)" in (
        capsys.readouterr().out
    )
