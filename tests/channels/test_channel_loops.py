"""Which loop a channel end runs on: the shared loop thread of ends used only from sync code,
its end at interpreter exit, and the narrow interface through which channels are opened."""

from __future__ import annotations

import asyncio
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
