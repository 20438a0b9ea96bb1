"""Tests for wfkit.llm._llm: the chat client against a real local HTTP server, alone and inside runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import gc
import itertools
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from llm_server import FullBacklog, LLMServer

import wfkit as wf
from wfkit.llm._llm import (
    BoundChatClient,
    ChatClient,
    LLMConnectionError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    Reply,
    ToolCall,
    default_client,
)
from wfkit.llm._simulated import SimulatedModel
from wfkit.testing import test_mode

KEY = "sk-test-0123456789abcdef"
PRICES = {"test-model": (0.001, 0.002)}


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer(api_key=KEY) as srv:
        yield srv


def client_for(server: LLMServer, **kwargs: Any) -> ChatClient:
    return ChatClient(server.url, model="test-model", api_key=KEY, prices=PRICES, **kwargs)


def at(server: LLMServer, *models: str) -> dict[str, Any]:
    """What an attempt's extra says of where its calls went: ``{"llm_endpoints": {model: URL}}``."""
    return {"llm_endpoints": dict.fromkeys(models or ("test-model",), server.url)}


def call(client: ChatClient, prompt: str = "hello there", **kwargs: Any) -> Reply:
    """One completion in a fresh event loop, closing the client's connections after."""

    async def main() -> Reply:
        async with client:
            return await client.complete(prompt, **kwargs)

    return asyncio.run(main())


def error_of(client: ChatClient, **kwargs: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        call(client, **kwargs)
    return info.value


def asking_flow(retry: wf.RetryPolicy | None = None, timeout: float | None = None) -> wf.Workflow:
    flow = wf.Workflow("ask")

    @flow.step(retry=retry, timeout=timeout)
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        reply = await ctx.llm.complete(state["q"], ctx=ctx)
        return {"answer": reply.text}

    return flow


# --- one call ---------------------------------------------------------------------------------------


def test_complete_returns_text_tokens_and_cost(server: LLMServer) -> None:
    """A completion carries the reply text, the server's token counts and their price."""
    reply = call(client_for(server), "hello there")
    assert "reply to: hello there" == reply.text
    assert ("test-model", 2, 4) == (reply.model, reply.tokens_in, reply.tokens_out)
    assert pytest.approx((2 * 0.001 + 4 * 0.002) / 1000) == reply.cost_usd
    assert "stop" == reply.finish_reason
    assert reply.latency_s > 0


def test_a_model_priced_by_the_name_asked_for_is_priced_when_the_server_names_it_otherwise() -> None:
    """A server that answers under another name than the one asked for (vLLM's served model path for
    an alias, Azure's model for a deployment's name) still has its calls priced by the name the
    user priced, the one they asked for, plain and streamed; the cost was None. A price for the
    name the server gave wins: it names what ran."""
    with LLMServer(model="meta-llama/Llama-3.1-8B-Instruct") as srv:

        async def main(prices: dict[str, tuple[float, float]]) -> tuple[Reply, Reply | None]:
            async with ChatClient(srv.url, model="fast", prices=prices) as client:
                reply = await client.complete("hello there")
                async with client.stream("hello there") as stream:
                    _ = [text async for text in stream]
            return reply, stream.reply

        plain, streamed = asyncio.run(main({"fast": (0.001, 0.002)}))
        assert streamed is not None
        assert ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct") == (plain.model, streamed.model)
        expected = pytest.approx((2 * 0.001 + 4 * 0.002) / 1000)
        assert expected == plain.cost_usd
        assert expected == streamed.cost_usd
        served = {"fast": (0.001, 0.002), "meta-llama/Llama-3.1-8B-Instruct": (0.0, 0.0)}
        assert 0.0 == asyncio.run(main(served))[0].cost_usd


def test_request_is_openai_wire_format_with_bearer_key(server: LLMServer) -> None:
    """The request is POST /v1/chat/completions with model, messages, params and the bearer key."""
    call(client_for(server), "hi", temperature=0.2, max_tokens=5)
    request = server.requests[-1]
    assert "/v1/chat/completions" == request["path"]
    assert f"Bearer {KEY}" == request["headers"]["Authorization"]
    assert {
        "model": "test-model",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "max_tokens": 5,
    } == request["body"]


def test_message_lists_and_per_call_model_pass_through(server: LLMServer) -> None:
    """A list of messages is sent as given, and model= overrides the client's model for one call."""
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    call(client_for(server), messages, model="other-model")  # type: ignore[arg-type]
    assert {"model": "other-model", "messages": messages} == server.requests[-1]["body"]


def test_api_key_comes_from_the_named_environment_variable(server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without api_key=, the key is read from WFKIT_API_KEY, or the variable api_key_env names."""
    monkeypatch.setenv("WFKIT_API_KEY", KEY)
    call(ChatClient(server.url, model="test-model"))
    monkeypatch.delenv("WFKIT_API_KEY")
    monkeypatch.setenv("MY_PROVIDER_KEY", KEY)
    call(ChatClient(server.url, model="test-model", api_key_env="MY_PROVIDER_KEY"))
    assert [f"Bearer {KEY}"] * 2 == [r["headers"]["Authorization"] for r in server.requests]


def test_no_key_sends_no_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no key anywhere the request has no Authorization header (and a keyed server says 401)."""
    monkeypatch.delenv("WFKIT_API_KEY", raising=False)
    with LLMServer(api_key=KEY) as srv:
        exc = error_of(ChatClient(srv.url, model="test-model"))
        assert "Authorization" not in srv.requests[-1]["headers"]
    assert isinstance(exc, LLMStatusError)
    assert 401 == exc.status_code
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)


def test_a_real_endpoint_needs_a_model() -> None:
    """A base URL without a model is refused at once, saying what to pass."""
    with pytest.raises(ValueError, match="needs a model name"):
        ChatClient("http://127.0.0.1:9/v1")


def test_a_transport_without_a_model_is_refused_naming_the_transport(tmp_path: Path) -> None:
    """ChatClient(transport=Cassette(...)) has no model to send: the error names the cassette and
    model=, not the stand-in URL of the simulated model that the user never wrote."""
    cassette = wf.llm.Cassette(tmp_path / "c.jsonl")
    with pytest.raises(ValueError) as info:
        ChatClient(transport=cassette)
    message = str(info.value)
    assert f"ChatClient(transport={cassette!r}) needs a model name: pass model='...'" in message
    assert "simulated.wfkit" not in message


def test_a_sync_httpx_transport_is_refused_when_made_naming_the_async_one(server: LLMServer, tmp_path: Path) -> None:
    """The client is async: a sync httpx transport (which failed on the first call, deep in httpx)
    is refused by the client and by a cassette when made, naming the async transport to pass; that
    one calls the endpoint."""
    import httpx

    with pytest.raises(TypeError, match=r"ChatClient\(transport=\) needs an async httpx transport .* got httpx\."):
        client_for(server, transport=httpx.HTTPTransport(retries=2))
    with pytest.raises(TypeError, match=r"Cassette\(transport=\) needs an async httpx transport .* got httpx\."):
        wf.llm.Cassette(tmp_path / "c.jsonl", transport=httpx.HTTPTransport())
    assert "reply to: hi" == call(client_for(server, transport=httpx.AsyncHTTPTransport(retries=2)), "hi").text


SEARCH_CALLS = [
    {"id": "call_1", "type": "function", "function": {"name": "web_search", "arguments": '{"query": "refunds"}'}},
    {"id": "call_2", "type": "function", "function": {"name": "file_read", "arguments": '{"path": "policy.md"}'}},
]
TOOLS = [{"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}}]


def test_a_reply_carries_the_tool_calls_the_model_asked_for(server: LLMServer) -> None:
    """message.tool_calls reaches Reply.tool_calls, each call typed, its arguments the JSON text
    the model wrote; a reply asking for no tool has none."""
    server.script(("tool_calls", SEARCH_CALLS))
    reply = call(client_for(server), "find the refund policy", tools=TOOLS)
    assert (
        ToolCall("call_1", "web_search", '{"query": "refunds"}'),
        ToolCall("call_2", "file_read", '{"path": "policy.md"}'),
    ) == reply.tool_calls
    assert ("", "tool_calls") == (reply.text, reply.finish_reason)
    assert {"query": "refunds"} == json.loads(reply.tool_calls[0].arguments)
    assert () == call(client_for(server)).tool_calls


def test_a_streamed_reply_assembles_its_tool_calls(server: LLMServer) -> None:
    """Streamed, a call's id and name come first and its arguments in pieces: s.reply has them whole."""
    server.script(("tool_calls", SEARCH_CALLS))

    async def main() -> Reply | None:
        async with client_for(server) as client, client.stream("find the refund policy", tools=TOOLS) as stream:
            assert [] == [text async for text in stream]
        return stream.reply

    reply = asyncio.run(main())
    assert reply is not None
    assert ["call_1", "call_2"] == [c.id for c in reply.tool_calls]
    assert ['{"query": "refunds"}', '{"path": "policy.md"}'] == [c.arguments for c in reply.tool_calls]
    assert "tool_calls" == reply.finish_reason


@pytest.mark.parametrize(
    ("calls", "problem"),
    [
        ("web_search", "tool_calls is a str, not a list"),
        ([{"id": "call_1", "function": {"arguments": "{}"}}], "tool_calls[0].function.name is missing"),
        (
            [{"id": "call_1", "function": {"name": "f", "arguments": {"q": 1}}}],
            "tool_calls[0].function.arguments is a dict",
        ),
    ],
)
def test_tool_calls_that_are_not_the_chat_completions_format_are_a_clear_error(
    server: LLMServer, calls: Any, problem: str
) -> None:
    """A tool call the client cannot read is a permanent LLMResponseError naming the field, never a
    reply with fewer calls."""
    server.script(("tool_calls", calls))
    exc = error_of(client_for(server), tools=TOOLS)
    assert isinstance(exc, LLMResponseError)
    assert problem in str(exc)


# --- errors and their kinds -------------------------------------------------------------------------


def test_429_is_transient_and_carries_retry_after(server: LLMServer) -> None:
    """A 429 becomes a transient LLMStatusError whose Retry-After reaches the retry policy."""
    server.script(("429", 7))
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMStatusError)
    assert (429, 7.0) == (exc.status_code, exc.retry_after)
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(exc)
    assert 7.0 == wf.retry_after_of(exc)
    assert "HTTP 429" in str(exc)
    assert "retry after 7 s" in str(exc)


def test_retry_after_ms_sets_the_wait_and_outranks_retry_after(server: LLMServer) -> None:
    """OpenAI-compatible servers say how long to wait in ``retry-after-ms``; as in OpenAI's own
    client it wins over ``Retry-After``: the run waits 0.4 s, not the 0.01 s backoff nor 30 s."""
    server.script(("429", {"retry-after-ms": "400"}), ("429", {"retry-after-ms": "400", "Retry-After": "30"}))
    run = asking_flow(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, jitter=0)).run(
        {"q": "hi"}, workspace=False, llm=client_for(server)
    )
    assert "succeeded" == run.status
    waits = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(server.requests)]
    assert 2 == len(waits)
    assert all(0.4 <= wait < 2.0 for wait in waits), waits
    assert [0.4, 0.4] == [e.retry_delay_s for e in run.events if e.status == "retry"]


def http_date(at: float) -> str:
    return email.utils.formatdate(at, usegmt=True)


@pytest.mark.parametrize("skew", [-3600, 3600], ids=["server-behind", "server-ahead"])
def test_an_http_date_retry_after_is_a_wait_from_the_servers_date_not_the_local_clock(
    server: LLMServer, skew: int
) -> None:
    """A server whose clock is an hour off asks to wait until its Date + 1 s: the run waits 1 s.
    Against the local clock it retried at once (server behind: the date had passed) or gave up
    (server ahead: an hour, past max_elapsed)."""
    date = time.time() + skew
    asked = {"Date": http_date(date), "Retry-After": http_date(date + 1)}
    server.script(("429", asked), "ok")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=1, base_delay=0.01, jitter=0, max_elapsed=300))
    run = flow.run({"q": "hi"}, workspace=False, llm=client_for(server), raise_on_error=False)
    assert "succeeded" == run.status, run.error
    (retry,) = [e for e in run.events if e.status == "retry"]
    assert 1.0 == retry.retry_delay_s
    first, second = server.requests
    assert 1.0 <= second["at"] - first["at"] < 2.5


def test_an_http_date_retry_after_without_a_date_is_a_wait_from_the_local_clock(server: LLMServer) -> None:
    """With no usable Date (the server's own, unparseable), the HTTP date is measured from the
    local clock, as before."""
    server.script(("429", {"Date": "not a date", "Retry-After": http_date(time.time() + 30)}))
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMStatusError)
    assert exc.retry_after is not None
    assert 27 <= exc.retry_after <= 30


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, "transient"), (503, "transient"), (408, "transient"), (400, "permanent"), (404, "permanent")],
)
def test_http_status_maps_onto_error_kinds(server: LLMServer, status: int, kind: str) -> None:
    """5xx and 408 are transient; other 4xx are permanent."""
    server.script(("status", status))
    exc = error_of(client_for(server))
    assert status == exc.status_code  # type: ignore[attr-defined]
    assert wf.ErrorKind(kind) == wf.classify_error(exc)


def test_a_refused_key_fails_at_once_saying_to_check_it_and_where_it_came_from(
    server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 for a wrong key (read from the environment variable the client names): one permanent
    attempt in the step log, and a message saying to check the key and where it came from, without
    the key itself."""
    wrong = "sk-wrong-key-9876543210"
    monkeypatch.setenv("MY_LLM_KEY", wrong)
    client = ChatClient(server.url, model="test-model", api_key_env="MY_LLM_KEY")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=3, base_delay=0.01))
    run = flow.run({"q": "x"}, workspace=tmp_path, llm=client, raise_on_error=False)
    assert ("failed", 1) == (run.status, len(server.requests))
    message = str(run.error)
    assert "HTTP 401" in message, message
    assert "check the API key ($MY_LLM_KEY)" in message, message
    rows = wf.steps(tmp_path)
    assert [("failed", "permanent", "LLMStatusError")] == list(
        zip(rows["status"], rows["error_kind"], rows["error_type"], strict=True)
    )
    assert "check the API key ($MY_LLM_KEY)" in rows["error_message"].iloc[0]
    assert wrong not in message
    assert not rows["error_message"].str.contains(wrong).any()


def test_no_key_sent_and_a_forbidden_model_say_what_to_do(server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 401 when no key was sent says how to give one; a 403 says to check that the key may use
    the model, naming it."""
    monkeypatch.delenv("WFKIT_API_KEY", raising=False)
    exc = error_of(ChatClient(server.url, model="test-model"))
    assert "no API key was sent: give ChatClient an api_key, or set $WFKIT_API_KEY" in str(exc), exc
    server.script(("openai_error", (403, {"message": "You are not allowed to sample from this model"})))
    exc = error_of(client_for(server))
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)
    assert "check that the API key (api_key) may use model 'test-model'" in str(exc), exc
    assert KEY not in str(exc)


@pytest.mark.parametrize(
    ("given", "script", "advice"),
    [
        ("wrong", ("status", 401), "check the API key (api_key): the endpoint did not accept it"),
        ("right", ("openai_error", (403, {"message": "no"})), "check that the API key (api_key) may use model"),
        (None, ("status", 401), "no API key was sent: give ChatClient an api_key, or set $WFKIT_API_KEY"),
    ],
)
def test_key_advice_reads_the_same_in_the_step_log(
    server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None, script: Any, advice: str
) -> None:
    """The advice of a 401 or 403 is stored as it was raised: it said "(api_key=)" and "pass
    api_key= or set", and the redaction every stored row passes through took what followed
    ``api_key=`` for a key, so the step log and ``wfkit show`` read "check the API key
    (api_key=[REDACTED] the endpoint did not accept it" and "pass api_key= [REDACTED] set"."""
    monkeypatch.delenv("WFKIT_API_KEY", raising=False)
    key = {"wrong": "sk-wrong-key-9876543210", "right": KEY, None: None}[given]
    server.script(script)
    flow = asking_flow()
    client = ChatClient(server.url, model="test-model", api_key=key)
    run = flow.run({"q": "x"}, workspace=tmp_path, llm=client, raise_on_error=False)
    assert advice in str(run.error), run.error
    stored = wf.steps(tmp_path)["error_message"].iloc[0]
    assert advice in stored, stored
    assert "[REDACTED]" not in stored, stored


@pytest.mark.parametrize("header", ["Cookie", "api-key", "Authorization"])
def test_a_credential_in_headers_refused_is_named_not_called_missing(
    server: LLMServer, monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    """A 401 or 403 for a client whose credential went in headers= (a session cookie, Azure's
    api-key, an Authorization of one's own) names that header as what to check, never its value;
    the 401 said "no API key was sent: pass api_key=", though one had been, and the 403 told to
    check "the API key ($WFKIT_API_KEY)", which was not set."""
    import uuid

    monkeypatch.delenv("WFKIT_API_KEY", raising=False)
    secret = uuid.uuid4().hex
    value = {"Cookie": f"session={secret}", "Authorization": f"Bearer {secret}"}.get(header, secret)
    client = ChatClient(server.url, model="test-model", headers={header: value})
    message = str(error_of(client))  # the server wants another key: 401
    assert f"check the credential in headers[{header!r}]: the endpoint did not accept it" in message, message
    assert "no API key was sent" not in message
    assert secret not in message
    server.script(("openai_error", (403, {"message": "You are not allowed to sample from this model"})))
    message = str(error_of(ChatClient(server.url, model="test-model", api_key=KEY, headers={header: value})))
    assert "check that the API key (api_key) may use model 'test-model'" in message, message
    with LLMServer() as open_server:  # a server that checks no key: its 403 is the header's
        open_server.script(("openai_error", (403, {"message": "You are not allowed to sample from this model"})))
        message = str(error_of(ChatClient(open_server.url, model="test-model", headers={header: value})))
    assert f"check that the credential in headers[{header!r}] may use model 'test-model'" in message, message
    assert "$WFKIT_API_KEY" not in message


def test_a_409_is_retried_as_openais_client_retries_it(server: LLMServer, tmp_path: Path) -> None:
    """OpenAI answers 409 for a conflict on its side (a lock timeout) and its own client retries
    it: it is transient, so the step retries it after the policy's backoff and succeeds."""
    server.script(("status", 409), "ok")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=2, base_delay=0.05, jitter=0))
    run = flow.run({"q": "x"}, workspace=tmp_path, llm=client_for(server))
    assert ("succeeded", 2) == (run.status, len(server.requests))
    rows = wf.steps(tmp_path).sort_values("attempt")
    assert [("retry", "transient", "LLMStatusError"), ("ok", None, None)] == [
        (status, kind if isinstance(kind, str) else None, kind_type if isinstance(kind_type, str) else None)
        for status, kind, kind_type in zip(rows["status"], rows["error_kind"], rows["error_type"], strict=True)
    ]
    assert pytest.approx(0.05) == rows["retry_delay_s"].iloc[0]


@pytest.mark.parametrize(("status", "says", "kind"), [(503, "false", "permanent"), (400, "true", "transient")])
def test_the_servers_x_should_retry_outranks_its_status(server: LLMServer, status: int, says: str, kind: str) -> None:
    """``x-should-retry``, which OpenAI's servers send and its client obeys, is the server saying
    whether a retry can help: it wins over what the status alone would say."""
    server.script(("status", (status, {"x-should-retry": says})))
    exc = error_of(client_for(server))
    assert status == exc.status_code  # type: ignore[attr-defined]
    assert wf.ErrorKind(kind) == wf.classify_error(exc)


def test_slow_response_times_out_as_transient(server: LLMServer) -> None:
    """A reply slower than the call's timeout raises LLMTimeoutError (transient) at the timeout."""
    # The reply is held back until the test ends, so only the timeout can end the call. The wait
    # counts from the server's receipt: on a loaded machine a fresh client took up to 1.8 s before
    # it sent anything. Only reading has the short timeout, so the request always arrives.
    server.script(("slow", 60.0))
    exc = error_of(client_for(server), timeout=httpx.Timeout(30.0, read=0.1))
    (request,) = server.requests  # one request: the client did not retry it on its own
    assert time.monotonic() - request["at"] < 5.0  # the 0.1 s timeout, not the 60 s reply
    assert isinstance(exc, LLMTimeoutError)
    assert isinstance(exc, TimeoutError)
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(exc)


def test_a_timeout_says_how_long_it_waited_and_how_to_give_more(server: LLMServer, tmp_path: Path) -> None:
    """A call that timed out says which timeout, how long, and where to raise it, in the error and
    the step log; it said only "did not answer in time (ReadTimeout)", leaving the user to guess
    between the client's 30 s default, the call's timeout= and the step's."""
    server.script(("slow", 60.0))
    exc = error_of(client_for(server), timeout=httpx.Timeout(30.0, read=0.25))
    assert isinstance(exc, LLMTimeoutError)
    assert (
        f"{server.url}/chat/completions did not answer in time for model 'test-model': no bytes came for 0.25 s, "
        "the read timeout (ReadTimeout); for a slower model give more: ChatClient(..., timeout=SECONDS) "
        "or complete(..., timeout=SECONDS)"
    ) == str(exc)
    server.script(("slow", 60.0))
    flow = asking_flow()
    run = flow.run({"q": "x"}, workspace=tmp_path, llm=client_for(server, timeout=0.25), raise_on_error=False)
    assert "failed" == run.status
    assert "no bytes came for 0.25 s, the read timeout (ReadTimeout)" in wf.steps(tmp_path)["error_message"].iloc[0]


def test_client_timeout_applies_to_every_call(server: LLMServer) -> None:
    """timeout= on the client is each call's default; a call's own timeout= overrides it."""
    # The first reply is held back until the test ends, so only the client's timeout can end that
    # call; the second comes 0.5 s after its request, ten times the client's timeout and a sixtieth
    # of the call's own. Only reading has the short timeout, so each request reaches the server.
    server.script(("slow", 60.0), ("slow", 0.5))
    short_read = httpx.Timeout(30.0, read=0.05)
    assert isinstance(error_of(client_for(server, timeout=short_read)), LLMTimeoutError)
    assert call(client_for(server, timeout=short_read), timeout=30.0).text.startswith("reply to")


@pytest.mark.parametrize(
    ("timeout", "kind", "says"),
    [
        (
            -1,
            ValueError,
            "ChatClient(timeout=-1): a timeout of -1 s would end every call before it is answered: "
            "write the seconds a call may take, more than 0 (e.g. timeout=30), or timeout=None for no time limit",
        ),
        (0, ValueError, "ChatClient(timeout=0): a timeout of 0 s would end every call"),
        (dt.timedelta(0), ValueError, "a timeout of 0.0 s would end every call"),
        (
            float("nan"),
            ValueError,
            "ChatClient(timeout=nan): NaN is no number of seconds: write the seconds a call may take, e.g. timeout=30",
        ),
        (float("inf"), ValueError, "ChatClient(timeout=inf): for no time limit write timeout=None, not inf"),
        (
            "30",
            TypeError,
            "ChatClient(timeout='30'): a timeout is a number of seconds, not the text '30': write timeout=30",
        ),
        ("soon", TypeError, "not the text 'soon': write timeout=30"),
        (
            True,
            TypeError,
            "ChatClient(timeout=True): a timeout is a number of seconds, not True: write e.g. timeout=30",
        ),
        (
            [5],
            TypeError,
            "a timeout is seconds (an int or a float), a datetime.timedelta or an httpx.Timeout, not list [5]",
        ),
        (httpx.Timeout(30.0, read=-2), ValueError, "read=-2: a timeout of -2 s would end every call"),
        (httpx.Timeout(30.0, connect=float("inf")), ValueError, "connect=inf: for no time limit write connect=None"),
    ],
    ids=repr,
)
def test_a_client_timeout_that_is_no_duration_is_refused(server: LLMServer, timeout, kind, says) -> None:
    """ChatClient(timeout=) refuses, when it is made, what httpx took and then failed every call
    with (0, a negative) or never timed out with (NaN, inf), text and bools, saying what to write."""
    with pytest.raises(kind) as info:
        client_for(server, timeout=timeout)
    assert says in str(info.value)
    assert [] == server.requests


@pytest.mark.parametrize(
    ("timeout", "kind", "says"),
    [
        (-5, ValueError, "complete(..., timeout=-5): a timeout of -5 s would end every call before it is answered"),
        (float("inf"), ValueError, "complete(..., timeout=inf): for no time limit write timeout=httpx.Timeout(None)"),
        (
            "10",
            TypeError,
            "complete(..., timeout='10'): a timeout is a number of seconds, not the text '10': write timeout=10",
        ),
    ],
    ids=repr,
)
def test_a_call_timeout_that_is_no_duration_is_refused_before_asking(server: LLMServer, timeout, kind, says) -> None:
    """A call's own timeout= is checked as the client's is, before any request leaves; so is a stream's."""
    with pytest.raises(kind) as info:
        call(client_for(server), timeout=timeout)
    assert says in str(info.value)
    with pytest.raises(kind, match=r"^stream\(\.\.\., timeout="):
        client_for(server).stream("hello", timeout=timeout)
    assert [] == server.requests


def test_a_timeout_may_be_a_timedelta_and_none_is_no_limit(server: LLMServer) -> None:
    """timeout= takes a datetime.timedelta (its seconds), on the client and on a call, as step and
    run timeouts do; ChatClient(timeout=None) has no limit, and a call's httpx.Timeout(None) none for it."""
    server.script(("slow", 60.0), ("slow", 60.0), ("slow", 0.3), ("slow", 0.3))
    exc = error_of(client_for(server, timeout=dt.timedelta(milliseconds=250)))
    assert "no bytes came for 0.25 s" in str(exc)
    exc = error_of(client_for(server), timeout=dt.timedelta(milliseconds=200))
    assert "no bytes came for 0.2 s" in str(exc)
    assert call(client_for(server, timeout=None)).text.startswith("reply to")
    short = client_for(server, timeout=httpx.Timeout(30.0, read=0.05))
    assert call(short, timeout=httpx.Timeout(None)).text.startswith("reply to")


def test_a_body_that_is_not_json_is_a_clear_permanent_error(server: LLMServer) -> None:
    """A 200 whose whole body is not JSON (an HTML page) raises LLMResponseError, classified
    permanent (asking again brings the same page), quoting the body's start."""
    server.script("html_200")
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMResponseError)
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)
    assert "not valid JSON" in str(exc)
    assert "<html><body>Please sign in" in str(exc)


def test_an_event_stream_answering_complete_says_to_stream(server: LLMServer) -> None:
    """An endpoint that answers complete() with server-sent events (one that only streams, or a
    gateway that turns every reply into a stream) fails saying so and what to call instead, as a
    permanent error; it was "a body that is not valid JSON (Expecting value: line 1 column 1)",
    which sent users to look for a broken proxy."""
    server.script("always_stream", "always_stream")
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMResponseError)
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)
    message = str(exc)
    assert "not valid JSON" not in message
    assert message.startswith(
        f"{server.url}/chat/completions answered a request that did not ask to stream with an event stream "
        f"(content-type 'text/event-stream'), not one JSON reply"
    ), message
    assert message.endswith("an endpoint that always streams is called with client.stream(...)")

    async def main() -> str:
        async with client_for(server) as client, client.stream("hello") as stream:
            return "".join([text async for text in stream])

    assert "reply to: hello " == asyncio.run(main())  # as it says: the stream reads it


@pytest.mark.parametrize("behaviour", ["malformed", ("cut_at_close", 61), ("cut_at_close", 0)])
def test_a_json_body_cut_short_is_transient_and_says_what_arrived(server: LLMServer, behaviour: Any) -> None:
    """A 200 whose JSON stops early (a proxy's partial body; a connection closed mid-body, which
    HTTP cannot tell from the body's end) was a permanent "not valid JSON", so the step was not
    retried: it is transient now, and says how many bytes arrived, where they end, and that a
    retry asks again, without the whole body."""
    server.script(behaviour)
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMConnectionError)
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(exc)
    arrived = 61 if behaviour == "malformed" else behaviour[1]
    message = str(exc)
    assert f"{server.url}/chat/completions answered HTTP 200 with a JSON body cut short: {arrived} bytes" in message
    assert "a retry asks again" in message, message
    if behaviour == "malformed":
        assert """ending '"choices": [{"message": {"content": "cut' (the""" in message, message
    assert "reply to: hello there" in call(client_for(server)).text


def test_every_cut_of_a_reply_is_told_from_a_body_that_is_not_json() -> None:
    """Wherever a reply is cut (inside a string, an escape, a number, a literal), the body is taken
    as cut short; a complete body that is not JSON never is."""
    from wfkit.llm._llm import _cut_short

    reply = {"choices": [{"message": {"content": 'caf\u00e9 \U0001f600 "q"\n', "tool_calls": None}}]}
    reply |= {"usage": {"prompt_tokens": 12, "cost": -1.5e-3}, "ok": True, "stop": False}
    for text in (json.dumps(reply), json.dumps(reply, ensure_ascii=False, indent=1)):
        body = text.encode()
        assert all(_cut_short(body[:n]) for n in range(len(body))), next(
            body[:n] for n in range(len(body)) if not _cut_short(body[:n])
        )
    for whole in ("<html></html>", "{'id': 1}", '{"a": x}', '{"a": 1} and more', '{"a": tru}', '{"a": 1,}', '"a"x'):
        assert not _cut_short(whole.encode()), whole


def test_json_that_is_not_a_completion_is_permanent(server: LLMServer) -> None:
    """Valid JSON without choices[0].message is a permanent LLMResponseError naming what it found."""
    server.script("not_completion")
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMResponseError)
    assert "without choices[0].message" in str(exc)
    assert "['result']" in str(exc)


def test_an_error_object_in_a_200_is_reported_with_its_message(server: LLMServer) -> None:
    """A gateway's 200 holding {"error": {...}} says what the error was, not just its keys."""
    server.script(("error_200", "upstream provider overloaded"))
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMResponseError)
    assert "answered HTTP 200 with an error instead of a chat completion: upstream provider overloaded" in str(exc)


def test_a_redirect_is_a_permanent_error_naming_where_it_points(server: LLMServer) -> None:
    """The client follows no redirect (it would resend the key elsewhere): a 301 says where it
    points and which base URL to use; it was reported as a body that is not valid JSON."""
    server.script(("redirect", "https://llm.example.com/api/v1/chat/completions"))
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMResponseError)
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)
    message = str(exc)
    assert f"{server.url}/chat/completions answered HTTP 301 Moved Permanently, a redirect to " in message
    assert "'https://llm.example.com/api/v1/chat/completions'" in message
    assert "ChatClient('https://llm.example.com/api/v1', ...)" in message
    assert "not valid JSON" not in message


def test_unreachable_endpoint_is_transient() -> None:
    """Nothing listening on the port: LLMConnectionError, classified transient."""
    srv = LLMServer()
    url = srv.url
    srv.stop()
    exc = error_of(ChatClient(url, model="test-model"))
    assert isinstance(exc, LLMConnectionError)
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(exc)


def test_api_key_never_shows_in_repr_or_errors(server: LLMServer) -> None:
    """The key stays out of repr() and out of error text, even when the server echoes it back."""
    client = client_for(server)
    assert KEY not in repr(client)
    assert "api_key=set" in repr(client)
    server.script("echo_auth")
    exc = error_of(client)
    assert KEY not in str(exc)
    assert "Bearer [REDACTED]" in str(exc)


@pytest.mark.parametrize(
    "header", ["api-key", "x-api-key", "X-Auth-Token", "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"]
)
def test_a_key_passed_in_headers_is_kept_out_of_errors_logs_checkpoints_and_cassettes(
    header: str, tmp_path: Path
) -> None:
    """A key given as headers={"api-key": ...} (Azure's header) or any credential header is as
    secret as api_key=: redacted from the error, the step log, the checkpoint and a cassette, even
    in a shape no pattern knows and when the server echoes it back. A session cookie is such a
    credential (a Cookie reached all four in clear): the whole header and each cookie's value,
    but not a short one ("dark"), which would blank that word wherever it appears."""
    import sqlite3
    import uuid

    from wfkit.llm._cassette import Cassette
    from wfkit.model._processors import redact_text

    key = uuid.uuid4().hex  # Azure's shape: 32 hex characters, no prefix to recognise
    value = {
        "Authorization": f"Token {key}",
        "Proxy-Authorization": f"Token {key}",
        "Cookie": f"theme=dark; session={key}",
        "Set-Cookie": f"session={key}; Path=/v1; HttpOnly",
    }.get(header, key)
    with LLMServer() as srv:
        srv.script(("echo_auth", header))
        flow = wf.Workflow("ask")

        @flow.step()
        async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
            reply = await ctx.llm.complete(state["q"], ctx=ctx)
            return {"answer": reply.text}

        cassette = Cassette(tmp_path / "tape.jsonl", mode="record", transport=httpx.AsyncHTTPTransport())
        client = ChatClient(srv.url, model="test-model", headers={header: value}, transport=cassette)
        failed = flow.run({"q": "x"}, workspace=tmp_path, llm=client, raise_on_error=False)
        with pytest.warns(wf.SecretInStateWarning, match="holding a secret"):  # so the checkpoint has [REDACTED]
            passed = flow.run({"q": f"my key is {key}"}, workspace=tmp_path, llm=client)
        assert value == srv.requests[-1]["headers"][header]  # the header is still sent as given
    assert ("failed", "succeeded") == (failed.status, passed.status)
    echoed = "[REDACTED]" if "Cookie" in header else value.replace(key, "[REDACTED]")
    assert "upstream rejected header " + echoed in str(failed.error)
    assert key not in str(failed.error) + repr(client)
    assert not wf.steps(tmp_path)["error_message"].dropna().str.contains(key).any()
    with sqlite3.connect(tmp_path / "wfkit.db") as db:
        assert key not in "\n".join(db.iterdump())
    assert "my key is [REDACTED]" in (tmp_path / "tape.jsonl").read_text()
    assert key not in (tmp_path / "tape.jsonl").read_text()
    assert "theme=dark" == redact_text("theme=dark")  # no cookie's short value is taken for a secret


def test_a_cookie_the_server_set_is_kept_out_of_errors_logs_and_the_journal(tmp_path: Path) -> None:
    """A session cookie the endpoint sets (Set-Cookie) goes into the client's cookie jar and is sent
    back with the next call; when the server (or a proxy) repeats it in an error, it is as secret as
    a cookie given in headers=: [REDACTED] in the run's error, the step log and the journal (it
    reached all three in clear: nothing had marked it)."""
    import sqlite3
    import uuid

    # A load balancer's affinity cookie changes with every reply: the one sent back is the latest.
    first, session = uuid.uuid4().hex, uuid.uuid4().hex  # no shape a pattern knows
    with LLMServer() as srv:
        srv.script(("set_cookie", f"session={first}; Path=/"), ("set_cookie", f"session={session}; Path=/; HttpOnly"))
        srv.script(("echo_auth", "Cookie"))
        flow = wf.Workflow("ask")

        @flow.step()
        async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
            texts = [(await ctx.llm.complete(prompt)).text for prompt in ("one", "two", "three")]
            return {"answer": " ".join(texts)}

        client = ChatClient(srv.url, model="test-model")
        run = flow.run({}, workspace=tmp_path, llm=client, raise_on_error=False)
        assert f"session={session}" == srv.requests[-1]["headers"]["Cookie"]  # the jar sent it back
    assert "failed" == run.status
    assert "upstream rejected header session=[REDACTED]" in str(run.error)
    assert session not in str(run.error)
    assert not wf.steps(tmp_path)["error_message"].dropna().str.contains(session).any()
    with sqlite3.connect(tmp_path / "wfkit.db") as db:
        assert session not in "\n".join(db.iterdump())


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (KEY + "\n", "a newline at its end"),
        (" " + KEY, "a space at its start"),
        (KEY[:10] + "\u2026", "the character '\u2026' (U+2026) at its end"),
    ],
)
def test_a_key_with_whitespace_or_a_look_alike_is_refused_without_showing_it(
    server: LLMServer, monkeypatch: pytest.MonkeyPatch, bad: str, what: str
) -> None:
    """A key from the environment that no endpoint accepts (a file's last newline, a pasted space or
    ellipsis) is refused where the client is made, saying where it came from and what to strip, and
    never echoed: httpx's own error printed the whole Authorization header and was retried."""
    monkeypatch.setenv("WFKIT_API_KEY", bad)
    with pytest.raises(ValueError) as info:
        call(ChatClient(server.url, model="test-model"))
    message = str(info.value)
    assert KEY[:10] not in message
    assert KEY[:10] not in repr(info.value.args)
    assert f"the API key in $WFKIT_API_KEY has {what}" in message, message
    assert [] == server.requests
    monkeypatch.setenv("WFKIT_API_KEY", KEY + "\n")
    with pytest.raises(
        ValueError, match=r"passed as api_key has a newline at its end.*strip it before passing it \(key\.strip\(\)\)"
    ):
        ChatClient(server.url, model="test-model", api_key=KEY + "\n")


@pytest.mark.parametrize(("bad", "what"), [("\n", "a newline at its end"), ("\u2026", "the character '\u2026'")])
def test_a_header_key_with_a_newline_or_a_look_alike_is_refused_without_showing_it(
    server: LLMServer, bad: str, what: str
) -> None:
    """A key in headers={"api-key": ...} with a character HTTP cannot send is refused when the
    client is made, as api_key= is, naming the header and never the key: it failed each call with
    httpx's "Illegal header value b'KEY\\n'", the key in the run's error."""
    import uuid

    key = uuid.uuid4().hex
    with pytest.raises(ValueError) as info:
        ChatClient(server.url, model="test-model", headers={"api-key": key + bad})
    message = str(info.value)
    assert f"the API key in headers['api-key'] has {what}" in message, message
    assert key not in message
    assert [] == server.requests


@pytest.mark.parametrize(
    ("header", "cookies", "what"),
    [
        ("Cookie", "session={key}\n", "a newline at its end"),
        ("Cookie", "theme=dark; session={key}\n", "a newline at its end"),
        ("Cookie", "session={key}\u2026; theme=dark", "the character '\u2026' (U+2026) at its end"),
        ("Set-Cookie", "session={key} ; Path=/", "a space at its end"),
    ],
)
def test_a_cookie_with_a_newline_or_a_look_alike_is_refused_as_a_cookie(
    server: LLMServer, header: str, cookies: str, what: str
) -> None:
    """A session cookie in headers={"Cookie": ...} that HTTP cannot send is refused when the client
    is made, named for what it is (a cookie, by its name; the message called it an "API key" and
    told to copy "the key from your provider"), with how to fix it and never its value; one of
    several cookies was not refused at all, and every call failed in httpx instead."""
    import uuid

    key = uuid.uuid4().hex
    with pytest.raises(ValueError) as info:
        ChatClient(server.url, model="test-model", headers={header: cookies.format(key=key)})
    message = str(info.value)
    assert message.startswith(f"the cookie 'session' in headers[{header!r}] has {what}, which no cookie holds"), message
    assert "API key" not in message
    fix = "without it" if "character" not in what else "copy the cookie's value again"
    assert fix in message
    assert key not in message
    assert [] == server.requests


# --- streaming --------------------------------------------------------------------------------------


def test_stream_yields_chunks_as_the_server_sends_them() -> None:
    """Chunks arrive while the server is still sending, and s.reply holds the whole reply and usage."""
    received: list[float] = []
    with LLMServer(api_key=KEY, stream_gap=0.05) as srv:

        async def main() -> tuple[list[str], Reply | None]:
            chunks = []
            async with client_for(srv) as client, client.stream("one two three") as stream:
                async for text in stream:
                    received.append(time.monotonic())
                    chunks.append(text)
            return chunks, stream.reply

        chunks, reply = asyncio.run(main())
        sent = list(srv.sent_at)
        assert srv.requests[-1]["body"]["stream"] is True
    assert ["reply ", "to: ", "one ", "two ", "three "] == chunks
    assert received[0] < sent[-1]  # the first chunk was in hand before the server finished
    assert reply is not None
    assert ("reply to: one two three ", 3, 5) == (reply.text, reply.tokens_in, reply.tokens_out)
    assert pytest.approx((3 * 0.001 + 5 * 0.002) / 1000) == reply.cost_usd


def test_stream_error_status_raises_on_entry(server: LLMServer) -> None:
    """A streamed call answered 429 raises the same transient LLMStatusError before any chunk."""
    server.script(("429", 2))

    async def main() -> None:
        async with client_for(server) as client, client.stream("hi"):
            pytest.fail("the stream should not open")

    with pytest.raises(LLMStatusError) as info:
        asyncio.run(main())
    assert 2.0 == wf.retry_after_of(info.value)


def test_stream_of_plain_json_is_a_clear_error(server: LLMServer) -> None:
    """A server that ignores "stream" and answers one JSON body is a permanent error naming the
    endpoint and the content type it sent instead of an event stream."""
    server.script("not_completion")

    async def main() -> None:
        async with client_for(server) as client, client.stream("hi") as stream:
            async for _ in stream:
                pass

    with pytest.raises(LLMResponseError) as info:
        asyncio.run(main())
    message = str(info.value)
    assert f"{server.url}/chat/completions answered a streamed request with content-type 'application/json'" in message
    assert "not text/event-stream" in message
    assert """it starts '{"result": "hello"}'. For an endpoint that does not stream, call client.complete""" in message
    assert wf.ErrorKind.PERMANENT == wf.classify_error(info.value)


def streamed(server: LLMServer, prompt: str = "one two three four") -> tuple[list[str], Reply | None]:
    """The chunks of one streamed reply, as they came, and the reply they made."""

    async def main() -> tuple[list[str], Reply | None]:
        async with client_for(server) as client, client.stream(prompt) as stream:
            return [text async for text in stream], stream.reply

    return asyncio.run(main())


def stream_text(server: LLMServer) -> str:
    return "".join(streamed(server)[0])


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_a_stream_framed_any_way_the_sse_spec_allows_reads_as_the_plain_one(server: LLMServer, newline: str) -> None:
    """Each chunk's JSON over several data: lines (joined with newlines), CRLF or CR line ends, a
    comment, event:, id: and retry: fields: the same chunks and reply as the plain stream. The
    hand-written reader took each data: line for a whole chunk and failed on the first."""
    server.script(("spec_stream", newline), "ok")
    framed, plain = streamed(server), streamed(server)
    assert ["reply ", "to: ", "one ", "two ", "three ", "four "] == framed[0]
    assert plain[0] == framed[0]
    assert framed[1] is not None
    assert plain[1] is not None
    assert (plain[1].text, plain[1].tokens_in, plain[1].tokens_out) == (
        framed[1].text,
        framed[1].tokens_in,
        framed[1].tokens_out,
    )
    assert ("stop", "test-model") == (framed[1].finish_reason, framed[1].model)


@pytest.mark.parametrize(("event", "wrapped"), [(None, True), ("error", True), ("error", False)])
def test_an_error_event_mid_stream_is_an_error_with_its_message(
    server: LLMServer, event: str | None, wrapped: bool
) -> None:
    """OpenAI's mid-stream error object (``{"error": {...}}`` with or without `event: error`, or bare
    under `event: error`; its JSON over several data: lines) ends the stream with an error quoting
    its message, after the chunks before it."""
    server.script(("error_event", (event, wrapped)))
    chunks: list[str] = []

    async def main() -> None:
        async with client_for(server) as client, client.stream("one two three") as stream:
            async for text in stream:
                chunks.append(text)

    with pytest.raises(LLMResponseError) as info:
        asyncio.run(main())
    assert ["reply ", "to: "] == chunks
    assert (
        f"{server.url}/chat/completions reported an error mid-stream: "
        "The server had an error while processing your request. (server_error: transient, worth a retry)"
    ) == str(info.value)


def test_a_server_error_mid_stream_is_retried_and_the_step_gets_the_whole_reply(
    server: LLMServer, tmp_path: Path
) -> None:
    """OpenAI's mid-stream ``server_error`` is the server's fault, as a 500 is: transient, so a step
    with a retry policy asks again and gets the whole reply (it was permanent: the step failed at
    once, its retries unused)."""
    server.script(("error_event", ("error", True)), "ok")
    flow = wf.Workflow("streamer")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, jitter=0))
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        async with ctx.llm.stream(state["q"], ctx=ctx) as stream:
            return {"answer": "".join([t async for t in stream])}

    run = flow.run({"q": "one two"}, workspace=tmp_path, llm=client_for(server), raise_on_error=False)
    assert ("succeeded", "reply to: one two ") == (run.status, run.state.get("answer"))
    rows = wf.steps(tmp_path).sort_values("attempt")
    assert [("retry", "transient"), ("ok", None)] == [
        (status, kind if isinstance(kind, str) else None)
        for status, kind in zip(rows["status"], rows["error_kind"], strict=True)
    ]
    assert (
        rows["error_message"]
        .iloc[0]
        .endswith(
            "reported an error mid-stream: The server had an error while processing your request. "
            "(server_error: transient, worth a retry)"
        )
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}, "transient"),
        ({"message": "overloaded", "type": "overloaded_error"}, "transient"),
        ({"message": "upstream failed", "code": 503}, "transient"),
        ({"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}, "permanent"),
        ({"message": "bad", "code": "400"}, "permanent"),
        ({"message": "who knows"}, "permanent"),
    ],
)
def test_a_mid_stream_error_is_classified_by_its_type_code_or_status(
    server: LLMServer, error: dict[str, Any], kind: str
) -> None:
    """A mid-stream error saying rate limit, overload, a server error or a 429/5xx status is
    transient; one saying the request is wrong (or saying nothing of why) stays permanent."""
    server.script(("error_event", ("error", True, error)))

    async def main() -> None:
        async with client_for(server) as client, client.stream("one two three") as stream:
            async for _ in stream:
                pass

    with pytest.raises(LLMResponseError) as info:
        asyncio.run(main())
    assert wf.ErrorKind(kind) == wf.classify_error(info.value)


@pytest.mark.parametrize("behaviour", ["cut_stream", "broken_stream"])
def test_a_stream_cut_off_midway_is_a_transient_error_not_a_shorter_reply(server: LLMServer, behaviour: str) -> None:
    """A stream that ends after two words, with no finish_reason and no [DONE], was cut off (a
    proxy, a dropped connection): an error worth retrying, never a reply of the words that came."""
    server.script((behaviour, 2))
    with pytest.raises(LLMConnectionError) as info:
        stream_text(server)
    message = str(info.value)
    assert "cut off the stream for model 'test-model' after 2 events" in message
    assert "could not reach" not in message  # it was reached: it answered, then stopped
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(info.value)
    assert "reply to: one two three four " == stream_text(server)  # the retry gets it whole


@pytest.mark.parametrize(("sent", "events"), [(1, "1 event"), (2, "2 events")])
def test_a_stream_that_stalls_midway_says_it_stopped_not_that_it_never_answered(
    server: LLMServer, sent: int, events: str
) -> None:
    """A stream that sends a word or two and then nothing for longer than the read timeout fails as a
    timeout worth retrying that says the stream stopped after its first events, which timeout ran
    out and where to give more; it said the endpoint "did not answer in time", which a user who
    had just seen its first words took for a wrong URL or a server down."""
    server.script(("stall_stream", sent))
    client = client_for(server, timeout=1.0)

    async def main() -> list[str]:
        async with client, client.stream("one two three four") as stream:
            return [text async for text in stream]

    with pytest.raises(LLMTimeoutError) as info:
        asyncio.run(main())
    message = str(info.value)
    assert message.startswith(f"{server.url}/chat/completions stopped streaming for model 'test-model' after {events}:")
    assert "no bytes came for 1 s, the read timeout (ReadTimeout)" in message
    assert "stream(..., timeout=SECONDS)" in message
    assert message.endswith("the reply so far is incomplete, so it is not returned")
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(info.value)


def test_unsupported_scheme_keeps_its_permanent_httpx_error() -> None:
    """A URL httpx cannot speak is not retried: the httpx error passes through, classified permanent."""
    import httpx

    exc = error_of(ChatClient("ftp://127.0.0.1/v1", model="m"))
    assert isinstance(exc, httpx.UnsupportedProtocol)
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)


def test_a_base_url_with_a_query_sends_it_with_every_call_and_keeps_a_key_in_it_secret(
    server: LLMServer, tmp_path: Path
) -> None:
    """A base URL with a query (Azure's ``?api-version=``, a gateway's ``?key=``) sends that query
    with every call, plain and streamed, to ``{path}/chat/completions``; it posted to the path
    with "/chat/completions" glued onto the query's last value, and the server's 404 named a URL
    without the path the user had not mistyped. A key in it stays out of errors and cassettes."""
    import pickle
    import uuid

    from wfkit.llm._cassette import Cassette

    secret = uuid.uuid4().hex
    base = f"{server.url}?api-version=2024-06-01&key={secret}"
    cassette = Cassette(tmp_path / "tape.jsonl", mode="record", transport=httpx.AsyncHTTPTransport())

    async def main() -> tuple[str, str]:
        async with ChatClient(base, model="test-model", api_key=KEY, transport=cassette) as client:
            plain = (await client.complete("hello")).text
            async with client.stream("there") as stream:
                return plain, "".join([text async for text in stream])

    assert ("reply to: hello", "reply to: there ") == asyncio.run(main())
    assert [f"/v1/chat/completions?api-version=2024-06-01&key={secret}"] * 2 == [r["path"] for r in server.requests]
    assert secret not in (tmp_path / "tape.jsonl").read_text()
    server.script("500")
    client = ChatClient(base, model="test-model", api_key=KEY)
    message = str(error_of(client))
    assert message.startswith(f"{server.url}/chat/completions answered HTTP 500"), message
    assert secret not in message + repr(client)
    call(pickle.loads(pickle.dumps(client)))  # a Dask worker's copy sends the query too
    assert f"/v1/chat/completions?api-version=2024-06-01&key={secret}" == server.requests[-1]["path"]


def test_base_url_without_a_scheme_is_refused_with_the_url_to_write(server: LLMServer) -> None:
    """ChatClient("127.0.0.1:PORT/v1") is refused at construction, naming the URL and suggesting the
    one with http://, which then reaches the server."""
    bare = server.url.removeprefix("http://")
    with pytest.raises(ValueError, match=f"ChatClient base_url '{bare}' has no scheme: write 'http://{bare}'"):
        ChatClient(bare, model="test-model", api_key=KEY)
    suggested = f"http://{bare}"
    assert "reply to: hello" == call(ChatClient(suggested, model="test-model", api_key=KEY), "hello").text


def test_wfkit_llm_base_url_without_a_scheme_is_refused_naming_the_variable(
    server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$WFKIT_LLM_BASE_URL without a scheme fails the step asking ctx.llm with a ValueError naming the
    variable, not with httpx's UnsupportedProtocol at every call."""
    bare = server.url.removeprefix("http://")
    monkeypatch.setenv("WFKIT_LLM_BASE_URL", bare)
    monkeypatch.setenv("WFKIT_LLM_MODEL", "test-model")
    run = asking_flow().run({"q": "hello"}, workspace=False, raise_on_error=False)
    event = run.events[-1]
    assert ("failed", "ValueError") == (str(run.status), event.error_type)
    assert f"$WFKIT_LLM_BASE_URL '{bare}' has no scheme: write 'http://{bare}'" in str(event.error_message)
    assert [] == server.requests


def test_a_pickled_client_calls_the_endpoint_with_its_key(server: LLMServer) -> None:
    """A client pickles by its configuration, key included (the server refuses calls without it);
    the copy keeps the key out of its repr and opens its own connections."""
    import pickle

    client = client_for(server, timeout=7.0, headers={"X-Team": "search"})
    payload = pickle.dumps(client)
    copy = pickle.loads(payload)
    assert "ChatClient('" + server.url + "', model='test-model', api_key=set)" == repr(copy)
    reply = call(copy, "hello")
    assert ("reply to: hello", pytest.approx((1 * 0.001 + 3 * 0.002) / 1000)) == (reply.text, reply.cost_usd)
    sent = server.requests[-1]["headers"]
    assert (f"Bearer {KEY}", "search") == (sent["Authorization"], sent["X-Team"])
    assert 7.0 == copy._timeout.read
    simulated = pickle.loads(pickle.dumps(ChatClient(transport=SimulatedModel(p50=0.001, p99=0.002, seed=3))))
    assert "Simulated reply to: hi" == call(simulated, "hi").text


@pytest.mark.parametrize("dumps", ["pickle", "cloudpickle"])
def test_a_client_over_an_httpx_network_transport_refuses_to_pickle_saying_what_to_do(
    server: LLMServer, tmp_path: Path, dumps: str
) -> None:
    """An httpx network transport (its connection pool, its SSL context) cannot travel to a Dask
    worker: pickling a client over one, alone or under a cassette, is refused naming the transport
    and the way out; the client still calls from here, and the way out (no transport, each copy
    connecting by itself) pickles and calls the endpoint."""
    import importlib
    import pickle

    import httpx

    from wfkit.llm._cassette import Cassette

    pickler = importlib.import_module(dumps)
    direct = client_for(server, transport=httpx.AsyncHTTPTransport(retries=2))
    with pytest.raises(TypeError, match=r"its transport httpx\.AsyncHTTPTransport .* leave transport= out"):
        pickler.dumps(direct)
    assert "reply to: here" == call(direct, "here").text
    tape = Cassette(tmp_path / "t.jsonl", mode="record", transport=httpx.AsyncHTTPTransport())
    with pytest.raises(TypeError, match=r"Cassette\(.*t\.jsonl'\) cannot be pickled .* leave its transport= out"):
        pickler.dumps(client_for(server, transport=tape))
    copy = pickle.loads(pickler.dumps(client_for(server)))
    assert "reply to: there" == call(copy, "there").text
    assert f"Bearer {KEY}" == server.requests[-1]["headers"]["Authorization"]


def test_a_client_unpickled_in_another_process_keeps_its_key_secret_there() -> None:
    """The process that unpickles a client (a Dask worker) marks its key secret: redacted from what
    that process stores, as in the process that made the client."""
    import os
    import pickle
    import subprocess
    import sys

    key = "opaque-process-key-31415"  # not key-shaped: only its marking hides it
    payload = pickle.dumps(ChatClient("http://127.0.0.1:9/v1", model="m", api_key=key))
    code = (
        "import pickle, sys; from wfkit.model._processors import redact_text; "
        "sys.argv[1] == 'load' and pickle.loads(sys.stdin.buffer.read()); print(redact_text('used " + key + "'))"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    outs = [
        subprocess.run(
            [sys.executable, "-c", code, how], input=payload, capture_output=True, env=env, check=True
        ).stdout.decode()
        for how in ("load", "skip")
    ]
    assert ["used [REDACTED]\n", f"used {key}\n"] == outs


def test_complete_refuses_stream_true() -> None:
    """complete(stream=True) points to client.stream() instead of failing on an event stream."""
    with pytest.raises(ValueError, match=r"client\.stream"):
        call(ChatClient(), stream=True)


def test_a_run_s_step_latency_holds_no_connection_setup_of_the_client(server: LLMServer, monkeypatch) -> None:
    """Every run gets its own event loop, so its own connection pool; the pool's TLS settings
    (the certificate authorities loaded from disk, 20 to 50 ms) are the client's, made once when
    the client is made: before, each run's first model call made them again inside its step, and
    the step's recorded latency grew by it."""
    client = client_for(server)
    made: list[object] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(args or kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    flow = wf.Workflow("twice")

    @flow.step
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete("hello", ctx=ctx)).text}

    for _ in range(3):
        assert "succeeded" == flow.run({}, workspace=False, llm=client).status
    assert [] == made


def test_stream_records_usage_in_the_step_event(server: LLMServer) -> None:
    """A stream opened with ctx adds its model, tokens and cost to the step's event."""
    flow = wf.Workflow("streamer")

    @flow.step
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        async with ctx.llm.stream("a b", ctx=ctx) as stream:
            return {"answer": "".join([t async for t in stream])}

    run = flow.run({}, workspace=False, llm=client_for(server))
    event = run.events[-1]
    assert "reply to: a b " == run.state["answer"]
    assert ("test-model", 2, 4) == (event.model, event.tokens_in, event.tokens_out)
    assert event.cost_usd is not None


# --- inside runs ------------------------------------------------------------------------------------


def test_run_retries_429_then_records_tokens_and_cost(server: LLMServer) -> None:
    """A 429 then a 200: the events show a transient retry honouring Retry-After, then ok with usage."""
    server.script(("429", 3), "ok")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01))
    with test_mode():
        run = flow.run({"q": "refund please"}, workspace=False, llm=client_for(server))
    retry, ok = run.events
    assert ("retry", "transient", "LLMStatusError") == (retry.status, retry.error_kind, retry.error_type)
    # test_mode waits no backoff: the row says so (0 s), and keeps the Retry-After wait it planned.
    assert 0.0 == retry.retry_delay_s
    assert retry.extra["retry_delay_planned_s"] >= 3.0
    assert "test-model" == retry.model
    assert ("ok", "test-model", 2, 4) == (ok.status, ok.model, ok.tokens_in, ok.tokens_out)
    assert pytest.approx((2 * 0.001 + 4 * 0.002) / 1000) == ok.cost_usd
    assert {"llm_calls": 1, **at(server)} == ok.extra
    assert "reply to: refund please" == run.state["answer"]


# "a b c" asks 3 tokens; "reply to: a b c" answers 5: a call at PRICES costs this.
ABC_USD = (3 * 0.001 + 5 * 0.002) / 1000
NO_USAGE_FIX = (
    "whose server sent no token usage with its reply, so there was nothing to price: use an endpoint or proxy that "
    "reports usage (a stream's server may ignore stream_options.include_usage: use one that honours it, or "
    "client.complete(...))"
)


def usage_flow(streamed: bool) -> wf.Workflow:
    """``counted`` (a reply with usage), ``refused`` (a 429, then a reply with usage), ``uncounted``
    (whatever the server sends next) and ``tidy`` (no model), each call ``complete`` or a stream.
    Each step keeps its reply's tokens and cost in the state."""
    flow = wf.Workflow("usage")

    async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        if streamed:
            async with ctx.llm.stream("a b c") as stream:
                assert "reply to: a b c " == "".join([t async for t in stream])
            reply = stream.reply
        else:
            reply = await ctx.llm.complete("a b c")
        assert reply is not None
        return {ctx.step: (reply.tokens_in, reply.tokens_out, reply.cost_usd)}

    for name in ("counted", "refused", "uncounted"):
        flow.step(ask, name=name, retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))

    @flow.step
    def tidy(state: Any) -> dict[str, Any]:
        return {"tidy": True}

    flow.chain("counted", "refused", "uncounted", "tidy")
    return flow


def check_no_usage_is_unknown_cost(server: LLMServer, folder: Path, streamed: bool) -> None:
    """Two runs of :func:`usage_flow`: in the first the server sends ``uncounted`` no usage, in the
    second every reply carries it. Read back from the parquet files by pandas, the step that got no
    usage costs NaN (unknown), not the $0 of ``tidy``, which called no model; the other steps keep
    their exact cost (the 429 added nothing); ``cost_budget`` leaves the first run unscored, saying
    why and what to do, and scores the second; the report shows "-" and says why."""
    from wfkit.logs._report import write_report
    from wfkit.logs._steplog import steps_dir

    flow = usage_flow(streamed)
    server.script("ok", ("429", 0), "ok", "no_usage")
    with test_mode():
        unknown = flow.run({}, workspace=folder, llm=client_for(server))
        known = flow.run({}, workspace=folder, llm=client_for(server))
    assert (None, None, None) == unknown.state["uncounted"]  # the Reply: not counted, not 0
    assert (3, 5, pytest.approx(ABC_USD)) == unknown.state["counted"] == unknown.state["refused"]
    assert (3, 5, pytest.approx(ABC_USD)) == known.state["uncounted"]
    stream_options = [(r["body"] or {}).get("stream_options") for r in server.requests]
    assert [{"include_usage": True} if streamed else None] * 7 == stream_options  # it asked, and was ignored

    wf.steps(folder)  # exports the runs' rows to the parquet files
    frame = pd.read_parquet(steps_dir(folder))
    row = frame[(frame["run_id"] == unknown.run_id) & (frame["step"] == "uncounted")].iloc[0]
    assert ("ok", "test-model") == (row["status"], row["model"])
    assert pd.isna(row["tokens_in"])
    assert pd.isna(row["cost_usd"])
    assert {"llm_calls": 1, "no_usage_models": ["test-model"], **at(server)} == json.loads(row["extra"])
    failed = frame[(frame["step"] == "refused") & (frame["status"] == "retry")]
    assert 1 == len(failed)
    assert "no_usage_models" not in json.loads(failed["extra"].iloc[0])  # a failed call: nothing to pay

    mine = frame[frame["run_id"] == unknown.run_id].wf.cost(by=None).loc["usage"]
    # Not counted, so unknown (<NA>), not the 0 of a step that called no model; tidy's 0 is exact.
    assert pd.isna(mine.loc["uncounted", "tokens_in"])
    assert pd.isna(mine.loc["uncounted", "tokens_out"])
    assert 1 == mine.loc["uncounted", "calls"]
    assert pd.isna(mine.loc["uncounted", "cost_usd"])
    assert {"counted": 3, "refused": 3, "tidy": 0} == mine["tokens_in"].drop("uncounted").to_dict()
    assert ["Int64", "Int64"] == [str(mine[c].dtype) for c in ("tokens_in", "tokens_out")]
    assert {"counted": ABC_USD, "refused": ABC_USD, "tidy": 0.0} == pytest.approx(
        mine["cost_usd"].drop("uncounted").to_dict(), rel=1e-12
    )
    assert 2 == mine.loc["refused", "calls"]  # the 429 counts as a call, and costs nothing
    by_run = frame.wf.cost()
    assert pd.isna(by_run.loc[unknown.run_id, "cost_usd"])
    assert pd.isna(by_run.loc[unknown.run_id, "tokens_in"])  # 6 of them counted: 6 would read as all
    assert pytest.approx(3 * ABC_USD, rel=1e-12) == by_run.loc[known.run_id, "cost_usd"]
    assert (9, 15) == tuple(by_run.loc[known.run_id, ["tokens_in", "tokens_out"]])
    assert pd.isna(frame.wf.cost(by=None).loc[("usage", "uncounted"), "cost_usd"])  # the step over both runs

    case = wf.evals.Case("c1", {})
    judged = wf.evals.cost_budget(1.0)(case, unknown)
    assert (True, False) == (judged.value != judged.value, judged.passed)  # NaN: unscored
    assert (
        f"cost unknown: step 'uncounted' called model 'test-model', {NO_USAGE_FIX}, then evaluate again; "
        "$0.00003 of $1.0 in the attempts whose every call was priced"
    ) == judged.detail
    assert wf.evals.Score(1.0, True, "$0.00004 of $1.0") == wf.evals.cost_budget(1.0)(case, known)

    page = write_report(folder, folder / "report").read_text()
    per_step = page[page.index("<h3>Cost</h3>") : page.index("<h3>Cost per model</h3>")]
    assert "a call of that step had no known price, or its server sent no token usage to price" in per_step
    costs = page[page.index("<h3>Cost per model</h3>") :]
    assert "the server sent no token usage with its replies" in costs
    assert "stream_options.include_usage" in costs
    assert "no price is known" not in costs  # test-model is priced: that is not why
    assert 'Tokens of "-" are unknown' in per_step
    assert "only one of its two counts" not in costs  # the server sent none: that is not why either


def check_part_usage_counts_what_came(server: LLMServer, folder: Path, streamed: bool) -> None:
    """Two runs of :func:`usage_flow` whose ``uncounted`` step gets a usage with one count: no
    ``completion_tokens`` in the first run, no ``prompt_tokens`` in the second. The count that came
    back is in the Reply and the step log (read back from parquet by pandas), only the other is
    marked not counted: ``df.wf.cost()`` shows that one <NA> in every group holding the call and
    keeps exact sums elsewhere; the cost is unknown (half a count has no price), ``cost_budget``
    says which count the server left out, and the report shows "-" and says why."""
    from wfkit.logs._report import write_report
    from wfkit.logs._steplog import steps_dir

    flow = usage_flow(streamed)
    server.script("ok", "ok", ("part_usage", "completion_tokens"), "ok", "ok", ("part_usage", "prompt_tokens"))
    with test_mode():
        no_out = flow.run({}, workspace=folder, llm=client_for(server))
        no_in = flow.run({}, workspace=folder, llm=client_for(server))
    assert (3, None, None) == no_out.state["uncounted"]
    assert (None, 5, None) == no_in.state["uncounted"]
    assert (3, 5, pytest.approx(ABC_USD)) == no_out.state["counted"] == no_in.state["refused"]

    wf.steps(folder)  # exports the runs' rows to the parquet files
    frame = pd.read_parquet(steps_dir(folder))
    rows = frame[frame["step"] == "uncounted"].set_index("run_id")
    assert (3, "test-model") == (rows.loc[no_out.run_id, "tokens_in"], rows.loc[no_out.run_id, "model"])
    assert pd.isna(rows.loc[no_out.run_id, "tokens_out"])
    no_out_extra = {"llm_calls": 1, "no_tokens_out_models": ["test-model"], **at(server)}
    assert no_out_extra == json.loads(rows.loc[no_out.run_id, "extra"])
    assert 5 == rows.loc[no_in.run_id, "tokens_out"]
    assert pd.isna(rows.loc[no_in.run_id, "tokens_in"])
    no_in_extra = {"llm_calls": 1, "no_tokens_in_models": ["test-model"], **at(server)}
    assert no_in_extra == json.loads(rows.loc[no_in.run_id, "extra"])
    assert rows["cost_usd"].isna().all()

    by_run = frame.wf.cost()
    assert (9, 3) == (by_run.loc[no_out.run_id, "tokens_in"], by_run.loc[no_out.run_id, "calls"])
    assert pd.isna(by_run.loc[no_out.run_id, "tokens_out"])  # 10 counted, of more
    assert (15, 3) == (by_run.loc[no_in.run_id, "tokens_out"], by_run.loc[no_in.run_id, "calls"])
    assert pd.isna(by_run.loc[no_in.run_id, "tokens_in"])
    assert by_run["cost_usd"].isna().all()
    by_step = frame.wf.cost(by=None).loc["usage"]
    assert {"counted": 6, "refused": 6, "tidy": 0} == by_step["tokens_in"].drop("uncounted").to_dict()
    assert {"counted": 10, "refused": 10, "tidy": 0} == by_step["tokens_out"].drop("uncounted").to_dict()
    assert by_step.loc["uncounted", ["tokens_in", "tokens_out", "cost_usd"]].isna().all()
    assert {"counted": 2 * ABC_USD, "refused": 2 * ABC_USD, "tidy": 0.0} == pytest.approx(
        by_step["cost_usd"].drop("uncounted").to_dict(), rel=1e-12
    )

    judged = wf.evals.cost_budget(1.0)(wf.evals.Case("c1", {}), no_out)
    assert (True, False) == (judged.value != judged.value, judged.passed)  # NaN: unscored
    assert (
        "cost unknown: step 'uncounted' called model 'test-model', whose server's usage had no completion_tokens, "
        "so the call could not be priced: use an endpoint or proxy that reports both prompt_tokens and "
        "completion_tokens, then evaluate again; $0.00003 of $1.0 in the attempts whose every call was priced"
    ) == judged.detail

    page = write_report(folder, folder / "report").read_text()
    per_step = page[page.index("<h3>Cost</h3>") : page.index("<h3>Cost per model</h3>")]
    assert "or its server counted only one kind of its tokens" in per_step
    assert "sent no token usage" not in per_step
    assert 'Tokens of "-" are unknown' in per_step
    costs = page[page.index("<h3>Cost per model</h3>") :]
    assert "the server's token usage held only one of its two counts" in costs
    assert "no price is known" not in costs
    assert "sent no token usage" not in costs
    model_row = costs[costs.index('<td class="text">test-model</td>') :]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", model_row[: model_row.index("</tr>")])
    # model, steps, then calls, tokens in, tokens out, cost: each run left one count out, so both are "-"
    assert ["test-model", "counted, refused, uncounted", "6", "-", "-", "-"] == cells[:6]


def test_a_reply_with_one_token_count_records_it_and_marks_the_other_unknown(server: LLMServer, tmp_path: Path) -> None:
    """A completion whose ``usage`` has ``prompt_tokens`` but no ``completion_tokens`` (or the
    reverse): the count that came back is recorded, only the other reads as unknown."""
    check_part_usage_counts_what_came(server, tmp_path, streamed=False)


def test_a_reply_without_usage_makes_its_steps_cost_unknown_not_free(server: LLMServer, tmp_path: Path) -> None:
    """A completion whose server sent no ``usage`` (some proxies and local servers): its Reply's
    tokens and cost are None, and the step's cost is unknown in the step log, ``df.wf.cost()``,
    ``cost_budget`` and the report, where it read as a free call ($0, within any budget)."""
    check_no_usage_is_unknown_cost(server, tmp_path, streamed=False)


def closed_port_url() -> str:
    """The base URL of a port of 127.0.0.1 nobody listens on: a connection there is refused."""
    srv = LLMServer()
    url = srv.url
    srv.stop()
    return url


def test_a_model_all_of_whose_calls_were_refused_costs_a_known_0_with_its_calls_counted(tmp_path: Path) -> None:
    """Calls that generated nothing, over real sockets: a 429 and a 503 from the server, a refused
    connection, a cassette with no recording, and a connection the step's timeout cut short before
    the request went out. Read
    back from parquet, ``cost(by="model")`` shows each model at a known $0 with its calls counted,
    the report's table per model too (it left the cost section out, as if no model had been
    called), and ``cost_budget`` scores the run."""
    from wfkit.logs._report import write_report
    from wfkit.logs._steplog import steps_dir

    flow = wf.Workflow("refused")

    @flow.step
    async def limited(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        statuses = []
        for _ in range(2):
            try:
                await ctx.llm.complete("a b c")
            except LLMStatusError as exc:
                statuses.append(exc.status_code)
        return {"statuses": statuses}

    @flow.step
    async def unreachable(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        with pytest.raises(LLMConnectionError):
            await ChatClient(state["closed"], model="down-model").complete("a b c", ctx=ctx)
        return {}

    @flow.step
    async def unrecorded(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        tape = wf.llm.Cassette(state["tape"], mode="replay")
        with pytest.raises(wf.llm.CassetteMissError):  # no server was asked
            await ChatClient(model="taped-model", transport=tape).complete("a b c", ctx=ctx)
        return {}

    @flow.step(timeout=0.5, fallback="spared")
    async def connecting(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        await ChatClient(state["stuck"], model="stuck-model").complete("a b c", ctx=ctx)
        return {}

    @flow.step
    def spared(state: Any) -> dict[str, Any]:
        return {"spared": True}

    flow.chain("limited", "unreachable", "unrecorded", "connecting")
    with LLMServer(api_key=KEY) as server, FullBacklog() as stuck, test_mode():
        server.script(("429", 0), ("status", 503))
        inputs = {"closed": closed_port_url(), "tape": str(tmp_path / "none.jsonl"), "stuck": stuck.url}
        run = flow.run(inputs, workspace=tmp_path, llm=client_for(server))
    assert ([429, 503], True) == (run.state["statuses"], run.state["spared"])
    assert "timeout" == next(e.status for e in run.events if e.step == "connecting")
    for event in run.events:
        assert not {"unknown_outcome_calls", "unknown_outcome_models"} & set(event.extra or {}), event

    wf.steps(tmp_path)  # exports the run's rows to the parquet files
    table = pd.read_parquet(steps_dir(tmp_path)).wf.cost(by="model")
    models = ("test-model", "down-model", "taped-model", "stuck-model")
    assert dict(zip(models, (2, 1, 1, 1), strict=True)) == table["calls"].to_dict()
    assert dict.fromkeys(models, 0.0) == table["cost_usd"].to_dict()
    assert dict.fromkeys(models, 0) == table["tokens_in"].to_dict()

    assert wf.evals.Score(1.0, True, "$0.00000 of $1.0") == wf.evals.cost_budget(1.0)(wf.evals.Case("c1", {}), run)

    page = write_report(tmp_path, tmp_path / "report").read_text()
    costs = page[page.index("<h3>Cost per model</h3>") :]
    assert "is unknown" not in costs
    model_row = costs[costs.index('<td class="text">test-model</td>') :]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", model_row[: model_row.index("</tr>")])
    # model, steps, then calls, tokens in, tokens out, cost
    assert ["test-model", "limited", "2", "0", "0", "$0.0000"] == cells[:6]


UNKNOWN = {"unknown_outcome_calls": 1, "unknown_outcome_models": ["test-model"]}
FAILED_AFTER = (
    "and the call failed after the server got it (a read timeout, the step's timeout while it waited, a gateway's "
    "504, a reply cut short or unreadable), so the server may have generated and billed a reply whose token usage "
    "never came: give calls time to answer (ChatClient(..., timeout=...), the step's timeout=) to know what they "
    "cost (a call the server refused, a 429 or a 503, costs nothing)"
)


def test_a_gateways_504_leaves_the_cost_unknown_where_a_503_costs_a_known_0(tmp_path: Path) -> None:
    """A 504 is a gateway that stopped waiting for the model behind it, which may have gone on and
    billed: unlike a 503 (nothing generated), its attempt is marked and its cost reads <NA>."""
    flow = wf.Workflow("gateway")

    async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        with pytest.raises(LLMStatusError):
            await ctx.llm.complete("a b c")
        return {}

    flow.step(ask, name="unavailable")
    flow.step(ask, name="gateway_timeout")
    flow.chain("unavailable", "gateway_timeout")
    with LLMServer(api_key=KEY) as server, test_mode():
        server.script(("status", 503), ("status", 504))
        run = flow.run({}, workspace=tmp_path, llm=client_for(server))
    extras = {e.step: e.extra for e in run.events}
    assert {"llm_calls": 1, **at(server)} == extras["unavailable"]
    assert {"llm_calls": 1, **UNKNOWN, **at(server)} == extras["gateway_timeout"]
    by_step = wf.steps(tmp_path).wf.cost(by=None).loc["gateway"]
    assert 0.0 == by_step.loc["unavailable", "cost_usd"]
    assert pd.isna(by_step.loc["gateway_timeout", "cost_usd"])


def test_a_call_that_failed_after_the_server_got_it_makes_its_steps_cost_unknown(tmp_path: Path) -> None:
    """Calls that failed once the server had the request, over real HTTP: a reply stalled past the
    read timeout, a body the connection dropped midway, and a 200 that is no chat completion. The
    server may have generated and billed each; they read as failed calls, so $0 (or the step's
    other calls' sum). Each attempt's extra now marks it (``unknown_outcome_calls``), and read back
    from parquet, ``cost()`` shows its step, run and model <NA>, the report "-" saying why, and
    ``cost_budget`` leaves the case unscored, saying why; a retried 429 keeps its step's cost."""
    from wfkit.logs._report import write_report
    from wfkit.logs._steplog import steps_dir

    flow = wf.Workflow("lost")

    async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        try:
            await ctx.llm.complete("a b c", timeout=httpx.Timeout(30.0, read=0.3))
        except (LLMTimeoutError, LLMConnectionError, LLMResponseError) as exc:
            return {ctx.step: type(exc).__name__}
        return {ctx.step: "ok"}

    for name in ("counted", "refused", "stalled", "cut", "unreadable"):
        flow.step(ask, name=name, retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))
    flow.chain("counted", "refused", "stalled", "cut", "unreadable")
    with LLMServer(api_key=KEY) as server, test_mode():
        server.script("ok", ("429", 0), "ok", ("slow", 60.0), ("cut_body", 30), "not_completion")
        run = flow.run({}, workspace=tmp_path, llm=client_for(server))
    assert {"counted": "ok", "refused": "ok", "stalled": "LLMTimeoutError"} == {
        k: run.state[k] for k in ("counted", "refused", "stalled")
    }
    assert ("LLMConnectionError", "LLMResponseError") == (run.state["cut"], run.state["unreadable"])
    extras = {e.step: e.extra for e in run.events if e.status == "ok"}
    for step in ("stalled", "cut", "unreadable"):
        assert {"llm_calls": 1, **UNKNOWN, **at(server)} == extras[step], step
    assert {"llm_calls": 1, **at(server)} == extras["refused"]  # the 429's row is apart, and unmarked

    wf.steps(tmp_path)  # exports the run's rows to the parquet files
    frame = pd.read_parquet(steps_dir(tmp_path))
    by_step = frame.wf.cost(by=None).loc["lost"]
    for step in ("stalled", "cut", "unreadable"):
        assert by_step.loc[step, ["tokens_in", "tokens_out", "cost_usd"]].isna().all(), step
        assert 1 == by_step.loc[step, "calls"]
    assert {"counted": ABC_USD, "refused": ABC_USD} == pytest.approx(
        by_step["cost_usd"].loc[["counted", "refused"]].to_dict(), rel=1e-12
    )
    assert 2 == by_step.loc["refused", "calls"]
    assert pd.isna(frame.wf.cost().loc[run.run_id, "cost_usd"])
    by_model = frame.wf.cost(by="model")
    assert (6, True) == (by_model.loc["test-model", "calls"], pd.isna(by_model.loc["test-model", "cost_usd"]))

    judged = wf.evals.cost_budget(1.0)(wf.evals.Case("c1", {}), run)
    assert (True, False) == (judged.value != judged.value, judged.passed)  # NaN: unscored
    assert (
        f"cost unknown: step 'stalled' called model 'test-model', {FAILED_AFTER}, then evaluate again; "
        "$0.00003 of $1.0 in the attempts whose every call was priced"
    ) == judged.detail

    page = write_report(tmp_path, tmp_path / "report").read_text()
    per_step = page[page.index("<h3>Cost</h3>") : page.index("<h3>Cost per model</h3>")]
    assert "or a call failed after the server got it, which may have been billed" in per_step
    assert "only one kind of its tokens" not in per_step
    costs = page[page.index("<h3>Cost per model</h3>") :]
    assert "a call failed after the server got it (a read timeout, the step's timeout while it waited" in costs
    assert "no price is known" not in costs
    model_row = costs[costs.index('<td class="text">test-model</td>') :]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", model_row[: model_row.index("</tr>")])
    assert ["test-model", "counted, refused, stalled, cut, unreadable", "6", "-", "-", "-"] == cells[:6]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_call_the_step_timeout_cut_short_while_the_server_worked_has_an_unknown_cost(
    server: LLMServer, tmp_path: Path, streamed: bool
) -> None:
    """The step's timeout cancels a call whose request the server has, still working on its reply
    (over real HTTP, a reply held back): the attempt recorded it as a failed call, costing nothing,
    though the server may have finished and billed it. Its tokens and cost are unknown now."""
    server.script(("slow", 30.0))
    flow = wf.Workflow("cut-short")

    @flow.step(timeout=0.5)
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        if not streamed:
            return {"answer": (await ctx.llm.complete("x")).text}
        async with ctx.llm.stream("x") as stream:
            return {"answer": "".join([text async for text in stream])}

    with test_mode():
        run = flow.run({}, workspace=tmp_path, llm=client_for(server), raise_on_error=False)
    (event,) = run.events
    assert ("timeout", "test-model", None) == (event.status, event.model, event.cost_usd)
    assert {"llm_calls": 1, **UNKNOWN, **at(server)} == event.extra
    table = wf.steps(tmp_path).wf.cost(by="model")
    assert (1, True, True) == (
        table.loc["test-model", "calls"],
        pd.isna(table.loc["test-model", "cost_usd"]),
        pd.isna(table.loc["test-model", "tokens_in"]),
    )


# "a b c" asks 3 tokens, "reply to: a b c" answers 5: one call's cost at each model's price.
CHEAP_USD = (3 * 0.001 + 5 * 0.002) / 1000
COSTLY_USD = (3 * 0.01 + 5 * 0.03) / 1000


def test_cost_by_model_splits_an_attempt_that_called_several_models(tmp_path: Path) -> None:
    """An attempt that called a cheap model, then a costly one (streamed), over real HTTP: its row
    is filed under the last model, and its ``extra["by_model"]`` keeps each one's calls, tokens,
    cost, model time and first token; read back from parquet by pandas, ``cost(by="model")`` (and
    any ``by`` with "model") puts each call under its own model, the sums agreeing with the run's;
    other ``by`` keys are unchanged. A model no price table knows is unknown alone. ``cost_budget``
    judges the run by its rows' whole cost, and the report's table per model agrees with cost()."""
    from wfkit.logs._report import write_report
    from wfkit.logs._steplog import steps_dir

    async def ask(ctx: wf.StepContext, model: str, streamed: bool = False) -> None:
        if streamed:
            async with ctx.llm.stream("a b c", model=model) as stream:
                assert "reply to: a b c " == "".join([t async for t in stream])
        else:
            assert "reply to: a b c" == (await ctx.llm.complete("a b c", model=model)).text

    def flow_of(*, unpriced: bool) -> wf.Workflow:
        flow = wf.Workflow("escalation")

        @flow.step
        async def triage(state: Any, ctx: wf.StepContext) -> None:
            await ask(ctx, "cheap")

        @flow.step
        async def escalate(state: Any, ctx: wf.StepContext) -> None:
            await ask(ctx, "cheap")
            await ask(ctx, "costly", streamed=True)

        steps = ["triage", "escalate"]
        if unpriced:

            @flow.step
            async def consult(state: Any, ctx: wf.StepContext) -> None:
                await ask(ctx, "cheap")
                await ask(ctx, "mystery")

            steps.append("consult")
        flow.chain(*steps)
        return flow

    prices = {"cheap": (0.001, 0.002), "costly": (0.01, 0.03)}
    with LLMServer(api_key=KEY, model=None) as server, test_mode():  # it answers as the model asked
        client = ChatClient(server.url, model="cheap", api_key=KEY, prices=prices)
        priced = flow_of(unpriced=False).run({}, workspace=tmp_path, llm=client)
        mixed = flow_of(unpriced=True).run({}, workspace=tmp_path, llm=client)
    assert ("succeeded", "succeeded") == (priced.status, mixed.status)

    wf.steps(tmp_path)  # exports the runs' rows to the parquet files
    frame = pd.read_parquet(steps_dir(tmp_path))
    row = frame[(frame["run_id"] == priced.run_id) & (frame["step"] == "escalate")].iloc[0]
    assert ("costly", 6, 10) == (row["model"], row["tokens_in"], row["tokens_out"])
    assert pytest.approx(CHEAP_USD + COSTLY_USD, rel=1e-12) == row["cost_usd"]
    extra = json.loads(row["extra"])
    shares = extra["by_model"]
    assert ["cheap", "costly"] == list(shares)
    for model, usd in (("cheap", CHEAP_USD), ("costly", COSTLY_USD)):
        assert (1, 3, 5, pytest.approx(usd, rel=1e-12)) == tuple(
            shares[model][k] for k in ("calls", "tokens_in", "tokens_out", "cost_usd")
        )
    assert shares["cheap"]["model_latency_s"] + shares["costly"]["model_latency_s"] == pytest.approx(
        row["model_latency_s"], rel=1e-9
    )
    assert (None, row["ttft_s"]) == (shares["cheap"]["ttft_s"], shares["costly"]["ttft_s"])  # the stream's
    assert 2 == extra["llm_calls"]
    one_model = frame[frame["step"] == "triage"]["extra"].map(json.loads)
    assert [{"llm_calls": 1, **at(server, "cheap")}] * 2 == one_model.tolist()  # one model: no breakdown

    by_model = frame.wf.cost(by="model")
    by_model.index = by_model.index.astype(str)
    assert {"cheap": (5, 15, 25), "costly": (2, 6, 10), "mystery": (1, 3, 5)} == {
        model: tuple(int(v) for v in row[["calls", "tokens_in", "tokens_out"]]) for model, row in by_model.iterrows()
    }
    assert pytest.approx(5 * CHEAP_USD, rel=1e-12) == by_model.loc["cheap", "cost_usd"]
    assert pytest.approx(2 * COSTLY_USD, rel=1e-12) == by_model.loc["costly", "cost_usd"]
    assert pd.isna(by_model.loc["mystery", "cost_usd"])  # unknown alone: cheap and costly keep theirs
    by_run = frame.wf.cost()
    assert (
        by_model[["calls", "tokens_in", "tokens_out"]].sum().tolist()
        == by_run[["calls", "tokens_in", "tokens_out"]].sum().tolist()
    )
    assert pytest.approx(2 * CHEAP_USD + COSTLY_USD, rel=1e-12) == by_run.loc[priced.run_id, "cost_usd"]
    assert pd.isna(by_run.loc[mixed.run_id, "cost_usd"])

    by_step_model = frame[frame["run_id"] == priced.run_id].wf.cost(by=["step", "model"])
    assert {("escalate", "cheap"): 1, ("escalate", "costly"): 1, ("triage", "cheap"): 1} == {
        (str(step), str(model)): int(calls) for (step, model), calls in by_step_model["calls"].items()
    }
    assert pytest.approx(COSTLY_USD, rel=1e-12) == by_step_model.loc[("escalate", "costly"), "cost_usd"]
    by_step = frame.wf.cost(by="step")  # no "model" in by: each attempt whole, as before
    by_step.index = by_step.index.astype(str)
    assert (4, 12, 20) == tuple(int(v) for v in by_step.loc["escalate", ["calls", "tokens_in", "tokens_out"]])
    assert pytest.approx(2 * (CHEAP_USD + COSTLY_USD), rel=1e-12) == by_step.loc["escalate", "cost_usd"]
    assert pd.isna(by_step.loc["consult", "cost_usd"])

    case = wf.evals.Case("c1", {})
    assert wf.evals.Score(1.0, True, "$0.00021 of $1.0") == wf.evals.cost_budget(1.0)(case, priced)
    assert wf.evals.Score(0.0, False, "$0.00021 of $0.0002") == wf.evals.cost_budget(0.0002)(case, priced)
    judged = wf.evals.cost_budget(1.0)(case, mixed)
    assert (True, False) == (judged.value != judged.value, judged.passed)  # NaN: unscored
    assert judged.detail.startswith("cost unknown: step 'consult' called model 'mystery', which no price table knows")
    assert judged.detail.endswith("$0.00021 of $1.0 in the attempts whose every call was priced")

    page = write_report(tmp_path, tmp_path / "report").read_text()
    costs = page[page.index("<h3>Cost per model</h3>") :]
    assert "an attempt that called several models counts each one's share under it" in costs
    cells = {}
    for model in ("cheap", "costly", "mystery"):
        found = costs[costs.index(f'<td class="text">{model}</td>') :]
        cells[model] = re.findall(r"<td[^>]*>([^<]*)</td>", found[: found.index("</tr>")])[1:6]
    assert {
        "cheap": ["triage, escalate, consult", "5", "15", "25", "$0.000065"],
        "costly": ["escalate", "2", "6", "10", "$0.00036"],
        "mystery": ["consult", "1", "3", "5", "-"],
    } == cells


def test_the_step_log_tells_a_slow_model_from_a_slow_step(server: LLMServer, tmp_path: Path) -> None:
    """Each attempt's row has the time its model calls took, apart from the step's: the sum of its
    calls (a failed one counts the time it took to fail; a streamed one, to its end), NaN for an
    attempt that called no model. It reads back alike in pandas, pyarrow and DuckDB, and beside
    the cost in ``df.wf.cost()`` and the report; the step log had only the step's latency, which
    a slow model and slow code in the step both make long."""
    import duckdb
    import pyarrow.dataset as ds

    from wfkit.logs._report import write_report

    server.script("500", ("slow", 0.3))  # think: attempt 1 fails; attempt 2's first reply is held 0.3 s
    flow = wf.Workflow("slowness")

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))
    async def think(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        first = await ctx.llm.complete("one")
        async with ctx.llm.stream("two") as stream:
            second = "".join([text async for text in stream])
        return {"answer": first.text + second}

    @flow.step()
    async def work(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        await asyncio.sleep(0.3)  # slow code, no model
        return {"done": True}

    flow.edge("think", "work")
    with test_mode():
        flow.run({}, workspace=tmp_path, llm=client_for(server))
    expected = [("think", 1, "retry"), ("think", 2, "ok"), ("work", 1, "ok")]
    frame = wf.steps(tmp_path).sort_values(["started_at"])
    assert expected == list(zip(frame["step"], frame["attempt"], frame["status"], strict=True))
    failed, called, plain = frame["model_latency_s"]
    assert 0 < failed < frame["latency_s"].iloc[0]
    assert 0.3 <= called <= frame["latency_s"].iloc[1]  # its held reply, and the stream
    assert pd.isna(plain)  # the slow step, whose 0.3 s are its own
    assert frame["latency_s"].iloc[2] >= 0.3
    assert "float64" == str(frame["model_latency_s"].dtype)

    # The same figures from the parquet files, by pyarrow and by DuckDB.
    dataset = ds.dataset(tmp_path / "steps", format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["step", "attempt", "model_latency_s"]).to_pylist()
    by_pyarrow = {(r["step"], r["attempt"]): r["model_latency_s"] for r in table}
    glob = str(tmp_path / "steps" / "**" / "*.parquet")
    query = f"SELECT step, attempt, model_latency_s FROM read_parquet('{glob}', hive_partitioning=true)"
    by_duckdb = {(step, attempt): value for step, attempt, value in duckdb.sql(query).fetchall()}
    by_pandas = {(r.step, r.attempt): r.model_latency_s for r in frame.itertuples()}
    assert by_pyarrow == by_duckdb
    assert {k: v for k, v in by_pandas.items() if k != ("work", 1)} == {
        k: v for k, v in by_pyarrow.items() if k != ("work", 1)
    }
    assert None is by_pyarrow[("work", 1)] is by_duckdb[("work", 1)]

    # Per step, the model's time summed over attempts, NaN where none called one.
    summed = frame.groupby("step")["model_latency_s"].sum(min_count=1)
    assert pytest.approx(failed + called) == summed["think"]
    assert pd.isna(summed["work"])
    assert "model_latency_s" not in frame.wf.cost(by="step").columns  # wall time: cost() replays exactly
    page = write_report(tmp_path, tmp_path / "report").read_text()
    cost_table = page[page.index("<h3>Cost</h3>") :]
    assert "model time" in cost_table


def test_the_step_log_has_each_attempts_time_to_first_token(server: LLMServer, tmp_path: Path) -> None:
    """Each attempt's row has the seconds from its first streamed call's request to the first text
    it streamed (``ttft_s``, what a user comparing endpoints and models waits to see), also on the
    stream and its reply; NaN for an attempt that streamed nothing (no stream, or one that failed
    before its first token), kept when a stream is cut off after its first tokens. It reads back
    alike from the journal and the parquet files, the report shows it beside the model's time,
    and ``df.wf.cost()`` keeps to counts and money. The step log had no such figure."""
    import duckdb

    from wfkit.logs._report import write_report

    # think: a stream cut off after two words, then one held back 0.3 s; plain: one completion;
    # late: a stream refused with a 500, then one that answers.
    server.script(("cut_stream", 2), ("slow", 0.3), "ok", "500", "ok")
    flow = wf.Workflow("first-token")
    seen: dict[str, Any] = {}

    async def streamed(ctx: wf.StepContext, prompt: str) -> str:
        async with ctx.llm.stream(prompt) as stream:
            text = "".join([t async for t in stream])
        assert stream.reply is not None
        seen[ctx.step] = (stream.ttft_s, stream.reply.ttft_s)
        return text

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))
    async def think(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"thought": await streamed(ctx, "one two three")}

    @flow.step()
    async def plain(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        reply = await ctx.llm.complete("four")
        assert reply.ttft_s is None  # a reply that came whole has no first token of its own
        return {"plain": reply.text}

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))
    async def late(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"late": await streamed(ctx, "five")}

    flow.edge("think", "plain")
    flow.edge("plain", "late")
    with test_mode():
        run = flow.run({}, workspace=tmp_path, llm=client_for(server))
    frame = wf.steps(tmp_path).sort_values(["started_at"])
    rows = [(r.step, r.attempt, r.status) for r in frame.itertuples()]
    assert [
        ("think", 1, "retry"),
        ("think", 2, "ok"),
        ("plain", 1, "ok"),
        ("late", 1, "retry"),
        ("late", 2, "ok"),
    ] == rows
    assert "float64" == str(frame["ttft_s"].dtype)
    cut, held, whole, refused, answered = frame["ttft_s"]
    models = list(frame["model_latency_s"])
    assert 0 < cut <= models[0]  # its two words came before the cut
    assert 0.3 <= held <= models[1]  # held back 0.3 s before its first byte
    assert pd.isna(whole)  # no stream
    assert pd.isna(refused)  # a stream that failed before its first token
    assert 0 < answered <= models[4]
    assert (held, held) == seen["think"]
    assert (answered, answered) == seen["late"]

    # The same figures from the journal and from the parquet files.
    assert [cut, held, None, None, answered] == [e.ttft_s for e in run.events]
    glob = str(tmp_path / "steps" / "**" / "*.parquet")
    query = f"SELECT step, attempt, ttft_s FROM read_parquet('{glob}', hive_partitioning=true)"
    by_duckdb = {(step, attempt): value for step, attempt, value in duckdb.sql(query).fetchall()}
    assert {
        ("think", 1): cut,
        ("think", 2): held,
        ("plain", 1): None,
        ("late", 1): None,
        ("late", 2): answered,
    } == by_duckdb

    assert "ttft_s" not in frame.wf.cost(by="step").columns  # wall time: cost() replays exactly
    page = write_report(tmp_path, tmp_path / "report").read_text()
    cost_table = page[page.index("<h3>Cost</h3>") :]
    assert "first token (median)" in cost_table


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_reasoning_models_first_token_is_its_first_reasoning(server: LLMServer, tmp_path: Path, field: str) -> None:
    """A reasoning model streamed by vLLM's reasoning parser or DeepSeek's API (``delta.reasoning_content``;
    newer vLLM and gateways: ``delta.reasoning``) begins to answer with its reasoning: that is its
    first token, what a user comparing models waits for. The server here holds its text back
    until the stream's ``ttft_s`` is set, so the time cannot be that of the text. The text the
    stream yields and ``reply.text`` hold no reasoning; ``reply.reasoning`` holds it; tokens and
    cost are the server's count, reasoning included; the step log's ``ttft_s`` is the stream's.
    The first token was the text's, and the reasoning was dropped."""
    gate = threading.Event()
    thinking = "first compare the tenths then answer"
    server.script(("reasoning", {"text": thinking, "field": field, "gate": gate}))
    flow = wf.Workflow("reasoner")
    seen: dict[str, Any] = {}

    async def opens_on_first_token(stream: wf.llm.ChatStream) -> str:
        """Open the server's gate once the stream has its first token (or after 10 s: failed)."""
        for _ in range(1000):
            if stream.ttft_s is not None:
                gate.set()
                return "first token before the text"
            await asyncio.sleep(0.01)
        gate.set()
        return "no first token before the text"

    @flow.step()
    async def think(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        async with ctx.llm.stream("9.11 or 9.8?") as stream:
            watcher = asyncio.create_task(opens_on_first_token(stream))
            pieces = [t async for t in stream]
            seen["watcher"] = await watcher
        seen["pieces"], seen["stream"] = pieces, stream
        return {"answer": "".join(pieces)}

    with test_mode():
        run = flow.run({}, workspace=tmp_path, llm=client_for(server))
    assert "first token before the text" == seen["watcher"]
    reply = seen["stream"].reply
    assert reply is not None
    assert ["reply ", "to: ", "9.11 ", "or ", "9.8? "] == seen["pieces"]
    assert "reply to: 9.11 or 9.8? " == reply.text == run.state["answer"]
    assert "first compare the tenths then answer " == reply.reasoning
    assert (3, 6 + 5) == (reply.tokens_in, reply.tokens_out)  # the server's count: reasoning's 6 words too
    assert reply.cost_usd == pytest.approx((3 * 0.001 + 11 * 0.002) / 1000)
    assert 0 < reply.ttft_s == seen["stream"].ttft_s < reply.latency_s

    row = wf.steps(tmp_path).iloc[0]
    assert reply.ttft_s == row["ttft_s"]
    assert (3, 11, reply.cost_usd) == (row["tokens_in"], row["tokens_out"], row["cost_usd"])


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_whole_reply_keeps_its_reasoning_apart_from_its_text(server: LLMServer, field: str) -> None:
    """``client.complete`` of a reasoning model: ``message.reasoning_content`` (or ``reasoning``) is
    ``reply.reasoning``, never part of ``reply.text``; tokens and cost are unchanged by it, and a
    reply with none has ``reasoning`` None. The reasoning was dropped."""
    server.script(("reasoning", {"text": "two words", "field": field}), "ok")
    client = client_for(server)

    async def main() -> tuple[Reply, Reply]:
        async with client:
            return await client.complete("hello there"), await client.complete("hello there")

    thought, plain = asyncio.run(main())
    assert ("reply to: hello there", "two words") == (thought.text, thought.reasoning)
    assert (2, 4 + 2) == (thought.tokens_in, thought.tokens_out)
    assert thought.cost_usd == pytest.approx((2 * 0.001 + 6 * 0.002) / 1000)
    assert ("reply to: hello there", None) == (plain.text, plain.reasoning)
    assert thought.ttft_s is None  # a reply that came whole has no first token of its own


def test_a_retry_after_beyond_max_elapsed_fails_at_once_saying_why(server: LLMServer, tmp_path: Path) -> None:
    """A 429 asking for an hour, under a policy that retries for 5 minutes at most: the step fails
    at once (one request), and the message says what the server asked and which limit stopped it;
    the step log's row is the one failed, transient attempt, with no retry delay."""
    server.script(("429", 3600), "ok")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, max_elapsed=300))
    run = flow.run({"q": "x"}, workspace=tmp_path, llm=client_for(server), raise_on_error=False)
    assert ("failed", 1) == (run.status, len(server.requests))
    message = str(run.error)
    assert "not retried: the server asked to wait 3600 s" in message, message
    assert "max_elapsed=300" in message, message
    rows = wf.steps(tmp_path)
    assert [("failed", "transient", "LLMStatusError")] == list(
        zip(rows["status"], rows["error_kind"], rows["error_type"], strict=True)
    )
    assert rows["retry_delay_s"].isna().all()


def test_a_retry_after_beyond_max_delay_is_not_waited_when_nothing_else_bounds_it(server: LLMServer) -> None:
    """With max_elapsed=None and no run deadline, a 429 asking for an hour was waited out: the
    step sat an hour. Nothing the user set allows that wait, so the step fails at once, saying so
    (the run is given 30 s before the test gives up on it: the bug would take an hour)."""
    server.script(("429", 3600), "ok")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, max_delay=60, max_elapsed=None))

    async def main() -> wf.Run:
        return await asyncio.wait_for(
            flow.arun({"q": "x"}, workspace=False, llm=client_for(server), raise_on_error=False), 30
        )

    run = asyncio.run(main())
    assert ("failed", 1) == (run.status, len(server.requests))
    message = str(run.error)
    assert "not retried: the server asked to wait 3600 s" in message, message
    assert "max_delay=60" in message, message


def test_run_fails_at_once_on_a_reply_that_is_not_json(server: LLMServer) -> None:
    """A body that is not JSON is permanent: no retry, one failed event saying why."""
    server.script("html_200")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=3, base_delay=0.01))
    with test_mode():
        run = flow.run({"q": "x"}, workspace=False, llm=client_for(server), raise_on_error=False)
    assert [("failed", "permanent", "LLMResponseError")] == [(e.status, e.error_kind, e.error_type) for e in run.events]


def test_run_retries_a_reply_cut_short_and_the_retry_succeeds(server: LLMServer, tmp_path: Path) -> None:
    """A reply cut short is retried (it failed the run at once before); the step log's retry row
    says what arrived, and the answer is the retry's."""
    server.script(("cut_at_close", 40))
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=3, base_delay=0.01))
    with test_mode():
        run = flow.run({"q": "x"}, workspace=tmp_path, llm=client_for(server))
    assert "reply to: x" in run.state["answer"]
    rows = wf.steps(tmp_path).sort_values("attempt")
    assert [("retry", "transient", "LLMConnectionError"), ("ok", None, None)] == [
        (r.status, *(None if pd.isna(v) else v for v in (r.error_kind, r.error_type))) for r in rows.itertuples()
    ]
    assert "JSON body cut short: 40 bytes arrived" in rows["error_message"].iloc[0]
    assert "a retry asks again" in rows["error_message"].iloc[0]


def test_run_retries_a_slow_reply_after_its_timeout(server: LLMServer) -> None:
    """A read timeout is transient: the step retries and the second, fast reply succeeds."""
    # The first reply is held back until the test ends, so only the client's timeout can end that
    # call. The retry's call gets a timeout of its own: under load the server took longer than
    # 0.1 s to answer even a fast reply. Only reading has the short timeout, so the first request
    # always reaches the server (and the held reply never goes to the retry).
    server.script(("slow", 60.0), "ok")
    flow = wf.Workflow("ask")

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        reply = await ctx.llm.complete(state["q"], ctx=ctx, timeout=None if ctx.attempt == 1 else 30.0)
        return {"answer": reply.text}

    with test_mode():
        run = flow.run({"q": "x"}, workspace=False, llm=client_for(server, timeout=httpx.Timeout(30.0, read=0.1)))
    assert [("retry", "LLMTimeoutError"), ("ok", None)] == [(e.status, e.error_type) for e in run.events]


@pytest.mark.slow  # waits out a step's timeout: about 5 s per case
@pytest.mark.parametrize("streamed", [False, True])
def test_a_call_the_step_timeout_cut_short_is_in_the_attempts_event(server: LLMServer, streamed: bool) -> None:
    """The step's timeout cancels a call still waiting for its reply: the timed-out attempt's row
    still names the model it waited for and counts the call, as a failed call's row does."""
    # The timeout bounds the retry's call too: on a loaded machine a call to this server took up
    # to 1 s (0.3 s at the median). The first reply is held back for far longer than the timeout,
    # so only the timeout can end that attempt, and a timeout that cut nothing fails the test.
    server.script(("slow", 30.0), "ok")
    flow = wf.Workflow("cut-short")

    @flow.step(timeout=5.0, retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        if not streamed:
            return {"answer": (await ctx.llm.complete("x")).text}
        async with ctx.llm.stream("x") as stream:
            return {"answer": "".join([text async for text in stream])}

    with test_mode():
        run = flow.run({}, workspace=False, llm=client_for(server))
    timed_out, ok = run.events
    assert ("timeout", "test-model", 1) == (timed_out.status, timed_out.model, timed_out.extra["llm_calls"])
    assert ("ok", 1) == (ok.status, ok.extra["llm_calls"])


def test_calls_in_a_run_share_one_pooled_connection(server: LLMServer) -> None:
    """Every call of a run, across steps, goes over one keep-alive connection."""
    flow = wf.Workflow("pooled")

    @flow.step
    async def first(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        for _ in range(3):
            await ctx.llm.complete("again", ctx=ctx)
        return {}

    @flow.step
    async def second(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        await ctx.llm.complete("last", ctx=ctx)
        return {}

    flow.edge("first", "second")
    run = flow.run({}, workspace=False, llm=client_for(server))
    assert (4, 1) == (len(server.requests), server.connections)
    assert {"llm_calls": 3, **at(server)} == run.events[0].extra
    assert 3 * 1 == run.events[0].tokens_in


def test_a_client_reused_across_runs_closes_each_runs_connections(server: LLMServer) -> None:
    """Each blocking run has its own loop: its connections close with it, none leaks (no ResourceWarning)."""
    client = client_for(server)
    flow = asking_flow()
    for _ in range(2):
        flow.run({"q": "x"}, workspace=False, llm=client)
    gc.collect()
    assert 2 == server.connections


def test_aclose_closes_now_and_the_client_stays_usable(server: LLMServer) -> None:
    """aclose() drops this loop's connections at once; a later call opens a new one; closing twice is fine."""
    client = client_for(server)

    async def main() -> None:
        await client.complete("one")
        await client.aclose()
        await client.aclose()
        await client.complete("two")

    asyncio.run(main())
    gc.collect()
    assert 2 == server.connections


def test_cassette_recording_inside_runs_leaks_no_connection(server: LLMServer, tmp_path: Path) -> None:
    """A client over a recording cassette over the network closes both pools when each run's loop ends."""
    from wfkit.llm._cassette import Cassette

    client = client_for(server, transport=Cassette(tmp_path / "c.jsonl", mode="auto"))
    for q in ("a", "b", "a"):
        asking_flow().run({"q": q}, workspace=False, llm=client)
    gc.collect()
    assert (2, 2) == (len(server.requests), server.connections)


def test_api_key_never_reaches_an_event(server: LLMServer) -> None:
    """Neither a failed nor a successful call puts the key into the step events."""
    server.script("echo_auth", "ok")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=1, base_delay=0.01))
    with test_mode():
        run = flow.run({"q": "x"}, workspace=False, llm=client_for(server))
    assert ["retry", "ok"] == [e.status for e in run.events]
    assert KEY not in json.dumps([e._asdict() for e in run.events], default=repr)


def test_for_step_records_without_passing_ctx(server: LLMServer) -> None:
    """client.for_step(ctx) records every call into that step's event on its own."""
    client = client_for(server)
    flow = wf.Workflow("bound")

    @flow.step
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await client.for_step(ctx).complete("hi")).text}

    run = flow.run({}, workspace=False, llm=client)
    first = run.events[0]
    assert ("test-model", 1, {"llm_calls": 1, **at(server)}) == (first.model, first.tokens_in, first.extra)


def test_ctx_llm_records_usage_by_itself(server: LLMServer) -> None:
    """`await ctx.llm.complete(...)` alone puts model, tokens and cost into the step's event."""
    flow = wf.Workflow("auto")

    @flow.step
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        assert isinstance(ctx.llm, BoundChatClient)
        return {"answer": (await ctx.llm.complete("hi")).text}

    event = flow.run({}, workspace=False, llm=client_for(server)).events[0]
    assert ("test-model", 1, 3) == (event.model, event.tokens_in, event.tokens_out)
    assert pytest.approx((1 * 0.001 + 3 * 0.002) / 1000) == event.cost_usd


def asking_later() -> wf.Workflow:
    """A step, then a gated one that asks the model: a run of it halts before asking anything."""
    flow = wf.Workflow("ask-later")
    flow.step(lambda state: {"q": state["q"]}, name="first")

    @flow.step(approval=wf.Approval("check the question first"))
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete(state["q"])).text}

    flow.edge("first", "ask")
    return flow


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (
            SimulatedModel,
            "it got the class SimulatedModel, the simulated model's transport: pass "
            "llm=wf.llm.ChatClient(transport=wf.llm.SimulatedModel())",
        ),
        (
            SimulatedModel(seed=3),
            "it got SimulatedModel(p50=0.005, p99=0.05, seed=3), the transport a client sends through: pass "
            "llm=wf.llm.ChatClient(transport=SimulatedModel(p50=0.005, p99=0.05, seed=3))",
        ),
        (
            wf.llm.Cassette("calls.jsonl", mode="replay"),
            "it got Cassette('calls.jsonl', mode='replay'), the transport a client sends through: pass "
            "llm=wf.llm.ChatClient(model='MODEL', transport=Cassette('calls.jsonl', mode='replay')) to replay it",
        ),
        ("test-model", "it got the text 'test-model' (a model's name?): pass llm=wf.llm.ChatClient("),
        (ChatClient, "it got the class ChatClient itself: pass an instance, llm=ChatClient(...)"),
        (42, "it got builtins.int 42, which has no complete() method"),
    ],
    ids=["SimulatedModel-class", "SimulatedModel", "Cassette", "model-name", "ChatClient-class", "int"],
)
def test_llm_that_is_no_chat_client_is_refused_by_every_call_taking_it(
    server: LLMServer, workspace: Path, given: Any, says: str
) -> None:
    """run, start, run_many, resume and fork refuse an llm= that is no client (a transport, a class,
    a model's name) at once, saying what was given and what to pass; it failed only when a step
    called ctx.llm.complete, with an AttributeError deep in the step."""
    flow = asking_flow()
    halted = asking_later()
    stored = halted.run({"q": "x"}, llm=client_for(server))  # halts at the gate, nothing asked
    for name, call in [
        ("run", lambda: flow.run({"q": "x"}, llm=given)),
        ("start", lambda: flow.start({"q": "x"}, llm=given)),
        ("run_many", lambda: flow.run_many([{"q": "x"}], llm=given, progress=False)),
        ("resume", lambda: halted.resume(stored.run_id, llm=given)),
        ("fork", lambda: halted.fork(stored.run_id, at="first", llm=given)),
    ]:
        with pytest.raises(TypeError) as info:
            call()
        assert str(info.value).startswith(f"{name}(llm=...) needs a chat client, such as wf.llm.ChatClient(...); ")
        assert says in str(info.value)
    assert [] == server.requests  # nothing was asked of the model
    assert [stored.run_id] == [row["run_id"] for row in wf.Workspace().runs()]  # and no run was made


def test_a_url_given_as_llm_is_refused_with_the_client_to_pass(server: LLMServer) -> None:
    """llm='http://127.0.0.1:PORT/v1' is refused naming the ChatClient call for it; that call then runs."""
    flow = asking_flow()
    with pytest.raises(TypeError) as info:
        flow.run({"q": "x"}, workspace=False, llm=server.url)
    assert f"it got the URL {server.url!r}: pass llm=wf.llm.ChatClient({server.url!r}, model='MODEL')" in str(
        info.value
    )
    run = flow.run({"q": "x"}, workspace=False, llm=ChatClient(server.url, model="test-model", api_key=KEY))
    assert "reply to: x" == run.state["answer"]


def test_an_eval_suite_refuses_an_llm_that_is_no_chat_client_when_it_is_built() -> None:
    """A suite's run_options (its own or a variant's) with llm= that is no client is refused when the
    suite is built, before any case runs; each case's run failed in turn."""
    flow = asking_flow()
    cases = [{"id": "a", "inputs": {"q": "x"}, "expected": {"answer": "reply to: x"}}]
    scorers = [wf.evals.exact_match("answer")]
    with pytest.raises(TypeError, match=r"^suite 's': run_options llm= needs a chat client.*class SimulatedModel"):
        wf.evals.Suite("s", cases, flow, scorers, run_options={"llm": SimulatedModel})
    variants = {"local": {"run_options": {"llm": "http://127.0.0.1:8000/v1"}}}
    with pytest.raises(TypeError, match=r"^suite 's': variant 'local''s run_options llm= .*it got the URL"):
        wf.evals.Suite("s", cases, lambda: flow, scorers, variants=variants)


def two_model_flow(switch: dict[str, bool]) -> wf.Workflow:
    """``ask`` (a call), ``check`` (fails while ``switch["fail"]``: the run stops there) and
    ``answer`` (a call): a resume runs ``check`` and ``answer``. Each call keeps the model that answered."""
    flow = wf.Workflow("two-models")

    @flow.step
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"first": (await ctx.llm.complete("a b c")).model}

    @flow.step
    def check(state: dict[str, Any]) -> dict[str, Any]:
        if switch["fail"]:
            raise PermissionError("the checker is down")
        return {}

    @flow.step
    async def answer(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"second": (await ctx.llm.complete("d e f")).model}

    flow.chain("ask", "check", "answer")
    return flow


@pytest.fixture
def any_model_server() -> Iterator[LLMServer]:
    """A server answering whatever model is asked for (a gateway's way), so a reply names the model asked."""
    with LLMServer(api_key=KEY, model=None) as srv:
        yield srv


def gpt(server: LLMServer) -> ChatClient:
    return ChatClient(server.url, model="gpt-4o-mini", api_key=KEY)


def test_resuming_a_run_that_called_an_endpoint_without_llm_is_refused(any_model_server: LLMServer) -> None:
    """A run whose steps called a model at an endpoint, resumed without llm=, is refused, naming the
    model and the endpoint (from its journal) and the call to make; it went on with the built-in
    simulated model, one run answering from two models. Given the client, it goes on with it."""
    server, switch = any_model_server, {"fail": True}
    flow = two_model_flow(switch)
    run = flow.run({}, llm=gpt(server), raise_on_error=False)
    assert ("failed", "gpt-4o-mini") == (run.status, run.state["first"])
    switch["fail"] = False
    refused = (
        f"run {run.run_id} called model 'gpt-4o-mini' at {server.url}; without llm=, the steps left would call "
        f"the built-in simulated model instead, mixing two models' answers in one run. Pass the client it used: "
        f"flow.resume({run.run_id!r}, llm=wf.llm.ChatClient({server.url!r}, model='gpt-4o-mini')) (its API key "
        f"given as api_key, or in $WFKIT_API_KEY). For wfkit resume, set WFKIT_LLM_BASE_URL={server.url} and "
        f"WFKIT_LLM_MODEL=gpt-4o-mini. To go on with the simulated model on purpose, pass llm=wf.llm.ChatClient()"
    )
    with pytest.raises(ValueError) as info:
        flow.resume(run.run_id)
    assert refused == str(info.value)
    with pytest.raises(ValueError, match="without llm=, the steps left would call the built-in simulated model"):
        asyncio.run(flow.aresume(run.run_id))
    assert "failed" == wf.Workspace().run_info(run.run_id)["status"]  # untouched: still to resume
    assert 1 == len(server.requests)
    done = flow.resume(run.run_id, llm=gpt(server))
    assert ("succeeded", "gpt-4o-mini", "gpt-4o-mini") == (done.status, done.state["first"], done.state["second"])


def test_forking_a_run_that_called_an_endpoint_without_llm_is_refused(any_model_server: LLMServer) -> None:
    """A fork of such a run without llm= is refused before the fork is stored, saying the fork's
    call; a fork of the fork too (its steps before the fork point called the endpoint)."""
    server = any_model_server
    flow = two_model_flow({"fail": False})
    run = flow.run({}, llm=gpt(server))
    with pytest.raises(ValueError) as info:
        flow.fork(run.run_id, at="ask")
    message = str(info.value)
    assert f"Pass the client it used: flow.fork({run.run_id!r}, at='ask', llm=wf.llm.ChatClient(" in message
    assert f"For wfkit fork, set WFKIT_LLM_BASE_URL={server.url} and WFKIT_LLM_MODEL=gpt-4o-mini." in message
    assert [run.run_id] == [row["run_id"] for row in wf.Workspace().runs()]  # no fork was stored
    fork = flow.fork(run.run_id, at="ask", llm=gpt(server))
    assert ("gpt-4o-mini", "gpt-4o-mini") == (fork.state["first"], fork.state["second"])
    with pytest.raises(ValueError, match=f"^run {fork.run_id} called model 'gpt-4o-mini' at "):
        flow.fork(fork.run_id, at="check")


def test_a_run_on_the_simulated_model_or_a_cassette_resumes_as_before(
    any_model_server: LLMServer, tmp_path: Path
) -> None:
    """A run whose calls went to the simulated model, or through a cassette (recording from a real
    endpoint, as replaying), resumes without llm= as it did: on the built-in simulated model."""
    server = any_model_server
    cassette = wf.llm.Cassette(tmp_path / "calls.jsonl", mode="record")
    for client in (
        ChatClient(transport=SimulatedModel(model="gpt-4o-mini")),
        ChatClient(server.url, model="gpt-4o-mini", api_key=KEY, transport=cassette),
    ):
        switch = {"fail": True}
        flow = two_model_flow(switch)
        run = flow.run({}, llm=client, raise_on_error=False)
        switch["fail"] = False
        done = flow.resume(run.run_id)
        assert ("succeeded", "gpt-4o-mini", "simulated") == (done.status, done.state["first"], done.state["second"])


def test_with_an_endpoint_in_the_environment_a_resume_without_llm_calls_it(
    any_model_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $WFKIT_LLM_BASE_URL set (how `wfkit resume` is given an endpoint), a run given no client
    calls that endpoint: a resume without llm= goes on there, as the refusal says to do."""
    server, switch = any_model_server, {"fail": True}
    flow = two_model_flow(switch)
    run = flow.run({}, llm=gpt(server), raise_on_error=False)
    switch["fail"] = False
    for name, value in (("WFKIT_LLM_BASE_URL", server.url), ("WFKIT_LLM_MODEL", "gpt-4o-mini"), ("WFKIT_API_KEY", KEY)):
        monkeypatch.setenv(name, value)
    done = flow.resume(run.run_id)
    assert ("succeeded", "gpt-4o-mini") == (done.status, done.state["second"])
    assert 2 == len(server.requests)


def test_a_decision_does_not_resume_a_run_that_called_an_endpoint_on_the_simulated_model(
    any_model_server: LLMServer,
) -> None:
    """Deciding the ticket of such a run, whose handle nobody holds, leaves it for a resume that
    names its client (as a run of a workflow defined elsewhere waits), instead of going on at once
    with the simulated model; the resume refuses without llm= and goes on with it."""
    server = any_model_server
    flow = wf.Workflow("ask-then-check")

    @flow.step
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"first": (await ctx.llm.complete("a b c")).model}

    @flow.step(approval=wf.Approval("check the first answer"))
    async def answer(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"second": (await ctx.llm.complete("d e f")).model}

    flow.chain("ask", "answer")
    run_id = flow.run({}, llm=gpt(server)).run_id  # halts at the gate; its handle is let go
    gc.collect()
    [ticket] = wf.pending().tickets
    wf.Workspace().approve(ticket.ticket_id, by="ana")
    asyncio.run(wf.drain())
    assert 1 == len(server.requests)  # nothing ran on: no call of the simulated model either
    assert "succeeded" != wf.Workspace().run_info(run_id)["status"]
    with pytest.raises(ValueError, match="without llm="):
        flow.resume(run_id)
    done = flow.resume(run_id, llm=gpt(server))
    assert ("succeeded", "gpt-4o-mini", "gpt-4o-mini") == (done.status, done.state["first"], done.state["second"])


# --- the default client -------------------------------------------------------------------------------


def test_default_client_is_the_offline_simulated_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no endpoint configured, a run's ctx.llm is the seeded simulated model, priced."""
    monkeypatch.delenv("WFKIT_LLM_BASE_URL", raising=False)
    client = default_client(seed=3)
    assert isinstance(client.transport, SimulatedModel)
    assert 3 == client.transport.seed
    run = asking_flow().run({"q": "classify this"}, workspace=False, seed=3)
    event = run.events[0]
    assert "Simulated reply to: classify this" == run.state["answer"]
    assert "simulated" == event.model
    assert event.cost_usd is not None
    assert event.cost_usd > 0


def test_default_client_uses_a_configured_endpoint(server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """WFKIT_LLM_BASE_URL, WFKIT_LLM_MODEL and WFKIT_API_KEY point runs at a real endpoint."""
    monkeypatch.setenv("WFKIT_LLM_BASE_URL", server.url)
    monkeypatch.setenv("WFKIT_LLM_MODEL", "test-model")
    monkeypatch.setenv("WFKIT_API_KEY", KEY)
    run = asking_flow().run({"q": "hello"}, workspace=False)
    assert "reply to: hello" == run.state["answer"]
    assert 1 == len(server.requests)


def test_default_client_is_cheap_to_create(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the default client costs microseconds: no httpx client, no RNG until first use."""
    monkeypatch.delenv("WFKIT_LLM_BASE_URL", raising=False)
    # This thread's CPU time, not the wall clock: on a loaded machine the wall clock counts the
    # time other processes had the CPU (600 us a client, against 10 us of this thread's own).
    started = time.thread_time()
    for _ in range(1000):
        default_client(seed=1)
    assert (time.thread_time() - started) / 1000 < 200e-6


def rate_limited_map(server: LLMServer, tmp_path: Path, jitter: float) -> list[float]:
    """Eight map items, each answered 429 Retry-After: 0.2 once, then 200: the retry delays their
    rows recorded in the step log (read back from parquet), one per item."""
    server.script(*[("429", 0.2)] * 8)
    flow = wf.Workflow("herd", inputs=["docs"])

    @flow.map(over="docs", into="answers", retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, jitter=jitter))
    async def ask(doc: str, ctx: wf.StepContext) -> str:
        return (await ctx.llm.complete(doc)).text

    run = flow.run({"docs": [f"doc {i}" for i in range(8)]}, workspace=tmp_path, llm=client_for(server), seed=7)
    assert "succeeded" == run.status
    rows = wf.steps(tmp_path)
    retried = rows[rows["status"] == "retry"]
    assert list(range(8)) == sorted(retried["map_index"]), rows[["status", "map_index", "retry_delay_s"]].to_string()
    return list(retried["retry_delay_s"])


def test_rate_limited_map_items_retry_after_a_jittered_wait_not_in_lockstep(server: LLMServer, tmp_path: Path) -> None:
    """Eight items rate-limited together all waited exactly the Retry-After, and so all asked
    again at the same instant (and were rate-limited again): each now waits at least what the
    server asked, plus jitter of its own, and the step log records the wait it used."""
    delays = rate_limited_map(server, tmp_path, jitter=0.5)
    assert all(0.2 <= delay <= 0.2 * 1.5 for delay in delays), delays
    assert len(set(delays)) > 1, delays


def test_with_no_jitter_a_rate_limited_item_waits_just_what_the_server_asked(server: LLMServer, tmp_path: Path) -> None:
    """jitter=0 turns the spread off: every item waits the Retry-After, no more."""
    assert [0.2] * 8 == rate_limited_map(server, tmp_path, jitter=0.0)


def test_why_no_retry_was_made_reaches_the_step_log_and_the_fallbacks_failure(
    server: LLMServer, tmp_path: Path
) -> None:
    """A 429 asking for an hour under a 5-minute policy: why it was not retried was only in the
    run's error. A fallback runs, so there is none: the reason must be in the failed row's
    error_message (read back from parquet) and in the fallback's ctx.failure."""
    server.script(("429", 3600))
    flow = wf.Workflow("ask")
    seen: list[str] = []

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01, max_elapsed=300), fallback="give_up")
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete("x")).text}

    @flow.step
    def give_up(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        assert ctx.failure is not None
        seen.append(ctx.failure.error_message)
        return {"answer": "sorry"}

    run = flow.run({}, workspace=tmp_path, llm=client_for(server))
    assert ("succeeded", 1) == (run.status, len(server.requests))
    (failure,) = seen
    assert "; not retried: the server asked to wait 3600 s" in failure, failure
    rows = wf.steps(tmp_path, step="ask")
    (message,) = rows["error_message"]
    assert failure == message


def test_why_no_retry_was_made_reaches_a_map_items_error(server: LLMServer, tmp_path: Path) -> None:
    """The same refusal on a map item: its row, the MapItemError the run fails with, and so the
    run's error, all say why the item was not retried."""
    server.script("ok", ("429", 3600))
    flow = wf.Workflow("herd", inputs=["docs"])

    @flow.map(over="docs", into="answers", max_concurrency=1, retry=wf.RetryPolicy(max_retries=2, max_elapsed=300))
    async def ask(doc: str, ctx: wf.StepContext) -> str:
        return (await ctx.llm.complete(doc)).text

    run = flow.run({"docs": ["a", "b"]}, workspace=tmp_path, llm=client_for(server), raise_on_error=False)
    assert "failed" == run.status
    error = run.error.__cause__
    assert isinstance(error, wf.MapItemError)
    assert 1 == error.index
    assert "; not retried: the server asked to wait 3600 s" in str(error), error
    rows = wf.steps(tmp_path, step="ask")
    (item,) = rows[rows["map_index"] == 1]["error_message"]
    assert "; not retried: the server asked to wait 3600 s" in item, item


def test_a_step_that_fails_its_last_allowed_attempt_says_the_retry_budget_ran_out(
    server: LLMServer, tmp_path: Path
) -> None:
    """Three 500s under max_retries=2: the run's error said only which attempt failed; it now says
    the budget is spent, and so does the last row of the step log."""
    server.script("500", "500", "500")
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01))
    run = flow.run({"q": "x"}, workspace=tmp_path, llm=client_for(server), raise_on_error=False)
    assert ("failed", 3) == (run.status, len(server.requests))
    reason = "; not retried: the retry budget ran out after 3 attempts: max_retries=2 spent"
    assert reason in str(run.error), run.error
    rows = wf.steps(tmp_path)
    assert ["retry", "retry", "failed"] == list(rows["status"])
    assert rows["error_message"].iloc[-1].endswith(reason)


def test_a_transient_error_under_max_retries_0_says_the_policy_allows_no_retry(server: LLMServer) -> None:
    """A 429 under max_retries=0 fails at once; the error says the policy allowed no retry, not
    just that attempt 1 failed."""
    server.script(("429", 0.01))
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=0))
    run = flow.run({"q": "x"}, workspace=False, llm=client_for(server), raise_on_error=False)
    assert ("failed", 1) == (run.status, len(server.requests))
    assert "; not retried: the policy's max_retries=0 allows no retry" in str(run.error), run.error


def test_an_error_of_unknown_kind_says_its_own_budget_ran_out(server: LLMServer) -> None:
    """A 500 a step's classify= calls unknown is retried max_unknown_retries times: the error says
    that budget, not max_retries, is the one spent."""
    server.script("500", "500")
    flow = wf.Workflow("ask")

    policy = wf.RetryPolicy(max_retries=3, base_delay=0.01, max_unknown_retries=1)

    @flow.step(retry=policy, classify=lambda e: "unknown")
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete("x")).text}

    run = flow.run({}, workspace=False, llm=client_for(server), raise_on_error=False)
    assert ("failed", 2) == (run.status, len(server.requests))
    assert "after 2 attempts: max_unknown_retries=1 spent" in str(run.error), run.error


def test_a_permanent_error_gives_no_reason_beyond_its_kind(server: LLMServer) -> None:
    """A 400 is never retried, and its kind already says why: no "not retried" is added."""
    server.script(("status", 400))
    flow = asking_flow(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01))
    run = flow.run({"q": "x"}, workspace=False, llm=client_for(server), raise_on_error=False)
    assert "(permanent)" in str(run.error)
    assert "not retried" not in str(run.error)


def test_an_error_of_unknown_kind_in_a_step_that_asked_for_no_retries_adds_nothing(server: LLMServer) -> None:
    """With no retry= at all, an error of unknown kind was never going to be retried: its message
    stays as raised, no "not retried" tacked on to every such failure."""
    server.script("500")
    flow = wf.Workflow("ask")

    @flow.step(classify=lambda e: "unknown")
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete("x")).text}

    run = flow.run({}, workspace=False, llm=client_for(server), raise_on_error=False)
    assert "(unknown)" in str(run.error)
    assert "not retried" not in str(run.error)


def test_a_reply_cut_off_mid_body_says_the_server_answered_then_closed(server: LLMServer) -> None:
    """A 200 whose body a reset cut short said "could not reach" the endpoint, which had
    answered: it now says so, and stays transient (the retry asks again)."""
    server.script(("cut_body", 30))
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMConnectionError)
    message = str(exc)
    assert f"{server.url}/chat/completions answered, then closed the connection before the body ended" in message
    assert "could not reach" not in message
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(exc)
    assert "reply to: hello there" == call(client_for(server)).text


def test_a_stream_broken_before_its_first_event_says_it_was_cut_off_not_unreachable(server: LLMServer) -> None:
    """The server answered 200 and started the stream, then broke it before any event: not
    "could not reach", but a stream cut off after 0 events."""
    server.script(("broken_stream", 0))
    with pytest.raises(LLMConnectionError) as info:
        stream_text(server)
    message = str(info.value)
    assert "cut off the stream for model 'test-model' after 0 events" in message
    assert "could not reach" not in message


def test_a_404_from_a_base_url_without_v1_asks_whether_v1_is_missing(server: LLMServer) -> None:
    """base_url without /v1 (the commonest mistake with an OpenAI-compatible server) got a bare 404:
    the message now asks whether /v1 is missing and names the base URL to try. Still permanent."""
    root = server.url.removesuffix("/v1")
    exc = error_of(ChatClient(root, model="test-model", api_key=KEY))
    assert isinstance(exc, LLMStatusError)
    assert 404 == exc.status_code
    assert f"; is base_url missing /v1? try ChatClient('{root}/v1', ...)" in str(exc), exc
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)
    assert "reply to: hello there" == call(client_for(server)).text  # where the hint points works


@pytest.mark.parametrize(
    "behaviour",
    [
        ("status", 404),
        ("openai_error", (404, {"message": "The model `gpt-9` does not exist", "code": "model_not_found"})),
    ],
)
def test_a_404_under_v1_gets_no_base_url_hint(server: LLMServer, behaviour: Any) -> None:
    """A 404 at a URL that has /v1 (a missing model, a missing resource) is not about base_url:
    no hint sends the user to the wrong place."""
    server.script(behaviour)
    exc = error_of(client_for(server))
    assert isinstance(exc, LLMStatusError)
    assert 404 == exc.status_code
    assert "base_url" not in str(exc)


def test_a_404_whose_body_names_the_model_gets_no_base_url_hint(server: LLMServer) -> None:
    """Without /v1 in the URL, but with the model named in the 404's body: the endpoint is likely
    right and the model wrong, so no base_url hint (the test server's "no route
    /chat/completions" names a model called "completions")."""
    exc = error_of(ChatClient(server.url.removesuffix("/v1"), model="completions", api_key=KEY))
    assert isinstance(exc, LLMStatusError)
    assert 404 == exc.status_code
    assert "base_url" not in str(exc)


def test_jitter_on_a_servers_wait_never_costs_a_run_its_deadline(server: LLMServer) -> None:
    """Retry-After: 3 under jitter=1 and a 5.6 s run deadline: the server's wait fits, but a
    jittered one could not (up to 6 s), and the run ended at once as timed out. Jitter now only
    spreads the wait over half the time the deadline leaves beyond it, and every item gets its retry."""
    # The deadline leaves 2.6 s beyond the server's wait for both rounds of calls: on a loaded
    # machine eight calls took up to 0.9 s to come back (a 1 s wait and a 1.6 s deadline failed
    # 29 times in 30 there). It must stay under twice the wait, or a jittered wait would fit too.
    server.script(*[("429", 3)] * 8)
    flow = wf.Workflow("herd", inputs=["docs"])

    @flow.map(over="docs", into="answers", retry=wf.RetryPolicy(max_retries=1, base_delay=0.01, jitter=1.0))
    async def ask(doc: str, ctx: wf.StepContext) -> str:
        return (await ctx.llm.complete(doc)).text

    run = flow.run(
        {"docs": [f"doc {i}" for i in range(8)]}, workspace=False, llm=client_for(server), seed=7, timeout=5.6
    )
    assert "succeeded" == run.status
    delays = [e.retry_delay_s for e in run.events if e.status == "retry"]
    assert 8 == len(delays)
    assert all(3.0 <= delay < 4.3 for delay in delays), delays
    assert len(set(delays)) > 1, delays


@pytest.mark.parametrize("tail", ["/chat/completions", "/chat/completions/", "/completions"])
def test_a_base_url_naming_the_endpoint_itself_is_refused_with_the_base_to_write(server: LLMServer, tail: str) -> None:
    """base_url copied whole from a server's docs (.../v1/chat/completions) sent every call to
    .../chat/completions/chat/completions, a 404 with no hint; it is refused where it is given,
    naming the base URL to write instead, which then reaches the server."""
    with pytest.raises(ValueError, match="is the URL of an endpoint, not the base it is under") as caught:
        ChatClient(server.url + tail, model="test-model", api_key=KEY)
    assert f"so write '{server.url}'" in str(caught.value)
    assert [] == server.requests
    assert "reply to: hello there" == call(ChatClient(server.url, model="test-model", api_key=KEY)).text


def test_a_base_url_naming_the_endpoint_keeps_its_query_out_of_the_message() -> None:
    """An Azure-style URL with ?api-version=...&key=... named whole: the message says to keep the
    query, and shows none of it (it may hold a key)."""
    with pytest.raises(ValueError) as caught:
        ChatClient(
            "https://h.example/openai/deployments/d/chat/completions?api-version=1&key=sk-abcdefgh1234", model="m"
        )
    message = str(caught.value)
    assert "write 'https://h.example/openai/deployments/d' and the same query after it" in message
    assert "sk-abcdefgh1234" not in message
    assert "api-version" not in message


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (
            {"role": "user", "content": "hi"},
            "the prompt is one message ({'role': 'user', 'content': 'hi'}), not a list",
        ),
        (["hi"], 'messages[0] is the text \'hi\', not a message: write {"role": "user", "content": "hi"}'),
        ([{"content": "hi"}], "messages[0] has no \"role\" (it has 'content')"),
        ([("user", "hi")], "messages[0] is tuple ('user', 'hi'), not a message"),
        (42, "the prompt is int 42"),
    ],
)
def test_a_prompt_of_the_wrong_shape_is_refused_saying_what_to_write(
    server: LLMServer, prompt: Any, expected: str
) -> None:
    """complete({"role": ..., "content": ...}) (one message, not in a list) or a list of texts failed
    with "dictionary update sequence element #0 has length 1; 2 is required"; each wrong shape is now
    refused before any request, saying what it is and what to write, as a permanent error."""
    client = ChatClient(server.url, model="test-model", api_key=KEY)
    with pytest.raises((TypeError, ValueError)) as caught:
        call(client, prompt)
    assert expected in str(caught.value)
    assert wf.ErrorKind.PERMANENT == wf.classify_error(caught.value)
    assert [] == server.requests


QUOTA = {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}


@pytest.mark.parametrize("streamed", [False, True])
def test_a_429_for_a_spent_quota_is_permanent_and_says_so(server: LLMServer, streamed: bool) -> None:
    """OpenAI's 429 "insufficient_quota" (an account out of credit) was retried as a rate limit, so a
    step with max_retries=3 sat out its whole backoff before failing as "transient". It is permanent
    (one attempt), and the message says why a retry cannot help and what to check; a plain 429 is
    still retried."""
    flow = wf.Workflow("quota")

    @flow.step(retry=wf.RetryPolicy(max_retries=3, base_delay=0.01))
    async def ask(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        if streamed:
            async with ctx.llm.stream("hi") as stream:
                return {"a": "".join([t async for t in stream])}
        return {"a": (await ctx.llm.complete("hi")).text}

    server.script(("openai_error", (429, QUOTA)))
    run = flow.run({}, llm=client_for(server), workspace=False, raise_on_error=False)
    [event] = run.events
    assert ("failed", "permanent", "LLMStatusError") == (event.status, event.error_kind, event.error_type)
    assert "the account's quota is used up (insufficient_quota), which no retry mends" in str(event.error_message)
    assert 1 == len(server.requests)
    server.script(("openai_error", (429, {"message": "Rate limit reached", "code": "rate_limit_exceeded"})))
    again = flow.run({}, llm=client_for(server), workspace=False)
    assert ["retry", "ok"] == [e.status for e in again.events]


def test_a_message_object_that_reads_as_a_mapping_is_still_sent(server: LLMServer) -> None:
    """A message object that yields its fields (as a pydantic model from another client does) was sent
    as dict(message); the shape check keeps it so."""

    class Message:
        def __init__(self, **fields: str) -> None:
            self.fields = fields

        def __iter__(self) -> Iterator[tuple[str, str]]:
            return iter(self.fields.items())

    client = ChatClient(server.url, model="test-model", api_key=KEY)
    assert "reply to: hi" == call(client, [Message(role="user", content="hi")]).text  # type: ignore[list-item]
    assert [{"role": "user", "content": "hi"}] == server.requests[-1]["body"]["messages"]
