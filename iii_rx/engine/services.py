"""The one interface between the engine and its extensions: :class:`EngineServices`.

An **extension** is a feature started and stopped with the engine: the REST API and ``http``
triggers (:mod:`iii_rx.engine.rest_trigger`), HTTP-invoked functions
(:mod:`iii_rx.engine.http_functions`), and the built-in workers (state, streams, pub/sub,
queues, cron, logs). It is an :class:`EngineExtension`: ``await start(services)`` runs after the
registries exist and before the worker port opens, ``await stop()`` after the port closed. It
never sees the :class:`~iii_rx.engine.Engine` object, only the services, so what an extension
may do is written down in one place, and an extension can be driven by a fake in tests.

What the services offer:

* :attr:`~EngineServices.config` — every setting of the engine;
* :meth:`~EngineServices.call` / :meth:`~EngineServices.fire` — call any function (worker,
  in-process or HTTP-invoked) as the engine: wait for the result, or fire and forget;
* :meth:`~EngineServices.add_worker` — declare an in-process worker, listed by
  ``engine::workers::list`` with ``runtime: "engine"``;
* :meth:`~EngineServices.add_function` / :meth:`~EngineServices.remove_function` — in-process
  functions ``async handler(data, ctx) -> result``, callable by every worker;
  :meth:`~EngineServices.has_function` — whether a function is served now;
* :meth:`~EngineServices.add_trigger_type` / :meth:`~EngineServices.remove_trigger_type` —
  in-process trigger providers (see :mod:`iii_rx.engine.triggers`);
* :attr:`~EngineServices.channels` — the channel hub: create channels, hold their ends;
* :meth:`~EngineServices.set_http_function_hook` — serve ``registerfunction`` frames that
  carry an HTTP ``invocation`` (see :mod:`iii_rx.engine.dispatch`);
* :meth:`~EngineServices.set_telemetry_sink` — take the frames workers send on ``/otel``;
* :meth:`~EngineServices.limited_log` — the engine's budget of a logger's lines that a peer
  can cause at will (a bad frame, a refused request): engines in one process never share one.

A built-in worker is written against it like this::

    class Counter:
        async def start(self, services: EngineServices) -> None:
            services.add_worker("iii-counter", "Counts calls")
            count = 0

            async def incr(data: Any, ctx: CallContext) -> int:
                nonlocal count
                count += 1
                return count

            services.add_function("counter::incr", incr, worker="iii-counter")

        async def stop(self) -> None:
            pass

    engine.add_extension(Counter())

Everything runs on the engine's loop: call the services from ``start``, from handlers and from
trigger providers, not from other threads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from iii_rx.engine.config import DEFAULT_NAMESPACE, EngineConfig
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.dispatch import Dispatcher, HttpFunctionHook
from iii_rx.engine.logsafe import LogBudgets, RateLimitedLog
from iii_rx.engine.registry import FunctionEntry, InProcessHandler, Registry
from iii_rx.engine.router import Router
from iii_rx.engine.server import EngineServer, TelemetrySink
from iii_rx.engine.triggers import Triggers, TriggerType

__all__ = [
    "ChannelService",
    "CoreServices",
    "EngineExtension",
    "EngineServices",
    "LocalReader",
    "LocalWriter",
    "NO_TRACE",
    "Trace",
]

Trace = tuple[str | None, str | None]
"""The ``traceparent`` and ``baggage`` an engine-made call goes on with: those of the HTTP
request or of the call that made the event (docs/protocol.md §10.4)."""
NO_TRACE: Trace = (None, None)


class LocalWriter(Protocol):
    """The engine's own writing end of a channel (e.g. an HTTP request body)."""

    async def write(self, data: bytes) -> None:
        """Send one binary frame; waits while the channel is full (flow control)."""
        ...

    async def close(self) -> None:
        """End the stream cleanly: the reader sees the end after the frames sent."""
        ...


class LocalReader(Protocol):
    """The engine's own reading end of a channel (e.g. a streamed HTTP response)."""

    @property
    def writer_connected(self) -> bool:
        """Whether a writer (a worker's socket) has attached to the channel."""
        ...

    async def receive(self) -> bytes | str | None:
        """The next frame (``bytes`` binary, ``str`` text), ``None`` once the writer closed."""
        ...

    @property
    def end_code(self) -> int | None:
        """1000 for a clean end, 1011 (or 1001) otherwise; ``None`` while the stream is open."""
        ...


class ChannelService(Protocol):
    """What extensions use of the channel hub (docs/protocol.md §7).

    Channels whose one end is the engine.
    """

    def create(self, buffer_size: int | None = None) -> dict[str, Any]:
        """A new channel: ``{"writer": ref, "reader": ref}`` (refs as JSON dicts, handed to
        workers in payloads)."""
        ...

    def local_writer(self, channel_id: str) -> LocalWriter:
        """Take the writing end of ``channel_id`` for the engine itself."""
        ...

    def local_reader(self, channel_id: str) -> LocalReader:
        """Take the reading end of ``channel_id`` for the engine itself."""
        ...

    def remove(self, channel_id: str) -> None:
        """Drop a channel and end whatever is still attached to it."""
        ...


class EngineServices(Protocol):
    """What an extension may use of the engine it runs in (see the module docstring)."""

    @property
    def config(self) -> EngineConfig:
        """Every setting of the engine (ports, timers, policies)."""
        ...

    @property
    def channels(self) -> ChannelService:
        """The channel hub."""
        ...

    async def call(self, function_id: str, data: Any = None, *,
                   namespace: str = DEFAULT_NAMESPACE, metadata: Any = None,
                   traceparent: str | None = None, baggage: str | None = None,
                   timeout: float | None = None, caller: WorkerConnection | None = None) -> Any:
        """Call a function and return its result.

        Raises :class:`~iii_rx.errors.IIIInvocationError` with the wire's code
        (``function_not_found``, ``invocation_stopped``, the handler's error, ...) and
        :class:`~iii_rx.errors.IIITimeoutError` when ``timeout`` (seconds) passes first.
        ``caller`` (a ``CallContext.caller``): the worker the call is made for, when only
        that worker waits for its answer (a read); the call is withdrawn if it leaves.
        """
        ...

    def fire(self, function_id: str, data: Any = None, *, namespace: str = DEFAULT_NAMESPACE,
             metadata: Any = None, traceparent: str | None = None,
             baggage: str | None = None) -> None:
        """Call a function without waiting (a trigger firing); a failure is logged. The trace
        context is the one of the call that made the event, if any."""
        ...

    def add_worker(self, name: str, description: str | None = None) -> None:
        """Declare an in-process worker ``name`` (idempotent: the first description stays).

        Its functions and trigger types name it (``worker=``, ``TriggerType.worker_name``).
        """
        ...

    def add_function(self, function_id: str, handler: InProcessHandler, *, worker: str,
                     namespace: str = DEFAULT_NAMESPACE, description: str | None = None,
                     request_format: Any = None, response_format: Any = None,
                     metadata: Any = None, inline: bool = False) -> None:
        """Register ``await handler(data, ctx)`` as ``(namespace, function_id)`` of ``worker``.

        The handler returns the result or raises
        :class:`~iii_rx.errors.IIIInvocationError` (its code and message become the error
        body; any other exception is ``invocation_failed``). ``ctx`` is a
        :class:`~iii_rx.engine.registry.CallContext`. ``inline=True`` runs it in the caller's
        frame order; only for handlers that never wait long. Replaces a function of the same
        worker; raises ``ValueError`` if someone else holds the key.
        """
        ...

    def remove_function(self, function_id: str, *, worker: str,
                        namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Unregister a function of ``worker``; ``False`` if it had none under that key."""
        ...

    def has_function(self, function_id: str, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Whether anyone (a worker, the engine) serves ``(namespace, function_id)`` now."""
        ...

    def add_trigger_type(self, trigger_type: TriggerType) -> None:
        """Provide ``trigger_type`` in-process (its ``provider`` is a
        :class:`~iii_rx.engine.triggers.TriggerProvider`).

        Bindings waiting for the type are delivered to ``provider.bind`` at once; the provider
        fires them with :meth:`fire` or :meth:`call` in ``binding.namespace`` with
        ``binding.metadata``.
        """
        ...

    def remove_trigger_type(self, trigger_type: TriggerType) -> bool:
        """Stop providing ``trigger_type`` (its bindings move to another provider or park)."""
        ...

    def set_http_function_hook(self, hook: HttpFunctionHook | None) -> None:
        """Serve HTTP-invoked registrations with ``hook`` (``None``: refuse them again)."""
        ...

    def set_telemetry_sink(self, sink: TelemetrySink | None) -> None:
        """Hand every frame received on ``/otel`` (of every listener) to ``sink`` (``None``:
        discard them)."""
        ...

    def limited_log(self, logger: logging.Logger) -> RateLimitedLog:
        """This engine's rate-limited log of ``logger`` (shared by everything that logs there),
        for the lines a peer can cause at will."""
        ...


class EngineExtension(Protocol):
    """A feature started and stopped with the engine, reaching it through its services."""

    async def start(self, services: EngineServices) -> None:
        """Set up (after the registries exist, before the worker port opens)."""
        ...

    async def stop(self) -> None:
        """Tear down (after the worker port closed)."""
        ...


class CoreServices:
    """The engine's :class:`EngineServices`, over its parts; built by ``Engine.__init__``."""

    def __init__(self, *, config: EngineConfig, registry: Registry, triggers: Triggers,
                 router: Router, channels: ChannelService, dispatcher: Dispatcher,
                 log_budgets: LogBudgets, servers: Sequence[EngineServer] = ()) -> None:
        self._config = config
        self._servers = tuple(servers)
        """The main port's server and the further listeners' (each mounts ``/otel``)."""
        self._registry = registry
        self._triggers = triggers
        self._router = router
        self._channels = channels
        self._dispatcher = dispatcher
        self._log_budgets = log_budgets

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def channels(self) -> ChannelService:
        return self._channels

    async def call(self, function_id: str, data: Any = None, *,
                   namespace: str = DEFAULT_NAMESPACE, metadata: Any = None,
                   traceparent: str | None = None, baggage: str | None = None,
                   timeout: float | None = None, caller: WorkerConnection | None = None) -> Any:
        return await self._router.call(function_id, data, namespace=namespace,
                                       metadata=metadata, traceparent=traceparent,
                                       baggage=baggage, timeout=timeout, caller=caller)

    def fire(self, function_id: str, data: Any = None, *, namespace: str = DEFAULT_NAMESPACE,
             metadata: Any = None, traceparent: str | None = None,
             baggage: str | None = None) -> None:
        self._router.fire(function_id, data, namespace=namespace, metadata=metadata,
                          traceparent=traceparent, baggage=baggage)

    def add_worker(self, name: str, description: str | None = None) -> None:
        self._registry.add_builtin_worker(name, description)

    def add_function(self, function_id: str, handler: InProcessHandler, *, worker: str,
                     namespace: str = DEFAULT_NAMESPACE, description: str | None = None,
                     request_format: Any = None, response_format: Any = None,
                     metadata: Any = None, inline: bool = False) -> None:
        existing = self._registry.functions.get((namespace, function_id))
        if existing is not None and (existing.owner is not None
                                     or existing.builtin_worker != worker):
            raise ValueError(f"function {function_id!r} in namespace {namespace!r} is already "
                             f"registered by {self._registry.worker_name_of(existing)!r}")
        self._registry.add_function(FunctionEntry(
            function_id, namespace, handler=handler, inline=inline, builtin_worker=worker,
            description=description, request_format=request_format,
            response_format=response_format, metadata=metadata))

    def remove_function(self, function_id: str, *, worker: str,
                        namespace: str = DEFAULT_NAMESPACE) -> bool:
        key = (namespace, function_id)
        existing = self._registry.functions.get(key)
        if existing is None or existing.owner is not None or existing.builtin_worker != worker:
            return False
        self._registry.remove_function(key)
        return True

    def has_function(self, function_id: str, namespace: str = DEFAULT_NAMESPACE) -> bool:
        return (namespace, function_id) in self._registry.functions

    def add_trigger_type(self, trigger_type: TriggerType) -> None:
        if trigger_type.provider is None or isinstance(trigger_type.provider, WorkerConnection):
            raise ValueError(f"trigger type {trigger_type.id!r} needs an in-process provider")
        self._triggers.add_type(trigger_type)

    def remove_trigger_type(self, trigger_type: TriggerType) -> bool:
        return self._triggers.remove_type(trigger_type.key, trigger_type.provider)

    def set_http_function_hook(self, hook: HttpFunctionHook | None) -> None:
        self._dispatcher.http_function_hook = hook

    def set_telemetry_sink(self, sink: TelemetrySink | None) -> None:
        for server in self._servers:
            server.telemetry_sink = sink

    def limited_log(self, logger: logging.Logger) -> RateLimitedLog:
        return self._log_budgets.of(logger)
