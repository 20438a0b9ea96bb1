"""The wfkit command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import wfkit
from wfkit.cli._cli import main


def test_version_from_console_script() -> None:
    """`wfkit --version` prints the package version (through the installed entry point)."""
    exe = [sys.executable, "-m", "wfkit.cli._cli", "--version"]
    out = subprocess.run(exe, capture_output=True, text=True, check=True)
    assert f"wfkit {wfkit.__version__}" == out.stdout.strip()


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command the usage is shown and the exit code is 2."""
    assert main([]) == 2
    assert "usage: wfkit" in capsys.readouterr().out


def test_demo_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit demo` routes queries through the example workflow and prints a summary."""
    assert main(["demo", "--runs", "14", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "query-router: 14 runs, offline, seed 1" in out
    assert "run status: succeeded 14" in out
    assert "classify > code_search > generate_answer" in out
    assert "p99 ms" in out


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command exits with argparse's usage error."""
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _router() -> wfkit.Workflow:
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import durable_flows

    return durable_flows.router


def test_fork_sets_fields_from_json_and_runs_the_fork(capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit fork RUN --at classify --set kind='"other"'` prints the fork's id and it took the other route."""
    flow = _router()
    run = flow.run({"query": "money back"})
    code = main(["fork", run.run_id, "--at", "classify", "--set", 'kind="other"', "--workflow", "durable_flows:router"])
    out = capsys.readouterr().out
    assert 0 == code, out
    fork_id = out.split()[1]
    assert f"run {fork_id} (forked from {run.run_id} at 'classify'): succeeded" == out.strip()
    info = wfkit.Workspace().run_info(fork_id)
    assert "about other" == info["state"]["answer"]
    assert {"run_id": run.run_id, "at": "classify", "visit": 1} == info["forked_from"]


def test_fork_refuses_a_set_value_that_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    """An unquoted string is refused with the quoting that works."""
    run = _router().run({"query": "money back"})
    with pytest.raises(SystemExit, match="is not JSON; quote strings as JSON"):
        main(["fork", run.run_id, "--at", "classify", "--set", "kind=other", "--workflow", "durable_flows:router"])


def test_fork_of_a_notebook_run_asks_for_the_workflow() -> None:
    """A run whose workflow cannot be imported by name needs --workflow."""
    flow = wfkit.Workflow("from-a-notebook")
    flow.step(lambda s: {"a": 1}, name="a")
    flow._module = "__main__"
    run = flow.run({})
    with pytest.raises(SystemExit, match="pass --workflow module:name, or fork it from Python"):
        main(["fork", run.run_id, "--at", "a"])


def test_cache_clear_drops_the_workspace_entries(capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit cache clear` reports how many entries it dropped, then there are none left."""
    flow = wfkit.Workflow("cli-cached")
    flow.step(lambda s: {"b": s["a"] + 1}, name="inc", cache=True)
    flow.run({"a": 1})
    flow.run({"a": 2})
    assert 0 == main(["cache", "clear", "--workflow", "cli-cached"])
    assert "dropped 2 cache entries from" in capsys.readouterr().out
    assert 0 == main(["cache", "clear"])
    assert "dropped 0 cache entries from" in capsys.readouterr().out
