"""Helpers shared by the client tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

_names = itertools.count(1)

ENGINE_TIMERS: dict[str, Any] = {
    "namespace_grace_ms": 300,
    "functions_available_poll_ms": 50,
    "provider_ack_timeout_ms": 500,
}


def unique_name(prefix: str = "rx-test") -> str:
    """A worker name no other worker of this test run uses (names are leased per namespace)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the running loop other than the current one (a closed client leaves none)."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0,
                   what: str = "condition") -> None:
    """Poll a condition that has no event to wait on (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def wait_for_sync(predicate: Callable[[], bool], timeout: float = 5.0,
                  what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def fd_count() -> int:
    """Open file descriptors of this process (sockets included)."""
    return len(os.listdir("/proc/self/fd"))
