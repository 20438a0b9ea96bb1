"""The ``df.wf`` accessor on step-log DataFrames.

The accessor gives the summaries people ask of agent runs: latency percentiles (the long tail, not
the mean), failure rates by error kind, retries, the commonest error messages, tokens and cost,
run-level latency; and the plots and timeout advice built on them (``_plots``, ``_advice``).
Everything is keyed by (workflow, step): ``classify`` in two workflows is two different steps.

The accessor works on a frame already in memory, in pandas (vectorised: one sort of small group
codes, then one selection per group). To summarise a dataset on disk without loading it, use
:class:`wfkit.StepLog` (``_summaries``), which returns the very same tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wfkit.logs._tables import (
    ERROR_KINDS,
    OUTCOME_COLUMNS,
    QUANTILES,
    grouped_quantiles,
    in_run_order,
    keys_of,
    map_own_rows,
    quantile_label,
    runs_table,
)
from wfkit.model._context import BY_MODEL, UNCOUNTED_CALL_KEYS, UNCOUNTED_KEYS, USAGE_MARK_KEYS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

    from wfkit.logs._plots import Facets
    from wfkit.model._retry import RetryPolicy

# What every question needs; each method asks for the rest (a frame read with `columns=` may lack them).
_REQUIRED = ("step", "attempt", "status")


# What every key that marks a row's figures short or unknown (and by_model) holds: one pass over
# all rows finds the few that may hold one, and only those are searched for each key.
_MARKED = "_model"


def _marks(rows: pd.DataFrame, keys: Sequence[str]) -> dict[str, np.ndarray[Any, np.dtype[np.bool_]]]:
    """Per key, the attempts whose ``extra`` (JSON text in the log's files) has it: a test of the
    text, not a parse of every row's JSON (one pass over the rows, then one over the few marked)."""
    import numpy as np

    text = rows["extra"].astype(object)
    few = text.str.contains(_MARKED, regex=False).fillna(False).to_numpy(dtype=bool)
    subset = text[few] if few.any() else None
    out = {}
    for key in keys:
        hit = np.zeros(len(rows), dtype=bool)
        if subset is not None:
            hit[few] = subset.str.contains(f'"{key}"', regex=False).fillna(False).to_numpy(dtype=bool)
        out[key] = hit
    return out


def _marked(rows: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """The attempts whose ``extra`` has one of ``keys``."""
    import numpy as np
    import pandas as pd

    return pd.Series(np.logical_or.reduce(list(_marks(rows, keys).values())), index=rows.index)


def uncounted(rows: pd.DataFrame) -> pd.Series:
    """The attempts with a call that succeeded but whose server sent no token usage, or only one of
    its two counts, or a stream its caller left before the usage came, or a call that failed after
    the server got it, so no cost came back: only the attempt's ``extra`` says so (it names the
    model under ``no_usage_models``, ``no_tokens_in_models``, ``no_tokens_out_models``,
    ``abandoned_stream_models`` or ``unknown_outcome_models``; a call the server refused, which is
    no cost, leaves no mark). Needs ``extra``."""
    return (rows["cost_usd"].isna() & _marked(rows, UNCOUNTED_CALL_KEYS)).astype(bool)


def uncounted_tokens(rows: pd.DataFrame, column: str) -> pd.Series:
    """The attempts whose ``column`` (``"tokens_in"`` or ``"tokens_out"``) holds less than their
    calls used: a call's server sent no count of that kind, so the row has the counted calls' sum
    (or nothing), and ``extra`` names the model. Needs ``extra``."""
    return _marked(rows, UNCOUNTED_KEYS[column])


# An attempt's extra holding a per-model breakdown (it called several models).
_SPLIT = f'"{BY_MODEL}"'
# What each model's share gives its row; the rest of the row (its step, run, status) is the attempt's.
_SHARED = ("tokens_in", "tokens_out", "cost_usd", "model_latency_s", "ttft_s")


def split_by_model(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with each attempt that called several models (``extra["by_model"]``) in one row per
    model: its calls, tokens, cost, model time and first token, and an ``extra`` of its own saying
    what of it is unknown (the attempt's marks that name that model, and ``llm_calls``). Every
    other row is as it was; so are the columns, a categorical ``model`` gaining the models only
    such a breakdown names. Needs ``extra`` and ``model``."""
    import pandas as pd

    text = rows["extra"].astype(object)
    several = text.str.contains(_SPLIT, regex=False).fillna(False).to_numpy(dtype=bool)
    if not several.any():
        return rows
    positions: list[int] = []
    values: list[dict[str, Any] | None] = []  # None: the row as it was
    for position, raw in zip(several.nonzero()[0], text[several], strict=True):
        try:
            extra = json.loads(raw)
        except ValueError:  # text a processor cut short: the attempt stays whole, under its last model
            extra = {}
        shares = extra.get(BY_MODEL) if isinstance(extra, dict) else None
        if not isinstance(shares, dict) or not all(isinstance(v, dict) for v in shares.values()):
            positions.append(position)  # a breakdown of another shape (a user's own key): kept whole
            values.append(None)
            continue
        for model, part in shares.items():
            marks = {k: [model] for k in USAGE_MARK_KEYS if model in (extra.get(k) or ())}
            positions.append(position)
            values.append(
                {
                    "model": model,
                    **{k: part.get(k) for k in _SHARED},
                    "extra": json.dumps({"llm_calls": part.get("calls", 0), **marks}),
                }
            )
    split = rows.iloc[positions].reset_index(drop=True)
    for column in ("model", *(c for c in _SHARED if c in rows.columns), "extra"):
        kept = split[column].astype(object)
        merged = [old if new is None else new[column] for old, new in zip(kept, values, strict=True)]
        if isinstance(rows[column].dtype, pd.CategoricalDtype):
            categories = sorted(set(rows[column].cat.categories) | {m for m in merged if m is not None})
            split[column] = pd.Categorical(merged, categories=categories)
        else:
            split[column] = pd.Series(merged, dtype=object).astype(rows[column].dtype)
    rest = rows[~several]
    if isinstance(rows["model"].dtype, pd.CategoricalDtype):
        rest = rest.assign(model=rest["model"].cat.set_categories(split["model"].cat.categories))
    return pd.concat([rest, split], ignore_index=True)


class StepsAccessor:
    """``df.wf``: summaries, plots and timeout advice for a step-log DataFrame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        missing = [c for c in _REQUIRED if c not in frame.columns]
        if missing:
            raise AttributeError(
                f"df.wf needs a step-log frame (from wfkit.steps() or the workspace's steps/ folder); "
                f"missing columns: {', '.join(missing)}"
            )
        self._df = frame

    def _need(self, question: str, *columns: str) -> None:
        missing = [c for c in columns if c not in self._df.columns]
        if missing:
            raise ValueError(
                f"df.wf.{question}() needs the column(s) {', '.join(missing)}: read them too "
                f"(wf.steps(columns=[...]) or without columns=)"
            )

    @property
    def attempts(self) -> pd.DataFrame:
        """Rows that are step attempts (approval decisions, attempt 0, and a map step's own row
        left out)."""
        return self._df[self._attempt_mask()]

    def _attempt_mask(self, status: str | Sequence[str] | None = None) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Which rows are attempts (with one of these statuses), as a boolean array. A map step's
        own row is left out where the frame says which it is (a question whose figures it would
        change asks for ``map_index``; for the others it has no latency, tokens or retries)."""
        mask: np.ndarray[Any, np.dtype[np.bool_]] = self._df["attempt"].to_numpy() > 0
        if "map_index" in self._df.columns:
            mask &= ~map_own_rows(self._df)
        if status is None:
            return mask
        # == on a categorical compares codes: far faster than isin.
        chosen = self._df["status"] == status if isinstance(status, str) else self._df["status"].isin(list(status))
        chosen_rows: np.ndarray[Any, np.dtype[np.bool_]] = chosen.to_numpy(dtype=bool)
        return mask & chosen_rows

    def _attempt_rows(self, *columns: str) -> pd.DataFrame:
        """The attempts' rows, only these columns (a question copies what it reads, not the frame)."""
        return self._df.loc[self._attempt_mask(), list(dict.fromkeys(columns))]

    # ---- tables --------------------------------------------------------------------------------

    def latency(
        self,
        by: str | Sequence[str] | None = None,
        quantiles: Sequence[float] = QUANTILES,
        *,
        status: str | Sequence[str] | None = "ok",
    ) -> pd.DataFrame:
        """Latency percentiles in seconds per (workflow, step) (or ``by``): p50, p90, p95, p99, max,
        mean, count. Successful attempts only by default (a failed attempt that took 0.1 ms is not
        a fast call); ``status=None`` takes every attempt. Each workflow's steps are listed in the
        order a run meets them (by when each first started in the frame), not alphabetically."""
        self._need("latency", "latency_s", "map_index")
        # A mask, not a filtered copy: on millions of rows, copying every column twice (attempts,
        # then status) cost more than the quantiles themselves.
        table = grouped_quantiles(
            self._df, keys_of(self._df, by), "latency_s", quantiles, where=self._attempt_mask(status)
        )
        return in_run_order(table, self._df)

    def failures(self, by: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Attempts, failed attempts by error kind, the failure rate and timeouts per (workflow, step),
        each workflow's steps in the order a run meets them (as ``latency()``)."""
        self._need("failures", "error_kind", "map_index")
        import pandas as pd

        keys = keys_of(self._df, by)
        rows = self._attempt_rows(*keys, "error_kind", "status")
        table = rows.groupby(keys, observed=True, sort=True).size().to_frame("attempts")
        # Count failed attempts per kind on the (few) failed rows only: 10M rows stay fast.
        failed = rows[rows["error_kind"].isin(ERROR_KINDS)]
        per_kind = failed.groupby([*keys, failed["error_kind"].astype(str)], observed=True).size()
        per_kind = per_kind.unstack(fill_value=0) if len(per_kind) else pd.DataFrame(index=table.index)
        for kind in ERROR_KINDS:
            table[kind] = per_kind[kind].reindex(table.index, fill_value=0).astype("int64") if kind in per_kind else 0
        table["failed"] = table[list(ERROR_KINDS)].sum(axis=1).astype("int64")
        table["failure_rate"] = table["failed"] / table["attempts"]
        timeouts = rows[rows["status"] == "timeout"].groupby(keys, observed=True).size()
        table["timeouts"] = timeouts.reindex(table.index, fill_value=0).astype("int64")
        table.columns.name = None
        return in_run_order(table, self._df)

    def errors(self, by: str | Sequence[str] | None = None, *, top: int | None = None) -> pd.DataFrame:
        """Failed attempts grouped by (workflow, step), error kind, type and message, commonest
        first: how often, in how many runs, and the last run it happened in."""
        self._need("errors", "run_id", "error_kind", "error_type", "error_message", "started_at", "map_index")
        keys = [*keys_of(self._df, by), "error_kind", "error_type", "error_message"]
        rows = self._attempt_rows(*keys, "status", "run_id", "started_at")
        failed = rows[rows["error_kind"].isin(ERROR_KINDS) | rows["status"].isin(["failed", "timeout"])]
        failed = failed.assign(**{k: failed[k].astype("string").fillna("") for k in keys[-3:]})
        grouped = failed.sort_values("started_at").groupby(keys, observed=True, sort=False)
        table = grouped.agg(
            count=("run_id", "size"),
            runs=("run_id", "nunique"),
            last_run=("run_id", "last"),
            last=("started_at", "max"),
        )
        table = table.sort_values(["count", "last"], ascending=[False, False], kind="stable")
        table["last_run"] = table["last_run"].astype("string")
        return table if top is None else table.head(top)

    def retries(self, by: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Retries per step visit: total, mean and max per (workflow, step) (or ``by``, e.g. "run_id"),
        steps in the order a run meets them. Each item of a map step is a visit of its own: it is
        retried on its own."""
        self._need("retries", "run_id", "visit", "map_index")
        keys = keys_of(self._df, by)
        visit_keys = list(dict.fromkeys([*keys_of(self._df, None), "run_id", "visit", "map_index", *keys]))
        rows = self._attempt_rows(*visit_keys, "attempt")
        # dropna=False: a step that is no map has no map_index, and its visits count all the same.
        per_visit = rows.groupby(visit_keys, observed=True, dropna=False)["attempt"].max() - 1
        per_visit = per_visit.reset_index(name="retries")
        table = per_visit.groupby(keys, observed=True)["retries"].agg(["sum", "mean", "max"])
        table = table.rename(columns={"sum": "retries", "mean": "mean_per_visit", "max": "max_per_visit"})
        return in_run_order(table, self._df)

    def cost(self, by: str | Sequence[str] | None = "run_id") -> pd.DataFrame:
        """Tokens in and out, cost in USD, and model calls per run (or ``by``; None: (workflow, step),
        steps in the order a run meets them). Counts and money only, which repeat exactly under a
        seed, so a notebook that shows this table replays it as a regression check; the calls' time
        is the ``model_latency_s`` column.

        ``calls`` counts every call an attempt made, failed ones included (``extra.llm_calls``, which
        ``ctx.llm`` keeps); an attempt that recorded a model but no count, or every attempt of a frame
        read without the ``extra`` column, counts as one.

        A row's ``model`` is the last one its attempt called. Grouped by a ``by`` that includes
        "model", an attempt that called several (a cheap model, then a costly one) is split: each
        model gets its own calls, tokens and cost from the attempt's ``extra["by_model"]``, so a
        priced model keeps its cost beside an unpriced one, and the models' sums add up to the
        attempts'. Other ``by`` keys take each attempt whole. A record with no model (a priced
        tool's cost) counts under the model called before it in its attempt.

        ``cost_usd`` is NaN (unknown), never 0, for a group whose attempts include a call no price
        table knew: an attempt that recorded tokens but no cost, as ``ctx.llm`` records a model
        found in no table (give it one: ``ChatClient(..., prices=...)`` or
        ``wf.llm.PRICES.register``). A sum of the priced calls alone would read as the whole cost,
        so such a group has none (its tokens and calls are still counted); a group whose calls are
        all priced keeps its exact sum, and one that called no model costs 0 (a call the server
        refused, a 429, a 503, any error status but a 504, or never got, no connection, adds nothing: so a
        model all of whose calls were refused costs a known 0, its calls counted). The report's
        cost tables show NaN as "-". Mind that
        ``table["cost_usd"].sum()`` skips NaN, so it totals the priced groups only. An attempt that
        made such a call beside priced ones (or a priced tool) recorded no cost at all, its priced part
        alone being no cost of it (``ctx.record``; its ``extra`` names the models, ``unpriced_models``).
        The attempts whose price was unknown:
        ``df[df["cost_usd"].isna() & (df["tokens_in"].notna() | df["tokens_out"].notna())]``.

        ``tokens_in`` and ``tokens_out`` are pandas' nullable ``Int64``: a group's exact sum where
        every call's count came back, and ``<NA>`` (unknown; the report shows "-") for a group with
        a call that succeeded but whose server did not count that kind of token. A sum of the
        counted calls alone would read as the whole, so such a group has none, as for the cost.
        A server that sends no token usage (a proxy or local server that leaves ``usage`` out, a
        stream whose server ignores ``stream_options.include_usage``) makes both unknown; one whose
        ``usage`` holds ``prompt_tokens`` but no ``completion_tokens`` (or the reverse) makes only
        the missing one unknown. Either call has no tokens to price, yet it was made: its group's
        cost is NaN too, not the $0 of a step that called no model. Its attempt's ``extra`` names
        the model (``no_usage_models``, ``no_tokens_out_models``, ``no_tokens_in_models``), so this
        needs the ``extra`` column: a frame read without it cannot tell such a call from one that
        failed, and sums the counted calls. A group that called no model has 0 tokens, as it costs
        0. A call whose server sent its price but no counts (``ctx.record(cost_usd=..., no_usage=True)``,
        marked ``priced_no_tokens_in_models`` and ``priced_no_tokens_out_models``) keeps its cost, and
        its tokens are unknown all the same. Use an endpoint that reports usage (for a stream, one that honours
        ``stream_options.include_usage``, or ``client.complete``). The attempts whose counts are
        short: ``df[df["extra"].str.contains("no_usage_models|no_tokens_", na=False)]``. A stream its caller
        left before its end (a ``break`` out of ``async for`` before the server's last chunk, which
        carries the counts; ``abandoned_stream_models``) makes its group's tokens and cost unknown
        too: read a stream to its end to know what it cost. So does a call that failed after the
        server got it, whose reply the server may have generated and billed though none came back
        (``unknown_outcome_models``, counted in ``unknown_outcome_calls``): a read timeout, the
        step's timeout while the call waited, a 2xx whose body (or stream) was cut short or could not
        be read; give the call time to answer (``ChatClient(..., timeout=...)``, the step's
        ``timeout=``) to know what it cost."""
        import numpy as np

        self._need("cost", "tokens_in", "tokens_out", "cost_usd", "model")
        keys = keys_of(self._df, by)
        extra = ("extra",) if "extra" in self._df.columns else ()
        rows = self._attempt_rows(*keys, "tokens_in", "tokens_out", "cost_usd", "model", *extra)
        if extra and "model" in keys:
            # An attempt that called several models: each one's share under its own, not all under the last.
            rows = split_by_model(rows)
        called = rows["model"].notna()
        calls = called.astype("int64")
        if extra and called.any():
            # extra is the JSON text of the log's files: read the one number, not every row's JSON.
            counted = rows.loc[called, "extra"].astype(object).str.extract(r'"llm_calls":\s*(\d+)', expand=False)
            calls.loc[called] = counted.astype("float64").fillna(1).astype("int64")
        # Unpriced: tokens came back but no cost was recorded (the client found no price). A call the
        # server refused records neither, so a retried 429 leaves its step's cost known.
        unpriced = rows["cost_usd"].isna() & (rows["tokens_in"].notna() | rows["tokens_out"].notna())
        # Uncounted: a call whose server sent no count of that kind; the row holds the others' sum.
        flags: dict[str, Any] = {}
        if extra:
            marks = _marks(rows, USAGE_MARK_KEYS)
            for column, kinds in UNCOUNTED_KEYS.items():
                short = np.logical_or.reduce([marks[kind] for kind in kinds])
                if short.any():  # most logs have none: no column to group then
                    flags[f"short_{column}"] = short
            uncounted_calls = np.logical_or.reduce([marks[key] for key in UNCOUNTED_CALL_KEYS])
            unpriced |= uncounted_calls & rows["cost_usd"].isna().to_numpy(dtype=bool)
        table = (
            rows.assign(calls=calls, unpriced=unpriced, **flags)
            .groupby(keys, observed=True)
            .agg(
                tokens_in=("tokens_in", "sum"),
                tokens_out=("tokens_out", "sum"),
                cost_usd=("cost_usd", "sum"),
                calls=("calls", "sum"),
                unpriced=("unpriced", "any"),
                **{flag: (flag, "any") for flag in flags},
            )
        )
        for column in ("tokens_in", "tokens_out"):
            # Int64 whatever the data, so a table's dtypes do not change with what a run met.
            table[column] = table[column].fillna(0).astype("int64").astype("Int64")
            if f"short_{column}" in flags:
                table[column] = table[column].mask(table.pop(f"short_{column}").astype(bool))
        table["cost_usd"] = table["cost_usd"].astype("float64").mask(table.pop("unpriced").astype(bool))
        return in_run_order(table, self._df)

    def runs(self) -> pd.DataFrame:
        """One row per run: start, end, attempts, steps done, step visits that gave up
        (``failed``; a map step's visit counts once, not per item), retries, workflow,
        ``span_s`` (end minus start, wall clock) and ``duration_s`` (the time the run ran: the span
        less the time it lay stopped between a crash, a failure or a cancellation and a resume; approval waits
        count); then ``fell_back`` (the visits that gave up whose fallback took over), ``run_failed`` (the
        run failed: a step gave up with no fallback, or a rejected approval ended it) and
        ``failed_on_timeout`` (the step that failed it ran out of time)."""
        self._need("runs", "run_id", "started_at", "ended_at", *OUTCOME_COLUMNS)
        return runs_table(self._df)

    def run_latency(self, quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
        """Percentiles of whole-run duration (seconds, ``runs()["duration_s"]``: the time runs ran,
        not the time one lay stopped between a crash and its resume), its max and the count of
        runs, per workflow (the runs of several workflows pooled would describe none of them)."""
        self._need("run_latency", "run_id", "started_at", "ended_at", "workflow", "seq")
        runs = runs_table(self._df, outcomes=False)
        grouped = runs["duration_s"].groupby(runs["workflow"], observed=True)
        table = grouped.quantile(list(quantiles)).unstack()
        table.columns = [quantile_label(q) for q in quantiles]
        table["max"] = grouped.max()
        table["count"] = grouped.size()
        return table

    # ---- comparing -----------------------------------------------------------------------------

    def compare(
        self,
        candidate: pd.DataFrame,
        *,
        labels: tuple[str, str] = ("baseline", "candidate"),
        by: str | Sequence[str] | None = None,
        quantiles: Sequence[float] = (0.5, 0.99),
        level: float = 0.95,
        resamples: int = 1000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """This frame (the baseline) against ``candidate``, per (workflow, step) in both: each
        quantile of successful latency on both sides, their ratio, and the difference with a
        bootstrap interval at ``level``. Frames of two different workflows compare ``by="step"``.
        ``plot_compare`` draws the table."""
        self._need("compare", "latency_s", "map_index")
        from wfkit.logs._compare import compare_latency

        return compare_latency(
            self.attempts,
            StepsAccessor(candidate).attempts,
            labels=labels,
            by=by,
            quantiles=quantiles,
            level=level,
            resamples=resamples,
            seed=seed,
        )

    def plot_compare(
        self,
        candidate: pd.DataFrame,
        *,
        labels: tuple[str, str] = ("baseline", "candidate"),
        by: str | Sequence[str] | None = None,
        quantiles: Sequence[float] = (0.5, 0.99),
        ax: Axes | None = None,
    ) -> Axes:
        """Draw ``compare(candidate)`` as a dumbbell chart on one log axis (see ``compare``)."""
        from wfkit.logs._plots import plot_compare

        return plot_compare(self.compare(candidate, labels=labels, by=by, quantiles=quantiles), ax=ax)

    # ---- plots ---------------------------------------------------------------------------------

    def plot_latency(
        self,
        *,
        workflow: str | None = None,
        steps: Sequence[str] | None = None,
        failures: bool = False,
        kind: str = "ecdf",
        fig: Figure | SubFigure | None = None,
        col_wrap: int = 3,
    ) -> Facets:
        """Latency per (workflow, step), one panel each on a shared log axis, P50 and P99 marked.
        Successful attempts by default; ``failures=True`` adds failed attempts in their own colour.
        ``kind`` is "ecdf" or "hist". Returns the facets (``.figure``, ``.axes``)."""
        self._need("plot_latency", "latency_s", "map_index")
        from wfkit.logs._plots import plot_latency

        return plot_latency(
            self.attempts, workflow=workflow, steps=steps, failures=failures, kind=kind, fig=fig, col_wrap=col_wrap
        )

    def plot_timeline(self, run_id: str | None = None, *, ax: Axes | None = None) -> Axes:
        """A run's timeline (the latest by default): one lane per step, retries and approval waits."""
        self._need("plot_timeline", "run_id", "started_at", "ended_at", "latency_s")
        from wfkit.logs._plots import plot_timeline

        return plot_timeline(self._df, run_id=run_id, ax=ax)

    def plot_failures(self, *, ax: Axes | None = None) -> Axes:
        """Failed attempts per (workflow, step), stacked by error kind, the failure rate marked."""
        self._need("plot_failures", "error_kind", "map_index")
        from wfkit.logs._plots import plot_failures

        return plot_failures(self.failures(), ax=ax)

    # ---- timeouts ------------------------------------------------------------------------------

    def advise_timeouts(
        self, quantile: float = 0.99, margin: float = 1.5, *, min_samples: int = 20, min_timeout: float = 0.1
    ) -> pd.DataFrame:
        """Per (workflow, step): a timeout at ``quantile`` of attempt latency times ``margin``,
        never below the slowest success nor ``min_timeout`` seconds (a tighter timer fails healthy
        attempts whenever the event loop is busy for a moment), with the samples it rests on; no advice (and the reason)
        under ``min_samples`` successes. An attempt a timeout cut off counts as slower than every
        success (``timeouts`` says how many; the longest ran ``cut_at_s``): when the quantile falls
        among them it is unknown, and so is the advice (the ``note`` says to raise the timeout to
        measure). A run deadline per workflow is in ``.attrs["run_deadline_s"]``."""
        self._need("advise_timeouts", "run_id", "latency_s", "started_at", "ended_at", *OUTCOME_COLUMNS)
        from wfkit.logs._advice import advise_timeouts

        return advise_timeouts(
            self._df, quantile=quantile, margin=margin, min_samples=min_samples, min_timeout=min_timeout
        )

    def predict_timeouts(
        self,
        timeouts: Mapping[str, float] | Mapping[tuple[str, str], float] | pd.Series,
        *,
        retry: dict[str, RetryPolicy] | RetryPolicy | None = None,
        deadline: float | None = None,
        runs: int = 20_000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Monte Carlo over the observed latencies of one workflow: predicted timeout and failure
        rates per step and for whole runs (serial steps compound). ``timeouts`` maps a step (or
        (workflow, step), as ``advise_timeouts()["timeout_s"]`` does) to seconds. A draw of an
        attempt a timeout cut off times out again at a timeout it ran to; at a longer one whether it
        finishes is unknown: it counts as a timeout (the worst case), in ``unknown_rate`` too, and
        the ``note`` says so. A failed attempt no timeout cut is not a call: each simulated visit
        first meets the errors an observed visit met, as the run did (their time spent, each
        retried as ``retry`` says of its kind), then calls. A cache hit is no call either: visits
        are served from the step cache as often as observed, with no attempt and no timeout."""
        self._need("predict_timeouts", "run_id", "latency_s", "started_at", "ended_at", "visit", "error_kind")
        from wfkit.logs._advice import predict_timeouts

        return predict_timeouts(self._df, timeouts, retry=retry, deadline=deadline, runs=runs, seed=seed)
