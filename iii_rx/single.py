"""``Single``: a lazy observable of exactly one value, awaitable and blockable.

``iii.trigger(...)`` returns a Single. Nothing happens until it is used; every use starts its own
call (so ``retry`` re-invokes, and awaiting twice calls twice):

* ``await single`` — on the client's loop it takes a direct path (no Rx machinery, no thread
  hop); from another loop (a notebook cell with a ``connect_sync`` client) it hops with
  ``asyncio.wrap_future``. Cancelling the awaiting task cancels the call.
* ``single.result(timeout=None)`` — blocks any thread but the client's loop thread, where it
  raises instead of deadlocking.
* ``single.future()`` — a :class:`concurrent.futures.Future`; cancelling it cancels the call.
* ``single.subscribe(...)`` — plain Rx; disposing before the answer frees the pending call.
* ``single.pipe(*ops)`` — another Single, so ``await iii.trigger(...).pipe(ops.retry(3))``
  works: its value is the last one the piped
  observable emits, and it fails with :class:`EmptySingleError` if there is none.

Rx signals of a call are delivered on the client's loop.

A Single that is garbage-collected without ever being used sent nothing: like a coroutine that
was never awaited, it says so with a ``RuntimeWarning`` naming its function. A flag set by
every use and a ``__del__`` keep that check off the hot path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import warnings
from collections.abc import Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable

from iii_rx.aio import LoopBridge
from iii_rx.errors import EmptySingleError, IIIConnectionError, IIITimeoutError
from iii_rx.streams import Stream

__all__ = ["CallStarter", "Done", "EmptySingleError", "Single"]

T = TypeVar("T")
log = logging.getLogger("iii_rx.single")

Done = Callable[[Any, "BaseException | None"], None]
"""Completion callback of a call: ``(value, None)`` or ``(None, error)``."""


class CallStarter(Protocol):
    """Starts one call on the client's loop (:class:`iii_rx.calls.Call` is one).

    A Single knows nothing of frames or pending tables: it asks its starter to begin a call,
    on the loop of :attr:`bridge`, and keeps the cancel function it gets back.
    """

    @property
    def bridge(self) -> LoopBridge:
        """The client's loop: where :meth:`start` and the cancel function must run."""

    def start(self, done: Done | asyncio.Future[Any]) -> Callable[[], None]:
        """Send the call; ``done`` is settled once with its outcome. Returns its canceller."""


class _CallSubscription:
    """One subscription of a call Single: forwards the answer to an Rx observer once."""

    __slots__ = ("cancel", "disposed", "observer", "starter")

    def __init__(self, starter: CallStarter, observer: abc.ObserverBase[Any]) -> None:
        self.starter = starter
        self.observer = observer
        self.disposed = False
        self.cancel: Callable[[], None] | None = None

    def begin(self) -> None:
        if not self.disposed:
            cancel = self.cancel = self.starter.start(self.done)
            if self.disposed:  # disposed from another thread while starting (or answered
                cancel()       # already: then cancelling does nothing)

    def done(self, value: Any, error: BaseException | None) -> None:
        if self.disposed:
            return
        self.disposed = True
        try:
            if error is not None:
                self.observer.on_error(error if isinstance(error, Exception)
                                       else RuntimeError(repr(error)))
            else:
                self.observer.on_next(value)
                self.observer.on_completed()
        except Exception:
            log.exception("subscriber of a trigger result raised")

    def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        cancel = self.cancel
        if cancel is None:
            return  # not started yet: begin() will see ``disposed``
        bridge = self.starter.bridge
        if bridge.on_loop():
            cancel()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: nothing left to cancel
                bridge.run_sync_soon(cancel)


class _FutureCall:
    """A call settling a :class:`concurrent.futures.Future` directly (no Rx in between)."""

    __slots__ = ("cancel", "cf", "starter")

    def __init__(self, starter: CallStarter, cf: concurrent.futures.Future[Any]) -> None:
        self.starter = starter
        self.cf = cf
        self.cancel: Callable[[], None] | None = None

    def begin(self) -> None:
        if not self.cf.done():
            self.cancel = self.starter.start(self.done)

    def done(self, value: Any, error: BaseException | None) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            if error is not None:
                self.cf.set_exception(error)
            else:
                self.cf.set_result(value)

    def finished(self, cf: concurrent.futures.Future[Any]) -> None:
        if not cf.cancelled():
            return
        bridge = self.starter.bridge
        if bridge.on_loop():
            self.abort()
        else:
            with contextlib.suppress(RuntimeError):
                bridge.run_sync_soon(self.abort)

    def abort(self) -> None:
        cancel, self.cancel = self.cancel, None
        if cancel is not None:
            cancel()


class _BlockingCall:
    """A call a thread waits for in ``result()``: the loop releases ``lock`` when it ends."""

    __slots__ = ("cancel", "error", "lock", "over", "starter", "value")

    def __init__(self, starter: CallStarter) -> None:
        self.starter = starter
        self.lock = threading.Lock()
        self.lock.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self.cancel: Callable[[], None] | None = None
        self.over = False

    def begin(self) -> None:
        if not self.over:
            self.cancel = self.starter.start(self.done)

    def done(self, value: Any, error: BaseException | None) -> None:
        if self.over:
            return
        self.over = True
        self.value, self.error = value, error
        self.lock.release()

    def interrupt(self, error: BaseException | None) -> None:
        """Stop waiting (any thread): cancel the call on the loop, wake the waiter with
        ``error`` if one is given."""
        try:
            self.starter.bridge.run_sync_soon(self._stop, error)
        except RuntimeError:  # loop closed: nothing to cancel, just wake the waiter
            self._stop(error)

    def _stop(self, error: BaseException | None) -> None:
        cancel, self.cancel = self.cancel, None
        if cancel is not None:
            cancel()
        if not self.over:
            self.over = True
            if error is not None:
                self.error = error
                self.lock.release()


class Single(Stream[T], Generic[T]):
    """A lazy single-value observable (see the module docstring)."""

    _used = True
    """Whether the Single was awaited, blocked on, subscribed or piped (class default: a
    Single whose ``__init__`` failed never warns)."""

    def __init__(
        self,
        bridge: LoopBridge,
        *,
        starter: CallStarter | None = None,
        source: Observable[T] | None = None,
        description: str = "call",
    ) -> None:
        if (starter is None) == (source is None):
            raise ValueError("a Single needs exactly one of starter or source")
        super().__init__()
        self._bridge = bridge
        self._starter = starter
        self._source = source
        self._description = description
        self._active: set[concurrent.futures.Future[Any] | _BlockingCall] = set()
        self._used = False

    def __del__(self) -> None:
        if not self._used:
            # Raised as an error (``-W error``), it is reported as unraisable, like a coroutine's.
            warnings.warn(
                f"Single for {self._description} was never awaited, blocked on or subscribed: "
                "nothing was sent (a trigger is lazy: use `await`, `.result()` or "
                "`.subscribe()`)", RuntimeWarning, stacklevel=1, source=self)

    def mark_used(self) -> Single[T]:
        """Silence the never-used warning (a Single dropped on purpose); returns ``self``."""
        self._used = True
        return self

    def __repr__(self) -> str:
        used = "" if self._used else " (lazy, not sent yet: await it or call .result())"
        return f"<Single {self._description}{used}>"

    # ------------------------------------------------------------------ Rx

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[T],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        self._used = True
        if self._source is not None:
            return self._source.subscribe(observer, scheduler=scheduler)
        assert self._starter is not None
        sub = _CallSubscription(self._starter, observer)
        if self._bridge.on_loop():
            sub.begin()
        else:
            try:
                self._bridge.run_sync_soon(sub.begin)
            except RuntimeError:  # the client's loop is gone
                sub.done(None, self._closed_error())
        return Disposable(sub.dispose)

    def _closed_error(self) -> IIIConnectionError:
        return IIIConnectionError(f"the client is closed; {self._description} was not sent")

    def pipe(  # type: ignore[override]
        self, *operators: Callable[[Observable[Any]], Observable[Any]]
    ) -> Single[Any]:
        """Apply Rx operators; the result is a Single of the last value they emit."""
        # Observables in and out, not ``Any``: from ``Any`` pyright infers a generic operator's
        # value as ``object`` (``ops.map(lambda r: r["sum"])`` fails); overloads per operator
        # count would lose mypy, which cannot infer such a lambda in an overloaded call.
        self._used = True
        piped: Observable[Any] = Observable.pipe(self, *operators)
        return Single(self._bridge, source=piped,
                      description=f"{self._description} | {len(operators)} operator(s)")

    # ------------------------------------------------------------------ await

    def __await__(self) -> Generator[Any, None, T]:
        self._used = True
        return self._wait().__await__()

    async def _wait(self) -> T:
        loop = asyncio.get_running_loop()
        if loop is not self._bridge.loop:
            return await asyncio.wrap_future(self.future())
        fut: asyncio.Future[T] = loop.create_future()
        if self._starter is not None:
            cancel = self._starter.start(fut)  # the direct path: no Rx, no hop
            try:
                return await fut
            finally:
                if not fut.done() or fut.cancelled():
                    cancel()
        disposable = self._subscribe_into(_LoopSetter(loop, fut))
        try:
            return await fut
        finally:
            disposable.dispose()

    # ------------------------------------------------------------------ blocking

    def future(self) -> concurrent.futures.Future[T]:
        """Start the call; a thread-safe future of its value (cancel it to cancel the call)."""
        self._used = True
        cf: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._active.add(cf)
        cf.add_done_callback(self._active.discard)
        if self._starter is not None:  # the direct path: no Rx, one batched hop
            call = _FutureCall(self._starter, cf)
            cf.add_done_callback(call.finished)
            if self._bridge.on_loop():
                call.begin()
            else:
                try:
                    self._bridge.run_sync_soon(call.begin)
                except RuntimeError:
                    call.done(None, self._closed_error())
            return cf
        dispose = self._subscribe_on_loop(_FutureSetter(cf))

        def finished(f: concurrent.futures.Future[T]) -> None:
            if f.cancelled():
                dispose()

        cf.add_done_callback(finished)
        return cf

    def _subscribe_on_loop(self, setter: _Setter[T]) -> Callable[[], None]:
        """Subscribe on the client's loop; returns a dispose callable from any thread.

        So the operators of a piped Single pick the client's loop for their timers, not the
        caller's: a notebook cell blocked in ``result()`` holds its kernel's loop, where a
        ``timeout`` or a retry's backoff would otherwise stand still until the cell gave up.
        """
        if self._bridge.on_loop():
            return self._subscribe_into(setter).dispose
        subscription = SerialDisposable()  # disposed first: what is assigned later is too

        def subscribe() -> None:
            try:
                subscription.disposable = self._subscribe_into(setter)
            except Exception as exc:  # an operator that fails at subscription
                setter.settle(None, exc)

        try:
            self._bridge.run_sync_soon(subscribe)
        except RuntimeError:  # the client's loop is gone
            setter.settle(None, self._closed_error())

        def dispose() -> None:
            try:
                self._bridge.run_sync_soon(subscription.dispose)
            except RuntimeError:
                subscription.dispose()

        return dispose

    def result(self, timeout: float | None = None) -> T:
        """Block until the value arrives (not on the client's loop thread, where it raises
        :class:`~iii_rx.errors.LoopDeadlockError`).

        ``timeout`` (seconds) bounds this wait only and raises
        :class:`~iii_rx.errors.IIITimeoutError`; the call's own ``timeout_ms`` still applies.
        An interrupt (``KeyboardInterrupt``: Ctrl-C, a notebook's stop button) withdraws the
        call before it propagates.
        """
        self._used = True
        self._bridge.check_blocking("Single.result()")
        if self._starter is not None:
            return self._result_direct(self._starter, timeout)  # type: ignore[no-any-return]
        cf = self.future()
        try:
            return cf.result(timeout)
        except KeyboardInterrupt:
            cf.cancel()  # withdraws the call, on the loop; wait (a little) until it has:
            withdrawn = threading.Event()  # queued after the dispose, so set after it ran
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to wait for
                self._bridge.run_sync_soon(withdrawn.set)
                withdrawn.wait(1.0)
            raise
        except concurrent.futures.TimeoutError:
            if cf.done() and not cf.cancelled():
                return cf.result()  # raced to completion
            cf.cancel()
            raise IIITimeoutError("TIMEOUT", f"no result within {timeout}s "
                                  f"(Single.result timeout) for {self._description}") from None

    def _result_direct(self, starter: CallStarter, timeout: float | None) -> Any:
        """``result()`` of a call: a lock handed over by the loop, no future, no Rx."""
        call = _BlockingCall(starter)
        self._active.add(call)
        try:
            try:
                self._bridge.run_sync_soon(call.begin)
                acquired = call.lock.acquire(timeout=-1 if timeout is None else max(timeout, 0))
            except RuntimeError:  # from run_sync_soon: the loop is closed
                raise self._closed_error() from None
            except BaseException as exc:  # KeyboardInterrupt (a notebook's interrupt), which
                # may also land while the call is handed over (the GIL regained after it)
                call.interrupt(exc)  # withdraw the call; the loop then releases the lock:
                call.lock.acquire(timeout=1.0)  # once it did, the next cell sees it gone
                raise
            if not acquired:
                if not call.lock.acquire(blocking=False):  # not answered meanwhile
                    call.interrupt(None)
                    raise IIITimeoutError(
                        "TIMEOUT", f"no result within {timeout}s (Single.result timeout) "
                        f"for {self._description}")
        finally:
            self._active.discard(call)
        if call.error is not None:
            raise call.error
        return call.value

    def cancel(self) -> None:
        """Cancel every call started through ``future()``/``result()`` that is still running.

        A thread blocked in ``result()`` gets :class:`concurrent.futures.CancelledError`.
        """
        for active in list(self._active):
            if isinstance(active, _BlockingCall):
                active.interrupt(concurrent.futures.CancelledError())
            else:
                active.cancel()

    def _subscribe_into(self, setter: _Setter[T]) -> abc.DisposableBase:
        return self.subscribe(on_next=setter.on_next, on_error=setter.on_error,
                              on_completed=setter.on_completed)


class _Setter(Generic[T]):
    """Collects the last value of a subscription and settles one future with it."""

    def __init__(self) -> None:
        self.last: Any = None
        self.has_value = False

    def on_next(self, value: T) -> None:
        self.last = value
        self.has_value = True

    def on_error(self, error: Exception) -> None:
        self.settle(None, error)

    def on_completed(self) -> None:
        if self.has_value:
            self.settle(self.last, None)
        else:
            self.settle(None, EmptySingleError("the observable completed without a value"))

    def settle(self, value: Any, error: BaseException | None) -> None:
        raise NotImplementedError


class _FutureSetter(_Setter[T]):
    def __init__(self, cf: concurrent.futures.Future[T]) -> None:
        super().__init__()
        self.cf = cf

    def settle(self, value: Any, error: BaseException | None) -> None:
        if self.cf.done():
            return
        try:
            if error is not None:
                self.cf.set_exception(error)
            else:
                self.cf.set_result(value)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile
            pass


class _LoopSetter(_Setter[T]):
    """Settles an asyncio future of ``loop`` from whatever thread the signal comes on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[T]) -> None:
        super().__init__()
        self.loop = loop
        self.fut = fut

    def settle(self, value: Any, error: BaseException | None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            _settle(self.fut, value, error)
        elif not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self.loop.call_soon_threadsafe(_settle, self.fut, value, error)


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)
