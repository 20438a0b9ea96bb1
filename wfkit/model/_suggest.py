"""The closest name to a misspelt one, for error messages ("did you mean 'retry'?"): one wording
for every place a user can mistype a step, an option, a keyword or a parameter."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``known`` to ``name``, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unexpected_keywords(call: str, unknown: Iterable[str], takes: Iterable[str]) -> TypeError:
    """The TypeError for keywords ``call`` does not take, each with its closest, and the ones it takes."""
    allowed = sorted(takes)
    hints = ", ".join(f"{name!r}{did_you_mean(name, allowed)}" for name in unknown)
    return TypeError(f"{call}() got unexpected keyword argument(s) {hints}; it takes {', '.join(allowed)}")
