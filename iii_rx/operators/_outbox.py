"""Emitting an operator's output in order, one call at a time, without holding its lock.

An operator fed from two threads (the source's, and its timer's) needs a lock over its state;
if it also held that lock while calling the observer, an observer that blocks (a subscriber
waiting for a call's answer, say) would block the other thread at the lock: the client's loop,
which that answer needs. So operators queue what they emit while holding their lock and emit
after releasing it: the first thread to find nobody emitting emits everything queued, in
order, including what other threads queue meanwhile (as Rx's serialized observers do).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Generic, TypeVar

from reactivex import abc

__all__ = ["Outbox"]

T = TypeVar("T")

_NEXT, _ERROR, _COMPLETED = 0, 1, 2


class Outbox(Generic[T]):
    """Events for ``observer``: queue with :meth:`next`/:meth:`error`/:meth:`completed`
    (holding ``lock``), then call :meth:`drain` (not holding it).

    Nothing is emitted after a terminal event. An observer that raises leaves the rest queued
    for the next :meth:`drain`, and the exception goes to the thread that emitted (it broke
    the Rx contract: with no next event, what is queued, its terminal event too, stays there).
    """

    __slots__ = ("_emitting", "_events", "_lock", "_observer", "stopped")

    def __init__(self, observer: abc.ObserverBase[T], lock: threading.RLock) -> None:
        self._observer = observer
        self._lock = lock
        self._events: deque[tuple[int, Any]] = deque()
        self._emitting = False
        self.stopped = False
        """A terminal event was queued: the operator should ignore what still comes in."""

    def next(self, value: T) -> None:
        if not self.stopped:
            self._events.append((_NEXT, value))

    def error(self, error: Exception) -> None:
        if not self.stopped:
            self.stopped = True
            self._events.append((_ERROR, error))

    def completed(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._events.append((_COMPLETED, None))

    def drain(self) -> None:
        """Emit what is queued, unless another call (any thread, or an outer frame of this
        one: a re-entrant source) is emitting already; that one emits it, in order."""
        with self._lock:
            if self._emitting:
                return
            self._emitting = True
        observer = self._observer
        try:
            while True:
                with self._lock:
                    if not self._events:
                        self._emitting = False
                        return
                    kind, value = self._events.popleft()
                if kind == _NEXT:
                    observer.on_next(value)
                elif kind == _ERROR:
                    observer.on_error(value)
                else:
                    observer.on_completed()
        except BaseException:
            with self._lock:
                self._emitting = False
            raise
