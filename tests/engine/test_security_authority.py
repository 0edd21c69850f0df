"""Authority (issue 12, item 2), over real sockets: bindings and worker-provided trigger types
belong to the connection that registered them, durable bindings to the worker name that made
them, and a worker name to the worker that holds it and to its reattaching successors. Refusals
use the protocol's error shapes (``triggerregistrationresult`` / ``invocationresult`` with
``FORBIDDEN``, an ``error`` frame), never ``registrationrejected`` for these; the official
``iii-sdk`` is a peer where it can be."""

from __future__ import annotations

import asyncio
import uuid
import warnings

from iii import InitOptions, register_worker
from iii_helpers.observability import ReconnectionConfig
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine


async def provider_of(engine: Engine, type_id: str = "webhook",
                      name: str = "provider") -> RawWorker:
    provider = await RawWorker.connect(engine.url)
    await provider.send({"type": "registertriggertype", "id": type_id, "description": "hooks"})
    await provider.register(name)
    await wait_until(lambda: ("default", type_id) in engine.triggers.types)
    return provider


async def named(engine: Engine, name: str) -> RawWorker:
    worker = await RawWorker.connect(engine.url)
    answer = await worker.call("engine::workers::register", {"name": name})
    assert answer.get("result") == {"success": True}, answer
    return worker


def bind(binding_id: str, function_id: str, type_id: str = "webhook") -> dict[str, object]:
    return {"type": "registertrigger", "id": binding_id, "trigger_type": type_id,
            "function_id": function_id, "config": {"path": "/x"}}


def conn_of(engine: Engine, worker: RawWorker) -> object:
    return engine.registry.workers[worker.worker_id]


# ----------------------------------------------------------------------------- bindings


async def test_another_worker_cannot_replace_a_binding_by_reusing_its_id(engine: Engine) -> None:
    provider = await provider_of(engine)
    owner = await named(engine, "owner")
    intruder = await named(engine, "intruder")
    await owner.send(bind("t-1", "owner::on_hook"))
    assert (await provider.recv("registertrigger"))["function_id"] == "owner::on_hook"

    await intruder.send(bind("t-1", "intruder::steal"))
    refused = await intruder.recv("triggerregistrationresult")
    assert refused["id"] == "t-1" and refused["error"]["code"] == "FORBIDDEN"
    binding = engine.triggers.bindings["t-1"]
    assert binding.owner is conn_of(engine, owner) and binding.function_id == "owner::on_hook"
    await provider.nothing(within=0.1)  # neither retracted nor re-delivered

    await owner.send(bind("t-1", "owner::on_hook"))  # the owner's own replay is fine
    assert (await provider.recv("unregistertrigger"))["id"] == "t-1"
    assert (await provider.recv("registertrigger"))["id"] == "t-1"
    await owner.nothing("triggerregistrationresult", within=0.1)


async def test_another_worker_cannot_remove_a_binding(engine: Engine) -> None:
    provider = await provider_of(engine)
    owner = await named(engine, "owner")
    intruder = await named(engine, "intruder")
    await owner.send(bind("t-2", "owner::on_hook"))
    await provider.recv("registertrigger")

    await intruder.send({"type": "unregistertrigger", "id": "t-2", "trigger_type": "webhook"})
    error = await intruder.recv("error")
    assert error["error"]["code"] == "FORBIDDEN" and error["id"] == "t-2"
    call = await intruder.call("engine::unregister_trigger", {"id": "t-2"})
    assert call["error"]["code"] == "FORBIDDEN", call
    assert "t-2" in engine.triggers.bindings
    await provider.nothing("unregistertrigger", within=0.1)

    assert await owner.result_of("engine::unregister_trigger", {"id": "t-2"}) == {
        "removed": True}
    assert (await provider.recv("unregistertrigger"))["id"] == "t-2"


async def test_a_durable_binding_belongs_to_the_worker_name_that_made_it(engine: Engine) -> None:
    await provider_of(engine, type_id="tick")
    maker = await named(engine, "maker")
    made = await maker.result_of("engine::register_trigger", {
        "trigger_type": "tick", "function_id": "maker::on_tick"})
    await maker.close()
    await wait_until(lambda: maker.worker_id not in engine.registry.workers)

    stranger = await named(engine, "stranger")
    refused = await stranger.call("engine::unregister_trigger", {"id": made["id"]})
    assert refused["error"]["code"] == "FORBIDDEN" and "maker" in refused["error"]["message"]
    await stranger.send({"type": "registertrigger", "id": made["id"], "trigger_type": "tick",
                         "function_id": "stranger::steal", "config": {}})
    assert (await stranger.recv("triggerregistrationresult"))["error"]["code"] == "FORBIDDEN"
    assert engine.triggers.bindings[made["id"]].function_id == "maker::on_tick"

    successor = await named(engine, "maker")  # the same service, restarted
    assert await successor.result_of("engine::unregister_trigger", {"id": made["id"]}) == {
        "removed": True}


async def test_the_engine_itself_may_remove_any_binding(engine: Engine) -> None:
    await provider_of(engine)
    owner = await named(engine, "owner")
    await owner.send(bind("t-3", "owner::on_hook"))
    await wait_until(lambda: "t-3" in engine.triggers.bindings)
    assert await engine.call("engine::unregister_trigger", {"id": "t-3"}) == {"removed": True}


async def test_an_official_sdk_workers_binding_survives_an_intruder(engine: Engine) -> None:
    provider = await provider_of(engine)
    sdk = await asyncio.to_thread(register_worker, engine.url, InitOptions(
        worker_name=f"sdk-owner-{uuid.uuid4().hex[:6]}"))
    try:
        sdk.register_function("sdk::on_hook", lambda data: data)

        def bind_sdk() -> None:
            with warnings.catch_warnings():  # deprecated in 0.25 for observe(), still served
                warnings.simplefilter("ignore", DeprecationWarning)
                sdk.register_trigger({"type": "webhook", "function_id": "sdk::on_hook",
                                      "config": {"path": "/s"}})

        await asyncio.to_thread(bind_sdk)
        delivered = await provider.recv("registertrigger")
        sdk_conn = engine.triggers.bindings[delivered["id"]].owner
        intruder = await named(engine, "intruder")
        await intruder.send(bind(delivered["id"], "intruder::steal"))
        assert (await intruder.recv("triggerregistrationresult"))["error"]["code"] == "FORBIDDEN"
        await intruder.send({"type": "unregistertrigger", "id": delivered["id"]})
        assert (await intruder.recv("error"))["error"]["code"] == "FORBIDDEN"
        binding = engine.triggers.bindings[delivered["id"]]
        assert binding.owner is sdk_conn and binding.function_id == "sdk::on_hook"
        fired = await provider.call("sdk::on_hook", {"fired": 1})  # still routed to the SDK
        assert fired["result"]["fired"] == 1
    finally:
        await asyncio.to_thread(sdk.shutdown)


# ----------------------------------------------------------------------------- trigger types


async def test_another_worker_cannot_take_over_or_remove_a_trigger_type(engine: Engine) -> None:
    provider = await provider_of(engine)
    usurper = await named(engine, "usurper")
    await usurper.send({"type": "registertriggertype", "id": "webhook", "description": "mine"})
    error = await usurper.recv("error")
    assert error["error"]["code"] == "FORBIDDEN" and error["frame_type"] == "registertriggertype"
    assert engine.triggers.types[("default", "webhook")].provider is conn_of(engine, provider)

    await usurper.send({"type": "unregistertriggertype", "id": "webhook"})
    assert (await usurper.recv("error"))["frame_type"] == "unregistertriggertype"
    assert ("default", "webhook") in engine.triggers.types

    consumer = await named(engine, "consumer")  # bindings still go to the real provider
    await consumer.send(bind("t-4", "consumer::on_hook"))
    assert (await provider.recv("registertrigger"))["id"] == "t-4"
    await usurper.nothing("registertrigger", within=0.1)

    await provider.close()  # a type whose provider left may be provided by anyone
    await wait_until(lambda: provider.worker_id not in engine.registry.workers)
    await usurper.send({"type": "registertriggertype", "id": "webhook", "description": "mine"})
    assert (await usurper.recv("registertrigger"))["id"] == "t-4"


# ----------------------------------------------------------------------------- worker names


async def drop(engine: Engine, worker: RawWorker) -> None:
    """Cut ``worker``'s connection as a network failure would, and wait for the cleanup."""
    worker.ws.transport.abort()
    await wait_until(lambda: worker.worker_id not in engine.registry.workers)


async def test_a_reattaching_worker_takes_its_name_back_from_a_squatter(engine: Engine) -> None:
    real = await named(engine, "svc")
    await real.register_function("svc::work")
    await drop(engine, real)
    squatter = await named(engine, "svc")  # took the name in the gap
    await squatter.register_function("svc::work")
    await wait_until(lambda: ("default", "svc::work") in engine.registry.functions)

    back = await RawWorker.connect(engine.url)
    await back.send({"type": "reattach", "previous_worker_id": real.worker_id,
                     "reattach_token": real.reattach_token})
    await back.register_function("svc::work")
    answer = await back.call("engine::workers::register", {"name": "svc"})
    assert answer.get("result") == {"success": True}, answer

    rejected = await squatter.recv("registrationrejected")
    assert rejected["code"] == "WORKER_NAMESPACE_CONFLICT"
    assert rejected["owner_worker_id"] == back.worker_id
    back_conn = conn_of(engine, back)
    assert engine.registry.leases[("default", "svc")] is back_conn
    await wait_until(lambda: getattr(engine.registry.functions.get(("default", "svc::work")),
                                     "owner", None) is back_conn)
    await wait_until(lambda: squatter.worker_id not in engine.registry.workers)


async def test_a_wrong_reattach_token_proves_nothing(engine: Engine) -> None:
    real = await named(engine, "svc")
    await drop(engine, real)
    squatter = await named(engine, "svc")
    forger = await RawWorker.connect(engine.url)
    await forger.send({"type": "reattach", "previous_worker_id": real.worker_id,
                       "reattach_token": str(uuid.uuid4())})
    await forger.register("svc")
    assert (await forger.recv("registrationrejected"))["owner_worker_id"] == squatter.worker_id
    assert engine.registry.leases[("default", "svc")] is conn_of(engine, squatter)


async def test_a_name_is_first_come_without_proof(engine: Engine) -> None:
    """Without a reattach proof, the holder keeps the name (the engine token decides who may
    connect at all)."""
    holder = await named(engine, "svc")
    newcomer = await RawWorker.connect(engine.url)
    await newcomer.register("svc")
    assert (await newcomer.recv("registrationrejected"))["owner_worker_id"] == holder.worker_id


async def test_an_official_sdk_worker_reclaims_its_name_after_a_drop(engine: Engine) -> None:
    """The official SDK reconnects with ``reattach`` first: a squatter that took its name in
    the gap is evicted, and the SDK worker keeps serving instead of failing fatally."""
    name = f"sdk-svc-{uuid.uuid4().hex[:6]}"
    sdk = await asyncio.to_thread(register_worker, engine.url, InitOptions(
        worker_name=name, reconnection_config=ReconnectionConfig(
            initial_delay_ms=1000, max_delay_ms=1000)))
    try:
        sdk.register_function("sdk::echo", lambda data: data)
        await wait_until(lambda: ("default", name) in engine.registry.leases
                         and ("default", "sdk::echo") in engine.registry.functions)
        first = engine.registry.leases[("default", name)]
        first.ws.transport.abort()
        await wait_until(lambda: first.id not in engine.registry.workers)
        squatter = await named(engine, name)  # the SDK waits ~1 s before it reconnects

        rejected = await squatter.recv("registrationrejected", timeout=10)
        assert rejected["code"] == "WORKER_NAMESPACE_CONFLICT"
        await wait_until(lambda: ("default", "sdk::echo") in engine.registry.functions,
                         timeout=10)
        holder = engine.registry.leases[("default", name)]
        assert holder.id not in (first.id, squatter.worker_id)
        caller = await RawWorker.connect(engine.url)
        assert (await caller.result_of("sdk::echo", {"still": "served"}))["still"] == "served"
        assert sdk.get_connection_state() == "connected"
    finally:
        await asyncio.to_thread(sdk.shutdown)
