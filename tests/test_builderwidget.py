"""wf.edit(): the builder widget moves the spec, the problems and Save between browser and kernel.

These tests drive the widget in-process (the browser's side is tests/test_builder_browser.py)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
import wfkit.examples as ex
from wfkit.notebook._builderwidget import FlowEditor


def _sent(editor: FlowEditor, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    monkeypatch.setattr(editor, "send", lambda content, buffers=None: messages.append(content))
    return messages


def test_editor_on_a_new_file_starts_empty_with_palette_and_tools(tmp_path: Path) -> None:
    """A path that does not exist yet: an empty flow named after the file, the module's step
    functions in the palette, the registry's tools and the fixed operator list."""
    editor = wf.edit(tmp_path / "router.yaml", steps=ex, tools=ex.reliable_tools())
    assert {"wfkit_flow": 1, "name": "router", "entry": None, "steps": {}} == editor.spec
    assert ["steps"] == editor.problems[0]["path"]
    assert ["classify", "code_search", "data_query", "generate_answer", "web_search"] == [
        p["name"] for p in editor.palette
    ]
    assert ["web_search", "code_interpreter", "sql_query", "file_read"] == [t["name"] for t in editor.tools]
    assert ["eq", "ne", "gt", "ge", "lt", "le", "contains", "in", "exists"] == editor.operators
    assert editor.flow is None
    bundle = Path(wf.__file__).parent / "notebook" / "static" / "builder.js"
    assert bundle.read_text() == editor._esm  # shipped in the package, not fetched


def test_each_edit_is_checked_by_the_kernel(tmp_path: Path) -> None:
    """Setting the spec (as the browser does after each edit) updates the problems at once."""
    editor = wf.edit(tmp_path / "router.yaml", steps=ex)
    spec = ex.rag_router().to_spec()
    editor.spec = spec
    assert [] == editor.problems
    broken = ex.rag_router().to_spec()
    broken["routes"]["classify"]["routes"][0]["when"]["op"] = "equals"
    editor.spec = broken
    assert [["routes", "classify", "routes", 0, "when", "op"]] == [p["path"] for p in editor.problems]


def test_save_message_writes_the_file_and_the_workflow(tmp_path: Path) -> None:
    """The browser's Save writes the spec and makes editor.flow a Workflow that runs."""
    editor = wf.edit(tmp_path / "router.yaml", steps=ex, tools=ex.reliable_tools())
    editor._on_message(editor, {"type": "save", "spec": ex.rag_router().to_spec()}, None)
    assert editor.status.startswith("saved router.yaml: 5 steps")
    assert editor.flow is not None
    assert ex.rag_router().version == editor.flow.version
    assert "succeeded" == editor.flow.run({"query": "Random question"}, workspace=False).status
    assert (tmp_path / "router.yaml").exists()


def test_editor_flow_warns_while_the_builder_shows_changes_not_saved(tmp_path: Path) -> None:
    """A route's value changed in the builder and not saved: ``editor.flow`` (what the run cell
    runs) is the flow as last saved, and says so; the run took the old route without a word. A box
    moved is no change to warn of; after Save the warning is gone."""
    editor = wf.edit(tmp_path / "router.yaml", steps=ex, tools=ex.reliable_tools())
    saved = ex.rag_router().to_spec()
    editor._on_message(editor, {"type": "save", "spec": saved}, None)
    editor.spec = {**saved, "metadata": {"layout": {"classify": [10, 10]}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert editor.flow is not None
    changed = ex.rag_router().to_spec()
    changed["routes"]["classify"]["routes"][0]["when"]["value"] = "python"
    editor.spec = changed
    with pytest.warns(
        UserWarning, match=r"router.yaml has changes that are not saved: editor.flow is the flow as last"
    ):
        flow = editor.flow
    assert flow is not None
    assert "code" == flow.to_spec()["routes"]["classify"]["routes"][0]["when"]["value"]
    editor._on_message(editor, {"type": "save", "spec": changed}, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "python" == editor.flow.to_spec()["routes"]["classify"]["routes"][0]["when"]["value"]


def test_editing_a_workflow_saves_it_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wf.edit(flow): the palette holds its functions, Save goes to <name>.yaml and changes flow itself."""
    monkeypatch.chdir(tmp_path)
    flow = ex.rag_router()
    editor = wf.edit(flow)
    assert flow.to_spec() == editor.spec
    spec = dict(editor.spec)
    spec["steps"] = {**spec["steps"], "generate_answer": {"fn": "wfkit.examples:generate_answer", "max_visits": 2}}
    editor._on_message(editor, {"type": "save", "spec": spec}, None)
    assert editor.flow is flow
    assert 2 == flow.steps["generate_answer"].max_visits
    assert (tmp_path / "rag-router.yaml").exists()


def test_opening_a_broken_file_shows_it_with_its_problems(tmp_path: Path) -> None:
    """A spec whose function is missing opens as written, with the problem listed and no Workflow."""
    path = tmp_path / "broken.yaml"
    path.write_text("wfkit_flow: 1\nname: broken\nentry: a\nsteps:\n  a: {fn: missing_fn}\n")
    editor = wf.edit(path, steps={})
    assert "missing_fn" == editor.spec["steps"]["a"]["fn"]
    assert [["steps", "a", "fn"]] == [p["path"] for p in editor.problems]
    assert editor.flow is None


def test_new_step_message_writes_a_stub_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "New step" writes the stub, adds it to the palette and tells the browser to place it."""
    editor = wf.edit(tmp_path / "flow.yaml", steps={}, stub_file=tmp_path / "flow_stubs.py")
    sent = _sent(editor, monkeypatch)
    editor._on_message(editor, {"type": "new_step", "name": "rerank"}, None)
    assert [{"type": "step_created", "name": "rerank", "ref": "flow_stubs:rerank", "file": "flow_stubs.py"}] == sent
    assert ["rerank"] == [p["name"] for p in editor.palette]
    editor._on_message(editor, {"type": "new_step", "name": "rerank"}, None)
    assert "error" == sent[-1]["type"]
    assert "exists already" in sent[-1]["message"]


def test_stubs_written_in_an_earlier_session_are_in_the_palette_again(tmp_path: Path) -> None:
    """Opened again, the builder offers the functions "Write stub" wrote to the stub file before
    (they were missing, and their steps read "not in the palette"), beside those of steps=."""
    (tmp_path / "reopened_steps.py").write_text("def escalate(state, ctx):\n    return {}\n")
    editor = wf.edit(tmp_path / "reopened.yaml", steps=ex, tools=ex.reliable_tools())
    names = [p["name"] for p in editor.palette]
    assert "escalate" in names
    assert "classify" in names
    assert "reopened_steps:escalate" == next(p["ref"] for p in editor.palette if p["name"] == "escalate")


def test_a_spec_using_a_written_stub_keeps_naming_it_by_module_when_opened_again(tmp_path: Path) -> None:
    """Opened again on a spec whose step runs a function "Write stub" wrote, the step still names it
    ``module:function`` (offering the stub file's functions reloaded the module, and the step read
    ``escalate``, a bare name Save would have written and `wfkit validate` cannot import)."""
    (tmp_path / "again_steps.py").write_text("def escalate(state, ctx):\n    return {}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        spec = {
            "wfkit_flow": 1,
            "name": "again",
            "entry": "escalate",
            "steps": {"escalate": {"fn": "again_steps:escalate"}},
        }
        wf.Workflow.from_spec(spec).save(tmp_path / "again.yaml")
        editor = wf.edit(tmp_path / "again.yaml", steps=ex)
    finally:
        sys.path.remove(str(tmp_path))
    assert "again_steps:escalate" == editor.spec["steps"]["escalate"]["fn"]
    assert "again_steps:escalate" == next(p["ref"] for p in editor.palette if p["name"] == "escalate")


def test_edit_refuses_what_it_cannot_open() -> None:
    """Anything but a Workflow or a path is refused with what to pass."""
    with pytest.raises(TypeError, match=r"wf\.edit takes a Workflow or a spec file path, got int"):
        wf.edit(42)  # type: ignore[arg-type]


def test_missing_anywidget_names_the_extra_to_install() -> None:
    """Without anywidget, wf.edit says which extra to install."""
    code = (
        "import sys; sys.modules['anywidget'] = None\n"
        "import wfkit as wf\n"
        "try:\n    wf.edit\nexcept ImportError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'the flow builder needs anywidget: pip install "wfkit[builder]"' == out.stdout.strip()


def test_text_fallback_says_file_steps_and_problems(tmp_path: Path) -> None:
    """Headless (papermill) the editor reads as its file, its step count and its problem count."""
    editor = wf.edit(tmp_path / "router.yaml", steps=ex)
    assert "<FlowEditor router.yaml: 0 steps, 1 problem>" == repr(editor)
    editor.spec = ex.rag_router().to_spec()
    assert "<FlowEditor router.yaml: 5 steps, no problems>" == repr(editor)


def _builder_texts(editor: FlowEditor) -> str:
    """Everything the kernel hands the builder to show: its status line and its problems."""
    return " ".join([editor.status, *(p["message"] for p in editor.problems)])


def test_what_only_the_edit_call_can_change_is_said_once_in_the_cell_not_in_the_builder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Opened with no step functions, no tool registry and a path in a folder that does not exist,
    wf.edit says so once under its cell, to whoever wrote the call (steps=, tools=, path=); the
    builder's own status line tells its user what they can do there (create the folder), without
    the call's arguments, which nothing inside the builder can change."""
    editor = wf.edit(tmp_path / "specs" / "router.yaml", steps=[])
    said = capsys.readouterr().out
    assert said.startswith("wf.edit: what the builder cannot change, only this call can:\n")
    assert "- no step functions on offer (functions taking state, or state and ctx): pass steps=" in said
    assert "- no tool registry, so routes can bind no tools: pass tools=" in said
    assert f"- Save writes {tmp_path / 'specs' / 'router.yaml'}, but the folder {tmp_path / 'specs'} does not" in said
    assert 1 == said.count("wf.edit:")
    editor._on_message(editor, {"type": "save", "spec": ex.rag_router().to_spec()}, None)
    assert editor.status.startswith(f"not saved: cannot write {tmp_path / 'specs' / 'router.yaml'} (No such file")
    assert editor.status.endswith(f": create the folder {tmp_path / 'specs'}, then Save again")
    for call_words in ("wf.edit", "steps=", "tools=", "path="):
        assert call_words not in _builder_texts(editor)
    assert "" == capsys.readouterr().out  # once: Save adds nothing under the cell


def test_a_complete_edit_call_says_nothing_under_its_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Step functions, tools and a folder that exists: nothing for the call's author to fix."""
    wf.edit(tmp_path / "router.yaml", steps=ex, tools=ex.reliable_tools())
    assert "" == capsys.readouterr().out
