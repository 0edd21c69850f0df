"""Fixtures of the client tests: an embedded engine on ephemeral ports, leak checks, peers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from client_helpers import ENGINE_TIMERS, unique_name

from iii_rx.engine import Engine


@pytest.fixture
def name() -> str:
    return unique_name()


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0, **ENGINE_TIMERS) as running:
        yield running


@pytest.fixture
def engine_thread() -> Iterator[Any]:
    handle = Engine.start_in_thread(port=0, **ENGINE_TIMERS)
    try:
        yield handle
    finally:
        handle.stop()


def _client_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate()
            if t.name.startswith(("iii-rx-loop", "iii-rx-handler", "iii-rx pool"))}


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every client thread (loop thread, handler pool) is gone after the test."""
    before = _client_threads()
    yield
    deadline = time.monotonic() + 5
    while (_client_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    leaked = _client_threads() - before
    assert not leaked, f"threads left behind: {sorted(t.name for t in leaked)}"


@pytest.fixture
async def official() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Start official ``iii-sdk`` workers (distinct names) off the loop; shut down after."""
    from iii import InitOptions, register_worker

    workers: list[Any] = []

    async def start(url: str, **options: Any) -> Any:
        options.setdefault("worker_name", unique_name("official"))
        worker = await asyncio.to_thread(register_worker, url, InitOptions(**options))
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await asyncio.to_thread(worker.shutdown)
