"""Where a dataset lives (a local folder or an fsspec URL), and which partition attempts count.

A job sent to Dask writes one set of files per partition attempt plus a commit marker (see
``_segments``), and only the attempts its driver took reach ``steps/``, once the job ends. This
module holds the rule readers still apply to what they find there (a segment copied in by hand, a
dataset moved about): per partition, the attempt the driver took; files of any other attempt are
never read. It also warns of a job whose driver died before its end: none of its rows count yet.
It sits below the step-log reader, which applies the rule to every listing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import warnings
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfkit.logs._driver import DRIVER_FILE, driver_alive
from wfkit.model._errors import UnfinishedJobWarning
from wfkit.model._warn import user_stacklevel

STEPS_DIR = "steps"
"""The step log's folder inside a workspace or a dataset."""
STAGING_DIR = "steps-staging"
"""Where a dataset's jobs stage their step-log segments until they end, one folder per job (``_segments``)."""

if TYPE_CHECKING:
    import pyarrow as pa

ATTEMPTS_DIR = "_attempts"
JOB_FILE = "_job.json"

SEGMENT_NAME = re.compile(
    r"^job-(?P<job>[0-9a-z]+)-(?P<stem>p(?P<partition>\d{5})-a(?P<number>\d{2,})-[0-9a-f]+)\.parquet$"
)
_MARKER = re.compile(r"^(?P<stem>p(?P<partition>\d{5})-a(?P<number>\d{2,})-[0-9a-f]+)\.commit$")


def is_url(target: str | os.PathLike[str]) -> bool:
    """An fsspec URL other than ``file://`` (which is read as the local path it names)."""
    text = os.fspath(target)
    return "://" in text and not text.startswith("file://")


def _fsspec() -> Any:
    from wfkit._extras import require

    return require("fsspec", "dask", purpose="a dataset URL (s3://, gs://...)")


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some filesystems cannot fsync a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Location:
    """Where a dataset lives: a local folder (``path``, ``file://path``) or an fsspec URL."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        text = os.fspath(target)
        if not text:
            raise ValueError("a dataset location is a folder or a URL such as s3://bucket/path, not an empty string")
        self.fs: Any = None
        self.local: Path | None = None
        if is_url(text):
            self.fs, self.root = _fsspec().core.url_to_fs(text)
            self.url = text
        else:
            path = Path(text.removeprefix("file://")).expanduser().absolute()
            self.local, self.root, self.url = path, str(path), str(path)

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def _full(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}"

    def write_bytes(self, rel: str, data: bytes, *, durable: bool = True) -> None:
        """Whole or not at all: readers never meet a half-written file. ``durable=False`` skips the
        fsyncs (still atomic): for a file whose loss in a power cut is harmless."""
        if self.local is not None:
            target = self.local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            with tmp.open("wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
            if durable:
                fsync_dir(target.parent)
            return
        final = self._full(rel)
        parent, _, name = final.rpartition("/")
        staged = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(staged, data)
        self.fs.mv(staged, final)

    def write_table(self, rel: str, table: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self.write_bytes(rel, sink.getvalue().to_pybytes())

    def read_bytes(self, rel: str) -> bytes:
        if self.local is not None:
            return (self.local / rel).read_bytes()
        data: bytes = self.fs.cat_file(self._full(rel))
        return data

    def read_table(self, rel: str) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(self.read_bytes(rel)))

    def move(self, rel: str, dest: str) -> None:
        """Move the file ``rel`` to ``dest`` (both relative to the dataset), making folders as needed."""
        if self.local is not None:
            target = self.local / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.local / rel, target)
            fsync_dir(target.parent)
            return
        final = self._full(dest)
        self.fs.makedirs(final.rpartition("/")[0], exist_ok=True)
        self.fs.mv(self._full(rel), final)

    def exists(self, rel: str) -> bool:
        if self.local is not None:
            return (self.local / rel).exists()
        return bool(self.fs.exists(self._full(rel)))

    def names(self, rel: str) -> list[str]:
        """File names in the folder ``rel`` (none when it does not exist), temporaries left out."""
        if self.local is not None:
            # scandir: the folder's entries say what they are, no stat per file (a job's marker
            # folder holds two files per partition attempt, and every attempt lists it).
            try:
                with os.scandir(self.local / rel) as entries:
                    found = [e.name for e in entries if e.is_file()]
            except (FileNotFoundError, NotADirectoryError):
                found = []
        else:
            try:
                found = [str(p).rsplit("/", 1)[-1] for p in self.fs.ls(self._full(rel), detail=False)]
            except FileNotFoundError:
                found = []
        return sorted(n for n in found if not n.startswith("."))

    def remove_empty_folders(self, rel: str) -> None:
        """Remove the folder ``rel`` and those below it, as far as they hold no file (local folders
        only: an object store has none to remove). A folder that is not empty stays."""
        if self.local is None:
            return
        top = self.local / rel
        below = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for folder in [*below, top]:
            with suppress(OSError):
                folder.rmdir()

    def files(self, rel: str) -> list[str]:
        """Every file under the folder ``rel``, as paths relative to the dataset root."""
        if self.local is not None:
            folder = self.local / rel
            if not folder.is_dir():
                return []
            return sorted(p.relative_to(self.local).as_posix() for p in folder.rglob("*") if p.is_file())
        base = self.root.rstrip("/") + "/"
        try:
            found = self.fs.find(self._full(rel))
        except FileNotFoundError:
            return []
        return sorted(str(p).removeprefix(base).removeprefix("/" + base.lstrip("/")) for p in found)


# ---- which attempts count --------------------------------------------------------------------


def counted_stems(location: Location, folder: str) -> set[str]:
    """The attempt stems whose files readers count, one per partition, from the job's marker
    ``folder`` (``STEPS/_attempts/JOB``, relative to ``location``)."""
    names = location.names(folder)
    if JOB_FILE in names:
        return set(json.loads(location.read_bytes(f"{folder}/{JOB_FILE}"))["partitions"].values())
    return set(latest_attempts(location, folder, names).values())


def latest_attempts(location: Location, folder: str, names: Iterable[str]) -> dict[int, str]:
    """Per partition, the stem of its latest committed attempt among ``names`` (the files of the
    job's marker ``folder``): what readers count of a job that has no end recorded."""
    latest: dict[int, tuple[int, float, str]] = {}
    for name in names:
        match = _MARKER.match(name)
        if match is None:
            continue
        committed_at = float(json.loads(location.read_bytes(f"{folder}/{name}")).get("committed_at", 0.0))
        key = (int(match["number"]), committed_at, match["stem"])
        part = int(match["partition"])
        if part not in latest or key > latest[part]:
            latest[part] = key
    return {part: key[2] for part, key in latest.items()}


def all_planned_committed(driver: dict[str, Any], committed: Iterable[int]) -> bool:
    """Every partition the job's ``driver`` planned (its record's ``partitions``, a count) has a
    committed attempt, and no other does: the work is whole, whatever became of the driver. False
    when the record does not say how many it planned: the job is then taken as cut short."""
    planned = driver.get("partitions")
    return isinstance(planned, int) and set(committed) == set(range(planned))


_warned: set[str] = set()  # jobs whose dead driver a reader has warned of in this process: once is enough


def warn_of_jobs_without_end(dataset: Location) -> None:
    """Warn (once per job) of each job of ``dataset`` that has no end and whose driver is gone:
    its committed partitions stay staged, counted by no reader, since only the user can say it
    will not end (its driver may run elsewhere); ``wfkit doctor --repair`` records it as committed
    when all the partitions its driver planned are (its rows then count), else as aborted."""
    jobs = {rel.removeprefix(f"{STAGING_DIR}/").partition("/")[0] for rel in dataset.files(STAGING_DIR)}
    for job in sorted(jobs - _warned):
        folder = f"{STEPS_DIR}/{ATTEMPTS_DIR}/{job}"
        names = dataset.names(folder)
        if JOB_FILE in names or DRIVER_FILE not in names:
            continue
        driver = json.loads(dataset.read_bytes(f"{folder}/{DRIVER_FILE}"))
        if driver_alive(driver) is not False:
            continue
        _warned.add(job)
        committed = latest_attempts(dataset, folder, names).keys()
        label = driver.get("label") or "a Dask job"
        gone = (
            f"job {job} in {dataset.url} ({label}) has no end recorded and its driver, pid {driver['pid']} on this "
            f"host, is gone"
        )
        repair = f"`wfkit doctor --dataset {dataset.url} --repair` records the job as"
        if all_planned_committed(driver, committed):
            said = (
                f"{gone}, but {all_committed(driver['partitions'])}: no reader counts its rows until it ends. "
                f"{repair} committed: its rows then count (nothing to run again)"
            )
        else:
            said = (
                f"{gone}: no reader counts its {len(committed)} committed partition(s). {repair} aborted (its rows "
                f"are set aside, not deleted); run its cases again"
            )
        warnings.warn(said, UnfinishedJobWarning, stacklevel=user_stacklevel())


def all_committed(partitions: int) -> str:
    """How a report says that a job's ``partitions`` (every one its driver planned) were committed."""
    return "its one partition was committed" if partitions == 1 else f"all {partitions} partitions were committed"


def is_attempt_segment(name: str) -> bool:
    return SEGMENT_NAME.match(name) is not None


def counted_files(files: Sequence[Path], root: Path) -> list[Path]:
    """``files`` (segments under the local folder ``root``) less those of attempts that do not
    count. Markers are found in ``root`` or, when ``root`` is a hive partition folder, above it."""
    steps_root = root
    while "=" in steps_root.name and steps_root.parent != steps_root:
        steps_root = steps_root.parent
    location = Location(steps_root) if (steps_root / ATTEMPTS_DIR).is_dir() else None
    if location is not None:
        warn_of_jobs_without_end(Location(steps_root.parent))
    if not any(is_attempt_segment(f.name) for f in files):
        return list(files)
    stems: dict[str, set[str]] = {}
    kept = []
    for f in files:
        match = SEGMENT_NAME.match(f.name)
        if match is None:
            kept.append(f)
            continue
        if location is None:
            continue  # no markers to vouch for it: an attempt's file alone is never counted
        job = match["job"]
        if job not in stems:
            stems[job] = counted_stems(location, f"{ATTEMPTS_DIR}/{job}")
        if match["stem"] in stems[job]:
            kept.append(f)
    return kept


# ---- reading a remote dataset ------------------------------------------------------------------


def cache_dir(url: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return base / "wfkit" / "datasets" / hashlib.sha256(url.encode()).hexdigest()[:16]


def mirror(url: str, cache: Path | None = None) -> Path:
    """Copy what a reader needs of a remote dataset (markers, and the segments that count) into a
    local cache and return its steps folder. Segment files never change once written, so a file
    already cached is never fetched again; files no longer counted are dropped from the cache."""
    location = Location(url)
    warn_of_jobs_without_end(location)
    local = cache or cache_dir(location.url)
    wanted: set[str] = set()
    stems: dict[str, set[str]] = {}
    for rel in location.files(STEPS_DIR):
        name = rel.rsplit("/", 1)[-1]
        if name.startswith("."):
            continue
        if f"/{ATTEMPTS_DIR}/" in rel:
            if name == JOB_FILE or name.endswith(".commit"):
                wanted.add(rel)
            continue
        if not name.endswith(".parquet"):
            continue
        match = SEGMENT_NAME.match(name)
        if match is not None:
            job = match["job"]
            if job not in stems:
                stems[job] = counted_stems(location, f"{STEPS_DIR}/{ATTEMPTS_DIR}/{job}")
            if match["stem"] not in stems[job]:
                continue
        wanted.add(rel)
    for rel in sorted(wanted):
        target = local / rel
        if not target.exists() or rel.endswith(JOB_FILE):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(location.read_bytes(rel))
            os.replace(tmp, target)
    steps = local / STEPS_DIR
    if steps.exists():
        for path in steps.rglob("*"):
            if path.is_file() and path.relative_to(local).as_posix() not in wanted:
                path.unlink()
    return steps
