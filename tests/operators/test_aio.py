"""Async-iterator operators: behaviour, backpressure, cleanup, aiostream composition."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator

import pytest
from aiostream import pipe as aiopipe
from aiostream import stream

from iii_rx.channels.cborseq import encode_item
from iii_rx.channels.errors import CborDecodeError, TruncatedStreamError
from iii_rx.errors import IIIInvocationError, IIITimeoutError
from iii_rx.operators import (
    AsyncStream,
    batched,
    cbor_items,
    json_lines,
    rate_limited,
    retrying,
)
from iii_rx.operators import pipe as ops_pipe


class Source:
    """An async iterable that records how far it was pulled and whether it was closed."""

    def __init__(self, items: list[object], fail: Exception | None = None) -> None:
        self.items = items
        self.fail = fail
        self.pulled = 0
        self.closed = False

    async def gen(self) -> AsyncIterator[object]:
        try:
            for item in self.items:
                self.pulled += 1
                yield item
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed = True

    def __aiter__(self) -> AsyncIterator[object]:
        return self.gen()


@pytest.fixture(autouse=True)
def no_aiostream_warnings() -> object:
    # Earlier tests' garbage is collected first, outside the filter: the official SDK leaves
    # its event loops unclosed, and their ResourceWarning at a later collection is not ours.
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


async def test_batched_by_count_and_bytes() -> None:
    assert [b async for b in batched(Source([1, 2, 3, 4, 5]), max_items=2)] == [[1, 2], [3, 4], [5]]
    got = [b async for b in batched(Source([b"aaaa", b"bbbb", b"cc", b"z" * 20]), max_bytes=8)]
    assert got == [[b"aaaa", b"bbbb"], [b"cc"], [b"z" * 20]]


async def test_batched_by_time_flushes_while_the_source_is_idle() -> None:
    release = asyncio.Event()

    async def slow() -> AsyncIterator[int]:
        yield 1
        yield 2
        await release.wait()
        yield 3

    out = batched(slow(), max_items=10, max_delay=0.01)
    assert await out.__anext__() == [1, 2]  # by time: the source is blocked on `release`
    release.set()
    assert [b async for b in out] == [[3]]


async def test_batched_yields_pending_before_the_error() -> None:
    boom = RuntimeError("boom")
    got: list[list[object]] = []
    with pytest.raises(RuntimeError, match="boom"):
        async for b in batched(Source([1, 2, 3], fail=boom), max_items=2):
            got.append(b)
    assert got == [[1, 2], [3]]


async def test_pull_based_the_source_is_not_read_ahead() -> None:
    src = Source(list(range(100)))
    async with batched(src, max_items=10) as out:
        assert await out.__anext__() == list(range(10))
        assert src.pulled == 10
    assert src.closed  # `async with` closed the source right away


async def test_break_with_aclose_closes_the_source() -> None:
    src = Source(list(range(100)))
    out = rate_limited(src, per_second=1000)
    async for _ in out:
        break
    await out.aclose()
    assert src.closed


async def test_rate_limited_spaces_items() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = [x async for x in rate_limited(Source([1, 2, 3, 4, 5]), per_second=200)]
    assert got == [1, 2, 3, 4, 5]
    assert loop.time() - start >= 4 / 200 * 0.9  # four waits of 5 ms (a lower bound, not a speed)


async def test_cbor_items_and_truncation() -> None:
    data = b"".join(encode_item(x) for x in [{"a": 1}, [b"b" * 100_000], "c"])
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    assert [x async for x in cbor_items(Source(chunks))] == [{"a": 1}, [b"b" * 100_000], "c"]
    got: list[object] = []
    with pytest.raises(TruncatedStreamError):
        async for x in cbor_items(Source([data[:-3]])):
            got.append(x)
    assert got == [{"a": 1}]


async def test_json_lines() -> None:
    assert [x async for x in json_lines(Source([b'{"a"', b': 1}\n[2]\n'])) ] == [{"a": 1}, [2]]


async def test_composes_with_aiostream_both_ways() -> None:
    data = b"".join(encode_item(i) for i in range(10))
    # our operators inside an aiostream pipeline
    xs = (
        stream.iterate(Source([data[:7], data[7:]]))
        | ops_pipe.cbor_items()
        | aiopipe.map(lambda x: x * 10)
        | ops_pipe.batched(max_items=4)
    )
    async with xs.stream() as it:
        assert [b async for b in it] == [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90]]
    # an aiostream pipeline wrapped as a safe public iterator
    ys = AsyncStream(stream.iterate(Source([1, 2, 3])) | aiopipe.map(lambda x: -x))
    assert [y async for y in ys] == [-1, -2, -3]
    # our iterator as the source of an aiostream operator
    zs = stream.take(batched(Source(list(range(10))), max_items=3), 2)
    async with zs.stream() as it:
        assert [z async for z in it] == [[0, 1, 2], [3, 4, 5]]


async def test_retrying_restarts_with_backoff() -> None:
    attempts: list[int] = []
    waits: list[float] = []

    async def record_sleep(delay: float) -> None:
        waits.append(delay)

    def factory() -> AsyncIterator[str]:
        async def gen() -> AsyncIterator[str]:
            attempts.append(len(attempts) + 1)
            yield f"start {len(attempts)}"
            if len(attempts) == 1:
                raise IIITimeoutError("TIMEOUT", "slow")
            if len(attempts) == 2:
                raise IIIInvocationError("invocation_stopped", "gone")
            yield "done"

        return gen()

    out = retrying(factory, max_attempts=3, initial_delay=0.5, jitter=0, sleep=record_sleep)
    assert [x async for x in out] == ["start 1", "start 2", "start 3", "done"]
    assert waits == [0.5, 1.0]


async def test_retrying_passes_non_retryable_errors() -> None:
    calls = 0

    def factory() -> Source:
        nonlocal calls
        calls += 1
        return Source([], fail=IIIInvocationError("invocation_failed", "bug"))

    with pytest.raises(IIIInvocationError, match="bug"):
        async for _ in retrying(factory, max_attempts=5, initial_delay=0):
            pass
    assert calls == 1


def test_arguments_are_checked_at_the_call() -> None:
    with pytest.raises(ValueError):
        batched(Source([]))
    with pytest.raises(ValueError):
        rate_limited(Source([]), per_second=0)
    with pytest.raises(ValueError):
        retrying(lambda: Source([]), max_attempts=0)


class Stalled:
    """Yields its chunks, then waits for ever (a live channel whose writer went quiet)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def gen(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        await asyncio.Event().wait()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.gen()


@pytest.mark.parametrize("form", ["direct", "pipe"])
async def test_bad_data_after_good_items_fails_without_waiting_for_a_chunk(form: str) -> None:
    chunk = encode_item({"ok": 1}) + b"\xff"
    got: list[object] = []

    async def read() -> None:
        if form == "direct":
            async for item in cbor_items(Stalled([chunk])):
                got.append(item)
            return
        piped = stream.iterate(Stalled([chunk])) | ops_pipe.cbor_items()
        async with piped.stream() as streamer:
            async for item in streamer:
                got.append(item)

    with pytest.raises(CborDecodeError):
        await asyncio.wait_for(read(), 5)
    assert got == [{"ok": 1}]
