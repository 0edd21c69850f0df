"""Helpers of the topology tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from reactivex import Observable

from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.topology import Topology, TopologyChange, TopologyStream

_names = itertools.count(1)

ENGINE_TIMERS: dict[str, Any] = {
    "namespace_grace_ms": 300,
    "functions_available_poll_ms": 50,
    "provider_ack_timeout_ms": 500,
}
FAST_RECONNECT = ReconnectConfig(initial_delay_ms=50, max_delay_ms=200, jitter_factor=0.1)
WAIT = 15.0  # seconds: a generous bound for a busy 2-core machine, never a synchronisation


def unique_name(prefix: str = "topo") -> str:
    """A worker name no other worker of this run uses (the engine leases names)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


class Recorder:
    """Everything a topology stream emits, with waits driven by the emissions themselves."""

    def __init__(self, topology: TopologyStream) -> None:
        self.snapshots: list[Topology] = []
        self.changes: list[TopologyChange] = []
        self.completed = False
        self._updated = asyncio.Event()
        self._subscriptions = [
            topology.snapshots.subscribe(on_next=self._on_snapshot,
                                         on_completed=self._on_completed),
            topology.changes.subscribe(on_next=self._on_change),
        ]

    def _on_snapshot(self, snapshot: Topology) -> None:
        self.snapshots.append(snapshot)
        self._updated.set()

    def _on_change(self, change: TopologyChange) -> None:
        self.changes.append(change)
        self._updated.set()

    def _on_completed(self) -> None:
        self.completed = True
        self._updated.set()

    @property
    def latest(self) -> Topology:
        return self.snapshots[-1]

    async def until(self, predicate: Callable[[], bool], what: str,
                    timeout: float = WAIT) -> None:
        """Return once ``predicate()`` holds, re-checking after each emission."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; changes: {self.changes}")
            self._updated.clear()
            try:
                await asyncio.wait_for(self._updated.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def snapshot_where(self, predicate: Callable[[Topology], bool],
                             what: str) -> Topology:
        await self.until(lambda: bool(self.snapshots) and predicate(self.latest), what)
        return self.latest

    def dispose(self) -> None:
        for subscription in self._subscriptions:
            subscription.dispose()


def describe(changes: list[TopologyChange]) -> list[tuple[str, Any]]:
    """``(event class, row key)`` pairs: what "exactly these events" compares."""
    return [(type(c).__name__, c.row.key) for c in changes]


class CountingHost:
    """The client seen through the topology's narrow protocol, counting every call made."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.client.loop  # type: ignore[no-any-return]

    @property
    def namespace(self) -> str | None:
        return self.client.namespace  # type: ignore[no-any-return]

    @property
    def state(self) -> Observable[ConnectionState]:
        return self.client.state  # type: ignore[no-any-return]

    def register_function(self, function_id: str, handler: Callable[..., Any], *,
                          description: str | None = None, metadata: Any = None) -> Any:
        return self.client.register_function(function_id, handler, description=description,
                                             metadata=metadata)

    def register_trigger(self, trigger: Mapping[str, Any], /) -> Any:
        return self.client.register_trigger(trigger)

    def trigger(self, function_id: str, payload: Any = None, *,
                timeout_ms: int | None = None) -> Awaitable[Any]:
        self.calls[function_id] += 1
        return self.client.trigger(function_id, payload, timeout_ms=timeout_ms)  # type: ignore[no-any-return]


class OfficialWorkers:
    """Official ``iii-sdk`` workers (distinct names), started and stopped off the loop.

    ``shutdown()`` of the SDK hangs when called twice, so stopping goes through here.
    """

    def __init__(self) -> None:
        self.running: list[Any] = []

    async def start(self, url: str, **options: Any) -> Any:
        from iii import InitOptions, register_worker

        options.setdefault("worker_name", unique_name("official"))
        options.setdefault("otel", {"enabled": False})
        options.setdefault("enable_metrics_reporting", False)
        worker = await asyncio.to_thread(register_worker, url, InitOptions(**options))
        self.running.append(worker)
        return worker

    async def stop(self, worker: Any) -> None:
        if worker in self.running:
            self.running.remove(worker)
            await asyncio.to_thread(worker.shutdown)
