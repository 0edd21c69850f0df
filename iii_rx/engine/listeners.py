"""Worker listeners: each ``iii-worker-manager`` entry of a config file opens one.

The first entry is the engine's main port (:attr:`Engine.url`); every further one opens a
listener of its own (``Engine(listeners=[...])``), with its own host, port, middleware and
RBAC. All share one registry and router: a worker on one listener calls functions of workers
on any other. Each mounts the same paths (``/`` for workers, ``/ws/channels/{id}`` for
channels, ``/otel``).

A listener with neither ``middleware_function_id`` nor ``rbac`` is plain: its connections run
exactly the code of the main port, and cost nothing more per call. The others get a
:class:`~iii_rx.engine.rbac.ListenerGuard`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iii_rx.engine.rbac_config import (
    ConfigValueError,
    RbacConfig,
    optional_function_id,
    parse_rbac,
)

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT_MS", "DEFAULT_WORKER_PORT", "Listener", "parse_listener"]

DEFAULT_WORKER_PORT = 49134
"""The Rust engine's worker port, the default of an ``iii-worker-manager`` entry."""
DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000
"""The Rust engine's ``handshake_timeout_ms`` default."""

_KEYS = ("host", "port", "middleware_function_id", "rbac", "handshake_timeout_ms")


@dataclass(frozen=True)
class Listener:
    """One worker listener: where it binds, and what guards its connections.

    ``host`` defaults to ``127.0.0.1`` (the Rust engine binds ``0.0.0.0``: ours listens on
    loopback unless told otherwise). ``port=0`` picks a free port.
    """

    port: int = 0
    host: str = "127.0.0.1"
    middleware_function_id: str | None = None
    """Every call a worker on this listener makes goes to this function instead
    (``{function_id, payload, action, context, namespace}``), except the engine's own
    ``engine::*`` functions."""
    rbac: RbacConfig | None = None
    """Authentication, what sessions may call, and registration hooks."""
    handshake_timeout_ms: int = DEFAULT_HANDSHAKE_TIMEOUT_MS
    """Time a new TCP connection has to complete the websocket opening handshake (its HTTP
    upgrade request) before it is dropped, so that sockets stalled before the upgrade do not
    hold a file descriptor forever. An established connection is not affected."""

    def __post_init__(self) -> None:
        timeout = self.handshake_timeout_ms
        if type(timeout) is not int or timeout <= 0:
            raise ValueError("handshake_timeout_ms: expected a positive integer "
                             f"(milliseconds), got {timeout!r}")

    @property
    def guarded(self) -> bool:
        """Whether connections on it need a guard (middleware or RBAC)."""
        return self.middleware_function_id is not None or self.rbac is not None

    @property
    def guard_function_ids(self) -> frozenset[str]:
        """The functions that guard it: its middleware, auth function and registration hooks
        (a guarded session registering one would judge the others' sessions)."""
        rbac = self.rbac
        ids = [self.middleware_function_id]
        if rbac is not None:
            ids += [rbac.auth_function_id, rbac.on_function_registration_function_id,
                    rbac.on_trigger_registration_function_id,
                    rbac.on_trigger_type_registration_function_id]
        return frozenset(i for i in ids if i)


def parse_listener(config: dict[str, Any], key: str, default_port: int) -> Listener:
    """An ``iii-worker-manager`` entry's ``config`` mapping."""
    for name in config:
        if name not in _KEYS:
            raise ConfigValueError(f"{key}.{name}", "unknown key (expected one of "
                                   + ", ".join(_KEYS) + ")")
    port = config.get("port", default_port)
    if type(port) is not int or not 0 <= port <= 65535:
        raise ConfigValueError(f"{key}.port", f"expected a port number 0-65535, got {port!r}")
    host = config.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host.strip():
        raise ConfigValueError(f"{key}.host", f"expected a host name or address, got {host!r}")
    timeout = config.get("handshake_timeout_ms", DEFAULT_HANDSHAKE_TIMEOUT_MS)
    if type(timeout) is not int or timeout <= 0:
        raise ConfigValueError(f"{key}.handshake_timeout_ms", "expected a positive integer "
                               f"(milliseconds), got {timeout!r}")
    middleware = optional_function_id(config.get("middleware_function_id"),
                                      f"{key}.middleware_function_id")
    rbac = config.get("rbac")
    return Listener(port=port, host=host.strip(), middleware_function_id=middleware,
                    rbac=parse_rbac(rbac, f"{key}.rbac") if rbac is not None else None,
                    handshake_timeout_ms=timeout)
