"""iii_rx as a client of the built-in workers: ``KV`` / ``KVScope`` (``iii.kv``), ``PubSub``
(``iii.subscribe`` / ``iii.publish``) and ``TriggerStream`` for any trigger, over real sockets.

The faces take the client through its public API only (:class:`TriggerHost`); until
``Client`` exposes them (``iii.kv``, ``iii.subscribe``, ``iii.publish``) they are built here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from builtins_helpers import ENGINE_TIMERS, WAIT, unique

import iii_rx
from iii_rx.client import Client
from iii_rx.engine import Engine
from iii_rx.kv import KV, Op, StateChange
from iii_rx.pubsub import PubSub
from iii_rx.trigger_stream import PRIVATE_PREFIX, TriggerHost, TriggerStream


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(port=0, **ENGINE_TIMERS) as running:
        yield running


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[Client]:
    async with iii_rx.connect(engine.url, name=unique("rx")) as iii:
        yield iii


def host(iii: Client) -> TriggerHost:
    """The client as the faces see it (mypy checks that it fits the protocol)."""
    return iii


class Collect:
    """An observer that hands values to the test through an asyncio queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __call__(self, value: Any) -> None:
        self.queue.put_nowait(value)

    async def take(self, count: int) -> list[Any]:
        return [await asyncio.wait_for(self.queue.get(), WAIT) for _ in range(count)]


async def until(predicate: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def private_bindings(engine: Engine) -> list[Any]:
    return [b for b in engine.triggers.bindings.values()
            if b.function_id.startswith(PRIVATE_PREFIX) and not b.parked]


def private_functions(engine: Engine) -> list[Any]:
    return [key for key in engine.registry.functions if key[1].startswith(PRIVATE_PREFIX)]


# --------------------------------------------------------------------------- kv


async def test_kv_calls(client: Client) -> None:
    kv = KV(host(client))
    scope = unique("orders")
    assert await kv.get(scope, "o1") is None
    assert await kv.set(scope, "o1", {"status": "new"}) == {
        "old_value": None, "new_value": {"status": "new"}}
    result = await kv.update(scope, "o1", Op.set("status", "paid"), Op.increment("n", 2),
                             Op.append({"e": 1}, path="log"), Op.merge({"m": 1}))
    assert result["new_value"] == {"status": "paid", "n": 2, "log": [{"e": 1}], "m": 1}
    await kv.update(scope, "o1", [Op.decrement("n"), Op.remove("m")])
    assert await kv.get(scope, "o1") == {"status": "paid", "n": 1, "log": [{"e": 1}]}
    await kv.set(scope, "o2", 2)
    assert await kv.values(scope) == [{"status": "paid", "n": 1, "log": [{"e": 1}]}, 2]
    assert scope in await kv.scopes()
    assert await kv.delete(scope, "o2") == 2
    assert await kv.values(scope) == [{"status": "paid", "n": 1, "log": [{"e": 1}]}]


async def test_a_namespaced_client_reaches_the_builtins(engine: Engine) -> None:
    async with iii_rx.connect(engine.url, name=unique("ns"), namespace="team") as iii:
        kv = KV(host(iii))
        await kv.set("s", "k", 1)
        assert await kv.get("s", "k") == 1
        await PubSub(host(iii)).publish("nobody-listens", 1)


async def test_a_scope_is_an_observable_of_its_changes(engine: Engine, client: Client) -> None:
    kv = KV(host(client))
    scope = unique("scope")
    orders = kv.scope(scope)
    seen = Collect()
    subscription = orders.subscribe(seen)
    assert orders.bound
    await orders.set("a", 1)
    await orders.update("a", Op.set("", 2))
    await kv.set(unique("elsewhere"), "a", 0)  # another scope: not seen
    await orders.delete("a")
    assert await seen.take(3) == [
        StateChange("created", scope, "a", None, 1), StateChange("updated", scope, "a", 1, 2),
        StateChange("deleted", scope, "a", 2, None)]
    # Another worker's writes arrive too.
    async with iii_rx.connect(engine.url, name=unique("other")) as other:
        await KV(host(other)).set(scope, "b", "from other")
    (change,) = await seen.take(1)
    assert change.kind == "created" and change.event_type == "state:created"
    assert change.new_value == "from other"
    subscription.dispose()
    await until(lambda: not private_bindings(engine) and not private_functions(engine),
                "the scope's binding and function to go")
    assert not orders.bound
    assert seen.queue.empty()


async def test_changes_of_one_key(client: Client) -> None:
    kv = KV(host(client))
    scope = unique("scope")
    seen = Collect()
    kv.changes(scope, "k").subscribe(seen)
    await kv.set(scope, "other", 1)
    await kv.set(scope, "k", 1)
    (change,) = await seen.take(1)
    assert change.key == "k"


# --------------------------------------------------------------------------- pub/sub


async def test_subscribe_then_publish_delivers_in_order(engine: Engine, client: Client) -> None:
    pubsub = PubSub(host(client))
    topic = unique("topic")
    first, second, isolated = Collect(), Collect(), Collect()
    stream = pubsub.subscribe(topic)
    stream.subscribe(first)
    stream.subscribe(second)
    pubsub.subscribe(unique("other")).subscribe(isolated)
    assert len(private_bindings(engine)) <= 2
    messages = [{"i": i, "payload": [i, "é", None]} for i in range(50)]
    for message in messages:
        await pubsub.publish(topic, message)
    assert await first.take(50) == messages
    assert await second.take(50) == messages
    await until(lambda: len(private_bindings(engine)) == 2, "one binding per stream")
    assert isolated.queue.empty()


async def test_async_for_over_a_topic_and_dispose_unbinds(engine: Engine,
                                                          client: Client) -> None:
    pubsub = PubSub(host(client))
    topic = unique("topic")
    async with pubsub.subscribe(topic).iterate(maxsize=16) as messages:
        await pubsub.publish(topic, "one")
        await pubsub.publish(topic, "two")
        assert [await anext(messages), await anext(messages)] == ["one", "two"]
    await until(lambda: not private_bindings(engine), "the binding to go")
    with pytest.raises(ValueError):
        pubsub.subscribe("")


async def test_official_publisher_reaches_an_rx_subscriber(engine: Engine,
                                                           client: Client) -> None:
    from iii import InitOptions, register_worker

    topic = unique("topic")
    seen = Collect()
    PubSub(host(client)).subscribe(topic).subscribe(seen)
    await until(lambda: private_bindings(engine), "the binding")

    def publish() -> None:
        sdk = register_worker(engine.url, InitOptions(
            worker_name=unique("sdk"), otel={"enabled": False}, enable_metrics_reporting=False))
        try:
            sdk.trigger({"function_id": "publish", "payload": {"topic": topic,
                                                              "data": {"from": "sdk"}}})
        finally:
            sdk.shutdown()

    await asyncio.to_thread(publish)
    assert await seen.take(1) == [{"from": "sdk"}]


# --------------------------------------------------------------------------- any trigger


async def test_trigger_streams_for_cron_and_logs(engine: Engine, client: Client) -> None:
    ticks = Collect()
    cron: TriggerStream[Any] = TriggerStream(host(client), "cron",
                                             {"expression": "* * * * * *"})
    subscription = cron.subscribe(ticks)
    (tick,) = await ticks.take(1)
    assert tick["trigger"] == "cron" and tick["job_id"] == cron._binding.id  # type: ignore[union-attr]
    subscription.dispose()
    await until(lambda: not engine.workers.cron.jobs, "the cron job to stop")

    warnings = Collect()
    TriggerStream(host(client), "log", {"level": "warn"},
                  transform=lambda entry: entry["body"]).subscribe(warnings)
    await until(lambda: private_bindings(engine), "the log binding")
    await client.trigger("engine::log::info", {"message": "ignored"})
    await client.trigger("engine::log::warn", {"message": "careful"})
    assert await warnings.take(1) == ["careful"]


async def test_a_refused_binding_is_reported_on_the_stream(engine: Engine,
                                                           client: Client) -> None:
    bad: TriggerStream[Any] = TriggerStream(host(client), "cron", {"expression": "* * * * *"})
    bad.subscribe(lambda _: None)
    await until(lambda: bad.binding_error is not None, "the refusal")
    assert "five-field" in str(bad.binding_error)


# --------------------------------------------------------------------------- on the client


async def test_the_client_offers_kv_subscribe_and_publish(client: Client) -> None:
    scope, topic = unique("scope"), unique("topic")
    await client.kv.set(scope, "k", {"n": 1})
    await client.kv.update(scope, "k", Op.increment("n"))
    assert await client.kv.get(scope, "k") == {"n": 2}
    seen = Collect()
    subscription = client.subscribe(topic).subscribe(seen)  # bound before the publish goes out
    await client.publish(topic, {"hello": "world"})
    assert await seen.take(1) == [{"hello": "world"}]
    subscription.dispose()


async def test_a_state_trigger_continues_the_writers_trace(client: Client) -> None:
    """The function a ``state`` binding calls runs in the trace of the ``state::set`` /
    ``update`` / ``delete`` that changed the value (as the Rust engine does)."""
    from iii_rx.context import Context, current_context

    scope = unique("traced")
    seen = Collect()
    client.register_function(f"{scope}::on", lambda event: seen((
        event["event_type"], iii_rx.get_context().traceparent, iii_rx.get_context().baggage)))
    client.register_trigger({"type": "state", "function_id": f"{scope}::on",
                             "config": {"scope": scope}})
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token = current_context.set(Context("test::writer", "w", None, traceparent, "k=v"))
    try:  # the calls take the trace context of the code that makes them
        writes = [client.trigger("state::set", {"scope": scope, "key": "k", "value": 1}),
                  client.trigger("state::delete", {"scope": scope, "key": "k"})]
    finally:
        current_context.reset(token)
    for write in writes:  # sent when awaited
        await write
    events = await seen.take(2)
    assert [event[0] for event in events] == ["state:created", "state:deleted"]
    for _, sent, baggage in events:
        assert sent.startswith("00-0af7651916cd43dd8448eb211c80319c-") and baggage == "k=v"


@pytest.mark.parametrize("face", ["topic", "kv changes"])
async def test_a_slow_async_for_loses_nothing(client: Client, face: str) -> None:
    """Past its buffer, a delivery waits for the consumer (it was dropped silently)."""
    name = unique("slow")
    stream: Any = (client.subscribe(name) if face == "topic"
                   else client.kv.changes(name))
    received: list[Any] = []
    async with stream.iterate(maxsize=4) as values:
        async def produce() -> None:
            for i in range(60):
                if face == "topic":
                    await client.publish(name, i)
                else:
                    await client.kv.set(name, "k", i)

        producer = asyncio.ensure_future(produce())
        while len(received) < 60:
            value = await asyncio.wait_for(anext(values), WAIT)
            received.append(value if face == "topic" else value.new_value)
            await asyncio.sleep(0.002)  # a slow consumer (the pace, not a synchronisation)
        await producer
    assert received == list(range(60))


async def test_trigger_streams_complete_when_the_client_closes(engine: Engine) -> None:
    iii = await iii_rx.connect(engine.url, name=unique("closing"))
    completed = asyncio.Event()
    iii.subscribe(unique("topic")).subscribe(on_completed=completed.set)
    changes = iii.kv.changes(unique("scope"))
    iterator = changes.iterate()

    async def drain() -> list[Any]:
        return [change async for change in iterator]

    draining = asyncio.ensure_future(drain())
    await iii.close()
    await asyncio.wait_for(completed.wait(), WAIT)
    assert await asyncio.wait_for(draining, WAIT) == []  # the iteration ended


async def test_an_async_for_left_early_holds_up_nobody(client: Client) -> None:
    """An iterator dropped after ``break`` (no ``aclose``) stops being waited for: the other
    subscribers of the stream get every delivery."""
    topic = unique("left")
    stream = client.subscribe(topic)
    seen = Collect()
    stream.subscribe(seen)
    iterator = stream.iterate(maxsize=2)
    await client.publish(topic, 0)
    async for first in iterator:
        assert first == 0
        break
    del iterator  # dropped without aclose()
    for i in range(1, 30):  # the first one went before the break; these would wait for room
        await client.publish(topic, i)
    await client.publish(topic, "end")
    assert (await seen.take(31))[-1] == "end"


