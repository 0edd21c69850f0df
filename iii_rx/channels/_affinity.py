"""Which event loop a channel end lives on, and how calls from elsewhere reach it.

A channel end's websocket belongs to one loop: the one running where the end was made (the
client's loop, when refs are resolved for a handler), else the first one that uses it. Async
calls from that loop run directly; from another loop they hop over and are awaited there
(loop-agnostic awaitables, as the notebook story needs). Sync twins block the calling thread on
the end's loop through its :class:`~iii_rx.aio.LoopBridge`, which refuses to wait on that loop's
own thread (:class:`~iii_rx.errors.LoopDeadlockError`). Ends that no loop has claimed when a sync
twin needs one go to :data:`shared_loop`, one :class:`~iii_rx.aio.LoopThread` for the process.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from iii_rx.aio import LoopBridge, LoopThread

__all__ = ["LoopAffinity", "SharedLoop", "running_loop", "shared_loop"]

T = TypeVar("T")


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or ``None``."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class SharedLoop:
    """The loop thread of channel ends used from sync code with no loop of their own.

    Started on first need, so a program that never needs it never starts a thread; stopped by
    :meth:`stop` or at interpreter exit, which cancels and awaits what still runs on it. A later
    need starts a fresh one (ends that lived on the stopped loop cannot be used any more).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._thread: LoopThread | None = None
        self._registered = False

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.running

    def bridge(self) -> LoopBridge:
        """The bridge of the shared loop, starting its thread if none runs."""
        with self._lock:
            if self._thread is None or not self._thread.running:
                self._thread = LoopThread(self._name)
                if not self._registered:
                    atexit.register(self.stop)
                    self._registered = True
            return self._thread.bridge

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread if it runs (idempotent)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop(timeout)


shared_loop = SharedLoop("iii-rx-channels")
"""The one shared loop thread of channel ends (see :class:`SharedLoop`)."""


class LoopAffinity:
    """The loop of one channel end: ``loop`` and its ``bridge``, ``None`` until claimed."""

    __slots__ = ("bridge", "loop")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.bridge: LoopBridge | None = None
        if running_loop() is not None:
            self._take(LoopBridge.current())

    def _take(self, bridge: LoopBridge) -> LoopBridge:
        self.bridge = bridge
        self.loop = bridge.loop
        return bridge

    def _unclaimed(self) -> bool:
        loop = self.loop
        return loop is None or loop.is_closed()

    def here(self) -> bool:
        """Whether the caller (a coroutine) runs on the end's loop, claiming it if unclaimed."""
        running = asyncio.get_running_loop()
        if self._unclaimed():
            self._take(LoopBridge.current())
        return self.loop is running

    def claim(self) -> LoopBridge:
        """The end's loop: claimed now by the running loop, else the shared loop."""
        bridge = self.bridge
        if bridge is None or self._unclaimed():
            bridge = self._take(LoopBridge.current() if running_loop() is not None
                                else shared_loop.bridge())
        return bridge

    async def hop(self, coro: Coroutine[Any, Any, T],
                  orphan: Callable[[T], Any] | None = None) -> T:
        """Await ``coro`` on the end's loop from another loop (``orphan``: see
        :meth:`LoopBridge.run`)."""
        assert self.bridge is not None
        return await self.bridge.run(coro, orphan)

    def block(self, coro: Coroutine[Any, Any, T], what: str,
              orphan: Callable[[T], Any] | None = None) -> T:
        """Run ``coro`` on the end's loop and wait for it in this thread (not the loop's own:
        that raises :class:`~iii_rx.errors.LoopDeadlockError`; ``orphan``: see
        :meth:`LoopBridge.run_blocking`)."""
        bridge = self.bridge
        if bridge is None or self._unclaimed():
            bridge = self._take(shared_loop.bridge())
        return bridge.run_blocking(coro, what, orphan=orphan)

    def iterate(self, iterator: AsyncIterator[T], what: str,
                orphan: Callable[[T], Any] | None = None) -> Iterator[T]:
        """Blocking iteration of ``iterator``: each step is one :meth:`block`."""
        while True:
            try:
                yield self.block(_anext(iterator), what, orphan)
            except StopAsyncIteration:
                return


async def _anext(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()
