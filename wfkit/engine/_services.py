"""What a run lends its steps through their context: ``ctx.llm``, ``ctx.tool`` and ``ctx.chunk``.

``Services`` is the engine's :class:`~wfkit.model.RunServices`: a step's context reaches the chat
client, the tool registry and the run's streamed-text observers through it, so the model layer
never imports the LLM or tool layer. It is its own small object (not the run), so contexts and
the attempt runner hold no reference back to the scheduler.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from wfkit.model._context import ChatModel, StepContext, ToolProvider
from wfkit.model._events import TokenChunk

if TYPE_CHECKING:
    from wfkit.model._graph import Graph
    from wfkit.store._store import Store


class Services:
    """One run's chat client (made on first use), tool registry and streamed-text observers."""

    __slots__ = ("chunk_observers", "graph", "llm", "run_id", "seed", "tool_registry")

    def __init__(
        self,
        run_id: str,
        llm: ChatModel | None,
        tool_registry: ToolProvider | None,
        seed: int | None,
        graph: Graph | None = None,
    ) -> None:
        self.run_id = run_id
        self.graph = graph  # what a refused tool call's message reads: how the step was reached
        self.llm = llm
        self.tool_registry = tool_registry
        self.seed = seed  # the default simulated client's seed
        self.chunk_observers: list[Callable[[TokenChunk], object]] = []  # the Run handle may swap in its own list

    def llm_client(self) -> ChatModel:
        """``ctx.llm``: the run's client, or the default one (simulated, seeded like the run)."""
        if self.llm is None:
            from wfkit.llm._llm import default_client

            self.llm = default_client(seed=self.seed)
        return self.llm

    async def call_tool(self, ctx: StepContext, name: str, arguments: dict[str, Any]) -> Any:
        """``ctx.tool(...)``: the call is handed down to the tool layer (contexts never import it)."""
        from wfkit.llm._tools import invoke

        if name in ctx.tools:
            return await invoke(ctx, name, arguments)
        return await invoke(ctx, name, arguments, reached=self._reached(ctx))

    def _reached(self, ctx: StepContext) -> str | None:
        """How ``ctx``'s step came to run when no route can have led to it: on its first visit the
        entry step, or a step no route goes to (after an edge, or as a fallback). None when a route
        may have (its wording names the route's ``tools=``), or the graph is unknown."""
        graph = self.graph
        if graph is None:
            return None
        if ctx.step == graph.entry and ctx.visit == 1:
            return "the workflow's entry step, which no route leads to"
        if any(ctx.step in router.targets for router in graph.routers.values()):
            return None
        return "reached by an edge or a fallback, not by a route"

    def on_chunk(self, ctx: StepContext, text: str) -> None:
        """``ctx.chunk``: streamed LLM text goes to whoever asked for it (nothing is stored)."""
        if self.chunk_observers:
            chunk = TokenChunk(self.run_id, ctx.step, ctx.visit, ctx.attempt, text, time.time(), ctx.map_index)
            for observer in self.chunk_observers:
                observer(chunk)


def check_same_model(store: Store, run_id: str, llm: ChatModel | None, call: str) -> None:
    """Refuse to go on with a stored run (``call``: how, ``"flow.resume('ID')"``) that called a
    model at a network endpoint without a client (``llm`` None) when the default client is the
    simulated model: its steps left would have answered from another model than its first ones,
    in one run, without a word. A ValueError naming the models and endpoints the run called (its
    journal's) and the ``llm=`` to pass. With ``$WFKIT_LLM_BASE_URL`` set (as ``wfkit resume``
    takes an endpoint) the default is that endpoint, and the run goes on."""
    if llm is not None:
        return
    called = store.endpoints_called(run_id)
    if not called:  # the simulated model, a cassette, or no model at all: as before
        return
    from wfkit.llm._llm import default_endpoint

    if default_endpoint() is not None:
        return
    raise ValueError(refused_default_model(run_id, called, call))


def refused_default_model(run_id: str, called: Mapping[str, str], call: str) -> str:
    """What :func:`check_same_model` says: the models called, and the calls that go on with them."""
    models = [f"{model!r} at {url}" for model, url in called.items()]
    named = "model " + models[0] if len(models) == 1 else "models " + ", ".join(models[:-1]) + " and " + models[-1]
    model, url = next(iter(called.items()))
    client = f"wf.llm.ChatClient({url!r}, model={model!r})"
    command = "wfkit fork" if ".fork(" in call else "wfkit resume"
    return (
        f"run {run_id} called {named}; without llm=, the steps left would call the built-in simulated "
        f"model instead, mixing two models' answers in one run. Pass the client it used: "
        f"{call[:-1]}, llm={client}) (its API key given as api_key, or in $WFKIT_API_KEY)"
        + ("; a step that names its model per call keeps doing so" if len(called) > 1 else "")
        + f". For {command}, set WFKIT_LLM_BASE_URL={url} and WFKIT_LLM_MODEL={model}. To go on with the "
        f"simulated model on purpose, pass llm=wf.llm.ChatClient()"
    )
