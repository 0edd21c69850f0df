"""The topology streams against the embedded engine over real sockets (issue 13).

Every wait is on an emission of the stream under test; where "nothing else happened" must be
shown, a marker function registered last serves as a barrier: its ``FunctionAdded`` can only
come after every change the engine made before it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from topology_helpers import (
    ENGINE_TIMERS,
    FAST_RECONNECT,
    WAIT,
    CountingHost,
    OfficialWorkers,
    Recorder,
    describe,
    unique_name,
)

import iii_rx
from iii_rx.engine import Engine
from iii_rx.topology import (
    FunctionAdded,
    FunctionRemoved,
    Topology,
    TopologyStream,
    WorkerConnected,
    WorkerDisconnected,
)
from iii_rx.topology.stream import DISCOVERY_FUNCTIONS, PRIVATE_PREFIX


async def barrier(rec: Recorder, client: Any) -> list[Any]:
    """Register a marker function and return the changes that came before its event."""
    marker = f"marker::{unique_name()}"
    client.register_function(marker, lambda data: None)
    await rec.until(lambda: any(isinstance(c, FunctionAdded) and c.function.function_id == marker
                                for c in rec.changes), f"the marker {marker}")
    index = next(i for i, c in enumerate(rec.changes)
                 if isinstance(c, FunctionAdded) and c.function.function_id == marker)
    return rec.changes[:index]


async def test_iii_rx_worker_and_functions_produce_exactly_the_expected_events(
        engine: Engine) -> None:
    # A function added and removed within one settle window of engine::functions-available
    # makes no event (the key set did not change); a refresh caused by the worker's own events
    # may still have seen it. The poll is what catches that in any engine, so it runs here.
    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer:
        topology = TopologyStream(observer, poll_interval=0.1)
        rec = Recorder(topology)
        await rec.snapshot_where(lambda s: True, "the first snapshot")
        assert rec.changes == []
        assert rec.latest.worker(observer.worker_id or "") is not None

        worker = await iii_rx.connect(engine.url, name=unique_name("worker"))
        worker_id = worker.worker_id
        handle = worker.register_function("demo::add", lambda d: d["a"] + d["b"],
                                          description="adds")
        await rec.snapshot_where(lambda s: s.function("demo::add") is not None, "demo::add")
        handle.unregister()
        await rec.snapshot_where(lambda s: s.function("demo::add") is None, "demo::add gone")
        await worker.close()
        await rec.snapshot_where(lambda s: s.worker(worker_id or "") is None, "the worker gone")

        changes = await barrier(rec, observer)
        assert describe(changes) == [
            ("WorkerConnected", worker_id),
            ("FunctionAdded", ("default", "demo::add")),
            ("FunctionRemoved", ("default", "demo::add")),
            ("WorkerDisconnected", worker_id),
        ]
        connected, added = changes[0], changes[1]
        assert isinstance(connected, WorkerConnected) and isinstance(added, FunctionAdded)
        assert connected.worker.name == worker.name and connected.worker.runtime == "python"
        assert added.function.worker_name == worker.name
        assert added.function.description == "adds"
        rec.dispose()


async def test_official_sdk_worker_produces_exactly_the_expected_events(
        engine: Engine, official: OfficialWorkers) -> None:
    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer:
        topology = TopologyStream(observer, poll_interval=None)
        rec = Recorder(topology)
        await rec.snapshot_where(lambda s: True, "the first snapshot")

        name = unique_name("official")
        worker = await official.start(engine.url, worker_name=name)
        await asyncio.to_thread(worker.register_function, "sdk::echo", lambda data: data)
        await rec.snapshot_where(lambda s: s.function("sdk::echo") is not None, "sdk::echo")
        await official.stop(worker)
        await rec.snapshot_where(lambda s: all(w.name != name for w in s.workers),
                                 "the official worker gone")

        changes = await barrier(rec, observer)
        kinds = [type(c).__name__ for c in changes]
        assert kinds == ["WorkerConnected", "FunctionAdded", "FunctionRemoved",
                         "WorkerDisconnected"], describe(changes)
        connected, added, removed, gone = changes
        assert isinstance(connected, WorkerConnected) and isinstance(gone, WorkerDisconnected)
        assert connected.worker.name == name and connected.worker.runtime == "python"
        assert gone.worker.id == connected.worker.id
        assert isinstance(added, FunctionAdded) and isinstance(removed, FunctionRemoved)
        assert added.function.function_id == removed.function.function_id == "sdk::echo"
        assert added.function.worker_name == name
        rec.dispose()


async def test_trigger_types_and_bindings_appear_and_disappear(engine: Engine) -> None:
    """Bindings change without any engine event: the poll (short here) finds them."""
    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer, \
            iii_rx.connect(engine.url, name=unique_name("provider")) as provider:
        rec = Recorder(TopologyStream(observer, poll_interval=0.05))
        await rec.snapshot_where(lambda s: True, "the first snapshot")

        provided = provider.register_trigger_type("demo::tick", "ticks")
        provider.register_function("demo::on_tick", lambda data: None)
        binding = provider.register_trigger({"type": "demo::tick", "function_id": "demo::on_tick",
                                             "config": {"every": 5}})
        await rec.snapshot_where(lambda s: len(s.triggers) == 1, "the binding")
        binding.unregister()
        await rec.snapshot_where(lambda s: not s.triggers, "the binding gone")
        provided.unregister()
        await rec.snapshot_where(lambda s: all(t.id != "demo::tick" for t in s.trigger_types),
                                 "the trigger type gone")

        changes = await barrier(rec, observer)
        assert describe(changes) == [
            ("TriggerTypeAdded", ("default", "demo::tick")),
            ("FunctionAdded", ("default", "demo::on_tick")),
            ("TriggerAdded", binding.id),
            ("TriggerRemoved", binding.id),
            ("TriggerTypeRemoved", ("default", "demo::tick")),
        ]
        added = changes[2].row
        assert added.config == {"every": 5} and added.function_id == "demo::on_tick"
        assert added.worker_name == provider.name
        rec.dispose()


async def test_a_late_subscriber_gets_the_current_snapshot(engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer:
        observer.register_function("demo::present", lambda data: None)
        topology = TopologyStream(observer, poll_interval=None)
        early = Recorder(topology)
        first = await early.snapshot_where(lambda s: s.function("demo::present") is not None,
                                           "demo::present")

        late: list[Topology] = []
        subscription = topology.snapshots.subscribe(late.append)
        assert late == [first]  # replayed at once, on this (the client's) loop
        assert topology.current is first
        async with topology.snapshots.iterate() as iterator:
            assert await anext(iterator) is first
        subscription.dispose()
        early.dispose()


async def test_two_subscribers_cost_one_set_of_discovery_calls(engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer, \
            iii_rx.connect(engine.url, name=unique_name("worker")) as worker:
        host = CountingHost(observer)
        topology = TopologyStream(host, poll_interval=None)
        assert host.calls == {} and not topology.active  # nothing until someone subscribes

        one, two = Recorder(topology), Recorder(topology)
        iterator = topology.changes.iterate()
        await one.snapshot_where(lambda s: True, "the first snapshot")
        await two.snapshot_where(lambda s: True, "the first snapshot")
        assert host.calls == {name: 1 for name in DISCOVERY_FUNCTIONS}
        private = [f for f in observer.function_ids if f.startswith(PRIVATE_PREFIX)]
        assert private == [topology.private_function_id]

        worker.register_function("demo::late", lambda data: None)
        for rec in (one, two):
            await rec.snapshot_where(lambda s: s.function("demo::late") is not None,
                                     "demo::late")
        assert host.calls == {name: 2 for name in DISCOVERY_FUNCTIONS}
        assert (await anext(iterator)).row.key == ("default", "demo::late")
        assert one.snapshots == two.snapshots
        one.dispose()
        two.dispose()
        await iterator.aclose()


async def test_nothing_is_registered_while_nobody_subscribes(engine: Engine) -> None:
    async def private_bindings() -> list[dict[str, Any]]:
        answer = await observer.trigger("engine::registered-triggers::list",
                                        {"include_internal": True})
        return [b for b in answer["registered_triggers"]
                if b["function_id"].startswith(PRIVATE_PREFIX)]

    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer:
        topology = TopologyStream(observer, poll_interval=0.05)
        assert await private_bindings() == []
        rec = Recorder(topology)
        await rec.snapshot_where(lambda s: True, "the first snapshot")
        bindings = await private_bindings()
        assert sorted(b["trigger_type"] for b in bindings) == [
            "engine::functions-available", "engine::workers-available"]
        assert rec.latest.triggers == ()  # the stream's own bindings are not shown
        assert all(not f.function_id.startswith(PRIVATE_PREFIX) for f in rec.latest.functions)

        rec.dispose()
        assert not topology.active and topology.current is None
        assert not any(f.startswith(PRIVATE_PREFIX) for f in observer.function_ids)
        # The unregistration frames carry no answer: poll the engine until it processed them.
        deadline = asyncio.get_running_loop().time() + WAIT
        while await private_bindings():
            assert asyncio.get_running_loop().time() < deadline, "bindings left behind"
            await asyncio.sleep(0.01)
        last_revision = rec.snapshots[-1].revision
        again = Recorder(topology)  # a new session starts from a fresh snapshot
        snapshot = await again.snapshot_where(lambda s: True, "a fresh snapshot")
        assert snapshot.revision == last_revision + 1 and again.changes == []
        again.dispose()


async def test_a_reconnect_refreshes_with_a_diff_not_a_flood() -> None:
    first = Engine(port=0, **ENGINE_TIMERS)
    await first.start()
    port = first.port
    observer = await iii_rx.connect(first.url, name=unique_name("observer"),
                                    reconnect=FAST_RECONNECT)
    leaving = await iii_rx.connect(first.url, name=unique_name("leaving"))
    second: Engine | None = None
    try:
        observer.register_function("demo::kept", lambda data: None)
        leaving.register_function("demo::gone", lambda data: None)
        rec = Recorder(TopologyStream(observer, poll_interval=None))
        before = await rec.snapshot_where(
            lambda s: s.function("demo::kept") is not None and s.function("demo::gone")
            is not None, "both functions")
        old_id, leaving_id = observer.worker_id, leaving.worker_id
        mark = len(rec.changes)

        await first.stop()  # the observer retries; the other worker leaves meanwhile
        await leaving.close()
        second = Engine(port=port, **ENGINE_TIMERS)
        await second.start()
        after = await rec.snapshot_where(
            lambda s: observer.worker_id != old_id and s.worker(observer.worker_id or "")
            is not None, "the observer back on the new engine")

        changes = rec.changes[mark:]
        assert [c for c in changes if isinstance(c, (FunctionAdded, FunctionRemoved))] == [
            FunctionRemoved(before.function("demo::gone"))]  # type: ignore[arg-type]
        workers = [(type(c).__name__, c.row.id) for c in changes
                   if isinstance(c, (WorkerConnected, WorkerDisconnected))]
        assert sorted(workers) == sorted([("WorkerDisconnected", leaving_id),
                                          ("WorkerDisconnected", old_id),
                                          ("WorkerConnected", observer.worker_id)])
        assert after.function("demo::kept") is not None
        rec.dispose()
    finally:
        await observer.close()
        await leaving.close()
        if second is not None:
            await second.stop()


async def test_a_raising_subscriber_is_detached_and_the_others_carry_on(
        engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer:
        topology = TopologyStream(observer, poll_interval=None)
        calls = 0

        def faulty(snapshot: Topology) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("a bug in user code")

        topology.snapshots.subscribe(faulty)
        rec = Recorder(topology)
        await rec.snapshot_where(lambda s: True, "the first snapshot")
        topology.snapshots.subscribe(faulty)  # raises on the replayed snapshot, at once
        assert calls == 2
        observer.register_function("demo::after", lambda data: None)
        await rec.snapshot_where(lambda s: s.function("demo::after") is not None, "demo::after")
        assert calls == 2
        rec.dispose()
        assert not topology.active  # the detached subscriber no longer holds the session


async def test_closing_the_client_completes_the_streams(engine: Engine) -> None:
    observer = await iii_rx.connect(engine.url, name=unique_name("observer"))
    topology = TopologyStream(observer, poll_interval=0.05)
    rec = Recorder(topology)
    await rec.snapshot_where(lambda s: True, "the first snapshot")
    iterator = topology.changes.iterate()
    await observer.close()
    await rec.until(lambda: rec.completed, "completion")
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)
    assert not topology.active
    late: list[str] = []
    topology.snapshots.subscribe(on_completed=lambda: late.append("completed"))
    assert late == ["completed"]


def test_a_sync_client_gets_emissions_on_its_loop_thread() -> None:
    with Engine.start_in_thread(port=0, **ENGINE_TIMERS) as handle, \
            iii_rx.connect_sync(handle.url, name=unique_name("observer")) as observer:
        topology = TopologyStream(observer, poll_interval=None)
        seen = threading.Event()
        threads: list[threading.Thread] = []

        def on_snapshot(snapshot: Topology) -> None:
            threads.append(threading.current_thread())
            seen.set()

        subscription = topology.snapshots.subscribe(on_snapshot)
        assert seen.wait(WAIT)
        assert threads[0].name.startswith("iii-rx-loop") and threads[0] is not \
            threading.current_thread()
        subscription.dispose()


async def test_a_fetch_cancelled_before_its_calls_start_warns_about_nothing(
        engine: Engine) -> None:
    """``fetch`` hands its four calls to ``gather``; cancelled before those start (a session
    stopping, ``iii-rx top`` quitting), nothing was sent and nothing is reported as a
    forgotten call."""
    import gc
    import warnings

    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer:
        topology = TopologyStream(observer, poll_interval=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fetching = asyncio.ensure_future(topology.fetch())
            await asyncio.sleep(0)  # fetch reaches its gather: the calls' tasks are queued
            fetching.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fetching
            gc.collect()
        assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []


async def test_closing_the_client_during_a_refresh_logs_no_warning(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """A refresh in flight when the user closes the client fails (its calls are failed or
    refused by the close): that is the close, not a problem, so it is not a WARNING. Seen
    closing 10 watching clients at once: 'topology refresh failed (1 attempt): the client was
    closed while the call to 'engine::workers::list' ... was in flight'."""
    caplog.set_level(logging.DEBUG, logger="iii_rx")
    for _ in range(3):
        client = await iii_rx.connect(engine.url, name=unique_name("closing"))
        stream = TopologyStream(client, poll_interval=None)
        # The first refresh starts on the next loop turn, inside the close (which takes
        # several): its calls are refused or failed by the close.
        stream.snapshots.subscribe(lambda snapshot: None)
        await client.close()
    failed = [r for r in caplog.records if "topology refresh failed" in r.getMessage()]
    assert failed, "no refresh was cut by the close: the test shows nothing"
    assert [r.levelname for r in failed] == ["DEBUG"] * len(failed)


async def test_rows_that_did_not_change_are_the_same_objects_in_the_next_snapshot(
        engine: Engine) -> None:
    """Each poll parsed every row again into new, equal objects that every later comparison
    (the stream's, ``iii-rx top``'s) walked field by field; an unchanged row is now last
    poll's object."""
    async with iii_rx.connect(engine.url, name=unique_name("observer")) as observer, \
            iii_rx.connect(engine.url, name=unique_name("worker")) as worker:
        worker.register_function("demo::kept", lambda data: None)
        rec = Recorder(TopologyStream(observer, poll_interval=None))
        first = await rec.snapshot_where(lambda s: s.function("demo::kept") is not None,
                                         "demo::kept")
        worker.register_function("demo::added", lambda data: None)
        second = await rec.snapshot_where(lambda s: s.function("demo::added") is not None,
                                          "demo::added")
        assert second.function("demo::kept") is first.function("demo::kept")
        kept = [f for f in second.functions if any(f is g for g in first.functions)]
        assert len(kept) == len(first.functions)  # none of them changed
        rec.dispose()
