"""The engine's built-in workers, each an engine extension behind
:class:`~iii_rx.engine.services.EngineServices` (see ``docs/engine.md``, "Built-in workers").

=====================  =========================================  ==========================
worker                 functions                                  trigger types
=====================  =========================================  ==========================
``iii-state``          ``state::set/get/update/delete/list/        ``state``
                       list_groups``
``iii-pubsub``         ``publish``                                ``subscribe``
``iii-cron``           (none)                                     ``cron``
``iii-observability``  ``engine::log::*``, ``engine::logs::*``     ``log``
``iii-queue``          ``iii::durable::publish``,                  ``durable:subscriber``
                       ``engine::queue::enqueue``, ``iii::queue::
                       redrive/redrive_message/discard_message``,
                       ``engine::queue::list_topics/topic_stats/
                       dlq_topics/dlq_messages``
``iii-stream``         ``stream::set/get/update/delete/list/      ``stream``, ``stream:join``,
                       list_groups/list_all/send``                ``stream:leave``
=====================  =========================================  ==========================

:class:`BuiltinWorkers` makes one of each for an engine (``Engine.__init__`` does); a worker
added later (streams, queues) is one more module here, one more field, and one more entry in
:meth:`BuiltinWorkers.extensions`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from iii_rx.engine.services import EngineExtension
from iii_rx.engine.workers.cron import CronWorker
from iii_rx.engine.workers.logs import LogsWorker
from iii_rx.engine.workers.pubsub import PubSubWorker
from iii_rx.engine.workers.queues import QueueWorker
from iii_rx.engine.workers.queues_sqlite import SqliteQueueAdapter
from iii_rx.engine.workers.queues_store import MemoryQueueAdapter, QueueAdapter, QueueConfig
from iii_rx.engine.workers.state import StateWorker
from iii_rx.engine.workers.state_sqlite import SqliteStateAdapter
from iii_rx.engine.workers.state_store import MemoryStateAdapter, StateAdapter
from iii_rx.engine.workers.streams import StreamWorker
from iii_rx.engine.workers.streams_sqlite import SqliteStreamAdapter
from iii_rx.engine.workers.streams_store import MemoryStreamAdapter, StreamAdapter

__all__ = [
    "BuiltinWorkers",
    "CronWorker",
    "LogsWorker",
    "MemoryStateAdapter",
    "PubSubWorker",
    "QueueAdapter",
    "QueueConfig",
    "QueueWorker",
    "MemoryQueueAdapter",
    "MemoryStreamAdapter",
    "StreamAdapter",
    "StreamWorker",
    "SqliteQueueAdapter",
    "SqliteStateAdapter",
    "SqliteStreamAdapter",
    "StateAdapter",
    "StateWorker",
]


@dataclass
class BuiltinWorkers:
    """One engine's built-in workers (reachable as ``engine.workers`` for tests and tools)."""

    state: StateWorker = field(default_factory=StateWorker)
    pubsub: PubSubWorker = field(default_factory=PubSubWorker)
    cron: CronWorker = field(default_factory=CronWorker)
    logs: LogsWorker = field(default_factory=LogsWorker)
    queues: QueueWorker = field(default_factory=QueueWorker)
    streams: StreamWorker = field(default_factory=StreamWorker)

    @classmethod
    def create(cls, *, state_file: str | os.PathLike[str] | None = None,
               stream_file: str | os.PathLike[str] | None = None,
               queue_file: str | os.PathLike[str] | None = None) -> BuiltinWorkers:
        """The workers of an engine: state, stream items and queued messages in the sqlite
        files given, else in memory."""
        state: StateAdapter = (SqliteStateAdapter(state_file) if state_file is not None
                               else MemoryStateAdapter())
        streams: StreamAdapter = (SqliteStreamAdapter(stream_file) if stream_file is not None
                                  else MemoryStreamAdapter())
        queues: QueueAdapter = (SqliteQueueAdapter(queue_file) if queue_file is not None
                                else MemoryQueueAdapter())
        return cls(state=StateWorker(state), streams=StreamWorker(streams),
                   queues=QueueWorker(queues))

    def extensions(self) -> list[EngineExtension]:
        """The extensions to start with the engine, in order (logs first: always present)."""
        return [self.logs, self.state, self.pubsub, self.cron, self.queues,
                self.streams]
