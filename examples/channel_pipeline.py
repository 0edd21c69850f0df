"""A channel pipeline: one function streams records into a channel, the caller decodes,
batches and aggregates them as they arrive.

Run with ``python examples/channel_pipeline.py [--count N]``. With no ``III_URL`` it starts an
embedded engine. The producer writes CBOR items (``write_obj``); the consumer pulls them with
``cbor_items`` and ``batched``, so a slow consumer slows the producer down instead of buffering
(docs/howto/pipelines.md explains each step).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import iii_rx
from iii_rx.channels import ChannelReader
from iii_rx.operators import batched, cbor_items


async def produce(data: dict[str, Any]) -> dict[str, int]:
    """Write ``count`` sensor readings into the channel whose writer ref is ``data["out"]``."""
    rng = random.Random(data["seed"])
    async with data["out"].buffered() as out:
        for n in range(data["count"]):
            await out.write_obj({"sensor": f"s{n % 4}", "value": rng.uniform(0, 100)})
    return {"written": data["count"]}


async def aggregate(reader: ChannelReader) -> dict[str, tuple[int, float]]:
    """Per sensor: how many readings and their mean, reading in batches of up to 1000."""
    sums: dict[str, list[float]] = {}
    batches = 0
    async with batched(cbor_items(reader), max_items=1000) as stream:
        async for rows in stream:
            batches += 1
            for row in rows:
                acc = sums.setdefault(row["sensor"], [0, 0.0])
                acc[0] += 1
                acc[1] += row["value"]
    print(f"consumer: {batches} batches")
    return {s: (int(n), total / n) for s, (n, total) in sorted(sums.items())}


async def main(count: int) -> None:
    async with iii_rx.connect(name="pipeline-example") as iii:
        iii.register_function("sensors::produce", produce, description="Stream readings")
        channel = await iii.create_channel_async()
        started = time.perf_counter()
        # A call is lazy: gather sends it and reads the channel at the same time.
        answer, stats = await asyncio.gather(
            iii.trigger("sensors::produce",
                        {"out": channel.writer_ref, "count": count, "seed": 7}),
            aggregate(channel.reader),
        )
        elapsed = time.perf_counter() - started
        print("producer:", answer)
        for sensor, (n, mean) in stats.items():
            print(f"  {sensor}: {n} readings, mean {mean:.2f}")
        print(f"{count} records in {elapsed:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000, help="records to stream")
    asyncio.run(main(parser.parse_args().count))
