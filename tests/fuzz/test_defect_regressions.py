"""Defects the fuzzing found and that are fixed, each kept as the regression test of its fix.

Each test was a strict xfail of ``test_known_defects.py`` until its defect was fixed; it now
asserts the behaviour docs/http.md and docs/guarantees.md promise. The inputs that triggered
them are generated again by the main properties (their filters in ``fuzz_strategies`` and
``fuzz_targets`` are gone) and replayed from ``corpus/`` (no ``"xfail"`` key any more).

| defect | was | now (regression test) |
| --- | --- | --- |
| D1 | a JSON body nested 100,000 deep: ``RecursionError``, 500, traceback | 400 ``INVALID_JSON`` |
| D2 | every malformed HTTP request logged an aiohttp traceback | 400, no traceback |
| D3 | a handler ``status_code`` 100-199 sent as the final response | 500 ``INVALID_STATUS`` |
| D4 | a JSON body with a lone surrogate escape: ``UnicodeEncodeError``, 500 | 400 |
| D7 | HTTP-invoked headers not validated (request smuggling) | refused at registration |
| D8 | an HTTP-invoked header value with CR/LF/NUL: calls fail with a traceback | refused |
| D9 | a handler header value with a control character: no response at all | header dropped |
| D10 | an invalid ``invokefunction`` with an ``invocation_id`` never answered | answered at once |
| D12 | a CBOR channel item with value sharing (tags 28/29): cyclic, exponential | typed error |
| D13 (REST) | a body deeper than the frame limit: the worker drops it, 504 | 400 at once |
| D15 | an endpoint answer with a lone surrogate crashed the router task | typed error |
| D16 | an endpoint answer nested 5,000 deep: the engine's traceback in the error | typed error |
| D17 | encoded surrogate bytes in a JSON body / endpoint answer: 500 | not UTF-8 |

Minimal reproductions are in each docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import cbor2
import pytest
from fuzz_strategies import nested_text
from fuzz_support import LOOPBACK, RUN_TIMEOUT, LogWatch, LoopThread, Msg
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


async def _refused_400(env: EngineEnv, request: bytes) -> None:
    """``request`` is answered 400 ``INVALID_JSON`` (docs/http.md, "Engine answers"), then
    passes the REST property (no 5xx, no traceback, the engine still serves)."""
    with LogWatch() as logs:
        response = await raw_http(env.rest_port, request)
        assert status_of(response) == 400, response[:300]
        assert b"INVALID_JSON" in response, response[:300]
    logs.assert_no_tracebacks("by the REST API")
    await check_rest_request(env, [Msg(request)])


# ------------------------------------------------------------------------------- REST API


def test_d1_json_body_nested_100000_deep_gets_400(loop: LoopThread,
                                                  engine_env: EngineEnv) -> None:
    """D1 (fixed): ``POST /fz/echo`` with ``Content-Type: application/json`` and ``[[[...]]]``
    100,000 deep is answered 400 ``INVALID_JSON``, no traceback (it was a ``RecursionError``:
    500 "Server got itself in trouble")."""
    request = json_post("/fz/echo", nested_text(100_000, "array").encode())
    loop.run(_refused_400(engine_env, request), RUN_TIMEOUT)


def test_d2_malformed_request_gets_400_and_logs_no_traceback(loop: LoopThread,
                                                             engine_env: EngineEnv) -> None:
    """D2 (fixed, issue 12 item 5): ``b"GET /fz/echo HTTP/1.1\\r\\n: x\\r\\n\\r\\n"`` to the REST
    port is answered 400 and logged without a traceback (it logged aiohttp's BadHttpMessage
    traceback at ERROR: 1,000 such requests, 1,000 tracebacks)."""

    async def scenario() -> None:
        with LogWatch() as logs:
            response = await raw_http(engine_env.rest_port,
                                      b"GET /fz/echo HTTP/1.1\r\n: x\r\n\r\n")
            assert status_of(response) == 400, response[:200]
        logs.assert_no_tracebacks("for one malformed request")

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.parametrize("status", [100, 103, 199])
def test_d3_handler_status_1xx_gets_a_final_500(loop: LoopThread, engine_env: EngineEnv,
                                                status: int) -> None:
    """D3 (fixed): a handler returning ``{"status_code": 100}`` gets a final response, 500
    ``INVALID_STATUS`` (the client used to read ``HTTP/1.1 100 Continue`` and nothing else)."""

    async def scenario() -> None:
        engine_env.good.next_envelope = {"status_code": status, "body": "x"}
        request = (f"GET {engine_env.envelope_path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
                   f"Connection: close\r\n\r\n").encode()
        response = await raw_http(engine_env.rest_port, request, timeout=3)
        final = status_of(response)
        assert final is not None and final >= 200, response[:200]
        assert final == 500 and b"INVALID_STATUS" in response, response[:300]

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.parametrize("body", [b'"\\ud800"', b'{"a": ["\\udfff"]}', b'{"\\ud83d": 1}'])
def test_d4_json_body_with_a_lone_surrogate_gets_400(loop: LoopThread, engine_env: EngineEnv,
                                                     body: bytes) -> None:
    """D4 (fixed): ``POST /fz/echo`` with the JSON text ``"\\ud800"`` is answered 400
    ``INVALID_JSON`` (it was 500 and a ``UnicodeEncodeError`` traceback from
    ``WorkerConnection.send``)."""
    loop.run(_refused_400(engine_env, json_post("/fz/echo", body)), RUN_TIMEOUT)


@pytest.mark.parametrize("body", [b'"\xed\xa0\x80"', b'{"a": ["\xed\xbf\xbf"]}'])
def test_d17_json_body_with_encoded_surrogate_bytes_is_not_json(
        loop: LoopThread, engine_env: EngineEnv, body: bytes) -> None:
    """D17 (fixed): ``POST /fz/echo`` with the bytes ``"\\xed\\xa0\\x80"`` (a surrogate
    encoded as UTF-8 would, which UTF-8 forbids) was answered 500 with a traceback:
    ``json.loads`` decodes bytes with ``surrogatepass``. Bytes that are not UTF-8 are no JSON
    body (docs/http.md), so the handler runs, as for ``\\xff``."""

    async def scenario() -> None:
        with LogWatch() as logs:
            response = await raw_http(engine_env.rest_port, json_post("/fz/echo", body))
            assert status_of(response) == 200, response[:300]
        logs.assert_no_tracebacks("by the REST API")
        await check_rest_request(engine_env, [Msg(json_post("/fz/echo", body))])

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.parametrize("headers", [{"X-A": "\x01"}, {"Content-Type": "\x1f"},
                                     ["X-B: a\x7fb"]], ids=["x01", "x1f", "line-x7f"])
def test_d9_handler_header_with_a_control_character_is_dropped(
        loop: LoopThread, engine_env: EngineEnv, headers: object) -> None:
    """D9 (fixed): a handler returning ``{"headers": {"X-A": "\\x01"}}`` gets its response,
    without that header (the HTTP client used to get an empty reply and a traceback was
    logged). ``check_envelope`` asserts the status and a head free of control characters."""

    async def scenario() -> None:
        await check_envelope(engine_env, {"status_code": 201, "headers": headers})
        engine_env.good.next_envelope = {"status_code": 201, "headers": headers}
        request = (f"GET {engine_env.envelope_path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
                   f"Connection: close\r\n\r\n").encode()
        response = await raw_http(engine_env.rest_port, request, timeout=5)
        head = response.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\nx-a:" not in head and b"\r\nx-b:" not in head, head[:300]

    loop.run(scenario(), RUN_TIMEOUT)


def test_d13_rest_body_deeper_than_the_protocol_limit_gets_400(
        loop: LoopThread, engine_env: EngineEnv) -> None:
    """D13, REST side (fixed): an iii_rx worker bound to ``POST /fz-d13``; a JSON body nested
    250 deep (above the REST API's 128 levels, below what the frame decoders refuse) is
    answered 400 at once (the worker used to log "dropped a frame from the engine" and the
    caller got 504 after ``rest_timeout_ms``)."""

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
            assert status_of(response) == 400 and b"INVALID_JSON" in response, response[:300]

    loop.run(scenario(), RUN_TIMEOUT)


# ------------------------------------------------------------------------- worker socket


@pytest.mark.parametrize("frame", [
    {"type": "invokefunction", "function_id": 7, "invocation_id": "d10-a"},
    {"type": "invokefunction", "invocation_id": "d10-b", "data": {}},
    {"type": "invokefunction", "function_id": "engine::functions::list",
     "invocation_id": "d10-c", "action": {"type": "enqueue"}},
], ids=["function-id-int", "no-function-id", "enqueue-without-queue"])
def test_d10_invalid_invocation_with_an_id_is_answered(loop: LoopThread, engine_env: EngineEnv,
                                                       frame: dict) -> None:
    """D10 (fixed): ``{"type":"invokefunction","function_id":7,"invocation_id":"d10-a"}`` is
    answered at once with a ``deserialization_error`` result (docs/guarantees.md, "Invalid
    calls"); the engine used to log "dropped a bad frame" and never answer ``d10-a``."""

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
            assert got["error"].get("code") == "deserialization_error", got
        finally:
            await ws.close()

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


def _refused_at_registration(answer: dict) -> None:
    """docs/http.md, "When a registration is refused": the call fails ``function_not_found``
    whose message carries the reason, ``invalid_header``, and no engine traceback."""
    error = answer.get("error") or {}
    assert "Traceback" not in str(error.get("stacktrace")), error
    assert error.get("code") == "function_not_found", error
    assert "invalid_header" in str(error.get("message")), error


@pytest.mark.parametrize("headers", [{"": ""}, {"a b": "1"}, {"Host": "evil.example"},
                                     {"Content-Length": "0"}, {"Transfer-Encoding": "chunked"}],
                         ids=["empty", "space", "host", "content-length", "te"])
def test_d7_http_invoked_headers_are_validated(loop: LoopThread, engine_env: EngineEnv,
                                               headers: dict) -> None:
    """D7 (fixed): ``registerfunction`` with ``invocation: {"url": "http://127.0.0.1:P/",
    "headers": {"Content-Length": "0"}}`` then a call: the registration is refused with
    ``invalid_header`` and nothing is sent (the engine used to send ``Content-Length: 0`` and
    no body; ``Transfer-Encoding: chunked`` beside a ``Content-Length``, the classic smuggling
    ambiguity; ``""`` as a header line ``": "``). Whatever is sent must be well-formed."""

    async def scenario() -> None:
        async with capturing_stub() as (port, requests):
            answer = await call_http_function(engine_env, {
                "url": f"http://127.0.0.1:{port}/d7", "headers": headers})
            if "error" in answer:
                _refused_at_registration(answer)
                assert requests == [], requests[:1]
                return
            assert requests and well_formed(requests[0], port), requests[:1]

    loop.run(scenario(), RUN_TIMEOUT)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "\x00", "a\nb"])
def test_d8_http_invoked_header_value_with_a_newline_is_refused(
        loop: LoopThread, engine_env: EngineEnv, value: str) -> None:
    """D8 (fixed): ``invocation: {"url": ..., "headers": {"X": "a\\r\\nX-Injected: 1"}}`` is
    refused at registration (``invalid_header``); every call used to fail
    ``invocation_failed: Forbidden control character ...`` with a stacktrace from
    ``iii_rx/engine/http_functions.py``."""

    async def scenario() -> None:
        async with capturing_stub() as (port, requests):
            answer = await call_http_function(engine_env, {
                "url": f"http://127.0.0.1:{port}/d8", "headers": {"X": value}})
            assert requests == [], requests[:1]
        _refused_at_registration(answer)

    loop.run(scenario(), RUN_TIMEOUT)


def _json_answer(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body)) + body


def test_d15_endpoint_answer_with_a_lone_surrogate_is_a_typed_error(
        loop: LoopThread, engine_env: EngineEnv) -> None:
    """D15 (fixed): the endpoint answers ``200`` with the JSON text ``"\\ud800"``: the call is
    answered in time with a typed error, no traceback (it used to crash "task ... of the
    engine router" and the caller was never answered)."""
    loop.run(check_http_response(engine_env, [Msg(_json_answer(b'"\\ud800"'))], 2.0),
             RUN_TIMEOUT)


def test_d16_endpoint_answer_nested_5000_deep_is_a_typed_error(
        loop: LoopThread, engine_env: EngineEnv) -> None:
    """D16 (fixed): the endpoint answers ``200`` with ``[[[...]]]`` 5,000 deep: the call fails
    with a typed error (it used to fail ``invocation_failed`` carrying the engine's own
    ``RecursionError`` traceback)."""
    body = nested_text(5000, "array").encode()
    loop.run(check_http_response(engine_env, [Msg(_json_answer(body))]), RUN_TIMEOUT)


@pytest.mark.parametrize("body", [b'"\\ud800"', nested_text(5000, "array").encode(),
                                  nested_text(129, "object").encode(), b'["\xed\xa0\x80"]'],
                         ids=["D15-lone-surrogate", "D16-5000-deep", "129-deep",
                              "D17-surrogate-bytes"])
def test_d15_d16_endpoint_answer_fails_invalid_response(loop: LoopThread,
                                                        engine_env: EngineEnv,
                                                        body: bytes) -> None:
    """docs/http.md, "Outcomes": a 2xx answer with JSON nested deeper than 128 levels or
    with a lone surrogate escape fails ``invalid_response`` (no frame could carry it)."""

    async def scenario() -> None:
        engine_env.responder.response = _json_answer(body)
        answer = await call_http_function(engine_env, {
            "url": f"http://127.0.0.1:{engine_env.responder.port}/d15-d16"})
        error = answer.get("error") or {}
        assert error.get("code") == "invalid_response", answer
        assert "Traceback" not in str(error.get("stacktrace")), error

    loop.run(scenario(), RUN_TIMEOUT)
@pytest.mark.parametrize("newline", [True, False])
def test_d6_a_json_line_nested_100000_deep_is_a_typed_error(newline: bool) -> None:
    """D6 (fixed): the RecursionError of a too-deep line was not caught."""
    decoder = JsonLinesDecoder()
    with pytest.raises(IIIError):
        decoder.feed(nested_text(100_000, "array").encode() + (b"\n" if newline else b""))
        decoder.finish()


def test_d11_a_stream_cut_in_its_first_line_names_line_1() -> None:
    """D11 (fixed): the error said 'line 2'."""
    decoder = JsonLinesDecoder()
    decoder.feed(b'{"a":')
    with pytest.raises(TruncatedStreamError, match="line 1 "):
        decoder.finish()


def test_d13_a_result_too_deep_to_read_ends_the_call_at_once(
        loop: LoopThread, engine_env: EngineEnv) -> None:
    """D13 (fixed): a raw worker answers a call with ``result`` = ``[[[...]]]`` 250 deep, more
    than the frame decoder reads; the engine used to drop it and leave the caller waiting for
    its timeout. Now the call ends at once with ``invalid_result``."""

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

            got = await asyncio.wait_for(answer(), 1.5)
            assert got["type"] == "invocationresult"
            assert got["error"]["code"] == "invalid_result"
        finally:
            await worker.close()
            await caller.close()

    loop.run(scenario(), RUN_TIMEOUT)


# ------------------------------------------------------------------------ channel decoders


def _fanout(levels: int) -> bytes:
    """``v = [v, v]`` ``levels`` times with value sharing: ~6 bytes a level, 2**levels leaves
    once walked (json.dumps of the 30-level item would write ~4 GB)."""
    value: list = [0]
    for _ in range(levels):
        value = [value, value]
    return cbor2.dumps(value, value_sharing=True)


@pytest.mark.parametrize("data", [b"\xd8\x1c\x81\xd8\x1d\x00", b"\xd9\x00\x1c\x81\xd8\x1d\x00",
                                  _fanout(30)],
                         ids=["self-reference", "self-reference-wide-head",
                              "191-bytes-2**30-leaves"])
def test_d12_cbor_shared_references_are_refused(data: bytes) -> None:
    """D12 (fixed): ``d8 1c 81 d8 1d 00`` decoded to a list that contains itself (``[[...]]``),
    and 191 bytes to a value with 2**30 leaves; tag 28 with a wider head than needed too."""
    with pytest.raises(CborDecodeError, match="value sharing"):
        CborSequenceDecoder().feed(data)


def test_d12_items_before_a_shared_one_come_first_and_unshared_tag_28_is_fine() -> None:
    decoder = CborSequenceDecoder()
    ok = cbor2.dumps([[1], [1]])  # equal values, distinct objects: no sharing
    lone = b"\xd8\x1c\x82\x01\x02"  # a shareable value referred to by nothing
    assert decoder.feed(ok + lone + _fanout(3) + ok) == [[[1], [1]], [1, 2]]
    with pytest.raises(CborDecodeError, match="value sharing"):
        decoder.feed(ok)

