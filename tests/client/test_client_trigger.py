"""Calling: trigger() as a lazy Single, typed errors, timeouts, retry, cancellation, close."""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import reactivex
from client_helpers import wait_for
from reactivex import operators as ops

import iii_rx
from iii_rx import (
    IIIConnectionError,
    IIIInvocationError,
    IIITimeoutError,
    Invocation,
    Single,
    TriggerAction,
)
from iii_rx.engine import Engine


async def test_calls_an_official_sdk_function(engine: Engine, name: str,
                                              official: Callable[..., Awaitable[Any]]) -> None:
    peer = await official(engine.url)

    def fails(data: Any) -> None:
        raise ValueError(f"bad input {data!r}")

    peer.register_function("sdk::double", lambda data: data["x"] * 2)
    peer.register_function("sdk::fails", fails)
    async with iii_rx.connect(engine.url, name=name) as iii:
        await wait_for_function(iii, "sdk::fails")
        assert await iii.trigger("sdk::double", {"x": 21}) == 42
        with pytest.raises(IIIInvocationError) as info:
            await iii.trigger("sdk::fails", 7)
        error = info.value
        assert error.code == "invocation_failed"
        assert error.message == "bad input 7"
        assert error.function_id == "sdk::fails" and error.invocation_id
        assert "ValueError" in (error.stacktrace or "")
        with pytest.raises(IIIInvocationError) as missing:
            await iii.trigger("sdk::nope")
        assert missing.value.code == "function_not_found"
        assert type(missing.value) is IIIInvocationError


async def wait_for_function(iii: iii_rx.Client, function_id: str) -> None:
    for _ in range(500):
        listing = await iii.trigger("engine::functions::list", {})
        if any(f["function_id"] == function_id for f in listing["functions"]):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{function_id} never registered")


async def test_request_dict_form_and_void(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        got: list[Any] = []
        iii.function("t::sink").subscribe(lambda inv: (got.append(inv.data), inv.reply(None)))
        assert await iii.trigger({"function_id": "t::sink", "payload": {"a": 1}}) is None
        assert await iii.trigger("t::sink", 2, action=TriggerAction.void()) is None
        assert await iii.trigger("t::sink", 3, action=TriggerAction.Void()) is None
        assert await iii.trigger({"function_id": "t::sink", "payload": 4,
                                  "action": {"type": "void"}}) is None
        await wait_for(lambda: len(got) == 4)
        first = got[0]
        # the engine adds it (docs/protocol.md §4.3)
        assert first.pop("_caller_worker_id") == iii.worker_id
        assert sorted(got, key=str) == sorted([{"a": 1}, 2, 3, 4], key=str)


async def test_enqueue_goes_through_the_engine_queue(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        got: asyncio.Queue[Any] = asyncio.Queue()
        iii.register_function("t::queued", got.put_nowait)
        assert TriggerAction.Enqueue(queue="q") == TriggerAction.enqueue("q")
        receipt = await iii.trigger("t::queued", 1, action=TriggerAction.enqueue("jobs"))
        assert isinstance(receipt["messageReceiptId"], str)
        assert await asyncio.wait_for(got.get(), 10) == 1


async def test_single_is_lazy_and_each_use_calls(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        calls: list[int] = []
        iii.register_function("t::count", lambda x: calls.append(x) or len(calls))
        single = iii.trigger("t::count", 1)
        assert isinstance(single, Single)
        await asyncio.sleep(0.05)
        assert calls == []  # nothing sent yet
        assert await single == 1
        assert await single == 2  # awaiting again calls again
        values: list[int] = []
        done = asyncio.Event()
        single.subscribe(on_next=values.append, on_completed=done.set)
        await asyncio.wait_for(done.wait(), 5)
        assert values == [3]


async def test_retry_reinvokes(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        attempts: list[int] = []

        def flaky(data: Any) -> str:
            attempts.append(1)
            if len(attempts) < 3:
                raise RuntimeError("not yet")
            return "finally"

        iii.register_function("t::flaky", flaky)
        result = await iii.trigger("t::flaky").pipe(ops.retry(3))
        assert result == "finally"
        assert len(attempts) == 3


async def test_pipe_returns_a_single_of_the_last_value(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("t::list", lambda n: list(range(n)))
        piped = iii.trigger("t::list", 4).pipe(ops.flat_map(reactivex.from_iterable),
                                               ops.map(lambda x: x * 10))
        assert isinstance(piped, Single)
        assert await piped == 30
        empty = iii.trigger("t::list", 0).pipe(ops.flat_map(reactivex.from_iterable))
        with pytest.raises(iii_rx.EmptySingleError):
            await empty


async def test_thousand_concurrent_triggers(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        async def echo(data: int) -> int:
            return data

        iii.register_function("t::echo", echo)
        results = await asyncio.gather(*(iii.trigger("t::echo", i) for i in range(1000)))
        assert results == list(range(1000))
        assert iii.pending_calls == 0


async def test_client_timeout(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name, timeout_ms=5000) as iii:
        held: list[Invocation] = []
        iii.function("t::never").subscribe(held.append)
        with pytest.raises(IIITimeoutError) as info:
            await iii.trigger("t::never", timeout_ms=100)
        assert info.value.code == "TIMEOUT"
        assert info.value.function_id == "t::never" and info.value.invocation_id
        assert "100ms" in info.value.message
        assert isinstance(info.value, TimeoutError)
        assert iii.pending_calls == 0
        held.clear()


async def test_dispose_frees_the_pending_entry(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        held: list[Invocation] = []
        iii.function("t::hold").subscribe(held.append)
        values: list[Any] = []
        subscription = iii.trigger("t::hold").subscribe(values.append)
        await wait_for(lambda: bool(held))
        assert iii.pending_calls == 1
        subscription.dispose()
        assert iii.pending_calls == 0
        held[0].reply("late")  # the late answer is dropped
        await asyncio.sleep(0.05)
        assert values == []

        task = asyncio.ensure_future(iii.trigger("t::hold"))
        await wait_for(lambda: iii.pending_calls == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert iii.pending_calls == 0
        held.clear()


async def test_result_on_the_loop_thread_raises(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        with pytest.raises(RuntimeError, match="deadlock"):
            iii.trigger("t::anything").result(timeout=1)


async def test_blocking_result_from_a_thread(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("t::inc", lambda x: x + 1)
        assert await asyncio.to_thread(lambda: iii.trigger("t::inc", 1).result(5)) == 2
        future = await asyncio.to_thread(lambda: iii.trigger("t::inc", 2).future())
        assert await asyncio.wrap_future(future) == 3


async def test_close_fails_calls_in_flight(engine: Engine, name: str) -> None:
    iii = await iii_rx.connect(engine.url, name=name)
    held: list[Invocation] = []
    iii.function("t::stuck").subscribe(held.append)
    calls = [asyncio.ensure_future(iii.trigger("t::stuck", i)) for i in range(3)]
    await wait_for(lambda: len(held) == 3)
    await iii.close()
    for call in calls:
        with pytest.raises(IIIConnectionError, match="closed while the call"):
            await call
    with pytest.raises(IIIConnectionError):
        await iii.trigger("t::stuck")
    held.clear()


def test_invalid_timeout() -> None:
    with pytest.raises(ValueError):
        iii_rx.connect("ws://127.0.0.1:1", timeout_ms=0)


async def test_a_call_timeout_must_be_a_number(engine: Engine, name: str) -> None:
    """A text (read from the environment) is refused at once; it used to leave the call
    without a timer, waiting for ever."""
    async with iii_rx.connect(engine.url, name=name) as iii:
        for request in (lambda: iii.trigger("t::x", timeout_ms="500"),  # type: ignore[arg-type]
                        lambda: iii.trigger({"function_id": "t::x", "timeout_ms": "500"}),
                        lambda: iii.trigger("t::x", timeout_ms=True)):
            with pytest.raises(TypeError, match="timeout_ms must be a number"):
                request()
        for bad in (float("nan"), -5):  # -5 was sent, and "timed out after -5ms"
            with pytest.raises(ValueError, match=r"timeout_ms must be >= 0 \(0: the client's"):
                iii.trigger("t::x", timeout_ms=bad)
        assert iii.pending_calls == 0
        iii.register_function("t::x", lambda data: data)  # any real number is a timeout
        assert await iii.trigger("t::x", 1, timeout_ms=fractions.Fraction(5000)) == 1


async def test_bad_call_arguments_are_told_in_the_caller_s_terms(engine: Engine,
                                                                  name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        with pytest.raises(TypeError, match="namespace must be a string, not int"):
            iii.trigger("t::x", namespace=5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"unknown trigger action 'void': use "
                                             r"TriggerAction.void\(\)"):
            iii.trigger("t::x", action="void")
        assert iii.pending_calls == 0


async def test_blank_function_id_and_namespace(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        with pytest.raises(ValueError):
            iii.trigger("  ")
        with pytest.raises(ValueError):
            iii.trigger("x", namespace=" ")
        with pytest.raises(TypeError):
            iii.trigger({"payload": 1})


async def test_large_messages_are_fragmented_and_bounded(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("big::echo", lambda s: s)
        big = "x" * (17 * 1024 * 1024)  # above the 16 MiB frame limit: sent in fragments
        assert await iii.trigger("big::echo", big) == big
        with pytest.raises(IIIInvocationError) as info:
            await iii.trigger("big::echo", "y" * (65 * 1024 * 1024))
        assert info.value.code == "payload_too_large"


def test_public_names() -> None:
    # Logger left the root with issue 11 item 4: the reactive one is iii_rx.context.Logger,
    # the official SDK's is iii_rx.compat.Logger, and one name means one object.
    for exported in ("connect", "connect_sync", "Client", "ConnectionState", "ReconnectConfig",
                     "TriggerAction", "Single", "Invocation", "get_context",
                     "IIIInvocationError", "IIIForbiddenError", "IIITimeoutError",
                     "IIIConnectionError", "IIIRegistrationRejectedError"):
        assert exported in iii_rx.__all__ and hasattr(iii_rx, exported)
    assert TriggerAction.void() == TriggerAction.Void()
    assert TriggerAction.enqueue("q").queue == "q"
