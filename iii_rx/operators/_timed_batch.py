"""The time limit of the async ``batched``: a timer per batch at most, not a task per item.

Waiting for the next item *or* the batch's deadline needs the source's ``__anext__`` to run
where it can outlive a timed flush (it must not be cancelled: the item would be lost). Instead
of a task and an ``asyncio.wait`` per item, one pump task pulls items with plain awaits and
fills the batch, and one ``loop.call_at`` handle flushes it at its deadline. A batch that goes
out by count leaves that handle armed; when it fires early it moves to the current batch's
deadline, so a fast source arms about one timer per ``max_delay``, not one per batch. The
pump pulls only while the consumer waits for a batch (the one pull in flight when the timer
flushed is the only item read ahead), so backpressure holds.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from iii_rx.operators.batch import BatchLimits

__all__ = ["TimedBatcher"]

# asyncio runs a timer this early at most (it treats handles due within it as due now).
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class TimedBatcher:
    """Batches of ``source`` by ``limits`` (whose ``max_delay`` is set); see the module doc.

    :meth:`next_batch` returns the next batch, ``None`` at the end, or raises the source's
    error once the batch before it was returned. :meth:`aclose` cancels and awaits the pump.
    """

    __slots__ = ("_deadline", "_delay", "_done", "_error", "_limits", "_loop", "_nbytes",
                 "_pending", "_pump", "_ready", "_resume", "_source", "_timer", "_waiter")

    def __init__(self, source: AsyncIterator[Any], limits: BatchLimits) -> None:
        assert limits.max_delay is not None
        self._source = source
        self._limits = limits
        self._delay: float = limits.max_delay
        self._loop = asyncio.get_running_loop()
        self._pending: list[Any] = []
        self._nbytes = 0
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._ready: deque[list[Any]] = deque()  # batches closed while nobody waited
        self._waiter: asyncio.Future[None] | None = None  # the consumer, waiting for a batch
        self._resume: asyncio.Future[None] | None = None  # the pump, waiting for a consumer
        self._pump: asyncio.Task[None] | None = None
        self._done = False
        self._error: BaseException | None = None

    async def next_batch(self) -> list[Any] | None:
        while not self._ready:
            if self._done:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                return None
            if self._pump is None:
                self._pump = self._loop.create_task(self._run())
            waiter = self._waiter = self._loop.create_future()
            resume, self._resume = self._resume, None
            if resume is not None and not resume.done():
                resume.set_result(None)
            try:
                await waiter
            finally:
                self._waiter = None
        return self._ready.popleft()

    async def aclose(self) -> None:
        """Stop the timer and the pump (cancelling a pull in flight); idempotent."""
        self._done = True
        self._cancel_timer()
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            pump.cancel()
            await asyncio.wait((pump,))

    # ------------------------------------------------------------------ the pump

    async def _run(self) -> None:
        source = self._source
        limits = self._limits
        max_items = limits.max_items
        simple = limits.max_bytes is None  # no size to measure: the per-item path is inlined
        now = self._loop.time
        try:
            while True:
                while self._waiter is None:  # pull only for a consumer that waits
                    resume = self._resume = self._loop.create_future()
                    await resume
                try:
                    item = await source.__anext__()
                except StopAsyncIteration:
                    break
                pending = self._pending
                # The clock is read every 16 items: enough for a source that never suspends
                # (the timer cannot fire then), cheap for one that does.
                if simple and pending and (len(pending) & 15 or now() < self._deadline):
                    pending.append(item)
                    if max_items is not None and len(pending) >= max_items:
                        self._flush()
                        self._wake()
                else:
                    self._add(item)
        except BaseException as exc:  # delivered after the pending batch
            self._error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self._flush()
            self._cancel_timer()
            self._done = True
            self._wake()

    def _add(self, item: Any) -> None:
        limits = self._limits
        size = limits.size_of(item) if limits.max_bytes is not None else 0
        pending = self._pending
        if pending:
            if limits.overflows(len(pending), self._nbytes, size):
                self._flush()
                pending = self._pending
            elif self._loop.time() >= self._deadline:  # a source that never lets the loop run
                self._flush()
                pending = self._pending
        if not pending:
            self._deadline = self._loop.time() + self._delay
            if self._timer is None:  # else it fires earlier and moves itself to the deadline
                self._timer = self._loop.call_at(self._deadline, self._on_timer)
        pending.append(item)
        self._nbytes += size
        if limits.full(len(pending), self._nbytes):
            self._flush()
        if self._ready:
            self._wake()

    def _on_timer(self) -> None:
        self._timer = None
        if not self._pending:
            return
        if self._loop.time() + _CLOCK_RESOLUTION >= self._deadline:
            self._flush()
            self._wake()
        else:  # armed for a batch that went out by count: follow the current one
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _flush(self) -> None:
        if self._pending:
            self._ready.append(self._pending)
            self._pending = []
            self._nbytes = 0

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None  # the pump pauses until the next request
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
