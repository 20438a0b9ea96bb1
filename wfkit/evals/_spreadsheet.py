"""A dataset exported from a spreadsheet (CSV, or TSV): one case per row, under a header row.

The columns mean what a flat JSONL row's keys mean: ``id`` is the case's id, every other column an
input of the run; as a cell cannot hold an object, ``expected.FIELD`` is one value of ``expected``.
A cell is the text it holds, exactly: "007", "NA", "null" and "" are never turned into a number
or a missing value. A column named ``NAME:json`` holds JSON instead (a number, true/false, a list,
an object), which is how a sheet gives a typed input or a structured expected value; its empty
cell means the case has no such value (``expected:json`` is the whole ``expected`` object).

A blank row (a sheet's cleared row) is no case. Lines are the file's, counted as the csv module
reads them (a cell's line breaks included), so they match the sheet's row numbers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_JSON = ":json"
_EXPECTED = "expected."
_SHOWN = 5  # problems named in one error; the rest are counted
_JSON_EXAMPLES = '40, true, "text", ["a", "b"] or {"k": 1}'


@dataclass(frozen=True)
class _Column:
    where: str  # "column C ('amount:json')", as an error names it
    key: str  # "id", an input's name, or "expected"
    field: str | None  # FIELD of expected.FIELD
    json: bool


def read_utf8(path: Path, *, fix: str) -> str:
    """A dataset file's text, UTF-8 with or without a byte order mark (Excel's "CSV UTF-8" and
    Notepad write one); another encoding is refused naming the line and byte, then ``fix``."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}): {fix}") from exc


def read_sheet(path: Path, *, delimiter: str) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The flat rows of a CSV (``delimiter=","``) or TSV file, and each row's place ("line 3")."""
    text = read_utf8(
        path, fix="save the sheet as 'CSV UTF-8' (Excel's other CSV formats write the computer's own encoding)"
    )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    columns: list[_Column] | None = None
    rows: list[Mapping[str, Any]] = []
    places: list[str] = []
    problems: list[str] = []
    header_line = read = 0
    try:
        for cells in reader:
            line, read = read + 1, reader.line_num  # a row starts on the line after the last one read
            if not any(cells):
                continue
            if columns is None:
                columns, header_line = _columns(path, line, cells, delimiter), line
                continue
            if len(cells) != len(columns):
                some = "1 cell" if len(cells) == 1 else f"{len(cells)} cells"
                problems.append(
                    f"line {line} has {some}, and the header (line {header_line}) names {len(columns)} columns: "
                    f"give every row one cell per column (a cell holding the separator or a line break is quoted)"
                )
                continue
            row, wrong = _row(cells, columns, line)
            rows.append(row)
            places.append(f"line {line}")
            problems += wrong
    except csv.Error as exc:
        raise ValueError(
            f"{path}, line {read + 1}: not CSV ({exc}): a cell holding a quote, the separator or a line break "
            f'is quoted whole, its quotes doubled ("say ""hi""")'
        ) from exc
    if problems:
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise ValueError(f"{path}: {'; '.join(problems[:_SHOWN])}{more}")
    return rows, places


def _columns(path: Path, line: int, names: list[str], delimiter: str) -> list[_Column]:
    """The header's columns, or an error naming every column that is wrong and how to fix it."""
    if len(names) == 1 and delimiter == "," and (";" in names[0] or "\t" in names[0]):
        separator = "';'" if ";" in names[0] else "tabs"
        raise ValueError(
            f"{path}, line {line}: the header is one column, {names[0]!r}, its names separated by {separator}, "
            f"not commas: save the sheet as comma-separated 'CSV UTF-8' (or, separated by tabs, name the file .tsv)"
        )
    columns, problems = [], []
    given: dict[tuple[str, str | None], tuple[str, str]] = {}  # what a column gives -> its letter, its name
    for number, name in enumerate(names):
        letter = _letter(number)
        where = f"column {letter} ({name!r})"
        base, colon, kind = name.rpartition(":") if ":" in name else (name, "", "")
        wrong = ""
        if not name:
            problems.append(
                f"line {line}, column {letter} has no name: name it (an input's name, 'id', or 'expected.FIELD'), "
                f"or delete the column if it holds nothing"
            )
            continue
        if name != name.strip() or not name.isprintable():
            wrong = "a space or an invisible character around the name, or in it, is part of it: remove it"
        elif colon and kind != "json":
            wrong = (
                f"':{kind}' is no column type: name it {base + _JSON!r} for cells of JSON "
                f"({_JSON_EXAMPLES}), or {base!r} for text"
            )
        elif base == "expected" and not colon:
            wrong = (
                "a cell is text, and 'expected' is an object of the values expected: give each value a column, "
                "'expected.FIELD' (e.g. 'expected.route'), or name this column 'expected:json' and write a JSON "
                'object in each cell (e.g. {"route": "refund"})'
            )
        elif base == "inputs" and not colon:
            wrong = (
                "a cell is text, and 'inputs' is an object of the run's inputs: give each input a column named "
                "after it, or name this column 'inputs:json' and write a JSON object in each cell"
            )
        elif base == _EXPECTED:
            wrong = "name the expected value after the dot, e.g. 'expected.route'"
        else:
            for exact in ("id", "expected", "inputs"):
                head = base.split(".", 1)[0] if exact == "expected" else base
                if head != exact and head.lower() == exact:
                    wrong = f"name it {exact + base[len(head) :] + colon + kind!r}: a column is named in lower case"
        if wrong:
            problems.append(f"line {line}, {where}: {wrong}")
            continue
        field = base[len(_EXPECTED) :] if base.startswith(_EXPECTED) else None
        column = _Column(where, "expected" if field is not None else base, field, bool(colon))
        target = (column.key, column.field)
        if target in given:
            letter_before, before = given[target]
            what = "the id" if column.key == "id" else "the input" if field is None else "the expected value"
            shown = repr(field if field is not None else "expected" if column.key == "expected" else base)
            if before == name:
                problems.append(f"line {line}: columns {letter_before} and {letter} are both named {name!r}: keep one")
            else:
                problems.append(
                    f"line {line}: columns {letter_before} ({before!r}) and {letter} ({name!r}) both give {what} "
                    f"{shown}: keep one"
                )
            continue
        given[target] = (letter, name)
        columns.append(column)
    whole = given.get(("expected", None))
    parts = [(letter, name) for (key, field), (letter, name) in given.items() if key == "expected" and field]
    if whole and parts:
        named = ", ".join(f"{letter} ({name!r})" for letter, name in parts)
        them = f"column {named} gives" if len(parts) == 1 else f"columns {named} give"
        problems.append(
            f"line {line}: column {whole[0]} ({whole[1]!r}) is the whole expected object, and {them} values of "
            f"it: use one or the other"
        )
    if problems:
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise ValueError(f"{path}: {'; '.join(problems[:_SHOWN])}{more}")
    return columns


def _row(cells: list[str], columns: list[_Column], line: int) -> tuple[dict[str, Any], list[str]]:
    """A flat row (as a JSONL line would give it), and what is wrong with its cells."""
    row: dict[str, Any] = {}
    problems = []
    for cell, column in zip(cells, columns, strict=True):
        value: Any = cell
        if column.json:
            if not cell:
                continue  # no JSON to read: the case has no such value
            try:
                value = json.loads(cell, parse_constant=_no_constant)
            except ValueError as exc:
                hint = " (JSON writes true and false in lower case)" if cell.lower() in ("true", "false") else ""
                problems.append(
                    f"line {line}, {column.where}: not JSON ({exc}){hint}: write a JSON value ({_JSON_EXAMPLES}; "
                    f"text in double quotes), leave the cell empty when the case has none, or drop ':json' from "
                    f"the column's name for text"
                )
                continue
        elif column.key == "id" and not cell:
            problems.append(
                f"line {line}, {column.where}: the case has no id: give every case an id, or delete the id "
                f"column (a case's id is then its number)"
            )
            continue
        if column.field is None:
            row[column.key] = value
        else:
            row.setdefault("expected", {})[column.field] = value
    return row, problems


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON number")


def _letter(number: int) -> str:
    """A column's letters as a spreadsheet shows them: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    number += 1
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters
