"""What ``wfkit replay`` prints while it runs: each notebook's line the moment it finishes and, on a
terminal, a progress bar below the lines (on stderr, so a log of stdout holds only the lines)."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import IO, Any

from wfkit.replay._result import NotebookReport


class ConsoleProgress:
    """``on_result`` for :func:`wfkit.replay._replay.replay`. ``bar`` defaults to whether stderr is a
    terminal; the bar's clock ticks every second even while no notebook finishes."""

    def __init__(self, total: int, *, out: IO[str] | None = None, err: IO[str] | None = None, bar: bool | None = None):
        self.total = total
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.show_bar = self.err.isatty() if bar is None else bar
        self._bar: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> ConsoleProgress:
        if self.show_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                file=self.err,
                unit="notebook",
                desc="replay",
                bar_format="{desc}: {bar} {n_fmt}/{total_fmt} notebooks [{elapsed}]",
                dynamic_ncols=True,
                leave=False,
            )
            self._ticker = threading.Thread(target=self._tick, name="wfkit-replay-progress", daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._bar.refresh()

    def __call__(self, row: NotebookReport) -> None:
        if self._bar is not None:
            self._bar.write(row.line(), file=self.out)
            self._bar.update(1)
            self._bar.refresh()  # a notebook finishing is rare: always show it, whatever tqdm's throttle
        else:
            print(row.line(), file=self.out, flush=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.close()
