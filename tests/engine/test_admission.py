"""Registration hooks never hold a connection's reader: registrations are admitted in order
by the connection's admission task while its results, calls and pings go on being read."""

from __future__ import annotations

import asyncio
from typing import Any

from raw_engine_client import RawWorker, wait_until
from rbac_support import guarded_engine, raw, rbac

from iii_rx.engine import Engine
from iii_rx.engine.listeners import Listener


def _gated_hook(gate: asyncio.Event, asked: asyncio.Event) -> Any:
    """A function-registration hook that holds ``slow::`` ids until ``gate`` is set."""
    async def hook(data: dict[str, Any]) -> dict[str, Any]:
        if data["function_id"].startswith("slow::"):
            asked.set()
            await gate.wait()
        return {}
    return hook


async def _with_gated_hook(engine: Engine, client: Any, gate: asyncio.Event,
                           asked: asyncio.Event) -> RawWorker:
    client.register_function("t::gated", _gated_hook(gate, asked))
    await wait_until(lambda: ("default", "t::gated") in engine.registry.functions)
    worker = await raw(engine, "plain")
    await worker.register(name="gated")
    return worker


async def test_a_hook_served_by_the_registering_connection_admits_promptly() -> None:
    listener = Listener(port=0, rbac=rbac(on_trigger_type_registration_function_id="w::on-type",
                                          on_trigger_registration_function_id="w::on-trigger"))
    async with guarded_engine(listener) as (engine, _):
        worker = await raw(engine, "admin")
        await worker.register(name="self-hooked")
        for function_id in ("w::on-type", "w::on-trigger", "pub::target"):
            await worker.register_function(function_id)
        await worker.send({"type": "registertriggertype", "id": "tt-mine", "description": "m"})
        await worker.send({"type": "registertrigger", "id": "t-mine", "trigger_type": "cron",
                           "function_id": "pub::target",
                           "config": {"expression": "0 0 1 1 *"}})
        await worker.register_function("pub::after")
        asked = [await worker.serve_once(lambda frame: {"result": {}}) for _ in range(2)]
        assert [frame["function_id"] for frame in asked] == ["w::on-type", "w::on-trigger"]
        # well within the hooks' 30 s bound: the hooks' answers were read meanwhile
        await wait_until(lambda: ("default", "tt-mine") in engine.triggers.types
                         and "t-mine" in engine.triggers.bindings
                         and ("default", "pub::after") in engine.registry.functions, 5.0)


async def test_a_slow_hook_leaves_the_connection_answering_calls() -> None:
    gate, asked = asyncio.Event(), asyncio.Event()
    listener = Listener(port=0, rbac=rbac(on_function_registration_function_id="t::gated"))
    async with guarded_engine(listener) as (engine, trusted):
        worker = await _with_gated_hook(engine, trusted.client, gate, asked)
        await worker.register_function("pub::served")
        await wait_until(lambda: ("default", "pub::served") in engine.registry.functions)
        await worker.register_function("slow::one")
        await worker.register_function("pub::behind")  # queued behind the held one
        await asyncio.wait_for(asked.wait(), 5)

        async def call_it() -> Any:
            return await trusted.client.trigger("pub::served", {"q": 1})

        call = asyncio.create_task(call_it())
        frame = await worker.serve_once()
        assert frame["function_id"] == "pub::served"
        assert (await asyncio.wait_for(call, 5))["q"] == 1  # its result was read
        await worker.send({"type": "ping"})
        await worker.recv("pong")
        functions = engine.registry.functions
        assert ("default", "slow::one") not in functions
        assert ("default", "pub::behind") not in functions  # order kept

        gate.set()
        await wait_until(lambda: ("default", "slow::one") in functions
                         and ("default", "pub::behind") in functions)


async def test_registrations_pending_at_close_are_dropped() -> None:
    gate, asked = asyncio.Event(), asyncio.Event()
    listener = Listener(port=0, rbac=rbac(on_function_registration_function_id="t::gated"))
    async with guarded_engine(listener) as (engine, trusted):
        worker = await _with_gated_hook(engine, trusted.client, gate, asked)
        worker_id = worker.hello["worker_id"]
        await worker.register_function("slow::gone")
        await worker.register_function("pub::queued")
        await asyncio.wait_for(asked.wait(), 5)
        await worker.close()
        await wait_until(lambda: worker_id not in engine.registry.workers)
        await wait_until(lambda: not [task for task in asyncio.all_tasks()
                                      if task.get_name().startswith("admission ")])
        gate.set()
        # the hook's late answer travels before this call's on the trusted connection
        assert (await trusted.client.trigger("pub::echo", {"n": 1}))["echo"]["n"] == 1
        functions = engine.registry.functions
        assert ("default", "slow::gone") not in functions
        assert ("default", "pub::queued") not in functions
