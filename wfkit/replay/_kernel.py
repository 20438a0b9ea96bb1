"""What a replay's kernel does before the notebook's first cell, so that what its cells show holds
everything the comparison needs.

pandas cuts a table of more than 60 rows to its first and last few (``...`` between them), in its
text and its HTML alike, and a long string in a cell to 50 characters; numpy cuts an array of more
than 1000 elements to its first and last three: a value changed in what they cut would replay ok. A
replay's kernel shows every row, column, character and element instead, in what the cells display
and what they print, up to :data:`WHOLE_CELLS` cells. A bigger table (a 10-million-row DataFrame
would be gigabytes of text in the baseline) is shown as pandas shows it in a notebook, followed by
a line saying what it is and two digests of every cell (:data:`DIGESTED`): one of its floats at
about 6 significant digits, as it shows them, and one at full precision, so a change anywhere is
still a difference, and one below what the table shows too; so is a bigger array a cell displays.
(An array a cell prints is shown whole whatever its size: numpy has no hook on ``str``.)

pandas shows a float at 6 decimals and numpy at 8: a deterministic change at the 7th (an eval's mean
0.8123451 -> 0.8123454) would read the same. So each table, series or array a cell displays, of up
to :data:`WHOLE_CELLS` cells, also gets every float it holds at full precision beside its text
(:data:`VALUES_MIME`, :func:`values_of`), which the replay compares within the notebook's
``float_tolerance``, as it does the runs' signals. A digest cannot be compared within a tolerance:
the full-precision one rounds each float to a grid of the tolerance (:func:`_at_tolerance`), so a
change beyond the tolerance always changes it, and one within it only where it crosses a rounding
boundary (rarely: it needs a float that differs from one run to the next to begin with). The
replay hands its kernel the tolerance (:data:`FLOAT_TOLERANCE`).

A matplotlib figure reaches the notebook as a PNG, whose bytes change with the machine's freetype
and matplotlib (and whose pixels move with them), and a text that says only its size and number of
axes: a changed plot would replay ok. A replay's kernel adds to each figure it shows a description
of what it draws (:data:`FIGURE_MIME`): per axes its title, labels, scales, legend and texts, and
what it holds (how many lines, patches, collections and images, its limits, and a digest of every
coordinate, colour and tick label at 6 significant digits), which is the same wherever it is drawn.

The replay hands its kernel ``$PYTHONSTARTUP`` naming :data:`STARTUP`, which IPython runs at start
in the notebook's namespace, before any cell; it calls :func:`setup`, defines no name, and sets
``$PYTHONSTARTUP`` back to what the user had (whose file then runs, as it would have:
:func:`run_user_startup`). Nothing is written into the notebook, on disk or as a cell, and the
numbering of its cells is untouched; a kernel Jupyter starts never runs this, so what a user sees
there is pandas' usual table.

How the setup went is written to a file beside the executed notebook (:data:`SETUP_REPORT`): when it
failed (the user's startup file raised, the kernel's Python cannot import wfkit, numpy or pandas),
or never ran (a kernelspec that sets its own ``$PYTHONSTARTUP``), the cells showed what a replay
cannot compare, and :func:`setup_failure` fails the notebook naming the cause.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

STARTUP = Path(__file__).with_name("_startup.py")
USER_STARTUP = "WFKIT_REPLAY_USER_PYTHONSTARTUP"  # the user's $PYTHONSTARTUP, while the replay's stands in
SETUP_REPORT = "WFKIT_REPLAY_SETUP_REPORT"  # the file _startup.py writes how the setup went to (it names it too)
FIGURE_MIME = "application/vnd.wfkit.figure+json"  # {"shape": [lines], "data": [lines]}
VALUES_MIME = "application/vnd.wfkit.values+json"  # what values_of returns
FLOAT_TOLERANCE = "WFKIT_REPLAY_FLOAT_TOLERANCE"  # the notebook's float_tolerance, for the full-precision digest
DIGITS = 6  # significant digits of a coordinate: a float summed in another order still reads the same
WHOLE = ("display.max_rows", "display.max_columns", "display.max_colwidth", "display.max_seq_items")
WHOLE_CELLS = 10_000  # a table or array of more is shown cut, with a digest of every cell
MANTISSA_BITS = 20  # a float digested at about 6 significant digits, as tables show them and figures digest them
# What follows a table or an array too big to show whole; _outputs reads it back to say what was digested.
# A baseline of format 6 holds the line without its full-precision part.
DIGESTED = re.compile(
    r"<wfkit replay: (?P<what>[^<>]+?), digest of every cell (?P<shown>[0-9a-f]+)"
    r"(?:, at full precision (?P<full>[0-9a-f]+))?>"
)


def environment(env: dict[str, str], report: Path, float_tolerance: float) -> dict[str, str]:
    """What to add to the environment ``env`` of the process that starts the replay's kernel, which
    writes how its setup went to ``report`` (read it with :func:`setup_failure`) and digests big
    tables' floats within ``float_tolerance``."""
    report.unlink(missing_ok=True)
    return {
        "PYTHONSTARTUP": str(STARTUP),
        USER_STARTUP: env.get("PYTHONSTARTUP", ""),
        SETUP_REPORT: str(report),
        FLOAT_TOLERANCE: repr(float_tolerance),
    }


def setup() -> None:
    """In the replay's kernel, at its start: pandas shows tables whole and numpy arrays whole (those
    of more than :data:`WHOLE_CELLS` cut, with their digests), each table and array shown gets its
    floats at full precision beside its text, each figure shown its description beside its PNG."""
    import numpy as np
    import pandas as pd

    tolerance = float(os.environ.pop(FLOAT_TOLERANCE, "1e-9"))

    cut = {option: pd.get_option(option) for option in WHOLE}  # pandas' own, for tables too big to show whole
    for option in WHOLE:
        pd.set_option(option, None)
    threshold = np.get_printoptions()["threshold"]
    np.set_printoptions(threshold=sys.maxsize)
    # On the classes, not as IPython formatters: print(table) calls __repr__ too. HTML is cut alike, so
    # the executed notebook stays small; it says nothing of the digest, being compared nowhere.
    for kind, method in ((pd.DataFrame, "__repr__"), (pd.Series, "__repr__"), (pd.DataFrame, "_repr_html_")):
        digest = tolerance if method == "__repr__" else None
        setattr(kind, method, _capped(getattr(kind, method), cut, digest=digest))
    from IPython import get_ipython
    from IPython.core.formatters import JSONFormatter

    shell = get_ipython()
    if shell is not None:
        # A formatter of its own mime type, beside the PNG: the notebook shows the figure as before.
        # Its print method names nothing, so no other object's _repr_json_ lands in it.
        figures = JSONFormatter(parent=shell.display_formatter, format_type=FIGURE_MIME, print_method="_wfkit_figure_")
        # By Figure's base class: when pyplot sets up the inline backend, IPython drops every
        # formatter's printer of Figure itself (select_figure_formats), and this one would go too.
        figures.for_type_by_name("matplotlib.figure", "FigureBase", describe_figure)  # type: ignore[no-untyped-call]
        shell.display_formatter.formatters[FIGURE_MIME] = figures
        values = JSONFormatter(parent=shell.display_formatter, format_type=VALUES_MIME, print_method="_wfkit_values_")
        for kind in (pd.DataFrame, pd.Series, np.ndarray):
            values.for_type(kind, values_of)  # type: ignore[no-untyped-call]
        shell.display_formatter.formatters[VALUES_MIME] = values
        # A displayed array (and one inside a displayed list) over the cap: numpy's own cut, then its digest.
        plain = shell.display_formatter.formatters["text/plain"]
        plain.for_type(np.ndarray, functools.partial(_array_text, threshold=threshold, tolerance=tolerance))


def _capped(
    method: Callable[[Any], str | None], cut: dict[str, Any], *, digest: float | None
) -> Callable[[Any], str | None]:
    """``method`` of a table, showing one of more than :data:`WHOLE_CELLS` cells with pandas' own
    options ``cut`` (and, for its text, followed by its digest line, at the tolerance ``digest``)."""

    @functools.wraps(method)
    def shown(table: Any) -> str | None:
        if table.size <= WHOLE_CELLS:
            return method(table)
        import pandas as pd

        with pd.option_context(*itertools.chain.from_iterable(cut.items())):
            text = method(table)
        return f"{text}\n{digest_line(table, digest)}" if digest is not None and text is not None else text

    return shown


def _array_text(array: Any, printer: Any, cycle: bool, *, threshold: int, tolerance: float) -> None:
    """An IPython text printer of numpy arrays: whole up to :data:`WHOLE_CELLS` elements, else as
    numpy shows it (``threshold``) followed by its digest line."""
    if array.size <= WHOLE_CELLS:
        printer.text(repr(array))
        return
    import numpy as np

    with np.printoptions(threshold=threshold):
        printer.text(f"{array!r}\n{digest_line(array, tolerance)}")


def digest_line(value: Any, tolerance: float) -> str:
    """What ``value`` (a DataFrame, a Series or a numpy array) is, and two digests of every cell: its
    columns and their types, its index, and each value, a float at about 6 significant digits (as
    shown), then at full precision within ``tolerance`` (:func:`_at_tolerance`)."""
    import numpy as np
    import pandas as pd

    shown = _digest(value, _rounded)
    # Salted: where rounding changes nothing (0.5, 0.25), the two would read as one digest twice.
    full = _digest(value, functools.partial(_at_tolerance, tolerance=tolerance), salt=b"full precision")
    if isinstance(value, pd.Series):
        what = f"a series of {len(value):,} values"
    elif isinstance(value, pd.DataFrame):
        what = f"a table of {value.shape[0]:,} rows x {value.shape[1]:,} columns"
    else:
        array = np.asarray(value)
        shape = f" ({' x '.join(map(str, array.shape))})" if array.ndim > 1 else ""
        what = f"an array of {array.size:,} elements{shape}"
    return f"<wfkit replay: {what}, digest of every cell {shown}, at full precision {full}>"


def _digest(value: Any, rounded: Callable[[Any], Any], salt: bytes = b"") -> str:
    """A digest of every cell of ``value``, its floats ``rounded`` first."""
    import numpy as np
    import pandas as pd

    digest = hashlib.sha256(salt)
    if isinstance(value, pd.DataFrame | pd.Series):
        frame = value.to_frame() if isinstance(value, pd.Series) else value
        digest.update(repr([(str(name), str(dtype)) for name, dtype in frame.dtypes.items()]).encode())
        columns = {
            n: rounded(column.to_numpy()) if _is_float(column.dtype) else column.array
            for n, (_name, column) in enumerate(frame.items())
        }
        try:
            rows = pd.util.hash_pandas_object(pd.DataFrame(columns, index=frame.index), index=True)
        except TypeError:  # unhashable values (lists, dicts) in a column of objects: hashed by their repr
            for n, column in columns.items():
                if np.asarray(column).dtype == object:
                    columns[n] = np.array([repr(v) for v in column], dtype=object)
            rows = pd.util.hash_pandas_object(pd.DataFrame(columns, index=frame.index), index=True)
        digest.update(rows.to_numpy().tobytes())
    else:
        array = np.asarray(value)
        digest.update(f"{array.dtype} {array.shape}".encode())
        if array.dtype.kind == "O":
            digest.update(repr(array.tolist()).encode())
        elif array.dtype.kind in "fc":
            for part in (array.real, array.imag) if array.dtype.kind == "c" else (array,):
                digest.update(rounded(part).tobytes())
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _is_float(dtype: Any) -> bool:
    import numpy as np

    return isinstance(dtype, np.dtype) and dtype.kind == "f"


def _rounded(values: Any, bits: int = MANTISSA_BITS) -> Any:
    """Floats with their mantissa rounded to ``bits`` bits, every NaN the same NaN: a sum taken in
    another order digests the same, as it shows the same."""
    import numpy as np

    mantissa, exponent = np.frexp(values)
    rounded = np.ldexp(np.round(mantissa * 2**bits), exponent - bits)
    return np.where(np.isnan(values), np.nan, rounded)


def _at_tolerance(values: Any, tolerance: float) -> Any:
    """Floats on a grid as fine as ``tolerance`` (relative, and absolute near 0, as the replay
    compares floats): two that differ by more than it never land on the same point."""
    import numpy as np

    if tolerance <= 0:  # every bit
        return np.where(np.isnan(values), np.nan, values)
    # A mantissa in [0.5, 1) on a grid of 2**-bits moves a float by 2**(1 - bits) of itself at most.
    bits = min(52, max(1, math.ceil(math.log2(1 / tolerance)) + 1))
    return _rounded(np.where(np.abs(values) < tolerance, 0.0, values), bits)


def values_of(value: Any) -> dict[str, Any] | None:
    """Every float a table, a series or an array of up to :data:`WHOLE_CELLS` cells holds, at full
    precision, where its text shows them at display precision (None if it holds none):
    ``{"shown": "pandas", "precision": 6, "rows": [labels], "columns": [[label, [cells]], ...]}``
    (a series' one column labelled None) or ``{"shown": "numpy", "precision": 8, "shape": [...],
    "values": [cells]}``; a cell that is not a float is None, a NaN or infinity its name, a complex
    ``{"re": ..., "im": ...}``."""
    import numpy as np
    import pandas as pd

    if value.size > WHOLE_CELLS:  # shown cut, with its digests
        return None
    if isinstance(value, np.ndarray):
        cells = [_full(v) for v in value.ravel().tolist()] if value.dtype.kind in "fcO" else []
        if not any(c is not None for c in cells):
            return None
        precision = np.get_printoptions()["precision"]
        return {"shown": "numpy", "precision": precision, "shape": list(value.shape), "values": cells}
    frame = value.to_frame() if isinstance(value, pd.Series) else value
    columns: list[list[Any]] = []
    for label, column in frame.items():
        try:
            if pd.api.types.is_float_dtype(column.dtype):  # numpy's and pandas' own (Float64, with NA)
                cells = [_full(v) for v in column.to_numpy(dtype=float, na_value=np.nan).tolist()]
            elif column.dtype.kind in "cO":
                cells = [_full(v) for v in column.tolist()]
            else:
                continue
        except (TypeError, ValueError, AttributeError):
            # A column of some extension type that will not give its values: compared as shown. An
            # error here would land in the cell's output, a difference of the replay's own making.
            continue
        if any(c is not None for c in cells):
            columns.append([None if isinstance(value, pd.Series) else _label(label), cells])
    if not columns:
        return None
    rows = [_label(label) for label in frame.index]
    return {"shown": "pandas", "precision": pd.get_option("display.precision"), "rows": rows, "columns": columns}


def _full(cell: Any) -> Any:
    """A cell as :func:`values_of` holds it."""
    import numpy as np

    if isinstance(cell, bool | np.bool_):
        return None
    if isinstance(cell, float | np.floating):
        number = float(cell)
        return number if math.isfinite(number) else str(number)  # JSON has no NaN
    if isinstance(cell, complex | np.complexfloating):
        return {"re": _full(cell.real), "im": _full(cell.imag)}
    return None


def _label(label: Any) -> Any:
    """A row or column label, for a difference to name: an int or a string as itself, else its text."""
    import numpy as np

    if isinstance(label, np.integer):
        return int(label)
    return label if isinstance(label, int | str) and not isinstance(label, bool) else str(label)


def run_user_startup() -> None:
    """In the replay's kernel, after :func:`setup`: the user's own startup file runs, in the
    notebook's namespace, and ``$PYTHONSTARTUP`` names it again."""
    from IPython import get_ipython

    user = os.environ.pop(USER_STARTUP, "")
    if not user:
        os.environ.pop("PYTHONSTARTUP", None)
        return
    os.environ["PYTHONSTARTUP"] = user
    shell = get_ipython()
    if shell is not None:
        shell.safe_execfile(user, shell.user_ns, raise_exceptions=True)


def setup_failure(report: Path, *, kernel: str, user_startup: str) -> dict[str, Any] | None:
    """Why the kernel's setup failed, from ``report``, as a failed notebook's error (None if it went
    well). Call it only when a cell of a Python notebook started: a kernel that never came up wrote
    nothing either."""
    try:
        said: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {
            "kind": "setup",
            "cell": None,
            "exception": "kernel setup did not run",
            "message": f"the kernel {kernel!r} did not run the replay's $PYTHONSTARTUP, which sets it up before "
            "the notebook's first cell (its kernelspec sets PYTHONSTARTUP, or it does not start IPython): pandas "
            "and numpy cut what the cells showed, so the notebook was not compared; replay it with a kernel that runs "
            "$PYTHONSTARTUP (`--kernel python3`)",
            "traceback": f"no report from the kernel's setup at {report}",
        }
    if said.get("ok"):
        return None
    error = f"{said.get('exception')}: {said.get('message')}" if said.get("message") else str(said.get("exception"))
    file = str(said.get("file") or "")
    if file:
        error += f" ({Path(file).name if file == user_startup else file} line {said.get('line')})"
    if said.get("stage") == "user":
        message = (
            f"{error}, raised by your $PYTHONSTARTUP file {user_startup}, which the replay's kernel runs before the "
            "notebook's first cell: fix that file, or replay without it (`PYTHONSTARTUP= wfkit replay ...`); the "
            "notebook was not compared"
        )
    else:
        fix = (
            "the kernel's Python must import wfkit, numpy and pandas: install them there, or replay with a kernel "
            "that has them (`--kernel NAME`); a file beside the notebook named like one of them hides it"
            if said.get("exception") in ("ImportError", "ModuleNotFoundError")
            else "its traceback is in the kernel's log"
        )
        message = (
            f"{error}, as the replay set up its kernel before the notebook's first cell (to show tables and arrays "
            f"whole and describe figures): the notebook was not compared; {fix}"
        )
    return {
        "kind": "setup",
        "cell": None,
        "exception": "kernel setup failed",
        "message": message,
        "traceback": str(said.get("traceback") or error),
    }


def _number(value: Any) -> str:
    return f"{float(value):.{DIGITS}g}"


def _numbers(values: Any) -> str:
    import numpy as np

    array: Any = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
    return ",".join(map(_number, array.ravel()))


def _colour(value: Any) -> str:
    from matplotlib.colors import to_hex

    try:
        return to_hex(value, keep_alpha=True)
    except ValueError:  # several colours (a collection's): each of them
        return ";".join(to_hex(c, keep_alpha=True) for c in value)


def describe_figure(figure: Any) -> dict[str, list[str]]:
    """What ``figure`` draws, as lines of text that repeat wherever it is drawn: ``shape`` (per axes
    its title, labels, scales, legend entries and texts) and ``data`` (per axes how many artists of
    each kind, its limits, and a digest of every coordinate, colour and tick label)."""
    shape: list[str] = []
    data: list[str] = []
    shape.extend(f"text {t.get_text()!r}" for t in figure.texts if t.get_text())  # its suptitle too
    for n, ax in enumerate(figure.get_axes(), 1):
        if not ax.get_visible():
            shape.append(f"axes {n}: hidden")
            continue
        shape.append(
            f"axes {n}: title {ax.get_title()!r}, x {ax.get_xlabel()!r} ({ax.get_xscale()}), "
            f"y {ax.get_ylabel()!r} ({ax.get_yscale()})"
        )
        legend = ax.get_legend()
        if legend is not None:
            shape.append(f"axes {n} legend: " + ", ".join(repr(t.get_text()) for t in legend.get_texts()))
        shape.extend(f"axes {n} text {t.get_text()!r}" for t in ax.texts if t.get_text())
        drawn: list[str] = []
        for line in ax.lines:
            drawn.append(f"line {_numbers(line.get_xydata())} {_colour(line.get_color())} {line.get_linestyle()}")
        for patch in ax.patches:
            corners = patch.get_patch_transform().transform(patch.get_path().vertices)
            drawn.append(f"patch {_numbers(corners)} {_colour(patch.get_facecolor())}")
        for collection in ax.collections:
            paths = ";".join(_numbers(path.vertices) for path in collection.get_paths())
            drawn.append(
                f"collection {_numbers(collection.get_offsets())} {paths} {_colour(collection.get_facecolor())}"
            )
        for image in ax.images:
            drawn.append(f"image {_numbers(image.get_array())}")
        for axis in (ax.xaxis, ax.yaxis):
            drawn.append("ticks " + ",".join(t.get_text() for t in axis.get_ticklabels()))
        digest = hashlib.sha256("\n".join(drawn).encode()).hexdigest()[:12]
        kinds = [("line", "lines", ax.lines), ("patch", "patches", ax.patches)]
        kinds += [("collection", "collections", ax.collections), ("image", "images", ax.images)]
        counts = ", ".join(f"{len(a)} {one if len(a) == 1 else many}" for one, many, a in kinds if len(a))
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        data.append(
            f"axes {n}: {counts or 'nothing drawn'}; x {_number(x0)} to {_number(x1)}, "
            f"y {_number(y0)} to {_number(y1)}; digest {digest}"
        )
    return {"shape": shape, "data": data}
