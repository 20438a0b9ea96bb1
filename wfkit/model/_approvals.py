"""Approval gates: what a reviewer sees, the tickets that wait for them, and headless policies."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, TypeAlias

from wfkit.model._errors import AlreadyDecidedWarning, DecisionsFileError
from wfkit.model._routes import Condition, compared_fields
from wfkit.model._suggest import did_you_mean

Decision: TypeAlias = Literal["approve", "reject"]
DECISIONS: tuple[str, ...] = ("approve", "reject")


@dataclass(frozen=True, slots=True)
class Approval:
    """A gate before a step: ``@flow.step(approval=wfkit.Approval("Refunds need a human", ...))``.

    - ``reason``: why a human must say yes, shown on the ticket.
    - ``payload``: what the reviewer should see: state field names, or a function of the state
      returning a dict (default: the whole state).
    - ``when``: gate only when this condition holds (``when("amount", "gt", 100)``). A field it
      compares that the state lacks makes the gate ask (it fails closed), and the ticket says so.
    - ``on_reject``: the step a rejection routes to (revise and resubmit); without it a rejection
      fails the run.
    """

    reason: str
    payload: Sequence[str] | Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    when: Condition | None = None
    on_reject: str | None = None

    def asks(self, state: Mapping[str, Any]) -> bool:
        """Whether the gate asks before its step runs in ``state``: no condition, a condition that
        holds, or one comparing a field the state lacks (:meth:`lacking`)."""
        return self.when is None or self.when.evaluate(state) or bool(self.lacking(state))

    def lacking(self, state: Mapping[str, Any]) -> list[str]:
        """The fields the gate's condition compares with a value that ``state`` lacks (missing or
        None). A gate fails closed on them: such a field compares false, so a misspelt input or a
        step that did not run would let the risky step through unasked."""
        if self.when is None:
            return []
        return sorted(name for name in compared_fields(self.when) if state.get(name) is None)

    def ask(self, state: Mapping[str, Any]) -> str | None:
        """What the gate asks before its step runs in ``state``: the ticket's reason when it asks
        (:meth:`asks`), saying so when its condition compares fields the state lacks; None when it
        lets the step through. The state's lacking fields are looked for once."""
        if self.when is None:
            return self.reason
        lacking = self.lacking(state)
        if not lacking:
            return self.reason if self.when.evaluate(state) else None
        fields = ", ".join(map(repr, lacking))
        return (
            f"{self.reason} (asked because the gate's condition compares {fields}, which the run's state "
            f"lacks: it would have let the step through unasked)"
        )

    def payload_for(self, state: Mapping[str, Any]) -> dict[str, Any]:
        if self.payload is None:
            return dict(state)
        if callable(self.payload):
            return dict(self.payload(state))
        return {name: state.get(name) for name in self.payload}

    def describe(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "when": None if self.when is None else self.when.to_dict(),
            "on_reject": self.on_reject,
        }


def as_approval(value: str | Approval | None) -> Approval | None:
    if value is None or isinstance(value, Approval):
        return value
    if isinstance(value, str) and value.strip():
        return Approval(value)
    raise TypeError(f"approval must be a reason string or wfkit.Approval(...), got {value!r}")


@dataclass(frozen=True, slots=True)
class Ticket:
    """A persisted request for a decision on one visit of one gated step."""

    ticket_id: str
    run_id: str
    workflow: str
    step: str
    visit: int
    reason: str
    payload: dict[str, Any]
    status: str  # open | approved | rejected
    decided_by: str | None
    comment: str | None
    created_at: float
    decided_at: float | None
    # The workspace folder it was read from (so ticket.approve() knows where to decide it).
    workspace: str | None = field(default=None, compare=False, repr=False)

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def approve(self, *, by: str, comment: str = "") -> Ticket:
        """Approve this ticket in its workspace and resume its run if this process defines the
        workflow (as :meth:`wfkit.Workspace.approve`). Returns the ticket as decided."""
        return _decide(self, "approve", by, comment)

    def reject(self, *, by: str, comment: str = "") -> Ticket:
        """Reject this ticket in its workspace and resume its run if this process defines the
        workflow (as :meth:`wfkit.Workspace.reject`). Returns the ticket as decided."""
        return _decide(self, "reject", by, comment)


def already_decided(ticket: Ticket) -> str:
    """What a decision asked again of the decided ``ticket`` is told first: who decided it, how,
    when and why (``run.approve`` warns it, ``wfkit approve`` prints it, a panel shows it)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ticket.decided_at or 0))
    why = f" ({ticket.comment})" if ticket.comment else ""
    return f"ticket {ticket.ticket_id} was already {ticket.status} by {ticket.decided_by} at {when}{why}"


def warn_already_decided(ticket: Ticket, stacklevel: int, then: str = "") -> None:
    """A decision asked again, the same way, of the decided ``ticket`` records nothing: warn so
    (:func:`already_decided`, then ``then``). ``stacklevel``: the user's call, counted from the
    caller (1: the caller's own line)."""
    warnings.warn(AlreadyDecidedWarning(f"{already_decided(ticket)}: nothing changed{then}"), stacklevel=stacklevel + 1)


TicketDecider: TypeAlias = Callable[[Ticket, Decision, str, str], Ticket]
"""Applies a decision to a ticket where it is stored; handed in by the package's composition
root, so this model layer never imports the store."""

_decider: TicketDecider | None = None


def set_ticket_decider(decider: TicketDecider | None) -> None:
    global _decider
    _decider = decider


def _decide(ticket: Ticket, decision: Decision, by: str, comment: str) -> Ticket:
    if _decider is None or ticket.workspace is None:
        raise RuntimeError(
            f"ticket {ticket.ticket_id} was not read from a workspace; decide it with "
            f"wfkit.Workspace(path).{decision}({ticket.ticket_id!r}, by=...)"
        )
    return _decider(ticket, decision, by, comment)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A policy's answer for one ticket."""

    decision: Decision
    by: str
    comment: str = ""


class GatedStep(Protocol):
    """What a policy sees of a workflow's step (a step spec): whether it is gated."""

    @property
    def approval(self) -> Approval | None: ...


class ApprovalPolicy:
    """Decides tickets when no human is there. ``decide`` returns None when it has no verdict;
    the run then halts and waits (``on_missing="halt"``) or fails (``on_missing="fail"``)."""

    name = "halt"
    on_missing: Literal["halt", "fail"] = "halt"

    def decide(self, ticket: Ticket) -> Verdict | None:
        return None

    def check_workflow(self, workflow: str, steps: Mapping[str, GatedStep]) -> None:
        """Called before a run of ``workflow`` starts, resumes or forks under this policy, with its
        steps by name (``steps[name].approval`` is None for a step with no gate), before the run
        writes anything: raise to refuse the run. The default accepts every workflow."""

    def __repr__(self) -> str:
        return f"<ApprovalPolicy {self.name}>"


class _Fixed(ApprovalPolicy):
    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.name = f"{decision}_all"

    def decide(self, ticket: Ticket) -> Verdict:
        return Verdict(self.decision, f"policy:{self.name}", f"decided by the {self.name} policy")


class _Fail(ApprovalPolicy):
    name = "fail"
    on_missing: Literal["halt", "fail"] = "fail"


_FORMAT = (
    'each line is a JSON object with "workflow", "step", "visit", "decision" ("approve"/"reject"), "by", "comment"'
)


class _Line(NamedTuple):
    """One recorded decision: its line in the file, its verdict, and the run it came from (if said)."""

    number: int
    verdict: Verdict
    run_id: str | None


class DecisionsFile(ApprovalPolicy):
    """Replays decisions recorded from an interactive run (``Workspace.export_decisions``).

    Each JSONL line has workflow, step, visit, decision, by and comment (and, from an export, the
    run_id it was recorded in). A ticket with no recorded decision for its visit takes the step's
    first recorded one; with none at all it halts the run (``missing="halt"``) or fails it
    (``missing="fail"``).

    The file must be unambiguous: two lines for one (workflow, step, visit) that decide differently
    are a :class:`~wfkit.DecisionsFileError` naming both lines (lines that agree are accepted; the
    first one's reviewer and comment are replayed). A line naming a step that is no approval gate of
    its workflow is refused when a run of that workflow starts with this policy.
    """

    def __init__(self, path: str | Path, *, missing: Literal["halt", "fail"] = "halt") -> None:
        self.path = Path(path)
        self.name = f"file:{self.path.name}"
        self.on_missing = missing
        self._by_visit: dict[tuple[str, str, int], _Line] = {}
        self._by_step: dict[tuple[str, str], Verdict] = {}
        # Per workflow, the steps its lines name and the lines naming each; and the steps mapping
        # each workflow was last checked against (a workflow hands the same one to each run).
        self._steps_named: dict[str, dict[str, list[int]]] = {}
        self._checked: dict[str, Mapping[str, GatedStep]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            # A relative path is read from the process's folder, which is the notebook's own under
            # papermill, not the one the command was typed in: say which.
            where = "" if self.path.is_absolute() else f" (a relative path is read from {Path.cwd()})"
            raise DecisionsFileError(f"cannot read the decisions file {self.path}{where}: {exc}") from exc
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                decision = row["decision"]
                if decision not in DECISIONS:
                    raise ValueError(f"decision must be 'approve' or 'reject', got {decision!r}")
                workflow, step, visit = row["workflow"], row["step"], int(row.get("visit", 1))
                if not isinstance(workflow, str) or not isinstance(step, str):
                    raise TypeError(f'"workflow" and "step" must be strings, got {workflow!r} and {step!r}')
                verdict = Verdict(decision, str(row.get("by") or "recorded"), str(row.get("comment") or ""))
                run_id = None if row.get("run_id") is None else str(row["run_id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise DecisionsFileError(f"{self.path}, line {number}: {exc}; {_FORMAT}") from exc
            key = (workflow, step, visit)
            earlier = self._by_visit.get(key)
            if earlier is None:
                self._by_visit[key] = _Line(number, verdict, run_id)
            elif earlier.verdict.decision != decision:
                raise DecisionsFileError(self._conflict(key, earlier, _Line(number, verdict, run_id)))
            self._by_step.setdefault((workflow, step), verdict)
            self._steps_named.setdefault(workflow, {}).setdefault(step, []).append(number)

    def _conflict(self, key: tuple[str, str, int], first: _Line, second: _Line) -> str:
        workflow, step, visit = key

        def said(line: _Line) -> str:
            run = "" if line.run_id is None else f" (run {line.run_id})"
            return f"{line.verdict.decision!r} on line {line.number}{run}"

        return (
            f"{self.path}, lines {first.number} and {second.number}: workflow {workflow!r} step {step!r} "
            f"visit {visit} is decided twice, {said(first)} and {said(second)}, so a replay cannot tell "
            f"which to apply. Keep the line to replay and delete the other, or export again with only "
            f"the runs whose decisions to replay: Workspace().export_decisions(path, run_ids=[...])"
        )

    def check_workflow(self, workflow: str, steps: Mapping[str, GatedStep]) -> None:
        """Refuse a workflow whose lines name a step that is no approval gate of it (a typo, or a
        file recorded for another version of the workflow): those lines would never be used."""
        named = self._steps_named.get(workflow)
        if not named or self._checked.get(workflow) is steps:
            return
        gates = sorted(name for name, spec in steps.items() if spec.approval is not None)
        unknown = sorted((numbers, step) for step, numbers in named.items() if step not in gates)
        if unknown:
            problems = []
            for numbers, step in unknown:
                why = (
                    f"step {step!r} has no approval gate"
                    if step in steps
                    else f"it has no step {step!r}{did_you_mean(step, gates)}"
                )
                where = f"line {numbers[0]}" if len(numbers) == 1 else f"lines {', '.join(map(str, numbers))}"
                problems.append(f"{where}: {why}")
            has = f"its gate steps are {', '.join(map(repr, gates))}" if gates else "it has no approval gates"
            raise DecisionsFileError(
                f"{self.path} records decisions that workflow {workflow!r} can never use "
                f"({'; '.join(problems)}); {has}. Correct the step name on those lines or delete them "
                f"(a file recorded for another version of the workflow: export it again with "
                f"Workspace().export_decisions)"
            )
        self._checked[workflow] = steps

    def decide(self, ticket: Ticket) -> Verdict | None:
        line = self._by_visit.get((ticket.workflow, ticket.step, ticket.visit))
        return line.verdict if line is not None else self._by_step.get((ticket.workflow, ticket.step))


HALT = ApprovalPolicy()
APPROVE_ALL: ApprovalPolicy = _Fixed("approve")
REJECT_ALL: ApprovalPolicy = _Fixed("reject")
FAIL: ApprovalPolicy = _Fail()

_NAMED = {
    "halt": HALT,
    "approve": APPROVE_ALL,
    "approve_all": APPROVE_ALL,
    "reject": REJECT_ALL,
    "reject_all": REJECT_ALL,
    "fail": FAIL,
}


def as_policy(value: str | ApprovalPolicy | None, *, source: str | None = None) -> ApprovalPolicy:
    """``"halt"`` (default), ``"approve"``, ``"reject"``, ``"fail"``, a decisions file path, or a policy.
    ``source``: where a policy the user did not pass in code was read (``$WFKIT_POLICY``, the
    notebook parameter ``wfkit_policy``), which an error names with the value, as the user set it
    there and not in the call the error comes from."""
    if value is None:
        return HALT
    if isinstance(value, ApprovalPolicy):
        return value
    if isinstance(value, str | Path):
        named = _NAMED.get(str(value).strip().lower() if source else str(value).lower())
        if named is not None:
            return named
        if Path(value).suffix in (".jsonl", ".json") or Path(value).exists():
            if source is None:
                return DecisionsFile(value)
            try:
                return DecisionsFile(value)
            except DecisionsFileError as exc:
                raise DecisionsFileError(
                    f"{source}={str(value)!r} names a decisions file wfkit cannot use: {exc}"
                ) from exc
    valid = (
        "'halt', 'approve', 'reject', 'fail', or the path of a decisions file (.jsonl) recorded with "
        "Workspace.export_decisions"
    )
    if source is not None:
        meant = did_you_mean(str(value).strip().lower(), _NAMED) if isinstance(value, str | Path) else ""
        raise ValueError(
            f"{source}={str(value)!r} is no approval policy{meant}: set it to {valid}, or unset it "
            f"(a run given no policy then halts at a gate, or fails under papermill)"
        )
    raise ValueError(f"unknown approval policy {value!r}: use {valid}")


def policy_record(policy: ApprovalPolicy) -> dict[str, str]:
    """What a run's row keeps of the policy it was started with, so that a resume in another
    process (``wfkit resume``, ``Workflow.resume``) decides its gates the same way: a named
    policy's name, a decisions file's absolute path and ``missing``; of a policy of the user's
    own class only its ``repr`` (it cannot be rebuilt: :func:`recorded_policy` asks for it)."""
    if isinstance(policy, DecisionsFile):
        return {"file": str(policy.path.resolve()), "missing": policy.on_missing}
    name = next((name for name, named in _NAMED.items() if named is policy), None)
    return {"object": repr(policy)} if name is None else {"name": name}


def recorded_policy(record: Mapping[str, str], run_id: str) -> ApprovalPolicy:
    """The policy :func:`policy_record` kept for run ``run_id``."""
    if "name" in record:
        return as_policy(record["name"])
    if "file" in record:
        return DecisionsFile(record["file"], missing="fail" if record.get("missing") == "fail" else "halt")
    raise ValueError(
        f"run {run_id} was started with the approval policy {record['object']}, an object of your own "
        f"that wfkit cannot rebuild: pass it again to resume or fork the run (policy=... in Python, or "
        f"--policy in `wfkit resume` and `wfkit fork`), or another policy to decide its gates by that one"
    )
