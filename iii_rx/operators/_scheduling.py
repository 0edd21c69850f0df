"""Which scheduler a time-based operator uses when none is given."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from reactivex import abc
from reactivex.scheduler import TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

__all__ = ["pick_scheduler", "seconds"]


def pick_scheduler(
    explicit: abc.SchedulerBase | None, subscribe_scheduler: abc.SchedulerBase | None
) -> abc.SchedulerBase:
    """The operator's own scheduler, else the subscriber's, else the running asyncio loop.

    Streams of iii_rx emit on the client's loop, so timers default to
    that loop when one runs on the subscribing thread; the thread-safe variant is used because
    sources may emit from other threads (reactivex's plain ``AsyncIOScheduler``, called from
    another thread, stalls until something else wakes the loop, about a second). With no loop,
    reactivex's ``TimeoutScheduler`` (threads) is the fallback.
    """
    if explicit is not None:
        return explicit
    if subscribe_scheduler is not None:
        return subscribe_scheduler
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return TimeoutScheduler.singleton()
    return AsyncIOThreadSafeScheduler(loop)


def seconds(value: float | timedelta, name: str) -> float:
    """A duration in seconds; rejects negative values with a message naming the argument."""
    secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if secs < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return secs
