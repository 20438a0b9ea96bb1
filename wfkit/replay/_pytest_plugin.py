"""``pytest --wfkit-replay notebooks/``: each notebook is a test item, replayed headless and compared
with its baseline, so a project's notebooks run in the same ``pytest`` as its tests (as nbmake and
nbval do for outputs). Parallelism is pytest's own (``pytest-xdist``'s ``-n``).

The package registers this module through the ``pytest11`` entry point ``wfkit``, so it loads in
every pytest session of an environment holding wfkit: it imports nothing of wfkit until a notebook
is collected, and does nothing without ``--wfkit-replay``. ``wfkit`` itself never imports pytest.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from wfkit.replay._options import cell_seconds

if TYPE_CHECKING:
    from wfkit.replay._result import NotebookReport

_MARKER = ".wfkit-replay-report"  # wfkit.replay._notebooks.REPORT_MARKER, kept here so loading stays cheap


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wfkit", "wfkit notebook replay")
    group.addoption(
        "--wfkit-replay",
        action="store_true",
        help="collect notebooks (.ipynb) as tests: each runs headless and is compared with its baseline",
    )
    group.addoption("--wfkit-baseline", metavar="DIR", help="baseline folder (default: ROOTDIR/data/baselines)")
    group.addoption(
        "--wfkit-report",
        metavar="DIR",
        help="where executed notebooks and kernel logs go (default: ROOTDIR/replay-report)",
    )
    group.addoption("--wfkit-update-baseline", action="store_true", help="record the notebooks' runs as baselines")
    group.addoption(
        "--wfkit-cell-timeout",
        type=cell_seconds,
        default=600.0,
        metavar="SECONDS",
        help="seconds per cell (default 600)",
    )
    group.addoption("--wfkit-kernel", metavar="NAME", help="Jupyter kernel (default: each notebook's own)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Never collect the executed notebooks of a replay report."""
    if config.getoption("wfkit_replay") and (collection_path / _MARKER).is_file():
        return True
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".ipynb" and parent.config.getoption("wfkit_replay"):
        if ".ipynb_checkpoints" in file_path.parts:
            return None
        return NotebookFile.from_parent(parent, path=file_path)
    return None


class NotebookFile(pytest.File):
    """A notebook file: one test item, the notebook's replay."""

    def collect(self) -> list[pytest.Item]:
        return [NotebookItem.from_parent(self, name=self.path.name)]


class ReplayFailed(Exception):
    """The notebook regressed, failed to run, or has no baseline."""

    def __init__(self, row: NotebookReport) -> None:
        super().__init__(row.line())
        self.row = row

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.row,), vars(self)


class NotebookItem(pytest.Item):
    """Replays one notebook (in a process of its own) and compares it with its baseline."""

    def _folder(self, option: str, default: str) -> Path:
        value = self.config.getoption(option)
        return Path(value).resolve() if value else self.config.rootpath / default

    def runtest(self) -> None:
        from wfkit.replay._execute import NotebookJob, local_runner
        from wfkit.replay._notebooks import REPORT_MARKER, notebook_key
        from wfkit.replay._replay import check_kernel, judge
        from wfkit.replay._signals import settings_of

        root = self.config.rootpath
        key = notebook_key(self.path, root)
        settings_of(self.path)  # a misspelt mask fails the item, named
        kernel = self.config.getoption("wfkit_kernel")
        if kernel:
            check_kernel(kernel)
        report = self._folder("wfkit_report", "replay-report")
        report.mkdir(parents=True, exist_ok=True)
        (report / REPORT_MARKER).write_text(
            "a wfkit replay report: notebooks searched for replay skip this folder\n", encoding="utf-8"
        )
        job = NotebookJob(
            notebook=self.path.resolve(),
            key=key,
            out_dir=report / "runs" / Path(key).with_suffix(""),
            cell_timeout=float(self.config.getoption("wfkit_cell_timeout")),
            kernel=kernel,
        )
        shutil.rmtree(job.out_dir, ignore_errors=True)  # runs of an earlier session must not count
        ((_job, outcome),) = list(local_runner(1)([job]))
        row = judge(
            job,
            outcome,
            baseline=self._folder("wfkit_baseline", "data/baselines"),
            root=root,
            update_baseline=bool(self.config.getoption("wfkit_update_baseline")),
        )
        self.user_properties.append(("wfkit_replay", row.status))
        if row.failing:
            raise ReplayFailed(row)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ReplayFailed):
            row = excinfo.value.row
            text = row.line()
            if row.error and row.error.get("traceback"):
                text += "\n\n" + str(row.error["traceback"])
            if row.output is not None:
                text += f"\n\nexecuted notebook: {row.output}"
            return text
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"wfkit replay: {self.path.name}"
