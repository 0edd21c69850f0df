"""The REST port under malformed HTTP: never a crash answer, never a hang, still serving.

Each example writes one raw HTTP/1.x request over TCP to the engine's REST port (bad request
lines, bad or huge headers, bad framing — wrong, doubled or negative ``Content-Length``,
broken chunked encoding — JSON bodies that are broken, deeply nested, huge or not UTF-8)
against real routes bound to a well-behaved worker. The answer must come (or the connection
close) within the bound, must not be a 500/502/503 or carry a traceback, nothing may be logged
with a traceback, and afterwards a worker round trip and a REST request still succeed.

A second property fuzzes the other side of the REST API: the handler's result (the buffered
response envelope of docs/protocol.md §6.5.3: any status, headers, body, or not an envelope at all).
"""

from __future__ import annotations

import pytest
from fuzz_strategies import envelopes, fuzz_settings, http_requests, json_bodies
from fuzz_support import RUN_TIMEOUT, LoopThread, Msg
from fuzz_targets import EngineEnv, check_envelope, check_rest_request, raw_http, status_of
from hypothesis import given
from hypothesis import strategies as st


@fuzz_settings(100)
@given(http_requests())
def test_rest_port_survives_any_request(loop: LoopThread, engine_env: EngineEnv,
                                        request: bytes) -> None:
    loop.run(check_rest_request(engine_env, [Msg(request)]), RUN_TIMEOUT)


@fuzz_settings(40)
@given(json_bodies(), st.sampled_from(["/fz/echo", "/fz/items/7"]),
       st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]))
def test_rest_json_bodies(loop: LoopThread, engine_env: EngineEnv, body: bytes, path: str,
                          method: str) -> None:
    request = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
               f"Connection: close\r\n\r\n").encode() + body
    loop.run(check_rest_request(engine_env, [Msg(request)]), RUN_TIMEOUT)


@fuzz_settings(60)
@given(envelopes, st.sampled_from(["GET", "POST", "HEAD"]))
def test_any_handler_result_becomes_a_final_response(
        loop: LoopThread, engine_env: EngineEnv, envelope: object, method: str) -> None:
    loop.run(check_envelope(engine_env, envelope, method), RUN_TIMEOUT)


@pytest.mark.parametrize("size", [1 << 20, 16 << 20])
def test_huge_json_body(loop: LoopThread, engine_env: EngineEnv, size: int) -> None:
    body = b'{"a":"' + b"x" * size + b'"}'
    request = (f"POST /fz/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
               f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    loop.run(check_rest_request(engine_env, [Msg(request)]), RUN_TIMEOUT)


def test_json_body_over_the_limit_is_413(loop: LoopThread, engine_env: EngineEnv) -> None:
    """A JSON body above the 64 MiB read limit: 413, not a crash, and the engine serves."""
    body = b'"' + b"x" * (64 * 1024 * 1024 + 16) + b'"'
    request = (f"POST /fz/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
               f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

    async def scenario() -> None:
        response = await raw_http(engine_env.rest_port, request)
        assert status_of(response) == 413, response[:300]
        await check_rest_request(engine_env, [])

    loop.run(scenario(), RUN_TIMEOUT)
