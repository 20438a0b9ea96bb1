"""Tests for wfkit.replay._parameters: declared parameters, papermill's -f/-y/-p, and name validation."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from wfkit.cli._cli import main
from wfkit.replay._errors import ReplayError
from wfkit.replay._parameters import (
    check_parameters,
    declared_parameters,
    describe_parameters,
    gather_parameters,
    notebook_parameters,
    parse_value,
)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = 'x = 1   # how many\ny: int = 2\nmode = "a"  # one of:\n             # a | b\nprint("not a parameter")'


def _notebook(path: Path, params: str = PARAMS) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print(x)")]
    nbformat.write(nb, path)
    return path


def test_declared_parameters_keep_defaults_and_comments(tmp_path: Path) -> None:
    """Each assignment of the parameters cell, with its default and the comments beside and below it."""
    nb = _notebook(tmp_path / "p.ipynb")
    assert {"x": "1", "y": "2", "mode": '"a"'} == declared_parameters(nb)
    assert ["how many", "", "one of: a | b"] == [p.comment for p in notebook_parameters(nb)]
    assert (
        'p.ipynb: 3 parameters\n  x    = 1    # how many\n  y    = 2\n  mode = "a"  # one of: a | b'
        == describe_parameters(nb, "p.ipynb")
    )


def test_a_notebook_without_a_parameters_cell_declares_none(tmp_path: Path) -> None:
    """No tagged cell: no parameters, said plainly."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert [] == notebook_parameters(tmp_path / "n.ipynb")
    assert "declares no parameters" in describe_parameters(tmp_path / "n.ipynb", "n.ipynb")


def test_list_parameters_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit replay --list-parameters NOTEBOOK` prints each parameter with its default."""
    assert 0 == main(["replay", "--list-parameters", str(ROOT / "notebooks" / "07_regression_replay.ipynb")])
    out = capsys.readouterr().out
    assert out.startswith("notebooks/07_regression_replay.ipynb: 4 parameters\n")
    assert '  change       = "none"' in out


def test_parameters_gather_in_papermills_order(tmp_path: Path) -> None:
    """-f file, then -y YAML, then -p pairs: a later source overrides an earlier one."""
    file = tmp_path / "p.yaml"
    file.write_text("x: 10\ny: 20\nmode: file\n")
    assert {"x": 3, "y": 30, "mode": "file"} == gather_parameters(
        file=file, yaml_text="y: 30\nx: 1", pairs=[("x", "3")]
    )
    assert [1, 2] == parse_value("[1, 2]")
    assert "text" == parse_value("text")


def test_a_decisions_file_named_where_the_command_was_typed_reaches_the_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wfkit replay nb/x.ipynb -p wfkit_policy decisions.jsonl` named a file of the folder the
    command was typed in, and the notebook, run in its own folder, could not read it: such a path
    is made absolute. A named policy, an absolute path, and a path that is no file here (it may
    name one beside the notebook) are passed as given."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "decisions.jsonl").write_text("")
    (tmp_path / "nb").mkdir()
    assert {"wfkit_policy": str(tmp_path / "decisions.jsonl")} == gather_parameters(
        pairs=[("wfkit_policy", "decisions.jsonl")]
    )
    for given in ("approve", str(tmp_path / "decisions.jsonl"), "beside-the-notebook.jsonl", "nb"):
        assert {"wfkit_policy": given} == gather_parameters(yaml_text=f"wfkit_policy: {given}")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"yaml_text": "x: [1"}, "-y/--parameters-yaml is not valid YAML"),
        ({"yaml_text": "- 1\n- 2"}, "must be a YAML mapping"),
        ({"file": Path("does-not-exist.yaml")}, "cannot read the parameters file"),
    ],
)
def test_bad_parameter_sources_are_refused(kwargs: dict[str, object], message: str) -> None:
    """Unreadable or non-mapping YAML is an error saying which source and what it should be."""
    with pytest.raises(ReplayError, match=message):
        gather_parameters(**kwargs)  # type: ignore[arg-type]


def test_parameters_must_be_declared_identifiers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A crafted or unknown parameter name is refused before anything runs, from any source."""
    nb = _notebook(tmp_path / "p.ipynb", "x = 1\ny: int = 2")
    assert {"x": 3} == check_parameters(nb, {"x": 3})
    with pytest.raises(ReplayError, match="must be Python identifiers"):
        check_parameters(nb, {"x; import os": 1})
    with pytest.raises(ReplayError, match="does not declare parameter\\(s\\) 'z'; it declares: x, y"):
        check_parameters(nb, {"z": 1})
    args = ["replay", str(nb), "--root", str(tmp_path), "--report", str(tmp_path / "r")]
    assert 2 == main([*args, "-p", "__import__('os')", "1"])
    assert "identifiers" in capsys.readouterr().err
    assert 2 == main([*args, "-y", "'__import__(\"os\")': 1"])
    assert "identifiers" in capsys.readouterr().err
    (tmp_path / "p.yaml").write_text("z: 1\n")
    assert 2 == main([*args, "-f", str(tmp_path / "p.yaml")])
    assert "does not declare parameter(s) 'z'" in capsys.readouterr().err
