"""Evals: the public ``wfkit.evals`` namespace.

A ``Suite`` names a dataset, a workflow (or a factory of variants), scorers and thresholds;
``evaluate`` runs it with bounded concurrency and returns an ``EvalResult`` (summary with
intervals, variant comparison, checks, plots). Scorers live in ``_scorers``; the intervals and
the paired test in ``_stats``.

Loaded on first use (``wf.evals`` or ``import wfkit.evals``), so ``import wfkit`` stays light.
"""

from wfkit.evals._evals import (
    EvalResult,
    Suite,
    UnpairedCasesWarning,
    evaluate,
    evaluate_async,
    load_dataset,
    load_result,
    load_suite,
)
from wfkit.evals._scorers import (
    Case,
    Score,
    contains,
    cost_budget,
    custom,
    exact_match,
    json_schema,
    latency_budget,
    llm_judge,
    numeric,
    regex,
    route_taken,
    tools_used,
)

__all__ = [
    "Case",
    "EvalResult",
    "Score",
    "Suite",
    "UnpairedCasesWarning",
    "contains",
    "cost_budget",
    "custom",
    "evaluate",
    "evaluate_async",
    "exact_match",
    "json_schema",
    "latency_budget",
    "llm_judge",
    "load_dataset",
    "load_result",
    "load_suite",
    "numeric",
    "regex",
    "route_taken",
    "tools_used",
]
