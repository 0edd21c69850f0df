"""An official-SDK worker whose handler never returns, killed by the test mid-call.

    python victim.py URL WORKER_NAME FUNCTION_ID

Prints ``registered`` once the function is sent, and ``started`` when a call reaches the
handler; then the handler blocks until the process is killed.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from iii import InitOptions, register_worker


def main() -> None:
    url, name, function_id = sys.argv[1:4]
    worker = register_worker(url, InitOptions(worker_name=name, otel={"enabled": False},
                                              enable_metrics_reporting=False))
    never = threading.Event()

    def hang(data: Any) -> Any:
        print("started", flush=True)
        never.wait()
        return data

    worker.register_function(function_id, hang)
    print("registered", flush=True)
    never.wait()


if __name__ == "__main__":
    main()
