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

Whether the engine routes a function here is its :class:`FunctionStatus`, shown on its
:class:`FunctionHandle` (``state``, ``error``, ``states``): a second worker registering an id
another worker owns gets ``FUNCTION_NAMESPACE_CONFLICT`` and must not look registered while it
serves nothing (it stands by, see :class:`~iii_rx.registrations.Standby`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from iii_rx.aio import LoopBridge
from iii_rx.errors import IIIRegistrationRejectedError
from iii_rx.protocol import HttpInvocationRef, RegisterFunction, UnregisterFunction, encode
from iii_rx.streams import HotStream, Stream, StreamIterator

if TYPE_CHECKING:
    from iii_rx.context import Invocation

__all__ = [
    "FunctionEntry",
    "FunctionHandle",
    "FunctionRegistry",
    "FunctionSpec",
    "FunctionState",
    "FunctionStatus",
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


class FunctionState(str, Enum):
    """Where a registered function stands with the engine."""

    REGISTERED = "registered"
    """Sent to the engine and not refused: its calls come to this worker."""
    CONFLICT = "conflict"
    """Another worker owns the id (``FUNCTION_NAMESPACE_CONFLICT``): this worker stands by and
    takes the function over when the owner leaves."""
    UNREGISTERED = "unregistered"
    """Unregistered, or the client closed (final)."""

    def __str__(self) -> str:
        return self.value


class FunctionStatus:
    """The state of one registered function, as a value and as a replaying stream.

    Set from any thread; the stream emits on the client's loop (``bridge``) and completes at
    ``unregistered``. Without a bridge (a test of the registries alone) there is no stream.
    """

    __slots__ = ("_bridge", "_stream", "error", "state")

    def __init__(self, bridge: LoopBridge | None, function_id: str) -> None:
        self.state = FunctionState.REGISTERED
        self.error: IIIRegistrationRejectedError | None = None
        """Why the engine refused the function (with ``conflict``), else ``None``."""
        self._bridge = bridge
        self._stream: HotStream[FunctionState] | None = None
        if bridge is not None:
            self._stream = HotStream(bridge, f"state of {function_id!r}", replay=True)
            self._stream.on_next(self.state)  # nobody can subscribe yet: safe off the loop

    def set(self, state: FunctionState, error: IIIRegistrationRejectedError | None = None) -> None:
        """Move to ``state`` (``unregistered`` is final)."""
        if self.state is FunctionState.UNREGISTERED or (
                state is self.state and error is self.error):
            return
        self.state, self.error = state, error
        bridge = self._bridge
        if bridge is None:
            return
        if bridge.on_loop():
            self._emit(state)
        else:
            try:
                bridge.run_sync_soon(self._emit, state)
            except RuntimeError:  # the loop is gone, and the subscribers with it
                pass

    def _emit(self, state: FunctionState) -> None:
        stream = self._stream
        assert stream is not None
        if not stream.has_value or stream.value is not state:
            stream.on_next(state)
        if state is FunctionState.UNREGISTERED:
            stream.on_completed()

    @property
    def states(self) -> Observable[FunctionState]:
        """The state now, then every change, on the client's loop; completes at
        ``unregistered``."""
        if self._stream is None:
            raise RuntimeError("this function's state has no stream (no client loop)")
        return self._stream


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
    """A registered function: its spec, its current sinks and its status with the engine."""

    __slots__ = ("sinks", "spec", "status")

    def __init__(self, spec: FunctionSpec, bridge: LoopBridge | None = None) -> None:
        self.spec = spec
        self.sinks: tuple[Sink, ...] = ()
        self.status = FunctionStatus(bridge, spec.id)


class FunctionRegistry(Protocol):
    """What functions need from the client: adding and removing sinks (which registers and
    unregisters with the engine)."""

    def add_sink(self, spec: FunctionSpec, sink: Sink) -> FunctionEntry:
        """Add ``sink`` to function ``spec.id``, registering it if it is new (``ValueError``
        if an exclusive sink is in the way, the client's error if it is closed); returns the
        function's entry."""

    def remove_sink(self, function_id: str, sink: Sink) -> None:
        """Remove ``sink``; the last one gone unregisters the function."""


class FunctionStream(Stream["Invocation"]):
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
    """A registered function; :meth:`unregister` removes it (idempotent).

    ``state`` says whether the engine routes its calls here: ``conflict`` when another worker
    owns the id (``error`` says which), until this worker takes the function over.
    """

    def __init__(self, registry: FunctionRegistry, function_id: str, sink: Sink,
                 status: FunctionStatus | None = None) -> None:
        self._registry = registry
        self.id = function_id
        self._sink = sink
        self._status = status or FunctionStatus(None, function_id)
        self._registered = True

    @property
    def state(self) -> FunctionState:
        """``registered``, ``conflict`` or ``unregistered``."""
        return self._status.state if self._registered else FunctionState.UNREGISTERED

    @property
    def registered(self) -> bool:
        """Whether the engine routes this function's calls here: not unregistered, and not
        in conflict with another worker's function."""
        return self.state is FunctionState.REGISTERED

    @property
    def error(self) -> IIIRegistrationRejectedError | None:
        """The engine's refusal while in ``conflict`` (``FUNCTION_NAMESPACE_CONFLICT``, with
        ``owner_worker_id``), else ``None``."""
        return self._status.error if self._registered else None

    @property
    def states(self) -> Observable[FunctionState]:
        """Replaying observable of :attr:`state` (emitted on the client's loop); completes
        when the function is unregistered."""
        return self._status.states

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
        return f"<FunctionHandle {self.id!r} {self.state.value}>"


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
