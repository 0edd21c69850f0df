"""Issue 12 item 7: channel pipes are bounded in bytes, channels per worker are capped, and a
worker's unfinished channels go when it leaves. Real sockets; the assertions read the hub's
own accounting (``Pipe.queued_bytes``), not the process's memory."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from iii_rx.channels import ChannelClosedError, ChannelWriter, build_channel_url
from iii_rx.engine import Engine
from iii_rx.engine.channels import CHANNEL_LIMIT
from iii_rx.engine.channels.hub import MAX_CHANNEL_FRAME
from iii_rx.engine.channels.pipe import Pipe

LIMIT = 256 * 1024


async def open_end(engine: Engine, ref: dict[str, Any]) -> ClientConnection:
    url = build_channel_url(engine.url, ref["channel_id"], ref["access_key"], ref["direction"])
    return await connect(url, compression=None, ping_interval=None, write_limit=64 * 1024,
                         max_size=None)


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    """Poll hub state (it has no event for "the pipe is full")."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def call(ws: ClientConnection, function_id: str, data: Any, invocation_id: str) -> Any:
    """A sync call over a bare worker socket; returns the ``invocationresult`` frame."""
    await ws.send(json.dumps({"type": "invokefunction", "function_id": function_id,
                              "data": data, "invocation_id": invocation_id}))
    async for message in ws:
        frame = json.loads(message)
        if frame.get("invocation_id") == invocation_id:
            return frame
    raise AssertionError("connection closed")


async def test_a_pipe_holds_at_most_its_byte_bound() -> None:
    async with Engine(port=0, channel_buffer_bytes=LIMIT) as engine:
        refs = engine.hub.create(1024)  # 1,024 frames of 64 KiB would be 64 MiB
        state = engine.hub.channel_state(refs["writer"]["channel_id"])
        assert state is not None
        pipe = state.pipe
        chunks = [os.urandom(64 * 1024) for _ in range(200)]
        writer = await open_end(engine, refs["writer"])

        async def flood() -> None:
            for chunk in chunks:
                await writer.send(chunk)
            await writer.close()

        task = asyncio.ensure_future(flood())
        await wait_until(lambda: pipe.queued_bytes + 64 * 1024 > LIMIT)
        assert pipe.queued_bytes <= LIMIT and len(pipe.frames) == LIMIT // (64 * 1024)
        assert not task.done()

        reader = await open_end(engine, refs["reader"])
        got = []
        async for frame in reader:
            assert pipe.queued_bytes <= LIMIT
            got.append(frame)
        assert got == chunks and reader.close_code == 1000
        await task


async def test_a_frame_bigger_than_the_bound_still_passes_and_text_counts_in_bytes() -> None:
    pipe = Pipe(capacity=8, max_bytes=10)
    await pipe.put(b"x" * 100)  # an empty pipe takes any one frame
    assert pipe.queued_bytes == 100
    blocked = asyncio.ensure_future(pipe.put("a"))
    await asyncio.sleep(0)
    assert not blocked.done()
    assert await pipe.get() == b"x" * 100
    await blocked
    await pipe.put("é" * 2)  # 8 + 1 > 10 would not fit: non-ASCII text counts 4 bytes a char
    assert pipe.queued_bytes == 9
    waiting = asyncio.ensure_future(pipe.put("b" * 2))
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()


async def test_channels_per_worker_are_capped_and_freed_when_it_leaves() -> None:
    async with Engine(port=0, namespace_grace_ms=300, max_channels_per_worker=3) as engine:
        worker = await connect(engine.url, compression=None, ping_interval=None)
        await worker.recv()  # workerregistered
        worker_id = next(iter(engine.registry.workers))
        made = [await call(worker, "engine::channels::create", {}, f"c{n}") for n in range(4)]
        assert all("result" in frame for frame in made[:3])
        assert made[3]["error"]["code"] == CHANNEL_LIMIT
        assert "max_channels_per_worker" in made[3]["error"]["message"]
        assert engine.hub.owned_by(worker_id) == 3
        # Another worker has a cap of its own.
        other = await connect(engine.url, compression=None, ping_interval=None)
        await other.recv()
        assert "result" in await call(other, "engine::channels::create", {}, "o1")
        await other.close()

        idle, half, full = (frame["result"] for frame in made[:3])
        blocked = await open_end(engine, half["writer"])
        await blocked.send(b"pending")
        streaming_writer = await open_end(engine, full["writer"])
        streaming_reader = await open_end(engine, full["reader"])
        streaming = engine.hub.channel_state(full["reader"]["channel_id"])
        assert streaming is not None
        await wait_until(lambda: streaming.reader_attached and streaming.writer_attached)

        await worker.close()
        await wait_until(lambda: worker_id not in engine.registry.workers)
        # A channel nobody attached to went with its creator; one whose writer waits for its
        # reader stays for it (until the sweep); a connected one streams on.
        assert idle["writer"]["channel_id"] not in engine.hub
        assert half["writer"]["channel_id"] in engine.hub
        late_reader = await open_end(engine, half["reader"])
        assert await late_reader.recv() == b"pending"
        await blocked.close()
        with pytest.raises(ConnectionClosed):
            await late_reader.recv()
        assert late_reader.close_code == 1000
        assert full["writer"]["channel_id"] in engine.hub
        assert engine.hub.owned_by(worker_id) == 0
        await streaming_writer.send(b"still here")
        assert await streaming_reader.recv() == b"still here"
        await streaming_writer.close()
        await streaming_reader.close()


async def test_a_reader_waiting_when_its_creator_leaves_gets_the_late_writers_data() -> None:
    """A worker's control socket dropping (a keepalive blip, a restart) while its channel's
    reader waits for a remote writer used to end that reader cleanly with no data, an empty
    stream read as complete, and the writer was then refused (404)."""
    async with Engine(port=0, namespace_grace_ms=300) as engine:
        worker = await connect(engine.url, compression=None, ping_interval=None)
        await worker.recv()  # workerregistered
        worker_id = next(iter(engine.registry.workers))
        refs = (await call(worker, "engine::channels::create", {}, "c"))["result"]
        reader = await open_end(engine, refs["reader"])
        channel = engine.hub.channel_state(refs["reader"]["channel_id"])
        assert channel is not None
        await wait_until(lambda: channel.reader_attached)

        await worker.close()
        await wait_until(lambda: worker_id not in engine.registry.workers)
        writer = await open_end(engine, refs["writer"])
        await writer.send(b"late data")
        await writer.close()
        assert await reader.recv() == b"late data"
        with pytest.raises(ConnectionClosed):
            await reader.recv()
        assert reader.close_code == 1000


async def test_a_writer_frame_is_bounded_by_the_larger_of_the_pipe_and_16_mib() -> None:
    """The worker port's 64 MiB frames let a few read-ahead frames hold hundreds of MiB per
    channel; a writer's frame past the bound (the Rust engine's: a 16 MiB text message
    passes there) now closes it with 1009 (message too big)."""
    async with Engine(port=0, channel_buffer_bytes=LIMIT) as engine:
        refs = engine.hub.create(8)
        writer = await open_end(engine, refs["writer"])
        reader = await open_end(engine, refs["reader"])
        whole = "x" * MAX_CHANNEL_FRAME
        await writer.send(whole)
        assert await reader.recv() == whole
        await writer.send(bytes(MAX_CHANNEL_FRAME + 1))
        await writer.wait_closed()
        assert writer.close_code == 1009


async def test_a_writer_refused_mid_stream_fails_its_close() -> None:
    """A frame over the bound closes the writer's socket (1009) before what was sent after it
    reached the reader; ``close()`` used to return as if the stream had ended cleanly."""
    async with Engine(port=0) as engine:
        refs = engine.hub.create(8)
        writer = ChannelWriter(str(engine.url), refs["writer"])
        await writer.send_message("x" * (MAX_CHANNEL_FRAME + 1))
        with pytest.raises(ChannelClosedError) as refused:
            await writer.close()
        assert refused.value.code == 1009


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Wait for the engine to close ``ws`` (reading, so the closing handshake completes)."""
    async def drain() -> None:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass

    await asyncio.wait_for(drain(), timeout)
    return ws.close_code


async def test_an_idle_writer_is_swept_with_its_channel_after_the_reader_leaves() -> None:
    """The writer is told at its next frame: one that sent nothing more kept its socket, two
    tasks and the channel for ever, past its creator leaving and past the sweep (which took a
    reader that had left for a connected one). The sweep now removes it, as the Rust engine's
    does; not at once, which the official SDKs' writers handle badly (docs/channels.md)."""
    async with Engine(port=0, namespace_grace_ms=300, channel_sweep_interval_ms=50,
                      channel_max_age_ms=100) as engine:
        owner = await connect(engine.url, compression=None, ping_interval=None)
        await owner.recv()  # workerregistered
        owner_id = next(iter(engine.registry.workers))
        refs = (await call(owner, "engine::channels::create", {}, "c"))["result"]
        channel_id = refs["writer"]["channel_id"]
        writer = await open_end(engine, refs["writer"])
        reader = await open_end(engine, refs["reader"])
        await writer.send(b"one")
        assert await reader.recv() == b"one"
        await reader.close()

        assert await closed_with(writer) == 1011
        await wait_until(lambda: channel_id not in engine.hub)
        assert engine.hub.owned_by(owner_id) == 0  # its slot is free again
        await owner.close()


async def test_an_iii_rx_writer_closes_cleanly_after_its_reader_took_everything() -> None:
    """A reader that takes the items it expects and leaves: the engine closes the idle writer
    (1011, here by the sweep) and the writer's own ``close()`` then does not raise. The
    reader going away is for writes to report; ``close()`` raises for refusals (1009)."""
    async with Engine(port=0, channel_sweep_interval_ms=50, channel_max_age_ms=100) as engine:
        refs = engine.hub.create(8)
        writer = ChannelWriter(str(engine.url), refs["writer"])
        reader = await open_end(engine, refs["reader"])
        await writer.write(b"all of it")
        assert await reader.recv() == b"all of it"
        await reader.close()
        await wait_until(lambda: engine.hub.channel_state(refs["writer"]["channel_id"]) is None)
        await writer.close()  # the engine closed it (1011, reader gone): no error


async def test_a_reader_that_left_does_not_keep_a_channel_past_its_creator_or_the_sweep() -> None:
    """``release_owner`` and the sweep took a reader that had left for a connected one."""
    async with Engine(port=0, channel_max_age_ms=0) as engine:
        hub = engine.hub
        for clean_up in (lambda: hub.release_owner("gone-worker"), hub.sweep):
            refs = hub.create(owner="gone-worker")
            channel_id = refs["writer"]["channel_id"]
            writer = hub.local_writer(channel_id)  # the engine's own end: no socket to close
            reader = hub.local_reader(channel_id)
            await writer.send(b"one")
            assert await reader.receive() == b"one"
            await reader.aclose()
            assert channel_id in hub
            assert clean_up() == 1
            assert channel_id not in hub
            with pytest.raises(ConnectionError):
                await writer.send(b"two")


async def test_channels_kept_after_their_creators_left_are_capped_too() -> None:
    """Kept for their ends after the creator left, they counted against no cap: a worker that
    reconnected in a loop left a full cap of channels with buffered data each time. The
    oldest go first; one whose reader came meanwhile streams on and is not counted."""
    cap = 3
    async with Engine(port=0, namespace_grace_ms=300, max_channels_per_worker=cap) as engine:
        kept: list[dict[str, Any]] = []
        streaming = None
        for round_ in range(3):
            before = set(engine.registry.workers)
            worker = await connect(engine.url, compression=None, ping_interval=None)
            await worker.recv()  # workerregistered
            [worker_id] = set(engine.registry.workers) - before
            for n in range(cap):
                refs = (await call(worker, "engine::channels::create", {},
                                   f"c{round_}-{n}"))["result"]
                writer = await open_end(engine, refs["writer"])
                await writer.send(b"buffered")
                if kept:
                    await writer.close()  # done writing: the data waits for a reader
                else:
                    open_writer = writer  # the first one goes on writing
                kept.append(refs)
            await worker.close()
            await wait_until(lambda gone=worker_id: gone not in engine.registry.workers)
            if streaming is None:  # the first channel's reader comes: it streams now
                streaming = await open_end(engine, kept[0]["reader"])
                assert await streaming.recv() == b"buffered"
            assert len(engine.hub) <= cap + 1, (round_, len(engine.hub))
        # The newest are kept, with the one in use; their readers get what was written.
        assert [r["writer"]["channel_id"] in engine.hub for r in kept] == (
            [True] + [False] * 5 + [True] * 3)
        reader = await open_end(engine, kept[-1]["reader"])
        assert await reader.recv() == b"buffered"
        await reader.close()
        await open_writer.send(b"still streaming")
        assert await streaming.recv() == b"still streaming"
        await open_writer.close()
        await streaming.close()
