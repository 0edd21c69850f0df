"""Which scheduler a time-based operator uses when none is given."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TypeVar

from reactivex import abc, typing
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler import TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler

__all__ = ["LoopScheduler", "pick_scheduler", "seconds"]

_TState = TypeVar("_TState")


class LoopScheduler(AsyncIOThreadSafeScheduler):
    """reactivex's thread-safe asyncio scheduler, but disposing an action never waits.

    reactivex's waits, from any other thread that runs a loop of its own, until the scheduler's
    loop has cancelled the handle: from the client's loop thread, disposing a timer on a
    notebook kernel's loop (blocked in a cell waiting for that very value) froze the client.
    Here a disposed action is marked and its handle cancelled when the loop gets to it (an
    action already running is not stopped, as before: "best effort").
    """

    def schedule(self, action: typing.ScheduledAction[_TState],
                 state: _TState | None = None) -> abc.DisposableBase:
        return self.schedule_relative(0.0, action, state)

    def schedule_relative(self, duetime: typing.RelativeTime,
                          action: typing.ScheduledAction[_TState],
                          state: _TState | None = None) -> abc.DisposableBase:
        delay = max(0.0, self.to_seconds(duetime))
        loop = self._loop
        result = SingleAssignmentDisposable()
        handle: asyncio.Handle | None = None
        disposed = False

        def run() -> None:
            if not disposed:
                result.disposable = self.invoke_action(action, state=state)

        def arm() -> None:
            nonlocal handle
            if not disposed:
                handle = loop.call_later(delay, run) if delay else loop.call_soon(run)

        def cancel() -> None:
            if handle is not None:
                handle.cancel()

        def dispose() -> None:
            nonlocal disposed
            disposed = True
            if _running_loop() is loop:
                cancel()
            else:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs
                    loop.call_soon_threadsafe(cancel)

        if _running_loop() is loop:
            arm()
        else:
            loop.call_soon_threadsafe(arm)
        return CompositeDisposable(result, Disposable(dispose))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def pick_scheduler(
    explicit: abc.SchedulerBase | None, subscribe_scheduler: abc.SchedulerBase | None
) -> abc.SchedulerBase:
    """The operator's own scheduler, else the subscriber's, else the running asyncio loop.

    Streams of iii_rx emit on the client's loop, so timers default to
    that loop when one runs on the subscribing thread; a thread-safe scheduler is used because
    sources may emit from other threads (reactivex's plain ``AsyncIOScheduler``, called from
    another thread, stalls until something else wakes the loop, about a second), and one whose
    dispose never waits (:class:`LoopScheduler`). With no loop,
    reactivex's ``TimeoutScheduler`` (threads) is the fallback.
    """
    if explicit is not None:
        return explicit
    if subscribe_scheduler is not None:
        return subscribe_scheduler
    loop = _running_loop()
    if loop is None:
        return TimeoutScheduler.singleton()
    return LoopScheduler(loop)


def seconds(value: float | timedelta, name: str) -> float:
    """A duration in seconds; rejects negative and NaN values with a message naming the
    argument."""
    secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not secs >= 0:  # also NaN
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return secs
