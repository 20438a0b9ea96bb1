"""Event processors: secrets redacted and large payloads truncated before the journal, the sinks
and the parquet log; exact secret values kept out of stored checkpoints."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.model._approvals import ApprovalPolicy, Ticket, Verdict
from wfkit.model._processors import REDACTED, chain, redact_secrets, redact_text, truncate
from wfkit.store._workspace import DB_NAME
from wfkit.testing import MemorySink


def event(**fields: Any) -> wf.StepEvent:
    return wf.StepEvent(
        run_id="r1", workflow="w", workflow_version="v", step="s", visit=1, attempt=1, status="failed"
    )._replace(**fields)


def fresh_secret() -> str:
    """A value no other test marked (marked secrets are process-wide)."""
    return f"tok-{uuid.uuid4().hex}"


def sql(workspace: Path, statement: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(workspace / DB_NAME)) as conn:
        return conn.execute(statement).fetchall()


# ---- redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-abcdefghijklmnop1234 leaked", f"key {REDACTED} leaked"),
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: {REDACTED}"),
        ("sent bearer abcdefgh12345678 along", f"sent {REDACTED} along"),
        ("GET /v1?api_key=abc123 failed", f"GET /v1?api_key={REDACTED} failed"),
        ('{"api-key": "zzz999", "password": "pw1"}', f'{{"api-key": "{REDACTED}", "password": "{REDACTED}"}}'),
        ("id AKIAABCDEFGHIJKLMNOP used", f"id {REDACTED} used"),
        ("sk-short and bearer abc are not keys", "sk-short and bearer abc are not keys"),
    ],
)
def test_redact_text_removes_key_shaped_strings(text: str, expected: str) -> None:
    """API keys, bearer tokens, key=value secrets and AWS key ids are replaced by [REDACTED]."""
    assert expected == redact_text(text)


def test_redact_secrets_covers_message_comment_and_nested_extra() -> None:
    """The error message, the reviewer's comment and strings nested in extra are all redacted."""
    secret = wf.mark_secret(fresh_secret())
    raw = event(
        error_message=f"login as {secret} failed",
        decision_comment=f"approved, token {secret}",
        extra={"headers": {"Authorization": "Bearer abcdefgh12345678"}, "keys": ["sk-abcdefghijklmnop1234"], "n": 3},
    )
    clean = redact_secrets(raw)
    assert f"login as {REDACTED} failed" == clean.error_message
    assert f"approved, token {REDACTED}" == clean.decision_comment
    assert {"headers": {"Authorization": REDACTED}, "keys": [REDACTED], "n": 3} == clean.extra
    assert raw._replace(error_message=None, decision_comment=None, extra=None) == clean._replace(
        error_message=None, decision_comment=None, extra=None
    )


def test_values_of_key_variables_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The value of $OPENAI_API_KEY is a secret wherever it turns up, whatever its shape."""
    monkeypatch.setenv("OPENAI_API_KEY", "plain-looking-value-42")
    assert (
        f"used {REDACTED} here" == redact_secrets(event(error_message="used plain-looking-value-42 here")).error_message
    )
    monkeypatch.delenv("OPENAI_API_KEY")
    assert "used plain-looking-value-42 here" == redact_text("used plain-looking-value-42 here")


def test_an_event_without_text_is_returned_as_is() -> None:
    """Events with no message, comment or extra pass through untouched (the same object)."""
    plain = event(status="ok")
    assert plain is redact_secrets(plain)
    assert plain is truncate(10)(plain)


def test_mark_secret_refuses_short_values() -> None:
    """A secret shorter than 4 characters (or not a string) would redact ordinary text."""
    with pytest.raises(ValueError, match="at least 4 characters"):
        wf.mark_secret("abc")
    with pytest.raises(ValueError, match="at least 4 characters"):
        wf.mark_secret(12345)  # type: ignore[arg-type]


# ---- truncation and chaining --------------------------------------------------------------------


def test_truncate_cuts_long_text_noting_the_size() -> None:
    """Messages and extra strings over the limit are cut, with their original size noted."""
    cut = truncate(50)(event(error_message="x" * 120, extra={"body": "y" * 100, "short": "ok", "n": 5}))
    assert "x" * 50 + "... [truncated: 120 chars]" == cut.error_message
    assert {
        "body": "y" * 50 + "... [truncated: 100 chars]",
        "short": "ok",
        "n": 5,
        "truncated_chars": {"body": 100},
    } == (cut.extra)


def test_truncate_leaves_short_text_alone() -> None:
    """Text within the limit is unchanged, and no size is noted."""
    short = event(error_message="x" * 50, extra={"body": "y" * 50})
    assert short == truncate(50)(short)


def test_chain_applies_processors_in_order() -> None:
    """chain() of none is None, of one is that one, of several applies them left to right."""

    def mark(tag: str) -> Any:
        return lambda e: e._replace(error_message=(e.error_message or "") + tag)

    first, second = mark("a"), mark("b")
    assert chain([]) is None
    assert first is chain([first])
    combined = chain([first, second])
    assert combined is not None
    assert "xab" == combined(event(error_message="x")).error_message
    both = chain([redact_secrets, truncate(20)])  # redacted first: the size is the redacted one
    assert both is not None
    message = both(event(error_message="sk-abcdefghijklmnop1234 " + "z" * 30)).error_message
    assert f"{REDACTED} {'z' * 9}... [truncated: 41 chars]" == message


# ---- through real runs --------------------------------------------------------------------------


def test_a_durable_run_keeps_a_marked_secret_out_of_journal_log_and_checkpoints(workspace: Path) -> None:
    """A step fails with the secret in its message, then returns state holding it: the sinks,
    the journal, the parquet rows and the stored checkpoint updates never contain it."""
    secret = wf.mark_secret(fresh_secret())
    flow = wf.Workflow("leaky")

    @flow.step(retry=wf.RetryPolicy(max_retries=1, base_delay=0.001, jitter=0))
    def login(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        ctx.record(note=f"using {secret}")
        if ctx.attempt == 1:
            raise ConnectionError(f"login with {secret} refused")
        return {"token": secret, "nested": {"all": [secret, "public"]}}

    @flow.step
    def use(state: Any) -> dict[str, Any]:
        return {"used": True}

    flow.chain("login", "use")
    sink = MemorySink()
    run = flow.run({}, sinks=[sink])
    assert secret == run.state["token"]  # the live state is the step's to use

    assert [f"login with {REDACTED} refused", None, None] == [e.error_message for e in sink.events]
    assert {"note": f"using {REDACTED}"} == sink.events[0].extra
    journal = wf.Workspace().events()
    assert len(sink.events) == len(journal)
    assert not any(secret in repr(e) for e in journal)
    frame = wf.steps()
    assert 3 == len(frame)
    assert not frame.astype(str).apply(lambda col: col.str.contains(secret, regex=False)).any().any()
    updates = [u for (u,) in sql(workspace, "SELECT updates FROM journal WHERE updates IS NOT NULL")]
    assert 2 == len(updates)
    assert not any(secret in u for u in updates)
    assert f'"token":"{REDACTED}"' in updates[0]


def test_the_stored_run_row_keeps_a_marked_secret_out(workspace: Path) -> None:
    """The runs table (final state, error) holds no marked secret either."""
    secret = wf.mark_secret(fresh_secret())
    flow = wf.Workflow("leaky-run-row")
    flow.step(lambda s: {"token": secret}, name="login")

    @flow.step
    def use(state: Any) -> None:
        raise PermissionError(f"{state['token']} was refused")

    flow.chain("login", "use")
    run = flow.run({}, raise_on_error=False)
    assert "failed" == run.status
    info = wf.Workspace().run_info(run.run_id)
    assert secret not in repr(info["state"])
    assert secret not in (info["error"] or "")
    assert not any(secret in repr(row) for row in sql(workspace, "SELECT * FROM runs"))


class CommentingPolicy(ApprovalPolicy):
    """Approves every ticket with a comment that quotes a secret."""

    name = "commenting"

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def decide(self, ticket: Ticket) -> Verdict:
        return Verdict("approve", "alice", f"ok, rotate {self.secret} later")


def test_a_reviewers_comment_is_redacted_in_sinks_and_journal(workspace: Path) -> None:
    """A decision comment quoting a marked secret reaches neither the sinks nor the journal."""
    secret = wf.mark_secret(fresh_secret())
    flow = wf.Workflow("gated")
    flow.step(lambda s: {"sent": True}, name="send", approval="a human signs off")
    sink = MemorySink()
    run = flow.run({}, policy=CommentingPolicy(secret), sinks=[sink])
    assert "succeeded" == run.status
    assert not any(secret in repr(e) for e in sink.events)
    assert not any(secret in repr(e) for e in wf.Workspace().events())


def test_a_workflow_without_processors_still_redacts_what_it_stores(workspace: Path) -> None:
    """Workflow(processors=[]) hands sinks messages as raised (no truncation, no redaction), but the
    store's redaction boundary still keeps the key out of the journal and the parquet log."""
    flow = wf.Workflow("raw", processors=[])
    long = "sk-abcdefghijklmnop1234 " + "z" * 3000

    @flow.step
    def fail(state: Any, ctx: wf.StepContext) -> None:
        ctx.record(body=long)
        raise RuntimeError(long)

    sink = MemorySink()
    flow.run({}, sinks=[sink], raise_on_error=False)
    stored = long.replace("sk-abcdefghijklmnop1234", REDACTED)
    assert [long] == [e.error_message for e in sink.events]
    assert [stored] == [e.error_message for e in wf.Workspace().events()]
    assert [{"body": stored}] == [e.extra for e in wf.Workspace().events()]
    assert [stored] == list(wf.steps()["error_message"])


def test_default_processors_truncate_a_large_error_message(workspace: Path) -> None:
    """By default a 5000-character error message is cut to 2000, its size noted, everywhere."""
    flow = wf.Workflow("loud")

    @flow.step
    def fail(state: Any) -> None:
        raise RuntimeError("e" * 5000)

    flow.run({}, raise_on_error=False)
    expected = "e" * 2000 + "... [truncated: 5000 chars]"
    assert [expected] == [e.error_message for e in wf.Workspace().events()]
    assert [expected] == list(wf.steps()["error_message"])
