"""Timeouts from the data: propose them at a high quantile, and predict what they will cost.

LLM latency is long-tailed: a timeout set at the mean cuts one call in a few dozen, and across
serial steps the misses compound. ``advise_timeouts`` proposes per-step timeouts at P99 (with a
margin) and a run deadline; ``predict_timeouts`` replays the observed latencies by Monte Carlo,
with the proposed timeouts and retry policies, to predict attempt timeouts, step failures and
whole-run failures before anyone waits for them in production.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from wfkit.logs._tables import quantile_label
from wfkit.model._errors import ProcessCrashedError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from wfkit.model._retry import RetryPolicy


MIN_SAMPLES = 20


def _uncensored(df: pd.DataFrame) -> pd.DataFrame:
    """Attempts whose latency was observed in full (a timed-out attempt only says "at least", and
    one a process crash cut off says nothing: its process died with the clock)."""
    keep = (df["attempt"] > 0) & (df["status"] != "timeout")
    if "error_type" in df.columns:
        keep &= df["error_type"] != ProcessCrashedError.__name__
    return df[keep]


def check_advice_args(quantile: float, margin: float, min_samples: int) -> None:
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if margin < 1:
        raise ValueError(f"margin must be >= 1 (a timeout below the observed quantile cuts calls), got {margin!r}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples!r}")


def run_durations(runs: pd.DataFrame) -> pd.DataFrame:
    """Per workflow, the durations of its runs (from a ``runs()`` table) as a sorted array."""
    import pandas as pd

    if "workflow" not in runs.columns or runs.empty:
        return pd.DataFrame({"durations": pd.Series(dtype=object)})
    grouped = runs.groupby(runs["workflow"].astype(str), observed=True)["duration_s"]
    return grouped.apply(lambda d: d.sort_values().to_numpy()).to_frame("durations")


def advice_table(
    stats: pd.DataFrame, durations: pd.DataFrame, *, quantile: float, margin: float, min_samples: int
) -> pd.DataFrame:
    """The advice from per-(workflow, step) latency stats of successful attempts (p50, the
    quantile, max, mean, count) and per-workflow run durations: the one policy behind both the
    accessor and ``StepLog``."""
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
    enough = table["samples"] >= min_samples
    table["timeout_s"] = proposed.where(enough)
    table["basis"] = np.where(floored, "slowest success", f"{label} x {margin:g}")
    table["basis"] = table["basis"].where(enough, None)
    table["note"] = [
        None if ok else f"only {n} successful attempt{'s' if n != 1 else ''}; need {min_samples} for advice"
        for ok, n in zip(enough, table["samples"], strict=True)
    ]
    deadlines: dict[str, float | None] = {}
    for workflow, values in durations["durations"].items():
        if len(values) < min_samples:
            deadlines[str(workflow)] = None
            continue
        at = float(np.quantile(values, quantile)) * margin
        deadlines[str(workflow)] = math.ceil(max(at, float(values[-1])) * 1000) / 1000
    table.attrs.update(
        run_deadline_s=deadlines,
        run_samples={str(w): len(v) for w, v in durations["durations"].items()},
        quantile=quantile,
        margin=margin,
        min_samples=min_samples,
    )
    return table


def advise_timeouts(
    df: pd.DataFrame, *, quantile: float = 0.99, margin: float = 1.5, min_samples: int = MIN_SAMPLES
) -> pd.DataFrame:
    """Per (workflow, step): a timeout at ``quantile`` of successful latency times ``margin``,
    raised to the slowest success if that is higher; none under ``min_samples`` successes (the
    ``note`` says why). ``.attrs["run_deadline_s"]`` maps each workflow to a run deadline."""
    from wfkit.logs._tables import grouped_quantiles, keys_of, runs_table

    check_advice_args(quantile, margin, min_samples)
    ok = (df["attempt"].to_numpy() > 0) & (df["status"] == "ok").to_numpy(dtype=bool)
    stats = grouped_quantiles(df, keys_of(df, None), "latency_s", sorted({0.5, quantile}), where=ok)
    durations = run_durations(runs_table(df, outcomes=False))
    return advice_table(stats, durations, quantile=quantile, margin=margin, min_samples=min_samples)


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
    rows = _uncensored(df)
    samples = {
        str(step): group.to_numpy(dtype=float) for step, group in rows.groupby("step", observed=True)["latency_s"]
    }
    unknown = sorted(set(timeouts) - set(samples))
    if unknown:
        raise ValueError(f"no latency observed for step(s) {', '.join(unknown)}; known: {', '.join(sorted(samples))}")
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
                    rng, samples[step], timeouts.get(step), policy_for(step), n, stats[step], alive
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


def _simulate_step(
    rng: np.random.Generator,
    latencies: np.ndarray,
    timeout: float | None,
    policy: RetryPolicy,
    n: int,
    stats: Counter[str],
    alive: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Attempts of one step for ``n`` simulated runs; returns time spent and success."""
    import numpy as np

    from wfkit.model._retry import ErrorKind

    spent = np.zeros(n)
    done = ~alive  # runs that already failed take no part
    ok = np.zeros(n, dtype=bool)
    stats["visits"] += int(alive.sum())
    for attempt in range(policy.max_retries + 1):
        active = ~done
        k = int(active.sum())
        if k == 0:
            break
        drawn = rng.choice(latencies, size=k)
        stats["attempts"] += k
        if timeout is None:
            spent[active] += drawn
            ok[active] = True
            done[active] = True
            break
        cut = drawn > timeout
        stats["timeouts"] += int(cut.sum())
        spent[active] += np.where(cut, timeout, drawn)
        idx = np.flatnonzero(active)
        ok[idx[~cut]] = True
        done[idx[~cut]] = True
        if policy.allows(ErrorKind.TRANSIENT, attempt) and cut.any():
            # Jitter drawn from the simulation's own seeded generator, never the global `random`,
            # so predict_timeouts(seed=...) gives the same figures every time.
            jitter = random.Random(int(rng.integers(2**63)))
            delays = np.array([policy.backoff(attempt + 1, jitter) for _ in range(int(cut.sum()))])
            spent[idx[cut]] += delays
        else:
            done[idx[cut]] = True
    stats["failed"] += int((alive & ~ok).sum())
    return spent, ok & alive
