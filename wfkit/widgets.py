"""Notebook widgets: a live view of a run, approval panels, and a workspace's open tickets.

They use only the public API of ``Run``, ``Workspace`` and ``Ticket``; displaying a run or
``wfkit.pending()`` in an interactive notebook builds them for you.
"""

from wfkit.notebook._widgets import ApprovalPanel, PendingView, RunView

__all__ = ["ApprovalPanel", "PendingView", "RunView"]
