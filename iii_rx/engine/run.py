"""Run an engine in the foreground: the ``iii-rx engine`` command and ``python -m iii_rx.engine``.

The command line uses the well-known ports (49134 for workers, 3111 for the REST API,
DECISIONS 5); ``Engine()`` in Python defaults to ephemeral ones. SIGINT (Ctrl-C) and SIGTERM
stop the engine cleanly: every worker sees its connection close and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from iii_rx.engine import Engine

__all__ = ["add_engine_arguments", "main", "serve"]

CLI_PORT = 49134
CLI_REST_PORT = 3111


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags shared by ``iii-rx engine`` and ``python -m iii_rx.engine``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=CLI_PORT,
                        help=f"worker websocket port (default {CLI_PORT}, 0 = ephemeral)")
    parser.add_argument("--rest-port", type=int, default=CLI_REST_PORT,
                        help=f"REST API port for http triggers (default {CLI_REST_PORT})")
    parser.add_argument("--allow-http-private", action="store_true",
                        help="let HTTP-invoked functions call private and link-local "
                             "addresses (loopback is always allowed)")
    parser.add_argument("--namespace-grace-ms", type=int, default=_env_grace(),
                        help="how long registrations wait for engine::workers::register "
                             "(default $III_NAMESPACE_GRACE_MS or 5000)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")


def _env_grace() -> int:
    value = os.environ.get("III_NAMESPACE_GRACE_MS", "").strip()
    return int(value) if value.isdigit() else 5000


async def serve(host: str, port: int, rest_port: int, *,
                allow_http_private: bool = False, namespace_grace_ms: int = 5000) -> None:
    """Run an engine until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            pass
    try:
        async with Engine(host, port, rest_port=rest_port,
                          allow_http_private=allow_http_private,
                          namespace_grace_ms=namespace_grace_ms) as engine:
            print(f"iii engine listening on {engine.url}", flush=True)
            await stop.wait()
            logging.getLogger("iii_rx.engine").info("stopping")
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse the engine flags and run until stopped; returns the exit status."""
    parser = argparse.ArgumentParser(prog=prog, description="Run the embedded iii engine.")
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    return run_args(args)


def run_args(args: argparse.Namespace) -> int:
    """Run with parsed :func:`add_engine_arguments` flags."""
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args.host, args.port, args.rest_port,
                          allow_http_private=getattr(args, "allow_http_private", False),
                          namespace_grace_ms=args.namespace_grace_ms))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except OSError as exc:
        logging.getLogger("iii_rx.engine").error("cannot start the engine: %s", exc)
        return 1
    return 0
