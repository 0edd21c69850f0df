"""A channel write cancelled part-way fails the channel; one cancelled before it sent anything
leaves the writer usable (docs/channels.md, "A cancelled write")."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
from collections.abc import Coroutine
from typing import Any

import pytest

import iii_rx
from iii_rx.channels import ChannelClosedError, ChannelWriter
from iii_rx.engine import Engine

BIG = 40 * 1024 * 1024
"""More than every buffer between a writer and a reader that does not read (~10 MiB)."""


async def _timed_out(write: Coroutine[Any, Any, None], seconds: float = 0.5) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(write, seconds)


async def test_a_write_cancelled_part_way_fails_the_channel(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async(buffer_size=1)
    writer = channel.writer
    await writer.write_obj({"first": 1})
    await _timed_out(writer.write_obj({"blob": b"x" * BIG}))  # the reader is not reading
    assert writer.closed
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await writer.write_obj({"after": 1})
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await writer.send_message("after")
    with pytest.raises(ChannelClosedError, match="cancelled part-way") as closing:
        await writer.close()
    assert closing.value.code == 1011
    items = []
    with pytest.raises(ChannelClosedError, match="cancelled part-way") as reading:
        async for item in channel.reader.objects():  # an error, not a clean end
            items.append(item)
    assert reading.value.code == 1011
    assert items == [{"first": 1}]
    await writer.abort()  # quiet: the channel already failed


async def test_a_single_frame_write_cancelled_waiting_for_room_fails_the_channel(
        client: iii_rx.Client) -> None:
    # Its frame went out before the wait: a retry would send it twice.
    channel = await client.create_channel_async(buffer_size=1)
    writer = channel.writer
    frame = b"y" * 65536

    async def fill() -> None:
        while True:
            await writer.write(frame)

    await _timed_out(fill(), 2)
    assert writer.closed
    with pytest.raises(ChannelClosedError, match="65536 of 65536 bytes sent"):
        await writer.write(frame)
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await channel.reader.read_all()


async def test_a_write_cancelled_before_its_first_frame_leaves_the_writer_usable(
        client: iii_rx.Client) -> None:
    channel = await client.create_channel_async(buffer_size=1)
    writer = channel.writer
    await writer.write(b"a")
    big = asyncio.ensure_future(writer.write(b"b" * BIG))  # blocks, holding its frames together
    await asyncio.sleep(0)  # one turn: it sent what the buffers take and now waits for room
    assert not big.done()
    await _timed_out(writer.write(b"lost"), 0.2)  # waited for the big write: sent nothing
    assert not writer.closed
    reading = asyncio.ensure_future(channel.reader.read_all())
    await big
    await writer.write(b"c")
    await writer.close()
    data = await reading
    assert data == b"a" + b"b" * BIG + b"c"


async def test_a_write_cancelled_from_another_loop_fails_the_channel(
        client: iii_rx.Client) -> None:
    channel = await client.create_channel_async(buffer_size=1)
    writer = channel.writer
    await writer.write(b"first")  # the end lives on this loop; the write below hops to it

    def elsewhere() -> None:
        async def cut() -> None:
            await _timed_out(writer.write(b"z" * BIG))
        asyncio.run(cut())

    await asyncio.to_thread(elsewhere)
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await writer.write(b"after")
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await channel.reader.read_all()


async def test_a_buffered_write_cancelled_part_way_fails_the_channel(
        client: iii_rx.Client) -> None:
    # Frames smaller than 64 KiB: one buffered write is many frames, still one write.
    channel = await client.create_channel_async(buffer_size=1)
    out = channel.writer.buffered(size=16384)
    await _timed_out(out.write(b"q" * BIG))
    assert channel.writer.closed
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await out.close()
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await channel.reader.read_all()


async def test_a_buffered_write_that_sent_nothing_is_not_kept(client: iii_rx.Client) -> None:
    channel = await client.create_channel_async(buffer_size=1)
    writer: ChannelWriter = channel.writer
    out = writer.buffered(size=100)
    await out.write(b"k" * 30)  # buffered, complete as far as its caller knows
    big = asyncio.ensure_future(writer.write(b"b" * BIG))
    await asyncio.sleep(0)  # one turn: the big write holds the writer, waiting for room
    await _timed_out(out.write(b"m" * 250), 0.2)  # its frames waited behind it: none went out
    assert out.pending == 30 and not writer.closed
    reading = asyncio.ensure_future(channel.reader.read_all())
    await big
    await out.close()
    assert await reading == b"b" * BIG + b"k" * 30


def test_an_interrupted_write_sync_fails_the_channel() -> None:
    # Ctrl-C lands while write_sync waits for room: the next write says why it cannot go on.
    script = textwrap.dedent("""
        import os, signal, threading
        import iii_rx
        from iii_rx.channels import ChannelClosedError

        with iii_rx.connect_sync(name="interrupted-writer") as iii:
            channel = iii.create_channel(buffer_size=1)
            channel.writer.write_sync(b"first")
            # A real SIGINT (interrupt_main would not wake the blocked wait); the write cannot
            # finish, the reader does not read.
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            try:
                channel.writer.write_sync(b"x" * 40 * 1024 * 1024)
            except KeyboardInterrupt:
                print("interrupted")
            for attempt in (lambda: channel.writer.write_sync(b"after"),
                            channel.writer.close_sync, channel.reader.read_all_sync):
                try:
                    attempt()
                except ChannelClosedError as exc:
                    print("cancelled part-way" in str(exc))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OTEL_ENABLED": "false"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["interrupted", "True", "True", "True"], done.stdout


async def test_a_loop_that_ends_during_the_failing_close_drops_the_socket(
        engine: Engine, client: iii_rx.Client) -> None:
    # The background close waits for a reader that never reads; asyncio.run() ending cancels
    # it: the socket must not be left open (an unclosed transport) for the GC to find.
    channel = await client.create_channel_async(buffer_size=1)
    ref = channel.writer.ref

    def elsewhere() -> ChannelWriter:
        async def cut() -> ChannelWriter:
            writer = ChannelWriter(engine.url, ref)  # lives on this thread's loop
            await _timed_out(writer.write(b"x" * BIG))
            return writer
        return asyncio.run(cut())

    writer = await asyncio.to_thread(elsewhere)
    assert writer._ws is not None and writer._ws.transport.is_closing()


async def test_a_buffered_write_cancelled_at_the_fronts_turn_leaves_nothing_buffered(
        client: iii_rx.Client) -> None:
    # The front gives its loop a turn every YIELD_WRITES buffer-only writes; a cancel there
    # raised with the bytes already buffered, so a retry sent them twice.
    from iii_rx.channels.buffered import YIELD_WRITES

    channel = await client.create_channel_async()
    out = channel.writer.buffered()
    for _ in range(YIELD_WRITES - 1):
        await out.write(b".")
    before = out.pending
    step = out.write(b"Z")
    write = asyncio.ensure_future(step)
    if inspect.getcoroutinestate(step) == inspect.CORO_CREATED:  # not an eager task factory
        await asyncio.sleep(0)
    assert inspect.getcoroutinestate(step) == inspect.CORO_SUSPENDED  # at the front's turn
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    assert out.pending == before
    await out.write(b"Z")  # the retry
    reading = asyncio.ensure_future(channel.reader.read_all())
    await out.close()
    assert (await reading).count(b"Z") == 1


async def test_a_buffered_front_takes_one_write_at_a_time(client: iii_rx.Client) -> None:
    # Two writes sending at once through one front could not both be put back if cut.
    channel = await client.create_channel_async(buffer_size=1)
    out = channel.writer.buffered(size=64)
    first = asyncio.ensure_future(out.write(b"A" * 10 * 1024 * 1024))  # waits: nobody reads
    await asyncio.sleep(0)  # its first step: the frames leave the buffer, the write waits
    assert out.pending == 0 and not first.done()
    with pytest.raises(RuntimeError, match="one producer"):
        await out.write(b"B" * 100)
    with pytest.raises(RuntimeError, match="one producer"):
        await out.flush()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await out.abort()


async def test_a_message_cancelled_waiting_for_room_fails_the_channel(
        client: iii_rx.Client) -> None:
    # Its text frame went out before the wait, as a one-frame write's does: the caller is told
    # it did not finish, and a retry would deliver it twice.
    channel = await client.create_channel_async(buffer_size=1)
    writer = channel.writer
    with pytest.raises(asyncio.TimeoutError):
        while True:  # the reader is not reading: the socket fills, then a send waits
            await asyncio.wait_for(writer.send_message("m" * 60_000), 0.5)
    assert writer.closed
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await writer.send_message("retry")
    await writer.abort()


async def test_a_large_write_that_went_out_whole_is_not_cut_by_a_cancel_after_it(
        client: iii_rx.Client) -> None:
    # The loop's turn comes between the frames of a large write, not after its last one: a
    # cancel there would fail the channel for a write that was complete.
    from iii_rx.channels.writer import FRAME_COST, FRAME_SIZE, YIELD_BUDGET

    channel = await client.create_channel_async()
    writer = channel.writer
    reading = asyncio.ensure_future(channel.reader.read_all())
    await writer.write(b"o")  # opens the socket; counts 1 + FRAME_COST toward the budget
    # Just enough frames that the budget is reached by the last one, not before.
    frames = -(-(YIELD_BUDGET - 1 - FRAME_COST) // (FRAME_SIZE + FRAME_COST))
    whole = asyncio.ensure_future(writer.write(b"x" * (frames * FRAME_SIZE)))
    await asyncio.sleep(0)  # its first step: every frame handed over (the socket has room)
    whole.cancel()
    await asyncio.gather(whole, return_exceptions=True)
    assert not writer.closed
    await writer.close()
    assert len(await reading) == 1 + frames * FRAME_SIZE


async def test_a_message_waiting_behind_a_write_that_is_cut_fails_too(
        client: iii_rx.Client) -> None:
    # It waited for the writer's lock while a large write was cancelled part-way: it went out
    # on the failing channel and returned as sent.
    channel = await client.create_channel_async(buffer_size=1)
    writer = channel.writer
    await writer.write(b"o")  # the socket is open
    big = asyncio.ensure_future(writer.write(b"y" * BIG))  # waits for room: nobody reads
    await asyncio.sleep(0)  # its first step: some frames out, the lock held
    message = asyncio.ensure_future(writer.send_message("hello"))
    await asyncio.sleep(0)  # the message waits for the lock
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big
    with pytest.raises(ChannelClosedError, match="cancelled part-way"):
        await message
    await writer.abort()
