"""Fixtures of the tool tests: embedded engines on ephemeral ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tools_helpers import ENGINE_TIMERS

from iii_rx.engine import Engine


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0, **ENGINE_TIMERS) as running:
        yield running
