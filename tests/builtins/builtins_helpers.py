"""Helpers of the built-in worker tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from iii_rx.engine import EngineThread
from iii_rx.engine.triggers import Binding

T = TypeVar("T")
WAIT = 15.0
"""Seconds: a generous bound for answers and deliveries on a busy machine."""
ENGINE_TIMERS: dict[str, Any] = {
    "namespace_grace_ms": 300,
    "functions_available_poll_ms": 50,
    "provider_ack_timeout_ms": 500,
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def on_engine(handle: EngineThread, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the engine's loop (its registries are not thread-safe)."""

    async def run() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(run(), handle.loop).result(WAIT)


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """Poll a condition that has no event to wait on (20 ms steps, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def bindings_of(handle: EngineThread, function_id: str) -> list[Binding]:
    """The engine's bindings (active or parked) that call ``function_id``."""
    return on_engine(handle, lambda: [b for b in handle.engine.triggers.bindings.values()
                                      if b.function_id == function_id])


def wait_bound(handle: EngineThread, function_id: str, count: int = 1) -> list[Binding]:
    """Wait until ``count`` bindings calling ``function_id`` are active (have a provider)."""
    return wait_until(lambda: (found if len(found := [
        b for b in bindings_of(handle, function_id) if not b.parked]) >= count else None),
        f"{count} active binding(s) of {function_id}")


def wait_parked(handle: EngineThread, function_id: str) -> Binding:
    """Wait until a binding calling ``function_id`` exists and is parked (refused)."""
    return wait_until(lambda: next((b for b in bindings_of(handle, function_id) if b.parked),
                                   None), f"a parked binding of {function_id}")
