"""The closest name to a misspelt one, for error messages ("did you mean 'retry'?"): one wording
for every place a user can mistype a step, an option, a keyword, a parameter or a file's name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path


def closest(name: str, known: Iterable[str]) -> str | None:
    """The one of ``known`` closest to ``name``, or None if none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``known`` to ``name``, or ``""`` if none is close."""
    match = closest(name, known)
    return f" (did you mean {match!r}?)" if match is not None else ""


def misnamed(given: Iterable[str], wanted: Iterable[str]) -> str:
    """`` ('qeury' given: did you mean 'query'?)`` for the names given beside ``wanted`` ones that
    are missing (a run's inputs against those its workflow declares), each close to one of them; or
    ``""`` when none is."""
    wanted = list(wanted)
    pairs = [(name, closest(name, wanted)) for name in given if name not in wanted]
    said = [f"{name!r} given: did you mean {match!r}?" for name, match in pairs if match is not None]
    return f" ({'; '.join(said)})" if said else ""


def files_beside(path: Path, suffixes: Iterable[str], *, kind: str) -> str:
    """What is beside a file that is not at ``path``, for the error saying so (errno's bare "No such
    file or directory" names nothing to do): ``; FOLDER holds a.yaml, b.yaml (did you mean
    'a.yaml'?)``, the files of its folder ending in one of ``suffixes`` (a typo, a file renamed; the
    first eight, sorted), or ``; FOLDER holds no KIND``, or ``; there is no folder FOLDER``."""
    folder = path.parent
    named = "the current folder" if str(folder) == "." else str(folder)
    endings = {suffix.lower() for suffix in suffixes}
    found = sorted(p.name for p in folder.glob("*") if p.suffix.lower() in endings and p.is_file())
    if found:
        return (
            f"; {named} holds {', '.join(found[:8])}{' ...' if len(found) > 8 else ''}{did_you_mean(path.name, found)}"
        )
    if folder.is_dir():
        return f"; {named} holds no {kind}"
    return f"; there is no folder {folder}"


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
