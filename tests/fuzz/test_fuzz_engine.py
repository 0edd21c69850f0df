"""The embedded engine over a real socket: bad frames never crash it or close the connection.

Each example opens a worker connection, sends a batch of fuzzed messages (known frame types
with wrong fields, unknown types, bad JSON, invalid UTF-8, binary frames, telemetry-looking
binary, 100,000-deep nesting, multi-megabyte strings, calls of every engine function with any
input, HTTP-invoked registrations on loopback URLs), then a ``ping``: the ``pong`` must come
back on the same connection, every valid sync call of an engine function must be answered,
nothing may be logged with a traceback, and a well-behaved worker on another connection must
still get a real round trip (and the REST port a real answer).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from fuzz_strategies import (
    BUILTIN_FUNCTIONS,
    REGISTER_WORKER,
    any_json,
    dumps,
    frame_dicts,
    fuzz_settings,
    http_function_batches,
    http_responses,
    invocation_ids,
    message_batches,
    nested_text,
    worker_port_requests,
)
from fuzz_support import RUN_TIMEOUT, LogWatch, LoopThread, Msg
from fuzz_targets import (
    EngineEnv,
    RawWs,
    check_engine_batch,
    check_http_response,
    check_worker_port_request,
)
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed


@fuzz_settings(40)
@given(message_batches)
def test_engine_survives_any_batch(loop: LoopThread, engine_env: EngineEnv,
                                   batch: list[Msg]) -> None:
    loop.run(check_engine_batch(engine_env, batch), RUN_TIMEOUT)


@fuzz_settings(30)
@given(st.lists(frame_dicts(["registerfunction", "invokefunction", "registertrigger",
                             "unregistertrigger", "unregisterfunction", "registertriggertype",
                             "triggerregistrationresult", "invocationresult"]),
                min_size=1, max_size=10))
def test_engine_survives_registration_and_call_sequences(
        loop: LoopThread, engine_env: EngineEnv, frames: list[dict]) -> None:
    """Sequences that build state: functions, bindings, trigger types, then calls of them and
    results for them (the namespace is fixed first, so each frame applies in order)."""
    batch = [Msg(dumps(f)) for f in [REGISTER_WORKER, *frames]]
    loop.run(check_engine_batch(engine_env, batch), RUN_TIMEOUT)


@fuzz_settings(30)
@given(http_function_batches())
def test_http_invoked_functions_always_answer(
        loop: LoopThread, engine_env: EngineEnv, frames: list[dict]) -> None:
    """HTTP-invoked functions with any options (loopback URLs only: the stub, the REST port,
    a closed port): every call is answered, none hangs, nothing is logged with a traceback."""
    loop.run(check_engine_batch(engine_env, [Msg(dumps(f)) for f in frames]), RUN_TIMEOUT)


@fuzz_settings(50)
@given(http_responses())
def test_any_endpoint_answer_of_an_http_invoked_function(
        loop: LoopThread, engine_env: EngineEnv, response: bytes) -> None:
    """The endpoint of an HTTP-invoked function answers anything (bad status lines, framing,
    encodings, redirects off the machine, JSON that is broken, deep or huge, or nothing):
    the call still gets a result or a typed error, in time."""
    loop.run(check_http_response(engine_env, [Msg(response)]), RUN_TIMEOUT)


def test_http_invoked_calls_reach_the_loopback_stub(loop: LoopThread,
                                                    engine_env: EngineEnv) -> None:
    """The harness itself: an HTTP-invoked function on the stub's URL is really called."""
    before = len(engine_env.stub_hits)
    frames = [REGISTER_WORKER,
              {"type": "registerfunction", "id": "fz::http-harness",
               "invocation": {"url": f"http://127.0.0.1:{engine_env.stub_port}/harness"}},
              {"type": "invokefunction", "function_id": "fz::http-harness", "data": {"a": 1},
               "invocation_id": "harness-call"}]
    loop.run(check_engine_batch(engine_env, [Msg(dumps(f)) for f in frames]), RUN_TIMEOUT)
    assert engine_env.stub_hits[before:] == ["/harness"]


def test_http_invoked_auth_reads_the_allowlisted_variable(loop: LoopThread,
                                                          engine_env: EngineEnv) -> None:
    """The harness itself: the engine's secret allowlist (``III_FUZZ_*``) lets fuzzed auth
    registrations through (a bearer token from ``III_FUZZ_SECRET`` reaches the stub), and a
    variable outside it is refused (``secret_not_allowed``), so the fuzzer exercises both."""
    before = len(engine_env.stub_hits)
    url = f"http://127.0.0.1:{engine_env.stub_port}"
    frames = [REGISTER_WORKER,
              {"type": "registerfunction", "id": "fz::http-auth-ok", "invocation": {
                  "url": f"{url}/auth-ok",
                  "auth": {"type": "bearer", "token_key": "III_FUZZ_SECRET"}}},
              {"type": "registerfunction", "id": "fz::http-auth-refused", "invocation": {
                  "url": f"{url}/auth-refused",
                  "auth": {"type": "bearer", "token_key": "PATH"}}}]

    async def scenario() -> tuple[dict, dict]:
        ws = await RawWs.open(engine_env.engine.url)
        try:
            for frame in frames:
                await ws.send(frame)
            for name in ("ok", "refused"):
                await ws.send({"type": "invokefunction", "function_id": f"fz::http-auth-{name}",
                               "data": {"a": 1}, "invocation_id": name})
            answers: dict[str, dict] = {}

            async def collect() -> None:
                async for got in ws.frames():
                    if got.get("invocation_id") in ("ok", "refused"):
                        answers[got["invocation_id"]] = got
                        if len(answers) == 2:
                            return

            await asyncio.wait_for(collect(), 10)
            return answers["ok"], answers["refused"]
        finally:
            await ws.close()

    ok, refused = loop.run(scenario(), RUN_TIMEOUT)
    assert "error" not in ok, ok
    assert engine_env.stub_hits[before:] == ["/auth-ok"]
    assert engine_env.stub_headers[before:][0].get("authorization") == \
        f"Bearer {os.environ['III_FUZZ_SECRET']}"
    error = refused.get("error") or {}
    assert error.get("code") == "function_not_found", refused
    assert "secret_not_allowed" in str(error.get("message")), refused


@fuzz_settings(40)
@given(st.sampled_from(sorted(BUILTIN_FUNCTIONS)), any_json, invocation_ids)
def test_every_engine_function_answers_any_input(
        loop: LoopThread, engine_env: EngineEnv, function_id: str, data: object,
        iid: str) -> None:
    frame = {"type": "invokefunction", "function_id": function_id, "data": data,
             "invocation_id": iid}
    loop.run(check_engine_batch(engine_env, [Msg(dumps(frame))]), RUN_TIMEOUT)


@pytest.mark.parametrize("depth", [200, 201, 1_000, 100_000])
def test_deep_nesting_is_dropped_not_fatal(loop: LoopThread, engine_env: EngineEnv,
                                           depth: int) -> None:
    deep = nested_text(depth, "array")
    batch = [Msg(deep), Msg(deep.encode()),
             Msg('{"type":"invokefunction","function_id":"fz::a","data":' + deep + "}")]
    loop.run(check_engine_batch(engine_env, batch), RUN_TIMEOUT)


def test_multi_megabyte_frames(loop: LoopThread, engine_env: EngineEnv) -> None:
    big = "é" * 8_000_000
    batch = [Msg(dumps({"type": "invokefunction", "function_id": "missing::x",
                        "invocation_id": "big", "data": big})),
             Msg(dumps({"type": "registerfunction", "id": "fz::big", "description": big})),
             Msg(b"\x00" * 10_000_000)]
    loop.run(check_engine_batch(engine_env, batch), RUN_TIMEOUT)


# ---------------------------------------------------------------------- transport-level


@fuzz_settings(50)
@given(worker_port_requests())
def test_worker_port_survives_any_handshake(loop: LoopThread, engine_env: EngineEnv,
                                            request: bytes) -> None:
    """Garbage, plain HTTP and websocket upgrades (well-formed or not) to any path of the
    worker port, channel paths with any id, key and direction included."""
    loop.run(check_worker_port_request(engine_env, [Msg(request)]), RUN_TIMEOUT)


@pytest.fixture(scope="module")
def small_engine(loop: LoopThread) -> EngineEnv:
    """An engine whose message limit is 64 KiB, to reach it cheaply."""
    env = loop.run(EngineEnv(max_message_bytes=65536).start(), RUN_TIMEOUT)
    yield env
    loop.run(env.stop(), RUN_TIMEOUT)


async def _closed_with(env: EngineEnv, send: object) -> int | None:
    ws = await RawWs.open(env.engine.url)
    try:
        await send(ws)  # type: ignore[operator]
        await ws.ws.send('{"type":"ping"}')
        try:
            while True:
                raw = await asyncio.wait_for(ws.ws.recv(), 10)
                if json.loads(raw).get("type") == "pong":
                    return None
        except ConnectionClosed:
            return ws.ws.close_code
    finally:
        await ws.close()


@fuzz_settings(8)
@given(st.integers(min_value=65_537, max_value=400_000), st.booleans())
def test_oversize_message_closes_1009_and_engine_serves(
        loop: LoopThread, small_engine: EngineEnv, size: int, as_text: bool) -> None:
    payload = "a" * size if as_text else b"a" * size

    async def scenario() -> int | None:
        with LogWatch() as logs:
            code = await _closed_with(small_engine, lambda ws: ws.ws.send(payload))
            await small_engine.healthy()
        logs.assert_no_tracebacks()
        return code

    assert loop.run(scenario(), RUN_TIMEOUT) == 1009


@pytest.mark.parametrize("payload", [b"\xff", b'{"type":"ping","x":"\xed\xa0\x80"}',
                                     b"\xc3", b"ok\xf8\x88\x80\x80\x80"])
def test_invalid_utf8_in_a_text_frame_closes_1007_and_engine_serves(
        loop: LoopThread, engine_env: EngineEnv, payload: bytes) -> None:
    """Not UTF-8 in a *text* frame breaks the websocket protocol: 1007, nothing else."""

    async def scenario() -> int | None:
        with LogWatch() as logs:
            code = await _closed_with(engine_env, lambda ws: ws.ws.send(payload, text=True))
            await engine_env.healthy()
        logs.assert_no_tracebacks()
        return code

    assert loop.run(scenario(), RUN_TIMEOUT) == 1007


def test_fragmented_garbage_and_pings(loop: LoopThread, engine_env: EngineEnv) -> None:
    """A fragmented message of garbage, websocket pings in between: still open, still fine."""

    async def scenario() -> int | None:
        async def send(ws: RawWs) -> None:
            await ws.ws.send(iter(["{not", " json", "\u0000", "}"]))
            await ws.ws.send(iter([b"\xff", b"OTLP", b"\x00" * 1000]))
            pong = await ws.ws.ping(b"x")
            await asyncio.wait_for(pong, 10)

        with LogWatch() as logs:
            code = await _closed_with(engine_env, send)
            await engine_env.healthy()
        logs.assert_no_tracebacks()
        return code

    assert loop.run(scenario(), RUN_TIMEOUT) is None
