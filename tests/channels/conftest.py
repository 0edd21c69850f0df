"""Fixtures of the channel tests: an embedded engine on ephemeral ports and iii_rx clients."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import iii_rx
from iii_rx.engine import Engine

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A worker name no other worker of this run uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0, namespace_grace_ms=300) as running:
        yield running


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[iii_rx.Client]:
    async with iii_rx.connect(engine.url, name=unique("rx-chan")) as iii:
        yield iii


@pytest.fixture
def official() -> Iterator[Callable[..., Any]]:
    """Start official ``iii-sdk`` workers (each with a distinct name); shut down after."""
    from iii import InitOptions, register_worker

    workers: list[Any] = []

    def start(url: str, **options: Any) -> Any:
        options.setdefault("worker_name", unique("official-chan"))
        worker = register_worker(url, InitOptions(**options))
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.shutdown()
