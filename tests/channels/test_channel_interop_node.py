"""Channels between iii_rx and a Node ``iii-sdk`` 0.22.1 worker, both ways, via our engine.

Node is a requirement of the suite (``make node``): when it is missing the test fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from channel_helpers import unique, wait_registered

import iii_rx
from iii_rx.engine import Engine

NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"
PEER = Path(__file__).resolve().parent / "node" / "channel_peer.mjs"


def xorshift_bytes(size: int, seed: int) -> bytes:
    """The pattern channel_peer.mjs writes (xorshift32, low byte)."""
    out = bytearray(size)
    x = seed or 1
    for i in range(size):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x & 0xFF
    return bytes(out)


@pytest.fixture
async def node_peer(engine: Engine) -> AsyncIterator[None]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the Node interop tests need Node.js >= 18")
    if not (NODE_DIR / "node_modules" / "iii-sdk" / "package.json").exists():
        pytest.fail(f"the Node iii-sdk is not installed in {NODE_DIR}: run `make node`")
    proc = await asyncio.create_subprocess_exec(
        node, str(PEER), engine.url, unique("node-chan"), cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "OTEL_ENABLED": "false"},
    )
    try:
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def test_node_writes_iii_rx_reads_and_iii_rx_writes_node_reads(
        client: iii_rx.Client, node_peer: None) -> None:
    await wait_registered(client, "nodechan::produce")
    await wait_registered(client, "nodechan::consume")

    # Node writer -> iii_rx reader (several 64 KiB frames and text messages)
    channel = await client.create_channel_async()
    messages: list[str] = []
    channel.reader.on_message(messages.append)
    call = asyncio.ensure_future(client.trigger(
        "nodechan::produce", {"out": channel.writer_ref, "size": 200_000, "seed": 7}))
    data = await channel.reader.read_all()
    result = await call
    assert result == {"size": 200_000, "sha256": hashlib.sha256(data).hexdigest()}
    assert data == xorshift_bytes(200_000, 7)
    assert messages == ['{"phase":"start"}', '{"phase":"end"}']

    # iii_rx writer -> Node reader
    channel = await client.create_channel_async()
    call = asyncio.ensure_future(client.trigger("nodechan::consume", {"in": channel.reader_ref}))
    payload = os.urandom(300_000)
    async with channel.writer as writer:
        await writer.send_message("hello node")
        await writer.write(payload)
    result = await call
    assert result == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                      "messages": ["hello node"]}
