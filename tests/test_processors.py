"""Event processors: secrets redacted and large payloads truncated before the journal, the sinks
and the parquet log; exact secret values kept out of stored checkpoints."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

import wfkit as wf
from wfkit.model._approvals import ApprovalPolicy, Ticket, Verdict
from wfkit.model._processors import REDACTED, redact_secrets, redact_text, truncate
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


def test_text_shorter_than_any_secret_is_returned_as_is() -> None:
    """Text shorter than the shortest secret (4 characters) cannot hold one; at 4 a marked secret still goes."""
    wf.mark_secret("Zq7~")
    short = "Zq7"
    assert short is redact_text(short)
    assert "{}" == redact_text("{}")
    assert REDACTED == redact_text("Zq7~")


# ---- truncation --------------------------------------------------------------------------------


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


def test_truncate_cuts_a_long_message_before_why_it_was_not_retried() -> None:
    """The "; not retried: ..." that ends a message is the most useful part: the body is cut to
    the limit and the reason follows the note whole."""
    reason = "; not retried: the server asked to wait 3600 s, past the policy's max_elapsed=300 s"
    cut = truncate(50)(event(error_message="x" * 120 + reason))
    assert "x" * 50 + f"... [truncated: {120 + len(reason)} chars]" + reason == cut.error_message


def test_truncate_keeps_a_message_whose_body_fits_though_its_reason_does_not() -> None:
    """A body within the limit is not cut for the reason's sake: the message stays whole."""
    message = "x" * 40 + "; not retried: the policy's max_retries=0 allows no retry (raise it to retry)"
    assert message == truncate(50)(event(error_message=message)).error_message


def test_truncate_cuts_long_text_after_the_marker_as_body() -> None:
    """Text after "; not retried: " longer than any reason wfkit gives (a message that quotes
    one, then goes on) is cut like any other text."""
    message = "x; not retried: " + "y" * 1200
    assert message[:50] + "... [truncated: 1216 chars]" == truncate(50)(event(error_message=message)).error_message


def test_truncate_leaves_short_text_alone() -> None:
    """Text within the limit is unchanged, and no size is noted."""
    short = event(error_message="x" * 50, extra={"body": "y" * 50})
    assert short == truncate(50)(short)


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
    with pytest.warns(wf.SecretInStateWarning, match="step 'login' wrote state field '(token|nested)'"):
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
    with pytest.warns(wf.SecretInStateWarning):
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


# ---- the one boundary: every persisted or displayed byte ------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "sk-ant-api03-" + "Q" * 24,
        "AIza" + "B" * 35,
        "ghp_" + "c" * 36,
        "github_pat_" + "d" * 40,
        "xoxb-1234567890-abcdefgh",
        "hf_" + "E" * 34,
        "glpat-" + "f" * 20,
    ],
)
def test_provider_key_shapes_are_redacted(secret: str) -> None:
    """API keys of the common providers are replaced by [REDACTED] wherever they sit in text."""
    assert f"used {REDACTED} here" == redact_text(f"used {secret} here")


def test_basic_credentials_are_redacted_but_the_phrase_is_not() -> None:
    """Authorization: Basic base64(user:password) goes; "basic authentication" stays."""
    token = base64.b64encode(b"alice:s3cret-pw").decode()
    assert f"Authorization: {REDACTED}" == redact_text(f"Authorization: Basic {token}")
    assert "basic authentication is enough" == redact_text("basic authentication is enough")


def test_private_key_blocks_are_redacted_raw_and_inside_json() -> None:
    """A PEM private-key block goes whole, as text and as a JSON string with escaped newlines."""
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc==\n-----END RSA PRIVATE KEY-----"
    assert f"key: {REDACTED} end" == redact_text(f"key: {block} end")
    encoded = json.dumps({"pem": block})
    assert {"pem": REDACTED} == json.loads(redact_text(encoded))


def test_credentials_in_urls_are_redacted() -> None:
    """user:password@ in a URL is removed with the scheme, the host stays."""
    assert f"dial {REDACTED}db.internal:5432/x" == redact_text("dial postgres://app:pa55word@db.internal:5432/x")


@pytest.mark.parametrize(
    ("name", "is_secret"),
    [
        ("GITHUB_TOKEN", True),
        ("DB_PASSWORD", True),
        ("STRIPE_SECRET_KEY", True),
        ("MY_API_KEY", True),
        ("TOKENIZERS_PARALLELISM", False),
        ("SSH_KEY_PATH", False),
        ("KEYBOARD_LAYOUT", False),
    ],
)
def test_values_of_key_like_variables_are_secrets(monkeypatch: pytest.MonkeyPatch, name: str, is_secret: bool) -> None:
    """A variable whose name has a part like KEY, TOKEN, SECRET or PASSWORD holds a secret (not its path)."""
    value = f"value-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv(name, value)
    assert (REDACTED if is_secret else value) == redact_text(value)


def test_a_variable_removed_while_the_environment_is_read_does_not_fail_the_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store's writer thread redacts rows: when another thread removes a variable while it reads
    the environment (a KeyError from the read), the read is taken again and the secrets still found."""
    value = f"value-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("ACME_RACE_TOKEN", value)
    real_items = type(os.environ).items
    calls = []

    def items_once_interrupted(self: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("ACME_GONE")  # what a variable removed mid-read raises
        return real_items(self)

    monkeypatch.setattr(type(os.environ), "items", items_once_interrupted)
    monkeypatch.setenv("ACME_OTHER_TOKEN", "x")  # the environment changed: its secrets are read again
    assert REDACTED == redact_text(value)
    assert len(calls) == 2


def test_a_marked_secret_with_quotes_is_redacted_in_its_json_form() -> None:
    """A marked secret that JSON escapes (quotes, backslashes, non-ASCII) is found in stored JSON too."""
    secret = wf.mark_secret(f'pa"ss\\wörd-{uuid.uuid4().hex[:6]}')
    assert {"p": REDACTED} == json.loads(redact_text(json.dumps({"p": secret})))
    assert {"p": REDACTED} == json.loads(redact_text(json.dumps({"p": secret}, ensure_ascii=False)))


def _planted(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """One secret of each kind, with the exact text that must never be stored (the Basic kind: its token)."""
    marked = wf.mark_secret(f"marked-{uuid.uuid4().hex}")
    env_value = f"envval-{uuid.uuid4().hex}"
    monkeypatch.setenv("ACME_SERVICE_TOKEN", env_value)
    basic = base64.b64encode(f"svc:{uuid.uuid4().hex[:10]}".encode()).decode()
    pem_body = f"MIIEpA{uuid.uuid4().hex}"
    return {
        "marked": marked,
        "env": env_value,
        "openai": f"sk-{uuid.uuid4().hex}",
        "anthropic": f"sk-ant-api03-{uuid.uuid4().hex}",
        "aws": "AKIA" + uuid.uuid4().hex[:16].upper(),
        "github": "ghp_" + uuid.uuid4().hex + "abcd",
        "bearer": f"Bearer tok{uuid.uuid4().hex}",
        "basic": f"Basic {basic}",
        "pem": f"-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----",
        "_basic_token": basic,
        "_pem_body": pem_body,
        "_bearer_token": "",
    }


def _needles(planted: dict[str, str]) -> dict[str, str]:
    """What to grep for: each secret's core (a Bearer token without the scheme, a PEM's body)."""
    out = {k: v for k, v in planted.items() if not k.startswith("_") and k not in ("basic", "pem", "bearer")}
    out["basic"] = planted["_basic_token"]
    out["pem"] = planted["_pem_body"]
    out["bearer"] = planted["bearer"].split(" ", 1)[1]
    return out


def _hits(needles: dict[str, str], folders: list[Path]) -> list[str]:
    """Every (file, kind) where a needle's raw bytes occur, parquet files decoded as well."""
    import pyarrow.parquet as pq

    found = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            blobs = [path.read_bytes()]
            if path.suffix == ".parquet":
                blobs.append(str(pq.read_table(path).to_pylist()).encode())
            for kind, needle in needles.items():
                raw = needle.encode()
                escaped = json.dumps(needle)[1:-1].encode()
                if any(raw in blob or escaped in blob for blob in blobs):
                    found.append(f"{path.name}: {kind}")
    return found


def test_planted_secrets_reach_no_file_cassette_report_or_cli_output(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One secret of each kind in inputs, state, an exception, an LLM prompt and reply and a tool's
    arguments: the raw bytes of every workspace file (the -wal included), the cassette, the report
    and the CLI's output hold none of them."""
    from wfkit.cli._cli import main
    from wfkit.llm import Cassette, ChatClient, SimulatedModel, ToolRegistry

    planted = _planted(monkeypatch)
    all_secrets = " ".join(v for k, v in planted.items() if not k.startswith("_"))
    registry = ToolRegistry()

    @registry.tool
    def lookup(query: str, credentials: str) -> dict[str, str]:
        return {"found": query, "echo": credentials}

    sim = SimulatedModel(p50=0.001, p99=0.002, seed=1, reply=lambda messages: f"you said: {_text(messages)}")
    cassette_path = tmp_path / "cassettes" / "secrets.jsonl"
    client = ChatClient(model="simulated", transport=Cassette(cassette_path, mode="record", transport=sim))

    flow = wf.Workflow("leaky")

    @flow.step(tools=["lookup"])
    async def ask(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        reply = await ctx.llm.complete(f"please keep {state['creds']} safe")
        hit = await ctx.tool("lookup", query="q", credentials=state["creds"])
        return {"reply": reply.text, "hit": hit, "copy": state["creds"], "pair": (state["creds"], 1)}

    @flow.step(approval=wf.Approval("check the secrets", payload=["copy"]))
    def gated(state: Any) -> dict[str, Any]:
        raise RuntimeError(f"leaking {state['copy']}")

    flow.chain("ask", "gated")
    with pytest.warns(wf.SecretInStateWarning):  # in its inputs and a step's updates: said, and not stored
        run = flow.run({"creds": all_secrets}, llm=client, tools=registry, policy="halt")
    assert "waiting_approval" == run.status
    [ticket] = run.tickets()
    with pytest.warns(wf.SecretInStateWarning, match="resuming run"):  # what it reads in their place
        ticket.approve(by="ana", comment=f"approved; token was {planted['bearer']}")  # resumes the run
    done = flow.resume(run.run_id, llm=client, tools=registry, raise_on_error=False)  # waits for it
    assert "failed" == done.status

    report_dir = tmp_path / "report"
    assert 0 == main(["report", "--out", str(report_dir)])
    assert 0 == main(["show", run.run_id, "--json"])
    assert 0 == main(["runs", "--json"])
    assert 0 == main(["pending", "--json"])
    out = capsys.readouterr()
    assert (workspace / "wfkit.db-wal").exists()  # the store is open: the WAL is there to be read
    needles = _needles(planted)
    assert [] == _hits(needles, [workspace, cassette_path.parent, report_dir])
    assert [] == [kind for kind, needle in needles.items() if needle in out.out or needle in out.err]
    # The run did record what happened, redacted: the prompt reached the model and the cassette.
    assert REDACTED in cassette_path.read_text()


def _text(messages: list[dict[str, Any]]) -> str:
    return " ".join(str(m.get("content")) for m in messages)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: BEARER abcdefgh12345678",
        "API_KEY=abc123",
        "PassWord: hunter22",
        "Client-Secret: s3cr3tv4lue",
        "auth BASIC dXNlcjpwYXNzd29yZA==",
        "see https://ann:pw123@example.org/x",
        "key sk-abcdefghijklmnop1234",
    ],
)
def test_short_and_long_text_are_redacted_alike(text: str) -> None:
    """A secret in short text (one precompiled scan for hints) is redacted as in long text (the separate checks)."""
    padding = " filler" * 60  # past the one-scan length
    short, long_ = redact_text(text), redact_text(text + padding)
    assert REDACTED in short
    assert short + padding == long_


def test_short_text_without_hints_comes_back_unchanged() -> None:
    """Short text holding no hint of a secret is returned as it was (the same object: nothing was copied)."""
    text = '{"answer":42,"label":"billing"}'
    assert text is redact_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: BEARER abcdefgh12345678",
        "PassWord: hunter22",
        "auth BASIC dXNlcjpwYXNzd29yZA==",
        "key sk-abcdefghijklmnop1234",
        "Größe PASSWORD=hunter22",  # not ASCII: the case-ignoring scan
        "clé: sk-abcdefghijklmnop1234",
    ],
)
def test_ascii_and_other_text_reach_the_same_redaction(text: str) -> None:
    """Whether the hints are looked for in lowercased ASCII or by the case-ignoring scan, text with a
    secret is redacted exactly as the scan (the full check) redacts it."""
    from wfkit.model import _processors

    assert _processors._ANY_HINT.search(text) is not None  # the scan finds a hint: the full check runs
    assert REDACTED in redact_text(text)


def test_ascii_text_without_hints_comes_back_unchanged_at_any_length() -> None:
    """ASCII text of any length with no hint of a secret is returned as it was, not copied."""
    for text in ('{"answer":42}', '{"answer":"' + "x" * 5000 + '"}'):
        assert text is redact_text(text)


def test_a_secret_written_into_durable_state_is_warned_about_as_it_is_written_and_on_resume(workspace: Path) -> None:
    """The checkpoint never keeps a secret, so a resumed run reads [REDACTED] in its place: that is
    said when the step writes it and again when the run resumes, naming the field (a resume turned a
    database URL into '[REDACTED]db:5432/app' without a word)."""
    url = "postgres://user:hunter2pass@db:5432/app"
    flow = wf.Workflow("secret-in-state")
    flow.step(lambda s: {"db_url": url, "region": "eu"}, name="get")
    flow.step(lambda s: {"used": s["db_url"]}, name="use", approval="a human checks the connection")
    flow.chain("get", "use")
    with pytest.warns(wf.SecretInStateWarning, match=r"step 'get' wrote state field 'db_url' holding a secret"):
        run = flow.run({}, policy="halt")
    assert "waiting_approval" == run.status
    assert url == run.state["db_url"]  # the live state is the step's to use
    wf.Workspace().approve(run.tickets()[0], by="ana", resume=False)
    with pytest.warns(wf.SecretInStateWarning, match=rf"resuming run {run.run_id}: step 'get' wrote 'db_url' as"):
        resumed = flow.resume(run.run_id)
    assert "succeeded" == resumed.status
    assert REDACTED in resumed.state["used"]
    assert "eu" == resumed.state["region"]


def test_a_run_in_memory_keeps_its_secrets_and_warns_of_nothing() -> None:
    """Nothing is stored, so nothing is lost: no warning (the suite turns warnings into errors)."""
    flow = wf.Workflow("secret-in-memory")
    flow.step(lambda s: {"db_url": "postgres://user:hunter2pass@db:5432/app"}, name="get")
    assert "hunter2pass" in flow.run({}, workspace=False).state["db_url"]


def test_secret_inputs_of_a_durable_run_are_warned_about() -> None:
    """Inputs are stored as the run's row: a secret in them is said too, with the field."""
    flow = wf.Workflow("secret-inputs")
    flow.step(lambda s: {"n": 1}, name="one")
    with pytest.warns(wf.SecretInStateWarning, match=r"the run's inputs: state field 'auth'"):
        flow.run({"auth": "Bearer abcdefghijklmnop", "q": "x"})


def test_a_secret_in_the_state_warns_once_at_the_steps_def(workspace: Path) -> None:
    """The warning pointed at a line of wfkit's attempt runner and printed
    `out.encoded = encode_updates(spec.name, result)` under it. It now points at the step's `def`
    line (not its decorator's), which Python prints instead, and its default filter says it once
    for a batch of runs, not once per run."""
    import inspect
    import warnings

    flow = wf.Workflow("keys")

    @flow.step
    def login(state: Any) -> dict[str, Any]:
        return {"token": "sk-" + "a1b2c3d4e5" * 4}  # shaped like an API key

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        flow.run_many([{}, {}, {}], progress=False)
    secrets = [w for w in caught if issubclass(w.category, wf.SecretInStateWarning)]
    assert 1 == len(secrets)
    lines, first = inspect.getsourcelines(login)
    assert (__file__, first + 1) == (secrets[0].filename, secrets[0].lineno)  # the def, below @flow.step
    assert lines[1].lstrip().startswith("def login(")
