"""Async handlers under an eager task factory (Python 3.12+:
``loop.set_task_factory(asyncio.eager_task_factory)``): a task runs up to its first suspension
inside ``create_task``, so a handler that never suspends has ended before the worker gets its
task object back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from client_helpers import unique_name

import iii_rx
from iii_rx import IIIInvocationError
from iii_rx.engine import Engine
from iii_rx.lifecycle import Lifecycle


def eager_factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                  **kwargs: Any) -> asyncio.Task[Any]:
    """``asyncio.eager_task_factory`` where there is one; before 3.12, the same start: the
    task's first step, which ``Task()`` scheduled, is run before the task is returned."""
    real = getattr(asyncio, "eager_task_factory", None)
    if real is not None:
        return real(loop, coro, **kwargs)  # type: ignore[no-any-return]
    task = asyncio.Task(coro, loop=loop, **kwargs)
    if not loop.is_running():  # as 3.12: the first step waits for the loop
        return task
    step = loop._ready.pop()  # type: ignore[attr-defined]
    current = asyncio.tasks._current_tasks.pop(loop, None)  # type: ignore[attr-defined]
    try:
        step._run()
    finally:
        if current is not None:
            asyncio.tasks._current_tasks[loop] = current  # type: ignore[attr-defined]
    return task


@pytest.fixture
async def eager() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    before = loop.get_task_factory()
    loop.set_task_factory(eager_factory)  # type: ignore[arg-type]
    try:
        yield
    finally:
        loop.set_task_factory(before)


async def test_handlers_ended_in_their_first_step_are_forgotten(eager: None, engine: Engine,
                                                                 name: str) -> None:
    async def echo(data: Any) -> Any:
        return data

    async with iii_rx.connect(engine.url, name=name) as iii:
        iii.register_function("eager::echo", echo)
        assert await asyncio.gather(*(iii.trigger("eager::echo", n) for n in range(20))) == [
            *range(20)]
        assert iii.running_tasks == 0  # was 20: each task was owned after it had ended


async def test_a_handler_closing_its_client_in_its_first_step_runs_to_its_end(
        eager: None, engine: Engine, name: str) -> None:
    after = asyncio.Event()
    async with iii_rx.connect(engine.url, name=unique_name("caller")) as caller:
        iii = await iii_rx.connect(engine.url, name=name)

        async def stop(data: Any) -> str:
            await iii.aclose()
            after.set()  # was cancelled: the task was owned after it asked for the close
            return "closed"

        iii.register_function("eager::close", stop)
        await caller.wait_for_function("eager::close", 5)
        with pytest.raises(IIIInvocationError):
            await caller.trigger("eager::close", timeout_ms=10_000)
        await asyncio.wait_for(after.wait(), 5)
        assert iii.lifecycle is Lifecycle.CLOSED


@pytest.mark.parametrize("bound", ["worker", "function"])
async def test_a_backlog_of_handlers_that_never_suspend_drains(eager: None, engine: Engine,
                                                               name: str, bound: str) -> None:
    """Each freed slot started the next waiting handler, which ended and started the next one
    inside the first's ``finally``: a backlog of 1,000 raised ``RecursionError`` and the rest
    of it was never answered."""
    total = 1000
    held, received = asyncio.Event(), asyncio.Event()
    release = asyncio.Event()
    seen: list[int] = []

    async def handler(n: int) -> int:
        if n < 0:
            held.set()
            await release.wait()
        return n

    def on_invocation(invocation: Any) -> None:
        seen.append(invocation.data)
        if len(seen) == total + 1:
            received.set()

    worker_bound = 1 if bound == "worker" else 1024
    async with iii_rx.connect(engine.url, name=name, max_concurrency=worker_bound) as worker, \
            iii_rx.connect(engine.url, name=unique_name("caller")) as caller:
        worker.invocations.subscribe(on_invocation)
        worker.register_function("eager::backlog", handler,
                                 max_concurrency=1 if bound == "function" else None)
        await caller.wait_for_function("eager::backlog", 5)
        first = asyncio.ensure_future(caller.trigger("eager::backlog", -1))
        await asyncio.wait_for(held.wait(), 5)
        calls = [asyncio.ensure_future(caller.trigger("eager::backlog", n)) for n in range(total)]
        await asyncio.wait_for(received.wait(), 20)  # all wait behind the held one
        release.set()
        assert await asyncio.wait_for(asyncio.gather(first, *calls), 10) == [-1, *range(total)]
        assert worker.running_tasks == 0


async def test_a_close_asked_for_while_the_close_starts_runs_once(
        eager: None, engine: Engine, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The close fails the calls in flight in its first step; a subscriber closing the client
    there started a second close beside it (two tasks taking the same resources down)."""
    from iii_rx.client import Client

    runs: list[str] = []
    real = Client._shutdown

    async def counted(self: Client) -> None:
        runs.append(self.name)
        await real(self)

    monkeypatch.setattr(Client, "_shutdown", counted)
    iii = await iii_rx.connect(engine.url, name=name)
    held = asyncio.Event()

    async def hold(data: Any) -> None:
        held.set()
        await asyncio.Event().wait()

    iii.register_function("eager::hold", hold)
    failed: list[BaseException] = []
    iii.trigger("eager::hold", None).subscribe(
        on_error=lambda error: (failed.append(error), iii.close()))
    await asyncio.wait_for(held.wait(), 5)
    await iii.close()
    assert len(failed) == 1
    assert runs == [name]


async def test_a_standby_whose_check_ended_in_its_first_step_checks_again(eager: None) -> None:
    # The standby's check fails at once (the engine cannot be asked) and retries a second
    # later; under eager tasks it had ended before it was stored as running, so the retry
    # took it for one still running and never checked again: the function stayed in standby.
    from iii_rx.aio import LoopBridge, TaskSet
    from iii_rx.errors import IIIConnectionError, IIIRegistrationRejectedError
    from iii_rx.functions import FunctionSpec, HttpInvokedSink
    from iii_rx.registrations import Registrations, Standby

    asked: list[str] = []
    asked_twice = asyncio.Event()

    class Handle:
        def unregister(self) -> None:
            pass

    class Host:
        name = "standby-worker"

        def register_function(self, function_id: str, handler: Any, *,
                              description: str | None = None, metadata: Any = None) -> Handle:
            return Handle()

        def register_trigger(self, trigger: Any, /) -> Handle:
            return Handle()

        def trigger(self, function_id: str, payload: Any = None) -> Any:
            asked.append(function_id)
            if len(asked) == 2:
                asked_twice.set()
            raise IIIConnectionError("the engine cannot be asked now")

    registrations = Registrations(lambda text: None)
    sink = HttpInvokedSink()
    registrations.add_sink(FunctionSpec("eager::owned"), sink)
    tasks = TaskSet("standby test")
    bridge = LoopBridge(asyncio.get_running_loop(), threading.get_ident())
    standby = Standby(registrations, Host(), bridge, tasks)
    try:
        standby.on_conflict("eager::owned", IIIRegistrationRejectedError(
            "FUNCTION_NAMESPACE_CONFLICT", function_id="eager::owned",
            owner_worker_id="other-worker"))
        standby.on_connected()  # the first check: fails, a retry is due in a second
        await asyncio.wait_for(asked_twice.wait(), 5)
        assert standby.function_ids == ["eager::owned"]
    finally:
        registrations.remove_sink("eager::owned", sink)  # forgotten: the retry is cancelled
        assert not standby.watching
        await tasks.aclose()


async def test_a_channels_observables_deliver_under_eager_tasks(eager: None, engine: Engine,
                                                                name: str) -> None:
    # The reader's pump ran its first step inside spawn(), before it was recorded as the
    # pump: it found itself released, stopped at once, and nothing was ever delivered.
    async with iii_rx.connect(engine.url, name=name) as iii:
        channel = await iii.create_channel_async()
        chunks: list[bytes] = []
        ended = asyncio.Event()
        channel.reader.chunks.subscribe(chunks.append, on_completed=ended.set)
        async with channel.writer as writer:
            for part in (b"a", b"b", b"c"):
                await writer.write(part)
        await asyncio.wait_for(ended.wait(), 10)
        assert chunks == [b"a", b"b", b"c"]


async def test_a_chunks_subscriber_right_after_another_left_gets_the_rest(
        eager: None, engine: Engine, name: str) -> None:
    # The new pump's first step ran inside subscribe(), while the released one was still in
    # its recv(): it took itself for the pump to take over from, and its subscriber hung.
    async with iii_rx.connect(engine.url, name=name) as iii:
        channel = await iii.create_channel_async()
        reader, writer = channel.reader, channel.writer
        first: list[bytes] = []
        delivered = asyncio.Event()
        leaving = reader.chunks.subscribe(lambda chunk: (first.append(chunk), delivered.set()))
        await writer.write(b"zero")
        await asyncio.wait_for(delivered.wait(), 10)  # and the pump waits in recv() again
        leaving.dispose()
        rest: list[bytes] = []
        ended = asyncio.Event()
        reader.chunks.subscribe(rest.append, on_completed=ended.set)  # in the same step
        for part in (b"one", b"two"):
            await writer.write(part)
        await writer.close()
        await asyncio.wait_for(ended.wait(), 10)
        assert (first, rest) == ([b"zero"], [b"one", b"two"])
