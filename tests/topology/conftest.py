"""Fixtures of the topology tests: an embedded engine on ephemeral ports, official workers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from topology_helpers import ENGINE_TIMERS, OfficialWorkers

from iii_rx.engine import Engine


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0, **ENGINE_TIMERS) as running:
        yield running


@pytest.fixture
async def official() -> AsyncIterator[OfficialWorkers]:
    workers = OfficialWorkers()
    yield workers
    for worker in list(workers.running):
        await workers.stop(worker)
