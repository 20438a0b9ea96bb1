"""Evals: a workflow scored over a dataset, variants compared.

A :class:`Suite` names a dataset (JSONL, parquet, or a sheet as CSV/TSV: inputs and expectations), a workflow (or a
factory taking a variant's parameters), scorers, variants and thresholds. :func:`evaluate` runs
every case of every variant with bounded concurrency (steps are logged as usual), scores them,
and returns an :class:`EvalResult`: a DataFrame of case x scorer results, a summary per variant
(mean with an interval that allows for a rare low score the cases did not show, Wilson's when
scores are 0/1: :func:`mean_interval`; pass rate with a Wilson interval), stored as parquet next
to the step logs, and a comparison of two variants (wins, losses, ties, an exact sign test, the
net win rate's interval).

Eval runs go to a workspace of their own, ``WORKSPACE/evals/runs`` (its own SQLite store and step
log), so the analysis and the report of interactive runs never count a hundred eval cases as
traffic; ``EvalResult.steps()`` reads them.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import importlib.util
import inspect
import json
import os
import random
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfkit._jupyter import progress_bar
from wfkit.engine._loops import woken_by_signals
from wfkit.evals._scorers import Case, ScorerFn, apply, name_of, unsucceeded
from wfkit.evals._spreadsheet import read_sheet, read_utf8
from wfkit.evals._stats import (
    TIE_TOLERANCE,
    mean_diff_interval,
    mean_interval,
    net_win_interval,
    sign_test,
    wilson_interval,
)
from wfkit.logs._dataset import is_url
from wfkit.model._context import check_chat_model
from wfkit.model._errors import SuiteFileError
from wfkit.model._processors import redact_optional
from wfkit.model._status import RunStatus
from wfkit.model._suggest import closest, did_you_mean, files_beside

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from wfkit.distributed._dask import Executor, PartitionOutput, Progress
    from wfkit.engine._workflow import Workflow


def load_dataset(source: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[Case]:
    """Cases from JSONL (``.jsonl``, ``.ndjson``), parquet, CSV or TSV, dicts, or a pandas DataFrame
    (a row per case, read as its parquet file would be) (a file of another suffix is refused,
    listing these). A row is ``{"id", "inputs", "expected"}``
    (another key beside ``inputs`` is refused, never dropped), or flat (every key but ``id`` and
    ``expected`` is an input). In any row a key ``expected.FIELD`` is one value of ``expected``, as
    a sheet's column of that name is. A dataset without a case is refused.

    A CSV (or TSV) row is flat, a column per key: a cell is its text, exactly; a ``NAME:json`` column
    holds JSON (an empty cell: no such key); ``expected.FIELD`` is one value of ``expected``.

    In parquet a null means the row has no such key, at any depth (parquet gives every row every
    column, and cannot tell a key a row lacked from a null): the rows read are those of the JSONL
    the file was written from. A null inside a list stays a ``None`` element."""
    return _load_cases(source).cases


@dataclass(frozen=True)
class _Dataset:
    """A dataset's cases, and where each came from, so that an error about a case can name it."""

    name: str  # "the dataset PATH", or "the dataset given" (rows in memory)
    cases: list[Case]
    places: list[str]  # per case: "line 3" of a JSONL file (blank lines counted), else "row 3"


def _load_cases(
    source: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | pd.DataFrame,
    suite: str | None = None,
    flows: Sequence[Workflow] | None = None,
) -> _Dataset:
    """The dataset's cases, refusing in one error every problem found in it: rows of the wrong
    shape, ids shared by cases and (given the workflows it is evaluated with) cases lacking an
    input a workflow declares."""
    rows: list[Mapping[str, Any]]
    places: list[str] = []
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        name = f"the dataset {path}"
        suffix = path.suffix.lower()
        if not path.exists():  # (a folder is read as before: pyarrow reads a folder of parquet files)
            raise _missing_dataset(path, suite)
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            # to_pylist gives plain lists and dicts, not numpy arrays, but fills the keys a row
            # lacked with None: state.get("lang", "en") would see None, a scorer "expected null".
            try:
                table = pq.read_table(path)
            except pa.ArrowInvalid as exc:  # a CSV renamed, a file cut off in a copy
                owner = "" if suite is None else f"suite {suite!r}: "
                raise ValueError(
                    f"{owner}the dataset {path} is not a parquet file pyarrow can read ({type(exc).__name__}: {exc}): "
                    "write it with DataFrame.to_parquet or pyarrow.parquet.write_table, or name it after its format "
                    f"({_FORMATS})"
                ) from exc
            rows = [_without_nulls(row) for row in table.to_pylist()]
        elif suffix in _SHEETS:
            rows, places = read_sheet(path, delimiter=_SHEETS[suffix])
        elif suffix not in _JSONL:  # never read as JSONL by default: a sheet would be "not JSON" at line 1
            raise ValueError(_unread_format(path, suite))
        else:
            rows = []
            text = read_utf8(
                path,
                fix=f"JSON is UTF-8: save the file as UTF-8 (from Latin-1: iconv -f latin1 -t utf-8 {path.name} > "
                f"{path.stem}-utf8{path.suffix}; in Python: open(..., 'w', encoding='utf-8'))",
            )
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError(f"{path}, line {number}: not JSON ({exc}); each line is one case") from exc
                places.append(f"line {number}")
    else:
        name = "the dataset given"
        rows = _frame_rows(source) if _is_frame(source) else list(source)  # a frame iterates its column names
    if not rows:
        raise ValueError(_empty_dataset(source, suite))
    places = places or [f"row {number}" for number in range(1, len(rows) + 1)]
    cases, kept, problems, misshapen = [], [], [], 0
    for number, (row, place) in enumerate(zip(rows, places, strict=True), 1):
        found = _shape_problems(row, number)
        if found:
            problems += [f"{place}{problem}" for problem in found]
            misshapen += 1
            continue
        flat = {key: value for key, value in row.items() if not _expected_key(key)}
        inputs = row["inputs"] if "inputs" in row else {k: v for k, v in flat.items() if k not in ("id", "expected")}
        one_by_one = {key.removeprefix(_EXPECTED): value for key, value in row.items() if _expected_key(key)}
        expected = {**row.get("expected", {}), **one_by_one}
        cases.append(Case(str(row.get("id", number)), dict(inputs), expected))
        kept.append(place)
    # Every check runs on what it can see, and their problems are refused together: a dataset
    # with a row of the wrong shape, a duplicate id and a case lacking an input took three rounds
    # of fixing when each check waited for the one before to pass.
    found_problems = [
        _misshapen(name, problems, misshapen) if problems else None,
        _clashing_ids(name, rows, places),
        _lacking_inputs(_Dataset(name, cases, kept), flows) if flows is not None else None,
    ]
    _refuse(suite, name, [problem for problem in found_problems if problem is not None], ran=flows is not None)
    return _Dataset(name, cases, kept)


_SHEETS = {".csv": ",", ".tsv": "\t"}  # a spreadsheet's export, and its separator
_JSONL = (".jsonl", ".ndjson")
_FORMATS = "JSONL: .jsonl or .ndjson, one case per line; parquet: .parquet; a sheet saved as CSV: .csv, or TSV: .tsv"

_EXAMPLE_CASE = '{"id": "1", "inputs": {"query": "..."}, "expected": {"answer": "..."}}'


def _shape_problems(row: object, number: int) -> list[str]:
    """What is wrong with the shape of the dataset's row ``number``, each said after its place:
    ``dict(...)`` would turn a list of pairs into inputs, and ``or {}`` a 0 into "nothing expected"."""
    if not isinstance(row, Mapping):
        return [f": case {number} is not an object: {_shown(row)}; a case is an object, e.g. {_EXAMPLE_CASE}"]
    problems = []
    case_id = row.get("id", number)
    if isinstance(case_id, bool) or not isinstance(case_id, str | int):
        problems.append(
            f": 'id' is {_kind(case_id)} ({_shown(case_id)}), not a string or a whole number, e.g. \"refund-1\""
        )
        case = ""
    else:
        case = f", case {str(case_id)!r}"
    if "inputs" in row:
        inputs = row["inputs"]
        if not isinstance(inputs, Mapping):
            problems.append(
                f"{case}: 'inputs' is {_kind(inputs)} ({_shown(inputs)}), not an object of input names and values, "
                f'e.g. {{"query": "..."}} (or leave \'inputs\' out and give the inputs as keys of the row, beside "id" '
                f'and "expected")'
            )
        else:
            keys = [key for key in inputs if not isinstance(key, str)]
            if keys:
                some = "a key that is" if len(keys) == 1 else "keys that are"
                problems.append(
                    f"{case}: 'inputs' has {some} not a string ({_listed(keys, limit=3)}); an input's name is a string"
                )
        # A flat row makes every such key an input; beside 'inputs' it would be read by nothing.
        beside = [str(key) for key in row if key not in ("id", "inputs", "expected") and not _expected_key(key)]
        if beside:
            verb, them = ("is", "it") if len(beside) == 1 else ("are", "them")
            problems.append(
                f"{case}: {_listed(beside, limit=3)} {verb} beside 'inputs', and a case with 'inputs' reads only "
                f"'id', 'inputs' and 'expected': move {them} into 'inputs' (an input of the run) or 'expected' "
                f"(a value scorers read), or leave 'inputs' out and give the inputs as keys of the row"
            )
    nested = row.get("expected")
    for key in filter(_expected_key, row):
        if isinstance(nested, Mapping) and key.removeprefix(_EXPECTED) in nested:
            field_name = key.removeprefix(_EXPECTED)
            problems.append(f"{case}: {field_name!r} is expected twice, as {key!r} and in 'expected': keep one")
    if "expected" in row and not isinstance(row["expected"], Mapping):
        expected = row["expected"]
        problems.append(
            f"{case}: 'expected' is {_kind(expected)} ({_shown(expected)}), not an object of the values expected "
            f'of the run, e.g. {{"answer": "..."}} (leave \'expected\' out when nothing is expected)'
        )
    return problems


_EXPECTED = "expected."


def _expected_key(key: object) -> bool:
    """A flat key ``expected.FIELD``: one expected value, as a sheet's column of that name is (a
    sheet read with pandas, or a frame saved as parquet, keeps the name)."""
    return isinstance(key, str) and key.startswith(_EXPECTED) and len(key) > len(_EXPECTED)


def _kind(value: object) -> str:
    """What a dataset value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _shown(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _places(places: Sequence[str]) -> str:
    """``lines 1, 3 and 5`` from ``line 1``, ``line 3``, ``line 5``."""
    kind = places[0].split()[0]
    numbers = [place.split()[1] for place in places]
    return f"{kind}s {', '.join(numbers[:-1])} and {numbers[-1]}"


@dataclass(frozen=True)
class _Problem:
    """One kind of problem a dataset has, said alone (when it is the only kind) or as one item of a
    list of kinds: the same words either way, so a message reads the same in a long error."""

    alone: str  # after "suite 'x': ", naming the dataset
    listed: str  # an item under "the dataset ... has problems of N kinds"


def _refuse(suite: str | None, name: str, problems: Sequence[_Problem], *, ran: bool) -> None:
    """Raise the ValueError saying every one of ``problems`` (nothing if there is none); ``ran``:
    whether it stops an eval (which then says that no case was run)."""
    if not problems:
        return
    owner = "" if suite is None else f"suite {suite!r}: "
    if len(problems) == 1:
        raise ValueError(f"{owner}{problems[0].alone}")
    items = "".join(f"\n- {problem.listed}" for problem in problems)
    raise ValueError(
        f"{owner}{name} has problems of {len(problems)} kinds (fix them all, and evaluate again"
        f"{'; no case was run' if ran else ''}):{items}"
    )


def _misshapen(name: str, problems: Sequence[str], misshapen: int) -> _Problem:
    count = "1 case" if misshapen == 1 else f"{misshapen} cases"
    more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    shown = f"{'; '.join(problems[:_SHOWN])}{more}"
    return _Problem(
        f"{name} has {count} of the wrong shape (fix {'it' if misshapen == 1 else 'them'}, and evaluate "
        f"again): {shown}",
        f"{count} of the wrong shape: {shown}",
    )


def _clashing_ids(name: str, rows: Sequence[object], places: Sequence[str]) -> _Problem | None:
    """The ids held by several rows, those of the wrong shape included (their ids clash as well
    once they are fixed); a row's id that is no id is a problem of its shape alone."""
    holding: dict[str, list[str]] = {}  # case id -> the places of the rows with it
    for number, (row, place) in enumerate(zip(rows, places, strict=True), 1):
        case_id = row.get("id", number) if isinstance(row, Mapping) else None
        if isinstance(case_id, str | int) and not isinstance(case_id, bool):
            holding.setdefault(str(case_id), []).append(place)
    clashes = [(case_id, where) for case_id, where in holding.items() if len(where) > 1]
    if not clashes:
        return None
    named = [f"{case_id!r} of {_places(where)}" for case_id, where in clashes[:_SHOWN]]
    named[0] = named[0].replace(" of ", " is the id of ", 1)
    more = f", and {len(clashes) - _SHOWN} more ids" if len(clashes) > _SHOWN else ""
    said = (
        f"case ids must be unique in a dataset, but {', '.join(named)}{more} (a case without an id takes its "
        f"position as its id): give each case an id of its own"
    )
    return _Problem(f"{name}: {said}", said)


def _lacking_inputs(dataset: _Dataset, flows: Iterable[Workflow]) -> _Problem | None:
    """The cases lacking inputs their workflow declares, refused before any case runs: the run of
    such a case would raise, and stop the eval, only when its turn came (a variant or a partition
    later), naming neither the case nor the dataset."""
    declared: dict[str, list[str]] = {}  # input -> the workflows declaring it
    for flow in flows:
        for input_name in flow.inputs or ():
            declared.setdefault(input_name, [])
            if flow.name not in declared[input_name]:
                declared[input_name].append(flow.name)
    lacking = [
        (case, place, sorted(set(declared) - set(case.inputs)))
        for case, place in zip(dataset.cases, dataset.places, strict=True)
        if not set(declared) <= set(case.inputs)
    ]
    if not lacking:
        return None
    owners = sorted({flow for _, _, missing in lacking for name in missing for flow in declared[name]})
    workflows = f"workflow {owners[0]!r} declares" if len(owners) == 1 else f"workflows {_listed(owners)} declare"
    shown = "; ".join(
        f"case {case.id!r} ({place}) lacks {_listed(missing, limit=3)}{_has_instead(case, missing, declared)}"
        for case, place, missing in lacking[:_SHOWN]
    )
    more = f"; and {len(lacking) - _SHOWN} more cases" if len(lacking) > _SHOWN else ""
    count, verb = ("1 case", "lacks") if len(lacking) == 1 else (f"{len(lacking)} cases", "lack")
    said = (
        f"inputs that {workflows}: {shown}{more}. Give every case the inputs its workflow declares (in a flat "
        f'row, as keys beside "id" and "expected"), or leave out of Workflow(..., inputs=...) those it can do '
        f"without"
    )
    return _Problem(f"{count} of {dataset.name} {verb} {said}; no case was run", f"{count} {verb} {said}")


def _has_instead(case: Case, missing: Sequence[str], declared: Iterable[str]) -> str:
    """`` (it has 'qury')``: the keys of a case lacking an input that look meant for it: one spelt
    close to it, or ``input`` holding an object (a flat row's keys are its inputs, so an ``input``
    written for ``inputs`` is one input named "input")."""
    extra = [key for key in case.inputs if key not in set(declared)]
    near = [found for name in missing if (found := closest(name, extra)) is not None]
    if "input" in extra and isinstance(case.inputs["input"], Mapping):
        return " (it has 'input', read as one input of that name: a case's inputs go under 'inputs')"
    return f" (it has {_listed(list(dict.fromkeys(near)))})" if near else ""


_SHOWN = 5  # cases named in an error about many; the rest are counted
_SCORER_ERROR = "scorer error: "  # the detail of a case a scorer raised on, or answered no score for


def _listed(names: Sequence[str], *, limit: int | None = None) -> str:
    """``'a', 'b', 'c' and 2 more``: names quoted, those beyond ``limit`` counted."""
    shown = names if limit is None else names[:limit]
    more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return ", ".join(map(repr, shown)) + more


def _empty_dataset(source: object, suite: str | None = None) -> str:
    """How to fix a dataset without a case, naming it (and its suite)."""
    owner = "" if suite is None else f"suite {suite!r}: "
    if not isinstance(source, str | os.PathLike):
        return f"{owner}the dataset given has no rows: give at least one case, e.g. [{{'id': '1', 'query': '...'}}]"
    path = Path(source)
    if path.suffix.lower() == ".parquet":
        return f"{owner}the dataset {path} has no rows: write one row per case"
    if path.suffix.lower() in _SHEETS:
        return (
            f"{owner}the dataset {path} has no cases (a header row only, or no rows): write a header row naming "
            "the columns ('id', the inputs, 'expected.FIELD' for each value expected), then one row per case"
        )
    return (
        f"{owner}the dataset {path} has no cases (an empty file, or blank lines only): write one case per "
        'line, e.g. {"id": "1", "inputs": {"query": "..."}, "expected": {"route": "..."}}'
    )


def _unread_format(path: Path, suite: str | None) -> str:
    """How to fix a dataset whose suffix names no format read, naming it (and its suite)."""
    owner = "" if suite is None else f"suite {suite!r}: "
    hint = {
        ".json": ": a file of one JSON case per line is JSONL, named .jsonl",
        ".xlsx": ": save the sheet as 'CSV UTF-8' (.csv)",
        ".xls": ": save the sheet as 'CSV UTF-8' (.csv)",
        ".ods": ": save the sheet as CSV, UTF-8 (.csv)",
    }.get(path.suffix.lower(), ": rename the file after its format, or convert it to one of these")
    return f"{owner}the dataset {path} is of no format read ({_FORMATS}){hint}"


def _is_frame(source: object) -> bool:
    pandas = sys.modules.get("pandas")  # not imported: no frame was made
    return pandas is not None and isinstance(source, pandas.DataFrame)


def _frame_rows(frame: pd.DataFrame) -> list[Mapping[str, Any]]:
    """A DataFrame's rows as its parquet file's are read: Python values (a numpy int64 is no
    state value), a null (NaN, None) a key the row lacks. A named index (``set_index("id")``) is
    a column; an unnamed one (a filtered frame's row numbers) is no input."""
    import pyarrow as pa

    if any(level is not None for level in frame.index.names):
        frame = frame.reset_index()
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(
            f"the dataset given, a DataFrame, has a column of values of no one type ({exc}): give the column "
            "one type (frame[column].astype(str)), or pass frame.to_dict('records')"
        ) from exc
    return [_without_nulls(row) for row in table.to_pylist()]


def _without_nulls(value: Any) -> Any:
    """A parquet row with its null struct fields left out, nested structs and lists included."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


@dataclass
class Suite:
    """What to evaluate. ``workflow`` is a Workflow or a factory ``(**variant_params) -> Workflow``;
    ``variants`` maps a name to those parameters (a ``run_options`` entry among them goes to the
    runs instead, e.g. a policy), checked against the factory's signature when the suite is built
    (a factory taking ``**params`` accepts any); ``thresholds`` maps a scorer name to the lowest
    acceptable pass rate (CI fails below it); ``run_options`` go to every run (e.g. ``policy``)."""

    name: str
    dataset: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | pd.DataFrame
    workflow: Workflow | Callable[..., Workflow]
    scorers: Sequence[ScorerFn]
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    thresholds: Mapping[str, float] = field(default_factory=dict)
    run_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked when the suite is built, not after every case ran: a threshold that names no
        # scorer would let CI pass at any pass rate, and finding out costs the whole evaluation.
        _check_suite_name(self.name)
        if isinstance(self.dataset, Sized) and not isinstance(self.dataset, str) and len(self.dataset) == 0:
            raise ValueError(_empty_dataset(self.dataset, self.name))
        if not self.variants:
            raise ValueError(
                f"suite {self.name!r} has no variants: leave variants= out for one variant of the "
                f"workflow as it is, or name at least one, e.g. variants={{'default': {{}}}}"
            )
        self._check_variant_parameters()
        self._check_run_options()
        if not self.scorers:  # every case would run, then the result have no row to summarise
            raise ValueError(
                f"suite {self.name!r} has no scorers: give at least one, e.g. "
                f"scorers=[wf.evals.exact_match('answer')], or wf.evals.custom(fn) of your own check"
            )
        names = [name_of(scorer) for scorer in self.scorers]
        self._check_scorer_names(names)
        _check_thresholds(self.name, self.thresholds, names)

    def _check_scorer_names(self, names: Sequence[str]) -> None:
        """A result keeps one row per case and scorer name: two scorers of one name (two lambdas)
        would share rows, the summary mixing them and ``compare`` failing after every case ran."""
        for name in dict.fromkeys(names):
            at = [str(number) for number, other in enumerate(names, 1) if other == name]
            if len(at) > 1:
                raise ValueError(
                    f"suite {self.name!r}: {len(at)} scorers are named {name!r} (scorers {', '.join(at[:-1])} and "
                    f"{at[-1]}); a result keeps one row per case and scorer name: give each its own, e.g. "
                    f"wf.evals.custom(fn, name='...') or wf.evals.exact_match(field, name='...')"
                )

    def _check_run_options(self) -> None:
        """A chat client that is none (the class SimulatedModel, a model's name) failed each case's
        run in turn, late and deep in its step: refused here, as run(llm=...) refuses it."""
        given = [("run_options", self.run_options)] + [
            (f"variant {variant!r}'s run_options", params["run_options"])
            for variant, params in self.variants.items()
            if isinstance(params.get("run_options"), Mapping)
        ]
        for where, options in given:
            if "llm" in options:
                check_chat_model(options["llm"], f"suite {self.name!r}: {where} llm=")

    def _check_variant_parameters(self) -> None:
        """Each variant's parameters against what the workflow takes: a typo would otherwise fail
        only when that variant is built, after every earlier variant's cases ran."""
        from wfkit.engine._workflow import Workflow

        for variant, given in self.variants.items():
            params = sorted(key for key in given if key != "run_options")
            if isinstance(self.workflow, Workflow):
                if params:
                    raise TypeError(
                        f"suite {self.name!r}, variant {variant!r}: parameters {', '.join(map(repr, params))} "
                        f"need a factory, but workflow= is the Workflow {self.workflow.name!r}; pass a function "
                        f"taking them and returning a Workflow (run options go under 'run_options')"
                    )
                continue
            try:
                signature = inspect.signature(self.workflow)
            except (TypeError, ValueError):  # a callable whose signature Python cannot read
                continue
            factory = getattr(self.workflow, "__name__", None) or repr(self.workflow)
            named = [
                name for name, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            takes = f"its parameters are: {', '.join(named)}" if named else "it takes no parameters"
            if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
                for param in params:
                    if param not in named:
                        raise TypeError(
                            f"suite {self.name!r}, variant {variant!r}: {factory}() takes no parameter "
                            f"{param!r}{did_you_mean(param, named)}; {takes}. Rename or remove it in the variant"
                        )
            missing = [
                name
                for name, p in signature.parameters.items()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in params
            ]
            if missing:
                raise TypeError(
                    f"suite {self.name!r}, variant {variant!r}: {factory}() needs {', '.join(map(repr, missing))}, "
                    f"which the variant does not give; add it to the variant, or give it a default in "
                    f"{factory}() ({takes})"
                )

    def cases(self) -> list[Case]:
        """The dataset's cases; a dataset without a case is refused, naming the suite and the dataset."""
        return _load_cases(self.dataset, self.name).cases

    def build(self, variant: str) -> tuple[Workflow, dict[str, Any]]:
        """The variant's workflow and run options (a variant may set ``run_options`` of its own)."""
        from wfkit.engine._workflow import Workflow

        if variant not in self.variants:
            raise ValueError(f"suite {self.name!r} has no variant {variant!r}; it has {', '.join(self.variants)}")
        params = dict(self.variants[variant])
        options = {**self.run_options, **params.pop("run_options", {})}
        flow = self.workflow if isinstance(self.workflow, Workflow) else self.workflow(**params)
        return flow, options


def _missing_dataset(path: Path, suite: str | None) -> FileNotFoundError:
    """A dataset file that is not there, naming its suite and, when its folder holds files of a
    dataset's format, those (a file renamed, or a suite naming ``dataset.jsonl`` beside
    ``cases.jsonl``); the errno's bare "No such file" named neither the suite nor what to do."""
    owner = "" if suite is None else f"suite {suite!r}: "
    there = files_beside(path, (*_JSONL, ".parquet", *_SHEETS), kind=f"dataset file ({_FORMATS})")
    return FileNotFoundError(f"{owner}no dataset at {path}{there}: name a file that exists")


def _check_suite_name(name: object) -> None:
    """Refuse a suite name that cannot be the folder its results are saved in, WORKSPACE/evals/NAME:
    "../x" saved them outside the workspace, "a/b" in a folder of folders, "runs" among the eval's
    own runs (WORKSPACE/evals/runs, a workspace of its own)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a suite's name is a non-blank string, got {name!r}: e.g. name='query-router'")
    why = (
        "holds a path separator"
        if "/" in name or "\\" in name
        else "is a path of its own"
        if name in (".", "..")
        else "is the folder of the eval's runs (WORKSPACE/evals/runs)"
        if name == "runs"
        else None
    )
    if why is not None:
        safe = re.sub(r"[/\\]+", "-", name).strip(".-") or "my-suite"
        raise ValueError(
            f"suite name {name!r} {why}: results are saved in WORKSPACE/evals/NAME, so a name is one folder's; "
            f"name it otherwise, e.g. {('eval-runs' if name == 'runs' else safe)!r}"
        )


def _check_thresholds(suite: str, thresholds: Mapping[str, float], scorers: Sequence[str]) -> None:
    """Refuse a threshold of no scorer (a typo would let CI pass at any pass rate) or outside a
    pass rate's 0..1 (80, meant as 80%, fails every variant; a negative or NaN passes every one)."""
    unknown = [name for name in thresholds if name not in scorers]
    if unknown:
        named = ", ".join(f"{name!r}{did_you_mean(name, scorers)}" for name in unknown)
        raise ValueError(
            f"suite {suite!r}: threshold(s) for {named} match no scorer; its scorers are: "
            f"{', '.join(map(repr, scorers))} (a scorer of a field is named scorer:field, e.g. 'exact_match:answer')"
        )
    for name, limit in thresholds.items():
        number = isinstance(limit, int | float) and not isinstance(limit, bool)
        if not number or not 0 <= limit <= 1:  # NaN fails both comparisons
            percent = f" (for {limit:g}%, give {limit / 100:g})" if number and 2 <= limit <= 100 else ""
            raise ValueError(
                f"suite {suite!r}: the threshold for {name!r} is a pass rate between 0 and 1, got {limit!r}{percent}"
            )


_SUITE_MODULE_PREFIX = "wfkit_suite_"


def load_suite(target: str | os.PathLike[str]) -> Suite:
    """A suite from a Python file (or a folder holding ``suite.py``) defining ``suite``."""
    path = Path(target)
    if path.is_dir():
        path = path / "suite.py"
        inside = sorted(found.parent.name for found in path.parent.glob("*/suite.py"))
        if not path.exists() and inside:  # a folder of suites: `wfkit eval evals`
            folders = inside[0] if len(inside) == 1 else f"{', '.join(inside[:-1])} and {inside[-1]}"
            raise FileNotFoundError(
                f"no suite at {target}: it holds no suite.py; its folder{'s' if len(inside) > 1 else ''} {folders} "
                f"{'do' if len(inside) > 1 else 'does'}: give one, e.g. {path.parent / inside[0]}"
            )
    if not path.exists():
        raise FileNotFoundError(f"no suite at {target}: give a suite.py, or a folder that holds one")
    spec = importlib.util.spec_from_file_location(f"{_SUITE_MODULE_PREFIX}{path.parent.name}", path)
    if spec is None or spec.loader is None:  # Python loads no module from a file of another suffix
        raise ValueError(
            f"{path} is not a Python file: a suite is a .py file defining `suite = wf.evals.Suite(...)` (its "
            "dataset beside it), or a folder holding one as suite.py"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    suite = getattr(module, "suite", None)
    if not isinstance(suite, Suite):
        defines = "does not define `suite`" if suite is None else f"defines `suite` as a {type(suite).__name__}"
        raise SuiteFileError(f"{path} must define `suite = wf.evals.Suite(...)` (import wfkit as wf); it {defines}")
    if isinstance(suite.dataset, str | os.PathLike) and not Path(suite.dataset).is_absolute():
        suite.dataset = path.parent / suite.dataset
    return suite


async def _score_cases(
    suite: Suite,
    variant: str,
    flow: Workflow,
    run_options: Mapping[str, Any],
    cases: Sequence[tuple[int, Case]],
    *,
    concurrency: int,
    workspace: str | os.PathLike[str] | None,
    on_case: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run and score ``cases`` (each with its index in the dataset: the run's seed) with at most
    ``concurrency`` runs at once. The same code scores a local eval and a Dask partition.
    ``on_case(1)`` as each case ends, ``on_case(0)`` as each starts: see ``_run_inputs``, whose
    partitions stop so when their job was given up."""
    gate = asyncio.Semaphore(concurrency)
    rows: list[dict[str, Any]] = []

    async def one(index: int, case: Case) -> None:
        async with gate:
            if on_case is not None:
                on_case(0)
            options = {"workspace": workspace, "seed": index, "raise_on_error": False, **run_options}
            run = await flow.arun(case.inputs, **options)
            for scorer in suite.scorers:
                try:
                    score = await apply(scorer, case, run)
                    value, passed, detail = score.value, score.passed, score.detail
                except Exception as exc:  # a broken scorer marks its row, never the whole eval
                    error = f"{type(exc).__name__}: {exc}"
                    failed = unsucceeded(run)
                    if failed is not None:
                        # A crashed run fails, as built-in scorers fail it: left unscored, the crashes
                        # of a variant would drop out of its mean and of its comparison's losses.
                        value, passed, detail = 0.0, False, f"{failed.detail} (the scorer then raised {error})"
                    else:
                        # NaN, not 0: the scorer judged nothing, and a 0 would count as the workflow's failure.
                        value, passed, detail = float("nan"), False, f"{_SCORER_ERROR}{error}"
                rows.append(
                    {
                        "suite": suite.name,
                        "variant": variant,
                        "case_id": case.id,
                        "scorer": name_of(scorer),
                        "value": float(value),
                        "passed": bool(passed),
                        "detail": redact_optional(detail),  # a detail may quote the output
                        "run_id": run.run_id,
                        "run_status": run.status,
                    }
                )
        if on_case is not None:
            on_case(1)

    await asyncio.gather(*(one(i, c) for i, c in cases))
    return rows


@woken_by_signals  # the stop button cancels it at once
async def evaluate_async(
    suite: Suite,
    *,
    variants: str | Sequence[str] | None = None,
    concurrency: int = 16,
    workspace: str | os.PathLike[str] | None = None,
    progress: bool = True,
    store: bool = True,
    executor: Executor | None = None,
    dataset: str | os.PathLike[str] | None = None,
    partition_size: int | None = None,
    retries: int = 2,
    announce: Callable[[str], None] | None = None,
) -> EvalResult:
    import pandas as pd

    # One name is one variant: iterated, variants="llm" named the variants 'l', 'l' and 'm'.
    chosen = [variants] if isinstance(variants, str) else list(variants or suite.variants)
    for variant in chosen:
        if variant not in suite.variants:
            raise ValueError(
                f"suite {suite.name!r} has no variant {variant!r}{did_you_mean(str(variant), suite.variants)}; it has "
                f"{', '.join(suite.variants)}"
            )
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    built = {variant: suite.build(variant) for variant in chosen}
    # Read once (a generator can be read only once), and checked against every variant's workflow.
    loaded = _load_cases(suite.dataset, suite.name, [flow for flow, _ in built.values()])
    cases = loaded.cases
    if executor is not None:
        # By default the workers' runs land where local eval runs do, never among interactive runs.
        target = dataset if dataset is not None else eval_runs_workspace(workspace)
        # The workers' runs live in the dataset they wrote (a folder, or an fsspec URL).
        runs_in: Path | str = os.fspath(target) if is_url(target) else Path(os.fspath(target))
        stop = threading.Event()
        sent = asyncio.ensure_future(
            asyncio.to_thread(
                _evaluate_on_dask,
                suite,
                chosen,
                cases,
                executor=executor,
                concurrency=concurrency,
                dataset=target,
                partition_size=partition_size,
                retries=retries,
                progress=progress,
                announce=announce,
                stop=stop,
            )
        )
        try:
            rows = await asyncio.shield(sent)
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C: asyncio.run cancels this task). Left alone, the job would run on
            # in its thread to its end and be committed, every row counted, for an eval given up:
            # it is given up now, and its interrupt (noting where the rows went) is what is raised.
            stop.set()
            await asyncio.wait([sent])
            given_up = None if sent.cancelled() else sent.exception()
            if isinstance(given_up, KeyboardInterrupt):
                raise given_up from None
            raise
    else:
        if dataset is not None:
            raise ValueError("dataset= is where Dask workers write; without executor= runs stay in the workspace")
        runs_in = eval_runs_workspace(workspace)
        rows = []
        bar = progress_bar(len(cases) * len(chosen), desc=f"eval {suite.name}", unit="case") if progress else None
        try:
            for variant, (flow, run_options) in built.items():
                rows += await _score_cases(
                    suite,
                    variant,
                    flow,
                    run_options,
                    list(enumerate(cases)),
                    concurrency=concurrency,
                    workspace=runs_in,
                    on_case=None if bar is None else bar.update,
                )
        finally:
            if bar is not None:
                bar.close()
    # Cases in the dataset's order, not their ids' as text (d10 before d2): check() names "the first".
    position = {case.id: number for number, case in enumerate(cases)}
    frame = pd.DataFrame(rows).sort_values(
        ["variant", "case_id", "scorer"],
        key=lambda column: column.map(position) if column.name == "case_id" else column,
        ignore_index=True,
    )
    result = EvalResult(suite, frame, runs_workspace=runs_in)
    result._digests = {case.id: _digest(case) for case in cases}
    if store:
        result.save(workspace)
    return result


def eval_runs_workspace(workspace: str | os.PathLike[str] | None = None) -> Path:
    """Where eval runs live: ``WORKSPACE/evals/runs``, a workspace of its own inside the given one."""
    from wfkit.store._workspace import workspace_path

    return workspace_path(workspace) / "evals" / "runs"


def saved_eval_results(workspace: str | os.PathLike[str] | None = None) -> dict[Path, dict[str, tuple[str, str, str]]]:
    """Each eval result saved in ``workspace`` (:meth:`EvalResult.save`), by its folder: its runs by
    id, each with its suite, variant and case id. A result that cannot be read is left out: its
    runs are then not named."""
    import pyarrow.parquet as pq

    from wfkit.store._workspace import workspace_path

    saved: dict[Path, dict[str, tuple[str, str, str]]] = {}
    for path in sorted((workspace_path(workspace) / "evals").glob("*/*/cases.parquet")):
        try:
            rows = pq.read_table(path, columns=["suite", "variant", "case_id", "run_id"]).to_pylist()
        except (OSError, ValueError, KeyError):
            continue
        saved[path.parent] = {
            str(row["run_id"]): (str(row["suite"]), str(row["variant"]), str(row["case_id"])) for row in rows
        }
    return saved


def evaluate(suite: Suite | str | os.PathLike[str], **kwargs: Any) -> EvalResult:
    """Run a suite (a Suite, or a path to one) and score it; see :class:`EvalResult`.
    ``await wfkit.evaluate_async(...)`` does the same inside a running loop.

    ``executor=`` (a ``distributed.Client``, a cluster, or a scheduler address) sends the cases to
    Dask workers in partitions of ``partition_size`` cases (default: a few partitions per worker
    thread), each run there with the same ``concurrency``; runs and step logs land in ``dataset``
    (a folder every worker sees, or an fsspec URL; default ``WORKSPACE/evals/runs``, where local
    eval runs live), and the result is the one a local run gives."""
    from wfkit.engine._loops import run_blocking

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    # An interrupt in a notebook cancels the eval (a Dask job is given up: left to run on, it
    # would be committed).
    return run_blocking(evaluate_async(suite, **kwargs))


@dataclass(frozen=True)
class _EvalPartition:
    """One partition of an eval, run on a Dask worker: some cases of one variant."""

    suite: Suite
    variant: str
    cases: tuple[tuple[int, Case], ...]
    concurrency: int

    def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput:
        from wfkit.distributed._dask import PartitionOutput

        flow, run_options = self.suite.build(self.variant)
        options = {**run_options, "workspace": scratch}  # runs are kept on the worker, then exported
        rows = asyncio.run(
            _score_cases(
                self.suite,
                self.variant,
                flow,
                options,
                self.cases,
                concurrency=self.concurrency,
                workspace=scratch,
                on_case=progress,
            )
        )
        return PartitionOutput(rows, (scratch,))

    def describe(self) -> str:
        ids = ", ".join(str(case.id) for _, case in self.cases)
        return f"cases {ids} of suite {self.suite.name!r} (variant {self.variant!r})"

    def at_most_once(self) -> str | None:
        from wfkit.model._steps import irreversible_steps

        flow, _ = self.suite.build(self.variant)
        steps = irreversible_steps(flow.steps)
        if not steps:
            return None
        return f"{self.describe()}, whose workflow's step(s) {', '.join(map(repr, steps))} are irreversible"


def _evaluate_on_dask(
    suite: Suite,
    variants: Sequence[str],
    dataset_cases: Sequence[Case],
    *,
    executor: Executor,
    concurrency: int,
    dataset: str | os.PathLike[str],
    partition_size: int | None,
    retries: int,
    progress: bool,
    announce: Callable[[str], None] | None,
    stop: threading.Event,
) -> list[dict[str, Any]]:
    from wfkit.distributed._dask import chunks, run_partitioned

    cases = list(enumerate(dataset_cases))

    def split(size: int) -> list[_EvalPartition]:
        _pickle_suite_modules_by_value()
        # Cases travel in their partitions: a suite holding its dataset in memory would otherwise
        # ship all of it with every partition. A copy, not dataclasses.replace: Suite() refuses an
        # empty dataset, and this one is empty on purpose.
        shipped = copy.copy(suite)
        shipped.dataset = []
        return [
            _EvalPartition(shipped, variant, tuple(part), concurrency)
            for variant in variants
            for part in chunks(cases, size)
        ]

    outcome = run_partitioned(
        executor,
        dataset,
        cases=len(cases) * len(variants),
        split=split,
        size_of=lambda work: len(work.cases),
        label=f"eval {suite.name}",
        requested_size=partition_size,
        retries=retries,
        progress=progress,
        announce=announce,
        stop=stop,
    )
    return [] if outcome.results is None else list(outcome.results.to_pylist())


def _pickle_suite_modules_by_value() -> None:
    """Suites loaded from a file live in modules the workers cannot import (``load_suite`` names
    them): ship them by value, whatever of theirs a suite holds: a factory, a Workflow's step
    functions, a function given to ``custom``. Every such module, not the suite's alone: only
    the names of a factory and of a scorer say where they come from, not a Workflow's steps."""
    import cloudpickle

    for name, module in list(sys.modules.items()):
        if name.startswith(_SUITE_MODULE_PREFIX) and module is not None:
            cloudpickle.register_pickle_by_value(module)


class EvalResult:
    """Scores of one evaluation: ``cases`` (one row per variant x case x scorer) and ``summary``.

    A case a scorer could not score (it raised, answered no number in [0, 1], or said it cannot
    judge it, ``Score(float("nan"), False, why)``, as ``cost_budget`` does for a run that called a
    model no price table knows) has the value NaN and a detail saying why; ``summary`` counts it
    as ``unscored``, its mean and pass rate are those of the cases scored, and :meth:`check`
    reports it. A case whose run did not succeed (the
    workflow's failure, not the scorer's) is counted in ``summary``'s ``failed_runs``, and a
    threshold missed in :meth:`check` says how many."""

    def __init__(self, suite: Suite, cases: pd.DataFrame, *, runs_workspace: Path | str | None = None) -> None:
        self.suite: Suite | None = suite  # None for a result loaded from its files: no workflow comes with it
        self.suite_name = suite.name
        self.thresholds: dict[str, float] = dict(suite.thresholds)
        self.cases = cases
        self.runs_workspace = runs_workspace
        self.summary = self._summarise()
        self.saved_to: Path | None = None
        # case id -> a digest of its inputs and expected: a saved result compared with another tells
        # a case that changed since from one that did not (None: not known, every id pairs).
        self._digests: dict[str, str] | None = None
        self._checked: dict[str, float] | None = None  # the thresholds check() was last given: plot() draws them

    @classmethod
    def _loaded(
        cls, name: str, thresholds: dict[str, float], cases: pd.DataFrame, about: Mapping[str, Any], saved_to: Path
    ) -> EvalResult:
        result = cls.__new__(cls)
        result.suite, result.suite_name, result.thresholds, result.cases = None, name, thresholds, cases
        result.runs_workspace = about.get("runs_workspace")
        result.summary = result._summarise()
        result.saved_to = saved_to
        result._digests = about.get("cases")
        result._checked = None
        return result

    def _summarise(self) -> pd.DataFrame:
        import pandas as pd

        out = []
        for (variant, scorer), group in self.cases.groupby(["variant", "scorer"], sort=True):
            # A scorer error leaves its case unscored (NaN): counted, and left out of the figures.
            values = group["value"].astype(float).dropna()
            low, high = mean_interval(values.tolist())
            passed = int(group["passed"].sum())
            pass_low, pass_high = wilson_interval(passed, len(values))
            out.append(
                {
                    "variant": variant,
                    "scorer": scorer,
                    "cases": len(group),
                    "unscored": len(group) - len(values),
                    "mean": values.mean() if len(values) else float("nan"),
                    "ci_low": low,
                    "ci_high": high,
                    "pass_rate": passed / len(values) if len(values) else float("nan"),
                    "pass_low": pass_low,
                    "pass_high": pass_high,
                    # The workflow's failures, not the scorer's: a crash is no wrong answer to tune.
                    "failed_runs": int((group["run_status"] != RunStatus.SUCCEEDED).sum()),
                }
            )
        return pd.DataFrame(out).set_index(["variant", "scorer"]) if out else pd.DataFrame()

    def compare(
        self, baseline: str, candidate: str, *, alpha: float = 0.05, baseline_from: EvalResult | None = None
    ) -> pd.DataFrame:
        """Per scorer: cases where ``candidate`` beats, loses to or ties ``baseline``, the mean
        difference, the net win rate with its interval, whether it is larger than noise, and the
        mean difference's interval. Two scores within 1e-9 of each other tie: 0.1 + 0.2 against
        0.3 is no win.

        ``p_value`` is an exact two-sided sign test of wins against losses, ties left out (for
        0/1 scores this is McNemar's exact test); ``significant`` is ``p_value < alpha``. Four wins
        and no loss give p = 0.125 at any dataset size: six are the fewest that beat noise.
        ``net_win_rate`` is ``(wins - losses) / cases`` (for 0/1 scores, the mean difference);
        ``net_win_low`` and ``net_win_high`` its interval at level ``1 - alpha`` for paired cases, which
        excludes 0 exactly when ``significant`` (:func:`net_win_interval`). ``mean_diff_low`` and
        ``mean_diff_high`` are the interval of ``mean_diff`` at the same level, for graded scores (a
        judge's 0.1 steps) whose gain the net win rate does not measure: one that allows for a rare
        big loss (or win) the cases did not show, never narrower than about ``z^2 / (n + z^2)``
        each side for ``n`` cases (+-0.16 at 20), as that many ties give; for 0/1 scores, whose mean
        difference is the net win rate, that rate's interval (:func:`mean_diff_interval`). Only
        ``significant`` tests: a few cases all a little better can be significant while this
        interval still holds 0, or the other way round. ``unscored`` counts the
        cases left out of all of these: a scorer error on either side, a case a scorer could not
        judge (``cost_budget`` of a run on a model no price table knows), or a case one variant lacks.

        ``baseline_from``: the result the baseline variant is taken from, e.g. last week's,
        ``wf.evals.load_result(FOLDER)``; the candidate is this result's. Cases pair by id; one in a
        single result, or whose inputs or expected changed since, is named in an
        :class:`UnpairedCasesWarning` and counted in ``unscored``."""
        import numpy as np
        import pandas as pd

        if not 0 < alpha < 1:
            raise ValueError(f"alpha is a significance level between 0 and 1 (e.g. 0.05), got {alpha!r}")
        if baseline_from is None:
            # pivot, not pivot_table: that drops a case without a value, this keeps it as NaN, counted below.
            table = self.cases.pivot(index=["scorer", "case_id"], columns="variant", values="value")
            for name in (baseline, candidate):
                if name not in table.columns:
                    raise ValueError(
                        f"no variant {name!r} in this result{did_you_mean(str(name), map(str, table.columns))}; "
                        f"it has {', '.join(map(str, table.columns))}"
                    )
            if baseline == candidate:
                # Every case ties with itself: a table of ties reads as two variants that perform alike.
                others = [str(v) for v in table.columns if v != baseline]
                raise ValueError(
                    f"compare({baseline!r}, {candidate!r}) compares a variant with itself, every case a tie; name "
                    + (f"two variants (it has {', '.join(map(str, table.columns))})" if others else "two variants")
                    + ", or compare with an earlier result: compare(baseline, candidate, baseline_from=wf.evals."
                    "load_result(FOLDER))"
                )
            pairs = pd.DataFrame({"baseline": table[baseline], "candidate": table[candidate]})
        else:
            pairs = self._paired_with(baseline_from, baseline, candidate)
        out = []
        for scorer, group in pairs.groupby(level="scorer"):
            both = (group["candidate"] - group["baseline"]).to_numpy()
            diff = both[~np.isnan(both)]
            # Scores within TIE_TOLERANCE tie (math.isclose(a, b, rel_tol=0, abs_tol=TIE_TOLERANCE)):
            # a judge's 0.1 + 0.2 against 0.3 is float noise, not a win.
            wins, losses = int((diff > TIE_TOLERANCE).sum()), int((diff < -TIE_TOLERANCE).sum())
            ties = diff.size - wins - losses
            p_value = sign_test(wins, losses)
            low, high = net_win_interval(wins, losses, ties, level=1 - alpha)
            diff_low, diff_high = mean_diff_interval(diff, level=1 - alpha)
            out.append(
                {
                    "scorer": scorer,
                    "wins": wins,
                    "losses": losses,
                    "ties": ties,
                    "unscored": int(both.size - diff.size),
                    "mean_diff": float(np.mean(diff)) if diff.size else float("nan"),
                    "net_win_rate": (wins - losses) / diff.size if diff.size else float("nan"),
                    "net_win_low": low,
                    "net_win_high": high,
                    "p_value": p_value,
                    "significant": bool(p_value < alpha),
                    "mean_diff_low": diff_low,
                    "mean_diff_high": diff_high,
                }
            )
        return pd.DataFrame(out).set_index("scorer")

    def _paired_with(self, other: EvalResult, baseline: str, candidate: str) -> pd.DataFrame:
        """``baseline``'s values in ``other`` and ``candidate``'s in this result, by scorer and case
        id, NaN where a case is in one only or changed since ``other``."""
        import pandas as pd

        if other.suite_name != self.suite_name:
            raise ValueError(
                f"the baseline's result is of suite {other.suite_name!r}, and this one of suite {self.suite_name!r}: "
                f"compare results of one suite (those of {self.suite_name!r} are saved under "
                f"WORKSPACE/evals/{self.suite_name}/; load one with wf.evals.load_result(FOLDER))"
            )
        sides = []
        for result, variant, whose in ((other, baseline, "the baseline's result"), (self, candidate, "this result")):
            rows = result.cases[result.cases["variant"] == variant]
            if rows.empty:
                known = ", ".join(map(str, dict.fromkeys(result.cases["variant"])))
                raise ValueError(f"no variant {variant!r} in {whose}; it has {known}")
            sides.append(rows)
        base_ids, cand_ids = (list(dict.fromkeys(rows["case_id"])) for rows in sides)
        only_base = [case for case in base_ids if case not in set(cand_ids)]
        only_cand = [case for case in cand_ids if case not in set(base_ids)]
        common = [case for case in cand_ids if case in set(base_ids)]
        if not common:
            raise ValueError(
                f"no case is in both this result and the baseline's result (its {len(base_ids)} cases are "
                f"{_listed(base_ids, limit=_SHOWN)}; this one's {_listed(cand_ids, limit=3)}): it is of another "
                f"dataset; compare with a result of this suite's dataset"
            )
        before, now = other._digests or {}, self._digests or {}
        changed = [case for case in common if case in before and case in now and before[case] != now[case]]
        if len(changed) == len(common):
            raise ValueError(
                f"every case in both this result and the baseline's result ({_listed(common, limit=_SHOWN)}) changed "
                f"its inputs or expected since: it is of another dataset; compare with a result of this one"
            )
        phrases: list[str] = []
        for ids, what in (
            (only_cand, "{are} only in this result"),
            (only_base, "{are} only in the baseline's result"),
            (changed, "changed {its} inputs or expected since the baseline's result"),
        ):
            if ids:
                one = len(ids) == 1
                noun = str(len(ids)) if phrases else ("1 case" if one else f"{len(ids)} cases")
                verb = what.format(are="is" if one else "are", its="its" if one else "their")
                phrases.append(f"{noun} {verb} ({_listed(ids, limit=_SHOWN)})")
        said = []
        if phrases:
            cases = ", ".join(phrases[:-1]) + ("," if len(phrases) > 2 else "") + (" and " if len(phrases) > 1 else "")
            said.append(
                f"{cases}{phrases[-1]}: they are not paired, and counted in unscored; compare results of one dataset "
                "to pair every case"
            )
        # A scorer added (or dropped) since: every case of it is unscored, which a count alone leaves unexplained.
        scored_by = [set(rows["scorer"]) for rows in sides]
        for names, whose in (
            (scored_by[1] - scored_by[0], "this result"),
            (scored_by[0] - scored_by[1], "the baseline's"),
        ):
            said += [f"scorer {name!r} is only in {whose}: none of its cases is paired" for name in sorted(names)]
        if said:
            warnings.warn(f"compare: {'; '.join(said)}", UnpairedCasesWarning, stacklevel=3)
        base, cand = (rows.set_index(["scorer", "case_id"])["value"] for rows in sides)
        pairs = pd.concat({"baseline": base, "candidate": cand}, axis=1)
        pairs.loc[~pairs.index.get_level_values("case_id").isin(set(common) - set(changed))] = float("nan")
        return pairs

    def check(self, thresholds: Mapping[str, float] | None = None) -> list[str]:
        """What keeps this eval from passing, empty when nothing does: the thresholds (scorer ->
        lowest pass rate) each variant misses, and each scorer that could not score some cases
        (it raised, or answered no number), with the first such case and why."""
        limits = dict(self.thresholds if thresholds is None else thresholds)
        _check_thresholds(self.suite_name, limits, sorted({scorer for _, scorer in self.summary.index}))
        if thresholds is not None:
            self._checked = limits
        failures = []
        for (variant, scorer), row in self.summary.iterrows():
            if row["unscored"]:
                group = self.cases[(self.cases["variant"] == variant) & (self.cases["scorer"] == scorer)]
                first = group[group["value"].isna()].iloc[0]
                # A scorer that raised is to fix; one that could not judge (cost_budget on a model no
                # price table knows) said in its detail what to do.
                raised = first["detail"].startswith(_SCORER_ERROR)
                fix = "; fix the scorer or the dataset, and evaluate again" if raised else ""
                # Of several, only the first is named: say so, or "2 of 4 cases (q11: ...)" reads as one.
                which = "the first, " if row["unscored"] > 1 else ""
                failures.append(
                    f"{variant}: {scorer} could not score {int(row['unscored'])} of {int(row['cases'])} cases "
                    f"({which}{first['case_id']}: {first['detail']}){fix}"
                )
            limit = limits.get(scorer)
            if limit is not None and row["pass_rate"] < limit:
                failures.append(
                    f"{variant}: {scorer} pass rate {row['pass_rate']:.1%} is below {limit:.1%}"
                    + self._failed_runs(variant, scorer)
                )
        return failures

    def _failed_runs(self, variant: str, scorer: str) -> str:
        """`` (2 of 20 runs did not succeed: the first, case 'c7', failed)``, or nothing."""
        group = self.cases[(self.cases["variant"] == variant) & (self.cases["scorer"] == scorer)]
        failed = group[group["run_status"] != RunStatus.SUCCEEDED]
        if failed.empty:
            return ""
        first = failed.iloc[0]
        return (
            f" ({len(failed)} of {len(group)} runs did not succeed: the first, case {first['case_id']!r}, "
            f"{first['run_status']})"
        )

    def steps(self) -> pd.DataFrame:
        """The step log of this evaluation's runs (they live in ``runs_workspace``: a folder, or the
        fsspec URL of a Dask eval's dataset)."""
        from wfkit.logs._steplog import steps
        from wfkit.model._errors import WorkspaceNotFoundError

        if self.runs_workspace is None:
            raise ValueError("this result knows no workspace of its runs (it was built, not evaluated)")
        try:
            return steps(self.runs_workspace, run_id=sorted(set(self.cases["run_id"])))
        except WorkspaceNotFoundError as exc:  # its advice, to start a run there, is for no eval
            raise WorkspaceNotFoundError(
                f"the runs of this eval result were kept in {self.runs_workspace}, which holds no step log now "
                "(moved or deleted): steps() reads them there; its cases, summary, compare(), check() and plot() "
                "need them not"
            ) from exc

    def plot(
        self, *, metric: str = "pass_rate", thresholds: Mapping[str, float] | None = None, ax: Axes | None = None
    ) -> Axes:
        """Per scorer and variant, the pass rate with its Wilson interval (``metric="mean"``: the
        mean score with its interval: :func:`mean_interval`), as dots with error
        bars on one 0-1 axis. Each scorer's threshold (the lowest pass rate :meth:`check` accepts)
        is a dashed line across its rows, and a pass rate below it is labelled so: ``thresholds``
        if given, else those :meth:`check` was last given, else the suite's (``{}``: none)."""
        if metric not in ("pass_rate", "mean"):
            raise ValueError(f"metric must be 'pass_rate' or 'mean', got {metric!r}")
        if thresholds is not None and metric != "pass_rate":
            raise ValueError("thresholds are pass rates: draw them with metric='pass_rate' (the default)")
        low, high = ("pass_low", "pass_high") if metric == "pass_rate" else ("ci_low", "ci_high")
        summary = self.summary
        variants = sorted({v for v, _ in summary.index})
        scorers = sorted({s for _, s in summary.index})
        gate: dict[str, float] = {}
        if metric == "pass_rate":
            checked = self._checked if self._checked is not None else self.thresholds
            gate = dict(thresholds if thresholds is not None else checked)
            _check_thresholds(self.suite_name, gate, scorers)
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(8, 0.5 * len(scorers) * len(variants) + 1.6), layout="constrained")
        colors = ["#2a6f97", "#e0a100", "#4c9a2a", "#8b1e3f", "#5e3c99", "#7a7a7a"]
        labels, y = [], 0
        for scorer in scorers:
            first = y
            for i, variant in enumerate(variants):
                if (variant, scorer) not in summary.index:
                    continue
                row = summary.loc[(variant, scorer)]
                value = float(row[metric])
                # The figure is of the cases scored: a scorer's errors are left out of it, and said.
                unscored = int(row["unscored"])
                scored = int(row["cases"]) - unscored
                below = scorer in gate and value < gate[scorer]  # check()'s rule; NaN is never below
                if scored == 0:
                    label = f"no case scored ({unscored} unscored)"
                else:
                    shown = _rate(value, gate[scorer] if below else None)
                    label = f"{shown} (n={scored}" + (f", {unscored} unscored)" if unscored else ")")
                if below:
                    label += f": below the {_percent(gate[scorer])} threshold"
                ax.errorbar(
                    [value],
                    [y],
                    xerr=[[value - float(row[low])], [float(row[high]) - value]],
                    fmt="o",
                    color=colors[i % len(colors)],
                    capsize=3,
                    label=variant if scorer == scorers[0] else None,
                )
                ax.annotate(
                    label,
                    (1.0, y),
                    xycoords=("axes fraction", "data"),
                    xytext=(6, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize="small",
                    color=_BELOW if below else "black",
                )
                labels.append(f"{scorer} · {variant}")
                y += 1
            if scorer in gate and y > first:
                ax.vlines(
                    gate[scorer],
                    first - 0.45,
                    y - 0.55,
                    colors=_BELOW,
                    linestyles="--",
                    linewidth=1.2,
                    gid=f"threshold:{scorer}",
                    # Once in the legend: matplotlib leaves out a label starting with "_".
                    label="threshold (check)" if not any(c.get_gid() for c in ax.collections) else "_threshold",
                )
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlim(-0.02, 1.02)
        what = "pass rate, 95% Wilson interval" if metric == "pass_rate" else "mean score, 95% interval"
        ax.set_xlabel(what)
        ax.set_title(f"eval {self.suite_name}: {what} per scorer and variant", fontsize="medium")
        ax.xaxis.set_major_formatter("{x:.0%}")
        ax.grid(axis="x", color="#eeeeee")
        handles, names = ax.get_legend_handles_labels()
        order = sorted(range(len(names)), key=lambda i: names[i] == "threshold (check)")  # the variants first
        ax.legend(
            [handles[i] for i in order],
            [names[i] for i in order],
            fontsize="small",
            loc="lower left",
            bbox_to_anchor=(0.0, 1.06),
            ncols=max(len(variants), 1) + bool(gate),
            frameon=False,
        )
        return ax

    def save(self, workspace: str | os.PathLike[str] | None = None) -> Path:
        """Write cases and summary as parquet under ``WORKSPACE/evals/SUITE/STAMP/``;
        :func:`load_result` reads the folder back."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from wfkit.store._workspace import workspace_path

        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + f"-{random.randrange(16**6):06x}"
        folder = workspace_path(workspace) / "evals" / self.suite_name / stamp
        folder.mkdir(parents=True, exist_ok=True)
        # What the cases do not say, in the file's own metadata: the folder stays the two files it was.
        about = {
            "format": _SAVED_FORMAT,
            "suite": self.suite_name,
            "thresholds": self.thresholds,
            "runs_workspace": None if self.runs_workspace is None else os.fspath(self.runs_workspace),
            "cases": self._digests,
        }
        table = pa.Table.from_pandas(self.cases, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _ABOUT: json.dumps(about)})
        pq.write_table(table, folder / "cases.parquet")
        self.summary.reset_index().to_parquet(folder / "summary.parquet", index=False)
        self.saved_to = folder
        return folder

    def __repr__(self) -> str:
        summary = self.summary.round(3).to_string()  # every column: a wide summary is not cut to "..."
        return f"<EvalResult {self.suite_name}: {self.cases['case_id'].nunique()} cases>\n{summary}"

    def _repr_html_(self) -> str:
        return f"<b>eval {self.suite_name}</b>" + str(self.summary.round(3).to_html())


_BELOW = "#c0392b"  # a threshold, and a pass rate below it


def _rate(value: float, threshold: float | None = None) -> str:
    """A pass rate as a whole percent; one below ``threshold`` with the digits that tell them apart
    (84.6%, not "85%, below the 85% threshold")."""
    for digits in range(6):
        shown = f"{value * 100:.{digits}f}"
        if threshold is None or float(shown) < threshold * 100:
            return f"{shown}%"
    return f"{value:%}"


def _percent(rate: float) -> str:
    """0.9 as ``90%``, 0.855 as ``85.5%``: a threshold as given, not rounded to a whole percent."""
    return f"{rate * 100:g}%"


class UnpairedCasesWarning(UserWarning):
    """:meth:`EvalResult.compare` with ``baseline_from=``: some cases are in one result only, or
    changed since the baseline's, and are left out of the comparison (named in the message)."""


_ABOUT = "wfkit.eval_result"  # the key of a saved result's metadata in its cases.parquet
_SAVED_FORMAT = 1
_CASE_COLUMNS = ("suite", "variant", "case_id", "scorer", "value", "passed", "detail", "run_id", "run_status")
_WHAT_IS_SAVED = (
    "a saved eval result is the folder evaluate() (or EvalResult.save()) wrote, result.saved_to: "
    "WORKSPACE/evals/SUITE/STAMP, holding cases.parquet"
)


def load_result(path: str | os.PathLike[str]) -> EvalResult:
    """A result saved by :func:`evaluate` (or :meth:`EvalResult.save`), from its folder (``result.saved_to``)
    or its ``cases.parquet``: its cases, summary, thresholds (for :meth:`~EvalResult.check`) and the
    workspace of its runs, with no suite needed. Compare today's result with it:
    ``today.compare("prod", "prod", baseline_from=wf.evals.load_result(FOLDER))``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = Path(path)
    if not where.exists():
        raise FileNotFoundError(f"no saved eval result at {where}: {_WHAT_IS_SAVED}")
    file = where / "cases.parquet" if where.is_dir() else where
    if file.name == "summary.parquet" and (file.parent / "cases.parquet").is_file():  # the folder's other file
        file = file.parent / "cases.parquet"
    if not file.is_file():
        saved = sorted(found.parent.name for found in where.glob("*/cases.parquet"))
        if saved:
            shown = ", ".join(saved[-_SHOWN:])
            raise ValueError(
                f"{where} holds {len(saved)} saved results of suite {where.name!r}, not one: give one of them, "
                f"e.g. the newest, {where / saved[-1]} (newest last: {shown})"
            )
        raise ValueError(f"{where} is no saved eval result: it holds no cases.parquet; {_WHAT_IS_SAVED}")
    try:
        table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(
            f"{file} is no saved eval result: not a parquet file pyarrow can read ({exc}); {_WHAT_IS_SAVED}"
        ) from exc
    missing = [column for column in _CASE_COLUMNS if column not in table.column_names]
    if missing or table.num_rows == 0:
        lacks = f"it lacks the columns {_listed(missing)}" if missing else "it has no case"
        raise ValueError(f"{file} is no saved eval result: {lacks}; {_WHAT_IS_SAVED}")
    about = json.loads((table.schema.metadata or {}).get(_ABOUT.encode(), b"{}"))
    cases = table.to_pandas()
    # A result saved before its metadata was: its suite is in its rows, its thresholds unknown.
    name = about.get("suite") or str(cases["suite"].iloc[0])
    return EvalResult._loaded(name, dict(about.get("thresholds") or {}), cases, about, file.parent)


def _digest(case: Case) -> str:
    """A case's inputs and expected, as a short digest: equal exactly when they are."""
    try:
        text = json.dumps([case.inputs, case.expected], sort_keys=True, default=repr)
    except TypeError:  # keys of several types (a dataset given as dicts) do not sort
        text = repr([case.inputs, case.expected])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
