"""100 MB through the engine from an iii_rx writer to a slow iii_rx reader in another process.

Backpressure is shown, not assumed: the reader's peak memory grows by far less than the data,
and the writer is never more than a bounded amount ahead of what the reader reported.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

import iii_rx

TOTAL_MIB = 100
MIB = 2**20
# Bytes in flight between the writer and the reader's loop: socket buffers on both hops, the
# engine's websockets queue (64 frames) and pipe (64 frames), the reader's queue (16 frames),
# plus the reader's reporting granularity. Without backpressure the writer would be ~100 MB
# ahead of a reader that sleeps after every chunk.
MAX_AHEAD = 48 * MIB
MAX_READER_GROWTH = 50 * MIB


async def test_100_mb_byte_identical_with_bounded_reader_memory(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("slow_reader.py")), client.url,
        channel.reader_ref.model_dump_json(), "0.0012",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "OTEL_ENABLED": "false"},
    )
    assert proc.stdout is not None
    read = 0
    result: list[str] = []

    async def follow() -> None:
        nonlocal read
        assert proc.stdout is not None
        async for line in proc.stdout:
            kind, *fields = line.decode().split()
            if kind == "progress":
                read = int(fields[0])
            elif kind == "done":
                result.extend(fields)

    follower = asyncio.create_task(follow())
    sent = hashlib.sha256()
    written = 0
    max_ahead = 0
    try:
        async with channel.writer as writer:
            for _ in range(TOTAL_MIB):
                block = os.urandom(MIB)
                sent.update(block)
                await writer.write(block)
                written += MIB
                max_ahead = max(max_ahead, written - read)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await follower
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        follower.cancel()
    total, digest, growth = result
    assert int(total) == TOTAL_MIB * MIB
    assert digest == sent.hexdigest()
    assert max_ahead <= MAX_AHEAD, f"writer got {max_ahead / MIB:.1f} MiB ahead of the reader"
    assert int(growth) < MAX_READER_GROWTH, f"reader grew by {int(growth) / MIB:.1f} MiB"
    print(f"\nwriter ahead at most {max_ahead / MIB:.1f} MiB; "
          f"reader peak RSS growth {int(growth) / MIB:.1f} MiB")
