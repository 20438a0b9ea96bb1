"""Tests for wfkit.replay._compare: every signal compared, each difference placed by run, step and attempt."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from wfkit.replay._compare import Difference, compare, evals_not_compared
from wfkit.replay._signals import SUMMARY_VERSION, Settings


def _summary() -> dict[str, Any]:
    step = {
        "route": "b",
        "tools_bound": ["t"],
        "attempts": [
            {
                "attempt_status": "retry",
                "error_kind": "transient",
                "error_type": "E",
                "error_message": "m",
                "retry_delay": 0.5,
            },
            {"attempt_status": "ok", "tools_called": [{"tool": "t", "ok": True}], "model": "m1", "tokens_in": 3},
        ],
        "gate": "why",
        "decision": "approved",
        "decider": "ana",
        "decision_comment": "fine",
        "writes": {"x": 1.0, "y": "a"},
    }
    run = {
        "workflow": "w",
        "status": "succeeded",
        "error": None,
        "inputs": {"q": 1},
        "path": ["a", "b"],
        "steps": {"a#1": step},
        "state": {"x": 1.0, "y": "a"},
    }
    latency = {"w": {"a": {"p50": 0.010, "p99": 0.020, "n": 30}, "b": {"p50": 0.010, "p99": 0.010, "n": 2}}}
    return {"version": SUMMARY_VERSION, "runs": [run], "latency": latency}


def _changed(edit: str, value: Any) -> list[str]:
    base, new = _summary(), _summary()
    target: Any = new
    *path, last = edit.split("/")
    for part in path:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return [str(d) for d in compare(base, new)]


@pytest.mark.parametrize(
    ("edit", "value", "expected"),
    [
        ("runs/0/status", "failed", 'run 1 (w): status "succeeded" -> "failed"'),
        ("runs/0/error", "E: boom", 'run 1 (w): error null -> "E: boom"'),
        ("runs/0/path", ["a"], 'run 1 (w): path ["a", "b"] -> ["a"]'),
        ("runs/0/inputs/q", 2, "run 1 (w): inputs 'q' 1 -> 2"),
        ("runs/0/state/y", "b", 'run 1 (w): state \'y\' "a" -> "b"'),
        ("runs/0/steps/a#1/route", "c", 'run 1 (w), a visit 1: route "b" -> "c"'),
        ("runs/0/steps/a#1/tools_bound", ["t", "u"], 'run 1 (w), a visit 1: tools_bound ["t"] -> ["t", "u"]'),
        ("runs/0/steps/a#1/gate", "other", 'run 1 (w), a visit 1: gate "why" -> "other"'),
        ("runs/0/steps/a#1/decision", "rejected", 'run 1 (w), a visit 1: decision "approved" -> "rejected"'),
        ("runs/0/steps/a#1/decider", "bo", 'run 1 (w), a visit 1: decider "ana" -> "bo"'),
        ("runs/0/steps/a#1/decision_comment", "no", 'run 1 (w), a visit 1: decision_comment "fine" -> "no"'),
        ("runs/0/steps/a#1/writes/x", 2.0, "run 1 (w), a visit 1: writes 'x' 1.0 -> 2.0"),
        ("runs/0/steps/a#1/attempts/0/retry_delay", 0.7, "run 1 (w), a visit 1: attempt 1: retry_delay 0.5 -> 0.7"),
        ("runs/0/steps/a#1/attempts/0/error_kind", "unknown", 'attempt 1: error_kind "transient" -> "unknown"'),
        ("runs/0/steps/a#1/attempts/0/error_type", "F", 'attempt 1: error_type "E" -> "F"'),
        ("runs/0/steps/a#1/attempts/0/error_message", "n", 'attempt 1: error_message "m" -> "n"'),
        ("runs/0/steps/a#1/attempts/1/model", "m2", 'attempt 2: model "m1" -> "m2"'),
        ("runs/0/steps/a#1/attempts/1/tokens_in", 4, "attempt 2: tokens_in 3 -> 4"),
        ("runs/0/steps/a#1/attempts/1/tools_called", [], 'attempt 2: tools_called [{"ok": true, "tool": "t"}] -> []'),
    ],
)
def test_each_signal_difference_names_its_place(edit: str, value: Any, expected: str) -> None:
    """A change to any one signal gives one difference, naming run, step, visit and attempt."""
    diffs = _changed(edit, value)
    assert 1 == len(diffs), diffs
    assert diffs[0].endswith(expected)


def test_steps_and_attempts_that_come_or_go_are_named() -> None:
    """A step gone, a step new, and a different number of attempts each say so."""
    base, new = _summary(), _summary()
    new["runs"][0]["steps"]["b#2"] = new["runs"][0]["steps"].pop("a#1")
    assert [
        "run 1 (w), a visit 1: step is gone (had 2 attempts)",
        "run 1 (w), b visit 2: new step (2 attempts)",
    ] == [str(d) for d in compare(base, new)]
    new = _summary()
    new["runs"][0]["steps"]["a#1"]["attempts"].append({"attempt_status": "ok"})
    assert ["run 1 (w), a visit 1: attempts 2 -> 3"] == [str(d) for d in compare(base, new)]


def test_runs_that_come_or_go_are_named() -> None:
    """A different number of runs says which runs came or went, with their status and inputs."""
    base, new = _summary(), _summary()
    new["runs"].append({**copy.deepcopy(new["runs"][0]), "status": "failed", "inputs": {"q": 2}})
    assert [
        "runs 1 -> 2",
        'run 2 (w): new run: failed, inputs {"q": 2}',
    ] == [str(d) for d in compare(base, new)]
    assert [
        "runs 2 -> 1",
        'run 2 (w): run is gone (was failed, inputs {"q": 2})',
    ] == [str(d) for d in compare(new, base)]


def test_floats_compare_within_the_tolerance() -> None:
    """A float within float_tolerance is the same; beyond it, a difference."""
    base, new = _summary(), _summary()
    new["runs"][0]["state"]["x"] = 1.004
    assert [] == [str(d) for d in compare(base, new, Settings(float_tolerance=0.01)) if "state" in str(d)]
    assert ["run 1 (w): state 'x' 1.0 -> 1.004"] == [str(d) for d in compare(base, new) if "state" in str(d)]


@pytest.mark.parametrize(
    ("before", "after", "shown"),
    [
        (25 * 1e-07, 26 * 1e-07, "2.5e-06 -> 2.6e-06"),
        (1.0, 2.0, "1.0 -> 2.0"),
        (0.1 + 0.2, 0.3, "0.30000000000000004 -> 0.3"),  # told apart by no %g short of 17 digits
        (1.00001, 1.00002, "1.00001 -> 1.00002"),
        (1234567.0, 1234568.0, "1234567.0 -> 1234568.0"),
        (3, 3.5, "3 -> 3.5"),
        ([1.0, 0.1 * 3], [1.0, 0.3], "[1.0, 0.30000000000000004] -> [1.0, 0.3]"),
        (
            {"cost": 25 * 1e-07, "n": 1},
            {"cost": 26 * 1e-07, "n": 1},
            '{"cost": 2.5e-06, "n": 1} -> {"cost": 2.6e-06, "n": 1}',
        ),
        ([25 * 1e-07], [], "[2.5e-06] -> []"),  # alone, without the binary remainder (2.4999999999999998e-06)
        (None, 0.1 + 0.2, "null -> 0.3"),
        ([0.1, 0.7], [0.1, 0.7, 0.1 + 0.7], "[0.1, 0.7] -> [0.1, 0.7, 0.8]"),
        (2 / 3, None, "0.666666666666667 -> null"),
        (1e20, None, "1e+20 -> null"),
        (3.0, None, "3.0 -> null"),
    ],
)
def test_a_float_that_changed_shows_the_digits_that_tell_it_apart(before: Any, after: Any, shown: str) -> None:
    """A float (alone or inside a list or mapping) shows the fewest significant digits, three or
    more, at which before and after differ: as a reader would write it, never hiding the change."""
    base, new = _summary(), _summary()
    base["runs"][0]["steps"]["a#1"]["attempts"][1]["cost"] = before
    new["runs"][0]["steps"]["a#1"]["attempts"][1]["cost"] = after
    (diff,) = compare(base, new, Settings(float_tolerance=0))
    assert f"run 1 (w), a visit 1: attempt 2: cost {shown}" == str(diff)


def test_a_float_new_or_gone_reads_as_a_person_would_write_it() -> None:
    """A field that is new or gone shows its floats without the remainder of binary arithmetic, on
    the console and in the report (it showed `0.30000000000000004` and `0.7999999999999999`)."""
    base, new = _summary(), _summary()
    new["runs"][0]["state"]["total"] = 0.1 + 0.2
    base["runs"][0]["state"]["scores"] = [0.1 + 0.7, 1 / 3]
    said = {str(d): d for d in compare(base, new) if d.signal == "state"}
    assert [
        "run 1 (w): state 'scores' is gone (was [0.8, 0.333333333333333])",
        "run 1 (w): state 'total' is new: 0.3",
    ] == (sorted(said))
    printed = [part.printed for d in said.values() for part in d.said if not isinstance(part, str)]
    assert ["0.3", "[0.8, 0.333333333333333]"] == sorted(printed)


def test_masks_silence_exactly_what_they_name() -> None:
    """A mask by signal, by step:signal or by field hides that and nothing else."""
    base, new = _summary(), _summary()
    attempts = new["runs"][0]["steps"]["a#1"]["attempts"]
    attempts[0]["retry_delay"] = 9.0
    new["runs"][0]["state"]["y"] = "changed"
    assert 2 == len(compare(base, new))
    assert ["state"] == [d.signal for d in compare(base, new, Settings(mask=("retry_delay",)))]
    assert ["state"] == [d.signal for d in compare(base, new, Settings(masked_steps={"a": frozenset({"retry_delay"})}))]
    assert ["retry_delay"] == [d.signal for d in compare(base, new, Settings(mask=("state.y",)))]
    assert 2 == len(compare(base, new, Settings(masked_steps={"other": frozenset({"retry_delay"})})))


def test_latency_moves_only_beyond_factor_and_floor_with_enough_samples() -> None:
    """P50 beyond x factor and the floor is a regression; P99 needs 20 samples, P50 three."""
    base, new = _summary(), _summary()
    on = Settings(compare_latency=True, latency_factor=2.0, latency_floor_s=0.005)
    new["latency"]["w"]["a"] = {"p50": 0.015, "p99": 0.030, "n": 30}  # x1.5: within the factor
    assert [] == compare(base, new, on)
    new["latency"]["w"]["a"] = {"p50": 0.050, "p99": 0.200, "n": 30}
    assert [
        "a (all runs of w): latency p50 10.0 ms -> 50.0 ms (beyond x2 and 5 ms)",
        "a (all runs of w): latency p99 20.0 ms -> 200.0 ms (beyond x2 and 5 ms)",
    ] == [str(d) for d in compare(base, new, on)]
    new["latency"]["w"]["b"] = {"p50": 0.5, "p99": 0.5, "n": 2}  # two samples: one slow moment, not a trend
    assert 2 == len(compare(base, new, on))
    assert [] == compare(base, new)  # compare_latency is off by default


def test_a_baseline_of_an_older_format_asks_to_be_recorded_again() -> None:
    """A version-1 baseline gives one difference saying how to refresh it."""
    (diff,) = compare({"version": 1, "runs": []}, _summary())
    assert isinstance(diff, Difference)
    assert "record it again with --update-baseline" in str(diff)


def _runs_and_latency(diffs: list[Difference]) -> list[str]:
    """The differences but the one saying an older baseline holds no cell outputs."""
    return [str(d) for d in diffs if d.signal != "outputs"]


def test_a_baseline_without_cell_outputs_says_they_are_not_compared_and_how_to_record_them() -> None:
    """A format-3 baseline (no cell outputs) compares its runs and says, once, that what the cells
    showed is not compared until it is recorded again; masking `outputs` silences that."""
    old, new = _summary(), _summary()
    old["version"] = 3
    new["outputs"] = {"c1": {"cell": 1, "code": "print(x)", "stdout": "1\n"}}
    assert [
        "cell outputs not compared: the baseline (format 3) holds none; "
        "record it again with --update-baseline to compare what each cell shows"
    ] == [str(d) for d in compare(old, new)]
    assert [] == compare(old, new, Settings(mask=("outputs",)))


def test_what_a_cell_showed_is_compared_line_by_line() -> None:
    """A changed, moved, gone or new line of a cell's stream or result is named with the cell; a
    cell tagged to be ignored on either side is not compared."""
    old, new = _summary(), _summary()
    old["outputs"] = {
        "c1": {"cell": 1, "code": "print(x)", "stdout": "a\nb\nc\n", "results": ["x\ny"]},
        "c2": {"cell": 3, "code": "noisy()", "stdout": "1\n"},
    }
    new["outputs"] = {
        "c1": {"cell": 1, "code": "print(x)", "stdout": "b\na\nC\n", "stderr": "w\n", "results": ["x"]},
        "c2": {"cell": 3, "code": "noisy()", "ignored": True},
    }
    assert [
        'cell 1 (print(x)): stdout line 2 "b" moved to line 1; line 3 "c" -> "C"',
        'cell 1 (print(x)): stderr is new: "w\\n"',
        'cell 1 (print(x)): result 1 line 2 is gone: "y"',
    ] == [str(d) for d in compare(old, new)]


def test_the_padding_of_a_masked_duration_is_no_change() -> None:
    """A right-aligned column of latencies (a run's text view) pads a figure by its width: masked,
    `0.0 ms` read `      <duration ms>` and `0.004 ms` `    <duration ms>`, a regression of nothing
    but alignment. The padding around a masked duration is not compared; other spacing still is."""
    old, new = _summary(), _summary()
    row = "  plan        1 ok        1{}<duration ms>{}-> write\n"
    old["outputs"] = {"c1": {"cell": 1, "code": "run", "stdout": row.format("      ", "  ") + "a b\n"}}
    new["outputs"] = {"c1": {"cell": 1, "code": "run", "stdout": row.format("    ", "    ") + "a b\n"}}
    assert [] == compare(old, new)
    new["outputs"]["c1"]["stdout"] = row.format("    ", "    ") + "a  b\n"
    assert ['cell 1 (run): stdout line 2 "a b" -> "a  b"'] == [str(d) for d in compare(old, new)]


def test_a_format_2_baseline_pooled_latency_by_step_name_and_is_read_as_it_was_meant() -> None:
    """A format-2 baseline (latency pooled by step name over workflows) compares as before where one
    workflow ran the step; a name two workflows shared says it cannot be split and how to refresh it."""
    on = Settings(compare_latency=True, latency_factor=2.0, latency_floor_s=0.005)
    old, new = _summary(), _summary()
    old["version"] = 2
    old["runs"].append({**copy.deepcopy(old["runs"][0]), "workflow": "v"})
    old["runs"][1]["steps"] = {"b#1": old["runs"][1]["steps"]["a#1"]}
    old["latency"] = {"a": {"p50": 0.010, "p99": 0.020, "n": 30}, "b": {"p50": 0.010, "p99": 0.010, "n": 2}}
    new["runs"] = copy.deepcopy(old["runs"])
    new["latency"]["w"]["a"] = {"p50": 0.050, "p99": 0.020, "n": 30}
    new["latency"]["v"] = {"b": {"p50": 0.010, "p99": 0.010, "n": 2}}
    assert ["a (all runs of w): latency p50 10.0 ms -> 50.0 ms (beyond x2 and 5 ms)"] == [
        str(d) for d in _runs_and_latency(compare(old, new, on))
    ]
    new["latency"]["w"]["a"] = {"p50": 0.010, "p99": 0.020, "n": 30}
    assert [] == _runs_and_latency(compare(old, new, on))
    new["runs"][0]["steps"]["b#1"] = old["runs"][0]["steps"]["b#1"] = old["runs"][0]["steps"]["a#1"]
    assert [
        "b (all runs): latency not compared: the baseline (format 2) pools 'b' over workflows v, w; "
        "record it again with --update-baseline to compare each workflow's"
    ] == [str(d) for d in _runs_and_latency(compare(old, new, on))]
    assert [] == _runs_and_latency(compare(old, new))  # nothing said where latency is not compared


def test_an_item_of_a_map_step_is_named_by_its_index() -> None:
    """A map item's difference reads `step visit V item I`; a pooled latency one `step (all runs)`."""
    assert "m visit 1 item 2" == Difference("route", step="m#1[2]").step_label
    assert "m (all runs)" == Difference("latency", step="m").step_label


def test_a_format_4_baseline_compares_figures_by_size_and_axes_and_says_what_it_does_not() -> None:
    """A format-4 baseline holds a figure's first line only: today's figure is compared by that line
    (its size and axes, so a figure of another size is still a regression) and one line says that what
    figures draw is not compared until the baseline is recorded again; with no figure, nothing is said."""
    old, new = _summary(), _summary()
    old["version"] = 4
    old["outputs"] = {"c1": {"cell": 1, "code": "plot()", "results": ["<Figure size 400x200 with 1 Axes>", "x"]}}
    drawn = "<Figure size 400x200 with 1 Axes>\naxes 1: title 'a', x '' (linear), y '' (linear)\naxes 1: 1 line"
    new["outputs"] = {"c1": {"cell": 1, "code": "plot()", "results": [drawn, "x"]}}
    said = (
        "what figures draw not compared: the baseline (format 4) holds only their size and axes; "
        "record it again with --update-baseline to compare their titles, labels and data"
    )
    assert [said] == [str(d) for d in compare(old, new)]
    new["outputs"]["c1"]["results"][0] = drawn.replace("400x200", "400x300")
    assert [
        said,
        'cell 1 (plot()): result 1 line 1 "<Figure size 400x200 with 1 Axes>" -> "<Figure size 400x300 with 1 Axes>"',
    ] == [str(d) for d in compare(old, new)]
    old["outputs"] = new["outputs"] = {"c1": {"cell": 1, "code": "print(x)", "stdout": "1\n"}}
    assert [] == compare(old, new)


def test_a_format_5_baseline_that_holds_an_array_cut_or_a_big_table_whole_says_to_record_it_again() -> None:
    """A format-5 baseline holds numpy arrays of more than 1,000 elements cut (numpy's `...`) and
    tables of any size whole: where today's output differs that way (the array whole, the table cut
    and digested), one line says why, and how to record the baseline again; where it differs
    otherwise, or not at all, nothing is said."""
    old, new = _summary(), _summary()
    old["version"] = 5
    cut, whole = "array([   0,    1,    2, ..., 1997, 1998, 1999])", "array([   0,    1,    2,    3,\n 4,    5])"
    digest = "<wfkit replay: a table of 20,000 rows x 1 columns, digest of every cell 0123456789abcdef>"
    old["outputs"] = {
        "c1": {"cell": 1, "code": "a", "results": [cut]},
        "c2": {"cell": 2, "code": "t", "stdout": "0  1\n1  2\n"},
    }
    new["outputs"] = {
        "c1": {"cell": 1, "code": "a", "results": [whole]},
        "c2": {"cell": 2, "code": "t", "stdout": f"0  1\n{digest}\n"},
    }
    said = [str(d) for d in compare(old, new)]
    assert 3 == len(said), said
    assert said[0] == (
        "the baseline (format 5) holds numpy arrays of more than 1,000 elements cut (`...`) and tables of any size "
        "whole; a replay now shows arrays whole, and tables and arrays of more than 10,000 cells cut with a digest "
        "of every cell: record it again with --update-baseline"
    )
    assert said[1].startswith("cell 1 (a): result 1 ")
    assert said[2].startswith("cell 2 (t): stdout ")
    new["outputs"] = {"c1": {"cell": 1, "code": "a", "results": ["array([5])"]}, "c2": old["outputs"]["c2"]}
    old["outputs"]["c1"]["results"] = ["array([4])"]
    assert ['cell 1 (a): result 1 line 1 "array([4])" -> "array([5])"'] == [str(d) for d in compare(old, new)]
    new["outputs"] = old["outputs"]
    assert [] == compare(old, new)


def _scores(mean: float, **more: Any) -> dict[str, Any]:
    """A summary whose one cell displayed a score table (its text as pandas shows it) and an array."""
    summary = _summary()
    table = {"shown": "pandas", "precision": 6, "rows": [0, 1, "pro"], "columns": [["score", [0.5, 0.25, mean]]]}
    array = {"shown": "numpy", "precision": 8, "shape": [2, 2], "values": [0.25, 0.5, "nan", mean / 100]}
    cell = {"cell": 1, "code": "scores", "results": ["score table", "array"], "values": [table, array], **more}
    summary["outputs"] = {"c1": cell}
    return summary


def test_floats_a_table_or_array_shows_the_same_are_compared_at_full_precision_within_the_tolerance() -> None:
    """A float that moved below what a table or an array shows (its text is the same) is a
    difference naming the row and column or the element, as shown and by how much; within the
    notebook's `float_tolerance` it is none, as for the runs' signals."""
    said = [str(d) for d in compare(_scores(0.8123451), _scores(0.8123454))]
    assert [
        "cell 1 (scores): result 1 row 'pro', column 'score': 0.812345 -> 0.812345 "
        "(changed by 3e-07; shown at display precision)",
        "cell 1 (scores): result 2 element [1, 1]: 0.00812345 -> 0.00812345 "
        "(changed by 3e-09; shown at display precision)",
    ] == said
    assert [] == compare(_scores(0.8123451), _scores(0.8123451 + 1e-12))
    means = [_scores(0.5), _scores(0.5)]
    for summary, pro in zip(means, (21.1, 21.1000003), strict=True):
        summary["outputs"]["c1"]["values"][0]["columns"] = [["mean", [19.4, 17.25, pro]]]
    (diff,) = compare(*means)
    assert "row 'pro', column 'mean': 21.10 -> 21.10 (changed by 3e-07; " in str(diff)  # as pandas shows the column
    assert [] == compare(_scores(0.8123451), _scores(0.8123454), Settings(float_tolerance=1e-6))


def test_where_a_table_reads_differently_its_lines_tell_the_change_alone() -> None:
    """A table whose text changed is told by its lines, once: its floats are not listed again; a
    table whose rows changed is not compared float by float (its text says so)."""
    old, new = _scores(0.8123451), _scores(0.9123451)
    new["outputs"]["c1"]["results"][0] = "score table, changed"
    new["outputs"]["c1"]["results"][1] = "array, changed"
    said = [str(d) for d in compare(old, new)]
    assert 2 == len(said), said
    assert all(" line 1 " in line for line in said), said
    new = _scores(0.9123451)
    new["outputs"]["c1"]["values"][0]["rows"] = [0, 1, "team"]
    new["outputs"]["c1"]["values"][1]["shape"] = [4]
    assert [] == compare(old, new)


def test_a_format_6_baseline_is_compared_as_it_was_recorded_what_tables_show() -> None:
    """A format-6 baseline holds tables and arrays as shown, and a big one's digest as shown: today's
    floats at full precision and full-precision digests are left out of its comparison, so it replays
    ok; a change in what is shown is still a regression."""
    shown = "<wfkit replay: a table of 20,000 rows x 1 columns, digest of every cell 0123456789abcdef"
    old = _scores(0.8123451, stdout=f"{shown}>\n")
    old["version"] = 6
    del old["outputs"]["c1"]["values"]
    new = _scores(0.8123454, stdout=f"{shown}, at full precision fedcba9876543210>\n")
    assert [] == compare(old, new)
    new["outputs"]["c1"]["stdout"] = new["outputs"]["c1"]["stdout"].replace("0123", "3210")
    (diff,) = compare(old, new)
    assert str(diff).startswith("cell 1 (scores): stdout line 1 "), str(diff)


def _evals(*order: str) -> dict[str, Any]:
    """A summary whose runs are an eval's: cases ``order`` of variant ``llm`` of suite ``router``, in
    that order (the order they finished in)."""
    summary = _summary()
    run = summary.pop("runs")[0]
    cases = {case: {**copy.deepcopy(run), "inputs": {"q": case}} for case in order}
    return {**summary, "runs": [], "evals": {"router": {"llm": cases}}}


def test_eval_runs_are_compared_by_suite_variant_and_case_whatever_order_they_finished_in() -> None:
    """An eval's runs finish in an order of their own on every replay: they are compared case by
    case, a change naming the suite, the variant, the case, the step and the attempt."""
    assert [] == compare(_evals("q1", "q2", "q3"), _evals("q3", "q1", "q2"))
    new = _evals("q2", "q3", "q1")
    new["evals"]["router"]["llm"]["q2"]["steps"]["a#1"]["route"] = "c"
    new["evals"]["router"]["llm"]["q3"]["steps"]["a#1"]["attempts"][1]["tokens_in"] = 5
    assert [
        'eval router, variant llm, case q2 (w), a visit 1: route "b" -> "c"',
        "eval router, variant llm, case q3 (w), a visit 1: attempt 2: tokens_in 3 -> 5",
    ] == [str(d) for d in compare(_evals("q1", "q2", "q3"), new)]
    (diff,) = [d for d in compare(_evals("q1", "q2", "q3"), new) if d.signal == "route"]
    assert {"suite": "router", "variant": "llm", "case": "q2"} == diff.to_json()["eval"]


def test_eval_cases_that_come_or_go_are_named() -> None:
    """A case an eval no longer runs, or runs anew, says so with its status and inputs."""
    assert [
        'eval router, variant llm, case q2 (w): eval case is gone (was succeeded, inputs {"q": "q2"})',
        'eval router, variant llm, case q4 (w): new eval case: succeeded, inputs {"q": "q4"}',
    ] == [str(d) for d in compare(_evals("q1", "q2"), _evals("q4", "q1"))]
    assert [] == compare(_evals("q1", "q2"), _evals("q4", "q1"), Settings(mask=("evals",)))


def test_a_format_7_baseline_replays_as_recorded_without_eval_runs() -> None:
    """A baseline recorded before replay read an eval's runs (format 7) holds none of them: today's
    are left out of its comparison, which it passes as it did, and it says so once."""
    old = _summary()
    old["version"] = 7
    new = _evals("q1")
    new["runs"] = old["runs"]
    assert [] == compare(old, new)
    said = evals_not_compared(old, new)
    assert said is not None
    assert "1 eval run not compared: the baseline (format 7) holds none" in said
    assert "--update-baseline" in said
    assert None is evals_not_compared(_evals("q1"), new)
