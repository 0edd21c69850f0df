"""The sync API: connect_sync from plain code, from many threads, and inside a running loop."""

from __future__ import annotations

import asyncio
import signal
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

import pytest
from client_helpers import fd_count, wait_for_sync

import iii_rx
from iii_rx import ConnectionState, IIIConnectionError, Invocation


def test_plain_script(engine_thread: Any, name: str) -> None:
    fds_before = fd_count()
    with iii_rx.connect_sync(engine_thread.url, name=name) as iii:
        assert iii.connection_state is ConnectionState.CONNECTED
        handle = iii.register_function("sync::upper", lambda s: s.upper())
        assert iii.trigger("sync::upper", "abc").result(timeout=5) == "ABC"
        assert iii.trigger({"function_id": "sync::upper", "payload": "x"}).result(5) == "X"
        handle.unregister()
        loop_thread = next(t for t in threading.enumerate() if t.ident == iii.bridge.thread_id)
        assert loop_thread is not threading.current_thread() and loop_thread.is_alive()
    assert not loop_thread.is_alive()
    assert iii.connection_state is ConnectionState.DISCONNECTED
    wait_for_sync(lambda: fd_count() <= fds_before, what="sockets closed")


def test_waiting_for_a_function_id_that_is_no_string_raises_at_once(engine_thread: Any,
                                                                     name: str) -> None:
    """It could never appear: the wait would last its whole timeout."""
    with iii_rx.connect_sync(engine_thread.url, name=name) as iii:
        with pytest.raises(TypeError, match=r"^wait_for_function_sync\(function_id\): "
                                            r"function_id must be a str, got int 3$"):
            iii.wait_for_function_sync(3, timeout=2)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^wait_for_function\(function_id\): "):
            asyncio.run(iii.wait_for_function(None, timeout=2))  # type: ignore[arg-type]


def test_a_registration_and_the_next_call_keep_their_order(engine_thread: Any,
                                                           name: str) -> None:
    """From a plain thread, a function registered then called at once is found, also while
    other work for the loop is queued (the registration went by a queue of its own, and the
    call overtook it: ``function_not_found`` 48 times in 50)."""
    with iii_rx.connect_sync(engine_thread.url, name=name) as iii:
        iii.register_function("order::leaf", lambda d: d)
        for n in range(30):
            other = iii.trigger("order::leaf", n).future()  # a hand-over already queued
            iii.register_function(f"order::new{n}", lambda d: d)
            assert iii.trigger(f"order::new{n}", n).result(timeout=5) == n
            assert other.result(timeout=5) == n


def test_a_handler_waiting_for_the_close_does_not_hold_it_up(engine_thread: Any,
                                                             name: str) -> None:
    """``wait_closed()`` in a sync handler: the close used to wait its 10 s for that handler,
    which was waiting for the close."""
    iii = iii_rx.connect_sync(engine_thread.url, name=name)
    waiting, returned = threading.Event(), threading.Event()

    def serve(_: Any) -> None:
        waiting.set()
        iii.wait_closed()
        returned.set()

    iii.register_function("sync::serve", serve)
    iii.trigger("sync::serve", action=iii_rx.TriggerAction.void()).result(5)
    assert waiting.wait(10)
    closing = threading.Thread(target=iii.close)
    closing.start()
    assert returned.wait(5)
    closing.join(5)
    assert not closing.is_alive()


@pytest.mark.parametrize("how", ["sync::slow", "sync::poll-then-work"])
def test_a_handler_that_polled_wait_closed_leaves_its_thread_waited_for(
        engine_thread: Any, name: str, how: str) -> None:
    """The exemption of a handler waiting for the close lasts its own run: a later handler on
    the same pool thread is still waited for (it was not, and its answer was lost)."""
    iii = iii_rx.connect_sync(engine_thread.url, name=name, max_workers=1)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(_: Any) -> None:
        started.set()
        release.wait(10)
        finished.set()

    def poll_then_work(_: Any) -> None:  # the same, in one handler: the probe, then work
        assert iii.wait_closed(0.01) is False
        slow(None)

    iii.register_function("sync::poll", lambda _: iii.wait_closed(0.01))
    iii.register_function("sync::slow", slow)
    iii.register_function("sync::poll-then-work", poll_then_work)
    assert iii.trigger("sync::poll", None).result(5) is False
    iii.trigger(how, action=iii_rx.TriggerAction.void()).result(5)
    assert started.wait(10)
    closing = threading.Thread(target=iii.close)
    closing.start()
    closing.join(0.3)
    assert closing.is_alive()  # waiting for the slow handler
    release.set()
    closing.join(10)
    assert finished.is_set() and not closing.is_alive()


def test_a_closed_sync_client_refuses_channels_with_a_connection_error(
        engine_thread: Any, name: str) -> None:
    """Its loop has stopped: ``RuntimeError('Event loop is closed')`` used to come out."""
    iii = iii_rx.connect_sync(engine_thread.url, name=name)
    iii.close()
    with pytest.raises(IIIConnectionError, match="closed"):
        iii.create_channel()
    with pytest.raises(IIIConnectionError, match="closed"):
        asyncio.run(iii.create_channel_async())


def test_a_closed_sync_clients_streams_complete_for_late_subscribers(
        engine_thread: Any, name: str) -> None:
    """The loop has stopped with the client: ``state`` and ``invocations`` used to hand a late
    subscriber ``RuntimeError('Event loop is closed')``, and ``topology`` nothing at all."""
    iii = iii_rx.connect_sync(engine_thread.url, name=name)
    iii.close()
    for stream in (iii.state, iii.invocations, iii.topology, iii.topology_changes):
        ended: list[str] = []
        stream.subscribe(on_error=lambda e, ended=ended: ended.append(repr(e)),
                         on_completed=lambda ended=ended: ended.append("completed"))
        assert ended == ["completed"], stream

    async def states() -> list[Any]:
        return [state async for state in iii.state]

    assert asyncio.run(asyncio.wait_for(states(), 5)) == []


def test_an_interrupted_piped_result_has_withdrawn_its_call(engine_thread: Any,
                                                            name: str) -> None:
    """Ctrl-C in ``.result()`` of a piped Single: the call is gone when the interrupt
    surfaces, as for a plain one (it was withdrawn a moment later, behind the interrupt)."""
    from reactivex import operators as ops

    release = threading.Event()
    with iii_rx.connect_sync(engine_thread.url, name=name) as iii:
        iii.register_function("sync::held", lambda _: release.wait(10))
        main = threading.get_ident()

        def interrupt_once_in_flight() -> None:
            wait_for_sync(lambda: iii.pending_calls == 1, what="the call in flight")
            signal.pthread_kill(main, signal.SIGINT)

        for _ in range(3):
            interrupter = threading.Thread(target=interrupt_once_in_flight)
            interrupter.start()
            with pytest.raises(KeyboardInterrupt):
                iii.trigger("sync::held", None).pipe(ops.timeout(10)).result()
            assert iii.pending_calls == 0
            interrupter.join()
        release.set()


def test_close_is_blocking_and_idempotent(engine_thread: Any, name: str) -> None:
    iii = iii_rx.connect_sync(engine_thread.url, name=name)
    iii.register_function("sync::id", lambda x: x)
    assert iii.trigger("sync::id", 1).result(5) == 1
    iii.close()
    assert iii.closed
    iii.close()
    with pytest.raises(IIIConnectionError):
        iii.trigger("sync::id", 1).result(5)


def test_wait_closed_serves_until_a_handler_closes_the_client(engine_thread: Any,
                                                              name: str) -> None:
    iii = iii_rx.connect_sync(engine_thread.url, name=name)
    assert iii.wait_closed(timeout=0.01) is False
    iii.register_function("sync::stop", lambda _: iii.close() and None)
    with iii_rx.connect_sync(engine_thread.url, name=f"{name}-caller") as caller:
        caller.wait_for_function_sync("sync::stop", timeout=10)
        caller.trigger("sync::stop", action=iii_rx.TriggerAction.void()).result(5)
        assert iii.wait_closed(timeout=10) is True
    assert iii.closed and iii.wait_closed() is True


def test_wait_closed_raises_once_reconnecting_gave_up(name: str) -> None:
    """A worker script ending in wait_closed() used to wait for ever on a client that had
    failed for good (no more reconnects): a supervisor never restarted it."""
    from iii_rx.engine import Engine

    handle = Engine.start_in_thread(port=0)
    iii = iii_rx.connect_sync(handle.url, name=name, reconnect=iii_rx.ReconnectConfig(
        initial_delay_ms=10, max_delay_ms=20, max_retries=1))
    try:
        handle.stop()
        with pytest.raises(IIIConnectionError, match="reconnect attempts exhausted"):
            iii.wait_closed(timeout=30)
        assert iii.lifecycle.value == "failed"
        assert iii.connection_state is ConnectionState.FAILED
        with pytest.raises(IIIConnectionError, match="reconnect attempts exhausted"):
            iii.trigger("sync::any", 1).result(5)
    finally:
        iii.close()
    assert iii.wait_closed(timeout=0) is True  # closed now: the close is what it reports


@pytest.mark.parametrize("how", ["await close() in an async handler",
                                 "await aclose() in an async handler", "close() in a subscriber"])
def test_closed_on_its_own_loop_a_sync_client_stops_its_loop_thread(engine_thread: Any,
                                                                    name: str, how: str) -> None:
    """Nobody outside is there to stop the loop thread (it was left running)."""
    iii = iii_rx.connect_sync(engine_thread.url, name=name)
    loop_thread = next(t for t in threading.enumerate() if t.ident == iii.bridge.thread_id)

    async def closes(_: Any) -> None:
        await (iii.close() if "close()" in how else iii.aclose())

    if "subscriber" in how:
        iii.function("sync::closes").subscribe(lambda invocation: iii.close())
    else:
        iii.register_function("sync::closes", closes)
    with iii_rx.connect_sync(engine_thread.url, name=f"{name}-caller") as caller:
        caller.wait_for_function_sync("sync::closes", timeout=10)
        caller.trigger("sync::closes", action=iii_rx.TriggerAction.void()).result(5)
        assert iii.wait_closed(timeout=10)
    loop_thread.join(10)
    assert not loop_thread.is_alive()


@pytest.mark.parametrize("how", ["aclose", "close"])
def test_a_coroutine_on_the_loop_that_awaits_the_close_returns(engine_thread: Any, name: str,
                                                               how: str) -> None:
    """The close stops the loop thread; what awaited it still returns (it was cancelled)."""
    iii = iii_rx.connect_sync(engine_thread.url, name=name)

    async def shut() -> str:
        await (iii.aclose() if how == "aclose" else iii.close())
        return "returned"

    assert iii.bridge.submit(shut()).result(10) == "returned"
    assert iii.closed


def test_blocking_result_timeout_cancels_the_call(engine_thread: Any, name: str) -> None:
    with iii_rx.connect_sync(engine_thread.url, name=name) as iii:
        held: list[Invocation] = []
        iii.function("sync::hold").subscribe(held.append)
        single = iii.trigger("sync::hold")
        with pytest.raises(iii_rx.IIITimeoutError):
            single.result(timeout=0.1)
        wait_for_sync(lambda: iii.pending_calls == 0, what="the timed-out wait freed")
        future = single.future()
        wait_for_sync(lambda: iii.pending_calls == 1)
        single.cancel()
        assert future.cancelled()
        wait_for_sync(lambda: iii.pending_calls == 0, what="Single.cancel() freed")
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                single.result()
            except BaseException as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        wait_for_sync(lambda: iii.pending_calls == 1)
        single.cancel()  # wakes the blocked thread and frees the call
        waiter.join(5)
        assert not waiter.is_alive()
        assert errors and isinstance(errors[0], CancelledError)
        wait_for_sync(lambda: iii.pending_calls == 0)
        # Each call was sent before it was cancelled; the engine delivers it to the handler
        # on its own time, so wait for the delivery rather than race it.
        wait_for_sync(lambda: len(held) == 3, what="all three calls delivered")
        assert not any(inv.answered for inv in held)
        held.clear()


def test_many_threads_at_once(engine_thread: Any, name: str) -> None:
    with iii_rx.connect_sync(engine_thread.url, name=name) as iii:
        iii.register_function("sync::square", lambda x: x * x)

        def work(start: int) -> list[int]:
            handle = iii.register_function(f"sync::own{start}", lambda x: x + start)
            try:
                values = [iii.trigger("sync::square", i).result(10) for i in range(start,
                                                                                  start + 20)]
                values.append(iii.trigger(f"sync::own{start}", 0).result(10))
                return values
            finally:
                handle.unregister()

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(0, 160, 20)))
        for start, values in zip(range(0, 160, 20), results, strict=True):
            assert values == [i * i for i in range(start, start + 20)] + [start]


def test_sync_handlers_may_block_on_nested_calls(engine_thread: Any, name: str) -> None:
    with iii_rx.connect_sync(engine_thread.url, name=name, max_workers=4) as iii:
        iii.register_function("sync::leaf", lambda x: x + 1)
        iii.register_function("sync::branch",
                              lambda x: iii.trigger("sync::leaf", x).result(5) * 10)
        futures = [iii.trigger("sync::branch", i).future() for i in range(3)]
        assert [f.result(10) for f in futures] == [10, 20, 30]


def test_blocking_and_await_inside_a_running_loop(engine_thread: Any, name: str) -> None:
    """A notebook: the kernel's loop runs in the main thread; cells await or block."""
    iii = iii_rx.connect_sync(engine_thread.url, name=name)
    try:
        iii.register_function("nb::double", lambda x: x * 2)

        async def cell() -> tuple[Any, Any, Any]:
            awaited = await iii.trigger("nb::double", 2)  # loop-agnostic await
            blocked = iii.trigger("nb::double", 3).result(timeout=5)  # blocking works too
            many = await asyncio.gather(*(iii.trigger("nb::double", i) for i in range(50)))
            return awaited, blocked, many

        awaited, blocked, many = asyncio.run(cell())
        assert (awaited, blocked) == (4, 6)
        assert many == [i * 2 for i in range(50)]

        async def cancel_cell() -> None:
            held: list[Invocation] = []
            iii.function("nb::hold").subscribe(held.append)
            task = asyncio.ensure_future(iii.trigger("nb::hold"))
            for _ in range(500):
                if held:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(500):  # the cancel hops to the client's loop
                if iii.pending_calls == 0:
                    break
                await asyncio.sleep(0.01)
            assert iii.pending_calls == 0  # freed by the cancel, not by an answer
            assert not held[0].answered
            held.clear()

        asyncio.run(cancel_cell())

        async def close_cell() -> None:
            await iii.close()  # closing from a cell works with await as well

        asyncio.run(close_cell())
        assert iii.closed
    finally:
        iii.close()


def test_async_client_refuses_sync_context_manager(engine_thread: Any, name: str) -> None:
    async def main() -> None:
        iii = await iii_rx.connect(engine_thread.url, name=name)
        try:
            with pytest.raises(RuntimeError):
                iii.__exit__(None, None, None)
        finally:
            await iii.close()

    asyncio.run(main())


def test_subscribing_from_another_thread_emits_on_the_loop(engine_thread: Any,
                                                           name: str) -> None:
    with iii_rx.connect_sync(engine_thread.url, name=name) as iii:
        threads: list[int] = []
        seen = threading.Event()
        iii.state.subscribe(lambda s: (threads.append(threading.get_ident()), seen.set()))
        assert seen.wait(5)
        assert threads == [iii.bridge.thread_id]
        got: list[Any] = []
        sub = iii.function("sync::rx").subscribe(
            lambda inv: (got.append(threading.get_ident()), inv.reply("ok")))
        assert iii.trigger("sync::rx").result(5) == "ok"
        assert got == [iii.bridge.thread_id]
        sub.dispose()
