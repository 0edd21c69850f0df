"""Extensions and the services interface; the engine's task ownership and its loop thread."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from raw_engine_client import RawWorker, wait_until

from iii_rx.engine import Engine, EngineServices
from iii_rx.engine.registry import CallContext
from iii_rx.engine.triggers import Binding, TriggerType
from iii_rx.errors import IIIInvocationError, LoopDeadlockError


class Counter:
    """A built-in worker written against the services only."""

    def __init__(self) -> None:
        self.services: EngineServices | None = None
        self.count = 0
        self.events: list[str] = []

    async def start(self, services: EngineServices) -> None:
        self.events.append("start")
        self.services = services
        services.add_worker("iii-counter", "Counts calls")

        async def incr(data: Any, ctx: CallContext) -> int:
            self.count += 1
            return self.count

        async def fail(data: Any, ctx: CallContext) -> None:
            raise IIIInvocationError("nope", "refused on purpose")

        services.add_function("counter::incr", incr, worker="iii-counter",
                              description="Add one")
        services.add_function("counter::fail", fail, worker="iii-counter")

    async def stop(self) -> None:
        self.events.append("stop")


class Ticks:
    """An in-process trigger type whose bindings fire through the services."""

    def __init__(self, services: EngineServices) -> None:
        self.services = services
        self.bindings: dict[str, Binding] = {}

    def bind(self, binding: Binding) -> None:
        self.bindings[binding.id] = binding

    def unbind(self, binding: Binding) -> None:
        self.bindings.pop(binding.id, None)

    def tick(self, n: int) -> None:
        for binding in self.bindings.values():
            self.services.fire(binding.function_id, {"n": n}, namespace=binding.namespace,
                               metadata=binding.metadata)


async def test_an_extension_gets_the_services_and_serves_workers() -> None:
    counter = Counter()
    engine = Engine(port=0, namespace_grace_ms=100)
    engine.add_extension(counter)
    async with engine:
        services = counter.services
        assert services is engine.services and not isinstance(services, Engine)
        worker = await RawWorker.connect(engine.url)
        assert await worker.result_of("counter::incr", {}) == 1
        assert await services.call("counter::incr") == 2
        failed = await worker.call("counter::fail", {})
        assert failed["error"]["code"] == "nope"
        listed = await worker.result_of("engine::workers::list", {})
        names = {w["name"]: w for w in listed["workers"]}
        assert names["iii-counter"]["runtime"] == "engine"
        assert names["iii-counter"]["function_count"] == 2
        info = await worker.result_of("engine::functions::info", {"function_id": "counter::incr"})
        assert info["worker_name"] == "iii-counter" and info["description"] == "Add one"
        # A worker cannot take a function the extension provides.
        await worker.register_function("counter::incr")
        await worker.register("intruder")
        rejected = await worker.recv("registrationrejected")
        assert rejected["function_id"] == "counter::incr"
        assert services.remove_function("counter::incr", worker="iii-counter")
        assert not services.remove_function("counter::incr", worker="iii-counter")
        answer = await worker.call("counter::incr", {})
        assert answer["error"]["code"] == "function_not_found"
        await worker.close()
        assert counter.events == ["start"]
    assert counter.events == ["start", "stop"]


async def test_add_function_refuses_a_key_held_by_someone_else(engine: Engine) -> None:
    async def handler(data: Any, ctx: CallContext) -> Any:
        return data

    engine.services.add_function("mine::f", handler, worker="one")
    engine.services.add_function("mine::f", handler, worker="one")  # same worker: replaced
    with pytest.raises(ValueError, match="already registered"):
        engine.services.add_function("mine::f", handler, worker="two")
    with pytest.raises(ValueError, match="already registered"):
        engine.services.add_function("engine::functions::list", handler, worker="two")
    worker = await RawWorker.connect(engine.url)
    await worker.register_function("theirs::f")
    await worker.register("theirs")
    await wait_until(lambda: ("default", "theirs::f") in engine.registry.functions)
    with pytest.raises(ValueError, match="theirs"):
        engine.services.add_function("theirs::f", handler, worker="one")
    assert not engine.services.remove_function("theirs::f", worker="one")
    await worker.close()


async def test_an_in_process_trigger_type_fires_through_the_services(engine: Engine) -> None:
    ticks = Ticks(engine.services)
    ticks_type = TriggerType("tick", "default", "Ticks", provider=ticks, worker_name="iii-ticks")
    engine.services.add_worker("iii-ticks")
    engine.services.add_trigger_type(ticks_type)
    worker = await RawWorker.connect(engine.url)
    await worker.register_function("w::on_tick")
    await worker.send({"type": "registertrigger", "id": "t1", "trigger_type": "tick",
                       "function_id": "w::on_tick", "config": {}, "metadata": {"m": 1}})
    await worker.register("ticker")
    await wait_until(lambda: "t1" in ticks.bindings)
    ticks.tick(7)
    invoked = await worker.serve_once()
    assert invoked["function_id"] == "w::on_tick"
    assert invoked["data"] == {"n": 7}
    assert invoked["metadata"] == {"m": 1}
    assert engine.services.remove_trigger_type(ticks_type)
    assert not engine.services.remove_trigger_type(ticks_type)
    assert engine.triggers.bindings["t1"].parked  # kept until a provider comes back
    await worker.close()


async def test_add_trigger_type_needs_an_in_process_provider(engine: Engine) -> None:
    with pytest.raises(ValueError, match="in-process provider"):
        engine.services.add_trigger_type(TriggerType("none", "default", "no provider"))


async def test_the_rest_port_is_the_bound_one() -> None:
    engine = Engine(port=0)
    assert engine.rest_port is None
    async with engine:
        assert isinstance(engine.rest_port, int) and engine.rest_port > 0


async def test_a_crashed_engine_task_is_logged_and_stop_awaits_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    cancelled = asyncio.Event()

    async def crash() -> None:
        raise RuntimeError("boom")

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async with Engine(port=0) as engine:
        with caplog.at_level(logging.ERROR, logger="iii_rx.aio"):
            engine.router.spawn(crash(), name="crasher")
            await asyncio.sleep(0.01)
        assert any("crasher" in r.getMessage() and r.exc_info for r in caplog.records)
        engine.router.spawn(forever())
        await asyncio.sleep(0)
    assert cancelled.is_set()


def test_engine_thread_refuses_a_blocking_call_on_its_own_loop() -> None:
    with Engine.start_in_thread(namespace_grace_ms=50) as handle:
        async def on_loop() -> str:
            try:
                handle.call("engine::workers::list", {})
            except LoopDeadlockError as exc:
                return str(exc)
            return "no error"

        message = asyncio.run_coroutine_threadsafe(on_loop(), handle.loop).result(5)
        assert "deadlock" in message
        assert handle.call("engine::workers::list", {})["workers"]
    handle.stop()  # idempotent
    assert handle.loop.is_closed()
