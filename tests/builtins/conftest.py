"""Fixtures of the built-in worker tests: an engine on its own thread (the official SDK is
blocking and runs its own loop thread) and official-SDK workers with distinct names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from builtins_helpers import ENGINE_TIMERS, WAIT, unique

from iii_rx.engine import Engine, EngineThread


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    handle = Engine.start_in_thread(port=0, **ENGINE_TIMERS)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def official(engine: EngineThread) -> Iterator[Callable[..., Any]]:
    """``official("role")`` → a connected official ``iii-sdk`` 0.25 worker, shut down after."""
    from iii import InitOptions, register_worker
    from iii_helpers.observability import ReconnectionConfig

    started: list[Any] = []

    def make(role: str, *, url: str | None = None, **options: Any) -> Any:
        options.setdefault("worker_name", unique(role))
        client = register_worker(url or engine.url, InitOptions(
            otel={"enabled": False}, enable_metrics_reporting=False,
            reconnection_config=ReconnectionConfig(initial_delay_ms=50, max_delay_ms=300),
            invocation_timeout_ms=int(WAIT * 1000), **options))
        started.append(client)
        return client

    yield make
    for client in reversed(started):
        client.shutdown()
