"""Defects the fuzzing found (or confirmed), each as the test of the behaviour it should have.

Every test here is ``xfail(strict=True)``: it fails today, so the suite stays green; once the
defect is fixed the test passes, which strict mode reports as a failure: then remove its
marker (and the matching filter in ``fuzz_strategies.KNOWN_DEFECT_TRIGGERS`` or
``fuzz_targets``, and the ``"xfail"`` key of its corpus files). Minimal reproductions are in
each docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import cbor2
import pytest
from conftest import RUN_TIMEOUT
from fuzz_strategies import nested_text
from fuzz_support import LOOPBACK, LogWatch, LoopThread, Msg
from fuzz_targets import (
    EngineEnv,
    RawWs,
    check_envelope,
    check_http_response,
    check_rest_request,
    raw_http,
    status_of,
)

import iii_rx
from iii_rx.channels import CborSequenceDecoder
from iii_rx.errors import CborDecodeError, IIIError, TruncatedStreamError
from iii_rx.operators import JsonLinesDecoder


def json_post(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


# ------------------------------------------------------------------------------- REST API


@pytest.mark.xfail(strict=True, reason="D1: a JSON body nested 100,000 deep raises "
                   "RecursionError in the REST API (only ValueError is caught): 500 and a "
                   "traceback logged by aiohttp")
def test_d1_rest_json_body_nested_100000_deep(loop: LoopThread, engine_env: EngineEnv) -> None:
    """``POST /fz/echo`` with ``Content-Type: application/json`` and ``[[[...]]]`` 100,000
    deep: today ``500 Internal Server Error`` ("Server got itself in trouble")."""
    request = json_post("/fz/echo", nested_text(100_000, "array").encode())
    loop.run(check_rest_request(engine_env, [Msg(request)]), RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D2: every malformed HTTP request to the REST port logs "
                   "a full traceback at ERROR (aiohttp.server 'Error handling request'); issue "
                   "12 item 5")
def test_d2_malformed_request_logs_no_traceback(loop: LoopThread,
                                                engine_env: EngineEnv) -> None:
    """``b"GET /fz/echo HTTP/1.1\\r\\n: x\\r\\n\\r\\n"`` to the REST port: a 400 answer (fine)
    and a BadHttpMessage traceback in the log (not fine: 1,000 such requests, 1,000
    tracebacks)."""

    async def scenario() -> None:
        with LogWatch() as logs:
            response = await raw_http(engine_env.rest_port,
                                      b"GET /fz/echo HTTP/1.1\r\n: x\r\n\r\n")
            assert status_of(response) == 400, response[:200]
        logs.assert_no_tracebacks("for one malformed request")

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D3: a handler status_code 100-199 is sent as the final "
                   "response; HTTP clients wait for a final response that never comes")
@pytest.mark.parametrize("status", [100, 103, 199])
def test_d3_handler_status_1xx(loop: LoopThread, engine_env: EngineEnv, status: int) -> None:
    """A handler returning ``{"status_code": 100}``: today the client reads ``HTTP/1.1 100
    Continue`` and nothing else."""

    async def scenario() -> None:
        engine_env.good.next_envelope = {"status_code": status, "body": "x"}
        request = (f"GET {engine_env.envelope_path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
                   f"Connection: close\r\n\r\n").encode()
        response = await raw_http(engine_env.rest_port, request, timeout=3)
        final = status_of(response)
        assert final is not None and final >= 200, response[:200]

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D4: a JSON body with an escaped lone surrogate "
                   "(\"\\ud800\") is parsed, then cannot be encoded toward the worker: "
                   "UnicodeEncodeError traceback and 500 INTERNAL_ERROR")
@pytest.mark.parametrize("body", [b'"\\ud800"', b'{"a": ["\\udfff"]}', b'{"\\ud83d": 1}'])
def test_d4_rest_json_lone_surrogate(loop: LoopThread, engine_env: EngineEnv,
                                     body: bytes) -> None:
    """``POST /fz/echo`` with the JSON text ``"\\ud800"``: today 500 and a traceback from
    ``WorkerConnection.send`` (``text.encode()``)."""
    loop.run(check_rest_request(engine_env, [Msg(json_post("/fz/echo", body))]), RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D9: a handler response header value with a control "
                   "character other than CR/LF/NUL (\\x01-\\x08, \\x0b, \\x0c, \\x0e-\\x1f, "
                   "\\x7f) makes aiohttp raise while writing the head: no response at all, "
                   "connection dropped, traceback logged")
@pytest.mark.parametrize("headers", [{"X-A": "\x01"}, {"Content-Type": "\x1f"},
                                     ["X-B: a\x7fb"]], ids=["x01", "x1f", "line-x7f"])
def test_d9_handler_header_with_control_character(loop: LoopThread, engine_env: EngineEnv,
                                                  headers: object) -> None:
    """A handler returning ``{"headers": {"X-A": "\\x01"}}``: today the HTTP client gets an
    empty reply (the header should be dropped like those with CR/LF)."""
    loop.run(check_envelope(engine_env, {"status_code": 201, "headers": headers}),
             RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D13: the REST API forwards JSON bodies nested up to "
                   "~1,000 levels, but iii_rx's frame decoder refuses more than ~200: an iii_rx "
                   "worker drops the invocation and the HTTP caller waits for the 504")
def test_d13_rest_body_deeper_than_the_protocol_limit(loop: LoopThread,
                                                      engine_env: EngineEnv) -> None:
    """An iii_rx worker bound to ``POST /fz-d13``; a JSON body nested 250 deep: today the
    worker logs "dropped a frame from the engine" and the caller gets 504 after
    ``rest_timeout_ms``, instead of the handler's answer or an immediate 4xx."""

    async def scenario() -> None:
        async with iii_rx.connect(engine_env.engine.url, name=f"d13-{uuid.uuid4().hex[:6]}",
                                  connect_timeout=10) as iii:
            iii.register_function("fz::d13", lambda data: {"status_code": 200, "body": "ok"})
            path = f"fz-d13-{uuid.uuid4().hex[:6]}"
            await iii.trigger("engine::register_trigger", {
                "trigger_type": "http", "function_id": "fz::d13",
                "config": {"api_path": path, "http_method": "POST"}})
            response = await raw_http(engine_env.rest_port,
                                      json_post(f"/{path}", nested_text(250, "array").encode()))
            assert status_of(response) != 504, response[:200]

    loop.run(scenario(), RUN_TIMEOUT)


# ------------------------------------------------------------------------- worker socket


@pytest.mark.xfail(strict=True, reason="D10: an invokefunction that fails validation but "
                   "carries an invocation_id gets no answer; its caller waits its whole timeout")
@pytest.mark.parametrize("frame", [
    {"type": "invokefunction", "function_id": 7, "invocation_id": "d10-a"},
    {"type": "invokefunction", "invocation_id": "d10-b", "data": {}},
    {"type": "invokefunction", "function_id": "engine::functions::list",
     "invocation_id": "d10-c", "action": {"type": "enqueue"}},
], ids=["function-id-int", "no-function-id", "enqueue-without-queue"])
def test_d10_invalid_invocation_with_id_is_answered(loop: LoopThread, engine_env: EngineEnv,
                                                    frame: dict) -> None:
    """``{"type":"invokefunction","function_id":7,"invocation_id":"d10-a"}``: today the
    engine logs "dropped a bad frame" and never answers ``d10-a``."""

    async def scenario() -> None:
        ws = await RawWs.open(engine_env.engine.url)
        try:
            await ws.send(frame)

            async def answer() -> dict:
                async for got in ws.frames():
                    if got.get("invocation_id") == frame["invocation_id"]:
                        return got
                raise AssertionError("connection closed")

            got = await asyncio.wait_for(answer(), 1.5)
            assert got.get("type") == "invocationresult" and "error" in got, got
        finally:
            await ws.close()

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D13: a worker's invocationresult nested deeper than "
                   "~200 levels is dropped by the engine's decoder; the caller waits its whole "
                   "timeout instead of getting the result or an error")
def test_d13_deep_result_reaches_the_caller(loop: LoopThread, engine_env: EngineEnv) -> None:
    """A raw worker answers a call with ``result`` = ``[[[...]]]`` 250 deep: today the engine
    logs "dropped a bad frame" and the caller gets nothing."""

    async def scenario() -> None:
        worker = await RawWs.open(engine_env.engine.url)
        caller = await RawWs.open(engine_env.engine.url)
        function_id = f"fz::deep-{uuid.uuid4().hex[:6]}"
        try:
            await worker.send({"type": "invokefunction", "function_id":
                               "engine::workers::register", "data": {"name": function_id},
                               "invocation_id": "reg"})
            await worker.send({"type": "registerfunction", "id": function_id})
            registered = False
            async for got in worker.frames():
                if got.get("invocation_id") == "reg":
                    registered = True
                    break
            assert registered
            await caller.send({"type": "invokefunction", "function_id": function_id,
                               "data": None, "invocation_id": "deep-call"})
            async for got in worker.frames():
                if got.get("type") == "invokefunction":
                    await worker.send(
                        '{"type":"invocationresult","invocation_id":'
                        + json.dumps(got["invocation_id"]) + ',"function_id":'
                        + json.dumps(function_id) + ',"result":'
                        + nested_text(250, "array") + "}")
                    break

            async def answer() -> dict:
                async for got in caller.frames():
                    if got.get("invocation_id") == "deep-call":
                        return got
                raise AssertionError("connection closed")

            await asyncio.wait_for(answer(), 1.5)
        finally:
            await worker.close()
            await caller.close()

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D14: a plain HTTP request with bytes after its head, "
                   "to a path the worker port refuses, trips an AssertionError inside websockets "
                   "(send_eof twice): traceback logged at ERROR, the client gets no response")
@pytest.mark.parametrize("path", ["/nope", "/ws/channels/x?key=k&dir=read", "/ws/channels/x"])
def test_d14_refused_path_with_trailing_bytes(loop: LoopThread, engine_env: EngineEnv,
                                              path: str) -> None:
    """``b"GET /nope HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\nxy"`` to the worker port: today an
    empty reply and "unexpected internal error" (with no bytes after the head, or one, it
    is a clean 404)."""

    async def scenario() -> None:
        with LogWatch() as logs:
            response = await raw_http(engine_env.engine.port,
                                      f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nxy"
                                      .encode())
            assert status_of(response) in (400, 404), response[:200]
        logs.assert_no_tracebacks("for one refused request")

    loop.run(scenario(), RUN_TIMEOUT)


# ---------------------------------------------------------------- HTTP-invoked functions


@contextlib.asynccontextmanager
async def capturing_stub() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback TCP server that records each raw request and answers ``200 {}``."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            while b"\r\n\r\n" not in data:
                chunk = await asyncio.wait_for(reader.read(65536), 2)
                if not chunk:
                    break
                data += chunk
            with contextlib.suppress(asyncio.TimeoutError):
                data += await asyncio.wait_for(reader.read(65536), 0.2)
        requests.append(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, LOOPBACK, 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), requests
    finally:
        server.close()
        await server.wait_closed()


async def call_http_function(env: EngineEnv, invocation: dict) -> dict:
    """Register an HTTP-invoked function with ``invocation`` on a fresh connection, call it,
    return the ``invocationresult``."""
    ws = await RawWs.open(env.engine.url)
    function_id = f"fz::http-{uuid.uuid4()}"
    try:
        await ws.send({"type": "invokefunction", "function_id": "engine::workers::register",
                       "data": {"name": function_id}, "invocation_id": "reg"})
        await ws.send({"type": "registerfunction", "id": function_id, "invocation": invocation})
        await ws.send({"type": "invokefunction", "function_id": function_id,
                       "data": {"a": 1}, "invocation_id": "call"})

        async def answer() -> dict:
            async for got in ws.frames():
                if got.get("invocation_id") == "call":
                    return got
            raise AssertionError("connection closed")

        return await asyncio.wait_for(answer(), 10)
    finally:
        await ws.close()


def well_formed(request: bytes, port: int) -> bool:
    """One request head of token-named headers, one Host (ours), a Content-Length that
    matches the body, no Transfer-Encoding, and the whole JSON body (``{"a": 1, ...}``)."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")[1:]
    names = [line.partition(b":")[0] for line in lines]
    token = all(name and all(c in b"!#$%&'*+-.^_`|~" or chr(c).isalnum() for c in name)
                for name in names)
    fields = [(n.lower(), line.partition(b":")[2].strip())
              for n, line in zip(names, lines, strict=True)]
    hosts = [v for n, v in fields if n == b"host"]
    lengths = [v for n, v in fields if n == b"content-length"]
    try:
        whole = json.loads(body).get("a") == 1
    except ValueError:
        whole = False
    return (token and whole and hosts == [f"127.0.0.1:{port}".encode()]
            and lengths == [str(len(body)).encode()]
            and not any(n == b"transfer-encoding" for n, _ in fields))


@pytest.mark.xfail(strict=True, reason="D7: HTTP-invoked function headers are not validated: "
                   "names that are not tokens are sent as malformed requests, and Host / "
                   "Content-Length / Transfer-Encoding override the engine's own (request "
                   "smuggling on the engine's pooled connections)")
@pytest.mark.parametrize("headers", [{"": ""}, {"a b": "1"}, {"Host": "evil.example"},
                                     {"Content-Length": "0"}, {"Transfer-Encoding": "chunked"}],
                         ids=["empty", "space", "host", "content-length", "te"])
def test_d7_http_invoked_headers_are_validated(loop: LoopThread, engine_env: EngineEnv,
                                               headers: dict) -> None:
    """``registerfunction`` with ``invocation: {"url": "http://127.0.0.1:P/",
    "headers": {"Content-Length": "0"}}`` then a call: today the engine sends
    ``Content-Length: 0`` and no body (the call's data is lost); ``Transfer-Encoding:
    chunked`` is sent beside a ``Content-Length`` (the classic smuggling ambiguity); ``""``
    sends a header line ``": "``. Fixed means: refused at registration (the call fails), or
    the header dropped (the request stays well-formed)."""

    async def scenario() -> None:
        async with capturing_stub() as (port, requests):
            answer = await call_http_function(engine_env, {
                "url": f"http://127.0.0.1:{port}/d7", "headers": headers})
            if "error" in answer:
                return  # refused: fine
            assert requests and well_formed(requests[0], port), requests[:1]

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D8: an HTTP-invoked function header value with CR, LF "
                   "or NUL is accepted at registration; every call then fails with "
                   "invocation_failed carrying the engine's own Python traceback (aiohttp's "
                   "ValueError is not caught)")
@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "\x00", "a\nb"])
def test_d8_http_invoked_header_value_with_newline(loop: LoopThread, engine_env: EngineEnv,
                                                   value: str) -> None:
    """``invocation: {"url": ..., "headers": {"X": "a\\r\\nX-Injected: 1"}}``: today the call
    answers ``invocation_failed: Forbidden control character ...`` with a stacktrace from
    ``iii_rx/engine/http_functions.py``, instead of a refusal at registration."""

    async def scenario() -> None:
        async with capturing_stub() as (port, _):
            answer = await call_http_function(engine_env, {
                "url": f"http://127.0.0.1:{port}/d8", "headers": {"X": value}})
        error = answer.get("error") or {}
        assert "Traceback" not in str(error.get("stacktrace")), error
        assert error.get("code") == "function_not_found", error  # refused at registration

    loop.run(scenario(), RUN_TIMEOUT)


def _json_answer(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body)) + body


@pytest.mark.xfail(strict=True, reason="D15: an HTTP-invoked function whose endpoint answers "
                   "JSON with an escaped lone surrogate crashes the engine's router task "
                   "(UnicodeEncodeError writing the result): traceback logged, the caller is "
                   "never answered")
def test_d15_endpoint_answer_with_lone_surrogate(loop: LoopThread,
                                                 engine_env: EngineEnv) -> None:
    """The endpoint answers ``200`` with the JSON text ``"\\ud800"``: today "task ... of
    the engine router crashed" and no ``invocationresult``."""
    loop.run(check_http_response(engine_env, [Msg(_json_answer(b'"\\ud800"'))], 2.0),
             RUN_TIMEOUT)


@pytest.mark.xfail(strict=True, reason="D16: an HTTP-invoked function whose endpoint answers "
                   "JSON nested ~1,000+ deep: RecursionError escapes, the call fails with "
                   "invocation_failed carrying the engine's own traceback (not a typed "
                   "invalid_response)")
def test_d16_endpoint_answer_nested_deep(loop: LoopThread, engine_env: EngineEnv) -> None:
    """The endpoint answers ``200`` with ``[[[...]]]`` 5,000 deep."""
    body = nested_text(5000, "array").encode()
    loop.run(check_http_response(engine_env, [Msg(_json_answer(body))]), RUN_TIMEOUT)


# ------------------------------------------------------------------------ channel decoders


@pytest.mark.xfail(strict=True, reason="D6: a JSON line nested 100,000 deep raises "
                   "RecursionError out of JsonLinesDecoder (and decode_json_lines / json_lines)")
@pytest.mark.parametrize("newline", [True, False])
def test_d6_json_lines_deep_nesting_is_a_typed_error(newline: bool) -> None:
    decoder = JsonLinesDecoder()
    with pytest.raises(IIIError):
        decoder.feed(nested_text(100_000, "array").encode() + (b"\n" if newline else b""))
        decoder.finish()


@pytest.mark.xfail(strict=True, reason="D11: the TruncatedStreamError of a JSON lines stream "
                   "cut inside its first line says 'line 2'")
def test_d11_truncated_json_line_names_the_right_line() -> None:
    decoder = JsonLinesDecoder()
    decoder.feed(b'{"a":')
    with pytest.raises(TruncatedStreamError, match="line 1 "):
        decoder.finish()


def _fanout(levels: int) -> bytes:
    """``v = [v, v]`` ``levels`` times with value sharing: ~6 bytes a level, 2**levels leaves
    once walked (json.dumps of the 30-level item would write ~4 GB)."""
    value: list = [0]
    for _ in range(levels):
        value = [value, value]
    return cbor2.dumps(value, value_sharing=True)


@pytest.mark.xfail(strict=True, reason="D12 (hardening): the CBOR sequence decoder accepts "
                   "value-sharing tags 28/29 from the peer, so a few bytes decode to cyclic "
                   "items or to a DAG that expands exponentially when walked or serialised")
@pytest.mark.parametrize("data", [b"\xd8\x1c\x81\xd8\x1d\x00", _fanout(30)],
                         ids=["self-reference", "191-bytes-2**30-leaves"])
def test_d12_cbor_shared_references_are_refused(data: bytes) -> None:
    """``d8 1c 81 d8 1d 00`` decodes to a list that contains itself (``[[...]]``); 191 bytes
    decode to a value with 2**30 leaves."""
    with pytest.raises(CborDecodeError):
        CborSequenceDecoder().feed(data)
