"""A worker written against the official ``iii-sdk`` API, running on iii_rx.

Only the imports differ from a script for the official SDK (``from iii import ...``): the worker,
its handlers, calls, errors and channels are the conventional API (docs/migration.md). Run with
``python examples/compat_worker.py``. As with the official SDK, ``register_worker()`` connects to
``III_URL`` (default ``ws://127.0.0.1:49134``); when ``III_URL`` is not set this example starts
an embedded engine on a free port and passes its address.
The reactive client underneath stays reachable as ``iii.client``.
"""

from __future__ import annotations

import os
from typing import Any

from reactivex import operators as ops

from iii_rx.compat import InitOptions, InvocationError, register_worker
from iii_rx.engine import Engine


def add(data: dict[str, int]) -> dict[str, int]:
    return {"sum": data["a"] + data["b"]}


async def shout(data: dict[str, Any], metadata: Any = None) -> str:
    """An async handler that also takes the call's metadata."""
    suffix = (metadata or {}).get("suffix", "!")
    return data["text"].upper() + suffix


def main() -> None:
    engine = None if os.environ.get("III_URL") else Engine.start_in_thread()
    address = engine.url if engine is not None else None
    iii = register_worker(address, InitOptions(worker_name="compat-example"))
    try:
        iii.register_function("math::add", add, description="Add two numbers")
        iii.register_function("text::shout", shout)

        print("math::add ->", iii.trigger({"function_id": "math::add",
                                            "payload": {"a": 2, "b": 40}}))
        print("text::shout ->", iii.trigger({"function_id": "text::shout",
                                              "payload": {"text": "hello"},
                                              "metadata": {"suffix": "?!"}}))
        try:
            iii.trigger({"function_id": "math::missing", "payload": {}})
        except InvocationError as err:
            print("missing function ->", err.code)

        # The reactive client underneath: a call as a Single, composed with an operator.
        doubled = iii.client.trigger("math::add", {"a": 1, "b": 2}).pipe(
            ops.map(lambda r: r["sum"] * 2)
        ).result(timeout=5)
        print("reactive, piped ->", doubled)
        print("state:", iii.get_connection_state())
    finally:
        iii.shutdown()
        if engine is not None:
            engine.stop()


if __name__ == "__main__":
    main()
