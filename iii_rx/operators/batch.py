"""``batch``: group items into lists by count, by bytes or by time, whichever limit comes first."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sized
from datetime import timedelta
from typing import Any, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable

from iii_rx.operators._outbox import Outbox
from iii_rx.operators._scheduling import pick_scheduler, seconds

__all__ = ["BatchLimits", "batch"]

T = TypeVar("T")


def _len(item: Any) -> int:
    return len(cast(Sized, item))


class BatchLimits:
    """Validated limits shared by the Rx ``batch`` and the async ``batched``."""

    __slots__ = ("max_bytes", "max_delay", "max_items", "size_of")

    def __init__(
        self,
        max_items: int | None,
        max_bytes: int | None,
        max_delay: float | timedelta | None,
        size_of: Callable[[Any], int] | None,
    ) -> None:
        if max_items is None and max_bytes is None and max_delay is None:
            raise ValueError("batch needs at least one of max_items, max_bytes, max_delay")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_delay = None if max_delay is None else seconds(max_delay, "max_delay")
        self.size_of: Callable[[Any], int] = size_of or _len

    def full(self, count: int, nbytes: int) -> bool:
        """Whether a batch of ``count`` items and ``nbytes`` bytes must go out now."""
        return (self.max_items is not None and count >= self.max_items) or (
            self.max_bytes is not None and nbytes >= self.max_bytes
        )

    def overflows(self, count: int, nbytes: int, size: int) -> bool:
        """Whether adding an item of ``size`` bytes would push a non-empty batch past max_bytes."""
        return self.max_bytes is not None and count > 0 and nbytes + size > self.max_bytes


def batch(
    max_items: int | None = None,
    max_bytes: int | None = None,
    max_delay: float | timedelta | None = None,
    *,
    size_of: Callable[[Any], int] | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[T]], Observable[list[T]]]:
    """Emit lists of items, closing a batch when any limit is reached.

    - ``max_items``: a batch holds at most this many items.
    - ``max_bytes``: a batch holds at most this many bytes as measured by ``size_of`` (default
      ``len``); an item that would push a non-empty batch past the limit starts the next one,
      and a single item larger than the limit goes out alone.
    - ``max_delay`` (seconds or ``timedelta``): a batch goes out at most this long after its
      first item arrived.

    Empty batches are never emitted. On completion the pending batch is emitted first; on
    error too, so that nothing already received is lost, then the error follows (also an
    error ``size_of`` raises). Batches go out one at a time and in order: an observer that
    blocks holds up the thread that called it only (the source's, or the timer's); the other
    queues its batches behind and returns.
    """
    limits = BatchLimits(max_items, max_bytes, max_delay, size_of)

    def _batch(source: Observable[T]) -> Observable[list[T]]:
        def subscribe(
            observer: abc.ObserverBase[list[T]],
            subscribe_scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            sched = pick_scheduler(scheduler, subscribe_scheduler)
            # Over the batch, not over emitting: a timer flush and an item may come at once
            # from two threads, and the observer may block (see Outbox).
            lock = threading.RLock()
            out: Outbox[list[T]] = Outbox(observer, lock)
            timer = SerialDisposable()
            pending: list[T] = []
            nbytes = 0
            generation = 0  # bumped on every flush; a timer only flushes its own batch

            def flush() -> None:
                nonlocal pending, nbytes, generation
                generation += 1
                if pending:
                    out.next(pending)
                    pending, nbytes = [], 0

            def arm_timer(delay: float) -> None:
                due = generation

                def fire(_s: abc.SchedulerBase, _state: Any = None) -> None:
                    with lock:
                        if due == generation:
                            flush()
                    out.drain()

                timer.disposable = sched.schedule_relative(delay, fire)

            def on_next(item: T) -> None:
                nonlocal nbytes
                try:
                    size = limits.size_of(item) if limits.max_bytes is not None else 0
                except Exception as exc:  # as reactivex's map: the error goes downstream
                    on_end(exc)
                    return
                with lock:
                    if out.stopped:
                        return
                    if limits.overflows(len(pending), nbytes, size):
                        flush()
                    pending.append(item)
                    nbytes += size
                    if limits.full(len(pending), nbytes):
                        flush()
                    elif len(pending) == 1 and limits.max_delay is not None:
                        arm_timer(limits.max_delay)
                out.drain()

            def on_end(error: Exception | None) -> None:
                with lock:
                    flush()
                    if error is None:
                        out.completed()
                    else:
                        out.error(error)
                timer.dispose()
                out.drain()

            upstream = source.subscribe(
                on_next, on_end, lambda: on_end(None), scheduler=subscribe_scheduler
            )
            return CompositeDisposable(upstream, timer)

        return Observable(subscribe)

    return _batch
