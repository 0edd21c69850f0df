"""The engine::* discovery functions (docs/protocol.md §8) and their shapes."""

from __future__ import annotations

from typing import Any

import pytest
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine

BUILTIN_WORKERS = {"iii-state", "iii-pubsub", "iii-cron", "iii-observability", "iii-queue",
                   "iii-stream"}
"""The engine's built-in workers (docs/engine.md): always there, left out of these lists."""


def without_builtins(rows: list[dict[str, Any]], key: str = "worker_name") -> list[dict[str, Any]]:
    return [row for row in rows if row.get(key) not in BUILTIN_WORKERS]


@pytest.fixture
async def world(engine: Engine) -> dict[str, RawWorker]:
    """A provider of type ``hook``, a worker with two functions bound to it, a caller."""
    provider = await RawWorker.connect(engine.url)
    await provider.send({"type": "registertriggertype", "id": "hook", "description": "Hooks",
                         "trigger_request_format": {"type": "object"},
                         "call_request_format": {"type": "string"}})
    await provider.register("hooks", pid=10, description="hook provider")
    worker = await RawWorker.connect(engine.url)
    await worker.register_function("orders::create", description="Create an order",
                                   request_format={"type": "object"},
                                   response_format={"type": "integer"}, metadata={"team": "a"})
    await worker.register_function("orders::secret", metadata={"internal": True})
    await worker.register_function("billing::state_sync", description="mentions state")
    await worker.send({"type": "registertrigger", "id": "b-1", "trigger_type": "hook",
                       "function_id": "orders::create", "config": {"path": "/" + "x" * 100}})
    await worker.register("orders-worker", pid=11, runtime="python", version="0.25.0",
                          os="Linux", isolation=None)
    nameless = await RawWorker.connect(engine.url)
    await nameless.register(None, pid=None)  # no pid: hidden from workers::list
    caller = await RawWorker.connect(engine.url)
    await wait_until(lambda: "b-1" in engine.triggers.bindings
                     and not engine.triggers.bindings["b-1"].parked)
    await provider.recv("registertrigger")
    return {"provider": provider, "worker": worker, "caller": caller}


async def test_functions_list(engine: Engine, world: dict[str, RawWorker]) -> None:
    caller = world["caller"]
    listed = without_builtins(
        (await caller.result_of("engine::functions::list", {}))["functions"])
    assert [f["function_id"] for f in listed] == ["billing::state_sync", "orders::create"]
    assert listed[1] == {"function_id": "orders::create", "namespace": "default",
                         "worker_name": "orders-worker", "description": "Create an order",
                         "metadata": {"team": "a"}}
    everything = await caller.result_of("engine::functions::list", {"include_internal": True})
    ids = {f["function_id"]: f for f in everything["functions"]}
    assert ids["engine::functions::list"]["worker_name"] == "iii-engine-functions"
    assert "orders::secret" in ids
    prefixed = await caller.result_of("engine::functions::list", {"prefix": "orders::"})
    assert [f["function_id"] for f in prefixed["functions"]] == ["orders::create"]
    by_worker = await caller.result_of("engine::functions::list", {"workers": ["nobody"],
                                                                   "worker": "orders-worker"})
    assert len(by_worker["functions"]) == 2
    searched = await caller.result_of("engine::functions::list", {"search": "STATE"})
    assert [f["function_id"] for f in without_builtins(searched["functions"])] == [
        "billing::state_sync"]


async def test_functions_info(engine: Engine, world: dict[str, RawWorker]) -> None:
    caller = world["caller"]
    detail = await caller.result_of("engine::functions::info", {"function_id": "orders::create"})
    assert detail == {
        "function_id": "orders::create", "namespace": "default", "worker_name": "orders-worker",
        "description": "Create an order", "request_schema": {"type": "object"},
        "response_schema": {"type": "integer"}, "metadata": {"team": "a"},
        "registered_triggers": [{"id": "b-1", "trigger_type": "hook",
                                 "config": {"path": "/" + "x" * 100}}]}
    batch = await caller.result_of("engine::functions::info",
                                   {"function_ids": ["orders::create", "nope", "nope"]})
    assert [f["function_id"] for f in batch["functions"]] == ["orders::create", "nope"]
    assert batch["functions"][1] == {"function_id": "nope", "error": "not_found"}
    missing = await caller.call("engine::functions::info", {"function_id": "nope"})
    assert missing["error"] == {"code": "NOT_FOUND",
                                "message": "Function 'nope' is not registered."}
    both = await caller.call("engine::functions::info", {})
    assert both["error"]["code"] == "INVALID_ARGUMENTS"
    too_many = await caller.call("engine::functions::info",
                                 {"function_ids": [str(i) for i in range(33)]})
    assert too_many["error"]["code"] == "INVALID_ARGUMENTS"


async def test_functions_info_namespaces(engine: Engine) -> None:
    caller = await RawWorker.connect(engine.url)
    for ns in ("a", "b"):
        worker = await RawWorker.connect(engine.url)
        await worker.register_function("dup::f")
        await worker.register(f"w-{ns}", namespace=ns)
    await wait_until(lambda: len(engine.registry.namespaces_of("dup::f")) == 2)
    ambiguous = await caller.call("engine::functions::info", {"function_id": "dup::f"})
    assert ambiguous["error"]["code"] == "NOT_FOUND"
    assert "ambiguous" in ambiguous["error"]["message"]
    chosen = await caller.result_of("engine::functions::info",
                                    {"function_id": "dup::f", "namespace": "b"})
    assert chosen["namespace"] == "b" and chosen["worker_name"] == "w-b"
    miss = await caller.call("engine::functions::info", {"function_id": "dup::f",
                                                         "namespace": "c"})
    assert "a, b" in miss["error"]["message"]


async def test_triggers_list_and_info(engine: Engine, world: dict[str, RawWorker]) -> None:
    caller = world["caller"]
    listed = await caller.result_of("engine::triggers::list", {})
    listed["triggers"] = without_builtins(listed["triggers"])
    assert listed == {"triggers": [{"id": "hook", "namespace": "default",
                                    "worker_name": "hooks", "description": "Hooks"},
                                   {"id": "http", "namespace": "default",
                                    "worker_name": "iii-http", "description": "HTTP API trigger"}]}
    internal = await caller.result_of("engine::triggers::list", {"include_internal": True})
    assert {t["id"] for t in without_builtins(internal["triggers"])} == {
        "hook", "http", "engine::functions-available", "engine::workers-available"}
    info = await caller.result_of("engine::triggers::info", {"id": "hook"})
    assert info == {"id": "hook", "namespace": "default", "worker_name": "hooks",
                    "description": "Hooks", "configuration_schema": {"type": "object"},
                    "request_schema": {"type": "string"}, "instance_count": 1}
    missing = await caller.call("engine::triggers::info", {"id": "nope"})
    assert missing["error"]["code"] == "NOT_FOUND"


async def test_registered_triggers(engine: Engine, world: dict[str, RawWorker]) -> None:
    caller = world["caller"]
    listed = (await caller.result_of("engine::registered-triggers::list", {}))[
        "registered_triggers"]
    assert len(listed) == 1
    row = listed[0]
    assert row["id"] == "b-1" and row["worker_name"] == "orders-worker"
    assert row["config_summary"].endswith("…") and len(row["config_summary"]) == 81
    assert (await caller.result_of("engine::registered-triggers::list",
                                   {"trigger_type": "other"}))["registered_triggers"] == []
    info = await caller.result_of("engine::registered-triggers::info", {"id": "b-1"})
    assert info["trigger"]["id"] == "hook" and info["function"]["function_id"] == (
        "orders::create")
    assert "config_summary" not in info
    missing = await caller.call("engine::registered-triggers::info", {"id": "x"})
    assert missing["error"]["code"] == "NOT_FOUND"


async def test_workers_list_and_info(engine: Engine, world: dict[str, RawWorker]) -> None:
    caller = world["caller"]
    workers = without_builtins((await caller.result_of("engine::workers::list", {}))["workers"],
                               "name")
    assert [w["name"] for w in workers] == ["hooks", "iii-engine-functions", "iii-http",
                                            "orders-worker"]
    orders = workers[3]
    assert set(orders) == {"name", "description", "version", "id", "namespace", "runtime",
                           "os", "status", "function_count", "connected_at_ms",
                           "active_invocations", "isolation", "ip_address"}
    assert orders["id"] == world["worker"].worker_id
    assert orders["function_count"] == 3 and orders["status"] == "connected"
    assert orders["runtime"] == "python" and orders["isolation"] is None
    assert workers[1]["runtime"] == "engine" and workers[1]["status"] == "available"
    only_python = await caller.result_of("engine::workers::list", {"runtime": "python"})
    assert [w["name"] for w in only_python["workers"]] == ["orders-worker"]
    info = await caller.result_of("engine::workers::info", {"name": "orders-worker"})
    assert info["worker"]["pid"] == 11 and info["worker"]["internal"] is False
    assert {f["function_id"] for f in info["functions"]} == {
        "orders::create", "orders::secret", "billing::state_sync"}
    assert [t["id"] for t in info["registered_triggers"]] == ["b-1"]
    provider = await caller.result_of("engine::workers::info", {"name": "hooks"})
    assert [t["id"] for t in provider["trigger_types"]] == ["hook"]
    builtin = await caller.result_of("engine::workers::info", {"name": "iii-engine-functions"})
    assert builtin["worker"]["internal"] is True
    assert len(builtin["functions"]) >= 12
    missing = await caller.call("engine::workers::info", {"name": "ghost"})
    assert missing["error"] == {"code": "NOT_FOUND", "message": "Worker 'ghost' is not connected."}


async def test_non_object_input_is_a_deserialization_error(engine: Engine) -> None:
    caller = await RawWorker.connect(engine.url)
    for function_id in ("engine::functions::list", "engine::workers::list",
                        "engine::channels::create", "engine::register_trigger"):
        for data in (None, [1], "x", 3):
            answer = await caller.call(function_id, data)
            assert answer["error"]["code"] == "deserialization_error", answer
            assert answer["error"]["message"].startswith(
                f"Failed to deserialize input for {function_id}: ")


async def test_channels_create_goes_to_the_hub(engine: Engine) -> None:
    caller = await RawWorker.connect(engine.url)
    answer = await caller.call("engine::channels::create", {"buffer_size": None})
    if "error" in answer:  # the hub may still be the stub: its failure is an error result
        assert answer["error"]["code"] == "invocation_failed"
    else:
        refs = answer["result"]
        assert refs["writer"]["direction"] == "write" and refs["reader"]["direction"] == "read"
        assert refs["writer"]["channel_id"] == refs["reader"]["channel_id"]
    bad = await caller.call("engine::channels::create", {"buffer_size": "big"})
    assert bad["error"]["code"] == "deserialization_error"
