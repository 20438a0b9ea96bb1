"""Two sets of runs side by side: latency quantiles per (workflow, step), their ratio, and a
bootstrap interval on the difference, so a shift can be told from noise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wfkit.logs._tables import keys_of, quantile_label

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# The bootstrap draws this many values a side at most: the interval of a million-row step then
# costs milliseconds, and is (slightly) wider than the full sample's, never narrower.
BOOTSTRAP_CAP = 5_000
# A quantile's bootstrap interval means something only when each side has some observations
# beyond it: with 6 values a P99 is the maximum, and its resamples say little about where a P99
# lies (the interval came out as a confident [-47 ms, -0.2 ms] for two sets of 5 and 6 calls).
# Below ceil(TAIL_OBSERVATIONS / min(q, 1 - q)) values a side (P50: 10, P90: 50, P99: 500) the
# interval is NaN, and the table says how many it needs.
TAIL_OBSERVATIONS = 5


def samples_for_interval(q: float) -> int:
    """Values each side needs before the interval of quantile ``q`` is reported."""
    import math

    return math.ceil(round(TAIL_OBSERVATIONS / min(q, 1 - q), 9))


def compare_latency(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    *,
    labels: tuple[str, str] = ("baseline", "candidate"),
    by: str | Sequence[str] | None = None,
    quantiles: Sequence[float] = (0.5, 0.99),
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (workflow, step) (or ``by``) present on both sides, from successful attempts: ``n_<label>``, and for
    each quantile (``p50``...) its value on each side, ``<q>_ratio`` (candidate / baseline),
    ``<q>_diff`` (candidate - baseline, seconds) and ``<q>_diff_low`` / ``_high``, the bootstrap
    interval of the difference at ``level``, NaN when a side has too few values for one
    (:func:`samples_for_interval`: 10 for P50, 500 for P99). ``.attrs`` keep the labels and settings,
    and ``min_samples``, the values a side each quantile's interval needs."""
    import numpy as np
    import pandas as pd

    if labels[0] == labels[1]:
        raise ValueError(f"the two labels must differ, got {labels!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a meaningful interval, got {resamples!r}")
    for q in quantiles:
        if not 0 < q < 1:
            raise ValueError(f"quantiles must be in (0, 1), got {q!r}")
    sides = [frame[frame["status"] == "ok"] for frame in (baseline, candidate)]
    keys = keys_of(sides[0], by)
    missing = [k for k in keys if k not in sides[1].columns]
    if missing:
        raise ValueError(f"the candidate frame has no {', '.join(missing)} column: compare two step logs")
    groups = [
        {
            (k if isinstance(k, tuple) else (k,)): g["latency_s"].dropna().to_numpy(dtype=float)
            for k, g in side.groupby(keys, observed=True, sort=True)
        }
        for side in sides
    ]
    common = [k for k in groups[0] if k in groups[1] and len(groups[0][k]) and len(groups[1][k])]
    if not common and groups[0] and groups[1] and "workflow" in keys:
        raise ValueError(
            f"the two frames share no (workflow, step) with successful attempts (workflows "
            f"{sorted({k[0] for k in groups[0]})} against {sorted({k[0] for k in groups[1]})}); "
            f'to compare steps of different workflows, pass by="step"'
        )
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    records = []
    for key in common:
        a, b = groups[0][key], groups[1][key]
        row: dict[str, float | int] = {f"n_{labels[0]}": len(a), f"n_{labels[1]}": len(b)}
        draws_a, draws_b = _resample(rng, a, resamples), _resample(rng, b, resamples)
        for q in quantiles:
            label = quantile_label(q)
            qa, qb = float(np.quantile(a, q)), float(np.quantile(b, q))
            diffs = np.quantile(draws_b, q, axis=1) - np.quantile(draws_a, q, axis=1)
            row[f"{label}_{labels[0]}"] = qa
            row[f"{label}_{labels[1]}"] = qb
            row[f"{label}_ratio"] = qb / qa if qa > 0 else float("nan")
            row[f"{label}_diff"] = qb - qa
            if min(len(a), len(b)) >= samples_for_interval(q):
                row[f"{label}_diff_low"] = float(np.quantile(diffs, tail))
                row[f"{label}_diff_high"] = float(np.quantile(diffs, 1 - tail))
            else:  # too few values beyond the quantile for its interval to mean anything
                row[f"{label}_diff_low"] = row[f"{label}_diff_high"] = float("nan")
        records.append(row)
    index = pd.MultiIndex.from_tuples(common, names=keys) if common else pd.MultiIndex.from_tuples([], names=keys)
    if len(keys) == 1:
        index = pd.Index([k[0] for k in common], name=keys[0])
    columns = [f"n_{labels[0]}", f"n_{labels[1]}"] + [
        f"{quantile_label(q)}_{suffix}"
        for q in quantiles
        for suffix in (labels[0], labels[1], "ratio", "diff", "diff_low", "diff_high")
    ]
    table = pd.DataFrame(records, index=index, columns=columns)
    table.attrs.update(
        labels=labels,
        quantiles=tuple(quantiles),
        level=level,
        resamples=resamples,
        min_samples={quantile_label(q): samples_for_interval(q) for q in quantiles},
    )
    return table


def _resample(rng: np.random.Generator, values: np.ndarray, resamples: int) -> np.ndarray:
    """``resamples`` bootstrap samples (rows) of ``values``, at most BOOTSTRAP_CAP a side."""
    if len(values) > BOOTSTRAP_CAP:
        values = rng.choice(values, size=BOOTSTRAP_CAP, replace=False)
    return values[rng.integers(0, len(values), size=(resamples, len(values)))]
