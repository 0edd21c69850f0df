"""A writer in a tight loop lets the rest of its event loop run (heartbeats, handlers, the
reader in the same process): websockets' ``send`` only suspends when its buffer is past the
high-water mark, so a socket that keeps accepting data would otherwise never yield."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import iii_rx
from iii_rx.channels import Channel, ChannelReader

_WRITES = 3000


class Ticks:
    """A task that counts its turns on the loop: how many writes ran between two turns."""

    def __init__(self) -> None:
        self.turns = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticks:
        started = asyncio.Event()

        async def spin() -> None:
            started.set()
            while True:
                self.turns += 1
                await asyncio.sleep(0)

        self._task = asyncio.get_running_loop().create_task(spin())
        await started.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def most_writes_between_turns(self, write: Callable[[], Awaitable[None]],
                                        count: int) -> int:
        """Run ``write`` ``count`` times; the longest run of writes the other task missed."""
        most = run = 0
        seen = self.turns
        for _ in range(count):
            await write()
            if self.turns == seen:
                run += 1
                most = max(most, run)
            else:
                seen, run = self.turns, 0
        return most


async def _drain(reader: ChannelReader) -> int:
    total = 0
    async for chunk in reader:
        total += len(chunk)
    return total




async def test_a_writer_of_small_frames_yields_within_a_bounded_number_of_writes(
        client: iii_rx.Client) -> None:
    channel: Channel = await client.create_channel_async()
    reading = asyncio.get_running_loop().create_task(_drain(channel.reader))
    block = b"x" * 1024
    async with Ticks() as ticks:
        writer = channel.writer
        await writer.write(block)  # connected: the loop below measures writes only
        most = await ticks.most_writes_between_turns(lambda: writer.write(block), _WRITES)
        await writer.close()
    assert await reading == 1024 * (_WRITES + 1)
    assert most <= 300, most


async def test_a_writer_of_large_writes_yields_within_a_bounded_number_of_bytes(
        client: iii_rx.Client) -> None:
    channel: Channel = await client.create_channel_async()
    reading = asyncio.get_running_loop().create_task(_drain(channel.reader))
    block = b"x" * 200_000  # four frames a write, through the multi-frame path
    async with Ticks() as ticks:
        writer = channel.writer
        await writer.write(block)
        most = await ticks.most_writes_between_turns(lambda: writer.write(block), 200)
        await writer.close()
    assert await reading == 200_000 * 201
    assert most <= 8, most  # 8 writes: 1.6 MB


async def test_a_buffered_writer_of_tiny_writes_yields_too(client: iii_rx.Client) -> None:
    channel: Channel = await client.create_channel_async()
    reading = asyncio.get_running_loop().create_task(_drain(channel.reader))
    async with Ticks() as ticks:
        out = channel.writer.buffered()
        await out.write(b"x")
        await out.flush()
        most = await ticks.most_writes_between_turns(lambda: out.write(b"xy"), 100_000)
        await out.close()
    assert await reading == 1 + 2 * 100_000
    assert most <= 5000, most
