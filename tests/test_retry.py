"""Unit tests for wfkit.model._retry: error classification, Retry-After and RetryPolicy."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import math
import random
import time
from typing import Any

import httpx
import pytest

from wfkit.model._retry import (
    NO_RETRY,
    ErrorKind,
    PermanentError,
    RetryPolicy,
    TransientError,
    classify_error,
    retry_after_of,
)

TRANSIENT, PERMANENT, UNKNOWN = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.UNKNOWN


class StatusError(Exception):
    """An exception carrying an HTTP status as ``status_code``, like many SDK errors."""

    def __init__(self, status_code: object) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class FakeResponse:
    """Just enough of an HTTP response: a status code and headers."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class ResponseError(Exception):
    """An exception carrying the response, like requests.HTTPError."""

    def __init__(self, response: object) -> None:
        super().__init__("response error")
        self.response = response


def httpx_status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    """A real httpx.HTTPStatusError as raised by ``response.raise_for_status()``."""
    request = httpx.Request("GET", "https://api.example.com/v1/chat")
    response = httpx.Response(status, request=request, headers=headers)
    return httpx.HTTPStatusError(f"status {status}", request=request, response=response)


# --- classify_error: exception types --------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("reset"),
        ConnectionResetError("reset by peer"),
        ConnectionRefusedError("refused"),
        BrokenPipeError("pipe"),
        TimeoutError("slow"),
        asyncio.TimeoutError(),  # noqa: UP041 -- the alias is what the brief asks to cover
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_errors_and_timeouts_are_transient(exc):
    """Connection errors and timeouts (including asyncio.TimeoutError) are transient."""
    assert TRANSIENT == classify_error(exc)


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), TypeError("bad"), PermissionError("denied"), KeyError("k")],
    ids=lambda e: type(e).__name__,
)
def test_bad_input_errors_are_permanent(exc):
    """ValueError, TypeError, PermissionError and KeyError are permanent."""
    assert PERMANENT == classify_error(exc)


def test_subclass_of_value_error_is_permanent():
    """A subclass of a permanent type (e.g. UnicodeDecodeError) is permanent too."""
    exc = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert PERMANENT == classify_error(exc)


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("boom"), Exception("plain"), ZeroDivisionError(), OSError("disk")],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_unknown(exc):
    """Errors outside the known families, such as RuntimeError, are unknown."""
    assert UNKNOWN == classify_error(exc)


def test_wfkit_transient_error_is_transient():
    """TransientError is transient."""
    assert TRANSIENT == classify_error(TransientError("rate limited"))


def test_wfkit_permanent_error_is_permanent():
    """PermanentError is permanent."""
    assert PERMANENT == classify_error(PermanentError("bad prompt"))


def test_subclasses_of_wfkit_errors_keep_their_kind():
    """Subclasses of TransientError and PermanentError keep the parent's kind."""

    class Overloaded(TransientError):
        pass

    class Refused(PermanentError):
        pass

    assert TRANSIENT == classify_error(Overloaded())
    assert PERMANENT == classify_error(Refused())


# --- classify_error: HTTP status ----------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_status_code_attribute_retryable(status):
    """status_code 408, 429 and any 5xx is transient."""
    assert TRANSIENT == classify_error(StatusError(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 499])
def test_status_code_attribute_client_error(status):
    """status_code for any other 4xx is permanent."""
    assert PERMANENT == classify_error(StatusError(status))


@pytest.mark.parametrize("status", [200, 302])
def test_non_error_status_code_is_unknown(status):
    """A status below 400 says nothing, so a plain exception carrying it is unknown."""
    assert UNKNOWN == classify_error(StatusError(status))


def test_status_code_given_as_string_is_parsed():
    """A status code stored as a string such as "503" is still understood."""
    assert TRANSIENT == classify_error(StatusError("503"))


def test_unparseable_status_code_is_ignored():
    """A status code that is not a number is ignored rather than raising."""
    assert UNKNOWN == classify_error(StatusError("teapot"))


def test_status_code_beats_exception_type():
    """An HTTP status decides over the exception's type (a ValueError carrying 503 is transient)."""

    class ApiValueError(ValueError):
        status_code = 503

    assert TRANSIENT == classify_error(ApiValueError())


@pytest.mark.parametrize(
    ("status", "expected"), [(429, TRANSIENT), (500, TRANSIENT), (400, PERMANENT), (404, PERMANENT)]
)
def test_status_code_on_response_attribute(status, expected):
    """exc.response.status_code is used when the exception has no status_code of its own."""
    assert expected == classify_error(ResponseError(FakeResponse(status)))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (408, TRANSIENT),
        (429, TRANSIENT),
        (500, TRANSIENT),
        (503, TRANSIENT),
        (400, PERMANENT),
        (401, PERMANENT),
        (404, PERMANENT),
    ],
)
def test_real_httpx_status_error(status, expected):
    """A real httpx.HTTPStatusError is classified by its response's status code."""
    assert expected == classify_error(httpx_status_error(status))


def test_httpx_raise_for_status_error_is_classified():
    """The error raised by httpx.Response.raise_for_status() for a 503 is transient."""
    request = httpx.Request("POST", "https://api.example.com/v1/chat")
    response = httpx.Response(503, request=request)
    with pytest.raises(httpx.HTTPStatusError) as info:
        response.raise_for_status()
    assert TRANSIENT == classify_error(info.value)


# --- classify_error: httpx transport errors ------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.WriteTimeout("write timed out"),
        httpx.PoolTimeout("pool exhausted"),
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("server hung up"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_httpx_transport_errors_are_transient(exc):
    """httpx timeouts, network errors and remote protocol errors are transient."""
    assert TRANSIENT == classify_error(exc)


def test_httpx_timeout_with_request_attached_is_transient():
    """An httpx.ReadTimeout carrying its request is still transient."""
    request = httpx.Request("GET", "https://api.example.com/")
    assert TRANSIENT == classify_error(httpx.ReadTimeout("slow", request=request))


@pytest.mark.parametrize(
    "exc",
    [httpx.UnsupportedProtocol("ftp://"), httpx.InvalidURL("not a url")],
    ids=lambda e: type(e).__name__,
)
def test_httpx_configuration_errors_are_permanent(exc):
    """httpx errors for a bad URL or protocol are permanent."""
    assert PERMANENT == classify_error(exc)


# --- classify_error: urllib, aiohttp and DNS ----------------------------------------------------


class StatusAttributeError(Exception):
    """A stand-in for aiohttp's ClientResponseError: the status as ``status`` (an int), headers beside it."""

    def __init__(self, status: object, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}, message='...', url='https://api.example.com/v1'")
        self.status = status
        self.headers = headers or {}


@pytest.mark.parametrize(
    ("status", "expected"),
    [(408, TRANSIENT), (429, TRANSIENT), (500, TRANSIENT), (503, TRANSIENT), (400, PERMANENT), (404, PERMANENT)],
)
def test_an_int_status_attribute_is_an_http_status(status, expected):
    """An int ``status`` on an exception (aiohttp's ClientResponseError) classifies it, as status_code does."""
    assert expected == classify_error(StatusAttributeError(status))


@pytest.mark.parametrize("status", ["503", "failed", True, 7, 1006, None])
def test_a_status_attribute_that_is_no_http_status_says_nothing(status):
    """A ``status`` that is no int from 100 to 599 (text, a bool, a websocket close code) is no HTTP status."""
    assert UNKNOWN == classify_error(StatusAttributeError(status))


def test_a_status_on_the_response_attribute():
    """``exc.response.status`` (an aiohttp response) is read when the exception has no status of its own."""

    class Response:
        status = 502

    assert TRANSIENT == classify_error(ResponseError(Response()))


def test_a_status_attribute_s_retry_after_header_is_honoured():
    """The stand-in's ``headers`` give its Retry-After, as aiohttp's error carries them."""
    assert 7.0 == retry_after_of(StatusAttributeError(429, {"Retry-After": "7"}))


@pytest.mark.parametrize(("status", "expected"), [(503, TRANSIENT), (429, TRANSIENT), (404, PERMANENT)])
def test_a_real_urllib_http_error_from_a_local_server(status, expected):
    """urlopen's HTTPError (its status in ``code``) from a real server on 127.0.0.1 is classified
    by its status, and a 429's Retry-After is read from its headers."""
    import urllib.error
    import urllib.request

    from llm_server import LLMServer

    with LLMServer() as server:
        behaviour = ("429", 3) if status == 429 else ("status", status)
        server.script(behaviour)
        request = urllib.request.Request(f"{server.url}/chat/completions", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
    info.value.close()
    assert (status, expected) == (info.value.code, classify_error(info.value))
    if status == 429:
        assert 3.0 == retry_after_of(info.value)


def test_a_urllib_error_is_classified_by_its_reason():
    """urlopen wraps a refused connection (or a DNS failure) in a URLError: its reason decides."""
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as sock:  # a port nobody listens on: bound, then closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
    assert isinstance(info.value.reason, ConnectionRefusedError)
    assert TRANSIENT == classify_error(info.value)
    assert TRANSIENT == classify_error(urllib.error.URLError(socket.gaierror(-3, "Temporary failure")))
    assert UNKNOWN == classify_error(urllib.error.URLError("no reason an exception gives"))


def test_a_host_name_that_does_not_resolve_is_transient(monkeypatch):
    """socket.gaierror (a DNS server down, a network not up yet) is transient, raw or as httpx's ConnectError."""
    import socket

    def no_dns(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    assert TRANSIENT == classify_error(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with httpx.Client() as client, pytest.raises(httpx.ConnectError) as info:
        client.get("http://api.example.invalid/v1/models")
    assert "name resolution" in str(info.value)  # httpcore's ConnectError around the gaierror, then httpx's
    assert TRANSIENT == classify_error(info.value)


def test_steps_calling_urllib_retry_a_503_and_stop_at_a_404():
    """A step whose urlopen met a 503 is retried as transient; a 404 fails it at once, as permanent."""
    import urllib.error
    import urllib.request

    from llm_server import LLMServer

    import wfkit as wf
    from wfkit.testing import test_mode

    flow = wf.Workflow("fetch")

    @flow.step(retry=RetryPolicy(max_retries=2))
    def fetch(state):
        request = urllib.request.Request(state["url"], data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return {"status": response.status}
        except urllib.error.HTTPError as exc:
            exc.close()  # its body: the connection (the error itself goes on, to be classified)
            raise

    with LLMServer() as server, test_mode():
        server.script(("status", 503), "ok")
        ok = flow.run({"url": f"{server.url}/chat/completions"}, workspace=False)
        server.script(("status", 404))
        failed = flow.run({"url": f"{server.url}/chat/completions"}, workspace=False, raise_on_error=False)
    assert [("retry", "transient"), ("ok", None)] == [(e.status, e.error_kind) for e in ok.events]
    assert [("failed", "permanent")] == [(e.status, e.error_kind) for e in failed.events]


# --- classify_error: explicit error_kind ----------------------------------------------------


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_explicit_error_kind_enum(kind):
    """An exception's error_kind attribute (an ErrorKind) decides its classification."""
    exc = RuntimeError("x")
    exc.error_kind = kind  # type: ignore[attr-defined]
    assert kind == classify_error(exc)


@pytest.mark.parametrize(
    ("value", "expected"), [("transient", TRANSIENT), ("permanent", PERMANENT), ("unknown", UNKNOWN)]
)
def test_explicit_error_kind_string(value, expected):
    """An error_kind given as the enum's string value is understood too."""
    exc = RuntimeError("x")
    exc.error_kind = value  # type: ignore[attr-defined]
    assert expected == classify_error(exc)


def test_explicit_error_kind_overrides_everything_else():
    """error_kind wins over the wfkit error type, the HTTP status and the exception type."""
    exc = TransientError("x")
    exc.error_kind = PERMANENT  # type: ignore[attr-defined]
    assert PERMANENT == classify_error(exc)

    status = StatusError(503)
    status.error_kind = "permanent"  # type: ignore[attr-defined]
    assert PERMANENT == classify_error(status)

    conn = ConnectionError("reset")
    conn.error_kind = UNKNOWN  # type: ignore[attr-defined]
    assert UNKNOWN == classify_error(conn)


def test_explicit_error_kind_none_is_ignored():
    """error_kind = None falls through to the normal rules."""
    exc = ValueError("x")
    exc.error_kind = None  # type: ignore[attr-defined]
    assert PERMANENT == classify_error(exc)


def test_error_kind_values():
    """ErrorKind's values are the strings written to the step log."""
    assert ("transient", "permanent", "unknown") == tuple(k.value for k in ErrorKind)


# --- retry_after_of ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(5, 5.0), (2.5, 2.5), (0, 0.0), ("7", 7.0)])
def test_retry_after_attribute(value, expected):
    """A retry_after attribute (number or numeric string) gives the wait in seconds."""
    exc = RuntimeError("x")
    exc.retry_after = value  # type: ignore[attr-defined]
    assert expected == retry_after_of(exc)


def test_negative_retry_after_is_clamped_to_zero():
    """A negative retry_after never yields a negative wait."""
    exc = RuntimeError("x")
    exc.retry_after = -3  # type: ignore[attr-defined]
    assert 0.0 == retry_after_of(exc)


def test_transient_error_retry_after():
    """TransientError(retry_after=...) reports that wait."""
    assert 12.5 == retry_after_of(TransientError("slow down", retry_after=12.5))


def test_transient_error_without_retry_after_is_none():
    """A TransientError without retry_after asks for no particular wait."""
    assert retry_after_of(TransientError("x")) is None


@pytest.mark.parametrize("header", ["Retry-After", "retry-after"])
def test_retry_after_header_in_seconds_on_response(header):
    """A Retry-After header in seconds on exc.response is read, in either case."""
    exc = ResponseError(FakeResponse(429, {header: "30"}))
    assert 30.0 == retry_after_of(exc)


def test_retry_after_header_on_the_exception_itself():
    """Headers stored directly on the exception are read when there is no response."""
    exc = RuntimeError("x")
    exc.headers = {"Retry-After": "4"}  # type: ignore[attr-defined]
    assert 4.0 == retry_after_of(exc)


def test_retry_after_header_on_real_httpx_error():
    """The Retry-After header of a real httpx response is read."""
    assert 7.0 == retry_after_of(httpx_status_error(429, {"Retry-After": "7"}))


def test_retry_after_http_date_header():
    """A Retry-After HTTP date gives the seconds from now until that moment."""
    future = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    header = email.utils.format_datetime(future, usegmt=True)
    wait = retry_after_of(httpx_status_error(503, {"Retry-After": header}))
    assert wait is not None
    assert 120 == pytest.approx(wait, abs=3)


@pytest.mark.parametrize("skew", [-86400, -3600, 3600, 86400])
def test_retry_after_http_date_counts_from_the_responses_date(skew):
    """A response whose Date is off from the local clock (by an hour, a day, either way) asks to
    wait Retry-After - Date: what the server meant, not its date measured on our clock."""
    date = time.time() + skew
    headers = {
        "Date": email.utils.formatdate(date, usegmt=True),
        "Retry-After": email.utils.formatdate(date + 90, usegmt=True),
    }
    assert 90.0 == retry_after_of(httpx_status_error(503, headers))


@pytest.mark.parametrize("form", ["asctime", "-0000"])
def test_retry_after_http_date_without_a_zone_is_gmt_on_a_machine_in_another_zone(monkeypatch, form):
    """HTTP dates are GMT always (RFC 9110), also in the obsolete asctime form and with the
    "-0000" zone, which Python reads as a date of no zone: on a machine whose local zone is hours
    off UTC the wait must still be what the server asked, not off by the zone's hours."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        now = time.time()
        then = dt.datetime.fromtimestamp(now + 90, dt.UTC)
        if form == "asctime":
            header = then.strftime("%a %b %d %H:%M:%S %Y")
        else:
            header = then.strftime("%a, %d %b %Y %H:%M:%S -0000")
        headers = {"Date": email.utils.formatdate(now, usegmt=True), "Retry-After": header}
        assert 90.0 == pytest.approx(retry_after_of(httpx_status_error(503, headers)), abs=1)
    finally:
        monkeypatch.undo()  # the zone the process had, then read again
        time.tzset()


def test_retry_after_in_seconds_ignores_the_responses_date():
    """A Retry-After in seconds is a wait already: the Date beside it changes nothing."""
    headers = {"Date": email.utils.formatdate(time.time() - 3600, usegmt=True), "Retry-After": "5"}
    assert 5.0 == retry_after_of(httpx_status_error(429, headers))


def test_retry_after_http_date_in_the_past_is_zero():
    """A Retry-After date already passed means no wait, never a negative one."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    header = email.utils.format_datetime(past, usegmt=True)
    assert 0.0 == retry_after_of(ResponseError(FakeResponse(503, {"Retry-After": header})))


def test_attribute_wins_over_header():
    """An explicit retry_after attribute is preferred over the response's header."""
    exc = ResponseError(FakeResponse(429, {"Retry-After": "30"}))
    exc.retry_after = 2  # type: ignore[attr-defined]
    assert 2.0 == retry_after_of(exc)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("no hints"),
        StatusError(429),
        ResponseError(FakeResponse(429)),
        ResponseError(None),
        httpx_status_error(503),
        httpx.ReadTimeout("slow"),
    ],
    ids=["plain", "status-only", "no-header", "no-response", "httpx-no-header", "httpx-timeout"],
)
def test_retry_after_absent_is_none(exc):
    """Without a retry_after attribute or Retry-After header the answer is None."""
    assert retry_after_of(exc) is None


def test_unparseable_retry_after_header_is_none():
    """A Retry-After header that is neither seconds nor a date is ignored."""
    assert retry_after_of(ResponseError(FakeResponse(429, {"Retry-After": "soon"}))) is None


# --- RetryPolicy.backoff ----------------------------------------------------------------------


def test_default_policy():
    """The default policy retries 3 times, from 1 s doubling up to 60 s, with 50 % jitter."""
    p = RetryPolicy()
    assert (3, 1.0, 60.0, 2.0, 0.5, 300.0, 1) == (
        p.max_retries,
        p.base_delay,
        p.max_delay,
        p.backoff_factor,
        p.jitter,
        p.max_elapsed,
        p.max_unknown_retries,
    )


def test_backoff_grows_exponentially_without_jitter():
    """Without jitter retry n waits base_delay * backoff_factor ** (n - 1)."""
    p = RetryPolicy(base_delay=0.5, backoff_factor=3.0, max_delay=1000.0, jitter=0)
    assert [0.5, 1.5, 4.5, 13.5, 40.5] == [p.backoff(n) for n in range(1, 6)]


def test_backoff_is_capped_at_max_delay():
    """Without jitter the wait never exceeds max_delay, and stays there once reached."""
    p = RetryPolicy(base_delay=1.0, backoff_factor=2.0, max_delay=10.0, jitter=0)
    assert [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0] == [p.backoff(n) for n in range(1, 8)]


def test_backoff_factor_one_is_constant():
    """backoff_factor 1 gives the same wait before every retry."""
    p = RetryPolicy(base_delay=2.0, backoff_factor=1.0, jitter=0)
    assert [2.0] * 5 == [p.backoff(n) for n in range(1, 6)]


def test_zero_base_delay_never_waits():
    """base_delay 0 means retry immediately, whatever the jitter."""
    p = RetryPolicy(base_delay=0.0, jitter=0.5)
    assert [0.0] * 4 == [p.backoff(n, random.Random(1)) for n in range(1, 5)]


def test_backoff_is_capped_for_high_retry_numbers():
    """A retry number in the hundreds still waits exactly max_delay."""
    p = RetryPolicy(max_delay=30.0, jitter=0)
    assert 30.0 == p.backoff(500)


def test_backoff_is_capped_for_huge_retry_numbers():
    """A retry number large enough to overflow a float still waits exactly max_delay."""
    p = RetryPolicy(max_delay=30.0, jitter=0, max_retries=10_000, max_elapsed=None)
    assert 30.0 == p.backoff(2000)


def test_jitter_stays_within_bounds():
    """With jitter j every wait lies in [(1 - j) * d, (1 + j) * d] for the un-jittered wait d."""
    jitter = 0.25
    p = RetryPolicy(base_delay=1.0, backoff_factor=2.0, max_delay=16.0, jitter=jitter)
    rng = random.Random(1234)
    for retry in range(1, 8):
        nominal = min(2.0 ** (retry - 1), 16.0)
        samples = [p.backoff(retry, rng) for _ in range(500)]
        assert all((1 - jitter) * nominal <= s <= (1 + jitter) * nominal for s in samples)
        # The factor really varies and covers both sides of the nominal wait.
        assert min(samples) < nominal < max(samples)
        assert (1 - jitter) * nominal == pytest.approx(min(samples), abs=0.05 * nominal)
        assert (1 + jitter) * nominal == pytest.approx(max(samples), abs=0.05 * nominal)


def test_full_jitter_stays_within_zero_and_double():
    """jitter 1 spreads waits over [0, 2 * d]."""
    p = RetryPolicy(base_delay=3.0, jitter=1.0)
    rng = random.Random(7)
    samples = [p.backoff(1, rng) for _ in range(1000)]
    assert all(0.0 <= s <= 6.0 for s in samples)
    assert min(samples) < 0.5
    assert max(samples) > 5.5


def test_jitter_is_reproducible_with_a_seeded_rng():
    """The same seed gives the same sequence of waits."""
    p = RetryPolicy(jitter=0.5)
    first = [p.backoff(n, random.Random(42)) for n in range(1, 6)]
    second = [p.backoff(n, random.Random(42)) for n in range(1, 6)]
    assert first == second


def test_jitter_without_rng_uses_module_random_within_bounds():
    """Without an rng the global random module is used, still within the jitter bounds."""
    p = RetryPolicy(base_delay=4.0, jitter=0.5)
    samples = [p.backoff(1) for _ in range(200)]
    assert all(2.0 <= s <= 6.0 for s in samples)
    assert len(set(samples)) > 1


def test_no_jitter_ignores_rng():
    """With jitter 0 the wait is exact and does not consume randomness."""
    p = RetryPolicy(base_delay=1.0, jitter=0)
    rng = random.Random(5)
    state = rng.getstate()
    assert 4.0 == p.backoff(3, rng)
    assert state == rng.getstate()


# --- RetryPolicy.allows -------------------------------------------------------------------------


@pytest.mark.parametrize("done", [0, 1, 2, 10])
def test_permanent_is_never_retried(done):
    """A permanent error is never retried, however many retries remain."""
    assert not RetryPolicy(max_retries=5).allows(PERMANENT, done)


def test_transient_is_retried_up_to_max_retries():
    """A transient error is retried while fewer than max_retries retries were done."""
    p = RetryPolicy(max_retries=3)
    assert [True, True, True, False, False] == [p.allows(TRANSIENT, n) for n in range(5)]


def test_unknown_is_retried_up_to_max_unknown_retries():
    """An unknown error is retried at most max_unknown_retries times."""
    p = RetryPolicy(max_retries=5, max_unknown_retries=2)
    assert [True, True, False, False] == [p.allows(UNKNOWN, n) for n in range(4)]


def test_unknown_retries_also_bounded_by_max_retries():
    """max_unknown_retries above max_retries is still limited by max_retries."""
    p = RetryPolicy(max_retries=1, max_unknown_retries=5)
    assert [True, False, False] == [p.allows(UNKNOWN, n) for n in range(3)]


def test_default_policy_retries_unknown_once():
    """The default policy retries an unknown error once."""
    p = RetryPolicy()
    assert [True, False] == [p.allows(UNKNOWN, n) for n in range(2)]


def test_zero_unknown_retries_never_retries_unknown():
    """max_unknown_retries 0 turns off retries for unknown errors but not transient ones."""
    p = RetryPolicy(max_unknown_retries=0)
    assert not p.allows(UNKNOWN, 0)
    assert p.allows(TRANSIENT, 0)


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_no_retry_allows_nothing(kind):
    """NO_RETRY allows no retry for any kind of error."""
    assert 0 == NO_RETRY.max_retries
    assert not NO_RETRY.allows(kind, 0)


# --- RetryPolicy validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, r"max_retries must be an int >= 0, got -1"),
        ({"max_retries": 1.5}, r"max_retries must be an int >= 0, got 1.5"),
        ({"base_delay": -0.1}, r"base_delay and max_delay must be >= 0"),
        ({"max_delay": -1}, r"base_delay and max_delay must be >= 0"),
        ({"backoff_factor": 0.5}, r"backoff_factor must be >= 1, got 0.5"),
        ({"jitter": -0.1}, r"jitter must be a fraction in \[0, 1\], got -0.1"),
        ({"jitter": 1.5}, r"jitter must be a fraction in \[0, 1\], got 1.5"),
        ({"jitter": True}, r"jitter must be a fraction in \[0, 1\], got True"),
        ({"max_elapsed": 0}, r"max_elapsed must be > 0 or None, got 0"),
        ({"max_elapsed": -5.0}, r"max_elapsed must be > 0 or None, got -5.0"),
        ({"max_unknown_retries": -1}, r"max_unknown_retries must be >= 0"),
        # NaN passed every comparison (each is False) and infinity meant a wait of no end, or a
        # policy flow.save writes into a spec its loader refuses: each was taken silently.
        ({"base_delay": math.nan}, r"base_delay must be a finite number, got nan"),
        ({"base_delay": math.inf, "max_delay": math.inf}, r"base_delay must be a finite number, got inf"),
        ({"max_delay": math.nan}, r"max_delay must be a finite number, got nan"),
        ({"max_delay": math.inf}, r"max_delay must be a finite number of seconds, got inf: it is the longest wait"),
        ({"backoff_factor": math.nan}, r"backoff_factor must be a finite number, got nan"),
        ({"backoff_factor": math.inf}, r"backoff_factor must be a finite number, got inf"),
        ({"max_elapsed": math.nan}, r"max_elapsed must be a finite number, got nan"),
        ({"max_elapsed": math.inf}, r"max_elapsed must be a finite number of seconds, got inf: None is no limit"),
    ],
)
def test_invalid_parameter_raises_value_error_naming_it(kwargs, message):
    """Each out-of-range parameter raises ValueError whose message names it and its bound."""
    with pytest.raises(ValueError, match=r"invalid RetryPolicy: .*" + message):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "base", "longest"),
    [
        ({"base_delay": 10, "max_delay": 1}, "10", "1"),
        ({"max_delay": 0.5}, "1.0", "0.5"),  # base_delay left at its default, 1 s
        ({"base_delay": dt.timedelta(minutes=2), "max_delay": dt.timedelta(minutes=1)}, "120.0", "60.0"),
    ],
)
def test_a_first_wait_longer_than_the_longest_is_refused_saying_which_is_which(
    kwargs: dict[str, Any], base: str, longest: str
) -> None:
    """`RetryPolicy(base_delay=10, max_delay=1)` was taken, and every wait was then 1 s whatever
    backoff_factor said: it is now a ValueError naming both, which is the first wait and which the
    longest, and the two ways out."""
    with pytest.raises(ValueError) as info:
        RetryPolicy(**kwargs)
    assert (
        f"invalid RetryPolicy: base_delay={base} (the first wait) is longer than max_delay={longest} (the "
        f"longest wait), so every wait would be max_delay: lower base_delay to {longest} or less, or raise "
        f"max_delay to {base} or more"
    ) == str(info.value)
    assert 1 == RetryPolicy(base_delay=1, max_delay=1).max_delay  # equal is fine: a constant wait


def test_every_problem_is_reported_at_once():
    """Several invalid parameters are all listed in one ValueError."""
    with pytest.raises(ValueError) as info:
        RetryPolicy(max_retries=-1, backoff_factor=0, jitter=2, max_elapsed=0)
    message = str(info.value)
    for name in ("max_retries", "backoff_factor", "jitter", "max_elapsed"):
        assert name in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": 0},
        {"base_delay": 0, "max_delay": 0},
        {"backoff_factor": 1},
        {"jitter": 0},
        {"jitter": 1},
        {"max_elapsed": None},
        {"max_unknown_retries": 0},
    ],
)
def test_boundary_parameters_are_valid(kwargs):
    """Parameters at the edge of their allowed range are accepted as given."""
    p = RetryPolicy(**kwargs)
    for name, value in kwargs.items():
        assert value == getattr(p, name)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"base_delay": "1"}, "base_delay"),
        ({"backoff_factor": None}, "backoff_factor"),
        ({"jitter": "0.5"}, "jitter"),
        ({"max_unknown_retries": None}, "max_unknown_retries"),
    ],
)
def test_wrongly_typed_parameter_raises_value_error_naming_it(kwargs, name):
    """A parameter of the wrong type raises ValueError naming the parameter, like a bad value."""
    with pytest.raises(ValueError, match=name):
        RetryPolicy(**kwargs)


def test_policy_is_immutable():
    """A RetryPolicy is frozen: changing a field raises."""
    p = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_retries = 10  # type: ignore[misc]


@pytest.mark.parametrize("value", ["flaky", 42, ["transient"]])
def test_an_invalid_error_kind_is_classified_unknown(value):
    """An error_kind that names no kind is classified unknown instead of crashing classification."""
    exc = RuntimeError("x")
    exc.error_kind = value  # type: ignore[attr-defined]
    assert UNKNOWN == classify_error(exc)


def test_an_attempt_with_an_invalid_error_kind_is_recorded(workspace):
    """A step raising an exception with a bad error_kind fails with its attempt in the journal as unknown."""
    import wfkit as wf

    class Odd(RuntimeError):
        error_kind = "sometimes"

    flow = wf.Workflow("odd-kind")

    @flow.step
    def boom(state):
        raise Odd("odd")

    run = flow.run({}, raise_on_error=False)
    assert "failed" == run.status
    assert [("boom", "failed", "unknown", "Odd")] == [
        (e.step, e.status, e.error_kind, e.error_type) for e in wf.Workspace().events(run.run_id)
    ]


@pytest.mark.parametrize(
    ("keyword", "hint"),
    [
        ("retries", "'retries' (did you mean 'max_retries'?)"),
        (
            "attempts",
            "'attempts' (did you mean 'max_retries'? attempts=3 is max_retries=2: the retries after the first)",
        ),
        ("wait_max", "'wait_max' (did you mean 'max_delay'?)"),
    ],
)
def test_a_misspelt_retry_policy_keyword_is_refused_naming_the_closest(keyword: str, hint: str) -> None:
    """RetryPolicy(attempts=3) says which keyword it means and which it takes, as flow.step(retries=3)
    does, not Python's bare "unexpected keyword argument"."""
    with pytest.raises(TypeError) as info:
        RetryPolicy(**{keyword: 3})
    assert (
        f"RetryPolicy() got unexpected keyword argument(s) {hint}; it takes backoff_factor, base_delay, "
        f"jitter, max_delay, max_elapsed, max_retries, max_unknown_retries"
    ) == str(info.value)


def test_a_step_given_retries_says_why_its_value_error_ran_once(workspace):
    """A step given ``max_retries=3`` whose ValueError ran once (wfkit calls it permanent for its
    type) says why no retry ran and how to ask for one, in the run's error and its step-log row;
    the classify= it names retries it. An error that says its kind itself (a PermanentError), one
    of wfkit's own, one the step's classifier calls permanent, and a step given no retries add
    nothing."""
    import wfkit as wf

    policy = wf.RetryPolicy(max_retries=3, base_delay=0.001, jitter=0)
    advice = (
        "not retried: the error is permanent, and max_retries=3 retries transient errors (and those of "
        "unknown kind) only; if a retry can mend it, say so with the step's classify= (e.g. "
        "classify=lambda exc: 'transient') or raise wf.TransientError"
    )

    def flow_of(error: BaseException, **options: Any) -> wf.Workflow:
        flow = wf.Workflow("parse")

        @flow.step(**options)
        def parse(state: dict[str, Any]) -> dict[str, Any]:
            raise error

        return flow

    run = flow_of(ValueError("bad json from the model"), retry=policy).run({}, raise_on_error=False)
    assert str(run.error).endswith(f"failed with ValueError (permanent): bad json from the model; {advice}")
    rows = wf.Workspace().events(run.run_id)
    assert [(1, "failed", "permanent")] == [(e.attempt, e.status, e.error_kind) for e in rows]
    assert rows[0].error_message == f"bad json from the model; {advice}"

    retried = flow_of(ValueError("bad json"), retry=policy, classify=lambda exc: "transient").run(
        {}, raise_on_error=False
    )
    assert [1, 2, 3, 4] == [e.attempt for e in wf.Workspace().events(retried.run_id)]
    assert "the retry budget ran out after 4 attempts: max_retries=3 spent" in str(retried.error)

    for error, options in (
        (wf.PermanentError("the model refused"), {"retry": policy}),
        (ValueError("bad json"), {"retry": policy, "classify": lambda exc: "permanent"}),
        (ValueError("bad json"), {}),
        (wf.StateValueError("one of wfkit's own: permanent by what it is"), {"retry": policy}),
    ):
        quiet = flow_of(error, **options).run({}, raise_on_error=False)
        assert "not retried" not in str(quiet.error), (error, options)
        assert str(quiet.error).endswith("(permanent): " + str(error)), quiet.error
