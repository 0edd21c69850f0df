"""``wait_for_function``: callable as soon as it returns, whoever registers the function."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest
from topology_helpers import ENGINE_TIMERS, FAST_RECONNECT, WAIT, Recorder, unique_name

import iii_rx
from iii_rx.engine import Engine
from iii_rx.errors import IIIConnectionError, IIITimeoutError, LoopDeadlockError
from iii_rx.topology import TopologyStream

LATE_WORKER = Path(__file__).resolve().parent / "workers" / "late_worker.py"


async def test_returns_once_another_process_registers_it(engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name=unique_name("caller")) as caller:
        topology = TopologyStream(caller)
        waiting = asyncio.ensure_future(topology.wait_for_function("late::echo", timeout=WAIT))
        await asyncio.sleep(0)  # let the wait start: it must not find the function yet
        assert not waiting.done()
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(LATE_WORKER), engine.url, unique_name("late"), "late::echo",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        try:
            row = await waiting
            assert row.function_id == "late::echo" and row.namespace == "default"
            # The point of waiting: the first call succeeds (no function_not_found).
            assert await caller.trigger("late::echo", {"n": 1}) == {
                "echo": {"n": 1, "_caller_worker_id": caller.worker_id}}
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), WAIT)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        assert not topology.active  # the wait's subscription is gone with it


async def test_returns_at_once_for_a_registered_function_and_is_namespaced(
        engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name=unique_name("owner"),
                              namespace="orders") as owner:
        owner.register_function("orders::place", lambda data: "placed")
        topology = TopologyStream(owner)
        row = await topology.wait_for_function("orders::place", timeout=WAIT)
        assert row.namespace == "orders"  # the client's namespace by default
        with pytest.raises(IIITimeoutError) as caught:
            await topology.wait_for_function("orders::place", timeout=0.3, namespace="default")
        assert caught.value.code == "TIMEOUT" and caught.value.function_id == "orders::place"
        assert not topology.active


async def test_after_an_engine_restart_it_trusts_only_the_new_engine() -> None:
    """The snapshot from before the restart still lists both functions; only the one whose
    worker came back may end a wait, and calling it then succeeds."""
    first = Engine(port=0, **ENGINE_TIMERS)
    await first.start()
    port = first.port
    caller = await iii_rx.connect(first.url, name=unique_name("caller"), reconnect=FAST_RECONNECT)
    back = await iii_rx.connect(first.url, name=unique_name("back"), reconnect=FAST_RECONNECT)
    gone = await iii_rx.connect(first.url, name=unique_name("gone"), reconnect=FAST_RECONNECT)
    second: Engine | None = None
    try:
        back.register_function("svc::ping", lambda data: "pong")
        gone.register_function("svc::gone", lambda data: "never")
        topology = TopologyStream(caller)
        rec = Recorder(topology)  # the session (and its last snapshot) lives across the restart
        before = await rec.snapshot_where(
            lambda s: s.function("svc::ping") is not None and s.function("svc::gone")
            is not None, "both functions")

        await first.stop()
        await gone.close()  # its worker never comes back
        second = Engine(port=port, **ENGINE_TIMERS)
        await second.start()
        assert not topology.confirmed(before)  # a view from before the outage
        with pytest.raises(IIITimeoutError):
            await topology.wait_for_function("svc::gone", timeout=1.0)
        row = await topology.wait_for_function("svc::ping", timeout=WAIT)
        assert row.worker_name == back.name
        assert await caller.trigger("svc::ping", {}) == "pong"
        rec.dispose()
    finally:
        await caller.close()
        await back.close()
        await gone.close()
        if second is not None:
            await second.stop()


async def test_closing_the_client_ends_the_wait(engine: Engine) -> None:
    caller = await iii_rx.connect(engine.url, name=unique_name("caller"))
    topology = TopologyStream(caller)
    waiting = asyncio.ensure_future(topology.wait_for_function("never::there", timeout=WAIT))
    await asyncio.sleep(0)  # the wait subscribes before its first await
    assert topology.active and not waiting.done()
    await caller.close()
    with pytest.raises(IIIConnectionError):
        await waiting


def test_the_blocking_twin_on_a_sync_client() -> None:
    with Engine.start_in_thread(port=0, **ENGINE_TIMERS) as handle, \
            iii_rx.connect_sync(handle.url, name=unique_name("caller")) as caller, \
            iii_rx.connect_sync(handle.url, name=unique_name("owner")) as owner:
        topology = TopologyStream(caller)
        timer = threading.Timer(0.2, lambda: owner.register_function("sync::f", lambda d: 7))
        timer.start()
        started = time.monotonic()
        row = topology.wait_for_function_sync("sync::f", timeout=WAIT)
        assert row.function_id == "sync::f" and time.monotonic() - started < WAIT
        assert caller.trigger("sync::f", {}).result(WAIT) == 7
        timer.join()

        # Awaited from another loop (a notebook's) it works too.
        again = asyncio.run(topology.wait_for_function("sync::f", timeout=WAIT))
        assert again.key == row.key  # (its metrics have moved on since: one call)

        # On the client's own loop thread the blocking twin refuses instead of deadlocking.
        errors: list[BaseException] = []
        done = threading.Event()

        def on_loop() -> None:
            try:
                topology.wait_for_function_sync("sync::f", timeout=1)
            except BaseException as exc:
                errors.append(exc)
            done.set()

        caller.loop.call_soon_threadsafe(on_loop)
        assert done.wait(WAIT)
        assert len(errors) == 1 and isinstance(errors[0], LoopDeadlockError)
