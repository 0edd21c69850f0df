"""Triggers: worker-provided types, parking, replay, re-homing, acks, built-in types."""

from __future__ import annotations

import asyncio
import json

from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine
from iii_rx.engine.triggers import Binding, BindingRefused, TriggerType


async def _provider(engine: Engine, type_id: str = "webhook", name: str = "provider",
                    namespace: str | None = None) -> RawWorker:
    provider = await RawWorker.connect(engine.url)
    await provider.send({"type": "registertriggertype", "id": type_id, "description": "hooks"})
    await provider.register(name, namespace=namespace)
    ns = namespace or "default"
    await wait_until(lambda: (ns, type_id) in engine.triggers.types)
    return provider


async def _consumer(engine: Engine, name: str = "consumer", namespace: str | None = None,
                    function_id: str = "app::on_hook") -> RawWorker:
    consumer = await RawWorker.connect(engine.url)
    await consumer.register_function(function_id)
    await consumer.register(name, namespace=namespace)
    ns = namespace or "default"
    await wait_until(lambda: (ns, function_id) in engine.registry.functions)
    return consumer


def _active(engine: Engine, binding_id: str) -> bool:
    binding = engine.triggers.bindings.get(binding_id)
    return binding is not None and not binding.parked


def _bind(binding_id: str, type_id: str = "webhook", function_id: str = "app::on_hook",
          **extra: object) -> dict[str, object]:
    return {"type": "registertrigger", "id": binding_id, "trigger_type": type_id,
            "function_id": function_id, "config": {"path": "/x"}, **extra}


async def test_binding_is_delivered_to_provider_and_provider_fires(engine: Engine) -> None:
    provider = await _provider(engine)
    consumer = await _consumer(engine)
    await consumer.send(_bind("t-1", metadata={"m": 1}))
    delivered = await provider.recv("registertrigger")
    assert delivered == {"type": "registertrigger", "id": "t-1", "trigger_type": "webhook",
                         "function_id": "app::on_hook", "config": {"path": "/x"},
                         "metadata": {"m": 1}}
    await provider.send({"type": "triggerregistrationresult", "id": "t-1",
                         "trigger_type": "webhook", "function_id": "app::on_hook"})
    await consumer.nothing("triggerregistrationresult")
    # Firing is an ordinary call from the provider.
    fire = asyncio.ensure_future(provider.call("app::on_hook", {"event": 1},
                                               metadata={"m": 1}))
    seen = await consumer.serve_once()
    assert seen["metadata"] == {"m": 1}
    assert (await fire)["result"]["event"] == 1


async def test_missing_config_reads_as_null(engine: Engine) -> None:
    provider = await _provider(engine)
    consumer = await _consumer(engine)
    await consumer.send({"type": "registertrigger", "id": "t-n", "trigger_type": "webhook",
                         "function_id": "app::on_hook"})
    delivered = await provider.recv("registertrigger")
    assert delivered["config"] is None


async def test_binding_parks_until_type_appears(engine: Engine) -> None:
    consumer = await _consumer(engine)
    await consumer.send(_bind("t-early"))
    await wait_until(lambda: "t-early" in engine.triggers.bindings)
    assert engine.triggers.bindings["t-early"].parked
    listed = await consumer.result_of("engine::registered-triggers::list", {})
    assert listed["registered_triggers"] == []  # parked bindings are not listed
    provider = await _provider(engine)
    assert (await provider.recv("registertrigger"))["id"] == "t-early"


async def test_provider_restart_gets_bindings_replayed(engine: Engine) -> None:
    provider = await _provider(engine)
    consumer = await _consumer(engine)
    await consumer.send(_bind("t-r"))
    await provider.recv("registertrigger")
    await provider.close()
    await wait_until(lambda: engine.triggers.bindings["t-r"].parked)
    again = await _provider(engine, name="provider-2")
    assert (await again.recv("registertrigger"))["id"] == "t-r"
    # Re-registering the type on the same connection replays too.
    await again.send({"type": "registertriggertype", "id": "webhook", "description": "hooks"})
    assert (await again.recv("registertrigger"))["id"] == "t-r"


async def test_provider_error_parks_and_is_forwarded(engine: Engine) -> None:
    provider = await _provider(engine)
    consumer = await _consumer(engine)
    await consumer.send(_bind("t-bad"))
    await provider.recv("registertrigger")
    # An answer from someone who is not the provider is not believed.
    await consumer.send({"type": "triggerregistrationresult", "id": "t-bad",
                         "trigger_type": "webhook", "function_id": "app::on_hook",
                         "error": {"code": "x", "message": "spoofed"}})
    await provider.send({"type": "triggerregistrationresult", "id": "t-bad",
                         "trigger_type": "webhook", "function_id": "app::on_hook",
                         "error": {"code": "trigger_registration_failed",
                                   "message": "bad config"}})
    forwarded = await consumer.recv("triggerregistrationresult")
    assert forwarded["id"] == "t-bad"
    assert forwarded["error"] == {"code": "trigger_registration_failed",
                                  "message": "bad config"}
    assert engine.triggers.bindings["t-bad"].parked


async def test_unregister_trigger_tells_provider(engine: Engine) -> None:
    provider = await _provider(engine)
    consumer = await _consumer(engine)
    await consumer.send(_bind("t-u"))
    await provider.recv("registertrigger")
    await consumer.send({"type": "unregistertrigger", "id": "t-u", "trigger_type": "webhook"})
    assert await provider.recv("unregistertrigger") == {
        "type": "unregistertrigger", "id": "t-u", "trigger_type": "webhook"}
    await wait_until(lambda: "t-u" not in engine.triggers.bindings)


async def test_unregister_trigger_type_parks_bindings(engine: Engine) -> None:
    provider = await _provider(engine)
    consumer = await _consumer(engine)
    await consumer.send(_bind("t-p"))
    await provider.recv("registertrigger")
    await provider.send({"type": "unregistertriggertype", "id": "webhook"})
    await wait_until(lambda: ("default", "webhook") not in engine.triggers.types)
    assert engine.triggers.bindings["t-p"].parked


async def test_invalid_namespace_binding_is_answered(engine: Engine) -> None:
    consumer = await _consumer(engine)
    await consumer.send(_bind("t-ns", namespace=""))
    answer = await consumer.recv("triggerregistrationresult")
    assert answer["error"]["code"] == "INVALID_NAMESPACE"
    assert "t-ns" not in engine.triggers.bindings


async def test_namespaced_provider_rehomes_bindings(engine: Engine) -> None:
    default_provider = await _provider(engine, name="p-default")
    consumer = await _consumer(engine, namespace="orders")
    await consumer.send(_bind("t-h", namespace="orders"))
    delivered = await default_provider.recv("registertrigger")
    assert delivered["namespace"] == "orders" and "trigger_namespace" not in delivered
    orders_provider = await _provider(engine, name="p-orders", namespace="orders")
    assert await default_provider.recv("unregistertrigger") == {
        "type": "unregistertrigger", "id": "t-h", "trigger_type": "webhook"}
    moved = await orders_provider.recv("registertrigger")
    assert moved["id"] == "t-h" and moved["trigger_namespace"] == "orders"
    await orders_provider.close()
    # Back to the default provider when the namespaced one leaves.
    assert (await default_provider.recv("registertrigger"))["id"] == "t-h"


async def test_explicit_trigger_namespace_only_matches_that_provider(engine: Engine) -> None:
    await _provider(engine, name="p-default")
    consumer = await _consumer(engine)
    await consumer.send(_bind("t-x", trigger_namespace="billing"))
    await wait_until(lambda: "t-x" in engine.triggers.bindings)
    assert engine.triggers.bindings["t-x"].parked
    billing = await _provider(engine, name="p-billing", namespace="billing")
    assert (await billing.recv("registertrigger"))["id"] == "t-x"


async def test_engine_register_trigger_waits_for_ack(engine: Engine) -> None:
    provider = await _provider(engine)
    caller = await _consumer(engine)
    call = asyncio.ensure_future(caller.call(
        "engine::register_trigger", {"trigger_type": "webhook", "function_id": "app::on_hook",
                                     "config": {"a": 1}}))
    delivered = await provider.recv("registertrigger")
    assert not call.done()
    await provider.send({"type": "triggerregistrationresult", "id": delivered["id"],
                         "trigger_type": "webhook", "function_id": "app::on_hook"})
    answer = await call
    assert answer["result"] == {"id": delivered["id"]}
    # Durable: survives the caller.
    await caller.close()
    await wait_until(lambda: caller.worker_id not in engine.registry.workers)
    assert delivered["id"] in engine.triggers.bindings
    other = await RawWorker.connect(engine.url)
    await other.register("consumer")  # the creator's name may remove it (docs/guarantees.md)
    removed = await other.result_of("engine::unregister_trigger", {"id": delivered["id"]})
    assert removed == {"removed": True}
    assert (await provider.recv("unregistertrigger"))["id"] == delivered["id"]
    again = await other.result_of("engine::unregister_trigger", {"id": delivered["id"]})
    assert again == {"removed": False}


async def test_engine_register_trigger_refused_by_provider(engine: Engine) -> None:
    provider = await _provider(engine)
    caller = await RawWorker.connect(engine.url)
    call = asyncio.ensure_future(caller.call(
        "engine::register_trigger", {"trigger_type": "webhook", "function_id": "x::y"}))
    delivered = await provider.recv("registertrigger")
    await provider.send({"type": "triggerregistrationresult", "id": delivered["id"],
                         "error": {"code": "trigger_registration_failed", "message": "nope"}})
    answer = await call
    assert answer["error"] == {"code": "trigger_registration_failed",  # as the Rust engine:
                               "message": "nope"}                     # the code is not repeated
    assert delivered["id"] not in engine.triggers.bindings


async def test_engine_register_trigger_accepts_after_ack_timeout(engine: Engine) -> None:
    provider = await _provider(engine)
    caller = await RawWorker.connect(engine.url)
    answer = await caller.call("engine::register_trigger",
                               {"trigger_type": "webhook", "function_id": "x::y"})
    delivered = await provider.recv("registertrigger")
    assert answer["result"] == {"id": delivered["id"]}


async def test_engine_register_trigger_parks_unknown_type(engine: Engine) -> None:
    caller = await RawWorker.connect(engine.url)
    answer = await caller.result_of("engine::register_trigger",
                                    {"trigger_type": "later", "function_id": "x::y"})
    assert engine.triggers.bindings[answer["id"]].parked
    bad = await caller.call("engine::register_trigger", {"function_id": "x::y"})
    assert bad["error"]["code"] == "deserialization_error"


async def test_in_process_provider_seam(engine: Engine) -> None:
    bound: list[str] = []

    class Provider:
        def bind(self, binding: Binding) -> None:
            if binding.config == {"bad": True}:
                raise BindingRefused("bad config")
            bound.append(binding.id)

        def unbind(self, binding: Binding) -> None:
            bound.remove(binding.id)

    provider = Provider()
    engine.services.add_trigger_type(TriggerType("inproc", "default", "in-process",
                                                 provider=provider, worker_name="iii-test"))
    consumer = await _consumer(engine)
    await consumer.send(_bind("ok-1", type_id="inproc"))
    await consumer.send(_bind("bad-1", type_id="inproc", config={"bad": True}))
    refused = await consumer.recv("triggerregistrationresult")
    assert refused["id"] == "bad-1"
    assert refused["error"] == {"code": "trigger_registration_failed", "message": "bad config"}
    assert bound == ["ok-1"]
    await consumer.send({"type": "unregistertrigger", "id": "ok-1"})
    await wait_until(lambda: not bound)
    # A worker cannot take over an engine-provided type.
    await consumer.send({"type": "registertriggertype", "id": "inproc", "description": "x"})
    await consumer.send({"type": "ping"})
    await consumer.recv("pong")
    assert engine.triggers.types[("default", "inproc")].provider is provider


async def test_functions_available_fires_on_register_and_unregister(engine: Engine) -> None:
    watcher = await _consumer(engine, name="watcher", function_id="watch::fns")
    await watcher.send(_bind("fa", type_id="engine::functions-available",
                             function_id="watch::fns", metadata={"w": 1}))
    await wait_until(lambda: _active(engine, "fa"))
    await watcher.nothing("invokefunction", within=0.2)  # no initial snapshot
    other = await RawWorker.connect(engine.url)
    await other.register_function("new::fn", description="fresh")
    await other.register("other")
    fired = await watcher.serve_once(lambda f: {"result": None})
    assert fired["metadata"] == {"w": 1}
    assert fired["data"]["event"] == "functions_changed"
    listed = {(f["namespace"], f["function_id"]): f for f in fired["data"]["functions"]}
    assert listed[("default", "new::fn")] == {
        "function_id": "new::fn", "namespace": "default", "worker_name": "other",
        "description": "fresh"}
    assert ("default", "engine::functions::list") in listed
    await other.send({"type": "unregisterfunction", "id": "new::fn"})
    fired = await watcher.serve_once(lambda f: {"result": None})
    assert "new::fn" not in {f["function_id"] for f in fired["data"]["functions"]}


async def test_functions_available_coalesces_a_burst(engine: Engine) -> None:
    watcher = await _consumer(engine, name="watcher", function_id="watch::fns")
    await watcher.send(_bind("fa", type_id="engine::functions-available",
                             function_id="watch::fns"))
    await wait_until(lambda: _active(engine, "fa"))
    other = await RawWorker.connect(engine.url)
    for i in range(20):
        await other.register_function(f"burst::f{i}")
    await other.register("burst")
    fired = await watcher.serve_once()
    ids = {f["function_id"] for f in fired["data"]["functions"]}
    assert {f"burst::f{i}" for i in range(20)} <= ids
    await watcher.nothing("invokefunction", within=0.2)


async def test_functions_available_announces_each_change_well_before_the_rust_poll() -> None:
    """With the protocol's 5 s poll period as default, later changes are not held back by it."""
    async with Engine(port=0, namespace_grace_ms=300) as engine:
        watcher = await _consumer(engine, name="watcher", function_id="watch::fns")
        await watcher.send(_bind("fa", type_id="engine::functions-available",
                                 function_id="watch::fns"))
        await wait_until(lambda: _active(engine, "fa"))
        other = await RawWorker.connect(engine.url)
        await other.register("other")
        for i in range(3):
            await other.register_function(f"late::f{i}")
            # A 5 s throttle would miss this 2 s deadline from the second change on.
            fired = await watcher.serve_once(lambda f: {"result": None}, timeout=2.0)
            assert f"late::f{i}" in {f["function_id"] for f in fired["data"]["functions"]}
        await other.close()
        await watcher.close()


async def test_functions_available_spaces_large_lists_under_churn() -> None:
    """A churning registry pushed its whole function list to every binding every 100 ms
    (1000 functions, 20 watchers: 7 MB per watcher in 10 s). A notification now holds the next
    back until what it pushed to all bindings fits 1 MB/s: here a ~330 kB list to 3 bindings,
    so about one a second instead of ten, and the last change still reaches every watcher."""
    async with Engine(port=0, namespace_grace_ms=300, functions_available_poll_ms=3000) as engine:
        big = await RawWorker.connect(engine.url)
        for i in range(300):
            await big.register_function(f"big::f{i}", description="d" * 1000)
        await big.register("big")
        await wait_until(lambda: ("default", "big::f299") in engine.registry.functions)
        watchers = [await _consumer(engine, name=f"w{n}", function_id=f"watch{n}::fns")
                    for n in range(3)]
        for n, watcher in enumerate(watchers):
            await watcher.send(_bind(f"fa{n}", type_id="engine::functions-available",
                                     function_id=f"watch{n}::fns"))
        await wait_until(lambda: all(_active(engine, f"fa{n}") for n in range(3)))
        pushed: list[int] = []  # the size of each notification a watcher got
        final = "churn::f-last"
        saw_final = [asyncio.Event() for _ in watchers]

        async def count(n: int) -> None:
            while True:
                fired = await watchers[n].serve_once(lambda f: {"result": None}, timeout=30)
                pushed.append(len(json.dumps(fired["data"], separators=(",", ":"))))
                if final in {f["function_id"] for f in fired["data"]["functions"]}:
                    saw_final[n].set()

        counting = [asyncio.ensure_future(count(n)) for n in range(3)]
        churn = await RawWorker.connect(engine.url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(75):  # a change every 20 ms for 1.5 s: 15 notifications at 100 ms
            await churn.register_function(f"churn::f{i}")
            await asyncio.sleep(0.02)  # paces the churn; nothing to wait for
        await churn.register_function(final)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in saw_final)), 10)
        elapsed = loop.time() - started
        for task in counting:
            task.cancel()
        await asyncio.gather(*counting, return_exceptions=True)
        # A 4 MB burst, then 1 MB/s; the notification that spends the budget goes out whole.
        allowed = 4_000_000 + 1_000_000 * elapsed + 3 * max(pushed)
        assert sum(pushed) <= allowed * 1.1, (len(pushed), sum(pushed), elapsed)


async def test_workers_available_events(engine: Engine) -> None:
    watcher = await _consumer(engine, name="watcher", function_id="watch::workers")
    await watcher.send(_bind("wa", type_id="engine::workers-available",
                             function_id="watch::workers"))
    await wait_until(lambda: _active(engine, "wa"))
    other = await RawWorker.connect(engine.url)
    events = [(await watcher.serve_once())["data"]]
    await other.register("other")
    events.append((await watcher.serve_once())["data"])
    await other.close()
    events.append((await watcher.serve_once())["data"])
    assert events == [
        {"event": "worker_connected", "worker_id": other.worker_id},
        {"event": "worker_metadata_updated", "worker_id": other.worker_id},
        {"event": "worker_disconnected", "worker_id": other.worker_id},
    ]
