"""The wfkit command line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

import wfkit
import wfkit as wf
from wfkit.cli._cli import main
from wfkit.examples import ARTICLE_QUERIES, rag_router


def test_version_from_console_script() -> None:
    """`wfkit --version` prints the package version (through the installed entry point)."""
    exe = [sys.executable, "-m", "wfkit.cli._cli", "--version"]
    out = subprocess.run(exe, capture_output=True, text=True, check=True)
    assert f"wfkit {wfkit.__version__}" == out.stdout.strip()


def test_output_piped_to_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    """`wfkit runs | head -5` printed "wfkit runs: [Errno 32] Broken pipe" and exited 1, as if
    something had gone wrong. A reader that stops reading (its end of the pipe closed here before
    wfkit writes, so the pipe surely breaks) now ends the command silently, as it ends `ls` or `git
    log`: nothing on stderr, exit 141 (128 + SIGPIPE) for a shell's pipefail."""
    flow = wf.Workflow("piped")
    flow.step(lambda s: None, name="a")
    flow.run({}, workspace=tmp_path / "ws")
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "wfkit", "runs", "--workspace", str(tmp_path / "ws")],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141


def test_a_misspelt_command_or_choice_names_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit sho RUN` answered "invalid choice: 'sho' (choose from 'demo', 'runs', ... 18 names)",
    leaving the reader to spot `show` in the list; a misspelt `--status` likewise. The error now
    ends with the closest name (exit code 2, as before)."""
    with pytest.raises(SystemExit) as info:
        main(["sho", "01abc"])
    assert 2 == info.value.code
    assert capsys.readouterr().err.rstrip().endswith("invalid choice: 'sho'; did you mean 'show'?")
    with pytest.raises(SystemExit):
        main(["runs", "--status", "succeded"])
    err = capsys.readouterr().err
    assert err.startswith("usage: wfkit runs")
    assert err.rstrip().endswith("; did you mean 'succeeded'?")
    with pytest.raises(SystemExit):
        main(["xyzzy"])  # nothing close: the list, as argparse gives it
    assert "(choose from 'demo', 'runs'" in capsys.readouterr().err


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


# What each command's own --help says it does (the same words as its line in `wfkit --help`).
COMMAND_SUMMARIES = {
    ("demo",): "Run the built-in query-router workflow offline and summarise the runs.",
    ("runs",): "List runs: id, workflow, status, started, steps done.",
    ("show",): "One run's steps, attempts, tickets and intents.",
    ("pending",): "Open approval tickets.",
    ("approve",): "Approve an approval ticket.",
    ("reject",): "Reject an approval ticket.",
    ("resume",): "Continue a stopped run from its last completed step.",
    ("fork",): "Start a new run from a stored run's checkpoint at a step, with changed state.",
    ("cache",): "The step cache kept in the workspace.",
    ("cache", "clear"): "Drop cached step results.",
    ("reconcile",): "Settle an irreversible step cut off by a crash.",
    ("eval",): "Score a workflow suite over its dataset, compare variants.",
    ("logs",): "Step-log files: export missing rows, compact small files.",
    ("doctor",): "Check a workspace (SQLite integrity, checksums, the step log's ledger) or a Dask dataset (jobs "
    "whose driver died before they ended, or left rows staged).",
    ("report",): "Latency, failures, cost and timeout advice as HTML + PNG.",
    ("validate",): "Check a flow spec: every problem with its JSON path.",
    ("run",): "Run a flow spec once on JSON inputs.",
    ("graph",): "Draw a flow spec as SVG, Mermaid or Graphviz DOT.",
    ("replay",): "Run notebooks headless under papermill and compare their runs and cell outputs with baselines.",
}


def test_every_command_is_covered_by_the_help_test() -> None:
    """The list above names every command of `wfkit`."""
    from wfkit.cli._cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert sorted(commands) == sorted(c[0] for c in COMMAND_SUMMARIES if len(c) == 1)


@pytest.mark.parametrize("command", sorted(COMMAND_SUMMARIES), ids=" ".join)
def test_each_command_help_says_what_it_does(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit COMMAND --help` says what the command does under its usage, not only its options."""
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert COMMAND_SUMMARIES[command] in out


def _arguments(parser: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every argument of every command (and sub-command) of a parser, with the command's words."""
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    found: list[tuple[tuple[str, ...], object]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _arguments(child, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            found.append((path, action))
    return found


def test_every_option_and_argument_says_what_it_is_in_help() -> None:
    """`wfkit show --help` listed `run_id` and `--json` with no word on them (so were `ticket`,
    `--comment`, `logs`'s `{compact,export}`, `graph --format`, ...): a newcomer could not tell
    what `--json` prints or what each `logs` action does without reading the source."""
    from wfkit.cli._cli import build_parser

    silent = [
        " ".join([*path, *(getattr(action, "option_strings", None) or [getattr(action, "dest", "")])])
        for path, action in _arguments(build_parser())
        if not getattr(action, "help", None)
    ]
    assert [] == silent


def test_the_demo_help_gives_its_default_seed(capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit demo --help` said "seed for the simulated failures" but not which seed it uses unasked."""
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "seed for the simulated failures (default 7)" in " ".join(capsys.readouterr().out.split())


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command exits with argparse's usage error."""
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ---- errors say what and how ------------------------------------------------------------------------


def _gated_run(workspace: Path) -> wfkit.Run:
    flow = wfkit.Workflow("cli-gated")
    flow.step(lambda s: {"a": 1}, name="first")
    flow.step(lambda s: {"b": 2}, name="second", approval="check it")
    flow.chain("first", "second")
    return flow.run({}, workspace=workspace, policy="halt")


@pytest.mark.parametrize("command", [["runs"], ["show", "r1"], ["pending"], ["logs", "export"], ["doctor"]])
def test_read_commands_never_create_a_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A read command on a missing workspace exits 1 naming the path and how to create one, creating nothing."""
    missing = tmp_path / "nowhere" / "ws"
    assert 1 == main([*command, "--workspace", str(missing)])
    err = capsys.readouterr().err
    assert f"no workspace at {missing}" in err
    assert "flow.run(inputs, workspace=" in err
    assert not missing.parent.exists()


def test_a_workspace_that_is_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--workspace naming a file is refused as "a file, not a folder", not [Errno 17]."""
    path = tmp_path / "file"
    path.write_text("")
    assert 1 == main(["runs", "--workspace", str(path)])
    assert f"the workspace {path} is a file, not a folder" in capsys.readouterr().err


def test_an_unwritable_workspace_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A folder where no store can be (here /proc/1) is an error naming it, not a raw sqlite3 error."""
    assert 1 == main(["runs", "--workspace", "/proc/1"])
    assert "wfkit runs: no workspace at /proc/1" in capsys.readouterr().err


def test_an_unknown_status_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit runs --status bogus` is a usage error listing every status."""
    with pytest.raises(SystemExit):
        main(["runs", "--status", "bogus"])
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    assert "'interrupted'" in err


@pytest.mark.parametrize(
    ("argv", "usage", "hint"),
    [
        (["runs", "--stauts", "running"], "usage: wfkit runs ", "; did you mean --status?"),
        (["cache", "clear", "--workfow=x"], "usage: wfkit cache clear ", "; did you mean --workflow?"),
        (["show", "r1", "--jsn", "--zzz"], "usage: wfkit show ", "--jsn --zzz; did you mean --json?"),
        (["pending", "--zzz"], "usage: wfkit pending ", "unrecognized arguments: --zzz\n"),
    ],
    ids=["runs", "cache-clear", "two-unknown", "none-close"],
)
def test_a_misspelt_option_of_a_command_shows_its_usage_and_the_closest_option(
    argv: list[str], usage: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An option a command does not take is a usage error of that command (its usage, not wfkit's),
    suggesting the option it is closest to when one is close."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert 2 == info.value.code
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert f"{usage.removeprefix('usage: ').strip()}: error: unrecognized arguments: " in err
    assert hint in err


@pytest.mark.parametrize("limit", ["0", "-3", "ten"])
def test_runs_refuses_a_limit_that_would_list_nothing(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit runs --limit 0` is a usage error, not "no runs in this workspace" over a full one."""
    with pytest.raises(SystemExit):
        main(["runs", "--limit", limit])
    err = capsys.readouterr().err
    assert "--limit" in err
    assert "must be 1 or more" in err or "expected a whole number" in err


@pytest.mark.parametrize(
    ("argv", "option", "what"),
    [
        (["demo", "--runs", "0"], "--runs", "it is how many queries the demo routes (default 40)"),
        (["demo", "--runs", "-5"], "--runs", "it is how many queries the demo routes (default 40)"),
        (["fork", "abc123", "--at", "s", "--visit", "0"], "--visit", "a step's visits count from 1"),
        (["eval", "evals/query_router", "--partition-size", "0"], "--partition-size", "each Dask partition runs"),
    ],
)
def test_a_count_below_one_is_a_usage_error_saying_what_it_counts(
    workspace: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str, what: str
) -> None:
    """`wfkit demo --runs 0` printed "0 runs" and empty tables and exited 0 (`--runs -5` the same,
    exiting 1 without a word); `wfkit fork RUN --at s --visit 0` said the run "never completed step
    's' (visit 0)" while listing s among the steps it completed; `--partition-size 0` was taken.
    Each is now a usage error naming the option and what it counts, before anything runs."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert 2 == info.value.code
    err = capsys.readouterr().err
    assert f"error: argument {option}: must be 1 or more, got {argv[-1]}; " in err, err
    assert what in err, err
    assert not workspace.exists()


def test_eval_refuses_a_partition_size_without_dask(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit eval SUITE --partition-size 5` without --dask ran every case in this process and ignored
    the option without a word (as --dataset without --dask is refused); it is refused, saying so."""
    suite = Path(__file__).resolve().parents[1] / "evals" / "query_router"
    assert 2 == main(["eval", str(suite), "--partition-size", "5"])
    assert (
        "wfkit eval: --partition-size is how many cases each Dask partition runs; give --dask ADDRESS too "
        "(without it the cases run in this process, --concurrency at a time)\n"
    ) == capsys.readouterr().err
    assert not (workspace / "evals").exists()


@pytest.mark.parametrize("command", ["approve", "reject", "reconcile"])
@pytest.mark.parametrize("by", ["", "   "])
def test_a_blank_by_is_a_usage_error_saying_to_give_a_name(
    workspace: Path, capsys: pytest.CaptureFixture[str], command: str, by: str
) -> None:
    """`wfkit approve TICKET --by ""` exited 1 with "a decision needs the reviewer's name (by=...)", the
    Python keyword, as if the decision had failed; `wfkit reconcile ... --by " "` likewise. A blank
    --by is now a usage error (exit 2, before the workspace is opened) saying to give a name, and the
    ticket stays open."""
    run = _gated_run(workspace)
    [ticket] = wfkit.Workspace(workspace).pending()
    target = [ticket.ticket_id] if command != "reconcile" else [run.run_id, "second", "--done"]
    with pytest.raises(SystemExit) as info:
        main([command, *target, "--by", by, "--workspace", str(workspace)])
    assert 2 == info.value.code
    err = capsys.readouterr().err
    assert err.startswith(f"usage: wfkit {command}"), err
    assert err.rstrip().endswith(f"error: argument --by: names no one ({by!r}): give your name, e.g. --by ana"), err
    assert [ticket.ticket_id] == [t.ticket_id for t in wfkit.Workspace(workspace).pending()]


def test_reconcile_of_an_unknown_run_says_there_is_no_such_run(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit reconcile nosuchrun STEP` names the missing run, not "has no irreversible step"."""
    _gated_run(workspace)
    assert 1 == main(["reconcile", "nosuchrun", "send", "--done", "--by", "ops"])
    assert "no run 'nosuchrun'" in capsys.readouterr().err


def test_reconcile_with_bad_updates_json_says_how(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--updates that is not a JSON object says so with an example."""
    run = _gated_run(workspace)
    assert 1 == main(["reconcile", run.run_id, "send", "--done", "--by", "ops", "--updates", "{nope"])
    assert "--updates is not JSON" in capsys.readouterr().err
    assert 1 == main(["reconcile", run.run_id, "send", "--done", "--by", "ops", "--updates", "[1]"])
    assert "--updates must be a JSON object" in capsys.readouterr().err


def test_runs_shows_an_interrupted_run_and_filters_by_it(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run stored as running whose process is gone lists as interrupted, and --status interrupted finds it."""
    run = _gated_run(workspace)
    with contextlib.closing(sqlite3.connect(workspace / "wfkit.db")) as conn, conn:
        conn.execute(
            "UPDATE runs SET status='running', lease_owner='x', lease_host=?, lease_pid=?, lease_expires=? "
            "WHERE run_id=?",
            (socket.gethostname(), _dead_pid(), time.time() + 60, run.run_id),
        )
    assert 0 == main(["runs", "--status", "interrupted", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(run.run_id, "interrupted")] == [(r["run_id"], r["status"]) for r in rows]
    assert 0 == main(["runs", "--status", "running", "--json"])
    assert [] == json.loads(capsys.readouterr().out)


def test_runs_lines_up_ids_of_any_length(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit runs` prints every id whole, and the columns after it start at one place: a fresh
    24-digit id, a short one of the caller's and a long one."""
    flow = wfkit.Workflow("cli-ids")
    flow.step(lambda s: {"a": 1}, name="only")
    ids = [flow.run({}, workspace=workspace).run_id]
    ids += [
        flow.run({}, workspace=workspace, run_id=run_id).run_id for run_id in ("r1", "a-rather-long-run-id-of-mine")
    ]
    assert 0 == main(["runs"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run_id ")
    assert sorted(ids) == sorted(line.split()[0] for line in lines[1:])
    assert {lines[0].index("workflow")} == {line.index("cli-ids") for line in lines[1:]}


def test_approve_from_the_cli_records_and_says_how_to_resume(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit approve` records the decision; with no workflow defined in the CLI's process it says how to
    resume, and of a run a script started (no workflow recorded) the command names --workflow."""
    run = _gated_run(workspace)
    [ticket] = run.tickets()
    import wfkit.engine._workflow as workflows

    workflows._by_name.pop("cli-gated", None)  # the CLI is another process: it defines no workflow
    assert 0 == main(["approve", ticket.ticket_id, "--by", "ana"])
    assert f"resume with `wfkit resume {run.run_id} --workflow module:name`" in capsys.readouterr().out
    assert "approved" == wfkit.Workspace().ticket(ticket.ticket_id).status


def test_show_given_a_flow_spec_says_it_takes_a_run_and_what_reads_a_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit show router.yaml` (a spec where a run id goes) says show takes a run id and names the
    commands that read a spec; it said only "no run 'router.yaml' in ...", as if the run were lost."""
    monkeypatch.chdir(tmp_path)
    rag_router().save(tmp_path / "router.yaml")
    assert 1 == main(["show", "router.yaml"])
    assert (
        "wfkit show: router.yaml is a file; `wfkit show` takes a run id (`wfkit runs` lists them). For a flow "
        "spec, `wfkit validate router.yaml` checks it, `wfkit graph router.yaml --format mermaid` draws it and "
        "`wfkit run router.yaml --input JSON` runs it\n"
    ) == capsys.readouterr().err


def test_show_says_who_decided_a_gate_and_why(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit show` gives a decision's row the reviewer and the comment, on one line (the comment was
    dropped: only the reviewer's name showed)."""
    run = _gated_run(workspace)
    wfkit.Workspace().reject(run.tickets()[0].ticket_id, by="ana", comment="too large,\nask finance", resume=False)
    assert 0 == main(["show", run.run_id])
    [row] = [line for line in capsys.readouterr().out.splitlines() if " rejected " in line and " by ana " not in line]
    assert row.endswith(" rejected              0.000  by ana: too large, ask finance")


def test_show_lists_the_open_tickets_of_a_runs_sub_workflow_runs(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit show PARENT` lists the open ticket of a gate inside its sub-workflow (which halts the
    parent), naming the child run, with the `wfkit approve` command that decides it (it listed
    only the parent's own tickets: none)."""
    child = wfkit.Workflow("cli-child", inputs=["x"])
    child.step(lambda s: {"y": s["x"] + 1}, name="check", approval="check the child")
    parent = wfkit.Workflow("cli-parent")
    parent.step(lambda s: {"x": 1}, name="prepare")
    parent.subflow(child, name="inner", inputs={"x": "x"}, outputs={"y": "y"})
    parent.chain("prepare", "inner")
    run = parent.run({}, workspace=workspace, policy="halt")
    assert "waiting_approval" == run.status
    [ticket] = run.tickets()
    child_run = wfkit.Workspace().run_info(run.run_id)["children"][0]
    assert child_run == ticket.run_id
    assert 0 == main(["show", run.run_id, "--workspace", str(workspace)])
    shown = capsys.readouterr().out
    command = f"`wfkit approve {ticket.ticket_id} --workspace {workspace} --by NAME`"
    line = f"waiting for approval: ticket {ticket.ticket_id} at 'check' of sub-workflow run {child_run}"
    assert f"{line}: check the child: {command}" in shown
    # The command it gives decides the ticket.
    assert 0 == main(["approve", ticket.ticket_id, "--workspace", str(workspace), "--by", "ana"])
    assert "approved" == wfkit.Workspace().ticket(ticket.ticket_id).status


def gated_parent() -> wfkit.Workflow:
    """A gate of its own in parallel with a sub-workflow whose step is gated: it halts at both."""
    child = wfkit.Workflow("cli-gated-child", inputs=["x"])
    child.step(lambda s: {"y": s["x"] + 1}, name="check", approval="check the child")
    parent = wfkit.Workflow("cli-gated-parent")
    parent.step(lambda s: {"x": 1}, name="prepare")
    parent.subflow(child, name="inner", inputs={"x": "x"}, outputs={"y": "y"})
    parent.step(lambda s: {"signed": True}, name="sign", approval="sign it")
    parent.edge("prepare", "inner")
    parent.edge("prepare", "sign")
    return parent


def _wfkit_elsewhere(*args: str) -> subprocess.CompletedProcess[str]:
    """The `wfkit` command in a process of its own, which defines no workflow (tests/ importable, as
    a run's recorded workflow must be for `wfkit resume`)."""
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    return subprocess.run(
        [sys.executable, "-m", "wfkit", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_show_of_a_run_whose_gate_was_decided_says_it_waits_to_be_resumed(workspace: Path) -> None:
    """`wfkit approve` in a shell decides a ticket but cannot go on with the run; `wfkit show` then
    listed the decision's row and nothing else: the run read as waiting for approval still, with no
    word that a resume was all it waited for. It now says who decided the gate, how, when and why,
    that the run waits to be resumed, and the command that resumes it; after the resume, nothing."""
    import durable_flows

    run = durable_flows.refunds.run({"amount": 30}, workspace=workspace, policy="halt")
    [ticket] = run.tickets()
    where = ("--workspace", str(workspace))
    approved = _wfkit_elsewhere("approve", ticket.ticket_id, *where, "--by", "ana", "--comment", "within\nbudget")
    assert 0 == approved.returncode, approved.stderr
    decided = wfkit.Workspace().ticket(ticket.ticket_id)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decided.decided_at or 0))
    shown = _wfkit_elsewhere("show", run.run_id[-6:], *where)
    assert 0 == shown.returncode, shown.stderr
    assert shown.stdout.startswith(f"run {run.run_id} of 'refunds-cli': waiting_approval\n")
    assert shown.stdout.endswith(
        f"\n\ndecided: ticket {ticket.ticket_id} at 'pay' was approved by ana at {when} (within budget); the run "
        f"waits to be resumed, and a resume follows the approval: `wfkit resume {run.run_id} --workspace {workspace}`\n"
    ), shown.stdout
    assert "waiting for approval:" not in shown.stdout  # no ticket is open
    resumed = _wfkit_elsewhere("resume", run.run_id, *where)
    assert 0 == resumed.returncode, resumed.stderr
    assert resumed.stdout.startswith(f"run {run.run_id}: succeeded\n")
    shown = _wfkit_elsewhere("show", run.run_id, *where)
    assert "decided:" not in shown.stdout
    assert shown.stdout.rstrip().endswith(" ok                    0.000")


def test_show_of_a_decided_gate_in_a_sub_workflow_names_the_run_and_the_ticket_still_open(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sub-workflow's gate decided from the shell, its parent's own gate still open: `wfkit show`
    of the parent says the child's gate was decided, that the run waits for the open ticket too,
    then for a resume, and, the run having recorded no workflow (made in this test), what
    `--workflow` takes; a rejection is said as such."""
    import wfkit.engine._workflow as workflows

    run = gated_parent().run({}, workspace=workspace, policy="halt")
    child_run = wfkit.Workspace().run_info(run.run_id)["children"][0]
    tickets = {t.step: t for t in wfkit.Workspace().pending()}
    for name in ("cli-gated-parent", "cli-gated-child"):
        workflows._by_name.pop(name, None)  # the CLI is another process: it defines no workflow
    where = ["--workspace", str(workspace)]
    assert 0 == main(["reject", tickets["check"].ticket_id, *where, "--by", "bo"])
    capsys.readouterr()
    assert 0 == main(["show", run.run_id, *where])
    out = capsys.readouterr().out
    resume = (
        f"`wfkit resume {run.run_id} --workspace {workspace} --workflow module:name` (started from a notebook "
        "or script, the run recorded no workflow: module:name is the module attribute, or a function returning "
        "it, that defines 'cli-gated-parent'), or with run.resume() in Python"
    )
    assert (
        f"\n\ndecided: ticket {tickets['check'].ticket_id} at 'check' of sub-workflow run {child_run} was rejected "
        "by bo at "
    ) in out
    assert (
        " UTC; the run waits for the open ticket above to be decided too, then to be resumed, and a resume follows "
        f"the rejection: {resume}\n"
    ) in out
    assert f"waiting for approval: ticket {tickets['sign'].ticket_id} at 'sign': sign it" in out
    assert 0 == main(["approve", tickets["sign"].ticket_id, *where, "--by", "ana"])
    capsys.readouterr()
    assert 0 == main(["show", run.run_id, *where])
    out = capsys.readouterr().out
    assert "waiting for approval:" not in out
    assert 2 == out.count("the run waits to be resumed, and a resume follows the ")
    assert "at 'sign' was approved by ana at " in out


def test_resume_of_a_run_that_halts_for_approval_lists_its_open_tickets(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit resume` of a run that halts again at its gates prints each open ticket, its own and its
    sub-workflow run's, with the `wfkit approve` command that decides it, as `wfkit show` does (it
    printed only "run X: waiting_approval", leaving the user to find what to approve)."""
    run = gated_parent().run({}, workspace=workspace, policy="halt")
    assert "waiting_approval" == run.status
    child_run = wfkit.Workspace().run_info(run.run_id)["children"][0]
    where = ("--workspace", str(workspace))
    assert 0 == main(["resume", run.run_id, *where, "--workflow", "test_cli:gated_parent", "--policy", "halt"])
    resumed = capsys.readouterr().out
    assert f"run {run.run_id}: waiting_approval" in resumed
    tickets = {t.step: t for t in wfkit.Workspace().pending()}
    assert ["check", "sign"] == sorted(tickets)
    expected = [
        f"waiting for approval: ticket {tickets['sign'].ticket_id} at 'sign': sign it: "
        f"`wfkit approve {tickets['sign'].ticket_id} --workspace {workspace} --by NAME`",
        f"waiting for approval: ticket {tickets['check'].ticket_id} at 'check' of sub-workflow run {child_run}: "
        f"check the child: `wfkit approve {tickets['check'].ticket_id} --workspace {workspace} --by NAME`",
    ]
    assert expected == [line for line in resumed.splitlines() if line.startswith("waiting for approval")]
    assert 0 == main(["show", run.run_id, *where])
    assert expected == [line for line in capsys.readouterr().out.splitlines() if line.startswith("waiting for")]


def test_show_tells_a_maps_items_apart(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit show` names each item row of a map by its index (`work[1]`): the rows of a map's items
    read as the same step three times."""
    flow = wfkit.Workflow("cli-map", inputs=["docs"])
    flow.map(lambda doc: doc * 2, over="docs", into="out", name="work")
    run = flow.run({"docs": [1, 2, 3]})
    assert 0 == main(["show", run.run_id])
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("work")]
    assert ["work[0]", "work[1]", "work[2]"] == sorted(n for n in names if "[" in n)


def test_show_and_runs_print_long_step_and_workflow_names_whole(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit show` cut step names at 20 characters, so two steps that begin alike
    (classify_incoming_customer_message, classify_incoming_customer_reply) read as one step, and
    `wfkit runs` cut workflow names so; both print names whole, the columns after them lined up."""
    flow = wfkit.Workflow("customer-support-escalation-triage-eu")
    flow.step(lambda s: {"a": 1}, name="classify_incoming_customer_message")
    flow.step(lambda s: {"b": 1}, name="classify_incoming_customer_reply")
    flow.edge("classify_incoming_customer_message", "classify_incoming_customer_reply")
    run = flow.run({})
    short = wfkit.Workflow("cli-short")
    short.step(lambda s: {"a": 1}, name="only")
    short.run({})
    assert 0 == main(["show", run.run_id])
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("step "))
    rows = lines[header + 1 : header + 3]
    assert ["classify_incoming_customer_message", "classify_incoming_customer_reply"] == [r.split()[0] for r in rows]
    assert {lines[header].index("visit") + len("visit")} == {r.index(" 1 ") + 2 for r in rows}
    assert 0 == main(["runs"])
    lines = capsys.readouterr().out.splitlines()
    assert {"customer-support-escalation-triage-eu", "cli-short"} == {line.split()[1] for line in lines[1:]}
    assert {lines[0].index("status")} == {line.index("succeeded") for line in lines[1:]}


def test_show_names_the_end_a_route_chose_as_describe_draws_it(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A route that ended the run showed the sentinel "__end__" in `wfkit show`'s route column (the
    demo's every run ends so); it reads END, as flow.describe() draws it."""
    flow = wfkit.Workflow("cli-end")

    @flow.step(max_visits=2)
    def check(state: Mapping[str, object]) -> dict[str, bool]:
        return {"done": True}

    flow.route("check", wfkit.when("done", "eq", False) >> wfkit.go("check"), default=wfkit.go(wfkit.END))
    run = flow.run({})
    assert 0 == main(["show", run.run_id])
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("check ")]
    assert row.endswith("  END")
    assert "__end__" not in row


KILLED_FLOW = """
import os, signal
import wfkit as wf

flow = wf.Workflow("cli-killed")


@flow.step
def first(state):
    return {"a": 1}


@flow.step
def second(state):
    if os.environ.get("KILL_IN_SECOND"):
        os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 or a power cut would
    return {"b": 2}


flow.chain("first", "second")
"""


def test_show_of_a_killed_run_says_it_is_interrupted_and_how_to_resume_it(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wfkit show` of a run whose process was SIGKILLed listed its steps and stopped there: nothing
    said that the run can go on, nor how. It now ends with the command, and the command works."""
    (tmp_path / "killedflow.py").write_text(KILLED_FLOW, encoding="utf-8")
    script = "import killedflow; killedflow.flow.run({})"
    env = {**os.environ, "KILL_IN_SECOND": "1", "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, timeout=120)
    assert -9 == proc.returncode
    (run,) = wf.Workspace(workspace).runs()

    assert 0 == main(["show", run["run_id"]])
    out = capsys.readouterr().out
    assert out.startswith(f"run {run['run_id']} of 'cli-killed': interrupted")
    assert (
        f"\ninterrupted: the process running it stopped before the run ended, and nothing runs it now; "
        f"continue it from its last completed step: `wfkit resume {run['run_id']}`\n"
    ) in out

    monkeypatch.syspath_prepend(str(tmp_path))
    assert 0 == main(["resume", run["run_id"]])
    assert f"run {run['run_id']}: succeeded" in capsys.readouterr().out


def test_show_of_a_failed_or_cancelled_run_says_how_to_resume_it(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed run (once its cause is fixed) and a cancelled one continue with `wfkit resume`:
    `wfkit show` says so, naming the --workflow a script's run needs."""
    flow = wfkit.Workflow("cli-failing")
    flow.step(lambda s: {"a": 1}, name="first")

    @flow.step
    def second(state: dict[str, int]) -> None:
        raise ValueError("the API key is missing")

    flow.chain("first", "second")
    run = flow.run({}, raise_on_error=False)
    assert 0 == main(["show", run.run_id])
    out = capsys.readouterr().out
    assert (
        f"\nfailed: once its cause is fixed, continue it from its last completed step: "
        f"`wfkit resume {run.run_id} --workflow module:name` (started from a notebook or script"
    ) in out


def _payout() -> wfkit.Workflow:
    flow = wfkit.Workflow("cli-payout")
    flow.step(lambda s: {"ready": True}, name="prepare")
    flow.step(lambda s, ctx: {"sent": ctx.idempotency_key}, name="send", approval="Send money?", irreversible=True)
    flow.chain("prepare", "send")
    return flow


def test_reconcile_of_a_script_run_names_the_workflow_to_resume_with(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `wfkit reconcile` of a run a script started, the resume command it prints names --workflow
    (without it, `wfkit resume` cannot build the workflow)."""
    run = _payout().run({})
    wfkit.Workspace().approve(run.tickets()[0].ticket_id, by="ana", resume=False)
    wfkit.Workspace().store.intent(run.run_id, "send", 1, f"{run.run_id}:send:1")  # then the process died
    assert 0 == main(["show", run.run_id, "--workspace", str(workspace)])  # its hint names the workspace too
    hint = f"`wfkit reconcile {run.run_id} send --workspace {workspace} --done|--retry --by NAME`"
    assert hint in capsys.readouterr().out
    assert 0 == main(["reconcile", run.run_id, "send", "--done", "--by", "ops", "--workspace", str(workspace)])
    out = capsys.readouterr().out
    assert f"resume with `wfkit resume {run.run_id} --workspace {workspace} --workflow module:name`" in out


def test_doctor_of_a_healthy_workspace_finds_nothing(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit doctor` on an intact workspace checks every row and reports no problem (exit 0)."""
    _gated_run(workspace)
    assert 0 == main(["doctor"])
    out = capsys.readouterr().out
    assert "1 runs, 2 journal rows checked" in out
    assert "no problems found" in out


def test_doctor_deletes_temporaries_whose_writer_is_gone_on_repair(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step-log temporary that a process which has ended left behind: doctor counts it (a note,
    not a problem), and --repair deletes it; a segment in place is untouched."""
    _gated_run(workspace)
    wfkit.steps()
    [segment] = list((workspace / "steps").rglob("*.parquet"))
    code = (
        "import sys, pyarrow as pa; from pathlib import Path; from wfkit.logs._steplog import _write_file; "
        "print(_write_file(pa.table({'x': [1]}), Path(sys.argv[1]), place=False))"
    )
    target = segment.with_name("part-gone-000001-000001.parquet")
    env = {**os.environ, "SLEEPY_STEP": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, "-c", code, str(target)]
    left = Path(subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout.strip())
    assert left.exists()
    assert left.name.startswith(".")
    assert 0 == main(["doctor"])
    out = capsys.readouterr().out
    assert "note: 1 temporary step-log file(s) left by processes that are gone" in out
    assert left.exists()  # no --repair: nothing touched
    assert 0 == main(["doctor", "--repair"])
    out = capsys.readouterr().out
    assert "repaired: deleted 1 temporary step-log file(s) left by processes that are gone" in out
    assert not left.exists()
    assert [segment] == list((workspace / "steps").rglob("*.parquet"))


def test_doctor_names_a_damaged_row_and_repair_keeps_originals(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed checkpoint and a truncated segment are both reported; --repair moves the segment
    aside and rebuilds it, and reports the row it cannot rebuild (exit 1)."""
    run = _gated_run(workspace)
    wfkit.steps()
    with contextlib.closing(sqlite3.connect(workspace / "wfkit.db")) as conn, conn:
        conn.execute("UPDATE journal SET updates='{\"a\":2}' WHERE run_id=? AND seq=1", (run.run_id,))
    [segment] = list((workspace / "steps").rglob("*.parquet"))
    segment.write_bytes(segment.read_bytes()[:50])
    assert 1 == main(["doctor"])
    out = capsys.readouterr().out
    assert f"run {run.run_id}, journal row 1: updates changed" in out
    assert "step log: damaged segment" in out
    assert 50 == segment.stat().st_size  # no --repair: nothing touched
    assert 1 == main(["doctor", "--repair"])
    out = capsys.readouterr().out
    assert "repaired: moved" in out
    assert "cannot supply them" in out or "updates changed" in out  # the damaged row is not rebuilt
    [aside] = list((workspace / "steps-damaged").rglob("*.parquet"))
    assert 50 == aside.stat().st_size


def test_doctor_sees_a_lost_wal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After kill -9 and a deleted -wal, doctor (and every command) says committed runs are gone."""
    ws = tmp_path / "killed"
    script = (
        "import os, wfkit as wf\n"
        "flow = wf.Workflow('k')\n"
        "flow.step(lambda s: {'x': 1}, name='a')\n"
        f"for i in range(20): flow.run({{'i': i}}, workspace={str(ws)!r})\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False)
    Path(f"{ws / 'wfkit.db'}-wal").unlink()
    assert 1 == main(["runs", "--workspace", str(ws)])
    assert "write-ahead log" in capsys.readouterr().err
    assert 1 == main(["doctor", "--workspace", str(ws)])
    assert "-wal is missing or cut short" in capsys.readouterr().out
    main(["doctor", "--repair", "--workspace", str(ws)])
    assert "moved the stale index" in capsys.readouterr().out
    assert 0 == main(["runs", "--workspace", str(ws)])


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- flow specs: validate, run, graph -----------------------------------------------------------


@pytest.fixture
def router_yaml(tmp_path: Path) -> Path:
    """The article's router saved as a spec (its steps importable from wfkit.examples)."""
    return rag_router().save(tmp_path / "router.yaml")


def test_run_with_a_tools_reference_it_cannot_use_says_which_and_how(router_yaml: Path) -> None:
    """A `--tools` that is no module:name, that does not import, or that names a function needing
    arguments (a step function) is one line naming the command and a factory that exists; the
    example given was `wfkit:example_registry`, which does not, and a step function printed the
    TypeError's traceback of calling it."""
    ran = {
        ref: _wfkit(
            "run",
            router_yaml.name,
            "--no-workspace",
            "--input",
            '{"query": "x"}',
            "--tools",
            ref,
            cwd=router_yaml.parent,
        )
        for ref in ("wfkit.examples", "wfkit:no_such_registry", "wfkit.examples:classify")
    }
    assert [1, 1, 1] == [done.returncode for done in ran.values()]
    assert [
        "wfkit run: --tools takes module:name (e.g. wfkit.examples:reliable_tools), got 'wfkit.examples'\n",
        "wfkit run: cannot load --tools 'wfkit:no_such_registry': module 'wfkit' has no attribute 'no_such_registry'\n",
        "wfkit run: --tools 'wfkit.examples:classify' is a function that needs arguments (state): give a tool "
        "registry, or a function called with none that returns one (e.g. wfkit.examples:reliable_tools)\n",
    ] == [done.stderr for done in ran.values()]
    example = _wfkit(
        "run",
        router_yaml.name,
        "--no-workspace",
        "--input",
        '{"query": "x"}',
        "--tools",
        "wfkit.examples:reliable_tools",
        "--json",
        cwd=router_yaml.parent,
    )
    assert "succeeded" == json.loads(example.stdout)["status"], example.stderr


def test_run_of_a_spec_whose_steps_call_tools_without_tools_says_to_pass_them(
    router_yaml: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit run router.yaml --input ...` without --tools failed at the first tool call saying only
    to pass a registry "with Workflow(..., tools=registry) or run(..., tools=registry)", Python a
    shell user cannot write. The command now ends with the option to give, in its own command line."""
    monkeypatch.chdir(router_yaml.parent)
    query = json.dumps({"query": "How to implement binary search in Python?"})
    assert 1 == main(["run", router_yaml.name, "--no-workspace", "--input", query])
    err = capsys.readouterr().err.splitlines()
    assert "the run has no tool registry" in err[0]
    assert (
        "wfkit run: the flow's steps call tools, and no registry was given: pass one with --tools module:name "
        "(a registry, or a function returning one), e.g. wfkit run router.yaml --tools wfkit.examples:reliable_tools "
        f"--no-workspace --input '{query}'"
    ) == err[-1]


def test_a_spec_that_is_not_there_names_the_specs_beside_it(router_yaml: Path) -> None:
    """`wfkit validate` (run, graph) of a spec file that is not there said only errno's "[Errno 2] No
    such file or directory"; it names the spec files of its folder and the one meant, that a folder
    is no spec, and a folder that does not exist."""
    said = {
        ref: _wfkit("validate", ref, cwd=router_yaml.parent).stderr
        for ref in ("routr.yaml", ".", "missing/router.yaml", "missing.json")
    }
    assert {
        "routr.yaml": "wfkit validate: no flow spec at routr.yaml; the current folder holds router.yaml "
        "(did you mean 'router.yaml'?)\n",
        ".": "wfkit validate: . is a folder: give the flow spec file in it (.yaml, .yml or .json)\n",
        "missing/router.yaml": "wfkit validate: no flow spec at missing/router.yaml; there is no folder missing\n",
        "missing.json": "wfkit validate: no flow spec at missing.json; the current folder holds router.yaml\n",
    } == said
    ran = _wfkit("run", "routr.yaml", "--no-workspace", cwd=router_yaml.parent)
    assert (1, "wfkit run: no flow spec at routr.yaml; the current folder holds router.yaml") == (
        ran.returncode,
        ran.stderr.split(" (did you mean")[0],
    )


def test_validate_reports_a_valid_spec_with_its_fingerprint(
    router_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit validate FLOW.yaml` says the flow is valid and prints the same fingerprint as the code."""
    assert 0 == main(["validate", str(router_yaml)])
    out = capsys.readouterr().out
    assert f"{router_yaml}: workflow 'rag-router' is valid: 5 steps, entry 'classify'" in out
    assert f"fingerprint {rag_router().validate().fingerprint}" in out


def test_validate_warns_of_a_route_on_a_field_no_step_writes(
    router_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When every step declares writes= and the inputs are declared, a route comparing a field that
    no step writes and no input names is warned of, with the closest field written; the flow is
    still valid (exit 0). With one step that declares nothing, nothing is known, and nothing said."""
    text = router_yaml.read_text(encoding="utf-8").replace(
        "    fn: wfkit.examples:classify\n", "    fn: wfkit.examples:classify\n    writes: [query_types]\n"
    )
    undeclared = router_yaml.with_name("some.yaml")  # classify alone declares what it writes
    undeclared.write_text(text, encoding="utf-8")
    for name in ("code_search", "data_query", "web_search", "generate_answer"):
        text = text.replace(
            f"    fn: wfkit.examples:{name}\n", f"    fn: wfkit.examples:{name}\n    writes: [answer]\n"
        )
    router_yaml.write_text(text, encoding="utf-8")
    assert 0 == main(["validate", str(router_yaml)])
    captured = capsys.readouterr()
    assert "workflow 'rag-router' is valid" in captured.out
    assert (
        "wfkit validate: warning: $.routes.classify.routes[0].when: the route from 'classify' compares "
        "'query_type', which no step writes (writes=) and is not an input: it is never set, so the "
        "condition never holds (did you mean 'query_types'?)"
    ) in captured.err
    assert 1 == captured.err.count("warning")
    assert 0 == main(["validate", str(undeclared)])
    assert "warning" not in capsys.readouterr().err


def test_validate_lists_every_problem_with_its_json_path(router_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spec with a typo in a route target and a bad operator fails with both problems, exit 1;
    each names the file and the line after its JSON path. The step the typo cuts off is not listed
    as unreachable: the typo, with the step it should name, is the one problem to fix."""
    text = (
        router_yaml.read_text(encoding="utf-8")
        .replace("go: data_query", "go: data_qery")
        .replace("op: in", "op: among")
    )
    router_yaml.write_text(text, encoding="utf-8")
    assert 1 == main(["validate", str(router_yaml)])
    err = capsys.readouterr().err
    assert "wfkit validate: workflow 'rag-router' has 2 problems:" in err
    assert (
        "  - $.routes.classify.routes[1].go (router.yaml line 25): route from 'classify' -> 'data_qery': no step "
        "named 'data_qery' (did you mean 'data_query'?)"
    ) in err
    assert "  - $.routes.classify.routes[2].when.op (router.yaml line 26): 'among' is not one of" in err
    assert "unreachable" not in err


@pytest.mark.parametrize(("query", "expected"), list(ARTICLE_QUERIES.items()))
def test_run_takes_each_route_with_its_tools(
    router_yaml: Path, query: str, expected: tuple[str, tuple[str, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit run FLOW.yaml --input JSON --json`: each of the article's queries takes its route
    with the tools that route binds, and the run is stored in the workspace."""
    args = [
        "run",
        str(router_yaml),
        "--input",
        json.dumps({"query": query}),
        "--tools",
        "wfkit.examples:reliable_tools",
    ]
    assert 0 == main([*args, "--json"])
    result = json.loads(capsys.readouterr().out)
    branch, tools = expected
    assert ("succeeded", ["classify", branch, "generate_answer"]) == (result["status"], result["path"])
    assert list(tools) == result["tools"][branch]
    assert f"answered {query!r} with {', '.join(tools)}" == result["state"]["answer"]
    assert "succeeded" == wf.Workspace().run_info(result["run_id"])["status"]


def test_run_reads_inputs_from_a_file_in_a_fresh_process(router_yaml: Path, tmp_path: Path) -> None:
    """`--input @file.json` reads the inputs; the installed command prints the path and the tools."""
    (tmp_path / "in.json").write_text(json.dumps({"query": "What were Q1 sales figures?"}))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "wfkit.cli._cli",
            "run",
            str(router_yaml),
            "--input",
            f"@{tmp_path / 'in.json'}",
            "--tools",
            "wfkit.examples:reliable_tools",
            "--no-workspace",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "  data_query  tools: sql_query, file_read\n" in out.stdout
    assert out.stdout.startswith("run ")
    assert ": succeeded\n" in out.stdout.splitlines(keepends=True)[0]


@pytest.mark.parametrize(
    ("given", "message"),
    [("{nope", "--input is not JSON"), ("[1, 2]", "the inputs must be a JSON object, got list")],
)
def test_run_refuses_inputs_that_are_not_a_json_object(router_yaml: Path, given: str, message: str) -> None:
    """Inputs that are not a JSON object stop the command with what to pass instead."""
    with pytest.raises(SystemExit, match=message):
        main(["run", str(router_yaml), "--input", given])


@pytest.mark.parametrize(
    ("given", "example"),
    [([], '{"query": "..."}'), (["--input", '{"lang": "en"}'], '{"lang": "en", "query": "..."}')],
)
def test_run_without_the_declared_inputs_says_how_to_pass_them(tmp_path: Path, given: list[str], example: str) -> None:
    """`wfkit run ask.yaml` whose spec declares `inputs: [query]`, without a query: before anything
    runs, the command names the inputs the spec declares and the command line that passes them;
    no run is recorded (the workspace is not even created)."""
    (tmp_path / "asksteps.py").write_text("def answer(state):\n    return {'answer': 'on ' + state['query']}\n")
    (tmp_path / "ask.yaml").write_text(
        "wfkit_flow: 1\nname: ask\ninputs: [query]\nentry: answer\nsteps:\n  answer:\n    fn: answer\n"
    )
    run = _wfkit("run", "ask.yaml", "--steps", "asksteps", "--workspace", "ws", *given, cwd=tmp_path)
    assert 1 == run.returncode
    assert (
        f"wfkit run: ask.yaml declares the inputs ['query'] (its `inputs:`), and the run's inputs lack "
        f"['query']; nothing was started. Pass them: "
        f"wfkit run ask.yaml --steps asksteps --workspace ws --input '{example}'\n"
    ) == run.stderr
    assert "" == run.stdout
    assert not (tmp_path / "ws").exists()
    ran = _wfkit("run", "ask.yaml", "--steps", "asksteps", "--workspace", "ws", "--input", example, cwd=tmp_path)
    assert 0 == ran.returncode, ran.stderr
    assert '"answer": "on ..."' in ran.stdout


def test_run_with_a_misspelt_input_names_the_declared_one(tmp_path: Path) -> None:
    """`wfkit run ask.yaml --input '{"qeury": "hi"}'` said the inputs lacked ['query'], as if none
    had been given: it now names the given one that is close to it."""
    (tmp_path / "asksteps.py").write_text("def answer(state):\n    return {'answer': 'on ' + state['query']}\n")
    (tmp_path / "ask.yaml").write_text(
        "wfkit_flow: 1\nname: ask\ninputs: [query]\nentry: answer\nsteps:\n  answer:\n    fn: answer\n"
    )
    run = _wfkit("run", "ask.yaml", "--steps", "asksteps", "--no-workspace", "--input", '{"qeury": "hi"}', cwd=tmp_path)
    assert (1, "") == (run.returncode, run.stdout)
    assert (
        "wfkit run: ask.yaml declares the inputs ['query'] (its `inputs:`), and the run's inputs lack ['query'] "
        "('qeury' given: did you mean 'query'?); nothing was started. Pass them: "
    ) in run.stderr


def test_run_of_the_router_spec_without_a_query_starts_nothing(router_yaml: Path, tmp_path: Path) -> None:
    """The README's `wfkit run router.yaml`, without `--input`: the router's spec declares the query it
    reads, so the command says so before any step runs (not a KeyError inside `classify`), and the
    workspace gains no run."""
    command = ["run", "router.yaml", "--tools", "wfkit.examples:reliable_tools", "--workspace", "ws"]
    asked = _wfkit(*command, "--input", '{"query": "Q1 sales?"}', cwd=tmp_path)
    assert 0 == asked.returncode, asked.stderr
    run = _wfkit(*command, cwd=tmp_path)
    assert 1 == run.returncode
    assert (
        "wfkit run: router.yaml declares the inputs ['query'] (its `inputs:`), and the run's inputs lack ['query']; "
        "nothing was started. Pass them: wfkit run router.yaml --tools wfkit.examples:reliable_tools --workspace ws "
        '--input \'{"query": "..."}\'\n'
    ) == run.stderr
    assert "inputs: [query]\n" in router_yaml.read_text(encoding="utf-8")
    assert 1 == len(wf.Workspace(tmp_path / "ws").runs())


def test_run_of_a_spec_without_inputs_names_the_field_a_step_missed(tmp_path: Path) -> None:
    """A spec that declares no `inputs` cannot say what a run needs, so `wfkit run` starts it; when a
    step then fails reading a field the inputs lack (a KeyError), the failure names the field, the
    command that passes it with `--input`, and the `inputs:` that would have refused the run up front."""
    (tmp_path / "asksteps.py").write_text("def answer(state):\n    return {'answer': 'on ' + state['query']}\n")
    (tmp_path / "ask.yaml").write_text("wfkit_flow: 1\nname: ask\nentry: answer\nsteps:\n  answer:\n    fn: answer\n")
    run = _wfkit("run", "ask.yaml", "--steps", "asksteps", "--workspace", "ws", cwd=tmp_path)
    assert 1 == run.returncode
    *_, error, hint = run.stderr.splitlines()
    assert error.endswith(
        ", step 'answer', attempt 1: failed with StateKeyError (permanent): the state has no field 'query': "
        "it is empty; pass it in the run's inputs, return it from a step that runs before this one, or, if it "
        "is optional, read it with state.get('query')"
    )
    assert (
        "wfkit run: step 'answer' read the field 'query', which the run's inputs lack and no step before it "
        "wrote: if the flow needs it, pass it (wfkit run ask.yaml --steps asksteps --workspace ws --input "
        '\'{"query": "..."}\') and declare it in the spec (`inputs: [query]`), so that a run without it '
        "starts nothing"
    ) == hint


def test_run_prints_a_wfkit_warning_as_one_line_of_its_own(tmp_path: Path) -> None:
    """A warning wfkit raised while `wfkit run` ran (a route comparing a misspelt field) was printed in
    Python's format: the file and line inside wfkit that raised it, then that line's source
    (`  self._warn_absent(name, onward.unsure, chosen)`). It is one line of the command's own."""
    (tmp_path / "kindsteps.py").write_text(
        "def classify(state):\n    return {'kind': 'refund'}\n\ndef done(state):\n    return {}\n"
    )
    (tmp_path / "kind.yaml").write_text(
        "wfkit_flow: 1\nname: kind\nentry: classify\nsteps:\n  classify: {fn: classify}\n  refund: {fn: done}\n"
        "  other: {fn: done}\nroutes:\n  classify:\n    routes:\n      - when: {field: knd, op: eq, value: refund}\n"
        "        go: refund\n    default: {go: other}\n"
    )
    run = _wfkit("run", "kind.yaml", "--steps", "kindsteps", "--workspace", "ws", cwd=tmp_path)
    assert 0 == run.returncode, run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("wfkit run: RouteFieldWarning: workflow 'kind': the route after step 'classify'"), line
    assert "compares field 'knd', which neither the run's inputs nor any step so far put in the state" in line
    # In the spec's words, and at the spec's line (the routes of `classify`):
    assert line.endswith(
        "declare the step that writes it (writes: [knd] on it, in the spec) or test it with "
        "{field: knd, op: exists} (kind.yaml line 9)"
    ), line
    assert "_engine.py" not in run.stderr


def test_run_names_bare_functions_from_steps_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec naming functions without a module runs with `--steps MODULE`; without it, the problem
    says which function is missing and how to pass it."""
    (tmp_path / "mysteps.py").write_text("def hello(state):\n    return {'greeting': 'hi ' + state['name']}\n")
    (tmp_path / "hello.json").write_text(
        json.dumps({"wfkit_flow": 1, "name": "hello", "entry": "hello", "steps": {"hello": {"fn": "hello"}}})
    )
    monkeypatch.chdir(tmp_path)
    assert 1 == main(["validate", "hello.json"])
    assert (
        "$.steps.hello.fn (hello.json line 1): 'hello', the function of step 'hello', is not among the functions "
        "passed in steps=; pass it (Workflow.from_spec(spec, steps={'hello': hello}); to wfkit validate, run or graph: "
        "--steps MODULE, the module defining it) or write it as 'module:hello'" in capsys.readouterr().err
    )
    assert 0 == main(["run", "hello.json", "--steps", "mysteps", "--input", '{"name": "ada"}', "--json"])
    assert "hi ada" == json.loads(capsys.readouterr().out)["state"]["greeting"]
    with pytest.raises(SystemExit, match="cannot import --steps 'nosuchmodule'"):
        main(["validate", "hello.json", "--steps", "nosuchmodule"])


def test_steps_given_as_a_file_names_the_module_to_pass(tmp_path: Path) -> None:
    """`wfkit validate flows/hello.json --steps flows/mysteps.py` (a file's path, as a shell completes
    it) ended in a TypeError's traceback ("the 'package' argument is required to perform a relative
    import"), and `--steps mysteps.py` in "No module named 'mysteps.py'". Each now says to pass the
    module's name, which then works; one in a folder wfkit does not look in says so, with PYTHONPATH."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "mysteps.py").write_text("def hello(state):\n    return {'greeting': 'hi ' + state['name']}\n")
    spec = {"wfkit_flow": 1, "name": "hello", "entry": "hello", "steps": {"hello": {"fn": "hello"}}}
    (flows / "hello.json").write_text(json.dumps(spec))
    elsewhere = tmp_path / "lib"
    elsewhere.mkdir()
    (elsewhere / "libsteps.py").write_text((flows / "mysteps.py").read_text())
    said = "--steps takes a module's name, not a file: pass --steps"
    for given, module in (("flows/mysteps.py", "flows.mysteps"), (str(flows / "mysteps.py"), "mysteps")):
        done = _wfkit("validate", "flows/hello.json", "--steps", given, cwd=tmp_path)
        assert 1 == done.returncode
        assert "Traceback" not in done.stderr
        assert f"{said} {module}; wfkit finds the module in the current folder, beside the spec" in done.stderr
        assert 0 == _wfkit("validate", "flows/hello.json", "--steps", module, cwd=tmp_path).returncode
    done = _wfkit("validate", "hello.json", "--steps", "mysteps.py", cwd=flows)
    assert f"{said} mysteps;" in done.stderr
    done = _wfkit("validate", "hello.json", "--steps", "../lib/libsteps.py", cwd=flows)
    assert f"{said} libsteps (it is in {elsewhere.resolve()}, where wfkit does not look" in done.stderr
    assert f"PYTHONPATH={elsewhere.resolve()})" in done.stderr
    done = _wfkit("validate", "hello.json", "--steps", ".mysteps", cwd=flows)
    assert (1, "") == (done.returncode, done.stdout)
    assert "full name, as `import` names it: pass --steps mysteps, not '.mysteps'" in done.stderr


@pytest.mark.parametrize(
    ("fmt", "start"), [("svg", "<svg "), ("mermaid", "flowchart TD\n"), ("dot", 'digraph "rag-router" {\n')]
)
def test_graph_writes_each_format(
    router_yaml: Path, tmp_path: Path, fmt: str, start: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit graph FLOW --format svg|mermaid|dot` prints the drawing, or writes it with --out."""
    assert 0 == main(["graph", str(router_yaml), "--format", fmt])
    assert capsys.readouterr().out.startswith(start)
    out = tmp_path / f"g.{fmt}"
    assert 0 == main(["graph", str(router_yaml), "--format", fmt, "--out", str(out)])
    assert out.read_text().startswith(start)
    assert f"{fmt} written to {out}" in capsys.readouterr().out


def test_graph_labels_a_route_with_its_tools_in_every_format(router_yaml: Path) -> None:
    """`wfkit graph` names the tools a route binds in its SVG, as in its Mermaid and DOT: the SVG
    left them out."""
    drawn = {
        fmt: _wfkit("graph", router_yaml.name, "--format", fmt, cwd=router_yaml.parent).stdout
        for fmt in ("svg", "mermaid", "dot")
    }
    assert "query_type == 'data' [sql_query, file_read]" in drawn["mermaid"]
    assert "query_type == 'data' [sql_query, file_read]" in drawn["dot"]
    assert re.search(r">query_type == &#x27;data&#x27;</tspan><tspan [^>]*>\[sql_query, file_read\]<", drawn["svg"])
    assert "default [web_search]" in drawn["svg"]


def test_graph_takes_its_format_from_the_out_files_suffix(
    router_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out graph.dot` (or .gv, .mmd) without --format writes that format, where it wrote SVG into
    the .dot file; a --format the suffix contradicts is refused, writing nothing."""
    for name, start in (
        ("g.dot", 'digraph "rag-router" {'),
        ("g.gv", "digraph"),
        ("g.mmd", "flowchart TD"),
        ("g.txt", "<svg "),
    ):
        assert 0 == main(["graph", str(router_yaml), "--out", str(tmp_path / name)])
        assert (tmp_path / name).read_text().startswith(start), name
    capsys.readouterr()
    assert 2 == main(["graph", str(router_yaml), "--format", "mermaid", "--out", str(tmp_path / "wrong.svg")])
    assert (
        f"wfkit graph: --format mermaid, but --out {tmp_path / 'wrong.svg'} names a svg file; drop --format (the "
        "suffix chooses it), or name the file after its format (.svg, .mmd, .mermaid, .dot, .gv)\n"
    ) == capsys.readouterr().err
    assert not (tmp_path / "wrong.svg").exists()


def test_graph_refuses_an_image_file_it_cannot_write(
    router_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit graph FLOW --out flow.png` wrote SVG text into flow.png, which no image viewer opens; an
    image's suffix (.png, .pdf, ...) is now a usage error naming the .svg to write, and writes nothing."""
    for name in ("flow.png", "flow.PDF", "flow.jpg"):
        out = tmp_path / name
        assert 2 == main(["graph", str(router_yaml), "--out", str(out)])
        kind = out.suffix[1:].upper()
        assert (
            f"wfkit graph: --out {out} names a {kind} file, and wfkit graph writes SVG, Mermaid or DOT text "
            f"(.svg, .mmd, .mermaid, .dot, .gv), which no image viewer opens as {kind}: write --out "
            f"{out.with_suffix('.svg')} (a browser shows it"
        ) in capsys.readouterr().err
        assert not out.exists()
    done = _wfkit("graph", router_yaml.name, "--format", "svg", "--out", "flow.png", cwd=router_yaml.parent)
    assert (2, "") == (done.returncode, done.stdout)
    assert not (router_yaml.parent / "flow.png").exists()
    assert 0 == main(["graph", str(router_yaml), "--out", str(tmp_path / "flow.svg")])
    assert (tmp_path / "flow.svg").read_text().startswith("<svg ")


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


def test_resume_of_a_run_that_called_an_endpoint_says_how_to_give_it_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit resume` of a run whose steps called a model at an endpoint, with none configured, is
    refused (exit 1), naming the model and the variables to set: it went on with the simulated
    model. With them set it goes on at that endpoint."""
    from llm_server import LLMServer

    _router()  # durable_flows on sys.path
    import durable_flows

    down = tmp_path / "down"
    down.touch()
    with LLMServer(api_key="sk-cli-0123456789", model=None) as server:
        client = wf.llm.ChatClient(server.url, model="gpt-4o-mini", api_key="sk-cli-0123456789")
        run = durable_flows.asking.run({"down": str(down)}, llm=client, raise_on_error=False)
        down.unlink()
        assert 1 == main(["resume", run.run_id, "--workflow", "durable_flows:asking"])
        err = capsys.readouterr().err
        assert err.startswith(f"wfkit resume: run {run.run_id} called model 'gpt-4o-mini' at {server.url}; ")
        assert f"For wfkit resume, set WFKIT_LLM_BASE_URL={server.url} and WFKIT_LLM_MODEL=gpt-4o-mini." in err
        monkeypatch.setenv("WFKIT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("WFKIT_LLM_MODEL", "gpt-4o-mini")
        monkeypatch.setenv("WFKIT_API_KEY", "sk-cli-0123456789")
        assert 0 == main(["resume", run.run_id, "--workflow", "durable_flows:asking"]), capsys.readouterr()
        assert 2 == len(server.requests)
    assert "gpt-4o-mini" == wf.Workspace().run_info(run.run_id)["state"]["second"]


@pytest.mark.parametrize("command", [["fork", "--at", "a"], ["resume"]])
def test_resume_or_fork_of_a_notebook_run_asks_for_the_workflow(command: list[str]) -> None:
    """A run whose workflow cannot be imported by name needs --workflow: the error shows what to pass."""
    flow = wfkit.Workflow("from-a-notebook")
    flow.step(lambda s: {"a": 1}, name="a")
    flow._module = "__main__"
    run = flow.run({})
    verb, *options = command
    with pytest.raises(SystemExit) as info:
        main([verb, run.run_id, *options])
    message = str(info.value)
    assert "pass --workflow module:name, the module attribute (or a function returning it) that defines it" in message
    assert "(`--workflow myflows:flow` for `flow = wf.Workflow('from-a-notebook')` in myflows.py)" in message
    assert f"or {verb} it from Python (run.{verb}(...))" in message


def test_a_spec_runs_from_another_folder_with_the_step_module_beside_it(tmp_path: Path) -> None:
    """`wfkit validate team/flow.yaml` and `wfkit run team/flow.yaml` from the folder above find
    `flow_steps.py` beside the spec (where the builder's "Write stub" puts it); they said "No module
    named 'flow_steps'; check the module path and function name", though both were right."""
    team = tmp_path / "team"
    team.mkdir()
    (team / "flow_steps.py").write_text("def greet(state, ctx):\n    return {'greeting': 'hi ' + state['name']}\n")
    spec = "wfkit_flow: 1\nname: greet\nentry: greet\nsteps:\n  greet: {fn: 'flow_steps:greet'}\n"
    (team / "flow.yaml").write_text(spec)
    checked = _wfkit("validate", "team/flow.yaml", cwd=tmp_path)
    assert 0 == checked.returncode, checked.stderr
    ran = _wfkit("run", "team/flow.yaml", "--input", '{"name": "ana"}', "--no-workspace", "--json", cwd=tmp_path)
    assert 0 == ran.returncode, ran.stderr
    assert {"name": "ana", "greeting": "hi ana"} == json.loads(ran.stdout)["state"]


# ---- runs started from a spec file: resume, fork, reconcile ----------------------------------------


@pytest.fixture
def payout_spec(tmp_path: Path) -> Path:
    """A spec naming bare functions of `--steps payout_steps`: prepare, then send (gated, irreversible)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "payout_steps.py").write_text(
        "def prepare(state):\n    return {'ready': True}\n\n\n"
        "def send(state, ctx):\n    return {'sent': ctx.idempotency_key}\n"
    )
    spec = {
        "wfkit_flow": 1,
        "name": "payout-spec",
        "entry": "prepare",
        "steps": {
            "prepare": {"fn": "prepare"},
            "send": {"fn": "send", "approval": {"reason": "Send money?"}, "irreversible": True},
        },
        "edges": {"prepare": ["send"]},
    }
    path = project / "payout.json"
    path.write_text(json.dumps(spec))
    return path


def _wfkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "wfkit", *args], capture_output=True, text=True, cwd=cwd, check=False)


def _run_spec(spec: Path, workspace: Path) -> str:
    """`wfkit run payout.json --steps payout_steps` in the spec's folder: the run's id (it waits at send's gate)."""
    args = ["run", spec.name, "--steps", "payout_steps", "--workspace", str(workspace), "--json"]
    started = _wfkit(*args, cwd=spec.parent)
    assert 0 == started.returncode, started.stderr
    result = json.loads(started.stdout)
    assert "waiting_approval" == result["status"]
    return str(result["run_id"])


def _hinted(out: str) -> list[str]:
    """The command between backticks after "resume with", as words."""
    import shlex

    return shlex.split(out.split("resume with `", 1)[1].split("`", 1)[0])


def test_a_spec_run_halted_at_a_gate_says_how_to_approve_it(payout_spec: Path, tmp_path: Path) -> None:
    """`wfkit run SPEC` that halts at an approval gate prints the ticket and the command that decides
    it, as `wfkit resume` and `wfkit show` do; it printed only "waiting_approval" and the state."""
    workspace = tmp_path / "ws"
    args = ["run", payout_spec.name, "--steps", "payout_steps", "--workspace", str(workspace)]
    started = _wfkit(*args, cwd=payout_spec.parent)
    assert 0 == started.returncode, started.stderr
    [ticket] = wfkit.Workspace(workspace).pending()
    assert (
        f"waiting for approval: ticket {ticket.ticket_id} at 'send': Send money?: "
        f"`wfkit approve {ticket.ticket_id} --workspace {workspace} --by NAME`"
    ) == started.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # several `wfkit` processes: about 6 s
def test_a_run_started_from_a_spec_resumes_and_forks_without_workflow(
    payout_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run of `wfkit run SPEC --steps MODULE` records the spec file, its modules and folder: the command
    `wfkit approve` prints resumes it, and `wfkit fork` forks it, both from another folder with no --workflow."""
    workspace = tmp_path / "ws"
    run_id = _run_spec(payout_spec, workspace)
    [ticket] = wfkit.Workspace(workspace).pending()
    assert 0 == main(["approve", ticket.ticket_id, "--by", "ana", "--workspace", str(workspace)])
    command = _hinted(capsys.readouterr().out)
    assert ["wfkit", "resume", run_id, "--workspace", str(workspace)] == command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = _wfkit(*command[1:], cwd=elsewhere)
    assert (0, f"run {run_id}: succeeded") == (resumed.returncode, resumed.stdout.splitlines()[0]), resumed.stderr
    assert {"ready": True, "sent": f"{run_id}:send:1"} == wfkit.Workspace(workspace).run_info(run_id)["state"]
    forked = _wfkit(
        "fork", run_id, "--at", "prepare", "--set", "ready=false", "--policy", "approve",
        "--workspace", str(workspace), cwd=elsewhere,
    )  # fmt: skip
    assert 0 == forked.returncode, forked.stderr
    fork_id = forked.stdout.split()[1]
    assert f"run {fork_id} (forked from {run_id} at 'prepare'): succeeded" == forked.stdout.strip()
    assert {"ready": False, "sent": f"{fork_id}:send:1"} == wfkit.Workspace(workspace).run_info(fork_id)["state"]


def test_a_spec_run_given_no_policy_leaves_its_resumes_to_their_own(payout_spec: Path, tmp_path: Path) -> None:
    """`wfkit run` without --policy gives the run none to keep (a resume keeps only a policy the run
    was given): `wfkit resume` then decides by its own default, here $WFKIT_POLICY, as a resume of a
    run given no policy in code does."""
    workspace = tmp_path / "ws"
    run_id = _run_spec(payout_spec, workspace)  # no $WFKIT_POLICY: it waits at send's gate
    resumed = subprocess.run(
        [sys.executable, "-m", "wfkit", "resume", run_id, "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        cwd=payout_spec.parent,
        env={**os.environ, "WFKIT_POLICY": "approve"},
        check=False,
    )
    assert (0, f"run {run_id}: succeeded") == (resumed.returncode, resumed.stdout.splitlines()[0]), resumed.stderr


def test_a_misspelt_wfkit_policy_is_named_as_the_variable_it_came_from(payout_spec: Path, tmp_path: Path) -> None:
    """`WFKIT_POLICY=aprove wfkit run SPEC` said "unknown approval policy 'aprove'", which no word of the
    command holds: it now names `$WFKIT_POLICY` and its value, the closest valid one and every valid value,
    and stores no run."""
    workspace = tmp_path / "ws"
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "wfkit",
            "run",
            payout_spec.name,
            "--steps",
            "payout_steps",
            "--workspace",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        cwd=payout_spec.parent,
        env={**os.environ, "WFKIT_POLICY": "aprove"},
        check=False,
    )
    assert 1 == started.returncode, started.stdout
    assert started.stderr.startswith(
        "wfkit run: $WFKIT_POLICY='aprove' is no approval policy (did you mean 'approve'?): set it to 'halt', "
        "'approve', 'reject', 'fail', or the path of a decisions file (.jsonl)"
    ), started.stderr


def test_a_fork_of_a_run_given_a_policy_decides_by_it(payout_spec: Path, tmp_path: Path) -> None:
    """`wfkit fork` without --policy of a run started with `--policy approve` approves its gate as the
    run did (it halted there: the fork kept no policy of its run)."""
    workspace = tmp_path / "ws"
    where = ("--workspace", str(workspace))
    started = _wfkit(
        "run",
        payout_spec.name,
        "--steps",
        "payout_steps",
        "--policy",
        "approve",
        *where,
        "--json",
        cwd=payout_spec.parent,
    )
    assert 0 == started.returncode, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    forked = _wfkit("fork", run_id, "--at", "prepare", "--set", "ready=false", *where, cwd=tmp_path)
    assert 0 == forked.returncode, forked.stderr
    fork_id = forked.stdout.split()[1]
    assert f"run {fork_id} (forked from {run_id} at 'prepare'): succeeded" == forked.stdout.strip()


def test_run_json_of_a_run_halted_at_a_gate_holds_its_tickets(payout_spec: Path, tmp_path: Path) -> None:
    """`wfkit run SPEC --json` of a run that halts at a gate printed its status and state but not the
    ticket to decide, which the text form names: a script had to call `wfkit pending` and pick the
    run's out. The JSON holds each open ticket with its command, and the steps to reconcile."""
    workspace = tmp_path / "ws"
    args = ["run", payout_spec.name, "--steps", "payout_steps", "--workspace", str(workspace), "--json"]
    started = _wfkit(*args, cwd=payout_spec.parent)
    assert 0 == started.returncode, started.stderr
    result = json.loads(started.stdout)
    [ticket] = wfkit.Workspace(workspace).pending()
    assert [
        {
            "ticket_id": ticket.ticket_id,
            "run_id": result["run_id"],
            "step": "send",
            "visit": 1,
            "reason": "Send money?",
            "command": f"wfkit approve {ticket.ticket_id} --workspace {workspace} --by NAME",
        }
    ] == result["tickets"]
    assert [] == result["reconciliations"]


def test_approve_after_a_reject_is_refused_saying_who_when_and_that_resume_follows_it(
    payout_spec: Path, tmp_path: Path
) -> None:
    """`wfkit reject` then `wfkit approve` of one ticket: the approve exits 1 naming who rejected it,
    when and why, and saying the run waits for `wfkit resume`, which then follows the rejection
    (the refusal said nothing of the run left halted)."""
    workspace = tmp_path / "ws"
    run_id = _run_spec(payout_spec, workspace)
    [ticket] = wfkit.Workspace(workspace).pending()
    where = ("--workspace", str(workspace))
    rejected = _wfkit("reject", ticket.ticket_id, "--by", "alice", "--comment", "too much", *where, cwd=tmp_path)
    assert 0 == rejected.returncode, rejected.stderr
    approved = _wfkit("approve", ticket.ticket_id, "--by", "bob", *where, cwd=tmp_path)
    decided = wfkit.Workspace(workspace).ticket(ticket.ticket_id)
    assert ("rejected", "alice") == (decided.status, decided.decided_by)
    assert decided.decided_at is not None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decided.decided_at))
    assert 1 == approved.returncode
    assert (
        f"wfkit approve: ticket {ticket.ticket_id} was already rejected by alice at {when} (too much); a "
        f"decision is applied once and cannot be reversed. Run {run_id} waits at 'send' until it is "
        f"resumed (`wfkit resume {run_id}`, or run.resume() in Python), and then follows the rejection; "
        f"to decide again, start a new run"
    ) == approved.stderr.strip()
    resumed = _wfkit("resume", run_id, *where, cwd=tmp_path)
    assert (1, f"run {run_id}: failed") == (resumed.returncode, resumed.stdout.splitlines()[0])
    assert "rejected by alice: too much" in resumed.stderr


def test_a_refused_decision_in_another_workspace_says_how_to_resume_from_any_folder(
    payout_spec: Path, tmp_path: Path
) -> None:
    """`wfkit reject` then `wfkit approve` of a ticket in a workspace that is not the default one: the
    resume command the refusal names carries --workspace (it said only `wfkit resume RUN`, which looks in
    the default workspace), and run from another folder it resumes the run, which follows the rejection."""
    import shlex

    workspace = tmp_path / "payouts"  # not $WFKIT_HOME
    run_id = _run_spec(payout_spec, workspace)
    [ticket] = wfkit.Workspace(workspace).pending()
    where = ("--workspace", str(workspace))
    assert 0 == _wfkit("reject", ticket.ticket_id, "--by", "alice", *where, cwd=tmp_path).returncode
    approved = _wfkit("approve", ticket.ticket_id, "--by", "bob", *where, cwd=tmp_path)
    assert 1 == approved.returncode
    command = shlex.split(approved.stderr.split("until it is resumed (`", 1)[1].split("`", 1)[0])
    assert ["wfkit", "resume", run_id, "--workspace", str(workspace)] == command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = _wfkit(*command[1:], cwd=elsewhere)
    assert (1, f"run {run_id}: failed") == (resumed.returncode, resumed.stdout.splitlines()[0]), resumed.stderr
    assert "rejected by alice" in resumed.stderr


def test_a_refused_decision_of_a_script_run_names_the_workflow_to_resume_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal of a second decision on a run a script started (no workflow recorded) names
    --workflow module:name and what that is, as `wfkit approve` does: without it `wfkit resume`
    cannot build the workflow."""
    workspace = tmp_path / "scripts"  # not $WFKIT_HOME
    run = _gated_run(workspace)
    [ticket] = run.tickets()
    wfkit.Workspace(workspace).reject(ticket.ticket_id, by="alice", resume=False)
    assert 1 == main(["approve", ticket.ticket_id, "--by", "bob", "--workspace", str(workspace)])
    assert (
        f"until it is resumed (`wfkit resume {run.run_id} --workspace {workspace} --workflow module:name` "
        f"(started from a notebook or script, the run recorded no workflow: module:name is the module "
        f"attribute, or a function returning it, that defines 'cli-gated'), or run.resume() in Python)"
    ) in capsys.readouterr().err


def test_reconcile_of_a_spec_run_prints_a_resume_that_works(
    payout_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `wfkit reconcile` of a spec-started run cut off in an irreversible step, the resume command
    it prints finishes the run without running the step again."""
    workspace = tmp_path / "ws"
    run_id = _run_spec(payout_spec, workspace)
    [ticket] = wfkit.Workspace(workspace).pending()
    assert 0 == main(["approve", ticket.ticket_id, "--by", "ana", "--workspace", str(workspace)])
    wfkit.Workspace(workspace).store.intent(run_id, "send", 1, f"{run_id}:send:1")  # then the process died
    capsys.readouterr()
    reconcile = ["reconcile", run_id, "send", "--done", "--by", "ops", "--updates", '{"sent": "by hand"}']
    assert 0 == main([*reconcile, "--workspace", str(workspace)])
    command = _hinted(capsys.readouterr().out)
    assert ["wfkit", "resume", run_id, "--workspace", str(workspace)] == command
    resumed = _wfkit(*command[1:], cwd=tmp_path)
    assert (0, f"run {run_id}: succeeded") == (resumed.returncode, resumed.stdout.splitlines()[0]), resumed.stderr
    assert {"ready": True, "sent": "by hand"} == wfkit.Workspace(workspace).run_info(run_id)["state"]


def test_a_spec_run_whose_file_is_gone_says_what_to_pass(payout_spec: Path, tmp_path: Path) -> None:
    """Resuming a spec-started run after its spec file was deleted names the file and the way out."""
    workspace = tmp_path / "ws"
    run_id = _run_spec(payout_spec, workspace)
    payout_spec.unlink()
    with pytest.raises(SystemExit) as info:
        main(["resume", run_id, "--workspace", str(workspace)])
    assert (
        f"run {run_id} was started by `wfkit run {payout_spec}`, and that file is gone: put it back, or pass "
        "--workflow module:name (a module attribute, or a function returning it, that defines the workflow)"
    ) == str(info.value)


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


def test_run_no_workspace_of_a_gated_spec_says_which_option_to_drop(payout_spec: Path) -> None:
    """`wfkit run SPEC --no-workspace` of a flow with a gate names the command's own option to drop
    (it said only "drop workspace=False", the Python argument a command-line user never wrote)."""
    done = _wfkit("run", payout_spec.name, "--steps", "payout_steps", "--no-workspace", cwd=payout_spec.parent)
    assert 0 != done.returncode
    assert "has approval gates" in done.stderr
    assert "drop --no-workspace" in done.stderr


def _unfinished_job(dataset: Path, **driver: object) -> str:
    """A Dask job of one committed partition (written as a worker writes it) whose driver wrote its
    record and no end: ``driver`` overrides the record's fields (host, pid)."""
    import cloudpickle

    from wfkit.distributed._dask import PartitionOutput, Progress, run_partition
    from wfkit.logs._dataset import Location
    from wfkit.logs._driver import DRIVER_FILE, driver_record
    from wfkit.logs._segments import new_job_id

    def work(scratch: Path, progress: Progress) -> PartitionOutput:
        flow = wf.Workflow("cli-job")
        flow.step(lambda s: {"y": 1}, name="one")
        flow.run({}, workspace=scratch)
        return PartitionOutput([], (scratch,))

    job = new_job_id() + os.urandom(2).hex()
    record = {**driver_record(label="runs of cli-job"), **driver}
    Location(dataset).write_bytes(f"steps/_attempts/{job}/{DRIVER_FILE}", json.dumps(record).encode())
    run_partition(str(dataset), job, 0, cloudpickle.dumps(work))
    return job


def test_doctor_repairs_a_job_as_committed_only_when_every_partition_its_driver_planned_committed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Of three jobs whose driver is gone, each with partition 0 committed: the one whose driver planned
    that one partition is recorded as committed by --repair (readers count it, with no warning); the
    one whose driver planned two, and the one whose record does not say (an older wfkit's), are
    recorded as aborted, as before."""
    dataset = tmp_path / "data"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    whole = _unfinished_job(dataset, pid=int(ended.stdout), partitions=1)
    short = _unfinished_job(dataset, pid=int(ended.stdout), partitions=2)
    unplanned = _unfinished_job(dataset, pid=int(ended.stdout))
    assert 1 == main(["doctor", "--dataset", str(dataset)])
    out = capsys.readouterr().out
    assert f"problem: job {whole} (runs of cli-job) has no end recorded" in out
    assert "but its one partition was committed: the job is whole" in out
    assert f"problem: job {short} (runs of cli-job) has no end recorded" in out
    assert "its 1 committed partition(s) (of 2)" in out
    assert "3 problem(s)" in out
    assert 0 == main(["doctor", "--dataset", str(dataset), "--repair"])
    out = capsys.readouterr().out
    assert (
        f"repaired: job {whole}: its one partition was committed before its driver died; recorded as committed" in out
    )
    assert f"repaired: job {short} recorded as aborted" in out
    assert f"repaired: job {unplanned} recorded as aborted" in out
    ended = {
        job: json.loads((dataset / "steps" / "_attempts" / job / "_job.json").read_text())
        for job in (whole, short, unplanned)
    }
    assert [False, True, True] == ["aborted" in ended[job] for job in (whole, short, unplanned)]
    (marker,) = (dataset / "steps" / "_attempts" / whole).glob("*.commit")
    assert {"0": marker.name.removesuffix(".commit")} == ended[whole]["partitions"]
    steps = wf.steps(dataset)  # warnings are errors: none is raised for the job now recorded as committed
    assert 1 == len(steps)
    assert {"one"} == set(steps["step"])
    assert 0 == main(["doctor", "--dataset", str(dataset)])
    assert "no problems found" in capsys.readouterr().out


def test_doctor_names_a_dask_job_whose_driver_is_gone_and_gives_up_one_it_cannot_check(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In the workspace's eval dataset, a job whose driver (on this host) ended without recording an end
    is a problem that --repair records as aborted; one driven from another host is described, with
    its age, and given up only on --abort JOB; readers count neither, before or after."""
    _gated_run(workspace)
    dataset = workspace / "evals" / "runs"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = _unfinished_job(dataset, pid=int(ended.stdout))
    elsewhere = _unfinished_job(dataset, host="another-machine", pid=1)
    with pytest.warns(wf.UnfinishedJobWarning, match=f"job {gone} in {dataset}"):
        assert 0 == len(wf.steps(dataset))  # neither counts until it ends, and the dead driver's is named
    assert 1 == main(["doctor"])
    out = capsys.readouterr().out
    pid = ended.stdout.strip()
    assert f"problem: job {gone} (runs of cli-job) has no end recorded and its driver, pid {pid}" in out
    assert (
        f"note: job {elsewhere} (runs of cli-job) has no end recorded, and its driver, pid 1 on another-machine, "
        f"cannot be checked from here; it started 0 s ago" in out
    )
    assert f"`wfkit doctor --dataset {dataset} --abort {elsewhere}`" in out
    assert 0 == main(["doctor", "--dataset", str(dataset), "--abort", elsewhere])
    assert f"job {elsewhere} recorded as aborted" in capsys.readouterr().out
    assert 0 == len(wf.steps(dataset))
    assert 1 == main(["doctor", "--dataset", str(dataset), "--abort", elsewhere])
    assert f"job {elsewhere} in {dataset} was aborted (its driver (pid 1 on another-machine)" in capsys.readouterr().err
    assert 0 == main(["doctor", "--repair"])
    assert f"repaired: job {gone} recorded as aborted" in capsys.readouterr().out
    assert 0 == len(wf.steps(dataset))
    assert 2 == len(list((dataset / "steps-uncounted").rglob("*.parquet")))


def test_doctor_repair_moves_what_a_job_left_staged_after_its_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A driver killed after recording its job's end, before moving the job's staged segments: the
    committed job's rows count nowhere, and the aborted job's wait in steps-staging. `wfkit doctor`
    names both; `--repair` moves the taken segment into steps/ (pandas and wf.steps then count its
    run) and the other one to steps-uncounted, leaving nothing staged."""
    import pandas as pd

    from wfkit.logs._dataset import Location
    from wfkit.logs._segments import job_file

    dataset = tmp_path / "data"
    taken, given_up = _unfinished_job(dataset, partitions=1), _unfinished_job(dataset, partitions=1)
    (marker,) = (dataset / "steps" / "_attempts" / taken).glob("*.commit")
    stem = marker.name.removesuffix(".commit")
    ends = {
        taken: {"job": taken, "partitions": {"0": stem}, "label": "runs of cli-job"},
        given_up: {"job": given_up, "partitions": {}, "aborted": "KeyboardInterrupt: ", "label": "runs of cli-job"},
    }
    for job, end in ends.items():  # as the driver records a job's end, just before it moves the segments
        Location(dataset).write_bytes(job_file(job), json.dumps({**end, "committed_at": 0.0}).encode())
    assert 0 == len(wf.steps(dataset))
    assert 1 == main(["doctor", "--dataset", str(dataset)])
    out = capsys.readouterr().out
    assert (
        f"problem: job {taken} (runs of cli-job) committed but left 1 file(s) in {dataset}/steps-staging/{taken}" in out
    )
    assert "1 of them hold rows of attempts it took, which no reader counts until they are in steps/" in out
    assert f"problem: job {given_up} (runs of cli-job) was aborted but left 1 file(s)" in out
    assert "rows of attempts that do not count" in out
    assert 0 == main(["doctor", "--dataset", str(dataset), "--repair"])
    out = capsys.readouterr().out
    assert f"repaired: job {taken} (committed): moved 1 step-log segment(s) it took into steps/ and 0 other" in out
    assert f"repaired: job {given_up} (aborted): moved 0 step-log segment(s) it took into steps/ and 1 other" in out
    counted = wf.steps(dataset)
    assert 1 == len(counted)
    assert list(counted["run_id"]) == list(pd.read_parquet(dataset / "steps")["run_id"])
    assert 1 == len(pd.read_parquet(dataset / "steps-uncounted" / given_up))
    assert [] == [p for p in (dataset / "steps-staging").rglob("*") if p.is_file()]
    assert 0 == main(["doctor", "--dataset", str(dataset)])
    assert "no problems found" in capsys.readouterr().out


def test_doctor_of_a_workspace_only_dask_jobs_wrote_to_checks_their_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A workspace that only Dask jobs wrote to (run_many's and a Dask eval's default datasets; no run
    store, since the runs ran on workers): `wfkit doctor` checks those jobs, as it does beside a run
    store, instead of saying there is no workspace; --repair gives up the jobs whose driver is gone,
    and no run store is created."""
    workspace = tmp_path / "ws"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    batch = _unfinished_job(workspace, pid=int(ended.stdout))
    evaluation = _unfinished_job(workspace / "evals" / "runs", pid=int(ended.stdout))
    assert 1 == main(["doctor", "--workspace", str(workspace)])
    out = capsys.readouterr().out
    assert f"problem: job {batch} (runs of cli-job) has no end recorded and its driver" in out
    assert f"problem: job {evaluation} (runs of cli-job) has no end recorded and its driver" in out
    assert f"`wfkit doctor --dataset {workspace} --repair`" in out
    assert "2 problem(s)" in out
    assert 0 == main(["doctor", "--workspace", str(workspace), "--repair"])
    out = capsys.readouterr().out
    assert f"repaired: job {batch} recorded as aborted" in out
    assert f"repaired: job {evaluation} recorded as aborted" in out
    assert not (workspace / "wfkit.db").exists()


def test_a_run_id_given_by_its_last_characters_names_its_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Run ids begin with the time they were made: runs of one session share their first dozen
    characters, so the first 7 (git's habit, which the README invites) named every run and were
    refused. The refusal suggests the id's last characters, which `show` (and resume, fork,
    reconcile) take when they end one run's id; an end shared by several is refused, listing them."""
    flow = _router()
    ids = [flow.run({"query": "money back"}).run_id for _ in range(3)]
    assert 1 == main(["show", ids[0][:7]])
    err = capsys.readouterr().err
    assert f"run id {ids[0][:7]!r} is the start of 3 runs' ids: give more of it (or its last characters, e.g. " in err
    assert 0 == main(["show", ids[1][-6:]])
    assert capsys.readouterr().out.startswith(f"run {ids[1]} of 'router-cli': succeeded")
    for run_id in ("aa-0001", "bb-0001"):
        flow.run({"query": "money back"}, run_id=run_id)
    assert 1 == main(["show", "0001"])
    assert "run id '0001' is the end of 2 runs' ids: give more of it. They are: " in capsys.readouterr().err
    assert 1 == main(["show", "001"])  # under 4 characters: no end is taken
    assert "no run '001'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["show", "resume", "fork", "reconcile"])
def test_the_run_id_help_says_its_last_characters_are_enough(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit show --help` (and resume, fork, reconcile) said a run id could be given by "enough of
    its start", which names every run of a session (their ids begin with the time they were made):
    the help now says what the commands take, the id's last characters (4 or more) first."""
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert 0 == info.value.code
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert (
        "lists it (or run.run_id in Python), or its last characters (4 or more, e.g. 6dd461: a run id begins "
        "with the time it was made, so the runs of one session share their start), or enough of its start, when "
        "no other run's id ends or starts with them"
    ) in out


@pytest.mark.parametrize("given", ["", "  "])
def test_an_empty_run_id_is_refused_not_read_as_the_start_of_every_run(
    given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit show ''` (an unset shell variable) listed ten runs as the ones its id "starts"; an empty
    run id is refused, saying what to give."""
    flow = _router()
    flow.run({"query": "money back"})
    assert 1 == main(["show", given])
    err = capsys.readouterr().err
    assert f"wfkit show: run id {given!r} is empty: give a run's id, or its last characters (4 or more)" in err


@pytest.mark.parametrize(
    "command",
    [
        ["show"],
        ["resume", "--workflow", "durable_flows:router"],
        ["fork", "--at", "classify", "--workflow", "durable_flows:router"],
        ["reconcile", "send", "--done", "--by", "ops"],
    ],
)
def test_a_run_id_prefix_names_its_run_and_an_ambiguous_one_lists_the_runs(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`show`, `resume`, `fork` and `reconcile` take a unique prefix of a run id, as git does, and
    refuse an ambiguous one, listing the runs it matches, doing nothing."""
    flow = _router()
    for run_id in ("cafe1234", "cab05678"):
        flow.run({"query": "money back"}, run_id=run_id)
    verb, *options = command
    assert 1 == main([verb, "ca", *options])
    err = capsys.readouterr().err
    assert "run id 'ca' is the start of 2 runs' ids: give more of it" in err
    assert "cafe1234 (router-cli, succeeded" in err
    assert "cab05678 (router-cli, succeeded" in err
    assert 2 == len(wfkit.Workspace().runs())
    if verb == "show":
        assert 0 == main(["show", "caf"])
        assert capsys.readouterr().out.startswith("run cafe1234 of 'router-cli': succeeded")
    if verb == "fork":
        assert 0 == main(["fork", "cab", *options])
        assert "(forked from cab05678 at 'classify'): succeeded" in capsys.readouterr().out


def test_a_ticket_id_prefix_names_its_ticket_and_an_ambiguous_one_lists_the_tickets(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit approve` and `reject` took a whole ticket id only, where `show`, `resume` and `fork`
    take a run id's prefix: they take a ticket id's unique prefix too, and refuse an ambiguous one,
    listing the tickets it matches, deciding nothing."""
    import uuid

    _router()
    import durable_flows

    ids = iter(["cafe01234567", "cab012345678"])
    made = uuid.uuid4
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(next(ids) + made().hex[12:]))
    for amount in (10, 20):
        assert "waiting_approval" == durable_flows.refunds.run({"amount": amount}, policy="halt").status
    monkeypatch.setattr(uuid, "uuid4", made)
    assert 1 == main(["approve", "ca", "--by", "ana"])
    err = capsys.readouterr().err
    assert "ticket id 'ca' is the start of 2 tickets' ids: give more of it" in err
    assert "cafe01234567 (refunds-cli/pay, open); cab012345678 (refunds-cli/pay, open)" in err
    assert 2 == len(wfkit.Workspace().pending())
    assert 0 == main(["reject", "cab", "--by", "ana"])
    assert capsys.readouterr().out.startswith("ticket cab012345678 rejected by ana")
    assert ["cafe01234567"] == [t.ticket_id for t in wfkit.Workspace().pending()]


def test_resume_prints_the_path_and_state_as_run_does(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wfkit resume` of a run that then finishes prints what `wfkit run` prints for one: its status,
    the steps it took and its state (it printed only "run X: succeeded")."""
    _router()
    import durable_flows

    run = durable_flows.refunds.run({"amount": 30}, workspace=workspace, policy="halt")
    assert "waiting_approval" == run.status
    where = ["--workspace", str(workspace), "--workflow", "durable_flows:refunds"]
    assert 0 == main(["resume", run.run_id, *where, "--policy", "approve"])
    out = capsys.readouterr().out
    expected = [f"run {run.run_id}: succeeded", "  quote", "  pay", "{", '  "amount": 30,', '  "paid": 30', "}"]
    assert expected == out.splitlines()


# ---- wfkit show of a run whose process died ------------------------------------------------------

_TESTS = Path(__file__).parent


def _crashflow(workspace: Path, logs: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    """tests/crashflow.py in a process of its own: killed with SIGKILL at ``crash_at``, or resuming."""
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(_TESTS.parent)}
    args = [sys.executable, str(_TESTS / "crashflow.py"), str(workspace), str(logs), *([crash_at] if crash_at else [])]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)


def _show(run_id: str, workspace: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert 0 == main(["show", run_id, "--workspace", str(workspace)])
    return capsys.readouterr().out


@pytest.mark.slow  # a process killed with SIGKILL: about 2 s
@pytest.mark.parametrize(
    ("crash_at", "flying"),
    [
        ("right:middle", "step 'right' attempt 1"),
        ("left:middle", "step 'left' attempt 1; step 'right' attempt 1"),
        ("email:middle", "step 'email' attempt 1"),
    ],
)
def test_show_of_an_interrupted_run_names_the_steps_in_flight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crash_at: str, flying: str
) -> None:
    """`wfkit show` of a run whose process died mid-step listed the steps that settled and said it was
    interrupted, naming no step it was running then (nothing records a first attempt's start): it now
    says which, read as a resume reads them, from its checkpoints over its stored graph; `--json`
    has them as `in_flight`."""
    ws = tmp_path / "ws"
    assert -signal.SIGKILL == _crashflow(ws, tmp_path / "logs", crash_at).returncode
    out = _show("crash-run", ws, capsys)
    assert f"\nin flight when the process stopped: {flying}\n" in out, out
    assert 0 == main(["show", "crash-run", "--workspace", str(ws), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert [part.split("'")[1] for part in flying.split("; ")] == [f["step"] for f in info["in_flight"]]
    assert [] == info["reconciled_since_stop"]
    assert 0 == _crashflow(ws, tmp_path / "logs").returncode  # resumed to its end: nothing is in flight
    assert "in flight" not in _show("crash-run", ws, capsys)


@pytest.mark.slow  # a process killed with SIGKILL: about 2 s
def test_show_names_a_retry_cut_off_by_its_attempt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A process killed in a step's second attempt (its first timed out) is shown in flight at attempt 2."""
    script = tmp_path / "retried.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, sys
            import wfkit as wf

            flow = wf.Workflow("retried")

            @flow.step
            def first(state):
                return {"a": 1}

            @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=0.01, jitter=0))
            def fetch(state, ctx):
                if ctx.attempt == 1:
                    raise TimeoutError("slow upstream")
                os.kill(os.getpid(), signal.SIGKILL)

            flow.chain("first", "fetch")
            flow.run({}, run_id="r1", workspace=sys.argv[1])
            """
        )
    )
    ws = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": str(_TESTS.parent)}
    done = subprocess.run([sys.executable, str(script), str(ws)], env=env, capture_output=True, text=True, check=False)
    assert -signal.SIGKILL == done.returncode, done.stderr
    assert "\nin flight when the process stopped: step 'fetch' attempt 2\n" in _show("r1", ws, capsys)


@pytest.mark.slow  # processes killed and resumed: about 4 s
@pytest.mark.parametrize("resumed", [True, False])
def test_show_of_a_reconciled_run_says_the_reconciliation_not_to_reconcile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], resumed: bool
) -> None:
    """Once `wfkit reconcile` settled an irreversible step a crash cut off, `wfkit show` still printed the
    crashed attempt's "check, then `wfkit reconcile ...`", a reconciliation row with nothing to say, and
    "interrupted: the process running it stopped" of a run that had halted for the reconciliation. It
    now says the reconciliation made, by whom and what follows, there and in the run's status line."""
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    assert -signal.SIGKILL == _crashflow(ws, logs, "email:middle").returncode
    if resumed:  # the resume halts at the step: it needs reconciliation
        assert 0 == _crashflow(ws, logs).returncode
        assert "needs_reconciliation" == json.loads((logs / "result.json").read_text())["status"]
        assert "\nneeds reconciliation: email (visit 1" in _show("crash-run", ws, capsys)
    assert 0 == main(["reconcile", "crash-run", "email", "--done", "--by", "ana", "--workspace", str(ws)])
    capsys.readouterr()
    out = _show("crash-run", ws, capsys)
    done = "reconciled by ana: done (its side effect happened: the step counts as completed)"
    assert "wfkit reconcile" not in out, out
    assert "needs reconciliation" not in out
    [crashed] = [line for line in out.splitlines() if line.startswith("email") and " 1 retry " in line]
    assert crashed.endswith(f"whether its side effect happened is unknown; since {done}"), crashed
    [row] = [line for line in out.splitlines() if line.startswith("email") and " 0 ok " in line]
    assert row.endswith(f"  {done}"), row
    status = out.strip().splitlines()[-1]
    if resumed:
        assert status.startswith(f"interrupted: step 'email' was {done}, and nothing runs it now; continue it from its")
        assert "in flight" not in out
    else:
        assert status.startswith(
            "interrupted: the process running it stopped before the run ended, and nothing runs it now; since "
            f"then, step 'email' was {done}; continue it from its last completed step: "
        ), status
        assert "\nin flight when the process stopped: step 'email' attempt 1\n" in out
    assert 0 == _crashflow(ws, logs).returncode  # resumed: it goes on from the reconciliation
    assert "succeeded" == json.loads((logs / "result.json").read_text())["status"]
    out = _show("crash-run", ws, capsys)
    assert "wfkit reconcile" not in out
    assert "since then" not in out


SLEEPY_STEPS = """
import os
import time


def first(state):
    return {"a": 1}


def second(state):
    if os.environ.get("SLEEPY_STEP"):
        print("second started", flush=True)
        time.sleep(60)
    return {"b": 2}
"""


def _sleepy_spec(folder: Path) -> Path:
    (folder / "sleepysteps.py").write_text(SLEEPY_STEPS, encoding="utf-8")
    spec = {
        "wfkit_flow": 1,
        "name": "sleepy",
        "entry": "first",
        "steps": {"first": {"fn": "sleepysteps:first"}, "second": {"fn": "sleepysteps:second"}},
        "edges": {"first": ["second"]},
    }
    (folder / "sleepy.json").write_text(json.dumps(spec), encoding="utf-8")
    return folder / "sleepy.json"


def _interrupt(command: list[str], folder: Path) -> tuple[int, str, str]:
    """`wfkit COMMAND` in a process of its own, stopped with SIGINT (Ctrl-C) once its step runs."""
    env = {**os.environ, "SLEEPY_STEP": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-m", "wfkit", *command],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert "second started" == proc.stdout.readline().strip()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_ctrl_c_on_run_or_fork_names_the_run_and_how_to_resume_it(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C on `wfkit run` (or `fork`, or `resume`) ended in a KeyboardInterrupt's traceback, exit 1,
    and the run's id was never printed: the user had to find the cancelled run in `wfkit runs`. It
    now says which run stopped, how it stands and the command that continues it, and exits 130;
    the command works."""
    _sleepy_spec(tmp_path)
    code, _, err = _interrupt(["run", "sleepy.json"], tmp_path)
    assert "Traceback" not in err
    assert 130 == code, err
    (row,) = wf.Workspace(workspace).runs()
    run_id = row["run_id"]
    assert "cancelled" == row["status"]
    assert (
        f"wfkit run: interrupted (Ctrl-C): run {run_id} stopped, cancelled; `wfkit show {run_id}` lists the "
        f"steps it completed; resume with `wfkit resume {run_id}`\n"
    ) == err

    code, _, err = _interrupt(["fork", run_id, "--at", "first"], tmp_path)
    assert 130 == code, err
    fork_id = next(r["run_id"] for r in wf.Workspace(workspace).runs() if r["run_id"] != run_id)
    assert f"wfkit fork: interrupted (Ctrl-C): run {fork_id} stopped, cancelled;" in err

    code, _, err = _interrupt(["resume", fork_id], tmp_path)
    assert 130 == code, err
    assert f"wfkit resume: interrupted (Ctrl-C): run {fork_id} stopped, cancelled;" in err

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert 0 == main(["resume", run_id])  # what it said to do: the step no longer sleeps
    assert f"run {run_id}: succeeded" in capsys.readouterr().out


def test_fork_that_halts_at_a_gate_names_its_ticket_and_how_to_decide_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`wfkit fork` of a gated workflow at the step before the gate printed `waiting_approval` and
    nothing more: neither the ticket nor the command that decides it (`wfkit run` and `resume` print
    both). It now does, and the command it prints decides the fork's gate."""
    _router()  # durable_flows on sys.path
    import durable_flows

    run = durable_flows.refunds.run({"amount": 50}, policy="approve")
    assert "succeeded" == run.status
    assert 0 == main(["fork", run.run_id, "--at", "quote", "--set", "amount=5000", "--policy", "halt"])
    out = capsys.readouterr().out
    first, *rest = out.strip().splitlines()
    fork_id = first.split()[1]
    assert f"run {fork_id} (forked from {run.run_id} at 'quote'): waiting_approval" == first
    (ticket,) = wfkit.Workspace().pending()
    assert (
        f"waiting for approval: ticket {ticket.ticket_id} at 'pay': Refunds need a human: "
        f"`wfkit approve {ticket.ticket_id} --by NAME`"
    ) == rest[-1]
    assert 0 == main(["approve", ticket.ticket_id, "--by", "ana"])
    assert 0 == main(["resume", fork_id])
    assert {"amount": 5000, "paid": 5000} == wfkit.Workspace().run_info(fork_id)["state"]


def test_show_of_a_fork_or_a_sub_workflow_run_says_where_it_comes_from(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit show FORK` printed an empty step table (a fork's journal starts after the step it was
    forked at) and nothing said it was a fork: `wfkit runs` listed it with 0 steps, as if it had
    done nothing. A sub-workflow's child run did not name its parent either. Both now say which
    run they come from, with the command that shows it (`--json` had it all along)."""
    source = wfkit.Workflow("cli-source")
    source.step(lambda s: {"a": 1}, name="first")
    source.step(lambda s: {"b": s["a"] + 1}, name="second")
    source.chain("first", "second")
    run = source.run({})
    fork = source.fork(run.run_id, at="second", update={"a": 10})
    assert 0 == main(["show", fork.run_id, "--workspace", str(workspace)])
    out = capsys.readouterr().out.splitlines()
    assert (
        f"forked from {run.run_id} at 'second' (visit 1): the steps up to there are that run's "
        f"(`wfkit show {run.run_id} --workspace {workspace}`)"
    ) == out[2]

    child = wfkit.Workflow("cli-child-of", inputs=["x"])
    child.step(lambda s: {"y": s["x"] + 1}, name="inc")
    parent = wfkit.Workflow("cli-parent-of")
    parent.step(lambda s: {"x": 1}, name="prepare")
    parent.subflow(child, name="inner", inputs={"x": "x"}, outputs={"y": "y"})
    parent.chain("prepare", "inner")
    top = parent.run({})
    (child_run,) = wfkit.Workspace().run_info(top.run_id)["children"]
    assert 0 == main(["show", child_run])
    assert f"sub-workflow run of {top.run_id} (`wfkit show {top.run_id}`)" == capsys.readouterr().out.splitlines()[2]


def test_show_of_a_run_a_rejection_ended_says_to_fork_it_not_to_resume_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`wfkit show` of a run that failed because a reviewer rejected its gate said "once its cause
    is fixed, continue it from its last completed step: `wfkit resume RUN`", but a resume follows
    the rejection again (a ticket is decided once) and fails the same. It now says so, and gives
    the fork that asks the gate anew; that fork halts at the gate with a ticket of its own."""
    _router()  # durable_flows on sys.path
    import durable_flows

    run = durable_flows.refunds.run({"amount": 900})
    (ticket,) = run.tickets()
    assert 0 == main(["reject", ticket.ticket_id, "--by", "ana", "--comment", "too much"])
    assert 1 == main(["resume", run.run_id])
    capsys.readouterr()
    assert 0 == main(["show", run.run_id])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    command = f"wfkit fork {run.run_id} --at quote"
    assert (
        f"failed: rejected at 'pay' (a decision is made once: resuming the run follows it again); to ask again, "
        f"fork it from a step before the gate (`{command}`: the last step it completed), or start a new run"
    ) == last
    assert 1 == main(["resume", run.run_id])  # indeed: the same failure
    assert "failed" == wfkit.Workspace().run_info(run.run_id)["status"]
    assert 0 == main(command.split()[1:])
    assert f"(forked from {run.run_id} at 'quote'): waiting_approval\n" in capsys.readouterr().out


def test_cache_clear_of_a_misspelt_step_or_workflow_names_what_the_cache_holds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`wfkit cache clear --step inc_` (a typo) said `dropped 0 cache entries` and nothing else, as if
    the step's entries were gone; the stale results stayed. It now says that no entry is of that
    step, and which workflows and steps the cache holds; a right name with nothing left (or nothing
    expired) says no more than before."""
    flow = wfkit.Workflow("cli-cached-typo")
    flow.step(lambda s: {"b": s["a"] + 1}, name="inc", cache=True)
    flow.run({"a": 1})
    assert 0 == main(["cache", "clear", "--step", "inc_"])
    captured = capsys.readouterr()
    assert captured.out.startswith("dropped 0 cache entries from")
    assert (
        "wfkit cache clear: no cache entry is of step 'inc_'; it holds entries of 'inc' of 'cli-cached-typo' (1): "
        "check the names (--workflow is the workflow's name, --step a step's, as `wfkit show RUN` lists them)\n"
    ) == captured.err
    assert 0 == main(["cache", "clear", "--workflow", "cli-cached-typo", "--step", "inc", "--expired"])
    assert "" == capsys.readouterr().err  # the names are right: nothing had expired
    assert 0 == main(["cache", "clear", "--workflow", "cli-cached-typo", "--step", "inc"])
    assert "dropped 1 cache entry from" in capsys.readouterr().out
    assert 0 == main(["cache", "clear", "--step", "inc_"])
    assert "" == capsys.readouterr().err  # an empty cache: nothing to compare with


def test_runs_filtered_to_nothing_does_not_say_the_workspace_is_empty(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit runs --status interrupted` in a workspace of runs that all ended said `no runs in this
    workspace`, as if it were empty (a wrong --workspace, say). It now names the status it found
    none of, and how many runs there are in all; an empty workspace still says it is empty."""
    _gated_run(workspace)
    assert 0 == main(["runs", "--status", "interrupted", "--workspace", str(workspace)])
    assert (
        f"no interrupted runs in this workspace (1 run in all: `wfkit runs --workspace {workspace}` lists them)\n"
    ) == capsys.readouterr().out
    empty = workspace.parent / "empty"
    wfkit.Workspace(empty, create=True)
    assert 0 == main(["runs", "--status", "interrupted", "--workspace", str(empty)])
    assert "no runs in this workspace\n" == capsys.readouterr().out


def test_reconcile_of_a_step_already_reconciled_says_who_did_and_how(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `wfkit reconcile RUN STEP` (a colleague's, or the same command typed again) said only
    `run R has no irreversible step 'send' waiting for reconciliation`, as if the name were wrong. It
    now says who reconciled it and how; a step that completed says so."""
    run = _payout().run({})
    wfkit.Workspace().approve(run.tickets()[0].ticket_id, by="ana", resume=False)
    wfkit.Workspace().store.intent(run.run_id, "send", 1, f"{run.run_id}:send:1")  # then the process died
    assert 0 == main(["reconcile", run.run_id, "send", "--done", "--by", "ops"])
    capsys.readouterr()
    assert 1 == main(["reconcile", run.run_id, "send", "--retry", "--by", "bob"])
    assert (
        f"wfkit reconcile: run {run.run_id} has no irreversible step 'send' waiting for reconciliation: ops "
        f"reconciled it as done (a step is reconciled once); `wfkit show {run.run_id}` lists its intents\n"
    ) == capsys.readouterr().err
    done = _payout().run({}, policy="approve")
    assert 1 == main(["reconcile", done.run_id, "send", "--done", "--by", "bob"])
    assert "waiting for reconciliation: it completed; `wfkit show" in capsys.readouterr().err
    cut = _payout().run({})  # a misspelt step of a run that does wait: the command for the step it waits for
    wfkit.Workspace().approve(cut.tickets()[0].ticket_id, by="ana", resume=False)
    wfkit.Workspace().store.intent(cut.run_id, "send", 1, f"{cut.run_id}:send:1")
    assert 1 == main(["reconcile", cut.run_id, "sned", "--done", "--by", "bob"])
    assert (
        f"has no irreversible step 'sned' waiting for reconciliation; it waits for "
        f"`wfkit reconcile {cut.run_id} send --done|--retry --by NAME`\n"
    ) in capsys.readouterr().err


@pytest.mark.slow  # a process killed with SIGKILL: about 2 s
def test_show_of_a_run_killed_in_an_irreversible_step_says_to_reconcile_before_resuming(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`wfkit show` of a run killed inside its irreversible step asked for `wfkit reconcile`, then
    ended with `continue it from its last completed step: wfkit resume RUN`, which only stops the
    run again in needs_reconciliation. It now says to settle the step first, then resume; once
    it is reconciled the line says to resume, and the resume finishes the run."""
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    assert -signal.SIGKILL == _crashflow(ws, logs, "email:middle").returncode
    status = _show("crash-run", ws, capsys).strip().splitlines()[-1]
    assert status.startswith(
        "interrupted: the process running it stopped before the run ended, and nothing runs it now; settle 'email' "
        "first (needs `wfkit reconcile`, above: a resume would stop there), then continue it from its last "
        f"completed step: `wfkit resume crash-run --workspace {ws} --workflow module:name`"
    ), status
    assert 0 == main(["reconcile", "crash-run", "email", "--retry", "--by", "ana", "--workspace", str(ws)])
    capsys.readouterr()
    assert "settle" not in _show("crash-run", ws, capsys)
    assert 0 == _crashflow(ws, logs).returncode
    assert "succeeded" == json.loads((logs / "result.json").read_text())["status"]


PATIENT = textwrap.dedent(
    """
    import asyncio, os, signal, sys, wfkit as wf

    flow = wf.Workflow("patient-cli")

    class Busy(ConnectionError):
        retry_after = 3.0  # the server asked for 3 s

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, jitter=0))
    def call(state, ctx):
        if ctx.attempt == 1:
            raise Busy("429 Too Many Requests")
        return {"ok": True}

    def die_in_the_backoff(event):
        if event.status == "retry":  # durable by now; die 0.2 s into the 3 s backoff
            asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGKILL)

    if __name__ == "__main__":
        flow.run({}, run_id="patient", workspace=sys.argv[1], sinks=[die_in_the_backoff])
    """
)


@pytest.mark.slow  # a process killed with SIGKILL, then a resume that waits out ~3 s
def test_resume_says_it_waits_out_a_backoff_the_crash_left(tmp_path: Path) -> None:
    """`wfkit resume` of a run whose process died in a retry's backoff (a Retry-After of 3 s) sat
    silent while it waited the rest out, like a hung command: it says which step waits, before which
    attempt, and for how long; `wfkit show --json` has the backoff's end (`not_before`)."""
    (tmp_path / "patient.py").write_text(PATIENT)
    ws = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    died = subprocess.run(
        [sys.executable, "patient.py", str(ws)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert -signal.SIGKILL == died.returncode, died.stderr
    [flying] = wfkit.Workspace(ws).run_info("patient")["in_flight"]
    assert (flying["step"], flying["attempt"], flying["waiting"]) == ("call", 2, True)
    assert 1.0 < flying["not_before"] - time.time() <= 3.0
    where = ["--workspace", str(ws), "--workflow", "patient:flow"]
    resumed = subprocess.run(
        [sys.executable, "-m", "wfkit", "resume", "patient", *where],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert 0 == resumed.returncode, resumed.stderr
    said = re.search(
        r"step 'call' waits out the rest of its retry's backoff before attempt 2: (\d+) s \(until ", resumed.stderr
    )
    assert said is not None, resumed.stderr
    assert 1 <= int(said.group(1)) <= 3
    assert resumed.stdout.startswith("run patient: succeeded")
