"""LLM calls and tools: the public ``wfkit.llm`` namespace.

``ChatClient`` talks to any OpenAI-compatible endpoint over httpx (``_llm``, with its streams);
offline it talks to ``SimulatedModel`` (``_simulated``: seeded long-tailed latency, injected
faults) or replays a ``Cassette`` (``_cassette``). ``_pricing`` turns tokens into dollars,
``_tools`` holds the tool registry and the route-bound tool call, ``_perloop`` keeps one
connection pool per event loop.

Imports only the model layer; loaded on first use, so ``import wfkit`` does not import httpx.
"""

from wfkit.llm._cassette import Cassette, CassetteMissError
from wfkit.llm._llm import (
    BoundChatClient,
    ChatClient,
    ChatStream,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    Reply,
    ToolCall,
)
from wfkit.llm._pricing import PRICES, Price, Prices
from wfkit.llm._simulated import SimulatedModel
from wfkit.llm._tools import Tool, ToolInfo, ToolNotBoundError, ToolRegistry, UnknownToolError, example_registry

__all__ = [
    "PRICES",
    "BoundChatClient",
    "Cassette",
    "CassetteMissError",
    "ChatClient",
    "ChatStream",
    "LLMConnectionError",
    "LLMError",
    "LLMResponseError",
    "LLMStatusError",
    "LLMTimeoutError",
    "Price",
    "Prices",
    "Reply",
    "SimulatedModel",
    "Tool",
    "ToolCall",
    "ToolInfo",
    "ToolNotBoundError",
    "ToolRegistry",
    "UnknownToolError",
    "example_registry",
]
