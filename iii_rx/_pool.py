"""The threads that run sync handlers: a lean pool without a ``Future`` per task.

``ThreadPoolExecutor`` costs about 7 µs per task on the worker's hot path (a ``Future``, a
work item, a semaphore, its condition variables); a sync handler answers through its
invocation and needs none of that. This pool keeps what matters: threads start on demand up
to ``max_workers`` and are reused, a task never waits while a thread could be started for it
(sync handlers that block on nested calls rely on that), queued tasks run in order, and
:meth:`HandlerPool.shutdown` drops what has not started and reports when every thread ended
(:meth:`HandlerPool.aclose` waits for that, bounded, on a loop: how the client closes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

__all__ = ["HandlerPool"]

log = logging.getLogger("iii_rx.pool")

T = TypeVar("T")
_Task = tuple[Callable[..., Any], tuple[Any, ...]]


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
        self._closed = False
        self._on_ended: Callable[[], None] | None = None

    @property
    def threads(self) -> int:
        """Threads started so far (they are reused, never more than ``max_workers``)."""
        return len(self._started)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread; exceptions are logged. ``RuntimeError`` after
        :meth:`shutdown`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler pool is shut down")
            self._queue.put((fn, args))
            if self._idle:
                self._idle -= 1  # that thread takes this task
                return
            if len(self._started) >= self.max_workers:
                return  # the next thread to finish takes it
            self._alive += 1
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"{self._prefix}_{len(self._started)}")
            self._started.append(thread)
        thread.start()

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

        self.submit(run)
        return future

    def _work(self) -> None:
        get, lock = self._queue.get, self._lock
        try:
            while True:
                task = get()
                if task is None:
                    return
                fn, args = task
                try:
                    fn(*args)
                except BaseException:
                    log.exception("task of the handler pool raised")
                del task, fn, args  # drop references before waiting again
                with lock:
                    self._idle += 1
        finally:
            with lock:
                self._alive -= 1
                ended = self._on_ended if self._alive == 0 else None
            if ended is not None:
                ended()

    def shutdown(self, on_ended: Callable[[], None]) -> list[threading.Thread]:
        """Stop: tasks not started are dropped, running ones finish, then every thread ends.

        ``on_ended()`` runs once the last thread has ended (in that thread, or here when none
        runs). Returns the threads, for joining.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler pool is already shut down")
            self._closed = True
            self._on_ended = on_ended
            ended = self._alive == 0
            try:
                while True:
                    self._queue.get_nowait()
            except Empty:
                pass
            for _ in range(self._alive):
                self._queue.put(None)
        if ended:
            on_ended()
        return list(self._started)

    async def aclose(self, timeout: float = 10.0) -> None:
        """:meth:`shutdown` on the running loop: drop the tasks not started, wait (at most
        ``timeout`` seconds, then log and stop waiting) for the running ones, join the threads.

        Idempotent. A sync handler that never returns cannot hold a closing client for ever.
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
        try:
            await asyncio.wait_for(ended, timeout)
        except asyncio.TimeoutError:
            log.warning("sync handlers still running %ss after close; not waiting for them",
                        timeout)
            return
        for thread in threads:
            thread.join()
