"""Pub/sub as the reactive client sees it: ``publish`` and a topic as an observable.

::

    async with iii_rx.connect(url) as iii:
        orders = iii.subscribe("orders")           # a TriggerStream of what is published
        orders.subscribe(print)                    # binds a `subscribe` trigger
        await iii.publish("orders", {"id": 1})     # every subscriber gets {"id": 1}, once

A subscriber receives each message exactly as published (no envelope). Fire and forget, as the
engine's ``publish``: a message published while nobody subscribes is gone.
"""

from __future__ import annotations

from typing import Any

from iii_rx.single import Single
from iii_rx.trigger_stream import BUILTIN_NAMESPACE, TriggerHost, TriggerStream

__all__ = ["PubSub"]


class PubSub:
    """``publish(topic, data)`` and ``subscribe(topic)`` over a client (:class:`TriggerHost`)."""

    def __init__(self, host: TriggerHost) -> None:
        self._host = host

    def publish(self, topic: str, data: Any = None) -> Single[None]:
        """Publish ``data`` to ``topic`` (a lazy Single: awaiting it publishes; it completes
        once the engine accepted the message, before subscribers ran)."""
        return self._host.trigger("publish", {"topic": _topic(topic), "data": data},
                                  namespace=BUILTIN_NAMESPACE)

    def subscribe(self, topic: str) -> TriggerStream[Any]:
        """Observable of the messages published to ``topic`` (bound while subscribed)."""
        return TriggerStream(self._host, "subscribe", {"topic": _topic(topic)},
                             name=f"iii.subscribe({topic!r})")


def _topic(topic: str) -> str:
    if not isinstance(topic, str) or not topic:
        raise ValueError("topic must be a non-empty string")
    return topic
