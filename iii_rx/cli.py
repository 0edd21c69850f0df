"""The ``iii-rx`` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``iii-rx`` console script."""
    parser = argparse.ArgumentParser(prog="iii-rx", description=__doc__)
    parser.add_subparsers(dest="command", required=True)
    parser.parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
