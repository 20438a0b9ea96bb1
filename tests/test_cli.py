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
