"""The pub/sub built-in worker (``iii-pubsub``): ``publish`` and the ``subscribe`` trigger type.

* ``publish {topic, data}`` (namespace ``default``) → ``null`` at once; every ``subscribe``
  binding whose ``topic`` equals ``topic`` is then called once with ``data`` exactly as sent
  (no envelope, no topic field). An empty or missing topic fails with ``topic_not_set``.
* ``subscribe`` bindings take ``{"topic": "..."}`` (required, non-empty; exact match, no
  wildcards). One without a topic is refused at registration.

Fire and forget, in this process only: nothing is stored, a subscriber that is not connected
misses the message, a failing subscriber is logged and not retried. Each subscriber's call
is sent in publish order.
"""

from __future__ import annotations

from typing import Any

from iii_rx.engine.config import DEFAULT_NAMESPACE
from iii_rx.engine.registry import CallContext
from iii_rx.engine.services import EngineServices
from iii_rx.engine.triggers import Binding, BindingRefused, TriggerType
from iii_rx.engine.workers._common import (
    Fanout,
    bad_input,
    config_object,
    config_str,
    require_object,
    require_str,
)
from iii_rx.errors import IIIInvocationError

__all__ = ["PUBLISH", "PubSubWorker", "SUBSCRIBE_CONFIG_SCHEMA", "TopicBindings"]

WORKER_NAME = "iii-pubsub"
TRIGGER_TYPE = "subscribe"
PUBLISH = "publish"

SUBSCRIBE_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"topic": {"type": "string", "minLength": 1}},
    "required": ["topic"],
}
_PUBLISH_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"topic": {"type": "string"}, "data": {}},
    "required": ["topic"],
}


class TopicBindings:
    """The in-process provider of ``subscribe``: bindings indexed by topic."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, Binding]] = {}
        self._topic_of: dict[str, str] = {}

    def bind(self, binding: Binding) -> None:
        topic = config_str(TRIGGER_TYPE, config_object(TRIGGER_TYPE, binding.config), "topic")
        if not topic:
            raise BindingRefused("subscribe trigger needs a non-empty `topic` in its config")
        self._drop(binding.id)
        self.topics.setdefault(topic, {})[binding.id] = binding
        self._topic_of[binding.id] = topic

    def unbind(self, binding: Binding) -> None:
        topic = self._topic_of.get(binding.id)
        if topic is not None and self.topics[topic].get(binding.id) is binding:
            self._drop(binding.id)

    def _drop(self, binding_id: str) -> None:
        topic = self._topic_of.pop(binding_id, None)
        if topic is None:
            return
        subscribers = self.topics[topic]
        del subscribers[binding_id]
        if not subscribers:
            del self.topics[topic]


class PubSubWorker:
    """Engine extension: ``publish`` and the ``subscribe`` trigger type."""

    def __init__(self) -> None:
        self.bindings = TopicBindings()
        self._fanout: Fanout | None = None

    async def start(self, services: EngineServices) -> None:
        self._fanout = Fanout(services, "the pub/sub worker")
        services.add_worker(WORKER_NAME, "Topic-based publish/subscribe")
        services.add_function(PUBLISH, self._publish, worker=WORKER_NAME,
                              description="Publish an event to a topic",
                              request_format=_PUBLISH_SCHEMA, response_format={"type": "null"},
                              inline=True)
        services.add_trigger_type(TriggerType(
            TRIGGER_TYPE, DEFAULT_NAMESPACE, "Subscribe to a topic", provider=self.bindings,
            worker_name=WORKER_NAME, trigger_request_format=SUBSCRIBE_CONFIG_SCHEMA,
            call_request_format={}))

    async def stop(self) -> None:
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            await fanout.aclose()

    async def _publish(self, data: Any, ctx: CallContext) -> None:
        data = require_object(PUBLISH, data)
        if "topic" not in data:  # as the Rust engine: absent is unreadable, empty is unset
            raise bad_input(PUBLISH, "missing field `topic`")
        if not data.get("topic"):
            raise IIIInvocationError("topic_not_set", "Topic is not set")
        self.publish(require_str(PUBLISH, data, "topic"), data.get("data"))

    def publish(self, topic: str, data: Any) -> int:
        """Deliver ``data`` to ``topic``'s subscribers (from inside the engine too); returns
        how many bindings were fired."""
        fanout = self._fanout
        subscribers = self.bindings.topics.get(topic)
        if fanout is None or not subscribers:
            return 0
        for binding in list(subscribers.values()):
            fanout.fire(binding, data)
        return len(subscribers)
