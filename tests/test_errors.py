"""The exception hierarchy, messages and attributes."""

from __future__ import annotations

import pytest

import wfkit as wf

# ---- hierarchy -----------------------------------------------------------------------------------

ALL_ERRORS = [
    wf.WorkflowDefinitionError,
    wf.ConditionError,
    wf.StateConflictError,
    wf.StateValueError,
    wf.StepTimeoutError,
    wf.RunError,
    wf.StepFailedError,
    wf.VisitLimitError,
    wf.RunTimeoutError,
]


@pytest.mark.parametrize("error", ALL_ERRORS)
def test_every_error_is_a_wfkit_error(error: type[Exception]) -> None:
    """Every error wfkit raises derives from WfkitError, so one except clause catches them all."""
    assert issubclass(error, wf.WfkitError)


@pytest.mark.parametrize(
    "error", [wf.WorkflowDefinitionError, wf.ConditionError, wf.StateConflictError, wf.StateValueError]
)
def test_bad_value_errors_are_value_errors(error: type[Exception]) -> None:
    """Definition, condition, conflict and state-value errors are also ValueErrors."""
    assert issubclass(error, ValueError)


@pytest.mark.parametrize("error", [wf.RunTimeoutError, wf.StepTimeoutError])
def test_timeouts_are_timeout_errors(error: type[Exception]) -> None:
    """Both timeout errors are also builtin TimeoutErrors."""
    assert issubclass(error, TimeoutError)


@pytest.mark.parametrize("error", [wf.StepFailedError, wf.VisitLimitError, wf.RunTimeoutError])
def test_run_outcomes_are_run_errors(error: type[Exception]) -> None:
    """A failed step, a hit visit bound and a run deadline are all RunErrors."""
    assert issubclass(error, wf.RunError)


@pytest.mark.parametrize("error", [wf.RunError, wf.StepFailedError, wf.VisitLimitError])
def test_run_errors_are_neither_value_nor_timeout_errors(error: type[Exception]) -> None:
    """Plain run failures are not mistaken for bad values or timeouts."""
    assert not issubclass(error, ValueError)
    assert not issubclass(error, TimeoutError)


def test_step_timeout_is_not_a_run_error() -> None:
    """One attempt's timeout is not a run outcome: it may be retried."""
    assert not issubclass(wf.StepTimeoutError, wf.RunError)
    assert not issubclass(wf.StepTimeoutError, ValueError)


def test_run_timeout_is_caught_by_except_timeout_error() -> None:
    """Code written against builtin TimeoutError catches a run deadline."""
    with pytest.raises(TimeoutError, match="deadline"):
        raise wf.RunTimeoutError("the run's deadline of 1 s passed", run_id="r")


# ---- RunError ------------------------------------------------------------------------------------


def test_run_error_message_names_run_step_and_attempt() -> None:
    """RunError reads "run X, step 'y', attempt 2: msg" and keeps run_id, step and attempt."""
    err = wf.RunError("it broke", run_id="abc123", step="fetch", attempt=2)
    assert "run abc123, step 'fetch', attempt 2: it broke" == str(err)
    assert ("abc123", "fetch", 2) == (err.run_id, err.step, err.attempt)


def test_run_error_message_leaves_out_what_is_unknown() -> None:
    """Without step or attempt the message names only what is known."""
    assert "run r1: cancelled" == str(wf.RunError("cancelled", run_id="r1"))
    assert "run r1, step 'a': over" == str(wf.RunError("over", run_id="r1", step="a"))
    assert "run r1, attempt 3: late" == str(wf.RunError("late", run_id="r1", attempt=3))
    err = wf.RunError("cancelled", run_id="r1")
    assert (None, None) == (err.step, err.attempt)


@pytest.mark.parametrize("error", [wf.StepFailedError, wf.VisitLimitError, wf.RunTimeoutError])
def test_run_error_subclasses_share_the_message_format(error: type[wf.RunError]) -> None:
    """The RunError subclasses format their message and keep attributes like RunError does."""
    err = error("msg", run_id="r", step="s", attempt=1)
    assert "run r, step 's', attempt 1: msg" == str(err)
    assert ("r", "s", 1) == (err.run_id, err.step, err.attempt)


def test_run_error_needs_a_run_id() -> None:
    """run_id is keyword-only and required."""
    with pytest.raises(TypeError, match="run_id"):
        wf.RunError("msg")  # type: ignore[call-arg]


# ---- WorkflowDefinitionError ---------------------------------------------------------------------


def test_definition_error_lists_problems_as_bullets_with_plural_count() -> None:
    """Several problems are counted in the plural and listed one bullet line each."""
    err = wf.WorkflowDefinitionError("triage", ["step 'x' is unknown", "no entry step"])
    assert "workflow 'triage' has 2 problems:\n  - step 'x' is unknown\n  - no entry step" == str(err)


def test_definition_error_with_one_problem_is_singular() -> None:
    """A single problem is counted as "1 problem"."""
    err = wf.WorkflowDefinitionError("triage", ["no entry step"])
    assert "workflow 'triage' has 1 problem:\n  - no entry step" == str(err)


def test_definition_error_keeps_workflow_and_a_copy_of_problems() -> None:
    """workflow and problems are kept; later changes to the caller's list do not alter the error."""
    problems = ["a", "b"]
    err = wf.WorkflowDefinitionError("w", problems)
    problems.append("c")
    assert ("w", ["a", "b"]) == (err.workflow, err.problems)
    assert err.problems is not problems


def test_definition_error_is_raised_by_validate_with_every_problem() -> None:
    """validate() reports every defect of a workflow in one error."""
    flow = wf.Workflow("broken")
    flow.step(lambda s: None, name="a")
    flow.edge("a", "nowhere", "void")
    with pytest.raises(wf.WorkflowDefinitionError, match=r"workflow 'broken' has \d+ problems:\n  - ") as info:
        flow.validate()
    assert len(info.value.problems) >= 2
    assert "broken" == info.value.workflow


# ---- the others ----------------------------------------------------------------------------------


def test_state_conflict_error_names_field_steps_and_the_merge_fix() -> None:
    """StateConflictError keeps field, first and second, and its message shows the merge= fix."""
    err = wf.StateConflictError("answer", "left", "right")
    assert ("answer", "left", "right") == (err.field, err.first, err.second)
    assert (
        "steps 'left' and 'right' ran in parallel and both wrote state field 'answer'; "
        "write different fields, or declare how values merge, e.g. "
        "Workflow(..., merge={'answer': wfkit.append})"
    ) == str(err)


def test_step_timeout_error_keeps_step_and_timeout() -> None:
    """StepTimeoutError keeps step and timeout and says them with three significant digits."""
    err = wf.StepTimeoutError("fetch", 1.23456)
    assert ("fetch", 1.23456) == (err.step, err.timeout)
    assert "step 'fetch' did not finish within 1.23 s" == str(err)
    assert "step 'x' did not finish within 30 s" == str(wf.StepTimeoutError("x", 30))


@pytest.mark.parametrize("error", [wf.ConditionError, wf.StateValueError, wf.WfkitError])
def test_plain_errors_keep_their_message(error: type[Exception]) -> None:
    """Errors without their own constructor take a message and show it as is."""
    assert "field 'score' holds str" == str(error("field 'score' holds str"))


def test_definition_error_locations_default_to_the_whole_workflow() -> None:
    """Without locations each problem is about the whole workflow; a count mismatch is refused."""
    assert [(), ()] == wf.WorkflowDefinitionError("w", ["a", "b"]).locations
    with pytest.raises(ValueError, match="2 problems but 1 locations"):
        wf.WorkflowDefinitionError("w", ["a", "b"], [("steps",)])


def test_flow_spec_error_is_a_definition_error() -> None:
    """A spec's problems are caught like a workflow's: FlowSpecError is a WorkflowDefinitionError."""
    err = wf.FlowSpecError("w", ["$.entry: missing"], [("entry",)])
    assert (True, [("entry",)]) == (isinstance(err, wf.WorkflowDefinitionError), err.locations)
