"""The iii_rx client fed garbage by a fake engine: it never crashes, keeps its connection,
and can still call.

The fake engine (a plain ``websockets`` server on 127.0.0.1) does the engine's side of the
handshake, then pushes fuzzed messages: engine frames with wrong fields (invocations of the
client's functions and of unknown ones, results for calls never made, trigger deliveries for
its trigger type, rejections of a function, errors), unknown types, bad JSON, invalid UTF-8,
binary frames, 100,000-deep nesting, multi-megabyte strings, channel refs. Then a ``ping``:
the client's ``pong`` proves it handled everything before; then a real call through the same
connection must return the right value, with no reconnect and no traceback logged.

The one frame the client must treat as fatal, a worker rejection (``registrationrejected``
with a code other than ``FUNCTION_NAMESPACE_CONFLICT``), is rewritten into a non-fatal one.
"""

from __future__ import annotations

import pytest
from fuzz_strategies import (
    any_json,
    dumps,
    frame_dicts,
    fuzz_settings,
    invocation_ids,
    message_batches,
    nested_text,
)
from fuzz_support import RUN_TIMEOUT, LoopThread, Msg
from fuzz_targets import ClientEnv, check_client_batch, check_client_handshake
from hypothesis import given
from hypothesis import strategies as st

import iii_rx

# The client under test runs on its own thread while hypothesis draws examples, and websockets'
# keepalive draws each ping's payload from the global ``random`` (its connection.ping): not the
# strategies' doing, so hypothesis's warning about ``random`` inside strategies is beside the point.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies")

ENGINE_TO_WORKER = ["invokefunction", "invocationresult", "registertrigger", "unregistertrigger",
                    "triggerregistrationresult", "registrationrejected", "workerregistered",
                    "error", "ping", "pong", "functionregistered", "observeradded",
                    "observerremoved", "observeresult", "observerstatechanged"]


@fuzz_settings(40)
@given(message_batches)
def test_client_survives_any_batch(loop: LoopThread, client_env: ClientEnv,
                                   batch: list[Msg]) -> None:
    loop.run(check_client_batch(client_env, batch), RUN_TIMEOUT)


@fuzz_settings(40)
@given(st.lists(frame_dicts(ENGINE_TO_WORKER), min_size=1, max_size=8))
def test_client_survives_engine_frames_with_wrong_fields(
        loop: LoopThread, client_env: ClientEnv, frames: list[dict]) -> None:
    loop.run(check_client_batch(client_env, [Msg(dumps(f)) for f in frames]), RUN_TIMEOUT)


channel_refs = st.fixed_dictionaries({
    "channel_id": st.one_of(st.uuids().map(str), st.text(max_size=10)),
    "access_key": st.one_of(st.text(max_size=10), any_json),
    "direction": st.one_of(st.sampled_from(["read", "write"]), any_json),
})


@fuzz_settings(30)
@given(st.sampled_from(["fz::a", "fz::b", "fz::unknown"]),
       st.one_of(any_json, channel_refs, st.lists(channel_refs, max_size=2),
                 st.dictionaries(st.text(max_size=5), channel_refs, max_size=2)),
       st.one_of(st.none(), invocation_ids))
def test_client_handlers_get_any_input(loop: LoopThread, client_env: ClientEnv,
                                       function_id: str, data: object, iid: str | None) -> None:
    """Invocations of the client's functions (an echo, a failing one) and of an unknown one,
    with any payload, channel refs included (they point at the fake engine, on loopback)."""
    frame = {"type": "invokefunction", "function_id": function_id, "data": data}
    if iid is not None:
        frame["invocation_id"] = iid
    loop.run(check_client_batch(client_env, [Msg(dumps(frame))]), RUN_TIMEOUT)


@fuzz_settings(15)
@given(message_batches)
def test_client_connects_through_any_preamble(loop: LoopThread, batch: list[Msg]) -> None:
    """Garbage before the engine's ``workerregistered``: the client still connects (on its
    first connection) and calls."""
    loop.run(check_client_handshake(batch), RUN_TIMEOUT)


def test_client_survives_deep_and_huge_frames(loop: LoopThread, client_env: ClientEnv) -> None:
    deep = nested_text(100_000, "array")
    batch = [Msg(deep), Msg(deep.encode()),
             Msg('{"type":"invokefunction","function_id":"fz::a","invocation_id":"d",'
                 '"data":' + deep + "}"),
             Msg(dumps({"type": "invokefunction", "function_id": "fz::a",
                        "invocation_id": "huge", "data": "é" * 6_000_000})),
             Msg(b"\xff" * 1_000_000)]
    loop.run(check_client_batch(client_env, batch), RUN_TIMEOUT)


def test_the_client_property_can_fail(loop: LoopThread) -> None:
    """The harness itself: a client that went down (here, rejected by the fake engine, which
    is fatal by design) fails the property; so a client that crashed would too."""

    async def scenario() -> None:
        env = await ClientEnv().start()
        try:
            assert env.fake.ws is not None
            await env.fake.ws.send(dumps({"type": "registrationrejected",
                                          "code": "WORKER_NAMESPACE_CONFLICT",
                                          "worker_name": "x", "namespace": "default"}))
            try:
                await check_client_batch(env, [Msg('{"type":"pong"}')])
            except (AssertionError, iii_rx.IIIError):
                return
            raise AssertionError("the property held for a rejected client")
        finally:
            await env.stop()

    loop.run(scenario(), RUN_TIMEOUT)
