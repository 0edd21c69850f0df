"""Stream items and queued messages in sqlite files (``stream_file`` / ``queue_file``): an engine
restarted on the same files has lost nothing (items, messages waiting for a retry, dead
letters), with the official ``iii-sdk`` as client; and the adapters' own contracts."""

from __future__ import annotations

import asyncio
import queue
import threading
from pathlib import Path
from typing import Any

import pytest
from builtins_helpers import (
    ENGINE_TIMERS,
    WAIT,
    EngineProcess,
    call,
    on_engine,
    unique,
    wait_until,
)
from iii import InitOptions, TriggerAction, register_worker

from iii_rx.engine import Engine, EngineThread
from iii_rx.engine.workers import SqliteQueueAdapter, SqliteStreamAdapter
from iii_rx.engine.workers._common import MISSING
from iii_rx.engine.workers.queues import NAMED_PREFIX
from iii_rx.engine.workers.queues_store import Message, QueueConfig, QueueFull
from iii_rx.engine.workers.sqlite_common import StoreFileError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def start(tmp_path: Path, default: QueueConfig) -> EngineThread:
    engine = Engine(port=0, stream_file=tmp_path / "streams.db",
                    queue_file=tmp_path / "queues.db", **ENGINE_TIMERS)
    engine.workers.queues.default_config = default
    engine.workers.queues.queue_configs["doomed"] = QueueConfig(max_retries=0, backoff_ms=1)
    return EngineThread(engine)


def worker(handle: EngineThread) -> Any:
    return register_worker(handle.url, InitOptions(
        worker_name=unique("files"), otel={"enabled": False}, enable_metrics_reporting=False,
        invocation_timeout_ms=int(WAIT * 1000)))


def test_a_restart_loses_no_item_no_message_and_no_dead_letter(tmp_path: Path) -> None:
    stream, target = unique("board"), unique("files::handler")
    key = {"stream_name": stream, "group_id": "g"}
    # Run 1: nobody serves the target yet; each message fails once and waits a minute.
    first = start(tmp_path, QueueConfig(max_retries=5, backoff_ms=60_000))
    dead: queue.Queue[Message] = queue.Queue()
    on_engine(first, lambda: first.engine.workers.queues.dead_letter_listeners.append(
        lambda _key, message: dead.put(message)))
    iii = worker(first)
    try:
        call(iii, "stream::set", {**key, "item_id": "a", "data": {"n": 1}})
        call(iii, "stream::set", {**key, "item_id": "b", "data": {"n": 2}})
        call(iii, "stream::update", {**key, "item_id": "a",
                                     "ops": [{"type": "increment", "path": "n", "by": 10}]})
        call(iii, "stream::delete", {**key, "item_id": "b"})
        for n in range(2):
            iii.trigger({"function_id": target, "payload": {"job": n},
                         "action": TriggerAction.Enqueue(queue="jobs")})
        iii.trigger({"function_id": target, "payload": {"job": "x"},
                     "action": TriggerAction.Enqueue(queue="doomed")})
        letter = dead.get(timeout=WAIT)
        store = first.engine.workers.queues.store
        wait_until(lambda: on_engine(first, lambda: store.in_flight(NAMED_PREFIX + "jobs")) == 2,
                   "both messages to wait for their retry")
    finally:
        iii.shutdown()
        first.stop()

    # Run 2, same files: retries come quickly; the worker that serves the target arrives late.
    second = start(tmp_path, QueueConfig(max_retries=50, backoff_ms=20, max_backoff_ms=200))
    iii = worker(second)
    try:
        assert call(iii, "stream::list", key) == [{"n": 11}]
        assert call(iii, "stream::get", {**key, "item_id": "b"}) is None
        assert call(iii, "stream::list_groups", {"stream_name": stream}) == ["g"]
        [kept] = call(iii, "engine::queue::dlq_messages", {"queue": "doomed"})
        assert (kept["id"], kept["payload"]) == (letter.id, {"job": "x"})
        got: queue.Queue[Any] = queue.Queue()
        iii.register_function(target, lambda data: got.put(data))
        assert sorted([got.get(timeout=WAIT)["job"], got.get(timeout=WAIT)["job"]]) == [0, 1]
    finally:
        iii.shutdown()
        second.stop()


def test_items_and_in_flight_messages_survive_a_kill(tmp_path: Path) -> None:
    """``--stream-file`` / ``--queue-file``: SIGKILL the engine while a durable delivery is in
    flight; the restarted engine has every item and delivers the message again once its
    subscriber binds."""
    flags = ("--stream-file", str(tmp_path / "s.db"), "--queue-file", str(tmp_path / "q.db"))
    topic, subscriber = unique("orders"), unique("files::subscriber")
    key = {"stream_name": unique("feed"), "group_id": "g"}
    release = threading.Event()
    arrived: queue.Queue[Any] = queue.Queue()

    def stuck(data: Any) -> None:  # answers only after the engine is gone
        arrived.put(data)
        release.wait(WAIT)

    first = EngineProcess(tmp_path, *flags)
    iii = register_worker(first.url, InitOptions(worker_name=unique("files"),
                                                 otel={"enabled": False},
                                                 enable_metrics_reporting=False))
    try:
        for n in range(20):
            call(iii, "stream::set", {**key, "item_id": f"i{n}", "data": {"n": n}})
        iii.register_function(subscriber, stuck)
        iii.register_trigger({"type": "durable:subscriber", "function_id": subscriber,
                              "config": {"topic": topic}})
        wait_until(lambda: any(  # active once the provider has it (no event says so)
            t["function_id"] == subscriber for t in call(
                iii, "engine::registered-triggers::list", {})["registered_triggers"]),
            "the subscriber to bind")
        call(iii, "iii::durable::publish", {"topic": topic, "data": {"order": 1}})
        assert arrived.get(timeout=WAIT) == {"order": 1}
        first.kill()
    finally:
        release.set()
        iii.shutdown()
        first.stop()

    second = EngineProcess(tmp_path, *flags)
    iii = register_worker(second.url, InitOptions(worker_name=unique("files"),
                                                  otel={"enabled": False},
                                                  enable_metrics_reporting=False))
    try:
        assert call(iii, "stream::list", key) == [{"n": n} for n in range(20)]
        again: queue.Queue[Any] = queue.Queue()
        iii.register_function(subscriber, lambda data: again.put(data))
        iii.register_trigger({"type": "durable:subscriber", "function_id": subscriber,
                              "config": {"topic": topic}})
        assert again.get(timeout=WAIT) == {"order": 1}
    finally:
        iii.shutdown()
        second.stop()


# ----------------------------------------------------------------------------- the adapters


def test_sqlite_stream_adapter_keeps_order_and_survives_reopening(tmp_path: Path) -> None:
    async def run() -> None:
        path = tmp_path / "s.db"
        adapter = SqliteStreamAdapter(path)
        await adapter.open()
        assert await adapter.set("s", "g", "b", 1) is MISSING
        await adapter.set("s", "g", "a", None)  # a stored null is a value
        assert await adapter.set("s", "g", "b", 2) == 1  # keeps its place
        await adapter.set("s", "h", "x", [1])
        assert await adapter.update("s", "h", "x", lambda old: [*old, 2]) == ([1], [1, 2])
        await adapter.close()
        reopened = SqliteStreamAdapter(path)
        await reopened.open()
        assert await reopened.items("s", "g") == [2, None]
        assert await reopened.get("s", "g", "a") is None
        assert await reopened.groups("s") == ["g", "h"]
        assert await reopened.streams() == {"s": ["g", "h"]}
        assert await reopened.delete("s", "h", "x") == [1, 2]
        assert await reopened.delete("s", "h", "x") is MISSING
        assert await reopened.groups("s") == ["g"]
        await reopened.close()

    asyncio.run(run())


def test_sqlite_queue_adapter_redelivers_what_was_in_flight_first(tmp_path: Path) -> None:
    async def run() -> None:
        path = tmp_path / "q.db"
        adapter = SqliteQueueAdapter(path)
        await adapter.open()
        messages = [Message("f", "default", {"n": n}) for n in range(4)]
        for message in messages[:3]:
            adapter.push("q", message, limit=3)
        with pytest.raises(QueueFull):
            adapter.push("q", messages[3], limit=3)
        taken = adapter.take("q")
        assert taken is not None and taken.data == {"n": 0}
        assert (adapter.pending("q"), adapter.in_flight("q")) == (2, 1)
        done = adapter.take("q")
        assert done is not None
        adapter.ack("q", done)
        failed = adapter.take("q")
        assert failed is not None
        failed.attempts, failed.last_error = 2, "boom"
        assert adapter.dead_letter("q", failed, limit=1) is None
        other = Message("f", "default", "late")
        adapter.push("q", other, limit=3)
        taken_again = adapter.take("q")
        assert taken_again is not None and taken_again.id == other.id
        assert adapter.dead_letter("q", taken_again, limit=1).id == failed.id  # type: ignore[union-attr]
        await adapter.close()

        reopened = SqliteQueueAdapter(path)
        await reopened.open()
        assert (reopened.pending("q"), reopened.in_flight("q")) == (1, 0)
        first = reopened.take("q")
        assert first is not None and first.id == messages[0].id  # it was in flight
        assert [m.id for m in reopened.dead_letters("q")] == [other.id]
        assert reopened.take_dead_letters("q", "nope") == []
        assert [m.id for m in reopened.take_dead_letters("q", other.id)] == [other.id]
        assert reopened.queues() == ["q"]
        await reopened.close()

    asyncio.run(run())


def test_a_queue_file_is_one_engines_at_a_time(tmp_path: Path) -> None:
    """A second engine on the same queue file would put the first one's messages in flight
    back to pending at its start, and both would deliver them: it is refused, naming the
    file, until the first one closes it."""
    async def run() -> None:
        path = tmp_path / "q.db"
        first = SqliteQueueAdapter(path)
        await first.open()
        first.push("q", Message("f", "default", 1), limit=10)
        taken = first.take("q")
        assert taken is not None
        second = SqliteQueueAdapter(path, busy_timeout_ms=50)
        with pytest.raises(StoreFileError, match="another program holds it") as refused:
            await second.open()
        assert str(path) in str(refused.value)
        assert (first.pending("q"), first.in_flight("q")) == (0, 1)  # not put back
        first.ack("q", taken)
        await first.close()

        await second.open()
        assert (second.pending("q"), second.in_flight("q")) == (0, 0)
        await second.close()

    asyncio.run(run())


def test_a_topics_dead_letters_are_listed_after_a_restart_before_it_binds(
        tmp_path: Path) -> None:
    """A subscriber's queue is known by its topic from its binding; after a restart its dead
    letters are in the file before any worker binds again, and the inspection functions must
    find them by the topic (the subscriber's function id contains ``::`` too)."""
    async def run() -> None:
        path = tmp_path / "queues.db"
        adapter = SqliteQueueAdapter(path)
        await adapter.open()
        letter = Message("billing::charge", "default", {"order": 7})
        key = "orders::created::billing::charge@default"
        adapter.push(key, letter, limit=10)
        taken = adapter.take(key)
        assert taken is not None
        taken.attempts, taken.last_error = 3, "card declined"
        adapter.dead_letter(key, taken, limit=10)
        await adapter.close()

        async with Engine(port=0, queue_file=path, **ENGINE_TIMERS) as engine:
            [listed] = await engine.call("engine::queue::dlq_messages",
                                         {"topic": "orders::created"})
            assert (listed["id"], listed["error"]) == (letter.id, "card declined")
            topics = await engine.call("engine::queue::dlq_topics", {})
            assert {"topic": "orders::created", "broker_type": "builtin",
                    "message_count": 1} in topics
            assert await engine.call("iii::queue::redrive", {"queue": "orders::created"}) == {
                "queue": "orders::created", "redriven": 1}

    asyncio.run(run())
