"""Streamed chat completions: server-sent events (``data: {...}`` lines, then ``data: [DONE]``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from wfkit._context import StepContext
from wfkit._llm import _UNREACHABLE, LLMError, LLMResponseError, Reply, _record, _where

if TYPE_CHECKING:
    from wfkit._llm import ChatClient


class ChatStream:
    """A streamed completion; use as ``async with client.stream(...) as s: async for text in s``."""

    def __init__(self, client: ChatClient, body: dict[str, Any], timeout: httpx.Timeout, ctx: StepContext | None):
        self._client, self._body, self._timeout, self._ctx = client, body, timeout, ctx
        self._response: httpx.Response | None = None
        self._started = 0.0
        self.reply: Reply | None = None

    async def __aenter__(self) -> ChatStream:
        client, model = self._client, self._body["model"]
        http = await client._http.get()
        self._started = time.perf_counter()
        request = http.build_request("POST", "chat/completions", json=self._body, timeout=self._timeout)
        try:
            self._response = await http.send(request, stream=True)
            if self._response.status_code >= 400:
                await self._response.aread()
                client._raise_for_status(self._response, model)
        except _UNREACHABLE as exc:
            await self._close()
            _record(self._ctx, model, None)
            raise client._transport_error(exc, model) from exc
        except LLMError:
            await self._close()
            _record(self._ctx, model, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()
        _record(self._ctx, self._body["model"], self.reply)

    async def _close(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[str]:
        if self._response is None:
            raise RuntimeError("use the stream inside `async with client.stream(...) as stream:`")
        client, model = self._client, self._body["model"]
        where = _where(self._response.request.url)
        parts: list[str] = []
        chunks: list[Any] = []
        usage_from: Any = None
        finish: dict[str, Any] = {}
        done = False
        try:
            async for line in self._response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                    error = chunk.get("error")
                    choices = chunk.get("choices") or [{}]
                    delta = choices[0].get("delta", {}).get("content")
                except (ValueError, TypeError, AttributeError, IndexError):
                    raise LLMResponseError(
                        f"{where} sent a stream chunk that is not chat-completions JSON: {client._redact(data[:120])!r}"
                    ) from None
                if error:
                    raise LLMResponseError(f"{where} reported an error mid-stream: {client._redact(str(error))}")
                chunks.append(chunk)
                if chunk.get("usage"):
                    usage_from = chunk
                if choices[0].get("finish_reason"):
                    finish = choices[0]
                if delta:
                    parts.append(delta)
                    yield delta
        except _UNREACHABLE as exc:
            raise client._transport_error(exc, model) from exc
        if not chunks and not done:
            raise LLMResponseError(f"{where} ended the stream without a single chat-completions event (data: ...)")
        latency = time.perf_counter() - self._started
        self.reply = client._make_reply(usage_from, "".join(parts), _model_of(chunks, model), latency, finish, chunks)


def _model_of(chunks: list[Any], model: str) -> str:
    for chunk in chunks:
        if isinstance(chunk, dict) and chunk.get("model"):
            return str(chunk["model"])
    return model
