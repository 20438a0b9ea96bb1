"""A cell run as papermill runs it (a kernel with no frontend, as in CI or ``wfkit replay``), and
what the saved notebook shows of it."""

from __future__ import annotations

from pathlib import Path


def saved_outputs(folder: Path, source: str) -> list[str]:
    """Each output of ``source``, run in a one-cell notebook by papermill in ``folder``, as the
    saved notebook holds it: a stream's text, else a display's ``text/plain``."""
    import nbformat
    import papermill

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    given, saved = folder / "progress.ipynb", folder / "progress-out.ipynb"
    nbformat.write(notebook, given)
    papermill.execute_notebook(str(given), str(saved), kernel_name="python3", cwd=str(folder))
    (cell,) = nbformat.read(saved, as_version=4).cells
    return [output.get("text") or "".join(output.get("data", {}).get("text/plain", "")) for output in cell.outputs]
