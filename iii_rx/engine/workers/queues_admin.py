"""Dead letters and inspection of the durable queues, as the Rust engine names them.

A ``queue`` or ``topic`` argument is a topic (every subscriber's queue of it), or else a named
queue:

* ``iii::queue::redrive {queue}`` → ``{queue, redriven}``: every dead letter back in its queue;
* ``iii::queue::redrive_message`` / ``iii::queue::discard_message {queue, message_id}`` →
  ``{queue, message_id, redriven: 0 | 1}``: one dead letter back, or dropped;
* ``engine::queue::list_topics`` → ``[{name, broker_type, subscriber_count}]``;
* ``engine::queue::topic_stats {topic}`` → ``{depth, consumer_count, dlq_depth, config}``;
* ``engine::queue::dlq_topics`` → ``[{topic, broker_type, message_count}]``;
* ``engine::queue::dlq_messages {topic, offset?, limit?}`` → newest first, ``[{id, payload,
  error, failed_at, retries, size_bytes, function_id}]``.

They read and change the store of a :class:`~iii_rx.engine.workers.queues.QueueWorker`, which
keeps the delivery.
"""

from __future__ import annotations

from typing import Any, Protocol

from iii_rx.engine.registry import CallContext
from iii_rx.engine.services import EngineServices
from iii_rx.engine.workers._common import count_or, require_object, require_str
from iii_rx.engine.workers.queues_store import NAMED_PREFIX, Message, QueueAdapter, QueueConfig
from iii_rx.errors import IIIInvocationError

__all__ = ["DISCARD_MESSAGE", "DLQ_MESSAGES", "DLQ_TOPICS", "LIST_TOPICS", "REDRIVE",
           "REDRIVE_MESSAGE", "TOPIC_STATS", "QueueAdmin", "Queues"]

REDRIVE = "iii::queue::redrive"
REDRIVE_MESSAGE = "iii::queue::redrive_message"
DISCARD_MESSAGE = "iii::queue::discard_message"
LIST_TOPICS = "engine::queue::list_topics"
TOPIC_STATS = "engine::queue::topic_stats"
DLQ_TOPICS = "engine::queue::dlq_topics"
DLQ_MESSAGES = "engine::queue::dlq_messages"


class Queues(Protocol):
    """What the functions need of the queue worker."""

    store: QueueAdapter
    default_config: QueueConfig
    queue_configs: dict[str, QueueConfig]

    def keys_of(self, name: str) -> list[str]: ...

    def topics(self) -> list[str]: ...

    def subscriber_count(self, topic: str) -> int: ...

    def named_queues(self) -> list[str]: ...

    def revive(self, key: str, message: Message) -> None: ...

    def tidy(self, key: str) -> None: ...


class QueueAdmin:
    """The dead-letter and inspection functions over one queue worker (module docstring)."""

    def __init__(self, queues: Queues) -> None:
        self.queues = queues

    def install(self, services: EngineServices, worker: str) -> None:
        """Add the functions, as ``worker``'s."""
        for function_id, handler, description in (
                (REDRIVE, self._redrive, "Move a queue's dead letters back to the queue"),
                (REDRIVE_MESSAGE, self._redrive_message,
                 "Move one dead letter back to its queue"),
                (DISCARD_MESSAGE, self._discard_message, "Drop one dead letter"),
                (LIST_TOPICS, self._list_topics, "The topics and named queues"),
                (TOPIC_STATS, self._topic_stats, "Depth, consumers and dead letters of a "
                                                 "topic or named queue"),
                (DLQ_TOPICS, self._dlq_topics, "Dead-letter counts per topic and queue"),
                (DLQ_MESSAGES, self._dlq_messages, "The dead letters of a topic or queue")):
            services.add_function(function_id, handler, worker=worker, inline=True,
                                  description=description)

    def _depths(self, keys: list[str]) -> tuple[int, int]:
        """``(waiting + in flight, dead letters)`` over ``keys``."""
        store = self.queues.store
        depth = sum(store.pending(k) + store.in_flight(k) for k in keys)
        return depth, sum(len(store.dead_letters(k)) for k in keys)

    def _topics_and_queues(self) -> list[tuple[str, list[str], int]]:
        """``(name, internal keys, consumers)`` of every topic, then every named queue."""
        rows: list[tuple[str, list[str], int]] = []
        for topic in self.queues.topics():
            rows.append((topic, self.queues.keys_of(topic),
                         self.queues.subscriber_count(topic)))
        for name in self.queues.named_queues():
            config = self.queues.queue_configs.get(name, self.queues.default_config)
            rows.append((name, [NAMED_PREFIX + name], config.slots))
        return rows

    async def _redrive(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        name = _queue_name(REDRIVE, data, "queue", "topic")
        total = 0
        for key in self.queues.keys_of(name):
            for message in self.queues.store.take_dead_letters(key):
                self.queues.revive(key, message)
                total += 1
        return {"queue": name, "redriven": total}

    async def _one_dead_letter(self, function_id: str, data: Any,
                               redrive: bool) -> dict[str, Any]:
        name = _queue_name(function_id, data, "queue", "topic")
        message_id = require_str(function_id, data, "message_id")
        if not message_id:
            raise IIIInvocationError("message_id_not_set", "Message ID is required")
        found = 0
        for key in self.queues.keys_of(name):
            for message in self.queues.store.take_dead_letters(key, message_id):
                if redrive:
                    self.queues.revive(key, message)
                found += 1
            if not redrive:
                self.queues.tidy(key)  # its last dead letter may have been what kept it
        return {"queue": name, "message_id": message_id, "redriven": found}

    async def _redrive_message(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        return await self._one_dead_letter(REDRIVE_MESSAGE, data, redrive=True)

    async def _discard_message(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        return await self._one_dead_letter(DISCARD_MESSAGE, data, redrive=False)

    async def _list_topics(self, data: Any, ctx: CallContext) -> list[dict[str, Any]]:
        return [{"name": name, "broker_type": "builtin", "subscriber_count": consumers}
                for name, _keys, consumers in self._topics_and_queues()]

    async def _topic_stats(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        name = _queue_name(TOPIC_STATS, data, "topic", "queue", code="topic_required")
        keys = self.queues.keys_of(name)
        depth, dead = self._depths(keys)
        if keys[0].startswith(NAMED_PREFIX):
            # A name that is neither a topic nor a known named queue (a topic whose last
            # subscriber left, a drained ad-hoc queue, a typo) has no consumers, as in the
            # Rust engine; the default config's slots would show 10 where nobody consumes.
            known = name in self.queues.named_queues()
            consumers = (self.queues.queue_configs.get(name, self.queues.default_config).slots
                         if known else 0)
        else:
            consumers = self.queues.subscriber_count(name)
        return {"depth": depth, "consumer_count": consumers, "dlq_depth": dead,
                "config": None}

    async def _dlq_topics(self, data: Any, ctx: CallContext) -> list[dict[str, Any]]:
        return [{"topic": name, "broker_type": "builtin",
                 "message_count": self._depths(keys)[1]}
                for name, keys, _consumers in self._topics_and_queues()]

    async def _dlq_messages(self, data: Any, ctx: CallContext) -> list[dict[str, Any]]:
        name = _queue_name(DLQ_MESSAGES, data, "topic", "queue", code="topic_required")
        offset = count_or(DLQ_MESSAGES, data, "offset", 0)
        limit = count_or(DLQ_MESSAGES, data, "limit", 50)
        store = self.queues.store
        letters = [m for key in self.queues.keys_of(name) for m in store.dead_letters(key)]
        letters.sort(key=lambda m: m.failed_at or 0.0, reverse=True)  # newest first
        return [m.describe() for m in letters[offset:offset + limit]]


def _queue_name(function_id: str, data: Any, field: str, alias: str,
                code: str = "queue_not_set") -> str:
    """The queue or topic a function is about (``field``, or its ``alias``), non-empty."""
    data = require_object(function_id, data)
    key = field if field in data or alias not in data else alias
    name = require_str(function_id, data, key)
    if not name:
        if code == "topic_required":
            raise IIIInvocationError(code, "topic is required")
        raise IIIInvocationError(code, "Queue name is required")
    return name

