"""The reactive client: the public facade over one engine connection, and its lifecycle.

Frames arrive on the transport and go to the core module that owns their concept:
``invokefunction`` to the :class:`~iii_rx.worker.Worker` (invocation, handler, answer),
``invocationresult`` to the :class:`~iii_rx.calls.Calls` (the pending calls),
``registertrigger``/``unregistertrigger`` to the :class:`~iii_rx.providers.Providers`, and the
answers to our trigger bindings to the :class:`~iii_rx.registrations.Registrations` (which
also give the frames replayed on every connection, docs/protocol.md §2.3). What stays here is what
ties them together: the connection events (replay, worker registration, rejection, loss) and the
lifecycle of the client.

**Lifecycle.** One :class:`Lifecycle` value: ``new`` → ``connecting`` → ``open`` →
``closing`` → ``closed``, or ``failed`` when the engine rejected the worker (it still has to
be closed). Only :func:`iii_rx.connect` and :func:`iii_rx.connect_sync` build a client (through
:func:`open_client`), and one :class:`contextlib.AsyncExitStack` owns what they started on its
loop (the embedded engine, the handler threads, the background tasks). A ``connect_sync``
client's loop thread is not in it: the stack closes on that loop, and a loop thread stopped
from inside cancels whatever still awaits the close there, so ``close()`` stops the thread
from outside once the stack has closed.

**Threads.** The client lives on one loop (:attr:`Client.bridge`). Every public method is safe
from any thread; the core modules run on the loop, except the registries, which callers on
other threads change synchronously so that they can raise (e.g. on a duplicate id).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from iii_rx import channels
from iii_rx._pool import HandlerPool
from iii_rx.aio import LoopBridge, LoopThread
from iii_rx.calls import Call, CallRequest, Calls, call_namespace, trigger_action, trigger_arguments
from iii_rx.channels.refs import create_channel, create_channel_async
from iii_rx.context import Invocation, current_context
from iii_rx.errors import IIIConnectionError, IIIInvocationError, IIIRegistrationRejectedError
from iii_rx.frame_text import HotInvoke, HotResult, read_hot
from iii_rx.functions import (
    FunctionHandle,
    FunctionSpec,
    FunctionStream,
    HttpInvokedSink,
    Sink,
    http_invocation,
)
from iii_rx.kv import KV
from iii_rx.lenient import salvage
from iii_rx.lifecycle import DEFAULT_MAX_WORKERS, ClientSettings, Closing, Lifecycle, wait_connected
from iii_rx.protocol import (
    ErrorFrame,
    Frame,
    FrameError,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterTrigger,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterTrigger,
    WorkerRegistered,
    decode,
    encode,
)
from iii_rx.providers import Providers
from iii_rx.pubsub import PubSub
from iii_rx.registrations import BindingRequest, Registrations, Standby, binding_of, check_id
from iii_rx.single import Single
from iii_rx.state import ConnectionState
from iii_rx.streams import HotStream
from iii_rx.telemetry import otel_trace_headers
from iii_rx.telemetry.spans_slot import SpansSlot
from iii_rx.topology import FunctionInfo, Topology, TopologyChange, TopologyStream, TopologyView
from iii_rx.transport import CONTROL, Transport
from iii_rx.trigger_stream import TriggerStream
from iii_rx.triggers import TriggerConfig, TriggerHandle, TriggerType, TriggerTypeHandle
from iii_rx.worker import Worker, WorkerTasks

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["Client", "ClientSettings", "Closing", "Lifecycle", "open_client"]

log = logging.getLogger("iii_rx.client")

_REGISTER_WORKER = "engine::workers::register"
_FATAL_ON_REGISTER = frozenset({"INVALID_NAMESPACE", "FORBIDDEN"})
_CLOSE_WAIT = 30.0  # seconds a blocking close() waits before it stops the loop anyway


async def open_client(settings: ClientSettings, resources: AsyncExitStack, *,
                      connect_timeout: float, loop_thread: LoopThread | None = None) -> Client:
    """Build a client on the running loop, connect it, and return once the engine accepted it.

    The client takes ``resources`` over (what the caller started for it, e.g. the embedded
    engine) and closes them when it closes, or here if connecting fails. ``loop_thread`` is the
    thread running this loop for a sync client (``connect_sync``).
    """
    bridge = loop_thread.bridge if loop_thread is not None else LoopBridge.current()
    client = Client.__new__(Client)
    try:
        client._setup(settings, bridge, resources, loop_thread)
    except BaseException:
        await resources.aclose()
        raise
    client._start()
    try:
        await client._wait_connected(connect_timeout)
    except BaseException:
        await client._closing.start()
        raise
    return client


class Client:
    """A worker connected to an iii engine, made by :func:`iii_rx.connect` (or
    :func:`iii_rx.connect_sync`): ``Client(...)`` itself raises ``TypeError``, because a client
    only works once connected and something must own what it starts.

    Streams: :attr:`state`, :attr:`invocations`, :attr:`topology`, :attr:`topology_changes`,
    :meth:`function`. Calls: :meth:`trigger`, :meth:`wait_for_function`.
    Registration: :meth:`register_function`, :meth:`register_trigger`,
    :meth:`register_trigger_type`. Channels: :meth:`create_channel_async`.
    """

    spans = SpansSlot()  # its finished spans, live: with connect(otel=...) only

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "iii_rx.Client is not built directly: use `await iii_rx.connect(...)` (or "
            "`async with iii_rx.connect(...) as iii:`) or `iii_rx.connect_sync(...)`, which "
            "connect it and own what it starts")

    def _setup(self, settings: ClientSettings, bridge: LoopBridge, resources: AsyncExitStack,
               loop_thread: LoopThread | None) -> None:
        self.url = settings.url
        """The engine websocket URL this client connects to."""
        self.headers: dict[str, str] = dict(settings.headers)
        """Handshake headers (the caller's, plus ``Authorization`` from ``III_TOKEN``)."""
        self.name = settings.name
        self.namespace = settings.namespace
        self.timeout_ms = settings.timeout_ms
        self.bridge = bridge
        """The client's loop, and how to run something on it from any thread."""
        self.loop = bridge.loop
        self.worker_id: str | None = None
        """The engine's id of the current connection (``None`` before the first one)."""
        self.features: list[str] = []
        self.state: HotStream[ConnectionState] = HotStream(bridge, "iii.state", replay=True)
        """Replaying observable of :class:`ConnectionState` (also ``async for``)."""
        self.invocations: HotStream[Invocation] = HotStream(bridge, "iii.invocations")
        """Every invocation this worker receives, before its function's subscribers see it."""
        self._lifecycle = Lifecycle.NEW
        self._failure: Exception | None = None
        self._failed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._worker_metadata = settings.worker_metadata
        self._reattach_token: str | None = None
        self._loop_thread = loop_thread
        self._closing = Closing(bridge, self._shutdown)
        self._transport = Transport(
            settings.url, self.headers, settings.reconnect, self.state, bridge=bridge,
            on_open=self._on_open, on_message=self._on_message, on_lost=self._on_lost,
            ping_interval=settings.ping_interval, ping_timeout=settings.ping_timeout)
        self._calls = Calls(bridge, self._transport)
        self._registrations = Registrations(self._send_control, bridge)
        # What the client adds to what connect started, closed newest first (see _shutdown).
        self._resources = resources
        self._telemetry_stack = AsyncExitStack()
        resources.push_async_callback(self._telemetry_stack.aclose)
        resources.push_async_callback(self._end_cut_channels)
        self._pool = HandlerPool(settings.max_workers or DEFAULT_MAX_WORKERS, "iii-rx-handler")
        resources.push_async_callback(self._pool.aclose)
        self._tasks = WorkerTasks("the iii_rx client")
        resources.push_async_callback(self._tasks.aclose)
        self._worker = Worker(bridge, self._transport, self._registrations, self.invocations,
                              self._pool, self._tasks, url=settings.url, headers=self.headers,
                              max_concurrency=settings.max_concurrency)
        self._standby = Standby(self._registrations, self, bridge, self._tasks)
        self.state.subscribe(on_next=self._on_state)
        self._providers = Providers(self._registrations, self._transport.send, self._tasks,
                                    self._pool, self.state)
        self._topology = TopologyStream(self)
        self.topology: TopologyView[Topology] = self._topology.snapshots
        """Immutable topology snapshots of the engine, the latest replayed (docs/topology.md);
        lazy and shared: discovery runs only while something subscribes."""
        self.topology_changes: TopologyView[TopologyChange] = self._topology.changes
        """Typed changes between consecutive topology snapshots, in order."""
        self.kv = KV(self)
        """The engine's key-value state (``state::*``); :attr:`state` is the connection's."""
        self.pubsub = PubSub(self)
        """The engine's pub/sub (``publish`` and ``subscribe`` triggers)."""
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            InvocationResult: self._calls.on_result,
            HotResult: self._calls.on_result,
            WorkerRegistered: self._on_worker_registered,
            RegistrationRejected: self._on_rejected,
            RegisterTrigger: self._providers.on_register,
            UnregisterTrigger: self._providers.on_unregister,
            TriggerRegistrationResult: self._registrations.on_binding_result,
            ErrorFrame: self._on_error_frame,
            Ping: self._on_ping,
        }

    # ================================================================== lifecycle

    def _start(self) -> None:
        self._lifecycle = Lifecycle.CONNECTING
        self._transport.start()

    async def _end_cut_channels(self) -> None:
        """The worker's cut channels, if ``_setup`` got as far as making it (else, masked by
        an AttributeError here, the error that stopped it would be lost)."""
        worker: Worker | None = self.__dict__.get("_worker")
        if worker is not None:
            await worker.end_cut_channels()

    async def _wait_connected(self, timeout: float) -> None:
        await wait_connected(self._transport, lambda: self._failure, timeout)

    @property
    def lifecycle(self) -> Lifecycle:
        """Where the client stands: new, connecting, open, failed, closing, closed."""
        return self._lifecycle

    @property
    def connection_state(self) -> ConnectionState:
        """The current state (the last value of :attr:`state`)."""
        try:
            return self.state.value
        except LookupError:
            return ConnectionState.CONNECTING

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (the close may still be under way)."""
        return self._lifecycle in (Lifecycle.CLOSING, Lifecycle.CLOSED)

    def close(self) -> Closing:
        """Close the client: fail calls in flight, stop handlers, close the socket.

        Returns a :class:`Closing` in every mode. Async clients: ``await iii.close()``. Clients
        from ``connect_sync`` called from outside their loop close right away (blocking) and
        stop their loop thread; the return value may then be awaited or ignored.
        """
        self._worker.exempt_caller()  # a handler closing its client: the close must not wait for it
        closing = self._closing.request()
        if self._loop_thread is not None and not self.bridge.on_loop():
            if not closing.wait(_CLOSE_WAIT):
                log.warning("closing the client took more than %ss; stopping its loop anyway",
                            _CLOSE_WAIT)
            self._loop_thread.stop()
        return closing

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until this client has closed (whoever closed it); ``False`` if ``timeout``
        seconds passed first: a sync worker script can end with it to serve until then. Raises
        the failure of a client failed for good (fatal rejection, reconnects exhausted). Not on
        the loop thread (:class:`~iii_rx.errors.LoopDeadlockError`); a close won't wait for it."""
        return self._pool.exempt_while(lambda: self._closing.wait(timeout, self._failed))

    async def aclose(self) -> None:
        """Close the client and wait for it, from any loop (also a sync client's thread)."""
        self._worker.exempt_caller()
        await self._closing.request()
        if self._loop_thread is not None:
            self._loop_thread.stop()

    async def _shutdown(self) -> None:
        """The ordered close, on the loop (each step says why it comes where it does)."""
        # 1. Refuse anything new while the rest is taken down (a rejected worker keeps its reason).
        self._lifecycle = Lifecycle.CLOSING
        self._calls.refuse(lambda function_id: IIIConnectionError(
            f"the client is closed; cannot call {function_id!r}"))
        self._registrations.refuse(lambda: IIIConnectionError("the client is closed"))
        # 2. Fail the calls in flight: their answers could only come on the socket closed next.
        self._calls.fail_all(lambda iid, call: IIIConnectionError(
            f"the client was closed while the call to {call.function_id!r} "
            f"(invocation {iid}) was in flight"))
        # 3. Close the socket; the engine tells the callers of our running invocations
        #    `invocation_stopped`, so the handlers cut short below need not answer.
        await self._transport.close()
        # 4. Forget the functions: observers complete, invocations waiting for a slot abandoned.
        self._worker.close()
        # 5. Stop what connect started and the client added, newest first: handler and
        #    provider tasks (cancelled, awaited), sync-handler threads (a bounded wait), the
        #    channel ends of the handlers cut short (ended), telemetry (after the handlers,
        #    so that their spans are exported), the embedded engine.
        try:
            await self._resources.aclose()
        except Exception:
            log.exception("stopping what the client started failed")
        # 6. Complete the client's own streams last: `state` has said `disconnected` by now.
        self.invocations.on_completed()
        self.state.on_completed()
        self._lifecycle = Lifecycle.CLOSED
        if self._loop_thread is not None and self._closing.started_on_loop:
            self._loop_thread.stop()  # on its own thread: stops the loop once this step ends

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop_thread is None:
            raise RuntimeError("use `async with` for a client made by connect()")
        self.close()

    def __repr__(self) -> str:
        return f"<iii_rx.Client {self.name!r} {self.url} {self.connection_state.value}>"

    # ================================================================== connection events

    def _on_open(self) -> list[str]:
        """After connecting: reattach, replay, register the worker (docs/protocol.md §2.3).

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
        head.extend(self._registrations.replay())
        iid = self._calls.new_id()
        self._calls.expect(iid, functools.partial(self._on_registered,
                                                  self._transport.connections),
                           _REGISTER_WORKER, self.timeout_ms)
        head.append(encode(InvokeFunction(function_id=_REGISTER_WORKER,
                                          data=self._worker_metadata, invocation_id=iid)))
        return head

    def _on_registered(self, connection: int, value: Any, error: BaseException | None) -> None:
        if (self._lifecycle not in (Lifecycle.CONNECTING, Lifecycle.OPEN)
                or connection != self._transport.connections):
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
        self._lifecycle = Lifecycle.OPEN
        self._transport.set_ready()
        self._standby.on_connected()

    def _on_lost(self, queued: set[str]) -> None:
        """The socket closed: calls already written get no answer (docs/protocol.md §4.3 step 6)."""
        def stopped(iid: str, call: Any) -> BaseException | None:
            return None if self.closed else IIIInvocationError(
                "invocation_stopped", "the connection to the engine was lost while the call "
                "was in flight", function_id=call.function_id, invocation_id=iid)

        self._worker.link_lost()
        self._providers.link_lost()
        self._calls.fail_all(stopped, keep=queued)

    def _on_message(self, raw: str | bytes) -> None:
        frame: Frame | HotInvoke | HotResult | None = read_hot(raw)  # no model for hot frames
        if frame is None:
            try:
                frame = decode(raw)
            except FrameError as exc:
                frame = salvage(raw, exc)  # read leniently, or dropped (logged)
                if frame is None:
                    return
        if type(frame) is HotInvoke or type(frame) is InvokeFunction:
            self._worker.on_invoke(frame, raw)
            return
        handler = self._handlers.get(type(frame))
        if handler is not None:
            handler(frame)
        elif type(frame) is not Pong:
            log.debug("ignored a %r frame", getattr(frame, "type", None))

    def _on_worker_registered(self, frame: WorkerRegistered) -> None:
        self.worker_id = frame.worker_id
        self._reattach_token = frame.reattach_token
        self.features = list(frame.features or [])

    def _on_rejected(self, frame: RegistrationRejected) -> None:
        error = IIIRegistrationRejectedError(frame.code, frame.namespace, frame.worker_name,
                                             frame.owner_worker_id, frame.function_id)
        if frame.code == "FUNCTION_NAMESPACE_CONFLICT":
            self._standby.on_conflict(frame.function_id, error)
            return
        self._go_fatal(error)

    def _on_state(self, state: ConnectionState) -> None:
        if state is ConnectionState.FAILED and self._failure is None:  # the transport gave up
            self._go_fatal(IIIConnectionError(
                f"could not connect to the iii engine at {self.url}: "
                f"{self._transport.failure or 'reconnect attempts exhausted'}"))

    def _go_fatal(self, error: Exception) -> None:
        """Failed for good (a fatal rejection, the transport gave up): state ``failed``, calls
        fail with ``error``, no reconnect, :meth:`wait_closed` raises it."""
        if self._lifecycle not in (Lifecycle.CONNECTING, Lifecycle.OPEN):
            return
        if self._lifecycle is Lifecycle.OPEN:  # connect() raises it otherwise
            log.error("this client failed for good: %s", error)
        self._lifecycle = Lifecycle.FAILED
        self._failure = error
        self._failed.set_exception(error)
        self._calls.refuse(lambda function_id: error)
        self._registrations.refuse(lambda: error)
        self._calls.fail_all(lambda iid, call: error)
        self._transport.fail()
        self._worker.fail(error)

    def _on_error_frame(self, frame: ErrorFrame) -> None:
        if frame.error.code != "AUTH_ERROR":
            log.error("engine error %s: %s", frame.error.code, frame.error.message)
        else:  # a failed attempt: the transport logs it (WARNING once, then INFO), not ERROR
            self._transport.refused(f"AUTH_ERROR: {frame.error.message}")

    def _on_ping(self, frame: Ping) -> None:
        self._transport.send(encode(Pong()))

    def _send_control(self, text: str) -> None:
        if self.bridge.on_loop():
            self._transport.send(text, CONTROL)
        else:
            self._transport.send_threadsafe(text, CONTROL)

    # ================================================================== calls (caller side)

    def trigger(
        self,
        function_id: str | Mapping[str, Any] | CallRequest,
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
        function_id, payload, action, timeout_ms, metadata, namespace = trigger_arguments(
            function_id, payload, action, timeout_ms, metadata, namespace)
        ctx = current_context.get()
        traceparent, baggage = ctx.outgoing_trace() if ctx is not None else otel_trace_headers()
        call = Call(self._calls, function_id, payload, trigger_action(action),
                    timeout_ms if timeout_ms else self.timeout_ms, metadata,
                    call_namespace(function_id, namespace, self.namespace), traceparent, baggage)
        return Single(self.bridge, starter=call, description=f"trigger({function_id!r})")

    @property
    def pending_calls(self) -> int:
        """Calls waiting for an answer (diagnostics)."""
        return len(self._calls)

    @property
    def running_tasks(self) -> int:
        """Background tasks running now: async handlers, awaitables of sync handlers,
        trigger-type callbacks (diagnostics; each leaves when done, close cancels them)."""
        return len(self._tasks)

    async def wait_for_function(self, function_id: str, timeout: float = 30.0, *,
                                namespace: str | None = None) -> FunctionInfo:
        """Return once ``function_id`` is callable (listed in the client's namespace, or
        ``namespace``); ``IIITimeoutError`` after ``timeout`` seconds."""
        return await self._topology.wait_for_function(function_id, timeout, namespace=namespace)

    def wait_for_function_sync(self, function_id: str, timeout: float = 30.0, *,
                               namespace: str | None = None) -> FunctionInfo:
        """Blocking :meth:`wait_for_function` (not on the client's loop thread)."""
        return self._topology.wait_for_function_sync(function_id, timeout, namespace=namespace)

    def subscribe(self, topic: str) -> TriggerStream[Any]:
        """Observable of what is published to ``topic`` (bound only while subscribed)."""
        return self.pubsub.subscribe(topic)

    def publish(self, topic: str, data: Any = None) -> Single[None]:
        """Publish ``data`` to every subscriber of ``topic`` (a lazy Single)."""
        return self.pubsub.publish(topic, data)

    # ================================================================== functions (worker side)

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
        return FunctionStream(self._registrations, FunctionSpec(
            check_id(function_id), description, metadata, request_format, response_format))

    def register_function(
        self,
        function_id: str,
        handler: Callable[..., Any] | BaseModel | Mapping[str, Any],
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
        order. ``handler`` may also be an HTTP invocation config (docs/protocol.md §9), a
        :class:`~iii_rx.http.HttpInvocationConfig` or the same as a dict: the engine then
        calls its URL. Raises ``ValueError`` if ``function_id`` is already registered here.
        """
        spec = FunctionSpec(check_id(function_id), description, metadata, request_format,
                            response_format, http_invocation(handler))
        sink: Sink
        if spec.invocation is not None:
            sink = HttpInvokedSink()
        else:
            if not callable(handler):
                raise TypeError("handler must be callable or an HTTP invocation config")
            sink = self._worker.handler(handler, max_concurrency)
        entry = self._registrations.add_sink(spec, sink)
        return FunctionHandle(self._registrations, spec.id, sink, entry.status)

    @property
    def function_ids(self) -> list[str]:
        """The functions this client has registered."""
        return self._registrations.function_ids

    # ================================================================== triggers

    def register_trigger(
        self,
        trigger: Mapping[str, Any] | BindingRequest | None = None,
        /,
        **fields: Any,
    ) -> TriggerHandle:
        """Bind a function to a trigger: ``{"type", "function_id", "config"?, "metadata"?,
        "namespace"?, "trigger_namespace"?}`` (a mapping, an object with those attributes, or
        keywords). ``config`` is sent as ``{}`` when absent. Returns a handle to unregister."""
        binding = binding_of(trigger, fields, self.namespace)
        handle = TriggerHandle(self._registrations, binding)
        self._registrations.add_binding(handle)
        return handle

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
        trigger_type = TriggerType(check_id(id), description, on_register, on_unregister,
                                   trigger_request_format, call_request_format)
        self._registrations.add_trigger_type(trigger_type)
        return TriggerTypeHandle(self._registrations, trigger_type)

    # ================================================================== channels

    async def create_channel_async(self, buffer_size: int | None = None) -> channels.Channel:
        """Create a channel (``engine::channels::create``): a ``Channel`` with reader/writer."""
        return await create_channel_async(self, buffer_size)

    def create_channel(self, buffer_size: int | None = None) -> channels.Channel:
        """Blocking :meth:`create_channel_async` (``LoopDeadlockError`` on the client's loop)."""
        return create_channel(self, buffer_size)
