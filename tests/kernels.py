"""What the notebook-kernel tests share: a real Python kernel (ipykernel, started by jupyter_client)
that imports this checkout's wfkit and keeps its runs in the test's workspace, a cell run to its end
with what it printed collected, and the stop button pressed on a cell still running. The kernel is
a context manager's, so it is shut down also when the test fails."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from browsers import wait_for

if TYPE_CHECKING:
    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Cell:
    """A cell run to its end: its reply's status ("ok", "error"...) and what it printed, an error
    as ``Name: value`` in its place among the streams."""

    status: str
    printed: str


@dataclass
class Kernel:
    """A kernel started for one test, and the client talking to it."""

    manager: KernelManager
    client: BlockingKernelClient

    def run(self, code: str, *, timeout: float) -> Cell:
        """Run ``code`` to its end (``timeout`` seconds at the most). What it prints is also echoed
        to this process's stdout, as a notebook shows it, so a failing test's report has it."""
        printed: list[str] = []

        def collect(message: dict[str, Any]) -> None:
            content = message["content"]
            if message["msg_type"] == "stream":
                printed.append(content["text"])
                print(content["text"], end="")
            elif message["msg_type"] == "error":
                printed.append(f"{content['ename']}: {content['evalue']}")
                print("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=collect)
        return Cell(reply["content"]["status"], "".join(printed))

    def send(self, code: str, *, started: Callable[[], object], timeout: float) -> str:
        """Start ``code`` without waiting for its end; once ``started()`` says it is under way
        (``timeout`` seconds at the most), the id its reply will answer."""
        # stop_on_error=False: a cell stopped on purpose must not make the kernel abort the test's
        # next cell (ipykernel aborts what arrives just after an error: "aborted", 1 run in 6).
        sent = str(self.client.execute(code, stop_on_error=False))
        wait_for(started, timeout, "the cell sent to the kernel to get under way")
        return sent

    def interrupt(self, sent: str, *, timeout: float) -> dict[str, Any]:
        """The stop button while cell ``sent`` runs: the content of that cell's reply. Replies to
        earlier requests (the kernel_info request of the start) are passed over; ``timeout`` is for
        each reply waited for."""
        self.manager.interrupt_kernel()
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != sent:
            reply = self.client.get_shell_msg(timeout=timeout)
        return dict(reply["content"])


@contextlib.contextmanager
def running_kernel(workspace: Path) -> Iterator[Kernel]:
    """A python3 kernel whose wfkit is this checkout's (then the test process's path) and whose
    runs go to ``workspace``; shut down at once when the block ends, however it ends."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "WFKIT_HOME": str(workspace), "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        yield Kernel(manager, client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
