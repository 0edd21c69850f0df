"""Hot multicast streams that emit on the client's loop and never let a subscriber hurt it.

:class:`HotStream` is the Subject behind the client's low-volume streams (connection state,
invocations for monitoring). Three rules, each a trap measured with reactivex, shape it:

* every signal is emitted on the client's loop thread; a subscription made from another thread
  is attached on the loop (through the client's :class:`~iii_rx.aio.LoopBridge`), so
  subscribers never see a foreign thread;
* a subscriber whose callback raises is logged and detached, and the producer (our frame reader)
  carries on: one faulty observer cannot stop the client;
* the async-iterator view subscribes eagerly and buffers in a bounded deque with a named overflow
  policy, because Rx has no backpressure; a producer that can wait (a trigger stream's
  delivery, which the engine waits for) asks for ``wait`` and awaits the iterator's
  :class:`Pace` before each value, so nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from iii_rx.aio import LoopBridge
from iii_rx.errors import StreamOverflowError

__all__ = ["HotStream", "Overflow", "Pace", "Stream", "StreamIterator", "StreamOverflowError"]

T = TypeVar("T")
log = logging.getLogger("iii_rx.streams")

Overflow = Literal["drop_oldest", "error", "wait"]


class _Guarded(Generic[T]):
    """One subscriber: forwards signals, detaches itself if a callback raises."""

    __slots__ = ("disposed", "observer", "stream")

    def __init__(self, stream: HotStream[T], observer: abc.ObserverBase[T]) -> None:
        self.stream = stream
        self.observer = observer
        self.disposed = False

    def on_next(self, value: T) -> None:
        if self.disposed:
            return
        try:
            self.observer.on_next(value)
        except Exception:
            log.exception("subscriber of %s raised in on_next; it is detached", self.stream.name)
            self.dispose()

    def on_error(self, error: Exception) -> None:
        if self.disposed:
            return
        self.disposed = True
        try:
            self.observer.on_error(error)
        except Exception:
            log.exception("subscriber of %s raised in on_error", self.stream.name)

    def on_completed(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        try:
            self.observer.on_completed()
        except Exception:
            log.exception("subscriber of %s raised in on_completed", self.stream.name)

    def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        self.stream._detach_soon(self)


class Stream(Observable[T], Generic[T]):
    """The observables of iii_rx: their ``subscribe`` takes callbacks that return a value.

    Rx types the callbacks as returning ``None``, so a type checker refused the natural
    ``subscribe(lambda inv: inv.reply(...))`` or ``subscribe(inv.reply, inv.fail)`` (both
    return a ``bool``). What a callback returns is ignored, as in Rx. The signature is for
    type checkers only: at run time ``subscribe`` is Rx's own, with no call in between.
    """

    if TYPE_CHECKING:
        def subscribe(
            self,
            on_next: abc.ObserverBase[T] | Callable[[T], object] | None = None,
            on_error: Callable[[Exception], object] | None = None,
            on_completed: Callable[[], object] | None = None,
            *,
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            """Subscribe an observer, or callbacks (see ``reactivex.Observable.subscribe``)."""


class HotStream(Stream[T], Generic[T]):
    """A multicast stream fed on one loop; with ``replay`` it replays its last value (the
    connection state needs that: a late subscriber learns where things stand).

    ``loop`` is the client's :class:`~iii_rx.aio.LoopBridge`, or a bare event loop whose
    thread is then learnt from the first call made on it.
    """

    def __init__(self, loop: LoopBridge | asyncio.AbstractEventLoop, name: str, *,
                 replay: bool = False) -> None:
        super().__init__()
        if isinstance(loop, LoopBridge):
            self._bridge: LoopBridge | None = loop
            self.loop = loop.loop
        else:
            self._bridge = None
            self.loop = loop
        self.name = name
        self._replay = replay
        self._has_value = False
        self._value: Any = None
        self._observers: tuple[_Guarded[T], ...] = ()
        self._terminal: tuple[str, Exception | None] | None = None

    # ------------------------------------------------------------------ producer side (loop)

    @property
    def has_observers(self) -> bool:
        """Whether anyone subscribes now (producers skip building values nobody sees)."""
        return bool(self._observers)

    @property
    def has_value(self) -> bool:
        """Whether a replaying stream has emitted a value yet."""
        return self._has_value

    @property
    def value(self) -> T:
        """The last value emitted (replaying streams only)."""
        if not self._has_value:
            raise LookupError(f"{self.name} has no value yet")
        return self._value  # type: ignore[no-any-return]

    def on_next(self, value: T) -> None:
        """Emit ``value`` (on the loop)."""
        if self._terminal is not None:
            return
        if self._replay:
            self._value = value
            self._has_value = True
        for sub in self._observers:
            sub.on_next(value)

    def on_error(self, error: Exception) -> None:
        """End the stream with ``error`` (on the loop); later subscribers get it too."""
        if self._terminal is not None:
            return
        self._terminal = ("error", error)
        subs, self._observers = self._observers, ()
        for sub in subs:
            sub.on_error(error)

    def on_completed(self) -> None:
        """Complete the stream (on the loop); later subscribers complete at once."""
        if self._terminal is not None:
            return
        self._terminal = ("completed", None)
        subs, self._observers = self._observers, ()
        for sub in subs:
            sub.on_completed()

    # ------------------------------------------------------------------ subscribers (any thread)

    def _on_loop(self) -> bool:
        bridge = self._bridge
        if bridge is None:  # a bare loop: learn its thread from a call made on it
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                return False
            if running is not self.loop:
                return False
            bridge = self._bridge = LoopBridge.current()
        return bridge.on_loop()

    def _hop(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon (``RuntimeError`` if it is closed)."""
        if self._bridge is not None:
            self._bridge.run_sync_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[T],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        sub = _Guarded(self, observer)
        if self._on_loop():
            self._attach(sub)
        else:
            try:
                self._hop(self._attach, sub)
            except RuntimeError:  # the loop has closed: a stream that ended there says so here
                if self._terminal is None:
                    raise
                self._attach(sub)
        return Disposable(sub.dispose)

    def _attach(self, sub: _Guarded[T]) -> None:
        if sub.disposed:
            return
        if self._terminal is not None:
            kind, error = self._terminal
            if kind == "error" and error is not None:
                sub.on_error(error)
            else:
                sub.on_completed()
            return
        self._observers = (*self._observers, sub)
        if self._replay and self._has_value:
            sub.on_next(self._value)

    def _detach_soon(self, sub: _Guarded[T]) -> None:
        if self._on_loop():
            self._detach(sub)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: nothing left to detach from
                self._hop(self._detach, sub)

    def _detach(self, sub: _Guarded[T]) -> None:
        self._observers = tuple(s for s in self._observers if s is not sub)

    # ------------------------------------------------------------------ async iteration

    def iterate(self, maxsize: int = 64, overflow: Overflow = "drop_oldest") -> StreamIterator[T]:
        """An async iterator over this stream, subscribed now, buffering up to ``maxsize``.

        ``overflow`` says what happens when the consumer falls behind: ``drop_oldest`` keeps the
        newest values, ``error`` ends the iteration with :class:`StreamOverflowError`
        (``wait`` needs a producer that waits for room: trigger streams have it).
        """
        if overflow == "wait":
            raise ValueError(f"{self.name} cannot wait for its consumer: use 'drop_oldest' "
                             "or 'error'")
        return StreamIterator(self, maxsize, overflow)

    def __aiter__(self) -> StreamIterator[T]:
        return self.iterate()


class Pace:
    """How far an iterator's consumer is behind, for a producer that waits for it (``wait``):
    the producer awaits :meth:`room` before each value. It is shared by the two, never holds
    the iterator, and is finished when the iteration ends, also when the iterator is dropped
    without :meth:`StreamIterator.aclose` (a ``break`` out of ``async for``) or its
    consumer's loop closes: a producer never waits for a consumer that is gone."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._queued = 0  # values handed on (any thread), not yet taken by the consumer
        self._room: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.finished = False

    async def room(self) -> None:
        """Return once fewer than ``maxsize`` values wait for the consumer, or it is gone."""
        with self._lock:
            if self._queued < self._maxsize or self.finished:
                return
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._room.append((loop, future))
        await future

    def handed(self) -> None:
        with self._lock:
            self._queued += 1

    def taken(self) -> None:
        with self._lock:
            self._queued -= 1
            if self._queued >= self._maxsize:
                return
            waiting, self._room = self._room, []
        _wake_producers(waiting)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            waiting, self._room = self._room, []
        _wake_producers(waiting)


class StreamIterator(Generic[T]):
    """Pull view of a hot stream: bounded buffer, signals marshalled onto the consumer's loop.

    The subscription holds the iterator weakly: one dropped without :meth:`aclose` is
    unsubscribed when it is collected."""

    def __init__(self, stream: Observable[T], maxsize: int, overflow: Overflow) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._buffer: deque[T] = deque()
        self._maxsize = maxsize
        self._overflow = overflow
        self.pace = Pace(maxsize) if overflow == "wait" else None
        """What a waiting producer awaits (``wait`` only)."""
        self._terminal: BaseException | None = None
        self._done = False
        self._waiter: asyncio.Future[None] | None = None
        try:
            self._bridge: LoopBridge | None = LoopBridge.current()  # the consumer's loop
        except RuntimeError:
            self._bridge = None
        me = weakref.ref(self)

        def on_next(value: T) -> None:
            iterator = me()
            if iterator is not None:
                iterator._handed(value)

        def on_end(error: BaseException | None) -> None:
            iterator = me()
            if iterator is not None:
                iterator._marshal(iterator._finish, error)

        self._subscription = stream.subscribe(on_next=on_next, on_error=on_end,
                                              on_completed=lambda: on_end(None))
        weakref.finalize(self, _dropped, self._subscription, self.pace)

    def _marshal(self, fn: Any, arg: Any) -> None:
        bridge = self._bridge
        if bridge is None or bridge.on_loop():
            fn(arg)
            return
        try:
            bridge.run_sync_soon(fn, arg)
        except RuntimeError:  # the consumer's loop is closed: nobody will read, as if dropped
            self._done = True
            _dropped(self._subscription, self.pace)

    @property
    def finished(self) -> bool:
        """Whether the iteration has ended (the stream ended, or :meth:`aclose`)."""
        return self._done

    def _handed(self, value: T) -> None:
        if self.pace is not None:
            self.pace.handed()
        self._marshal(self._push, value)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _push(self, value: T) -> None:
        if self._done:
            return
        if len(self._buffer) >= self._maxsize and self._overflow != "wait":
            if self._overflow == "error":
                self._finish(StreamOverflowError(
                    f"consumer fell more than {self._maxsize} items behind"))
                self._subscription.dispose()
                return
            self._buffer.popleft()
        self._buffer.append(value)
        self._wake()

    def _finish(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self._terminal = error
        self._wake()
        if self.pace is not None:  # a waiting producer goes on: nobody reads any more
            self.pace.finish()

    def __aiter__(self) -> StreamIterator[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._buffer:
                value = self._buffer.popleft()
                if self.pace is not None:
                    self.pace.taken()
                return value
            if self._done:
                if self._terminal is not None:
                    raise self._terminal
                raise StopAsyncIteration
            if self._bridge is None:
                self._bridge = LoopBridge.current()
            self._waiter = self._bridge.loop.create_future()
            await self._waiter

    async def aclose(self) -> None:
        """Stop iterating and unsubscribe."""
        self._subscription.dispose()
        self._finish(None)
        self._buffer.clear()

    async def __aenter__(self) -> StreamIterator[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _dropped(subscription: abc.DisposableBase, pace: Pace | None) -> None:
    """An iterator was collected (dropped without ``aclose``): unsubscribe, free its producer."""
    subscription.dispose()
    if pace is not None:
        pace.finish()


def _wake_producers(waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]
                    ) -> None:
    for loop, future in waiting:
        with contextlib.suppress(RuntimeError):  # the producer's loop is closed
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
