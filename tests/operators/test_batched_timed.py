"""``batched`` with ``max_delay``: the pump and per-batch timer keep every item, in order, keep
backpressure, and leave no task behind (no timing assertions: deadlines of 0 or of a minute)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiostream import stream

from iii_rx.operators import batched
from iii_rx.operators import pipe as ops_pipe


class Gate:
    """A source that yields ``items``, then blocks until ``release``; records its life."""

    def __init__(self, items: list[int], after: list[int] | None = None,
                 fail: Exception | None = None) -> None:
        self.items = items
        self.after = after or []
        self.fail = fail
        self.release = asyncio.Event()
        self.blocked = asyncio.Event()
        self.pulled = 0
        self.closed = False
        self.cancelled = False

    async def gen(self) -> AsyncIterator[int]:
        try:
            for item in self.items:
                self.pulled += 1
                yield item
            self.blocked.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            for item in self.after:
                self.pulled += 1
                yield item
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed = True

    def __aiter__(self) -> AsyncIterator[int]:
        return self.gen()


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_count_limit_still_applies_and_the_source_is_not_read_ahead() -> None:
    src = Gate(list(range(25)))
    async with batched(src, max_items=10, max_delay=60) as out:
        assert await out.__anext__() == list(range(10))
        await asyncio.sleep(0)  # give a pump that would read ahead the chance to
        assert src.pulled == 10
        assert await out.__anext__() == list(range(10, 20))
        assert src.pulled == 20
    assert src.closed
    assert not other_tasks()


async def test_end_of_source_yields_the_partial_batch_at_once() -> None:
    async def three() -> AsyncIterator[int]:
        for i in (1, 2, 3):
            yield i

    assert [b async for b in batched(three(), max_items=10, max_delay=60)] == [[1, 2, 3]]
    assert not other_tasks()


async def test_error_after_a_partial_batch_comes_after_that_batch() -> None:
    src = Gate([1, 2, 3], fail=RuntimeError("boom"))
    src.release.set()
    got: list[list[int]] = []
    with pytest.raises(RuntimeError, match="boom"):
        async for b in batched(src, max_items=2, max_delay=60):
            got.append(b)
    assert got == [[1, 2], [3]]
    assert src.closed
    assert not other_tasks()


async def test_error_while_a_timed_batch_waits_loses_nothing() -> None:
    src = Gate([1, 2], after=[3], fail=ValueError("late"))
    got: list[list[int]] = []
    out = batched(src, max_items=10, max_delay=0)
    got.append(await out.__anext__())  # [1] alone: a deadline of 0 has passed for item 2
    src.release.set()
    with pytest.raises(ValueError, match="late"):
        async for b in out:
            got.append(b)
    assert [x for b in got for x in b] == [1, 2, 3]


async def test_a_source_that_never_suspends_still_honours_the_deadline() -> None:
    async def ready() -> AsyncIterator[int]:
        for i in range(40):
            yield i  # never awaits: the loop gets no chance to run the timer

    batches = [b async for b in batched(ready(), max_delay=0)]
    assert [x for b in batches for x in b] == list(range(40))
    assert len(batches) > 1 and all(len(b) <= 16 for b in batches)  # the clock, every 16


async def test_cancelling_the_consumer_mid_batch_closes_the_source_and_the_pump() -> None:
    src = Gate([1, 2])
    out = batched(src, max_items=10, max_delay=60)
    consumer = asyncio.ensure_future(out.__anext__())
    await src.blocked.wait()  # two items pending, the pump waits on the source
    assert not consumer.done()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert src.closed and src.cancelled  # the pull in flight was cancelled, the source closed
    assert not other_tasks()
    assert [b async for b in out] == []  # the stream is closed: nothing more, no hang


async def test_aclose_mid_batch_leaves_no_task() -> None:
    src = Gate([1])
    out = batched(src, max_delay=60)
    consumer = asyncio.ensure_future(out.__anext__())
    await src.blocked.wait()
    await out.aclose()
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    assert src.closed
    assert not other_tasks()


async def test_time_flush_keeps_the_pull_in_flight_and_the_order() -> None:
    src = Gate([1, 2], after=[3, 4])
    async with batched(src, max_items=3, max_delay=0.01) as out:
        assert await out.__anext__() == [1, 2]  # by time, the source is blocked
        src.release.set()
        assert [b async for b in out] == [[3, 4]]


async def test_the_aiostream_pipe_form_batches_by_time_too() -> None:
    src = Gate([1, 2], after=[3])
    xs = stream.iterate(src) | ops_pipe.batched(max_items=10, max_delay=0.01)
    async with xs.stream() as batches:
        assert await batches.__anext__() == [1, 2]  # by time, the source is blocked
        src.release.set()
        assert [b async for b in batches] == [[3]]
    assert src.closed
    assert not other_tasks()
