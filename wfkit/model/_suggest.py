"""The closest name to a misspelt one, for error messages ("did you mean 'retry'?"): one wording
for every place a user can mistype a step, an option, a keyword or a parameter."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


def closest(name: str, known: Iterable[str]) -> str | None:
    """The one of ``known`` closest to ``name``, or None if none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``known`` to ``name``, or ``""`` if none is close."""
    match = closest(name, known)
    return f" (did you mean {match!r}?)" if match is not None else ""


def unexpected_keywords(
    call: str, unknown: Iterable[str], takes: Iterable[str], meant: Mapping[str, str] | None = None
) -> TypeError:
    """The TypeError for keywords ``call`` does not take, each with its closest, and the ones it takes;
    ``meant``: what a keyword of another library's vocabulary means here, where no spelling is close."""
    allowed = sorted(takes)
    meant = meant or {}
    hints = ", ".join(
        f"{name!r} (did you mean {meant[name]})" if name in meant else f"{name!r}{did_you_mean(name, allowed)}"
        for name in unknown
    )
    return TypeError(f"{call}() got unexpected keyword argument(s) {hints}; it takes {', '.join(allowed)}")
