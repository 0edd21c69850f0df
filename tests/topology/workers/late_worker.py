"""An official-SDK worker in its own process, for ``wait_for_function`` tests.

    python late_worker.py URL WORKER_NAME FUNCTION_ID

Registers FUNCTION_ID (it answers ``{"echo": data}``), prints ``registered`` and serves until
its stdin closes.
"""

from __future__ import annotations

import sys
from typing import Any

from iii import InitOptions, register_worker


def main() -> None:
    url, name, function_id = sys.argv[1:4]
    worker = register_worker(url, InitOptions(worker_name=name, otel={"enabled": False},
                                              enable_metrics_reporting=False))

    def echo(data: Any) -> Any:
        return {"echo": data}

    worker.register_function(function_id, echo)
    print("registered", flush=True)
    sys.stdin.read()
    worker.shutdown()


if __name__ == "__main__":
    main()
