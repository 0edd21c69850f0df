"""The command lines of ``iii-rx ls``, ``call``, ``watch`` and ``top`` (argparse only).

Kept free of the client and of textual: ``iii-rx`` builds every subcommand's parser on each
run, and only the chosen command's module is imported afterwards (``handler`` names it as
``"module:function"``), so ``iii-rx engine`` never loads the client and ``ls`` never loads
textual.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["CLIENT_COMMANDS", "DEFAULT_URL", "KINDS", "add_client_commands",
           "add_connection_arguments", "resolve_url"]

DEFAULT_URL = "ws://127.0.0.1:49134"
KINDS = ("workers", "functions", "triggers")
CLIENT_COMMANDS = frozenset({"top", "ls", "call", "watch"})

def resolve_url(url: str | None) -> str:
    """``--url``, else ``$III_URL``, else the engine's well-known local port."""
    return url or os.environ.get("III_URL", "").strip() or DEFAULT_URL


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero; anything else a usage error."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return seconds


def function_id(text: str) -> str:
    """An argparse type: a function id (an empty one names no function)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a function id, got {text!r}")
    return text


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--connect-timeout`` and ``--verbose``, taken by every client command."""
    parser.add_argument("--url", default=None,
                        help=f"engine websocket URL (default $III_URL, then {DEFAULT_URL})")
    parser.add_argument("--connect-timeout", type=positive_seconds, default=3.0,
                        metavar="SECONDS",
                        help="give up connecting after this long (default 3)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log iii_rx's warnings and debug lines to stderr")


def _internal(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--internal", action="store_true",
                        help="include engine::* functions and internal rows")


def _poll(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll", type=positive_seconds, default=1.0, metavar="SECONDS",
                        help="re-read the lists after SECONDS of quiet (default 1): new "
                             "bindings and late engine events show within that")


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``top``, ``ls``, ``call`` and ``watch`` to ``commands``."""
    top = commands.add_parser(
        "top", help="live dashboard of workers, functions, triggers and changes",
        description="A live dashboard of the engine. Keys: q quit, n next namespace, "
                    "s next sort (name, calls, errors, namespace), r reverse, e hide or "
                    "show the engine's own workers.")
    top.add_argument("--namespace", default=None, help="start filtered to this namespace")
    top.add_argument("--hide-engine", action="store_true",
                     help="start without the engine's in-process workers and their rows")
    _internal(top)
    _poll(top)
    add_connection_arguments(top)
    top.set_defaults(handler="iii_rx.tools.top:top")

    ls = commands.add_parser(
        "ls", help="list workers, functions or triggers",
        description="List what the engine has: workers, functions, registered triggers "
                    "(all three when no kind is given).")
    ls.add_argument("kind", nargs="?", choices=KINDS, help="what to list (default: all)")
    ls.add_argument("--json", action="store_true",
                    help="print the engine's rows as JSON (a list, or an object of lists)")
    ls.add_argument("--namespace", default=None, help="only this namespace")
    _internal(ls)
    add_connection_arguments(ls)
    ls.set_defaults(handler="iii_rx.tools.commands:ls")

    call = commands.add_parser(
        "call", help="call a function and print its result",
        description="Trigger FUNCTION_ID with a JSON payload and print the result as JSON.")
    call.add_argument("function_id", type=function_id, metavar="FUNCTION_ID")
    call.add_argument("payload", nargs="?", default="{}", metavar="JSON",
                      help="the payload, as JSON (default {}; - reads stdin)")
    call.add_argument("--timeout", type=int, default=30000, metavar="MS",
                      help="fail if no result within MS milliseconds (default 30000)")
    call.add_argument("--wait", type=positive_seconds, default=None, metavar="SECONDS",
                      help="first wait up to SECONDS for the function to be registered")
    call.add_argument("--namespace", default=None,
                      help="connect in this namespace (calls resolve in it)")
    add_connection_arguments(call)
    call.set_defaults(handler="iii_rx.tools.commands:call")

    watch = commands.add_parser(
        "watch", help="print topology changes as JSON lines",
        description='Print each topology change as one JSON line ({"event": ..., <row>: '
                    '{...}}), and connection changes as {"event": "connection", ...}.')
    watch.add_argument("--current", action="store_true",
                       help="first print every current row as an addition")
    _internal(watch)
    _poll(watch)
    add_connection_arguments(watch)
    watch.set_defaults(handler="iii_rx.tools.commands:watch")
