"""The durable-queue built-in worker (``iii-queue``), as the Rust engine's in-engine queue runs.

Topic queues (durable pub/sub):

* ``iii::durable::publish {topic, data}`` → ``null``. Every distinct function bound to
  ``topic`` with a ``durable:subscriber`` trigger gets ``data`` (exactly as sent) once;
  several bindings of one function (replicas) share one queue and compete. An empty topic
  fails with ``topic_not_set``; a full subscriber queue fails the whole publish with
  ``queue_full`` (nothing is queued). A topic without subscribers keeps nothing.
* ``durable:subscriber`` bindings take ``{"topic": ..., "condition_function_id"?: ...,
  "queue_config"?: {...}}``; ``queue_config`` takes the Rust engine's keys (``maxRetries``,
  ``backoffDelayMs``, ``concurrency``, ``type: "fifo"``) or the snake-case ones
  (``max_retries``, ``backoff_ms``). A binding without a topic is refused at registration.

Named queues (beyond the Rust engine's built-in queue, see ``docs/engine.md``): the engine's
``enqueue`` action (``TriggerAction.Enqueue(queue=...)``) calls ``engine::queue::enqueue``,
which this worker provides: the call is queued on the named queue and delivered to its target
function with the same retries. ``default`` and the queues given to :class:`QueueWorker`
use their settings; any other name is created on first use with the default settings, and
forgotten (see :meth:`QueueWorker.tidy`) once it holds nothing.

Delivery: a failed call (an error result, a missing function, a disconnected handler, a
condition function that fails) is retried after ``backoff_ms * 2**(n-1)`` ms, at most
``max_retries`` times; then the message is dead-lettered. A condition that answers ``false``
skips the message (no retry). Messages stay in the queue while their subscriber is unbound and
flow again when it binds; a publish while a function has no binding is not queued for it (as
on the Rust engine), so a worker that is away misses what is published meanwhile.

Dead letters and inspection (``iii::queue::redrive``, ``engine::queue::dlq_messages``, ...):
:mod:`~iii_rx.engine.workers.queues_admin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from iii_rx.aio import TaskSet
from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.logsafe import RateLimitedLog, printable
from iii_rx.engine.registry import CallContext
from iii_rx.engine.services import EngineServices
from iii_rx.engine.triggers import Binding, BindingRefused, TriggerType
from iii_rx.engine.workers._common import (
    bad_input,
    config_object,
    config_str,
    optional_str,
    require_object,
    require_str,
)
from iii_rx.engine.workers.queues_admin import QueueAdmin
from iii_rx.engine.workers.queues_store import (
    DEFAULT_QUEUE,
    NAMED_PREFIX,
    MemoryQueueAdapter,
    Message,
    QueueAdapter,
    QueueConfig,
    QueueFull,
)
from iii_rx.engine.workers.sqlite_common import StoreFileError
from iii_rx.errors import IIIInvocationError

__all__ = ["DURABLE_PUBLISH", "ENQUEUE", "QueueWorker", "TRIGGER_TYPE"]

log = logging.getLogger("iii_rx.engine.workers")

WORKER_NAME = "iii-queue"
TRIGGER_TYPE = "durable:subscriber"
DURABLE_PUBLISH = "iii::durable::publish"
ENQUEUE = "engine::queue::enqueue"
STORE_RETRY_S = 1.0
"""Seconds between a queue's attempts to take a message while its store fails (a full disk)."""

_SUBSCRIBER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"topic": {"type": "string", "minLength": 1},
                   "condition_function_id": {"type": "string"},
                   "queue_config": {"type": "object"}},
    "required": ["topic"],
}
_PUBLISH_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"topic": {"type": "string"}, "data": {}},
    "required": ["topic", "data"],
}
_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "max_retries": ("maxRetries", "max_retries"),
    "backoff_ms": ("backoffDelayMs", "backoff_delay_ms", "backoff_ms"),
    "concurrency": ("concurrency",),
}

DeadLetterListener = Callable[[str, Message], None]


def _subscriber_config(base: QueueConfig, raw: Any) -> QueueConfig:
    """``base`` overridden by a binding's ``queue_config`` (a bad value refuses the binding)."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise BindingRefused("durable:subscriber `queue_config` must be an object")
    changes: dict[str, Any] = {}
    for name, keys in _CONFIG_KEYS.items():
        for key in keys:
            value = raw.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BindingRefused(f"durable:subscriber `queue_config.{key}` must be a "
                                     f"non-negative integer")
            changes[name] = value
            break
    mode = raw.get("type")
    if mode is not None:
        if mode not in ("standard", "concurrent", "fifo"):
            raise BindingRefused("durable:subscriber `queue_config.type` must be `standard` "
                                 "or `fifo`")
        changes["fifo"] = mode == "fifo"
    return QueueConfig(**{**base.__dict__, **changes})


class _Consumer:
    """Delivers one internal queue's messages (up to ``config.slots`` at once)."""

    def __init__(self, worker: QueueWorker, key: str, config: QueueConfig,
                 condition: str | None = None, target: tuple[str, str] | None = None) -> None:
        self.worker = worker
        self.key = key
        self.target = target
        """``(function_id, namespace)`` of a topic subscriber (named queues: per message)."""
        self.config = config
        self.condition = condition
        self.active = False
        self.running = 0
        self.retrying = 0  # messages waiting out a backoff, off the queue
        self.wake = asyncio.Event()
        self.loop_task: asyncio.Task[None] | None = None

    def activate(self) -> None:
        self.active = True
        if self.loop_task is None or self.loop_task.done():
            self.loop_task = self.worker.tasks.spawn(self._pump(), name=f"iii-queue {self.key}")
        self.wake.set()

    def deactivate(self) -> None:
        self.active = False
        self.wake.set()

    async def _pump(self) -> None:
        store = self.worker.store
        while self.active:
            self.wake.clear()
            stalled = False
            while self.running < self.config.slots:
                try:
                    message = store.take(self.key)
                except Exception as exc:  # the file's: a full disk, an I/O error
                    self.worker.failures.log(
                        logging.ERROR, "store", "queue %s: cannot take the next message from "
                        "its store (trying again in %gs): %s", printable(self.key),
                        STORE_RETRY_S, printable(str(exc)))
                    stalled = True
                    break
                if message is None:
                    break
                self.running += 1
                self.worker.tasks.spawn(self._deliver(message))
            if stalled:  # a failed take is no reason to stop delivering once it works again
                with contextlib.suppress(asyncio.TimeoutError):  # not the builtin on 3.10
                    await asyncio.wait_for(self.wake.wait(), STORE_RETRY_S)
            else:
                await self.wake.wait()

    async def _deliver(self, message: Message) -> None:
        try:
            while True:
                message.attempts += 1
                error = await self._attempt(message)
                if error is None:
                    self.worker.store.ack(self.key, message)
                    return
                message.last_error = error
                if message.attempts > self.config.max_retries:
                    self.worker.dead_letter(self.key, message, self.config)
                    return
                delay = self.config.backoff(message.attempts)
                self.worker.failures.log(
                    logging.INFO, "retry", "queue %s: delivery of %s to %s failed (attempt %d), "
                    "retrying in %.3fs: %s", printable(self.key), message.id,
                    printable(message.function_id), message.attempts, delay, printable(error))
                if self.config.fifo:
                    await asyncio.sleep(delay)  # FIFO retries inline: the queue waits
                    continue
                self.worker.retry_later(self, message, delay)
                return
        except StoreFileError:
            # The file refused the ack or the dead letter (a full disk; the store logged the
            # line): the message stays in flight there, delivered again after a restart.
            pass
        finally:
            self.running -= 1
            self.wake.set()
            if not self.running:
                self.worker.tidy(self.key)

    async def _attempt(self, message: Message) -> str | None:
        """One delivery; the error text, or ``None`` when done (or skipped by the condition)."""
        services = self.worker.services
        try:
            if self.condition is not None:
                answer = await services.call(self.condition, message.data,
                                             namespace=message.namespace)
                if answer is False:
                    return None
            await services.call(message.function_id, message.data, namespace=message.namespace,
                                traceparent=message.traceparent, baggage=message.baggage)
        except IIIInvocationError as exc:
            return f"{exc.code}: {exc.message}"
        except Exception as exc:  # a timeout, a crash of an in-process handler
            return f"{type(exc).__name__}: {exc}"
        return None


class QueueWorker:
    """Engine extension: durable topic queues, named queues and the ``durable:subscriber`` type.

    ``default_config`` applies to subscribers and to named queues not in ``queue_configs``;
    change either before the engine starts (tests use millisecond backoffs).
    ``dead_letter_listeners`` are called with ``(queue, message)`` for every dead letter.
    ``serve_enqueue = False`` (before the engine starts) leaves ``engine::queue::enqueue`` to a
    worker (the Rust project's standalone ``queue`` worker, a test double).
    """

    def __init__(self, adapter: QueueAdapter | None = None, *,
                 default_config: QueueConfig | None = None,
                 queue_configs: dict[str, QueueConfig] | None = None) -> None:
        self.store: QueueAdapter = adapter if adapter is not None else MemoryQueueAdapter()
        self.default_config = default_config or QueueConfig()
        self.queue_configs: dict[str, QueueConfig] = dict(queue_configs or {})
        self.dead_letter_listeners: list[DeadLetterListener] = []
        self.serve_enqueue = True
        self.tasks = TaskSet("the queue worker")
        self._services: EngineServices | None = None
        self._consumers: dict[str, _Consumer] = {}
        self._topics: dict[str, set[str]] = {}  # topic -> active internal queue keys
        self._bindings: dict[str, tuple[str, str]] = {}  # binding id -> (topic, key)
        self._holders: dict[str, set[str]] = {}  # internal key -> binding ids
        self._topic_of: dict[str, str] = {}  # internal key of a subscriber -> its topic
        self._keys_of_topic: dict[str, set[str]] = {}  # the reverse: topic -> internal keys
        self._subscribers: dict[str, int] = {}  # topic -> bindings now
        self._timers: set[asyncio.TimerHandle] = set()
        self.failures = RateLimitedLog(log)
        """The engine's budget of these lines once started."""

    @property
    def services(self) -> EngineServices:
        if self._services is None:
            raise RuntimeError("the queue worker is not started")
        return self._services

    # ------------------------------------------------------------------ lifecycle

    async def start(self, services: EngineServices) -> None:
        await self.store.open()
        self._services = services
        self.failures = services.limited_log(log)
        if self.tasks.closed:
            self.tasks = TaskSet("the queue worker")
        services.add_worker(WORKER_NAME, "Durable queues with retries and dead letters")
        services.add_function(DURABLE_PUBLISH, self._publish, worker=WORKER_NAME,
                              description="Publish a message to a durable topic",
                              request_format=_PUBLISH_SCHEMA, response_format={"type": "null"},
                              inline=True)
        if self.serve_enqueue:
            services.add_function(ENQUEUE, self._enqueue, worker=WORKER_NAME, inline=True,
                                  description="Queue a function call on a named queue "
                                              "(the engine's enqueue action)")
        QueueAdmin(self).install(services, WORKER_NAME)
        services.add_trigger_type(TriggerType(
            TRIGGER_TYPE, DEFAULT_NAMESPACE, "Durable subscription to a queue topic",
            provider=self, worker_name=WORKER_NAME,
            trigger_request_format=_SUBSCRIBER_SCHEMA, call_request_format={}))
        for key in self.store.queues():  # queues holding messages from a previous run
            if key.startswith(NAMED_PREFIX):
                self.named_consumer(key[len(NAMED_PREFIX):])
            elif key not in self._topic_of:
                self._remember_topic(key)

    def _remember_topic(self, key: str) -> None:
        """The topic of a subscriber's queue ``{topic}::{function}@{namespace}`` found in the
        store before its binding, read off with a dead letter's function and namespace (both
        the topic and the function id may contain ``::``)."""
        for message in self.store.dead_letters(key)[:1]:
            suffix = f"::{message.function_id}@{message.namespace}"
            if key.endswith(suffix) and len(key) > len(suffix):
                self._know(key, key[:-len(suffix)])

    def _know(self, key: str, topic: str) -> None:
        self._topic_of[key] = topic
        self._keys_of_topic.setdefault(topic, set()).add(key)

    def tidy(self, key: str) -> None:
        """Forget internal queue ``key`` once nothing holds it: no binding, no message waiting,
        in flight or in a backoff, no dead letter, and (a named queue) no settings of its own.
        Unbound topics and queues made by an ``enqueue`` to a new name would otherwise stay
        listed, with their consumer's task, for the engine's life."""
        consumer = self._consumers.get(key)
        if consumer is None or consumer.running or consumer.retrying or key in self._holders:
            return
        if key.startswith(NAMED_PREFIX):
            name = key[len(NAMED_PREFIX):]
            if name == DEFAULT_QUEUE or name in self.queue_configs:
                return
        store = self.store
        if store.pending(key) or store.in_flight(key) or store.dead_letters(key):
            return
        consumer.deactivate()
        del self._consumers[key]
        topic = self._topic_of.pop(key, None)
        if topic is not None:
            keys = self._keys_of_topic.get(topic, set())
            keys.discard(key)
            if not keys:
                self._keys_of_topic.pop(topic, None)

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for consumer in self._consumers.values():
            consumer.deactivate()
        await self.tasks.aclose()
        await self.store.close()

    # ------------------------------------------------------------------ the trigger type

    def bind(self, binding: Binding) -> None:
        config = config_object(TRIGGER_TYPE, binding.config)
        topic = config_str(TRIGGER_TYPE, config, "topic")
        if not topic:
            raise BindingRefused("durable:subscriber trigger needs a non-empty `topic` in its "
                                 "config")
        condition = config_str(TRIGGER_TYPE, config, "condition_function_id")
        queue_config = _subscriber_config(self.default_config, config.get("queue_config"))
        self.unbind(binding)
        key = f"{topic}::{binding.function_id}@{binding.namespace}"
        consumer = self._consumers.get(key)
        if consumer is None:
            consumer = self._consumers[key] = _Consumer(
                self, key, queue_config, condition, (binding.function_id, binding.namespace))
        else:
            consumer.config, consumer.condition = queue_config, condition
        self._bindings[binding.id] = (topic, key)
        self._know(key, topic)
        self._subscribers[topic] = self._subscribers.get(topic, 0) + 1
        self._holders.setdefault(key, set()).add(binding.id)
        self._topics.setdefault(topic, set()).add(key)
        consumer.activate()

    def unbind(self, binding: Binding) -> None:
        found = self._bindings.pop(binding.id, None)
        if found is None:
            return
        topic, key = found
        left = self._subscribers.pop(topic, 1) - 1
        if left:
            self._subscribers[topic] = left
        holders = self._holders.get(key, set())
        holders.discard(binding.id)
        if holders:
            return
        self._holders.pop(key, None)
        keys = self._topics.get(topic, set())
        keys.discard(key)
        if not keys:
            self._topics.pop(topic, None)
        consumer = self._consumers.get(key)
        if consumer is not None:
            consumer.deactivate()  # its messages wait for the next binding
            self.tidy(key)

    # ------------------------------------------------------------------ delivery plumbing

    def retry_later(self, consumer: _Consumer, message: Message, delay: float) -> None:
        """Put ``message`` back on ``consumer``'s queue after ``delay`` seconds."""
        def due() -> None:
            self._timers.discard(timer)
            consumer.retrying -= 1
            try:
                self.store.requeue(consumer.key, message)
            except Exception as exc:  # the file's (a full disk): it stays in flight there
                self.failures.log(
                    logging.ERROR, "store", "queue %s: cannot put message %s back for its "
                    "retry (trying again in %gs): %s", printable(consumer.key),
                    printable(message.id), STORE_RETRY_S, printable(str(exc)))
                self.retry_later(consumer, message, STORE_RETRY_S)
                return
            consumer.wake.set()
        consumer.retrying += 1
        timer = asyncio.get_running_loop().call_later(delay, due)
        self._timers.add(timer)

    def dead_letter(self, key: str, message: Message, config: QueueConfig) -> None:
        """Keep a message that ran out of retries (and tell the listeners)."""
        message.failed_at = time.time()
        self.failures.log(logging.WARNING, "dead_letter",
                          "queue %s: message %s to %s dead-lettered after %d attempts: %s",
                          printable(key), printable(message.id), printable(message.function_id),
                          message.attempts, printable(message.last_error or ""))
        dropped = self.store.dead_letter(key, message, config.max_dead_letters)
        if dropped is not None:
            self.failures.log(logging.WARNING, "dlq_full", "queue %s: dead-letter list full "
                              "(%d); dropped the oldest dead letter %s", printable(key),
                              config.max_dead_letters, dropped.id)
        for listener in list(self.dead_letter_listeners):
            try:
                listener(key, message)
            except Exception:
                log.exception("dead-letter listener failed")

    def _push(self, keys: list[str], make: Callable[[str], Message]) -> None:
        """Queue one message per key, all or none (``queue_full`` if any is full)."""
        for key in keys:
            consumer = self._consumers[key]
            if self.store.pending(key) >= consumer.config.max_pending:
                raise IIIInvocationError("queue_full", str(QueueFull(
                    key, consumer.config.max_pending)))
        for key in keys:
            consumer = self._consumers[key]
            self.store.push(key, make(key), consumer.config.max_pending)
            consumer.wake.set()

    # ------------------------------------------------------------------ functions

    def publish(self, topic: str, data: Any, *, traceparent: str | None = None,
                baggage: str | None = None) -> int:
        """Queue ``data`` for every subscriber of ``topic``; returns how many there are."""
        keys = sorted(self._topics.get(topic, ()))

        def make(key: str) -> Message:
            target = self._consumers[key].target
            assert target is not None
            return Message(target[0], target[1], data, traceparent=traceparent,
                           baggage=baggage)
        self._push(keys, make)
        return len(keys)

    async def _publish(self, data: Any, ctx: CallContext) -> None:
        data = require_object(DURABLE_PUBLISH, data)
        topic = require_str(DURABLE_PUBLISH, data, "topic")
        if "data" not in data:
            raise bad_input(DURABLE_PUBLISH, "missing field `data`")
        if not topic:
            raise IIIInvocationError("topic_not_set", "Topic is not set")
        self.publish(topic, data["data"], traceparent=ctx.traceparent, baggage=ctx.baggage)

    def named_consumer(self, name: str) -> _Consumer:
        """The consumer of named queue ``name`` (created with its settings on first use)."""
        key = NAMED_PREFIX + name
        consumer = self._consumers.get(key)
        if consumer is None:
            config = self.queue_configs.get(name, self.default_config)
            consumer = self._consumers[key] = _Consumer(self, key, config)
            consumer.activate()
        return consumer

    async def _enqueue(self, data: Any, ctx: CallContext) -> dict[str, Any]:
        data = require_object(ENQUEUE, data)
        name = require_str(ENQUEUE, data, "queue") or DEFAULT_QUEUE
        function_id = require_str(ENQUEUE, data, "function_id")
        namespace = optional_str(ENQUEUE, data, "namespace") or DEFAULT_NAMESPACE
        receipt = optional_str(ENQUEUE, data, "messageReceiptId")
        payload = data.get("data")
        consumer = self.named_consumer(name)
        group = consumer.config.message_group_field
        if consumer.config.fifo and group is not None:
            if not isinstance(payload, dict) or payload.get(group) is None:
                raise IIIInvocationError("enqueue_error", f"FIFO queue '{name}' requires field "
                                         f"'{group}' in data, and it must not be null")
        message = Message(function_id, namespace, payload,
                          traceparent=optional_str(ENQUEUE, data, "traceparent"),
                          baggage=optional_str(ENQUEUE, data, "baggage"))
        if receipt:
            message.id = receipt
        self._push([consumer.key], lambda _key: message)
        return {"messageReceiptId": message.id}

    # ------------------------------------------------------------------ for the inspection

    def keys_of(self, name: str) -> list[str]:
        """The internal queues a user-facing name means: a topic's (one per function bound
        to it, or holding messages or dead letters), else the named queue."""
        keys = self._keys_of_topic.get(name)
        return sorted(keys) if keys else [NAMED_PREFIX + name]

    def topics(self) -> list[str]:
        """Every topic known (bound, or holding messages or dead letters)."""
        return sorted(self._keys_of_topic)

    def subscriber_count(self, topic: str) -> int:
        """How many bindings subscribe to ``topic`` now."""
        return self._subscribers.get(topic, 0)

    def named_queues(self) -> list[str]:
        """The named queues: ``default``, the configured ones, and those holding messages or
        dead letters."""
        names = {DEFAULT_QUEUE, *self.queue_configs}
        names.update(key[len(NAMED_PREFIX):] for key in (*self._consumers, *self.store.queues())
                     if key.startswith(NAMED_PREFIX))
        return sorted(names)

    def revive(self, key: str, message: Message) -> None:
        """Put a dead letter back at the end of its queue, its attempts reset."""
        message.attempts, message.failed_at = 0, None
        self.store.requeue(key, message)
        consumer = self._consumers.get(key)
        if consumer is not None:
            consumer.wake.set()
