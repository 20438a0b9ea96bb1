"""The replay's files: ``index.html`` for people, ``summary.json`` for scripts, JUnit XML for CI.

The page has the totals at the top, then a row per notebook: its status, links to the executed
notebook and the kernel's log, its differences grouped by run and by step (or the failing cell's
traceback), and its latency chart (baseline against this replay) in a column of its own.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfkit.replay._compare import Difference
from wfkit.replay._result import BAD_BASELINE, FAILED, NO_BASELINE, NotebookReport, plural, totals

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLOURS = {"ok": "#15803d", "baseline updated": "#2563eb", "regression": "#b91c1c", "failed": "#b91c1c"}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#1f2937}
h1{margin-bottom:.2em}
.totals{font-size:1.25em;margin:.3em 0 1em}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #d1d5db;padding:.4em .6em;vertical-align:top;text-align:left}
th{background:#f3f4f6}
td.status{font-weight:bold;white-space:nowrap}
td.status .note{display:block;font-weight:normal;white-space:normal;color:#1f2937;font-size:.9em}
td.num{text-align:right;white-space:nowrap}
.files a{display:block;white-space:nowrap}
details{margin:.2em 0}
summary{font-weight:600;cursor:pointer}
h4{margin:.4em 0 .1em;font-size:.95em}
ul{margin:.1em 0 .4em;padding-left:1.3em}
code{font-size:.9em}
code.value{display:inline-block;vertical-align:top;max-width:100%;box-sizing:border-box;white-space:pre-wrap;
background:#f3f4f6;padding:0 .2em;border-radius:3px}
pre.traceback{background:#fef2f2;border:1px solid #fecaca;padding:.6em;overflow-x:auto;max-width:70em;font-size:.85em}
td.findings{min-width:20em;overflow-wrap:anywhere}
td.findings pre{width:0;min-width:100%;box-sizing:border-box}
td.chart{width:420px}
td.chart img{width:100%;max-width:420px;min-width:240px;display:block}
"""


def _breakable(key: str) -> str:
    """A notebook's path that may wrap after a slash or an underscore, so a long name leaves the
    chart on screen."""
    return html.escape(key).replace("/", "/<wbr>").replace("_", "_<wbr>")


def _link(target: Path | None, base: Path, label: str) -> str:
    if target is None or not target.exists():
        return ""
    href = Path(os.path.relpath(target, base)).as_posix()
    return f'<a href="{html.escape(href)}">{html.escape(label)}</a>'


def _said(d: Difference) -> str:
    """A difference's words, and its values as they were printed: a DataFrame's row keeps the runs of
    spaces that align its columns, a stream its line breaks."""
    return "".join(
        html.escape(part) if isinstance(part, str) else f'<code class="value">{html.escape(part.printed)}</code>'
        for part in d.said
    )


def _grouped(diffs: Sequence[Difference]) -> str:
    """Differences under a heading per run (or per cell, for what a cell showed), and within a run
    under a heading per step."""
    by_run: dict[str, dict[str, list[Difference]]] = {}
    for d in diffs:
        by_run.setdefault(d.run_label or d.cell or "the notebook", {}).setdefault(d.step_label or "", []).append(d)
    parts = []
    for run, steps in by_run.items():
        body = []
        for step, items in steps.items():
            heading = f"<h4>{html.escape(step)}</h4>" if step else ""
            lines = "".join(f"<li>{_said(d)}</li>" for d in items)
            body.append(f"{heading}<ul>{lines}</ul>")
        count = sum(len(items) for items in steps.values())
        title = f"{html.escape(run)}: {plural(count, 'difference')}"
        parts.append(f"<details open><summary>{title}</summary>{''.join(body)}</details>")
    return "".join(parts)


def _row(r: NotebookReport, report: Path) -> str:
    colour = _COLOURS.get(r.status, "#b45309")
    status = html.escape(r.status)
    if r.nothing_compared:
        status += f' <span class="note">(nothing compared: {html.escape(r.nothing_compared)})</span>'
    files = "".join(
        link
        for link in (
            _link(r.output, report, "executed notebook"),
            _link(r.kernel_log, report, "kernel log"),
        )
        if link
    )
    findings = ""
    if r.error:
        e = r.error
        where = f"{html.escape(r.error_cell)}: " if r.error_cell else ""
        findings += f"<p>{where}<b>{html.escape(str(e.get('exception')))}</b>: "
        findings += f"{html.escape(str(e.get('message')))}</p>"
        if e.get("traceback"):
            findings += f'<pre class="traceback">{html.escape(str(e["traceback"]))}</pre>'
    if r.hint:
        findings += f"<p>{html.escape(r.hint)}</p>"
    if r.digested:
        findings += f'<p class="digested">{html.escape(r.digest_note)}</p>'
    findings += _grouped(r.diffs)
    if r.accept_note:
        findings += f'<p class="accept">{html.escape(r.accept_note)}</p>'
    chart = ""
    if r.plot is not None and r.plot.exists():
        src = html.escape(Path(os.path.relpath(r.plot, report)).as_posix())
        # Shrunk to its column; a click shows it at full size.
        chart = (
            f'<a href="{src}"><img src="{src}" alt="latency per step of {html.escape(r.key)}: baseline and '
            f'this replay"></a>'
        )
    return (
        f'<tr><td>{_breakable(r.key)}</td><td class="status" style="color:{colour}">{status}</td>'
        f'<td class="num">{r.runs}</td><td class="num">{r.seconds:.1f}</td><td class="files">{files}</td>'
        f'<td class="findings">{findings}</td><td class="chart">{chart}</td></tr>'
    )


def write_html(report: Path, rows: Sequence[NotebookReport], *, seconds: float) -> Path:
    page = report / "index.html"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page.write_text(
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>wfkit replay</title>\n'
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>wfkit replay</h1>\n"
        f'<p class="totals">{html.escape(totals(rows))}</p>\n'
        f"<p>{html.escape(when)}, {seconds:.1f} s</p>\n"
        "<table>\n<thead><tr><th>notebook</th><th>status</th><th>runs</th><th>seconds</th><th>files</th>"
        "<th>errors and differences</th><th>latency</th></tr></thead>\n<tbody>\n"
        + "\n".join(_row(r, report) for r in rows)
        + "\n</tbody>\n</table>\n</body>\n</html>\n",
        encoding="utf-8",  # the page says utf-8: never the machine's locale (cp1252 on Windows)
    )
    return page


def write_summary(report: Path, rows: Sequence[NotebookReport]) -> None:
    (report / "summary.json").write_text(
        json.dumps({"totals": totals(rows), "notebooks": [r.to_json() for r in rows]}, indent=1, default=str),
        encoding="utf-8",
    )


def write_junit(path: Path, rows: Sequence[NotebookReport], *, seconds: float) -> Path:
    """One test case per notebook: a regression, a missing or a bad baseline is a ``<failure>`` saying
    what differs or what is wrong, a notebook that did not run is an ``<error>`` with the cell's traceback."""
    suite = ET.Element(
        "testsuite",
        {
            "name": "wfkit replay",
            "tests": str(len(rows)),
            "failures": str(sum(r.status not in (FAILED,) and r.failing for r in rows)),
            "errors": str(sum(r.status == FAILED for r in rows)),
            "skipped": "0",
            "time": f"{seconds:.3f}",
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    for r in rows:
        folder, _, name = r.key.rpartition("/")
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": "wfkit.replay." + (folder.replace("/", ".") or "notebooks"),
                "name": name,
                "file": r.key,
                "time": f"{r.seconds:.3f}",
            },
        )
        if r.status == FAILED and r.error:
            e = r.error
            failed = ET.SubElement(case, "error", {"type": str(e.get("exception")), "message": r.error_line})
            failed.text = str(e.get("traceback") or e.get("message"))
        elif r.status in (NO_BASELINE, BAD_BASELINE):
            ET.SubElement(case, "failure", {"type": r.status, "message": r.hint or r.status}).text = r.hint
        elif r.failing:
            failure = ET.SubElement(
                case,
                "failure",
                {"type": r.status, "message": f"{plural(len(r.diffs), 'difference')} from the baseline"},
            )
            failure.text = "\n".join([*(str(d) for d in r.diffs), *([r.accept_note] if r.accept_note else [])])
        else:
            ET.SubElement(case, "system-out").text = f"{r.verdict}: {plural(r.runs, 'run')}"
    root = ET.Element("testsuites", {k: suite.get(k, "") for k in ("tests", "failures", "errors", "time")})
    root.append(suite)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def latency_plot(path: Path, title: str, base: Mapping[str, Any], current: Mapping[str, Any]) -> Path | None:
    """Baseline against this replay: P50 (bars) and P99 (ticks) per workflow and step, as a PNG."""
    fig = latency_chart(title, base, current)
    if fig is None:
        return None
    fig.savefig(path, dpi=_DPI)
    return path


# The chart is drawn about the size the report shows it (4.2 in at 100 dpi: its column's 420 px, or
# the 390 px a 1280 px window leaves it beside the differences), so its text is read near the size it
# was set in: drawn at 585 px and shrunk to 392, its step names were 7 px high and its legend 5 px.
_DPI = 100
_WIDTH_IN = 4.2


def latency_chart(title: str, base: Mapping[str, Any], current: Mapping[str, Any]) -> Figure | None:
    """The figure of :func:`latency_plot`; None when no step is in both. Steps are in the order
    this replay's runs met them (``current``'s order): a baseline file holds them sorted by name."""
    steps = [(w, s) for w, named in current.items() for s in named if s in base.get(w, {})]
    if not steps:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH_IN, 0.5 * len(steps) + 2.0), layout="constrained")
    ax = fig.subplots()
    y = range(len(steps))
    for offset, (label, source, colour) in enumerate(
        (("baseline", base, "#2a6f97"), ("this replay", current, "#e0a100"))
    ):
        ys = [i + (offset - 0.5) * 0.4 for i in y]
        p50, p99 = ([source[w][s][q] * 1000 for w, s in steps] for q in ("p50", "p99"))
        ax.barh(ys, p50, height=0.4, color=colour, label=f"{label} P50")
        ax.scatter(p99, ys, color=colour, marker="|", s=120, label=f"{label} P99")
    from matplotlib.font_manager import FontProperties

    from wfkit.logs._plots import fit_text

    points = float(FontProperties(size="medium").get_size_in_points())
    # A long step or workflow name on one line left the bars no room in a chart the report's width.
    ax.set_yticks(list(y), [fit_text(f"{s} ({w})", _WIDTH_IN * 0.45, points) for w, s in steps])
    ax.invert_yaxis()
    ax.set(xlabel="latency (ms)")
    # Over the figure, not the axes: centred over axes pushed right by long step names, a long
    # notebook path ran off the image's right edge ("...latency per st").
    # Broken into lines where a path is longer than the image is wide (its ends were cut off).
    fig.suptitle(f"{fit_text(title, _WIDTH_IN - 0.2, points)}\nlatency per step", fontsize="medium")
    # Below the axes, never over a bar or a P99 tick (inside, "best" still covered some).
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    return fig
