"""The statistics an eval reports: intervals of a variant's mean score and pass rate, and the
paired comparison of two variants over the same cases (an exact sign test, the net win rate's
interval and the mean difference's). Pure functions of counts and scores, checked for coverage in
the tests: a figure an eval prints must hold what its level says, with two cases as with two
thousand.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex

if TYPE_CHECKING:
    import numpy as np

TIE_TOLERANCE = 1e-9  # paired scores in [0, 1] closer than this tie: float noise (0.1 + 0.2 against 0.3)


def mean_interval(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean of scores in [0, 1]: the means ``m`` from which the scores' mean is
    within ``z`` standard errors (a score interval, as Wilson's is of a pass rate), the variance at
    ``m`` being the scores' own with just enough of their weight moved to a bound to make their
    mean ``m`` (to 0 for an ``m`` below their mean, to 1 above): a rare low score, a judge's 0 in
    one case of 20, that the cases did not happen to show. Student's t, which measures only the
    spread the cases show, held the true mean of scores mostly 1.0 with a rare 0.0 in as few as
    54% of 95% intervals; this holds it in 93.7% to 99.5% of seeded synthetic evals of 5 to 50
    cases with 2% to 20% of scores rare and low (tests/test_evals.py), and is never wider than
    Wilson's interval of a pass rate with that mean (the most a [0, 1] score with that mean can
    spread).

    For 0/1 scores it is Wilson's interval (20 of 20: about [0.84, 1.0]); scores all the same get
    room on each side, never a zero-width interval (12 cases of 0.5: about [0.38, 0.62]; one of
    0.7: about [0.14, 0.94]). No value: (nan, nan)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if np.isin(data, [0.0, 1.0]).all():  # the same interval, computed as pass rates' is: equal to the bit
        return _wilson(float(data.mean()), data.size, level)
    return (_lowest_mean(data, level), 1.0 - _lowest_mean(1.0 - data, level))


def _lowest_mean(data: np.ndarray[Any, Any], level: float) -> float:
    """The low end of :func:`mean_interval`. Moving a weight ``1 - m / mean`` of the scores to 0
    makes their mean ``m`` and their second moment ``m / mean`` times theirs, so the variance at
    ``m`` is ``v(m) = m * second / mean - m**2``; the low end is the smaller root of
    ``n * (mean - m)**2 = z**2 * v(m)``, a quadratic in ``m`` (for 0/1 scores, Wilson's)."""
    import math
    from statistics import NormalDist

    import numpy as np

    n, mean = data.size, float(data.mean())
    if mean <= 0.0:
        return 0.0
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    second = float(np.mean(data * data))
    # (n + z^2) m^2 - b m + n mean^2 = 0; the smaller root in a form that does not cancel.
    a, b, c = n + z * z, 2 * n * mean + z * z * second / mean, n * mean * mean
    return min(mean, 2 * c / (b + math.sqrt(max(0.0, b * b - 4 * a * c))))


def sign_test(wins: SupportsIndex, losses: SupportsIndex) -> float:
    """Exact two-sided sign test: the chance, were wins and losses equally likely, of a split at
    least as uneven as ``wins`` to ``losses`` (ties are left out before). For paired 0/1 scores
    this is McNemar's exact test. 4 to 0 gives 0.125, 6 to 0 gives 0.031, no pair at all 1.0.
    Counts are whole numbers: ints, or numpy integers (made Python ints, whose sums never overflow)."""
    wins, losses = _count("wins", wins), _count("losses", losses)
    pairs, fewer = wins + losses, min(wins, losses)
    tail, term = 0, 1  # sum of C(pairs, k) for k <= fewer, in exact integers
    for k in range(fewer + 1):
        tail += term
        term = term * (pairs - k) // (k + 1)
    return min(1.0, 2 * tail / (1 << pairs))


def _count(name: str, value: SupportsIndex) -> int:
    """``value`` as a Python int: a numpy integer's arithmetic would overflow at 2**63 (the sign
    test sums binomial coefficients as large as 2**pairs) and read as p = 1.0."""
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} is a count of cases, a whole number (an int, or a numpy integer), got {value!r}; "
            f"pass int(...) of a count, never a float or a string"
        ) from None
    if count < 0:
        raise ValueError(f"{name} is a count of cases, never below 0, got {count}")
    return count


def net_win_interval(
    wins: SupportsIndex, losses: SupportsIndex, ties: SupportsIndex = 0, *, level: float = 0.95
) -> tuple[float, float]:
    """Interval of the net win rate ``(wins - losses) / (wins + losses + ties)``: Tango's score
    interval for paired cases (Statistics in Medicine 17, 1998), which holds the true net win rate
    about ``level`` of the time whichever side wins. When :func:`sign_test` finds no difference at
    ``1 - level`` the interval is stretched to reach 0, so it excludes 0 exactly when that test
    does. For 0/1 scores the net win rate is the mean difference. All cases tied still give an
    interval around 0 (20 ties: about +-0.16); no case at all: (nan, nan)."""
    import math
    from statistics import NormalDist

    wins, losses, ties = _count("wins", wins), _count("losses", losses), _count("ties", ties)
    cases = wins + losses + ties
    if cases == 0:
        return (float("nan"), float("nan"))
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)

    def score(delta: float) -> float:
        """Tango's statistic for a true net win rate ``delta``; it falls as ``delta`` grows."""
        # The chance of a loss that fits the counts best when the net win rate is delta.
        w = -wins - losses + (2 * cases - wins + losses) * delta
        loss = (math.sqrt(max(0.0, w * w + 8 * cases * losses * delta * (1 - delta))) - w) / (4 * cases)
        spread = cases * (2 * loss + delta * (1 - delta))
        excess = wins - losses - cases * delta
        if spread <= 0:  # at delta = -1 or 1: any excess is infinitely unlikely
            return 0.0 if excess == 0 else float("inf") if excess > 0 else float("-inf")
        return excess / math.sqrt(spread)

    def solve(target: float, lo: float, hi: float) -> float:  # bisection where score crosses target
        for _ in range(60):
            mid = (lo + hi) / 2
            if score(mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    rate = (wins - losses) / cases
    low = -1.0 if score(-1.0) <= z else solve(z, -1.0, rate)
    high = 1.0 if score(1.0) >= -z else solve(-z, rate, 1.0)
    if sign_test(wins, losses) >= 1 - level:
        low, high = min(low, 0.0), max(high, 0.0)
    return (low, high)


def mean_diff_interval(differences: Sequence[float], *, level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean of paired differences of scores in [0, 1] (candidate minus baseline,
    one per case both scored): :func:`mean_interval` of the differences moved to [0, 1], ``(1 +
    d) / 2``, and back, so the variance at each candidate mean difference is the differences' own
    with just enough weight moved to -1 (a case the candidate fails and the baseline passes) or 1
    to give that mean: a rare big loss, one case in 20, that the cases did not happen to show.
    A paired Student's t, which measures only the spread the differences show, held the true mean
    difference of two variants mostly alike with a rare big loss in as few as 42% of 95% intervals
    (one case 0.1 better among 11 ties narrowed the +-0.24 of 12 ties to [-0.01, 0.03]); this
    holds it in 98% to 100% of seeded synthetic evals of 5 to 50 cases with 2% to 20% of cases a
    big loss or win (tests/test_evals.py). The price is width where the cases show only small
    differences: never less than about z^2 / (n + z^2) each side (+-0.07 at 50 cases, as 50 ties
    get), since no run of small differences rules out a big loss the next cases may show.

    Differences all -1, 0 or 1 (pass/fail scores, or every case tied) make the mean difference
    the net win rate, so they get its interval, :func:`net_win_interval`, and the two never
    disagree. Differences all the same ``c`` get room on each side, never a zero-width interval:
    ``c - (1 + c) z^2 / (n + z^2)`` to ``c + (1 - c) z^2 / (n + z^2)``, as ties do at ``c = 0``
    (12 cases each 0.1 better: about [-0.17, 0.32]). No value: (nan, nan)."""
    import numpy as np

    data = np.asarray(differences, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if np.isin(data, [-1.0, 0.0, 1.0]).all():
        wins, losses = int((data > 0).sum()), int((data < 0).sum())
        return net_win_interval(wins, losses, data.size - wins - losses, level=level)
    shifted = (data + 1.0) / 2.0  # a difference's bounds, -1 and 1, are a score's 0 and 1
    return (2.0 * _lowest_mean(shifted, level) - 1.0, 1.0 - 2.0 * _lowest_mean(1.0 - shifted, level))


def wilson_interval(passed: int, total: int, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a pass rate: honest at 20/20 (about [0.84, 1.0]), where a
    bootstrap of the cases would say [1.0, 1.0]."""
    if total == 0:
        return (float("nan"), float("nan"))
    if not 0 <= passed <= total:
        raise ValueError(f"passed must be within 0..total, got {passed} of {total}")
    return _wilson(passed / total, total, level)


def _wilson(rate: float, total: int, level: float) -> tuple[float, float]:
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * ((rate * (1 - rate) / total + z * z / (4 * total * total)) ** 0.5)
    # At 0 of n the low end is 0 exactly, at n of n the high end 1; in floating point centre - half
    # came out 2.8e-17 (0 of 10) and centre + half 0.9999999999999999 (13 of 13), which a summary
    # printed as 2.775558e-17 and turned its whole column to scientific notation.
    low = 0.0 if rate <= 0.0 else max(0.0, centre - half)
    high = 1.0 if rate >= 1.0 else min(1.0, centre + half)
    return (low, high)
