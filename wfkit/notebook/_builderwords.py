"""The visual builder's words for the kernel's problems with a flow: what its user sees and clicks.

The builder's checks are the ones a spec gets (:func:`wfkit.model._spec.load_parts`), and their
messages tell its author the fix in the spec's keys (``edges: (e.g. plan: [lookup])``,
``$.steps.lookup.retry.max_retries``). The builder's user draws the flow instead, so each problem
is worded here again from its facts (:data:`wfkit.model._errors.Facts`) and the spec being drawn,
naming the steps, connections, boxes and buttons of the builder. A problem with no words here
(inside a sub-workflow, which only its programmer can fix) keeps the kernel's message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wfkit.model._errors import Facts, Location
from wfkit.model._routes import END, written_number

_RETRY_BOXES = {"max_retries": "Retries", "base_delay": "First wait (s)", "max_delay": "Longest wait (s)"}
_STEP_BOXES = {"timeout": "Timeout per attempt (s)", "max_visits": "Visit bound"}
_ORDERING = ("gt", "ge", "lt", "le")
_DECIMAL_COMMA = re.compile(r"(\d+),(\d+)")


def _get(spec: Any, path: Location) -> Any:
    """The part of the spec at ``path``, or None where there is none."""
    for key in path:
        try:
            spec = spec[key]
        except (KeyError, IndexError, TypeError):
            return None
    return spec


def _shown(value: Any) -> str:
    return "empty" if value in ("", None) else repr(value)


def _where(spec: Mapping[str, Any], path: Location) -> str:
    """The thing at ``path`` as the builder shows it: a step's box, a route, a gate's condition."""
    if len(path) >= 4 and path[0] == "routes" and path[2] == "routes":
        go = _get(spec, (*path[:4], "go"))
        return f"the condition of the route {path[1]} → {'end' if go == END else go}"
    if len(path) >= 4 and path[0] == "steps" and path[2:4] == ("approval", "when"):
        return f"the gate condition of step {path[1]!r}"
    if len(path) >= 3 and path[0] == "steps" and path[2] == "retry" and path[-1] in _RETRY_BOXES:
        return f"{_RETRY_BOXES[str(path[-1])]} of step {path[1]!r}"
    if len(path) == 3 and path[0] == "steps" and path[2] in _STEP_BOXES:
        return f"{_STEP_BOXES[str(path[2])]} of step {path[1]!r}"
    if path[:1] == ("steps",) and path[2:4] == ("approval", "reason"):
        return f"the approval's Reason of step {path[1]!r}"
    return ""


def _schema(spec: Mapping[str, Any], path: Location, facts: Facts) -> str | None:
    """A value the spec's schema refuses, said of the box that holds it."""
    rule, limit, value = facts.get("rule"), facts.get("limit"), facts.get("value")
    if path == ("entry",):
        return "no step is the entry (where a run starts): click that step and tick 'entry step'"
    router = _get(spec, path) if path[:1] == ("routes",) and len(path) == 2 else None
    if rule == "required" and isinstance(router, Mapping) and "default" not in router:
        return (
            f"the routes out of {path[1]!r} have no default route, so a run where no condition holds would "
            f"have nowhere to go: click one of its connections and set its Kind to 'otherwise (default route)'"
        )
    if path[-2:] == ("approval", "payload") and isinstance(value, str):
        # Not a function's name ("customer: name"): fields, as the box takes them, are what was meant.
        fields = ", ".join(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", value)) or "customer, amount"
        return (
            f"the approval's Payload fields of step {path[1]!r} are {value!r}: type the state fields the "
            f"reviewer sees, separated by commas ({fields})"
        )
    where = _where(spec, path[:-1] if path[-1:] == ("field",) else path)
    if not where:
        return None
    if path[-1:] == ("field",) and rule == "minLength":
        return f"{where} tests no field: type the state field it tests in its field box"
    if path[-2:] == ("approval", "reason") and rule == "minLength":
        return f"{where} is empty: type why a human must say yes (the reviewer reads it)"
    if rule == "type":
        fix = {"integer": "type a whole number", "number": "type a number"}.get(str(limit), f"type a {limit}")
        comma = _DECIMAL_COMMA.fullmatch(value.strip()) if isinstance(value, str) else None
        if comma is not None and limit == "number":  # a decimal comma, as written in much of the world
            fix += f", with a dot for decimals ({comma[1]}.{comma[2]})"
    elif rule == "minimum":
        fix = f"type {limit} or more"
    elif rule == "exclusiveMinimum":
        fix = f"type a number above {limit}"
    elif rule == "minLength":
        fix = "type something in it"
    else:
        return None
    return f"{where} is {_shown(value)}: {fix}"


def _condition_value(spec: Mapping[str, Any], path: Location) -> str | None:
    """A comparison whose value box holds what its operator cannot use (shown under that box)."""
    condition = _get(spec, path[:-1])
    if not isinstance(condition, Mapping):
        return None
    field, op, value = condition.get("field"), condition.get("op"), condition.get("value")
    where = f"{_where(spec, path)} tests {field!r} with {op!r}"
    written = written_number(value) if op in _ORDERING and isinstance(value, str) else None
    if written is not None:
        said = f"{where}, and its value box holds the text {value!r}, which orders as text, not as a number"
        if written.number is None:
            return f"{said}: type the number it stands for in digits alone, without {written.letters!r}"
        return f"{said}: type the number alone, {written.number}"
    if op in _ORDERING:
        return f"{where}, and its value box is {_shown(value)}: type a value to compare with, such as 3"
    if op == "in":
        return f"{where}, which needs a list: type the values in the value box, separated by commas"
    if op == "exists":
        return f"{where}: type true (the field is there) or false (it is missing) in the value box"
    return None


def _function(facts: Facts, path: Location) -> str:
    ref, step = facts.get("ref"), facts.get("step")
    if path[-1:] == ("payload",):
        return (
            f"the approval of step {step!r} shows what {ref!r} returns, and that function cannot be found: "
            f"click {step!r} and list the payload fields instead"
        )
    missing = "cannot be imported" if ":" in str(ref) else "is not among the step functions on offer"
    return f"step {step!r} runs {ref!r}, which {missing}: click {step!r} and choose another Function, or Write stub"


def _words(spec: Mapping[str, Any], path: Location, facts: Facts) -> str | None:
    f = facts
    match f.get("kind"):
        case "no_steps":
            return "the flow has no steps yet: add one from the palette"
        case "no_entry":
            return "no step is the entry (where a run starts): click that step and tick 'entry step'"
        case "entry_unknown":
            return (
                f"the entry step {f['entry']!r} is not a step any more: click the step a run starts with and tick "
                f"'entry step'"
            )
        case "edge_source_unknown" | "route_source_unknown":
            return (
                f"connections leave {f['src']!r}, which is not a step any more: Undo its deletion, or add a step "
                f"{f['src']!r}"
            )
        case "edge_target_unknown":
            return (
                f"the connection {f['src']} → {f['dst']} leads to {f['dst']!r}, which is not a step: click it and "
                f"choose another step in 'Goes to', or delete it"
            )
        case "route_target_unknown":
            return (
                f"the route {f['src']} → {f['dst']} leads to {f['dst']!r}, which is not a step: click it and "
                f"choose another step (or end) in 'Goes to'"
            )
        case "edges_and_routes":
            return (
                f"step {f['step']!r} has plain connections and routes: a step follows all its plain connections "
                f"at once, or takes one route; click each plain connection out of {f['step']!r} and set its Kind "
                f"to a route"
            )
        case "fallback_unknown":
            return (
                f"step {f['step']!r} goes to {f['dst']!r} when it fails, which is not a step: click {f['step']!r} "
                f"and choose another in 'On failure go to'"
            )
        case "on_reject_unknown":
            return (
                f"step {f['step']!r} goes to {f['dst']!r} when rejected, which is not a step: click {f['step']!r} "
                f"and choose another in 'On reject go to'"
            )
        case "unreachable":
            return (
                f"step {f['step']!r} is never reached from the entry step {f['entry']!r}: drag from the dot under "
                f"a step to {f['step']!r} to connect them, or delete {f['step']!r}"
            )
        case "loop_unbounded":
            return (
                f"the loop {' → '.join(f['loop'])} has no visit bound, so a run could go round it forever: click "
                f"one of its steps and set its 'Visit bound'"
            )
        case "loop_closed":
            return (
                f"the loop {' → '.join(f['loop'])} has no way out, so every run that enters it goes round until its "
                f"visit bound and fails: drag from the dot under one of its steps to a step outside it (or set a "
                f"route of it to end), or set one step's 'On failure go to' a step outside it"
            )
        case "join_never_fires":
            return (
                f"{f['join']!r} waits for {f['pred']!r}, but {f['pred']!r} only runs after {f['join']!r}, so "
                f"{f['join']!r} would never start: click the connection {f['pred']} → {f['join']} and set its Kind "
                f"to 'otherwise (default route)', or delete it"
            )
        case "function_not_found":
            return _function(f, path)
        case "retry":
            return f"the retry settings of step {path[1]!r} cannot be used: {f['why']}"
        case "cache_on_side_effect":
            return (
                f"step {f['step']!r} is {f['why']} and its result is cached, so a cached result would skip it: "
                f"remove its cache in the spec file"
            )
        case "map_gated":
            return (
                f"step {f['step']!r} runs once per item of a list, and such a step cannot wait for an approval or "
                f"be irreversible: put the approval on a step before it"
            )
        case "map_over_unwritten":
            return (
                f"step {f['step']!r} runs once per item of {f['field']!r}, but no step says it writes "
                f"{f['field']!r}: add it to the writes of the step that makes the list, or to the flow's inputs, "
                f"in the spec file"
            )
        case "subflow_not_found":  # only the edit call can hand it over: its author gets a note
            return (
                f"step {f['step']!r} runs workflow {f['ref']!r}, which is not on offer in this builder: the note "
                f"printed by the cell that opened this builder says how to offer it, or delete {f['step']!r}"
            )
        case "schema":
            return _schema(spec, path, f)
        case "condition_value":
            return _condition_value(spec, path)
    return None


def builder_message(spec: Mapping[str, Any], path: Location, message: str, facts: Facts) -> str:
    """The kernel's problem at ``path`` as the builder says it: in its words, or as the kernel did."""
    return _words(spec, path, facts) or message
