"""The reactive client: one engine connection seen as streams.

Frames arrive on the transport and become **invocations** (pushed to the subscribers of their
function, and to ``iii.invocations``), **results** (settling pending calls), **connection
states** (``iii.state``) and provider events (trigger bindings). Outgoing, the client keeps the
registries it replays on every connection (spec 2.3): trigger types, functions, triggers.

Threading: the client lives on one loop. Every public method is safe from any thread; state is
mutated on the loop, or under ``_lock`` for the registries (which callers on other threads
touch synchronously so that they can raise, e.g. on a duplicate id).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any

from pydantic import BaseModel

from iii_rx import channels as _channels
from iii_rx._fastjson import NON_FINITE, call_frame, find_non_finite, result_frame
from iii_rx._loop import Hopper, LoopThread, check_not_loop_thread
from iii_rx._pool import HandlerPool
from iii_rx.context import _current
from iii_rx.errors import (
    IIIConnectionError,
    IIIInvocationError,
    IIIRegistrationRejectedError,
    IIITimeoutError,
    error_from_body,
)
from iii_rx.functions import (
    FunctionEntry,
    FunctionHandle,
    FunctionSpec,
    FunctionStream,
    HandlerSink,
    Sink,
    _ObserverSink,
)
from iii_rx.invocation import Invocation, error_body_of
from iii_rx.protocol import (
    EnqueueAction,
    ErrorBody,
    ErrorFrame,
    Frame,
    FrameError,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterTrigger,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterTrigger,
    VoidAction,
    WorkerRegistered,
    decode,
    encode,
)
from iii_rx.single import Done, Single
from iii_rx.state import ConnectionState, ReconnectConfig
from iii_rx.streams import HotStream
from iii_rx.telemetry import otel_trace_headers
from iii_rx.transport import CALL, CONTROL, MAX_FRAME, MAX_MESSAGE, RESULT, Transport
from iii_rx.triggers import (
    TriggerBinding,
    TriggerConfig,
    TriggerHandle,
    TriggerType,
    TriggerTypeHandle,
)

__all__ = ["Client"]

log = logging.getLogger("iii_rx.client")

_REGISTER_WORKER = "engine::workers::register"
DEFAULT_MAX_WORKERS = 64
"""Threads for sync handlers (created on demand). Sync handlers that block on nested calls
each hold one while they wait, so the pool must be larger than such handlers run at once."""
_FATAL_ON_REGISTER = frozenset({"INVALID_NAMESPACE", "FORBIDDEN"})


class _Pending:
    """A call waiting for its ``invocationresult``."""

    __slots__ = ("function_id", "target", "timeout_ms", "timer")

    def __init__(self, target: Done | asyncio.Future[Any], function_id: str,
                 timeout_ms: int) -> None:
        self.target = target
        self.function_id = function_id
        self.timeout_ms = timeout_ms
        self.timer: asyncio.TimerHandle | None = None


def _settle(target: Done | asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if isinstance(target, asyncio.Future):
        if not target.done():
            if error is not None:
                target.set_exception(error)
            else:
                target.set_result(value)
    else:
        try:
            target(value, error)
        except Exception:
            log.exception("completion callback of a call raised")


def _noop() -> None:
    return None


def _id_source() -> Callable[[], str]:
    """UUIDv4-shaped ids: a random per-client prefix and a counter (unique, cheap)."""
    r = os.urandom(10).hex()
    prefix = f"{r[0:8]}-{r[8:12]}-4{r[12:15]}-{'89ab'[int(r[15], 16) & 3]}{r[16:19]}-"
    counter = itertools.count(int.from_bytes(os.urandom(4), "big"))
    return lambda: f"{prefix}{next(counter) & 0xFFFFFFFFFFFF:012x}"


class _Call:
    """The starter of a ``trigger`` Single: everything needed to send one call."""

    __slots__ = ("action", "baggage", "client", "data", "function_id", "metadata", "namespace",
                 "timeout_ms", "traceparent")

    def __init__(self, client: Client, function_id: str, data: Any, action: Any,
                 timeout_ms: int, metadata: Any, namespace: str | None,
                 traceparent: str | None, baggage: str | None) -> None:
        self.client = client
        self.function_id = function_id
        self.data = data
        self.action = action
        self.timeout_ms = timeout_ms
        self.metadata = metadata
        self.namespace = namespace
        self.traceparent = traceparent
        self.baggage = baggage

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.client.loop

    def loop_thread(self) -> int | None:
        return self.client._thread_id

    def start(self, done: Done | asyncio.Future[Any]) -> Callable[[], None]:
        return self.client._start_call(self, done)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.client._hopper.submit(fn, *args)


class _Closed:
    """What a sync client's ``close()`` returns: already done, and awaitable for symmetry."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


class Client:
    """A worker connected to an iii engine. Create it with :func:`iii_rx.connect`.

    Streams: :attr:`state`, :attr:`invocations`, :meth:`function`. Calls: :meth:`trigger`.
    Registration: :meth:`register_function`, :meth:`register_trigger`,
    :meth:`register_trigger_type`. Channels: :meth:`create_channel_async`.
    """

    def __init__(
        self,
        *,
        url: str,
        headers: Mapping[str, str],
        name: str,
        namespace: str | None,
        worker_metadata: dict[str, Any],
        reconnect: ReconnectConfig,
        timeout_ms: int,
        loop: asyncio.AbstractEventLoop,
        max_workers: int | None = None,
        engine: Any = None,
        loop_thread: LoopThread | None = None,
    ) -> None:
        self.url = url
        """The engine websocket URL this client connects to."""
        self.headers: dict[str, str] = dict(headers)
        """Handshake headers (the caller's, plus ``Authorization`` from ``III_TOKEN``)."""
        self.name = name
        self.namespace = namespace
        self.timeout_ms = timeout_ms
        self.loop = loop
        self._worker_metadata = worker_metadata
        self._max_workers = max_workers
        self._engine = engine
        self._loop_thread = loop_thread
        self._thread_id: int | None = None
        self._lock = threading.Lock()
        self._functions: dict[str, FunctionEntry] = {}
        self._bindings: dict[str, TriggerHandle] = {}
        self._types: dict[str, TriggerType] = {}
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pool: HandlerPool | None = None
        self._next_id = _id_source()
        self._hopper = Hopper(loop)
        self._fatal: IIIRegistrationRejectedError | None = None
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self.worker_id: str | None = None
        """The engine's id of the current connection (``None`` before the first one)."""
        self._reattach_token: str | None = None
        self.features: list[str] = []
        self.state: HotStream[ConnectionState] = HotStream(loop, "iii.state", replay=True)
        """Replaying observable of :class:`ConnectionState` (also ``async for``)."""
        self.invocations: HotStream[Invocation] = HotStream(loop, "iii.invocations")
        """Every invocation this worker receives, before its function's subscribers see it."""
        self._transport = Transport(
            url, self.headers, reconnect, self.state,
            on_open=self._on_open, on_message=self._on_message, on_lost=self._on_lost,
        )
        self._handlers: dict[type[Frame], Callable[[Any, str | bytes], None]] = {
            InvocationResult: self._on_result,
            InvokeFunction: self._on_invoke,
            WorkerRegistered: self._on_worker_registered,
            RegistrationRejected: self._on_rejected,
            RegisterTrigger: self._on_provider_register,
            UnregisterTrigger: self._on_provider_unregister,
            TriggerRegistrationResult: self._on_trigger_result,
            ErrorFrame: self._on_error_frame,
            Ping: self._on_ping,
        }

    # ================================================================== lifecycle

    def _start(self) -> None:
        """Start connecting; called on the loop."""
        self._thread_id = threading.get_ident()
        self._transport.start()

    async def _wait_connected(self, timeout: float) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()

        def on_state(state: ConnectionState) -> None:
            if fut.done():
                return
            if state is ConnectionState.CONNECTED:
                fut.set_result(None)
            elif state is ConnectionState.FAILED:
                fut.set_exception(self._fatal or IIIConnectionError(
                    f"could not connect to {self.url} (reconnect attempts exhausted)"))

        subscription = self.state.subscribe(on_next=on_state)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise IIIConnectionError(
                f"could not connect to the iii engine at {self.url} within {timeout}s") from None
        finally:
            subscription.dispose()

    @property
    def connection_state(self) -> ConnectionState:
        """The current state (the last value of :attr:`state`)."""
        try:
            return self.state.value
        except LookupError:
            return ConnectionState.CONNECTING

    @property
    def closed(self) -> bool:
        return self._closed

    def _on_loop(self) -> bool:
        return threading.get_ident() == self._thread_id

    def close(self) -> Awaitable[None]:
        """Close the client: fail calls in flight, stop handlers, close the socket.

        Async clients: ``await iii.close()``. Clients from ``connect_sync`` close right away
        (blocking) and the return value may be awaited or ignored.
        """
        if self._loop_thread is None:
            return self.aclose()
        if self._on_loop():
            return self._close_soon()
        self._close_blocking()
        return _Closed()

    def _close_soon(self) -> asyncio.Task[None]:
        if self._close_task is None:
            self._close_task = self.loop.create_task(self._aclose_on_loop())
        return self._close_task

    def _close_blocking(self) -> None:
        if not self.loop.is_closed() and self.loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._close_and_wait(), self.loop)
            try:
                future.result(timeout=30)
            except concurrent.futures.TimeoutError:
                log.warning("closing the client took more than 30s; stopping its loop anyway")
        if self._loop_thread is not None:
            self._loop_thread.stop()

    async def _close_and_wait(self) -> None:
        await asyncio.shield(self._close_soon())

    async def aclose(self) -> None:
        """Close the client (awaitable from any loop)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            await asyncio.shield(self._close_soon())
            if self._loop_thread is not None:
                self._loop_thread.stop()
            return
        if self._loop_thread is None:
            raise RuntimeError("this client runs on another event loop; close it there")
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._close_and_wait(),
                                                                   self.loop))
        self._loop_thread.stop()

    async def _aclose_on_loop(self) -> None:
        self._closed = True
        pending, self._pending = self._pending, {}
        for iid, call in pending.items():
            if call.timer is not None:
                call.timer.cancel()
            _settle(call.target, None, IIIConnectionError(
                f"the client was closed while the call to {call.function_id!r} "
                f"(invocation {iid}) was in flight"))
        await self._transport.close()
        with self._lock:
            entries = list(self._functions.values())
            self._functions.clear()
        for entry in entries:
            for sink in entry.sinks:
                if isinstance(sink, _ObserverSink):
                    sink.on_completed()
                elif isinstance(sink, HandlerSink):
                    sink.active = False
                    for invocation in sink.drop_waiting():
                        invocation._claim()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._shutdown_pool()
        self.invocations.on_completed()
        self.state.on_completed()
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                await engine.__aexit__(None, None, None)
            except Exception:
                log.exception("stopping the embedded engine failed")

    async def _shutdown_pool(self, timeout: float = 10.0) -> None:
        """Drop sync handlers not started yet; wait (bounded) for the running ones."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        ended = self.loop.create_future()
        loop = self.loop

        def on_ended() -> None:
            try:
                loop.call_soon_threadsafe(_settle, ended, None, None)
            except RuntimeError:  # loop closed
                pass

        threads = pool.shutdown(on_ended)
        try:
            await asyncio.wait_for(ended, timeout)
        except asyncio.TimeoutError:
            log.warning("sync handlers still running %ss after close; not waiting for them",
                        timeout)
            return
        for thread in threads:
            thread.join()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop_thread is None:
            raise RuntimeError("use `async with` for a client made by connect()")
        self._close_blocking()

    def __repr__(self) -> str:
        return f"<iii_rx.Client {self.name!r} {self.url} {self.connection_state.value}>"

    # ================================================================== connection events

    def _on_open(self) -> list[str]:
        """The post-connect sequence of spec 2.3: reattach, replay, register the worker.

        Unlike the official SDK, calls queued while disconnected go out after the engine
        confirmed ``engine::workers::register`` (see :meth:`Transport.set_ready`).
        """
        head: list[str] = []
        if self.worker_id is not None:
            if self._reattach_token is not None:
                head.append(encode(Reattach(previous_worker_id=self.worker_id,
                                            reattach_token=self._reattach_token)))
            else:
                head.append(encode(Reattach(previous_worker_id=self.worker_id)))
        with self._lock:
            types = list(self._types.values())
            functions = [entry.spec for entry in self._functions.values()]
            bindings = [handle.binding for handle in self._bindings.values()]
        head.extend(t.register_frame() for t in types)
        head.extend(spec.register_frame() for spec in functions)
        head.extend(b.register_frame() for b in bindings)
        iid = self._next_id()
        pending = _Pending(functools.partial(self._on_registered, self._transport.connections),
                           _REGISTER_WORKER, self.timeout_ms)
        pending.timer = self.loop.call_later(self.timeout_ms / 1000, self._on_timeout, iid)
        self._pending[iid] = pending
        head.append(encode(InvokeFunction(function_id=_REGISTER_WORKER,
                                          data=self._worker_metadata, invocation_id=iid)))
        return head

    def _on_registered(self, connection: int, value: Any, error: BaseException | None) -> None:
        if self._closed or self._fatal is not None or connection != self._transport.connections:
            return
        if isinstance(error, IIIInvocationError) and error.code in _FATAL_ON_REGISTER:
            self._go_fatal(IIIRegistrationRejectedError(error.code, self.namespace, self.name))
            return
        if isinstance(value, dict) and value.get("success") is False:
            self._go_fatal(IIIRegistrationRejectedError(
                "WORKER_NAMESPACE_CONFLICT", self.namespace, self.name))
            return
        if error is not None:
            if isinstance(error, IIIInvocationError) and error.code == "invocation_stopped":
                return  # the connection went; the next one registers again
            log.warning("%s did not confirm: %s; carrying on", _REGISTER_WORKER, error)
        self._transport.set_ready()

    def _on_lost(self, queued: set[str]) -> None:
        """The socket closed: calls already written can never be answered (spec 4.3.6)."""
        lost = [iid for iid in self._pending if iid not in queued]
        for iid in lost:
            call = self._pending.pop(iid)
            if call.timer is not None:
                call.timer.cancel()
            if self._closed:
                continue
            _settle(call.target, None, IIIInvocationError(
                "invocation_stopped",
                "the connection to the engine was lost while the call was in flight",
                function_id=call.function_id, invocation_id=iid))

    def _on_message(self, raw: str | bytes) -> None:
        try:
            frame = decode(raw)
        except FrameError as exc:
            log.warning("dropped a frame from the engine: %s", exc)
            return
        handler = self._handlers.get(type(frame))
        if handler is not None:
            handler(frame, raw)
        elif type(frame) is not Pong:
            log.debug("ignored a %r frame", frame.type)

    def _on_worker_registered(self, frame: WorkerRegistered, raw: str | bytes) -> None:
        self.worker_id = frame.worker_id
        self._reattach_token = frame.reattach_token
        self.features = list(frame.features or [])

    def _on_rejected(self, frame: RegistrationRejected, raw: str | bytes) -> None:
        error = IIIRegistrationRejectedError(frame.code, frame.namespace, frame.worker_name,
                                             frame.owner_worker_id, frame.function_id)
        if frame.code == "FUNCTION_NAMESPACE_CONFLICT":
            log.warning("engine refused function %r: %s", frame.function_id, error)
            return
        self._go_fatal(error)

    def _go_fatal(self, error: IIIRegistrationRejectedError) -> None:
        """Fatal rejection: state ``failed``, calls fail with the typed error, no reconnect."""
        if self._fatal is not None:
            return
        log.error("the engine rejected this worker: %s", error)
        self._fatal = error
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if call.timer is not None:
                call.timer.cancel()
            _settle(call.target, None, error)
        self._transport.fail()
        with self._lock:
            sinks = [s for entry in self._functions.values() for s in entry.sinks]
        for sink in sinks:
            if isinstance(sink, _ObserverSink):
                sink.on_error(error)

    def _on_error_frame(self, frame: ErrorFrame, raw: str | bytes) -> None:
        log.error("engine error %s: %s", frame.error.code, frame.error.message)

    def _on_ping(self, frame: Ping, raw: str | bytes) -> None:
        self._transport.send(encode(Pong()))

    # ================================================================== calls (caller side)

    def trigger(
        self,
        function_id: str | Mapping[str, Any] | Any,
        payload: Any = None,
        *,
        action: Any = None,
        timeout_ms: int | None = None,
        metadata: Any = None,
        namespace: str | None = None,
    ) -> Single[Any]:
        """Call a function: a lazy :class:`~iii_rx.single.Single` of its result.

        Also ``trigger({"function_id": ..., "payload": ..., "action": ..., "timeout_ms": ...,
        "metadata": ..., "namespace": ...})`` (or an object with those attributes). Nothing is
        sent until the Single is awaited, blocked on or subscribed; each use calls again.
        ``action=TriggerAction.void()`` completes with ``None`` once the frame is handed to
        the connection; ``TriggerAction.enqueue(q)`` gives ``{"messageReceiptId": ...}``.
        """
        if not isinstance(function_id, str):
            request = function_id
            get: Callable[[str], Any]
            if isinstance(request, Mapping):
                get = request.get
            else:
                def get(key: str) -> Any:
                    return getattr(request, key, None)
            function_id = get("function_id")
            payload = get("payload")
            action = get("action")
            timeout_ms = get("timeout_ms")
            metadata = get("metadata")
            namespace = get("namespace")
            if not isinstance(function_id, str):
                raise TypeError("trigger() needs a function_id string")
        if not function_id or not function_id.strip():
            raise ValueError("function_id must not be empty")
        ctx = _current.get()
        traceparent, baggage = ctx.outgoing_trace() if ctx is not None else otel_trace_headers()
        call = _Call(self, function_id, payload, _action(action),
                     timeout_ms if timeout_ms else self.timeout_ms, metadata,
                     self._call_namespace(function_id, namespace), traceparent, baggage)
        return Single(self.loop, starter=call, description=f"trigger({function_id!r})")

    def _call_namespace(self, function_id: str, explicit: str | None) -> str | None:
        if explicit is not None:
            if not explicit.strip():
                raise ValueError("namespace must not be blank")
            return explicit
        if function_id.startswith(("engine::", "configuration::")):
            return "default"
        return self.namespace

    def _start_call(self, call: _Call, target: Done | asyncio.Future[Any]) -> Callable[[], None]:
        """Send one call (on the loop); returns its cancel function."""
        if self._fatal is not None:
            _settle(target, None, self._fatal)
            return _noop
        if self._closed:
            _settle(target, None, IIIConnectionError(
                f"the client is closed; cannot call {call.function_id!r}"))
            return _noop
        iid = None if isinstance(call.action, VoidAction) else self._next_id()
        try:
            text = _call_text(call, iid)
            if iid is None:
                self._transport.send(text, CALL)
        except Exception as exc:
            _settle(target, None, _send_error(exc, call.function_id, iid))
            return _noop
        if iid is None:
            _settle(target, None, None)
            return _noop
        pending = _Pending(target, call.function_id, call.timeout_ms)
        self._pending[iid] = pending
        try:
            self._transport.send(text, CALL, iid)
        except Exception as exc:
            del self._pending[iid]
            _settle(target, None, _send_error(exc, call.function_id, iid))
            return _noop
        pending.timer = self.loop.call_later(call.timeout_ms / 1000, self._on_timeout, iid)
        return functools.partial(self._cancel_call, iid)

    def _cancel_call(self, iid: str) -> None:
        call = self._pending.pop(iid, None)
        if call is not None and call.timer is not None:
            call.timer.cancel()

    def _on_timeout(self, iid: str) -> None:
        call = self._pending.pop(iid, None)
        if call is not None:
            _settle(call.target, None, IIITimeoutError(
                "TIMEOUT", f"invocation timed out after {call.timeout_ms}ms",
                function_id=call.function_id, invocation_id=iid))

    def _on_result(self, frame: InvocationResult, raw: str | bytes) -> None:
        call = self._pending.pop(frame.invocation_id, None)
        if call is None:
            return  # late (timed out, cancelled) or not ours: dropped, as the SDKs do
        if call.timer is not None:
            call.timer.cancel()
        error = frame.error
        if error is None:
            _settle(call.target, frame.result, None)
        else:
            _settle(call.target, None, error_from_body(
                error.code, error.message, function_id=call.function_id,
                stacktrace=error.stacktrace, invocation_id=frame.invocation_id))

    @property
    def pending_calls(self) -> int:
        """Calls waiting for an answer (diagnostics)."""
        return len(self._pending)

    # ================================================================== invocations (worker side)

    def _on_invoke(self, frame: InvokeFunction, raw: str | bytes) -> None:
        data = frame.data
        invocation = Invocation(self, frame.function_id, frame.invocation_id, data,
                                frame.metadata, frame.traceparent, frame.baggage)
        if isinstance(data, (dict, list)) and isinstance(raw, str) and '"access_key"' in raw:
            try:
                invocation.data = _channels.resolve_channel_refs(
                    data, engine_url=self.url, headers=self.headers)
            except Exception as exc:
                invocation.fail(exc)
                return
        if self.invocations.has_observers:
            self.invocations.on_next(invocation)
        entry = self._functions.get(frame.function_id)
        if entry is None or not entry.sinks:
            if entry is not None and entry.spec.invocation is not None:
                _never(invocation)
            else:
                invocation.fail(f"Function '{frame.function_id}' not found",
                                code="function_not_found")
            return
        for sink in entry.sinks:
            sink(invocation)

    def _send_reply(self, invocation: Invocation, result: Any, error: ErrorBody | None) -> None:
        """Encode and send an ``invocationresult`` (any thread)."""
        iid, function_id = invocation.invocation_id, invocation.function_id
        assert iid is not None and function_id is not None
        traceparent = (invocation.outgoing_trace()[0] if invocation.traceparent is not None
                       else None)
        text: str | None = None
        if error is None:
            if isinstance(result, BaseModel):
                to_wire = getattr(result, "to_wire", None)
                result = (to_wire() if callable(to_wire)
                          else result.model_dump(mode="json", by_alias=True, exclude_none=True))
            text = result_frame(iid, function_id, result, traceparent)
            if text is None:
                text = self._model_result(iid, function_id, result, traceparent)
            if len(text) > MAX_FRAME and len(text.encode()) > MAX_MESSAGE:
                error = ErrorBody(code="payload_too_large",
                                  message=f"the result is larger than {MAX_MESSAGE} bytes")
        if error is not None:
            text = encode(InvocationResult(error=error, **_result_fields(
                iid, function_id, traceparent)))
        assert text is not None
        if self._on_loop():
            self._transport.send(text, RESULT)
        else:
            self._transport.send_threadsafe(text, RESULT)

    @staticmethod
    def _model_result(iid: str, function_id: str, result: Any, traceparent: str | None) -> str:
        """The ``invocationresult`` of a result plain ``json`` cannot write (pydantic's way),
        or an ``invocation_failed`` error if it holds a NaN or an infinity."""
        fields = _result_fields(iid, function_id, traceparent)
        try:
            text = encode(InvocationResult(result=result, **fields))
        except Exception as exc:
            return encode(InvocationResult(error=error_body_of(exc), **fields))
        if find_non_finite(result):  # pydantic would have written null: refuse (spec 5.4)
            log.warning("result of %r (invocation %s) refused: %s", function_id, iid,
                        NON_FINITE)
            return encode(InvocationResult(error=ErrorBody(
                code="invocation_failed",
                message=f"the result of {function_id!r} was refused: {NON_FINITE}"), **fields))
        return text

    def function(
        self,
        function_id: str,
        *,
        description: str | None = None,
        metadata: Any = None,
        request_format: Any = None,
        response_format: Any = None,
    ) -> FunctionStream:
        """Observable of ``function_id``'s invocations (see :mod:`iii_rx.functions`).

        The first subscription registers the function, disposing the last one unregisters it.
        Subscribers answer with ``invocation.reply(value)`` / ``invocation.fail(error)``.
        """
        return FunctionStream(self, FunctionSpec(
            _check_id(function_id), description, metadata, request_format, response_format))

    def register_function(
        self,
        function_id: str,
        handler: Callable[..., Any] | HttpInvocationRef | Any,
        *,
        description: str | None = None,
        metadata: Any = None,
        request_format: Any = None,
        response_format: Any = None,
        max_concurrency: int | None = None,
    ) -> FunctionHandle:
        """Register ``handler`` (sync or async, ``(data)`` or ``(data, metadata)``).

        Sync handlers run in the client's thread pool, async ones as tasks on its loop; the
        return value is the result, a raise fails the call with ``invocation_failed``.
        ``max_concurrency`` bounds the invocations running at once; the rest wait in arrival
        order. ``handler`` may also be an HTTP invocation config (spec 9), a
        :class:`~iii_rx.http.HttpInvocationConfig` or the same as a dict: the engine then
        calls its URL. Raises ``ValueError`` if ``function_id`` is already registered here.
        """
        spec = FunctionSpec(_check_id(function_id), description, metadata, request_format,
                            response_format, _http_invocation(handler))
        sink: Sink
        if spec.invocation is not None:
            sink = _never
        else:
            if not callable(handler):
                raise TypeError("handler must be callable or an HTTP invocation config")
            sink = HandlerSink(self, handler, max_concurrency)
        self._add_sink(spec, sink, exclusive=True)
        return FunctionHandle(self, spec.id, sink)

    def _add_sink(self, spec: FunctionSpec, sink: Sink, *, exclusive: bool = False) -> None:
        self._check_usable()
        with self._lock:
            entry = self._functions.get(spec.id)
            if entry is not None and (exclusive or any(isinstance(s, HandlerSink) or s is _never
                                                       for s in entry.sinks)):
                raise ValueError(f"function {spec.id!r} is already registered by this client")
            created = entry is None
            if entry is None:
                entry = self._functions[spec.id] = FunctionEntry(spec)
            entry.sinks = (*entry.sinks, sink)
        if created:
            self._send_control(spec.register_frame())

    def _remove_sink(self, function_id: str, sink: Sink) -> None:
        with self._lock:
            entry = self._functions.get(function_id)
            if entry is None or sink not in entry.sinks:
                return
            entry.sinks = tuple(s for s in entry.sinks if s is not sink)
            if entry.sinks:
                return
            del self._functions[function_id]
        if not self._closed:
            self._send_control(entry.spec.unregister_frame())

    def _send_control(self, text: str) -> None:
        if self._on_loop():
            self._transport.send(text, CONTROL)
        else:
            self._transport.send_threadsafe(text, CONTROL)

    def _check_usable(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise IIIConnectionError("the client is closed")

    def _executor(self) -> HandlerPool:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the client is closed")
                if self._pool is None:
                    self._pool = HandlerPool(self._max_workers or DEFAULT_MAX_WORKERS,
                                             "iii-rx-handler")
                pool = self._pool
        return pool

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def function_ids(self) -> list[str]:
        """The functions this client has registered."""
        with self._lock:
            return list(self._functions)

    # ================================================================== triggers

    def register_trigger(
        self,
        trigger: Mapping[str, Any] | Any = None,
        /,
        **fields: Any,
    ) -> TriggerHandle:
        """Bind a function to a trigger: ``{"type", "function_id", "config"?, "metadata"?,
        "namespace"?, "trigger_namespace"?}`` (a mapping, an object with those attributes, or
        keywords). ``config`` is sent as ``{}`` when absent. Returns a handle to unregister."""
        if trigger is not None:
            if isinstance(trigger, Mapping):
                fields = {**trigger, **fields}
            else:
                fields = {key: getattr(trigger, key, None) for key in
                          ("type", "function_id", "config", "metadata", "namespace",
                           "trigger_namespace")} | fields
        trigger_type = fields.get("type") or fields.get("trigger_type")
        function_id = fields.get("function_id")
        if not isinstance(trigger_type, str) or not trigger_type:
            raise ValueError("register_trigger needs a trigger 'type'")
        if not isinstance(function_id, str) or not function_id:
            raise ValueError("register_trigger needs a 'function_id'")
        namespace = self._call_namespace(function_id, fields.get("namespace"))
        self._check_usable()
        binding = TriggerBinding.new(trigger_type, function_id, fields.get("config"),
                                     fields.get("metadata"), namespace,
                                     fields.get("trigger_namespace"))
        handle = TriggerHandle(self, binding)
        with self._lock:
            self._bindings[binding.id] = handle
        self._send_control(binding.register_frame())
        return handle

    def _unregister_trigger(self, binding: TriggerBinding) -> None:
        with self._lock:
            if self._bindings.pop(binding.id, None) is None:
                return
        if not self._closed:
            self._send_control(binding.unregister_frame())

    def register_trigger_type(
        self,
        id: str,
        description: str = "",
        on_register: Callable[[TriggerConfig], Any] | None = None,
        on_unregister: Callable[[TriggerConfig], Any] | None = None,
        *,
        trigger_request_format: Any = None,
        call_request_format: Any = None,
    ) -> TriggerTypeHandle:
        """Provide trigger type ``id``: the engine routes matching bindings to ``on_register``
        (sync or async, a raise rejects the binding) and removals to ``on_unregister``."""
        _check_id(id)
        trigger_type = TriggerType(id, description, on_register, on_unregister,
                                   trigger_request_format, call_request_format)
        self._check_usable()
        with self._lock:
            if id in self._types:
                raise ValueError(f"trigger type {id!r} is already registered by this client")
            self._types[id] = trigger_type
        self._send_control(trigger_type.register_frame())
        return TriggerTypeHandle(self, trigger_type)

    def _unregister_trigger_type(self, trigger_type: TriggerType) -> None:
        with self._lock:
            if self._types.get(trigger_type.id) is not trigger_type:
                return
            del self._types[trigger_type.id]
        if not self._closed:
            self._send_control(trigger_type.unregister_frame())

    def _on_provider_register(self, frame: RegisterTrigger, raw: str | bytes) -> None:
        trigger_type = self._types.get(frame.trigger_type)
        if trigger_type is None:
            self._ack_trigger(frame.id, frame.trigger_type, frame.function_id, ErrorBody(
                code="trigger_type_not_found",
                message=f"trigger type {frame.trigger_type!r} is not provided by this worker"))
            return
        config = TriggerConfig(frame.id, frame.trigger_type, frame.function_id, frame.config,
                               frame.metadata, frame.namespace or "default",
                               frame.trigger_namespace)
        trigger_type.bindings[frame.id] = config
        self._track(self.loop.create_task(self._run_provider(trigger_type, config, True)))

    def _on_provider_unregister(self, frame: UnregisterTrigger, raw: str | bytes) -> None:
        trigger_type = self._types.get(frame.trigger_type or "")
        if trigger_type is None:
            for candidate in self._types.values():
                if frame.id in candidate.bindings:
                    trigger_type = candidate
                    break
        if trigger_type is None:
            return
        config = trigger_type.bindings.pop(frame.id, None) or TriggerConfig(
            frame.id, trigger_type.id, "")
        self._track(self.loop.create_task(self._run_provider(trigger_type, config, False)))

    async def _run_provider(self, trigger_type: TriggerType, config: TriggerConfig,
                            register: bool) -> None:
        callback = trigger_type.on_register if register else trigger_type.on_unregister
        error: ErrorBody | None = None
        if callback is not None:
            try:
                if asyncio.iscoroutinefunction(callback):
                    await callback(config)
                else:
                    result = await self._executor().call(self.loop, callback, config)
                    if asyncio.iscoroutine(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("provider of %r %s binding %s failed: %s", trigger_type.id,
                            "accepting" if register else "removing", config.id, exc)
                error = ErrorBody(code="trigger_registration_failed", message=str(exc))
        if register:
            if error is not None:
                trigger_type.bindings.pop(config.id, None)
            self._ack_trigger(config.id, config.trigger_type, config.function_id, error)

    def _ack_trigger(self, trigger_id: str, trigger_type: str, function_id: str,
                     error: ErrorBody | None) -> None:
        fields: dict[str, Any] = {"id": trigger_id, "trigger_type": trigger_type,
                                  "function_id": function_id}
        if error is not None:
            fields["error"] = error
        self._transport.send(encode(TriggerRegistrationResult(**fields)))

    def _on_trigger_result(self, frame: TriggerRegistrationResult, raw: str | bytes) -> None:
        if frame.error is None:
            return
        handle = self._bindings.get(frame.id)
        error = error_from_body(frame.error.code, frame.error.message,
                                function_id=frame.function_id)
        log.warning("trigger %s (%s -> %r) was refused: %s", frame.id, frame.trigger_type,
                    frame.function_id, error)
        if handle is not None:
            handle.error = error

    # ================================================================== channels

    async def create_channel_async(self, buffer_size: int | None = None) -> Any:
        """Create a channel (``engine::channels::create``): a ``Channel`` with reader/writer."""
        running = asyncio.get_running_loop()
        if running is self.loop:
            return await _channels.open_channel(self, buffer_size)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            _channels.open_channel(self, buffer_size), self.loop))

    def create_channel(self, buffer_size: int | None = None) -> Any:
        """Blocking :meth:`create_channel_async` (not on the client's loop thread)."""
        if self._on_loop():
            raise RuntimeError("create_channel() blocks; on the client's loop use "
                               "`await iii.create_channel_async()`")
        check_not_loop_thread(self.loop, "create_channel()")
        return asyncio.run_coroutine_threadsafe(
            _channels.open_channel(self, buffer_size), self.loop).result()


def _never(invocation: Invocation) -> None:
    """Sink of an HTTP-invoked function: the engine never routes its calls here."""
    invocation.fail("Function is HTTP-invoked and cannot be invoked locally",
                    code="function_not_invokable")


def _check_id(function_id: str) -> str:
    if not isinstance(function_id, str) or not function_id.strip():
        raise ValueError("id must be a non-empty string")
    return function_id


def _http_invocation(handler: Any) -> HttpInvocationRef | None:
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


def _call_text(call: _Call, iid: str | None) -> str:
    """The ``invokefunction`` of ``call``; ``ValueError`` if its payload holds NaN/Infinity."""
    if call.action is None:
        text = call_frame(call.function_id, call.data, iid, call.metadata, call.traceparent,
                          call.baggage, call.namespace)
        if text is not None:
            return text
    fields: dict[str, Any] = {"function_id": call.function_id, "data": call.data}
    if iid is not None:
        fields["invocation_id"] = iid
    for name in ("metadata", "traceparent", "baggage", "action", "namespace"):
        value = getattr(call, name)
        if value is not None:
            fields[name] = value
    text = encode(InvokeFunction(**fields))
    if find_non_finite(call.data) or find_non_finite(call.metadata):
        raise ValueError(f"the call to {call.function_id!r} was not sent: {NON_FINITE}")
    return text


def _result_fields(iid: str, function_id: str, traceparent: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"invocation_id": iid, "function_id": function_id}
    if traceparent is not None:
        fields["traceparent"] = traceparent
    return fields


def _action(action: Any) -> VoidAction | EnqueueAction | None:
    if action is None or isinstance(action, (VoidAction, EnqueueAction)):
        return action
    if isinstance(action, Mapping):
        kind = action.get("type")
    else:
        kind = getattr(action, "type", None)
        if hasattr(action, "model_dump"):
            action = action.model_dump()
        else:
            action = {"type": kind, "queue": getattr(action, "queue", None)}
    if kind == "void":
        return VoidAction()
    if kind == "enqueue":
        queue = action.get("queue")
        if not isinstance(queue, str) or not queue:
            raise ValueError("an enqueue action needs a queue name")
        return EnqueueAction(queue=queue)
    raise ValueError(f"unknown trigger action {action!r}")


def _send_error(exc: Exception, function_id: str, iid: str | None) -> Exception:
    from iii_rx.transport import PayloadTooLargeError

    if isinstance(exc, PayloadTooLargeError):
        return IIIInvocationError("payload_too_large", str(exc), function_id=function_id,
                                  invocation_id=iid)
    return exc
