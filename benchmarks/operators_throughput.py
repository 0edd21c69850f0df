"""Operator throughput: ``batched`` and the chunk decoders against plain baselines, one run.

Every figure is the CPU seconds (``time.process_time``: steadier than wall time on a shared
machine; everything here runs in one thread) for ``--items`` items (default 250,000), the
median of ``--rounds`` interleaved rounds with the range beside; the ratio lines divide per
round (so a burst of load from elsewhere hits both sides of a ratio) and give median
[min-max]. Targets (issue 15): each ratio <= 1.5.

  batched         ``batched(src, max_items=100)`` over a plain async generator
  batched+delay   the same with ``max_delay=1.0`` (the timer must cost per batch, not per item)
  cbor plain      cbor2 alone: one ``CBORDecoder`` over the joined bytes, decode to the end
  cbor feed       ``CborSequenceDecoder.feed`` over 64 KiB chunks (what ``reader.objects()`` runs)
  decode_cbor     the Rx operator over the same chunks (``reactivex.from_iterable``)
  cbor_items      the async operator over an async generator of the same chunks
  json plain      ``json.loads`` of every line of the joined text
  json feed       ``JsonLinesDecoder.feed`` over 64 KiB chunks
  decode_json     the Rx operator ``decode_json_lines``
  json_lines      the async operator

    python benchmarks/operators_throughput.py [--items 250000] [--rounds 3] [--only cbor,json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import cbor2
import reactivex

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from _common import spread  # noqa: E402

from iii_rx.channels import CborSequenceDecoder  # noqa: E402
from iii_rx.operators import (  # noqa: E402
    JsonLinesDecoder,
    batched,
    cbor_items,
    decode_cbor,
    decode_json_lines,
    json_lines,
)

CHUNK = 64 * 1024


def item(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"item-{i}", "value": i * 0.5, "ok": i % 2 == 0}


def cut(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


async def agen(values: list[Any]) -> AsyncIterator[Any]:
    for value in values:
        yield value


# --------------------------------------------------------------------------- contenders


def run_batched(n: int, max_delay: float | None) -> int:
    async def main() -> int:
        count = 0
        async with batched(agen(list(range(n))), max_items=100, max_delay=max_delay) as batches:
            async for batch in batches:
                count += len(batch)
        return count

    return asyncio.run(main())


def cbor_plain(data: bytes) -> int:
    fp = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(fp)
    count = 0
    end = len(data)
    while fp.tell() < end:
        decoder.decode()
        count += 1
    return count


def feed_all(make: Callable[[], Any], chunks: list[bytes]) -> int:
    decoder = make()
    count = 0
    for chunk in chunks:
        count += len(decoder.feed(chunk))
    count += len(decoder.finish() or ())
    return count


def rx_count(chunks: list[bytes], operator: Any) -> int:
    count = 0

    def on_next(_: Any) -> None:
        nonlocal count
        count += 1

    def on_error(error: Exception) -> None:
        raise error

    reactivex.from_iterable(chunks).pipe(operator).subscribe(on_next, on_error)
    return count


def aio_count(chunks: list[bytes], make: Callable[[Any], Any]) -> int:
    async def main() -> int:
        count = 0
        async with make(agen(chunks)) as items:
            async for _ in items:
                count += 1
        return count

    return asyncio.run(main())


def json_plain(data: bytes) -> int:
    count = 0
    for line in data.splitlines():
        json.loads(line)
        count += 1
    return count


# --------------------------------------------------------------------------- coordinator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="batched,cbor,json",
                        help="comma-separated groups to run: batched, cbor, json")
    args = parser.parse_args()
    n = args.items
    load_before = os.getloadavg()
    values = [item(i) for i in range(n)]
    cbor_data = b"".join(cbor2.dumps(v) for v in values)
    cbor_chunks = cut(cbor_data)
    json_data = b"".join(json.dumps(v).encode() + b"\n" for v in values)
    json_chunks = cut(json_data)
    contenders: dict[str, Callable[[], int]] = {
        "batched": lambda: run_batched(n, None),
        "batched+delay": lambda: run_batched(n, 1.0),
        "cbor plain": lambda: cbor_plain(cbor_data),
        "cbor feed": lambda: feed_all(CborSequenceDecoder, cbor_chunks),
        "decode_cbor": lambda: rx_count(cbor_chunks, decode_cbor()),
        "cbor_items": lambda: aio_count(cbor_chunks, cbor_items),
        "json plain": lambda: json_plain(json_data),
        "json feed": lambda: feed_all(JsonLinesDecoder, json_chunks),
        "decode_json": lambda: rx_count(json_chunks, decode_json_lines()),
        "json_lines": lambda: aio_count(json_chunks, json_lines),
    }
    groups = {"batched": ("batched", "batched+delay"),
              "cbor": ("cbor plain", "cbor feed", "decode_cbor", "cbor_items"),
              "json": ("json plain", "json feed", "decode_json", "json_lines")}
    keys = [key for group in args.only.split(",") for key in groups[group.strip()]]
    times: dict[str, list[float]] = {key: [] for key in keys}
    for round_index in range(args.rounds):
        shift = round_index % len(keys)  # rotate the order so no contender always follows another
        for key in keys[shift:] + keys[:shift]:
            start = time.process_time()
            count = contenders[key]()
            times[key].append(time.process_time() - start)
            if count != n:
                raise RuntimeError(f"{key}: {count} items, expected {n}")
    print(f"operator throughput, {n:,} items, {args.rounds} rounds; CPU seconds, median [min-max]")
    for key in keys:
        rate = n / statistics.median(times[key])
        print(f"  {key:<14} {spread(times[key], '7.3f'):>26}   {rate:>12,.0f} items/s")

    def ratio(a: str, b: str) -> str:
        return spread([x / y for x, y in zip(times[a], times[b], strict=True)], ".2f")

    print("ratios (per round; target <= 1.5):")
    for base, others in (("batched", ("batched+delay",)),
                         ("cbor plain", ("cbor feed", "decode_cbor", "cbor_items")),
                         ("json plain", ("json feed", "decode_json", "json_lines"))):
        for key in others:
            if key in times and base in times:
                print(f"  {key + ' / ' + base:<25} {ratio(key, base)}")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs; figures on a shared machine are noisy)")


if __name__ == "__main__":
    main()
