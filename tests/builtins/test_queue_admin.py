"""The queue worker's inspection and dead-letter functions (the Rust engine's
``iii::queue::redrive_message`` / ``discard_message``, ``engine::queue::list_topics`` /
``topic_stats`` / ``dlq_topics`` / ``dlq_messages``), with the official ``iii-sdk`` as client;
millisecond backoffs, deliveries waited on with queues."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import pytest
from builtins_helpers import (
    WAIT,
    bindings_of,
    call,
    on_engine,
    unique,
    wait_bound,
    wait_until,
)
from iii import InvocationError, TriggerAction

import iii_rx
from iii_rx.engine import EngineThread
from iii_rx.engine.workers.queues_store import Message

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
Factory = Callable[..., Any]


def failing_first(worker: Any, failures: int) -> tuple[str, queue.Queue[Any]]:
    """A function that fails its first ``failures`` calls and records the others."""
    done: queue.Queue[Any] = queue.Queue()
    function_id = unique("admin")
    count = 0

    def handler(data: Any) -> None:
        nonlocal count
        count += 1
        if count <= failures:
            raise RuntimeError(f"failure {count}")
        done.put(data)

    worker.register_function(function_id, handler)
    return function_id, done


def test_dead_letters_are_listed_redriven_and_discarded_one_by_one(
        engine: EngineThread, official: Factory) -> None:
    iii = official("admin")
    found: queue.Queue[Message] = queue.Queue()
    on_engine(engine, lambda: engine.engine.workers.queues.dead_letter_listeners.append(
        lambda key, message: found.put(message)))
    topic = unique("invoices")
    function_id, done = failing_first(iii, 3)
    iii.register_trigger({"type": "durable:subscriber", "function_id": function_id,
                          "config": {"topic": topic,
                                     "queue_config": {"maxRetries": 0, "backoffDelayMs": 1}}})
    wait_bound(engine, function_id)
    for n in range(3):
        call(iii, "iii::durable::publish", {"topic": topic, "data": {"n": n}})
    letters = [found.get(timeout=WAIT) for _ in range(3)]

    assert {"name": topic, "broker_type": "builtin", "subscriber_count": 1} in call(
        iii, "engine::queue::list_topics", {})
    assert "default" in [t["name"] for t in call(iii, "engine::queue::list_topics", {})]
    assert call(iii, "engine::queue::topic_stats", {"topic": topic}) == {
        "depth": 0, "consumer_count": 1, "dlq_depth": 3, "config": None}
    assert {"topic": topic, "broker_type": "builtin", "message_count": 3} in call(
        iii, "engine::queue::dlq_topics", {})
    newest_first = call(iii, "engine::queue::dlq_messages", {"topic": topic, "limit": 2})
    rest = call(iii, "engine::queue::dlq_messages", {"queue": topic, "offset": 2})
    assert len(newest_first) == 2 and len(rest) == 1
    assert {m["id"] for m in newest_first + rest} == {m.id for m in letters}
    assert newest_first[0]["failed_at"] >= rest[0]["failed_at"]

    first, second, third = letters
    assert call(iii, "iii::queue::discard_message",
                {"queue": topic, "message_id": first.id}) == {
        "queue": topic, "message_id": first.id, "redriven": 1}
    assert call(iii, "iii::queue::discard_message",
                {"queue": topic, "message_id": first.id})["redriven"] == 0
    assert call(iii, "iii::queue::redrive_message",
                {"topic": topic, "message_id": second.id}) == {
        "queue": topic, "message_id": second.id, "redriven": 1}
    assert done.get(timeout=WAIT) == second.data  # the handler works now
    [left] = call(iii, "engine::queue::dlq_messages", {"topic": topic})
    assert left["id"] == third.id and left["payload"] == third.data
    assert call(iii, "iii::queue::redrive", {"topic": topic}) == {"queue": topic,
                                                                   "redriven": 1}
    assert done.get(timeout=WAIT) == third.data
    assert call(iii, "engine::queue::topic_stats", {"queue": topic})["dlq_depth"] == 0



def test_a_topic_nobody_consumes_any_more_reports_no_consumers(
        engine: EngineThread, official: Factory) -> None:
    # Watching consumer_count is how one notices that a topic's subscribers died; the
    # name then resolved to an unknown named queue and showed the default config's 10.
    observer = official("admin-observer")
    function_id, topic = unique("admin"), unique("orders")
    subscriber = iii_rx.connect_sync(engine.url, name=unique("admin-subscriber"))
    subscriber.register_function(function_id, lambda data: None)
    subscriber.register_trigger(type="durable:subscriber", function_id=function_id,
                                config={"topic": topic})
    wait_bound(engine, function_id)
    assert call(observer, "engine::queue::topic_stats", {"topic": topic})["consumer_count"] == 1
    subscriber.close()
    wait_until(lambda: not bindings_of(engine, function_id) or None, "the binding to go")
    for name in (topic, unique("never-used")):
        assert call(observer, "engine::queue::topic_stats", {"topic": name}) == {
            "depth": 0, "consumer_count": 0, "dlq_depth": 0, "config": None}, name
    assert call(observer, "engine::queue::topic_stats", {"topic": "default"})[
        "consumer_count"] == 10  # the default named queue exists and has its slots

def test_named_queue_stats_and_bad_input(engine: EngineThread, official: Factory) -> None:
    iii = official("admin-named")
    function_id, done = failing_first(iii, 0)
    queue_name = unique("jobs")
    iii.trigger({"function_id": function_id, "payload": {"job": 1},
                 "action": TriggerAction.Enqueue(queue=queue_name)})
    assert done.get(timeout=WAIT) == {"job": 1}
    # the delivery is done once the handler's answer reached the engine (no event says so)
    stats = wait_until(lambda: (s if (s := call(iii, "engine::queue::topic_stats", {
        "topic": queue_name}))["depth"] == 0 else None), "the delivery to be acknowledged")
    # a queue made by its first enqueue is forgotten once drained (it was kept, with a task,
    # for the engine's life: one per name ever used), and then nothing consumes it
    assert stats == {"depth": 0, "consumer_count": 0, "dlq_depth": 0, "config": None}
    assert queue_name not in [t["name"] for t in call(iii, "engine::queue::list_topics", {})]
    for function, payload, code in (
            ("iii::queue::redrive", {"queue": ""}, "queue_not_set"),
            ("iii::queue::redrive_message", {"queue": "q", "message_id": ""},
             "message_id_not_set"),
            ("iii::queue::discard_message", {"queue": "", "message_id": "m"}, "queue_not_set"),
            ("engine::queue::topic_stats", {"topic": ""}, "topic_required"),
            ("engine::queue::dlq_messages", {"topic": "t", "limit": -1},
             "deserialization_error"),
            ("engine::queue::dlq_messages", {"topic": "t", "limit": 10**30},
             "deserialization_error"),  # past u64, as the Rust engine refuses
            ("iii::queue::redrive_message", {"queue": "q"}, "deserialization_error")):
        with pytest.raises(InvocationError) as caught:
            call(iii, function, payload)
        assert caught.value.code == code, (function, payload)
