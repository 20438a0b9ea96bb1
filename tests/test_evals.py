"""Evals (wfkit.evals._evals and `wfkit eval`): datasets, suites, real evaluations in the test's workspace."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kernels import running_kernel
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import wfkit as wf
from wfkit.cli._cli import main
from wfkit.evals._scorers import Case
from wfkit.evals._stats import (
    _wilson,
    mean_diff_interval,
    mean_interval,
    net_win_interval,
    sign_test,
    wilson_interval,
)

ROOT = Path(__file__).resolve().parents[1]
QUERY_ROUTER = ROOT / "evals" / "query_router"
SUPPORT = ROOT / "evals" / "support_tickets"
COLUMNS = ["suite", "variant", "case_id", "scorer", "value", "passed", "detail", "run_id", "run_status"]
SUMMARY_COLUMNS = ["cases", "unscored", "mean", "ci_low", "ci_high", "pass_rate", "pass_low", "pass_high"]
SUMMARY_COLUMNS += ["failed_runs"]  # appended later, as new columns are


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write one JSON value per line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def doubler() -> wf.Workflow:
    """A one-step workflow: y = 2x, or a wrong answer when the input says so."""
    flow = wf.Workflow("doubler")

    @flow.step
    def double(state: Any) -> dict[str, Any]:
        return {"y": state["x"] * 2 + state.get("off", 0)}

    return flow


def doubler_suite(**overrides: Any) -> wf.evals.Suite:
    """Four cases of the doubler, the last one answered wrong (off by one)."""
    rows = [{"id": f"d{x}", "x": x, "expected": {"y": 2 * x}} for x in range(1, 4)]
    rows.append({"id": "d4", "x": 4, "off": 1, "expected": {"y": 8}})
    options: dict[str, Any] = {
        "name": "doubler",
        "dataset": rows,
        "workflow": doubler(),
        "scorers": [wf.evals.exact_match("y")],
    }
    return wf.evals.Suite(**{**options, **overrides})


# --- load_dataset ---------------------------------------------------------------------------


def test_load_dataset_jsonl_nested_rows(tmp_path: Path):
    """Rows with inputs and expected give Cases with those, ids as strings."""
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"id": "a", "inputs": {"query": "q1", "n": 1}, "expected": {"route": "r"}},
            {"id": 7, "inputs": {"query": "q2"}},
        ],
    )
    assert [
        Case("a", {"query": "q1", "n": 1}, {"route": "r"}),
        Case("7", {"query": "q2"}, {}),
    ] == wf.evals.load_dataset(path)


def test_load_dataset_jsonl_flat_rows(tmp_path: Path):
    """In a flat row every key but id and expected is an input; blank lines are skipped."""
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "query": "q1", "lang": "en", "expected": {"answer": "x"}}\n\n{"query": "q2"}\n   \n')
    assert [Case("a", {"query": "q1", "lang": "en"}, {"answer": "x"}), Case("2", {"query": "q2"}, {})] == (
        wf.evals.load_dataset(str(path))
    )


def test_load_dataset_parquet_nested_rows(tmp_path: Path):
    """A parquet file with inputs and expected struct columns gives the same Cases as JSONL."""
    rows = [
        {"id": "a", "inputs": {"query": "q1", "n": 1}, "expected": {"route": "r1"}},
        {"id": "b", "inputs": {"query": "q2", "n": 2}, "expected": {"route": "r2"}},
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    assert wf.evals.load_dataset(write_jsonl(tmp_path / "d.jsonl", rows)) == wf.evals.load_dataset(
        tmp_path / "d.parquet"
    )


def test_load_dataset_parquet_flat_rows(tmp_path: Path):
    """A flat parquet table gives plain Python values as inputs."""
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1, 3], "text": ["hi", "yo"]})
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    cases = wf.evals.load_dataset(tmp_path / "d.parquet")
    assert [Case("a", {"x": 1, "text": "hi"}, {}), Case("b", {"x": 3, "text": "yo"}, {})] == cases
    assert int is type(cases[0].inputs["x"])


def test_load_dataset_parquet_with_lists_matches_jsonl(tmp_path: Path):
    """The query router's dataset (lists of tools) saved as parquet loads to the same Cases as its JSONL."""
    rows = [json.loads(line) for line in (QUERY_ROUTER / "dataset.jsonl").read_text().splitlines()]
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    from_parquet = wf.evals.load_dataset(tmp_path / "d.parquet")
    assert isinstance(from_parquet[0].expected["tools"], list)
    assert wf.evals.load_dataset(QUERY_ROUTER / "dataset.jsonl") == from_parquet


def test_load_dataset_parquet_nulls_are_keys_the_row_lacks(tmp_path: Path):
    """Rows lacking keys (top level, inputs, expected, nested structs, structs in lists) read from
    parquet as from the JSONL they were written from: no key filled with None; a None in a list stays."""
    rows = [
        {"id": "a", "inputs": {"q": "hi", "lang": "fr", "meta": {"src": "web", "n": 1}}, "expected": {"tone": "x"}},
        {"id": "b", "inputs": {"q": "hi", "meta": {"src": "app"}, "hops": [{"at": 1}, {"at": 2, "via": "y"}]}},
        {"inputs": {"q": "yo", "scores": [1, None, 3]}, "expected": {"greeting": "hey"}},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    from_parquet = wf.evals.load_dataset(tmp_path / "d.parquet")
    assert wf.evals.load_dataset(write_jsonl(tmp_path / "d.jsonl", rows)) == from_parquet
    assert (
        Case("b", {"q": "hi", "meta": {"src": "app"}, "hops": [{"at": 1}, {"at": 2, "via": "y"}]}, {})
        == (from_parquet[1])
    )
    assert Case("3", {"q": "yo", "scores": [1, None, 3]}, {"greeting": "hey"}) == from_parquet[2]


def test_parquet_and_jsonl_of_the_same_rows_score_the_same(tmp_path: Path):
    """A flat dataset as JSONL and as parquet gives the runs the same inputs and the same scores: a
    default for a key a row lacks holds, and a missing expectation is the scorer's error, not null."""
    rows = [
        {"id": "a", "q": "hi", "lang": "fr", "expected": {"greeting": "bonjour", "tone": "formal"}},
        {"id": "b", "q": "hi", "expected": {"greeting": "hello"}},
    ]
    flow = wf.Workflow("greeter")

    @flow.step
    def greet(state: Any) -> dict[str, Any]:
        lang = state.get("lang", "en")
        return {"greeting": {"fr": "bonjour", "en": "hello"}.get(lang, "??"), "tone": "formal"}

    write_jsonl(tmp_path / "d.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    frames = []
    for name in ("d.jsonl", "d.parquet"):
        suite = wf.evals.Suite(
            name="greeter",
            dataset=tmp_path / name,
            workflow=flow,
            scorers=[wf.evals.exact_match("greeting"), wf.evals.exact_match("tone")],
        )
        frames.append(wf.evals.evaluate(suite, progress=False, store=False).cases.drop(columns=["run_id"]))
    jsonl, parquet = frames
    pd.testing.assert_frame_equal(jsonl, parquet)  # NaN-aware: the case lacking 'tone' is unscored
    assert [True, True, True, False] == parquet["passed"].tolist()
    assert "has no expected 'tone'" in parquet["detail"].iloc[3]


def test_load_dataset_from_dicts():
    """An iterable of dicts is a dataset; ids default to the row number."""
    rows = ({"q": q, "expected": {"n": i}} for i, q in enumerate(["a", "b"]))
    assert [Case("1", {"q": "a"}, {"n": 0}), Case("2", {"q": "b"}, {"n": 1})] == wf.evals.load_dataset(rows)


def test_load_dataset_bad_json_line_names_the_line(tmp_path: Path):
    """A line that is not JSON is reported with its file line number (blank lines counted)."""
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "x": 1}\n\n{"id": "b", x: 2}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl, line 3: not JSON"):
        wf.evals.load_dataset(path)


def test_load_dataset_jsonl_saved_with_a_byte_order_mark(tmp_path: Path):
    """A JSONL file starting with UTF-8's byte order mark (Windows Notepad's "UTF-8 with BOM",
    PowerShell's Out-File) loads as without it, as a CSV does: its first line was refused as
    "not JSON (Unexpected UTF-8 BOM ...)"."""
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + '{"id": "a", "q": "caf\u00e9"}\n{"id": "b", "q": "x"}\n'.encode())
    assert [Case("a", {"q": "caf\u00e9"}), Case("b", {"q": "x"})] == wf.evals.load_dataset(path)


def test_load_dataset_jsonl_not_utf8_names_the_file_and_line(tmp_path: Path):
    """A JSONL file in another encoding (Latin-1, as Windows tools write) is refused naming the file,
    the line and how to fix it: it raised a bare UnicodeDecodeError ("'utf-8' codec can't decode
    byte 0xe9 in position 42"), naming neither."""
    path = tmp_path / "d.jsonl"
    path.write_bytes('{"id": "a", "q": "x"}\n\n{"id": "b", "q": "caf\u00e9"}\n'.encode("latin-1"))
    expected = (
        r"d\.jsonl, line 3: not UTF-8 text \(invalid continuation byte at byte 44\): JSON is UTF-8: save the file "
        r"as UTF-8 \(from Latin-1: iconv -f latin1 -t utf-8 d\.jsonl > d-utf8\.jsonl; in Python: "
        r"open\(\.\.\., 'w', encoding='utf-8'\)\)"
    )
    with pytest.raises(ValueError, match=expected):
        wf.evals.load_dataset(path)


# --- datasets from a spreadsheet (CSV, TSV) ------------------------------------------------------


def test_load_dataset_reads_a_csv_cell_as_the_text_it_holds(tmp_path: Path):
    """A CSV's columns mean what a flat JSONL row's keys mean ('id', the rest inputs; 'expected.FIELD'
    one expected value, as a cell cannot hold an object), and every cell is its text, exactly:
    "007", "NA", "null", "" and a quoted separator are not converted, trimmed or dropped."""
    path = tmp_path / "d.csv"
    path.write_text(
        "id,query,code,note,expected.route\n"
        'q1,"Where is order 7, please?",007,NA,x\n'
        "q2, padded ,0x1F,null,\n"
        'q3,"two\nlines",1e3,,"refund"\n'
    )
    rows = [
        {"id": "q1", "query": "Where is order 7, please?", "code": "007", "note": "NA", "expected": {"route": "x"}},
        {"id": "q2", "query": " padded ", "code": "0x1F", "note": "null", "expected": {"route": ""}},
        {"id": "q3", "query": "two\nlines", "code": "1e3", "note": "", "expected": {"route": "refund"}},
    ]
    assert wf.evals.load_dataset(write_jsonl(tmp_path / "d.jsonl", rows)) == wf.evals.load_dataset(path)
    assert (
        Case("q2", {"query": " padded ", "code": "0x1F", "note": "null"}, {"route": ""})
        == wf.evals.load_dataset(path)[1]
    )


def test_load_dataset_reads_a_json_column_of_a_csv_as_json(tmp_path: Path):
    """A column named 'NAME:json' holds JSON (a number, a boolean, a list, an object): how a sheet gives
    a typed input or a structured expected value. Its empty cell means the case has no such value;
    'expected:json' is the whole expected object. Without an id column a case's id is its number."""
    path = tmp_path / "d.csv"
    path.write_text(
        "text,amount:json,vip:json,expected.tools:json,expected.route\n"
        'refund order 17,40,true,"[""sql_query""]",refund\n'
        "reset my password,,false,,account\n"
    )
    assert [
        Case("1", {"text": "refund order 17", "amount": 40, "vip": True}, {"tools": ["sql_query"], "route": "refund"}),
        Case("2", {"text": "reset my password", "vip": False}, {"route": "account"}),
    ] == wf.evals.load_dataset(path)
    path.write_text('id,q,expected:json\na,hi,"{""greeting"": ""hello"", ""n"": 0}"\nb,yo,\n')
    assert [Case("a", {"q": "hi"}, {"greeting": "hello", "n": 0}), Case("b", {"q": "yo"}, {})] == (
        wf.evals.load_dataset(path)
    )


def test_load_dataset_reads_tsv_and_a_csv_saved_by_excel(tmp_path: Path):
    """A .tsv is read with tabs between cells; Excel's 'CSV UTF-8' (a byte order mark first, CRLF line
    ends) reads as the same cases: the mark is no part of the first column's name."""
    want = [Case("a", {"q": "x,y"}, {"n": "1"}), Case("b", {"q": "007"}, {"n": "2"})]
    (tmp_path / "d.tsv").write_text("id\tq\texpected.n\na\tx,y\t1\nb\t007\t2\n")
    assert want == wf.evals.load_dataset(tmp_path / "d.tsv")
    (tmp_path / "d.csv").write_bytes(b'\xef\xbb\xbfid,q,expected.n\r\na,"x,y",1\r\nb,007,2\r\n')
    assert want == wf.evals.load_dataset(tmp_path / "d.csv")


def test_load_dataset_skips_blank_rows_of_a_csv_and_names_lines_as_the_file_counts_them(tmp_path: Path):
    """A blank line or a row of empty cells (a sheet's cleared row) is no case; the lines an error
    names are the file's, a cell's line breaks counted, as a spreadsheet numbers its rows."""
    path = tmp_path / "d.csv"
    path.write_text('id,q\n\na,"one\ntwo"\n,\nb,x\na,y\n')
    with pytest.raises(ValueError, match=r"'a' is the id of lines 3 and 7"):
        wf.evals.load_dataset(path)
    path.write_text('id,q\n\na,"one\ntwo"\n,\nb,x\n')
    assert ["a", "b"] == [case.id for case in wf.evals.load_dataset(path)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "id,q\na,hi\nb,hi,extra\nc\n",
            r"line 3 has 3 cells, and the header \(line 1\) names 2 columns: .*; line 4 has 1 cell",
        ),
        ("id,q,q\na,x,y\n", r"line 1: columns B and C are both named 'q'"),
        ("id,q,q:json\na,x,1\n", r"line 1: columns B \('q'\) and C \('q:json'\) both give the input 'q'"),
        ("id,,q\na,,x\n", r"line 1, column B has no name: name it"),
        ("id, q\na,x\n", r"line 1, column B \(' q'\): a space or an invisible character around the name"),
        ("id,q\ufeff\na,x\n", r"line 1, column B \('q\\ufeff'\): a space or an invisible character"),
        ("ID,q\na,x\n", r"line 1, column A \('ID'\): .*name it 'id'"),
        ("id,q,expected\na,x,yes\n", r"line 1, column C \('expected'\): .*'expected\.FIELD'.*'expected:json'"),
        ("id,inputs\na,x\n", r"line 1, column B \('inputs'\): .*a column named after it, or .*'inputs:json'"),
        ("id,q:int\na,1\n", r"line 1, column B \('q:int'\): ':int' is no column type"),
        (
            "id,expected:json,expected.n\na,{},1\n",
            r"line 1: column B \('expected:json'\) is the whole expected object, and column C",
        ),
        ("id,q\na,x\n,y\n", r"line 3, column A \('id'\): the case has no id"),
        (
            "id,n:json\na,1\nb,TRUE\nc,refund\nd,NaN\n",
            r"line 3, column B \('n:json'\): not JSON \(.*\) \(JSON writes true and false in lower case\).*"
            r"line 4, column B \('n:json'\): not JSON.*line 5, column B \('n:json'\): not JSON \(NaN",
        ),
        ('id,q\na,"unclosed\nb,x\n', r"line 2: not CSV \(unexpected end of data\)"),
        ('id,q\na,"say "hi""\n', r"line 2: not CSV \(',' expected after '\"'\)"),
        ("id;q;expected.n\na;x;1\n", r"line 1: the header is one column, 'id;q;expected\.n'.*separated by ';'"),
        ("id,q\n", r"has no cases \(a header row only, or no rows\)"),
        ("", r"has no cases \(a header row only, or no rows\)"),
    ],
)
def test_load_dataset_refuses_a_bad_csv_naming_the_file_line_and_column(tmp_path: Path, text: str, message: str):
    """Each way a CSV can be wrong is refused, naming the file, the line (and column), and how to fix it."""
    path = tmp_path / "cases.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        wf.evals.load_dataset(path)


def test_load_dataset_refuses_a_csv_that_is_not_utf8_naming_its_line(tmp_path: Path):
    """A sheet saved as Excel's plain 'CSV' (the computer's encoding: cp1252 here) is refused, naming the
    line of the first byte that is not UTF-8 and the format to save it as, never read as other text."""
    path = tmp_path / "d.csv"
    path.write_bytes("id,q\na,hi\nb,café\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"d\.csv, line 3: not UTF-8 text .*save the sheet as 'CSV UTF-8'"):
        wf.evals.load_dataset(path)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("cases.txt", ""),
        ("cases", ""),
        ("cases.json", r": a file of one JSON case per line is JSONL, named \.jsonl"),
        ("cases.xlsx", r": save the sheet as 'CSV UTF-8' \(\.csv\)"),
    ],
)
def test_load_dataset_refuses_a_file_of_no_format_it_reads_listing_those_it_does(tmp_path: Path, name: str, hint: str):
    """A dataset whose suffix names no format read is refused, listing the formats, never read as JSONL
    by default (a sheet's cells, a JSON array, would fail as "not JSON", or load as cases it is not)."""
    path = write_jsonl(tmp_path / name, [{"id": "a", "q": "x"}])
    with pytest.raises(ValueError) as caught:
        wf.evals.load_dataset(path)
    assert str(caught.value).startswith(
        f"the dataset {path} is of no format read (JSONL: .jsonl or .ndjson, one case per line; parquet: .parquet; "
        f"a sheet saved as CSV: .csv, or TSV: .tsv)"
    )
    assert re.search(hint, str(caught.value))
    suite = wf.evals.Suite(name="s", dataset=path, workflow=doubler(), scorers=[wf.evals.exact_match("y")])
    with pytest.raises(ValueError, match=re.escape(f"suite 's': the dataset {path} is of no format read")):
        suite.cases()


def test_load_dataset_reads_a_suffix_in_capitals_and_ndjson(tmp_path: Path):
    """'CASES.CSV' (as Windows may name an export) is a CSV, '.ndjson' another name for JSONL."""
    want = [Case("a", {"q": "007"}, {})]
    (tmp_path / "CASES.CSV").write_text("id,q\na,007\n")
    assert want == wf.evals.load_dataset(tmp_path / "CASES.CSV")
    assert want == wf.evals.load_dataset(write_jsonl(tmp_path / "d.ndjson", [{"id": "a", "q": "007"}]))
    assert want == wf.evals.load_dataset(write_jsonl(tmp_path / "D.JSONL", [{"id": "a", "q": "007"}]))


def test_evaluate_refuses_csv_cases_lacking_a_declared_input_naming_their_lines(tmp_path: Path):
    """An empty cell of a JSON column leaves that input out, so a workflow declaring it refuses the
    case before anything runs, naming the case and its line in the CSV."""
    path = tmp_path / "d.csv"
    path.write_text("id,x:json,expected.y:json\nc0,1,2\n\nc1,,4\n")
    flow = wf.Workflow("declares-x", inputs=["x"])

    @flow.step
    def double(state: Any) -> dict[str, Any]:
        return {"y": state["x"] * 2}

    suite = wf.evals.Suite(name="csv", dataset=path, workflow=flow, scorers=[wf.evals.exact_match("y")])
    with pytest.raises(ValueError, match=r"case 'c1' \(line 4\) lacks 'x'"):
        wf.evals.evaluate(suite, progress=False, store=False)


def test_load_dataset_refuses_duplicate_ids_naming_them_and_their_lines(tmp_path: Path):
    """Two cases with one id are refused, naming each id and the lines holding it (a case without
    an id takes its position as its id, which may clash too)."""
    with pytest.raises(ValueError, match="case ids must be unique"):
        wf.evals.load_dataset([{"id": "a", "x": 1}, {"id": "b", "x": 2}, {"id": "a", "x": 3}])
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"id": "a", "x": 1}, {"x": 2}, {"id": "a", "x": 3}, {"id": 2, "x": 4}, {"id": "a"}]
    )
    with pytest.raises(ValueError) as raised:
        wf.evals.load_dataset(path)
    assert (
        f"the dataset {path}: case ids must be unique in a dataset, but 'a' is the id of lines 1, 3 and 5, "
        "'2' of lines 2 and 4 (a case without an id takes its position as its id): give each case an id of its own"
    ) == str(raised.value)


def test_load_dataset_refuses_a_row_that_is_not_an_object(tmp_path: Path):
    """A JSON line that is not an object is refused, naming the case number."""
    with pytest.raises(ValueError, match=r"case 2 is not an object: \[1, 2\]"):
        wf.evals.load_dataset(write_jsonl(tmp_path / "d.jsonl", [{"x": 1}, [1, 2]]))


def test_load_dataset_refuses_rows_of_the_wrong_shape_naming_file_line_case_and_field(tmp_path: Path):
    """An 'expected' that is no object (0 and null included: never read as "nothing expected"),
    'inputs' that are a list or a string, an id that is neither a string nor a whole number: each
    refused in one error naming the file, the line (blank lines counted), the case, the field and
    the shape it should have, never a Python conversion error or a silently emptied field."""
    path = tmp_path / "d.jsonl"
    rows = [
        {"id": "ok", "x": 1},
        {"id": "e-list", "x": 1, "expected": [1]},
        {"id": "e-zero", "x": 1, "expected": 0},
        {"id": "i-list", "inputs": ["ab", "cd"]},
        {"id": "i-text", "inputs": "ab"},
        {"id": [1], "x": 1},
        {"id": 2.5, "x": 1},
        {"id": "e-null", "x": 1, "expected": None},
    ]
    path.write_text(
        "\n".join(json.dumps(row) for row in rows[:2]) + "\n\n" + "".join(json.dumps(r) + "\n" for r in rows[2:])
    )
    with pytest.raises(ValueError) as raised:
        wf.evals.load_dataset(path)
    message = str(raised.value)
    assert message.startswith(f"the dataset {path} has 7 cases of the wrong shape (fix them, and evaluate again): ")
    assert (
        "line 2, case 'e-list': 'expected' is a list ([1]), not an object of the values expected of the run, "
        'e.g. {"answer": "..."} (leave \'expected\' out when nothing is expected); '
        "line 4, case 'e-zero': 'expected' is a number (0), not an object"
    ) in message
    assert (
        "line 5, case 'i-list': 'inputs' is a list (['ab', 'cd']), not an object of input names and values, "
        'e.g. {"query": "..."} (or leave \'inputs\' out and give the inputs as keys of the row, beside "id" '
        "and \"expected\"); line 6, case 'i-text': 'inputs' is a string ('ab'), not an object"
    ) in message
    assert "line 7: 'id' is a list ([1]), not a string or a whole number, e.g. \"refund-1\"; and 2 more" in message


def test_a_suite_names_itself_and_the_row_of_a_dataset_given_in_memory_of_the_wrong_shape():
    """Rows given in memory are named by their position; an input name must be a string."""
    suite = doubler_suite(name="shapes", dataset=[{"id": "a", "x": 1}, {"id": True, "x": 2}, {"inputs": {1: "x"}}])
    with pytest.raises(ValueError) as raised:
        wf.evals.evaluate(suite, progress=False, store=False)
    assert (
        "suite 'shapes': the dataset given has 2 cases of the wrong shape (fix them, and evaluate again): "
        "row 2: 'id' is a boolean (True), not a string or a whole number, e.g. \"refund-1\"; "
        "row 3, case '3': 'inputs' has a key that is not a string (1); an input's name is a string"
    ) == str(raised.value)


def test_load_dataset_refuses_keys_beside_inputs_naming_file_line_case_and_key(tmp_path: Path):
    """A row with 'inputs' reads only 'id', 'inputs' and 'expected' (a flat row makes every other
    key an input), so a key beside them ("note", or an input left outside 'inputs') is refused,
    naming the file, the line, the case and the key, and where to move it: never silently dropped.
    The same from parquet and from rows in memory; a flat row keeps every key as an input."""
    rows = [
        {"id": "ok", "inputs": {"q": "hi"}, "expected": {"a": "x"}},
        {"id": "noted", "inputs": {"q": "hi"}, "expected": {"a": "x"}, "note": "flaky upstream"},
        {"id": "two", "inputs": {"q": "yo"}, "lang": "fr", "tags": ["hard"]},
        {"id": "flat", "q": "hi", "note": "kept"},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(ValueError) as raised:
        wf.evals.load_dataset(path)
    assert (
        f"the dataset {path} has 2 cases of the wrong shape (fix them, and evaluate again): "
        "line 2, case 'noted': 'note' is beside 'inputs', and a case with 'inputs' reads only 'id', 'inputs' and "
        "'expected': move it into 'inputs' (an input of the run) or 'expected' (a value scorers read), or leave "
        "'inputs' out and give the inputs as keys of the row; "
        "line 3, case 'two': 'lang', 'tags' are beside 'inputs', and a case with 'inputs' reads only 'id', "
        "'inputs' and 'expected': move them into 'inputs' (an input of the run) or 'expected' (a value scorers "
        "read), or leave 'inputs' out and give the inputs as keys of the row"
    ) == str(raised.value)
    pd.DataFrame(rows[:2]).to_parquet(tmp_path / "d.parquet")  # from_pylist would take the first row's keys only
    with pytest.raises(ValueError, match=r"d\.parquet has 1 case of the wrong shape .*row 2, case 'noted': 'note' is"):
        wf.evals.load_dataset(tmp_path / "d.parquet")
    with pytest.raises(ValueError, match=r"^suite 'noted': the dataset given .*row 2, case 'noted': 'note' is beside"):
        wf.evals.evaluate(doubler_suite(name="noted", dataset=rows[:2]), progress=False, store=False)
    assert [Case("flat", {"q": "hi", "note": "kept"})] == wf.evals.load_dataset(rows[3:])


def test_shipped_datasets_load():
    """The shipped suites' datasets load: 20 router queries, 8 support tickets."""
    assert 20 == len(wf.evals.load_dataset(QUERY_ROUTER / "dataset.jsonl"))
    assert 8 == len(wf.evals.load_dataset(SUPPORT / "dataset.jsonl"))


# --- load_suite -----------------------------------------------------------------------------


def test_load_suite_from_a_folder():
    """A folder holding suite.py loads its suite, the dataset resolved next to the file."""
    suite = wf.evals.load_suite(QUERY_ROUTER)
    assert "query-router" == suite.name
    assert QUERY_ROUTER / "dataset.jsonl" == suite.dataset
    assert ["keywords", "llm"] == list(suite.variants)
    assert {"route_taken": 0.9, "tools_used": 0.9} == dict(suite.thresholds)


def test_load_suite_from_a_file():
    """A suite.py path loads the same way."""
    suite = wf.evals.load_suite(str(SUPPORT / "suite.py"))
    assert "support-tickets" == suite.name
    assert SUPPORT / "dataset.jsonl" == suite.dataset
    assert ["approve", "reject"] == list(suite.variants)


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("../escape", "suite name '../escape' holds a path separator"),
        ("team/router", "suite name 'team/router' holds a path separator"),
        ("..", "suite name '..' is a path of its own"),
        ("runs", "suite name 'runs' is the folder of the eval's runs (WORKSPACE/evals/runs)"),
        (" ", "a suite's name is a non-blank string, got ' '"),
    ],
)
def test_a_suite_name_that_cannot_be_one_folder_is_refused(workspace: Path, name: str, said: str) -> None:
    """A suite's results are saved in WORKSPACE/evals/NAME: a name that is no single folder's is
    refused when the suite is built, where "../escape" saved them outside the workspace and "runs"
    among the eval's own runs."""
    with pytest.raises(ValueError) as info:
        doubler_suite(name=name)
    assert str(info.value).startswith(said)
    assert not (workspace.parent / "escape").exists()


def test_load_suite_file_without_suite_is_a_type_error(tmp_path: Path):
    """A file that defines no `suite` is refused with how to fix it."""
    (tmp_path / "nosuite.py").write_text("x = 1\n")
    with pytest.raises(TypeError, match=r"must define `suite = wf\.evals\.Suite\(\.\.\.\)` \(import wfkit as wf\)"):
        wf.evals.load_suite(tmp_path / "nosuite.py")


def test_load_suite_suite_of_the_wrong_type_is_a_type_error(tmp_path: Path):
    """A `suite` that is not a wfkit.Suite is refused too."""
    (tmp_path / "suite.py").write_text("suite = {'name': 'x'}\n")
    with pytest.raises(TypeError, match=r"must define `suite = wf\.evals\.Suite.*; it defines `suite` as a dict"):
        wf.evals.load_suite(tmp_path)


def test_load_suite_refuses_a_file_that_is_not_python_and_lists_the_suites_of_a_folder_of_them(tmp_path: Path):
    """A suite given as a file that is not Python (a README, the dataset) failed with a bare
    AssertionError; a folder of suite folders (`wfkit eval evals`) said only "no suite". Each now
    says what to give: a suite.py, or one of the folder's suites, named."""
    (tmp_path / "cases.jsonl").write_text("{}\n")
    with pytest.raises(
        ValueError,
        match=r"cases\.jsonl is not a Python file: a suite is a \.py file defining `suite = wf\.evals\.Suite",
    ):
        wf.evals.load_suite(tmp_path / "cases.jsonl")
    root = ROOT / "evals"
    with pytest.raises(
        FileNotFoundError,
        match=r"no suite at .*evals: it holds no suite\.py; its folders query_router and support_tickets do: give one",
    ):
        wf.evals.load_suite(root)


def test_load_suite_missing_is_file_not_found(tmp_path: Path):
    """A folder without suite.py is reported as missing."""
    with pytest.raises(FileNotFoundError, match="no suite at"):
        wf.evals.load_suite(tmp_path)


# --- evaluate on the shipped suites ---------------------------------------------------------


def test_query_router_eval_frames():
    """The router eval has one row per case x scorer x variant and a (variant, scorer) summary."""
    suite = wf.evals.load_suite(QUERY_ROUTER)
    result = wf.evals.evaluate(suite, progress=False)
    assert COLUMNS == list(result.cases.columns)
    assert len(suite.cases()) * len(suite.scorers) * len(suite.variants) == len(result.cases)
    assert 160 == len(result.cases)
    assert {"query-router"} == set(result.cases["suite"])
    assert {"succeeded"} == set(result.cases["run_status"])
    assert ["variant", "scorer"] == list(result.summary.index.names)
    assert SUMMARY_COLUMNS == list(result.summary.columns)
    expected_index = [
        (v, s)
        for v in ("keywords", "llm")
        for s in ("answer_mentions_tool", "latency_budget", "route_taken", "tools_used")
    ]
    assert expected_index == list(result.summary.index)
    assert {20} == set(result.summary["cases"])
    for _, row in result.summary.iterrows():
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
        assert row["pass_low"] <= row["pass_rate"] <= row["pass_high"]


def test_query_router_passes_its_thresholds():
    """Every query reaches the right branch with the right tools: the thresholds hold."""
    result = wf.evals.evaluate(QUERY_ROUTER, progress=False)
    assert [] == result.check()
    assert 1.0 == result.summary.loc[("keywords", "route_taken"), "pass_rate"]
    assert 1.0 == result.summary.loc[("llm", "tools_used"), "pass_rate"]


def test_support_reject_variant_declines_the_large_refunds():
    """With policy 'reject' the refunds above $100 are declined; with 'approve' all are refunded."""
    suite = wf.evals.load_suite(SUPPORT)
    result = wf.evals.evaluate(suite, progress=False)
    assert 8 * 4 * 2 == len(result.cases)
    assert {"succeeded"} == set(result.cases["run_status"])
    summary = result.summary
    assert 1.0 == summary.loc[("approve", "exact_match:resolution"), "mean"]
    assert 0.75 == summary.loc[("reject", "exact_match:resolution"), "mean"]
    rows = result.cases[(result.cases["variant"] == "reject") & (result.cases["scorer"] == "exact_match:resolution")]
    failed = rows[~rows["passed"]]
    large = sorted(c.id for c in suite.cases() if c.inputs["amount"] > 100)
    assert large == sorted(failed["case_id"])
    assert {'resolution="declined", expected "refunded"'} == set(failed["detail"])


def test_support_compare_shows_losses_for_reject_on_resolution():
    """compare('approve', 'reject') counts the reject variant's losses, wins and ties per scorer."""
    result = wf.evals.evaluate(SUPPORT, progress=False)
    table = result.compare("approve", "reject")
    assert [
        "wins", "losses", "ties", "unscored", "mean_diff",
        "net_win_rate", "net_win_low", "net_win_high", "p_value", "significant",
        "mean_diff_low", "mean_diff_high",
    ] == list(table.columns)  # fmt: skip
    assert {"wins": 0, "losses": 2, "ties": 6} == table.loc[
        "exact_match:resolution", ["wins", "losses", "ties"]
    ].to_dict()
    assert -0.25 == table.loc["exact_match:resolution", "mean_diff"]
    assert {"wins": 0, "losses": 0, "ties": 8} == table.loc["latency_budget", ["wins", "losses", "ties"]].to_dict()
    assert [0.5, False] == table.loc["exact_match:resolution", ["p_value", "significant"]].tolist()
    assert [1.0, False] == table.loc["latency_budget", ["p_value", "significant"]].tolist()


def test_eval_results_are_stored_as_parquet_next_to_the_step_logs(workspace: Path):
    """cases.parquet and summary.parquet land in WORKSPACE/evals/SUITE/STAMP/ and read back equal."""
    result = wf.evals.evaluate(QUERY_ROUTER, variants=["keywords"], progress=False)
    assert result.saved_to is not None
    relative = result.saved_to.relative_to(workspace)
    assert ("evals", "query-router") == relative.parts[:2]
    assert 3 == len(relative.parts)
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}", relative.parts[2])
    assert {"cases.parquet", "summary.parquet"} == {p.name for p in result.saved_to.iterdir()}
    pd.testing.assert_frame_equal(result.cases, pd.read_parquet(result.saved_to / "cases.parquet"))
    pd.testing.assert_frame_equal(result.summary.reset_index(), pd.read_parquet(result.saved_to / "summary.parquet"))
    assert 20 == result.steps()["run_id"].nunique()  # reading flushes the step-log export
    assert (workspace / "evals" / "runs" / "steps").is_dir()
    assert 0 == len(wf.steps())  # the workspace's own step log holds no eval run


def test_store_false_writes_nothing(workspace: Path):
    """store=False keeps the results in memory only (the runs are logged as usual)."""
    result = wf.evals.evaluate(doubler_suite(), progress=False, store=False)
    assert result.saved_to is None
    assert ["runs"] == [p.name for p in (workspace / "evals").iterdir()]


def test_eval_runs_are_logged_apart_from_interactive_runs(workspace: Path):
    """Each case's run writes its steps to the step log of WORKSPACE/evals/runs, a workspace of its
    own, so the interactive runs' analysis and report never count them."""
    result = wf.evals.evaluate(QUERY_ROUTER, variants=["keywords"], progress=False)
    run_ids = sorted(set(result.cases["run_id"]))
    assert 20 == len(run_ids)
    assert workspace / "evals" / "runs" == result.runs_workspace
    logged = result.steps()
    assert run_ids == sorted(set(logged["run_id"]))
    assert {"query-router-keywords"} == set(logged["workflow"])
    assert {"classify", "generate_answer"} <= set(logged["step"])
    assert 20 == (logged["step"] == "classify").sum()
    assert 20 == len(wf.Workspace(result.runs_workspace).runs(status="succeeded"))
    assert not (workspace / "wfkit.db").exists()  # no interactive run was made at all
    assert logged.equals(wf.steps(result.runs_workspace))


def test_evaluate_accepts_a_workspace_argument(tmp_path: Path):
    """workspace= sends the runs and the stored results to that folder."""
    other = tmp_path / "elsewhere"
    result = wf.evals.evaluate(doubler_suite(), progress=False, workspace=other)
    assert result.saved_to is not None
    assert other / "evals" / "doubler" == result.saved_to.parent
    assert 4 == len(wf.Workspace(other / "evals" / "runs").runs())


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrency_is_bounded(limit: int):
    """No more than `concurrency` cases run at once, and that many do overlap."""
    counter = {"now": 0, "peak": 0}
    flow = wf.Workflow("counted")

    @flow.step
    async def work(state: Any) -> dict[str, Any]:
        counter["now"] += 1
        counter["peak"] = max(counter["peak"], counter["now"])
        await asyncio.sleep(0.02)
        counter["now"] -= 1
        return {"done": True}

    suite = wf.evals.Suite(
        name="counted",
        dataset=[{"id": f"c{i}", "n": i} for i in range(10)],
        workflow=flow,
        scorers=[wf.evals.exact_match("done", True)],
    )
    result = wf.evals.evaluate(suite, concurrency=limit, progress=False, store=False)
    assert limit == counter["peak"]
    assert 0 == counter["now"]
    assert 10 == int(result.cases["passed"].sum())


def test_concurrency_below_one_is_refused():
    """concurrency=0 is an error, not a hang."""
    with pytest.raises(ValueError, match="concurrency must be >= 1, got 0"):
        wf.evals.evaluate(doubler_suite(), concurrency=0, progress=False)


def test_a_scorer_that_raises_scores_nothing_and_says_so():
    """A scorer raising scores nothing on that case (value NaN, a 'scorer error' detail), never a
    0 that reads as the workflow getting it wrong: the summary counts the case as unscored, the
    mean and pass rate are those of the cases scored, and check() names the error."""

    def broken(case: Case, run: wf.Run) -> bool:
        if case.id == "d2":
            raise RuntimeError(f"boom on {case.id}")
        return True

    suite = doubler_suite(scorers=[wf.evals.exact_match("y"), broken, wf.evals.exact_match("missing_key")])
    result = wf.evals.evaluate(suite, progress=False)
    cases = result.cases.set_index(["case_id", "scorer"])
    assert 12 == len(cases)
    row = cases.loc[("d2", "broken")]
    assert math.isnan(row["value"])
    assert [False, "scorer error: RuntimeError: boom on d2"] == row[["passed", "detail"]].tolist()
    assert cases.loc[("d2", "exact_match:missing_key"), "detail"].startswith(
        "scorer error: KeyError: \"case 'd2' has no expected 'missing_key'"
    )
    assert [True, True, True, False] == cases.xs("exact_match:y", level="scorer")["passed"].tolist()
    broken_row = result.summary.loc[("default", "broken")]
    assert [4, 1, 1.0, 1.0] == broken_row[["cases", "unscored", "mean", "pass_rate"]].tolist()
    assert 0 == result.summary.loc[("default", "exact_match:y"), "unscored"]
    assert 4 == result.summary.loc[("default", "exact_match:missing_key"), "unscored"]
    failures = result.check()
    assert (
        "default: broken could not score 1 of 4 cases (d2: scorer error: RuntimeError: boom on d2); "
        "fix the scorer or the dataset, and evaluate again"
    ) in failures
    assert any(
        f.startswith("default: exact_match:missing_key could not score 4 of 4 cases (the first, d1: ") for f in failures
    )


def test_a_nan_score_is_a_scorer_error_and_compare_counts_the_case_left_out():
    """A scorer answering Score(nan, ...) is refused, saying what a score is; compare() leaves that
    case out of wins, losses and ties and counts it as unscored, so every case is accounted for."""

    def build(nan_on: str = "") -> wf.Workflow:
        flow = wf.Workflow(f"nan-{nan_on}")

        @flow.step
        def echo(state: Any) -> dict[str, Any]:
            return {"nan": state["id"] == nan_on}

        return flow

    def judge(case: Case, run: wf.Run) -> wf.evals.Score:
        return wf.evals.Score(float("nan") if run.state["nan"] else 1.0, True)

    suite = wf.evals.Suite(
        name="nan",
        dataset=[{"id": f"c{i}", "inputs": {"id": f"c{i}"}} for i in range(5)],
        workflow=build,
        variants={"base": {}, "cand": {"nan_on": "c3"}},
        scorers=[wf.evals.custom(judge, name="judge")],
    )
    result = wf.evals.evaluate(suite, progress=False, store=False)
    detail = result.cases.set_index(["variant", "case_id"]).loc[("cand", "c3"), "detail"]
    assert detail.startswith("scorer error: ValueError: a score's value is a number in [0, 1], got nan")
    row = result.compare("base", "cand").loc["judge"]
    assert [0, 0, 4, 1] == row[["wins", "losses", "ties", "unscored"]].tolist()


def _asker(local: bool = False) -> wf.Workflow:
    """A workflow factory: ``ask`` calls priced-1 through ctx.llm, or with ``local``, the model the
    case names (local-llama is in no price table)."""
    flow = wf.Workflow(f"asker-{local}")

    @flow.step
    async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete("a b c", model=state["model"] if local else "priced-1")).text}

    return flow


def test_an_unpriced_run_is_unscored_by_cost_budget_counted_and_named_by_check():
    """A variant whose case c2 called local-llama, which no price table knows: cost_budget leaves
    that case unscored (NaN, not passed; it passed, counting the call $0), the summary counts it and
    rates the 3 cases priced ($0.006 each), compare() leaves it out of wins, losses and ties, and
    check() fails naming the case, the model and how to price it, though the pass rate is 100%."""
    client = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0, p99=0, seed=0, reply="yes"), prices={"priced-1": wf.llm.Price(1.0, 2.0)}
    )
    models = ["priced-1", "local-llama", "priced-1", "priced-1"]
    suite = wf.evals.Suite(
        name="asker",
        dataset=[{"id": f"c{i}", "model": model} for i, model in enumerate(models, 1)],
        workflow=_asker,
        variants={"base": {}, "local": {"local": True}},
        scorers=[wf.evals.cost_budget(0.01)],
        run_options={"llm": client},
        thresholds={"cost_budget": 0.9},
    )
    result = wf.evals.evaluate(suite, progress=False, store=False)
    cases = result.cases.set_index(["variant", "case_id"])
    detail = (
        "cost unknown: step 'ask' called model 'local-llama', which no price table knows: give it a price "
        "(ChatClient(..., prices=...) or wf.llm.PRICES.register), then evaluate again; $0.00000 of $0.01 in the "
        "attempts whose every call was priced"
    )
    row = cases.loc[("local", "c2")]
    assert math.isnan(row["value"])
    assert [False, detail, "succeeded"] == row[["passed", "detail", "run_status"]].tolist()
    assert {"$0.00600 of $0.01"} == set(cases.drop(("local", "c2"))["detail"])
    summary = result.summary.xs("cost_budget", level="scorer")
    assert [[4, 0, 1.0, 1.0, 0], [4, 1, 1.0, 1.0, 0]] == (
        summary[["cases", "unscored", "mean", "pass_rate", "failed_runs"]].loc[["base", "local"]].values.tolist()
    )
    assert [0, 0, 3, 1] == result.compare("base", "local").loc[
        "cost_budget", ["wins", "losses", "ties", "unscored"]
    ].tolist()
    assert [f"local: cost_budget could not score 1 of 4 cases (c2: {detail})"] == result.check()


def test_a_failed_run_fails_the_budgets_and_the_route_in_an_eval_saying_why():
    """An eval case whose run crashed (the dataset misspells an input) fails latency_budget,
    cost_budget and route_taken, each row's detail naming the step and its error."""
    flow = wf.Workflow("misspelt")

    @flow.step
    def classify(state: Any) -> dict[str, Any]:
        return {"label": state["query"]}

    suite = wf.evals.Suite(
        name="misspelt",
        dataset=[{"id": "1", "qeury": "refund", "expected": {"route": "classify"}}],
        workflow=flow,
        scorers=[wf.evals.route_taken(), wf.evals.latency_budget(1.0), wf.evals.cost_budget(0.01)],
    )
    cases = wf.evals.evaluate(suite, progress=False, store=False).cases
    assert ["cost_budget", "latency_budget", "route_taken"] == cases["scorer"].tolist()
    assert {"failed"} == set(cases["run_status"])
    assert [False] * 3 == cases["passed"].tolist()
    assert {
        "run failed at step 'classify' (attempt 1): StateKeyError: the state has no field 'query': it holds "
        "['qeury'] (did you mean 'qeury'?); pass it in the run's inputs, return it from a step that runs before "
        "this one, or, if it is optional, read it with state.get('query')"
    } == set(cases["detail"])
    assert 0.0 == wf.evals.EvalResult(suite, cases).summary["pass_rate"].max()


def test_factory_variants_and_their_run_options():
    """A factory gets each variant's parameters; a variant's run_options go to its runs."""
    seen: list[int] = []

    def build(offset: int = 0) -> wf.Workflow:
        seen.append(offset)
        flow = wf.Workflow(f"adder-{offset}")

        @flow.step(approval=wf.Approval("check", when=wf.when("x", "gt", 2)))
        def add(state: Any) -> dict[str, Any]:
            return {"y": state["x"] * 2 + offset}

        return flow

    suite = doubler_suite(
        workflow=build,
        variants={"right": {"run_options": {"policy": "approve"}}, "wrong": {"offset": 1}},
        run_options={"policy": "reject"},
    )
    result = wf.evals.evaluate(suite, progress=False)
    assert [0, 1] == seen
    status = result.cases.set_index(["variant", "case_id"])["run_status"]
    assert "succeeded" == status[("right", "d3")]
    assert "succeeded" != status[("wrong", "d3")]
    assert 1.0 == result.summary.loc[("right", "exact_match:y"), "pass_rate"]
    assert 0.0 == result.summary.loc[("wrong", "exact_match:y"), "pass_rate"]


def test_unknown_variant_is_a_clear_error():
    """Asking for a variant the suite lacks names it and the variants there are."""
    with pytest.raises(ValueError, match="suite 'query-router' has no variant 'nope'; it has keywords, llm"):
        wf.evals.evaluate(QUERY_ROUTER, variants=["nope"], progress=False)


def test_one_variant_named_as_a_string_runs_that_variant(workspace: Path):
    """variants="llm" runs the variant llm; it was read as the variants 'l', 'l' and 'm' and
    refused as "no variant 'l'". A misspelt one is named with the closest there is."""
    result = wf.evals.evaluate(QUERY_ROUTER, variants="llm", progress=False, store=False)
    assert ["llm"] == sorted(set(result.cases["variant"]))
    assert 20 == result.cases["case_id"].nunique()
    with pytest.raises(ValueError, match=r"no variant 'lm' \(did you mean 'llm'\?\); it has keywords, llm"):
        wf.evals.evaluate(QUERY_ROUTER, variants="lm", progress=False)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_an_empty_jsonl_dataset_is_refused_naming_suite_and_file(tmp_path: Path, text: str):
    """An empty JSONL file (or blank lines only) is refused before any run, naming the suite, the
    file and what a line holds; load_dataset alone names the file."""
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    suite = doubler_suite(name="hollow", dataset=path)
    message = (
        f"suite 'hollow': the dataset {path} has no cases (an empty file, or blank lines only): write one case per line"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        wf.evals.evaluate(suite, progress=False)
    with pytest.raises(ValueError, match=re.escape(f"the dataset {path} has no cases")):
        wf.evals.load_dataset(path)
    assert not (tmp_path / "ws" / "evals").exists()  # nothing ran, nothing stored


def test_an_empty_parquet_dataset_is_refused_naming_it(tmp_path: Path):
    """A parquet file with columns but no row is refused, naming the suite and the file."""
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "x": pa.array([], pa.int64())}), path)
    message = f"suite 'hollow': the dataset {path} has no rows: write one row per case"
    with pytest.raises(ValueError, match=re.escape(message)):
        wf.evals.evaluate(doubler_suite(name="hollow", dataset=path), progress=False)


def test_a_file_named_parquet_that_is_not_parquet_is_refused_naming_the_suite_and_file(tmp_path: Path):
    """A .parquet file pyarrow cannot read (a CSV renamed, a file cut off in a copy) is refused naming
    the suite, the file and how to write one: it raised pyarrow's ArrowInvalid, "Could not open
    Parquet input source 'PATH': Parquet magic bytes not found in footer ...", naming no suite nor fix."""
    path = tmp_path / "cases.parquet"
    path.write_text("id,x\nd1,1\n", encoding="utf-8")
    message = f"suite 'mislabelled': the dataset {path} is not a parquet file pyarrow can read (ArrowInvalid: "
    with pytest.raises(ValueError, match=re.escape(message) + r".*\): write it with DataFrame\.to_parquet"):
        wf.evals.evaluate(doubler_suite(name="mislabelled", dataset=path), progress=False)


def test_an_empty_dataset_in_memory_or_no_variant_is_refused_when_the_suite_is_built():
    """No row given, or no variant, is refused by Suite() itself, naming the suite and how to fix it."""
    with pytest.raises(ValueError, match=r"suite 'hollow': the dataset given has no rows: give at least one case"):
        doubler_suite(name="hollow", dataset=[])
    message = r"suite 'doubler' has no variants: leave variants= out .* variants=\{'default': \{\}\}"
    with pytest.raises(ValueError, match=message):
        doubler_suite(variants={})


def test_a_dataset_given_as_a_generator_is_read_when_evaluated():
    """A generator has no length to check when the suite is built: its rows are read by evaluate."""
    rows = ({"id": f"g{x}", "x": x, "expected": {"y": 2 * x}} for x in range(3))
    result = wf.evals.evaluate(doubler_suite(dataset=rows), progress=False, store=False)
    assert ["g0", "g1", "g2"] == result.cases["case_id"].tolist()


# --- the dataset against the workflow, before any case runs -----------------------------------


def needy(calls: list[str], *extra: str) -> wf.Workflow:
    """A workflow declaring five inputs (and ``extra``), noting each run in ``calls``."""
    flow = wf.Workflow(
        "needy" + "".join(f"-{name}" for name in extra), inputs=["query", "lang", "tone", "user", "plan", *extra]
    )

    @flow.step
    def answer(state: Any) -> dict[str, Any]:
        calls.append(state["query"])
        return {"answer": state["query"]}

    return flow


def test_cases_lacking_declared_inputs_are_refused_before_any_runs_naming_file_cases_lines_and_inputs(
    tmp_path: Path, workspace: Path
):
    """Every case is checked against the inputs the workflow declares before a case runs: one error
    names the suite, the file, each case lacking some (with its line: blank lines count), a few of
    the names it lacks, how many more cases, and how to fix it; nothing ran, nothing was stored."""
    full = {"query": "q", "lang": "en", "tone": "dry", "user": "u1", "plan": "free"}
    rows = [
        {"id": "no-lang", **{k: v for k, v in full.items() if k != "lang"}},
        {"id": 7, "inputs": {}},
        *({"id": f"c{n}", "inputs": {k: v for k, v in full.items() if k != "plan"}} for n in range(6)),
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps({"id": "ok", "inputs": full}) + "\n\n" + "".join(json.dumps(r) + "\n" for r in rows))
    calls: list[str] = []
    suite = wf.evals.Suite(name="needs", dataset=path, workflow=needy(calls), scorers=[wf.evals.contains("answer")])
    with pytest.raises(ValueError) as raised:
        wf.evals.evaluate(suite, progress=False)
    assert (
        f"suite 'needs': 8 cases of the dataset {path} lack inputs that workflow 'needy' declares: "
        "case 'no-lang' (line 3) lacks 'lang'; case '7' (line 4) lacks 'lang', 'plan', 'query' and 2 more; "
        "case 'c0' (line 5) lacks 'plan'; case 'c1' (line 6) lacks 'plan'; case 'c2' (line 7) lacks 'plan'; "
        "and 3 more cases. Give every case the inputs its workflow declares (in a flat row, as keys beside "
        '"id" and "expected"), or leave out of Workflow(..., inputs=...) those it can do without; no case was run'
    ) == str(raised.value)
    assert [] == calls
    assert not (workspace / "evals").exists()


def test_a_later_variant_lacking_an_input_stops_the_eval_before_the_first_variant_runs():
    """Each variant's workflow is checked before any runs: a second variant declaring an input the
    dataset lacks is refused by name of its workflow, the first variant's cases never run."""
    calls: list[str] = []
    full = {"query": "q", "lang": "en", "tone": "dry", "user": "u1", "plan": "free"}
    suite = wf.evals.Suite(
        name="two",
        dataset=[{"id": "a", **full}],
        workflow=lambda extra=(): needy(calls, *extra),
        variants={"base": {}, "more": {"extra": ("region",)}},
        scorers=[wf.evals.contains("answer")],
    )
    message = (
        "suite 'two': 1 case of the dataset given lacks inputs that workflow 'needy-region' declares: "
        "case 'a' (row 1) lacks 'region'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        wf.evals.evaluate(suite, progress=False, store=False)
    assert [] == calls


def counting_factory(built: list[str]) -> Any:
    """A factory taking ``mode`` (default "a") and ``k`` (keyword-only, required), noting each build."""

    def build(mode: str = "a", *, k: int) -> wf.Workflow:
        built.append(mode)
        return doubler()

    return build


def test_a_variant_parameter_the_factory_does_not_take_is_refused_when_the_suite_is_built():
    """A misspelt variant parameter fails Suite(), before any variant runs, naming the suite, the
    variant, the parameter, the closest one and the factory's parameters."""
    built: list[str] = []
    message = (
        "suite 'typos', variant 'typo': build() takes no parameter 'mdoe' "
        "(did you mean 'mode'?); its parameters are: mode, k. Rename or remove it in the variant"
    )
    with pytest.raises(TypeError, match=re.escape(message)):
        doubler_suite(
            name="typos",
            workflow=counting_factory(built),
            variants={"good": {"mode": "a", "k": 1}, "typo": {"mdoe": "b", "k": 1}},
        )
    assert [] == built


def test_a_variant_missing_a_required_factory_parameter_is_refused():
    """A variant that leaves out a parameter the factory has no default for is refused, naming it."""
    with pytest.raises(TypeError, match=r"variant 'bare': .*build\(\) needs 'k', which the variant does not give"):
        doubler_suite(workflow=counting_factory([]), variants={"bare": {"mode": "b"}})


def test_a_factory_taking_any_keyword_accepts_every_variant_parameter():
    """A factory with **params takes whatever a variant gives; run_options are never a parameter."""
    seen: list[dict[str, Any]] = []

    def build(**params: Any) -> wf.Workflow:
        seen.append(params)
        return doubler()

    suite = doubler_suite(workflow=build, variants={"v": {"anything": 1, "run_options": {"policy": "approve"}}})
    wf.evals.evaluate(suite, progress=False, store=False)
    assert [{"anything": 1}] == seen


def test_variant_parameters_for_a_workflow_that_is_no_factory_are_refused():
    """Parameters given for a plain Workflow would be silently ignored: refused, saying to pass a
    factory; run_options alone are fine."""
    message = r"variant 'fast': parameters 'speed' need a factory, but workflow= is the Workflow 'doubler'"
    with pytest.raises(TypeError, match=message):
        doubler_suite(variants={"fast": {"speed": 2}})
    doubler_suite(variants={"approve": {"run_options": {"policy": "approve"}}})


def test_progress_bar_is_shown_on_request(capsys: pytest.CaptureFixture[str]):
    """progress=True draws a progress bar named after the suite on stderr."""
    wf.evals.evaluate(doubler_suite(), progress=True, store=False)
    assert "eval doubler" in capsys.readouterr().err


def test_evaluate_async_inside_a_running_loop():
    """evaluate_async runs inside an event loop (a notebook cell)."""

    async def cell() -> wf.evals.EvalResult:
        return await wf.evals.evaluate_async(doubler_suite(), progress=False, store=False)

    result = asyncio.run(cell())
    assert 0.75 == result.summary.loc[("default", "exact_match:y"), "mean"]


# --- compare, check, plot, mean_interval ----------------------------------------------------


def _doubler(offset: int = 0) -> wf.Workflow:
    """A workflow factory for variants: y = 2x + ``offset`` (an ``offset`` of 1 is wrong on every case)."""
    flow = wf.Workflow(f"doubler-{offset}")

    @flow.step
    def double(state: Any) -> dict[str, Any]:
        return {"y": state["x"] * 2 + offset}

    return flow


def two_variant_result() -> wf.evals.EvalResult:
    """Doubler variants: 'base' right on 16 cases, 'same' identical, 'worse' wrong on all."""
    suite = wf.evals.Suite(
        name="variants",
        dataset=[{"id": f"c{x:02d}", "x": x, "expected": {"y": 2 * x}} for x in range(16)],
        workflow=_doubler,
        scorers=[wf.evals.exact_match("y"), wf.evals.numeric("y", tolerance=1.0, name="close")],
        variants={"base": {}, "same": {}, "worse": {"offset": 1}},
        thresholds={"exact_match:y": 0.9},
    )
    return wf.evals.evaluate(suite, progress=False, store=False)


def test_compare_tells_noise_from_a_real_difference():
    """Identical variants tie everywhere (not significant); a variant wrong on every case loses, significantly."""
    result = two_variant_result()
    same = result.compare("base", "same")
    assert [0, 0, 16, False] == same.loc["exact_match:y", ["wins", "losses", "ties", "significant"]].tolist()
    worse = result.compare("base", "worse")
    assert [0, 16, 0, True] == worse.loc["exact_match:y", ["wins", "losses", "ties", "significant"]].tolist()
    assert -1.0 == worse.loc["exact_match:y", "mean_diff"]
    assert [0, 0, 16, False] == worse.loc["close", ["wins", "losses", "ties", "significant"]].tolist()
    better = result.compare("worse", "base")
    assert [16, 0, 0, True] == better.loc["exact_match:y", ["wins", "losses", "ties", "significant"]].tolist()


def test_compare_of_a_variant_with_itself_is_refused() -> None:
    """result.compare("base", "base") gave a table of ties, "not significant", that reads as two
    variants performing alike; it is refused, naming the variants there are, and a misspelt variant
    names the closest. Against an earlier result (baseline_from=) the same name is what is meant."""
    result = two_variant_result()
    with pytest.raises(ValueError) as caught:
        result.compare("base", "base")
    assert (
        "compare('base', 'base') compares a variant with itself, every case a tie; name two variants (it has "
        "base, same, worse), or compare with an earlier result: compare(baseline, candidate, "
        "baseline_from=wf.evals.load_result(FOLDER))"
    ) == str(caught.value)
    with pytest.raises(ValueError, match=r"no variant 'Base' in this result \(did you mean 'base'\?\); it has base"):
        result.compare("Base", "worse")
    assert 16 == result.compare("base", "base", baseline_from=result).loc["exact_match:y", "ties"]


def test_compare_counts_scores_equal_up_to_float_noise_as_ties():
    """0.1 + 0.2 against 0.3 is a tie, not a win: scores within compare's tolerance (1e-9) tie; a
    difference of 0.1 either way is still a win or a loss."""

    def build(split: bool = False) -> wf.Workflow:
        flow = wf.Workflow(f"sums-{split}")

        @flow.step
        def total(state: Any) -> dict[str, Any]:
            base = sum([0.1, 0.2]) if split else 0.3
            return {"score": base + (state["gain"] if split else 0.0)}

        return flow

    suite = wf.evals.Suite(
        name="sums",
        dataset=[{"id": f"c{i}", "gain": gain} for i, gain in enumerate([0.0, 0.0, 0.2, -0.1])],
        workflow=build,
        variants={"whole": {"split": False}, "split": {"split": True}},
        scorers=[wf.evals.custom(lambda case, run: run.state["score"], name="score")],
    )
    row = wf.evals.evaluate(suite, progress=False, store=False).compare("whole", "split").loc["score"]
    assert [1, 1, 2, 0.0, 1.0] == row[["wins", "losses", "ties", "net_win_rate", "p_value"]].tolist()


def few_wins_result(cases: int, wins: int) -> wf.evals.EvalResult:
    """'base' fails every case; 'cand' passes the first ``wins`` of ``cases`` and ties the rest."""

    def build(better: bool = False) -> wf.Workflow:
        flow = wf.Workflow(f"few-wins-{better}")

        @flow.step
        def answer(state: Any) -> dict[str, Any]:
            return {"ok": better and state["i"] < wins}

        return flow

    suite = wf.evals.Suite(
        name="few-wins",
        dataset=[{"id": f"c{i:03d}", "i": i} for i in range(cases)],
        workflow=build,
        variants={"base": {"better": False}, "cand": {"better": True}},
        scorers=[wf.evals.custom(lambda case, run: bool(run.state["ok"]), name="ok")],
    )
    return wf.evals.evaluate(suite, progress=False, store=False)


@pytest.mark.parametrize(
    ("cases", "wins", "p_value", "significant"),
    [(10, 4, 0.125, False), (100, 4, 0.125, False), (20, 5, 0.0625, False), (20, 6, 0.03125, True)],
)
def test_compare_beats_noise_by_an_exact_sign_test(cases: int, wins: int, p_value: float, significant: bool):
    """A few wins and no loss beat noise only when an exact two-sided sign test says so (p < 0.05):
    4 to 0 is p = 0.125 at 10 or 100 cases (ties never count), 6 to 0 is p = 0.031."""
    row = few_wins_result(cases, wins).compare("base", "cand").loc["ok"]
    assert [wins, 0, cases - wins] == row[["wins", "losses", "ties"]].tolist()
    assert p_value == pytest.approx(row["p_value"])
    assert significant == bool(row["significant"])
    # The net win rate's interval agrees with the test: it excludes 0 exactly when significant.
    assert pytest.approx(wins / cases) == row["net_win_rate"] == row["mean_diff"]
    assert row["net_win_low"] <= row["net_win_rate"] <= row["net_win_high"]
    assert significant == bool(row["net_win_low"] > 0)
    # For 0/1 scores the mean difference is the net win rate, and its interval is the same.
    assert row[["net_win_low", "net_win_high"]].tolist() == row[["mean_diff_low", "mean_diff_high"]].tolist()


def test_net_win_interval_is_never_a_point_and_agrees_with_the_sign_test():
    """Over every split of up to 40 differing cases the interval holds the net win rate and
    excludes 0 exactly when sign_test is below 0.05; all cases tied give an interval around 0
    that narrows as ties accumulate; one case gives a wide interval, not a point."""
    for wins in range(41):
        for losses in range(41 - wins):
            low, high = net_win_interval(wins, losses, 3)
            assert low <= (wins - losses) / (wins + losses + 3) <= high
            assert (sign_test(wins, losses) < 0.05) == (low > 0 or high < 0), (wins, losses)
    five, twenty = net_win_interval(0, 0, 5), net_win_interval(0, 0, 20)
    assert five[0] < twenty[0] < 0 < twenty[1] < five[1]
    assert pytest.approx(-twenty[0]) == twenty[1]
    low, high = net_win_interval(1, 0, 0)
    assert low < 0
    assert 1.0 == high
    assert all(math.isnan(x) for x in net_win_interval(0, 0, 0))


@pytest.mark.parametrize(
    ("cases", "win", "loss"),
    [(100, 0.3, 0.0), (20, 0.5, 0.0), (50, 0.2, 0.05), (30, 0.3, 0.1), (200, 0.4, 0.05), (20, 0.1, 0.1)],
)
def test_the_net_win_interval_covers_the_true_net_win_rate_95_times_in_100(cases: int, win: float, loss: float):
    """Over many synthetic datasets whose candidate wins a case with chance ``win`` and loses one
    with chance ``loss``, the 95% interval holds the true net win rate ``win - loss`` in at least
    93% of them (a candidate that fixes 30% of cases and breaks none included)."""
    import numpy as np

    rng = np.random.default_rng(cases)
    datasets = 400
    covered = 0
    for wins, losses, ties in rng.multinomial(cases, [win, loss, 1 - win - loss], size=datasets):
        low, high = net_win_interval(int(wins), int(losses), int(ties))
        covered += low <= win - loss <= high
    assert covered / datasets >= 0.93


def paired_result(base: np.ndarray, cand: np.ndarray) -> wf.evals.EvalResult:
    """Variants 'base' and 'cand' scored over many synthetic datasets at once: row d of the score
    arrays is dataset d, kept apart as scorer 'd000', 'd001', ... so one compare() judges them all."""
    datasets, cases = base.shape
    rows = {"base": base, "cand": cand}
    frame = pd.DataFrame(
        {
            "suite": "synthetic",
            "variant": [v for v in rows for _ in range(datasets * cases)],
            "case_id": [f"c{c}" for _ in rows for _ in range(datasets) for c in range(cases)],
            "scorer": [f"d{d:03d}" for _ in rows for d in range(datasets) for _ in range(cases)],
            "value": np.concatenate([base.ravel(), cand.ravel()]),
            "passed": np.concatenate([base.ravel(), cand.ravel()]) >= 0.5,
            "detail": "",
            "run_id": "",
            "run_status": "succeeded",
        }
    )
    return wf.evals.EvalResult(doubler_suite(), frame)


JUDGE_STEPS = np.round(np.arange(0.0, 1.01, 0.1), 1)
JUDGE_ODDS = np.array([0.0, 0.0, 0.0, 0.02, 0.05, 0.08, 0.15, 0.25, 0.25, 0.15, 0.05])


def paired_scores(
    setting: str, rng: np.random.Generator, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Baseline and candidate scores in [0, 1] of one kind of paired graded eval, and the true mean
    difference, exact (never estimated from a sample)."""
    if setting == "judge nudged":  # a judge's 0.1 steps, the candidate a step or two off: mostly ties
        nudges, odds = np.array([-0.1, 0.0, 0.1, 0.2]), np.array([0.15, 0.5, 0.25, 0.1])
        base = rng.choice(JUDGE_STEPS, size=shape, p=JUDGE_ODDS)
        cand = np.clip(base + rng.choice(nudges, size=shape, p=odds), 0.0, 1.0)
        # Enumerate every baseline score and nudge: the clip at 1 makes the true gain less than the mean nudge.
        gains = np.clip(JUDGE_STEPS[:, None] + nudges, 0.0, 1.0) - JUDGE_STEPS[:, None]  # [score, nudge]
        return base, cand, float(JUDGE_ODDS @ gains @ odds)
    if setting == "judge independent":  # uncorrelated: another judge distribution, drawn apart
        better = np.roll(JUDGE_ODDS, 1)
        base = rng.choice(JUDGE_STEPS, size=shape, p=JUDGE_ODDS)
        cand = rng.choice(JUDGE_STEPS, size=shape, p=better)
        return base, cand, float(JUDGE_STEPS @ better - JUDGE_STEPS @ JUDGE_ODDS)
    if setting == "smooth correlated":  # the candidate lifts a low score a little, lowers a high one less
        base = rng.beta(5, 2, size=shape)
        cand = base + (1 - base) * 0.2 * rng.random(shape) - base * 0.1 * rng.random(shape)
        return base, cand, 0.1 * 2 / 7 - 0.05 * 5 / 7  # E[1 - b] = 2/7, E[b] = 5/7 for Beta(5, 2)
    assert setting == "noise only"  # two variants alike: the true difference is 0
    return rng.beta(2, 2, size=shape), rng.beta(2, 2, size=shape), 0.0


@pytest.mark.parametrize("cases", [5, 10, 30, 100])
@pytest.mark.parametrize("setting", ["judge nudged", "judge independent", "smooth correlated", "noise only"])
def test_the_mean_diff_interval_covers_the_true_mean_difference_95_times_in_100(cases: int, setting: str):
    """Over 1000 synthetic paired evals of a graded scorer (a judge's 0.1 steps nudged by the
    candidate, mostly ties; two judges drawn independently; smooth correlated scores; two
    variants alike), compare()'s 95% interval of the mean difference holds the true difference in
    at least 93% of them, with 5 cases as with 100. Measured with these seeds: 98.9% (100 cases,
    noise only) to 100%, an interval that allows for a rare big loss the cases did not show being
    wider than one that assumes none (a paired Student's t held it in 93.3% to 98.3%)."""
    rng = np.random.default_rng(cases)
    base, cand, true = paired_scores(setting, rng, (1000, cases))
    table = paired_result(base, cand).compare("base", "cand")
    assert pytest.approx(cand.mean(axis=1) - base.mean(axis=1)) == table["mean_diff"].to_numpy()
    covered = ((table["mean_diff_low"] <= true) & (true <= table["mean_diff_high"])).mean()
    assert covered >= 0.93


@pytest.mark.parametrize("step", [0.0, 0.1, -0.3, 1e-12])
@pytest.mark.parametrize("cases", [1, 3, 12])
def test_the_mean_diff_interval_of_differences_all_the_same_is_never_a_point(step: float, cases: int):
    """Every case moved by the same step c (or every case tied) shows no spread, yet a few cases
    cannot make the mean difference certain: the interval holds it with room on each side, its
    ends c - (1 + c) z^2 / (n + z^2) and c + (1 - c) z^2 / (n + z^2) for n cases (12 cases each
    0.1 better: about [-0.17, 0.32]); ties get the net win rate's interval of that many ties,
    which is the same, and so does a step of float noise."""
    low, high = mean_diff_interval([step] * cases)
    assert low < step < high
    z2 = 1.959964**2
    assert pytest.approx((step - (1 + step) * z2 / (cases + z2), step + (1 - step) * z2 / (cases + z2))) == (low, high)
    if abs(step) < 1e-9:
        assert pytest.approx(net_win_interval(0, 0, cases), abs=1e-6) == (low, high)


SPREAD_DIFFERENCES = [[0.10, 0.12], [-0.9, 0.9], [0.0] * 11 + [0.1], [0.1, -0.1, 0.2, 0.0, 0.1] * 4, [-0.5, 0.2, 0.3]]


@pytest.mark.parametrize("differences", SPREAD_DIFFERENCES)
def test_the_mean_diff_interval_of_spread_differences_moves_weight_to_a_bound(differences: list[float]):
    """Each end m of the interval is a mean difference the differences' own is z standard errors
    from, the variance at m being that of the differences with the least weight moved to a bound
    (-1, a case the candidate fails and the baseline passes, below their mean; 1 above) that
    makes their mean m: computed here from those weighted values. A lower level narrows it;
    differences all -1, 0 or 1 get the net win rate's interval; no difference gives NaN."""
    n, mean, z = len(differences), statistics.fmean(differences), 1.959964
    low, high = mean_diff_interval(differences)
    assert -1.0 <= low < mean < high <= 1.0
    for end, bound in ((low, -1.0), (high, 1.0)):
        moved = (mean - end) / (mean - bound)  # the weight at the bound that makes the mean `end`
        values = np.array([*differences, bound])
        weights = np.array([(1 - moved) / n] * n + [moved])
        assert pytest.approx(end) == float(weights @ values)
        variance = float(weights @ (values - end) ** 2)
        assert pytest.approx(z * math.sqrt(variance / n), rel=1e-5) == abs(mean - end)
    narrow = mean_diff_interval(differences, level=0.5)
    assert low < narrow[0] < mean < narrow[1] < high
    assert net_win_interval(2, 1, 1) == mean_diff_interval([1.0, -1.0, 0.0, 1.0])
    assert all(math.isnan(x) for x in mean_diff_interval([]))


def test_a_noise_only_mean_difference_has_an_interval_around_0():
    """A judge that moves a step up or down at random over 20 cases: the mean difference of +0.03
    comes with an interval that holds 0 (and that mean), so it reads as noise, not as a gain.
    The same steps all up (14 cases better, none worse) are significant by the sign test, yet 20
    cases cannot rule out a whole point lost in one case of ten, so the mean difference's interval
    still holds 0; over 60 such cases it is above 0."""
    base = np.tile(np.array([0.6, 0.7, 0.8, 0.9, 0.7]), 4)
    steps = np.array([0.1, -0.1, 0.1, 0.0, -0.1, 0.1, 0.2, 0.1, -0.1, 0.0])
    steps = np.concatenate([steps, [0.1, -0.2, 0.1, 0.0, -0.1, 0.1, 0.0, 0.1, 0.1, 0.1]])
    noise = paired_result(base[None, :], (base + steps)[None, :]).compare("base", "cand").iloc[0]
    assert pytest.approx(0.03) == noise["mean_diff"]
    assert noise["mean_diff_low"] < 0 < noise["mean_diff"] < noise["mean_diff_high"]
    assert not noise["significant"]
    gain = paired_result(base[None, :], (base + abs(steps))[None, :]).compare("base", "cand").iloc[0]
    assert gain["significant"]
    assert gain["mean_diff_low"] < 0 < gain["mean_diff"] < gain["mean_diff_high"]
    base, steps = np.tile(base, 3), np.tile(steps, 3)
    gain = paired_result(base[None, :], (base + abs(steps))[None, :]).compare("base", "cand").iloc[0]
    assert 0 < gain["mean_diff_low"] < gain["mean_diff"] < gain["mean_diff_high"]


@pytest.mark.parametrize(("wins", "losses"), [(0, 0), (1, 0), (4, 0), (0, 6), (3, 9), (10, 10), (7, 30), (60, 40)])
def test_sign_test_is_the_two_sided_binomial_tail(wins: int, losses: int):
    """sign_test doubles the smaller binomial(n, 1/2) tail, capped at 1: checked against a direct sum."""
    n = wins + losses
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    assert pytest.approx(min(1.0, 2 * tail)) == sign_test(wins, losses)
    assert sign_test(wins, losses) == sign_test(losses, wins)


def test_sign_test_of_many_pairs_stays_exact():
    """Thousands of pairs (more than a float's 2**1023) give a p-value, not an overflow."""
    assert 0.0 <= sign_test(2400, 2600) < 0.01
    assert 1.0 == sign_test(2500, 2500)


@pytest.mark.parametrize("integral", [np.int64, np.int32, np.uint16, int])
def test_sign_test_and_the_net_win_interval_take_any_integral_counts(integral: Any):
    """numpy integers (counts summed from a frame) give what Python ints give, with no overflow
    warning: 70 to 0 is 2 / 2**70, not 1.0."""
    assert 2 / 2**70 == sign_test(integral(70), integral(0))
    assert sign_test(37, 12) == sign_test(integral(37), integral(12))
    assert net_win_interval(37, 12, 5) == net_win_interval(integral(37), integral(12), integral(5))


@pytest.mark.parametrize("wins", [2.0, np.float64(3), "4", None])
def test_sign_test_and_the_net_win_interval_refuse_counts_that_are_not_integers(wins: Any):
    """A float (even a whole one) or a string is no count: a TypeError saying so and how to fix it."""
    message = rf"wins is a count of cases, a whole number \(an int, or a numpy integer\), got {re.escape(repr(wins))}"
    with pytest.raises(TypeError, match=message):
        sign_test(wins, 1)
    with pytest.raises(TypeError, match=message):
        net_win_interval(wins, 1, 1)


def test_sign_test_and_the_net_win_interval_refuse_negative_counts():
    """A negative count is a ValueError naming it."""
    with pytest.raises(ValueError, match=r"losses is a count of cases, never below 0, got -1"):
        sign_test(np.int64(3), np.int64(-1))
    with pytest.raises(ValueError, match=r"ties is a count of cases, never below 0, got -2"):
        net_win_interval(3, 1, -2)


def test_compare_refuses_an_alpha_outside_0_1():
    """alpha is a significance level: 5 (a percentage) is refused, saying what it takes."""
    with pytest.raises(ValueError, match="alpha is a significance level between 0 and 1"):
        few_wins_result(4, 2).compare("base", "cand", alpha=5)


def test_compare_unknown_variant_is_an_error():
    """compare() names the variants the result has when asked for another."""
    with pytest.raises(ValueError, match="no variant 'nope' in this result; it has base, same, worse"):
        two_variant_result().compare("base", "nope")


def test_check_lists_the_variants_below_a_threshold():
    """check() reports each variant under a scorer's threshold; given thresholds replace the suite's."""
    result = two_variant_result()
    assert ["worse: exact_match:y pass rate 0.0% is below 90.0%"] == result.check()
    assert [] == result.check({"close": 1.0})
    assert ["worse: exact_match:y pass rate 0.0% is below 50.0%"] == result.check({"exact_match:y": 0.5, "close": 0})


def test_the_summary_counts_failed_runs_and_a_missed_threshold_says_how_many_runs_failed():
    """A case whose run did not succeed (its step raised: not the scorer) is counted per variant
    in the summary's last column, failed_runs; a threshold missed says how many runs failed and
    which first, so a crash does not read as wrong answers. Without a failed run nothing is added."""
    rows = [{"id": f"d{x}", "x": x, "expected": {"y": 2 * x}} for x in range(1, 4)]
    rows.append({"id": "d4", "x": None, "expected": {"y": 8}})  # None * 2: the step raises
    result = wf.evals.evaluate(doubler_suite(dataset=rows), progress=False, store=False)
    assert "failed_runs" == result.summary.columns[-1]
    summary = result.summary.loc[("default", "exact_match:y")]
    assert [4, 0, 1, 0.75] == summary[["cases", "unscored", "failed_runs", "pass_rate"]].tolist()
    assert [
        "default: exact_match:y pass rate 75.0% is below 90.0% (1 of 4 runs did not succeed: the first, "
        "case 'd4', failed)"
    ] == result.check({"exact_match:y": 0.9})
    assert [] == result.check({"exact_match:y": 0.75})
    fine = wf.evals.evaluate(doubler_suite(), progress=False, store=False)
    assert 0 == fine.summary.loc[("default", "exact_match:y"), "failed_runs"]
    assert ["default: exact_match:y pass rate 75.0% is below 90.0%"] == fine.check({"exact_match:y": 0.9})


def test_plot_shows_pass_rates_with_their_intervals():
    """plot(): one Axes, a dot per scorer and variant at its pass rate, error bars spanning the
    Wilson interval, on a 0-1 axis; metric="mean" uses the mean and its interval."""
    result = two_variant_result()
    ax = result.plot()
    assert isinstance(ax, Axes)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert ["close · base", "close · same", "close · worse"] == labels[:3]
    assert ["base", "same", "worse", "threshold (check)"] == [t.get_text() for t in ax.get_legend().get_texts()]
    assert "pass rate, 95% Wilson interval" == ax.get_xlabel()
    first = result.summary.loc[("base", "close")]
    (dot,) = [line for line in ax.get_lines() if len(line.get_xdata()) == 1][:1]
    assert pytest.approx(first["pass_rate"]) == dot.get_xdata()[0]
    bars = ax.collections[0].get_segments()[0]
    assert pytest.approx([first["pass_low"], first["pass_high"]]) == [bars[0][0], bars[1][0]]
    means = result.plot(metric="mean", ax=Figure().subplots())
    assert "mean score, 95% interval" == means.get_xlabel()
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="metric must be 'pass_rate' or 'mean'"):
        result.plot(metric="median")


def test_pass_rates_carry_a_wilson_interval():
    """20 of 20 passes is not certainty: the interval's low end is about 0.84, not 1.0."""
    assert (pytest.approx(0.8389, abs=1e-4), 1.0) == wilson_interval(20, 20)
    low, high = wilson_interval(10, 20)
    assert low < 0.5 < high
    assert pytest.approx(1.0) == low + high
    assert all(v != v for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match=r"passed must be within 0\.\.total"):
        wilson_interval(3, 2)
    result = two_variant_result()
    row = result.summary.iloc[0]
    assert (row["pass_low"], row["pass_high"]) == wilson_interval(
        round(row["pass_rate"] * row["cases"]), int(row["cases"])
    )


@pytest.mark.parametrize("total", [10, 13, 34, 40, 199])
def test_a_wilson_interval_at_none_or_all_passed_ends_at_0_or_1_exactly(total: int) -> None:
    """0 of 10 passed had a low end of 2.8e-17 (13 of 13 a high end of 0.9999999999999999): a summary
    printed 2.775558e-17, turning its whole column to scientific notation. The ends are exact."""
    assert 0.0 == wilson_interval(0, total)[0]
    assert 1.0 == wilson_interval(total, total)[1]
    assert 0.0 == mean_interval([0.0] * total)[0]
    assert 1.0 == mean_interval([1.0] * total)[1]


def test_result_reprs_show_the_summary():
    """The text and HTML reprs name the suite and show the summary."""
    result = wf.evals.evaluate(doubler_suite(), progress=False, store=False)
    assert repr(result).startswith("<EvalResult doubler: 4 cases>")
    assert "pass_rate" in repr(result)
    assert result._repr_html_().startswith("<b>eval doubler</b><table")


@pytest.mark.parametrize("cases", [2, 3, 5, 20])
@pytest.mark.parametrize("scores", ["beta", "judge"])
def test_the_mean_interval_of_a_graded_score_covers_the_true_mean_95_times_in_100(cases: int, scores: str):
    """Over many synthetic evaluations of a graded scorer (a smooth score, or a judge's 0.1 steps
    that tie often), the summary's 95% interval of the mean holds the true mean in at least 90%
    of them, with 2 cases as with 20: never a narrow interval that a few cases cannot give."""
    import numpy as np

    rng = np.random.default_rng(cases)
    steps = np.round(np.arange(0.0, 1.01, 0.1), 1)
    judge = np.array([0.0, 0.0, 0.0, 0.02, 0.05, 0.08, 0.15, 0.25, 0.25, 0.15, 0.05])
    draw = {
        "beta": lambda size: rng.beta(5, 2, size=size),
        "judge": lambda size: rng.choice(steps, size=size, p=judge),
    }[scores]
    true_mean = {"beta": 5 / 7, "judge": float(steps @ judge)}[scores]
    datasets = 400
    values = draw((datasets, cases))
    frame = pd.DataFrame(
        {
            "suite": "synthetic",
            "variant": [f"v{d:03d}" for d in range(datasets) for _ in range(cases)],
            "case_id": [f"c{c}" for _ in range(datasets) for c in range(cases)],
            "scorer": "graded",
            "value": values.ravel(),
            "passed": values.ravel() >= 0.5,
            "detail": "",
            "run_id": "",
            "run_status": "succeeded",
        }
    )
    summary = wf.evals.EvalResult(doubler_suite(), frame).summary
    covered = ((summary["ci_low"] <= true_mean) & (true_mean <= summary["ci_high"])).mean()
    assert covered >= 0.9


def rare_low_scores(
    kind: str, rare: float, rng: np.random.Generator, shape: tuple[int, int]
) -> tuple[np.ndarray, float]:
    """Scores in [0, 1] mostly high, a share ``rare`` of them low, and their true mean (exact):
    pass/fail with partial credit (1.0, or 0.9 one time in five, or a rare 0.0), a judge's steps
    (0.7 to 1.0, or a rare 0.0 to 0.3), or smooth scores (Beta(20, 2), or a rare Beta(1, 5))."""
    low = rng.random(shape) < rare
    if kind == "partial credit":
        high = np.where(rng.random(shape) < 0.2, 0.9, 1.0)
        return np.where(low, 0.0, high), (1 - rare) * 0.98
    if kind == "judge":
        high = rng.choice([0.7, 0.8, 0.9, 1.0], size=shape, p=[0.1, 0.2, 0.3, 0.4])
        return np.where(low, rng.choice([0.0, 0.1, 0.2, 0.3], size=shape), high), (1 - rare) * 0.9 + rare * 0.15
    assert kind == "smooth"
    return np.where(low, rng.beta(1, 5, size=shape), rng.beta(20, 2, size=shape)), (1 - rare) * 20 / 22 + rare / 6


@pytest.mark.parametrize("kind", ["partial credit", "judge", "smooth"])
def test_the_mean_interval_covers_the_true_mean_when_low_scores_are_rare(kind: str):
    """Scores mostly high with a rare low one (2% to 20% of cases) are where a few cases show no
    low score and Student's t, seeing little spread, claimed a narrow interval (it held the true
    mean in as few as 54% of these seeded evals, mostly 80% to 90%). Over 1000 seeded synthetic
    evals of each of 5, 10, 20 and 50 cases, the 95% interval of the mean now holds it in at least
    93% of each (measured with these seeds: 93.7% to 99.5%), and is never wider than Wilson's
    interval of a pass rate with that mean, the most a [0, 1] score with that mean can spread."""
    missed, wider = [], 0
    for cases in (5, 10, 20, 50):
        for rare in (0.02, 0.05, 0.1, 0.2):
            rng = np.random.default_rng([cases, round(rare * 100)])
            scores, true_mean = rare_low_scores(kind, rare, rng, (1000, cases))
            intervals = np.array([mean_interval(row) for row in scores])
            covered = float(((intervals[:, 0] <= true_mean) & (true_mean <= intervals[:, 1])).mean())
            if covered < 0.93:
                missed.append(f"{cases} cases, {rare:.0%} rare: {covered:.1%}")
            wilson = np.array([_wilson(float(row.mean()), cases, 0.95) for row in scores])
            wider += int(((intervals[:, 0] < wilson[:, 0] - 1e-12) | (wilson[:, 1] + 1e-12 < intervals[:, 1])).sum())
    assert ([], 0) == (missed, wider)


@pytest.mark.parametrize("constant", [0.0, 0.1, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("cases", [1, 2, 12])
def test_the_mean_interval_of_scores_all_the_same_is_never_a_point(constant: float, cases: int):
    """Scores all the same show no spread, yet a few cases cannot make their mean certain: the
    interval holds the mean with room on each side (but 0 and 1), its ends n c / (n + z^2) and
    1 - n (1 - c) / (n + z^2) for n cases of c (12 of 0.5: about [0.38, 0.62]); for 0 or 1, Wilson's."""
    low, high = mean_interval([constant] * cases)
    assert low <= constant <= high
    assert low < constant or constant == 0.0
    assert constant < high or constant == 1.0
    z2 = 1.959964**2
    assert pytest.approx((cases * constant / (cases + z2), 1 - cases * (1 - constant) / (cases + z2))) == (low, high)
    if constant in (0.0, 1.0):
        assert wilson_interval(round(constant * cases), cases) == (low, high)


SPREAD = [[0.70, 0.72], [0.25 * (i % 5) for i in range(20)], [1.0] * 18 + [0.9, 0.8], [0.1, 0.9], [0.3] * 5 + [0.0]]


@pytest.mark.parametrize("scores", SPREAD)
def test_the_mean_interval_of_spread_scores_is_the_score_interval_of_weight_moved_to_a_bound(scores: list[float]):
    """Each end m of the interval is a mean the scores' own is z standard errors from, the variance
    at m being that of the scores with the least weight moved to a bound (0 below their mean, 1
    above) that makes their mean m: computed here from those weighted values. A lower level
    narrows it; 0/1 scores get Wilson's; no score gives NaN."""
    n, mean, z = len(scores), statistics.fmean(scores), 1.959964
    low, high = mean_interval(scores)
    assert 0.0 <= low < mean < high <= 1.0
    for end, bound in ((low, 0.0), (high, 1.0)):
        moved = (mean - end) / (mean - bound)  # the weight at the bound that makes the mean `end`
        values = np.array([*scores, bound])
        weights = np.array([(1 - moved) / n] * n + [moved])
        assert pytest.approx(end) == float(weights @ values)
        variance = float(weights @ (values - end) ** 2)
        assert pytest.approx(z * math.sqrt(variance / n), rel=1e-5) == abs(mean - end)
    narrow = mean_interval(scores, level=0.5)
    assert low < narrow[0] < mean < narrow[1] < high
    assert wilson_interval(3, 4) == mean_interval([1.0, 0.0, 1.0, 1.0])
    assert all(math.isnan(v) for v in mean_interval([]))


# --- the command line -----------------------------------------------------------------------

SUITE_FILE = """
from typing import Any

import wfkit as wf

flow = wf.Workflow("cli-doubler")


@flow.step
def double(state: Any) -> dict[str, Any]:
    return {"y": state["x"] * 2}


suite = wf.evals.Suite(
    name="cli-doubler",
    dataset="cases.jsonl",
    workflow=flow,
    scorers=[wf.evals.exact_match("y")],
    thresholds=THRESHOLDS,
)
"""


def cli_suite(folder: Path, thresholds: dict[str, float], *, wrong: int = 0) -> Path:
    """A suite folder of the doubler with the given thresholds (``wrong``: cases expecting a wrong answer)."""
    folder.mkdir()
    (folder / "suite.py").write_text(SUITE_FILE.replace("THRESHOLDS", repr(thresholds)))
    cases = [{"id": f"c{x}", "x": x, "expected": {"y": 2 * x + (x < wrong)}} for x in range(3)]
    write_jsonl(folder / "cases.jsonl", cases)
    return folder


def test_cli_eval_json(capsys: pytest.CaptureFixture[str], workspace: Path):
    """`wfkit eval evals/query_router --json` exits 0 and prints the summary as JSON."""
    assert 0 == main(["eval", str(QUERY_ROUTER), "--json", "--concurrency", "4"])
    out = json.loads(capsys.readouterr().out)
    assert {"summary", "compare", "check", "saved_to"} == set(out)
    assert [] == out["check"]
    assert 8 == len(out["summary"])
    assert {"variant", "scorer", *SUMMARY_COLUMNS} == set(out["summary"][0])
    assert {("keywords", "route_taken"), ("llm", "tools_used")} <= {(r["variant"], r["scorer"]) for r in out["summary"]}
    saved = Path(out["saved_to"])
    assert workspace / "evals" / "query-router" == saved.parent
    assert 160 == len(pd.read_parquet(saved / "cases.parquet"))


def test_cli_eval_text_compares_two_variants(capsys: pytest.CaptureFixture[str]):
    """Without --json the summary, the second variant against the first and the folder are printed."""
    assert 0 == main(["eval", str(SUPPORT / "suite.py")])
    out = capsys.readouterr().out
    assert "pass_rate" in out
    assert (
        "reject vs approve (net_win_rate: (wins - losses) / cases, with its 95% interval for paired cases; "
        "p_value: exact sign test of wins against losses; significant below 0.05; "
        "mean_diff_low, mean_diff_high: the mean difference's 95% interval, allowing for a "
        "rare big loss unseen (for 0/1 scores, the net win rate's)):"
    ) in out
    # 0/1 scores: the mean difference's interval is the net win rate's.
    row = r"exact_match:resolution\s+0\s+2\s+6\s+0\s+-0\.25\s+-0\.25\s+-0\.591\s+0\.156\s+0\.5\s+False"
    row += r"\s+-0\.591\s+0\.156"
    assert re.search(row, out)
    assert "saved to " in out


def test_cli_eval_one_variant(capsys: pytest.CaptureFixture[str]):
    """--variant restricts the evaluation to the named variants."""
    assert 0 == main(["eval", str(SUPPORT), "--variant", "reject", "--json"])
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert {"reject"} == {row["variant"] for row in summary}


def test_cli_eval_fails_below_a_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A variant under a threshold exits 1 and prints the failure on stderr."""
    folder = cli_suite(tmp_path / "missed", {"exact_match:y": 0.9}, wrong=1)
    assert 1 == main(["eval", str(folder), "--json"])
    captured = capsys.readouterr()
    assert "check: default: exact_match:y pass rate 66.7% is below 90.0%" in captured.err
    assert 3 == json.loads(captured.out)["summary"][0]["cases"]
    # In the JSON too: a CI job reading it learns why the command failed, not only that it did.
    assert ["default: exact_match:y pass rate 66.7% is below 90.0%"] == json.loads(captured.out)["check"]


def test_cli_eval_fails_when_the_dataset_lacks_an_expected_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A case without the expected value its scorer needs is not a failed case: the command exits 1
    and says which case lacks what, and how to fix it."""
    folder = cli_suite(tmp_path / "gap", {})
    write_jsonl(folder / "cases.jsonl", [{"id": "c0", "x": 0, "expected": {"y": 0}}, {"id": "c1", "x": 1}])
    assert 1 == main(["eval", str(folder), "--json"])
    captured = capsys.readouterr()
    assert (
        "check: default: exact_match:y could not score 1 of 2 cases (c1: scorer error: KeyError: "
        "\"case 'c1' has no expected 'y'; add it to the dataset or pass expected=... (it has no expected values)\")"
    ) in captured.err
    summary = json.loads(captured.out)["summary"][0]
    assert [2, 1, 1.0] == [summary["cases"], summary["unscored"], summary["pass_rate"]]


def test_a_misspelt_expected_column_names_the_one_the_case_has(tmp_path: Path, workspace: Path) -> None:
    """A sheet whose column says expected.yy, scored by exact_match("y"), left every case unscored
    saying only "case 'c0' has no expected 'y'", though the case had an expected value under the
    misspelt name; the detail now names the closest key and the case's expected values."""
    sheet = tmp_path / "cases.csv"
    sheet.write_text("id,x:json,expected.yy:json\nc0,1,2\nc1,2,4\n", encoding="utf-8")
    suite = wf.evals.Suite(name="sheet", dataset=sheet, workflow=doubler(), scorers=[wf.evals.exact_match("y")])
    result = wf.evals.evaluate(suite, progress=False)
    assert [
        f"scorer error: KeyError: \"case '{case}' has no expected 'y' (did you mean 'yy'?); add it to the dataset or "
        'pass expected=... (its expected values: yy)"'
        for case in ("c0", "c1")
    ] == list(result.cases["detail"])
    assert 2 == int(result.summary["unscored"].iloc[0])


def test_cli_eval_passes_a_reachable_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The same suite with a reachable threshold exits 0 and prints no threshold failure."""
    folder = cli_suite(tmp_path / "fine", {"exact_match:y": 1.0})
    assert 0 == main(["eval", str(folder)])
    assert "threshold" not in capsys.readouterr().err


def test_cli_eval_of_a_suite_whose_dataset_is_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`wfkit eval` on a suite folder whose dataset is a sheet exported as CSV scores its cases (a
    ':json' column gives numbers), and a bad cell exits 1 naming the file, its line and column."""
    folder = cli_suite(tmp_path / "sheet", {"exact_match:y": 1.0})
    suite_file = folder / "suite.py"
    suite_file.write_text(suite_file.read_text().replace('"cases.jsonl"', '"cases.csv"'))
    (folder / "cases.csv").write_text("id,x:json,expected.y:json\r\nc0,0,0\r\nc1,1,2\r\nc2,7,14\r\n")
    assert 0 == main(["eval", str(folder), "--json"])
    summary = json.loads(capsys.readouterr().out)["summary"][0]
    assert [3, 1.0] == [summary["cases"], summary["pass_rate"]]
    (folder / "cases.csv").write_text("id,x:json,expected.y:json\nc0,0,0\nc1,one,2\n")
    assert 1 == main(["eval", str(folder)])
    err = capsys.readouterr().err
    assert err.startswith(f"wfkit eval: {folder / 'cases.csv'}: line 3, column B ('x:json'): not JSON (")
    assert "Traceback" not in err


def test_cli_eval_of_a_file_defining_no_suite_says_so_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """`wfkit eval` on a suite.py that defines no `suite` exits 1 with the message saying what to
    define, as for a missing file; it printed a TypeError's traceback."""
    (tmp_path / "suite.py").write_text("x = 1\n")
    assert 1 == main(["eval", str(tmp_path)])
    err = capsys.readouterr().err
    assert (
        f"wfkit eval: {tmp_path / 'suite.py'} must define `suite = wf.evals.Suite(...)` (import wfkit as wf); "
        "it does not define `suite`\n"
    ) == err
    with pytest.raises(wf.SuiteFileError):  # a TypeError still, for code that caught one
        wf.evals.load_suite(tmp_path)


def test_cli_eval_of_a_suite_whose_dataset_is_missing_names_the_suite_and_the_files_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """`wfkit eval` on a suite naming a dataset file that is not there names the suite, the path and
    the dataset files its folder holds, where it printed only "[Errno 2] No such file or directory"."""
    folder = cli_suite(tmp_path / "renamed", {})
    (folder / "cases.jsonl").rename(folder / "case.jsonl")
    assert 1 == main(["eval", str(folder)])
    assert (
        f"wfkit eval: suite 'cli-doubler': no dataset at {folder / 'cases.jsonl'}; {folder} holds case.jsonl "
        "(did you mean 'case.jsonl'?): name a file that exists\n"
    ) == capsys.readouterr().err
    (folder / "case.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"; .*renamed holds no dataset file \(JSONL: \.jsonl"):
        wf.evals.load_suite(folder).cases()


def test_a_missing_dataset_in_the_current_folder_names_it_so_and_at_most_eight_files_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A dataset named without a folder is looked for in the current one, which the message names
    as such (not "."), listing eight of its dataset files and the one meant, as a flow spec's does."""
    monkeypatch.chdir(tmp_path)
    for number in range(10):
        write_jsonl(tmp_path / f"cases-{number}.jsonl", [{"x": number}])
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(FileNotFoundError) as raised:
        wf.evals.load_dataset("cases-11.jsonl")
    assert (
        "no dataset at cases-11.jsonl; the current folder holds cases-0.jsonl, cases-1.jsonl, cases-2.jsonl, "
        "cases-3.jsonl, cases-4.jsonl, cases-5.jsonl, cases-6.jsonl, cases-7.jsonl ... (did you mean "
        "'cases-1.jsonl'?): name a file that exists"
    ) == str(raised.value)


def test_cases_lacking_an_input_say_which_key_looks_meant_for_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A case lacking a declared input names a key of its own spelt close to it, and an `input`
    object written for `inputs` (read as one input named "input"), so the typo is found at once."""
    folder = cli_suite(tmp_path / "typos", {})
    suite_file = folder / "suite.py"
    suite_file.write_text(
        suite_file.read_text().replace('wf.Workflow("cli-doubler")', 'wf.Workflow("cli-doubler", inputs=["x"])')
    )
    write_jsonl(folder / "cases.jsonl", [{"id": "c0", "input": {"x": 0}}, {"id": "c1", "xx": 1}, {"id": "c2", "y": 2}])
    assert 1 == main(["eval", str(folder)])
    assert (
        "case 'c0' (line 1) lacks 'x' (it has 'input', read as one input of that name: a case's inputs go under "
        "'inputs'); case 'c1' (line 2) lacks 'x' (it has 'xx'); case 'c2' (line 3) lacks 'x'. Give every case"
    ) in capsys.readouterr().err


def test_cli_eval_refuses_cases_lacking_declared_inputs_before_any_runs(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
):
    """`wfkit eval` on a suite whose workflow declares an input some cases lack exits 1 with one
    message naming the file, the cases and their lines, and runs nothing."""
    folder = cli_suite(tmp_path / "undeclared", {})
    suite_file = folder / "suite.py"
    suite_file.write_text(
        suite_file.read_text().replace('wf.Workflow("cli-doubler")', 'wf.Workflow("cli-doubler", inputs=["x"])')
    )
    write_jsonl(folder / "cases.jsonl", [{"id": "c0", "x": 0}, {"id": "c1", "y": 1}, {"id": "c2", "inputs": {}}])
    assert 1 == main(["eval", str(folder)])
    err = capsys.readouterr().err
    assert err.startswith(
        f"wfkit eval: suite 'cli-doubler': 2 cases of the dataset {folder / 'cases.jsonl'} lack inputs that "
        "workflow 'cli-doubler' declares: case 'c1' (line 2) lacks 'x'; case 'c2' (line 3) lacks 'x'. Give every case"
    )
    assert "Traceback" not in err
    assert not (workspace / "evals").exists()


def test_cli_eval_refuses_a_dataset_row_of_the_wrong_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`wfkit eval` on a suite whose dataset has an 'expected' that is a list exits 1 naming the
    file, the line, the case and the field, with no traceback."""
    folder = cli_suite(tmp_path / "shapes", {})
    write_jsonl(
        folder / "cases.jsonl", [{"id": "c0", "x": 0, "expected": {"y": 0}}, {"id": "c1", "x": 1, "expected": [2]}]
    )
    assert 1 == main(["eval", str(folder)])
    err = capsys.readouterr().err
    assert err.startswith(
        f"wfkit eval: suite 'cli-doubler': the dataset {folder / 'cases.jsonl'} has 1 case of the wrong shape "
        "(fix it, and evaluate again): line 2, case 'c1': 'expected' is a list ([2]), not an object"
    )
    assert "Traceback" not in err


def test_cli_eval_names_every_kind_of_dataset_problem_in_one_error(tmp_path: Path, workspace: Path):
    """`wfkit eval` on a dataset with a row of the wrong shape, a duplicate id and a case lacking
    an input exits 1 naming all three (each with its line and how to fix it), not one kind a run,
    and runs nothing."""
    folder = cli_suite(tmp_path / "three", {})
    suite_file = folder / "suite.py"
    suite_file.write_text(
        suite_file.read_text().replace('wf.Workflow("cli-doubler")', 'wf.Workflow("cli-doubler", inputs=["x"])')
    )
    rows = [
        {"id": "c0", "x": 0},
        {"id": "c1", "x": 1, "expected": [2]},
        {"id": "c0", "x": 2},
        {"id": "c3", "xx": 3},
    ]
    write_jsonl(folder / "cases.jsonl", rows)
    done = subprocess.run(
        [sys.executable, "-m", "wfkit", "eval", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert 1 == done.returncode
    assert (
        f"wfkit eval: suite 'cli-doubler': the dataset {folder / 'cases.jsonl'} has problems of 3 kinds (fix them "
        "all, and evaluate again; no case was run):\n"
        "- 1 case of the wrong shape: line 2, case 'c1': 'expected' is a list ([2]), not an object of the values "
        'expected of the run, e.g. {"answer": "..."} (leave \'expected\' out when nothing is expected)\n'
        "- case ids must be unique in a dataset, but 'c0' is the id of lines 1 and 3 (a case without an id takes "
        "its position as its id): give each case an id of its own\n"
        "- 1 case lacks inputs that workflow 'cli-doubler' declares: case 'c3' (line 4) lacks 'x' (it has 'xx'). "
        'Give every case the inputs its workflow declares (in a flat row, as keys beside "id" and "expected"), '
        "or leave out of Workflow(..., inputs=...) those it can do without\n"
    ) == done.stderr
    assert not (workspace / "evals").exists()


def test_load_dataset_counts_a_misshapen_rows_id_among_the_duplicates_and_caps_each_kind(tmp_path: Path):
    """A row of the wrong shape whose id another row holds is named in both kinds (its id clashes
    once its shape is fixed); each kind names five and counts the rest."""
    rows = [{"id": f"s{n}", "x": n, "expected": n} for n in range(7)]
    rows += [{"id": f"s{n}", "x": n} for n in range(7)]
    with pytest.raises(ValueError) as raised:
        wf.evals.load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    shape, ids = str(raised.value).split("\n")[1:]
    assert shape.startswith("- 7 cases of the wrong shape: line 1, case 's0': 'expected' is a number (0)")
    assert shape.endswith(
        "line 5, case 's4': 'expected' is a number (4), not an object of the values expected "
        'of the run, e.g. {"answer": "..."} (leave \'expected\' out when nothing is expected); and 2 more'
    )
    assert (
        "- case ids must be unique in a dataset, but 's0' is the id of lines 1 and 8, 's1' of lines 2 and 9, "
        "'s2' of lines 3 and 10, 's3' of lines 4 and 11, 's4' of lines 5 and 12, and 2 more ids (a case without "
        "an id takes its position as its id): give each case an id of its own"
    ) == ids


def test_cli_eval_counts_failed_runs_in_the_summary_and_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`wfkit eval` shows failed_runs in the summary (JSON and text), and a threshold missed says how
    many runs failed."""
    folder = cli_suite(tmp_path / "crash", {"exact_match:y": 0.9})
    rows = [{"id": "c0", "x": 0, "expected": {"y": 0}}, {"id": "c1", "x": 1, "expected": {"y": 2}}]
    write_jsonl(folder / "cases.jsonl", [*rows, {"id": "c2", "x": None, "expected": {"y": 4}}])  # None * 2 raises
    assert 1 == main(["eval", str(folder), "--json"])
    captured = capsys.readouterr()
    assert 1 == json.loads(captured.out)["summary"][0]["failed_runs"]
    assert (
        "check: default: exact_match:y pass rate 66.7% is below 90.0% (1 of 3 runs did not succeed: the first, "
        "case 'c2', failed)"
    ) in captured.err
    assert 1 == main(["eval", str(folder)])
    assert re.search(r"failed_runs\n.*\ndefault\s+exact_match:y\s.*\s1\n", capsys.readouterr().out)


def test_cli_eval_unknown_variant_is_a_clear_error(capsys: pytest.CaptureFixture[str]):
    """An unknown --variant exits 1 with a message naming the variants, not a traceback."""
    assert 1 == main(["eval", str(QUERY_ROUTER), "--variant", "nope"])
    assert "has no variant 'nope'; it has keywords, llm" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    """pyplot keeps every figure it made: close them after each test."""
    yield
    plt.close("all")


def test_a_threshold_for_no_scorer_is_refused_listing_the_scorers():
    """A threshold named after no scorer ("exact_match" for "exact_match:y") is an error, never
    ignored: when the suite is built, before any case runs (it was found only by check(), after the
    whole evaluation), and by check() for thresholds passed to it."""
    expected = r"suite 'doubler': threshold\(s\) for 'exact_match' \(did you mean 'exact_match:y'\?\) match no scorer; "
    expected += "its scorers are: 'exact_match:y'"
    with pytest.raises(ValueError, match=expected):
        doubler_suite(thresholds={"exact_match": 0.9})
    result = wf.evals.evaluate(doubler_suite(thresholds={"exact_match:y": 0.5}))
    with pytest.raises(ValueError, match=expected):
        result.check({"exact_match": 0.9})


@pytest.mark.parametrize("limit", [90, -0.1, "0.9", float("nan"), True])
def test_a_threshold_is_a_pass_rate_between_0_and_1(limit: Any) -> None:
    """90 (a percentage) or a string would fail or pass everything: refused when the suite is built."""
    with pytest.raises(ValueError, match=r"the threshold for 'exact_match:y' is a pass rate between 0 and 1"):
        doubler_suite(thresholds={"exact_match:y": limit})


@pytest.mark.parametrize(
    ("limit", "hint"),
    [
        (80, r", got 80 \(for 80%, give 0\.8\)"),
        (-0.1, ", got -0.1$"),
        (1.01, ", got 1.01$"),
        (float("nan"), ", got nan$"),
    ],
)
def test_check_refuses_a_threshold_outside_a_pass_rate_s_range(limit: float, hint: str) -> None:
    """check(thresholds=) holds its thresholds to the range the suite's are held to: 80 (meant as
    80%) failed every variant as "below 8000.0%", a negative passed every one, whatever it scored."""
    result = wf.evals.evaluate(doubler_suite(), progress=False, store=False)
    with pytest.raises(
        ValueError, match=r"^suite 'doubler': the threshold for 'exact_match:y' is a pass rate between 0 and 1" + hint
    ):
        result.check({"exact_match:y": limit})


def test_check_refuses_a_threshold_of_no_scorer_naming_the_closest() -> None:
    """A misspelt scorer in check(thresholds=) is refused with the scorers' names and the closest one."""
    result = wf.evals.evaluate(doubler_suite(), progress=False, store=False)
    with pytest.raises(
        ValueError,
        match=r"^suite 'doubler': threshold\(s\) for 'exact_match:x' \(did you mean 'exact_match:y'\?\) match no "
        r"scorer; its scorers are: 'exact_match:y'",
    ):
        result.check({"exact_match:x": 0.9})


def test_a_scorer_detail_quoting_a_key_is_redacted_in_the_result_and_its_files(tmp_path: Path) -> None:
    """A scorer detail that quotes a key-shaped output is stored and shown as [REDACTED], never raw."""
    key = "sk-" + "d4" * 12

    def quoting(case: Case, run: wf.Run) -> wf.evals.Score:
        return wf.evals.Score(0.0, False, f"output leaked {key}")

    result = wf.evals.evaluate(doubler_suite(scorers=[quoting]), workspace=tmp_path)
    assert {"output leaked [REDACTED]"} == set(result.cases["detail"])
    folder = result.save(tmp_path)
    assert key not in pd.read_parquet(folder / "cases.parquet").to_string()


def test_the_mean_of_a_pass_fail_score_carries_a_wilson_interval_and_a_graded_one_its_own():
    """A 0/1 scorer's mean is a proportion: at 20 passes in 20 its interval is Wilson's (~[0.84, 1.0]),
    never [1.0, 1.0]; a graded score gets the interval of its mean, :func:`mean_interval`."""
    rows = [{"id": f"c{x}", "x": x, "expected": {"y": 2 * x}} for x in range(20)]
    graded = wf.evals.custom(lambda case, run: (case.inputs["x"] % 4) / 4, name="graded")
    suite = doubler_suite(dataset=rows, scorers=[wf.evals.exact_match("y"), graded])
    result = wf.evals.evaluate(suite, progress=False, store=False)
    exact = result.summary.loc[("default", "exact_match:y")]
    assert (1.0, 20) == (exact["mean"], exact["cases"])
    assert wilson_interval(20, 20) == (exact["ci_low"], exact["ci_high"])
    assert (exact["pass_low"], exact["pass_high"]) == (exact["ci_low"], exact["ci_high"])
    values = result.cases.loc[result.cases["scorer"] == "graded", "value"].tolist()
    row = result.summary.loc[("default", "graded")]
    assert mean_interval(values) == (row["ci_low"], row["ci_high"])
    assert row["ci_low"] < row["mean"] < row["ci_high"]


def rare_losses(kind: str, rare: float, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Paired differences (candidate minus baseline) of two variants mostly alike, the candidate
    losing big on a share ``rare`` of cases, and their true mean (exact): pass/fail with partial
    credit (1.0, or 0.9 one time in five, each on its own; a rare candidate 0.0), a judge's steps (0.6 to 0.9,
    the candidate a step off either way or tied; a rare candidate 0.0 to 0.3), or smooth scores
    (Beta(20, 2), the candidate up to 10% lower; a rare candidate Beta(1, 5))."""
    low = rng.random(shape) < rare
    if kind == "partial credit":
        base, cand = np.where(rng.random((2, *shape)) < 0.2, 0.9, 1.0)
        return np.where(low, 0.0, cand) - base, -rare * 0.98
    if kind == "judge":
        base = rng.choice([0.6, 0.7, 0.8, 0.9], size=shape, p=[0.1, 0.2, 0.3, 0.4])
        cand = base + rng.choice([-0.1, 0.0, 0.1], size=shape, p=[0.2, 0.6, 0.2])
        return np.where(low, rng.choice([0.0, 0.1, 0.2, 0.3], size=shape), cand) - base, rare * (0.15 - 0.8)
    assert kind == "smooth"
    base = rng.beta(20, 2, size=shape)
    cand = np.where(low, rng.beta(1, 5, size=shape), base * (1 - 0.1 * rng.random(shape)))
    return cand - base, (1 - rare) * -0.05 * 20 / 22 + rare * (1 / 6 - 20 / 22)


DATASETS = 250


@pytest.mark.parametrize("kind", ["partial credit", "judge", "smooth"])
def test_the_mean_diff_interval_covers_the_true_difference_when_big_losses_are_rare(kind: str):
    """Two variants mostly alike, one losing big on a rare case (2% to 20% of cases), are where a
    few cases show no such loss and a paired Student's t, seeing little spread, claimed a narrow
    interval (it held the true mean difference in as few as 42% of these seeded evals). Over 1000
    seeded synthetic evals of each of 5, 10, 20 and 50 cases, the 95% interval of the mean
    difference now holds it in at least 93% of each, whichever variant is the candidate (measured
    with these seeds: 97% to 100%), and is never wider than Wilson's interval of a pass rate with
    mean (1 + difference) / 2 stretched to [-1, 1], the most a difference in [-1, 1] can spread."""
    missed, wider = [], 0
    for cases in (5, 10, 20, 50):
        for rare in (0.02, 0.05, 0.1, 0.2):
            rng = np.random.default_rng([cases, round(rare * 100), 7])
            differences, true = rare_losses(kind, rare, rng, (DATASETS, cases))
            for sign in (1, -1):  # the candidate losing big, then the baseline
                # Each distinct set of differences once (their order never matters): fewer calls, the same intervals.
                distinct, each = np.unique(np.sort(sign * differences, axis=1), axis=0, return_inverse=True)
                intervals = np.array([mean_diff_interval(row) for row in distinct])[each.ravel()]
                covered = float(((intervals[:, 0] <= sign * true) & (sign * true <= intervals[:, 1])).mean())
                if covered < 0.93:
                    missed.append(f"{cases} cases, {rare:.0%} rare, sign {sign}: {covered:.1%}")
                wilson = 2 * np.array([_wilson((1 + float(row.mean())) / 2, cases, 0.95) for row in distinct]) - 1
                low, high = wilson[each.ravel()].T
                wider += int(((intervals[:, 0] < low - 1e-12) | (high + 1e-12 < intervals[:, 1])).sum())
    assert ([], 0) == (missed, wider)


def test_scorers_sharing_a_name_are_refused_when_the_suite_is_built():
    """Two scorers of one name (two lambdas, both '<lambda>'; one field scored twice) are refused,
    naming them and how to tell them apart: their rows shared a name, so the summary counted 8
    cases of a 4-case dataset, its mean the two scorers' mixed, and compare() failed with pandas'
    "Index contains duplicate entries, cannot reshape" after every case had run."""
    expected = (
        r"suite 'doubler': 2 scorers are named '<lambda>' \(scorers 1 and 2\); a result keeps one row per case "
        r"and scorer name: give each its own, e.g. wf.evals.custom\(fn, name='\.\.\.'\)"
    )
    with pytest.raises(ValueError, match=expected):
        doubler_suite(scorers=[wf.evals.custom(lambda case, run: 1.0), wf.evals.custom(lambda case, run: 0.0)])
    twice = [wf.evals.exact_match("y"), wf.evals.contains("y"), wf.evals.exact_match("y", 8)]
    with pytest.raises(ValueError, match=r"2 scorers are named 'exact_match:y' \(scorers 1 and 3\)"):
        doubler_suite(scorers=twice)
    named = [wf.evals.exact_match("y"), wf.evals.exact_match("y", 8, name="y_is_8")]
    result = wf.evals.evaluate(doubler_suite(scorers=named), progress=False)
    assert [4, 4] == result.summary["cases"].tolist()


def test_a_suite_without_scorers_is_refused_when_built():
    """A suite with no scorer (scorers=[], a list built by a filter that matched nothing) is
    refused when built, saying what to give: it ran every case, then failed with pandas' bare
    KeyError: 'variant'."""
    expected = r"suite 'doubler' has no scorers: give at least one, e.g. scorers=\[wf.evals.exact_match\('answer'\)\]"
    with pytest.raises(ValueError, match=expected):
        doubler_suite(scorers=[])


def test_plot_labels_each_figure_with_the_cases_it_is_of():
    """plot()'s label beside each dot counts the cases its figure is of: a pass rate of 3 scored
    cases of 4 said "100% (n=4)", and a scorer that scored none "nan% (n=4)"; now "100% (n=3, 1
    unscored)" and "no case scored (4 unscored)"."""

    def broken(case: Case, run: wf.Run) -> float:
        raise RuntimeError("judge down")

    suite = doubler_suite(
        dataset=[{"id": f"d{x}", "x": x, "expected": {"y": 2 * x} if x > 1 else {}} for x in range(1, 5)],
        scorers=[wf.evals.exact_match("y"), broken],
    )
    result = wf.evals.evaluate(suite, progress=False)
    for metric in ("pass_rate", "mean"):
        ax = result.plot(metric=metric, ax=Figure().subplots())
        assert ["broken · default", "exact_match:y · default"] == [t.get_text() for t in ax.get_yticklabels()]
        assert ["no case scored (4 unscored)", "100% (n=3, 1 unscored)"] == [t.get_text() for t in ax.texts]


def test_a_pandas_dataframe_is_a_dataset_a_row_per_case():
    """A DataFrame is a dataset as its parquet file would be (a null is a key the row lacks): it
    was read as its column names, refused as "row 1: case 1 is not an object: 'id'". A named
    index (``set_index("id")``) is a column; a filtered frame's unnamed index is not an input."""
    frame = pd.DataFrame(
        {
            "id": ["d1", "d2", "d3", "d4"],
            "x": [1, 2, 3, 4],
            "off": [None, None, None, 1.0],
            "expected": [{"y": 2}, {"y": 4}, {"y": 6}, {"y": 8}],
        }
    )
    cases = wf.evals.load_dataset(frame[frame["x"] > 2])
    assert [Case("d3", {"x": 3}, {"y": 6}), Case("d4", {"x": 4, "off": 1.0}, {"y": 8})] == cases
    assert cases == wf.evals.load_dataset(frame.set_index("id")[frame["x"].to_numpy() > 2])
    assert int is type(cases[0].inputs["x"])  # a Python int, which a run's state keeps, not numpy's
    result = wf.evals.evaluate(doubler_suite(dataset=frame), progress=False)
    assert [0.75] == result.summary["mean"].tolist()
    with pytest.raises(ValueError, match=r"suite 'doubler': the dataset given has no rows"):
        doubler_suite(dataset=frame.iloc[:0])


def test_a_flat_key_expected_dot_field_is_an_expected_value_in_every_format(tmp_path: Path):
    """``expected.FIELD``, a sheet's column for one expected value, means the same as a key of a
    flat JSONL row, a parquet column or a DataFrame's (a sheet read with pandas keeps its column
    names): it was an input named "expected.y", and every case unscored, "case 'd1' has no
    expected 'y'; add it to the dataset". Given twice, in ``expected`` too, it is refused."""
    rows = [{"id": "d1", "x": 1, "expected.y": 2}, {"id": "d2", "x": 2, "expected.y": 5}]
    want = [Case("d1", {"x": 1}, {"y": 2}), Case("d2", {"x": 2}, {"y": 5})]
    frame = pd.DataFrame(rows)
    frame.to_parquet(tmp_path / "d.parquet")
    for source in (rows, frame, tmp_path / "d.parquet", write_jsonl(tmp_path / "d.jsonl", rows)):
        assert want == wf.evals.load_dataset(source)
    nested = [{"id": "n1", "inputs": {"x": 1}, "expected.y": 2, "expected": {"z": 0}}]
    assert [Case("n1", {"x": 1}, {"z": 0, "y": 2})] == wf.evals.load_dataset(nested)
    result = wf.evals.evaluate(doubler_suite(dataset=frame), progress=False)
    assert [0, 0.5] == result.summary[["unscored", "mean"]].iloc[0].tolist()
    twice = [{"id": "t1", "x": 1, "expected.y": 2, "expected": {"y": 3}}]
    with pytest.raises(ValueError, match=r"row 1, case 't1': 'y' is expected twice, as 'expected.y' and in 'expected'"):
        wf.evals.load_dataset(twice)


def test_a_scorer_that_raises_on_a_run_that_did_not_succeed_fails_the_case():
    """A custom scorer reading the state of a run that crashed (``run.state["answer"]``) raises; the
    case fails, as every built-in scorer fails a crashed run, its detail saying how the run ended
    and what the scorer raised. It was unscored: the variant that crashed on its hard cases was
    measured on its easy ones alone (a mean of 0.5 where over all four it is 0.25) and compare() left
    its crashes out of its losses, the "fix the scorer" of check() pointing away from the crash."""

    def build(crash: bool = False) -> wf.Workflow:
        flow = wf.Workflow(f"fragile-{crash}")

        @flow.step
        def answer(state: Any) -> dict[str, Any]:
            if crash and state["hard"]:
                raise RuntimeError("model refused")
            return {"answer": "yes" if state["x"] != 1 else "no"}

        return flow

    def says_yes(case: Case, run: wf.Run) -> bool:
        return bool(run.state["answer"] == "yes")

    suite = wf.evals.Suite(
        name="fragile",
        dataset=[{"id": f"c{x}", "x": x, "hard": x > 2} for x in range(1, 5)],
        workflow=build,
        variants={"base": {}, "cand": {"crash": True}},
        scorers=[wf.evals.custom(says_yes)],
    )
    result = wf.evals.evaluate(suite, progress=False, store=False)
    summary = result.summary.loc[("cand", "says_yes")]
    assert [4, 0, 0.25, 2] == summary[["cases", "unscored", "mean", "failed_runs"]].tolist()
    row = result.cases.set_index(["variant", "case_id"]).loc[("cand", "c3")]
    assert [0.0, False] == row[["value", "passed"]].tolist()
    assert (
        "run failed at step 'answer' (attempt 1): RuntimeError: model refused "
        "(the scorer then raised KeyError: 'answer')"
    ) == row["detail"]
    compared = result.compare("base", "cand").loc["says_yes"]
    assert [0, 2, 2, 0] == compared[["wins", "losses", "ties", "unscored"]].tolist()
    assert [] == [failure for failure in result.check() if "could not score" in failure]


def test_cases_keep_the_dataset_order_and_check_names_the_first_failure_in_it():
    """``result.cases`` lists the cases in the dataset's order, and check()'s "the first" is the
    first in it: ids were sorted as text, d10 before d2, so of failures in d2 and d10 check() named
    d10 "the first"."""
    rows = [{"id": f"d{x}", "x": x, "off": int(x in (2, 10)), "expected": {"y": 2 * x}} for x in range(1, 13)]
    result = wf.evals.evaluate(doubler_suite(dataset=rows, thresholds={"exact_match:y": 0.9}), progress=False)
    assert [f"d{x}" for x in range(1, 13)] == result.cases["case_id"].tolist()
    assert ["default: exact_match:y pass rate 83.3% is below 90.0%"] == result.check()
    broken = [wf.evals.custom(lambda case, run: 1 / (case.id not in ("d2", "d10")), name="broken")]
    (unscored,) = wf.evals.evaluate(doubler_suite(dataset=rows, scorers=broken), progress=False).check()
    assert unscored.startswith(
        "default: broken could not score 2 of 12 cases (the first, d2: scorer error: ZeroDivisionError"
    )


THREE_VARIANTS = """
import wfkit as wf


def build(offset=0):
    flow = wf.Workflow(f"doubler-{offset}")

    @flow.step
    def double(state):
        return {"y": state["x"] * 2 + offset}

    return flow


suite = wf.evals.Suite(
    name="three",
    dataset=[{"id": f"c{x}", "x": x, "expected": {"y": 2 * x}} for x in range(8)],
    workflow=build,
    variants={"prod": {}, "canary": {"offset": 1}, "alt": {}},
    scorers=[wf.evals.exact_match("y")],
)
"""


def test_cli_eval_compares_every_variant_with_the_suites_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`wfkit eval` compares each variant with the first the suite declares (its baseline), in the
    suite's order: it compared the first two by name alone, "canary vs alt", prod (the baseline)
    left out of every comparison and a third variant never compared."""
    (tmp_path / "suite.py").write_text(THREE_VARIANTS)
    assert 0 == main(["eval", str(tmp_path)])
    out = capsys.readouterr().out
    headers = re.findall(r"^(\w+) vs (\w+) \(", out, re.MULTILINE)
    assert [("canary", "prod"), ("alt", "prod")] == headers
    canary = out.split("canary vs prod")[1].split(" vs ")[0]
    assert re.search(r"\nexact_match:y\s+0\s+8\s+0\s+0\s+-1\.0", canary)
    assert 0 == main(["eval", str(tmp_path), "--variant", "alt", "--variant", "prod"])
    assert [("prod", "alt")] == re.findall(r"^(\w+) vs (\w+) \(", capsys.readouterr().out, re.MULTILINE)


def test_cli_eval_json_writes_a_figure_no_case_gave_as_null(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A figure of no case (the mean of a scorer that scored none) is null in `wfkit eval --json`:
    it was NaN, which is not JSON, and jq or JSON.parse refused the whole output."""
    folder = cli_suite(tmp_path / "unscored", {})
    write_jsonl(folder / "cases.jsonl", [{"id": "c0", "x": 0}, {"id": "c1", "x": 1}])
    assert 1 == main(["eval", str(folder), "--json"])

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    (summary,) = json.loads(capsys.readouterr().out, parse_constant=refuse)["summary"]
    assert [2, 2, None, None, None] == [summary[k] for k in ("cases", "unscored", "mean", "ci_low", "pass_rate")]


def test_cli_eval_json_holds_the_comparisons_the_text_prints(capsys: pytest.CaptureFixture[str]):
    """`wfkit eval --json` holds each variant's comparison with the first, as the text output
    prints it: it held the summary alone, so a CI job reading JSON had no paired test to read."""
    assert 0 == main(["eval", str(SUPPORT), "--json"])
    out = json.loads(capsys.readouterr().out)
    rows = {row["scorer"]: row for row in out["compare"]}
    row = rows["exact_match:resolution"]
    assert ["approve", "reject", 0, 2, 6, 0.5, False] == [
        row[k] for k in ("baseline", "candidate", "wins", "losses", "ties", "p_value", "significant")
    ]
    assert pytest.approx([-0.591, 0.156], abs=1e-3) == [row["mean_diff_low"], row["mean_diff_high"]]


HELD_SUITE = """
import time
from pathlib import Path
import wfkit as wf

RELEASE = Path({release!r})
flow = wf.Workflow("held-eval")

@flow.step
def answer(state):
    deadline = time.monotonic() + 60
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return {{"n2": state["n"] * 2}}

suite = wf.evals.Suite(name="held", dataset=[{{"inputs": {{"n": i}}}} for i in range(4)], workflow=flow,
                       scorers=[wf.evals.contains("n2")])
"""


def test_the_stop_button_stops_a_local_eval_awaited_in_a_notebook(tmp_path: Path) -> None:
    """Interrupting a Jupyter kernel whose cell awaits `wf.evals.evaluate_async(suite)` ends the cell
    while its step still runs, its runs cancelled; before, the cell ran on until the step ended."""
    release, started = tmp_path / "release", tmp_path / "started"
    (tmp_path / "suite.py").write_text(HELD_SUITE.format(release=str(release)))
    with running_kernel(tmp_path / "ws") as kernel:
        try:
            kernel.run(f"import wfkit as wf\nsuite = wf.evals.load_suite({str(tmp_path / 'suite.py')!r})", timeout=60)
            cell = (
                f"open({str(started)!r}, 'w').close()\n"
                "result = await wf.evals.evaluate_async(suite, progress=False, concurrency=1)"
            )
            sent = kernel.send(cell, started=started.exists, timeout=60)
            time.sleep(3)  # the first case's step is held, and the loop has gone quiet (nothing else wakes it)
            reply = kernel.interrupt(sent, timeout=20)  # before the fix: a timeout, the step running on
            held = not release.exists()
        finally:
            release.touch()
    assert held
    assert "error" == reply["status"]
    assert reply["ename"] in ("CancelledError", "KeyboardInterrupt")


# --- a saved result, loaded back and compared with today's ----------------------------------


def weekly_suite(rows: list[dict[str, Any]], **overrides: Any) -> wf.evals.Suite:
    """The doubler with variants 'base' and 'worse' (off by one on every case), both scored twice."""
    options: dict[str, Any] = {
        "name": "weekly",
        "dataset": rows,
        "workflow": _doubler,
        "scorers": [wf.evals.exact_match("y"), wf.evals.numeric("y", tolerance=1.0, name="close")],
        "variants": {"base": {}, "worse": {"offset": 1}},
        "thresholds": {"exact_match:y": 0.9},
    }
    return wf.evals.Suite(**{**options, **overrides})


def doubled(ids: range) -> list[dict[str, Any]]:
    return [{"id": f"c{x:02d}", "x": x, "expected": {"y": 2 * x}} for x in ids]


def test_a_saved_result_loads_back_with_what_summary_compare_check_and_plot_need(workspace: Path) -> None:
    """load_result(result.saved_to) (or its cases.parquet) gives the result saved: its cases, summary,
    comparison, check against the suite's thresholds, plot and step log are those of the result
    evaluated, with no suite or workflow at hand."""
    result = wf.evals.evaluate(weekly_suite(doubled(range(8))), progress=False)
    assert result.saved_to is not None
    places = [result.saved_to, result.saved_to / "cases.parquet", str(result.saved_to)]
    for where in [*places, result.saved_to / "summary.parquet"]:  # the folder's other file names it too
        loaded = wf.evals.load_result(where)
        pd.testing.assert_frame_equal(result.cases, loaded.cases)
        pd.testing.assert_frame_equal(result.summary, loaded.summary)
    pd.testing.assert_frame_equal(result.compare("base", "worse"), loaded.compare("base", "worse"))
    assert ["worse: exact_match:y pass rate 0.0% is below 90.0%"] == result.check() == loaded.check()
    assert [] == loaded.check({"close": 1.0})
    assert "weekly" == loaded.suite_name
    assert {"exact_match:y": 0.9} == loaded.thresholds
    assert result.saved_to == loaded.saved_to
    assert repr(result) == repr(loaded)
    shown = [[t.get_text() for t in r.plot(ax=Figure().subplots()).get_yticklabels()] for r in (result, loaded)]
    assert shown[0] == shown[1]
    assert sorted(set(result.cases["run_id"])) == sorted(set(loaded.steps()["run_id"]))


def test_compare_a_variant_with_one_of_a_saved_result_pairs_cases_by_id_and_names_the_unpaired(
    workspace: Path,
) -> None:
    """compare(baseline, candidate, baseline_from=saved): the baseline variant from a saved result,
    the candidate from this one, paired by case id. A case in one result only, or whose inputs or
    expected changed since, is named in a warning and counted unscored, never silently dropped."""
    last_week = wf.evals.evaluate(weekly_suite(doubled(range(10))), progress=False)
    assert last_week.saved_to is not None
    saved = wf.evals.load_result(last_week.saved_to)
    rows = doubled(range(1, 12))  # c00 dropped, c10 and c11 added
    rows[3]["expected"] = {"y": 99}  # c04 now expects another answer
    today = wf.evals.evaluate(weekly_suite(rows), progress=False)
    with pytest.warns(wf.evals.UnpairedCasesWarning) as caught:
        table = today.compare("base", "worse", baseline_from=saved)
    (warning,) = caught
    assert (
        "compare: 2 cases are only in this result ('c10', 'c11'), 1 is only in the baseline's result ('c00'), and 1 "
        "changed its inputs or expected since the baseline's result ('c04'): they are not paired, and counted in "
        "unscored; compare results of one dataset to pair every case"
    ) == str(warning.message)
    # 8 cases paired: last week's base right on each, today's worse wrong on each (close ties).
    assert {"wins": 0, "losses": 8, "ties": 0, "unscored": 4} == table.loc[
        "exact_match:y", ["wins", "losses", "ties", "unscored"]
    ].to_dict()
    assert {"wins": 0, "losses": 0, "ties": 8, "unscored": 4} == table.loc[
        "close", ["wins", "losses", "ties", "unscored"]
    ].to_dict()
    with pytest.warns(wf.evals.UnpairedCasesWarning):
        same = today.compare("base", "base", baseline_from=saved)
    assert [0, 0, 8] == same.loc["exact_match:y", ["wins", "losses", "ties"]].tolist()
    with pytest.raises(ValueError, match=r"^no variant 'nope' in the baseline's result; it has base, worse"):
        today.compare("nope", "base", baseline_from=saved)


def test_a_saved_result_of_another_suite_or_dataset_is_refused_saying_what_to_do(workspace: Path) -> None:
    """A saved result of another suite, or of a dataset sharing no case with this one, compares
    nothing: refused, saying which to load instead."""
    today = wf.evals.evaluate(weekly_suite(doubled(range(4))), progress=False)
    other = wf.evals.evaluate(weekly_suite(doubled(range(4)), name="monthly"), progress=False)
    with pytest.raises(
        ValueError,
        match=r"^the baseline's result is of suite 'monthly', and this one of suite 'weekly': compare results of "
        r"one suite \(those of 'weekly' are saved under WORKSPACE/evals/weekly/; load one with wf.evals.load_result",
    ):
        today.compare("base", "base", baseline_from=other)
    elsewhere = wf.evals.evaluate(weekly_suite(doubled(range(10, 14))), progress=False)
    with pytest.raises(
        ValueError,
        match=r"^no case is in both this result and the baseline's result \(its 4 cases are 'c10', 'c11', 'c12', "
        r"'c13'; this one's 'c00', 'c01', 'c02' and 1 more\): it is of another dataset",
    ):
        today.compare("base", "base", baseline_from=elsewhere)


def test_load_result_refuses_what_is_not_a_saved_eval_result_saying_what_is(workspace: Path, tmp_path: Path) -> None:
    """A missing path, a folder or file that is no saved result, and a suite's folder of several
    saved results are each refused, saying what to give (a suite's folder: listing its results)."""
    first = wf.evals.evaluate(weekly_suite(doubled(range(2))), progress=False)
    second = wf.evals.evaluate(weekly_suite(doubled(range(2))), progress=False)
    assert first.saved_to is not None
    assert second.saved_to is not None
    with pytest.raises(
        FileNotFoundError, match=r"no saved eval result at .*nowhere: a saved eval result is the folder evaluate()"
    ):
        wf.evals.load_result(tmp_path / "nowhere")
    suite_folder = first.saved_to.parent
    with pytest.raises(ValueError, match=r"holds 2 saved results of suite 'weekly', not one: give one of them") as info:
        wf.evals.load_result(suite_folder)
    assert str(second.saved_to.name) in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty is no saved eval result: it holds no cases\.parquet"):
        wf.evals.load_result(tmp_path / "empty")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match=r"other\.parquet is no saved eval result: it lacks the columns 'suite',"):
        wf.evals.load_result(tmp_path / "other.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt is no saved eval result: not a parquet file"):
        wf.evals.load_result(tmp_path / "notes.txt")


# --- plot: thresholds drawn -----------------------------------------------------------------


def drawn_thresholds(ax: Axes) -> dict[str, tuple[float, list[str]]]:
    """scorer -> (the threshold's x, the y tick labels its line spans), from plot()'s threshold lines."""
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    drawn = {}
    for collection in ax.collections:
        gid = collection.get_gid() or ""
        if gid.startswith("threshold:"):
            ((x0, y0), (x1, y1)) = collection.get_segments()[0]
            assert x0 == x1
            rows = [label for y, label in enumerate(ticks) if min(y0, y1) < y < max(y0, y1)]
            drawn[gid.removeprefix("threshold:")] = (x0, rows)
    return drawn


def test_plot_draws_the_thresholds_and_says_which_dots_fall_below(tmp_path: Path) -> None:
    """plot() draws each scorer's threshold across that scorer's rows, and labels a pass rate below
    it as such: the suite's thresholds, those given to plot(thresholds=), else those check() was
    last given. A threshold is a pass rate: it is refused with metric="mean", and out of 0..1."""
    result = two_variant_result()  # suite threshold: exact_match:y at 0.9, 'worse' at 0%
    ax = result.plot()
    assert {"exact_match:y": (0.9, ["exact_match:y · base", "exact_match:y · same", "exact_match:y · worse"])} == (
        drawn_thresholds(ax)
    )
    labels = [t.get_text() for t in ax.texts]
    assert "0% (n=16): below the 90% threshold" in labels
    assert "100% (n=16)" in labels
    assert "threshold (check)" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax.figure.savefig(tmp_path / "thresholds.png")
    given = result.plot(thresholds={"close": 0.95}, ax=Figure().subplots())
    assert {"close": (0.95, ["close · base", "close · same", "close · worse"])} == drawn_thresholds(given)
    result.check({"close": 0.5, "exact_match:y": 0.25})
    checked = drawn_thresholds(result.plot(ax=Figure().subplots()))
    assert {"close": 0.5, "exact_match:y": 0.25} == {scorer: x for scorer, (x, _) in checked.items()}
    assert {} == drawn_thresholds(result.plot(thresholds={}, ax=Figure().subplots()))
    result.check({})  # no threshold: none drawn, not the suite's
    assert {} == drawn_thresholds(result.plot(ax=Figure().subplots()))
    assert {} == drawn_thresholds(result.plot(metric="mean", ax=Figure().subplots()))
    with pytest.raises(ValueError, match=r"thresholds are pass rates: draw them with metric='pass_rate'"):
        result.plot(metric="mean", thresholds={"close": 0.5})
    with pytest.raises(ValueError, match=r"the threshold for 'close' is a pass rate between 0 and 1, got 95"):
        result.plot(thresholds={"close": 95})


# --- the progress bar in a notebook run by papermill ----------------------------------------

PROGRESS_CELL = """\
import wfkit as wf

flow = wf.Workflow("dbl")


@flow.step
def double(state):
    return {"y": state["x"] * 2}


rows = [{"id": str(i), "x": i, "expected": {"y": 2 * i}} for i in range(30)]
suite = wf.evals.Suite(name="dbl", dataset=rows, workflow=flow, scorers=[wf.evals.exact_match("y")])
result = await wf.evals.evaluate_async(suite, store=False, concurrency=4)
"""


def test_the_progress_bar_of_an_eval_run_by_papermill_ends_at_the_count_of_cases_run(
    tmp_path: Path, workspace: Path
) -> None:
    """In a notebook executed by papermill, the saved output of evaluate_async's progress bar ends at
    the cases run ("30/30"), in a text without times (a replay compares it): it stayed at "0%", a
    widget's first text, as a widget's updates never reach the saved notebook."""
    from papermilled import saved_outputs

    assert ["eval dbl: 100%|" + "█" * 20 + "| 30/30 cases"] == saved_outputs(tmp_path, PROGRESS_CELL)


def test_cli_eval_against_a_saved_result_compares_each_variant_with_its_saved_self(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workspace: Path
) -> None:
    """`wfkit eval SUITE --against FOLDER` (a result `saved to` last week) compares each variant with
    the same variant of the saved result, case by case, in text and in --json, and names on stderr
    the cases it could not pair; a FOLDER that is no saved result of this suite is refused before
    any case runs."""
    folder = cli_suite(tmp_path / "weekly", {})
    assert 0 == main(["eval", str(folder), "--json"])
    saved = json.loads(capsys.readouterr().out)["saved_to"]
    cases = [{"id": f"c{x}", "x": x, "expected": {"y": 2 * x}} for x in range(1, 4)]
    cases[0]["expected"] = {"y": 3}  # c1 now expects a wrong answer: changed since the saved result
    write_jsonl(folder / "cases.jsonl", cases)
    assert 0 == main(["eval", str(folder), "--against", saved, "--json"])
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)["against"]
    assert {"baseline": "default", "candidate": "default", "saved": saved, "scorer": "exact_match:y"} == {
        key: row[key] for key in ("baseline", "candidate", "saved", "scorer")
    }
    assert [0, 0, 1, 3] == [row[key] for key in ("wins", "losses", "ties", "unscored")]
    assert (
        "wfkit eval: compare: 1 case is only in this result ('c3'), 1 is only in the baseline's result ('c0'), and "
        "1 changed its inputs or expected since the baseline's result ('c1'): they are not paired"
    ) in captured.err
    assert 0 == main(["eval", str(folder), "--against", saved])
    out = capsys.readouterr().out
    # The suite's one variant: nothing above explains the columns, so this comparison does.
    assert f"\ndefault vs default saved in {saved} (net_win_rate: (wins - losses) / cases, with its 95% " in out
    assert re.search(r"exact_match:y\s+0\s+0\s+1\s+3\s", out)
    results = workspace / "evals" / "cli-doubler"
    made = len(list(results.iterdir()))
    assert 2 == main(["eval", str(folder), "--against", str(tmp_path / "nowhere")])
    assert "wfkit eval: --against: no saved eval result at" in capsys.readouterr().err
    other = cli_suite(tmp_path / "other", {})
    (other / "suite.py").write_text((other / "suite.py").read_text().replace('"cli-doubler"', '"other"'))
    assert 2 == main(["eval", str(other), "--against", saved])
    assert (
        f"wfkit eval: --against: {saved} is a result of suite 'cli-doubler', not of suite 'other': give a folder "
        "under WORKSPACE/evals/other/"
    ) in capsys.readouterr().err
    write_jsonl(folder / "cases.jsonl", [{"id": f"n{x}", "x": x, "expected": {"y": 2 * x}} for x in range(2)])
    assert 2 == main(["eval", str(folder), "--against", saved])
    assert (
        f"wfkit eval: --against: no case is in both {saved} and the dataset of suite 'cli-doubler' (its 3 cases are "
        "'c0', 'c1', 'c2'; the dataset's 'n0', 'n1'): it is a result of another dataset; give one of this dataset"
    ) in capsys.readouterr().err
    assert made == len(list(results.iterdir()))  # no eval ran


def test_plot_shows_a_pass_rate_just_below_its_threshold_with_the_digits_that_tell_them_apart() -> None:
    """11 of 13 cases (84.6%) under a threshold of 85% read "85% (n=13): below the 85% threshold",
    rounded to a whole percent; it now reads "84.6% (n=13): below the 85% threshold"."""
    rows = [{"id": f"d{x}", "x": x, "off": int(x < 2), "expected": {"y": 2 * x}} for x in range(13)]
    result = wf.evals.evaluate(doubler_suite(dataset=rows), progress=False, store=False)
    ax = result.plot(thresholds={"exact_match:y": 0.85}, ax=Figure().subplots())
    assert ["84.6% (n=13): below the 85% threshold"] == [t.get_text() for t in ax.texts]
    ax = result.plot(thresholds={"exact_match:y": 0.8}, ax=Figure().subplots())
    assert ["85% (n=13)"] == [t.get_text() for t in ax.texts]


def test_the_step_log_of_a_saved_result_whose_runs_are_gone_says_so(workspace: Path) -> None:
    """steps() of a loaded result whose runs' workspace was deleted (or moved) said "A workspace is
    created by the first run in it: flow.run(inputs, workspace=...)", advice for no eval; it now
    says where this result's runs were, and that its scores do not need them."""
    import shutil

    result = wf.evals.evaluate(doubler_suite(), progress=False)
    assert result.saved_to is not None
    shutil.rmtree(workspace / "evals" / "runs")
    loaded = wf.evals.load_result(result.saved_to)
    with pytest.raises(FileNotFoundError) as info:
        loaded.steps()
    assert str(info.value).startswith(
        f"the runs of this eval result were kept in {workspace / 'evals' / 'runs'}, which holds no step log now "
        "(moved or deleted): steps() reads them there; its cases, summary, compare(), check() and plot() need them not"
    )


def test_a_result_saved_before_its_metadata_loads_with_no_thresholds(workspace: Path, tmp_path: Path) -> None:
    """A cases.parquet written as pandas writes it (by wfkit before load_result existed) loads: its
    suite from its rows, no thresholds (check() then reports unscored cases only), every id paired."""
    result = wf.evals.evaluate(weekly_suite(doubled(range(4))), progress=False, store=False)
    (tmp_path / "old").mkdir()
    result.cases.to_parquet(tmp_path / "old" / "cases.parquet", index=False)
    old = wf.evals.load_result(tmp_path / "old")
    assert ("weekly", {}, []) == (old.suite_name, old.thresholds, old.check())
    pd.testing.assert_frame_equal(result.summary, old.summary)
    assert [0, 4, 0, 0] == result.compare("base", "worse", baseline_from=old).loc[
        "exact_match:y", ["wins", "losses", "ties", "unscored"]
    ].tolist()


def test_compare_with_a_saved_result_names_a_scorer_only_one_of_them_has(workspace: Path) -> None:
    """A scorer added since the saved result has no case to pair: the warning names it, so its row,
    unscored on every case, is explained."""
    rows = doubled(range(4))
    saved = wf.evals.evaluate(weekly_suite(rows, scorers=[wf.evals.exact_match("y")], thresholds={}), progress=False)
    today = wf.evals.evaluate(weekly_suite(rows), progress=False)
    with pytest.warns(wf.evals.UnpairedCasesWarning) as caught:
        table = today.compare("base", "base", baseline_from=saved)
    assert ["compare: scorer 'close' is only in this result: none of its cases is paired"] == [
        str(w.message) for w in caught
    ]
    assert [0, 4] == table.loc["close", ["ties", "unscored"]].tolist()
    assert [4, 0] == table.loc["exact_match:y", ["ties", "unscored"]].tolist()


class GivenUp(Exception):
    """What a Dask partition's progress raises once its job was given up."""


def test_an_eval_partition_whose_progress_raises_starts_no_case_after_it() -> None:
    """An eval's Dask partition scores its cases through ``_score_cases`` with its progress, which
    raises once the driver gave the job up: asked as each case starts, not only as each ends (by
    then the next case was through the gate, and all four ran), the partition stops before the next."""
    from wfkit.evals._evals import _score_cases

    started: list[int] = []
    told: list[int] = []
    flow = wf.Workflow("eval-given-up")

    @flow.step
    async def answer(state: Any) -> dict[str, Any]:
        started.append(state["n"])
        return {"n2": state["n"] * 2}

    dataset = [{"inputs": {"n": i}} for i in range(4)]
    suite = wf.evals.Suite(name="given-up", dataset=dataset, workflow=flow, scorers=[wf.evals.contains("n2")])

    def progress(cases: int = 1) -> None:
        told.append(cases)
        if started:  # the job was given up while the first case ran
            raise GivenUp

    cases = list(enumerate(suite.cases()))
    with pytest.raises(GivenUp):
        asyncio.run(_score_cases(suite, "default", flow, {}, cases, concurrency=1, workspace=False, on_case=progress))
    assert [0] == started
    assert [0, 1, 0, 0, 0] == told
