"""Which event loop a channel end lives on, and how calls from elsewhere reach it.

A channel end's websocket belongs to one loop: the one running where the end was made (the
client's loop, when refs are resolved for a handler), else the first one that uses it. Async
calls from that loop run directly; from another loop they hop over and are awaited there
(loop-agnostic awaitables, as the notebook story needs). Sync twins block the calling thread
on the end's loop, refuse to run on that loop's own thread (it would deadlock), and use a shared
background loop for ends that no loop has claimed yet.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["LoopAffinity"]

T = TypeVar("T")

_background: asyncio.AbstractEventLoop | None = None
_background_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """A daemon thread's loop for channel ends used only from sync code without a client."""
    global _background
    with _background_lock:
        if _background is None or _background.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="iii-rx-channels", daemon=True).start()
            ready.wait()
            _background = loop
        return _background


class LoopAffinity:
    """The loop of one channel end."""

    __slots__ = ("loop",)

    def __init__(self) -> None:
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    def here(self) -> bool:
        """Whether the caller runs on the end's loop (claiming it when unclaimed)."""
        running = asyncio.get_running_loop()
        if self.loop is None or self.loop.is_closed():
            self.loop = running
        return self.loop is running

    def claim(self) -> asyncio.AbstractEventLoop:
        """The end's loop: claimed now by the running loop, else the background loop."""
        if self.loop is None or self.loop.is_closed():
            try:
                self.loop = asyncio.get_running_loop()
            except RuntimeError:
                self.loop = _background_loop()
        return self.loop

    async def hop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the end's loop from another loop."""
        assert self.loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def block(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run ``coro`` on the end's loop and wait for it in this (non-loop) thread."""
        if self.loop is None or self.loop.is_closed():
            self.loop = _background_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError(
                f"{what} blocks, and this thread runs the channel's event loop: waiting here "
                "would deadlock it. Use the async method (await) instead."
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, iterator: AsyncIterator[T], what: str) -> Iterator[T]:
        """Blocking iteration of ``iterator``: each step is one :meth:`block`."""
        while True:
            try:
                yield self.block(_anext(iterator), what)
            except StopAsyncIteration:
                return


async def _anext(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()
