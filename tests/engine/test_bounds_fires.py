"""Trigger calls nobody waits for are bounded per handler: a watcher that never answers (a hung
handler, an SDK that drops the call) no longer keeps every fire in the pending table for
``pending_max_age_ms`` (an hour, ~3 KB each); a watcher that answers loses nothing."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine

_LIMIT = 5
_PUBLISHES = 40


async def _subscriber(engine: Engine, name: str) -> RawWorker:
    worker = await RawWorker.connect(engine.url)
    await worker.register_function(f"{name}::on")
    binding = str(uuid.uuid4())
    await worker.send({"type": "registertrigger", "id": binding,
                       "trigger_type": "subscribe", "function_id": f"{name}::on",
                       "config": {"topic": "t"}})
    await worker.register(name)
    conn = engine.registry.workers[worker.worker_id]
    await wait_until(lambda: binding in conn.bindings)
    return worker


async def _fire(engine: Engine, watcher: RawWorker, count: int) -> list[dict[str, Any]]:
    """Publish ``count`` messages and take the invocations they fire at ``watcher``."""
    publisher = await RawWorker.connect(engine.url)
    for i in range(count):
        await publisher.result_of("publish", {"topic": "t", "data": i})
    return [await watcher.recv("invokefunction") for _ in range(count)]


async def _answer(worker: RawWorker, frames: list[dict[str, Any]]) -> None:
    for frame in frames:
        await worker.send({"type": "invocationresult", "function_id": frame["function_id"],
                           "invocation_id": frame["invocation_id"], "result": None})


async def test_a_watcher_that_never_answers_holds_a_bounded_pending_table() -> None:
    async with Engine(port=0, namespace_grace_ms=50,
                      max_pending_fires_per_worker=_LIMIT) as engine:
        silent = await _subscriber(engine, "silent")
        seen = await _fire(engine, silent, _PUBLISHES)
        assert [frame["data"] for frame in seen] == list(range(_PUBLISHES))  # all delivered
        conn = engine.registry.workers[silent.worker_id]
        await wait_until(lambda: len(conn.inbound) <= _LIMIT and len(conn.fires) <= _LIMIT)
        assert len(conn.inbound) == _LIMIT  # the newest, still answerable
        # A late answer to a given-up call finds nothing; one to a kept call completes it.
        await _answer(silent, [seen[0], seen[-1]])
        await wait_until(lambda: len(conn.inbound) == _LIMIT - 1)


async def test_a_watcher_that_answers_late_gets_every_call() -> None:
    async with Engine(port=0, namespace_grace_ms=50,
                      max_pending_fires_per_worker=_LIMIT) as engine:
        slow = await _subscriber(engine, "slow")
        seen = await _fire(engine, slow, _PUBLISHES)
        await _answer(slow, seen)  # answered only now, all of them
        conn = engine.registry.workers[slow.worker_id]
        await wait_until(lambda: not conn.inbound and not conn.fires)
        assert [frame["data"] for frame in seen] == list(range(_PUBLISHES))


async def test_the_default_bound_holds_a_thousand() -> None:
    async with Engine(port=0, namespace_grace_ms=50) as engine:
        silent = await _subscriber(engine, "silent")
        await _fire(engine, silent, 1_010)
        conn = engine.registry.workers[silent.worker_id]
        assert len(conn.inbound) == 1_000  # the oldest ten given up as the newest went out


async def test_a_busy_watcher_is_not_charged_for_the_fires_given_up(
        caplog: pytest.LogCaptureFixture) -> None:
    # A burst larger than the bound reaches a subscriber that answers every call, later: the
    # fires the engine forgot meanwhile count as no failure (its error column stays 0) and
    # log nothing; the worker is healthy, only busy.
    async with Engine(port=0, namespace_grace_ms=50,
                      max_pending_fires_per_worker=_LIMIT) as engine:
        busy = await _subscriber(engine, "busy")
        caplog.set_level(logging.INFO)
        seen = await _fire(engine, busy, _PUBLISHES)
        conn = engine.registry.workers[busy.worker_id]
        await wait_until(lambda: len(conn.inbound) == _LIMIT)
        await _answer(busy, seen)
        await wait_until(lambda: not conn.inbound and not conn.fires)
        entry = engine.registry.functions[("default", "busy::on")]
        function_stats, worker_stats = engine.router.metrics.stats_of(entry)
        assert (function_stats.errors, worker_stats.errors) == (0, 0)
        assert (function_stats.in_flight, worker_stats.in_flight) == (0, 0)
        assert not [r for r in caplog.records if "trigger call" in r.getMessage()]
