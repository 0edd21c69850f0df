"""Run an engine in the foreground: the ``iii-rx engine`` command and ``python -m iii_rx.engine``.

The command line uses the well-known ports (49134 for workers, 3111 for the REST API);
``Engine()`` in Python defaults to ephemeral ones. SIGINT (Ctrl-C) and SIGTERM
stop the engine cleanly: every worker sees its connection close and the process exits 0.

``--config PATH`` reads the Rust engine's config file (docs/engine-config.md): its listeners,
REST API, state file and the rest; a flag given on the command line wins over the file. A
malformed file stops the command at start with the file, the key and what was expected.

Two settings also come from the environment, so that a secret need not appear in the process
list: ``III_TOKEN`` (the token every peer must present, ``--token``) and
``III_HTTP_SECRET_ENV`` (comma-separated names or ``PREFIX*`` patterns of the variables
HTTP-invoked functions may use as secrets, ``--http-secret-env``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from iii_rx.engine import Engine
from iii_rx.engine.config_file import ConfigFileError
from iii_rx.engine.workers.sqlite_common import StoreFileError

__all__ = ["add_engine_arguments", "args_options", "main", "secret_env_allowlist", "serve"]

CLI_PORT = 49134
CLI_REST_PORT = 3111


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (ephemeral) to 65535; anything else a usage error."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def host_name(text: str) -> str:
    """An argparse type: a host name or address; an empty one (``--host "$UNSET"``) would
    bind every interface, so it is a usage error."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a host name or address, got {text!r}")
    return text.strip()


def milliseconds(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of milliseconds, at least ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    return parse


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags shared by ``iii-rx engine`` and ``python -m iii_rx.engine``.

    The flags a config file can also set default to ``None`` (not given), so that
    :func:`run_args` can tell a flag from the file's value."""
    parser.add_argument("--config", default=None, metavar="PATH",
                        help="the Rust engine's config file (iii-config.yaml); flags given "
                             "here win over it")
    parser.add_argument("--host", type=host_name, default=None,
                        help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=None,
                        help=f"worker websocket port (default {CLI_PORT}, 0 = ephemeral)")
    parser.add_argument("--rest-port", type=port_number, default=None,
                        help=f"REST API port for http triggers (default {CLI_REST_PORT})")
    parser.add_argument("--allow-http-private", action="store_true", default=None,
                        help="let HTTP-invoked functions call private and link-local "
                             "addresses (loopback is always allowed)")
    parser.add_argument("--token", default=os.environ.get("III_TOKEN", "").strip() or None,
                        help="require 'Authorization: Bearer TOKEN' on the worker, channel and "
                             "REST ports (default $III_TOKEN; prefer the variable: arguments "
                             "are visible to other local users)")
    parser.add_argument("--http-secret-env", action="append", default=None, metavar="NAMES",
                        help="environment variables HTTP-invoked functions may use as auth "
                             "secrets: names or PREFIX* patterns, comma-separated, repeatable "
                             "(default $III_HTTP_SECRET_ENV; none when unset)")
    parser.add_argument("--state-file", default=None, metavar="PATH",
                        help="keep the state worker's values in this sqlite file (survives "
                             "restarts; default: in memory)")
    parser.add_argument("--stream-file", default=None, metavar="PATH",
                        help="keep stream items in this sqlite file (default: in memory)")
    parser.add_argument("--queue-file", default=None, metavar="PATH",
                        help="keep queued messages and dead letters in this sqlite file "
                             "(default: in memory)")
    parser.add_argument("--stream-port", type=port_number, default=None, metavar="PORT",
                        help="open the streams socket for stream clients on this port "
                             "(0 = ephemeral; default: no socket)")
    parser.add_argument("--stream-auth-function", default=None, metavar="FUNCTION_ID",
                        help="function that authenticates streams socket connections")
    parser.add_argument("--rest-host", type=host_name, default=None,
                        help="address the REST API binds (default: --host)")
    parser.add_argument("--stream-host", type=host_name, default=None,
                        help="address the streams socket binds (default: --host)")
    parser.add_argument("--handshake-timeout-ms", type=milliseconds(1), default=None,
                        metavar="MS",
                        help="drop a connection that has not finished its websocket "
                             "handshake after MS (default 10000)")
    parser.add_argument("--namespace-grace-ms", type=milliseconds(0), default=None,
                        metavar="MS",
                        help="how long registrations wait for engine::workers::register "
                             "(default $III_NAMESPACE_GRACE_MS or 5000)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")


def secret_env_allowlist(values: list[str] | None) -> tuple[str, ...]:
    """``--http-secret-env`` values (else ``$III_HTTP_SECRET_ENV``) as one tuple of patterns."""
    if values is None:
        values = [os.environ.get("III_HTTP_SECRET_ENV", "")]
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _env_grace() -> int | None:
    """``$III_NAMESPACE_GRACE_MS``; a value that is not a number of milliseconds is an error
    (silently falling back to 5000 hid the typo)."""
    value = os.environ.get("III_NAMESPACE_GRACE_MS", "").strip()
    if not value:
        return None
    if not value.isdecimal():
        raise ValueError("III_NAMESPACE_GRACE_MS: expected a whole number of milliseconds, "
                         f"got {value!r}")
    return int(value)


async def serve(host: str | None = None, port: int | None = None,
                rest_port: int | None = None, *, allow_http_private: bool | None = None,
                namespace_grace_ms: int | None = None, token: str | None = None,
                http_secret_env_allowlist: tuple[str, ...] | None = None,
                state_file: str | None = None, config: str | None = None,
                **options: Any) -> None:
    """Run an engine until SIGINT or SIGTERM: from ``config`` if given, the arguments that are
    not ``None`` winning over it (else over the command line's defaults); ``options``: more
    :class:`Engine` arguments. Off the main thread no signal reaches it: cancel it to stop."""
    await _serve(engine_options(config=config, host=host, port=port, rest_port=rest_port,
                                allow_http_private=allow_http_private,
                                namespace_grace_ms=namespace_grace_ms, token=token,
                                http_secret_env_allowlist=http_secret_env_allowlist,
                                state_file=state_file, **options))


def engine_options(config: str | None = None, **flags: Any) -> dict[str, Any]:
    """``Engine`` keywords from the flags that were given (not ``None``) over, with
    ``config``, the file, else over the command line's defaults (the well-known ports)."""
    given = {name: value for name, value in flags.items() if value is not None}
    if config is not None:
        return {"config": config, **given}
    return {"host": "127.0.0.1", "port": CLI_PORT, "rest_port": CLI_REST_PORT,
            "namespace_grace_ms": 5000, **given}


def _not_listening(record: logging.LogRecord) -> bool:
    """The engine's own "listening on" log line, which the command prints (on stdout, for
    scripts) instead of showing it twice."""
    return not str(record.msg).startswith("iii engine listening on")


async def _serve(options: dict[str, Any]) -> None:
    config = options.pop("config", None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # Windows; or not the main thread (asyncio: RuntimeError, uvloop: ValueError)
    engine_log = logging.getLogger("iii_rx.engine")
    engine_log.addFilter(_not_listening)
    try:
        engine = Engine.from_config(config, **options) if config is not None \
            else Engine(**options)
        async with engine:
            print(f"iii engine listening on {', '.join(engine.listener_urls)}", flush=True)
            await stop.wait()
            engine_log.info("stopping")
    finally:
        engine_log.removeFilter(_not_listening)
        for sig in handled:
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse the engine flags and run until stopped; returns the exit status."""
    parser = argparse.ArgumentParser(prog=prog, description="Run the embedded iii engine.")
    add_engine_arguments(parser)
    args = parser.parse_args(argv)
    return run_args(args)


_PASSED_AS_GIVEN = ("stream_file", "queue_file", "stream_port", "stream_auth_function",
                    "rest_host", "stream_host", "handshake_timeout_ms")
"""Flags that become :class:`Engine` arguments of the same name when given."""


def args_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`Engine` keywords (and ``config``) of parsed :func:`add_engine_arguments`
    flags."""
    grace = args.namespace_grace_ms if args.namespace_grace_ms is not None else _env_grace()
    given = {name: getattr(args, name) for name in _PASSED_AS_GIVEN
             if getattr(args, name, None) is not None}
    return engine_options(
        config=getattr(args, "config", None), host=args.host, port=args.port,
        rest_port=args.rest_port, allow_http_private=getattr(args, "allow_http_private", None),
        namespace_grace_ms=grace, token=getattr(args, "token", None),
        http_secret_env_allowlist=secret_env_allowlist(getattr(args, "http_secret_env", None))
        or None, state_file=getattr(args, "state_file", None), **given)


def run_args(args: argparse.Namespace) -> int:
    """Run with parsed :func:`add_engine_arguments` flags: 0 when stopped, 2 for a setting
    that cannot be used (the config file, an environment variable, a state, stream or queue
    file), 1 when the engine cannot start (a port in use), each one line."""
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("iii_rx.engine")
    try:
        options = args_options(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    try:
        asyncio.run(_serve(options))
    except ConfigFileError as exc:
        log.error("bad config file: %s", exc)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    except StoreFileError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start the engine: %s", exc)
        return 1
    return 0

