"""``wfkit doctor``, a dataset's half: jobs that never ended, and giving them up on request.

A job's driver writes its end (``_job.json``: taken, or given up) when the job is over, and then
moves the job's staged step-log segments (``_segments``): those it took into ``steps/``, the rest
aside. A driver killed before its end (SIGKILL, a closed laptop, a killed kernel) leaves the job's
committed partitions staged, counted by no reader, and a second run of the same cases is counted
alone. Such a job is found here by its driver record (``_driver``): a driver on this host whose
process is gone is a problem. When every partition the driver planned (its record's
``partitions``) has a committed attempt, the driver died after the work was done: the repair
records the job as committed, with the latest committed attempt per partition (``commit_job``),
its rows then count and nothing need run again. Otherwise the repair records it as aborted
(``abort_job``: readers count none of it, and its rows are set aside, never deleted). A job whose
driver is alive, or ran on another host, may still be running: it is only described, and given up
only when the user says so. A job that ended with files still staged (its driver killed while it
moved them, a partition killed while it set itself aside) is a problem too: the repair finishes
the moves.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

from wfkit.logs._dataset import (
    ATTEMPTS_DIR,
    JOB_FILE,
    SEGMENT_NAME,
    STAGING_DIR,
    STEPS_DIR,
    Location,
    all_committed,
    all_planned_committed,
    latest_attempts,
)
from wfkit.logs._driver import DRIVER_FILE, driver_alive
from wfkit.logs._segments import abort_job, commit_job, job_file, settle

_JOBS = f"{STEPS_DIR}/{ATTEMPTS_DIR}"


@dataclass(frozen=True)
class UnfinishedJob:
    """A job with committed partitions and no end recorded."""

    job: str
    counted: dict[int, str]  # per partition with a committed attempt, the one readers count (its stem)
    driver: dict[str, Any] | None  # its driver record; None for a job written before there was one
    alive: bool | None  # its driver still runs; None when that cannot be checked from here

    @property
    def partitions(self) -> int:
        """Partitions with a committed attempt: what readers count of the job."""
        return len(self.counted)

    @property
    def complete(self) -> bool:
        """Every partition its driver planned has a committed attempt (False when its record does not
        say how many it planned)."""
        return self.driver is not None and all_planned_committed(self.driver, self.counted)

    @property
    def label(self) -> str:
        return str((self.driver or {}).get("label") or "a job")

    @property
    def started_at(self) -> float:
        if self.driver is not None:
            return float(self.driver["started_at"])
        # A job id begins with its start time (see new_job_id)
        return dt.datetime.strptime(self.job[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC).timestamp()

    def who(self) -> str:
        if self.driver is None:
            return "its driver (unrecorded: the job was sent by an older wfkit)"
        return f"its driver, pid {self.driver['pid']} on {self.driver['host']},"


@dataclass
class JobsReport:
    """What :func:`check_jobs` found: ``problems`` (a driver known to be gone), ``notes`` (jobs that
    may still be running), ``repairs`` (jobs recorded as committed or aborted)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)


def unfinished_jobs(location: Location) -> list[UnfinishedJob]:
    """The dataset's jobs that have committed partitions and no end recorded, oldest first."""
    by_job: dict[str, list[str]] = {}
    for rel in location.files(_JOBS):
        job, _, name = rel.removeprefix(f"{_JOBS}/").partition("/")
        if name and "/" not in name and not name.startswith("."):
            by_job.setdefault(job, []).append(name)
    found = []
    for job, names in sorted(by_job.items()):
        if JOB_FILE in names:  # ended
            continue
        counted = latest_attempts(location, f"{_JOBS}/{job}", names)
        if not counted:  # nothing a reader counts
            continue
        driver = json.loads(location.read_bytes(f"{_JOBS}/{job}/{DRIVER_FILE}")) if DRIVER_FILE in names else None
        alive = None if driver is None else driver_alive(driver)
        found.append(UnfinishedJob(job, counted, driver, alive))
    return found


def check_jobs(location: Location, *, repair: bool, command: str) -> JobsReport:
    """Describe the dataset's unfinished jobs; with ``repair``, record those whose driver is gone as
    committed when all their planned partitions are, else as aborted. ``command`` is the ``wfkit
    doctor`` command line that checked this dataset (for hints)."""
    report = JobsReport()
    now = time.time()
    for unfinished in unfinished_jobs(location):
        job, counted = unfinished.job, f"its {unfinished.partitions} committed partition(s)"
        if unfinished.driver is not None and "partitions" in unfinished.driver:
            counted += f" (of {unfinished.driver['partitions']})"
        title = f"job {job} ({unfinished.label})"
        age = _age(now - unfinished.started_at)
        if unfinished.alive:
            report.notes.append(f"{title} is running: {unfinished.who()} is alive ({counted} so far, {age} in)")
        elif unfinished.alive is None:
            report.notes.append(
                f"{title} has no end recorded, and {unfinished.who()} cannot be checked from here; it started "
                f"{age} ago. No reader counts {counted} until it ends. If its driver is gone, "
                f"`{command} --abort {job}` records the job as aborted"
            )
        elif unfinished.complete and repair:
            _take(location, unfinished)
            report.repairs.append(
                f"job {job}: {all_committed(unfinished.partitions)} before its driver died; recorded as committed"
            )
        elif unfinished.complete:
            report.problems.append(
                f"{title} has no end recorded and {unfinished.who()} is gone (started {age} ago), but "
                f"{all_committed(unfinished.partitions)}: the job is whole, but no reader counts its rows until it "
                f"ends. `{command} --repair` records the job as committed: its rows then count (nothing to run again)"
            )
        elif repair:
            report.repairs.append(f"job {job} recorded as aborted; its rows are set aside in {give_up(location, job)}")
        else:
            report.problems.append(
                f"{title} has no end recorded and {unfinished.who()} is gone (started {age} ago): no reader counts "
                f"{counted}. `{command} --repair` records the job as aborted (its rows are set aside, not deleted); "
                f"run its cases again"
            )
    for job, files in sorted(_staged_after_the_end(location).items()):
        ended = json.loads(location.read_bytes(job_file(job)))
        taken = set(ended["partitions"].values())
        if repair:
            into, aside = settle(location, job, taken)
            report.repairs.append(
                f"job {job} ({'aborted' if 'aborted' in ended else 'committed'}): moved {into} step-log segment(s) "
                f"it took into steps/ and {aside} other file(s) to steps-uncounted/{job}"
            )
            continue
        missing = sum(1 for rel in files if _stem(rel) in taken)
        said = (
            f"{missing} of them hold rows of attempts it took, which no reader counts until they are in steps/"
            if missing
            else "rows of attempts that do not count"
        )
        report.problems.append(
            f"job {job} ({ended.get('label') or 'a job'}) {'was aborted' if 'aborted' in ended else 'committed'} "
            f"but left {len(files)} file(s) in {location.url.rstrip('/')}/{STAGING_DIR}/{job} (a process stopped "
            f"before it moved them, or a partition still running after the end): {said}. `{command} --repair` "
            f"moves them (nothing is deleted)"
        )
    return report


def _staged_after_the_end(location: Location) -> dict[str, list[str]]:
    """Per job that ended, the files its attempts left staged (temporaries of writes under way left out)."""
    by_job: dict[str, list[str]] = {}
    for rel in location.files(STAGING_DIR):
        job, _, inner = rel.removeprefix(f"{STAGING_DIR}/").partition("/")
        if inner and not inner.rpartition("/")[2].startswith("."):
            by_job.setdefault(job, []).append(rel)
    return {job: files for job, files in by_job.items() if location.exists(job_file(job))}


def _stem(rel: str) -> str | None:
    match = SEGMENT_NAME.match(rel.rpartition("/")[2])
    return None if match is None else match["stem"]


def _take(location: Location, unfinished: UnfinishedJob) -> None:
    """Record the complete ``unfinished`` job as committed, as its driver would have: the attempt
    taken per partition is the one readers count already, so no count changes (the segments of
    the other attempts are set aside)."""
    folder = f"{_JOBS}/{unfinished.job}"
    markers = [
        json.loads(location.read_bytes(f"{folder}/{stem}.commit")) for _, stem in sorted(unfinished.counted.items())
    ]
    driver = unfinished.driver or {}
    about = {"label": driver["label"]} if "label" in driver else {}
    why = f"its driver (pid {driver.get('pid')} on {driver.get('host')}) died after all its partitions committed"
    commit_job(location, unfinished.job, markers, **about, recorded_by=f"wfkit doctor --repair: {why}")


def give_up(location: Location, job: str) -> str:
    """Record the unfinished ``job`` as aborted; returns where its rows are set aside. Refused, with
    what to do instead, for a job that ended, does not exist, or whose driver still runs here."""
    folder = f"{_JOBS}/{job}"
    names = location.names(folder)
    if not names:
        listed = ", ".join(u.job for u in unfinished_jobs(location)) or "none"
        raise ValueError(f"no job {job!r} in {location.url}; its unfinished jobs: {listed}")
    if JOB_FILE in names:
        body = json.loads(location.read_bytes(f"{folder}/{JOB_FILE}"))
        ended = f"was aborted ({body['aborted']})" if "aborted" in body else "was committed"
        raise ValueError(f"job {job} in {location.url} {ended}: there is nothing to give up")
    driver: dict[str, Any] = {}
    if DRIVER_FILE in names:
        driver = json.loads(location.read_bytes(f"{folder}/{DRIVER_FILE}"))
        if driver_alive(driver):
            raise ValueError(
                f"job {job} is still running: its driver, pid {driver['pid']} on this host, is alive; stop "
                f"that process (it records the job as aborted itself on an interrupt), or let it finish"
            )
    who = f"pid {driver['pid']} on {driver['host']}" if driver else "unknown"
    about = {"label": driver["label"]} if "label" in driver else {}
    return abort_job(location, job, f"its driver ({who}) ended without recording an end", **about)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{max(0, round(seconds))} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"
