"""The step-log export process: exports finished runs to parquet for the process that ran them.

Why a process: an export is Python that holds the interpreter (reading journal rows, building
arrow arrays), some 3 ms of it per finished 5-step run. In the process that ran them, a burst of
500 finished runs took more than a second of the interpreter from the runs still executing, and
their recorded step latencies grew by it (benchmark F1: durable P50 13-17 ms with exports switched
off, 21-23 ms with exports in a background thread). Here it takes the interpreter nothing, and at
the lowest CPU priority, only a core's idle time. Measured, a heartbeat on the event loop (1 ms
sleeps) while 500 finished runs were exported: up to 3.6-6.3 ms late with the export in a thread,
up to 1.1-1.4 ms with it here. On a 2-core machine whose cores the runs keep busy (the loop and the
store's writer), the process still takes some CPU from them: F1's durable P99 came out lower
(33-37 ms against 42-61), its P50 no better.

The exporter (:class:`wfkit.logs._steplog.Exporter`) starts one per process on its first
background export (``python -m wfkit.logs._export_process``: it imports this module, never the
other way round) and talks to it over pipes, one JSON line each way per request::

    -> {"db": "<store file>", "synchronous": "FULL", "workspace": "<folder>", "runs": ["<run id>", ...]}
    <- {"rows": 120, "exported": {"<run id>": <last seq>}, "failed": {"<run id>": "<what went wrong>"}}

It only reads the store: the segments it writes are durable when it answers, and the process that
asked records them in the ledger (``exported``) through its own store's writer. A process at the
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
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from wfkit.logs._steplog import export_each
from wfkit.store._store import Store


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
                exported: dict[str, int] = {}
                rows, failed = export_each(store, Path(request["workspace"]), request["runs"], exported.update)
                reply = {"rows": rows, "exported": exported, "failed": failed}
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
    # The lowest CPU priority: on a machine whose cores the runs keep busy (the event loop, the
    # store's writer), exports take only the time they leave idle, as a thread holding the
    # interpreter could not.
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(19)
    serve(sys.stdin, sys.stdout)
