"""What waits for one streams-socket client is bounded in bytes, not only in messages.

A stream client that joined a group and stopped reading held up to 1,024 messages of any size
in the engine (1,000 events of 256 KB grew the engine by 200 MB until a keepalive closed it).
The client here has a small receive buffer and its transport stops reading; the assertions
read the engine's accounting of the client's outbox, not the process's memory.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from raw_engine_client import wait_until
from websockets.asyncio.client import ClientConnection, connect

from iii_rx.engine import Engine
from iii_rx.engine.workers.stream_socket import OUTBOX_LIMIT, StreamSocket

LIMIT = 256 * 1024
EVENT = "x" * 32 * 1024
MAX_EVENTS = 600  # 19 MB: far more than kernel, socket and outbox hold before the bound,
                  # and fewer messages than the count bound
assert MAX_EVENTS < OUTBOX_LIMIT


async def deaf_stream_client(url: str, stream: str, group: str) -> ClientConnection:
    """A client with a small receive buffer that joined ``stream/group``, then stopped reading."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await connect(url, sock=sock, compression=None, max_size=2**27)
    await ws.send(json.dumps({"type": "join", "data": {
        "subscriptionId": "s", "streamName": stream, "groupId": group}}))
    synced = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert synced["event"]["type"] == "sync", synced
    ws.transport.pause_reading()
    return ws


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    """An engine with a streams socket and a small byte bound (no pings or stuck timeout:
    the bound alone cuts)."""
    async with Engine(port=0, stream_port=0, max_queue_bytes=LIMIT, namespace_grace_ms=300,
                      ping_interval_ms=0, stuck_timeout_ms=0) as running:
        yield running


def stream_socket(engine: Engine) -> StreamSocket:
    streams = engine.workers.streams.socket
    assert isinstance(streams, StreamSocket)
    return streams


async def test_a_stream_client_that_does_not_read_is_cut_past_the_byte_bound(
        engine: Engine) -> None:
    streams = stream_socket(engine)
    ws = await deaf_stream_client(f"ws://127.0.0.1:{streams.port}", "bounded", "g")
    await wait_until(lambda: len(streams.clients) == 1)
    (client,) = streams.clients
    try:
        for n in range(MAX_EVENTS):
            if not streams.clients:  # cut
                break
            await engine.call("stream::send", {"stream_name": "bounded", "group_id": "g",
                                               "type": "ev", "data": {"n": n, "v": EVENT}})
        await wait_until(lambda: not streams.clients)
        assert client.cut is not None and "limit" in client.cut
        assert client.peak_queued_bytes <= LIMIT
        assert client.queued_bytes == 0 and client.outbox.empty()  # freed at once
    finally:
        ws.transport.abort()


async def test_a_slow_stream_client_under_the_bound_gets_every_message(
        engine: Engine) -> None:
    """Messages that fit the bound wait for a client that reads late: none is lost."""
    streams = stream_socket(engine)
    ws = await deaf_stream_client(f"ws://127.0.0.1:{streams.port}", "late", "g")
    payload: dict[str, Any] = {"stream_name": "late", "group_id": "g", "type": "ev"}
    try:
        for n in range(5):  # 160 KB: under the bound
            await engine.call("stream::send", {**payload, "data": {"n": n, "v": EVENT}})
        ws.transport.resume_reading()
        got = [json.loads(await asyncio.wait_for(ws.recv(), 5))["event"]["event"]["data"]["n"]
               for _ in range(5)]
        assert got == list(range(5))
        assert len(streams.clients) == 1  # not cut
    finally:
        await ws.close()
