"""The engine's channel hub over real sockets, spoken to with bare websockets clients."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from iii_rx.channels import build_channel_url
from iii_rx.engine import Engine
from iii_rx.engine.channels import ChannelHub, ChannelUnavailable


def url(engine: Engine, ref: dict[str, Any], direction: str | None = None) -> str:
    return build_channel_url(engine.url, ref["channel_id"], ref["access_key"],
                             direction or ref["direction"])


async def open_end(engine: Engine, ref: dict[str, Any], **kwargs: Any) -> ClientConnection:
    return await connect(url(engine, ref), compression=None, ping_interval=None, **kwargs)


async def read_until_close(ws: ClientConnection) -> tuple[list[Any], int | None]:
    frames: list[Any] = []
    try:
        async for frame in ws:
            frames.append(frame)
    except ConnectionClosed:
        pass
    return frames, ws.close_code


async def test_create_returns_refs_and_caps_buffer(engine: Engine) -> None:
    refs = engine.hub.create(None)
    assert refs["writer"]["direction"] == "write" and refs["reader"]["direction"] == "read"
    assert refs["writer"]["channel_id"] == refs["reader"]["channel_id"]
    assert refs["writer"]["access_key"] == refs["reader"]["access_key"]
    assert engine.hub.authorize(refs["reader"]["channel_id"], refs["reader"]["access_key"])
    assert not engine.hub.authorize(refs["reader"]["channel_id"], "wrong")
    assert not engine.hub.authorize("nope", refs["reader"]["access_key"])
    with pytest.raises(ValueError):
        engine.hub.create("12")  # type: ignore[arg-type]
    result = await engine.call("engine::channels::create", {"buffer_size": 5000})
    assert set(result) == {"writer", "reader"}


async def test_handshake_errors(engine: Engine) -> None:
    refs = engine.hub.create(4)
    bad_key = {**refs["reader"], "access_key": "wrong"}
    unknown = {**refs["reader"], "channel_id": "00000000-0000-4000-8000-000000000000"}
    for ref in (bad_key, unknown):
        with pytest.raises(InvalidStatus) as info:
            await open_end(engine, ref)
        assert info.value.response.status_code == 404
    base = f"{engine.url}/ws/channels/{refs['reader']['channel_id']}"
    for query in (f"?dir=read", f"?key={refs['reader']['access_key']}",  # noqa: F541
                  f"?key={refs['reader']['access_key']}&dir=sideways"):
        with pytest.raises(InvalidStatus) as info:
            await connect(base + query)
        assert info.value.response.status_code == 400


async def test_text_and_binary_keep_type_and_order_and_late_reader_gets_all(
        engine: Engine) -> None:
    refs = engine.hub.create(16)
    writer = await open_end(engine, refs["writer"])
    sent: list[Any] = []
    for i in range(10):
        frame: Any = f"text {i}" if i % 3 == 0 else os.urandom(1000 + i)
        sent.append(frame)
        await writer.send(frame)
    await writer.close()  # before the reader even exists
    reader = await open_end(engine, refs["reader"])
    frames, code = await read_until_close(reader)
    assert frames == sent
    assert code == 1000


async def test_second_socket_for_a_taken_side_is_closed_at_once(engine: Engine) -> None:
    refs = engine.hub.create()
    reader = await open_end(engine, refs["reader"])
    second = await open_end(engine, refs["reader"])
    _, code = await read_until_close(second)
    assert code == 1008
    writer = await open_end(engine, refs["writer"])
    other_writer = await open_end(engine, refs["writer"])
    _, code = await read_until_close(other_writer)
    assert code == 1008
    await writer.send(b"still works")
    assert await reader.recv() == b"still works"
    await writer.close()
    assert (await read_until_close(reader)) == ([], 1000)


async def test_writer_blocks_when_the_pipe_is_full(engine: Engine) -> None:
    """Real TCP backpressure: with no reader, the engine stops reading the writer's socket."""
    refs = engine.hub.create(4)
    writer = await open_end(engine, refs["writer"], write_limit=64 * 1024)
    chunk = os.urandom(64 * 1024)
    sent = 0

    async def flood() -> None:
        nonlocal sent
        while True:
            await writer.send(chunk)
            sent += 1

    task = asyncio.create_task(flood())
    # The pipe holds 4 frames, websockets 64 more, then socket buffers: a few MB at most.
    previous = -1
    while sent != previous:  # wait until the writer stops making progress
        previous = sent
        await asyncio.sleep(0.2)
    assert not task.done()
    assert sent * len(chunk) < 64 * 2**20, f"writer was not held back: {sent} frames sent"
    reader = await open_end(engine, refs["reader"])
    target = sent + 10  # draining lets the writer move on past where it was stuck
    for _ in range(target):
        assert await reader.recv() == chunk
    await reader.close()  # the engine then fails the blocked writer
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(task, 10)
    assert writer.close_code == 1011


async def test_reader_loss_fails_the_writer(engine: Engine) -> None:
    refs = engine.hub.create(2)
    writer = await open_end(engine, refs["writer"])
    reader = await open_end(engine, refs["reader"])
    await writer.send(b"one")
    assert await reader.recv() == b"one"
    await reader.close()
    with pytest.raises(ConnectionClosedError):
        for _ in range(1000):  # the engine closes the writer once it notices
            await writer.send(b"more")
            await asyncio.sleep(0.005)
    assert writer.close_code == 1011


async def test_writer_lost_mid_stream_is_reported_to_the_reader(engine: Engine) -> None:
    refs = engine.hub.create()
    writer = await open_end(engine, refs["writer"])
    reader = await open_end(engine, refs["reader"])
    await writer.send(b"partial")
    assert writer.transport is not None
    writer.transport.abort()  # no close frame: a crashed writer
    frames, code = await read_until_close(reader)
    assert frames == [b"partial"]
    assert code == 1011


async def test_sweep_removes_half_open_channels() -> None:
    async with Engine(port=0, channel_sweep_interval_ms=20, channel_max_age_ms=50) as engine:
        waiting = engine.hub.create()
        blocked = engine.hub.create(1)
        full = engine.hub.create()
        reader = await open_end(engine, waiting["reader"])
        writer = await open_end(engine, blocked["writer"])
        for _ in range(3):
            await writer.send(b"x")
        both_r = await open_end(engine, full["reader"])
        both_w = await open_end(engine, full["writer"])
        # a waiting reader fails with no data (an empty stream is not a complete one); a
        # writer whose reader never came fails
        assert await read_until_close(reader) == ([], 1011)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(writer.recv(), 5)
        assert writer.close_code == 1011
        assert full["reader"]["channel_id"] in engine.hub  # fully connected: never swept
        await both_w.send("alive")
        assert await both_r.recv() == "alive"
        await both_w.close()
        await read_until_close(both_r)


async def test_engine_shutdown_ends_channels_with_1001() -> None:
    engine = Engine(port=0)
    await engine.start()
    refs = engine.hub.create()
    reader = await open_end(engine, refs["reader"])
    writer = await open_end(engine, refs["writer"])
    await writer.send(b"x")
    assert await reader.recv() == b"x"
    # and a writer blocked on a full pipe whose reader never came must not hold the stop up
    blocked = engine.hub.create(1)
    stuck = await open_end(engine, blocked["writer"])
    flood = asyncio.create_task(_flood(stuck))
    pipe = engine.hub._channels[blocked["writer"]["channel_id"]].pipe
    for _ in range(1000):  # no event for "the pipe filled up": a bounded poll
        if pipe.frames:
            break
        await asyncio.sleep(0.005)
    assert pipe.frames
    await asyncio.wait_for(engine.stop(), 10)
    _, code = await read_until_close(reader)
    assert code == 1001
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(flood, 10)


async def _flood(ws: ClientConnection) -> None:
    chunk = os.urandom(65536)
    while True:
        await ws.send(chunk)


async def test_local_ends_for_the_engine_itself(engine: Engine) -> None:
    hub = engine.hub
    refs = hub.create(4)
    channel_id = refs["reader"]["channel_id"]
    local = hub.local_reader(channel_id)
    with pytest.raises(ChannelUnavailable):
        hub.local_reader(channel_id)
    assert not local.writer_connected
    writer = await open_end(engine, refs["writer"])
    await writer.send("set status")
    await writer.send(os.urandom(10))
    assert local.writer_connected
    assert await local.receive() == "set status"
    assert isinstance(await local.receive(), bytes)
    # cancelling a receive loses nothing
    pending = asyncio.ensure_future(local.receive())
    await asyncio.sleep(0)
    pending.cancel()
    await writer.send(b"after cancel")
    assert await local.receive() == b"after cancel"
    await writer.close()
    assert await local.receive() is None
    assert local.end_code == 1000

    refs = hub.create(2)
    body = hub.local_writer(refs["writer"]["channel_id"])
    reader = await open_end(engine, refs["reader"])
    payload = os.urandom(200_000)
    await body.write(payload)  # split into 64 KiB frames, waits for the reader
    await body.send_message("done")
    await body.close()
    frames, code = await read_until_close(reader)
    assert b"".join(f for f in frames if isinstance(f, bytes)) == payload
    assert [len(f) for f in frames[:-1]] == [65536, 65536, 65536, 200_000 - 3 * 65536]
    assert frames[-1] == "done" and code == 1000


async def test_local_writer_fails_when_the_reader_leaves_and_remove(engine: Engine) -> None:
    hub = engine.hub
    refs = hub.create(1)
    body = hub.local_writer(refs["writer"]["channel_id"])
    reader = await open_end(engine, refs["reader"])
    await body.write(b"a")
    assert await reader.recv() == b"a"
    await reader.close()
    with pytest.raises(ConnectionError):
        for _ in range(200):
            await body.write(b"b")
            await asyncio.sleep(0.005)

    refs = hub.create()
    channel_id = refs["reader"]["channel_id"]
    reader = await open_end(engine, refs["reader"])
    writer = await open_end(engine, refs["writer"])
    await writer.send(b"x")
    assert await reader.recv() == b"x"
    hub.remove(channel_id)
    assert channel_id not in hub
    _, code = await read_until_close(reader)
    assert code == 1011


async def test_hub_without_an_engine_start_and_close() -> None:
    async with ChannelHub(sweep_interval_s=0.01, max_age_s=0.0) as hub:
        refs = hub.create()
        for _ in range(500):  # the background sweep removes a channel nobody opened
            if refs["reader"]["channel_id"] not in hub:
                break
            await asyncio.sleep(0.01)
        assert refs["reader"]["channel_id"] not in hub
        assert hub.sweep() == 0
