"""Engine metrics: per function and per worker counters, over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine
from iii_rx.engine.metrics import BOUNDS_MS, CallStats
from iii_rx.errors import IIIInvocationError
from iii_rx.tools.metrics import metrics_of


async def _pair(engine: Engine) -> tuple[RawWorker, RawWorker]:
    worker = await RawWorker.connect(engine.url)
    caller = await RawWorker.connect(engine.url)
    await worker.register_function("math::add")
    await worker.register_function("math::idle")
    await worker.register("worker")
    await caller.register("caller")
    await wait_until(lambda: ("default", "math::idle") in engine.registry.functions)
    return worker, caller


async def _metrics(caller: RawWorker) -> dict[str, Any]:
    result: dict[str, Any] = await caller.result_of("engine::metrics::list", {})
    return result


def _function(listed: dict[str, Any], function_id: str) -> dict[str, Any]:
    [row] = [r for r in listed["functions"] if r["function_id"] == function_id]
    return row


def _worker(listed: dict[str, Any], worker_id: str) -> dict[str, Any]:
    [row] = [r for r in listed["workers"] if r["id"] == worker_id]
    return row


async def test_counts_errors_and_in_flight_are_exact(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    for i in range(5):  # three answered, two failing
        call = asyncio.ensure_future(caller.call("math::add", {"i": i}))
        failing = i % 2 == 1
        await worker.serve_once((lambda f: {"error": {"code": "boom", "message": "no"}})
                                if failing else None)
        assert ("error" in await call) == failing
    waiting = [await caller.invoke("math::add", {"late": n}) for n in range(2)]
    for _ in waiting:
        await worker.recv("invokefunction")

    listed = await _metrics(caller)
    add = _function(listed, "math::add")
    assert add["namespace"] == "default" and add["worker_name"] == "worker"
    assert (add["invocations"], add["errors"], add["in_flight"]) == (7, 2, 2)
    assert isinstance(add["p50_ms"], float) and add["p50_ms"] in BOUNDS_MS
    assert add["p99_ms"] >= add["p50_ms"] > 0
    row = _worker(listed, worker.worker_id)
    assert row["name"] == "worker"
    assert (row["invocations"], row["errors"], row["in_flight"]) == (7, 2, 2)
    idle = _function(listed, "math::idle")
    assert idle == {"function_id": "math::idle", "namespace": "default", "worker_name": "worker",
                    "invocations": 0, "errors": 0, "in_flight": 0, "p50_ms": None,
                    "p99_ms": None}

    # The same numbers on the worker rows of engine::workers::list, when asked for.
    rows = (await caller.result_of("engine::workers::list",
                                   {"include_metrics": True}))["workers"]
    [listed_row] = [r for r in rows if r["id"] == worker.worker_id]
    assert listed_row["metrics"] == {k: row[k] for k in
                                     ("invocations", "errors", "in_flight", "p50_ms", "p99_ms")}
    seen = metrics_of(listed_row)  # what the dashboard reads
    assert (seen.invocations, seen.errors, seen.in_flight) == (7, 2, 2)
    plain = (await caller.result_of("engine::workers::list", {}))["workers"]
    assert all("metrics" not in r for r in plain)
    # And on the function rows of engine::functions::list.
    functions = (await caller.result_of("engine::functions::list",
                                        {"include_metrics": True}))["functions"]
    [add_row] = [r for r in functions if r["function_id"] == "math::add"]
    seen = metrics_of(add_row)
    assert (seen.invocations, seen.errors, seen.in_flight) == (7, 2, 2)
    plain = (await caller.result_of("engine::functions::list", {}))["functions"]
    assert all("metrics" not in r for r in plain)

    for invocation_id in waiting:
        await worker.send({"type": "invocationresult", "invocation_id": invocation_id,
                           "function_id": "math::add", "result": 0})
        await caller.recv("invocationresult", where=lambda f, i=invocation_id:
                          f["invocation_id"] == i)
    add = _function(await _metrics(caller), "math::add")
    assert (add["invocations"], add["errors"], add["in_flight"]) == (7, 2, 0)


async def test_void_calls_count_without_waiting(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    for n in range(3):
        await caller.send({"type": "invokefunction", "function_id": "math::add", "data": n})
    for _ in range(3):
        await worker.recv("invokefunction")
    add = _function(await _metrics(caller), "math::add")
    assert (add["invocations"], add["errors"], add["in_flight"]) == (3, 0, 0)
    assert add["p50_ms"] is None


async def test_a_worker_without_calls_has_zeros(engine: Engine) -> None:
    quiet = await RawWorker.connect(engine.url)
    await quiet.register("quiet")
    await wait_until(lambda: engine.registry.workers[quiet.worker_id].name == "quiet")
    listed = await _metrics(quiet)
    row = _worker(listed, quiet.worker_id)
    assert row == {"id": quiet.worker_id, "name": "quiet", "namespace": "default",
                   "invocations": 0, "errors": 0, "in_flight": 0, "p50_ms": None,
                   "p99_ms": None}
    rows = (await quiet.result_of("engine::workers::list", {"include_metrics": True}))["workers"]
    [mine] = [r for r in rows if r["id"] == quiet.worker_id]
    assert mine["metrics"]["invocations"] == 0 and mine["metrics"]["p99_ms"] is None


async def test_stopped_and_engine_calls_are_counted(engine: Engine) -> None:
    worker, caller = await _pair(engine)
    stats = engine.router.metrics
    pending = asyncio.ensure_future(caller.call("math::add", {}))
    await worker.recv("invokefunction")
    from_engine = asyncio.ensure_future(engine.call("math::add", {}))
    await worker.recv("invokefunction")
    assert stats.workers[worker.worker_id].in_flight == 2
    await worker.close()  # both calls end with invocation_stopped
    assert (await pending)["error"]["code"] == "invocation_stopped"
    with pytest.raises(IIIInvocationError) as failed:
        await from_engine
    assert failed.value.code == "invocation_stopped"
    gone = stats.workers[worker.worker_id]
    assert (gone.invocations, gone.errors, gone.in_flight) == (2, 2, 0)

    before = _function(await _metrics(caller), "engine::functions::list")["invocations"]
    await engine.call("engine::functions::list", {})
    await caller.result_of("engine::functions::list", {})
    after = _function(await _metrics(caller), "engine::functions::list")
    assert after["invocations"] == before + 2 and after["in_flight"] == 0
    own = _function(await _metrics(caller), "engine::metrics::list")
    assert own["in_flight"] == 1  # the call reading it
    engine_worker = _worker(await _metrics(caller), "iii-engine-functions")
    assert engine_worker["invocations"] > 0
    assert engine_worker["in_flight"] == 1  # the call reading it: the others ended


async def test_a_call_whose_caller_left_is_no_longer_in_flight(engine: Engine) -> None:
    """The worker may never answer a call nobody waits for: it leaves the in-flight count when
    its caller goes, without a latency."""
    worker, caller = await _pair(engine)
    stats = engine.router.metrics
    await caller.invoke("math::add", {})
    await worker.recv("invokefunction")
    assert stats.workers[worker.worker_id].in_flight == 1
    await caller.close()
    await wait_until(lambda: stats.workers[worker.worker_id].in_flight == 0)
    add = _function(await _metrics(worker), "math::add")
    assert (add["invocations"], add["errors"], add["in_flight"], add["p50_ms"]) == (1, 0, 0, None)


def test_quantiles_read_the_histogram() -> None:
    stats = CallStats()
    assert stats.quantile_ms(0.5) is None
    for _ in range(99):
        stats.begin()
        stats.end(0.0, failed=False)  # "started" long ago: the overflow bucket
    assert stats.quantile_ms(0.5) == BOUNDS_MS[-1]
    fast = CallStats()
    fast.buckets[0] = 98
    fast.buckets[5] = 2
    assert fast.quantile_ms(0.5) == BOUNDS_MS[0] and fast.quantile_ms(0.99) == BOUNDS_MS[5]
    assert (stats.invocations, stats.errors, stats.in_flight) == (99, 0, 0)
