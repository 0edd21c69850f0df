"""The operators on a real `trigger`: resubscribing re-invokes the function."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import iii_rx
from iii_rx.engine import Engine
from iii_rx.errors import IIITimeoutError
from iii_rx.operators import retry_backoff, timeout


async def test_timeout_and_retry_backoff_reinvoke_a_trigger() -> None:
    calls = 0
    never = asyncio.Event()

    async def flaky(data: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await never.wait()  # the first call hangs: the timeout gives up on it
        return f"answer {calls}"

    async with Engine(port=0) as engine, iii_rx.connect(engine.url, name="rx-ops-retry") as iii:
        iii.register_function("ops::flaky", flaky)
        result = await iii.trigger("ops::flaky", {}).pipe(
            timeout(0.3), retry_backoff(max_attempts=3, initial_delay=0.01, jitter=0))
        assert result == "answer 2"
        assert calls == 2
        hung = 0

        async def hang(data: Any) -> None:
            nonlocal hung
            hung += 1
            await never.wait()

        iii.register_function("ops::hang", hang)
        with pytest.raises(IIITimeoutError) as info:
            await iii.trigger("ops::hang", {}).pipe(
                timeout(0.05), retry_backoff(max_attempts=2, initial_delay=0, jitter=0))
        assert info.value.code == "TIMEOUT"
        assert hung == 2
        never.set()
