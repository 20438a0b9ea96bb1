"""What a run lends its steps through their context: ``ctx.llm``, ``ctx.tool`` and ``ctx.chunk``.

``Services`` is the engine's :class:`~wfkit.model.RunServices`: a step's context reaches the chat
client, the tool registry and the run's streamed-text observers through it, so the model layer
never imports the LLM or tool layer. It is its own small object (not the run), so contexts and
the attempt runner hold no reference back to the scheduler.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from wfkit.model._context import ChatModel, StepContext, ToolProvider
from wfkit.model._events import TokenChunk


class Services:
    """One run's chat client (made on first use), tool registry and streamed-text observers."""

    __slots__ = ("chunk_observers", "llm", "run_id", "seed", "tool_registry")

    def __init__(
        self, run_id: str, llm: ChatModel | None, tool_registry: ToolProvider | None, seed: int | None
    ) -> None:
        self.run_id = run_id
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

        return await invoke(ctx, name, arguments)

    def on_chunk(self, ctx: StepContext, text: str) -> None:
        """``ctx.chunk``: streamed LLM text goes to whoever asked for it (nothing is stored)."""
        if self.chunk_observers:
            chunk = TokenChunk(self.run_id, ctx.step, ctx.visit, ctx.attempt, text, time.time(), ctx.map_index)
            for observer in self.chunk_observers:
                observer(chunk)
