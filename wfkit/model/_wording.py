"""How the graph checks word a fix: in Python for a workflow built in code, in YAML keys for a flow
spec (a spec's author may never write Python: ``@flow.step(max_visits=5)`` tells them nothing).

The checks (``_graph.compile_graph``) say what is wrong in the same words for both; only the part
that says what to write comes from one of these, handed in by whoever builds the graph."""

from __future__ import annotations


class CodeWording:
    """Fixes as the Python a workflow built in code is written in."""

    def declare(self) -> str:
        """How a step that does not exist is made."""
        return "declare it with @flow.step"

    def connect(self, step: str, entry: str) -> str:
        """How ``step``, which no path from ``entry`` reaches, is put on one."""
        return "connect it with flow.edge(...) or a route"

    def finish(self) -> str:
        """How a route ends the run instead of going to a step."""
        return "use wfkit.END to finish"

    def bound(self, step: str) -> str:
        """An example of a visit bound on ``step``."""
        return "@flow.step(max_visits=5)"

    def exit_route(self, last: str, back: str) -> str:
        """A route of ``last`` that goes ``back`` while work remains and ends the run otherwise."""
        return (
            f"flow.route({last!r}, wfkit.when('done', 'eq', False) >> wfkit.go({back!r}), default=wfkit.go(wfkit.END))"
        )

    def fallback(self) -> str:
        """The option that names the step a failed step falls back to."""
        return "fallback="

    def route_instead(self, src: str, dst: str) -> str:
        """The default route from ``src`` to ``dst`` that replaces an edge between them."""
        return f"flow.route({src!r}, default=wfkit.go({dst!r}))"

    def writes(self, field: str) -> str:
        """How a step declares it writes ``field``."""
        return f"@flow.step(writes=[{field!r}])"

    def run_input(self, field: str) -> str:
        """How a workflow declares ``field`` a run input."""
        return f"Workflow(..., inputs=[{field!r}])"


class SpecWording(CodeWording):
    """Fixes as the keys of a flow spec (YAML shown; JSON has the same keys)."""

    def declare(self) -> str:
        return "add it under steps: (with its fn:)"

    def connect(self, step: str, entry: str) -> str:
        return f"connect it under edges: (e.g. {entry}: [{step}]) or as a route's go target"

    def finish(self) -> str:
        return "write go: __end__ to finish"

    def bound(self, step: str) -> str:
        return f"max_visits: 5 in step {step!r}"

    def exit_route(self, last: str, back: str) -> str:
        return (
            f"routes: {{{last}: {{routes: [{{when: {{field: done, op: eq, value: false}}, go: {back}}}], "
            f"default: {{go: __end__}}}}}}"
        )

    def fallback(self) -> str:
        return "fallback:"

    def route_instead(self, src: str, dst: str) -> str:
        return f"routes: {{{src}: {{default: {{go: {dst}}}}}}}"

    def writes(self, field: str) -> str:
        return f"writes: [{field}] on the step that makes it"

    def run_input(self, field: str) -> str:
        return f"inputs: [{field}] at the spec's top"


CODE = CodeWording()
SPEC = SpecWording()
