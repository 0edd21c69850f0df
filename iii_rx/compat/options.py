"""Configuration types of the conventional API: ``InitOptions`` and what it holds.

Field names and defaults are the official SDK's, so existing ``InitOptions(...)`` calls keep
working; :func:`connect_options` turns them into the keyword arguments of
:func:`iii_rx.connect_sync`. ``otel`` turns on OpenTelemetry spans and logs (off when unset,
``docs/telemetry.md``); ``telemetry`` is accepted and kept (``docs/migration.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

from iii_rx.state import ReconnectConfig, resolve_reconnect
from iii_rx.telemetry.config import OtelConfig, repr_hiding

__all__ = [
    "DEFAULT_ENGINE_URL",
    "DEFAULT_INVOCATION_TIMEOUT_MS",
    "EngineFunctions",
    "EngineTriggers",
    "IIIConnectionState",
    "InitOptions",
    "OtelConfig",
    "ReconnectionConfig",
    "TelemetryOptions",
    "connect_options",
]

IIIConnectionState = Literal["disconnected", "connecting", "connected", "reconnecting", "failed"]
"""Connection states as the conventional API reports them: plain strings."""

DEFAULT_ENGINE_URL: Final = "ws://127.0.0.1:49134"
"""Address used when neither an argument nor ``III_URL`` names one (IPv4 on purpose)."""

DEFAULT_INVOCATION_TIMEOUT_MS: Final = 30_000


@dataclass
class ReconnectionConfig:
    """Backoff between connection attempts (docs/protocol.md §2.8); ``max_retries=-1``: for ever."""

    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.3
    max_retries: int = -1

    def to_reconnect_config(self) -> ReconnectConfig:
        return ReconnectConfig(
            initial_delay_ms=self.initial_delay_ms,
            max_delay_ms=self.max_delay_ms,
            backoff_multiplier=self.backoff_multiplier,
            jitter_factor=self.jitter_factor,
            max_retries=self.max_retries,
        )


@dataclass
class TelemetryOptions:
    """Worker facts reported to the engine. Accepted for compatibility; iii_rx reports its own."""

    language: str | None = None
    project_name: str | None = None
    framework: str | None = None


@dataclass
class InitOptions:
    """Options of :func:`~iii_rx.compat.register_worker`.

    ``worker_name`` (a non-empty ``III_WORKER_NAME`` wins), ``worker_description``,
    ``namespace`` (else ``III_NAMESPACE``; blank is an error), ``invocation_timeout_ms`` (default
    timeout of ``trigger``), ``reconnection_config`` and ``headers`` (sent on the handshake,
    plus ``Authorization: Bearer $III_TOKEN`` unless given) are honoured.
    """

    worker_name: str | None = None
    worker_description: str | None = None
    namespace: str | None = None
    enable_metrics_reporting: bool = True
    invocation_timeout_ms: int = DEFAULT_INVOCATION_TIMEOUT_MS
    reconnection_config: ReconnectionConfig | dict[str, Any] | None = None
    otel: OtelConfig | dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    telemetry: TelemetryOptions | None = None

    def __repr__(self) -> str:
        return repr_hiding(self, "headers")


def connect_options(options: InitOptions) -> dict[str, Any]:
    """The :func:`iii_rx.connect_sync` keyword arguments that ``options`` stands for."""
    if options.namespace is not None and not options.namespace.strip():
        raise ValueError(f"namespace is empty: InitOptions.namespace is {options.namespace!r}; "
                         "name one or leave it unset")
    return {
        "name": options.worker_name,
        "namespace": options.namespace,
        "description": options.worker_description or None,
        "headers": options.headers,
        "reconnect": _reconnect_config(options.reconnection_config),
        "timeout_ms": options.invocation_timeout_ms or DEFAULT_INVOCATION_TIMEOUT_MS,
        "otel": options.otel,
    }


_BACKOFF = tuple(f.name for f in fields(ReconnectionConfig))


def _reconnect_config(config: Any) -> ReconnectConfig:
    """``InitOptions.reconnection_config`` as ``connect_sync(reconnect=)`` takes it: this
    module's :class:`ReconnectionConfig`, the official SDK's (any object with its fields), a
    mapping of them, or ``None``. Anything else raises ``TypeError`` here; the official SDK
    would fail only at the first reconnect."""
    if config is None or isinstance(config, Mapping):
        return resolve_reconnect(config)
    if all(hasattr(config, name) for name in _BACKOFF):
        return ReconnectConfig(**{name: getattr(config, name) for name in _BACKOFF})
    raise TypeError(f"InitOptions.reconnection_config must be a ReconnectionConfig or a "
                    f"mapping of its fields, not {type(config).__name__} {config!r}")


class EngineFunctions:
    """Ids of the engine's discovery functions (docs/protocol.md §8)."""

    LIST_FUNCTIONS: Final = "engine::functions::list"
    INFO_FUNCTIONS: Final = "engine::functions::info"
    LIST_WORKERS: Final = "engine::workers::list"
    INFO_WORKERS: Final = "engine::workers::info"
    LIST_TRIGGERS: Final = "engine::triggers::list"
    INFO_TRIGGERS: Final = "engine::triggers::info"
    LIST_REGISTERED_TRIGGERS: Final = "engine::registered-triggers::list"
    INFO_REGISTERED_TRIGGERS: Final = "engine::registered-triggers::info"
    REGISTER_WORKER: Final = "engine::workers::register"


class EngineTriggers:
    """Ids of the engine's own trigger types (docs/protocol.md §6.6)."""

    FUNCTIONS_AVAILABLE: Final = "engine::functions-available"
    LOG: Final = "log"
