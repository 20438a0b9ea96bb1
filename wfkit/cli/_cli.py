"""The ``wfkit`` command."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import math
import os
import re
import shlex
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TextIO

from wfkit._version import __version__
from wfkit.model._status import RunStatus
from wfkit.model._suggest import closest, misnamed
from wfkit.replay._options import at_least_one, cell_seconds, processes


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _print(*parts: object, file: TextIO | None = None) -> None:
    """Everything the command prints passes the redaction boundary (a run's error, say, may quote a key)."""
    from wfkit.model._processors import redact_text

    print(redact_text(" ".join(str(p) for p in parts)), file=file or sys.stdout)


def _print_json(value: Any) -> None:
    _print(json.dumps(_finite(value), indent=2, default=str, allow_nan=False))


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (null): json.dumps writes them as NaN, which is
    not JSON (jq and JSON.parse refuse the whole output); a figure of no case is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


_positive_int = at_least_one("leave it out to list every run")


def _person(text: str) -> str:
    """An argparse type: a person's name (``--by``), not empty or blank: a decision or a
    reconciliation by nobody says nothing of who made it."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"names no one ({text!r}): give your name, e.g. --by ana")
    return text


def _workspace(args: argparse.Namespace) -> Any:
    from wfkit.store._workspace import Workspace

    return Workspace(args.workspace)


# The fewest characters taken as the end of a run id: fewer would match by chance.
_SUFFIX_MIN = 4


def _run_of(ws: Any, args: argparse.Namespace) -> str:
    """The run ``args.run_id`` names, set there: the run of that id, else the one run whose id it
    begins, as git takes a commit's prefix, else (4 characters or more) the one whose id it ends: a
    run id begins with the time it was made, so the runs of one session share their first dozen
    characters, and the first 7, git's habit, name them all. Several runs' ids are refused, listing
    them. An id that begins and ends none is left for the command to say there is no such run."""
    given = args.run_id
    if not given.strip():  # the start of every run id: it would name them all
        raise ValueError(
            f"run id {given!r} is empty: give a run's id, or its last characters (4 or more); `wfkit runs` lists them"
        )
    matches = ws.store.run_ids_from(given, limit=11)
    where = "start"
    if not matches and len(given) >= _SUFFIX_MIN:
        matches, where = ws.store.run_ids_ending(given, limit=11), "end"
    if len(matches) > 1 and all(run_id != given for run_id, *_ in matches):
        count = f"{len(matches)}" if len(matches) <= 10 else "more than 10"
        runs = "; ".join(
            f"{run_id} ({workflow}, {status}, started {_when(created)})"
            for run_id, workflow, status, created in matches[:10]
        )
        # Their last characters tell them apart, where their first (the time they were made) do not.
        tails = [run_id[-6:] for run_id, *_ in matches]
        hint = (
            f" (or its last characters, e.g. {tails[0]!r})"
            if where == "start" and len(set(tails)) == len(tails)
            else ""
        )
        raise ValueError(
            f"run id {given!r} is the {where} of {count} runs' ids: give more of it{hint}. They are: {runs}"
        )
    if len(matches) == 1:
        args.run_id = matches[0][0]
    return str(args.run_id)


def _demo(args: argparse.Namespace) -> int:
    from wfkit.cli._demo import run_demo

    return run_demo(runs=args.runs, seed=args.seed, out=sys.stdout)


def _runs(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    rows = ws.runs(status=args.status, limit=args.limit)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        every = len(ws.runs()) if args.status else 0
        if every:  # the filter left them out: not an empty workspace
            _print(
                f"no {args.status} runs in this workspace ({every} run{'s' if every != 1 else ''} in all: "
                f"`wfkit runs{_workspace_option(args)}` lists them)"
            )
        else:
            _print("no runs in this workspace")
        return 0
    width = max(len("run_id"), *(len(r["run_id"]) for r in rows))  # ids whole: 24 digits, 16 before, or yours
    # Names whole too: cut at 20 characters, "support-triage-v2-eu" and "...-us" read as one workflow.
    named = max(20, *(len(r["workflow"]) for r in rows))
    _print(f"{'run_id':{width}} {'workflow':{named}} {'status':22} {'started':19} {'steps':>5}")
    for r in rows:
        started = _when(r["started"])
        _print(f"{r['run_id']:{width}} {r['workflow']:{named}} {r['status']:22} {started:19} {r['steps_done']:5d}")
    return 0


def _decision(by: str | None, comment: str | None) -> str:
    """A gate decision's reviewer and comment, on the one line of its row."""
    if by is None:
        return ""
    return f"by {by}" + (f": {' '.join(comment.split())}" if comment else "")


def _show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wfkit.model._errors import ProcessCrashedError
    from wfkit.model._routes import END
    from wfkit.store._stopped import how_stopped, reconciliation_of, verdict

    if Path(args.run_id).is_file():  # a spec where a run id goes: no run of that name will be found
        name = args.run_id
        raise ValueError(
            f"{name} is a file; `wfkit show` takes a run id (`wfkit runs` lists them). For a flow spec, "
            f"`wfkit validate {name}` checks it, `wfkit graph {name} --format mermaid` draws it and "
            f"`wfkit run {name} --input JSON` runs it"
        )
    ws = _workspace(args)
    _run_of(ws, args)
    info = ws.run_info(args.run_id)
    events = [e._asdict() for e in ws.events(args.run_id)]
    if args.json:
        _print_json({**info, "events": events})
        return 0
    _print(f"run {info['run_id']} of {info['workflow']!r}: {info['status']}")
    _print(f"started {_when(info['created_at'])}, updated {_when(info['updated_at'])}, ended {_when(info['ended_at'])}")
    where = _workspace_option(args)
    forked = info["forked_from"]
    if forked is not None:  # its table starts after the fork: the steps before are the source's
        _print(
            f"forked from {forked['run_id']} at {forked['at']!r} (visit {forked['visit']}): the steps up to "
            f"there are that run's (`wfkit show {forked['run_id']}{where}`)"
        )
    if info["parent_run_id"] is not None:
        _print(f"sub-workflow run of {info['parent_run_id']} (`wfkit show {info['parent_run_id']}{where}`)")
    if info["error"]:
        _print(f"error: {info['error_type']}: {info['error']}")

    def label(e: dict[str, Any]) -> str:
        return e["step"] if e["map_index"] is None else f"{e['step']}[{e['map_index']}]"  # a map's item

    # Step names whole: cut at 20 characters, two steps that begin alike read as one.
    named = max([20, *(len(label(e)) for e in events)])
    _print(f"\n{'step':{named}} {'visit':>5} {'attempt':>7} {'status':17} {'latency s':>9}  route / error / decision")
    # Reconciled irreversible step visits: their crashed attempt's row asked for what is done now.
    reconciled = {
        (e["step"], e["visit"]): made
        for e in events
        if e["attempt"] == 0 and (made := reconciliation_of(e["extra"])) is not None
    }
    for e in events:
        # The end a route chose reads as flow.describe() draws it, END, not as the sentinel "__end__".
        route = "END" if e["route_taken"] == END else e["route_taken"]
        detail = route or e["error_message"] or _decision(e["approver"], e["decision_comment"])
        made = reconciled.get((e["step"], e["visit"]))
        if made is not None and e["attempt"] == 0 and reconciliation_of(e["extra"]) is not None:
            detail = verdict(*made)
        elif made is not None and e["error_type"] == ProcessCrashedError.__name__ and _ASK_RECONCILE in detail:
            detail = f"{detail.split(_ASK_RECONCILE, 1)[0]}; since {verdict(*made)}"
        _print(f"{label(e):{named}} {e['visit']:5d} {e['attempt']:7d} {e['status']:17} {e['latency_s']:9.3f}  {detail}")
    _print_reconciliations(ws, args, args.run_id)
    still_open = _print_tickets(ws, args, args.run_id)
    _print_decided_tickets(ws, args, args.run_id, still_open)
    stopped = how_stopped(ws.store, args.run_id, info["status"])
    if stopped.in_flight:
        _print(f"\nin flight when the process stopped: {'; '.join(f.describe() for f in stopped.in_flight)}")
    why = _STOPPED.get(info["status"])
    if info["status"] == RunStatus.FAILED and info["error_type"] == "ApprovalRejectedError":
        _print(f"\nfailed: {_rejected_hint(ws, args, info)}")
        return 0
    if why is not None:
        since = "; ".join(r.describe() for r in stopped.reconciled)
        if since and info["status"] == RunStatus.INTERRUPTED and not stopped.died:
            why = f"{since}, and nothing runs it now; "  # it halted for that reconciliation: no process died
        elif since:
            why = f"{why}since then, {since}; "
        hint = _resume_hint(ws, args, args.run_id).removeprefix("resume with ")
        waiting = ws.store.pending_intents(args.run_id)
        if waiting:  # a resume would only stop at them (needs_reconciliation): settle them first
            steps = ", ".join(repr(i["step"]) for i in waiting)
            need = "needs" if len(waiting) == 1 else "need"
            why = f"{why}settle {steps} first ({need} `wfkit reconcile`, above: a resume would stop there), then "
        _print(f"\n{info['status']}: {why}continue it from its last completed step: {hint}")
    return 0


def _rejected_hint(ws: Any, args: argparse.Namespace, info: dict[str, Any]) -> str:
    """What to do about a run a reviewer's rejection ended (its gate had no ``on_reject``): a
    resume follows the decision again (a ticket is decided once), so it is no way on; a fork from
    the step before the gate asks the gate anew, with a ticket of its own."""
    rejected = ws.store.tickets.find(status="rejected", run_id=info["run_id"])
    gate = f"at {rejected[-1].step!r} " if rejected else ""
    said = f"rejected {gate}(a decision is made once: resuming the run follows it again)"
    steps = info["steps"]
    if not steps:  # gated at its entry: nothing to fork from
        return f"{said}; to ask again, start a new run"
    workflow = "" if info["workflow_ref"] else " --workflow module:name"
    command = f"wfkit fork {info['run_id']} --at {steps[-1]['step']}{_workspace_option(args)}{workflow}"
    return (
        f"{said}; to ask again, fork it from a step before the gate (`{command}`: the last step it "
        f"completed), or start a new run"
    )


# How a crashed irreversible attempt's error asks for a reconciliation (Store.crashed_intent_attempt).
_ASK_RECONCILE = "; check, then `wfkit reconcile "


# What `wfkit show` says before the command that resumes a run stopped so (a run timed out keeps its
# spent deadline, so a resume would time out at once: no command for it).
_STOPPED = {
    RunStatus.INTERRUPTED: "the process running it stopped before the run ended, and nothing runs it now; ",
    RunStatus.FAILED: "once its cause is fixed, ",
    RunStatus.CANCELLED: "",
}


def _open_tickets(ws: Any, args: argparse.Namespace, run_id: str) -> list[dict[str, Any]]:
    """The open approval tickets a run waits on (its sub-workflows' too: they halt it), each with
    the command that decides it."""
    store = ws.store
    return [
        {
            "ticket_id": ticket.ticket_id,
            "run_id": owner,
            "step": ticket.step,
            "visit": ticket.visit,
            "reason": ticket.reason,
            "command": f"wfkit approve {ticket.ticket_id}{_workspace_option(args)} --by NAME",
        }
        for owner in store.descendant_runs(run_id)
        for ticket in store.tickets.find(status="open", run_id=owner)
    ]


def _print_tickets(ws: Any, args: argparse.Namespace, run_id: str) -> list[dict[str, Any]]:
    """The open approval tickets a run waits on, with the command that decides each; returns them."""
    tickets = _open_tickets(ws, args, run_id)
    for ticket in tickets:
        where = "" if ticket["run_id"] == run_id else f" of sub-workflow run {ticket['run_id']}"
        _print(
            f"\nwaiting for approval: ticket {ticket['ticket_id']} at {ticket['step']!r}{where}: {ticket['reason']}:"
            f" `{ticket['command']}`"
        )
    return tickets


def _print_decided_tickets(
    ws: Any, args: argparse.Namespace, run_id: str, still_open: Sequence[dict[str, Any]]
) -> None:
    """The gates of a run (its sub-workflows' too) decided where the run could not go on (`wfkit
    approve`, another process): it waits at them until it is resumed, which applies the decision.
    Who decided, how, when and why, and the command that resumes it (after ``still_open``, the
    tickets ``_print_tickets`` printed above, are decided too)."""
    decided = ws.store.tickets.awaiting_resume(ws.store.descendant_runs(run_id))
    if not decided:
        return
    hint = _resume_hint(ws, args, run_id).removeprefix("resume with ")
    for ticket in decided:
        where = "" if ticket.run_id == run_id else f" of sub-workflow run {ticket.run_id}"
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ticket.decided_at or 0))
        why = f" ({' '.join(ticket.comment.split())})" if ticket.comment else ""
        decision = "approval" if ticket.status == "approved" else "rejection"
        others = "ticket above" if len(still_open) == 1 else "tickets above"
        then = f"for the open {others} to be decided too, then " if still_open else ""
        _print(
            f"\ndecided: ticket {ticket.ticket_id} at {ticket.step!r}{where} was {ticket.status} by "
            f"{ticket.decided_by} at {when}{why}; the run waits {then}to be resumed, and a resume follows the "
            f"{decision}: {hint}"
        )


def _pending_reconciliations(ws: Any, args: argparse.Namespace, run_id: str) -> list[dict[str, Any]]:
    """The irreversible steps a run waits to have reconciled (its sub-workflows' too: they halt
    it), each with the command that settles it."""
    return [
        {
            "run_id": intent["run_id"],
            "step": intent["step"],
            "visit": intent["visit"],
            "key": intent["key"],
            "command": (
                f"wfkit reconcile {intent['run_id']} {intent['step']}{_workspace_option(args)} --done|--retry --by NAME"
            ),
        }
        for intent in ws.store.pending_intents(run_id)
    ]


def _print_reconciliations(ws: Any, args: argparse.Namespace, run_id: str) -> None:
    """The irreversible steps a run waits to have reconciled, with the command that settles each."""
    for intent in _pending_reconciliations(ws, args, run_id):
        where = "" if intent["run_id"] == run_id else f" of sub-workflow run {intent['run_id']}"
        _print(
            f"\nneeds reconciliation: {intent['step']}{where} (visit {intent['visit']}, key {intent['key']}):"
            f" `{intent['command']}`"
        )


def _pending(args: argparse.Namespace) -> int:
    tickets = _workspace(args).pending()
    if args.json:
        _print_json([{k: getattr(t, k) for k in t.__slots__} for t in tickets])
        return 0
    if not tickets:
        _print("no open approval tickets")
    for t in tickets:
        _print(f"{t.ticket_id}  run {t.run_id}  {t.workflow}/{t.step} (visit {t.visit}): {t.reason}")
        _print(f"    payload: {json.dumps(t.payload, default=str)[:200]}")
    return 0


def _ticket_of(ws: Any, given: str) -> str:
    """The ticket ``given`` names: that id, else the one ticket whose id begins with it (as a run
    id's prefix is taken); a prefix of several tickets' ids is refused, listing them. An id that
    begins none is left for the decision to say there is no such ticket."""
    matches = ws.store.tickets.ids_from(given) if given else []
    if len(matches) > 1 and all(t.ticket_id != given for t in matches):
        count = f"{len(matches)}" if len(matches) <= 10 else "more than 10"
        listed = "; ".join(f"{t.ticket_id} ({t.workflow}/{t.step}, {t.status})" for t in matches[:10])
        raise ValueError(
            f"ticket id {given!r} is the start of {count} tickets' ids: give more of it. They are: {listed}"
        )
    return matches[0].ticket_id if len(matches) == 1 else given


def _decide(decision: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from wfkit.model._approvals import already_decided

        ws = _workspace(args)
        ticket, changed = ws.decide(_ticket_of(ws, args.ticket), decision, by=args.by, comment=args.comment)
        verb = "approved" if decision == "approve" else "rejected"
        if changed:
            _print(f"ticket {ticket.ticket_id} {verb} by {ticket.decided_by}; {_resume_hint(ws, args, ticket.run_id)}")
        else:
            _print(f"{already_decided(ticket)}: nothing changed")
        return 0

    return handler


def _reconcile(args: argparse.Namespace) -> int:
    updates = None
    if args.updates:
        try:
            updates = json.loads(args.updates)
        except ValueError as exc:
            raise ValueError(
                f"--updates is not JSON ({exc}); pass an object, e.g. --updates '{{\"sent\": true}}'"
            ) from None
        if not isinstance(updates, dict):
            raise ValueError(f"--updates must be a JSON object of state fields, got {args.updates!r}")
    action = "done" if args.done else "retry"
    ws = _workspace(args)
    _run_of(ws, args)
    intent = ws.reconcile(args.run_id, args.step, action=action, by=args.by, updates=updates)
    _print(
        f"step {args.step!r} of run {args.run_id} marked {intent['status']} by {args.by}; "
        f"{_resume_hint(ws, args, args.run_id)}"
    )
    return 0


def _logs(args: argparse.Namespace) -> int:
    from wfkit.logs._steplog import compact, export_pending, exporter

    ws = _workspace(args)
    exporter.flush()
    exported = export_pending(ws.store, ws.path)
    if args.action == "export":
        _print(f"exported {exported} rows to {ws.path / 'steps'}")
        return 0
    result = compact(ws.path)
    _print(f"compacted {result['merged']} files into {result['written']} (exported {exported} rows first)")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    if args.dataset is not None:
        return _doctor_dataset(args)
    if args.abort is not None:
        raise ValueError("--abort JOB gives up a job of a dataset: give the dataset too, --dataset FOLDER_OR_URL")
    return _doctor_workspace(args)


def _doctor_dataset(args: argparse.Namespace) -> int:
    from wfkit.logs._dataset import Location
    from wfkit.logs._unfinished import check_jobs, give_up

    location = Location(args.dataset)
    if args.abort is not None:
        _print(f"job {args.abort} recorded as aborted; its rows are set aside in {give_up(location, args.abort)}")
        return 0
    command = f"wfkit doctor --dataset {args.dataset}"
    report = check_jobs(location, repair=args.repair, command=command)
    return _doctor_outcome(
        f"dataset {location.url}", report.problems, report.notes, report.repairs, repair=args.repair, command=command
    )


def _doctor_outcome(
    what: str, problems: list[str], notes: list[str], repairs: list[str], *, repair: bool, command: str
) -> int:
    for problem in problems:
        _print(f"problem: {problem}")
    for note in notes:
        _print(f"note: {note}")
    for done in repairs:
        _print(f"repaired: {done}")
    if not problems:
        _print(f"{what}: no problems found")
        return 0
    if not repair:
        _print(f"{len(problems)} problem(s); `{command} --repair` rebuilds what it can (nothing is deleted)")
    return 1


def _doctor_workspace(args: argparse.Namespace) -> int:
    from wfkit.logs._dataset import ATTEMPTS_DIR, STEPS_DIR, Location
    from wfkit.logs._steplog import check_ledger
    from wfkit.logs._unfinished import check_jobs
    from wfkit.store._doctor import check_store
    from wfkit.store._workspace import DB_NAME, open_store, workspace_path

    folder = workspace_path(args.workspace)
    db = folder / DB_NAME
    # Where Dask jobs write by default (run_many's dataset, a Dask eval's): a workspace only they
    # wrote to has no run store (its runs ran on the workers), and its jobs are what needs checking.
    datasets = [d for d in (folder, folder / "evals" / "runs") if (d / STEPS_DIR / ATTEMPTS_DIR).is_dir()]
    problems: list[str] = []
    notes: list[str] = []
    repairs: list[str] = []
    if db.exists():
        report = check_store(db, repair=args.repair)
        _print(f"store {db}: {report.runs} runs, {report.rows} journal rows checked")
        problems, repairs = list(report.problems), list(report.repairs)
    elif datasets:
        _print(f"workspace {folder}: no run store (only Dask jobs wrote here); checking their jobs")
    else:
        open_store(folder, create=False)  # raises the error that says where and how
    if db.exists() and not any("integrity" in p or "-wal" in p for p in problems):  # else SQLite cannot be trusted
        try:
            ledger = check_ledger(open_store(folder, create=False), folder, repair=args.repair, deep=True, strict=False)
        except Exception as exc:  # the ledger needs a readable store; say so, keep going
            problems.append(f"step log: {exc}")
        else:
            problems += [f"step log: rows {a}-{b} of run {r} missing from parquet" for r, a, b in ledger.missing]
            problems += [f"step log: damaged segment {p}" for p in ledger.damaged]
            problems += [
                f"step log: parquet holds {n} row(s) of run {r} that the journal lacks (the store lost "
                f"commits: a deleted -wal, or an older copy of {DB_NAME} put back)"
                for r, n in ledger.orphaned
            ]
            problems += [f"step log: {reason}" for reason in ledger.unrecoverable]
            repairs += [f"moved {a} to {b}" for a, b in ledger.moved]
            if ledger.reexported:
                repairs.append(f"exported {ledger.reexported} row(s) again from the journal")
            if ledger.swept:
                left = f"{ledger.swept} temporary step-log file(s) left by processes that are gone"
                if args.repair:
                    repairs.append(f"deleted {left}")
                else:
                    notes.append(f"{left}; `wfkit doctor --repair` (or any read of the step log) deletes them")
    for dataset in datasets:
        jobs = check_jobs(Location(dataset), repair=args.repair, command=f"wfkit doctor --dataset {dataset}")
        problems, notes, repairs = problems + jobs.problems, notes + jobs.notes, repairs + jobs.repairs
    return _doctor_outcome("workspace", problems, notes, repairs, repair=args.repair, command="wfkit doctor")


def _report(args: argparse.Namespace) -> int:
    from wfkit.logs._report import write_report

    page = write_report(args.workspace, args.out, since=args.since, workflow=args.workflow)
    _print(f"report written to {page}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wfkit.replay._console import ConsoleProgress
    from wfkit.replay._errors import ReplayError
    from wfkit.replay._notebooks import find_notebooks, notebook_key, project_root
    from wfkit.replay._parameters import describe_parameters, gather_parameters
    from wfkit.replay._replay import replay
    from wfkit.replay._result import totals

    started = time.perf_counter()
    try:
        root = Path(args.root).resolve() if args.root else project_root(Path.cwd())
        notebooks = find_notebooks(args.paths, root=root)
        if args.list_parameters:
            for nb in notebooks:
                try:
                    shown = notebook_key(nb, root)
                except ReplayError:
                    shown = str(nb)
                _print(describe_parameters(nb, shown))
            return 0
        parameters = gather_parameters(
            file=Path(args.parameters_file) if args.parameters_file else None,
            yaml_text=args.parameters_yaml,
            pairs=args.parameter,
        )
        report = Path(args.report)
        runner = None
        if args.dask:
            from wfkit.replay._replay_dask import dask_runner

            dataset = args.dataset or (report / "dataset").absolute()
            runner = dask_runner(args.dask, dataset, progress=False, announce=_to_stderr)
        elif args.dataset:
            raise ReplayError("--dataset is where Dask workers write; give --dask ADDRESS too")
        with ConsoleProgress(len(notebooks)) as progress:
            code, rows = replay(
                notebooks,
                root=root,
                baseline=Path(args.baseline) if args.baseline else None,
                report=report,
                jobs=args.jobs,
                parameters=parameters,
                update_baseline=args.update_baseline,
                cell_timeout=args.cell_timeout,
                kernel=args.kernel,
                cwd=Path(args.cwd) if args.cwd else None,
                junit_xml=Path(args.junit_xml) if args.junit_xml else None,
                runner=runner,
                on_result=progress,
            )
    except ReplayError as exc:
        _print(f"wfkit replay: {exc}", file=sys.stderr)
        return 2
    _print(f"{totals(rows)} in {time.perf_counter() - started:.1f} s")
    _print(f"report: {report / 'index.html'}" + (f", JUnit XML: {args.junit_xml}" if args.junit_xml else ""))
    return code


def _eval(args: argparse.Namespace) -> int:
    from wfkit.evals._evals import evaluate, load_result, load_suite

    suite = load_suite(args.suite)
    if args.dataset and not args.dask:
        _print("wfkit eval: --dataset is where Dask workers write; give --dask ADDRESS too", file=sys.stderr)
        return 2
    if args.partition_size is not None and not args.dask:  # else ignored: the cases run in this process
        _print(
            "wfkit eval: --partition-size is how many cases each Dask partition runs; give --dask ADDRESS too "
            "(without it the cases run in this process, --concurrency at a time)",
            file=sys.stderr,
        )
        return 2
    saved = None
    if args.against:  # read before any case runs: a wrong folder found after the eval would cost all of it
        try:
            saved = load_result(args.against)
        except (OSError, ValueError) as exc:
            _print(f"wfkit eval: --against: {exc}", file=sys.stderr)
            return 2
        if saved.suite_name != suite.name:
            _print(
                f"wfkit eval: --against: {args.against} is a result of suite {saved.suite_name!r}, not of suite "
                f"{suite.name!r}: give a folder under WORKSPACE/evals/{suite.name}/",
                file=sys.stderr,
            )
            return 2
        if not isinstance(suite.dataset, Iterator):  # an iterator would be read up here, and the eval run on nothing
            kept, ids = list(dict.fromkeys(saved.cases["case_id"])), [case.id for case in suite.cases()]
            if not set(kept) & set(ids):
                _print(
                    f"wfkit eval: --against: no case is in both {args.against} and the dataset of suite {suite.name!r} "
                    f"(its {len(kept)} cases are {_quoted(kept)}; the dataset's {_quoted(ids)}): it is a result of "
                    "another dataset; give one of this dataset",
                    file=sys.stderr,
                )
                return 2
    on_dask: dict[str, Any] = {}
    if args.dask:
        on_dask = {"executor": args.dask, "dataset": args.dataset, "partition_size": args.partition_size}
    result = evaluate(
        suite,
        variants=args.variant or None,
        concurrency=args.concurrency,
        workspace=args.workspace,
        progress=sys.stderr.isatty(),
        announce=_to_stderr,
        **on_dask,
    )
    # Each variant against the first asked for (the suite's first): the baseline leads.
    variants = list(dict.fromkeys(args.variant or suite.variants))
    against = {} if saved is None else _against(result, saved, variants)
    failures = result.check()
    if args.json:
        compared = [
            {"baseline": variants[0], "candidate": candidate, **row}
            for candidate in variants[1:]
            for row in result.compare(variants[0], candidate).reset_index().to_dict("records")
        ]
        summary = result.summary.reset_index().to_dict("records")
        out = {"summary": summary, "compare": compared, "check": failures, "saved_to": result.saved_to}
        if saved is not None:
            out["against"] = [
                {"baseline": variant, "candidate": variant, "saved": args.against, **row}
                for variant, table in against.items()
                for row in table.reset_index().to_dict("records")
            ]
        _print_json(out)
    else:
        _print(result.summary.round(3).to_string())
        # The columns are explained once, under the first comparison printed, whichever it is.
        explained = (
            "net_win_rate: (wins - losses) / cases, with its 95% interval for paired cases; "
            "p_value: exact sign test of wins against losses; significant below 0.05; "
            "mean_diff_low, mean_diff_high: the mean difference's 95% interval, allowing for a "
            "rare big loss unseen (for 0/1 scores, the net win rate's)"
        )
        tables = [
            (f"{candidate} vs {variants[0]}", result.compare(variants[0], candidate)) for candidate in variants[1:]
        ]
        tables += [(f"{variant} vs {variant} saved in {args.against}", table) for variant, table in against.items()]
        for number, (title, table) in enumerate(tables):
            _print(f"\n{title} ({explained if number == 0 else 'the columns as above'}):")
            _print(table.round(3).to_string())
        _print(f"\nsaved to {result.saved_to}")
    for failure in failures:
        _print(f"check: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _quoted(names: list[str], shown: int = 5) -> str:
    """``'a', 'b' and 3 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(map(repr, names[:shown])) + more


def _against(result: Any, saved: Any, variants: list[str]) -> dict[str, Any]:
    """Each variant compared with the same variant of the saved result (case by case), the cases
    not paired said on stderr; a variant the saved result lacks is said, and left out."""
    import warnings

    from wfkit.evals._evals import UnpairedCasesWarning

    tables = {}
    for variant in variants:
        if variant not in set(saved.cases["variant"]):
            known = ", ".join(dict.fromkeys(saved.cases["variant"]))
            _print(
                f"wfkit eval: --against: the saved result has no variant {variant!r} (it has {known})", file=sys.stderr
            )
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnpairedCasesWarning)
            tables[variant] = result.compare(variant, variant, baseline_from=saved)
        for warning in caught:
            _print(f"wfkit eval: {warning.message}", file=sys.stderr)
    return tables


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_workflow(ref: str, command: str) -> Any:
    """Import ``package.module:name``; a callable is called (a workflow factory). What fails is said
    as ``wfkit COMMAND: ...``, as the command's other errors are."""
    from wfkit.engine._workflow import Workflow

    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"wfkit {command}: --workflow takes module:name (e.g. myflows:triage), got {ref!r}")
    sys.path.insert(0, ".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"wfkit {command}: cannot load workflow {ref!r}: {exc}") from exc
    flow = target() if callable(target) and not isinstance(target, Workflow) else target
    if not isinstance(flow, Workflow):
        raise SystemExit(f"wfkit {command}: {ref} is not a wfkit.Workflow (got {type(flow).__name__})")
    return flow


def _resume(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    flow = _workflow_of(ws, _run_of(ws, args), args.workflow, "resume")
    _say_backoffs_left(ws, args.run_id)
    try:
        run = flow.resume(args.run_id, workspace=ws.path, policy=args.policy, raise_on_error=False)
    except KeyboardInterrupt:
        return _interrupted(args, ws.path, args.run_id)
    _print_run(args, run, ws)
    return 0 if run.status in ("succeeded", "waiting_approval") else 1


def _say_backoffs_left(ws: Any, run_id: str) -> None:
    """Before a resume that first waits out a retry's backoff its process died in (a Retry-After of
    a minute...): say which step waits, and how long, rather than sit silent meanwhile."""
    import datetime as dt

    now = time.time()
    try:
        in_flight = ws.run_info(run_id)["in_flight"]
    except (KeyError, ValueError):  # the resume itself says what is wrong with the run
        return
    for step in in_flight:
        not_before = step.get("not_before")
        if step.get("waiting") and not_before is not None and not_before - now >= 1.0:
            until = dt.datetime.fromtimestamp(not_before, dt.UTC).strftime("%H:%M:%S UTC")
            _print(
                f"wfkit resume: step {step['step']!r} waits out the rest of its retry's backoff before attempt "
                f"{step['attempt']}: {not_before - now:.0f} s (until {until})",
                file=sys.stderr,
            )


def _load_flow(args: argparse.Namespace) -> Any:
    """The workflow of a spec file; bare function names come from the --steps modules."""
    import os

    return _spec_flow(args.command, args.flow, args.steps or [], getattr(args, "tools", None), os.getcwd())


def _spec_flow(command: str, spec: str, steps: list[str], tools_ref: str | None, folder: str) -> Any:
    """The workflow of a spec file, with the step modules and tools found from ``folder`` (then from
    the spec's own folder); a run of it records all four (its ``workflow_ref``), so `wfkit resume`
    and `fork` build it again."""
    from pathlib import Path

    from wfkit.engine._workflow import Workflow
    from wfkit.model._spec import as_namespace

    sys.path.insert(0, folder)  # step modules in the (then) current folder, as `python -m` would find them
    # and, after those, beside the spec, where the builder writes its stubs (<spec>_steps.py)
    sys.path.insert(1, str(Path(spec).resolve().parent))
    importlib.invalidate_caches()
    namespace: dict[str, Any] = {}
    for module_name in steps:
        _check_steps_module(command, module_name, spec, folder)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SystemExit(f"wfkit {command}: cannot import --steps {module_name!r}: {exc}") from exc
        namespace.update(as_namespace(module))  # its functions, and workflows a sub-workflow step names
    tools = _load_tools(command, tools_ref) if tools_ref else None
    flow = Workflow.from_spec(spec, steps=namespace, tools=tools)
    origin = {"spec": str(Path(spec).resolve()), "steps": steps, "tools": tools_ref, "folder": folder}
    flow._origin = json.dumps(origin)
    return flow


def _check_steps_module(command: str, name: str, spec: str, folder: str) -> None:
    """Refuse a ``--steps`` that is a file's path (``steps/mysteps.py``) or no module name
    (``.mysteps``), naming the module to pass and where wfkit looks for it: imported as it is, a path
    ended in a TypeError's traceback or "No module named 'mysteps.py'"."""
    from pathlib import Path

    is_path = name.endswith(".py") or "/" in name or "\\" in name
    if not is_path and not name.startswith("."):
        return
    path = Path(name)
    if not is_path:  # a relative import: there is no package for it to be relative to
        raise SystemExit(
            f"wfkit {command}: --steps takes a module's full name, as `import` names it: pass --steps "
            f"{name.lstrip('.')}, not {name!r}"
        )
    stem = path.stem if path.suffix == ".py" else path.name
    if not stem.isidentifier():
        raise SystemExit(
            f"wfkit {command}: --steps takes a module's name (as Python imports it, e.g. --steps mysteps for "
            f"mysteps.py), got {name!r}"
        )
    parts = path.with_suffix("").parts if path.suffix == ".py" else path.parts
    found = (Path(folder) / path).resolve().parent
    looked = {Path(folder).resolve(), Path(spec).resolve().parent}
    where = ""
    if not path.is_absolute() and all(part.isidentifier() for part in parts):
        stem = ".".join(parts)  # steps/mysteps.py below the current folder: the module steps.mysteps
    elif found not in looked:
        where = f" (it is in {found}, where wfkit does not look: run from that folder, or set PYTHONPATH={found})"
    raise SystemExit(
        f"wfkit {command}: --steps takes a module's name, not a file: pass --steps {stem}{where}; wfkit finds "
        "the module in the current folder, beside the spec and on PYTHONPATH"
    )


def _rebuild_spec_flow(ref: str, run_id: str, command: str) -> Any:
    """The workflow of a run `wfkit run` started from a spec file (its ``workflow_ref`` is the JSON
    object :func:`_spec_flow` wrote), built as that command built it."""
    from pathlib import Path

    origin = json.loads(ref)
    spec = Path(origin["spec"])
    if not spec.is_file():
        raise SystemExit(
            f"run {run_id} was started by `wfkit run {spec}`, and that file is gone: put it back, or "
            f"pass --workflow module:name (a module attribute, or a function returning it, that defines the workflow)"
        )
    return _spec_flow(command, str(spec), list(origin["steps"]), origin["tools"], origin["folder"])


_TOOLS_EXAMPLE = "wfkit.examples:reliable_tools"  # one that exists: the example a message gives must work


def load_object(ref: str, option: str, command: str) -> Any:
    """Import ``package.module:name`` (for ``wfkit COMMAND OPTION ref``)."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"wfkit {command}: {option} takes module:name (e.g. {_TOOLS_EXAMPLE}), got {ref!r}")
    sys.path.insert(0, ".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"wfkit {command}: cannot load {option} {ref!r}: {exc}") from exc


def _load_tools(command: str, ref: str) -> Any:
    """The registry ``--tools`` names: the object itself, or what a function called with no
    arguments returns (a factory like ``wfkit.examples:reliable_tools``)."""
    found = load_object(ref, "--tools", command)
    if not callable(found):
        return found
    try:
        inspect.signature(found).bind()
    except TypeError:  # a step function, say: calling it would end in a traceback
        raise SystemExit(
            f"wfkit {command}: --tools {ref!r} is a function that needs arguments "
            f"({', '.join(inspect.signature(found).parameters)}): give "
            f"a tool registry, or a function called with none that returns one (e.g. {_TOOLS_EXAMPLE})"
        ) from None
    except ValueError:  # no signature to read (a builtin): call it and see
        pass
    return found()


def _validate(args: argparse.Namespace) -> int:
    flow = _load_flow(args)
    graph = flow.validate()
    _print(f"{args.flow}: workflow {flow.name!r} is valid: {len(graph.steps)} steps, entry {graph.entry!r}")
    _print(f"fingerprint {graph.fingerprint}")
    from wfkit.model._graph import unwritten_route_fields
    from wfkit.model._spec import json_path

    for where, src, field, meant in unwritten_route_fields(graph, flow.inputs):
        hint = f" (did you mean {meant!r}?)" if meant is not None else ""
        _print(
            f"wfkit validate: warning: {json_path(where)}: the route from {src!r} compares {field!r}, which no "
            f"step writes (writes=) and is not an input: it is never set, so the condition never holds{hint}",
            file=sys.stderr,
        )
    return 0


def _inputs(text: str) -> dict[str, Any]:
    from pathlib import Path

    source = "--input"
    if text.startswith("@"):
        source = text[1:]
        text = Path(source).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f'wfkit run: {source} is not JSON ({exc}); pass an object like \'{{"query": "hi"}}\'') from exc
    if not isinstance(value, dict):
        raise SystemExit(f"wfkit run: the inputs must be a JSON object, got {type(value).__name__}")
    return value


def _run_command(args: argparse.Namespace, inputs: dict[str, Any], missing: list[str]) -> str:
    """This `wfkit run` command again, its inputs completed with a placeholder for each one missing."""
    words = ["wfkit", "run", args.flow]
    for module in args.steps or ():
        words += ["--steps", module]
    for option in ("tools", "policy", "workspace"):
        if getattr(args, option):
            words += [f"--{option}", getattr(args, option)]
    words += ["--no-workspace"] if args.no_workspace else []
    words += ["--json"] if args.json else []
    words += ["--input", json.dumps({**inputs, **dict.fromkeys(missing, "...")})]
    return shlex.join(words)


def _run_flow(args: argparse.Namespace) -> int:
    inputs = _inputs(args.input)
    flow = _load_flow(args)
    missing = [name for name in flow.inputs or () if name not in inputs]
    if missing:  # refused here in the command's terms (the run would refuse it in Workflow(...)'s)
        raise SystemExit(
            f"wfkit run: {args.flow} declares the inputs {list(flow.inputs)} (its `inputs:`), and the run's "
            f"inputs lack {missing}{misnamed(inputs, missing)}; nothing was started. Pass them: "
            f"{_run_command(args, inputs, missing)}"
        )
    from wfkit.engine._workflow import _new_run_id

    workspace = False if args.no_workspace else args.workspace
    run_id = _new_run_id()  # known before it starts: a Ctrl-C must be able to name it
    try:
        run = flow.run(inputs, workspace=workspace, policy=args.policy, run_id=run_id, raise_on_error=False)
    except KeyboardInterrupt:
        return _interrupted(args, workspace, run_id)
    tools = _tools_bound(run)
    result = {
        "run_id": run.run_id,
        "status": str(run.status),
        "path": run.path(),
        "tools": tools,
        "state": run.state,
        "error": None if run.error is None else str(run.error),
    }
    if args.json:
        # What a script needs to go on with a run that stopped for someone: the tickets to decide
        # and the steps to reconcile, with the command for each (empty lists: nothing waits).
        if workspace is not False:
            ws = _workspace(args)
            result["tickets"] = _open_tickets(ws, args, run.run_id)
            result["reconciliations"] = _pending_reconciliations(ws, args, run.run_id)
        _print_json(result)
    else:
        _print_run(args, run, None if workspace is False else _workspace(args))
    for hint in (_unknown_input_hint(args, flow, run, inputs), _no_tools_hint(args, run, inputs)):
        if hint:
            _print(hint, file=sys.stderr)
    return 0 if run.status in ("succeeded", "waiting_approval") else 1


def _interrupted(args: argparse.Namespace, workspace: Any, run_id: str) -> int:
    """What `wfkit run`, `resume` and `fork` say when Ctrl-C (SIGINT) stops the run they drive: the
    engine has cancelled it (resumable, as in a script), so say which run it was, how it stands
    and how to go on, rather than a KeyboardInterrupt's traceback. Exits 130, as a shell does."""
    from wfkit.model._errors import WfkitError
    from wfkit.store._workspace import Workspace

    said = f"wfkit {args.command}: interrupted (Ctrl-C)"
    if workspace is False:
        _print(
            f"{said}: run {run_id} was kept in memory only (--no-workspace): nothing is left to resume",
            file=sys.stderr,
        )
        return 130
    try:
        ws = Workspace(workspace)
        status = ws.store.run_row(run_id)["status"]
    except (KeyError, WfkitError):  # stopped before the run was stored (or before the workspace was)
        _print(f"{said} before run {run_id} started: nothing was stored, nothing to resume", file=sys.stderr)
        return 130
    _print(
        f"{said}: run {run_id} stopped, {status}; `wfkit show {run_id}{_workspace_option(args)}` lists the steps "
        f"it completed; {_resume_hint(ws, args, run_id)}",
        file=sys.stderr,
    )
    return 130


def _tools_bound(run: Any) -> dict[str, list[str]]:
    """The tools each step that succeeded was bound."""
    return {e.step: list(e.tools or ()) for e in run.events if e.status == "ok"}  # a reconciliation row has none


def _print_run(args: argparse.Namespace, run: Any, ws: Any) -> None:
    """What `wfkit run` and `wfkit resume` print of the run they drove: its status, the steps it
    took (with the tools each was bound), its state, what to approve (``ws``: where it is stored,
    None for a run in memory) and its error."""
    tools = _tools_bound(run)
    _print(f"run {run.run_id}: {run.status}")
    for step in run.path():
        bound = tools.get(step)
        _print(f"  {step}" + (f"  tools: {', '.join(bound)}" if bound else ""))
    _print(json.dumps(run.state, indent=2, default=str))
    if ws is not None and run.status == RunStatus.NEEDS_RECONCILIATION:
        _print_reconciliations(ws, args, run.run_id)
    if ws is not None and run.status == RunStatus.WAITING_APPROVAL:
        _print_tickets(ws, args, run.run_id)
    if run.error is not None:
        _print(f"error: {run.error}", file=sys.stderr)


def _no_tools_hint(args: argparse.Namespace, run: Any, inputs: dict[str, Any]) -> str | None:
    """For a run of a spec whose steps call tools, given no ``--tools``: its error says to pass a
    registry with ``Workflow(..., tools=...)`` or ``run(..., tools=...)``, Python a shell user cannot
    write; the command's own way is ``--tools module:name``."""
    from wfkit.llm._tools import UnknownToolError

    cause = None if run.error is None else run.error.__cause__
    if args.tools or not isinstance(cause, UnknownToolError) or "has no tool registry" not in str(cause):
        return None
    again = _run_command(argparse.Namespace(**{**vars(args), "tools": _TOOLS_EXAMPLE}), inputs, [])
    return (
        "wfkit run: the flow's steps call tools, and no registry was given: pass one with --tools module:name "
        f"(a registry, or a function returning one), e.g. {again}"
    )


def _unknown_input_hint(args: argparse.Namespace, flow: Any, run: Any, inputs: dict[str, Any]) -> str | None:
    """For a spec that declares no inputs (so nothing could be refused up front): a step that failed
    on a KeyError for a field neither the inputs nor the state hold most likely read an input the
    command was not given. Worded as an if: the KeyError may come from a dict of the step's own."""
    cause = None if run.error is None else run.error.__cause__
    if flow.inputs is not None or not isinstance(cause, KeyError) or len(cause.args) != 1:
        return None
    field = cause.args[0]
    if not isinstance(field, str) or field in inputs or field in run.state:
        return None
    return (
        f"wfkit run: step {run.error.step!r} read the field {field!r}, which the run's inputs lack and no step "
        f"before it wrote: if the flow needs it, pass it ({_run_command(args, inputs, [field])}) and declare it "
        f"in the spec (`inputs: [{field}]`), so that a run without it starts nothing"
    )


# What a file's suffix says it holds: `--out graph.dot` with no --format wrote SVG into it.
_GRAPH_SUFFIXES = {".svg": "svg", ".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot"}
# Files of a format wfkit graph does not write: SVG text under such a name opens in no viewer.
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".pdf", ".eps", ".ps")


def _graph(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wfkit.model._graphview import to_svg

    fmt = args.format
    if args.out:
        suffix = Path(args.out).suffix.lower()
        if suffix in _IMAGE_SUFFIXES:
            kind = suffix[1:].upper()
            _print(
                f"wfkit graph: --out {args.out} names a {kind} file, and wfkit graph writes SVG, Mermaid or DOT "
                f"text ({', '.join(_GRAPH_SUFFIXES)}), which no image viewer opens as {kind}: write --out "
                f"{Path(args.out).with_suffix('.svg')} (a browser shows it; a converter such as rsvg-convert or "
                f"Inkscape makes a {kind} of it)",
                file=sys.stderr,
            )
            return 2
        named = _GRAPH_SUFFIXES.get(suffix)
        if fmt is not None and named is not None and named != fmt:
            _print(
                f"wfkit graph: --format {fmt}, but --out {args.out} names a {named} file; drop --format (the suffix "
                f"chooses it), or name the file after its format ({', '.join(_GRAPH_SUFFIXES)})",
                file=sys.stderr,
            )
            return 2
        fmt = fmt or named
    fmt = fmt or "svg"
    flow = _load_flow(args)
    if fmt == "svg":
        text = to_svg(flow.validate())
    elif fmt == "mermaid":
        text = flow.to_mermaid()
    else:
        text = flow.to_dot()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        _print(f"{fmt} written to {args.out}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _workflow_of(ws: Any, run_id: str, ref: str | None, verb: str) -> Any:
    """The workflow to resume or fork ``run_id`` with: ``--workflow``, else where the run recorded
    it (a module attribute, or the spec file `wfkit run` started it from)."""
    row = ws.store.run_row(run_id)
    if ref:
        return load_workflow(ref, verb)
    ref = row["workflow_ref"]
    if not ref:
        name = row["workflow"]
        raise SystemExit(
            f"wfkit {verb}: run {run_id} was started from a notebook or script, so the CLI cannot build its workflow "
            f"{name!r} again: pass --workflow module:name, the module attribute (or a function returning it) "
            f"that defines it (`--workflow myflows:flow` for `flow = wf.Workflow({name!r})` in myflows.py), "
            f"or {verb} it from Python (run.{verb}(...))"
        )
    if ref.startswith("{"):
        return _rebuild_spec_flow(ref, run_id, verb)
    return load_workflow(ref, verb)


def _workspace_option(args: argparse.Namespace) -> str:
    """`` --workspace PATH`` when the command was given one (a command it prints must name it too)."""
    return f" --workspace {shlex.quote(args.workspace)}" if args.workspace else ""


def _resume_hint(ws: Any, args: argparse.Namespace, run_id: str) -> str:
    """The command that resumes ``run_id`` (its parent's, for a gate inside a sub-workflow): with
    ``--workspace`` when one was given, and ``--workflow`` when the run recorded no workflow."""
    from wfkit.store._tickets import resume_command

    top = ws.store.top_run(run_id)
    row = ws.store.run_row(top)
    command = resume_command(top, _workspace_option(args), row["workflow"], row["workflow_ref"])
    return f"resume with {command}" + ("" if row["workflow_ref"] else ", or with run.resume() in Python")


def _parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=json`` pairs as a dict; a value that is not JSON is refused with how to quote it."""
    update: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SystemExit(
                f"wfkit fork: --set takes key=json (e.g. --set kind='\"refund\"' or --set n=3), got {pair!r}"
            )
        try:
            update[key] = json.loads(text)
        except ValueError:
            raise SystemExit(
                f"wfkit fork: --set {key}: {text!r} is not JSON; quote strings as JSON, e.g. --set {key}='\"{text}\"'"
            ) from None
    return update


def _fork(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from wfkit.engine._workflow import _new_run_id

    flow = _workflow_of(ws, _run_of(ws, args), args.workflow, "fork")
    fork_id = _new_run_id()  # known before it starts: a Ctrl-C must be able to name it
    try:
        run = flow.fork(
            args.run_id,
            at=args.at,
            update=_parse_sets(args.set),
            visit=args.visit,
            new_run_id=fork_id,
            workspace=ws.path,
            policy=args.policy,
            raise_on_error=False,
        )
    except KeyboardInterrupt:
        return _interrupted(args, ws.path, fork_id)
    _print(f"run {run.run_id} (forked from {args.run_id} at {args.at!r}): {run.status}")
    # What it waits for, with the command that decides or settles it, as `wfkit run` and `resume` say.
    if run.status == RunStatus.NEEDS_RECONCILIATION:
        _print_reconciliations(ws, args, run.run_id)
    if run.status == RunStatus.WAITING_APPROVAL:
        _print_tickets(ws, args, run.run_id)
    if run.error is not None:
        _print(f"error: {run.error}", file=sys.stderr)
    return 0 if run.status in ("succeeded", "waiting_approval") else 1


def _cache(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    dropped = ws.clear_cache(workflow=args.workflow, step=args.step, expired_only=args.expired)
    what = "expired " if args.expired else ""
    _print(f"dropped {dropped} {what}cache entr{'y' if dropped == 1 else 'ies'} from {ws.path}")
    held = ws.store.cache_steps()
    named_any = any(args.workflow in (None, workflow) and args.step in (None, step) for workflow, step in held)
    if not dropped and held and not named_any:  # a misspelt --workflow or --step matches nothing
        named = " and ".join(
            f"{option} {value!r}" for option, value in (("workflow", args.workflow), ("step", args.step)) if value
        )
        listed = ", ".join(f"{step!r} of {workflow!r} ({count})" for (workflow, step), count in held.items())
        _print(
            f"wfkit cache clear: no cache entry is of {named}; it holds entries of {listed}: check the "
            f"names (--workflow is the workflow's name, --step a step's, as `wfkit show RUN` lists them)",
            file=sys.stderr,
        )
    return 0


# What _run_of takes: the whole id, its start, or (_SUFFIX_MIN characters or more) its end.
_RUN_ID_TAKES = (
    f"or its last characters ({_SUFFIX_MIN} or more, e.g. 6dd461: a run id begins with the time it was made, "
    "so the runs of one session share their start), or enough of its start, when no other run's id ends "
    "or starts with them"
)
_RUN_ID_HELP = f"the run's id, as `wfkit runs` lists it (or run.run_id in Python), {_RUN_ID_TAKES}"


class _Parser(argparse.ArgumentParser):
    """argparse's parser (and, as their class, its commands'), whose "invalid choice" names the
    closest choice instead of listing them all (`wfkit sho`: "did you mean 'show'?")."""

    def error(self, message: str) -> NoReturn:
        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        close = found and closest(found[1], re.findall(r"'([^']*)'", found[2]))
        if found and close:
            message = f"{message[: found.start()]}invalid choice: {found[1]!r}; did you mean {close!r}?"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wfkit", description="Prototype and evaluate LLM-agent workflows.")
    parser.add_argument("--version", action="version", version=f"wfkit {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--workspace", help="workspace folder (default: $WFKIT_HOME or ./.wfkit)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the built-in query-router workflow offline and summarise the runs")
    demo.add_argument(
        "--runs",
        type=at_least_one("it is how many queries the demo routes (default 40)"),
        default=40,
        help="how many queries to route (default 40)",
    )
    demo.add_argument("--seed", type=int, default=7, help="seed for the simulated failures (default 7)")
    demo.set_defaults(handler=_demo)

    runs = sub.add_parser("runs", parents=[common], help="list runs: id, workflow, status, started, steps done")
    runs.add_argument(
        "--status",
        choices=RunStatus.ALL,
        metavar="STATUS",
        help=f"only runs with this status: {', '.join(RunStatus.ALL)}",
    )
    runs.add_argument("--limit", type=_positive_int, default=None, help="show the newest N runs")
    runs.add_argument("--json", action="store_true", help="print the runs as a JSON list, each run's row whole")
    runs.set_defaults(handler=_runs)

    show = sub.add_parser("show", parents=[common], help="one run's steps, attempts, tickets and intents")
    show.add_argument("run_id", help=_RUN_ID_HELP)
    show.add_argument("--json", action="store_true", help="print the run's record and its step events as JSON")
    show.set_defaults(handler=_show)

    pending = sub.add_parser("pending", parents=[common], help="open approval tickets")
    pending.add_argument("--json", action="store_true", help="print the open tickets as a JSON list")
    pending.set_defaults(handler=_pending)

    for name in ("approve", "reject"):
        p = sub.add_parser(name, parents=[common], help=f"{name} an approval ticket")
        p.add_argument("ticket", help="the ticket's id, as `wfkit pending` or `wfkit show RUN` prints it")
        p.add_argument("--by", required=True, type=_person, help="the reviewer's name")
        p.add_argument("--comment", default="", help="why, kept with the decision (shown by `wfkit show`)")
        p.set_defaults(handler=_decide(name))

    resume = sub.add_parser("resume", parents=[common], help="continue a stopped run from its last completed step")
    resume.add_argument("run_id", help=_RUN_ID_HELP)
    resume.add_argument("--workflow", help="module:name of the workflow (default: where the run recorded it)")
    resume.add_argument(
        "--policy",
        help="approval policy: halt, approve, reject, fail, or a decisions file "
        "(default: the one the run was started with, else $WFKIT_POLICY, else halt)",
    )
    resume.set_defaults(handler=_resume)

    fork = sub.add_parser(
        "fork", parents=[common], help="start a new run from a stored run's checkpoint at a step, with changed state"
    )
    fork.add_argument(
        "run_id",
        help=f"the stored run to fork (it stays as it is): its id, as `wfkit runs` lists it (or run.run_id in "
        f"Python), {_RUN_ID_TAKES}",
    )
    fork.add_argument("--at", required=True, help="the step whose checkpoint the fork starts from")
    fork.add_argument(
        "--visit",
        type=at_least_one("a step's visits count from 1 (leave it out for its last)"),
        help="which visit of a looping step (default: its last)",
    )
    fork.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a state field to change")
    fork.add_argument("--workflow", help="module:name of the workflow (default: where the run recorded it)")
    fork.add_argument(
        "--policy",
        help="approval policy for the fork, kept for its resumes: halt, approve, reject, fail (default: the run's "
        "own, if it was given one; else $WFKIT_POLICY, else halt)",
    )
    fork.set_defaults(handler=_fork)

    cache = sub.add_parser("cache", help="the step cache kept in the workspace")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    clear = cache_sub.add_parser("clear", parents=[common], help="drop cached step results")
    clear.add_argument("--workflow", help="only this workflow's entries")
    clear.add_argument("--step", help="only this step's entries")
    clear.add_argument("--expired", action="store_true", help="only entries past their time to live")
    clear.set_defaults(handler=_cache)

    rec = sub.add_parser("reconcile", parents=[common], help="settle an irreversible step cut off by a crash")
    rec.add_argument("run_id", help=_RUN_ID_HELP)
    rec.add_argument("step", help="the irreversible step whose side effect to settle, as `wfkit show RUN` names it")
    what = rec.add_mutually_exclusive_group(required=True)
    what.add_argument("--done", action="store_true", help="the side effect happened: count the step as done")
    what.add_argument("--retry", action="store_true", help="it did not happen: run the step again on resume")
    rec.add_argument("--by", required=True, type=_person, help="who checked")
    rec.add_argument("--updates", help="JSON object: the state updates the step would have returned")
    rec.set_defaults(handler=_reconcile)
    ev = sub.add_parser("eval", parents=[common], help="score a workflow suite over its dataset, compare variants")
    ev.add_argument("suite", help="a suite.py, or a folder holding one (e.g. evals/query_router)")
    ev.add_argument("--variant", action="append", help="variant(s) to run (default: all)")
    ev.add_argument("--concurrency", type=int, default=16, help="cases run at once (default 16)")
    ev.add_argument(
        "--json",
        action="store_true",
        help="print as JSON the summary, the comparisons, what check() found and where it was saved",
    )
    ev.add_argument(
        "--against",
        metavar="SAVED",
        help="also compare each variant with the same variant of a saved result, case by case: its folder, "
        "as `saved to` printed (WORKSPACE/evals/SUITE/STAMP)",
    )
    ev.add_argument("--dask", metavar="ADDRESS", help="send the cases to this Dask scheduler (tcp://host:8786)")
    ev.add_argument(
        "--dataset", help="with --dask: folder or URL every worker writes to (default: WORKSPACE/evals/runs)"
    )
    ev.add_argument(
        "--partition-size",
        type=at_least_one("it is how many cases each Dask partition runs"),
        help="with --dask: cases per partition (default: a few per thread)",
    )
    ev.set_defaults(handler=_eval)

    logs = sub.add_parser("logs", parents=[common], help="step-log files: export missing rows, compact small files")
    logs.add_argument(
        "action",
        choices=["compact", "export"],
        help="export: write the journal's attempts missing from the parquet step log; compact: export, "
        "then merge the log's small files",
    )
    logs.set_defaults(handler=_logs)

    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="check a workspace (SQLite integrity, checksums, the step log's ledger) or a Dask dataset (jobs "
        "whose driver died before they ended, or left rows staged)",
    )
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="rebuild what can be rebuilt (damaged originals are kept aside); record jobs whose driver is gone "
        "as committed when every partition it planned was, else as aborted (their rows are kept aside); move "
        "what ended jobs left staged",
    )
    doctor.add_argument("--dataset", metavar="FOLDER_OR_URL", help="check this Dask dataset instead of a workspace")
    doctor.add_argument(
        "--abort", metavar="JOB", help="with --dataset: record this unfinished job as aborted (its driver is gone)"
    )
    doctor.set_defaults(handler=_doctor)

    report = sub.add_parser("report", parents=[common], help="latency, failures, cost and timeout advice as HTML + PNG")
    report.add_argument("--out", required=True, help="folder to write index.html and the plots into")
    report.add_argument("--since", help="only attempts started at or after this ISO date/time (UTC)")
    report.add_argument("--workflow", help="only this workflow")
    report.set_defaults(handler=_report)
    spec_args = _Parser(add_help=False)
    spec_args.add_argument("flow", help="a flow spec file (.yaml, .yml or .json)")
    spec_args.add_argument(
        "--steps",
        action="append",
        metavar="MODULE",
        help="a module whose functions the spec names without a module path (repeatable)",
    )
    val = sub.add_parser("validate", parents=[spec_args], help="check a flow spec: every problem with its JSON path")
    val.set_defaults(handler=_validate)
    rf = sub.add_parser("run", parents=[spec_args, common], help="run a flow spec once on JSON inputs")
    rf.add_argument("--input", default="{}", help="the inputs: a JSON object, or @file.json")
    rf.add_argument("--tools", metavar="MODULE:NAME", help="the tool registry, or a function returning it")
    rf.add_argument(
        "--policy",
        help="approval policy: halt, approve, reject, fail, or a decisions file (default: $WFKIT_POLICY, else "
        "halt); a policy given here is kept for the run's resumes",
    )
    rf.add_argument("--no-workspace", action="store_true", help="keep the run in memory only")
    rf.add_argument(
        "--json",
        action="store_true",
        help="print the run's id, status, path, tools, state and error as JSON, with the tickets and "
        "reconciliations it waits on",
    )
    rf.set_defaults(handler=_run_flow)
    gr = sub.add_parser("graph", parents=[spec_args], help="draw a flow spec as SVG, Mermaid or Graphviz DOT")
    gr.add_argument(
        "--format",
        choices=["svg", "mermaid", "dot"],
        help="svg, mermaid or dot (default: as --out's suffix says, .svg, .mmd or .dot; else svg)",
    )
    gr.add_argument("--out", help="file to write (default: standard output)")
    gr.set_defaults(handler=_graph)

    rp = sub.add_parser(
        "replay",
        help="run notebooks headless under papermill and compare every deterministic signal with baselines",
        description="Run notebooks headless under papermill and compare their runs and cell outputs with baselines. "
        "Exit 0: all match; 1: a regression, a failed notebook, a missing or unreadable baseline; 2: bad input.",
    )
    rp.add_argument("paths", nargs="*", metavar="PATH", help="notebooks, folders or globs (default: notebooks/)")
    rp.add_argument(
        "--root", help="project root that keys baselines (default: nearest folder with pyproject.toml/.git)"
    )
    rp.add_argument("--baseline", help="folder of baseline summaries (default: ROOT/data/baselines)")
    rp.add_argument("--report", default="replay-report", help="folder for index.html, summary.json, executed notebooks")
    rp.add_argument("--junit-xml", metavar="PATH", help="also write JUnit XML: one test case per notebook")
    rp.add_argument("--jobs", type=processes, default=2, help="notebooks run in parallel processes (default 2)")
    rp.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="a notebook parameter (must be declared in its parameters cell); VALUE is JSON or text",
    )
    rp.add_argument("-f", "--parameters-file", metavar="YAML", help="parameters from a YAML file (as papermill -f)")
    rp.add_argument("-y", "--parameters-yaml", metavar="YAML", help="parameters as a YAML string (as papermill -y)")
    rp.add_argument("-k", "--kernel", help="Jupyter kernel to run the notebooks in (default: each notebook's own)")
    rp.add_argument("--cwd", help="working folder of the kernels (default: each notebook's folder)")
    rp.add_argument(
        "--cell-timeout",
        "--timeout",
        dest="cell_timeout",
        type=cell_seconds,
        default=600.0,
        help="seconds per cell (default 600)",
    )
    rp.add_argument("--update-baseline", action="store_true", help="record the runs as the new baselines")
    rp.add_argument(
        "--list-parameters", action="store_true", help="print each notebook's parameters with their defaults, then exit"
    )
    rp.add_argument("--dask", metavar="ADDRESS", help="replay each notebook on a worker of this Dask scheduler")
    rp.add_argument("--dataset", help="with --dask: folder or URL every worker writes to (default: REPORT/dataset)")
    rp.set_defaults(handler=_replay)
    for action in (sub, cache_sub):  # each command's parser, to report its own unknown options (main)
        summaries = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, command_parser in action.choices.items():
            command_parser.set_defaults(command_parser=command_parser)
            if command_parser.description is None:  # its --help says what it does, as `wfkit --help` does
                command_parser.description = f"{summaries[name][:1].upper()}{summaries[name][1:]}."
    return parser


def _unrecognized(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """argparse's "unrecognized arguments" with the option each unknown one is closest to."""
    import difflib

    options = sorted({s for action in parser._actions for s in action.option_strings if s.startswith("--")})
    hints: dict[str, str] = {}
    for extra in extras:
        given = extra.partition("=")[0]
        close = difflib.get_close_matches(given, options, n=1) if given.startswith("-") else []
        if close:
            hints[given] = close[0]
    message = f"unrecognized arguments: {' '.join(extras)}"
    if len(hints) == 1:
        return f"{message}; did you mean {next(iter(hints.values()))}?"
    return "; ".join([message, *(f"did you mean {close} for {given}?" for given, close in hints.items())])


@contextlib.contextmanager
def _wfkit_warnings_as_lines(command: str) -> Iterator[None]:
    """wfkit's own warnings as one line of the command's, on stderr: Python's format printed the
    file and line inside wfkit that raised it and that line's source (``.../wfkit/engine/_engine.py:1007:
    RouteFieldWarning: ...`` then ``  self._warn_absent(name, onward.unsure, chosen)``), which say
    nothing to someone who typed ``wfkit run``. Other warnings, and their filters, are left alone."""
    import warnings

    from wfkit.model._warn import in_wfkit

    shown = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if category.__module__.partition(".")[0] == "wfkit":
            # Said at the user's definition (a spec's routes, a step's def: wfkit.model._warn), it
            # names that place; at a line of wfkit's own, nothing.
            where = "" if in_wfkit(filename) else f" ({filename} line {lineno})"
            _print(f"wfkit {command}: {category.__name__}: {message}{where}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:  # (a handler that set its own keeps it)
            warnings.showwarning = shown


def main(argv: Sequence[str] | None = None) -> int:
    from wfkit.model._errors import WfkitError

    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras and isinstance(getattr(args, "paths", None), list):
        # argparse fills a list of positionals once: `wfkit replay a.ipynb --report r b.ipynb` left
        # b.ipynb over as an unknown argument. Paths after an option are paths too.
        args.paths += [extra for extra in extras if not extra.startswith("-")]
        extras = [extra for extra in extras if extra.startswith("-")]
    if extras:  # a command's unknown option is its error, under its usage (argparse shows the top level's)
        found = getattr(args, "command_parser", None)
        command_parser = found if isinstance(found, argparse.ArgumentParser) else parser
        command_parser.error(_unrecognized(command_parser, extras))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        with _wfkit_warnings_as_lines(args.command):
            code: int = handler(args)
    except BrokenPipeError:
        # `wfkit runs | head`: the reader has what it wanted. End silently, as `ls` or `git log`
        # do, with a SIGPIPE death's code; stdout to devnull, so that the flush at exit cannot
        # print "Exception ignored ... BrokenPipeError" instead.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE (13), which Windows lacks as a name
    except (WfkitError, KeyError, ValueError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        _print(f"wfkit {args.command}: {message}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # never a raw traceback: say what and where
        where = args.workspace or "the workspace ($WFKIT_HOME or ./.wfkit)"
        _print(
            f"wfkit {args.command}: cannot use the run store in {where} ({exc}); check that the folder "
            f"exists, is yours and is writable, or run `wfkit doctor`",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
