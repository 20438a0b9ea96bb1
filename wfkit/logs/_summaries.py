"""Summaries of the step log computed in place over its parquet files, by DuckDB.

``wfkit.steps()`` loads rows into pandas, which is what a question about particular runs wants;
a summary of millions of rows does not need them in memory. :class:`StepLog` hands each summary to
DuckDB as one query over the hive-partitioned dataset: only the columns the question reads, the
filters pushed into the scan, no sort unless the answer is ordered. The tables it returns are the
very tables the ``df.wf`` accessor computes in pandas for the same rows (same columns, same
(workflow, step) index, quantiles by linear interpolation in both), so a notebook can start from
either. ``wfkit report``, ``advise_timeouts`` on a workspace and the replay comparison use it.

Why DuckDB is a core dependency rather than an extra with a pandas fallback: the kernel is where
people summarise their step logs, and a fallback would be a second implementation of every
summary, 10-30x slower, that users would meet without knowing why their report crawls.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wfkit.logs._tables import ERROR_KINDS, KEYS, QUANTILES, check_window, in_run_order, parse_time, quantile_label

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

_TYPES = "{'workflow': 'VARCHAR', 'date': 'VARCHAR'}"
# The DuckDB types of the columns appended to the segment schema (``_steplog.schema``), for
# segments written before them.
_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
"""A size as DuckDB's memory_limit reads it."""
_LATER_TYPES = {
    "map_index": "INTEGER",
    "parent_run_id": "VARCHAR",
    "durable_wait_s": "DOUBLE",
    "model_latency_s": "DOUBLE",
    "ttft_s": "DOUBLE",
}
# A row of the filtered rows ``s`` that is not a map step's own row (wfkit.logs._tables.map_own_rows):
# an item's row, or a row of a step none of whose rows is an item's.
_NOT_MAP_OWN_ROW = "(map_index IS NOT NULL OR ({keys}) NOT IN (SELECT {keys} FROM s WHERE map_index IS NOT NULL))"

# Per run, the seconds it lay stopped between a crash, a failure or a cancellation and a resume, as
# wfkit.logs._tables._stopped_seconds computes them, in the same numbers.
_STOPPED = (
    "rel AS (SELECT run_id, seq, queue_s, retry_delay_s, "
    "epoch_us(started_at) - min(epoch_us(started_at)) OVER (PARTITION BY run_id) AS s0, "
    "epoch_us(coalesce(ended_at, started_at)) - min(epoch_us(started_at)) OVER (PARTITION BY run_id) AS e0, "
    "(ended_at IS NULL AND attempt > 0) AS cut, "
    "(status IN ('failed', 'timeout', 'cancelled') AND retry_delay_s IS NULL AND map_index IS NULL "
    "AND route_taken IS NULL) AS stop "
    "FROM s), "
    "marks AS (SELECT run_id, cut, lag(cut, 1, false) OVER (PARTITION BY run_id ORDER BY seq) AS prev_cut, "
    "coalesce(lag(stop, 1, false) OVER (PARTITION BY run_id ORDER BY seq), false) AS prev_stop, "
    "max(e0::DOUBLE + coalesce(retry_delay_s, 0) * 1e6) OVER (PARTITION BY run_id ORDER BY seq "
    "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before, "
    "min(CASE WHEN cut THEN NULL ELSE s0::DOUBLE - coalesce(queue_s, 0) * 1e6 END) OVER (PARTITION BY run_id "
    "ORDER BY seq ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS after FROM rel), "
    "stopped AS (SELECT run_id, sum(greatest(after - before, 0)) / 1e6 AS idle_s FROM marks "
    "WHERE ((cut AND NOT prev_cut) OR prev_stop) AND after IS NOT NULL AND before IS NOT NULL GROUP BY run_id)"
)


# True while a StepLog question is being answered (one question asks others: advise_timeouts asks
# latency and runs), or while wfkit asks one that says why an empty answer is empty itself (the report).
_ANSWERING: contextvars.ContextVar[bool] = contextvars.ContextVar("wfkit_steplog_answering", default=False)

_Question = TypeVar("_Question", bound=Callable[..., "pd.DataFrame"])


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """StepLog questions asked inside say nothing of an empty answer: for a caller that says why."""
    token = _ANSWERING.set(True)
    try:
        yield
    finally:
        _ANSWERING.reset(token)


def _warns_when_empty(question: _Question) -> _Question:
    """A StepLog question whose empty answer warns, as ``wf.steps`` does, when a filter is why: a
    workflow or step no row holds (the closest one named), or a ``since`` in the future."""

    @functools.wraps(question)
    def asked(self: StepLog, *args: Any, **kwargs: Any) -> pd.DataFrame:
        if _ANSWERING.get():
            return question(self, *args, **kwargs)
        with quietly():
            answer = question(self, *args, **kwargs)
            if answer.empty:
                self._warn_of_empty_answer()
        return answer

    return asked  # type: ignore[return-value]


class StepLog:
    """The step-log dataset on disk, summarised without loading it.

    ``path`` is a workspace (default ``$WFKIT_HOME`` or ``./.wfkit``; its pending rows are exported
    first), a folder of segment files, or one parquet file. The filters narrow every question.
    Each method reads the files as they are when it is called.

    ``memory_limit`` ("2GB", "512MB") bounds the memory DuckDB takes for a question; past it,
    DuckDB spills to the system's temporary folder. By default DuckDB takes up to 80% of RAM: the
    retries table of 100M rows peaked at 11 GB by default and ran as fast within 2 GB. A question
    that cannot spill (exact quantiles of more latencies than fit) fails saying so.

    A ``status`` no attempt can have is refused (``ValueError`` naming the statuses there are). An
    empty answer warns, as ``wf.steps`` does, when a filter explains it: a workflow or step no row
    of the log holds (naming the closest and those there are), or a ``since`` in the future.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        workflow: str | Sequence[str] | None = None,
        run_id: str | Sequence[str] | None = None,
        step: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        since: dt.datetime | str | None = None,
        until: dt.datetime | str | None = None,
        memory_limit: str | None = None,
    ) -> None:
        if memory_limit is not None and not (isinstance(memory_limit, str) and _SIZE.fullmatch(memory_limit)):
            raise ValueError(
                f"memory_limit={memory_limit!r} is not a size: give a number and a unit, such as '2GB' or '512MB'"
            )
        from wfkit.logs._steplog import check_statuses

        check_window(since, until)  # here, not at the first question: a window no row can meet answers nothing
        check_statuses(status)  # "error" or "success" would answer every question with nothing
        self.path = path
        self.memory_limit = memory_limit
        self._filters: dict[str, Any] = {
            "workflow": workflow,
            "run_id": run_id,
            "step": step,
            "status": status,
            "since": since,
            "until": until,
        }
        self._lock = threading.Lock()
        self._conn: duckdb.DuckDBPyConnection | None = None

    def __repr__(self) -> str:
        active = {k: v for k, v in self._filters.items() if v is not None}
        return f"StepLog({self.path!r}" + "".join(f", {k}={v!r}" for k, v in active.items()) + ")"

    # ---- plumbing ------------------------------------------------------------------------------

    def _warn_of_empty_answer(self) -> None:
        """After an empty answer: warn of each workflow or step filter value no row holds, and of a
        ``since`` in the future, in ``wf.steps``'s words (warnings point at the caller's line)."""
        import warnings

        from wfkit.logs._steplog import since_in_future, warn_of_absent
        from wfkit.logs._tables import parse_time

        root, files = self._files()
        if not files:
            return
        warn_of_absent(root, {"workflow": self._filters["workflow"], "step": self._filters["step"]}, stacklevel=4)
        since = self._filters["since"]
        if since is not None:
            given = f"since={since!r}" if isinstance(since, str) else f"since={since}"
            future = since_in_future(root, parse_time("since", since), given)
            if future:
                warnings.warn(future, stacklevel=3)

    def _files(self) -> tuple[Path, list[Path]]:
        from wfkit.logs._steplog import resolve_root, segment_files

        root = resolve_root(self.path)
        if not root.exists():
            return root, []
        return root, segment_files(root) if root.is_dir() else [root]

    def _where(self, extra: str = "") -> tuple[str, list[Any]]:
        """The filters as a WHERE clause with its parameters."""
        clauses = [extra] if extra else []
        params: list[Any] = []
        for name in ("workflow", "run_id", "step", "status"):
            value = self._filters[name]
            if value is None:
                continue
            values = [value] if isinstance(value, str) else list(value)
            clauses.append(f"{name} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
        for name, op in (("since", ">="), ("until", "<")):
            value = self._filters[name]
            if value is not None:
                clauses.append(f"started_at {op} ?")
                params.append(parse_time(name, value))
        return (" WHERE " + " AND ".join(f"({c})" for c in clauses) if clauses else ""), params

    def _attempts(self, condition: str = "", condition_params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        """The filtered rows that are step attempts and meet ``condition``, as a subquery named
        ``steps`` to read FROM, with its parameters. Not attempts: approval decisions (attempt 0)
        and a map step's own row (``wfkit.logs._tables.map_own_rows``); which steps are map steps
        the filtered rows tell, as the frame the accessor is given does."""
        where, params = self._where()
        source = (
            f"(WITH s AS NOT MATERIALIZED (SELECT * FROM steps{where}) SELECT * FROM s "
            f"WHERE attempt > 0 AND {_NOT_MAP_OWN_ROW}" + (f" AND ({condition})" if condition else "") + ") AS steps"
        )
        return source, [*params, *condition_params]

    def _query(self, sql: str, params: Sequence[Any]) -> tuple[pd.DataFrame | None, list[str]]:
        """Run ``sql`` (which reads the view ``steps``; ``{keys}`` stands for the grouping keys,
        ``{workflow}`` for a ``first(workflow)`` column where the files have one)
        and return its frame with the keys used; None when there are no files."""
        import duckdb

        from wfkit.logs._steplog import LATER_FIELDS

        _, files = self._files()
        if not files:
            return None, list(KEYS)
        with self._lock:
            if self._conn is None:
                # No progress bar: it would print into the notebook cell or the report's terminal.
                self._conn = duckdb.connect(":memory:")
                self._conn.execute("SET enable_progress_bar = false")
                # What spills goes to the system's temporary folder, not DuckDB's default of a
                # ``.tmp`` folder in the current one (the user's notebook folder).
                spill = os.path.join(tempfile.gettempdir(), "wfkit-duckdb")
                self._conn.execute(f"SET temp_directory = '{spill.replace(chr(39), chr(39) * 2)}'")
                if self.memory_limit is not None:
                    self._conn.execute(f"SET memory_limit = '{self.memory_limit}'")  # checked: a size
            conn = self._conn
            hive = "true" if any(p.startswith("workflow=") for p in files[0].parts) else "false"
            # A view takes no parameters: the paths go in as SQL string literals, quotes doubled.
            paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            source = (
                f"read_parquet([{paths}], hive_partitioning={hive}, union_by_name=true"
                + (f", hive_types={_TYPES}" if hive == "true" else "")
                + ")"
            )
            conn.execute("DROP VIEW IF EXISTS steps")
            conn.execute(f"CREATE TEMP VIEW steps AS SELECT * FROM {source}")
            columns = {row[0] for row in conn.execute("DESCRIBE steps").fetchall()}
            absent = [name for name in LATER_FIELDS if name not in columns]
            if absent:  # segments written before these columns were appended: nulls, as wf.steps reads them
                nulls = ", ".join(f"NULL::{_LATER_TYPES[name]} AS {name}" for name in absent)
                conn.execute(f"CREATE OR REPLACE TEMP VIEW steps AS SELECT *, {nulls} FROM {source}")
                columns.update(absent)
            keys = [k for k in KEYS if k in columns]
            workflow = ", first(workflow) AS workflow" if "workflow" in columns else ""
            frame = conn.execute(sql.format(keys=", ".join(keys), workflow=workflow), list(params)).df()
        return frame, keys

    def narrow(self, **filters: Any) -> StepLog:
        """The same log with these filters replacing (or adding to) its own: ``log.narrow(workflow="x")``."""
        unknown = sorted(set(filters) - set(self._filters))
        if unknown:
            raise TypeError(f"unknown filter(s) {', '.join(unknown)}; the filters are {', '.join(self._filters)}")
        return StepLog(self.path, **{**self._filters, **filters}, memory_limit=self.memory_limit)

    # ---- reading rows --------------------------------------------------------------------------

    def frame(self, columns: Sequence[str] | None = None, *, sort: bool | None = None) -> pd.DataFrame:
        """The rows themselves as a DataFrame (``wfkit.steps`` with these filters; the same ``sort``)."""
        from wfkit.logs._steplog import steps

        return steps(self.path, **self._filters, columns=columns, sort=sort)

    # ---- summaries -----------------------------------------------------------------------------

    @_warns_when_empty
    def latency(
        self, quantiles: Sequence[float] = QUANTILES, *, status: str | Sequence[str] | None = "ok"
    ) -> pd.DataFrame:
        """Latency percentiles per (workflow, step), as ``df.wf.latency()``: successful attempts by
        default, ``status=None`` for all."""
        from wfkit.logs._steplog import check_statuses

        check_statuses(status)
        labels = [quantile_label(q) for q in quantiles]
        extra = "latency_s IS NOT NULL AND NOT isnan(latency_s)"
        wanted: list[Any] = []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            extra += f" AND status IN ({', '.join('?' for _ in wanted)})"
        source, params = self._attempts(extra, wanted)
        sql = (
            "SELECT {keys}, quantile_cont(latency_s, ?::DOUBLE[]) AS q, max(latency_s) AS max, "
            "avg(latency_s) AS mean, count(latency_s) AS count "
            f"FROM {source} GROUP BY {{keys}} ORDER BY {{keys}}"
        )
        frame, keys = self._query(sql, [list(quantiles), *params])
        if frame is None:
            return _empty("latency", quantiles)
        quants = frame.pop("q")
        for i, label in enumerate(labels):
            frame.insert(len(keys) + i, label, [float(v[i]) for v in quants])
        frame["count"] = frame["count"].astype("int64")
        return self._in_run_order(frame.set_index(keys))

    def _in_run_order(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` with each workflow's steps in the order a run meets them, as the accessor lists them."""
        where, params = self._where()
        first, _ = self._query(
            f"SELECT {{keys}}, min(started_at) AS started_at FROM steps{where} GROUP BY {{keys}}", params
        )
        return table if first is None else in_run_order(table, first)

    @_warns_when_empty
    def failures(self) -> pd.DataFrame:
        """Attempts, failed attempts by error kind, failure rate and timeouts, as ``df.wf.failures()``."""
        kinds = ", ".join(f"count(*) FILTER (WHERE error_kind = '{k}') AS {k}" for k in ERROR_KINDS)
        source, params = self._attempts()
        sql = (
            f"SELECT {{keys}}, count(*) AS attempts, {kinds}, count(*) FILTER (WHERE status = 'timeout') AS timeouts "
            f"FROM {source} GROUP BY {{keys}} ORDER BY {{keys}}"
        )
        frame, keys = self._query(sql, params)
        if frame is None:
            return _empty("failures")
        frame = frame.set_index(keys)
        timeouts = frame.pop("timeouts")
        frame = frame.astype("int64")
        frame["failed"] = frame[list(ERROR_KINDS)].sum(axis=1).astype("int64")
        frame["failure_rate"] = frame["failed"] / frame["attempts"]
        frame["timeouts"] = timeouts.astype("int64")
        return self._in_run_order(frame)

    @_warns_when_empty
    def retries(self) -> pd.DataFrame:
        """Retries per step visit (a map item's own), as ``df.wf.retries()``."""
        source, params = self._attempts()
        sql = (
            "WITH visits AS (SELECT {keys}, run_id, visit, map_index, max(attempt) - 1 AS r "
            f"FROM {source} GROUP BY {{keys}}, run_id, visit, map_index) "
            "SELECT {keys}, sum(r)::BIGINT AS retries, avg(r) AS mean_per_visit, max(r)::BIGINT AS max_per_visit "
            "FROM visits GROUP BY {keys} ORDER BY {keys}"
        )
        frame, keys = self._query(sql, params)
        if frame is None:
            return _empty("retries")
        return self._in_run_order(frame.set_index(keys))

    @_warns_when_empty
    def errors(self, *, top: int | None = None) -> pd.DataFrame:
        """Failed attempts by (workflow, step), kind, type and message, commonest first, as
        ``df.wf.errors()``."""
        kinds = ", ".join(f"'{k}'" for k in ERROR_KINDS)
        source, params = self._attempts(f"error_kind IN ({kinds}) OR status IN ('failed', 'timeout')")
        text = "coalesce(error_kind, '') AS error_kind, coalesce(error_type, '') AS error_type, " + (
            "coalesce(error_message, '') AS error_message"
        )
        limit = f" LIMIT {int(top)}" if top is not None else ""
        sql = (
            f"SELECT {{keys}}, {text}, count(*) AS count, count(DISTINCT run_id) AS runs, "
            f"arg_max(run_id, started_at) AS last_run, max(started_at) AS last FROM {source} "
            "GROUP BY ALL ORDER BY count DESC, last DESC" + limit
        )
        frame, keys = self._query(sql, params)
        if frame is None:
            return _empty("errors")
        for name in ("error_kind", "error_type", "error_message", "last_run"):
            frame[name] = frame[name].astype("string")
        frame["last"] = frame["last"].dt.tz_convert("UTC")
        return frame.set_index([*keys, "error_kind", "error_type", "error_message"])

    @_warns_when_empty
    def runs(self) -> pd.DataFrame:
        """One row per run, as ``df.wf.runs()`` (start, end, attempts, steps_ok, failed, retries,
        workflow, span_s, duration_s, fell_back, run_failed, failed_on_timeout), in start order."""
        where, params = self._where()
        gave_up = "status IN ('failed', 'timeout') AND retry_delay_s IS NULL"
        # How the run ended (see wfkit.logs._tables.runs_table): a step that gave up with no
        # fallback (a step's row, not a map item's) fails the run unless the run was resumed past
        # it: a later row of that step visit. Asked of those few rows alone (an anti-join), not
        # through a window over every row of the log: 2.4x less time on 10M rows. It failed on a
        # timeout when that row timed out, or (a map step's row) an item of its visit gave up on one
        # before it.
        sql = (
            f"WITH s AS NOT MATERIALIZED (SELECT * FROM steps{where}), "
            "ended AS (SELECT g.run_id, bool_or(g.status = 'timeout' OR EXISTS (SELECT 1 FROM s i "
            "WHERE i.run_id = g.run_id AND i.step = g.step AND i.visit = g.visit AND i.map_index IS NOT NULL "
            "AND i.status = 'timeout' AND i.retry_delay_s IS NULL AND i.seq < g.seq)) AS on_timeout FROM s g "
            f"WHERE g.{gave_up.replace(' AND ', ' AND g.')} AND g.map_index IS NULL AND g.route_taken IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM s later WHERE later.run_id = g.run_id AND later.step = g.step "
            "AND later.visit = g.visit AND later.map_index IS NULL AND later.seq > g.seq) GROUP BY g.run_id), "
            + _STOPPED
            + " "
            'SELECT s.run_id, min(started_at) AS start, max(ended_at) AS "end", '
            f"count(*) FILTER (WHERE attempt > 0 AND {_NOT_MAP_OWN_ROW}) AS attempts, "
            "count(*) FILTER (WHERE status = 'ok' AND map_index IS NULL) AS steps_ok, "
            f"count(*) FILTER (WHERE {gave_up} AND map_index IS NULL) AS failed, "
            "count(*) FILTER (WHERE retry_delay_s IS NOT NULL) AS retries, "
            f"count(*) FILTER (WHERE {gave_up} AND map_index IS NULL AND route_taken IS NOT NULL) AS fell_back, "
            "(any_value(ended.run_id) IS NOT NULL OR arg_max(status, seq) = 'rejected') AS run_failed, "
            "coalesce(any_value(ended.on_timeout), false) AS failed_on_timeout, "
            "coalesce(any_value(stopped.idle_s), 0) AS idle_s{workflow} "
            "FROM s LEFT JOIN ended ON ended.run_id = s.run_id LEFT JOIN stopped ON stopped.run_id = s.run_id "
            "GROUP BY s.run_id ORDER BY start, s.run_id"
        )
        frame, _ = self._query(sql, params)
        if frame is None:
            return _empty("runs")
        for name in ("start", "end"):
            frame[name] = frame[name].dt.tz_convert("UTC")
        for name in ("attempts", "steps_ok", "failed", "retries", "fell_back"):
            frame[name] = frame[name].astype("int64")
        for name in ("run_failed", "failed_on_timeout"):
            frame[name] = frame[name].astype(bool)
        frame["span_s"] = (frame["end"] - frame["start"]).dt.total_seconds()
        frame["duration_s"] = frame["span_s"] - frame.pop("idle_s")
        outcome = ["fell_back", "run_failed", "failed_on_timeout"]
        return frame[[c for c in frame.columns if c not in outcome] + outcome].set_index("run_id")

    @_warns_when_empty
    def advise_timeouts(
        self, quantile: float = 0.99, margin: float = 1.5, *, min_samples: int = 20, min_timeout: float = 0.1
    ) -> pd.DataFrame:
        """Timeout advice per (workflow, step), as ``df.wf.advise_timeouts()``, from the files."""
        from wfkit.logs._advice import advice_table, censored_quantiles, check_advice_args, run_durations

        check_advice_args(quantile, margin, min_samples, min_timeout)
        quantiles = sorted({0.5, quantile})
        stats = self.latency(quantiles, status="ok")
        # The attempts a timeout cut off: how many, and the longest any of them ran.
        source, params = self._attempts("status = 'timeout' AND latency_s IS NOT NULL AND NOT isnan(latency_s)")
        sql = (
            "SELECT {keys}, count(*) AS timeouts, max(latency_s) AS cut_at_s "
            f"FROM {source} GROUP BY {{keys}} ORDER BY {{keys}}"
        )
        cut, keys = self._query(sql, params)
        cut = cut.set_index(keys) if cut is not None else stats.iloc[:0, :0].assign(timeouts=0, cut_at_s=0.0)

        def successes_at(key: tuple[str, ...], qs: list[float]) -> list[float]:
            group = self.narrow(**dict(zip(keys, key, strict=True)))
            source, params = group._attempts("status = 'ok' AND latency_s IS NOT NULL AND NOT isnan(latency_s)")
            found, _ = group._query(f"SELECT quantile_cont(latency_s, ?::DOUBLE[]) AS q FROM {source}", [qs, *params])
            assert found is not None  # the group has successes, in files that are there
            return [float(v) for v in found["q"].iloc[0]]

        stats = censored_quantiles(stats, cut, quantiles, successes_at)
        durations = run_durations(self.runs())
        table = advice_table(
            stats, durations, quantile=quantile, margin=margin, min_samples=min_samples, min_timeout=min_timeout
        )
        return self._in_run_order(table)

    def close(self) -> None:
        """Close the DuckDB connection (a new one opens on the next question)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _empty(name: str, quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
    """What the accessor answers for an empty log: the same columns, no rows."""
    from wfkit.logs._register import register_accessor
    from wfkit.logs._steplog import dataset_schema

    register_accessor()
    frame = dataset_schema().empty_table().to_pandas()
    if name == "latency":
        return frame.wf.latency(quantiles=quantiles)
    table: pd.DataFrame = getattr(frame.wf, name)()
    return table
