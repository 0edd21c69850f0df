"""What every client command of ``iii-rx`` shares: the address, the connection, the errors.

A command line tool is judged by how it fails: a wrong ``--url`` or an engine that is not
running must give one line on stderr and exit 1 within a few seconds, never a traceback.
So commands connect with a short ``connect_timeout``, iii_rx's own logging stays quiet unless
``--verbose``, and :func:`run` turns every expected error into one line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from iii_rx.client import Client
from iii_rx.connect import connect
from iii_rx.errors import IIIError, IIIInvocationError
from iii_rx.state import ReconnectConfig
from iii_rx.tools.args import resolve_url

__all__ = ["ToolError", "one_line", "open_client", "run"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ToolError(Exception):
    """A failure the user can act on; printed as ``iii-rx: <message>`` with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def quiet_logging(verbose: bool) -> Iterator[None]:
    """Keep log lines (iii_rx's, websockets', asyncio's) off the terminal while a command
    runs, for one-line errors and an intact dashboard; ``verbose`` logs everything to stderr.

    A handler on the root logger, even one that drops everything, stops Python from printing
    warnings through its last-resort handler; a command run in-process (tests) leaves logging
    as it found it.
    """
    if verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        yield
        return
    root, null = logging.getLogger(), logging.NullHandler()
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)


def one_line(error: BaseException) -> str:
    """An error as a single line: its code for engine errors, whitespace folded."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, IIIInvocationError) and error.code and error.code not in text:
        text = f"{error.code}: {text}"
    return text


def worker_name(command: str) -> str:
    """A name per process: the engine leases a name to one live worker per namespace, so
    two ``iii-rx ls`` at once must not share one."""
    return f"iii-rx {command} {socket.gethostname()}:{os.getpid()}"


@asynccontextmanager
async def open_client(args: argparse.Namespace, command: str, *,
                      namespace: str | None = None,
                      reconnect: ReconnectConfig | None = None) -> AsyncIterator[Client]:
    """A client of ``args.url`` (see :func:`resolve_url`); a failure to connect becomes a
    :class:`ToolError` naming the address."""
    url = resolve_url(args.url)
    try:
        client = await connect(url, name=worker_name(command), namespace=namespace,
                               connect_timeout=args.connect_timeout,
                               reconnect=reconnect or ReconnectConfig(
                                   initial_delay_ms=200, max_delay_ms=2000))
    except (IIIError, OSError, ValueError) as exc:
        message = one_line(exc)
        raise ToolError(message if url in message else f"cannot connect to {url}: {message}"
                        ) from None
    try:
        yield client
    finally:
        await client.aclose()


def run(main: Coroutine[Any, Any, int], *, verbose: bool = False) -> int:
    """Run a command's coroutine; expected failures become one line on stderr and a status."""
    try:
        with quiet_logging(verbose):
            return asyncio.run(main)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ToolError as exc:
        _error(str(exc))
        return exc.code
    except (IIIError, OSError, TimeoutError, asyncio.TimeoutError) as exc:
        if verbose:
            raise
        _error(one_line(exc))
        return EXIT_FAILURE


def _error(message: str) -> None:
    try:
        print(f"iii-rx: {message}", file=sys.stderr, flush=True)
    except OSError:  # stderr is gone too; the status still tells
        pass
