"""Many runs of one workflow over a list of inputs: ``flow.run_many(inputs, executor=...)``.

Locally (no executor) the runs share this process's event loop with at most ``concurrency`` at
once and are kept in the workspace like any run. With ``executor=`` (a ``distributed.Client``, a
cluster, or a scheduler address) the inputs go to Dask workers in partitions; each worker runs its
partition on an event loop of its own with the same bound, and the runs' step logs land in
``dataset``. Either way the answer is a :class:`BatchResult`: one row per input, in input order.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Unpack

from wfkit._jupyter import progress_bar
from wfkit.engine._run import _BATCH_KEYS, BatchRunOptions, _Options
from wfkit.model._suggest import misnamed
from wfkit.store._codec import decode_state, encode_state
from wfkit.store._workspace import workspace_path

if TYPE_CHECKING:
    import pandas as pd

    from wfkit.distributed._dask import Executor, PartitionOutput, Progress

COLUMNS = ("index", "run_id", "status", "error_type", "error", "state", "started_at", "ended_at")


class _Runnable(Protocol):
    """What run_many needs of a workflow (the Workflow class; named here to keep layers apart)."""

    name: str
    inputs: tuple[str, ...] | None

    @property
    def arun(self) -> Callable[..., Awaitable[Any]]: ...


class BatchResult:
    """The runs of one ``run_many``: ``runs`` has a row per input (``index`` is its position),
    with the run's id, status, error and final ``state``; ``steps()`` reads their step log.
    ``dataset`` is where that log is (None: the runs were kept in memory, ``workspace=False``)."""

    def __init__(self, workflow: str, runs: pd.DataFrame, dataset: str | None) -> None:
        self.workflow = workflow
        self.runs = runs
        self.dataset = dataset

    def steps(self) -> pd.DataFrame:
        """The step-log rows of these runs (one per attempt), from the workspace or the dataset."""
        from wfkit.logs._steplog import steps

        if self.dataset is None:
            raise ValueError(
                f"the runs of this batch of {self.workflow!r} were kept in memory (workspace=False), so no step "
                f"log was written: run them with run_many(..., workspace=FOLDER) (or the default workspace) to "
                f"read their steps; each run's status, error and final state are in .runs"
            )
        return steps(self.dataset, run_id=list(self.runs["run_id"]))

    def __repr__(self) -> str:
        counts = self.runs["status"].value_counts().to_dict() if len(self.runs) else {}
        told = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return f"<BatchResult {self.workflow}: {len(self.runs)} runs ({told or 'none'})>"

    def _repr_html_(self) -> str:
        import html

        return f"<b>{html.escape(repr(self))}</b>" + str(self.runs.drop(columns=["state"]).to_html(max_rows=20))


async def _run_inputs(
    flow: _Runnable,
    inputs: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    concurrency: int,
    seed: int,
    options: Mapping[str, Any],
    on_run: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run each input (with its position: the run's seed is ``seed + position``), at most
    ``concurrency`` at once. The same code runs a local batch and a Dask partition.

    ``on_run(1)`` as each run ends, and ``on_run(0)`` as each starts: a Dask partition whose job was
    given up raises there (``Progress``), before the run makes a call. Only after each run would be
    too late: the run ending lets the next one through the gate, and it starts before the raise
    ends the partition."""
    gate = asyncio.Semaphore(concurrency)
    rows: list[dict[str, Any]] = []

    async def one(index: int, values: Mapping[str, Any]) -> None:
        async with gate:
            if on_run is not None:
                on_run(0)
            run = await flow.arun(values, **{"seed": seed + index, "raise_on_error": False, **options})
            error = run.error
            rows.append(
                {
                    "index": index,
                    "run_id": run.run_id,
                    "status": str(run.status),
                    "error_type": None if error is None else type(error).__name__,
                    "error": None if error is None else str(error),
                    # JSON: the state crosses processes, and a run's state is JSON already (the store).
                    "state": encode_state("the run's final", run.state),  # types kept across processes
                    "started_at": run.started_at,
                    "ended_at": run.ended_at,
                }
            )
        if on_run is not None:
            on_run(1)

    await asyncio.gather(*(one(i, v) for i, v in inputs))
    return rows


@dataclass(frozen=True)
class _BatchPartition:
    """One partition of a batch, run on a Dask worker."""

    flow: _Runnable
    inputs: tuple[tuple[int, Mapping[str, Any]], ...]
    concurrency: int
    seed: int
    options: Mapping[str, Any]

    def __call__(self, scratch: Path, progress: Progress) -> PartitionOutput:
        from wfkit.distributed._dask import PartitionOutput

        options = {**self.options, "workspace": scratch}
        rows = asyncio.run(
            _run_inputs(
                self.flow, self.inputs, concurrency=self.concurrency, seed=self.seed, options=options, on_run=progress
            )
        )
        return PartitionOutput(rows, (scratch,))

    def describe(self) -> str:
        return f"runs of workflow {self.flow.name!r} for inputs {', '.join(str(i) for i, _ in self.inputs)}"

    def at_most_once(self) -> str | None:
        from wfkit.model._steps import irreversible_steps

        steps = irreversible_steps(getattr(self.flow, "steps", {}))
        if not steps:
            return None
        return f"{self.describe()}, whose step(s) {', '.join(map(repr, steps))} are irreversible"


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("index", ignore_index=True)
    frame["state"] = [decode_state(s) for s in frame["state"]]
    for column in ("started_at", "ended_at"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def _check_is_a_list_of_inputs(inputs: object) -> None:
    """``inputs`` is a collection of runs' inputs, not one run's: iterated, a dict gives its keys and
    a DataFrame its column names, each then refused as "input 0 is a str", which says nothing of
    what was given."""
    pandas = sys.modules.get("pandas")  # not imported: no frame was made
    if pandas is not None and isinstance(inputs, pandas.DataFrame):
        raise TypeError(
            "run_many takes a list of inputs, a dict per run, and was given a DataFrame: pass "
            "frame.to_dict('records'), a dict per row"
        )
    if isinstance(inputs, Mapping):
        raise TypeError(
            f"run_many takes a list of inputs, a dict per run, and was given one dict ({_shown(inputs)}): pass "
            f"[inputs] for one run, or a list of such dicts"
        )
    if isinstance(inputs, str | bytes):
        raise TypeError(f"run_many takes a list of inputs, a dict per run, and was given a {type(inputs).__name__}")


def _check_declared_inputs(flow: _Runnable, items: Sequence[Mapping[str, Any]]) -> None:
    """Every input holds what the workflow declares, checked for all before any run starts: else
    the run of the first input lacking one raises when its turn comes, ending the batch with the
    rows of the runs already made lost, and naming no input."""
    declared = flow.inputs or ()
    lacking = [(i, [k for k in declared if k not in values]) for i, values in enumerate(items)]
    lacking = [(i, missing) for i, missing in lacking if missing]
    if not lacking:
        return
    shown = "; ".join(
        f"input {i} lacks {', '.join(map(repr, missing))}{misnamed(items[i], missing)}" for i, missing in lacking[:5]
    )
    more = f"; and {len(lacking) - 5} more" if len(lacking) > 5 else ""
    count = f"{len(lacking)} of {len(items)} inputs lack" if len(lacking) > 1 else f"1 of {len(items)} inputs lacks"
    raise ValueError(
        f"run_many: {count} what workflow {flow.name!r} declares ({', '.join(map(repr, declared))}): {shown}{more}. "
        f"Give every input the fields its workflow declares (or drop them from Workflow(..., inputs=...)); no run "
        f"was started"
    )


def _shown(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def run_many(
    flow: _Runnable,
    inputs: Iterable[Mapping[str, Any]],
    *,
    executor: Executor | None = None,
    concurrency: int = 16,
    seed: int = 0,
    workspace: str | os.PathLike[str] | Literal[False] | None = None,
    dataset: str | os.PathLike[str] | None = None,
    partition_size: int | None = None,
    retries: int = 2,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
    **options: Unpack[BatchRunOptions],
) -> BatchResult:
    """Run ``flow`` once per input; see :class:`BatchResult`. ``options`` go to every run
    (``timeout``, ``policy``, ``llm``, ``tools``...). ``workspace=False`` keeps the runs in memory,
    as it keeps one run (locally only: Dask workers write their step logs to ``dataset=``)."""
    from wfkit.engine._loops import run_blocking

    _check_is_a_list_of_inputs(inputs)
    items = list(inputs)
    for position, values in enumerate(items):
        if not isinstance(values, Mapping):
            raise TypeError(f"input {position} is a {type(values).__name__}; each input is a dict of a run's inputs")
        # What a run refuses as its inputs (a lock, an open file...), refused here for all of them:
        # not as the error of the batch's hundredth run, nor, sent to Dask, as a pickling error
        # of a partition, nor on a worker, retried.
        encode_state(f"run_many input {position}:", values)
    _check_declared_inputs(flow, items)
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if "raise_on_error" in options or "run_id" in options:
        raise TypeError(
            "run_many names each run itself, keeps runs in workspace= (or dataset= with executor=) and never "
            "raises a run's error: drop raise_on_error= and run_id= (read result.runs for each run's status)"
        )
    _Options.of("run_many", options, _BATCH_KEYS)  # a misspelt keyword fails here, not in every run
    indexed = list(enumerate(items))
    if executor is None:
        if dataset is not None:
            raise ValueError("dataset= is where Dask workers write; without executor= runs stay in the workspace")
        bar = progress_bar(len(items), desc=f"runs of {flow.name}", unit="run") if progress else None
        try:
            rows = run_blocking(
                _run_inputs(
                    flow,
                    indexed,
                    concurrency=concurrency,
                    seed=seed,
                    options={**options, "workspace": workspace},
                    on_run=None if bar is None else bar.update,
                )
            )
        finally:
            if bar is not None:
                bar.close()
        return BatchResult(flow.name, _frame(rows), None if workspace is False else str(workspace_path(workspace)))

    if workspace is False and dataset is None:
        raise ValueError(
            "workspace=False keeps runs in memory, but runs on Dask workers write their step logs to a folder "
            "every worker sees: pass dataset=FOLDER (or an fsspec URL), or a workspace, or drop executor= to "
            "run in this process"
        )

    from wfkit.distributed._dask import check_sendable, chunks, run_partitioned

    # Each option is pickled with the work: one that cannot be is named here, before connecting.
    check_sendable({f"workflow {flow.name!r}": flow, **{f"{name}=": value for name, value in options.items()}})
    outcome = run_partitioned(
        executor,
        dataset if dataset is not None else workspace_path(None if workspace is False else workspace),
        cases=len(items),
        split=lambda size: [
            _BatchPartition(flow, tuple(part), concurrency, seed, dict(options)) for part in chunks(indexed, size)
        ],
        size_of=lambda work: len(work.inputs),
        label=f"runs of {flow.name}",
        requested_size=partition_size,
        retries=retries,
        progress=progress,
        announce=announce,
    )
    rows = [] if outcome.results is None else outcome.results.to_pylist()
    return BatchResult(flow.name, _frame(rows), outcome.location.url)
