"""A notebook's parameters: what its ``parameters`` cell declares, and the values a replay hands it.

papermill writes parameter *names* into a generated cell unescaped (values are escaped), so a
crafted name would run code in the kernel: only identifiers declared in the parameters cell pass.
Values come as papermill takes them: ``-f params.yaml``, then ``-y 'YAML'``, then ``-p NAME VALUE``,
each later source overriding an earlier one.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wfkit.replay._errors import ReplayError


@dataclass(frozen=True)
class Parameter:
    """One assignment in the parameters cell: its name, default (source text) and comment."""

    name: str
    default: str
    comment: str = ""


def _parameters_cell(notebook: Path) -> str | None:
    try:
        data = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReplayError(f"cannot read {notebook} as a notebook: {exc}") from exc
    for cell in data.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", [])
            return "".join(source) if isinstance(source, list) else str(source)
    return None


def notebook_parameters(notebook: Path) -> list[Parameter]:
    """The parameters cell's assignments in order, each with the comment written beside it (and
    on the comment-only lines right below it, which is how a long list of choices is written)."""
    source = _parameters_cell(notebook)
    if source is None:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ReplayError(f"the parameters cell of {notebook} is not valid Python: {exc}") from exc
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found: list[Parameter] = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        default = ast.get_source_segment(source, value) or ""
        end = node.end_lineno or node.lineno
        said = [comments[n] for n in range(node.lineno, end + 1) if n in comments]
        following = end + 1
        while following <= len(lines) and lines[following - 1].strip().startswith("#"):
            said.append(comments.get(following, ""))
            following += 1
        for target in targets:
            if isinstance(target, ast.Name):
                found.append(Parameter(target.id, default, " ".join(s for s in said if s)))
    return found


def declared_parameters(notebook: Path) -> dict[str, str]:
    """Names assigned in the notebook's ``parameters`` cell, with their default's source text."""
    return {p.name: p.default for p in notebook_parameters(notebook)}


def parse_value(text: str) -> Any:
    """A parameter value from the command line: JSON if it parses (numbers, true, null), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    import yaml  # papermill's own dependency: present wherever replay can run

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ReplayError(f"{where} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ReplayError(
            f"{where} must be a YAML mapping of parameter names to values (e.g. 'seed: 3'), got {type(loaded).__name__}"
        )
    return {str(k): v for k, v in loaded.items()}


def gather_parameters(
    *,
    file: Path | None = None,
    yaml_text: str | None = None,
    pairs: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Parameters as papermill gathers them: ``-f`` file, then ``-y`` YAML, then ``-p`` pairs. A
    ``wfkit_policy`` naming a decisions file in the current folder is made absolute, as the
    notebook runs in its own folder."""
    values: dict[str, Any] = {}
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ReplayError(f"cannot read the parameters file {file}: {exc.strerror or exc}") from exc
        values.update(_yaml_mapping(text, f"the parameters file {file}"))
    if yaml_text is not None:
        values.update(_yaml_mapping(yaml_text, "-y/--parameters-yaml"))
    for name, value in pairs or []:
        values[name] = parse_value(value)
    policy = values.get("wfkit_policy")
    if isinstance(policy, str) and not Path(policy).is_absolute() and Path(policy).is_file():
        # A decisions file named where the command was typed: the notebook runs in its own folder,
        # where the relative path would name nothing (or another file).
        values["wfkit_policy"] = str(Path(policy).resolve())
    return values


def check_parameters(notebook: Path, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Only identifiers declared in the parameters cell pass: papermill writes names into code
    unescaped, so a crafted name would run in the kernel."""
    bad = [n for n in parameters if not str(n).isidentifier() or keyword.iskeyword(n)]
    if bad:
        raise ReplayError(f"parameter names must be Python identifiers, got {', '.join(map(repr, bad))}")
    declared = declared_parameters(notebook)
    unknown = [n for n in parameters if n not in declared]
    if unknown:
        known = ", ".join(sorted(declared)) or "none (the notebook has no cell tagged 'parameters')"
        raise ReplayError(
            f"{notebook.name} does not declare parameter(s) {', '.join(map(repr, unknown))}; it declares: {known}"
        )
    return dict(parameters)


def describe_parameters(notebook: Path, shown_as: str) -> str:
    """``wfkit replay --list-parameters``: one line per parameter, default and comment aligned."""
    params = notebook_parameters(notebook)
    if not params:
        return f"{shown_as} declares no parameters (no code cell is tagged 'parameters')"
    width = max(len(p.name) for p in params)
    default_width = min(24, max(len(p.default) for p in params))
    lines = [f"{shown_as}: {len(params)} parameter{'' if len(params) == 1 else 's'}"]
    for p in params:
        comment = f"  # {p.comment}" if p.comment else ""
        lines.append(f"  {p.name:<{width}} = {p.default:<{default_width}}{comment}".rstrip())
    return "\n".join(lines)
