"""Functions as subscribers of their invocation streams.

``iii.function(id)`` is a :class:`FunctionStream`: the first subscription registers ``id`` with
the engine, disposing the last one unregisters it. Every invocation is pushed to every current
subscriber on the client's loop; the first answer wins. A subscriber whose ``on_next`` raises
fails that invocation (``invocation_failed`` with message and stacktrace) and stays subscribed:
one bad request does not take a function down.

What receives a function's invocations is a :class:`Sink`: an Rx observer
(:class:`ObserverSink`), a handler (:class:`iii_rx.worker.HandlerSink`) or the placeholder of an
HTTP-invoked function (:class:`HttpInvokedSink`). Sinks are kept by the client's
:class:`~iii_rx.registrations.Registrations`, reached here only through the narrow
:class:`FunctionRegistry`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from iii_rx.protocol import HttpInvocationRef, RegisterFunction, UnregisterFunction, encode
from iii_rx.streams import StreamIterator

if TYPE_CHECKING:
    from iii_rx.context import Invocation

__all__ = [
    "FunctionEntry",
    "FunctionHandle",
    "FunctionRegistry",
    "FunctionSpec",
    "FunctionStream",
    "HttpInvokedSink",
    "InvocationIterator",
    "ObserverSink",
    "Sink",
    "http_invocation",
]

log = logging.getLogger("iii_rx.functions")


@dataclass(frozen=True)
class FunctionSpec:
    """What is sent in ``registerfunction``."""

    id: str
    description: str | None = None
    metadata: Any = None
    request_format: Any = None
    response_format: Any = None
    invocation: HttpInvocationRef | None = None

    def register_frame(self) -> str:
        """The ``registerfunction`` text (fields left out when ``None``)."""
        fields: dict[str, Any] = {"id": self.id}
        for name in ("description", "metadata", "request_format", "response_format",
                     "invocation"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        return encode(RegisterFunction(**fields))

    def unregister_frame(self) -> str:
        """The ``unregisterfunction`` text."""
        return encode(UnregisterFunction(id=self.id))


class Sink:
    """Receives each invocation of one function, on the client's loop.

    The base class says what every sink can be told besides an invocation: :meth:`close` when
    the client closes, :meth:`fail` when the engine rejected the worker.
    """

    __slots__ = ()

    exclusive = False
    """Whether this sink must be its function's only one (a handler answers every call; an
    Rx observer may share its function with other observers)."""

    def __call__(self, invocation: Invocation) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """The client closed: no invocation comes any more."""

    def fail(self, error: Exception) -> None:
        """The engine rejected the worker: no invocation comes any more, because of ``error``."""


class FunctionEntry:
    """A registered function: its spec and its current sinks."""

    __slots__ = ("sinks", "spec")

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.sinks: tuple[Sink, ...] = ()


class FunctionRegistry(Protocol):
    """What functions need from the client: adding and removing sinks (which registers and
    unregisters with the engine)."""

    def add_sink(self, spec: FunctionSpec, sink: Sink) -> None:
        """Add ``sink`` to function ``spec.id``, registering it if it is new (``ValueError``
        if an exclusive sink is in the way, the client's error if it is closed)."""

    def remove_sink(self, function_id: str, sink: Sink) -> None:
        """Remove ``sink``; the last one gone unregisters the function."""


class FunctionStream(Observable["Invocation"]):
    """Observable of one function's invocations; subscribing registers the function."""

    def __init__(self, registry: FunctionRegistry, spec: FunctionSpec) -> None:
        super().__init__()
        self._registry = registry
        self.spec = spec

    @property
    def function_id(self) -> str:
        """The id subscribing registers."""
        return self.spec.id

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[Invocation],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        sink = ObserverSink(observer)
        self._registry.add_sink(self.spec, sink)
        registry, function_id = self._registry, self.spec.id

        def dispose() -> None:
            if not sink.active:
                return
            sink.active = False
            registry.remove_sink(function_id, sink)

        return Disposable(dispose)

    def iterate(self, maxsize: int = 1024) -> InvocationIterator:
        """Pull invocations with ``async for`` (registers now; ``aclose()`` unregisters).

        At most ``maxsize`` invocations wait in the buffer; one more is failed at once with
        ``invocation_failed`` (the caller learns it, nothing is dropped silently).
        """
        return InvocationIterator(self, maxsize)

    def __aiter__(self) -> InvocationIterator:
        return self.iterate()


class InvocationIterator(StreamIterator["Invocation"]):
    """Async iterator over a function's invocations with a bounded backlog."""

    def __init__(self, stream: FunctionStream, maxsize: int) -> None:
        super().__init__(stream, maxsize, "error")

    def _push(self, value: Invocation) -> None:
        if not self._done and len(self._buffer) >= self._maxsize:
            value.fail(f"the consumer of {value.function_id!r} has {self._maxsize} invocations "
                       "waiting already (FunctionStream.iterate maxsize)")
            return
        super()._push(value)


class ObserverSink(Sink):
    """Adapts an Rx observer: a raising ``on_next`` fails the invocation, not the stream."""

    __slots__ = ("active", "observer")

    def __init__(self, observer: abc.ObserverBase[Invocation]) -> None:
        self.observer = observer
        self.active = True

    def __call__(self, invocation: Invocation) -> None:
        try:
            self.observer.on_next(invocation)
        except Exception as exc:
            log.warning("subscriber of %r raised; failing invocation %s: %s",
                        invocation.function_id, invocation.invocation_id, exc)
            invocation.fail(exc)

    def close(self) -> None:
        """Complete the observer (once)."""
        if self.active:
            self.active = False
            try:
                self.observer.on_completed()
            except Exception:
                log.exception("subscriber raised in on_completed")

    def fail(self, error: Exception) -> None:
        """End the observer with ``error`` (once)."""
        if self.active:
            self.active = False
            try:
                self.observer.on_error(error)
            except Exception:
                log.exception("subscriber raised in on_error")


class HttpInvokedSink(Sink):
    """The sink of an HTTP-invoked function: the engine calls its URL and never routes its
    invocations here, so one that arrives anyway is refused."""

    __slots__ = ()

    exclusive = True

    def __call__(self, invocation: Invocation) -> None:
        invocation.fail("Function is HTTP-invoked and cannot be invoked locally",
                        code="function_not_invokable")


class FunctionHandle:
    """A registered function; :meth:`unregister` removes it (idempotent)."""

    def __init__(self, registry: FunctionRegistry, function_id: str, sink: Sink) -> None:
        self._registry = registry
        self.id = function_id
        self._sink = sink
        self._registered = True

    @property
    def registered(self) -> bool:
        """Whether :meth:`unregister` has not been called yet."""
        return self._registered

    def unregister(self) -> None:
        """Remove the handler (and the function with it, if it was its only sink)."""
        if self._registered:
            self._registered = False
            self._registry.remove_sink(self.id, self._sink)

    def __enter__(self) -> FunctionHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()

    def __repr__(self) -> str:
        state = "registered" if self._registered else "unregistered"
        return f"<FunctionHandle {self.id!r} {state}>"


def http_invocation(handler: Any) -> HttpInvocationRef | None:
    """The ``invocation`` of an HTTP-invoked function: from our wire model, from a dict
    (checked as :class:`~iii_rx.http.HttpInvocationConfig`, so raw secrets are refused) or
    from any model with a ``url`` (ours, the official SDK's); ``None`` for a handler."""
    if isinstance(handler, HttpInvocationRef):
        return handler
    if isinstance(handler, Mapping):
        from iii_rx.http import HttpInvocationConfig

        handler = HttpInvocationConfig.model_validate(dict(handler))
    if isinstance(handler, BaseModel) and hasattr(handler, "url"):
        to_wire = getattr(handler, "to_wire", None)
        wire = to_wire() if callable(to_wire) else handler.model_dump(exclude_none=True)
        return HttpInvocationRef.model_validate(wire)
    return None
