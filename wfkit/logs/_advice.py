"""Timeouts from the data: propose them at a high quantile, and predict what they will cost.

LLM latency is long-tailed: a timeout set at the mean cuts one call in a few dozen, and across
serial steps the misses compound. ``advise_timeouts`` proposes per-step timeouts at P99 (with a
margin) and a run deadline; ``predict_timeouts`` replays the observed latencies by Monte Carlo,
with the proposed timeouts and retry policies, to predict attempt timeouts, step failures and
whole-run failures before anyone waits for them in production.

An attempt a timeout cut off is right-censored: it ran at least as long as it was let run, how much
longer is unknown. Leaving such attempts out would advise a timeout the slow calls never fit in,
and predict that they never time out. So the advice counts each one as slower than every success
(the one assumption that can only err on the long side), and gives no timeout when the quantile
falls among them; the prediction counts a draw of one as timing out again at any timeout it was
cut at or beyond, and at a longer timeout as unknown (the worst case, a timeout, is counted), and
says so in its ``unknown_rate`` and ``note`` columns. A run a timeout failed is censored the same
way, for the run deadline.

A failed attempt that no timeout cut (a 429 in a millisecond) is not a call: drawn as one, it would
be a fast success, and the step would neither fail nor retry nor spend the time its call took. So
the prediction draws calls from the successful attempts and those a timeout cut off (as the advice
reads them), and meets each simulated visit with the errors an observed visit met first, as the run
did: each takes its time (or times out, if slower than the timeout), and is retried as the policy
says of its kind. A visit served from the step cache made no call either (the step did not run): a
share of the simulated visits as large as the observed one is served so, with no attempt and no
timeout, and calls are drawn from the calls alone.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from wfkit.logs._tables import map_own_rows, quantile_label
from wfkit.logs._units import count_of, format_seconds
from wfkit.model._errors import ProcessCrashedError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from wfkit.model._retry import RetryPolicy


MIN_SAMPLES = 20
# The shortest timeout advised (seconds). A timeout is a timer on the event loop, and a loop busy
# with other runs for a moment (tens of milliseconds with hundreds of runs in flight; a sync step's
# thread may wait 5 ms for the interpreter at every switch) runs a due timer before the wake-up of
# the step whose reply just arrived: a timeout of a few milliseconds, which a step of microseconds
# would be advised from its own latencies, fails healthy attempts whenever the kernel is busy.
MIN_TIMEOUT_S = 0.1
_ERROR_STATUSES = ("retry", "failed")  # an attempt that failed, and not on a timeout
_CACHED = "cached"  # a visit served from the step cache: the step did not run, no call was made


def _uncensored(df: pd.DataFrame) -> pd.DataFrame:
    """Attempts whose latency was observed in full (a timed-out attempt only says "at least", as
    does one the user stopped, and one a process crash cut off says nothing: its process died with
    the clock)."""
    keep = (df["attempt"] > 0) & ~df["status"].isin(["timeout", "cancelled"])
    if "error_type" in df.columns:
        keep &= df["error_type"] != ProcessCrashedError.__name__
    return df[keep]


class _VisitErrors(NamedTuple):
    """The errors each observed visit of a step met, in attempt order: row ``v`` of ``latency`` and
    ``kind`` holds visit ``v``'s first ``counts[v]`` errors (NaN and "" after)."""

    latency: np.ndarray
    kind: np.ndarray
    counts: np.ndarray


def _errors_by_visit(df: pd.DataFrame) -> dict[str, _VisitErrors]:
    """Per step that met any, the errors (failed attempts no timeout cut) each of its visits met; a
    crashed attempt says nothing (its process died with the clock) and is left out."""
    import numpy as np

    attempts = df[df["attempt"] > 0]
    failed = attempts["status"].isin(_ERROR_STATUSES)
    if "error_type" in attempts.columns:
        failed &= attempts["error_type"] != ProcessCrashedError.__name__
    keys = ["run_id", "visit", *(["map_index"] if "map_index" in attempts.columns else [])]
    found: dict[str, _VisitErrors] = {}
    for step, mine in attempts[failed.groupby(attempts["step"], observed=True).transform("any")].groupby(
        "step", observed=True
    ):
        visit = mine.groupby(keys, dropna=False, observed=True, sort=False).ngroup().to_numpy()
        errors = mine.assign(_visit=visit)[failed[mine.index].to_numpy()].sort_values(["_visit", "attempt"])
        row = errors["_visit"].to_numpy()
        place = errors.groupby("_visit").cumcount().to_numpy()
        shape = (int(visit.max()) + 1, int(place.max()) + 1)
        latency, kind = np.full(shape, np.nan), np.full(shape, "", dtype=object)
        latency[row, place] = errors["latency_s"].to_numpy(dtype=float)
        kind[row, place] = errors["error_kind"].astype(str).to_numpy()
        found[str(step)] = _VisitErrors(latency, kind, np.bincount(row, minlength=shape[0]))
    return found


def _cache_hits(df: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per step served from the cache at all: the times its cache hits took, and the share of its
    visits (a map item's own) they were."""
    attempts = df[df["attempt"] > 0]
    served = attempts["status"] == _CACHED
    if not served.any():
        return {}, {}
    keys = ["step", "run_id", "visit", *(["map_index"] if "map_index" in attempts.columns else [])]
    visits = attempts[keys].drop_duplicates().groupby("step", observed=True).size()
    hits = {
        str(step): group.to_numpy(dtype=float)
        for step, group in attempts.loc[served].groupby("step", observed=True)["latency_s"]
    }
    return hits, {step: len(times) / int(visits[step]) for step, times in hits.items()}


def _censored_mask(df: pd.DataFrame) -> Any:
    """The attempts a timeout cut off (their latency_s is how long they ran: a lower bound), as a
    boolean array."""
    import numpy as np

    latency = df["latency_s"].to_numpy(dtype=float)
    cut: np.ndarray[Any, np.dtype[np.bool_]] = (
        (df["attempt"].to_numpy() > 0) & (df["status"] == "timeout").to_numpy(dtype=bool) & ~np.isnan(latency)
    )
    return cut


def _share(part: int, whole: int) -> str:
    rate = part / whole if whole else 0.0
    return f"{rate:.0%}" if rate >= 0.01 or rate == 0 else f"{rate:.1%}"


def censored_quantiles(
    stats: pd.DataFrame,
    cut: pd.DataFrame,
    quantiles: Sequence[float],
    successes_at: Callable[[tuple[str, ...], list[float]], list[float]],
) -> pd.DataFrame:
    """``stats`` (quantiles of successful latency per group, with ``count``) with the attempts a
    timeout cut off (``cut``: ``timeouts`` and ``cut_at_s`` per group) counted in: each as slower
    than every success. The quantile of all n + m attempts then is the successes' quantile at
    (n + m - 1) q / (n - 1), and unknown (NaN) when it falls among the m cut off. Groups that only
    timed out are added. ``successes_at(key, qs)`` gives a group's successful-latency quantiles."""
    import numpy as np
    import pandas as pd

    labels = [quantile_label(q) for q in quantiles]
    if cut.empty:
        table = stats.copy()
        table["timeouts"] = 0
        table["cut_at_s"] = np.nan
        return table

    def plain(index: pd.Index) -> pd.Index:
        if isinstance(index, pd.MultiIndex):
            return pd.MultiIndex.from_tuples([tuple(str(v) for v in k) for k in index], names=index.names)
        return pd.Index([str(k) for k in index], name=index.name, dtype=object)

    stats = stats.set_axis(plain(stats.index))
    cut = cut.set_axis(plain(cut.index))
    index = stats.index.union(cut.index, sort=None)
    index = index.sort_values() if len(index) else index
    table = stats.reindex(index)
    table["count"] = table["count"].fillna(0).astype("int64")
    table["timeouts"] = cut["timeouts"].reindex(index).fillna(0).astype("int64")
    table["cut_at_s"] = cut["cut_at_s"].reindex(index)
    for position, (key, n, m) in enumerate(zip(index, table["count"], table["timeouts"], strict=True)):
        if not m:
            continue
        wanted: dict[str, float] = {}
        for label, q in zip(labels, quantiles, strict=True):
            rank = (n + m - 1) * q  # 0-based, among all attempts, the m cut off last
            if n and rank <= n - 1 + 1e-9:
                wanted[label] = min(rank / (n - 1), 1.0) if n > 1 else 0.0
        values = successes_at(key if isinstance(key, tuple) else (key,), list(wanted.values())) if wanted else []
        for label in labels:
            table.iloc[position, table.columns.get_loc(label)] = np.nan
        for label, value in zip(wanted, values, strict=True):
            table.iloc[position, table.columns.get_loc(label)] = float(value)
    return table


def check_advice_args(quantile: float, margin: float, min_samples: int, min_timeout: float = MIN_TIMEOUT_S) -> None:
    if not 0 <= min_timeout < math.inf:
        raise ValueError(f"min_timeout must be a number of seconds >= 0, got {min_timeout!r}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if margin < 1:
        raise ValueError(f"margin must be >= 1 (a timeout below the observed quantile cuts calls), got {margin!r}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples!r}")


def run_durations(runs: pd.DataFrame) -> pd.DataFrame:
    """Per workflow, the durations of its runs (from a ``runs()`` table) as sorted arrays: those a
    timeout failed (``cut``: they ran at least that long) apart from the rest (``durations``)."""
    import numpy as np
    import pandas as pd

    if "workflow" not in runs.columns or runs.empty:
        return pd.DataFrame({"durations": pd.Series(dtype=object), "cut": pd.Series(dtype=object)})
    table = {}
    for workflow, rows in runs.groupby(runs["workflow"].astype(str), observed=True):
        mine = rows["failed_on_timeout"].to_numpy(dtype=bool)
        durations = rows["duration_s"].to_numpy(dtype=float)
        table[workflow] = (np.sort(durations[~mine]), np.sort(durations[mine]))
    return pd.DataFrame.from_dict(table, orient="index", columns=["durations", "cut"])


def advice_table(
    stats: pd.DataFrame,
    durations: pd.DataFrame,
    *,
    quantile: float,
    margin: float,
    min_samples: int,
    min_timeout: float = MIN_TIMEOUT_S,
) -> pd.DataFrame:
    """The advice from per-(workflow, step) latency stats (p50 and the quantile of every attempt,
    those a timeout cut off counted as slower than every success: see ``censored_quantiles``;
    max, mean and count of the successes; ``timeouts`` and ``cut_at_s``) and per-workflow run
    durations: the one policy behind both the accessor and ``StepLog``."""
    import numpy as np
    import pandas as pd

    label = quantile_label(quantile)
    table = pd.DataFrame(index=stats.index)
    table["samples"] = stats["count"].astype("int64")
    table["p50"] = stats["p50"]
    table[label] = stats[label]
    table["max"] = stats["max"]
    table["mean"] = stats["mean"]
    at_quantile = stats[label] * margin
    # A timeout below a latency that succeeded would have cut that success: never propose one.
    floored = at_quantile < stats["max"]
    proposed = np.ceil(np.maximum(at_quantile, stats["max"]) * 1000) / 1000
    # Nor below min_timeout: see MIN_TIMEOUT_S.
    raised = proposed < min_timeout
    proposed = np.maximum(proposed, min_timeout)
    enough = table["samples"] >= min_samples
    known = stats[label].notna()
    table["timeout_s"] = proposed.where(enough & known)
    table["basis"] = np.select(
        [raised, floored], [f"minimum ({format_seconds(min_timeout)})", "slowest success"], f"{label} x {margin:g}"
    )
    table["basis"] = table["basis"].where(enough & known, None)
    notes: list[str | None] = []
    for ok, found, n, m, cut_at in zip(
        enough, known, table["samples"], stats["timeouts"], stats["cut_at_s"], strict=True
    ):
        said = [] if ok else [f"only {count_of(n, 'successful attempt')}; need {min_samples} for advice"]
        if m:
            cut_off = (
                f"{m} of {count_of(n + m, 'attempt')} ({_share(m, n + m)}) hit a timeout (after up to "
                f"{format_seconds(cut_at)})"
            )
            if found:
                said.append(f"{cut_off}: counted as slower than every success")
            else:
                said.append(
                    f"{cut_off}: their true latency is unknown, and so is the {label.upper()}; raise the "
                    f"timeout to measure it"
                )
        notes.append("; ".join(said) or None)
    table["note"] = notes
    table["timeouts"] = stats["timeouts"].astype("int64")
    table["cut_at_s"] = stats["cut_at_s"].astype(float)
    deadlines: dict[str, float | None] = {}
    why: dict[str, str | None] = {}
    for workflow, values, cut in zip(durations.index, durations["durations"], durations["cut"], strict=True):
        name, n, m = str(workflow), len(values), len(cut)
        # A run a timeout failed counts as slower than every other, as an attempt a timeout cut off does.
        rank = (n + m - 1) * quantile
        deadlines[name], why[name] = None, None
        if m and rank > n - 1 + 1e-9:
            why[name] = (
                f"{m} of {count_of(n + m, 'run')} ({_share(m, n + m)}) failed on a timeout (after up to "
                f"{format_seconds(float(cut[-1]))}): how long they would take is unknown, and so is the "
                f"{label.upper()} run; raise the timeouts to measure it"
            )
        elif n < min_samples:
            why[name] = f"only {count_of(n, 'run')} that no timeout failed; need {min_samples}"
        else:
            at = float(np.quantile(values, quantile if not m else min(rank / (n - 1), 1.0) if n > 1 else 0.0))
            deadlines[name] = max(math.ceil(max(at * margin, float(values[-1])) * 1000) / 1000, min_timeout)
    table.attrs.update(
        run_deadline_s=deadlines,
        run_deadline_note=why,
        run_samples={
            str(w): len(v) + len(c)
            for w, v, c in zip(durations.index, durations["durations"], durations["cut"], strict=True)
        },
        quantile=quantile,
        margin=margin,
        min_samples=min_samples,
        min_timeout=min_timeout,
    )
    return table


def advise_timeouts(
    df: pd.DataFrame,
    *,
    quantile: float = 0.99,
    margin: float = 1.5,
    min_samples: int = MIN_SAMPLES,
    min_timeout: float = MIN_TIMEOUT_S,
) -> pd.DataFrame:
    """Per (workflow, step): a timeout at ``quantile`` of attempt latency times ``margin``,
    raised to the slowest success if that is higher, and to ``min_timeout`` (the run deadline
    too: see :data:`MIN_TIMEOUT_S`). An attempt a timeout cut off counts as slower
    than every success; when the quantile falls among such attempts it is unknown, and so is the
    timeout. None under ``min_samples`` successes; the ``note`` says why, and how many attempts a
    timeout cut off (``timeouts``, the longest of them ran ``cut_at_s``).
    ``.attrs["run_deadline_s"]`` maps each workflow to a run deadline. Each workflow's steps are
    listed in the order a run meets them (by when each first started), as ``df.wf.latency()``."""
    import numpy as np

    from wfkit.logs._tables import grouped_quantiles, in_run_order, keys_of, runs_table

    check_advice_args(quantile, margin, min_samples, min_timeout)
    keys = keys_of(df, None)
    quantiles = sorted({0.5, quantile})
    # A map step's own row is no attempt: its latency is the whole map's, its items' are the step's.
    not_own = ~map_own_rows(df)
    ok = (df["attempt"].to_numpy() > 0) & not_own & (df["status"] == "ok").to_numpy(dtype=bool)
    stats = grouped_quantiles(df, keys, "latency_s", quantiles, where=ok)
    censored = _censored_mask(df) & not_own
    cut = df.loc[censored, [*keys, "latency_s"]].groupby(keys, observed=True)["latency_s"].agg(["size", "max"])
    cut = cut.rename(columns={"size": "timeouts", "max": "cut_at_s"})

    def successes_at(key: tuple[str, ...], qs: list[float]) -> list[float]:
        mine = ok.copy()
        for name, value in zip(keys, key, strict=True):
            mine &= (df[name] == value).to_numpy(dtype=bool)
        values = df["latency_s"].to_numpy(dtype=float)[mine]
        return [float(v) for v in np.quantile(values[~np.isnan(values)], qs)]

    stats = censored_quantiles(stats, cut, quantiles, successes_at)
    durations = run_durations(runs_table(df))
    table = advice_table(
        stats, durations, quantile=quantile, margin=margin, min_samples=min_samples, min_timeout=min_timeout
    )
    return in_run_order(table, df)


def _stages(run: pd.DataFrame) -> tuple[tuple[str, ...], ...]:
    """A run's steps in order, steps that overlapped in time grouped into one parallel stage."""
    first = run.sort_values("started_at").drop_duplicates(["step", "visit"])
    stages: list[list[str]] = []
    stage_end = None
    for step, start, end in zip(first["step"], first["started_at"], first["ended_at"], strict=True):
        if stage_end is not None and start < stage_end and stages:
            stages[-1].append(step)
            stage_end = max(stage_end, end)
        else:
            stages.append([step])
            stage_end = end
    return tuple(tuple(s) for s in stages)


def _one_workflow(
    df: pd.DataFrame, timeouts: Mapping[str, float] | Mapping[tuple[str, str], float] | pd.Series
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The rows of the one workflow the timeouts are for, and the timeouts by step name. Keys are
    steps, or (workflow, step) pairs as ``advise_timeouts()["timeout_s"]`` has them (NaN: none)."""

    workflows = sorted({str(w) for w in df["workflow"].unique()}) if "workflow" in df.columns else []
    by_step: dict[str, float] = {}
    named: set[str] = set()
    for key, value in dict(timeouts).items():
        if isinstance(key, tuple):
            named.add(str(key[0]))
            key = key[-1]
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            by_step[str(key)] = float(value)
    if len(named) > 1:
        raise ValueError(f"timeouts name several workflows ({', '.join(sorted(named))}): predict one at a time")
    if named:
        (workflow,) = named
        if workflow not in workflows:
            raise ValueError(f"no runs of workflow {workflow!r} in this frame; it has {', '.join(workflows)}")
        return df[df["workflow"] == workflow], by_step
    if len(workflows) > 1:
        raise ValueError(
            f"predict_timeouts simulates runs of one workflow; this frame holds {', '.join(workflows)}: "
            f"filter it first (df[df['workflow'] == NAME]) or key the timeouts by (workflow, step)"
        )
    return df, by_step


def predict_timeouts(
    df: pd.DataFrame,
    timeouts: Mapping[str, float] | Mapping[tuple[str, str], float] | pd.Series,
    *,
    retry: dict[str, RetryPolicy] | RetryPolicy | None = None,
    deadline: float | None = None,
    runs: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    from wfkit.model._retry import NO_RETRY, RetryPolicy

    df, timeouts = _one_workflow(df, timeouts)
    if "map_index" in df.columns:  # a map step's own row is no call: its items' rows are its calls
        df = df[~map_own_rows(df)]
    hits, hit_share = _cache_hits(df)
    served = df["status"] == _CACHED
    rows = _uncensored(df)
    rows = rows[~rows["status"].isin([*_ERROR_STATUSES, _CACHED])]  # calls: an error is met as the run met it
    errors = _errors_by_visit(df[~served])
    samples = {
        str(step): group.to_numpy(dtype=float) for step, group in rows.groupby("step", observed=True)["latency_s"]
    }
    # The attempts a timeout cut off, each as the time it ran: drawn after the observed ones.
    cut_rows = df.loc[_censored_mask(df), ["step", "latency_s"]]
    cuts = {
        str(step): group.to_numpy(dtype=float) for step, group in cut_rows.groupby("step", observed=True)["latency_s"]
    }
    observed = {step: len(values) for step, values in samples.items()}
    for step in sorted(set(cuts) - set(samples)):
        samples[step] = np.zeros(0)
        observed[step] = 0
    for step, values in cuts.items():
        samples[step] = np.concatenate([samples[step], values])
    unknown = sorted(set(timeouts) - set(samples) - set(errors) - set(hits))
    if unknown:
        raise ValueError(f"no latency observed for step(s) {', '.join(unknown)}; known: {', '.join(sorted(samples))}")
    unanswered = sorted(set(errors) - set(samples))
    if unanswered:
        raise ValueError(
            f"step(s) {', '.join(unanswered)} never answered in this frame (every attempt failed with an error): "
            "how long a call takes is unknown; predict from runs where they answered"
        )
    only_hits = sorted(set(hits) - set(samples))
    untimed = sorted(set(only_hits) & set(timeouts))
    if untimed:
        raise ValueError(
            f"step(s) {', '.join(untimed)} were served from the cache on every visit in this frame: no call was "
            "made, so how long one takes is unknown; predict from runs where they ran (before their cache "
            "entries, or after `wfkit cache clear`), or leave their timeouts out"
        )
    for step in only_hits:  # every visit served from the cache: nothing to draw, nothing to time out
        samples[step] = np.zeros(0)
        observed[step] = 0
    shapes = Counter(_stages(run) for _, run in df[df["attempt"] > 0].groupby("run_id", observed=True))
    if not shapes:
        raise ValueError("the frame holds no step attempts to learn from")

    def policy_for(step: str) -> RetryPolicy:
        if isinstance(retry, RetryPolicy):
            return retry
        return (retry or {}).get(step, NO_RETRY)

    rng = np.random.default_rng(seed)
    stats: dict[str, Counter[str]] = {step: Counter() for step in samples}
    durations: list[np.ndarray] = []
    failed_runs = timed_out_runs = 0
    shape_list = list(shapes)
    weights = np.array([shapes[s] for s in shape_list], dtype=float)
    counts = rng.multinomial(runs, weights / weights.sum())
    for shape, n in zip(shape_list, counts, strict=True):
        if n == 0:
            continue
        elapsed = np.zeros(n)
        alive = np.ones(n, dtype=bool)
        for stage in shape:
            stage_time = np.zeros(n)
            for step in stage:
                step_time, ok = _simulate_step(
                    rng,
                    samples[step],
                    observed[step],
                    errors.get(step),
                    hits.get(step),
                    hit_share.get(step, 0.0),
                    timeouts.get(step),
                    policy_for(step),
                    n,
                    stats[step],
                    alive,
                )
                stage_time = np.maximum(stage_time, step_time)
                alive &= ok
            elapsed += stage_time
        durations.append(elapsed)
        failed_runs += int((~alive).sum())
        if deadline is not None:
            timed_out_runs += int((alive & (elapsed > deadline)).sum())
    table = pd.DataFrame(
        {
            "timeout_s": [timeouts.get(s) for s in samples],
            "attempts": [stats[s]["attempts"] for s in samples],
            "attempt_timeout_rate": [stats[s]["timeouts"] / max(stats[s]["attempts"], 1) for s in samples],
            "step_failure_rate": [stats[s]["failed"] / max(stats[s]["visits"], 1) for s in samples],
            "unknown_rate": [stats[s]["unknown"] / max(stats[s]["attempts"], 1) for s in samples],
            "note": [_unknown_note(stats[s], timeouts.get(s), cuts.get(s)) for s in samples],
        },
        index=pd.Index(list(samples), name="step"),
    )
    table = table[table["attempts"] > 0]
    all_durations = np.concatenate(durations) if durations else np.zeros(0)
    table.attrs.update(
        runs=runs,
        run_failure_rate=failed_runs / runs,
        run_timeout_rate=timed_out_runs / runs if deadline is not None else None,
        run_p50_s=float(np.quantile(all_durations, 0.5)) if len(all_durations) else None,
        run_p99_s=float(np.quantile(all_durations, 0.99)) if len(all_durations) else None,
    )
    return table


def _unknown_note(stats: Counter[str], timeout: float | None, cuts: np.ndarray | None) -> str | None:
    """What a step's prediction cannot know: the draws of attempts a timeout cut off sooner."""
    if not stats["unknown"]:
        return None
    assert cuts is not None
    share = _share(stats["unknown"], stats["attempts"])
    longest = format_seconds(float(cuts.max()))
    if timeout is None:
        return (
            f"{share} of attempts are drawn from ones a timeout cut off (after up to {longest}): with no "
            f"timeout how long they take is unknown; they count as taking the time they ran (the least)"
        )
    return (
        f"{share} of attempts are drawn from ones a timeout cut off (after up to {longest}) before "
        f"{format_seconds(timeout)}: whether they finish within it is unknown; they count as timeouts (the "
        f"worst case); raise the timeout to measure them"
    )


def _simulate_step(
    rng: np.random.Generator,
    latencies: np.ndarray,
    observed: int,
    errors: _VisitErrors | None,
    hits: np.ndarray | None,
    hit_share: float,
    timeout: float | None,
    policy: RetryPolicy,
    n: int,
    stats: Counter[str],
    alive: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Attempts of one step for ``n`` simulated runs; returns time spent and success.
    ``latencies[:observed]`` were observed in full, the rest are the times attempts a timeout cut
    off ran: one drawn times out again at a timeout it ran to; at a longer one it counts as
    unknown, and as a timeout (the worst case). A visit is served from the cache as often as
    observed (``hit_share`` of them, taking one of the ``hits``' times): no attempt, no timeout.
    Each other visit first meets the ``errors`` of an observed visit drawn at random, then calls."""
    import numpy as np

    from wfkit.model._retry import ErrorKind

    spent = np.zeros(n)
    done = ~alive  # runs that already failed take no part
    ok = np.zeros(n, dtype=bool)
    stats["visits"] += int(alive.sum())
    if hits is not None:  # (no draw without hits: a log with no cache hits predicts as before)
        served = np.flatnonzero(alive & (rng.random(n) < hit_share))
        spent[served] = rng.choice(hits, size=len(served))
        ok[served] = done[served] = True
    met = np.zeros(n, dtype=np.int64)  # how many errors a visit meets before it calls
    visit = np.zeros(n, dtype=np.int64)
    if errors is not None:
        visit[alive] = rng.choice(len(errors.counts), size=int(alive.sum()))
        met = np.where(alive, errors.counts[visit], 0)
    for attempt in range(policy.max_retries + 1):
        calling = np.flatnonzero(~done & (met <= attempt))
        erring = np.flatnonzero(~done & (met > attempt))
        if len(calling) + len(erring) == 0:
            break
        stats["attempts"] += len(calling) + len(erring)
        # (the same draws as rng.choice(latencies, size=k): a log with no timeouts predicts as before)
        picked = rng.choice(len(latencies), size=len(calling))
        drawn = latencies[picked]
        censored = picked >= observed
        if timeout is None:
            stats["unknown"] += int(censored.sum())
            cut = np.zeros(len(calling), dtype=bool)
        else:
            cut = (drawn > timeout) | censored
            stats["unknown"] += int((censored & (drawn < timeout)).sum())
        took, kind = np.zeros(0), np.zeros(0, dtype=object)
        if errors is not None and len(erring):
            took, kind = errors.latency[visit[erring], attempt], errors.kind[visit[erring], attempt]
        slow = took > timeout if timeout is not None else np.zeros(len(erring), dtype=bool)  # the timeout comes first
        stats["timeouts"] += int(cut.sum() + slow.sum())
        spent[calling] += np.where(cut, timeout or 0.0, drawn)
        spent[erring] += np.where(slow, timeout or 0.0, took)
        ok[calling[~cut]] = True
        done[calling[~cut]] = True
        failing = np.concatenate([calling[cut], erring])
        kinds = np.concatenate([np.full(int(cut.sum()), ErrorKind.TRANSIENT.value), np.where(slow, "transient", kind)])
        retried = np.isin(kinds, [k.value for k in ErrorKind if policy.allows(k, attempt)])
        done[failing[~retried]] = True
        if retried.any():
            # Jitter drawn from the simulation's own seeded generator, never the global `random`,
            # so predict_timeouts(seed=...) gives the same figures every time.
            jitter = random.Random(int(rng.integers(2**63)))
            spent[failing[retried]] += np.array(
                [policy.backoff(attempt + 1, jitter) for _ in range(int(retried.sum()))]
            )
    stats["failed"] += int((alive & ~ok).sum())
    return spent, ok & alive
