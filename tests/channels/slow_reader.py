"""A deliberately slow channel reader, run as a subprocess by test_channel_transfer.py.

``python slow_reader.py ENGINE_URL REF_JSON DELAY_S`` reads the channel with an iii_rx
``ChannelReader``, sleeping ``DELAY_S`` after every chunk, and reports on stdout:
``progress <bytes>`` about every MiB, then ``done <bytes> <sha256> <rss growth bytes>``, where
the growth is the peak resident size (VmHWM) minus the resident size before reading began.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

from iii_rx.channels import ChannelReader


def status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


async def main(url: str, ref: dict[str, str], delay: float) -> None:
    reader = ChannelReader(url, ref)
    digest = hashlib.sha256()
    total = 0
    reported = 0
    before = status_kib("VmRSS")
    async with reader:
        async for chunk in reader:
            digest.update(chunk)
            total += len(chunk)
            if total - reported >= 2**20:
                reported = total
                print(f"progress {total}", flush=True)
            await asyncio.sleep(delay)
    growth = (status_kib("VmHWM") - before) * 1024
    print(f"done {total} {digest.hexdigest()} {growth}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])))
