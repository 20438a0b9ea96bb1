"""Scorers: how one eval case's run is judged. Each returns a :class:`Score` in [0, 1] with a pass
flag and a short detail; a scorer is any callable ``(case, run) -> Score | float | bool`` (async
allowed), so a custom check is one function.

A run that did not succeed (failed, timed out, cancelled, or halted at a gate) fails every built-in
scorer, whose detail says how it ended and why (``run failed at step 'classify' (attempt 1):
KeyError: 'query'``): a crash in 1 ms is not "within budget". ``custom`` scorers see the run as it is.
"""

from __future__ import annotations

import enum
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from wfkit.model._context import (
    ABANDONED_STREAM_MODELS,
    NO_TOKENS_IN_MODELS,
    NO_TOKENS_OUT_MODELS,
    NO_USAGE_MODELS,
    UNCOUNTED_CALL_KEYS,
    UNKNOWN_OUTCOME_MODELS,
    UNPRICED_MODELS,
)
from wfkit.model._seconds import Seconds, as_seconds
from wfkit.model._suggest import did_you_mean

if TYPE_CHECKING:
    from wfkit.engine._run import Run


class _Missing(enum.Enum):
    """ "No value": an enum member, so it is still itself after pickling (scorers go to Dask workers)."""

    MISSING = "missing"


_MISSING = _Missing.MISSING


@dataclass(frozen=True, slots=True)
class Case:
    """One row of a dataset: the run's inputs and what is expected of it."""

    id: str
    inputs: dict[str, Any]
    expected: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Score:
    """How a scorer judged one case: ``value`` in [0, 1], whether it ``passed``, and a short
    ``detail``. ``Score(float("nan"), False, why)`` says it could not judge the case, and why (as
    ``cost_budget`` says of a run whose cost is unknown): the case is left unscored, counted in the
    summary's ``unscored`` and ``compare``'s, and named by ``check()``."""

    value: float
    passed: bool
    detail: str = ""


ScoreLike: TypeAlias = "Score | float | bool"
ScorerFn: TypeAlias = Callable[[Case, "Run"], "ScoreLike | Awaitable[ScoreLike]"]


def as_score(value: Any) -> Score:
    import numpy as np

    if isinstance(value, np.generic):  # np.isclose's bool, a cosine similarity's float32: their Python value
        value = value.item()
    if isinstance(value, bool):
        return Score(1.0 if value else 0.0, value)
    if isinstance(value, Score):
        score = value
    elif isinstance(value, int | float):
        score = Score(float(value), value >= 0.5)
    else:
        raise TypeError(f"a scorer returns a Score, a float in [0, 1] or a bool, got {value!r}")
    if math.isnan(score.value) and not score.passed and score.detail:
        return score  # the scorer could not judge this case, and says why: left unscored, and counted so
    # NaN fails this test too: a score that is not a number, and says not why, would drop out of
    # means and comparisons unexplained.
    if not 0.0 <= score.value <= 1.0:
        raise ValueError(
            f"a score's value is a number in [0, 1], got {score.value}; a scorer that cannot judge a case "
            "returns Score(float('nan'), False, 'why'), which leaves it unscored"
        )
    return score


async def apply(scorer: ScorerFn, case: Case, run: Run) -> Score:
    try:
        result = scorer(case, run)
        if inspect.isawaitable(result):
            result = await result
    except AttributeError as exc:
        # fn(run, case), the other order, reads run.state of the case: every case of the eval then
        # failed with "'Case' object has no attribute 'state'", and check() said to fix the dataset.
        name = exc.name
        swapped = name is not None and (
            (exc.obj is case and hasattr(run, name)) or (exc.obj is run and hasattr(case, name))
        )
        if swapped and _ORDER not in str(exc):  # said once, by the innermost apply (custom applies its fn)
            raise AttributeError(f"{exc} ({_ORDER})", name=name, obj=exc.obj) from exc
        raise
    return as_score(result)


_ORDER = "a scorer is called as fn(case, run): the first argument is the Case, the second the Run"


def name_of(scorer: Any) -> str:
    return str(getattr(scorer, "name", None) or getattr(scorer, "__name__", None) or type(scorer).__name__)


def _value(run: Run, key: str) -> Any:
    value: Any = run.state
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _expected(case: Case, key: str, given: Any) -> Any:
    if given is not _MISSING:
        return given
    if key not in case.expected:
        # A misspelling, in the scorer's field or the dataset's key (a sheet's expected.answr), reads
        # as a missing value unless the case's own keys are named beside it.
        keys = [str(k) for k in case.expected]
        holds = f" (its expected values: {', '.join(keys)})" if keys else " (it has no expected values)"
        raise KeyError(
            f"case {case.id!r} has no expected {key!r}{did_you_mean(key, keys)}; add it to the dataset or pass "
            f"expected=...{holds}"
        )
    return case.expected[key]


def unsucceeded(run: Run) -> Score | None:
    """For a run that did not succeed, a failing Score saying how it ended and why; else None."""
    from wfkit.model._errors import RunError, StepFailedError
    from wfkit.model._status import RunStatus

    if run.status == RunStatus.SUCCEEDED:
        return None
    ended = {RunStatus.FAILED: "failed", RunStatus.TIMED_OUT: "timed out", RunStatus.CANCELLED: "was cancelled"}
    if run.status not in ended:
        return Score(0.0, False, f"run did not finish: it is {run.status}")
    error, where = run.error, ""
    if isinstance(error, RunError):
        prefix = f"run {error.run_id}"
        if error.step is not None:
            where = f" at step {error.step!r}"
            prefix += f", step {error.step!r}"
        if error.attempt is not None:
            where += f" (attempt {error.attempt})"
            prefix += f", attempt {error.attempt}"
        cause = error.__cause__
        if isinstance(error, StepFailedError) and cause is not None:  # the step's own error
            error = cause
            message = str(cause)
        else:
            message = str(error).removeprefix(prefix + ": ")
    else:
        message = str(error)
    why = "" if error is None else f": {type(error).__name__}: {message}"
    detail = f"run {ended[run.status]}{where}{why}"
    return Score(0.0, False, detail if len(detail) <= 300 else detail[:297] + "...")


class _Scorer:
    name = "scorer"

    def __repr__(self) -> str:
        return f"<scorer {self.name}>"


def _limit(call: str, value: object, *, low: float, above: bool, means: str, example: str) -> float:
    """A scorer's bound, checked when the scorer is built: a number (``above``: greater than
    ``low``, else at least ``low``), finite. Taken as given, a timedelta or a string failed every
    case's comparison (each case unscored, "scorer error: TypeError"), and NaN, a negative or an
    infinite bound scored every case the same, read as the workflow's result."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{call}: {means}, a number, got {value!r} ({type(value).__name__}): e.g. {example}")
    if math.isnan(value) or math.isinf(value) or not (value > low if above else value >= low):
        bound = f"above {low:g}" if above else f"{low:g} or more"
        raise ValueError(
            f"{call}: {means}, a finite number {bound}, got {value!r}, which would score every case alike: e.g. "
            f"{example}"
        )
    return value  # as given: an int budget reads "2 s" in a detail, as before


class exact_match(_Scorer):
    """The state field equals the expected value (from the case, or given here)."""

    def __init__(self, field: str, expected: Any = _MISSING, *, name: str | None = None) -> None:
        self.field, self.expected, self.name = field, expected, name or f"exact_match:{field}"

    def __call__(self, case: Case, run: Run) -> Score:
        actual, want = _value(run, self.field), _expected(case, self.field, self.expected)
        if (failed := unsucceeded(run)) is not None:
            return failed
        ok = actual is not _MISSING and actual == want
        if ok:
            return Score(1.0, True, "")
        why = _as_text(self.field, actual, want)
        return Score(0.0, False, f"{self.field}={_show(actual)}, expected {_show(want)}{why}")


class contains(_Scorer):
    """The state field (text) contains the expected substring (case-insensitive by default).

    An empty expected text is no check (every text contains it): given here, it is refused; a case
    whose expected text is empty (a sheet's empty ``expected.FIELD`` cell reads as "") is left
    unscored, saying so, rather than passed whatever the workflow answered."""

    def __init__(self, field: str, expected: Any = _MISSING, *, ignore_case: bool = True, name: str | None = None):
        if expected is not _MISSING and str(expected) == "":
            raise ValueError(
                f"contains({field!r}, expected='') passes any text: give the text to look for, or leave "
                f"expected out to take each case's expected {field!r}"
            )
        self.field, self.expected, self.ignore_case = field, expected, ignore_case
        self.name = name or f"contains:{field}"

    def __call__(self, case: Case, run: Run) -> Score:
        actual = _value(run, self.field)
        want = str(_expected(case, self.field, self.expected))
        if (failed := unsucceeded(run)) is not None:
            return failed
        if not want:
            return Score(
                float("nan"),
                False,
                f"case {case.id!r} expects {self.field!r} to contain '', which every text does, so nothing "
                f"was checked: write the text to look for in its expected {self.field!r} (an empty cell of a "
                "sheet is empty text), or leave the case out of this suite",
            )
        text = "" if actual is _MISSING else str(actual)
        ok = (want.lower() in text.lower()) if self.ignore_case else (want in text)
        return Score(1.0 if ok else 0.0, ok, "" if ok else f"{want!r} not in {_show(actual)}")


class regex(_Scorer):
    """The state field matches a regular expression (searched anywhere)."""

    def __init__(self, field: str, pattern: str, *, name: str | None = None) -> None:
        self.field, self.pattern, self.name = field, re.compile(pattern), name or f"regex:{field}"

    def __call__(self, case: Case, run: Run) -> Score:
        if (failed := unsucceeded(run)) is not None:
            return failed
        actual = _value(run, self.field)
        ok = actual is not _MISSING and self.pattern.search(str(actual)) is not None
        return Score(1.0 if ok else 0.0, ok, "" if ok else f"{_show(actual)} !~ /{self.pattern.pattern}/")


class json_schema(_Scorer):
    """The state field (a dict, or JSON text) is valid against a JSON Schema."""

    def __init__(self, field: str, schema: Mapping[str, Any], *, name: str | None = None) -> None:
        import jsonschema

        jsonschema.Draft202012Validator.check_schema(schema)
        self.field, self.name = field, name or f"json_schema:{field}"
        self._validator = jsonschema.Draft202012Validator(schema)

    def __call__(self, case: Case, run: Run) -> Score:
        if (failed := unsucceeded(run)) is not None:
            return failed
        actual = _value(run, self.field)
        if isinstance(actual, str):
            try:
                actual = json.loads(actual)
            except ValueError as exc:
                return Score(0.0, False, f"not JSON: {exc}")
        if actual is _MISSING:
            return Score(0.0, False, f"no {self.field!r} in the state")
        errors = sorted(self._validator.iter_errors(actual), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            return Score(0.0, False, f"{'/'.join(map(str, first.path)) or '(root)'}: {first.message}")
        return Score(1.0, True)


class numeric(_Scorer):
    """The state field is within ``tolerance`` (absolute, or ``relative=True``) of the expected number."""

    def __init__(
        self,
        field: str,
        expected: Any = _MISSING,
        *,
        tolerance: float = 1e-6,
        relative: bool = False,
        name: str | None = None,
    ) -> None:
        self.tolerance = _limit(
            f"numeric({field!r}, tolerance={tolerance!r})",
            tolerance,
            low=0.0,
            above=False,
            means="the tolerance is how far a number may be from the expected one",
            example=f"numeric({field!r}, tolerance=0.01)",
        )
        self.field, self.expected, self.relative = field, expected, relative
        self.name = name or f"numeric:{field}"

    def __call__(self, case: Case, run: Run) -> Score:
        actual, want = _value(run, self.field), float(_expected(case, self.field, self.expected))
        if (failed := unsucceeded(run)) is not None:
            return failed
        try:
            got = float(actual)
        except (TypeError, ValueError):
            return Score(0.0, False, f"{self.field}={_show(actual)} is not a number")
        limit = self.tolerance * (abs(want) if self.relative else 1.0)
        ok = abs(got - want) <= limit
        return Score(1.0 if ok else 0.0, ok, "" if ok else f"{got} differs from {want} by more than {limit:g}")


class route_taken(_Scorer):
    """The run passed through the expected step (``expected`` key, default "route")."""

    def __init__(self, key: str = "route", *, name: str | None = None) -> None:
        self.key, self.name = key, name or "route_taken"

    def __call__(self, case: Case, run: Run) -> Score:
        want = _expected(case, self.key, _MISSING)
        if (failed := unsucceeded(run)) is not None:
            return failed
        path = run.path()
        ok = want in path
        return Score(1.0 if ok else 0.0, ok, "" if ok else f"path {' > '.join(path)} misses {want!r}")


class tools_used(_Scorer):
    """The step the case expects (``expected["route"]``) ran with exactly the expected tools."""

    def __init__(self, key: str = "tools", step_key: str = "route", *, name: str | None = None) -> None:
        self.key, self.step_key, self.name = key, step_key, name or "tools_used"

    def __call__(self, case: Case, run: Run) -> Score:
        want = sorted(_expected(case, self.key, _MISSING))
        step = _expected(case, self.step_key, _MISSING)
        if (failed := unsucceeded(run)) is not None:
            return failed
        bound = [e.tools for e in run.events if e.step == step and e.attempt > 0]
        got = sorted(bound[-1] or ()) if bound else None
        ok = got == want
        return Score(1.0 if ok else 0.0, ok, "" if ok else f"{step} had tools {got}, expected {want}")


class latency_budget(_Scorer):
    """The run finished within ``seconds`` (wall time from its first to its last attempt)."""

    def __init__(self, seconds: Seconds, *, name: str | None = None) -> None:
        self.seconds = _limit(
            f"latency_budget({seconds!r})",
            as_seconds(seconds),
            low=0.0,
            above=True,
            means="the budget is the longest a run may take, in seconds (or a datetime.timedelta)",
            example="latency_budget(2.0)",
        )
        self.name = name or "latency_budget"

    def __call__(self, case: Case, run: Run) -> Score:
        if (failed := unsucceeded(run)) is not None:
            return failed
        events = [e for e in run.events if e.attempt > 0]
        spent = (max(e.ended_at for e in events) - min(e.started_at for e in events)) if events else 0.0
        ok = spent <= self.seconds
        return Score(1.0 if ok else 0.0, ok, f"{spent:.3f} s of {self.seconds} s")


class cost_budget(_Scorer):
    """The run's model and tool cost stayed within ``usd``.

    A run that called a model no price table knows has no known cost: its case is left unscored
    (NaN, not passed: the summary's ``unscored``, ``check()`` names it and the model to price),
    unless its priced calls alone exceed the budget, which fails it. So is a run with a call that
    succeeded but whose server sent no token usage (nothing to price, yet the call was made), or
    only one of its two counts (half a count has no price), or a stream the step left before its
    end, when its usage had not come, or a call that failed after the server got it (a read
    timeout, the step's timeout while it waited, a gateway's 504, a reply cut short or unreadable), which the
    server may have generated and billed: the detail names the step and the model, and says what
    to do. A call the server refused (a 429, a 503, any error status but a 504) or never got (no
    connection) costs nothing and leaves the cost known."""

    def __init__(self, usd: float, *, name: str | None = None) -> None:
        self.usd = _limit(
            f"cost_budget({usd!r})",
            usd,
            low=0.0,
            above=False,
            means="the budget is the most a run may cost, in US dollars",
            example="cost_budget(0.05)",
        )
        self.name = name or "cost_budget"

    def __call__(self, case: Case, run: Run) -> Score:
        if (failed := unsucceeded(run)) is not None:
            return failed
        spent, unpriced = 0.0, dict[str | None, str]()  # model (None: unnamed) -> the first step that called it
        uncounted = dict[str | None, str]()  # the same, of calls whose server sent no token usage
        halved = dict[str | None, tuple[str, str]]()  # of calls whose usage left one count out: (step, which)
        left = dict[str | None, str]()  # of streams the step left before their usage came
        lost = dict[str | None, str]()  # of calls that failed after the server got them
        for event in run.events:
            extra = event.extra or {}
            if event.cost_usd is not None:
                spent += event.cost_usd
                continue
            for model in extra.get(NO_USAGE_MODELS) or ():
                uncounted.setdefault(model, event.step)
            for key, which in ((NO_TOKENS_IN_MODELS, "prompt_tokens"), (NO_TOKENS_OUT_MODELS, "completion_tokens")):
                for model in extra.get(key) or ():
                    halved.setdefault(model, (event.step, which))
            for model in extra.get(ABANDONED_STREAM_MODELS) or ():
                left.setdefault(model, event.step)
            for model in extra.get(UNKNOWN_OUTCOME_MODELS) or ():
                lost.setdefault(model, event.step)
            if UNPRICED_MODELS in extra:
                for model in extra[UNPRICED_MODELS] or ():
                    unpriced.setdefault(model, event.step)
            elif (event.tokens_in is not None or event.tokens_out is not None) and not any(
                key in extra for key in UNCOUNTED_CALL_KEYS
            ):
                unpriced.setdefault(event.model, event.step)  # tokens came back, no price (and no mark of why)
        if not unpriced and not uncounted and not halved and not left and not lost:
            ok = spent <= self.usd
            return Score(1.0 if ok else 0.0, ok, f"${spent:.5f} of ${self.usd}")
        named = [f"step {step!r} called model {model!r}" for model, step in unpriced.items() if model is not None]
        reasons = []
        if named:
            them = "it" if len(named) == 1 else "them"
            reasons.append(
                f"{' and '.join(named)}, which no price table knows: give {them} a price "
                "(ChatClient(..., prices=...) or wf.llm.PRICES.register)"
            )
        if uncounted:
            calls = [f"step {step!r} called " + (f"model {m!r}" if m else "a model") for m, step in uncounted.items()]
            whose = (
                "whose server sent no token usage with its reply"
                if len(calls) == 1
                else "whose servers sent no token usage with their replies"
            )
            reasons.append(
                f"{' and '.join(calls)}, {whose}, so there was nothing to price: use an endpoint or proxy that "
                "reports usage (a stream's server may ignore stream_options.include_usage: use one that honours "
                "it, or client.complete(...))"
            )
        if halved:
            calls = [
                f"step {step!r} called "
                + (f"model {m!r}" if m else "a model")
                + f", whose server's usage had no {which}"
                for m, (step, which) in halved.items()
            ]
            reasons.append(
                f"{' and '.join(calls)}, so the call could not be priced: use an endpoint or proxy that reports "
                "both prompt_tokens and completion_tokens"
            )
        if left:
            calls = [
                f"step {step!r} left a stream of " + (f"model {m!r}" if m else "a model") for m, step in left.items()
            ]
            reasons.append(
                f"{' and '.join(calls)} before its end (a break out of `async for`, or the step's timeout), "
                "before the server's last chunk "
                "brought its token usage, so there was nothing to price: read a stream to its end (or call "
                "client.complete(...)) to know what it cost"
            )
        if lost:
            calls = [f"step {step!r} called " + (f"model {m!r}" if m else "a model") for m, step in lost.items()]
            reasons.append(
                f"{' and '.join(calls)}, and the call failed after the server got it (a read timeout, the step's "
                "timeout while it waited, a gateway's 504, a reply cut short or unreadable), so the server may have "
                "generated and billed a reply whose token usage never came: give calls time to answer (ChatClient(..., "
                "timeout=...), the step's timeout=) to know what they cost (a call the server refused, a 429 or a "
                "503, costs nothing)"
            )
        if None in unpriced:  # ctx.record(tokens_in=...) of a client of one's own, with no model nor cost
            reasons.append(
                f"step {unpriced[None]!r} recorded tokens with no model and no cost: record its cost_usd= with them"
            )
        why = "; ".join(reasons)
        # The known part: attempts whose every call was priced (an attempt with an unpriced call has no cost).
        known = f"${spent:.5f} of ${self.usd} in the attempts whose every call was priced"
        if spent > self.usd:  # over already: the unknown rest only adds to it
            return Score(0.0, False, f"{known}, the others' cost unknown: {why}")
        # Neither a pass (the rest may be over) nor a 0 (it may be within): unscored, and check() says why.
        return Score(float("nan"), False, f"cost unknown: {why}, then evaluate again; {known}")


class custom(_Scorer):
    """Any function ``(case, run) -> Score | float | bool`` (sync or async), under a name."""

    def __init__(self, fn: ScorerFn, *, name: str | None = None) -> None:
        self.fn, self.name = fn, name or name_of(fn)

    async def __call__(self, case: Case, run: Run) -> Score:
        return await apply(self.fn, case, run)


_JUDGE_PROMPT = (
    "You grade an answer against a rubric. Reply with 'Score: N' where N is 0 to 10.\n"
    "RUBRIC: {rubric}\nREFERENCE: {reference}\nANSWER: {answer}"
)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _offline_judge(messages: Sequence[Mapping[str, Any]]) -> str:
    """The simulated judge: word overlap between ANSWER and REFERENCE, as 'Score: N'.

    A deterministic stand-in so eval suites run offline; point the judge at a real endpoint for
    real grading."""
    text = str(messages[-1].get("content", ""))
    ref = re.search(r"REFERENCE: (.*)\nANSWER:", text, re.S)
    ans = re.search(r"ANSWER: (.*)$", text, re.S)
    want, got = _words(ref.group(1) if ref else ""), _words(ans.group(1) if ans else "")
    overlap = len(want & got) / len(want) if want else 0.0
    return f"Score: {round(overlap * 10)}"


class llm_judge(_Scorer):
    """A model grades the field against a rubric (and the expected answer, if the case has one).

    ``client`` is a ChatClient; by default an offline judge (the simulated model, grading by word
    overlap with the reference) so suites run without a key. Passes at ``pass_at`` (0..1). The
    grade is the reply's last 'Score: N' (N from 0 to 10); a reply without one leaves the case
    unscored (the judge failed, not the workflow)."""

    def __init__(
        self,
        rubric: str,
        field: str = "answer",
        *,
        reference_key: str | None = "answer",
        client: Any = None,
        pass_at: float = 0.6,
        name: str | None = None,
    ) -> None:
        self.pass_at = _limit(
            f"llm_judge(pass_at={pass_at!r})",
            pass_at,
            low=0.0,
            above=False,
            means="pass_at is the lowest grade that passes, in [0, 1] (the judge's N of 10, divided by 10)",
            example="pass_at=0.6 for 6 of 10",
        )
        if self.pass_at > 1:
            raise ValueError(
                f"llm_judge(pass_at={pass_at!r}): pass_at is the lowest grade that passes, in [0, 1] (the judge's "
                f"N of 10, divided by 10), so no case would pass: for {pass_at:g} of 10 write pass_at={pass_at / 10:g}"
                if pass_at <= 10
                else f"llm_judge(pass_at={pass_at!r}): pass_at is the lowest grade that passes, in [0, 1], so no "
                f"case would pass: e.g. pass_at=0.6 for 6 of 10"
            )
        self.rubric, self.field, self.reference_key = rubric, field, reference_key
        self.name = name or "llm_judge"
        self._client = client

    def _judge(self) -> Any:
        if self._client is None:
            from wfkit.llm._llm import ChatClient
            from wfkit.llm._simulated import SimulatedModel

            self._client = ChatClient(transport=SimulatedModel(p50=0.002, p99=0.01, seed=0, reply=_offline_judge))
        return self._client

    async def __call__(self, case: Case, run: Run) -> Score:
        if (failed := unsucceeded(run)) is not None:
            return failed  # no judge call for a run with nothing to grade
        answer = _value(run, self.field)
        reference = case.expected.get(self.reference_key, "") if self.reference_key else ""
        prompt = _JUDGE_PROMPT.format(
            rubric=self.rubric, reference=reference, answer="" if answer is _MISSING else answer
        )
        reply = await self._judge().complete(prompt)
        grade = _grade(reply.text)
        return Score(grade / 10, grade / 10 >= self.pass_at, reply.text[:120])


_SCORE = re.compile(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*\.?\s*")


def _grade(text: str) -> float:
    """The judge's grade, 0 to 10: the last 'Score: N' of its reply (a judge may reason first,
    quoting the scale), or a reply that is a number alone ('7', '7/10'). A reply without one, or
    off the scale, raises: the judge failed, not the workflow, so the case is left unscored."""
    found = _SCORE.findall(text) or [bare.group(1) for bare in [_BARE.fullmatch(text)] if bare is not None]
    if not found:
        raise ValueError(f"the judge gave no score ('Score: N', N from 0 to 10): {text[:80]!r}")
    if float(found[-1]) > 10:
        raise ValueError(f"the judge's score {found[-1]} is not from 0 to 10: {text[:80]!r}")
    return float(found[-1])


def _as_text(field: str, actual: Any, want: Any) -> str:
    """Why a value differs from the text that writes it: a sheet's cell is text, so a run's 2
    never equals its column's "2" (a typed column is named ``NAME:json``)."""
    if not isinstance(want, str) or isinstance(actual, str) or actual is _MISSING:
        return ""
    kind = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(type(actual))
    if kind is None:
        return ""
    try:  # the value the text writes, as the :json column reads it: "40" is the 40.0 a division gives
        written = json.loads(want)
    except ValueError:
        return ""
    if (written is True or written is False) != isinstance(actual, bool) or written != actual:
        return ""
    return f" ({kind}, expected as text: a CSV cell is text; name the column expected.{field}:json to expect {kind})"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(missing)"
    text: str = json.dumps(value, default=str)
    return text if len(text) < 80 else text[:77] + "..."
