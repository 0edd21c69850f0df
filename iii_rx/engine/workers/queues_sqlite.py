"""A queue adapter in one sqlite file: queued messages and dead letters survive restarts and kills.

``Engine(queue_file="queues.db")`` / ``iii-rx engine --queue-file queues.db`` select it (the Rust
engine's ``builtin`` queue adapter with ``store_method: file_based``). A publish or enqueue is
committed before it answers (:mod:`~iii_rx.engine.workers.sqlite_common`); a message leaves the
file only when it was delivered, skipped by its condition, or its dead letter was redriven or
discarded. Messages that were in flight when the engine stopped or died are delivered again
when it restarts, before the ones still waiting (at-least-once delivery; a retry that was
waiting for its backoff runs at once).

One table ``queue_messages (seq, queue, id, state, body)``: ``state`` is ``pending``,
``flight`` or ``dead``; ``seq`` orders a queue (a requeued message gets a new one, so it goes
last); ``body`` is the message as JSON.
"""

from __future__ import annotations

import json
import logging
import os

from iii_rx.engine.workers.queues_store import Message, QueueFull
from iii_rx.engine.workers.sqlite_common import (
    SqliteFile,
    Synchronous,
    dump,
    transaction,
)

__all__ = ["SqliteQueueAdapter"]

log = logging.getLogger("iii_rx.engine.workers")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (queue, id)
);
CREATE INDEX IF NOT EXISTS {table}_by_state ON {table} (queue, state, seq);
"""


class SqliteQueueAdapter(SqliteFile):
    """Queues in the sqlite file ``path`` (created with its directory if missing)."""

    what = "queue"
    exclusive = True
    """One engine per file: a second one would put the first one's messages in flight back
    to pending at its start, and both would deliver them."""

    def __init__(self, path: str | os.PathLike[str], *, table: str = "queue_messages",
                 synchronous: Synchronous = "NORMAL", busy_timeout_ms: int = 5000) -> None:
        super().__init__(path, table=table, synchronous=synchronous,
                         busy_timeout_ms=busy_timeout_ms)

    async def open(self) -> None:
        if not self._open_file(_SCHEMA):
            return
        with transaction(self._conn, self.path):  # what was in flight is delivered again
            back = self._conn.execute(
                f"UPDATE {self.table} SET state = 'pending' WHERE state = 'flight'").rowcount
        log.info("queued messages are kept in %s (%d were in flight)", self.path, back)

    def _count(self, queue: str, state: str) -> int:
        row = self._conn.execute(
            f"SELECT COUNT(*) FROM {self.table} WHERE queue = ? AND state = ?",
            (queue, state)).fetchone()
        return int(row[0])

    def _put(self, queue: str, message: Message, state: str) -> None:
        """Store ``message`` last in ``queue`` with ``state`` (replacing an older row)."""
        self._conn.execute(f"DELETE FROM {self.table} WHERE queue = ? AND id = ?",
                           (queue, message.id))
        self._conn.execute(
            f"INSERT INTO {self.table} (queue, id, state, body) VALUES (?, ?, ?, ?)",
            (queue, message.id, state, dump(message.to_json())))

    def _messages(self, queue: str, state: str) -> list[tuple[int, Message]]:
        rows = self._conn.execute(
            f"SELECT seq, body FROM {self.table} WHERE queue = ? AND state = ? ORDER BY seq",
            (queue, state))
        return [(seq, Message.from_json(json.loads(body))) for seq, body in rows]

    def push(self, queue: str, message: Message, limit: int) -> None:
        with transaction(self._conn, self.path):
            if self._count(queue, "pending") >= limit:
                raise QueueFull(queue, limit)
            self._put(queue, message, "pending")

    def take(self, queue: str) -> Message | None:
        with transaction(self._conn, self.path):
            row = self._conn.execute(
                f"SELECT seq, body FROM {self.table} WHERE queue = ? AND state = 'pending' "
                "ORDER BY seq LIMIT 1", (queue,)).fetchone()
            if row is None:
                return None
            self._conn.execute(f"UPDATE {self.table} SET state = 'flight' WHERE seq = ?",
                               (row[0],))
        return Message.from_json(json.loads(row[1]))

    def requeue(self, queue: str, message: Message) -> None:
        with transaction(self._conn, self.path):
            self._put(queue, message, "pending")

    def ack(self, queue: str, message: Message) -> None:
        with transaction(self._conn, self.path):
            self._conn.execute(f"DELETE FROM {self.table} WHERE queue = ? AND id = ?",
                               (queue, message.id))

    def pending(self, queue: str) -> int:
        return self._count(queue, "pending")

    def in_flight(self, queue: str) -> int:
        return self._count(queue, "flight")

    def dead_letter(self, queue: str, message: Message, limit: int) -> Message | None:
        with transaction(self._conn, self.path):
            self._put(queue, message, "dead")
            dead = self._messages(queue, "dead")
            if len(dead) <= max(limit, 1):
                return None
            seq, dropped = dead[0]
            self._conn.execute(f"DELETE FROM {self.table} WHERE seq = ?", (seq,))
        return dropped

    def dead_letters(self, queue: str) -> list[Message]:
        return [message for _seq, message in self._messages(queue, "dead")]

    def take_dead_letters(self, queue: str, message_id: str | None = None) -> list[Message]:
        with transaction(self._conn, self.path):
            taken = [(seq, m) for seq, m in self._messages(queue, "dead")
                     if message_id is None or m.id == message_id]
            self._conn.executemany(f"DELETE FROM {self.table} WHERE seq = ?",
                                   [(seq,) for seq, _m in taken])
        return [message for _seq, message in taken]

    def queues(self) -> list[str]:
        rows = self._conn.execute(f"SELECT DISTINCT queue FROM {self.table} ORDER BY queue")
        return [queue for (queue,) in rows]
