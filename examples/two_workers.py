"""A standalone engine with two workers, each in its own process.

Run with ``python examples/two_workers.py``. It starts ``python -m iii_rx.engine`` on free ports
(what ``iii-rx engine`` runs), then two worker processes that connect to it over the network:

* ``prices`` serves ``prices::quote``;
* ``orders`` serves ``orders::place``, which calls ``prices::quote`` on the other worker.

The script then places a few orders as a third client, lists the workers the engine sees, and
stops everything (workers first: closing their stdin tells them to leave; then the engine, with
SIGTERM, as from a shell). Each process could as well run on another machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from typing import Any

import iii_rx

PRICES = {"apple": 3, "pear": 4, "plum": 2}


async def serve(role: str, url: str) -> None:
    """A worker process: register its function and serve until stdin closes."""
    async with iii_rx.connect(url, name=f"{role}-worker") as iii:
        if role == "prices":
            iii.register_function("prices::quote", lambda data: PRICES[data["item"]])
        else:
            async def place(data: dict[str, Any]) -> dict[str, Any]:
                unit = await iii.trigger("prices::quote", {"item": data["item"]})
                return {"item": data["item"], "qty": data["qty"], "total": unit * data["qty"]}

            iii.register_function("orders::place", place)
        print(f"{role}: serving on {url}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF


def start_engine() -> tuple[subprocess.Popen[str], str]:
    engine = subprocess.Popen(
        [sys.executable, "-m", "iii_rx.engine", "--port", "0", "--rest-port", "0",
         "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True,
    )
    assert engine.stdout is not None
    line = engine.stdout.readline()          # "iii engine listening on ws://127.0.0.1:PORT"
    if "listening on" not in line:
        engine.kill()
        sys.exit(f"the engine did not start: {line!r}")
    return engine, line.rsplit(" ", 1)[-1].strip()


async def shop(url: str) -> None:
    """The third client: wait for both functions, place orders, list the workers."""
    async with iii_rx.connect(url, name="shop-client") as iii:
        await iii.wait_for_function("orders::place", timeout=30)
        await iii.wait_for_function("prices::quote", timeout=30)
        for item, qty in (("apple", 2), ("pear", 5), ("plum", 10)):
            print("order:", await iii.trigger("orders::place", {"item": item, "qty": qty}))
        listed = await iii.trigger("engine::workers::list", {})
        names = sorted(w["name"] for w in listed["workers"] if w["runtime"] != "engine")
        print("workers on the engine:", ", ".join(names))


def main() -> None:
    engine, url = start_engine()
    print("engine:", url)
    workers = [
        subprocess.Popen([sys.executable, __file__, "--role", role, "--url", url],
                         stdin=subprocess.PIPE, text=True)
        for role in ("prices", "orders")
    ]
    try:
        asyncio.run(shop(url))
    finally:
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.stdin.close()          # type: ignore[union-attr]
        for worker in workers:
            worker.wait(timeout=30)
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=30)
        engine.stdout.close()                # type: ignore[union-attr]
    print("engine exit code:", engine.returncode)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("prices", "orders"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.pop("III_URL", None)
    if args.role:
        asyncio.run(serve(args.role, args.url))
    else:
        main()
