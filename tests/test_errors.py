"""The exception hierarchy, messages and attributes, and their pickling (as Dask sends errors back)."""

from __future__ import annotations

import copy as copymod
import importlib
import pickle
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest

import wfkit as wf
from wfkit._extras import MissingExtraError
from wfkit.distributed._dask import _GivenUp
from wfkit.engine._run import DetachedRun
from wfkit.engine._subflows import ChildHalted
from wfkit.model._retry import classify_error, retry_after_of
from wfkit.replay._errors import ReplayError
from wfkit.replay._pytest_plugin import ReplayFailed
from wfkit.replay._result import NotebookReport
from wfkit.store._codec import _Refused

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


# ---- pickling ------------------------------------------------------------------------------------

RUN = "01j8x2k4m9q7"


def _step_failed() -> wf.StepFailedError:
    err = wf.StepFailedError("failed with TimeoutError (transient)", run_id=RUN, step="fetch", attempt=4)
    err.error_kind = wf.ErrorKind.TRANSIENT  # as the engine sets it
    return err


def _subflow_failed() -> wf.SubflowError:
    err = wf.SubflowError("refund", "refund-flow", "01child", "failed", _step_failed())
    err.error_kind = wf.ErrorKind.TRANSIENT  # as the engine sets it
    return err


def _status_error() -> wf.llm.LLMStatusError:
    """A 503 whose server says not to retry: only its x-should-retry makes it permanent."""
    request = httpx.Request("POST", "http://127.0.0.1:8000/v1/chat/completions")
    headers = {"x-should-retry": "false", "retry-after-ms": "2500"}
    response = httpx.Response(503, headers=headers, request=request, json={"error": "overloaded"})
    return wf.llm.LLMStatusError(
        "127.0.0.1:8000 answered HTTP 503 Service Unavailable for model 'llama3.1:8b'; retry after 2.5 s",
        status_code=503,
        retry_after=2.5,
        response=response,
    )


def _raised_by_a_run(tmp_path: Path) -> BaseException:
    """What ``flow.run`` raises when an item of its map fails: it carries ``err.run``, the run's handle."""
    flow = wf.Workflow("sizes", inputs=["docs"])

    @flow.map(over="docs", into="sizes")
    def size(doc: str) -> int:
        if doc == "b":
            raise PermissionError("no access to doc b")
        return len(doc)

    with pytest.raises(wf.StepFailedError) as info:
        flow.run({"docs": ["a", "b", "c"]}, workspace=tmp_path / "ws")
    assert "failed" == info.value.run.status  # type: ignore[attr-defined]
    return info.value


class LedgerClosed(Exception):
    """An error of the user's own, not wfkit's: its pickling is Python's, not ours."""


def _closing_merge(current: object, update: object) -> object:
    raise LedgerClosed("the ledger is closed for the day")


def _users_error_raised_by_a_run(tmp_path: Path) -> BaseException:
    """What ``flow.run`` raises when the user's own merge rule fails: that error itself (its own
    type, not a wfkit error), carrying ``err.run``, the run's handle."""
    flow = wf.Workflow("ledger", inputs=["entries"], merge={"entries": _closing_merge})

    @flow.step
    def book(state: dict[str, Any]) -> dict[str, Any]:
        return {"entries": [1]}

    with pytest.raises(LedgerClosed) as info:
        flow.run({"entries": []}, workspace=tmp_path / "ws")
    assert "failed" == info.value.run.status  # type: ignore[attr-defined]
    return info.value


PICKLE_CASES: list[Callable[[Path], BaseException]] = [
    lambda _: wf.WfkitError("something wfkit raised"),
    lambda _: wf.WorkflowDefinitionError(
        "triage",
        ["step 'answer' is unreachable: add an edge to it", "route of 'classify' has no default: add default="],
        [("steps", "answer"), ("routes", "classify")],
    ),
    lambda _: wf.FlowSpecError(
        "triage", ["$.routes.classify.routes[1].go: no step 'refnd'; did you mean 'refund'?"], [("routes", "classify")]
    ),
    lambda _: wf.ConditionError("cannot compare field 'amount' (str) with 100 (int) using 'gt'"),
    lambda _: wf.StateConflictError("answer", "draft", "review"),
    lambda _: wf.StateValueError("step 'classify' returned a list, not a dict of state updates"),
    lambda _: wf.StateKeyError("topic", "the state has no field 'topic': it holds ['topc']"),
    lambda _: wf.RunError("cancelled", run_id=RUN),
    lambda _: _step_failed(),
    lambda _: wf.VisitLimitError("visited 5 times, its max_visits", run_id=RUN, step="revise", attempt=1),
    lambda _: wf.RunTimeoutError("the run's deadline of 30 s passed", run_id=RUN, step="fetch"),
    lambda _: wf.StepTimeoutError("fetch", 12.5),
    lambda _: wf.StepTimeoutError("fetch", 12.5, started=False),
    lambda _: wf.MapItemError("summarise", 2, 5, wf.TransientError("HTTP 429"), "the server asked to wait 3600 s"),
    lambda _: _subflow_failed(),
    lambda _: wf.SubflowError("refund", "refund-flow", "01child", "cancelled", None),
    lambda _: wf.StoreCorruptError(
        "journal row 7 fails its checksum", path="runs/wfkit.db", run_id=RUN, row=7, column="journal.updates"
    ),
    lambda _: wf.WorkspaceNotFoundError("no workspace at 'runs/': pass create=True to make one"),
    lambda _: wf.TicketError("ticket 3 of run 01j8 was already approved by ana"),
    lambda _: wf.DecisionsFileError("decisions.jsonl line 4: 'aprove' is no decision; write approve or reject"),
    lambda _: wf.SuiteFileError("evals/x/suite.py must define `suite = wf.evals.Suite(...)`; it defines no `suite`"),
    lambda _: wf.ApprovalRejectedError("rejected by ana: too expensive", run_id=RUN, step="refund", attempt=1),
    lambda _: wf.ProcessCrashedError("the process died while attempt 2 of step 'refund' ran"),
    lambda _: wf.LeaseError("pid 4242 on host-a executes it", run_id=RUN),
    lambda _: wf.WorkflowChangedError("step 'fetch', completed, is gone from the workflow", run_id=RUN),
    lambda _: wf.ApprovalRequiredError("step 'refund' needs a decision; the policy is 'fail'", run_id=RUN),
    lambda _: wf.ExecutorError("job 7f3a was given up while it ran"),
    lambda _: wf.SchedulerUnreachableError("tcp://10.0.0.5:8786", "no Dask scheduler answered at tcp://10.0.0.5:8786"),
    lambda _: wf.SchedulerLostError("tcp://10.0.0.5:8786", "7f3a", "lost the Dask scheduler while job 7f3a ran"),
    lambda _: wf.DatasetUnreachableError("worker tcp://10.0.0.6:40123 cannot see the dataset s3://bucket/runs"),
    lambda _: wf.PartitionError("7f3a", 3, "partition 3 of job 7f3a failed on every attempt"),
    lambda _: _GivenUp("job 7f3a was given up: partition 3 stops after 2 cases"),
    lambda _: wf.StateSizeWarning("state field 'pages' holds 12 MB"),
    lambda _: wf.SecretInStateWarning("state field 'token' holds a secret: its checkpoint keeps [REDACTED]"),
    lambda _: wf.UnfinishedJobWarning("job 7f3a has no end recorded and its driver is gone"),
    lambda _: wf.WorkflowChangedWarning("run 01j8 is resumed with a changed workflow"),
    lambda _: wf.RouteFieldWarning(
        "the route after step 'grade' compares field 'scroe', which no step put in the state"
    ),
    lambda _: wf.AlreadyDecidedWarning(
        "ticket 01t was already approved by ann at 2026-12-03 17:40 UTC (fine): nothing changed"
    ),
    lambda _: wf.evals.UnpairedCasesWarning("2 cases of the baseline's result are not in this one: c7, c9"),
    lambda _: wf.TransientError("HTTP 429 from the search API", retry_after=2.5),
    lambda _: wf.PermanentError("invoice 88 does not exist"),
    lambda _: ChildHalted("01child", "waiting_approval"),
    lambda _: wf.llm.ToolNotBoundError("step 'answer' called 'sql_query', which its route did not bind"),
    lambda _: wf.llm.UnknownToolError("no registry provides the tool 'sql_query'"),
    lambda _: wf.llm.CassetteMissError(
        "the cassette has no recording of this request",
        request={"method": "POST", "body": {"messages": [{"role": "user", "content": "hi"}]}},
        nearest={"method": "POST", "body": {"messages": [{"role": "user", "content": "hello"}]}},
    ),
    lambda _: wf.llm.LLMError("the chat call failed"),
    lambda _: _status_error(),
    lambda _: wf.llm.LLMTimeoutError("127.0.0.1:8000 did not answer within 30 s (read timeout)"),
    lambda _: wf.llm.LLMConnectionError("could not reach 127.0.0.1:8000: connection refused"),
    lambda _: wf.llm.LLMResponseError("127.0.0.1:8000 answered a reply with no choices"),
    lambda _: MissingExtraError("executor= needs 'distributed'; install it with: pip install \"wfkit[dask]\""),
    lambda _: ReplayError("notebooks/99.ipynb: no such notebook"),
    lambda _: ReplayFailed(NotebookReport(key="notebooks/01_triage.ipynb", status="regressed", seconds=3.2, runs=4)),
    lambda _: _Refused("['when']", complex(1, 2)),
    _raised_by_a_run,
    _users_error_raised_by_a_run,
]

#: What lives in the process that made the error and cannot travel: None in a pickled copy (a
#: run's handle travels as a DetachedRun, checked on its own).
_LEFT_BEHIND = ("response",)


def _case_id(make: Callable[[Path], BaseException]) -> str:
    named = make.__name__ != "<lambda>"
    return make.__name__.strip("_") if named else type(make(Path("unused"))).__name__


def _public(value: object) -> dict[str, Any]:
    return {k: v for k, v in vars(value).items() if not k.startswith("_")}


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize("make", PICKLE_CASES, ids=_case_id)
def test_every_error_survives_a_pickle_round_trip(
    make: Callable[[Path], BaseException], dumps: Callable[[object], bytes], tmp_path: Path
) -> None:
    """Pickled (as a Dask worker sends an error to its driver) and loaded, an error is its own
    type with its message and public attributes; a run's handle and an HTTP response, which cannot
    travel, are None; and the classifier reads the copy as it read the original."""
    err = make(tmp_path)
    copy = pickle.loads(dumps(err))
    assert type(err) is type(copy)
    assert str(err) == str(copy)
    expected = {k: None if k in _LEFT_BEHIND else v for k, v in _public(err).items() if k != "run"}
    assert expected == {k: v for k, v in _public(copy).items() if k != "run"}
    if getattr(err, "run", None) is not None:
        detached = copy.run  # type: ignore[attr-defined]
        assert isinstance(detached, DetachedRun)
        run = err.run  # type: ignore[attr-defined]
        assert (run.run_id, run.workflow, run.status, run.state) == (
            detached.run_id,
            detached.workflow,
            detached.status,
            detached.state,
        )
    assert (classify_error(err), retry_after_of(err)) == (classify_error(copy), retry_after_of(copy))
    assert getattr(err, "error_kind", None) == getattr(copy, "error_kind", None)


def test_a_pickled_run_keeps_its_facts_and_says_where_its_handle_stayed(tmp_path: Path) -> None:
    """A Run pickled (in a list of results, on its error) is, where it is loaded, a DetachedRun: its
    id, workflow, status and state, never a silent None; what only the live handle does says where
    it stayed and how to reach the run. A copy in its own process is the handle itself."""
    flow = wf.Workflow("tally")

    @flow.step
    def count(state: Any) -> dict[str, Any]:
        return {"n": 3}

    run = flow.run({}, workspace=tmp_path / "ws")
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps([run]))[0]
        assert isinstance(copy, DetachedRun)
        assert (run.run_id, "tally", "succeeded", {"n": 3}) == (copy.run_id, copy.workflow, copy.status, copy.state)
        assert repr(copy) == f"<DetachedRun {run.run_id} of 'tally': succeeded (pickled from another process)>"
        with pytest.raises(AttributeError, match=rf"its live handle stayed there.*run_info\('{run.run_id}'\)"):
            copy.events  # noqa: B018
        assert pickle.loads(pickle.dumps(copy)).state == {"n": 3}
    assert copymod.copy(run) is run
    assert copymod.deepcopy({"run": run})["run"] is run


def _subclasses(cls: type) -> set[type]:
    return {cls}.union(*(_subclasses(sub) for sub in cls.__subclasses__()))


def test_the_pickle_cases_cover_every_exception_class_of_wfkit(tmp_path: Path) -> None:
    """Every exception and warning class wfkit defines is among the pickle cases above."""
    for module in pkgutil.walk_packages(wf.__path__, "wfkit."):
        if not module.name.endswith("__main__"):  # those run the command line
            importlib.import_module(module.name)
    defined = {cls for cls in _subclasses(BaseException) if cls.__module__.startswith("wfkit.")}
    covered = {type(make(tmp_path)) for make in PICKLE_CASES}
    assert [] == sorted(cls.__qualname__ for cls in defined - covered)
