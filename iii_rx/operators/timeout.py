"""``timeout``: fail with :class:`~iii_rx.errors.IIITimeoutError` when the source goes quiet.

reactivex's own ``timeout`` raises a bare ``Exception("Timeout")``, which
callers cannot tell apart from anything else; this one raises the typed error that
``retry_backoff`` retries by default.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops

from iii_rx.errors import IIITimeoutError
from iii_rx.operators._scheduling import pick_scheduler, seconds

__all__ = ["timeout"]

T = TypeVar("T")


def timeout(
    duetime: float | timedelta,
    *,
    scheduler: abc.SchedulerBase | None = None,
    what: str = "value",
) -> Callable[[Observable[T]], Observable[T]]:
    """Raise ``IIITimeoutError`` (code ``TIMEOUT``) if no item arrives within ``duetime``.

    The clock restarts after every item, as in reactivex's ``timeout``; on a single-value
    ``trigger`` it bounds the whole call. ``what`` names the awaited thing in the message.
    """
    secs = seconds(duetime, "duetime")

    def _timeout(source: Observable[T]) -> Observable[T]:
        def subscribe(
            observer: abc.ObserverBase[T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = pick_scheduler(scheduler, subscribe_scheduler)

            def fail(_: Any = None) -> Observable[T]:
                return reactivex.throw(
                    IIITimeoutError("TIMEOUT", f"timed out: no {what} within {secs:g} s")
                )

            guarded = source.pipe(ops.timeout(secs, reactivex.defer(fail), scheduler=sched))
            return guarded.subscribe(observer, scheduler=subscribe_scheduler)

        return Observable(subscribe)

    return _timeout
