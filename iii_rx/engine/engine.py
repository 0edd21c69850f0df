"""The embedded engine: lifecycle, wiring, and the sync wrapper for threads.

:class:`Engine` owns one websocket port and the registries behind it::

    async with Engine(port=0) as engine:
        print(engine.url)            # ws://127.0.0.1:PORT

    with Engine.start_in_thread(namespace_grace_ms=100) as handle:   # sync code, tests
        print(handle.url)

**Wiring.** ``Engine.__init__`` is the one place where the parts meet; each part gets only
what it uses:

======================  ===========================================================
part                    receives
======================  ===========================================================
``Registry``            nothing (functions, workers, leases)
``Triggers``            nothing (trigger types and bindings)
``Router``              the registry, the config (pending-call sweep)
``ChannelHub``          its sweep timers
``Discovery``           the registry, the triggers (read only)
``WorkersAvailable``    the router (to fire its bindings)
``FunctionsAvailable``  the router, the registry, discovery's function summaries, its
                        interval
``Dispatcher``          the registry, router, triggers, config, and the
                        ``workers-available`` notify callback
``install_builtins``    the registry, triggers, discovery, the dispatcher's
                        ``register_worker``, the hub's ``create``, the ack timeout,
                        the two ``*-available`` providers
``EngineServer``        the config, the dispatcher (its ``serve``, behind a listener guard
                        when the main port has middleware or RBAC), the hub
``ListenerServers``     the further listeners, the config, the dispatcher, the hub
``CoreServices``        the config, registry, triggers, router, hub, dispatcher, servers
extensions              the services (:class:`~iii_rx.engine.services.EngineServices`)
======================  ===========================================================

**Extensions.** Features that live in their own modules (the REST API for ``http`` triggers,
HTTP-invoked functions, built-in workers) are
:class:`~iii_rx.engine.services.EngineExtension` objects: ``start(services)`` runs after the
registries exist and before the port opens, ``stop()`` after the port closed. They reach the
engine only through :class:`~iii_rx.engine.services.EngineServices`. Engine-originated calls go
through :meth:`Engine.call`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from iii_rx.aio import LoopThread
from iii_rx.engine.available import FunctionsAvailable, WorkersAvailable
from iii_rx.engine.builtins import install_builtins
from iii_rx.engine.channels import ChannelHub
from iii_rx.engine.config import DEFAULT_NAMESPACE, MAX_MESSAGE_BYTES, EngineConfig
from iii_rx.engine.config_file import load_config_file
from iii_rx.engine.config_workers import settings_from_file
from iii_rx.engine.discovery import Discovery
from iii_rx.engine.dispatch import Dispatcher
from iii_rx.engine.http_functions import HttpFunctionsExtension
from iii_rx.engine.listener_servers import ListenerServers, listener_server
from iii_rx.engine.listeners import Listener
from iii_rx.engine.logsafe import LogBudgets
from iii_rx.engine.rbac_config import RbacConfig
from iii_rx.engine.registry import Registry
from iii_rx.engine.rest_trigger import RestExtension
from iii_rx.engine.router import Router
from iii_rx.engine.services import CoreServices, EngineExtension
from iii_rx.engine.triggers import Triggers
from iii_rx.engine.workers import BuiltinWorkers
from iii_rx.engine.workers.otel import OtelWorker

__all__ = ["Engine", "EngineExtension", "EngineThread"]

log = logging.getLogger("iii_rx.engine")


class Engine:
    """An iii engine in this process, serving workers on ``ws://host:port``.

    Every timer of docs/protocol.md is a keyword argument with the protocol's default:

    * ``namespace_grace_ms`` — how long registrations wait for ``engine::workers::register``
      before the connection's namespace is fixed to ``default`` (docs/protocol.md §2.5);
    * ``functions_available_poll_ms`` — the Rust engine's poll period for
      ``engine::functions-available`` (docs/protocol.md §6.6), the latest a change may be announced;
      ours announces within about 100 ms, later (up to it) only for large notifications
      under churn (see :mod:`iii_rx.engine.available`);
    * ``provider_ack_timeout_ms`` — how long ``engine::register_trigger`` waits for a worker
      provider's answer before accepting (docs/protocol.md §8.11);
    * ``invocation_timeout_ms`` — default timeout of HTTP-invoked functions (docs/protocol.md §9.2);
    * ``rest_timeout_ms`` — REST API request timeout, then 504 (docs/protocol.md §6.5.1);
    * ``http_no_response_grace_ms`` — how long the REST API waits for a response writer after a
      handler returned ``None`` before answering 500 (the official SDK's streaming helpers are
      fire-and-forget, so the writer may still be on its way), and for a handler's outcome
      after its response writer failed before the first chunk;
    * ``channel_sweep_interval_ms`` / ``channel_max_age_ms`` — sweep of half-connected channels
      (docs/protocol.md §7.5);
    * ``pending_max_age_ms`` — calls without a result for this long are dropped with
      ``invocation_error`` (memory bound, docs/protocol.md §12.3 item 13; 0 disables);
    * ``max_pending_fires_per_worker`` — trigger calls (fires nobody waits for) without a result
      kept per handler; past it the engine forgets the oldest (no error: the handler may be
      only busy), so a watcher that never answers holds a bounded table, not an hour of fires
      (0 = unbounded).

    ``port=0`` and ``rest_port=0`` pick ephemeral ports (only the CLI uses the well-known ones);
    ``rest_port=None`` opens no REST API (and no ``http`` trigger type), as a config file
    without ``iii-http``.
    ``unique_worker_names`` enforces one live worker per ``(namespace, name)``
    (``WORKER_NAMESPACE_CONFLICT``). ``allow_http_private`` / ``require_https`` /
    ``http_url_allowlist`` (host globs) are the URL policy of HTTP-invoked functions: loopback
    over plain http is allowed, other private ranges are refused unless allowed, any other host
    needs https.

    ``token`` (the CLI's ``--token`` / ``III_TOKEN``) is required as ``Authorization: Bearer``
    on the worker, channel and REST ports when set. ``http_secret_env_allowlist`` names the
    environment variables (exact names, or prefixes ending in ``*``) that HTTP-invoked
    functions may use as secrets; empty by default, so none may. ``rest_max_concurrency``,
    ``rest_header_timeout_ms`` and ``rest_body_timeout_ms`` bound the REST API (docs/http.md).

    Bounds and fault detection (docs/guarantees.md): ``max_queue_bytes`` bounds what waits to
    be sent to one worker (calls toward it are refused with ``queue_full`` past half of it, the
    peer is dropped past all of it; a streams-socket client is disconnected past it),
    ``stuck_timeout_ms`` drops a peer whose queue cannot be written for that long,
    ``ping_interval_ms`` / ``ping_timeout_ms`` drop a peer that does not answer a websocket
    ping in time (0 disables each), ``handshake_timeout_ms`` drops a new
    connection to the main port that has not completed its websocket opening handshake in
    that time (further listeners have their own); ``channel_buffer_bytes`` bounds one
    channel's pipe, ``max_channels_per_worker`` the live channels a worker created;
    ``max_functions_per_worker``, ``max_triggers_per_worker`` and
    ``max_trigger_types_per_worker`` cap one connection's registrations.

    Built-in workers (``docs/engine.md``, "Built-in workers"): state, pub/sub, cron and logs
    are always there (:attr:`workers`); ``state_file``, ``stream_file`` and ``queue_file`` keep
    state, stream items and queued messages in sqlite files (they survive restarts and kills)
    instead of in memory; ``stream_port`` opens the streams socket (``0``: a free port), whose
    connections ``stream_auth_function`` authenticates. The REST API and the streams socket
    bind ``rest_host`` / ``stream_host``, by default ``host`` (the main listener's).

    Listeners (``docs/engine-config.md``): ``middleware_function_id`` and ``rbac`` guard the
    main port; ``listeners`` opens further ports, each a
    :class:`~iii_rx.engine.listeners.Listener` with its own middleware and RBAC, all sharing
    one registry. :meth:`from_config` builds an engine from the Rust engine's config file.

    The parts (``registry``, ``triggers``, ``router``, ``hub``, ``dispatcher``, ...) are
    attributes so that tests and tools can look inside; extensions get :attr:`services`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rest_port: int | None = 0,
        namespace_grace_ms: int = 5000,
        functions_available_poll_ms: int = 5000,
        unique_worker_names: bool = True,
        provider_ack_timeout_ms: int = 10_000,
        invocation_timeout_ms: int = 30_000,
        rest_timeout_ms: int = 30_000,
        http_no_response_grace_ms: int = 1_000,
        channel_sweep_interval_ms: int = 60_000,
        channel_max_age_ms: int = 300_000,
        pending_max_age_ms: int = 3_600_000,
        max_pending_fires_per_worker: int = 1_000,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        handshake_timeout_ms: int = 10_000,
        allow_http_private: bool = False,
        require_https: bool = True,
        http_url_allowlist: tuple[str, ...] = ("*",),
        max_queue_bytes: int = 32 * 1024 * 1024,
        stuck_timeout_ms: int = 30_000,
        ping_interval_ms: int = 5_000,
        ping_timeout_ms: int = 5_000,
        channel_buffer_bytes: int = 1024 * 1024,
        max_channels_per_worker: int = 256,
        max_functions_per_worker: int = 10_000,
        max_triggers_per_worker: int = 10_000,
        max_trigger_types_per_worker: int = 1_000,
        token: str | None = None,
        http_secret_env_allowlist: tuple[str, ...] = (),
        rest_max_concurrency: int = 1024,
        rest_header_timeout_ms: int = 10_000,
        rest_body_timeout_ms: int = 10_000,
        state_file: str | os.PathLike[str] | None = None,
        stream_file: str | os.PathLike[str] | None = None,
        queue_file: str | os.PathLike[str] | None = None,
        stream_port: int | None = None,
        stream_auth_function: str | None = None,
        rest_host: str | None = None,
        stream_host: str | None = None,
        middleware_function_id: str | None = None,
        rbac: RbacConfig | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.config = EngineConfig(
            host=host, port=port, rest_port=rest_port, namespace_grace_ms=namespace_grace_ms,
            functions_available_poll_ms=functions_available_poll_ms,
            unique_worker_names=unique_worker_names,
            provider_ack_timeout_ms=provider_ack_timeout_ms,
            invocation_timeout_ms=invocation_timeout_ms, rest_timeout_ms=rest_timeout_ms,
            http_no_response_grace_ms=http_no_response_grace_ms,
            channel_sweep_interval_ms=channel_sweep_interval_ms,
            channel_max_age_ms=channel_max_age_ms, pending_max_age_ms=pending_max_age_ms,
            max_pending_fires_per_worker=max_pending_fires_per_worker,
            max_message_bytes=max_message_bytes, handshake_timeout_ms=handshake_timeout_ms,
            allow_http_private=allow_http_private,
            require_https=require_https, http_url_allowlist=tuple(http_url_allowlist),
            max_queue_bytes=max_queue_bytes, stuck_timeout_ms=stuck_timeout_ms,
            ping_interval_ms=ping_interval_ms, ping_timeout_ms=ping_timeout_ms,
            channel_buffer_bytes=channel_buffer_bytes,
            max_channels_per_worker=max_channels_per_worker,
            max_functions_per_worker=max_functions_per_worker,
            max_triggers_per_worker=max_triggers_per_worker,
            max_trigger_types_per_worker=max_trigger_types_per_worker,
            token=token or None, http_secret_env_allowlist=tuple(http_secret_env_allowlist),
            rest_max_concurrency=rest_max_concurrency,
            rest_header_timeout_ms=rest_header_timeout_ms,
            rest_body_timeout_ms=rest_body_timeout_ms,
            state_file=os.fspath(state_file) if state_file is not None else None,
            stream_file=os.fspath(stream_file) if stream_file is not None else None,
            queue_file=os.fspath(queue_file) if queue_file is not None else None,
            stream_port=stream_port, stream_auth_function=stream_auth_function,
            rest_host=rest_host, stream_host=stream_host,
        )
        config = self.config
        self.log_budgets = LogBudgets()
        """This engine's budgets of log lines a peer can cause at will, one per logger, handed
        to every part that writes them: engines in one process never silence each other's
        warnings. Extensions take theirs through ``services.limited_log``."""
        self.peer_log = self.log_budgets.of(log)
        """The budget of the ``iii_rx.engine`` logger (the core parts' lines)."""
        self.registry = Registry(peer_log=self.peer_log)
        self.triggers = Triggers(peer_log=self.peer_log)
        self.router = Router(self.registry, config, peer_log=self.peer_log)
        self.hub = ChannelHub(sweep_interval_s=config.channel_sweep_interval_ms / 1000,
                              max_age_s=config.channel_max_age_ms / 1000,
                              buffer_bytes=config.channel_buffer_bytes,
                              max_per_owner=config.max_channels_per_worker)
        self.discovery = Discovery(self.registry, self.triggers, self.router.metrics)
        self.workers_available = WorkersAvailable(self.router)
        self.functions_available = FunctionsAvailable(
            self.router, self.registry, self.discovery.all_function_summaries,
            config.functions_available_poll_ms)
        self.dispatcher = Dispatcher(self.registry, self.router, self.triggers, config,
                                     self._worker_event, peer_log=self.peer_log)
        self.functions_available.visible_to = self.dispatcher.visible_to
        install_builtins(
            self.registry, self.triggers, self.discovery,
            register_worker=self.dispatcher.register_worker, create_channel=self.hub.create,
            provider_ack_timeout_ms=config.provider_ack_timeout_ms,
            workers_available=self.workers_available,
            functions_available=self.functions_available)
        main_listener = Listener(config.port, config.host, middleware_function_id, rbac,
                                 config.handshake_timeout_ms)
        reserved = frozenset().union(*(listener.guard_function_ids
                                       for listener in (main_listener, *listeners)))
        self._server = listener_server(main_listener, config, self.dispatcher, self.hub,
                                       main=True, reserved=reserved)
        self.listeners = ListenerServers(listeners, config, self.dispatcher, self.hub,
                                         reserved)
        """The listeners beyond the main port (their ``ports`` once started)."""
        self.services = CoreServices(config=config, registry=self.registry,
                                     triggers=self.triggers, router=self.router,
                                     channels=self.hub, dispatcher=self.dispatcher,
                                     log_budgets=self.log_budgets,
                                     servers=(self._server, *self.listeners.servers))
        """What extensions get (:class:`~iii_rx.engine.services.EngineServices`)."""
        self._rest = RestExtension()
        self.workers = BuiltinWorkers.create(state_file=config.state_file,
                                             stream_file=config.stream_file,
                                             queue_file=config.queue_file)
        """The built-in workers (state, pub/sub, cron, logs), started after the REST API."""
        self.otel = OtelWorker(self.workers.logs.add_entry)
        """The ``/otel`` intake: spans, logs and metrics workers export (docs/engine.md)."""
        self.router.metrics.sdk_metrics = self.otel.sdk_metrics
        self._extensions: list[EngineExtension] = [self._rest, HttpFunctionsExtension(),
                                                   *self.workers.extensions(), self.otel]
        self._started: list[EngineExtension] = []
        self._running = False

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **overrides: Any) -> Engine:
        """An engine configured by the Rust engine's config file (``docs/engine-config.md``).

        ``overrides`` (any ``Engine`` keyword) win over the file. A malformed file raises
        :class:`~iii_rx.engine.config_file.ConfigFileError` naming the file, key and what was
        expected; workers and keys this engine does not apply are logged, one warning each.
        """
        settings = settings_from_file(load_config_file(path))
        for warning in settings.warnings:
            log.warning("%s", warning)
        options = {**settings.options, **overrides}
        options["listeners"] = [*settings.listeners, *options.get("listeners", ())]
        engine = cls(**options)
        engine.workers.queues.queue_configs.update(settings.queue_configs)
        return engine

    def _worker_event(self, event: str, worker_id: str) -> None:
        """A worker came, registered or left: tell the provider; free a leaver's channels."""
        self.workers_available.notify(event, worker_id)
        if event == "worker_disconnected":
            self.hub.release_owner(worker_id)

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The bound worker port (``0`` until started)."""
        return self._server.port

    @property
    def url(self) -> str:
        """``ws://host:port`` for workers."""
        return f"ws://{_url_host(self.config.host)}:{self.port}"

    @property
    def listener_urls(self) -> list[str]:
        """``ws://host:port`` of every listener, the main port first."""
        servers = [self._server, *self.listeners.servers]
        return [f"ws://{_url_host(s.host)}:{s.port}" for s in servers]

    @property
    def rest_port(self) -> int | None:
        """Bound port of the REST API (``None`` until the engine started, or when it has
        none: ``rest_port=None``)."""
        return self._rest.port

    # ------------------------------------------------------------------ lifecycle

    def add_extension(self, extension: EngineExtension) -> None:
        """Start ``extension`` with the engine, after the built-in ones (the REST API and
        HTTP-invoked functions); call before :meth:`start`."""
        self._extensions.append(extension)

    async def start(self) -> None:
        """Start the hub, the extensions and the websocket port."""
        if self._running:
            return
        self._running = True
        try:
            await self.hub.start()
            self.router.start()
            self.functions_available.start()
            for extension in self._extensions:
                await extension.start(self.services)
                self._started.append(extension)
            await self._server.start()
            await self.listeners.start()
        except BaseException:
            await self.stop()
            raise
        log.info("iii engine listening on %s", ", ".join(self.listener_urls))

    async def stop(self) -> None:
        """Close every connection (workers see 1012 and reconnect), then stop everything."""
        if not self._running:
            return
        self._running = False
        # Channels first: a writer blocked on a full pipe would otherwise hold the server's
        # close for the channel sockets' whole close timeout.
        await self.hub.close()
        await self._server.close()
        await self.listeners.close()
        for extension in reversed(self._started):
            try:
                await extension.stop()
            except Exception:
                log.exception("engine extension %r failed to stop", extension)
        self._started.clear()
        self.functions_available.stop()
        await self.router.stop()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # ------------------------------------------------------------------ calls

    async def call(self, function_id: str, data: Any = None, *,
                   namespace: str = DEFAULT_NAMESPACE, metadata: Any = None,
                   timeout: float | None = None) -> Any:
        """Invoke a function from inside the engine (raises ``IIIInvocationError``)."""
        return await self.router.call(function_id, data, namespace=namespace,
                                      metadata=metadata, timeout=timeout)

    # ------------------------------------------------------------------ threads

    @classmethod
    def start_in_thread(cls, host: str = "127.0.0.1", port: int = 0,
                        **kwargs: Any) -> EngineThread:
        """Start an engine on its own loop in a daemon thread; blocks until it listens."""
        return EngineThread(cls(host, port, **kwargs))


class EngineThread:
    """An :class:`Engine` running on its own :class:`~iii_rx.aio.LoopThread`; a context manager.

    Built by :meth:`Engine.start_in_thread`, which returns once the engine listens. Blocking
    calls made on the engine's own loop thread raise
    :class:`~iii_rx.errors.LoopDeadlockError` instead of deadlocking.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._thread = LoopThread(name="iii-rx-engine")
        try:
            self._thread.bridge.run_blocking(engine.start(), "Engine.start_in_thread()")
        except BaseException:
            self._thread.stop()
            raise

    @property
    def url(self) -> str:
        """``ws://host:port`` for workers."""
        return self.engine.url

    @property
    def port(self) -> int:
        """The bound worker port."""
        return self.engine.port

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the engine runs on (schedule coroutines with ``run_coroutine_threadsafe``)."""
        return self._thread.loop

    def call(self, function_id: str, data: Any = None, *, namespace: str = DEFAULT_NAMESPACE,
             timeout: float | None = 30.0) -> Any:
        """Blocking :meth:`Engine.call`."""
        return self._thread.bridge.run_blocking(
            self.engine.call(function_id, data, namespace=namespace, timeout=timeout),
            "EngineThread.call()")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine and its thread (idempotent)."""
        if self._thread.loop.is_closed():
            return
        try:
            self._thread.bridge.run_blocking(self.engine.stop(), "EngineThread.stop()", timeout)
        finally:
            self._thread.stop()

    def __enter__(self) -> EngineThread:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
