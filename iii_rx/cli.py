"""The ``iii-rx`` command line (also ``python -m iii_rx.cli``).

``iii-rx engine [--host 127.0.0.1] [--port 49134] [--rest-port 3111]`` runs the embedded engine
in the foreground (Ctrl-C stops it). ``iii-rx top``, ``ls``, ``call`` and ``watch`` are clients
of an engine at ``--url`` (default ``$III_URL``, then ``ws://127.0.0.1:49134``; see
``docs/cli.md``). Every parser is built from argparse-only modules, and only the chosen
command's implementation is imported: the engine command never imports the client, and only
``top`` imports textual.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import cast

from iii_rx import __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``iii-rx`` console script."""
    from iii_rx.tools.args import CLIENT_COMMANDS, add_client_commands

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="iii-rx", description="iii_rx tools")
    parser.add_argument("--version", action="version", version=f"iii-rx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    engine = commands.add_parser("engine", help="run the embedded iii engine",
                                 description="Run the embedded iii engine.")
    # The engine's flags need the engine's modules (most of a second to import): only for it.
    client_command = next((a for a in argv if not a.startswith("-")), None) in CLIENT_COMMANDS
    if not client_command:
        from iii_rx.engine.run import add_engine_arguments

        add_engine_arguments(engine)
    add_client_commands(commands)

    args = parser.parse_args(argv)
    if args.command == "engine":
        from iii_rx.engine.run import run_args

        return run_args(args)
    module, _, name = str(args.handler).partition(":")
    handler = cast(Callable[[argparse.Namespace], int],
                   getattr(importlib.import_module(module), name))
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
