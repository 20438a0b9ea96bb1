"""Chat completions over httpx for any OpenAI-compatible endpoint, or offline for the simulated model.

    client = ChatClient("http://localhost:8000/v1", model="llama3.1:8b")   # a local server
    client = ChatClient("https://api.openai.com/v1", model="gpt-4o-mini", api_key_env="OPENAI_API_KEY")
    client = ChatClient()                                                  # offline: SimulatedModel
    reply = await client.complete("Classify: I want my money back", ctx=ctx)

Errors, all under ``LLMError`` (a ``WfkitError``), carry what the engine's classifier reads:

    LLMError
    ├── LLMStatusError                       the endpoint answered 4xx/5xx: ``status_code``, ``retry_after``,
    │                                        ``should_retry`` (its ``x-should-retry``), ``error_kind`` (409
    │                                        and ``x-should-retry``, as OpenAI's client)
    ├── LLMTimeoutError (TimeoutError)       connect, read, write or pool timeout: transient
    ├── LLMConnectionError (ConnectionError) the endpoint could not be reached, or cut a reply off: transient
    ├── LLMResponseError (ValueError)        a reply that is not chat-completions JSON, a redirect: permanent;
    │                                        an error event mid-stream: transient if it says the server failed
    └── CassetteMissError (ValueError)       replay found no recorded request (wfkit.llm._cassette)

The API key never appears in ``repr``, in an error message, in a step event or in a cassette.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from functools import partial
from types import TracebackType
from typing import Any, TypeAlias

import httpx
from httpx_sse import EventSource, SSEError

from wfkit.llm._perloop import PerLoop
from wfkit.llm._pricing import PriceLike, Prices, as_prices
from wfkit.llm._simulated import SimulatedModel
from wfkit.model._context import LLM_ENDPOINTS, StepContext
from wfkit.model._errors import WfkitError
from wfkit.model._processors import REDACTED, header_secrets, mark_secret
from wfkit.model._retry import ErrorKind, retry_after_in
from wfkit.model._seconds import Seconds

Messages: TypeAlias = str | Sequence[Mapping[str, Any]]

_SIMULATED_URL = "http://simulated.wfkit/v1"


class LLMError(WfkitError):
    """Root of the errors a chat client raises."""


class LLMStatusError(LLMError):
    """The endpoint answered with an HTTP error; 429, 408, 409 and 5xx are transient, other 4xx
    permanent, unless the server's ``x-should-retry`` (``should_retry``) says otherwise (as in
    OpenAI's own client). Pickled, it keeps all that but its ``response``, which is None there."""

    def __init__(
        self, message: str, *, status_code: int, retry_after: float | None, response: httpx.Response | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after  # seconds, from retry-after-ms or Retry-After: the least wait before a retry
        self.response = response
        says = response.headers.get("x-should-retry") if response is not None else None
        # The server saying whether a retry can help (None: it did not say).
        self.should_retry: bool | None = says == "true" if says in ("true", "false") else None

    @property
    def error_kind(self) -> ErrorKind | None:
        """What the classifier reads first; None leaves it to the status (``classify_error``)."""
        if self.should_retry is not None:
            return ErrorKind.TRANSIENT if self.should_retry else ErrorKind.PERMANENT
        # OpenAI's 409 is a conflict on its side (a lock timeout), which its own client retries.
        return ErrorKind.TRANSIENT if self.status_code == 409 else None

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = partial(type(self), status_code=self.status_code, retry_after=self.retry_after)
        return rebuild, self.args, self.__getstate__()

    def __getstate__(self) -> dict[str, Any]:
        # The response holds its request and an open stream, which cannot travel; what the
        # classifier reads of it (status_code, retry_after, should_retry) travels without it.
        return {**super().__getstate__(), "response": None}


class LLMTimeoutError(LLMError, TimeoutError):
    """A connect, read, write or pool timeout of one call (transient)."""

    error_kind = ErrorKind.TRANSIENT


class LLMConnectionError(LLMError, ConnectionError):
    """The endpoint could not be reached or dropped the connection (transient)."""

    error_kind = ErrorKind.TRANSIENT


class LLMResponseError(LLMError, ValueError):
    """The endpoint answered 2xx with something that is not a chat completion, or redirected
    (permanent), or reported an error mid-stream (transient when its type, code or status says the
    server failed: ``server_error``, a rate limit, an overload, a 5xx)."""

    error_kind = ErrorKind.PERMANENT


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for (``message.tool_calls``): ``arguments`` is the JSON text the
    model wrote, as it wrote it (it may not parse); ``id`` is None when the server sent none."""

    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One chat completion. Token counts are the server's, each on its own: None when its reply
    carried none (no ``usage`` object: some proxies and local servers leave it out, and a stream's
    server may ignore ``stream_options.include_usage``), and just ``tokens_out`` None for a
    ``usage`` with ``prompt_tokens`` but no ``completion_tokens`` (or just ``tokens_in`` for the
    reverse). None is "not counted", never 0: the call was made, and may have been billed.
    ``cost_usd`` is None for a model no price table knows, and for a reply with a count None (a
    price needs both); with ``ctx`` the step's cost is then unknown too, never the $0 of a step that
    called no model, and the step's extra names the model under ``no_usage_models`` when the
    server sent no usage, under ``no_tokens_out_models`` (or ``no_tokens_in_models``) when it sent
    one count: the count that came back is recorded, the other reads as unknown in
    ``df.wf.cost()``. ``tool_calls`` are the
    calls the model asked for (``finish_reason`` is then ``"tool_calls"``, and ``text`` often
    empty). ``ttft_s``, a streamed reply's time to first token: seconds from the request to its
    first reasoning, text or tool call (None for a reply that came whole, or a stream that sent
    none of them). ``reasoning``, a
    reasoning model's thinking, as vLLM's reasoning parsers, DeepSeek's API and gateways send it
    beside the answer (``reasoning_content``, or ``reasoning``), never part of ``text``; None
    when the server sent none. Its tokens are among ``tokens_out``, as the server counts them."""

    text: str
    model: str
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    latency_s: float
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    raw: Any = field(default=None, repr=False)  # the decoded body (a list of chunks for a stream)
    ttft_s: float | None = None
    reasoning: str | None = None


# Where OpenAI-compatible servers put a reasoning model's thinking, in a message or a streamed
# delta: DeepSeek's API and vLLM before 0.11 say reasoning_content, vLLM since (which still sends
# the old name too, the same text) and gateways such as OpenRouter say reasoning. The first that
# holds text is taken, so a server sending both is not read twice.
_REASONING_FIELDS = ("reasoning_content", "reasoning")


def _reasoning_of(message: Mapping[str, Any]) -> str | None:
    """The reasoning text of a message or a delta, None when it has none (a field of another
    shape, such as a gateway's structured details, is not text a reply can carry)."""
    for name in _REASONING_FIELDS:
        text = message.get(name)
        if isinstance(text, str) and text:
            return text
    return None


def _tool_calls_of(calls: Any, where: str) -> tuple[ToolCall, ...]:
    """``message.tool_calls`` as ToolCalls; a call the client cannot read is an LLMResponseError
    naming the field (dropping it would hand the caller fewer calls than the model asked for)."""
    if calls is None:
        return ()

    def refuse(problem: str) -> LLMResponseError:
        return LLMResponseError(f"{where} answered a reply whose {problem}: not the chat-completions tool call format")

    if not isinstance(calls, list):
        raise refuse(f"tool_calls is a {type(calls).__name__}, not a list")
    out = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise refuse(f"tool_calls[{i}] has no function object")
        call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not name:
            raise refuse(f"tool_calls[{i}].function.name is missing")
        if not isinstance(arguments, str):
            raise refuse(f"tool_calls[{i}].function.arguments is a {type(arguments).__name__}, not JSON text")
        if call_id is not None and not isinstance(call_id, str):
            raise refuse(f"tool_calls[{i}].id is a {type(call_id).__name__}, not a string")
        out.append(ToolCall(call_id, name, arguments))
    return tuple(out)


# What is left where the decoder stopped when the text ends inside a token: a literal's or a
# number's first characters, or (reported as an invalid escape, from where it starts) a ``\uXXXX``.
_PARTIAL_TOKEN = re.compile(r"t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?|-?\d*(\.\d*)?([eE][+-]?\d*)?")
_PARTIAL_ESCAPE = re.compile(r"\\?u[0-9a-fA-F]{0,4}")


def _cut_short(content: bytes) -> bool:
    """Whether a body that failed to parse is JSON that stops early (nothing at all, or an object
    or array the decoder ran out of text in) rather than something else: a body cut off by a
    dropped connection or a proxy, which asking again can mend. HTTP cannot tell such a body from
    a whole one when no Content-Length promised more (or a proxy sent a partial body whole)."""
    text = content.decode("utf-8", errors="replace")  # a cut inside a character leaves U+FFFD
    if text.lstrip()[:1] not in ("", "{", "["):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        tail = text[exc.pos :].rstrip()
        if exc.msg.startswith("Unterminated string"):
            return True
        if exc.msg.startswith("Invalid \\uXXXX escape"):
            return _PARTIAL_ESCAPE.fullmatch(tail) is not None
        return _PARTIAL_TOKEN.fullmatch(tail) is not None
    return False  # it parses once decoded: bytes that are not UTF-8, not a cut


def _messages_of(prompt: object) -> list[dict[str, Any]]:
    """The request's messages: a text as one user message, else a list of message objects, each
    with its role. Anything else is a TypeError saying what to write: one message not in a list
    failed with "dictionary update sequence element #0 has length 1; 2 is required" (its keys
    read as messages), a list of texts the same way."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, Mapping):
        raise TypeError(
            f"the prompt is one message ({_short(prompt)}), not a list of them: pass [message], "
            f"or the text alone for one user message"
        )
    if isinstance(prompt, bytes) or not isinstance(prompt, Iterable):
        raise TypeError(
            f"the prompt is {type(prompt).__name__} {_short(prompt)}: pass the text of a user message, or a "
            f'list of messages such as [{{"role": "user", "content": "..."}}]'
        )
    messages = []
    for i, message in enumerate(prompt):
        if isinstance(message, str):
            raise TypeError(
                f"messages[{i}] is the text {_short(message)}, not a message: write "
                f'{{"role": "user", "content": {json.dumps(message)[:60]}}} (or "system", "assistant")'
            )
        try:  # a mapping, or an object that reads as one (a pydantic message yields its fields)
            fields = None if isinstance(message, Sequence | bytes) else dict(message)
        except (TypeError, ValueError):
            fields = None
        if fields is None or (not isinstance(message, Mapping) and not all(isinstance(k, str) for k in fields)):
            raise TypeError(
                f'messages[{i}] is {type(message).__name__} {_short(message)}, not a message: write {{"role": ..., '
                f'"content": ...}}'
            )
        if "role" not in fields:
            raise ValueError(
                f'messages[{i}] has no "role" (it has {", ".join(map(repr, fields)) or "no key"}): every '
                f'message says who speaks, {{"role": "user", "content": "..."}} (or "system", "assistant", "tool")'
            )
        messages.append(fields)
    if not messages:
        raise ValueError("a chat completion needs at least one message")
    return messages


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def check_base_url(base_url: str, source: str = "ChatClient base_url") -> str:
    """``base_url`` if it names a scheme and a host; else a ValueError saying what to write instead.

    httpx would take ``"127.0.0.1:8765/v1"`` and fail every call with its own UnsupportedProtocol
    (naming neither the client nor the URL); refused here, where it was given."""
    url = base_url.strip()
    if "://" not in url:  # "localhost:8000/v1" parses with "localhost" as its scheme
        suggestion = "http://" + url.lstrip("/")
        raise ValueError(f"{source} {base_url!r} has no scheme: write {suggestion!r} (or https:// for a TLS endpoint)")
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL as exc:
        raise ValueError(f"{source} {base_url!r} is not a URL ({exc}): write it as 'http://HOST:PORT/v1'") from None
    if not host:
        raise ValueError(f"{source} {base_url!r} names no host: write it as 'http://HOST:PORT/v1'")
    # The endpoint's whole URL, as a server's docs or a curl line show it: every call would go to
    # .../chat/completions/chat/completions and come back 404, with nothing saying why.
    parsed = httpx.URL(url)
    path = parsed.path.rstrip("/")
    for tail in ("/chat/completions", "/completions"):
        if path.endswith(tail):
            # Named without its query or user info (either may hold a key), which the fix keeps.
            given, base = _where(parsed.copy_with(path=path)), _where(parsed.copy_with(path=path.removesuffix(tail)))
            keep = " and the same query after it" if parsed.query else ""
            raise ValueError(
                f"{source} {given!r} is the URL of an endpoint, not the base it is under: the client adds "
                f"/chat/completions to base_url itself, so write {base.rstrip('/')!r}{keep}"
            )
    return url


_SPACES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", " ": "a space"}


def _check_api_key(key: str, source: str, cookie: str | None = None) -> None:
    """Refuse a key holding a character outside printable ASCII, saying which, where and from
    ``source`` (``"api_key"``, ``"$VAR"`` or ``"headers['api-key']"``), never the key: HTTP
    cannot send it (httpx's error prints the whole header), and no provider's key holds one, so it
    is a file's last newline, a pasted space, or a look-alike from a web page. With ``cookie`` (its
    name) the value is that cookie's in a Cookie header, and the message says so."""
    bad = next((i for i, ch in enumerate(key) if not "!" <= ch <= "~"), None)
    if bad is None:
        return
    ch = key[bad]
    what = _SPACES.get(ch) or f"the character {ch!r} (U+{ord(ch):04X})"
    at_end = bad == len(key) - 1 or not key[bad:].strip()
    where = "at its start" if bad == 0 else "at its end" if at_end else f"at position {bad + 1}"
    if cookie is not None:
        fix = (
            f"give {source} the cookie without it (value.strip())"
            if ch.isspace()
            else f"copy the cookie's value again into {source} (one copied from a page or a document can "
            f"hold a look-alike, or an ellipsis where it was cut)"
        )
        raise ValueError(
            f"the cookie {cookie!r} in {source} has {what} {where}, which no cookie holds and HTTP cannot send: {fix}"
        )
    in_key = "the API key passed as api_key" if source == "api_key" else f"the API key in {source}"
    if ch.isspace():
        if source == "api_key":
            fix = "strip it before passing it (key.strip())"
        elif source.startswith("$"):
            fix = f"set {source} without it (a key read from a file keeps its last newline: strip it)"
        else:
            fix = f"give {source} the key without it (key.strip())"
    else:
        fix = (
            f"copy the key from your provider again into {source} (a key copied from a page or a "
            f"document can hold a look-alike, or an ellipsis where it was cut)"
        )
    raise ValueError(f"{in_key} has {what} {where}, which no API key holds and HTTP cannot send: {fix}")


def _check_cookies(value: str, source: str) -> None:
    """Refuse, as :func:`_check_api_key` does, a Cookie (or Set-Cookie) header one of whose
    ``name=value`` pairs holds what HTTP cannot send; the space after each ``;`` is the header's own."""
    for pair in value.split(";"):
        name, _, cookie = pair.lstrip(" ").partition("=")
        _check_api_key(cookie, source, cookie=name.strip() or "(unnamed)")


def _where(url: httpx.URL) -> str:
    """A URL for messages: no user info, no query string (either may hold a key)."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


# Transport failures worth retrying; others (an unsupported scheme, a bad request) keep their httpx type.
_UNREACHABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)
# Those of them that leave the request unsent, or not whole: no server has it to answer.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.ProxyError,
)


class _Sent:
    """Whether a call's request has gone out, as httpx's own transport tells it through httpcore's
    ``trace`` extension (``traced``): a call the step's timeout cancelled before then (waiting for
    a pooled connection, or connecting) never reached the server. Another transport (the simulated
    model, a cassette, one of your own) tells nothing, so its request is taken as out from the start."""

    __slots__ = ("out",)

    def __init__(self, traced: bool) -> None:
        self.out = not traced

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        # Its headers begin to go: sooner than the server can have the whole request, never later.
        if event.endswith(".send_request_headers.started"):
            self.out = True


def _outcome_unknown(failure: BaseException, response: httpx.Response | None, sent: _Sent) -> bool:
    """Whether a failed call may have been generated, and billed, though no usage came back: its
    request reached the server and no error status refused it. A 429, a 5xx, any status of 300 or
    more, and a request never sent whole (no connection, a connect, pool or write timeout, or the
    step's timeout before it went out) generated nothing: known to cost 0, so a retried 429 leaves
    its step's cost known; a 504 does not (its gateway gave up on the model, not the model on the
    request). A read timeout, a connection dropped while the server worked, the
    step's timeout once the request was out, and a 2xx whose body was cut short or could not be
    read (a stream's too) may have cost anything."""
    if response is not None:
        # A 504 is a gateway that stopped waiting for the model behind it, which may have gone on.
        return response.status_code < 300 or response.status_code == 504
    if isinstance(failure, asyncio.CancelledError):  # the step's timeout, before an answer came
        return sent.out
    # An httpx error, or a cassette's own error around one (its cause): a read timeout, a connection
    # dropped before the answer. A cassette's miss has none: it reached no server.
    cause = failure if isinstance(failure, httpx.HTTPError) else failure.__cause__
    return isinstance(cause, httpx.HTTPError) and not isinstance(cause, _NOT_SENT)


def _record(
    ctx: StepContext | None,
    model: str,
    reply: Reply | None,
    started: float,
    ttft: float | None = None,
    *,
    abandoned: bool = False,
    unknown: bool = False,
    endpoint: str | None = None,
) -> None:
    """Add one call to the step's event: model, tokens, cost and the call's time (from
    ``started``, a ``perf_counter``) add up; ``extra.llm_calls`` counts. ``ttft``: a stream's time
    to first token, also of a stream that failed after it (the step's first one is kept). A reply
    whose server sent no token usage, or only one of its two counts, makes the step's cost unknown
    (``no_usage``); a failed call (``reply`` None) the server refused, or never got, brought back
    nothing to pay for and leaves it as it was. One that failed after the server got it
    (``unknown``, see :func:`_outcome_unknown`) may have been generated and billed: the step's
    tokens and cost are unknown (``extra["unknown_outcome_calls"]`` counts them). So is a stream its
    caller left before its end (``abandoned``, no reply either), made and billed, its usage never
    read (``extra["abandoned_streams"]``).
    ``endpoint``: the base URL of the network endpoint called, kept by model in the step's
    ``extra["llm_endpoints"]`` (None for the simulated model or a cassette)."""
    if ctx is None:
        return
    seconds = time.perf_counter() - started
    extra = (ctx.usage or {}).get("extra") or {}
    calls = int(extra.get("llm_calls", 0)) + 1
    where: dict[str, Any] = {}
    if endpoint is not None:  # which endpoint served the model: a resume without llm= must not swap it
        where[LLM_ENDPOINTS] = {**(extra.get(LLM_ENDPOINTS) or {}), model: endpoint}
    if reply is None:  # no reply: the event still says which model it called, and how long it took
        ctx.record(
            model=model,
            model_latency_s=seconds,
            ttft_s=ttft,
            abandoned=abandoned,
            outcome_unknown=unknown,
            llm_calls=calls,
            **where,
        )
    else:
        ctx.record(
            model=reply.model,
            tokens_in=reply.tokens_in,
            tokens_out=reply.tokens_out,
            cost_usd=reply.cost_usd,
            model_latency_s=seconds,
            ttft_s=reply.ttft_s,
            # A count missing, no cost: recorded as nothing at all, the call would read as the free
            # step of one that called no model, in df.wf.cost(), the report and cost_budget. The
            # count that came back (if one did) is recorded; only the missing one is marked.
            no_usage=reply.cost_usd is None and (reply.tokens_in is None or reply.tokens_out is None),
            llm_calls=calls,
            **where,
        )


def _usage_of(payload: Any) -> tuple[int | None, int | None]:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None, None
    tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        tokens_in if isinstance(tokens_in, int) else None,
        tokens_out if isinstance(tokens_out, int) else None,
    )


# The phases of an httpx.Timeout, each a limit of its own (None: none).
_TIMEOUT_PHASES = ("connect", "read", "write", "pool")


def _seconds_of(value: object, given: str, unlimited: str) -> float | None:
    """``value`` (one timeout: seconds or a timedelta, None for no limit) as seconds; a TypeError or
    ValueError naming ``given`` (how the user wrote it, ``"ChatClient(timeout=...)"``) and saying
    what to write instead. ``unlimited`` is how to ask for no limit there."""
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if seconds is None:
        return None
    if isinstance(seconds, bool):
        raise TypeError(f"{given}: a timeout is a number of seconds, not {seconds!r}: write e.g. timeout=30")
    if isinstance(seconds, str):
        try:
            number = float(seconds)
        except ValueError:
            number = None
        write = f"timeout={number:g}" if number is not None and math.isfinite(number) and number > 0 else "timeout=30"
        raise TypeError(f"{given}: a timeout is a number of seconds, not the text {seconds!r}: write {write}")
    if not isinstance(seconds, int | float):
        raise TypeError(
            f"{given}: a timeout is seconds (an int or a float), a datetime.timedelta or an httpx.Timeout, "
            f"not {type(seconds).__name__} {seconds!r}: write e.g. timeout=30"
        )
    if math.isnan(seconds):
        raise ValueError(f"{given}: NaN is no number of seconds: write the seconds a call may take, e.g. timeout=30")
    if math.isinf(seconds):
        raise ValueError(f"{given}: for no time limit write {unlimited}, not {seconds!r}")
    if seconds <= 0:
        raise ValueError(
            f"{given}: a timeout of {seconds!r} s would end every call before it is answered: write the seconds "
            f"a call may take, more than 0 (e.g. timeout=30), or {unlimited} for no time limit"
        )
    return float(seconds)


def _timeout_of(timeout: object, given: str, unlimited: str) -> httpx.Timeout:
    """``timeout`` (seconds, a timedelta, an httpx.Timeout, or None for no limit) as an
    httpx.Timeout, each phase checked: httpx took a negative, zero, NaN or infinite one, a string
    or a bool, and failed every call, or none, later (see :func:`_seconds_of`)."""
    if isinstance(timeout, httpx.Timeout):
        for phase in _TIMEOUT_PHASES:
            _seconds_of(getattr(timeout, phase), f"{given} {phase}={getattr(timeout, phase)!r}", f"{phase}=None")
        return timeout
    return httpx.Timeout(_seconds_of(timeout, given, unlimited))


# What a pickled ChatClient carries: its configuration (the headers hold the key's Authorization).
_PICKLED = ("base_url", "model", "transport", "prices", "_api_key", "_key_from", "_timeout", "_headers", "_query")


def check_async_transport(owner: str, transport: object) -> None:
    """Refuse, naming ``owner``, a transport the async client cannot call: a sync httpx transport
    was taken, and the first call then failed deep in httpx (no ``handle_async_request``)."""
    if transport is not None and not callable(getattr(transport, "handle_async_request", None)):
        kind = type(transport)
        raise TypeError(
            f"{owner}(transport=) needs an async httpx transport (httpx.AsyncHTTPTransport(...) for "
            f"httpx.HTTPTransport(...), or an httpx.AsyncBaseTransport of your own), got "
            f"{kind.__module__}.{kind.__qualname__}"
        )


def refuse_to_pickle_network_transport(owner: str, transport: object, instead: str) -> None:
    """Refuse, naming ``owner``, its transport and what to do ``instead``, to pickle an httpx
    network transport. Its connection pool and SSL context cannot travel (pickle would fail deep in
    httpx with "cannot pickle 'SSLContext' object"), and its settings cannot be read back from it
    to build one anew on the other side."""
    if isinstance(transport, httpx.AsyncHTTPTransport):
        kind = type(transport)
        raise TypeError(
            f"{owner} cannot be pickled (as run_many(..., executor=...) does to send it to Dask workers): "
            f"its transport {kind.__module__}.{kind.__qualname__} holds connections and an SSL context, "
            f"which do not travel; {instead}"
        )


class ChatClient:
    """A chat-completions client for an OpenAI-compatible endpoint (``POST {base_url}/chat/completions``).

    - ``base_url``: e.g. ``"http://localhost:8000/v1"``, scheme included (a URL without one is
      refused). None (and no ``transport``) means the offline :class:`SimulatedModel`. A query in
      it (Azure's ``?api-version=2024-06-01``) goes with every call; a key in it (``?key=``) is
      kept secret as ``api_key`` is.
    - ``model``: the default model; a call may pass another. Required for a real endpoint.
    - ``api_key``: sent as ``Authorization: Bearer``; when None it is read from the environment
      variable named by ``api_key_env`` (``WFKIT_API_KEY`` unless you name another, e.g.
      ``"OPENAI_API_KEY"``). No key, no header.
    - ``timeout``: seconds (or a ``datetime.timedelta``, or an ``httpx.Timeout``) for each phase
      of a call: connecting, waiting for the next bytes, sending, getting a pooled connection;
      None for no limit. A call may pass its own (``httpx.Timeout(None)``: none for that call); a
      step's ``timeout=`` bounds the whole step. Zero, a negative, NaN or infinite number, text
      and a bool are refused, saying what to write.
    - ``transport``: an httpx transport, e.g. ``SimulatedModel(...)`` or ``Cassette(...)``.
    - ``prices``: a :class:`Prices` table or a mapping ``{model: Price.per_1m(usd_in, usd_out)}``
      (per million tokens, as providers quote them; a pair ``(usd_in_per_1k, usd_out_per_1k)`` is per
      1,000, and refused above $1) consulted before the global ``PRICES``.

    The client is async: call it from ``async def`` steps. Connections are pooled per event
    loop: across every call of a run, and across runs in a notebook kernel. They close when the
    loop ends (``Workflow.run``), or with :meth:`aclose` / ``async with``.

    A client pickles by its configuration (``run_many(..., executor=client, llm=...)`` sends it to
    Dask workers): base URL, model, timeouts, prices, headers and transport (a
    :class:`SimulatedModel` or :class:`Cassette` travels by its own configuration); each copy
    opens its own connections. The pickle carries the API key too, whether it came from
    ``api_key=`` or the environment, so that the workers can call the endpoint: it crosses the
    network to the scheduler and the workers (use a ``tls://`` scheduler on a network you do not
    trust), and on the other side it is again kept out of ``repr``, events, checkpoints and
    cassettes. Never write such a pickle to a file. A client over an httpx network transport of
    your own (``httpx.AsyncHTTPTransport(...)``) refuses to pickle, saying what to do instead: its
    connections and SSL context cannot travel, nor can its settings be read back to build it anew.
    """

    __slots__ = (
        "__weakref__",
        "_api_key",
        "_cookies",
        "_endpoint",
        "_given_secrets",
        "_headers",
        "_http",
        "_key_from",
        "_query",
        "_secrets",
        "_ssl_context",
        "_timeout",
        "base_url",
        "model",
        "prices",
        "transport",
    )

    def __init__(
        self,
        base_url: str | None = None,
        *,
        model: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "WFKIT_API_KEY",
        timeout: Seconds | httpx.Timeout | None = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        prices: Prices | Mapping[str, PriceLike] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        check_async_transport("ChatClient", transport)
        self._timeout = _timeout_of(timeout, f"ChatClient(timeout={timeout!r})", "timeout=None")
        if base_url is None:
            if getattr(transport, "forwards_to_network", False):  # a Cassette that records
                mode = getattr(transport, "mode", "record")
                raise ValueError(
                    f"ChatClient(transport={transport!r}) has no base_url, and a cassette in mode={mode!r} "
                    f"sends what it has not recorded to the endpoint: name it, "
                    f"ChatClient('http://HOST:PORT/v1', model=..., transport=...) (mode='replay' needs none)"
                )
            transport = transport if transport is not None else SimulatedModel()
            base_url = _SIMULATED_URL
            model = model or getattr(transport, "model", None)
            if not model:  # a cassette or another transport: nothing names the model to send
                raise ValueError(
                    f"ChatClient(transport={transport!r}) needs a model name: pass model='...' "
                    f"(for a cassette, the model it recorded)"
                )
        else:
            base_url = check_base_url(base_url)
        # A query (Azure's ?api-version=, a gateway's ?key=) goes with every call, apart from the
        # path the calls join onto (it was glued to "/chat/completions"); never in a message.
        url = httpx.URL(base_url)
        self._query = tuple(url.params.multi_items())
        if url.query:
            base_url = str(url.copy_with(query=None))
        if not model:
            raise ValueError(
                f"ChatClient({base_url!r}) needs a model name: ChatClient(base_url, model='...'), "
                f"or set WFKIT_LLM_MODEL when the endpoint comes from WFKIT_LLM_BASE_URL"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.transport = transport
        self.prices = as_prices(prices)
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env) or None
        # Where a refused key came from, for the message (never the key): "api_key=" or "$VAR".
        # Never "api_key=": stored text redacts what follows a key=, so the message would read
        # "check the API key (api_key=[REDACTED] ..." in the step log and `wfkit show`.
        self._key_from = "api_key" if api_key else f"${api_key_env}"
        if base_url != _SIMULATED_URL:  # offline, no key is sent
            if self._api_key:
                _check_api_key(self._api_key, self._key_from)
            for name, value in (headers or {}).items():
                if name.lower() in ("cookie", "set-cookie"):
                    _check_cookies(value, f"headers[{name!r}]")
                    continue
                for secret in header_secrets({name: value}):
                    if " " not in secret.strip():  # a scheme of its own ("SharedKey a:b") may hold a space
                        _check_api_key(secret, f"headers[{name!r}]")
        self._headers = dict(headers or {})
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._start()

    def _start(self) -> None:
        """What this process needs beyond the configuration: the key, and any credential given in
        ``headers=`` (``{"api-key": ...}``, Azure's; a ``Cookie``), marked secret here, and a connection pool per
        event loop (made on first use)."""
        found = {*header_secrets(self._headers), *([self._api_key] if self._api_key else [])}
        found.update(s for name, value in self._query for s in header_secrets({name: value}))  # ?key=
        self._given_secrets = tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))
        for secret in self._given_secrets:
            mark_secret(secret)  # redacted from every event and checkpoint, whatever carries it
        self._cookies: dict[str, str] = {}  # the endpoint's cookies by name (``_keep_cookies``)
        self._secrets = self._given_secrets  # with the cookies' values, longest first
        # Made once, here, for every connection pool of the client: loading the certificate
        # authorities costs 20 to 50 ms, and a pool is made per event loop, so per run (``flow.run``
        # gives each its own loop); made by the pool, that time landed in the recorded latency of
        # the run's first step that called the model, as if the model had taken it.
        self._ssl_context = httpx.create_ssl_context() if self.transport is None else None
        self._http: PerLoop[httpx.AsyncClient] = PerLoop(self._new_http, lambda c: c.aclose())
        # Where its calls go over the network, for the step log (None: the simulated model, a cassette
        # or a transport of one's own, which a resume may well be given again by default).
        network = self.transport is None or isinstance(self.transport, httpx.AsyncHTTPTransport)
        self._endpoint = _where(httpx.URL(self.base_url)) if network else None

    def __getstate__(self) -> dict[str, Any]:
        """The configuration, API key included (see the class doc); never the connections."""
        refuse_to_pickle_network_transport(
            f"ChatClient({self.base_url!r})",
            self.transport,
            "leave transport= out, and each copy of the client opens connections of its own (a step's "
            "retry=wf.RetryPolicy(...) retries a call whose connection failed, as the transport's retries= "
            "would), or make the client where it runs",
        )
        return {name: getattr(self, name) for name in _PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in _PICKLED:
            setattr(self, name, state[name])
        self._start()

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url + "/",
            params=self._query,
            headers=self._headers,
            timeout=self._timeout,
            transport=self.transport,
            trust_env=self.transport is None,  # proxies from the environment only for the network
            verify=self._ssl_context if self._ssl_context is not None else True,
            event_hooks={"response": [self._keep_cookies]},
        )

    async def _keep_cookies(self, response: httpx.Response) -> None:
        """Keep among this client's secrets the value of each cookie the endpoint sets: the cookie
        jar sends it back with every later call, a session's credential as much as a Cookie given
        in ``headers=``, and a server or a proxy that repeats it in an error must not carry it into
        the run's error and the log. The latest value by name only: a load balancer's affinity
        cookie changes with every reply, and each marked secret would lengthen, for good, the list
        every stored row is redacted against."""
        changed = False
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";")[0].strip().strip('"')
            if value in header_secrets({"set-cookie": header}) and self._cookies.get(name) != value:
                self._cookies[name] = value
                changed = True
        if changed:
            self._secrets = tuple(sorted({*self._given_secrets, *self._cookies.values()}, key=len, reverse=True))

    def _timeout_for(self, timeout: Seconds | httpx.Timeout | None, call: str) -> httpx.Timeout:
        """A call's own timeout (None: the client's), checked as the client's is."""
        if timeout is None:
            return self._timeout
        return _timeout_of(timeout, f"{call}(..., timeout={timeout!r})", "timeout=httpx.Timeout(None)")

    def _body(self, prompt: Messages, model: str | None, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"model": model or self.model, "messages": _messages_of(prompt), **params}

    def _redact(self, text: str) -> str:
        return _redact(text, self._secrets)

    # ---- calls -----------------------------------------------------------------------------------

    async def complete(
        self,
        prompt: Messages,
        *,
        model: str | None = None,
        timeout: Seconds | httpx.Timeout | None = None,
        ctx: StepContext | None = None,
        **params: Any,
    ) -> Reply:
        """One chat completion. ``prompt`` is a user message or a list of ``{"role", "content"}``
        messages; ``params`` (``temperature``, ``max_tokens``, ...) go into the request body.
        With ``ctx`` the model, tokens and cost are added to that step's event. A call that fails
        adds nothing to the cost when the server refused it (an error status) or never got it (no
        connection); one that fails after the server got it (a read timeout, the step's timeout
        while it waited, a 2xx whose body was cut short or could not be read) may have been
        generated and billed, so the step's tokens and cost are then unknown
        (``extra["unknown_outcome_calls"]``)."""
        if params.get("stream"):
            raise ValueError("complete() returns one reply; for a streamed reply use client.stream(...)")
        body = self._body(prompt, model, params)
        http = await self._http.get()
        started = time.perf_counter()
        sent = _Sent(traced=self._endpoint is not None)
        limits = self._timeout_for(timeout, "complete")
        request = http.build_request("POST", "chat/completions", json=body, timeout=limits, extensions={"trace": sent})
        response: httpx.Response | None = None
        try:
            response = await http.send(request, stream=True)
            await self._read(response, body["model"])
            self._raise_for_status(response, body["model"])
            reply = self._reply(response, body["model"], time.perf_counter() - started)
        except _UNREACHABLE as exc:
            unknown = _outcome_unknown(exc, response, sent)
            _record(ctx, body["model"], None, started, unknown=unknown, endpoint=self._endpoint)
            raise self._transport_error(exc, body["model"]) from exc
        except (LLMError, asyncio.CancelledError) as exc:  # cancelled: the step's timeout cut the call short
            unknown = _outcome_unknown(exc, response, sent)
            _record(ctx, body["model"], None, started, unknown=unknown, endpoint=self._endpoint)
            raise
        _record(ctx, body["model"], reply, started, endpoint=self._endpoint)
        return reply

    def stream(
        self,
        prompt: Messages,
        *,
        model: str | None = None,
        timeout: Seconds | httpx.Timeout | None = None,
        ctx: StepContext | None = None,
        **params: Any,
    ) -> ChatStream:
        """A streamed completion (server-sent events): ``async with client.stream(p) as s:``, then
        ``async for text in s``; ``s.reply`` holds the whole reply once the stream ends.

        It asks for the token counts (``stream_options={"include_usage": True}``) unless given
        ``stream_options`` of its own (``None`` sends none). A stream that ends without them (a
        server that ignores the option, or a request that asked for none) has tokens and cost
        None, and with ``ctx`` the step's cost is unknown (``extra["no_usage_models"]``); one whose
        usage chunk holds one count keeps it, the other None (see :class:`Reply`). A stream left
        before its end (a ``break`` out of ``async for``: the counts come in its last chunk) has no
        reply, and with ``ctx`` the step's tokens and cost are unknown (``extra["abandoned_streams"]``);
        so are they after a stream that failed once the server had begun to answer (a cut, a stall,
        an error event: ``extra["unknown_outcome_calls"]``)."""
        body = self._body(prompt, model, params)
        body["stream"] = True
        if body.get("stream_options", ...) is ...:
            body["stream_options"] = {"include_usage": True}  # token counts in the last chunk
        elif body["stream_options"] is None:
            del body["stream_options"]

        return ChatStream(self, body, self._timeout_for(timeout, "stream"), ctx)

    def for_step(self, ctx: StepContext) -> BoundChatClient:
        """This client, recording every call into ``ctx``'s step event without passing ``ctx=``."""
        return BoundChatClient(self, ctx)

    async def aclose(self) -> None:
        """Close pooled connections (they also close by themselves when their event loop ends)."""
        await self._http.aclose()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        where = repr(self.transport) if self.base_url == _SIMULATED_URL else repr(self.base_url)
        return f"ChatClient({where}, model={self.model!r}, api_key={key})"

    # ---- responses -------------------------------------------------------------------------------

    def _raise_for_status(self, response: httpx.Response, model: str) -> None:
        if response.status_code < 300:
            return
        if response.status_code < 400:
            raise self._redirected(response)
        retry_after = retry_after_in(response.headers)
        detail = response.text
        error: Any = None
        try:
            error = json.loads(detail).get("error")
            detail = error.get("message", detail) if isinstance(error, dict) else str(error or detail)
        except (ValueError, AttributeError):
            pass
        detail = self._redact(" ".join(detail.split())[:300])
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        # OpenAI's 429 for an account out of credit (code and type "insufficient_quota"): no wait
        # mends it, so retrying it, as a rate limit, only delayed the failure by the whole backoff.
        spent = isinstance(error, dict) and "insufficient_quota" in (error.get("code"), error.get("type"))
        exc = LLMStatusError(
            f"{_where(response.request.url)} answered HTTP {response.status_code} {response.reason_phrase} "
            f"for model {model!r}{wait}"
            + (f": {detail}" if detail else "")
            + self._key_advice(response, model)
            + _version_advice(response, model, detail)
            + (
                "; the account's quota is used up (insufficient_quota), which no retry mends: check the plan "
                "and billing of the key, or use another"
                if spent
                else ""
            ),
            status_code=response.status_code,
            retry_after=retry_after,
            response=response,
        )
        if spent and exc.should_retry is None:  # the server's own x-should-retry still has the last word
            exc.should_retry = False
        raise exc

    def _key_advice(self, response: httpx.Response, model: str) -> str:
        """What to do about a 401 or 403: the key is what to check, named by where it came from
        (never by its value), or without one the credentials given in ``headers=``, by their
        header; nothing for other statuses."""
        if response.status_code not in (401, 403):
            return ""
        if not self._api_key:
            # A credential of the user's own in headers= (a session cookie, Azure's api-key) was sent.
            given = [f"headers[{name!r}]" for name, value in self._headers.items() if header_secrets({name: value})]
            if not given:
                return f"; no API key was sent: give ChatClient an api_key, or set {self._key_from}"
            if response.status_code == 401:
                return f"; check the credential in {' and '.join(given)}: the endpoint did not accept it"
            return f"; check that the credential in {' and '.join(given)} may use model {model!r}"
        if response.status_code == 401:
            return f"; check the API key ({self._key_from}): the endpoint did not accept it"
        return f"; check that the API key ({self._key_from}) may use model {model!r}"

    def _redirected(self, response: httpx.Response) -> LLMResponseError:
        """A 3xx, not followed (the request carries the API key): where it points, and the base URL
        to use instead. Permanent: the configuration is what has to change."""
        where = f"{_where(response.request.url)} answered HTTP {response.status_code} {response.reason_phrase}"
        location = response.headers.get("location")
        if not location:
            return LLMResponseError(f"{where}, a redirect with no Location: check the base URL {self.base_url!r}")
        target = _where(response.request.url.join(location))
        base = target.removesuffix("/chat/completions")
        use = f"ChatClient({base!r}, ...)" if base != target else "the base URL it points to"
        return LLMResponseError(
            f"{where}, a redirect to {target!r}; the client follows no redirect (it would carry the API "
            f"key there): use {use}"
        )

    def _reply(self, response: httpx.Response, model: str, latency: float) -> Reply:
        where = _where(response.request.url)
        try:
            payload = json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            if _cut_short(response.content):
                raise self._cut_short(response) from None
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("text/event-stream"):
                raise LLMResponseError(
                    f"{where} answered a request that did not ask to stream with an event stream "
                    f"(content-type {content_type!r}), not one JSON reply: an endpoint that always streams "
                    f"is called with client.stream(...)"
                ) from None
            excerpt = self._redact(response.text[:120])
            raise LLMResponseError(
                f"{where} answered HTTP {response.status_code} with a body that is not valid JSON ({exc}); "
                f"it starts {excerpt!r}"
            ) from None
        try:
            choice = payload["choices"][0]
            content = choice["message"].get("content")
            tool_calls = choice["message"].get("tool_calls")
            reasoning = _reasoning_of(choice["message"])
        except (KeyError, IndexError, TypeError, AttributeError):
            error = payload.get("error") if isinstance(payload, dict) else None
            if error:  # a gateway's error object in a 2xx: its message is what the user needs
                detail = error.get("message", error) if isinstance(error, dict) else error
                raise LLMResponseError(
                    f"{where} answered HTTP {response.status_code} with an error instead of a chat completion: "
                    f"{self._redact(' '.join(str(detail).split())[:300])}"
                ) from None
            raise LLMResponseError(
                f"{where} answered JSON without choices[0].message: not a chat completion "
                f"(keys: {sorted(payload) if isinstance(payload, dict) else type(payload).__name__})"
            ) from None
        calls = _tool_calls_of(tool_calls, where)
        served = payload.get("model") or model
        return self._make_reply(payload, content or "", served, model, latency, choice, payload, calls, reasoning)

    def _cut_short(self, response: httpx.Response) -> LLMConnectionError:
        """A 2xx whose JSON stops early: what arrived (its size and end, not the whole body), and
        that asking again can help (transient), as for a stream cut off."""
        content = response.content
        end = self._redact(content[-40:].decode("utf-8", errors="replace"))
        return LLMConnectionError(
            f"{_where(response.request.url)} answered HTTP {response.status_code} with a JSON body cut short: "
            f"{len(content)} bytes arrived" + (f", ending {end!r}" if content else "") + " (the connection or a "
            "proxy cut the reply off); the reply is incomplete, so it is not returned, and a retry asks again"
        )

    def _make_reply(
        self,
        usage_from: Any,
        text: str,
        model: str,
        asked: str,
        latency: float,
        choice: Any,
        raw: Any,
        tool_calls: tuple[ToolCall, ...] = (),
        reasoning: str | None = None,
    ) -> Reply:
        """The reply of ``model``, the name the server gave, priced by it or else by ``asked``, the
        name the request gave: a server may answer an alias under what it serves (vLLM), a
        deployment's name under its model's (Azure), and the user priced the name they use."""
        tokens_in, tokens_out = _usage_of(usage_from)
        cost = self.prices.cost(model, tokens_in, tokens_out)
        if cost is None and asked != model:
            cost = self.prices.cost(asked, tokens_in, tokens_out)
        return Reply(
            text=text,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            latency_s=latency,
            finish_reason=choice.get("finish_reason") if isinstance(choice, dict) else None,
            tool_calls=tool_calls,
            raw=raw,
            reasoning=reasoning,
        )

    async def _read(self, response: httpx.Response, model: str) -> None:
        """Read ``response``'s body (then release its connection). A transport error now comes
        after the server answered: not "could not reach", but the body cut short."""
        try:
            await response.aread()
        except _UNREACHABLE as exc:
            if isinstance(exc, httpx.TimeoutException):
                raise self._transport_error(exc, model) from exc
            detail = f"{type(exc).__name__}: {self._redact(str(exc))}"
            raise LLMConnectionError(
                f"{_where(response.request.url)} answered, then closed the connection before the body "
                f"ended, for model {model!r} ({detail})"
            ) from exc
        finally:
            await response.aclose()

    def _transport_error(self, exc: httpx.HTTPError, model: str, call: str = "complete") -> LLMError:
        where = _where(exc.request.url) if _has_request(exc) else self.base_url
        what = type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return LLMTimeoutError(f"{where} did not answer in time for model {model!r}{_timed_out(exc, what, call)}")
        detail = self._redact(str(exc))
        return LLMConnectionError(f"could not reach {where} for model {model!r} ({what}: {detail})")


# What each httpx timeout waited for, and what else may help besides a longer one.
_PHASES: dict[type[httpx.TimeoutException], tuple[str, str, str]] = {
    httpx.ReadTimeout: ("read", "no bytes came for {s} s", "for a slower model give more"),
    httpx.ConnectTimeout: ("connect", "no connection was made within {s} s", "check the endpoint is up or give more"),
    httpx.WriteTimeout: ("write", "the request could not be sent within {s} s", "give more"),
    httpx.PoolTimeout: ("pool", "no pooled connection came free within {s} s", "make fewer calls at once or give more"),
}


def _timed_out(exc: httpx.TimeoutException, what: str, call: str) -> str:
    """Which of the call's timeouts ran out, after how long, and where to set it: ": no bytes came
    for 30 s, the read timeout (ReadTimeout); ...". Just `` (ReadTimeout)`` when httpx said nothing
    of it (a transport of one's own)."""
    phase, waited, advice = next((v for k, v in _PHASES.items() if isinstance(exc, k)), (None, "", ""))
    timeouts = exc.request.extensions.get("timeout") if _has_request(exc) else None
    seconds = timeouts.get(phase) if isinstance(timeouts, dict) and phase else None
    if not isinstance(seconds, int | float):
        return f" ({what})"
    return (
        f": {waited.format(s=f'{seconds:g}')}, the {phase} timeout ({what}); {advice}: "
        f"ChatClient(..., timeout=SECONDS) or {call}(..., timeout=SECONDS)"
    )


def _version_advice(response: httpx.Response, model: str, detail: str) -> str:
    """For a 404 at a URL with no version segment (``/v1``, ``/v1beta``), whose body names no
    model: the likely cause, a base URL without the ``/v1`` that OpenAI-compatible servers serve
    under, and the one to try. Nothing otherwise (a 404 for a missing model is the model's fault)."""
    url = response.request.url
    if response.status_code != 404 or re.search(r"/v\d", url.path) or "model" in detail.lower() or model in detail:
        return ""
    base = _where(url).removesuffix("/chat/completions")
    return f"; is base_url missing /v1? try ChatClient('{base}/v1', ...)"


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when httpx set no request
    except RuntimeError:
        return False
    return True


class BoundChatClient:
    """A :class:`ChatClient` tied to one step attempt: every call lands in that step's event."""

    __slots__ = ("_client", "_ctx")

    def __init__(self, client: ChatClient, ctx: StepContext) -> None:
        self._client, self._ctx = client, ctx

    async def complete(self, prompt: Messages, *, ctx: StepContext | None = None, **kwargs: Any) -> Reply:
        return await self._client.complete(prompt, ctx=ctx or self._ctx, **kwargs)

    def stream(self, prompt: Messages, *, ctx: StepContext | None = None, **kwargs: Any) -> ChatStream:
        return self._client.stream(prompt, ctx=ctx or self._ctx, **kwargs)

    def for_step(self, ctx: StepContext) -> BoundChatClient:
        return BoundChatClient(self._client, ctx)

    @property
    def client(self) -> ChatClient:
        return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never reached for the slots; keeps copy and pickle from recursing
            raise AttributeError(name)
        return getattr(self._client, name)

    def __repr__(self) -> str:
        return f"{self._client!r} for step {self._ctx.step!r}"


def default_endpoint() -> str | None:
    """The endpoint a run given no client calls (``$WFKIT_LLM_BASE_URL``), None for the simulated model."""
    return os.environ.get("WFKIT_LLM_BASE_URL") or None


def default_client(*, seed: int | None = None) -> ChatClient:
    """The client a run uses when given none: the endpoint in ``WFKIT_LLM_BASE_URL`` (model from
    ``WFKIT_LLM_MODEL``, key from ``WFKIT_API_KEY``) if set, else the offline simulated model,
    seeded with the run's seed."""
    base_url = default_endpoint()
    if base_url:
        base_url = check_base_url(base_url, "$WFKIT_LLM_BASE_URL")
        return ChatClient(base_url, model=os.environ.get("WFKIT_LLM_MODEL"))
    return ChatClient(transport=SimulatedModel(seed=seed))


class ChatStream:
    """A streamed completion; use as ``async with client.stream(...) as s: async for text in s``.

    ``ttft_s`` is its time to first token once the first reasoning, text or tool call has come:
    seconds from sending the request, so connecting and the server's queue count, as a user waits
    them; None until then. A reasoning model's first token is its first piece of reasoning (when
    it began to answer at all, what a user comparing models waits), though the stream yields its
    text alone: the reasoning is ``reply.reasoning``. ``reply`` is the whole reply once the stream
    has ended.

    A stream left before its end (a ``break`` out of ``async for``, or the step's timeout, before the
    server's last chunk, which carries the token counts) has ``reply`` None; with ``ctx`` the step's tokens and cost are
    then unknown, never the $0 of no call or the sum of its other calls, and its extra counts it
    (``abandoned_streams``; the model under ``abandoned_stream_models``). A stream that failed once
    the server had begun to answer (cut off, stalled, an error event) may have been billed too: the
    step's tokens and cost are unknown as well (``unknown_outcome_calls``; ``unknown_outcome_models``)."""

    def __init__(self, client: ChatClient, body: dict[str, Any], timeout: httpx.Timeout, ctx: StepContext | None):
        self._client, self._body, self._timeout, self._ctx = client, body, timeout, ctx
        self._response: httpx.Response | None = None
        self._started = 0.0
        self._iterator: AsyncGenerator[str, None] | None = None
        self._raised = False  # the stream itself failed (a cut, an error event): its outcome unknown, not left
        self.ttft_s: float | None = None
        self.reply: Reply | None = None

    async def __aenter__(self) -> ChatStream:
        client, model = self._client, self._body["model"]
        http = await client._http.get()
        self._started = time.perf_counter()
        sent = _Sent(traced=client._endpoint is not None)
        request = http.build_request(
            "POST", "chat/completions", json=self._body, timeout=self._timeout, extensions={"trace": sent}
        )
        try:
            self._response = await http.send(request, stream=True)
            if self._response.status_code >= 300:
                await client._read(self._response, model)
                client._raise_for_status(self._response, model)
        except _UNREACHABLE as exc:
            await self._close()
            unknown = _outcome_unknown(exc, self._response, sent)
            _record(self._ctx, model, None, self._started, unknown=unknown, endpoint=client._endpoint)
            raise client._transport_error(exc, model, "stream") from exc
        except (LLMError, asyncio.CancelledError) as exc:  # cancelled: the step's timeout cut the call short
            await self._close()
            unknown = _outcome_unknown(exc, self._response, sent)
            _record(self._ctx, model, None, self._started, unknown=unknown, endpoint=client._endpoint)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._iterator is not None:  # left early: the generator ends here, not when collected
            await self._iterator.aclose()
        await self._close()
        # No reply: left before its end (abandoned), or failed once the server had begun to answer
        # (a cut, a stall, an error event, a body that is no stream), which may have been billed too.
        abandoned = self.reply is None and not self._raised
        model, endpoint = self._body["model"], self._client._endpoint
        _record(
            self._ctx,
            model,
            self.reply,
            self._started,
            self.ttft_s,
            abandoned=abandoned,
            unknown=self._raised,
            endpoint=endpoint,
        )

    async def _close(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        self._iterator = self._chunks()
        return self._iterator

    async def _chunks(self) -> AsyncGenerator[str, None]:
        """The text, as :meth:`_read` yields it, noting whether the stream failed: a stream that
        neither failed nor ended was left by its caller (closed here by ``GeneratorExit``) or cut
        short by a cancellation (a step's timeout)."""
        try:
            async with aclosing(self._read()) as pieces:
                async for text in pieces:
                    yield text
        except (GeneratorExit, asyncio.CancelledError):
            # Cancelled (the step's timeout fell mid-stream): left as a break leaves it, the server
            # generating and billing what its usage chunk would have said.
            raise
        except BaseException:
            self._raised = True
            raise

    async def _read(self) -> AsyncGenerator[str, None]:
        if self._response is None:
            raise RuntimeError("use the stream inside `async with client.stream(...) as stream:`")
        client, model = self._client, self._body["model"]
        where = _where(self._response.request.url)
        parts: list[str] = []
        thoughts: list[str] = []  # a reasoning model's, kept out of the text
        chunks: list[Any] = []
        usage_from: Any = None
        finish: dict[str, Any] = {}
        calls: dict[int, dict[str, Any]] = {}  # by index: a call's id and name come first, its arguments in pieces
        done = False
        try:
            async with aclosing(EventSource(self._response).aiter_sse()) as events:
                async for event in events:
                    if event.data == "[DONE]":
                        done = True
                        break
                    if not event.data:
                        continue  # an event with no data: a keep-alive, or an id: or retry: alone
                    try:
                        chunk = json.loads(event.data)
                        # OpenAI's error object; under `event: error`, the whole object is the error
                        error = chunk.get("error") or (chunk if event.event == "error" else None)
                        choices = chunk.get("choices") or [{}]
                        delta_of = choices[0].get("delta") or {}
                        delta = delta_of.get("content")
                        thought = _reasoning_of(delta_of)
                        for piece in delta_of.get("tool_calls") or ():
                            _add_piece(calls, piece)
                    except (ValueError, TypeError, AttributeError, LookupError):
                        excerpt = client._redact(event.data[:120])
                        raise LLMResponseError(
                            f"{where} sent a stream chunk that is not chat-completions JSON: {excerpt!r}"
                        ) from None
                    if error:
                        raise self._reported(where, error)
                    if self.ttft_s is None and (delta or thought or calls):
                        self.ttft_s = time.perf_counter() - self._started
                    if thought:
                        thoughts.append(thought)
                    chunks.append(chunk)
                    if chunk.get("usage"):
                        usage_from = chunk
                    if choices[0].get("finish_reason"):
                        finish = choices[0]
                    if delta:
                        parts.append(delta)
                        if self._ctx is not None:
                            self._ctx.chunk(delta)  # live views and run.stream(chunks=True) see it arrive
                        yield delta
        except SSEError:  # raised before the first event: the body is not an event stream
            raise await self._not_a_stream(self._response, where) from None
        except _UNREACHABLE as exc:
            if not isinstance(exc, httpx.TimeoutException):  # it was reached: it answered, then stopped
                raise self._cut_off(where, len(chunks), f"{type(exc).__name__}: {client._redact(str(exc))}") from exc
            if chunks:  # it answered, then stalled: "did not answer in time" sent users to check the URL
                raise LLMTimeoutError(
                    f"{where} stopped streaming for model {model!r} after {_events(len(chunks))}"
                    f"{_timed_out(exc, type(exc).__name__, 'stream')}; the reply so far is incomplete, "
                    f"so it is not returned"
                ) from exc
            raise client._transport_error(exc, model, "stream") from exc
        if not chunks and not done:
            raise LLMResponseError(f"{where} ended the event stream without a single chat-completions event")
        if not done and not finish:
            # A body read to the connection's close cannot tell HTTP it was cut; the stream can:
            # a complete one ends with a finish_reason and "data: [DONE]", and this had neither.
            raise self._cut_off(where, len(chunks), "no finish_reason, no data: [DONE]")
        latency = time.perf_counter() - self._started
        tool_calls = _tool_calls_of([calls[i] for i in sorted(calls)] if calls else None, where)
        text, served = "".join(parts), _model_of(chunks, model)
        reasoning = "".join(thoughts) or None
        reply = client._make_reply(usage_from, text, served, model, latency, finish, chunks, tool_calls, reasoning)
        self.reply = replace(reply, ttft_s=self.ttft_s)

    def _reported(self, where: str, error: Any) -> LLMResponseError:
        """An error event mid-stream (OpenAI's ``{"error": {"message", "type", ...}}``): its message
        and type are what the user needs."""
        detail = (error.get("message") or error) if isinstance(error, dict) else error
        detail = self._client._redact(" ".join(str(detail).split())[:300])
        names = [str(error[k]) for k in ("type", "code") if isinstance(error, dict) and error.get(k)]
        transient = _reported_transient(error)
        label = ", ".join(dict.fromkeys(names)) + (": transient, worth a retry" if transient else "")
        exc = LLMResponseError(f"{where} reported an error mid-stream: {detail}" + (f" ({label})" if label else ""))
        if transient:  # the server's fault, as a 500 or a 429 is: a step's retry asks again
            exc.error_kind = ErrorKind.TRANSIENT
        return exc

    async def _not_a_stream(self, response: httpx.Response, where: str) -> LLMResponseError:
        """A 2xx to a streamed request whose body is not server-sent events: what came instead."""
        content_type = response.headers.get("content-type") or "(none)"
        try:
            body = (await response.aread()).decode("utf-8", errors="replace")
            start = f"; it starts {self._client._redact(body[:120])!r}"
        except httpx.HTTPError:  # the body did not come whole: the content type says enough
            start = ""
        return LLMResponseError(
            f"{where} answered a streamed request with content-type {content_type!r}, not text/event-stream, "
            f'so its body is no event stream (an endpoint that ignores "stream": true, or a proxy between)'
            f"{start}. For an endpoint that does not stream, call client.complete(...)"
        )

    def _cut_off(self, where: str, events: int, why: str) -> LLMConnectionError:
        """The stream broke off before its end (transient: the retry asks again from the start)."""
        return LLMConnectionError(
            f"{where} cut off the stream for model {self._body['model']!r} after {_events(events)} ({why}); "
            f"the reply so far is incomplete, so it is not returned"
        )


# Words of a mid-stream error's type, code or status that say the server failed, not the request:
# OpenAI's server_error and rate_limit_exceeded, Anthropic's overloaded_error, Google's UNAVAILABLE.
_TRANSIENT_WORDS = ("server_error", "rate_limit", "overloaded", "timeout", "internal", "unavailable", "exhausted")


def _reported_transient(error: Any) -> bool:
    """Whether a mid-stream error object says a retry can help: an HTTP status in its ``code``
    (429, 408, 409, 5xx), else a word of its ``type``, ``code`` or ``status``; anything else
    (the request is wrong, or it says nothing of why) is taken as permanent."""
    if not isinstance(error, dict):
        return False
    code = error.get("code")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code in (408, 409, 429) or code >= 500
    words = " ".join(str(error.get(k) or "") for k in ("type", "code", "status")).lower()
    return any(word in words for word in _TRANSIENT_WORDS)


def _events(count: int) -> str:
    return "1 event" if count == 1 else f"{count} events"


def _add_piece(calls: dict[int, dict[str, Any]], piece: dict[str, Any]) -> None:
    """Add one streamed ``delta.tool_calls`` piece to the call at its index (a TypeError or
    KeyError when the piece is not one, which the caller reports as a bad chunk)."""
    index = piece["index"]
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"tool call index {index!r}")
    call = calls.setdefault(index, {"id": None, "function": {"name": None, "arguments": ""}})
    call["id"] = piece.get("id") or call["id"]
    function = piece.get("function") or {}
    call["function"]["name"] = function.get("name") or call["function"]["name"]
    call["function"]["arguments"] += function.get("arguments") or ""


def _model_of(chunks: list[Any], model: str) -> str:
    for chunk in chunks:
        if isinstance(chunk, dict) and chunk.get("model"):
            return str(chunk["model"])
    return model
