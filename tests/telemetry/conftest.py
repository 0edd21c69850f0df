"""Fixtures of the telemetry tests: a fresh in-memory TracerProvider per test, an engine,
official ``iii-sdk`` workers.

OpenTelemetry lets a process set its global tracer provider once; each test installs its own
and the fixture puts the globals back as they were afterwards, so the tests stay independent
(the official SDK's spans go to the global provider too: its workers run with its own OTel
setup off, ``otel={"enabled": False}``, and still record their ``execute`` spans there).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from iii_rx.engine import Engine

_names = itertools.count(1)


def unique_name(prefix: str = "otel-test") -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


@pytest.fixture
def exporter(otel_globals: Any) -> InMemorySpanExporter:
    """Spans of this test, in memory; the global provider is restored afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_globals.tracer(provider)
    return exporter


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0, namespace_grace_ms=300, functions_available_poll_ms=50,
                      provider_ack_timeout_ms=500) as running:
        yield running


@pytest.fixture
async def official() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Start official ``iii-sdk`` workers off the loop (its OTel export off); shut down after."""
    from iii import InitOptions, register_worker

    workers: list[Any] = []

    async def start(url: str) -> Any:
        worker = await asyncio.to_thread(register_worker, url, InitOptions(
            worker_name=unique_name("official"), otel={"enabled": False},
            enable_metrics_reporting=False))
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await asyncio.to_thread(worker.shutdown)


@pytest.fixture
def race() -> Iterator[Callable[[Callable[[], None], int], None]]:
    """``race(work, n)``: run ``work`` on ``n`` threads at once, switching between them as
    often as the interpreter lets them (so that an unguarded read-modify-write loses)."""
    interval = sys.getswitchinterval()

    def run(work: Callable[[], None], n: int) -> None:
        threads = [threading.Thread(target=work) for _ in range(n)]
        sys.setswitchinterval(1e-6)
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(interval)

    yield run
    sys.setswitchinterval(interval)
