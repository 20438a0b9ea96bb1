"""The one error of the replay layer."""

from __future__ import annotations


class ReplayError(ValueError):
    """Bad replay input, refused before anything runs (``wfkit replay`` exits 2): a path that holds
    no notebook, a parameter the notebook does not declare, an unknown kernel or mask name."""
