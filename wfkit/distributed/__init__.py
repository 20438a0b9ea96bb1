"""The distributed layer: work sent past one machine, to Dask's scheduler.

``_dask`` connects to a scheduler (a ``distributed.Client``, a cluster, or an address; a clear
error before any work when nobody answers), sends one task per partition with ``retries=``, shows
progress (a bar of partitions and one of cases) and the dashboard link, and collects the commit
markers of the attempts it took. What a partition does is handed to it (evals, batch runs,
notebooks); where its rows land is the logs layer's ``_segments`` (one dataset, an attempt per
partition, counted once).

``_cluster`` starts a ``LocalCluster`` fitted to partitions (one single-thread process per core,
Dask's profiler and monitors quieted): the public ``local_cluster`` and ``QUIET_DASK_SETTINGS``.
``_shield`` keeps the worker processes a notebook started from dying of its stop button (SIGINT).
``_local`` tells whether a scheduler in this process serves the dashboard (Dask names one whatever
it serves), and is the ``LocalCluster`` that ``local_cluster`` returns, whose link and HTML say so.

Imports the model, store and logs layers; Dask itself only when used (the ``dask`` extra).
"""

from wfkit.distributed._cluster import QUIET_DASK_SETTINGS, Cluster, local_cluster

__all__ = ["QUIET_DASK_SETTINGS", "Cluster", "local_cluster"]
