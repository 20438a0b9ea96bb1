"""Streamed chat completions (wfkit.llm._llm: ChatStream) against a real SSE server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from llm_server import LLMServer
from test_llm import KEY, check_no_usage_is_unknown_cost, check_part_usage_counts_what_came

import wfkit as wf


def test_stream_yields_chunks_and_a_final_reply() -> None:
    """Chunks join to the reply's text; the reply carries tokens and cost."""
    client = wf.llm.ChatClient(
        transport=wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=1, reply="one two three four")
    )

    async def go() -> tuple[list[str], wf.llm.Reply | None]:
        async with client.stream("count to four") as stream:
            chunks = [text async for text in stream]
        return chunks, stream.reply

    chunks, reply = asyncio.run(go())
    assert reply is not None
    assert "one two three four" == "".join(chunks).strip()
    assert "one two three four" == reply.text.strip()
    assert reply.tokens_out is not None
    assert reply.tokens_out > 0


def test_stream_errors_are_classified() -> None:
    """A 503 before the stream starts raises the client's status error (transient)."""
    client = wf.llm.ChatClient(transport=wf.llm.SimulatedModel(p50=0.001, p99=0.002, seed=1, faults={"503": 1.0}))

    async def go() -> None:
        async with client.stream("hello") as stream:
            async for _ in stream:
                pass

    with pytest.raises(wf.llm.LLMStatusError) as info:
        asyncio.run(go())
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(info.value)


def test_a_stream_without_usage_makes_its_steps_cost_unknown_not_free(tmp_path: Path) -> None:
    """A stream whose server ignores ``stream_options.include_usage`` (it sends no usage chunk) over
    real HTTP: the reply's tokens and cost are None, and the step's cost is unknown in the step
    log, ``df.wf.cost()``, ``cost_budget`` and the report, where it read as a free call."""
    with LLMServer(api_key=KEY) as server:
        check_no_usage_is_unknown_cost(server, tmp_path, streamed=True)


def test_a_stream_with_one_token_count_records_it_and_marks_the_other_unknown(tmp_path: Path) -> None:
    """A stream whose usage chunk has one of the two counts, over real HTTP: that count is recorded,
    only the other reads as unknown in ``df.wf.cost()``, and the cost is unknown."""
    with LLMServer(api_key=KEY) as server:
        check_part_usage_counts_what_came(server, tmp_path, streamed=True)
