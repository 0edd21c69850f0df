"""Fixtures of the channel tests: an embedded engine on ephemeral ports and iii_rx clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from channel_helpers import unique

import iii_rx
from iii_rx.engine import Engine


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0, namespace_grace_ms=300) as running:
        yield running


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[iii_rx.Client]:
    async with iii_rx.connect(engine.url, name=unique("rx-chan")) as iii:
        yield iii


@pytest.fixture
async def official() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await official(url)`` starts an official ``iii-sdk`` worker with a distinct name.

    Its blocking calls run in a thread, off the loop that runs the engine.
    """
    from iii import InitOptions, register_worker

    workers: list[Any] = []

    async def start(url: str, **options: Any) -> Any:
        options.setdefault("worker_name", unique("official-chan"))
        worker = await asyncio.to_thread(register_worker, url, InitOptions(**options))
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await asyncio.to_thread(worker.shutdown)
        # The official SDK stops its loop thread but leaves the loop open; close it, or its
        # self-pipe surfaces as a ResourceWarning in whichever later test the GC runs in.
        loop = getattr(worker, "_loop", None)
        if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_running():
            loop.close()
