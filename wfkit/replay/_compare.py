"""Two summaries compared signal by signal: each difference says where (run, step and visit,
attempt), which signal, and what it was and is.

Every signal must match exactly (floats within the notebook's ``float_tolerance``), except
wall-clock latency: pooled per workflow and step over the notebook's runs, a percentile regresses only when it
moves by more than ``latency_factor`` *and* by more than ``latency_floor_s`` (sub-millisecond steps
jitter tenfold), P50 counts only over 3 samples or more (one sample is one slow moment of a busy
machine) and P99 only over 20 or more (with fewer it means "the slowest").

What a cell showed is compared line by line, per stream and per displayed result: a difference
names the cell, the stream and the first few lines that changed, moved, went or came. A baseline of
format 2 or 3 holds no cell outputs, and says so once, with how to record it again; one of format 4
holds a figure's first line only (its size and axes), to which today's figures are compared, and
says once that what they draw is not compared. One of format 5 holds numpy arrays cut at 1,000
elements and tables whole whatever their size: where what a cell shows differs that way (an array
now whole, a table now cut and digested), one line says so, with how to record it again.

A table or an array a cell displayed is compared at full precision too, its floats within the
notebook's ``float_tolerance`` as the runs' signals are, where its text is the same (a change its
text shows is told by its lines): a difference names the row and column, or the element, what it
shows and how much it moved. A baseline of format 5 or 6 holds tables and arrays as shown only, and
a big one's digest as shown: they are compared so, as they were.

An eval's runs are compared case by case, by suite, variant and case id: its cases run
concurrently, so the order they finish in is no place to compare them by. A baseline of format 7
or older holds none of them: it is compared as it was recorded, and says once
(:func:`evals_not_compared`) how many eval runs it left out.

A baseline of format 2 pooled latency by step name over every workflow. Its other signals are
those of today, and so is its latency where one workflow ran that step; a step name several
workflows shared cannot be split, and says to record the baseline again.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wfkit.replay._kernel import DIGESTED, WHOLE_CELLS
from wfkit.replay._signals import (
    ATTEMPT_SIGNALS,
    DIGESTS_SINCE,
    EVALS_SINCE,
    FIGURES_SINCE,
    LATENCY_POOLED_BY_NAME,
    OUTPUTS_SINCE,
    SUMMARY_VERSION,
    VALUES_SINCE,
    Settings,
)

_MISSING = object()


@dataclass(frozen=True)
class Shown:
    """A value inside a difference's text: as JSON on a console line (quoted, on one line), and as
    printed where the report can show it so (a string's own text, its spaces and line breaks kept)."""

    json: str
    printed: str

    def __str__(self) -> str:
        return self.json


Said = tuple[str | Shown, ...]  # a difference's text: words, and the values they name


@dataclass(frozen=True)
class Difference:
    """One signal that differs from the baseline. ``run`` counts from 1, or an eval's run is
    ``eval_case`` (suite, variant, case id); ``step`` is ``name#visit``."""

    signal: str
    before: Any = None
    after: Any = None
    run: int | None = None
    workflow: str | None = None
    step: str | None = None
    attempt: int | None = None
    message: str | Said | None = None  # said instead of "before -> after" where that reads better
    cell: str | None = None  # what a cell showed: ``cell 4 (first line of its code)``
    eval_case: tuple[str, str, str] | None = None

    @property
    def run_label(self) -> str | None:
        if self.eval_case is not None:
            suite, variant, case = self.eval_case
            return f"eval {suite}, variant {variant}, case {case} ({self.workflow})"
        return None if self.run is None else f"run {self.run} ({self.workflow})"

    @property
    def step_label(self) -> str | None:
        if self.step is None:
            return None
        name, _, visit = self.step.rpartition("#")
        if not name:
            return f"{self.step} (all runs{f' of {self.workflow}' if self.workflow else ''})"
        visit, _, item = visit.partition("[")
        return f"{name} visit {visit}" + (f" item {item.rstrip(']')}" if item else "")

    @property
    def said(self) -> Said:
        """The difference without its place, as words and values: ``signal before -> after``."""
        where = f"attempt {self.attempt}: " if self.attempt is not None else ""
        if isinstance(self.message, str):
            return (where + self.message,)
        if self.message is not None:
            return (where, *self.message)
        return (f"{where}{self.signal} ", *_change(self.before, self.after))

    @property
    def detail(self) -> str:
        """The difference without its place, on one line: ``signal before -> after``."""
        return "".join(map(str, self.said))

    def __str__(self) -> str:
        place = ", ".join(p for p in (self.cell, self.run_label, self.step_label) if p)
        return f"{place}: {self.detail}" if place else self.detail

    def to_json(self) -> dict[str, Any]:
        return {
            "text": str(self),
            "signal": self.signal,
            "run": self.run,
            "workflow": self.workflow,
            "step": self.step,
            "attempt": self.attempt,
            "cell": self.cell,
            "eval": None
            if self.eval_case is None
            else dict(zip(("suite", "variant", "case"), self.eval_case, strict=True)),
            "before": self.before,
            "after": self.after,
        }


@dataclass(frozen=True)
class _Digits:
    """A float as a reader would write it, in place of its repr in a value's JSON."""

    text: str


def _json(value: Any) -> str:
    digits: list[str] = []

    def marked(v: Any) -> Any:  # json.dumps writes floats by their repr only: mark the places, then fill them
        if isinstance(v, float) and math.isfinite(v):
            v = _alone(v)
        if isinstance(v, _Digits):
            digits.append(v.text)
            return f"\0{len(digits) - 1}\0"
        if isinstance(v, dict):
            return {k: marked(x) for k, x in v.items()}
        return [marked(x) for x in v] if isinstance(v, list) else v

    text = json.dumps(marked(value), default=str, sort_keys=True)
    for place, number in enumerate(digits):
        text = text.replace(f'"\\u0000{place}\\u0000"', number)
    return text


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _alone(value: float) -> _Digits:
    """A float with no counterpart to tell it from (a field that is new or gone, a list's extra
    item, a number beside a null) at 15 significant digits, the most a decimal keeps through a
    float: every digit a person wrote or a table shows, without the binary remainder of arithmetic
    (``0.1 + 0.2`` reads ``0.3``, not ``0.30000000000000004``)."""
    text = f"{value:.15g}"
    return _Digits(text if any(c in text for c in ".en") else text + ".0")


def _fewest_digits(a: float, b: float) -> tuple[_Digits, _Digits]:
    """``a`` and ``b`` at the fewest significant digits, three or more, that tell them apart
    (``3e-06``, ``2.7e-06``), an int as itself; their reprs where only 17 digits would."""

    def written(value: float, text: str) -> _Digits:
        if isinstance(value, int):
            return _Digits(str(value))
        # "1" for the float 1.0 would read as an int: a float keeps a point, as its repr does.
        return _Digits(text if any(c in text for c in ".en") else text + ".0")

    for n in range(3, 17):
        x, y = (f"{float(v):.{n}g}" for v in (a, b))
        if x != y:
            return written(a, x), written(b, y)
    return _Digits(repr(a)), _Digits(repr(b))


def _readable(before: Any, after: Any) -> tuple[Any, Any]:
    """``before`` and ``after`` with each float that has a counterpart (the other side's number at
    the same place of a list or mapping) shown by :func:`_fewest_digits`; a float alone is shown by
    :func:`_alone` when the value is written out."""
    if _finite_number(before) and _finite_number(after) and float in (type(before), type(after)):
        return _fewest_digits(before, after)
    if isinstance(before, dict) and isinstance(after, dict):
        pairs = {k: _readable(before[k], after[k]) for k in before.keys() & after.keys()}
        return (
            {k: pairs[k][0] if k in pairs else v for k, v in before.items()},
            {k: pairs[k][1] if k in pairs else v for k, v in after.items()},
        )
    if isinstance(before, list) and isinstance(after, list):
        paired = [_readable(x, y) for x, y in zip(before, after, strict=False)]
        n = len(paired)
        return [x for x, _ in paired] + before[n:], [y for _, y in paired] + after[n:]
    return before, after


def _printable(*values: Any) -> bool:
    """Strings the report can show as printed: a carriage return or an empty string would not show."""
    return all(isinstance(v, str) and v and "\r" not in v for v in values)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short(value: Any, limit: int = 120) -> Shown:
    text = _json(value)
    return Shown(_cut(text, limit), _cut(value if _printable(value) else text, limit))


def _from_where_they_differ(a: str, b: str, limit: int, context: int) -> tuple[str, str]:
    """Two texts cut to ``limit``; where one is longer, both start ``context`` characters before the
    first one they differ in: cut at the same width from the front, two long texts that differ near
    their end would read the same."""
    if len(a) <= limit and len(b) <= limit:
        return a, b
    same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    cut = max(0, same - context)
    a, b = (("..." if cut else "") + text[cut:] for text in (a, b))
    return _cut(a, limit), _cut(b, limit)


def _change(before: Any, after: Any, limit: int = 120, context: int = 40) -> Said:
    """``before -> after`` as :func:`short` shows them, each side from a little before where they differ."""
    readable = _readable(before, after)
    a, b = _from_where_they_differ(_json(readable[0]), _json(readable[1]), limit, context)
    printed = _from_where_they_differ(before, after, limit, context) if _printable(before, after) else (a, b)
    return Shown(a, printed[0]), " -> ", Shown(b, printed[1])


def _same(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return False
        try:
            return math.isclose(float(a), float(b), rel_tol=tolerance, abs_tol=tolerance)
        except (TypeError, ValueError):
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, tolerance) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) and a == b) or (
        isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and a == b
    )


class _Comparer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tolerance = settings.float_tolerance
        self.diffs: list[Difference] = []

    def fields(self, signal: str, old: Mapping[str, Any], new: Mapping[str, Any], **where: Any) -> None:
        """A mapping compared field by field (state, writes, inputs), so one changed field is one line."""
        for name in sorted(set(old) | set(new), key=str):
            if self.settings.masks(f"{signal}.{name}", where.get("step_name")):
                continue
            place = {k: v for k, v in where.items() if k != "step_name"}
            a, b = old.get(name, _MISSING), new.get(name, _MISSING)
            if b is _MISSING:
                said: Said = (f"{signal} {name!r} is gone (was ", short(a), ")")
                self.diffs.append(Difference(signal, a, None, message=said, **place))
            elif a is _MISSING:
                said = (f"{signal} {name!r} is new: ", short(b))
                self.diffs.append(Difference(signal, None, b, message=said, **place))
            elif not _same(a, b, self.tolerance):
                self.diffs.append(Difference(signal, a, b, message=(f"{signal} {name!r} ", *_change(a, b)), **place))

    def value(self, signal: str, a: Any, b: Any, step_name: str | None = None, **where: Any) -> None:
        if self.settings.masks(signal, step_name) or _same(a, b, self.tolerance):
            return
        self.diffs.append(Difference(signal, a, b, **where))

    def run(self, where: dict[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """One run's signals; ``where`` names it (``run``, or ``eval_case``)."""
        where = {**where, "workflow": new.get("workflow") or old.get("workflow")}
        for signal in ("workflow", "status", "error", "path"):
            self.value(signal, old.get(signal), new.get(signal), **where)
        if not self.settings.masks("inputs"):
            self.fields("inputs", old.get("inputs") or {}, new.get("inputs") or {}, **where)
        old_steps, new_steps = old.get("steps") or {}, new.get("steps") or {}
        for key in [*old_steps, *(k for k in new_steps if k not in old_steps)]:
            name = key.rpartition("#")[0] or key  # masks name the step, whatever the visit or item
            at = {**where, "step": key}
            if self.settings.masks("steps", name):
                continue
            if key not in new_steps:
                tried = len(old_steps[key].get("attempts", []))
                self.diffs.append(Difference("steps", message=f"step is gone (had {_n(tried, 'attempt')})", **at))
                continue
            if key not in old_steps:
                tried = len(new_steps[key].get("attempts", []))
                self.diffs.append(Difference("steps", message=f"new step ({_n(tried, 'attempt')})", **at))
                continue
            self.step(name, old_steps[key], new_steps[key], at)
        if not self.settings.masks("state"):
            self.fields("state", old.get("state") or {}, new.get("state") or {}, **where)

    def evals(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """An eval's runs, case by case (by suite, variant and case id, never by the order they
        finished in); a case run no more, or anew, says so."""
        was, now = _eval_cases(old), _eval_cases(new)
        for key in [*was, *(k for k in now if k not in was)]:
            a, b = was.get(key), now.get(key)
            if a is not None and b is not None:
                self.run({"eval_case": key}, a, b)
                continue
            if self.settings.masks("runs"):
                continue
            run: Mapping[str, Any] = b or a or {}
            said: Said = (
                (f"new eval case: {run.get('status')}, inputs ", short(run.get("inputs") or {}))
                if a is None
                else (f"eval case is gone (was {run.get('status')}, inputs ", short(run.get("inputs") or {}), ")")
            )
            self.diffs.append(Difference("runs", message=said, workflow=run.get("workflow"), eval_case=key))

    def step(self, name: str, old: Mapping[str, Any], new: Mapping[str, Any], at: dict[str, Any]) -> None:
        for signal in ("route", "tools_bound", "gate", "decision", "decider", "decision_comment"):
            self.value(signal, old.get(signal), new.get(signal), step_name=name, **at)
        old_tries, new_tries = old.get("attempts") or [], new.get("attempts") or []
        self.value("attempts", len(old_tries), len(new_tries), step_name=name, **at)
        for number, (a, b) in enumerate(zip(old_tries, new_tries, strict=False), 1):
            for signal in ATTEMPT_SIGNALS:
                self.value(signal, a.get(signal), b.get(signal), step_name=name, attempt=number, **at)
        if not self.settings.masks("writes", name):
            self.fields("writes", old.get("writes") or {}, new.get("writes") or {}, step_name=name, **at)

    def latency(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        s = self.settings
        for workflow, step, old_q in _per_step(old):
            new_q = (new.get(workflow) or {}).get(step)
            if new_q is None or s.masks("latency", step):
                continue
            for q, needed in (("p50", s.latency_min_samples), ("p99", s.latency_min_samples_p99)):
                if min(old_q.get("n", 0), new_q.get("n", 0)) < needed:
                    continue
                a, b = old_q[q], new_q[q]
                # Both a ratio and an absolute shift: sub-millisecond steps jitter by 10x.
                moved = a > 0 and b > 0 and not (1 / s.latency_factor <= b / a <= s.latency_factor)
                if moved and abs(b - a) > s.latency_floor_s:
                    self.diffs.append(
                        Difference(
                            "latency",
                            a,
                            b,
                            workflow=workflow,
                            step=step,
                            message=f"latency {q} {a * 1000:.1f} ms -> {b * 1000:.1f} ms "
                            f"(beyond x{s.latency_factor:g} and {s.latency_floor_s * 1000:g} ms)",
                        )
                    )

    def outputs(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """What each cell showed, stream by stream and result by result, line by line, in the order of
        the notebook: a baseline is saved with sorted keys, and a cell's key is its random id."""

        def place(key: str) -> float:  # where the cell is now, or was if it is gone
            cell = (new.get(key) or old.get(key) or {}).get("cell")
            return cell if isinstance(cell, int) else math.inf

        for key in sorted([*old, *(k for k in new if k not in old)], key=place):
            a, b = old.get(key) or {}, new.get(key) or {}
            if a.get("ignored") or b.get("ignored"):
                continue
            shown = b or a
            code = str(shown.get("code", ""))
            cell = f"cell {shown.get('cell')} ({_cut(code, 60)})"
            parts = [(name, a.get(name), b.get(name)) for name in ("stdout", "stderr")]
            old_results, new_results = a.get("results") or [], b.get("results") or []
            for n in range(max(len(old_results), len(new_results))):
                parts.append((f"result {n + 1}", _at(old_results, n), _at(new_results, n)))
            for n, (was, now) in enumerate(zip(a.get("values") or [], b.get("values") or [], strict=False)):
                # Where the text differs, its lines tell the change; here, what they cannot show.
                if isinstance(was, dict) and isinstance(now, dict) and _at(old_results, n) == _at(new_results, n):
                    self.hidden(cell, f"result {n + 1}", was, now)
            for name, before, after in parts:
                if before == after or _unpadded(before) == _unpadded(after):
                    continue
                said: Said
                if before is None:
                    said = (f"{name} is new: ", short(after))
                elif after is None:
                    said = (f"{name} is gone (was ", short(before), ")")
                else:
                    said = (f"{name} ", *_lines_changed(_unpadded(before), _unpadded(after)))
                self.diffs.append(Difference("outputs", before, after, message=said, cell=cell))

    def hidden(self, cell: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> None:
        """A table's or an array's floats that moved by more than the tolerance where its text reads
        the same: ``result 1 row 3, column 'score': 0.812345 -> 0.812345 (changed by 3e-07; ...)``."""
        moved = [(at, x, y, column) for at, x, y, column in _cells(old, new) if not _same(x, y, self.tolerance)]
        if not moved:
            return
        said = "; ".join(
            f"{at}: {_shown(x, new, was)} -> {_shown(y, new, now)} ({_by(x, y)}shown at display precision)"
            for at, x, y, (was, now) in moved[:limit]
        )
        more = len(moved) - limit
        self.diffs.append(
            Difference(
                "outputs",
                {at: x for at, x, _y, _c in moved[:100]},
                {at: y for at, _x, y, _c in moved[:100]},
                message=f"{name} {said}" + (f" (and {_n(more, 'more value')} moved)" if more > 0 else ""),
                cell=cell,
            )
        )


# The padding around a masked duration: a column of figures aligned on their right reads
# "     <duration ms>" for 0.0 and "    <duration ms>" for 12.3, while the figure itself is masked.
_DURATION_PADDING = re.compile(r" {2,}(<duration [^>]*>)(?: {2,}(?=\S))?")


def _unpadded(text: Any) -> Any:
    """``text`` with the padding around its masked durations cut to one space (a column's alignment
    follows the masked figure's width, so it changes with it: no change of its own)."""
    return _DURATION_PADDING.sub(r" \1 ", text) if isinstance(text, str) and "<duration " in text else text


def _cells(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any, tuple[list[Any], list[Any]]]]:
    """Each float of a table or an array (:func:`wfkit.replay._kernel.values_of`) where it was and
    is, by row and column or element, with its column then and now (pandas shows a column's floats
    at the same decimals); none where its shape or labels changed (its text says so)."""
    if "shape" in new:
        shape, before, after = new["shape"], old.get("values") or [], new.get("values") or []
        if old.get("shape") != shape or len(before) != len(after):
            return []
        return [(_element(i, shape), x, y, ([x], [y])) for i, (x, y) in enumerate(zip(before, after, strict=True))]
    rows, columns, was = new.get("rows") or [], new.get("columns") or [], old.get("columns") or []
    if old.get("rows") != rows or [c[0] for c in was] != [c[0] for c in columns]:
        return []
    if any(len(c[1]) != len(rows) for c in (*was, *columns)):
        return []
    return [
        (f"row {row!r}" + ("" if label is None else f", column {label!r}"), x[i], y[i], (x, y))
        for i, row in enumerate(rows)
        for (_label, x), (label, y) in zip(was, columns, strict=True)
    ]


def _element(index: int, shape: list[int]) -> str:
    """``element 3`` of a 1-D array, ``element [3, 1]`` of another."""
    place: list[int] = []
    for size in reversed(shape):
        index, at = divmod(index, size) if size else (index, 0)
        place.append(at)
    return f"element {place[0]}" if len(shape) == 1 else f"element [{', '.join(map(str, reversed(place)))}]"


def _shown(value: Any, values: Mapping[str, Any], column: list[Any]) -> str:
    """A float about as pandas or numpy shows it at its display precision: numpy each float at the
    decimals it needs, pandas a ``column``'s floats at the decimals the one needing most does."""
    if isinstance(value, dict):  # a complex
        return f"{_shown(value.get('re'), values, [])}+{_shown(value.get('im'), values, [])}j"
    if not isinstance(value, int | float):
        return str(value)  # nan, inf, or no float at all (None)
    precision = int(values.get("precision") or 6)
    if value and not 10**-precision <= abs(value) < 1e16:
        return f"{value:.{precision}e}"
    text = f"{value:.{precision}f}"
    if values.get("shown") == "numpy":
        return text.rstrip("0")  # numpy drops trailing zeros: "1."
    needed = [len(f"{v:.{precision}f}".rstrip("0").partition(".")[2]) for v in [value, *column] if _finite_number(v)]
    return f"{value:.{max(1, *needed)}f}"


def _by(before: Any, after: Any) -> str:
    if _finite_number(before) and _finite_number(after):
        return f"changed by {after - before:.3g}; "
    return ""


def _is_figure(result: Any) -> bool:
    return isinstance(result, str) and result.startswith("<Figure size ")


def _has_figures(outputs: Mapping[str, Any]) -> bool:
    return any(_is_figure(r) and "\n" in r for cell in outputs.values() for r in cell.get("results") or [])


def _figures_cut_to_first_line(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """``outputs`` with each figure's text as a baseline of format 4 holds it: its first line."""
    return {
        key: {**cell, "results": [r.split("\n", 1)[0] if _is_figure(r) else r for r in cell["results"]]}
        if cell.get("results")
        else cell
        for key, cell in outputs.items()
    }


def _as_shown_only(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """``outputs`` as a baseline of format 5 or 6 holds them: no floats at full precision, and a big
    table's digest line without its full-precision digest."""

    def shown(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        return DIGESTED.sub(lambda m: f"<wfkit replay: {m['what']}, digest of every cell {m['shown']}>", text)

    cut = {}
    for key, cell in outputs.items():
        cell = {name: shown(v) if name in ("stdout", "stderr") else v for name, v in cell.items() if name != "values"}
        if cell.get("results"):
            cell["results"] = [shown(r) for r in cell["results"]]
        cut[key] = cell
    return cut


_NUMPY_CUT = re.compile(r", \.\.\.,|\d \.\.\. [-\d]")  # array([0, 1, 2, ..., 7, 8, 9]) or [0 1 2 ... 7 8 9]


def _cut_then(d: Difference) -> bool:
    """Whether an output's difference may be only how a format-5 baseline recorded it: an array numpy
    cut that is now whole, or a table now cut and digested."""
    before, after = (v if isinstance(v, str) else "" for v in (d.before, d.after))
    return bool(_NUMPY_CUT.search(before) and not _NUMPY_CUT.search(after)) or bool(
        DIGESTED.search(after) and not DIGESTED.search(before)
    )


def _at(items: list[Any], index: int) -> Any:
    return items[index] if index < len(items) else None


def _lines_changed(before: str, after: str, limit: int = 3) -> Said:
    """``line 4 "a" -> "b"``, ``line 2 "x" moved to line 3``, ``line 5 is gone: "c"``: the first few."""
    old, new = before.splitlines(), after.splitlines()
    blocks = [
        ([(i + 1, old[i]) for i in range(i1, i2)], [(j + 1, new[j]) for j in range(j1, j2)])
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
        if op != "equal"
    ]
    said: list[Said] = []
    # A line that went in one place and came back in another moved (swapped lines, a reordered table).
    for gone, _added in blocks:
        for number, line in list(gone):
            moved = next((a for _g, added in blocks for a in added if a[1] == line), None)
            if moved is not None:
                gone.remove((number, line))
                next(added for _g, added in blocks if moved in added).remove(moved)
                said.append((f"line {number} ", short(line), f" moved to line {moved[0]}"))
    for gone, added in blocks:
        said.extend((f"line {n} ", *_change(a, b)) for (n, a), (_m, b) in zip(gone, added, strict=False))
        said.extend((f"line {n} is gone: ", short(a)) for n, a in gone[len(added) :])
        said.extend((f"line {n} is new: ", short(b)) for n, b in added[len(gone) :])
    if not said:  # the same lines, told apart by a line ending only
        return _change(before, after)
    more = len(said) - limit
    joined = [part for i, one in enumerate(said[:limit]) for part in (("; ",) if i else ()) + one]
    return (*joined, f" (and {_n(more, 'more change')})" if more > 0 else "")


def _per_step(latency: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    return [(workflow, step, q) for workflow, steps in latency.items() for step, q in steps.items()]


def baseline_latency(baseline: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """The baseline's latency per workflow and step, and the step names a format-2 baseline pooled
    over several workflows (with those workflows), which no comparison can split again."""
    latency = baseline.get("latency") or {}
    if baseline.get("version") != LATENCY_POOLED_BY_NAME:
        return dict(latency), {}
    ran: dict[str, set[str]] = {}
    for run in baseline.get("runs") or []:
        for key in run.get("steps") or {}:
            ran.setdefault(key.rpartition("#")[0] or key, set()).add(str(run.get("workflow")))
    split: dict[str, dict[str, Any]] = {}
    pooled: dict[str, list[str]] = {}
    for step, q in latency.items():
        workflows = sorted(ran.get(step, ()))
        if len(workflows) == 1:
            split.setdefault(workflows[0], {})[step] = q
        else:
            pooled[step] = workflows
    return split, pooled


def _eval_cases(evals: Mapping[str, Any]) -> dict[tuple[str, str, str], Any]:
    """An eval's runs by (suite, variant, case id), in the order the summary holds them."""
    return {
        (suite, variant, case): run
        for suite, variants in evals.items()
        for variant, cases in (variants or {}).items()
        for case, run in (cases or {}).items()
    }


def evals_not_compared(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """What a baseline recorded before replay read an eval's runs (format 7 or older) leaves
    uncompared of this replay's, with how to compare them; None where it leaves nothing so."""
    version = baseline.get("version")
    count = len(_eval_cases(current.get("evals") or {}))
    if not count or not isinstance(version, int) or version >= EVALS_SINCE:
        return None
    return (
        f"{_n(count, 'eval run')} not compared: the baseline (format {version}) holds none; "
        "record it again with --update-baseline to compare them case by case"
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def compare(
    baseline: Mapping[str, Any], current: Mapping[str, Any], settings: Settings | None = None
) -> list[Difference]:
    """Differences between a baseline summary and this replay's; empty when nothing regressed."""
    settings = settings or Settings()
    version = baseline.get("version")
    if version not in (SUMMARY_VERSION, 7, 6, 5, 4, 3, LATENCY_POOLED_BY_NAME):
        return [
            Difference(
                "version",
                version,
                SUMMARY_VERSION,
                message=f"the baseline has format {version}, this wfkit records format {SUMMARY_VERSION} "
                f"(more signals): record it again with --update-baseline",
            )
        ]
    c = _Comparer(settings)
    old_runs, new_runs = baseline.get("runs", []), current.get("runs", [])
    if len(old_runs) != len(new_runs) and not settings.masks("runs"):
        c.diffs.append(
            Difference("runs", len(old_runs), len(new_runs), message=f"runs {len(old_runs)} -> {len(new_runs)}")
        )
        # Which runs: the count alone leaves the reader to find them in the executed notebook.
        for index, run in enumerate(new_runs[len(old_runs) :], len(old_runs) + 1):
            said: Said = (f"new run: {run.get('status')}, inputs ", short(run.get("inputs") or {}))
            c.diffs.append(Difference("runs", run=index, workflow=run.get("workflow"), message=said))
        for index, run in enumerate(old_runs[len(new_runs) :], len(new_runs) + 1):
            said = (f"run is gone (was {run.get('status')}, inputs ", short(run.get("inputs") or {}), ")")
            c.diffs.append(Difference("runs", run=index, workflow=run.get("workflow"), message=said))
    for index, (old, new) in enumerate(zip(old_runs, new_runs, strict=False), 1):
        c.run({"run": index}, old, new)
    if isinstance(version, int) and version >= EVALS_SINCE and not settings.masks("evals"):
        c.evals(baseline.get("evals") or {}, current.get("evals") or {})
    if settings.masks("outputs"):
        pass
    elif isinstance(version, int) and version < OUTPUTS_SINCE:
        c.diffs.append(
            Difference(
                "outputs",
                message=f"cell outputs not compared: the baseline (format {version}) holds none; "
                "record it again with --update-baseline to compare what each cell shows",
            )
        )
    else:
        outputs = current.get("outputs") or {}
        if isinstance(version, int) and version < FIGURES_SINCE and _has_figures(outputs):
            outputs = _figures_cut_to_first_line(outputs)
            c.diffs.append(
                Difference(
                    "outputs",
                    message=f"what figures draw not compared: the baseline (format {version}) holds only their "
                    "size and axes; record it again with --update-baseline to compare their titles, labels and data",
                )
            )
        if isinstance(version, int) and version < VALUES_SINCE:
            outputs = _as_shown_only(outputs)
        before = len(c.diffs)
        c.outputs(baseline.get("outputs") or {}, outputs)
        if isinstance(version, int) and version < DIGESTS_SINCE and any(map(_cut_then, c.diffs[before:])):
            c.diffs.insert(
                before,
                Difference(
                    "outputs",
                    message=f"the baseline (format {version}) holds numpy arrays of more than 1,000 elements cut "
                    "(`...`) and tables of any size whole; a replay now shows arrays whole, and tables and arrays of "
                    f"more than {WHOLE_CELLS:,} cells cut with a digest of every cell: record it again with "
                    "--update-baseline",
                ),
            )
    if settings.compare_latency:
        old_latency, pooled = baseline_latency(baseline)
        for step, workflows in pooled.items():
            if not settings.masks("latency", step):
                c.diffs.append(
                    Difference(
                        "latency",
                        step=step,
                        message=f"latency not compared: the baseline (format {version}) pools {step!r} over "
                        f"workflows {', '.join(workflows) or '(none of its runs)'}; record it again with "
                        "--update-baseline to compare each workflow's",
                    )
                )
        c.latency(old_latency, current.get("latency", {}))
    return c.diffs
