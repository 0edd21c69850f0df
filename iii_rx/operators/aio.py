"""Async-iterator counterparts of the Rx operators, for pull-based channel pipelines.

Pulling is what carries backpressure: these operators ask their source for the next item only
when their own consumer asks, so a slow consumer slows the channel reader, and through the
engine, the writer (Rx has no backpressure: only a pull edge down to the socket bounds memory).

Each operator exists in two forms:

- the functions here (``batched(reader, max_items=100)``) return an :class:`AsyncStream`, a
  plain async iterator that is safe in a bare ``async for`` and closes its source on
  ``aclose()`` or when used as ``async with``;
- :mod:`iii_rx.operators.pipe` holds the same operators for aiostream pipelines
  (``stream.iterate(reader) | pipe.batched(max_items=100) | aiostream.pipe.map(f)``).

aiostream ``Stream`` objects are never returned directly: a bare ``async for`` over one warns
"Streamer is iterated outside of its context" (aiostream 0.6 to 0.8). Any ``AsyncStream`` or
channel reader is an ordinary async iterable and can be the source of aiostream operators.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, TypeVar

from aiostream import Stream, operator, pipable_operator, streamcontext
from aiostream.core import Streamer

from iii_rx.operators._timed_batch import TimedBatcher
from iii_rx.operators.batch import BatchLimits
from iii_rx.operators.decode import ChunkDecoder, JsonLinesDecoder, _CborDecoder
from iii_rx.operators.rate import TokenBucket
from iii_rx.operators.retry import Backoff, RetryOn, _predicate, check_attempts, is_retryable

__all__ = [
    "AsyncStream",
    "batched",
    "batched_op",
    "cbor_items",
    "cbor_items_op",
    "json_lines",
    "json_lines_op",
    "rate_limited",
    "rate_limited_op",
    "retrying",
    "retrying_op",
]

T = TypeVar("T")

class AsyncStream(AsyncIterator[T], Generic[T]):
    """A single-use async iterator over an aiostream ``Stream``, iterated inside its context.

    ``async with`` (or ``aclose()``) closes the pipeline and its sources at once, also after a
    ``break``; a bare ``async for`` works without warnings and closes it when exhausted.
    """

    __slots__ = ("_closed", "_source", "_streamer")

    def __init__(self, source: Stream[T]) -> None:
        self._source = source
        self._streamer: Streamer[T] | None = None
        self._closed = False

    @property
    def stream(self) -> Stream[T]:
        """The underlying aiostream ``Stream``, for ``|`` composition before iterating."""
        return self._source

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        if self._streamer is None:
            self._streamer = self._source.stream()
            await self._streamer.__aenter__()
        try:
            return await self._streamer.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the pipeline and its sources; idempotent."""
        if self._closed:
            return
        self._closed = True
        streamer, self._streamer = self._streamer, None
        if streamer is not None:
            await streamer.__aexit__(None, None, None)

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# --------------------------------------------------------------------------- batching


@pipable_operator
async def batched_op(
    source: AsyncIterable[Any],
    max_items: int | None = None,
    max_bytes: int | None = None,
    max_delay: float | timedelta | None = None,
    size_of: Callable[[Any], int] | None = None,
) -> AsyncIterator[list[Any]]:
    """Lists of items by count, bytes or time, whichever limit comes first (see ``batch``)."""
    limits = BatchLimits(max_items, max_bytes, max_delay, size_of)
    async with streamcontext(source) as streamer:
        if limits.max_delay is not None:
            batcher = TimedBatcher(streamer, limits)
            try:
                while (batch := await batcher.next_batch()) is not None:
                    yield batch
            finally:
                await batcher.aclose()
            return
        pending: list[Any] = []
        nbytes = 0
        sized = limits.max_bytes is not None
        while True:
            try:
                item = await streamer.__anext__()
            except StopAsyncIteration:
                break
            except Exception:
                if pending:
                    yield pending
                raise
            size = limits.size_of(item) if sized else 0
            if sized and limits.overflows(len(pending), nbytes, size):
                out, pending, nbytes = pending, [], 0
                yield out
            pending.append(item)
            nbytes += size
            if limits.full(len(pending), nbytes):
                out, pending, nbytes = pending, [], 0
                yield out
        if pending:
            yield pending


def batched(
    source: AsyncIterable[T],
    max_items: int | None = None,
    max_bytes: int | None = None,
    max_delay: float | timedelta | None = None,
    *,
    size_of: Callable[[Any], int] | None = None,
) -> AsyncStream[list[T]]:
    """Group ``source`` into lists: at most ``max_items`` items, ``max_bytes`` bytes (by
    ``size_of``, default ``len``), or what arrived within ``max_delay`` of a batch's first item.

    Empty batches are never yielded; on the source's end or error the pending batch comes
    first. The next item is only requested when the consumer asks, so backpressure holds.
    """
    BatchLimits(max_items, max_bytes, max_delay, size_of)  # fail at the call, not at iteration
    return AsyncStream[list[T]](batched_op(source, max_items, max_bytes, max_delay, size_of))


# --------------------------------------------------------------------------- decoding


async def _decode(source: AsyncIterable[Any], decoder: ChunkDecoder) -> AsyncIterator[Any]:
    async with streamcontext(source) as streamer:
        async for chunk in streamer:
            for value in decoder.feed(chunk):
                yield value
            if decoder.error is not None:  # bad data after those values: not one chunk later
                raise decoder.error
    for value in decoder.finish():
        yield value


@pipable_operator
def cbor_items_op(source: AsyncIterable[bytes]) -> AsyncIterator[Any]:
    """Byte chunks carrying a CBOR sequence -> decoded items (see ``decode_cbor``)."""
    return _decode(source, _CborDecoder())


@pipable_operator
def json_lines_op(source: AsyncIterable[bytes | str]) -> AsyncIterator[Any]:
    """Byte or text chunks carrying JSON Lines -> one value per line (see ``decode_json_lines``)."""
    return _decode(source, JsonLinesDecoder())


class _Decoded(AsyncStream[Any]):
    """``cbor_items`` / ``json_lines``: an :class:`AsyncStream` whose own iteration skips
    aiostream per item. A chunk's items are decoded at once and handed out from a deque, so an
    item costs one plain ``__anext__``; the source is pulled (through aiostream's context, as
    any source) only when the deque is empty. ``stream`` is the same operator in aiostream
    form, for composition."""

    __slots__ = ("_chunks", "_decoder", "_ended", "_ready")

    def __init__(self, operator_stream: Stream[Any], source: AsyncIterable[Any],
                 decoder: ChunkDecoder) -> None:
        super().__init__(operator_stream)
        self._chunks = source
        self._decoder = decoder
        self._ready: deque[Any] = deque()
        self._ended = False

    async def __anext__(self) -> Any:
        ready = self._ready
        if ready:
            return ready.popleft()
        if self._closed:
            raise StopAsyncIteration
        try:
            if self._streamer is None:
                self._streamer = streamcontext(self._chunks)
                await self._streamer.__aenter__()
            streamer = self._streamer
            while not ready:
                if self._ended:
                    raise StopAsyncIteration
                if self._decoder.error is not None:  # after the values before it
                    raise self._decoder.error
                try:
                    chunk = await streamer.__anext__()
                except StopAsyncIteration:
                    self._ended = True
                    ready.extend(self._decoder.finish())
                else:
                    ready.extend(self._decoder.feed(chunk))
            return ready.popleft()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        self._ready.clear()
        await super().aclose()


def cbor_items(source: AsyncIterable[bytes]) -> AsyncStream[Any]:
    """Decode a CBOR sequence (RFC 8742) spread over ``source``'s byte chunks.

    Raises ``TruncatedStreamError`` if the source ends inside an item.
    """
    return _Decoded(cbor_items_op(source), source, _CborDecoder())


def json_lines(source: AsyncIterable[bytes | str]) -> AsyncStream[Any]:
    """Decode JSON Lines spread over ``source``'s chunks; a cut last line raises."""
    return _Decoded(json_lines_op(source), source, JsonLinesDecoder())


# --------------------------------------------------------------------------- rate


@pipable_operator
async def rate_limited_op(
    source: AsyncIterable[Any], per_second: float, burst: int = 1
) -> AsyncIterator[Any]:
    """At most ``per_second`` items per second; the source is not pulled while waiting."""
    bucket = TokenBucket(per_second, burst)
    loop = asyncio.get_running_loop()
    async with streamcontext(source) as streamer:
        async for item in streamer:
            wait = bucket.take(loop.time())
            while wait > 0.0:
                await asyncio.sleep(wait)
                wait = bucket.take(loop.time())
            yield item


def rate_limited(source: AsyncIterable[T], per_second: float, *, burst: int = 1) -> AsyncStream[T]:
    """Yield at most ``per_second`` items per second (bursts of ``burst``), pausing the source."""
    TokenBucket(per_second, burst)
    return AsyncStream[T](rate_limited_op(source, per_second, burst))


# --------------------------------------------------------------------------- retry


@operator
async def retrying_op(
    factory: Callable[[], AsyncIterable[T]],
    max_attempts: float = 3,
    initial_delay: float | timedelta = 0.1,
    max_delay: float | timedelta = 10.0,
    jitter: float = 0.1,
    retry_on: RetryOn = is_retryable,
    multiplier: float = 2.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
) -> AsyncIterator[T]:
    """Iterate ``factory()``; after a retryable error, wait and iterate a fresh one."""
    check_attempts(max_attempts)
    backoff = Backoff(initial_delay, max_delay, jitter, multiplier, random)
    should_retry = _predicate(retry_on)
    attempt = 0
    while True:
        attempt += 1
        try:
            async with streamcontext(factory()) as streamer:
                async for item in streamer:
                    yield item
            return
        except Exception as exc:
            if attempt >= max_attempts or not should_retry(exc):
                raise
        await sleep(backoff.delay(attempt))


def retrying(
    factory: Callable[[], AsyncIterable[T]],
    max_attempts: float = 3,
    initial_delay: float | timedelta = 0.1,
    max_delay: float | timedelta = 10.0,
    jitter: float = 0.1,
    retry_on: RetryOn = is_retryable,
    *,
    multiplier: float = 2.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
) -> AsyncStream[T]:
    """Iterate ``factory()`` and start over with a new one after a retryable error.

    An async iterator cannot be restarted, hence the factory (e.g. ``lambda: fetch_pages()``).
    ``max_attempts`` counts every attempt, the first included (``math.inf``: for ever); delays
    are those of ``retry_backoff``. Items yielded before a failure are not taken back: a source
    that restarts from the beginning yields them again.
    """
    if not callable(factory):
        raise TypeError(f"retrying needs a factory (a function that makes a new async iterable "
                        f"for each attempt, e.g. lambda: pages()), got {type(factory).__name__}")
    check_attempts(max_attempts)
    Backoff(initial_delay, max_delay, jitter, multiplier, random)
    return AsyncStream(
        retrying_op(factory, max_attempts, initial_delay, max_delay, jitter, retry_on,
                    multiplier, sleep, random)
    )
