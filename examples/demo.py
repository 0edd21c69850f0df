"""A demo worker against an embedded engine: run with ``make demo``.

``iii_rx.connect()`` with no address (and no ``III_URL``) starts an engine in this process, so
nothing else needs to run. The demo registers functions three ways, calls them, shows a typed
error, composes a call with a reactive operator, and lists what the engine knows.
"""

from __future__ import annotations

import asyncio
import os

import reactivex.operators as ops

import iii_rx


def add(data: dict[str, int]) -> dict[str, int]:
    """A sync handler: runs in the client's thread pool."""
    return {"sum": data["a"] + data["b"]}


async def greet(data: dict[str, str]) -> dict[str, str]:
    """An async handler: runs as a task on the client's loop."""
    await asyncio.sleep(0)
    return {"greeting": f"hello, {data['name']}"}


async def main() -> None:
    os.environ.pop("III_URL", None)  # the demo always uses its own embedded engine
    async with iii_rx.connect(name="demo-worker") as iii:
        print(f"connected to an embedded engine at {iii.url}")
        iii.register_function("demo::add", add, description="Add two numbers")
        iii.register_function("demo::greet", greet, description="Say hello")

        # A function as a subscriber of its invocation stream: subscribing registers it.
        upper = iii.function("demo::upper", description="Upper-case a text").subscribe(
            lambda inv: inv.reply(inv.data["text"].upper())
        )

        print("demo::add   ->", await iii.trigger("demo::add", {"a": 2, "b": 40}))
        print("demo::greet ->", await iii.trigger("demo::greet", {"name": "iii"}))
        print("demo::upper ->", await iii.trigger("demo::upper", {"text": "reactive"}))

        # 100 calls at once, gathered.
        sums = await asyncio.gather(
            *(iii.trigger("demo::add", {"a": i, "b": i}) for i in range(100))
        )
        print("100 concurrent calls, total of sums:", sum(s["sum"] for s in sums))

        # Errors are typed and carry the wire code.
        try:
            await iii.trigger("demo::missing", {})
        except iii_rx.IIIInvocationError as err:
            print("calling a missing function ->", err.code)

        # A call is a single-value observable: compose it with reactive operators.
        doubled = await iii.trigger("demo::add", {"a": 1, "b": 1}).pipe(
            ops.map(lambda r: r["sum"] * 2)
        )
        print("piped through ops.map ->", doubled)

        listed = await iii.trigger("engine::functions::list", {})
        ids = sorted(f["function_id"] for f in listed["functions"])
        print("functions on the engine:", ", ".join(ids))

        upper.dispose()  # unregisters demo::upper
    print("closed cleanly")


if __name__ == "__main__":
    asyncio.run(main())
