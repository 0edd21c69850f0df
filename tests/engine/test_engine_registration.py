"""Registration: namespaces and their grace period, conflicts, leases, reattach, cleanup."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.registry import CallContext, InProcessHandler
from iii_rx.protocol import RegisterFunction


def _has(engine: Engine, namespace: str, function_id: str) -> bool:
    return (namespace, function_id) in engine.registry.functions


async def test_registrations_wait_for_the_namespace(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    await worker.register_function("svc::f")
    await worker.send({"type": "registertriggertype", "id": "tick", "description": "d"})
    await worker.register("ns-worker", namespace="orders")
    await wait_until(lambda: _has(engine, "orders", "svc::f"))
    assert not _has(engine, "default", "svc::f")
    assert ("orders", "tick") in engine.triggers.types
    conn = engine.registry.workers[worker.worker_id]
    assert conn.namespace == "orders" and conn.buffer is None


async def test_invocations_are_not_buffered(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    answer = await worker.call("engine::functions::list", {}, namespace="default")
    assert "error" not in answer
    assert engine.registry.workers[worker.worker_id].namespace is None


async def test_grace_period_fixes_default_namespace(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    await worker.register_function("late::f")
    await asyncio.sleep(0.05)
    assert not _has(engine, "default", "late::f")  # still buffered inside the grace period
    await wait_until(lambda: _has(engine, "default", "late::f"), timeout=3)
    await worker.register("late", namespace="orders")
    await wait_until(lambda: engine.registry.workers[worker.worker_id].registered)
    conn = engine.registry.workers[worker.worker_id]
    assert conn.namespace == "default"  # a later register keeps the fixed namespace
    await worker.register_function("late::g")
    await wait_until(lambda: _has(engine, "default", "late::g"))


async def test_blank_namespace_in_register_is_refused(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    answer = await worker.call("engine::workers::register", {"name": "x", "namespace": " "})
    assert answer["error"]["code"] == "INVALID_NAMESPACE"


async def test_register_with_id_answers_success(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    assert await worker.result_of("engine::workers::register", {"name": "a", "pid": 1}) == {
        "success": True}


async def test_function_conflict_keeps_incumbent(engine: Engine) -> None:
    first = await RawWorker.connect(engine.url)
    await first.register_function("svc::f")
    await first.register("first")
    await wait_until(lambda: _has(engine, "default", "svc::f"))
    second = await RawWorker.connect(engine.url)
    await second.register("second")
    await second.register_function("svc::f")
    rejected = await second.recv("registrationrejected")
    assert rejected == {"type": "registrationrejected", "code": "FUNCTION_NAMESPACE_CONFLICT",
                        "namespace": "default", "function_id": "svc::f",
                        "owner_worker_id": first.worker_id}
    assert engine.registry.functions[("default", "svc::f")].owner.id == first.worker_id
    # The loser's connection stays up; the same id in another namespace is fine.
    assert (await second.result_of("engine::workers::list", {}))["workers"]
    await first.register_function("svc::f", description="again")  # idempotent for the owner
    await first.nothing("registrationrejected")
    assert engine.registry.functions[("default", "svc::f")].description == "again"


async def test_engine_ids_are_reserved(engine: Engine) -> None:
    namespaced = await RawWorker.connect(engine.url)
    await namespaced.register("nsw", namespace="orders")
    await namespaced.register_function("engine::mine")
    rejected = await namespaced.recv("registrationrejected")
    assert rejected["code"] == "FUNCTION_NAMESPACE_CONFLICT"
    assert rejected["owner_worker_id"] == "" and rejected["namespace"] == "orders"
    plain = await RawWorker.connect(engine.url)
    await plain.register("plain")
    await plain.register_function("engine::functions::list")
    rejected = await plain.recv("registrationrejected")
    assert rejected["owner_worker_id"] == ""
    # engine::queue::enqueue is the built-in queue worker's (a worker may provide it when the
    # engine leaves it free: test_engine_routing's engine_without_queue).
    await plain.register_function("engine::queue::enqueue")
    rejected = await plain.recv("registrationrejected")
    assert rejected["code"] == "FUNCTION_NAMESPACE_CONFLICT"


async def test_worker_name_conflict_rejects_and_closes(engine: Engine) -> None:
    first = await RawWorker.connect(engine.url)
    await first.register("same-name")
    await wait_until(lambda: engine.registry.workers[first.worker_id].registered)
    second = await RawWorker.connect(engine.url)
    await second.register_function("loser::f")
    await second.register("same-name")
    rejected = await second.recv("registrationrejected")
    assert rejected == {"type": "registrationrejected", "code": "WORKER_NAMESPACE_CONFLICT",
                        "namespace": "default", "worker_name": "same-name",
                        "owner_worker_id": first.worker_id}
    await asyncio.wait_for(second.ws.wait_closed(), 5)
    await wait_until(lambda: second.worker_id not in engine.registry.workers)
    assert not _has(engine, "default", "loser::f")
    # Same name in another namespace is a different lease.
    third = await RawWorker.connect(engine.url)
    assert await third.result_of("engine::workers::register",
                                 {"name": "same-name", "namespace": "other"}) == {
        "success": True}


async def test_worker_name_uniqueness_is_switchable() -> None:
    async with Engine(port=0, unique_worker_names=False) as engine:
        first = await RawWorker.connect(engine.url)
        second = await RawWorker.connect(engine.url)
        assert await first.result_of("engine::workers::register", {"name": "n"}) == {
            "success": True}
        assert await second.result_of("engine::workers::register", {"name": "n"}) == {
            "success": True}


async def test_name_is_released_on_disconnect(engine: Engine) -> None:
    first = await RawWorker.connect(engine.url)
    await first.result_of("engine::workers::register", {"name": "reused"})
    await first.close()
    await wait_until(lambda: not engine.registry.leases)
    second = await RawWorker.connect(engine.url)
    assert await second.result_of("engine::workers::register", {"name": "reused"}) == {
        "success": True}


async def test_reattach_retires_the_old_connection(engine: Engine) -> None:
    old = await RawWorker.connect(engine.url)
    await old.register_function("svc::f")
    await old.register("svc")
    await wait_until(lambda: _has(engine, "default", "svc::f"))
    new = await RawWorker.connect(engine.url)
    await new.send({"type": "reattach", "previous_worker_id": old.worker_id,
                    "reattach_token": old.reattach_token})
    await new.register_function("svc::f")
    await new.register("svc")
    await new.nothing("registrationrejected")
    await asyncio.wait_for(old.ws.wait_closed(), 5)
    assert engine.registry.functions[("default", "svc::f")].owner.id == new.worker_id
    assert old.worker_id not in engine.registry.workers


async def test_reattach_with_wrong_token_is_ignored(engine: Engine) -> None:
    old = await RawWorker.connect(engine.url)
    await old.register_function("svc::f")
    await old.register("svc-a")
    await wait_until(lambda: _has(engine, "default", "svc::f"))
    new = await RawWorker.connect(engine.url)
    for token in ("wrong", None):
        frame = {"type": "reattach", "previous_worker_id": old.worker_id}
        if token is not None:
            frame["reattach_token"] = token
        await new.send(frame)
    await new.send({"type": "reattach", "previous_worker_id": "not-a-uuid"})
    await new.register("svc-b")
    await new.register_function("svc::f")
    assert (await new.recv("registrationrejected"))["owner_worker_id"] == old.worker_id
    assert old.worker_id in engine.registry.workers


async def test_unregister_function(engine: Engine) -> None:
    worker = await RawWorker.connect(engine.url)
    await worker.register("u")
    await worker.register_function("u::f")
    await wait_until(lambda: _has(engine, "default", "u::f"))
    other = await RawWorker.connect(engine.url)
    await other.register("v")
    await other.send({"type": "unregisterfunction", "id": "u::f"})  # not the owner: no effect
    await worker.send({"type": "unregisterfunction", "id": "u::f"})
    await wait_until(lambda: not _has(engine, "default", "u::f"))
    answer = await other.call("u::f", {})
    assert answer["error"]["code"] == "function_not_found"


async def test_http_invoked_function_is_refused_with_a_reason(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    worker = await RawWorker.connect(engine.url)
    await worker.register("httpw")
    with caplog.at_level(logging.WARNING, logger="iii_rx.engine"):
        await worker.register_function("ext::charge", invocation={
            "url": "http://10.0.0.1:9/x", "method": "POST"})  # private range: refused by default
        answer = await worker.call("ext::charge", {})
    await worker.nothing("registrationrejected")
    assert answer["error"]["code"] == "function_not_found"
    assert "Private IP blocked" in answer["error"]["message"]
    assert any("Private IP blocked" in r.getMessage() for r in caplog.records)
    await worker.close()
    await wait_until(lambda: engine.registry.is_empty())


async def test_http_function_hook_registers_in_process_handler(engine: Engine) -> None:
    async def hook(conn: WorkerConnection, frame: RegisterFunction) -> InProcessHandler | str:
        async def handler(data: Any, ctx: CallContext) -> Any:
            return {"echo": data}
        return handler

    engine.services.set_http_function_hook(hook)
    worker = await RawWorker.connect(engine.url)
    await worker.register("hooked")
    await worker.register_function("ext::echo", invocation={"url": "http://127.0.0.1:9/"})
    caller = await RawWorker.connect(engine.url)
    await wait_until(lambda: _has(engine, "default", "ext::echo"))
    assert await caller.result_of("ext::echo", [1]) == {"echo": [1]}
    await worker.close()
    await wait_until(lambda: not _has(engine, "default", "ext::echo"))


async def test_disconnect_cleans_everything(engine: Engine) -> None:
    provider = await RawWorker.connect(engine.url)
    await provider.send({"type": "registertriggertype", "id": "tick", "description": "d"})
    await provider.register("provider")
    worker = await RawWorker.connect(engine.url)
    await worker.register_function("w::f")
    await worker.send({"type": "registertriggertype", "id": "own", "description": "d"})
    await worker.send({"type": "registertrigger", "id": "b1", "trigger_type": "tick",
                       "function_id": "w::f", "config": {}})
    await worker.register("worker")
    delivered = await provider.recv("registertrigger")
    assert delivered["id"] == "b1"
    await worker.close()
    assert await provider.recv("unregistertrigger") == {
        "type": "unregistertrigger", "id": "b1", "trigger_type": "tick"}
    await provider.close()
    await wait_until(lambda: engine.registry.is_empty() and engine.triggers.is_empty())
    assert not engine.triggers.bindings


async def test_thousand_workers_leave_nothing_behind(engine: Engine) -> None:
    async def one(i: int) -> None:
        worker = await RawWorker.connect(engine.url)
        await worker.register_function(f"w{i}::f")
        await worker.send({"type": "registertriggertype", "id": f"t{i}", "description": "d"})
        await worker.send({"type": "registertrigger", "id": f"b{i}", "trigger_type": f"t{i}",
                           "function_id": f"w{i}::f", "config": {}})
        await worker.register(f"worker-{i}")
        await worker.recv("registertrigger")  # the binding reached its provider: all applied
        await worker.close()

    for start in range(0, 1000, 200):
        await asyncio.gather(*(one(i) for i in range(start, start + 200)))
    await wait_until(lambda: engine.registry.is_empty() and engine.triggers.is_empty(),
                     timeout=10)
    assert not engine.triggers.bindings
    assert engine.router.pending_count() == 0
    assert set(engine.registry.functions) == {
        key for key, entry in engine.registry.functions.items() if entry.owner is None}
