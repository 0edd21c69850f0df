"""The Rust engine's config file: substitution, what each worker maps to, and every error."""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from raw_engine_client import RawWorker

from iii_rx.engine import Engine
from iii_rx.engine.config_file import ConfigFileError, load_config_file, substitute_env
from iii_rx.engine.config_workers import EngineSettings, settings_from_file
from iii_rx.engine.listeners import Listener
from iii_rx.engine.rbac_config import FunctionFilter, Wildcard
from iii_rx.engine.run import add_engine_arguments, args_options, engine_options


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "iii-config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _settings(tmp_path: Path, text: str,
              environ: dict[str, str] | None = None) -> EngineSettings:
    return settings_from_file(load_config_file(_write(tmp_path, text), environ or {}))


def test_substitution_uses_the_variable_then_the_default() -> None:
    text = "a: ${A:1}\nb: ${B:two}\nc: ${C}\nd: ${D:}"
    assert substitute_env(text, "f", {"A": "9", "C": "x"}) == "a: 9\nb: two\nc: x\nd: "


def test_the_suite_config_maps_every_worker(tmp_path: Path) -> None:
    settings = _settings(tmp_path, """
        workers:
          - name: iii-worker-manager
            config:
              port: 49199
          - name: iii-worker-manager
            config:
              host: 127.0.0.1
              port: ${RBAC_PORT:49135}
              handshake_timeout_ms: 250
              middleware_function_id: mw
              rbac:
                auth_function_id: auth
                on_function_registration_function_id: on-fn
                expose_functions:
                  - match("api::*")
                  - metadata:
                      public: true
                      name: match("*pub*")
          - name: iii-http
            config: {host: 127.0.0.1, port: 3199, default_timeout: 5000,
                     concurrency_request_limit: 8}
          - name: iii-http-functions
            config:
              security: {url_allowlist: [localhost], block_private_ips: false,
                         require_https: false}
          - name: iii-state
            config:
              adapter: {name: kv, config: {store_method: file_based, file_path: ./s.db}}
          - name: iii-stream
            config: {host: " 127.0.0.1 ", port: 3112, auth_function: stream-auth}
          - name: iii-queue
            config:
              queue_configs:
                orders: {type: fifo, message_group_field: customer, max_retries: 5}
          - name: iii-pubsub
            config: {adapter: {name: local}}
          - name: iii-cron
            config: {adapter: {name: kv}}
          - name: iii-observability
            config: {enabled: true}
    """, {"RBAC_PORT": "40001"})
    assert settings.options["port"] == 49199
    assert settings.options["host"] == "127.0.0.1"
    assert settings.options["rest_port"] == 3199
    assert settings.options["rest_timeout_ms"] == 5000
    assert settings.options["rest_max_concurrency"] == 8
    assert settings.options["http_url_allowlist"] == ("localhost",)
    assert settings.options["allow_http_private"] is True
    assert settings.options["require_https"] is False
    assert settings.options["state_file"] == "./s.db"
    assert settings.options["stream_port"] == 3112
    assert settings.options["stream_auth_function"] == "stream-auth"
    assert settings.options["rest_host"] == settings.options["stream_host"] == "127.0.0.1"
    [listener] = settings.listeners
    assert (listener.host, listener.port, listener.middleware_function_id) == (
        "127.0.0.1", 40001, "mw")
    assert listener.handshake_timeout_ms == 250
    assert settings.options["handshake_timeout_ms"] == 10_000  # the Rust engine's default
    assert listener.rbac is not None
    assert listener.rbac.auth_function_id == "auth"
    assert listener.rbac.on_function_registration_function_id == "on-fn"
    assert listener.rbac.expose_functions == (
        FunctionFilter.match("api::*"),
        FunctionFilter.meta(public=True, name=Wildcard("*pub*")))
    orders = settings.queue_configs["orders"]
    assert (orders.fifo, orders.message_group_field, orders.max_retries) == (True, "customer", 5)
    assert any("iii-observability keys not applied" in w for w in settings.warnings)
    assert not any("host" in w for w in settings.warnings)  # every host: is applied


def test_every_key_the_rust_engine_takes_is_accepted(tmp_path: Path) -> None:
    """The keys of the Rust engine's own ``engine/config.yaml`` (0.23) and the rest of its
    worker config structs: a file it runs must not stop ours; what we do not apply is named in
    a warning."""
    settings = _settings(tmp_path, """
        registration_namespace_grace_ms: 5000
        workers:
          - name: iii-observability
            config:
              enabled: ${OTEL_ENABLED:true}
              service_name: iii
              service_version: "0.23"
              service_namespace: production
              exporter: memory
              endpoint: http://localhost:4317
              sampling_ratio: 1.0
              sampling:
                default: 0.1
                parent_based: true
                rules: [{operation: "health.*", rate: 0.01}]
                rate_limit: {max_traces_per_second: 100}
              memory_max_spans: 10000
              trace_storage:
                enabled: true
                directory: ./data/observability/traces
                max_disk_bytes: 1073741824
                retention_seconds: 2592000
                memory_max_bytes: 268435456
                memory_low_watermark_ratio: 0.75
                pending_max_age_seconds: 3600
              live_spans: true
              metrics_enabled: true
              metrics_exporter: memory
              metrics_retention_seconds: 3600
              metrics_max_count: 10000
              logs_enabled: true
              logs_exporter: memory
              logs_max_count: 1000
              logs_retention_seconds: 3600
              logs_batch_size: 100
              logs_flush_interval_ms: 5000
              logs_sampling_ratio: 1.0
              logs_console_output: true
              alerts: [{name: low, metric: iii.workers.active, threshold: 1, operator: "<"}]
              level: info
              format: json
              collapse_spans: [{name: "trigger *"}]
          - name: iii-state
            config:
              adapter:
                name: kv
                config: {store_method: in_memory, file_path: ./s.db, save_interval_ms: 500}
          - name: iii-stream
            config:
              adapter: {name: kv, config: {save_interval_ms: 500, channel_size: 64}}
          - name: iii-cron
            config: {adapter: {name: kv, config: {lock_ttl_ms: 5, lock_index: x}}}
          - name: iii-pubsub
            config: {adapter: {name: redis, config: {redis_url: "redis://h"}}}
          - name: iii-queue
            config:
              adapter: {name: builtin, config: {store_method: in_memory}}
              queue_configs:
                orders: {max_retries: 1, concurrency: 2, type: standard, backoff_ms: 3,
                         poll_interval_ms: 4, max_priority: 9, priority_field: p,
                         message_group_field: g}
    """)
    observability, pubsub, queue = settings.warnings
    for key in ("trace_storage", "sampling", "logs_batch_size", "logs_flush_interval_ms",
                "collapse_spans"):
        assert key in observability
    assert "'redis' is not implemented" in pubsub
    assert "queue_configs.orders" in queue and "max_priority, priority_field" in queue


def test_defaults_are_the_rust_engines_except_the_host(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "workers: []")
    assert settings.options["port"] == 49134
    assert settings.options["rest_port"] is None  # no iii-http: no REST API, as on Rust
    assert _settings(tmp_path, "workers: [{name: iii-http}]").options["rest_port"] == 3111
    assert "host" not in settings.options  # Engine's default: 127.0.0.1
    listener = _settings(tmp_path, """
        workers:
          - name: iii-worker-manager
          - name: iii-worker-manager
            config: {port: 1}
    """).listeners[0]
    assert listener.host == "127.0.0.1"


def test_a_worker_we_do_not_implement_is_one_warning(tmp_path: Path) -> None:
    settings = _settings(tmp_path, """
        workers:
          - name: iii-shell
            config: {anything: [1, 2]}
    """)
    [warning] = settings.warnings
    assert "iii-shell" in warning and "not implemented" in warning and "workers[0]" in warning


@pytest.mark.parametrize(("text", "key", "expected"), [
    ("workers: [1", "line", "valid YAML"),
    # PyYAML's RecursionError and int()'s ValueError escaped, naming no file
    ("workers: " + "[" * 5000, "", "valid YAML (nested too deep)"),
    ("registration_namespace_grace_ms: " + "9" * 5000, "", "valid YAML (Exceeds the limit"),
    ("- a\n- b", "(top level)", "mapping with a 'workers' list"),
    ("workers: {}", "workers", "list of workers"),
    ("wrkers: []", "wrkers", "unknown top-level key"),
    ("registration_namespace_grace_ms: soon", "registration_namespace_grace_ms",
     "non-negative integer"),
    ("workers: [7]", "workers[0]", "mapping with 'name'"),
    ("workers: [{config: {}}]", "workers[0].name", "worker's name"),
    ("workers: [{name: iii-http, config: [1]}]", "workers[0].config", "expected a mapping"),
    ("workers: [{name: iii-worker-manager, config: {port: high}}]",
     "workers[0].config.port", "port number"),
    ("workers: [{name: iii-worker-manager, config: {port: 70000}}]",
     "workers[0].config.port", "port number"),
    ("workers: [{name: iii-worker-manager, config: {prot: 1}}]",
     "workers[0].config.prot", "unknown key"),
    ("workers: [{name: iii-worker-manager, config: {handshake_timeout_ms: 0}}]",
     "workers[0].config.handshake_timeout_ms", "positive integer"),
    ("workers: [{name: iii-worker-manager, config: {middleware_function_id: 3}}]",
     "workers[0].config.middleware_function_id", "function id"),
    ("workers: [{name: iii-worker-manager, config: {rbac: [1]}}]",
     "workers[0].config.rbac", "expected a mapping"),
    ("workers: [{name: iii-worker-manager, config: {rbac: {expose_functions: ['api::*']}}}]",
     "workers[0].config.rbac.expose_functions[0]", 'match("pattern")'),
    ("workers: [{name: iii-worker-manager, config: {rbac: {expose_functions: [{metadata: 1}]}}}]",
     "workers[0].config.rbac.expose_functions[0].metadata", "non-empty mapping"),
    ("workers: [{name: iii-worker-manager, config: {rbac: {auth: x}}}]",
     "workers[0].config.rbac.auth", "unknown key"),
    ("workers: [{name: iii-http, config: {default_timeout: -1}}]",
     "workers[0].config.default_timeout", "integer >= 1"),
    ("workers: [{name: iii-http, config: {host: ''}}]", "workers[0].config.host", "a host"),
    ("workers: [{name: iii-stream, config: {host: 3}}]", "workers[0].config.host", "a host"),
    ("workers: [{name: iii-http, config: {cors_typo: 1}}]",
     "workers[0].config.cors_typo", "unknown key for iii-http"),
    ("workers: [{name: iii-http-functions, config: {security: {require_https: maybe}}}]",
     "workers[0].config.security.require_https", "true or false"),
    ("workers: [{name: iii-state, config: {adapter: {name: kv, config: "
     "{store_method: file_based}}}}]",
     "workers[0].config.adapter.config.file_path", "file path"),
    ("workers: [{name: iii-state, config: {adapter: {name: mongo}}}]",
     "workers[0].config.adapter.name", "one of kv, redis, bridge"),
    # a list or mapping as the name raised TypeError (unhashable), naming neither file nor key
    ("workers: [{name: iii-pubsub, config: {adapter: {name: [local]}}}]",
     "workers[0].config.adapter.name", "one of local"),
    ("workers: [{name: iii-state, config: {adapter: {name: {kv: 1}}}}]",
     "workers[0].config.adapter.name", "one of kv, redis, bridge"),
    ("workers: [{name: iii-queue, config: {queue_configs: {q: {type: fifo}}}}]",
     "workers[0].config.queue_configs.q.message_group_field", "required for type: fifo"),
    # typos inside nested blocks, refused as the Rust engine refuses (or flags) them
    ("workers: [{name: iii-queue, config: {queue_configs: {q: {max_retrys: 5}}}}]",
     "workers[0].config.queue_configs.q.max_retrys", "unknown key (expected one of max_retries"),
    ("workers: [{name: iii-state, config: {adapter: {name: kv, config: "
     "{store_methd: file_based, file_path: ./s.db}}}}]",
     "workers[0].config.adapter.config.store_methd", "unknown key (expected one of store_method"),
    ("workers: [{name: iii-state, config: {adapter: {name: kv, extra: 1}}}]",
     "workers[0].config.adapter.extra", "expected one of name, config"),
    ("workers: [{name: iii-stream, config: {adapter: {name: redis, config: {url: x}}}}]",
     "workers[0].config.adapter.config.url", "expected one of redis_url"),
    ("workers: [{name: iii-queue, config: {adapter: {name: builtin, config: {file: x}}}}]",
     "workers[0].config.adapter.config.file", "unknown key"),
    ("workers: [{name: iii-pubsub, config: {adapter: {name: local, config: {foo: 1}}}}]",
     "workers[0].config.adapter.config.foo", "expected none"),
    ("workers: [{name: iii-cron, config: {adapter: {name: kv, config: {lock_tl_ms: 5}}}}]",
     "workers[0].config.adapter.config.lock_tl_ms", "unknown key"),
    ("workers: [{name: iii-observability, config: {sampling: {defalt: 0.5}}}]",
     "workers[0].config.sampling.defalt", "expected one of default"),
    ("workers: [{name: iii-observability, config: {trace_storage: {enabld: false}}}]",
     "workers[0].config.trace_storage.enabld", "expected one of enabled"),
    ("workers: [{name: iii-observability, config: {trace_storage: [1]}}]",
     "workers[0].config.trace_storage", "expected a mapping"),
])
def test_a_malformed_file_names_the_key_and_what_was_expected(
        tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigFileError) as caught:
        settings_from_file(load_config_file(path, {}))
    assert caught.value.path == str(path)
    assert caught.value.key.startswith(key), caught.value
    assert expected in caught.value.expected, caught.value
    assert str(path) in str(caught.value)


def test_an_unset_variable_without_default_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "workers:\n  - name: iii-http\n    config: {port: ${NO_SUCH_VAR}}\n")
    with pytest.raises(ConfigFileError) as caught:
        load_config_file(path, {})
    assert caught.value.key == "line 3"
    assert "NO_SUCH_VAR" in caught.value.expected


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read the config file"):
        load_config_file(tmp_path / "absent.yaml")


def test_flags_given_win_over_the_file() -> None:
    assert engine_options(config="f.yaml", host=None, port=5, rest_port=None) == {
        "config": "f.yaml", "port": 5}
    assert engine_options(host=None, port=None)["port"] == 49134  # no file: CLI defaults


async def test_from_config_runs_an_engine_with_its_listeners(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, """
        workers:
          - name: iii-worker-manager
            config: {port: 0}
          - name: iii-worker-manager
            config:
              port: 0
              rbac:
                expose_functions: [match("engine::functions::list")]
          - name: iii-unknown-thing
    """)
    caplog.set_level(logging.WARNING, "iii_rx.engine")
    async with Engine.from_config(path, rest_port=0,
                                  listeners=[Listener(port=0)]) as engine:
        assert len(engine.listener_urls) == 3
        guarded = await RawWorker.connect(engine.listener_urls[1])
        frame = await guarded.call("engine::workers::list", {})
        assert frame["error"]["code"] == "FORBIDDEN"  # no auth function: expose alone gates
        assert "error" not in await guarded.call("engine::functions::list", {})
        plain = await RawWorker.connect(engine.listener_urls[2])
        assert "error" not in await plain.call("engine::workers::list", {})
    assert any("iii-unknown-thing" in r.getMessage() for r in caplog.records)


async def test_a_file_without_iii_http_opens_no_rest_api(tmp_path: Path) -> None:
    """The Rust engine runs ``iii-http`` only when the file lists it; ours did open
    127.0.0.1:3111 anyway. ``rest_port`` given to ``from_config`` (``--rest-port``) still
    opens one."""
    path = _write(tmp_path, """
        workers:
          - name: iii-worker-manager
            config: {port: 0}
    """)
    async with Engine.from_config(path) as engine:
        assert engine.rest_port is None and engine._rest.api is None
        assert ("default", "http") not in engine.triggers.types
        workers = await (await RawWorker.connect(engine.url)).call("engine::workers::list", {})
        assert "iii-http" not in {w["name"] for w in workers["result"]["workers"]}
    async with Engine.from_config(path, rest_port=0) as engine:
        assert engine.rest_port
        assert ("default", "http") in engine.triggers.types


def test_the_command_fails_at_start_on_a_bad_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "workers: [{name: iii-http, config: {port: nope}}]")
    done = subprocess.run([sys.executable, "-m", "iii_rx.engine", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "workers[0].config.port" in done.stderr
    assert "expected an integer 0-65535" in done.stderr


def test_settings_the_rust_engine_migrated_are_read_from_its_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "iii-http.yaml").write_text(
        "id: iii-http\nvalue:\n  port: ${REST:3412}\n  cors: null\n  middleware: []\n")
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "iii-state.yaml").write_text("id: iii-state\nvalue: [1]\n")
    settings = _settings(tmp_path, """
        workers:
          - name: iii-http
    """)
    assert settings.options["rest_port"] == 3412
    assert settings.warnings == []  # null / empty values of unapplied keys say nothing
    # an explicit config block wins; the configuration worker may move the directory
    with pytest.raises(ConfigFileError) as caught:
        _settings(tmp_path, """
            workers:
              - name: configuration
                config: {adapter: {name: fs, config: {directory: ./moved}}}
              - name: iii-state
              - name: iii-http
                config: {port: 1}
        """)
    assert caught.value.path.endswith("iii-state.yaml")
    assert caught.value.key == "value"


async def test_the_rest_api_and_streams_socket_bind_their_own_host(tmp_path: Path) -> None:
    """``host:`` under ``iii-http`` / ``iii-stream`` is where those servers bind, not the
    main listener's host (here ``localhost``): read back from their bound sockets."""
    path = _write(tmp_path, """
        workers:
          - name: iii-worker-manager
            config: {host: localhost, port: 0}
          - name: iii-http
            config: {host: 127.0.0.1, port: 0}
          - name: iii-stream
            config: {host: 127.0.0.1, port: 0}
    """)
    async with Engine.from_config(path) as engine:
        assert engine.url.startswith("ws://localhost:")
        api = engine._rest.api  # the REST extension's server
        assert api is not None and api.url.startswith("http://127.0.0.1:")
        assert api.addresses == [("127.0.0.1", engine.rest_port)]
        socket = engine.workers.streams.socket
        assert socket is not None and socket.host == "127.0.0.1"
        assert socket.addresses == [("127.0.0.1", socket.port)]
    # without a host of their own they bind the main listener's
    async with Engine(host="localhost", rest_port=0, stream_port=0) as engine:
        api = engine._rest.api
        assert api is not None and api.url.startswith("http://localhost:")
        socket = engine.workers.streams.socket
        assert socket is not None and socket.host == "localhost"


async def test_command_line_hosts_and_handshake_deadline_reach_the_engine() -> None:
    """``--rest-host``, ``--stream-host`` and ``--handshake-timeout-ms`` (the command line of
    ``iii-rx engine``) become the engine's settings."""
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    options = args_options(parser.parse_args([
        "--host", "localhost", "--port", "0", "--rest-port", "0", "--stream-port", "0",
        "--rest-host", "127.0.0.1", "--stream-host", "127.0.0.1",
        "--handshake-timeout-ms", "1234"]))
    assert options["handshake_timeout_ms"] == 1234
    async with Engine(**options) as engine:
        assert engine.url.startswith("ws://localhost:")
        api = engine._rest.api
        assert api is not None and api.url.startswith("http://127.0.0.1:")
        socket = engine.workers.streams.socket
        assert socket is not None and socket.host == "127.0.0.1"
    # not given: the file's or the engine's own values stay in charge
    options = args_options(parser.parse_args(["--config", "iii.yaml"]))
    assert not {"rest_host", "stream_host", "handshake_timeout_ms"} & options.keys()


async def test_a_file_based_queue_adapter_keeps_messages_across_a_restart(tmp_path: Path) -> None:
    """``iii-queue``'s ``builtin`` adapter with ``store_method: file_based`` (the Rust
    engine's durable queues, docs/engine.md's equivalent of ``--queue-file``): ours kept the
    queues in memory without a word, so a restart lost every message and dead letter."""
    path = _write(tmp_path, f"""
        workers:
          - name: iii-worker-manager
            config: {{port: 0}}
          - name: iii-queue
            config:
              queue_configs:
                jobs: {{max_retries: 0, backoff_ms: 1}}
              adapter:
                name: builtin
                config: {{store_method: file_based, file_path: {tmp_path / "queues.db"}}}
    """)
    async with Engine.from_config(path) as engine:
        dead = asyncio.Event()
        engine.workers.queues.dead_letter_listeners.append(lambda queue, message: dead.set())
        worker = await RawWorker.connect(engine.url)
        await worker.result_of("engine::queue::enqueue", {
            "queue": "jobs", "function_id": "nobody::here", "data": {"n": 1}})
        await asyncio.wait_for(dead.wait(), 5)
    async with Engine.from_config(path) as engine:
        worker = await RawWorker.connect(engine.url)
        letters = await worker.result_of("engine::queue::dlq_messages", {"queue": "jobs"})
        assert [letter["payload"] for letter in letters] == [{"n": 1}]


@pytest.mark.parametrize(("worker", "adapter"), [("iii-queue", "builtin"),
                                                  ("iii-stream", "kv")])
def test_a_store_method_we_do_not_know_is_an_error(tmp_path: Path, worker: str,
                                                   adapter: str) -> None:
    """A typo (``file-based``) kept the queues, and the stream items, in memory without a
    word: the user asked for a file and lost everything at the next restart."""
    with pytest.raises(ConfigFileError, match=r"workers\[0\]\.config\.adapter\.config\."
                       "store_method: expected in_memory or file_based, got 'file-based'"):
        _settings(tmp_path, f"""
            workers:
              - name: {worker}
                config:
                  adapter: {{name: {adapter}, config: {{store_method: file-based}}}}
        """)
