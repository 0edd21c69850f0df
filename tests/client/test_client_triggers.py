"""Triggers: bindings (consumer side) and trigger types (provider side), with handles."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from client_helpers import ENGINE_TIMERS, wait_for

import iii_rx
from iii_rx import ConnectionState, ReconnectConfig
from iii_rx.engine import Engine
from iii_rx.triggers import TriggerConfig

FAST = ReconnectConfig(initial_delay_ms=20, max_delay_ms=200)


async def test_provider_gets_bindings_and_fires_them(engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name="provider-1") as provider, \
            iii_rx.connect(engine.url, name="consumer-1", namespace="team") as consumer:
        registered: list[TriggerConfig] = []
        removed: list[TriggerConfig] = []

        async def on_register(config: TriggerConfig) -> None:
            registered.append(config)

        type_handle = provider.register_trigger_type(
            "webhook", "incoming webhooks", on_register, removed.append)
        fired: list[tuple[Any, Any]] = []
        consumer.register_function("team::on_hook",
                                   lambda data, metadata: fired.append((data, metadata)) or "ok")
        handle = consumer.register_trigger({"type": "webhook", "function_id": "team::on_hook",
                                            "config": {"path": "/x"}, "metadata": {"m": 1}})
        await wait_for(lambda: len(registered) == 1)
        config = registered[0]
        assert config.id == handle.id
        assert config.function_id == "team::on_hook"
        assert config.config == {"path": "/x"}
        assert config.metadata == {"m": 1}
        assert config.namespace == "team"  # the consumer's namespace, filled in
        assert handle.id in type_handle.bindings

        # The provider fires the binding with an ordinary call.
        result = await provider.trigger(config.function_id, {"event": 1},
                                        namespace=config.namespace, metadata=config.metadata)
        assert result == "ok"
        data, metadata = fired[0]
        assert data.pop("_caller_worker_id") == provider.worker_id
        assert (data, metadata) == ({"event": 1}, {"m": 1})

        handle.unregister()
        await wait_for(lambda: len(removed) == 1)
        assert removed[0].id == handle.id
        assert removed[0].function_id == "team::on_hook"  # looked up by id
        assert handle.id not in type_handle.bindings
        type_handle.unregister()


async def test_config_defaults_to_empty_object(engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name="provider-2") as provider:
        configs: list[Any] = []
        provider.register_trigger_type("plain", "no config", lambda c: configs.append(c.config))
        provider.register_function("p::f", lambda x: x)
        handle = provider.register_trigger(type="plain", function_id="p::f")
        await wait_for(lambda: configs == [{}])
        assert handle.binding.config == {}


async def test_sync_provider_that_raises_rejects_the_binding(engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name="provider-3") as provider, \
            iii_rx.connect(engine.url, name="consumer-3") as consumer:
        attempts: list[str] = []

        def refuse(config: TriggerConfig) -> None:
            attempts.append(config.id)
            raise ValueError("bad config")

        type_handle = provider.register_trigger_type("strict", "refuses", refuse)
        consumer.register_function("c::f", lambda x: x)
        handle = consumer.register_trigger({"type": "strict", "function_id": "c::f"})
        await wait_for(lambda: attempts == [handle.id])
        await wait_for(lambda: handle.error is not None, what="the refusal forwarded")
        assert isinstance(handle.error, iii_rx.IIIInvocationError)
        assert handle.error.code == "trigger_registration_failed"
        assert "bad config" in handle.error.message
        assert handle.id not in type_handle.bindings


async def test_built_in_trigger_type(engine: Engine, name: str,
                                     official: Callable[..., Awaitable[Any]]) -> None:
    """``engine::functions-available`` fires when a function appears (config sent as {})."""
    async with iii_rx.connect(engine.url, name=name) as iii:
        events: list[Any] = []
        got = asyncio.Event()

        def on_change(data: Any) -> None:
            events.append(data)
            got.set()

        iii.register_function("watch::functions", on_change)
        handle = iii.register_trigger({"type": "engine::functions-available",
                                       "function_id": "watch::functions"})
        await asyncio.sleep(0.1)
        peer = await official(engine.url)
        peer.register_function("peer::new", lambda x: x)
        await asyncio.wait_for(got.wait(), 5)
        assert events
        handle.unregister()


async def test_refused_bindings_log_a_bounded_number_of_escaped_lines(
        engine: Engine, caplog: Any) -> None:
    """Every refusal was one WARNING, again on each reconnect's replay (1000 bad bindings made
    2000 lines after one reconnect), and the provider's message went out unescaped: a newline
    in it forged a second log line."""
    async with iii_rx.connect(engine.url, name="provider-4") as provider, \
            iii_rx.connect(engine.url, name="consumer-4") as consumer:
        def refuse(config: TriggerConfig) -> None:
            raise ValueError("bad config\nFORGED line")

        provider.register_trigger_type("picky", "refuses", refuse)
        consumer.register_function("c::g", lambda x: x)
        caplog.set_level("WARNING", logger="iii_rx.registrations")
        handles = [consumer.register_trigger({"type": "picky", "function_id": "c::g"})
                   for _ in range(40)]
        await wait_for(lambda: all(h.error is not None for h in handles),
                       what="every refusal forwarded")
        lines = [r.getMessage() for r in caplog.records if r.name == "iii_rx.registrations"]
        # At most a burst and one "held back" line (fewer if an earlier test of this
        # process used the window up).
        assert len([line for line in lines if "was refused" in line]) <= 10, lines
        assert len(lines) <= 11, lines
        assert all("\n" not in line for line in lines), lines


async def test_a_binding_removed_while_its_provider_was_away_is_retracted(name: str) -> None:
    first = Engine(port=0, **ENGINE_TIMERS)
    await first.start()
    port = first.port
    second: Engine | None = None
    try:
        async with iii_rx.connect(first.url, name=name, reconnect=FAST) as provider, \
                iii_rx.connect(first.url, name=f"{name}-b", reconnect=FAST) as binder:
            events: list[tuple[str, str]] = []
            ticks = provider.register_trigger_type(
                "tick", "ticks", lambda c: events.append(("register", c.id)),
                lambda c: events.append(("unregister", c.id)))
            binder.register_function("b::f", lambda data: data)
            gone = binder.register_trigger({"type": "tick", "function_id": "b::f"})
            kept = binder.register_trigger({"type": "tick", "function_id": "b::f",
                                            "config": {"k": 1}})
            await wait_for(lambda: set(ticks.bindings) == {gone.id, kept.id})
            await first.stop()
            await wait_for(lambda: provider.connection_state is ConnectionState.RECONNECTING)
            gone.unregister()  # while away: the new engine never hears of it
            second = Engine(port=port, **ENGINE_TIMERS)
            await second.start()
            await wait_for(lambda: provider.connection_state is ConnectionState.CONNECTED
                           and binder.connection_state is ConnectionState.CONNECTED
                           and ("unregister", gone.id) in events and kept.id in ticks.bindings)
            assert set(ticks.bindings) == {kept.id}
            assert [kind for kind, i in events if i == gone.id] == ["register", "unregister"]
    finally:
        await first.stop()
        if second is not None:
            await second.stop()


async def test_a_trigger_type_no_longer_provided_retracts_its_bindings(engine: Engine,
                                                                        name: str) -> None:
    async with iii_rx.connect(engine.url, name=name) as provider:
        removed: list[str] = []
        ticks = provider.register_trigger_type("tick", "ticks", None,
                                               lambda c: removed.append(c.id))
        provider.register_function("p::f", lambda data: data)
        binding = provider.register_trigger({"type": "tick", "function_id": "p::f"})
        await wait_for(lambda: binding.id in ticks.bindings)
        ticks.unregister()
        await wait_for(lambda: removed == [binding.id])
        assert ticks.bindings == {}
