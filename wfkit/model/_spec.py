"""Flows as data: a workflow's definition as a plain spec (YAML or JSON on disk) and back.

The spec names every part of a workflow: steps (their functions by import path ``module:function``,
or by a bare name the caller maps to a function), edges, routes with their structured conditions,
bound tools and defaults, fallbacks, retry policies, timeouts, approvals, irreversible marks, visit
bounds, maps over lists, step caches, declared writes and inputs, and merge rules. ``metadata``
carries what does not change behaviour (the builder's layout).

Files are written with a fixed key order and with every leaf that belongs together on one line
(a route, a retry policy, a tool list, a condition), so a change to one route is a one-line diff.

Loading checks the spec against the JSON Schema shipped beside this module (``flow.schema.json``),
then resolves functions and options, then compiles the graph with the same validation as code
(:func:`wfkit.model._graph.compile_graph`); every problem of all three stages is reported at once, each
with its JSON path. A spec names code to run: load only specs you would trust as code.

A sub-workflow step holds ``workflow: {ref, inputs, outputs}`` in place of ``fn``: the child
workflow by import path (or by a name the caller maps), and its fields' mappings.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from wfkit._version import __version__
from wfkit.model._approvals import Approval
from wfkit.model._errors import Facts, FlowSpecError, Location, WorkflowDefinitionError
from wfkit.model._graph import compile_graph
from wfkit.model._merge import Merge, check_merges
from wfkit.model._retry import ATTEMPT_WORDS, NO_RETRY, RETRY_WORDS, RetryPolicy, retry_field_value
from wfkit.model._routes import END, FLOW_SPEC_MODULE, All, Any_, Compare, Condition, Go, Not, Route, Router
from wfkit.model._seconds import seconds_in_text
from wfkit.model._steps import (
    Cache,
    StepFunction,
    StepSpec,
    Subflow,
    make_map,
    make_spec,
    make_subflow,
    subflow_body,
)
from wfkit.model._suggest import did_you_mean
from wfkit.model._wording import SPEC

FORMAT = 1
"""The spec format this version writes and reads (the ``wfkit_flow`` key)."""

RESERVED_STEP_KEYS: tuple[str, ...] = ()
"""Step keys kept for features this version does not load (none at present)."""

_RETRY_DEFAULTS = RetryPolicy()
Format = Literal["yaml", "json"]


# ---- functions by reference ------------------------------------------------------------------


def function_ref(fn: Callable[..., Any]) -> str:
    """``module:qualname`` when importing it gives back this very object, else its bare name.

    wfkit's own functions are written through the public namespace (``wfkit:append``), so a spec
    does not depend on where inside the package they live.
    """
    name = getattr(fn, "__name__", None)
    wfkit = sys.modules.get("wfkit")
    if wfkit is not None and name and getattr(wfkit, name, None) is fn:
        return f"wfkit:{name}"
    module_name, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if module_name and qualname and module_name != "__main__" and "<" not in qualname:
        target: Any = sys.modules.get(module_name)
        for part in qualname.split("."):
            target = getattr(target, part, None)
        if target is fn:
            return f"{module_name}:{qualname}"
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise TypeError(f"{fn!r} has no name, so a spec cannot refer to it: use a def function")
    return name


def _import_ref(ref: str) -> Any:
    module_name, _, qualname = ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def as_namespace(
    functions: ModuleType | Mapping[str, Any] | Iterable[Callable[..., Any]] | None,
) -> dict[str, Any]:
    """The caller's functions by name: a module's public callables and workflows (as ``wfkit run
    --steps MODULE`` and ``wf.edit(steps=module)`` take them; a sub-workflow step's ``ref`` names a
    workflow), a mapping as given, or a list of functions by ``__name__``."""
    if functions is None:
        return {}
    if isinstance(functions, ModuleType):
        return {k: v for k, v in vars(functions).items() if (callable(v) or _is_workflow(v)) and not k.startswith("_")}
    if isinstance(functions, Mapping):
        return dict(functions)
    out: dict[str, Any] = {}
    listed: Iterable[Any] = functions  # mypy keeps the module in the union past isinstance
    for fn in listed:
        if not callable(fn) or not getattr(fn, "__name__", None):
            raise TypeError(
                f"steps= takes a module, a mapping of names to functions or a list of functions, got {fn!r}"
            )
        out[fn.__name__] = fn
    return out


def _is_workflow(value: Any) -> bool:
    """Whether ``value`` is a workflow (what a sub-workflow step runs), told by what it can do."""
    return not isinstance(value, type) and all(callable(getattr(value, attr, None)) for attr in ("validate", "_ref"))


def _resolve(ref: str, namespace: Mapping[str, Any], what: str) -> tuple[Any, str | None]:
    """(the callable, None) or (None, why it cannot be found and how to fix it)."""
    if ":" in ref:
        try:
            target = _import_ref(ref)
        except (ImportError, AttributeError) as exc:
            return None, f"cannot import {ref!r}, {what} ({exc}); check the module path and function name"
    else:
        if ref not in namespace:
            hint = did_you_mean(ref, namespace)
            return None, (
                f"{ref!r}, {what}, is not among the functions passed in steps={hint}; pass it "
                f"(Workflow.from_spec(spec, steps={{{ref!r}: {ref}}}); to wfkit validate, run or graph: "
                f"--steps MODULE, the module defining it) or write it as 'module:{ref}'"
            )
        target = namespace[ref]
    if not callable(target):
        return None, f"{ref!r}, {what}, is {type(target).__name__}, not a function"
    return target, None


# ---- workflow -> spec ------------------------------------------------------------------------


class _Line(dict[str, Any]):
    """A mapping written on one line (flow style), so a change to it is a one-line diff."""


class _LineList(list[Any]):
    """A list written on one line."""


def _line(value: Any) -> Any:
    """Mark ``value`` and everything inside it as written on one line."""
    if isinstance(value, Mapping):
        return _Line({k: _line(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return _LineList(_line(v) for v in value)
    return value


def _json_value(value: Any, where: str) -> Any:
    """A condition or payload value as JSON data; refuse what a file cannot hold as it is."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v, where) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, where) for k, v in value.items()}
    raise ValueError(
        f"{where}: the value {value!r} ({type(value).__name__}) cannot be written to a spec; "
        f"use JSON values (null, true/false, numbers, strings, lists, objects with string keys)"
    )


def _condition(condition: Condition, where: str) -> dict[str, Any]:
    data = condition.to_dict()
    return _json_value(data, where)  # type: ignore[no-any-return]


def _retry(policy: RetryPolicy) -> dict[str, Any]:
    # The retry count is always written: `retry: {}` read as no retries to a reviewer, and the
    # builder showed its Retries box blank for a flow retrying 3 times.
    return {
        f.name: getattr(policy, f.name)
        for f in fields(RetryPolicy)
        if f.name == "max_retries" or getattr(policy, f.name) != getattr(_RETRY_DEFAULTS, f.name)
    }


def _step(spec: StepSpec) -> dict[str, Any]:
    where = f"step {spec.name!r}"
    out: dict[str, Any]
    if spec.subflow is not None:  # the child by reference; its function only stands in for it
        sub = spec.subflow
        ref = sub.ref or sub.workflow.name  # a bare name: the caller hands the workflow in steps=
        out = {"workflow": _line({"ref": ref, "inputs": _line(dict(sub.inputs)), "outputs": _line(dict(sub.outputs))})}
    else:
        out = {"fn": function_ref(spec.fn)}
    if spec.retry != NO_RETRY:
        out["retry"] = _line(_retry(spec.retry))
    if spec.timeout is not None:
        out["timeout"] = spec.timeout
    if spec.max_visits is not None:
        out["max_visits"] = spec.max_visits
    if spec.fallback is not None:
        out["fallback"] = spec.fallback
    if spec.classifier is not None:
        out["classify"] = function_ref(spec.classifier)
    if spec.tools:
        out["tools"] = _line(list(spec.tools))
    if spec.approval is not None:
        a = spec.approval
        approval: dict[str, Any] = {"reason": a.reason}
        if a.payload is not None:
            approval["payload"] = function_ref(a.payload) if callable(a.payload) else _line(list(a.payload))
        if a.when is not None:
            approval["when"] = _line(_condition(a.when, f"{where}: approval condition"))
        if a.on_reject is not None:
            approval["on_reject"] = a.on_reject
        out["approval"] = approval
    if spec.irreversible:
        out["irreversible"] = True
    if spec.map is not None:
        mapping: dict[str, Any] = {"over": spec.map.over, "into": spec.map.into}
        if spec.map.max_concurrency is not None:
            mapping["max_concurrency"] = spec.map.max_concurrency
        out["map"] = _line(mapping)
    if spec.cache is not None:
        cache: dict[str, Any] = {}
        if spec.cache.ttl_seconds is not None:
            cache["ttl"] = spec.cache.ttl_seconds
        if spec.cache.key is not None:
            cache["key"] = function_ref(spec.cache.key)
        out["cache"] = _line(cache)
    if spec.writes is not None and spec.subflow is None:  # a sub-workflow's writes are its outputs
        out["writes"] = _line(sorted(spec.writes))
    return out


def _go(go: Go) -> dict[str, Any]:
    out: dict[str, Any] = {"go": go.target}
    if go.tools is not None:
        out["tools"] = list(go.tools)
    return out


@dataclass(frozen=True, slots=True)
class FlowParts:
    """Everything a Workflow is made of, as the engine holds it (what a spec describes)."""

    name: str
    entry: str | None
    steps: Mapping[str, StepSpec]
    edges: Mapping[str, list[str]]
    routers: Mapping[str, Router]
    merge: Mapping[str, Merge]
    version: str | None = None
    description: str = ""
    inputs: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] | None = None


def to_spec(parts: FlowParts) -> dict[str, Any]:
    """The workflow as plain data in the spec's key order (see the module docstring)."""
    spec: dict[str, Any] = {"wfkit_flow": FORMAT, "name": parts.name}
    if parts.version is not None:
        spec["version"] = parts.version
    if parts.description:
        spec["description"] = parts.description
    if parts.inputs is not None:
        spec["inputs"] = _line(list(parts.inputs))
    spec["entry"] = parts.entry
    spec["steps"] = {name: _step(step) for name, step in parts.steps.items()}
    if parts.edges:
        spec["edges"] = {src: _line(list(targets)) for src, targets in parts.edges.items()}
    if parts.routers:
        spec["routes"] = {
            src: {
                "routes": [
                    _line({"when": _condition(r.condition, f"route {src!r} -> {r.target!r}"), **_go(r.go)})
                    for r in router.routes
                ],
                "default": _line(_go(router.default)),
            }
            for src, router in parts.routers.items()
        }
    if parts.merge:
        spec["merge"] = {name: function_ref(fn) for name, fn in parts.merge.items()}
    if parts.metadata:
        spec["metadata"] = _metadata(parts.metadata)
    return spec


def _metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(metadata)
    layout = out.get("layout")
    if isinstance(layout, Mapping):
        # One line per step: moving a box changes one line, far below the logic.
        out["layout"] = {name: _line(list(xy)) for name, xy in layout.items()}
    return out


# ---- files -----------------------------------------------------------------------------------


def _yaml_dumper() -> Any:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def line_map(dumper: Any, data: _Line) -> Any:
        return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)

    def line_list(dumper: Any, data: _LineList) -> Any:
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)

    def block_map(dumper: Any, data: dict[str, Any]) -> Any:
        return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=False)

    Dumper.add_representer(_Line, line_map)
    Dumper.add_representer(_LineList, line_list)
    Dumper.add_representer(dict, block_map)
    # A string either YAML 1.1 or the reader below would take for something else is quoted: "1e3"
    # (a number to the reader) as "on" (a boolean to YAML 1.1) already is.
    for tag, regexp, first in _JSON_SCALARS:
        Dumper.add_implicit_resolver(tag, regexp, first)
    return Dumper


_JSON_SCALARS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL)?$"), "~nN"),
)
"""The plain scalars that are not strings, as YAML 1.2's core schema (JSON's types) has them: no
yes/no/on/off booleans, no 12:30 sexagesimals, no dates and no octal 010 as YAML 1.1 has."""


@cache
def _yaml_loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        """YAML read as JSON data: a spec means the same in YAML as in JSON."""

    Loader.yaml_implicit_resolvers = {}
    for tag, regexp, first in _JSON_SCALARS:
        Loader.add_implicit_resolver(tag, regexp, [*first, *([""] if tag.endswith(":null") else [])])
    Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])

    def decimal(loader: Any, node: Any) -> int:  # "010" is ten, as in JSON, not YAML 1.1's eight
        return int(loader.construct_scalar(node))

    Loader.add_constructor("tag:yaml.org,2002:int", decimal)
    return Loader


def _json_text(value: Any, indent: int = 0) -> str:
    """JSON with the same one-line leaves as the YAML."""
    pad = "  " * (indent + 1)
    if isinstance(value, _Line | _LineList) or not isinstance(value, dict | list) or not value:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)}: {_json_text(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    items = [f"{pad}{_json_text(v, indent + 1)}" for v in value]
    return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"


def _format_of(path: Path, format: Format | None) -> Format:
    if format is not None:
        return format
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ValueError(f"cannot tell the spec format of {path.name!r}: name it .yaml, .yml or .json, or pass format=")


def dumps(spec: Mapping[str, Any], format: Format = "yaml") -> str:
    """The spec as YAML or JSON text, keys in the spec's order, one-line leaves kept on one line."""
    if format == "json":
        return _json_text(spec) + "\n"
    import yaml

    text: str = yaml.dump(dict(spec), Dumper=_yaml_dumper(), sort_keys=False, width=1_000_000, allow_unicode=True)
    return text


_AFTER = re.compile(r"\s+#.*")


@dataclass
class _Comments:
    """The comments of a YAML spec, each kept at the key or item it is written at: the comment lines
    above it, the comment after it on its line, and those after the last key (at the file's end)."""

    above: dict[Location, list[str]] = dataclasses.field(default_factory=dict)
    after: dict[Location, str] = dataclasses.field(default_factory=dict)
    end: list[str] = dataclasses.field(default_factory=list)


def _comments(text: str) -> _Comments:
    """Where each comment of ``text`` is: by the JSON path of the outermost key or item starting on
    its line (a comment line: on the next line holding one). PyYAML drops comments, so they are
    found as the text after the last token of a line."""
    import yaml

    lines: dict[Location, int] = {}
    _read_yaml(text, "", lines)
    at_line: dict[int, Location] = {}
    for where, line in lines.items():
        if line not in at_line or len(where) < len(at_line[line]):
            at_line[line] = where
    ends: dict[int, int] = {}  # the column where the last token of each line (0-based) ends
    for token in yaml.scan(text, Loader=_yaml_loader()):
        start, stop = token.start_mark, token.end_mark
        if stop.index > start.index:  # BlockEnd and the like take no room and mark where the next token is
            ends[stop.line] = max(ends.get(stop.line, 0), stop.column)
    found, pending, last = _Comments(), list[str](), None
    for number, written in enumerate(text.splitlines()):
        key = at_line.get(number + 1, last)
        if number not in ends:
            if written.strip().startswith("#"):
                pending.append(written.strip())
            continue
        if pending and key is not None:
            found.above.setdefault(key, []).extend(pending)
            pending = []
        after = _AFTER.fullmatch(written[ends[number] :])
        if after is not None and key is not None:
            found.after[key] = after[0]
        last = key
    found.end = pending
    return found


def _keep_comments(text: str, old: str) -> str:
    """``text`` (a spec written anew) with the comments of ``old`` (the file it replaces) at the
    same keys; a comment of a key ``text`` no longer has goes with it."""
    import yaml

    try:
        comments = _comments(old)
    except (FlowSpecError, yaml.YAMLError):  # a file that is no spec has no keys to keep comments at
        return text
    lines: dict[Location, int] = {}
    _read_yaml(text, "", lines)
    above: dict[int, list[str]] = {}
    after: dict[int, str] = {}
    for where, said in comments.above.items():
        if where in lines:
            above[lines[where]] = said
    for where, tail in comments.after.items():
        if where in lines:
            after[lines[where]] = tail
    out: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip())]
        out.extend(f"{indent}{said}" for said in above.get(number, ()))
        out.append(line + after.get(number, ""))
    out.extend(comments.end)
    return "\n".join(out) + "\n"


def write(spec: Mapping[str, Any], path: str | Path, format: Format | None = None) -> Path:
    """Write a spec file (format from the suffix unless given); the write is atomic. Written over a
    YAML spec, the comments of the file it replaces are kept at their keys (a reviewer's note on a
    route stays through the builder's Save)."""
    target = Path(path)
    format = _format_of(target, format)
    text = dumps(spec, format)
    if format == "yaml" and target.is_file():
        old = target.read_text(encoding="utf-8")
        if "#" in old:
            text = _keep_comments(text, old)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target


def _lines_text(lines: list[int]) -> str:
    """``line 5``, ``lines 6 and 7``, ``lines 6, 7 and 9``."""
    shown = [str(line) for line in sorted(set(lines))]
    if len(shown) == 1:
        return f"line {shown[0]}"
    return f"lines {', '.join(shown[:-1])} and {shown[-1]}"


@dataclass(frozen=True, slots=True)
class SpecFile:
    """Where a spec was read from: the file's name, and (YAML) the line of each key and item."""

    name: str
    lines: Mapping[Location, int] = dataclasses.field(default_factory=dict)

    def line(self, location: Location) -> int | None:
        """The line of ``location``, or of the nearest part above it that is written in the file
        (None: no line is known, as in a JSON spec)."""
        for end in range(len(location), 0, -1):
            line = self.lines.get(tuple(location[:end]))
            if line is not None:
                return line
        return None

    def place(self, location: Location) -> str:
        """``flow.yaml line 13`` (see :meth:`line`), or just the name."""
        line = self.line(location)
        return self.name if line is None else f"{self.name} line {line}"

    def locate(self, message: str, location: Location, at: Location | None = None) -> str:
        """``message`` (which starts with its JSON path) with the place put after the path: the
        line of ``at`` when given (an unknown key: the key's own line, not its mapping's)."""
        path = json_path(location)
        if not message.startswith(f"{path}: "):
            return message
        return f"{path} ({self.place(location if at is None else at)}){message[len(path) :]}"


def _read_json(text: str, name: str) -> Any:
    twice: dict[int, tuple[dict[str, Any], list[str]]] = {}

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) < len(pairs):  # json.loads would keep the last value without a word
            seen: set[str] = set()
            repeated = [key for key, _ in pairs if key in seen or seen.add(key)]  # type: ignore[func-returns-value]
            twice[id(out)] = (out, list(dict.fromkeys(repeated)))  # the object itself keeps its id taken
        return out

    try:
        data = json.loads(text, object_pairs_hook=keep_pairs)
    except json.JSONDecodeError as exc:
        raise FlowSpecError(name, [f"$: {name} is not valid JSON: {exc}"], [()]) from exc
    problems = _Problems()

    def walk(value: Any, where: Location) -> None:
        if isinstance(value, dict):
            for key in twice.get(id(value), (None, []))[1]:
                problems.add(
                    where, f"{json_path(where)}: the key {key!r} is written twice in one object ({name}): keep one"
                )
            for key, item in value.items():
                walk(item, (*where, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, (*where, i))

    walk(data, ())
    if problems.messages:
        raise FlowSpecError(name, problems.messages, problems.locations)
    return data


def _json_lines(text: str) -> dict[Location, int]:
    """The line of each key and list item of a JSON text that ``json`` has read (which reports no
    positions), as :func:`_read_yaml` finds them in YAML, so a problem names its line in a JSON spec
    too. Of a key written twice (refused before this runs), the first."""
    import bisect

    starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]  # offset of each line's start
    decoder = json.JSONDecoder()
    lines: dict[Location, int] = {}

    def line(at: int) -> int:
        return bisect.bisect_right(starts, at)

    def skip(at: int) -> int:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        return at

    def value(at: int, where: Location) -> int:
        """Walk the value starting at ``at`` (no blank before it); the offset after it."""
        if text[at] == "{":
            at = skip(at + 1)
            while text[at] != "}":
                key, end = decoder.raw_decode(text, at)  # the key: a JSON string
                lines.setdefault((*where, key), line(at))
                at = value(skip(skip(end) + 1), (*where, key))  # past the ':'
                at = skip(at)
                at = skip(at + 1) if text[at] == "," else at
            return at + 1
        if text[at] == "[":
            at, index = skip(at + 1), 0
            while text[at] != "]":
                lines[(*where, index)] = line(at)
                at = skip(value(at, (*where, index)))
                at = skip(at + 1) if text[at] == "," else at
                index += 1
            return at + 1
        return int(decoder.raw_decode(text, at)[1])

    try:
        value(skip(0), ())
    except (ValueError, IndexError):  # never: the text was read as JSON before; then lines unknown
        return {}
    return lines


def _read_yaml(text: str, name: str, lines: dict[Location, int] | None = None) -> Any:
    """The YAML document as data; ``lines`` receives the line of each key and sequence item."""
    import yaml

    lines = {} if lines is None else lines
    loader = _yaml_loader()(text)
    loader.name = name  # marks in syntax errors name the file, not "<unicode string>"
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise FlowSpecError(name, [f"$: {name} is not valid YAML: {exc}"], [()]) from exc
        problems = _Problems()

        def walk(node: Any, where: Location) -> None:
            # PyYAML keeps the last of a key written twice without a word: find them in the nodes.
            if isinstance(node, yaml.MappingNode):
                # A merge key (<<: *defaults) is meant to be overridden: neither it nor what it brings.
                pairs = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value != "<<"]
                written_at: dict[str, list[int]] = {}
                for key_node, _ in pairs:
                    written_at.setdefault(key_node.value, []).append(key_node.start_mark.line + 1)
                for key, at in written_at.items():
                    if len(at) > 1:
                        problems.add(
                            where,
                            f"{json_path(where)}: the key {key!r} is written twice in one mapping "
                            f"({name} {_lines_text(at)}): keep one",
                        )
                for key_node, value_node in pairs:
                    lines.setdefault((*where, key_node.value), key_node.start_mark.line + 1)
                    walk(value_node, (*where, key_node.value))
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    lines[(*where, i)] = item.start_mark.line + 1
                    walk(item, (*where, i))

        if node is not None:
            walk(node, ())
        if problems.messages:
            raise FlowSpecError(name, problems.messages, problems.locations)
        try:
            return None if node is None else loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise FlowSpecError(name, [f"$: {name} is not valid YAML: {exc}"], [()]) from exc
    finally:
        loader.dispose()


def read(path: str | Path) -> dict[str, Any]:
    """Read a spec file as plain data (not checked yet: :func:`load_parts` does that). A key
    written twice in one mapping is refused here, where the file still shows it."""
    return read_file(path)[0]


def _no_spec_at(path: Path) -> FileNotFoundError:
    """No file at ``path``: say so naming the spec files beside it (a typo, a file renamed), not
    only errno's "No such file or directory"."""
    from wfkit.model._suggest import files_beside

    if path.is_dir():
        return FileNotFoundError(f"{path} is a folder: give the flow spec file in it (.yaml, .yml or .json)")
    there = files_beside(path, (".yaml", ".yml", ".json"), kind="flow spec (.yaml, .yml or .json)")
    return FileNotFoundError(f"no flow spec at {path}{there}")


def read_file(path: str | Path) -> tuple[dict[str, Any], SpecFile]:
    """:func:`read`, and where each part of the spec is in the file (for :func:`load_parts`)."""
    source = Path(path)
    if not source.is_file():
        raise _no_spec_at(source)
    text = source.read_text(encoding="utf-8")
    lines: dict[Location, int] = {}
    is_json = _format_of(source, None) == "json"
    data = _read_json(text, source.name) if is_json else _read_yaml(text, source.name, lines)
    if is_json:
        lines = _json_lines(text)
    if not isinstance(data, dict):
        if data is None:  # nothing in the YAML but comments, or a JSON null
            said = f"{source.name} holds null" if is_json else f"{source.name} is empty"
        else:
            said = f"got {type(data).__name__}"
        raise FlowSpecError(
            source.name,
            [f"$: {said}: a flow spec is a mapping at the top (wfkit_flow: 1, name, steps, ...)"],
            [()],
        )
    return data, SpecFile(source.name, lines)


# ---- spec -> workflow ------------------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    """The published JSON Schema of the spec (``wfkit/model/flow.schema.json``)."""
    text = resources.files("wfkit.model").joinpath("flow.schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def json_path(location: Iterable[str | int]) -> str:
    """``("routes", "classify", "routes", 0)`` as ``$.routes.classify.routes[0]``."""
    out = "$"
    for key in location:
        if isinstance(key, int):
            out += f"[{key}]"
        elif key.isidentifier():
            out += f".{key}"
        else:
            out += f"[{json.dumps(key)}]"
    return out


class _Problems:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.locations: list[Location] = []
        self.facts: list[Facts] = []
        self.line_at: list[Location | None] = []  # where to take each problem's line from, if not its location

    def add(
        self, where: Location, message: str, facts: Facts | None = None, *, line_at: Location | None = None
    ) -> None:
        if (where, message) not in zip(self.locations, self.messages, strict=True):
            self.locations.append(where)
            self.messages.append(message)
            self.facts.append(facts or {})
            self.line_at.append(line_at)

    def inside(self, where: Location) -> bool:
        """Whether a problem was already reported at ``where`` or inside it (its value is not usable)."""
        return any(loc[: len(where)] == where for loc in self.locations)

    def above(self, where: Location) -> bool:
        """Whether a problem was already reported at ``where`` or at a part containing it (so a problem
        found later at ``where`` is a consequence of that one)."""
        return any(where[: len(loc)] == loc for loc in self.locations if loc)


def _closest(error: Any) -> Any:
    """For a value that fits none of a oneOf's shapes: the deepest complaint of the first shape
    whose required keys it has (``op: equals`` in a comparison), else the error itself. A complaint
    that is itself a oneOf's (a condition inside ``all``) is looked into the same way."""
    branches: dict[Any, list[Any]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    for subs in branches.values():
        if not any(sub.validator == "required" for sub in subs):
            deepest = max(subs, key=lambda sub: len(sub.absolute_path))
            return _closest(deepest) if deepest.validator == "oneOf" else deepest
    return error


_GROUP_WORDS = {"and": "all", "or": "any"}
"""How a condition's groups are often misnamed, and their names."""


def _no_shape(error: Any) -> str:
    """A mapping that fits none of a oneOf's shapes: its keys no shape knows, then the shapes."""
    known = [key for shape in error.schema["oneOf"] for key in shape.get("properties", {})]
    unknown = sorted(key for key in error.instance if isinstance(key, str) and key not in known)
    hints = [
        f"{key!r}{f' (did you mean {_GROUP_WORDS[key]!r}?)' if key in _GROUP_WORDS else did_you_mean(key, known)}"
        for key in unknown
    ]
    said = f"unknown key {', '.join(hints)}; " if hints else ""
    return f"{said}it must be {error.schema.get('description') or 'one of the shapes in the schema'}"


def _retry_value(key: str, value: object) -> object:
    """A retry key's value as ``retry:`` takes it, in YAML (``max_attempts: 3`` is ``max_retries: 2``)."""
    return json.dumps(retry_field_value(key, value))


def _type_fix(key: object, value: object, wanted: object, described: str) -> str:
    """What to write for a value of the wrong type whose meaning is plain: a duration as text
    (``timeout: 5s``, in a key the schema describes in seconds), a retry policy given as its
    count (``retry: 3``)."""
    seconds = seconds_in_text(value) if "second" in described else None
    if seconds is not None:
        return f"; write {key}: {seconds} (seconds, a number)"
    if key == "retry" and wanted == "object" and type(value) is int and value >= 0:
        return f"; write retry: {{max_retries: {value}}}"
    return ""


def _missing_key(error: Any) -> str:
    """A required key left out: what it is for (its description in the schema), which says what to add."""
    # jsonschema reports each missing key apart, named only in its message.
    missing = next((key for key in error.validator_value if error.message.startswith(f"{key!r} ")), None)
    described = error.schema.get("properties", {}).get(missing, {}).get("description")
    return f"{missing!r} is missing: {described}" if described else str(error.message)


def _schema_problems(spec: Mapping[str, Any], problems: _Problems) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    for top in sorted(validator.iter_errors(spec), key=lambda e: [str(p) for p in e.absolute_path]):
        # A condition that fits none of its shapes: report the closest shape's complaint.
        error = _closest(top)
        where = tuple(error.absolute_path)
        if isinstance(error.instance, float) and not math.isfinite(error.instance):
            continue  # reported with what to write instead (a whole number field's "inf is no integer")
        line_at: Location | None = None
        message = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            allowed = list(error.schema.get("properties", {}))
            extra = sorted(key for key in set(error.instance) - set(allowed) if isinstance(key, str))
            if not extra:  # only keys that are not strings, reported as such
                continue
            hints = [f"{key!r}{did_you_mean(key, allowed)}" for key in extra]
            message = f"unknown key {', '.join(hints)}; allowed here: {', '.join(allowed)}"
            retrying = {key: error.instance[key] for key in extra if key in RETRY_WORDS} if "retry" in allowed else {}
            if retrying:  # a retry policy's keys written on the step itself
                policy = ", ".join(f"{RETRY_WORDS[key]}: {_retry_value(key, value)}" for key, value in retrying.items())
                counted = "".join(
                    f" ({key}: {value} counts the first attempt)"
                    for key, value in retrying.items()
                    if key in ATTEMPT_WORDS
                )
                belong = "belongs" if len(retrying) == 1 else "belong"
                said = ", ".join(map(repr, retrying))
                message += f"; {said} {belong} in its retry policy: write retry: {{{policy}}}{counted}"
            # The line a reader must go to is the misspelt key's, not its mapping's first line.
            line_at = (*where, extra[0])
        elif error.validator == "oneOf" and isinstance(error.instance, Mapping):
            message = _no_shape(error)
        elif error.validator == "required" and isinstance(error.instance, Mapping):
            message = _missing_key(error)
            steps = spec.get("steps")
            if not where and message.startswith("'entry' ") and isinstance(steps, Mapping) and steps:
                # In code the first step declared is the entry; a spec says which, and its first is the likely one.
                message += f"; add `entry: {next(iter(steps))}` (the first step) or the step it starts with"
            elif not where and message.startswith("'wfkit_flow' "):
                # "the spec format: 1" alone did not say it is a line to write, nor that 1 is its only value.
                message += "; add `wfkit_flow: 1` at the top of the spec (1 is the only format there is)"
        hint = error.schema.get("description") if isinstance(error.schema, Mapping) else None
        if hint and error.validator not in ("additionalProperties", "required", "oneOf"):
            message += f" ({hint})"
        if error.validator == "type" and where:
            message += _type_fix(where[-1], error.instance, error.validator_value, hint or "")
        facts = {"kind": "schema", "rule": error.validator, "limit": error.validator_value, "value": error.instance}
        problems.add(where, f"{json_path(where)}: {message}", facts, line_at=line_at)


def _key_problems(value: Any, where: Location, problems: _Problems) -> None:
    """Report every mapping key that is not a string (a YAML ``2:`` or ``null:``): JSON has none,
    and the schema does not see them."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _key_problems(item, (*where, key), problems)
            else:
                problems.add(
                    where,
                    f"{json_path(where)}: the key {key!r} is {type(key).__name__}, not a string; "
                    f"quote it ({json.dumps(key)!r})",
                    line_at=(*where, str(key)),  # the line of `2:` itself (YAML's text of the key), if found
                )
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _key_problems(item, (*where, i), problems)


def _non_finite_problems(value: Any, where: Location, problems: _Problems) -> None:
    """Report every infinity and NaN in the spec (YAML's ``.inf`` and ``.nan``; Python's ``json``
    reads ``Infinity`` and ``NaN``). JSON has none, so ``flow.save`` would write such a spec as no
    JSON reader reads it, and in a number field each does what no one means: a NaN passes every
    bound the schema sets (no comparison with it fails), an infinite timeout is a timer that
    never fires. Each is refused saying what to write for what it was likely meant to say."""
    if isinstance(value, float) and not math.isfinite(value):
        said = "NaN" if math.isnan(value) else "infinity" if value > 0 else "minus infinity"
        problems.add(
            where,
            f"{json_path(where)}: {said} is no number a flow spec can hold (JSON has none); "
            f"{_finite_fix(where, value)}",
            {"kind": "non_finite", "value": value},
        )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _non_finite_problems(item, (*where, key), problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _non_finite_problems(item, (*where, i), problems)


_FINITE_FIXES: dict[str, tuple[str, str]] = {
    # key: (what to write for infinity, and for anything else not finite)
    "timeout": (
        "leave 'timeout' out: a step without one has no time limit",
        "write the seconds one attempt may take, a number > 0",
    ),
    "max_elapsed": ("write null for no bound", "write the seconds after which no retry starts, or null for no bound"),
    "max_delay": ("write the longest wait you accept, in seconds (left out: 60)",) * 2,
    "base_delay": ("write the seconds before the first retry, e.g. 0.5",) * 2,
    "backoff_factor": ("write how much the wait grows per retry, a number >= 1, e.g. 2",) * 2,
    "jitter": ("write the random spread of the wait, a fraction in [0, 1], e.g. 0.1",) * 2,
    "max_retries": ("write a whole number of retries, e.g. 3",) * 2,
    "max_unknown_retries": ("write a whole number of retries, e.g. 1",) * 2,
    "max_visits": ("write how often a loop may come back here, a whole number >= 1, e.g. 5",) * 2,
    "max_concurrency": (
        "leave 'max_concurrency' out: all items run at once",
        "write how many items run at once, a whole number >= 1, or leave it out for all at once",
    ),
    "ttl": (
        "leave 'ttl' out: an entry then lives until `wfkit cache clear`",
        "write the seconds an entry lives, a number > 0, or leave 'ttl' out to keep it until `wfkit cache clear`",
    ),
}
"""What to write instead of a number field's infinity (what it was likely meant to say) or NaN."""


def _finite_fix(where: Location, value: float) -> str:
    """What to write instead of ``value`` (not finite) at ``where``."""
    if "when" in where:  # a condition's value, or an item of an 'in' list
        if math.isnan(value):
            return "nothing equals NaN and no comparison with it holds, so the condition never would: write the value"
        return "compare with a finite bound (e.g. 1e300), or leave out a condition that would always hold"
    if where[:2] == ("metadata", "layout"):
        return "a step's place in the builder is two finite numbers, [x, y]"
    key = where[-1] if where and isinstance(where[-1], str) else None
    if key in _FINITE_FIXES and where[0] == "steps":
        meant, other = _FINITE_FIXES[key]
        return meant if value == math.inf else other
    return "write a finite number"


def _string_keys(value: Mapping[Any, Any]) -> dict[str, Any]:
    """``value`` without the keys :func:`_key_problems` reported."""
    return {key: item for key, item in value.items() if isinstance(key, str)}


def _missing_step(state: Any) -> None:
    """Stands in for a step whose function could not be found, so the graph can still be checked."""
    raise RuntimeError("this step's function was not found when the spec was loaded")


def _step_from_spec(name: str, data: Mapping[str, Any], namespace: Mapping[str, Any], problems: _Problems) -> StepSpec:
    where: Location = ("steps", name)
    for key in RESERVED_STEP_KEYS:
        if key in data:
            problems.add(
                (*where, key),
                f"{json_path((*where, key))}: {key!r} is reserved for maps and sub-workflows, which this "
                f"version of wfkit does not load yet; remove it",
            )
    fn: StepFunction = _missing_step
    ref = data.get("fn", name)
    sub = _subflow_at(data.get("workflow"), (*where, "workflow"), namespace, problems) if "workflow" in data else None
    if "workflow" in data:
        if "fn" in data:
            problems.add(
                (*where, "fn"),
                f"{json_path((*where, 'fn'))}: a sub-workflow step runs its workflow, not a function; drop 'fn'",
            )
        ref = None
        fn = subflow_body
    if isinstance(ref, str):
        found, why = _resolve(ref, namespace, f"the function of step {name!r}")
        if why is not None:
            facts = {"kind": "function_not_found", "ref": ref, "step": name}
            problems.add((*where, "fn"), f"{json_path((*where, 'fn'))}: {why}", facts)
        else:
            fn = found
    options: dict[str, Any] = {}
    retry = data.get("retry")
    if isinstance(retry, Mapping) and not problems.inside((*where, "retry")):
        try:
            options["retry"] = RetryPolicy(**retry)
        except (TypeError, ValueError) as exc:
            facts = {"kind": "retry", "why": str(exc)}
            problems.add((*where, "retry"), f"{json_path((*where, 'retry'))}: {exc}", facts)
    for key in ("timeout", "max_visits", "fallback"):
        if key in data and not problems.inside((*where, key)):
            options[key] = data[key]
    tools = data.get("tools")
    if isinstance(tools, list):
        options["tools"] = tuple(tools)
    classify = data.get("classify")
    if isinstance(classify, str):
        found, why = _resolve(classify, namespace, "the error classifier")
        if why is not None:
            problems.add((*where, "classify"), f"{json_path((*where, 'classify'))}: {why}")
        else:
            options["classifier"] = found
    approval = data.get("approval")
    if isinstance(approval, Mapping) and isinstance(approval.get("reason"), str):
        options["approval"] = _approval(approval, (*where, "approval"), namespace, problems)
    if data.get("irreversible") is True:
        options["irreversible"] = True
    cache = data.get("cache")
    if isinstance(cache, Mapping) and not problems.inside((*where, "cache")):
        cache_key: Any = None
        if isinstance(cache.get("key"), str):
            cache_key, why = _resolve(cache["key"], namespace, "the cache key function")
            if why is not None:
                problems.add((*where, "cache", "key"), f"{json_path((*where, 'cache', 'key'))}: {why}")
        try:
            options["cache"] = Cache(ttl=cache.get("ttl"), key=cache_key)
        except (TypeError, ValueError) as exc:
            problems.add((*where, "cache"), f"{json_path((*where, 'cache'))}: {exc}")
    writes = data.get("writes")
    if isinstance(writes, list):
        options["writes"] = writes
    mapping = None
    raw_map = data.get("map")
    if isinstance(raw_map, Mapping) and not problems.inside((*where, "map")):  # the schema checked its keys
        try:
            mapping = make_map(raw_map["over"], raw_map["into"], raw_map.get("max_concurrency"))
        except (TypeError, ValueError) as exc:
            problems.add((*where, "map"), f"{json_path((*where, 'map'))}: {exc}")
    try:
        spec = make_spec(
            fn,
            name=name,
            retry=options.get("retry"),
            timeout=options.get("timeout"),
            max_visits=options.get("max_visits"),
            fallback=options.get("fallback"),
            classifier=options.get("classifier"),
            tools=options.get("tools", ()),
            approval=options.get("approval"),
            irreversible=options.get("irreversible", False),
            cache=options.get("cache"),
            writes=options.get("writes"),
            item=mapping is not None,
        )
        if sub is not None:
            spec = dataclasses.replace(spec, subflow=sub, writes=frozenset(p for p, _ in sub.outputs))
        return spec if mapping is None else dataclasses.replace(spec, map=mapping)
    except (TypeError, ValueError) as exc:
        problems.add(where, f"{json_path(where)}: {exc}")
        return make_spec(
            _missing_step,
            name=name,
            retry=None,
            timeout=None,
            max_visits=None,
            fallback=None,
            classifier=None,
            tools=(),
        )


def _subflow_at(data: Any, where: Location, namespace: Mapping[str, Any], problems: _Problems) -> Subflow | None:
    """A step's ``workflow: {ref, inputs, outputs}``: the child workflow found by its import path
    (``module:name``) or by name among steps=, with its mappings checked."""
    if not isinstance(data, Mapping) or problems.inside(where):  # the schema reported its shape
        return None
    ref = data["ref"]
    if ":" in ref:
        try:
            child: Any = _import_ref(ref)
        except (ImportError, AttributeError) as exc:
            problems.add((*where, "ref"), f"{json_path((*where, 'ref'))}: cannot import workflow {ref!r} ({exc})")
            return None
    elif ref in namespace:
        child = namespace[ref]
    else:
        problems.add(
            (*where, "ref"),
            f"{json_path((*where, 'ref'))}: workflow {ref!r} is not among steps="
            f"{did_you_mean(ref, [k for k, v in namespace.items() if _is_workflow(v)])}; pass it "
            f"(Workflow.from_spec(spec, steps={{{ref!r}: {ref}}}); to wfkit validate, run or graph: --steps MODULE, "
            f"the module defining it) or write it as 'module:{ref}'",
            {"kind": "subflow_not_found", "ref": ref, "step": where[1]},
        )
        return None
    if not _is_workflow(child):
        problems.add(
            (*where, "ref"), f"{json_path((*where, 'ref'))}: {ref!r} is {type(child).__name__}, not a Workflow"
        )
        return None
    try:
        sub = make_subflow(child, data.get("inputs"), data.get("outputs"))
    except (TypeError, ValueError) as exc:
        problems.add(where, f"{json_path(where)}: {exc}")
        return None
    return sub if ":" not in ref else dataclasses.replace(sub, ref=ref)


def _approval(data: Mapping[str, Any], where: Location, namespace: Mapping[str, Any], problems: _Problems) -> Approval:
    payload: Any = data.get("payload")
    if isinstance(payload, str) and not problems.inside((*where, "payload")):  # no function name: said once
        found, why = _resolve(payload, namespace, "the approval payload function")
        if why is not None:
            facts = {"kind": "function_not_found", "ref": payload, "step": where[1]}
            problems.add((*where, "payload"), f"{json_path((*where, 'payload'))}: {why}", facts)
        payload = found
    when = None
    if isinstance(data.get("when"), Mapping):
        when = _condition_at(data["when"], (*where, "when"), problems)
    on_reject = data.get("on_reject")
    return Approval(
        data["reason"],
        payload=tuple(payload) if isinstance(payload, list) else payload,
        when=when,
        on_reject=on_reject if isinstance(on_reject, str) else None,
    )


def _condition_at(data: Mapping[str, Any], where: Location, problems: _Problems) -> Condition:
    """The condition at ``where``, built part by part: a comparison the schema let through (its field
    and operator are sound) that cannot be built is reported at its value, which the builder marks."""
    if problems.inside(where):
        return _UNREADABLE
    for key, group in (("all", All), ("any", Any_)):
        if key in data:
            return group(tuple(_condition_at(part, (*where, key, i), problems) for i, part in enumerate(data[key])))
    if "not" in data:
        return Not(_condition_at(data["not"], (*where, "not"), problems))
    try:
        return Compare(data["field"], data["op"], data.get("value"))
    except (ValueError, TypeError) as exc:
        problems.add((*where, "value"), f"{json_path((*where, 'value'))}: {exc}", {"kind": "condition_value"})
    return _UNREADABLE


_UNREADABLE = Compare("__unreadable_condition__", "exists")
"""Never true: a route whose condition could not be built is kept for the graph check."""


def _go_at(data: Any) -> Go | None:
    if not isinstance(data, Mapping) or not isinstance(data.get("go"), str) or not data["go"]:
        return None
    tools = data.get("tools")
    return Go(data["go"], tuple(tools) if isinstance(tools, list) else None)


def _mapping(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``spec[key]`` if it is a mapping (else the schema has reported it), else empty; keys that
    are not strings left out (reported by :func:`_key_problems`)."""
    value = spec.get(key)
    return _string_keys(value) if isinstance(value, Mapping) else {}


def _other_format(number: Any) -> str | None:
    """Why a spec whose ``wfkit_flow`` is a format number other than this wfkit's cannot be read,
    and what to do; None for this format (and for what is no number: the schema reports that)."""
    if type(number) is not int or number == FORMAT:
        return None
    if number > FORMAT:
        return (
            f"$.wfkit_flow: this spec is written in format {number}, which a newer wfkit writes; "
            f"wfkit {__version__} reads format {FORMAT} only: upgrade wfkit to load it"
        )
    return f"$.wfkit_flow: there is no spec format {number}; this wfkit reads format {FORMAT}: write {FORMAT} there"


def load_parts(
    spec: Mapping[str, Any],
    functions: ModuleType | Mapping[str, Any] | Iterable[Callable[..., Any]] | None = None,
    source: SpecFile | None = None,
) -> FlowParts:
    """Check a spec and build a workflow's parts; raise FlowSpecError with every problem at once
    (read from a file, each names the file and the line after its JSON path)."""
    namespace = as_namespace(functions)
    problems = _Problems()
    if not isinstance(spec, Mapping):
        raise FlowSpecError("?", [f"$: a flow spec is a mapping, got {type(spec).__name__}"], [()])
    name = spec["name"] if isinstance(spec.get("name"), str) and spec["name"] else "?"
    other_format = _other_format(spec.get("wfkit_flow"))
    if other_format is not None:
        # Checked against this format's schema, the spec would get a complaint for every difference.
        message = source.locate(other_format, ("wfkit_flow",)) if source is not None else other_format
        raise FlowSpecError(name, [message], [("wfkit_flow",)])
    _key_problems(spec, (), problems)
    _non_finite_problems(spec, (), problems)
    _schema_problems(spec, problems)

    raw_steps = _mapping(spec, "steps")
    steps: dict[str, StepSpec] = {}
    for step_name, data in raw_steps.items():
        if isinstance(step_name, str) and isinstance(data, Mapping):
            steps[step_name] = _step_from_spec(step_name, data, namespace, problems)

    edges: dict[str, list[str]] = {}
    raw_edges = _mapping(spec, "edges")
    for src, targets in raw_edges.items():
        if isinstance(targets, list):
            edges[src] = [t for t in targets if isinstance(t, str)]

    routers: dict[str, Router] = {}
    raw_routes = _mapping(spec, "routes")
    for src, data in raw_routes.items():
        if not isinstance(data, Mapping):
            continue
        routes = []
        for i, item in enumerate(data.get("routes") or []):
            where: Location = ("routes", src, "routes", i)
            go = _go_at(item)
            if go is None or not isinstance(item.get("when"), Mapping):
                continue  # the schema reported it
            routes.append(Route(_condition_at(item["when"], (*where, "when"), problems), go))
        default = _go_at(data.get("default"))
        if default is not None or routes:
            # Without its default (reported by the schema) the routes still lead where they lead,
            # so the steps they reach are not reported as unreachable as well.
            # A warning about these routes points at their line in the file (see Router.declared_at).
            line = None if source is None else source.line(("routes", src))
            declared = None if source is None or line is None else (source.name, line, FLOW_SPEC_MODULE)
            routers[src] = Router(tuple(routes), default or Go(END), declared)

    merge: dict[str, Merge] = {}
    raw_merge = _mapping(spec, "merge")
    for field_name, ref in raw_merge.items():
        if isinstance(ref, str):
            found, why = _resolve(ref, namespace, f"the merge rule for {field_name!r}")
            if why is not None:
                problems.add(("merge", field_name), f"{json_path(('merge', field_name))}: {why}")
            else:
                merge[field_name] = found
    try:
        merge = check_merges(merge)
    except TypeError as exc:
        problems.add(("merge",), f"$.merge: {exc}")
        merge = {}

    entry = spec.get("entry") if isinstance(spec.get("entry"), str) else None
    raw_inputs = spec.get("inputs")
    inputs = tuple(i for i in raw_inputs if isinstance(i, str)) if isinstance(raw_inputs, list) else None
    if steps:
        try:
            compile_graph(name, steps, edges, routers, entry, merge, inputs, SPEC)
        except WorkflowDefinitionError as exc:
            for message, where, facts in zip(exc.problems, exc.locations, exc.facts, strict=True):
                if facts.get("kind") == "no_entry" and "entry" not in spec:
                    continue  # the schema said 'entry' is missing, in a spec's words (not flow.entry's)
                if not problems.above(where):
                    problems.add(where, f"{json_path(where)}: {message}", facts)
    if problems.messages:
        messages = problems.messages
        if source is not None:
            messages = [
                source.locate(m, where, at)
                for m, where, at in zip(messages, problems.locations, problems.line_at, strict=True)
            ]
        raise FlowSpecError(name, messages, problems.locations, problems.facts)
    version = spec.get("version")
    metadata = spec.get("metadata")
    return FlowParts(
        name=name,
        entry=entry,
        steps=steps,
        edges=edges,
        routers=routers,
        merge=merge,
        version=version if isinstance(version, str) else None,
        description=spec.get("description") or "",
        inputs=inputs,
        metadata=dict(metadata) if isinstance(metadata, Mapping) else None,
    )
