"""Event processors: plain functions ``event -> event`` that run before any sink or the journal.

The defaults redact secrets (API keys, Authorization headers, values marked with
:func:`mark_secret`, and the values of well-known key variables in the environment) and truncate
large payloads, noting their size. A processor is any callable; compose them in a list.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from wfkit.model._events import StepEvent
from wfkit.model._retry import NOT_RETRIED

Processor: TypeAlias = Callable[[StepEvent], StepEvent]

REDACTED = "[REDACTED]"
MAX_TEXT = 2000
# wfkit's reasons for making no retry (RetryPolicy.budget_spent, wait_refused) are one sentence,
# under 250 characters: longer text after "; not retried: " is a message's own, cut as its body.
_LONGEST_REASON = 500

# Environment variables whose values are secrets wherever they turn up: these names, and any name
# with a part that says so (OPENAI_API_KEY, GITHUB_TOKEN, DB_PASSWORD; not TOKENIZERS_PARALLELISM).
_KEY_VARIABLES = ("WFKIT_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY")
_KEY_NAME_PARTS = frozenset({"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"})
# ... but a variable that names where a key lives (a path, a file) holds no secret itself.
_NOT_KEY_NAME_PARTS = frozenset({"PATH", "FILE", "DIR", "URL", "HOST", "PORT", "ID", "NAME", "USER", "TYPE"})
_MIN_ENV_SECRET = 8  # shorter values ("1", "true") would mangle ordinary text
# The shortest text anything below can change: a marked secret has at least this many characters
# (as JSON stores it too), every key shape and key=value pair more. Shorter text (the "{}" of a step
# that wrote nothing, a journal column's "[]") is returned as it is without a look at the secrets.
_SHORTEST_SECRET = 4

# Key-shaped strings: provider API keys, credentials in Authorization headers, private-key blocks,
# and key=value pairs whose key says it is a secret. One alternation, so clean text costs one scan.
_SHAPES = (
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)",
    r"\bsk-ant-[A-Za-z0-9_\-]{16,}",  # Anthropic
    r"\bsk-[A-Za-z0-9_\-]{16,}",  # OpenAI and compatible servers
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key ids
    r"\bAIza[0-9A-Za-z_\-]{35}",  # Google API keys
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face tokens
    r"\bglpat-[A-Za-z0-9_\-]{20,}",  # GitLab tokens
    r"\b[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._~+/\-]{8,}=*",  # Authorization: Bearer ...
    r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@\"']+:[^\s@/\"']+@",  # user:password@ in a URL
)
_SHAPE = re.compile("|".join(f"(?:{p})" for p in _SHAPES), re.DOTALL)
# Literals one of which every shape contains: substring tests are far cheaper than the regex, and
# most text holds none of them.
_SHAPE_HINTS = (
    "PRIVATE KEY",
    "sk-",
    "AKIA",
    "AIza",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "hf_",
    "glpat-",
    "://",
)
_PAIR_HINTS = ("key", "authorization", "token", "secret", "passw")
# Every hint above in one precompiled scan (the words with their case ignored, as the checks below
# do): short text, most of what is stored (a step's updates, a journal column), holding none of them
# is clean after one scan. On long text a case-ignoring alternation is slower than the separate
# substring tests, so it gets those.
_ANY_HINT = re.compile(
    "|".join(map(re.escape, _SHAPE_HINTS)) + "|(?i:bearer|basic|" + "|".join(map(re.escape, _PAIR_HINTS)) + ")"
)
_ONE_SCAN_UP_TO = 256
_LOWER_HINTS = tuple(sorted({h.lower() for h in (*_SHAPE_HINTS, "bearer", "basic", *_PAIR_HINTS)}))
# Authorization: Basic base64(user:password): only when it decodes to a pair ("basic authentication" stays).
_BASIC = re.compile(r"(?i)\bbasic\s+([A-Za-z0-9+/]{6,}={0,2})")
# key=value / "key": "value" pairs whose key says it is a secret: the value goes, the key stays.
_PAIR = re.compile(
    r"(?i)((?:api[_-]?key|authorization|access[_-]?token|refresh[_-]?token|client[_-]?secret|secret|password|passwd)"
    r"[\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])[^\s\"',}&]+"
)

_marked: set[str] = set()
_lock = threading.Lock()
_env_names: dict[str, bool] = {}  # a variable's name -> whether its value is a secret (names rarely change)
_key_names: list[str] = []  # the names among them whose values are secrets


def mark_secret(value: str) -> str:
    """Mark a value as secret: it is replaced by [REDACTED] in every event, checkpoint, cassette,
    report and CLI output from now on (in this process)."""
    if not isinstance(value, str) or len(value) < _SHORTEST_SECRET:
        raise ValueError(f"a secret to redact must be a string of at least {_SHORTEST_SECRET} characters")
    global _marked_version
    with _lock:
        if value not in _marked:
            _marked.add(value)
            _marked_version += 1
    return value


def _names_a_secret(name: str) -> bool:
    """Whether a variable's or a header's name says its value is a secret (API_KEY, x-api-key)."""
    parts = set(name.upper().replace("-", "_").split("_"))
    return bool(parts & _KEY_NAME_PARTS) and not parts & _NOT_KEY_NAME_PARTS


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """The secret values among HTTP ``headers``: those of Authorization (and Proxy-Authorization)
    and of any header whose name says it holds a key (``api-key``, ``x-api-key``, ``X-Auth-Token``);
    of ``Bearer KEY`` (or ``Basic``, ``Token``) only the credential: the scheme is no secret, and
    says what was hidden. A ``Cookie`` or ``Set-Cookie`` is a session's credential: the whole
    header, and each cookie's value (a Set-Cookie's attributes are none) of 8 characters or more:
    a shorter one ("en", "dark") is no session and would blank that word wherever it appears."""
    found = []
    for name, value in headers.items():
        if value and name.lower() in ("cookie", "set-cookie"):
            pairs = value.split(";") if name.lower() == "cookie" else value.split(";")[:1]
            values = (pair.partition("=")[2].strip().strip('"') for pair in pairs)
            found += [value, *(v for v in values if len(v) >= _MIN_ENV_SECRET)]
        elif value and (name.lower() in ("authorization", "proxy-authorization") or _names_a_secret(name)):
            scheme, _, token = value.partition(" ")
            found.append(token.strip() if token.strip() and scheme.lower() in ("bearer", "basic", "token") else value)
    return found


def _is_key_name(name: str) -> bool:
    known = _env_names.get(name)
    if known is None:
        known = name in _KEY_VARIABLES or _names_a_secret(name)
        _env_names[name] = known
        if known:
            _key_names.append(name)
    return known


# The list is rebuilt only when a secret is marked or the environment's key-like values change:
# every stored row passes through here, so it must cost next to nothing.
_cache: tuple[Any, tuple[str, ...]] = (None, ())
_marked_version = 0


def _secrets() -> tuple[str, ...]:
    global _cache
    environ = os.environ
    stamp = (_marked_version, len(environ), tuple(map(environ.get, _key_names)))
    if stamp == _cache[0]:
        return _cache[1]
    # The store's writer thread redacts the rows it writes: another thread may set or remove a
    # variable while this one reads them (a removed one raises KeyError), and the read is taken again.
    for _ in range(99):
        try:
            variables = list(environ.items())
            break
        except (RuntimeError, KeyError):
            continue
    else:
        variables = list(environ.items())
    found = [
        value
        for name, value in variables
        if _is_key_name(name) and len(value) >= _MIN_ENV_SECRET and not value.startswith(("/", "~", "."))
    ]
    with _lock:
        values = {*_marked, *found}
    # As JSON stores it too: a secret with a quote, a backslash or non-ASCII text is escaped there.
    values |= {json.dumps(v)[1:-1] for v in values} | {json.dumps(v, ensure_ascii=False)[1:-1] for v in values}
    secrets = tuple(sorted(values, key=len, reverse=True))
    # Stamped after the scan, so names first classified just now are watched too.
    _cache = ((_marked_version, len(environ), tuple(map(environ.get, _key_names))), secrets)
    return secrets


def redact_text(text: str) -> str:
    """The redaction boundary for one piece of text (or stored JSON): known secret values, then
    key-shaped strings. What it puts in place never breaks the JSON it is applied to."""
    if len(text) < _SHORTEST_SECRET:
        return text
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    if text.isascii():
        # Most stored text (a step's updates, a journal column): one lowercasing and a substring
        # test per hint, all in C, clear it at a fifth of the regex's cost. For ASCII text, the
        # lowercase hints found in the lowercased text are a superset of what ``_ANY_HINT`` finds
        # (its case-ignoring part folds more than ``lower`` does only for non-ASCII letters).
        if not any(map(text.lower().__contains__, _LOWER_HINTS)):
            return text
    elif len(text) <= _ONE_SCAN_UP_TO and _ANY_HINT.search(text) is None:
        return text
    lower = text.lower()
    if any(hint in text for hint in _SHAPE_HINTS) or "bearer" in lower:
        text = _SHAPE.sub(REDACTED, text)
    if "basic" in lower:
        text = _BASIC.sub(_basic_credentials, text)
    if any(hint in lower for hint in _PAIR_HINTS):
        text = _PAIR.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def _basic_credentials(match: re.Match[str]) -> str:
    token = match.group(1)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return REDACTED if b":" in decoded else match.group(0)


def redact_optional(text: str | None) -> str | None:
    """:func:`redact_text` for a nullable column."""
    return None if text is None else redact_text(text)


def redact_deep(value: Any) -> Any:
    """:func:`redact_text` over every string in a structure (keys included)."""
    return _deep(value, redact_text)


def _deep(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {(fn(k) if isinstance(k, str) else k): _deep(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep(v, fn) for v in value]
    return value


# The built-in processors, which change only a row's text (error message, decision comment,
# extra): a row without any returns unchanged, so the engine need not call them for it.
_TEXT_ONLY: weakref.WeakSet[Processor] = weakref.WeakSet()


def only_text(processors: Iterable[Processor]) -> bool:
    """Whether every processor leaves a row that has no error message, decision comment or extra
    as it is (true of the built-in ones; a user's processor may do anything)."""
    return all(p in _TEXT_ONLY for p in processors)


def redact_secrets(event: StepEvent) -> StepEvent:
    """Processor: redact secrets in the error message, the reviewer's comment and ``extra``."""
    if event.error_message is None and event.decision_comment is None and event.extra is None:
        return event  # the common case, kept cheap
    return event._replace(
        error_message=None if event.error_message is None else redact_text(event.error_message),
        decision_comment=None if event.decision_comment is None else redact_text(event.decision_comment),
        extra=None if event.extra is None else _deep(event.extra, redact_text),
    )


def truncate(limit: int = MAX_TEXT) -> Processor:
    """Processor factory: cut long text in the error message and ``extra``, noting the size. An
    error message's body is cut, never why its error was not retried (the ``"; not retried: ..."``
    that ends it): that is what its reader most needs."""

    def cut(text: str) -> str:
        if len(text) <= limit:
            return text
        return f"{text[:limit]}... [truncated: {len(text)} chars]"

    def cut_message(message: str) -> str:
        body, marker, reason = message.rpartition(NOT_RETRIED)
        if not marker or len(reason) > _LONGEST_REASON:  # none, or no reason of wfkit's: all body
            return cut(message)
        if len(body) <= limit:
            return message
        return f"{body[:limit]}... [truncated: {len(message)} chars]{marker}{reason}"

    def truncate_event(event: StepEvent) -> StepEvent:
        if event.error_message is None and event.extra is None:
            return event
        message = event.error_message
        if message is not None and len(message) > limit:
            message = cut_message(message)
        extra = event.extra
        if extra is not None:
            sizes = {k: len(v) for k, v in extra.items() if isinstance(v, str) and len(v) > limit}
            if sizes:
                extra = {**_deep(extra, cut), "truncated_chars": sizes}
        return event._replace(error_message=message, extra=extra)

    _TEXT_ONLY.add(truncate_event)
    return truncate_event


_TEXT_ONLY.add(redact_secrets)
DEFAULT_PROCESSORS: tuple[Processor, ...] = (redact_secrets, truncate())
