"""Fixtures of the engine tests: an engine on an ephemeral port with short timers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from raw_engine_client import close_live_workers

from iii_rx.engine import Engine


@pytest.fixture(autouse=True)
async def _close_raw_workers() -> AsyncIterator[None]:
    yield
    await close_live_workers()


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0, namespace_grace_ms=300, functions_available_poll_ms=50,
                      provider_ack_timeout_ms=500) as running:
        yield running
