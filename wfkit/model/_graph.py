"""The compiled, validated graph of a workflow, and the checks that reject a broken one.

Joins: a step with two or more incoming unconditional edges waits for every one of those
predecessors that can still arrive. A predecessor on a branch that a route did not take, or that
left through a fallback, can no longer arrive, so the join does not wait for it (this is the OR-join
of BPMN, or "dead path elimination"). For each join and predecessor we precompute the steps from
which that predecessor can still be reached without passing through the join; the join fires when
none of those is active.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wfkit.model._errors import Facts, Location, WorkflowDefinitionError
from wfkit.model._routes import END, Go, Router, compared_fields, holds_when_missing
from wfkit.model._steps import StepSpec
from wfkit.model._suggest import closest, did_you_mean
from wfkit.model._wording import CODE, CodeWording


@dataclass(frozen=True, slots=True)
class Onward:
    """Where a step's success leads, worked out once per graph: the scheduler reads this on every
    settled step of every run, instead of looking up the step's router, its edges and each edge
    target's predecessors there.

    A step has a router or edges, never both. ``router``: its routes choose the one successor.
    ``starts``: the steps its unconditional edges lead to that start at once (each has this step
    as its only unconditional predecessor). ``joins``: the edge targets with two or more such
    predecessors, which note the arrival and start once no other predecessor can still arrive.
    ``lone``: the one step of ``starts`` when that is all that follows (no router, no join): a
    chain's link, which the scheduler queues with no further look-up.
    ``unsure``: the fields the router's conditions compare (never asking whether they exist) that
    no step declares it writes: one absent when no route held is likely misspelt, and the scheduler
    warns of it (a declared field may be absent only because its step has not run yet).
    ``held_unsure``: per route, the ``unsure`` fields whose absence makes it hold (``ne``, or under
    ``~``): a route taken while one is absent may have been taken because its name is misspelt.
    """

    router: Router | None
    starts: tuple[StepSpec, ...]
    joins: tuple[str, ...]
    lone: StepSpec | None
    unsure: tuple[str, ...] = ()
    held_unsure: tuple[tuple[Go, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Graph:
    name: str
    entry: str
    steps: Mapping[str, StepSpec]
    edges: Mapping[str, tuple[str, ...]]
    routers: Mapping[str, Router]
    static_preds: Mapping[str, frozenset[str]]
    join_blockers: Mapping[str, Mapping[str, frozenset[str]]]
    fingerprint: str
    description: Mapping[str, Any]
    # Derived from the fields above, once (a run reads them; ten thousand runs would redo it).
    onward: Mapping[str, Onward] = field(init=False, repr=False, compare=False)
    caches: bool = field(init=False, repr=False, compare=False)  # a step has a result cache
    subflows: bool = field(init=False, repr=False, compare=False)  # a step runs a sub-workflow
    # Every step with a count of 0, for a run's per-step counters (visits, active activations) to
    # copy: copying a dict is a few times faster than building one from the step names, each run.
    zeros: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        onward: dict[str, Onward] = {}
        declared: set[str] = set()
        for spec in self.steps.values():
            declared |= spec.writes or set()
            if spec.map is not None:
                declared.add(spec.map.into)
        for name in self.steps:
            targets = self.edges.get(name, ())
            starts = tuple(self.steps[t] for t in targets if len(self.static_preds[t]) < 2)
            joins = tuple(t for t in targets if len(self.static_preds[t]) >= 2)
            lone = starts[0] if len(starts) == 1 and not joins else None
            router = self.routers.get(name)
            unsure: set[str] = set()
            held: list[tuple[Go, tuple[str, ...]]] = []
            for route in router.routes if router is not None else ():
                unsure |= compared_fields(route.condition) - declared
                missing_holds = (holds_when_missing(route.condition) & compared_fields(route.condition)) - declared
                if missing_holds:
                    held.append((route.go, tuple(sorted(missing_holds))))
            onward[name] = Onward(router, starts, joins, lone, tuple(sorted(unsure)), tuple(held))
        object.__setattr__(self, "onward", onward)
        object.__setattr__(self, "caches", any(spec.cache is not None for spec in self.steps.values()))
        object.__setattr__(self, "subflows", any(spec.subflow is not None for spec in self.steps.values()))
        object.__setattr__(self, "zeros", dict.fromkeys(self.steps, 0))

    def successors(self, step: str) -> set[str]:
        """Every step that can follow ``step``: edges, route targets and its fallback."""
        out = set(self.edges.get(step, ()))
        if step in self.routers:
            out |= self.routers[step].targets
        spec = self.steps[step]
        out |= {t for t in (spec.fallback, spec.approval and spec.approval.on_reject) if t and t != END}
        return out


def unwritten_route_fields(graph: Graph, inputs: Iterable[str] | None) -> list[tuple[Location, str, str, str | None]]:
    """The fields routes compare (never asking whether they exist) that no step declares it writes
    and no input names, each as (location of the first route comparing it, the step routing, the
    field, the closest field written or None). Sound only when every step declares ``writes=``
    (a map step its ``into``) and the inputs are declared: otherwise nothing is known, and the
    answer is empty."""
    if inputs is None or any(spec.writes is None and spec.map is None for spec in graph.steps.values()):
        return []
    written = sorted(
        {f for spec in graph.steps.values() for f in (spec.writes or ())}
        | {spec.map.into for spec in graph.steps.values() if spec.map is not None}
    )
    found: list[tuple[Location, str, str, str | None]] = []
    for src in sorted(graph.routers):
        router = graph.routers[src]
        for field_name in graph.onward[src].unsure:
            if field_name in inputs:
                continue
            i = next(i for i, r in enumerate(router.routes) if field_name in compared_fields(r.condition))
            found.append((("routes", src, "routes", i, "when"), src, field_name, closest(field_name, written)))
    return found


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """What changed between two stored descriptions: (steps removed, other changes)."""
    old_steps = {s["name"]: s for s in old.get("steps", [])}
    new_steps = {s["name"]: s for s in new.get("steps", [])}
    removed = sorted(set(old_steps) - set(new_steps))
    changes = [f"step {n!r} added" for n in sorted(set(new_steps) - set(old_steps))]
    for name in sorted(set(old_steps) & set(new_steps)):
        for key in sorted(set(old_steps[name]) | set(new_steps[name])):
            if old_steps[name].get(key) != new_steps[name].get(key):
                changes.append(f"step {name!r}: {key} {old_steps[name].get(key)!r} -> {new_steps[name].get(key)!r}")
    for part in ("entry", "edges", "routes", "merge"):
        if old.get(part) != new.get(part):
            changes.append(f"{part} changed")
    return removed, changes


def _route_location(src: str, router: Router, target: str) -> Location:
    """Where the first route out of ``src`` to ``target`` is declared."""
    for i, route in enumerate(router.routes):
        if route.target == target:
            return ("routes", src, "routes", i, "go")
    return ("routes", src, "default", "go")


def _check_options(
    steps: Mapping[str, StepSpec], inputs: list[str] | None, words: CodeWording = CODE
) -> list[tuple[Location, str, Facts]]:
    """Maps, caches and declared writes: what cannot work, each with its location, its fix and its facts."""
    problems: list[tuple[Location, str, Facts]] = []
    written = set(inputs or ())
    for spec in steps.values():
        written |= spec.writes or set()
        if spec.map is not None:
            written.add(spec.map.into)
    for spec in sorted(steps.values(), key=lambda s: s.name):
        if spec.cache is not None and (spec.irreversible or spec.approval is not None):
            why = "irreversible" if spec.irreversible else "gated by an approval"
            problems.append(
                (
                    ("steps", spec.name, "cache"),
                    f"step {spec.name!r} is {why} and has cache=: a cached result would skip the side effect "
                    f"(or the human's decision) the step exists for; drop cache= on it",
                    {"kind": "cache_on_side_effect", "step": spec.name, "why": why},
                )
            )
        if spec.subflow is not None:
            problems.extend(_check_subflow(spec))
        if spec.map is None:
            continue
        if spec.approval is not None or spec.irreversible:
            problems.append(
                (
                    ("steps", spec.name, "map"),
                    f"map step {spec.name!r} is {'irreversible' if spec.irreversible else 'gated by an approval'}: "
                    f"a map runs many items at once and cannot hold each for a decision or an intent; gate a "
                    f"step before the map instead",
                    {"kind": "map_gated", "step": spec.name},
                )
            )
        if spec.map.over not in written:
            producers = "no step declares it writes it" + ("" if inputs is None else " and it is not a declared input")
            problems.append(
                (
                    ("steps", spec.name, "map", "over"),
                    f"map step {spec.name!r} maps over {spec.map.over!r}, but {producers}: declare the step "
                    f"that produces the list with {words.writes(spec.map.over)}, or the run input "
                    f"with {words.run_input(spec.map.over)}",
                    {"kind": "map_over_unwritten", "step": spec.name, "field": spec.map.over},
                )
            )
    return problems


def _check_subflow(spec: StepSpec) -> list[tuple[Location, str, Facts]]:
    """A sub-workflow step: the child's own problems (prefixed with the step's name, located under
    the step's ``workflow`` key), and inputs the child declares that the step does not map."""
    assert spec.subflow is not None
    child = spec.subflow.workflow
    where = f"sub-workflow step {spec.name!r} (workflow {child.name!r})"
    here: Location = ("steps", spec.name, "workflow")
    try:
        child.validate()
    except WorkflowDefinitionError as exc:
        return [
            ((*here, *loc), f"{where}: {problem}", {"kind": "subflow", "step": spec.name, "child": child.name})
            for loc, problem in zip(exc.locations, exc.problems, strict=True)
        ]
    mapped = {field for field, _ in spec.subflow.inputs}
    missing = [field for field in child.inputs or () if field not in mapped]
    if missing:
        pairs = ", ".join(f"{f!r}: 'parent_field'" for f in missing)
        return [
            (
                (*here, "inputs"),
                f"{where} declares the inputs {missing}, which the step does not map: add inputs={{{pairs}}}",
                {"kind": "subflow_inputs", "step": spec.name, "child": child.name, "fields": missing},
            )
        ]
    return []


def _reach(start: str, succ: Mapping[str, set[str]], avoid: str | None = None) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in succ.get(todo.pop(), ()):
            if nxt not in seen and nxt != avoid:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _cycles(nodes: set[str], succ: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of ``nodes`` that contain a cycle (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(succ.get(root, set()) & nodes)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(succ.get(nxt, set()) & nodes))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1 or node in succ.get(node, set()):
                        out.append(sorted(comp))
    return out


def _loop_through(start: str, comp: set[str], succ: Mapping[str, set[str]]) -> list[str]:
    """The shortest way from ``start`` back to it inside its cycle's component, ``start`` at both
    ends: a loop the graph has, where the component's names in order would list edges it lacks."""
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(succ.get(node, set()) & comp):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [*reversed(path), start]
                if nxt not in came:
                    came[nxt] = node
                    following.append(nxt)
        frontier = following
    return [start, start]  # not reached: the component holds a cycle through every member


def _in_notebook_cell(fn: object) -> bool:
    """Whether ``fn`` was defined in a Jupyter cell (ipykernel compiles a cell as
    ``.../ipykernel_PID/HASH.py``; IPython before it, ``<ipython-input-N-HASH>``)."""
    filename = getattr(getattr(fn, "__code__", None), "co_filename", "")
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


def compile_graph(
    name: str,
    steps: Mapping[str, StepSpec],
    edges: Mapping[str, list[str]],
    routers: Mapping[str, Router],
    entry: str | None,
    merge_fields: Iterable[str] = (),
    inputs: Iterable[str] | None = None,
    words: CodeWording = CODE,
) -> Graph:
    """Check a workflow's definition and compile it; every problem is reported at once, each with
    its location in the definition (the flow spec's keys, so a spec or the builder can point at it),
    and its fix in ``words`` (a flow spec's keys, or Python: see ``_wording``)."""
    problems: list[str] = []
    inputs = None if inputs is None else sorted(inputs)
    locations: list[Location] = []
    facts: list[Facts] = []

    def problem(where: Location, message: str, **what: Any) -> None:
        locations.append(where)
        problems.append(message)
        facts.append(what)

    known = set(steps)
    if not steps:
        raise WorkflowDefinitionError(
            name,
            ["the workflow has no steps: add one with @flow.step (the first is the entry)"],
            [("steps",)],
            [{"kind": "no_steps"}],
        )
    if entry is None:
        problem(("entry",), "no entry step: call flow.entry('step') or declare a step first", kind="no_entry")
    elif entry not in known:
        problem(
            ("entry",),
            f"entry {entry!r} is not a step{did_you_mean(entry, known)}; known steps: {', '.join(sorted(known))}",
            kind="entry_unknown",
            entry=entry,
        )

    for src, targets in edges.items():
        if src not in known:
            problem(
                ("edges", src),
                f"edge from unknown step {src!r}{did_you_mean(src, known)}: {words.declare()}",
                kind="edge_source_unknown",
                src=src,
            )
        for i, dst in enumerate(targets):
            if dst not in known:
                problem(
                    ("edges", src, i),
                    f"edge {src!r} -> {dst!r}: no step named {dst!r}{did_you_mean(dst, known)}; "
                    f"{words.declare()} or fix the name",
                    kind="edge_target_unknown",
                    src=src,
                    dst=dst,
                )
    for src, router in routers.items():
        if src not in known:
            problem(
                ("routes", src),
                f"routes from unknown step {src!r}{did_you_mean(src, known)}: {words.declare()}",
                kind="route_source_unknown",
                src=src,
            )
        for dst in sorted(router.targets - known):
            problem(
                _route_location(src, router, dst),
                f"route from {src!r} -> {dst!r}: no step named {dst!r}{did_you_mean(dst, known)}; "
                f"{words.declare()}, or {words.finish()}",
                kind="route_target_unknown",
                src=src,
                dst=dst,
            )
        if edges.get(src):
            problem(
                ("routes", src),
                f"step {src!r} has both edges and routes; a step either fans out along edges or "
                f"chooses one route: move the fan-out behind a route target",
                kind="edges_and_routes",
                step=src,
            )
    for spec in steps.values():
        if spec.fallback and spec.fallback != END and spec.fallback not in known:
            problem(
                ("steps", spec.name, "fallback"),
                f"step {spec.name!r} falls back to {spec.fallback!r}, which is not a step"
                f"{did_you_mean(spec.fallback, known)}",
                kind="fallback_unknown",
                step=spec.name,
                dst=spec.fallback,
            )
        on_reject = spec.approval.on_reject if spec.approval else None
        if on_reject and on_reject not in known:
            problem(
                ("steps", spec.name, "approval", "on_reject"),
                f"step {spec.name!r} routes rejections to {on_reject!r}, which is not a step"
                f"{did_you_mean(on_reject, known)}",
                kind="on_reject_unknown",
                step=spec.name,
                dst=on_reject,
            )

    for where, message, what in _check_options(steps, inputs, words):
        problem(where, message, **what)

    links = [(src, dst) for src, targets in edges.items() for dst in targets]
    links += [(src, dst) for src, router in routers.items() for dst in router.targets]
    for spec in steps.values():
        links += [(spec.name, t) for t in (spec.fallback, spec.approval and spec.approval.on_reject) if t and t != END]
    succ: dict[str, set[str]] = {s: set() for s in known}
    # Reachability reads a misspelt name as the step its problem above suggests: the steps only it
    # leads to are that one mistake's consequence, and reported as unreachable they would bury it.
    meant: dict[str, set[str]] = {s: set() for s in known}
    for src, dst in links:
        if src in known and dst in known:
            succ[src].add(dst)
        meant_src, meant_dst = (name if name in known else closest(name, known) for name in (src, dst))
        if meant_src is not None and meant_dst is not None:
            meant[meant_src].add(meant_dst)

    reachable: set[str] = set()
    if entry in known:
        reachable = _reach(entry, succ)
        # Nothing removes a step: in a notebook, one renamed in a cell is left behind, the entry if
        # it was the first; what removes it is running the cell that makes the workflow again.
        cells = any(_in_notebook_cell(spec.fn) for spec in steps.values())
        again = (
            "; in a notebook, a step renamed or deleted in a cell stays in the workflow until the cell "
            "that makes the Workflow (wf.Workflow(...)) runs again"
            if cells
            else ""
        )
        for step in sorted(known - _reach(entry, meant)):
            problem(
                ("steps", step),
                f"step {step!r} is unreachable from the entry {entry!r}: {words.connect(step, entry)}, "
                f"or remove it{again}",
                kind="unreachable",
                step=step,
                entry=entry,
            )

    # A bounded loop none of whose steps can lead out of it (no route or edge out, no end, no
    # fallback outside): the bound only decides when every run fails there. (An unbounded one is
    # told to take a bound first, below, as it always was; then this.)
    unbounded = {s for s in known if steps[s].max_visits is None}
    for comp in _cycles(known, succ):
        members = set(comp)
        if _cycles(members & unbounded, succ):
            continue
        ends = any(
            END in (*edges.get(m, ()), steps[m].fallback)
            or (m in routers and END in {r.target for r in routers[m].routes} | {routers[m].default.target})
            # No edge or route of its own: its success ends the branch (it is in the loop through a
            # gate's on_reject or a fallback, taken only when it is rejected or fails).
            or (m not in routers and not edges.get(m))
            for m in members
        )
        if ends or any(succ[m] - members for m in members):
            continue
        steps_around = _loop_through(comp[0], members, succ)
        last, back = steps_around[-2], steps_around[-1]
        how = f"in place of the edge {last!r} -> {back!r}, " if back in edges.get(last, ()) else ""
        problem(
            ("steps", comp[0]),
            f"loop {' -> '.join(steps_around)} has no way out: each of its steps leads only back into it, so "
            f"every run that enters it fails at a visit bound; let a step leave it, e.g. {how}"
            f"{words.exit_route(last, back)}, or give one of its steps a {words.fallback()} outside it",
            kind="loop_closed",
            loop=steps_around,
        )
    for comp in _cycles(unbounded, succ):
        steps_around = _loop_through(comp[0], set(comp), succ)
        loop = " -> ".join(steps_around)
        problem(
            ("steps", comp[0], "max_visits"),
            f"loop {loop} has no visit bound: set max_visits on one of its steps, "
            f"e.g. {words.bound(comp[0])}, so it cannot spin forever",
            kind="loop_unbounded",
            loop=steps_around,
        )

    static_preds: dict[str, set[str]] = {s: set() for s in known}
    for src, targets in edges.items():
        for dst in targets:
            if dst in static_preds and src in known:
                static_preds[dst].add(src)
    pred_map: dict[str, set[str]] = {s: set() for s in known}
    for src, successors in succ.items():
        for dst in successors:
            pred_map[dst].add(src)

    join_blockers: dict[str, dict[str, frozenset[str]]] = {}
    for join, preds in static_preds.items():
        if len(preds) < 2:
            continue
        join_blockers[join] = {}
        for pred in sorted(preds):
            # Steps from which `pred` can be reached without passing through the join.
            blockers = _reach(pred, pred_map, avoid=join)
            join_blockers[join][pred] = frozenset(blockers)
            if pred in reachable and entry not in blockers:
                problem(
                    ("edges", pred, list(edges[pred]).index(join)),
                    f"join {join!r} waits for {pred!r}, but {pred!r} only runs after {join!r}, "
                    f"so the join can never see it: remove the edge {pred!r} -> {join!r}, or make "
                    f"it a route ({words.route_instead(pred, join)}) if it loops back",
                    kind="join_never_fires",
                    join=join,
                    pred=pred,
                )

    if problems:
        raise WorkflowDefinitionError(name, problems, locations, facts)

    assert entry is not None
    description = {
        "name": name,
        "entry": entry,
        "steps": [steps[s].describe() for s in sorted(steps)],
        "edges": {s: sorted(t) for s, t in sorted(edges.items())},
        "routes": {
            s: {
                "routes": [[r.condition.to_dict(), r.target, r.go.tools] for r in rt.routes],
                "default": [rt.default.target, rt.default.tools],
            }
            for s, rt in sorted(routers.items())
        },
        "merge": sorted(merge_fields),
        **({} if inputs is None else {"inputs": inputs}),
    }
    blob = json.dumps(description, sort_keys=True, default=repr).encode()
    description = json.loads(blob)  # as it will read back from the store: tuples become lists
    return Graph(
        name=name,
        entry=entry,
        steps=dict(steps),
        edges={s: tuple(t) for s, t in edges.items()},
        routers=dict(routers),
        static_preds={s: frozenset(p) for s, p in static_preds.items()},
        join_blockers=join_blockers,
        fingerprint=hashlib.sha256(blob).hexdigest()[:16],
        description=description,
    )
