"""Functions as subscribers of their invocation streams, and handlers on top of them.

``iii.function(id)`` is a :class:`FunctionStream`: the first subscription registers ``id`` with
the engine, disposing the last one unregisters it. Every invocation is pushed to every current
subscriber on the client's loop; the first answer wins. A subscriber whose ``on_next`` raises
fails that invocation (``invocation_failed`` with message and stacktrace) and stays subscribed:
one bad request does not take a function down.

``iii.register_function(id, handler)`` subscribes a :class:`HandlerSink`: async handlers run as
tasks on the loop, sync handlers in the client's thread pool (the invocation context follows
them), results are sent from where they are produced, and ``max_concurrency`` keeps the excess
waiting in arrival order (DECISIONS 14).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from iii_rx.context import _current
from iii_rx.protocol import HttpInvocationRef, RegisterFunction, UnregisterFunction, encode
from iii_rx.streams import StreamIterator

if TYPE_CHECKING:
    from iii_rx._pool import HandlerPool
    from iii_rx.invocation import Invocation

__all__ = [
    "FunctionEntry",
    "FunctionHandle",
    "FunctionHost",
    "FunctionSpec",
    "FunctionStream",
    "HandlerSink",
    "InvocationIterator",
    "Sink",
]

log = logging.getLogger("iii_rx.functions")

Sink = Callable[["Invocation"], None]
"""Receives each invocation of a function, on the client's loop."""


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
        fields: dict[str, Any] = {"id": self.id}
        for name in ("description", "metadata", "request_format", "response_format",
                     "invocation"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        return encode(RegisterFunction(**fields))

    def unregister_frame(self) -> str:
        return encode(UnregisterFunction(id=self.id))


class FunctionEntry:
    """A registered function: its spec and its current subscribers."""

    __slots__ = ("sinks", "spec")

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.sinks: tuple[Sink, ...] = ()


class FunctionHost(Protocol):
    """What functions need from the client."""

    loop: asyncio.AbstractEventLoop

    def _add_sink(self, spec: FunctionSpec, sink: Sink, *, exclusive: bool = False) -> None: ...

    def _remove_sink(self, function_id: str, sink: Sink) -> None: ...

    _tasks: set[asyncio.Task[Any]]
    """Tasks the client cancels and awaits on close (a task removes itself when done)."""

    def _executor(self) -> HandlerPool: ...


class FunctionStream(Observable["Invocation"]):
    """Observable of one function's invocations; subscribing registers the function."""

    def __init__(self, host: FunctionHost, spec: FunctionSpec) -> None:
        super().__init__()
        self._host = host
        self.spec = spec

    @property
    def function_id(self) -> str:
        return self.spec.id

    def _subscribe_core(
        self,
        observer: abc.ObserverBase[Invocation],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        sink = _ObserverSink(observer)
        self._host._add_sink(self.spec, sink)
        host, function_id = self._host, self.spec.id

        def dispose() -> None:
            if not sink.active:
                return
            sink.active = False
            host._remove_sink(function_id, sink)

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


class _ObserverSink:
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

    def on_completed(self) -> None:
        if self.active:
            self.active = False
            try:
                self.observer.on_completed()
            except Exception:
                log.exception("subscriber raised in on_completed")

    def on_error(self, error: Exception) -> None:
        if self.active:
            self.active = False
            try:
                self.observer.on_error(error)
            except Exception:
                log.exception("subscriber raised in on_error")


_NO_METADATA, _METADATA_POSITIONAL, _METADATA_KEYWORD = 0, 1, 2


def _metadata_mode(handler: Callable[..., Any]) -> int:
    """How to pass ``metadata``: not at all, as the second positional, or by keyword.

    It is passed when the handler names a ``metadata`` parameter or takes a second required
    positional one.
    """
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return _NO_METADATA
    for p in params:
        if p.name == "metadata" and p.kind is not p.VAR_KEYWORD:
            return _METADATA_KEYWORD if p.kind is p.KEYWORD_ONLY else _METADATA_POSITIONAL
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 and positional[1].default is inspect.Parameter.empty:
        return _METADATA_POSITIONAL
    return _NO_METADATA


def _is_async(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 (callable objects)
    return call is not None and inspect.iscoroutinefunction(call)


class HandlerSink:
    """Runs a handler for each invocation and answers with its result or its exception."""

    def __init__(
        self,
        host: FunctionHost,
        handler: Callable[..., Any],
        max_concurrency: int | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1 (or None for no limit)")
        self._host = host
        self._loop = host.loop
        self._tasks = host._tasks
        self._handler = handler
        self._async = _is_async(handler)
        self._metadata = _metadata_mode(handler)
        self._limit = max_concurrency
        self._inflight = 0
        self._waiting: deque[Invocation] = deque()
        self.active = True

    @property
    def in_flight(self) -> int:
        return self._inflight

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def __call__(self, invocation: Invocation) -> None:
        if self._limit is not None:
            if self._inflight >= self._limit:
                self._waiting.append(invocation)
                return
            self._inflight += 1
        self._start(invocation)

    def _start(self, invocation: Invocation) -> None:
        if self._async:
            token = _current.set(invocation)
            try:
                task = self._loop.create_task(self._run_async(invocation))
            finally:
                _current.reset(token)
            self._tasks.add(task)
        else:
            try:
                self._host._executor().submit(self._run_sync, invocation)
            except RuntimeError:  # the client is closing: the engine answers the caller
                invocation._claim()

    def _call(self, invocation: Invocation) -> Any:
        if self._metadata == _NO_METADATA:
            return self._handler(invocation.data)
        if self._metadata == _METADATA_KEYWORD:
            return self._handler(invocation.data, metadata=invocation.metadata)
        return self._handler(invocation.data, invocation.metadata)

    async def _run_async(self, invocation: Invocation) -> None:
        try:
            result = await self._call(invocation)
        except asyncio.CancelledError:
            invocation._claim()  # the client is closing: the engine answers the caller
            raise
        except BaseException as exc:
            invocation.fail(exc)
        else:
            invocation.reply(result)
        finally:
            # Here rather than in a done callback: that would cost one more loop callback.
            self._tasks.discard(asyncio.current_task(self._loop))
            if self._limit is not None:
                self._finished()

    def _run_sync(self, invocation: Invocation) -> None:
        token = _current.set(invocation)
        try:
            result = self._call(invocation)
            if inspect.isawaitable(result):
                result = asyncio.run_coroutine_threadsafe(self._await(result),
                                                          self._loop).result()
        except concurrent.futures.CancelledError:
            invocation._claim()  # the client is closing: the engine answers the caller
        except BaseException as exc:
            invocation.fail(exc)
        else:
            invocation.reply(result)
        finally:
            _current.reset(token)
            if self._limit is not None:
                try:
                    self._loop.call_soon_threadsafe(self._finished)
                except RuntimeError:  # loop closed
                    pass

    async def _await(self, awaitable: Awaitable[Any]) -> Any:
        """Await what a sync handler returned, as a task the client cancels on close."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await awaitable
        finally:
            self._tasks.discard(task)

    def _finished(self) -> None:
        self._inflight -= 1
        while self._waiting and self._inflight < (self._limit or 0):
            invocation = self._waiting.popleft()
            self._inflight += 1
            self._start(invocation)

    def drop_waiting(self) -> list[Invocation]:
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting


class FunctionHandle:
    """A registered function; :meth:`unregister` removes it (idempotent)."""

    def __init__(self, host: FunctionHost, function_id: str, sink: Sink) -> None:
        self._host = host
        self.id = function_id
        self._sink = sink
        self._registered = True

    @property
    def registered(self) -> bool:
        return self._registered

    def unregister(self) -> None:
        if self._registered:
            self._registered = False
            if isinstance(self._sink, HandlerSink):
                self._sink.active = False
            self._host._remove_sink(self.id, self._sink)

    def __enter__(self) -> FunctionHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()

    def __repr__(self) -> str:
        state = "registered" if self._registered else "unregistered"
        return f"<FunctionHandle {self.id!r} {state}>"
