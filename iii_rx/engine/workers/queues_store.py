"""Storage of the durable-queue worker: its messages, its settings, the adapter interface.

:class:`QueueAdapter` is what the queue worker (:mod:`iii_rx.engine.workers.queues`) needs of
a store: per internal queue a FIFO of pending messages (bounded: a push over the limit raises
:class:`QueueFull`), the messages in flight, and a dead-letter list (bounded: the oldest dead
letter is dropped to make room). :class:`MemoryQueueAdapter` keeps them in this process,
:class:`~iii_rx.engine.workers.queues_sqlite.SqliteQueueAdapter` in a file; a Redis or SQL
server adapter can follow without touching the worker.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "DEFAULT_QUEUE",
    "NAMED_PREFIX",
    "MemoryQueueAdapter",
    "Message",
    "QueueAdapter",
    "QueueConfig",
    "QueueFull",
]

DEFAULT_QUEUE = "default"
"""The named queue that always exists (as in the Rust engine)."""
NAMED_PREFIX = "__fn_queue::"
"""The store key of named queue ``q`` is ``NAMED_PREFIX + q`` (a topic subscriber's is
``{topic}::{function}@{namespace}``)."""


@dataclass(frozen=True)
class QueueConfig:
    """How one queue delivers (the Rust engine's ``queue_configs`` entry, in milliseconds).

    ``max_retries`` counts retries after the first attempt (so ``3`` = 4 attempts); the
    ``n``-th retry waits ``backoff_ms * 2**(n-1)`` ms (at most ``max_backoff_ms``).
    ``fifo`` delivers one message at a time and retries it inline (the queue waits);
    ``message_group_field`` names the field every FIFO message must carry (named queues).
    ``max_pending`` bounds the messages waiting in the queue (a publish over it fails with
    ``queue_full``), ``max_dead_letters`` the dead-letter list (the oldest is dropped).
    """

    max_retries: int = 3
    backoff_ms: int = 1000
    concurrency: int = 10
    fifo: bool = False
    message_group_field: str | None = None
    max_pending: int = 10_000
    max_dead_letters: int = 1_000
    max_backoff_ms: int = 3_600_000

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 40)
        delay_ms: int = min(self.backoff_ms * (1 << exponent), self.max_backoff_ms)
        return delay_ms / 1000.0

    @property
    def slots(self) -> int:
        """How many deliveries may run at once (FIFO: one)."""
        return 1 if self.fifo else max(1, self.concurrency)


@dataclass(eq=False)
class Message:
    """One queued delivery: ``function_id`` in ``namespace`` gets ``data``."""

    function_id: str
    namespace: str
    data: Any
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0
    traceparent: str | None = None
    baggage: str | None = None
    enqueued_at: float = field(default_factory=time.time)
    last_error: str | None = None
    failed_at: float | None = None
    """When it was dead-lettered (seconds since the epoch)."""

    def describe(self) -> dict[str, Any]:
        """A dead letter as ``engine::queue::dlq_messages`` lists it: the Rust engine's fields
        (``failed_at`` in seconds, ``retries`` = attempts made) plus ``function_id``."""
        return {"id": self.id, "payload": self.data, "error": self.last_error or "unknown",
                "failed_at": int(self.failed_at or 0), "retries": self.attempts,
                "size_bytes": len(json.dumps(self.to_json())),
                "function_id": self.function_id}

    def to_json(self) -> dict[str, Any]:
        """Every field, as JSON (what a file adapter stores)."""
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> Message:
        """The message :meth:`to_json` described."""
        return cls(**fields)


class QueueFull(Exception):
    """A push would exceed the queue's ``max_pending``."""

    def __init__(self, queue: str, limit: int) -> None:
        super().__init__(f"queue {queue!r} is full: {limit} messages are waiting for delivery "
                         f"(max_pending); the message was not accepted")
        self.queue = queue
        self.limit = limit


class QueueAdapter(Protocol):
    """Where the queue worker keeps messages: per queue, the waiting messages (a FIFO), those
    taken for delivery and not yet done (*in flight*), and the dead letters.

    A message stays in the store from :meth:`push` until :meth:`ack` or a dead letter's
    removal; a file adapter that reopens after a crash puts the messages that were in flight
    back in front of the waiting ones (at-least-once delivery).
    """

    async def open(self) -> None:
        """Get ready (open files); called when the engine starts."""
        ...

    async def close(self) -> None:
        """Release what :meth:`open` took; called when the engine stops."""
        ...

    def push(self, queue: str, message: Message, limit: int) -> None:
        """Append ``message``; raise :class:`QueueFull` if ``limit`` messages already wait."""
        ...

    def take(self, queue: str) -> Message | None:
        """The oldest waiting message, now in flight; ``None`` if none waits."""
        ...

    def requeue(self, queue: str, message: Message) -> None:
        """Put an in-flight (or redriven) message back at the end of the waiting ones, with its
        current fields (never refused: it was already accepted)."""
        ...

    def ack(self, queue: str, message: Message) -> None:
        """Forget an in-flight message: it was delivered (or skipped)."""
        ...

    def pending(self, queue: str) -> int:
        """How many messages wait in ``queue``."""
        ...

    def in_flight(self, queue: str) -> int:
        """How many messages of ``queue`` are taken and not yet done."""
        ...

    def dead_letter(self, queue: str, message: Message, limit: int) -> Message | None:
        """Move an in-flight message to the dead letters; returns the oldest dead letter dropped
        to stay within ``limit``, if any."""
        ...

    def dead_letters(self, queue: str) -> list[Message]:
        """The dead letters of ``queue``, oldest first."""
        ...

    def take_dead_letters(self, queue: str, message_id: str | None = None) -> list[Message]:
        """Remove and return the dead letters of ``queue`` (only ``message_id``, if given)."""
        ...

    def queues(self) -> list[str]:
        """Every queue holding messages (waiting, in flight) or dead letters."""
        ...


class MemoryQueueAdapter:
    """:class:`QueueAdapter` in this process's memory (lost when the engine stops)."""

    def __init__(self) -> None:
        self._pending: dict[str, deque[Message]] = {}
        self._flight: dict[str, dict[str, Message]] = {}
        self._dead: dict[str, deque[Message]] = {}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def push(self, queue: str, message: Message, limit: int) -> None:
        waiting = self._pending.setdefault(queue, deque())
        if len(waiting) >= limit:
            raise QueueFull(queue, limit)
        waiting.append(message)

    def take(self, queue: str) -> Message | None:
        waiting = self._pending.get(queue)
        if not waiting:
            return None
        message = waiting.popleft()
        if not waiting:
            del self._pending[queue]
        self._flight.setdefault(queue, {})[message.id] = message
        return message

    def _land(self, queue: str, message: Message) -> None:
        flying = self._flight.get(queue)
        if flying is not None and flying.pop(message.id, None) is not None and not flying:
            del self._flight[queue]

    def requeue(self, queue: str, message: Message) -> None:
        self._land(queue, message)
        self._pending.setdefault(queue, deque()).append(message)

    def ack(self, queue: str, message: Message) -> None:
        self._land(queue, message)

    def pending(self, queue: str) -> int:
        return len(self._pending.get(queue, ()))

    def in_flight(self, queue: str) -> int:
        return len(self._flight.get(queue, ()))

    def dead_letter(self, queue: str, message: Message, limit: int) -> Message | None:
        self._land(queue, message)
        dead = self._dead.setdefault(queue, deque())
        dropped = dead.popleft() if len(dead) >= max(limit, 1) else None
        dead.append(message)
        return dropped

    def dead_letters(self, queue: str) -> list[Message]:
        return list(self._dead.get(queue, ()))

    def take_dead_letters(self, queue: str, message_id: str | None = None) -> list[Message]:
        dead = self._dead.get(queue)
        if dead is None:
            return []
        if message_id is None:
            del self._dead[queue]
            return list(dead)
        taken = [m for m in dead if m.id == message_id]
        if taken:
            dead.remove(taken[0])
            if not dead:
                del self._dead[queue]
        return taken[:1]

    def queues(self) -> list[str]:
        return sorted(set(self._pending) | set(self._flight) | set(self._dead))
