"""The embedded engine: lifecycle, wiring, and the sync wrapper for threads.

:class:`Engine` owns one websocket port and the registries behind it::

    async with Engine(port=0) as engine:
        print(engine.url)            # ws://127.0.0.1:PORT

    with Engine.start_in_thread(namespace_grace_ms=100) as handle:   # sync code, tests
        print(handle.url)

**Extensions.** Features that live in their own modules (the REST API for ``http`` triggers,
HTTP-invoked functions) plug in as :class:`EngineExtension` objects: ``start(engine)`` runs
after the registries exist and before the port opens, ``stop()`` after the port closed. They
use the seams documented in :mod:`iii_rx.engine.triggers` (in-process trigger providers),
:mod:`iii_rx.engine.registry` (in-process functions) and :mod:`iii_rx.engine.dispatch`
(``http_function_hook``); engine-originated calls go through :meth:`Engine.call`.
:func:`default_extensions` lists the ones every engine starts with.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Any, Protocol

from iii_rx.engine.available import FunctionsAvailable, WorkersAvailable
from iii_rx.engine.builtins import install_builtins
from iii_rx.engine.channels import ChannelHub
from iii_rx.engine.config import DEFAULT_NAMESPACE, MAX_MESSAGE_BYTES, EngineConfig
from iii_rx.engine.discovery import Discovery
from iii_rx.engine.dispatch import Dispatcher
from iii_rx.engine.registry import Registry
from iii_rx.engine.router import Router
from iii_rx.engine.server import EngineServer
from iii_rx.engine.triggers import Triggers

__all__ = ["Engine", "EngineExtension", "EngineThread", "default_extensions"]

log = logging.getLogger("iii_rx.engine")


class EngineExtension(Protocol):
    """A feature started and stopped with the engine (see the module docstring)."""

    async def start(self, engine: Engine) -> None: ...

    async def stop(self) -> None: ...


def default_extensions(engine: Engine) -> list[EngineExtension]:
    """Extensions every engine starts with: the REST API and HTTP-invoked functions."""
    from iii_rx.engine.http_functions import HttpFunctionsExtension
    from iii_rx.engine.rest import RestExtension

    return [RestExtension(), HttpFunctionsExtension()]


class Engine:
    """An iii engine in this process, serving workers on ``ws://host:port``.

    Every timer of the spec is a keyword argument with the spec's default:

    * ``namespace_grace_ms`` — how long registrations wait for ``engine::workers::register``
      before the connection's namespace is fixed to ``default`` (spec 2.5);
    * ``functions_available_poll_ms`` — least interval between two
      ``engine::functions-available`` notifications (spec 6.6; the Rust engine polls this often);
    * ``provider_ack_timeout_ms`` — how long ``engine::register_trigger`` waits for a worker
      provider's answer before accepting (spec 8.11);
    * ``invocation_timeout_ms`` — default timeout of HTTP-invoked functions (spec 9.2);
    * ``rest_timeout_ms`` — REST API request timeout, then 504 (spec 6.5.1);
    * ``http_no_response_grace_ms`` — how long the REST API waits for a response writer after a
      handler returned ``None`` before answering 500 (DECISIONS 9);
    * ``channel_sweep_interval_ms`` / ``channel_max_age_ms`` — sweep of half-connected channels
      (spec 7.5);
    * ``pending_max_age_ms`` — calls without a result for this long are dropped with
      ``invocation_error`` (memory bound, spec 12.3 item 13; 0 disables).

    ``port=0`` and ``rest_port=0`` pick ephemeral ports (DECISIONS 5).
    ``unique_worker_names`` enforces one live worker per ``(namespace, name)``
    (``WORKER_NAMESPACE_CONFLICT``). ``allow_http_private`` / ``require_https`` /
    ``http_url_allowlist`` (host globs) are the URL policy of HTTP-invoked functions
    (DECISIONS 7).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rest_port: int = 0,
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
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        allow_http_private: bool = False,
        require_https: bool = True,
        http_url_allowlist: tuple[str, ...] = ("*",),
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
            max_message_bytes=max_message_bytes, allow_http_private=allow_http_private,
            require_https=require_https, http_url_allowlist=tuple(http_url_allowlist),
        )
        self.registry = Registry()
        self.router = Router(self.registry, self.config)
        self.triggers = Triggers()
        self.hub = ChannelHub(sweep_interval_s=channel_sweep_interval_ms / 1000,
                              max_age_s=channel_max_age_ms / 1000)
        self.discovery = Discovery(self)
        self.workers_available = WorkersAvailable(self.router)
        self.functions_available = FunctionsAvailable(
            self.router, self.registry, self.discovery, functions_available_poll_ms)
        self.dispatcher = Dispatcher(self)
        install_builtins(self)
        self.rest_port: int | None = None
        """Bound port of the REST API, set by its extension (``None`` without one)."""
        self._server = EngineServer(self)
        self._extensions: list[EngineExtension] = []
        self._started: list[EngineExtension] = []
        self._running = False

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The bound worker port (``0`` until started)."""
        return self._server.port

    @property
    def url(self) -> str:
        """``ws://host:port`` for workers."""
        return f"ws://{_url_host(self.config.host)}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def add_extension(self, extension: EngineExtension) -> None:
        """Start ``extension`` with the engine (call before :meth:`start`)."""
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
            for extension in [*default_extensions(self), *self._extensions]:
                await extension.start(self)
                self._started.append(extension)
            await self._server.start()
        except BaseException:
            await self.stop()
            raise
        log.info("iii engine listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection (workers see 1001 and reconnect), then stop everything."""
        if not self._running:
            return
        self._running = False
        # Channels first: a writer blocked on a full pipe would otherwise hold the server's
        # close for the channel sockets' whole close timeout.
        await self.hub.close()
        await self._server.close()
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
    """An :class:`Engine` running on a private loop thread; a context manager."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="iii-rx-engine", daemon=True)
        self._thread.start()
        try:
            self._run(engine.start())
        except BaseException:
            self._shutdown_loop()
            raise

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def port(self) -> int:
        return self.engine.port

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the engine runs on (schedule coroutines with ``run_coroutine_threadsafe``)."""
        return self._loop

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking engine call made on the engine's own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, function_id: str, data: Any = None, *, namespace: str = DEFAULT_NAMESPACE,
             timeout: float | None = 30.0) -> Any:
        """Blocking :meth:`Engine.call`."""
        return self._run(self.engine.call(function_id, data, namespace=namespace,
                                          timeout=timeout))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine and its thread (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self._run(self.engine.stop(), timeout)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

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
