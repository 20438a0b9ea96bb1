"""What a notebook's runs did, reduced to the signals that repeat exactly under its seeds.

A summary holds, per run (in the order the notebook started them): workflow, status, error,
inputs, the path of completed steps, the final state, and per step and visit:

- ``route`` taken and ``tools_bound`` (the tools the route handed the step),
- its ``attempts``, each with ``attempt_status``, ``error_kind``, ``error_type``, ``error_message``,
  ``retry_delay``, ``tools_called`` (tool, ok, error, cost), ``model``, ``tokens_in``,
  ``tokens_out``, ``cost``, ``llm_calls`` and any ``extra`` the step recorded,
- the approval ``gate`` it met, the ``decision`` with its ``decider`` and ``decision_comment``,
- what it ``writes`` to the state.

Plus the runs of the evals the notebook ran (kept in ``WORKSPACE/evals/runs``), each with the same
signals, under ``evals`` by suite, variant and case id: an eval runs its cases concurrently, so they
start and finish in an order that varies between two replays, and none of them is told by its place.

Plus per workflow and step, pooled over that workflow's runs, ``latency`` percentiles (a step
name two workflows share is two steps; an eval's runs are pooled apart, as ``eval WORKFLOW``):
wall-clock time is the one signal never repeated exactly, so it is compared with a tolerance (see
:mod:`wfkit.replay._compare`).

Plus what each code cell showed, read from the executed notebook (:mod:`wfkit.replay._outputs`).

Everything is read back from the workspace's journal (the events and the checkpoints' updates),
so nothing here needs the engine to log more. What differs on every run by construction is masked
where it is read: the run's own id (in an idempotency key, say) becomes ``<run_id>``, another run's
id (a fork's origin) ``<run N>`` by its place among the runs, ticket ids ``<ticket>``, and a tool
call's own latency is dropped. A map step's items are ``name#visit[item]``.

A notebook masks a signal that is not deterministic for a reason its author knows, by name, in its
metadata: ``"wfkit": {"mask": ["retry_delay", "web_search:tools_called", "state.fetched_at"]}``
(``SIGNAL``, ``STEP:SIGNAL``, or a field of ``state``, ``writes`` or ``inputs``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wfkit.model._context import BY_MODEL
from wfkit.replay._errors import ReplayError

SUMMARY_VERSION = 8
EVALS_SINCE = 8  # format 7 and before hold no eval runs (they are kept in WORKSPACE/evals/runs)
VALUES_SINCE = 7  # format 6 holds tables and arrays as shown (6 or 8 decimals), and a big one's digest as shown
DIGESTS_SINCE = 6  # format 5 holds numpy arrays cut at 1,000 elements, and tables whole whatever their size
OUTPUTS_SINCE = 4  # formats 2 and 3 hold no cell outputs (wfkit.replay._outputs)
FIGURES_SINCE = 5  # format 4 holds a figure's size and axes, not what it draws
LATENCY_POOLED_BY_NAME = 2  # format 2: format 3 but for latency, pooled by step name over workflows

NOT_SAVED = "(not saved)"  # the suite of an eval run no saved result names

RUN_SIGNALS = ("runs", "evals", "workflow", "status", "error", "inputs", "path", "state")
STEP_SIGNALS = (
    "steps",
    "route",
    "tools_bound",
    "attempts",
    "gate",
    "decision",
    "decider",
    "decision_comment",
    "writes",
)
ATTEMPT_SIGNALS = (
    "attempt_status",
    "error_kind",
    "error_type",
    "error_message",
    "retry_delay",
    "tools_called",
    "model",
    "tokens_in",
    "tokens_out",
    "cost",
    "llm_calls",
    "extra",
)
SIGNALS = (*RUN_SIGNALS, *STEP_SIGNALS, *ATTEMPT_SIGNALS, "latency", "outputs")
_FIELD_SIGNALS = ("state", "writes", "inputs")  # signals whose single fields can be masked
_GATE_STATUSES = ("waiting_approval", "approved", "rejected")
# Journal fields that are bookkeeping of the engine, not behaviour of the workflow (llm_endpoints:
# the URL a client called, whose port a local server picks anew each time).
_EXTRA_READ_ELSEWHERE = ("tool_calls", "llm_calls", "llm_endpoints", "ticket", "reason", "retry_delay_planned_s")
# Of each model's share in an attempt that called several (extra["by_model"]), the wall-clock parts.
_SHARE_TIMES = ("model_latency_s", "ttft_s")


@dataclass(frozen=True)
class Settings:
    """How a notebook's replay is compared, from ``metadata.wfkit`` of the notebook."""

    mask: tuple[str, ...] = ()
    float_tolerance: float = 1e-9
    compare_latency: bool = False
    latency_factor: float = 2.0
    latency_floor_s: float = 0.02
    latency_min_samples: int = 3  # P50 of fewer samples is one slow moment of a busy machine
    latency_min_samples_p99: int = 20
    masked_steps: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)

    def masks(self, signal: str, step: str | None = None) -> bool:
        """Whether ``signal`` (or ``signal.field``) is masked, everywhere or at ``step``."""
        if signal in self.mask:
            return True
        head = signal.split(".", 1)[0]
        if "." in signal and head in self.mask:
            return True
        return step is not None and (
            signal in self.masked_steps.get(step, ()) or head in self.masked_steps.get(step, ())
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mask": list(self.mask) + [f"{s}:{m}" for s, ms in sorted(self.masked_steps.items()) for m in sorted(ms)],
            "float_tolerance": self.float_tolerance,
            "compare_latency": self.compare_latency,
            "latency_factor": self.latency_factor,
            "latency_floor_s": self.latency_floor_s,
            "latency_min_samples": self.latency_min_samples,
        }


def _check_mask(entry: Any, where: str) -> tuple[str | None, str]:
    if not isinstance(entry, str) or not entry:
        raise ReplayError(f"{where}: each mask is a signal name (a string), got {entry!r}")
    step, _, signal = entry.rpartition(":")
    head, dot, rest = signal.partition(".")
    if head not in SIGNALS or (dot and (head not in _FIELD_SIGNALS or not rest)):
        fields = ", ".join(f"{s}.FIELD" for s in _FIELD_SIGNALS)
        raise ReplayError(
            f"{where}: unknown signal {entry!r} to mask; a mask is SIGNAL, STEP:SIGNAL or {fields}, "
            f"with SIGNAL one of: {', '.join(SIGNALS)}"
        )
    return (step or None), signal


def settings_of(notebook: Path) -> Settings:
    """The notebook's comparison settings; a misspelt mask is refused, never silently ignored."""
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get("wfkit", {})
    except (OSError, ValueError) as exc:
        raise ReplayError(f"cannot read {notebook} as a notebook: {exc}") from exc
    where = f"{notebook.name} metadata.wfkit"
    if not isinstance(meta, dict):
        raise ReplayError(f"{where} must be an object, got {type(meta).__name__}")
    known = {
        "mask",
        "ignore_fields",
        "float_tolerance",
        "compare_latency",
        "latency_factor",
        "latency_floor_s",
        "latency_min_samples",
    }
    unknown = sorted(set(meta) - known)
    if unknown:
        raise ReplayError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    masks = meta.get("mask", [])
    if not isinstance(masks, list):
        raise ReplayError(f"{where}.mask must be a list of signal names, got {masks!r}")
    # ignore_fields (the older spelling) masks final-state and written fields of those names.
    masks = [*masks, *(f"{s}.{name}" for name in meta.get("ignore_fields", []) for s in ("state", "writes"))]
    everywhere: list[str] = []
    per_step: dict[str, set[str]] = {}
    for entry in masks:
        step, signal = _check_mask(entry, where)
        if step is None:
            everywhere.append(signal)
        else:
            per_step.setdefault(step, set()).add(signal)
    try:
        return Settings(
            mask=tuple(everywhere),
            float_tolerance=float(meta.get("float_tolerance", 1e-9)),
            compare_latency=bool(meta.get("compare_latency", False)),
            latency_factor=float(meta.get("latency_factor", 2.0)),
            latency_floor_s=float(meta.get("latency_floor_s", 0.02)),
            latency_min_samples=int(meta.get("latency_min_samples", 3)),
            masked_steps={s: frozenset(m) for s, m in per_step.items()},
        )
    except (TypeError, ValueError) as exc:
        raise ReplayError(f"{where}: a numeric setting is not a number ({exc})") from exc


def source_digest(notebook: Path) -> str:
    """A digest of the notebook's code, which tells a renamed notebook by its unchanged contents."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return ""
    code = ["".join(c.get("source", [])) for c in cells if c.get("cell_type") == "code"]
    return hashlib.sha256("\n\x00".join(code).encode()).hexdigest()[:16]


# ---- reading a workspace ------------------------------------------------------------------------


def _mask_ids(value: Any, ids: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for raw, label in ids.items():
            if raw in value:
                value = value.replace(raw, label)
        return value
    if isinstance(value, dict):
        return {k: _mask_ids(v, ids) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_ids(v, ids) for v in value]
    return value


def _attempt(event: Any) -> dict[str, Any]:
    extra = dict(event.extra or {})
    shares = extra.get(BY_MODEL)
    if isinstance(shares, dict):  # its calls, tokens and cost repeat under a seed; its times do not
        extra[BY_MODEL] = {
            model: {k: v for k, v in share.items() if k not in _SHARE_TIMES} if isinstance(share, dict) else share
            for model, share in shares.items()
        }
    calls = [
        {k: v for k, v in call.items() if k != "latency_ms"}  # a tool's own time: wall clock
        for call in extra.get("tool_calls") or ()
        if isinstance(call, dict)
    ]
    record = {
        "attempt_status": event.status,
        "error_kind": event.error_kind,
        "error_type": event.error_type,
        "error_message": event.error_message,
        # Under test_mode the backoff is not waited (retry_delay_s 0): the retry delay the policy
        # chose is the planned one, so a baseline compares the same signal in and out of test mode.
        "retry_delay": extra.get("retry_delay_planned_s", event.retry_delay_s),
        "tools_called": calls or None,
        "model": event.model,
        "tokens_in": event.tokens_in,
        "tokens_out": event.tokens_out,
        "cost": event.cost_usd,
        "llm_calls": extra.get("llm_calls"),
        "extra": {k: v for k, v in sorted(extra.items()) if k not in _EXTRA_READ_ELSEWHERE} or None,
    }
    return {k: v for k, v in record.items() if v is not None}


def _step_key(step: str, visit: int, map_index: int | None) -> str:
    """``name#visit``, or ``name#visit[item]`` for an item of a map step (items run concurrently,
    so they are told apart by their index, never by the order they finished in)."""
    return f"{step}#{visit}" if map_index is None else f"{step}#{visit}[{map_index}]"


def _run_summary(
    ws: Any, run_id: str, ids: Mapping[str, str], tickets: dict[str, str]
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """One run's signals and its steps' latencies; its tickets' ids are added to ``tickets``."""
    info = ws.run_info(run_id)
    events = ws.events(run_id)
    ids = {**ids, run_id: "<run_id>"}
    for e in events:
        ticket = (e.extra or {}).get("ticket")
        if isinstance(ticket, str) and ticket:
            ids[ticket] = tickets[ticket] = "<ticket>"
    steps: dict[str, dict[str, Any]] = {}
    latency: dict[str, list[float]] = {}
    for e in events:
        record = steps.setdefault(_step_key(e.step, e.visit, e.map_index), {"attempts": []})
        if e.tools is not None:
            record["tools_bound"] = list(e.tools)
        if e.route_taken is not None:
            record["route"] = e.route_taken
        if e.status == "waiting_approval":
            record["gate"] = (e.extra or {}).get("reason", "")
        elif e.status in _GATE_STATUSES:
            record["decision"] = e.status
            record["decider"] = e.approver
            record["decision_comment"] = e.decision_comment
        else:
            record["attempts"].append(_attempt(e))
            if e.attempt > 0 and e.status != "cached":
                latency.setdefault(e.step, []).append(e.latency_s)
    for _seq, step, visit, _outcome, updates, _route, _failure, *rest in ws.store.checkpoints(run_id):
        if updates is not None:
            key = _step_key(step, visit, rest[0] if rest else None)
            steps.setdefault(key, {"attempts": []})["writes"] = json.loads(updates)
    error = f"{info['error_type']}: {info['error']}" if info.get("error") else None
    run = {
        "workflow": info["workflow"],
        "status": info["status"],
        "error": error,
        "inputs": info.get("inputs") or {},
        # Steps that settled, in order; a map's items are under its steps, not on the path.
        "path": [e.step for e in events if e.status in ("ok", "cached") and getattr(e, "map_index", None) is None],
        "steps": steps,
        "state": dict(sorted((info.get("state") or {}).items())),
    }
    return _mask_ids(run, ids), latency


def summarise_workspace(workspace: Path, settings: Settings | None = None) -> dict[str, Any]:
    """Every deterministic signal of the runs in ``workspace``, oldest run first, and of its evals' runs."""
    return summarise_with_ids(workspace, settings)[0]


def summarise_with_ids(workspace: Path, settings: Settings | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`summarise_workspace`, and the ids the replay drew afresh with their labels (runs
    ``<run N>``, eval runs ``<eval SUITE/VARIANT/CASE>``, the folders of saved eval results
    ``<eval SUITE result N>``, tickets ``<ticket>``), read in the same
    pass: what the cells showed is masked by them."""
    settings = settings or Settings()
    summary: dict[str, Any] = {
        "version": SUMMARY_VERSION,
        "settings": settings.to_json(),
        "runs": [],
        "evals": {},
        "latency": {},
    }
    pooled: dict[str, dict[str, list[float]]] = {}
    ids: dict[str, str] = {}
    tickets: dict[str, str] = {}
    if (workspace / "wfkit.db").exists():
        from wfkit.store._workspace import Workspace

        ws = Workspace(workspace)
        try:
            rows = list(reversed(ws.runs()))  # oldest first: the order the notebook started them
            # Another run's id (a fork's origin, a sub-workflow) is named by its place among the runs.
            ids = {row["run_id"]: f"<run {n}>" for n, row in enumerate(rows, 1)}
            for row in rows:
                run, latency = _run_summary(ws, row["run_id"], ids, tickets)
                summary["runs"].append(run)
                for step, values in latency.items():
                    pooled.setdefault(run["workflow"], {}).setdefault(step, []).extend(values)
        finally:
            ws.store.close()
    evals = _eval_runs(workspace, summary["evals"], ids, tickets, pooled)
    # Each workflow's steps in the order its runs met them (the report's chart lists them so).
    summary["latency"] = {
        workflow: {step: {"p50": quantile(v, 0.5), "p99": quantile(v, 0.99), "n": len(v)} for step, v in steps.items()}
        for workflow, steps in sorted(pooled.items())
    }
    return summary, {**ids, **evals, **tickets}


def _eval_runs(
    workspace: Path,
    into: dict[str, Any],
    ids: Mapping[str, str],
    tickets: dict[str, str],
    pooled: dict[str, dict[str, list[float]]],
) -> dict[str, str]:
    """The runs of the evals the notebook ran, kept in a workspace of their own
    (``WORKSPACE/evals/runs``), put ``into`` a mapping of suite, variant and case id; their steps'
    latencies pooled per workflow as ``eval WORKFLOW``. Returns their ids, and the folder names of the
    results saved, with the labels that mask them.

    An eval runs its cases concurrently, so the order they start and finish in varies from one
    replay to the next: each run is keyed by the case it ran (named by the eval's saved result),
    never by its place. A run no saved result names (``store=False``) is keyed by its workflow and
    seed, the case's place in its dataset; a case evaluated again (the same suite twice) is
    ``CASE#2``, counted in the order its evaluations started."""
    from wfkit.evals._evals import eval_runs_workspace, saved_eval_results
    from wfkit.store._workspace import Workspace

    folder = eval_runs_workspace(workspace)
    if not (folder / "wfkit.db").exists():
        return {}
    saved = saved_eval_results(workspace)
    named = {run_id: key for runs in saved.values() for run_id, key in runs.items()}
    ws = Workspace(folder)
    try:
        keys: dict[str, tuple[str, str, str]] = {}
        seen: dict[tuple[str, str, str], int] = {}
        for row in reversed(ws.runs()):  # oldest first
            key = named.get(row["run_id"])
            if key is None:
                key = (NOT_SAVED, str(row["workflow"]), f"seed {ws.run_info(row['run_id']).get('seed')}")
            seen[key] = seen.get(key, 0) + 1
            suite, variant, case = key
            keys[row["run_id"]] = (suite, variant, case if seen[key] == 1 else f"{case}#{seen[key]}")
        labels = {run_id: f"<eval {'/'.join(key)}>" for run_id, key in keys.items()}
        for run_id, (suite, variant, case) in keys.items():
            run, latency = _run_summary(ws, run_id, {**ids, **labels}, tickets)
            into.setdefault(suite, {}).setdefault(variant, {})[case] = run
            for step, values in latency.items():
                pooled.setdefault(f"eval {run['workflow']}", {}).setdefault(step, []).extend(values)
    finally:
        ws.store.close()
    return {**labels, **_saved_results(saved, list(keys))}


def _saved_results(saved: Mapping[Path, Mapping[str, Any]], ran: Sequence[str]) -> dict[str, str]:
    """The folder name of each saved eval result (``result.saved_to``: ``evals/SUITE/STAMP``, named by
    the time and a random suffix) with its label, ``<eval SUITE result N>``: N counts a suite's
    results in the order their runs started (``ran``, oldest first), not by name (two saved in one
    second would swap at random), then by when the files were written (one result saved twice)."""
    first = {run_id: n for n, run_id in enumerate(ran)}
    by_suite: dict[str, list[tuple[int, int, str]]] = {}
    for folder, runs in saved.items():
        try:
            written = (folder / "cases.parquet").stat().st_mtime_ns
        except OSError:
            written = 0
        started = min((first.get(run_id, len(first)) for run_id in runs), default=len(first))
        by_suite.setdefault(folder.parent.name, []).append((started, written, folder.name))
    return {
        name: f"<eval {suite} result {n}>"
        for suite, found in by_suite.items()
        for n, (_, _, name) in enumerate(sorted(found), 1)
    }


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
