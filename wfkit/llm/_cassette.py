"""Cassettes: record an endpoint's replies once to a JSONL file, replay them in regression runs.

    client = ChatClient("http://localhost:8000/v1", model="llama3.1:8b",
                        transport=Cassette("data/cassettes/triage.jsonl", mode="auto"))

A cassette is an httpx transport. Requests match on method, URL path and the JSON body in
canonical form (sorted keys); headers are ignored. Modes:

- ``"replay"``: never touches the network; a request with no recorded match raises
  :class:`CassetteMissError`, which shows the nearest recorded request and what differs.
- ``"record"``: every request goes to the endpoint; the file starts afresh with this cassette's
  first recording.
- ``"auto"``: replay what is recorded, forward and record the rest (with the endpoint down, the
  error says both: it could not be reached, and which recording came nearest).

Only 2xx replies are recorded, and not one whose JSON was cut short, so a replay never reproduces
an outage. While recording, a reply
reaches the caller as it arrives (a streamed one chunk by chunk) and is written once it has all
come. Requests recorded several times replay in order, the last one repeating. One interaction per line:
``{"request": {"method", "path", "body"}, "response": {"status", "headers", "json" | "text"}}``.
Request headers are never stored, and any key seen in a credential header (Authorization,
``api-key``, ``x-api-key``, any whose name says key or token, a cookie's value; or passed as
``secrets=``), any value marked with ``wfkit.mark_secret``, any key-shaped string and the value of
any key-like environment variable is replaced by ``[REDACTED]`` in both directions, before the line
is written (a replayed request is redacted the same way, so it still matches).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import httpx

from wfkit.llm._llm import (
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    _cut_short,
    _where,
    check_async_transport,
    refuse_to_pickle_network_transport,
)
from wfkit.llm._perloop import PerLoop
from wfkit.model._processors import REDACTED, header_secrets, redact_text

Mode = Literal["replay", "record", "auto"]
_MODES = ("replay", "record", "auto")
_KEPT_RESPONSE_HEADERS = ("content-type",)
_REDACTED = REDACTED


class CassetteMissError(LLMError, ValueError):
    """Replay met a request the cassette never recorded (permanent: re-record to fix)."""

    def __init__(self, message: str, *, request: dict[str, Any], nearest: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.request, self.nearest = request, nearest

    def __reduce__(self) -> tuple[Any, ...]:
        return partial(type(self), request=self.request, nearest=self.nearest), self.args, self.__getstate__()


def _canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _decode(content: bytes) -> Any:
    """The body as JSON when it is JSON, else as text."""
    text = content.decode("utf-8", errors="replace")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _differences(recorded: Any, requested: Any, path: str = "", limit: int = 6) -> list[str]:
    """Where two JSON values differ, as ``path: recorded ... -> requested ...`` lines."""
    out: list[str] = []

    def short(value: Any) -> str:
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:77] + "..."

    def walk(a: Any, b: Any, where: str) -> None:
        if len(out) >= limit or a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                sub = f"{where}.{key}" if where else str(key)
                if key not in b:
                    out.append(f"{sub}: recorded {short(a[key])}, missing now")
                elif key not in a:
                    out.append(f"{sub}: not recorded, now {short(b[key])}")
                else:
                    walk(a[key], b[key], sub)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{where}[{i}]")
        else:
            out.append(f"{where or 'body'}: recorded {short(a)}, now {short(b)}")

    walk(recorded, requested, path)
    return out


def _response_problem(response: Any) -> str | None:
    """What keeps a recorded response (a line edited by hand) from being replayed, or None.

    Checked when the file loads, so the error names the file and the line; replaying it would
    fail the step with a bare KeyError or TypeError."""
    if not isinstance(response, dict):
        return "its response is not an object"
    status = response.get("status", ...)
    if status is ...:
        return "its response has no 'status'"
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return f"its response's status must be an HTTP status number, got {status!r}"
    if not isinstance(response.get("headers") or {}, dict):
        return "its response's headers must be an object"
    if "json" not in response and not isinstance(response.get("text", ""), str):
        return "its response's text must be a string"
    return None


class Cassette(httpx.AsyncBaseTransport):
    """An httpx transport that records to and replays from a JSONL file (see the module doc).

    ``transport`` is where unrecorded requests go in ``record`` and ``auto`` modes (default: the
    network, one connection pool per event loop). ``secrets`` are extra strings never to store.
    Under ``wfkit replay`` ($WFKIT_REPLAY=1) every cassette replays only: a regression run never
    reaches the network, and a request nobody recorded fails instead of being recorded; a copy
    pickled there (sent to a Dask worker) replays only too, wherever it is unpickled.

    A cassette pickles by its path, mode, secrets and ``transport``: each Dask partition
    (``run_many(..., executor=client, llm=ChatClient(..., transport=cassette))``) gets a copy that
    reads, and records to, the file at the same path on its worker's disk. Replay is the mode for
    workers: record locally, or on a cluster copy the file to every worker. A copy never starts
    the file afresh (its partitions would erase each other's lines): in ``"record"`` mode on
    workers, start from an absent or empty file, and each worker's file keeps what was recorded
    there (on a ``LocalCluster`` one file, each line appended whole).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: Mode = "replay",
        transport: httpx.AsyncBaseTransport | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        check_async_transport("Cassette", transport)
        if mode not in _MODES:
            raise ValueError(f"cassette mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
        # Under `wfkit replay`: the mode given is kept for a miss's message, which must say that
        # recording again in that mode changes nothing while the replay forces "replay".
        self._under_replay, self._given = os.environ.get("WFKIT_REPLAY") == "1", mode
        if self._under_replay:
            mode = "replay"
        self.path, self.mode = Path(path), mode
        if self.path.is_dir() or str(path).endswith(("/", os.sep)) or not str(path).strip():
            # Found here, not at the first call (IsADirectoryError, or a file named as the folder).
            raise ValueError(
                f"Cassette({str(path)!r}) names a folder, not a file: name the cassette's file in it, "
                f"e.g. Cassette({str(self.path / 'triage.jsonl')!r})"
            )
        self._inner = transport
        self._network: PerLoop[httpx.AsyncHTTPTransport] = PerLoop(httpx.AsyncHTTPTransport, lambda t: t.aclose())
        self._secrets = {s for s in secrets if s}
        self._lock = threading.Lock()
        self._tapes: dict[tuple[str, str, str], list[dict[str, Any]]] | None = None
        self._played: dict[tuple[str, str, str], int] = {}
        self._fresh = mode == "record"  # the first recording truncates the file

    @property
    def forwards_to_network(self) -> bool:
        """Whether a request it has no recording of goes to the network (``record`` and ``auto``
        modes with no ``transport`` of one's own): to the client's base URL, which must then be one."""
        return self.mode != "replay" and self._inner is None

    def __getstate__(self) -> dict[str, Any]:
        """The configuration; a copy loads the file afresh and never truncates it (class doc)."""
        refuse_to_pickle_network_transport(
            f"Cassette({str(self.path)!r})",
            self._inner,
            "leave its transport= out, and each copy records through connections of its own",
        )
        # The mode as given, and whether `wfkit replay` forced it to replay: a copy in a process
        # without $WFKIT_REPLAY (a Dask worker) must replay only all the same, and say why on a miss.
        return {
            "path": self.path,
            "mode": self._given,
            "forced": self._under_replay,
            "transport": self._inner,
            "secrets": sorted(self._secrets),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        Cassette.__init__(
            self, state["path"], mode=state["mode"], transport=state["transport"], secrets=state["secrets"]
        )
        if state.get("forced"):
            self._under_replay, self.mode = True, "replay"
        self._fresh = False

    # ---- the file --------------------------------------------------------------------------------

    def _load(self) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
        if self._tapes is None:
            tapes: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
            if self.mode != "record" and self.path.exists():
                with self.path.open("rb") as fh:
                    for number, raw in enumerate(fh, 1):
                        if not raw.strip():
                            continue
                        try:
                            item = json.loads(raw.decode("utf-8"))
                            req = item["request"]
                            key = (req["method"], req["path"], _canonical(req.get("body")))
                            problem = _response_problem(item["response"])
                        except UnicodeDecodeError as exc:
                            problem = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
                        except (ValueError, KeyError, TypeError) as exc:
                            problem = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
                        if problem is not None:
                            raise ValueError(f"cassette {self.path}: line {number} is not an interaction ({problem})")
                        item["line"] = number
                        tapes.setdefault(key, []).append(item)
            self._tapes = tapes
        return self._tapes

    def _redact(self, text: str, secrets: Iterable[str]) -> str:
        for secret in sorted({*self._secrets, *secrets}, key=len, reverse=True):
            if len(secret) >= 4:  # shorter strings would mangle ordinary text
                text = text.replace(secret, _REDACTED)
                text = text.replace(json.dumps(secret)[1:-1], _REDACTED)
        # Then wfkit's one boundary: marked secrets, key-shaped strings, key-like variables' values,
        # in request and response bodies alike (a prompt or a reply can quote a key).
        return redact_text(text)

    def _key(self, request: httpx.Request, body: Any, secrets: list[str]) -> tuple[str, str, str]:
        path = request.url.raw_path.decode("ascii", errors="replace")
        return request.method, self._redact(path, secrets), self._redact(_canonical(body), secrets)

    def _append(self, item: dict[str, Any], secrets: list[str]) -> None:
        line = self._redact(json.dumps(item, ensure_ascii=False, sort_keys=True), secrets)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One write of the whole line, appended: copies of this cassette in other processes
            # (Dask workers on one machine) may append to the same file.
            with self.path.open("wb" if self._fresh else "ab") as fh:
                fh.write((line + "\n").encode("utf-8"))
            self._fresh = False
            stored = json.loads(line)
            req = stored["request"]
            key = (req["method"], req["path"], _canonical(req["body"]))
            tapes = self._load()
            stored["line"] = sum(len(v) for v in tapes.values()) + 1
            tapes.setdefault(key, []).append(stored)
            self._played[key] = len(tapes[key])  # what was just recorded counts as played

    # ---- the transport ---------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        secrets = header_secrets(request.headers)
        body = _decode(await request.aread())
        key = self._key(request, body, secrets)
        if self.mode != "record":
            item = self._next(key)
            if item is not None:
                return self._response(item)
            if self.mode == "replay":
                raise self._miss(key)
            try:
                return await self._forward(request, key, secrets)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
                # Said here, where both are known: "could not reach" alone hid that the cassette
                # had been asked first and had no recording (nor which one came nearest).
                raise self._unrecorded_and_unreachable(request, body, key, secrets, exc) from exc
        return await self._forward(request, key, secrets)

    def _unrecorded_and_unreachable(
        self, request: httpx.Request, body: Any, key: tuple[str, str, str], secrets: list[str], exc: Exception
    ) -> LLMError:
        model = f" for model {body['model']!r}" if isinstance(body, dict) and "model" in body else ""
        where = _where(request.url)
        miss = self._miss(key, fix="start the endpoint and run again: mode='auto' records the request then")
        message = self._redact(f"could not reach {where}{model} ({type(exc).__name__}: {exc}), and {miss}", secrets)
        return LLMTimeoutError(message) if isinstance(exc, httpx.TimeoutException) else LLMConnectionError(message)

    def _next(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        with self._lock:
            tape = self._load().get(key)
            if not tape:
                return None
            played = self._played.get(key, 0)
            self._played[key] = played + 1
            return tape[min(played, len(tape) - 1)]  # in recorded order, then the last one again

    @staticmethod
    def _response(item: dict[str, Any]) -> httpx.Response:
        recorded = item["response"]
        content = json.dumps(recorded["json"]) if "json" in recorded else recorded.get("text", "")
        return httpx.Response(recorded["status"], headers=recorded.get("headers") or {}, content=content.encode())

    async def _forward(self, request: httpx.Request, key: tuple[str, str, str], secrets: list[str]) -> httpx.Response:
        inner = self._inner if self._inner is not None else await self._network.get()
        response = await inner.handle_async_request(request)
        # The cookies it sets are credentials too (the client sends them back): kept out of the
        # line should the reply repeat them, as the request's own credentials are.
        cookies = [s for v in response.headers.get_list("set-cookie") for s in header_secrets({"set-cookie": v})]

        def record(content: bytes) -> None:
            self._store(key, [*secrets, *cookies], response, content)

        return httpx.Response(
            response.status_code,
            headers=[
                (k, v)
                for k, v in response.headers.multi_items()
                if k.lower() not in ("content-encoding", "transfer-encoding", "content-length")
            ],
            stream=_Recording(response, record if 200 <= response.status_code < 300 else None),
            extensions={k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")},
        )

    def _store(self, key: tuple[str, str, str], secrets: list[str], response: httpx.Response, content: bytes) -> None:
        decoded = _decode(content)
        if (decoded is None or isinstance(decoded, str)) and _cut_short(content):
            return  # no reply, but a cut one (transient): recorded, every replay would be cut too
        is_json = not isinstance(decoded, str) and "json" in response.headers.get("content-type", "")
        stored: dict[str, Any] = {
            "status": response.status_code,
            "headers": {k: response.headers[k] for k in _KEPT_RESPONSE_HEADERS if k in response.headers},
        }
        stored["json" if is_json else "text"] = decoded if is_json else content.decode("utf-8", errors="replace")
        method, path, canonical = key
        self._append(
            {
                "request": {"method": method, "path": path, "body": json.loads(canonical) if canonical else None},
                "response": stored,
            },
            secrets,
        )

    def _miss(self, key: tuple[str, str, str], fix: str | None = None) -> CassetteMissError:
        method, path, canonical = key
        requested = json.loads(canonical)
        tapes = self._load()
        if self._under_replay:
            given = f", though this one's mode is {self._given!r}" if self._given != "replay" else ""
            fix = (
                f"this runs under `wfkit replay` ($WFKIT_REPLAY=1), which replays every cassette and records "
                f"nothing{given}: record it outside the replay (run the notebook once in Jupyter, or with "
                f"$WFKIT_REPLAY unset) with Cassette({str(self.path)!r}, mode='auto') against the endpoint, "
                f"then replay again"
            )
        elif fix is None:
            fix = f"record it with Cassette({str(self.path)!r}, mode='auto') (or 'record') against the endpoint"
        if not tapes:
            state = "is empty" if self.path.exists() else "does not exist"
            return CassetteMissError(
                f"cassette {self.path} {state}, so it cannot replay {method} {path}; {fix}",
                request={"method": method, "path": path, "body": requested},
                nearest=None,
            )
        same_route = [k for k in tapes if k[:2] == (method, path)] or list(tapes)
        ratio, nearest_key = max((difflib.SequenceMatcher(None, k[2], canonical).ratio(), k) for k in same_route)
        nearest = tapes[nearest_key][0]
        lines = []
        if nearest_key[:2] != (method, path):
            lines.append(f"request: recorded {nearest_key[0]} {nearest_key[1]}, now {method} {path}")
        lines += _differences(json.loads(nearest_key[2]), requested, "body")
        shown = "\n".join(f"    {line}" for line in lines)
        return CassetteMissError(
            f"cassette {self.path} has no recording of this {method} {path} request ({sum(map(len, tapes.values()))} "
            f"recorded). Nearest is line {nearest['line']} ({ratio:.0%} alike), which differs in:\n{shown}\n"
            f"Recorded requests replay only when method, path and JSON body match exactly; {fix}",
            request={"method": method, "path": path, "body": requested},
            nearest=nearest["request"],
        )

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
        else:
            await self._network.aclose()

    def __repr__(self) -> str:
        return f"Cassette({str(self.path)!r}, mode={self.mode!r})"


class _Recording(httpx.AsyncByteStream):
    """An endpoint's body, passed on chunk by chunk as it arrives (a streamed reply reaches the
    caller as the endpoint sends it), then handed to ``record`` whole; a body cut off is never
    recorded (``record`` None records nothing)."""

    def __init__(self, response: httpx.Response, record: Callable[[bytes], None] | None) -> None:
        self._response, self._record = response, record
        self._body = response.aiter_bytes()  # decoded: the response passed on has no content-encoding
        self._parts: list[bytes] = []

    async def _pull(self) -> bytes | None:
        """The next chunk, or None at the body's end, once it is recorded."""
        try:
            chunk = await anext(self._body)
        except StopAsyncIteration:
            if self._record is not None:
                self._record(b"".join(self._parts))
            self._record = None
            return None
        except BaseException:
            self._record = None
            raise
        self._parts.append(chunk)
        return chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._pull()) is not None:
            yield chunk

    async def aclose(self) -> None:
        try:
            # A stream's reader stops at "data: [DONE]", before the body's end: the rest is read
            # here (nothing is left of a finished reply) so the reply is still recorded; not when
            # a cancellation (a step's timeout) closes the stream, which must not wait.
            task = asyncio.current_task()
            while self._record is not None and not (task is not None and task.cancelling()):
                if await self._pull() is None:
                    break
        except httpx.HTTPError:
            pass  # the rest never came: nothing was recorded, and the reader has what it read
        finally:
            await self._response.aclose()
