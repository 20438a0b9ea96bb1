"""``wf.edit(...)``: the visual flow builder, an anywidget whose front end ships in the package.

The class only moves values between the browser and :mod:`wfkit.notebook._builder`: the spec being drawn,
the kernel's problems with it, the palette of step functions and the tools. The JavaScript is
built from ``js/`` (``npm run build``) into ``wfkit/notebook/static/``; nothing is fetched at run time.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from wfkit.engine._workflow import Workflow
from wfkit.model._retry import RetryPolicy
from wfkit.notebook._builder import OPERATOR_LIST, Session, namespace_of, palette, problems_of, tool_list

try:
    import anywidget
    import traitlets
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test in a subprocess
    raise ImportError('the flow builder needs anywidget: pip install "wfkit[builder]"') from exc


def _static(name: str) -> str:
    return resources.files("wfkit.notebook").joinpath("static", name).read_text(encoding="utf-8")


class FlowEditor(anywidget.AnyWidget):
    """The flow builder widget; create it with :func:`edit`. ``editor.flow`` is the Workflow the
    last Save produced (or the one being edited)."""

    _esm = _static("builder.js")
    _css = _static("builder.css")
    spec = traitlets.Dict().tag(sync=True)
    problems: traitlets.List[Any] = traitlets.List().tag(sync=True)
    palette: traitlets.List[Any] = traitlets.List().tag(sync=True)
    tools: traitlets.List[Any] = traitlets.List().tag(sync=True)
    operators: traitlets.List[Any] = traitlets.List().tag(sync=True)
    retry_defaults = traitlets.Dict().tag(sync=True)  # what a blank retry box stands for
    path = traitlets.Unicode().tag(sync=True)
    status = traitlets.Unicode().tag(sync=True)

    def __init__(self, session: Session) -> None:
        self.session = session
        spec = session.initial_spec()
        super().__init__(
            spec=spec,
            problems=problems_of(spec, session.namespace),
            palette=palette(session.namespace),
            tools=tool_list(session.registry),
            operators=OPERATOR_LIST,
            retry_defaults=dataclasses.asdict(RetryPolicy()),
            path=str(session.path),
            status="",
        )
        # The flow as the browser last showed it (each edit, each Save sends it), and as opened or
        # last saved; their layouts aside.
        self._shown_logic = self._saved_logic = _logic(spec)
        self.observe(self._on_spec, names="spec")
        self.on_msg(self._on_message)

    @property
    def flow(self) -> Workflow | None:
        """The Workflow as last saved. While the builder shows changes Save has not written, this
        warns: a run of it would not take what the screen shows."""
        if self.session.flow is not None and self._shown_logic != self._saved_logic:
            warnings.warn(
                f"the flow builder of {self.session.path.name} has changes that are not saved: editor.flow is the "
                "flow as last saved, without them. Click Save in the builder, then run this cell again.",
                UserWarning,
                stacklevel=2,
            )
        return self.session.flow

    def _on_spec(self, change: Mapping[str, Any]) -> None:
        self._shown_logic = _logic(change["new"])
        self.problems = problems_of(change["new"], self.session.namespace)

    def _on_message(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        kind = content.get("type")
        if kind == "save":
            spec = content.get("spec") or self.spec
            self.status, found = self.session.save(spec)
            self._shown_logic = _logic(spec)
            if self.status.startswith("saved "):
                self._saved_logic = self._shown_logic
            self.problems = found or problems_of(spec, self.session.namespace)
            self.send({"type": "save_answered"})  # the status line now speaks of the spec sent
        elif kind == "new_step":
            try:
                made = self.session.new_step(str(content.get("name", "")), is_async=bool(content.get("is_async")))
            except (ValueError, OSError, ImportError, SyntaxError) as exc:
                self.palette = palette(self.session.namespace)  # a stub found written already is offered
                self.send({"type": "error", "message": str(exc)})
                return
            self.palette = palette(self.session.namespace)
            self.send({"type": "step_created", **made})

    def __repr__(self) -> str:
        count = len(self.problems)
        state = f"{count} problem{'s' * (count != 1)}" if count else "no problems"
        return f"<FlowEditor {self.session.path.name}: {len(self.spec.get('steps') or {})} steps, {state}>"


def _logic(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A spec without its layout (``metadata``): moving a box changes no run."""
    return {key: value for key, value in spec.items() if key != "metadata"}


def edit(
    flow_or_path: Workflow | str | Path,
    *,
    steps: Any = None,
    tools: Any = None,
    path: str | Path | None = None,
    stub_file: str | Path | None = None,
    on_save: Iterable[Callable[[Workflow], None]] = (),
) -> FlowEditor:
    """Open the visual builder on a Workflow or a flow spec file (which may not exist yet).

    - ``steps``: where the palette finds step functions (those taking ``state`` or ``state, ctx``):
      a module, a mapping, a list; by default the caller's globals (in a notebook, every function
      defined or imported there).
    - ``tools``: the tool registry whose tools routes may bind (default: the workflow's).
    - ``path``: where Save writes the spec (default: the file given, or ``<name>.yaml``).
    - ``stub_file``: where "new step" writes its stub (default: ``<spec name>_steps.py``).
    - ``on_save``: functions called with the Workflow after each Save.

    Save writes the spec (layout in its ``metadata``) and updates the Workflow in the kernel: the
    one passed in, in place, or ``editor.flow``. What only this call can change (no step functions,
    no tools, a folder that does not exist) is printed once under the cell, not in the builder.
    """
    caller = sys._getframe(1).f_globals
    namespace = namespace_of(steps, caller)
    flow: Workflow | None = None
    if isinstance(flow_or_path, Workflow):
        flow = flow_or_path
        for spec in flow.steps.values():
            namespace.setdefault(getattr(spec.fn, "__name__", spec.name), spec.fn)
        target = Path(path) if path is not None else Path(f"{flow.name}.yaml")
    elif isinstance(flow_or_path, str | Path):
        target = Path(path) if path is not None else Path(flow_or_path)
        source = Path(flow_or_path)
        if source.exists():
            try:
                flow = Workflow.from_spec(source, steps=namespace, tools=tools)
            except ValueError:
                flow = None  # the editor shows the problems; Save builds the Workflow once they are fixed
    else:
        raise TypeError(f"wf.edit takes a Workflow or a spec file path, got {type(flow_or_path).__name__}")
    registry = tools if tools is not None else (flow.tools if flow is not None else None)
    session = Session(
        path=target,
        namespace=namespace,
        registry=registry,
        flow=flow,
        source=Path(flow_or_path) if isinstance(flow_or_path, str | Path) else None,
        stub_file=Path(stub_file) if stub_file is not None else None,
        on_save=list(on_save),
    )
    session.offer_written_stubs()  # "Write stub" functions of an earlier session, in the palette again
    notes = session.notes_for_the_call()
    if notes:  # printed: shown once under the cell, where the call can be changed
        print("wf.edit: what the builder cannot change, only this call can:\n" + "\n".join(f"- {n}" for n in notes))
    return FlowEditor(session)
