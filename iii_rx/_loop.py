"""Loop plumbing: the private loop thread of sync clients and the thread rules of the API.

A client lives on one asyncio loop. Async users run it on their own loop; sync users (and
notebooks) get a :class:`LoopThread`, a daemon thread that runs a private loop for ever until
stopped. Public calls may come from any thread; these helpers decide whether a call can run
right here or must hop onto the client's loop, and refuse a blocking wait on the loop thread
(which would deadlock it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Hopper", "LoopThread", "check_not_loop_thread", "run_blocking"]

T = TypeVar("T")
log = logging.getLogger("iii_rx.loop")


class Hopper:
    """Runs callables on a loop from other threads with one wake-up per burst.

    ``call_soon_threadsafe`` writes to the loop's self-pipe on every call; when many threads
    hand work to the loop at once (blocking calls from a thread pool), queueing them here and
    waking the loop once per burst saves most of those writes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._scheduled = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon; raises ``RuntimeError`` if the loop is closed."""
        self._queue.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                self._scheduled = False
                self._queue.clear()
                raise

    def _drain(self) -> None:
        self._scheduled = False  # before draining: a later submit schedules another drain
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("callback handed to the client's loop raised")


class LoopThread:
    """A daemon thread running a private event loop until :meth:`stop`."""

    def __init__(self, name: str = "iii-rx-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

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
        """Cancel what is left on the loop, then let it unwind, so no task is destroyed pending."""
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the loop and join the thread (a no-op when called on the loop thread itself)."""
        if self.loop.is_closed():
            return
        if threading.current_thread() is self._thread:
            self.loop.stop()
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            pass
        self._thread.join(timeout)


def check_not_loop_thread(loop: asyncio.AbstractEventLoop, what: str) -> None:
    """Raise instead of deadlocking when a blocking call is made on the client's loop thread."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return
    if running is loop:
        raise RuntimeError(
            f"{what} blocks, and this is the iii_rx client's own event-loop thread: waiting here "
            "would deadlock the client. Use `await` instead (or call it from another thread)."
        )


def run_blocking(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], Coroutine[Any, Any, T]],
    what: str,
    timeout: float | None = None,
) -> T:
    """Run a coroutine on ``loop`` from another thread and wait for its result."""
    check_not_loop_thread(loop, what)
    future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(factory(), loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise
