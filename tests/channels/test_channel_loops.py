"""Which loop a channel end runs on: the shared loop thread of ends used only from sync code,
its end at interpreter exit, and the narrow interface through which channels are opened."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import iii_rx
from iii_rx.channels import ChannelReader, ChannelWriter, open_channel
from iii_rx.channels._affinity import LoopAffinity, shared_loop
from iii_rx.engine import Engine


async def test_ends_used_only_from_sync_code_share_one_loop_thread(
        engine: Engine, client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()

    def sync_side() -> tuple[bytes, bool]:
        # Made in a thread with no event loop: no loop claims these ends until they are used.
        writer = ChannelWriter(engine.url, channel.writer_ref, client.headers)
        reader = ChannelReader(engine.url, channel.reader_ref, client.headers)
        writer.write_sync(b"from sync code")
        writer.close_sync()
        data = reader.read_all_sync()
        reader.close_sync()
        shared = shared_loop.bridge().loop
        return data, writer._affinity.loop is shared and reader._affinity.loop is shared

    assert await asyncio.to_thread(sync_side) == (b"from sync code", True)
    shared_loop.stop()
    assert not shared_loop.running
    # A later need starts a fresh thread (the affinity is made off every loop, so unclaimed).
    assert await asyncio.to_thread(
        lambda: LoopAffinity().block(asyncio.sleep(0, "again"), "test")) == "again"
    assert shared_loop.running
    shared_loop.stop()


async def test_a_sync_twin_on_the_ends_own_loop_raises_the_deadlock_error(
        client: iii_rx.Client) -> None:
    channel = await client.create_channel_async()
    with pytest.raises(iii_rx.LoopDeadlockError, match="close_sync blocks"):
        channel.writer.close_sync()
    await channel.writer.close()
    assert await channel.reader.read_all() == b""


def test_the_shared_loop_thread_stops_at_interpreter_exit() -> None:
    script = textwrap.dedent("""
        import asyncio, atexit, threading

        def report():  # registered first, so it runs after the channels' own exit hook
            print("left:", [t.name for t in threading.enumerate() if t.name == "iii-rx-channels"])

        atexit.register(report)
        from iii_rx.channels._affinity import LoopAffinity, shared_loop
        print(LoopAffinity().block(asyncio.sleep(0, "ran"), "test"))
        shared_loop.bridge().submit(asyncio.sleep(3600))  # still pending at exit
    """)
    done = subprocess.run([sys.executable, "-X", "dev", "-c", script], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["ran", "left: []"]
    assert "destroyed but it is pending" not in done.stderr, done.stderr


class _Opener:
    """Only what open_channel needs: no client."""

    def __init__(self, client: iii_rx.Client) -> None:
        self.url = client.url
        self.headers = client.headers
        self._client = client

    def trigger(self, function_id: str, payload: Any, /) -> Any:
        return self._client.trigger(function_id, payload)


async def test_open_channel_needs_only_the_narrow_opener(client: iii_rx.Client) -> None:
    channel = await open_channel(_Opener(client), buffer_size=4)
    async with channel.writer as writer:
        await writer.write(b"through the protocol")
    assert await channel.reader.read_all() == b"through the protocol"


async def test_reads_from_another_loop_cancelled_by_timeouts_lose_no_chunk(
        client: iii_rx.Client) -> None:
    # The reader lives on the client's loop and is read from another one (a notebook's); a
    # timeout may cancel a read after the chunk was taken off the socket: it is read again
    # next, not dropped.
    channel = await client.create_channel_async()
    count = 3000

    async def write() -> None:
        async with channel.writer as writer:
            for i in range(count):
                await writer.write(i.to_bytes(4, "big"))

    def read_elsewhere() -> tuple[list[int], int]:
        async def read() -> tuple[list[int], int]:
            got: list[int] = []
            cancels = 0
            chunks = channel.reader.__aiter__()
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), 0.0002)
                except asyncio.TimeoutError:  # not the builtin on Python 3.10
                    cancels += 1
                    continue
                except StopAsyncIteration:
                    return got, cancels
                got.append(int.from_bytes(chunk, "big"))

        return asyncio.run(read())

    writing = asyncio.ensure_future(write())
    got, cancels = await asyncio.to_thread(read_elsewhere)
    await writing
    assert cancels > 0
    assert got == list(range(count))


def test_interrupted_sync_reads_lose_no_chunk() -> None:
    # Ctrl-C (a notebook's stop button) lands while `for chunk in reader` waits; the next
    # loop over the reader goes on with the chunk that was being read, not after it.
    script = textwrap.dedent("""
        import _thread, threading, time
        import iii_rx

        count = 3000
        with iii_rx.connect_sync(name="interrupted-reader") as iii:
            channel = iii.create_channel()

            def write():
                for i in range(count):
                    channel.writer.write_sync(i.to_bytes(4, "big"))
                channel.writer.close_sync()

            reading = threading.Event()
            reading.set()

            def interrupt():
                while reading.is_set():
                    time.sleep(0.002)
                    _thread.interrupt_main()

            threading.Thread(target=write, daemon=True).start()
            interrupter = threading.Thread(target=interrupt)
            interrupter.start()
            got, interrupts = [], 0
            while reading.is_set():
                try:
                    for chunk in channel.reader:
                        while True:  # the test's own bookkeeping must survive interrupts
                            try:
                                n = int.from_bytes(chunk, "big")
                                if not got or got[-1] != n:
                                    got.append(n)
                                break
                            except KeyboardInterrupt:
                                pass
                    reading.clear()
                except KeyboardInterrupt:
                    interrupts += 1
            while True:
                try:
                    interrupter.join()
                    time.sleep(0.05)  # an interrupt still pending lands here
                    break
                except KeyboardInterrupt:
                    pass
            print(interrupts > 0, got == list(range(count)), len(got))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OTEL_ENABLED": "false"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "3000"], done.stdout


def test_reads_from_another_loop_cancelled_at_once_keep_their_order() -> None:
    # A cancel that came before the read's task was even started let that task take its first
    # step while the next read's task was queued: the next read was refused as "another
    # consumer", or got the chunk after (the stale one came back later, out of order). Dev
    # mode slows the loop's wake-ups enough to open that window in every run.
    script = textwrap.dedent("""
        import asyncio, random, threading
        import iii_rx

        count = 3000
        with iii_rx.connect_sync(name="cancelled-reads") as iii:
            channel = iii.create_channel(buffer_size=4)

            def write():
                for i in range(count):
                    channel.writer.write_obj_sync(i)
                channel.writer.close_sync()

            async def read():
                got, rng = [], random.Random(7)
                while True:
                    items = channel.reader.objects()  # a new pass after each timeout
                    try:
                        while True:
                            got.append(await asyncio.wait_for(
                                items.__anext__(), rng.uniform(0.0001, 0.003)))
                    except StopAsyncIteration:
                        return got
                    except asyncio.TimeoutError:
                        continue

            threading.Thread(target=write, daemon=True).start()
            got = asyncio.run(read())
            print("ok" if got == list(range(count)) else
                  f"bad: {len(got)} items, first out of place "
                  f"{[g for i, g in enumerate(got) if g != i][:5]}")
    """)
    done = subprocess.run([sys.executable, "-X", "dev", "-c", script], capture_output=True,
                          text=True, timeout=180, env={**os.environ, "OTEL_ENABLED": "false"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "ok", done.stdout[-2000:]
