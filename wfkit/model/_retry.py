"""Error classification and retry policy: what is worth retrying, and how long to wait."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import enum
import math
import random
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from wfkit.model._seconds import Seconds, as_seconds
from wfkit.model._suggest import unexpected_keywords


class ErrorKind(enum.Enum):
    """Whether an error is worth retrying."""

    TRANSIENT = "transient"  # timeouts, connection drops, 429, 5xx: retry with backoff
    PERMANENT = "permanent"  # bad input, permission denied, other 4xx: retrying cannot help
    UNKNOWN = "unknown"  # anything else: retried, but conservatively (see RetryPolicy)


Classifier: TypeAlias = Callable[[BaseException], ErrorKind]


class TransientError(Exception):
    """Raise from a step to say "worth retrying"; ``retry_after`` (seconds) is honoured."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Raise from a step to say "retrying cannot help"."""


# socket.gaierror: a host name that did not resolve (a DNS server down or slow, a network not up
# yet), which is an OSError but no ConnectionError; httpx's ConnectError around it was transient.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    socket.gaierror,
)
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (ValueError, TypeError, PermissionError, KeyError)


def _as_status(value: object) -> int | None:
    """``value`` as an HTTP status when it is one: an int (not a bool) from 100 to 599. Read from
    ``status`` (aiohttp's ClientResponseError, urllib's HTTPError), a name other libraries use for
    other things (a string, an enum), so anything else is no status."""
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return int(value)
    return None


def _status_code(exc: BaseException) -> int | None:
    """HTTP status carried by an exception: ``exc.status_code`` or ``exc.response.status_code``
    (httpx, requests and most SDKs), else an int ``exc.status`` or ``exc.response.status``
    (aiohttp's ClientResponseError, urllib's HTTPError), else urllib's ``exc.code``."""
    holders = (exc, getattr(exc, "response", None))
    for holder in holders:
        status = getattr(holder, "status_code", None)
        if status is not None:
            try:
                return int(status)
            except (TypeError, ValueError):
                return None
    for holder in holders:
        status = _as_status(getattr(holder, "status", None))
        if status is not None:
            return status
    if isinstance(exc, _urllib_error("HTTPError")):  # its ``code``, which ``status`` only mirrors
        return _as_status(getattr(exc, "code", None))
    return None


def _urllib_error(name: str) -> type[BaseException] | tuple[()]:
    """urllib's error class ``name``, when loaded (an exception of it exists only then), else a
    class tuple nothing is an instance of: ``import wfkit`` does not load urllib's."""
    module = sys.modules.get("urllib.error")
    found = getattr(module, name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else ()


def _httpx_kind(exc: BaseException) -> ErrorKind | None:
    # Checked only when the user's code already imported httpx, so `import wfkit` stays light.
    httpx = sys.modules.get("httpx")
    if httpx is None:
        return None
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ErrorKind.PERMANENT
    return None


def classify_error(exc: BaseException) -> ErrorKind:
    """Classify an exception as transient, permanent or unknown.

    In order: an explicit ``exc.error_kind`` (an ErrorKind or its value); wfkit's
    TransientError / PermanentError; an HTTP status (429 and 5xx transient, 408 transient,
    other 4xx permanent), read from ``status_code`` (httpx, requests), an int ``status``
    (aiohttp's ``ClientResponseError``, urllib's ``HTTPError``) or urllib's ``code``, on the
    exception or its ``response``; httpx transport errors; urllib's ``URLError`` by its
    ``reason`` (a refused connection, a timeout); connection errors, timeouts and a host name
    that did not resolve (``socket.gaierror``) (transient); ValueError, TypeError, KeyError and
    PermissionError (permanent); else unknown.
    """
    explicit = getattr(exc, "error_kind", None)
    if explicit is not None:
        if isinstance(explicit, ErrorKind):
            return explicit
        try:
            return ErrorKind(explicit)
        except (ValueError, TypeError):
            # A kind we do not know is no reason to lose the attempt: it is recorded as unknown.
            return ErrorKind.UNKNOWN
    if isinstance(exc, TransientError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, PermanentError):
        return ErrorKind.PERMANENT
    status = _status_code(exc)
    if status is not None:
        if status in (408, 429) or status >= 500:
            return ErrorKind.TRANSIENT
        if 400 <= status < 500:
            return ErrorKind.PERMANENT
    kind = _httpx_kind(exc)
    if kind is not None:
        return kind
    reason = getattr(exc, "reason", None) if isinstance(exc, _urllib_error("URLError")) else None
    if isinstance(reason, BaseException) and reason is not exc:
        # urlopen wraps what went wrong below HTTP (ConnectionRefusedError, socket.gaierror, a
        # timeout, a certificate refused) in a URLError, an OSError that says nothing by itself.
        return classify_error(reason)
    if isinstance(exc, _TRANSIENT_TYPES):
        return ErrorKind.TRANSIENT
    if isinstance(exc, _PERMANENT_TYPES):
        return ErrorKind.PERMANENT
    return ErrorKind.UNKNOWN


def permanent_by_type(exc: BaseException) -> bool:
    """Whether :func:`classify_error` calls ``exc`` permanent for its Python type alone (a
    ValueError...), wfkit's guess, not for anything the error says of itself (an ``error_kind``,
    a PermanentError, an HTTP status, an httpx error): a step given retries then says why none ran."""
    return (
        isinstance(exc, _PERMANENT_TYPES)
        and not isinstance(exc, PermanentError)
        and getattr(exc, "error_kind", None) is None
        and _status_code(exc) is None
        and _httpx_kind(exc) is None
    )


def checked_kind(step: str, verdict: object, exc: BaseException) -> ErrorKind:
    """What a step's own ``classify=`` returned for ``exc``, as an ErrorKind: an ErrorKind, or its
    value (``"transient"``, ``"permanent"``, ``"unknown"``, as the step log spells kinds). Anything
    else is a mistake in the classifier, refused with what it must return."""
    if isinstance(verdict, ErrorKind):
        return verdict
    if isinstance(verdict, str):
        try:
            return ErrorKind(verdict.lower())
        except ValueError:
            pass
    raise TypeError(
        f"step {step!r}: its classify= returned {verdict!r} for {exc!r}; a classifier returns "
        f"wfkit.ErrorKind.TRANSIENT, PERMANENT or UNKNOWN (or 'transient', 'permanent', 'unknown')"
    )


def _http_date(text: str) -> float | None:
    """An HTTP date ("Wed, 21 Oct 2026 07:28:00 GMT") as a POSIX timestamp; None if it is none.
    HTTP dates are GMT (RFC 9110), also the obsolete asctime form and a "-0000" zone, which Python
    reads as dates of no zone: those are taken as UTC, never as the machine's local time."""
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _parse_retry_after(value: Any, now: float | None = None) -> float | None:
    """Seconds ``value`` (a ``Retry-After``: seconds, or an HTTP date) asks to wait. A date is
    measured from ``now``, the response's ``Date`` when it has one, else from the local clock."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    when = _http_date(text)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))


def retry_after_in(headers: Any) -> float | None:
    """Seconds a response's headers ask us to wait: ``retry-after-ms`` (milliseconds, sent by
    OpenAI-compatible servers; it wins, as in OpenAI's own client), else ``Retry-After``. A
    ``Retry-After`` date counts from the response's ``Date``, so a client whose clock is off by
    an hour still waits what the server meant (from the local clock when there is no ``Date``)."""
    millis = headers.get("retry-after-ms") or headers.get("Retry-After-Ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass  # not a number of milliseconds: Retry-After still says something
    date = headers.get("date") or headers.get("Date")
    now = None if date is None else _http_date(str(date))
    return _parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"), now)


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait: ``exc.retry_after``, or the headers of
    ``exc.response`` (or ``exc.headers``): ``retry-after-ms``, else ``Retry-After``."""
    direct = _parse_retry_after(getattr(exc, "retry_after", None))
    if direct is not None:
        return direct
    response = getattr(exc, "response", None)
    headers: Any = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if headers is None or not hasattr(headers, "get"):
        return None
    return retry_after_in(headers)


NOT_RETRIED = "; not retried: "
"""What ends an error's message before why its retryable error was not retried (see
:meth:`RetryPolicy.budget_spent`, :meth:`RetryPolicy.wait_refused`): a message cut to size keeps it."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step retries: exponential backoff with jitter, bounded in attempts and in time.

    The wait before retry ``n`` (1-based) is ``base_delay * backoff_factor ** (n - 1)``, capped at
    ``max_delay``, then scaled by a random factor in ``[1 - jitter, 1 + jitter]``. A server's
    ``Retry-After`` longer than that sets the wait: what it asked, scaled by a random factor in
    ``[1, 1 + jitter]`` (``server_wait``), so map items or runs rate-limited together do not all
    ask again at the same instant (and get rate-limited again); never less than it asked, and
    with ``jitter=0`` exactly that (under a run's deadline, the range keeps half the time the
    deadline leaves to the attempt). No retry starts once
    ``max_elapsed`` seconds have passed since the first attempt, nor one whose wait would end
    after them; with ``max_elapsed=None``, no retry waits a ``Retry-After`` longer than
    ``max_delay``. Such a step fails at once, saying why (``wait_refused``), rather than sit out
    an hour a server asked for. Permanent errors are never retried; unknown ones at most
    ``max_unknown_retries`` times. Times are seconds or a ``datetime.timedelta``. A retryable error
    not retried says why: the wait refused, or the budget spent (``budget_spent``), in the run's
    error and its step-log row.
    """

    max_retries: int = 3
    base_delay: float = 1.0
    max_delay: float = 60.0
    backoff_factor: float = 2.0
    jitter: float = 0.5
    max_elapsed: float | None = 300.0
    max_unknown_retries: int = 1

    if TYPE_CHECKING:  # the delays take a timedelta too; they hold seconds once made

        def __init__(
            self,
            max_retries: int = 3,
            base_delay: Seconds = 1.0,
            max_delay: Seconds = 60.0,
            backoff_factor: float = 2.0,
            jitter: float = 0.5,
            max_elapsed: Seconds | None = 300.0,
            max_unknown_retries: int = 1,
        ) -> None: ...

    if not TYPE_CHECKING:  # the type checker reads the keywords off __init__

        def __new__(cls, *args: Any, **kwargs: Any) -> RetryPolicy:
            # Python says only "unexpected keyword argument 'attempts'": name the keyword meant.
            unknown = sorted(kwargs.keys() - _POLICY_KEYWORDS)
            if unknown:
                raise unexpected_keywords("RetryPolicy", unknown, _POLICY_KEYWORDS, _MEANT)
            return object.__new__(cls)

    def __post_init__(self) -> None:
        for name in ("base_delay", "max_delay", "max_elapsed"):
            object.__setattr__(self, name, as_seconds(getattr(self, name)))
        problems = []
        numbers = {
            "base_delay": self.base_delay,
            "max_delay": self.max_delay,
            "backoff_factor": self.backoff_factor,
            "max_elapsed": self.max_elapsed,
        }
        for name, value in numbers.items():
            if (value is not None or name != "max_elapsed") and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                problems.append(f"{name} must be a number, got {value!r}")
        for name, count in (
            ("max_retries", self.max_retries),
            ("max_unknown_retries", self.max_unknown_retries),
        ):
            if isinstance(count, bool) or not isinstance(count, int):
                problems.append(f"{name} must be an int >= 0, got {count!r}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int | float):
            problems.append(f"jitter must be a fraction in [0, 1], got {self.jitter!r}")
        if problems:  # values of the wrong type cannot be compared below
            raise ValueError("invalid RetryPolicy: " + "; ".join(problems))
        # NaN passes every comparison below (each is False), and infinity makes a wait of no end or
        # a policy that flow.save writes as a spec its loader refuses: both are said here.
        for name, value in numbers.items():
            if value is not None and not math.isfinite(value):
                if name == "max_elapsed" and value > 0:
                    problems.append(f"max_elapsed must be a finite number of seconds, got {value!r}: None is no limit")
                elif name == "max_delay" and value > 0:
                    problems.append(
                        f"max_delay must be a finite number of seconds, got {value!r}: it is the longest "
                        f"wait between two attempts, so give a long one (3600 is an hour)"
                    )
                else:
                    problems.append(f"{name} must be a finite number, got {value!r}")
        if problems:
            raise ValueError("invalid RetryPolicy: " + "; ".join(problems))
        if self.max_retries < 0:
            problems.append(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.max_unknown_retries < 0:
            problems.append("max_unknown_retries must be >= 0")
        if self.base_delay < 0 or self.max_delay < 0:
            problems.append("base_delay and max_delay must be >= 0")
        elif self.base_delay > self.max_delay:
            # Every wait is capped at max_delay: the backoff would never grow, whatever backoff_factor says.
            problems.append(
                f"base_delay={self.base_delay!r} (the first wait) is longer than max_delay={self.max_delay!r} "
                f"(the longest wait), so every wait would be max_delay: lower base_delay to "
                f"{self.max_delay!r} or less, or raise max_delay to {self.base_delay!r} or more"
            )
        if self.backoff_factor < 1:
            problems.append(f"backoff_factor must be >= 1, got {self.backoff_factor!r}")
        if not 0 <= self.jitter <= 1:
            problems.append(f"jitter must be a fraction in [0, 1], got {self.jitter!r}")
        if self.max_elapsed is not None and self.max_elapsed <= 0:
            problems.append(f"max_elapsed must be > 0 or None, got {self.max_elapsed!r}")
        if problems:
            raise ValueError("invalid RetryPolicy: " + "; ".join(problems))

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Wait before retry number ``retry`` (1 for the first retry), jitter included."""
        try:
            raw = self.base_delay * self.backoff_factor ** (retry - 1)
        except OverflowError:  # a huge retry number: the cap applies
            raw = math.inf
        delay = min(raw, self.max_delay)
        if self.jitter:
            delay *= (rng or random).uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return delay

    def server_wait(
        self, asked: float, elapsed: float, rng: random.Random | None = None, left: float | None = None
    ) -> float:
        """The wait before a retry the server asked to put off ``asked`` seconds, ``elapsed``
        seconds after the first attempt: drawn from ``rng`` (the backoff's, so a seeded run repeats
        it) in ``[asked, asked * (1 + jitter)]``, that range cut to end by ``max_elapsed`` (or, when
        it is None, ``max_delay``), and, given ``left`` (seconds to the run's deadline), to take at
        most half the time the deadline leaves beyond ``asked``: the rest is the attempt's, so
        jitter never costs a run a retry the server's own wait left time for. Never below ``asked``."""
        if not self.jitter:
            return asked
        upper = min(
            asked * (1.0 + self.jitter), self.max_delay if self.max_elapsed is None else self.max_elapsed - elapsed
        )
        if left is not None:
            upper = min(upper, asked + (left - asked) / 2)
        # Drawn within the range, never clamped to its end: items clamped alike would wait alike.
        return (rng or random).uniform(asked, upper) if upper > asked else asked

    def wait_refused(self, delay: float, elapsed: float, asked: float | None) -> str | None:
        """Why a retry ``delay`` seconds from now, ``elapsed`` seconds after the first attempt, is
        not made (None when it is). ``asked``: the server's ``Retry-After``, when it set ``delay``."""
        wait = f"the server asked to wait {asked:g} s" if asked is not None else f"the next backoff is {delay:.3g} s"
        if self.max_elapsed is not None:
            if elapsed + delay > self.max_elapsed:
                return (
                    f"{wait}, which would end {elapsed + delay:.4g} s after the first attempt, past the "
                    f"policy's max_elapsed={self.max_elapsed:g} s (raise it to wait that long)"
                )
        elif asked is not None and asked > self.max_delay:
            return (
                f"{wait}, longer than the policy's max_delay={self.max_delay:g} s, the longest wait it "
                f"takes when max_elapsed=None (raise max_delay, or set max_elapsed, to wait that long)"
            )
        return None

    def budget_spent(self, kind: ErrorKind, retries_done: int, *, guessed: bool = False) -> str | None:
        """Why :meth:`allows` refuses a retry of an error of ``kind`` after ``retries_done``
        retries. None when it does not, and when there is nothing to add: an error of unknown kind
        in a step that asked for no retries is no surprise, nor a permanent error whose kind the
        error or the step's classifier says (a 400). ``guessed``: wfkit called the error permanent
        for its type alone (:func:`permanent_by_type`), which a step given retries explains."""
        if kind is ErrorKind.PERMANENT:
            if self.max_retries == 0 or not guessed:
                return None
            # A step given max_retries=3 whose ValueError ran once reads like a bug in the policy.
            return (
                f"the error is permanent, and max_retries={self.max_retries} retries transient errors "
                "(and those of unknown kind) only; if a retry can mend it, say so with the step's "
                "classify= (e.g. classify=lambda exc: 'transient') or raise wf.TransientError"
            )
        if retries_done >= self.max_retries:
            if self.max_retries == 0:
                if kind is ErrorKind.UNKNOWN:
                    return None
                return "the policy's max_retries=0 allows no retry (raise it to retry)"
            return f"the retry budget ran out after {retries_done + 1} attempts: max_retries={self.max_retries} spent"
        if kind is ErrorKind.UNKNOWN and retries_done >= self.max_unknown_retries:
            fix = "raise it, or say what the error is with the step's classify="
            if self.max_unknown_retries == 0:
                return f"the policy's max_unknown_retries=0 allows no retry of an error of unknown kind ({fix})"
            return (
                f"the retry budget for errors of unknown kind ran out after {retries_done + 1} attempts: "
                f"max_unknown_retries={self.max_unknown_retries} spent ({fix})"
            )
        return None

    def allows(self, kind: ErrorKind, retries_done: int) -> bool:
        """Whether another retry is allowed for an error of ``kind`` after ``retries_done``."""
        if kind is ErrorKind.PERMANENT or retries_done >= self.max_retries:
            return False
        return kind is ErrorKind.TRANSIENT or retries_done < self.max_unknown_retries


_POLICY_KEYWORDS = frozenset(f.name for f in dataclasses.fields(RetryPolicy))

# A retry policy's keywords as a person writes them on the step itself, in code
# (``flow.step(max_retries=3)``) or in a spec: RetryPolicy's own, and other libraries' words for its
# first, each with the field it means. Attempts count the first: one more than retries.
ATTEMPT_WORDS = frozenset({"attempts", "max_attempts", "stop_after_attempt"})
RETRY_WORDS: Mapping[str, str] = {
    **{name: name for name in sorted(_POLICY_KEYWORDS)},
    **dict.fromkeys(("retries", "num_retries", "max_retry"), "max_retries"),
    **dict.fromkeys(sorted(ATTEMPT_WORDS), "max_retries"),
}


def retry_field_value(word: str, value: object) -> object:
    """A retry word's value as its RetryPolicy field takes it (``attempts=3`` is ``max_retries=2``)."""
    return value - 1 if word in ATTEMPT_WORDS and type(value) is int and value >= 1 else value


# Keywords of stamina's and tenacity's retry, which a newcomer brings along, and what they mean here.
_MEANT = {
    "attempts": "'max_retries'? attempts=3 is max_retries=2: the retries after the first",
    "stop_after_attempt": "'max_retries'? stop_after_attempt(3) is max_retries=2: the retries after the first",
    "wait_initial": "'base_delay'?",
    "wait_max": "'max_delay'?",
    "wait_jitter": "'jitter'?",
    "wait_exp_base": "'backoff_factor'?",
    "timeout": "'max_elapsed'?",
}


NO_RETRY = RetryPolicy(max_retries=0)
