"""The step-log export process: exports finished runs to parquet for the process that ran them.

Why a process: an export is Python that holds the interpreter (reading journal rows, building
arrow arrays), some 3 ms of it per finished 5-step run. In the process that ran them, a burst of
500 finished runs took more than a second of the interpreter from the runs still executing, and
their recorded step latencies grew by it (benchmark F1: durable P50 13-17 ms with exports switched
off, 21-23 ms with exports in a background thread). Here it takes the interpreter nothing, and at
the lowest CPU priority (:func:`lowest_priority`), only a core's idle time. Measured, a heartbeat
on the event loop (1 ms sleeps) while 500 finished runs were exported: up to 3.6-6.3 ms late with
the export in a thread, up to 1.1-1.4 ms with it here.

The exporter (:class:`wfkit.logs._steplog.Exporter`) starts one per process on its first
background export (``python -m wfkit.logs._export_process``: it imports this module, never the
other way round) and talks to it over pipes, one JSON line each way per request::

    -> {"db": "<store file>", "synchronous": "FULL", "workspace": "<folder>", "runs": ["<run id>", ...]}
    <- {"rows": 120, "exported": {"<run id>": <last seq>}, "segments": [["<temporary>", "<final path>"], ...],
        "failed": {"<run id>": "<what went wrong>"}}

It only reads the store, and leaves the segments it writes under temporary names (durable when it
answers): the process that asked renames them into place and records them in the ledger
(``exported``) through its own store's writer, or drops them if a reader took these runs over
meanwhile (a reader never waits for this process, which a busy machine may leave off the CPU for
minutes). So nothing this process does late can replace or delete a segment a reader wrote. A process at the
lowest priority that held the store's write lock could keep every run of that process waiting for
its checkpoints, for as long as the scheduler left it off the CPU.

It exits when its standard input closes: when the exporter closes it at exit, or when the process
that started it dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from wfkit.logs._steplog import export_each, hand_temporaries_to
from wfkit.store._store import Store


def lowest_priority() -> None:
    """Take only the CPU time the runs leave idle: on Linux the ``SCHED_IDLE`` policy, elsewhere
    nice 19 (what a platform does not allow is left as it is).

    Why ``SCHED_IDLE`` and not nice 19 alone: a niced process is still a peer that a waking thread
    has to wait behind. In benchmark F1 (500 durable runs, whose event loop and store writer keep
    both cores of a 2-core machine busy), the event loop's thread waited 29 to 140 ms per batch of
    runs in the CPU's run queue behind a niced export process (``/proc/<pid>/task/<tid>/schedstat``,
    6 batches each way), against 0.3 to 8.5 ms (once 27) with ``SCHED_IDLE``, which any waking
    thread preempts at once; the writer's 29 to 141 ms against 2 to 21 ms. Waiting in the run queue
    is time a step's sleep has ended but its run cannot go on: it lands in recorded latencies."""
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(19)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _export(store: Store, workspace: Path, run_ids: Sequence[str]) -> dict[str, Any]:
    """The reply to one request: :func:`export_each`, its files left for the asking process to place."""
    exported: dict[str, int] = {}
    segments: list[tuple[str, str]] = []

    def record(marks: Mapping[str, int], written: Sequence[tuple[str, str]]) -> None:
        exported.update(marks)
        segments.extend(written)

    rows, failed = export_each(store, workspace, run_ids, record)
    return {"rows": rows, "exported": exported, "segments": segments, "failed": failed}


def serve(requests: Iterable[str], replies: IO[str]) -> None:
    """Answer each request line of ``requests`` with a reply line on ``replies``, until EOF."""
    stores: dict[tuple[str, str], Store] = {}
    try:
        for line in requests:
            request = json.loads(line)
            reply: dict[str, Any]
            for gone in [k for k, s in stores.items() if not s.path.exists()]:  # a deleted workspace
                stores.pop(gone).close()
            try:
                key = (request["db"], request["synchronous"])
                store = stores.get(key)
                if store is None:
                    store = stores[key] = Store(Path(key[0]), synchronous=key[1], create=False)
                reply = _export(store, Path(request["workspace"]), request["runs"])
            except Exception as exc:  # the store cannot be opened at all: the parent exports them itself
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            try:
                replies.write(json.dumps(reply) + "\n")
                replies.flush()
            except BrokenPipeError:  # the process that asked is gone: nobody to answer
                return
    finally:
        for store in stores.values():
            store.close()


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group: the process that started this one
    # decides when it ends (it closes the pipe), and an export is never cut off halfway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Its files are renamed into place by the process that started it: theirs, for whoever sweeps.
    hand_temporaries_to(os.getppid())
    lowest_priority()
    serve(sys.stdin, sys.stdout)
    # Every reply is flushed and the stores are closed: nothing is left to tear down. The
    # interpreter's own teardown (pyarrow, pandas: some 0.2 s of CPU) at the lowest priority
    # lasted as long as other processes kept the CPUs busy, past the 30 s the exporter's close
    # waits at the asking process's exit, which then had to kill it.
    os._exit(0)
