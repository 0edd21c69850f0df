"""The one loop bridge and the one task owner of iii_rx (a leaf: it imports only the errors).

A client, an engine or a channel end lives on one asyncio loop; callers come from any thread.
Three pieces keep that simple and say it once:

* :class:`LoopThread` is the only private loop thread: a daemon thread running a loop until
  :meth:`LoopThread.stop`, which cancels and awaits what is left so no task is destroyed
  pending. Sync clients, the engine's sync wrapper and channel ends used from sync code run on
  one of these.
* :class:`LoopBridge` is a token for one loop, in the spirit of trio's ``TrioToken``: it knows
  whether the caller runs on the loop (:meth:`~LoopBridge.on_loop`), runs a callable there from
  any thread with one wake-up per burst (:meth:`~LoopBridge.run_sync_soon`), waits for a
  coroutine from another thread (:meth:`~LoopBridge.run_blocking`) or another loop
  (:meth:`~LoopBridge.run`), and refuses a blocking wait on the loop's own thread with
  :class:`~iii_rx.errors.LoopDeadlockError` instead of deadlocking.
* :class:`TaskSet` owns background tasks: it keeps a reference to each, logs (never swallows)
  a task that crashed, and :meth:`~TaskSet.aclose` cancels and awaits all of them.

:func:`unless` awaits work for a peer only while the peer is there (and within a timeout).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from iii_rx.errors import LoopDeadlockError

__all__ = ["LoopBridge", "LoopThread", "TaskSet", "deadlock_error", "unless"]

T = TypeVar("T")
log = logging.getLogger("iii_rx.aio")


def deadlock_error(what: str) -> LoopDeadlockError:
    """The error of a blocking call made on the loop thread it would wait for."""
    return LoopDeadlockError(
        f"{what} blocks, and this thread runs the iii_rx event loop it would wait for: waiting "
        "here would deadlock it. Use `await` instead (or call it from another thread)."
    )


class LoopBridge:
    """A token for one event loop: run things on it from anywhere, detect its own thread.

    Make one on the loop with :meth:`current`, or from a :class:`LoopThread` (``.bridge``).
    """

    __slots__ = ("_queue", "_scheduled", "_thread_id", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int | None) -> None:
        self.loop = loop
        self._thread_id = thread_id
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._scheduled = False

    @classmethod
    def current(cls) -> LoopBridge:
        """The bridge of the running loop (call on that loop)."""
        return cls(asyncio.get_running_loop(), threading.get_ident())

    @property
    def thread_id(self) -> int | None:
        """``threading.get_ident()`` of the loop's thread (``None`` if not known yet)."""
        return self._thread_id

    def on_loop(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.get_ident() == self._thread_id

    def check_blocking(self, what: str) -> None:
        """Raise :class:`~iii_rx.errors.LoopDeadlockError` if a blocking wait here would
        deadlock (the caller is on this loop's thread)."""
        if self.on_loop():
            raise deadlock_error(what)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self.loop:
            raise deadlock_error(what)

    # ------------------------------------------------------------------ callables

    def run_sync_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon, from any thread (on the loop: next iteration).

        Calls from other threads are queued and the loop is woken once per burst: many
        threads handing work over at once cost one self-pipe write, not one each. Raises
        ``RuntimeError`` if the loop is closed. An exception of ``fn`` is logged.
        """
        if self.loop.is_closed():  # whatever `_scheduled` says: a drain scheduled after the
            raise RuntimeError("Event loop is closed")  # loop's last run never ran
        self._queue.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                self._scheduled = False
                self._queue.clear()
                raise
            except BaseException:  # Ctrl-C in the self-pipe write: maybe no drain was
                self._scheduled = False  # scheduled; the next call schedules one (the queue,
                raise                    # this call's too, is kept: a second drain is harmless)

    def _drain(self) -> None:
        self._scheduled = False  # before draining: a later call schedules another drain
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("callback handed to the event loop raised")

    # ------------------------------------------------------------------ coroutines

    def submit(self, coro: Coroutine[Any, Any, T],
               orphan: Callable[[T], Any] | None = None) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop from another thread (closes it if the loop is gone).

        Cancelling the returned future cancels the coroutine's task. A value the task produced
        although the future was cancelled goes to ``orphan`` (on the loop)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._schedule(coro, future, orphan)
        return future

    def _schedule(self, coro: Coroutine[Any, Any, T],
                  future: concurrent.futures.Future[T],
                  orphan: Callable[[T], Any] | None = None) -> None:
        """Run ``coro`` as a task on the loop, its outcome copied into ``future``, which the
        caller made first: a cancel of ``future`` reaches the task however early it comes
        (``asyncio.run_coroutine_threadsafe`` returns its future only once the coroutine may
        already run, so an interrupt landing in between would leave the task running).

        A cancel that comes after the task took its value (a frame read off a socket) cannot
        undo it: that value goes to ``orphan``, if given, instead of being dropped. It goes
        there in the task's own step when the cancel came first: the next read's task may have
        been started already, and a done callback would run after it (out of order)."""
        loop = self.loop
        given = coro
        handed = False

        async def handing_back() -> T:
            nonlocal handed
            value = await given
            if future.cancelled():
                assert orphan is not None
                handed = True
                orphan(value)
            return value

        run = given if orphan is None else handing_back()

        def close() -> None:
            run.close()
            given.close()  # not awaited yet if the wrapper never started

        def start() -> None:
            if future.cancelled():
                close()
                return
            task = loop.create_task(run)

            def settle(done: asyncio.Task[T]) -> None:
                given.close()  # done or never started (a cancel before the first step)
                if done.cancelled():
                    future.cancel()
                    return
                exc = done.exception()
                try:
                    if exc is not None:
                        future.set_exception(exc)
                    else:
                        future.set_result(done.result())
                except concurrent.futures.InvalidStateError:  # cancelled by the caller meanwhile
                    if exc is None and orphan is not None and not handed:
                        orphan(done.result())

            def cancel_task(f: concurrent.futures.Future[T]) -> None:
                if f.cancelled() and not loop.is_closed():
                    if self.on_loop():  # cancelled before this start registered it: the task
                        task.cancel()   # must not take its first step (the next one waits)
                    else:
                        loop.call_soon_threadsafe(task.cancel)

            task.add_done_callback(settle)
            future.add_done_callback(cancel_task)

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:
            close()
            raise

    def run_blocking(self, coro: Coroutine[Any, Any, T], what: str,
                     timeout: float | None = None,
                     orphan: Callable[[T], Any] | None = None) -> T:
        """Run ``coro`` on the loop and block this (other) thread for its result.

        On the loop's own thread this raises :class:`~iii_rx.errors.LoopDeadlockError`. After
        ``timeout`` seconds, or when the wait is interrupted (Ctrl-C, a notebook's interrupt),
        the coroutine is cancelled and the exception raised; a value it produced all the same
        goes to ``orphan`` (on the loop), if given.
        """
        try:
            self.check_blocking(what)
        except LoopDeadlockError:
            coro.close()
            raise
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:  # an interrupt may land as soon as the coroutine runs: schedule inside the try
            self._schedule(coro, future, orphan)
            return future.result(timeout)
        except (concurrent.futures.TimeoutError, KeyboardInterrupt):
            if not future.cancel() and orphan is not None:  # done: its value arrived too late
                self._hand_back(future, orphan)
            raise

    async def run(self, coro: Coroutine[Any, Any, T],
                  orphan: Callable[[T], Any] | None = None) -> T:
        """Await ``coro`` on this bridge's loop from any loop (directly when on it).

        From another loop, a cancel that comes after the coroutine produced its value hands
        that value to ``orphan`` (on this loop), if given, instead of dropping it."""
        if asyncio.get_running_loop() is self.loop:
            return await coro
        future = self.submit(coro, orphan)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel() and orphan is not None:  # done: its value arrived too late
                self._hand_back(future, orphan)
            raise

    def _hand_back(self, future: concurrent.futures.Future[T],
                   orphan: Callable[[T], Any]) -> None:
        """Give the value of a finished ``future`` its waiter gave up on to ``orphan``."""
        if future.cancelled() or future.exception() is not None:
            return
        try:
            self.run_sync_soon(orphan, future.result())
        except RuntimeError:  # the loop is closed: nobody can read it any more
            pass


_DRAIN_TURNS = 5


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


class LoopThread:
    """A daemon thread running a private event loop until :meth:`stop`."""

    def __init__(self, name: str = "iii-rx-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._draining = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        self.bridge = LoopBridge(self.loop, self._thread.ident)
        """The :class:`LoopBridge` of this thread's loop."""

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def running(self) -> bool:
        return not self.loop.is_closed() and self._thread.is_alive()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self._drain()
            finally:
                self.loop.close()

    def _drain(self) -> None:
        """Cancel what is left on the loop, then let it unwind, so no task is destroyed pending.
        Tasks about to end first get a few turns of the loop (one that awaited the close that
        stopped the loop returns rather than being cancelled)."""
        self._draining = True
        self.loop.run_until_complete(_turns(_DRAIN_TURNS))
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the loop and join the thread (on the loop thread itself: stop without joining)."""
        if self.loop.is_closed():
            return
        if threading.current_thread() is self._thread:
            if not self._draining:  # a task ending in the drain: the loop is stopped already
                self.loop.stop()
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the loop thread %r did not stop within %ss", self._thread.name, timeout)


class TaskSet:
    """The background tasks of one owner: referenced while they run, crashes logged, and
    cancelled and awaited by :meth:`aclose`.

    ``name`` says whose tasks they are in the log line of a crash.
    """

    __slots__ = ("_closed", "_tasks", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a task on the running loop and own it.

        After :meth:`aclose` the task is cancelled at once (it still runs to its first await,
        so its ``finally`` blocks run).
        """
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.add(task)
        return task

    def add(self, task: asyncio.Task[Any]) -> None:
        """Own a task started elsewhere."""
        if self._closed:
            task.cancel()
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("task %r of %s crashed", task.get_name(), self.name, exc_info=error)

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Cancel every task and wait until all have finished (idempotent; a task of the set
        may call it: it does not wait for itself)."""
        self._closed = True
        current = asyncio.current_task()
        while True:
            # An ended task leaves the set in its done callback, one loop iteration later:
            # forget it here, or (Python 3.12+, whose gather() of ended tasks returns without
            # yielding to the loop) this would spin for ever, that callback never running.
            self._tasks.difference_update([task for task in self._tasks if task.done()])
            tasks = [task for task in self._tasks if task is not current]
            if not tasks:
                return
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def unless(work: Awaitable[T], gone: asyncio.Future[Any] | None, gone_error: BaseException,
                 timeout: float | None = None) -> T:
    """``await work``, unless ``gone`` completes first (the peer the work is for left: raises
    ``gone_error``) or ``timeout`` seconds pass (:class:`asyncio.TimeoutError`). Either way
    ``work`` is cancelled and awaited, so what it waited on is withdrawn; ``gone`` is only
    watched, never cancelled (``None``: nobody can leave)."""
    task = asyncio.ensure_future(work)
    waiting: set[asyncio.Future[Any]] = {task} if gone is None else {task, gone}
    try:
        await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        finished = task.done()
        if not finished:
            task.cancel()
            await asyncio.wait({task})
    if finished:
        return task.result()
    if not task.cancelled():
        task.exception()  # retrieved: it ended some other way while being given up
    if gone is not None and gone.done():
        raise gone_error
    raise asyncio.TimeoutError()
