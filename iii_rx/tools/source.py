"""Where ``iii-rx top`` gets its data: a client's topology stream, state and discovery calls.

The dashboard depends on this narrow :class:`TopSource` rather than on the client, so that it
can be driven by a test with made-up snapshots (metrics the engine does not send yet, exact
timings) as well as by a live engine through :class:`ClientSource`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from iii_rx.client import Client
from iii_rx.state import ConnectionState
from iii_rx.topology import Topology, TopologyStream, WorkerInfo

__all__ = ["ClientSource", "TopSource", "worker_pid"]


class TopSource(Protocol):
    """What the dashboard reads."""

    @property
    def url(self) -> str: ...

    @property
    def own_worker_ids(self) -> frozenset[str]:
        """The tool's own connections, left out of the tables."""

    def snapshots(self) -> AsyncIterator[Topology]:
        """Snapshots, latest wins; ends when the client closes."""

    def states(self) -> AsyncIterator[ConnectionState]:
        """Connection states, the current one first."""

    async def pid(self, worker: WorkerInfo) -> int | None:
        """The worker's pid when the engine tells it (``engine::workers::info``)."""


class ClientSource:
    """A :class:`TopSource` over a connected client."""

    def __init__(self, client: Client, stream: TopologyStream) -> None:
        self.client = client
        self.stream = stream
        self._ids: set[str] = set()

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def own_worker_ids(self) -> frozenset[str]:
        # Every id this client had: after an engine restart its old row may linger a moment.
        if self.client.worker_id is not None:
            self._ids.add(self.client.worker_id)
        return frozenset(self._ids)

    async def snapshots(self) -> AsyncIterator[Topology]:
        async with self.stream.snapshots.iterate() as iterator:
            async for snapshot in iterator:
                yield snapshot

    async def states(self) -> AsyncIterator[ConnectionState]:
        async with self.client.state.iterate(maxsize=16) as iterator:
            async for state in iterator:
                yield state

    async def pid(self, worker: WorkerInfo) -> int | None:
        return await worker_pid(self.client, worker)


async def worker_pid(client: Client, worker: WorkerInfo) -> int | None:
    """The worker's pid from ``engine::workers::info``: the Rust engine and ours list workers
    without one. ``None`` for the engine's own workers, or when the engine does not say."""
    if worker.builtin or worker.name is None:
        return None
    answer: Any = await client.trigger(
        "engine::workers::info", {"name": worker.name, "namespace": worker.namespace},
        timeout_ms=5000)
    row = answer.get("worker") if isinstance(answer, dict) else None
    if not isinstance(row, dict) or row.get("id") != worker.id:
        return None
    pid = row.get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None
