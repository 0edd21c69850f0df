"""The ``iii-rx`` command line.

``iii-rx engine [--host 127.0.0.1] [--port 49134] [--rest-port 3111]`` runs the embedded engine
in the foreground (Ctrl-C stops it). Subcommands import what they need lazily so that the
engine command never imports the client.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``iii-rx`` console script."""
    parser = argparse.ArgumentParser(prog="iii-rx", description="iii_rx tools")
    commands = parser.add_subparsers(dest="command", required=True)

    from iii_rx.engine.run import add_engine_arguments, run_args

    engine = commands.add_parser("engine", help="run the embedded iii engine",
                                 description="Run the embedded iii engine.")
    add_engine_arguments(engine)

    args = parser.parse_args(argv)
    if args.command == "engine":
        return run_args(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse exits
    return 2


if __name__ == "__main__":
    sys.exit(main())
