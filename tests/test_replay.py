"""`wfkit replay`: notebooks run headless under papermill and are compared with baselines."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from wfkit.cli._cli import main
from wfkit.replay._replay import ReplayError, check_parameters, compare, declared_parameters, parse_value

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REGRESSION = ROOT / "notebooks" / "07_regression_replay.ipynb"


def _notebook(path: Path, *sources: str, params: str = "x = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_every_notebook_is_committed_without_outputs() -> None:
    """Notebooks in git carry no outputs and no execution counts."""
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert [] == cell.outputs, path.name
                assert cell.execution_count is None, path.name
        assert declared_parameters(path), f"{path.name} has no parameters cell"


def test_all_notebooks_replay_against_their_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every notebook runs headless under papermill, on the store's default level, and matches its baseline."""
    monkeypatch.delenv("WFKIT_SYNCHRONOUS")  # as `wfkit replay` runs for a user: synchronous=FULL
    code = main(
        [
            "replay",
            *map(str, NOTEBOOKS),
            "--baseline",
            str(ROOT / "data" / "baselines"),
            "--report",
            str(tmp_path / "report"),
            "--jobs",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert 0 == code, out
    assert len(NOTEBOOKS) == out.count(" ok  ")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert {"ok"} == {row["status"] for row in summary["notebooks"]}
    page = (tmp_path / "report" / "index.html").read_text()
    plots = sorted(p.name for p in (tmp_path / "report").glob("*-latency.png"))
    assert len(NOTEBOOKS) == len(plots)
    assert all(f'src="{name}"' in page for name in plots)


def test_a_seeded_change_is_a_regression_with_a_readable_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An extra retry makes replay exit non-zero and name what changed."""
    code = main(
        [
            "replay",
            str(REGRESSION),
            "--baseline",
            str(ROOT / "data" / "baselines"),
            "--report",
            str(tmp_path),
            "-p",
            "change",
            "extra_retry",
        ]
    )
    out = capsys.readouterr().out
    assert 1 == code
    assert "regression  07_regression_replay.ipynb" in out
    assert 'retries {} -> {"lookup": 2}' in out
    assert "regression" in (tmp_path / "index.html").read_text()


def test_update_baseline_then_replay_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--update-baseline records the runs; replaying the same notebook then matches."""
    args = [
        "replay",
        str(ROOT / "notebooks" / "01_quickstart.ipynb"),
        "--baseline",
        str(tmp_path / "base"),
        "--report",
        str(tmp_path / "rep"),
    ]
    assert 0 == main([*args, "--update-baseline"])
    assert (tmp_path / "base" / "01_quickstart.json").exists()
    assert 0 == main(args)
    assert "ok  01_quickstart.ipynb" in capsys.readouterr().out


def test_parameters_must_be_declared_identifiers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A crafted or unknown parameter name is refused before anything runs."""
    nb = _notebook(tmp_path / "p.ipynb", "print(x)", params="x = 1\ny: int = 2")
    assert {"x", "y"} == set(declared_parameters(nb))
    assert {"x": 3} == check_parameters(nb, {"x": 3})
    with pytest.raises(ReplayError, match="must be Python identifiers"):
        check_parameters(nb, {"x; import os": 1})
    with pytest.raises(ReplayError, match="does not declare parameter\\(s\\) 'z'; it declares: x, y"):
        check_parameters(nb, {"z": 1})
    assert 2 == main(["replay", str(nb), "--report", str(tmp_path / "r"), "-p", "__import__('os')", "1"])
    assert "identifiers" in capsys.readouterr().err
    assert [1, 2] == parse_value("[1, 2]")
    assert "text" == parse_value("text")


def test_broken_notebooks_are_failed_rows_not_crashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An error, a cell timeout and a dead kernel each give a failed row naming the cell."""
    error = _notebook(tmp_path / "error.ipynb", "1 / 0")
    slow = _notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(30)")
    dies = _notebook(tmp_path / "dies.ipynb", "import os\nos._exit(3)")
    code = main(
        [
            "replay",
            str(error),
            str(slow),
            str(dies),
            "--baseline",
            str(tmp_path / "b"),
            "--report",
            str(tmp_path / "r"),
            "--timeout",
            "3",
            "--jobs",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert 1 == code
    rows = {r["notebook"]: r for r in json.loads((tmp_path / "r" / "summary.json").read_text())["notebooks"]}
    assert ("failed", 1, "ZeroDivisionError") == (
        rows["error.ipynb"]["status"],
        rows["error.ipynb"]["error"]["cell"],
        rows["error.ipynb"]["error"]["exception"],
    )
    assert "failed" == rows["slow.ipynb"]["status"]
    assert 1 == rows["slow.ipynb"]["error"]["cell"]
    assert "failed" == rows["dies.ipynb"]["status"]
    assert "failed  dies.ipynb" in out


def test_compare_reports_each_kind_of_difference() -> None:
    """compare() names changed paths, outputs (with float tolerance), retries and run counts."""
    run = {
        "workflow": "w",
        "status": "succeeded",
        "path": ["a", "b"],
        "decisions": [],
        "error_kinds": [],
        "retries": {},
        "outputs": {"score": 0.5, "text": "hi"},
    }
    base = {"settings": {"float_tolerance": 0.01}, "runs": [run]}
    assert [] == compare(base, {"runs": [{**run, "outputs": {"score": 0.505, "text": "hi"}}]})
    diffs = compare(base, {"runs": [{**run, "path": ["a"], "outputs": {"score": 0.9}, "retries": {"a": 1}}, run]})
    assert "number of runs: 1 -> 2" in diffs
    assert 'run 1 (w): path ["a", "b"] -> ["a"]' in diffs
    assert "run 1 (w): output 'score' 0.5 -> 0.9" in diffs
    assert "run 1 (w): output 'text' is gone (was \"hi\")" in diffs
    assert 'run 1 (w): retries {} -> {"a": 1}' in diffs


def test_a_gate_under_papermill_without_a_policy_fails_the_notebook_clearly(tmp_path: Path) -> None:
    """Headless under papermill, a gate with no decision policy fails the notebook with a clear
    message instead of waiting forever for a click nobody can make."""
    nb = _notebook(
        tmp_path / "gate.ipynb",
        "import wfkit as wf\nflow = wf.Workflow('gated')\n"
        "flow.step(lambda s: {'ok': True}, name='pay', approval='Payments need a human')\n"
        "run = flow.run({}, raise_on_error=False)\n"
        "assert run.status == 'succeeded', run.error",
    )
    code, rows = replay_notebooks([nb], tmp_path)
    assert 1 == code
    assert "failed" == rows[0]["status"]
    assert 1 == rows[0]["error"]["cell"]
    summary = json.loads((tmp_path / "r" / "runs" / "gate" / "summary.json").read_text())
    assert ["failed"] == [r["status"] for r in summary["runs"]]


def replay_notebooks(notebooks: list[Path], tmp_path: Path) -> tuple[int, list[dict[str, object]]]:
    from wfkit.replay._replay import replay

    return replay(notebooks, baseline=tmp_path / "b", report=tmp_path / "r", jobs=1, timeout=60)
