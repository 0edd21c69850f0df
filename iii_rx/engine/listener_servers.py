"""The websocket servers of an engine's listeners, the main port's and the others'.

:func:`listener_server` builds one :class:`~iii_rx.engine.server.EngineServer` for a
:class:`~iii_rx.engine.listeners.Listener`: a plain listener serves workers with the
dispatcher directly, a guarded one through its :class:`~iii_rx.engine.rbac.ListenerGuard`
(authentication first, then the dispatcher with the guard); its ``/otel`` sockets pass the
same authentication before their frames are taken. :class:`ListenerServers` starts
and closes the further listeners together.
"""

from __future__ import annotations

from collections.abc import Sequence

from iii_rx.engine.channels import ChannelHub
from iii_rx.engine.config import EngineConfig
from iii_rx.engine.connection import WorkerConnection
from iii_rx.engine.dispatch import Dispatcher
from iii_rx.engine.listeners import Listener
from iii_rx.engine.rbac import ListenerGuard
from iii_rx.engine.server import EngineServer

__all__ = ["ListenerServers", "listener_server"]


def listener_server(listener: Listener, config: EngineConfig, dispatcher: Dispatcher,
                    hub: ChannelHub, *, main: bool = False,
                    reserved: frozenset[str] = frozenset()) -> EngineServer:
    """The server of ``listener`` (``main``: bound where ``config`` says, not the listener);
    ``reserved``: the functions guarding any of the engine's listeners, which its sessions
    may not register."""
    host, port = (None, None) if main else (listener.host, listener.port)
    timeout = listener.handshake_timeout_ms
    if not listener.guarded:
        return EngineServer(config, dispatcher.serve, hub, host=host, port=port,
                            handshake_timeout_ms=timeout, peer_log=dispatcher.peer_log)
    guard = ListenerGuard(listener, dispatcher.router, dispatcher.registry,
                          peer_log=dispatcher.peer_log, reserved=reserved)

    async def serve(conn: WorkerConnection) -> None:
        await guard.serve(conn, dispatcher.serve)

    # ``/otel`` is authenticated as ``/`` is.
    return EngineServer(config, serve, hub, host=host, port=port, handshake_timeout_ms=timeout,
                        admit_telemetry=guard.admit_telemetry, peer_log=guard.peer_log)


class ListenerServers:
    """The engine's listeners beyond the main port, started and closed together."""

    def __init__(self, listeners: Sequence[Listener], config: EngineConfig,
                 dispatcher: Dispatcher, hub: ChannelHub,
                 reserved: frozenset[str] = frozenset()) -> None:
        self.servers = [listener_server(listener, config, dispatcher, hub, reserved=reserved)
                        for listener in listeners]

    async def start(self) -> None:
        """Open every listener (in order; one that cannot bind fails the start)."""
        for server in self.servers:
            await server.start()

    async def close(self) -> None:
        """Close every listener and its connections."""
        for server in self.servers:
            await server.close()

    @property
    def ports(self) -> list[int]:
        """The bound ports, in the order of the listeners (0 until started)."""
        return [server.port for server in self.servers]
