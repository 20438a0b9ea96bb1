"""Tests for wfkit.llm._cassette: record replies from a real local server, replay them with it stopped."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import LLMServer

import wfkit as wf
from wfkit.llm._cassette import Cassette, CassetteMissError
from wfkit.llm._llm import ChatClient, LLMStatusError, Reply
from wfkit.llm._simulated import SimulatedModel
from wfkit.testing import test_mode

KEY = "sk-cassette-secret-42"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer(api_key=KEY) as srv:
        yield srv


def ask(url: str, cassette: Cassette, *prompts: str, **kwargs: Any) -> list[Reply]:
    """Complete each prompt in turn through the cassette, in one event loop."""

    async def main() -> list[Reply]:
        async with ChatClient(url, model="test-model", api_key=KEY, transport=cassette) as client:
            return [await client.complete(p, **kwargs) for p in prompts]

    return asyncio.run(main())


def miss_of(url: str, cassette: Cassette, prompt: str) -> CassetteMissError:
    with pytest.raises(CassetteMissError) as info:
        ask(url, cassette, prompt)
    return info.value


def test_record_then_replay_with_the_server_stopped(tmp_path: Path) -> None:
    """Replies recorded from the server replay identically after it is gone."""
    path = tmp_path / "c.jsonl"
    with LLMServer(api_key=KEY) as srv:
        url = srv.url
        recorded = ask(url, Cassette(path, mode="record"), "first", "second")
    replayed = ask(url, Cassette(path, mode="replay"), "first", "second")
    assert [(r.text, r.tokens_in, r.tokens_out) for r in recorded] == [
        (r.text, r.tokens_in, r.tokens_out) for r in replayed
    ]
    assert 2 == len(path.read_text().splitlines())


def test_one_readable_interaction_per_line(server: LLMServer, tmp_path: Path) -> None:
    """Each line holds the method, path and JSON body of the request and the status and body of the reply."""
    path = tmp_path / "c.jsonl"
    ask(server.url, Cassette(path, mode="record"), "hi", temperature=0)
    (line,) = path.read_text().splitlines()
    item = json.loads(line)
    assert {
        "method": "POST",
        "path": "/v1/chat/completions",
        "body": {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0},
    } == item["request"]
    assert (200, {"content-type": "application/json"}) == (item["response"]["status"], item["response"]["headers"])
    assert "reply to: hi" == item["response"]["json"]["choices"][0]["message"]["content"]


def test_keys_never_reach_the_cassette(server: LLMServer, tmp_path: Path) -> None:
    """No request header is stored, and the key is redacted even where a prompt carries it."""
    path = tmp_path / "c.jsonl"
    ask(server.url, Cassette(path, mode="record"), f"my key is {KEY}")
    text = path.read_text()
    assert KEY not in text
    assert "authorization" not in text.lower()
    assert "my key is [REDACTED]" in text
    assert f"Bearer {KEY}" == server.requests[-1]["headers"]["Authorization"]  # the server did get it


def test_a_miss_shows_the_nearest_request_and_what_differs(server: LLMServer, tmp_path: Path) -> None:
    """Replaying an unrecorded request names the closest recording, its line, and the differing field."""
    path = tmp_path / "c.jsonl"
    ask(server.url, Cassette(path, mode="record"), "Classify: weather today", "Classify: I want a refund")
    exc = miss_of(server.url, Cassette(path, mode="replay"), "Classify: I want a refund now")
    message = str(exc)
    assert "no recording of this POST /v1/chat/completions request (2 recorded)" in message
    assert "Nearest is line 2" in message
    assert 'body.messages[0].content: recorded "Classify: I want a refund", now "Classify: I want a refund now"' in (
        message
    )
    assert "mode='auto'" in message
    assert "Classify: I want a refund" == exc.nearest["body"]["messages"][0]["content"]  # type: ignore[index]
    assert wf.ErrorKind.PERMANENT == wf.classify_error(exc)
    assert 2 == len(server.requests)  # replay never touched the network


def test_a_miss_names_added_and_missing_fields(server: LLMServer, tmp_path: Path) -> None:
    """A parameter present on one side only is reported as such."""
    path = tmp_path / "c.jsonl"
    ask(server.url, Cassette(path, mode="record"), "hi", temperature=0.5)
    message = str(miss_of(server.url, Cassette(path, mode="replay"), "hi"))
    assert "body.temperature: recorded 0.5, missing now" in message


def test_replay_of_a_missing_file_says_how_to_record(tmp_path: Path) -> None:
    """A cassette that was never recorded says so, and how to record it."""
    exc = miss_of("http://127.0.0.1:9/v1", Cassette(tmp_path / "none.jsonl"), "hi")
    assert "does not exist" in str(exc)
    assert "mode='auto'" in str(exc)


def test_auto_records_misses_and_replays_hits(tmp_path: Path) -> None:
    """auto forwards what is new and records it; what is recorded replays without the server."""
    path = tmp_path / "c.jsonl"
    with LLMServer(api_key=KEY) as srv:
        url = srv.url
        ask(url, Cassette(path, mode="auto"), "one")
        ask(url, Cassette(path, mode="auto"), "one", "two")
        assert 2 == len(srv.requests)  # "one" came from the cassette the second time
    assert ["reply to: one", "reply to: two"] == [r.text for r in ask(url, Cassette(path, mode="auto"), "one", "two")]


def test_auto_with_the_endpoint_down_says_the_cassette_has_no_recording_too(tmp_path: Path) -> None:
    """A request auto mode has no recording of, with the endpoint down, fails saying both: the
    endpoint could not be reached (transient, worth a retry) and the cassette had no recording of
    it, with the nearest recorded one; before, it said only "could not reach ...", as if the
    cassette had not been asked."""
    from wfkit.llm._llm import LLMConnectionError

    path = tmp_path / "c.jsonl"
    with LLMServer(api_key=KEY) as srv:
        url = srv.url
        ask(url, Cassette(path, mode="auto"), "one")
    assert ["reply to: one"] == [r.text for r in ask(url, Cassette(path, mode="auto"), "one")]
    with pytest.raises(LLMConnectionError) as info:
        ask(url, Cassette(path, mode="auto"), "two")
    message = str(info.value)
    assert message.startswith(f"could not reach {url}/chat/completions for model 'test-model' (ConnectError: "), message
    assert f"and cassette {path} has no recording of this POST /v1/chat/completions request (1 recorded)" in message
    assert 'body.messages[0].content: recorded "one", now "two"' in message
    assert message.endswith("start the endpoint and run again: mode='auto' records the request then"), message
    assert wf.ErrorKind.TRANSIENT == wf.classify_error(info.value)


def test_record_mode_starts_the_file_afresh(server: LLMServer, tmp_path: Path) -> None:
    """Recording again replaces the old recordings instead of adding to them."""
    path = tmp_path / "c.jsonl"
    ask(server.url, Cassette(path, mode="record"), "old")
    ask(server.url, Cassette(path, mode="record"), "new")
    assert ["new"] == [
        json.loads(x)["request"]["body"]["messages"][0]["content"] for x in path.read_text().splitlines()
    ]


def test_a_pickled_cassette_replays_the_same_file(tmp_path: Path) -> None:
    """A copy of a replay cassette (as a Dask worker gets) reads the file at the same path afresh."""
    import pickle

    path = tmp_path / "c.jsonl"
    with LLMServer(api_key=KEY) as srv:
        url = srv.url
        ask(url, Cassette(path, mode="record"), "one", "two")
    cassette = Cassette(path, mode="replay", secrets=["opaque-extra-secret"])
    assert ["reply to: one"] == [r.text for r in ask(url, cassette, "one")]
    copy = pickle.loads(pickle.dumps(cassette))
    assert (path, "replay", repr(cassette)) == (copy.path, copy.mode, repr(copy))
    assert ["reply to: one", "reply to: two"] == [r.text for r in ask(url, copy, "one", "two")]


def test_a_pickled_record_cassette_appends_instead_of_starting_afresh(server: LLMServer, tmp_path: Path) -> None:
    """Copies of one record cassette (a partition each) append to the file: none erases another's lines,
    and the key stays out of it."""
    import pickle

    path = tmp_path / "c.jsonl"
    cassette = Cassette(path, mode="record")
    for prompt in ("first", "second"):
        ask(server.url, pickle.loads(pickle.dumps(cassette)), prompt)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert ["first", "second"] == [x["request"]["body"]["messages"][0]["content"] for x in lines]
    assert KEY not in path.read_text()


def test_repeated_requests_replay_in_recorded_order(tmp_path: Path) -> None:
    """The same request recorded twice replays both replies in order, then the last again."""
    path = tmp_path / "c.jsonl"
    replies = iter(["A", "B"])
    sim = SimulatedModel(p50=0, p99=0, reply=lambda messages: next(replies))
    ask("http://sim/v1", Cassette(path, mode="record", transport=sim), "same", "same")
    assert ["A", "B", "B"] == [r.text for r in ask("http://sim/v1", Cassette(path), "same", "same", "same")]


def test_only_successful_replies_are_recorded(server: LLMServer, tmp_path: Path) -> None:
    """A 429 during recording is retried by the run but not stored, so replay succeeds at once."""
    path = tmp_path / "c.jsonl"
    server.script(("429", 1), "ok")
    flow = wf.Workflow("ask")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01))
    async def ask_step(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete("q", ctx=ctx)).text}

    def client(mode: str) -> ChatClient:
        return ChatClient(server.url, model="test-model", api_key=KEY, transport=Cassette(path, mode=mode))  # type: ignore[arg-type]

    with test_mode():
        recorded = flow.run({}, workspace=False, llm=client("record"))
        replayed = flow.run({}, workspace=False, llm=client("replay"))
    assert ["retry", "ok"] == [e.status for e in recorded.events]
    assert ["ok"] == [e.status for e in replayed.events]
    assert 1 == len(path.read_text().splitlines())
    assert (recorded.events[-1].tokens_in, recorded.events[-1].cost_usd) == (
        replayed.events[-1].tokens_in,
        replayed.events[-1].cost_usd,
    )


@pytest.mark.parametrize("cut", [("cut_at_close", 40), "malformed"])
def test_a_reply_cut_short_is_not_recorded_so_the_retry_records_the_whole_one(
    server: LLMServer, tmp_path: Path, cut: Any
) -> None:
    """A 200 whose JSON was cut short was recorded as it came, and in "auto" mode the step's retry
    replayed that cut reply again: the retry now reaches the endpoint, and only the whole reply is
    recorded and replayed."""
    path = tmp_path / "c.jsonl"
    server.script(cut, "ok")
    flow = wf.Workflow("ask")

    @flow.step(retry=wf.RetryPolicy(max_retries=2, base_delay=0.01))
    async def ask_step(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        return {"answer": (await ctx.llm.complete("q", ctx=ctx)).text}

    def client(mode: str) -> ChatClient:
        return ChatClient(server.url, model="test-model", api_key=KEY, transport=Cassette(path, mode=mode))  # type: ignore[arg-type]

    with test_mode():
        recorded = flow.run({}, workspace=False, llm=client("auto"))
        replayed = flow.run({}, workspace=False, llm=client("replay"))
    assert (["retry", "ok"], 2) == ([e.status for e in recorded.events], len(server.requests))
    assert ["ok"] == [e.status for e in replayed.events]
    assert recorded.state["answer"] == replayed.state["answer"] == "reply to: q"
    assert 1 == len(path.read_text().splitlines())


def test_errors_pass_through_while_recording(server: LLMServer, tmp_path: Path) -> None:
    """In record mode an HTTP error reaches the caller unchanged and leaves the file alone."""
    path = tmp_path / "c.jsonl"
    server.script(("status", 400))
    with pytest.raises(LLMStatusError) as info:
        ask(server.url, Cassette(path, mode="record"), "bad")
    assert 400 == info.value.status_code
    assert not path.exists()


def test_streams_are_recorded_and_replayed(tmp_path: Path) -> None:
    """A streamed reply is stored as its event stream and replays chunk by chunk."""
    path = tmp_path / "c.jsonl"

    async def stream(url: str, cassette: Cassette) -> tuple[list[str], Reply | None]:
        client = ChatClient(url, model="test-model", api_key=KEY, transport=cassette)
        async with client, client.stream("x y") as s:
            return [t async for t in s], s.reply

    with LLMServer(api_key=KEY) as srv:
        url = srv.url
        live = asyncio.run(stream(url, Cassette(path, mode="record")))
    replayed = asyncio.run(stream(url, Cassette(path)))
    assert live[0] == replayed[0]
    assert live[1] is not None
    assert replayed[1] is not None
    assert (live[1].text, live[1].tokens_out) == (replayed[1].text, replayed[1].tokens_out)
    assert "text/event-stream" in path.read_text()


def test_a_stream_framed_over_several_data_lines_records_and_replays_byte_for_byte(tmp_path: Path) -> None:
    """A stream whose chunks span several data: lines, with CRLF line ends, comments and event:
    fields, is recorded as the bytes that came and replays, with the server gone, to the same
    chunks and reply."""
    path = tmp_path / "c.jsonl"

    async def stream(url: str, cassette: Cassette) -> tuple[list[str], Reply | None]:
        client = ChatClient(url, model="test-model", api_key=KEY, transport=cassette)
        async with client, client.stream("x y") as s:
            return [t async for t in s], s.reply

    with LLMServer(api_key=KEY) as srv:
        url = srv.url
        srv.script(("spec_stream", "\r\n"))
        live = asyncio.run(stream(url, Cassette(path, mode="record")))
    replayed = asyncio.run(stream(url, Cassette(path)))
    assert ["reply ", "to: ", "x ", "y "] == live[0]
    assert live[0] == replayed[0]
    assert live[1] is not None
    assert replayed[1] is not None
    assert (live[1].text, live[1].tokens_out, live[1].finish_reason) == (
        replayed[1].text,
        replayed[1].tokens_out,
        replayed[1].finish_reason,
    )
    recorded = json.loads(path.read_text())["response"]
    assert "text/event-stream" == recorded["headers"]["content-type"]
    assert recorded["text"].startswith(": keep-alive\r\nretry: 3000\r\nevent: message\r\nid: 0\r\ndata:{\r\n")


def test_recording_a_stream_passes_each_chunk_on_as_it_arrives(tmp_path: Path) -> None:
    """While recording, a streamed reply reaches the caller chunk by chunk as the server sends it
    (it waited for the whole stream), and the cassette still holds all of it, which replays."""
    path = tmp_path / "c.jsonl"
    received: list[float] = []

    async def stream(url: str, cassette: Cassette) -> list[str]:
        client = ChatClient(url, model="test-model", api_key=KEY, transport=cassette)
        chunks = []
        async with client, client.stream("one two three") as s:
            async for text in s:
                received.append(time.monotonic())
                chunks.append(text)
        return chunks

    with LLMServer(api_key=KEY, stream_gap=0.1) as srv:
        url = srv.url
        live = asyncio.run(stream(url, Cassette(path, mode="record")))
        sent = list(srv.sent_at)
    assert received[0] < sent[-1]  # the first chunk was in hand before the server sent the last
    assert ["reply ", "to: ", "one ", "two ", "three "] == live
    assert live == asyncio.run(stream(url, Cassette(path, mode="replay")))


def test_a_recorded_reasoning_stream_replays_its_first_token_and_reasoning(tmp_path: Path) -> None:
    """A reasoning model's streams recorded from the server (one that answers, one whose reasoning
    used up ``max_tokens``, so no text came) replay, with the server gone, inside a run as they
    came: the same text, reasoning, tokens and cost, and a first token for both, in the stream and
    the step log: the first reasoning. The stream that never reached its text had none (NaN), and
    the reasoning of both was dropped."""
    path = tmp_path / "c.jsonl"
    prices = {"test-model": (0.001, 0.002)}
    flow = wf.Workflow("reasoner")

    @flow.step()
    async def think(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        async with ctx.llm.stream(state["q"], max_tokens=8) as stream:
            text = "".join([t async for t in stream])
        reply = stream.reply
        assert reply is not None
        assert text == reply.text
        return {"reply": [reply.text, reply.reasoning, reply.tokens_out, reply.cost_usd, reply.finish_reason]}

    def run_all(url: str, cassette: Cassette, workspace: Path) -> list[Any]:
        client = ChatClient(url, model="test-model", api_key=KEY, transport=cassette, prices=prices)
        with test_mode():
            return [flow.run({"q": q}, workspace=workspace, llm=client).state["reply"] for q in ("easy", "hard")]

    with LLMServer(api_key=KEY) as srv:
        url = srv.url
        srv.script(("reasoning", {"text": "it is easy"}), ("reasoning", {"text": "this is hard", "answer": False}))
        live = run_all(url, Cassette(path, mode="record"), tmp_path / "live")
    replayed = run_all(url, Cassette(path), tmp_path / "replayed")

    assert (
        [
            ["reply to: easy ", "it is easy ", 6, pytest.approx(6 * 0.002 / 1000 + 0.001 / 1000), "stop"],
            ["", "this is hard ", 3, pytest.approx(3 * 0.002 / 1000 + 0.001 / 1000), "length"],
        ]
        == live
        == replayed
    )
    for workspace in ("live", "replayed"):
        rows = wf.steps(tmp_path / workspace).sort_values("started_at")
        assert rows["ttft_s"].notna().all(), rows["ttft_s"]
        assert (rows["ttft_s"] <= rows["model_latency_s"]).all()
        assert [6, 3] == list(rows["tokens_out"])


def test_bad_mode_and_damaged_files_are_clear_errors(tmp_path: Path) -> None:
    """An unknown mode is refused; a line that is not an interaction is reported by number."""
    with pytest.raises(ValueError, match="one of 'replay', 'record', 'auto'"):
        Cassette(tmp_path / "c.jsonl", mode="rewind")  # type: ignore[arg-type]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(interaction({"status": 200, "json": {}})) + "\nnot json\n")
    with pytest.raises(ValueError, match="line 2 is not an interaction"):
        ask("http://sim/v1", Cassette(path), "hi")


def interaction(response: Any) -> dict[str, Any]:
    body = {"messages": [{"content": "hi", "role": "user"}], "model": "test-model"}
    return {"request": {"method": "POST", "path": "/v1/chat/completions", "body": body}, "response": response}


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (None, "its response is not an object"),
        ({"json": {}}, "its response has no 'status'"),
        ({"status": "200", "json": {}}, "its response's status must be an HTTP status number, got '200'"),
        ({"status": 200, "headers": ["content-type"], "json": {}}, "its response's headers must be an object"),
        ({"status": 200, "text": 5}, "its response's text must be a string"),
    ],
)
def test_a_hand_edited_response_is_reported_by_file_and_line(tmp_path: Path, response: Any, problem: str) -> None:
    """A response edited by hand into something no reply can be made of names the file, the line
    and what is wrong with it; it failed the step with a bare KeyError('response') or TypeError."""
    good = interaction({"status": 200, "json": {"choices": [{"message": {"content": "ok"}}]}})
    path = tmp_path / "edited.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(interaction(response)) + "\n")
    with pytest.raises(ValueError) as info:
        ask("http://sim/v1", Cassette(path), "hi")
    assert f"cassette {path}: line 2 is not an interaction ({problem})" in str(info.value)


def test_a_cassette_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(interaction({"status": 200, "json": {}})).encode() + b"\n\xff\xfe caf\xe9\n")
    with pytest.raises(ValueError, match=r"line 2 is not an interaction \(not UTF-8 text"):
        ask("http://sim/v1", Cassette(path), "hi")


def test_committed_cassette_replays_offline() -> None:
    """data/cassettes/triage.jsonl, recorded once from a real server, answers a workflow offline."""
    flow = wf.Workflow("triage")

    @flow.step
    async def classify(state: dict[str, Any], ctx: wf.StepContext) -> dict[str, Any]:
        reply = await ctx.llm.complete(f"Classify: {state['query']}", ctx=ctx)
        return {"label": reply.text}

    cassette = Cassette(REPO / "data" / "cassettes" / "triage.jsonl")
    client = ChatClient("http://127.0.0.1:8000/v1", model="test-model", transport=cassette)
    labels = [
        flow.run({"query": q}, workspace=False, llm=client).state["label"]
        for q in ("I want my money back", "The app crashes on start")
    ]
    assert ["reply to: Classify: I want my money back", "reply to: Classify: The app crashes on start"] == labels


def test_a_miss_under_wfkit_replay_says_to_record_outside_it(
    server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `wfkit replay`, an "auto" cassette's miss says the replay is why nothing was recorded
    and to record outside it; it said "record it with Cassette(..., mode='auto')", the very mode
    the notebook already had, so following it changed nothing."""
    path = tmp_path / "c.jsonl"
    ask(server.url, Cassette(path, mode="auto"), "first")
    monkeypatch.setenv("WFKIT_REPLAY", "1")
    message = str(miss_of(server.url, Cassette(path, mode="auto"), "second"))
    assert 1 == len(server.requests)  # the replay reached no endpoint
    assert message.endswith(
        f"this runs under `wfkit replay` ($WFKIT_REPLAY=1), which replays every cassette and records "
        f"nothing, though this one's mode is 'auto': record it outside the replay (run the notebook "
        f"once in Jupyter, or with $WFKIT_REPLAY unset) with Cassette({str(path)!r}, mode='auto') against "
        f"the endpoint, then replay again"
    ), message


def test_under_wfkit_replay_every_cassette_only_replays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With $WFKIT_REPLAY=1 (set by `wfkit replay`), an "auto" or "record" cassette replays only."""
    monkeypatch.setenv("WFKIT_REPLAY", "1")
    assert "replay" == Cassette(tmp_path / "c.jsonl", mode="auto").mode
    assert "replay" == Cassette(tmp_path / "c.jsonl", mode="record").mode


def test_cookies_a_server_sets_are_never_recorded_and_the_tape_replays_without_them(tmp_path: Path) -> None:
    """A session cookie the endpoint sets (Set-Cookie, plain and streamed) goes into the client's
    cookie jar and is sent back, but never into the cassette: not its Set-Cookie, not the Cookie
    sent back, not its value where a reply repeats it; the tape replays with the server gone and
    sets no cookie then."""
    import uuid

    import httpx

    session = uuid.uuid4().hex  # no shape a pattern knows: only knowing it is a cookie hides it
    set_cookie = f"session={session}; Path=/; HttpOnly"
    path = tmp_path / "c.jsonl"

    async def record(url: str) -> list[str]:
        async with ChatClient(url, model="test-model", transport=Cassette(path, mode="record")) as client:
            texts = [(await client.complete("one")).text, (await client.complete("two")).text]
            async with client.stream("three") as stream:
                texts.append("".join([t async for t in stream]))
        return texts

    with LLMServer() as srv:
        url = srv.url
        srv.script(("set_cookie_echo", set_cookie), "echo_cookie", ("set_cookie", f"lb={session}x; Path=/"))
        recorded = asyncio.run(record(url))
        sent_back = [r["headers"].get("Cookie") for r in srv.requests]
    assert [None, f"session={session}", f"session={session}"] == sent_back  # the jar sent it back
    tape = path.read_text()
    assert session not in tape
    assert "cookie" not in {k.lower() for line in tape.splitlines() for k in json.loads(line)["response"]["headers"]}
    assert f"reply to: one (set: {set_cookie})" == recorded[0]  # the caller got the replies as they came
    assert f"reply to: two (cookie: session={session})" == recorded[1]

    async def replay() -> tuple[list[str], list[str], dict[str, str]]:
        async with ChatClient(url, model="test-model", transport=Cassette(path, mode="replay")) as client:
            texts = [(await client.complete("one")).text, (await client.complete("two")).text]
            async with client.stream("three") as stream:
                texts.append("".join([t async for t in stream]))
        async with httpx.AsyncClient(transport=Cassette(path, mode="replay")) as http:
            body = {"model": "test-model", "messages": [{"role": "user", "content": "one"}]}
            response = await http.post(url + "/chat/completions", json=body)
            return texts, response.headers.get_list("set-cookie"), dict(http.cookies)

    texts, set_cookies, jar = asyncio.run(replay())
    stored = ["reply to: one (set: [REDACTED])", "reply to: two (cookie: [REDACTED])"]
    assert ([*stored, recorded[2]], [], {}) == (texts, set_cookies, jar)


@pytest.mark.parametrize("given", ["auto", "record"])
def test_a_cassette_pickled_under_wfkit_replay_stays_forced_to_replay(
    server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """A cassette made under `wfkit replay` and pickled (as a Dask partition or a process pool gets
    it, in a process without $WFKIT_REPLAY) still replays only, and its miss still says the replay
    forced it and which mode it was given; the copy forgot both, and its miss told to record with
    the very mode the notebook had."""
    import pickle

    path = tmp_path / "c.jsonl"
    ask(server.url, Cassette(path, mode="auto"), "first")
    monkeypatch.setenv("WFKIT_REPLAY", "1")
    shipped = pickle.dumps(Cassette(path, mode=given))  # type: ignore[arg-type]
    monkeypatch.delenv("WFKIT_REPLAY")
    copy = pickle.loads(shipped)
    assert "replay" == copy.mode
    assert ["reply to: first"] == [r.text for r in ask(server.url, copy, "first")]
    message = str(miss_of(server.url, copy, "second"))
    assert 1 == len(server.requests)  # neither copy reached the endpoint
    assert f"which replays every cassette and records nothing, though this one's mode is {given!r}" in message
    assert "first" == json.loads(path.read_text())["request"]["body"]["messages"][0]["content"]  # not started afresh


@pytest.mark.parametrize("folder", [True, False])
def test_a_cassette_naming_a_folder_is_refused_naming_a_file_to_write(tmp_path: Path, folder: bool) -> None:
    """Cassette("data/cassettes") (an existing folder) failed at the first call with a bare
    IsADirectoryError, and Cassette("cass/") recorded into a file named "cass"; both are refused
    when made, with a file name in the folder to write instead."""
    given = str(tmp_path) if folder else str(tmp_path / "cass") + "/"
    with pytest.raises(ValueError, match="names a folder, not a file") as caught:
        Cassette(given)
    assert f"e.g. Cassette('{Path(given) / 'triage.jsonl'}')" in str(caught.value)
    assert not (tmp_path / "cass").exists()


@pytest.mark.parametrize("mode", ["record", "auto"])
def test_a_recording_cassette_without_a_base_url_is_refused(tmp_path: Path, mode: Any) -> None:
    """ChatClient(model=..., transport=Cassette(path, mode="record")) with no base_url recorded
    nothing: every call failed "could not reach http://simulated.wfkit/v1/...". It is refused when
    made, saying to name the endpoint; a replaying cassette needs none, and still replays."""
    with pytest.raises(ValueError, match=f"has no base_url, and a cassette in mode='{mode}'") as caught:
        ChatClient(model="test-model", transport=Cassette(tmp_path / "c.jsonl", mode=mode))
    assert "ChatClient('http://HOST:PORT/v1', model=..., transport=...)" in str(caught.value)
    assert not (tmp_path / "c.jsonl").exists()
    ChatClient(model="test-model", transport=Cassette(tmp_path / "c.jsonl"))  # replay: fine
