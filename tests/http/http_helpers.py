"""Helpers of the HTTP tests: engine timers, REST address, polling for route readiness."""

from __future__ import annotations

import asyncio
import contextlib
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


# ---------------------------------------------------------------------- raw HTTP/1.1

def request(method: str, path: str, body: bytes = b"", *, content_type: str | None = None,
            headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if body or length is not None or method == "POST":
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])
