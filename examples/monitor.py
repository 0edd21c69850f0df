"""A monitoring dashboard in a few lines: print the engine's topology as workers come and go.

Run with ``python examples/monitor.py [--seconds S]``. Against the engine of ``III_URL`` it
watches (adding only its own ``monitor::ping``, which the visitors below call); without one it
starts an embedded engine and, so there is something to see, a few short-lived workers that
connect, register functions, call each other and leave. It prints the
current workers, then every change as it happens, then the engine's call counts, and stops after
``--seconds``. ``iii-rx top`` is the full-screen version (docs/cli.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time

import iii_rx
from iii_rx.topology import (
    FunctionAdded,
    FunctionRemoved,
    TopologyChange,
    WorkerConnected,
    WorkerDisconnected,
)


def describe(change: TopologyChange) -> str | None:
    """One line per change worth showing (None: not shown)."""
    if isinstance(change, WorkerConnected):
        return f"+ worker   {change.worker.name} ({change.worker.runtime})"
    if isinstance(change, WorkerDisconnected):
        return f"- worker   {change.worker.name}"
    if isinstance(change, FunctionAdded):
        return f"+ function {change.function.function_id} by {change.function.worker_name}"
    if isinstance(change, FunctionRemoved):
        return f"- function {change.function.function_id}"
    return None


async def visitor(url: str, n: int) -> None:
    """A worker that comes, serves and calls for a moment, and leaves."""
    async with iii_rx.connect(url, name=f"visitor-{n}") as iii:
        iii.register_function(f"visitor{n}::echo", lambda data: data)
        await iii.wait_for_function(f"visitor{n}::echo", timeout=5)
        for i in range(20):
            await iii.trigger(f"visitor{n}::echo", {"i": i})
            await iii.trigger("monitor::ping", {"from": n})
        await asyncio.sleep(0.4)


async def visitors(url: str) -> None:
    for n in range(3):
        await visitor(url, n)


async def main(seconds: float) -> None:
    url = os.environ.get("III_URL")
    async with iii_rx.connect(url, name="monitor") as iii:
        iii.register_function("monitor::ping", lambda data: "pong")
        async with iii.topology.iterate() as snapshots:
            snapshot = await anext(snapshots)
        print(f"engine {iii.url}: {len(snapshot.workers)} workers, "
              f"{len(snapshot.functions)} functions")
        for worker in snapshot.workers:
            print(f"  {worker.name:<24} {worker.runtime}")

        changes = iii.topology_changes.subscribe(
            lambda change: (line := describe(change)) and print(f"{time.strftime('%X')} {line}")
        )
        load = None if url else asyncio.create_task(visitors(iii.url))
        try:
            await asyncio.sleep(seconds)
        finally:
            changes.dispose()
            if load is not None:
                load.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await load

        metrics = await iii.trigger("engine::metrics::list", {})
        if "functions" not in metrics:  # the Rust engine keeps engine-wide counters only
            print("this engine counts no calls per function")
            return
        busy = [f for f in metrics["functions"]
                if f["invocations"] and not f["function_id"].startswith("engine::")]
        print("calls per function:")
        for row in sorted(busy, key=lambda f: -f["invocations"]):
            print(f"  {row['function_id']:<28} {row['invocations']:>5}  p50 {row['p50_ms']} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="how long to watch")
    asyncio.run(main(parser.parse_args().seconds))
