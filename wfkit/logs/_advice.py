"""Timeouts from the data: propose them at a high quantile, and predict what they will cost.

LLM latency is long-tailed: a timeout set at the mean cuts one call in a few dozen, and across
serial steps the misses compound. ``advise_timeouts`` proposes per-step timeouts at P99 (with a
margin) and a run deadline; ``predict_timeouts`` replays the observed latencies by Monte Carlo,
with the proposed timeouts and retry policies, to predict attempt timeouts, step failures and
whole-run failures before anyone waits for them in production.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from wfkit.model._retry import RetryPolicy


def _uncensored(df: pd.DataFrame) -> pd.DataFrame:
    """Attempts whose latency was observed in full (a timed-out attempt only says "at least")."""
    return df[(df["attempt"] > 0) & (df["status"] != "timeout")]


def advise_timeouts(df: pd.DataFrame, *, quantile: float = 0.99, margin: float = 1.5) -> pd.DataFrame:
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if margin < 1:
        raise ValueError(f"margin must be >= 1 (a timeout below the observed quantile cuts calls), got {margin!r}")
    rows = _uncensored(df)
    grouped = rows.groupby("step", observed=True)["latency_s"]
    label = f"p{quantile * 100:g}"
    table = grouped.quantile(0.5).to_frame("p50")
    table[label] = grouped.quantile(quantile)
    table["samples"] = grouped.size()
    table["timeout_s"] = (table[label] * margin).round(3)
    table["mean_s"] = grouped.mean()
    runs = df.groupby("run_id", observed=True).agg(start=("started_at", "min"), end=("ended_at", "max"))
    durations = (runs["end"] - runs["start"]).dt.total_seconds()
    table.attrs["run_deadline_s"] = round(float(durations.quantile(quantile)) * margin, 3) if len(durations) else None
    table.attrs["quantile"] = quantile
    table.attrs["margin"] = margin
    return table


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


def predict_timeouts(
    df: pd.DataFrame,
    timeouts: dict[str, float],
    *,
    retry: dict[str, RetryPolicy] | RetryPolicy | None = None,
    deadline: float | None = None,
    runs: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    from wfkit.model._retry import NO_RETRY, RetryPolicy

    rows = _uncensored(df)
    samples = {step: group.to_numpy(dtype=float) for step, group in rows.groupby("step", observed=True)["latency_s"]}
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
