"""What a notebook's cells showed, reduced to the text that repeats under its seeds.

Per code cell: what it printed (``stdout``), what it wrote to ``stderr`` (warnings land there) and
the text of each result it displayed (``text/plain``: a DataFrame's table, a figure's size and
axes). A replay's kernel shows pandas tables whole, every row, column and character, and numpy
arrays whole, every element (:mod:`wfkit.replay._kernel`), so a value changed in the rows pandas
would cut, or the elements numpy would, is compared too. One of more than ``WHOLE_CELLS`` cells is
shown cut and followed by a digest of every cell, which is compared as a line like any other:
:func:`digested` lists them, for the report to say what was compared that way. A
cell is keyed by its id (nbformat 4.5), so a cell added above leaves the others' keys alone, else by
its place; it is labelled by its place in the notebook the user wrote (papermill's
injected-parameters cell is not theirs) and its first line of code.

A figure is compared by what it draws, never by its pixels (the same figure renders to other bytes
under another freetype or matplotlib, so a baseline recorded on a laptop would fail in CI): its text
(``<Figure size 640x480 with 1 Axes>``) is followed by the description the replay's kernel adds to it
(:func:`wfkit.replay._kernel.describe_figure`): per axes its title, labels, scales, legend and texts,
then what it holds, its limits and a digest of its data. A cell tagged ``wfkit-ignore-figure-data``
(a plot of wall-clock times) keeps the first part only. Rich formats beside the text (HTML,
Markdown) are not compared.

What differs on every run by construction is masked where it is read: the run ids and ticket ids of
the notebook's workspace (``<run N>``, ``<ticket>``, as in the runs' signals) and the folders its evals
saved their results in (``result.saved_to``: ``<eval SUITE result N>``), timings (a number with
a unit of time), timestamps, random and time-based UUIDs (``<uuid>``), memory addresses, the
kernel's file name for a cell (in a warning or a traceback) and the replay's own folders. A cell
whose output varies for a reason its author knows is tagged ``wfkit-ignore-output``; ``"mask":
["outputs"]`` in the notebook's metadata leaves every cell's output uncompared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wfkit.replay._kernel import DIGESTED, FIGURE_MIME, VALUES_MIME

IGNORE_TAG = "wfkit-ignore-output"
IGNORE_FIGURE_DATA_TAG = "wfkit-ignore-figure-data"
_INJECTED = "injected-parameters"
_NOISE = (
    # A UUID drawn at random or from the clock (versions 1, 4, 6, 7: uuid.uuid4(), uuid.uuid1()) differs
    # on every replay by construction; a name-based one (3, 5) is a function of its name, and compared.
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[1467][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b", re.IGNORECASE),
        "<uuid>",
    ),
    # 2026-12-02T14:55:42.123456+00:00, 2026-12-02 14:55, 14:55:42.123
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<timestamp>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(\.\d+)?"), "<time of day>"),
    (re.compile(r"\b0x[0-9a-fA-F]{6,}\b"), "<address>"),
    # A cell's code as the kernel names its file: ipykernel_4242/1234567.py in the temporary folder
    (re.compile(r"\S*ipykernel_\d+[/\\]\d+\.py"), "<cell file>"),
    # A timing: a number with a unit of time (12.3 ms, 0.5s, 3 seconds).
    (
        re.compile(r"(?<![\w.])\d+(\.\d+)?([eE][-+]?\d+)?\s?(ns|µs|us|ms|s|sec|secs|seconds|min|minutes)\b"),
        r"<duration \3>",
    ),
)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _unnoised(text: str, ids: Mapping[str, str], folders: Mapping[str, str]) -> str:
    for raw, label in (*ids.items(), *folders.items()):
        if raw:
            text = text.replace(raw, label)
    for pattern, label in _NOISE:
        text = pattern.sub(label, text)
    return text


def _labels_unnoised(values: Any, ids: Mapping[str, str], folders: Mapping[str, str]) -> Any:
    """A result's floats at full precision with its row and column labels masked as its text is (a
    table indexed by run id)."""
    if not isinstance(values, dict):
        return None

    def label(text: Any) -> Any:
        return _unnoised(text, ids, folders) if isinstance(text, str) else text

    if "rows" in values:
        rows = [label(r) for r in values.get("rows") or []]
        columns = [[label(c[0]), c[1]] for c in values.get("columns") or []]
        return {**values, "rows": rows, "columns": columns}
    return values


def _cells(path: Path) -> list[dict[str, Any]]:
    try:
        cells: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return []
    return cells


def cell_outputs(
    source: Path, executed: Path, *, ids: Mapping[str, str], folders: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Per code cell of ``source`` that showed something (in the order of the notebook): its place,
    first line and masked ``stdout``, ``stderr`` and ``results``; a tagged cell as ``ignored``.
    ``ids`` maps raw ids to their labels, ``folders`` paths that differ per replay to theirs."""
    ran = [c for c in _cells(executed) if _INJECTED not in c.get("metadata", {}).get("tags", [])]
    outputs: dict[str, dict[str, Any]] = {}
    for place, (mine, done) in enumerate(zip(_cells(source), ran, strict=False)):
        if mine.get("cell_type") != "code":
            continue
        code = _text(mine.get("source", "")).strip()
        record: dict[str, Any] = {"cell": place, "code": code.splitlines()[0] if code else ""}
        tags = mine.get("metadata", {}).get("tags", [])
        if IGNORE_TAG in tags:
            outputs[str(mine.get("id") or f"#{place}")] = {**record, "ignored": True}
            continue
        streams: dict[str, str] = {}
        results: list[str] = []
        values: list[Any] = []
        for out in done.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                name = str(out.get("name", "stdout"))
                streams[name] = streams.get(name, "") + _unnoised(_text(out.get("text", "")), ids, folders)
            elif kind in ("execute_result", "display_data"):
                data = out.get("data") or {}
                plain = data.get("text/plain")
                if plain is not None:
                    figure = data.get(FIGURE_MIME) or {}
                    drawn = [
                        *figure.get("shape", []),
                        *([] if IGNORE_FIGURE_DATA_TAG in tags else figure.get("data", [])),
                    ]
                    results.append(_unnoised("\n".join([_text(plain), *drawn]), ids, folders))
                    values.append(_labels_unnoised(data.get(VALUES_MIME), ids, folders))
        record.update(streams)
        if results:
            record["results"] = results
        if any(v is not None for v in values):
            record["values"] = values
        if streams or results:
            outputs[str(mine.get("id") or f"#{place}")] = record
    return outputs


def digested(outputs: Mapping[str, Any]) -> list[str]:
    """What a replay compared by its digest, in the order shown: ``cell 5 (import pandas as pd)
    result 1: a table of 10,000,000 rows x 3 columns``."""
    found: list[str] = []
    for cell in outputs.values():
        parts = [(name, cell.get(name)) for name in ("stdout", "stderr")]
        parts += [(f"result {n}", text) for n, text in enumerate(cell.get("results") or [], 1)]
        for name, text in parts:
            found.extend(
                f"cell {cell.get('cell')} ({cell.get('code')}) {name}: {m['what']}"
                for m in DIGESTED.finditer(text or "")
            )
    return found
