"""Step logs as DataFrames: ``wfkit.steps(...)`` and the ``df.wf`` accessor.

The accessor gives the summaries people ask of agent runs: latency percentiles per step (the long
tail, not the mean), failure rates by error kind, retries, tokens and cost, run-level latency;
and the plots and timeout advice built on them (``_plots.py``, ``_advice.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd
    from matplotlib.figure import Figure

    from wfkit.model._retry import RetryPolicy

logger = logging.getLogger("wfkit")

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
ERROR_KINDS: tuple[str, ...] = ("transient", "permanent", "unknown")
_REQUIRED = ("run_id", "step", "attempt", "status", "latency_s", "started_at", "ended_at")


def steps(
    path: str | os.PathLike[str] | None = None,
    *,
    workflow: str | Sequence[str] | None = None,
    run_id: str | Sequence[str] | None = None,
    step: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
) -> pd.DataFrame:
    """The step log as a DataFrame, one row per attempt.

    ``path`` is a workspace (default ``$WFKIT_HOME`` or ``./.wfkit``), a folder of segment files,
    or one parquet file. Reading a workspace first exports any rows the journal holds that are not
    in parquet yet (after a crash, or runs that just ended). Filters are pushed down to the files.
    """
    from wfkit.logs._steplog import check_ledger, dataset_schema, export_pending, exporter, read_steps, steps_dir
    from wfkit.model._errors import StoreCorruptError, WorkspaceNotFoundError
    from wfkit.store._workspace import DB_NAME, open_store, workspace_path

    register_accessor()
    root = workspace_path(path) if path is None else Path(path)
    filters: dict[str, Any] = {
        "workflow": workflow,
        "run_id": run_id,
        "step": step,
        "status": status,
        "since": since,
        "until": until,
    }
    if not root.exists():
        raise WorkspaceNotFoundError(
            f"no workspace or step log at {root}; check the path (a workspace folder, a folder of "
            f"segment files, or one .parquet file). A workspace is created by the first run in it: "
            f"flow.run(inputs, workspace={str(root)!r})"
        )
    if not (root.is_dir() and (root / DB_NAME).exists()):
        return read_steps(root, **filters)
    workspace = root
    store = open_store(workspace, create=False)
    exporter.flush()
    export_pending(store, workspace)
    check_ledger(store, workspace)  # a missing segment is written again from the journal
    root = steps_dir(workspace)
    if not root.exists():
        return dataset_schema().empty_table().to_pandas()
    try:
        return read_steps(root, **filters)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        report = check_ledger(store, workspace, deep=True)
        if not report.moved:
            raise StoreCorruptError(
                f"the step log under {root} cannot be read ({exc}), and no damaged segment was found "
                f"to rebuild; run `wfkit doctor --workspace {workspace}`",
                path=str(root),
            ) from exc
        logger.warning(
            "wfkit: moved %d damaged step-log segment(s) to %s and rebuilt them from the journal",
            len(report.moved),
            report.moved[0][1].parent,
        )
        return read_steps(root, **filters)


_registered = False


def register_accessor() -> None:
    """Make ``df.wf`` available on DataFrames (done by :func:`steps`; idempotent)."""
    global _registered
    if _registered:
        return
    import pandas as pd

    pd.api.extensions.register_dataframe_accessor("wf")(StepsAccessor)
    _registered = True


class StepsAccessor:
    """``df.wf``: summaries, plots and timeout advice for a step-log DataFrame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        missing = [c for c in _REQUIRED if c not in frame.columns]
        if missing:
            raise AttributeError(
                f"df.wf needs a step-log frame (from wfkit.steps()); missing columns: {', '.join(missing)}"
            )
        self._df = frame

    @property
    def attempts(self) -> pd.DataFrame:
        """Rows that are step attempts (approval decisions, attempt 0, left out)."""
        return self._df[self._df["attempt"] > 0]

    # ---- tables --------------------------------------------------------------------------------

    def latency(self, by: str | Sequence[str] = "step", quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
        """Latency percentiles per ``by`` (seconds): p50, p90, p95, p99, max, mean and count."""
        import pandas as pd

        rows = self.attempts
        grouped = rows.groupby(by, observed=True, sort=True)["latency_s"]
        table = grouped.quantile(list(quantiles)).unstack().reindex(columns=list(quantiles))
        table.columns = [f"p{round(q * 100):d}" if q * 100 == round(q * 100) else f"p{q * 100:g}" for q in quantiles]
        table = pd.concat([table, grouped.agg(["max", "mean", "count"])], axis=1)
        table["count"] = table["count"].astype("int64")
        return table

    def failures(self, by: str | Sequence[str] = "step") -> pd.DataFrame:
        """Attempts, failed attempts by error kind, and the failure rate per ``by``."""
        import pandas as pd

        keys = [by] if isinstance(by, str) else list(by)
        rows = self.attempts
        table = rows.groupby(keys, observed=True).size().to_frame("attempts")
        # Count failed attempts per kind on the (few) failed rows only: 10M rows stay fast.
        failed = rows[rows["error_kind"].isin(ERROR_KINDS)]
        per_kind = failed.groupby([*keys, failed["error_kind"].astype(str)], observed=True).size()
        per_kind = per_kind.unstack(fill_value=0) if len(per_kind) else pd.DataFrame(index=table.index)
        for kind in ERROR_KINDS:
            table[kind] = per_kind[kind].reindex(table.index, fill_value=0).astype("int64") if kind in per_kind else 0
        table["failed"] = table[list(ERROR_KINDS)].sum(axis=1)
        table["failure_rate"] = table["failed"] / table["attempts"]
        timeouts = rows[rows["status"] == "timeout"].groupby(keys, observed=True).size()
        table["timeouts"] = timeouts.reindex(table.index, fill_value=0).astype("int64")
        table.columns.name = None
        return table

    def retries(self, by: str = "step") -> pd.DataFrame:
        """Retries per step visit: total, mean and max per ``by`` ("step" or "run_id")."""
        rows = self.attempts
        per_visit = rows.groupby(["run_id", "step", "visit"], observed=True)["attempt"].max() - 1
        per_visit = per_visit.reset_index(name="retries")
        table = per_visit.groupby(by, observed=True)["retries"].agg(["sum", "mean", "max"])
        return table.rename(columns={"sum": "retries", "mean": "mean_per_visit", "max": "max_per_visit"})

    def cost(self, by: str | Sequence[str] = "run_id") -> pd.DataFrame:
        """Tokens in and out, cost in USD, and model calls per ``by`` ("run_id" or "step")."""
        rows = self.attempts
        table = rows.groupby(by, observed=True).agg(
            tokens_in=("tokens_in", "sum"),
            tokens_out=("tokens_out", "sum"),
            cost_usd=("cost_usd", "sum"),
            calls=("model", "count"),
        )
        table[["tokens_in", "tokens_out"]] = table[["tokens_in", "tokens_out"]].fillna(0).astype("int64")
        return table

    def runs(self) -> pd.DataFrame:
        """One row per run: workflow, start, end, duration, steps done, attempts, failures."""
        frame = self._df.assign(
            # An attempt followed by another (a retry, or a timeout that is retried) has a delay.
            _retried=self._df["retry_delay_s"].notna() if "retry_delay_s" in self._df else False,
        )
        frame["_failed"] = frame["status"].isin(["failed", "timeout"]) & ~frame["_retried"]
        agg: dict[str, Any] = {
            "start": ("started_at", "min"),
            "end": ("ended_at", "max"),
            "attempts": ("attempt", lambda a: int((a > 0).sum())),
            "steps_ok": ("status", lambda s: int((s == "ok").sum())),
            "failed": ("_failed", "sum"),
            "retries": ("_retried", "sum"),
        }
        if "workflow" in frame.columns:
            agg["workflow"] = ("workflow", "first")
        table = frame.groupby("run_id", observed=True, sort=False).agg(**agg)
        table["duration_s"] = (table["end"] - table["start"]).dt.total_seconds()
        return table.sort_values("start")

    def run_latency(self, quantiles: Sequence[float] = QUANTILES) -> pd.Series:
        """Percentiles of whole-run duration (seconds)."""
        durations = self.runs()["duration_s"]
        result = durations.quantile(list(quantiles))
        result.index = [f"p{round(q * 100):d}" for q in quantiles]
        result["max"] = durations.max()
        result["count"] = float(len(durations))
        return result

    # ---- plots ---------------------------------------------------------------------------------

    def plot_latency(self, step: str | None = None) -> Figure:
        """Latency distribution per step: log-scaled histogram and ECDF, P50 and P99 marked."""
        from wfkit.logs._plots import plot_latency

        return plot_latency(self.attempts, step=step)

    def plot_timeline(self, run_id: str | None = None) -> Figure:
        """A run's timeline: one lane per step, retries and approval waits visible."""
        from wfkit.logs._plots import plot_timeline

        return plot_timeline(self._df, run_id=run_id)

    def plot_failures(self) -> Figure:
        """Failed attempts per step, stacked by error kind."""
        from wfkit.logs._plots import plot_failures

        return plot_failures(self.failures())

    def compare(self, candidate: pd.DataFrame, labels: tuple[str, str] = ("baseline", "candidate")) -> Figure:
        """Baseline (this frame) against ``candidate``: P50 and P99 per step, side by side."""
        from wfkit.logs._plots import plot_compare

        return plot_compare(self.latency(), candidate.wf.latency(), labels)

    # ---- timeouts ------------------------------------------------------------------------------

    def advise_timeouts(self, quantile: float = 0.99, margin: float = 1.5) -> pd.DataFrame:
        """Per-step timeouts at ``quantile`` of observed latency times ``margin``, and a run
        deadline (in ``.attrs["run_deadline_s"]``) at the same quantile of run duration."""
        from wfkit.logs._advice import advise_timeouts

        return advise_timeouts(self._df, quantile=quantile, margin=margin)

    def predict_timeouts(
        self,
        timeouts: dict[str, float],
        *,
        retry: dict[str, RetryPolicy] | RetryPolicy | None = None,
        deadline: float | None = None,
        runs: int = 20_000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Monte Carlo over the observed latencies: predicted timeout and failure rates per step
        and for whole runs (serial steps compound: the article's second mistake)."""
        from wfkit.logs._advice import predict_timeouts

        return predict_timeouts(self._df, timeouts, retry=retry, deadline=deadline, runs=runs, seed=seed)
