"""Issue 12 item 8: one connection's functions, triggers and trigger types are capped.

A registration past a cap is refused without ending the connection: an ``error`` frame for a
function or trigger type, a ``triggerregistrationresult`` error for a binding (never
``registrationrejected``, which the official SDK treats as fatal). The official SDK keeps
serving what was accepted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from iii import InitOptions, InvocationError, register_worker
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine
from iii_rx.engine.dispatch import REGISTRATION_LIMIT


@pytest.fixture
async def capped() -> AsyncIterator[Engine]:
    async with Engine(port=0, namespace_grace_ms=300, max_functions_per_worker=3,
                      max_triggers_per_worker=2, max_trigger_types_per_worker=1) as engine:
        yield engine


def keys(engine: Engine, worker: RawWorker) -> set[str]:
    return {fid for (_, fid) in engine.registry.workers[worker.worker_id].functions}


async def test_functions_past_the_cap_are_refused_and_the_rest_served(capped: Engine) -> None:
    worker = await RawWorker.connect(capped.url)
    await worker.register("capped")
    for n in range(5):
        await worker.register_function(f"cap::f{n}")
    refusals = [await worker.recv("error") for _ in range(2)]
    assert [r["id"] for r in refusals] == ["cap::f3", "cap::f4"]
    assert {r["error"]["code"] for r in refusals} == {REGISTRATION_LIMIT}
    assert "max_functions_per_worker" in refusals[0]["error"]["message"]
    assert keys(capped, worker) == {"cap::f0", "cap::f1", "cap::f2"}

    # Registering an owned function again is no new registration; unregistering frees a slot.
    await worker.register_function("cap::f0", description="again")
    await worker.send({"type": "unregisterfunction", "id": "cap::f1"})
    await worker.register_function("cap::f5")
    await wait_until(lambda: "cap::f5" in keys(capped, worker))
    await worker.nothing("error")

    caller = await RawWorker.connect(capped.url)
    missing = await caller.call("cap::f4", {})
    assert missing["error"]["code"] == "function_not_found"
    call = asyncio.ensure_future(caller.call("cap::f5", {"n": 1}))
    await worker.serve_once()
    assert (await call)["result"]["n"] == 1


async def test_triggers_and_trigger_types_past_the_cap_are_refused(capped: Engine) -> None:
    worker = await RawWorker.connect(capped.url)
    await worker.register("capped")
    await worker.send({"type": "registertriggertype", "id": "cap-a", "description": "a"})
    await worker.send({"type": "registertriggertype", "id": "cap-b", "description": "b"})
    refused = await worker.recv("error")
    assert refused["id"] == "cap-b" and refused["error"]["code"] == REGISTRATION_LIMIT
    assert "max_trigger_types_per_worker" in refused["error"]["message"]
    assert ("default", "cap-a") in capped.triggers.types
    assert ("default", "cap-b") not in capped.triggers.types

    for n in range(3):
        await worker.send({"type": "registertrigger", "id": f"t{n}", "trigger_type": "cap-a",
                           "function_id": "cap::f", "config": {}})
    result = await worker.recv("triggerregistrationresult", where=lambda f: "error" in f)
    assert result["id"] == "t2" and result["error"]["code"] == REGISTRATION_LIMIT
    assert set(capped.triggers.bindings) >= {"t0", "t1"} and "t2" not in capped.triggers.bindings
    # Replacing an owned binding is allowed at the cap.
    await worker.send({"type": "registertrigger", "id": "t0", "trigger_type": "cap-a",
                       "function_id": "cap::g", "config": {}})
    await wait_until(lambda: capped.triggers.bindings["t0"].function_id == "cap::g")
    await worker.nothing("triggerregistrationresult")


async def test_registrations_waiting_for_the_namespace_are_bounded(capped: Engine) -> None:
    worker = await RawWorker.connect(capped.url)
    # Before engine::workers::register nothing is applied; at most 3 + 2 + 1 frames wait.
    for n in range(8):
        await worker.register_function(f"early::f{n}")
    early = [await worker.recv("error") for _ in range(2)]
    assert [r["id"] for r in early] == ["early::f6", "early::f7"]
    conn = capped.registry.workers[worker.worker_id]
    assert conn.buffer is not None and len(conn.buffer) == 6 and not conn.functions

    await worker.register("late")
    late = [await worker.recv("error") for _ in range(3)]
    assert [r["id"] for r in late] == ["early::f3", "early::f4", "early::f5"]
    assert keys(capped, worker) == {"early::f0", "early::f1", "early::f2"}


async def test_the_official_sdk_keeps_serving_past_the_cap(capped: Engine) -> None:
    name = f"sdk-capped-{uuid.uuid4().hex[:6]}"
    client = await asyncio.to_thread(register_worker, capped.url, InitOptions(
        worker_name=name, otel={"enabled": False}, enable_metrics_reporting=False))
    try:
        for n in range(5):
            client.register_function(f"sdk::f{n}", lambda data, n=n: {"n": n})
        await wait_until(lambda: ("default", "sdk::f2") in capped.registry.functions,
                         timeout=30)

        def call(n: int) -> object:
            try:
                return client.trigger({"function_id": f"sdk::f{n}", "payload": {},
                                       "timeout_ms": 10_000})
            except InvocationError as exc:
                return exc.code

        # f3 and f4 were refused by the engine; the connection and the rest stay up.
        seen = [await asyncio.to_thread(call, n) for n in (0, 2, 4)]
        assert seen == [{"n": 0}, {"n": 2}, "function_not_found"]
        assert ("default", "sdk::f4") not in capped.registry.functions
    finally:
        await asyncio.to_thread(client.shutdown)
