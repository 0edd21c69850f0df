"""Reconnecting: engine restarts, replay, calls queued while disconnected, calls lost."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from client_helpers import ENGINE_TIMERS, wait_for

import iii_rx
from iii_rx import ConnectionState, IIIConnectionError, IIIInvocationError, ReconnectConfig
from iii_rx.engine import Engine

FAST = ReconnectConfig(initial_delay_ms=20, max_delay_ms=200)


async def test_engine_restart_reconnects_and_replays(name: str) -> None:
    first = Engine(port=0, **ENGINE_TIMERS)
    await first.start()
    port = first.port
    try:
        async with iii_rx.connect(first.url, name=name, reconnect=FAST) as iii:
            states: list[ConnectionState] = []
            iii.state.subscribe(states.append)
            provided: list[str] = []
            iii.register_trigger_type("rc::tick", "ticks", on_register=lambda c:
                                      provided.append(c.id))
            trigger = iii.register_trigger({"type": "rc::tick", "function_id": "rc::double"})
            iii.register_function("rc::double", lambda x: x * 2)
            await wait_for(lambda: provided == [trigger.id])
            assert await iii.trigger("rc::double", 2) == 4
            old_worker = iii.worker_id

            await first.stop()
            await wait_for(lambda: iii.connection_state is ConnectionState.RECONNECTING)
            queued = asyncio.ensure_future(iii.trigger("rc::double", 5))  # made while away
            await asyncio.sleep(0.05)
            assert not queued.done()

            second = Engine(port=port, **ENGINE_TIMERS)
            await second.start()
            try:
                await wait_for(lambda: iii.connection_state is ConnectionState.CONNECTED)
                assert states == [ConnectionState.CONNECTED, ConnectionState.RECONNECTING,
                                  ConnectionState.CONNECTED]
                assert await asyncio.wait_for(queued, 5) == 10
                assert await iii.trigger("rc::double", 21) == 42  # replayed, no user code
                assert iii.worker_id != old_worker
                # the trigger binding came back with the same id, to the re-registered type
                await wait_for(lambda: provided == [trigger.id, trigger.id])
            finally:
                await iii.close()
                await second.stop()
    finally:
        await first.stop()


async def test_calls_in_flight_when_the_connection_drops(name: str) -> None:
    engine = Engine(port=0, **ENGINE_TIMERS)
    await engine.start()
    try:
        async with iii_rx.connect(engine.url, name=name,
                                  reconnect=ReconnectConfig(initial_delay_ms=60_000)) as iii:
            held: list[Any] = []
            iii.function("rc::hold").subscribe(held.append)
            call = asyncio.ensure_future(iii.trigger("rc::hold"))
            await wait_for(lambda: bool(held))
            await engine.stop()
            with pytest.raises(IIIInvocationError) as info:
                await asyncio.wait_for(call, 5)
            assert info.value.code == "invocation_stopped"
            assert "connection" in info.value.message
            held.clear()
    finally:
        await engine.stop()


async def test_bounded_queue_while_disconnected(name: str) -> None:
    engine = Engine(port=0, **ENGINE_TIMERS)
    await engine.start()
    config = ReconnectConfig(initial_delay_ms=60_000, max_queued=2)
    iii = await iii_rx.connect(engine.url, name=name, reconnect=config)
    try:
        await engine.stop()
        await wait_for(lambda: iii.connection_state is ConnectionState.RECONNECTING)
        queued = [asyncio.ensure_future(iii.trigger("rc::any", i)) for i in range(2)]
        await wait_for(lambda: iii.pending_calls == 2)
        with pytest.raises(IIIConnectionError, match="max_queued"):
            await iii.trigger("rc::any", 3)
        await iii.close()
        for call in queued:
            with pytest.raises(IIIConnectionError, match="closed"):
                await call
    finally:
        await iii.close()
        await engine.stop()


def test_backoff_schedule() -> None:
    config = ReconnectConfig(initial_delay_ms=1000, max_delay_ms=30000, jitter_factor=0.3)
    for attempt, base in ((0, 1.0), (1, 2.0), (3, 8.0), (10, 30.0)):
        delays = [config.delay(attempt) for _ in range(200)]
        assert all(base * 0.7 - 1e-9 <= d <= base * 1.3 + 1e-9 for d in delays)
        assert max(delays) - min(delays) > base * 0.1  # jitter spreads them
    assert ReconnectConfig(jitter_factor=0).delay(2) == 4.0
    # a large multiplier reaches the cap: it overflowed, which ended the reconnect loop
    assert ReconnectConfig(backoff_multiplier=1e10, jitter_factor=0).delay(40) == 30.0


async def test_what_cannot_be_sent_is_not_registered_and_never_stops_a_reconnect(
        name: str, caplog: pytest.LogCaptureFixture) -> None:
    """A registration refused for a value the wire cannot carry keeps nothing (the id stays
    free); metadata made unsendable in place after registering costs that registration only
    on the next connection, not the reconnect."""
    first = Engine(port=0, **ENGINE_TIMERS)
    await first.start()
    port = first.port
    second = Engine(port=port, **ENGINE_TIMERS)
    try:
        async with iii_rx.connect(first.url, name=name, reconnect=FAST) as iii:
            with pytest.raises(ValueError):
                iii.register_function("rc::bad", lambda x: x, description=5)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                iii.register_trigger({"type": "rc::tick", "function_id": "rc::ok",
                                      "config": object()})
            with pytest.raises(ValueError):
                iii.register_trigger_type("rc::tick", object())  # type: ignore[arg-type]
            assert iii.function_ids == []
            iii.register_function("rc::bad", lambda x: x + 1)  # the id is free
            mutable: dict[str, Any] = {"owner": "team"}
            iii.register_function("rc::mutated", lambda x: x, metadata=mutable)
            assert await iii.trigger("rc::bad", 1) == 2

            mutable["oops"] = object()
            await first.stop()
            await wait_for(lambda: iii.connection_state is ConnectionState.RECONNECTING)
            await second.start()
            await wait_for(lambda: iii.connection_state is ConnectionState.CONNECTED)
            assert await iii.trigger("rc::bad", 41) == 42
            assert "cannot register 'rc::mutated' again" in caplog.text
    finally:
        await first.stop()
        await second.stop()


async def test_invocations_waiting_for_a_slot_when_the_connection_drops_do_not_run(
        name: str) -> None:
    """The engine tells their callers ``invocation_stopped`` when the connection drops; they
    used to run after the reconnect all the same (answers going nowhere, a retrying caller
    running the handler twice) while fresh calls queued behind them."""
    first = Engine(port=0, **ENGINE_TIMERS)
    await first.start()
    port = first.port
    second = Engine(port=port, **ENGINE_TIMERS)
    try:
        async with iii_rx.connect(first.url, name=name, reconnect=FAST) as iii, \
                iii_rx.connect(first.url, name=f"{name}-caller", reconnect=FAST) as caller:
            runs: list[Any] = []
            release = asyncio.Event()

            async def slow(data: Any) -> Any:
                runs.append(data)
                if data == 0:
                    await release.wait()
                return data

            iii.register_function("bk::slow", slow, max_concurrency=1)
            arrived: list[Any] = []
            iii.invocations.subscribe(arrived.append)
            await caller.wait_for_function("bk::slow", timeout=5)
            void = ("void", "made while the first ran")  # no caller: it still runs
            calls = [asyncio.ensure_future(caller.trigger("bk::slow", n)) for n in range(4)]
            await wait_for(lambda: len(arrived) == 4, what="the calls at the worker")
            await caller.trigger("bk::slow", list(void), action=iii_rx.TriggerAction.void())
            await wait_for(lambda: len(arrived) == 5 and runs == [0],
                           what=f"5 invocations, 1 running: {len(arrived)}, {runs}")

            await first.stop()
            for call in calls:
                with pytest.raises(IIIInvocationError) as info:
                    await asyncio.wait_for(call, 5)
                assert info.value.code == "invocation_stopped"
            await second.start()
            await wait_for(lambda: iii.connection_state is ConnectionState.CONNECTED
                           and caller.connection_state is ConnectionState.CONNECTED)
            release.set()
            assert await asyncio.wait_for(caller.trigger("bk::slow", "fresh"), 5) == "fresh"
            assert runs == [0, list(void), "fresh"]
    finally:
        await first.stop()
        await second.stop()


async def test_a_reconnection_is_logged_with_how_long_the_worker_was_away(
        name: str, caplog: pytest.LogCaptureFixture) -> None:
    """The loss and every failed attempt were logged, the recovery was not: a log ending in
    "refused: is the engine running?" never said that the worker was back."""
    first = Engine(port=0, **ENGINE_TIMERS)
    await first.start()
    second = Engine(port=first.port, **ENGINE_TIMERS)
    try:
        with caplog.at_level(logging.INFO, logger="iii_rx.transport"):
            async with iii_rx.connect(first.url, name=name, reconnect=FAST) as iii:
                assert "reconnected" not in caplog.text  # the first connection is not one
                await first.stop()
                await wait_for(lambda: iii.connection_state is ConnectionState.RECONNECTING)
                await second.start()
                await wait_for(lambda: iii.connection_state is ConnectionState.CONNECTED)
                back = [r for r in caplog.records if "reconnected" in r.getMessage()]
                assert len(back) == 1 and back[0].levelno == logging.INFO
                assert re.fullmatch(
                    rf"reconnected to {re.escape(iii.url)}: the engine accepted this worker "
                    r"again \d+\.\ds after the connection was lost", back[0].getMessage())
    finally:
        await first.stop()
        await second.stop()
