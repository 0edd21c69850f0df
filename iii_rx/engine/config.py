"""Settings of the embedded engine.

Every timer of docs/protocol.md is a field here with the protocol's value as default, and both
ports default to ephemeral ones, so tests pass milliseconds instead of sleeping through real
periods and never collide on a port. ``Engine(**kwargs)`` builds one
:class:`EngineConfig`; extensions (the REST API, HTTP-invoked functions) read their settings
from the same object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata

__all__ = ["DEFAULT_NAMESPACE", "ENGINE_VERSION", "MAX_MESSAGE_BYTES", "EngineConfig"]

try:
    ENGINE_VERSION = metadata.version("iii-rx")
    """Version reported for the engine's in-process workers."""
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    ENGINE_VERSION = "0.0.0"

DEFAULT_NAMESPACE = "default"
"""The namespace of every worker that declares none, and of every engine builtin."""

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest websocket message accepted (docs/protocol.md §1.5).

The official SDK fragments messages up to 64 MiB.
"""


@dataclass(frozen=True)
class EngineConfig:
    """All knobs of one engine; see :class:`iii_rx.engine.Engine` for their meaning."""

    host: str = "127.0.0.1"
    port: int = 0
    rest_port: int | None = 0
    namespace_grace_ms: int = 5000
    functions_available_poll_ms: int = 5000
    unique_worker_names: bool = True
    provider_ack_timeout_ms: int = 10_000
    invocation_timeout_ms: int = 30_000
    rest_timeout_ms: int = 30_000
    http_no_response_grace_ms: int = 1_000
    channel_sweep_interval_ms: int = 60_000
    channel_max_age_ms: int = 300_000
    pending_max_age_ms: int = 3_600_000
    max_pending_fires_per_worker: int = 1_000
    """Trigger calls nobody waits for, without a result, kept per handler (0 = unbounded)."""
    max_message_bytes: int = MAX_MESSAGE_BYTES
    handshake_timeout_ms: int = 10_000
    """Deadline of a new connection's websocket opening handshake on the main port."""
    allow_http_private: bool = False
    require_https: bool = True
    http_url_allowlist: tuple[str, ...] = ("*",)
    # Bounds and fault detection (docs/guarantees.md).
    max_queue_bytes: int = 32 * 1024 * 1024
    stuck_timeout_ms: int = 30_000
    ping_interval_ms: int = 5_000
    ping_timeout_ms: int = 5_000
    channel_buffer_bytes: int = 1024 * 1024
    max_channels_per_worker: int = 256
    max_functions_per_worker: int = 10_000
    max_triggers_per_worker: int = 10_000
    max_trigger_types_per_worker: int = 1_000
    # Authority and authentication (docs/guarantees.md).
    token: str | None = field(default=None, repr=False)
    http_secret_env_allowlist: tuple[str, ...] = ()
    # REST API bounds (docs/http.md).
    rest_max_concurrency: int = 1024
    rest_header_timeout_ms: int = 10_000
    rest_body_timeout_ms: int = 10_000
    # Built-in workers (docs/engine.md, "Built-in workers").
    state_file: str | None = None
    """sqlite file of the state worker (``None``: state in memory)."""
    stream_file: str | None = None
    """sqlite file of the stream worker (``None``: items in memory)."""
    queue_file: str | None = None
    """sqlite file of the queue worker (``None``: messages in memory)."""
    stream_port: int | None = None
    """Port of the streams socket (``None``: no socket; ``0``: a free port)."""
    stream_auth_function: str | None = None
    """Function that authenticates streams socket connections (its ``context``)."""
    rest_host: str | None = None
    """Host the REST API binds (``None``: :attr:`host`, the main listener's)."""
    stream_host: str | None = None
    """Host the streams socket binds (``None``: :attr:`host`, the main listener's)."""
