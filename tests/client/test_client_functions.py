"""Functions: by subscription, by handler, their failures, concurrency and the streams."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from client_helpers import wait_for
from pydantic import BaseModel

import iii_rx
from iii_rx import IIIInvocationError, Invocation
from iii_rx.engine import Engine


async def function_ids(iii: iii_rx.Client) -> set[str]:
    listing = await iii.trigger("engine::functions::list", {})
    return {f["function_id"] for f in listing["functions"]}


async def test_subscription_registers_and_dispose_unregisters(
        engine: Engine, name: str, official: Callable[..., Any]) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        stream = iii.function("rx::greet", description="says hello")
        assert "rx::greet" not in await function_ids(iii)  # lazy: nothing until subscribed
        subscription = stream.subscribe(lambda inv: inv.reply(f"hello {inv.data['who']}"))
        assert "rx::greet" in await function_ids(iii)

        peer = await official(engine.url)
        result = await asyncio.to_thread(
            peer.trigger, {"function_id": "rx::greet", "payload": {"who": "sdk"}})
        assert result == "hello sdk"

        subscription.dispose()
        await wait_for_gone(iii, "rx::greet")


async def wait_for_gone(iii: iii_rx.Client, function_id: str) -> None:
    for _ in range(200):
        if function_id not in await function_ids(iii):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{function_id} still listed")


async def test_last_dispose_unregisters(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        seen: list[str] = []
        stream = iii.function("rx::multi")
        a = stream.subscribe(lambda inv: seen.append("a"))
        b = stream.subscribe(lambda inv: (seen.append("b"), inv.reply("b")))
        assert await iii.trigger("rx::multi") == "b"
        assert sorted(seen) == ["a", "b"]  # multicast: every subscriber sees it
        a.dispose()
        assert "rx::multi" in await function_ids(iii)
        b.dispose()
        await wait_for_gone(iii, "rx::multi")


async def test_subscriber_error_fails_the_invocation(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        def on_next(inv: Invocation) -> None:
            if inv.data == "bad":
                raise KeyError("no such thing")
            inv.reply("ok")

        iii.function("rx::picky").subscribe(on_next)
        with pytest.raises(IIIInvocationError) as info:
            await iii.trigger("rx::picky", "bad")
        assert info.value.code == "invocation_failed"
        assert "no such thing" in info.value.message
        assert info.value.stacktrace and "KeyError" in info.value.stacktrace
        assert info.value.function_id == "rx::picky"
        assert await iii.trigger("rx::picky", "good") == "ok"  # still subscribed


async def test_unanswered_invocation_is_failed_not_lost(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.function("rx::ignores").subscribe(lambda inv: None)  # drops every invocation
        with pytest.raises(IIIInvocationError) as info:
            await iii.trigger("rx::ignores", timeout_ms=5000)
        assert info.value.code == "invocation_failed"
        assert "without a reply" in info.value.message


async def test_held_invocation_answered_later(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        held: list[Invocation] = []
        iii.function("rx::later").subscribe(held.append)
        call = asyncio.ensure_future(iii.trigger("rx::later", 1))
        await wait_for(lambda: bool(held))
        gc.collect()
        assert not call.done()
        assert held[0].reply("done") is True
        assert held[0].reply("again") is False
        assert await call == "done"


async def test_invocation_for_disposed_function_is_not_found(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        invocation = Invocation(iii, "rx::gone", None, None)
        assert invocation.fail("x") is True  # void: nobody to tell, nothing sent
        sub = iii.function("rx::gone").subscribe(lambda inv: inv.reply(1))
        assert await iii.trigger("rx::gone") == 1
        sub.dispose()
        with pytest.raises(IIIInvocationError) as info:
            await iii.trigger("rx::gone")
        assert info.value.code == "function_not_found"


async def test_register_function_sync_and_async(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        threads: list[str] = []

        def sync_add(data: dict[str, int]) -> int:
            threads.append(threading.current_thread().name)
            return data["a"] + data["b"]

        async def async_mul(data: dict[str, int], metadata: Any) -> dict[str, Any]:
            return {"product": data["a"] * data["b"], "metadata": metadata}

        add = iii.register_function("calc::add", sync_add, description="adds")
        iii.register_function("calc::mul", async_mul)
        assert await iii.trigger("calc::add", {"a": 2, "b": 3}) == 5
        assert threads and threads[0].startswith("iii-rx-handler")
        assert await iii.trigger("calc::mul", {"a": 2, "b": 3}, metadata={"m": 1}) == {
            "product": 6, "metadata": {"m": 1}}
        with pytest.raises(ValueError):
            iii.register_function("calc::add", sync_add)
        add.unregister()
        add.unregister()  # idempotent
        await wait_for_gone(iii, "calc::add")


async def test_metadata_keyword_and_lambda_forms(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        def keyword(data: Any, *, metadata: Any = None) -> Any:
            return metadata

        iii.register_function("meta::kw", keyword)
        iii.register_function("meta::two", lambda data, meta: meta)
        iii.register_function("meta::one", lambda data, extra=5: extra)
        assert await iii.trigger("meta::kw", 1, metadata="k") == "k"
        assert await iii.trigger("meta::two", 1, metadata="t") == "t"
        assert await iii.trigger("meta::one", 1, metadata="ignored") == 5


async def test_handler_errors_are_typed(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        def sync_boom(data: Any) -> None:
            raise ValueError("sync boom")

        async def async_boom(data: Any) -> None:
            raise RuntimeError("async boom")

        iii.register_function("err::sync", sync_boom)
        iii.register_function("err::async", async_boom)
        for function_id, text, kind in (("err::sync", "sync boom", "ValueError"),
                                        ("err::async", "async boom", "RuntimeError")):
            with pytest.raises(IIIInvocationError) as info:
                await iii.trigger(function_id)
            assert info.value.code == "invocation_failed"
            assert info.value.message == text
            assert str(info.value) == f"invocation_failed: {text}"
            assert kind in (info.value.stacktrace or "")
            assert info.value.invocation_id


async def test_unserialisable_result_fails_cleanly(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("bad::result", lambda _: object())
        with pytest.raises(IIIInvocationError) as info:
            await iii.trigger("bad::result")
        assert info.value.code == "invocation_failed"


async def test_pydantic_results_are_dumped(engine: Engine, name: str) -> None:
    from pydantic import BaseModel, Field

    class Out(BaseModel):
        user_id: int = Field(serialization_alias="userId")
        note: str | None = None

    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("model::out", lambda _: Out(user_id=7))
        iii.register_function("model::api", lambda _: iii_rx.ApiResponse(status_code=201))
        assert await iii.trigger("model::out") == {"userId": 7}
        assert (await iii.trigger("model::api"))["status_code"] == 201


async def test_max_concurrency_queues_in_order(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        running = 0
        peak = 0
        order: list[int] = []
        gate = asyncio.Event()

        async def slow(n: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            order.append(n)
            await gate.wait()
            running -= 1
            return n

        handle = iii.register_function("slow::f", slow, max_concurrency=2)
        calls = [asyncio.ensure_future(iii.trigger("slow::f", n)) for n in range(6)]
        await wait_for(lambda: len(order) == 2)
        await asyncio.sleep(0.05)
        assert len(order) == 2  # the rest wait
        gate.set()
        assert await asyncio.gather(*calls) == list(range(6))
        assert peak == 2
        assert sorted(order[:2]) == [0, 1] and order[2:] == sorted(order[2:])
        handle.unregister()


async def test_invocations_stream_sees_everything(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        seen: list[tuple[str, Any]] = []
        iii.invocations.subscribe(lambda inv: seen.append((inv.function_id, inv.data)))
        iii.register_function("mon::a", lambda x: x)
        iii.register_function("mon::b", lambda x: x)
        await iii.trigger("mon::a", 1)
        await iii.trigger("mon::b", 2)
        assert seen == [("mon::a", 1), ("mon::b", 2)]


async def test_faulty_monitor_is_detached_and_client_survives(engine: Engine,
                                                              name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        calls = 0

        def faulty(inv: Invocation) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("monitor bug")

        iii.invocations.subscribe(faulty)
        iii.register_function("mon::x", lambda x: x)
        assert await iii.trigger("mon::x", 1) == 1
        assert await iii.trigger("mon::x", 2) == 2
        assert calls == 1


async def test_context_inside_handlers(engine: Engine, name: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        seen: dict[str, Any] = {}

        def inner(data: Any) -> dict[str, Any]:
            ctx = iii_rx.get_context()
            return {"trace_id": ctx.trace_id, "parent": ctx.parent_span_id}

        def outer(data: Any) -> dict[str, Any]:
            ctx = iii_rx.get_context()
            seen["thread"] = threading.current_thread().name
            seen["ids"] = (ctx.function_id, ctx.invocation_id, ctx.metadata)
            seen["trace"] = (ctx.trace_id, ctx.span_id)
            ctx.logger.info("working", {"step": 1})
            nested = iii.trigger("ctx::inner", None).result(timeout=5)
            return nested  # type: ignore[no-any-return]

        async def async_outer(data: Any) -> Any:
            return await iii.trigger("ctx::inner", None)

        iii.register_function("ctx::inner", inner)
        iii.register_function("ctx::outer", outer)
        iii.register_function("ctx::async_outer", async_outer)
        caplog.set_level("INFO", logger="iii_rx.logger")
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        nested = await _as_caller(traceparent, lambda: iii.trigger("ctx::outer",
                                                                   metadata={"k": 1}))

        function_id, invocation_id, metadata = seen["ids"]
        assert function_id == "ctx::outer" and invocation_id and metadata == {"k": 1}
        trace_id, span_id = seen["trace"]
        assert trace_id == "0af7651916cd43dd8448eb211c80319c"  # continued from the caller
        assert len(span_id) == 16 and span_id == span_id.lower()
        assert nested == {"trace_id": trace_id, "parent": span_id}  # forwarded to the nested call
        record = next(r for r in caplog.records if r.getMessage() == "working")
        assert record.function_id == "ctx::outer"  # type: ignore[attr-defined]
        assert record.invocation_id == invocation_id  # type: ignore[attr-defined]
        assert record.trace_id == trace_id  # type: ignore[attr-defined]
        assert record.data == {"step": 1}  # type: ignore[attr-defined]

        nested = await iii.trigger("ctx::async_outer")
        assert len(nested["trace_id"]) == 32 and nested["parent"]
        outside = iii_rx.get_context()
        assert outside.function_id is None and outside.invocation_id is None
        assert iii_rx.context.current_invocation() is None


def _as_caller(traceparent: str, make: Callable[[], iii_rx.Single[Any]]) -> iii_rx.Single[Any]:
    """Make a call as if from inside a handler whose caller sent ``traceparent``."""
    from iii_rx.context import Context, current_context

    token = current_context.set(Context("test::caller", "x", None, traceparent, "k=v"))
    try:
        return make()  # the trace context is captured when the Single is made
    finally:
        current_context.reset(token)


async def test_incoming_traceparent_reaches_the_handler(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("trace::echo", lambda _: (iii_rx.get_context().traceparent,
                                                        iii_rx.get_context().baggage))
        traceparent, baggage = await _as_caller(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            lambda: iii.trigger("trace::echo"))
        assert traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
        assert traceparent.split("-")[2] != "b7ad6b7169203331"  # the caller's own span
        assert baggage == "k=v"


@pytest.mark.parametrize(("sent", "flags"), [("03", "01"), ("02", "00"), ("81", "01"),
                                             ("01", "01"), ("00", "00")])
async def test_calls_carry_the_sampled_flag_only(engine: Engine, name: str, sent: str,
                                                 flags: str) -> None:
    """The Rust engine drops a ``traceparent`` with flag bits beyond the sampled one (the
    random-trace-id bit ``02`` of OpenTelemetry SDKs from 1.42 included): a nested call sends
    the sampled bit only. Our engine passes the field through, so the handler sees the frame's."""
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("trace::seen", lambda _: iii_rx.get_context().traceparent)
        seen = await _as_caller(f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{sent}",
                                lambda: iii.trigger("trace::seen"))
        version, trace_id, _, sent_flags = seen.split("-")
        assert (version, trace_id) == ("00", "0af7651916cd43dd8448eb211c80319c")
        assert sent_flags == flags


async def test_a_result_carries_the_sampled_flag_only(engine: Engine, name: str) -> None:
    """The ``invocationresult`` a handler sends back names its span with level-1 flags too (a
    raw caller reads the frame)."""
    from websockets.asyncio.client import connect

    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("trace::answer", lambda data: data)
        async with connect(engine.url, compression=None) as ws:
            assert json.loads(await ws.recv())["type"] == "workerregistered"
            await ws.send(json.dumps({
                "type": "invokefunction", "function_id": "trace::answer", "data": 1,
                "invocation_id": "i-1",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"}))
            while (frame := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != (
                    "invocationresult"):
                pass
        assert frame["result"] == 1
        version, trace_id, span_id, flags = frame["traceparent"].split("-")
        assert trace_id == "0af7651916cd43dd8448eb211c80319c" and span_id != "b7ad6b7169203331"
        assert (version, flags) == ("00", "01")


async def test_a_sync_handler_leaves_nothing_in_its_threads_context(engine: Engine,
                                                                    name: str) -> None:
    """Sync handlers share reused pool threads: what one sets in a context variable (a
    request's user) does not reach the next invocation (each runs in a context of its own)."""
    user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="anonymous")

    def handler(data: str) -> str:
        before = user.get()
        user.set(data)
        return before

    async with iii_rx.connect(engine.url, name=name, max_workers=1) as iii:
        iii.register_function("ctx::user", handler)
        assert [await iii.trigger("ctx::user", who) for who in ("alice", "bob")] == [
            "anonymous", "anonymous"]


class _Unwritable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_exception_that_cannot_be_written_still_answers(engine: Engine, name: str,
                                                                 kind: str) -> None:
    """A handler's exception whose ``__str__`` raises fails the call at once (it was never
    answered: the caller waited for its timeout)."""
    def sync_handler(data: Any) -> Any:
        raise _Unwritable()

    async def async_handler(data: Any) -> Any:
        raise _Unwritable()

    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("fail::unwritable",
                              sync_handler if kind == "sync" else async_handler)
        with pytest.raises(IIIInvocationError) as failed:
            await iii.trigger("fail::unwritable", timeout_ms=60_000)
        assert failed.value.code == "invocation_failed"
        assert "_Unwritable" in failed.value.message


class _Undumpable(BaseModel):
    value: Any


@pytest.mark.parametrize("kind", ["async: a cancelled task awaited", "sync: a cancelled future",
                                  "model that cannot dump"])
async def test_a_handlers_own_cancellation_or_bad_model_fails_the_call(
        engine: Engine, name: str, kind: str) -> None:
    """A ``CancelledError`` the handler raised itself (the client is not closing) and a model
    result that cannot be written fail the call at once (they were never answered)."""
    async def awaits_a_cancelled_task(data: Any) -> Any:
        task = asyncio.ensure_future(asyncio.sleep(10))
        task.cancel()
        return await task

    def waits_on_a_cancelled_future(data: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.cancel()
        return future.result()

    handler = {"async: a cancelled task awaited": awaits_a_cancelled_task,
               "sync: a cancelled future": waits_on_a_cancelled_future,
               "model that cannot dump": lambda data: _Undumpable(value=object())}[kind]
    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("fail::own", handler)
        with pytest.raises(IIIInvocationError) as failed:
            await iii.trigger("fail::own", timeout_ms=60_000)
        assert failed.value.code == "invocation_failed"
        assert iii.running_tasks == 0


async def test_invocations_as_an_async_iterator(engine: Engine, name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as iii:
        stream = iii.function("pull::work")
        async with stream.iterate(maxsize=2) as invocations:  # registers now
            calls = [asyncio.ensure_future(iii.trigger("pull::work", i)) for i in range(3)]
            done, _ = await asyncio.wait(calls, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            overflowed = done.pop()  # the third found the backlog full and failed at once
            with pytest.raises(IIIInvocationError, match="waiting already"):
                await overflowed
            handled = []
            for _ in range(2):
                invocation = await invocations.__anext__()
                invocation.reply(invocation.data * 10)
                handled.append(invocation.data)
            results = [await c for c in calls if c is not overflowed]
            assert sorted(results) == sorted(x * 10 for x in handled)
        await wait_for_gone(iii, "pull::work")  # closing the iterator unregistered


async def test_async_handler_tasks_are_forgotten_when_done_and_cancelled_on_close(
        engine: Engine, name: str) -> None:
    started = asyncio.Event()
    running: list[asyncio.Task[Any] | None] = []

    async def echo(data: Any) -> Any:
        return data

    async def stuck(data: Any) -> None:
        running.append(asyncio.current_task())
        started.set()
        await asyncio.Event().wait()

    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("tasks::echo", echo)
        iii.register_function("tasks::stuck", stuck)
        assert await asyncio.gather(*(iii.trigger("tasks::echo", n) for n in range(20))) == [
            *range(20)]
        assert iii.running_tasks == 0  # each task removed itself
        call = asyncio.ensure_future(iii.trigger("tasks::stuck"))
        await started.wait()
        assert iii.running_tasks == 1
        stuck_task = running[0]
        assert stuck_task is not None
    assert stuck_task.cancelled()
    with pytest.raises(iii_rx.IIIConnectionError):
        await call


async def test_sync_handler_returning_an_awaitable(engine: Engine, name: str) -> None:
    started = asyncio.Event()

    async def double(data: Any) -> Any:
        await asyncio.sleep(0)
        return {"twice": data * 2, "function": iii_rx.get_context().function_id}

    running: list[asyncio.Task[Any] | None] = []

    async def hang() -> None:
        running.append(asyncio.current_task())
        started.set()
        await asyncio.Event().wait()

    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("await::double", lambda data: double(data))
        iii.register_function("await::hang", lambda data: hang())
        assert await iii.trigger("await::double", 4) == {"twice": 8,
                                                         "function": "await::double"}
        call = asyncio.ensure_future(iii.trigger("await::hang"))
        await started.wait()
        assert iii.running_tasks == 1  # the awaitable runs as a task the client owns
        hanging = running[0]
        assert hanging is not None
    assert hanging.cancelled()  # cancelled on close; its pool thread was freed at once
    with pytest.raises(iii_rx.IIIConnectionError):
        await call


async def test_a_handler_no_call_could_be_given_to_is_refused_when_registered(
        engine: Engine, name: str) -> None:
    """It was accepted, then failed every call with the handler's own TypeError."""
    async with iii_rx.connect(engine.url, name=name) as iii:
        for handler in (lambda: 1, lambda a, b, c: 1, lambda *, key: 1):
            with pytest.raises(TypeError, match="cannot be called with a call's data"):
                iii.register_function("f::bad", handler)
        with pytest.raises(TypeError, match=r"max_concurrency must be an int .* not str"):
            iii.register_function("f::bad", lambda data: data,
                                  max_concurrency="3")  # type: ignore[arg-type]
        assert iii.function_ids == []
        for good in (lambda data: data, lambda data, metadata: data,
                     lambda data, *, metadata=None: data, lambda *args: args[0],
                     lambda data, extra=1: data):
            handle = iii.register_function("f::good", good)
            assert await iii.trigger("f::good", 7) == 7
            handle.unregister()
