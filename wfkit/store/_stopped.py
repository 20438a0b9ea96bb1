"""How a stored run stopped, read from its store alone (no workflow code): the step visits that
were in flight when its process died, and the reconciliations made since it last ran.

``wfkit show`` of an interrupted run names these, where the steps table alone shows only what
settled. What was in flight is not written anywhere (a first attempt writes no "started" record,
see ``_store``): it is found as a resume finds it (``Durability.cut_offs``), by replaying the run's
checkpoints over its graph, here the graph as stored with the run (``runs.definition``: edges,
routes, fallbacks), so that the steps left ready are the ones started and never settled.

The replay follows the scheduler's rules (``_engine``: a join fires once none of its missing
predecessors can still arrive), without state: where the scheduler chooses a route anew on the
state (a routed step reconciled by hand, or a fork's), this replay follows nothing, so it may leave
out a step that ran then, never name one that did not. A checkpoint it cannot place (a definition
stored by another wfkit) makes it name nothing rather than guess.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from wfkit.model._errors import ProcessCrashedError
from wfkit.model._routes import END
from wfkit.model._status import RunStatus
from wfkit.store._journal import COLUMNS
from wfkit.store._store import Store

_AT = {name: i + 1 for i, name in enumerate(COLUMNS)}  # positions in a journal row (seq, *COLUMNS)


class InFlight(NamedTuple):
    """A step visit the process was running when it died: its ``attempt`` (the one cut off, or,
    ``waiting``, the one that was to start after a retry's backoff); ``items_done``: of a map step,
    the items it had finished (None for any other step); ``child``: of a sub-workflow step, its
    child run, if that was running too; ``not_before``: of a ``waiting`` one, when its backoff ends
    (seconds since the epoch; a resume waits it out), if known."""

    step: str
    visit: int
    attempt: int
    waiting: bool = False
    items_done: int | None = None
    child: str | None = None
    not_before: float | None = None

    def describe(self) -> str:
        """``step 'x' attempt 2`` (with its visit when it is not the first, and what more is known)."""
        visit = f" (visit {self.visit})" if self.visit > 1 else ""
        if self.items_done is not None:
            return f"step {self.step!r}{visit}, a map with {self.items_done} item(s) done"
        attempt = f"waiting to start attempt {self.attempt}" if self.waiting else f"attempt {self.attempt}"
        child = f" (its sub-workflow run {self.child} was running too)" if self.child else ""
        return f"step {self.step!r}{visit} {attempt}{child}"


class Reconciled(NamedTuple):
    """A person's reconciliation of an irreversible step visit (``wfkit reconcile``,
    ``Workspace.reconcile``): ``action`` "done" (its side effect happened) or "retry" (it did not)."""

    step: str
    visit: int
    action: str
    by: str
    at: float

    def verdict(self) -> str:
        """``reconciled by ana: done (...)``, what was said and what follows from it."""
        return verdict(self.action, self.by)

    def describe(self) -> str:
        """``step 'send' was reconciled by ana: done (...)``."""
        visit = f" (visit {self.visit})" if self.visit > 1 else ""
        return f"step {self.step!r}{visit} was {self.verdict()}"


def verdict(action: str, by: str) -> str:
    """A reconciliation (``action`` "done" or "retry", by ``by``) in words: what it said, what follows."""
    what = (
        "done (its side effect happened: the step counts as completed)"
        if action == "done"
        else "retry (its side effect did not happen: a resume runs the step again)"
    )
    return f"reconciled by {by}: {what}"


def reconciliation_of(extra: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(action, by) of a journal row that records a reconciliation (its ``extra``), else None."""
    if not extra or "reconciled" not in extra:
        return None
    return str(extra["reconciled"]), str(extra.get("by") or "")


class Stopped(NamedTuple):
    """How a stored run stopped: ``died``, whether the process running it died (it is stored as
    running, and no one holds its lease: ``interrupted``); the step visits in flight then; and the
    reconciliations made since a process last ran it."""

    died: bool
    in_flight: list[InFlight]
    reconciled: list[Reconciled]


def how_stopped(store: Store, run_id: str, status: str) -> Stopped:
    """:class:`Stopped` of a run whose true status is ``status`` (``Store.run_row``'s): only an
    interrupted one can have had steps in flight when its process died."""
    last = _last_ran(store, run_id)
    if last is None:
        return Stopped(False, [], [])
    rows = store.journal_rows(run_id)
    reconciled = reconciled_since_stop(store, run_id, rows, last)
    if status != RunStatus.INTERRUPTED or last.status != RunStatus.RUNNING:
        return Stopped(False, [], reconciled)
    return Stopped(True, in_flight(store, run_id, last.definition, rows, reconciled), reconciled)


def _extra(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _LastRan(NamedTuple):
    """A run's stored status (not the one it truly has: see ``effective_status``), when a process
    last wrote its row (it starts, renews its lease, halts or ends), and its stored graph."""

    status: str
    updated_at: float
    definition: str


def _last_ran(store: Store, run_id: str) -> _LastRan | None:
    rows = store.read("SELECT status, updated_at, definition FROM runs WHERE run_id=?", (run_id,))
    return None if not rows else _LastRan(str(rows[0][0]), float(rows[0][1]), str(rows[0][2]))


def reconciled_since_stop(
    store: Store, run_id: str, rows: Sequence[tuple[Any, ...]], last: _LastRan
) -> list[Reconciled]:
    """The reconciliations of a run made since a process last ran it (none resumed it since), oldest
    first. ``rows``: the run's journal rows (``Store.journal_rows``)."""
    found = []
    for row in rows:
        made = reconciliation_of(_extra(row[_AT["extra"]])) if row[_AT["attempt"]] == 0 else None
        if made is not None and row[_AT["started_at"]] > last.updated_at:
            found.append(Reconciled(row[_AT["step"]], row[_AT["visit"]], made[0], made[1], row[_AT["started_at"]]))
    return found


def in_flight(
    store: Store, run_id: str, definition: str, rows: Sequence[tuple[Any, ...]], reconciled: Sequence[Reconciled]
) -> list[InFlight]:
    """The step visits a run stored as running had in flight when its process died, in the order
    they became due. ``definition``: its stored graph; ``rows``: its journal rows; ``reconciled``:
    :func:`reconciled_since_stop`."""
    try:
        graph = json.loads(definition)
    except (TypeError, ValueError):
        return []
    if not isinstance(graph, dict):
        return []
    after = {(r.step, r.visit) for r in reconciled}
    checkpoints = [
        r
        for r in rows
        if r[_AT["outcome"]] is not None
        # A reconciliation made since the process died settles a step that was in flight then.
        and not (r[_AT["attempt"]] == 0 and (r[_AT["step"]], r[_AT["visit"]]) in after)
    ]
    ready = _replay(graph, checkpoints)
    if ready is None:
        return []
    steps = {s.get("name"): s for s in graph.get("steps", []) if isinstance(s, dict)}
    facts = store.attempt_facts(run_id)
    # Per step visit (not a map item), whether its last attempt's row journals a crash.
    crashed = {
        (r[_AT["step"]], r[_AT["visit"]]): r[_AT["error_type"]] == ProcessCrashedError.__name__
        for r in rows
        if r[_AT["attempt"]] > 0 and r[_AT["map_index"]] is None
    }
    found = []
    for step, visit in ready:
        spec = steps.get(step, {})
        if spec.get("approval") is not None:
            ticket = store.tickets.of_visit(run_id, step, visit)
            if ticket is not None and ticket.status != "approved":
                continue  # it waited for a decision, it was not running
        if spec.get("map") is not None:
            done = sum(
                1 for r in checkpoints if (r[_AT["step"]], r[_AT["visit"]], r[_AT["outcome"]]) == (step, visit, "item")
            )
            found.append(InFlight(step, visit, 1, items_done=done))
            continue
        fact = facts.get((step, visit))
        waiting = False
        if spec.get("irreversible") and any(
            i["step"] == step and i["visit"] == visit and i["status"] == "pending" for i in store.intents(run_id)
        ):
            cut = store.intent_cut_off(run_id, step, visit)
            if cut is not None and cut.waits_to_retry:
                attempt, waiting = (fact.attempt if fact else 0) + 1, True
            elif cut is not None and cut.attempt:
                attempt = cut.attempt
            else:  # its cut-off attempt is journaled already (as crashed): the visit's last row
                attempt = fact.attempt if fact else 1
        elif fact is None:
            attempt = 1
        elif fact.started_attempt is not None:
            attempt = fact.started_attempt
        elif crashed.get((step, visit)):
            # Its last row is a crash journaled later (by a reconciliation, or by a resume that
            # then ran the next attempt): the reconciled one is that attempt, else the next.
            attempt = fact.attempt if (step, visit) in after else fact.attempt + 1
        elif fact.retry_delay_s is not None:
            attempt, waiting = fact.attempt + 1, True
        else:
            continue  # its last attempt failed for good: the run was ending, as after any failure
        child = store.running_child(run_id, step, visit) if spec.get("subflow") is not None else None
        not_before = None
        if waiting and fact is not None and fact.retry_delay_s is not None and fact.ended_at is not None:
            not_before = fact.ended_at + fact.retry_delay_s  # as the resume computes it (``cut_offs``)
        found.append(InFlight(step, visit, attempt, waiting, child=child, not_before=not_before))
    return found


def _replay(graph: Mapping[str, Any], checkpoints: Sequence[tuple[Any, ...]]) -> list[tuple[str, int]] | None:
    """The step visits left ready once ``checkpoints`` are replayed over the stored ``graph``, in
    the order they became due; None when a checkpoint names a visit the replay never reached."""
    entry = graph.get("entry")
    edges: Mapping[str, list[str]] = graph.get("edges") or {}
    routes: Mapping[str, Any] = graph.get("routes") or {}
    steps = {s["name"]: s for s in graph.get("steps", []) if isinstance(s, dict) and "name" in s}
    if not isinstance(entry, str) or entry not in steps:
        return None
    preds: dict[str, set[str]] = {name: set() for name in steps}
    for src, targets in edges.items():
        for dst in targets:
            if dst in preds and src in steps:
                preds[dst].add(src)
    blockers = _join_blockers(steps, edges, routes, preds)
    visits: Counter[str] = Counter()
    active: Counter[str] = Counter()
    ready: list[tuple[str, int]] = []
    missing: dict[str, set[str]] = {}

    def activate(step: str) -> None:
        if step not in steps:
            return
        visits[step] += 1
        bound = steps[step].get("max_visits")
        if isinstance(bound, int) and visits[step] > bound:
            return  # its visit bound fails the run: nothing runs
        ready.append((step, visits[step]))
        active[step] += 1

    activate(entry)
    for row in checkpoints:
        step, visit, outcome, route = row[_AT["step"]], row[_AT["visit"]], row[_AT["outcome"]], row[_AT["route_taken"]]
        if outcome in ("item", "fork"):
            continue
        if (step, visit) not in ready:
            return None
        ready.remove((step, visit))
        active[step] -= 1
        if outcome == "ok" and step in routes:
            if isinstance(route, str) and route != END:
                activate(route)
        elif outcome == "ok":
            for target in edges.get(step, ()):
                if len(preds.get(target, ())) < 2:
                    activate(target)
                else:
                    missing.setdefault(target, set(preds[target])).discard(step)
        elif isinstance(route, str) and route != END:  # fell back, or its gate was rejected
            activate(route)
        for join in [j for j, waits in missing.items() if not _can_arrive(waits, blockers[j], active)]:
            del missing[join]
            activate(join)
    return ready


def _can_arrive(waits: set[str], blockers: Mapping[str, frozenset[str]], active: Counter[str]) -> bool:
    """Whether one of a join's missing predecessors can still arrive: a step it is reached from is active."""
    return any(active[step] > 0 for pred in waits for step in blockers.get(pred, ()))


def _join_blockers(
    steps: Mapping[str, Mapping[str, Any]],
    edges: Mapping[str, list[str]],
    routes: Mapping[str, Any],
    preds: Mapping[str, set[str]],
) -> dict[str, dict[str, frozenset[str]]]:
    """Per join and predecessor, the steps that predecessor can be reached from without passing
    through the join (``Graph.join_blockers``, from the stored graph)."""
    back: dict[str, set[str]] = {name: set() for name in steps}

    def link(src: str, dst: Any) -> None:
        if isinstance(dst, str) and src in back and dst in back:
            back[dst].add(src)

    for src, targets in edges.items():
        for dst in targets:
            link(src, dst)
    for src, router in routes.items():
        for route in router.get("routes", ()):
            link(src, route[1])
        link(src, (router.get("default") or [None])[0])
    for name, spec in steps.items():
        link(name, spec.get("fallback"))
        link(name, (spec.get("approval") or {}).get("on_reject"))
    found: dict[str, dict[str, frozenset[str]]] = {}
    for join, before in preds.items():
        if len(before) < 2:
            continue
        found[join] = {}
        for pred in before:
            seen, todo = {pred}, [pred]
            while todo:
                for nxt in back[todo.pop()]:
                    if nxt not in seen and nxt != join:
                        seen.add(nxt)
                        todo.append(nxt)
            found[join][pred] = frozenset(seen)
    return found
