"""The durable-queue built-in worker with the official ``iii-sdk`` 0.25 and iii_rx as clients.

Retries use millisecond backoffs (``queue_config`` of the binding, or the worker's settings);
deliveries and dead letters are waited on with queues and events, never with sleeps.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from builtins_helpers import (
    ENGINE_TIMERS,
    WAIT,
    call,
    on_engine,
    unique,
    wait_bound,
    wait_parked,
    wait_until,
)
from iii import InvocationError, TriggerAction

import iii_rx
from iii_rx.engine import Engine, EngineThread
from iii_rx.engine.workers.queues_store import MemoryQueueAdapter, Message, QueueConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
Factory = Callable[..., Any]


def flaky(worker: Any, prefix: str, failures: int) -> tuple[str, queue.Queue[Any]]:
    """A function that fails its first ``failures`` calls; every call lands on a queue as
    ``(monotonic time, data)``."""
    calls: queue.Queue[Any] = queue.Queue()
    function_id = unique(prefix)
    count = 0
    lock = threading.Lock()

    def handler(data: Any) -> dict[str, Any]:
        nonlocal count
        with lock:
            count += 1
            n = count
        calls.put((time.monotonic(), data))
        if n <= failures:
            raise RuntimeError(f"failure {n}")
        return {}

    worker.register_function(function_id, handler)
    return function_id, calls


def registered(engine: EngineThread, function_id: str) -> None:
    """Wait until the engine serves ``function_id`` (a registration has no answer frame)."""
    wait_until(lambda: on_engine(engine, lambda: engine.engine.services.has_function(
        function_id)), f"{function_id} registered")


def subscribe(engine: EngineThread, worker: Any, function_id: str, topic: str,
              **queue_config: Any) -> None:
    registered(engine, function_id)
    config: dict[str, Any] = {"topic": topic}
    if queue_config:
        config["queue_config"] = queue_config
    worker.register_trigger({"type": "durable:subscriber", "function_id": function_id,
                             "config": config})
    wait_bound(engine, function_id)


def dead_letters(engine: EngineThread) -> queue.Queue[tuple[str, Message]]:
    """Every dead letter of the engine's queue worker, as it happens."""
    found: queue.Queue[tuple[str, Message]] = queue.Queue()
    on_engine(engine, lambda: engine.engine.workers.queues.dead_letter_listeners.append(
        lambda key, message: found.put((key, message))))
    return found


def takes(calls: queue.Queue[Any], count: int) -> list[Any]:
    return [calls.get(timeout=WAIT) for _ in range(count)]


def test_every_subscriber_gets_every_message_once(engine: EngineThread,
                                                  official: Factory) -> None:
    iii = official("durable")
    topic = unique("orders")
    first, got_first = flaky(iii, "first", 0)
    second, got_second = flaky(iii, "second", 0)
    subscribe(engine, iii, first, topic)
    subscribe(engine, iii, second, topic)
    for n in range(3):
        assert call(iii, "iii::durable::publish", {"topic": topic, "data": {"n": n}}) is None
    for calls in (got_first, got_second):
        assert sorted(data["n"] for _, data in takes(calls, 3)) == [0, 1, 2]
    # Another topic is not delivered here; nothing else arrives for ours.
    call(iii, "iii::durable::publish", {"topic": unique("other"), "data": 1})
    call(iii, "iii::durable::publish", {"topic": topic, "data": {"n": 3}})
    assert got_first.get(timeout=WAIT)[1] == {"n": 3}
    assert got_second.get(timeout=WAIT)[1] == {"n": 3}
    assert got_first.empty() and got_second.empty()


def test_failed_delivery_is_retried_with_exponential_backoff(engine: EngineThread,
                                                              official: Factory) -> None:
    iii = official("retry")
    topic = unique("jobs")
    function_id, calls = flaky(iii, "flaky", 2)
    subscribe(engine, iii, function_id, topic, maxRetries=3, backoffDelayMs=40)
    call(iii, "iii::durable::publish", {"topic": topic, "data": "job"})
    (t1, d1), (t2, d2), (t3, d3) = takes(calls, 3)
    assert d1 == d2 == d3 == "job"
    assert t2 - t1 >= 0.040 - 0.005  # first retry: backoff
    assert t3 - t2 >= 0.080 - 0.005  # second retry: twice that
    assert calls.empty()


def test_exhausted_retries_dead_letter_and_redrive(engine: EngineThread,
                                                   official: Factory) -> None:
    iii = official("dlq")
    found = dead_letters(engine)
    topic = unique("payments")
    function_id, calls = flaky(iii, "broken", 3)
    subscribe(engine, iii, function_id, topic, max_retries=2, backoff_ms=1)
    call(iii, "iii::durable::publish", {"topic": topic, "data": {"id": 7}})
    key, message = found.get(timeout=WAIT)
    assert len(takes(calls, 3)) == 3  # the first attempt and two retries
    assert key.startswith(f"{topic}::{function_id}")
    assert message.attempts == 3 and "failure 3" in (message.last_error or "")
    [letter] = call(iii, "engine::queue::dlq_messages", {"topic": topic})
    assert letter["payload"] == {"id": 7} and letter["function_id"] == function_id
    assert letter["retries"] == 3 and "failure 3" in letter["error"]
    assert letter["id"] == message.id and letter["failed_at"] > 0 and letter["size_bytes"] > 0
    # The handler works now: a redrive delivers the dead letter again.
    assert call(iii, "iii::queue::redrive", {"queue": topic}) == {"queue": topic,
                                                                   "redriven": 1}
    assert calls.get(timeout=WAIT)[1] == {"id": 7}
    assert call(iii, "engine::queue::dlq_messages", {"topic": topic}) == []


def test_a_full_queue_refuses_the_publish(engine: EngineThread, official: Factory) -> None:
    iii = official("full")
    on_engine(engine, lambda: setattr(engine.engine.workers.queues, "default_config",
                                      QueueConfig(max_pending=2, backoff_ms=1)))
    topic = unique("busy")
    release = threading.Event()
    started: queue.Queue[Any] = queue.Queue()
    function_id = unique("slow")

    def slow(data: Any) -> None:
        started.put(data)
        release.wait(WAIT)

    iii.register_function(function_id, slow)
    subscribe(engine, iii, function_id, topic, concurrency=1)
    call(iii, "iii::durable::publish", {"topic": topic, "data": 1})
    assert started.get(timeout=WAIT) == 1  # in flight: the queue itself is empty
    call(iii, "iii::durable::publish", {"topic": topic, "data": 2})
    call(iii, "iii::durable::publish", {"topic": topic, "data": 3})
    with pytest.raises(InvocationError) as caught:
        call(iii, "iii::durable::publish", {"topic": topic, "data": 4})
    assert caught.value.code == "queue_full"
    assert "max_pending" in caught.value.message
    release.set()
    assert [started.get(timeout=WAIT) for _ in range(2)] == [2, 3]


def test_bad_publish_and_bad_binding(engine: EngineThread, official: Factory) -> None:
    iii = official("bad")
    with pytest.raises(InvocationError) as caught:
        call(iii, "iii::durable::publish", {"topic": "", "data": 1})
    assert caught.value.code == "topic_not_set"
    with pytest.raises(InvocationError) as caught:
        call(iii, "iii::durable::publish", {"topic": "t"})
    assert caught.value.code == "deserialization_error"
    function_id, _ = flaky(iii, "nobody", 0)
    iii.register_trigger({"type": "durable:subscriber", "function_id": function_id,
                          "config": {}})
    wait_parked(engine, function_id)


def test_enqueue_action_delivers_to_the_target_with_retries(engine: EngineThread,
                                                             official: Factory) -> None:
    iii = official("enqueue")
    on_engine(engine, lambda: engine.engine.workers.queues.queue_configs.update(
        {"orders": QueueConfig(max_retries=1, backoff_ms=1)}))
    function_id, calls = flaky(iii, "target", 1)
    registered(engine, function_id)
    receipt = call(iii, function_id, {"order": 1}, action=TriggerAction.Enqueue(queue="orders"))
    assert isinstance(receipt["messageReceiptId"], str)
    assert [data for _, data in takes(calls, 2)] == [{"order": 1}, {"order": 1}]
    # Any queue name works (created with the default settings).
    other, other_calls = flaky(iii, "other", 0)
    registered(engine, other)
    call(iii, other, "x", action=TriggerAction.Enqueue(queue=unique("adhoc")))
    assert other_calls.get(timeout=WAIT)[1] == "x"


def test_fifo_queue_needs_its_group_field(engine: EngineThread, official: Factory) -> None:
    iii = official("fifo")
    on_engine(engine, lambda: engine.engine.workers.queues.queue_configs.update(
        {"ledger": QueueConfig(fifo=True, message_group_field="account", backoff_ms=1)}))
    function_id, calls = flaky(iii, "ledger", 1)
    registered(engine, function_id)
    with pytest.raises(InvocationError) as caught:
        call(iii, function_id, {"amount": 1}, action=TriggerAction.Enqueue(queue="ledger"))
    assert caught.value.code == "enqueue_error"
    assert "account" in caught.value.message
    for n in range(3):
        call(iii, function_id, {"account": "a", "n": n},
             action=TriggerAction.Enqueue(queue="ledger"))
    # The first message fails once and is retried inline: the order holds.
    assert [data["n"] for _, data in takes(calls, 4)] == [0, 0, 1, 2]


async def test_iii_rx_client_publishes_and_enqueues() -> None:
    async with Engine(port=0, **ENGINE_TIMERS) as engine, \
            iii_rx.connect(engine.url, name=unique("rx")) as iii:
        received: asyncio.Queue[Any] = asyncio.Queue()

        async def handler(data: Any) -> None:
            received.put_nowait(data)

        function_id = unique("rx-consumer")
        iii.register_function(function_id, handler)
        topic = unique("rx-topic")
        iii.register_trigger({"type": "durable:subscriber", "function_id": function_id,
                              "config": {"topic": topic}})
        deadline = time.monotonic() + WAIT
        while not any(b.function_id == function_id and not b.parked
                      for b in engine.triggers.bindings.values()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await iii.trigger("iii::durable::publish", {"topic": topic, "data": [1, 2]})
        assert await asyncio.wait_for(received.get(), WAIT) == [1, 2]
        receipt = await iii.trigger(function_id, {"q": 1},
                                    action=iii_rx.TriggerAction.enqueue("default"))
        assert "messageReceiptId" in receipt
        assert await asyncio.wait_for(received.get(), WAIT) == {"q": 1}


async def test_topics_and_queues_nothing_holds_any_more_are_forgotten() -> None:
    """A topic whose subscribers all left, and a queue made by an ``enqueue`` to a new name,
    were kept (listed, and a queue with its consumer task) for the engine's life: one per name
    ever used. They are forgotten once drained; a topic holding a dead letter is kept until
    it is discarded."""
    async with Engine(port=0, **ENGINE_TIMERS) as engine, \
            iii_rx.connect(engine.url, name=unique("rx")) as iii:
        queues = engine.workers.queues
        received: asyncio.Queue[Any] = asyncio.Queue()

        async def handler(data: Any) -> None:
            if data == "fail":
                raise RuntimeError("dead-letter me")
            received.put_nowait(data)

        function_id = unique("tidy")
        iii.register_function(function_id, handler)
        tasks_before = len(queues.tasks)

        async def listed() -> set[str]:
            return {row["name"] for row in await iii.trigger("engine::queue::list_topics", {})}

        topics = [unique("tidy-topic") for _ in range(20)]
        handles = [iii.register_trigger({
            "type": "durable:subscriber", "function_id": function_id,
            "config": {"topic": topic, "queue_config": {"maxRetries": 0}}}) for topic in topics]
        await wait_for_bindings(engine, function_id, len(topics))
        await iii.trigger("iii::durable::publish", {"topic": topics[0], "data": "hello"})
        await iii.trigger("iii::durable::publish", {"topic": topics[1], "data": "fail"})
        assert await asyncio.wait_for(received.get(), WAIT) == "hello"
        await wait_dead_letters(iii, topics[1])
        for handle in handles:
            handle.unregister()
        await wait_for_bindings(engine, function_id, 0)
        names = await listed()
        assert names & set(topics) == {topics[1]}  # the one holding a dead letter

        [letter] = await iii.trigger("engine::queue::dlq_messages", {"topic": topics[1]})
        await iii.trigger("iii::queue::discard_message",
                          {"queue": topics[1], "message_id": letter["id"]})
        assert not await listed() & set(topics)

        names_used = [unique("tidy-queue") for _ in range(20)]
        for name in names_used:
            await iii.trigger(function_id, name, action=iii_rx.TriggerAction.enqueue(name))
        assert sorted([await asyncio.wait_for(received.get(), WAIT) for _ in names_used]) == \
            sorted(names_used)
        deadline = time.monotonic() + WAIT
        while len(queues.tasks) > tasks_before:  # the last deliveries end after answering
            assert time.monotonic() < deadline, f"{len(queues.tasks)} queue tasks left"
            await asyncio.sleep(0.01)
        assert not await listed() & set(names_used)


async def test_a_topic_whose_message_was_retried_is_forgotten_once_drained() -> None:
    """A message waiting out a backoff holds its queue; once the retry is delivered nothing
    does, so the topic goes when its subscriber leaves, as one never retried does."""
    async with Engine(port=0, **ENGINE_TIMERS) as engine, \
            iii_rx.connect(engine.url, name=unique("rx")) as iii:
        queues = engine.workers.queues
        attempts: asyncio.Queue[Any] = asyncio.Queue()
        failed: list[Any] = []

        async def handler(data: Any) -> None:
            attempts.put_nowait(data)
            if not failed:
                failed.append(data)
                raise RuntimeError("fail once")

        function_id = unique("retried")
        iii.register_function(function_id, handler)
        tasks_before = len(queues.tasks)
        topic = unique("retried-topic")
        handle = iii.register_trigger({
            "type": "durable:subscriber", "function_id": function_id,
            "config": {"topic": topic, "queue_config": {"maxRetries": 2, "backoff_ms": 1}}})
        await wait_for_bindings(engine, function_id, 1)
        await iii.trigger("iii::durable::publish", {"topic": topic, "data": "again"})
        assert [await asyncio.wait_for(attempts.get(), WAIT) for _ in range(2)] == ["again"] * 2
        handle.unregister()
        await wait_for_bindings(engine, function_id, 0)
        deadline = time.monotonic() + WAIT
        while len(queues.tasks) > tasks_before:  # the topic's consumer ends once forgotten
            assert time.monotonic() < deadline, f"{len(queues.tasks)} queue tasks left"
            await asyncio.sleep(0.01)
        rows = await iii.trigger("engine::queue::list_topics", {})
        assert topic not in {row["name"] for row in rows}


async def wait_for_bindings(engine: Engine, function_id: str, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while sum(b.function_id == function_id and not b.parked
              for b in engine.triggers.bindings.values()) != count:
        assert time.monotonic() < deadline, f"{count} bindings of {function_id}"
        await asyncio.sleep(0.01)


async def wait_dead_letters(iii: iii_rx.Client, topic: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await iii.trigger("engine::queue::dlq_messages", {"topic": topic}):
        assert time.monotonic() < deadline, f"a dead letter on {topic}"
        await asyncio.sleep(0.01)


def test_the_backoff_doubles_from_the_first_retry_up_to_its_cap() -> None:
    config = QueueConfig(backoff_ms=100, max_backoff_ms=1000)
    assert [config.backoff(attempt) for attempt in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert config.backoff(10_000) == 1.0  # the exponent is bounded: no huge integer


def test_a_concurrency_of_zero_still_delivers_one_at_a_time() -> None:
    assert [QueueConfig(concurrency=n).slots for n in (0, 1, 5)] == [1, 1, 5]
    assert QueueConfig(fifo=True, concurrency=5).slots == 1


def test_the_memory_store_keeps_at_most_max_dead_letters() -> None:
    store = MemoryQueueAdapter()
    letters = [Message("f", "default", n) for n in range(4)]
    dropped = [store.dead_letter("q", letter, 3) for letter in letters]
    assert dropped == [None, None, None, letters[0]]
    assert store.dead_letters("q") == letters[1:]
