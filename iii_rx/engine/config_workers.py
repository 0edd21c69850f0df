"""What each worker of a Rust engine config file means for our engine.

:func:`settings_from_file` turns a :class:`~iii_rx.engine.config_file.ConfigFile` into
:class:`EngineSettings`: ``Engine`` keyword arguments, the further listeners and the queue
settings. Workers and keys (docs/engine-config.md has the full table):

* ``iii-worker-manager`` — the first entry is the main port (``host``, ``port`` default 49134,
  ``middleware_function_id``, ``rbac``, ``handshake_timeout_ms``), each further one a
  :class:`~iii_rx.engine.listeners.Listener`;
* ``iii-http`` — the REST API: ``host`` (the main listener's by default), ``port`` (3111),
  ``default_timeout`` (ms), ``concurrency_request_limit``; without it, no REST API;
* ``iii-http-functions`` — ``security.url_allowlist``, ``block_private_ips``, ``require_https``;
* ``iii-state`` — ``adapter: {name: kv, config: {store_method: file_based, file_path}}`` keeps
  state in that file (our sqlite format), anything else in memory;
* ``iii-stream`` — the streams socket: ``host`` (as ``iii-http``), ``port`` (3112),
  ``auth_function``, a ``file_based`` ``kv`` adapter's ``file_path``;
* ``iii-queue`` — ``queue_configs``, a ``file_based`` ``builtin`` adapter's ``file_path``;
  ``iii-pubsub``, ``iii-cron``, ``iii-observability`` —
  always running; their keys are checked.

Keys a worker documents that we do not apply are named in one warning per worker.

A worker we do not implement is named in one warning and skipped. Hosts default to
``127.0.0.1`` where the Rust engine binds ``0.0.0.0``: ours listens on loopback unless the
file (or ``--host``) says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iii_rx.engine.config_file import ConfigFile, ConfigFileError, WorkerEntry
from iii_rx.engine.listeners import DEFAULT_WORKER_PORT, Listener, parse_listener
from iii_rx.engine.rbac_config import ConfigValueError
from iii_rx.engine.workers.queues_store import QueueConfig

__all__ = ["DEFAULT_REST_PORT", "EngineSettings", "settings_from_file"]

DEFAULT_REST_PORT = 3111
"""The Rust engine's REST API port (``iii-http``)."""

_OBSERVABILITY_KEYS = frozenset({
    "enabled", "service_name", "service_version", "service_namespace", "exporter", "endpoint",
    "sampling_ratio", "sampling", "memory_max_spans", "trace_storage", "live_spans",
    "metrics_enabled", "metrics_exporter", "metrics_retention_seconds", "metrics_max_count",
    "logs_enabled", "logs_exporter", "logs_max_count", "logs_retention_seconds",
    "logs_batch_size", "logs_flush_interval_ms", "logs_sampling_ratio", "logs_console_output",
    "alerts", "level", "format", "collapse_spans",
})
"""The Rust engine's ``ObservabilityWorkerConfig`` fields (0.23): all checked, none applied."""

_OBSERVABILITY_BLOCKS = {
    "sampling": ("default", "rules", "parent_based", "rate_limit"),
    "trace_storage": ("enabled", "directory", "max_disk_bytes", "retention_seconds",
                      "memory_max_bytes", "memory_low_watermark_ratio",
                      "pending_max_age_seconds"),
}
"""Its mappings whose keys the Rust engine also checks (a typo there stops it)."""

_QUEUE_KEYS = ("max_retries", "concurrency", "type", "message_group_field", "max_priority",
               "priority_field", "backoff_ms", "poll_interval_ms")
"""``queue_configs.<queue>`` keys (the Rust engine's ``FunctionQueueConfig``)."""

# Each adapter's ``config`` keys, as the Rust engine's adapter config structs (0.23) have them.
_KV = ("store_method", "file_path", "save_interval_ms")
_REDIS = ("redis_url",)
_BRIDGE = ("bridge_url",)
_STATE_ADAPTERS = {"kv": _KV, "redis": _REDIS, "bridge": _BRIDGE}
_STREAM_ADAPTERS = {"kv": (*_KV, "channel_size"), "redis": _REDIS, "bridge": _BRIDGE}
_QUEUE_ADAPTERS = {"builtin": _KV, "redis": _REDIS, "bridge": _BRIDGE,
                   "rabbitmq": ("amqp_url", "max_attempts", "prefetch_count", "queue_mode",
                                "priority_field")}
_PUBSUB_ADAPTERS: dict[str, tuple[str, ...]] = {"local": (), "redis": _REDIS,
                                                "bridge": _BRIDGE}
_CRON_ADAPTERS = {"kv": (*_KV, "lock_ttl_ms", "lock_index"), "redis": _REDIS,
                  "bridge": _BRIDGE}


@dataclass
class EngineSettings:
    """What a config file asks of the engine."""

    options: dict[str, Any] = field(default_factory=dict)
    """``Engine`` keyword arguments."""
    listeners: list[Listener] = field(default_factory=list)
    """Listeners beyond the main port."""
    queue_configs: dict[str, QueueConfig] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """One line per worker or key the file names that this engine does not apply."""


def settings_from_file(config: ConfigFile) -> EngineSettings:
    """Map every worker entry; raises :class:`ConfigFileError` naming the file and key."""
    settings = EngineSettings()
    if config.namespace_grace_ms is not None:
        settings.options["namespace_grace_ms"] = config.namespace_grace_ms
    main_seen = False
    for entry in config.workers:
        try:
            if entry.name == "iii-worker-manager":
                listener = parse_listener(entry.config, entry.key, DEFAULT_WORKER_PORT)
                if main_seen:
                    settings.listeners.append(listener)
                else:
                    main_seen = True
                    settings.options.update(
                        host=listener.host, port=listener.port,
                        middleware_function_id=listener.middleware_function_id,
                        rbac=listener.rbac, handshake_timeout_ms=listener.handshake_timeout_ms)
            else:
                mapper = _MAPPERS.get(entry.name)
                if mapper is None:
                    settings.warnings.append(
                        f"{config.path}: workers[{entry.index}]: worker {entry.name!r} is not "
                        "implemented by the iii_rx engine; skipped")
                else:
                    mapper(entry, settings)
        except ConfigValueError as exc:
            raise ConfigFileError(config.path, exc.key, exc.expected) from None
    # The Rust engine's port where the file names none (``Engine()`` alone picks a free one);
    # without ``iii-http`` it opens no REST API, and neither do we.
    if not main_seen:
        settings.options.setdefault("port", DEFAULT_WORKER_PORT)
    settings.options.setdefault("rest_port", None)
    settings.warnings[:] = [w if w.startswith(config.path) else f"{config.path}: {w}"
                            for w in settings.warnings]
    return settings


# ---------------------------------------------------------------------- one function per worker


def _http(entry: WorkerEntry, settings: EngineSettings) -> None:
    config, key = entry.config, entry.key
    _known(entry, settings, {"host", "port", "default_timeout", "concurrency_request_limit"},
           ignored={"cors", "middleware"})
    settings.options["rest_port"] = _int(config, "port", key, DEFAULT_REST_PORT, 0, 65535)
    if "default_timeout" in config:
        settings.options["rest_timeout_ms"] = _int(config, "default_timeout", key, 30_000, 1)
    if "concurrency_request_limit" in config:
        settings.options["rest_max_concurrency"] = _int(config, "concurrency_request_limit",
                                                        key, 1024, 1)
    _host(config, key, settings, "rest_host")


def _http_functions(entry: WorkerEntry, settings: EngineSettings) -> None:
    _known(entry, settings, {"security"})
    security = entry.config.get("security") or {}
    key = f"{entry.key}.security"
    if not isinstance(security, dict):
        raise ConfigValueError(key, "expected a mapping (url_allowlist, block_private_ips, "
                               "require_https)")
    _keys(security, key, ("url_allowlist", "block_private_ips", "require_https"))
    allow = security.get("url_allowlist", ["*"])
    if not isinstance(allow, list) or not all(isinstance(a, str) and a for a in allow):
        raise ConfigValueError(f"{key}.url_allowlist", "expected a list of host patterns")
    settings.options["http_url_allowlist"] = tuple(allow)
    settings.options["allow_http_private"] = not _bool(security, "block_private_ips", key, True)
    settings.options["require_https"] = _bool(security, "require_https", key, True)


def _state(entry: WorkerEntry, settings: EngineSettings) -> None:
    _known(entry, settings, {"adapter"},
           ignored={"triggers_enabled", "max_value_bytes", "save_interval_ms"})
    name, adapter_config = _adapter(entry, _STATE_ADAPTERS, "kv")
    if name != "kv":
        settings.warnings.append(f"{entry.key}.adapter: adapter {name!r} is not implemented; "
                                 "state is kept in memory")
        return
    if _store_method(adapter_config, f"{entry.key}.adapter.config") == "file_based":
        settings.options["state_file"] = _file_path(adapter_config, f"{entry.key}.adapter.config")


def _queue(entry: WorkerEntry, settings: EngineSettings) -> None:
    _known(entry, settings, {"queue_configs", "adapter"})
    name, adapter_config = _adapter(entry, _QUEUE_ADAPTERS, "builtin")
    if name != "builtin":
        settings.warnings.append(f"{entry.key}.adapter: adapter {name!r} is not implemented; "
                                 "queues are kept in memory")
    elif _store_method(adapter_config, f"{entry.key}.adapter.config") == "file_based":
        settings.options["queue_file"] = _file_path(adapter_config, f"{entry.key}.adapter.config")
    queues = entry.config.get("queue_configs") or {}
    key = f"{entry.key}.queue_configs"
    if not isinstance(queues, dict):
        raise ConfigValueError(key, "expected a mapping of queue names to settings")
    for queue, raw in queues.items():
        qkey = f"{key}.{queue}"
        if not isinstance(raw, dict):
            raise ConfigValueError(qkey, "expected a mapping (" + ", ".join(_QUEUE_KEYS) + ")")
        _keys(raw, qkey, _QUEUE_KEYS)
        unapplied = sorted(k for k in ("max_priority", "priority_field") if raw.get(k) is not None)
        if unapplied:
            settings.warnings.append(f"{qkey}: keys not applied by the iii_rx engine: "
                                     + ", ".join(unapplied))
        kind = raw.get("type", "standard")
        if kind not in ("standard", "fifo"):
            raise ConfigValueError(f"{qkey}.type", f"expected standard or fifo, got {kind!r}")
        group = raw.get("message_group_field")
        if group is not None and not isinstance(group, str):
            raise ConfigValueError(f"{qkey}.message_group_field", "expected a field name")
        if kind == "fifo" and not group:
            raise ConfigValueError(f"{qkey}.message_group_field", "required for type: fifo")
        _int(raw, "poll_interval_ms", qkey, 100, 1)
        settings.queue_configs[str(queue)] = QueueConfig(
            max_retries=_int(raw, "max_retries", qkey, 3, 0),
            backoff_ms=_int(raw, "backoff_ms", qkey, 1000, 0),
            concurrency=_int(raw, "concurrency", qkey, 10, 1),
            fifo=kind == "fifo", message_group_field=group)


def _stream(entry: WorkerEntry, settings: EngineSettings) -> None:
    config, key = entry.config, entry.key
    _known(entry, settings, {"adapter", "host", "port", "auth_function"})
    name, adapter_config = _adapter(entry, _STREAM_ADAPTERS, "kv")
    settings.options["stream_port"] = _int(config, "port", key, 3112, 0, 65535)
    _host(config, key, settings, "stream_host")
    auth = config.get("auth_function")
    if auth is not None:
        if not isinstance(auth, str) or not auth.strip():
            raise ConfigValueError(f"{key}.auth_function", "expected a function id")
        settings.options["stream_auth_function"] = auth
    if name != "kv":
        settings.warnings.append(f"{key}.adapter: adapter {name!r} is not implemented; "
                                 "stream items are kept in memory")
    elif _store_method(adapter_config, f"{key}.adapter.config") == "file_based":
        settings.options["stream_file"] = _file_path(adapter_config, f"{key}.adapter.config")


def _pubsub(entry: WorkerEntry, settings: EngineSettings) -> None:
    _known(entry, settings, {"adapter"})
    name, _ = _adapter(entry, _PUBSUB_ADAPTERS, "local")
    if name != "local":
        settings.warnings.append(f"{entry.key}.adapter: adapter {name!r} is not implemented; "
                                 "pub/sub is local")


def _cron(entry: WorkerEntry, settings: EngineSettings) -> None:
    _known(entry, settings, {"adapter"})
    name, _ = _adapter(entry, _CRON_ADAPTERS, "kv")
    if name != "kv":
        settings.warnings.append(f"{entry.key}.adapter: adapter {name!r} is not implemented; "
                                 "cron runs on this engine only")


def _configuration(entry: WorkerEntry, settings: EngineSettings) -> None:
    """Where migrated worker settings live (read by the loader); nothing to run here."""
    _known(entry, settings, {"adapter", "ttl_seconds"})


def _observability(entry: WorkerEntry, settings: EngineSettings) -> None:
    _known(entry, settings, set(), ignored=set(_OBSERVABILITY_KEYS))
    for block, keys in _OBSERVABILITY_BLOCKS.items():
        value = entry.config.get(block)
        if value is not None:
            if not isinstance(value, dict):
                raise ConfigValueError(f"{entry.key}.{block}", "expected a mapping")
            _keys(value, f"{entry.key}.{block}", keys)


_MAPPERS = {
    "iii-http": _http,
    "iii-http-functions": _http_functions,
    "iii-state": _state,
    "iii-queue": _queue,
    "iii-stream": _stream,
    "iii-pubsub": _pubsub,
    "iii-cron": _cron,
    "iii-observability": _observability,
    "configuration": _configuration,
}


# ---------------------------------------------------------------------- value checks


def _known(entry: WorkerEntry, settings: EngineSettings, applied: set[str],
           ignored: set[str] | None = None) -> None:
    """Unknown keys fail; documented keys we do not apply are named in one warning."""
    ignored = ignored or set()
    for name in entry.config:
        if name not in applied and name not in ignored:
            raise ConfigValueError(f"{entry.key}.{name}", f"unknown key for {entry.name} "
                                   "(expected one of " + ", ".join(sorted(applied | ignored))
                                   + ")")
    unapplied = sorted(n for n in entry.config
                       if n in ignored and entry.config[n] not in (None, [], {}))
    if unapplied:
        settings.warnings.append(f"{entry.key}: {entry.name} keys not applied by the iii_rx "
                                 f"engine: {', '.join(unapplied)}")


def _keys(mapping: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    """A nested mapping's keys: one the Rust engine does not know is a typo, not ignored."""
    for name in mapping:
        if name not in allowed:
            expected = ("expected one of " + ", ".join(allowed)) if allowed else "expected none"
            raise ConfigValueError(f"{key}.{name}", f"unknown key ({expected})")


def _adapter(entry: WorkerEntry, adapters: dict[str, tuple[str, ...]],
             default: str) -> tuple[str, dict[str, Any]]:
    """The ``adapter`` block's name and ``config``; ``adapters`` maps each name to its config
    keys."""
    adapter = entry.config.get("adapter")
    key = f"{entry.key}.adapter"
    if adapter is None:
        return default, {}
    if not isinstance(adapter, dict):
        raise ConfigValueError(key, "expected a mapping with name (and config)")
    _keys(adapter, key, ("name", "config"))
    name = adapter.get("name", default)
    if not isinstance(name, str) or name not in adapters:  # a list or mapping: unhashable
        raise ConfigValueError(f"{key}.name", f"expected one of {', '.join(adapters)}, got "
                               f"{name!r}")
    config = adapter.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigValueError(f"{key}.config", "expected a mapping")
    _keys(config, f"{key}.config", adapters[name])
    return str(name), config


def _store_method(adapter_config: dict[str, Any], key: str) -> str:
    method = adapter_config.get("store_method", "in_memory")
    if method not in ("in_memory", "file_based"):
        raise ConfigValueError(f"{key}.store_method",
                               f"expected in_memory or file_based, got {method!r}")
    return str(method)


def _file_path(adapter_config: dict[str, Any], key: str) -> str:
    path = adapter_config.get("file_path")
    if not isinstance(path, str) or not path.strip():
        raise ConfigValueError(f"{key}.file_path", "expected a file path (store_method: "
                               "file_based); iii_rx keeps an sqlite file there")
    return path


def _host(config: dict[str, Any], key: str, settings: EngineSettings, option: str) -> None:
    """A worker's own ``host``: that server binds it (unset: the main listener's host)."""
    host = config.get("host")
    if host is not None:
        if not isinstance(host, str) or not host.strip():
            raise ConfigValueError(f"{key}.host", f"expected a host, got {host!r}")
        settings.options[option] = host.strip()


def _int(config: dict[str, Any], name: str, key: str, default: int, low: int,
         high: int | None = None) -> int:
    value = config.get(name, default)
    if type(value) is not int or value < low or (high is not None and value > high):
        limit = f"{low}-{high}" if high is not None else f">= {low}"
        raise ConfigValueError(f"{key}.{name}", f"expected an integer {limit}, got {value!r}")
    return value


def _bool(config: dict[str, Any], name: str, key: str, default: bool) -> bool:
    value = config.get(name, default)
    if not isinstance(value, bool):
        raise ConfigValueError(f"{key}.{name}", f"expected true or false, got {value!r}")
    return value
