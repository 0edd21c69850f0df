"""``python -m iii_rx.engine [--host H] [--port P] [--rest-port R]``: run an engine."""

from __future__ import annotations

import sys

from iii_rx.engine.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m iii_rx.engine"))
