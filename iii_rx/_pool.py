"""The threads that run sync handlers: a lean pool without a ``Future`` per task.

``ThreadPoolExecutor`` costs about 7 µs per task on the worker's hot path (a ``Future``, a
work item, a semaphore, its condition variables); a sync handler answers through its
invocation and needs none of that. This pool keeps what matters: threads start on demand up
to ``max_workers`` and are reused, a task never waits while a thread could be started for it
(sync handlers that block on nested calls rely on that), queued tasks run in order, and
:meth:`HandlerPool.shutdown` drops what has not started and reports when every thread ended
(:meth:`HandlerPool.aclose` waits for that, bounded, on a loop: how the client closes it).

Each task runs in a copy of the context it was submitted from, as ``asyncio.to_thread`` runs
a function: a reused thread keeps nothing a handler set in its context variables (a request's
user id must not reach the next request on that thread), and a handler sees what an async
handler started at the same point would.

A close must never wait on the thread that asked for it (a handler calling ``iii.close()``
would wait 10 s on itself): :meth:`HandlerPool.exempt_current` takes the calling pool thread
out of what the close waits for. And a close that does wait says for what: each thread keeps
the task it runs in a slot (one list store per task), so :meth:`HandlerPool.aclose` can name
the handlers it waits for (:func:`describe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

__all__ = ["CLOSE_WAIT", "HandlerPool", "describe", "describe_handler", "describe_task"]

log = logging.getLogger("iii_rx.pool")

T = TypeVar("T")
_Task = tuple[Callable[..., Any], tuple[Any, ...], contextvars.Context]

CLOSE_WAIT = 10.0
"""Seconds a close waits for running sync handlers before it stops waiting (and says so)."""
_FINISHING = 0.2
"""Seconds a close lets running handlers end before it says it waits for them."""


def describe_handler(invocation: Any) -> str | None:
    """``handler of 'f' (invocation i)`` when ``invocation`` is one (has a function id),
    else ``None``: how a close names the sync and async handlers it waits for."""
    function_id = getattr(invocation, "function_id", None)
    if not isinstance(function_id, str):
        return None
    return f"handler of {function_id!r} (invocation {getattr(invocation, 'invocation_id', None)})"


def describe_task(task: asyncio.Task[Any]) -> str:
    """What an async handler's task runs, for a person: its function and invocation."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    invocation = frame.f_locals.get("invocation") if frame is not None else None
    return describe_handler(invocation) or task.get_name()


def describe(task: _Task) -> str:
    """What a pool task runs, for a person: the function and invocation of a sync handler
    (its first argument is the invocation), else the callable's name."""
    fn, args, _ = task
    handler = describe_handler(args[0] if args else None)
    if handler is not None:
        return handler
    target = getattr(fn, "describes", fn)
    return str(getattr(target, "__qualname__", None) or repr(target))


class HandlerPool:
    """Runs ``fn(*args)`` on up to ``max_workers`` daemon threads named ``{prefix}_N``."""

    def __init__(self, max_workers: int, prefix: str) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._prefix = prefix
        self._queue: SimpleQueue[_Task | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._started: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a task that no submit has counted on yet
        self._alive = 0
        self._busy: list[_Task | None] = []  # per thread (by start order): the task it runs
        self._exempt: set[threading.Thread] = set()  # alive, waiting for the close: not waited
        self._closed = False
        self._on_ended: Callable[[], None] | None = None

    @property
    def threads(self) -> int:
        """Threads started so far (they are reused, never more than ``max_workers``)."""
        return len(self._started)

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` began (a refused :meth:`submit` was not for lack of a
        thread)."""
        return self._closed

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread, in a copy of the caller's context; exceptions
        are logged. ``RuntimeError`` after :meth:`shutdown`, or when the thread it needs
        cannot start (the OS's thread limit; Python 3.12.0-3.12.2 once the main thread has
        ended): then the task is not kept, it never runs, and the pool is as before."""
        task = (fn, args, contextvars.copy_context())
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler pool is shut down")
            if self._idle or len(self._started) >= self.max_workers:
                if self._idle:
                    self._idle -= 1  # that thread takes this task
                self._queue.put(task)  # else the next thread to finish takes it
                return
            self._alive += 1
            slot = len(self._started)
            self._busy.append(None)
            thread = threading.Thread(target=self._work, args=(slot,), daemon=True,
                                      name=f"{self._prefix}_{slot}")
            self._started.append(thread)
            # Started under the lock, the task queued once it runs: a start that fails is
            # undone whole, no thread left that a close would wait for, no task run later.
            try:
                thread.start()
            except BaseException:
                self._alive -= 1
                self._busy.pop()
                self._started.pop()
                raise
            self._queue.put(task)

    def call(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T],
             *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` on a pool thread, its outcome as a future of ``loop`` (on the loop)."""
        future: asyncio.Future[T] = loop.create_future()

        def settle(value: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

        def run() -> None:
            try:
                value, error = fn(*args), None
            except BaseException as exc:
                value, error = None, exc
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:  # loop closed: nobody waits any more
                pass

        run.describes = fn  # type: ignore[attr-defined]  # what describe() names
        self.submit(run)
        return future

    def _work(self, slot: int) -> None:
        get, lock, busy = self._queue.get, self._lock, self._busy
        try:
            while True:
                task = get()
                if task is None:
                    return
                busy[slot] = task
                fn, args, context = task
                try:
                    context.run(fn, *args)
                except BaseException:
                    log.exception("task of the handler pool raised")
                busy[slot] = None
                del task, fn, args, context  # drop references before waiting again
                with lock:
                    self._idle += 1
                    if self._exempt and not self._closed:  # an exemption lasts one task: the
                        self._exempt.discard(threading.current_thread())  # next is waited for
        finally:
            with lock:
                self._alive -= 1
                self._exempt.discard(threading.current_thread())
                ended = self._take_on_ended()
            if ended is not None:
                ended()

    def _take_on_ended(self) -> Callable[[], None] | None:
        """The ``on_ended`` of :meth:`shutdown`, once, when no thread the close waits for is
        left (call with the lock held)."""
        if self._alive - len(self._exempt) > 0:
            return None
        ended, self._on_ended = self._on_ended, None
        return ended

    def owns_current_thread(self) -> bool:
        """Whether the caller runs on one of this pool's threads."""
        return threading.current_thread() in self._started

    def exempt_current(self) -> bool:
        """If the caller is a thread of this pool, a close no longer waits for it while it
        runs its current task (it asked for the close, or waits for it: waiting for it would
        wait on itself). Whether this call exempted it."""
        thread = threading.current_thread()
        with self._lock:
            if thread not in self._started or thread in self._exempt:
                return False
            self._exempt.add(thread)
            ended = self._take_on_ended() if self._closed else None
        if ended is not None:
            ended()
        return True

    def exempt_while(self, wait_for_close: Callable[[], bool]) -> bool:
        """``wait_for_close()`` with the caller (a thread of this pool) exempt while it waits:
        if the close did not come (``False``), the rest of its task is waited for again."""
        exempted = self.exempt_current()
        closed = wait_for_close()
        if exempted and not closed:
            with self._lock:
                if not self._closed:  # a close that began meanwhile keeps it exempt
                    self._exempt.discard(threading.current_thread())
        return closed

    def running(self) -> list[tuple[str, str]]:
        """``(thread name, what it runs)`` of every busy thread a close would wait for."""
        with self._lock:
            pairs = [(thread, self._busy[slot]) for slot, thread in enumerate(self._started)
                     if thread.is_alive() and thread not in self._exempt]
        return [(thread.name, describe(task)) for thread, task in pairs if task is not None]

    def shutdown(self, on_ended: Callable[[], None]) -> list[threading.Thread]:
        """Stop: tasks not started are dropped, running ones finish, then every thread ends.

        ``on_ended()`` runs once the last thread has ended (in that thread, or here when none
        runs); threads exempted with :meth:`exempt_current` are not waited for. Returns the
        threads to join (the exempted ones left out).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler pool is already shut down")
            self._closed = True
            self._on_ended = on_ended
            try:
                while True:
                    self._queue.get_nowait()
            except Empty:
                pass
            for _ in range(self._alive):
                self._queue.put(None)
            ended = self._take_on_ended()
            threads = [thread for thread in self._started if thread not in self._exempt]
        if ended is not None:
            ended()
        return threads

    async def aclose(self, timeout: float = CLOSE_WAIT) -> None:
        """:meth:`shutdown` on the running loop: drop the tasks not started, wait (at most
        ``timeout`` seconds, then log and stop waiting) for the running ones, join the threads.

        Idempotent. A sync handler that never returns cannot hold a closing client for ever,
        and a wait is never silent: it logs at WARNING which handlers it waits for, on which
        threads, and again if it gives up on them.
        """
        with self._lock:
            if self._closed:
                return
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def set_ended() -> None:
            if not ended.done():
                ended.set_result(None)

        def on_ended() -> None:  # in the last thread to end, or here
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(set_ended)

        threads = self.shutdown(on_ended)
        if not ended.done():  # a handler that has just answered is about to end: not worth a word
            await asyncio.wait([ended], timeout=_FINISHING)
        if not ended.done():
            busy = self.running()
            if busy:
                log.warning("closing: waiting up to %ss for %d sync handler(s) still running: %s",
                            timeout, len(busy), _names(busy))
        try:
            await asyncio.wait_for(ended, timeout)
        except asyncio.TimeoutError:
            log.warning("closing: sync handler(s) still running after %ss, not waiting for "
                        "them any longer: %s", timeout, _names(self.running()) or "(none named)")
            return
        for thread in threads:
            if thread not in self._exempt:  # exempted after shutdown(): it may still run
                thread.join()


def _names(busy: list[tuple[str, str]]) -> str:
    return "; ".join(f"{what} on thread {thread}" for thread, what in busy)
