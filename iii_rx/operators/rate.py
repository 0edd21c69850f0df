"""``rate_limit``: let at most ``per_second`` items through per second, delaying the rest.

Items are never dropped: the ones that come too fast wait in order. reactivex has no
backpressure, so that wait is a buffer; over channel data prefer the async ``rate_limited``,
which slows the reader (and through the engine, the writer) instead.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable

from iii_rx.operators._outbox import Outbox
from iii_rx.operators._scheduling import pick_scheduler

__all__ = ["TokenBucket", "rate_limit"]

T = TypeVar("T")


class TokenBucket:
    """``burst`` tokens at most, refilled at ``per_second``; one token lets one item through."""

    __slots__ = ("_stamp", "_tokens", "burst", "per_second")

    def __init__(self, per_second: float, burst: int) -> None:
        if not per_second > 0:  # also NaN
            raise ValueError(f"per_second must be > 0, got {per_second}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.per_second = float(per_second)
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None

    def take(self, now: float) -> float:
        """Take a token at time ``now`` (seconds) if one is there: 0.0; else the wait for one."""
        if self._stamp is not None:
            refill = (now - self._stamp) * self.per_second
            self._tokens = min(float(self.burst), self._tokens + refill)
        self._stamp = now
        if self._tokens >= 1.0 - 1e-9:  # absorb float error of the refill
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.per_second


def rate_limit(
    per_second: float, *, burst: int = 1, scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[T]], Observable[T]]:
    """Emit at most ``per_second`` items per second (bursts of up to ``burst`` at once).

    Items that arrive faster wait in arrival order. Completion and errors are passed on after
    the waiting items, so nothing that arrived is lost.
    """
    TokenBucket(per_second, burst)  # validate now, not at subscription

    def _rate_limit(source: Observable[T]) -> Observable[T]:
        def subscribe(
            observer: abc.ObserverBase[T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = pick_scheduler(scheduler, subscribe_scheduler)
            bucket = TokenBucket(per_second, burst)
            lock = threading.RLock()
            out: Outbox[T] = Outbox(observer, lock)
            waiting: deque[T] = deque()
            timer = SerialDisposable()
            timer_armed = False
            end: list[Exception | None] = []  # [None] completed, [error] failed

            def release() -> None:
                """Queue what the bucket lets through now (holding the lock)."""
                nonlocal timer_armed
                while waiting:
                    wait = bucket.take(sched.to_seconds(sched.now))
                    if wait > 0.0:
                        timer_armed = True
                        timer.disposable = sched.schedule_relative(wait, on_timer)
                        return
                    out.next(waiting.popleft())
                if end:
                    error = end.pop()
                    if error is None:
                        out.completed()
                    else:
                        out.error(error)

            def on_timer(_s: abc.SchedulerBase | None = None, _state: Any = None) -> None:
                nonlocal timer_armed
                with lock:
                    timer_armed = False
                    release()
                out.drain()

            def on_next(item: T) -> None:
                with lock:
                    waiting.append(item)
                    if not timer_armed:
                        release()
                out.drain()

            def on_end(error: Exception | None) -> None:
                with lock:
                    end.append(error)
                    if not timer_armed:
                        release()
                out.drain()

            upstream = source.subscribe(
                on_next, on_end, lambda: on_end(None), scheduler=subscribe_scheduler
            )
            return CompositeDisposable(upstream, timer)

        return Observable(subscribe)

    return _rate_limit
