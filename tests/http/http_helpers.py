"""Helpers of the HTTP tests: engine timers, REST address, polling for route readiness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from iii_rx.engine import EngineThread

T = TypeVar("T")
WAIT = 15.0  # generous bound for polls on a busy 2-core machine

REST_TIMEOUT_MS = 600
NO_RESPONSE_GRACE_MS = 150


def rest_url(handle: EngineThread) -> str:
    assert handle.engine.rest_port
    return f"http://127.0.0.1:{handle.engine.rest_port}"

async def poll(condition: Callable[[], Awaitable[T]], what: str, timeout: float = WAIT) -> T:
    """Await ``condition()`` until it is truthy (route registration has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def http_routes(handle: EngineThread) -> set[str]:
    """Function ids bound to live ``http`` routes (read on the engine's loop)."""

    async def read() -> set[str]:
        return {b.function_id for b in handle.engine.triggers.bindings.values()
                if b.trigger_type == "http" and not b.parked}

    return asyncio.run_coroutine_threadsafe(read(), handle.loop).result(WAIT)


async def wait_for_routes(handle: EngineThread, *function_ids: str) -> None:
    """Wait until every function in ``function_ids`` has an active http binding."""

    async def bound() -> bool:
        return set(function_ids) <= await asyncio.to_thread(http_routes, handle)

    await poll(bound, f"http routes of {function_ids}")


async def on_engine_until(handle: EngineThread, condition: Callable[[], bool], what: str,
                          timeout: float = WAIT) -> None:
    """Poll ``condition()``, evaluated on the engine's loop, until it holds."""

    async def check() -> bool:
        async def read() -> bool:
            return condition()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(read(), handle.loop))

    await poll(check, what, timeout)
