"""A Dask ``LocalCluster`` fitted to wfkit's partitions, and the Dask settings behind it.

A wfkit partition is one long task: it keeps its worker's one thread busy for seconds, running its
cases on an event loop of its own. Dask's defaults are tuned for many short tasks, and while a
partition runs they cost CPU that the cases could use: each worker's statistical profiler samples
the task's thread every 10 ms (taking the GIL from a CPU-bound step each time), every server
(scheduler, nannies, workers) wakes every 20 ms to check that its event loop is not blocked, and
each nanny reads its worker's memory every 100 ms. On a machine of 2 cores, an idle LocalCluster of
2 workers used 0.15 of a core with Dask's defaults and 0.02 with :data:`QUIET_DASK_SETTINGS`
(``benchmarks/scaleout.py`` measures what that does to an eval). The scheduler, too, sends each
worker one task more than it has threads, to start as soon as one ends: with tasks of seconds, a
worker can then hold a partition it has not started while another, done, sits idle at the end.

What the settings give up: the dashboard's profile page stays empty (``profile=True`` keeps it),
an event loop blocked for over 3 s is still reported, a worker over its memory limit is stopped
within a second instead of a tenth, the system graphs are drawn every 2 s, and a worker gets its
next task a round trip to the scheduler after a thread frees (a wfkit partition frees its thread
when its cases are done, so that trip overlaps the writing of its files).
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import re
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, Self

#: Dask settings for workers whose tasks are wfkit partitions (``dask.config`` keys). A cluster
#: started elsewhere (``dask scheduler``, ``dask worker``) takes them from its environment, such as
#: ``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False``; see the README.
QUIET_DASK_SETTINGS: Mapping[str, object] = MappingProxyType(
    {
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "1s",
        "distributed.worker.memory.monitor-interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
        # A worker is sent its next partition when a thread frees (a partition frees it once its
        # cases are done, while it writes its files), not one ahead: the partitions left wait at
        # the scheduler for the first worker free, so no worker sits idle at the end while
        # another still holds a partition it has not started.
        "distributed.scheduler.worker-saturation": 1.0,
    }
)


class Cluster(Protocol):
    """What wfkit needs of a Dask cluster object (a ``LocalCluster`` is one)."""

    @property
    def scheduler_address(self) -> str: ...

    @property
    def dashboard_link(self) -> str:
        """The dashboard's link, or "" when the cluster has none."""
        ...

    def close(self) -> Any: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> Any: ...


def local_cluster(
    workers: int | None = None,
    *,
    profile: bool = False,
    dashboard_address: str | None = "127.0.0.1:0",
    **cluster_options: Any,
) -> Cluster:
    """A ``distributed.LocalCluster`` of ``workers`` worker processes (default: one per core), one
    thread each, listening on 127.0.0.1 only, with :data:`QUIET_DASK_SETTINGS`.

    Hand it (or a ``Client`` of it) to ``executor=``; close it when done (it is a context manager).
    In a script, start it under ``if __name__ == "__main__":``: each worker process imports the
    script again to start. ``profile=True`` keeps Dask's profiler (the dashboard's profile page).
    The dashboard is on a free port of 127.0.0.1 (``dashboard_address``: a port alone, ``":8787"``,
    is one of 127.0.0.1 too); ``dashboard_address=None`` starts none: then ``dashboard_link`` is ""
    and the cluster's HTML and the line a job on it prints say so and how to get one (so they do
    too when bokeh, which the dashboard needs, is missing). Other keywords go to ``LocalCluster`` as
    they are (``processes=False``: workers as threads of this process). Workers added later
    (``cluster.scale(n)``) start with Dask's own settings.
    """
    from wfkit.distributed._dask import import_distributed

    import_distributed()  # without Dask: an ImportError naming the extra to install
    import dask

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A worker process being started imports the main module again ("spawn", Dask's way): a
        # script calling this at its top level would start a cluster in each of its worker processes,
        # which fails deep in multiprocessing, each printing screens of tracebacks.
        raise RuntimeError(
            "local_cluster() was called while a worker process of a cluster imported the script that "
            "started it (Dask starts worker processes by importing the main module again): in that "
            'script, start the cluster under `if __name__ == "__main__":`'
        )

    count = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(count, int) or isinstance(count, bool):
        raise TypeError(
            f"workers must be a whole number of worker processes, got {count!r}; or leave it out for one "
            f"per core ({os.cpu_count()})"
        )
    if count < 1:
        raise ValueError(f"workers must be >= 1, got {count}; or leave it out for one per core ({os.cpu_count()})")
    settings = dict(QUIET_DASK_SETTINGS)
    if profile:
        del settings["distributed.worker.profile.enabled"]
    options: dict[str, Any] = {
        "n_workers": count,
        "threads_per_worker": 1,  # a partition holds the GIL while its steps compute: one per process
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": dashboard_address,
        **cluster_options,
    }
    plain_host = isinstance(options["host"], str) and "://" not in options["host"]
    if not options["processes"] and plain_host:
        # Workers as threads of this process: Dask then picks its in-process protocol (inproc://),
        # whose addresses take no host, and the scheduler failed to start ("not enough values to
        # unpack"). TCP on the host instead, as with processes.
        options.setdefault("protocol", "tcp://")
    if plain_host and isinstance(dashboard_address, str) and re.fullmatch(r":\d+", dashboard_address):
        # A port alone (":8787", as Dask's documentation writes it) is bound by Dask on every
        # interface, not the host's as its documentation says: on the cluster's host instead.
        options["dashboard_address"] = f"{options['host']}{dashboard_address}"
    if dashboard_address is None and plain_host:
        # The scheduler serves HTTP (health, metrics) even without a dashboard, on port 8787 when
        # given no address: a second cluster then warned "Port 8787 is already in use. Perhaps you
        # already have a cluster running?", and this one kept 8787 from a later cluster's dashboard.
        # A free port of the cluster's host instead.
        options["scheduler_kwargs"] = {
            "dashboard_address": f"{options['host']}:0",
            **(options.get("scheduler_kwargs") or {}),
        }
    from wfkit.distributed._local import start_local_cluster
    from wfkit.distributed._shield import InterruptShield

    # The notebook's stop button, sent to the kernel's process group, leaves the workers alone.
    options["plugins"] = {*options.get("plugins", ()), InterruptShield()}
    # The scheduler and the nannies read the settings as they start, so they need to hold only for
    # this call. Not so the worker processes a nanny starts later, after a crash: it hands them
    # the config it noted when it started, a shallow copy whose nested values this context puts
    # back when it ends. So each nanny is given a deep copy of its own.
    with dask.config.set(settings):
        if options["processes"]:
            options.setdefault("config", copy.deepcopy(dask.config.config))
        try:
            cluster: Cluster = start_local_cluster(options, dashboard_asked=dashboard_address is not None)
        except RuntimeError as exc:
            script = getattr(sys.modules.get("__main__"), "__file__", None)  # none in a notebook
            if (
                options["processes"]
                and script
                and dask.config.get("distributed.worker.multiprocessing-method") != "fork"
            ):
                exc.add_note(
                    f"If {os.path.basename(script)} starts the cluster at its top level: its worker processes import "
                    f"it again to start, and start a cluster each, which fails (their errors are above); "
                    f'start it under `if __name__ == "__main__":`'
                )
            raise
    return cluster
