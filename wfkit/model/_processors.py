"""Event processors: plain functions ``event -> event`` that run before any sink or the journal.

The defaults redact secrets (API keys, Authorization headers, values marked with
:func:`mark_secret`, and the values of well-known key variables in the environment) and truncate
large payloads, noting their size. A processor is any callable; compose them in a list.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from wfkit.model._events import StepEvent

Processor: TypeAlias = Callable[[StepEvent], StepEvent]

REDACTED = "[REDACTED]"
MAX_TEXT = 2000

# Values of these environment variables are secrets wherever they turn up.
_KEY_VARIABLES = ("WFKIT_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY")

_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),  # OpenAI-style keys
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"),  # Authorization: Bearer ...
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    # key=value / "key": "value" pairs whose key says it is a secret
    re.compile(
        r"(?i)((?:api[_-]?key|authorization|access[_-]?token|secret|password)[\"']?\s*[:=]\s*[\"']?)"
        r"[^\s\"',}]+"
    ),
]

_marked: set[str] = set()
_lock = threading.Lock()


def mark_secret(value: str) -> str:
    """Mark a value as secret: it is replaced by [REDACTED] in every event and checkpoint."""
    if not isinstance(value, str) or len(value) < 4:
        raise ValueError("a secret to redact must be a string of at least 4 characters")
    with _lock:
        _marked.add(value)
    return value


def secret_values() -> list[str]:
    """The exact values to redact now: marked secrets and well-known key variables' values."""
    return _secrets()


def _secrets() -> list[str]:
    found = [v for v in (os.environ.get(name) for name in _KEY_VARIABLES) if v and len(v) >= 4]
    return sorted({*_marked, *found}, key=len, reverse=True)


def redact_text(text: str) -> str:
    """Remove known secret values and key-shaped strings from a piece of text."""
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    for i, pattern in enumerate(_PATTERNS):
        if i == len(_PATTERNS) - 1:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact_values(text: str, secrets: Iterable[str]) -> str:
    """Replace exact secret values in stored JSON such as checkpointed state (no patterns: state
    is data, and a pattern could mangle it)."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _deep(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _deep(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep(v, fn) for v in value]
    return value


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
    """Processor factory: cut long text in the error message and ``extra``, noting the size."""

    def cut(text: str) -> str:
        if len(text) <= limit:
            return text
        return f"{text[:limit]}... [truncated: {len(text)} chars]"

    def truncate_event(event: StepEvent) -> StepEvent:
        if event.error_message is None and event.extra is None:
            return event
        message = event.error_message
        if message is not None and len(message) > limit:
            message = cut(message)
        extra = event.extra
        if extra is not None:
            sizes = {k: len(v) for k, v in extra.items() if isinstance(v, str) and len(v) > limit}
            if sizes:
                extra = {**_deep(extra, cut), "truncated_chars": sizes}
        return event._replace(error_message=message, extra=extra)

    return truncate_event


DEFAULT_PROCESSORS: tuple[Processor, ...] = (redact_secrets, truncate())


def chain(processors: Iterable[Processor]) -> Processor | None:
    """One callable applying ``processors`` in order (None when there are none)."""
    steps = tuple(processors)
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def apply(event: StepEvent) -> StepEvent:
        for processor in steps:
            event = processor(event)
        return event

    return apply
