"""Whether a Dask scheduler serves the dashboard, and a ``LocalCluster`` that says so.

Dask's scheduler runs an HTTP server whether or not it has a dashboard (it serves health checks,
metrics and a JSON API there), and names that server ``dashboard`` among its services: so
``LocalCluster.dashboard_link``, ``Client.dashboard_link``, ``client.scheduler_info()["services"]``
and the cluster's HTML give a link either way, and with ``dashboard_address=None`` it led to
``/status`` answering 404. The dashboard's pages are there only when the scheduler connected
bokeh's application to that server (``distributed.dashboard.scheduler.connect``, which it does when
asked for a dashboard and bokeh imports; without bokeh it serves a page asking to install it). So a
dashboard is up when the scheduler's HTTP application holds a ``BokehTornado``: what serves
``/status``, read in this process, without a request that a proxied link (JupyterHub's) or a
firewall could fail for other reasons. A scheduler in another process cannot be read so: its
link is asked over HTTP (``missing_remote``).

Imported only where Dask is (it subclasses Dask's ``LocalCluster``).
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Mapping
from typing import Any

import distributed

#: Said where a link would be, for a cluster ``local_cluster(dashboard_address=None)`` started.
NOT_STARTED = (
    "no dashboard was started (local_cluster(..., dashboard_address=None)): leave dashboard_address out "
    "for one on a free port of 127.0.0.1, or give one, such as dashboard_address='127.0.0.1:8787'"
)

#: Said for another cluster in this process whose scheduler serves no dashboard.
NOT_SERVED = (
    "no dashboard: this cluster's scheduler serves none (it was started without one, as with "
    "dashboard_address=None); start it with dashboard_address='127.0.0.1:0' for one on a free port"
)

# Dask's templates write each dashboard link as `<strong>Dashboard:</strong> <a href="URL" ...>URL</a>`
# (the cluster's, the scheduler's and each worker's).
_DASHBOARD_ANCHOR = re.compile(r'(<strong>Dashboard:\s*</strong>\s*)<a href="([^"]*)"[^>]*>[^<]*</a>')


def serves_dashboard(scheduler: Any) -> bool:
    """Whether ``scheduler`` (a ``distributed.Scheduler`` in this process) serves the dashboard's pages."""
    # No BokehTornado can exist before bokeh's server module is imported: checking costs no import.
    tornado = sys.modules.get("bokeh.server.tornado")
    if tornado is None:
        return False
    applications = getattr(getattr(scheduler, "http_application", None), "applications", ())
    return any(isinstance(app, tornado.BokehTornado) for app in applications)


def missing_dashboard(scheduler: Any, *, asked: bool | None) -> str | None:
    """Why ``scheduler`` has no dashboard, and how to get one; None when it has one. ``asked``: whether
    the cluster was started with a dashboard address (None: not known, a cluster made elsewhere)."""
    if serves_dashboard(scheduler):
        return None
    if asked is False:
        return NOT_STARTED
    try:
        import distributed.dashboard.scheduler  # noqa: F401  (what the scheduler imports for its pages)
    except ImportError as exc:
        from distributed.versions import BOKEH_REQUIREMENT

        return (
            f"no dashboard: Dask's dashboard needs {BOKEH_REQUIREMENT}, which does not import here ({exc}): "
            f'pip install "wfkit[dask]" (its dask[diagnostics] brings bokeh) or pip install "{BOKEH_REQUIREMENT}", '
            f"then start the cluster again"
        )
    return NOT_SERVED


def missing_for_client(client: Any) -> str | None:
    """Why the cluster behind ``client`` has no dashboard; None when it has one, or when it could not
    be told (a scheduler in another process whose link did not answer from here)."""
    cluster = getattr(client, "cluster", None)
    if isinstance(cluster, LocalCluster):
        return cluster.missing_dashboard()
    scheduler = getattr(cluster, "scheduler", None)
    if isinstance(scheduler, distributed.Scheduler):
        return missing_dashboard(scheduler, asked=None)
    try:
        link = client.dashboard_link
    except KeyError:  # a scheduler naming no HTTP server among its services
        return None
    return missing_remote(str(link)) if link else None


#: Said for a scheduler in another process whose HTTP server answers 404 where the dashboard would be.
NOT_SERVED_REMOTE = (
    "no dashboard: the scheduler serves none at {link} (`dask scheduler --no-dashboard` starts it so); "
    "start it without --no-dashboard, with bokeh installed beside it, for one"
)


def missing_remote(link: str) -> str | None:
    """Why a ``dask scheduler`` in another process shows no dashboard at ``link``; None when it
    shows one, or when the link did not answer from here.

    Its HTTP server is there whether or not it has a dashboard, so Dask gives the link either way:
    only asking tells. A ``HEAD`` request answers 404 where no page is routed (``--no-dashboard``),
    and 405 where the dashboard is (a ``GET`` would make the dashboard build its page, a second of
    the scheduler's time, and keep the session on a while). Without bokeh the scheduler routes a
    page there that says what to install: a link worth following, so it is kept. A link that does
    not answer from this machine (a firewall, a proxy's path) may still answer from the user's
    browser: kept too."""
    import httpx

    try:
        # Straight to the scheduler, as Dask's own connection goes: a proxy from the environment
        # could answer 404 for a host it cannot reach.
        reply = httpx.head(link, timeout=_PROBE_TIMEOUT, trust_env=False)
    except (httpx.HTTPError, ValueError):  # unreachable from here, or not a URL httpx can ask
        return None
    return NOT_SERVED_REMOTE.format(link=link) if reply.status_code == 404 else None


# Seconds to wait for a remote scheduler's dashboard to answer, once per job, before any work is sent.
_PROBE_TIMEOUT = 2.0


def start_local_cluster(options: Mapping[str, Any], *, dashboard_asked: bool) -> Any:
    """A :class:`LocalCluster` of ``options`` (``LocalCluster``'s keywords), started; ``dashboard_asked``:
    whether it was given a dashboard address. (Any: Dask's ``__init__`` and ``__exit__`` are untyped.)"""
    cluster = LocalCluster(**options)  # type: ignore[no-untyped-call]
    cluster._wfkit_dashboard_asked = dashboard_asked
    cluster._wfkit_worker_dashboards = options.get("worker_dashboard_address") is not None
    return cluster


class LocalCluster(distributed.LocalCluster):
    """Dask's ``LocalCluster``, whose ``dashboard_link`` and HTML offer a dashboard only when its
    scheduler serves one, and otherwise say why there is none and how to get one."""

    # Set by start_local_cluster: what it was asked for, to say why there is no dashboard.
    _wfkit_dashboard_asked: bool = True
    _wfkit_worker_dashboards: bool = False
    _wfkit_missing: tuple[str | None] | None = None  # the answer, once its scheduler exists

    def missing_dashboard(self) -> str | None:
        """Why this cluster has no dashboard, and how to get one; None when it has one."""
        if self._wfkit_missing is not None:
            return self._wfkit_missing[0]
        missing = missing_dashboard(self.scheduler, asked=self._wfkit_dashboard_asked)
        # A scheduler connects the dashboard as it is made, or never. Asked once: without bokeh,
        # each import of Dask's dashboard tries bokeh again (and warns, when it is too old).
        if isinstance(self.scheduler, distributed.Scheduler):
            self._wfkit_missing = (missing,)
        return missing

    @property
    def dashboard_link(self) -> str:
        """The dashboard's link; "" (as Dask gives for a cluster without one) when none is served."""
        if self.missing_dashboard() is not None:
            return ""
        return str(super().dashboard_link)

    def _repr_html_(self, cluster_status: Any = None) -> str:
        dask_html: Any = super()._repr_html_  # (untyped)
        page = str(dask_html(cluster_status=cluster_status))
        missing = self.missing_dashboard()
        dead = str(super().dashboard_link)  # the link Dask offers, whether or not it answers

        def link_or_reason(anchor: re.Match[str]) -> str:
            href = anchor.group(2)
            if href in (dead, ""):  # the scheduler's: in the cluster's row, this class's "" when it has none
                return anchor.group(0) if missing is None else anchor.group(1) + html.escape(missing)
            if self._wfkit_worker_dashboards:
                return anchor.group(0)
            # A worker's: its HTTP server is named its dashboard too, and answers 404 at /status.
            return anchor.group(1) + "none (worker_dashboard_address=None)"

        return _DASHBOARD_ANCHOR.sub(link_or_reason, page)
