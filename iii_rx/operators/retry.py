"""``retry_backoff``: resubscribe after retryable errors, waiting longer each time.

Resubscribing is what makes it useful on a ``trigger``: the single-value observable is lazy, so
each subscription is a new call. reactivex has no ``retry_when`` (no 4.x-6.x release
has one).
"""

from __future__ import annotations

import asyncio
import math
import random as _random
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import SerialDisposable, SingleAssignmentDisposable

from iii_rx.errors import IIIInvocationError
from iii_rx.operators._scheduling import pick_scheduler, seconds

__all__ = ["Backoff", "RetryOn", "check_attempts", "is_retryable", "retry_backoff"]

T = TypeVar("T")

RetryOn = Callable[[BaseException], bool] | type[BaseException] | tuple[type[BaseException], ...]
"""A predicate over the error, or the exception class(es) worth retrying."""


def is_retryable(error: BaseException) -> bool:
    """The default policy: timeouts and calls stopped because a worker went away.

    ``IIITimeoutError`` (and any ``TimeoutError``) and ``IIIInvocationError`` with code
    ``invocation_stopped`` are transient; a handler that raised (``invocation_failed``), a missing
    function or a refused call would fail the same way again.
    """
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):  # apart on 3.10
        return True
    return isinstance(error, IIIInvocationError) and error.code == "invocation_stopped"


def _predicate(retry_on: RetryOn) -> Callable[[BaseException], bool]:
    if isinstance(retry_on, type) or isinstance(retry_on, tuple):
        kinds = retry_on
        return lambda error: isinstance(error, kinds)
    return retry_on


def check_attempts(max_attempts: float) -> None:
    """``max_attempts`` is a number >= 1 (``math.inf``: retry for ever)."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, (int, float)):
        raise TypeError(f"max_attempts must be a number, got {type(max_attempts).__name__}")
    if not max_attempts >= 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")


class Backoff:
    """Delays of exponential backoff with proportional jitter, capped at ``max_delay``.

    Attempt ``n`` (1-based, the attempt that just failed) waits
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``, scaled by a random factor in
    ``[1 - jitter, 1 + jitter]`` and capped again.
    """

    __slots__ = ("initial_delay", "jitter", "max_delay", "multiplier", "random")

    def __init__(
        self,
        initial_delay: float | timedelta,
        max_delay: float | timedelta,
        jitter: float,
        multiplier: float,
        random: Callable[[], float],
    ) -> None:
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {jitter}")
        if not multiplier >= 1.0:  # also NaN
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        self.initial_delay = seconds(initial_delay, "initial_delay")
        self.max_delay = seconds(max_delay, "max_delay")
        self.jitter = jitter
        self.multiplier = multiplier
        self.random = random

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` failed."""
        try:
            grown = self.initial_delay * self.multiplier ** (failed_attempt - 1)
        except OverflowError:  # attempt ~1025 at 2x: long past max_delay anyway
            grown = math.inf
        base = min(self.max_delay, grown)
        if self.jitter:
            base *= 1.0 + self.jitter * (2.0 * self.random() - 1.0)
        return max(0.0, min(self.max_delay, base))


def retry_backoff(
    max_attempts: float = 3,
    initial_delay: float | timedelta = 0.1,
    max_delay: float | timedelta = 10.0,
    jitter: float = 0.1,
    retry_on: RetryOn = is_retryable,
    *,
    multiplier: float = 2.0,
    scheduler: abc.SchedulerBase | None = None,
    random: Callable[[], float] = _random.random,
) -> Callable[[Observable[T]], Observable[T]]:
    """Resubscribe to the source after an error that ``retry_on`` accepts, with backoff.

    ``max_attempts`` counts every subscription, the first included (as reactivex's ``retry``;
    ``math.inf``: for ever).
    The last error, or the first one that is not retryable, is passed on. Items emitted by a
    failed attempt have already gone downstream; on a ``trigger`` there are none.
    """
    check_attempts(max_attempts)
    backoff = Backoff(initial_delay, max_delay, jitter, multiplier, random)
    should_retry = _predicate(retry_on)

    def _retry(source: Observable[T]) -> Observable[T]:
        def subscribe(
            observer: abc.ObserverBase[T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = pick_scheduler(scheduler, subscribe_scheduler)
            current = SerialDisposable()
            attempt = 0

            def run(_s: abc.SchedulerBase | None = None, _state: Any = None) -> None:
                nonlocal attempt
                attempt += 1
                # Placed before subscribing: a synchronous error may replace it with a timer.
                inner = SingleAssignmentDisposable()
                current.disposable = inner
                inner.disposable = source.subscribe(
                    observer.on_next, on_error, observer.on_completed,
                    scheduler=subscribe_scheduler,
                )

            def on_error(error: Exception) -> None:
                try:
                    again = attempt < max_attempts and should_retry(error)
                except Exception as exc:  # a faulty predicate fails the stream, not the caller
                    observer.on_error(exc)
                    return
                if not again:
                    observer.on_error(error)
                    return
                try:
                    current.disposable = sched.schedule_relative(backoff.delay(attempt), run)
                except Exception as exc:  # a faulty random or scheduler: the stream fails
                    observer.on_error(exc)

            run()
            return current

        return Observable(subscribe)

    return _retry
