"""The visual builder's kernel side: what the editor may offer, what it checks, what Save does.

The browser holds the flow spec being drawn (plain data, the format of :mod:`wfkit.model._spec`) and
sends it here after every edit; this module answers with the problems the kernel finds (the same
checks and messages as code, each with its location, so the editor marks the step or edge), and
on Save writes the spec file and rebuilds the ``Workflow``. The widget (``_builderwidget``) only
moves these values between the two sides.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import keyword
import os
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wfkit.engine._workflow import Workflow
from wfkit.model._errors import WorkflowDefinitionError
from wfkit.model._routes import OPERATORS
from wfkit.model._spec import FORMAT, as_namespace, function_ref, load_parts, read, write
from wfkit.notebook._builderwords import builder_message

_STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _looks_like_step(fn: Any) -> bool:
    """A plain function taking ``(state)`` or ``(state, ctx)``: the first parameter named ``state``,
    as wfkit's steps are written, so helpers beside them (``classify_query(text)``) stay out."""
    if not inspect.isfunction(fn) or fn.__name__.startswith("_"):
        return False
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return len(required) in (1, 2) and required[0].name == "state"


def palette(namespace: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The step functions the editor offers: name, reference written in the spec, first doc line."""
    out = []
    for name, fn in namespace.items():
        if name.startswith("_") or not _looks_like_step(fn):
            continue
        try:
            ref = function_ref(fn)
        except TypeError:
            continue
        out.append(
            {
                "name": name,
                "ref": ref if ":" in ref else name,
                "doc": (inspect.getdoc(fn) or "").split("\n", 1)[0],
                "is_async": inspect.iscoroutinefunction(fn),
            }
        )
    return sorted(out, key=lambda item: str(item["name"]))


def empty_spec(name: str) -> dict[str, Any]:
    """A flow with no steps yet (the canvas the editor starts from)."""
    return {"wfkit_flow": FORMAT, "name": name, "entry": None, "steps": {}}


def problems_of(spec: Mapping[str, Any], namespace: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every problem the kernel finds in a spec, as ``{"path": [...], "message": ...}``, in the
    builder's words (:mod:`wfkit.notebook._builderwords`)."""
    if not spec.get("steps"):
        return [{"path": ["steps"], "message": "the flow has no steps yet: add one from the palette"}]
    try:
        load_parts(spec, namespace)
    except WorkflowDefinitionError as exc:
        return [
            {"path": list(where), "message": builder_message(spec, where, message, facts)}
            for message, where, facts in zip(exc.problems, exc.locations, exc.facts, strict=True)
        ]
    return []


def stub_source(name: str, *, takes_context: bool, is_async: bool) -> str:
    """A step function to fill in: ``def name(state, ctx)`` returning a dict of state updates."""
    args = "state, ctx" if takes_context else "state"
    prefix = "async def" if is_async else "def"
    return (
        f"\n\n{prefix} {name}({args}):\n"
        f'    """TODO: what {name} does."""\n'
        f"    return {{}}  # the state fields this step writes\n"
    )


@dataclass
class Session:
    """One editing session: the file, the functions on offer, the tools, the Workflow kept up to date."""

    path: Path
    namespace: dict[str, Any]
    registry: Any = None
    flow: Workflow | None = None
    source: Path | None = None
    stub_file: Path | None = None
    on_save: list[Callable[[Workflow], None]] = field(default_factory=list)
    # The file Save writes, as this session opened it or last wrote it (None: there was none), and
    # a version of it changed by someone else that the user chose to write over (a second Save).
    seen: bytes | None = field(default=None, init=False, repr=False)
    overwrite: bytes | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.seen = _contents(self.path)

    def initial_spec(self) -> dict[str, Any]:
        """What the canvas starts from: the Workflow, else the spec file as it is (problems and
        all), else an empty flow named after the file."""
        if self.flow is not None:
            return self.flow.to_spec()
        if self.source is not None and self.source.exists():
            return read(self.source)
        return empty_spec(self.path.stem)

    def save(self, spec: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        """Write the spec file and update the Workflow; (status line, problems) — nothing is
        written while the kernel finds problems, and a file that cannot be written leaves the
        Workflow as it was, the status line saying why."""
        found = problems_of(spec, self.namespace)
        if found:
            count = len(found)
            return f"not saved: {count} problem{'s' * (count != 1)} to fix first", found
        on_disk = _contents(self.path)
        if on_disk != self.seen and on_disk != self.overwrite:
            # Changed outside the builder since it was opened (a programmer's edit, another builder):
            # writing would silently take their change back. A second Save writes over it.
            self.overwrite = on_disk
            return (
                f"not saved: {self.path.name} was changed outside the builder after it was opened here "
                "(someone edited the file). Save again to replace their changes with what you see here; or, "
                "to start from their version, run this builder's cell again (edits not saved here are lost)"
            ), []
        fresh = Workflow.from_spec(spec, steps=self.namespace, tools=self.registry)
        try:  # before the Workflow changes: a flow the file does not hold would be a half-done Save
            write(fresh.to_spec(), self.path)
        except OSError as exc:
            # Said to the builder's user: where Save writes is the edit call's, not theirs to change
            # (the call's author was told under its cell, see notes_for_the_call).
            folder = self.path.parent
            fix = (
                f"create the folder {folder}, then Save again"
                if not folder.is_dir()
                else "this builder saves only to that file: make it writable, then Save again"
            )
            return f"not saved: cannot write {self.path} ({exc.strerror or exc}): {fix}", []
        self.seen, self.overwrite = _contents(self.path), None
        if self.flow is None:
            self.flow = fresh
        else:
            self.flow.replace_definition(fresh)
        for callback in self.on_save:
            callback(self.flow)
        return f"saved {self.path.name}: {len(self.flow.steps)} steps, fingerprint {self.flow.version}", []

    def notes_for_the_call(self) -> list[str]:
        """What only the ``wf.edit(...)`` call can change, and nothing inside the builder: for its
        author, under the cell that made it, not in the builder (whose user may not write code)."""
        notes = []
        if not palette(self.namespace):
            notes.append(
                "no step functions on offer (functions taking state, or state and ctx): pass steps= a module, "
                "a mapping or a list of them; the builder can only write new stubs"
            )
        if self.registry is None:
            notes.append("no tool registry, so routes can bind no tools: pass tools= a wf.llm.ToolRegistry")
        folder = self.path.parent
        if not folder.is_dir():
            notes.append(
                f"Save writes {self.path}, but the folder {folder} does not exist: create it, or pass path= "
                "in a folder that exists"
            )
        elif not os.access(self.path if self.path.exists() else folder, os.W_OK):
            notes.append(f"Save writes {self.path}, which cannot be written: pass path= a file you can write")
        try:
            load_parts(self.initial_spec(), self.namespace)
        except WorkflowDefinitionError as exc:
            for facts in exc.facts:
                if facts.get("kind") == "subflow_not_found":
                    ref, step = facts["ref"], facts["step"]
                    notes.append(
                        f"step {step!r} runs workflow {ref!r}, which is not among steps=: pass it "
                        f"(steps={{{ref!r}: {ref}, ...}}) or write its ref in the spec as 'module:{ref}'"
                    )
        return notes

    def stub_path(self) -> Path:
        """Where "Write stub" writes: ``stub_file``, else ``<spec name>_steps.py`` beside the spec."""
        return self.stub_file or self.path.with_name(f"{self.path.stem.replace('-', '_')}_steps.py")

    def offer_written_stubs(self) -> None:
        """Offer the step functions of a stub file written before (an earlier session, or a
        programmer filling them in) in the palette, beside those of ``steps=``."""
        stub = self.stub_path()
        if not stub.is_file() or not _defined_in(stub):
            return
        try:
            module = _import_file(stub, reload=False)
        except Exception:  # its steps in the spec say why, as problems on their boxes
            return
        for name in _defined_in(stub):
            fn = getattr(module, name, None)
            if _looks_like_step(fn):
                self.namespace.setdefault(name, fn)

    def new_step(self, name: str, *, takes_context: bool = True, is_async: bool = False) -> dict[str, Any]:
        """Write a stub function into the stub file, import it, and offer it in the palette."""
        if keyword.iskeyword(name):
            raise ValueError(
                f"{name!r} is a word Python keeps for itself and cannot name a function: choose another "
                f"name (e.g. {name}_step)"
            )
        if not _STEP_NAME.match(name):
            raise ValueError(
                f"{name!r} cannot be a function name: use letters, digits and _, not starting with a digit"
            )
        if name in self.namespace:
            raise ValueError(
                f"a function named {name!r} exists already: pick it from the palette or choose another name"
            )
        stub = self.stub_path()
        if stub.is_file() and name in _defined_in(stub):
            # Written before (maybe filled in since): a second stub after it would replace it when
            # imported, so a programmer's code would silently give way to `return {}`.
            self.offer_written_stubs()
            raise ValueError(
                f"{name}() is in {stub.name} already, nothing was written: pick + {name} from the palette, "
                "or choose another name"
            )
        with stub.open("a", encoding="utf-8") as out:
            out.write(stub_source(name, takes_context=takes_context, is_async=is_async))
        module = _import_file(stub)
        fn = getattr(module, name)
        self.namespace[name] = fn
        return {"name": name, "ref": function_ref(fn), "file": stub.name}


def _contents(path: Path) -> bytes | None:
    """The file's bytes, or None when there is none (or it cannot be read: Save says why)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _defined_in(path: Path) -> list[str]:
    """The names of the functions a Python file defines at its top level (none if it does not parse)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return []
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def _import_file(path: Path, *, reload: bool = True) -> types.ModuleType:
    """Import (or reload) the module in ``path``, reachable by its name from then on. ``reload=False``
    keeps a module already imported from there as it is: the Workflow loaded from the spec holds its
    functions, and a reload would make new ones, which its spec would then name by bare name."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.invalidate_caches()
    name = path.stem
    module = sys.modules.get(name)
    if module is not None and Path(getattr(module, "__file__", "") or "").resolve() == path.resolve():
        return importlib.reload(module) if reload else module
    return importlib.import_module(name)


def namespace_of(steps: Any, caller: Mapping[str, Any]) -> dict[str, Any]:
    """The functions on offer: a module's own functions, a mapping, a list, or the caller's globals."""
    if steps is None:
        return dict(caller)
    if isinstance(steps, types.ModuleType):
        return {k: v for k, v in vars(steps).items() if getattr(v, "__module__", None) == steps.__name__}
    if isinstance(steps, Mapping):
        return dict(steps)
    if isinstance(steps, Iterable):
        return as_namespace(steps)
    raise TypeError(f"steps= takes a module, a mapping of names to functions, or a list of functions; got {steps!r}")


def tool_list(registry: Any) -> list[dict[str, str]]:
    """The registry's tools as name and one-line description, for the route form."""
    if registry is None:
        return []
    infos = registry.infos() if hasattr(registry, "infos") else []
    return [{"name": i.name, "description": getattr(i, "description", "")} for i in infos]


OPERATOR_LIST = list(OPERATORS)
