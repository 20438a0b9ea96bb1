"""A real HTTP server for the LLM tests: POST /v1/chat/completions on 127.0.0.1, scripted per test.

    with LLMServer(api_key="sk-test-123") as server:
        server.script("429", "ok")          # the next two requests: a 429, then a normal reply
        client = ChatClient(server.url, model="test-model", api_key="sk-test-123")

Behaviours, taken one per request from the script (then "ok" for ever):
"ok" (JSON, or server-sent events when the body says ``"stream": true``), ("429", retry_after) (or
("429", {header: value}) for other headers, such as ``retry-after-ms``, or a ``Date`` that
replaces the server's own), ("status", code) (or
("status", (code, {header: value}))), ("openai_error", (code, error)) (a status whose body is
``{"error": error}``, in OpenAI's words), "500", ("slow", seconds) (then ok), "malformed" (JSON cut
off), "not_completion" (valid JSON of the wrong shape), "echo_auth" (a 500 whose message repeats the
Authorization header, as a careless proxy might; ("echo_auth", name): the header named),
("cut_stream", n) (a stream that ends after n
content events, with no finish_reason and no [DONE]: the body runs to the connection's close, so
HTTP cannot tell it was cut), ("broken_stream", n) (the same, but chunked, so httpx sees the missing
last chunk), ("redirect", location) (a 301 to ``location``), ("error_200", message) (an OpenAI-style
error object in a 200, as some gateways send), ("tool_calls", calls) (a reply asking for tool calls,
each ``{"id", "function": {"name", "arguments"}}`` as given; streamed, each call's arguments come in
two pieces, as OpenAI streams them), ("spec_stream", newline) (the "ok" stream framed in ways the
server-sent events spec allows: each chunk's JSON over several ``data:`` lines, lines ending in
``newline``, a comment, a ``retry:`` field, ``event:`` and ``id:`` on each event), ("error_event",
(event, wrapped)) (the same framing: two words, then OpenAI's mid-stream error object, ``{"error":
{...}}`` if wrapped else bare, under ``event: <event>`` when it is not None, and no [DONE]; a third
item, an error object, replaces OpenAI's ``server_error``),
("cut_body", n) (a 200 whose Content-Length promises the whole reply, then n of its bytes, then
a connection reset), ("cut_at_close", n) (a 200 with no Content-Length: n bytes of the reply, then
the connection closes, so HTTP cannot tell the body was cut), "html_200" (a 200 whose whole body is
an HTML page, as a captive portal or a misrouted proxy sends, under the JSON content type),
("set_cookie", cookie) (the "ok" reply, JSON or streamed, with a ``Set-Cookie: cookie`` header, as a
gateway's session or a load balancer's affinity cookie comes; ("set_cookie_echo", cookie): its text
also ends with the cookie, as a gateway that reports its session might), "echo_cookie" (the "ok" reply whose
text ends with the Cookie header the request carried, as a careless gateway might), ("stall_stream", n)
(a stream that sends n content events, then nothing until the server stops, as an overloaded one
stalls mid-reply), "always_stream" (the "ok" reply as server-sent events whatever the request
says, as an endpoint or a gateway that only streams), ("reasoning", spec) (a reasoning model's reply, as
vLLM's reasoning parsers and DeepSeek's API send it: ``spec["text"]``, its reasoning, in the field
``spec["field"]`` (``"reasoning_content"`` unless given; ``"reasoning"`` as newer vLLM and gateways
name it) beside the content; streamed, a first chunk with the role and an empty content, then the
reasoning a word a chunk, then the content once ``spec["gate"]`` (a ``threading.Event``, if given)
is set; with ``spec["answer"]`` False the reasoning used up ``max_tokens``: no content comes, and
the finish_reason is ``"length"``). Its completion tokens count the reasoning's words too.
"no_usage" (the "ok" reply, JSON or streamed, with no ``usage`` object, as some proxies and local
servers answer; streamed, it ignores ``stream_options.include_usage``), ("part_usage", name) (the
"ok" reply, JSON or streamed, whose ``usage`` leaves out the count ``name``, ``"prompt_tokens"`` or
``"completion_tokens"``, as a server that counts only one side).
It speaks HTTP/1.1 keep-alive, so connection pooling is visible in ``connections``.
"""

from __future__ import annotations

import collections
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # an idle keep-alive connection ends after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        if headers is not None and "Date" in headers:  # a server clock of the test's (one that is off)
            self.log_request(status)
            self.send_response_only(status)
            self.send_header("Server", self.version_string())
        else:
            self.send_response(status)  # with the real time as its Date
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, json.dumps({"error": {"message": message, "type": "test", "code": status}}).encode(), headers
        )

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with owner.lock:
            owner.requests.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                    "port": self.client_address[1],
                    "at": time.monotonic(),
                }
            )
            behaviour = owner.queue.popleft() if owner.queue else "ok"
        if self.path.partition("?")[0] != "/v1/chat/completions":  # a query (?api-version=) is the client's to send
            self._error(404, f"no route {self.path}")
            return
        if owner.api_key is not None and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            self._error(401, "invalid api key")
            return
        name, arg = (behaviour, None) if isinstance(behaviour, str) else behaviour
        if name == "429":
            headers = arg if isinstance(arg, dict) else {"Retry-After": str(arg if arg is not None else 1)}
            self._error(429, "rate limited", headers)
        elif name == "500":
            self._error(500, "internal error")
        elif name == "status":
            code, headers = (arg, None) if isinstance(arg, int) else arg
            self._error(int(code), f"status {code}", headers)
        elif name == "openai_error":
            code, error = arg
            self._send(int(code), json.dumps({"error": error}).encode())
        elif name == "redirect":
            self._send(301, b"", {"Location": str(arg)})
        elif name == "error_200":
            self._send(200, json.dumps({"error": {"message": str(arg), "code": 502}}).encode())
        elif name == "echo_auth":
            self._error(500, f"upstream rejected header {self.headers.get(arg or 'Authorization')}")
        elif name == "malformed":
            self._send(200, b'{"id": "chatcmpl-1", "choices": [{"message": {"content": "cut')
        elif name == "cut_body":
            self._cut_body(int(arg))
        elif name == "cut_at_close":
            self._cut_at_close(body or {}, int(arg))
        elif name == "html_200":
            self._send(200, b"<html><body>Please sign in to continue</body></html>")
        elif name == "not_completion":
            self._send(200, json.dumps({"result": "hello"}).encode())
        elif name == "tool_calls":
            self._tool_calls(body or {}, arg)
        elif name == "always_stream":
            self._complete({**(body or {}), "stream": True})
        elif name == "reasoning":
            self._complete(body or {}, reasoning=arg)
        elif name == "no_usage":
            self._complete(body or {}, usage=False)
        elif name == "part_usage":
            self._complete(body or {}, usage=str(arg))
        else:
            if name == "slow":  # a reply held back past the test's end: stop() ends the wait
                owner.stopping.wait(float(arg))
            cut_names = ("cut_stream", "broken_stream", "stall_stream")
            cut = (int(arg), name != "cut_stream") if name in cut_names else None
            newline = "\r\n" if name == "error_event" else arg if name == "spec_stream" else None
            self._complete(
                body or {},
                cut=cut,
                newline=newline,
                error_event=arg if name == "error_event" else None,
                set_cookie=arg if name in ("set_cookie", "set_cookie_echo") else None,
                stall=name == "stall_stream",
                echo=f" (cookie: {self.headers.get('Cookie')})"
                if name == "echo_cookie"
                else f" (set: {arg})"
                if name == "set_cookie_echo"
                else "",
            )

    def _complete(
        self,
        body: dict[str, Any],
        cut: tuple[int, bool] | None = None,
        newline: str | None = None,
        error_event: tuple[str | None, bool] | None = None,
        set_cookie: str | None = None,
        echo: str = "",
        stall: bool = False,
        reasoning: dict[str, Any] | None = None,
        usage: bool | str = True,  # a name: the usage leaves that count out
    ) -> None:
        owner = self.server.owner
        messages = body.get("messages") or []
        last = messages[-1].get("content", "") if messages else ""
        thought = str((reasoning or {}).get("text", ""))
        answered = (reasoning or {}).get("answer", True)
        text = f"reply to: {last}{echo}" if answered else ""
        field = (reasoning or {}).get("field", "reasoning_content")
        cookie = {"Set-Cookie": set_cookie} if set_cookie else {}
        counts = {
            "prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
            "completion_tokens": len(thought.split()) + len(text.split()),  # as servers count: reasoning too
        }
        counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
        if isinstance(usage, str):
            del counts[usage], counts["total_tokens"]
        model = owner.model or body.get("model")  # None: it serves whatever model is asked for
        if not body.get("stream"):
            reply = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                **({"usage": counts} if usage else {}),
            }
            if reasoning is not None:
                reply["choices"][0]["message"][field] = thought
                reply["choices"][0]["finish_reason"] = "stop" if answered else "length"
            self._send(200, json.dumps(reply).encode(), cookie)
            return
        chunked = cut is None or cut[1]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")  # the body is whatever comes before the close
        for key, value in cookie.items():
            self.send_header(key, value)
        self.end_headers()
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model}
        events: list[Any] = []
        gate_after = -1  # the index of the last reasoning event, after which the gate holds the content
        if reasoning is not None:
            # vLLM's first chunk: the role, and an empty content, which is no token yet
            events.append({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            events += [
                {**base, "choices": [{"index": 0, "delta": {field: word + " "}, "finish_reason": None}]}
                for word in thought.split()
            ]
            gate_after = len(events) - 1
        events += [
            {**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            for word in text.split()
        ]
        finish_reason = "stop" if answered else "length"
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
        if usage and (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": counts})
        events.append("[DONE]")
        if cut is not None:
            events = events[: cut[0]]
        names = ["message"] * len(events)
        if error_event is not None:  # OpenAI's shape; its SDK reads it with or without `event: error`
            name, wrapped, *given = error_event
            error = {"message": "The server had an error while processing your request.", "type": "server_error"}
            error = given[0] if given else {**error, "param": None, "code": None}
            events, names = [*events[:2], {"error": error} if wrapped else error], [*names[:2], name]
        for number, (event, event_name) in enumerate(zip(events, names, strict=True)):
            if newline is None:
                data = event if isinstance(event, str) else json.dumps(event)
                chunk = f": keep-alive\n\ndata: {data}\n\n".encode()
            else:
                chunk = _spec_framed(event, event_name, number, newline)
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
            self.wfile.flush()
            owner.sent_at.append(time.monotonic())
            time.sleep(owner.stream_gap)
            if number == gate_after and (reasoning or {}).get("gate") is not None:
                reasoning["gate"].wait(30)  # bounded: a client that never opens it still gets its reply
        if cut is not None:
            if stall:
                owner.stopping.wait(60)
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut_body(self, sent: int) -> None:
        payload = json.dumps({"id": "chatcmpl-1", "choices": [{"message": {"content": "x" * 200}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[:sent])
        self.wfile.flush()
        # Linger 0: closing sends a reset, as a proxy or server dying mid-body does.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _cut_at_close(self, body: dict[str, Any], sent: int) -> None:
        messages = body.get("messages") or [{}]
        text = f"reply to: {messages[-1].get('content', '')} (caf\u00e9 \u2603)"
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "model": self.server.owner.model}
        reply["choices"] = [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
        reply["usage"] = {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")  # the body is whatever comes before the close
        self.end_headers()
        self.wfile.write(json.dumps(reply, ensure_ascii=False).encode()[:sent])
        self.wfile.flush()
        self.close_connection = True

    def _tool_calls(self, body: dict[str, Any], calls: Any) -> None:
        base = {"id": "chatcmpl-1", "model": self.server.owner.model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            self._send(200, json.dumps({**base, "object": "chat.completion", "choices": [choice]}).encode())
            return
        deltas: list[Any] = []
        for index, call in enumerate(calls):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            first = {"index": index, "id": call["id"], "type": "function"}
            deltas.append({**first, "function": {"name": call["function"]["name"], "arguments": arguments[:half]}})
            deltas.append({"index": index, "function": {"arguments": arguments[half:]}})
        events = [{"index": 0, "delta": {"tool_calls": [delta]}, "finish_reason": None} for delta in deltas]
        events.append({"index": 0, "delta": {}, "finish_reason": "tool_calls"})
        payload = "".join(f"data: {json.dumps({**base, 'choices': [e]})}\n\n" for e in events) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload.encode())))
        self.end_headers()
        self.wfile.write(payload.encode())


def _spec_framed(event: Any, name: str | None, number: int, newline: str) -> bytes:
    """One event as the server-sent events spec also allows it: its JSON pretty-printed over several
    ``data:`` lines (joined with newlines, they are the JSON again; the space after ``data:`` is
    optional), after a comment, with ``event:`` and ``id:`` fields, the first one also with
    ``retry:``, each line ending in ``newline``."""
    first, *rest = (event if isinstance(event, str) else json.dumps(event, indent=1)).split("\n")
    lines = [": keep-alive", *(["retry: 3000"] if number == 0 else [])]
    lines += [*([f"event: {name}"] if name else []), f"id: {number}"]
    lines += [f"data:{first}", *(f"data: {line}" for line in rest)]
    return (newline.join(lines) + newline + newline).encode()


class _Server(ThreadingHTTPServer):
    owner: LLMServer
    # socketserver's default backlog of 5 drops the SYN of a sixth connection made at once, and
    # that client retries a second later: concurrent map items would reach the server out of order.
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected here


class LLMServer:
    """Starts on a free port of 127.0.0.1 in a background thread; stop() (or ``with``) ends it.
    Its replies name ``model``; with ``model=None``, the model each request asked for (as a
    gateway or a server hosting several models answers)."""

    def __init__(
        self, *, api_key: str | None = None, model: str | None = "test-model", stream_gap: float = 0.0
    ) -> None:
        self.api_key, self.model, self.stream_gap = api_key, model, stream_gap
        self.lock = threading.Lock()
        self.queue: collections.deque[Any] = collections.deque()
        self.requests: list[dict[str, Any]] = []
        self.sent_at: list[float] = []
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), name="llm-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *behaviours: Any) -> None:
        """Queue what the next requests get, in order."""
        with self.lock:
            self.queue.extend(behaviours)

    @property
    def connections(self) -> int:
        """How many TCP connections the requests so far came over."""
        return len({r["port"] for r in self.requests})

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> LLMServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FullBacklog:
    """A port on 127.0.0.1 that is listened on but never accepts, its queue of pending connections
    full: the kernel drops each new connection's SYN, so a client connecting waits (as for a host
    that drops its packets) until its connect timeout, never reaching any server. ``url`` is a base
    URL there."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)  # Linux queues backlog + 1 connections: the fillers take them all
        self._fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self._listener.getsockname())
            self._fillers.append(filler)
        time.sleep(0.1)  # the handshakes the queue holds complete

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        for sock in [*self._fillers, self._listener]:
            sock.close()

    def __enter__(self) -> FullBacklog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
