"""Storage of the durable-queue worker: its messages, its settings, the adapter interface.

:class:`QueueAdapter` is what the queue worker (:mod:`iii_rx.engine.workers.queues`) needs of
a store: per internal queue a FIFO of pending messages (bounded: a push over the limit raises
:class:`QueueFull`) and a dead-letter list (bounded: the oldest dead letter is dropped to make
room). :class:`MemoryQueueAdapter` keeps them in this process; a Redis or SQL adapter can
follow without touching the worker.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "DEFAULT_QUEUE",
    "MemoryQueueAdapter",
    "Message",
    "QueueAdapter",
    "QueueConfig",
    "QueueFull",
]

DEFAULT_QUEUE = "default"
"""The named queue that always exists (as in the Rust engine)."""


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

    def describe(self) -> dict[str, Any]:
        """The JSON shape of a dead letter (``engine::queue::dlq_messages``)."""
        return {"id": self.id, "function_id": self.function_id, "namespace": self.namespace,
                "data": self.data, "attempts": self.attempts, "error": self.last_error,
                "enqueued_at": int(self.enqueued_at * 1000)}


class QueueFull(Exception):
    """A push would exceed the queue's ``max_pending``."""

    def __init__(self, queue: str, limit: int) -> None:
        super().__init__(f"queue {queue!r} is full: {limit} messages are waiting for delivery "
                         f"(max_pending); the message was not accepted")
        self.queue = queue
        self.limit = limit


class QueueAdapter(Protocol):
    """Where the queue worker keeps messages (one FIFO and one dead-letter list per queue)."""

    def push(self, queue: str, message: Message, limit: int) -> None:
        """Append ``message``; raise :class:`QueueFull` if ``limit`` messages already wait."""
        ...

    def requeue(self, queue: str, message: Message) -> None:
        """Put a message back for another attempt (never refused: it was already accepted)."""
        ...

    def take(self, queue: str) -> Message | None:
        """Remove and return the oldest waiting message, ``None`` if there is none."""
        ...

    def pending(self, queue: str) -> int:
        """How many messages wait in ``queue``."""
        ...

    def dead_letter(self, queue: str, message: Message, limit: int) -> Message | None:
        """Keep ``message`` as a dead letter; returns the one dropped to stay within
        ``limit``."""
        ...

    def dead_letters(self, queue: str) -> list[Message]:
        """The dead letters of ``queue``, oldest first."""
        ...

    def take_dead_letters(self, queue: str) -> list[Message]:
        """Remove and return every dead letter of ``queue`` (a redrive)."""
        ...

    def queues(self) -> list[str]:
        """Every queue holding messages or dead letters."""
        ...


class MemoryQueueAdapter:
    """:class:`QueueAdapter` in this process's memory (lost when the engine stops)."""

    def __init__(self) -> None:
        self._pending: dict[str, deque[Message]] = {}
        self._dead: dict[str, deque[Message]] = {}

    def push(self, queue: str, message: Message, limit: int) -> None:
        waiting = self._pending.setdefault(queue, deque())
        if len(waiting) >= limit:
            raise QueueFull(queue, limit)
        waiting.append(message)

    def requeue(self, queue: str, message: Message) -> None:
        self._pending.setdefault(queue, deque()).append(message)

    def take(self, queue: str) -> Message | None:
        waiting = self._pending.get(queue)
        if not waiting:
            return None
        message = waiting.popleft()
        if not waiting:
            del self._pending[queue]
        return message

    def pending(self, queue: str) -> int:
        return len(self._pending.get(queue, ()))

    def dead_letter(self, queue: str, message: Message, limit: int) -> Message | None:
        dead = self._dead.setdefault(queue, deque())
        dropped = dead.popleft() if len(dead) >= max(limit, 1) else None
        dead.append(message)
        return dropped

    def dead_letters(self, queue: str) -> list[Message]:
        return list(self._dead.get(queue, ()))

    def take_dead_letters(self, queue: str) -> list[Message]:
        return list(self._dead.pop(queue, ()))

    def queues(self) -> list[str]:
        return sorted(set(self._pending) | set(self._dead))
