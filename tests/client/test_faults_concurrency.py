"""Issue 12 item 8 (client part): a default bound on the async handlers a worker runs at once.

An engine that delivers a flood of invocations must not start a task for each: beyond
``connect(max_concurrency=...)`` (default 1024) invocations wait in arrival order, and none is
refused or dropped (the engine's per-call timeout is what bounds memory). Real engine, real sockets,
a separate caller client.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from client_helpers import unique_name

import iii_rx
from iii_rx.engine import Engine
from iii_rx.worker import DEFAULT_MAX_CONCURRENCY


class Flood:
    """An async handler that holds every invocation until released, counting who started."""

    def __init__(self, expected: int, running: int) -> None:
        self.received: list[int] = []
        self.started: list[int] = []
        self.gates: dict[int, asyncio.Event] = {}
        self.all_received = asyncio.Event()
        self.all_running = asyncio.Event()
        self._expected = expected
        self._running = running
        self.next_start = asyncio.Event()

    def on_invocation(self, invocation: Any) -> None:
        self.received.append(invocation.data["n"])
        if len(self.received) == self._expected:
            self.all_received.set()

    async def handler(self, data: dict[str, int]) -> int:
        n = data["n"]
        self.started.append(n)
        if len(self.started) == self._running:
            self.all_running.set()
        self.next_start.set()
        gate = self.gates.setdefault(n, asyncio.Event())
        await gate.wait()
        return n

    def release(self, n: int) -> None:
        self.gates.setdefault(n, asyncio.Event()).set()


async def test_invocations_beyond_max_concurrency_wait_in_arrival_order(engine: Engine,
                                                                         name: str) -> None:
    flood = Flood(expected=10, running=3)
    async with iii_rx.connect(engine.url, name=name, max_concurrency=3) as worker, \
            iii_rx.connect(engine.url, name=unique_name("caller")) as caller:
        worker.invocations.subscribe(flood.on_invocation)
        worker.register_function("fc::slow", flood.handler)
        await caller.wait_for_function("fc::slow", 5)
        calls = [asyncio.ensure_future(caller.trigger("fc::slow", {"n": n})) for n in range(10)]
        await asyncio.wait_for(flood.all_received.wait(), 5)
        await asyncio.wait_for(flood.all_running.wait(), 5)
        # Every invocation has arrived and been dispatched: only three run.
        assert flood.started == flood.received[:3]
        assert worker.running_tasks == 3
        for ended in range(7):
            flood.next_start.clear()
            flood.release(flood.started[ended])
            await asyncio.wait_for(flood.next_start.wait(), 5)
            assert len(flood.started) == 4 + ended  # one ended, exactly one more started
        for n in range(10):
            flood.release(n)
        assert await asyncio.wait_for(asyncio.gather(*calls), 5) == list(range(10))
        assert flood.started == flood.received  # arrival order, none refused or dropped


async def test_the_default_bound_holds_a_flood(engine: Engine, name: str) -> None:
    total = DEFAULT_MAX_CONCURRENCY + 76
    flood = Flood(expected=total, running=DEFAULT_MAX_CONCURRENCY)
    async with iii_rx.connect(engine.url, name=name) as worker, \
            iii_rx.connect(engine.url, name=unique_name("caller")) as caller:
        worker.invocations.subscribe(flood.on_invocation)
        worker.register_function("fc::flood", flood.handler)
        await caller.wait_for_function("fc::flood", 5)
        calls = [asyncio.ensure_future(caller.trigger("fc::flood", {"n": n}))
                 for n in range(total)]
        await asyncio.wait_for(flood.all_received.wait(), 20)
        await asyncio.wait_for(flood.all_running.wait(), 20)
        assert len(flood.started) == DEFAULT_MAX_CONCURRENCY == 1024
        assert worker.running_tasks == DEFAULT_MAX_CONCURRENCY
        for n in range(total):
            flood.release(n)
        assert await asyncio.wait_for(asyncio.gather(*calls), 20) == list(range(total))
        assert flood.started == flood.received


async def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        iii_rx.connect("ws://127.0.0.1:1", max_concurrency=0)
