"""Start the Rust iii engine for a benchmark: loopback only, every store in memory.

    python benchmarks/rust_engine.py --port P [--rest-port R] [--otel]

The binary is ``$III_BIN``, else ``~/.cache/iii-engine/iii`` (the Rust engine is on no package
registry: ``docs/howto/real-engine.md`` says how to build it). The config written for it enables
the workers the benchmarks compare against ours: the worker port, the REST API (``--rest-port``),
HTTP-invoked functions allowed on loopback, state, pub/sub, streams, cron and the built-in
queue, with the observability worker only when ``--otel`` asks for it. The process becomes the
engine (``exec``), so stopping this script stops the engine.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

BINARY = Path(os.environ.get("III_BIN", Path.home() / ".cache/iii-engine/iii"))

_CONFIG = """workers:
  - name: iii-worker-manager
    config: {{host: 127.0.0.1, port: {port}}}
  - name: iii-http
    config: {{host: 127.0.0.1, port: {rest_port}, default_timeout: 30000}}
  - name: iii-http-functions
    config:
      security: {{url_allowlist: [localhost, 127.0.0.1], block_private_ips: false,
                  require_https: false}}
  - name: iii-state
    config: {{adapter: {{name: kv, config: {{store_method: in_memory}}}}}}
  - name: iii-pubsub
    config: {{adapter: {{name: local}}}}
  - name: iii-stream
    config: {{host: 127.0.0.1, port: {stream_port},
              adapter: {{name: kv, config: {{store_method: in_memory}}}}}}
  - name: iii-cron
    config: {{adapter: {{name: kv, config: {{store_method: in_memory}}}}}}
  - name: iii-queue
    config: {{adapter: {{name: builtin, config: {{store_method: in_memory}}}}}}
"""

_OBSERVABILITY = """  - name: iii-observability
    config: {enabled: true, service_name: iii, exporter: memory, sampling_ratio: 1.0,
             logs_console_output: false, trace_storage: {enabled: false}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config_text(port: int, rest_port: int, stream_port: int, otel: bool) -> str:
    """The engine's YAML config for these ports."""
    text = _CONFIG.format(port=port, rest_port=rest_port, stream_port=stream_port)
    return text + _OBSERVABILITY if otel else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="the worker port")
    parser.add_argument("--rest-port", type=int, default=0, help="the REST API (0: a free port)")
    parser.add_argument("--otel", action="store_true",
                        help="add the observability worker (memory exporter)")
    args = parser.parse_args()
    if not BINARY.exists():
        parser.exit(2, f"no Rust engine at {BINARY} (set III_BIN; docs/howto/real-engine.md)\n")
    # One directory per port, written over by the next run on it (the process becomes the
    # engine, so nothing would be left to remove a fresh one); the engine writes beside it.
    workdir = Path(tempfile.gettempdir()) / f"iii-rust-engine-{args.port}"
    workdir.mkdir(exist_ok=True)
    config = workdir / "config.yaml"
    config.write_text(config_text(args.port, args.rest_port or _free_port(), _free_port(),
                                  args.otel), encoding="utf-8")
    os.chdir(workdir)
    os.execv(BINARY, [str(BINARY), "--config", str(config)])


if __name__ == "__main__":
    main()
