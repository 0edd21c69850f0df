"""An observable bound to a trigger: the reactive face of the engine's built-in workers.

``TriggerStream(host, "subscribe", {"topic": "orders"})`` is a hot observable of what a trigger
delivers. While at least one observer subscribes, the stream holds a private function
(``iii_rx::bind::<hex>``, ``metadata.internal``) bound to the trigger; the last dispose
unregisters both, so nothing stays registered while nobody listens. Any number of
subscribers share the one binding, and the client replays both registrations when it
reconnects (what is published during an outage is missed: the trigger's own semantics).

Values are emitted on the client's loop in the order the engine delivered them, one delivery at
a time; a subscriber that raises is logged and detached (:class:`~iii_rx.streams.HotStream`).
``async for`` works too, and loses nothing: the iterator buffers up to ``maxsize`` values, and
past that the delivery waits for the consumer (the engine waits for its answer; the deliveries
behind it wait in the private function's queue, holding none of the worker's handler slots).
``iterate(overflow="drop_oldest")`` keeps the newest values instead. The stream completes when
the client closes.

Subscribing sends the registrations at once, on the client's loop: a call made by the same
client after ``subscribe`` returned reaches the engine after them, so
``iii.subscribe("t").subscribe(...)`` then ``await iii.publish("t", x)`` delivers ``x``.
Another worker's publish may still race a binding that is on its way.

Only the client's public API is used, through the narrow :class:`TriggerHost` protocol.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from reactivex import Observable
from reactivex.abc import DisposableBase

from iii_rx.aio import LoopBridge
from iii_rx.single import Single
from iii_rx.streams import HotStream, Overflow, Pace, StreamIterator, _Guarded

__all__ = ["BUILTIN_NAMESPACE", "PRIVATE_PREFIX", "TriggerHost", "TriggerStream"]

T = TypeVar("T")

PRIVATE_PREFIX = "iii_rx::bind::"
"""Prefix of the private functions behind trigger streams."""
BUILTIN_NAMESPACE = "default"
"""Where the engine's built-in workers register their functions (a client in another
namespace still reaches them)."""


class Registered(Protocol):
    """A registration handle: :meth:`unregister` is idempotent."""

    def unregister(self) -> None: ...


class BindingHandle(Registered, Protocol):
    error: Exception | None
    """The engine's refusal of the binding, once it arrived."""


class TriggerHost(Protocol):
    """What the built-in faces use of the client (its public API only)."""

    @property
    def bridge(self) -> LoopBridge:
        """The client's loop."""

    @property
    def state(self) -> Observable[Any]:
        """The client's connection state: it completes when the client has closed."""

    def register_function(self, function_id: str, handler: Callable[..., Any], *,
                          description: str | None = ..., metadata: Any = ...,
                          max_concurrency: int | None = ...) -> Registered:
        ...

    def register_trigger(self, trigger: Mapping[str, Any], /) -> BindingHandle: ...

    def trigger(self, function_id: str, payload: Any = ..., *, timeout_ms: int | None = ...,
                namespace: str | None = ...) -> Single[Any]: ...


class TriggerStream(HotStream[T], Generic[T]):
    """Hot observable of one trigger's deliveries, bound while someone subscribes.

    ``transform`` turns each delivered payload into the emitted value (identity by default).
    """

    def __init__(self, host: TriggerHost, trigger_type: str, config: Any = None, *,
                 transform: Callable[[Any], T] | None = None, name: str | None = None) -> None:
        super().__init__(host.bridge, name or f"trigger stream {trigger_type}")
        self._host = host
        self.trigger_type = trigger_type
        self.config = config
        self._transform = transform
        self._function: Registered | None = None
        self._binding: BindingHandle | None = None
        self._closing: DisposableBase | None = None
        self._paces: list[Pace] = []
        """The ``async for`` consumers a delivery waits for (``overflow="wait"``)."""

    @property
    def bound(self) -> bool:
        """Whether the private function and its binding are registered now."""
        return self._binding is not None

    @property
    def binding_error(self) -> Exception | None:
        """The engine's refusal of the current binding (``None``: none arrived)."""
        return self._binding.error if self._binding is not None else None

    # ------------------------------------------------------------------ session (loop)

    def _attach(self, sub: _Guarded[T]) -> None:
        super()._attach(sub)
        if self._observers and self._binding is None:
            self._bind()

    def _detach(self, sub: _Guarded[T]) -> None:
        super()._detach(sub)
        if not self._observers and self._binding is not None:
            self._unbind()

    def iterate(self, maxsize: int = 64, overflow: Overflow = "wait") -> StreamIterator[T]:
        """An async iterator over the deliveries, subscribed now. Past ``maxsize`` values
        waiting for the consumer, ``wait`` (the default) holds the next delivery until it
        takes one, ``drop_oldest`` keeps the newest, ``error`` ends the iteration with
        :class:`~iii_rx.errors.StreamOverflowError`."""
        iterator = StreamIterator(self, maxsize, overflow)
        if iterator.pace is not None:
            self._paces.append(iterator.pace)
        return iterator

    def _bind(self) -> None:
        function_id = f"{PRIVATE_PREFIX}{uuid.uuid4().hex}"
        self._function = self._host.register_function(
            function_id, self._deliver, description=f"{self.name} (iii_rx)",
            metadata={"internal": True}, max_concurrency=1)
        try:
            self._binding = self._host.register_trigger(
                {"type": self.trigger_type, "function_id": function_id, "config": self.config})
        except BaseException:
            self._function.unregister()
            self._function = None
            raise
        self._closing = self._host.state.subscribe(on_completed=self.on_completed)

    def _unbind(self) -> None:
        binding, self._binding = self._binding, None
        function, self._function = self._function, None
        closing, self._closing = self._closing, None
        if closing is not None:
            closing.dispose()
        if binding is not None:
            binding.unregister()
        if function is not None:
            function.unregister()

    async def _deliver(self, data: Any) -> None:
        if self._paces:
            self._paces = [pace for pace in self._paces if not pace.finished]
            for pace in tuple(self._paces):
                await pace.room()
        self.on_next(data if self._transform is None else self._transform(data))

    def __repr__(self) -> str:
        state = "bound" if self.bound else "idle"
        return f"<TriggerStream {self.trigger_type} {self.config!r} {state}>"
