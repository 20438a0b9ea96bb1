"""ruff and mypy (strict) are part of the test command, so CI runs them too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return path


LINTED = ("wfkit", "tests", "benchmarks", "notebooks")  # notebooks: their code cells, as ruff reads .ipynb


def test_ruff_is_clean() -> None:
    """ruff finds nothing in the package, tests, benchmarks and notebooks."""
    out = subprocess.run([_tool("ruff"), "check", *LINTED], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_leaves_everything_as_it_is() -> None:
    """`ruff format` would change nothing in the package, tests, benchmarks and notebooks."""
    out = subprocess.run([_tool("ruff"), "format", "--check", *LINTED], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow  # mypy over the package: about 25 s
def test_mypy_strict_is_clean() -> None:
    """mypy --strict passes on the package."""
    out = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# What a user's own code writes with the public API (the README's forms), checked by mypy --strict:
# a form the API supports must type-check in the user's code too, and keep the user's types.
_USER_CODE = """
from collections.abc import Awaitable, Callable
from typing import Any

import wfkit as wf

flow = wf.Workflow("typed", inputs=["docs"])


@flow.step
def classify(state: Any) -> dict[str, Any]:
    return {"kind": "refund"}


@flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=1.0), timeout=30, fallback="answer")
async def lookup(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
    return {}


async def answer(state: Any) -> dict[str, Any]:
    return {"answer": "yes"}


async def summarise(doc: Any) -> str:
    return str(doc)


registered: Callable[[Any], Awaitable[dict[str, Any]]] = flow.step(answer, name="answer", timeout=1.0)
mapped: Callable[[Any], Awaitable[str]] = flow.map(
    summarise, over="docs", into="out", max_concurrency=4, name="each"
)
rows: list[dict[str, object]] = [{"id": "a", "docs": [1], "expected": {"kind": "refund"}}]
suite = wf.evals.Suite(name="s", dataset=rows, workflow=flow, scorers=[wf.evals.exact_match("kind")])
model: wf.llm.SimulatedModel = wf.llm.SimulatedModel(p50=0.01, p99=0.05, seed=1)
client: wf.llm.ChatClient = wf.llm.ChatClient(transport=model)
"""


@pytest.mark.slow  # a mypy run: about 6 s
def test_the_public_api_type_checks_in_user_code_as_the_readme_uses_it(tmp_path: Path) -> None:
    """`flow.step(fn, name=...)`, `flow.map(fn, over=..., ...)`, `wf.evals.Suite` with a list of
    dicts and the lazily loaded `wf.llm` / `wf.evals` namespaces pass mypy --strict."""
    code = tmp_path / "user_flow.py"
    code.write_text(_USER_CODE)
    out = subprocess.run(
        [_tool("mypy"), "--strict", "--no-incremental", "--follow-imports=silent", str(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _text_calls_without_encoding(source: str) -> list[tuple[int, str]]:
    """Calls that read or write text (``read_text``, ``write_text``, ``open`` in a text mode)
    without naming an ``encoding``: the machine's locale would decide it (cp1252 on Windows)."""
    import ast

    def modes(node: ast.expr) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.IfExp):  # open("wb" if fresh else "ab")
            return modes(node.body) + modes(node.orelse)
        return []

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name not in ("read_text", "write_text", "open") or any(k.arg == "encoding" for k in node.keywords):
            continue
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "os":
            continue  # os.open: a file descriptor, no text
        given = [m for arg in node.args for m in modes(arg)]
        given += [m for k in node.keywords if k.arg == "mode" for m in modes(k.value)]
        if given and all("b" in mode for mode in given):
            continue  # bytes
        found.append((node.lineno, ast.unparse(node)[:100]))
    return found


def test_every_text_file_wfkit_reads_or_writes_names_its_encoding() -> None:
    """Notebooks, baselines, datasets, decisions files and reports are UTF-8 wherever they are read:
    a read or write that leaves the encoding to the machine's locale mangles them on Windows
    (cp1252), where the HTML report said utf-8 in its header and was written in cp1252."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: {call}"
        for path in sorted((ROOT / "wfkit").rglob("*.py"))
        for line, call in _text_calls_without_encoding(path.read_text(encoding="utf-8"))
    ]
    assert [] == found


def test_the_encoding_check_finds_what_it_should() -> None:
    """The check above flags text reads and writes left to the locale, and only those."""
    source = (
        "p.read_text()\np.write_text(s)\nopen(f)\np.open('w')\np.open('wb' if x else 'a')\n"
        "p.read_text(encoding='utf-8')\nopen(f, 'rb')\np.open('wb' if x else 'ab')\nos.open(f, 0)\n"
    )
    assert [1, 2, 3, 4, 5] == [line for line, _ in _text_calls_without_encoding(source)]
